/* Mixed precision (analyze.h): per-layer weight-width sensitivity measured
 * at the network output, and a greedy multiple-choice knapsack under a
 * budget of average weight bits or weight-code bytes. */
#include "ptq_internal.h"
#include "qkit/analyze.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void qk_mp_result_free(qk_mp_result *r)
{
    if (!r)
        return;
    qk_free(r->layers);
    memset(r, 0, sizeof *r);
}

/* The widths to try, ascending. */
static int mp_widths(const qk_qmodel *m, const qk_mp_config *c, int *w)
{
    const qk_backend *b = m->cfg.backend;
    int n = 0;
    if (c->n_widths > 0) {
        for (int i = 0; i < c->n_widths && i < 16; i++)
            w[n++] = c->widths[i];
    } else {
        for (int k = b->wbits_min; k <= b->wbits_max && k <= 8 && n < 16; k++)
            w[n++] = k;
    }
    for (int i = 1; i < n; i++) /* insertion sort */
        for (int j = i; j > 0 && w[j - 1] > w[j]; j--) {
            int t = w[j];
            w[j] = w[j - 1];
            w[j - 1] = t;
        }
    return n;
}

static int64_t layer_params(const qk_qmodel *m, int l)
{
    return qk_tensor_numel(&m->g->values[m->g->nodes[m->sites[m->layers[l].w_site].node].in[0]].t);
}

/* Budget in bit-parameters (sum params * bits). */
static double mp_budget(const qk_qmodel *m, const qk_mp_config *c)
{
    if (c->max_bytes > 0)
        return 8.0 * (double)c->max_bytes;
    double P = 0;
    for (int l = 0; l < m->n_layers; l++)
        P += (double)layer_params(m, l);
    return c->avg_bits * P;
}

qk_status qk_ptq_mp_check(const qk_qmodel *m, const qk_mp_config *c)
{
    const qk_backend *b = m->cfg.backend;
    if (b->wbits_min >= b->wbits_max || (b->wbits_min >= 8 && b->wbits_max <= 8))
        return qk_error(QK_ERR_UNSUPPORTED, "--mp-budget: profile '%s' allows only %d-bit weights; per-layer "
                        "bit-widths need a profile with several (academic, tvm, openvino)", b->name, b->wbits_min);
    if (m->cfg.bit_alloc & QK_BITALLOC_W)
        return qk_error(QK_ERR_UNSUPPORTED, "--mp-budget: not with per-channel weight bit allocation (--bit-alloc)");
    if (m->cfg.bias_correct)
        return qk_error(QK_ERR_UNSUPPORTED, "--mp-budget: not with --bias-correct (asked, or profile '%s''s "
                        "default: bias_correct = -1 switches it off)", b->name);
    if (!(c->avg_bits > 0) && !(c->max_bytes > 0))
        return qk_error(QK_ERR_ARG, "--mp-budget: a positive average width or byte count is required");
    int w[16], n = mp_widths(m, c, w);
    if (n < 1)
        return qk_error(QK_ERR_ARG, "--mp-budget: no weight widths to choose from");
    for (int i = 0; i < n; i++)
        if (w[i] < b->wbits_min || w[i] > b->wbits_max)
            return qk_error(QK_ERR_UNSUPPORTED, "--mp-budget: width %d outside profile '%s' (%d..%d)", w[i], b->name,
                            b->wbits_min, b->wbits_max);
    double P = 0;
    for (int l = 0; l < m->n_layers; l++)
        P += (double)layer_params(m, l);
    double need = P * w[0], have = mp_budget(m, c);
    if (have + 1e-9 < need) {
        if (c->max_bytes > 0)
            return qk_error(QK_ERR_ARG, "--mp-budget: %lld bytes is below the %.0f bytes of every layer at %d bits "
                            "(the lowest width profile '%s' allows)", (long long)c->max_bytes, need / 8, w[0], b->name);
        return qk_error(QK_ERR_ARG, "--mp-budget: %g bits is below the lowest width profile '%s' allows (%d)",
                        c->avg_bits, b->name, w[0]);
    }
    return QK_OK;
}

/* Output MSE of the network against flog (float logits) on x with the
 * current modes. */
static qk_status out_mse(qk_qmodel *m, const qk_tensor *x, int64_t B, const float *flog, double *mse, double *sqnr)
{
    qk_graph *g = m->g;
    int64_t N = x->dims[0], per = qk_tensor_numel(x) / N;
    double ee = 0, xx = 0, cnt = 0;
    for (int64_t b0 = 0; b0 < N; b0 += B) {
        int64_t c = N - b0 < B ? N - b0 : B;
        memcpy(qk_f32(&g->values[g->inputs[0]].t), qk_f32(x) + b0 * per, (size_t)(c * per) * sizeof(float));
        qk_status st = qk_graph_set_batch(g, c);
        if (st != QK_OK || (st = qk_graph_forward(g)) != QK_OK)
            return st;
        const qk_tensor *y = &g->values[g->outputs[0]].t;
        int64_t n = qk_tensor_numel(y);
        const float *q = qk_f32(y), *f = flog + b0 * (n / c);
        for (int64_t i = 0; i < n; i++) {
            double d = (double)q[i] - f[i];
            ee += d * d;
            xx += (double)f[i] * f[i];
        }
        cnt += (double)n;
    }
    *mse = cnt > 0 ? ee / cnt : 0;
    *sqnr = ee > 0 ? 10 * log10(xx / ee) : INFINITY;
    return QK_OK;
}

static qk_status float_logits(qk_qmodel *m, const qk_tensor *x, int64_t B, float **out)
{
    qk_graph *g = m->g;
    int64_t N = x->dims[0], per = qk_tensor_numel(x) / N;
    float *fl = NULL;
    for (int64_t b0 = 0; b0 < N; b0 += B) {
        int64_t c = N - b0 < B ? N - b0 : B;
        memcpy(qk_f32(&g->values[g->inputs[0]].t), qk_f32(x) + b0 * per, (size_t)(c * per) * sizeof(float));
        qk_status st = qk_graph_set_batch(g, c);
        if (st != QK_OK || (st = qk_graph_forward(g)) != QK_OK) {
            qk_free(fl);
            return st;
        }
        const qk_tensor *y = &g->values[g->outputs[0]].t;
        int64_t k = qk_tensor_numel(y) / c;
        if (!fl && !(fl = qk_malloc((size_t)(N * k) * sizeof *fl)))
            return qk_error(QK_ERR_NOMEM, "mixed precision: out of memory");
        memcpy(fl + b0 * k, y->data, (size_t)(c * k) * sizeof *fl);
    }
    *out = fl;
    return QK_OK;
}

/* Greedy assignment: all at the widest, lower the cheapest (least error
 * increase per bit saved) until the budget holds, then raise the most
 * useful while bits are left. idx[l]: index into w. */
static void assign(qk_mp_result *r, const int *w, int nw, double budget, int *idx)
{
    double used = 0;
    for (int l = 0; l < r->n_layers; l++) {
        idx[l] = nw - 1;
        used += (double)r->layers[l].params * w[nw - 1];
    }
    while (used > budget + 1e-9) {
        int best = -1;
        double br = INFINITY;
        for (int l = 0; l < r->n_layers; l++) {
            int k = idx[l];
            if (k == 0)
                continue;
            double save = (double)r->layers[l].params * (w[k] - w[k - 1]);
            double ratio = (r->layers[l].mse[k - 1] - r->layers[l].mse[k]) / save;
            if (ratio < br) {
                br = ratio;
                best = l;
            }
        }
        if (best < 0)
            break;
        used -= (double)r->layers[best].params * (w[idx[best]] - w[idx[best] - 1]);
        idx[best]--;
    }
    for (;;) {
        int best = -1;
        double br = 0;
        for (int l = 0; l < r->n_layers; l++) {
            int k = idx[l];
            if (k == nw - 1)
                continue;
            double cost = (double)r->layers[l].params * (w[k + 1] - w[k]);
            if (used + cost > budget + 1e-9)
                continue;
            double ratio = (r->layers[l].mse[k] - r->layers[l].mse[k + 1]) / cost;
            if (ratio > br) {
                br = ratio;
                best = l;
            }
        }
        if (best < 0)
            break;
        used += (double)r->layers[best].params * (w[idx[best] + 1] - w[idx[best]]);
        idx[best]++;
    }
}

qk_status qk_ptq_mixed_precision(qk_qmodel *m, const qk_tensor *x, const qk_mp_config *c, qk_pool *pool,
                                 qk_mp_result *r)
{
    memset(r, 0, sizeof *r);
    qk_status st = qk_ptq_mp_check(m, c);
    if (st != QK_OK)
        return st;
    if (!m->calibrated || m->exported)
        return qk_error(QK_ERR_STATE, "mixed precision: the model must be calibrated and not yet converted");
    if (!x || x->dtype != QK_F32 || x->ndim < 1 || x->dims[0] < 1)
        return qk_error(QK_ERR_ARG, "mixed precision: a float32 input batch [N, ...] is required");
    int w[16], nw = mp_widths(m, c, w), ns = m->n_sites;
    r->n_widths = nw;
    memcpy(r->widths, w, sizeof w);
    r->n_layers = m->n_layers;
    r->layers = qk_calloc((size_t)(m->n_layers ? m->n_layers : 1), sizeof *r->layers);
    qk_fq_mode *on = qk_calloc((size_t)(ns ? ns : 1), sizeof *on);
    int *idx = qk_calloc((size_t)(m->n_layers ? m->n_layers : 1), sizeof *idx);
    float *flog = NULL;
    char *meta = qk_malloc((size_t)m->n_layers * 4 + 8);
    if (!r->layers || !on || !idx || !meta) {
        st = qk_error(QK_ERR_NOMEM, "mixed precision: out of memory");
        goto done;
    }
    for (int s = 0; s < ns; s++) {
        on[s] = m->rt[s].mode;
        m->rt[s].mode = QK_FQ_OFF;
    }
    int64_t B = x->dims[0] < 64 ? x->dims[0] : 64;
    if ((st = qk_graph_plan(m->g, B, 0, pool)) != QK_OK)
        goto done;
    B = m->g->max_batch; /* a model with a fixed batch runs at that batch */
    if ((st = float_logits(m, x, B, &flog)) != QK_OK)
        goto done;
    for (int l = 0; l < m->n_layers; l++) {
        int s = m->layers[l].w_site;
        qk_mp_layer *L = &r->layers[l];
        L->weight = m->sites[s].value;
        L->params = layer_params(m, l);
        for (int k = 0; k < nw; k++) {
            if ((st = qk_ptq_requantize_weight(m, s, w[k])) != QK_OK)
                goto done;
            m->rt[s].mode = QK_FQ_CONST;
            if ((st = out_mse(m, x, B, flog, &L->mse[k], &L->sqnr[k])) != QK_OK)
                goto done;
            m->rt[s].mode = QK_FQ_OFF;
        }
    }
    assign(r, w, nw, mp_budget(m, c), idx);
    double bp = 0, P = 0;
    size_t off = 0;
    for (int l = 0; l < m->n_layers; l++) {
        qk_mp_layer *L = &r->layers[l];
        L->bits = w[idx[l]];
        bp += (double)L->params * L->bits;
        P += (double)L->params;
        if ((st = qk_ptq_requantize_weight(m, m->layers[l].w_site, L->bits)) != QK_OK)
            goto done;
        off += (size_t)sprintf(meta + off, "%s%d", l ? "," : "", L->bits);
    }
    qk_ptq_snap_bias(m);
    r->avg_bits = P > 0 ? bp / P : 0;
    r->bytes = (int64_t)ceil(bp / 8);
    st = qk_graph_set_meta(m->g, "qkit.mp_bits", meta);
done:
    for (int s = 0; on && s < ns; s++)
        m->rt[s].mode = on[s];
    if (m->g->planned)
        qk_graph_unplan(m->g);
    qk_free(on);
    qk_free(idx);
    qk_free(flog);
    qk_free(meta);
    if (st != QK_OK)
        qk_mp_result_free(r);
    return st;
}

qk_status qk_ptq_mixed_precision_dataset(qk_qmodel *m, const qk_dataset *ds, qk_norm norm, int64_t n,
                                         const qk_mp_config *c, qk_pool *pool, qk_mp_result *r)
{
    memset(r, 0, sizeof *r);
    if (!ds || n < 1 || ds->n < 1)
        return qk_error(QK_ERR_ARG, "mixed precision: no images for the sensitivity");
    n = n < ds->n ? n : ds->n;
    qk_dataset view = qk_dataset_view(ds, 0, n);
    int64_t dims[4] = { n, qk_dataset_channels(ds), ds->h, ds->w };
    qk_tensor x;
    qk_batcher b;
    qk_status st = qk_tensor_alloc(&x, QK_F32, 4, dims);
    if (st != QK_OK)
        return st;
    if ((st = qk_batcher_init(&b, &view, n, 0, 0, norm, NULL)) == QK_OK) {
        int64_t got;
        st = qk_batcher_get(&b, 0, qk_f32(&x), NULL, &got);
        qk_batcher_free(&b);
        if (st == QK_OK)
            st = qk_ptq_mixed_precision(m, &x, c, pool, r);
    }
    qk_tensor_free(&x);
    return st;
}
