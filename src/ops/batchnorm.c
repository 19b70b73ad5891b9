/* BatchNormalization (ONNX opset 9-15), forward and backward.
 *
 *   X [N, C, ...], scale/B/mean/var [C] -> Y [N, C, ...]
 *   [, running_mean [C], running_var [C]]   (opset 14+ training_mode outputs)
 *
 * Statistics mode:
 *   eval  (x->training == 0 and training_mode attr 0):
 *         y = scale * (x - mean) / sqrt(var + eps) + B with the input stats.
 *   batch (x->training == 1, or attribute training_mode = 1):
 *         per-channel mean and biased variance over N and the spatial dims;
 *         y normalized with them (PyTorch / ONNX).
 *         - optional outputs 1, 2 (ONNX): running = momentum*input +
 *           (1-momentum)*batch, with the biased batch variance (ONNX
 *           reference implementation);
 *         - when x->training and mean/var are initializers (CONST/PARAM),
 *           they are updated IN PLACE PyTorch-style: running = momentum *
 *           running + (1 - momentum) * batch, with the UNBIASED variance
 *           (ONNX momentum 0.9 = PyTorch momentum 0.1).
 * Frozen (attribute qkit_frozen = 1, set by QAT's --freeze-bn on BN it keeps
 * in float and removed before the model is written): eval mode even in
 * training, the running statistics left alone.
 * Backward ADDS dX, dScale, dB. In batch mode the statistics' dependence on
 * x is included (standard batch-norm backward); in eval mode y is affine in
 * x. The gradient does not flow into mean/var.
 * Work is split by channel (one task per channel block): each channel's sums
 * run in a fixed order, so results are identical for any thread count. */
#include "qkit/ops.h"

#include "fkern.h"
#include "fuse.h"
#include "fvec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BN_CBLOCK 4 /* channels per task */

/* A channel's rows are S floats, C*S apart: each row's pass asks for the
 * row two samples ahead (qk_prefetch_floats). */

typedef struct bn_state {
    float eps, momentum;
    int training_mode;
    int64_t N, C, S; /* S: spatial size */
    int batch_stats; /* mode of the last forward */
    int64_t cap;
    float *mean, *invstd, *bvar; /* [C] each: saved by forward (bvar: biased batch var) */
    qk_fused_act act;            /* fuse.h: the Relu or Clip run here (act.node -1: none) */
    int stats_conv;              /* fuse.h: the Conv computing our row moments, or -1 */
    int folded;                  /* fuse.h: applied by the Conv before us (inference) */
    int64_t rows_cap;
    double *rows;                /* [N][C][3] row moments (qk_row_moments) when computed here */
} bn_state;


static qk_status bn_init(qk_graph *g, qk_node *n)
{
    (void)g;
    if (n->n_in != 5 || n->n_out < 1 || n->n_out > 3)
        return qk_error(QK_ERR_ARG,
                        "BatchNormalization: expects 5 inputs (X, scale, B, mean, var) and 1 or 3 outputs, got %d and %d%s",
                        n->n_in, n->n_out,
                        n->n_out > 3 ? " (saved_mean/saved_var outputs of opset < 14 are not supported)" : "");
    for (int i = 0; i < 5; i++)
        if (n->in[i] < 0)
            return qk_error(QK_ERR_ARG, "BatchNormalization: input %d is missing", i);
    bn_state *s = qk_calloc(1, sizeof *s);
    if (!s)
        return qk_error(QK_ERR_NOMEM, "BatchNormalization: out of memory");
    n->state = s;
    s->act.node = s->act.out = -1;
    s->stats_conv = -1;
    s->eps = qk_node_float(n, "epsilon", 1e-5f);
    s->momentum = qk_node_float(n, "momentum", 0.9f);
    s->training_mode = (int)qk_node_int(n, "training_mode", 0);
    if (!(s->eps > 0.0f))
        return qk_error(QK_ERR_ARG, "BatchNormalization: epsilon must be > 0 (got %g)", (double)s->eps);
    if (qk_node_attr(n, "spatial") && qk_node_int(n, "spatial", 1) != 1)
        return qk_error(QK_ERR_UNSUPPORTED, "BatchNormalization: spatial=0 (opset < 9) is not supported");
    return QK_OK;
}

static void bn_destroy(qk_node *n)
{
    bn_state *s = n->state;
    if (s) {
        qk_aligned_free(s->mean);
        qk_free(s->rows);
    }
    qk_free(s);
    n->state = NULL;
}

static qk_status bn_infer(qk_graph *g, qk_node *n)
{
    bn_state *s = n->state;
    const qk_tensor *x = &qk_in(g, n, 0)->t;
    char b1[96], b2[96];
    if (x->dtype != QK_F32)
        return qk_error(QK_ERR_UNSUPPORTED, "BatchNormalization: only float32 is supported (X is %s)",
                        qk_dtype_name(x->dtype));
    if (x->ndim < 2)
        return qk_error(QK_ERR_SHAPE, "BatchNormalization: input %s must have rank >= 2",
                        qk_shape_str(x, b1, sizeof b1));
    int64_t C = x->dims[1];
    static const char *const names[] = { "", "scale", "B", "mean", "var" };
    for (int i = 1; i < 5; i++) {
        const qk_tensor *p = &qk_in(g, n, i)->t;
        if (p->dtype != QK_F32 || p->ndim != 1 || p->dims[0] != C)
            return qk_error(QK_ERR_SHAPE, "BatchNormalization: %s %s must be float32 [%lld] (input %s)", names[i],
                            qk_shape_str(p, b2, sizeof b2), (long long)C, qk_shape_str(x, b1, sizeof b1));
    }
    s->N = x->dims[0];
    s->C = C;
    s->S = 1;
    for (int i = 2; i < x->ndim; i++)
        s->S *= x->dims[i];
    qk_tensor_set_shape(&qk_out(g, n, 0)->t, QK_F32, x->ndim, x->dims);
    for (int k = 1; k < n->n_out; k++)
        if (n->out[k] >= 0)
            qk_tensor_set_shape(&qk_out(g, n, k)->t, QK_F32, 1, &C);
    return QK_OK;
}

static qk_status bn_reshape(qk_graph *g, qk_node *n, int training, size_t *ws_bytes)
{
    bn_state *s = n->state;
    qk_act_fused(g, n, training, &s->act);
    int p = qk_producer(g, n->in[0]);
    s->stats_conv = p >= 0 && qk_conv_bn_fused(g, &g->nodes[p], training) == (int)(n - g->nodes) ? p : -1;
    s->folded = p >= 0 && qk_conv_bn_folded(g, &g->nodes[p], training) == (int)(n - g->nodes);
    *ws_bytes = 0;
    if (s->stats_conv < 0 && s->N * s->C > s->rows_cap) {
        qk_free(s->rows);
        s->rows = qk_calloc((size_t)(s->N * s->C * 3), sizeof(double));
        if (!s->rows)
            return qk_error(QK_ERR_NOMEM, "BatchNormalization: out of memory");
        s->rows_cap = s->N * s->C;
    }
    if (s->mean && s->cap >= s->C)
        return QK_OK;
    qk_aligned_free(s->mean);
    s->mean = qk_aligned_alloc((size_t)(3 * s->C + 1) * sizeof(float));
    if (!s->mean)
        return qk_error(QK_ERR_NOMEM, "BatchNormalization: out of memory");
    s->invstd = s->mean + s->C;
    s->bvar = s->mean + 2 * s->C;
    s->cap = s->C;
    return QK_OK;
}

typedef struct bn_ctx {
    bn_state *s;
    const float *X, *scale, *B, *rmean, *rvar, *dY;
    const float *Z; /* a fused Relu or Clip: its output (non-NULL marks one; masks come from X) */
    int clip;       /* fused Clip: bounds lo, hi (backward mask from x) */
    float lo, hi;
    const double *rows; /* forward, batch statistics: row moments from the Conv, or NULL (computed here) */
    float *Y, *dX, *dScale, *dB;
    int batch;
    int write_dx; /* backward: dX is fresh (uncleared), write instead of add */
} bn_ctx;

static void bn_fwd_task(void *vc, int64_t t, int worker)
{
    (void)worker;
    const bn_ctx *c = vc;
    bn_state *s = c->s;
    const int64_t N = s->N, C = s->C, S = s->S;
    int64_t c0 = t * BN_CBLOCK, c1 = c0 + BN_CBLOCK < C ? c0 + BN_CBLOCK : C;
    const qk_fkern *fk = qk_fk();
    for (int64_t ch = c0; ch < c1; ch++) {
        float mean, var;
        if (c->batch) {
            /* rows (sample, ch) of S values: each row's moments about its
             * first value, combined in sample order (Chan et al.): mean of
             * the row means, M2 = sum of row M2 + S * sum (row mean - mean)^2 */
            const double *rows = c->rows;
            if (!rows) {
                for (int64_t n = 0; n < N; n++)
                    qk_row_moments(c->X + (n * C + ch) * S, S, s->rows + (n * C + ch) * 3);
                rows = s->rows;
            }
            double m = 0, m2 = 0;
            if (N > 0 && S > 0) {
                for (int64_t n = 0; n < N; n++) {
                    const double *r = rows + (n * C + ch) * 3;
                    m += r[0] + r[1] / (double)S;
                }
                m /= (double)N;
                for (int64_t n = 0; n < N; n++) {
                    const double *r = rows + (n * C + ch) * 3;
                    double rm = r[0] + r[1] / (double)S, d = rm - m;
                    m2 += (r[2] - r[1] * r[1] / (double)S) + (double)S * d * d;
                }
            }
            double v = N * S > 0 ? m2 / (double)(N * S) : 0.0;
            mean = (float)m;
            var = (float)(v > 0 ? v : 0.0);
        } else {
            mean = c->rmean[ch];
            var = c->rvar[ch];
        }
        float inv = 1.0f / sqrtf(var + s->eps);
        s->mean[ch] = mean;
        s->invstd[ch] = inv;
        s->bvar[ch] = var;
        float a = c->scale[ch] * inv, b = c->B[ch] - mean * a;
        const float ab[4] = { a, b, c->lo, c->hi };
        for (int64_t n = 0; n < N; n++) {
            float *y = c->Y + (n * C + ch) * S;
            const float *x = c->X + (n * C + ch) * S;
            if (n + 2 < N)
                qk_prefetch_floats(x + 2 * C * S, S);
            if (c->clip)
                fk->affine_clip(y, x, ab, S);
            else
                (c->Z ? fk->affine_relu : fk->affine)(y, x, a, b, S);
        }
    }
}

static qk_status bn_forward(qk_exec *x, qk_node *n)
{
    qk_graph *g = x->g;
    bn_state *s = n->state;
    qk_value *mv = qk_in(g, n, 3), *vv = qk_in(g, n, 4);
    bn_ctx c = { .s = s, .X = qk_f32(&qk_in(g, n, 0)->t), .scale = qk_f32(&qk_in(g, n, 1)->t),
                 .B = qk_f32(&qk_in(g, n, 2)->t), .rmean = qk_f32(&mv->t), .rvar = qk_f32(&vv->t),
                 .Y = qk_f32(&qk_out(g, n, 0)->t),
                 .batch = (x->training && !qk_node_int(n, "qkit_frozen", 0)) || s->training_mode };
    if (!s->mean)
        return qk_error(QK_ERR_STATE, "BatchNormalization: not planned");
    if (s->folded && !c.batch)
        return QK_OK; /* the Conv wrote our output */
    if (s->act.out >= 0) {
        c.Y = qk_f32(&g->values[s->act.out].t);
        c.Z = c.Y;
        c.clip = s->act.clip;
        if (c.clip)
            qk_clip_bounds(g, &g->nodes[s->act.node], &c.lo, &c.hi);
    }
    if (c.batch && s->stats_conv >= 0)
        c.rows = qk_conv_row_moments(&g->nodes[s->stats_conv]);
    else if (c.batch && (!s->rows || s->N * s->C > s->rows_cap))
        return qk_error(QK_ERR_STATE, "BatchNormalization: not planned for batch statistics");
    s->batch_stats = c.batch;
    qk_pool_run(x->pool, (s->C + BN_CBLOCK - 1) / BN_CBLOCK, bn_fwd_task, &c);
    if (!c.batch)
        return QK_OK;
    const float mom = s->momentum;
    qk_value *om = qk_out(g, n, 1), *ov = qk_out(g, n, 2);
    for (int64_t ch = 0; ch < s->C; ch++) {
        if (om)
            qk_f32(&om->t)[ch] = mom * c.rmean[ch] + (1.0f - mom) * s->mean[ch];
        if (ov)
            qk_f32(&ov->t)[ch] = mom * c.rvar[ch] + (1.0f - mom) * s->bvar[ch];
    }
    if (x->training && qk_value_is_initializer(mv) && qk_value_is_initializer(vv) &&
        !qk_node_int(n, "qkit_frozen", 0)) {
        int64_t M = s->N * s->S;
        float unb = M > 1 ? (float)M / (float)(M - 1) : 1.0f;
        float *rm = qk_f32(&mv->t), *rv = qk_f32(&vv->t);
        for (int64_t ch = 0; ch < s->C; ch++) {
            rm[ch] = mom * rm[ch] + (1.0f - mom) * s->mean[ch];
            rv[ch] = mom * rv[ch] + (1.0f - mom) * s->bvar[ch] * unb;
        }
    }
    return QK_OK;
}

static void bn_bwd_task(void *vc, int64_t t, int worker)
{
    (void)worker;
    const bn_ctx *c = vc;
    const bn_state *s = c->s;
    const int64_t N = s->N, C = s->C, S = s->S;
    int64_t c0 = t * BN_CBLOCK, c1 = c0 + BN_CBLOCK < C ? c0 + BN_CBLOCK : C;
    const qk_fkern *fk = qk_fk();
    for (int64_t ch = c0; ch < c1; ch++) {
        const float mean = s->mean[ch], inv = s->invstd[ch];
        /* the forward's a, b (bn_fwd_task): a fused Clip's mask */
        const float a = c->scale[ch] * inv, ab[4] = { a, c->B[ch] - mean * a, c->lo, c->hi };
        double s1 = 0, s2 = 0;
        for (int64_t n = 0; n < N; n++) {
            const int64_t o = (n * C + ch) * S;
            if (n + 2 < N) {
                qk_prefetch_floats(c->dY + o + 2 * C * S, S);
                qk_prefetch_floats(c->X + o + 2 * C * S, S);
            }
            if (c->clip)
                fk->dsums_clip(c->dY + o, c->X + o, ab, S, mean, &s1, &s2);
            else if (c->Z)
                fk->dsums_relu(c->dY + o, c->X + o, ab[0], ab[1], S, mean, &s1, &s2);
            else
                fk->dsums(c->dY + o, c->X + o, S, mean, &s1, &s2);
        }
        /* s1 = sum dy, s2 = sum dy*(x-mean); sum dy*xhat = s2*inv */
        float sdy = (float)s1, sdyxh = (float)(s2 * inv);
        if (c->dB)
            c->dB[ch] += sdy;
        if (c->dScale)
            c->dScale[ch] += sdyxh;
        if (!c->dX)
            continue;
        const float gs = c->scale[ch] * inv;
        if (s->batch_stats) {
            /* dx = gs * (dy - sdy/M - xhat * sdyxh/M) = gs*dy + k1*(x-mean) + k0 */
            float Mf = (float)(N * S);
            float k1 = -gs * inv * sdyxh / Mf, k0 = -gs * sdy / Mf - k1 * mean;
            for (int64_t n = 0; n < N; n++) {
                const int64_t o = (n * C + ch) * S;
                if (n + 2 < N) {
                    qk_prefetch_floats(c->dY + o + 2 * C * S, S);
                    qk_prefetch_floats(c->X + o + 2 * C * S, S);
                }
                if (c->clip)
                    fk->bn_dx_clip(c->dX + o, c->dY + o, c->X + o, ab, gs, k1, k0, S, c->write_dx);
                else if (c->Z)
                    fk->bn_dx_relu(c->dX + o, c->dY + o, c->X + o, ab[0], ab[1], gs, k1, k0, S, c->write_dx);
                else
                    fk->bn_dx(c->dX + o, c->dY + o, c->X + o, gs, k1, k0, S, c->write_dx);
            }
        } else {
            for (int64_t n = 0; n < N; n++) {
                const int64_t o = (n * C + ch) * S;
                float *dx = c->dX + o;
                if (c->write_dx)
                    memset(dx, 0, (size_t)S * sizeof(float));
                if (!c->Z) {
                    qk_vaxpy(dx, gs, c->dY + o, S);
                    continue;
                }
                /* a fused activation's mask first (what its own backward
                 * would have written as our output's gradient) */
                const float *dz = c->dY + o, *x = c->X + o;
                for (int64_t i = 0; i < S; i++) {
                    float v = ab[0] * x[i] + ab[1];
                    int pass = c->clip ? v >= c->lo && v <= c->hi : v > 0.0f;
                    dx[i] += gs * (pass ? dz[i] : 0.0f);
                }
            }
        }
    }
}

static qk_status bn_backward(qk_exec *x, qk_node *n)
{
    qk_graph *g = x->g;
    bn_state *s = n->state;
    qk_value *xv = qk_in(g, n, 0), *sv = qk_in(g, n, 1), *bv = qk_in(g, n, 2);
    bn_ctx c = { .s = s, .X = qk_f32(&xv->t), .scale = qk_f32(&sv->t), .B = qk_f32(&bv->t), .dY = qk_f32(&qk_out(g, n, 0)->grad),
                 .dX = xv->grad.data, .dScale = sv->grad.data, .dB = bv->grad.data };
    if (!s->mean)
        return qk_error(QK_ERR_STATE, "BatchNormalization: not planned");
    if (s->act.out >= 0) {
        qk_value *zv = &g->values[s->act.out];
        if (!zv->grad.data)
            return QK_OK;
        c.dY = qk_f32(&zv->grad);
        c.Z = qk_f32(&zv->t);
        c.clip = s->act.clip;
        if (c.clip)
            qk_clip_bounds(g, &g->nodes[s->act.node], &c.lo, &c.hi);
    }
    /* the executor hands a fresh (uncleared) dX when nothing has written it
     * yet: grad_zeroed == 2 (see exec.c) */
    c.write_dx = c.dX && xv->grad_zeroed == 2;
    qk_pool_run(x->pool, (s->C + BN_CBLOCK - 1) / BN_CBLOCK, bn_bwd_task, &c);
    if (c.write_dx)
        xv->grad_zeroed = 1;
    return QK_OK;
}

const qk_op qk_op_batchnorm = {
    .type = "BatchNormalization",
    .init = bn_init,
    .infer = bn_infer,
    .reshape = bn_reshape,
    .forward = bn_forward,
    .backward = bn_backward,
    .destroy = bn_destroy,
};
