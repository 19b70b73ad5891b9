/* BatchNormalization folding into the preceding Conv / Gemm (contract in
 * include/qkit/fold.h; math: docs/ALGORITHMS.md §6, "Fold (Eq.)").
 *
 * One pass over the nodes; for each Conv/Gemm P, while its output is read
 * only by a foldable BN: check everything, allocate what the fold needs
 * (scale factors, a bias tensor), then change W and the bias in place and
 * let P write the BN's output. The BN nodes are flagged and removed in one
 * qk_graph_remove_nodes call at the end, which also drops their parameters
 * and P's old output value. */
#include "qkit/fold.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int is_graph_output(const qk_graph *g, int v)
{
    for (int i = 0; i < g->n_outputs; i++)
        if (g->outputs[i] == v)
            return 1;
    return 0;
}

/* A float32 initializer with data, rank ndim (-1: any) and, when m >= 0,
 * dims[0] == m. */
static int is_f32_init(const qk_graph *g, int v, int ndim, int64_t m)
{
    if (v < 0)
        return 0;
    const qk_value *x = &g->values[v];
    return qk_value_is_initializer(x) && x->t.dtype == QK_F32 && x->t.data &&
           (ndim < 0 || x->t.ndim == ndim) && (m < 0 || (x->t.ndim > 0 && x->t.dims[0] == m));
}

/* Value v is read by node `node` only and is not a graph output. */
static int private_to(const qk_graph *g, int v, int node)
{
    int who = -1;
    return !is_graph_output(g, v) && qk_graph_consumers(g, v, &who, 1) == 1 && who == node;
}

/* The producer's side of a fold: where the per-channel weights are. */
typedef struct fold_site {
    int64_t M;       /* output channels */
    int64_t rows;    /* W viewed as [rows, cols] */
    int64_t cols;
    int chan_is_row; /* 1: channel m is row m (Conv, Gemm transB=1); 0: column m */
    int w, b;        /* value indices; b = -1 when P has no bias */
} fold_site;

/* Can node p be folded into at all (BN aside)? 0 with no message if not. */
static int site_of(const qk_graph *g, int p, fold_site *fs)
{
    const qk_node *n = &g->nodes[p];
    if (!qk_domain_is_default(n->domain) || n->n_out != 1 || n->out[0] < 0 || n->n_in < 2 || n->n_in > 3)
        return 0;
    memset(fs, 0, sizeof *fs);
    fs->w = n->in[1];
    fs->b = n->n_in == 3 ? n->in[2] : -1;
    if (strcmp(n->op_type, "Conv") == 0) {
        if (!is_f32_init(g, fs->w, -1, -1) || g->values[fs->w].t.ndim < 3)
            return 0;
        const qk_tensor *w = &g->values[fs->w].t;
        fs->M = w->dims[0];
        fs->rows = fs->M;
        fs->cols = fs->M > 0 ? qk_tensor_numel(w) / fs->M : 0;
        fs->chan_is_row = 1;
    } else if (strcmp(n->op_type, "Gemm") == 0) {
        if (!is_f32_init(g, fs->w, 2, -1))
            return 0;
        const qk_tensor *w = &g->values[fs->w].t;
        int tb = qk_node_int(n, "transB", 0) != 0;
        /* Y = alpha * op(A) op(B) + beta * C: a rank-1 C adds C[m] to column
         * m only with beta = 1 (a general beta would need C_f / beta). */
        if (qk_node_float(n, "beta", 1.0f) != 1.0f)
            return 0;
        fs->rows = w->dims[0];
        fs->cols = w->dims[1];
        fs->M = tb ? w->dims[0] : w->dims[1];
        fs->chan_is_row = tb;
    } else {
        return 0;
    }
    if (fs->M < 1)
        return 0;
    if (fs->b >= 0 && !is_f32_init(g, fs->b, 1, fs->M))
        return 0;
    return 1;
}

/* The BN node reading p's output, if the pair can be folded; -1 if not. */
static int bn_of(const qk_graph *g, int p, const fold_site *fs, const uint8_t *removed)
{
    int y = g->nodes[p].out[0], c = -1;
    if (is_graph_output(g, y) || qk_graph_consumers(g, y, &c, 1) != 1)
        return -1;
    const qk_node *b = &g->nodes[c];
    if (removed[c] || !qk_node_is(b, "BatchNormalization") || b->n_in != 5 ||
        b->in[0] != y || b->n_out < 1 || b->out[0] < 0)
        return -1;
    for (int i = 1; i < 5; i++)
        if (b->in[i] == y || !is_f32_init(g, b->in[i], 1, fs->M))
            return -1;
    for (int i = 1; i < b->n_out; i++) {
        int v = b->out[i];
        if (v >= 0 && (is_graph_output(g, v) || qk_graph_consumers(g, v, NULL, 0) > 0))
            return -1; /* running statistics outputs in use */
    }
    return c;
}

/* Name for a new bias of weight `wname`: "<prefix>.bias" or "<wname>_bias". */
static char *bias_name(const qk_graph *g, const char *wname)
{
    size_t n = strlen(wname), suf = strlen(".weight");
    char base[256];
    if (n > suf && n - suf < sizeof base - 8 && strcmp(wname + n - suf, ".weight") == 0)
        snprintf(base, sizeof base, "%.*s.bias", (int)(n - suf), wname);
    else
        snprintf(base, sizeof base, "%.200s_bias", wname);
    return qk_graph_unique_name(g, base);
}

/* Fold BN node `bi` into node p. QK_OK and *done = 1 on success; QK_OK and
 * *done = 0 when skipped (shared weight/bias: warned); errors change nothing
 * but may leave an unused new value or a larger p->in array. */
static qk_status fold_one(qk_graph *g, int p, int bi, const fold_site *fs, int *done)
{
    *done = 0;
    const qk_node *pn = &g->nodes[p], *bn = &g->nodes[bi];
    int shared = !private_to(g, fs->w, p) ? fs->w : fs->b >= 0 && !private_to(g, fs->b, p) ? fs->b : -1;
    if (shared >= 0) {
        qk_log(QK_LOG_WARN, "fold_bn: not folding '%s' into '%s' (%s): its %s '%s' is read by another node "
                            "or is a graph output",
               bn->name, pn->name, pn->op_type, shared == fs->w ? "weight" : "bias", g->values[shared].name);
        return QK_OK;
    }
    const int64_t M = fs->M;
    const double eps = (double)qk_node_float(bn, "epsilon", 1e-5f);
    const float *gamma = qk_f32(&g->values[bn->in[1]].t), *beta = qk_f32(&g->values[bn->in[2]].t);
    const float *mean = qk_f32(&g->values[bn->in[3]].t), *var = qk_f32(&g->values[bn->in[4]].t);
    for (int64_t m = 0; m < M; m++)
        if (!(var[m] + eps > 0.0) || !isfinite(var[m]))
            return qk_error(QK_ERR_ARG, "fold_bn: node '%s': var[%lld] + epsilon = %g is not positive",
                            bn->name, (long long)m, (double)var[m] + eps);
    double *s = qk_malloc((size_t)M * sizeof *s);
    if (!s)
        return qk_error(QK_ERR_NOMEM, "fold_bn: node '%s': out of memory", bn->name);
    for (int64_t m = 0; m < M; m++)
        s[m] = (double)gamma[m] / sqrt((double)var[m] + eps);

    /* A bias for p if it has none: [M] zeros, PARAM, no decay. */
    int bv = fs->b;
    if (bv < 0) {
        int *in = qk_realloc(g->nodes[p].in, 3 * sizeof *in);
        char *name = in ? bias_name(g, g->values[fs->w].name) : NULL;
        if (in)
            g->nodes[p].in = in;
        qk_tensor t = { 0 };
        qk_status st = name ? qk_tensor_alloc(&t, QK_F32, 1, &M) : QK_ERR_NOMEM;
        bv = st == QK_OK ? qk_graph_add_init(g, name, QK_VALUE_PARAM, &t) : -1;
        qk_free(name);
        if (bv < 0) {
            qk_tensor_free(&t);
            qk_free(s);
            return qk_error(QK_ERR_NOMEM, "fold_bn: node '%s': out of memory adding a bias", g->nodes[p].name);
        }
        g->values[bv].no_decay = 1;
        qk_node *pw = &g->nodes[p];
        pw->in[2] = bv;
        pw->n_in = 3;
    }

    /* Commit: nothing below can fail. */
    qk_node *P = &g->nodes[p];
    const qk_node *B = &g->nodes[bi];
    float *w = qk_f32(&g->values[fs->w].t), *b = qk_f32(&g->values[bv].t);
    for (int64_t r = 0; r < fs->rows; r++)
        for (int64_t c = 0; c < fs->cols; c++) {
            double sc = s[fs->chan_is_row ? r : c];
            w[r * fs->cols + c] = (float)((double)w[r * fs->cols + c] * sc);
        }
    for (int64_t m = 0; m < M; m++)
        b[m] = (float)((double)beta[m] + ((double)b[m] - (double)mean[m]) * s[m]);
    P->out[0] = B->out[0];
    g->values[B->out[0]].producer = p;
    qk_free(s);
    *done = 1;
    return QK_OK;
}

qk_status qk_fold_bn(qk_graph *g, int *n_folded)
{
    if (n_folded)
        *n_folded = 0;
    if (!g)
        return qk_error(QK_ERR_ARG, "fold_bn: graph is NULL");
    uint8_t *remove = qk_calloc((size_t)(g->n_nodes ? g->n_nodes : 1), 1);
    if (!remove)
        return qk_error(QK_ERR_NOMEM, "fold_bn: out of memory");
    qk_graph_unplan(g); /* ACT buffers and grads point into the plan's arena */
    qk_free(g->order);
    g->order = NULL;
    qk_status st = QK_OK;
    int folded = 0;
    const int n_nodes = g->n_nodes; /* fold_one adds values, never nodes */
    for (int p = 0; p < n_nodes && st == QK_OK; p++) {
        fold_site fs;
        int bi;
        while (st == QK_OK && !remove[p] && site_of(g, p, &fs) && (bi = bn_of(g, p, &fs, remove)) >= 0) {
            int done = 0;
            st = fold_one(g, p, bi, &fs, &done);
            if (!done)
                break;
            remove[bi] = 1;
            folded++;
        }
    }
    qk_status rst = folded ? qk_graph_remove_nodes(g, remove) : QK_OK;
    qk_free(remove);
    if (rst != QK_OK)
        return qk_error_context(rst, "fold_bn: removing %d folded BatchNormalization nodes failed; the graph is "
                                     "not valid any more and must be destroyed",
                                folded);
    if (n_folded)
        *n_folded = folded;
    if (st != QK_OK)
        return st;
    return qk_graph_sort(g);
}
