/* Requantization: every test vector of docs/ALGORITHMS.md §7 (and the
 * rounding table of section 0), the worked example end to end through
 * every GEMM kernel, exact powers of two, the rounding direction on ties in
 * each mode (scalar and in every kernel's vectorized output stage),
 * saturation, fused ReLU/ReLU6 bounds, quantized Add, Concat, AveragePool. */
#include "qkit/int.h"
#include "qt.h"

#include <math.h>
#include <string.h>

#define EQ(got, want, what) do { long long g_ = (long long)(got), w_ = (long long)(want); \
    QT_CHECK(g_ == w_, "%s: got %lld, want %lld", what, g_, w_); } while (0)

static void test_vectors(void)
{
    /* SRDHM */
    EQ(qk_srdhm(INT32_MIN, INT32_MIN), INT32_MAX, "SRDHM(MIN,MIN)");
    EQ(qk_srdhm(1 << 30, 1 << 30), 1 << 29, "SRDHM(2^30,2^30)");
    EQ(qk_srdhm(3, 1 << 30), 2, "SRDHM(3,2^30)");
    EQ(qk_srdhm(-3, 1 << 30), -1, "SRDHM(-3,2^30)");
    /* RDBPOT */
    int rd[][3] = {{5, 1, 3}, {-5, 1, -3}, {6, 2, 2}, {-6, 2, -2}, {7, 2, 2}, {10, 2, 3}, {-10, 2, -3}};
    for (int i = 0; i < 7; i++) {
        char w[64];
        snprintf(w, sizeof w, "RDBPOT(%d,%d)", rd[i][0], rd[i][1]);
        EQ(qk_rdbpot(rd[i][0], rd[i][1]), rd[i][2], w);
    }
    /* QuantizeMultiplier and MBQM */
    int32_t q;
    int e;
    QT_OK(qk_quantize_multiplier(0.04, &q, &e));
    EQ(q, 1374389535, "QM(0.04).q");
    EQ(e, -4, "QM(0.04).e");
    QT_OK(qk_quantize_multiplier(2.5, &q, &e));
    EQ(q, 1342177280, "QM(2.5).q");
    EQ(e, 2, "QM(2.5).e");
    EQ(qk_mbqm(100, q, e), 250, "MBQM(100, 2.5)");
    QT_OK(qk_quantize_multiplier(0.3, &q, &e));
    EQ(q, 1288490189, "QM(0.3).q");
    EQ(e, -1, "QM(0.3).e");
    EQ(qk_mbqm(-1001, q, e), -301, "MBQM(-1001, 0.3)");
    /* section 0: R(0.5, 1.5, 2.5, -0.5, -2.5); RNE through the fp32 output stage
     * (acc * 0.5), RNA through qk_round_rna */
    int acc[5] = {1, 3, 5, -1, -5}, rne[5] = {0, 2, 2, 0, -2}, rna[5] = {1, 2, 3, -1, -3};
    for (int i = 0; i < 5; i++) {
        EQ(qk_requant_value(QK_RQ_FP32, acc[i], 0, 0, 0.5f, 0, -128, 127), rne[i], "fp32 output stage rounds RNE");
        EQ(qk_round_rna(acc[i] * 0.5), rna[i], "qk_round_rna");
    }
}

static void test_quantize_multiplier_edges(void)
{
    int32_t q;
    int e;
    QT_OK(qk_quantize_multiplier(0.0, &q, &e));
    QT_CHECK(q == 0 && e == 0, "QM(0) = (0, 0)");
    QT_OK(qk_quantize_multiplier(1.0 - 1e-12, &q, &e)); /* rounds to 2^31: carry */
    QT_CHECK(q == 1 << 30 && e == 1, "QM(1-1e-12) carries to (2^30, 1), got (%d, %d)", q, e);
    QT_OK(qk_quantize_multiplier(ldexp(1.0, -40), &q, &e));
    QT_CHECK(q == 0 && e == 0, "QM(2^-40) flushes to (0, 0)");
    QT_OK(qk_quantize_multiplier(ldexp(1.0, -32), &q, &e));
    QT_CHECK(q == 1 << 30 && e == -31, "QM(2^-32) = (2^30, -31), got (%d, %d)", q, e);
    QT_OK(qk_quantize_multiplier(ldexp(1.0, -33), &q, &e));
    QT_CHECK(q == 0 && e == 0, "QM(2^-33) flushes (e = -32 < -31)");
    QT_CHECK(qk_quantize_multiplier(-0.5, &q, &e) == QK_ERR_ARG, "negative multiplier rejected");
    QT_CHECK(qk_quantize_multiplier(NAN, &q, &e) == QK_ERR_ARG, "NaN multiplier rejected");
    QT_CHECK(qk_quantize_multiplier(INFINITY, &q, &e) == QK_ERR_ARG, "inf multiplier rejected");
    QT_CHECK(qk_quantize_multiplier(ldexp(1.0, 30), &q, &e) == QK_ERR_ARG, "2^30 rejected (exponent 31)");
    /* q is always in [2^30, 2^31) and M is reproduced to 2^-31 relative */
    qk_rng r;
    qk_rng_seed(&r, 7);
    int bad = 0;
    for (int i = 0; i < 2000; i++) {
        double M = ldexp(0.5 + 0.5 * qk_rng_uniform(&r), (int)qk_rng_below(&r, 50) - 30);
        if (qk_quantize_multiplier(M, &q, &e) != QK_OK || q < (1 << 30) ||
            fabs(ldexp((double)q, e - 31) - M) > ldexp(M, -31))
            bad++;
    }
    QT_CHECK(bad == 0, "%d random multipliers badly represented", bad);
}

/* Powers of two: QM(2^k) = (2^30, k+1); the shift stage rounds exactly
 * (RHU), single rounding too; gemmlowp's double rounding (SRDHM, then
 * RDBPOT) can round twice: x = 5, M = 1/4 gives 2 where RHU/RNA give 1. */
static void test_powers_of_two(void)
{
    int32_t q;
    int e;
    for (int k = -32; k <= 29; k++) {
        QT_OK(qk_quantize_multiplier(ldexp(1.0, k), &q, &e));
        QT_CHECK(q == 1 << 30 && e == k + 1, "QM(2^%d) = (%d, %d)", k, q, e);
    }
    int bad_shift = 0, bad_single = 0, bad_double = 0;
    for (int sh = 1; sh <= 12; sh++) {
        QT_OK(qk_quantize_multiplier(ldexp(1.0, -sh), &q, &e));
        for (int32_t x = -3000; x <= 3000; x += 7) {
            int32_t want = (int32_t)floor(x / ldexp(1.0, sh) + 0.5); /* RHU, exact */
            bad_shift += qk_shift_round(x, sh) != want;
            bad_single += qk_mbqm_single(x, q, e) != want;
            /* gemmlowp: RHU(x/2) first (SRDHM with q = 2^30), then RNA by 2^(sh-1) */
            int32_t h = (int32_t)floor(x / 2.0 + 0.5);
            int32_t want2 = (int32_t)(h >= 0 ? floor(h / ldexp(1.0, sh - 1) + 0.5) : -floor(-h / ldexp(1.0, sh - 1) + 0.5));
            bad_double += qk_mbqm(x, q, e) != want2;
        }
    }
    QT_CHECK(bad_shift == 0, "shift stage: %d of the power-of-two cases are not RHU", bad_shift);
    QT_CHECK(bad_single == 0, "single rounding: %d power-of-two cases are not RHU", bad_single);
    QT_CHECK(bad_double == 0, "gemmlowp: %d power-of-two cases differ from RHU-then-RNA", bad_double);
    QT_OK(qk_quantize_multiplier(0.25, &q, &e));
    EQ(qk_mbqm(5, q, e), 2, "gemmlowp double rounding: 5/4 -> 2");
    EQ(qk_mbqm_single(5, q, e), 1, "single rounding: 5/4 -> 1");
    EQ(qk_shift_round(5, 2), 1, "shift: 5/4 -> 1");
    /* left shifts (M >= 1) */
    EQ(qk_shift_round(-7, -3), -56, "shift left");
    QT_OK(qk_quantize_multiplier(8.0, &q, &e));
    EQ(qk_mbqm(-7, q, e), -56, "MBQM by 8");
    EQ(qk_mbqm_single(-7, q, e), -56, "single by 8");
    /* section 7 power-of-two example: f_x 6, f_w 7, f_y 5 */
    int32_t accv = 32 * 38 + (-16) * 13;
    EQ(accv, 1008, "pow2 example acc");
    EQ(qk_shift_round(accv, 6 + 7 - 5), 4, "pow2 example (1008 + 128) >> 8");
}

static void test_ties(void)
{
    int32_t q;
    int e;
    /* gemmlowp: ties of SRDHM go up (RHU), ties of the final shift away from zero (RNA) */
    QT_OK(qk_quantize_multiplier(0.5, &q, &e)); /* e = 0: only SRDHM rounds */
    EQ(qk_mbqm(3, q, e), 2, "gemmlowp 1.5");
    EQ(qk_mbqm(-3, q, e), -1, "gemmlowp -1.5 (SRDHM rounds up)");
    QT_OK(qk_quantize_multiplier(0.25, &q, &e)); /* e = -1: SRDHM exact for even x, RDBPOT rounds */
    EQ(qk_mbqm(6, q, e), 2, "gemmlowp 6/4 = 1.5");
    EQ(qk_mbqm(-6, q, e), -2, "gemmlowp -6/4 = -1.5 (RDBPOT away from zero)");
    EQ(qk_mbqm_single(-6, q, e), -1, "single -1.5 -> -1 (RHU)");
    EQ(qk_mbqm_single(6, q, e), 2, "single 1.5 -> 2");
    /* fp32: half to even */
    EQ(qk_requant_value(QK_RQ_FP32, 10, 0, 0, 0.25f, 0, -128, 127), 2, "fp32 2.5 -> 2");
    EQ(qk_requant_value(QK_RQ_FP32, 14, 0, 0, 0.25f, 0, -128, 127), 4, "fp32 3.5 -> 4");
    EQ(qk_requant_value(QK_RQ_FP32, -10, 0, 0, 0.25f, 0, -128, 127), -2, "fp32 -2.5 -> -2");
    /* shift: half up */
    EQ(qk_shift_round(-3, 1), -1, "shift -1.5 -> -1");
    EQ(qk_shift_round(3, 1), 2, "shift 1.5 -> 2");
    EQ(qk_shift_round(-5, 1), -2, "shift -2.5 -> -2");
    /* average pool: away from zero */
    EQ(qk_avg_round(3, 2), 2, "avgpool 1.5 -> 2");
    EQ(qk_avg_round(-3, 2), -2, "avgpool -1.5 -> -2");
}

static void test_saturation(void)
{
    /* clamps of the output stage */
    int32_t q;
    int e;
    QT_OK(qk_quantize_multiplier(0.01, &q, &e));
    EQ(qk_requant_value(QK_RQ_GEMMLOWP, 1000000, q, e, 0, 3, -128, 127), 127, "gemmlowp saturates high");
    EQ(qk_requant_value(QK_RQ_GEMMLOWP, -1000000, q, e, 0, 3, -128, 127), -128, "gemmlowp saturates low");
    EQ(qk_requant_value(QK_RQ_GEMMLOWP, INT32_MIN, q, e, 0, 255, 0, 255), 0, "INT32_MIN, zp 255");
    EQ(qk_requant_value(QK_RQ_FP32, INT32_MAX, 0, 0, 1e30f, 0, 0, 255), 255, "fp32 overflow to inf clamps");
    EQ(qk_requant_value(QK_RQ_FP32, INT32_MIN, 0, 0, 1e30f, 0, 0, 255), 0, "fp32 -inf clamps");
    QT_OK(qk_quantize_multiplier(ldexp(1.0, 29), &q, &e));
    EQ(qk_mbqm_single(INT32_MAX, q, e), INT32_MAX, "single rounding saturates to int32");
    EQ(qk_requant_value(QK_RQ_Q31_SINGLE, -40000, q, e, 0, 100, -32768, 32767), -32768, "int16 clamp");
    EQ(qk_shift_round(INT32_MIN, -31), INT32_MIN, "shift left saturates low");
    EQ(qk_shift_round(1, -31), INT32_MAX, "shift left saturates high");
    EQ(qk_shift_round(INT32_MAX, 31), 1, "shift 31");
    EQ(qk_shift_round(INT32_MIN, 31), -1, "shift 31 of MIN");
    /* MBQM with e > 0 wraps the left shift like TFLite on two's complement */
    QT_OK(qk_quantize_multiplier(2.0, &q, &e));
    EQ(e, 2, "QM(2) exponent");
    EQ(qk_mbqm(1 << 29, q, e), qk_srdhm(INT32_MIN, q), "left shift wraps");
    /* fused activations */
    int32_t lo, hi;
    QT_OK(qk_act_bounds(QK_I8, 0.005f, -20, QK_ACT_RELU6, 0, 0, &lo, &hi));
    QT_CHECK(lo == -20 && hi == 127, "ReLU6 int8 s=0.005 z=-20: [%d, %d]", lo, hi);
    QT_OK(qk_act_bounds(QK_I8, 0.05f, -128, QK_ACT_RELU6, 0, 0, &lo, &hi));
    QT_CHECK(lo == -128 && hi == -8, "ReLU6 int8 s=0.05 z=-128: [%d, %d]", lo, hi);
    QT_OK(qk_act_bounds(QK_U8, 0.1f, 10, QK_ACT_RELU, 0, 0, &lo, &hi));
    QT_CHECK(lo == 10 && hi == 255, "ReLU uint8 z=10: [%d, %d]", lo, hi);
    QT_OK(qk_act_bounds(QK_U8, 0.1f, 10, QK_ACT_NONE, 0, 0, &lo, &hi));
    QT_CHECK(lo == 0 && hi == 255, "none: full range");
    QT_OK(qk_act_bounds(QK_I8, 0.1f, 0, QK_ACT_CLIP, -1.0f, 1.25f, &lo, &hi));
    QT_CHECK(lo == -10 && hi == 13, "clip [-1, 1.25] at 0.1: [%d, %d] (RNA 12.5 -> 13)", lo, hi);
    QT_CHECK(qk_act_bounds(QK_U8, 0.01f, 255, QK_ACT_RELU6, 0, 0, &lo, &hi) == QK_OK && lo == 255 && hi == 255,
             "ReLU6 with zero point at the top: single value");
    QT_CHECK(qk_act_bounds(QK_I8, 0.0f, 0, QK_ACT_RELU, 0, 0, &lo, &hi) == QK_ERR_ARG, "scale 0 rejected");
    /* parameter validation */
    int32_t m = 5, s = 40;
    qk_requant rq = {QK_RQ_GEMMLOWP, 1, &m, &s, NULL, 0, -128, 127};
    QT_CHECK(qk_requant_check(&rq, QK_I8, 4) == QK_ERR_ARG, "exponent 40 rejected");
    s = -3;
    QT_OK(qk_requant_check(&rq, QK_I8, 4));
    rq.zero_point = 300;
    QT_CHECK(qk_requant_check(&rq, QK_I8, 4) == QK_ERR_ARG, "zero point 300 for int8 rejected");
    rq.zero_point = 0;
    rq.n = 3;
    QT_CHECK(qk_requant_check(&rq, QK_I8, 4) == QK_ERR_ARG, "3 entries for 4 channels rejected");
}

/* The worked example: K = 4, one output channel, through every kernel. */
static void test_worked_example(void)
{
    int8_t A[4] = {15, -15, 50, -10}, B[4] = {30, -25, 10, 5};
    int32_t zw = 0, bias = 350, q;
    int e;
    /* the reals behind the codes */
    float x[4] = {0.5f, -0.1f, 1.2f, 0.0f}, w[4] = {0.3f, -0.25f, 0.1f, 0.05f};
    for (int i = 0; i < 4; i++) {
        EQ(qk_round_rna(x[i] / 0.02) - 10, A[i], "q_x");
        EQ(qk_round_rna(w[i] / 0.01), B[i], "q_w");
    }
    EQ(qk_round_rna(0.07 / (0.02 * 0.01)), 350, "q_b");
    int32_t s = 0, sw = 0;
    for (int i = 0; i < 4; i++)
        s += A[i] * B[i], sw += B[i];
    EQ(s, 1275, "sum q_x q_w");
    EQ(sw, 20, "sum q_w");
    EQ(bias - (-10) * sw, 550, "folded bias'");
    QT_OK(qk_quantize_multiplier(0.02 * 0.01 / 0.005, &q, &e));
    EQ(q, 1374389535, "M = 0.04: q");
    EQ(e, -4, "M = 0.04: e");
    EQ(qk_srdhm(1825, q), 1168, "SRDHM(1825, q_M)");
    EQ(qk_rdbpot(1168, 4), 73, "RDBPOT(1168, 4)");
    int32_t lo, hi;
    QT_OK(qk_act_bounds(QK_I8, 0.005f, -20, QK_ACT_RELU6, 0, 0, &lo, &hi));
    for (int k = 0; k < qk_i8_kernel_count(); k++) {
        const qk_i8_kernel_info *ki = qk_i8_kernel_get(k);
        if (!qk_i8_kernel_usable(k))
            continue;
        qk_i8gemm_desc d = {.a_type = QK_I8, .b_type = QK_I8, .K = 4, .N = 1, .B = B, .ldb = 1, .a_zero = -10,
                            .nb_zero = 1, .b_zero = &zw, .bias = &bias, .out_type = QK_I32, .kernel = k};
        int32_t acc = 0;
        int8_t y = 0;
        qk_i8gemm *g = NULL;
        QT_OK(qk_i8gemm_create(&d, &g));
        if (!g)
            continue;
        size_t wsb = qk_i8gemm_ws_bytes(g);
        void *ws = qk_aligned_alloc(wsb);
        QT_OK(qk_i8gemm_run(g, 1, A, 4, &acc, 1, 1, NULL, ws, wsb));
        char what[80];
        snprintf(what, sizeof what, "%s: acc", ki->name);
        EQ(acc, 1825, what);
        qk_i8gemm_destroy(g);
        d.out_type = QK_I8;
        d.rq = (qk_requant){QK_RQ_GEMMLOWP, 1, &q, (int32_t[]){e}, NULL, -20, lo, hi};
        QT_OK(qk_i8gemm_create(&d, &g));
        if (g) {
            QT_OK(qk_i8gemm_run(g, 1, A, 4, &y, 1, 1, NULL, ws, qk_i8gemm_ws_bytes(g) > wsb ? 0 : wsb));
            snprintf(what, sizeof what, "%s: y", ki->name);
            EQ(y, 53, what);
            QT_NEAR(0.005 * (y + 20), 0.365, 1e-12, "D(53)");
            qk_i8gemm_destroy(g);
        }
        qk_aligned_free(ws);
    }
}

/* Ties and saturation through every kernel's (vectorized) output stage:
 * T = A[m] (K = 1, B = 1, no zero points), 21 columns with scales 2^-c, so
 * every row hits exact halves; compared with the scalar qk_requant_value. */
static void test_kernel_ties(void)
{
    enum { M = 67, N = 21 };
    int8_t A[M], B[N];
    int32_t mult[N], shift[N], want[M][N], got[M][N];
    float scale[N];
    for (int m = 0; m < M; m++)
        A[m] = (int8_t)(m * 4 - 128);
    for (int n = 0; n < N; n++) {
        B[n] = 1;
        int32_t q;
        int e;
        QT_OK(qk_quantize_multiplier(ldexp(1.0, -(n % 7)), &q, &e));
        mult[n] = q, shift[n] = e, scale[n] = (float)ldexp(1.0, -(n % 7));
    }
    qk_rq_mode modes[] = {QK_RQ_GEMMLOWP, QK_RQ_Q31_SINGLE, QK_RQ_FP32, QK_RQ_SHIFT};
    for (int mi = 0; mi < 4; mi++) {
        int32_t sh[N];
        for (int n = 0; n < N; n++)
            sh[n] = modes[mi] == QK_RQ_SHIFT ? n % 7 : shift[n];
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++)
                want[m][n] = qk_requant_value(modes[mi], A[m], mult[n], sh[n], scale[n], 5, -20, 20);
        for (int k = 0; k < qk_i8_kernel_count(); k++) {
            const qk_i8_kernel_info *ki = qk_i8_kernel_get(k);
            if (!qk_i8_kernel_usable(k))
                continue;
            qk_i8gemm_desc d = {.a_type = QK_I8, .b_type = QK_I8, .K = 1, .N = N, .B = B, .ldb = N,
                                .out_type = QK_I16, .kernel = k,
                                .rq = {modes[mi], N, mult, sh, scale, 5, -20, 20}};
            qk_i8gemm *g = NULL;
            QT_OK(qk_i8gemm_create(&d, &g));
            if (!g)
                continue;
            size_t wsb = qk_i8gemm_ws_bytes(g);
            void *ws = qk_aligned_alloc(wsb);
            int16_t y[M][N];
            QT_OK(qk_i8gemm_run(g, M, A, 1, y, N, 1, NULL, ws, wsb));
            for (int m = 0; m < M; m++)
                for (int n = 0; n < N; n++)
                    got[m][n] = y[m][n];
            QT_CHECK(memcmp(got, want, sizeof got) == 0, "%s: %s ties/saturation differ from the scalar stage",
                     ki->name, qk_rq_mode_name(modes[mi]));
            qk_aligned_free(ws);
            qk_i8gemm_destroy(g);
        }
    }
}

static void test_add_concat_pool(void)
{
    /* quantized Add, section 7 vector */
    qk_qadd p;
    QT_OK(qk_qadd_prepare(QK_I8, 0.02, -5, 0.04, 3, 0.05, -1, -128, 127, &p));
    QT_CHECK(p.m1 == 1073741824 && p.e1 == -1, "add m1 = (%d, %d)", p.m1, p.e1);
    QT_CHECK(p.m2 == 1073741824 && p.e2 == 0, "add m2 = (%d, %d)", p.m2, p.e2);
    QT_CHECK(p.mo == 1717986918 && p.eo == -19, "add m_out = (%d, %d)", p.mo, p.eo);
    EQ(qk_mbqm((45 + 5) << 20, p.m1, p.e1), 13107200, "add scaled a");
    EQ(qk_mbqm((-7 - 3) * (1 << 20), p.m2, p.e2), -5242880, "add scaled b");
    EQ(qk_qadd_value(&p, 45, -7), 11, "add y");
    int8_t a[2] = {45, 127}, b[2] = {-7, 127}, y[2];
    qk_qadd pf; /* the same scales rounded to float32 first (a .tflite model): m_out differs, y does not */
    QT_OK(qk_qadd_prepare(QK_I8, 0.02f, -5, 0.04f, 3, 0.05f, -1, -128, 127, &pf));
    QT_CHECK(pf.mo == 1717986854 && pf.eo == -19, "float32 scales: m_out = (%d, %d)", pf.mo, pf.eo);
    EQ(qk_qadd_value(&pf, 45, -7), 11, "add y with float32 scales");
    qk_qadd_run(&p, 2, a, b, y);
    QT_CHECK(y[0] == 11 && y[1] == 127, "add run: %d %d (second saturates)", y[0], y[1]);
    QT_CHECK(qk_qadd_prepare(QK_I8, 0.02f, -500, 0.04f, 3, 0.05f, -1, -128, 127, &p) == QK_ERR_ARG,
             "add zero point out of range rejected");
    /* int16 add: left shift 15 */
    QT_OK(qk_qadd_prepare(QK_I16, 0.001f, 0, 0.002f, 0, 0.003f, 0, -32768, 32767, &p));
    EQ(p.left_shift, 15, "int16 left shift");
    EQ(qk_qadd_value(&p, 3000, -600), 600, "int16 add: 3.0 - 1.2 = 1.8 / 0.003");
    /* concat requantization (float, RNA) */
    EQ(qk_requant_float_rna(20, 0.1f, 10, 0.1f, 10, -128, 127), 20, "concat same params: copy");
    EQ(qk_requant_float_rna(15, 0.1f, 10, 0.2f, 0, -128, 127), 3, "concat (15-10)*0.1/0.2 = 2.5 -> 3 (RNA)");
    EQ(qk_requant_float_rna(5, 0.1f, 10, 0.2f, 0, -128, 127), -3, "concat -2.5 -> -3 (RNA)");
    EQ(qk_requant_float_rna(127, 1.0f, -128, 0.5f, 0, -128, 127), 127, "concat saturates");
    uint8_t cx[3] = {0, 128, 255}, cy[3];
    qk_concat_requant(QK_U8, 3, cx, 0.5f, 128, 1.0f, 128, cy);
    QT_CHECK(cy[0] == 64 && cy[1] == 128 && cy[2] == 192, "concat run: %d %d %d", cy[0], cy[1], cy[2]);
    /* average pool rounding (section 7 vectors), one 2x2 window each */
    int8_t win[4][4] = {{-3, 4, 5, 7}, {1, 2, 2, 2}, {-1, -2, -2, -2}, {1, 1, 1, 2}};
    int want[4] = {3, 2, -2, 1};
    qk_pool2d pp = {2, 2, 2, 2, 0, 0, 0, 0, 1, 1, 0};
    for (int i = 0; i < 4; i++) {
        int8_t out;
        QT_OK(qk_i8_avgpool(QK_I8, &pp, 0, 1, 1, 2, 2, win[i], &out));
        EQ(out, want[i], "avgpool window");
    }
    /* padding: excluded from the count, or counted as the zero point */
    uint8_t img[4] = {10, 20, 30, 41}, o1[4], o2[4];
    qk_pool2d pd = {2, 2, 1, 1, 1, 1, 0, 0, 1, 1, 0};
    QT_OK(qk_i8_avgpool(QK_U8, &pd, 100, 1, 1, 2, 2, img, o1));
    QT_CHECK(o1[0] == 10 && o1[1] == 15 && o1[2] == 20 && o1[3] == 25, "avgpool pads excluded: %d %d %d %d", o1[0],
             o1[1], o1[2], o1[3]);
    pd.count_include_pad = 1;
    QT_OK(qk_i8_avgpool(QK_U8, &pd, 100, 1, 1, 2, 2, img, o2));
    QT_CHECK(o2[0] == 78 && o2[3] == 25, "avgpool pads as zero point: %d %d", o2[0], o2[3]); /* (310)/4=77.5->78 */
    uint8_t mx[4];
    QT_OK(qk_i8_maxpool(QK_U8, &pd, 1, 1, 2, 2, img, mx));
    QT_CHECK(mx[0] == 10 && mx[1] == 20 && mx[2] == 30 && mx[3] == 41, "maxpool with pads");
    int8_t gx[6] = {1, 2, 2, -1, -2, -2}, gy[2];
    qk_i8_global_avgpool(QK_I8, 1, 2, 3, gx, gy);
    QT_CHECK(gy[0] == 2 && gy[1] == -2, "global avgpool 5/3 -> 2, -5/3 -> -2: %d %d", gy[0], gy[1]);
}

/* 8-bit max pooling (vector and scalar paths) against the definition, on
 * random planes, kernels, strides and pads, both types. */
static void test_maxpool_random(void)
{
    uint32_t seed = 12345;
    int bad = 0, cases = 0;
    for (int it = 0; it < 300; it++) {
        seed = seed * 1664525u + 1013904223u;
        qk_pool2d pd = { 0 };
        int two = it % 3 == 0;
        pd.kh = two ? 2 : 1 + (int)(seed >> 28) % 3;
        pd.kw = two ? 2 : 1 + (int)(seed >> 24) % 3;
        pd.stride_h = two ? 2 : 1 + (int)(seed >> 20) % 2;
        pd.stride_w = two ? 2 : 1 + (int)(seed >> 16) % 3;
        pd.pad_t = two ? 0 : (int)(seed >> 14) % 2;
        pd.pad_l = two ? 0 : (int)(seed >> 12) % 2;
        pd.pad_b = two ? 0 : (int)(seed >> 10) % 2;
        pd.pad_r = two ? 0 : (int)(seed >> 8) % 2;
        pd.dil_h = pd.dil_w = 1;
        int64_t H = 2 + (int64_t)((seed >> 4) % 30), W = 2 + (int64_t)((seed >> 3) % 40), C = 1 + it % 3;
        int64_t OH = (H + pd.pad_t + pd.pad_b - pd.kh) / pd.stride_h + 1;
        int64_t OW = (W + pd.pad_l + pd.pad_r - pd.kw) / pd.stride_w + 1;
        if (OH < 1 || OW < 1 || pd.pad_t >= pd.kh || pd.pad_l >= pd.kw || pd.pad_b >= pd.kh || pd.pad_r >= pd.kw)
            continue;
        static uint8_t x[3 * 32 * 42], y[3 * 32 * 42];
        for (int64_t k = 0; k < C * H * W; k++) {
            seed = seed * 1664525u + 1013904223u;
            x[k] = (uint8_t)(seed >> 24);
        }
        qk_dtype t = it & 1 ? QK_I8 : QK_U8;
        if (qk_i8_maxpool(t, &pd, 1, C, H, W, x, y) != QK_OK) {
            bad++;
            continue;
        }
        cases++;
        for (int64_t c = 0; c < C; c++)
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    int m = t == QK_I8 ? -128 : 0;
                    for (int64_t a = 0; a < pd.kh; a++)
                        for (int64_t b = 0; b < pd.kw; b++) {
                            int64_t ih = oh * pd.stride_h - pd.pad_t + a, iw = ow * pd.stride_w - pd.pad_l + b;
                            if (ih < 0 || ih >= H || iw < 0 || iw >= W)
                                continue;
                            uint8_t v = x[(c * H + ih) * W + iw];
                            int vv = t == QK_I8 ? (int)(int8_t)v : (int)v;
                            m = vv > m ? vv : m;
                        }
                    uint8_t got = y[(c * OH + oh) * OW + ow];
                    bad += (t == QK_I8 ? (int)(int8_t)got : (int)got) != m;
                }
    }
    QT_CHECK(bad == 0 && cases > 100, "8-bit max pooling: %d wrong codes over %d random cases", bad, cases);
}

int main(void)
{
    test_maxpool_random();
    test_vectors();
    test_quantize_multiplier_edges();
    test_powers_of_two();
    test_ties();
    test_saturation();
    test_worked_example();
    test_kernel_ties();
    test_add_concat_pool();
    return qt_finish("test_int_requant");
}
