/* Layer-by-layer analysis of a calibrated model against its float self
 * (analyze.h): the float network, the quantized one and one network per
 * site with only that site quantized, all on the same inputs; and the
 * rebuilding of a calibrated model from a QDQ file qkit wrote. */
#include "ptq_internal.h"
#include "qkit/analyze.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Sums for SQNR and cosine of y against the reference x. */
typedef struct an_acc {
    double xx, ee, xy, yy;
} an_acc;

static void acc_add(an_acc *a, const float *x, const float *y, int64_t n)
{
    double xx = 0, ee = 0, xy = 0, yy = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)x[i] - y[i];
        xx += (double)x[i] * x[i];
        ee += d * d;
        xy += (double)x[i] * y[i];
        yy += (double)y[i] * y[i];
    }
    a->xx += xx;
    a->ee += ee;
    a->xy += xy;
    a->yy += yy;
}

static double acc_sqnr(const an_acc *a)
{
    if (a->ee <= 0)
        return INFINITY;
    return a->xx > 0 ? 10.0 * log10(a->xx / a->ee) : -INFINITY;
}

static double acc_cos(const an_acc *a)
{
    if (a->xx <= 0 && a->yy <= 0)
        return 1.0;
    return a->xx > 0 && a->yy > 0 ? a->xy / sqrt(a->xx * a->yy) : 0.0;
}

/* Site s's probe value: the output of its layer for a layer weight, else
 * the FakeQuant node's output (what the consumers read). */
static int probe_of(const qk_qmodel *m, int s)
{
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i].w_site == s)
            return m->g->nodes[m->layers[i].node].out[0];
    return m->g->nodes[m->sites[s].node].out[0];
}

static void set_modes(qk_qmodel *m, const qk_fq_mode *on, int only)
{
    for (int s = 0; s < m->n_sites; s++)
        m->rt[s].mode = only == -2 || only == s ? on[s] : QK_FQ_OFF;
}

static void site_clip(const qk_fq_rt *rt, double *lo, double *hi)
{
    *lo = NAN;
    *hi = NAN;
    for (int64_t c = 0; c < rt->n_ch && rt->scale; c++) {
        double l = (double)(rt->qn[c] - rt->zp[c]) * rt->scale[c], h = (double)(rt->qp[c] - rt->zp[c]) * rt->scale[c];
        *lo = c == 0 || l < *lo ? l : *lo;
        *hi = c == 0 || h > *hi ? h : *hi;
    }
}

static int code_bits(const qk_fq_rt *rt, const qk_qsite *t)
{
    if (!rt->codes || !t->is_weight)
        return t->qp.bits;
    int32_t mx = 0;
    for (int64_t i = 0; i < rt->cst_n; i++) {
        int64_t c = rt->n_ch > 1 ? (i * rt->n_ch) / rt->cst_n : 0;
        int32_t v = rt->codes[i] - rt->zp[c];
        v = v < 0 ? -v - 1 : v;
        mx = v > mx ? v : mx;
    }
    int b = 1;
    while (b < 16 && ((int64_t)1 << b) <= mx)
        b++;
    b += t->qp.is_signed || t->qp.symmetric;
    return b > t->qp.bits ? t->qp.bits : b;
}

static int argmax(const float *v, int64_t n)
{
    int64_t k = 0;
    for (int64_t i = 1; i < n; i++)
        if (v[i] > v[k])
            k = i;
    return (int)k;
}

typedef struct an_run {
    qk_qmodel *m;
    qk_analysis *a;
    qk_fq_mode *on;
    int *probe;
    float **fbuf;     /* float probe values of the current batch */
    float *flog;      /* float logits of the batch */
    an_acc *q, *alone, *out_alone, out;
    int64_t ok_f, ok_q, same;
} an_run;

/* Insertion sort of a->rank by out_sqnr_alone, ascending (stable). */
static void rank_sites(qk_analysis *a)
{
    for (int i = 1; i < a->n_rank; i++) {
        int v = a->rank[i], j = i;
        while (j > 0 && a->sites[a->rank[j - 1]].out_sqnr_alone > a->sites[v].out_sqnr_alone) {
            a->rank[j] = a->rank[j - 1];
            j--;
        }
        a->rank[j] = v;
    }
}

/* One forward at the current batch size. */
static qk_status fwd(qk_graph *g) { return qk_graph_forward(g); }

static qk_status batch(an_run *r, int64_t cnt, const int64_t *labels, int first)
{
    qk_qmodel *m = r->m;
    qk_graph *g = m->g;
    qk_analysis *a = r->a;
    qk_status st;
    int ns = m->n_sites;
    const qk_value *lv = &g->values[g->outputs[0]];
    int64_t ncls = qk_tensor_numel(&lv->t) / cnt;
    /* float */
    set_modes(m, r->on, -1);
    if ((st = fwd(g)) != QK_OK)
        return st;
    for (int s = 0; s < ns; s++) {
        qk_analyze_site *S = &a->sites[s];
        const qk_tensor *pt = &g->values[r->probe[s]].t;
        memcpy(r->fbuf[s], pt->data, (size_t)qk_tensor_numel(pt) * sizeof(float));
        const qk_tensor *xt = &g->values[g->nodes[m->sites[s].node].in[0]].t;
        if (m->sites[s].is_weight && !first)
            continue;
        const float *x = qk_f32(xt);
        int64_t n = qk_tensor_numel(xt);
        double w = (S->hmax - S->hmin) / QK_ANALYZE_BINS, tol = 1e-6 * (S->hi - S->lo);
        for (int64_t i = 0; i < n; i++) {
            int k = w > 0 ? (int)((x[i] - S->hmin) / w) : 0;
            k = k < 0 ? 0 : k >= QK_ANALYZE_BINS ? QK_ANALYZE_BINS - 1 : k;
            S->hist[k]++;
            if (x[i] < S->lo - tol || x[i] > S->hi + tol)
                S->clipped += 1;
        }
    }
    memcpy(r->flog, lv->t.data, (size_t)(cnt * ncls) * sizeof(float));
    /* quantized */
    set_modes(m, r->on, -2);
    if ((st = fwd(g)) != QK_OK)
        return st;
    for (int s = 0; s < ns; s++) {
        const qk_tensor *pt = &g->values[r->probe[s]].t;
        acc_add(&r->q[s], r->fbuf[s], qk_f32(pt), qk_tensor_numel(pt));
    }
    const float *ql = qk_f32(&lv->t);
    acc_add(&r->out, r->flog, ql, cnt * ncls);
    for (int64_t i = 0; i < cnt; i++) {
        int cf = argmax(r->flog + i * ncls, ncls), cq = argmax(ql + i * ncls, ncls);
        r->same += cf == cq;
        if (labels) {
            r->ok_f += cf == labels[i];
            r->ok_q += cq == labels[i];
        }
    }
    /* one site at a time */
    for (int s = 0; s < ns; s++) {
        if (!a->sites[s].active)
            continue;
        set_modes(m, r->on, s);
        if ((st = fwd(g)) != QK_OK)
            return st;
        const qk_tensor *pt = &g->values[r->probe[s]].t;
        acc_add(&r->alone[s], r->fbuf[s], qk_f32(pt), qk_tensor_numel(pt));
        acc_add(&r->out_alone[s], r->flog, qk_f32(&lv->t), cnt * ncls);
    }
    return QK_OK;
}

/* Float ranges of every site's tensor (pass 0). */
static qk_status ranges(an_run *r, const float *x, int64_t N, int64_t B, int64_t per)
{
    qk_qmodel *m = r->m;
    qk_graph *g = m->g;
    float *in = qk_f32(&g->values[g->inputs[0]].t);
    set_modes(m, r->on, -1);
    for (int64_t b0 = 0; b0 < N; b0 += B) {
        int64_t cnt = N - b0 < B ? N - b0 : B;
        memcpy(in, x + b0 * per, (size_t)(cnt * per) * sizeof(float));
        qk_status st = qk_graph_set_batch(g, cnt);
        if (st != QK_OK || (st = fwd(g)) != QK_OK)
            return st;
        for (int s = 0; s < m->n_sites; s++) {
            qk_analyze_site *S = &r->a->sites[s];
            const qk_tensor *xt = &g->values[g->nodes[m->sites[s].node].in[0]].t;
            const float *v = qk_f32(xt);
            for (int64_t i = 0, n = qk_tensor_numel(xt); i < n; i++) {
                S->fmin = v[i] < S->fmin ? v[i] : S->fmin;
                S->fmax = v[i] > S->fmax ? v[i] : S->fmax;
            }
        }
    }
    return QK_OK;
}

static qk_status analyze(an_run *r, const qk_tensor *xt, const int64_t *labels, qk_pool *pool)
{
    qk_qmodel *m = r->m;
    qk_graph *g = m->g;
    qk_analysis *a = r->a;
    int ns = m->n_sites;
    int64_t N = xt->dims[0], per = N ? qk_tensor_numel(xt) / N : 0, B = N < 64 ? N : 64;
    qk_status st = qk_graph_plan(g, B, 0, pool);
    if (st != QK_OK)
        return st;
    B = g->max_batch; /* a model with a fixed batch runs at that batch */
    qk_value *in = &g->values[g->inputs[0]];
    if (qk_tensor_numel(&in->t) != B * per)
        return qk_error(QK_ERR_SHAPE, "analysis: model input '%s' takes %lld values per image, the inputs have %lld",
                        in->name, (long long)(qk_tensor_numel(&in->t) / B), (long long)per);
    for (int s = 0; s < ns; s++) {
        r->probe[s] = probe_of(m, s);
        if (!(r->fbuf[s] = qk_malloc((size_t)qk_tensor_numel(&g->values[r->probe[s]].t) * sizeof(float) + 4)))
            return qk_error(QK_ERR_NOMEM, "analysis: out of memory");
        qk_analyze_site *S = &a->sites[s];
        S->value = m->sites[s].value;
        S->probe = g->values[r->probe[s]].name;
        S->is_weight = m->sites[s].is_weight;
        S->active = r->on[s] != QK_FQ_OFF;
        S->bits = code_bits(&m->rt[s], &m->sites[s]);
        S->fmin = INFINITY;
        S->fmax = -INFINITY;
        site_clip(&m->rt[s], &S->lo, &S->hi);
    }
    const qk_value *lv = &g->values[g->outputs[0]];
    if (!(r->flog = qk_malloc((size_t)qk_tensor_numel(&lv->t) * sizeof(float) + 4)))
        return qk_error(QK_ERR_NOMEM, "analysis: out of memory");
    const float *x = qk_f32(xt);
    if ((st = ranges(r, x, N, B, per)) != QK_OK)
        return st;
    for (int s = 0; s < ns; s++) {
        qk_analyze_site *S = &a->sites[s];
        S->hmin = S->fmin;
        S->hmax = S->fmax;
        if (isfinite(S->lo) && S->lo < S->hmin)
            S->hmin = S->lo;
        if (isfinite(S->hi) && S->hi > S->hmax)
            S->hmax = S->hi;
        if (!(S->hmax > S->hmin))
            S->hmax = S->hmin + 1;
    }
    for (int64_t b0 = 0; b0 < N; b0 += B) {
        int64_t cnt = N - b0 < B ? N - b0 : B;
        memcpy(qk_f32(&in->t), x + b0 * per, (size_t)(cnt * per) * sizeof(float));
        if ((st = qk_graph_set_batch(g, cnt)) != QK_OK ||
            (st = batch(r, cnt, labels ? labels + b0 : NULL, b0 == 0)) != QK_OK)
            return st;
    }
    for (int s = 0; s < ns; s++) {
        qk_analyze_site *S = &a->sites[s];
        int64_t tot = 0;
        for (int k = 0; k < QK_ANALYZE_BINS; k++)
            tot += S->hist[k];
        S->clipped = tot ? S->clipped / (double)tot : 0;
        S->sqnr_acc = acc_sqnr(&r->q[s]);
        S->cos_acc = acc_cos(&r->q[s]);
        S->sqnr_alone = S->active ? acc_sqnr(&r->alone[s]) : INFINITY;
        S->cos_alone = S->active ? acc_cos(&r->alone[s]) : 1;
        S->out_sqnr_alone = S->active ? acc_sqnr(&r->out_alone[s]) : INFINITY;
        if (S->active)
            a->rank[a->n_rank++] = s;
    }
    a->out_sqnr = acc_sqnr(&r->out);
    a->out_cos = acc_cos(&r->out);
    a->agree = N ? (double)r->same / N : 0;
    a->top1_float = labels && N ? (double)r->ok_f / N : -1;
    a->top1_quant = labels && N ? (double)r->ok_q / N : -1;
    a->n_images = N;
    rank_sites(a);
    return QK_OK;
}

void qk_analysis_destroy(qk_analysis *a)
{
    if (!a)
        return;
    qk_free(a->sites);
    qk_free(a->rank);
    qk_free(a);
}

qk_status qk_ptq_analyze(qk_qmodel *m, const qk_tensor *x, const int64_t *labels, qk_pool *pool,
                         qk_analysis **out)
{
    *out = NULL;
    if (!m || !x || x->dtype != QK_F32 || x->ndim < 1 || x->dims[0] < 1)
        return qk_error(QK_ERR_ARG, "analysis: a float32 input batch [N, ...] with N >= 1 is required");
    if (!m->calibrated || m->exported)
        return qk_error(QK_ERR_STATE, "analysis: the model must be calibrated and not yet converted to QDQ");
    if (m->g->n_inputs != 1 || m->g->n_outputs < 1)
        return qk_error(QK_ERR_UNSUPPORTED, "analysis: one image input and an output expected");
    int ns = m->n_sites;
    size_t n1 = (size_t)(ns ? ns : 1);
    qk_analysis *a = qk_calloc(1, sizeof *a);
    an_run r = { .m = m, .a = a };
    if (a) {
        a->sites = qk_calloc(n1, sizeof *a->sites);
        a->rank = qk_calloc(n1, sizeof *a->rank);
        a->n_sites = ns;
        snprintf(a->backend, sizeof a->backend, "%s", m->cfg.backend->name);
    }
    r.on = qk_calloc(n1, sizeof *r.on);
    r.probe = qk_calloc(n1, sizeof *r.probe);
    r.fbuf = qk_calloc(n1, sizeof *r.fbuf);
    r.q = qk_calloc(n1 * 3, sizeof *r.q);
    qk_status st;
    if (!a || !a->sites || !a->rank || !r.on || !r.probe || !r.fbuf || !r.q) {
        st = qk_error(QK_ERR_NOMEM, "analysis: out of memory");
        goto done;
    }
    r.alone = r.q + n1;
    r.out_alone = r.q + 2 * n1;
    for (int s = 0; s < ns; s++)
        r.on[s] = m->rt[s].mode;
    qk_plan_options saved = m->g->opts, o = saved;
    o.no_fuse = 1; /* every intermediate value is written */
    qk_graph_set_options(m->g, &o);
    st = analyze(&r, x, labels, pool);
    set_modes(m, r.on, -2);
    qk_graph_set_options(m->g, &saved);
done:
    if (m->g->planned)
        qk_graph_unplan(m->g);
    for (int s = 0; r.fbuf && s < ns; s++)
        qk_free(r.fbuf[s]);
    qk_free(r.fbuf);
    qk_free(r.flog);
    qk_free(r.on);
    qk_free(r.probe);
    qk_free(r.q);
    if (st != QK_OK)
        qk_analysis_destroy(a);
    else
        *out = a;
    return st;
}

qk_status qk_ptq_analyze_dataset(qk_qmodel *m, const qk_dataset *ds, qk_norm norm, int64_t n, qk_pool *pool,
                                 qk_analysis **out)
{
    *out = NULL;
    if (!ds || n < 1 || n > ds->n)
        return qk_error(QK_ERR_ARG, "analysis: %lld images asked, the dataset has %lld", (long long)n,
                        (long long)(ds ? ds->n : 0));
    qk_dataset view = qk_dataset_view(ds, 0, n);
    int64_t dims[4] = { n, qk_dataset_channels(ds), ds->h, ds->w };
    qk_tensor x;
    qk_status st = qk_tensor_alloc(&x, QK_F32, 4, dims);
    if (st != QK_OK)
        return st;
    int64_t *labels = qk_malloc((size_t)n * sizeof *labels);
    qk_batcher b;
    if (!labels)
        st = qk_error(QK_ERR_NOMEM, "analysis: out of memory");
    else if ((st = qk_batcher_init(&b, &view, n, 0, 0, norm, NULL)) == QK_OK) {
        int64_t got;
        st = qk_batcher_get(&b, 0, qk_f32(&x), labels, &got);
        qk_batcher_free(&b);
        if (st == QK_OK)
            st = qk_ptq_analyze(m, &x, labels, pool, out);
    }
    qk_free(labels);
    qk_tensor_free(&x);
    return st;
}

/* ------------------------------------------------ a calibrated model from a QDQ file */

static int find_node_reading(const qk_graph *g, const char *op, int v, int input)
{
    for (int k = 0; k < g->n_nodes; k++) {
        const qk_node *n = &g->nodes[k];
        if (qk_node_is(n, op) && n->n_in > input && n->in[input] == v)
            return k;
    }
    return -1;
}

static int64_t int_at(const qk_tensor *t, int64_t i)
{
    if (t->dtype == QK_I8)
        return ((const int8_t *)t->data)[i];
    if (t->dtype == QK_U8)
        return ((const uint8_t *)t->data)[i];
    return qk_tensor_int_at(t, i);
}

/* Scale and zero point inputs 1, 2 of a QuantizeLinear / DequantizeLinear node. */
static qk_status read_sz(const qk_graph *q, const qk_node *n, qk_fq_rt *rt, const char *site)
{
    const qk_value *sv = n->n_in > 1 && n->in[1] >= 0 ? &q->values[n->in[1]] : NULL;
    const qk_value *zv = n->n_in > 2 && n->in[2] >= 0 ? &q->values[n->in[2]] : NULL;
    if (!sv || !qk_value_is_initializer_with_data(sv) || sv->t.dtype != QK_F32)
        return qk_error(QK_ERR_FORMAT, "QDQ file: site '%s': the scale of node '%s' is not a float initializer",
                        site, n->name);
    int64_t nc = qk_tensor_numel(&sv->t);
    if (zv && (!qk_value_is_initializer_with_data(zv) || qk_tensor_numel(&zv->t) != nc))
        return qk_error(QK_ERR_FORMAT, "QDQ file: site '%s': zero point of node '%s' malformed", site, n->name);
    rt->scale = qk_realloc(rt->scale, (size_t)nc * sizeof *rt->scale);
    rt->zp = qk_realloc(rt->zp, (size_t)nc * sizeof *rt->zp);
    rt->qn = qk_realloc(rt->qn, (size_t)nc * sizeof *rt->qn);
    rt->qp = qk_realloc(rt->qp, (size_t)nc * sizeof *rt->qp);
    if (!rt->scale || !rt->zp || !rt->qn || !rt->qp)
        return qk_error(QK_ERR_NOMEM, "QDQ file: out of memory");
    rt->n_ch = nc;
    int is_u8 = !zv || zv->t.dtype == QK_U8;
    for (int64_t c = 0; c < nc; c++) {
        rt->scale[c] = qk_f32(&sv->t)[c];
        rt->zp[c] = zv ? (int32_t)int_at(&zv->t, c) : 0;
        rt->qn[c] = is_u8 ? 0 : -128;
        rt->qp[c] = is_u8 ? 255 : 127;
        if (!(rt->scale[c] > 0) || !isfinite(rt->scale[c]))
            return qk_error(QK_ERR_FORMAT, "QDQ file: site '%s': scale %g", site, (double)rt->scale[c]);
    }
    return QK_OK;
}

static qk_status load_act(qk_qmodel *m, int s, const qk_graph *q)
{
    qk_fq_rt *rt = &m->rt[s];
    const qk_qsite *t = &m->sites[s];
    int v = qk_graph_find_value(q, t->value);
    int k = v < 0 ? -1 : find_node_reading(q, "QuantizeLinear", v, 0);
    if (k < 0)
        return QK_OK; /* kept in float by the file (16-bit, NNIE): inactive */
    qk_status st = read_sz(q, &q->nodes[k], rt, t->value);
    if (st != QK_OK)
        return st;
    int c = find_node_reading(q, "Clip", q->nodes[k].out[0], 0);
    if (c >= 0) {
        const qk_node *n = &q->nodes[c];
        for (int i = 1; i <= 2 && i < n->n_in; i++) {
            const qk_value *b = n->in[i] >= 0 ? &q->values[n->in[i]] : NULL;
            if (!b || !qk_value_is_initializer_with_data(b) || qk_tensor_numel(&b->t) != 1)
                return qk_error(QK_ERR_FORMAT, "QDQ file: site '%s': Clip bounds of node '%s'", t->value, n->name);
            *(i == 1 ? rt->qn : rt->qp) = (int32_t)int_at(&b->t, 0);
        }
    }
    rt->axis = -1;
    rt->mode = QK_FQ_QUANT;
    return QK_OK;
}

static qk_status load_weight(qk_qmodel *m, int s, const qk_graph *q)
{
    qk_fq_rt *rt = &m->rt[s];
    const qk_qsite *t = &m->sites[s];
    qk_value *wv = &m->g->values[m->g->nodes[t->node].in[0]];
    int64_t numel = qk_tensor_numel(&wv->t);
    size_t ln = strlen(t->value) + 16;
    char *name = qk_malloc(ln);
    if (!name)
        return qk_error(QK_ERR_NOMEM, "QDQ file: out of memory");
    snprintf(name, ln, "%s_quantized", t->value);
    int v = qk_graph_find_value(q, name);
    qk_free(name);
    int k = v < 0 ? -1 : find_node_reading(q, "DequantizeLinear", v, 0);
    if (k < 0) { /* stored in float (a pre-quantized bias): take its values */
        int f = qk_graph_find_value(q, t->value);
        if (f >= 0 && qk_value_is_initializer_with_data(&q->values[f]) && q->values[f].t.dtype == QK_F32 &&
            qk_tensor_numel(&q->values[f].t) == numel && wv->t.dtype == QK_F32)
            memcpy(wv->t.data, q->values[f].t.data, (size_t)numel * sizeof(float));
        return QK_OK;
    }
    const qk_value *cv = &q->values[v];
    if (!qk_value_is_initializer_with_data(cv) || qk_tensor_numel(&cv->t) != numel)
        return qk_error(QK_ERR_FORMAT, "QDQ file: weight '%s': %lld codes, the layer has %lld weights", t->value,
                        (long long)qk_tensor_numel(&cv->t), (long long)numel);
    qk_status st = read_sz(q, &q->nodes[k], rt, t->value);
    if (st != QK_OK)
        return st;
    int32_t qn, qp;
    qk_quant_range(&t->qp, &qn, &qp);
    for (int64_t c = 0; c < rt->n_ch; c++) {
        rt->qn[c] = qn;
        rt->qp[c] = qp;
    }
    int64_t axis = qk_node_int(&q->nodes[k], "axis", 1), inner = 1;
    if (rt->n_ch > 1) {
        if (axis < 0 || axis >= wv->t.ndim || wv->t.dims[axis] != rt->n_ch)
            return qk_error(QK_ERR_FORMAT, "QDQ file: weight '%s': %lld scales on axis %lld", t->value,
                            (long long)rt->n_ch, (long long)axis);
        for (int d = (int)axis + 1; d < wv->t.ndim; d++)
            inner *= wv->t.dims[d];
    }
    rt->codes = qk_realloc(rt->codes, (size_t)numel * sizeof *rt->codes);
    rt->cst = qk_realloc(rt->cst, (size_t)numel * sizeof *rt->cst);
    if (!rt->codes || !rt->cst)
        return qk_error(QK_ERR_NOMEM, "QDQ file: out of memory");
    rt->cst_n = numel;
    for (int64_t i = 0; i < numel; i++) {
        int64_t c = rt->n_ch > 1 ? (i / inner) % rt->n_ch : 0;
        rt->codes[i] = (int32_t)int_at(&cv->t, i);
        rt->cst[i] = (float)(rt->codes[i] - rt->zp[c]) * rt->scale[c];
    }
    rt->axis = rt->n_ch > 1 ? (int)axis : -1;
    rt->mode = QK_FQ_CONST;
    return QK_OK;
}

static int meta_int(const qk_graph *q, const char *key)
{
    const char *s = qk_graph_get_meta(q, key);
    return s ? atoi(s) : 0;
}

qk_status qk_ptq_from_qdq(qk_graph *float_g, const qk_graph *qdq, qk_qmodel **out)
{
    *out = NULL;
    const char *bn = qk_graph_get_meta(qdq, "qkit.backend");
    if (!bn || !qk_graph_get_meta(qdq, "qkit.quantized")) {
        qk_graph_destroy(float_g);
        return qk_error(QK_ERR_FORMAT, "QDQ file: no qkit metadata (qkit.backend); analyze takes files "
                        "written by qkit ptq");
    }
    qk_ptq_config c;
    qk_ptq_config_default(&c);
    if (!(c.backend = qk_backend_find(bn))) {
        qk_graph_destroy(float_g);
        return QK_ERR_FORMAT;
    }
    c.wbits = meta_int(qdq, "qkit.wbits");
    c.abits = meta_int(qdq, "qkit.abits");
    /* the float model the file was quantized from: equalized as it was (files
       without the key were not), so the float reference matches the file */
    c.cle = meta_int(qdq, "qkit.cle") ? 1 : -1;
    c.cle_relu6 = c.cle > 0 && meta_int(qdq, "qkit.cle_relu6");
    c.bias_correct = meta_int(qdq, "qkit.bias_correct") ? 1 : -1; /* (reported; its biases are copied below) */
    qk_qmodel *m;
    qk_status st = qk_ptq_prepare(float_g, &c, &m);
    if (st != QK_OK)
        return qk_error_context(st, "rebuilding the model of the QDQ file");
    for (int s = 0; s < m->n_sites && st == QK_OK; s++)
        st = m->sites[s].is_weight ? load_weight(m, s, qdq) : load_act(m, s, qdq);
    /* float initializers the file changed (bias correction) */
    for (int i = 0; i < m->g->n_values && st == QK_OK; i++) {
        qk_value *v = &m->g->values[i];
        if (!qk_value_is_initializer_with_data(v) || v->t.dtype != QK_F32)
            continue;
        int f = qk_graph_find_value(qdq, v->name);
        const qk_value *fv = f < 0 ? NULL : &qdq->values[f];
        if (fv && qk_value_is_initializer_with_data(fv) && fv->t.dtype == QK_F32 &&
            qk_tensor_numel(&fv->t) == qk_tensor_numel(&v->t))
            memcpy(v->t.data, fv->t.data, (size_t)qk_tensor_numel(&v->t) * sizeof(float));
    }
    if (st != QK_OK) {
        qk_qmodel_destroy(m);
        return st;
    }
    m->calib_begun = m->calibrated = 1;
    *out = m;
    return QK_OK;
}
