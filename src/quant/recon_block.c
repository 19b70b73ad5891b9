/* BRECQ and QDrop (ptq.h, docs/ALGORITHMS.md §5): block by block, the
 * rounding of every weight of the block (AdaRound's rectified sigmoid,
 * annealed regulariser, warm-up) and the steps of the block's activation
 * quantizers (LSQ gradient, Adam, cosine-decayed learning rate) are
 * learned jointly to minimise the Fisher-weighted error of the block
 * output, on the block's sub-graph (recon_graph.c) with the graph
 * engine's forward and backward. The block's inputs are those the
 * quantized model gives (earlier blocks already reconstructed); QDrop
 * mixes each element with the float input (probability 1 - drop_p). */
#include "recon_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define ZETA 1.1
#define GAMMA (-0.1)
#define STEP_LR 4e-5 /* MQBench's scale_lr */
#define EVAL_BATCHES 4

typedef struct rb_w { /* one weight whose rounding is learned */
    qk_fq_rt *rt;     /* the model's site (CONST) */
    int pv;           /* its parameter in the sub-graph */
    int64_t n, inner;
    const float *w;   /* float weights */
    float *fl, *V, *am, *av, *dw, *sg;
    int32_t *code0;   /* the calibrated (nearest) codes */
} rb_w;

typedef struct rb_a { /* one activation quantizer whose step is learned */
    qk_fq_rt *orig, rt; /* rt: the copy the sub-graph uses */
    float *scale0;
    double *grad, *am, *av;
} rb_a;

static int64_t ch_of(const qk_fq_rt *rt, int64_t inner, int64_t i)
{
    return rt->n_ch == 1 ? 0 : (i / inner) % rt->n_ch;
}

/* soft (hard = 0) or hard (hard = 1: up iff V >= 0) or nearest (hard = 2)
 * weights into the parameter p */
static void set_weights(rb_w *w, float *p, int hard)
{
    const qk_fq_rt *rt = w->rt;
    for (int64_t i = 0; i < w->n; i++) {
        int64_t c = ch_of(rt, w->inner, i);
        double s = rt->scale[c], q;
        int32_t z = rt->zp[c];
        if (hard == 2) {
            p[i] = (float)(s * (double)(w->code0[i] - z));
            continue;
        }
        double sg = 1.0 / (1.0 + exp(-(double)w->V[i])), hr = sg * (ZETA - GAMMA) + GAMMA;
        double h = hard ? (w->V[i] >= 0) : hr < 0 ? 0 : hr > 1 ? 1 : hr;
        q = w->fl[i] + h + z;
        int inside = q >= rt->qn[c] && q <= rt->qp[c];
        q = q < rt->qn[c] ? rt->qn[c] : q > rt->qp[c] ? rt->qp[c] : q;
        p[i] = (float)(s * (q - z));
        w->sg[i] = (float)sg;
        w->dw[i] = inside && hr > 0 && hr < 1 ? (float)(s * sg * (1 - sg) * (ZETA - GAMMA)) : 0.0f;
    }
}

static void adam(float *x, float *m, float *v, double g, double lr, double b1t, double b2t)
{
    *m = (float)(0.9 * *m + 0.1 * g);
    *v = (float)(0.999 * *v + 0.001 * g * g);
    *x -= (float)(lr * (*m / (1 - b1t)) / (sqrt(*v / (1 - b2t)) + 1e-8));
}

typedef struct rb_data {
    const float *xq[RB_MAX_IN], *xf[RB_MAX_IN], *T, *F;
    int64_t per_in[RB_MAX_IN], per, N, P; /* P: positions per image of the output (per / channels) */
} rb_data;

/* One batch: inputs drawn (QDrop mixing when mix), forward, the weighted
 * loss; with grad, G and backward. */
static qk_status rb_step(recon_sub *s, const rb_data *d, qk_rng *rng, const qk_recon_config *c, int mix, int64_t B,
                         int grad, double *loss)
{
    qk_graph *g = s->g;
    int64_t idx[1024];
    for (int64_t b = 0; b < B; b++)
        idx[b] = (int64_t)qk_rng_below(rng, (uint32_t)d->N);
    for (int i = 0; i < s->n_in; i++) {
        float *x = qk_f32(&g->values[s->in[i]].t);
        int64_t per = d->per_in[i];
        for (int64_t b = 0; b < B; b++) {
            const float *q = d->xq[i] + idx[b] * per, *f = d->xf[i] ? d->xf[i] + idx[b] * per : q;
            float *o = x + b * per;
            if (!mix) {
                memcpy(o, q, (size_t)per * sizeof *o);
                continue;
            }
            for (int64_t e = 0; e < per; e++)
                o[e] = qk_rng_uniform(rng) >= c->drop_p ? f[e] : q[e];
        }
    }
    qk_status st = qk_graph_forward(g);
    if (st != QK_OK)
        return st;
    const float *y = qk_f32(&g->values[s->out].t);
    float *G = qk_f32(&g->values[s->aux].t);
    double acc = 0, norm = 1.0 / (double)(B * d->P);
    for (int64_t b = 0; b < B; b++) {
        const float *t = d->T + idx[b] * d->per, *w = d->F + idx[b] * d->per;
        const float *yb = y + b * d->per;
        float *gb = G + b * d->per;
        for (int64_t e = 0; e < d->per; e++) {
            double df = (double)yb[e] - t[e];
            acc += w[e] * df * df;
            gb[e] = (float)(2.0 * w[e] * df * norm);
        }
    }
    *loss = acc * norm;
    st = grad ? qk_graph_backward(g, s->loss) : QK_OK;
    return st;
}

static void rb_w_free(rb_w *w)
{
    qk_free(w->fl);
    qk_free(w->code0);
}

static void rb_a_free(rb_a *a)
{
    qk_free(a->rt.scale);
    qk_free(a->scale0);
    qk_free(a->grad);
}

/* Optimise block b on its data; writes the codes and steps into m. */
static qk_status rb_optimize(qk_qmodel *m, const recon_block *bl, const rb_data *d, const qk_recon_config *c,
                             qk_pool *pool, const uint8_t *learn, qk_recon_result *res, double *ln_out,
                             double *lo_out)
{
    recon_sub s;
    rb_w W[RB_MAX_FQ];
    rb_a A[RB_MAX_FQ];
    int nw = 0, na = 0;
    memset(W, 0, sizeof W);
    memset(A, 0, sizeof A);
    qk_status st = qk_recon_sub_build(m, bl->nodes, bl->n_nodes, bl->in, bl->n_in, bl->out, learn, 0, &s);
    if (st != QK_OK)
        return st;
    for (int i = 0; i < s.n_w && st == QK_OK; i++) {
        qk_fq_rt *rt = &m->rt[s.w_site[i]];
        rb_w *w = &W[nw++];
        w->rt = rt;
        w->pv = s.w_val[i];
        const qk_tensor *t = &s.g->values[w->pv].t;
        w->n = qk_tensor_numel(t);
        w->inner = 1;
        for (int k = rt->axis + 1; rt->axis >= 0 && k < t->ndim; k++)
            w->inner *= t->dims[k];
        w->w = qk_f32(&m->g->values[m->g->nodes[m->sites[s.w_site[i]].node].in[0]].t);
        w->fl = qk_malloc((size_t)w->n * 6 * sizeof(float));
        w->code0 = qk_malloc((size_t)w->n * sizeof *w->code0);
        if (!w->fl || !w->code0 || w->n != rt->cst_n) {
            st = w->n != rt->cst_n ? qk_error(QK_ERR_SHAPE, "reconstruction: weight '%s' changed size",
                                               s.g->values[w->pv].name)
                                   : qk_error(QK_ERR_NOMEM, "reconstruction: out of memory");
            break;
        }
        w->V = w->fl + w->n;
        w->am = w->V + w->n;
        w->av = w->am + w->n;
        w->dw = w->av + w->n;
        w->sg = w->dw + w->n;
        memcpy(w->code0, rt->codes, (size_t)w->n * sizeof *w->code0);
        for (int64_t e = 0; e < w->n; e++) {
            double v = w->w[e] / rt->scale[ch_of(rt, w->inner, e)], f = floor(v);
            w->fl[e] = (float)f;
            w->V[e] = (float)qk_adaround_v_init(v - f);
            w->am[e] = w->av[e] = 0;
        }
    }
    for (int i = 0; i < s.n_fq && st == QK_OK; i++) {
        int site = s.fq_site[i];
        qk_node *n = &s.g->nodes[s.fq_node[i]];
        qk_fq_rt *rt = site >= 0 ? &m->rt[site] : NULL;
        if (!rt) {
            st = qk_error(QK_ERR_STATE, "reconstruction: FakeQuant '%s' has no site", n->name);
        } else if (!m->sites[site].is_weight && rt->mode == QK_FQ_QUANT && !rt->via_quantizer && rt->scale &&
                   !m->sites[site].qp.pot && m->cfg.backend->arith != QK_ARITH_POT) {
            /* a learned step (power-of-two steps stay as calibrated: the engine shifts) */
            rb_a *a = &A[na++];
            a->orig = rt;
            a->rt = *rt;
            int64_t k = rt->n_ch;
            a->rt.scale = qk_malloc((size_t)k * sizeof(float));
            a->scale0 = qk_malloc((size_t)k * sizeof(float));
            a->grad = qk_calloc((size_t)k * 3, sizeof(double));
            if (!a->rt.scale || !a->scale0 || !a->grad) {
                st = qk_error(QK_ERR_NOMEM, "reconstruction: out of memory");
                break;
            }
            a->am = a->grad + k;
            a->av = a->am + k;
            memcpy(a->rt.scale, rt->scale, (size_t)k * sizeof(float));
            memcpy(a->scale0, rt->scale, (size_t)k * sizeof(float));
            a->rt.step_grad = a->grad;
            st = qk_fakequant_attach(n, &a->rt);
        } else {
            st = qk_fakequant_attach(n, rt); /* as calibrated (weights not learned, hooks) */
        }
    }
    int64_t B = c->batch;
    if (st == QK_OK && B > 1024)
        st = qk_error(QK_ERR_ARG, "reconstruction batch %lld (--recon-batch): at most 1024", (long long)B);
    if (st != QK_OK || (st = qk_graph_plan(s.g, B, 1, pool)) != QK_OK || (st = qk_graph_set_batch(s.g, B)) != QK_OK)
        goto done;
    qk_rng rng;
    qk_rng_seed(&rng, c->seed);
    double b1t = 1, b2t = 1, loss = 0;
    int mix = c->method == QK_RECON_QDROP;
    for (int t = 0; t < c->iters && st == QK_OK; t++) {
        for (int i = 0; i < nw; i++)
            set_weights(&W[i], qk_f32(&s.g->values[W[i].pv].t), 0);
        for (int i = 0; i < na; i++)
            memset(A[i].grad, 0, (size_t)A[i].rt.n_ch * sizeof(double));
        if ((st = rb_step(&s, d, &rng, c, mix, B, 1, &loss)) != QK_OK)
            break;
        if (!isfinite(loss)) {
            st = qk_error(QK_ERR_NUMERIC, "reconstruction diverged (loss %g at iteration %d)", loss, t);
            break;
        }
        int reg = t >= c->warmup * c->iters;
        double beta = qk_adaround_beta(t, c->iters, c->warmup, c->beta_start, c->beta_end);
        b1t *= 0.9;
        b2t *= 0.999;
        for (int i = 0; i < nw; i++) {
            rb_w *w = &W[i];
            const float *gp = qk_f32(&s.g->values[w->pv].grad);
            for (int64_t e = 0; e < w->n; e++) {
                double gv = (double)gp[e] * w->dw[e];
                double sg = w->sg[e], hr = sg * (ZETA - GAMMA) + GAMMA;
                if (reg && c->lambda > 0 && hr > 0 && hr < 1) {
                    double u = 2 * hr - 1, au = fabs(u);
                    double dr = au > 0 ? -beta * exp((beta - 1) * log(au)) * (u < 0 ? -1 : 1) * 2 : 0.0;
                    gv += c->lambda * dr * sg * (1 - sg) * (ZETA - GAMMA);
                }
                adam(&w->V[e], &w->am[e], &w->av[e], gv, c->lr, b1t, b2t);
            }
        }
        double lr_s = STEP_LR * 0.5 * (1 + cos(M_PI * t / c->iters));
        for (int i = 0; i < na; i++)
            for (int64_t k = 0; k < A[i].rt.n_ch; k++) {
                float am = (float)A[i].am[k], av = (float)A[i].av[k], sc = A[i].rt.scale[k];
                adam(&sc, &am, &av, A[i].grad[k], lr_s, b1t, b2t);
                A[i].am[k] = am;
                A[i].av[k] = av;
                if (isfinite(sc) && sc > 1e-3f * A[i].scale0[k]) /* steps stay positive */
                    A[i].rt.scale[k] = sc;
            }
    }
    /* the result against the calibrated quantizers, on the same batches of quantized inputs */
    double ln = 0, lo = 0;
    for (int r = 0; r < 2 && st == QK_OK; r++) {
        qk_rng er;
        qk_rng_seed(&er, c->seed + 7);
        for (int i = 0; i < nw; i++)
            set_weights(&W[i], qk_f32(&s.g->values[W[i].pv].t), r == 0 ? 2 : 1);
        for (int i = 0; i < na; i++)
            if (r == 0) { /* swap in the calibrated steps, then back */
                float *t = A[i].rt.scale;
                A[i].rt.scale = A[i].scale0;
                A[i].scale0 = t;
            }
        for (int e = 0; e < EVAL_BATCHES && st == QK_OK; e++) {
            double l;
            st = rb_step(&s, d, &er, c, 0, B, 0, &l);
            *(r == 0 ? &ln : &lo) += l / EVAL_BATCHES;
        }
        for (int i = 0; i < na; i++)
            if (r == 0) {
                float *t = A[i].rt.scale;
                A[i].rt.scale = A[i].scale0;
                A[i].scale0 = t;
            }
    }
    if (st != QK_OK)
        goto done;
    for (int i = 0; i < nw; i++) {
        rb_w *w = &W[i];
        qk_fq_rt *rt = w->rt;
        for (int64_t e = 0; e < w->n; e++) {
            int64_t ch = ch_of(rt, w->inner, e);
            int64_t q = (int64_t)w->fl[e] + (w->V[e] >= 0) + rt->zp[ch];
            q = q < rt->qn[ch] ? rt->qn[ch] : q > rt->qp[ch] ? rt->qp[ch] : q;
            rt->codes[e] = (int32_t)q;
            rt->cst[e] = (float)(q - rt->zp[ch]) * rt->scale[ch];
            res->flipped += rt->codes[e] != w->code0[e];
        }
    }
    for (int i = 0; i < na; i++)
        memcpy(A[i].orig->scale, A[i].rt.scale, (size_t)A[i].rt.n_ch * sizeof(float));
    res->n_layers += nw;
    res->loss_nearest += ln;
    res->loss_recon += lo;
    *ln_out = ln;
    *lo_out = lo;
done:
    qk_recon_sub_free(&s);
    for (int i = 0; i < RB_MAX_FQ; i++) {
        rb_w_free(&W[i]);
        rb_a_free(&A[i]);
    }
    return st;
}

static int64_t per_image(const qk_graph *g, int v)
{
    const qk_tensor *t = &g->values[v].t;
    return t->ndim >= 1 && t->dims[0] > 0 ? qk_tensor_numel(t) / t->dims[0] : 0;
}

qk_status qk_recon_blocks_run(qk_qmodel *m, const qk_dataset *ds, qk_norm norm, int64_t N, const qk_recon_config *c,
                              qk_pool *pool, qk_recon_result *res)
{
    qk_graph *g = m->g;
    recon_block *bl = NULL;
    int nb = 0;
    uint8_t *learn = qk_calloc((size_t)(m->n_sites ? m->n_sites : 1), 1);
    float **F = NULL;
    int64_t *pers = NULL;
    qk_status st = learn ? qk_recon_blocks(m, &bl, &nb) : qk_error(QK_ERR_NOMEM, "reconstruction: out of memory");
    if (st != QK_OK)
        goto done;
    for (int li = 0; li < m->n_layers; li++) { /* weights with integer codes on a scale */
        int s = m->layers[li].w_site;
        const qk_fq_rt *rt = s >= 0 ? &m->rt[s] : NULL;
        const qk_value *wv = s >= 0 ? &g->values[g->nodes[m->sites[s].node].in[0]] : NULL;
        learn[s] = rt && rt->codes && !rt->via_quantizer && rt->mode == QK_FQ_CONST && wv->t.dtype == QK_F32 &&
                   qk_value_is_initializer(wv) && rt->cst_n == qk_tensor_numel(&wv->t);
    }
    F = qk_calloc((size_t)(nb ? nb : 1), sizeof *F);
    pers = qk_calloc((size_t)(nb ? nb : 1), sizeof *pers);
    if (!F || !pers) {
        st = qk_error(QK_ERR_NOMEM, "reconstruction: out of memory");
        goto done;
    }
    /* every value's shape at batch 1 (the plan is qk_ptq_reconstruct's) */
    if ((st = qk_graph_set_batch(g, 1)) != QK_OK)
        goto done;
    for (int b = 0; b < nb; b++) {
        pers[b] = per_image(g, bl[b].out_base);
        if (!(F[b] = qk_malloc((size_t)(N * pers[b]) * sizeof(float)))) {
            st = qk_error(QK_ERR_NOMEM, "reconstruction: out of memory (Fisher weights of %lld images)",
                          (long long)N);
            goto done;
        }
    }
    if ((st = qk_recon_fisher(m, ds, norm, N, bl, nb, F, pers, pool)) != QK_OK)
        goto done;
    for (int b = 0; b < nb && st == QK_OK; b++) {
        const recon_block *k = &bl[b];
        int any = 0;
        for (int i = 0; i < k->n_nodes; i++)
            for (int li = 0; li < m->n_layers; li++)
                any |= m->layers[li].node == k->nodes[i] && m->layers[li].w_site >= 0 && learn[m->layers[li].w_site];
        if (!any)
            continue;
        double t0 = qk_now();
        rb_data d = { .N = N, .per = pers[b], .F = F[b] };
        const qk_tensor *ot = &g->values[k->out].t;
        d.P = ot->ndim >= 2 && ot->dims[1] > 0 ? d.per / ot->dims[1] : 1;
        float *bufs[2 * RB_MAX_IN + 1] = { 0 };
        int vals[RB_MAX_IN + 1];
        int64_t pv[RB_MAX_IN + 1];
        for (int i = 0; i < k->n_in; i++) {
            vals[i] = k->in[i];
            pv[i] = d.per_in[i] = per_image(g, k->in[i]);
            bufs[i] = qk_malloc((size_t)(N * pv[i]) * sizeof(float));
            if (c->method == QK_RECON_QDROP)
                bufs[RB_MAX_IN + i] = qk_malloc((size_t)(N * pv[i]) * sizeof(float));
            if (!bufs[i] || (c->method == QK_RECON_QDROP && !bufs[RB_MAX_IN + i]))
                st = qk_error(QK_ERR_NOMEM, "reconstruction: out of memory");
        }
        bufs[2 * RB_MAX_IN] = qk_malloc((size_t)(N * d.per) * sizeof(float));
        if (!bufs[2 * RB_MAX_IN])
            st = qk_error(QK_ERR_NOMEM, "reconstruction: out of memory");
        if (st == QK_OK)
            st = qk_recon_collect(m, ds, norm, N, k->n_in, vals, 0, bufs, pv);
        if (st == QK_OK && c->method == QK_RECON_QDROP)
            st = qk_recon_collect(m, ds, norm, N, k->n_in, vals, 1, bufs + RB_MAX_IN, pv);
        vals[0] = k->out_base;
        pv[0] = d.per;
        if (st == QK_OK)
            st = qk_recon_collect(m, ds, norm, N, 1, vals, 1, bufs + 2 * RB_MAX_IN, pv);
        for (int i = 0; i < k->n_in; i++) {
            d.xq[i] = bufs[i];
            d.xf[i] = bufs[RB_MAX_IN + i];
        }
        d.T = bufs[2 * RB_MAX_IN];
        double ln = 0, lo = 0;
        if (st == QK_OK && (st = rb_optimize(m, k, &d, c, pool, learn, res, &ln, &lo)) != QK_OK)
            st = qk_error_context(st, "reconstruction of the block ending at '%s'", g->values[k->out].name);
        for (int i = 0; i < 2 * RB_MAX_IN + 1; i++)
            qk_free(bufs[i]);
        if (st == QK_OK && c->verbose)
            fprintf(stderr, "%s block %d (%d nodes, %d layers, to %-20s) output error %.5g -> %.5g (%.1f%%), %.1f s\n",
                    qk_recon_method_name(c->method), b, k->n_nodes, k->n_layers, g->values[k->out].name, ln, lo,
                    ln > 0 ? 100 * (lo - ln) / ln : 0.0, qk_now() - t0);
    }
done:
    for (int b = 0; F && b < nb; b++)
        qk_free(F[b]);
    qk_free(F);
    qk_free(pers);
    qk_free(learn);
    qk_recon_blocks_free(bl, nb);
    return st;
}
