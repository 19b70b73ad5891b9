/* Block reconstruction (BRECQ / QDrop, ptq.h), the graph side: splitting
 * a calibrated model into blocks, building a block's sub-graph for the
 * graph engine's forward/backward, collecting block inputs and outputs on
 * the calibration images, and the Fisher weights of every block output.
 * recon_block.c runs the optimizer on these.
 *
 * Blocks. Nodes whose inputs are all constant (weight FakeQuant nodes,
 * shape arithmetic) belong to their readers. The other nodes, in graph
 * order, are cut where everything that crosses the cut is one tensor x or
 * its quantized FakeQuant(x) and no activation quantizer of x is left
 * after the cut: a residual block (main path + skip) has no cut inside,
 * so it is one unit. Units with two or more weighted layers are blocks of
 * their own; runs of units with one weighted layer are grouped up to
 * RB_MAX_GROUP layers; units without a layer join the block before them
 * (the first one: the block after it). */
#include "recon_internal.h"

#include <math.h>
#include <string.h>

#define RB_MAX_GROUP 3

static int is_fq(const qk_node *n) { return qk_node_is_in(n, "ai.qkit", "FakeQuant"); }

/* constness of every value: initializer, or produced by a node whose
 * inputs are all constant */
static qk_status const_values(const qk_graph *g, uint8_t **out)
{
    uint8_t *cv = qk_calloc((size_t)g->n_values, 1);
    if (!cv)
        return qk_error(QK_ERR_NOMEM, "reconstruction: out of memory");
    for (int i = 0; i < g->n_values; i++)
        cv[i] = (uint8_t)qk_value_is_initializer(&g->values[i]);
    for (int k = 0; k < g->n_nodes; k++) {
        const qk_node *n = &g->nodes[g->order[k]];
        int c = n->n_in > 0;
        for (int j = 0; j < n->n_in; j++)
            c &= n->in[j] < 0 || cv[n->in[j]];
        for (int j = 0; c && j < n->n_out; j++)
            if (n->out[j] >= 0)
                cv[n->out[j]] = 1;
    }
    *out = cv;
    return QK_OK;
}

static int base_of(const qk_graph *g, int v)
{
    int p = g->values[v].producer;
    return p >= 0 && is_fq(&g->nodes[p]) ? g->nodes[p].in[0] : v;
}

void qk_recon_blocks_free(recon_block *b, int nb)
{
    for (int i = 0; b && i < nb; i++)
        qk_free(b[i].nodes);
    qk_free(b);
}

qk_status qk_recon_blocks(const qk_qmodel *m, recon_block **out, int *nb_out)
{
    const qk_graph *g = m->g;
    *out = NULL;
    *nb_out = 0;
    uint8_t *cv = NULL;
    qk_status st = const_values(g, &cv);
    if (st != QK_OK)
        return st;
    int V = g->n_values, n = 0;
    int *ord = qk_malloc((size_t)(g->n_nodes + 1) * sizeof *ord), *pos = qk_malloc((size_t)V * sizeof *pos);
    int *last = qk_malloc((size_t)V * sizeof *last), *layers = qk_calloc((size_t)(g->n_nodes + 1), sizeof *layers);
    int *lastfq = qk_malloc((size_t)V * sizeof *lastfq);
    recon_block *bl = qk_calloc((size_t)(g->n_nodes + 1), sizeof *bl);
    if (!ord || !pos || !last || !layers || !lastfq || !bl) {
        st = qk_error(QK_ERR_NOMEM, "reconstruction: out of memory");
        goto done;
    }
    for (int k = 0; k < g->n_nodes; k++) {
        const qk_node *nd = &g->nodes[g->order[k]];
        int c = nd->n_out > 0;
        for (int j = 0; j < nd->n_out; j++)
            c &= nd->out[j] < 0 || cv[nd->out[j]];
        if (!c)
            ord[n++] = g->order[k];
    }
    for (int v = 0; v < V; v++)
        pos[v] = last[v] = lastfq[v] = -1;
    for (int i = 0; i < g->n_inputs; i++)
        pos[g->inputs[i]] = -1;
    for (int k = 0; k < n; k++) {
        const qk_node *nd = &g->nodes[ord[k]];
        for (int j = 0; j < nd->n_out; j++)
            if (nd->out[j] >= 0)
                pos[nd->out[j]] = k;
        for (int j = 0; j < nd->n_in; j++)
            if (nd->in[j] >= 0 && !cv[nd->in[j]]) {
                last[nd->in[j]] = k;
                if (is_fq(nd))
                    lastfq[nd->in[j]] = k;
            }
    }
    for (int i = 0; i < g->n_outputs; i++)
        last[g->outputs[i]] = n;
    for (int li = 0; li < m->n_layers; li++)
        for (int k = 0; k < n; k++)
            if (ord[k] == m->layers[li].node)
                layers[k]++;
    int nb = 0, start = 0, cur_layers = 0, pending = 0; /* pending: the open block has units */
    for (int k = 0; k < n; k++) {
        /* is there a cut after position k? */
        int base = -1, ok = 1, outv = -1;
        for (int v = 0; v < V && ok; v++) {
            if (cv[v] || last[v] <= k || pos[v] > k || (pos[v] < 0 && g->values[v].kind != QK_VALUE_INPUT))
                continue;
            int b = base_of(g, v);
            ok = (base < 0 || base == b) && lastfq[b] <= k;
            base = b;
            if (b != v || outv < 0)
                outv = v;
        }
        ok = ok && (k == n - 1 || base >= 0);
        if (!ok)
            continue;
        int ul = 0;
        for (int j = start; j <= k; j++)
            ul += layers[j];
        int merge;
        if (!pending || ul == 0 || cur_layers == 0)
            merge = pending;
        else
            merge = ul == 1 && !bl[nb - 1].big && cur_layers + 1 <= RB_MAX_GROUP;
        if (!merge) {
            bl[nb].first = start;
            nb++;
            cur_layers = 0;
        }
        recon_block *b = &bl[nb - 1];
        b->last = k;
        b->out = k == n - 1 ? g->outputs[0] : outv;
        b->big |= ul >= 2;
        cur_layers += ul;
        b->n_layers = cur_layers;
        pending = 1;
        start = k + 1;
    }
    if (nb > 1 && bl[nb - 1].n_layers == 0) { /* a tail without layers joins the block before */
        bl[nb - 2].last = bl[nb - 1].last;
        bl[nb - 2].out = bl[nb - 1].out;
        nb--;
    }
    for (int i = 0; i < nb && st == QK_OK; i++) {
        recon_block *b = &bl[i];
        b->n_nodes = b->last - b->first + 1;
        b->nodes = qk_malloc((size_t)b->n_nodes * sizeof *b->nodes);
        if (!b->nodes) {
            st = qk_error(QK_ERR_NOMEM, "reconstruction: out of memory");
            break;
        }
        memcpy(b->nodes, ord + b->first, (size_t)b->n_nodes * sizeof *b->nodes);
        b->out_base = base_of(g, b->out);
        b->n_in = 0;
        for (int k = b->first; k <= b->last && st == QK_OK; k++) {
            const qk_node *nd = &g->nodes[ord[k]];
            for (int j = 0; j < nd->n_in && st == QK_OK; j++) {
                int v = nd->in[j], seen = 0;
                if (v < 0 || cv[v] || pos[v] >= b->first)
                    continue;
                for (int q = 0; q < b->n_in; q++)
                    seen |= b->in[q] == v;
                if (seen)
                    continue;
                if (b->n_in == RB_MAX_IN) {
                    st = qk_error(QK_ERR_UNSUPPORTED, "reconstruction: block at '%s' reads more than %d tensors",
                                  nd->name, RB_MAX_IN);
                    break;
                }
                b->in[b->n_in++] = v;
            }
        }
    }
    if (st == QK_OK) {
        *out = bl;
        *nb_out = nb;
        bl = NULL;
    } else {
        qk_recon_blocks_free(bl, nb);
        bl = NULL;
    }
done:
    qk_free(bl);
    qk_free(cv);
    qk_free(ord);
    qk_free(pos);
    qk_free(last);
    qk_free(layers);
    qk_free(lastfq);
    return st;
}

/* ---- sub-graphs ---- */

static int site_of_node(const qk_qmodel *m, int k)
{
    for (int s = 0; s < m->n_sites; s++)
        if (m->sites[s].node == k)
            return s;
    return -1;
}

typedef struct rb_build {
    const qk_qmodel *m;
    recon_sub *s;
    const uint8_t *learn_site; /* sites whose weight becomes a parameter */
} rb_build;

static qk_status copy_node(rb_build *b, int k);

static int map_value(rb_build *b, int v)
{
    recon_sub *s = b->s;
    const qk_graph *G = b->m->g;
    if (s->vmap[v] >= 0)
        return s->vmap[v];
    const qk_value *x = &G->values[v];
    int site = x->producer >= 0 && is_fq(&G->nodes[x->producer]) ? site_of_node(b->m, x->producer) : -1;
    if (site >= 0 && b->learn_site[site]) {
        /* a learned weight: the parameter W~ itself stands for the quantizer's
         * output (the caller writes it; its gradient is d loss / d W~) */
        if (s->n_w == RB_MAX_FQ)
            return -1;
        const qk_value *w = &G->values[G->nodes[x->producer].in[0]];
        qk_tensor t;
        if (qk_tensor_clone(&t, &w->t) != QK_OK)
            return -1;
        int nv = qk_graph_add_init(s->g, w->name, QK_VALUE_PARAM, &t);
        if (nv < 0) {
            qk_tensor_free(&t);
            return -1;
        }
        s->w_val[s->n_w] = nv;
        s->w_site[s->n_w++] = site;
        return s->vmap[v] = nv;
    }
    if (qk_value_is_initializer(x)) {
        qk_tensor t;
        if (qk_tensor_clone(&t, &x->t) != QK_OK)
            return -1;
        int nv = qk_graph_add_init(s->g, x->name, QK_VALUE_CONST, &t);
        if (nv < 0)
            qk_tensor_free(&t);
        return s->vmap[v] = nv;
    }
    if (x->producer >= 0 && copy_node(b, x->producer) == QK_OK)
        return s->vmap[v];
    return -1;
}

static qk_status add_node(recon_sub *s, const char *type, const char *name, int n_in, const int *in, int out,
                          int *node)
{
    int k = qk_graph_add_node(s->g, type, name, n_in, in, 1, &out);
    if (node)
        *node = k;
    return k >= 0 ? QK_OK : qk_error(QK_ERR_NOMEM, "reconstruction: out of memory");
}

/* BatchNormalization (inference form) as Mul + Add by per-channel constants:
 * a planned training graph would use batch statistics. */
static qk_status copy_bn(rb_build *b, const qk_node *n, int x)
{
    const qk_graph *G = b->m->g;
    const qk_value *xv = &G->values[n->in[0]];
    int64_t C = xv->t.ndim >= 2 ? xv->t.dims[1] : 0, dims[QK_MAX_DIMS];
    const qk_tensor *p[4];
    for (int i = 0; i < 4; i++) {
        const qk_value *v = &G->values[n->in[i + 1]];
        p[i] = qk_value_is_initializer(v) && v->t.dtype == QK_F32 && qk_tensor_numel(&v->t) == C ? &v->t : NULL;
        if (!p[i])
            return qk_error(QK_ERR_UNSUPPORTED, "reconstruction: BatchNormalization '%s' without constant "
                            "statistics", n->name);
    }
    dims[0] = C;
    for (int d = 2; d < xv->t.ndim; d++)
        dims[d - 1] = 1;
    qk_tensor ta, tb;
    if (qk_tensor_alloc(&ta, QK_F32, xv->t.ndim - 1, dims) != QK_OK)
        return qk_error(QK_ERR_NOMEM, "reconstruction: out of memory");
    if (qk_tensor_alloc(&tb, QK_F32, xv->t.ndim - 1, dims) != QK_OK) {
        qk_tensor_free(&ta);
        return qk_error(QK_ERR_NOMEM, "reconstruction: out of memory");
    }
    double eps = qk_node_float(n, "epsilon", 1e-5f);
    for (int64_t c = 0; c < C; c++) {
        double a = qk_f32(p[0])[c] / sqrt((double)qk_f32(p[3])[c] + eps);
        qk_f32(&ta)[c] = (float)a;
        qk_f32(&tb)[c] = (float)(qk_f32(p[1])[c] - a * qk_f32(p[2])[c]);
    }
    recon_sub *s = b->s;
    char *na = qk_graph_unique_name(s->g, "rb.bn_a"), *nb = qk_graph_unique_name(s->g, "rb.bn_b");
    int va = na ? qk_graph_add_init(s->g, na, QK_VALUE_CONST, &ta) : -1;
    int vb = nb && va >= 0 ? qk_graph_add_init(s->g, nb, QK_VALUE_CONST, &tb) : -1;
    qk_free(na);
    qk_free(nb);
    if (va < 0)
        qk_tensor_free(&ta);
    if (vb < 0) {
        qk_tensor_free(&tb);
        return qk_error(QK_ERR_NOMEM, "reconstruction: out of memory");
    }
    char *nt = qk_graph_unique_name(s->g, "rb.bn_t");
    int t = nt ? qk_graph_add_value(s->g, nt, QK_VALUE_ACT) : -1;
    int y = t >= 0 ? qk_graph_add_value(s->g, G->values[n->out[0]].name, QK_VALUE_ACT) : -1;
    qk_free(nt);
    if (y < 0)
        return qk_error(QK_ERR_NOMEM, "reconstruction: out of memory");
    qk_status st = add_node(s, "Mul", n->name, 2, (int[]){ x, va }, t, NULL);
    if (st == QK_OK)
        st = add_node(s, "Add", "rb.bn_add", 2, (int[]){ t, vb }, y, NULL);
    s->vmap[n->out[0]] = y;
    return st;
}

static qk_status copy_attrs(qk_graph *g, int k, const qk_node *n)
{
    qk_status st = QK_OK;
    for (int i = 0; i < n->n_attr && st == QK_OK; i++) {
        const qk_attr *a = &n->attr[i];
        switch (a->type) {
        case QK_ATTR_FLOAT: st = qk_node_set_float(g, k, a->name, a->f); break;
        case QK_ATTR_INT: st = qk_node_set_int(g, k, a->name, a->i); break;
        case QK_ATTR_STRING: st = qk_node_set_string(g, k, a->name, a->s); break;
        case QK_ATTR_FLOATS: st = qk_node_set_floats(g, k, a->name, a->n, a->floats); break;
        case QK_ATTR_INTS: st = qk_node_set_ints(g, k, a->name, a->n, a->ints); break;
        case QK_ATTR_TENSOR: {
            qk_tensor t;
            if ((st = qk_tensor_clone(&t, a->t)) == QK_OK && (st = qk_node_set_tensor(g, k, a->name, &t)) != QK_OK)
                qk_tensor_free(&t);
            break;
        }
        }
    }
    return st;
}

static qk_status copy_node(rb_build *b, int k)
{
    recon_sub *s = b->s;
    const qk_graph *G = b->m->g;
    const qk_node *n = &G->nodes[k];
    int in[16], out[8];
    if (n->n_in > 16 || n->n_out > 8)
        return qk_error(QK_ERR_UNSUPPORTED, "reconstruction: node '%s' has too many inputs", n->name);
    int bn = qk_node_is(n, "BatchNormalization") && n->n_out == 1 && n->n_in == 5;
    for (int j = 0; j < (bn ? 1 : n->n_in); j++)
        if ((in[j] = n->in[j] < 0 ? -1 : map_value(b, n->in[j])) < 0 && n->in[j] >= 0)
            return qk_error(QK_ERR_NOMEM, "reconstruction: input %d of '%s' not available", j, n->name);
    if (bn)
        return copy_bn(b, n, in[0]);
    for (int j = 0; j < n->n_out; j++) {
        out[j] = n->out[j] < 0 ? -1 : qk_graph_add_value(s->g, G->values[n->out[j]].name, QK_VALUE_ACT);
        if (n->out[j] >= 0 && out[j] < 0)
            return qk_error(QK_ERR_NOMEM, "reconstruction: out of memory");
    }
    int nk = qk_graph_add_node(s->g, n->op_type, n->name, n->n_in, in, n->n_out, out);
    if (nk < 0)
        return qk_error(QK_ERR_NOMEM, "reconstruction: out of memory");
    if (n->domain && !(s->g->nodes[nk].domain = qk_strdup(n->domain)))
        return qk_error(QK_ERR_NOMEM, "reconstruction: out of memory");
    for (int j = 0; j < n->n_out; j++)
        if (n->out[j] >= 0)
            s->vmap[n->out[j]] = out[j];
    if (is_fq(n)) {
        if (s->n_fq == RB_MAX_FQ)
            return qk_error(QK_ERR_UNSUPPORTED, "reconstruction: more than %d quantizers in a block", RB_MAX_FQ);
        s->fq_node[s->n_fq] = nk;
        s->fq_site[s->n_fq++] = site_of_node(b->m, k);
    }
    return copy_attrs(s->g, nk, n);
}

void qk_recon_sub_free(recon_sub *s)
{
    if (s->g)
        qk_graph_destroy(s->g);
    qk_free(s->vmap);
    memset(s, 0, sizeof *s);
}

qk_status qk_recon_sub_build(const qk_qmodel *m, const int *nodes, int n_nodes, const int *ins, int n_in, int out,
                             const uint8_t *learn_site, int fisher, recon_sub *s)
{
    memset(s, 0, sizeof *s);
    const qk_graph *G = m->g;
    qk_status st = qk_graph_create(&s->g);
    if (st != QK_OK)
        return st;
    if (!(s->vmap = qk_malloc((size_t)G->n_values * sizeof *s->vmap))) {
        st = qk_error(QK_ERR_NOMEM, "reconstruction: out of memory");
        goto fail;
    }
    for (int v = 0; v < G->n_values; v++)
        s->vmap[v] = -1;
    qk_graph_set_options(s->g, &G->opts);
    rb_build b = { m, s, learn_site };
    for (int i = 0; i < n_in; i++) {
        const qk_value *x = &G->values[ins[i]];
        int64_t dims[QK_MAX_DIMS];
        memcpy(dims, x->t.dims, sizeof dims);
        dims[0] = -1;
        if ((s->in[i] = qk_graph_add_input(s->g, x->name, QK_F32, x->t.ndim, dims)) < 0) {
            st = qk_error(QK_ERR_NOMEM, "reconstruction: out of memory");
            goto fail;
        }
        s->vmap[ins[i]] = s->in[i];
    }
    s->n_in = n_in;
    for (int i = 0; i < n_nodes; i++)
        if ((st = copy_node(&b, nodes[i])) != QK_OK)
            goto fail;
    s->out = s->vmap[out];
    const qk_value *ov = &G->values[out];
    if (s->out < 0) {
        st = qk_error(QK_ERR_ARG, "reconstruction: '%s' is not computed by the block", ov->name);
        goto fail;
    }
    int lossin[2] = { s->out, -1 }, p = -1;
    if (fisher) {
        s->aux = qk_graph_add_input(s->g, "rb.labels", QK_I64, 1, (const int64_t[]){ -1 });
        lossin[1] = s->aux;
    } else {
        int64_t dims[QK_MAX_DIMS];
        memcpy(dims, ov->t.dims, sizeof dims);
        dims[0] = -1;
        s->aux = qk_graph_add_input(s->g, "rb.G", QK_F32, ov->t.ndim, dims);
        p = s->aux >= 0 ? qk_graph_add_value(s->g, "rb.prod", QK_VALUE_ACT) : -1;
        lossin[1] = s->aux;
    }
    s->loss = s->aux >= 0 ? qk_graph_add_value(s->g, "rb.loss", QK_VALUE_ACT) : -1;
    if (s->loss < 0 || (!fisher && p < 0)) {
        st = qk_error(QK_ERR_NOMEM, "reconstruction: out of memory");
        goto fail;
    }
    int ln;
    if (fisher) {
        st = add_node(s, "SoftmaxCrossEntropyLoss", "rb.ce", 2, lossin, s->loss, &ln);
        if (st == QK_OK)
            st = qk_node_set_string(s->g, ln, "reduction", "sum");
    } else {
        st = add_node(s, "Mul", "rb.mul", 2, lossin, p, NULL);
        if (st == QK_OK)
            st = add_node(s, "ReduceSum", "rb.sum", 1, &p, s->loss, &ln);
        if (st == QK_OK)
            st = qk_node_set_int(s->g, ln, "keepdims", 0);
    }
    if (st == QK_OK)
        st = qk_graph_add_output(s->g, s->loss);
    if (st == QK_OK)
        st = qk_quant_bind(s->g);
    if (st != QK_OK)
        goto fail;
    return QK_OK;
fail:
    qk_recon_sub_free(s);
    return qk_error_context(st, "reconstruction: building a block's graph");
}

/* ---- data ---- */

qk_status qk_recon_collect(qk_qmodel *m, const qk_dataset *ds, qk_norm norm, int64_t N, int nv, const int *vals,
                           int float_run, float **outs, const int64_t *pers)
{
    qk_graph *g = m->g;
    qk_fq_mode *saved = qk_malloc((size_t)(m->n_sites ? m->n_sites : 1) * sizeof *saved);
    int64_t B = N < 128 ? N : 128;
    int64_t *labels = qk_malloc((size_t)B * sizeof *labels);
    qk_batcher bt;
    qk_dataset view = qk_dataset_view(ds, 0, N);
    qk_status st = saved && labels ? qk_batcher_init(&bt, &view, B, 0, 0, norm, NULL)
                                   : qk_error(QK_ERR_NOMEM, "reconstruction: out of memory");
    if (st != QK_OK) {
        qk_free(saved);
        qk_free(labels);
        return st;
    }
    for (int s = 0; s < m->n_sites; s++) {
        saved[s] = m->rt[s].mode;
        if (float_run)
            m->rt[s].mode = QK_FQ_OFF;
    }
    qk_value *in = &g->values[g->inputs[0]];
    int64_t done_n = 0;
    for (int64_t i = 0; i < qk_batcher_count(&bt) && st == QK_OK; i++) {
        int64_t cnt;
        if ((st = qk_batcher_get(&bt, i, qk_f32(&in->t), labels, &cnt)) != QK_OK ||
            (st = qk_graph_set_batch(g, cnt)) != QK_OK || (st = qk_graph_forward(g)) != QK_OK)
            break;
        for (int j = 0; j < nv && st == QK_OK; j++) {
            const qk_tensor *x = &g->values[vals[j]].t;
            if (qk_tensor_numel(x) != cnt * pers[j])
                st = qk_error(QK_ERR_SHAPE, "reconstruction: '%s' has %lld elements for %lld images",
                              g->values[vals[j]].name, (long long)qk_tensor_numel(x), (long long)cnt);
            else
                memcpy(outs[j] + done_n * pers[j], qk_f32(x), (size_t)(cnt * pers[j]) * sizeof(float));
        }
        done_n += cnt;
    }
    for (int s = 0; s < m->n_sites; s++)
        m->rt[s].mode = saved[s];
    qk_batcher_free(&bt);
    qk_free(saved);
    qk_free(labels);
    return st;
}

/* Fisher weights: F = (d CE / d z)^2 per element of each block's output
 * (its float value, both paths of a residual block), from the float model
 * on the first N images (the dataset's labels, else the float model's
 * prediction); w = 0.5 + 0.5 F / mean(F) per block (mean 1; half of it
 * plain MSE, so images the model is sure of still count). */
qk_status qk_recon_fisher(qk_qmodel *m, const qk_dataset *ds, qk_norm norm, int64_t N, const recon_block *bl, int nb,
                          float **F, const int64_t *pers, qk_pool *pool)
{
    const qk_graph *G = m->g;
    int *nodes = qk_malloc((size_t)G->n_nodes * sizeof *nodes), nn = 0;
    uint8_t *learn = qk_calloc((size_t)(m->n_sites ? m->n_sites : 1), 1);
    int64_t B = N < 64 ? N : 64;
    int64_t *labels = qk_malloc((size_t)B * sizeof *labels);
    recon_sub s = { 0 };
    qk_fq_rt off = { 0 };
    qk_batcher bt;
    int bt_ok = 0;
    qk_status st = nodes && learn && labels ? QK_OK : qk_error(QK_ERR_NOMEM, "reconstruction: out of memory");
    if (st != QK_OK)
        goto done;
    for (int i = 0; i < m->n_sites; i++)
        learn[i] = (uint8_t)m->sites[i].is_weight;
    for (int b = 0; b < nb; b++)
        for (int k = 0; k < bl[b].n_nodes; k++)
            nodes[nn++] = bl[b].nodes[k];
    int in0 = G->inputs[0];
    if ((st = qk_recon_sub_build(m, nodes, nn, &in0, 1, G->outputs[0], learn, 1, &s)) != QK_OK)
        goto done;
    off.mode = QK_FQ_OFF;
    for (int i = 0; i < s.n_fq && st == QK_OK; i++)
        st = qk_fakequant_attach(&s.g->nodes[s.fq_node[i]], &off);
    qk_dataset view = qk_dataset_view(ds, 0, N);
    if (st != QK_OK || (st = qk_graph_plan(s.g, B, 1, pool)) != QK_OK ||
        (st = qk_batcher_init(&bt, &view, B, 0, 0, norm, NULL)) != QK_OK)
        goto done;
    bt_ok = 1;
    int has = qk_dataset_has_labels(ds);
    qk_value *x = &s.g->values[s.in[0]], *lv = &s.g->values[s.aux], *ov = &s.g->values[s.out];
    int64_t done_n = 0;
    for (int64_t i = 0; i < qk_batcher_count(&bt) && st == QK_OK; i++) {
        int64_t cnt;
        if ((st = qk_batcher_get(&bt, i, qk_f32(&x->t), labels, &cnt)) != QK_OK ||
            (st = qk_graph_set_batch(s.g, cnt)) != QK_OK)
            break;
        int64_t *y = (int64_t *)lv->t.data, C = ov->t.ndim == 2 ? ov->t.dims[1] : 0;
        if (C < 1) {
            st = qk_error(QK_ERR_SHAPE, "reconstruction: the model output '%s' is not [N, classes]", ov->name);
            break;
        }
        for (int64_t r = 0; r < cnt; r++)
            y[r] = has && labels[r] >= 0 && labels[r] < C ? labels[r] : 0;
        if ((st = qk_graph_forward(s.g)) != QK_OK)
            break;
        if (!has)
            for (int64_t r = 0; r < cnt; r++) {
                const float *z = qk_f32(&ov->t) + r * C;
                int64_t a = 0;
                for (int64_t c = 1; c < C; c++)
                    a = z[c] > z[a] ? c : a;
                y[r] = a;
            }
        if ((!has && (st = qk_graph_forward(s.g)) != QK_OK) || (st = qk_graph_backward(s.g, s.loss)) != QK_OK)
            break;
        for (int b = 0; b < nb; b++) {
            const qk_value *gv = &s.g->values[s.vmap[bl[b].out_base]];
            if (!gv->grad.data) {
                st = qk_error(QK_ERR_STATE, "reconstruction: no gradient reaches '%s'", gv->name);
                break;
            }
            const float *gd = qk_f32(&gv->grad);
            for (int64_t e = 0; e < cnt * pers[b]; e++)
                F[b][done_n * pers[b] + e] = gd[e] * gd[e];
        }
        done_n += cnt;
    }
    for (int b = 0; b < nb && st == QK_OK; b++) {
        double mean = 0;
        int64_t ne = N * pers[b];
        for (int64_t e = 0; e < ne; e++)
            mean += F[b][e];
        mean /= (double)ne;
        for (int64_t e = 0; e < ne; e++)
            F[b][e] = (float)(0.5 + (mean > 0 ? 0.5 * F[b][e] / mean : 0.5));
    }
done:
    if (bt_ok)
        qk_batcher_free(&bt);
    qk_recon_sub_free(&s);
    qk_free(nodes);
    qk_free(learn);
    qk_free(labels);
    return st;
}
