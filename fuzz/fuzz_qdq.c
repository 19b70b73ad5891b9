/* libFuzzer harness: the integer lowering of QDQ models (qk_qdq_lower, then
 * plan + one forward of the integer graph) and the fake-quantized float
 * graph itself, on QDQ graphs of the shape `qkit ptq` writes, built here
 * from the fuzz input: arithmetic (fp32 | gemmlowp | pot | none), code types,
 * scales (any float bit pattern included), zero points (in and out of
 * range), per-tensor or per-channel (of a fuzzed length and axis), an
 * optional Clip on codes (narrow "bits"), Conv geometry (kernel, stride,
 * padding, dilation, groups), optional fused Relu/Clip, an output Q or not
 * (TensorRT style), a second stage (MaxPool, AveragePool, Add, Concat,
 * GlobalAveragePool), a quantized Gemm head, weight codes and input values.
 * Errors are expected; crashes, sanitizer reports, leaks and hangs are bugs. */
#include "fuzz_common.h"

typedef struct bld {
    qk_graph *g;
    fz_in *in;
    int ok;
    int uniq;
} bld;

static int init_t(bld *b, const char *name, qk_dtype dt, int ndim, const int64_t *dims, const void *data)
{
    qk_tensor t;
    if (qk_tensor_alloc(&t, dt, ndim, dims) != QK_OK) {
        b->ok = 0;
        return -1;
    }
    memcpy(t.data, data, qk_tensor_bytes(&t));
    int v = qk_graph_add_init(b->g, name, QK_VALUE_CONST, &t);
    qk_tensor_free(&t);
    if (v < 0)
        b->ok = 0;
    return v;
}

static int node(bld *b, const char *op, int nin, const int *in)
{
    char nm[32];
    snprintf(nm, sizeof nm, "%s_%d", op, b->uniq++);
    int o = qk_graph_add_value(b->g, nm, QK_VALUE_ACT);
    if (o < 0 || qk_graph_add_node(b->g, op, nm, nin, in, 1, &o) < 0)
        b->ok = 0;
    return o;
}

static int last(bld *b) { return b->g->n_nodes - 1; }

static qk_dtype pick_dt(bld *b) { return fz_u8(b->in) & 1 ? QK_I8 : QK_U8; }

static int32_t pick_zp(bld *b, qk_dtype dt)
{
    uint8_t sel = fz_u8(b->in);
    if (sel < 8)
        return fz_range(b->in, -400, 400); /* often out of range */
    int32_t z = fz_u8(b->in);
    return dt == QK_I8 ? z - 128 : z;
}

/* scale and zero point initializers: n == 0 per tensor, else a vector of n */
static void qparams(bld *b, qk_dtype dt, int n, int *sv, int *zv)
{
    char nm[32];
    float s[16];
    int32_t z[16];
    uint8_t zc[16];
    int k = n ? n : 1;
    for (int i = 0; i < k; i++) {
        s[i] = fz_float(b->in);
        z[i] = pick_zp(b, dt);
        zc[i] = (uint8_t)z[i];
    }
    int64_t d = k;
    snprintf(nm, sizeof nm, "scale_%d", b->uniq++);
    *sv = init_t(b, nm, QK_F32, n ? 1 : 0, &d, s);
    snprintf(nm, sizeof nm, "zp_%d", b->uniq++);
    *zv = init_t(b, nm, dt, n ? 1 : 0, &d, zc);
}

/* x -> Q [-> Clip on codes] -> DQ */
static int qdq(bld *b, int x, qk_dtype dt)
{
    int sv, zv;
    qparams(b, dt, 0, &sv, &zv);
    int q = node(b, "QuantizeLinear", 3, (int[]){ x, sv, zv });
    if ((fz_u8(b->in) & 7) == 0) { /* fewer bits: codes clamped to [lo, hi] */
        int32_t lo = pick_zp(b, dt), hi = pick_zp(b, dt);
        uint8_t l = (uint8_t)lo, h = (uint8_t)hi;
        char nm[32];
        snprintf(nm, sizeof nm, "lo_%d", b->uniq++);
        int lv = init_t(b, nm, dt, 0, NULL, &l);
        snprintf(nm, sizeof nm, "hi_%d", b->uniq++);
        int hv = init_t(b, nm, dt, 0, NULL, &h);
        q = node(b, "Clip", 3, (int[]){ q, lv, hv });
    }
    return node(b, "DequantizeLinear", 3, (int[]){ q, sv, zv });
}

/* weight codes [dims] of type dt -> DQ (per channel along `axis` or fuzzed) */
static int wdq(bld *b, int ndim, const int64_t *dims, int co)
{
    qk_dtype dt = pick_dt(b);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= dims[i];
    uint8_t *codes = malloc((size_t)n);
    for (int64_t i = 0; i < n; i++)
        codes[i] = fz_u8(b->in);
    char nm[32];
    snprintf(nm, sizeof nm, "w_%d", b->uniq++);
    int cv = init_t(b, nm, dt, ndim, dims, codes);
    free(codes);
    uint8_t mode = fz_u8(b->in);
    int per_ch = mode & 1, nch = co;
    if ((mode & 0x0e) == 0x0e)
        nch = 1 + (mode >> 4) % 15; /* a length that may not match */
    int sv, zv;
    qparams(b, dt, per_ch ? nch : 0, &sv, &zv);
    int o = node(b, "DequantizeLinear", 3, (int[]){ cv, sv, zv });
    if (per_ch && (mode & 0x30) == 0x30)
        qk_node_set_int(b->g, last(b), "axis", (int)(mode >> 6) - 1);
    return o;
}

/* optional fused activation after a conv / gemm */
static int act(bld *b, int y)
{
    uint8_t a = fz_u8(b->in) % 4;
    if (a == 1)
        return node(b, "Relu", 1, &y);
    if (a == 2) {
        float lo = 0, hi = 6;
        char nm[32];
        snprintf(nm, sizeof nm, "c0_%d", b->uniq++);
        int lv = init_t(b, nm, QK_F32, 0, NULL, &lo);
        snprintf(nm, sizeof nm, "c6_%d", b->uniq++);
        int hv = init_t(b, nm, QK_F32, 0, NULL, &hi);
        return node(b, "Clip", 3, (int[]){ y, lv, hv });
    }
    return y;
}

static qk_graph *build(fz_in *in, int64_t *N)
{
    bld B = { NULL, in, 1, 0 }, *b = &B;
    if (qk_graph_create(&b->g) != QK_OK)
        return NULL;
    static const char *const arith[] = { "fp32", "gemmlowp", "pot", "none" };
    uint8_t a = fz_u8(in);
    qk_graph_set_meta(b->g, "qkit.quantized", "1");
    qk_graph_set_meta(b->g, "qkit.backend", "fuzz");
    if (a < 250)
        qk_graph_set_meta(b->g, "qkit.arith", arith[a % 4]);
    *N = fz_range(in, 1, 2);
    int C = fz_range(in, 1, 4), H = fz_range(in, 1, 9), W = fz_range(in, 1, 9);
    int x = qk_graph_add_input(b->g, "x", QK_F32, 4, (int64_t[]){ -1, C, H, W });
    qk_dtype adt = pick_dt(b);
    int xd = qdq(b, x, adt);

    /* Conv */
    int Co = fz_range(in, 1, 6), k = fz_range(in, 1, 3), s = fz_range(in, 1, 3), p = fz_range(in, 0, 2);
    int d = fz_range(in, 1, 2), grp = (fz_u8(in) & 3) == 0 ? C : 1;
    if (grp > 1)
        Co = C;
    int w = wdq(b, 4, (int64_t[]){ Co, C / grp, k, k }, Co);
    int cin[3] = { xd, w, -1 }, nin = 2;
    if (fz_u8(in) & 1) {
        float bias[6];
        for (int i = 0; i < Co; i++)
            bias[i] = fz_float(in);
        cin[2] = init_t(b, "conv_bias", QK_F32, 1, (int64_t[]){ Co }, bias);
        nin = 3;
    }
    int y = node(b, "Conv", nin, cin);
    int cn = last(b);
    qk_node_set_ints(b->g, cn, "kernel_shape", 2, (int64_t[]){ k, k });
    qk_node_set_ints(b->g, cn, "strides", 2, (int64_t[]){ s, s });
    qk_node_set_ints(b->g, cn, "pads", 4, (int64_t[]){ p, p, p, p });
    qk_node_set_ints(b->g, cn, "dilations", 2, (int64_t[]){ d, d });
    if (grp > 1)
        qk_node_set_int(b->g, cn, "group", grp);
    y = act(b, y);
    int out_q = fz_u8(in) % 4 != 0; /* else TensorRT style: float after the conv */
    if (out_q)
        y = qdq(b, y, adt);

    /* second stage */
    int feat = Co;
    switch (fz_u8(in) % 6) {
    case 1:
        y = node(b, "MaxPool", 1, &y);
        qk_node_set_ints(b->g, last(b), "kernel_shape", 2, (int64_t[]){ 2, 2 });
        qk_node_set_ints(b->g, last(b), "strides", 2, (int64_t[]){ 1, 1 });
        break;
    case 2:
        y = node(b, "AveragePool", 1, &y);
        qk_node_set_ints(b->g, last(b), "kernel_shape", 2, (int64_t[]){ 2, 2 });
        qk_node_set_ints(b->g, last(b), "pads", 4, (int64_t[]){ 0, 0, 1, 1 });
        y = qdq(b, y, adt);
        break;
    case 3:
        y = node(b, "Add", 2, (int[]){ y, y });
        y = act(b, y);
        y = qdq(b, y, adt);
        break;
    case 4:
        y = node(b, "Concat", 2, (int[]){ y, y });
        qk_node_set_int(b->g, last(b), "axis", 1);
        y = qdq(b, y, adt);
        feat = 2 * Co;
        break;
    default:
        break;
    }

    /* head: GlobalAveragePool -> Q/DQ -> Flatten -> Gemm(DQ weight) [-> Q/DQ] */
    if (fz_u8(in) & 1) {
        y = node(b, "GlobalAveragePool", 1, &y);
        y = qdq(b, y, adt);
        y = node(b, "Flatten", 1, &y);
        int K = fz_range(in, 1, 5);
        int gw = wdq(b, 2, (int64_t[]){ K, feat }, K);
        float gb[5];
        for (int i = 0; i < K; i++)
            gb[i] = fz_float(in);
        int gbv = init_t(b, "fc_bias", QK_F32, 1, (int64_t[]){ K }, gb);
        y = node(b, "Gemm", 3, (int[]){ y, gw, gbv });
        qk_node_set_int(b->g, last(b), "transB", 1);
        y = act(b, y);
        if (fz_u8(in) & 1)
            y = qdq(b, y, adt);
    }
    if (y < 0 || qk_graph_add_output(b->g, y) != QK_OK)
        b->ok = 0;
    if (!b->ok) {
        qk_graph_destroy(b->g);
        return NULL;
    }
    return b->g;
}

/* plan at batch N, fill the input from the rest of the fuzz input, run */
static void run(qk_graph *g, int64_t N, fz_in *in)
{
    fz_limit(g);
    if (qk_graph_plan(g, N, 0, NULL) != QK_OK || fz_work(g) > FZ_MAX_WORK)
        return;
    qk_tensor *x = &g->values[g->inputs[0]].t;
    float *xf = x->data;
    fz_in vals = *in;
    for (int64_t i = 0; i < qk_tensor_numel(x); i++)
        xf[i] = (float)(int8_t)fz_u8(&vals) * 0.25f;
    (void)qk_graph_forward(g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_init();
    fz_in in = { data, size };
    int64_t N = 1;
    qk_graph *g = build(&in, &N);
    if (!g)
        return 0;
    qk_graph *low = NULL;
    if (qk_qdq_lower(g, NULL, &low, NULL) == QK_OK) {
        run(low, N, &in);
        qk_graph_destroy(low);
    }
    if (qk_ops_bind(g) == QK_OK) /* the fake-quantized graph */
        run(g, N, &in);
    qk_graph_destroy(g);
    return 0;
}
