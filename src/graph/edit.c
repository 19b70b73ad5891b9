/* Graph editing: rewiring value uses, removing nodes and dead values.
 * Used by graph rewrites (BN folding, fusion passes). Every function leaves
 * the graph unplanned with g->order reset, so the next qk_graph_plan (or
 * qk_graph_sort) recomputes the order; bound operators stay bound. */
#include "qkit/graph.h"

#include <string.h>

/* Plans and orders refer to node and value indices: drop both. */
static void invalidate(qk_graph *g)
{
    qk_graph_unplan(g);
    qk_free(g->order);
    g->order = NULL;
}

qk_status qk_graph_replace_uses(qk_graph *g, int old_v, int new_v, int except_node)
{
    if (!g)
        return qk_error(QK_ERR_ARG, "replace_uses: graph is NULL");
    if (old_v < 0 || old_v >= g->n_values || new_v < 0 || new_v >= g->n_values)
        return qk_error(QK_ERR_ARG, "replace_uses: value index %d or %d out of range (graph has %d values)",
                        old_v, new_v, g->n_values);
    if (except_node < -1 || except_node >= g->n_nodes)
        return qk_error(QK_ERR_ARG, "replace_uses: node index %d out of range (graph has %d nodes)",
                        except_node, g->n_nodes);
    invalidate(g);
    if (old_v == new_v)
        return QK_OK;
    for (int i = 0; i < g->n_nodes; i++) {
        if (i == except_node)
            continue;
        qk_node *n = &g->nodes[i];
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j] == old_v)
                n->in[j] = new_v;
    }
    for (int i = 0; i < g->n_outputs; i++)
        if (g->outputs[i] == old_v)
            g->outputs[i] = new_v;
    return QK_OK;
}

static void value_free(qk_value *v)
{
    qk_free(v->name);
    qk_tensor_free(&v->t);
    if (v->grad.owned)
        qk_tensor_free(&v->grad);
    memset(v, 0, sizeof *v);
}

/* The value pass with caller-provided scratch map[g->n_values]: cannot fail. */
static void remove_unused(qk_graph *g, int *map)
{
    invalidate(g);
    /* map[i]: 1 if referenced, then the new index (-1 = removed). */
    memset(map, 0, (size_t)g->n_values * sizeof *map);
    for (int i = 0; i < g->n_nodes; i++) {
        const qk_node *n = &g->nodes[i];
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j] >= 0)
                map[n->in[j]] = 1;
        for (int j = 0; j < n->n_out; j++)
            if (n->out[j] >= 0)
                map[n->out[j]] = 1;
    }
    for (int i = 0; i < g->n_inputs; i++)
        map[g->inputs[i]] = 1;
    for (int i = 0; i < g->n_outputs; i++)
        map[g->outputs[i]] = 1;
    int k = 0;
    for (int i = 0; i < g->n_values; i++) {
        if (!map[i]) {
            value_free(&g->values[i]);
            map[i] = -1;
            continue;
        }
        if (k != i)
            g->values[k] = g->values[i];
        map[i] = k++;
    }
    if (k < g->n_values)
        memset(&g->values[k], 0, (size_t)(g->n_values - k) * sizeof *g->values);
    g->n_values = k;
    for (int i = 0; i < g->n_nodes; i++) {
        qk_node *n = &g->nodes[i];
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j] >= 0)
                n->in[j] = map[n->in[j]];
        for (int j = 0; j < n->n_out; j++)
            if (n->out[j] >= 0)
                n->out[j] = map[n->out[j]];
    }
    for (int i = 0; i < g->n_inputs; i++)
        g->inputs[i] = map[g->inputs[i]];
    for (int i = 0; i < g->n_outputs; i++)
        g->outputs[i] = map[g->outputs[i]];
}

qk_status qk_graph_remove_unused_values(qk_graph *g)
{
    if (!g)
        return qk_error(QK_ERR_ARG, "remove_unused_values: graph is NULL");
    int *map = qk_malloc((size_t)(g->n_values ? g->n_values : 1) * sizeof *map);
    if (!map)
        return qk_error(QK_ERR_NOMEM, "remove_unused_values: out of memory");
    remove_unused(g, map);
    qk_free(map);
    return QK_OK;
}

qk_status qk_graph_remove_nodes(qk_graph *g, const uint8_t *remove)
{
    if (!g || !remove)
        return qk_error(QK_ERR_ARG, "remove_nodes: graph or flags are NULL");
    /* Validate before changing anything: every value a removed node writes
     * must either be written by a kept node too (a rewrite moved it) or be
     * read by no kept node and not be a graph output. */
    int *kept_prod = qk_malloc((size_t)(g->n_values ? g->n_values : 1) * sizeof *kept_prod);
    if (!kept_prod)
        return qk_error(QK_ERR_NOMEM, "remove_nodes: out of memory");
    for (int i = 0; i < g->n_values; i++)
        kept_prod[i] = -1;
    for (int i = 0; i < g->n_nodes; i++)
        if (!remove[i])
            for (int j = 0; j < g->nodes[i].n_out; j++)
                if (g->nodes[i].out[j] >= 0)
                    kept_prod[g->nodes[i].out[j]] = i;
    qk_status st = QK_OK;
    for (int i = 0; i < g->n_nodes && st == QK_OK; i++) {
        if (!remove[i])
            continue;
        const qk_node *n = &g->nodes[i];
        for (int j = 0; j < n->n_out && st == QK_OK; j++) {
            int v = n->out[j];
            if (v < 0 || kept_prod[v] >= 0)
                continue;
            for (int o = 0; o < g->n_outputs; o++)
                if (g->outputs[o] == v) {
                    st = qk_error(QK_ERR_ARG,
                                  "remove_nodes: node '%s' (%s) writes graph output '%s'; "
                                  "rewire the output before removing the node",
                                  n->name, n->op_type, g->values[v].name);
                    break;
                }
            for (int c = 0; c < g->n_nodes && st == QK_OK; c++) {
                if (remove[c])
                    continue;
                const qk_node *u = &g->nodes[c];
                for (int k = 0; k < u->n_in; k++)
                    if (u->in[k] == v) {
                        st = qk_error(QK_ERR_ARG,
                                      "remove_nodes: node '%s' (%s) writes '%s', which kept node '%s' (%s) reads",
                                      n->name, n->op_type, g->values[v].name, u->name, u->op_type);
                        break;
                    }
            }
        }
    }
    if (st != QK_OK) {
        qk_free(kept_prod);
        return st;
    }

    invalidate(g);
    int k = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        if (remove[i]) {
            qk_node_clear(&g->nodes[i]);
            continue;
        }
        if (k != i)
            g->nodes[k] = g->nodes[i];
        k++;
    }
    if (k < g->n_nodes)
        memset(&g->nodes[k], 0, (size_t)(g->n_nodes - k) * sizeof *g->nodes);
    g->n_nodes = k;
    /* Producers from scratch: node indices moved and a rewrite may have
     * handed a removed node's output to a kept node. */
    for (int i = 0; i < g->n_values; i++)
        g->values[i].producer = -1;
    for (int i = 0; i < g->n_nodes; i++)
        for (int j = 0; j < g->nodes[i].n_out; j++)
            if (g->nodes[i].out[j] >= 0)
                g->values[g->nodes[i].out[j]].producer = i;
    remove_unused(g, kept_prod); /* reuses the scratch: nothing can fail now */
    qk_free(kept_prod);
    return QK_OK;
}

/* Input k of n holds a parameter the layer owns (quantization, BN folding
 * and reconstruction give each layer its own scales and codes). */
static int is_param_slot(const qk_node *n, int k)
{
    return k >= 1 && (qk_node_is(n, "Conv") || qk_node_is(n, "ConvTranspose") || qk_node_is(n, "Gemm") ||
                      qk_node_is(n, "MatMul") || qk_node_is(n, "BatchNormalization"));
}

static int is_output(const qk_graph *g, int v)
{
    for (int o = 0; o < g->n_outputs; o++)
        if (g->outputs[o] == v)
            return 1;
    return 0;
}

qk_status qk_graph_own_params(qk_graph *g, int *n_changed)
{
    if (n_changed)
        *n_changed = 0;
    if (!g)
        return qk_error(QK_ERR_ARG, "own_params: graph is NULL");
    int changed = 0, n_rm = 0;
    qk_status st = QK_OK;
    uint8_t *rm = qk_calloc((size_t)(g->n_nodes ? g->n_nodes : 1), 1);
    int *uses = qk_calloc((size_t)(g->n_values ? g->n_values : 1), sizeof *uses);
    if (!rm || !uses) {
        st = qk_error(QK_ERR_NOMEM, "own_params: out of memory");
        goto done;
    }
    /* 1. Identity of an initializer (how torch.onnx.export shares equal
     *    tensors): its output becomes an initializer holding a copy. */
    for (int i = 0; i < g->n_nodes && st == QK_OK; i++) {
        qk_node *n = &g->nodes[i];
        if (!qk_node_is(n, "Identity") || n->n_in < 1 || n->n_out != 1 || n->in[0] < 0 || n->out[0] < 0)
            continue;
        int src = n->in[0], dst = n->out[0];
        if (!qk_value_is_initializer_with_data(&g->values[src]) || is_output(g, dst) ||
            g->values[dst].kind != QK_VALUE_ACT)
            continue;
        char *dn = qk_graph_unique_name(g, g->values[dst].name);
        int dummy = dn ? qk_graph_add_value(g, dn, QK_VALUE_ACT) : -1;
        qk_free(dn);
        qk_tensor t;
        if (dummy < 0 || qk_tensor_clone(&t, &g->values[src].t) != QK_OK) {
            st = qk_error(QK_ERR_NOMEM, "own_params: out of memory");
            break;
        }
        qk_value *d = &g->values[dst];
        qk_tensor_free(&d->t);
        d->t = t;
        d->kind = g->values[src].kind;
        d->no_decay = g->values[src].no_decay;
        g->nodes[i].out[0] = dummy;
        rm[i] = 1;
        n_rm++;
        changed++;
    }
    if (st == QK_OK && n_rm) {
        invalidate(g);
        st = qk_graph_remove_nodes(g, rm);
    }
    /* 2. An initializer read as a parameter by several layers: each further
     *    reader gets its own copy. */
    if (st == QK_OK) {
        int *nu = qk_realloc(uses, (size_t)(g->n_values ? g->n_values : 1) * sizeof *uses);
        if (!nu) {
            st = qk_error(QK_ERR_NOMEM, "own_params: out of memory");
            goto done;
        }
        uses = nu;
        memset(uses, 0, (size_t)g->n_values * sizeof *uses);
        for (int i = 0; i < g->n_nodes && st == QK_OK; i++)
            for (int k = 0; k < g->nodes[i].n_in && st == QK_OK; k++) {
                int v = g->nodes[i].in[k];
                if (v < 0 || !is_param_slot(&g->nodes[i], k) || !qk_value_is_initializer_with_data(&g->values[v]))
                    continue;
                if (uses[v]++ == 0)
                    continue;
                qk_tensor t;
                char *nm = qk_graph_unique_name(g, g->values[v].name);
                if (!nm || qk_tensor_clone(&t, &g->values[v].t) != QK_OK) {
                    qk_free(nm);
                    st = qk_error(QK_ERR_NOMEM, "own_params: out of memory");
                    break;
                }
                qk_value_kind kind = g->values[v].kind;
                int nd = g->values[v].no_decay;
                int c = qk_graph_add_init(g, nm, kind, &t);
                qk_free(nm);
                if (c < 0) {
                    qk_tensor_free(&t);
                    st = qk_error(QK_ERR_NOMEM, "own_params: out of memory");
                    break;
                }
                int *nu2 = qk_realloc(uses, (size_t)g->n_values * sizeof *uses);
                if (!nu2) {
                    st = qk_error(QK_ERR_NOMEM, "own_params: out of memory");
                    break;
                }
                uses = nu2;
                uses[c] = 1;
                g->values[c].no_decay = nd;
                g->nodes[i].in[k] = c;
                changed++;
            }
        if (changed)
            invalidate(g);
    }
done:
    qk_free(rm);
    qk_free(uses);
    if (n_changed)
        *n_changed = changed;
    return st;
}
