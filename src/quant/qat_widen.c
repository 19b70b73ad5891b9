/* WRPN's width multiplier for a trained float model (qkit qat --widen K;
 * Mishra et al., "WRPN: Wide Reduced-Precision Networks", ICLR 2018, widen
 * the layers and train at low precision).
 *
 * Every Conv / Gemm with another weighted layer downstream gets K times its
 * output channels; the tensors between layers then hold K copies of their
 * channels, tiled along axis 1 (channel j*C + c is copy j of channel c, so a
 * Flatten of [N, K*C, H, W] is K copies of the original vector). A layer
 * reading such a tensor sees its input weights split over the copies:
 * W'[:, j*C + c] = a_j W[:, c] with a_j = 2 (j + 1) / (K (K + 1)), so
 * sum_j a_j = 1 and the widened model computes the same function (up to
 * float rounding). The unequal split breaks the symmetry between the copies:
 * equal shares would give every copy the same gradient forever and the
 * width would never be used. Widened output rows, biases and BatchNorm
 * parameters are plain copies; a depthwise Conv (group = C = M) on a widened
 * tensor becomes a depthwise Conv of K*C channels. The last layer(s) keep
 * their outputs (the classes).
 *
 * Passed through with the tiling: BatchNormalization, elementwise
 * activations, pooling, Flatten (axis 1), Identity, Dropout, and Add / Sub /
 * Mul / Div of two widened tensors (or a widened tensor and a scalar).
 * Anything else that reads a widened tensor (Concat, Reshape, grouped Conv,
 * shared weights, ...) is QK_ERR_UNSUPPORTED naming the node; the graph is
 * then left unchanged. */
#include "qat_internal.h"

#include <string.h>

static int is_passthrough(const qk_node *n)
{
    static const char *const t[] = { "Relu", "Clip", "LeakyRelu", "HardSwish", "HardSigmoid", "Sigmoid", "Tanh",
                                     "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Identity",
                                     "Dropout", NULL };
    for (int i = 0; t[i]; i++)
        if (qk_node_is(n, t[i]))
            return 1;
    return 0;
}

static int is_binary(const qk_node *n)
{
    return qk_node_is(n, "Add") || qk_node_is(n, "Sub") || qk_node_is(n, "Mul") || qk_node_is(n, "Div");
}

/* A weighted layer: Conv or Gemm with a float32 initializer weight read by it only. */
static int is_layer(const qk_graph *g, const qk_node *n)
{
    if ((!qk_node_is(n, "Conv") && !qk_node_is(n, "Gemm")) || n->n_in < 2 || n->in[1] < 0 || n->n_out != 1)
        return 0;
    const qk_value *w = &g->values[n->in[1]];
    return qk_value_is_initializer_with_data(w) && w->t.dtype == QK_F32;
}

/* What one node becomes (planned first, applied when every node passed). */
typedef struct wplan {
    int in_w, out_w; /* layer: input / output widened */
    int depthwise;
} wplan;

/* Replace initializer v by t (taking it). */
static void set_init(qk_graph *g, int v, qk_tensor *t)
{
    qk_tensor_free(&g->values[v].t);
    g->values[v].t = *t;
    memset(t, 0, sizeof *t);
}

/* Tile a [C] (or [C, ...] rows) initializer K times along axis 0. */
static qk_status tile_rows(qk_graph *g, int v, int K)
{
    const qk_tensor *s = &g->values[v].t;
    qk_tensor t;
    int64_t d[QK_MAX_DIMS];
    memcpy(d, s->dims, sizeof d);
    d[0] *= K;
    qk_status st = qk_tensor_alloc(&t, QK_F32, s->ndim, d);
    if (st != QK_OK)
        return st;
    size_t b = qk_tensor_bytes(s);
    for (int j = 0; j < K; j++)
        memcpy((char *)t.data + (size_t)j * b, s->data, b);
    set_init(g, v, &t);
    return QK_OK;
}

/* A layer's weight viewed as [M, Kin, inner] (rows = output channels):
 * Conv [M, C, k...] (inner = kernel size), Gemm transB = 1 [M, Kin], Gemm
 * transB = 0 [Kin, M] (transposed view, handled by the index). */
static qk_status widen_layer(qk_graph *g, int k, const wplan *p, int K)
{
    qk_node *n = &g->nodes[k];
    int conv = qk_node_is(n, "Conv"), tb = conv || qk_node_int(n, "transB", 0);
    int wv = n->in[1], bv = n->n_in > 2 ? n->in[2] : -1;
    const qk_tensor *W = &g->values[wv].t;
    int64_t M = tb ? W->dims[0] : W->dims[1], Kin = tb ? W->dims[1] : W->dims[0], inner = 1;
    for (int d = 2; conv && d < W->ndim; d++)
        inner *= W->dims[d];
    int rk = p->out_w ? K : 1, ck = p->in_w && !p->depthwise ? K : 1;
    int64_t M2 = M * rk, Kin2 = Kin * ck, d[QK_MAX_DIMS];
    memcpy(d, W->dims, sizeof d);
    d[tb ? 0 : 1] = M2;
    d[tb ? 1 : 0] = Kin2;
    qk_tensor t;
    qk_status st = qk_tensor_alloc(&t, QK_F32, W->ndim, d);
    if (st != QK_OK)
        return st;
    const float *w = qk_f32(W);
    float *o = qk_f32(&t);
    for (int64_t i = 0; i < M2; i++)
        for (int64_t j = 0; j < Kin2; j++) {
            int64_t m = i % M, c = j % Kin, copy = j / Kin;
            float a = ck > 1 ? (float)(2.0 * (double)(copy + 1) / ((double)K * (K + 1))) : 1.0f;
            for (int64_t e = 0; e < inner; e++) {
                float v = tb ? w[(m * Kin + c) * inner + e] : w[c * M + m];
                if (tb)
                    o[(i * Kin2 + j) * inner + e] = a * v;
                else
                    o[j * M2 + i] = a * v;
            }
        }
    set_init(g, wv, &t);
    if (bv >= 0 && p->out_w && (st = tile_rows(g, bv, K)) != QK_OK)
        return st;
    if (p->depthwise)
        st = qk_node_set_int(g, k, "group", M2);
    return st;
}

qk_status qk_qat_widen_(qk_graph *g, int K, int *n_widened)
{
    *n_widened = 0;
    if (K < 2)
        return QK_OK;
    qk_status st = qk_graph_sort(g);
    if (st != QK_OK)
        return st;
    int nv = g->n_values, nn = g->n_nodes;
    uint8_t *down = qk_calloc((size_t)nv + 1, 1), *wide = qk_calloc((size_t)nv + 1, 1);
    wplan *plan = qk_calloc((size_t)nn + 1, sizeof *plan);
    if (!down || !wide || !plan) {
        st = qk_error(QK_ERR_NOMEM, "--widen: out of memory");
        goto done;
    }
    /* down[v]: a weighted layer reads v, or something computed from it */
    for (int o = nn - 1; o >= 0; o--) {
        const qk_node *n = &g->nodes[g->order[o]];
        int f = is_layer(g, n);
        for (int j = 0; j < n->n_out; j++)
            f |= n->out[j] >= 0 && down[n->out[j]];
        for (int j = 0; f && j < n->n_in; j++)
            if (n->in[j] >= 0)
                down[n->in[j]] = 1;
    }
    /* plan in order; nothing changes before every node is accepted */
    for (int o = 0; o < nn && st == QK_OK; o++) {
        int k = g->order[o];
        const qk_node *n = &g->nodes[k];
        int x = n->n_in > 0 ? n->in[0] : -1, xw = x >= 0 && wide[x], any = 0;
        for (int j = 0; j < n->n_in; j++)
            any |= n->in[j] >= 0 && wide[n->in[j]];
        if (is_layer(g, n)) {
            const qk_value *W = &g->values[n->in[1]];
            int shared = qk_graph_consumers(g, n->in[1], NULL, 0) != 1 ||
                         (n->n_in > 2 && n->in[2] >= 0 && qk_graph_consumers(g, n->in[2], NULL, 0) != 1);
            int64_t grp = qk_node_is(n, "Conv") ? qk_node_int(n, "group", 1) : 1;
            int dw = grp > 1 && W->t.dims[1] == 1 && grp == W->t.dims[0];
            plan[k].in_w = xw;
            plan[k].out_w = down[n->out[0]] || (dw && xw);
            plan[k].depthwise = dw;
            if (shared)
                st = qk_error(QK_ERR_UNSUPPORTED, "--widen: the weight or bias of '%s' is shared", n->name);
            else if (grp > 1 && !dw && (xw || plan[k].out_w))
                st = qk_error(QK_ERR_UNSUPPORTED, "--widen: grouped Conv '%s' (group %lld) is not widened", n->name,
                              (long long)grp);
            else if (dw && !xw && plan[k].out_w)
                st = qk_error(QK_ERR_UNSUPPORTED, "--widen: depthwise Conv '%s' reads a tensor that is not widened",
                              n->name);
            else if (any && !xw)
                st = qk_error(QK_ERR_UNSUPPORTED, "--widen: '%s' reads a widened weight", n->name);
            if (plan[k].out_w)
                wide[n->out[0]] = 1;
            continue;
        }
        if (!any)
            continue;
        if (qk_node_is(n, "BatchNormalization") || is_passthrough(n) ||
            (qk_node_is(n, "Flatten") && qk_node_int(n, "axis", 1) == 1)) {
            for (int j = 1; j < n->n_in && st == QK_OK; j++)
                if (n->in[j] >= 0 && wide[n->in[j]])
                    st = qk_error(QK_ERR_UNSUPPORTED, "--widen: '%s' (%s) reads a widened tensor as input %d", n->name,
                                  n->op_type, j);
            if (qk_node_is(n, "BatchNormalization"))
                for (int j = 1; j < 5 && st == QK_OK; j++)
                    if (n->n_in != 5 || !qk_value_is_initializer_with_data(&g->values[n->in[j]]) ||
                        qk_graph_consumers(g, n->in[j], NULL, 0) != 1)
                        st = qk_error(QK_ERR_UNSUPPORTED, "--widen: BatchNormalization '%s' needs parameters of its "
                                      "own", n->name);
            if (n->n_out > 1 && !qk_node_is(n, "Dropout") && !qk_node_is(n, "MaxPool"))
                st = qk_error(QK_ERR_UNSUPPORTED, "--widen: '%s' (%s) has extra outputs", n->name, n->op_type);
            wide[n->out[0]] = 1;
        } else if (is_binary(n) && n->n_in == 2) {
            int a = n->in[0], b = n->in[1];
            int sa = qk_value_is_initializer(&g->values[a]) && qk_tensor_numel(&g->values[a].t) == 1;
            int sb = qk_value_is_initializer(&g->values[b]) && qk_tensor_numel(&g->values[b].t) == 1;
            if (!((wide[a] && wide[b]) || (wide[a] && sb) || (wide[b] && sa)))
                st = qk_error(QK_ERR_UNSUPPORTED, "--widen: '%s' (%s) joins a widened tensor with one that is not",
                              n->name, n->op_type);
            wide[n->out[0]] = 1;
        } else {
            st = qk_error(QK_ERR_UNSUPPORTED, "--widen: '%s' (%s) reads a widened tensor; only Conv, Gemm, "
                          "BatchNormalization, activations, pooling, Flatten and elementwise joins can", n->name,
                          n->op_type);
        }
    }
    for (int i = 0; i < g->n_outputs && st == QK_OK; i++)
        if (wide[g->outputs[i]])
            st = qk_error(QK_ERR_UNSUPPORTED, "--widen: graph output '%s' would be widened",
                          g->values[g->outputs[i]].name);
    if (st != QK_OK)
        goto done;
    /* apply */
    qk_graph_unplan(g);
    for (int k = 0; k < nn && st == QK_OK; k++) {
        qk_node *n = &g->nodes[k];
        int changed = 0;
        if (is_layer(g, n) && (plan[k].in_w || plan[k].out_w)) {
            st = widen_layer(g, k, &plan[k], K);
            *n_widened += plan[k].out_w;
            changed = 1;
        } else if (qk_node_is(n, "BatchNormalization") && wide[n->in[0]]) {
            for (int j = 1; j < 5 && st == QK_OK; j++)
                st = tile_rows(g, n->in[j], K);
            changed = 1;
        }
        if (changed) { /* init again: shapes and attributes changed */
            n = &g->nodes[k];
            if (n->op && n->op->destroy)
                n->op->destroy(n);
            n->op = NULL;
            n->state = NULL;
        }
    }
    if (st == QK_OK)
        st = qk_quant_bind(g);
done:
    qk_free(down);
    qk_free(wide);
    qk_free(plan);
    return st;
}
