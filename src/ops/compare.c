/* Comparison, logic and selection with numpy broadcasting (ONNX opset
 * 7-21): Equal, Less, Greater, LessOrEqual, GreaterOrEqual (inputs of one
 * dtype, output bool, read and written as uint8 0/1), And, Or, Xor (bool),
 * Not, and Where(cond, X, Y) (cond bool; X, Y of one dtype).
 *
 * Plain loops over the broadcast output (bcast.h). When the output is small
 * and every input is known at infer time (known.h), the result is computed
 * at infer time too, so chains such as Equal -> Where -> Expand that
 * PyTorch exports for shapes are resolved when shapes are planned.
 * Backward: Where only (float32): dX += dy where cond, dY += dy elsewhere,
 * summed over broadcast dims. The others have no gradient (bool output). */
#include "bcast.h"
#include "known.h"

enum { CMP_EQ, CMP_LT, CMP_GT, CMP_LE, CMP_GE, CMP_AND, CMP_OR, CMP_XOR, CMP_NOT, CMP_WHERE };

typedef struct cmp_state {
    qk_kv_state kv; /* first member (known.h) */
    int kind;
} cmp_state;

static qk_status cmp_init_kind(qk_node *n, int kind)
{
    int nin = kind == CMP_NOT ? 1 : kind == CMP_WHERE ? 3 : 2;
    if (n->n_in != nin || n->n_out != 1)
        return qk_error(QK_ERR_FORMAT, "needs %d inputs and 1 output (has %d and %d)", nin, n->n_in, n->n_out);
    for (int i = 0; i < nin; i++)
        if (n->in[i] < 0)
            return qk_error(QK_ERR_FORMAT, "input %d is missing", i);
    cmp_state *s = qk_calloc(1, sizeof *s);
    if (!s)
        return qk_error(QK_ERR_NOMEM, "out of memory");
    s->kind = kind;
    n->state = s;
    return QK_OK;
}

static void cmp_destroy(qk_node *n)
{
    qk_free(n->state);
    n->state = NULL;
}

/* y = op(inputs) over the broadcast shape. */
static void cmp_compute(int kind, int nin, const qk_tensor *const *in, qk_tensor *y)
{
    qk_bcast b;
    qk_bcast_init(&b, y->ndim, y->dims, nin, in);
    int64_t off[QK_BC_MAX];
    int i64 = in[0]->dtype == QK_I64 && kind <= CMP_GE;
    for (int64_t e = 0; e < b.numel; e++) {
        qk_bcast_off(&b, e, off);
        if (kind == CMP_WHERE) {
            int c = ((const uint8_t *)in[0]->data)[off[0]] != 0;
            size_t es = qk_dtype_size(y->dtype);
            memcpy((uint8_t *)y->data + (size_t)e * es,
                   (const uint8_t *)in[c ? 1 : 2]->data + (size_t)off[c ? 1 : 2] * es, es);
            continue;
        }
        int r;
        if (i64) {
            int64_t a = ((const int64_t *)in[0]->data)[off[0]], c = ((const int64_t *)in[1]->data)[off[1]];
            r = kind == CMP_EQ ? a == c : kind == CMP_LT ? a < c : kind == CMP_GT ? a > c : kind == CMP_LE ? a <= c : a >= c;
        } else {
            double a = qk_elem_get(in[0], off[0]), c = nin > 1 ? qk_elem_get(in[1], off[1]) : 0;
            switch (kind) {
            case CMP_EQ: r = a == c; break;
            case CMP_LT: r = a < c; break;
            case CMP_GT: r = a > c; break;
            case CMP_LE: r = a <= c; break;
            case CMP_GE: r = a >= c; break;
            case CMP_AND: r = a != 0 && c != 0; break;
            case CMP_OR: r = a != 0 || c != 0; break;
            case CMP_XOR: r = (a != 0) != (c != 0); break;
            default: r = a == 0; break;
            }
        }
        ((uint8_t *)y->data)[e] = (uint8_t)r;
    }
}

static qk_status cmp_infer(qk_graph *g, qk_node *n)
{
    cmp_state *s = n->state;
    const qk_tensor *t[3] = { NULL, NULL, NULL };
    for (int i = 0; i < n->n_in; i++)
        t[i] = &qk_in(g, n, i)->t;
    int k0 = s->kind == CMP_WHERE ? 1 : 0;
    if (s->kind == CMP_WHERE && t[0]->dtype != QK_U8)
        return qk_error(QK_ERR_FORMAT, "condition '%s' must be bool, got %s", qk_in(g, n, 0)->name,
                        qk_dtype_name(t[0]->dtype));
    if (n->n_in > k0 + 1 && t[k0]->dtype != t[k0 + 1]->dtype)
        return qk_error(QK_ERR_SHAPE, "inputs '%s' (%s) and '%s' (%s) have different data types",
                        qk_in(g, n, k0)->name, qk_dtype_name(t[k0]->dtype), qk_in(g, n, k0 + 1)->name,
                        qk_dtype_name(t[k0 + 1]->dtype));
    int nd = 0;
    int64_t d[QK_MAX_DIMS];
    qk_status st = qk_bcast_shape(n->n_in, t, &nd, d);
    if (st != QK_OK)
        return st;
    qk_tensor *y = &qk_out(g, n, 0)->t;
    qk_tensor_set_shape(y, s->kind == CMP_WHERE ? t[1]->dtype : QK_U8, nd, d);
    /* known value */
    const qk_tensor *kin[3];
    int all = 1;
    for (int i = 0; i < n->n_in && all; i++)
        all = (kin[i] = qk_known(g, qk_in(g, n, i))) != NULL;
    void *buf = all ? qk_kv_begin(n, y) : (s->kv.known = 0, NULL);
    if (buf) {
        cmp_compute(s->kind, n->n_in, kin, &s->kv.t);
        qk_kv_done(n);
    }
    return QK_OK;
}

static qk_status cmp_forward(qk_exec *x, qk_node *n)
{
    const cmp_state *s = n->state;
    const qk_tensor *t[3];
    for (int i = 0; i < n->n_in; i++)
        t[i] = &qk_in(x->g, n, i)->t;
    cmp_compute(s->kind, n->n_in, t, &qk_out(x->g, n, 0)->t);
    return QK_OK;
}

static qk_status where_backward(qk_exec *x, qk_node *n)
{
    qk_graph *g = x->g;
    qk_value *yv = qk_out(g, n, 0), *xv = qk_in(g, n, 1), *zv = qk_in(g, n, 2);
    if (!yv->grad.data || yv->t.dtype != QK_F32 || (!xv->grad.data && !zv->grad.data))
        return QK_OK;
    const qk_tensor *t[3] = { &qk_in(g, n, 0)->t, &xv->t, &zv->t };
    qk_bcast b;
    qk_bcast_init(&b, yv->t.ndim, yv->t.dims, 3, t);
    int64_t off[QK_BC_MAX];
    const uint8_t *c = t[0]->data;
    const float *dy = qk_f32(&yv->grad);
    for (int64_t e = 0; e < b.numel; e++) {
        qk_bcast_off(&b, e, off);
        qk_value *dst = c[off[0]] ? xv : zv;
        if (dst->grad.data)
            qk_f32(&dst->grad)[off[c[off[0]] ? 1 : 2]] += dy[e];
    }
    return QK_OK;
}

#define CMP_OP(NAME, TYPE, KIND, BWD)                                                          \
    static qk_status NAME##_init(qk_graph *g, qk_node *n) { (void)g; return cmp_init_kind(n, KIND); } \
    const qk_op qk_op_##NAME = { TYPE, NAME##_init, cmp_infer, NULL, cmp_forward, BWD, cmp_destroy, NULL };

CMP_OP(equal, "Equal", CMP_EQ, NULL)
CMP_OP(less, "Less", CMP_LT, NULL)
CMP_OP(greater, "Greater", CMP_GT, NULL)
CMP_OP(lessorequal, "LessOrEqual", CMP_LE, NULL)
CMP_OP(greaterorequal, "GreaterOrEqual", CMP_GE, NULL)
CMP_OP(and, "And", CMP_AND, NULL)
CMP_OP(or, "Or", CMP_OR, NULL)
CMP_OP(xor, "Xor", CMP_XOR, NULL)
CMP_OP(not, "Not", CMP_NOT, NULL)
CMP_OP(where, "Where", CMP_WHERE, where_backward)
