/* Pad with ONNX semantics (opset 2-21): modes constant, reflect, edge, wrap.
 * pads: attribute `pads` (opset < 11) or input 1 (int64 [2*r], or [2*k]
 * with the axes input 3 of opset 18), known at infer time (known.h): begin
 * pads of every axis, then end pads; negative pads crop. Constant value:
 * attribute `value` (opset < 11) or optional input 2 (scalar of x's type,
 * read at forward; default 0). Any dtype forward (constant, edge, wrap;
 * reflect too), float32 backward.
 * Output index o on an axis of size d with begin pad b reads input
 * i = o - b, mapped into [0, d) by the mode: edge clamps, reflect mirrors
 * without repeating the edge, wrap takes i mod d; constant writes the value
 * when i is outside. Forward runs over output rows on the pool; backward
 * adds dy into dx along the same map serially (edge/reflect/wrap read an
 * input element several times). */
#include "bcast.h"
#include "known.h"

enum { PAD_CONST, PAD_REFLECT, PAD_EDGE, PAD_WRAP };

typedef struct pad_state {
    int mode;
    int nd;
    int64_t b[QK_MAX_DIMS];              /* begin pads */
    int64_t in_d[QK_MAX_DIMS], out_d[QK_MAX_DIMS], ist[QK_MAX_DIMS];
} pad_state;

static qk_status pad_init(qk_graph *g, qk_node *n)
{
    (void)g;
    if (n->n_in < 1 || n->n_in > 4 || n->in[0] < 0 || n->n_out != 1)
        return qk_error(QK_ERR_FORMAT, "needs 1..4 inputs and 1 output (has %d and %d)", n->n_in, n->n_out);
    pad_state *s = qk_calloc(1, sizeof *s);
    if (!s)
        return qk_error(QK_ERR_NOMEM, "out of memory");
    n->state = s;
    const char *m = qk_node_string(n, "mode", "constant");
    if (strcmp(m, "constant") == 0)
        s->mode = PAD_CONST;
    else if (strcmp(m, "reflect") == 0)
        s->mode = PAD_REFLECT;
    else if (strcmp(m, "edge") == 0)
        s->mode = PAD_EDGE;
    else if (strcmp(m, "wrap") == 0)
        s->mode = PAD_WRAP;
    else
        return qk_error(QK_ERR_UNSUPPORTED, "mode \"%s\" is not supported (constant, reflect, edge, wrap are)", m);
    if (n->n_in == 1 && !qk_node_attr(n, "pads"))
        return qk_error(QK_ERR_FORMAT, "needs pads (input, or attribute before opset 11)");
    return QK_OK;
}

static void pad_destroy(qk_node *n)
{
    qk_free(n->state);
    n->state = NULL;
}

static qk_status pad_infer(qk_graph *g, qk_node *n)
{
    pad_state *s = n->state;
    const qk_tensor *a = &qk_in(g, n, 0)->t;
    int r = a->ndim;
    int64_t p[2 * QK_MAX_DIMS], axes[QK_MAX_DIMS];
    int np = 0, na = -1;
    qk_status st = QK_OK;
    if (qk_in(g, n, 1))
        st = qk_known_ints(g, qk_in(g, n, 1), "pads", p, 2 * QK_MAX_DIMS, &np);
    else
        np = qk_node_ints(n, "pads", p, 2 * QK_MAX_DIMS);
    if (st == QK_OK && qk_in(g, n, 3))
        st = qk_known_ints(g, qk_in(g, n, 3), "axes", axes, QK_MAX_DIMS, &na);
    if (st != QK_OK)
        return st;
    int k = na >= 0 ? na : r;
    if (na < 0)
        for (int i = 0; i < r; i++)
            axes[i] = i;
    if (np != 2 * k)
        return qk_error(QK_ERR_ARG, "pads has %d entries; %d expected for %d axes", np, 2 * k, k);
    int64_t e[QK_MAX_DIMS] = { 0 };
    for (int i = 0; i < r; i++)
        s->b[i] = 0;
    for (int i = 0; i < k; i++) {
        int ax = qk_lt_axis(axes[i], r, 0);
        if (ax < 0)
            return qk_error(QK_ERR_ARG, "axis %lld out of range for rank %d", (long long)axes[i], r);
        s->b[ax] = p[i];
        e[ax] = p[i + k];
    }
    s->nd = r;
    int64_t stv = 1;
    for (int i = r - 1; i >= 0; i--) {
        s->ist[i] = stv;
        stv *= a->dims[i];
    }
    for (int i = 0; i < r; i++) {
        s->in_d[i] = a->dims[i];
        if (__builtin_add_overflow(a->dims[i], s->b[i], &s->out_d[i]) ||
            __builtin_add_overflow(s->out_d[i], e[i], &s->out_d[i]))
            return qk_error(QK_ERR_ARG, "pads of axis %d (%lld, %lld) overflow", i, (long long)s->b[i],
                            (long long)e[i]);
        if (s->out_d[i] < 0)
            return qk_error(QK_ERR_ARG, "pads make axis %d negative", i);
        if (s->mode != PAD_CONST && s->out_d[i] > 0 && a->dims[i] == 0)
            return qk_error(QK_ERR_ARG, "mode needs a non-empty axis %d", i);
        if (s->mode == PAD_REFLECT && a->dims[i] == 1 && (s->b[i] > 0 || e[i] > 0))
            return qk_error(QK_ERR_ARG, "reflect padding of axis %d of size 1", i);
    }
    qk_tensor_set_shape(&qk_out(g, n, 0)->t, a->dtype, r, s->out_d);
    return QK_OK;
}

/* Input index of output index o on axis i, or -1 (constant). */
static inline int64_t pad_src(const pad_state *s, int i, int64_t o)
{
    int64_t d = s->in_d[i], x = o - s->b[i];
    if (x >= 0 && x < d)
        return x;
    switch (s->mode) {
    case PAD_CONST: return -1;
    case PAD_EDGE: return x < 0 ? 0 : d - 1;
    case PAD_WRAP: return ((x % d) + d) % d;
    default: {
        int64_t per = 2 * (d - 1);
        x = ((x % per) + per) % per;
        return x < d ? x : per - x;
    }
    }
}

typedef struct pad_job {
    const pad_state *s;
    const qk_tensor *a;
    qk_tensor *y;
    const void *cval; /* one element of a's type */
    const float *dy;
    float *dx;
} pad_job;

/* Input offset of output row r (all dims but the last), or -1. */
static int64_t pad_row(const pad_state *s, int64_t r)
{
    int64_t off = 0;
    for (int i = s->nd - 2; i >= 0; i--) {
        int64_t c = r % s->out_d[i];
        r /= s->out_d[i];
        int64_t x = pad_src(s, i, c);
        if (x < 0)
            return -1;
        off += x * s->ist[i];
    }
    return off;
}

static void pad_fwd_range(void *c, int64_t lo, int64_t hi)
{
    const pad_job *j = c;
    const pad_state *s = j->s;
    size_t es = qk_dtype_size(j->a->dtype);
    int last = s->nd - 1;
    int64_t w = s->out_d[last];
    for (int64_t r = lo; r < hi; r++) {
        int64_t off = pad_row(s, r);
        uint8_t *y = (uint8_t *)j->y->data + (size_t)(r * w) * es;
        for (int64_t o = 0; o < w; o++) {
            int64_t x = off < 0 ? -1 : pad_src(s, last, o);
            memcpy(y + (size_t)o * es, x < 0 ? j->cval : (const uint8_t *)j->a->data + (size_t)(off + x) * es, es);
        }
    }
}

static qk_status pad_forward(qk_exec *x, qk_node *n)
{
    const pad_state *s = n->state;
    const qk_tensor *a = &qk_in(x->g, n, 0)->t;
    qk_tensor *y = &qk_out(x->g, n, 0)->t;
    if (qk_tensor_numel(y) == 0)
        return QK_OK;
    uint64_t zero = 0;
    const void *cval = &zero;
    const qk_value *cv = qk_in(x->g, n, 2);
    float attr_v = qk_node_float(n, "value", 0.0f);
    if (cv && qk_tensor_numel(&cv->t) > 0) {
        if (cv->t.dtype != a->dtype)
            return qk_error(QK_ERR_FORMAT, "constant_value '%s' must have the input's type", cv->name);
        cval = cv->t.data;
    } else if (a->dtype == QK_F32) {
        cval = &attr_v;
    }
    if (s->nd == 0) {
        memcpy(y->data, a->data, qk_tensor_bytes(a));
        return QK_OK;
    }
    pad_job j = { s, a, y, cval, NULL, NULL };
    int64_t w = s->out_d[s->nd - 1], rows = qk_tensor_numel(y) / (w ? w : 1);
    qk_lt_par(x->pool, rows, w ? QK_LT_GRAIN / w : 1, pad_fwd_range, &j);
    return QK_OK;
}

static qk_status pad_backward(qk_exec *x, qk_node *n)
{
    const pad_state *s = n->state;
    qk_value *av = qk_in(x->g, n, 0), *yv = qk_out(x->g, n, 0);
    if (!av->grad.data || !yv->grad.data || av->t.dtype != QK_F32 || s->nd == 0)
        return QK_OK;
    int last = s->nd - 1;
    int64_t w = s->out_d[last], rows = w ? qk_tensor_numel(&yv->t) / w : 0;
    const float *dy = qk_f32(&yv->grad);
    float *dx = qk_f32(&av->grad);
    for (int64_t r = 0; r < rows; r++) {
        int64_t off = pad_row(s, r);
        if (off < 0)
            continue;
        for (int64_t o = 0; o < w; o++) {
            int64_t xi = pad_src(s, last, o);
            if (xi >= 0)
                dx[off + xi] += dy[r * w + o];
        }
    }
    return QK_OK;
}

const qk_op qk_op_pad = { "Pad", pad_init, pad_infer, NULL, pad_forward, pad_backward, pad_destroy, NULL };
