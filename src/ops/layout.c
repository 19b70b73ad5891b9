/* Data movement with ONNX semantics (opset 7-21): Transpose, Slice, Split,
 * Expand, Tile. Any dtype forward; float32 backward.
 *
 *   Transpose(perm; default reversed axes).
 *   Slice: starts, ends[, axes[, steps]] as inputs (opset 10+, known at
 *     infer time, known.h) or attributes (opset < 10). Negative starts/ends
 *     count from the end; clamped to [0, dim] (step > 0) or [-1, dim-1]
 *     (step < 0); out = max(0, ceil((end - start) / step)).
 *   Split(axis): sizes from the `split` input (opset 13+) or attribute, else
 *     num_outputs (opset 18: ceil(dim / n) each, the last one smaller) or the
 *     output count (equal parts).
 *   Expand(shape): numpy broadcast of input and shape (shape known).
 *   Tile(repeats): out dim i = dim i * repeats[i] (repeats known).
 * Every op is one strided map from the output index to an input offset,
 * off = base + sum_i (idx_i mod m_i) * st_i (m_i = 0: no mod; Tile only),
 * cut into rows of the last dim and spread over the pool. Backward adds dy
 * through the same map: in parallel where the map is one-to-one (Transpose,
 * Slice, Split), serially where inputs are reused (Expand, Tile).
 * Transpose and Slice also compute known values (the pads chains PyTorch
 * exports for F.pad, Shape -> Slice). */
#include "known.h"

typedef struct lmap {
    int nd;
    int64_t dims[QK_MAX_DIMS]; /* output dims */
    int64_t st[QK_MAX_DIMS];   /* input stride per output dim */
    int64_t mod[QK_MAX_DIMS];  /* 0 = none */
    int64_t base;
    int64_t rows, inner;
} lmap;

static void lmap_finish(lmap *m)
{
    if (m->nd == 0) {
        m->nd = 1;
        m->dims[0] = 1;
        m->st[0] = 0;
        m->mod[0] = 0;
    }
    m->inner = m->dims[m->nd - 1];
    m->rows = qk_lt_prod(m->dims, 0, m->nd - 1);
}

static inline int64_t lmap_row(const lmap *m, int64_t r)
{
    int64_t off = m->base;
    for (int i = m->nd - 2; i >= 0; i--) {
        int64_t c = r % m->dims[i];
        r /= m->dims[i];
        off += (m->mod[i] ? c % m->mod[i] : c) * m->st[i];
    }
    return off;
}

typedef struct lmap_job {
    const lmap *m;
    const uint8_t *src;
    uint8_t *dst;
    size_t es;
    const float *dy;
    float *dx;
    int64_t out_off; /* Split: element offset of this output in ... (unused: 0) */
} lmap_job;

static void lmap_fwd_range(void *c, int64_t lo, int64_t hi)
{
    const lmap_job *j = c;
    const lmap *m = j->m;
    int last = m->nd - 1;
    int64_t st = m->st[last], md = m->mod[last];
    for (int64_t r = lo; r < hi; r++) {
        int64_t off = lmap_row(m, r);
        uint8_t *d = j->dst + (size_t)(r * m->inner) * j->es;
        if (j->es == 4) {
            const uint32_t *s = (const uint32_t *)j->src + off;
            uint32_t *d4 = (uint32_t *)d;
            if (md)
                for (int64_t i = 0; i < m->inner; i++)
                    d4[i] = s[(i % md) * st];
            else if (st == 1)
                memcpy(d4, s, (size_t)m->inner * 4);
            else
                for (int64_t i = 0; i < m->inner; i++)
                    d4[i] = s[i * st];
        } else {
            for (int64_t i = 0; i < m->inner; i++)
                memcpy(d + (size_t)i * j->es, j->src + (size_t)(off + (md ? i % md : i) * st) * j->es, j->es);
        }
    }
}

static void lmap_bwd_range(void *c, int64_t lo, int64_t hi)
{
    const lmap_job *j = c;
    const lmap *m = j->m;
    int last = m->nd - 1;
    int64_t st = m->st[last], md = m->mod[last];
    for (int64_t r = lo; r < hi; r++) {
        int64_t off = lmap_row(m, r);
        const float *dy = j->dy + r * m->inner;
        for (int64_t i = 0; i < m->inner; i++)
            j->dx[off + (md ? i % md : i) * st] += dy[i];
    }
}

static void lmap_forward(qk_pool *pool, const lmap *m, const qk_tensor *a, void *y)
{
    lmap_job j = { m, a->data, y, qk_dtype_size(a->dtype), NULL, NULL, 0 };
    int64_t chunk = m->inner ? QK_LT_GRAIN / m->inner : 1;
    if (m->inner > 0)
        qk_lt_par(pool, m->rows, chunk, lmap_fwd_range, &j);
}

/* dx += map^T dy; `serial` when several outputs read one input element. */
static void lmap_backward(qk_pool *pool, const lmap *m, float *dx, const float *dy, int serial)
{
    lmap_job j = { m, NULL, NULL, 4, dy, dx, 0 };
    if (m->inner <= 0)
        return;
    if (serial) {
        lmap_bwd_range(&j, 0, m->rows);
        return;
    }
    int64_t chunk = QK_LT_GRAIN / m->inner;
    qk_lt_par(pool, m->rows, chunk, lmap_bwd_range, &j);
}

static void in_strides(const qk_tensor *a, int64_t *st)
{
    int64_t s = 1;
    for (int i = a->ndim - 1; i >= 0; i--) {
        st[i] = s;
        s *= a->dims[i];
    }
}

/* ---- state shared by the five ops ---- */
typedef struct lay_state {
    qk_kv_state kv; /* first member (known.h; Slice) */
    lmap m[1];      /* single-output ops; Split keeps its maps in `split` */
    lmap *split;    /* n_out maps (Split) */
    int serial;     /* backward must be serial (Expand, Tile) */
} lay_state;

static qk_status lay_init(qk_node *n, int min_in, int max_in, int multi_out)
{
    if (n->n_in < min_in || n->n_in > max_in || n->in[0] < 0 || n->n_out < 1 || (!multi_out && n->n_out != 1))
        return qk_error(QK_ERR_FORMAT, "expects %d..%d inputs and %s output(s), got %d and %d", min_in, max_in,
                        multi_out ? "1 or more" : "1", n->n_in, n->n_out);
    lay_state *s = qk_calloc(1, sizeof *s);
    if (!s)
        return qk_error(QK_ERR_NOMEM, "out of memory");
    n->state = s;
    if (multi_out && !(s->split = qk_calloc((size_t)n->n_out, sizeof(lmap))))
        return qk_error(QK_ERR_NOMEM, "out of memory");
    return QK_OK;
}

static void lay_destroy(qk_node *n)
{
    lay_state *s = n->state;
    if (s)
        qk_free(s->split);
    qk_free(s);
    n->state = NULL;
}

static qk_status lay_forward(qk_exec *x, qk_node *n)
{
    lay_state *s = n->state;
    const qk_tensor *a = &qk_in(x->g, n, 0)->t;
    for (int k = 0; k < n->n_out; k++) {
        qk_value *y = qk_out(x->g, n, k);
        if (y)
            lmap_forward(x->pool, s->split ? &s->split[k] : s->m, a, y->t.data);
    }
    return QK_OK;
}

static qk_status lay_backward(qk_exec *x, qk_node *n)
{
    lay_state *s = n->state;
    qk_value *a = qk_in(x->g, n, 0);
    if (!a->grad.data || a->t.dtype != QK_F32)
        return QK_OK;
    for (int k = 0; k < n->n_out; k++) {
        qk_value *y = qk_out(x->g, n, k);
        if (y && y->grad.data)
            lmap_backward(x->pool, s->split ? &s->split[k] : s->m, qk_f32(&a->grad), qk_f32(&y->grad), s->serial);
    }
    return QK_OK;
}

/* Known value of output y (Transpose, Slice) from a known input 0. */
static void known_out(qk_graph *g, qk_node *n, const qk_tensor *y)
{
    lay_state *s = n->state;
    s->kv.known = 0;
    const qk_tensor *ka = qk_known(g, qk_in(g, n, 0));
    void *buf = ka && ka->dtype == y->dtype && qk_tensor_numel(y) > 0 ? qk_kv_begin(n, y) : NULL;
    if (buf) {
        lmap_forward(NULL, s->m, ka, buf);
        qk_kv_done(n);
    }
}

/* ---- Transpose ---- */
static qk_status transpose_init(qk_graph *g, qk_node *n) { (void)g; return lay_init(n, 1, 1, 0); }

static qk_status transpose_infer(qk_graph *g, qk_node *n)
{
    lay_state *s = n->state;
    const qk_tensor *a = &qk_in(g, n, 0)->t;
    int64_t perm[QK_MAX_DIMS];
    int np = qk_node_ints(n, "perm", perm, QK_MAX_DIMS);
    if (!qk_node_attr(n, "perm")) {
        np = a->ndim;
        for (int i = 0; i < np; i++)
            perm[i] = np - 1 - i;
    }
    if (np != a->ndim)
        return qk_error(QK_ERR_ARG, "perm has %d entries for an input of rank %d", np, a->ndim);
    int seen[QK_MAX_DIMS] = { 0 };
    int64_t st[QK_MAX_DIMS], d[QK_MAX_DIMS];
    in_strides(a, st);
    lmap *m = s->m;
    memset(m, 0, sizeof *m);
    for (int i = 0; i < np; i++) {
        int p = qk_lt_axis(perm[i], a->ndim, 0);
        if (p < 0 || seen[p]++)
            return qk_error(QK_ERR_ARG, "perm is not a permutation of 0..%d", a->ndim - 1);
        d[i] = a->dims[p];
        m->dims[i] = d[i];
        m->st[i] = st[p];
    }
    m->nd = np;
    lmap_finish(m);
    qk_tensor *y = &qk_out(g, n, 0)->t;
    qk_tensor_set_shape(y, a->dtype, np, d);
    known_out(g, n, y);
    return QK_OK;
}

/* ---- Slice ---- */
static qk_status slice_init(qk_graph *g, qk_node *n)
{
    (void)g;
    if (n->n_in == 1 && !qk_node_attr(n, "starts"))
        return qk_error(QK_ERR_FORMAT, "needs starts and ends (inputs, or attributes before opset 10)");
    return lay_init(n, 1, 5, 0);
}

static qk_status slice_params(qk_graph *g, qk_node *n, int64_t *starts, int64_t *ends, int64_t *axes,
                              int64_t *steps, int *cnt)
{
    int ns = 0, ne = 0, na = -1, nst = -1;
    qk_status st;
    if (n->n_in == 1) { /* opset < 10 attributes */
        ns = qk_node_ints(n, "starts", starts, QK_MAX_DIMS);
        ne = qk_node_ints(n, "ends", ends, QK_MAX_DIMS);
        if (qk_node_attr(n, "axes"))
            na = qk_node_ints(n, "axes", axes, QK_MAX_DIMS);
    } else {
        if ((st = qk_known_ints(g, qk_in(g, n, 1), "starts", starts, QK_MAX_DIMS, &ns)) != QK_OK)
            return st;
        if (!qk_in(g, n, 2))
            return qk_error(QK_ERR_FORMAT, "the ends input is required");
        if ((st = qk_known_ints(g, qk_in(g, n, 2), "ends", ends, QK_MAX_DIMS, &ne)) != QK_OK)
            return st;
        if (qk_in(g, n, 3) && (st = qk_known_ints(g, qk_in(g, n, 3), "axes", axes, QK_MAX_DIMS, &na)) != QK_OK)
            return st;
        if (qk_in(g, n, 4) && (st = qk_known_ints(g, qk_in(g, n, 4), "steps", steps, QK_MAX_DIMS, &nst)) != QK_OK)
            return st;
    }
    if (ns != ne || (na >= 0 && na != ns) || (nst >= 0 && nst != ns))
        return qk_error(QK_ERR_ARG, "starts, ends, axes and steps must have the same length (%d, %d, %d, %d)", ns,
                        ne, na, nst);
    for (int i = 0; i < ns; i++) {
        if (na < 0)
            axes[i] = i;
        if (nst < 0)
            steps[i] = 1;
    }
    *cnt = ns;
    return QK_OK;
}

/* Slice of a tensor a: fills map m and the output dims d. */
static qk_status slice_map(qk_graph *g, qk_node *n, const qk_tensor *a, lmap *m, int64_t *d)
{
    int64_t starts[QK_MAX_DIMS], ends[QK_MAX_DIMS], axes[QK_MAX_DIMS], steps[QK_MAX_DIMS];
    int cnt = 0;
    qk_status st = slice_params(g, n, starts, ends, axes, steps, &cnt);
    if (st != QK_OK)
        return st;
    int64_t b[QK_MAX_DIMS], stp[QK_MAX_DIMS], ist[QK_MAX_DIMS];
    int seen[QK_MAX_DIMS] = { 0 };
    for (int i = 0; i < a->ndim; i++) {
        b[i] = 0;
        stp[i] = 1;
        d[i] = a->dims[i];
    }
    for (int k = 0; k < cnt; k++) {
        int ax = qk_lt_axis(axes[k], a->ndim, 0);
        if (ax < 0 || seen[ax]++)
            return qk_error(QK_ERR_ARG, "axis %lld is out of range for rank %d or repeated", (long long)axes[k],
                            a->ndim);
        int64_t dim = a->dims[ax], s = starts[k], e = ends[k], t = steps[k];
        if (t == 0)
            return qk_error(QK_ERR_ARG, "step 0 on axis %d", ax);
        /* A step longer than the axis selects at most one element: clamp it so
         * the count and the strides below cannot overflow. */
        int64_t tmax = dim > 1 ? dim : 1;
        t = t > tmax ? tmax : t < -tmax ? -tmax : t;
        if (s < 0)
            s += dim;
        if (e < 0)
            e += dim;
        if (t > 0) {
            s = s < 0 ? 0 : s > dim ? dim : s;
            e = e < 0 ? 0 : e > dim ? dim : e;
        } else {
            s = s < 0 ? 0 : s > dim - 1 ? dim - 1 : s;
            e = e < -1 ? -1 : e > dim - 1 ? dim - 1 : e;
        }
        int64_t c = t > 0 ? (e - s + t - 1) / t : (s - e + (-t) - 1) / (-t);
        d[ax] = c > 0 ? c : 0;
        b[ax] = s;
        stp[ax] = t;
    }
    in_strides(a, ist);
    memset(m, 0, sizeof *m);
    m->nd = a->ndim;
    for (int i = 0; i < a->ndim; i++) {
        m->dims[i] = d[i];
        m->st[i] = stp[i] * ist[i];
        m->base += b[i] * ist[i];
    }
    lmap_finish(m);
    return QK_OK;
}

static qk_status slice_infer(qk_graph *g, qk_node *n)
{
    lay_state *s = n->state;
    const qk_tensor *a = &qk_in(g, n, 0)->t;
    int64_t d[QK_MAX_DIMS];
    qk_status st = slice_map(g, n, a, s->m, d);
    if (st != QK_OK)
        return st;
    qk_tensor *y = &qk_out(g, n, 0)->t;
    qk_tensor_set_shape(y, a->dtype, a->ndim, d);
    known_out(g, n, y);
    return QK_OK;
}

/* ---- Split ---- */
static qk_status split_init(qk_graph *g, qk_node *n) { (void)g; return lay_init(n, 1, 2, 1); }

static qk_status split_infer(qk_graph *g, qk_node *n)
{
    lay_state *s = n->state;
    const qk_tensor *a = &qk_in(g, n, 0)->t;
    int64_t axis = qk_node_int(n, "axis", 0);
    int ax = qk_lt_axis(axis, a->ndim, 0);
    if (ax < 0)
        return qk_error(QK_ERR_ARG, "axis %lld out of range for rank %d", (long long)axis, a->ndim);
    int no = n->n_out, ns = 0;
    int64_t *sz = qk_calloc((size_t)no, sizeof(int64_t));
    if (!sz)
        return qk_error(QK_ERR_NOMEM, "out of memory");
    qk_status st = QK_OK;
    int64_t dim = a->dims[ax];
    if (qk_in(g, n, 1)) {
        st = qk_known_ints(g, qk_in(g, n, 1), "split", sz, no, &ns);
    } else if (qk_node_attr(n, "split")) {
        ns = qk_node_ints(n, "split", sz, no);
        if (qk_node_attr(n, "split")->n != no)
            st = qk_error(QK_ERR_ARG, "split has %d entries for %d outputs", qk_node_attr(n, "split")->n, no);
    } else {
        int64_t parts = qk_node_int(n, "num_outputs", no);
        int64_t chunk = qk_node_attr(n, "num_outputs") ? (dim + parts - 1) / parts : dim / parts;
        if (!qk_node_attr(n, "num_outputs") && dim % parts != 0)
            st = qk_error(QK_ERR_SHAPE, "axis %d of size %lld does not split into %d equal parts", ax,
                          (long long)dim, no);
        for (int k = 0; k < no; k++) {
            int64_t left = dim - chunk * k;
            sz[k] = left < chunk ? (left > 0 ? left : 0) : chunk;
        }
        ns = no;
    }
    int64_t sum = 0;
    for (int k = 0; k < ns && st == QK_OK; k++) {
        if (sz[k] < 0)
            st = qk_error(QK_ERR_ARG, "split size %lld is negative", (long long)sz[k]);
        sum += sz[k];
    }
    if (st == QK_OK && (ns != no || sum != dim))
        st = qk_error(QK_ERR_SHAPE, "split sizes (%d entries, sum %lld) do not match %d outputs and axis size %lld",
                      ns, (long long)sum, no, (long long)dim);
    int64_t ist[QK_MAX_DIMS], off = 0;
    in_strides(a, ist);
    for (int k = 0; k < no && st == QK_OK; k++) {
        int64_t d[QK_MAX_DIMS];
        memcpy(d, a->dims, sizeof d);
        d[ax] = sz[k];
        lmap *m = &s->split[k];
        memset(m, 0, sizeof *m);
        m->nd = a->ndim;
        for (int i = 0; i < a->ndim; i++) {
            m->dims[i] = d[i];
            m->st[i] = ist[i];
        }
        m->base = off * ist[ax];
        lmap_finish(m);
        off += sz[k];
        if (qk_out(g, n, k))
            qk_tensor_set_shape(&qk_out(g, n, k)->t, a->dtype, a->ndim, d);
    }
    qk_free(sz);
    return st;
}

/* ---- Expand ---- */
static qk_status expand_init(qk_graph *g, qk_node *n)
{
    (void)g;
    if (n->n_in != 2 || n->in[1] < 0)
        return qk_error(QK_ERR_FORMAT, "needs inputs input and shape");
    qk_status st = lay_init(n, 2, 2, 0);
    if (st == QK_OK)
        ((lay_state *)n->state)->serial = 1;
    return st;
}

static qk_status expand_infer(qk_graph *g, qk_node *n)
{
    lay_state *s = n->state;
    const qk_tensor *a = &qk_in(g, n, 0)->t;
    int64_t sh[QK_MAX_DIMS];
    int ns;
    qk_status st = qk_known_ints(g, qk_in(g, n, 1), "shape", sh, QK_MAX_DIMS, &ns);
    if (st != QK_OK)
        return st;
    int nd = ns > a->ndim ? ns : a->ndim;
    int64_t d[QK_MAX_DIMS], ist[QK_MAX_DIMS];
    in_strides(a, ist);
    lmap *m = s->m;
    memset(m, 0, sizeof *m);
    for (int i = 0; i < nd; i++) {
        int ia = i - (nd - a->ndim), is = i - (nd - ns);
        int64_t da = ia >= 0 ? a->dims[ia] : 1, ds = is >= 0 ? sh[is] : 1;
        if (da != ds && da != 1 && ds != 1) {
            char b[128];
            return qk_error(QK_ERR_SHAPE, "input %s cannot be expanded to shape entry %lld at dim %d",
                            qk_shape_str(a, b, sizeof b), (long long)ds, i);
        }
        d[i] = da == 1 ? ds : da;
        m->dims[i] = d[i];
        m->st[i] = ia >= 0 && da != 1 ? ist[ia] : 0;
    }
    m->nd = nd;
    lmap_finish(m);
    qk_tensor_set_shape(&qk_out(g, n, 0)->t, a->dtype, nd, d);
    return QK_OK;
}

/* ---- Tile ---- */
static qk_status tile_init(qk_graph *g, qk_node *n)
{
    (void)g;
    if (n->n_in != 2 || n->in[1] < 0)
        return qk_error(QK_ERR_FORMAT, "needs inputs input and repeats");
    qk_status st = lay_init(n, 2, 2, 0);
    if (st == QK_OK)
        ((lay_state *)n->state)->serial = 1;
    return st;
}

static qk_status tile_infer(qk_graph *g, qk_node *n)
{
    lay_state *s = n->state;
    const qk_tensor *a = &qk_in(g, n, 0)->t;
    int64_t rep[QK_MAX_DIMS];
    int nr;
    qk_status st = qk_known_ints(g, qk_in(g, n, 1), "repeats", rep, QK_MAX_DIMS, &nr);
    if (st != QK_OK)
        return st;
    if (nr != a->ndim)
        return qk_error(QK_ERR_ARG, "repeats has %d entries for an input of rank %d", nr, a->ndim);
    int64_t d[QK_MAX_DIMS], ist[QK_MAX_DIMS];
    in_strides(a, ist);
    lmap *m = s->m;
    memset(m, 0, sizeof *m);
    for (int i = 0; i < a->ndim; i++) {
        if (rep[i] < 0)
            return qk_error(QK_ERR_ARG, "repeats entry %d is negative", i);
        if (__builtin_mul_overflow(a->dims[i], rep[i], &d[i]))
            return qk_error(QK_ERR_ARG, "repeats entry %d (%lld) overflows the axis size", i, (long long)rep[i]);
        m->dims[i] = d[i];
        m->st[i] = ist[i];
        m->mod[i] = a->dims[i] ? a->dims[i] : 1;
    }
    m->nd = a->ndim;
    lmap_finish(m);
    qk_tensor_set_shape(&qk_out(g, n, 0)->t, a->dtype, a->ndim, d);
    return QK_OK;
}

const qk_op qk_op_transpose = { "Transpose", transpose_init, transpose_infer, NULL, lay_forward, lay_backward,
                                lay_destroy, NULL };
const qk_op qk_op_slice = { "Slice", slice_init, slice_infer, NULL, lay_forward, lay_backward, lay_destroy, NULL };
const qk_op qk_op_split = { "Split", split_init, split_infer, NULL, lay_forward, lay_backward, lay_destroy, NULL };
const qk_op qk_op_expand = { "Expand", expand_init, expand_infer, NULL, lay_forward, lay_backward, lay_destroy, NULL };
const qk_op qk_op_tile = { "Tile", tile_init, tile_infer, NULL, lay_forward, lay_backward, lay_destroy, NULL };
