/* Softmax, LogSoftmax and the fused SoftmaxCrossEntropyLoss (float32).
 *
 * Softmax / LogSoftmax: opset >= 13 (g->opset) normalizes along `axis`
 * (default -1) only; opset < 13 coerces the input to 2-D at `axis` (default 1)
 * and normalizes over all dims from axis on, as ONNX specified then.
 * Computed as exp(x - max) / sum with the sum in double.
 * Backward: Softmax dx = y * (dy - sum(dy*y)); LogSoftmax dx = dy - softmax * sum(dy).
 *
 * SoftmaxCrossEntropyLoss (opset 12/13):
 *   inputs  scores [N,C] or [N,C,d1..dk] float32; labels [N] or [N,d1..dk]
 *           int64/int32 (no gradient); optional weights [C] float32.
 *   attrs   reduction "mean" (default) | "sum" | "none"; optional ignore_index.
 *   outputs loss: scalar for mean/sum, [N,d1..dk] for none; optional
 *           log_prob [N,C,d1..dk].
 *   loss_p = -w[l_p] * log_softmax(scores)_p[l_p] per position p (w = 1 without
 *   weights; 0 where l_p == ignore_index). mean = sum_p loss_p / sum_p w[l_p]
 *   (0/0 gives NaN, as the ONNX reference and PyTorch do); sums in double in a
 *   fixed order, so the loss is identical for any thread count. A label
 *   outside [0, C) that is not ignore_index is an error (QK_ERR_ARG).
 *   Backward: d scores = g_p * w[l_p] / D * (softmax - onehot(l_p)), with
 *   D = sum of weights for mean and 1 otherwise, g_p the loss gradient; plus
 *   the log_prob output's gradient through log_softmax when it has one.
 *   Plan-time buffers (reshape): log-sum-exp and the per-position loss. */
#include "light_util.h"

#include <math.h>
#include <stdlib.h>

/* ---- geometry of a softmax over one axis: lines of `len` elements
 * spaced `inner` apart; line i starts at (i / inner) * len * inner + i % inner. */
typedef struct sm_geo {
    int64_t outer, len, inner;
} sm_geo;

static qk_status sm_geometry(const qk_graph *g, const qk_node *n, const qk_tensor *x, sm_geo *s)
{
    int old = g->opset > 0 && g->opset < 13;
    int64_t axis = qk_node_int(n, "axis", old ? 1 : -1);
    int ax = qk_lt_axis(axis, x->ndim, 0);
    if (ax < 0 || x->ndim == 0)
        return qk_error(QK_ERR_ARG, "axis %lld out of range for rank %d", (long long)axis, x->ndim);
    s->outer = qk_lt_prod(x->dims, 0, ax);
    if (old) {
        s->len = qk_lt_prod(x->dims, ax, x->ndim);
        s->inner = 1;
    } else {
        s->len = x->dims[ax];
        s->inner = qk_lt_prod(x->dims, ax + 1, x->ndim);
    }
    return QK_OK;
}

typedef struct sm_job {
    sm_geo geo;
    int log, grad;
    const float *x, *y, *dy;
    float *out; /* y (forward) or dx (backward) */
} sm_job;

static void sm_range(void *c, int64_t lo, int64_t hi)
{
    const sm_job *j = c;
    int64_t len = j->geo.len, st = j->geo.inner;
    for (int64_t line = lo; line < hi; line++) {
        int64_t base = (line / st) * len * st + line % st;
        if (!j->grad) {
            const float *x = j->x + base;
            float *y = j->out + base;
            float mx = -INFINITY;
            for (int64_t k = 0; k < len; k++)
                mx = x[k * st] > mx ? x[k * st] : mx;
            double sum = 0;
            for (int64_t k = 0; k < len; k++)
                sum += expf(x[k * st] - mx);
            if (j->log) {
                float ls = (float)log(sum);
                for (int64_t k = 0; k < len; k++)
                    y[k * st] = (x[k * st] - mx) - ls;
            } else {
                float inv = (float)(1.0 / sum);
                for (int64_t k = 0; k < len; k++)
                    y[k * st] = expf(x[k * st] - mx) * inv;
            }
        } else {
            const float *y = j->y + base, *dy = j->dy + base;
            float *dx = j->out + base;
            double s = 0;
            if (j->log) {
                for (int64_t k = 0; k < len; k++)
                    s += dy[k * st];
                for (int64_t k = 0; k < len; k++)
                    dx[k * st] += dy[k * st] - expf(y[k * st]) * (float)s;
            } else {
                for (int64_t k = 0; k < len; k++)
                    s += (double)dy[k * st] * y[k * st];
                for (int64_t k = 0; k < len; k++)
                    dx[k * st] += y[k * st] * (dy[k * st] - (float)s);
            }
        }
    }
}

static qk_status sm_init(qk_graph *g, qk_node *n)
{
    (void)g;
    if (n->n_in != 1 || n->in[0] < 0 || n->n_out != 1)
        return qk_error(QK_ERR_FORMAT, "expects 1 input and 1 output");
    return QK_OK;
}

static qk_status sm_infer(qk_graph *g, qk_node *n)
{
    const qk_value *xv = qk_in(g, n, 0);
    if (xv->t.dtype != QK_F32)
        return qk_error(QK_ERR_UNSUPPORTED, "input '%s' has data type %s (float32 only)", xv->name,
                        qk_dtype_name(xv->t.dtype));
    sm_geo geo;
    qk_status st = sm_geometry(g, n, &xv->t, &geo);
    if (st != QK_OK)
        return st;
    qk_lt_same_shape(&qk_out(g, n, 0)->t, &xv->t);
    return QK_OK;
}

static qk_status softmax_run(qk_exec *ex, qk_node *n, int log, int grad)
{
    qk_graph *g = ex->g;
    qk_value *xv = qk_in(g, n, 0), *yv = qk_out(g, n, 0);
    if (grad && (!xv->grad.data || !yv->grad.data))
        return QK_OK;
    sm_job j;
    memset(&j, 0, sizeof j);
    qk_status st = sm_geometry(g, n, &xv->t, &j.geo);
    if (st != QK_OK)
        return st;
    j.log = log;
    j.grad = grad;
    j.x = qk_f32(&xv->t);
    j.y = qk_f32(&yv->t);
    j.dy = grad ? qk_f32(&yv->grad) : NULL;
    j.out = grad ? qk_f32(&xv->grad) : qk_f32(&yv->t);
    int64_t lines = j.geo.outer * j.geo.inner;
    int64_t chunk = j.geo.len > 0 ? QK_LT_GRAIN / j.geo.len : lines;
    qk_lt_par(ex->pool, lines, chunk < 1 ? 1 : chunk, sm_range, &j);
    return QK_OK;
}

static qk_status softmax_forward(qk_exec *x, qk_node *n) { return softmax_run(x, n, 0, 0); }
static qk_status softmax_backward(qk_exec *x, qk_node *n) { return softmax_run(x, n, 0, 1); }
static qk_status logsoftmax_forward(qk_exec *x, qk_node *n) { return softmax_run(x, n, 1, 0); }
static qk_status logsoftmax_backward(qk_exec *x, qk_node *n) { return softmax_run(x, n, 1, 1); }

/* ===================== SoftmaxCrossEntropyLoss ===================== */
enum { RED_MEAN, RED_SUM, RED_NONE };

typedef struct sce_state {
    int reduction;
    int has_ii;
    int64_t ignore_index;
    int64_t cap;   /* positions the buffers hold */
    double *lse;   /* log-sum-exp per position */
    double *loss;  /* weighted loss per position */
    double denom;  /* sum of weights (mean) from the last forward */
} sce_state;

static qk_status sce_init(qk_graph *g, qk_node *n)
{
    (void)g;
    if (n->n_in < 2 || n->n_in > 3 || n->in[0] < 0 || n->in[1] < 0 || n->n_out < 1 || n->n_out > 2)
        return qk_error(QK_ERR_FORMAT, "expects inputs (scores, labels[, weights]) and outputs (loss[, log_prob])");
    const char *r = qk_node_string(n, "reduction", "mean");
    int red;
    if (strcmp(r, "mean") == 0)
        red = RED_MEAN;
    else if (strcmp(r, "sum") == 0)
        red = RED_SUM;
    else if (strcmp(r, "none") == 0)
        red = RED_NONE;
    else
        return qk_error(QK_ERR_ARG, "reduction '%s' is not one of mean, sum, none", r);
    sce_state *s = qk_calloc(1, sizeof *s);
    if (!s)
        return qk_error(QK_ERR_NOMEM, "out of memory");
    s->reduction = red;
    s->has_ii = qk_node_attr(n, "ignore_index") != NULL;
    s->ignore_index = qk_node_int(n, "ignore_index", 0);
    n->state = s;
    return QK_OK;
}

static void sce_destroy(qk_node *n)
{
    sce_state *s = n->state;
    if (!s)
        return;
    qk_free(s->lse);
    qk_free(s->loss);
    qk_free(s);
    n->state = NULL;
}

static qk_status sce_infer(qk_graph *g, qk_node *n)
{
    const sce_state *s = n->state;
    const qk_value *xv = qk_in(g, n, 0), *lv = qk_in(g, n, 1), *wv = qk_in(g, n, 2);
    const qk_tensor *x = &xv->t, *l = &lv->t;
    char sx[128], sl[128];
    if (x->dtype != QK_F32)
        return qk_error(QK_ERR_UNSUPPORTED, "scores '%s' must be float32, got %s", xv->name, qk_dtype_name(x->dtype));
    if (l->dtype != QK_I64 && l->dtype != QK_I32)
        return qk_error(QK_ERR_FORMAT, "labels '%s' must be int64 or int32, got %s", lv->name,
                        qk_dtype_name(l->dtype));
    int ok = x->ndim >= 2 && l->ndim == x->ndim - 1 && l->dims[0] == x->dims[0];
    for (int i = 1; ok && i < l->ndim; i++)
        ok = l->dims[i] == x->dims[i + 1];
    if (!ok)
        return qk_error(QK_ERR_SHAPE, "scores %s and labels %s do not match ([N,C,d..] and [N,d..])",
                        qk_shape_str(x, sx, sizeof sx), qk_shape_str(l, sl, sizeof sl));
    if (wv && (wv->t.dtype != QK_F32 || wv->t.ndim != 1 || wv->t.dims[0] != x->dims[1]))
        return qk_error(QK_ERR_SHAPE, "weights '%s' must be float32 [%lld], got %s %s", wv->name,
                        (long long)x->dims[1], qk_dtype_name(wv->t.dtype), qk_shape_str(&wv->t, sl, sizeof sl));
    qk_tensor *y = &qk_out(g, n, 0)->t;
    if (s->reduction == RED_NONE)
        qk_tensor_set_shape(y, QK_F32, l->ndim, l->dims);
    else
        qk_tensor_set_shape(y, QK_F32, 0, NULL);
    qk_value *lp = qk_out(g, n, 1);
    if (lp)
        qk_lt_same_shape(&lp->t, x);
    return QK_OK;
}

static qk_status sce_reshape(qk_graph *g, qk_node *n, int training, size_t *ws)
{
    (void)training;
    (void)ws;
    sce_state *s = n->state;
    int64_t np = qk_tensor_numel(&qk_in(g, n, 1)->t);
    if (np > s->cap) {
        qk_free(s->lse);
        qk_free(s->loss);
        s->lse = qk_malloc((size_t)np * sizeof(double));
        s->loss = qk_malloc((size_t)np * sizeof(double));
        s->cap = 0;
        if (!s->lse || !s->loss)
            return qk_error(QK_ERR_NOMEM, "cannot allocate loss buffers for %lld positions", (long long)np);
        s->cap = np;
    }
    return QK_OK;
}

typedef struct sce_job {
    const sce_state *s;
    sce_state *sw;
    int64_t C, D; /* classes, positions per sample */
    const float *x, *w, *dloss, *dlp;
    const qk_tensor *labels;
    float *lp, *dx;
    double scale; /* backward: 1/denom (mean) or 1 */
} sce_job;

/* weight of position p's label (0 if ignored); *cls = label */
static inline float sce_weight(const sce_job *j, int64_t p, int64_t *cls)
{
    int64_t l = qk_tensor_int_at(j->labels, p);
    *cls = l;
    if (j->s->has_ii && l == j->s->ignore_index)
        return 0.0f;
    return j->w ? j->w[l] : 1.0f;
}

static void sce_fwd_range(void *c, int64_t lo, int64_t hi)
{
    const sce_job *j = c;
    int64_t C = j->C, D = j->D;
    for (int64_t p = lo; p < hi; p++) {
        int64_t nidx = p / D, d = p % D;
        const float *x = j->x + nidx * C * D + d;
        float mx = -INFINITY;
        for (int64_t k = 0; k < C; k++)
            mx = x[k * D] > mx ? x[k * D] : mx;
        double sum = 0;
        for (int64_t k = 0; k < C; k++)
            sum += exp((double)x[k * D] - mx);
        double lse = mx + log(sum);
        j->sw->lse[p] = lse;
        if (j->lp) {
            float *lp = j->lp + nidx * C * D + d;
            for (int64_t k = 0; k < C; k++)
                lp[k * D] = (float)(x[k * D] - lse);
        }
        int64_t l;
        float w = sce_weight(j, p, &l);
        j->sw->loss[p] = w == 0.0f ? 0.0 : -(double)w * ((double)x[l * D] - lse);
    }
}

static void sce_bwd_range(void *c, int64_t lo, int64_t hi)
{
    const sce_job *j = c;
    int64_t C = j->C, D = j->D;
    for (int64_t p = lo; p < hi; p++) {
        int64_t nidx = p / D, d = p % D, off = nidx * C * D + d;
        const float *x = j->x + off;
        float *dx = j->dx + off;
        double lse = j->s->lse[p];
        int64_t l;
        float w = sce_weight(j, p, &l);
        float g = 0.0f;
        if (j->dloss && w != 0.0f)
            g = (float)((double)(j->s->reduction == RED_NONE ? j->dloss[p] : j->dloss[0]) * w * j->scale);
        double sdl = 0;
        const float *dlp = j->dlp ? j->dlp + off : NULL;
        if (dlp)
            for (int64_t k = 0; k < C; k++)
                sdl += dlp[k * D];
        for (int64_t k = 0; k < C; k++) {
            float sm = (float)exp((double)x[k * D] - lse);
            float v = g * (sm - (k == l ? 1.0f : 0.0f));
            if (dlp)
                v += dlp[k * D] - sm * (float)sdl;
            dx[k * D] += v;
        }
    }
}

static void sce_job_init(sce_job *j, qk_graph *g, qk_node *n)
{
    const qk_tensor *x = &qk_in(g, n, 0)->t;
    const qk_value *wv = qk_in(g, n, 2);
    memset(j, 0, sizeof *j);
    j->s = j->sw = n->state;
    j->C = x->dims[1];
    j->D = qk_lt_prod(x->dims, 2, x->ndim);
    j->x = qk_f32(x);
    j->w = wv ? qk_f32(&wv->t) : NULL;
    j->labels = &qk_in(g, n, 1)->t;
}

static qk_status sce_forward(qk_exec *ex, qk_node *n)
{
    qk_graph *g = ex->g;
    sce_state *s = n->state;
    sce_job j;
    sce_job_init(&j, g, n);
    int64_t np = qk_tensor_numel(j.labels);
    if (np > s->cap)
        return qk_error(QK_ERR_STATE, "%lld positions but buffers for %lld (graph not planned?)", (long long)np,
                        (long long)s->cap);
    for (int64_t p = 0; p < np; p++) {
        int64_t l = qk_tensor_int_at(j.labels, p);
        if (s->has_ii && l == s->ignore_index)
            continue;
        if (l < 0 || l >= j.C)
            return qk_error(QK_ERR_ARG, "label %lld at position %lld is outside [0, %lld)", (long long)l,
                            (long long)p, (long long)j.C);
    }
    qk_value *lpv = qk_out(g, n, 1);
    j.lp = lpv ? qk_f32(&lpv->t) : NULL;
    int64_t chunk = QK_LT_GRAIN / (j.C > 0 ? j.C : 1);
    qk_lt_par(ex->pool, np, chunk < 1 ? 1 : chunk, sce_fwd_range, &j);
    float *y = qk_f32(&qk_out(g, n, 0)->t);
    if (s->reduction == RED_NONE) {
        for (int64_t p = 0; p < np; p++)
            y[p] = (float)s->loss[p];
        return QK_OK;
    }
    double sum = 0, den = 0;
    for (int64_t p = 0; p < np; p++) {
        int64_t l;
        sum += s->loss[p];
        den += sce_weight(&j, p, &l);
    }
    s->denom = den;
    y[0] = (float)(s->reduction == RED_MEAN ? sum / den : sum);
    return QK_OK;
}

static qk_status sce_backward(qk_exec *ex, qk_node *n)
{
    qk_graph *g = ex->g;
    sce_state *s = n->state;
    qk_value *xv = qk_in(g, n, 0), *yv = qk_out(g, n, 0), *lpv = qk_out(g, n, 1);
    if (!xv->grad.data)
        return QK_OK;
    sce_job j;
    sce_job_init(&j, g, n);
    j.dloss = yv->grad.data ? qk_f32(&yv->grad) : NULL;
    j.dlp = lpv && lpv->grad.data ? qk_f32(&lpv->grad) : NULL;
    j.dx = qk_f32(&xv->grad);
    j.scale = s->reduction == RED_MEAN ? (s->denom != 0 ? 1.0 / s->denom : 0.0) : 1.0;
    int64_t np = qk_tensor_numel(j.labels);
    int64_t chunk = QK_LT_GRAIN / (j.C > 0 ? j.C : 1);
    qk_lt_par(ex->pool, np, chunk < 1 ? 1 : chunk, sce_bwd_range, &j);
    return QK_OK;
}

const qk_op qk_op_softmax = { "Softmax", sm_init, sm_infer, NULL, softmax_forward, softmax_backward, NULL, NULL };
const qk_op qk_op_logsoftmax = { "LogSoftmax", sm_init, sm_infer, NULL, logsoftmax_forward, logsoftmax_backward,
                                 NULL, NULL };
const qk_op qk_op_sce = { "SoftmaxCrossEntropyLoss", sce_init, sce_infer, sce_reshape, sce_forward, sce_backward,
                          sce_destroy, NULL };
