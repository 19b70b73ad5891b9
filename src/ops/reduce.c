/* Reductions with ONNX semantics (opset 1-21): ReduceMean, ReduceSum,
 * ReduceMax, ReduceMin, ReduceProd, ReduceL1, ReduceL2, ReduceSumSquare,
 * ReduceLogSum, ReduceLogSumExp.
 *
 * axes: attribute (ReduceSum before opset 13, the others before 18) or the
 * optional second input (known at infer time, known.h); negative axes count
 * from the end. No axes (or an empty axes input) reduces every axis, unless
 * noop_with_empty_axes = 1, which makes the op an identity. keepdims
 * (default 1) keeps reduced axes as size 1.
 * Sums accumulate in double in index order, one output element per task
 * item, so results do not depend on the thread count. float32; Sum, Max,
 * Min and Prod also int32/int64 (through double).
 * Backward (float32), for each x in the group of output y:
 *   Sum dy; Mean dy/N; SumSquare 2x dy; L1 sign(x) dy; L2 x/y dy (0 if y=0);
 *   LogSum dy/exp(y); LogSumExp exp(x-y) dy; Prod dy * (product of the
 *   others); Max/Min dy split evenly among the elements equal to y (as
 *   torch.amax/amin). */
#include "known.h"

#include <float.h>
#include <math.h>

enum { R_MEAN, R_SUM, R_MAX, R_MIN, R_PROD, R_L1, R_L2, R_SUMSQ, R_LOGSUM, R_LOGSUMEXP };

typedef struct red_state {
    int kind, noop, axes_input; /* axes from input 1 */
    int nk, nr;                 /* kept / reduced dims (collapsed view of x) */
    int64_t kd[QK_MAX_DIMS], ks[QK_MAX_DIMS], rd[QK_MAX_DIMS], rs[QK_MAX_DIMS];
    int64_t nout, ngroup;
} red_state;

static qk_status red_init_kind(qk_graph *g, qk_node *n, int kind)
{
    if (n->n_in < 1 || n->n_in > 2 || n->in[0] < 0 || n->n_out != 1)
        return qk_error(QK_ERR_FORMAT, "needs 1 or 2 inputs and 1 output (has %d and %d)", n->n_in, n->n_out);
    red_state *s = qk_calloc(1, sizeof *s);
    if (!s)
        return qk_error(QK_ERR_NOMEM, "out of memory");
    n->state = s;
    s->kind = kind;
    s->noop = (int)qk_node_int(n, "noop_with_empty_axes", 0);
    s->axes_input = qk_in(g, n, 1) != NULL;
    if (s->axes_input && qk_node_attr(n, "axes"))
        return qk_error(QK_ERR_FORMAT, "axes given both as attribute and input");
    return QK_OK;
}

static void red_destroy(qk_node *n)
{
    qk_free(n->state);
    n->state = NULL;
}

static qk_status red_infer(qk_graph *g, qk_node *n)
{
    red_state *s = n->state;
    const qk_value *xv = qk_in(g, n, 0);
    const qk_tensor *a = &xv->t;
    int int_ok = s->kind == R_SUM || s->kind == R_MAX || s->kind == R_MIN || s->kind == R_PROD;
    if (a->dtype != QK_F32 && !(int_ok && (a->dtype == QK_I64 || a->dtype == QK_I32)))
        return qk_error(QK_ERR_UNSUPPORTED, "input '%s' has data type %s, not supported", xv->name,
                        qk_dtype_name(a->dtype));
    int64_t axes[QK_MAX_DIMS];
    int na = 0;
    if (s->axes_input) {
        qk_status st = qk_known_ints(g, qk_in(g, n, 1), "axes", axes, QK_MAX_DIMS, &na);
        if (st != QK_OK)
            return st;
    } else {
        na = qk_node_ints(n, "axes", axes, QK_MAX_DIMS);
    }
    int red[QK_MAX_DIMS] = { 0 };
    for (int k = 0; k < na; k++) {
        int ax = qk_lt_axis(axes[k], a->ndim, 0);
        if (ax < 0)
            return qk_error(QK_ERR_ARG, "axis %lld out of range for rank %d", (long long)axes[k], a->ndim);
        red[ax] = 1;
    }
    int noop = na == 0 && s->noop;
    if (na == 0 && !noop)
        for (int i = 0; i < a->ndim; i++)
            red[i] = 1;
    int keep = (int)qk_node_int(n, "keepdims", 1);
    int64_t d[QK_MAX_DIMS], st = 1, stride[QK_MAX_DIMS];
    int nd = 0;
    for (int i = a->ndim - 1; i >= 0; i--) {
        stride[i] = st;
        st *= a->dims[i];
    }
    s->nk = s->nr = 0;
    for (int i = 0; i < a->ndim; i++) {
        if (!red[i] || noop) {
            d[nd++] = a->dims[i];
            s->kd[s->nk] = a->dims[i];
            s->ks[s->nk++] = stride[i];
        } else {
            if (keep)
                d[nd++] = 1;
            s->rd[s->nr] = a->dims[i];
            s->rs[s->nr++] = stride[i];
        }
    }
    s->nout = qk_lt_prod(s->kd, 0, s->nk);
    s->ngroup = qk_lt_prod(s->rd, 0, s->nr);
    qk_tensor_set_shape(&qk_out(g, n, 0)->t, a->dtype, nd, d);
    return QK_OK;
}

/* Offset in x of output element o's group origin, and of group element r. */
static inline int64_t red_base(const red_state *s, int64_t o)
{
    int64_t off = 0;
    for (int i = s->nk - 1; i >= 0; i--) {
        off += (o % s->kd[i]) * s->ks[i];
        o /= s->kd[i];
    }
    return off;
}

static inline int64_t red_goff(const red_state *s, int64_t r)
{
    int64_t off = 0;
    for (int i = s->nr - 1; i >= 0; i--) {
        off += (r % s->rd[i]) * s->rs[i];
        r /= s->rd[i];
    }
    return off;
}

typedef struct red_job {
    const red_state *s;
    const qk_tensor *x, *y;
    qk_tensor *out;
    const float *dy;
    float *dx;
} red_job;

static double red_value(const red_state *s, const qk_tensor *x, int64_t base)
{
    int kind = s->kind;
    double acc = kind == R_MAX ? -INFINITY : kind == R_MIN ? INFINITY : kind == R_PROD ? 1 : 0;
    double mx = -INFINITY;
    if (kind == R_LOGSUMEXP) {
        for (int64_t r = 0; r < s->ngroup; r++) {
            double v = qk_f32(x)[base + red_goff(s, r)];
            mx = v > mx ? v : mx;
        }
        if (isinf(mx))
            mx = 0;
    }
    for (int64_t r = 0; r < s->ngroup; r++) {
        int64_t p = base + red_goff(s, r);
        double v = x->dtype == QK_F32 ? qk_f32(x)[p] : (double)qk_tensor_int_at(x, p);
        switch (kind) {
        case R_MAX: acc = v > acc || isnan(v) ? v : acc; break;
        case R_MIN: acc = v < acc || isnan(v) ? v : acc; break;
        case R_PROD: acc *= v; break;
        case R_L1: acc += fabs(v); break;
        case R_L2: case R_SUMSQ: acc += v * v; break;
        case R_LOGSUMEXP: acc += exp(v - mx); break;
        default: acc += v; break;
        }
    }
    switch (kind) {
    case R_MEAN: return s->ngroup ? acc / (double)s->ngroup : NAN;
    case R_L2: return sqrt(acc);
    case R_LOGSUM: return log(acc);
    case R_LOGSUMEXP: return log(acc) + mx;
    }
    return acc;
}

static void red_fwd_range(void *c, int64_t lo, int64_t hi)
{
    const red_job *j = c;
    for (int64_t o = lo; o < hi; o++) {
        double v = red_value(j->s, j->x, red_base(j->s, o));
        if (j->out->dtype == QK_F32)
            qk_f32(j->out)[o] = (float)v;
        else if (j->out->dtype == QK_I64)
            ((int64_t *)j->out->data)[o] = (int64_t)v;
        else
            ((int32_t *)j->out->data)[o] = (int32_t)v;
    }
}

static void red_bwd_range(void *c, int64_t lo, int64_t hi)
{
    const red_job *j = c;
    const red_state *s = j->s;
    const float *x = qk_f32(j->x);
    for (int64_t o = lo; o < hi; o++) {
        int64_t base = red_base(s, o);
        float y = qk_f32(j->y)[o], dy = j->dy[o];
        int64_t ties = 0;
        if (s->kind == R_MAX || s->kind == R_MIN)
            for (int64_t r = 0; r < s->ngroup; r++)
                ties += x[base + red_goff(s, r)] == y;
        for (int64_t r = 0; r < s->ngroup; r++) {
            int64_t p = base + red_goff(s, r);
            float v = x[p], gsc;
            switch (s->kind) {
            case R_MEAN: gsc = 1.0f / (float)s->ngroup; break;
            case R_MAX: case R_MIN: gsc = v == y ? 1.0f / (float)ties : 0.0f; break;
            case R_PROD: {
                if (v != 0) {
                    gsc = y / v;
                } else {
                    double pr = 1;
                    for (int64_t q = 0; q < s->ngroup; q++)
                        if (q != r)
                            pr *= x[base + red_goff(s, q)];
                    gsc = (float)pr;
                }
                break;
            }
            case R_L1: gsc = v > 0 ? 1.0f : v < 0 ? -1.0f : 0.0f; break;
            case R_L2: gsc = y > 0 ? v / y : 0.0f; break;
            case R_SUMSQ: gsc = 2.0f * v; break;
            case R_LOGSUM: gsc = expf(-y); break;
            case R_LOGSUMEXP: gsc = expf(v - y); break;
            default: gsc = 1.0f; break;
            }
            j->dx[p] += dy * gsc;
        }
    }
}

static int64_t red_chunk(const red_state *s)
{
    int64_t c = s->ngroup ? QK_LT_GRAIN / 4 / s->ngroup : QK_LT_GRAIN;
    return c < 1 ? 1 : c;
}

static qk_status red_forward(qk_exec *x, qk_node *n)
{
    const red_state *s = n->state;
    red_job j = { s, &qk_in(x->g, n, 0)->t, NULL, &qk_out(x->g, n, 0)->t, NULL, NULL };
    qk_lt_par(x->pool, s->nout, red_chunk(s), red_fwd_range, &j);
    return QK_OK;
}

static qk_status red_backward(qk_exec *x, qk_node *n)
{
    const red_state *s = n->state;
    qk_value *xv = qk_in(x->g, n, 0), *yv = qk_out(x->g, n, 0);
    if (!xv->grad.data || !yv->grad.data || xv->t.dtype != QK_F32)
        return QK_OK;
    red_job j = { s, &xv->t, &yv->t, NULL, qk_f32(&yv->grad), qk_f32(&xv->grad) };
    qk_lt_par(x->pool, s->nout, red_chunk(s), red_bwd_range, &j);
    return QK_OK;
}

#define RED_OP(NAME, TYPE, KIND)                                                                    \
    static qk_status NAME##_init(qk_graph *g, qk_node *n) { return red_init_kind(g, n, KIND); }     \
    const qk_op qk_op_##NAME = { TYPE, NAME##_init, red_infer, NULL, red_forward, red_backward, red_destroy, NULL };

RED_OP(reducemean, "ReduceMean", R_MEAN)
RED_OP(reducesum, "ReduceSum", R_SUM)
RED_OP(reducemax, "ReduceMax", R_MAX)
RED_OP(reducemin, "ReduceMin", R_MIN)
RED_OP(reduceprod, "ReduceProd", R_PROD)
RED_OP(reducel1, "ReduceL1", R_L1)
RED_OP(reducel2, "ReduceL2", R_L2)
RED_OP(reducesumsquare, "ReduceSumSquare", R_SUMSQ)
RED_OP(reducelogsum, "ReduceLogSum", R_LOGSUM)
RED_OP(reducelogsumexp, "ReduceLogSumExp", R_LOGSUMEXP)
