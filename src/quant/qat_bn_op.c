/* The operators of QAT BN-folding strategies 1-4 (domain ai.qkit; the
 * strategies: docs/ALGORITHMS.md section 6; qat_bn.c builds the graphs).
 * All float32; activations are [N, C, ...] with the channel on axis 1;
 * attribute eps (float, default 1e-5) is the BN's epsilon;
 * sd = sqrt(var + eps) per channel, computed in double.
 *
 *   QkBnFoldW(W, gamma, var) -> (Wf, var_used)
 *       Wf[.., c, ..] = W * gamma_c / sd_c over the channel axis `axis` (int
 *       attribute: 0 for Conv and Gemm transB = 1, 1 for Gemm transB = 0),
 *       in double and rounded once to float32: exactly what qk_fold_bn
 *       writes. var_used = var: the statistics the weights were folded with,
 *       for the nodes downstream and for its own backward (the running
 *       variance may be updated in place later in the same forward by
 *       QkBnStats).
 *   QkBnStats(y, mean, var [, after]) -> (mu, sigma2)
 *       training forward, attribute frozen = 0: the batch mean and biased
 *       variance of y per channel (over N and the spatial dims), and the
 *       running statistics `mean` / `var` (initializers) updated in place as
 *       BatchNormalization does (momentum attribute, ONNX's 0.9 =
 *       PyTorch's 0.1; the unbiased batch variance goes into `var`).
 *       Inference, or frozen = 1: mu = mean, sigma2 = var, nothing updated.
 *       `after` is never read: it orders the node after that value's producer.
 *   QkBnAffine(y, gamma, beta, mu, var, var_w [, b]) -> z
 *       z = y * sd_w / sd + beta + (b - mu) * gamma / sd   (b absent: 0),
 *       sd_w = sqrt(var_w + eps); the factor is exactly 1 when var_w == var.
 *       The bias term is computed in double and rounded once (qk_fold_bn's
 *       b_f); z = factor * y + bias in float32.
 *   QkBnUnscale(y, gamma, var [, b]) -> u
 *       u = y * sd / gamma + b  (PyTorch's conv_orig / scale_factor + bias).
 * Backward adds the exact derivatives of these formulas into every input
 * that has a gradient buffer (QkBnStats: mu and sigma2 back into y, in batch
 * mode only). Work is split into blocks of channels and every channel's sums
 * run in double in a fixed order, so 1 and N threads give identical bits. */
#include "qkit/ops.h"

#include <math.h>
#include <string.h>

#define BNQ_CBLOCK 4

typedef struct bnq_state {
    float eps, momentum;
    int axis, frozen;
    int64_t outer, C, inner; /* [outer, C, inner] view of input 0 */
    int batch;               /* QkBnStats: the last forward used batch statistics */
} bnq_state;

static qk_status bnq_init(qk_graph *g, qk_node *n, int nin_min, int nin_max, int nout)
{
    (void)g;
    if (n->n_in < nin_min || n->n_in > nin_max || n->n_out != nout)
        return qk_error(QK_ERR_FORMAT, "%s '%s' takes %d to %d inputs and %d outputs (has %d and %d)", n->op_type,
                        n->name, nin_min, nin_max, nout, n->n_in, n->n_out);
    for (int i = 0; i < nin_min; i++)
        if (n->in[i] < 0)
            return qk_error(QK_ERR_FORMAT, "%s '%s': input %d is missing", n->op_type, n->name, i);
    bnq_state *s = qk_calloc(1, sizeof *s);
    if (!s)
        return qk_error(QK_ERR_NOMEM, "%s '%s': out of memory", n->op_type, n->name);
    n->state = s;
    s->eps = qk_node_float(n, "eps", 1e-5f);
    s->momentum = qk_node_float(n, "momentum", 0.9f);
    s->axis = (int)qk_node_int(n, "axis", 1);
    s->frozen = (int)qk_node_int(n, "frozen", 0);
    if (!(s->eps > 0.0f))
        return qk_error(QK_ERR_ARG, "%s '%s': eps must be > 0 (got %g)", n->op_type, n->name, (double)s->eps);
    return QK_OK;
}

static qk_status foldw_init(qk_graph *g, qk_node *n) { return bnq_init(g, n, 3, 3, 2); }
static qk_status stats_init(qk_graph *g, qk_node *n) { return bnq_init(g, n, 3, 4, 2); }
static qk_status affine_init(qk_graph *g, qk_node *n) { return bnq_init(g, n, 6, 7, 1); }
static qk_status unscale_init(qk_graph *g, qk_node *n) { return bnq_init(g, n, 3, 4, 1); }

static void bnq_destroy(qk_node *n)
{
    qk_free(n->state);
    n->state = NULL;
}

/* Input 0 as [outer, C, inner] around axis; inputs first..last (those
 * present) must be float32 [C]. */
static qk_status bnq_layout(qk_graph *g, qk_node *n, int axis, int first, int last)
{
    bnq_state *s = n->state;
    const qk_tensor *x = &qk_in(g, n, 0)->t;
    if (x->dtype != QK_F32 || axis < 0 || x->ndim <= axis)
        return qk_error(QK_ERR_SHAPE, "%s '%s': input '%s' must be float32 of rank > %d", n->op_type, n->name,
                        qk_in(g, n, 0)->name, axis);
    s->C = x->dims[axis];
    s->outer = s->inner = 1;
    for (int d = 0; d < axis; d++)
        s->outer *= x->dims[d];
    for (int d = axis + 1; d < x->ndim; d++)
        s->inner *= x->dims[d];
    for (int i = first; i <= last && i < n->n_in; i++) {
        const qk_value *p = qk_in(g, n, i);
        if (p && (p->t.dtype != QK_F32 || qk_tensor_numel(&p->t) != s->C))
            return qk_error(QK_ERR_SHAPE, "%s '%s': input '%s' must be float32 with %lld values (one per channel)",
                            n->op_type, n->name, p->name, (long long)s->C);
    }
    return QK_OK;
}

static qk_status foldw_infer(qk_graph *g, qk_node *n)
{
    bnq_state *s = n->state;
    qk_status st = bnq_layout(g, n, s->axis, 1, 2);
    if (st != QK_OK)
        return st;
    const qk_tensor *w = &qk_in(g, n, 0)->t;
    qk_tensor_set_shape(&qk_out(g, n, 0)->t, QK_F32, w->ndim, w->dims);
    qk_tensor_set_shape(&qk_out(g, n, 1)->t, QK_F32, 1, &s->C);
    return QK_OK;
}

static qk_status stats_infer(qk_graph *g, qk_node *n)
{
    bnq_state *s = n->state;
    qk_status st = bnq_layout(g, n, 1, 1, 2);
    if (st != QK_OK)
        return st;
    qk_tensor_set_shape(&qk_out(g, n, 0)->t, QK_F32, 1, &s->C);
    qk_tensor_set_shape(&qk_out(g, n, 1)->t, QK_F32, 1, &s->C);
    return QK_OK;
}

static qk_status act_infer(qk_graph *g, qk_node *n)
{
    qk_status st = bnq_layout(g, n, 1, 1, n->n_in - 1);
    if (st != QK_OK)
        return st;
    const qk_tensor *y = &qk_in(g, n, 0)->t;
    qk_tensor_set_shape(&qk_out(g, n, 0)->t, QK_F32, y->ndim, y->dims);
    return QK_OK;
}

/* ---- the per-channel work ---- */

typedef struct bnq_ctx {
    const bnq_state *s;
    qk_graph *g;
    const qk_node *n;
    int backward;
} bnq_ctx;

static const float *in_f(const bnq_ctx *c, int i)
{
    const qk_value *v = qk_in(c->g, c->n, i);
    return v ? qk_f32(&v->t) : NULL;
}

/* The gradient buffer of input i, or NULL when it has none. */
static float *in_grad(const bnq_ctx *c, int i)
{
    qk_value *v = qk_in(c->g, c->n, i);
    return v && v->grad.data ? qk_f32(&v->grad) : NULL;
}

static void chan_range(const bnq_state *s, int64_t t, int64_t *c0, int64_t *c1)
{
    *c0 = t * BNQ_CBLOCK;
    *c1 = *c0 + BNQ_CBLOCK < s->C ? *c0 + BNQ_CBLOCK : s->C;
}

static void foldw_task(void *vc, int64_t t, int worker)
{
    (void)worker;
    const bnq_ctx *c = vc;
    const bnq_state *s = c->s;
    /* backward reads the variance the forward folded with (var_used): a
     * running variance may have been updated in place since */
    const float *W = in_f(c, 0), *ga = in_f(c, 1);
    const float *var = c->backward ? qk_f32(&qk_out(c->g, c->n, 1)->t) : in_f(c, 2);
    int64_t c0, c1;
    chan_range(s, t, &c0, &c1);
    for (int64_t ch = c0; ch < c1; ch++) {
        double sd = sqrt((double)var[ch] + (double)s->eps), k = (double)ga[ch] / sd;
        if (!c->backward) {
            float *Wf = qk_f32(&qk_out(c->g, c->n, 0)->t);
            for (int64_t o = 0; o < s->outer; o++)
                for (int64_t i = 0; i < s->inner; i++) {
                    int64_t e = (o * s->C + ch) * s->inner + i;
                    Wf[e] = (float)((double)W[e] * k);
                }
            qk_f32(&qk_out(c->g, c->n, 1)->t)[ch] = var[ch];
            continue;
        }
        qk_value *wf = qk_out(c->g, c->n, 0), *vu = qk_out(c->g, c->n, 1);
        const float *dWf = wf->grad.data ? qk_f32(&wf->grad) : NULL;
        float *dW = in_grad(c, 0), *dga = in_grad(c, 1), *dvar = in_grad(c, 2);
        double A = 0; /* sum dWf * W over the channel */
        for (int64_t o = 0; dWf && o < s->outer; o++)
            for (int64_t i = 0; i < s->inner; i++) {
                int64_t e = (o * s->C + ch) * s->inner + i;
                A += (double)dWf[e] * (double)W[e];
                if (dW)
                    dW[e] += (float)((double)dWf[e] * k);
            }
        if (dga)
            dga[ch] += (float)(A / sd);
        if (dvar) {
            double d = -0.5 * A * (double)ga[ch] / (sd * sd * sd);
            if (vu->grad.data)
                d += (double)qk_f32(&vu->grad)[ch];
            dvar[ch] += (float)d;
        }
    }
}

static void stats_task(void *vc, int64_t t, int worker)
{
    (void)worker;
    const bnq_ctx *c = vc;
    const bnq_state *s = c->s;
    const float *y = in_f(c, 0);
    const int64_t N = s->outer, C = s->C, S = s->inner, M = N * S;
    qk_value *mv = qk_out(c->g, c->n, 0), *vv = qk_out(c->g, c->n, 1);
    int64_t c0, c1;
    chan_range(s, t, &c0, &c1);
    for (int64_t ch = c0; ch < c1; ch++) {
        if (!c->backward) {
            /* two passes in double: the mean, then the squared deviations */
            double m = 0, v = 0;
            for (int64_t n = 0; n < N; n++)
                for (int64_t i = 0; i < S; i++)
                    m += (double)y[(n * C + ch) * S + i];
            m = M > 0 ? m / (double)M : 0.0;
            for (int64_t n = 0; n < N; n++)
                for (int64_t i = 0; i < S; i++) {
                    double d = (double)y[(n * C + ch) * S + i] - m;
                    v += d * d;
                }
            v = M > 0 ? v / (double)M : 0.0;
            qk_f32(&mv->t)[ch] = (float)m;
            qk_f32(&vv->t)[ch] = (float)v;
            continue;
        }
        float *dy = in_grad(c, 0);
        if (!dy || M == 0)
            continue;
        double dm = mv->grad.data ? (double)qk_f32(&mv->grad)[ch] : 0.0;
        double dv = vv->grad.data ? (double)qk_f32(&vv->grad)[ch] : 0.0;
        double mu = (double)qk_f32(&mv->t)[ch], a = dm / (double)M, b = 2.0 * dv / (double)M;
        for (int64_t n = 0; n < N; n++)
            for (int64_t i = 0; i < S; i++) {
                int64_t e = (n * C + ch) * S + i;
                dy[e] += (float)(a + b * ((double)y[e] - mu));
            }
    }
}

/* QkBnAffine's factor and bias of channel ch (see the top). */
static void affine_coef(const bnq_ctx *c, int64_t ch, double *sd, double *sw, float *fa, float *fb)
{
    const bnq_state *s = c->s;
    const float *ga = in_f(c, 1), *be = in_f(c, 2), *mu = in_f(c, 3), *var = in_f(c, 4), *vw = in_f(c, 5),
                *b = in_f(c, 6);
    *sd = sqrt((double)var[ch] + (double)s->eps);
    *sw = sqrt((double)vw[ch] + (double)s->eps);
    *fa = (float)(*sw / *sd);
    *fb = (float)((double)be[ch] + ((b ? (double)b[ch] : 0.0) - (double)mu[ch]) * ((double)ga[ch] / *sd));
}

static void affine_task(void *vc, int64_t t, int worker)
{
    (void)worker;
    const bnq_ctx *c = vc;
    const bnq_state *s = c->s;
    const float *y = in_f(c, 0), *ga = in_f(c, 1), *mu = in_f(c, 3), *b = in_f(c, 6);
    const int64_t N = s->outer, C = s->C, S = s->inner;
    qk_value *zv = qk_out(c->g, c->n, 0);
    int64_t c0, c1;
    chan_range(s, t, &c0, &c1);
    for (int64_t ch = c0; ch < c1; ch++) {
        double sd, sw;
        float fa, fb;
        affine_coef(c, ch, &sd, &sw, &fa, &fb);
        if (!c->backward) {
            float *z = qk_f32(&zv->t);
            for (int64_t n = 0; n < N; n++)
                for (int64_t i = 0; i < S; i++) {
                    int64_t e = (n * C + ch) * S + i;
                    z[e] = fa * y[e] + fb;
                }
            continue;
        }
        const float *dz = qk_f32(&zv->grad);
        float *dy = in_grad(c, 0);
        double G1 = 0, G2 = 0; /* sum dz, sum dz * y */
        for (int64_t n = 0; n < N; n++)
            for (int64_t i = 0; i < S; i++) {
                int64_t e = (n * C + ch) * S + i;
                G1 += (double)dz[e];
                G2 += (double)dz[e] * (double)y[e];
                if (dy)
                    dy[e] += fa * dz[e];
            }
        double bm = (b ? (double)b[ch] : 0.0) - (double)mu[ch], g = (double)ga[ch], sd3 = sd * sd * sd;
        float *d;
        if ((d = in_grad(c, 1)))
            d[ch] += (float)(G1 * bm / sd);
        if ((d = in_grad(c, 2)))
            d[ch] += (float)G1;
        if ((d = in_grad(c, 3)))
            d[ch] += (float)(-G1 * g / sd);
        if ((d = in_grad(c, 4)))
            d[ch] += (float)(-0.5 * (G2 * sw + G1 * bm * g) / sd3);
        if ((d = in_grad(c, 5)))
            d[ch] += (float)(0.5 * G2 / (sw * sd));
        if (b && (d = in_grad(c, 6)))
            d[ch] += (float)(G1 * g / sd);
    }
}

static void unscale_task(void *vc, int64_t t, int worker)
{
    (void)worker;
    const bnq_ctx *c = vc;
    const bnq_state *s = c->s;
    const float *y = in_f(c, 0), *ga = in_f(c, 1), *var = in_f(c, 2), *b = in_f(c, 3);
    const int64_t N = s->outer, C = s->C, S = s->inner;
    qk_value *uv = qk_out(c->g, c->n, 0);
    int64_t c0, c1;
    chan_range(s, t, &c0, &c1);
    for (int64_t ch = c0; ch < c1; ch++) {
        double sd = sqrt((double)var[ch] + (double)s->eps), g = (double)ga[ch];
        float r = (float)(sd / g), bb = b ? b[ch] : 0.0f;
        if (!c->backward) {
            float *u = qk_f32(&uv->t);
            for (int64_t n = 0; n < N; n++)
                for (int64_t i = 0; i < S; i++) {
                    int64_t e = (n * C + ch) * S + i;
                    u[e] = r * y[e] + bb;
                }
            continue;
        }
        const float *du = qk_f32(&uv->grad);
        float *dy = in_grad(c, 0), *d;
        double G1 = 0, G2 = 0;
        for (int64_t n = 0; n < N; n++)
            for (int64_t i = 0; i < S; i++) {
                int64_t e = (n * C + ch) * S + i;
                G1 += (double)du[e];
                G2 += (double)du[e] * (double)y[e];
                if (dy)
                    dy[e] += r * du[e];
            }
        if ((d = in_grad(c, 1)))
            d[ch] += (float)(-G2 * sd / (g * g));
        if ((d = in_grad(c, 2)))
            d[ch] += (float)(0.5 * G2 / (sd * g));
        if (b && (d = in_grad(c, 3)))
            d[ch] += (float)G1;
    }
}

static qk_status bnq_run(qk_exec *x, qk_node *n, qk_task_fn fn, int backward)
{
    bnq_ctx c = { .s = n->state, .g = x->g, .n = n, .backward = backward };
    if (backward && !qk_out(x->g, n, 0)->grad.data && (n->n_out < 2 || !qk_out(x->g, n, 1)->grad.data))
        return QK_OK;
    qk_pool_run(x->pool, (c.s->C + BNQ_CBLOCK - 1) / BNQ_CBLOCK, fn, &c);
    return QK_OK;
}

static qk_status foldw_forward(qk_exec *x, qk_node *n) { return bnq_run(x, n, foldw_task, 0); }
static qk_status foldw_backward(qk_exec *x, qk_node *n) { return bnq_run(x, n, foldw_task, 1); }
static qk_status affine_forward(qk_exec *x, qk_node *n) { return bnq_run(x, n, affine_task, 0); }
static qk_status affine_backward(qk_exec *x, qk_node *n) { return bnq_run(x, n, affine_task, 1); }
static qk_status unscale_forward(qk_exec *x, qk_node *n) { return bnq_run(x, n, unscale_task, 0); }
static qk_status unscale_backward(qk_exec *x, qk_node *n) { return bnq_run(x, n, unscale_task, 1); }

static qk_status stats_forward(qk_exec *x, qk_node *n)
{
    bnq_state *s = n->state;
    qk_graph *g = x->g;
    qk_value *rm = qk_in(g, n, 1), *rv = qk_in(g, n, 2);
    float *mu = qk_f32(&qk_out(g, n, 0)->t), *var = qk_f32(&qk_out(g, n, 1)->t);
    s->frozen = (int)qk_node_int(n, "frozen", 0); /* set during training (--freeze-bn) */
    s->batch = x->training && !s->frozen;
    if (!s->batch) {
        memcpy(mu, qk_f32(&rm->t), (size_t)s->C * sizeof *mu);
        memcpy(var, qk_f32(&rv->t), (size_t)s->C * sizeof *var);
        return QK_OK;
    }
    qk_status st = bnq_run(x, n, stats_task, 0);
    if (st != QK_OK || !qk_value_is_initializer(rm) || !qk_value_is_initializer(rv))
        return st;
    /* the running statistics, as BatchNormalization updates them */
    int64_t M = s->outer * s->inner;
    float mom = s->momentum, unb = M > 1 ? (float)M / (float)(M - 1) : 1.0f;
    float *pm = qk_f32(&rm->t), *pv = qk_f32(&rv->t);
    for (int64_t ch = 0; ch < s->C; ch++) {
        pm[ch] = mom * pm[ch] + (1.0f - mom) * mu[ch];
        pv[ch] = mom * pv[ch] + (1.0f - mom) * var[ch] * unb;
    }
    return QK_OK;
}

static qk_status stats_backward(qk_exec *x, qk_node *n)
{
    const bnq_state *s = n->state;
    return s->batch ? bnq_run(x, n, stats_task, 1) : QK_OK;
}

static qk_status noop_reshape(qk_graph *g, qk_node *n, int training, size_t *ws)
{
    (void)g;
    (void)n;
    (void)training;
    *ws = 0;
    return QK_OK;
}

const qk_op qk_op_bn_foldw = { "QkBnFoldW", foldw_init, foldw_infer, noop_reshape, foldw_forward, foldw_backward,
                               bnq_destroy, "ai.qkit" };
const qk_op qk_op_bn_stats = { "QkBnStats", stats_init, stats_infer, noop_reshape, stats_forward, stats_backward,
                               bnq_destroy, "ai.qkit" };
const qk_op qk_op_bn_affine = { "QkBnAffine", affine_init, act_infer, noop_reshape, affine_forward, affine_backward,
                                bnq_destroy, "ai.qkit" };
const qk_op qk_op_bn_unscale = { "QkBnUnscale", unscale_init, act_infer, noop_reshape, unscale_forward,
                                 unscale_backward, bnq_destroy, "ai.qkit" };
