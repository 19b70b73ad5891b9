/* Tensor creation and conversion (ONNX opset 7-21): Cast, CastLike,
 * ConstantOfShape, Range.
 *
 *   Cast(to): float32, int8, uint8, int32, int64 and bool (read and written
 *     as uint8 0/1) among themselves; float -> integer truncates toward zero
 *     (numpy astype), -> bool is x != 0. Other target types (float16,
 *     double, string, ...) are QK_ERR_UNSUPPORTED naming the type.
 *     CastLike takes the target type from its second input.
 *   ConstantOfShape(value): output of the shape given by input 0 (int64
 *     1-D, known at infer time, known.h) filled with value's only element
 *     (default float32 0).
 *   Range(start, limit, delta): scalars of one dtype, known at infer time;
 *     max(ceil((limit - start) / delta), 0) elements start + i*delta.
 * Each output is also computed at infer time when its inputs are known and
 * it is small (known.h), so shape chains fold while shapes are planned.
 * Backward: Cast and CastLike between float32 tensors pass dy through. */
#include "bcast.h"
#include "known.h"

#include <math.h>

/* Range outputs longer than this are refused (no model needs them; the
 * element count must stay far from overflowing the shape arithmetic). */
#define RANGE_MAX 1099511627776.0 /* 2^40 */

typedef struct gen_state {
    qk_kv_state kv; /* first member (known.h) */
    qk_dtype to;
    int to_bool;    /* Cast to BOOL: x != 0 */
    double fill;    /* ConstantOfShape */
} gen_state;

static qk_status gen_alloc(qk_node *n, gen_state **out)
{
    gen_state *s = qk_calloc(1, sizeof *s);
    if (!s)
        return qk_error(QK_ERR_NOMEM, "out of memory");
    n->state = s;
    *out = s;
    return QK_OK;
}

static void gen_destroy(qk_node *n)
{
    qk_free(n->state);
    n->state = NULL;
}

static const char *onnx_type_name(int64_t t)
{
    static const char *names[] = { "UNDEFINED", "FLOAT", "UINT8", "INT8", "UINT16", "INT16", "INT32", "INT64",
                                   "STRING", "BOOL", "FLOAT16", "DOUBLE", "UINT32", "UINT64", "COMPLEX64",
                                   "COMPLEX128", "BFLOAT16" };
    return t >= 0 && t < (int64_t)(sizeof names / sizeof names[0]) ? names[t] : "FLOAT8 or newer";
}

/* ONNX TensorProto type -> qkit dtype (bool -> uint8). */
static qk_status cast_target(int64_t to, qk_dtype *dt, int *is_bool)
{
    *is_bool = to == 9;
    switch (to) {
    case 1: *dt = QK_F32; return QK_OK;
    case 2: case 9: *dt = QK_U8; return QK_OK;
    case 3: *dt = QK_I8; return QK_OK;
    case 6: *dt = QK_I32; return QK_OK;
    case 7: *dt = QK_I64; return QK_OK;
    }
    return qk_error(QK_ERR_UNSUPPORTED, "cast to %s (%lld) is not supported (float, int8, uint8, int32, int64 "
                    "and bool are)", onnx_type_name(to), (long long)to);
}

/* ---- Cast / CastLike ---- */
static qk_status cast_init(qk_graph *g, qk_node *n)
{
    (void)g;
    if (n->n_in != 1 || n->in[0] < 0 || n->n_out != 1)
        return qk_error(QK_ERR_FORMAT, "needs 1 input and 1 output");
    if (!qk_node_attr(n, "to"))
        return qk_error(QK_ERR_FORMAT, "attribute 'to' is required");
    gen_state *s = NULL;
    qk_status st = gen_alloc(n, &s);
    if (st == QK_OK)
        st = cast_target(qk_node_int(n, "to", 1), &s->to, &s->to_bool);
    return st;
}

static qk_status castlike_init(qk_graph *g, qk_node *n)
{
    (void)g;
    if (n->n_in != 2 || n->in[0] < 0 || n->in[1] < 0 || n->n_out != 1)
        return qk_error(QK_ERR_FORMAT, "needs 2 inputs and 1 output");
    gen_state *s = NULL;
    return gen_alloc(n, &s);
}

static void cast_compute(const gen_state *s, const qk_tensor *a, qk_tensor *y)
{
    int64_t ne = qk_tensor_numel(a);
    if (a->dtype == y->dtype && !s->to_bool) {
        memcpy(y->data, a->data, qk_tensor_bytes(a));
        return;
    }
    for (int64_t i = 0; i < ne; i++) {
        if (s->to_bool) {
            ((uint8_t *)y->data)[i] = qk_elem_get(a, i) != 0;
        } else if (a->dtype == QK_I64 && y->dtype != QK_F32) {
            int64_t v = ((const int64_t *)a->data)[i];
            switch (y->dtype) {
            case QK_I32: ((int32_t *)y->data)[i] = (int32_t)v; break;
            case QK_I8: ((int8_t *)y->data)[i] = (int8_t)v; break;
            case QK_U8: ((uint8_t *)y->data)[i] = (uint8_t)v; break;
            default: break;
            }
        } else if (a->dtype == QK_F32 && y->dtype != QK_F32) {
            float v = qk_f32(a)[i];
            double t = isnan(v) ? 0 : trunc(v);
            switch (y->dtype) {
            case QK_I64: ((int64_t *)y->data)[i] = t >= 9.2e18 ? INT64_MAX : t <= -9.2e18 ? INT64_MIN : (int64_t)t; break;
            case QK_I32: ((int32_t *)y->data)[i] = (int32_t)(int64_t)t; break;
            case QK_I8: ((int8_t *)y->data)[i] = (int8_t)(int64_t)t; break;
            case QK_U8: ((uint8_t *)y->data)[i] = (uint8_t)(int64_t)t; break;
            default: break;
            }
        } else {
            qk_elem_set(y, i, qk_elem_get(a, i));
        }
    }
}

static qk_status cast_infer(qk_graph *g, qk_node *n)
{
    gen_state *s = n->state;
    if (n->n_in == 2) { /* CastLike */
        s->to = qk_in(g, n, 1)->t.dtype;
        s->to_bool = 0;
    }
    const qk_tensor *a = &qk_in(g, n, 0)->t;
    if (!a->dtype || !qk_dtype_size(a->dtype))
        return qk_error(QK_ERR_UNSUPPORTED, "input '%s' has an unsupported data type", qk_in(g, n, 0)->name);
    qk_tensor *y = &qk_out(g, n, 0)->t;
    qk_tensor_set_shape(y, s->to, a->ndim, a->dims);
    const qk_tensor *ka = qk_known(g, qk_in(g, n, 0));
    s->kv.known = 0;
    if (ka && qk_kv_begin(n, y)) {
        cast_compute(s, ka, &s->kv.t);
        qk_kv_done(n);
    }
    return QK_OK;
}

static qk_status cast_forward(qk_exec *x, qk_node *n)
{
    cast_compute(n->state, &qk_in(x->g, n, 0)->t, &qk_out(x->g, n, 0)->t);
    return QK_OK;
}

static qk_status cast_backward(qk_exec *x, qk_node *n)
{
    qk_value *a = qk_in(x->g, n, 0), *y = qk_out(x->g, n, 0);
    if (a->grad.data && y->grad.data && a->t.dtype == QK_F32 && y->t.dtype == QK_F32)
        qk_lt_acc(x->pool, qk_f32(&a->grad), qk_f32(&y->grad), qk_tensor_numel(&a->t));
    return QK_OK;
}

/* ---- ConstantOfShape ---- */
static qk_status cos_init(qk_graph *g, qk_node *n)
{
    (void)g;
    if (n->n_in != 1 || n->in[0] < 0 || n->n_out != 1)
        return qk_error(QK_ERR_FORMAT, "needs 1 input and 1 output");
    gen_state *s = NULL;
    qk_status st = gen_alloc(n, &s);
    if (st != QK_OK)
        return st;
    s->to = QK_F32;
    const qk_attr *a = qk_node_attr(n, "value");
    if (a && a->t) {
        if (qk_tensor_numel(a->t) != 1)
            return qk_error(QK_ERR_FORMAT, "attribute 'value' must have one element");
        if (!qk_dtype_size(a->t->dtype))
            return qk_error(QK_ERR_UNSUPPORTED, "attribute 'value' has an unsupported data type");
        s->to = a->t->dtype;
        s->fill = qk_elem_get(a->t, 0);
    }
    return QK_OK;
}

static qk_status cos_infer(qk_graph *g, qk_node *n)
{
    gen_state *s = n->state;
    int64_t d[QK_MAX_DIMS];
    int nd = 0;
    qk_status st = qk_known_ints(g, qk_in(g, n, 0), "shape", d, QK_MAX_DIMS, &nd);
    if (st != QK_OK)
        return st;
    for (int i = 0; i < nd; i++)
        if (d[i] < 0)
            return qk_error(QK_ERR_ARG, "shape entry %d is negative (%lld)", i, (long long)d[i]);
    qk_tensor *y = &qk_out(g, n, 0)->t;
    qk_tensor_set_shape(y, s->to, nd, d);
    s->kv.known = 0;
    if (qk_kv_begin(n, y)) {
        for (int64_t i = 0; i < qk_tensor_numel(y); i++)
            qk_elem_set(&s->kv.t, i, s->fill);
        qk_kv_done(n);
    }
    return QK_OK;
}

static qk_status cos_forward(qk_exec *x, qk_node *n)
{
    const gen_state *s = n->state;
    qk_tensor *y = &qk_out(x->g, n, 0)->t;
    int64_t ne = qk_tensor_numel(y);
    if (s->to == QK_I64) {
        int64_t v = (int64_t)s->fill;
        for (int64_t i = 0; i < ne; i++)
            ((int64_t *)y->data)[i] = v;
    } else {
        for (int64_t i = 0; i < ne; i++)
            qk_elem_set(y, i, s->fill);
    }
    return QK_OK;
}

/* ---- Range ---- */
static qk_status range_init(qk_graph *g, qk_node *n)
{
    (void)g;
    if (n->n_in != 3 || n->n_out != 1)
        return qk_error(QK_ERR_FORMAT, "needs 3 inputs (start, limit, delta) and 1 output");
    for (int i = 0; i < 3; i++)
        if (n->in[i] < 0)
            return qk_error(QK_ERR_FORMAT, "input %d is missing", i);
    gen_state *s = NULL;
    return gen_alloc(n, &s);
}

static void range_fill(qk_tensor *y, const qk_tensor *start, const qk_tensor *delta)
{
    int64_t ne = qk_tensor_numel(y);
    if (y->dtype == QK_F32) {
        float a = qk_f32(start)[0], d = qk_f32(delta)[0];
        for (int64_t i = 0; i < ne; i++)
            qk_f32(y)[i] = a + (float)i * d;
        return;
    }
    int64_t a = qk_tensor_int_at(start, 0), d = qk_tensor_int_at(delta, 0);
    for (int64_t i = 0; i < ne; i++)
        qk_elem_set(y, i, (double)(a + i * d));
}

static qk_status range_infer(qk_graph *g, qk_node *n)
{
    gen_state *s = n->state;
    const qk_tensor *k[3];
    static const char *what[3] = { "start", "limit", "delta" };
    for (int i = 0; i < 3; i++) {
        const qk_value *v = qk_in(g, n, i);
        if (!v)
            return qk_error(QK_ERR_FORMAT, "the %s input is missing", what[i]);
        k[i] = qk_known(g, v);
        if (!k[i])
            return qk_error(QK_ERR_UNSUPPORTED, "%s input '%s' must be known when shapes are planned", what[i],
                            v->name);
        if (qk_tensor_numel(k[i]) != 1 || k[i]->dtype != k[0]->dtype)
            return qk_error(QK_ERR_SHAPE, "%s input '%s' must be a scalar of the start's type", what[i], v->name);
    }
    int64_t ne;
    if (k[0]->dtype == QK_F32) {
        double a = qk_f32(k[0])[0], b = qk_f32(k[1])[0], d = qk_f32(k[2])[0];
        if (d == 0)
            return qk_error(QK_ERR_ARG, "delta is 0");
        double c = ceil((b - a) / d);
        if (c > RANGE_MAX)
            return qk_error(QK_ERR_ARG, "a range of %g elements (start %g, limit %g, delta %g) is too large", c, a, b,
                            d);
        ne = c > 0 ? (int64_t)c : 0;
    } else {
        int64_t a = qk_tensor_int_at(k[0], 0), b = qk_tensor_int_at(k[1], 0), d = qk_tensor_int_at(k[2], 0);
        if (d == 0)
            return qk_error(QK_ERR_ARG, "delta is 0");
        __int128 w = (__int128)b - a, c = d > 0 ? (w + d - 1) / d : (-w - d - 1) / -(__int128)d;
        if (c > (__int128)RANGE_MAX)
            return qk_error(QK_ERR_ARG, "a range from %lld to %lld by %lld is too large", (long long)a, (long long)b,
                            (long long)d);
        ne = c > 0 ? (int64_t)c : 0;
    }
    qk_tensor *y = &qk_out(g, n, 0)->t;
    qk_tensor_set_shape(y, k[0]->dtype, 1, &ne);
    s->kv.known = 0;
    if (qk_kv_begin(n, y)) {
        range_fill(&s->kv.t, k[0], k[2]);
        qk_kv_done(n);
    }
    return QK_OK;
}

static qk_status range_forward(qk_exec *x, qk_node *n)
{
    range_fill(&qk_out(x->g, n, 0)->t, &qk_in(x->g, n, 0)->t, &qk_in(x->g, n, 2)->t);
    return QK_OK;
}

const qk_op qk_op_cast = { "Cast", cast_init, cast_infer, NULL, cast_forward, cast_backward, gen_destroy, NULL };
const qk_op qk_op_castlike = { "CastLike", castlike_init, cast_infer, NULL, cast_forward, cast_backward,
                               gen_destroy, NULL };
const qk_op qk_op_constantofshape = { "ConstantOfShape", cos_init, cos_infer, NULL, cos_forward, NULL,
                                      gen_destroy, NULL };
const qk_op qk_op_range = { "Range", range_init, range_infer, NULL, range_forward, NULL, gen_destroy, NULL };
