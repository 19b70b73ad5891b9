/* Private helpers of the quant layer (the files in src/quant). Not a public header. */
#ifndef QK_QUANT_INTERNAL_H
#define QK_QUANT_INTERNAL_H

#include "qkit/quant.h"

#include <math.h>

/* Round a float with mode m, exactly (floorf and the difference are exact
 * for finite floats); +-Inf pass through. */
static inline float qk_round_f(float v, qk_round m)
{
    float f = floorf(v), d = v - f;
    switch (m) {
    case QK_ROUND_HALF_AWAY:
        if (d == 0.5f)
            return v < 0 ? f : f + 1.0f;
        return d > 0.5f ? f + 1.0f : f;
    case QK_ROUND_HALF_UP:
        return d >= 0.5f ? f + 1.0f : f;
    default:
        if (d == 0.5f)
            return fmodf(f, 2.0f) == 0 ? f : f + 1.0f;
        return d > 0.5f ? f + 1.0f : f;
    }
}

/* The float code of one element: clamp(R(x * inv) + z, qn, qp) in float32
 * (PyTorch fake_quantize convention); *in (optional) = 1 when the unclamped
 * value lies in [qn, qp]. NaN -> z (clamped), in = 0. */
static inline int32_t qk_q_code(float x, float inv, int32_t z, int32_t qn, int32_t qp, qk_round m, uint8_t *in)
{
    float v = x * inv;
    if (v != v) {
        if (in)
            *in = 0;
        return z < qn ? qn : z > qp ? qp : z;
    }
    float r = qk_round_f(v, m) + (float)z;
    if (in)
        *in = r >= (float)qn && r <= (float)qp;
    if (r < (float)qn)
        return qn;
    if (r > (float)qp)
        return qp;
    return (int32_t)r;
}

/* Tensor viewed as [outer, ch, inner] around the per-channel axis
 * (per tensor: [1, 1, numel]). */
typedef struct qk_q_lay {
    int64_t outer, ch, inner;
} qk_q_lay;
qk_status qk_q_layout(const qk_qparams *p, const qk_tensor *x, qk_q_lay *l);

/* Fake-quantize n contiguous floats with one (s, z); mask optional. */
void qk_q_fake_run(const float *x, float *y, uint8_t *mask, int64_t n, float s, int32_t z, int32_t qn,
                   int32_t qp, qk_round m);

/* AVX-512 runs of QuantizeLinear (to uint8 when u8, else int8) and
 * DequantizeLinear of 8-bit codes (qdq_run__avx512.c; the same results as
 * the portable loops of qdq_ops.c) */
void qk_q_run__avx512(const float *x, int64_t n, float sc, int32_t z, int u8, void *y);
void qk_dq_run__avx512(const void *x, int xt_u8, int64_t n, float sc, int32_t z, float *y);

#endif
