/* Unsigned activation codes for execution (qk_lower_unsign, qrun.h).
 *
 * The int8 kernels multiply uint8 activations by int8 weights (VNNI's
 * vpdpbusd, AMX's tdpbusd): signed activations cost a per-pixel row sum
 * (the activations become the signed operand and the weights are offset
 * by 128) and rule out the implicit-im2col convolution. So every int8
 * activation tensor whose producer and readers all take it is stored as
 * uint8 codes q + 128 with zero point z + 128 and clamp bounds + 128:
 * q - z, the only thing the arithmetic sees, is unchanged, and so are the
 * logits, bit for bit.
 *
 * Who takes it: QuantizeLinear (a new uint8 zero-point initializer),
 * DequantizeLinear (the same), QkConv / QkGemm (x_zero_point, out_type,
 * y_zero_point, qmin, qmax), QkAdd, QkRequant, QkConcat, QkEpilogue (their
 * zero points and bounds), QkPool except the average that rounds the mean
 * of the codes themselves (TFLite's equal-scale case: round half away from
 * zero is not shift-invariant), and the shape ops (Flatten, Reshape, ...),
 * which pass codes through. Values tied together (a shape op's input and
 * output, a max pool's, a gemmlowp QkAdd's inputs and output, which must
 * share a type) change together or not at all. Graph inputs and outputs
 * and values any other op reads stay as they are. */
#include "lower_internal.h"

#include <stdio.h>
#include <string.h>

static int is_qk(const qk_node *n, const char *t) { return qk_node_is_in(n, QK_LOWER_DOMAIN, t); }

static int is_shape_op(const qk_node *n) { return qk_domain_is_default(n->domain) && qk_lower_is_shape_op(n->op_type); }

/* An average QkPool that rounds the mean of the codes (qpool_avg in lower_ops_pool.c). */
static int pool_codes_mean(const qk_node *n)
{
    if (qk_node_int(n, "kind", 0) == 0)
        return 0;
    return qk_node_float(n, "x_scale", 0) == qk_node_float(n, "y_scale", 0) &&
           qk_node_int(n, "x_zero_point", 0) == qk_node_int(n, "y_zero_point", 0) &&
           qk_node_int(n, "arith", QK_ARITH_FP32) != QK_ARITH_FP32;
}

/* Does node n take int8 codes as uint8 + 128 in input slot i? */
static int reads_ok(const qk_node *n, int i)
{
    if (qk_node_is(n, "DequantizeLinear"))
        return i == 0 && n->n_in >= 3 && n->in[2] >= 0;
    if (is_qk(n, "QkConv") || is_qk(n, "QkGemm") || is_qk(n, "QkRequant"))
        return i == 0;
    if (is_qk(n, "QkPool"))
        return i == 0 && !pool_codes_mean(n);
    if (is_qk(n, "QkAdd") || is_qk(n, "QkConcat"))
        return 1;
    if (is_qk(n, "QkEpilogue"))
        return i == 0 || i == 2;
    return is_shape_op(n) && i == 0;
}

/* Does node n write its output 0 as uint8 + 128 when told? */
static int writes_ok(const qk_graph *g, const qk_node *n)
{
    if (qk_node_is(n, "QuantizeLinear"))
        return n->n_in >= 3 && n->in[2] >= 0 && g->values[n->in[2]].t.data;
    if (is_qk(n, "QkPool"))
        return !pool_codes_mean(n);
    return is_qk(n, "QkConv") || is_qk(n, "QkGemm") || is_qk(n, "QkAdd") || is_qk(n, "QkRequant") ||
           is_qk(n, "QkConcat") || is_qk(n, "QkEpilogue") || is_shape_op(n);
}

static qk_status shift_int(qk_graph *g, int ni, const char *name)
{
    const qk_attr *a = qk_node_attr(&g->nodes[ni], name);
    if (!a)
        return QK_OK; /* absent: the type's own bound / zero, which moves with the type */
    return qk_node_set_int(g, ni, name, a->i + 128);
}

/* The output stage of node ni now writes uint8 + 128. */
static qk_status shift_out(qk_graph *g, int ni)
{
    qk_node *n = &g->nodes[ni];
    if (is_shape_op(n))
        return QK_OK;
    qk_status st = qk_node_set_int(g, ni, "out_type", QK_U8);
    if (st == QK_OK && !qk_node_attr(&g->nodes[ni], "y_zero_point")) /* absent: 0 of int8 */
        st = qk_node_set_int(g, ni, "y_zero_point", 0);
    if (st == QK_OK)
        st = shift_int(g, ni, "y_zero_point");
    if (st == QK_OK && qk_node_attr(&g->nodes[ni], "qmin"))
        st = shift_int(g, ni, "qmin");
    if (st == QK_OK && qk_node_attr(&g->nodes[ni], "qmax"))
        st = shift_int(g, ni, "qmax");
    return st;
}

/* Input slot i of node ni now reads uint8 + 128. */
static qk_status shift_in(qk_graph *g, int ni, int i)
{
    qk_node *n = &g->nodes[ni];
    if (is_qk(n, "QkConv") || is_qk(n, "QkGemm") || is_qk(n, "QkPool") || is_qk(n, "QkRequant"))
        return qk_node_set_int(g, ni, "x_zero_point", qk_node_int(n, "x_zero_point", 0) + 128);
    if (is_qk(n, "QkAdd") || is_qk(n, "QkEpilogue"))
        return qk_node_set_int(g, ni, i == 0 ? "a_zero_point" : "b_zero_point",
                               qk_node_int(n, i == 0 ? "a_zero_point" : "b_zero_point", 0) + 128);
    if (is_qk(n, "QkConcat")) {
        const qk_attr *a = qk_node_attr(n, "x_zero_points");
        if (!a || i >= a->n)
            return qk_error(QK_ERR_ARG, "QkConcat '%s': x_zero_points has no entry %d", n->name, i);
        int64_t z[a->n];
        memcpy(z, a->ints, (size_t)a->n * sizeof *z);
        z[i] += 128;
        return qk_node_set_ints(g, ni, "x_zero_points", a->n, z);
    }
    return QK_OK; /* DequantizeLinear: its zero point (unsign_zp); shape ops: nothing */
}

/* Input slot 2 (the int8 zero point) of a QuantizeLinear / DequantizeLinear
 * node becomes a new uint8 initializer holding z + 128. */
static qk_status unsign_zp(qk_graph *g, int ni)
{
    int zv = g->nodes[ni].in[2];
    const qk_tensor *z = &g->values[zv].t;
    if (z->dtype != QK_I8 || !z->data)
        return qk_error(QK_ERR_ARG, "lower unsign: node '%s': zero point '%s' is not an int8 initializer",
                        g->nodes[ni].name, g->values[zv].name);
    qk_tensor t = { 0 };
    if (qk_tensor_alloc(&t, QK_U8, z->ndim, z->dims) != QK_OK)
        return QK_ERR_NOMEM;
    int64_t cnt = qk_tensor_numel(z);
    for (int64_t k = 0; k < cnt; k++)
        ((uint8_t *)t.data)[k] = (uint8_t)(((const int8_t *)z->data)[k] + 128);
    char name[256];
    int v = -1;
    for (int k = 0; v < 0 && k < 1000; k++) {
        snprintf(name, sizeof name, "%s_u8_%d", g->values[zv].name, k);
        if (qk_graph_find_value(g, name) < 0)
            v = qk_graph_add_init(g, name, QK_VALUE_CONST, &t);
    }
    qk_tensor_free(&t);
    if (v < 0)
        return qk_error(QK_ERR_NOMEM, "lower unsign: no name for the zero point of '%s'", g->nodes[ni].name);
    g->nodes[ni].in[2] = v;
    return QK_OK;
}

qk_status qk_lower_unsign(qk_graph *g, int *changed)
{
    int nv = g->n_values, done = 0;
    int *par = qk_malloc(((size_t)nv + 1) * sizeof(int)), *prod = qk_malloc(((size_t)nv + 1) * sizeof(int));
    uint8_t *ok = qk_malloc((size_t)nv + 1);
    if (!par || !ok || !prod) {
        qk_free(par), qk_free(prod), qk_free(ok);
        return qk_error(QK_ERR_NOMEM, "lower unsign: out of memory");
    }
    for (int v = 0; v < nv; v++)
        par[v] = v, prod[v] = -1, ok[v] = g->values[v].kind == QK_VALUE_ACT && g->values[v].t.dtype == QK_I8;
    for (int i = 0; i < g->n_inputs; i++)
        ok[g->inputs[i]] = 0;
    for (int i = 0; i < g->n_outputs; i++)
        ok[g->outputs[i]] = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const qk_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_out; k++)
            if (n->out[k] >= 0) {
                prod[n->out[k]] = i;
                if (k > 0 || !writes_ok(g, n))
                    ok[n->out[k]] = 0;
            }
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0 && !reads_ok(n, k))
                ok[n->in[k]] = 0;
        int y = n->n_out > 0 ? n->out[0] : -1, x = n->n_in > 0 ? n->in[0] : -1;
        if (y < 0)
            continue;
        if ((is_shape_op(n) || (is_qk(n, "QkPool") && qk_node_int(n, "kind", 0) == 0)) && x >= 0)
            qk_uf_join(par, x, y);
        if (is_qk(n, "QkAdd") && qk_node_int(n, "arith", QK_ARITH_FP32) == QK_ARITH_GEMMLOWP)
            for (int k = 0; k < n->n_in; k++)
                if (n->in[k] >= 0)
                    qk_uf_join(par, n->in[k], y);
    }
    for (int v = 0; v < nv; v++)
        if (prod[v] < 0)
            ok[v] = 0; /* no producer in the graph: leave it */
    /* a class changes only if every member may: a tied value that is not
     * int8 codes (e.g. a shape op over floats) rules its class out too */
    for (int v = 0; v < nv; v++)
        if (!ok[v])
            ok[qk_uf_find(par, v)] = 0;
    for (int v = 0; v < nv; v++)
        ok[v] = ok[qk_uf_find(par, v)];
    qk_status st = QK_OK;
    uint8_t *touched = qk_calloc((size_t)g->n_nodes + 1, 1);
    if (!touched)
        st = qk_error(QK_ERR_NOMEM, "lower unsign: out of memory");
    for (int v = 0; v < nv && st == QK_OK; v++) {
        if (!ok[v])
            continue;
        int p = prod[v];
        st = qk_node_is(&g->nodes[p], "QuantizeLinear") ? unsign_zp(g, p) : shift_out(g, p);
        touched[p] = 1;
        for (int i = 0; i < g->n_nodes && st == QK_OK; i++) {
            const qk_node *n = &g->nodes[i];
            for (int k = 0; k < n->n_in && st == QK_OK; k++)
                if (n->in[k] == v) {
                    st = qk_node_is(n, "DequantizeLinear") ? unsign_zp(g, i) : shift_in(g, i, k);
                    touched[i] = 1;
                }
        }
        g->values[v].t.dtype = QK_U8;
        done++;
    }
    /* the operators read their attributes when bound: bind the changed nodes again */
    for (int i = 0; i < g->n_nodes && st == QK_OK; i++) {
        qk_node *n = &g->nodes[i];
        if (!touched[i] || !n->op)
            continue;
        if (n->op->destroy)
            n->op->destroy(n);
        n->state = NULL;
        if (n->op->init && (st = n->op->init(g, n)) != QK_OK && n->op->destroy)
            n->op->destroy(n);
    }
    qk_free(touched);
    qk_free(par);
    qk_free(prod);
    qk_free(ok);
    if (changed)
        *changed = done;
    return st;
}

qk_status qk_lower_prepare_run(qk_graph *g)
{
    qk_status st = qk_lower_fuse(g);
    if (st == QK_OK)
        st = qk_lower_layout(g);
    if (st == QK_OK)
        st = qk_lower_unsign(g, NULL);
    return st;
}
