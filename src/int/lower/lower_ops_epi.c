/* QkEpilogue (lower_internal.h): the float tail of a TensorRT-style QDQ
 * block, DequantizeLinear [-> Add] [-> Relu] -> QuantizeLinear, as one
 * element-wise pass over integer inputs. It repeats the float operations of
 * those nodes (src/quant/qdq_ops.c, src/ops) in the same order, so the codes
 * are bit-identical while the float tensors between them are never stored:
 *
 *   v = (float)(a - a_zero) * a_scale[c]           DequantizeLinear (axis 1)
 *   v = v + u, u = b  or  (float)(b - b_zero) * b_scale[c]        Add
 *   v = v < 0 ? 0 : v                                             Relu
 *   y = sat(RNE(v / y_scale) + y_zero_point)                      QuantizeLinear
 *
 * c is the channel: axis 1 of NCHW, axis 3 with attribute nhwc 1 (set by
 * qk_lower_layout). The float expressions are the ones those ops evaluate
 * (ISO C: no contraction into fused multiply-adds). */
#include "lower_ops.h"
#include "qkit/ops.h"

#include <math.h>
#include <string.h>

typedef struct epi_state {
    int32_t za, zb, zy;
    int relu, nhwc, has_b, b_int;
    float ys;
    qk_dtype out;
    int64_t C, inner, numel; /* channels; elements per (n, c) run (NCHW) */
} epi_state;

static qk_status epi_init(qk_graph *g, qk_node *n)
{
    (void)g;
    if (n->n_in != 4 || n->n_out != 1 || n->in[0] < 0 || n->in[1] < 0)
        return qk_error(QK_ERR_ARG, "QkEpilogue '%s': needs inputs (a, a_scale, b?, b_scale?) and 1 output",
                        n->name);
    epi_state *s = qk_calloc(1, sizeof *s);
    if (!s)
        return qk_error(QK_ERR_NOMEM, "QkEpilogue: out of memory");
    n->state = s;
    s->za = (int32_t)qk_node_int(n, "a_zero_point", 0);
    s->zb = (int32_t)qk_node_int(n, "b_zero_point", 0);
    s->zy = (int32_t)qk_node_int(n, "y_zero_point", 0);
    s->relu = (int)qk_node_int(n, "relu", 0);
    s->ys = qk_node_float(n, "y_scale", 1.0f);
    s->out = (qk_dtype)qk_node_int(n, "out_type", QK_U8);
    if (!is_q8(s->out))
        return qk_error(QK_ERR_ARG, "QkEpilogue '%s': out_type %d is not uint8 or int8", n->name, (int)s->out);
    int32_t lo, hi;
    qk_int_range(s->out, &lo, &hi);
    if (s->zy < lo || s->zy > hi || !(s->ys > 0) || !isfinite(s->ys))
        return qk_error(QK_ERR_ARG, "QkEpilogue '%s': y_scale %g / zero point %d invalid for %s", n->name,
                        (double)s->ys, s->zy, qk_dtype_name(s->out));
    return QK_OK;
}

/* Per-channel or per-tensor float scale input i for channel count C. */
static qk_status epi_scale(qk_graph *g, qk_node *n, int i, int64_t C)
{
    qk_status st = need_init(g, n, i, QK_F32, "scale");
    if (st != QK_OK)
        return st;
    int64_t k = qk_tensor_numel(&qk_in(g, n, i)->t);
    if (k != 1 && k != C)
        return qk_error(QK_ERR_SHAPE, "QkEpilogue '%s': scale input %d has %lld entries, expected 1 or %lld",
                        n->name, i, (long long)k, (long long)C);
    return QK_OK;
}

static int is_int_codes(qk_dtype t) { return t == QK_U8 || t == QK_I8 || t == QK_I32; }

static qk_status epi_infer(qk_graph *g, qk_node *n)
{
    epi_state *s = n->state;
    const qk_tensor *a = &qk_in(g, n, 0)->t;
    const qk_value *bv = qk_in(g, n, 2);
    char b1[96], b2[96];
    s->nhwc = (int)qk_node_int(n, "nhwc", 0); /* set by qk_lower_layout after binding */
    if (!is_int_codes(a->dtype) || a->ndim < 2 || (s->nhwc && a->ndim != 4))
        return qk_error(QK_ERR_SHAPE, "QkEpilogue '%s': a is %s %s; expected integer codes, rank >= 2 (4 if NHWC)",
                        n->name, qk_dtype_name(a->dtype), qk_shape_str(a, b1, sizeof b1));
    if (a->dtype == QK_I32 && s->za != 0)
        return qk_error(QK_ERR_ARG, "QkEpilogue '%s': int32 input with zero point %d", n->name, s->za);
    s->C = a->dims[s->nhwc ? 3 : 1];
    s->numel = qk_tensor_numel(a);
    s->inner = 1;
    for (int d = 2; d < a->ndim && !s->nhwc; d++)
        s->inner *= a->dims[d];
    qk_status st = epi_scale(g, n, 1, s->C);
    if (st != QK_OK)
        return st;
    s->has_b = bv != NULL;
    if (bv) {
        const qk_tensor *b = &bv->t;
        s->b_int = b->dtype != QK_F32;
        if ((s->b_int && !is_int_codes(b->dtype)) || b->ndim != a->ndim ||
            memcmp(b->dims, a->dims, (size_t)a->ndim * sizeof *a->dims) != 0)
            return qk_error(QK_ERR_SHAPE, "QkEpilogue '%s': b %s %s must be float or integer of a's shape %s",
                            n->name, qk_dtype_name(b->dtype), qk_shape_str(b, b1, sizeof b1),
                            qk_shape_str(a, b2, sizeof b2));
        if (s->b_int && (st = epi_scale(g, n, 3, s->C)) != QK_OK)
            return st;
        if (s->b_int && b->dtype == QK_I32 && s->zb != 0)
            return qk_error(QK_ERR_ARG, "QkEpilogue '%s': int32 b with zero point %d", n->name, s->zb);
    }
    qk_tensor_set_shape(&qk_out(g, n, 0)->t, s->out, a->ndim, a->dims);
    return QK_OK;
}

#define EPI_GRAIN 4096

/* rne_small of qdq_ops.c: round half to even for |v| <= 2^22. */
static inline float rne_small(float v) { return (v + 12582912.0f) - 12582912.0f; }

static inline float ld_f(qk_dtype t, const void *p, int64_t i, int32_t z)
{
    switch (t) {
    case QK_U8: return (float)((int32_t)((const uint8_t *)p)[i] - z);
    case QK_I8: return (float)((int32_t)((const int8_t *)p)[i] - z);
    default: return (float)((const int32_t *)p)[i]; /* int32: z is 0 */
    }
}

void qk_epi_range_ref(const qk_epi_run *e, int64_t lo, int64_t hi)
{
    int32_t qn, qp;
    qk_int_range(e->out, &qn, &qp);
    const float qlo = (float)(qn - e->zy - 1), qhi = (float)(qp - e->zy + 1);
    int64_t c = (lo / e->run) % e->C, r = lo % e->run;
    for (int64_t i = lo; i < hi; i++, r = r + 1 < e->run ? r + 1 : (c = c + 1 < e->C ? c + 1 : 0, 0)) {
        float v = ld_f(e->at, e->a, i, e->za) * e->sa[e->nsa == 1 ? 0 : c]; /* DequantizeLinear */
        if (e->b) {
            float u = e->b_int ? ld_f(e->bt, e->b, i, e->zb) * e->sb[e->nsb == 1 ? 0 : c] : ((const float *)e->b)[i];
            v = v + u; /* Add */
        }
        if (e->relu)
            v = v < 0.0f ? 0.0f : v; /* Relu */
        float x = v / e->ys; /* QuantizeLinear: clamp (monotone), NaN -> zero point, RNE */
        float tq = x < qlo ? qlo : x;
        tq = tq > qhi ? qhi : tq;
        tq = x == x ? tq : 0.0f;
        int32_t rq = (int32_t)rne_small(tq) + e->zy;
        st8(e->out, e->y, i, rq < qn ? qn : rq > qp ? qp : rq);
    }
}

typedef struct epi_job {
    qk_epi_run e;
    int64_t numel;
    int vec; /* 2: AVX-512, 1: AVX2 (then the reference for the last < 8), 0: the reference */
} epi_job;

static void epi_task(void *ctx, int64_t t, int w)
{
    (void)w;
    const epi_job *j = ctx;
    int64_t lo = t * EPI_GRAIN, hi = lo + EPI_GRAIN < j->numel ? lo + EPI_GRAIN : j->numel;
    if (j->vec == 2)
        qk_epi_range__avx512(&j->e, lo, hi);
    else
        qk_epi_range_ref(&j->e, j->vec == 1 ? qk_epi_range__avx2(&j->e, lo, hi) : lo, hi);
}

static qk_status epi_forward(qk_exec *x, qk_node *n)
{
    qk_graph *g = x->g;
    const epi_state *s = n->state;
    const qk_tensor *a = &qk_in(g, n, 0)->t;
    const qk_value *bv = qk_in(g, n, 2);
    epi_job j = {{a->dtype, bv ? bv->t.dtype : QK_F32, s->out, a->data, bv ? bv->t.data : NULL, s->b_int, s->relu,
                  s->za, s->zb, s->zy, s->ys, qk_f32(&qk_in(g, n, 1)->t), NULL, qk_tensor_numel(&qk_in(g, n, 1)->t), 1,
                  s->C, s->nhwc ? 1 : s->inner, qk_out(g, n, 0)->t.data},
                 s->numel,
                 x->g->opts.reference ? 0 : qk_cpu_isa() >= QK_ISA_AVX512 ? 2 : qk_cpu_isa() >= QK_ISA_AVX2};
    if (s->has_b && s->b_int) {
        j.e.sb = qk_f32(&qk_in(g, n, 3)->t);
        j.e.nsb = qk_tensor_numel(&qk_in(g, n, 3)->t);
    }
    qk_pool_run(x->pool, (s->numel + EPI_GRAIN - 1) / EPI_GRAIN, epi_task, &j);
    return QK_OK;
}

static qk_status epi_reshape(qk_graph *g, qk_node *n, int training, size_t *ws_bytes)
{
    (void)g;
    (void)ws_bytes;
    if (training)
        return qk_error(QK_ERR_UNSUPPORTED, "QkEpilogue '%s': integer operators have no backward", n->name);
    return QK_OK;
}

const qk_op qk_op_qkepilogue = { .type = "QkEpilogue", .init = epi_init, .infer = epi_infer,
                                 .reshape = epi_reshape, .forward = epi_forward, .destroy = plain_destroy,
                                 .domain = QK_LOWER_DOMAIN };
