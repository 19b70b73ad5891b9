/* ONNX integer operators (opset 10), forward only:
 *   QLinearConv   (x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp[, B]) -> y u8/s8
 *   ConvInteger   (x, w[, x_zp[, w_zp]]) -> y int32
 *   QLinearMatMul (a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp) -> y u8/s8
 *   MatMulInteger (A, B[, a_zp[, b_zp]]) -> y int32
 * Conv: 1-D or 2-D, NCHW, Conv attributes (auto_pad, dilations, group,
 * kernel_shape, pads, strides); weight zero point/scale scalar or per output
 * channel. MatMul: numpy broadcasting of batch dims, 1-D operands; the
 * activation zero point/scale per tensor, the weight's per tensor or per
 * column. A per-row activation zero point is QK_ERR_UNSUPPORTED.
 *
 * Requantization follows ONNX Runtime (MLAS): scale = x_scale * w_scale /
 * y_scale in float32, y = clamp(RNE((float)acc * scale) + y_zp) with
 * QK_RQ_FP32; the graph option onnx_rounding selects a fixed-point scheme instead
 * (multiplier from the same scales in double). The ONNX node tests'
 * expected outputs are matched bit-exactly by every mode (no value lies
 * near a rounding tie), see tests/test_int_requant.c.
 *
 * Weights and quantization parameters that are initializers are packed at
 * plan (reshape); when any is a graph input they are re-packed in forward
 * (no allocation). g->opts.reference runs the plain reference instead. */
#include "../kernels/i8gemm.h"
#include "qkit/ops.h"
#include "../../graph/window.h"

#include <math.h>
#include <string.h>

qk_rq_mode qk_int_onnx_rounding(const qk_graph *g)
{
    qk_rq_mode m = (qk_rq_mode)g->opts.onnx_rounding;
    return m == QK_RQ_NONE ? QK_RQ_FP32 : m;
}

/* ------------------------------------------------------------ helpers */

static int is_const(const qk_value *v) { return !v || v->kind == QK_VALUE_PARAM || v->kind == QK_VALUE_CONST; }
static int is_q8(qk_dtype t) { return t == QK_U8 || t == QK_I8; }

/* Optional zero-point/scale input: numel must be 1 or `per` (0: only 1). */
static qk_status check_param(const qk_node *n, const qk_value *v, const char *what, qk_dtype want, int64_t per,
                             int *count)
{
    *count = 0;
    if (!v)
        return QK_OK;
    char b[96];
    int64_t ne = qk_tensor_numel(&v->t);
    if (v->t.dtype != want)
        return qk_error(QK_ERR_ARG, "%s '%s': %s '%s' is %s, expected %s", n->op_type, n->name, what, v->name,
                        qk_dtype_name(v->t.dtype), qk_dtype_name(want));
    if (v->t.ndim > 1 || (ne != 1 && (per <= 1 || ne != per)))
        return qk_error(per > 1 ? QK_ERR_SHAPE : QK_ERR_UNSUPPORTED,
                        "%s '%s': %s '%s' has shape %s; expected a scalar%s", n->op_type, n->name, what, v->name,
                        qk_shape_str(&v->t, b, sizeof b), per > 1 ? " or one value per output channel/column" : "");
    *count = (int)ne;
    return QK_OK;
}

/* Quantization parameters of one node, read from the current tensors. */
typedef struct qparams {
    int qlinear;
    qk_rq_mode mode;
    int64_t nch;               /* output channels/columns */
    int nwz, nrq;              /* counts (1 or nch; nwz 0 = no weight zero point) */
    int32_t *wz, *mult, *shift;
    float *scale;              /* [nch] each */
} qparams;

static qk_status qparams_alloc(qparams *q, int64_t nch)
{
    q->nch = nch;
    q->wz = qk_calloc((size_t)nch * 4, 4);
    if (!q->wz)
        return qk_error(QK_ERR_NOMEM, "integer op: out of memory");
    q->mult = q->wz + nch;
    q->shift = q->mult + nch;
    q->scale = (float *)(q->shift + nch);
    return QK_OK;
}

/* Fill zero points and the output stage from the current data.
 * in: x_scale, w_scale, y_scale, y_zp (QLinear) and w_zp values. */
static qk_status qparams_read(qparams *q, const qk_node *n, const qk_value *xs, const qk_value *wzv,
                              const qk_value *ws, const qk_value *ys, const qk_value *yz, qk_requant *rq,
                              qk_dtype yt)
{
    for (int i = 0; i < q->nwz; i++)
        q->wz[i] = (int32_t)qk_tensor_int_at(&wzv->t, i);
    memset(rq, 0, sizeof *rq);
    if (!q->qlinear) {
        rq->mode = QK_RQ_NONE;
        rq->n = 1;
        return QK_OK;
    }
    float sx = qk_f32(&xs->t)[0], sy = qk_f32(&ys->t)[0];
    rq->mode = q->mode;
    rq->n = q->nrq;
    rq->zero_point = (int32_t)qk_tensor_int_at(&yz->t, 0);
    qk_int_range(yt, &rq->qmin, &rq->qmax);
    if (!(sx > 0.0f) || !(sy > 0.0f) || !isfinite(sx) || !isfinite(sy))
        return qk_error(QK_ERR_ARG, "%s '%s': input/output scales %g, %g must be finite and > 0", n->op_type,
                        n->name, (double)sx, (double)sy);
    for (int i = 0; i < q->nrq; i++) {
        float sw = qk_f32(&ws->t)[i];
        if (!(sw > 0.0f) || !isfinite(sw))
            return qk_error(QK_ERR_ARG, "%s '%s': weight scale[%d] = %g must be finite and > 0", n->op_type,
                            n->name, i, (double)sw);
        q->scale[i] = sx * sw / sy; /* float32, ONNX Runtime's order */
        double M = (double)sx * (double)sw / (double)sy;
        if (q->mode == QK_RQ_SHIFT) {
            int sh = (int)lround(-log2(M));
            q->shift[i] = sh < -31 ? -31 : sh > 31 ? 31 : sh;
        } else if (q->mode != QK_RQ_FP32) {
            int e;
            qk_status st = qk_quantize_multiplier(M, &q->mult[i], &e);
            if (st != QK_OK)
                return qk_error_context(st, "%s '%s'", n->op_type, n->name);
            q->shift[i] = e;
        }
    }
    rq->mult = q->mult;
    rq->shift = q->shift;
    rq->scale = q->scale;
    return QK_OK;
}

/* ============================================================ conv ops */

typedef struct qconv_state {
    int qlinear;
    int ix, ixs, ixz, iw, iws, iwz, iys, iyz, ib; /* input slots, -1 absent */
    qk_win_attrs a;
    int64_t group;
    qk_window w;
    int64_t N, C, M, H, W;
    qk_dtype yt;
    int dynamic;
    qparams q;
    qk_i8conv *conv;
} qconv_state;

static qk_status qconv_init(qk_graph *g, qk_node *n)
{
    (void)g;
    int ql = strcmp(n->op_type, "QLinearConv") == 0;
    if ((ql ? (n->n_in < 8 || n->n_in > 9) : (n->n_in < 2 || n->n_in > 4)) || n->n_out != 1)
        return qk_error(QK_ERR_ARG, "%s '%s': %d inputs, %d outputs", n->op_type, n->name, n->n_in, n->n_out);
    qconv_state *s = qk_calloc(1, sizeof *s);
    if (!s)
        return qk_error(QK_ERR_NOMEM, "%s: out of memory", n->op_type);
    n->state = s;
    s->qlinear = s->q.qlinear = ql;
    if (ql) {
        s->ix = 0, s->ixs = 1, s->ixz = 2, s->iw = 3, s->iws = 4, s->iwz = 5, s->iys = 6, s->iyz = 7, s->ib = 8;
        for (int i = 0; i < 8; i++)
            if (n->in[i] < 0)
                return qk_error(QK_ERR_ARG, "QLinearConv '%s': input %d is missing", n->name, i);
    } else {
        s->ix = 0, s->iw = 1, s->ixz = 2, s->iwz = 3;
        s->ixs = s->iws = s->iys = s->iyz = s->ib = -1;
        if (n->in[0] < 0 || n->in[1] < 0)
            return qk_error(QK_ERR_ARG, "ConvInteger '%s': x and w are required", n->name);
    }
    qk_status st = qk_win_parse(n, n->op_type, &s->a);
    if (st != QK_OK)
        return st;
    s->group = qk_node_int(n, "group", 1);
    if (s->group < 1 || s->a.ceil_mode)
        return qk_error(QK_ERR_ARG, "%s '%s': invalid group %lld or ceil_mode", n->op_type, n->name,
                        (long long)s->group);
    return QK_OK;
}

static void qconv_destroy(qk_node *n)
{
    qconv_state *s = n->state;
    if (s) {
        qk_i8conv_destroy(s->conv);
        qk_free(s->q.wz);
    }
    qk_free(s);
    n->state = NULL;
}

static const qk_value *slot(qk_graph *g, const qk_node *n, int i) { return i < 0 ? NULL : qk_in(g, n, i); }

static qk_status qconv_infer(qk_graph *g, qk_node *n)
{
    qconv_state *s = n->state;
    const qk_tensor *x = &qk_in(g, n, s->ix)->t, *w = &qk_in(g, n, s->iw)->t;
    char b1[96], b2[96];
    if (!is_q8(x->dtype) || !is_q8(w->dtype))
        return qk_error(QK_ERR_UNSUPPORTED, "%s '%s': x %s and w %s must be uint8 or int8", n->op_type, n->name,
                        qk_dtype_name(x->dtype), qk_dtype_name(w->dtype));
    if (x->ndim < 3 || x->ndim > 4 || w->ndim != x->ndim)
        return qk_error(x->ndim == 5 ? QK_ERR_UNSUPPORTED : QK_ERR_SHAPE,
                        "%s '%s': x %s and w %s must be 1-D or 2-D convolutions (rank 3 or 4)", n->op_type, n->name,
                        qk_shape_str(x, b1, sizeof b1), qk_shape_str(w, b2, sizeof b2));
    int nsp = x->ndim - 2;
    int64_t C = x->dims[1], M = w->dims[0];
    if (C != w->dims[1] * s->group || M % s->group)
        return qk_error(QK_ERR_SHAPE, "%s '%s': x %s, w %s and group %lld disagree", n->op_type, n->name,
                        qk_shape_str(x, b1, sizeof b1), qk_shape_str(w, b2, sizeof b2), (long long)s->group);
    for (int i = 0; i < s->a.nk && i < nsp; i++)
        if (s->a.k[i] != w->dims[2 + i])
            return qk_error(QK_ERR_SHAPE, "%s '%s': kernel_shape disagrees with w %s", n->op_type, n->name,
                            qk_shape_str(w, b2, sizeof b2));
    qk_status st = qk_win_resolve(&s->a, n->op_type, nsp, x->dims + 2, w->dims + 2, &s->w);
    if (st != QK_OK)
        return st;
    int cnt;
    if ((st = check_param(n, slot(g, n, s->ixz), "x_zero_point", x->dtype, 0, &cnt)) != QK_OK ||
        (st = check_param(n, slot(g, n, s->iwz), "w_zero_point", w->dtype, M, &s->q.nwz)) != QK_OK)
        return st;
    s->yt = QK_I32;
    if (s->qlinear) {
        const qk_value *yz = slot(g, n, s->iyz), *bv = slot(g, n, s->ib);
        s->yt = yz ? yz->t.dtype : QK_U8;
        if (!is_q8(s->yt))
            return qk_error(QK_ERR_ARG, "QLinearConv '%s': y_zero_point must be uint8 or int8", n->name);
        if ((st = check_param(n, slot(g, n, s->ixs), "x_scale", QK_F32, 0, &cnt)) != QK_OK ||
            (st = check_param(n, slot(g, n, s->iws), "w_scale", QK_F32, M, &s->q.nrq)) != QK_OK ||
            (st = check_param(n, slot(g, n, s->iys), "y_scale", QK_F32, 0, &cnt)) != QK_OK ||
            (st = check_param(n, yz, "y_zero_point", s->yt, 0, &cnt)) != QK_OK)
            return st;
        if (bv && (bv->t.dtype != QK_I32 || bv->t.ndim != 1 || bv->t.dims[0] != M))
            return qk_error(QK_ERR_SHAPE, "QLinearConv '%s': B %s must be int32 [%lld]", n->name,
                            qk_shape_str(&bv->t, b1, sizeof b1), (long long)M);
    }
    s->N = x->dims[0];
    s->C = C;
    s->M = M;
    s->H = s->w.in[1];
    s->W = s->w.in[2];
    int64_t dims[4] = {s->N, M, 0, 0};
    for (int i = 0; i < nsp; i++)
        dims[2 + i] = s->w.out[3 - nsp + i];
    qk_tensor_set_shape(&qk_out(g, n, 0)->t, s->yt, x->ndim, dims);
    return QK_OK;
}

/* Descriptor from the current tensors (data pointers may be NULL at plan
 * for graph inputs: only counts and shapes are used then). */
static qk_status qconv_desc(qk_graph *g, qk_node *n, int with_data, qk_i8conv_desc *d)
{
    qconv_state *s = n->state;
    const qk_value *xv = qk_in(g, n, s->ix), *wv = qk_in(g, n, s->iw), *xz = slot(g, n, s->ixz);
    const qk_value *bv = slot(g, n, s->ib);
    memset(d, 0, sizeof *d);
    d->x_type = xv->t.dtype;
    d->w_type = wv->t.dtype;
    d->out_type = s->yt;
    d->C = s->C, d->Co = s->M, d->groups = s->group;
    d->kh = s->w.k[1], d->kw = s->w.k[2];
    d->stride_h = s->w.s[1], d->stride_w = s->w.s[2], d->dil_h = s->w.d[1], d->dil_w = s->w.d[2];
    d->pad_t = s->w.pb[1], d->pad_l = s->w.pb[2], d->pad_b = s->w.pe[1], d->pad_r = s->w.pe[2];
    d->kernel = g->opts.reference ? 0 : -1;
    d->nw_zero = s->q.nwz;
    d->w_zero = s->q.nwz ? s->q.wz : NULL;
    if (!with_data) { /* placeholders with the right counts */
        d->rq.mode = s->qlinear ? s->q.mode : QK_RQ_NONE;
        d->rq.n = s->qlinear ? s->q.nrq : 1;
        d->rq.mult = s->q.mult;
        d->rq.shift = s->q.shift;
        d->rq.scale = s->q.scale;
        qk_int_range(s->yt, &d->rq.qmin, &d->rq.qmax);
        d->rq.zero_point = d->rq.qmin > 0 ? d->rq.qmin : 0;
        return QK_OK;
    }
    d->w = wv->t.data;
    d->x_zero = xz ? (int32_t)qk_tensor_int_at(&xz->t, 0) : 0;
    d->bias = bv ? (const int32_t *)bv->t.data : NULL;
    return qparams_read(&s->q, n, slot(g, n, s->ixs), slot(g, n, s->iwz), slot(g, n, s->iws), slot(g, n, s->iys),
                        slot(g, n, s->iyz), &d->rq, s->yt);
}

static qk_status qconv_reshape(qk_graph *g, qk_node *n, int training, size_t *ws_bytes)
{
    qconv_state *s = n->state;
    if (training)
        return qk_error(QK_ERR_UNSUPPORTED, "%s '%s': integer operators have no backward", n->op_type, n->name);
    qk_i8conv_destroy(s->conv);
    s->conv = NULL;
    qk_free(s->q.wz);
    s->q.wz = NULL;
    qk_status st = qparams_alloc(&s->q, s->M);
    if (st != QK_OK)
        return st;
    s->q.mode = (qk_rq_mode)qk_node_int(n, "qkit_rounding", qk_int_onnx_rounding(g));
    s->dynamic = 0;
    for (int i = 0; i < n->n_in; i++)
        if (i != s->ix && !is_const(qk_in(g, n, i)))
            s->dynamic = 1;
    qk_i8conv_desc d;
    if ((st = qconv_desc(g, n, !s->dynamic, &d)) != QK_OK)
        return st;
    if ((st = qk_i8conv_create(&d, &s->conv)) != QK_OK)
        return qk_error_context(st, "%s '%s'", n->op_type, n->name);
    *ws_bytes = qk_i8conv_ws_bytes(s->conv, s->H, s->W);
    return QK_OK;
}

static qk_status qconv_forward(qk_exec *x, qk_node *n)
{
    qk_graph *g = x->g;
    qconv_state *s = n->state;
    const qk_tensor *xt = &qk_in(g, n, s->ix)->t;
    qk_tensor *yt = &qk_out(g, n, 0)->t;
    qk_i8conv_desc d;
    qk_status st;
    if (g->opts.reference) {
        if ((st = qconv_desc(g, n, 1, &d)) != QK_OK)
            return st;
        st = qk_i8conv_ref(&d, xt->dims[0], s->H, s->W, xt->data, yt->data);
    } else {
        if (s->dynamic) {
            if ((st = qconv_desc(g, n, 1, &d)) != QK_OK || (st = qk_i8conv_update(s->conv, &d)) != QK_OK)
                return qk_error_context(st, "%s '%s'", n->op_type, n->name);
        }
        st = qk_i8conv_run(s->conv, xt->dims[0], s->H, s->W, xt->data, yt->data, x->pool, x->ws, x->ws_stride);
    }
    return st == QK_OK ? QK_OK : qk_error_context(st, "%s '%s'", n->op_type, n->name);
}

const qk_op qk_op_qlinearconv = {.type = "QLinearConv", .init = qconv_init, .infer = qconv_infer,
                                 .reshape = qconv_reshape, .forward = qconv_forward, .destroy = qconv_destroy};
const qk_op qk_op_convinteger = {.type = "ConvInteger", .init = qconv_init, .infer = qconv_infer,
                                 .reshape = qconv_reshape, .forward = qconv_forward, .destroy = qconv_destroy};

/* ========================================================== matmul ops */

#define MAXB 6

typedef struct qmm_state {
    int qlinear;
    int ia, ias, iaz, ib, ibs, ibz, iys, iyz;
    int64_t M, K, N;
    int nbd;                       /* output batch rank */
    int64_t obd[MAXB], abd[MAXB], bbd[MAXB]; /* batch dims (a/b right-aligned, 1 = broadcast) */
    int64_t nob, nbb;              /* output batches, b batches */
    int64_t ngm;                   /* GEMMs created at plan (= nbb then) */
    qk_dtype yt;
    int dynamic;
    qparams q;
    qk_i8gemm **gm;                /* nbb */
} qmm_state;

static qk_status qmm_init(qk_graph *g, qk_node *n)
{
    (void)g;
    int ql = strcmp(n->op_type, "QLinearMatMul") == 0;
    if ((ql ? n->n_in != 8 : (n->n_in < 2 || n->n_in > 4)) || n->n_out != 1)
        return qk_error(QK_ERR_ARG, "%s '%s': %d inputs, %d outputs", n->op_type, n->name, n->n_in, n->n_out);
    qmm_state *s = qk_calloc(1, sizeof *s);
    if (!s)
        return qk_error(QK_ERR_NOMEM, "%s: out of memory", n->op_type);
    n->state = s;
    s->qlinear = s->q.qlinear = ql;
    if (ql) {
        s->ia = 0, s->ias = 1, s->iaz = 2, s->ib = 3, s->ibs = 4, s->ibz = 5, s->iys = 6, s->iyz = 7;
        for (int i = 0; i < 8; i++)
            if (n->in[i] < 0)
                return qk_error(QK_ERR_ARG, "QLinearMatMul '%s': input %d is missing", n->name, i);
    } else {
        s->ia = 0, s->ib = 1, s->iaz = 2, s->ibz = 3;
        s->ias = s->ibs = s->iys = s->iyz = -1;
        if (n->in[0] < 0 || n->in[1] < 0)
            return qk_error(QK_ERR_ARG, "MatMulInteger '%s': A and B are required", n->name);
    }
    return QK_OK;
}

static void qmm_free_gemms(qmm_state *s)
{
    if (s->gm)
        for (int64_t i = 0; i < s->ngm; i++)
            qk_i8gemm_destroy(s->gm[i]);
    qk_free(s->gm);
    s->gm = NULL;
    s->ngm = 0;
}

static void qmm_destroy(qk_node *n)
{
    qmm_state *s = n->state;
    if (s) {
        qmm_free_gemms(s);
        qk_free(s->q.wz);
    }
    qk_free(s);
    n->state = NULL;
}

static qk_status qmm_infer(qk_graph *g, qk_node *n)
{
    qmm_state *s = n->state;
    const qk_tensor *a = &qk_in(g, n, s->ia)->t, *b = &qk_in(g, n, s->ib)->t;
    char b1[96], b2[96];
    if (!is_q8(a->dtype) || !is_q8(b->dtype))
        return qk_error(QK_ERR_UNSUPPORTED, "%s '%s': A %s and B %s must be uint8 or int8", n->op_type, n->name,
                        qk_dtype_name(a->dtype), qk_dtype_name(b->dtype));
    if (a->ndim < 1 || b->ndim < 1 || a->ndim > MAXB + 2 || b->ndim > MAXB + 2)
        return qk_error(QK_ERR_SHAPE, "%s '%s': ranks of A %s and B %s", n->op_type, n->name,
                        qk_shape_str(a, b1, sizeof b1), qk_shape_str(b, b2, sizeof b2));
    int a1 = a->ndim == 1, b1d = b->ndim == 1;
    s->M = a1 ? 1 : a->dims[a->ndim - 2];
    s->K = a->dims[a->ndim - 1];
    int64_t Kb = b1d ? b->dims[0] : b->dims[b->ndim - 2];
    s->N = b1d ? 1 : b->dims[b->ndim - 1];
    if (s->K != Kb || s->K < 1)
        return qk_error(QK_ERR_SHAPE, "%s '%s': A %s and B %s disagree on K", n->op_type, n->name,
                        qk_shape_str(a, b1, sizeof b1), qk_shape_str(b, b2, sizeof b2));
    int na = a1 ? 0 : a->ndim - 2, nb = b1d ? 0 : b->ndim - 2;
    s->nbd = na > nb ? na : nb;
    s->nob = s->nbb = 1;
    for (int i = 0; i < s->nbd; i++) {
        int ja = i - (s->nbd - na), jb = i - (s->nbd - nb);
        int64_t da = ja >= 0 ? a->dims[ja] : 1, db = jb >= 0 ? b->dims[jb] : 1;
        if (da != db && da != 1 && db != 1)
            return qk_error(QK_ERR_SHAPE, "%s '%s': batch dims of A %s and B %s do not broadcast", n->op_type,
                            n->name, qk_shape_str(a, b1, sizeof b1), qk_shape_str(b, b2, sizeof b2));
        s->abd[i] = da;
        s->bbd[i] = db;
        s->obd[i] = da > db ? da : db;
        s->nob *= s->obd[i];
        s->nbb *= db;
    }
    if (s->gm && s->nbb != s->ngm)
        return qk_error(QK_ERR_SHAPE, "%s '%s': B's batch count changed from %lld (planned) to %lld", n->op_type,
                        n->name, (long long)s->ngm, (long long)s->nbb);
    int cnt;
    qk_status st;
    if ((st = check_param(n, slot(g, n, s->iaz), "a_zero_point", a->dtype, 0, &cnt)) != QK_OK ||
        (st = check_param(n, slot(g, n, s->ibz), "b_zero_point", b->dtype, s->N, &s->q.nwz)) != QK_OK)
        return st;
    s->yt = QK_I32;
    if (s->qlinear) {
        const qk_value *yz = slot(g, n, s->iyz);
        s->yt = yz ? yz->t.dtype : QK_U8;
        if (!is_q8(s->yt))
            return qk_error(QK_ERR_ARG, "QLinearMatMul '%s': y_zero_point must be uint8 or int8", n->name);
        if ((st = check_param(n, slot(g, n, s->ias), "a_scale", QK_F32, 0, &cnt)) != QK_OK ||
            (st = check_param(n, slot(g, n, s->ibs), "b_scale", QK_F32, s->N, &s->q.nrq)) != QK_OK ||
            (st = check_param(n, slot(g, n, s->iys), "y_scale", QK_F32, 0, &cnt)) != QK_OK ||
            (st = check_param(n, yz, "y_zero_point", s->yt, 0, &cnt)) != QK_OK)
            return st;
    }
    int64_t dims[QK_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < s->nbd; i++)
        dims[nd++] = s->obd[i];
    if (!a1)
        dims[nd++] = s->M;
    if (!b1d)
        dims[nd++] = s->N;
    qk_tensor_set_shape(&qk_out(g, n, 0)->t, s->yt, nd, dims);
    return QK_OK;
}

static qk_status qmm_desc(qk_graph *g, qk_node *n, int64_t ib, int with_data, qk_i8gemm_desc *d)
{
    qmm_state *s = n->state;
    const qk_value *av = qk_in(g, n, s->ia), *bv = qk_in(g, n, s->ib), *az = slot(g, n, s->iaz);
    memset(d, 0, sizeof *d);
    d->a_type = av->t.dtype;
    d->b_type = bv->t.dtype;
    d->K = s->K;
    d->N = s->N;
    d->ldb = s->N;
    d->out_type = s->yt;
    d->kernel = g->opts.reference ? 0 : -1;
    d->nb_zero = s->q.nwz;
    d->b_zero = s->q.nwz ? s->q.wz : NULL;
    if (!with_data) {
        d->rq.mode = s->qlinear ? s->q.mode : QK_RQ_NONE;
        d->rq.n = s->qlinear ? s->q.nrq : 1;
        d->rq.mult = s->q.mult;
        d->rq.shift = s->q.shift;
        d->rq.scale = s->q.scale;
        qk_int_range(s->yt, &d->rq.qmin, &d->rq.qmax);
        d->rq.zero_point = d->rq.qmin > 0 ? d->rq.qmin : 0;
        return QK_OK;
    }
    d->B = (const uint8_t *)bv->t.data + ib * s->K * s->N;
    d->a_zero = az ? (int32_t)qk_tensor_int_at(&az->t, 0) : 0;
    return qparams_read(&s->q, n, slot(g, n, s->ias), slot(g, n, s->ibz), slot(g, n, s->ibs), slot(g, n, s->iys),
                        slot(g, n, s->iyz), &d->rq, s->yt);
}

static qk_status qmm_reshape(qk_graph *g, qk_node *n, int training, size_t *ws_bytes)
{
    qmm_state *s = n->state;
    if (training)
        return qk_error(QK_ERR_UNSUPPORTED, "%s '%s': integer operators have no backward", n->op_type, n->name);
    qmm_free_gemms(s);
    qk_free(s->q.wz);
    s->q.wz = NULL;
    qk_status st = qparams_alloc(&s->q, s->N);
    if (st != QK_OK)
        return st;
    s->q.mode = (qk_rq_mode)qk_node_int(n, "qkit_rounding", qk_int_onnx_rounding(g));
    s->dynamic = 0;
    for (int i = 0; i < n->n_in; i++)
        if (i != s->ia && !is_const(qk_in(g, n, i)))
            s->dynamic = 1;
    s->gm = qk_calloc((size_t)s->nbb, sizeof *s->gm);
    if (!s->gm)
        return qk_error(QK_ERR_NOMEM, "%s '%s': out of memory", n->op_type, n->name);
    s->ngm = s->nbb;
    size_t ws = 0;
    for (int64_t i = 0; i < s->nbb; i++) {
        qk_i8gemm_desc d;
        if ((st = qmm_desc(g, n, i, !s->dynamic, &d)) != QK_OK)
            return st;
        if ((st = qk_i8gemm_create(&d, &s->gm[i])) != QK_OK)
            return qk_error_context(st, "%s '%s'", n->op_type, n->name);
        size_t b = qk_i8gemm_ws_bytes(s->gm[i]);
        ws = b > ws ? b : ws;
    }
    *ws_bytes = ws;
    return QK_OK;
}

/* Batch index of operand dims bd (broadcast against the output's obd) for
 * output batch ob. */
static int64_t batch_index(const qmm_state *s, const int64_t *bd, int64_t ob)
{
    int64_t idx = 0, stride = 1;
    for (int i = s->nbd - 1; i >= 0; i--) {
        int64_t o = ob % s->obd[i];
        ob /= s->obd[i];
        if (bd[i] != 1)
            idx += o * stride;
        stride *= bd[i];
    }
    return idx;
}

static qk_status qmm_forward(qk_exec *x, qk_node *n)
{
    qk_graph *g = x->g;
    qmm_state *s = n->state;
    const qk_tensor *at = &qk_in(g, n, s->ia)->t;
    qk_tensor *yt = &qk_out(g, n, 0)->t;
    size_t ye = s->yt == QK_I32 ? 4 : 1;
    int ref = g->opts.reference;
    qk_status st = QK_OK;
    qk_i8gemm_desc d;
    if (!ref && s->dynamic)
        for (int64_t i = 0; i < s->nbb && st == QK_OK; i++)
            if ((st = qmm_desc(g, n, i, 1, &d)) == QK_OK)
                st = qk_i8gemm_update(s->gm[i], &d);
    int a_full = 1; /* A has every output batch dim: rows of all batches are contiguous */
    for (int i = 0; i < s->nbd; i++)
        a_full &= s->abd[i] == s->obd[i];
    int merged = s->nbb == 1 && a_full;  /* one GEMM over the rows of every batch */
    int64_t nrun = merged ? 1 : s->nob, rows = merged ? s->M * s->nob : s->M;
    for (int64_t ob = 0; ob < nrun && st == QK_OK; ob++) {
        int64_t ia = batch_index(s, s->abd, ob), ib = batch_index(s, s->bbd, ob);
        const uint8_t *A = (const uint8_t *)at->data + ia * s->M * s->K;
        uint8_t *Y = (uint8_t *)yt->data + (size_t)(ob * s->M * s->N) * ye;
        if (ref) {
            if ((st = qmm_desc(g, n, ib, 1, &d)) == QK_OK)
                st = qk_i8gemm_ref(&d, rows, A, s->K, Y, s->N, 1);
        } else {
            st = qk_i8gemm_run(s->gm[ib], rows, A, s->K, Y, s->N, 1, x->pool, x->ws, x->ws_stride);
        }
    }
    return st == QK_OK ? QK_OK : qk_error_context(st, "%s '%s'", n->op_type, n->name);
}

const qk_op qk_op_qlinearmatmul = {.type = "QLinearMatMul", .init = qmm_init, .infer = qmm_infer,
                                   .reshape = qmm_reshape, .forward = qmm_forward, .destroy = qmm_destroy};
const qk_op qk_op_matmulinteger = {.type = "MatMulInteger", .init = qmm_init, .infer = qmm_infer,
                                   .reshape = qmm_reshape, .forward = qmm_forward, .destroy = qmm_destroy};
