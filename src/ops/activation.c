/* Elementwise activations with ONNX semantics: Relu, Clip, HardSigmoid,
 * HardSwish, Sigmoid. Output shape = input shape, same dtype.
 *
 *   Relu (opset 14):  y = max(x, 0); float32, and int8/int32/int64 forward.
 *   Clip (opset 6 attributes min/max; opset 11+ optional inputs min, max,
 *         scalars of x's dtype; absent = -inf/+inf): y = min(max(x, min), max).
 *         float32 and int8/uint8/int32/int64 forward.
 *   HardSigmoid (opset 6): y = max(0, min(1, alpha*x + beta)), alpha 0.2, beta 0.5.
 *   HardSwish (opset 14): y = x * max(0, min(1, x/6 + 1/2)).
 *   Sigmoid (opset 13): y = 1 / (1 + exp(-x)), evaluated without overflow.
 *
 * Backward (float32 only) matches PyTorch's autograd:
 *   Relu: dx = dy where x > 0.
 *   Clip: dx = dy where min <= x <= max (torch.clamp); when min/max are
 *         inputs with gradients (e.g. a learnable clip), dmin += sum of dy
 *         where x < min and dmax += sum of dy where x > max (double sums).
 *   HardSigmoid: dx = alpha*dy where 0 < alpha*x + beta < 1.
 *   HardSwish: dx = 0 for x < -3, dy*(x/3 + 1/2) for -3 <= x <= 3, dy above.
 *   Sigmoid: dx = dy * y * (1 - y).
 * Loops are chunked over the pool by element count (QK_LT_GRAIN). */
/* gcc -O2 vectorizes only loops with no epilogue ("very cheap" model);
 * these memory-bound loops need the cheap model (clang vectorizes at -O2). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("vect-cost-model=cheap")
#endif
#include "fkern.h"
#include "fuse.h"
#include "fvec.h"
#include "light_util.h"

#include <float.h>
#include <math.h>

enum { ACT_RELU, ACT_CLIP, ACT_HSIG, ACT_HSWISH, ACT_SIGMOID };

typedef struct act_state {
    int kind;
    float alpha, beta;     /* HardSigmoid */
    float attr_lo, attr_hi; /* Clip opset 6 attributes (or +-FLT_MAX) */
    float lo, hi;          /* Clip bounds resolved by the last float forward */
    int fused;             /* Relu or Clip run by an op before it (fuse.h) */
} act_state;

static qk_status act_init_kind(qk_node *n, int kind)
{
    if (n->n_in < 1 || n->in[0] < 0 || n->n_out < 1)
        return qk_error(QK_ERR_FORMAT, "needs one input and one output");
    if (kind != ACT_CLIP && n->n_in > 1)
        return qk_error(QK_ERR_FORMAT, "takes 1 input, got %d", n->n_in);
    if (kind == ACT_CLIP && n->n_in > 3)
        return qk_error(QK_ERR_FORMAT, "takes at most 3 inputs (x, min, max), got %d", n->n_in);
    act_state *s = qk_calloc(1, sizeof *s);
    if (!s)
        return qk_error(QK_ERR_NOMEM, "out of memory");
    s->kind = kind;
    s->alpha = qk_node_float(n, "alpha", 0.2f);
    s->beta = qk_node_float(n, "beta", 0.5f);
    s->attr_lo = qk_node_float(n, "min", -FLT_MAX);
    s->attr_hi = qk_node_float(n, "max", FLT_MAX);
    n->state = s;
    return QK_OK;
}

static qk_status relu_init(qk_graph *g, qk_node *n) { (void)g; return act_init_kind(n, ACT_RELU); }
static qk_status clip_init(qk_graph *g, qk_node *n) { (void)g; return act_init_kind(n, ACT_CLIP); }
static qk_status hsig_init(qk_graph *g, qk_node *n) { (void)g; return act_init_kind(n, ACT_HSIG); }
static qk_status hswish_init(qk_graph *g, qk_node *n) { (void)g; return act_init_kind(n, ACT_HSWISH); }
static qk_status sigmoid_init(qk_graph *g, qk_node *n) { (void)g; return act_init_kind(n, ACT_SIGMOID); }

static void act_destroy(qk_node *n)
{
    qk_free(n->state);
    n->state = NULL;
}

static qk_status act_infer(qk_graph *g, qk_node *n)
{
    const act_state *s = n->state;
    const qk_tensor *x = &qk_in(g, n, 0)->t;
    int ok = x->dtype == QK_F32;
    if (s->kind == ACT_RELU)
        ok |= x->dtype == QK_I8 || x->dtype == QK_I32 || x->dtype == QK_I64;
    if (s->kind == ACT_CLIP)
        ok |= qk_lt_is_int(x->dtype);
    if (!ok)
        return qk_error(QK_ERR_UNSUPPORTED, "input '%s' has data type %s, not supported",
                        qk_in(g, n, 0)->name, qk_dtype_name(x->dtype));
    for (int i = 1; i < n->n_in; i++) {
        const qk_value *b = qk_in(g, n, i);
        if (!b)
            continue;
        if (b->t.dtype != x->dtype || qk_tensor_numel(&b->t) != 1)
            return qk_error(QK_ERR_SHAPE, "%s input '%s' must be a %s scalar (got %s, %lld elements)",
                            i == 1 ? "min" : "max", b->name, qk_dtype_name(x->dtype),
                            qk_dtype_name(b->t.dtype), (long long)qk_tensor_numel(&b->t));
    }
    qk_lt_same_shape(&qk_out(g, n, 0)->t, x);
    return QK_OK;
}

/* ---- float kernels ---- */
typedef struct act_job {
    const act_state *s;
    float lo, hi;
    const float *x, *y, *dy;
    float *out; /* y (forward) or dx (backward) */
    int write;  /* backward: dx = ... instead of dx += ... (fresh gradient) */
} act_job;

static inline float sigmoidf_(float x)
{
    if (x >= 0)
        return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

static void act_fwd_range(void *c, int64_t lo, int64_t hi)
{
    const act_job *j = c;
    const float *restrict x = j->x;
    float *restrict y = j->out;
    switch (j->s->kind) {
    case ACT_RELU:
        /* +0 where x < 0, x itself otherwise (-0 and NaN included) */
        qk_fk()->relu(y + lo, x + lo, hi - lo);
        break;
    case ACT_CLIP:
        qk_fk()->clip(y + lo, x + lo, j->lo, j->hi, hi - lo);
        break;
    case ACT_HSIG: {
        float al = j->s->alpha, be = j->s->beta;
        for (int64_t i = lo; i < hi; i++) {
            float v = al * x[i] + be;
            v = v < 0.0f ? 0.0f : v;
            y[i] = v > 1.0f ? 1.0f : v;
        }
        break;
    }
    case ACT_HSWISH:
        for (int64_t i = lo; i < hi; i++) {
            float v = x[i] * (1.0f / 6.0f) + 0.5f;
            v = v < 0.0f ? 0.0f : v;
            v = v > 1.0f ? 1.0f : v;
            y[i] = x[i] * v;
        }
        break;
    case ACT_SIGMOID:
        for (int64_t i = lo; i < hi; i++)
            y[i] = sigmoidf_(x[i]);
        break;
    }
}

static void act_bwd_range(void *c, int64_t lo, int64_t hi)
{
    const act_job *j = c;
    const float *restrict x = j->x, *restrict y = j->y, *restrict dy = j->dy;
    float *restrict dx = j->out;
    switch (j->s->kind) {
    case ACT_RELU:
        /* dy where x > 0, +0 elsewhere (NaN x included) */
        qk_fk()->relu_bwd(dx + lo, dy + lo, x + lo, hi - lo, j->write);
        break;
    case ACT_CLIP:
        qk_fk()->clip_bwd(dx + lo, dy + lo, x + lo, j->lo, j->hi, hi - lo, j->write);
        break;
    case ACT_HSIG: {
        float al = j->s->alpha, be = j->s->beta;
        for (int64_t i = lo; i < hi; i++) {
            float v = al * x[i] + be;
            dx[i] += (v > 0.0f && v < 1.0f) ? al * dy[i] : 0.0f;
        }
        break;
    }
    case ACT_HSWISH:
        for (int64_t i = lo; i < hi; i++) {
            float v = x[i];
            dx[i] += v < -3.0f ? 0.0f : v <= 3.0f ? dy[i] * (v * (1.0f / 3.0f) + 0.5f) : dy[i];
        }
        break;
    case ACT_SIGMOID:
        for (int64_t i = lo; i < hi; i++)
            dx[i] += dy[i] * y[i] * (1.0f - y[i]);
        break;
    }
}

/* ---- integer forward (Relu int8/int32/int64, Clip int*) ---- */
#define ACT_INT_CLIP(T, X, Y, N, LO, HI)                         \
    do {                                                         \
        const T *xx_ = (const T *)(X);                           \
        T *yy_ = (T *)(Y);                                       \
        for (int64_t i_ = 0; i_ < (N); i_++) {                   \
            int64_t v_ = xx_[i_];                                \
            v_ = v_ < (LO) ? (LO) : v_;                          \
            yy_[i_] = (T)(v_ > (HI) ? (HI) : v_);                \
        }                                                        \
    } while (0)

static void act_int_forward(qk_graph *g, const qk_node *n, const act_state *s)
{
    const qk_tensor *x = &qk_in(g, n, 0)->t;
    qk_tensor *y = &qk_out(g, n, 0)->t;
    int64_t cnt = qk_tensor_numel(x);
    int64_t lo = INT64_MIN, hi = INT64_MAX;
    if (s->kind == ACT_RELU) {
        lo = 0;
    } else {
        const qk_value *a = qk_in(g, n, 1), *b = qk_in(g, n, 2);
        if (a)
            lo = qk_tensor_int_at(&a->t, 0);
        if (b)
            hi = qk_tensor_int_at(&b->t, 0);
    }
    switch (x->dtype) {
    case QK_I8: ACT_INT_CLIP(int8_t, x->data, y->data, cnt, lo, hi); break;
    case QK_U8: ACT_INT_CLIP(uint8_t, x->data, y->data, cnt, lo, hi); break;
    case QK_I32: ACT_INT_CLIP(int32_t, x->data, y->data, cnt, lo, hi); break;
    case QK_I64: ACT_INT_CLIP(int64_t, x->data, y->data, cnt, lo, hi); break;
    default: break;
    }
}

static void clip_bounds(qk_graph *g, const qk_node *n, const act_state *s, float *lo, float *hi)
{
    const qk_value *a = qk_in(g, n, 1), *b = qk_in(g, n, 2);
    *lo = a ? qk_f32(&a->t)[0] : s->attr_lo;
    *hi = b ? qk_f32(&b->t)[0] : s->attr_hi;
}

/* Relu, Clip: run by the op that produces the input (fuse.h)? */
static qk_status fusable_reshape(qk_graph *g, qk_node *n, int training, size_t *ws_bytes)
{
    act_state *s = n->state;
    *ws_bytes = 0;
    s->fused = 0;
    int p = qk_producer(g, n->in[0]);
    qk_fused_act act;
    s->fused = (p >= 0 && qk_act_fused(g, &g->nodes[p], training, &act) == (int)(n - g->nodes)) ||
               qk_dq_gap_runner(g, n, training) >= 0;
    return QK_OK;
}

static qk_status act_forward(qk_exec *ex, qk_node *n)
{
    qk_graph *g = ex->g;
    act_state *s = n->state;
    if (s->fused)
        return QK_OK; /* the producer wrote our output */
    const qk_tensor *x = &qk_in(g, n, 0)->t;
    qk_tensor *y = &qk_out(g, n, 0)->t;
    if (x->dtype != QK_F32) {
        act_int_forward(g, n, s);
        return QK_OK;
    }
    act_job j = { s, 0, 0, qk_f32(x), NULL, NULL, qk_f32(y), 0 };
    if (s->kind == ACT_CLIP) {
        clip_bounds(g, n, s, &s->lo, &s->hi);
        j.lo = s->lo;
        j.hi = s->hi;
    }
    qk_lt_par(ex->pool, qk_tensor_numel(x), QK_LT_GRAIN, act_fwd_range, &j);
    return QK_OK;
}

static qk_status act_backward(qk_exec *ex, qk_node *n)
{
    qk_graph *g = ex->g;
    act_state *s = n->state;
    qk_value *xv = qk_in(g, n, 0), *yv = qk_out(g, n, 0);
    if (s->fused) {
        /* the producer applies our mask itself: its output's gradient is
         * never read, so leave it as written */
        if (xv->grad.data)
            xv->grad_zeroed = 1;
        return QK_OK;
    }
    if (xv->t.dtype != QK_F32)
        return qk_error(QK_ERR_UNSUPPORTED, "backward needs float32 data, got %s", qk_dtype_name(xv->t.dtype));
    if (!yv->grad.data)
        return QK_OK;
    int64_t cnt = qk_tensor_numel(&xv->t);
    float lo = 0, hi = 0;
    if (s->kind == ACT_CLIP)
        clip_bounds(g, n, s, &lo, &hi);
    if (xv->grad.data) {
        /* the executor hands Relu a fresh (uncleared) dx when nothing has
         * written it yet: grad_zeroed == 2 (see exec.c) */
        int write = xv->grad_zeroed == 2 && (s->kind == ACT_RELU || s->kind == ACT_CLIP);
        act_job j = { s, lo, hi, qk_f32(&xv->t), qk_f32(&yv->t), qk_f32(&yv->grad), qk_f32(&xv->grad), write };
        qk_lt_par(ex->pool, cnt, QK_LT_GRAIN, act_bwd_range, &j);
        if (write)
            xv->grad_zeroed = 1;
    }
    if (s->kind == ACT_CLIP) {
        /* Gradients of learnable bounds: serial double sums (deterministic). */
        qk_value *a = qk_in(g, n, 1), *b = qk_in(g, n, 2);
        const float *xd = qk_f32(&xv->t), *dy = qk_f32(&yv->grad);
        if (a && a->grad.data) {
            double sum = 0;
            for (int64_t i = 0; i < cnt; i++)
                if (xd[i] < lo)
                    sum += dy[i];
            qk_f32(&a->grad)[0] += (float)sum;
        }
        if (b && b->grad.data) {
            double sum = 0;
            for (int64_t i = 0; i < cnt; i++)
                if (xd[i] > hi && !(xd[i] < lo))
                    sum += dy[i];
            qk_f32(&b->grad)[0] += (float)sum;
        }
    }
    return QK_OK;
}

#define ACT_OP(NAME, TYPE, INIT) \
    const qk_op NAME = { TYPE, INIT, act_infer, NULL, act_forward, act_backward, act_destroy, NULL }

const qk_op qk_op_relu = { "Relu", relu_init, act_infer, fusable_reshape, act_forward, act_backward, act_destroy, NULL };
const qk_op qk_op_clip = { "Clip", clip_init, act_infer, fusable_reshape, act_forward, act_backward, act_destroy, NULL };
ACT_OP(qk_op_hardsigmoid, "HardSigmoid", hsig_init);
ACT_OP(qk_op_hardswish, "HardSwish", hswish_init);
ACT_OP(qk_op_sigmoid, "Sigmoid", sigmoid_init);
