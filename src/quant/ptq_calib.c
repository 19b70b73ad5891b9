/* PTQ calibration and its passes (ptq.h): activation observers on the
 * float activations of N images, weight quantization, ACIQ per-channel bit
 * allocation (docs/ALGORITHMS.md §3) and bias correction.
 *
 * Bias correction, as qkit does it (deployable, no off-grid weights):
 *   1. variance (ACIQ eq. 13, per output channel c): xi_c = std(W_c) /
 *      std(W~_c) multiplies the channel's scale, so the codes stay integers;
 *   2. mean (the empirical variant): with eps = W~ - W and x_bar the
 *      calibration mean of the layer's input (per element of one sample),
 *      the output mean moves by delta_c = mean over output positions of
 *      conv(x_bar, eps)_c (exact for a linear layer, padding included);
 *      delta_c is subtracted from the bias (or added to the running mean
 *      of a BatchNormalization that follows an unfolded conv). This
 *      subsumes ACIQ's weight-mean term mu_c, which is only the special
 *      case of a constant input. */
#include "ptq_internal.h"

#include <float.h>
#include <math.h>
#include <string.h>


/* Channel index of element i for a per-channel layout. */
static inline int64_t chan_of(int64_t i, int64_t ch, int64_t inner) { return (i / inner) % ch; }

static qk_status rt_alloc(qk_fq_rt *rt, int64_t n)
{
    rt->scale = qk_realloc(rt->scale, (size_t)n * sizeof *rt->scale);
    rt->zp = qk_realloc(rt->zp, (size_t)n * sizeof *rt->zp);
    rt->qn = qk_realloc(rt->qn, (size_t)n * sizeof *rt->qn);
    rt->qp = qk_realloc(rt->qp, (size_t)n * sizeof *rt->qp);
    if (!rt->scale || !rt->zp || !rt->qn || !rt->qp)
        return qk_error(QK_ERR_NOMEM, "calibration: out of memory");
    rt->n_ch = n;
    return QK_OK;
}

/* Per-tensor activation parameters from the site's quantizer. */
static qk_status act_params(qk_qmodel *m, int s)
{
    qk_fq_rt *rt = &m->rt[s];
    qk_qsite *t = &m->sites[s];
    qk_observer *o = qk_quantizer_observer(rt->q);
    if (qk_observer_channels(o) != 1)
        return qk_error(QK_ERR_STATE, "quantizer '%s': no calibration data reached it", t->value);
    qk_status st = rt_alloc(rt, 1);
    if (st != QK_OK || (st = qk_observer_qparams(o, rt->scale, rt->zp)) != QK_OK)
        return qk_error_context(st, "quantizer '%s'", t->value);
    qk_quant_range(&t->qp, &rt->qn[0], &rt->qp[0]);
    if (t->qp.bits == 8) { /* ONNX QuantizeLinear (and TensorRT) saturate to the container, narrow or not */
        rt->qn[0] = t->qp.is_signed ? -128 : 0;
        rt->qp[0] = t->qp.is_signed ? 127 : 255;
    }
    rt->axis = -1;
    return QK_OK;
}

/* ACIQ bit allocation for one activation site from its per-channel
 * statistics: bits by the channel std (docs/ALGORITHMS.md §3), ranges by
 * the ACIQ clip of each channel (aciq-* observers) or its min/max. */
static qk_status act_bit_alloc(qk_qmodel *m, int s)
{
    qk_chstat *cs = &m->chstat[s];
    qk_fq_rt *rt = &m->rt[s];
    qk_qsite *t = &m->sites[s];
    int64_t C = cs->n_ch;
    double *alpha = qk_malloc((size_t)C * sizeof *alpha);
    int *bits = qk_malloc((size_t)C * sizeof *bits);
    qk_status st = alpha && bits ? rt_alloc(rt, C) : qk_error(QK_ERR_NOMEM, "bit allocation: out of memory");
    if (st != QK_OK)
        goto done;
    double cnt = (double)cs->count;
    for (int64_t c = 0; c < C; c++) {
        double mu = cs->sum[c] / cnt, var = cs->sum2[c] / cnt - mu * mu;
        alpha[c] = var > 0 ? sqrt(var) : 0.0;
    }
    st = qk_aciq_bit_alloc(C, alpha, t->qp.bits, 2, 8, bits, NULL);
    if (st != QK_OK) {
        st = qk_error_context(st, "activation bit allocation of '%s'", t->value);
        goto done;
    }
    int aciq = strncmp(t->observer, "aciq", 4) == 0, gauss = strcmp(t->observer, "aciq-gauss") == 0;
    for (int64_t c = 0; c < C; c++) {
        double mu = cs->sum[c] / cnt, sd = alpha[c];
        double lo = cs->mn[c], hi = cs->mx[c];
        qk_qparams q = t->qp;
        q.bits = bits[c];
        q.per_channel = 0;
        if (aciq && sd > 0) {
            double scale = gauss ? sd : sd / sqrt(2.0); /* Laplace b = std / sqrt(2) */
            int one = lo >= 0;
            double a = qk_aciq_alpha(gauss ? QK_ACIQ_GAUSS : QK_ACIQ_LAPLACE, bits[c], one) * scale;
            double nlo, nhi;
            if (one) {
                nlo = 0;
                nhi = (mu > 0 ? mu : 0) + a;
            } else {
                nlo = mu - a > lo ? mu - a : lo;
                nhi = nlo + 2 * a;
            }
            if (nhi < hi)
                hi = nhi;
            if (nlo > lo)
                lo = nlo;
        }
        if ((st = qk_qparams_compute(&q, (float)lo, (float)hi, &rt->scale[c], &rt->zp[c])) != QK_OK)
            goto done;
        qk_quant_range(&q, &rt->qn[c], &rt->qp[c]);
        t->qp.per_channel = 1;
        t->qp.axis = 1;
    }
    rt->axis = 1;
done:
    qk_free(alpha);
    qk_free(bits);
    return st;
}

static void chstat_update(qk_chstat *cs, const qk_tensor *x)
{
    int64_t N = x->dims[0], C = x->dims[1], inner = 1;
    for (int d = 2; d < x->ndim; d++)
        inner *= x->dims[d];
    const float *p = qk_f32(x);
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) {
            const float *q = p + (n * C + c) * inner;
            double s = 0, s2 = 0;
            float mn = cs->mn[c], mx = cs->mx[c];
            for (int64_t i = 0; i < inner; i++) {
                s += q[i];
                s2 += (double)q[i] * q[i];
                mn = q[i] < mn ? q[i] : mn;
                mx = q[i] > mx ? q[i] : mx;
            }
            cs->sum[c] += s;
            cs->sum2[c] += s2;
            cs->mn[c] = mn;
            cs->mx[c] = mx;
        }
    cs->count += N * inner;
}

static qk_status chstat_init(qk_chstat *cs, int64_t C)
{
    cs->n_ch = C;
    cs->sum = qk_calloc((size_t)C, sizeof *cs->sum);
    cs->sum2 = qk_calloc((size_t)C, sizeof *cs->sum2);
    cs->mn = qk_malloc((size_t)C * sizeof *cs->mn);
    cs->mx = qk_malloc((size_t)C * sizeof *cs->mx);
    if (!cs->sum || !cs->sum2 || !cs->mn || !cs->mx)
        return qk_error(QK_ERR_NOMEM, "calibration: out of memory");
    for (int64_t c = 0; c < C; c++) {
        cs->mn[c] = INFINITY;
        cs->mx[c] = -INFINITY;
    }
    return QK_OK;
}

/* The weight (or bias) initializer behind a FakeQuant node. */
static qk_value *site_param(qk_qmodel *m, int s) { return &m->g->values[m->g->nodes[m->sites[s].node].in[0]]; }

static void layout(const qk_tensor *t, int axis, int per_channel, int64_t *ch, int64_t *inner)
{
    *ch = 1;
    *inner = qk_tensor_numel(t);
    if (per_channel) {
        *ch = t->dims[axis];
        *inner = 1;
        for (int d = axis + 1; d < t->ndim; d++)
            *inner *= t->dims[d];
    }
}

/* cst = (codes - z) s. */
static void dequant_codes(qk_fq_rt *rt, int64_t inner)
{
    for (int64_t i = 0; i < rt->cst_n; i++) {
        int64_t c = rt->n_ch == 1 ? 0 : chan_of(i, rt->n_ch, inner);
        rt->cst[i] = (float)(rt->codes[i] - rt->zp[c]) * rt->scale[c];
    }
}

static qk_status quantize_weight(qk_qmodel *m, int s)
{
    qk_qsite *t = &m->sites[s];
    qk_fq_rt *rt = &m->rt[s];
    qk_value *wv = site_param(m, s);
    const qk_tensor *W = &wv->t;
    int64_t numel = qk_tensor_numel(W);
    qk_status st;
    rt->cst = qk_realloc(rt->cst, (size_t)numel * sizeof *rt->cst);
    if (!rt->cst)
        return qk_error(QK_ERR_NOMEM, "weight quantization: out of memory");
    rt->cst_n = numel;
    qk_tensor y = *W;
    y.data = rt->cst;
    y.owned = 0;
    qk_quantizer_set_calibrating(rt->q, 1);
    qk_observer_reset(qk_quantizer_observer(rt->q));
    if ((st = qk_quantizer_run(rt->q, W, &y, NULL)) != QK_OK)
        return qk_error_context(st, "%s", t->reason);
    qk_quantizer_set_calibrating(rt->q, 0);
    rt->mode = QK_FQ_CONST;
    if (rt->via_quantizer)
        return QK_OK; /* a hook or the NNIE code made cst; there are no codes */
    int64_t ch, inner;
    layout(W, t->qp.axis, t->qp.per_channel, &ch, &inner);
    if ((st = rt_alloc(rt, ch)) != QK_OK)
        return st;
    rt->axis = t->qp.per_channel ? t->qp.axis : -1;
    int64_t n;
    const float *sc;
    const int32_t *zp;
    qk_quantizer_params(rt->q, &n, &sc, &zp);
    if (n != ch)
        return qk_error(QK_ERR_STATE, "weight '%s': %lld quantizer channels, expected %lld", t->value, (long long)n,
                        (long long)ch);
    for (int64_t c = 0; c < ch; c++) {
        rt->scale[c] = sc[c];
        rt->zp[c] = zp[c];
        qk_quant_range(&t->qp, &rt->qn[c], &rt->qp[c]);
    }
    const float *w = qk_f32(W);
    if ((m->cfg.bit_alloc & QK_BITALLOC_W) && ch > 1) {
        double *alpha = qk_malloc((size_t)ch * sizeof *alpha);
        double *s1 = qk_calloc((size_t)ch, sizeof *s1), *s2 = qk_calloc((size_t)ch, sizeof *s2);
        int *bits = qk_malloc((size_t)ch * sizeof *bits);
        float *mn = qk_malloc((size_t)ch * sizeof *mn), *mx = qk_malloc((size_t)ch * sizeof *mx);
        st = alpha && s1 && s2 && bits && mn && mx ? QK_OK : qk_error(QK_ERR_NOMEM, "bit allocation: out of memory");
        if (st == QK_OK) {
            double per = (double)numel / (double)ch;
            for (int64_t i = 0; i < numel; i++) {
                int64_t c = chan_of(i, ch, inner);
                s1[c] += w[i];
                s2[c] += (double)w[i] * w[i];
            }
            for (int64_t c = 0; c < ch; c++) {
                double mu = s1[c] / per, var = s2[c] / per - mu * mu;
                alpha[c] = var > 0 ? sqrt(var) : 0;
            }
            st = qk_aciq_bit_alloc(ch, alpha, t->qp.bits, 2, 8, bits, NULL);
        }
        if (st == QK_OK)
            st = qk_observer_range(qk_quantizer_observer(rt->q), mn, mx);
        for (int64_t c = 0; st == QK_OK && c < ch; c++) {
            qk_qparams q = t->qp;
            q.bits = bits[c];
            q.per_channel = 0;
            st = qk_qparams_compute(&q, mn[c], mx[c], &rt->scale[c], &rt->zp[c]);
            qk_quant_range(&q, &rt->qn[c], &rt->qp[c]);
        }
        qk_free(alpha);
        qk_free(s1);
        qk_free(s2);
        qk_free(bits);
        qk_free(mn);
        qk_free(mx);
        if (st != QK_OK)
            return qk_error_context(st, "weight bit allocation of '%s'", t->value);
    }
    rt->codes = qk_realloc(rt->codes, (size_t)numel * sizeof *rt->codes);
    if (!rt->codes)
        return qk_error(QK_ERR_NOMEM, "weight quantization: out of memory");
    for (int64_t i = 0; i < numel; i++) {
        int64_t c = ch == 1 ? 0 : chan_of(i, ch, inner);
        float v = w[i] / rt->scale[c];
        float r = v != v ? (float)rt->zp[c] : qk_round_f(v, t->qp.round) + (float)rt->zp[c];
        r = r < (float)rt->qn[c] ? (float)rt->qn[c] : r > (float)rt->qp[c] ? (float)rt->qp[c] : r;
        rt->codes[i] = (int32_t)r;
    }
    dequant_codes(rt, inner);
    /* ACIQ variance correction: xi_c into the channel scale */
    if (m->cfg.bias_correct && ch > 1) {
        double *a1 = qk_calloc((size_t)ch * 4, sizeof *a1);
        if (!a1)
            return qk_error(QK_ERR_NOMEM, "bias correction: out of memory");
        double *a2 = a1 + ch, *b1 = a2 + ch, *b2 = b1 + ch, per = (double)numel / (double)ch;
        for (int64_t i = 0; i < numel; i++) {
            int64_t c = chan_of(i, ch, inner);
            a1[c] += w[i];
            a2[c] += (double)w[i] * w[i];
            b1[c] += rt->cst[i];
            b2[c] += (double)rt->cst[i] * rt->cst[i];
        }
        for (int64_t c = 0; c < ch; c++) {
            double va = a2[c] / per - (a1[c] / per) * (a1[c] / per);
            double vb = b2[c] / per - (b1[c] / per) * (b1[c] / per);
            double xi = sqrt(va > 0 ? va : 0) / (sqrt(vb > 0 ? vb : 0) + 1e-8);
            if (vb > 0 && xi > 0 && isfinite(xi))
                rt->scale[c] = (float)(rt->scale[c] * xi);
        }
        qk_free(a1);
        dequant_codes(rt, inner);
    }
    return QK_OK;
}

/* S[c][a][b]: the sum of the input mean x (C x H x Wd) that tap (a, b) of
 * a convolution reads over all output positions (padding reads zeros). */
static void conv_tap_sums(const double *x, int64_t C, int64_t H, int64_t Wd, int64_t kh, int64_t kw, int64_t Ho,
                          int64_t Wo, const int64_t *st, const int64_t *dl, const int64_t *pd, double *S)
{
    for (int64_t c = 0; c < C; c++)
        for (int64_t a = 0; a < kh; a++)
            for (int64_t b = 0; b < kw; b++) {
                const double *xp = x + c * H * Wd;
                double s = 0;
                for (int64_t oh = 0; oh < Ho; oh++) {
                    int64_t ih = oh * st[0] - pd[0] + a * dl[0];
                    if (ih < 0 || ih >= H)
                        continue;
                    for (int64_t ow = 0; ow < Wo; ow++) {
                        int64_t iw = ow * st[1] - pd[1] + b * dl[1];
                        if (iw >= 0 && iw < Wd)
                            s += xp[ih * Wd + iw];
                    }
                }
                S[(c * kh + a) * kw + b] = s;
            }
}

/* Output-mean shift per output channel of layer L: delta = layer(x_bar, eps)
 * averaged over output positions, eps = cst - W. */
static qk_status mean_shift(qk_qmodel *m, const qk_qlayer *L, double *delta)
{
    qk_graph *g = m->g;
    const qk_node *n = &g->nodes[L->node];
    const qk_fq_rt *rt = &m->rt[L->w_site];
    const qk_tensor *W = &site_param(m, L->w_site)->t;
    const float *w = qk_f32(W), *wq = rt->cst;
    const double *x = L->in_mean;
    int64_t Co = L->n_out;
    memset(delta, 0, (size_t)Co * sizeof *delta);
    if (qk_node_is(n, "Conv")) {
        const qk_tensor *X = &g->values[n->in[0]].t;
        if (W->ndim != 4 || X->ndim != 4)
            return QK_OK; /* 2-D convolutions only */
        int64_t grp = qk_node_int(n, "group", 1), Cin = X->dims[1], H = X->dims[2], Wd = X->dims[3];
        int64_t Cg = W->dims[1], kh = W->dims[2], kw = W->dims[3], Cog = Co / grp;
        int64_t st[2] = { 1, 1 }, dl[2] = { 1, 1 }, pd[4] = { 0, 0, 0, 0 };
        qk_node_ints(n, "strides", st, 2);
        qk_node_ints(n, "dilations", dl, 2);
        qk_node_ints(n, "pads", pd, 4);
        int64_t Ho = (H + pd[0] + pd[2] - dl[0] * (kh - 1) - 1) / st[0] + 1;
        int64_t Wo = (Wd + pd[1] + pd[3] - dl[1] * (kw - 1) - 1) / st[1] + 1;
        if (Ho <= 0 || Wo <= 0 || Cg * grp != Cin)
            return QK_OK;
        double *S = qk_malloc((size_t)(Cin * kh * kw) * sizeof *S);
        if (!S)
            return qk_error(QK_ERR_NOMEM, "bias correction: out of memory");
        conv_tap_sums(x, Cin, H, Wd, kh, kw, Ho, Wo, st, dl, pd, S);
        for (int64_t co = 0; co < Co; co++) {
            int64_t gi = co / Cog;
            double acc = 0;
            for (int64_t ci = 0; ci < Cg; ci++)
                for (int64_t t = 0; t < kh * kw; t++) {
                    int64_t wi = (co * Cg + ci) * kh * kw + t;
                    double e = (double)wq[wi] - w[wi];
                    if (e != 0)
                        acc += e * S[(gi * Cg + ci) * kh * kw + t];
                }
            delta[co] = acc / (double)(Ho * Wo);
        }
        qk_free(S);
        return QK_OK;
    }
    /* Gemm / MatMul on a flat input of K elements */
    int64_t K = qk_tensor_numel(W) / Co;
    if (L->in_numel != K)
        return QK_OK;
    for (int64_t i = 0; i < qk_tensor_numel(W); i++) {
        int64_t co = L->w_axis == 0 ? i / K : i % Co, k = L->w_axis == 0 ? i % K : i / Co;
        delta[co] += ((double)wq[i] - w[i]) * x[k];
    }
    if (qk_node_is(n, "Gemm")) {
        double alpha = qk_node_float(n, "alpha", 1.0f);
        for (int64_t c = 0; c < Co; c++)
            delta[c] *= alpha;
    }
    return QK_OK;
}

/* Subtract delta from the layer's bias (or shift a following BN's mean;
 * or add a bias input). */
static qk_status apply_shift(qk_qmodel *m, const qk_qlayer *L, const double *delta)
{
    qk_graph *g = m->g;
    qk_node *n = &g->nodes[L->node];
    int64_t Co = L->n_out;
    int bv = n->n_in > 2 ? n->in[2] : -1;
    if (bv >= 0 && g->values[bv].producer >= 0) /* a bias FakeQuant (vitis): its initializer */
        bv = g->nodes[g->values[bv].producer].in[0];
    if (bv >= 0) {
        qk_value *b = &g->values[bv];
        if (b->t.dtype != QK_F32 || qk_tensor_numel(&b->t) != Co)
            return QK_OK;
        float *p = qk_f32(&b->t);
        double beta = qk_node_is(n, "Gemm") ? qk_node_float(n, "beta", 1.0f) : 1.0;
        for (int64_t c = 0; c < Co; c++)
            p[c] = (float)(p[c] - delta[c] / beta);
        return QK_OK;
    }
    int cons[4];
    int nc = qk_graph_consumers(g, n->out[0], cons, 4);
    if (nc == 1 && qk_node_is(&g->nodes[cons[0]], "BatchNormalization")) {
        qk_value *mean = &g->values[g->nodes[cons[0]].in[3]];
        if (mean->t.dtype == QK_F32 && qk_tensor_numel(&mean->t) == Co) {
            float *p = qk_f32(&mean->t);
            for (int64_t c = 0; c < Co; c++)
                p[c] = (float)(p[c] + delta[c]);
        }
        return QK_OK;
    }
    if (!qk_node_is(n, "Conv") || n->n_in != 2)
        return QK_OK;
    qk_tensor t;
    qk_status st = qk_tensor_alloc(&t, QK_F32, 1, &Co);
    if (st != QK_OK)
        return st;
    for (int64_t c = 0; c < Co; c++)
        qk_f32(&t)[c] = (float)-delta[c];
    char base[512];
    snprintf(base, sizeof base, "%s_bias", n->name);
    char *name = qk_graph_unique_name(g, base);
    int v = name ? qk_graph_add_init(g, name, QK_VALUE_PARAM, &t) : -1;
    qk_free(name);
    int *in = v >= 0 ? qk_realloc(g->nodes[L->node].in, 3 * sizeof(int)) : NULL;
    if (!in) {
        qk_tensor_free(&t);
        return qk_error(QK_ERR_NOMEM, "bias correction: out of memory");
    }
    g->values[v].no_decay = 1;
    n = &g->nodes[L->node];
    n->in = in;
    n->in[2] = v;
    n->n_in = 3;
    return QK_OK;
}

qk_status qk_ptq_quantize_weights(qk_qmodel *m)
{
    qk_status st;
    uint8_t *is_layer_w = qk_calloc((size_t)(m->n_sites ? m->n_sites : 1), 1);
    double *delta = NULL;
    if (!is_layer_w)
        return qk_error(QK_ERR_NOMEM, "out of memory");
    for (int i = 0; i < m->n_layers; i++)
        is_layer_w[m->layers[i].w_site] = 1;
    for (int i = 0; i < m->n_layers; i++) {
        const qk_qlayer *L = &m->layers[i];
        if ((st = quantize_weight(m, L->w_site)) != QK_OK)
            goto done;
        if (m->cfg.bias_correct && L->in_mean && !m->rt[L->w_site].via_quantizer) {
            delta = qk_realloc(delta, (size_t)L->n_out * sizeof *delta);
            if (!delta) {
                st = qk_error(QK_ERR_NOMEM, "bias correction: out of memory");
                goto done;
            }
            if ((st = mean_shift(m, L, delta)) != QK_OK || (st = apply_shift(m, L, delta)) != QK_OK)
                goto done;
        }
    }
    /* bias sites (after the bias correction moved the biases) */
    for (int s = 0; s < m->n_sites; s++)
        if (m->sites[s].is_weight && !is_layer_w[s] && (st = quantize_weight(m, s)) != QK_OK)
            goto done;
    st = QK_OK;
done:
    qk_free(is_layer_w);
    qk_free(delta);
    return st;
}

/* The first layer that reads the same input as layer li (li itself if none). */
static int input_owner(const qk_qmodel *m, int li)
{
    int v = m->g->nodes[m->layers[li].node].in[0];
    for (int k = 0; k < li; k++)
        if (m->g->nodes[m->layers[k].node].in[0] == v)
            return k;
    return li;
}

typedef struct sum_job {
    const float *x; /* cnt samples of one elements */
    double *acc;
    int64_t cnt, one;
} sum_job;

#define SUM_GRAIN 2048

/* acc[k] += x[b][k] for b = 0 .. cnt-1 in order, over one range of k. */
static void sum_task(void *ctx, int64_t t, int w)
{
    (void)w;
    const sum_job *j = ctx;
    int64_t lo = t * SUM_GRAIN, hi = lo + SUM_GRAIN < j->one ? lo + SUM_GRAIN : j->one, k = lo;
    for (; k + 16 <= hi; k += 16) { /* 16 elements in registers, the samples in order */
        double a[16];
        memcpy(a, j->acc + k, sizeof a);
        for (int64_t b = 0; b < j->cnt; b++) {
            const float *p = j->x + b * j->one + k;
            for (int i = 0; i < 16; i++)
                a[i] += p[i];
        }
        memcpy(j->acc + k, a, sizeof a);
    }
    for (int64_t b = 0; b < j->cnt; b++) {
        const float *p = j->x + b * j->one;
        for (int64_t r = k; r < hi; r++)
            j->acc[r] += p[r];
    }
}

/* Bias correction: add one batch (cnt samples) to the per-element sums of
 * the layers' inputs (once per distinct input; share_input_means copies). */
static qk_status input_sums(qk_qmodel *m, int64_t cnt, qk_pool *pool)
{
    qk_graph *g = m->g;
    for (int li = 0; li < m->n_layers; li++) {
        qk_qlayer *L = &m->layers[li];
        if (input_owner(m, li) != li)
            continue;
        const qk_tensor *x = &g->values[g->nodes[L->node].in[0]].t;
        int64_t one = qk_tensor_numel(x) / cnt;
        if (!L->in_mean) {
            L->in_numel = one;
            if (!(L->in_mean = qk_calloc((size_t)one, sizeof *L->in_mean)))
                return qk_error(QK_ERR_NOMEM, "calibration: out of memory");
        }
        sum_job j = { qk_f32(x), L->in_mean, cnt, one };
        int64_t nt = (one + SUM_GRAIN - 1) / SUM_GRAIN;
        if (pool && nt > 1)
            qk_pool_run(pool, nt, sum_task, &j);
        else
            for (int64_t t = 0; t < nt; t++)
                sum_task(&j, t, 0);
        L->in_count += cnt;
    }
    return QK_OK;
}

static qk_status share_input_means(qk_qmodel *m)
{
    for (int li = 0; li < m->n_layers; li++) {
        qk_qlayer *L = &m->layers[li], *o = &m->layers[input_owner(m, li)];
        if (o == L || !o->in_mean)
            continue;
        if (!(L->in_mean = qk_malloc((size_t)o->in_numel * sizeof *L->in_mean)))
            return qk_error(QK_ERR_NOMEM, "calibration: out of memory");
        memcpy(L->in_mean, o->in_mean, (size_t)o->in_numel * sizeof *L->in_mean);
        L->in_numel = o->in_numel;
        L->in_count = o->in_count;
    }
    return QK_OK;
}

/* The largest bias code fit_bias leaves: room below INT32_MAX for the sum. */
#define QK_BIAS_CODE_MAX 1073741824.0 /* 2^30 */

/* A weight channel whose scale is so small that its bias, as an int32 code
 * at s_x * s_w, would pass QK_BIAS_CODE_MAX (a channel whose weights are ~0:
 * minmax of an all-zero channel, or a QAT step that collapsed to its floor)
 * cannot be run by an integer engine: the code saturates, the accumulator
 * wraps, and the engine's output leaves the simulation's by many steps (an
 * 8-point gap on a mobilenetv2s fbgemm QAT file). Its scale is raised to
 * |b| / (s_x 2^30) and its weights quantized again from their dequantized
 * values (they were below the new step: they become ~0, as they were). */
static void fit_bias(qk_qmodel *m, const qk_qlayer *L, const float *b, int64_t nb)
{
    qk_fq_rt *ra = &m->rt[L->a_site], *rw = &m->rt[L->w_site];
    const qk_tensor *W = &site_param(m, L->w_site)->t;
    if (!rw->codes || !rw->cst || rw->cst_n != qk_tensor_numel(W) || !(ra->scale[0] > 0))
        return;
    int64_t ch, inner;
    layout(W, rw->axis < 0 ? 0 : rw->axis, rw->n_ch > 1, &ch, &inner);
    if (ch != rw->n_ch)
        return;
    for (int64_t c = 0; c < ch; c++) {
        double need = 0; /* the smallest scale whose bias codes fit */
        for (int64_t k = 0; k < nb; k++)
            if (ch == 1 || k == c)
                need = fmax(need, fabs((double)b[k]) / ((double)ra->scale[0] * QK_BIAS_CODE_MAX));
        if (!(need > rw->scale[c]) || !isfinite(need))
            continue;
        float old = rw->scale[c], ns = (float)need * (1.0f + 4 * FLT_EPSILON);
        if (m->sites[L->w_site].qp.pot) /* stays a power of two */
            ns = ldexpf(1.0f, (int)ceil(log2(need)));
        for (int64_t i = 0; i < rw->cst_n; i++) {
            if (ch > 1 && chan_of(i, ch, inner) != c)
                continue;
            float r = qk_round_f(rw->cst[i] / ns, m->sites[L->w_site].qp.round) + (float)rw->zp[c];
            r = r < (float)rw->qn[c] ? (float)rw->qn[c] : r > (float)rw->qp[c] ? (float)rw->qp[c] : r;
            rw->codes[i] = (int32_t)r;
            rw->cst[i] = (float)(rw->codes[i] - rw->zp[c]) * ns;
        }
        rw->scale[c] = ns;
        qk_log(QK_LOG_WARN, "note: weight '%s'%s: scale %g raised to %g so the bias fits the engine's int32 "
               "accumulator (its weights quantize to ~0)", rw->name, ch > 1 ? " (one channel)" : "", (double)old,
               (double)ns);
    }
}

/* Every integer engine adds the bias in the accumulator, as int32 codes at
 * s_x * s_w (what lowering computes): the float bias of each quantized
 * layer is set to that grid, so the simulation (and the QDQ file) holds
 * exactly what the engine adds. At 8 bits the change is far below a
 * quantization step; at 2-4 bit weights s_x * s_w is coarse and an unsnapped
 * bias put fake and real apart (lenet W2A4: 3% of fc1's output codes off by
 * one). Run after anything that sets the scales or the bias: calibration,
 * reconstruction, mixed precision, the end of QAT. Left alone: profiles that
 * fake-quantize the bias themselves (quant_bias), no integer engine (nnie),
 * per-channel or learned activation ranges. */
void qk_ptq_snap_bias(qk_qmodel *m)
{
    const qk_backend *b = m->cfg.backend;
    if (b->arith == QK_ARITH_NONE || b->quant_bias)
        return;
    qk_graph *g = m->g;
    for (int li = 0; li < m->n_layers; li++) {
        const qk_qlayer *L = &m->layers[li];
        const qk_node *n = &g->nodes[L->node];
        if (L->a_site < 0 || L->w_site < 0 || n->n_in < 3 || n->in[2] < 0)
            continue;
        qk_value *bv = &g->values[n->in[2]];
        const qk_fq_rt *ra = &m->rt[L->a_site], *rw = &m->rt[L->w_site];
        int64_t nb = qk_tensor_numel(&bv->t);
        if (!qk_value_is_initializer(bv) || bv->t.dtype != QK_F32 || !bv->t.data || ra->n_ch != 1 ||
            ra->via_quantizer || (rw->n_ch != 1 && rw->n_ch != nb))
            continue;
        float *p = qk_f32(&bv->t);
        fit_bias(m, L, p, nb);
        for (int64_t c = 0; c < nb; c++) {
            double s = (double)ra->scale[0] * rw->scale[rw->n_ch == 1 ? 0 : c];
            double q = nearbyint((double)p[c] / s);
            if (s > 0 && fabs(q) < 16777216.0)
                p[c] = (float)(q * s);
        }
    }
}

static qk_status calibrate(qk_qmodel *m, const qk_dataset *ds, qk_norm norm, int64_t n, qk_pool *pool,
                           qk_ptq_progress_fn progress, void *user)
{
    qk_graph *g = m->g;
    if (m->calibrated || m->exported)
        return qk_error(QK_ERR_STATE, "calibration: the model is already calibrated");
    if (n < 1 || n > ds->n)
        return qk_error(QK_ERR_ARG, "calibration: %lld images asked, the calibration set has %lld", (long long)n,
                        (long long)ds->n);
    if (g->n_inputs != 1)
        return qk_error(QK_ERR_UNSUPPORTED, "calibration: the model has %d inputs (one image input expected)",
                        g->n_inputs);
    if (m->calib_begun) /* the observers and input sums hold that run's partial data */
        return qk_error(QK_ERR_STATE, "calibration: an earlier calibration of this model failed part way; "
                        "prepare it again (qk_ptq_prepare) before calibrating");
    m->calib_begun = 1;
    for (int s = 0; s < m->n_sites; s++)
        m->rt[s].mode = m->sites[s].is_weight ? QK_FQ_OFF : QK_FQ_OBSERVE;
    int64_t B = n < 128 ? n : 128;
    qk_status st = qk_graph_plan(g, B, 0, pool);
    if (st != QK_OK)
        return st;
    B = g->max_batch; /* a model with a fixed batch runs at that batch */
    qk_dataset view = qk_dataset_view(ds, 0, n);
    qk_batcher bt;
    int64_t *labels = qk_malloc((size_t)B * sizeof *labels);
    st = labels ? qk_batcher_init(&bt, &view, B, 0, 0, norm, NULL) : qk_error(QK_ERR_NOMEM, "calibration: out of memory");
    if (st != QK_OK) {
        qk_free(labels);
        qk_graph_unplan(g);
        return st;
    }
    qk_value *in = &g->values[g->inputs[0]];
    int64_t per = 1;
    for (int d = 1; d < in->t.ndim; d++)
        per *= in->t.dims[d];
    if (per != (int64_t)qk_dataset_channels(ds) * ds->h * ds->w) {
        st = in->t.ndim == 4 ? qk_dataset_check_input(ds, "", in->name, in->t.ndim, in->t.dims)
                             : qk_error(QK_ERR_SHAPE, "model input '%s' takes %lld values per image, the images have "
                                        "%dx%dx%d", in->name, (long long)per, qk_dataset_channels(ds), ds->h, ds->w);
        st = qk_error_context(st, "calibration");
        goto done;
    }
    int64_t nb = qk_batcher_count(&bt), done_n = 0;
    for (int64_t i = 0; i < nb; i++) {
        int64_t cnt;
        if ((st = qk_batcher_get(&bt, i, qk_f32(&in->t), labels, &cnt)) != QK_OK ||
            (st = qk_graph_set_batch(g, cnt)) != QK_OK || (st = qk_graph_forward(g)) != QK_OK)
            goto done;
        if (m->cfg.bias_correct && (st = input_sums(m, cnt, pool)) != QK_OK)
            goto done;
        for (int s = 0; s < m->n_sites && (m->cfg.bit_alloc & QK_BITALLOC_A); s++) {
            if (m->sites[s].is_weight)
                continue;
            const qk_tensor *x = &g->values[g->nodes[m->sites[s].node].in[0]].t;
            if (x->ndim < 2 || x->dims[1] < 2)
                continue;
            if (!m->chstat[s].sum && (st = chstat_init(&m->chstat[s], x->dims[1])) != QK_OK)
                goto done;
            chstat_update(&m->chstat[s], x);
        }
        done_n += cnt;
        if (progress)
            progress(user, done_n, n);
    }
    qk_graph_unplan(g);
    for (int li = 0; li < m->n_layers; li++) {
        qk_qlayer *L = &m->layers[li];
        for (int64_t k = 0; L->in_mean && k < L->in_numel; k++)
            L->in_mean[k] /= (double)L->in_count;
    }
    if (m->cfg.bias_correct && (st = share_input_means(m)) != QK_OK)
        goto done;
    for (int s = 0; s < m->n_sites; s++) {
        if (m->sites[s].is_weight)
            continue;
        qk_fq_rt *rt = &m->rt[s];
        qk_quantizer_set_calibrating(rt->q, 0);
        rt->mode = QK_FQ_QUANT;
        if (rt->via_quantizer)
            continue;
        if (m->chstat[s].sum)
            st = act_bit_alloc(m, s);
        else
            st = act_params(m, s);
        if (st != QK_OK)
            goto done;
    }
    if ((st = qk_ptq_quantize_weights(m)) != QK_OK)
        goto done;
    qk_ptq_snap_bias(m);
    m->calibrated = 1;
done:
    if (g->planned)
        qk_graph_unplan(g);
    qk_batcher_free(&bt);
    qk_free(labels);
    return st;
}

qk_status qk_ptq_calibrate(qk_qmodel *m, const qk_dataset *ds, qk_norm norm, int64_t n, qk_pool *pool,
                           qk_ptq_progress_fn progress, void *user)
{
    double t0 = qk_now();
    qk_status st = calibrate(m, ds, norm, n, pool, progress, user);
    m->seconds += qk_now() - t0;
    return st;
}

/* One weight site at a new width (mixed precision): the site's quantizer
 * is rebuilt with qp.bits = bits and the weight quantized again (no bias
 * correction). */
qk_status qk_ptq_requantize_weight(qk_qmodel *m, int s, int bits)
{
    qk_qsite *t = &m->sites[s];
    qk_fq_rt *rt = &m->rt[s];
    qk_qparams qp = t->qp;
    qp.bits = bits;
    qk_quantizer_desc d = { .qp = qp, .observer = t->observer, .opts = &m->cfg.w_opts, .is_weight = 1,
                            .name = t->value, .hooks = m->cfg.hooks };
    qk_quantizer *q;
    qk_status st = qk_quantizer_create(&d, &q);
    if (st != QK_OK)
        return qk_error_context(st, "%s", t->reason);
    qk_quantizer_destroy(rt->q);
    rt->q = q;
    t->qp = qp;
    return quantize_weight(m, s);
}
