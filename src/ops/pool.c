/* MaxPool, AveragePool, GlobalAveragePool (ONNX opset 1-13 semantics),
 * forward and backward, 1-D to 3-D (window geometry in src/graph/window.h).
 *
 * MaxPool:  X [N, C, in...] (float32; uint8 forward only) -> Y [N, C, out...]
 *           [, Indices int64: flat index into X; storage_order 0 row-major,
 *           1 column-major over the spatial dims]. Ties keep the first
 *           maximum in scan order and NaN propagates (PyTorch). A window with
 *           no input element (only padding) gives -inf.
 *           Training forward records each output's argmax (plane offset,
 *           int32, n->state, sized in reshape); backward adds dY there.
 * AveragePool: mean over the window; divisor = number of input elements in
 *           the window (count_include_pad = 0) or of positions inside the
 *           padded input [−pb, in + pe) (count_include_pad = 1, PyTorch's
 *           rule for ceil_mode windows that pass the end pad).
 * GlobalAveragePool: Y [N, C, 1...] = mean over all spatial positions.
 *
 * Tasks are blocks of (n, c) planes; each plane is computed, and its dX
 * written, by one task: identical results for any thread count. The plain
 * N-d loops are the reference; MaxPool 2x2 stride 2 (no pad, no dilation)
 * has a fast 2-D kernel. */
#include "qkit/ops.h"
#include "fuse.h"
#include "fvec.h"
#include "../graph/window.h"

#include <math.h>
#include <string.h>

#define PLANE_BLOCK 16 /* planes per task */

enum { POOL_MAX = 0, POOL_AVG = 1, POOL_GAVG = 2 };

typedef struct pool_state {
    int kind;
    qk_win_attrs a;
    int storage_order, count_include_pad;
    qk_window w;
    int64_t N, C;
    qk_dtype dt;
    int32_t *argmax; /* [N*C*out] plane offsets (training or Indices output) */
    int64_t argmax_cap;
    int argmax_valid;
    int dq_fused; /* GlobalAveragePool computed by the DequantizeLinear before it (fuse.h) */
} pool_state;

static const char *pool_name(int kind)
{
    return kind == POOL_MAX ? "MaxPool" : kind == POOL_AVG ? "AveragePool" : "GlobalAveragePool";
}

static qk_status pool_init_kind(qk_node *n, int kind)
{
    const char *op = pool_name(kind);
    int maxout = kind == POOL_MAX ? 2 : 1;
    if (n->n_in != 1 || n->in[0] < 0 || n->n_out < 1 || n->n_out > maxout)
        return qk_error(QK_ERR_ARG, "%s: expects 1 input and %s output(s) (got %d, %d)", op,
                        kind == POOL_MAX ? "1 or 2" : "1", n->n_in, n->n_out);
    pool_state *s = qk_calloc(1, sizeof *s);
    if (!s)
        return qk_error(QK_ERR_NOMEM, "%s: out of memory", op);
    n->state = s;
    s->kind = kind;
    if (kind == POOL_GAVG)
        return QK_OK;
    qk_status st = qk_win_parse(n, op, &s->a);
    if (st != QK_OK)
        return st;
    if (!s->a.nk)
        return qk_error(QK_ERR_ARG, "%s: attribute kernel_shape is required", op);
    s->storage_order = (int)qk_node_int(n, "storage_order", 0);
    s->count_include_pad = (int)qk_node_int(n, "count_include_pad", 0);
    if (s->storage_order != 0 && s->storage_order != 1)
        return qk_error(QK_ERR_ARG, "%s: storage_order must be 0 or 1", op);
    if (kind == POOL_AVG && s->a.nd)
        for (int i = 0; i < s->a.nd; i++)
            if (s->a.d[i] != 1)
                return qk_error(QK_ERR_UNSUPPORTED, "%s: dilations other than 1 are not supported", op);
    return QK_OK;
}

static qk_status maxpool_init(qk_graph *g, qk_node *n) { (void)g; return pool_init_kind(n, POOL_MAX); }
static qk_status avgpool_init(qk_graph *g, qk_node *n) { (void)g; return pool_init_kind(n, POOL_AVG); }
static qk_status gavgpool_init(qk_graph *g, qk_node *n) { (void)g; return pool_init_kind(n, POOL_GAVG); }

static void pool_destroy(qk_node *n)
{
    pool_state *s = n->state;
    if (s)
        qk_aligned_free(s->argmax);
    qk_free(s);
    n->state = NULL;
}

static qk_status pool_infer(qk_graph *g, qk_node *n)
{
    pool_state *s = n->state;
    const char *op = pool_name(s->kind);
    const qk_tensor *x = &qk_in(g, n, 0)->t;
    char b1[96];
    if (x->dtype != QK_F32 && !(s->kind == POOL_MAX && x->dtype == QK_U8))
        return qk_error(QK_ERR_UNSUPPORTED, "%s: data type %s is not supported", op, qk_dtype_name(x->dtype));
    if (x->ndim < 3 || x->ndim > 5)
        return qk_error(QK_ERR_SHAPE, "%s: input %s must have rank 3, 4 or 5 (N, C, 1-3 spatial dims)", op,
                        qk_shape_str(x, b1, sizeof b1));
    int nsp = x->ndim - 2;
    qk_status st;
    if (s->kind == POOL_GAVG) {
        qk_win_attrs a;
        memset(&a, 0, sizeof a);
        st = qk_win_resolve(&a, op, nsp, x->dims + 2, x->dims + 2, &s->w);
    } else {
        if (s->a.nk != nsp)
            return qk_error(QK_ERR_SHAPE, "%s: kernel_shape has %d entries but input %s has %d spatial dims", op,
                            s->a.nk, qk_shape_str(x, b1, sizeof b1), nsp);
        st = qk_win_resolve(&s->a, op, nsp, x->dims + 2, s->a.k, &s->w);
    }
    if (st != QK_OK)
        return st;
    s->N = x->dims[0];
    s->C = x->dims[1];
    s->dt = x->dtype;
    int64_t dims[5] = { s->N, s->C };
    for (int i = 0; i < nsp; i++)
        dims[2 + i] = s->w.out[3 - nsp + i];
    qk_tensor_set_shape(&qk_out(g, n, 0)->t, x->dtype, x->ndim, dims);
    if (n->n_out > 1 && n->out[1] >= 0)
        qk_tensor_set_shape(&qk_out(g, n, 1)->t, QK_I64, x->ndim, dims);
    return QK_OK;
}

static qk_status pool_reshape(qk_graph *g, qk_node *n, int training, size_t *ws_bytes)
{
    pool_state *s = n->state;
    *ws_bytes = 0;
    s->dq_fused = s->kind == POOL_GAVG && qk_dq_gap_runner(g, n, training) >= 0;
    qk_aligned_free(s->argmax);
    s->argmax = NULL;
    s->argmax_cap = 0;
    s->argmax_valid = 0;
    if (s->kind == POOL_MAX && (training || (n->n_out > 1 && n->out[1] >= 0))) {
        int64_t m = s->N * s->C * qk_win_out_size(&s->w);
        s->argmax = qk_aligned_alloc((size_t)(m ? m : 1) * sizeof(int32_t));
        if (!s->argmax)
            return qk_error(QK_ERR_NOMEM, "MaxPool: cannot allocate %lld argmax indices", (long long)m);
        s->argmax_cap = m;
    }
    return QK_OK;
}

/* ---- plane kernels ---- */

/* Reference max over one plane. am (optional): argmax plane offset (-1: none). */
#define DEFINE_MAX_PLANE(NAME, T, NONE)                                                        \
    static void NAME(const qk_window *w, const T *x, T *y, int32_t *am)                        \
    {                                                                                          \
        int64_t o = 0;                                                                         \
        for (int64_t o0 = 0; o0 < w->out[0]; o0++)                                             \
            for (int64_t o1 = 0; o1 < w->out[1]; o1++)                                         \
                for (int64_t o2 = 0; o2 < w->out[2]; o2++, o++) {                              \
                    T best = NONE;                                                             \
                    int64_t bi = -1;                                                           \
                    for (int64_t k0 = 0; k0 < w->k[0]; k0++) {                                 \
                        int64_t i0 = o0 * w->s[0] - w->pb[0] + k0 * w->d[0];                   \
                        if (i0 < 0 || i0 >= w->in[0])                                          \
                            continue;                                                          \
                        for (int64_t k1 = 0; k1 < w->k[1]; k1++) {                             \
                            int64_t i1 = o1 * w->s[1] - w->pb[1] + k1 * w->d[1];               \
                            if (i1 < 0 || i1 >= w->in[1])                                      \
                                continue;                                                      \
                            for (int64_t k2 = 0; k2 < w->k[2]; k2++) {                         \
                                int64_t i2 = o2 * w->s[2] - w->pb[2] + k2 * w->d[2];           \
                                if (i2 < 0 || i2 >= w->in[2])                                  \
                                    continue;                                                  \
                                int64_t idx = (i0 * w->in[1] + i1) * w->in[2] + i2;            \
                                T v = x[idx];                                                  \
                                if (bi < 0 || v > best || v != v) {                            \
                                    if (bi >= 0 && best != best)                               \
                                        continue; /* keep the first NaN */                     \
                                    best = v;                                                  \
                                    bi = idx;                                                  \
                                }                                                              \
                            }                                                                  \
                        }                                                                      \
                    }                                                                          \
                    y[o] = best;                                                               \
                    if (am)                                                                    \
                        am[o] = (int32_t)bi;                                                   \
                }                                                                              \
    }
DEFINE_MAX_PLANE(max_plane_f32, float, -INFINITY)
DEFINE_MAX_PLANE(max_plane_u8, uint8_t, 0)

/* Fast 2x2 stride-2 max (no pad, no dilation), branch-free; same result and
 * tie rule (first maximum in scan order) as the reference. A window holding
 * a NaN is redone with the reference rule (NaN propagates). */
static void max_plane_2x2(const qk_window *w, const float *x, float *y, int32_t *am)
{
    const int64_t W = w->in[2], OH = w->out[1], OW = w->out[2];
    for (int64_t oh = 0; oh < OH; oh++) {
        const float *r0 = x + 2 * oh * W, *r1 = r0 + W;
        float *yr = y + oh * OW;
        int32_t *ar = am ? am + oh * OW : NULL;
        for (int64_t ow = 0; ow < OW; ow++) {
            const int64_t j = 2 * ow;
            float a = r0[j], b = r0[j + 1], c = r1[j], d = r1[j + 1];
            int tb = b > a, td = d > c;
            float m0 = tb ? b : a, m1 = td ? d : c;
            int t = m1 > m0;
            yr[ow] = t ? m1 : m0;
            if (ar)
                ar[ow] = (int32_t)(2 * oh * W + j + t * (W + td) + (1 - t) * tb);
            if ((a != a) | (b != b) | (c != c) | (d != d)) {
                int64_t q[4] = { 2 * oh * W + j, 2 * oh * W + j + 1, (2 * oh + 1) * W + j, (2 * oh + 1) * W + j + 1 };
                int k = a != a ? 0 : b != b ? 1 : c != c ? 2 : 3;
                yr[ow] = x[q[k]];
                if (ar)
                    ar[ow] = (int32_t)q[k];
            }
        }
    }
}

/* Average over one plane (y) or its adjoint (dx += dy / divisor). */
static void avg_plane(const qk_window *w, int include_pad, const float *x, float *y, const float *dy, float *dx)
{
    int64_t o = 0;
    for (int64_t o0 = 0; o0 < w->out[0]; o0++)
        for (int64_t o1 = 0; o1 < w->out[1]; o1++)
            for (int64_t o2 = 0; o2 < w->out[2]; o2++, o++) {
                int64_t lo[3], hi[3], cnt = 1, pcnt = 1;
                const int64_t oo[3] = { o0, o1, o2 };
                for (int d = 0; d < 3; d++) {
                    int64_t st = oo[d] * w->s[d] - w->pb[d], en = st + w->k[d];
                    int64_t pst = st, pen = en < w->in[d] + w->pe[d] ? en : w->in[d] + w->pe[d];
                    lo[d] = st < 0 ? 0 : st;
                    hi[d] = en < w->in[d] ? en : w->in[d];
                    cnt *= hi[d] > lo[d] ? hi[d] - lo[d] : 0;
                    pcnt *= pen - pst;
                }
                int64_t div = include_pad ? pcnt : cnt;
                if (div <= 0) {
                    if (y)
                        y[o] = 0.0f;
                    continue;
                }
                if (y) {
                    float acc = 0.0f;
                    for (int64_t i0 = lo[0]; i0 < hi[0]; i0++)
                        for (int64_t i1 = lo[1]; i1 < hi[1]; i1++)
                            for (int64_t i2 = lo[2]; i2 < hi[2]; i2++)
                                acc += x[(i0 * w->in[1] + i1) * w->in[2] + i2];
                    y[o] = acc / (float)div;
                } else {
                    float gv = dy[o] / (float)div;
                    for (int64_t i0 = lo[0]; i0 < hi[0]; i0++)
                        for (int64_t i1 = lo[1]; i1 < hi[1]; i1++)
                            for (int64_t i2 = lo[2]; i2 < hi[2]; i2++)
                                dx[(i0 * w->in[1] + i1) * w->in[2] + i2] += gv;
                }
            }
}

/* ---- tasks ---- */

typedef struct pool_ctx {
    pool_state *s;
    const void *X;
    void *Y;
    int64_t *ind;
    const float *dY;
    float *dX;
    int ref;
} pool_ctx;

static int is_2x2s2(const qk_window *w)
{
    return w->nsp <= 2 && w->k[1] == 2 && w->k[2] == 2 && w->s[1] == 2 && w->s[2] == 2 && w->d[1] == 1 &&
           w->d[2] == 1 && w->pb[1] == 0 && w->pb[2] == 0 && 2 * w->out[1] <= w->in[1] &&
           2 * w->out[2] <= w->in[2];
}

/* Flat input index of plane offset `off` in plane p (storage order). */
static int64_t flat_index(const pool_state *s, int64_t p, int64_t off)
{
    const qk_window *w = &s->w;
    int64_t isz = qk_win_in_size(w);
    if (off < 0)
        return -1;
    if (!s->storage_order)
        return p * isz + off;
    int64_t i2 = off % w->in[2], r = off / w->in[2], i1 = r % w->in[1], i0 = r / w->in[1];
    /* column-major: the first spatial dim varies fastest */
    int f = 3 - w->nsp;
    int64_t idx[3] = { i0, i1, i2 }, cm = 0, stride = 1;
    for (int d = f; d < 3; d++) {
        cm += idx[d] * stride;
        stride *= w->in[d];
    }
    return p * isz + cm;
}

static void pool_fwd_task(void *vc, int64_t t, int worker)
{
    (void)worker;
    const pool_ctx *c = vc;
    pool_state *s = c->s;
    const qk_window *w = &s->w;
    const int64_t isz = qk_win_in_size(w), osz = qk_win_out_size(w), planes = s->N * s->C;
    int64_t p0 = t * PLANE_BLOCK, p1 = p0 + PLANE_BLOCK < planes ? p0 + PLANE_BLOCK : planes;
    for (int64_t p = p0; p < p1; p++) {
        if (s->kind == POOL_MAX) {
            int32_t *am = s->argmax ? s->argmax + p * osz : NULL;
            if (s->dt == QK_U8) {
                max_plane_u8(w, (const uint8_t *)c->X + p * isz, (uint8_t *)c->Y + p * osz, am);
            } else {
                const float *x = (const float *)c->X + p * isz;
                float *y = (float *)c->Y + p * osz;
                if (!c->ref && is_2x2s2(w))
                    max_plane_2x2(w, x, y, am);
                else
                    max_plane_f32(w, x, y, am);
            }
            if (c->ind)
                for (int64_t o = 0; o < osz; o++)
                    c->ind[p * osz + o] = flat_index(s, p, am[o]);
        } else if (s->kind == POOL_AVG) {
            avg_plane(w, s->count_include_pad, (const float *)c->X + p * isz, (float *)c->Y + p * osz, NULL, NULL);
        } else {
            ((float *)c->Y)[p] = qk_vsum((const float *)c->X + p * isz, isz) / (float)isz;
        }
    }
}

static qk_status pool_forward(qk_exec *x, qk_node *n)
{
    qk_graph *g = x->g;
    pool_state *s = n->state;
    if (s->dq_fused)
        return QK_OK; /* the DequantizeLinear before us wrote our output */
    qk_value *iv = n->n_out > 1 ? qk_out(g, n, 1) : NULL;
    pool_ctx c = { .s = s, .X = qk_in(g, n, 0)->t.data, .Y = qk_out(g, n, 0)->t.data,
                   .ind = iv ? iv->t.data : NULL, .ref = x->g->opts.reference };
    int64_t osz = qk_win_out_size(&s->w);
    if (s->argmax && s->N * s->C * osz > s->argmax_cap)
        return qk_error(QK_ERR_STATE, "MaxPool: batch larger than planned");
    if (c.ind && !s->argmax)
        return qk_error(QK_ERR_STATE, "MaxPool: Indices output without a plan");
    int64_t planes = s->N * s->C;
    qk_pool_run(x->pool, (planes + PLANE_BLOCK - 1) / PLANE_BLOCK, pool_fwd_task, &c);
    s->argmax_valid = s->argmax != NULL;
    return QK_OK;
}

static void pool_bwd_task(void *vc, int64_t t, int worker)
{
    (void)worker;
    const pool_ctx *c = vc;
    const pool_state *s = c->s;
    const qk_window *w = &s->w;
    const int64_t isz = qk_win_in_size(w), osz = qk_win_out_size(w), planes = s->N * s->C;
    int64_t p0 = t * PLANE_BLOCK, p1 = p0 + PLANE_BLOCK < planes ? p0 + PLANE_BLOCK : planes;
    for (int64_t p = p0; p < p1; p++) {
        const float *dy = c->dY + p * osz;
        float *dx = c->dX + p * isz;
        if (s->kind == POOL_MAX) {
            const int32_t *am = s->argmax + p * osz;
            for (int64_t o = 0; o < osz; o++)
                if (am[o] >= 0)
                    dx[am[o]] += dy[o];
        } else if (s->kind == POOL_AVG) {
            avg_plane(w, s->count_include_pad, NULL, NULL, dy, dx);
        } else {
            qk_vaddc(dx, dy[0] / (float)isz, isz);
        }
    }
}

static qk_status pool_backward(qk_exec *x, qk_node *n)
{
    qk_graph *g = x->g;
    pool_state *s = n->state;
    qk_value *xv = qk_in(g, n, 0);
    if (!xv->grad.data)
        return QK_OK;
    if (s->dt != QK_F32)
        return qk_error(QK_ERR_UNSUPPORTED, "%s: backward needs float32", pool_name(s->kind));
    if (s->kind == POOL_MAX && !s->argmax_valid)
        return qk_error(QK_ERR_STATE, "MaxPool: backward without a training forward");
    pool_ctx c = { .s = s, .dY = qk_f32(&qk_out(g, n, 0)->grad), .dX = xv->grad.data };
    int64_t planes = s->N * s->C;
    qk_pool_run(x->pool, (planes + PLANE_BLOCK - 1) / PLANE_BLOCK, pool_bwd_task, &c);
    return QK_OK;
}

const qk_op qk_op_maxpool = {
    .type = "MaxPool",
    .init = maxpool_init,
    .infer = pool_infer,
    .reshape = pool_reshape,
    .forward = pool_forward,
    .backward = pool_backward,
    .destroy = pool_destroy,
};

const qk_op qk_op_averagepool = {
    .type = "AveragePool",
    .init = avgpool_init,
    .infer = pool_infer,
    .reshape = pool_reshape,
    .forward = pool_forward,
    .backward = pool_backward,
    .destroy = pool_destroy,
};

const qk_op qk_op_globalaveragepool = {
    .type = "GlobalAveragePool",
    .init = gavgpool_init,
    .infer = pool_infer,
    .reshape = pool_reshape,
    .forward = pool_forward,
    .backward = pool_backward,
    .destroy = pool_destroy,
};
