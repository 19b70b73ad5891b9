/* Data-movement ops with ONNX semantics (opset 13-17): Identity,
 * Flatten, Reshape, Squeeze, Unsqueeze, Concat, Gather, Shape, Constant.
 *
 * Forward copies (any dtype); backward (float32) adds dy into dx with the
 * same layout mapping. Shape-carrying inputs (Reshape `shape`, Squeeze /
 * Unsqueeze `axes`) must be known when shapes are inferred (known.h: an
 * initializer, a Constant, a small graph input fed as data, or a small
 * int64 tensor that Shape / Gather / Concat / Squeeze / Unsqueeze / ...
 * compute from known inputs at infer time). So the
 * chain PyTorch exports for x.view(x.size(0), -1) with a dynamic batch
 * (Shape -> Gather -> Unsqueeze -> Concat -> Reshape) follows every batch
 * change (qk_graph_set_batch re-runs infer in order).
 * Dropout lives in dropout.c. */
/* gcc -O2 vectorizes only loops with no epilogue ("very cheap" model);
 * these memory-bound loops need the cheap model (clang vectorizes at -O2). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("vect-cost-model=cheap")
#endif
#include "known.h"

/* ---- helpers ---- */
/* Known values (known.h): Shape/Gather/Concat/Squeeze/Unsqueeze keep a
 * qk_kv_state as their state and fill it at infer time when the output is
 * a small int64 tensor and all its data inputs are known. */
typedef qk_kv_state kv_state;
#define known_data qk_known

static qk_status kv_init(qk_node *n, qk_status st)
{
    if (st != QK_OK)
        return st;
    n->state = qk_calloc(1, sizeof(kv_state));
    return n->state ? QK_OK : qk_error(QK_ERR_NOMEM, "out of memory");
}

static void kv_destroy(qk_node *n)
{
    qk_free(n->state);
    n->state = NULL;
}

/* Start an int64 known value for output y (NULL: y is not one). */
static int64_t *kv_begin(qk_node *n, const qk_tensor *y)
{
    return y->dtype == QK_I64 ? qk_kv_begin(n, y) : NULL;
}

/* Input i of n as a known int64 tensor, or NULL. */
static const qk_tensor *kv_input(const qk_graph *g, const qk_node *n, int i)
{
    const qk_value *v = qk_in((qk_graph *)g, n, i);
    const qk_tensor *t = v ? known_data(g, v) : NULL;
    return t && t->dtype == QK_I64 ? t : NULL;
}

/* Copy-type ops (Squeeze/Unsqueeze): same values as input 0 when known. */
static void kv_copy(const qk_graph *g, qk_node *n)
{
    int64_t *b = kv_begin(n, &g->values[n->out[0]].t);
    const qk_tensor *a = kv_input(g, n, 0);
    if (b && a) {
        memcpy(b, a->data, (size_t)qk_tensor_numel(a) * sizeof(int64_t));
        ((kv_state *)n->state)->known = 1;
    }
}

#define known_ints qk_known_ints

typedef struct cp_job {
    uint8_t *dst;
    const uint8_t *src;
} cp_job;

static void cp_range(void *c, int64_t lo, int64_t hi)
{
    cp_job *j = c;
    memcpy(j->dst + lo, j->src + lo, (size_t)(hi - lo));
}

static void par_copy(qk_pool *pool, void *dst, const void *src, size_t bytes)
{
    cp_job j = { dst, src };
    qk_lt_par(pool, (int64_t)bytes, (int64_t)QK_LT_GRAIN * 4, cp_range, &j);
}

/* ---- copy ops: same data, new shape ---- */
static qk_status copy_forward(qk_exec *x, qk_node *n)
{
    qk_graph *g = x->g;
    const qk_tensor *a = &qk_in(g, n, 0)->t;
    qk_tensor *y = &qk_out(g, n, 0)->t;
    par_copy(x->pool, y->data, a->data, qk_tensor_bytes(a));
    return QK_OK;
}

static qk_status copy_backward(qk_exec *x, qk_node *n)
{
    qk_graph *g = x->g;
    qk_value *a = qk_in(g, n, 0), *y = qk_out(g, n, 0);
    if (a->grad.data && y->grad.data && a->t.dtype == QK_F32)
        qk_lt_acc(x->pool, qk_f32(&a->grad), qk_f32(&y->grad), qk_tensor_numel(&a->t));
    return QK_OK;
}

static qk_status need_io(const qk_node *n, int min_in, int max_in, int min_out, int max_out)
{
    if (n->n_in < min_in || n->n_in > max_in || (min_in > 0 && n->in[0] < 0))
        return qk_error(QK_ERR_FORMAT, "expects %d..%d inputs, got %d", min_in, max_in, n->n_in);
    if (n->n_out < min_out || n->n_out > max_out)
        return qk_error(QK_ERR_FORMAT, "expects %d..%d outputs, got %d", min_out, max_out, n->n_out);
    return QK_OK;
}

static qk_status identity_init(qk_graph *g, qk_node *n) { (void)g; return need_io(n, 1, 1, 1, 1); }

static qk_status identity_infer(qk_graph *g, qk_node *n)
{
    qk_lt_same_shape(&qk_out(g, n, 0)->t, &qk_in(g, n, 0)->t);
    return QK_OK;
}

static qk_status flatten_init(qk_graph *g, qk_node *n) { (void)g; return need_io(n, 1, 1, 1, 1); }

static qk_status flatten_infer(qk_graph *g, qk_node *n)
{
    const qk_tensor *a = &qk_in(g, n, 0)->t;
    int64_t axis = qk_node_int(n, "axis", 1);
    int ax = qk_lt_axis(axis, a->ndim, 1);
    if (ax < 0)
        return qk_error(QK_ERR_ARG, "axis %lld out of range for rank %d", (long long)axis, a->ndim);
    int64_t d[2] = { qk_lt_prod(a->dims, 0, ax), qk_lt_prod(a->dims, ax, a->ndim) };
    qk_tensor_set_shape(&qk_out(g, n, 0)->t, a->dtype, 2, d);
    return QK_OK;
}

static qk_status reshape_init(qk_graph *g, qk_node *n)
{
    (void)g;
    qk_status st = need_io(n, 2, 2, 1, 1);
    if (st == QK_OK && n->in[1] < 0)
        return qk_error(QK_ERR_FORMAT, "the shape input is required");
    return kv_init(n, st);
}

/* ONNX Reshape (opset 14): 0 copies the input dim at that index (unless
 * allowzero = 1, where 0 is a real zero), -1 is inferred (at most one). */
static qk_status reshape_infer(qk_graph *g, qk_node *n)
{
    const qk_value *av = qk_in(g, n, 0);
    const qk_tensor *a = &av->t;
    int64_t s[QK_MAX_DIMS];
    int ns = 0;
    qk_status st = known_ints(g, qk_in(g, n, 1), "shape", s, QK_MAX_DIMS, &ns);
    if (st != QK_OK)
        return st;
    int allowzero = (int)qk_node_int(n, "allowzero", 0);
    char sa[128];
    int neg = -1, has_zero = 0;
    int64_t known = 1;
    for (int i = 0; i < ns; i++) {
        if (s[i] == -1) {
            if (neg >= 0)
                return qk_error(QK_ERR_ARG, "target shape has more than one -1");
            neg = i;
            continue;
        }
        if (s[i] < -1)
            return qk_error(QK_ERR_ARG, "target shape has invalid entry %lld", (long long)s[i]);
        if (s[i] == 0 && !allowzero) {
            if (i >= a->ndim)
                return qk_error(QK_ERR_SHAPE, "target entry %d is 0 but input %s has rank %d", i,
                                qk_shape_str(a, sa, sizeof sa), a->ndim);
            s[i] = a->dims[i];
        }
        has_zero |= s[i] == 0;
        if (__builtin_mul_overflow(known, s[i], &known))
            return qk_error(QK_ERR_ARG, "target shape entry %lld overflows the element count", (long long)s[i]);
    }
    int64_t total = qk_tensor_numel(a);
    if (neg >= 0) {
        if (has_zero || known == 0)
            return qk_error(QK_ERR_ARG, "target shape has -1 together with a zero dimension");
        if (total % known != 0)
            return qk_error(QK_ERR_SHAPE, "cannot reshape %s (%lld elements) with -1 and known product %lld",
                            qk_shape_str(a, sa, sizeof sa), (long long)total, (long long)known);
        s[neg] = total / known;
        known *= s[neg];
    }
    if (known != total) {
        qk_tensor tt;
        qk_tensor_set_shape(&tt, a->dtype, ns, s);
        char sb[128];
        return qk_error(QK_ERR_SHAPE, "cannot reshape '%s' %s (%lld elements) to %s (%lld elements)", av->name,
                        qk_shape_str(a, sa, sizeof sa), (long long)total, qk_shape_str(&tt, sb, sizeof sb),
                        (long long)known);
    }
    qk_tensor_set_shape(&qk_out(g, n, 0)->t, a->dtype, ns, s);
    kv_copy(g, n);
    return QK_OK;
}

/* Axes of Squeeze/Unsqueeze: input 1 (opset 13) or attribute (opset < 13). */
static qk_status get_axes(qk_graph *g, qk_node *n, int64_t *axes, int *na)
{
    const qk_value *v = qk_in(g, n, 1);
    if (v)
        return known_ints(g, v, "axes", axes, QK_MAX_DIMS, na);
    *na = qk_node_ints(n, "axes", axes, QK_MAX_DIMS);
    return QK_OK;
}

static qk_status squeeze_init(qk_graph *g, qk_node *n) { (void)g; return kv_init(n, need_io(n, 1, 2, 1, 1)); }

static qk_status squeeze_infer(qk_graph *g, qk_node *n)
{
    const qk_tensor *a = &qk_in(g, n, 0)->t;
    int64_t axes[QK_MAX_DIMS];
    int na = 0;
    qk_status st = get_axes(g, n, axes, &na);
    if (st != QK_OK)
        return st;
    int drop[QK_MAX_DIMS] = { 0 };
    char sa[128];
    if (na == 0) {
        for (int i = 0; i < a->ndim; i++)
            drop[i] = a->dims[i] == 1;
    }
    for (int k = 0; k < na; k++) {
        int ax = qk_lt_axis(axes[k], a->ndim, 0);
        if (ax < 0)
            return qk_error(QK_ERR_ARG, "axis %lld out of range for rank %d", (long long)axes[k], a->ndim);
        if (a->dims[ax] != 1)
            return qk_error(QK_ERR_SHAPE, "cannot squeeze axis %d of %s (size %lld)", ax,
                            qk_shape_str(a, sa, sizeof sa), (long long)a->dims[ax]);
        drop[ax] = 1;
    }
    int64_t d[QK_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < a->ndim; i++)
        if (!drop[i])
            d[nd++] = a->dims[i];
    qk_tensor_set_shape(&qk_out(g, n, 0)->t, a->dtype, nd, d);
    kv_copy(g, n);
    return QK_OK;
}

static qk_status unsqueeze_init(qk_graph *g, qk_node *n) { (void)g; return kv_init(n, need_io(n, 1, 2, 1, 1)); }

static qk_status unsqueeze_infer(qk_graph *g, qk_node *n)
{
    const qk_tensor *a = &qk_in(g, n, 0)->t;
    int64_t axes[QK_MAX_DIMS];
    int na = 0;
    qk_status st = get_axes(g, n, axes, &na);
    if (st != QK_OK)
        return st;
    int nd = a->ndim + na;
    if (na == 0)
        return qk_error(QK_ERR_ARG, "no axes given");
    if (nd > QK_MAX_DIMS)
        return qk_error(QK_ERR_SHAPE, "output rank %d exceeds %d", nd, QK_MAX_DIMS);
    int ins[QK_MAX_DIMS] = { 0 };
    for (int k = 0; k < na; k++) {
        int ax = qk_lt_axis(axes[k], nd, 0);
        if (ax < 0)
            return qk_error(QK_ERR_ARG, "axis %lld out of range for output rank %d", (long long)axes[k], nd);
        if (ins[ax])
            return qk_error(QK_ERR_ARG, "axis %d given twice", ax);
        ins[ax] = 1;
    }
    int64_t d[QK_MAX_DIMS];
    for (int i = 0, j = 0; i < nd; i++)
        d[i] = ins[i] ? 1 : a->dims[j++];
    qk_tensor_set_shape(&qk_out(g, n, 0)->t, a->dtype, nd, d);
    kv_copy(g, n);
    return QK_OK;
}

/* ---- Concat ---- */
static qk_status concat_init(qk_graph *g, qk_node *n)
{
    (void)g;
    if (n->n_in < 1 || n->n_out != 1)
        return qk_error(QK_ERR_FORMAT, "expects at least 1 input and 1 output");
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i] < 0)
            return qk_error(QK_ERR_FORMAT, "input %d is missing", i);
    if (!qk_node_attr(n, "axis"))
        return qk_error(QK_ERR_FORMAT, "attribute 'axis' is required");
    return kv_init(n, QK_OK);
}

static qk_status concat_infer(qk_graph *g, qk_node *n)
{
    const qk_value *v0 = qk_in(g, n, 0);
    const qk_tensor *a = &v0->t;
    int64_t axis = qk_node_int(n, "axis", 0);
    int ax = qk_lt_axis(axis, a->ndim, 0);
    if (ax < 0)
        return qk_error(QK_ERR_ARG, "axis %lld out of range for rank %d", (long long)axis, a->ndim);
    int64_t d[QK_MAX_DIMS];
    memcpy(d, a->dims, sizeof d);
    d[ax] = 0;
    char s0[128], s1[128];
    for (int i = 0; i < n->n_in; i++) {
        const qk_value *v = qk_in(g, n, i);
        const qk_tensor *b = &v->t;
        int ok = b->dtype == a->dtype && b->ndim == a->ndim;
        for (int k = 0; ok && k < a->ndim; k++)
            ok = k == ax || b->dims[k] == a->dims[k];
        if (!ok)
            return qk_error(QK_ERR_SHAPE, "input '%s' %s %s does not match input '%s' %s %s except on axis %d",
                            v->name, qk_dtype_name(b->dtype), qk_shape_str(b, s1, sizeof s1), v0->name,
                            qk_dtype_name(a->dtype), qk_shape_str(a, s0, sizeof s0), ax);
        d[ax] += b->dims[ax];
    }
    qk_tensor *y = &qk_out(g, n, 0)->t;
    qk_tensor_set_shape(y, a->dtype, a->ndim, d);
    int64_t *kb = kv_begin(n, y);
    int all = kb != NULL;
    for (int i = 0; all && i < n->n_in; i++)
        all = kv_input(g, n, i) != NULL;
    if (all) { /* known value: concatenate the (small) inputs */
        int64_t inner = qk_lt_prod(d, ax + 1, a->ndim), outer = qk_lt_prod(d, 0, ax), w = 0;
        for (int64_t o = 0; o < outer; o++)
            for (int i = 0; i < n->n_in; i++) {
                const qk_tensor *t = kv_input(g, n, i);
                int64_t len = t->dims[ax] * inner;
                memcpy(kb + w, (const int64_t *)t->data + o * len, (size_t)len * sizeof(int64_t));
                w += len;
            }
        ((kv_state *)n->state)->known = 1;
    }
    return QK_OK;
}

typedef struct cat_job {
    qk_graph *g;
    const qk_node *n;
    int ax, grad;
    int64_t inner, out_row; /* elements after axis; output axis*inner */
    size_t es;
} cat_job;

/* One task per range of outer rows: copy each input's slab (or add grads back). */
static void cat_range(void *c, int64_t lo, int64_t hi)
{
    const cat_job *j = c;
    for (int64_t o = lo; o < hi; o++) {
        int64_t off = 0;
        for (int i = 0; i < j->n->n_in; i++) {
            qk_value *v = &j->g->values[j->n->in[i]];
            int64_t len = v->t.dims[j->ax] * j->inner;
            qk_value *y = &j->g->values[j->n->out[0]];
            if (!j->grad) {
                memcpy((uint8_t *)y->t.data + (size_t)(o * j->out_row + off) * j->es,
                       (const uint8_t *)v->t.data + (size_t)(o * len) * j->es, (size_t)len * j->es);
            } else if (v->grad.data) {
                float *dx = qk_f32(&v->grad) + o * len;
                const float *dy = qk_f32(&y->grad) + o * j->out_row + off;
                for (int64_t e = 0; e < len; e++)
                    dx[e] += dy[e];
            }
            off += len;
        }
    }
}

static qk_status concat_run(qk_exec *x, qk_node *n, int grad)
{
    qk_graph *g = x->g;
    const qk_tensor *y = &qk_out(g, n, 0)->t;
    if (grad && !qk_out(g, n, 0)->grad.data)
        return QK_OK;
    cat_job j = { g, n, 0, grad, 0, 0, qk_dtype_size(y->dtype) };
    j.ax = qk_lt_axis(qk_node_int(n, "axis", 0), y->ndim, 0);
    j.inner = qk_lt_prod(y->dims, j.ax + 1, y->ndim);
    j.out_row = y->dims[j.ax] * j.inner;
    int64_t outer = qk_lt_prod(y->dims, 0, j.ax);
    if (j.out_row == 0)
        return QK_OK;
    int64_t chunk = QK_LT_GRAIN / j.out_row;
    qk_lt_par(x->pool, outer, chunk < 1 ? 1 : chunk, cat_range, &j);
    return QK_OK;
}

static qk_status concat_forward(qk_exec *x, qk_node *n) { return concat_run(x, n, 0); }
static qk_status concat_backward(qk_exec *x, qk_node *n) { return concat_run(x, n, 1); }

/* ---- Gather (axis; int64/int32 indices, negative counts from the end) ---- */
static qk_status gather_init(qk_graph *g, qk_node *n)
{
    (void)g;
    qk_status st = need_io(n, 2, 2, 1, 1);
    if (st == QK_OK && n->in[1] < 0)
        return qk_error(QK_ERR_FORMAT, "the indices input is required");
    return kv_init(n, st);
}

static qk_status gather_infer(qk_graph *g, qk_node *n)
{
    const qk_tensor *a = &qk_in(g, n, 0)->t, *idx = &qk_in(g, n, 1)->t;
    int64_t axis = qk_node_int(n, "axis", 0);
    int ax = qk_lt_axis(axis, a->ndim, 0);
    if (ax < 0)
        return qk_error(QK_ERR_ARG, "axis %lld out of range for rank %d", (long long)axis, a->ndim);
    if (idx->dtype != QK_I64 && idx->dtype != QK_I32)
        return qk_error(QK_ERR_FORMAT, "indices must be int64 or int32, got %s", qk_dtype_name(idx->dtype));
    int nd = a->ndim - 1 + idx->ndim;
    if (nd > QK_MAX_DIMS)
        return qk_error(QK_ERR_SHAPE, "output rank %d exceeds %d", nd, QK_MAX_DIMS);
    int64_t d[QK_MAX_DIMS];
    int k = 0;
    for (int i = 0; i < ax; i++)
        d[k++] = a->dims[i];
    for (int i = 0; i < idx->ndim; i++)
        d[k++] = idx->dims[i];
    for (int i = ax + 1; i < a->ndim; i++)
        d[k++] = a->dims[i];
    qk_tensor *y = &qk_out(g, n, 0)->t;
    qk_tensor_set_shape(y, a->dtype, nd, d);
    int64_t *kb = kv_begin(n, y);
    const qk_tensor *ka = kv_input(g, n, 0), *ki = known_data(g, qk_in(g, n, 1));
    if (kb && ka && ki) { /* known value (e.g. one dim of a Shape output) */
        int64_t outer = qk_lt_prod(a->dims, 0, ax), inner = qk_lt_prod(a->dims, ax + 1, a->ndim);
        int64_t na = a->dims[ax], ni = qk_tensor_numel(ki), w = 0;
        for (int64_t o = 0; o < outer; o++)
            for (int64_t t = 0; t < ni; t++) {
                int64_t q = qk_tensor_int_at(ki, t);
                q += q < 0 ? na : 0;
                if (q < 0 || q >= na)
                    return QK_OK; /* left unknown; forward reports the bad index */
                for (int64_t e = 0; e < inner; e++)
                    kb[w++] = ((const int64_t *)ka->data)[(o * na + q) * inner + e];
            }
        ((kv_state *)n->state)->known = 1;
    }
    return QK_OK;
}

static qk_status gather_run(qk_exec *x, qk_node *n, int grad)
{
    qk_graph *g = x->g;
    qk_value *av = qk_in(g, n, 0), *yv = qk_out(g, n, 0);
    const qk_tensor *a = &av->t, *idx = &qk_in(g, n, 1)->t;
    if (grad && (!av->grad.data || !yv->grad.data || a->dtype != QK_F32))
        return QK_OK;
    int ax = qk_lt_axis(qk_node_int(n, "axis", 0), a->ndim, 0);
    int64_t outer = qk_lt_prod(a->dims, 0, ax), inner = qk_lt_prod(a->dims, ax + 1, a->ndim);
    int64_t na = a->dims[ax], ni = qk_tensor_numel(idx);
    size_t es = qk_dtype_size(a->dtype);
    for (int64_t t = 0; t < ni; t++) {
        int64_t k = qk_tensor_int_at(idx, t);
        if (k < -na || k >= na)
            return qk_error(QK_ERR_ARG, "index %lld out of range for axis %d of size %lld", (long long)k, ax,
                            (long long)na);
    }
    for (int64_t o = 0; o < outer; o++)
        for (int64_t t = 0; t < ni; t++) {
            int64_t k = qk_tensor_int_at(idx, t);
            k += k < 0 ? na : 0;
            int64_t src = (o * na + k) * inner, dst = (o * ni + t) * inner;
            if (!grad) {
                memcpy((uint8_t *)yv->t.data + dst * es, (const uint8_t *)a->data + src * es, (size_t)inner * es);
            } else {
                float *dx = qk_f32(&av->grad) + src;
                const float *dy = qk_f32(&yv->grad) + dst;
                for (int64_t e = 0; e < inner; e++)
                    dx[e] += dy[e];
            }
        }
    return QK_OK;
}

static qk_status gather_forward(qk_exec *x, qk_node *n) { return gather_run(x, n, 0); }
static qk_status gather_backward(qk_exec *x, qk_node *n) { return gather_run(x, n, 1); }

/* ---- Shape (opset 15 start/end, clamped) ---- */
static qk_status shape_init(qk_graph *g, qk_node *n) { (void)g; return kv_init(n, need_io(n, 1, 1, 1, 1)); }

static void shape_range(const qk_node *n, int r, int *s, int *e)
{
    int64_t a = qk_node_int(n, "start", 0), b = qk_node_int(n, "end", r);
    a += a < 0 ? r : 0;
    b += b < 0 ? r : 0;
    a = a < 0 ? 0 : a > r ? r : a;
    b = b < 0 ? 0 : b > r ? r : b;
    *s = (int)a;
    *e = (int)(b < a ? a : b);
}

static qk_status shape_infer(qk_graph *g, qk_node *n)
{
    const qk_tensor *a = &qk_in(g, n, 0)->t;
    int s, e;
    shape_range(n, a->ndim, &s, &e);
    int64_t d = e - s;
    qk_tensor *y = &qk_out(g, n, 0)->t;
    qk_tensor_set_shape(y, QK_I64, 1, &d);
    int64_t *kb = kv_begin(n, y);
    for (int i = s; i < e; i++)
        kb[i - s] = a->dims[i];
    ((kv_state *)n->state)->known = 1;
    return QK_OK;
}

static qk_status shape_forward(qk_exec *x, qk_node *n)
{
    const qk_tensor *a = &qk_in(x->g, n, 0)->t;
    int s, e;
    shape_range(n, a->ndim, &s, &e);
    int64_t *y = qk_out(x->g, n, 0)->t.data;
    for (int i = s; i < e; i++)
        y[i - s] = a->dims[i];
    return QK_OK;
}

/* ---- Constant: value (tensor), value_float(s), value_int(s) ---- */
static qk_status constant_init(qk_graph *g, qk_node *n)
{
    (void)g;
    qk_status st = need_io(n, 0, 0, 1, 1);
    if (st != QK_OK)
        return st;
    qk_tensor *t = qk_calloc(1, sizeof *t);
    if (!t)
        return qk_error(QK_ERR_NOMEM, "out of memory");
    const qk_attr *at;
    if ((at = qk_node_attr(n, "value")) && at->t) {
        st = qk_tensor_clone(t, at->t);
    } else if ((at = qk_node_attr(n, "value_float"))) {
        st = qk_tensor_alloc(t, QK_F32, 0, NULL);
        if (st == QK_OK)
            qk_f32(t)[0] = at->f;
    } else if ((at = qk_node_attr(n, "value_floats"))) {
        int64_t d = at->n;
        st = qk_tensor_alloc(t, QK_F32, 1, &d);
        if (st == QK_OK && at->n)
            memcpy(t->data, at->floats, (size_t)at->n * sizeof(float));
    } else if ((at = qk_node_attr(n, "value_int"))) {
        st = qk_tensor_alloc(t, QK_I64, 0, NULL);
        if (st == QK_OK)
            ((int64_t *)t->data)[0] = at->i;
    } else if ((at = qk_node_attr(n, "value_ints"))) {
        int64_t d = at->n;
        st = qk_tensor_alloc(t, QK_I64, 1, &d);
        if (st == QK_OK && at->n)
            memcpy(t->data, at->ints, (size_t)at->n * sizeof(int64_t));
    } else {
        st = qk_error(QK_ERR_UNSUPPORTED, "needs a 'value', 'value_float(s)' or 'value_int(s)' attribute "
                                          "(sparse and string constants are not supported)");
    }
    if (st != QK_OK) {
        qk_tensor_free(t);
        qk_free(t);
        return st;
    }
    n->state = t;
    return QK_OK;
}

static void constant_destroy(qk_node *n)
{
    if (n->state) {
        qk_tensor_free(n->state);
        qk_free(n->state);
        n->state = NULL;
    }
}

static qk_status constant_infer(qk_graph *g, qk_node *n)
{
    qk_lt_same_shape(&qk_out(g, n, 0)->t, n->state);
    return QK_OK;
}

static qk_status constant_forward(qk_exec *x, qk_node *n)
{
    const qk_tensor *t = n->state;
    memcpy(qk_out(x->g, n, 0)->t.data, t->data, qk_tensor_bytes(t));
    return QK_OK;
}

const qk_op qk_op_identity = { "Identity", identity_init, identity_infer, NULL, copy_forward, copy_backward, NULL, NULL };
const qk_op qk_op_flatten = { "Flatten", flatten_init, flatten_infer, NULL, copy_forward, copy_backward, NULL, NULL };
const qk_op qk_op_reshape = { "Reshape", reshape_init, reshape_infer, NULL, copy_forward, copy_backward,
                              kv_destroy, NULL };
const qk_op qk_op_squeeze = { "Squeeze", squeeze_init, squeeze_infer, NULL, copy_forward, copy_backward,
                              kv_destroy, NULL };
const qk_op qk_op_unsqueeze = { "Unsqueeze", unsqueeze_init, unsqueeze_infer, NULL, copy_forward, copy_backward,
                                kv_destroy, NULL };
const qk_op qk_op_concat = { "Concat", concat_init, concat_infer, NULL, concat_forward, concat_backward,
                             kv_destroy, NULL };
const qk_op qk_op_gather = { "Gather", gather_init, gather_infer, NULL, gather_forward, gather_backward,
                             kv_destroy, NULL };
const qk_op qk_op_shape = { "Shape", shape_init, shape_infer, NULL, shape_forward, NULL, kv_destroy, NULL };
const qk_op qk_op_constant = { "Constant", constant_init, constant_infer, NULL, constant_forward, NULL,
                               constant_destroy, NULL };
