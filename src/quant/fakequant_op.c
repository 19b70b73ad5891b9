/* FakeQuant (domain ai.qkit): the quantization site of a prepared model
 * (ptq.h). Its behaviour is set by the qmodel that placed it (qk_fq_rt):
 * observe, fake-quantize, or emit stored quantized weights. Backward is the
 * clipped straight-through estimator (mask of the last QUANT forward; plain
 * STE otherwise). Only qkit's prepare creates these nodes; a model file that
 * contains one cannot run (there is no quantizer behind it). */
#include "observer_internal.h"
#include "ptq_internal.h"
#include "qkit/ops.h"

#include <string.h>

typedef struct fq_state {
    qk_fq_rt *rt;
    uint8_t *mask;
    int64_t mask_n;
} fq_state;

static qk_status fq_init(qk_graph *g, qk_node *n)
{
    (void)g;
    if (n->n_in != 1 || n->n_out != 1)
        return qk_error(QK_ERR_FORMAT, "FakeQuant takes one input and one output (has %d and %d)", n->n_in,
                        n->n_out);
    n->state = qk_calloc(1, sizeof(fq_state));
    return n->state ? QK_OK : qk_error(QK_ERR_NOMEM, "out of memory");
}

static void fq_destroy(qk_node *n)
{
    fq_state *s = n->state;
    if (s)
        qk_free(s->mask);
    qk_free(s);
    n->state = NULL;
}

qk_status qk_fakequant_attach(qk_node *n, qk_fq_rt *rt)
{
    if (!n->op || strcmp(n->op_type, "FakeQuant") != 0 || !n->state)
        return qk_error(QK_ERR_ARG, "node '%s' is not a bound FakeQuant node", n->name);
    ((fq_state *)n->state)->rt = rt;
    return QK_OK;
}

static qk_status fq_infer(qk_graph *g, qk_node *n)
{
    const qk_value *x = qk_in(g, n, 0);
    if (x->t.dtype != QK_F32)
        return qk_error(QK_ERR_UNSUPPORTED, "FakeQuant input '%s' must be float32", x->name);
    qk_tensor_set_shape(&qk_out(g, n, 0)->t, QK_F32, x->t.ndim, x->t.dims);
    return QK_OK;
}

static qk_status fq_reshape(qk_graph *g, qk_node *n, int training, size_t *ws)
{
    (void)ws;
    fq_state *s = n->state;
    int64_t numel = qk_tensor_numel(&qk_in(g, n, 0)->t);
    if (training && numel > s->mask_n) {
        uint8_t *m = qk_realloc(s->mask, (size_t)numel);
        if (!m)
            return qk_error(QK_ERR_NOMEM, "out of memory");
        s->mask = m;
        s->mask_n = numel;
    }
    return QK_OK;
}

typedef struct fq_job {
    const qk_fq_rt *rt;
    const float *x;
    float *y;
    uint8_t *mask;
    int64_t outer, inner;
} fq_job;

#define FQ_GRAIN 16384

static void fq_range(const fq_job *j, int64_t lo, int64_t hi)
{
    const qk_fq_rt *rt = j->rt;
    for (int64_t i = lo; i < hi; i++) {
        int64_t c = rt->n_ch == 1 ? 0 : (i / j->inner) % rt->n_ch;
        float s = rt->scale[c];
        int32_t z = rt->zp[c], qn = rt->qn[c], qp = rt->qp[c];
        float v = j->x[i] / s;
        float r;
        uint8_t in = 0;
        if (v != v) {
            r = (float)z;
        } else {
            r = qk_round_f(v, rt->round) + (float)z;
            in = r >= (float)qn && r <= (float)qp;
        }
        r = r < (float)qn ? (float)qn : r > (float)qp ? (float)qp : r;
        j->y[i] = (r - (float)z) * s;
        if (j->mask)
            j->mask[i] = in;
    }
}

static void fq_task(void *ctx, int64_t t, int w)
{
    (void)w;
    const fq_job *j = ctx;
    int64_t n = j->outer * j->rt->n_ch * j->inner;
    int64_t lo = t * FQ_GRAIN, hi = lo + FQ_GRAIN < n ? lo + FQ_GRAIN : n;
    fq_range(j, lo, hi);
}

void qk_fq_apply(const qk_fq_rt *rt, const float *x, float *y, int64_t outer, int64_t inner, uint8_t *mask,
                 qk_pool *pool)
{
    fq_job j = { rt, x, y, mask, outer, inner };
    int64_t n = outer * rt->n_ch * inner, nt = (n + FQ_GRAIN - 1) / FQ_GRAIN;
    if (nt <= 1 || !pool)
        fq_range(&j, 0, n);
    else
        qk_pool_run(pool, nt, fq_task, &j);
}

typedef struct cp_job {
    float *y;
    const float *x;
    int64_t n;
} cp_job;

static void cp_task(void *ctx, int64_t t, int w)
{
    (void)w;
    const cp_job *j = ctx;
    int64_t lo = t * 4 * FQ_GRAIN, hi = lo + 4 * FQ_GRAIN < j->n ? lo + 4 * FQ_GRAIN : j->n;
    memcpy(j->y + lo, j->x + lo, (size_t)(hi - lo) * sizeof(float));
}

/* y = x (observe and off modes), in chunks over the pool. */
static void fq_copy(qk_pool *pool, float *y, const float *x, int64_t n)
{
    cp_job j = { y, x, n };
    int64_t nt = (n + 4 * FQ_GRAIN - 1) / (4 * FQ_GRAIN);
    if (nt <= 1 || !pool)
        memcpy(y, x, (size_t)n * sizeof(float));
    else
        qk_pool_run(pool, nt, cp_task, &j);
}

/* qk_glsim_qparams_fn of a FakeQuant node: its quantizer's parameters. */
static int fq_qparams(void *user, const qk_graph *g, int node, const float **s, int64_t *n, int32_t *z)
{
    (void)user;
    const fq_state *st = g->nodes[node].state;
    const qk_fq_rt *rt = st ? st->rt : NULL;
    if (!rt || (rt->mode != QK_FQ_QUANT && rt->mode != QK_FQ_CONST) || rt->via_quantizer || !rt->scale)
        return 0;
    *s = rt->scale;
    *n = rt->n_ch;
    *z = rt->zp[0];
    return 1;
}

typedef struct gl_job {
    const qk_glsim *gl;
    const float *x;
    float *y;
    int64_t inner, n;
    float s;
    int32_t z;
} gl_job;

static void gl_task(void *ctx, int64_t t, int w)
{
    (void)w;
    const gl_job *j = ctx;
    int64_t lo = t * FQ_GRAIN, hi = lo + FQ_GRAIN < j->n ? lo + FQ_GRAIN : j->n;
    int32_t q[256];
    for (int64_t i0 = lo; i0 < hi; i0 += 256) {
        int64_t i1 = i0 + 256 < hi ? i0 + 256 : hi;
        qk_glsim_codes(j->gl, j->inner, j->x, q, i0, i1);
        for (int64_t i = i0; i < i1; i++)
            j->y[i] = (float)(q[i - i0] - j->z) * j->s;
    }
}

/* In inference, an activation site of a gemmlowp profile after a layer or
 * a global average: the codes of the engine's output stage (qk_glsim),
 * built from the quantizers' current parameters. 1 when it wrote y. */
static int fq_gemmlowp(qk_exec *ex, const qk_node *n, const qk_fq_rt *rt, const qk_tensor *x, qk_tensor *y)
{
    int32_t qn = rt->qn[0], qp = rt->qp[0];
    qk_dtype yt = qn == 0 && qp == 255 ? QK_U8 : qn == -128 && qp == 127 ? QK_I8 : QK_F32;
    qk_glsim gl;
    if (yt == QK_F32 || rt->n_ch != 1 ||
        !qk_glsim_build(&gl, ex->g, n->in[0], "ai.qkit", "FakeQuant", fq_qparams, NULL, rt->scale[0], rt->zp[0], yt))
        return 0;
    int64_t inner = qk_glsim_inner(&gl, x), numel = qk_tensor_numel(x), nt = (numel + FQ_GRAIN - 1) / FQ_GRAIN;
    gl_job j = { &gl, qk_f32(x), qk_f32(y), inner, numel, rt->scale[0], rt->zp[0] };
    if (inner > 0 && nt > 1 && ex->pool)
        qk_pool_run(ex->pool, nt, gl_task, &j);
    else
        for (int64_t t = 0; inner > 0 && t < nt; t++)
            gl_task(&j, t, 0);
    qk_glsim_free(&gl);
    return inner > 0;
}

static qk_status fq_forward(qk_exec *ex, qk_node *n)
{
    fq_state *s = n->state;
    qk_fq_rt *rt = s->rt;
    qk_graph *g = ex->g;
    const qk_tensor *x = &qk_in(g, n, 0)->t;
    qk_tensor *y = &qk_out(g, n, 0)->t;
    int64_t numel = qk_tensor_numel(x);
    if (!rt)
        return qk_error(QK_ERR_STATE, "FakeQuant node '%s' has no quantizer (only qkit ptq/qat create these)",
                        n->name);
    uint8_t *mask = ex->training ? s->mask : NULL;
    if (mask)
        memset(mask, 1, (size_t)numel);
    switch (rt->mode) {
    case QK_FQ_OFF:
        fq_copy(ex->pool, qk_f32(y), qk_f32(x), numel);
        return QK_OK;
    case QK_FQ_OBSERVE: {
        /* Built-in sites feed the observer only (parameters are computed
         * once, when calibration ends); hooked sites run the quantizer so
         * the hooks see every calibration batch. */
        qk_status st;
        if (rt->via_quantizer) {
            qk_quantizer_set_calibrating(rt->q, 1);
            st = qk_quantizer_run(rt->q, x, y, NULL);
        } else {
            st = qk_obs_update(qk_quantizer_observer(rt->q), x, ex->pool, ex->g->opts.reference);
        }
        fq_copy(ex->pool, qk_f32(y), qk_f32(x), numel);
        return st;
    }
    case QK_FQ_CONST:
        if (rt->cst_n != numel)
            return qk_error(QK_ERR_SHAPE, "FakeQuant '%s': stored tensor has %lld elements, input %lld", n->name,
                            (long long)rt->cst_n, (long long)numel);
        memcpy(y->data, rt->cst, (size_t)numel * sizeof(float));
        return QK_OK;
    case QK_FQ_QUANT:
        break;
    }
    if (rt->via_quantizer) {
        qk_quantizer_set_calibrating(rt->q, 0);
        return qk_quantizer_run(rt->q, x, y, mask);
    }
    if (rt->gl_want && !ex->training && fq_gemmlowp(ex, n, rt, x, y))
        return QK_OK;
    int64_t outer = 1, inner = 1;
    if (rt->axis >= 0) {
        if (rt->axis >= x->ndim || x->dims[rt->axis] != rt->n_ch)
            return qk_error(QK_ERR_SHAPE, "FakeQuant '%s': %lld channels on axis %d, input has %lld", n->name,
                            (long long)rt->n_ch, rt->axis,
                            (long long)(rt->axis < x->ndim ? x->dims[rt->axis] : 0));
        for (int d = 0; d < rt->axis; d++)
            outer *= x->dims[d];
        for (int d = rt->axis + 1; d < x->ndim; d++)
            inner *= x->dims[d];
    } else {
        inner = numel;
    }
    qk_fq_apply(rt, qk_f32(x), qk_f32(y), outer, inner, mask, ex->pool);
    return QK_OK;
}

/* LSQ (Esser et al. 2020): d y / d s = R(x/s) - x/s inside the range, the
 * clamped code minus z outside; summed per channel into rt->step_grad. */
static void fq_step_grad(const qk_fq_rt *rt, const qk_tensor *x, const float *dy)
{
    int64_t inner = 1, numel = qk_tensor_numel(x);
    if (rt->axis >= 0)
        for (int d = rt->axis + 1; d < x->ndim; d++)
            inner *= x->dims[d];
    const float *xv = qk_f32(x);
    for (int64_t i = 0; i < numel; i++) {
        int64_t c = rt->n_ch == 1 ? 0 : (i / inner) % rt->n_ch;
        float s = rt->scale[c], v = xv[i] / s;
        if (v != v)
            continue;
        float r = qk_round_f(v, rt->round), q = r + (float)rt->zp[c];
        double d = q < (float)rt->qn[c] ? rt->qn[c] - rt->zp[c] : q > (float)rt->qp[c] ? rt->qp[c] - rt->zp[c]
                                                                                          : (double)(r - v);
        rt->step_grad[c] += d * dy[i];
    }
}

static qk_status fq_backward(qk_exec *ex, qk_node *n)
{
    fq_state *s = n->state;
    qk_graph *g = ex->g;
    qk_value *x = qk_in(g, n, 0), *y = qk_out(g, n, 0);
    if (!x->grad.data || !y->grad.data)
        return QK_OK;
    int64_t numel = qk_tensor_numel(&x->t);
    float *dx = qk_f32(&x->grad);
    const float *dy = qk_f32(&y->grad);
    if (s->rt && s->rt->mode == QK_FQ_QUANT && s->mask) {
        if (s->rt->step_grad && !s->rt->via_quantizer)
            fq_step_grad(s->rt, &x->t, dy);
        qk_fake_quant_backward(numel, s->mask, dy, dx);
    } else {
        for (int64_t i = 0; i < numel; i++)
            dx[i] += dy[i];
    }
    return QK_OK;
}

const qk_op qk_op_fakequant = { "FakeQuant", fq_init, fq_infer, fq_reshape, fq_forward, fq_backward, fq_destroy,
                                "ai.qkit" };
