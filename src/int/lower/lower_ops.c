/* The integer operators of a lowered QDQ graph (domain "ai.qkit", see
 * lower_internal.h): int8/uint8 convolution and GEMM with int32 bias and a
 * per-channel output stage (qk_i8conv / qk_i8gemm, so every ISA kernel and
 * the reference give the same codes), quantized Add, pooling, Concat and
 * code-to-code requantization (QkPool, QkConcat, QkRequant: lower_ops_pool.c).
 * Forward only; weights are packed once at plan. QkConv reads / writes NHWC
 * codes when the runner's layout pass says so (attributes x_nhwc, y_nhwc). */
#include "lower_ops.h"
#include "qkit/ops.h"
#include "../../graph/window.h"

#include <math.h>
#include <string.h>

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
        return qk_clamp_i32(q, qmin, qmax);
    switch (arith) {
    case QK_ARITH_GEMMLOWP:
        return qk_requant_float_rna(q, si, zi, so, zo, qmin, qmax);
    case QK_ARITH_POT: {
        int ok1, ok2;
        int ei = qk_lower_pot_exp(si, &ok1), eo = qk_lower_pot_exp(so, &ok2);
        if (ok1 && ok2 && eo - ei >= -31 && eo - ei <= 31)
            return qk_clamp_i32((int64_t)qk_shift_round(q - zi, eo - ei) + zo, qmin, qmax);
        break; /* checked at lowering; float as a fallback */
    }
    default:
        break;
    }
    float v = ((float)(q - zi) * si) / so;
    double r = (double)nearbyintf(v) + zo; /* saturated below, +-inf included */
    return r != r ? qk_clamp_i32(zo, qmin, qmax) : r < qmin ? qmin : r > qmax ? qmax : (int32_t)r;
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
    int x_nhwc, y_nhwc; /* QkConv layouts (lower_internal.h) */
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
    s->x_nhwc = (int)qk_node_int(n, "x_nhwc", 0);
    s->y_nhwc = (int)qk_node_int(n, "y_nhwc", 0);
    int64_t sp[2] = { x->dims[s->x_nhwc ? 1 : 2], x->dims[s->x_nhwc ? 2 : 3] };
    s->C = x->dims[s->x_nhwc ? 3 : 1];
    s->M = w->dims[0];
    if (s->C != w->dims[1] * s->group || s->M % s->group)
        return qk_error(QK_ERR_SHAPE, "%s '%s': x %s, w %s and group %lld disagree", n->op_type, n->name,
                        qk_shape_str(x, b1, sizeof b1), qk_shape_str(w, b2, sizeof b2), (long long)s->group);
    qk_status st = qk_win_resolve(&s->a, n->op_type, 2, sp, w->dims + 2, &s->w);
    if (st != QK_OK)
        return st;
    s->N = x->dims[0];
    s->H = s->w.in[1];
    s->W = s->w.in[2];
    int64_t d[4] = { s->N, s->M, s->w.out[1], s->w.out[2] };
    if (s->y_nhwc)
        d[1] = s->w.out[1], d[2] = s->w.out[2], d[3] = s->M;
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
    d->kernel = g->opts.reference ? 0 : -1;
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
    d->kernel = g->opts.reference ? 0 : -1;
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
        if ((s->x_nhwc && !qk_i8conv_nhwc_ok(s->conv, 1)) || (s->y_nhwc && !qk_i8conv_nhwc_ok(s->conv, 0)))
            return qk_error(QK_ERR_ARG, "%s '%s': x_nhwc %d / y_nhwc %d: NHWC needs group 1 (input: >= 8 or 1 "
                            "channels) or depthwise with multiplier 1 (both NHWC)", n->op_type, n->name, s->x_nhwc,
                            s->y_nhwc);
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
        if (g->opts.reference) {
            qk_i8gemm_desc d;
            st = qlin_gemm_desc(g, n, &d);
            if (st == QK_OK)
                st = qk_i8gemm_ref(&d, rows, xt->data, s->K, yt->data, s->M, 1);
        } else {
            st = qk_i8gemm_run(s->gm, rows, xt->data, s->K, yt->data, s->M, 1, x->pool, x->ws, x->ws_stride);
        }
    } else if (g->opts.reference && !s->x_nhwc && !s->y_nhwc) {
        qk_i8conv_desc d;
        st = qlin_conv_desc(g, n, &d);
        if (st == QK_OK)
            st = qk_i8conv_ref(&d, xt->dims[0], s->H, s->W, xt->data, yt->data);
    } else {
        /* (NHWC in reference mode: the kernel planned then, bit-exact with the reference anyway) */
        st = qk_i8conv_run_layout(s->conv, xt->dims[0], s->H, s->W, xt->data, s->x_nhwc, yt->data, s->y_nhwc,
                                  x->pool, x->ws, x->ws_stride);
    }
    return st == QK_OK ? QK_OK : qk_error_context(st, "%s '%s'", n->op_type, n->name);
}

const qk_op qk_op_qkconv = { .type = "QkConv", .init = qlin_init, .infer = qlin_infer, .reshape = qlin_reshape,
                             .forward = qlin_forward, .destroy = qlin_destroy, .domain = QK_LOWER_DOMAIN };
const qk_op qk_op_qkgemm = { .type = "QkGemm", .init = qlin_init, .infer = qlin_infer, .reshape = qlin_reshape,
                             .forward = qlin_forward, .destroy = qlin_destroy, .domain = QK_LOWER_DOMAIN };

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
        return qk_clamp_i32((int64_t)qk_shift_round((int32_t)acc, s->fy - lo) + s->o.zp, s->o.qmin, s->o.qmax);
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
    int vec; /* 2: the AVX-512 bodies (qk_qadd__avx512.c), 1: the AVX2 FP32 body, then the loops */
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
        if (j->vec && (j->ta == QK_U8 || j->ta == QK_I8) && (j->tb == QK_U8 || j->tb == QK_I8) &&
            (s->o.out == QK_U8 || s->o.out == QK_I8)) {
            if (j->vec == 2) {
                qk_qadd8__avx512(a, ua, b, ub, y, uy, i0, i1, ra, za, rb, zb, lo, hi, zp);
                return;
            }
            i0 = qk_qadd8__avx2(a, ua, b, ub, y, i0, i1, ra, za, rb, zb, lo, hi, zp); /* then the loops below */
        }
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
    if (s->arith == QK_ARITH_GEMMLOWP && j->vec == 2 && (j->ta == QK_U8 || j->ta == QK_I8) &&
        (j->tb == QK_U8 || j->tb == QK_I8) && (s->o.out == QK_U8 || s->o.out == QK_I8) && s->p.m1 >= 0 &&
        s->p.m2 >= 0 && s->p.mo >= 0) {
        qk_qadd8_gemmlowp__avx512(&s->p, a, j->ta == QK_U8, b, j->tb == QK_U8, y, i0, i1);
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
    qadd_job j = { s, a->data, b->data, y->data, a->dtype, b->dtype, qk_tensor_numel(a),
                   x->g->opts.reference ? 0 : qk_cpu_isa() >= QK_ISA_AVX512 ? 2 : qk_cpu_isa() >= QK_ISA_AVX2 };
    qk_pool_run(x->pool, (j.n + EW_GRAIN - 1) / EW_GRAIN, qadd_task, &j);
    return QK_OK;
}

const qk_op qk_op_qkadd = { .type = "QkAdd", .init = qadd_init, .infer = qadd_infer, .forward = qadd_forward,
                            .destroy = plain_destroy, .domain = QK_LOWER_DOMAIN };
