/* LayerNormalization (opset 17) and InstanceNormalization (opset 6), float32,
 * forward and backward.
 *
 *   LayerNormalization(X, Scale[, B]; axis = -1, epsilon = 1e-5): every
 *     group of the trailing dims X.shape[axis:] (M elements) is normalized,
 *     y = (x - mean) * rstd * Scale + B, rstd = 1/sqrt(var + eps) (biased
 *     variance); Scale/B hold M elements (X.shape[axis:]) or one. Optional
 *     outputs Mean and InvStdDev: X's shape with dims from axis on set to 1.
 *   InstanceNormalization(X [N,C,...], scale [C], B [C]; epsilon = 1e-5):
 *     every (n, c) plane normalized, y = xhat * scale[c] + B[c].
 * Statistics in double, one group per task item (thread-count independent).
 * Backward recomputes the statistics; with xhat = (x - mean) * rstd and
 * g = dy * gamma: dx = rstd * (g - mean(g) - xhat * mean(g * xhat));
 * dScale += sum dy * xhat, dB += sum dy (serial, in double, fixed order). */
#include "light_util.h"

#include <math.h>

typedef struct norm_state {
    int inst;       /* InstanceNormalization */
    float eps;
    int64_t groups, m, chans; /* groups of m elements; chans = C (instance) */
    int64_t pm;     /* elements of Scale/B: m, 1 (layer) or C (instance) */
} norm_state;

static qk_status norm_init_kind(qk_node *n, int inst)
{
    if (n->n_in < 2 || n->n_in > 3 || n->in[0] < 0 || n->in[1] < 0 || n->n_out < 1 || n->n_out > 3 ||
        (inst && (n->n_in != 3 || n->in[2] < 0 || n->n_out != 1)))
        return qk_error(QK_ERR_FORMAT, "has %d inputs and %d outputs; expects X, scale%s", n->n_in, n->n_out,
                        inst ? ", B and one output" : " [, B] and 1..3 outputs");
    norm_state *s = qk_calloc(1, sizeof *s);
    if (!s)
        return qk_error(QK_ERR_NOMEM, "out of memory");
    n->state = s;
    s->inst = inst;
    s->eps = qk_node_float(n, "epsilon", 1e-5f);
    return QK_OK;
}

static qk_status ln_init(qk_graph *g, qk_node *n) { (void)g; return norm_init_kind(n, 0); }
static qk_status in_init(qk_graph *g, qk_node *n) { (void)g; return norm_init_kind(n, 1); }

static void norm_destroy(qk_node *n)
{
    qk_free(n->state);
    n->state = NULL;
}

static qk_status norm_infer(qk_graph *g, qk_node *n)
{
    norm_state *s = n->state;
    const qk_value *xv = qk_in(g, n, 0);
    const qk_tensor *x = &xv->t;
    if (x->dtype != QK_F32)
        return qk_error(QK_ERR_UNSUPPORTED, "input '%s' must be float32, got %s", xv->name, qk_dtype_name(x->dtype));
    int ax;
    if (s->inst) {
        if (x->ndim < 2)
            return qk_error(QK_ERR_SHAPE, "input '%s' must have rank >= 2", xv->name);
        ax = 2;
        s->chans = x->dims[1];
        s->pm = s->chans;
    } else {
        int64_t axis = qk_node_int(n, "axis", -1);
        ax = qk_lt_axis(axis, x->ndim, 0);
        if (ax < 0)
            return qk_error(QK_ERR_ARG, "axis %lld out of range for rank %d", (long long)axis, x->ndim);
    }
    s->m = qk_lt_prod(x->dims, ax, x->ndim);
    s->groups = qk_lt_prod(x->dims, 0, ax);
    if (!s->inst)
        s->pm = s->m;
    for (int i = 1; i < n->n_in; i++) {
        const qk_value *p = qk_in(g, n, i);
        if (!p)
            continue;
        int64_t ne = qk_tensor_numel(&p->t);
        if (p->t.dtype != QK_F32 || (ne != s->pm && (s->inst || ne != 1)))
            return qk_error(QK_ERR_SHAPE, "%s '%s' must be float32 with %lld elements, has %lld",
                            i == 1 ? "scale" : "bias", p->name, (long long)s->pm, (long long)ne);
    }
    qk_lt_same_shape(&qk_out(g, n, 0)->t, x);
    int64_t d[QK_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++)
        d[i] = i < ax ? x->dims[i] : 1;
    for (int k = 1; k < n->n_out; k++)
        if (qk_out(g, n, k))
            qk_tensor_set_shape(&qk_out(g, n, k)->t, QK_F32, x->ndim, d);
    return QK_OK;
}

typedef struct norm_job {
    const norm_state *s;
    const float *x, *sc, *b, *dy;
    float *y, *mean, *rstd, *dx;
    int64_t nsc, nb; /* elements of scale / bias */
} norm_job;

static void norm_stats(const norm_state *s, const float *x, double *mu, double *rs)
{
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < s->m; i++)
        sum += x[i];
    double m = s->m ? sum / (double)s->m : 0;
    for (int64_t i = 0; i < s->m; i++)
        sq += (x[i] - m) * (x[i] - m);
    *mu = m;
    *rs = 1.0 / sqrt((s->m ? sq / (double)s->m : 0) + s->eps);
}

/* Scale/bias element for position i of group gi. */
static inline float nparam(const norm_state *s, const float *p, int64_t np, int64_t gi, int64_t i, float dflt)
{
    if (!p)
        return dflt;
    if (s->inst)
        return p[gi % s->chans];
    return np == 1 ? p[0] : p[i];
}

static void norm_fwd_range(void *c, int64_t lo, int64_t hi)
{
    const norm_job *j = c;
    const norm_state *s = j->s;
    for (int64_t gi = lo; gi < hi; gi++) {
        const float *x = j->x + gi * s->m;
        float *y = j->y + gi * s->m;
        double mu, rs;
        norm_stats(s, x, &mu, &rs);
        for (int64_t i = 0; i < s->m; i++)
            y[i] = (float)((x[i] - mu) * rs) * nparam(s, j->sc, j->nsc, gi, i, 1.0f) +
                   nparam(s, j->b, j->nb, gi, i, 0.0f);
        if (j->mean)
            j->mean[gi] = (float)mu;
        if (j->rstd)
            j->rstd[gi] = (float)rs;
    }
}

static void norm_bwd_range(void *c, int64_t lo, int64_t hi)
{
    const norm_job *j = c;
    const norm_state *s = j->s;
    for (int64_t gi = lo; gi < hi; gi++) {
        const float *x = j->x + gi * s->m, *dy = j->dy + gi * s->m;
        float *dx = j->dx + gi * s->m;
        double mu, rs, sg = 0, sgx = 0;
        norm_stats(s, x, &mu, &rs);
        for (int64_t i = 0; i < s->m; i++) {
            double gg = (double)dy[i] * nparam(s, j->sc, j->nsc, gi, i, 1.0f), xh = (x[i] - mu) * rs;
            sg += gg;
            sgx += gg * xh;
        }
        sg /= (double)s->m;
        sgx /= (double)s->m;
        for (int64_t i = 0; i < s->m; i++) {
            double gg = (double)dy[i] * nparam(s, j->sc, j->nsc, gi, i, 1.0f), xh = (x[i] - mu) * rs;
            dx[i] += (float)(rs * (gg - sg - xh * sgx));
        }
    }
}

static int64_t norm_chunk(const norm_state *s)
{
    int64_t c = s->m ? QK_LT_GRAIN / 4 / s->m : 1;
    return c < 1 ? 1 : c;
}

static qk_status norm_forward(qk_exec *x, qk_node *n)
{
    const norm_state *s = n->state;
    qk_graph *g = x->g;
    const qk_value *sc = qk_in(g, n, 1), *b = qk_in(g, n, 2);
    qk_value *mo = qk_out(g, n, 1), *ro = qk_out(g, n, 2);
    norm_job j = { s, qk_f32(&qk_in(g, n, 0)->t), qk_f32(&sc->t), b ? qk_f32(&b->t) : NULL, NULL,
                   qk_f32(&qk_out(g, n, 0)->t), mo ? qk_f32(&mo->t) : NULL, ro ? qk_f32(&ro->t) : NULL, NULL,
                   qk_tensor_numel(&sc->t), b ? qk_tensor_numel(&b->t) : 0 };
    qk_lt_par(x->pool, s->groups, norm_chunk(s), norm_fwd_range, &j);
    return QK_OK;
}

static qk_status norm_backward(qk_exec *x, qk_node *n)
{
    const norm_state *s = n->state;
    qk_graph *g = x->g;
    qk_value *xv = qk_in(g, n, 0), *sc = qk_in(g, n, 1), *b = qk_in(g, n, 2), *yv = qk_out(g, n, 0);
    if (!yv->grad.data)
        return QK_OK;
    const float *X = qk_f32(&xv->t), *dy = qk_f32(&yv->grad);
    norm_job j = { s, X, qk_f32(&sc->t), b ? qk_f32(&b->t) : NULL, dy, NULL, NULL, NULL,
                   xv->grad.data ? qk_f32(&xv->grad) : NULL, qk_tensor_numel(&sc->t),
                   b ? qk_tensor_numel(&b->t) : 0 };
    if (j.dx)
        qk_lt_par(x->pool, s->groups, norm_chunk(s), norm_bwd_range, &j);
    float *dsc = sc->grad.data ? qk_f32(&sc->grad) : NULL, *db = b && b->grad.data ? qk_f32(&b->grad) : NULL;
    if (!dsc && !db)
        return QK_OK;
    int64_t nsc = qk_tensor_numel(&sc->t), nb = b ? qk_tensor_numel(&b->t) : 0;
    double *acc = qk_calloc((size_t)(nsc + nb), sizeof(double));
    if (!acc)
        return qk_error(QK_ERR_NOMEM, "out of memory");
    for (int64_t gi = 0; gi < s->groups; gi++) {
        double mu, rs;
        const float *xx = X + gi * s->m, *d = dy + gi * s->m;
        norm_stats(s, xx, &mu, &rs);
        for (int64_t i = 0; i < s->m; i++) {
            int64_t ks = s->inst ? gi % s->chans : nsc == 1 ? 0 : i;
            int64_t kb = s->inst ? gi % s->chans : nb == 1 ? 0 : i;
            acc[ks] += d[i] * (xx[i] - mu) * rs;
            if (nb)
                acc[nsc + kb] += d[i];
        }
    }
    for (int64_t i = 0; dsc && i < nsc; i++)
        dsc[i] += (float)acc[i];
    for (int64_t i = 0; db && i < nb; i++)
        db[i] += (float)acc[nsc + i];
    qk_free(acc);
    return QK_OK;
}

const qk_op qk_op_layernormalization = { "LayerNormalization", ln_init, norm_infer, NULL, norm_forward,
                                         norm_backward, norm_destroy, NULL };
const qk_op qk_op_instancenormalization = { "InstanceNormalization", in_init, norm_infer, NULL, norm_forward,
                                            norm_backward, norm_destroy, NULL };
