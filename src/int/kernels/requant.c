/* Requantization primitives (docs/ALGORITHMS.md §7): the scalar
 * definitions every integer kernel reproduces bit-exactly. */
#include "qkit/int.h"

#include <math.h>

const char *qk_rq_mode_name(qk_rq_mode m)
{
    switch (m) {
    case QK_RQ_NONE: return "none";
    case QK_RQ_GEMMLOWP: return "gemmlowp";
    case QK_RQ_Q31_SINGLE: return "q31-single";
    case QK_RQ_FP32: return "fp32";
    case QK_RQ_SHIFT: return "shift";
    }
    return "?";
}

int32_t qk_requant_value(qk_rq_mode mode, int32_t acc, int32_t mult, int32_t shift, float scale,
                         int32_t zp, int32_t qmin, int32_t qmax)
{
    switch (mode) {
    case QK_RQ_NONE:
        return acc;
    case QK_RQ_GEMMLOWP:
        return qk_clamp_i32((int64_t)qk_mbqm(acc, mult, shift) + zp, qmin, qmax);
    case QK_RQ_Q31_SINGLE:
        return qk_clamp_i32((int64_t)qk_mbqm_single(acc, mult, shift) + zp, qmin, qmax);
    case QK_RQ_SHIFT:
        return qk_clamp_i32((int64_t)qk_shift_round(acc, shift) + zp, qmin, qmax);
    case QK_RQ_FP32: {
        /* MLAS MlasRequantizeOutput: scale, clamp in float, round half to even. */
        float f = (float)acc * scale;
        float lo = (float)(qmin - zp), hi = (float)(qmax - zp);
        f = f < lo ? lo : f;
        f = f > hi ? hi : f;
        return (int32_t)nearbyintf(f) + zp;
    }
    }
    return 0;
}

qk_status qk_requant_check(const qk_requant *r, qk_dtype out_type, int64_t nch)
{
    if (out_type == QK_I32) {
        if (r->mode != QK_RQ_NONE)
            return qk_error(QK_ERR_ARG, "int32 output takes no requantization (mode %s given)",
                            qk_rq_mode_name(r->mode));
        return QK_OK;
    }
    if (out_type != QK_U8 && out_type != QK_I8 && out_type != QK_I16)
        return qk_error(QK_ERR_ARG, "output type %d is not uint8, int8, int16 or int32", (int)out_type);
    if (r->mode == QK_RQ_NONE || (unsigned)r->mode > QK_RQ_SHIFT)
        return qk_error(QK_ERR_ARG, "%s output needs a requantization mode (gemmlowp, q31-single, fp32, shift)",
                        qk_dtype_name(out_type));
    if (r->n != 1 && r->n != nch)
        return qk_error(QK_ERR_ARG, "requantization has %d entries; expected 1 or %lld (channels)", r->n,
                        (long long)nch);
    int32_t lo, hi;
    qk_int_range(out_type, &lo, &hi);
    if (r->zero_point < lo || r->zero_point > hi)
        return qk_error(QK_ERR_ARG, "output zero point %d is outside [%d, %d]", r->zero_point, lo, hi);
    if (r->qmin < lo || r->qmax > hi || r->qmin > r->qmax)
        return qk_error(QK_ERR_ARG, "output clamp [%d, %d] is empty or outside [%d, %d]", r->qmin, r->qmax, lo, hi);
    for (int i = 0; i < r->n; i++) {
        if (r->mode == QK_RQ_FP32) {
            if (!r->scale)
                return qk_error(QK_ERR_ARG, "fp32 requantization without scales");
            if (!(r->scale[i] >= 0.0f) || !isfinite(r->scale[i]))
                return qk_error(QK_ERR_ARG, "requantization scale[%d] = %g is not finite and >= 0", i,
                                (double)r->scale[i]);
        } else if (r->mode == QK_RQ_SHIFT) {
            if (!r->shift)
                return qk_error(QK_ERR_ARG, "shift requantization without shifts");
            if (r->shift[i] < -31 || r->shift[i] > 31)
                return qk_error(QK_ERR_ARG, "requantization shift[%d] = %d is outside [-31, 31]", i, r->shift[i]);
        } else {
            if (!r->mult || !r->shift)
                return qk_error(QK_ERR_ARG, "%s requantization without multipliers/shifts", qk_rq_mode_name(r->mode));
            if (r->mult[i] < 0)
                return qk_error(QK_ERR_ARG, "requantization multiplier[%d] = %d is negative", i, r->mult[i]);
            if (r->shift[i] < -31 || r->shift[i] > 30)
                return qk_error(QK_ERR_ARG, "requantization exponent[%d] = %d is outside [-31, 30]", i, r->shift[i]);
        }
    }
    return QK_OK;
}

