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

/* One weighted layer (Conv / Gemm / MatMul) on its way to QkConv / QkGemm. */
typedef struct wlayer {
    const qk_node *n;
    int ni, kind, x, w, b, wn; /* source node, its input/weight/bias values, the weight's DequantizeLinear */
    int trans_b;
    qpar wp;                   /* the weight's grid */
    const qk_value *wv;        /* the weight codes */
    int64_t Co;                /* output channels */
    const float *bias_f;       /* NULL: no bias */
    chain c;                   /* the activation / QuantizeLinear the layer absorbs */
    /* output stage */
    qk_rq_mode mode;
    qk_dtype yt;
    int32_t zy, qmin, qmax;
    /* per-channel arrays, one allocation: nr weight grids, Co bias codes */
    int nr;
    int32_t *wz, *mult, *shift, *bq;
    float *scale;
} wlayer;

/* Read and check the layer: *lowerable 0 leaves it in float (input or
 * weight not quantized, Gemm attributes or rank the integer operator lacks);
 * an error for a quantized layer whose grids do not fit it. */
static qk_status weighted_read(lw *L, int ni, int kind, wlayer *wl, int *lowerable)
{
    const qk_node *n = snode(L, ni);
    *lowerable = 0;
    memset(wl, 0, sizeof *wl);
    wl->n = n;
    wl->ni = ni;
    wl->kind = kind;
    int x = wl->x = sin_(n, 0), w = wl->w = sin_(n, 1), b = wl->b = kind == K_MATMUL ? -1 : sin_(n, 2);
    if (x < 0 || w < 0 || n->n_out != 1)
        return QK_OK;
    if (L->lq[x] < 0 || L->wdq[w] < 0) {
        L->st.float_layers++;
        if (L->verbose)
            qk_log(QK_LOG_INFO, "lower: %s '%s': %s not quantized, runs in float", n->op_type, n->name,
                   L->lq[x] < 0 ? "input" : "weight");
        return QK_OK;
    }
    wl->trans_b = kind == K_GEMM ? (int)qk_node_int(n, "transB", 0) : 0;
    if (kind == K_GEMM && (qk_node_int(n, "transA", 0) != 0 || qk_node_float(n, "alpha", 1.0f) != 1.0f ||
                           (b >= 0 && qk_node_float(n, "beta", 1.0f) != 1.0f))) {
        L->st.float_layers++;
        return QK_OK;
    }
    wl->wn = L->wdq[w];
    TRY(qk_lw_qpar_read(L, wl->wn, &wl->wp));
    const qk_value *wv = wl->wv = sval(L, snode(L, wl->wn)->in[0]);
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
        Co = wl->trans_b ? wv->t.dims[0] : wv->t.dims[1];
        axis_req = wl->trans_b ? 0 : 1;
    }
    wl->Co = Co;
    if (wl->wp.n != 1) {
        int64_t ax = wl->wp.axis < 0 ? wl->wp.axis + wv->t.ndim : wl->wp.axis;
        if (ax != axis_req)
            return qk_error(QK_ERR_ARG,
                            "lower: %s '%s': weight '%s' is quantized per channel along axis %lld, which the "
                            "layer reduces (need axis %lld)",
                            n->op_type, n->name, wv->name, (long long)wl->wp.axis, (long long)axis_req);
        if (wl->wp.n != Co)
            return qk_error(QK_ERR_ARG,
                            "lower: %s '%s': per-channel weight scale of '%s' has %d entries, the layer has %lld "
                            "output channels",
                            n->op_type, n->name, wv->name, wl->wp.n, (long long)Co);
    }
    if (b >= 0) {
        const qk_value *bv = sval(L, b);
        if (!qk_value_is_initializer(bv) || bv->t.dtype != QK_F32 || qk_tensor_numel(&bv->t) != Co)
            return qk_error(QK_ERR_ARG, "lower: %s '%s': bias '%s' must be a float32 initializer of %lld values",
                            n->op_type, n->name, bv->name, (long long)Co);
        wl->bias_f = qk_f32(&bv->t);
        for (int64_t ch = 0; ch < Co; ch++)
            if (!isfinite(wl->bias_f[ch]))
                return qk_error(QK_ERR_ARG, "lower: %s '%s': bias '%s' value %lld is %g (not finite)", n->op_type,
                                n->name, bv->name, (long long)ch, (double)wl->bias_f[ch]);
    }
    TRY(qk_lw_find_chain(L, n->out[0], 1, &wl->c));
    *lowerable = 1;
    return QK_OK;
}

/* The integer parameters: output-stage bounds, bias codes at s_x * s_w[c],
 * weight zero points and the requantization multiplier of each grid
 * (scale: the accumulator's unit when no QuantizeLinear follows). */
static qk_status weighted_params(lw *L, wlayer *wl)
{
    const qk_node *n = wl->n;
    const chain *c = &wl->c;
    float sx = L->lqs[wl->x];
    qk_status st = QK_OK;
    wl->qmin = INT32_MIN, wl->qmax = INT32_MAX, wl->zy = 0;
    wl->mode = QK_RQ_NONE;
    wl->yt = QK_I32;
    if (c->q >= 0) {
        wl->yt = c->p.type;
        wl->zy = c->p.z[0];
        wl->mode = L->arith == QK_ARITH_GEMMLOWP ? QK_RQ_GEMMLOWP : L->arith == QK_ARITH_POT ? QK_RQ_SHIFT : QK_RQ_FP32;
        TRY(qk_lw_chain_bounds(L, c, wl->ni, &wl->qmin, &wl->qmax));
    }
    for (int64_t ch = 0; ch < wl->Co; ch++) {
        double sw = wl->wp.s[wl->nr == 1 ? 0 : ch];
        wl->bq[ch] = wl->bias_f ? sat_i32(nearbyint((double)wl->bias_f[ch] / ((double)sx * sw))) : 0;
    }
    for (int i = 0; i < wl->nr && st == QK_OK; i++) {
        float sw = wl->wp.s[i];
        wl->wz[i] = qpar_z(&wl->wp, i);
        if (c->q < 0) {
            wl->scale[i] = sx * sw; /* the accumulator's unit */
            continue;
        }
        float sy = c->p.s[0];
        double M = (double)sx * (double)sw / (double)sy;
        wl->scale[i] = sx * sw / sy; /* float32, ONNX Runtime's order */
        if (!isfinite(wl->scale[i]) || wl->scale[i] == 0.0f) {
            st = qk_error(QK_ERR_ARG, "lower: %s '%s': requantization scale s_x * s_w / s_y = %g * %g / %g is not a "
                          "finite nonzero float", n->op_type, n->name, (double)sx, (double)sw, (double)sy);
            break;
        }
        if (wl->mode == QK_RQ_GEMMLOWP) {
            int e;
            st = qk_quantize_multiplier(M, &wl->mult[i], &e);
            wl->shift[i] = e;
            if (st != QK_OK)
                st = qk_error_context(st, "lower: %s '%s'", n->op_type, n->name);
        } else if (wl->mode == QK_RQ_SHIFT) {
            int ok, e = qk_lower_pot_exp(M, &ok);
            if (!ok || e < -31 || e > 31)
                st = qk_error(QK_ERR_ARG, "lower: %s '%s': pot multiplier %g is not 2^k with |k| <= 31", n->op_type,
                              n->name, M);
            wl->shift[i] = -e;
        }
    }
    return st;
}

/* The QkConv / QkGemm node (inputs: x codes, w codes, w zero points, bias
 * codes, multipliers, shifts, scales) and its attributes; *out its output. */
static qk_status weighted_emit(lw *L, const wlayer *wl, int *out)
{
    const qk_node *n = wl->n;
    int in[7] = { -1, -1, -1, -1, -1, -1, -1 };
    int64_t dn = wl->nr, Co = wl->Co;
    in[0] = L->lq[wl->x];
    in[1] = qk_lw_get_v(L, snode(L, wl->wn)->in[0]);
    in[2] = qk_lw_new_init(L, n->name, QK_I32, 1, &dn, wl->wz);
    in[3] = wl->b >= 0 ? qk_lw_new_init(L, sval(L, wl->b)->name, QK_I32, 1, &Co, wl->bq) : -1;
    in[4] = qk_lw_new_init(L, n->name, QK_I32, 1, &dn, wl->mult);
    in[5] = qk_lw_new_init(L, n->name, QK_I32, 1, &dn, wl->shift);
    in[6] = qk_lw_new_init(L, n->name, QK_F32, 1, &dn, wl->scale);
    *out = wl->c.q >= 0 ? qk_lw_chain_out(L, &wl->c) : qk_lw_new_act(L, sval(L, n->out[0])->name, 1);
    int ok = in[1] >= 0 && in[2] >= 0 && (wl->b < 0 || in[3] >= 0) && in[4] >= 0 && in[5] >= 0 && in[6] >= 0 &&
             *out >= 0;
    int nd = ok ? qk_lw_add_qnode(L, wl->kind == K_CONV ? "QkConv" : "QkGemm", n->name, 7, in, *out) : -1;
    if (nd < 0)
        return NOMEM(n);
    if (wl->kind == K_CONV)
        TRY(qk_lw_copy_attrs(L, nd, n));
    else
        TRY(qk_node_set_int(L->g, nd, "trans_b", wl->trans_b));
    TRY(qk_node_set_int(L->g, nd, "x_zero_point", L->lqz[wl->x]));
    TRY(qk_node_set_int(L->g, nd, "rq_mode", wl->mode));
    return qk_lw_set_ostage(L, nd, wl->yt, wl->zy, wl->qmin, wl->qmax);
}

/* No QuantizeLinear follows: the int32 accumulator `acc` goes back to float
 * through a DequantizeLinear per output channel. */
static qk_status weighted_float_tail(lw *L, const wlayer *wl, int acc)
{
    const qk_node *n = wl->n;
    int64_t dn = wl->nr;
    int sc = qk_lw_new_init(L, n->name, QK_F32, wl->nr == 1 ? 0 : 1, &dn, wl->scale);
    int fo = qk_lw_new_act(L, sval(L, n->out[0])->name, 0);
    int ins[2] = { acc, sc };
    char *nm = qk_lw_uniq(L, n->name);
    int dq = sc >= 0 && fo >= 0 && nm ? qk_graph_add_node(L->g, "DequantizeLinear", nm, 2, ins, 1, &fo) : -1;
    qk_free(nm);
    if (dq < 0 || qk_node_set_int(L->g, dq, "axis", wl->kind == K_CONV ? 1 : -1) != QK_OK)
        return NOMEM(n);
    L->map[n->out[0]] = fo;
    L->qt[n->out[0]] = QK_F32;
    L->st.float_nodes++;
    return QK_OK;
}

qk_status qk_lw_lower_weighted(lw *L, int ni, int kind, int *handled)
{
    wlayer wl;
    int lowerable, out = -1;
    TRY(weighted_read(L, ni, kind, &wl, &lowerable));
    if (!lowerable)
        return QK_OK;
    wl.nr = wl.wp.n;
    int32_t *buf = qk_calloc((size_t)(4 * wl.nr + wl.Co), sizeof(int32_t));
    if (!buf)
        return NOMEM(wl.n);
    wl.wz = buf, wl.mult = buf + wl.nr, wl.shift = buf + 2 * wl.nr, wl.bq = buf + 3 * wl.nr;
    wl.scale = (float *)(buf + 3 * wl.nr + wl.Co);
    qk_status st = weighted_params(L, &wl);
    if (st == QK_OK)
        st = weighted_emit(L, &wl, &out);
    if (st == QK_OK && wl.c.q < 0)
        st = weighted_float_tail(L, &wl, out);
    qk_free(buf);
    if (st != QK_OK)
        return st;
    if (wl.c.q >= 0)
        qk_lw_chain_done(L, &wl.c);
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
    chain c = { .q = -1, .relu = -1, .pool = -1, .flat = -1 };
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

int qk_lower_is_shape_op(const char *t)
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
