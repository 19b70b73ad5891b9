/* Known values at infer time: see known.h. */
#include "known.h"

extern const qk_op qk_op_constant, qk_op_shape, qk_op_gather, qk_op_concat, qk_op_squeeze, qk_op_unsqueeze;
extern const qk_op qk_op_cast, qk_op_slice, qk_op_range, qk_op_constantofshape, qk_op_equal, qk_op_where,
    qk_op_less, qk_op_greater, qk_op_castlike, qk_op_reshape, qk_op_transpose,
    qk_op_add, qk_op_sub, qk_op_mul, qk_op_div;

/* Operators whose state starts with a qk_kv_state. */
static int kv_producer(const qk_op *op)
{
    static const qk_op *const list[] = {
        &qk_op_shape, &qk_op_gather, &qk_op_concat, &qk_op_squeeze, &qk_op_unsqueeze, &qk_op_cast,
        &qk_op_slice, &qk_op_range, &qk_op_constantofshape, &qk_op_equal, &qk_op_where, &qk_op_less,
        &qk_op_greater, &qk_op_castlike, &qk_op_reshape, &qk_op_transpose,
        &qk_op_add, &qk_op_sub, &qk_op_mul, &qk_op_div,
    };
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++)
        if (op == list[i])
            return 1;
    return 0;
}

const qk_tensor *qk_known(const qk_graph *g, const qk_value *v)
{
    if (!v)
        return NULL;
    if ((v->kind == QK_VALUE_CONST || v->kind == QK_VALUE_PARAM) && v->t.data)
        return &v->t;
    if (v->kind == QK_VALUE_INPUT && v->t.data && qk_tensor_numel(&v->t) <= QK_KV_MAX)
        return &v->t;
    if (v->producer >= 0) {
        const qk_node *p = &g->nodes[v->producer];
        if (p->op == &qk_op_constant && p->state)
            return p->state;
        if (p->op && kv_producer(p->op) && p->state && ((const qk_kv_state *)p->state)->known &&
            p->out[0] == (int)(v - g->values))
            return &((const qk_kv_state *)p->state)->t;
    }
    return NULL;
}

void *qk_kv_begin(qk_node *n, const qk_tensor *y)
{
    qk_kv_state *s = n->state;
    s->known = 0;
    if ((y->dtype != QK_I64 && y->dtype != QK_F32 && y->dtype != QK_U8) || qk_tensor_numel(y) > QK_KV_MAX)
        return NULL;
    qk_tensor_set_shape(&s->t, y->dtype, y->ndim, y->dims);
    s->t.data = s->buf.i;
    s->t.owned = 0;
    return s->buf.i;
}

double qk_known_at(const qk_tensor *t, int64_t i)
{
    if (t->dtype == QK_F32)
        return qk_f32(t)[i];
    return (double)qk_tensor_int_at(t, i);
}

static qk_status known_vec(const qk_graph *g, const qk_value *v, const char *what, int max, int *n, int ints,
                           const qk_tensor **out)
{
    if (!v)
        return qk_error(QK_ERR_FORMAT, "%s input is missing", what);
    const qk_tensor *t = qk_known(g, v);
    if (!t)
        return qk_error(QK_ERR_UNSUPPORTED, "%s input '%s' must be known when shapes are planned (an "
                        "initializer, a Constant, or computed from input shapes)", what, v->name);
    if (t->dtype != QK_I64 && t->dtype != QK_I32 && (ints || t->dtype != QK_F32))
        return qk_error(QK_ERR_FORMAT, "%s input '%s' must be %s, got %s", what, v->name,
                        ints ? "int64" : "float or int64", qk_dtype_name(t->dtype));
    if (t->ndim > 1)
        return qk_error(QK_ERR_SHAPE, "%s input '%s' must be 1-D, got rank %d", what, v->name, t->ndim);
    int64_t m = qk_tensor_numel(t);
    if (m > max)
        return qk_error(QK_ERR_SHAPE, "%s input '%s' has %lld entries (at most %d supported)", what, v->name,
                        (long long)m, max);
    *n = (int)m;
    *out = t;
    return QK_OK;
}

qk_status qk_known_ints(const qk_graph *g, const qk_value *v, const char *what, int64_t *out, int max, int *n)
{
    const qk_tensor *t;
    qk_status st = known_vec(g, v, what, max, n, 1, &t);
    for (int i = 0; st == QK_OK && i < *n; i++)
        out[i] = qk_tensor_int_at(t, i);
    return st;
}

qk_status qk_known_floats(const qk_graph *g, const qk_value *v, const char *what, float *out, int max, int *n)
{
    const qk_tensor *t;
    qk_status st = known_vec(g, v, what, max, n, 0, &t);
    for (int i = 0; st == QK_OK && i < *n; i++)
        out[i] = (float)qk_known_at(t, i);
    return st;
}
