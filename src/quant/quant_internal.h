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
/* The sum qk_vsum would give over the n values a DequantizeLinear (then,
 * with clip, a Clip to [lo, hi]) makes of the codes x (uint8, int8 or
 * int32): the fused DequantizeLinear -> Clip -> GlobalAveragePool */
float qk_dq_clip_sum__avx512(const void *x, qk_dtype xt, int64_t n, float sc, int32_t z, int clip, float lo,
                             float hi);

/* The gemmlowp primitives of quant.h (qk_srdhm, qk_rdbpot, qk_mbqm) as
 * inline definitions: fixedpoint.c defines the exported functions with
 * them, and the simulation's per-element loops use them directly. */
static inline int32_t qk_srdhm_i(int32_t a, int32_t b)
{
    if (a == INT32_MIN && b == INT32_MIN)
        return INT32_MAX;
    int64_t p = (int64_t)a * b;
    int64_t nudge = p >= 0 ? (INT64_C(1) << 30) : 1 - (INT64_C(1) << 30);
    return (int32_t)((p + nudge) / (INT64_C(1) << 31)); /* C division truncates */
}

static inline int32_t qk_rdbpot_i(int32_t x, int n)
{
    int32_t mask = (int32_t)((UINT32_C(1) << n) - 1);
    int32_t rem = x & mask;
    int32_t thr = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> n) + (rem > thr ? 1 : 0);
}

static inline int32_t qk_mbqm_i(int32_t x, int32_t q, int e)
{
    int left = e > 0 ? e : 0, right = e > 0 ? 0 : -e;
    int32_t xs = (int32_t)((uint32_t)x << left); /* wraps like TFLite on two's complement */
    return qk_rdbpot_i(qk_srdhm_i(xs, q), right);
}

/* ---- the gemmlowp output stages in the simulation (glsim.c) ----
 * Where a profile's arithmetic is gemmlowp (metadata "qkit.arith"), the
 * integer engine requantizes the int32 accumulator of a Conv / Gemm /
 * MatMul, and the sum of a global average pool, with TFLite's
 * MultiplyByQuantizedMultiplier: a Q31 high multiply rounded, then a
 * rounding shift. The two roundings land one code away from RNE(y / s_y)
 * on ~0.1-10% of the outputs. The simulation recovers the accumulator from
 * the float output, a = RNE(y / unit[c]) (exact while the float sum errs by
 * less than half a unit), and runs the same stage. */
typedef enum qk_gl_kind {
    QK_GL_LAYER = 0,    /* Conv / Gemm / MatMul [-> Relu | Clip]: unit s_x s_w[c] */
    QK_GL_AVG = 1,      /* GlobalAveragePool: unit s_x / n, multiplier s_x / (n s_y) */
    QK_GL_AVG_CODES = 2 /* GlobalAveragePool with the input's scale and zero point: codes averaged */
} qk_gl_kind;

typedef struct qk_glsim {
    qk_gl_kind kind;
    int64_t C;              /* QK_GL_LAYER: output channels (entries of inv, mult, shift); else 1 */
    int conv;               /* QK_GL_LAYER: 1: channel-major samples (NCHW, also after Flatten); 0: channels on
                               the last axis (Gemm, MatMul) */
    int32_t n, zx;          /* QK_GL_AVG*: cells averaged, the input's zero point */
    double *inv;            /* [C] 1 / unit */
    int32_t *mult;          /* [C] Q31 multipliers */
    int *shift;             /* [C] their exponents */
    int32_t zp, qmin, qmax; /* output zero point; the engine's clamp (type range, fused Relu / Clip) */
} qk_glsim;

/* A quantizer node's scales (n of them) and first zero point, or 0 when
 * it has none the simulation can read. */
typedef int (*qk_glsim_qparams_fn)(void *user, const qk_graph *g, int node, const float **s, int64_t *n,
                                   int32_t *z);

/* The stage the engine runs ahead of a quantizer (output scale sy, zero
 * point zy, type yt) whose input is value v: a layer or global average
 * whose inputs come from quantizer nodes of type qop in qop_domain
 * (DequantizeLinear in a QDQ file, FakeQuant in a prepared model; their
 * scales from qp). Max pooling and Flatten between the layer and the
 * quantizer are looked through (the engine takes the max of the codes). 1 and *s built; 0 when v ends no such chain; a status
 * < 0 never: allocation failure also gives 0 with *s empty. */
int qk_glsim_build(qk_glsim *s, const qk_graph *g, int v, const char *qop_domain, const char *qop,
                   qk_glsim_qparams_fn qp, void *user, float sy, int32_t zy, qk_dtype yt);
void qk_glsim_free(qk_glsim *s);
/* Elements per channel run of x (0: x's shape does not fit the stage). */
int64_t qk_glsim_inner(const qk_glsim *s, const qk_tensor *x);
/* Codes of elements [lo, hi) of a tensor whose channel runs are `inner`
 * long (qk_glsim_inner): one channel lookup per run. */
static inline void qk_glsim_codes(const qk_glsim *s, int64_t inner, const float *x, int32_t *q, int64_t lo, int64_t hi);

/* The code the engine gives the element of channel c whose float value is
 * x (the layer's output after Relu / Clip, or the average); NaN gives the
 * zero point's stage result. */
static inline int32_t qk_glsim_code(const qk_glsim *s, int64_t c, float x)
{
    double v = (double)x * s->inv[c];
    v = v != v ? 0.0 : v > 2147483647.0 ? 2147483647.0 : v < -2147483648.0 ? -2147483648.0 : v;
    int32_t ai = (int32_t)((v + 6755399441055744.0) - 6755399441055744.0); /* RNE below 2^51 */
    int64_t r = s->kind == QK_GL_AVG_CODES ? (int64_t)qk_avg_round(ai + s->n * s->zx, s->n)
                                           : (int64_t)qk_mbqm_i(ai, s->mult[c], s->shift[c]) + s->zp;
    return r < s->qmin ? s->qmin : r > s->qmax ? s->qmax : (int32_t)r;
}

static inline void qk_glsim_codes(const qk_glsim *s, int64_t inner, const float *x, int32_t *q, int64_t lo, int64_t hi)
{
    for (int64_t i = lo; i < hi;) {
        int64_t run = i / inner, end = (run + 1) * inner < hi ? (run + 1) * inner : hi, c = run % s->C;
        for (; i < end; i++)
            q[i - lo] = qk_glsim_code(s, c, x[i]);
    }
}

#endif
