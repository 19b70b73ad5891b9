/* Lowering QDQ graphs to the integer engine (qrun.h): hand-built QDQ graphs
 * (Conv+Relu, Gemm, residual Add, pools, Concat; uint8 asymmetric per
 * tensor, int8 symmetric per channel, power of two) checked bit-exactly on
 * codes against scalar references written here, dequantized outputs against
 * the fake-quant float graph, the docs/ALGORITHMS.md §7 worked example,
 * 1 vs 2 threads, bad parameters, the runner API and examples/qkit_infer. */
#include "qkit/qkit.h"
#include "qt.h"
#include "../src/int/lower/lower_ops.h"

#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------ graph helpers */

static int init_t(qk_graph *g, const char *name, qk_dtype dt, int ndim, const int64_t *dims, const void *data)
{
    qk_tensor t = { 0 };
    if (qk_tensor_alloc(&t, dt, ndim, dims) != QK_OK)
        return -1;
    memcpy(t.data, data, qk_tensor_bytes(&t));
    int v = qk_graph_add_init(g, name, QK_VALUE_CONST, &t);
    qk_tensor_free(&t);
    return v;
}

static int node(qk_graph *g, const char *op, const char *name, int nin, const int *in, const char *out)
{
    int o = qk_graph_add_value(g, out, QK_VALUE_ACT);
    qk_graph_add_node(g, op, name, nin, in, 1, &o);
    return o;
}

/* zero point tensor of type dt */
static int zp_t(qk_graph *g, const char *name, qk_dtype dt, int n, const int32_t *z)
{
    uint8_t u[256];
    int8_t s[256];
    for (int i = 0; i < n; i++)
        u[i] = (uint8_t)z[i], s[i] = (int8_t)z[i];
    int64_t d = n;
    return init_t(g, name, dt, n == 1 ? 0 : 1, &d, dt == QK_U8 ? (const void *)u : (const void *)s);
}

/* x -> Q -> DQ; returns the DQ output. */
static int qdq(qk_graph *g, int x, const char *base, float s, int32_t z, qk_dtype dt)
{
    char b1[96], b2[96], b3[96], b4[96];
    snprintf(b1, sizeof b1, "%s_scale", base);
    snprintf(b2, sizeof b2, "%s_zero_point", base);
    snprintf(b3, sizeof b3, "%s_quantized", base);
    snprintf(b4, sizeof b4, "%s_dequantized", base);
    int sv = init_t(g, b1, QK_F32, 0, NULL, &s), zv = zp_t(g, b2, dt, 1, &z);
    int q = node(g, "QuantizeLinear", b3, 3, (int[]){ x, sv, zv }, b3);
    return node(g, "DequantizeLinear", b4, 3, (int[]){ q, sv, zv }, b4);
}

/* Weight codes + DQ (per channel along axis when ns > 1). */
static int wdq(qk_graph *g, const char *base, qk_dtype dt, int ndim, const int64_t *dims, const int32_t *codes,
               int ns, const float *s, const int32_t *z, int axis)
{
    char b1[96], b2[96], b3[96], b4[96];
    snprintf(b1, sizeof b1, "%s_quantized", base);
    snprintf(b2, sizeof b2, "%s_scale", base);
    snprintf(b3, sizeof b3, "%s_zero_point", base);
    snprintf(b4, sizeof b4, "%s_dequantized", base);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= dims[i];
    uint8_t *buf = malloc((size_t)n);
    for (int64_t i = 0; i < n; i++)
        buf[i] = (uint8_t)codes[i];
    int cv = init_t(g, b1, dt, ndim, dims, buf);
    free(buf);
    int64_t d = ns;
    int sv = init_t(g, b2, QK_F32, ns == 1 ? 0 : 1, &d, s), zv = zp_t(g, b3, dt, ns, z);
    int o = node(g, "DequantizeLinear", b4, 3, (int[]){ cv, sv, zv }, b4);
    if (ns > 1)
        qk_node_set_int(g, g->n_nodes - 1, "axis", axis);
    return o;
}

static void set_meta(qk_graph *g, const char *arith)
{
    qk_graph_set_meta(g, "qkit.quantized", "1");
    qk_graph_set_meta(g, "qkit.backend", "test");
    if (arith)
        qk_graph_set_meta(g, "qkit.arith", arith);
}

static uint64_t rng_state = 12345;
static float frand(float lo, float hi)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return lo + (hi - lo) * (float)((rng_state >> 40) & 0xffffff) / 16777216.0f;
}
static int32_t irand(int32_t lo, int32_t hi) { return lo + (int32_t)(frand(0, 1) * (float)(hi - lo + 1) * 0.99999f); }

/* Run g (bound here) at batch N on input x; copy output 0 into y. */
static qk_status run_graph(qk_graph *g, int64_t N, const float *x, float *y, qk_pool *pool)
{
    qk_status st = qk_lower_bind(g);
    if (st == QK_OK)
        st = qk_graph_plan(g, N, 0, pool);
    if (st != QK_OK)
        return st;
    qk_tensor *xt = &g->values[g->inputs[0]].t;
    memcpy(xt->data, x, qk_tensor_bytes(xt));
    if ((st = qk_graph_forward(g)) != QK_OK)
        return st;
    qk_tensor *yt = &g->values[g->outputs[0]].t;
    memcpy(y, yt->data, qk_tensor_bytes(yt));
    return QK_OK;
}

static int32_t q_ref(float x, float s, int32_t z, qk_dtype dt)
{
    int32_t lo, hi;
    qk_int_range(dt, &lo, &hi);
    float v = nearbyintf(x / s) + (float)z;
    return v < lo ? lo : v > hi ? hi : (int32_t)v;
}

static const int32_t *codes_of(qk_graph *g, const char *name, qk_dtype *dt)
{
    int v = qk_graph_find_value(g, name);
    if (v < 0)
        return NULL;
    static int32_t buf[1 << 16];
    const qk_tensor *t = &g->values[v].t;
    *dt = t->dtype;
    for (int64_t i = 0; i < qk_tensor_numel(t) && i < (1 << 16); i++)
        buf[i] = t->dtype == QK_U8 ? ((uint8_t *)t->data)[i] : ((int8_t *)t->data)[i];
    return buf;
}

/* fake vs real over one batch: outputs within tol, returns the real graph (caller destroys) */
static qk_graph *fake_vs_real(qk_graph *fake, int64_t N, const float *x, float *yf, float *yr, int64_t ny,
                              double tol, const char *what, qk_pool *pool)
{
    qk_graph *real = NULL;
    qk_lower_stats st;
    QT_OK(qk_qdq_lower(fake, NULL, &real, &st));
    if (!real)
        return NULL;
    QT_OK(run_graph(fake, N, x, yf, pool));
    QT_OK(run_graph(real, N, x, yr, pool));
    double md = 0;
    for (int64_t i = 0; i < ny; i++)
        md = fabs(yf[i] - yr[i]) > md ? fabs(yf[i] - yr[i]) : md;
    QT_CHECK(md <= tol, "%s: fake vs real max |diff| %g > %g", what, md, tol);
    return real;
}

/* ------------------------------------------------------------ Conv + Relu, uint8 asymmetric, fp32 */

static qk_graph *build_conv(const char *arith, qk_dtype at, qk_dtype wt, int perch, float sx, int32_t zx, float sy,
                            int32_t zy, int pot, const char *act, float *wf_s, int32_t *wcodes, float *bias)
{
    qk_graph *g;
    qk_graph_create(&g);
    set_meta(g, arith);
    int x = qk_graph_add_input(g, "x", QK_F32, 4, (int64_t[]){ -1, 3, 6, 5 });
    int xd = qdq(g, x, "x", sx, zx, at);
    int64_t wd[4] = { 5, 3, 3, 3 };
    float ws[5];
    int32_t wz[5];
    int32_t wlo, whi;
    qk_int_range(wt, &wlo, &whi);
    if (wt == QK_I8)
        wlo = -127;
    for (int c = 0; c < 5; c++) {
        ws[c] = pot ? ldexpf(1.0f, -7 - (c % 2)) : 0.004f + 0.001f * (float)c;
        wz[c] = wt == QK_U8 ? 118 + c : 0;
        wf_s[c] = ws[c];
    }
    for (int i = 0; i < 135; i++)
        wcodes[i] = irand(wlo, whi);
    for (int c = 0; c < 5; c++)
        bias[c] = pot ? ldexpf((float)irand(-40, 40), -8) : frand(-0.3f, 0.3f);
    int w = wdq(g, "w", wt, 4, wd, wcodes, perch ? 5 : 1, ws, wz, 0);
    int b = init_t(g, "b", QK_F32, 1, (int64_t[]){ 5 }, bias);
    int y = node(g, "Conv", "conv", 3, (int[]){ xd, w, b }, "conv_out");
    int n = g->n_nodes - 1;
    qk_node_set_ints(g, n, "pads", 4, (int64_t[]){ 1, 1, 1, 0 });
    qk_node_set_ints(g, n, "strides", 2, (int64_t[]){ 1, 2 });
    qk_node_set_ints(g, n, "kernel_shape", 2, (int64_t[]){ 3, 3 });
    if (act && strcmp(act, "relu") == 0) {
        y = node(g, "Relu", "relu", 1, &y, "relu_out");
    } else if (act) { /* relu6 */
        float lo = 0, hi = 6;
        int l = init_t(g, "c_lo", QK_F32, 0, NULL, &lo), h = init_t(g, "c_hi", QK_F32, 0, NULL, &hi);
        y = node(g, "Clip", "clip", 3, (int[]){ y, l, h }, "relu_out");
    }
    int yd = qdq(g, y, "y", sy, zy, at);
    qk_graph_add_output(g, yd);
    return g;
}

/* The scalar reference of that conv (codes), qx from the input directly. */
static void conv_ref(qk_rq_mode mode, const float *x, int64_t N, float sx, int32_t zx, qk_dtype at, const int32_t *wc,
                     const float *ws, const int32_t *wz, int perch, const float *bias, float sy, int32_t zy, int relu6,
                     int relu, int32_t *out)
{
    int64_t H = 6, W = 5, OH = 6, OW = 2; /* pads t1 l1 b1 r0, stride (1,2): OW = (5+1-3)/2+1 */
    int32_t lo, hi;
    qk_int_range(at, &lo, &hi);
    for (int64_t n = 0; n < N; n++)
        for (int c = 0; c < 5; c++)
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    int cc = perch ? c : 0;
                    int64_t acc = 0;
                    for (int ci = 0; ci < 3; ci++)
                        for (int i = 0; i < 3; i++)
                            for (int j = 0; j < 3; j++) {
                                int64_t ih = oh - 1 + i, iw = ow * 2 - 1 + j;
                                int32_t q = zx;
                                if (ih >= 0 && ih < H && iw >= 0 && iw < W)
                                    q = q_ref(x[((n * 3 + ci) * H + ih) * W + iw], sx, zx, at);
                                acc += (int64_t)(q - zx) * (wc[((c * 3 + ci) * 3 + i) * 3 + j] - wz[cc]);
                            }
                    acc += (int32_t)nearbyint((double)bias[c] / ((double)sx * (double)ws[cc]));
                    int32_t qmin = lo, qmax = hi;
                    if (relu || relu6)
                        qmin = zy > lo ? zy : lo;
                    if (relu6) {
                        int32_t v = zy + qk_round_rna((double)(6.0f / sy));
                        qmax = v < hi ? v : hi;
                    }
                    int32_t y;
                    if (mode == QK_RQ_FP32) {
                        y = qk_requant_value(mode, (int32_t)acc, 0, 0, sx * ws[cc] / sy, zy, qmin, qmax);
                    } else if (mode == QK_RQ_GEMMLOWP) {
                        int32_t m;
                        int e;
                        qk_quantize_multiplier((double)sx * ws[cc] / sy, &m, &e);
                        y = qk_requant_value(mode, (int32_t)acc, m, e, 0, zy, qmin, qmax);
                    } else {
                        int sh = -(int)lrint(log2((double)sx * ws[cc] / sy));
                        y = qk_requant_value(mode, (int32_t)acc, 0, sh, 0, zy, qmin, qmax);
                    }
                    out[((n * 5 + c) * OH + oh) * OW + ow] = y;
                }
}

static void test_conv(const char *arith, qk_rq_mode mode, qk_dtype at, qk_dtype wt, int perch, int pot,
                      const char *act, qk_pool *pool2)
{
    float sx = pot ? 0.03125f : 0.02f, sy = pot ? 0.0625f : 0.03f;
    int32_t zx = at == QK_U8 ? 128 : (pot ? 0 : -3), zy = at == QK_U8 ? (act ? 0 : 100) : (pot ? 0 : -5);
    float ws[5], bias[5];
    int32_t wc[135], wz[5];
    qk_graph *g = build_conv(arith, at, wt, perch, sx, zx, sy, zy, pot, act, ws, wc, bias);
    for (int c = 0; c < 5; c++)
        wz[c] = wt == QK_U8 ? 118 + c : 0;
    enum { N = 3, NX = N * 3 * 6 * 5, NY = N * 5 * 6 * 2 };
    float x[NX], yf[NY], yr[NY];
    for (int i = 0; i < NX; i++)
        x[i] = frand(-2.0f, 2.0f);
    char what[128];
    snprintf(what, sizeof what, "conv %s %s/%s perch %d act %s", arith, qk_dtype_name(at), qk_dtype_name(wt), perch,
             act ? act : "none");
    qk_graph *r = fake_vs_real(g, N, x, yf, yr, NY, 1.001 * sy, what, NULL);
    if (r) {
        int32_t ref[NY];
        int relu6 = act && strcmp(act, "relu6") == 0;
        conv_ref(mode, x, N, sx, zx, at, wc, ws, wz, perch, bias, sy, zy, relu6, act && !relu6, ref);
        qk_dtype dt = 0;
        const int32_t *q = codes_of(r, "y_quantized", &dt);
        QT_CHECK(q && dt == at, "%s: y_quantized codes in the lowered graph", what);
        int bad = 0, nz = 0, ndiff = 0;
        for (int i = 0; q && i < NY; i++) {
            bad += q[i] != ref[i];
            nz += ref[i] != zy;
            ndiff += fabsf(yf[i] - yr[i]) > 0;
        }
        QT_CHECK(q && bad == 0, "%s: %d of %d codes differ from the scalar reference", what, bad, NY);
        QT_CHECK(nz > NY / 4, "%s: degenerate test (%d non-zero-point outputs)", what, nz);
        QT_CHECK(ndiff <= NY / 20, "%s: %d outputs differ from fake quant by a code", what, ndiff);
        /* the integer graph holds ai.qkit QkConv, and no float Conv */
        int nconv = 0, nfconv = 0;
        for (int i = 0; i < r->n_nodes; i++) {
            nconv += strcmp(r->nodes[i].op_type, "QkConv") == 0;
            nfconv += strcmp(r->nodes[i].op_type, "Conv") == 0;
        }
        QT_CHECK(nconv == 1 && nfconv == 0, "%s: %d QkConv, %d float Conv", what, nconv, nfconv);
        if (pool2) { /* 1 vs 2 threads: identical */
            qk_graph *r2;
            QT_OK(qk_qdq_lower(g, NULL, &r2, NULL));
            float y2[NY];
            QT_OK(run_graph(r2, N, x, y2, pool2));
            QT_CHECK(memcmp(y2, yr, sizeof y2) == 0, "%s: 1 vs 2 threads differ", what);
            qk_graph_destroy(r2);
        }
        qk_graph_destroy(r);
    }
    qk_graph_destroy(g);
}

/* ------------------------------------------------------------ worked example (docs/ALGORITHMS.md §7) */

static void test_worked_example(void)
{
    qk_graph *g;
    qk_graph_create(&g);
    set_meta(g, "gemmlowp");
    int x = qk_graph_add_input(g, "x", QK_F32, 2, (int64_t[]){ -1, 4 });
    int xd = qdq(g, x, "x", 0.02f, -10, QK_I8);
    float sw = 0.01f;
    int32_t z0 = 0;
    int w = wdq(g, "w", QK_I8, 2, (int64_t[]){ 1, 4 }, (int32_t[]){ 30, -25, 10, 5 }, 1, &sw, &z0, 0);
    float b = 0.07f;
    int bv = init_t(g, "b", QK_F32, 1, (int64_t[]){ 1 }, &b);
    int y = node(g, "Gemm", "fc", 3, (int[]){ xd, w, bv }, "fc_out");
    qk_node_set_int(g, g->n_nodes - 1, "transB", 1);
    float lo = 0, hi = 6;
    int l = init_t(g, "lo", QK_F32, 0, NULL, &lo), h = init_t(g, "hi", QK_F32, 0, NULL, &hi);
    y = node(g, "Clip", "relu6", 3, (int[]){ y, l, h }, "act");
    int yd = qdq(g, y, "y", 0.005f, -20, QK_I8);
    qk_graph_add_output(g, yd);
    float xin[4] = { 0.5f, -0.1f, 1.2f, 0.0f }, yf, yr;
    qk_graph *r = fake_vs_real(g, 1, xin, &yf, &yr, 1, 1e-6, "worked example", NULL);
    if (r) {
        qk_dtype dt;
        const int32_t *qx = codes_of(r, "x_quantized", &dt);
        QT_CHECK(qx && qx[0] == 15 && qx[1] == -15 && qx[2] == 50 && qx[3] == -10, "worked example: q_x");
        const int32_t *q = codes_of(r, "y_quantized", &dt);
        QT_CHECK(q && q[0] == 53, "worked example: y code %d, expected 53", q ? q[0] : -999);
        QT_NEAR(yr, 0.365, 1e-6, "worked example: D(53)");
        int bi = -1;
        for (int i = 0; i < r->n_nodes; i++)
            if (strcmp(r->nodes[i].op_type, "QkGemm") == 0)
                bi = r->nodes[i].in[3];
        QT_CHECK(bi >= 0 && r->values[bi].t.dtype == QK_I32 && ((int32_t *)r->values[bi].t.data)[0] == 350,
                 "worked example: q_b = 350");
        qk_graph_destroy(r);
    }
    qk_graph_destroy(g);
}

/* ------------------------------------------------------------ Gemm int8 per-channel, residual Add, pools */

static void test_gemm(const char *arith, qk_rq_mode mode)
{
    enum { N = 4, K = 19, M = 7 };
    qk_graph *g;
    qk_graph_create(&g);
    set_meta(g, arith);
    int x = qk_graph_add_input(g, "x", QK_F32, 2, (int64_t[]){ -1, K });
    float sx = 0.05f, sy = 0.08f;
    int32_t zx = 3, zy = -7;
    int xd = qdq(g, x, "x", sx, zx, QK_I8);
    int32_t wc[K * M], wz[M] = { 0 };
    float ws[M], bias[M];
    for (int i = 0; i < K * M; i++)
        wc[i] = irand(-127, 127);
    for (int c = 0; c < M; c++)
        ws[c] = 0.002f * (float)(c + 1), bias[c] = frand(-1, 1);
    /* MatMul layout [K, M], per column (axis 1), bias through a separate float Add? no: Gemm transB=0 */
    int w = wdq(g, "w", QK_I8, 2, (int64_t[]){ K, M }, wc, M, ws, wz, 1);
    int b = init_t(g, "b", QK_F32, 1, (int64_t[]){ M }, bias);
    int y = node(g, "Gemm", "fc", 3, (int[]){ xd, w, b }, "fc_out");
    int yd = qdq(g, y, "y", sy, zy, QK_I8);
    qk_graph_add_output(g, yd);
    float xin[N * K], yf[N * M], yr[N * M];
    for (int i = 0; i < N * K; i++)
        xin[i] = frand(-3, 3);
    qk_graph *r = fake_vs_real(g, N, xin, yf, yr, N * M, 1.001 * sy, "gemm", NULL);
    if (r) {
        qk_dtype dt;
        const int32_t *q = codes_of(r, "y_quantized", &dt);
        int bad = 0;
        for (int n = 0; n < N; n++)
            for (int c = 0; c < M; c++) {
                int64_t acc = 0;
                for (int k = 0; k < K; k++)
                    acc += (int64_t)(q_ref(xin[n * K + k], sx, zx, QK_I8) - zx) * wc[k * M + c];
                acc += (int32_t)nearbyint((double)bias[c] / ((double)sx * ws[c]));
                int32_t m = 0, ref;
                int e = 0;
                if (mode == QK_RQ_GEMMLOWP)
                    qk_quantize_multiplier((double)sx * ws[c] / sy, &m, &e);
                ref = qk_requant_value(mode, (int32_t)acc, m, e, sx * ws[c] / sy, zy, -128, 127);
                bad += !q || q[n * M + c] != ref;
            }
        QT_CHECK(bad == 0, "gemm %s: %d codes differ from the reference", arith, bad);
        qk_graph_destroy(r);
    }
    qk_graph_destroy(g);
}

/* The test models' head: Gemm of the k flattened codes x (int8 per-tensor weights, 3 classes) to
 * the graph output "logits"; binds the graph. */
static void add_fc3(qk_graph *g, int x, int64_t k)
{
    int32_t *fc = qk_malloc((size_t)(3 * k) * sizeof *fc);
    float fs = 0.01f, fb[3] = { 0.1f, -0.2f, 0.3f };
    int32_t fz = 0;
    for (int64_t i = 0; i < 3 * k; i++)
        fc[i] = irand(-127, 127);
    int fw = wdq(g, "fcw", QK_I8, 2, (int64_t[]){ 3, k }, fc, 1, &fs, &fz, 0);
    int fbv = init_t(g, "fcb", QK_F32, 1, (int64_t[]){ 3 }, fb);
    int out = node(g, "Gemm", "fc", 3, (int[]){ x, fw, fbv }, "logits");
    qk_node_set_int(g, g->n_nodes - 1, "transB", 1);
    qk_graph_add_output(g, out);
    QT_OK(qk_ops_bind(g));
    qk_free(fc);
}

/* TensorRT's placement: Q/DQ -> Conv -> Relu -> MaxPool (pads, ceil) [-> Flatten] -> Q/DQ -> Gemm. The
 * lowering runs it as TensorRT does: the conv requantizes (ReLU as its floor) and the MaxPool works on
 * the codes (a QkPool: quantization is monotone), [the Flatten on the codes]; no float is left, the
 * logits are near fake quant's, and the runner's passes keep them bit-identical. */
static void test_trt_maxpool(qk_dtype at, int flat_first, qk_pool *pool2)
{
    enum { N = 2, C = 3, CO = 5, H = 7, W = 7, PO = 4 };
    qk_graph *g;
    qk_graph_create(&g);
    set_meta(g, "fp32");
    int x = qk_graph_add_input(g, "x", QK_F32, 4, (int64_t[]){ -1, C, H, W });
    int xd = qdq(g, x, "x", 0.02f, at == QK_U8 ? 100 : 3, at);
    int32_t wc[CO * C * 9], wz[CO] = { 0 };
    float ws[CO], bias[CO];
    for (int i = 0; i < CO * C * 9; i++)
        wc[i] = irand(-127, 127);
    for (int c = 0; c < CO; c++)
        ws[c] = 0.004f + 0.001f * (float)c, bias[c] = frand(-0.3f, 0.3f);
    int w = wdq(g, "w", QK_I8, 4, (int64_t[]){ CO, C, 3, 3 }, wc, CO, ws, wz, 0);
    int b = init_t(g, "b", QK_F32, 1, (int64_t[]){ CO }, bias);
    int y = node(g, "Conv", "conv", 3, (int[]){ xd, w, b }, "conv_out");
    qk_node_set_ints(g, g->n_nodes - 1, "pads", 4, (int64_t[]){ 1, 1, 1, 1 });
    int r = node(g, "Relu", "relu", 1, &y, "relu_out");
    int mp = node(g, "MaxPool", "mp", 1, &r, "mp_out");
    qk_node_set_ints(g, g->n_nodes - 1, "kernel_shape", 2, (int64_t[]){ 2, 2 });
    qk_node_set_ints(g, g->n_nodes - 1, "strides", 2, (int64_t[]){ 2, 2 });
    qk_node_set_ints(g, g->n_nodes - 1, "pads", 4, (int64_t[]){ 1, 0, 0, 1 });
    qk_node_set_int(g, g->n_nodes - 1, "ceil_mode", 1);
    int fl;
    if (flat_first) { /* MaxPool -> Flatten -> Q/DQ (lenet's second pool) */
        int f = node(g, "Flatten", "flat", 1, &mp, "flat_out");
        fl = qdq(g, f, "flat_out", 0.03f, at == QK_U8 ? 0 : -128, at);
    } else {
        int md = qdq(g, mp, "mp_out", 0.03f, at == QK_U8 ? 0 : -128, at);
        fl = node(g, "Flatten", "flat", 1, &md, "flat_out");
    }
    add_fc3(g, fl, CO * PO * PO);
    float xin[N * C * H * W], yp[N * 3], yq[N * 3];
    for (int i = 0; i < N * C * H * W; i++)
        xin[i] = frand(-1.5f, 2.5f);
    char what[64];
    snprintf(what, sizeof what, "trt maxpool %s%s", qk_dtype_name(at), flat_first ? " (flatten first)" : "");
    qk_graph *rp, *rf;
    float yf[N * 3];
    rp = fake_vs_real(g, N, xin, yf, yp, N * 3, 0.08, what, NULL);
    QT_OK(qk_qdq_lower(g, NULL, &rf, NULL));
    if (rp && rf) {
        int nf = 0, nepi = 0, npool = 0, ndq = 0;
        for (int i = 0; i < rp->n_nodes; i++) {
            const char *t = rp->nodes[i].op_type;
            nf += !strcmp(t, "MaxPool") || !strcmp(t, "Relu");
            nepi += !strcmp(t, "QkEpilogue");
            npool += !strcmp(t, "QkPool");
            ndq += !strcmp(t, "DequantizeLinear");
        }
        QT_CHECK(nf == 0 && nepi == 0 && npool == 1 && ndq == 1,
                 "%s: %d float MaxPool/Relu, %d QkEpilogue, %d QkPool, %d DequantizeLinear (the logits' only)", what,
                 nf, nepi, npool, ndq);
        QT_OK(qk_lower_prepare_run(rf));
        for (int th = 0; th < 2; th++) {
            QT_OK(run_graph(rf, N, xin, yq, th ? pool2 : NULL));
            QT_CHECK(memcmp(yp, yq, sizeof yp) == 0, "%s: fused logits differ from the plain lowering (%d threads)",
                     what, th + 1);
        }
    }
    qk_graph_destroy(rp);
    qk_graph_destroy(rf);
    qk_graph_destroy(g);
}

/* x [N, C, H, W] float -> Q/DQ (scale 0.02, zero point zx) -> Conv 1x1 C -> C (random int8
 * weights, per channel) -> Q/DQ "conv_out" (scale 0.05, zero point zy), all of type at; returns
 * the dequantized output (C <= 20). */
static int conv1x1_codes(qk_graph *g, int64_t C, int64_t H, int64_t W, qk_dtype at, int32_t zx, int32_t zy)
{
    int x = qk_graph_add_input(g, "x", QK_F32, 4, (int64_t[]){ -1, C, H, W });
    int xd = qdq(g, x, "x", 0.02f, zx, at);
    int32_t wc[20 * 20], wz[20] = { 0 };
    float ws[20], bias[20];
    for (int64_t i = 0; i < C * C; i++)
        wc[i] = irand(-127, 127);
    for (int64_t c = 0; c < C; c++)
        ws[c] = 0.004f + 0.0005f * (float)c, bias[c] = frand(-0.3f, 0.3f);
    int w = wdq(g, "w", QK_I8, 4, (int64_t[]){ C, C, 1, 1 }, wc, C, ws, wz, 0);
    int b = init_t(g, "b", QK_F32, 1, (int64_t[]){ C }, bias);
    int y = node(g, "Conv", "conv", 3, (int[]){ xd, w, b }, "conv_out");
    return qdq(g, y, "conv_out", 0.05f, zy, at);
}

/* g lowered twice: the plain lowering *rp run on x into yp, and *rf prepared by the runner's
 * passes; returns its QkPool's x_nhwc (-1: no QkPool). Either is NULL when lowering failed. */
static int lower_pool_pair(qk_graph *g, int64_t n, const float *x, float *yp, qk_graph **rp, qk_graph **rf)
{
    QT_OK(qk_qdq_lower(g, NULL, rp, NULL));
    QT_OK(qk_qdq_lower(g, NULL, rf, NULL));
    if (!*rp || !*rf)
        return -1;
    QT_OK(run_graph(*rp, n, x, yp, NULL));
    QT_OK(qk_lower_prepare_run(*rf));
    int nhwc = -1;
    for (int i = 0; i < (*rf)->n_nodes; i++)
        if (!strcmp((*rf)->nodes[i].op_type, "QkPool"))
            nhwc = (int)qk_node_int(&(*rf)->nodes[i], "x_nhwc", 0);
    return nhwc;
}

/* Max pooling on NHWC codes (after a 1x1 conv, so the layout pass keeps them NHWC): 20 channels
 * (16 + a tail of 4), a 3x3 window and a 9x9 one (more pixels than one tap list holds), padding;
 * the runner's logits equal the plain lowering's (NCHW pool) bit for bit. */
static void test_maxpool_nhwc(int k, qk_pool *pool2)
{
    enum { N = 2, C = 20, H = 12, W = 11 };
    qk_graph *g;
    qk_graph_create(&g);
    set_meta(g, "fp32");
    int yd = conv1x1_codes(g, C, H, W, QK_U8, 120, 128);
    int mp = node(g, "MaxPool", "mp", 1, &yd, "mp_out");
    qk_node_set_ints(g, g->n_nodes - 1, "kernel_shape", 2, (int64_t[]){ k, k });
    qk_node_set_ints(g, g->n_nodes - 1, "pads", 4, (int64_t[]){ k / 2, k / 2, k / 2, k / 2 });
    int md = qdq(g, mp, "mp_out", 0.05f, 128, QK_U8);
    int fl = node(g, "Flatten", "flat", 1, &md, "flat_out");
    add_fc3(g, fl, C * H * W);
    float xin[N * C * H * W], yp[N * 3], yq[N * 3];
    for (int i = 0; i < N * C * H * W; i++)
        xin[i] = frand(-1.5f, 2.5f);
    qk_graph *rp = NULL, *rf = NULL;
    int nhwc = lower_pool_pair(g, N, xin, yp, &rp, &rf);
    if (rp && rf) {
        QT_CHECK(nhwc == 1, "max pool %dx%d: the runner's pool reads NHWC (x_nhwc %d)", k, k, nhwc);
        for (int th = 0; th < 2; th++) {
            QT_OK(run_graph(rf, N, xin, yq, th ? pool2 : NULL));
            QT_CHECK(memcmp(yp, yq, sizeof yp) == 0, "max pool %dx%d NHWC: logits differ from the plain lowering "
                     "(%d threads)", k, k, th + 1);
        }
    }
    qk_graph_destroy(rp);
    qk_graph_destroy(rf);
    qk_graph_destroy(g);
}

/* Global average pooling on NHWC codes (after a 1x1 conv): 20 channels (16 + a tail of 4) over
 * 17 x 16 = 272 pixels (more than one 16-bit run of 257), uint8 and int8 codes, the MLAS (fp32)
 * and gemmlowp means, and TFLite's mean of the codes (equal scales: int8 stays int8); the runner's
 * logits and mean codes equal the plain lowering's (NCHW pool) bit for bit. */
static void test_gap_nhwc(qk_dtype at, const char *arith, float gscale, qk_pool *pool2)
{
    enum { N = 2, C = 20, H = 17, W = 16 };
    qk_graph *g;
    qk_graph_create(&g);
    set_meta(g, arith);
    const int32_t z = at == QK_U8 ? 128 : 0;
    int yd = conv1x1_codes(g, C, H, W, at, z, z);
    int gp = node(g, "GlobalAveragePool", "gap", 1, &yd, "gap_out");
    int gd = qdq(g, gp, "gap_out", gscale, z, at);
    int fl = node(g, "Flatten", "flat", 1, &gd, "flat_out");
    add_fc3(g, fl, C);
    float xin[N * C * H * W], yp[N * 3], yq[N * 3];
    for (int i = 0; i < N * C * H * W; i++)
        xin[i] = frand(-1.5f, 2.5f);
    qk_graph *rp = NULL, *rf = NULL;
    int nhwc = lower_pool_pair(g, N, xin, yp, &rp, &rf);
    if (rp && rf) {
        QT_CHECK(nhwc == 1, "global average %s %s %g: the runner's pool reads NHWC (x_nhwc %d)", qk_dtype_name(at),
                 arith, (double)gscale, nhwc);
        for (int th = 0; th < 2; th++) {
            QT_OK(run_graph(rf, N, xin, yq, th ? pool2 : NULL));
            QT_CHECK(memcmp(yp, yq, sizeof yp) == 0,
                     "global average %s %s NHWC: logits differ from the plain lowering (%d threads)",
                     qk_dtype_name(at), arith, th + 1);
            /* and the means themselves (a code off by one moves the logits only now and then); the
             * runner may hold int8 codes as uint8 (+128) */
            static int32_t cp[N * C];
            qk_dtype dp, dq;
            const int32_t *c1 = codes_of(rp, "gap_out_quantized", &dp);
            if (c1)
                memcpy(cp, c1, sizeof cp);
            const int32_t *c2 = codes_of(rf, "gap_out_quantized", &dq);
            int bad = !c1 || !c2;
            for (int i = 0; !bad && i < N * C; i++)
                bad = cp[i] + (dp == QK_I8 && dq == QK_U8 ? 128 : 0) != c2[i];
            QT_CHECK(!bad, "global average %s %s NHWC: the mean codes differ from the plain lowering (%d threads)",
                     qk_dtype_name(at), arith, th + 1);
        }
    }
    qk_graph_destroy(rp);
    qk_graph_destroy(rf);
    qk_graph_destroy(g);
}

/* TensorRT's inverted residual: a conv output with no Q of its own (int32 dequantized) read by
 * both the next conv's Q/DQ and the residual Add:
 *   x -> Q/DQ -> Conv1 -> y1 -> Q/DQ -> Conv2 -> y2;  Add(y1, y2) -> Relu -> Q/DQ -> Flatten -> Gemm
 * The runner's fuse pass dequantizes y1 inside both epilogues (Q(y1) and the Add), so no float
 * activation is left but the logits' and the logits stay bit-identical to the plain lowering. */
static void test_trt_shared_dq(qk_pool *pool2)
{
    enum { N = 2, C = 4, H = 5, W = 6 };
    qk_graph *g;
    qk_graph_create(&g);
    set_meta(g, "fp32");
    int x = qk_graph_add_input(g, "x", QK_F32, 4, (int64_t[]){ -1, C, H, W });
    int xd = qdq(g, x, "x", 0.02f, 0, QK_I8);
    int y[2];
    int in = xd;
    for (int l = 0; l < 2; l++) {
        int32_t wc[C * C * 9], wz[C] = { 0 };
        float ws[C], bias[C];
        for (int i = 0; i < C * C * 9; i++)
            wc[i] = irand(-127, 127);
        for (int c = 0; c < C; c++)
            ws[c] = 0.004f + 0.001f * (float)c, bias[c] = frand(-0.3f, 0.3f);
        char wn[16], bn[16], cn[16], on[16];
        snprintf(wn, sizeof wn, "w%d", l), snprintf(bn, sizeof bn, "b%d", l);
        snprintf(cn, sizeof cn, "conv%d", l), snprintf(on, sizeof on, "y%d", l);
        int w = wdq(g, wn, QK_I8, 4, (int64_t[]){ C, C, 3, 3 }, wc, C, ws, wz, 0);
        int b = init_t(g, bn, QK_F32, 1, (int64_t[]){ C }, bias);
        y[l] = node(g, "Conv", cn, 3, (int[]){ in, w, b }, on);
        qk_node_set_ints(g, g->n_nodes - 1, "pads", 4, (int64_t[]){ 1, 1, 1, 1 });
        if (l == 0)
            in = qdq(g, y[0], "y0", 0.05f, 0, QK_I8);
    }
    int s = node(g, "Add", "add", 2, (int[]){ y[0], y[1] }, "add_out");
    s = node(g, "Relu", "relu", 1, &s, "relu_out");
    int sd = qdq(g, s, "relu_out", 0.06f, 0, QK_I8);
    int fl = node(g, "Flatten", "flat", 1, &sd, "flat_out");
    add_fc3(g, fl, C * H * W);
    float xin[N * C * H * W], yf[N * 3], yp[N * 3], yq[N * 3];
    for (int i = 0; i < N * C * H * W; i++)
        xin[i] = frand(-1.5f, 2.5f);
    qk_graph *rp = fake_vs_real(g, N, xin, yf, yp, N * 3, 0.08, "trt shared DQ", NULL), *rf = NULL;
    QT_OK(qk_qdq_lower(g, NULL, &rf, NULL));
    if (rp && rf) {
        QT_OK(qk_lower_prepare_run(rf));
        int nepi = 0, ndq = 0, nfl = 0;
        for (int i = 0; i < rf->n_nodes; i++) {
            const char *t = rf->nodes[i].op_type;
            nepi += !strcmp(t, "QkEpilogue");
            ndq += !strcmp(t, "DequantizeLinear");
            nfl += !strcmp(t, "Add") || !strcmp(t, "Relu") || !strcmp(t, "QuantizeLinear");
        }
        /* left: the input's QuantizeLinear and the logits' DequantizeLinear */
        QT_CHECK(nepi == 2 && ndq == 1 && nfl == 1, "trt shared DQ: %d QkEpilogue, %d DequantizeLinear, %d float "
                 "Add/Relu/QuantizeLinear", nepi, ndq, nfl);
        for (int th = 0; th < 2; th++) {
            QT_OK(run_graph(rf, N, xin, yq, th ? pool2 : NULL));
            QT_CHECK(memcmp(yp, yq, sizeof yp) == 0, "trt shared DQ: fused logits differ from the plain lowering "
                     "(%d threads)", th + 1);
        }
    }
    qk_graph_destroy(rp);
    qk_graph_destroy(rf);
    qk_graph_destroy(g);
}

/* x -> Q/DQ -> Conv(1x1) -> Q/DQ --+--> Add -> Relu -> Q/DQ -> MaxPool -> AveragePool -> Q/DQ
 *                  \---------------/      -> GlobalAveragePool -> Q/DQ -> Flatten -> Gemm (float out)
 * trt = 1: the conv output is not quantized (TensorRT style): float Add. */
static void test_residual(const char *arith, qk_dtype at, int trt, qk_pool *pool2)
{
    enum { N = 2, C = 4, H = 6, W = 6 };
    qk_graph *g;
    qk_graph_create(&g);
    set_meta(g, arith);
    int pot = strcmp(arith, "pot") == 0;
    int x = qk_graph_add_input(g, "x", QK_F32, 4, (int64_t[]){ -1, C, H, W });
    int32_t z = at == QK_U8 ? 120 : (pot ? 0 : 4);
    float sx = pot ? 0.03125f : 0.021f;
    int xd = qdq(g, x, "x", sx, z, at);
    int32_t wc[C * C], wz[C] = { 0 };
    float ws[C], bias[C];
    for (int i = 0; i < C * C; i++)
        wc[i] = irand(-127, 127);
    for (int c = 0; c < C; c++)
        ws[c] = pot ? 0.0078125f : 0.006f + 0.001f * (float)c, bias[c] = pot ? 0.25f * (float)(c - 1) : frand(-0.2f, 0.2f);
    int w = wdq(g, "w", QK_I8, 4, (int64_t[]){ C, C, 1, 1 }, wc, C, ws, wz, 0);
    int b = init_t(g, "b", QK_F32, 1, (int64_t[]){ C }, bias);
    int y = node(g, "Conv", "conv", 3, (int[]){ xd, w, b }, "conv_out");
    int a = trt ? y : qdq(g, y, "conv_out", pot ? 0.0625f : 0.045f, at == QK_U8 ? 110 : (pot ? 0 : -2), at);
    int s = node(g, "Add", "add", 2, (int[]){ a, xd }, "add_out");
    s = node(g, "Relu", "add_relu", 1, &s, "relu_out");
    int sd = qdq(g, s, "relu_out", pot ? 0.0625f : 0.05f, at == QK_U8 ? 0 : -128, at);
    int mp = node(g, "MaxPool", "mp", 1, &sd, "mp_out");
    qk_node_set_ints(g, g->n_nodes - 1, "kernel_shape", 2, (int64_t[]){ 2, 2 });
    qk_node_set_ints(g, g->n_nodes - 1, "strides", 2, (int64_t[]){ 1, 1 });
    int ap = node(g, "AveragePool", "ap", 1, &mp, "ap_out");
    qk_node_set_ints(g, g->n_nodes - 1, "kernel_shape", 2, (int64_t[]){ 3, 3 });
    qk_node_set_ints(g, g->n_nodes - 1, "pads", 4, (int64_t[]){ 1, 1, 1, 1 });
    int apd = qdq(g, ap, "ap_out", pot ? 0.0625f : 0.04f, at == QK_U8 ? 1 : -127, at);
    int gp = node(g, "GlobalAveragePool", "gap", 1, &apd, "gap_out");
    int gpd = qdq(g, gp, "gap_out", pot ? 0.03125f : 0.02f, at == QK_U8 ? 0 : -128, at);
    int fl = node(g, "Flatten", "flat", 1, &gpd, "flat_out");
    int32_t fc[C * 3];
    float fs = pot ? 0.0078125f : 0.01f, fb[3] = { 0.1f, -0.2f, 0.3f };
    int32_t fz = 0;
    for (int i = 0; i < C * 3; i++)
        fc[i] = irand(-127, 127);
    int fw = wdq(g, "fcw", QK_I8, 2, (int64_t[]){ 3, C }, fc, 1, &fs, &fz, 0);
    int fbv = init_t(g, "fcb", QK_F32, 1, (int64_t[]){ 3 }, fb);
    int out = node(g, "Gemm", "fc", 3, (int[]){ fl, fw, fbv }, "logits");
    qk_node_set_int(g, g->n_nodes - 1, "transB", 1);
    qk_graph_add_output(g, out);
    float xin[N * C * H * W], yf[N * 3], yr[N * 3];
    for (int i = 0; i < N * C * H * W; i++)
        xin[i] = frand(-1.5f, 2.5f);
    char what[96];
    snprintf(what, sizeof what, "residual %s %s%s", arith, qk_dtype_name(at), trt ? " (trt)" : "");
    /* pot: the integer pipeline rounds ties half up (DPU) where the QDQ
     * graph's QuantizeLinear rounds half to even, and power-of-two grids
     * make ties common: 1 LSB per requantization, 2 after conv + add */
    qk_graph *r = fake_vs_real(g, N, xin, yf, yr, N * 3, pot ? 0.15 : 0.08, what, NULL);
    if (r) {
        int nadd = 0, nfadd = 0, npool = 0, nfpool = 0, nfconv = 0;
        for (int i = 0; i < r->n_nodes; i++) {
            const char *t = r->nodes[i].op_type;
            nadd += strcmp(t, "QkAdd") == 0, nfadd += strcmp(t, "Add") == 0;
            npool += strcmp(t, "QkPool") == 0;
            nfpool += strstr(t, "Pool") == t || strstr(t, "GlobalAveragePool") != NULL || strcmp(t, "MaxPool") == 0;
            nfconv += strcmp(t, "Conv") == 0 || strcmp(t, "Gemm") == 0;
        }
        QT_CHECK(nadd == !trt && nfadd == trt, "%s: %d QkAdd, %d float Add", what, nadd, nfadd);
        QT_CHECK(npool == 3 && nfpool == 0 && nfconv == 0, "%s: %d QkPool, %d float pools, %d float conv/gemm", what,
                 npool, nfpool, nfconv);
        /* every quantized tensor agrees with fake quant to 1 LSB */
        static const char *const sites[] = { "x_quantized", "relu_out_quantized", "ap_out_quantized",
                                             "gap_out_quantized", NULL };
        for (int k = 0; sites[k]; k++) {
            int fv = qk_graph_find_value(g, sites[k]), rv = qk_graph_find_value(r, sites[k]);
            QT_CHECK(fv >= 0 && rv >= 0, "%s: site %s in both graphs", what, sites[k]);
            if (fv < 0 || rv < 0)
                continue;
            const qk_tensor *ft = &g->values[fv].t, *rt = &r->values[rv].t;
            int md = 0;
            for (int64_t i = 0; i < qk_tensor_numel(ft); i++) {
                int a1 = at == QK_U8 ? ((uint8_t *)ft->data)[i] : ((int8_t *)ft->data)[i];
                int a2 = at == QK_U8 ? ((uint8_t *)rt->data)[i] : ((int8_t *)rt->data)[i];
                md = abs(a1 - a2) > md ? abs(a1 - a2) : md;
            }
            QT_CHECK(md <= (pot ? 2 : 1), "%s: %s differs by %d LSB", what, sites[k], md);
        }
        /* QkAdd against the scalar definition (gemmlowp: TFLite) */
        if (!trt && strcmp(arith, "gemmlowp") == 0) {
            qk_dtype dt;
            int ca = qk_graph_find_value(r, "conv_out_quantized"), cx = qk_graph_find_value(r, "x_quantized");
            const int32_t *q = codes_of(r, "relu_out_quantized", &dt);
            qk_qadd p;
            QT_OK(qk_qadd_prepare(at, 0.045f, at == QK_U8 ? 110 : -2, sx, z, 0.05f, at == QK_U8 ? 0 : -128,
                                  at == QK_U8 ? 0 : -128, at == QK_U8 ? 255 : 127, &p));
            int bad = 0;
            for (int64_t i = 0; ca >= 0 && cx >= 0 && q && i < N * C * H * W; i++) {
                const qk_tensor *ta = &r->values[ca].t, *tx = &r->values[cx].t;
                int32_t a1 = at == QK_U8 ? ((uint8_t *)ta->data)[i] : ((int8_t *)ta->data)[i];
                int32_t a2 = at == QK_U8 ? ((uint8_t *)tx->data)[i] : ((int8_t *)tx->data)[i];
                bad += q[i] != qk_qadd_value(&p, a1, a2);
            }
            QT_CHECK(ca >= 0 && cx >= 0 && q && bad == 0, "%s: %d QkAdd codes differ from qk_qadd_value", what, bad);
        }
        /* QkAdd's vector body (AVX-512 where usable) against the portable
         * loop of the reference kernels: the same codes */
        {
            qk_dtype dt;
            int64_t nq = N * C * H * W;
            static int32_t q1[1 << 16];
            const int32_t *q = codes_of(r, "relu_out_quantized", &dt);
            if (q)
                memcpy(q1, q, (size_t)nq * sizeof(int32_t));
            qk_graph *r4;
            QT_OK(qk_qdq_lower(g, NULL, &r4, NULL));
            qk_graph_set_options(r4, &(qk_plan_options){ .reference = 1 });
            float y4[N * 3];
            QT_OK(run_graph(r4, N, xin, y4, NULL));
            const int32_t *q4 = codes_of(r4, "relu_out_quantized", &dt);
            QT_CHECK(q && q4 && memcmp(q1, q4, (size_t)nq * sizeof(int32_t)) == 0,
                     "%s: QkAdd codes of the vector body differ from the portable loop", what);
            qk_graph_destroy(r4);
        }
        if (pool2) {
            qk_graph *r2;
            QT_OK(qk_qdq_lower(g, NULL, &r2, NULL));
            float y2[N * 3];
            QT_OK(run_graph(r2, N, xin, y2, pool2));
            QT_CHECK(memcmp(y2, yr, sizeof y2) == 0, "%s: 1 vs 2 threads differ", what);
            qk_graph_destroy(r2);
        }
        { /* the runner's fuse and layout passes on every arithmetic: bit-identical */
            qk_graph *r5;
            QT_OK(qk_qdq_lower(g, NULL, &r5, NULL));
            QT_OK(qk_lower_prepare_run(r5));
            int n_i8 = 0; /* qk_lower_unsign: every int8 activation of this model becomes uint8 + 128 */
            for (int v = 0; v < r5->n_values; v++)
                n_i8 += r5->values[v].kind == QK_VALUE_ACT && r5->values[v].t.dtype == QK_I8;
            QT_CHECK(n_i8 == 0, "%s: %d int8 activations left after the runner's passes", what, n_i8);
            int mp_nhwc = -1;
            for (int i = 0; i < r5->n_nodes; i++)
                if (!strcmp(r5->nodes[i].op_type, "QkPool") && qk_node_int(&r5->nodes[i], "kind", 0) == 0)
                    mp_nhwc = (int)qk_node_int(&r5->nodes[i], "x_nhwc", 0);
            float y5[N * 3];
            QT_OK(run_graph(r5, N, xin, y5, pool2));
            QT_CHECK(memcmp(y5, yr, sizeof y5) == 0, "%s: the runner's passes (max pool x_nhwc %d) change the logits",
                     what, mp_nhwc);
            qk_graph_destroy(r5);
        }
        if (trt) { /* the runner's passes: DQ -> Add -> Relu -> Q fused (QkEpilogue), NHWC; bit-identical */
            for (int th = 0; th < 3; th++) { /* 1 thread, 2 threads, the plain reference kernels */
                qk_graph *r3;
                QT_OK(qk_qdq_lower(g, NULL, &r3, NULL));
                qk_graph_set_options(r3, &(qk_plan_options){ .reference = th == 2 });
                QT_OK(qk_lower_prepare_run(r3));
                int nepi = 0, nfl = 0;
                const char *left = "";
                for (int i = 0; i < r3->n_nodes; i++) {
                    const char *t = r3->nodes[i].op_type;
                    int f = strcmp(t, "Add") == 0 || strcmp(t, "Relu") == 0 ||
                            (strcmp(t, "DequantizeLinear") == 0 && strcmp(r3->nodes[i].name, "fc_7") != 0);
                    nepi += strcmp(t, "QkEpilogue") == 0;
                    nfl += f;
                    left = f ? r3->nodes[i].name : left;
                }
                /* (the FC's int32 -> float logits DequantizeLinear stays: a graph output) */
                QT_CHECK(nepi == 1 && nfl == 0, "%s: fused: %d QkEpilogue, %d float Add/Relu/DQ left (%s)", what,
                         nepi, nfl, left);
                QT_CHECK(qk_graph_find_value(r3, "relu_out_quantized") >= 0, "%s: fused output keeps its name", what);
                float y3[N * 3];
                QT_OK(run_graph(r3, N, xin, y3, th == 1 ? pool2 : NULL));
                QT_CHECK(memcmp(y3, yr, sizeof y3) == 0, "%s: fused epilogue differs (%s)", what,
                         th == 0 ? "1 thread" : th == 1 ? "2 threads" : "reference kernels");
                qk_graph_destroy(r3);
            }
        }
        qk_graph_destroy(r);
    }
    qk_graph_destroy(g);
}

/* Concat of two grids, then Q to a third: QkConcat; fp32 must equal fake quant exactly. */
static void test_concat(void)
{
    qk_graph *g;
    qk_graph_create(&g);
    set_meta(g, "fp32");
    int x = qk_graph_add_input(g, "x", QK_F32, 4, (int64_t[]){ -1, 2, 3, 3 });
    int a = qdq(g, x, "xa", 0.02f, 128, QK_U8);
    int b = qdq(g, x, "xb", 0.05f, 60, QK_U8);
    int c = node(g, "Concat", "cat", 2, (int[]){ a, b }, "cat_out");
    qk_node_set_int(g, g->n_nodes - 1, "axis", 1);
    int cd = qdq(g, c, "cat_out", 0.03f, 100, QK_U8);
    qk_graph_add_output(g, cd);
    float xin[2 * 18], yf[2 * 36], yr[2 * 36];
    for (int i = 0; i < 36; i++)
        xin[i] = frand(-2.5f, 2.5f);
    qk_graph *r = fake_vs_real(g, 2, xin, yf, yr, 72, 0, "concat fp32", NULL);
    if (r) {
        int n = 0;
        for (int i = 0; i < r->n_nodes; i++)
            n += strcmp(r->nodes[i].op_type, "QkConcat") == 0;
        QT_CHECK(n == 1, "concat: %d QkConcat nodes", n);
        qk_graph_destroy(r);
    }
    qk_graph_destroy(g);
}

/* ------------------------------------------------------------ errors */

static void expect_err(qk_graph *g, qk_status want, const char *needle, const char *what)
{
    qk_graph *r = NULL;
    qk_status st = qk_qdq_lower(g, NULL, &r, NULL);
    QT_CHECK(st == want && !r, "%s: status %s (%s), expected %s", what, qk_status_str(st), qk_last_error(),
             qk_status_str(want));
    QT_CHECK(!needle || strstr(qk_last_error(), needle), "%s: message '%s' lacks '%s'", what, qk_last_error(),
             needle);
    qk_graph_destroy(r);
    qk_graph_destroy(g);
}

static float *scale_of(qk_graph *g, const char *name) { return qk_f32(&g->values[qk_graph_find_value(g, name)].t); }

static void test_errors(void)
{
    float ws[5], b[5];
    int32_t wc[135];
    qk_graph *g;
    g = build_conv("fp32", QK_U8, QK_U8, 0, 0.02f, 128, 0.03f, 0, 0, "relu", ws, wc, b);
    scale_of(g, "x_scale")[0] = 0.0f;
    expect_err(g, QK_ERR_ARG, "x_scale", "zero scale");
    g = build_conv("fp32", QK_U8, QK_U8, 0, 0.02f, 128, 0.03f, 0, 0, "relu", ws, wc, b);
    scale_of(g, "y_scale")[0] = -0.5f;
    expect_err(g, QK_ERR_ARG, "y_scale", "negative scale");
    g = build_conv("fp32", QK_I8, QK_I8, 1, 0.02f, 0, 0.03f, 0, 0, NULL, ws, wc, b);
    scale_of(g, "w_scale")[2] = NAN;
    expect_err(g, QK_ERR_ARG, "w_scale'[2]", "NaN weight scale");
    g = build_conv("fp32", QK_I8, QK_I8, 1, 0.02f, 0, 0.03f, 0, 0, NULL, ws, wc, b);
    scale_of(g, "w_scale")[1] = INFINITY;
    expect_err(g, QK_ERR_ARG, "finite", "infinite weight scale");
    /* per-channel length: 4 scales for 5 channels */
    g = build_conv("fp32", QK_I8, QK_I8, 1, 0.02f, 0, 0.03f, 0, 0, NULL, ws, wc, b);
    {
        int v = qk_graph_find_value(g, "w_scale"), zv = qk_graph_find_value(g, "w_zero_point");
        g->values[v].t.dims[0] = 4;
        g->values[zv].t.dims[0] = 4;
    }
    expect_err(g, QK_ERR_ARG, "has 4 entries", "per-channel length");
    /* zero point count differs from the scale count */
    g = build_conv("fp32", QK_I8, QK_I8, 1, 0.02f, 0, 0.03f, 0, 0, NULL, ws, wc, b);
    g->values[qk_graph_find_value(g, "w_zero_point")].t.dims[0] = 3;
    expect_err(g, QK_ERR_ARG, "zero point", "zero point count");
    /* per-channel along the reduced axis */
    g = build_conv("fp32", QK_I8, QK_I8, 0, 0.02f, 0, 0.03f, 0, 0, NULL, ws, wc, b);
    {
        int v = qk_graph_find_value(g, "w_scale"), zv = qk_graph_find_value(g, "w_zero_point");
        float s3[3] = { 0.01f, 0.01f, 0.01f };
        qk_tensor_free(&g->values[v].t);
        qk_tensor_alloc(&g->values[v].t, QK_F32, 1, (int64_t[]){ 3 });
        memcpy(g->values[v].t.data, s3, sizeof s3);
        qk_tensor_free(&g->values[zv].t);
        qk_tensor_alloc(&g->values[zv].t, QK_I8, 1, (int64_t[]){ 3 });
        qk_node_set_int(g, qk_graph_find_node(g, "w_dequantized"), "axis", 1);
    }
    expect_err(g, QK_ERR_ARG, "axis", "per-channel along a reduced axis");
    /* zero point type differs from the codes' (int8 zp on uint8 weights) */
    g = build_conv("fp32", QK_U8, QK_U8, 0, 0.02f, 128, 0.03f, 0, 0, NULL, ws, wc, b);
    g->values[qk_graph_find_value(g, "w_zero_point")].t.dtype = QK_I8;
    expect_err(g, QK_ERR_ARG, "zero point", "zero point type");
    /* arithmetic: none, missing, unknown */
    g = build_conv("none", QK_U8, QK_U8, 0, 0.02f, 128, 0.03f, 0, 0, NULL, ws, wc, b);
    expect_err(g, QK_ERR_UNSUPPORTED, "none", "arith none");
    g = build_conv(NULL, QK_U8, QK_U8, 0, 0.02f, 128, 0.03f, 0, 0, NULL, ws, wc, b);
    expect_err(g, QK_ERR_UNSUPPORTED, "qkit.arith", "arith missing");
    g = build_conv("fixed", QK_U8, QK_U8, 0, 0.02f, 128, 0.03f, 0, 0, NULL, ws, wc, b);
    expect_err(g, QK_ERR_UNSUPPORTED, "fixed", "arith unknown");
    /* pot with a scale that is not a power of two */
    g = build_conv("pot", QK_I8, QK_I8, 1, 0.03125f, 0, 0.0625f, 0, 1, NULL, ws, wc, b);
    scale_of(g, "y_scale")[0] = 0.06f;
    expect_err(g, QK_ERR_ARG, "power-of-two", "pot scale");
    /* zero point outside the code range of a sub-8-bit Clip */
    g = build_conv("fp32", QK_U8, QK_U8, 0, 0.02f, 128, 0.03f, 0, 0, NULL, ws, wc, b);
    {
        int q = qk_graph_find_value(g, "x_quantized"), dq = qk_graph_find_node(g, "x_dequantized");
        uint8_t lo = 0, hi = 15;
        int l = init_t(g, "x_qmin", QK_U8, 0, NULL, &lo), h = init_t(g, "x_qmax", QK_U8, 0, NULL, &hi);
        int c = node(g, "Clip", "x_clip", 3, (int[]){ q, l, h }, "x_clipped");
        g->nodes[dq].in[0] = c;
    }
    expect_err(g, QK_ERR_ARG, "zero point 128 outside", "zero point outside the code range");
    /* unsupported operator: named */
    g = build_conv("fp32", QK_U8, QK_U8, 0, 0.02f, 128, 0.03f, 0, 0, NULL, ws, wc, b);
    {
        int o = g->outputs[0];
        int y = node(g, "Frobnicate", "frob", 1, &o, "frob_out");
        g->outputs[0] = y;
    }
    expect_err(g, QK_ERR_UNSUPPORTED, "frob", "unsupported op");
}

/* ------------------------------------------------------------ runner API and the example */

static void test_runner(const char *argv0)
{
    float ws[5], b[5];
    int32_t wc[135];
    qk_graph *g = build_conv("fp32", QK_U8, QK_U8, 0, 0.02f, 128, 0.03f, 0, 0, "relu", ws, wc, b);
    /* give it [N, classes] logits: Flatten */
    int o = g->outputs[0];
    g->outputs[0] = node(g, "Flatten", "flat", 1, &o, "logits");
    qk_qrun *r = NULL;
    qk_qrun_opts opts;
    qk_qrun_opts_default(&opts);
    opts.max_batch = 2;
    QT_OK(qk_qrun_create(g, &opts, &r));
    if (r) {
        int64_t d[4];
        qk_qrun_input_shape(r, d);
        QT_CHECK(d[0] == -1 && d[1] == 3 && d[2] == 6 && d[3] == 5, "runner: input shape");
        QT_CHECK(qk_qrun_classes(r) == 60, "runner: classes %lld", (long long)qk_qrun_classes(r));
        float x[5 * 90], y[5 * 60], y1[60];
        for (int i = 0; i < 5 * 90; i++)
            x[i] = frand(-2, 2);
        QT_OK(qk_qrun_forward(r, 5, 3, 6, 5, x, y)); /* 3 passes of 2, 2, 1 */
        QT_OK(qk_qrun_forward(r, 1, 3, 6, 5, x + 4 * 90, y1));
        QT_CHECK(memcmp(y1, y + 4 * 60, sizeof y1) == 0, "runner: batching changes results");
        QT_CHECK(qk_qrun_forward(r, 1, 3, 5, 6, x, y) == QK_ERR_SHAPE && strstr(qk_last_error(), "[1,3,5,6]"),
                 "runner: wrong shape: %s", qk_last_error());
        QT_CHECK(qk_qrun_forward(r, 0, 3, 6, 5, x, y) == QK_ERR_ARG, "runner: n = 0");
        QT_CHECK(qk_qrun_stats(r)->int_layers == 1, "runner: stats");
        /* the lowered graph survives an ONNX round trip (ai.qkit nodes rebind) */
        char p2[64];
        snprintf(p2, sizeof p2, "/tmp/qkit_test_lower_int_%d.onnx", (int)getpid());
        QT_OK(qk_onnx_save(qk_qrun_graph(r), p2));
        qk_graph *back = NULL;
        QT_OK(qk_onnx_load(p2, &back));
        if (back) {
            float yb[60];
            QT_OK(run_graph(back, 1, x + 4 * 90, yb, NULL));
            QT_CHECK(memcmp(yb, y1, sizeof yb) == 0, "runner: lowered graph after save/load differs");
            qk_graph_destroy(back);
        }
        unlink(p2);
        qk_qrun_destroy(r);
    }
    /* file round trip through the example program */
    char path[64];
    snprintf(path, sizeof path, "/tmp/qkit_test_lower_%d.onnx", (int)getpid());
    qk_status st = qk_onnx_save(g, path);
    QT_OK(st);
    qk_graph_destroy(g);
    if (st == QK_OK) {
        r = NULL;
        QT_OK(qk_qrun_load(path, NULL, &r));
        qk_qrun_destroy(r);
        char ex[512], cmd[1200];
        snprintf(ex, sizeof ex, "%s", argv0);
        char *slash = strrchr(ex, '/');
        if (slash) {
            *slash = 0;
            char *s2 = strrchr(ex, '/');
            if (s2)
                *s2 = 0;
            else
                snprintf(ex, sizeof ex, "..");
        } else {
            snprintf(ex, sizeof ex, "..");
        }
        snprintf(cmd, sizeof cmd, "%s/examples/qkit_infer", ex);
        if (access(cmd, X_OK) == 0) {
            snprintf(cmd, sizeof cmd, "%s/examples/qkit_infer %s > /dev/null", ex, path);
            QT_CHECK(system(cmd) == 0, "example: %s", cmd);
            snprintf(cmd, sizeof cmd, "%s/examples/qkit_infer /nonexistent.onnx 2> /dev/null", ex);
            QT_CHECK(system(cmd) != 0, "example: a missing model must fail");
        } else {
            printf("info: %s not built, example not run\n", cmd);
        }
        unlink(path);
    }
}

/* The shipped LeNet through fbgemm PTQ: the runner (fused epilogues, NHWC
 * activations -- its max pools read NHWC) against the plain NCHW lowering,
 * logits bit for bit on 64 test images. Skipped without the model or the
 * data. */
static void test_shipped_lenet(qk_pool *pool2)
{
    enum { NB = 64 };
    qk_dataset train = { 0 }, test = { 0 };
    if (access("models/lenet.onnx", R_OK) != 0 || qk_dataset_load_dir(NULL, "train", &train) != QK_OK ||
        qk_dataset_load_dir(NULL, "t10k", &test) != QK_OK) {
        printf("info: models/lenet.onnx or Fashion-MNIST absent: runner-vs-plain LeNet check skipped\n");
        qk_dataset_free(&train);
        qk_dataset_free(&test);
        return;
    }
    char qpath[64];
    snprintf(qpath, sizeof qpath, "/tmp/qkit_test_lower_lenet_%d.onnx", (int)getpid());
    qk_graph *g = NULL, *q = NULL, *r = NULL;
    qk_qmodel *qm = NULL;
    qk_norm norm = { 0 };
    qk_ptq_config cfg;
    qk_ptq_config_default(&cfg);
    cfg.backend = qk_backend_find("fbgemm");
    QT_OK(qk_onnx_load("models/lenet.onnx", &g));
    QT_CHECK(g && qk_graph_get_norm(g, &norm.mean, &norm.std) != QK_ERR_FORMAT, "lenet norm");
    QT_OK(qk_ptq_prepare(g, &cfg, &qm));
    QT_OK(qk_ptq_calibrate(qm, &train, norm, 32, pool2, NULL, NULL));
    QT_OK(qk_ptq_save_qdq(qm, qpath));
    qk_qmodel_destroy(qm);
    static float x[NB * 784], ya[NB * 10];
    int64_t lab[NB];
    qk_batcher bt;
    QT_OK(qk_batcher_init(&bt, &test, NB, 0, 0, norm, NULL));
    qk_batcher_epoch(&bt, 0);
    int64_t got;
    QT_OK(qk_batcher_get(&bt, 0, x, lab, &got));
    qk_batcher_free(&bt);
    qk_qrun *run = NULL;
    qk_qrun_opts o;
    qk_qrun_opts_default(&o);
    o.pool = pool2;
    QT_OK(qk_qrun_load(qpath, &o, &run));
    int maxpool_nhwc = 0;
    if (run) {
        QT_OK(qk_qrun_forward(run, NB, 1, 28, 28, x, ya));
        const qk_graph *rg = qk_qrun_graph(run);
        for (int i = 0; i < rg->n_nodes; i++)
            if (!strcmp(rg->nodes[i].op_type, "QkPool") && qk_node_int(&rg->nodes[i], "kind", 0) == 0)
                maxpool_nhwc += qk_node_int(&rg->nodes[i], "x_nhwc", 0) != 0;
    }
    int same = qk_onnx_load(qpath, &q) == QK_OK && qk_qdq_lower(q, NULL, &r, NULL) == QK_OK &&
               qk_graph_plan(r, NB, 0, NULL) == QK_OK && qk_graph_set_batch(r, NB) == QK_OK;
    if (same) {
        memcpy(r->values[r->inputs[0]].t.data, x, sizeof x);
        same = qk_graph_forward(r) == QK_OK &&
               memcmp(r->values[r->outputs[0]].t.data, ya, sizeof ya) == 0;
    }
    QT_CHECK(run && same && maxpool_nhwc == 2,
             "lenet fbgemm: runner (%d max pools on NHWC) vs plain lowering: logits %s", maxpool_nhwc,
             same ? "equal" : "differ");
    qk_qrun_destroy(run);
    qk_graph_destroy(r);
    qk_graph_destroy(q); /* g belongs to the qmodel (destroyed above) */
    unlink(qpath);
    qk_dataset_free(&train);
    qk_dataset_free(&test);
}

/* QkEpilogue's AVX-512 and AVX2 passes against the portable loop, bit for bit: values
 * whose exact quotient by y_scale is a half-integer (a_scale = y_scale * k /
 * 2 with y_scale 3 or 0.1) and random scales, relu, int32 / uint8 / int8 a
 * with a uint8 / int8 or float b, per-tensor and per-channel scales, NCHW
 * and NHWC runs, uint8 and int8 codes out, a non-finite scale. */
static void test_epilogue_kernel(void)
{
    if (!qk_cpu_isa_usable(QK_ISA_AVX512)) {
        printf("note: no AVX-512: QkEpilogue kernel comparison skipped\n");
        return;
    }
    enum { NE = 4099, C = 24 };
    static int32_t a32[NE];
    static uint8_t a8[NE], b8[NE], y0[NE], y1[NE];
    static float bf[NE];
    float sa[C], sb[C];
    uint32_t seed = 11;
#define ERND() (seed = seed * 1664525u + 1013904223u, seed >> 8)
    int bad = 0, bad2 = 0, cases = 0;
    for (int it = 0; it < 96; it++) {
        const float yss[3] = {3.0f, 0.1f, 0.0123f};
        float ys = yss[it % 3];
        int tie = it % 2 == 0, at = it / 2 % 3, relu = it / 6 % 2, nhwc = it / 12 % 2, out8 = it / 24 % 2;
        int bkind = it / 48 % 2; /* 0: integer b, 1: float b */
        for (int k = 0; k < C; k++) {
            sa[k] = tie ? ys * (float)(1 + k % 3) * 0.5f : (float)(ERND() % 1000 + 1) * 1e-4f;
            sb[k] = tie ? ys * 0.5f : (float)(ERND() % 1000 + 1) * 1e-3f;
        }
        if (it == 95)
            sa[3] = 1.0f / 0.0f; /* int8 a, zero point 3, NHWC, per-channel scales */
        for (int i = 0; i < NE; i++) {
            a32[i] = (int32_t)(ERND() % 2001) - 1000;
            a8[i] = (uint8_t)ERND();
            b8[i] = (uint8_t)ERND();
            bf[i] = (float)((int)(ERND() % 2001) - 1000) * 0.0137f;
        }
        if (it == 95) /* a - a_zero = 0 against the infinite scale of channel 3: NaN, the zero point's code */
            a8[3] = a8[3 + 5 * C] = 3;
        qk_epi_run e = {.at = at == 0 ? QK_I32 : at == 1 ? QK_U8 : QK_I8, .bt = out8 ? QK_I8 : QK_U8,
                        .out = out8 ? QK_I8 : QK_U8, .a = at == 0 ? (const void *)a32 : a8,
                        .b = bkind ? (const void *)bf : b8, .b_int = !bkind, .relu = relu,
                        .za = at == 0 ? 0 : 3, .zb = 5, .zy = out8 ? -3 : 7, .ys = ys, .sa = sa, .sb = sb,
                        .nsa = it % 4 == 1 ? 1 : C, .nsb = it % 4 == 3 ? 1 : C, .C = C, .run = nhwc ? 1 : 37};
        e.y = y0;
        qk_epi_range_ref(&e, 0, NE);
        e.y = y1;
        memset(y1, 0xa5, sizeof y1);
        qk_epi_range__avx512(&e, 0, 16 * 100);
        qk_epi_range__avx512(&e, 16 * 100, NE); /* a ragged tail */
        bad += memcmp(y0, y1, NE) != 0;
        memset(y1, 0xa5, sizeof y1); /* AVX2 to a multiple of 8, the reference after it */
        qk_epi_range_ref(&e, qk_epi_range__avx2(&e, 0, 1001), 1001);
        qk_epi_range_ref(&e, qk_epi_range__avx2(&e, 1001, NE), NE);
        bad2 += memcmp(y0, y1, NE) != 0;
        cases++;
    }
#undef ERND
    QT_CHECK(bad == 0, "QkEpilogue AVX-512: %d of %d cases differ from the portable loop", bad, cases);
    QT_CHECK(bad2 == 0, "QkEpilogue AVX2: %d of %d cases differ from the portable loop", bad2, cases);
}

int main(int argc, char **argv)
{
    (void)argc;
    qk_pool *pool2 = NULL;
    QT_OK(qk_pool_create(2, &pool2));
    test_epilogue_kernel();
    test_worked_example();
    test_conv("fp32", QK_RQ_FP32, QK_U8, QK_U8, 0, 0, "relu", pool2);   /* SNPE-like uint8 asym, per tensor */
    test_conv("fp32", QK_RQ_FP32, QK_U8, QK_U8, 0, 0, NULL, NULL);
    test_conv("fp32", QK_RQ_FP32, QK_I8, QK_I8, 1, 0, "relu6", NULL);  /* int8 sym per channel */
    test_conv("gemmlowp", QK_RQ_GEMMLOWP, QK_U8, QK_U8, 0, 0, "relu", NULL);
    test_conv("gemmlowp", QK_RQ_GEMMLOWP, QK_I8, QK_I8, 1, 0, NULL, pool2);
    test_conv("pot", QK_RQ_SHIFT, QK_I8, QK_I8, 1, 1, "relu", NULL);
    test_gemm("fp32", QK_RQ_FP32);
    test_gemm("gemmlowp", QK_RQ_GEMMLOWP);
    test_residual("fp32", QK_U8, 0, pool2);
    test_residual("fp32", QK_I8, 0, NULL);
    test_residual("gemmlowp", QK_I8, 0, NULL);
    test_residual("gemmlowp", QK_U8, 0, NULL);
    test_residual("pot", QK_I8, 0, NULL);
    test_residual("fp32", QK_I8, 1, pool2); /* TensorRT style */
    test_residual("fp32", QK_U8, 1, pool2);
    for (int ff = 0; ff < 2; ff++) {
        test_trt_maxpool(QK_U8, ff, pool2);
        test_trt_maxpool(QK_I8, ff, pool2);
    }
    {
        test_trt_shared_dq(pool2);
        test_maxpool_nhwc(3, pool2);
        test_maxpool_nhwc(9, pool2);
        test_gap_nhwc(QK_U8, "fp32", 0.01f, pool2);
        test_gap_nhwc(QK_I8, "fp32", 0.01f, pool2);
        test_gap_nhwc(QK_I8, "gemmlowp", 0.01f, pool2);
        test_gap_nhwc(QK_I8, "gemmlowp", 0.05f, pool2); /* the conv output's scale: codes averaged */
        test_gap_nhwc(QK_U8, "gemmlowp", 0.05f, pool2);
    }
    test_concat();
    test_errors();
    test_runner(argv[0]);
    test_shipped_lenet(pool2);
    qk_pool_destroy(pool2);
    return qt_finish("test_lower");
}
