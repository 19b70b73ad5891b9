/* NHWC depthwise int8 convolution (qk_i8conv_run_layout with x and y NHWC,
 * channel multiplier 1): every usable kernel (forced by index) against the
 * 7-loop NCHW reference qk_i8conv_ref, transposed, bit-exact; odd channel
 * counts around the 16-lane vector width, kernels 1/3/5, strides 1/2,
 * asymmetric pads, dilation, extreme zero points and extreme data, every
 * rounding mode, per-tensor and per-channel output stages, every output
 * type; 1 vs 2 threads identical; the layouts it refuses. */
#include "qkit/int.h"
#include "qt.h"

#include <string.h>

static qk_rng rng;
static qk_pool *pool2;

static int32_t rnd(int32_t lo, int32_t hi) { return lo + (int32_t)qk_rng_below(&rng, (uint32_t)(hi - lo + 1)); }
static size_t al64(size_t x) { return (x + 63) & ~(size_t)63; }

enum { MAXC = 130 };

/* Output stage spanning (and often saturating) the output type for
 * accumulators of size ~mag. */
typedef struct {
    int32_t mult[MAXC], shift[MAXC];
    float scale[MAXC];
} rq_store;

static void make_rq(qk_requant *rq, rq_store *s, qk_rq_mode mode, qk_dtype ot, int n, double mag, int extreme)
{
    memset(rq, 0, sizeof *rq);
    rq->mode = ot == QK_I32 ? QK_RQ_NONE : mode;
    rq->n = n;
    if (ot == QK_I32)
        return;
    int32_t lo, hi;
    qk_int_range(ot, &lo, &hi);
    for (int i = 0; i < n; i++) {
        double sc = (double)(hi - lo) / (2.0 * mag) * (0.2 + 3.0 * qk_rng_uniform(&rng));
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
    rq->zero_point = extreme ? (qk_rng_below(&rng, 2) ? lo : hi) : rnd(lo, hi);
    rq->qmin = lo;
    rq->qmax = hi;
    if (qk_rng_below(&rng, 3) == 0) { /* fused ReLU-like clamp */
        rq->qmin = rq->zero_point;
        rq->qmax = rnd(rq->qmin, hi);
    }
}

/* [N][C][P] -> [N][P][C], elements of es bytes. */
static void to_nhwc(const uint8_t *src, uint8_t *dst, int64_t N, int64_t C, int64_t P, size_t es)
{
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t p = 0; p < P; p++)
                memcpy(dst + ((n * P + p) * C + c) * es, src + ((n * C + c) * P + p) * es, es);
}

/* q4: the VNNI kernel's case (weights minus zero point within int8, an
 * int8/uint8 output, FP32 or GEMMLOWP output stage). */
static void dw_case(int kernel, int64_t C, int64_t H, int64_t W, int64_t k, int64_t s, int64_t dil, int extreme, int q4)
{
    static const qk_dtype q8[2] = { QK_U8, QK_I8 }, outs[4] = { QK_U8, QK_I8, QK_I16, QK_I32 };
    static const qk_rq_mode modes[4] = { QK_RQ_FP32, QK_RQ_GEMMLOWP, QK_RQ_Q31_SINGLE, QK_RQ_SHIFT };
    qk_dtype xt = q8[qk_rng_below(&rng, 2)], wt = q8[qk_rng_below(&rng, 2)];
    qk_dtype ot = outs[qk_rng_below(&rng, q4 ? 2 : 4)];
    qk_rq_mode mode = modes[qk_rng_below(&rng, q4 ? 2 : 4)];
    int64_t N = 1 + qk_rng_below(&rng, 2);
    int64_t pt = qk_rng_below(&rng, 3), pl = qk_rng_below(&rng, 3), pb = qk_rng_below(&rng, 3),
            pr = qk_rng_below(&rng, 3);
    int64_t OH = qk_conv_out_dim(H, k, s, dil, pt, pb), OW = qk_conv_out_dim(W, k, s, dil, pl, pr);
    if (OH < 1 || OW < 1)
        return;
    int32_t xlo, xhi, wlo, whi;
    qk_int_range(xt, &xlo, &xhi);
    qk_int_range(wt, &wlo, &whi);
    static uint8_t x[2 * MAXC * 400], xn[2 * MAXC * 400], w[MAXC * 25];
    static uint8_t ref[2 * MAXC * 400 * 4], refn[2 * MAXC * 400 * 4], y1[2 * MAXC * 400 * 4], y2[2 * MAXC * 400 * 4];
    int64_t nx = N * C * H * W, ny = N * C * OH * OW;
    int64_t distinct = 0;
    for (int64_t i = 0; i < nx; i++) {
        x[i] = (uint8_t)(extreme == 2 ? (qk_rng_below(&rng, 2) ? xlo : xhi) : rnd(xlo, xhi));
        distinct += i > 0 && x[i] != x[i - 1];
    }
    QT_CHECK(nx < 4 || distinct > 0, "degenerate random input");
    for (int64_t i = 0; i < C * k * k; i++)
        w[i] = (uint8_t)rnd(wlo, whi);
    int32_t wz[MAXC], bias[MAXC];
    int per_ch = (int)qk_rng_below(&rng, 2);
    for (int64_t c = 0; c < C; c++) {
        wz[c] = q4 ? (wt == QK_U8 ? 128 : 0) : extreme ? (qk_rng_below(&rng, 2) ? wlo : whi) : rnd(wlo, whi);
        bias[c] = rnd(-20000, 20000);
    }
    rq_store rs;
    qk_i8conv_desc d = {.x_type = xt, .w_type = wt, .out_type = ot, .C = C, .Co = C, .groups = C, .kh = k, .kw = k,
                        .stride_h = s, .stride_w = s, .dil_h = dil, .dil_w = dil, .pad_t = pt, .pad_l = pl,
                        .pad_b = pb, .pad_r = pr, .w = w, .nw_zero = per_ch ? (int)C : 1, .w_zero = wz,
                        .bias = qk_rng_below(&rng, 4) ? bias : NULL, .kernel = kernel};
    d.x_zero = extreme ? (qk_rng_below(&rng, 2) ? xlo : xhi) : rnd(xlo, xhi);
    make_rq(&d.rq, &rs, mode, ot, qk_rng_below(&rng, 2) ? (int)C : 1, 200.0 * (double)(k * k), extreme);
    char what[200];
    snprintf(what, sizeof what, "%s C%lld %lldx%lld k%lld s%lld d%lld pads %lld,%lld,%lld,%lld %s*%s->%s %s%s%s",
             qk_i8_kernel_get(kernel)->name, (long long)C, (long long)H, (long long)W, (long long)k, (long long)s,
             (long long)dil, (long long)pt, (long long)pl, (long long)pb, (long long)pr, qk_dtype_name(xt),
             qk_dtype_name(wt), qk_dtype_name(ot), qk_rq_mode_name(d.rq.mode),
             extreme ? " extreme" : "", q4 ? " int8-weights" : "");
    size_t es = qk_dtype_size(ot);
    QT_OK(qk_i8conv_ref(&d, N, H, W, x, ref));
    to_nhwc(x, xn, N, C, H * W, 1);
    to_nhwc(ref, refn, N, C, OH * OW, es);
    qk_i8conv *cv = NULL;
    QT_OK(qk_i8conv_create(&d, &cv));
    if (!cv)
        return;
    QT_CHECK(qk_i8conv_nhwc_ok(cv, 1) && qk_i8conv_nhwc_ok(cv, 0), "%s: NHWC must be allowed", what);
    size_t wsb = al64(qk_i8conv_ws_bytes(cv, H, W));
    void *ws = qk_aligned_alloc(2 * wsb + 64);
    memset(y1, 0xA5, (size_t)ny * es);
    QT_OK(qk_i8conv_run_layout(cv, N, H, W, xn, 1, y1, 1, NULL, ws, wsb));
    QT_OK(qk_i8conv_run_layout(cv, N, H, W, xn, 1, y2, 1, pool2, ws, wsb));
    QT_CHECK(memcmp(y1, refn, (size_t)ny * es) == 0, "%s: NHWC differs from the reference", what);
    QT_CHECK(memcmp(y2, y1, (size_t)ny * es) == 0, "%s: 2 threads differ from 1", what);
    if (C > 1) /* (C == 1 is an ordinary convolution: any layout mix) */
        QT_CHECK(qk_i8conv_run_layout(cv, N, H, W, xn, 1, y1, 0, NULL, ws, wsb) == QK_ERR_ARG,
                 "%s: NHWC in, NCHW out must be refused", what);
    qk_aligned_free(ws);
    qk_i8conv_destroy(cv);
}

static void test_kernel(int kernel)
{
    static const int64_t Cs[] = { 1, 3, 7, 15, 16, 17, 31, 33, 48, 65 };
    static const int64_t ks[] = { 1, 3, 5 };
    for (int rep = 0; rep < 3; rep++)
        for (size_t ci = 0; ci < sizeof Cs / sizeof *Cs; ci++)
            for (size_t ki = 0; ki < 3; ki++)
                for (int64_t s = 1; s <= 2; s++) {
                    int64_t H = 1 + qk_rng_below(&rng, 11), W = 1 + qk_rng_below(&rng, 11);
                    int64_t dil = qk_rng_below(&rng, 5) == 0 ? 2 : 1;
                    dw_case(kernel, Cs[ci], H, W, ks[ki], s, dil, rep, 0);
                }
    /* the VNNI kernel's flat runs: wide rows, chunk periods lcm(64, C) */
    static const int64_t Cq[] = { 1, 8, 16, 17, 24, 32, 48, 63, 64, 65, 96, 100, 128 };
    for (int rep = 0; rep < 3; rep++)
        for (size_t ci = 0; ci < sizeof Cq / sizeof *Cq; ci++)
            for (size_t ki = 0; ki < 3; ki++) {
                int64_t s = 1 + (qk_rng_below(&rng, 4) == 0);
                int64_t H = 1 + qk_rng_below(&rng, 6), W = 1 + qk_rng_below(&rng, 20);
                int64_t dil = qk_rng_below(&rng, 5) == 0 ? 2 : 1;
                dw_case(kernel, Cq[ci], H, W, ks[ki], s, dil, rep, 1);
            }
}

/* Layouts the NHWC path refuses: channel multiplier 2, grouped. */
static void test_refused(void)
{
    static uint8_t w[8 * 4 * 9]; /* the grouped case: [8][4][3][3] */
    int32_t zw = 0;
    qk_i8conv_desc d = {.x_type = QK_U8, .w_type = QK_I8, .out_type = QK_I32, .C = 4, .Co = 8, .groups = 4, .kh = 3,
                        .kw = 3, .stride_h = 1, .stride_w = 1, .dil_h = 1, .dil_w = 1, .w = w, .nw_zero = 1,
                        .w_zero = &zw, .rq = {.mode = QK_RQ_NONE, .n = 1}, .kernel = -1};
    qk_i8conv *c = NULL;
    QT_OK(qk_i8conv_create(&d, &c));
    QT_CHECK(c && !qk_i8conv_nhwc_ok(c, 1) && !qk_i8conv_nhwc_ok(c, 0), "depthwise multiplier 2: NCHW only");
    qk_i8conv_destroy(c);
    d.C = 8, d.Co = 8, d.groups = 2;
    QT_OK(qk_i8conv_create(&d, &c));
    QT_CHECK(c && !qk_i8conv_nhwc_ok(c, 1) && !qk_i8conv_nhwc_ok(c, 0), "grouped: NCHW only");
    qk_i8conv_destroy(c);
}

int main(void)
{
    qk_rng_seed(&rng, 20261201);
    QT_OK(qk_pool_create(2, &pool2));
    test_refused();
    for (int k = 0; k < qk_i8_kernel_count(); k++) {
        const qk_i8_kernel_info *ki = qk_i8_kernel_get(k);
        if (!qk_i8_kernel_usable(k)) {
            printf("note: kernel %s skipped: this CPU lacks %s\n", ki->name, qk_isa_name(ki->isa));
            continue;
        }
        int before = qt_fail;
        test_kernel(k);
        printf("kernel %-8s %s\n", ki->name, qt_fail == before ? "bit-exact" : "MISMATCH");
    }
    qk_pool_destroy(pool2);
    return qt_finish("test_int_dw");
}
