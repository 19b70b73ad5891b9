/* int8 GEMM and convolution: every kernel in the list (forced by index)
 * against the plain reference, bit-exact, on random shapes at tile sizes
 * +-1, odd K, extreme zero points, saturating output stages, per-channel
 * requantization, each rounding mode and output type; transposed stores;
 * dynamic weights (update); convolution with strides/pads/dilations/groups
 * and depthwise; 1 vs 2 threads identical. Kernels the CPU lacks are
 * skipped with a note. */
#include "qkit/int.h"
#include "qt.h"
#include "../src/int/kernels/i8conv.h"

#include <string.h>

static qk_rng rng;
static qk_pool *pool2;

static size_t qk_i8_align64_test(size_t x) { return (x + 63) & ~(size_t)63; }

static int32_t rnd(int32_t lo, int32_t hi) { return lo + (int32_t)qk_rng_below(&rng, (uint32_t)(hi - lo + 1)); }


/* Random int8/uint8 data; mode 1: all at the type's extreme ends. */
static void fill(void *p, int64_t n, qk_dtype t, int mode)
{
    int32_t lo, hi;
    qk_int_range(t, &lo, &hi);
    for (int64_t i = 0; i < n; i++) {
        int32_t v = mode == 1 ? (qk_rng_below(&rng, 2) ? lo : hi) : rnd(lo, hi);
        ((uint8_t *)p)[i] = (uint8_t)v;
    }
}

/* Output-stage parameters whose outputs span (and often saturate) the type
 * for accumulators of typical size `mag`. */
typedef struct {
    int32_t mult[600], shift[600];
    float scale[600];
} rq_store;

static void make_rq(qk_requant *rq, rq_store *s, qk_rq_mode mode, qk_dtype ot, int n, double mag)
{
    memset(rq, 0, sizeof *rq);
    rq->mode = ot == QK_I32 ? QK_RQ_NONE : mode;
    rq->n = n;
    if (ot == QK_I32)
        return;
    int32_t lo, hi;
    qk_int_range(ot, &lo, &hi);
    double span = (double)(hi - lo);
    for (int i = 0; i < n; i++) {
        double sc = span / (2.0 * mag) * (0.2 + 3.0 * qk_rng_uniform(&rng));
        if (qk_rng_below(&rng, 16) == 0)
            sc *= 1e-6; /* tiny multipliers: flushes and large right shifts */
        int e;
        QT_OK(qk_quantize_multiplier(sc, &s->mult[i], &e));
        s->shift[i] = e;
        s->scale[i] = (float)sc;
        if (mode == QK_RQ_SHIFT) {
            int sh = (int)(-log2(sc) + 0.5);
            s->shift[i] = sh < -31 ? -31 : sh > 31 ? 31 : sh;
        }
    }
    rq->mult = s->mult;
    rq->shift = s->shift;
    rq->scale = s->scale;
    rq->zero_point = rnd(lo, hi);
    rq->qmin = lo;
    rq->qmax = hi;
    if (qk_rng_below(&rng, 3) == 0) { /* fused ReLU-like clamp */
        rq->qmin = rq->zero_point;
        rq->qmax = rnd(rq->qmin, hi);
    }
}

typedef struct {
    int64_t M, K, N;
    qk_dtype at, bt, ot;
    qk_rq_mode mode;
    int rq_per_ch, zb_per_ch, extreme, bias, trans;
    int zb_zero;               /* symmetric weights: every zero point 0 (no row sums) */
} gcase;

static void gemm_case(const gcase *c, int kernel)
{
    const char *kn = qk_i8_kernel_get(kernel)->name;
    int64_t M = c->M, K = c->K, N = c->N, lda = K + rnd(0, 3), ldb = (c->trans ? K : N) + rnd(0, 2);
    uint8_t *A = qk_malloc((size_t)(M * lda + 1)), *B = qk_malloc((size_t)((c->trans ? N : K) * ldb));
    int32_t *zb = qk_malloc((size_t)N * 4), *bias = qk_malloc((size_t)N * 4);
    size_t es = qk_dtype_size(c->ot);
    uint8_t *ref = qk_malloc((size_t)(M * N) * es + 1), *out = qk_malloc((size_t)(M * N) * es + 1);
    uint8_t *outt = qk_malloc((size_t)(M * N) * es + 1);
    static rq_store rs;
    fill(A, M * lda, c->at, c->extreme == 1);
    fill(B, (c->trans ? N : K) * ldb, c->bt, c->extreme == 1);
    int32_t lo, hi;
    qk_int_range(c->bt, &lo, &hi);
    for (int64_t i = 0; i < N; i++) {
        zb[i] = c->zb_zero ? 0 : c->extreme ? (qk_rng_below(&rng, 2) ? lo : hi) : rnd(lo, hi);
        bias[i] = rnd(-100000, 100000);
    }
    int32_t alo, ahi;
    qk_int_range(c->at, &alo, &ahi);
    qk_i8gemm_desc d = {.a_type = c->at, .b_type = c->bt, .K = K, .N = N, .B = B, .ldb = ldb, .b_trans = c->trans,
                        .a_zero = c->extreme ? (qk_rng_below(&rng, 2) ? alo : ahi) : rnd(alo, ahi),
                        .nb_zero = c->zb_per_ch ? (int)N : 1, .b_zero = zb, .bias = c->bias ? bias : NULL,
                        .out_type = c->ot, .kernel = kernel};
    make_rq(&d.rq, &rs, c->mode, c->ot, c->rq_per_ch ? (int)N : 1, 100.0 * 100.0 * sqrt((double)K));
    char what[200];
    snprintf(what, sizeof what, "%s M=%lld K=%lld N=%lld %s x %s -> %s %s rq_pc=%d zb_pc=%d ext=%d trans=%d", kn,
             (long long)M, (long long)K, (long long)N, qk_dtype_name(c->at), qk_dtype_name(c->bt),
             qk_dtype_name(c->ot), qk_rq_mode_name(d.rq.mode), c->rq_per_ch,
             c->zb_per_ch, c->extreme, c->trans);
    QT_OK(qk_i8gemm_ref(&d, M, A, lda, ref, N, 1));
    qk_i8gemm *g = NULL;
    QT_OK(qk_i8gemm_create(&d, &g));
    if (g) {
        size_t wsb = qk_i8gemm_ws_bytes(g);
        uint8_t *ws = qk_aligned_alloc(wsb * 2 + 64);
        memset(out, 0xA5, (size_t)(M * N) * es);
        QT_OK(qk_i8gemm_run(g, M, A, lda, out, N, 1, NULL, ws, wsb));
        QT_CHECK(memcmp(out, ref, (size_t)(M * N) * es) == 0, "%s: 1 thread differs from reference", what);
        memset(out, 0x5A, (size_t)(M * N) * es);
        QT_OK(qk_i8gemm_run(g, M, A, lda, out, N, 1, pool2, ws, wsb));
        QT_CHECK(memcmp(out, ref, (size_t)(M * N) * es) == 0, "%s: 2 threads differ from reference", what);
        /* transposed store: C[n*M + m] */
        QT_OK(qk_i8gemm_run(g, M, A, lda, outt, 1, M, pool2, ws, wsb));
        int same = 1;
        for (int64_t m = 0; m < M && same; m++)
            for (int64_t n = 0; n < N; n++)
                if (memcmp(outt + (size_t)(n * M + m) * es, ref + (size_t)(m * N + n) * es, es)) {
                    same = 0;
                    break;
                }
        QT_CHECK(same, "%s: transposed store differs", what);
        qk_aligned_free(ws);
        qk_i8gemm_destroy(g);
    }
    qk_free(A), qk_free(B), qk_free(zb), qk_free(bias), qk_free(ref), qk_free(out), qk_free(outt);
}

static int64_t pick(const int64_t *v, int n) { return v[qk_rng_below(&rng, (uint32_t)n)]; }

static void test_gemm_kernel(int k)
{
    const qk_i8_kernel_info *ki = qk_i8_kernel_get(k);
    int64_t mr = ki->mr, nr = ki->nr;
    int64_t Ms[] = {1, 2, mr - 1 > 0 ? mr - 1 : 1, mr, mr + 1, 2 * mr + 1, 61, 97, 130};
    int64_t Ns[] = {1, 3, nr - 1 > 0 ? nr - 1 : 1, nr, nr + 1, 2 * nr + 1, 255, 257};
    int64_t Ks[] = {1, 2, 3, 4, 5, 7, 63, 64, 65, 127, 130, 300};
    qk_dtype types[] = {QK_U8, QK_I8};
    qk_dtype outs[] = {QK_U8, QK_I8, QK_I16, QK_I32};
    qk_rq_mode modes[] = {QK_RQ_GEMMLOWP, QK_RQ_Q31_SINGLE, QK_RQ_FP32, QK_RQ_SHIFT};
    int cases = ki->test_only ? 40 : 200;
    for (int i = 0; i < cases; i++) {
        gcase c = {pick(Ms, 9), pick(Ks, 12), pick(Ns, 8), types[i & 1], types[(i >> 1) & 1], outs[i % 4],
                   modes[(i / 4) % 4], (i / 3) & 1, (i / 5) & 1, i % 7 == 0 ? 1 : (i % 7 == 1 ? 2 : 0), i % 3 != 0,
                   (i / 2) % 3 == 0, 0};
        if (c.M * c.N * c.K > (ki->test_only ? 1000000 : 8000000))
            c.K = 5;
        gemm_case(&c, k);
    }
    /* a large case: several tasks in both directions, long K */
    gcase big = {ki->test_only ? 70 : 211, ki->test_only ? 200 : 1000, ki->test_only ? 70 : 300, QK_I8, QK_U8,
                 QK_U8, QK_RQ_FP32, 1, 1, 0, 1, 0, 0};
    gemm_case(&big, k);
    /* uint8 x int8 with symmetric weights and a short K (the VNNI kernel's
     * one-pass path with the output stage in registers), widths around 16
     * and 64 */
    int64_t Nq[] = {1, 15, 16, 17, 24, 32, 48, 63, 64, 65, 96, 130};
    for (int i = 0; i < 96; i++) {
        gcase c = {pick(Ms, 9), 1 + (int64_t)qk_rng_below(&rng, 16), pick(Nq, 12), QK_U8, QK_I8, outs[i % 2],
                   i & 2 ? QK_RQ_FP32 : QK_RQ_GEMMLOWP, (i / 4) & 1, 0, i % 5 == 0, i % 3 != 0, 0, 1};
        gemm_case(&c, k);
    }
    /* all four type combinations with the largest magnitudes at every shape edge */
    for (int i = 0; i < 4; i++) {
        gcase c = {mr + 1, 67, 2 * nr + 1, types[i & 1], types[i >> 1], QK_I32, QK_RQ_NONE, 0, 1, 1, 1, 0, 0};
        gemm_case(&c, k);
    }
}

/* Dynamic weights: create without B, then update (the ONNX graph-input case). */
static void test_update(int k)
{
    int64_t M = 37, K = 45, N = 70;
    uint8_t *A = qk_malloc((size_t)(M * K)), *B = qk_malloc((size_t)(K * N));
    int32_t ref[37 * 70], out[37 * 70], zb = -3;
    fill(A, M * K, QK_U8, 0);
    qk_i8gemm_desc d = {.a_type = QK_U8, .b_type = QK_I8, .K = K, .N = N, .B = NULL, .ldb = N, .a_zero = 7,
                        .nb_zero = 1, .b_zero = &zb, .out_type = QK_I32, .kernel = k};
    qk_i8gemm *g = NULL;
    QT_OK(qk_i8gemm_create(&d, &g));
    if (!g)
        return;
    size_t wsb = qk_i8gemm_ws_bytes(g);
    uint8_t *ws = qk_aligned_alloc(wsb * 2);
    QT_CHECK(qk_i8gemm_run(g, M, A, K, out, N, 1, NULL, ws, wsb) == QK_ERR_STATE, "run without weights must fail");
    for (int rep = 0; rep < 2; rep++) {
        fill(B, K * N, QK_I8, 0);
        d.B = B;
        d.a_zero = rnd(0, 255);
        zb = rnd(-128, 127);
        QT_OK(qk_i8gemm_update(g, &d));
        QT_OK(qk_i8gemm_ref(&d, M, A, K, ref, N, 1));
        QT_OK(qk_i8gemm_run(g, M, A, K, out, N, 1, pool2, ws, wsb));
        QT_CHECK(memcmp(out, ref, sizeof ref) == 0, "%s: update rep %d differs", qk_i8_kernel_get(k)->name, rep);
    }
    d.N = N + 1;
    QT_CHECK(qk_i8gemm_update(g, &d) == QK_ERR_ARG, "update with a different N must fail");
    qk_aligned_free(ws);
    qk_i8gemm_destroy(g);
    qk_free(A), qk_free(B);
}

/* ---- convolution ---- */

typedef struct {
    int64_t N, C, Co, groups, H, W, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr;
} ccase;

/* 1: weight zero points that need no row sums (0 for int8, 128 for uint8):
 * the AMX kernels' implicit-im2col path */
static int sym_w;

static void conv_case(const ccase *cc, int kernel, qk_dtype xt, qk_dtype wt, qk_dtype ot, qk_rq_mode mode, int ext)
{
    const char *kn = qk_i8_kernel_get(kernel)->name;
    int64_t OH = qk_conv_out_dim(cc->H, cc->kh, cc->sh, cc->dh, cc->pt, cc->pb);
    int64_t OW = qk_conv_out_dim(cc->W, cc->kw, cc->sw, cc->dw, cc->pl, cc->pr);
    if (OH < 1 || OW < 1)
        return;
    int64_t Cg = cc->C / cc->groups, nx = cc->N * cc->C * cc->H * cc->W, nw = cc->Co * Cg * cc->kh * cc->kw;
    int64_t ny = cc->N * cc->Co * OH * OW;
    size_t es = qk_dtype_size(ot);
    uint8_t *x = qk_malloc((size_t)nx), *w = qk_malloc((size_t)nw);
    uint8_t *ref = qk_malloc((size_t)ny * es), *y1 = qk_malloc((size_t)ny * es), *y2 = qk_malloc((size_t)ny * es);
    int32_t *wz = qk_malloc((size_t)cc->Co * 4), *bias = qk_malloc((size_t)cc->Co * 4);
    static rq_store rs;
    fill(x, nx, xt, ext);
    fill(w, nw, wt, ext);
    int32_t lo, hi, xlo, xhi;
    qk_int_range(wt, &lo, &hi);
    qk_int_range(xt, &xlo, &xhi);
    for (int64_t i = 0; i < cc->Co; i++) {
        wz[i] = sym_w ? (wt == QK_U8 ? 128 : 0) : ext ? lo : rnd(lo, hi);
        bias[i] = rnd(-50000, 50000);
    }
    qk_i8conv_desc d = {.x_type = xt, .w_type = wt, .out_type = ot, .C = cc->C, .Co = cc->Co, .groups = cc->groups,
                        .kh = cc->kh, .kw = cc->kw, .stride_h = cc->sh, .stride_w = cc->sw, .dil_h = cc->dh,
                        .dil_w = cc->dw, .pad_t = cc->pt, .pad_l = cc->pl, .pad_b = cc->pb, .pad_r = cc->pr, .w = w,
                        .x_zero = ext ? xhi : rnd(xlo, xhi), .nw_zero = qk_rng_below(&rng, 2) ? (int)cc->Co : 1,
                        .w_zero = wz, .bias = bias, .kernel = kernel};
    make_rq(&d.rq, &rs, mode, ot, qk_rng_below(&rng, 2) ? (int)cc->Co : 1,
            100.0 * 100.0 * sqrt((double)(Cg * cc->kh * cc->kw)));
    char what[256];
    snprintf(what, sizeof what,
             "%s conv N%lld C%lld->%lld g%lld %lldx%lld k%lldx%lld s%lld,%lld d%lld,%lld p%lld,%lld,%lld,%lld %s",
             kn, (long long)cc->N, (long long)cc->C, (long long)cc->Co, (long long)cc->groups, (long long)cc->H,
             (long long)cc->W, (long long)cc->kh, (long long)cc->kw, (long long)cc->sh, (long long)cc->sw,
             (long long)cc->dh, (long long)cc->dw, (long long)cc->pt, (long long)cc->pl, (long long)cc->pb,
             (long long)cc->pr, qk_rq_mode_name(d.rq.mode));
    QT_OK(qk_i8conv_ref(&d, cc->N, cc->H, cc->W, x, ref));
    qk_i8conv *c = NULL;
    QT_OK(qk_i8conv_create(&d, &c));
    if (c) {
        size_t wsb = qk_i8_align64_test(qk_i8conv_ws_bytes(c, cc->H, cc->W));
        uint8_t *ws = qk_aligned_alloc(wsb * 2);
        QT_OK(qk_i8conv_run(c, cc->N, cc->H, cc->W, x, y1, NULL, ws, wsb));
        QT_OK(qk_i8conv_run(c, cc->N, cc->H, cc->W, x, y2, pool2, ws, wsb));
        QT_CHECK(memcmp(y1, ref, (size_t)ny * es) == 0, "%s: 1 thread differs from reference", what);
        QT_CHECK(memcmp(y2, y1, (size_t)ny * es) == 0, "%s: 2 threads differ from 1", what);
        if (cc->groups == 1 && qk_i8conv_nhwc_ok(c, 0)) { /* NHWC output (the runner's layout; the short-K kernel writes pixel rows) */
            int64_t P = OH * OW;
            QT_OK(qk_i8conv_run_layout(c, cc->N, cc->H, cc->W, x, 0, y2, 1, pool2, ws, wsb));
            int64_t bad = 0;
            for (int64_t n = 0; n < cc->N; n++)
                for (int64_t co = 0; co < cc->Co; co++)
                    for (int64_t p = 0; p < P; p++)
                        bad += memcmp(y2 + (size_t)(((n * P + p) * cc->Co + co)) * es,
                                      ref + (size_t)(((n * cc->Co + co) * P + p)) * es, es) != 0;
            QT_CHECK(bad == 0, "%s: NHWC output differs from the reference in %lld places", what, (long long)bad);
            if (qk_i8conv_nhwc_ok(c, 1)) { /* NHWC in and out (what the runner runs) */
                int64_t HW = cc->H * cc->W;
                uint8_t *xn = qk_malloc((size_t)nx), *y3 = qk_malloc((size_t)ny * es);
                for (int64_t n = 0; n < cc->N; n++)
                    for (int64_t ch = 0; ch < cc->C; ch++)
                        for (int64_t i = 0; i < HW; i++)
                            xn[(n * HW + i) * cc->C + ch] = x[(n * cc->C + ch) * HW + i];
                QT_OK(qk_i8conv_run_layout(c, cc->N, cc->H, cc->W, xn, 1, y3, 1, NULL, ws, wsb));
                QT_CHECK(memcmp(y3, y2, (size_t)ny * es) == 0, "%s: NHWC input gives other codes", what);
                qk_free(xn), qk_free(y3);
            }
        }
        if (cc->groups == 1 && cc->sh == 1 && cc->sw == 1 && cc->dh == 1 && cc->dw == 1 && (cc->kh > 1 || cc->kw > 1)) {
            /* the implicit path is taken where it should be */
            /* AMX tasks hold 64 rows, VNNI 96 (kernels with compute_koff) */
            int amx = !strncmp(kn, "amx", 3), vnni = !strcmp(kn, "vnni"), wp = (int)(cc->W + cc->pl + cc->pr);
            int fits = (amx ? wp <= 64 : wp <= 96) && (Cg >= 16 || (vnni && cc->C == 1)) && cc->groups == 1;
            QT_CHECK(!strcmp(qk_i8conv_path(c, cc->H, cc->W), (amx || vnni) && fits ? "implicit" : "im2col"),
                     "%s: path %s",
                     what, qk_i8conv_path(c, cc->H, cc->W));
        }
        qk_aligned_free(ws);
        qk_i8conv_destroy(c);
    }
    qk_free(x), qk_free(w), qk_free(ref), qk_free(y1), qk_free(y2), qk_free(wz), qk_free(bias);
}

static void test_conv_kernel(int k)
{
    qk_dtype types[] = {QK_U8, QK_I8};
    qk_dtype outs[] = {QK_U8, QK_I8, QK_I32, QK_I16};
    qk_rq_mode modes[] = {QK_RQ_GEMMLOWP, QK_RQ_FP32, QK_RQ_Q31_SINGLE, QK_RQ_SHIFT};
    /* fixed cases: the reference models' layer kinds and edge shapes */
    ccase fixed[] = {
        {2, 1, 32, 1, 14, 14, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},   /* lenet conv1 (K = 9) */
        {1, 32, 64, 1, 7, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},    /* lenet conv2 */
        {1, 16, 32, 1, 9, 9, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},    /* resnet8 stride 2 */
        {1, 16, 32, 1, 9, 9, 1, 1, 2, 2, 1, 1, 0, 0, 0, 0},    /* 1x1 shortcut stride 2 */
        {2, 24, 24, 24, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},   /* depthwise */
        {1, 16, 16, 16, 9, 9, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},   /* depthwise stride 2 */
        {1, 8, 16, 8, 7, 6, 3, 3, 1, 2, 2, 1, 2, 0, 1, 3},     /* depthwise x2 multiplier, dilation, odd pads */
        {1, 6, 9, 3, 7, 8, 2, 3, 2, 1, 1, 2, 0, 1, 2, 0},      /* grouped, odd channels */
        {1, 3, 5, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0},      /* 1x1 image */
        {1, 5, 7, 1, 4, 4, 5, 5, 1, 1, 1, 1, 2, 2, 2, 2},      /* kernel larger than image + pads */
        {1, 33, 35, 1, 11, 13, 3, 3, 3, 2, 1, 1, 0, 1, 1, 0},
        {2, 24, 40, 1, 9, 7, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0},    /* pointwise (no im2col) */
        {1, 16, 8, 2, 9, 10, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0},    /* pointwise, 2 groups of 8 */
        {1, 16, 12, 2, 10, 9, 3, 2, 2, 1, 2, 1, 1, 0, 2, 1},   /* NHWC staging, 2 groups, dilation */
        {1, 9, 5, 1, 40, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},     /* tall image: pixel blocks span rows */
    };
    int nf = (int)(sizeof fixed / sizeof fixed[0]);
    for (int i = 0; i < nf; i++)
        conv_case(&fixed[i], k, types[i & 1], types[(i >> 1) & 1], outs[i % 4], modes[i % 4], i == 3);
    /* implicit im2col (AMX kernels, symmetric weights): the reference
     * models' stride-1 layers, wide rows (few or one output row per task),
     * asymmetric pads, kw*Cg not a multiple of 64, a row wider than a task */
    ccase imp[] = {
        {2, 16, 16, 1, 28, 28, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},
        {1, 32, 32, 1, 14, 14, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},
        {2, 64, 64, 1, 7, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},
        {1, 17, 33, 1, 9, 11, 2, 5, 1, 1, 1, 1, 1, 2, 0, 2},
        {1, 20, 9, 1, 5, 61, 3, 3, 1, 1, 1, 1, 0, 2, 1, 0},
        {1, 24, 40, 1, 3, 70, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},
        {1, 16, 7, 1, 6, 5, 5, 3, 1, 1, 1, 1, 2, 0, 3, 2},
    };
    for (sym_w = 1; sym_w >= 0; sym_w--) /* symmetric weights (no row sums), then any zero points */
        for (int i = 0; i < (int)(sizeof imp / sizeof imp[0]); i++)
            conv_case(&imp[i], k, types[i & 1], types[(i >> 1) & 1], outs[i % 4], modes[i % 4], !sym_w && i == 2);
    /* uint8 x, int8 weights, 8-bit gemmlowp / fp32 output, symmetric weights then any zero points:
     * one input channel (a first layer on grey images: VNNI's implicit im2col, the short-K kernel with
     * the output stage in registers where K = kh x 4 <= 16, its general tiles for a 5x5 kernel and
     * with row sums), then at most 16 output channels at stride 1 (the 12 x 16 tiles, NHWC in and
     * out): rows not a multiple of 16 pixels, 8 to 20 input channels, 5x5 and 3x2 kernels, odd pads */
    ccase u8[] = {
        {2, 1, 16, 1, 28, 28, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},
        {1, 1, 32, 1, 14, 14, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},
        {1, 1, 70, 1, 9, 13, 3, 2, 1, 1, 1, 1, 0, 1, 2, 0},
        {1, 1, 20, 1, 12, 12, 5, 5, 1, 1, 1, 1, 2, 2, 2, 2},
        {2, 16, 16, 1, 28, 28, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},
        {1, 8, 12, 1, 9, 13, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},
        {1, 20, 16, 1, 7, 33, 3, 2, 1, 1, 1, 1, 0, 1, 2, 0},
        {1, 12, 5, 1, 5, 20, 5, 5, 1, 1, 1, 1, 2, 2, 2, 2},
    };
    for (sym_w = 1; sym_w >= 0; sym_w--)
        for (int i = 0; i < (int)(sizeof u8 / sizeof u8[0]); i++)
            for (int m = 0; m < 2; m++)
                conv_case(&u8[i], k, QK_U8, QK_I8, outs[(i + m) % 2], modes[m], 0);
    sym_w = 0;
    int nrand = qk_i8_kernel_get(k)->test_only ? 6 : 20;
    for (int i = 0; i < nrand; i++) {
        ccase c;
        c.groups = qk_rng_below(&rng, 3) == 0 ? rnd(2, 4) : 1;
        c.C = c.groups * (i % 2 ? rnd(1, 6) : rnd(7, 20)); /* both im2col paths (NHWC staging from 8 per group) */
        c.Co = c.groups * rnd(1, 9);
        c.N = rnd(1, 2);
        c.H = rnd(1, 12), c.W = rnd(1, 12);
        c.kh = rnd(1, 4), c.kw = rnd(1, 4);
        c.sh = rnd(1, 3), c.sw = rnd(1, 3);
        c.dh = rnd(1, 2), c.dw = rnd(1, 2);
        c.pt = rnd(0, 2), c.pl = rnd(0, 2), c.pb = rnd(0, 2), c.pr = rnd(0, 2);
        conv_case(&c, k, types[i & 1], types[(i >> 1) & 1], outs[(i >> 2) % 4], modes[i % 4], i % 5 == 4);
    }
}

/* Conv with weights/zero points given later (graph inputs): create
 * without weights, update with new x_zero (the padding value) and weights. */
static void test_conv_update(int k)
{
    int64_t N = 1, C = 3, Co = 5, H = 5, W = 6;
    uint8_t x[90], w[5 * 3 * 9];
    int32_t y1[5 * 5 * 6], ref[5 * 5 * 6], wz = 0;
    fill(x, 90, QK_U8, 0);
    for (int groups = 1; groups <= 3; groups += 2) {
        int64_t Cin = groups == 3 ? 3 : C, Cout = groups == 3 ? 3 : Co;
        qk_i8conv_desc d = {.x_type = QK_U8, .w_type = QK_I8, .out_type = QK_I32, .C = Cin, .Co = Cout,
                            .groups = groups, .kh = 3, .kw = 3, .stride_h = 1, .stride_w = 1, .dil_h = 1, .dil_w = 1,
                            .pad_t = 1, .pad_l = 1, .pad_b = 1, .pad_r = 1, .w = NULL, .x_zero = 0, .nw_zero = 1,
                            .w_zero = &wz, .kernel = k, .rq = {.mode = QK_RQ_NONE, .n = 1}};
        qk_i8conv *c = NULL;
        QT_OK(qk_i8conv_create(&d, &c));
        if (!c)
            continue;
        size_t wsb = qk_i8_align64_test(qk_i8conv_ws_bytes(c, H, W));
        uint8_t *ws = qk_aligned_alloc(wsb * 2);
        for (int rep = 0; rep < 2; rep++) {
            fill(w, Cout * (Cin / groups) * 9, QK_I8, 0);
            d.w = w;
            d.x_zero = rnd(1, 255);
            wz = rnd(-128, 127);
            QT_OK(qk_i8conv_update(c, &d));
            QT_OK(qk_i8conv_ref(&d, N, H, W, x, ref));
            QT_OK(qk_i8conv_run(c, N, H, W, x, y1, pool2, ws, wsb));
            QT_CHECK(memcmp(y1, ref, (size_t)(Cout * H * W) * 4) == 0, "%s: conv update (groups %d) rep %d differs",
                     qk_i8_kernel_get(k)->name, groups, rep);
        }
        qk_aligned_free(ws);
        qk_i8conv_destroy(c);
    }
}

static void test_dispatch(void)
{
    char buf[256];
    printf("info: %s\n", qk_cpu_describe(buf, sizeof buf));
    int best = qk_i8_kernel_for_isa(qk_cpu_isa());
    QT_CHECK(best >= 0 && qk_i8_kernel_usable(best) && !qk_i8_kernel_get(best)->test_only,
             "dispatch picked an unusable kernel");
    QT_CHECK(qk_i8_kernel_get(qk_i8_kernel_for_isa(QK_ISA_REF))->isa == QK_ISA_REF, "ref level picks the ref kernel");
    qk_isa isa;
    QT_OK(qk_isa_parse("VNNI", &isa));
    QT_CHECK(isa == QK_ISA_VNNI, "parse vnni");
    QT_CHECK(qk_isa_parse("sse9", &isa) == QK_ERR_ARG, "unknown ISA name rejected");
    /* bad descriptors */
    int8_t B[4] = {1, 2, 3, 4};
    int32_t zb = 300;
    qk_i8gemm_desc d = {.a_type = QK_U8, .b_type = QK_I8, .K = 2, .N = 2, .B = B, .ldb = 2, .a_zero = 0,
                        .nb_zero = 1, .b_zero = &zb, .out_type = QK_I32, .kernel = -1};
    qk_i8gemm *g = NULL;
    QT_CHECK(qk_i8gemm_create(&d, &g) == QK_ERR_ARG && !g, "weight zero point 300 for int8 rejected");
    zb = 0;
    d.a_zero = -1;
    QT_CHECK(qk_i8gemm_create(&d, &g) == QK_ERR_ARG, "activation zero point -1 for uint8 rejected");
    d.a_zero = 0;
    d.out_type = QK_U8;
    QT_CHECK(qk_i8gemm_create(&d, &g) == QK_ERR_ARG, "uint8 output without requantization rejected");
    for (int k = 0; k < qk_i8_kernel_count(); k++) {
        const qk_i8_kernel_info *ki = qk_i8_kernel_get(k);
        if (!qk_i8_kernel_usable(k)) {
            d.out_type = QK_I32;
            d.kernel = k;
            QT_CHECK(qk_i8gemm_create(&d, &g) == QK_ERR_UNSUPPORTED, "kernel %s must be refused here", ki->name);
        }
    }
}

/* The implicit path's row sums (i8conv.h): AVX-512 against the portable
 * loops, on random bytes (uint8 and int8), pixel widths 16 to 64, runs and
 * kernel heights 1 to 5, rows with and without pad columns. */
static void test_box_sums(void)
{
    if (!qk_cpu_isa_usable(QK_ISA_AVX512)) {
        printf("note: no AVX-512: row-sum kernel comparison skipped\n");
        return;
    }
    for (int it = 0; it < 40; it++) {
        int64_t Cg = 16 * rnd(1, 4), run = rnd(1, 5), kh = rnd(1, 5), R = rnd(1, 6), OW = rnd(1, 40);
        int64_t Wp = OW + rnd(0, 4), npx = (R + kh - 1) * Wp, n = npx + run - 1;
        int sg = it & 1;
        uint8_t *P = qk_malloc((size_t)(n * Cg));
        uint32_t *pre = qk_malloc((size_t)n * 4);
        int32_t *r0 = qk_malloc((size_t)(R * Wp) * 4), *r1 = qk_malloc((size_t)(R * Wp) * 4);
        for (int64_t i = 0; i < n * Cg; i++)
            P[i] = (uint8_t)rnd(0, 255);
        memset(r1, 0x5a, (size_t)(R * Wp) * 4);
        qk_i8_box_sums_ref(P, npx, Cg, sg, run, kh, Wp, R, OW, pre, r0);
        qk_i8_box_sums__avx512(P, npx, Cg, sg, run, kh, Wp, R, OW, pre, r1);
        QT_CHECK(memcmp(r0, r1, (size_t)(R * Wp) * 4) == 0,
                 "row sums Cg %lld run %lld kh %lld R %lld OW %lld Wp %lld sg %d: AVX-512 differs", (long long)Cg,
                 (long long)run, (long long)kh, (long long)R, (long long)OW, (long long)Wp, sg);
        qk_free(P), qk_free(pre), qk_free(r0), qk_free(r1);
    }
}

int main(void)
{
    qk_rng_seed(&rng, 20240611);
    QT_OK(qk_pool_create(2, &pool2));
    test_dispatch();
    test_box_sums();
    for (int k = 0; k < qk_i8_kernel_count(); k++) {
        const qk_i8_kernel_info *ki = qk_i8_kernel_get(k);
        if (!qk_i8_kernel_usable(k)) {
            printf("note: kernel %s skipped: this CPU lacks %s (or the OS did not grant it)\n", ki->name,
                   qk_isa_name(ki->isa));
            continue;
        }
        int before = qt_fail;
        double t0 = qk_now();
        test_gemm_kernel(k);
        test_update(k);
        test_conv_update(k);
        test_conv_kernel(k);
        printf("kernel %-8s %s (%.2f s)\n", ki->name, qt_fail == before ? "bit-exact" : "MISMATCH", qk_now() - t0);
    }
    qk_pool_destroy(pool2);
    return qt_finish("test_int_gemm");
}
