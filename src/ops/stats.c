/* Model statistics: multiply-accumulates per node (for `qkit info`). */
#include "qkit/ops.h"

#include <string.h>

int64_t qk_node_macs(const qk_graph *g, const qk_node *n)
{
    if (strcmp(n->op_type, "Conv") == 0 || strcmp(n->op_type, "ConvInteger") == 0 ||
        strcmp(n->op_type, "QLinearConv") == 0) {
        int wi = strcmp(n->op_type, "QLinearConv") == 0 ? 3 : 1;
        if (n->n_in <= wi || n->in[wi] < 0 || n->n_out < 1)
            return 0;
        const qk_tensor *w = &g->values[n->in[wi]].t, *y = &g->values[n->out[0]].t;
        int64_t k = 1;
        for (int i = 1; i < w->ndim; i++)
            k *= w->dims[i];
        return qk_tensor_numel(y) * k;
    }
    if (strcmp(n->op_type, "Gemm") == 0 || strcmp(n->op_type, "MatMul") == 0 ||
        strcmp(n->op_type, "MatMulInteger") == 0 || strcmp(n->op_type, "QLinearMatMul") == 0) {
        int ai = 0;
        if (n->n_in < 1 || n->in[ai] < 0 || n->n_out < 1)
            return 0;
        const qk_tensor *a = &g->values[n->in[ai]].t, *y = &g->values[n->out[0]].t;
        if (a->ndim < 1)
            return 0;
        int64_t k = a->dims[a->ndim - 1];
        if (strcmp(n->op_type, "Gemm") == 0 && qk_node_int(n, "transA", 0) && a->ndim == 2)
            k = a->dims[0];
        return qk_tensor_numel(y) * k;
    }
    return 0;
}
