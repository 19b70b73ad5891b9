/* Dropout with ONNX semantics (opset 7-13).
 *
 * inputs  data (float32); ratio (optional float32 scalar, opset 12+;
 *         before that the `ratio` attribute, default 0.5); training_mode
 *         (optional bool scalar, opset 12+; qkit reads bool as uint8).
 * outputs output; mask (optional, same shape; uint8 0/1 since qkit has no
 *         bool dtype — the same bytes as ONNX bool).
 *
 * Dropping happens only when the training_mode input is present and true
 * (as ONNX specifies): y = x * keep / (1 - ratio), keep ~ Bernoulli(1 - ratio).
 * Otherwise (inference, older opsets, ratio 0) y = x and the mask is all 1.
 * The executor's training flag (x->training) does not switch dropout on:
 * qkit's reference models have none, and a model exported by PyTorch in eval
 * mode keeps inference semantics while qkit fine-tunes it.
 *
 * Randomness: a fixed seed (the `seed` attribute, else 0) and a forward-call
 * counter; elements are drawn in chunks of QK_LT_GRAIN, each chunk from its
 * own xoshiro stream seeded from (seed, call, chunk), so masks are identical
 * for any thread count and reproducible run to run.
 * Backward: dx += dy * mask / (1 - ratio) with the mask of the last forward. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("vect-cost-model=cheap")
#endif
#include "light_util.h"

typedef struct dropout_state {
    uint64_t seed, calls;
    uint8_t *mask; /* internal mask when there is no mask output */
    int64_t cap;
    int active;    /* last forward dropped */
    float scale;
} dropout_state;

static qk_status dropout_init(qk_graph *g, qk_node *n)
{
    (void)g;
    if (n->n_in < 1 || n->n_in > 3 || n->in[0] < 0 || n->n_out < 1 || n->n_out > 2)
        return qk_error(QK_ERR_FORMAT, "expects inputs (data[, ratio[, training_mode]]) and outputs "
                                       "(output[, mask])");
    dropout_state *s = qk_calloc(1, sizeof *s);
    if (!s)
        return qk_error(QK_ERR_NOMEM, "out of memory");
    s->seed = (uint64_t)qk_node_int(n, "seed", 0);
    n->state = s;
    return QK_OK;
}

static void dropout_destroy(qk_node *n)
{
    dropout_state *s = n->state;
    if (s)
        qk_free(s->mask);
    qk_free(s);
    n->state = NULL;
}

static qk_status dropout_infer(qk_graph *g, qk_node *n)
{
    const qk_value *xv = qk_in(g, n, 0), *rv = qk_in(g, n, 1), *tv = qk_in(g, n, 2);
    const qk_tensor *a = &xv->t;
    if (a->dtype != QK_F32)
        return qk_error(QK_ERR_UNSUPPORTED, "data '%s' has data type %s (float32 only)", xv->name,
                        qk_dtype_name(a->dtype));
    if (rv && (rv->t.dtype != QK_F32 || qk_tensor_numel(&rv->t) != 1))
        return qk_error(QK_ERR_UNSUPPORTED, "ratio '%s' must be a float32 scalar", rv->name);
    if (tv && (!qk_lt_is_int(tv->t.dtype) || qk_tensor_numel(&tv->t) != 1))
        return qk_error(QK_ERR_UNSUPPORTED, "training_mode '%s' must be a bool scalar", tv->name);
    qk_lt_same_shape(&qk_out(g, n, 0)->t, a);
    qk_value *m = qk_out(g, n, 1);
    if (m)
        qk_tensor_set_shape(&m->t, QK_U8, a->ndim, a->dims);
    return QK_OK;
}

static qk_status dropout_reshape(qk_graph *g, qk_node *n, int training, size_t *ws)
{
    (void)training;
    (void)ws;
    dropout_state *s = n->state;
    int64_t ne = qk_tensor_numel(&qk_in(g, n, 0)->t);
    if (!qk_out(g, n, 1) && ne > s->cap) {
        qk_free(s->mask);
        s->cap = 0;
        s->mask = qk_malloc((size_t)(ne ? ne : 1));
        if (!s->mask)
            return qk_error(QK_ERR_NOMEM, "cannot allocate a %lld-element dropout mask", (long long)ne);
        s->cap = ne;
    }
    return QK_OK;
}

typedef struct drop_job {
    const dropout_state *s;
    int grad;
    float ratio;
    const float *x, *dy;
    float *out;
    uint8_t *mask;
} drop_job;

static void drop_range(void *c, int64_t lo, int64_t hi)
{
    const drop_job *j = c;
    const dropout_state *s = j->s;
    if (j->grad) {
        for (int64_t i = lo; i < hi; i++)
            j->out[i] += s->active ? (j->mask[i] ? j->dy[i] * s->scale : 0.0f) : j->dy[i];
        return;
    }
    if (!s->active) {
        for (int64_t i = lo; i < hi; i++) {
            j->out[i] = j->x[i];
            j->mask[i] = 1;
        }
        return;
    }
    /* One stream per QK_LT_GRAIN block, whatever range this call covers. */
    for (int64_t b0 = lo; b0 < hi;) {
        int64_t blk = b0 / QK_LT_GRAIN, b1 = (blk + 1) * QK_LT_GRAIN;
        b1 = b1 < hi ? b1 : hi;
        qk_rng r;
        qk_rng_seed(&r, s->seed * 0x9E3779B97F4A7C15ull ^ (s->calls << 24) ^ (uint64_t)blk);
        for (int64_t i = b0 - blk * QK_LT_GRAIN; i > 0; i--)
            qk_rng_u64(&r); /* (only when a range starts mid-block) */
        for (int64_t i = b0; i < b1; i++) {
            int keep = qk_rng_uniform(&r) >= j->ratio;
            j->mask[i] = (uint8_t)keep;
            j->out[i] = keep ? j->x[i] * s->scale : 0.0f;
        }
        b0 = b1;
    }
}

static qk_status dropout_forward(qk_exec *x, qk_node *n)
{
    qk_graph *g = x->g;
    dropout_state *s = n->state;
    const qk_value *rv = qk_in(g, n, 1), *tv = qk_in(g, n, 2);
    qk_value *mv = qk_out(g, n, 1);
    float ratio = rv ? qk_f32(&rv->t)[0] : qk_node_float(n, "ratio", 0.5f);
    int train = tv && qk_tensor_int_at(&tv->t, 0) != 0;
    if (train && (ratio < 0.0f || ratio > 1.0f))
        return qk_error(QK_ERR_ARG, "ratio %g is outside [0, 1]", (double)ratio);
    s->active = train && ratio > 0.0f;
    s->scale = s->active && ratio < 1.0f ? 1.0f / (1.0f - ratio) : 0.0f;
    drop_job j = { s, 0, ratio, qk_f32(&qk_in(g, n, 0)->t), NULL, qk_f32(&qk_out(g, n, 0)->t),
                   mv ? (uint8_t *)mv->t.data : s->mask };
    qk_lt_par(x->pool, qk_tensor_numel(&qk_in(g, n, 0)->t), QK_LT_GRAIN, drop_range, &j);
    s->calls++;
    return QK_OK;
}

static qk_status dropout_backward(qk_exec *x, qk_node *n)
{
    qk_graph *g = x->g;
    dropout_state *s = n->state;
    qk_value *xv = qk_in(g, n, 0), *yv = qk_out(g, n, 0), *mv = qk_out(g, n, 1);
    if (!xv->grad.data || !yv->grad.data)
        return QK_OK;
    drop_job j = { s, 1, 0, NULL, qk_f32(&yv->grad), qk_f32(&xv->grad), mv ? (uint8_t *)mv->t.data : s->mask };
    qk_lt_par(x->pool, qk_tensor_numel(&xv->t), QK_LT_GRAIN, drop_range, &j);
    return QK_OK;
}

const qk_op qk_op_dropout = { "Dropout", dropout_init, dropout_infer, dropout_reshape, dropout_forward,
                              dropout_backward, dropout_destroy, NULL };
