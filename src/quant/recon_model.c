/* qk_ptq_reconstruct (ptq.h): every weighted layer of a calibrated model,
 * in graph order, through recon.c's optimizer. The layer's float and
 * quantized inputs on the calibration images come from two forward passes
 * of the model (all quantizers off; all on, earlier layers already
 * reconstructed); a Conv is sampled as im2col columns at random output
 * positions, a Gemm / MatMul as rows of its input. */
#include "recon_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define POSITIONS 64 /* output positions drawn per image and iteration */

typedef struct col_ctx {
    const float *xf, *xq; /* [N, per] */
    int64_t N, per, batch;
    int conv;
    int64_t C, H, Wd, kh, kw, Ho, Wo, st[2], dl[2], pd[2]; /* conv */
    int64_t K, P;                                         /* flat: P rows of K per image */
    int64_t *cn, *cpos, *cpos2; /* work, per column: image offset; conv: first input row and column
                                   of the window; flat: row offset */
} col_ctx;

static qk_status col_sample(void *ctx, qk_rng *rng, const qk_recon_config *c, float *Xf, float *Xq, int64_t *M)
{
    const col_ctx *d = ctx;
    int64_t npos = d->conv ? d->Ho * d->Wo : d->P;
    int64_t per_img = npos < POSITIONS ? npos : POSITIONS, Mt = d->batch * per_img, col = 0;
    int qdrop = c->method == QK_RECON_QDROP;
    for (int64_t b = 0; b < d->batch; b++) { /* the columns first: image and position */
        int64_t n = (int64_t)qk_rng_below(rng, (uint32_t)d->N);
        for (int64_t p = 0; p < per_img; p++, col++) {
            int64_t pos = per_img == npos ? p : (int64_t)qk_rng_below(rng, (uint32_t)npos);
            d->cn[col] = n * d->per;
            d->cpos[col] = d->conv ? pos / d->Wo * d->st[0] - d->pd[0] : pos * d->K;
            d->cpos2[col] = d->conv ? pos % d->Wo * d->st[1] - d->pd[1] : 0;
        }
    }
    /* then row by row, so the writes are sequential */
    int64_t rows = d->conv ? d->C * d->kh * d->kw : d->K;
    for (int64_t r = 0; r < rows; r++) {
        float *xf = Xf + r * Mt, *xq = Xq + r * Mt;
        if (!d->conv) {
            for (int64_t k = 0; k < Mt; k++) {
                int64_t e = d->cn[k] + d->cpos[k] + r;
                xf[k] = d->xf[e];
                xq[k] = d->xq[e];
            }
        } else {
            int64_t ci = r / (d->kh * d->kw), a = r / d->kw % d->kh, bb = r % d->kw;
            int64_t oa = a * d->dl[0], ob = bb * d->dl[1], plane = ci * d->H * d->Wd;
            for (int64_t k = 0; k < Mt; k++) {
                int64_t ih = d->cpos[k] + oa, iw = d->cpos2[k] + ob;
                if ((uint64_t)ih < (uint64_t)d->H && (uint64_t)iw < (uint64_t)d->Wd) {
                    int64_t e = d->cn[k] + plane + ih * d->Wd + iw;
                    xf[k] = d->xf[e];
                    xq[k] = d->xq[e];
                } else {
                    xf[k] = xq[k] = 0;
                }
            }
        }
        if (qdrop)
            for (int64_t k = 0; k < Mt; k++)
                if (qk_rng_uniform(rng) >= c->drop_p)
                    xq[k] = xf[k];
    }
    *M = Mt;
    return QK_OK;
}

/* Value v of the first N images into out [N, per], quantizers off (float)
 * or as they are. */
static qk_status collect(qk_qmodel *m, const qk_dataset *ds, qk_norm norm, int64_t N, int v, int float_run,
                         float *out, int64_t per)
{
    return qk_recon_collect(m, ds, norm, N, 1, &v, float_run, &out, &per);
}

static const float *const_f32(const qk_graph *g, int v, int64_t numel)
{
    if (v < 0)
        return NULL;
    const qk_value *x = &g->values[v];
    if (x->producer >= 0 && qk_node_is(&g->nodes[x->producer], "FakeQuant")) /* a quantized bias */
        x = &g->values[g->nodes[x->producer].in[0]];
    if (!qk_value_is_initializer(x) || x->t.dtype != QK_F32 || !x->t.data || qk_tensor_numel(&x->t) != numel)
        return NULL;
    return qk_f32(&x->t);
}

static int sole_reader(const qk_graph *g, int v)
{
    int c[2];
    for (int j = 0; j < g->n_outputs; j++)
        if (g->outputs[j] == v)
            return -1;
    return qk_graph_consumers(g, v, c, 2) == 1 ? c[0] : -1;
}

/* post_a/post_b (bias, Gemm alpha/beta, a following BN) and the clamp of a
 * following Relu / Clip, for layer node k with co outputs. */
static void layer_post(const qk_graph *g, int k, int64_t co, float *pa, float *pb, float *lo, float *hi)
{
    const qk_node *n = &g->nodes[k];
    int gemm = qk_node_is(n, "Gemm");
    double alpha = gemm ? qk_node_float(n, "alpha", 1.0f) : 1.0, beta = gemm ? qk_node_float(n, "beta", 1.0f) : 1.0;
    const float *b = n->n_in > 2 ? const_f32(g, n->in[2], co) : NULL;
    const float *b1 = !b && n->n_in > 2 ? const_f32(g, n->in[2], 1) : NULL;
    for (int64_t o = 0; o < co; o++) {
        pa[o] = (float)alpha;
        pb[o] = (float)(beta * (b ? b[o] : b1 ? b1[0] : 0.0));
    }
    *lo = -INFINITY;
    *hi = INFINITY;
    int v = n->out[0], r = sole_reader(g, v);
    if (r >= 0 && qk_node_is(&g->nodes[r], "BatchNormalization")) {
        const qk_node *bn = &g->nodes[r];
        const float *gam = const_f32(g, bn->in[1], co), *bet = const_f32(g, bn->in[2], co);
        const float *mu = const_f32(g, bn->in[3], co), *var = const_f32(g, bn->in[4], co);
        if (!gam || !bet || !mu || !var)
            return;
        double eps = qk_node_float(bn, "epsilon", 1e-5f);
        for (int64_t o = 0; o < co; o++) {
            double a = gam[o] / sqrt((double)var[o] + eps);
            pa[o] = (float)(a * pa[o]);
            pb[o] = (float)(a * (pb[o] - mu[o]) + bet[o]);
        }
        v = bn->out[0];
        r = sole_reader(g, v);
    }
    if (r >= 0 && qk_node_is(&g->nodes[r], "Relu")) {
        *lo = 0;
    } else if (r >= 0 && qk_node_is(&g->nodes[r], "Clip")) {
        const qk_node *a = &g->nodes[r];
        float l = qk_node_float(a, "min", -INFINITY), h = qk_node_float(a, "max", INFINITY);
        const float *pl = a->n_in > 1 ? const_f32(g, a->in[1], 1) : NULL;
        const float *ph = a->n_in > 2 ? const_f32(g, a->in[2], 1) : NULL;
        if ((a->n_in > 1 && a->in[1] >= 0 && !pl) || (a->n_in > 2 && a->in[2] >= 0 && !ph))
            return;
        *lo = pl ? pl[0] : l;
        *hi = ph ? ph[0] : h;
    }
}

typedef struct lay_buf {
    float *w, *fl, *scale, *pa, *pb, *xf, *xq;
    int32_t *zp, *qn, *qp, *codes;
    int64_t *cols;
} lay_buf;

static void lay_free(lay_buf *b)
{
    qk_free(b->w);
    qk_free(b->fl);
    qk_free(b->scale);
    qk_free(b->pa);
    qk_free(b->pb);
    qk_free(b->xf);
    qk_free(b->xq);
    qk_free(b->zp);
    qk_free(b->qn);
    qk_free(b->qp);
    qk_free(b->codes);
    qk_free(b->cols);
    memset(b, 0, sizeof *b);
}

/* Reconstruct layer li; *done = 0 when its form is not handled. */
static qk_status recon_one(qk_qmodel *m, int li, const qk_dataset *ds, qk_norm norm, int64_t N,
                           const qk_recon_config *c, qk_recon_result *res, int *done)
{
    qk_graph *g = m->g;
    const qk_qlayer *Q = &m->layers[li];
    qk_fq_rt *rt = &m->rt[Q->w_site];
    const qk_node *n = &g->nodes[Q->node];
    const qk_tensor *W = &g->values[g->nodes[m->sites[Q->w_site].node].in[0]].t;
    const qk_tensor *X = &g->values[n->in[0]].t;
    *done = 0;
    if (!rt->codes || rt->via_quantizer || W->dtype != QK_F32 || X->ndim < 2)
        return QK_OK;
    int conv = qk_node_is(n, "Conv"), trans = 0; /* trans: W is [K, co] */
    col_ctx cx = { 0 };
    int64_t co = Q->n_out, numel = qk_tensor_numel(W), groups = 1, kg = numel / co;
    int64_t per = qk_tensor_numel(X) / X->dims[0];
    if (conv) {
        if (W->ndim != 4 || X->ndim != 4)
            return QK_OK;
        groups = qk_node_int(n, "group", 1);
        kg = W->dims[1] * W->dims[2] * W->dims[3];
        int64_t pd[4] = { 0, 0, 0, 0 };
        cx.st[0] = cx.st[1] = cx.dl[0] = cx.dl[1] = 1;
        qk_node_ints(n, "strides", cx.st, 2);
        qk_node_ints(n, "dilations", cx.dl, 2);
        qk_node_ints(n, "pads", pd, 4);
        if (strcmp(qk_node_string(n, "auto_pad", "NOTSET"), "NOTSET") != 0)
            return QK_OK;
        cx.pd[0] = pd[0];
        cx.pd[1] = pd[1];
        cx.C = X->dims[1];
        cx.H = X->dims[2];
        cx.Wd = X->dims[3];
        cx.kh = W->dims[2];
        cx.kw = W->dims[3];
        cx.Ho = (cx.H + pd[0] + pd[2] - cx.dl[0] * (cx.kh - 1) - 1) / cx.st[0] + 1;
        cx.Wo = (cx.Wd + pd[1] + pd[3] - cx.dl[1] * (cx.kw - 1) - 1) / cx.st[1] + 1;
        if (cx.Ho < 1 || cx.Wo < 1 || cx.C != groups * W->dims[1] || co % groups)
            return QK_OK;
    } else {
        if (W->ndim != 2)
            return QK_OK;
        trans = Q->w_axis == 1;
        kg = trans ? W->dims[0] : W->dims[1];
        if (per % kg)
            return QK_OK;
        cx.K = kg;
        cx.P = per / kg;
    }
    if ((rt->n_ch != 1 && rt->n_ch != co) || (rt->n_ch == co && rt->axis != Q->w_axis))
        return QK_OK;
    lay_buf b = { 0 };
    b.w = qk_malloc((size_t)numel * sizeof *b.w);
    b.fl = qk_malloc((size_t)numel * sizeof *b.fl);
    b.codes = qk_malloc((size_t)numel * sizeof *b.codes);
    b.scale = qk_malloc((size_t)co * sizeof *b.scale);
    b.pa = qk_malloc((size_t)co * sizeof *b.pa);
    b.pb = qk_malloc((size_t)co * sizeof *b.pb);
    b.zp = qk_malloc((size_t)co * sizeof *b.zp);
    b.qn = qk_malloc((size_t)co * sizeof *b.qn);
    b.qp = qk_malloc((size_t)co * sizeof *b.qp);
    b.xf = qk_malloc((size_t)(N * per) * sizeof *b.xf);
    b.xq = qk_malloc((size_t)(N * per) * sizeof *b.xq);
    qk_status st = QK_OK;
    if (!b.w || !b.fl || !b.codes || !b.scale || !b.pa || !b.pb || !b.zp || !b.qn || !b.qp || !b.xf || !b.xq) {
        st = qk_error(QK_ERR_NOMEM, "reconstruction of '%s': out of memory (%lld images of %lld values)", n->name,
                      (long long)N, (long long)per);
        goto done;
    }
    const float *w = qk_f32(W);
    for (int64_t i = 0; i < numel; i++) /* [co, kg] */
        b.w[i] = trans ? w[(i % kg) * co + i / kg] : w[i];
    for (int64_t o = 0; o < co; o++) {
        int64_t ch = rt->n_ch == 1 ? 0 : o;
        b.scale[o] = rt->scale[ch];
        b.zp[o] = rt->zp[ch];
        b.qn[o] = rt->qn[ch];
        b.qp[o] = rt->qp[ch];
    }
    float lo, hi;
    layer_post(g, Q->node, co, b.pa, b.pb, &lo, &hi);
    double t0 = qk_now();
    if ((st = collect(m, ds, norm, N, n->in[0], 1, b.xf, per)) != QK_OK ||
        (st = collect(m, ds, norm, N, n->in[0], 0, b.xq, per)) != QK_OK)
        goto done;
    cx.xf = b.xf;
    cx.xq = b.xq;
    cx.N = N;
    cx.per = per;
    cx.batch = c->batch;
    cx.conv = conv;
    int64_t npos = conv ? cx.Ho * cx.Wo : cx.P, mc = c->batch * (npos < POSITIONS ? npos : POSITIONS);
    if (!(b.cols = qk_malloc((size_t)mc * 3 * sizeof *b.cols))) {
        st = qk_error(QK_ERR_NOMEM, "reconstruction: out of memory");
        goto done;
    }
    cx.cn = b.cols;
    cx.cpos = b.cols + mc;
    cx.cpos2 = b.cols + 2 * mc;
    recon_layer L = { .co = co, .kg = kg, .groups = groups, .w = b.w, .floor_w = b.fl, .scale = b.scale,
                      .zp = b.zp, .qn = b.qn, .qp = b.qp, .post_a = b.pa, .post_b = b.pb, .lo = lo, .hi = hi,
                      .max_cols = mc, .sample = col_sample,
                      .ctx = &cx };
    double ln = 0, lr = 0;
    int64_t flipped = 0;
    if ((st = qk_recon_layer_run(&L, c, b.codes, &ln, &lr, &flipped)) != QK_OK) {
        st = qk_error_context(st, "reconstruction of '%s'", n->name);
        goto done;
    }
    int64_t inner = rt->axis == 1 ? 1 : kg; /* channel of element i of W (per-channel layouts) */
    for (int64_t i = 0; i < numel; i++) {
        int64_t o = trans ? i % co : i / kg, j = trans ? i / co : i % kg;
        rt->codes[i] = b.codes[o * kg + j];
        int64_t ch = rt->n_ch == 1 ? 0 : (rt->axis == 1 ? i % co : i / inner);
        rt->cst[i] = (float)(rt->codes[i] - rt->zp[ch]) * rt->scale[ch];
    }
    res->n_layers++;
    res->loss_nearest += ln;
    res->loss_recon += lr;
    res->flipped += flipped;
    *done = 1;
    if (c->verbose)
        fprintf(stderr, "%s %-28s output error %.5g -> %.5g (%.1f%%), %lld of %lld codes flipped, %.1f s\n",
                qk_recon_method_name(c->method), n->name, ln, lr, ln > 0 ? 100 * (lr - ln) / ln : 0.0,
                (long long)flipped, (long long)numel, qk_now() - t0);
done:
    lay_free(&b);
    return st;
}

qk_status qk_ptq_reconstruct(qk_qmodel *m, const qk_dataset *ds, qk_norm norm, int64_t n, const qk_recon_config *c,
                             qk_pool *pool, qk_recon_result *r)
{
    double t0 = qk_now();
    qk_recon_result res = { 0 };
    if (r)
        *r = res;
    if (!m || !ds || !c)
        return qk_error(QK_ERR_ARG, "reconstruction: missing argument");
    if (!m->calibrated || m->exported)
        return qk_error(QK_ERR_STATE, "reconstruction needs a calibrated model not yet converted to QDQ");
    if (c->method == QK_RECON_NONE)
        return QK_OK;
    if (c->method != QK_RECON_ADAROUND && c->method != QK_RECON_QDROP && c->method != QK_RECON_BRECQ)
        return qk_error(QK_ERR_ARG, "reconstruction method %d unknown", (int)c->method);
    if (m->cfg.bias_correct)
        return qk_error(QK_ERR_ARG, "--recon with --bias-correct (asked, or profile '%s''s default: "
                        "bias_correct = -1 switches it off): the corrected biases compensate nearest rounding; use "
                        "one or the other", m->cfg.backend->name);
    if (n < 1 || n > ds->n)
        return qk_error(QK_ERR_ARG, "reconstruction: %lld images asked, the set has %lld", (long long)n,
                        (long long)ds->n);
    int64_t N = c->images > 0 && c->images < n ? c->images : n;
    qk_status st = qk_recon_config_check(c, N);
    if (st != QK_OK)
        return st;
    qk_graph *g = m->g;
    if ((st = qk_graph_plan(g, N < 128 ? N : 128, 0, pool)) != QK_OK)
        return st;
    if (c->method == QK_RECON_ADAROUND) {
        for (int li = 0; li < m->n_layers && st == QK_OK; li++) {
            int done;
            st = recon_one(m, li, ds, norm, N, c, &res, &done);
        }
    } else { /* brecq, qdrop: by blocks (recon_block.c) */
        st = qk_recon_blocks_run(m, ds, norm, N, c, pool, &res);
    }
    qk_graph_unplan(g);
    if (st == QK_OK) {
        qk_ptq_snap_bias(m);
        st = qk_graph_set_meta(g, "qkit.recon", qk_recon_method_name(c->method));
    }
    res.seconds = qk_now() - t0;
    m->seconds += res.seconds;
    if (r)
        *r = res;
    return st;
}
