/* Binding nodes to operators from the tables the caller passes (graph.h).
 * The graph layer knows no operator: each layer above exports its table. */
#include "qkit/graph.h"

#include <string.h>

/* NULL, "" and "ai.onnx" all name the default ONNX domain. */
static int is_default(const char *d)
{
    return !d || !d[0] || strcmp(d, "ai.onnx") == 0;
}

static int same_domain(const char *a, const char *b)
{
    return is_default(a) ? is_default(b) : !is_default(b) && strcmp(a, b) == 0;
}

const qk_op *qk_op_table_find(const qk_op_table *tables, int n_tables, const char *domain, const char *op_type)
{
    for (int t = 0; t < n_tables; t++)
        for (int i = 0; tables[t].ops && tables[t].ops[i]; i++) {
            const qk_op *op = tables[t].ops[i];
            if (strcmp(op->type, op_type) == 0 && same_domain(op->domain, domain))
                return op;
        }
    return NULL;
}

/* Whether any operator of the tables has op_type (any domain) / domain. */
static int has_type(const qk_op_table *tables, int n_tables, const char *op_type)
{
    for (int t = 0; t < n_tables; t++)
        for (int i = 0; tables[t].ops && tables[t].ops[i]; i++)
            if (strcmp(tables[t].ops[i]->type, op_type) == 0)
                return 1;
    return 0;
}

static int has_domain(const qk_op_table *tables, int n_tables, const char *domain)
{
    for (int t = 0; t < n_tables; t++)
        for (int i = 0; tables[t].ops && tables[t].ops[i]; i++)
            if (same_domain(tables[t].ops[i]->domain, domain))
                return 1;
    return 0;
}

qk_status qk_graph_bind(qk_graph *g, const qk_op_table *tables, int n_tables)
{
    if (!g || (n_tables > 0 && !tables) || n_tables < 0)
        return qk_error(QK_ERR_ARG, "bind: NULL graph or operator tables");
    for (int i = 0; i < g->n_nodes; i++) {
        qk_node *n = &g->nodes[i];
        if (n->op)
            continue;
        const qk_op *op = qk_op_table_find(tables, n_tables, n->domain, n->op_type);
        if (!op) {
            if (!is_default(n->domain) && !has_domain(tables, n_tables, n->domain))
                return qk_error(QK_ERR_UNSUPPORTED, "node '%s': operator domain '%s' is not supported", n->name,
                                n->domain);
            if (has_type(tables, n_tables, n->op_type))
                return qk_error(QK_ERR_UNSUPPORTED, "node '%s': operator '%s' in domain '%s' is not supported",
                                n->name, n->op_type, n->domain ? n->domain : "");
            return qk_error(QK_ERR_UNSUPPORTED,
                            "node '%s': operator '%s' is not supported by qkit (run `qkit info --ops` for the list)",
                            n->name, n->op_type);
        }
        n->op = op;
        if (op->init) {
            qk_status st = op->init(g, n);
            if (st != QK_OK) {
                if (op->destroy) /* free what init allocated before failing */
                    op->destroy(n);
                n->state = NULL;
                n->op = NULL;
                return qk_error_context(st, "node '%s' (%s)", n->name, n->op_type);
            }
        }
    }
    return qk_graph_sort(g);
}
