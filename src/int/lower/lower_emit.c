/* The emit helpers of one lowering pass (lower_pass.h): fresh names,
 * values and initializers in the new graph, lazy DequantizeLinear
 * materialization (qk_lw_get_v), quantization parameters, float-node
 * copies, ai.qkit nodes and their output stage, and the Q / Relu / Clip
 * chains after a matched op. The driver (lower.c) and the pattern matchers
 * (lower_match.c) both call them; they call neither. */
#include "lower_pass.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* A name in neither graph. */
char *qk_lw_uniq(lw *L, const char *base)
{
    size_t len = strlen(base) + 16;
    char *b = qk_malloc(len);
    if (!b)
        return NULL;
    snprintf(b, len, "%s", base);
    for (int k = 1; qk_graph_find_value(L->g, b) >= 0 || qk_graph_find_value(L->s, b) >= 0 ||
                    qk_graph_find_node(L->g, b) >= 0 || qk_graph_find_node(L->s, b) >= 0;
         k++)
        snprintf(b, len, "%s_%d", base, k);
    return b;
}

int qk_lw_new_act(lw *L, const char *base, int fresh)
{
    char *nm = fresh ? qk_lw_uniq(L, base) : qk_strdup(base);
    if (!nm)
        return -1;
    int v = qk_graph_add_value(L->g, nm, QK_VALUE_ACT);
    qk_free(nm);
    return v;
}

int qk_lw_new_init(lw *L, const char *base, qk_dtype dt, int ndim, const int64_t *dims, const void *data)
{
    qk_tensor t = { 0 };
    if (qk_tensor_alloc(&t, dt, ndim, dims) != QK_OK)
        return -1;
    if (data)
        memcpy(t.data, data, qk_tensor_bytes(&t));
    char *nm = qk_lw_uniq(L, base);
    int v = nm ? qk_graph_add_init(L->g, nm, QK_VALUE_CONST, &t) : -1;
    qk_free(nm);
    qk_tensor_free(&t);
    return v;
}

/* ---------------------------------------------------------------- values */


/* Source value v as it is (float stays float, codes stay codes). */
int qk_lw_get_v(lw *L, int v)
{
    if (v < 0)
        return -1;
    if (L->map[v] >= 0)
        return L->map[v];
    const qk_value *sv = sval(L, v);
    if (qk_value_is_initializer(sv)) {
        qk_tensor t = { 0 };
        if (qk_tensor_clone(&t, &sv->t) != QK_OK)
            return -1;
        int nv = qk_graph_add_init(L->g, sv->name, sv->kind, &t);
        qk_tensor_free(&t);
        L->map[v] = nv;
        L->qt[v] = sv->t.dtype;
        return nv;
    }
    if (L->lq[v] >= 0) { /* materialize DequantizeLinear(codes) */
        int8_t zb = (int8_t)L->lqz[v];
        uint8_t zu = (uint8_t)L->lqz[v];
        int sc = qk_lw_new_init(L, sval(L, v)->name, QK_F32, 0, NULL, &L->lqs[v]);
        int zp = qk_lw_new_init(L, sval(L, v)->name, L->lqt[v], 0, NULL,
                          L->lqt[v] == QK_I8 ? (const void *)&zb : (const void *)&zu);
        int nv = qk_lw_new_act(L, sval(L, v)->name, 0);
        if (sc < 0 || zp < 0 || nv < 0)
            return -1;
        int ins[3] = { L->lq[v], sc, zp };
        char *nm = qk_lw_uniq(L, sval(L, v)->name);
        int nd = nm ? qk_graph_add_node(L->g, "DequantizeLinear", nm, 3, ins, 1, &nv) : -1;
        qk_free(nm);
        if (nd < 0)
            return -1;
        L->st.float_nodes++;
        L->map[v] = nv;
        L->qt[v] = QK_F32;
        return nv;
    }
    if (L->wdq[v] >= 0) { /* a quantized weight read by a float op */
        int nv;
        if (qk_lw_emit_copy(L, L->wdq[v], NULL, -1, &nv) != QK_OK)
            return -1;
        return L->map[v];
    }
    qk_error(QK_ERR_FORMAT, "lower: value '%s' is read before it is produced", sv->name);
    return -1;
}

/* ---------------------------------------------------------------- Q/DQ parameters */


/* Read and validate scale / zero point of Q or DQ node ni (codes type:
 * the zero point's, or for a DQ of an initializer the initializer's). */
qk_status qk_lw_qpar_read(lw *L, int ni, qpar *p)
{
    const qk_node *n = snode(L, ni);
    memset(p, 0, sizeof *p);
    int iv = sin_(n, 0), is = sin_(n, 1), iz = sin_(n, 2);
    if (iv < 0 || is < 0)
        return qk_error(QK_ERR_FORMAT, "%s '%s': needs x and scale", n->op_type, n->name);
    const qk_value *sv = sval(L, is), *zv = iz >= 0 ? sval(L, iz) : NULL, *xv = sval(L, iv);
    if (!qk_value_is_initializer(sv) || (zv && !qk_value_is_initializer(zv)))
        return qk_error(QK_ERR_ARG, "%s '%s': scale '%s' and zero point must be initializers", n->op_type, n->name,
                        sv->name);
    if (sv->t.dtype != QK_F32)
        return qk_error(QK_ERR_ARG, "%s '%s': scale '%s' is %s, expected float32", n->op_type, n->name, sv->name,
                        qk_dtype_name(sv->t.dtype));
    p->n = (int)qk_tensor_numel(&sv->t);
    p->s = qk_f32(&sv->t);
    p->axis = qk_node_int(n, "axis", 1);
    p->zt = zv ? &zv->t : NULL;
    int q = strcmp(n->op_type, "QuantizeLinear") == 0;
    p->type = zv ? zv->t.dtype : (q ? QK_U8 : (qk_value_is_initializer(xv) ? xv->t.dtype : L->qt[iv]));
    if (!q && qk_value_is_initializer(xv) && zv && zv->t.dtype != xv->t.dtype)
        return qk_error(QK_ERR_ARG, "%s '%s': zero point '%s' is %s but the codes '%s' are %s", n->op_type, n->name,
                        zv->name, qk_dtype_name(zv->t.dtype), xv->name, qk_dtype_name(xv->t.dtype));
    if (!q && !qk_value_is_initializer(xv) && L->qt[iv] && is_q8(L->qt[iv]) && p->type != L->qt[iv])
        return qk_error(QK_ERR_ARG, "%s '%s': zero point type %s differs from the codes' %s", n->op_type, n->name,
                        qk_dtype_name(p->type), qk_dtype_name(L->qt[iv]));
    if (p->type != QK_U8 && p->type != QK_I8 && !(p->type == QK_I32 && !q))
        return qk_error(QK_ERR_ARG, "%s '%s': codes type %s is not uint8 or int8", n->op_type, n->name,
                        qk_dtype_name(p->type));
    if (zv && qk_tensor_numel(&zv->t) != p->n)
        return qk_error(QK_ERR_ARG, "%s '%s': zero point '%s' has %lld entries, scale '%s' has %d", n->op_type, n->name,
                        zv->name, (long long)qk_tensor_numel(&zv->t), sv->name, p->n);
    if (p->n < 1 || sv->t.ndim > 1)
        return qk_error(QK_ERR_ARG, "%s '%s': scale '%s' must be a scalar or 1-D", n->op_type, n->name, sv->name);
    for (int i = 0; i < p->n; i++) {
        float s = p->s[i];
        if (!(s > 0.0f) || !isfinite(s))
            return qk_error(QK_ERR_ARG, "%s '%s': scale '%s'[%d] = %g must be finite and > 0", n->op_type, n->name,
                            sv->name, i, (double)s);
        int ok;
        if (L->arith == QK_ARITH_POT && (qk_lower_pot_exp(s, &ok), !ok))
            return qk_error(QK_ERR_ARG, "%s '%s': arith pot needs power-of-two scales; '%s'[%d] = %.9g", n->op_type,
                            n->name, sv->name, i, (double)s);
    }
    p->z[0] = zv ? (int32_t)qk_tensor_int_at(&zv->t, 0) : 0;
    return QK_OK;
}


/* ---------------------------------------------------------------- copying nodes */

qk_status qk_lw_copy_attrs(lw *L, int dst, const qk_node *n)
{
    qk_status st = QK_OK;
    for (int a = 0; a < n->n_attr && st == QK_OK; a++) {
        const qk_attr *at = &n->attr[a];
        switch (at->type) {
        case QK_ATTR_FLOAT: st = qk_node_set_float(L->g, dst, at->name, at->f); break;
        case QK_ATTR_INT: st = qk_node_set_int(L->g, dst, at->name, at->i); break;
        case QK_ATTR_STRING: st = qk_node_set_string(L->g, dst, at->name, at->s ? at->s : ""); break;
        case QK_ATTR_FLOATS: st = qk_node_set_floats(L->g, dst, at->name, at->n, at->floats); break;
        case QK_ATTR_INTS: st = qk_node_set_ints(L->g, dst, at->name, at->n, at->ints); break;
        case QK_ATTR_TENSOR: {
            qk_tensor t = { 0 };
            if ((st = qk_tensor_clone(&t, at->t)) == QK_OK)
                st = qk_node_set_tensor(L->g, dst, at->name, &t);
            qk_tensor_free(&t);
            break;
        }
        }
    }
    return st;
}

/* Copy source node ni as it is (float semantics). in_override: new value
 * indices for its inputs (NULL: get_v). Outputs keep their names, except
 * with codes_from >= 0 (a shape op applied to the codes of source value
 * codes_from): fresh names, recorded as lazy-DQ codes with its grid. */
qk_status qk_lw_emit_copy(lw *L, int ni, const int *in_override, int codes_from, int *out_new)
{
    const qk_node *n = snode(L, ni);
    int in[64], out[16];
    if (n->n_in > 64 || n->n_out > 16)
        return qk_error(QK_ERR_UNSUPPORTED, "lower: node '%s' has too many inputs/outputs", n->name);
    for (int i = 0; i < n->n_in; i++) {
        in[i] = in_override ? in_override[i] : (n->in[i] >= 0 ? qk_lw_get_v(L, n->in[i]) : -1);
        if (n->in[i] >= 0 && in[i] < 0)
            return qk_error_context(QK_ERR_NOMEM, "lower: node '%s'", n->name);
    }
    for (int o = 0; o < n->n_out; o++) {
        out[o] = -1;
        if (n->out[o] < 0)
            continue;
        out[o] = qk_lw_new_act(L, sval(L, n->out[o])->name, codes_from >= 0);
        if (out[o] < 0)
            return qk_error(QK_ERR_NOMEM, "lower: node '%s': output '%s'", n->name, sval(L, n->out[o])->name);
    }
    int nd = qk_graph_add_node(L->g, n->op_type, n->name, n->n_in, in, n->n_out, out);
    if (nd < 0)
        return qk_error(QK_ERR_NOMEM, "lower: node '%s'", n->name);
    if (n->domain && n->domain[0])
        L->g->nodes[nd].domain = qk_strdup(n->domain);
    qk_status st = qk_lw_copy_attrs(L, nd, n);
    if (st != QK_OK)
        return st;
    for (int o = 0; o < n->n_out; o++) {
        int v = n->out[o];
        if (v < 0)
            continue;
        if (codes_from >= 0) {
            L->lq[v] = out[o];
            L->lqs[v] = L->lqs[codes_from];
            L->lqz[v] = L->lqz[codes_from];
            L->lqt[v] = L->lqt[codes_from];
        } else {
            L->map[v] = out[o];
            L->qt[v] = QK_F32;
        }
    }
    if (strcmp(n->op_type, "QuantizeLinear") == 0) {
        int iz = sin_(n, 2);
        L->qt[n->out[0]] = iz >= 0 ? sval(L, iz)->t.dtype : QK_U8;
    }
    if (codes_from < 0)
        L->st.float_nodes++;
    if (out_new)
        *out_new = out[0];
    if (L->verbose && codes_from < 0)
        qk_log(QK_LOG_INFO, "lower: %s '%s' stays float", n->op_type, n->name);
    return QK_OK;
}

/* Add an ai.qkit node; returns its index or -1. */
int qk_lw_add_qnode(lw *L, const char *type, const char *base, int nin, const int *in, int out)
{
    char *nm = qk_lw_uniq(L, base);
    int nd = nm ? qk_graph_add_node(L->g, type, nm, nin, in, 1, &out) : -1;
    qk_free(nm);
    if (nd >= 0) {
        L->g->nodes[nd].domain = qk_strdup(QK_LOWER_DOMAIN);
        L->st.int_nodes++;
        if (L->verbose)
            qk_log(QK_LOG_INFO, "lower: %s '%s' (integer)", type, base);
    }
    return nd;
}


qk_status qk_lw_set_ostage(lw *L, int nd, qk_dtype out, int32_t zp, int32_t qmin, int32_t qmax)
{
    TRY(qk_node_set_int(L->g, nd, "out_type", out));
    TRY(qk_node_set_int(L->g, nd, "y_zero_point", zp));
    TRY(qk_node_set_int(L->g, nd, "qmin", qmin));
    return qk_node_set_int(L->g, nd, "qmax", qmax);
}

/* ---------------------------------------------------------------- output chains */


static int single_consumer(const lw *L, int v) { return v >= 0 && L->ncons[v] == 1 && !L->isout[v] ? L->cons[v] : -1; }

static int const_scalar(const lw *L, int v, float *f)
{
    if (v < 0)
        return 0;
    const qk_value *sv = sval(L, v);
    if (!qk_value_is_initializer(sv) || sv->t.dtype != QK_F32 || qk_tensor_numel(&sv->t) != 1)
        return 0;
    *f = qk_f32(&sv->t)[0];
    return 1;
}

/* v -> [Relu | Clip(const)] -> [MaxPool [-> Flatten]] -> Q(per tensor), single consumers;
 * allow_act 0: no activation nor pool. The pool: quantization per tensor is monotone, so
 * MaxPool then Q = Q then the max of the codes (a QkPool; the float pool's padding is -inf,
 * the QkPool's is ignored), as TensorRT runs conv + ReLU + MaxPool: the layer requantizes
 * and the pool works on int8. */
qk_status qk_lw_find_chain(lw *L, int v, int allow_act, chain *c)
{
    memset(c, 0, sizeof *c);
    c->q = c->relu = c->pool = c->flat = -1;
    int nx = single_consumer(L, v);
    if (nx < 0)
        return QK_OK;
    const qk_node *n = snode(L, nx);
    if (allow_act && (strcmp(n->op_type, "Relu") == 0 || strcmp(n->op_type, "Clip") == 0) && n->in[0] == v) {
        float lo = -INFINITY, hi = INFINITY;
        if (strcmp(n->op_type, "Relu") == 0) {
            c->act = QK_ACT_RELU;
        } else {
            int ok = 1;
            if (sin_(n, 1) >= 0)
                ok &= const_scalar(L, n->in[1], &lo);
            else
                lo = qk_node_float(n, "min", -INFINITY);
            if (sin_(n, 2) >= 0)
                ok &= const_scalar(L, n->in[2], &hi);
            else
                hi = qk_node_float(n, "max", INFINITY);
            if (!ok)
                return QK_OK;
            c->act = QK_ACT_CLIP;
        }
        c->lo = lo, c->hi = hi;
        c->relu = nx;
        nx = single_consumer(L, n->out[0]);
        if (nx < 0)
            return QK_OK;
        n = snode(L, nx);
    }
    int pool = -1, flat = -1;
    if (allow_act && qk_node_is(n, "MaxPool") && n->n_in == 1 && (n->n_out == 1 || n->out[1] < 0)) {
        pool = nx;
        nx = single_consumer(L, n->out[0]);
        if (nx < 0)
            return QK_OK;
        n = snode(L, nx);
        if (qk_node_is(n, "Flatten") && n->n_in == 1 && n->n_out == 1) {
            flat = nx;
            nx = single_consumer(L, n->out[0]);
            if (nx < 0)
                return QK_OK;
            n = snode(L, nx);
        }
    }
    if (strcmp(n->op_type, "QuantizeLinear") != 0 || n->n_out != 1)
        return QK_OK;
    TRY(qk_lw_qpar_read(L, nx, &c->p));
    if (c->p.n != 1)
        return QK_OK;
    c->q = nx;
    c->pool = pool;
    c->flat = flat;
    return QK_OK;
}

void qk_lw_chain_done(lw *L, const chain *c)
{
    if (c->relu >= 0)
        L->done[c->relu] = 1;
    if (c->pool >= 0)
        L->done[c->pool] = 1;
    if (c->flat >= 0)
        L->done[c->flat] = 1;
    L->done[c->q] = 1;
}

/* The chain's MaxPool on the codes: QkPool(x) -> y, the pool's window, the
 * Q's scale and zero point in and out (the codes are kept). */
static int emit_code_pool(lw *L, const chain *c, int x, int y)
{
    const qk_node *mp = snode(L, c->pool);
    int nd = qk_lw_add_qnode(L, "QkPool", mp->name, 1, &x, y);
    if (nd < 0 || qk_lw_copy_attrs(L, nd, mp) != QK_OK)
        return -1;
    int32_t lo, hi;
    qk_int_range(c->p.type, &lo, &hi);
    if (qk_node_set_int(L->g, nd, "kind", 0) != QK_OK || qk_node_set_float(L->g, nd, "x_scale", c->p.s[0]) != QK_OK ||
        qk_node_set_int(L->g, nd, "x_zero_point", c->p.z[0]) != QK_OK ||
        qk_node_set_float(L->g, nd, "y_scale", c->p.s[0]) != QK_OK ||
        qk_node_set_int(L->g, nd, "y_zero_point", c->p.z[0]) != QK_OK ||
        qk_node_set_int(L->g, nd, "out_type", c->p.type) != QK_OK || qk_node_set_int(L->g, nd, "qmin", lo) != QK_OK ||
        qk_node_set_int(L->g, nd, "qmax", hi) != QK_OK)
        return -1;
    return nd;
}

/* The new codes value that replaces the chain's Q output; with a pool in the
 * chain, the value the layer writes (the pool [and Flatten] follow it). */
int qk_lw_chain_out(lw *L, const chain *c)
{
    int qo = snode(L, c->q)->out[0];
    int nv = qk_lw_new_act(L, sval(L, qo)->name, 0);
    if (nv < 0)
        return -1;
    L->map[qo] = nv;
    L->qt[qo] = c->p.type;
    if (c->pool < 0)
        return nv;
    const qk_node *mp = snode(L, c->pool);
    int pre = qk_lw_new_act(L, sval(L, mp->in[0])->name, 0), po = nv;
    if (pre < 0)
        return -1;
    if (c->flat >= 0) { /* pool -> Flatten on the codes -> nv */
        const qk_node *fl = snode(L, c->flat);
        po = qk_lw_new_act(L, sval(L, mp->out[0])->name, 0);
        char *nm = po >= 0 ? qk_lw_uniq(L, fl->name) : NULL;
        int nd = nm ? qk_graph_add_node(L->g, "Flatten", nm, 1, &po, 1, &nv) : -1;
        qk_free(nm);
        if (nd < 0 || qk_lw_copy_attrs(L, nd, fl) != QK_OK)
            return -1;
    }
    return emit_code_pool(L, c, pre, po) < 0 ? -1 : pre;
}

qk_status qk_lw_chain_bounds(const lw *L, const chain *c, int nd, int32_t *qmin, int32_t *qmax)
{
    qk_status st = qk_act_bounds(c->p.type, c->p.s[0], c->p.z[0], c->act, c->lo, c->hi, qmin, qmax);
    if (st != QK_OK)
        return qk_error_context(st, "lower: node '%s'", snode(L, nd)->name);
    return QK_OK;
}
