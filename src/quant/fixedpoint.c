/* Fixed-point requantization primitives (docs/ALGORITHMS.md §7): the
 * scalar definitions of gemmlowp / TFLite, power-of-two and activation-clamp
 * arithmetic. The integer engine's kernels reproduce them bit-exactly; the
 * fake-quant simulation uses them where a profile's arithmetic rounds
 * differently from a plain x / s (qk_glsim). */
#include "quant_internal.h"

#include <math.h>

qk_status qk_quantize_multiplier(double M, int32_t *q, int *e)
{
    *q = 0;
    *e = 0;
    if (!(M >= 0.0) || !isfinite(M))
        return qk_error(QK_ERR_ARG, "requantization multiplier %g is not a finite non-negative number", M);
    if (M == 0.0)
        return QK_OK;
    int ex;
    double m = frexp(M, &ex);               /* M = m * 2^ex, m in [0.5, 1) */
    int64_t qq = (int64_t)round(m * 2147483648.0); /* RNA to Q31 */
    if (qq == (INT64_C(1) << 31)) {
        qq /= 2;
        ex += 1;
    }
    if (ex < -31) { /* too small for a 32-bit shift: flush to zero */
        qq = 0;
        ex = 0;
    }
    if (ex > 30)
        return qk_error(QK_ERR_ARG, "requantization multiplier %g is too large (must be < 2^30)", M);
    *q = (int32_t)qq;
    *e = ex;
    return QK_OK;
}

int32_t qk_srdhm(int32_t a, int32_t b) { return qk_srdhm_i(a, b); }

int32_t qk_rdbpot(int32_t x, int n) { return qk_rdbpot_i(x, n); }

int32_t qk_mbqm(int32_t x, int32_t q, int e) { return qk_mbqm_i(x, q, e); }

static int32_t sat32(int64_t v)
{
    return v > INT32_MAX ? INT32_MAX : v < INT32_MIN ? INT32_MIN : (int32_t)v;
}

int32_t qk_mbqm_single(int32_t x, int32_t q, int e)
{
    int total = 31 - e;                      /* 1..62 */
    int64_t r = (int64_t)x * q + (INT64_C(1) << (total - 1));
    return sat32(r >> total);
}

int32_t qk_shift_round(int32_t x, int sh)
{
    if (sh > 0)
        return (x >> sh) + ((x >> (sh - 1)) & 1); /* = floor((x + 2^(sh-1)) / 2^sh), no overflow */
    if (sh == 0)
        return x;
    return sat32((int64_t)x * (INT64_C(1) << -sh));
}

int32_t qk_round_rna(double x)
{
    double r = round(x);
    return r > INT32_MAX ? INT32_MAX : r < INT32_MIN ? INT32_MIN : (int32_t)r;
}

void qk_int_range(qk_dtype type, int32_t *lo, int32_t *hi)
{
    switch (type) {
    case QK_U8: *lo = 0; *hi = 255; break;
    case QK_I8: *lo = -128; *hi = 127; break;
    case QK_I16: *lo = -32768; *hi = 32767; break;
    default: *lo = INT32_MIN; *hi = INT32_MAX; break;
    }
}

qk_status qk_act_bounds(qk_dtype type, float scale, int32_t zp, qk_act act, float lo, float hi,
                        int32_t *qmin, int32_t *qmax)
{
    int32_t tlo, thi;
    qk_int_range(type, &tlo, &thi);
    *qmin = tlo;
    *qmax = thi;
    if (!(scale > 0.0f) || !isfinite(scale))
        return qk_error(QK_ERR_ARG, "activation bounds: scale %g is not finite and > 0", (double)scale);
    switch (act) {
    case QK_ACT_NONE: return QK_OK;
    case QK_ACT_RELU: lo = 0.0f; hi = INFINITY; break;
    case QK_ACT_RELU6: lo = 0.0f; hi = 6.0f; break;
    case QK_ACT_CLIP: break;
    default: return qk_error(QK_ERR_ARG, "unknown fused activation %d", (int)act);
    }
    if (!(lo <= hi))
        return qk_error(QK_ERR_ARG, "activation bounds: empty clip range [%g, %g]", (double)lo, (double)hi);
    if (isfinite(lo)) {
        int64_t v = (int64_t)zp + qk_round_rna((double)(lo / scale));
        if (v > *qmin)
            *qmin = v > thi ? thi : (int32_t)v;
    }
    if (isfinite(hi)) {
        int64_t v = (int64_t)zp + qk_round_rna((double)(hi / scale));
        if (v < *qmax)
            *qmax = v < tlo ? tlo : (int32_t)v;
    }
    if (*qmin > *qmax)
        return qk_error(QK_ERR_ARG, "activation bounds [%g, %g] select no value of the output grid", (double)lo,
                        (double)hi);
    return QK_OK;
}

int32_t qk_avg_round(int32_t acc, int32_t n)
{
    return acc > 0 ? (acc + n / 2) / n : (acc - n / 2) / n;
}
