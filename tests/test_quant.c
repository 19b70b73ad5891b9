/* Quantizer core: rounding ties (docs/ALGORITHMS.md §0), the section 1 vectors
 * (uint8 affine, int8 narrow vs PyTorch full range), (s, z) edge cases
 * (eps guard, clamped zero point, 0-inclusion), power-of-two scale,
 * per-channel layouts, the clipped STE mask, NNIE log code, quality
 * budgets (SQNR), parameter validation, and the ONNX QuantizeLinear /
 * DequantizeLinear operators (ties, saturation, per axis, int32). */
#include "qkit/registry.h"
#include "qkit/ops.h"
#include "qkit/quant.h"
#include "qt.h"

#include <float.h>
#include <string.h>

static qk_tensor vec(float *d, int64_t n) { return (qk_tensor){ QK_F32, 1, { n }, d, 0 }; }

static void test_rounding(void)
{
    const double v[5] = { 0.5, 1.5, 2.5, -0.5, -2.5 };
    const double rne[5] = { 0, 2, 2, 0, -2 }, rna[5] = { 1, 2, 3, -1, -3 }, rhu[5] = { 1, 2, 3, 0, -2 };
    for (int i = 0; i < 5; i++) {
        QT_CHECK(qk_round_double(v[i], QK_ROUND_HALF_EVEN) == rne[i], "RNE(%g)", v[i]);
        QT_CHECK(qk_round_double(v[i], QK_ROUND_HALF_AWAY) == rna[i], "RNA(%g)", v[i]);
        QT_CHECK(qk_round_double(v[i], QK_ROUND_HALF_UP) == rhu[i], "RHU(%g)", v[i]);
        QT_CHECK(qk_round_float((float)v[i], QK_ROUND_HALF_EVEN) == (float)rne[i], "RNE float(%g)", v[i]);
        QT_CHECK(qk_round_float((float)v[i], QK_ROUND_HALF_AWAY) == (float)rna[i], "RNA float(%g)", v[i]);
        QT_CHECK(qk_round_float((float)v[i], QK_ROUND_HALF_UP) == (float)rhu[i], "RHU float(%g)", v[i]);
    }
    /* -1.5 -> -1 under RHU (gemmlowp SRDHM on ties); non-ties are nearest */
    QT_CHECK(qk_round_double(-1.5, QK_ROUND_HALF_UP) == -1, "RHU(-1.5)");
    QT_CHECK(qk_round_double(2.4999999, QK_ROUND_HALF_AWAY) == 2 && qk_round_double(-2.5000001, QK_ROUND_HALF_UP) == -3,
             "near ties");
    QT_CHECK(qk_round_float(0.49999997f, QK_ROUND_HALF_UP) == 0, "RHU(0.49999997) must not round up (x+0.5 trap)");
    QT_CHECK(qk_round_float(8388609.0f, QK_ROUND_HALF_EVEN) == 8388609.0f, "large odd float stays");
    qk_round r;
    QT_OK(qk_round_parse("rna", &r));
    QT_CHECK(r == QK_ROUND_HALF_AWAY && strcmp(qk_round_name(r), "half_away") == 0, "parse rna");
    QT_CHECK(qk_round_parse("banker", &r) == QK_ERR_ARG && strstr(qk_last_error(), "half_even"), "bad mode: %s",
             qk_last_error());
}

/* docs/ALGORITHMS.md §1: x = [-1, -0.5, 0, 0.3, 0.7, 2]. */
static void test_section1_vectors(void)
{
    float x[6] = { -1.0f, -0.5f, 0.0f, 0.3f, 0.7f, 2.0f };
    const double xd[6] = { -1.0, -0.5, 0.0, 0.3, 0.7, 2.0 };
    const int32_t q_rne[6] = { 0, 43, 85, 111, 145, 255 }, q_rna[6] = { 0, 42, 85, 111, 145, 255 };
    const float d_rne[6] = { -1.0f, -0.494118f, 0.0f, 0.305882f, 0.705882f, 2.0f };
    qk_tensor t = vec(x, 6);

    /* exact double reference: x/s = -85, -42.5, 0, 25.5, 59.5, 170 */
    for (int i = 0; i < 6; i++) {
        QT_CHECK(qk_quantize_scalar(xd[i], 3.0 / 255, 85, 0, 255, QK_ROUND_HALF_EVEN) == q_rne[i], "double RNE %d", i);
        QT_CHECK(qk_quantize_scalar(xd[i], 3.0 / 255, 85, 0, 255, QK_ROUND_HALF_AWAY) == q_rna[i], "double RNA %d", i);
    }
    /* float32 path (PyTorch convention) from the observed range */
    qk_qparams p = QK_QPARAMS_UINT8;
    float s;
    int32_t z, q[6];
    float y[6];
    QT_OK(qk_qparams_compute(&p, -1.0f, 2.0f, &s, &z));
    QT_CHECK(s == 3.0f / 255.0f && z == 85, "uint8 asym s %.9g z %d", (double)s, z);
    QT_OK(qk_quantize(&p, 1, &s, &z, &t, q));
    for (int i = 0; i < 6; i++)
        QT_CHECK(q[i] == q_rne[i], "uint8 RNE q[%d] = %d, want %d", i, q[i], q_rne[i]);
    qk_tensor u = vec(y, 6);
    QT_OK(qk_dequantize(&p, 1, &s, &z, q, &u));
    for (int i = 0; i < 6; i++)
        QT_NEAR(y[i], d_rne[i], 5e-7, "D(q) RNE");
    uint8_t mask[6];
    QT_OK(qk_fake_quant(&p, 1, &s, &z, &t, &u, mask));
    for (int i = 0; i < 6; i++)
        QT_NEAR(y[i], d_rne[i], 5e-7, "FQ RNE");
    p.round = QK_ROUND_HALF_AWAY;
    QT_OK(qk_quantize(&p, 1, &s, &z, &t, q));
    for (int i = 0; i < 6; i++)
        QT_CHECK(q[i] == q_rna[i], "uint8 RNA q[%d] = %d, want %d", i, q[i], q_rna[i]);
    p.round = QK_ROUND_HALF_UP; /* -42.5 -> -42 as RNE; 25.5, 59.5 up */
    QT_OK(qk_quantize(&p, 1, &s, &z, &t, q));
    for (int i = 0; i < 6; i++)
        QT_CHECK(q[i] == q_rne[i], "uint8 RHU q[%d] = %d", i, q[i]);

    /* int8 symmetric: narrow amax/127 vs PyTorch full amax/127.5 */
    const int32_t q_narrow[6] = { -64, -32, 0, 19, 44, 127 }, q_full[6] = { -64, -32, 0, 19, 45, 127 };
    p = QK_QPARAMS_INT8_SYM;
    QT_OK(qk_qparams_compute(&p, -1.0f, 2.0f, &s, &z));
    QT_CHECK(s == 2.0f / 127.0f && z == 0, "narrow s %.9g z %d", (double)s, z);
    QT_OK(qk_quantize(&p, 1, &s, &z, &t, q));
    for (int i = 0; i < 6; i++)
        QT_CHECK(q[i] == q_narrow[i], "int8 narrow q[%d] = %d, want %d", i, q[i], q_narrow[i]);
    p.narrow = 0;
    QT_OK(qk_qparams_compute(&p, -1.0f, 2.0f, &s, &z));
    QT_CHECK(s == 2.0f / 127.5f, "full s %.9g", (double)s);
    QT_OK(qk_quantize(&p, 1, &s, &z, &t, q));
    for (int i = 0; i < 6; i++)
        QT_CHECK(q[i] == q_full[i], "int8 full q[%d] = %d, want %d", i, q[i], q_full[i]);
    for (int i = 0; i < 6; i++) /* and the exact double reference agrees */
        QT_CHECK(qk_quantize_scalar(xd[i], 2.0 / 127, 0, -127, 127, QK_ROUND_HALF_EVEN) == q_narrow[i], "dbl narrow");
}

static void test_compute_edges(void)
{
    qk_qparams u8 = QK_QPARAMS_UINT8, s8 = QK_QPARAMS_INT8_SYM;
    float s;
    int32_t z;
    int32_t qn, qp;
    /* ranges of every width */
    qk_qparams p = { .bits = 4, .is_signed = 1, .narrow = 1 };
    qk_quant_range(&p, &qn, &qp);
    QT_CHECK(qn == -7 && qp == 7, "int4 narrow [%d,%d]", qn, qp);
    p = (qk_qparams){ .bits = 16, .is_signed = 1 };
    qk_quant_range(&p, &qn, &qp);
    QT_CHECK(qn == -32768 && qp == 32767, "int16 [%d,%d]", qn, qp);
    p = (qk_qparams){ .bits = 2 };
    qk_quant_range(&p, &qn, &qp);
    QT_CHECK(qn == 0 && qp == 3, "uint2 [%d,%d]", qn, qp);

    /* all-zero tensor: eps scale, no NaN; fake quant gives zeros */
    QT_OK(qk_qparams_compute(&u8, 0.0f, 0.0f, &s, &z));
    QT_CHECK(s == FLT_EPSILON && z == 0, "zero range s %g z %d", (double)s, z);
    QT_OK(qk_qparams_compute(&s8, 0.0f, 0.0f, &s, &z));
    QT_CHECK(s == FLT_EPSILON && z == 0, "zero range sym s %g z %d", (double)s, z);
    float zero[4] = { 0 }, out[4] = { 1, 1, 1, 1 };
    qk_tensor tz = vec(zero, 4), to = vec(out, 4);
    QT_OK(qk_fake_quant(&u8, 1, &s, &z, &tz, &to, NULL));
    QT_CHECK(out[0] == 0 && out[3] == 0, "zeros stay zero");
    /* constant positive tensor: 0 is added, z = 0 exact */
    QT_OK(qk_qparams_compute(&u8, 5.0f, 5.0f, &s, &z));
    QT_CHECK(s == 5.0f / 255.0f && z == 0, "const 5: s %g z %d", (double)s, z);
    /* constant negative: z = qp */
    QT_OK(qk_qparams_compute(&u8, -3.0f, -3.0f, &s, &z));
    QT_CHECK(z == 255, "const -3: z %d", z);
    /* signed asymmetric int8 on [0, 1]: z = -128 */
    p = (qk_qparams){ .bits = 8, .is_signed = 1 };
    QT_OK(qk_qparams_compute(&p, 0.0f, 1.0f, &s, &z));
    QT_CHECK(z == -128, "int8 asym [0,1] z %d", z);
    /* unsigned symmetric (PyTorch quint8 symmetric): z = 128, s = amax/127.5 */
    p = (qk_qparams){ .bits = 8, .symmetric = 1 };
    QT_OK(qk_qparams_compute(&p, -2.0f, 1.0f, &s, &z));
    QT_CHECK(z == 128 && s == 2.0f / 127.5f, "quint8 sym s %g z %d", (double)s, z);
    /* bad ranges */
    QT_CHECK(qk_qparams_compute(&u8, 1.0f, -1.0f, &s, &z) == QK_ERR_ARG, "min > max");
    QT_CHECK(qk_qparams_compute(&u8, NAN, 1.0f, &s, &z) == QK_ERR_NUMERIC, "NaN range");
    QT_CHECK(qk_qparams_compute(&u8, 0.0f, INFINITY, &s, &z) == QK_ERR_NUMERIC, "Inf range");
}

static void test_validate(void)
{
    qk_qparams p = QK_QPARAMS_INT8_SYM;
    QT_OK(qk_qparams_validate(&p));
    int ok_bits[] = { 2, 3, 4, 5, 6, 7, 8, 16 };
    for (int i = 0; i < 8; i++) {
        p.bits = ok_bits[i];
        QT_OK(qk_qparams_validate(&p));
    }
    p.bits = 9;
    QT_CHECK(qk_qparams_validate(&p) == QK_ERR_ARG && strstr(qk_last_error(), "bits 9"), "bits 9: %s",
             qk_last_error());
    p.bits = 1;
    QT_CHECK(qk_qparams_validate(&p) == QK_ERR_ARG, "bits 1");
    p = QK_QPARAMS_UINT8;
    p.narrow = 1;
    QT_CHECK(qk_qparams_validate(&p) == QK_ERR_ARG && strstr(qk_last_error(), "narrow"), "unsigned narrow: %s",
             qk_last_error());
    p = QK_QPARAMS_UINT8;
    p.round = (qk_round)7;
    QT_CHECK(qk_qparams_validate(&p) == QK_ERR_ARG && strstr(qk_last_error(), "rounding"), "round 7");
    p = QK_QPARAMS_UINT8;
    p.per_channel = 1;
    p.axis = -1;
    QT_CHECK(qk_qparams_validate(&p) == QK_ERR_ARG && strstr(qk_last_error(), "axis"), "axis -1");
    p = QK_QPARAMS_UINT8;
    p.scheme = QK_QSCHEME_NNIE_LOG;
    QT_CHECK(qk_qparams_validate(&p) == QK_ERR_ARG && strstr(qk_last_error(), "NNIE"), "NNIE unsigned");
    /* quantize-time checks: zero/negative scale, zero point outside range */
    float x[2] = { 1, 2 }, s = 0;
    int32_t z = 0, q[2];
    qk_tensor t = vec(x, 2);
    p = QK_QPARAMS_UINT8;
    QT_CHECK(qk_quantize(&p, 1, &s, &z, &t, q) == QK_ERR_ARG && strstr(qk_last_error(), "scale"), "scale 0");
    s = 1;
    z = 300;
    QT_CHECK(qk_quantize(&p, 1, &s, &z, &t, q) == QK_ERR_ARG && strstr(qk_last_error(), "zero point"), "zp 300");
}

static void test_pot(void)
{
    QT_CHECK(qk_pot_frac_bits(0.0070866) == 7, "f0 of 0.0070866 = %d", qk_pot_frac_bits(0.0070866));
    QT_CHECK(qk_pot_frac_bits(0.125) == 3 && qk_pot_frac_bits(0.1250001) == 2 && qk_pot_frac_bits(3.0) == -2,
             "exact powers");
    /* section 2.8 example: x = [0.9, -0.3, 0.05, 0.41], int8 full range */
    qk_qparams p = { .bits = 8, .is_signed = 1, .symmetric = 1, .pot = 1 };
    float s;
    int32_t z;
    QT_OK(qk_qparams_compute(&p, -0.3f, 0.9f, &s, &z));
    QT_CHECK(s == 1.0f / 128 && z == 0, "pot scale %g", (double)s);
    /* POT never clips: random ranges, max/s <= qp and min/s >= qn */
    qk_rng r;
    qk_rng_seed(&r, 7);
    int clipped = 0;
    for (int i = 0; i < 2000; i++) {
        float lo = -expf(8 * qk_rng_uniform(&r) - 4), hi = expf(8 * qk_rng_uniform(&r) - 4);
        qk_qparams q = { .bits = 2 + (int)qk_rng_below(&r, 7), .is_signed = 1, .symmetric = 1,
                         .narrow = (int)qk_rng_below(&r, 2), .pot = 1 };
        int32_t qn, qp;
        qk_quant_range(&q, &qn, &qp);
        if (qk_qparams_compute(&q, lo, hi, &s, &z) != QK_OK)
            clipped++;
        int f;
        (void)frexpf(s, &f);
        clipped += frexpf(s, &f) != 0.5f; /* exact power of two */
        clipped += hi / s > (float)qp || lo / s < (float)qn;
        clipped += s / 2 >= fmaxf(lo / (float)qn, hi / (float)qp); /* largest f */
    }
    QT_CHECK(clipped == 0, "POT: %d failures of exact/non-clipping/largest-f", clipped);
}

static void test_per_channel(void)
{
    /* Conv weight OIHW [3,2,2,2], axis 0: each channel its own amax/127 */
    float w[24], y[24], yref[24];
    qk_rng r;
    qk_rng_seed(&r, 11);
    for (int i = 0; i < 24; i++)
        w[i] = qk_rng_normal(&r) * (float)(1 + 10 * (i / 8));
    qk_tensor tw = { QK_F32, 4, { 3, 2, 2, 2 }, w, 0 }, ty = { QK_F32, 4, { 3, 2, 2, 2 }, y, 0 };
    qk_qparams p = QK_QPARAMS_INT8_SYM_CH0;
    float mn[3], mx[3], s[3];
    int32_t z[3];
    for (int c = 0; c < 3; c++) {
        mn[c] = INFINITY;
        mx[c] = -INFINITY;
        for (int i = 0; i < 8; i++) {
            mn[c] = fminf(mn[c], w[c * 8 + i]);
            mx[c] = fmaxf(mx[c], w[c * 8 + i]);
        }
    }
    QT_OK(qk_qparams_compute_n(&p, 3, mn, mx, s, z));
    QT_OK(qk_fake_quant(&p, 3, s, z, &tw, &ty, NULL));
    qk_qparams pt = QK_QPARAMS_INT8_SYM;
    for (int c = 0; c < 3; c++) {
        qk_tensor a = vec(w + c * 8, 8), b = vec(yref + c * 8, 8);
        QT_OK(qk_fake_quant(&pt, 1, &s[c], &z[c], &a, &b, NULL));
        QT_CHECK(s[c] == fmaxf(-mn[c], mx[c]) / 127.0f, "channel %d scale", c);
    }
    QT_CHECK(memcmp(y, yref, sizeof y) == 0, "per-channel axis 0 = per-tensor per slice");

    /* axis 1 (ConvTranspose IOHW [2,3,2,2]): channel c = index on dim 1 */
    qk_tensor t1 = { QK_F32, 4, { 2, 3, 2, 2 }, w, 0 }, u1 = { QK_F32, 4, { 2, 3, 2, 2 }, y, 0 };
    p.axis = 1;
    float s1[3] = { 0.5f, 0.25f, 2.0f };
    int32_t z1[3] = { 0, 0, 0 };
    int32_t q[24];
    QT_OK(qk_quantize(&p, 3, s1, z1, &t1, q));
    int bad = 0;
    for (int i = 0; i < 24; i++) {
        int c = (i / 4) % 3;
        bad += q[i] != qk_quantize_scalar(w[i], s1[c], 0, -127, 127, QK_ROUND_HALF_EVEN) &&
               fabsf(w[i] / s1[c] - roundf(w[i] / s1[c])) < 0.49f;
    }
    QT_CHECK(bad == 0, "axis 1 codes: %d wrong", bad);
    QT_OK(qk_fake_quant(&p, 3, s1, z1, &t1, &u1, NULL));
    /* Gemm [out,in] axis 0 */
    qk_tensor tg = { QK_F32, 2, { 4, 6 }, w, 0 }, ug = { QK_F32, 2, { 4, 6 }, y, 0 };
    p.axis = 0;
    float s4[4] = { 0.1f, 0.2f, 0.3f, 0.4f };
    int32_t z4[4] = { 0 };
    QT_OK(qk_fake_quant(&p, 4, s4, z4, &tg, &ug, NULL));
    QT_NEAR(y[7], qk_quantize_scalar(w[7], 0.2f, 0, -127, 127, QK_ROUND_HALF_EVEN) * 0.2f, 1e-6, "gemm row 1");

    /* bad input: per-channel on a tensor without that axis; wrong count */
    p.axis = 3;
    QT_CHECK(qk_fake_quant(&p, 4, s4, z4, &tg, &ug, NULL) == QK_ERR_SHAPE && strstr(qk_last_error(), "axis 3"),
             "missing axis: %s", qk_last_error());
    int64_t nch;
    QT_CHECK(qk_qparams_channels(&p, &tg, &nch) == QK_ERR_SHAPE, "channels of missing axis");
    p.axis = 0;
    QT_CHECK(qk_fake_quant(&p, 3, s4, z4, &tg, &ug, NULL) == QK_ERR_SHAPE && strstr(qk_last_error(), "needs 4"),
             "count mismatch: %s", qk_last_error());
}

static void test_ste_and_specials(void)
{
    qk_qparams p = QK_QPARAMS_INT8_SYM;
    float s = 0.1f;
    int32_t z = 0;
    float x[7] = { 0.0f, 12.7f, 12.74f, 12.76f, -12.76f, NAN, INFINITY }, y[7];
    uint8_t m[7];
    qk_tensor tx = vec(x, 7), ty = vec(y, 7);
    QT_OK(qk_fake_quant(&p, 1, &s, &z, &tx, &ty, m));
    /* 12.74/0.1 -> 127 (inside), 12.76 -> 128 (outside: clipped, grad 0) */
    QT_CHECK(m[0] == 1 && m[1] == 1 && m[2] == 1 && m[3] == 0 && m[4] == 0 && m[5] == 0 && m[6] == 0,
             "STE mask %d%d%d%d%d%d%d", m[0], m[1], m[2], m[3], m[4], m[5], m[6]);
    QT_CHECK(y[3] == 127 * 0.1f && y[4] == -127 * 0.1f && y[5] == 0 && y[6] == 127 * 0.1f, "saturation/NaN/Inf");
    float dy[7] = { 1, 2, 3, 4, 5, 6, 7 }, dx[7] = { 10, 10, 10, 10, 10, 10, 10 };
    qk_fake_quant_backward(7, m, dy, dx);
    QT_CHECK(dx[0] == 11 && dx[1] == 12 && dx[2] == 13 && dx[3] == 10 && dx[4] == 10, "STE backward adds");
    /* in place */
    float xi[3] = { 0.26f, -0.34f, 0.05f };
    qk_tensor ti = vec(xi, 3);
    QT_OK(qk_fake_quant(&p, 1, &s, &z, &ti, &ti, NULL));
    QT_CHECK(xi[0] == 3 * 0.1f && xi[1] == -3 * 0.1f && xi[2] == 0, "in place %g %g %g", (double)xi[0],
             (double)xi[1], (double)xi[2]);
}

static void test_nnie(void)
{
    /* data_max = 1: zn = -127; 1 -> k = 127 -> 2^0 = 1; 0.5 -> 2^(-16/16) */
    float x[6] = { 1.0f, 0.5f, -0.5f, 1e-6f, -2.0f, 0.7f }, y[6];
    QT_OK(qk_nnie_fake_quant(1.0f, 6, x, y));
    QT_CHECK(y[0] == 1.0f && y[1] == 0.5f && y[2] == -0.5f && y[3] == 0.0f && y[4] == -1.0f, "NNIE %g %g %g %g %g",
             (double)y[0], (double)y[1], (double)y[2], (double)y[3], (double)y[4]);
    /* 0.7: 16 log2 0.7 = -8.233 -> k = 119 -> 2^(-8/16) */
    QT_NEAR(y[5], exp2(-0.5), 1e-7, "NNIE 0.7");
    QT_CHECK(qk_nnie_fake_quant(0.0f, 6, x, y) == QK_ERR_ARG, "NNIE zero max");
}

/* Quality budgets on N(0,1) data (2^16 samples, seed 1, range about
 * [-4.3, 4.1]): the rounding noise of a step s is s/sqrt(12) = 0.289 s, so
 * SQNR ~ 10 log10(12 / s^2). Measured: uint8 40.5, int8 narrow 40.2, int4
 * 15.0, int16 88.4, int8 pot 34.9 dB; budgets leave ~2 dB. */
static void test_quality(void)
{
    enum { N = 1 << 16 };
    static float x[N], y[N];
    qk_rng r;
    qk_rng_seed(&r, 1);
    float mn = INFINITY, mx = -INFINITY;
    for (int i = 0; i < N; i++) {
        x[i] = qk_rng_normal(&r);
        mn = fminf(mn, x[i]);
        mx = fmaxf(mx, x[i]);
    }
    qk_tensor tx = vec(x, N), ty = vec(y, N);
    struct { qk_qparams p; double budget; const char *what; } cases[] = {
        { QK_QPARAMS_UINT8, 38.0, "uint8 affine minmax" },
        { QK_QPARAMS_INT8_SYM, 37.5, "int8 narrow minmax" },
        { { .bits = 4, .is_signed = 1, .symmetric = 1, .narrow = 1 }, 13.5, "int4 narrow minmax" },
        { { .bits = 16, .is_signed = 1, .symmetric = 1 }, 85.0, "int16 minmax" },
        { { .bits = 8, .is_signed = 1, .symmetric = 1, .pot = 1 }, 33.0, "int8 pot minmax" },
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        float s;
        int32_t z;
        double sqnr, rmse;
        QT_OK(qk_qparams_compute(&cases[k].p, mn, mx, &s, &z));
        QT_OK(qk_fake_quant(&cases[k].p, 1, &s, &z, &tx, &ty, NULL));
        qk_quant_error(N, x, y, &sqnr, &rmse);
        QT_CHECK(sqnr > cases[k].budget, "%s: SQNR %.2f dB <= budget %.1f", cases[k].what, sqnr, cases[k].budget);
        QT_CHECK(rmse <= 0.30 * s, "%s: RMSE %.3g > 0.30 step (uniform noise: 0.289)", cases[k].what, rmse);
    }
}

/* ---------------------------------------------------------- ONNX ops */

static qk_graph *G;

static int cval(const char *name, qk_dtype dt, int ndim, const int64_t *dims, const void *data)
{
    qk_tensor t;
    qk_tensor_alloc(&t, dt, ndim, dims);
    memcpy(t.data, data, qk_tensor_bytes(&t));
    return qk_graph_add_init(G, name, QK_VALUE_CONST, &t);
}

static qk_status run_node(const char *op, int nin, const int *in, int64_t axis_attr)
{
    int y = qk_graph_add_value(G, "y", QK_VALUE_ACT);
    int n = qk_graph_add_node(G, op, "node", nin, in, 1, &y);
    if (axis_attr != 99)
        qk_node_set_int(G, n, "axis", axis_attr);
    qk_graph_add_output(G, y);
    qk_status st = qk_ops_bind(G);
    if (st == QK_OK)
        st = qk_graph_plan(G, 1, 0, NULL);
    if (st == QK_OK)
        st = qk_graph_forward(G);
    return st;
}

static const qk_tensor *yout(void) { return &G->values[G->outputs[0]].t; }

/* QuantizeLinear / DequantizeLinear: the vector runs (AVX-512 where usable)
 * against the portable loops (the graph option reference), bit for bit, on odd
 * lengths, per-channel runs, ties, NaN, infinities and saturation. */
static void test_qdq_vector_same(void)
{
    enum { C = 3, L = 37 };
    static float x[C * L];
    uint32_t seed = 99;
    for (int i = 0; i < C * L; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = ((int)(seed >> 9) % 20001 - 10000) / 37.0f;
        if (i % 11 == 3)
            x[i] = (float)((int)(seed >> 20) % 40) * 0.5f - 10.0f; /* ties */
    }
    x[5] = NAN, x[9] = INFINITY, x[17] = -INFINITY, x[40] = 1e30f, x[41] = -0.0f;
    for (int u8 = 0; u8 < 2; u8++) {
        uint8_t q[2][C * L];
        float d[2][C * L];
        for (int ref = 0; ref < 2; ref++) {
            int in[3];
            qk_graph_create(&G);
            qk_graph_set_options(G, &(qk_plan_options){ .reference = ref });
            in[0] = cval("x", QK_F32, 2, (int64_t[]){ C, L }, x);
            in[1] = cval("s", QK_F32, 1, (int64_t[]){ C }, (float[]){ 0.37f, 1.0f / 3.0f, 2.5f });
            if (u8)
                in[2] = cval("z", QK_U8, 1, (int64_t[]){ C }, (uint8_t[]){ 0, 128, 250 });
            else
                in[2] = cval("z", QK_I8, 1, (int64_t[]){ C }, (int8_t[]){ -128, 3, 127 });
            QT_OK(run_node("QuantizeLinear", 3, in, 0));
            memcpy(q[ref], yout()->data, sizeof q[ref]);
            qk_graph_destroy(G);
            qk_graph_create(&G);
            qk_graph_set_options(G, &(qk_plan_options){ .reference = ref });
            in[0] = cval("x", u8 ? QK_U8 : QK_I8, 2, (int64_t[]){ C, L }, q[ref]);
            in[1] = cval("s", QK_F32, 1, (int64_t[]){ C }, (float[]){ 0.37f, 1.0f / 3.0f, 2.5f });
            if (u8)
                in[2] = cval("z", QK_U8, 1, (int64_t[]){ C }, (uint8_t[]){ 0, 128, 250 });
            else
                in[2] = cval("z", QK_I8, 1, (int64_t[]){ C }, (int8_t[]){ -128, 3, 127 });
            QT_OK(run_node("DequantizeLinear", 3, in, 0));
            memcpy(d[ref], yout()->data, sizeof d[ref]);
            qk_graph_destroy(G);
        }
        QT_CHECK(memcmp(q[0], q[1], sizeof q[0]) == 0 && memcmp(d[0], d[1], sizeof d[0]) == 0,
                 "QuantizeLinear/DequantizeLinear %s: vector runs differ from the portable loops",
                 u8 ? "uint8" : "int8");
    }
}

static void test_qdq_ops(void)
{
    /* ties to even, saturation, default uint8 output without zero point */
    qk_graph_create(&G);
    float x[9] = { 0.5f, 1.5f, 2.5f, -0.5f, -2.5f, 300.0f, -300.0f, NAN, 3.49f };
    int in[3];
    in[0] = cval("x", QK_F32, 1, (int64_t[]){ 9 }, x);
    in[1] = cval("s", QK_F32, 0, NULL, (float[]){ 1.0f });
    in[2] = cval("z", QK_I8, 0, NULL, (int8_t[]){ 0 });
    QT_OK(run_node("QuantizeLinear", 3, in, 99));
    const int8_t *q = yout()->data;
    const int8_t want[9] = { 0, 2, 2, 0, -2, 127, -128, 0, 3 };
    QT_CHECK(yout()->dtype == QK_I8 && memcmp(q, want, 9) == 0, "QuantizeLinear int8 ties/saturation: %d %d %d %d %d %d %d",
             q[0], q[1], q[2], q[3], q[4], q[5], q[6]);
    qk_graph_destroy(G);

    qk_graph_create(&G);
    in[0] = cval("x", QK_F32, 1, (int64_t[]){ 4 }, (float[]){ -1.0f, 0.0f, 1.0f, 600.0f });
    in[1] = cval("s", QK_F32, 0, NULL, (float[]){ 2.0f });
    QT_OK(run_node("QuantizeLinear", 2, in, 99));
    const uint8_t *u = yout()->data;
    QT_CHECK(yout()->dtype == QK_U8 && u[0] == 0 && u[1] == 0 && u[2] == 0 && u[3] == 255,
             "QuantizeLinear default uint8: %d %d %d %d", u[0], u[1], u[2], u[3]);
    qk_graph_destroy(G);

    /* per axis (ONNX test_quantizelinear_axis data), axis 1 default */
    const float xa[18] = { -162, 10, -100, 232, -20, -50, -76, 0, 0, 252, 32, -44, 245, -485, -960, -270, -375, -470 };
    const uint8_t qa[18] = { 3, 89, 34, 200, 74, 59, 5, 24, 24, 87, 32, 13, 245, 99, 4, 142, 121, 102 };
    qk_graph_create(&G);
    in[0] = cval("x", QK_F32, 4, (int64_t[]){ 1, 3, 3, 2 }, xa);
    in[1] = cval("s", QK_F32, 1, (int64_t[]){ 3 }, (float[]){ 2, 4, 5 });
    in[2] = cval("z", QK_U8, 1, (int64_t[]){ 3 }, (uint8_t[]){ 84, 24, 196 });
    QT_OK(run_node("QuantizeLinear", 3, in, 99));
    QT_CHECK(memcmp(yout()->data, qa, 18) == 0, "QuantizeLinear per axis");
    qk_graph_destroy(G);

    qk_graph_create(&G);
    in[0] = cval("x", QK_U8, 4, (int64_t[]){ 1, 3, 3, 2 }, qa);
    in[1] = cval("s", QK_F32, 1, (int64_t[]){ 3 }, (float[]){ 2, 4, 5 });
    in[2] = cval("z", QK_U8, 1, (int64_t[]){ 3 }, (uint8_t[]){ 84, 24, 196 });
    QT_OK(run_node("DequantizeLinear", 3, in, -3)); /* axis -3 == 1 */
    const float *d = yout()->data;
    QT_CHECK(yout()->dtype == QK_F32 && d[0] == -162 && d[6] == -76 && d[13] == -485 && d[14] == -960,
             "DequantizeLinear per axis: %g %g %g %g", (double)d[0], (double)d[6], (double)d[13], (double)d[14]);
    qk_graph_destroy(G);

    /* int32 (bias) dequantization; non-zero zero point rejected */
    qk_graph_create(&G);
    in[0] = cval("x", QK_I32, 1, (int64_t[]){ 3 }, (int32_t[]){ -1000000, 0, 350 });
    in[1] = cval("s", QK_F32, 0, NULL, (float[]){ 0.0002f });
    QT_OK(run_node("DequantizeLinear", 2, in, 99));
    d = yout()->data;
    QT_CHECK(d[0] == -1000000 * 0.0002f && d[1] == 0 && d[2] == 350 * 0.0002f, "DequantizeLinear int32");
    qk_graph_destroy(G);
    qk_graph_create(&G);
    in[0] = cval("x", QK_I32, 1, (int64_t[]){ 3 }, (int32_t[]){ 1, 2, 3 });
    in[1] = cval("s", QK_F32, 0, NULL, (float[]){ 1.0f });
    in[2] = cval("z", QK_I32, 0, NULL, (int32_t[]){ 5 });
    qk_status st = run_node("DequantizeLinear", 3, in, 99);
    QT_CHECK(st == QK_ERR_ARG && strstr(qk_last_error(), "node"), "int32 zp != 0: %s", qk_last_error());
    qk_graph_destroy(G);

    /* shape errors name the node: per-axis length mismatch */
    qk_graph_create(&G);
    in[0] = cval("x", QK_F32, 2, (int64_t[]){ 2, 3 }, xa);
    in[1] = cval("s", QK_F32, 1, (int64_t[]){ 2 }, (float[]){ 1, 2 });
    st = run_node("QuantizeLinear", 2, in, 99);
    QT_CHECK(st == QK_ERR_SHAPE && strstr(qk_last_error(), "node") && strstr(qk_last_error(), "per-axis"),
             "axis mismatch: %s", qk_last_error());
    qk_graph_destroy(G);

    /* Q -> DQ equals fake quant with the same (s, z) except near ties
     * (division vs multiply by the reciprocal): count differences on random data */
    enum { N = 4096 };
    static float xr[N];
    qk_rng r;
    qk_rng_seed(&r, 3);
    for (int i = 0; i < N; i++)
        xr[i] = 3 * qk_rng_normal(&r);
    qk_graph_create(&G);
    in[0] = cval("x", QK_F32, 1, (int64_t[]){ N }, xr);
    in[1] = cval("s", QK_F32, 0, NULL, (float[]){ 0.037f });
    in[2] = cval("z", QK_U8, 0, NULL, (uint8_t[]){ 131 });
    QT_OK(run_node("QuantizeLinear", 3, in, 99));
    const uint8_t *qq = yout()->data;
    qk_qparams p = QK_QPARAMS_UINT8;
    float s = 0.037f;
    int32_t z = 131;
    static int32_t qc[N];
    qk_tensor tx = vec(xr, N);
    QT_OK(qk_quantize(&p, 1, &s, &z, &tx, qc));
    int diff = 0;
    for (int i = 0; i < N; i++)
        diff += qc[i] != qq[i];
    QT_CHECK(diff <= 2, "QuantizeLinear vs qk_quantize: %d of %d codes differ", diff, N);
    qk_graph_destroy(G);
}

int main(void)
{
    test_rounding();
    test_section1_vectors();
    test_compute_edges();
    test_validate();
    test_pot();
    test_per_channel();
    test_ste_and_specials();
    test_nnie();
    test_quality();
    test_qdq_ops();
    test_qdq_vector_same();
    return qt_finish("test_quant");
}
