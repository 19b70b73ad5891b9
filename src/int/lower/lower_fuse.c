/* TensorRT-style epilogue fusion of a lowered graph (qrun.h, qk_lower_fuse):
 * an integer value dequantized to float, optionally added to a second
 * (float, or dequantized integer) tensor of the same shape, optionally
 * Relu'd, and quantized again
 *
 *   a:int -> DequantizeLinear [-> Add(., skip)] [-> Relu] -> QuantizeLinear -> codes
 *
 * becomes one QkEpilogue node (lower_ops_epi.c) reading a (and the skip's
 * integer input when the skip is a DequantizeLinear read only by the Add),
 * writing the QuantizeLinear's output value under its name. The float
 * values in between must have no other reader and not be graph outputs,
 * except a DequantizeLinear's output: several chains may start from one
 * (an int32 accumulator that feeds a QuantizeLinear and a residual Add, as
 * in TensorRT's inverted residual blocks), each epilogue dequantizing it
 * again; the DequantizeLinear goes once no reader is left. The node
 * repeats the same float operations in the same order, so the codes, and
 * the logits, are bit-identical.
 *
 * First, a float MaxPool whose output only a QuantizeLinear reads (per
 * tensor scale and zero point: TensorRT's placement, conv -> Relu ->
 * MaxPool -> Q) is moved behind it, as a QkPool on the codes:
 *   x -> MaxPool -> QuantizeLinear -> y   becomes   x -> QuantizeLinear -> QkPool(max) -> y
 * Exact: quantization is monotone non-decreasing (scale > 0, round half to
 * even, saturation), so the maximum of the codes is the code of the
 * maximum, and padding is ignored by both; the epilogue fusion below then
 * takes the QuantizeLinear. A Flatten between the MaxPool and the
 * QuantizeLinear moves with the pool (a copy of the same elements in the
 * same order, for any element type):
 *   x -> MaxPool -> Flatten -> Q -> y   becomes   x -> Q -> QkPool -> Flatten -> y */
#include "lower_internal.h"

#include <stdio.h>
#include <string.h>

/* A DequantizeLinear that can be folded into the epilogue: integer input,
 * float scale initializer (1 entry, or per channel along axis 1 of a rank
 * >= 2 input), zero point absent or one initializer entry (0 for int32). */
static int dq_ok(const qk_graph *g, int di, int32_t *z)
{
    const qk_node *n = &g->nodes[di];
    if (!qk_node_is(n, "DequantizeLinear") || n->n_in < 2 || n->in[0] < 0 || n->in[1] < 0)
        return 0;
    const qk_tensor *x = &g->values[n->in[0]].t, *s = &g->values[n->in[1]].t;
    if ((x->dtype != QK_U8 && x->dtype != QK_I8 && x->dtype != QK_I32) || !qk_value_is_initializer(&g->values[n->in[1]]) ||
        s->dtype != QK_F32 || !s->data)
        return 0;
    int64_t ns = qk_tensor_numel(s);
    if (ns != 1 && (x->ndim < 2 || ns != x->dims[1] || qk_node_int(n, "axis", 1) != 1))
        return 0;
    *z = 0;
    if (n->n_in > 2 && n->in[2] >= 0) {
        const qk_value *zv = &g->values[n->in[2]];
        if (!qk_value_is_initializer(zv) || qk_tensor_numel(&zv->t) != 1 || !zv->t.data)
            return 0;
        *z = (int32_t)qk_tensor_int_at(&zv->t, 0);
    }
    return x->dtype != QK_I32 || *z == 0;
}

static int same_shape(const qk_tensor *a, const qk_tensor *b)
{
    return a->ndim == b->ndim && memcmp(a->dims, b->dims, (size_t)a->ndim * sizeof *a->dims) == 0;
}

/* The per-tensor QuantizeLinear q's scale, zero point and output type; 0 when
 * it is not one. */
static int q_scalar(const qk_graph *g, const qk_node *q, float *ys, int32_t *zy, qk_dtype *ty)
{
    if (!qk_node_is(q, "QuantizeLinear") || q->n_in < 2 || q->n_out != 1 || q->in[0] < 0 || q->in[1] < 0)
        return 0;
    const qk_value *qs = &g->values[q->in[1]];
    *ty = g->values[q->out[0]].t.dtype;
    if (!qk_value_is_initializer(qs) || qs->t.dtype != QK_F32 || qk_tensor_numel(&qs->t) != 1 || !qs->t.data ||
        (*ty != QK_U8 && *ty != QK_I8))
        return 0;
    *ys = qk_f32(&qs->t)[0];
    *zy = 0;
    if (q->n_in > 2 && q->in[2] >= 0) {
        const qk_value *zv = &g->values[q->in[2]];
        if (!qk_value_is_initializer(zv) || qk_tensor_numel(&zv->t) != 1 || !zv->t.data)
            return 0;
        *zy = (int32_t)qk_tensor_int_at(&zv->t, 0);
    }
    return *ys > 0;
}

/* MaxPool -> QuantizeLinear  =>  QuantizeLinear -> QkPool (see the top). */
static qk_status pool_after_quant(qk_graph *g)
{
    int nn = g->n_nodes, moved = 0;
    qk_status st = QK_OK;
    /* one flag per node, the QkPool nodes this pass adds (at most one per
     * original node) included: qk_graph_remove_nodes reads g->n_nodes flags */
    uint8_t *rm = qk_calloc((size_t)nn * 2 + 1, 1);
    int *ncons = qk_calloc((size_t)g->n_values + 1, sizeof(int));
    if (!rm || !ncons) {
        st = qk_error(QK_ERR_NOMEM, "lower fuse: out of memory");
        goto done;
    }
    for (int i = 0; i < nn; i++)
        for (int k = 0; k < g->nodes[i].n_in; k++)
            if (g->nodes[i].in[k] >= 0)
                ncons[g->nodes[i].in[k]]++;
    for (int k = 0; k < g->n_outputs; k++)
        ncons[g->outputs[k]] += 2;
    for (int qi = 0; qi < nn; qi++) {
        float ys;
        int32_t zy;
        qk_dtype ty;
        if (!q_scalar(g, &g->nodes[qi], &ys, &zy, &ty))
            continue;
        int p = g->values[g->nodes[qi].in[0]].producer, fl = -1;
        if (p >= 0 && p < nn && !rm[p] && qk_node_is(&g->nodes[p], "Flatten") && g->nodes[p].n_in == 1 &&
            g->nodes[p].n_out == 1 && ncons[g->nodes[p].out[0]] == 1) { /* MaxPool -> Flatten -> Q */
            fl = p;
            p = g->nodes[fl].in[0] >= 0 ? g->values[g->nodes[fl].in[0]].producer : -1;
        }
        if (p < 0 || p >= nn || rm[p] || !qk_node_is(&g->nodes[p], "MaxPool") || g->nodes[p].n_in != 1 ||
            g->nodes[p].in[0] < 0 || (g->nodes[p].n_out > 1 && g->nodes[p].out[1] >= 0) ||
            ncons[g->nodes[p].out[0]] != 1 || g->values[g->nodes[p].in[0]].t.dtype != QK_F32)
            continue;
        int t = -1, t2 = -1;
        for (int k = 0; k < (fl >= 0 ? 2 : 1); k++) {
            char *tn = qk_graph_unique_name(g, g->values[g->nodes[qi].out[0]].name);
            int v = tn ? qk_graph_add_value(g, tn, QK_VALUE_ACT) : -1;
            qk_free(tn);
            if (v < 0) {
                st = qk_error(QK_ERR_NOMEM, "lower fuse: out of memory");
                goto done;
            }
            *(k ? &t2 : &t) = v;
        }
        int x = g->nodes[p].in[0], y = g->nodes[qi].out[0], py = fl >= 0 ? t2 : y;
        g->values[py].producer = -1;
        int nd = qk_graph_add_node(g, "QkPool", g->nodes[p].name, 1, &t, 1, &py);
        if (nd < 0) {
            st = qk_error(QK_ERR_NOMEM, "lower fuse: out of memory");
            goto done;
        }
        qk_node *mp = &g->nodes[p], *e = &g->nodes[nd], *q = &g->nodes[qi];
        if (!(e->domain = qk_strdup(QK_LOWER_DOMAIN))) {
            st = qk_error(QK_ERR_NOMEM, "lower fuse: out of memory");
            goto done;
        }
        for (int a = 0; a < mp->n_attr && st == QK_OK; a++) {
            const qk_attr *at = &mp->attr[a];
            if (at->type == QK_ATTR_INT)
                st = qk_node_set_int(g, nd, at->name, at->i);
            else if (at->type == QK_ATTR_INTS)
                st = qk_node_set_ints(g, nd, at->name, at->n, at->ints);
            else if (at->type == QK_ATTR_STRING)
                st = qk_node_set_string(g, nd, at->name, at->s ? at->s : "");
        }
        int32_t lo, hi;
        qk_int_range(ty, &lo, &hi);
        if (st != QK_OK || (st = qk_node_set_int(g, nd, "kind", 0)) != QK_OK ||
            (st = qk_node_set_float(g, nd, "x_scale", ys)) != QK_OK ||
            (st = qk_node_set_int(g, nd, "x_zero_point", zy)) != QK_OK ||
            (st = qk_node_set_float(g, nd, "y_scale", ys)) != QK_OK ||
            (st = qk_node_set_int(g, nd, "out_type", ty)) != QK_OK ||
            (st = qk_node_set_int(g, nd, "y_zero_point", zy)) != QK_OK ||
            (st = qk_node_set_int(g, nd, "qmin", lo)) != QK_OK || (st = qk_node_set_int(g, nd, "qmax", hi)) != QK_OK)
            goto done;
        q->in[0] = x;
        q->out[0] = t;
        g->values[t].producer = qi;
        if (fl >= 0) { /* the Flatten moves behind the pool, onto the codes */
            g->nodes[fl].in[0] = t2;
            g->nodes[fl].out[0] = y;
            g->values[y].producer = fl;
        }
        rm[p] = 1;
        moved = 1;
    }
    if (moved && (st = qk_graph_remove_nodes(g, rm)) == QK_OK)
        st = qk_lower_bind(g);
done:
    qk_free(rm);
    qk_free(ncons);
    return st;
}

qk_status qk_lower_fuse(qk_graph *g)
{
    qk_status st = qk_graph_sort(g);
    if (st == QK_OK)
        st = qk_graph_infer(g);
    if (st == QK_OK && (st = pool_after_quant(g)) == QK_OK)
        st = qk_graph_sort(g);
    if (st == QK_OK)
        st = qk_graph_infer(g); /* dtypes and shapes for the checks */
    if (st != QK_OK)
        return qk_error_context(st, "lower fuse");
    int nn = g->n_nodes, nv = g->n_values;
    int *prod = qk_malloc(((size_t)nv + 1) * sizeof(int)), *ncons = qk_calloc((size_t)nv + 1, sizeof(int));
    uint8_t *rm = qk_calloc((size_t)nn * 2 + 1, 1);
    if (!prod || !ncons || !rm) {
        st = qk_error(QK_ERR_NOMEM, "lower fuse: out of memory");
        goto done;
    }
    for (int v = 0; v < nv; v++)
        prod[v] = -1;
    for (int i = 0; i < nn; i++) {
        const qk_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_out; k++)
            if (n->out[k] >= 0)
                prod[n->out[k]] = i;
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0)
                ncons[n->in[k]]++;
    }
    for (int k = 0; k < g->n_outputs; k++)
        ncons[g->outputs[k]] += 2; /* never fused away */
    for (int qi = 0; qi < nn; qi++) {
        const qk_node *q = &g->nodes[qi];
        if (!qk_node_is(q, "QuantizeLinear") || q->n_in < 2 || q->n_out != 1 || q->in[0] < 0 || q->in[1] < 0)
            continue;
        const qk_value *qs = &g->values[q->in[1]];
        const qk_tensor *qy = &g->values[q->out[0]].t;
        if (!qk_value_is_initializer(qs) || qs->t.dtype != QK_F32 || qk_tensor_numel(&qs->t) != 1 ||
            (qy->dtype != QK_U8 && qy->dtype != QK_I8))
            continue;
        int32_t zy = 0;
        if (q->n_in > 2 && q->in[2] >= 0) {
            const qk_value *zv = &g->values[q->in[2]];
            if (!qk_value_is_initializer(zv) || qk_tensor_numel(&zv->t) != 1)
                continue;
            zy = (int32_t)qk_tensor_int_at(&zv->t, 0);
        }
        int v = q->in[0], p = prod[v], relu = -1, add = -1, dqa = -1, dqb = -1, b = -1;
        int32_t za = 0, zb = 0;
        if (p >= 0 && !rm[p] && ncons[v] == 1 && qk_node_is(&g->nodes[p], "Relu")) {
            relu = p;
            v = g->nodes[p].in[0];
            p = v >= 0 ? prod[v] : -1;
        }
        if (p < 0 || rm[p] || (ncons[v] != 1 && !(relu < 0 && dq_ok(g, p, &za))))
            continue;
        if (qk_node_is(&g->nodes[p], "Add") && g->nodes[p].n_in == 2 && ncons[v] == 1) {
            const qk_node *an = &g->nodes[p];
            int x0 = an->in[0], x1 = an->in[1];
            if (x0 < 0 || x1 < 0 || x0 == x1 || !same_shape(&g->values[x0].t, &g->values[x1].t) ||
                g->values[x0].t.dtype != QK_F32 || g->values[x1].t.dtype != QK_F32)
                continue;
            for (int side = 0; side < 2 && dqa < 0; side++) {
                int xa = side ? x1 : x0, pa = prod[xa];
                if (pa >= 0 && !rm[pa] && dq_ok(g, pa, &za))
                    dqa = pa, b = side ? x0 : x1;
            }
            if (dqa < 0)
                continue;
            add = p;
            int pb = prod[b];
            if (pb >= 0 && !rm[pb] && dq_ok(g, pb, &zb))
                dqb = pb;
        } else if (dq_ok(g, p, &za)) {
            dqa = p;
        } else {
            continue;
        }
        const qk_node *da = &g->nodes[dqa];
        int in[4] = { da->in[0], da->in[1], -1, -1 };
        if (b >= 0) {
            in[2] = dqb >= 0 ? g->nodes[dqb].in[0] : b;
            in[3] = dqb >= 0 ? g->nodes[dqb].in[1] : -1;
        }
        if (!same_shape(&g->values[in[0]].t, qy))
            continue;
        char name[256];
        snprintf(name, sizeof name, "%s_epilogue", g->nodes[add >= 0 ? add : dqa].name);
        int yv = q->out[0];
        float ys = qk_f32(&qs->t)[0];
        /* the new node takes over yv: the QuantizeLinear (removed below) still lists it,
         * qk_graph_remove_nodes recomputes the producers */
        g->values[yv].producer = -1;
        int nd = qk_graph_add_node(g, "QkEpilogue", name, 4, in, 1, &yv);
        if (nd < 0) {
            g->values[yv].producer = qi;
            st = qk_error(QK_ERR_NOMEM, "lower fuse: node '%s': out of memory", name);
            goto done;
        }
        qk_node *e = &g->nodes[nd]; /* (g->nodes may have moved: q is stale from here) */
        if (!(e->domain = qk_strdup(QK_LOWER_DOMAIN))) {
            st = qk_error(QK_ERR_NOMEM, "lower fuse: out of memory");
            goto done;
        }
        if ((st = qk_node_set_int(g, nd, "a_zero_point", za)) != QK_OK ||
            (st = qk_node_set_int(g, nd, "b_zero_point", zb)) != QK_OK ||
            (st = qk_node_set_int(g, nd, "relu", relu >= 0)) != QK_OK ||
            (st = qk_node_set_float(g, nd, "y_scale", ys)) != QK_OK ||
            (st = qk_node_set_int(g, nd, "y_zero_point", zy)) != QK_OK ||
            (st = qk_node_set_int(g, nd, "out_type", qy->dtype)) != QK_OK)
            goto done;
        rm[qi] = 1; /* the DequantizeLinear nodes go below, once nothing reads them */
        if (relu >= 0)
            rm[relu] = 1;
        if (add >= 0)
            rm[add] = 1;
    }
    if (g->n_nodes > nn) {
        /* DequantizeLinear nodes no reader is left for (their epilogues dequantize again) */
        for (int v = 0; v < nv; v++)
            ncons[v] = 0;
        for (int k = 0; k < g->n_outputs; k++)
            ncons[g->outputs[k]] += 2;
        for (int i = 0; i < g->n_nodes; i++)
            if (i >= nn || !rm[i])
                for (int k = 0; k < g->nodes[i].n_in; k++)
                    if (g->nodes[i].in[k] >= 0)
                        ncons[g->nodes[i].in[k]]++;
        for (int i = 0; i < nn; i++)
            if (!rm[i] && qk_node_is(&g->nodes[i], "DequantizeLinear") && g->nodes[i].n_out == 1 &&
                g->nodes[i].out[0] >= 0 && ncons[g->nodes[i].out[0]] == 0)
                rm[i] = 1;
        if ((st = qk_graph_remove_nodes(g, rm)) == QK_OK)
            st = qk_lower_bind(g);
    }
done:
    qk_free(prod);
    qk_free(ncons);
    qk_free(rm);
    return st == QK_OK ? QK_OK : qk_error_context(st, "lower fuse");
}
