/* Cross-layer equalization and bias absorption (data-free; Nagel et al.,
 * "Data-Free Quantization Through Weight Equalization and Bias
 * Correction", ICCV 2019; docs/ALGORITHMS.md §3.3), ptq.h.
 *
 * A pair is L1 -> [BatchNormalization] -> [Relu | Clip(0, hi)] -> L2 where
 * L1 and L2 are Conv (any group, so depthwise too) or Gemm with initializer
 * weights, every value in between has exactly one reader and is not a graph
 * output, and L2 reads it as its input 0 (MaxPool / AveragePool may follow
 * the activation). Output channel i of L1 (of its BN
 * when there is one: gamma_i, beta_i, else the weight row and bias) is
 * divided by s_i and input channel i of L2 multiplied by s_i; ReLU is
 * positively homogeneous, so the float function is unchanged. A Clip with a
 * finite upper bound (ReLU6) is not: such pairs are skipped unless
 * relu6_to_relu drops the bound (the paper's ReLU6 -> ReLU, which changes
 * the float model). */
#include "ptq_internal.h"

#include <float.h>
#include <math.h>
#include <string.h>

void qk_cle_options_default(qk_cle_options *o)
{
    memset(o, 0, sizeof *o);
    o->max_iters = 100;
    o->tol = 1e-6;
    o->bias_absorb = 1;
}

void qk_cle_scales(int64_t n, const double *r1, const double *r2, double *s)
{
    for (int64_t i = 0; i < n; i++)
        s[i] = r1[i] > 0 && r2[i] > 0 ? sqrt(r1[i] * r2[i]) / r2[i] : 1.0;
}

typedef struct pair {
    int l1, bn, act, l2; /* node indices; bn/act -1 when absent */
    int relu6;           /* act is a Clip with a finite upper bound */
} pair;

static int is_wlayer(const qk_graph *g, const qk_node *n)
{
    if (!(qk_node_is(n, "Conv") || qk_node_is(n, "Gemm")) || n->n_in < 2 || n->in[1] < 0)
        return 0;
    const qk_value *w = &g->values[n->in[1]];
    int c[2];
    return qk_value_is_initializer(w) && w->t.dtype == QK_F32 && w->t.data &&
           qk_graph_consumers(g, n->in[1], c, 2) == 1 && (!qk_node_is(n, "Conv") || w->t.ndim >= 3) &&
           (!qk_node_is(n, "Gemm") || w->t.ndim == 2);
}

static int is_output(const qk_graph *g, int v)
{
    for (int j = 0; j < g->n_outputs; j++)
        if (g->outputs[j] == v)
            return 1;
    return 0;
}

/* The single reader of v (-1 if none, several, or v is a graph output). */
static int sole_reader(const qk_graph *g, int v)
{
    int c[2];
    if (v < 0 || is_output(g, v) || qk_graph_consumers(g, v, c, 2) != 1)
        return -1;
    return c[0];
}

static const float *init_f32(const qk_graph *g, const qk_node *n, int i, int64_t numel)
{
    if (i >= n->n_in || n->in[i] < 0)
        return NULL;
    const qk_value *v = &g->values[n->in[i]];
    if (!qk_value_is_initializer(v) || v->t.dtype != QK_F32 || !v->t.data || qk_tensor_numel(&v->t) != numel)
        return NULL;
    return qk_f32(&v->t);
}

/* Clip bounds (inputs, or the opset-6 attributes); 0 when not constants. */
static int clip_bounds(const qk_graph *g, const qk_node *n, float *lo, float *hi)
{
    *lo = qk_node_float(n, "min", -FLT_MAX);
    *hi = qk_node_float(n, "max", FLT_MAX);
    for (int i = 1; i < 3 && i < n->n_in; i++) {
        if (n->in[i] < 0)
            continue;
        const float *p = init_f32(g, n, i, 1);
        if (!p)
            return 0;
        *(i == 1 ? lo : hi) = p[0];
    }
    return 1;
}

static int64_t out_channels(const qk_graph *g, const qk_node *n)
{
    const qk_tensor *w = &g->values[n->in[1]].t;
    if (qk_node_is(n, "Conv"))
        return w->dims[0];
    return qk_node_int(n, "transB", 0) ? w->dims[0] : w->dims[1];
}

static int64_t in_channels(const qk_graph *g, const qk_node *n)
{
    const qk_tensor *w = &g->values[n->in[1]].t;
    if (qk_node_is(n, "Conv"))
        return w->dims[1] * qk_node_int(n, "group", 1);
    return qk_node_int(n, "transB", 0) ? w->dims[1] : w->dims[0];
}

/* A pair starting at layer node k (p->l1 = -1 if none). */
static void find_pair(const qk_graph *g, int k, const qk_cle_options *o, pair *p)
{
    p->l1 = p->bn = p->act = p->l2 = -1;
    p->relu6 = 0;
    const qk_node *n = &g->nodes[k];
    if (!is_wlayer(g, n) || n->n_out < 1)
        return;
    int64_t C = out_channels(g, n);
    int v = n->out[0], r = sole_reader(g, v);
    if (r >= 0 && qk_node_is(&g->nodes[r], "BatchNormalization")) {
        const qk_node *b = &g->nodes[r];
        if (b->n_in < 5 || !init_f32(g, b, 1, C) || !init_f32(g, b, 2, C) || !init_f32(g, b, 3, C) ||
            !init_f32(g, b, 4, C) || b->in[0] != v || qk_node_int(b, "training_mode", 0))
            return;
        p->bn = r;
        v = b->out[0];
        r = sole_reader(g, v);
    }
    if (r >= 0 && (qk_node_is(&g->nodes[r], "Relu") || qk_node_is(&g->nodes[r], "Clip"))) {
        const qk_node *a = &g->nodes[r];
        if (qk_node_is(a, "Clip")) {
            float lo, hi;
            if (!clip_bounds(g, a, &lo, &hi) || lo != 0.0f)
                return;
            if (hi < FLT_MAX) {
                if (!o->relu6_to_relu || qk_node_attr(a, "max"))
                    return;
                p->relu6 = 1;
            }
        }
        p->act = r;
        v = a->out[0];
        r = sole_reader(g, v);
    }
    /* per-channel pooling commutes with a positive per-channel scale */
    while (r >= 0 && (qk_node_is(&g->nodes[r], "MaxPool") || qk_node_is(&g->nodes[r], "AveragePool"))) {
        v = g->nodes[r].out[0];
        r = sole_reader(g, v);
    }
    if (r < 0 || !is_wlayer(g, &g->nodes[r]) || g->nodes[r].in[0] != v || in_channels(g, &g->nodes[r]) != C)
        return;
    p->l1 = k;
    p->l2 = r;
}

/* Visit the elements of output channel i of layer n (stride layout). */
static void out_chan(const qk_graph *g, const qk_node *n, int64_t i, int64_t *start, int64_t *count, int64_t *step)
{
    const qk_tensor *w = &g->values[n->in[1]].t;
    int64_t numel = qk_tensor_numel(w);
    if (qk_node_is(n, "Conv") || qk_node_int(n, "transB", 0)) {
        *count = numel / w->dims[0];
        *start = i * *count;
        *step = 1;
    } else { /* Gemm [K, N]: column i */
        *start = i;
        *count = w->dims[0];
        *step = w->dims[1];
    }
}

/* Apply f(element) for every element of input channel i of layer n. */
#define FOR_IN_CHAN(g, n, i, body)                                                                          \
    do {                                                                                                    \
        const qk_tensor *w_ = &(g)->values[(n)->in[1]].t;                                                   \
        float *wp_ = qk_f32(w_);                                                                            \
        if (qk_node_is((n), "Conv")) {                                                                      \
            int64_t grp_ = qk_node_int((n), "group", 1), cg_ = w_->dims[1], co_ = w_->dims[0];             \
            int64_t tap_ = qk_tensor_numel(w_) / (co_ * cg_), gi_ = (i) / cg_, j_ = (i) % cg_;             \
            int64_t cog_ = co_ / grp_;                                                                      \
            for (int64_t o_ = gi_ * cog_; o_ < (gi_ + 1) * cog_; o_++)                                      \
                for (int64_t t_ = 0; t_ < tap_; t_++) {                                                     \
                    int64_t o = o_;                                                                         \
                    float *e = &wp_[(o_ * cg_ + j_) * tap_ + t_];                                           \
                    (void)o;                                                                                \
                    body;                                                                                   \
                }                                                                                           \
        } else if (qk_node_int((n), "transB", 0)) { /* [N, K]: column i */                                  \
            for (int64_t o_ = 0; o_ < w_->dims[0]; o_++) {                                                  \
                int64_t o = o_;                                                                             \
                float *e = &wp_[o_ * w_->dims[1] + (i)];                                                    \
                (void)o;                                                                                    \
                body;                                                                                       \
            }                                                                                               \
        } else { /* [K, N]: row i */                                                                        \
            for (int64_t o_ = 0; o_ < w_->dims[1]; o_++) {                                                  \
                int64_t o = o_;                                                                             \
                float *e = &wp_[(i) * w_->dims[1] + o_];                                                    \
                (void)o;                                                                                    \
                body;                                                                                       \
            }                                                                                               \
        }                                                                                                   \
    } while (0)

/* r1 (L1's effective output ranges, BN included) and r2 (L2's input ranges). */
static void ranges(const qk_graph *g, const pair *p, int64_t C, double *r1, double *r2)
{
    const qk_node *a = &g->nodes[p->l1], *b = &g->nodes[p->l2];
    const float *w = qk_f32(&g->values[a->in[1]].t);
    for (int64_t i = 0; i < C; i++) {
        int64_t st, cnt, step;
        out_chan(g, a, i, &st, &cnt, &step);
        double m = 0;
        for (int64_t k = 0; k < cnt; k++)
            m = fmax(m, fabs(w[st + k * step]));
        if (p->bn >= 0) {
            const qk_node *bn = &g->nodes[p->bn];
            const float *gam = init_f32(g, bn, 1, C), *var = init_f32(g, bn, 4, C);
            m *= fabs(gam[i]) / sqrt((double)var[i] + qk_node_float(bn, "epsilon", 1e-5f));
        }
        r1[i] = m;
        double m2 = 0;
        FOR_IN_CHAN(g, b, i, m2 = fmax(m2, fabs(*e)));
        r2[i] = m2;
    }
}

static void scale_pair(qk_graph *g, const pair *p, int64_t C, const double *s)
{
    const qk_node *a = &g->nodes[p->l1], *b = &g->nodes[p->l2];
    for (int64_t i = 0; i < C; i++) {
        if (s[i] == 1.0)
            continue;
        if (p->bn >= 0) {
            const qk_node *bn = &g->nodes[p->bn];
            float *gam = (float *)init_f32(g, bn, 1, C), *bet = (float *)init_f32(g, bn, 2, C);
            gam[i] = (float)(gam[i] / s[i]);
            bet[i] = (float)(bet[i] / s[i]);
        } else {
            float *w = qk_f32(&g->values[a->in[1]].t);
            int64_t st, cnt, step;
            out_chan(g, a, i, &st, &cnt, &step);
            for (int64_t k = 0; k < cnt; k++)
                w[st + k * step] = (float)(w[st + k * step] / s[i]);
            float *bias = (float *)init_f32(g, a, 2, C);
            if (bias)
                bias[i] = (float)(bias[i] / s[i]);
        }
        double si = s[i];
        FOR_IN_CHAN(g, b, i, *e = (float)(*e * si));
    }
}

/* L2's bias (added as a zero initializer when absent); NULL when out of memory. */
static float *l2_bias(qk_graph *g, int l2, int64_t Co)
{
    qk_node *n = &g->nodes[l2];
    if (n->n_in > 2 && n->in[2] >= 0)
        return (float *)init_f32(g, n, 2, Co);
    if (qk_node_is(n, "Gemm"))
        return NULL; /* Gemm's C may broadcast; only absorb into an existing bias */
    qk_tensor t;
    if (qk_tensor_alloc(&t, QK_F32, 1, &Co) != QK_OK)
        return NULL;
    memset(t.data, 0, (size_t)Co * sizeof(float));
    char base[512];
    snprintf(base, sizeof base, "%s_bias", n->name);
    char *name = qk_graph_unique_name(g, base);
    int v = name ? qk_graph_add_init(g, name, QK_VALUE_PARAM, &t) : -1;
    qk_free(name);
    int *in = v >= 0 ? qk_realloc(g->nodes[l2].in, 3 * sizeof(int)) : NULL;
    if (!in) {
        if (v < 0)
            qk_tensor_free(&t);
        return NULL;
    }
    g->values[v].no_decay = 1;
    n = &g->nodes[l2];
    n->in = in;
    n->in[2] = v;
    n->n_in = 3;
    return qk_f32(&g->values[v].t);
}

/* Bias absorption: c_i = max(0, beta_i - 3 |gamma_i|) leaves L1's BN and
 * enters L2's bias as W2 c. Exact where the BN output stays >= c (the
 * 3-sigma assumption) and L2 has no padding. Returns channels moved. */
static qk_status absorb(qk_graph *g, const pair *p, int64_t C, int *moved)
{
    *moved = 0;
    if (p->bn < 0)
        return QK_OK;
    const qk_node *b = &g->nodes[p->l2];
    int64_t pads[8] = { 0 };
    int np = qk_node_ints(b, "pads", pads, 8);
    for (int i = 0; i < np; i++)
        if (pads[i] != 0)
            return QK_OK;
    if (qk_node_is(b, "Conv") && strcmp(qk_node_string(b, "auto_pad", "NOTSET"), "NOTSET") != 0 &&
        strcmp(qk_node_string(b, "auto_pad", "NOTSET"), "VALID") != 0)
        return QK_OK;
    if (qk_node_is(b, "Gemm") && qk_node_float(b, "beta", 1.0f) != 1.0f)
        return QK_OK;
    const qk_node *bn = &g->nodes[p->bn];
    const float *gam = init_f32(g, bn, 1, C), *bet = init_f32(g, bn, 2, C);
    int any = 0;
    for (int64_t i = 0; i < C; i++)
        any |= bet[i] - 3.0 * fabs(gam[i]) > 0;
    if (!any)
        return QK_OK;
    int64_t Co = out_channels(g, b);
    float *b2 = l2_bias(g, p->l2, Co);
    if (!b2)
        return qk_node_is(b, "Gemm") ? QK_OK : qk_error(QK_ERR_NOMEM, "bias absorption: out of memory");
    b = &g->nodes[p->l2];
    bn = &g->nodes[p->bn];
    float *bet_w = (float *)init_f32(g, bn, 2, C);
    gam = init_f32(g, bn, 1, C);
    double alpha = qk_node_is(b, "Gemm") ? qk_node_float(b, "alpha", 1.0f) : 1.0;
    for (int64_t i = 0; i < C; i++) {
        double c = bet_w[i] - 3.0 * fabs(gam[i]);
        if (c <= 0)
            continue;
        bet_w[i] = (float)(bet_w[i] - c);
        FOR_IN_CHAN(g, b, i, b2[o] = (float)(b2[o] + alpha * c * *e));
        (*moved)++;
    }
    return QK_OK;
}

qk_status qk_cle_apply(qk_graph *g, const qk_cle_options *opt, qk_cle_result *res)
{
    qk_cle_options dflt;
    if (!opt) {
        qk_cle_options_default(&dflt);
        opt = &dflt;
    }
    qk_cle_result r = { 0 };
    if (res)
        *res = r;
    if (!g)
        return qk_error(QK_ERR_ARG, "cle: no graph");
    if (opt->max_iters < 1)
        return qk_error(QK_ERR_ARG, "cle: max_iters %d (at least 1)", opt->max_iters);
    qk_graph_unplan(g);
    qk_status st = qk_graph_sort(g);
    if (st != QK_OK)
        return st;
    pair *ps = qk_malloc((size_t)(g->n_nodes ? g->n_nodes : 1) * sizeof *ps);
    if (!ps)
        return qk_error(QK_ERR_NOMEM, "cle: out of memory");
    int np = 0;
    int64_t cmax = 1;
    for (int o = 0; o < g->n_nodes; o++) {
        pair p;
        find_pair(g, g->order[o], opt, &p);
        if (p.l1 >= 0) {
            ps[np++] = p;
            int64_t C = out_channels(g, &g->nodes[p.l1]);
            cmax = C > cmax ? C : cmax;
        }
    }
    double *r1 = qk_malloc((size_t)cmax * 3 * sizeof *r1);
    if (!r1) {
        qk_free(ps);
        return qk_error(QK_ERR_NOMEM, "cle: out of memory");
    }
    double *r2 = r1 + cmax, *s = r2 + cmax;
    /* ReLU6 -> ReLU first (drop the Clip's upper bound input) */
    for (int i = 0; i < np; i++)
        if (ps[i].relu6) {
            g->nodes[ps[i].act].n_in = 2;
            r.n_relu6++;
        }
    int it;
    for (it = 0; it < opt->max_iters; it++) {
        double worst = 0;
        for (int i = 0; i < np; i++) {
            int64_t C = out_channels(g, &g->nodes[ps[i].l1]);
            ranges(g, &ps[i], C, r1, r2);
            qk_cle_scales(C, r1, r2, s);
            for (int64_t c = 0; c < C; c++)
                worst = fmax(worst, fabs(log(s[c])));
            scale_pair(g, &ps[i], C, s);
        }
        if (worst < opt->tol)
            break;
    }
    r.n_pairs = np;
    r.n_iters = it < opt->max_iters ? it + 1 : it;
    for (int i = 0; opt->bias_absorb && i < np; i++) {
        int moved;
        if ((st = absorb(g, &ps[i], out_channels(g, &g->nodes[ps[i].l1]), &moved)) != QK_OK)
            break;
        r.n_absorbed += moved;
    }
    qk_free(r1);
    qk_free(ps);
    if (res)
        *res = r;
    return st;
}
