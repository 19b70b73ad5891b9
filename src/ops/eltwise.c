/* Binary elementwise ops with numpy multidirectional broadcasting (ONNX
 * opset 7-14 Add, Sub, Mul, Div).
 *
 * Shapes: inputs A, B of the same dtype, right-aligned; each output dim is
 * the common size, where a size-1 dim broadcasts. Output dtype = input dtype.
 * Forward: float32 and int8/uint8/int32/int64 (integers wrap modulo 2^bits
 * like numpy; Div truncates toward zero and gives 0 for a zero divisor).
 * Backward (float32): dA = dy * d(op)/dA summed over the dims A was
 * broadcast along (same for B), in double, in a fixed order:
 *   Add: dA = dy, dB = dy      Sub: dA = dy, dB = -dy
 *   Mul: dA = dy*B, dB = dy*A  Div: dA = dy/B, dB = -dy*y/B   (y = A/B)
 *
 * Iteration: the output shape is collapsed (size-1 dims dropped, adjacent
 * dims merged where every operand stays linear), so equal shapes (residual
 * Add of two [N,C,H,W] tensors) become one contiguous vectorizable loop.
 * Work is cut into pieces of at most QK_LT_GRAIN elements (problem size
 * only) and spread over the pool.
 * Known values (known.h): an int64 output of at most QK_KV_MAX elements
 * whose inputs are known is also computed at infer time (the shape
 * arithmetic PyTorch exports, e.g. Shape -> Gather -> Add -> Div -> Mul ->
 * Slice for torch.chunk); the state of all four ops starts with a
 * qk_kv_state. */
/* gcc -O2 vectorizes only loops with no epilogue ("very cheap" model);
 * these memory-bound loops need the cheap model (clang vectorizes at -O2). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("vect-cost-model=cheap")
#endif
#include "fkern.h"
#include "fuse.h"
#include "fvec.h"
#include "bcast.h"
#include "known.h"

enum { EW_ADD, EW_SUB, EW_MUL, EW_DIV };

/* Operand 0 = output (contiguous), 1 = A, 2 = B. Strides in elements. */
typedef struct ew_iter {
    int nd; /* >= 1 */
    int64_t dims[QK_MAX_DIMS];
    int64_t st[3][QK_MAX_DIMS];
    int64_t rows, inner; /* rows = prod(dims[0..nd-1)), inner = dims[nd-1] */
} ew_iter;

static void ew_iter_init(ew_iter *it, const qk_tensor *y, const qk_tensor *a, const qk_tensor *b)
{
    const qk_tensor *t[3] = { y, a, b };
    int ndo = y->ndim;
    int64_t st[3][QK_MAX_DIMS];
    for (int k = 0; k < 3; k++) {
        int64_t s = 1;
        for (int i = ndo - 1; i >= 0; i--) {
            int j = i - (ndo - t[k]->ndim);
            st[k][i] = (j >= 0 && t[k]->dims[j] != 1) ? s : 0;
            if (j >= 0)
                s *= t[k]->dims[j];
        }
    }
    int nd = 0;
    for (int i = 0; i < ndo; i++) {
        if (y->dims[i] == 1)
            continue;
        int merge = nd > 0;
        for (int k = 0; k < 3 && merge; k++)
            merge = it->st[k][nd - 1] == st[k][i] * y->dims[i];
        if (merge) {
            it->dims[nd - 1] *= y->dims[i];
            for (int k = 0; k < 3; k++)
                it->st[k][nd - 1] = st[k][i];
        } else {
            it->dims[nd] = y->dims[i];
            for (int k = 0; k < 3; k++)
                it->st[k][nd] = st[k][i];
            nd++;
        }
    }
    if (nd == 0) {
        nd = 1;
        it->dims[0] = 1;
        for (int k = 0; k < 3; k++)
            it->st[k][0] = 0;
    }
    it->nd = nd;
    it->inner = it->dims[nd - 1];
    it->rows = qk_lt_prod(it->dims, 0, nd - 1);
}

/* Offsets of the first element of `row` for the three operands. */
static inline void ew_row_off(const ew_iter *it, int64_t row, int64_t off[3])
{
    off[0] = off[1] = off[2] = 0;
    for (int i = it->nd - 2; i >= 0; i--) {
        int64_t c = row % it->dims[i];
        row /= it->dims[i];
        for (int k = 0; k < 3; k++)
            off[k] += c * it->st[k][i];
    }
}

/* Pieces: each row is cut into blocks of at most QK_LT_GRAIN columns. */
typedef struct ew_piece_plan {
    int64_t cols, nblk, units, per_task;
} ew_piece_plan;

static ew_piece_plan ew_pieces(const ew_iter *it)
{
    ew_piece_plan p;
    p.cols = it->inner < QK_LT_GRAIN ? it->inner : QK_LT_GRAIN;
    if (p.cols < 1)
        p.cols = 1;
    p.nblk = (it->inner + p.cols - 1) / p.cols;
    p.units = it->rows * p.nblk;
    p.per_task = QK_LT_GRAIN / p.cols;
    if (p.per_task < 1)
        p.per_task = 1;
    return p;
}

typedef struct ew_job {
    const ew_iter *it;
    ew_piece_plan pp;
    int op, which; /* which: 0 = grad of A, 1 = grad of B */
    qk_dtype dt;
    const void *a, *b;
    void *y;
    const float *yv, *dy;
    float *dx;
} ew_job;

/* ---- float forward row kernel ---- */
#define EW_F32_LOOP(EXPR)                                                        \
    do {                                                                         \
        if (sa == 1 && sb == 1) {                                                \
            for (int64_t i = 0; i < cnt; i++) { float av = a[i], bv = b[i]; y[i] = (EXPR); } \
        } else if (sa == 1 && sb == 0) {                                         \
            float bv = b[0];                                                     \
            for (int64_t i = 0; i < cnt; i++) { float av = a[i]; y[i] = (EXPR); } \
        } else if (sa == 0 && sb == 1) {                                         \
            float av = a[0];                                                     \
            for (int64_t i = 0; i < cnt; i++) { float bv = b[i]; y[i] = (EXPR); } \
        } else {                                                                 \
            for (int64_t i = 0; i < cnt; i++) {                                  \
                float av = a[i * sa], bv = b[i * sb]; y[i] = (EXPR);             \
            }                                                                    \
        }                                                                        \
    } while (0)

static void ew_f32_row(int op, int64_t cnt, float *restrict y, const float *restrict a, int64_t sa,
                       const float *restrict b, int64_t sb)
{
    switch (op) {
    case EW_ADD: EW_F32_LOOP(av + bv); break;
    case EW_SUB: EW_F32_LOOP(av - bv); break;
    case EW_MUL: EW_F32_LOOP(av * bv); break;
    case EW_DIV: EW_F32_LOOP(av / bv); break;
    }
}

/* ---- integer forward: wraps (computed in uint64), Div truncates ---- */
static inline int64_t ew_int_op(int op, int64_t a, int64_t b)
{
    switch (op) {
    case EW_ADD: return (int64_t)((uint64_t)a + (uint64_t)b);
    case EW_SUB: return (int64_t)((uint64_t)a - (uint64_t)b);
    case EW_MUL: return (int64_t)((uint64_t)a * (uint64_t)b);
    default:
        if (b == 0)
            return 0;
        if (b == -1)
            return (int64_t)(0 - (uint64_t)a);
        return a / b;
    }
}

#define EW_INT_ROW(T)                                                             \
    do {                                                                          \
        const T *a_ = (const T *)j->a + oa;                                       \
        const T *b_ = (const T *)j->b + ob;                                       \
        T *y_ = (T *)j->y + oy;                                                   \
        for (int64_t i = 0; i < cnt; i++)                                         \
            y_[i] = (T)ew_int_op(j->op, (int64_t)a_[i * sa], (int64_t)b_[i * sb]); \
    } while (0)

static void ew_fwd_task(void *c, int64_t t, int w)
{
    (void)w;
    const ew_job *j = c;
    const ew_iter *it = j->it;
    int64_t u0 = t * j->pp.per_task, u1 = u0 + j->pp.per_task;
    if (u1 > j->pp.units)
        u1 = j->pp.units;
    int nd = it->nd;
    int64_t sa = it->st[1][nd - 1], sb = it->st[2][nd - 1];
    for (int64_t u = u0; u < u1; u++) {
        int64_t row = u / j->pp.nblk, c0 = (u % j->pp.nblk) * j->pp.cols;
        int64_t cnt = it->inner - c0 < j->pp.cols ? it->inner - c0 : j->pp.cols;
        int64_t off[3];
        ew_row_off(it, row, off);
        int64_t oy = off[0] + c0, oa = off[1] + c0 * sa, ob = off[2] + c0 * sb;
        switch (j->dt) {
        case QK_F32:
            ew_f32_row(j->op, cnt, (float *)j->y + oy, (const float *)j->a + oa, sa,
                       (const float *)j->b + ob, sb);
            break;
        case QK_U8: EW_INT_ROW(uint8_t); break;
        case QK_I8: EW_INT_ROW(int8_t); break;
        case QK_I16: EW_INT_ROW(int16_t); break;
        case QK_I32: EW_INT_ROW(int32_t); break;
        case QK_I64: EW_INT_ROW(int64_t); break;
        }
    }
}

static void ew_run(qk_pool *pool, ew_job *j)
{
    int64_t nt = (j->pp.units + j->pp.per_task - 1) / j->pp.per_task;
    if (nt <= 1 || !pool) {
        for (int64_t t = 0; t < nt; t++)
            ew_fwd_task(j, t, 0);
    } else {
        qk_pool_run(pool, nt, ew_fwd_task, j);
    }
}

/* ---- init / infer ---- */
/* State of the four ops (Add uses all of it). */
typedef struct add_state {
    qk_kv_state kv; /* first member (known.h) */
    int flat;       /* float, both inputs of the output's shape, not the same value */
    int relu_out;   /* fused Relu's output value, or -1 */
} add_state;

static qk_status ew_init(qk_graph *g, qk_node *n)
{
    (void)g;
    if (n->n_in != 2 || n->in[0] < 0 || n->in[1] < 0 || n->n_out != 1)
        return qk_error(QK_ERR_FORMAT, "needs 2 inputs and 1 output (has %d and %d)", n->n_in, n->n_out);
    if (!(n->state = qk_calloc(1, sizeof(add_state))))
        return qk_error(QK_ERR_NOMEM, "out of memory");
    return QK_OK;
}

static int ew_kind(const qk_node *n);

/* Known int64 value of the output when both inputs are known. */
static void ew_known(qk_graph *g, qk_node *n, const qk_tensor *y)
{
    add_state *s = n->state;
    s->kv.known = 0;
    const qk_tensor *in[2] = { qk_known(g, qk_in(g, n, 0)), qk_known(g, qk_in(g, n, 1)) };
    if (y->dtype != QK_I64 || !in[0] || !in[1] || in[0]->dtype != QK_I64 || in[1]->dtype != QK_I64 ||
        !qk_kv_begin(n, y))
        return;
    qk_bcast b;
    qk_bcast_init(&b, y->ndim, y->dims, 2, in);
    int64_t off[QK_BC_MAX];
    for (int64_t e = 0; e < b.numel; e++) {
        qk_bcast_off(&b, e, off);
        s->kv.buf.i[e] = ew_int_op(ew_kind(n), ((const int64_t *)in[0]->data)[off[0]],
                                   ((const int64_t *)in[1]->data)[off[1]]);
    }
    qk_kv_done(n);
}

static qk_status ew_infer(qk_graph *g, qk_node *n)
{
    const qk_value *av = qk_in(g, n, 0), *bv = qk_in(g, n, 1);
    const qk_tensor *a = &av->t, *b = &bv->t;
    char sa[128], sb[128];
    if (a->dtype != b->dtype)
        return qk_error(QK_ERR_SHAPE, "inputs '%s' (%s) and '%s' (%s) have different data types",
                        av->name, qk_dtype_name(a->dtype), bv->name, qk_dtype_name(b->dtype));
    if (a->dtype != QK_F32 && !qk_lt_is_int(a->dtype))
        return qk_error(QK_ERR_UNSUPPORTED, "data type %s is not supported", qk_dtype_name(a->dtype));
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    int64_t d[QK_MAX_DIMS];
    for (int i = 0; i < nd; i++) {
        int ia = i - (nd - a->ndim), ib = i - (nd - b->ndim);
        int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
        if (da != db && da != 1 && db != 1)
            return qk_error(QK_ERR_SHAPE, "shapes %s ('%s') and %s ('%s') are not broadcastable",
                            qk_shape_str(a, sa, sizeof sa), av->name, qk_shape_str(b, sb, sizeof sb), bv->name);
        d[i] = da == 1 ? db : da;
    }
    qk_tensor_set_shape(&qk_out(g, n, 0)->t, a->dtype, nd, d);
    ew_known(g, n, &qk_out(g, n, 0)->t);
    return QK_OK;
}

static qk_status ew_forward_op(qk_exec *ex, qk_node *n, int op)
{
    qk_graph *g = ex->g;
    const qk_tensor *a = &qk_in(g, n, 0)->t, *b = &qk_in(g, n, 1)->t;
    qk_tensor *y = &qk_out(g, n, 0)->t;
    if (qk_tensor_numel(y) == 0)
        return QK_OK;
    ew_iter it;
    ew_iter_init(&it, y, a, b);
    ew_job j = { &it, ew_pieces(&it), op, 0, a->dtype, a->data, b->data, y->data, NULL, NULL, NULL };
    ew_run(ex->pool, &j);
    return QK_OK;
}

/* ---- backward ---- */
/* Contribution of one output position to the grad of operand `which`. */
static inline float ew_gcoef(int op, int which, float dy, float a, float b, float y)
{
    switch (op) {
    case EW_ADD: return dy;
    case EW_SUB: return which ? -dy : dy;
    case EW_MUL: return which ? dy * a : dy * b;
    default: return which ? -dy * y / b : dy / b;
    }
}

/* Operand `which` has the output's shape: dx[p] += coef at every position. */
static void ew_bwd_elem_task(void *c, int64_t t, int w)
{
    (void)w;
    const ew_job *j = c;
    const ew_iter *it = j->it;
    int64_t u0 = t * j->pp.per_task, u1 = u0 + j->pp.per_task;
    if (u1 > j->pp.units)
        u1 = j->pp.units;
    int nd = it->nd;
    int64_t sa = it->st[1][nd - 1], sb = it->st[2][nd - 1];
    const float *A = j->a, *B = j->b;
    for (int64_t u = u0; u < u1; u++) {
        int64_t row = u / j->pp.nblk, c0 = (u % j->pp.nblk) * j->pp.cols;
        int64_t cnt = it->inner - c0 < j->pp.cols ? it->inner - c0 : j->pp.cols;
        int64_t off[3];
        ew_row_off(it, row, off);
        int64_t oy = off[0] + c0;
        const float *restrict dy = j->dy + oy, *restrict yv = j->yv + oy;
        const float *restrict a = A + off[1] + c0 * sa, *restrict b = B + off[2] + c0 * sb;
        float *restrict dx = j->dx + oy;
        if (j->op == EW_ADD || (j->op == EW_SUB && j->which == 0)) {
            qk_vadd(dx, dy, cnt);
        } else if (j->op == EW_SUB) {
            for (int64_t i = 0; i < cnt; i++)
                dx[i] -= dy[i];
        } else {
            for (int64_t i = 0; i < cnt; i++)
                dx[i] += ew_gcoef(j->op, j->which, dy[i], a[i * sa], b[i * sb], yv[i]);
        }
    }
}

/* Operand `which` is broadcast: each of its elements sums over the output
 * positions it was broadcast to (kept dims = dims where its stride != 0). */
typedef struct ew_red_job {
    const ew_job *j;
    int nk, nr;
    int64_t kd[QK_MAX_DIMS], rd[QK_MAX_DIMS];      /* kept / reduced sizes */
    int64_t kst[3][QK_MAX_DIMS], rst[3][QK_MAX_DIMS];
    int64_t red_size;
} ew_red_job;

static void ew_bwd_red_range(void *c, int64_t lo, int64_t hi)
{
    const ew_red_job *r = c;
    const ew_job *j = r->j;
    const float *A = j->a, *B = j->b;
    for (int64_t e = lo; e < hi; e++) {
        int64_t base[3] = { 0, 0, 0 }, rem = e;
        for (int i = r->nk - 1; i >= 0; i--) {
            int64_t q = rem % r->kd[i];
            rem /= r->kd[i];
            for (int k = 0; k < 3; k++)
                base[k] += q * r->kst[k][i];
        }
        double sum = 0;
        int64_t idx[QK_MAX_DIMS] = { 0 };
        int64_t o[3] = { base[0], base[1], base[2] };
        int last = r->nr - 1;
        int64_t inner = r->rd[last];
        for (;;) {
            for (int64_t i = 0; i < inner; i++) {
                int64_t py = o[0] + i * r->rst[0][last];
                int64_t pa = o[1] + i * r->rst[1][last], pb = o[2] + i * r->rst[2][last];
                sum += ew_gcoef(j->op, j->which, j->dy[py], A[pa], B[pb], j->yv[py]);
            }
            int d = last - 1;
            while (d >= 0) {
                idx[d]++;
                for (int k = 0; k < 3; k++)
                    o[k] += r->rst[k][d];
                if (idx[d] < r->rd[d])
                    break;
                for (int k = 0; k < 3; k++)
                    o[k] -= r->rst[k][d] * r->rd[d];
                idx[d] = 0;
                d--;
            }
            if (d < 0)
                break;
        }
        j->dx[e] += (float)sum;
    }
}

static void ew_backward_one(qk_exec *ex, const ew_iter *it, ew_job *j, int which)
{
    int op = which + 1; /* operand index in the iterator */
    int reduced = 0;
    for (int i = 0; i < it->nd; i++)
        reduced |= it->st[op][i] == 0 && it->dims[i] > 1;
    j->which = which;
    if (!reduced) {
        int64_t nt = (j->pp.units + j->pp.per_task - 1) / j->pp.per_task;
        if (nt <= 1 || !ex->pool) {
            for (int64_t t = 0; t < nt; t++)
                ew_bwd_elem_task(j, t, 0);
        } else {
            qk_pool_run(ex->pool, nt, ew_bwd_elem_task, j);
        }
        return;
    }
    ew_red_job r;
    memset(&r, 0, sizeof r);
    r.j = j;
    for (int i = 0; i < it->nd; i++) {
        if (it->dims[i] == 1)
            continue;
        int keep = it->st[op][i] != 0;
        int64_t *dst = keep ? &r.kd[r.nk] : &r.rd[r.nr];
        *dst = it->dims[i];
        for (int k = 0; k < 3; k++) {
            if (keep)
                r.kst[k][r.nk] = it->st[k][i];
            else
                r.rst[k][r.nr] = it->st[k][i];
        }
        if (keep)
            r.nk++;
        else
            r.nr++;
    }
    r.red_size = qk_lt_prod(r.rd, 0, r.nr);
    int64_t nelem = qk_lt_prod(r.kd, 0, r.nk);
    int64_t chunk = QK_LT_GRAIN / r.red_size;
    qk_lt_par(ex->pool, nelem, chunk < 1 ? 1 : chunk, ew_bwd_red_range, &r);
}

static qk_status ew_backward_op(qk_exec *ex, qk_node *n, int op)
{
    qk_graph *g = ex->g;
    qk_value *av = qk_in(g, n, 0), *bv = qk_in(g, n, 1), *yv = qk_out(g, n, 0);
    if (yv->t.dtype != QK_F32)
        return qk_error(QK_ERR_UNSUPPORTED, "backward needs float32 data, got %s", qk_dtype_name(yv->t.dtype));
    if (!yv->grad.data || qk_tensor_numel(&yv->t) == 0)
        return QK_OK;
    ew_iter it;
    ew_iter_init(&it, &yv->t, &av->t, &bv->t);
    ew_job j = { &it, ew_pieces(&it), op, 0, QK_F32, av->t.data, bv->t.data, NULL,
                 qk_f32(&yv->t), qk_f32(&yv->grad), NULL };
    if (av->grad.data) {
        j.dx = qk_f32(&av->grad);
        ew_backward_one(ex, &it, &j, 0);
    }
    if (bv->grad.data) {
        j.dx = qk_f32(&bv->grad);
        ew_backward_one(ex, &it, &j, 1);
    }
    return QK_OK;
}

/* ---- Add of two float tensors of the output's shape (residual
 * connections): one flat pass, fresh gradients written instead of cleared
 * and added, and the following Relu fused when fuse.h says so ---- */

static qk_status add_reshape(qk_graph *g, qk_node *n, int training, size_t *ws_bytes)
{
    *ws_bytes = 0;
    if (!n->state && !(n->state = qk_calloc(1, sizeof(add_state))))
        return qk_error(QK_ERR_NOMEM, "out of memory");
    add_state *s = n->state;
    const qk_tensor *a = &qk_in(g, n, 0)->t, *b = &qk_in(g, n, 1)->t, *y = &qk_out(g, n, 0)->t;
    s->flat = a->dtype == QK_F32 && b->dtype == QK_F32 && n->in[0] != n->in[1] &&
              qk_tensor_numel(a) == qk_tensor_numel(y) && qk_tensor_numel(b) == qk_tensor_numel(y) &&
              a->ndim == y->ndim && b->ndim == y->ndim;
    for (int i = 0; s->flat && i < y->ndim; i++)
        s->flat = a->dims[i] == y->dims[i] && b->dims[i] == y->dims[i];
    qk_fused_act act; /* an Add runs only a Relu (fuse.h) */
    int r = s->flat ? qk_act_fused(g, n, training, &act) : -1;
    s->relu_out = r >= 0 ? act.out : -1;
    return QK_OK;
}

static void add_destroy(qk_node *n)
{
    qk_free(n->state);
    n->state = NULL;
}

typedef struct add_job {
    const float *a, *b, *dy, *z;
    float *y, *dx;
    int write;
} add_job;

static void add_fwd_range(void *c, int64_t lo, int64_t hi)
{
    const add_job *j = c;
    (j->z ? qk_fk()->add2_relu : qk_fk()->add2)(j->y + lo, j->a + lo, j->b + lo, hi - lo);
}

static void add_bwd_range(void *c, int64_t lo, int64_t hi)
{
    const add_job *j = c;
    if (j->z)
        qk_fk()->relu_bwd(j->dx + lo, j->dy + lo, j->z + lo, hi - lo, j->write);
    else if (j->write)
        memcpy(j->dx + lo, j->dy + lo, (size_t)(hi - lo) * sizeof(float));
    else
        qk_fk()->add(j->dx + lo, j->dy + lo, hi - lo);
}

static qk_status add_forward(qk_exec *x, qk_node *n)
{
    const add_state *s = n->state;
    if (!s || !s->flat)
        return ew_forward_op(x, n, EW_ADD);
    qk_graph *g = x->g;
    qk_tensor *y = s->relu_out >= 0 ? &g->values[s->relu_out].t : &qk_out(g, n, 0)->t;
    add_job j = { qk_f32(&qk_in(g, n, 0)->t), qk_f32(&qk_in(g, n, 1)->t), NULL, s->relu_out >= 0 ? qk_f32(y) : NULL,
                  qk_f32(y), NULL, 0 };
    qk_lt_par(x->pool, qk_tensor_numel(y), QK_LT_GRAIN, add_fwd_range, &j);
    return QK_OK;
}
static qk_status sub_forward(qk_exec *x, qk_node *n) { return ew_forward_op(x, n, EW_SUB); }
static qk_status mul_forward(qk_exec *x, qk_node *n) { return ew_forward_op(x, n, EW_MUL); }
static qk_status div_forward(qk_exec *x, qk_node *n) { return ew_forward_op(x, n, EW_DIV); }
/* The executor may hand fresh (uncleared) input gradients (grad_zeroed 2,
 * see exec.c): they are written, or cleared before the general path adds. */
static qk_status add_backward(qk_exec *x, qk_node *n)
{
    qk_graph *g = x->g;
    const add_state *s = n->state;
    if (!s || !s->flat) {
        for (int k = 0; k < 2; k++) {
            qk_value *v = qk_in(g, n, k);
            if (v->grad.data && v->grad_zeroed == 2) {
                memset(v->grad.data, 0, (size_t)qk_tensor_numel(&v->grad) * sizeof(float));
                v->grad_zeroed = 1;
            }
        }
        return ew_backward_op(x, n, EW_ADD);
    }
    const qk_value *zv = s->relu_out >= 0 ? &g->values[s->relu_out] : qk_out(g, n, 0);
    if (!zv->grad.data)
        return QK_OK;
    for (int k = 0; k < 2; k++) {
        qk_value *v = qk_in(g, n, k);
        if (!v->grad.data)
            continue;
        add_job j = { NULL, NULL, qk_f32(&zv->grad), s->relu_out >= 0 ? qk_f32(&zv->t) : NULL, NULL,
                      qk_f32(&v->grad), v->grad_zeroed == 2 };
        qk_lt_par(x->pool, qk_tensor_numel(&v->grad), QK_LT_GRAIN, add_bwd_range, &j);
        v->grad_zeroed = 1;
    }
    return QK_OK;
}
static qk_status sub_backward(qk_exec *x, qk_node *n) { return ew_backward_op(x, n, EW_SUB); }
static qk_status mul_backward(qk_exec *x, qk_node *n) { return ew_backward_op(x, n, EW_MUL); }
static qk_status div_backward(qk_exec *x, qk_node *n) { return ew_backward_op(x, n, EW_DIV); }

const qk_op qk_op_add = { "Add", ew_init, ew_infer, add_reshape, add_forward, add_backward, add_destroy, NULL };
const qk_op qk_op_sub = { "Sub", ew_init, ew_infer, NULL, sub_forward, sub_backward, add_destroy, NULL };
const qk_op qk_op_mul = { "Mul", ew_init, ew_infer, NULL, mul_forward, mul_backward, add_destroy, NULL };
const qk_op qk_op_div = { "Div", ew_init, ew_infer, NULL, div_forward, div_backward, add_destroy, NULL };

static int ew_kind(const qk_node *n)
{
    return n->op == &qk_op_add ? EW_ADD : n->op == &qk_op_sub ? EW_SUB : n->op == &qk_op_mul ? EW_MUL : EW_DIV;
}
