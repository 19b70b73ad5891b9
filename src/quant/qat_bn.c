/* QAT BN-folding strategies 1-4 (docs/ALGORITHMS.md section 6, MQBench's
 * numbering) as graph rewrites around the folded layer.
 *
 * Before the PTQ prepare, every Conv/Gemm -> BatchNormalization pair is
 * recorded (the unfolded weight and bias, gamma, beta, running mean and
 * variance, epsilon, momentum) and folded with qk_fold_bn, so placement and
 * calibration see the inference form: one layer with W_f = W gamma / sd and
 * b_f = beta + (b - mean) gamma / sd (sd = sqrt(var + eps), running
 * statistics). For training (qk_qat_bn_install_, after the learnable
 * quantizers are in place) the layer P with weight quantizer Q becomes:
 *
 *   S1: Wf = FoldW(W, gamma, var);  yq = P(x, Q(Wf));
 *       y = Affine(yq, gamma, beta, mean, var, var)           (running stats, frozen)
 *   S2: y0 = P(x, W, b);  (mu, s2) = Stats(y0);  Wf = FoldW(W, gamma, s2);
 *       yq = P(x, Q(Wf));  y = Affine(yq, gamma, beta, mu, s2, s2)
 *   S3: y0 = P(x, W, b);  (mu, s2) = Stats(y0);  Wf = FoldW(W, gamma, var);
 *       yq = P(x, Q(Wf));  y = Affine(yq, gamma, beta, mu, s2, var)
 *       = (sd / sd_B) yq + beta + (b - mu_B) gamma / sd_B     (the correction)
 *   S4: Wf = FoldW(W, gamma, var);  yq = P(x, Q(Wf));  u = Unscale(yq, gamma, var, b);
 *       (mu, s2) = Stats(u);  y = Affine(yq, gamma, beta, mu, s2, var)
 *       = BN_batch(u): PyTorch's ConvBn (conv / scale factor, then a real BN)
 *
 * (b: the layer's own bias before folding, absent for the zoo's convs; the
 * operators are documented in qat_bn_op.c.) Stats uses batch statistics in
 * training and updates the running ones; in inference, and once frozen
 * (--freeze-bn), it passes the running statistics through, and every
 * strategy computes exactly the folded layer with running statistics.
 * qk_qat_bn_finish_ writes that layer back: W_f and b_f from the trained W,
 * b, gamma, beta and the running statistics (qk_fold_bn's arithmetic), the
 * quantizer reading W_f again, and the training nodes removed, so the QDQ
 * file is the one `qkit ptq` writes for a folded model. */
#include "ptq_internal.h"
#include "qat_internal.h"
#include "qkit/fold.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct bn_pair {
    char *layer, *y, *bn;    /* layer node, BN output value, BN node (names) */
    char *pname[4];          /* gamma, beta, mean, var value names */
    float eps, momentum;
    int axis;                /* channel axis of the weight */
    qk_tensor w, b, p[4];    /* before folding; b.data NULL: the layer had no bias */
    /* install */
    int node;                /* the layer */
    int wuser, wslot;        /* the node input reading W_f (the weight quantizer, or the layer) */
    int wf, bf, yv;          /* folded weight / bias initializers, the layer's output */
    qk_value_kind wf_kind, bf_kind;
    int v[6];                /* W, b (-1: none), gamma, beta, mean, var */
} bn_pair;

struct qk_qat_bn {
    int strategy, n;
    int n_pairs;             /* n as recorded (n is 0 once finished) */
    bn_pair *p;
    int first_node;          /* install added the nodes from here on */
    int installed;
};

static void pair_free(bn_pair *p)
{
    qk_free(p->layer);
    qk_free(p->y);
    qk_free(p->bn);
    for (int i = 0; i < 4; i++) {
        qk_free(p->pname[i]);
        qk_tensor_free(&p->p[i]);
    }
    qk_tensor_free(&p->w);
    qk_tensor_free(&p->b);
    memset(p, 0, sizeof *p);
}

void qk_qat_bn_free_(qk_qat_bn *b)
{
    if (!b)
        return;
    for (int i = 0; i < b->n; i++)
        pair_free(&b->p[i]);
    qk_free(b->p);
    qk_free(b);
}

int qk_qat_bn_count_(const qk_qat_bn *b) { return b ? b->n_pairs : 0; }

static int f32_init(const qk_graph *g, int v)
{
    return v >= 0 && qk_value_is_initializer_with_data(&g->values[v]) && g->values[v].t.dtype == QK_F32;
}

/* Record BN node k if it follows a Conv / Gemm (what qk_fold_bn may fold). */
static qk_status record(const qk_graph *g, int k, bn_pair *p, int *ok)
{
    const qk_node *bn = &g->nodes[k];
    *ok = 0;
    if (bn->n_in != 5 || bn->n_out < 1 || bn->in[0] < 0 || bn->out[0] < 0)
        return QK_OK;
    int pk = g->values[bn->in[0]].producer;
    if (pk < 0)
        return QK_OK;
    const qk_node *P = &g->nodes[pk];
    int conv = qk_node_is(P, "Conv"), gemm = qk_node_is(P, "Gemm");
    if ((!conv && !gemm) || P->n_in < 2 || !f32_init(g, P->in[1]) || (P->n_in > 2 && P->in[2] >= 0 && !f32_init(g, P->in[2])))
        return QK_OK;
    for (int i = 1; i < 5; i++)
        if (!f32_init(g, bn->in[i]))
            return QK_OK;
    memset(p, 0, sizeof *p);
    p->eps = qk_node_float(bn, "epsilon", 1e-5f);
    p->momentum = qk_node_float(bn, "momentum", 0.9f);
    p->axis = conv ? 0 : qk_node_int(P, "transB", 0) ? 0 : 1;
    p->layer = qk_strdup(P->name);
    p->y = qk_strdup(g->values[bn->out[0]].name);
    p->bn = qk_strdup(bn->name);
    qk_status st = p->layer && p->y && p->bn ? QK_OK : QK_ERR_NOMEM;
    for (int i = 0; st == QK_OK && i < 4; i++) {
        p->pname[i] = qk_strdup(g->values[bn->in[i + 1]].name);
        st = p->pname[i] ? qk_tensor_clone(&p->p[i], &g->values[bn->in[i + 1]].t) : QK_ERR_NOMEM;
    }
    if (st == QK_OK)
        st = qk_tensor_clone(&p->w, &g->values[P->in[1]].t);
    if (st == QK_OK && P->n_in > 2 && P->in[2] >= 0)
        st = qk_tensor_clone(&p->b, &g->values[P->in[2]].t);
    if (st != QK_OK) {
        pair_free(p);
        return qk_error(QK_ERR_NOMEM, "QAT BN folding: out of memory");
    }
    *ok = 1;
    return QK_OK;
}

qk_status qk_qat_bn_fold_(qk_graph *g, int strategy, qk_qat_bn **out, int *n_folded)
{
    *out = NULL;
    *n_folded = 0;
    qk_qat_bn *b = qk_calloc(1, sizeof *b);
    if (b)
        b->p = qk_calloc((size_t)(g->n_nodes ? g->n_nodes : 1), sizeof *b->p);
    if (!b || !b->p) {
        qk_qat_bn_free_(b);
        return qk_error(QK_ERR_NOMEM, "QAT BN folding: out of memory");
    }
    b->strategy = strategy;
    qk_status st = QK_OK;
    for (int k = 0; k < g->n_nodes && st == QK_OK; k++) {
        int ok = 0;
        if (qk_node_is(&g->nodes[k], "BatchNormalization") && (st = record(g, k, &b->p[b->n], &ok)) == QK_OK && ok)
            b->n++;
    }
    if (st == QK_OK)
        st = qk_fold_bn(g, n_folded);
    /* keep the pairs that were folded: the layer now writes the BN's output */
    int kept = 0;
    for (int i = 0; st == QK_OK && i < b->n; i++) {
        int k = qk_graph_find_node(g, b->p[i].layer);
        if (k >= 0 && g->nodes[k].n_out == 1 && strcmp(g->values[g->nodes[k].out[0]].name, b->p[i].y) == 0)
            b->p[kept++] = b->p[i];
        else
            pair_free(&b->p[i]);
    }
    if (st == QK_OK) {
        b->n = b->n_pairs = kept;
        if (kept != *n_folded)
            st = qk_error(QK_ERR_UNSUPPORTED, "--bn-fold %d: %d BatchNormalization nodes were folded but only %d "
                          "directly after a Conv / Gemm (chains of BN are folded only by strategy 0)",
                          strategy, *n_folded, kept);
    } else {
        for (int i = kept; i < b->n; i++)
            pair_free(&b->p[i]);
        b->n = kept;
    }
    if (st != QK_OK) {
        qk_qat_bn_free_(b);
        return st;
    }
    *out = b;
    return QK_OK;
}

qk_status qk_qat_bn_check_(const qk_qat_bn *b, const qk_graph *g)
{
    for (int i = 0; b && i < b->n; i++) {
        int k = qk_graph_find_node(g, b->p[i].layer);
        const qk_node *P = k >= 0 ? &g->nodes[k] : NULL;
        if (!P || P->n_in != 3 || P->in[2] < 0)
            return qk_error(QK_ERR_STATE, "--bn-fold %d: layer '%s' lost its folded bias", b->strategy,
                            b->p[i].layer);
        if (g->values[P->in[2]].producer >= 0)
            return qk_error(QK_ERR_UNSUPPORTED, "--bn-fold %d: the profile quantizes the bias of '%s'; strategies "
                            "1-4 compute the folded bias in training (use --bn-fold 0)", b->strategy, P->name);
    }
    return QK_OK;
}

/* ---- install ---- */

static int add_init(qk_graph *g, const char *base, qk_value_kind kind, qk_tensor *t, int no_decay)
{
    char *name = qk_graph_unique_name(g, base);
    int v = name ? qk_graph_add_init(g, name, kind, t) : -1;
    qk_free(name);
    if (v >= 0)
        g->values[v].no_decay = no_decay;
    return v;
}

static int add_act(qk_graph *g, const char *bn, const char *suffix)
{
    char base[512];
    snprintf(base, sizeof base, "%s%s", bn, suffix);
    char *name = qk_graph_unique_name(g, base);
    int v = name ? qk_graph_add_value(g, name, QK_VALUE_ACT) : -1;
    qk_free(name);
    return v;
}

/* A node of domain ai.qkit with the eps (and axis / momentum) attributes. */
static int add_node(qk_graph *g, const char *op, const char *bn, const char *suffix, int nin, const int *in, int nout,
                    const int *out, const bn_pair *p)
{
    char base[512];
    snprintf(base, sizeof base, "%s%s", bn, suffix);
    char *name = qk_graph_unique_name(g, base);
    int k = name ? qk_graph_add_node(g, op, name, nin, in, nout, out) : -1;
    qk_free(name);
    if (k < 0)
        return -1;
    g->nodes[k].domain = qk_strdup("ai.qkit");
    qk_status st = g->nodes[k].domain ? qk_node_set_float(g, k, "eps", p->eps) : QK_ERR_NOMEM;
    if (st == QK_OK && strcmp(op, "QkBnFoldW") == 0)
        st = qk_node_set_int(g, k, "axis", p->axis);
    if (st == QK_OK && strcmp(op, "QkBnStats") == 0)
        st = qk_node_set_float(g, k, "momentum", p->momentum);
    return st == QK_OK ? k : -1;
}

/* A copy of the layer (same op and attributes) reading in[0..nin) into y0. */
static int clone_layer(qk_graph *g, int layer, const char *bn, int nin, const int *in, int y0)
{
    char base[512];
    snprintf(base, sizeof base, "%s_qat_float_pass", bn);
    char *name = qk_graph_unique_name(g, base), *op = qk_strdup(g->nodes[layer].op_type);
    int k = name && op ? qk_graph_add_node(g, op, name, nin, in, 1, &y0) : -1;
    qk_free(name);
    qk_free(op);
    for (int a = 0; k >= 0 && a < g->nodes[layer].n_attr; a++) {
        const qk_attr at = g->nodes[layer].attr[a]; /* copied: setting may move the node array */
        qk_status st;
        switch (at.type) {
        case QK_ATTR_INT: st = qk_node_set_int(g, k, at.name, at.i); break;
        case QK_ATTR_FLOAT: st = qk_node_set_float(g, k, at.name, at.f); break;
        case QK_ATTR_INTS: st = qk_node_set_ints(g, k, at.name, at.n, at.ints); break;
        case QK_ATTR_FLOATS: st = qk_node_set_floats(g, k, at.name, at.n, at.floats); break;
        case QK_ATTR_STRING: st = qk_node_set_string(g, k, at.name, at.s); break;
        default: st = qk_error(QK_ERR_UNSUPPORTED, "layer '%s': attribute '%s' cannot be copied",
                               g->nodes[layer].name, at.name);
        }
        if (st != QK_OK)
            return -1;
    }
    return k;
}

/* Unbind node k so the next bind runs its init again (inputs changed). */
static void unbind(qk_node *n)
{
    if (n->op && n->op->destroy)
        n->op->destroy(n);
    n->op = NULL;
    n->state = NULL;
}

static qk_status install_pair(qk_qat_bn *b, bn_pair *p, qk_graph *g)
{
    const int S = b->strategy;
    p->node = qk_graph_find_node(g, p->layer);
    if (p->node < 0)
        return qk_error(QK_ERR_STATE, "--bn-fold %d: layer '%s' is gone", S, p->layer);
    qk_node *P = &g->nodes[p->node];
    int wv = P->in[1], pk = g->values[wv].producer;
    if (pk >= 0 && qk_node_is_in(&g->nodes[pk], "ai.qkit", "QkLearnQuant")) {
        p->wuser = pk;
        p->wslot = 0;
    } else {
        p->wuser = p->node;
        p->wslot = 1;
    }
    p->wf = g->nodes[p->wuser].in[p->wslot];
    p->bf = P->n_in == 3 ? P->in[2] : -1;
    p->yv = P->out[0];
    if (!f32_init(g, p->wf) || p->bf < 0 || !f32_init(g, p->bf))
        return qk_error(QK_ERR_STATE, "--bn-fold %d: layer '%s' has no folded weight / bias initializers", S,
                        p->layer);
    p->wf_kind = g->values[p->wf].kind;
    p->bf_kind = g->values[p->bf].kind;
    /* the trained quantities, under the BN's own names */
    char base[600];
    snprintf(base, sizeof base, "%s_qat_unfolded", g->values[p->wf].name);
    p->v[0] = add_init(g, base, QK_VALUE_PARAM, &p->w, g->values[p->wf].no_decay);
    p->v[1] = -1;
    if (p->v[0] >= 0 && p->b.data) {
        snprintf(base, sizeof base, "%s_qat_unfolded", g->values[p->bf].name);
        p->v[1] = add_init(g, base, QK_VALUE_PARAM, &p->b, 1);
    }
    for (int i = 0; i < 4 && p->v[0] >= 0; i++)
        p->v[2 + i] = add_init(g, p->pname[i], i < 2 ? QK_VALUE_PARAM : QK_VALUE_CONST, &p->p[i], 1);
    for (int i = 0; i < 6; i++)
        if (p->v[i] < 0 && (i != 1 || p->b.data))
            return qk_error(QK_ERR_NOMEM, "--bn-fold %d: out of memory adding the values of '%s'", S, p->bn);
    const int W = p->v[0], B = p->v[1], GA = p->v[2], BE = p->v[3], MEAN = p->v[4], VAR = p->v[5];
    int wfo = add_act(g, p->bn, "_qat_wf"), vw = add_act(g, p->bn, "_qat_var_used"), yq = add_act(g, p->bn, "_qat_yq");
    int mu = -1, s2 = -1, y0 = -1, u = -1;
    if (S >= 2) {
        mu = add_act(g, p->bn, "_qat_batch_mean");
        s2 = add_act(g, p->bn, "_qat_batch_var");
    }
    if (S == 2 || S == 3)
        y0 = add_act(g, p->bn, "_qat_y0");
    if (S == 4)
        u = add_act(g, p->bn, "_qat_unscaled");
    if (wfo < 0 || vw < 0 || yq < 0 || (S >= 2 && (mu < 0 || s2 < 0)) || ((S == 2 || S == 3) && y0 < 0) ||
        (S == 4 && u < 0))
        return qk_error(QK_ERR_NOMEM, "--bn-fold %d: out of memory", S);
    /* the layer writes yq from the quantized Wf, without its bias */
    P = &g->nodes[p->node];
    int x = P->in[0];
    P->n_in = 2;
    P->out[0] = yq;
    g->values[yq].producer = p->node;
    g->values[p->yv].producer = -1;
    unbind(P);
    g->values[p->wf].kind = QK_VALUE_CONST; /* unused until qk_qat_bn_finish_ */
    g->values[p->bf].kind = QK_VALUE_CONST;
    int ok = 1;
    if (S == 2 || S == 3) {
        /* S3: Stats reads vw (never used) so that it runs after FoldW has
         * folded with the running variance it is about to update */
        int in0[3] = { x, W, B };
        int in1[4] = { y0, MEAN, VAR, vw }, out1[2] = { mu, s2 };
        ok = clone_layer(g, p->node, p->bn, B >= 0 ? 3 : 2, in0, y0) >= 0 &&
             add_node(g, "QkBnStats", p->bn, "_qat_stats", S == 3 ? 4 : 3, in1, 2, out1, p) >= 0;
    }
    int fin[3] = { W, GA, S == 2 ? s2 : VAR }, fout[2] = { wfo, vw };
    ok = ok && add_node(g, "QkBnFoldW", p->bn, "_qat_foldw", 3, fin, 2, fout, p) >= 0;
    if (ok && S == 4) {
        int uin[4] = { yq, GA, vw, B }, sin[3] = { u, MEAN, VAR }, sout[2] = { mu, s2 };
        ok = add_node(g, "QkBnUnscale", p->bn, "_qat_unscale", B >= 0 ? 4 : 3, uin, 1, &u, p) >= 0 &&
             add_node(g, "QkBnStats", p->bn, "_qat_stats", 3, sin, 2, sout, p) >= 0;
    }
    int ain[7] = { yq, GA, BE, S == 1 ? MEAN : mu, S == 1 ? VAR : s2, vw, B };
    ok = ok && add_node(g, "QkBnAffine", p->bn, "_qat_affine", B >= 0 ? 7 : 6, ain, 1, &p->yv, p) >= 0;
    if (!ok)
        return qk_error_context(QK_ERR_NOMEM, "--bn-fold %d: building the training form of '%s'", S, p->bn);
    g->nodes[p->wuser].in[p->wslot] = wfo;
    if (p->wuser != p->node)
        unbind(&g->nodes[p->wuser]);
    return QK_OK;
}

qk_status qk_qat_bn_install_(qk_qat_bn *b, qk_graph *g)
{
    if (!b || b->installed)
        return QK_OK;
    qk_graph_unplan(g);
    b->first_node = g->n_nodes;
    for (int i = 0; i < b->n; i++) {
        qk_status st = install_pair(b, &b->p[i], g);
        if (st != QK_OK)
            return st;
    }
    b->installed = 1;
    qk_free(g->order);
    g->order = NULL;
    return QK_OK;
}

/* ---- back to the folded layer ---- */

qk_status qk_qat_bn_finish_(qk_qat_bn *b, qk_graph *g)
{
    if (!b || !b->installed)
        return QK_OK;
    qk_graph_unplan(g);
    for (int i = 0; i < b->n; i++) {
        bn_pair *p = &b->p[i];
        const qk_tensor *W = &g->values[p->v[0]].t;
        const float *w = qk_f32(W), *bb = p->v[1] >= 0 ? qk_f32(&g->values[p->v[1]].t) : NULL;
        const float *ga = qk_f32(&g->values[p->v[2]].t), *be = qk_f32(&g->values[p->v[3]].t);
        const float *mean = qk_f32(&g->values[p->v[4]].t), *var = qk_f32(&g->values[p->v[5]].t);
        float *wf = qk_f32(&g->values[p->wf].t), *bf = qk_f32(&g->values[p->bf].t);
        int64_t C = W->dims[p->axis], outer = 1, inner = 1;
        for (int d = 0; d < p->axis; d++)
            outer *= W->dims[d];
        for (int d = p->axis + 1; d < W->ndim; d++)
            inner *= W->dims[d];
        /* qk_fold_bn's arithmetic: the scale in double, each product rounded once */
        for (int64_t c = 0; c < C; c++) {
            if (!(var[c] + p->eps > 0.0f) || !isfinite(var[c]) || !isfinite(ga[c]) || !isfinite(be[c]) ||
                !isfinite(mean[c]))
                return qk_error(QK_ERR_NUMERIC, "--bn-fold %d: BN '%s' channel %lld is not finite (or var + eps "
                                "<= 0)", b->strategy, p->bn, (long long)c);
            double s = (double)ga[c] / sqrt((double)var[c] + (double)p->eps);
            for (int64_t o = 0; o < outer; o++)
                for (int64_t k = 0; k < inner; k++) {
                    int64_t e = (o * C + c) * inner + k;
                    wf[e] = (float)((double)w[e] * s);
                }
            bf[c] = (float)((double)be[c] + ((bb ? (double)bb[c] : 0.0) - (double)mean[c]) * s);
        }
        g->values[p->wf].kind = p->wf_kind;
        g->values[p->bf].kind = p->bf_kind;
        g->nodes[p->wuser].in[p->wslot] = p->wf;
        qk_node *P = &g->nodes[p->node];
        P->n_in = 3;
        P->in[2] = p->bf;
        P->out[0] = p->yv;
        unbind(P);
        if (p->wuser != p->node)
            unbind(&g->nodes[p->wuser]);
    }
    uint8_t *rm = qk_calloc((size_t)g->n_nodes, 1);
    if (!rm)
        return qk_error(QK_ERR_NOMEM, "--bn-fold: out of memory");
    for (int k = b->first_node; k < g->n_nodes; k++)
        rm[k] = 1;
    qk_status st = qk_graph_remove_nodes(g, rm);
    qk_free(rm);
    if (st == QK_OK)
        b->installed = 0;
    for (int i = 0; i < b->n; i++) /* value indices changed: the pairs are done */
        pair_free(&b->p[i]);
    b->n = 0;
    return st;
}

qk_status qk_qat_bn_freeze_(qk_graph *g)
{
    for (int k = 0; k < g->n_nodes; k++) {
        const qk_node *n = &g->nodes[k];
        qk_status st = QK_OK;
        if (qk_node_is_in(n, "ai.qkit", "QkBnStats"))
            st = qk_node_set_int(g, k, "frozen", 1);
        else if (qk_node_is(n, "BatchNormalization")) /* kept in float (academic without --bn-fold) */
            st = qk_node_set_int(g, k, "qkit_frozen", 1);
        if (st != QK_OK)
            return st;
    }
    return QK_OK;
}
