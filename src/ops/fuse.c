/* Plan-time fusion predicate (fuse.h). */
#include "fuse.h"

#include "fkern.h"

#include <float.h>
#include <string.h>

static int is_default_op(const qk_node *n, const char *type)
{
    return !strcmp(n->op_type, type) && !(n->domain && *n->domain);
}

static int is_graph_output(const qk_graph *g, int v)
{
    for (int i = 0; i < g->n_outputs; i++)
        if (g->outputs[i] == v)
            return 1;
    return 0;
}

int qk_producer(const qk_graph *g, int v)
{
    for (int k = 0; k < g->n_nodes; k++)
        for (int j = 0; j < g->nodes[k].n_out; j++)
            if (g->nodes[k].out[j] == v)
                return k;
    return -1;
}

void qk_row_moments(const float *x, int64_t n, double out[3])
{
    double s1 = 0, s2 = 0;
    float shift = n > 0 ? x[0] : 0.0f;
    qk_fk()->moments(x, n, shift, &s1, &s2);
    out[0] = shift;
    out[1] = s1;
    out[2] = s2;
}

/* The BatchNormalization that is the only consumer of Conv c's output (as
 * its X, the output not a graph output), or -1. */
static int conv_sole_bn(const qk_graph *g, const qk_node *c)
{
    if (!is_default_op(c, "Conv") || c->n_out != 1 || c->out[0] < 0 || is_graph_output(g, c->out[0]) ||
        g->values[c->out[0]].t.dtype != QK_F32)
        return -1;
    int b;
    if (qk_graph_consumers(g, c->out[0], &b, 1) != 1)
        return -1;
    const qk_node *bn = &g->nodes[b];
    if (!is_default_op(bn, "BatchNormalization") || bn->n_in < 1 || bn->in[0] != c->out[0])
        return -1;
    for (int j = 1; j < bn->n_in; j++)
        if (bn->in[j] == c->out[0])
            return -1;
    return b;
}

int qk_conv_bn_fused(const qk_graph *g, const qk_node *c, int training)
{
    if (g->opts.no_fuse || !training)
        return -1;
    return conv_sole_bn(g, c);
}

int qk_conv_bn_folded(const qk_graph *g, const qk_node *c, int training)
{
    if (g->opts.no_fuse || g->opts.reference || training)
        return -1;
    int b = conv_sole_bn(g, c);
    if (b < 0)
        return -1;
    const qk_node *bn = &g->nodes[b];
    if (bn->n_in != 5 || qk_node_int(bn, "training_mode", 0) != 0)
        return -1;
    for (int k = 1; k < bn->n_out; k++)
        if (bn->out[k] >= 0)
            return -1;
    for (int j = 1; j < 5; j++)
        if (bn->in[j] < 0 || !qk_value_is_initializer(&g->values[bn->in[j]]))
            return -1;
    return b;
}

/* The sole reader of value v, when v is not a graph output, or -1. */
static int sole_reader(const qk_graph *g, int v)
{
    int r;
    if (v < 0 || is_graph_output(g, v) || qk_graph_consumers(g, v, &r, 1) != 1)
        return -1;
    return r;
}

/* A Clip whose bounds cannot change during training: each bound absent,
 * an attribute, or a float32 scalar CONST initializer. */
static int clip_constant(const qk_graph *g, const qk_node *n)
{
    if (n->n_in < 1 || n->n_in > 3)
        return 0;
    for (int j = 1; j < n->n_in; j++) {
        if (n->in[j] < 0)
            continue;
        const qk_value *b = &g->values[n->in[j]];
        if (b->kind != QK_VALUE_CONST || b->t.dtype != QK_F32 || qk_tensor_numel(&b->t) != 1)
            return 0;
    }
    return 1;
}

void qk_clip_bounds(const qk_graph *g, const qk_node *n, float *lo, float *hi)
{
    *lo = n->n_in > 1 && n->in[1] >= 0 ? qk_f32(&g->values[n->in[1]].t)[0] : qk_node_float(n, "min", -FLT_MAX);
    *hi = n->n_in > 2 && n->in[2] >= 0 ? qk_f32(&g->values[n->in[2]].t)[0] : qk_node_float(n, "max", FLT_MAX);
}

int qk_act_fused(const qk_graph *g, const qk_node *p, int training, qk_fused_act *act)
{
    (void)training; /* the same in training and inference plans */
    act->node = act->out = -1;
    act->clip = 0;
    if (g->opts.no_fuse || p->n_out < 1 || p->out[0] < 0)
        return -1;
    for (int k = 1; k < p->n_out; k++)
        if (p->out[k] >= 0)
            return -1;
    const int y = p->out[0];
    const qk_tensor *yt = &g->values[y].t;
    if (yt->dtype != QK_F32)
        return -1;
    int bn = is_default_op(p, "BatchNormalization");
    if (is_default_op(p, "Add")) {
        if (p->n_in != 2 || p->in[0] < 0 || p->in[1] < 0 || p->in[0] == p->in[1])
            return -1;
        for (int k = 0; k < 2; k++)
            if (!qk_shape_equal(&g->values[p->in[k]].t, yt) || g->values[p->in[k]].t.dtype != QK_F32)
                return -1;
    } else if (!bn) {
        return -1;
    }
    const int r = sole_reader(g, y);
    if (r < 0)
        return -1;
    const qk_node *rn = &g->nodes[r];
    if (rn->n_in < 1 || rn->in[0] != y || rn->n_out != 1 || rn->out[0] < 0)
        return -1;
    /* (a Clip's constant bounds cannot be y) */
    if (is_default_op(rn, "Relu") && rn->n_in == 1) {
        act->clip = 0;
    } else if (bn && is_default_op(rn, "Clip") && clip_constant(g, rn)) {
        act->clip = 1;
    } else {
        return -1;
    }
    act->node = r;
    act->out = rn->out[0];
    return r;
}

int qk_dq_gap_fused(const qk_graph *g, const qk_node *dq, int training, int *clip)
{
    *clip = -1;
    if (g->opts.no_fuse || g->opts.reference || training || !is_default_op(dq, "DequantizeLinear") ||
        dq->n_out != 1 || dq->n_in < 2 || dq->in[0] < 0 || dq->in[1] < 0)
        return -1;
    const qk_tensor *x = &g->values[dq->in[0]].t, *sc = &g->values[dq->in[1]].t;
    if (x->ndim != 4 || g->values[dq->out[0]].t.dtype != QK_F32)
        return -1;
    int64_t ns = qk_tensor_numel(sc), axis = qk_node_int(dq, "axis", 1);
    if (!(ns == 1 && sc->ndim <= 1) && !(sc->ndim == 1 && ns == x->dims[1] && (axis == 1 || axis == -3)))
        return -1;
    int r = sole_reader(g, dq->out[0]);
    if (r < 0)
        return -1;
    const qk_node *rn = &g->nodes[r];
    if (is_default_op(rn, "Clip")) {
        if (!clip_constant(g, rn) || rn->in[0] != dq->out[0] || rn->n_out != 1)
            return -1;
        *clip = r;
        r = sole_reader(g, rn->out[0]);
        if (r < 0) {
            *clip = -1;
            return -1;
        }
        rn = &g->nodes[r];
    }
    if (!is_default_op(rn, "GlobalAveragePool") || rn->n_in != 1 || rn->n_out != 1 || rn->out[0] < 0) {
        *clip = -1;
        return -1;
    }
    return r;
}

int qk_dq_gap_runner(const qk_graph *g, const qk_node *n, int training)
{
    const int self = (int)(n - g->nodes);
    for (int hop = 0; hop < 2 && n->n_in >= 1 && n->in[0] >= 0; hop++) {
        int p = qk_producer(g, n->in[0]);
        if (p < 0)
            return -1;
        int clip, gap = qk_dq_gap_fused(g, &g->nodes[p], training, &clip);
        if (gap >= 0 && (gap == self || clip == self))
            return p;
        n = &g->nodes[p];
    }
    return -1;
}
