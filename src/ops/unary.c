/* Elementwise math with ONNX semantics (opset 6-21): Sqrt, Exp, Log, Neg,
 * Abs, Reciprocal, Erf, Gelu (opset 20, approximate "none" or "tanh"),
 * Softplus, Softsign, Mish, Tanh, Sin, Cos, Floor, Ceil, Round (half to
 * even), Sign, Elu, Selu, Celu, LeakyRelu, ThresholdedRelu; and Pow(X, Y)
 * with numpy broadcasting (X float32 or integer, Y float32 or integer;
 * output of X's type).
 *
 * Output shape = input shape. float32 everywhere; Neg, Abs and Sign also
 * take int8/int32/int64. Plain loops in float (libm), chunked over the pool
 * by element count (QK_LT_GRAIN).
 * Backward (float32), dx += dy * f'(x):
 *   Sqrt 0.5/y; Exp y; Log 1/x; Neg -1; Abs sign(x); Reciprocal -y^2;
 *   Erf 2/sqrt(pi) exp(-x^2); Gelu 0.5(1+erf(x/sqrt2)) + x phi(x) (tanh form:
 *   its exact derivative); Softplus sigmoid(x); Softsign 1/(1+|x|)^2;
 *   Mish tanh(sp) + x sigmoid(x) (1 - tanh(sp)^2), sp = softplus(x);
 *   Tanh 1-y^2; Sin cos x; Cos -sin x; Floor/Ceil/Round/Sign 0;
 *   Elu/Selu/Celu/LeakyRelu/ThresholdedRelu their piecewise slopes.
 *   Pow: dX += dy Y X^(Y-1), dY += dy ln(X) X^Y (X > 0, else 0), summed
 *   over broadcast dims. */
#include "bcast.h"

#include <math.h>

enum {
    U_SQRT, U_EXP, U_LOG, U_NEG, U_ABS, U_RECIP, U_ERF, U_GELU, U_SOFTPLUS, U_SOFTSIGN, U_MISH, U_TANH, U_SIN,
    U_COS, U_FLOOR, U_CEIL, U_ROUND, U_SIGN, U_ELU, U_SELU, U_CELU, U_LEAKY, U_THRESH
};

typedef struct un_state {
    int kind;
    int tanh_approx; /* Gelu approximate = "tanh" */
    float alpha, gamma;
} un_state;

static const double SQRT1_2 = 0.70710678118654752440, SQRT_2_PI = 0.79788456080286535588,
                    INV_SQRT_2PI = 0.39894228040143267794;

static inline float sigm(float x)
{
    if (x >= 0)
        return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

static inline float softplusf_(float x) { return x > 0 ? x + log1pf(expf(-x)) : log1pf(expf(x)); }

static inline float un_f(const un_state *s, float x)
{
    switch (s->kind) {
    case U_SQRT: return sqrtf(x);
    case U_EXP: return expf(x);
    case U_LOG: return logf(x);
    case U_NEG: return -x;
    case U_ABS: return fabsf(x);
    case U_RECIP: return 1.0f / x;
    case U_ERF: return erff(x);
    case U_GELU:
        if (s->tanh_approx)
            return (float)(0.5 * x * (1.0 + tanh(SQRT_2_PI * (x + 0.044715 * (double)x * x * x))));
        return (float)(0.5 * x * (1.0 + erf(x * SQRT1_2)));
    case U_SOFTPLUS: return softplusf_(x);
    case U_SOFTSIGN: return x / (1.0f + fabsf(x));
    case U_MISH: return x * tanhf(softplusf_(x));
    case U_TANH: return tanhf(x);
    case U_SIN: return sinf(x);
    case U_COS: return cosf(x);
    case U_FLOOR: return floorf(x);
    case U_CEIL: return ceilf(x);
    case U_ROUND: return nearbyintf(x);
    case U_SIGN: return x > 0 ? 1.0f : x < 0 ? -1.0f : x; /* NaN stays NaN */
    case U_ELU: return x < 0 ? s->alpha * expm1f(x) : x;
    case U_SELU: return s->gamma * (x <= 0 ? s->alpha * expm1f(x) : x);
    case U_CELU: return fmaxf(0.0f, x) + fminf(0.0f, s->alpha * expm1f(x / s->alpha));
    case U_LEAKY: return x < 0 ? s->alpha * x : x;
    default: return x > s->alpha ? x : 0.0f;
    }
}

/* f'(x) given x and y = f(x). */
static inline float un_df(const un_state *s, float x, float y)
{
    switch (s->kind) {
    case U_SQRT: return 0.5f / y;
    case U_EXP: return y;
    case U_LOG: return 1.0f / x;
    case U_NEG: return -1.0f;
    case U_ABS: return x > 0 ? 1.0f : x < 0 ? -1.0f : 0.0f;
    case U_RECIP: return -y * y;
    case U_ERF: return (float)(2.0 * INV_SQRT_2PI * sqrt(2.0) * exp(-(double)x * x));
    case U_GELU:
        if (s->tanh_approx) {
            double u = SQRT_2_PI * (x + 0.044715 * (double)x * x * x), t = tanh(u);
            return (float)(0.5 * (1 + t) + 0.5 * x * (1 - t * t) * SQRT_2_PI * (1 + 3 * 0.044715 * (double)x * x));
        }
        return (float)(0.5 * (1.0 + erf(x * SQRT1_2)) + x * INV_SQRT_2PI * exp(-0.5 * (double)x * x));
    case U_SOFTPLUS: return sigm(x);
    case U_SOFTSIGN: {
        float d = 1.0f + fabsf(x);
        return 1.0f / (d * d);
    }
    case U_MISH: {
        float t = tanhf(softplusf_(x));
        return t + x * sigm(x) * (1.0f - t * t);
    }
    case U_TANH: return 1.0f - y * y;
    case U_SIN: return cosf(x);
    case U_COS: return -sinf(x);
    case U_FLOOR: case U_CEIL: case U_ROUND: case U_SIGN: return 0.0f;
    case U_ELU: return x < 0 ? s->alpha * expf(x) : 1.0f;
    case U_SELU: return s->gamma * (x <= 0 ? s->alpha * expf(x) : 1.0f);
    case U_CELU: return x > 0 ? 1.0f : expf(x / s->alpha);
    case U_LEAKY: return x < 0 ? s->alpha : 1.0f;
    default: return x > s->alpha ? 1.0f : 0.0f;
    }
}

static qk_status un_init_kind(qk_node *n, int kind)
{
    if (n->n_in != 1 || n->in[0] < 0 || n->n_out != 1)
        return qk_error(QK_ERR_FORMAT, "needs 1 input and 1 output (has %d and %d)", n->n_in, n->n_out);
    un_state *s = qk_calloc(1, sizeof *s);
    if (!s)
        return qk_error(QK_ERR_NOMEM, "out of memory");
    n->state = s;
    s->kind = kind;
    float da = kind == U_LEAKY ? 0.01f : kind == U_SELU ? 1.67326319217681884765625f : 1.0f;
    s->alpha = qk_node_float(n, "alpha", da);
    s->gamma = qk_node_float(n, "gamma", 1.05070102214813232421875f);
    if (kind == U_GELU) {
        const char *ap = qk_node_string(n, "approximate", "none");
        if (strcmp(ap, "none") != 0 && strcmp(ap, "tanh") != 0)
            return qk_error(QK_ERR_ARG, "approximate must be \"none\" or \"tanh\", got \"%s\"", ap);
        s->tanh_approx = strcmp(ap, "tanh") == 0;
    }
    if (kind == U_CELU && s->alpha == 0)
        return qk_error(QK_ERR_ARG, "alpha must not be 0");
    return QK_OK;
}

static void un_destroy(qk_node *n)
{
    qk_free(n->state);
    n->state = NULL;
}

static qk_status un_infer(qk_graph *g, qk_node *n)
{
    const un_state *s = n->state;
    const qk_value *xv = qk_in(g, n, 0);
    int int_ok = s->kind == U_NEG || s->kind == U_ABS || s->kind == U_SIGN;
    if (xv->t.dtype != QK_F32 && !(int_ok && xv->t.dtype != QK_U8 && qk_lt_is_int(xv->t.dtype)))
        return qk_error(QK_ERR_UNSUPPORTED, "input '%s' has data type %s, not supported", xv->name,
                        qk_dtype_name(xv->t.dtype));
    qk_lt_same_shape(&qk_out(g, n, 0)->t, &xv->t);
    return QK_OK;
}

typedef struct un_job {
    const un_state *s;
    const float *x, *y, *dy;
    float *out;
} un_job;

static void un_fwd_range(void *c, int64_t lo, int64_t hi)
{
    const un_job *j = c;
    for (int64_t i = lo; i < hi; i++)
        j->out[i] = un_f(j->s, j->x[i]);
}

static void un_bwd_range(void *c, int64_t lo, int64_t hi)
{
    const un_job *j = c;
    for (int64_t i = lo; i < hi; i++)
        j->out[i] += j->dy[i] * un_df(j->s, j->x[i], j->y[i]);
}

static qk_status un_forward(qk_exec *x, qk_node *n)
{
    const un_state *s = n->state;
    const qk_tensor *a = &qk_in(x->g, n, 0)->t;
    qk_tensor *y = &qk_out(x->g, n, 0)->t;
    int64_t ne = qk_tensor_numel(a);
    if (a->dtype != QK_F32) { /* Neg, Abs, Sign on integers (wrapping like numpy) */
        for (int64_t i = 0; i < ne; i++) {
            int64_t v = qk_tensor_int_at(a, i);
            int64_t r = s->kind == U_NEG ? (int64_t)(0 - (uint64_t)v)
                        : s->kind == U_ABS ? (v < 0 ? (int64_t)(0 - (uint64_t)v) : v)
                                           : (v > 0) - (v < 0);
            switch (a->dtype) {
            case QK_I64: ((int64_t *)y->data)[i] = r; break;
            case QK_I32: ((int32_t *)y->data)[i] = (int32_t)r; break;
            default: ((int8_t *)y->data)[i] = (int8_t)r; break;
            }
        }
        return QK_OK;
    }
    un_job j = { s, qk_f32(a), NULL, NULL, qk_f32(y) };
    qk_lt_par(x->pool, ne, QK_LT_GRAIN / 4, un_fwd_range, &j);
    return QK_OK;
}

static qk_status un_backward(qk_exec *x, qk_node *n)
{
    qk_value *a = qk_in(x->g, n, 0), *y = qk_out(x->g, n, 0);
    if (!a->grad.data || !y->grad.data || a->t.dtype != QK_F32)
        return QK_OK;
    un_job j = { n->state, qk_f32(&a->t), qk_f32(&y->t), qk_f32(&y->grad), qk_f32(&a->grad) };
    qk_lt_par(x->pool, qk_tensor_numel(&a->t), QK_LT_GRAIN / 4, un_bwd_range, &j);
    return QK_OK;
}

#define UN_OP(NAME, TYPE, KIND)                                                                   \
    static qk_status NAME##_init(qk_graph *g, qk_node *n) { (void)g; return un_init_kind(n, KIND); } \
    const qk_op qk_op_##NAME = { TYPE, NAME##_init, un_infer, NULL, un_forward, un_backward, un_destroy, NULL };

UN_OP(sqrt, "Sqrt", U_SQRT)
UN_OP(exp, "Exp", U_EXP)
UN_OP(log, "Log", U_LOG)
UN_OP(neg, "Neg", U_NEG)
UN_OP(abs, "Abs", U_ABS)
UN_OP(reciprocal, "Reciprocal", U_RECIP)
UN_OP(erf, "Erf", U_ERF)
UN_OP(gelu, "Gelu", U_GELU)
UN_OP(softplus, "Softplus", U_SOFTPLUS)
UN_OP(softsign, "Softsign", U_SOFTSIGN)
UN_OP(mish, "Mish", U_MISH)
UN_OP(tanh, "Tanh", U_TANH)
UN_OP(sin, "Sin", U_SIN)
UN_OP(cos, "Cos", U_COS)
UN_OP(floor, "Floor", U_FLOOR)
UN_OP(ceil, "Ceil", U_CEIL)
UN_OP(round, "Round", U_ROUND)
UN_OP(sign, "Sign", U_SIGN)
UN_OP(elu, "Elu", U_ELU)
UN_OP(selu, "Selu", U_SELU)
UN_OP(celu, "Celu", U_CELU)
UN_OP(leakyrelu, "LeakyRelu", U_LEAKY)
UN_OP(thresholdedrelu, "ThresholdedRelu", U_THRESH)

/* ---- Pow ---- */
static qk_status pow_init(qk_graph *g, qk_node *n)
{
    (void)g;
    if (n->n_in != 2 || n->in[0] < 0 || n->in[1] < 0 || n->n_out != 1)
        return qk_error(QK_ERR_FORMAT, "needs 2 inputs and 1 output");
    return QK_OK;
}

static qk_status pow_infer(qk_graph *g, qk_node *n)
{
    const qk_tensor *t[2] = { &qk_in(g, n, 0)->t, &qk_in(g, n, 1)->t };
    for (int i = 0; i < 2; i++)
        if (t[i]->dtype != QK_F32 && !qk_lt_is_int(t[i]->dtype))
            return qk_error(QK_ERR_UNSUPPORTED, "input '%s' has data type %s, not supported", qk_in(g, n, i)->name,
                            qk_dtype_name(t[i]->dtype));
    int nd = 0;
    int64_t d[QK_MAX_DIMS];
    qk_status st = qk_bcast_shape(2, t, &nd, d);
    if (st == QK_OK)
        qk_tensor_set_shape(&qk_out(g, n, 0)->t, t[0]->dtype, nd, d);
    return st;
}

static qk_status pow_forward(qk_exec *x, qk_node *n)
{
    const qk_tensor *t[2] = { &qk_in(x->g, n, 0)->t, &qk_in(x->g, n, 1)->t };
    qk_tensor *y = &qk_out(x->g, n, 0)->t;
    qk_bcast b;
    qk_bcast_init(&b, y->ndim, y->dims, 2, t);
    int64_t off[QK_BC_MAX];
    if (y->dtype == QK_F32 && t[1]->dtype == QK_F32) {
        const float *a = qk_f32(t[0]), *e = qk_f32(t[1]);
        float *yy = qk_f32(y);
        for (int64_t i = 0; i < b.numel; i++) {
            qk_bcast_off(&b, i, off);
            float ev = e[off[1]];
            yy[i] = ev == 2.0f ? a[off[0]] * a[off[0]] : powf(a[off[0]], ev);
        }
        return QK_OK;
    }
    for (int64_t i = 0; i < b.numel; i++) {
        qk_bcast_off(&b, i, off);
        double r = pow(qk_elem_get(t[0], off[0]), qk_elem_get(t[1], off[1]));
        qk_elem_set(y, i, y->dtype == QK_F32 ? r : trunc(r));
    }
    return QK_OK;
}

static qk_status pow_backward(qk_exec *x, qk_node *n)
{
    qk_graph *g = x->g;
    qk_value *av = qk_in(g, n, 0), *ev = qk_in(g, n, 1), *yv = qk_out(g, n, 0);
    if (!yv->grad.data || yv->t.dtype != QK_F32 || ev->t.dtype != QK_F32)
        return QK_OK;
    const qk_tensor *t[2] = { &av->t, &ev->t };
    qk_bcast b;
    qk_bcast_init(&b, yv->t.ndim, yv->t.dims, 2, t);
    int64_t off[QK_BC_MAX];
    const float *a = qk_f32(&av->t), *e = qk_f32(&ev->t), *dy = qk_f32(&yv->grad), *y = qk_f32(&yv->t);
    float *da = av->grad.data ? qk_f32(&av->grad) : NULL, *de = ev->grad.data ? qk_f32(&ev->grad) : NULL;
    for (int64_t i = 0; i < b.numel; i++) {
        qk_bcast_off(&b, i, off);
        float av_ = a[off[0]], ev_ = e[off[1]];
        if (da)
            da[off[0]] += dy[i] * (ev_ == 2.0f ? 2.0f * av_ : ev_ * powf(av_, ev_ - 1.0f));
        if (de && av_ > 0)
            de[off[1]] += dy[i] * logf(av_) * y[i];
    }
    return QK_OK;
}

const qk_op qk_op_pow = { "Pow", pow_init, pow_infer, NULL, pow_forward, pow_backward, NULL, NULL };
