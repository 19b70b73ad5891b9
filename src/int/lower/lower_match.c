/* The patterns of the lowering pass (qrun.h, "Lowering"): each reads the
 * source node, checks that its inputs are codes of known grids, and emits
 * the integer operator (lower_ops.c) that replaces the node and, where the
 * pattern absorbs it, the following activation and QuantizeLinear. */
#include "lower_pass.h"

#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------- weighted layers */

static int32_t sat_i32(double v)
{
    return v >= 2147483647.0 ? INT32_MAX : v <= -2147483648.0 ? INT32_MIN : (int32_t)v;
}

qk_status qk_lw_lower_weighted(lw *L, int ni, int kind, int *handled)
{
    const qk_node *n = snode(L, ni);
    int x = sin_(n, 0), w = sin_(n, 1), b = kind == K_MATMUL ? -1 : sin_(n, 2);
    if (x < 0 || w < 0 || n->n_out != 1)
        return QK_OK;
    if (L->lq[x] < 0 || L->wdq[w] < 0) {
        L->st.float_layers++;
        if (L->verbose)
            qk_log(QK_LOG_INFO, "lower: %s '%s': %s not quantized, runs in float", n->op_type, n->name,
                   L->lq[x] < 0 ? "input" : "weight");
        return QK_OK;
    }
    int trans_b = kind == K_GEMM ? (int)qk_node_int(n, "transB", 0) : 0;
    if (kind == K_GEMM && (qk_node_int(n, "transA", 0) != 0 || qk_node_float(n, "alpha", 1.0f) != 1.0f ||
                           (b >= 0 && qk_node_float(n, "beta", 1.0f) != 1.0f))) {
        L->st.float_layers++;
        return QK_OK;
    }
    int wn = L->wdq[w];
    qpar wp;
    TRY(qk_lw_qpar_read(L, wn, &wp));
    const qk_value *wv = sval(L, snode(L, wn)->in[0]);
    if (!is_q8(wv->t.dtype))
        return qk_error(QK_ERR_ARG, "lower: %s '%s': weight codes '%s' are %s, expected int8 or uint8", n->op_type,
                        n->name, wv->name, qk_dtype_name(wv->t.dtype));
    int64_t Co, axis_req;
    if (kind == K_CONV) {
        if (wv->t.ndim != 4) {
            L->st.float_layers++;
            return QK_OK; /* 1-D / 3-D convolutions: float */
        }
        Co = wv->t.dims[0], axis_req = 0;
    } else {
        if (wv->t.ndim != 2)
            return qk_error(QK_ERR_SHAPE, "lower: %s '%s': weight '%s' must be 2-D", n->op_type, n->name, wv->name);
        Co = trans_b ? wv->t.dims[0] : wv->t.dims[1];
        axis_req = trans_b ? 0 : 1;
    }
    if (wp.n != 1) {
        int64_t ax = wp.axis < 0 ? wp.axis + wv->t.ndim : wp.axis;
        if (ax != axis_req)
            return qk_error(QK_ERR_ARG,
                            "lower: %s '%s': weight '%s' is quantized per channel along axis %lld, which the "
                            "layer reduces (need axis %lld)",
                            n->op_type, n->name, wv->name, (long long)wp.axis, (long long)axis_req);
        if (wp.n != Co)
            return qk_error(QK_ERR_ARG,
                            "lower: %s '%s': per-channel weight scale of '%s' has %d entries, the layer has %lld "
                            "output channels",
                            n->op_type, n->name, wv->name, wp.n, (long long)Co);
    }
    const float *bias_f = NULL;
    if (b >= 0) {
        const qk_value *bv = sval(L, b);
        if (!qk_value_is_initializer(bv) || bv->t.dtype != QK_F32 || qk_tensor_numel(&bv->t) != Co)
            return qk_error(QK_ERR_ARG, "lower: %s '%s': bias '%s' must be a float32 initializer of %lld values",
                            n->op_type, n->name, bv->name, (long long)Co);
        bias_f = qk_f32(&bv->t);
    }
    chain c;
    TRY(qk_lw_find_chain(L, n->out[0], 1, &c));
    float sx = L->lqs[x];
    int nr = wp.n;
    int32_t *buf = qk_calloc((size_t)(4 * nr + Co), sizeof(int32_t));
    if (!buf)
        return NOMEM(n);
    int32_t *wz = buf, *mult = buf + nr, *shift = buf + 2 * nr, *bq = buf + 3 * nr;
    float *scale = (float *)(buf + 3 * nr + Co);
    qk_status st = QK_OK;
    int32_t qmin = INT32_MIN, qmax = INT32_MAX, zy = 0;
    qk_rq_mode mode = QK_RQ_NONE;
    qk_dtype yt = QK_I32;
    if (c.q >= 0) {
        yt = c.p.type;
        zy = c.p.z[0];
        mode = L->arith == QK_ARITH_GEMMLOWP ? QK_RQ_GEMMLOWP : L->arith == QK_ARITH_POT ? QK_RQ_SHIFT : QK_RQ_FP32;
        st = qk_lw_chain_bounds(L, &c, ni, &qmin, &qmax);
    }
    for (int64_t ch = 0; ch < Co && st == QK_OK; ch++) {
        double sw = wp.s[nr == 1 ? 0 : ch];
        bq[ch] = bias_f ? sat_i32(nearbyint((double)bias_f[ch] / ((double)sx * sw))) : 0;
    }
    for (int i = 0; i < nr && st == QK_OK; i++) {
        float sw = wp.s[i];
        wz[i] = qpar_z(&wp, i);
        if (c.q < 0) {
            scale[i] = sx * sw; /* the accumulator's unit */
            continue;
        }
        float sy = c.p.s[0];
        double M = (double)sx * (double)sw / (double)sy;
        scale[i] = sx * sw / sy; /* float32, ONNX Runtime's order */
        if (mode == QK_RQ_GEMMLOWP) {
            int e;
            st = qk_quantize_multiplier(M, &mult[i], &e);
            shift[i] = e;
            if (st != QK_OK)
                st = qk_error_context(st, "lower: %s '%s'", n->op_type, n->name);
        } else if (mode == QK_RQ_SHIFT) {
            int ok, e = qk_lower_pot_exp(M, &ok);
            if (!ok || e < -31 || e > 31)
                st = qk_error(QK_ERR_ARG, "lower: %s '%s': pot multiplier %g is not 2^k with |k| <= 31", n->op_type,
                              n->name, M);
            shift[i] = -e;
        }
    }
    int in[7] = { -1, -1, -1, -1, -1, -1, -1 }, out = -1, nd = -1;
    if (st == QK_OK) {
        int64_t dn = nr;
        in[0] = L->lq[x];
        in[1] = qk_lw_get_v(L, snode(L, wn)->in[0]);
        in[2] = qk_lw_new_init(L, n->name, QK_I32, 1, &dn, wz);
        in[3] = b >= 0 ? qk_lw_new_init(L, sval(L, b)->name, QK_I32, 1, &Co, bq) : -1;
        in[4] = qk_lw_new_init(L, n->name, QK_I32, 1, &dn, mult);
        in[5] = qk_lw_new_init(L, n->name, QK_I32, 1, &dn, shift);
        in[6] = qk_lw_new_init(L, n->name, QK_F32, 1, &dn, scale);
        out = c.q >= 0 ? qk_lw_chain_out(L, &c) : qk_lw_new_act(L, sval(L, n->out[0])->name, 1);
        int ok = in[1] >= 0 && in[2] >= 0 && (b < 0 || in[3] >= 0) && in[4] >= 0 && in[5] >= 0 && in[6] >= 0 &&
                 out >= 0;
        nd = ok ? qk_lw_add_qnode(L, kind == K_CONV ? "QkConv" : "QkGemm", n->name, 7, in, out) : -1;
        if (nd < 0)
            st = NOMEM(n);
    }
    if (st == QK_OK && kind == K_CONV)
        st = qk_lw_copy_attrs(L, nd, n);
    if (st == QK_OK && kind != K_CONV)
        st = qk_node_set_int(L->g, nd, "trans_b", trans_b);
    if (st == QK_OK && (st = qk_node_set_int(L->g, nd, "x_zero_point", L->lqz[x])) == QK_OK &&
        (st = qk_node_set_int(L->g, nd, "rq_mode", mode)) == QK_OK)
        st = qk_lw_set_ostage(L, nd, yt, zy, qmin, qmax);
    if (st == QK_OK && c.q < 0) { /* int32 accumulator -> float: DequantizeLinear per channel */
        int64_t dn = nr;
        int sc = qk_lw_new_init(L, n->name, QK_F32, nr == 1 ? 0 : 1, &dn, scale);
        int fo = qk_lw_new_act(L, sval(L, n->out[0])->name, 0);
        int ins[2] = { out, sc };
        char *nm = qk_lw_uniq(L, n->name);
        int dq = sc >= 0 && fo >= 0 && nm ? qk_graph_add_node(L->g, "DequantizeLinear", nm, 2, ins, 1, &fo) : -1;
        qk_free(nm);
        if (dq < 0 || qk_node_set_int(L->g, dq, "axis", kind == K_CONV ? 1 : -1) != QK_OK)
            st = NOMEM(n);
        else {
            L->map[n->out[0]] = fo;
            L->qt[n->out[0]] = QK_F32;
            L->st.float_nodes++;
        }
    }
    qk_free(buf);
    if (st != QK_OK)
        return st;
    if (c.q >= 0)
        qk_lw_chain_done(L, &c);
    L->st.int_layers++;
    *handled = 1;
    return QK_OK;
}

/* ---------------------------------------------------------------- other ops */

qk_status qk_lw_lower_add(lw *L, int ni, int *handled)
{
    const qk_node *n = snode(L, ni);
    int a = sin_(n, 0), b = sin_(n, 1);
    if (n->n_in != 2 || a < 0 || b < 0 || L->lq[a] < 0 || L->lq[b] < 0 || n->n_out != 1)
        return QK_OK;
    chain c;
    TRY(qk_lw_find_chain(L, n->out[0], 1, &c));
    if (c.q < 0 || (L->arith == QK_ARITH_GEMMLOWP && (L->lqt[a] != c.p.type || L->lqt[b] != c.p.type)))
        return QK_OK;
    int32_t qmin, qmax;
    TRY(qk_lw_chain_bounds(L, &c, ni, &qmin, &qmax));
    int in[2] = { L->lq[a], L->lq[b] };
    int out = qk_lw_chain_out(L, &c);
    int nd = out >= 0 ? qk_lw_add_qnode(L, "QkAdd", n->name, 2, in, out) : -1;
    if (nd < 0)
        return NOMEM(n);
    TRY(qk_node_set_float(L->g, nd, "a_scale", L->lqs[a]));
    TRY(qk_node_set_int(L->g, nd, "a_zero_point", L->lqz[a]));
    TRY(qk_node_set_float(L->g, nd, "b_scale", L->lqs[b]));
    TRY(qk_node_set_int(L->g, nd, "b_zero_point", L->lqz[b]));
    TRY(qk_node_set_float(L->g, nd, "y_scale", c.p.s[0]));
    TRY(qk_node_set_int(L->g, nd, "arith", L->arith));
    TRY(qk_lw_set_ostage(L, nd, c.p.type, c.p.z[0], qmin, qmax));
    qk_lw_chain_done(L, &c);
    *handled = 1;
    return QK_OK;
}

qk_status qk_lw_lower_pool(lw *L, int ni, int kind, int *handled)
{
    const qk_node *n = snode(L, ni);
    int x = sin_(n, 0);
    if (x < 0 || L->lq[x] < 0 || n->n_out < 1 || (n->n_out > 1 && n->out[1] >= 0))
        return QK_OK;
    chain c = { .q = -1, .relu = -1 };
    int out;
    if (kind == 0) { /* max: exact on codes, same grid */
        out = qk_lw_new_act(L, sval(L, n->out[0])->name, 1);
    } else {
        TRY(qk_lw_find_chain(L, n->out[0], 0, &c));
        if (c.q < 0)
            return QK_OK;
        out = qk_lw_chain_out(L, &c);
    }
    int nd = out >= 0 ? qk_lw_add_qnode(L, "QkPool", n->name, 1, &L->lq[x], out) : -1;
    if (nd < 0)
        return NOMEM(n);
    TRY(qk_lw_copy_attrs(L, nd, n));
    TRY(qk_node_set_int(L->g, nd, "kind", kind));
    TRY(qk_node_set_float(L->g, nd, "x_scale", L->lqs[x]));
    TRY(qk_node_set_int(L->g, nd, "x_zero_point", L->lqz[x]));
    TRY(qk_node_set_int(L->g, nd, "arith", L->arith));
    if (kind == 0) {
        int32_t lo, hi;
        qk_int_range(L->lqt[x], &lo, &hi);
        TRY(qk_node_set_float(L->g, nd, "y_scale", L->lqs[x]));
        TRY(qk_lw_set_ostage(L, nd, L->lqt[x], L->lqz[x], lo, hi));
        int v = n->out[0];
        L->lq[v] = out, L->lqs[v] = L->lqs[x], L->lqz[v] = L->lqz[x], L->lqt[v] = L->lqt[x];
    } else {
        int32_t lo, hi;
        qk_int_range(c.p.type, &lo, &hi);
        TRY(qk_node_set_float(L->g, nd, "y_scale", c.p.s[0]));
        TRY(qk_lw_set_ostage(L, nd, c.p.type, c.p.z[0], lo, hi));
        qk_lw_chain_done(L, &c);
    }
    *handled = 1;
    return QK_OK;
}

/* QkRequant / QkConcat node from codes inputs to a grid. */
static qk_status qk_lw_emit_requant(lw *L, const char *type, const char *base, int nin, const int *srcv, int out,
                              float sy, int32_t zy, qk_dtype yt, int32_t qmin, int32_t qmax, const qk_node *copy_from,
                              int *nd_out)
{
    int in[64];
    float sc[64];
    int64_t zs[64];
    for (int i = 0; i < nin; i++)
        in[i] = L->lq[srcv[i]], sc[i] = L->lqs[srcv[i]], zs[i] = L->lqz[srcv[i]];
    int nd = qk_lw_add_qnode(L, type, base, nin, in, out);
    if (nd < 0)
        return qk_error(QK_ERR_NOMEM, "lower: '%s': out of memory", base);
    if (copy_from)
        TRY(qk_lw_copy_attrs(L, nd, copy_from));
    TRY(qk_node_set_floats(L->g, nd, "x_scales", nin, sc));
    TRY(qk_node_set_ints(L->g, nd, "x_zero_points", nin, zs));
    TRY(qk_node_set_float(L->g, nd, "y_scale", sy));
    TRY(qk_node_set_int(L->g, nd, "arith", L->arith));
    TRY(qk_lw_set_ostage(L, nd, yt, zy, qmin, qmax));
    if (nd_out)
        *nd_out = nd;
    return QK_OK;
}

qk_status qk_lw_lower_concat(lw *L, int ni, int *handled)
{
    const qk_node *n = snode(L, ni);
    if (n->n_in < 1 || n->n_in > 64 || n->n_out != 1)
        return QK_OK;
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i] < 0 || L->lq[n->in[i]] < 0)
            return QK_OK;
    chain c;
    TRY(qk_lw_find_chain(L, n->out[0], 0, &c));
    if (c.q < 0)
        return QK_OK;
    int32_t lo, hi;
    qk_int_range(c.p.type, &lo, &hi);
    int out = qk_lw_chain_out(L, &c);
    if (out < 0)
        return NOMEM(n);
    TRY(qk_lw_emit_requant(L, "QkConcat", n->name, n->n_in, n->in, out, c.p.s[0], c.p.z[0], c.p.type, lo, hi, n, NULL));
    qk_lw_chain_done(L, &c);
    *handled = 1;
    return QK_OK;
}

/* Relu of DQ(codes) = DQ(max(codes, z)). */
qk_status qk_lw_lower_relu(lw *L, int ni, int *handled)
{
    const qk_node *n = snode(L, ni);
    int x = sin_(n, 0);
    if (x < 0 || L->lq[x] < 0 || n->n_out != 1)
        return QK_OK;
    int32_t lo, hi;
    qk_int_range(L->lqt[x], &lo, &hi);
    int v = n->out[0], out = qk_lw_new_act(L, sval(L, v)->name, 1);
    if (out < 0)
        return NOMEM(n);
    TRY(qk_lw_emit_requant(L, "QkRequant", n->name, 1, &x, out, L->lqs[x], L->lqz[x], L->lqt[x], L->lqz[x], hi, NULL,
                     NULL));
    L->lq[v] = out, L->lqs[v] = L->lqs[x], L->lqz[v] = L->lqz[x], L->lqt[v] = L->lqt[x];
    *handled = 1;
    return QK_OK;
}

qk_status qk_lw_lower_dq(lw *L, int ni, int *handled)
{
    const qk_node *n = snode(L, ni);
    qpar p;
    TRY(qk_lw_qpar_read(L, ni, &p));
    int x = n->in[0], v = n->out[0];
    const qk_value *xv = sval(L, x);
    if (n->n_out != 1 || v < 0)
        return QK_OK;
    if (p.n > 1 && qk_value_is_initializer(xv)) {
        int64_t ax = p.axis < 0 ? p.axis + xv->t.ndim : p.axis;
        if (ax < 0 || ax >= xv->t.ndim || xv->t.dims[ax] != p.n)
            return qk_error(QK_ERR_ARG, "DequantizeLinear '%s': per-axis scale has %d entries, "
                            "'%s' has %lld on axis %lld",
                            n->name, p.n, xv->name, ax >= 0 && ax < xv->t.ndim ? (long long)xv->t.dims[ax] : -1LL,
                            (long long)p.axis);
    }
    if (qk_value_is_initializer(xv) && is_q8(xv->t.dtype)) {
        L->wdq[v] = ni; /* weights: consumed by the layer, or materialized on demand */
        *handled = 1;
        return QK_OK;
    }
    if (!qk_value_is_initializer(xv) && L->map[x] >= 0 && is_q8(L->qt[x]) && p.n == 1) {
        L->lq[v] = L->map[x], L->lqs[v] = p.s[0], L->lqz[v] = p.z[0], L->lqt[v] = L->qt[x];
        *handled = 1;
    }
    return QK_OK;
}

qk_status qk_lw_lower_q(lw *L, int ni, int *handled)
{
    const qk_node *n = snode(L, ni);
    qpar p;
    TRY(qk_lw_qpar_read(L, ni, &p));
    int x = n->in[0], v = n->out[0];
    if (p.n != 1 || L->lq[x] < 0 || n->n_out != 1)
        return QK_OK;
    int out = qk_lw_new_act(L, sval(L, v)->name, 0);
    if (out < 0)
        return NOMEM(n);
    if (L->lqs[x] == p.s[0] && L->lqz[x] == p.z[0] && L->lqt[x] == p.type) { /* same grid: identity */
        char *nm = qk_lw_uniq(L, n->name);
        int nd = nm ? qk_graph_add_node(L->g, "Identity", nm, 1, &L->lq[x], 1, &out) : -1;
        qk_free(nm);
        if (nd < 0)
            return NOMEM(n);
    } else {
        int32_t lo, hi;
        qk_int_range(p.type, &lo, &hi);
        TRY(qk_lw_emit_requant(L, "QkRequant", n->name, 1, &x, out, p.s[0], p.z[0], p.type, lo, hi, NULL, NULL));
    }
    L->map[v] = out;
    L->qt[v] = p.type;
    *handled = 1;
    return QK_OK;
}

/* Clip on codes (bit-widths under 8: Q -> Clip(lo, hi) -> DQ). */
qk_status qk_lw_lower_code_clip(lw *L, int ni, int *handled)
{
    const qk_node *n = snode(L, ni);
    int x = sin_(n, 0), il = sin_(n, 1), ih = sin_(n, 2);
    if (x < 0 || L->map[x] < 0 || !is_q8(L->qt[x]) || il < 0 || ih < 0 || n->n_out != 1)
        return QK_OK;
    const qk_value *lv = sval(L, il), *hv = sval(L, ih);
    if (!qk_value_is_initializer(lv) || !qk_value_is_initializer(hv) || lv->t.dtype != L->qt[x] || hv->t.dtype != L->qt[x])
        return QK_OK;
    int32_t lo = (int32_t)qk_tensor_int_at(&lv->t, 0), hi = (int32_t)qk_tensor_int_at(&hv->t, 0);
    if (lo > hi)
        return qk_error(QK_ERR_ARG, "Clip '%s': empty code range [%d, %d]", n->name, lo, hi);
    int pq = L->prod[x];
    if (pq >= 0 && strcmp(snode(L, pq)->op_type, "QuantizeLinear") == 0) {
        qpar p;
        TRY(qk_lw_qpar_read(L, pq, &p));
        if (p.z[0] < lo || p.z[0] > hi)
            return qk_error(QK_ERR_ARG, "QuantizeLinear '%s': zero point %d outside the code range [%d, %d] "
                            "of Clip '%s'",
                            snode(L, pq)->name, p.z[0], lo, hi, n->name);
    }
    int v = n->out[0], out = qk_lw_new_act(L, sval(L, v)->name, 0);
    if (out < 0)
        return NOMEM(n);
    /* identity grid (scale 1, zero point 0) with the clamp */
    int saved_lq = L->lq[x];
    float ss = L->lqs[x];
    int32_t sz = L->lqz[x];
    qk_dtype stt = L->lqt[x];
    L->lq[x] = L->map[x], L->lqs[x] = 1.0f, L->lqz[x] = 0, L->lqt[x] = L->qt[x];
    qk_status st = qk_lw_emit_requant(L, "QkRequant", n->name, 1, &x, out, 1.0f, 0, L->qt[x], lo, hi, NULL, NULL);
    L->lq[x] = saved_lq, L->lqs[x] = ss, L->lqz[x] = sz, L->lqt[x] = stt;
    TRY(st);
    L->map[v] = out;
    L->qt[v] = L->qt[x];
    *handled = 1;
    return QK_OK;
}

int qk_lw_is_shape_op(const char *t)
{
    static const char *const ops[] = { "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Dropout", NULL };
    for (int i = 0; ops[i]; i++)
        if (strcmp(t, ops[i]) == 0)
            return 1;
    return 0;
}

qk_status qk_lw_lower_shape(lw *L, int ni, int *handled)
{
    const qk_node *n = snode(L, ni);
    int x = sin_(n, 0);
    if (x < 0 || L->lq[x] < 0 || n->n_out < 1 || (n->n_out > 1 && n->out[1] >= 0) || n->n_in > 64)
        return QK_OK;
    int in[64];
    for (int i = 0; i < n->n_in; i++) {
        in[i] = i == 0 ? L->lq[x] : (n->in[i] >= 0 ? qk_lw_get_v(L, n->in[i]) : -1);
        if (n->in[i] >= 0 && in[i] < 0)
            return NOMEM(n);
    }
    TRY(qk_lw_emit_copy(L, ni, in, x, NULL));
    *handled = 1;
    return QK_OK;
}
