/* QDQ graph -> integer graph (qrun.h, "Lowering"). One pass over the source
 * nodes in topological order builds a new graph:
 *   map[v]  new value with the same meaning as source value v (same dtype)
 *   lq[v]   for a float v that is exactly DQ(codes): the codes (lazy DQ),
 *           with per-tensor (lqs, lqz); map[v] is made on demand
 *   wdq[v]  for a float v = DQ(integer initializer): the DQ node (weights)
 * Every op of a matched pattern reads codes; all others are copied as
 * float nodes whose inputs are materialized with qk_lw_get_v(); the patterns
 * live in lower_match.c, the helpers both call in lower_emit.c. */
#include "lower_pass.h"
#include "qkit/ops.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------------- driver */

static qk_status lower_node(lw *L, int ni)
{
    const qk_node *n = snode(L, ni);
    const char *t = n->op_type;
    int h = 0;
    if (n->domain && n->domain[0] && strcmp(n->domain, "ai.onnx") != 0)
        ; /* foreign domain: copied, binding reports it */
    else if (strcmp(t, "DequantizeLinear") == 0)
        TRY(qk_lw_lower_dq(L, ni, &h));
    else if (strcmp(t, "QuantizeLinear") == 0)
        TRY(qk_lw_lower_q(L, ni, &h));
    else if (strcmp(t, "Conv") == 0)
        TRY(qk_lw_lower_weighted(L, ni, K_CONV, &h));
    else if (strcmp(t, "Gemm") == 0)
        TRY(qk_lw_lower_weighted(L, ni, K_GEMM, &h));
    else if (strcmp(t, "MatMul") == 0)
        TRY(qk_lw_lower_weighted(L, ni, K_MATMUL, &h));
    else if (strcmp(t, "Add") == 0)
        TRY(qk_lw_lower_add(L, ni, &h));
    else if (strcmp(t, "MaxPool") == 0)
        TRY(qk_lw_lower_pool(L, ni, 0, &h));
    else if (strcmp(t, "AveragePool") == 0)
        TRY(qk_lw_lower_pool(L, ni, 1, &h));
    else if (strcmp(t, "GlobalAveragePool") == 0)
        TRY(qk_lw_lower_pool(L, ni, 2, &h));
    else if (strcmp(t, "Concat") == 0)
        TRY(qk_lw_lower_concat(L, ni, &h));
    else if (strcmp(t, "Relu") == 0)
        TRY(qk_lw_lower_relu(L, ni, &h));
    else if (strcmp(t, "Clip") == 0)
        TRY(qk_lw_lower_code_clip(L, ni, &h));
    else if (qk_lower_is_shape_op(t))
        TRY(qk_lw_lower_shape(L, ni, &h));
    if (h)
        return QK_OK;
    qk_status st = qk_lw_emit_copy(L, ni, NULL, -1, NULL);
    return st == QK_OK ? QK_OK : qk_error_context(st, "lower");
}

/* Topological order of the source nodes (the source is const: no qk_graph_sort). */
static qk_status lower_order(lw *L, int *order)
{
    const qk_graph *s = L->s;
    uint8_t *have = qk_calloc((size_t)s->n_values + 1, 1), *emitted = qk_calloc((size_t)s->n_nodes + 1, 1);
    if (!have || !emitted) {
        qk_free(have);
        qk_free(emitted);
        return qk_error(QK_ERR_NOMEM, "lower: out of memory");
    }
    for (int v = 0; v < s->n_values; v++)
        have[v] = L->prod[v] < 0;
    int k = 0, progress = 1;
    while (k < s->n_nodes && progress) {
        progress = 0;
        for (int i = 0; i < s->n_nodes; i++) {
            if (emitted[i])
                continue;
            const qk_node *n = &s->nodes[i];
            int ok = 1;
            for (int j = 0; j < n->n_in && ok; j++)
                ok = n->in[j] < 0 || have[n->in[j]];
            if (!ok)
                continue;
            emitted[i] = 1;
            order[k++] = i;
            progress = 1;
            for (int j = 0; j < n->n_out; j++)
                if (n->out[j] >= 0)
                    have[n->out[j]] = 1;
        }
    }
    qk_status st = QK_OK;
    if (k < s->n_nodes) {
        for (int i = 0; i < s->n_nodes; i++)
            if (!emitted[i]) {
                st = qk_error(QK_ERR_FORMAT, "lower: node '%s' is in a cycle or reads a value nothing produces",
                              s->nodes[i].name);
                break;
            }
    }
    qk_free(have);
    qk_free(emitted);
    return st;
}

void qk_lower_opts_default(qk_lower_opts *o)
{
    memset(o, 0, sizeof *o);
    o->arith = -1;
}

static qk_status pick_arith(const qk_graph *s, const qk_lower_opts *o, qk_arith *a)
{
    const char *be = qk_graph_get_meta(s, "qkit.backend");
    if (o && o->arith >= 0) {
        if (o->arith > QK_ARITH_NONE)
            return qk_error(QK_ERR_ARG, "lower: unknown arithmetic %d", o->arith);
        *a = (qk_arith)o->arith;
    } else {
        const char *m = qk_graph_get_meta(s, "qkit.arith");
        if (!m)
            return qk_error(QK_ERR_UNSUPPORTED,
                            "lower: the model has no metadata \"qkit.arith\" (not written by `qkit ptq`?); "
                            "choose the arithmetic explicitly (fp32, gemmlowp or pot)");
        int i;
        for (i = 0; i <= QK_ARITH_NONE; i++)
            if (strcmp(m, qk_arith_name((qk_arith)i)) == 0)
                break;
        if (i > QK_ARITH_NONE)
            return qk_error(QK_ERR_UNSUPPORTED, "lower: unknown qkit.arith \"%s\" (fp32, gemmlowp, pot)", m);
        *a = (qk_arith)i;
    }
    if (*a == QK_ARITH_NONE)
        return qk_error(QK_ERR_UNSUPPORTED,
                        "lower: backend '%s' has arithmetic \"none\" (no linear integer pipeline, e.g. NNIE's "
                        "logarithmic code): it can only be simulated (evaluate the QDQ model instead)",
                        be ? be : "?");
    return QK_OK;
}

qk_status qk_qdq_lower(const qk_graph *qdq, const qk_lower_opts *opts, qk_graph **out, qk_lower_stats *stats)
{
    *out = NULL;
    lw L;
    memset(&L, 0, sizeof L);
    L.s = qdq;
    L.verbose = opts ? opts->verbose : 0;
    qk_status st = pick_arith(qdq, opts, &L.arith);
    if (st != QK_OK)
        return st;
    L.st.arith = L.arith;
    size_t nv = (size_t)qdq->n_values + 1, nn = (size_t)qdq->n_nodes + 1;
    int *ibuf = qk_malloc(nv * 7 * sizeof(int) + nn * sizeof(int));
    L.lqs = qk_calloc(nv, sizeof(float));
    L.lqz = qk_calloc(nv, sizeof(int32_t));
    L.lqt = qk_calloc(nv, sizeof(qk_dtype));
    L.qt = qk_calloc(nv, sizeof(qk_dtype));
    L.done = qk_calloc(nn, 1);
    int *order = NULL;
    if (!ibuf || !L.lqs || !L.lqz || !L.lqt || !L.qt || !L.done) {
        st = qk_error(QK_ERR_NOMEM, "lower: out of memory");
        goto done;
    }
    for (size_t i = 0; i < nv * 7; i++)
        ibuf[i] = -1;
    L.map = ibuf, L.lq = ibuf + nv, L.wdq = ibuf + 2 * nv, L.cons = ibuf + 3 * nv, L.prod = ibuf + 4 * nv;
    L.ncons = ibuf + 5 * nv, L.isout = ibuf + 6 * nv;
    order = ibuf + 7 * nv;
    for (size_t i = 0; i < nv; i++)
        L.ncons[i] = L.isout[i] = 0;
    for (int i = 0; i < qdq->n_nodes; i++) {
        const qk_node *n = &qdq->nodes[i];
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j] >= 0)
                L.ncons[n->in[j]]++, L.cons[n->in[j]] = i;
        for (int j = 0; j < n->n_out; j++)
            if (n->out[j] >= 0)
                L.prod[n->out[j]] = i;
    }
    for (int i = 0; i < qdq->n_outputs; i++)
        L.isout[qdq->outputs[i]] = 1;
    if ((st = lower_order(&L, order)) != QK_OK)
        goto done;
    if ((st = qk_graph_create(&L.g)) != QK_OK)
        goto done;
    if (qdq->name)
        L.g->name = qk_strdup(qdq->name);
    L.g->opset = qdq->opset;
    L.g->opts = qdq->opts; /* the lowered graph runs as its source was told to */
    for (int i = 0; i < qdq->n_meta && st == QK_OK; i++)
        st = qk_graph_set_meta(L.g, qdq->meta_keys[i], qdq->meta_vals[i]);
    if (st == QK_OK)
        st = qk_graph_set_meta(L.g, "qkit.lowered", qk_arith_name(L.arith));
    for (int i = 0; i < qdq->n_inputs && st == QK_OK; i++) {
        const qk_value *v = &qdq->values[qdq->inputs[i]];
        int64_t d[QK_MAX_DIMS];
        memcpy(d, v->t.dims, sizeof d);
        if (v->dyn_batch && v->t.ndim > 0)
            d[0] = -1;
        int ni = qk_graph_add_input(L.g, v->name, v->t.dtype, v->t.ndim, d);
        if (ni < 0)
            st = qk_error_context(QK_ERR_NOMEM, "lower: input '%s'", v->name);
        L.map[qdq->inputs[i]] = ni;
        L.qt[qdq->inputs[i]] = v->t.dtype;
    }
    for (int k = 0; k < qdq->n_nodes && st == QK_OK; k++)
        if (!L.done[order[k]])
            st = lower_node(&L, order[k]);
    for (int i = 0; i < qdq->n_outputs && st == QK_OK; i++) {
        int v = qk_lw_get_v(&L, qdq->outputs[i]);
        st = v < 0 ? qk_error_context(QK_ERR_NOMEM, "lower: output '%s'", qdq->values[qdq->outputs[i]].name)
                   : qk_graph_add_output(L.g, v);
    }
    if (st == QK_OK)
        st = qk_lower_bind(L.g);
done:
    if (st == QK_OK) {
        *out = L.g;
        if (stats)
            *stats = L.st;
    } else {
        qk_graph_destroy(L.g);
    }
    qk_free(ibuf);
    qk_free(L.lqs);
    qk_free(L.lqz);
    qk_free(L.lqt);
    qk_free(L.qt);
    qk_free(L.done);
    return st;
}
