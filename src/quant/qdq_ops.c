/* ONNX QuantizeLinear and DequantizeLinear (opset 10 and 13), forward only.
 *
 *   QuantizeLinear(x: float32, y_scale: float32, y_zero_point?: uint8|int8)
 *     y = saturate(RNE(x / y_scale) + y_zero_point): float32 division as in
 *     the ONNX reference and ONNX Runtime, ties to even, saturation to the
 *     output type; y's type is y_zero_point's (uint8 when absent). NaN -> the
 *     zero point. A graph whose metadata "qkit.rounding" names another
 *     rounding (half_up: the QDQ files qkit writes for tvm and vitis, whose
 *     engines round half up) rounds so instead: qkit's reading of its own
 *     files; other ONNX readers round ties to even (an approximation).
 *   DequantizeLinear(x: uint8|int8|int32, x_scale: float32, x_zero_point?)
 *     y = float32(x - x_zero_point) * x_scale; int32 x needs a zero point of
 *     0 (or none).
 * Scale and zero point are scalars / 1-element (per tensor) or 1-D of length
 * x.dims[axis] (opset 13 per axis; attribute axis, default 1, negative
 * counts from the end). Scale / zero-point data are read at forward time
 * (they may be graph inputs). Elementwise loops are chunked over the pool by
 * element count (deterministic). */
#include "quant_internal.h"
#include "../ops/fkern.h"
#include "../ops/fuse.h"
#include "../ops/fvec.h"
#include "qkit/cpu.h"
#include "qkit/graph.h"
#include "qkit/ops.h"

#include <math.h>
#include <string.h>

#define QDQ_GRAIN 32768

typedef struct qdq_state {
    int quantize; /* 1: QuantizeLinear, 0: DequantizeLinear */
    int64_t axis_attr;
    int gl_on;    /* QuantizeLinear after a layer the engine requantizes with gemmlowp (qk_glsim) */
    qk_glsim gl;
    int gap, clip; /* DequantizeLinear running [Clip ->] GlobalAveragePool (fuse.h): their nodes, or -1 */
} qdq_state;

static qk_status qdq_init(qk_node *n, int quantize)
{
    if (n->n_in < 2 || n->n_in > 3 || n->in[0] < 0 || n->in[1] < 0 || n->n_out != 1)
        return qk_error(QK_ERR_FORMAT, "needs inputs (x, scale[, zero_point]) and one output, got %d inputs, %d outputs",
                        n->n_in, n->n_out);
    qdq_state *s = qk_calloc(1, sizeof *s);
    if (!s)
        return qk_error(QK_ERR_NOMEM, "out of memory");
    s->quantize = quantize;
    s->axis_attr = qk_node_int(n, "axis", 1);
    s->gap = s->clip = -1;
    n->state = s;
    return QK_OK;
}

static qk_status q_init(qk_graph *g, qk_node *n) { (void)g; return qdq_init(n, 1); }
static qk_status dq_init(qk_graph *g, qk_node *n) { (void)g; return qdq_init(n, 0); }

static void qdq_destroy(qk_node *n)
{
    qdq_state *s = n->state;
    if (s)
        qk_glsim_free(&s->gl);
    qk_free(n->state);
    n->state = NULL;
}

/* Resolve per-tensor / per-axis: *axis = -1 for per tensor. */
static qk_status qdq_axis(qk_graph *g, const qk_node *n, int *axis, int64_t *ch, int64_t *inner)
{
    const qdq_state *st = n->state;
    const qk_value *xv = qk_in(g, n, 0), *sv = qk_in(g, n, 1), *zv = qk_in(g, n, 2);
    const qk_tensor *x = &xv->t;
    int64_t ns = qk_tensor_numel(&sv->t);
    if (zv && qk_tensor_numel(&zv->t) != ns)
        return qk_error(QK_ERR_SHAPE, "zero point '%s' has %lld elements, scale '%s' has %lld", zv->name,
                        (long long)qk_tensor_numel(&zv->t), sv->name, (long long)ns);
    if (ns == 1 && sv->t.ndim <= 1) {
        *axis = -1;
        *ch = 1;
        *inner = qk_tensor_numel(x);
        return QK_OK;
    }
    if (sv->t.ndim != 1)
        return qk_error(QK_ERR_SHAPE, "scale '%s' must be a scalar or 1-D, has %d dimensions", sv->name, sv->t.ndim);
    int64_t a = st->axis_attr < 0 ? st->axis_attr + x->ndim : st->axis_attr;
    if (a < 0 || a >= x->ndim)
        return qk_error(QK_ERR_SHAPE, "axis %lld out of range for input '%s' with %d dimensions",
                        (long long)st->axis_attr, xv->name, x->ndim);
    if (x->dims[a] != ns)
        return qk_error(QK_ERR_SHAPE, "per-axis scale '%s' has %lld entries, input '%s' has %lld on axis %lld",
                        sv->name, (long long)ns, xv->name, (long long)x->dims[a], (long long)a);
    *axis = (int)a;
    *ch = ns;
    *inner = 1;
    for (int i = (int)a + 1; i < x->ndim; i++)
        *inner *= x->dims[i];
    return QK_OK;
}

static qk_status qdq_infer(qk_graph *g, qk_node *n)
{
    const qdq_state *st = n->state;
    const qk_value *xv = qk_in(g, n, 0), *sv = qk_in(g, n, 1), *zv = qk_in(g, n, 2);
    if (sv->t.dtype != QK_F32)
        return qk_error(QK_ERR_UNSUPPORTED, "scale '%s' has data type %s, only float32 is supported", sv->name,
                        qk_dtype_name(sv->t.dtype));
    qk_dtype out;
    if (st->quantize) {
        if (xv->t.dtype != QK_F32)
            return qk_error(QK_ERR_UNSUPPORTED, "input '%s' has data type %s, only float32 is supported", xv->name,
                            qk_dtype_name(xv->t.dtype));
        out = zv ? zv->t.dtype : QK_U8;
        if (out != QK_U8 && out != QK_I8)
            return qk_error(QK_ERR_UNSUPPORTED, "zero point '%s' has data type %s; uint8 and int8 are supported",
                            zv->name, qk_dtype_name(out));
    } else {
        qk_dtype dt = xv->t.dtype;
        if (dt != QK_U8 && dt != QK_I8 && dt != QK_I32)
            return qk_error(QK_ERR_UNSUPPORTED, "input '%s' has data type %s; uint8, int8 and int32 are supported",
                            xv->name, qk_dtype_name(dt));
        if (zv && zv->t.dtype != dt)
            return qk_error(QK_ERR_FORMAT, "zero point '%s' (%s) must have the input's type %s", zv->name,
                            qk_dtype_name(zv->t.dtype), qk_dtype_name(dt));
        out = QK_F32;
    }
    int axis;
    int64_t ch, inner;
    qk_status s = qdq_axis(g, n, &axis, &ch, &inner);
    if (s != QK_OK)
        return s;
    qk_tensor_set_shape(&qk_out(g, n, 0)->t, out, xv->t.ndim, xv->t.dims);
    return QK_OK;
}

/* qk_glsim_qparams_fn of a DequantizeLinear node: its constant scales and
 * first zero point. */
static int dq_qparams(void *user, const qk_graph *g, int node, const float **s, int64_t *n, int32_t *z)
{
    (void)user;
    const qk_node *d = &g->nodes[node];
    const qk_value *sv = d->n_in > 1 && d->in[1] >= 0 ? &g->values[d->in[1]] : NULL;
    const qk_value *zv = d->n_in > 2 && d->in[2] >= 0 ? &g->values[d->in[2]] : NULL;
    if (!sv || !qk_value_is_initializer(sv) || sv->t.dtype != QK_F32 || !sv->t.data ||
        (zv && (!qk_value_is_initializer(zv) || !zv->t.data)))
        return 0;
    *s = qk_f32(&sv->t);
    *n = qk_tensor_numel(&sv->t);
    *z = !zv ? 0 : zv->t.dtype == QK_U8 ? ((const uint8_t *)zv->t.data)[0]
                   : zv->t.dtype == QK_I8 ? ((const int8_t *)zv->t.data)[0] : 0;
    return *n > 0;
}

/* QuantizeLinear in a QDQ file qkit wrote for a gemmlowp profile (metadata
 * "qkit.arith"), after a layer or global average whose inputs are
 * dequantized from constants: the codes of the engine's output stage
 * (qk_glsim), as the integer engine's lowering of the same file computes
 * them. */
static qk_status q_reshape(qk_graph *g, qk_node *n, int training, size_t *ws)
{
    (void)training;
    (void)ws;
    qdq_state *s = n->state;
    qk_glsim_free(&s->gl);
    s->gl_on = 0;
    const char *arith = qk_graph_get_meta(g, "qkit.arith");
    const float *sy;
    int64_t ns;
    int32_t zy;
    if (!arith || strcmp(arith, "gemmlowp") != 0 || !dq_qparams(NULL, g, (int)(n - g->nodes), &sy, &ns, &zy) ||
        ns != 1)
        return QK_OK;
    const qk_value *zv = qk_in(g, n, 2);
    s->gl_on = qk_glsim_build(&s->gl, g, n->in[0], NULL, "DequantizeLinear", dq_qparams, NULL, sy[0], zy,
                              zv ? zv->t.dtype : QK_U8);
    return QK_OK;
}

typedef struct qdq_job {
    const void *x;
    void *y;
    qk_dtype xt, yt;
    const float *scale;
    const int32_t *zp; /* ch entries */
    int64_t ch, inner, n;
    int vec; /* AVX-512 runs (qdq_run__avx512.c) */
    qk_round round; /* QuantizeLinear: ties to even, or the graph's "qkit.rounding" */
    const qk_glsim *gl; /* QuantizeLinear: the engine's gemmlowp stage, or NULL */
    int64_t gl_inner;
} qdq_job;

/* The rounding of QuantizeLinear in g: ONNX's ties to even unless the graph
 * (a QDQ file qkit wrote for an engine that rounds otherwise) names another
 * in its metadata "qkit.rounding" (half_up, half_away). */
static qk_round qdq_rounding(const qk_graph *g)
{
    qk_round r = QK_ROUND_HALF_EVEN;
    const char *m = qk_graph_get_meta(g, "qkit.rounding");
    if (m && qk_round_parse(m, &r) != QK_OK) {
        qk_clear_error();
        r = QK_ROUND_HALF_EVEN;
    }
    return r;
}

/* Round half to even of |v| < 2^22 in the default rounding mode: equal to
 * qk_round_f(v, QK_ROUND_HALF_EVEN) there, and a plain add the compiler can
 * vectorize. */
static inline float rne_small(float v) { return (v + 12582912.0f) - 12582912.0f; }

/* y[i] = saturate(RNE(x[i] / s) + z) for one run of one channel. The
 * quotient is clamped to [qn - z - 1, qp - z + 1] before rounding (the
 * rounding is monotone, so every value outside saturates the same way as
 * before), which keeps it in rne_small's range; NaN gives z. The same float
 * division as the ONNX reference, written as fixed blocks so -O2 vectorizes
 * it. */
#define Q_RUN(TY)                                                                                          \
    do {                                                                                                   \
        TY *y = (TY *)j->y;                                                                                \
        float lo_ = (float)(qn - z - 1), hi_ = (float)(qp - z + 1);                                        \
        int64_t i = i0;                                                                                    \
        for (; i + 16 <= i1; i += 16) {                                                                    \
            int32_t q[16];                                                                                 \
            for (int k = 0; k < 16; k++) {                                                                 \
                float v = x[i + k] / sc;                                                                   \
                float t = v < lo_ ? lo_ : v;                                                               \
                t = t > hi_ ? hi_ : t;                                                                     \
                t = v == v ? t : 0.0f;                                                                     \
                int32_t r = (int32_t)rne_small(t) + z;                                                     \
                q[k] = r < qn ? qn : r > qp ? qp : r;                                                      \
            }                                                                                              \
            for (int k = 0; k < 16; k++)                                                                   \
                y[i + k] = (TY)q[k];                                                                       \
        }                                                                                                  \
        for (; i < i1; i++) {                                                                              \
            float v = x[i] / sc;                                                                           \
            float t = v < lo_ ? lo_ : v;                                                                   \
            t = t > hi_ ? hi_ : t;                                                                         \
            t = v == v ? t : 0.0f;                                                                         \
            int32_t r = (int32_t)rne_small(t) + z;                                                         \
            y[i] = (TY)(r < qn ? qn : r > qp ? qp : r);                                                    \
        }                                                                                                  \
    } while (0)

/* Channel of element i and the end of its run (per tensor: one run). */
static inline int64_t qdq_run(const qdq_job *j, int64_t i, int64_t hi, int64_t *end)
{
    if (j->ch == 1) {
        *end = hi;
        return 0;
    }
    int64_t r = i / j->inner, e = (r + 1) * j->inner;
    *end = e < hi ? e : hi;
    return r % j->ch;
}

static void q_task(void *ctx, int64_t t, int w)
{
    (void)w;
    const qdq_job *j = ctx;
    int64_t lo = t * QDQ_GRAIN, hi = lo + QDQ_GRAIN < j->n ? lo + QDQ_GRAIN : j->n;
    const float *x = j->x;
    int32_t qn = j->yt == QK_U8 ? 0 : -128, qp = j->yt == QK_U8 ? 255 : 127;
    if (j->gl) {
        int32_t q[256];
        for (int64_t i0 = lo; i0 < hi; i0 += 256) {
            int64_t i1 = i0 + 256 < hi ? i0 + 256 : hi;
            qk_glsim_codes(j->gl, j->gl_inner, x, q, i0, i1);
            for (int64_t i = i0; i < i1; i++) {
                if (j->yt == QK_U8)
                    ((uint8_t *)j->y)[i] = (uint8_t)q[i - i0];
                else
                    ((int8_t *)j->y)[i] = (int8_t)q[i - i0];
            }
        }
        return;
    }
    for (int64_t i0 = lo, i1; i0 < hi; i0 = i1) {
        int64_t c = qdq_run(j, i0, hi, &i1);
        float sc = j->scale[c];
        int32_t z = j->zp[c];
        if (j->round != QK_ROUND_HALF_EVEN) {
            for (int64_t i = i0; i < i1; i++) {
                float v = x[i] / sc;
                float t = v < (float)(qn - z - 1) ? (float)(qn - z - 1) : v;
                t = t > (float)(qp - z + 1) ? (float)(qp - z + 1) : t;
                t = v == v ? t : 0.0f;
                int32_t r = (int32_t)qk_round_f(t, j->round) + z;
                r = r < qn ? qn : r > qp ? qp : r;
                if (j->yt == QK_U8)
                    ((uint8_t *)j->y)[i] = (uint8_t)r;
                else
                    ((int8_t *)j->y)[i] = (int8_t)r;
            }
            continue;
        }
        if (j->vec) {
            qk_q_run__avx512(x + i0, i1 - i0, sc, z, j->yt == QK_U8, (uint8_t *)j->y + i0);
            continue;
        }
        if (j->yt == QK_U8)
            Q_RUN(uint8_t);
        else
            Q_RUN(int8_t);
    }
}

/* y[i - i0] = the dequantized x[i] for i in [i0, i1), one channel's scale
 * and zero point */
static void dq_values(const void *x, qk_dtype xt, int vec, int64_t i0, int64_t i1, float sc, int32_t z, float *y)
{
    if (vec && (xt == QK_U8 || xt == QK_I8)) {
        qk_dq_run__avx512((const uint8_t *)x + i0, xt == QK_U8, i1 - i0, sc, z, y);
        return;
    }
    switch (xt) {
    case QK_U8:
        for (int64_t i = i0; i < i1; i++)
            y[i - i0] = (float)((int32_t)((const uint8_t *)x)[i] - z) * sc;
        break;
    case QK_I8:
        for (int64_t i = i0; i < i1; i++)
            y[i - i0] = (float)((int32_t)((const int8_t *)x)[i] - z) * sc;
        break;
    default: /* int32: z is 0 (checked) */
        for (int64_t i = i0; i < i1; i++)
            y[i - i0] = (float)((const int32_t *)x)[i] * sc;
        break;
    }
}

static void dq_task(void *ctx, int64_t t, int w)
{
    (void)w;
    const qdq_job *j = ctx;
    int64_t lo = t * QDQ_GRAIN, hi = lo + QDQ_GRAIN < j->n ? lo + QDQ_GRAIN : j->n;
    float *y = j->y;
    for (int64_t i0 = lo, i1; i0 < hi; i0 = i1) {
        int64_t c = qdq_run(j, i0, hi, &i1);
        dq_values(j->x, j->xt, j->vec, i0, i1, j->scale[c], j->zp[c], y + i0);
    }
}

/* DequantizeLinear -> [Clip ->] GlobalAveragePool run here (fuse.h). */
static qk_status dq_reshape(qk_graph *g, qk_node *n, int training, size_t *ws)
{
    qdq_state *s = n->state;
    s->gap = qk_dq_gap_fused(g, n, training, &s->clip);
    *ws = 0;
    if (s->gap >= 0) {
        const qk_tensor *x = &qk_in(g, n, 0)->t;
        *ws = (size_t)(2 * x->dims[2] * x->dims[3]) * sizeof(float);
    }
    return QK_OK;
}

typedef struct dqgap_job {
    qk_exec *ex;
    const void *x;
    qk_dtype xt;
    const float *scale;
    const int32_t *zp;
    int64_t ch, C, isz, planes;
    int clip, vec;
    float lo, hi;
    float *y;
} dqgap_job;

/* planes [t*16, +16): the DequantizeLinear's values (its own loops), the
 * Clip's (fkern.h clip: the same as the op's), then the pool's mean; with
 * AVX-512 the three in one pass over each plane (qk_dq_clip_sum__avx512) */
static void dqgap_task(void *ctx, int64_t t, int w)
{
    const dqgap_job *j = ctx;
    const int64_t isz = j->isz;
    float *buf = qk_exec_ws(j->ex, w), *cl = buf + isz;
    for (int64_t p = t * 16; p < j->planes && p < t * 16 + 16; p++) {
        const int64_t c = j->ch == 1 ? 0 : p % j->C;
        const float sc = j->scale[c];
        const int32_t z = j->zp[c];
        if (j->vec) {
            const void *xp = (const uint8_t *)j->x + p * isz * (j->xt == QK_I32 ? 4 : 1);
            j->y[p] = qk_dq_clip_sum__avx512(xp, j->xt, isz, sc, z, j->clip, j->lo, j->hi) / (float)isz;
            continue;
        }
        dq_values(j->x, j->xt, 0, p * isz, (p + 1) * isz, sc, z, buf);
        if (j->clip)
            qk_fk()->clip(cl, buf, j->lo, j->hi, isz);
        j->y[p] = qk_vsum(j->clip ? cl : buf, isz) / (float)isz;
    }
}

static qk_status dqgap_forward(qk_exec *ex, qk_node *n, const int32_t *zp, int64_t ch)
{
    qk_graph *g = ex->g;
    const qdq_state *st = n->state;
    const qk_tensor *x = &qk_in(g, n, 0)->t;
    dqgap_job j = { ex, x->data, x->dtype, qk_f32(&qk_in(g, n, 1)->t), zp, ch, x->dims[1], x->dims[2] * x->dims[3],
                    x->dims[0] * x->dims[1], st->clip >= 0, qk_cpu_isa() >= QK_ISA_AVX512, 0, 0,
                    qk_f32(&g->values[g->nodes[st->gap].out[0]].t) };
    if (st->clip >= 0)
        qk_clip_bounds(g, &g->nodes[st->clip], &j.lo, &j.hi);
    int64_t ntask = (j.planes + 15) / 16;
    if (ex->pool)
        qk_pool_run(ex->pool, ntask, dqgap_task, &j);
    else
        for (int64_t t = 0; t < ntask; t++)
            dqgap_task(&j, t, 0);
    return QK_OK;
}

/* Zero points of the first QDQ_ZP_STACK channels live on the stack. */
#define QDQ_ZP_STACK 256

static qk_status qdq_forward(qk_exec *ex, qk_node *n)
{
    qk_graph *g = ex->g;
    const qdq_state *st = n->state;
    const qk_value *xv = qk_in(g, n, 0), *sv = qk_in(g, n, 1), *zv = qk_in(g, n, 2);
    qk_value *yv = qk_out(g, n, 0);
    int axis;
    int64_t ch, inner;
    qk_status s = qdq_axis(g, n, &axis, &ch, &inner);
    if (s != QK_OK)
        return s;
    int32_t zs[QDQ_ZP_STACK], *zp = zs;
    if (ch > QDQ_ZP_STACK && !(zp = qk_malloc((size_t)ch * sizeof *zp)))
        return qk_error(QK_ERR_NOMEM, "out of memory");
    for (int64_t c = 0; c < ch; c++) {
        int32_t z = 0;
        if (zv) {
            switch (zv->t.dtype) {
            case QK_U8: z = ((const uint8_t *)zv->t.data)[c]; break;
            case QK_I8: z = ((const int8_t *)zv->t.data)[c]; break;
            case QK_I32: z = ((const int32_t *)zv->t.data)[c]; break;
            default: break;
            }
        }
        if (!st->quantize && xv->t.dtype == QK_I32 && z != 0) {
            if (zp != zs)
                qk_free(zp);
            return qk_error(QK_ERR_ARG, "int32 input '%s' needs a zero point of 0, '%s'[%lld] = %d", xv->name,
                            zv->name, (long long)c, z);
        }
        zp[c] = z;
    }
    if (!st->quantize && st->gap >= 0) {
        s = dqgap_forward(ex, n, zp, ch);
        if (zp != zs)
            qk_free(zp);
        return s;
    }
    qdq_job j = { xv->t.data, yv->t.data, xv->t.dtype, yv->t.dtype, qk_f32(&sv->t), zp, ch, inner,
                  qk_tensor_numel(&xv->t), !ex->g->opts.reference && qk_cpu_isa() >= QK_ISA_AVX512,
                  st->quantize ? qdq_rounding(g) : QK_ROUND_HALF_EVEN, NULL, 0 };
    if (st->quantize && st->gl_on && (j.gl_inner = qk_glsim_inner(&st->gl, &xv->t)) > 0)
        j.gl = &st->gl;
    int64_t ntask = (j.n + QDQ_GRAIN - 1) / QDQ_GRAIN;
    qk_task_fn fn = st->quantize ? q_task : dq_task;
    if (ntask == 1 || !ex->pool) {
        for (int64_t t = 0; t < ntask; t++)
            fn(&j, t, 0);
    } else {
        qk_pool_run(ex->pool, ntask, fn, &j);
    }
    if (zp != zs)
        qk_free(zp);
    return QK_OK;
}

const qk_op qk_op_quantizelinear = { "QuantizeLinear", q_init, qdq_infer, q_reshape, qdq_forward, NULL, qdq_destroy,
                                     NULL };
const qk_op qk_op_dequantizelinear = { "DequantizeLinear", dq_init, qdq_infer, dq_reshape, qdq_forward, NULL,
                                       qdq_destroy, NULL };
