/* Plan-time fusion predicate (fuse.h). */
#include "fuse.h"

#include <stdlib.h>
#include <string.h>

static int is_default_op(const qk_node *n, const char *type)
{
    return !strcmp(n->op_type, type) && !(n->domain && *n->domain);
}

static int same_shape(const qk_tensor *a, const qk_tensor *b)
{
    if (a->ndim != b->ndim)
        return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->dims[i] != b->dims[i])
            return 0;
    return 1;
}

int qk_relu_fused(const qk_graph *g, const qk_node *p, int training)
{
    const char *env = getenv("QKIT_FUSE");
    if ((env && !strcmp(env, "0")) || !training || p->n_out < 1 || p->out[0] < 0)
        return -1;
    for (int k = 1; k < p->n_out; k++)
        if (p->out[k] >= 0)
            return -1;
    const int y = p->out[0];
    const qk_tensor *yt = &g->values[y].t;
    if (yt->dtype != QK_F32)
        return -1;
    if (is_default_op(p, "Add")) {
        if (p->n_in != 2 || p->in[0] < 0 || p->in[1] < 0 || p->in[0] == p->in[1])
            return -1;
        for (int k = 0; k < 2; k++)
            if (!same_shape(&g->values[p->in[k]].t, yt) || g->values[p->in[k]].t.dtype != QK_F32)
                return -1;
    } else if (!is_default_op(p, "BatchNormalization")) {
        return -1;
    }
    for (int i = 0; i < g->n_outputs; i++)
        if (g->outputs[i] == y)
            return -1;
    int r;
    if (qk_graph_consumers(g, y, &r, 1) != 1)
        return -1;
    const qk_node *rn = &g->nodes[r];
    if (!is_default_op(rn, "Relu") || rn->n_in != 1 || rn->in[0] != y || rn->n_out != 1 || rn->out[0] < 0)
        return -1;
    return r;
}
