/* The integer operators of a lowered QDQ graph (domain "ai.qkit", see
 * lower_internal.h): int8/uint8 convolution and GEMM with int32 bias and a
 * per-channel output stage (qk_i8conv / qk_i8gemm, so every ISA kernel and
 * the reference give the same codes), quantized Add, pooling, Concat and
 * code-to-code requantization. Forward only; weights are packed once at
 * plan. Element-wise ops are serial loops (cheap beside the convolutions). */
#include "lower_internal.h"
#include "qkit/ops.h"
#include "../ops/window.h"

#include <math.h>
#include <string.h>

static int is_q8(qk_dtype t) { return t == QK_U8 || t == QK_I8; }

static int32_t ld(qk_dtype t, const void *p, int64_t i)
{
    switch ((int)t) {
    case QK_U8: return ((const uint8_t *)p)[i];
    case QK_I8: return ((const int8_t *)p)[i];
    default: return ((const int32_t *)p)[i];
    }
}

static void st8(qk_dtype t, void *p, int64_t i, int32_t v)
{
    if (t == QK_U8)
        ((uint8_t *)p)[i] = (uint8_t)v;
    else
        ((int8_t *)p)[i] = (int8_t)v;
}

static int32_t clampi(int64_t v, int32_t lo, int32_t hi) { return v < lo ? lo : v > hi ? hi : (int32_t)v; }

int qk_lower_pot_exp(double s, int *ok)
{
    int e;
    double m = frexp(s, &e);
    if (!(s > 0) || !isfinite(s) || m != 0.5) {
        *ok = 0;
        return 0;
    }
    *ok = 1;
    return e - 1;
}

int32_t qk_lower_requant_code(qk_arith arith, int32_t q, float si, int32_t zi, float so, int32_t zo, int32_t qmin,
                              int32_t qmax)
{
    if (si == so && zi == zo)
        return clampi(q, qmin, qmax);
    switch (arith) {
    case QK_ARITH_GEMMLOWP:
        return qk_requant_float_rna(q, si, zi, so, zo, qmin, qmax);
    case QK_ARITH_POT: {
        int ok1, ok2;
        int ei = qk_lower_pot_exp(si, &ok1), eo = qk_lower_pot_exp(so, &ok2);
        if (ok1 && ok2 && eo - ei >= -31 && eo - ei <= 31)
            return clampi((int64_t)qk_shift_round(q - zi, eo - ei) + zo, qmin, qmax);
        break; /* checked at lowering; float as a fallback */
    }
    default:
        break;
    }
    float v = ((float)(q - zi) * si) / so;
    return clampi((int64_t)nearbyintf(v) + zo, qmin, qmax);
}

/* Output-stage attributes shared by the ops. */
typedef struct ostage {
    qk_dtype out;
    int32_t zp, qmin, qmax;
} ostage;

static qk_status ostage_read(const qk_node *n, ostage *o)
{
    o->out = (qk_dtype)qk_node_int(n, "out_type", QK_U8);
    o->zp = (int32_t)qk_node_int(n, "y_zero_point", 0);
    int32_t lo, hi;
    qk_int_range(o->out, &lo, &hi);
    o->qmin = (int32_t)qk_node_int(n, "qmin", lo);
    o->qmax = (int32_t)qk_node_int(n, "qmax", hi);
    if (!is_q8(o->out) && o->out != QK_I32)
        return qk_error(QK_ERR_ARG, "%s '%s': out_type %d is not uint8, int8 or int32", n->op_type, n->name,
                        (int)o->out);
    if (o->qmin < lo || o->qmax > hi || o->qmin > o->qmax || o->zp < lo || o->zp > hi)
        return qk_error(QK_ERR_ARG, "%s '%s': zero point %d / clamp [%d, %d] outside %s's range", n->op_type,
                        n->name, o->zp, o->qmin, o->qmax, qk_dtype_name(o->out));
    return QK_OK;
}

static qk_status need_init(qk_graph *g, const qk_node *n, int i, qk_dtype dt, const char *what)
{
    const qk_value *v = qk_in(g, n, i);
    if (!v || (v->kind != QK_VALUE_PARAM && v->kind != QK_VALUE_CONST) || v->t.dtype != dt || !v->t.data)
        return qk_error(QK_ERR_ARG, "%s '%s': input %d (%s) must be a %s initializer", n->op_type, n->name, i, what,
                        qk_dtype_name(dt));
    return QK_OK;
}

/* ============================================================ QkConv / QkGemm */

typedef struct qlin_state {
    int gemm, trans_b;
    qk_win_attrs a;
    int64_t group;
    qk_window w;
    int64_t N, C, M, H, W; /* conv; gemm: M = output columns, N = rows */
    int64_t K;
    int32_t xz;
    int rq_mode;
    ostage o;
    qk_i8conv *conv;
    qk_i8gemm *gm;
} qlin_state;

static qk_status qlin_init(qk_graph *g, qk_node *n)
{
    (void)g;
    if (n->n_in != 7 || n->n_out != 1 || n->in[0] < 0 || n->in[1] < 0 || n->in[2] < 0 || n->in[4] < 0 ||
        n->in[5] < 0 || n->in[6] < 0)
        return qk_error(QK_ERR_ARG, "%s '%s': needs 7 inputs (x, w, w_zero, bias?, mult, shift, scale), 1 output",
                        n->op_type, n->name);
    qlin_state *s = qk_calloc(1, sizeof *s);
    if (!s)
        return qk_error(QK_ERR_NOMEM, "%s: out of memory", n->op_type);
    n->state = s;
    s->gemm = strcmp(n->op_type, "QkGemm") == 0;
    s->trans_b = (int)qk_node_int(n, "trans_b", 1);
    s->xz = (int32_t)qk_node_int(n, "x_zero_point", 0);
    s->rq_mode = (int)qk_node_int(n, "rq_mode", QK_RQ_FP32);
    qk_status st = ostage_read(n, &s->o);
    if (st != QK_OK)
        return st;
    if ((s->o.out == QK_I32) != (s->rq_mode == QK_RQ_NONE))
        return qk_error(QK_ERR_ARG, "%s '%s': out_type int32 goes with rq_mode NONE only", n->op_type, n->name);
    if (!s->gemm) {
        if ((st = qk_win_parse(n, n->op_type, &s->a)) != QK_OK)
            return st;
        s->group = qk_node_int(n, "group", 1);
        if (s->group < 1 || s->a.ceil_mode)
            return qk_error(QK_ERR_ARG, "%s '%s': invalid group or ceil_mode", n->op_type, n->name);
    }
    return QK_OK;
}

static void qlin_destroy(qk_node *n)
{
    qlin_state *s = n->state;
    if (s) {
        qk_i8conv_destroy(s->conv);
        qk_i8gemm_destroy(s->gm);
    }
    qk_free(s);
    n->state = NULL;
}

static qk_status qlin_infer(qk_graph *g, qk_node *n)
{
    qlin_state *s = n->state;
    const qk_tensor *x = &qk_in(g, n, 0)->t, *w = &qk_in(g, n, 1)->t;
    char b1[96], b2[96];
    if (!is_q8(x->dtype) || !is_q8(w->dtype))
        return qk_error(QK_ERR_UNSUPPORTED, "%s '%s': x %s and w %s must be uint8 or int8", n->op_type, n->name,
                        qk_dtype_name(x->dtype), qk_dtype_name(w->dtype));
    if (s->gemm) {
        if (x->ndim < 2 || w->ndim != 2)
            return qk_error(QK_ERR_SHAPE, "%s '%s': x %s must have rank >= 2 and w %s rank 2", n->op_type, n->name,
                            qk_shape_str(x, b1, sizeof b1), qk_shape_str(w, b2, sizeof b2));
        s->K = x->dims[x->ndim - 1];
        int64_t wk = s->trans_b ? w->dims[1] : w->dims[0];
        s->M = s->trans_b ? w->dims[0] : w->dims[1];
        if (wk != s->K)
            return qk_error(QK_ERR_SHAPE, "%s '%s': x %s and w %s disagree on K", n->op_type, n->name,
                            qk_shape_str(x, b1, sizeof b1), qk_shape_str(w, b2, sizeof b2));
        s->N = qk_tensor_numel(x) / s->K;
        int64_t d[QK_MAX_DIMS];
        memcpy(d, x->dims, sizeof d);
        d[x->ndim - 1] = s->M;
        qk_tensor_set_shape(&qk_out(g, n, 0)->t, s->o.out, x->ndim, d);
        return QK_OK;
    }
    if (x->ndim != 4 || w->ndim != 4)
        return qk_error(QK_ERR_SHAPE, "%s '%s': x %s and w %s must be 2-D convolutions (rank 4)", n->op_type, n->name,
                        qk_shape_str(x, b1, sizeof b1), qk_shape_str(w, b2, sizeof b2));
    s->C = x->dims[1];
    s->M = w->dims[0];
    if (s->C != w->dims[1] * s->group || s->M % s->group)
        return qk_error(QK_ERR_SHAPE, "%s '%s': x %s, w %s and group %lld disagree", n->op_type, n->name,
                        qk_shape_str(x, b1, sizeof b1), qk_shape_str(w, b2, sizeof b2), (long long)s->group);
    qk_status st = qk_win_resolve(&s->a, n->op_type, 2, x->dims + 2, w->dims + 2, &s->w);
    if (st != QK_OK)
        return st;
    s->N = x->dims[0];
    s->H = s->w.in[1];
    s->W = s->w.in[2];
    int64_t d[4] = { s->N, s->M, s->w.out[1], s->w.out[2] };
    qk_tensor_set_shape(&qk_out(g, n, 0)->t, s->o.out, 4, d);
    return QK_OK;
}

/* Requant descriptor from the initializer inputs (validated). */
static qk_status qlin_rq(qk_graph *g, qk_node *n, qk_requant *rq, int *nwz, const int32_t **wz, const int32_t **bias)
{
    qlin_state *s = n->state;
    qk_status st;
    if ((st = need_init(g, n, 2, QK_I32, "w_zero")) != QK_OK || (st = need_init(g, n, 4, QK_I32, "mult")) != QK_OK ||
        (st = need_init(g, n, 5, QK_I32, "shift")) != QK_OK || (st = need_init(g, n, 6, QK_F32, "scale")) != QK_OK ||
        (st = need_init(g, n, 1, qk_in(g, n, 1)->t.dtype, "w")) != QK_OK)
        return st;
    int64_t nz = qk_tensor_numel(&qk_in(g, n, 2)->t), nr = qk_tensor_numel(&qk_in(g, n, 4)->t);
    if ((nz != 1 && nz != s->M) || (nr != 1 && nr != s->M) || qk_tensor_numel(&qk_in(g, n, 5)->t) != nr ||
        qk_tensor_numel(&qk_in(g, n, 6)->t) != nr)
        return qk_error(QK_ERR_SHAPE, "%s '%s': w_zero/mult/shift/scale need 1 or %lld entries each", n->op_type,
                        n->name, (long long)s->M);
    const qk_value *bv = qk_in(g, n, 3);
    if (bv && (bv->t.dtype != QK_I32 || qk_tensor_numel(&bv->t) != s->M || !bv->t.data))
        return qk_error(QK_ERR_SHAPE, "%s '%s': bias must be an int32 initializer of %lld entries", n->op_type,
                        n->name, (long long)s->M);
    memset(rq, 0, sizeof *rq);
    rq->mode = (qk_rq_mode)s->rq_mode;
    rq->n = (int)nr;
    rq->mult = qk_in(g, n, 4)->t.data;
    rq->shift = qk_in(g, n, 5)->t.data;
    rq->scale = qk_in(g, n, 6)->t.data;
    rq->zero_point = s->o.zp;
    rq->qmin = s->o.qmin;
    rq->qmax = s->o.qmax;
    *nwz = (int)nz;
    *wz = qk_in(g, n, 2)->t.data;
    *bias = bv ? bv->t.data : NULL;
    return QK_OK;
}

static qk_status qlin_conv_desc(qk_graph *g, qk_node *n, qk_i8conv_desc *d)
{
    qlin_state *s = n->state;
    memset(d, 0, sizeof *d);
    d->x_type = qk_in(g, n, 0)->t.dtype;
    d->w_type = qk_in(g, n, 1)->t.dtype;
    d->out_type = s->o.out;
    d->C = s->C, d->Co = s->M, d->groups = s->group;
    d->kh = s->w.k[1], d->kw = s->w.k[2];
    d->stride_h = s->w.s[1], d->stride_w = s->w.s[2], d->dil_h = s->w.d[1], d->dil_w = s->w.d[2];
    d->pad_t = s->w.pb[1], d->pad_l = s->w.pb[2], d->pad_b = s->w.pe[1], d->pad_r = s->w.pe[2];
    d->w = qk_in(g, n, 1)->t.data;
    d->x_zero = s->xz;
    d->kernel = qk_ops_reference() ? 0 : -1;
    return qlin_rq(g, n, &d->rq, &d->nw_zero, &d->w_zero, &d->bias);
}

static qk_status qlin_gemm_desc(qk_graph *g, qk_node *n, qk_i8gemm_desc *d)
{
    qlin_state *s = n->state;
    memset(d, 0, sizeof *d);
    d->a_type = qk_in(g, n, 0)->t.dtype;
    d->b_type = qk_in(g, n, 1)->t.dtype;
    d->K = s->K;
    d->N = s->M;
    d->B = qk_in(g, n, 1)->t.data;
    d->b_trans = s->trans_b;
    d->ldb = s->trans_b ? s->K : s->M;
    d->a_zero = s->xz;
    d->out_type = s->o.out;
    d->kernel = qk_ops_reference() ? 0 : -1;
    return qlin_rq(g, n, &d->rq, &d->nb_zero, &d->b_zero, &d->bias);
}

static qk_status qlin_reshape(qk_graph *g, qk_node *n, int training, size_t *ws_bytes)
{
    qlin_state *s = n->state;
    if (training)
        return qk_error(QK_ERR_UNSUPPORTED, "%s '%s': integer operators have no backward", n->op_type, n->name);
    qk_i8conv_destroy(s->conv);
    qk_i8gemm_destroy(s->gm);
    s->conv = NULL;
    s->gm = NULL;
    qk_status st;
    if (s->gemm) {
        qk_i8gemm_desc d;
        if ((st = qlin_gemm_desc(g, n, &d)) != QK_OK)
            return st;
        if ((st = qk_i8gemm_create(&d, &s->gm)) != QK_OK)
            return qk_error_context(st, "%s '%s'", n->op_type, n->name);
        *ws_bytes = qk_i8gemm_ws_bytes(s->gm);
    } else {
        qk_i8conv_desc d;
        if ((st = qlin_conv_desc(g, n, &d)) != QK_OK)
            return st;
        if ((st = qk_i8conv_create(&d, &s->conv)) != QK_OK)
            return qk_error_context(st, "%s '%s'", n->op_type, n->name);
        *ws_bytes = qk_i8conv_ws_bytes(s->conv, s->H, s->W);
    }
    return QK_OK;
}

static qk_status qlin_forward(qk_exec *x, qk_node *n)
{
    qk_graph *g = x->g;
    qlin_state *s = n->state;
    const qk_tensor *xt = &qk_in(g, n, 0)->t;
    qk_tensor *yt = &qk_out(g, n, 0)->t;
    qk_status st;
    if (s->gemm) {
        int64_t rows = qk_tensor_numel(xt) / s->K;
        if (qk_ops_reference()) {
            qk_i8gemm_desc d;
            st = qlin_gemm_desc(g, n, &d);
            if (st == QK_OK)
                st = qk_i8gemm_ref(&d, rows, xt->data, s->K, yt->data, s->M, 1);
        } else {
            st = qk_i8gemm_run(s->gm, rows, xt->data, s->K, yt->data, s->M, 1, x->pool, x->ws, x->ws_stride);
        }
    } else if (qk_ops_reference()) {
        qk_i8conv_desc d;
        st = qlin_conv_desc(g, n, &d);
        if (st == QK_OK)
            st = qk_i8conv_ref(&d, xt->dims[0], s->H, s->W, xt->data, yt->data);
    } else {
        st = qk_i8conv_run(s->conv, xt->dims[0], s->H, s->W, xt->data, yt->data, x->pool, x->ws, x->ws_stride);
    }
    return st == QK_OK ? QK_OK : qk_error_context(st, "%s '%s'", n->op_type, n->name);
}

const qk_op qk_op_qkconv = { .type = "QkConv", .init = qlin_init, .infer = qlin_infer, .reshape = qlin_reshape,
                             .forward = qlin_forward, .destroy = qlin_destroy };
const qk_op qk_op_qkgemm = { .type = "QkGemm", .init = qlin_init, .infer = qlin_infer, .reshape = qlin_reshape,
                             .forward = qlin_forward, .destroy = qlin_destroy };

/* ============================================================ QkAdd */

typedef struct qadd_state {
    qk_arith arith;
    float sa, sb, sy;
    int32_t za, zb;
    ostage o;
    qk_qadd p;        /* GEMMLOWP */
    int fa, fb, fy;   /* POT: log2 of the scales */
    float ra, rb;     /* FP32: sa/sy, sb/sy */
} qadd_state;

static qk_status qadd_init(qk_graph *g, qk_node *n)
{
    (void)g;
    if (n->n_in != 2 || n->n_out != 1 || n->in[0] < 0 || n->in[1] < 0)
        return qk_error(QK_ERR_ARG, "QkAdd '%s': needs inputs (a, b) and one output", n->name);
    qadd_state *s = qk_calloc(1, sizeof *s);
    if (!s)
        return qk_error(QK_ERR_NOMEM, "QkAdd: out of memory");
    n->state = s;
    s->arith = (qk_arith)qk_node_int(n, "arith", QK_ARITH_FP32);
    s->sa = qk_node_float(n, "a_scale", 0), s->sb = qk_node_float(n, "b_scale", 0);
    s->sy = qk_node_float(n, "y_scale", 0);
    s->za = (int32_t)qk_node_int(n, "a_zero_point", 0), s->zb = (int32_t)qk_node_int(n, "b_zero_point", 0);
    qk_status st = ostage_read(n, &s->o);
    if (st != QK_OK)
        return st;
    if (!is_q8(s->o.out))
        return qk_error(QK_ERR_ARG, "QkAdd '%s': out_type must be uint8 or int8", n->name);
    if (!(s->sa > 0) || !(s->sb > 0) || !(s->sy > 0) || !isfinite(s->sa) || !isfinite(s->sb) || !isfinite(s->sy))
        return qk_error(QK_ERR_ARG, "QkAdd '%s': scales (%g, %g, %g) must be finite and > 0", n->name, (double)s->sa,
                        (double)s->sb, (double)s->sy);
    s->ra = s->sa / s->sy;
    s->rb = s->sb / s->sy;
    if (s->arith == QK_ARITH_GEMMLOWP) {
        if ((st = qk_qadd_prepare(s->o.out, s->sa, s->za, s->sb, s->zb, s->sy, s->o.zp, s->o.qmin, s->o.qmax,
                                  &s->p)) != QK_OK)
            return qk_error_context(st, "QkAdd '%s'", n->name);
    } else if (s->arith == QK_ARITH_POT) {
        int ok1, ok2, ok3;
        s->fa = qk_lower_pot_exp(s->sa, &ok1), s->fb = qk_lower_pot_exp(s->sb, &ok2);
        s->fy = qk_lower_pot_exp(s->sy, &ok3);
        if (!ok1 || !ok2 || !ok3)
            return qk_error(QK_ERR_ARG, "QkAdd '%s': arith pot needs power-of-two scales, got (%g, %g, %g)", n->name,
                            (double)s->sa, (double)s->sb, (double)s->sy);
        int lo = s->fa < s->fb ? s->fa : s->fb;
        if (s->fa - lo > 16 || s->fb - lo > 16 || s->fy - lo > 31 || lo - s->fy > 31)
            return qk_error(QK_ERR_ARG, "QkAdd '%s': power-of-two scales too far apart", n->name);
    }
    return QK_OK;
}

static void plain_destroy(qk_node *n)
{
    qk_free(n->state);
    n->state = NULL;
}

static qk_status qadd_infer(qk_graph *g, qk_node *n)
{
    const qadd_state *s = n->state;
    const qk_tensor *a = &qk_in(g, n, 0)->t, *b = &qk_in(g, n, 1)->t;
    char b1[96], b2[96];
    if (!is_q8(a->dtype) || !is_q8(b->dtype) || !qk_shape_equal(a, b))
        return qk_error(QK_ERR_SHAPE, "QkAdd '%s': a %s %s and b %s %s must be uint8/int8 of the same shape",
                        n->name, qk_dtype_name(a->dtype), qk_shape_str(a, b1, sizeof b1), qk_dtype_name(b->dtype),
                        qk_shape_str(b, b2, sizeof b2));
    if (s->arith == QK_ARITH_GEMMLOWP && (a->dtype != s->o.out || b->dtype != s->o.out))
        return qk_error(QK_ERR_ARG, "QkAdd '%s': gemmlowp add needs inputs of the output type %s", n->name,
                        qk_dtype_name(s->o.out));
    qk_tensor_set_shape(&qk_out(g, n, 0)->t, s->o.out, a->ndim, a->dims);
    return QK_OK;
}

static int32_t qadd_one(const qadd_state *s, int32_t qa, int32_t qb)
{
    switch (s->arith) {
    case QK_ARITH_GEMMLOWP:
        return qk_qadd_value(&s->p, qa, qb);
    case QK_ARITH_POT: {
        int lo = s->fa < s->fb ? s->fa : s->fb; /* common exponent: the finer grid */
        int64_t acc = (int64_t)(qa - s->za) * ((int64_t)1 << (s->fa - lo)) +
                      (int64_t)(qb - s->zb) * ((int64_t)1 << (s->fb - lo));
        return clampi((int64_t)qk_shift_round((int32_t)acc, s->fy - lo) + s->o.zp, s->o.qmin, s->o.qmax);
    }
    default: { /* MLAS QLinearAdd: float ratios, clamp in float, round half to even */
        float v = s->ra * (float)(qa - s->za) + s->rb * (float)(qb - s->zb);
        float lo = (float)(s->o.qmin - s->o.zp), hi = (float)(s->o.qmax - s->o.zp);
        v = v < lo ? lo : v > hi ? hi : v;
        return (int32_t)nearbyintf(v) + s->o.zp;
    }
    }
}

/* Round half to even of |v| < 2^22 in the default rounding mode: equal to
 * nearbyintf there, and a plain add the compiler can vectorize. */
static inline float rne_small(float v) { return (v + 12582912.0f) - 12582912.0f; }

/* FP32 (MLAS) add of elements [i0, i1): the same float operations as
 * qadd_one in the same order (no contraction: ISO C mode), written as fixed
 * 16-wide blocks so -O2 vectorizes them. The clamp bounds |v| by 510, so
 * rne_small is exact. */
#define QADD_F32_LOOP(TA, TB, TY)                                                                               \
    do {                                                                                                        \
        const TA *pa = a;                                                                                       \
        const TB *pb = b;                                                                                       \
        TY *py = y;                                                                                             \
        int64_t i = i0;                                                                                         \
        for (; i + 16 <= i1; i += 16) {                                                                         \
            float v[16];                                                                                        \
            for (int k = 0; k < 16; k++) {                                                                      \
                float t = ra * (float)((int32_t)pa[i + k] - za) + rb * (float)((int32_t)pb[i + k] - zb);                 \
                t = t < lo ? lo : t;                                                                            \
                t = t > hi ? hi : t;                                                                            \
                v[k] = rne_small(t);                                                                            \
            }                                                                                                   \
            for (int k = 0; k < 16; k++)                                                                        \
                py[i + k] = (TY)((int32_t)v[k] + zp);                                                           \
        }                                                                                                       \
        for (; i < i1; i++) {                                                                                   \
            float t = ra * (float)((int32_t)pa[i] - za) + rb * (float)((int32_t)pb[i] - zb);                        \
            t = t < lo ? lo : t;                                                                                \
            t = t > hi ? hi : t;                                                                                \
            py[i] = (TY)((int32_t)rne_small(t) + zp);                                                           \
        }                                                                                                       \
    } while (0)

typedef struct qadd_job {
    const qadd_state *s;
    const void *a, *b;
    void *y;
    qk_dtype ta, tb;
    int64_t n;
} qadd_job;

/* Elements per task: a fixed split, so any thread count gives the same codes
 * (each element is computed alone anyway). */
#define EW_GRAIN 16384

static void qadd_task(void *ctx, int64_t t, int w)
{
    (void)w;
    const qadd_job *j = ctx;
    const qadd_state *s = j->s;
    int64_t i0 = t * EW_GRAIN, i1 = i0 + EW_GRAIN < j->n ? i0 + EW_GRAIN : j->n;
    const void *a = j->a, *b = j->b;
    void *y = j->y;
    if (s->arith == QK_ARITH_FP32) {
        float lo = (float)(s->o.qmin - s->o.zp), hi = (float)(s->o.qmax - s->o.zp);
        int32_t zp = s->o.zp, za = s->za, zb = s->zb; /* locals: the byte stores may alias s */
        float ra = s->ra, rb = s->rb;
        int ua = j->ta == QK_U8, ub = j->tb == QK_U8, uy = s->o.out == QK_U8;
        if (ua && ub && uy)
            QADD_F32_LOOP(uint8_t, uint8_t, uint8_t);
        else if (!ua && !ub && !uy)
            QADD_F32_LOOP(int8_t, int8_t, int8_t);
        else if (ua && ub)
            QADD_F32_LOOP(uint8_t, uint8_t, int8_t);
        else if (!ua && !ub)
            QADD_F32_LOOP(int8_t, int8_t, uint8_t);
        else
            for (int64_t i = i0; i < i1; i++)
                st8(s->o.out, y, i, qadd_one(s, ld(j->ta, a, i), ld(j->tb, b, i)));
        return;
    }
    for (int64_t i = i0; i < i1; i++)
        st8(s->o.out, y, i, qadd_one(s, ld(j->ta, a, i), ld(j->tb, b, i)));
}

static qk_status qadd_forward(qk_exec *x, qk_node *n)
{
    const qadd_state *s = n->state;
    const qk_tensor *a = &qk_in(x->g, n, 0)->t, *b = &qk_in(x->g, n, 1)->t;
    qk_tensor *y = &qk_out(x->g, n, 0)->t;
    qadd_job j = { s, a->data, b->data, y->data, a->dtype, b->dtype, qk_tensor_numel(a) };
    qk_pool_run(x->pool, (j.n + EW_GRAIN - 1) / EW_GRAIN, qadd_task, &j);
    return QK_OK;
}

const qk_op qk_op_qkadd = { .type = "QkAdd", .init = qadd_init, .infer = qadd_infer, .forward = qadd_forward,
                            .destroy = plain_destroy };

/* ============================================================ QkPool */

enum { POOL_MAX = 0, POOL_AVG = 1, POOL_GAP = 2 };

typedef struct qpool_state {
    int kind;
    qk_arith arith;
    qk_win_attrs a;
    qk_window w;
    qk_pool2d p;
    int count_include_pad;
    float sx, sy;
    int32_t zx;
    ostage o;
    int64_t N, C, H, W, OH, OW;
} qpool_state;

static qk_status qpool_init(qk_graph *g, qk_node *n)
{
    (void)g;
    if (n->n_in != 1 || n->n_out != 1 || n->in[0] < 0)
        return qk_error(QK_ERR_ARG, "QkPool '%s': needs one input and one output", n->name);
    qpool_state *s = qk_calloc(1, sizeof *s);
    if (!s)
        return qk_error(QK_ERR_NOMEM, "QkPool: out of memory");
    n->state = s;
    s->kind = (int)qk_node_int(n, "kind", POOL_MAX);
    s->arith = (qk_arith)qk_node_int(n, "arith", QK_ARITH_FP32);
    s->count_include_pad = (int)qk_node_int(n, "count_include_pad", 0);
    s->sx = qk_node_float(n, "x_scale", 1), s->sy = qk_node_float(n, "y_scale", 1);
    s->zx = (int32_t)qk_node_int(n, "x_zero_point", 0);
    qk_status st = ostage_read(n, &s->o);
    if (st != QK_OK)
        return st;
    if (s->kind < POOL_MAX || s->kind > POOL_GAP || !is_q8(s->o.out))
        return qk_error(QK_ERR_ARG, "QkPool '%s': bad kind %d or out_type", n->name, s->kind);
    if (!(s->sx > 0) || !(s->sy > 0) || !isfinite(s->sx) || !isfinite(s->sy))
        return qk_error(QK_ERR_ARG, "QkPool '%s': scales (%g, %g) must be finite and > 0", n->name, (double)s->sx,
                        (double)s->sy);
    if (s->kind != POOL_GAP && (st = qk_win_parse(n, "QkPool", &s->a)) != QK_OK)
        return st;
    if (s->kind == POOL_AVG && s->a.ceil_mode && s->count_include_pad)
        return qk_error(QK_ERR_UNSUPPORTED, "QkPool '%s': ceil_mode with count_include_pad", n->name);
    return QK_OK;
}

static qk_status qpool_infer(qk_graph *g, qk_node *n)
{
    qpool_state *s = n->state;
    const qk_tensor *x = &qk_in(g, n, 0)->t;
    char b1[96];
    if (!is_q8(x->dtype) || x->ndim != 4)
        return qk_error(QK_ERR_SHAPE, "QkPool '%s': x %s %s must be uint8/int8 NCHW", n->name,
                        qk_dtype_name(x->dtype), qk_shape_str(x, b1, sizeof b1));
    if (s->kind == POOL_MAX && x->dtype != s->o.out)
        return qk_error(QK_ERR_ARG, "QkPool '%s': max pool keeps the input type", n->name);
    s->N = x->dims[0], s->C = x->dims[1], s->H = x->dims[2], s->W = x->dims[3];
    if (s->kind == POOL_GAP) {
        s->OH = s->OW = 1;
    } else {
        if (s->a.nk != 2)
            return qk_error(QK_ERR_ARG, "QkPool '%s': kernel_shape must have 2 entries", n->name);
        qk_status st = qk_win_resolve(&s->a, "QkPool", 2, x->dims + 2, s->a.k, &s->w);
        if (st != QK_OK)
            return st;
        s->OH = s->w.out[1], s->OW = s->w.out[2];
        qk_pool2d p = { s->w.k[1], s->w.k[2], s->w.s[1], s->w.s[2], s->w.pb[1], s->w.pb[2], s->w.pe[1],
                        s->w.pe[2], s->w.d[1], s->w.d[2], s->count_include_pad };
        /* ceil_mode: widen the end pads so the floor formula gives OH/OW
         * (the extra cells are padding: ignored by max, not counted by avg) */
        int64_t need_h = (s->OH - 1) * p.stride_h + (p.kh - 1) * p.dil_h + 1 - s->H - p.pad_t;
        int64_t need_w = (s->OW - 1) * p.stride_w + (p.kw - 1) * p.dil_w + 1 - s->W - p.pad_l;
        p.pad_b = need_h > p.pad_b ? need_h : p.pad_b;
        p.pad_r = need_w > p.pad_r ? need_w : p.pad_r;
        s->p = p;
    }
    int64_t d[4] = { s->N, s->C, s->OH, s->OW };
    qk_tensor_set_shape(&qk_out(g, n, 0)->t, s->o.out, 4, d);
    return QK_OK;
}

/* Mean of a window: sumq = sum of codes over n cells. */
static int32_t qpool_avg(const qpool_state *s, int32_t sumq, int32_t n)
{
    if (s->sx == s->sy && s->zx == s->o.zp && s->arith != QK_ARITH_FP32) /* TFLite: codes averaged, RNA */
        return clampi(qk_avg_round(sumq, n), s->o.qmin, s->o.qmax);
    int32_t acc = sumq - n * s->zx;
    double M = (double)s->sx / ((double)s->sy * n);
    if (s->arith == QK_ARITH_FP32) { /* MLAS: float scale, round half to even */
        float sc = s->sx / (s->sy * (float)n);
        return qk_requant_value(QK_RQ_FP32, acc, 0, 0, sc, s->o.zp, s->o.qmin, s->o.qmax);
    }
    int ok, e = qk_lower_pot_exp(M, &ok);
    if (s->arith == QK_ARITH_POT && ok && e >= -31 && e <= 31)
        return qk_requant_value(QK_RQ_SHIFT, acc, 0, -e, 0, s->o.zp, s->o.qmin, s->o.qmax);
    int32_t q;
    if (qk_quantize_multiplier(M, &q, &e) != QK_OK) /* M < 2^30 whenever n >= 1 and scales are sane */
        return s->o.zp;
    return qk_requant_value(QK_RQ_GEMMLOWP, acc, q, e, 0, s->o.zp, s->o.qmin, s->o.qmax);
}

static qk_status qpool_forward(qk_exec *x, qk_node *n)
{
    const qpool_state *s = n->state;
    const qk_tensor *xt = &qk_in(x->g, n, 0)->t;
    qk_tensor *yt = &qk_out(x->g, n, 0)->t;
    qk_dtype t = xt->dtype;
    int64_t N = xt->dims[0];
    if (s->kind == POOL_MAX)
        return qk_i8_maxpool(t, &s->p, N, s->C, s->H, s->W, xt->data, yt->data);
    const qk_pool2d *p = &s->p;
    for (int64_t nc = 0; nc < N * s->C; nc++) {
        int64_t xo = nc * s->H * s->W, yo = nc * s->OH * s->OW;
        if (s->kind == POOL_GAP) {
            int32_t acc = 0;
            for (int64_t i = 0; i < s->H * s->W; i++)
                acc += ld(t, xt->data, xo + i);
            st8(s->o.out, yt->data, nc, qpool_avg(s, acc, (int32_t)(s->H * s->W)));
            continue;
        }
        for (int64_t oh = 0; oh < s->OH; oh++)
            for (int64_t ow = 0; ow < s->OW; ow++) {
                int32_t acc = 0, cnt = 0;
                for (int64_t i = 0; i < p->kh; i++) {
                    int64_t ih = oh * p->stride_h - p->pad_t + i * p->dil_h;
                    for (int64_t j = 0; j < p->kw; j++) {
                        int64_t iw = ow * p->stride_w - p->pad_l + j * p->dil_w;
                        if (ih >= 0 && ih < s->H && iw >= 0 && iw < s->W) {
                            acc += ld(t, xt->data, xo + ih * s->W + iw);
                            cnt++;
                        } else if (p->count_include_pad) {
                            acc += s->zx; /* padding is real 0 */
                            cnt++;
                        }
                    }
                }
                st8(s->o.out, yt->data, yo + oh * s->OW + ow, cnt ? qpool_avg(s, acc, cnt) : s->o.zp);
            }
    }
    return QK_OK;
}

const qk_op qk_op_qkpool = { .type = "QkPool", .init = qpool_init, .infer = qpool_infer, .forward = qpool_forward,
                             .destroy = plain_destroy };

/* ============================================================ QkConcat / QkRequant */

#define CAT_MAX 64

typedef struct qcat_state {
    int64_t axis_attr;
    int axis;
    qk_arith arith;
    int nin;
    float sx[CAT_MAX];
    int32_t zx[CAT_MAX];
    float sy;
    ostage o;
    int32_t lut[CAT_MAX][256]; /* by (uint8_t)code */
    qk_dtype it[CAT_MAX];
    int64_t outer, inner[CAT_MAX], out_row;
} qcat_state;

static qk_status qcat_init(qk_graph *g, qk_node *n)
{
    (void)g;
    int req = strcmp(n->op_type, "QkRequant") == 0;
    if (n->n_in < 1 || n->n_in > CAT_MAX || (req && n->n_in != 1) || n->n_out != 1)
        return qk_error(QK_ERR_ARG, "%s '%s': %d inputs, %d outputs", n->op_type, n->name, n->n_in, n->n_out);
    qcat_state *s = qk_calloc(1, sizeof *s);
    if (!s)
        return qk_error(QK_ERR_NOMEM, "%s: out of memory", n->op_type);
    n->state = s;
    s->nin = n->n_in;
    s->axis_attr = qk_node_int(n, "axis", 1);
    s->arith = (qk_arith)qk_node_int(n, "arith", QK_ARITH_FP32);
    s->sy = qk_node_float(n, "y_scale", 0);
    qk_status st = ostage_read(n, &s->o);
    if (st != QK_OK)
        return st;
    const qk_attr *as = qk_node_attr(n, "x_scales"), *az = qk_node_attr(n, "x_zero_points");
    if (!as || !az || as->n != s->nin || az->n != s->nin || !is_q8(s->o.out))
        return qk_error(QK_ERR_ARG, "%s '%s': x_scales/x_zero_points need %d entries", n->op_type, n->name, s->nin);
    if (!(s->sy > 0) || !isfinite(s->sy))
        return qk_error(QK_ERR_ARG, "%s '%s': y_scale %g must be finite and > 0", n->op_type, n->name, (double)s->sy);
    for (int i = 0; i < s->nin; i++) {
        s->sx[i] = as->floats[i];
        s->zx[i] = (int32_t)az->ints[i];
        if (!(s->sx[i] > 0) || !isfinite(s->sx[i]))
            return qk_error(QK_ERR_ARG, "%s '%s': x_scales[%d] = %g must be finite and > 0", n->op_type, n->name, i,
                            (double)s->sx[i]);
    }
    return QK_OK;
}

static qk_status qcat_infer(qk_graph *g, qk_node *n)
{
    qcat_state *s = n->state;
    const qk_tensor *a = &qk_in(g, n, 0)->t;
    char b1[96], b2[96];
    int64_t ax = s->axis_attr < 0 ? s->axis_attr + a->ndim : s->axis_attr;
    if (ax < 0 || ax >= (a->ndim ? a->ndim : 1))
        return qk_error(QK_ERR_ARG, "%s '%s': axis %lld out of range", n->op_type, n->name, (long long)s->axis_attr);
    s->axis = (int)ax;
    int64_t d[QK_MAX_DIMS];
    memcpy(d, a->dims, sizeof d);
    d[ax] = 0;
    s->outer = 1;
    for (int i = 0; i < ax; i++)
        s->outer *= a->dims[i];
    s->out_row = 0;
    for (int k = 0; k < s->nin; k++) {
        const qk_value *v = qk_in(g, n, k);
        if (!v)
            return qk_error(QK_ERR_ARG, "%s '%s': input %d missing", n->op_type, n->name, k);
        const qk_tensor *b = &v->t;
        int ok = is_q8(b->dtype) && b->ndim == a->ndim;
        for (int i = 0; ok && i < a->ndim; i++)
            ok = i == ax || b->dims[i] == a->dims[i];
        if (!ok)
            return qk_error(QK_ERR_SHAPE, "%s '%s': input '%s' %s %s does not fit input 0 %s on axis %d", n->op_type,
                            n->name, v->name, qk_dtype_name(b->dtype), qk_shape_str(b, b1, sizeof b1),
                            qk_shape_str(a, b2, sizeof b2), s->axis);
        s->it[k] = b->dtype;
        d[ax] += b->dims[ax];
        s->inner[k] = s->outer ? qk_tensor_numel(b) / (s->outer ? s->outer : 1) : 0;
        s->out_row += s->inner[k];
        for (int c = 0; c < 256; c++) {
            int32_t q = b->dtype == QK_U8 ? c : (int8_t)(uint8_t)c;
            s->lut[k][c] = qk_lower_requant_code(s->arith, q, s->sx[k], s->zx[k], s->sy, s->o.zp, s->o.qmin,
                                                 s->o.qmax);
        }
    }
    qk_tensor_set_shape(&qk_out(g, n, 0)->t, s->o.out, a->ndim, d);
    return QK_OK;
}

static qk_status qcat_forward(qk_exec *x, qk_node *n)
{
    const qcat_state *s = n->state;
    qk_tensor *y = &qk_out(x->g, n, 0)->t;
    int64_t off = 0;
    for (int k = 0; k < s->nin; k++) {
        const uint8_t *src = qk_in(x->g, n, k)->t.data;
        for (int64_t o = 0; o < s->outer; o++)
            for (int64_t i = 0; i < s->inner[k]; i++)
                st8(s->o.out, y->data, o * s->out_row + off + i, s->lut[k][src[o * s->inner[k] + i]]);
        off += s->inner[k];
    }
    return QK_OK;
}

const qk_op qk_op_qkconcat = { .type = "QkConcat", .init = qcat_init, .infer = qcat_infer, .forward = qcat_forward,
                               .destroy = plain_destroy };
const qk_op qk_op_qkrequant = { .type = "QkRequant", .init = qcat_init, .infer = qcat_infer,
                                .forward = qcat_forward, .destroy = plain_destroy };
