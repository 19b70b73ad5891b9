/* Activation layout of a lowered graph for the runner (lower_internal.h,
 * qk_lower_layout): the codes between integer convolutions are kept NHWC,
 * so no convolution transposes its input (im2col rows are contiguous runs
 * of channels) and none scatters its output into planes.
 *
 * A 4-D codes value is NHWC when
 *  - it is made by a QkConv that can write NHWC (group 1, or depthwise
 *    with channel multiplier 1), or by a QkAdd / QkRequant whose inputs are
 *    NHWC (element-wise ops and depthwise convolutions tie their inputs and
 *    output into one class that is all NHWC or all NCHW);
 *    A max QkPool reading NHWC may write NHWC as well (not tied: it also
 *    writes NCHW for a reader that needs it);
 *  - every reader takes NHWC: a QkConv that can read it (group 1 with >= 8
 *    or exactly 1 input channels, or a tied depthwise one), a global average
 *    or max QkPool, or a tied element-wise op (QkAdd, QkRequant, QkEpilogue:
 *    its activations a and b); never a graph output or any other op.
 * Everything else stays NCHW. The arithmetic is unchanged (the same codes
 * in another order), so the logits are bit-identical. */
#include "lower_internal.h"

#include <string.h>

static int is_eltwise(const qk_node *n) { return qk_node_is_in(n, QK_LOWER_DOMAIN, "QkAdd") || qk_node_is_in(n, QK_LOWER_DOMAIN, "QkRequant"); }

/* QkEpilogue: element-wise over activations a (slot 0) and b (slot 2), with
 * per-channel scales it reads along the axis its attribute nhwc names. */
static int epi_act_slot(const qk_node *n, int i) { return qk_node_is_in(n, QK_LOWER_DOMAIN, "QkEpilogue") && (i == 0 || i == 2); }

/* QkConv node n: 2-D, group 1 (the weight initializer gives C / group). */
static int conv_group1(const qk_graph *g, const qk_node *n, int64_t *cin)
{
    if (n->n_in < 2 || n->in[1] < 0 || qk_node_int(n, "group", 1) != 1)
        return 0;
    const qk_tensor *w = &g->values[n->in[1]].t;
    if (w->ndim != 4)
        return 0;
    *cin = w->dims[1];
    return 1;
}

/* QkConv node n: depthwise with multiplier 1 (w [C][1][kh][kw], group C). */
static int conv_dw1(const qk_graph *g, const qk_node *n)
{
    if (n->n_in < 2 || n->in[1] < 0)
        return 0;
    const qk_tensor *w = &g->values[n->in[1]].t;
    int64_t grp = qk_node_int(n, "group", 1);
    return w->ndim == 4 && grp > 1 && w->dims[1] == 1 && w->dims[0] == grp;
}

/* Does input slot i of node n accept NHWC codes? */
static int reads_nhwc(const qk_graph *g, const qk_node *n, int i)
{
    int64_t cin;
    if (qk_node_is_in(n, QK_LOWER_DOMAIN, "QkConv"))
        return i == 0 && ((conv_group1(g, n, &cin) && (cin >= 8 || cin == 1)) || conv_dw1(g, n));
    if (qk_node_is_in(n, QK_LOWER_DOMAIN, "QkPool"))
        return i == 0 && (qk_node_int(n, "kind", 0) == 2 || qk_node_int(n, "kind", 0) == 0);
    if (qk_node_is_in(n, QK_LOWER_DOMAIN, "QkEpilogue"))
        return epi_act_slot(n, i);
    return is_eltwise(n);
}

qk_status qk_lower_layout(qk_graph *g)
{
    int nv = g->n_values;
    int *par = qk_malloc(((size_t)nv + 1) * sizeof(int));
    uint8_t *ok = qk_malloc((size_t)nv + 1);
    if (!par || !ok) {
        qk_free(par);
        qk_free(ok);
        return qk_error(QK_ERR_NOMEM, "lower layout: out of memory");
    }
    for (int v = 0; v < nv; v++)
        par[v] = v, ok[v] = 0;
    /* candidates: made by a group-1 QkConv or an element-wise op */
    for (int i = 0; i < g->n_nodes; i++) {
        const qk_node *n = &g->nodes[i];
        int64_t cin;
        if (n->n_out != 1 || n->out[0] < 0)
            continue;
        if (qk_node_is_in(n, QK_LOWER_DOMAIN, "QkConv") && conv_group1(g, n, &cin))
            ok[n->out[0]] = 1;
        if (qk_node_is_in(n, QK_LOWER_DOMAIN, "QkConv") && conv_dw1(g, n) && n->in[0] >= 0) {
            ok[n->out[0]] = 1;
            qk_uf_join(par, n->in[0], n->out[0]);
        }
        if (qk_node_is_in(n, QK_LOWER_DOMAIN, "QkEpilogue")) {
            ok[n->out[0]] = 1;
            for (int k = 0; k < n->n_in; k++)
                if (n->in[k] >= 0 && epi_act_slot(n, k))
                    qk_uf_join(par, n->in[k], n->out[0]);
        }
        if (qk_node_is_in(n, QK_LOWER_DOMAIN, "QkPool") && qk_node_int(n, "kind", 0) == 0)
            ok[n->out[0]] = 1; /* if its input is NHWC: settled below */
        if (is_eltwise(n)) {
            ok[n->out[0]] = 1;
            for (int k = 0; k < n->n_in; k++)
                if (n->in[k] >= 0)
                    qk_uf_join(par, n->in[k], n->out[0]);
        }
    }
    /* a reader that needs NCHW, or a graph output, rules a value out */
    for (int i = 0; i < g->n_nodes; i++) {
        const qk_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0 && !reads_nhwc(g, n, k))
                ok[n->in[k]] = 0;
    }
    for (int i = 0; i < g->n_outputs; i++)
        ok[g->outputs[i]] = 0;
    for (int v = 0; v < nv; v++) {
        const qk_value *x = &g->values[v];
        if (x->kind != QK_VALUE_ACT)
            ok[v] = 0;
    }
    /* a class is NHWC only if every member is */
    for (int v = 0; v < nv; v++)
        if (!ok[v])
            ok[qk_uf_find(par, v)] = 0;
    for (int v = 0; v < nv; v++)
        ok[v] = ok[qk_uf_find(par, v)];
    /* a max pool writes NHWC only from NHWC input: rule out the classes of
     * those that would not, until nothing changes */
    for (int changed = 1; changed;) {
        changed = 0;
        for (int i = 0; i < g->n_nodes; i++) {
            const qk_node *n = &g->nodes[i];
            if (!qk_node_is_in(n, QK_LOWER_DOMAIN, "QkPool") || qk_node_int(n, "kind", 0) != 0 || n->in[0] < 0 || n->out[0] < 0)
                continue;
            if (!ok[n->in[0]] && ok[n->out[0]]) {
                int r = qk_uf_find(par, n->out[0]);
                for (int v = 0; v < nv; v++)
                    if (qk_uf_find(par, v) == r)
                        ok[v] = 0;
                changed = 1;
            }
        }
    }
    qk_status st = QK_OK;
    for (int i = 0; i < g->n_nodes && st == QK_OK; i++) {
        const qk_node *n = &g->nodes[i];
        int x = n->n_in > 0 ? n->in[0] : -1, y = n->n_out > 0 ? n->out[0] : -1;
        if (qk_node_is_in(n, QK_LOWER_DOMAIN, "QkConv")) {
            st = qk_node_set_int(g, i, "x_nhwc", x >= 0 && ok[x]);
            if (st == QK_OK)
                st = qk_node_set_int(g, i, "y_nhwc", y >= 0 && ok[y]);
        } else if (qk_node_is_in(n, QK_LOWER_DOMAIN, "QkEpilogue")) {
            st = qk_node_set_int(g, i, "nhwc", y >= 0 && ok[y]);
        } else if (qk_node_is_in(n, QK_LOWER_DOMAIN, "QkPool") && qk_node_int(n, "kind", 0) == 2) {
            st = qk_node_set_int(g, i, "x_nhwc", x >= 0 && ok[x]);
        } else if (qk_node_is_in(n, QK_LOWER_DOMAIN, "QkPool") && qk_node_int(n, "kind", 0) == 0) {
            st = qk_node_set_int(g, i, "x_nhwc", x >= 0 && ok[x]);
            if (st == QK_OK)
                st = qk_node_set_int(g, i, "y_nhwc", y >= 0 && ok[y] && x >= 0 && ok[x]);
        }
    }
    qk_free(par);
    qk_free(ok);
    return st;
}
