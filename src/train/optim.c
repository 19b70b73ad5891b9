/* Optimizers (PyTorch 1.13 semantics, single-tensor code path) and
 * learning-rate schedules. See include/qkit/train.h for the formulas.
 *
 * Each parameter has its own qk_param_opts (lr multiplier, weight decay,
 * optimizer kind, frozen), so parameter groups are a per-value setting.
 * All state is allocated at qk_optim_create; a step allocates nothing.
 * Updates are elementwise in float (as PyTorch's CPU kernels), so the
 * result does not depend on threads. */
#include "train_internal.h"

#include <math.h>
#include <string.h>

static void param_defaults(const qk_optim *o, const qk_value *v, qk_param_opts *p)
{
    p->lr_mult = 1.0f;
    p->weight_decay = v->no_decay ? 0.0f : o->c.weight_decay;
    p->kind = (int)o->c.kind;
    p->frozen = 0;
}

qk_status qk_optim_create(qk_graph *g, const qk_optim_config *c, qk_optim **out)
{
    *out = NULL;
    if (c->kind != QK_OPTIM_SGD && c->kind != QK_OPTIM_ADAM)
        return qk_error(QK_ERR_ARG, "optimizer: unknown kind %d", (int)c->kind);
    if (!(c->momentum >= 0.0f && c->momentum < 1.0f) && c->kind == QK_OPTIM_SGD)
        return qk_error(QK_ERR_ARG, "optimizer: SGD momentum %g outside [0, 1)", (double)c->momentum);
    if (c->kind == QK_OPTIM_SGD && c->nesterov && c->momentum <= 0.0f)
        return qk_error(QK_ERR_ARG, "optimizer: nesterov needs momentum > 0");
    if (!(c->weight_decay >= 0.0f) || !isfinite(c->weight_decay))
        return qk_error(QK_ERR_ARG, "optimizer: weight decay %g must be >= 0", (double)c->weight_decay);
    if (c->kind == QK_OPTIM_ADAM &&
        !(c->beta1 >= 0.0f && c->beta1 < 1.0f && c->beta2 >= 0.0f && c->beta2 < 1.0f && c->eps > 0.0f))
        return qk_error(QK_ERR_ARG, "optimizer: Adam needs 0 <= beta1, beta2 < 1 and eps > 0 (got %g, %g, %g)",
                        (double)c->beta1, (double)c->beta2, (double)c->eps);
    qk_optim *o = qk_calloc(1, sizeof *o);
    if (!o)
        return qk_error(QK_ERR_NOMEM, "optimizer: out of memory");
    o->g = g;
    o->c = *c;
    int n = 0;
    for (int i = 0; i < g->n_values; i++)
        n += g->values[i].kind == QK_VALUE_PARAM;
    o->p = qk_calloc((size_t)(n ? n : 1), sizeof *o->p);
    if (!o->p) {
        qk_free(o);
        return qk_error(QK_ERR_NOMEM, "optimizer: out of memory");
    }
    for (int i = 0; i < g->n_values; i++) {
        qk_value *v = &g->values[i];
        if (v->kind != QK_VALUE_PARAM)
            continue;
        if (v->t.dtype != QK_F32) {
            qk_optim_destroy(o);
            return qk_error(QK_ERR_UNSUPPORTED, "optimizer: parameter '%s' is %s, only float32 is trainable",
                            v->name, qk_dtype_name(v->t.dtype));
        }
        qk_optim_param *p = &o->p[o->n++];
        p->value = i;
        p->n = qk_tensor_numel(&v->t);
        param_defaults(o, v, &p->o);
        p->buf = qk_aligned_alloc((size_t)(p->n ? p->n : 1) * sizeof(float));
        p->buf2 = qk_aligned_alloc((size_t)(p->n ? p->n : 1) * sizeof(float));
        if (!p->buf || !p->buf2) {
            qk_optim_destroy(o);
            return qk_error(QK_ERR_NOMEM, "optimizer: cannot allocate state for '%s'", v->name);
        }
    }
    *out = o;
    return QK_OK;
}

void qk_optim_destroy(qk_optim *o)
{
    if (!o)
        return;
    for (int i = 0; i < o->n; i++) {
        qk_aligned_free(o->p[i].buf);
        qk_aligned_free(o->p[i].buf2);
    }
    qk_free(o->p);
    qk_free(o);
}

static qk_optim_param *find_param(const qk_optim *o, int value)
{
    for (int i = 0; i < o->n; i++)
        if (o->p[i].value == value)
            return &o->p[i];
    return NULL;
}

qk_status qk_optim_set_param(qk_optim *o, int value, const qk_param_opts *p)
{
    qk_optim_param *q = find_param(o, value);
    if (!q)
        return qk_error(QK_ERR_NOTFOUND, "optimizer: value %d is not a tracked parameter", value);
    const char *name = o->g->values[value].name;
    if (p->kind != QK_OPTIM_SGD && p->kind != QK_OPTIM_ADAM)
        return qk_error(QK_ERR_ARG, "optimizer: parameter '%s': unknown optimizer kind %d", name, p->kind);
    if (!(p->lr_mult >= 0.0f) || !isfinite(p->lr_mult) || !(p->weight_decay >= 0.0f))
        return qk_error(QK_ERR_ARG, "optimizer: parameter '%s': lr multiplier %g / weight decay %g must be >= 0",
                        name, (double)p->lr_mult, (double)p->weight_decay);
    if (p->kind == QK_OPTIM_ADAM && o->c.kind != QK_OPTIM_ADAM &&
        !(o->c.beta1 >= 0.0f && o->c.beta1 < 1.0f && o->c.beta2 >= 0.0f && o->c.beta2 < 1.0f && o->c.eps > 0.0f))
        return qk_error(QK_ERR_ARG, "optimizer: parameter '%s' uses Adam but the config has no valid betas/eps",
                        name);
    q->o = *p;
    return QK_OK;
}

qk_status qk_optim_get_param(const qk_optim *o, int value, qk_param_opts *p)
{
    const qk_optim_param *q = find_param(o, value);
    if (!q)
        return qk_error(QK_ERR_NOTFOUND, "optimizer: value %d is not a tracked parameter", value);
    *p = q->o;
    return QK_OK;
}

int64_t qk_optim_step_count(const qk_optim *o)
{
    return o->steps;
}

void qk_optim_reset(qk_optim *o)
{
    for (int i = 0; i < o->n; i++) {
        memset(o->p[i].buf, 0, (size_t)o->p[i].n * sizeof(float));
        memset(o->p[i].buf2, 0, (size_t)o->p[i].n * sizeof(float));
        o->p[i].has_buf = 0;
        o->p[i].steps = 0;
    }
    o->steps = 0;
}

/* torch.optim.SGD, one parameter: d_p = g + wd*p; buf = g' (first) or
 * m*buf + g'; nesterov d = g' + m*buf else buf; p -= lr*d. */
static void sgd_update(float *w, const float *grad, qk_optim_param *q, float lr, float m, int nesterov)
{
    const float wd = q->o.weight_decay;
    float *buf = q->buf;
    const int64_t n = q->n;
    if (m == 0.0f) {
        for (int64_t i = 0; i < n; i++)
            w[i] -= lr * (grad[i] + wd * w[i]);
        return;
    }
    if (!q->has_buf) {
        for (int64_t i = 0; i < n; i++)
            buf[i] = grad[i] + wd * w[i];
        q->has_buf = 1;
    } else {
        for (int64_t i = 0; i < n; i++)
            buf[i] = m * buf[i] + (grad[i] + wd * w[i]);
    }
    if (nesterov)
        for (int64_t i = 0; i < n; i++)
            w[i] -= lr * ((grad[i] + wd * w[i]) + m * buf[i]);
    else
        for (int64_t i = 0; i < n; i++)
            w[i] -= lr * buf[i];
}

/* torch.optim.Adam (amsgrad False, maximize False), one parameter. */
static void adam_update(float *w, const float *grad, qk_optim_param *q, float lr, const qk_optim_config *c)
{
    const float wd = q->o.weight_decay, b1 = c->beta1, b2 = c->beta2, eps = c->eps;
    float *m = q->buf, *v = q->buf2;
    q->steps++;
    double bc1 = 1.0 - pow((double)b1, (double)q->steps);
    double bc2 = 1.0 - pow((double)b2, (double)q->steps);
    float step_size = (float)((double)lr / bc1);
    float bc2_sqrt = (float)sqrt(bc2);
    for (int64_t i = 0; i < q->n; i++) {
        float gi = grad[i] + wd * w[i];
        m[i] = m[i] * b1 + gi * (1.0f - b1);
        v[i] = v[i] * b2 + gi * gi * (1.0f - b2);
        float denom = sqrtf(v[i]) / bc2_sqrt + eps;
        w[i] -= step_size * (m[i] / denom);
    }
}

qk_status qk_optim_step(qk_optim *o, float lr)
{
    qk_graph *g = o->g;
    for (int i = 0; i < o->n; i++) {
        qk_optim_param *q = &o->p[i];
        if (q->o.frozen)
            continue;
        qk_value *v = &g->values[q->value];
        if (!v->grad.data)
            return qk_error(QK_ERR_STATE, "optimizer: parameter '%s' has no gradient (graph not planned for training?)",
                            v->name);
        float plr = lr * q->o.lr_mult;
        if (q->o.kind == QK_OPTIM_ADAM)
            adam_update(qk_f32(&v->t), qk_f32(&v->grad), q, plr, &o->c);
        else {
            sgd_update(qk_f32(&v->t), qk_f32(&v->grad), q, plr, o->c.momentum, o->c.nesterov);
            q->steps++;
        }
    }
    o->steps++;
    return QK_OK;
}

float qk_sched_lr(qk_sched_kind kind, float base_lr, int64_t warmup, int64_t step, int64_t total)
{
    if (warmup > 0 && step < warmup)
        return (float)((double)base_lr * (double)(step + 1) / (double)warmup);
    if (kind == QK_SCHED_CONSTANT)
        return base_lr;
    int64_t t = step - (warmup > 0 ? warmup : 0);
    int64_t T = total - (warmup > 0 ? warmup : 0);
    if (T <= 0)
        return base_lr;
    if (t >= T)
        return 0.0f;
    return (float)((double)base_lr * 0.5 * (1.0 + cos(M_PI * (double)t / (double)T)));
}
