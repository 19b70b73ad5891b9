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
