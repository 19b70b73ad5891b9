/* Plan options and binding: two graphs planned with different options in
 * one process each get their own behaviour (fusion, reference kernels, the
 * QLinear rounding, the profiler); qk_graph_bind's errors name the node. */
#include "qkit/graph.h"
#include "qkit/int.h"
#include "qkit/ops.h"
#include "qkit/quant.h"
#include "qkit/registry.h"
#include "qt.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- building blocks ---- */

static int add_const(qk_graph *g, const char *name, qk_dtype dt, int nd, const int64_t *dims, const void *data)
{
    qk_tensor t;
    if (qk_tensor_alloc(&t, dt, nd, dims) != QK_OK)
        return -1;
    memcpy(t.data, data, qk_tensor_bytes(&t));
    int id = qk_graph_add_init(g, name, QK_VALUE_CONST, &t);
    if (id < 0)
        qk_tensor_free(&t);
    return id;
}

static int add_node(qk_graph *g, const char *op, const char *name, int n_in, const int *in, const char *out_name)
{
    int y = qk_graph_add_value(g, out_name, QK_VALUE_ACT);
    return y < 0 || qk_graph_add_node(g, op, name, n_in, in, 1, &y) < 0 ? -1 : y;
}

static float frand(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* x[N,C,hw,hw] -> Conv kxk (C -> C, group 1 or C) -> BatchNormalization
 * [-> Relu (relu 1), or Clip -0.25..0.5 (relu 2)] -> out. Each shape takes another conv path: 3x3 at 8x8
 * (im2col), 3x3 at 16x16 (the flat kernel on AVX-512), 1x1, depthwise. */
enum { N = 2, C = 32, HW = 8, HWMAX = 16 };
typedef struct cbr_shape {
    int k, group, hw, relu;
} cbr_shape;
static const cbr_shape cbr_default = { 3, 1, HW, 1 };
static qk_graph *conv_bn_act(cbr_shape sh)
{
    qk_graph *g;
    if (qk_graph_create(&g) != QK_OK)
        return NULL;
    uint32_t s = 7;
    static float w[C * C * 9], sc[C], bi[C], mu[C], va[C];
    for (int i = 0; i < C * C * 9; i++)
        w[i] = frand(&s) * 0.2f;
    for (int i = 0; i < C; i++)
        sc[i] = 1.0f + 0.1f * frand(&s), bi[i] = 0.1f * frand(&s), mu[i] = 0.1f * frand(&s),
        va[i] = 1.0f + 0.5f * fabsf(frand(&s));
    int x = qk_graph_add_input(g, "x", QK_F32, 4, (int64_t[]){ -1, C, sh.hw, sh.hw });
    int wv = add_const(g, "w", QK_F32, 4, (int64_t[]){ C, C / sh.group, sh.k, sh.k }, w);
    int cv = add_node(g, "Conv", "conv", 2, (int[]){ x, wv }, "conv_out");
    int bn[5] = { cv, add_const(g, "sc", QK_F32, 1, (int64_t[]){ C }, sc),
                  add_const(g, "bi", QK_F32, 1, (int64_t[]){ C }, bi),
                  add_const(g, "mu", QK_F32, 1, (int64_t[]){ C }, mu),
                  add_const(g, "va", QK_F32, 1, (int64_t[]){ C }, va) };
    int b = add_node(g, "BatchNormalization", "bn", 5, bn, sh.relu ? "bn_out" : "out");
    int lo = add_const(g, "lo", QK_F32, 0, NULL, (float[]){ -0.25f });
    int hi = add_const(g, "hi", QK_F32, 0, NULL, (float[]){ 0.5f });
    int r = sh.relu == 1 ? add_node(g, "Relu", "relu", 1, &b, "out")
          : sh.relu == 2 ? add_node(g, "Clip", "clip", 3, (int[]){ b, lo, hi }, "out")
                         : b;
    int conv = qk_graph_find_node(g, "conv");
    int64_t p = sh.k / 2;
    if (r < 0 || conv < 0 || qk_node_set_ints(g, conv, "pads", 4, (int64_t[]){ p, p, p, p }) != QK_OK ||
        qk_node_set_int(g, conv, "group", sh.group) != QK_OK ||
        qk_graph_add_output(g, r) != QK_OK || qk_ops_bind(g) != QK_OK) {
        qk_graph_destroy(g);
        return NULL;
    }
    return g;
}

static qk_graph *conv_bn_relu(void)
{
    return conv_bn_act(cbr_default);
}

static void fill_input(qk_graph *g)
{
    uint32_t s = 11;
    qk_tensor *t = &g->values[g->inputs[0]].t;
    float *x = qk_f32(t);
    for (int64_t i = 0; i < qk_tensor_numel(t); i++)
        x[i] = frand(&s);
}

static void fill_nan(qk_graph *g, const char *name)
{
    int v = qk_graph_find_value(g, name);
    if (v < 0)
        return;
    qk_tensor *t = &g->values[v].t;
    for (int64_t i = 0; i < qk_tensor_numel(t); i++)
        qk_f32(t)[i] = NAN;
}

static int is_nan_value(qk_graph *g, const char *name)
{
    return isnan(qk_f32(&g->values[qk_graph_find_value(g, name)].t)[0]);
}

/* ---- fusion: an inference Conv applies the BatchNormalization (and its
 * Relu) itself, a training plan's BatchNormalization runs the Relu, bit for
 * bit the unfused graph, unless no_fuse ---- */
static void test_fusion_shape(cbr_shape sh, int training)
{
    qk_graph *a = conv_bn_act(sh), *b = conv_bn_act(sh);
    QT_CHECK(a && b, "build: %s", qk_last_error());
    if (!a || !b)
        goto done;
    qk_graph_set_options(b, &(qk_plan_options){ .no_fuse = 1 });
    QT_OK(qk_graph_plan(a, N, training, NULL));
    QT_OK(qk_graph_plan(b, N, training, NULL));
    for (int round = 0; round < 2; round++) { /* options survive a re-plan */
        qk_graph *gs[2] = { a, b };
        for (int k = 0; k < 2; k++) {
            fill_input(gs[k]);
            fill_nan(gs[k], "bn_out"); /* a fused BatchNormalization never writes its own output */
            fill_nan(gs[k], "conv_out"); /* nor does a Conv that applies it */
            QT_OK(qk_graph_forward(gs[k]));
        }
        if (sh.relu)
            QT_CHECK(is_nan_value(a, "bn_out") && !is_nan_value(b, "bn_out"),
                     "k%d g%d hw%d train %d round %d: fused graph skips the BN output, unfused writes it", sh.k,
                     sh.group, sh.hw, training, round);
        QT_CHECK(is_nan_value(a, "conv_out") == !training && !is_nan_value(b, "conv_out"),
                 "k%d g%d hw%d train %d round %d: the Conv's own output is skipped only when it applies the BN",
                 sh.k, sh.group, sh.hw, training, round);
        const qk_tensor *ya = &a->values[a->outputs[0]].t, *yb = &b->values[b->outputs[0]].t;
        QT_CHECK(memcmp(ya->data, yb->data, qk_tensor_bytes(ya)) == 0,
                 "k%d g%d hw%d relu %d train %d round %d: fused and unfused outputs differ", sh.k, sh.group, sh.hw,
                 sh.relu, training, round);
        QT_CHECK(b->opts.no_fuse == 1 && a->opts.no_fuse == 0, "options kept");
        QT_OK(qk_graph_plan(a, N, training, NULL));
        QT_OK(qk_graph_plan(b, N, training, NULL));
    }
done:
    qk_graph_destroy(a);
    qk_graph_destroy(b);
}

static void test_fusion(void)
{
    static const cbr_shape shapes[] = { { 3, 1, HW, 1 }, { 3, 1, HWMAX, 1 }, { 1, 1, HW, 1 },
                                        { 3, C, HW, 1 }, { 3, 1, HWMAX, 0 }, { 3, C, HW, 0 },
                                        { 3, 1, HW, 2 }, { 3, 1, HWMAX, 2 }, { 1, 1, HW, 2 },
                                        { 3, C, HW, 2 } };
    for (int i = 0; i < (int)(sizeof shapes / sizeof shapes[0]); i++)
        for (int training = 0; training < 2; training++)
            test_fusion_shape(shapes[i], training);
}

/* ---- DequantizeLinear [-> Clip] -> GlobalAveragePool run by the
 * DequantizeLinear (inference), bit for bit the three ops: uint8, int8 and
 * int32 codes, per-channel and per-tensor scales, 7x7 planes (a 16-lane
 * block and a tail) and 5x5 (tail only), with and without the Clip ---- */
static void test_dq_gap_case(qk_dtype dt, int per_channel, int hw, int clip)
{
    enum { NB = 3, CH = 5 };
    qk_graph *gs[2] = { NULL, NULL };
    float out[2][NB * CH];
    uint32_t seed = 5;
    static float sc[CH];
    for (int c = 0; c < CH; c++)
        sc[c] = 0.01f + 0.003f * (float)c;
    for (int k = 0; k < 2; k++) {
        qk_graph *g;
        if (qk_graph_create(&g) != QK_OK)
            return;
        gs[k] = g;
        int x = qk_graph_add_input(g, "x", dt, 4, (int64_t[]){ -1, CH, hw, hw });
        int s = per_channel ? add_const(g, "s", QK_F32, 1, (int64_t[]){ CH }, sc)
                            : add_const(g, "s", QK_F32, 0, NULL, sc);
        int32_t z32[CH] = { 0 };
        uint8_t z8[CH] = { 3, 250, 128, 0, 77 };
        int nz = dt == QK_I32 ? 1 : 0;
        int z = nz ? add_const(g, "z", QK_I32, per_channel ? 1 : 0, (int64_t[]){ CH }, z32)
                   : add_const(g, "z", dt, per_channel ? 1 : 0, (int64_t[]){ CH }, z8);
        int d = add_node(g, "DequantizeLinear", "dq", 3, (int[]){ x, s, z }, "dq_out");
        int lo = add_const(g, "lo", QK_F32, 0, NULL, (float[]){ -0.5f });
        int hi = add_const(g, "hi", QK_F32, 0, NULL, (float[]){ 0.75f });
        int c = clip ? add_node(g, "Clip", "clip", 3, (int[]){ d, lo, hi }, "clip_out") : d;
        int y = add_node(g, "GlobalAveragePool", "gap", 1, &c, "out");
        QT_CHECK(y >= 0 && qk_graph_add_output(g, y) == QK_OK && qk_ops_bind(g) == QK_OK, "build: %s",
                 qk_last_error());
        if (k == 1)
            qk_graph_set_options(g, &(qk_plan_options){ .no_fuse = 1 });
        QT_OK(qk_graph_plan(g, NB, 0, NULL));
        qk_tensor *xt = &g->values[g->inputs[0]].t;
        seed = 5;
        for (int64_t i = 0; i < qk_tensor_numel(xt); i++) {
            seed = seed * 1664525u + 1013904223u;
            int32_t v = (int32_t)(seed >> 8);
            if (dt == QK_I32)
                ((int32_t *)xt->data)[i] = v % 300;
            else
                ((uint8_t *)xt->data)[i] = (uint8_t)v;
        }
        fill_nan(g, "dq_out");
        fill_nan(g, "clip_out");
        QT_OK(qk_graph_forward(g));
        memcpy(out[k], g->values[g->outputs[0]].t.data, sizeof out[k]);
        QT_CHECK(is_nan_value(g, "dq_out") == !k && (!clip || is_nan_value(g, "clip_out") == !k),
                 "%s pc %d hw %d clip %d: the fused chain writes neither float tensor, the unfused both (k %d)",
                 qk_dtype_name(dt), per_channel, hw, clip, k);
    }
    QT_CHECK(memcmp(out[0], out[1], sizeof out[0]) == 0,
             "%s pc %d hw %d clip %d: DequantizeLinear -> Clip -> GlobalAveragePool fused differs from the three ops",
             qk_dtype_name(dt), per_channel, hw, clip);
    qk_graph_destroy(gs[0]);
    qk_graph_destroy(gs[1]);
}

static void test_dq_gap(void)
{
    static const qk_dtype dts[] = { QK_U8, QK_I8, QK_I32 };
    for (int d = 0; d < 3; d++)
        for (int pc = 0; pc < 2; pc++)
            for (int clip = 0; clip < 2; clip++) {
                test_dq_gap_case(dts[d], pc, 7, clip);
                test_dq_gap_case(dts[d], pc, 5, clip);
            }
}

/* ---- reference kernels vs the fast path, side by side ---- */
static void run_copy(qk_graph *g, float *out)
{
    fill_input(g);
    QT_OK(qk_graph_forward(g));
    const qk_tensor *y = &g->values[g->outputs[0]].t;
    memcpy(out, y->data, qk_tensor_bytes(y));
}

static void test_reference(void)
{
    enum { NY = N * C * HW * HW };
    static float y[4][NY];
    qk_graph *g[4] = { conv_bn_relu(), conv_bn_relu(), conv_bn_relu(), conv_bn_relu() };
    QT_CHECK(g[0] && g[1] && g[2] && g[3], "build: %s", qk_last_error());
    if (!g[0] || !g[1] || !g[2] || !g[3])
        goto done;
    /* 0, 2: reference; 1, 3: fast (default); planned and run interleaved */
    for (int k = 0; k < 4; k++) {
        qk_graph_set_options(g[k], &(qk_plan_options){ .reference = !(k & 1), .no_fuse = 1 });
        QT_OK(qk_graph_plan(g[k], N, 0, NULL));
    }
    for (int k = 0; k < 4; k++)
        run_copy(g[k], y[k]);
    QT_CHECK(memcmp(y[0], y[2], sizeof y[0]) == 0, "two reference graphs agree");
    QT_CHECK(memcmp(y[1], y[3], sizeof y[1]) == 0, "two fast graphs agree");
    /* Conv with K = 288 terms: the plain loops and the GEMM library sum in
     * different orders, so some output differs in its last bits */
    QT_CHECK(memcmp(y[0], y[1], sizeof y[0]) != 0, "reference and fast graphs gave the same bits");
    double err = 0;
    for (int i = 0; i < NY; i++)
        err = fmax(err, fabs((double)y[0][i] - y[1][i]));
    QT_CHECK(err < 1e-4, "reference vs fast: max |diff| %g", err);
    /* the float GEMM choice per graph: the reference sgemm equals neither
     * library bit for bit necessarily, but each graph repeats its own bits */
    qk_graph_set_options(g[2], &(qk_plan_options){ .sgemm = QK_SGEMM_REFERENCE, .no_fuse = 1 });
    qk_graph_set_options(g[3], &(qk_plan_options){ .sgemm = QK_SGEMM_OPENBLAS, .no_fuse = 1 });
    QT_OK(qk_graph_plan(g[2], N, 0, NULL));
    QT_OK(qk_graph_plan(g[3], N, 0, NULL));
    static float z[2][NY];
    run_copy(g[2], z[0]);
    run_copy(g[3], z[1]);
    run_copy(g[1], y[3]);
    QT_CHECK(memcmp(y[1], y[3], sizeof y[1]) == 0, "default sgemm graph unchanged by the others' options");
    double e2 = 0;
    for (int i = 0; i < NY; i++)
        e2 = fmax(e2, fmax(fabs((double)z[0][i] - y[1][i]), fabs((double)z[1][i] - y[1][i])));
    QT_CHECK(e2 < 1e-4, "sgemm reference / openblas vs default: max |diff| %g", e2);
done:
    for (int k = 0; k < 4; k++)
        qk_graph_destroy(g[k]);
}

/* ---- QLinearConv output rounding per graph ----
 * x = 1, 3, 5, 7 (uint8, zero point 0), a 1x1 weight 1, scales 1, 1 and
 * y_scale 2: acc * scale = 0.5, 1.5, 2.5, 3.5, exact ties. ONNX Runtime's
 * FP32 stage rounds half to even (0, 2, 2, 4); GEMMLOWP rounds half away
 * (1, 2, 3, 4). */
static qk_graph *qlinear_conv(void)
{
    qk_graph *g;
    if (qk_graph_create(&g) != QK_OK)
        return NULL;
    int x = qk_graph_add_input(g, "x", QK_U8, 4, (int64_t[]){ 1, 1, 1, 4 });
    float one = 1.0f, two = 2.0f;
    uint8_t zero = 0, w1 = 1;
    int in[8] = { x,
                  add_const(g, "xs", QK_F32, 0, NULL, &one),
                  add_const(g, "xz", QK_U8, 0, NULL, &zero),
                  add_const(g, "w", QK_U8, 4, (int64_t[]){ 1, 1, 1, 1 }, &w1),
                  add_const(g, "ws", QK_F32, 0, NULL, &one),
                  add_const(g, "wz", QK_U8, 0, NULL, &zero),
                  add_const(g, "ys", QK_F32, 0, NULL, &two),
                  add_const(g, "yz", QK_U8, 0, NULL, &zero) };
    int y = add_node(g, "QLinearConv", "qconv", 8, in, "y");
    if (y < 0 || qk_graph_add_output(g, y) != QK_OK || qk_ops_bind(g) != QK_OK) {
        qk_graph_destroy(g);
        return NULL;
    }
    return g;
}

static void test_onnx_rounding(void)
{
    qk_graph *a = qlinear_conv(), *b = qlinear_conv();
    QT_CHECK(a && b, "build: %s", qk_last_error());
    if (!a || !b)
        goto done;
    qk_graph_set_options(b, &(qk_plan_options){ .onnx_rounding = QK_RQ_GEMMLOWP });
    QT_CHECK(qk_int_onnx_rounding(a) == QK_RQ_FP32 && qk_int_onnx_rounding(b) == QK_RQ_GEMMLOWP,
             "qk_int_onnx_rounding per graph");
    QT_OK(qk_graph_plan(a, 1, 0, NULL));
    QT_OK(qk_graph_plan(b, 1, 0, NULL));
    static const uint8_t xs[4] = { 1, 3, 5, 7 }, want_a[4] = { 0, 2, 2, 4 }, want_b[4] = { 1, 2, 3, 4 };
    for (int round = 0; round < 2; round++) {
        memcpy(a->values[a->inputs[0]].t.data, xs, 4);
        memcpy(b->values[b->inputs[0]].t.data, xs, 4);
        QT_OK(qk_graph_forward(b));
        QT_OK(qk_graph_forward(a));
        const uint8_t *ya = a->values[a->outputs[0]].t.data, *yb = b->values[b->outputs[0]].t.data;
        QT_CHECK(memcmp(ya, want_a, 4) == 0, "FP32 graph: %d %d %d %d", ya[0], ya[1], ya[2], ya[3]);
        QT_CHECK(memcmp(yb, want_b, 4) == 0, "GEMMLOWP graph: %d %d %d %d", yb[0], yb[1], yb[2], yb[3]);
        /* the same with the reference kernels */
        qk_graph_set_options(a, &(qk_plan_options){ .reference = 1 });
        qk_graph_set_options(b, &(qk_plan_options){ .reference = 1, .onnx_rounding = QK_RQ_GEMMLOWP });
        QT_OK(qk_graph_plan(a, 1, 0, NULL));
        QT_OK(qk_graph_plan(b, 1, 0, NULL));
    }
done:
    qk_graph_destroy(a);
    qk_graph_destroy(b);
}

/* ---- a profiler records only the graphs whose options name it ---- */
static int prof_has(const qk_profiler *p, const char *name, long *calls)
{
    for (int i = 0; i < qk_profiler_rows(p); i++) {
        const char *nm;
        long c;
        if (qk_profiler_row(p, i, &nm, NULL, NULL, &c) && !strcmp(nm, name)) {
            if (calls)
                *calls = c;
            return 1;
        }
    }
    return 0;
}

static void test_profiler(void)
{
    qk_profiler *pa = NULL, *pn = NULL;
    QT_OK(qk_profiler_create(0, &pa));
    QT_OK(qk_profiler_create(1, &pn));
    qk_graph *a = conv_bn_relu(), *b = qlinear_conv(), *c = conv_bn_relu();
    QT_CHECK(pa && pn && a && b && c, "build: %s", qk_last_error());
    if (!pa || !pn || !a || !b || !c)
        goto done;
    qk_graph_set_options(a, &(qk_plan_options){ .profiler = pa });
    qk_graph_set_options(b, &(qk_plan_options){ .profiler = pn });
    QT_OK(qk_graph_plan(a, N, 0, NULL));
    QT_OK(qk_graph_plan(b, 1, 0, NULL));
    QT_OK(qk_graph_plan(c, N, 0, NULL)); /* no profiler */
    for (int r = 0; r < 3; r++) {
        QT_OK(qk_graph_forward(a));
        QT_OK(qk_graph_forward(b));
        QT_OK(qk_graph_forward(c));
    }
    long calls = 0;
    QT_CHECK(prof_has(pa, "Conv", &calls) && calls == 3, "per-op profiler: Conv, 3 calls (%ld)", calls);
    QT_CHECK(!prof_has(pa, "QLinearConv", NULL) && !prof_has(pa, "qconv", NULL),
             "per-op profiler holds nothing of the other graph");
    QT_CHECK(qk_profiler_rows(pn) == 1 && prof_has(pn, "qconv", &calls) && calls == 3,
             "per-node profiler: only node qconv (%d rows)", qk_profiler_rows(pn));
    int rows_a = qk_profiler_rows(pa);
    QT_OK(qk_graph_forward(c));
    QT_CHECK(qk_profiler_rows(pa) == rows_a && prof_has(pa, "Conv", &calls) && calls == 3,
             "a graph without a profiler records nothing");
    FILE *f = tmpfile();
    if (f) {
        char buf[512] = "";
        qk_profiler_print(pa, f);
        rewind(f);
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = 0;
        fclose(f);
        QT_CHECK(strstr(buf, "qkit profile") && strstr(buf, "Conv"), "print: %s", buf);
    }
    qk_profiler_reset(pa);
    QT_CHECK(qk_profiler_rows(pa) == 0, "reset");
done:
    qk_graph_destroy(a);
    qk_graph_destroy(b);
    qk_graph_destroy(c);
    qk_profiler_destroy(pa);
    qk_profiler_destroy(pn);
}

/* ---- qk_graph_bind: errors name the node and operator ---- */
static int init_calls, destroy_calls;
static qk_status bad_init(qk_graph *g, qk_node *n)
{
    (void)g;
    init_calls++;
    n->state = qk_malloc(16);
    return qk_error(QK_ERR_ARG, "attribute 'k' is bad");
}
static void bad_destroy(qk_node *n)
{
    destroy_calls++;
    qk_free(n->state);
}
static const qk_op op_a = { .type = "Twin", .forward = NULL, .domain = "com.example" };
static const qk_op op_b = { .type = "Broken", .init = bad_init, .destroy = bad_destroy };
static const qk_op *const my_ops[] = { &op_a, &op_b, NULL };
static const qk_op_table my_table = { "test", my_ops };

static qk_status bind_one(const char *op, const char *domain, const qk_op_table *t, int nt, qk_graph **out)
{
    qk_graph *g;
    qk_graph_create(&g);
    int x = qk_graph_add_input(g, "x", QK_F32, 2, (int64_t[]){ -1, 4 });
    int y = add_node(g, op, "the_node", 1, &x, "y");
    qk_graph_add_output(g, y);
    if (domain)
        g->nodes[0].domain = qk_strdup(domain);
    qk_status st = qk_graph_bind(g, t, nt);
    if (out)
        *out = g;
    else
        qk_graph_destroy(g);
    return st;
}

static void expect(qk_status got, qk_status want, const char *n1, const char *n2, const char *what)
{
    const char *m = qk_last_error();
    QT_CHECK(got == want && strstr(m, n1) && (!n2 || strstr(m, n2)), "%s: got %s '%s'", what, qk_status_str(got), m);
}

static void test_bind(void)
{
    const qk_op_table fl[] = { qk_float_op_table };
    const qk_op_table fq[] = { qk_float_op_table, qk_quant_op_table };
    QT_OK(bind_one("Relu", NULL, fl, 1, NULL));
    QT_OK(bind_one("Relu", "ai.onnx", fl, 1, NULL));
    expect(bind_one("NoSuchOp", NULL, fl, 1, NULL), QK_ERR_UNSUPPORTED, "the_node", "qkit info --ops", "unknown op");
    /* a layer's table alone does not know the layers above */
    expect(bind_one("QuantizeLinear", NULL, fl, 1, NULL), QK_ERR_UNSUPPORTED, "the_node", "QuantizeLinear",
           "float table only");
    expect(bind_one("FakeQuant", NULL, fq, 2, NULL), QK_ERR_UNSUPPORTED, "FakeQuant", "in domain ''",
           "FakeQuant in the default domain");
    expect(bind_one("Relu", "ai.qkit", fq, 2, NULL), QK_ERR_UNSUPPORTED, "Relu", "in domain 'ai.qkit'",
           "Relu in domain ai.qkit");
    expect(bind_one("Relu", "com.other", fq, 2, NULL), QK_ERR_UNSUPPORTED, "operator domain 'com.other'",
           "the_node", "unknown domain");
    const qk_op_table mine[] = { qk_float_op_table, my_table };
    qk_graph *g = NULL;
    QT_OK(bind_one("Twin", "com.example", mine, 2, &g));
    QT_CHECK(g && g->nodes[0].op == &op_a, "bound by (domain, op_type)");
    qk_graph_destroy(g);
    expect(bind_one("Twin", NULL, mine, 2, NULL), QK_ERR_UNSUPPORTED, "Twin", "in domain", "Twin in default");
    g = NULL;
    qk_status st = bind_one("Broken", NULL, mine, 2, &g);
    expect(st, QK_ERR_ARG, "node 'the_node' (Broken)", "attribute 'k' is bad", "init failure");
    QT_CHECK(g && g->nodes[0].op == NULL && g->nodes[0].state == NULL && init_calls == 1 && destroy_calls == 1,
             "init failure: node left unbound, state freed");
    qk_graph_destroy(g);
    QT_CHECK(qk_graph_bind(NULL, fl, 1) == QK_ERR_ARG, "NULL graph");
    /* the joined registry: every layer's operators, each listed once */
    int n = 0, dup = 0;
    const char *const *names = qk_op_names();
    for (; names[n]; n++)
        for (int k = 0; k < n; k++)
            dup += !strcmp(names[k], names[n]);
    int want = 0;
    const qk_op_table all[] = { qk_float_op_table, qk_quant_op_table, qk_int_op_table };
    for (int t = 0; t < 3; t++)
        for (int i = 0; all[t].ops[i]; i++)
            want++;
    QT_CHECK(n == want && dup == 0, "qk_op_names: %d names (want %d), %d repeated", n, want, dup);
    QT_CHECK(qk_op_find("QLinearConv") && qk_op_find("QkConv") && qk_op_find("FakeQuant") && qk_op_find("Conv") &&
             !qk_op_find("NoSuchOp"), "qk_op_find over all layers");
    QT_CHECK(qk_op_table_find(all, 3, "ai.qkit", "QkConv") && !qk_op_table_find(all, 3, NULL, "QkConv"),
             "qk_op_table_find by domain");
}

/* ---- slice: an inference forward in slices of the batch gives the
 * whole batch's outputs bit for bit (a last short slice too), keeps the
 * input and output buffers and the batch; a graph whose values are not
 * batch-major, one that mixes samples (softmax over axis 0), and a
 * training plan run whole ---- */
/* x -> op with axis 0 -> out: Flatten (values no longer batch-major) or
 * Softmax (same shape, the samples mixed) */
static qk_graph *axis0_graph(const char *op)
{
    qk_graph *g;
    if (qk_graph_create(&g) != QK_OK)
        return NULL;
    int x = qk_graph_add_input(g, "x", QK_F32, 4, (int64_t[]){ -1, C, HW, HW });
    int y = add_node(g, op, "op", 1, &x, "out");
    if (y < 0 || qk_node_set_int(g, qk_graph_find_node(g, "op"), "axis", 0) != QK_OK ||
        qk_graph_add_output(g, y) != QK_OK || qk_ops_bind(g) != QK_OK) {
        qk_graph_destroy(g);
        return NULL;
    }
    return g;
}

static void test_slice_case(const char *what, qk_graph *a, qk_graph *b, int training, int64_t batch, int64_t slice)
{
    QT_CHECK(a && b, "%s: build: %s", what, qk_last_error());
    if (!a || !b)
        goto done;
    qk_graph_set_options(a, &(qk_plan_options){ .slice = slice });
    QT_OK(qk_graph_plan(a, batch, training, NULL));
    QT_OK(qk_graph_plan(b, batch, training, NULL));
    fill_input(a);
    fill_input(b);
    const void *in = a->values[a->inputs[0]].t.data, *out = a->values[a->outputs[0]].t.data;
    QT_OK(qk_graph_forward(a));
    QT_OK(qk_graph_forward(b));
    const qk_tensor *ya = &a->values[a->outputs[0]].t, *yb = &b->values[b->outputs[0]].t;
    QT_CHECK(a->batch == batch && qk_shape_equal(ya, yb) && ya->data == out && a->values[a->inputs[0]].t.data == in,
             "%s: batch, shapes and buffers restored", what);
    QT_CHECK(qk_shape_equal(ya, yb) && memcmp(ya->data, yb->data, qk_tensor_bytes(ya)) == 0,
             "%s: sliced and whole outputs differ", what);
done:
    qk_graph_destroy(a);
    qk_graph_destroy(b);
}

static void test_slice(void)
{
    static const cbr_shape shapes[] = { { 3, 1, HW, 1 }, { 3, 1, HWMAX, 1 }, { 3, C, HW, 2 } };
    for (int i = 0; i < 3; i++) {
        char what[64];
        snprintf(what, sizeof what, "slice k%d g%d hw%d", shapes[i].k, shapes[i].group, shapes[i].hw);
        test_slice_case(what, conv_bn_act(shapes[i]), conv_bn_act(shapes[i]), 0, 21, 8);
    }
    test_slice_case("slice training plan", conv_bn_relu(), conv_bn_relu(), 1, 21, 8);
    test_slice_case("slice not batch-major", axis0_graph("Flatten"), axis0_graph("Flatten"), 0, 5, 2);
    test_slice_case("slice softmax over the batch", axis0_graph("Softmax"), axis0_graph("Softmax"), 0, 5, 2);
    QT_CHECK(qk_slice_for_threads(1) == 32 && qk_slice_for_threads(2) == 32 && qk_slice_for_threads(4) == 64,
             "slice sizes");
}

int main(void)
{
    test_bind();
    test_fusion();
    test_dq_gap();
    test_reference();
    test_onnx_rounding();
    test_profiler();
    test_slice();
    return qt_finish("test_options");
}
