/* Conv (ONNX opset 1-13 semantics): group (so depthwise), strides, pads,
 * dilations, auto_pad, optional bias; 1-D, 2-D, 3-D.
 *
 *   X [N, C, in...]   W [M, C/group, k...]   B [M] (optional)   Y [N, M, out...]
 *
 * Paths (chosen in infer from the shapes; the graph option `reference` forces REF):
 *   REF     conv_ref.c direct loops, any rank (3-D convs always take it);
 *   DW      2-D depthwise (group == C == M): conv_dw.c kernels on stacks of
 *           planes of one channel (several samples share the weights):
 *           direct AVX-512 rows (conv_dw__avx512.c) for strides 1 and 2
 *           without dilation on a CPU with AVX-512, else phase planes;
 *   1X1     2-D 1x1, stride 1, no pads: Y_n = W * X_n, no im2col;
 *   FLAT    2-D, group 1, no dilation, CPU with AVX-512, and either stride
 *           1 with OW == W >= FLAT_MIN_W and pads <= k-1, or stride 2
 *           with OW >= FLAT_MIN_OW2: direct convolution on zero-padded copies
 *           of the planes (conv_flat.h), no im2col. Stride 1 puts several
 *           samples side by side in one strip per channel, sharing their
 *           pad columns; stride 2 splits each plane into its four
 *           row/column parity phases, so every tap is again a shifted
 *           contiguous run (a 1x1 keeps phase (0, 0) only), and stacks
 *           small planes. Backward: dW by the conv_flat dW kernel (a 1x1:
 *           one GEMM) over batches of padded planes; dX, for stride 1, as
 *           the forward kernel over padded dY with the flipped, transposed
 *           weights, for stride 2 as W^T dY plus col2im;
 *   IM2COL  other 1-D/2-D: per sample and group, im2col into the worker's
 *           scratch then Y_n,g = W_g[Mg, K] * col[K, OHW] via qk_sgemm.
 * Forward tasks are samples x groups (DW: blocks of DW_NB samples x channels).
 *
 * Backward ADDS dX, dW, dB. dW and dB are sums over the batch; to keep
 * results identical for any thread count the batch is split into
 * P = min(N, CONV_PARTS) fixed parts (from N only). Each task (part, group)
 * writes its own partial sums (n->state, allocated in reshape); a final pass
 * adds the P partials in part order into the grads. dX of a sample is
 * written by exactly one task. */
#include "qkit/ops.h"
#include "conv_flat.h"
#include "fuse.h"
#include "qkit/cpu.h"
#include "fkern.h"
#include "fvec.h"
#include "conv_kern.h"

#include <math.h>
#include <string.h>

enum { CONV_REF = 0, CONV_DW = 1, CONV_1X1 = 2, CONV_IM2COL = 3, CONV_FLAT = 4 };
#define FLAT_MIN_W 7    /* stride 1: narrower maps waste too much on pad columns: IM2COL */
#define FLAT_MIN_OW2 7   /* stride 2: the phases have one pad column, not kw - 1 */
#define FLAT_DW_K 8192  /* backward: samples per dW GEMM batch ~ this many positions */
#define CONV_PARTS 16  /* batch parts for dW/dB partial sums */
#define DW_NB 8        /* samples per depthwise forward task */
#define RED_CHUNK 4096 /* elements per reduction task */

typedef struct conv_state {
    qk_win_attrs a;
    int64_t group;
    /* resolved by infer */
    qk_window w;
    int64_t N, C, M, cg, mg, ksz, K; /* K = cg * ksz, the GEMM depth */
    int path;
    /* FLAT geometry (flat_geom): stride fs (1, 2); Hq rows per plane or
     * strip. Stride 1: gap zero columns around each sample in a strip, Wq
     * = W + gap columns and pq = Hq * Wq floats per sample. Stride 2: nph
     * phases per channel (4, or 1 for a 1x1, which reads phase (0, 0)
     * only), a phase plane of rows of Wq floats and pq floats in all, F
     * forward positions per plane. Zeroed slack after a buffer. */
    int64_t fs, nph, gap, Wq, Hq, pq, F, slack;
    float *wpk, *wfpk; /* packed forward / flipped weights (conv_flat.h) */
    double *rmom;      /* fuse.h: [N][M][3] output row moments for the BatchNormalization, or NULL */
    /* fuse.h, inference: the BatchNormalization applied here (node index or
     * -1), the value written instead of our output (its or its Relu's), the
     * Relu, and the per-channel a, b of the last forward ([2][M]) */
    int bn, bn_out;
    qk_fused_act bn_act; /* the activation the folded BatchNormalization runs */
    float bn_lo, bn_hi;  /* its bounds when a Clip */
    float *bnab;
    /* training: P partial sums of [dW (M*K) | dB (M)] */
    int64_t parts_cap;
    float *part;
} conv_state;

static qk_status conv_init(qk_graph *g, qk_node *n)
{
    (void)g;
    if (n->n_in < 2 || n->n_in > 3 || n->n_out != 1 || n->in[0] < 0 || n->in[1] < 0)
        return qk_error(QK_ERR_ARG, "Conv: expects inputs X, W[, B] and one output (got %d inputs, %d outputs)",
                        n->n_in, n->n_out);
    conv_state *s = qk_calloc(1, sizeof *s);
    if (!s)
        return qk_error(QK_ERR_NOMEM, "Conv: out of memory");
    n->state = s;
    s->bn = -1;
    qk_status st = qk_win_parse(n, "Conv", &s->a);
    if (st != QK_OK)
        return st;
    if (s->a.ceil_mode)
        return qk_error(QK_ERR_ARG, "Conv: has no ceil_mode attribute");
    s->group = qk_node_int(n, "group", 1);
    if (s->group < 1)
        return qk_error(QK_ERR_ARG, "Conv: group must be >= 1 (got %lld)", (long long)s->group);
    return QK_OK;
}

static void conv_destroy(qk_node *n)
{
    conv_state *s = n->state;
    if (s) {
        qk_aligned_free(s->part);
        qk_aligned_free(s->wpk);
        qk_free(s->rmom);
        qk_free(s->bnab);
    }
    qk_free(s);
    n->state = NULL;
}

/* Shapes the FLAT path takes (see the top of the file). */
static int flat_ok(const qk_window *w, int64_t group)
{
    if (group != 1 || w->d[1] != 1 || w->d[2] != 1 || w->s[1] != w->s[2] || w->k[1] * w->k[2] > QK_CFLAT_MAXK ||
        qk_cpu_isa() < QK_ISA_AVX512)
        return 0;
    if (w->s[1] == 1)
        return w->out[2] == w->in[2] && w->in[2] >= FLAT_MIN_W && w->pb[1] <= w->k[1] - 1 &&
               w->pe[1] <= w->k[1] - 1 && w->pb[2] <= w->k[2] - 1 && w->pe[2] <= w->k[2] - 1;
    return w->s[1] == 2 && w->out[2] >= FLAT_MIN_OW2;
}

static qk_status conv_infer(qk_graph *g, qk_node *n)
{
    conv_state *s = n->state;
    const qk_tensor *x = &qk_in(g, n, 0)->t, *w = &qk_in(g, n, 1)->t;
    const qk_value *bv = qk_in(g, n, 2);
    char b1[96], b2[96];
    if (x->dtype != QK_F32 || w->dtype != QK_F32 || (bv && bv->t.dtype != QK_F32))
        return qk_error(QK_ERR_UNSUPPORTED, "Conv: only float32 is supported (X %s, W %s)",
                        qk_dtype_name(x->dtype), qk_dtype_name(w->dtype));
    if (x->ndim < 3 || x->ndim > 5 || w->ndim != x->ndim)
        return qk_error(QK_ERR_SHAPE, "Conv: input %s and weight %s must both have rank 3, 4 or 5",
                        qk_shape_str(x, b1, sizeof b1), qk_shape_str(w, b2, sizeof b2));
    int nsp = x->ndim - 2;
    int64_t C = x->dims[1], M = w->dims[0];
    if (C != w->dims[1] * s->group)
        return qk_error(QK_ERR_SHAPE, "Conv: input has %lld channels but weight %s with group %lld expects %lld",
                        (long long)C, qk_shape_str(w, b2, sizeof b2), (long long)s->group,
                        (long long)(w->dims[1] * s->group));
    if (M % s->group)
        return qk_error(QK_ERR_SHAPE, "Conv: %lld output channels are not divisible by group %lld",
                        (long long)M, (long long)s->group);
    if (bv && (bv->t.ndim != 1 || bv->t.dims[0] != M))
        return qk_error(QK_ERR_SHAPE, "Conv: bias %s must be [%lld]", qk_shape_str(&bv->t, b1, sizeof b1),
                        (long long)M);
    for (int i = 0; i < s->a.nk && i < nsp; i++)
        if (s->a.k[i] != w->dims[2 + i])
            return qk_error(QK_ERR_SHAPE, "Conv: kernel_shape[%d] = %lld but weight %s", i,
                            (long long)s->a.k[i], qk_shape_str(w, b2, sizeof b2));
    qk_status st = qk_win_resolve(&s->a, "Conv", nsp, x->dims + 2, w->dims + 2, &s->w);
    if (st != QK_OK)
        return st;
    s->N = x->dims[0];
    s->C = C;
    s->M = M;
    s->cg = C / s->group;
    s->mg = M / s->group;
    s->ksz = qk_win_k_size(&s->w);
    s->K = s->cg * s->ksz;
    const qk_window *wn = &s->w;
    if (nsp > 2)
        s->path = CONV_REF;
    else if (s->group == C && M == C)
        s->path = CONV_DW;
    else if (wn->k[1] == 1 && wn->k[2] == 1 && wn->s[1] == 1 && wn->s[2] == 1 && wn->pb[1] == 0 &&
             wn->pb[2] == 0 && wn->pe[1] == 0 && wn->pe[2] == 0)
        s->path = CONV_1X1;
    else
        s->path = CONV_IM2COL;
    if (s->path == CONV_IM2COL && nsp == 2 && flat_ok(wn, s->group)) {
        const int64_t kh = wn->k[1], kw = wn->k[2], H = wn->in[1], W = wn->in[2], OH = wn->out[1];
        s->path = CONV_FLAT;
        s->fs = wn->s[1];
        s->nph = s->fs == 1 ? 1 : kh * kw == 1 ? 1 : 4; /* a 1x1 reads phase (0, 0) only */
        if (s->fs == 1) {
            /* the gap fits the forward pads and the flipped ones (kw-1-pad) */
            const int64_t pl = wn->pb[2], pr = wn->pe[2];
            int64_t gap = pl > pr ? pl : pr;
            gap = kw - 1 - pl > gap ? kw - 1 - pl : gap;
            gap = kw - 1 - pr > gap ? kw - 1 - pr : gap;
            /* rows: the forward padding and the flipped one (H + kh - 1).
             * The dW kernel's last 16-position block reads dY up to
             * round16(F) - F positions past the output grid: zeros, the
             * rest of the channel's round16 and then the next channel's
             * flipped top pad rows and left gap (pl <= gap). */
            int64_t rows = H + wn->pb[1] + wn->pe[1];
            s->Hq = H + kh - 1 > rows ? H + kh - 1 : rows;
            s->gap = gap;
            s->Wq = W + gap;
            s->pq = s->Hq * s->Wq;
            s->slack = (64 + kw + 15) / 16 * 16; /* kernel reads past a buffer's last channel: < 48 + kw */
        } else {
            s->Hq = (H + wn->pb[1] + wn->pe[1] + 1) / 2;
            s->Wq = (W + wn->pb[2] + wn->pe[2] + 1) / 2;
            s->pq = (s->Hq * s->Wq + 15) / 16 * 16; /* qk_cflat_dw runs over multiples of 16 */
            s->F = OH * s->Wq;
            s->slack = (qk_cflat_fup(s->F) + 2 * (kh * s->Wq + kw) + 15) / 16 * 16;
        }
    }
    int64_t dims[5];
    dims[0] = s->N;
    dims[1] = M;
    for (int i = 0; i < nsp; i++)
        dims[2 + i] = wn->out[3 - nsp + i];
    qk_tensor_set_shape(&qk_out(g, n, 0)->t, QK_F32, x->ndim, dims);
    return QK_OK;
}

static int64_t conv_parts(int64_t N) { return N < 1 ? 1 : N < CONV_PARTS ? N : CONV_PARTS; } /* >= 1: N may be 0 */

/* Backward dW of the GEMM paths: the samples of a part go through the
 * weight-gradient GEMM DW_COLS output positions at a time (at least one
 * sample), so small feature maps get a deep GEMM instead of one short one
 * per sample. Samples per batch depend on the shapes only. */
#define DW_COLS 512
static int64_t dw_batch(const conv_state *s, int64_t osz)
{
    int64_t P = conv_parts(s->N), np = P > 0 ? (s->N + P - 1) / P : 1, nb = DW_COLS / (osz > 0 ? osz : 1);
    nb = nb < 1 ? 1 : nb;
    return nb < np ? nb : np;
}

/* Workspace floats for that batch: dcol and col [K, nb*osz], dY repacked [mg, nb*osz]. */
static int64_t dw_batch_floats(const conv_state *s, int64_t osz)
{
    return (2 * s->K + s->mg) * dw_batch(s, osz) * osz;
}

/* IM2COL forward: samples per GEMM (columns side by side), from the shapes. */
static int64_t fwd_batch(const conv_state *s, int64_t osz)
{
    int64_t nb = DW_COLS / (osz > 0 ? osz : 1);
    nb = nb < 1 ? 1 : nb;
    return nb < s->N ? nb : s->N > 0 ? s->N : 1; /* at least 1: callers divide by it */
}

/* FLAT forward: samples per kernel call, their padded planes side by side
 * so that small maps fill the kernel's 48-position blocks (the sums of a
 * position do not depend on the batch: only the shapes choose it). At
 * least 8 tasks remain. */
#define FLAT_FWD_POS 4096
static int64_t flat_fwd_batch(const conv_state *s)
{
    int64_t nb = FLAT_FWD_POS / s->pq, cap = s->N / 8;
    nb = nb < cap ? nb : cap;
    nb = nb < 8 ? nb : 8;
    return nb < 1 ? 1 : nb;
}

/* FLAT backward: samples per dW GEMM batch (from the shapes only). */
static int64_t flat_batch(const conv_state *s)
{
    int64_t P = conv_parts(s->N), np = P > 0 ? (s->N + P - 1) / P : 1, nb = FLAT_DW_K / s->pq;
    nb = nb < 1 ? 1 : nb;
    return nb < np ? nb : np;
}

/* Where a batch of nb samples sits in the FLAT buffers. Stride 1: per
 * channel one strip (qk_cflat_strip__avx512), the samples side by side
 * along its rows with gap zero columns before, between and after them, so
 * a tap is again a shifted run and narrow maps waste little on pads.
 * Stride 2: per channel nph phases of nb planes of pq floats
 * (qk_cflat_phases__avx512), dY as nb planes. Positions count from a
 * buffer's channel start; sample k's value (row r, column c) at
 * base + k*step + r*Wq + c. */
typedef struct flat_geo {
    int64_t Wq;     /* floats per row */
    int64_t xld;    /* input buffer: floats per channel */
    int64_t dld;    /* dY buffer: floats per channel */
    int64_t step;   /* from one sample to the next */
    int64_t F;      /* forward positions the kernel computes */
    int64_t y0;     /* base of the forward output */
    int64_t dv;     /* in the dY buffer, where dY on the forward output grid starts (the dW operand) */
    int64_t K;      /* dW positions (a multiple of 16) */
    int64_t GX, x0; /* stride 1, the dX pass: positions, and the base of dX */
} flat_geo;

static flat_geo flat_geom(const conv_state *s, int64_t nb)
{
    const qk_window *w = &s->w;
    flat_geo g = { 0 };
    if (s->fs == 1) {
        const int64_t pt2 = w->k[1] - 1 - w->pb[1], pl2 = w->k[2] - 1 - w->pb[2];
        g.step = s->Wq;
        g.Wq = s->gap + nb * g.step;
        g.xld = g.dld = (s->Hq * g.Wq + 15) / 16 * 16;
        g.F = w->out[1] * g.Wq;
        g.y0 = s->gap - w->pb[2];
        g.dv = pt2 * g.Wq + w->pb[2];
        g.K = (g.F + 15) / 16 * 16;
        g.GX = w->in[1] * g.Wq;
        g.x0 = s->gap - pl2;
    } else {
        g.step = s->pq;
        g.Wq = s->Wq;
        g.xld = s->nph * nb * s->pq;
        g.dld = nb * s->pq;
        g.F = (nb - 1) * s->pq + s->F;
        g.K = nb * s->pq;
    }
    return g;
}

static qk_status conv_reshape(qk_graph *g, qk_node *n, int training, size_t *ws_bytes)
{
    conv_state *s = n->state;
    int64_t osz = qk_win_out_size(&s->w);
    size_t ws = 0;
    if (s->path == CONV_IM2COL) {
        int64_t fb = fwd_batch(s, osz), f = (s->K + s->mg) * fb * osz;
        if (training && dw_batch_floats(s, osz) > f)
            f = dw_batch_floats(s, osz);
        ws = (size_t)f * sizeof(float);
    }
    else if (s->path == CONV_FLAT) {
        const flat_geo gf = flat_geom(s, flat_fwd_batch(s));
        int64_t f = s->C * gf.xld + s->slack + s->M * qk_cflat_fup(gf.F);
        if (training) {
            const flat_geo gb = flat_geom(s, flat_batch(s));
            int64_t dxs = s->fs == 1 ? s->C * qk_cflat_fup(gb.GX) : s->K * osz;
            int64_t b = s->C * gb.xld + s->M * gb.dld + 2 * s->slack + 16 + dxs;
            f = b > f ? b : f;
        }
        ws = (size_t)f * sizeof(float);
    }
    else if (s->path == CONV_DW) {
        int64_t nb = DW_NB < s->N ? DW_NB : s->N, P = conv_parts(s->N), np = (s->N + P - 1) / P;
        size_t f = qk_dw_scratch_floats(&s->w, nb, 0);
        if (training && qk_dw_scratch_floats(&s->w, np, 1) > f)
            f = qk_dw_scratch_floats(&s->w, np, 1);
        ws = f * sizeof(float);
    }
    *ws_bytes = ws;
    qk_aligned_free(s->part);
    s->part = NULL;
    s->parts_cap = 0;
    qk_aligned_free(s->wpk);
    s->wpk = s->wfpk = NULL;
    qk_free(s->rmom);
    s->rmom = NULL;
    if (qk_conv_bn_fused(g, n, training) >= 0) {
        s->rmom = qk_calloc((size_t)(s->N * s->M * 3), sizeof(double));
        if (!s->rmom)
            return qk_error(QK_ERR_NOMEM, "Conv: out of memory");
    }
    qk_free(s->bnab);
    s->bnab = NULL;
    s->bn = qk_conv_bn_folded(g, n, training);
    if (s->bn >= 0) {
        const qk_node *bn = &g->nodes[s->bn];
        int r = qk_act_fused(g, bn, training, &s->bn_act);
        s->bn_out = r >= 0 ? s->bn_act.out : bn->out[0];
        s->bnab = qk_calloc((size_t)(2 * s->M), sizeof(float));
        if (!s->bnab)
            return qk_error(QK_ERR_NOMEM, "Conv: out of memory");
    }
    if (s->path == CONV_FLAT) {
        size_t a = (size_t)qk_cflat_packed_floats(s->M, s->C, s->ksz), b = (size_t)qk_cflat_packed_floats(s->C, s->M, s->ksz);
        int flip = training && s->fs == 1;
        s->wpk = qk_aligned_alloc((a + (flip ? b : 0)) * sizeof(float));
        if (!s->wpk)
            return qk_error(QK_ERR_NOMEM, "Conv: cannot allocate packed weights");
        s->wfpk = flip ? s->wpk + a : NULL;
    }
    if (training) {
        s->parts_cap = conv_parts(s->N);
        size_t bytes = (size_t)(s->parts_cap * (s->M * s->K + s->M)) * sizeof(float);
        s->part = qk_aligned_alloc(bytes);
        if (!s->part)
            return qk_error(QK_ERR_NOMEM, "Conv: cannot allocate %zu bytes of gradient partials", bytes);
    }
    return QK_OK;
}

/* ---- 2-D helpers (window dims 1 and 2 are H and W) ---- */

/* First and one-past-last output column whose input column o*s + off is in [0, W). */
static inline void col_range(int64_t off, int64_t s, int64_t W, int64_t OW, int64_t *lo, int64_t *hi)
{
    int64_t l = off >= 0 ? 0 : (-off + s - 1) / s;
    int64_t h = W - 1 - off >= 0 ? (W - 1 - off) / s + 1 : 0;
    *lo = l < OW ? l : OW;
    *hi = h < OW ? h : OW;
    if (*hi < *lo)
        *hi = *lo;
}

/* gcc turns the row loops below back into memcpy/memset calls
 * (-ftree-loop-distribute-patterns), which cost more than the copy itself on
 * rows this short; keep them inline in im2col/col2im. */
#if defined(__GNUC__) && !defined(__clang__)
#define CONV_NO_LIBCALLS __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define CONV_NO_LIBCALLS
#endif

/* Short-row helpers for im2col / col2im: rows are OW floats (often 8-32), too
 * short for a libc call or the 16-float fvec blocks to pay off. 4-lane
 * chunks, element by element, so results equal the plain loops. */
static inline void row_copy(float *restrict d, const float *restrict s, int64_t n)
{
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        qk_f4 v = qk_f4_ld(s + i);
        memcpy(d + i, &v, sizeof v);
    }
    for (; i < n; i++)
        d[i] = s[i];
}

static inline void row_zero(float *restrict d, int64_t n)
{
    const qk_f4 z = { 0 };
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        memcpy(d + i, &z, sizeof z);
    for (; i < n; i++)
        d[i] = 0.0f;
}

static inline void row_add(float *restrict d, const float *restrict s, int64_t n)
{
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        qk_f4 v = qk_f4_ld(d + i) + qk_f4_ld(s + i);
        memcpy(d + i, &v, sizeof v);
    }
    for (; i < n; i++)
        d[i] += s[i];
}

/* col[(c*kh + i)*kw + j][oh*OW + ow] = x[c][oh*sh - pt + i*dh][ow*sw - pl + j*dw] (0 outside);
 * ldc: distance between rows of col (OH*OW, or more when several samples
 * sit side by side in one matrix). */
/* Stride 1, no dilation, OW == W (a "same" window): output row oh reads
 * input row oh - pt + i, so for one (c, i, j) the rows inside the image are
 * one contiguous run of x shifted by (i - pt) * W + j - pl; only the columns
 * that fall in the left/right pads differ (they wrap to the neighbouring
 * row) and are fixed up after the run. */
static int win_flat(const qk_window *w)
{
    return w->s[1] == 1 && w->s[2] == 1 && w->d[1] == 1 && w->d[2] == 1 && w->out[2] == w->in[2];
}

/* Output rows [*r0, *r1) of kernel row i read rows inside the image. */
static inline void flat_rows(const qk_window *w, int64_t i, int64_t *r0, int64_t *r1)
{
    const int64_t H = w->in[1], OH = w->out[1], off = i - w->pb[1];
    int64_t a = off < 0 ? -off : 0, b = H - off < OH ? H - off : OH;
    *r0 = a < OH ? a : OH;
    *r1 = b > *r0 ? b : *r0;
}

CONV_NO_LIBCALLS static void im2col_flat(const qk_window *w, int64_t cg, const float *x, float *col, int64_t ldc)
{
    const int64_t H = w->in[1], W = w->in[2], OH = w->out[1], OW = w->out[2];
    for (int64_t c = 0; c < cg; c++)
        for (int64_t i = 0; i < w->k[1]; i++) {
            int64_t r0, r1;
            flat_rows(w, i, &r0, &r1);
            for (int64_t j = 0; j < w->k[2]; j++) {
                float *dst = col + ((c * w->k[1] + i) * w->k[2] + j) * ldc;
                const int64_t offw = j - w->pb[2];
                int64_t lo, hi;
                col_range(offw, 1, W, OW, &lo, &hi);
                row_zero(dst, r0 * OW);
                row_zero(dst + r1 * OW, (OH - r1) * OW);
                if (r1 > r0 && hi > lo) {
                    /* flat f = oh*OW + o reads x[c][f + shift] */
                    const int64_t shift = (i - w->pb[1]) * W + offw;
                    const int64_t f0 = r0 * OW + lo, f1 = (r1 - 1) * OW + hi;
                    memcpy(dst + f0, x + c * H * W + f0 + shift, (size_t)(f1 - f0) * sizeof(float));
                }
                for (int64_t oh = r0; oh < r1; oh++) {
                    for (int64_t o = 0; o < lo; o++)
                        dst[oh * OW + o] = 0.0f;
                    for (int64_t o = hi; o < OW; o++)
                        dst[oh * OW + o] = 0.0f;
                }
            }
        }
}

CONV_NO_LIBCALLS static void im2col(const qk_window *w, int64_t cg, const float *x, float *col, int64_t ldc)
{
    const int64_t H = w->in[1], W = w->in[2], OH = w->out[1], OW = w->out[2];
    const int64_t sh = w->s[1], sw = w->s[2];
    if (win_flat(w)) {
        im2col_flat(w, cg, x, col, ldc);
        return;
    }
    for (int64_t c = 0; c < cg; c++)
        for (int64_t i = 0; i < w->k[1]; i++)
            for (int64_t j = 0; j < w->k[2]; j++) {
                float *dst = col + ((c * w->k[1] + i) * w->k[2] + j) * ldc;
                int64_t offw = j * w->d[2] - w->pb[2], lo, hi;
                col_range(offw, sw, W, OW, &lo, &hi);
                for (int64_t oh = 0; oh < OH; oh++, dst += OW) {
                    int64_t ih = oh * sh - w->pb[1] + i * w->d[1];
                    if (ih < 0 || ih >= H) {
                        row_zero(dst, OW);
                        continue;
                    }
                    const float *src = x + (c * H + ih) * W + offw;
                    for (int64_t o = 0; o < lo; o++)
                        dst[o] = 0.0f;
                    if (sw == 1)
                        row_copy(dst + lo, src + lo, hi - lo);
                    else
                        for (int64_t o = lo; o < hi; o++)
                            dst[o] = src[o * sw];
                    for (int64_t o = hi; o < OW; o++)
                        dst[o] = 0.0f;
                }
            }
}

/* col2im of a flat window: the pad columns of dcol are cleared first (they
 * belong to no input element), then each (c, i, j) row is one contiguous
 * add. Per input element the terms arrive in the same (c, i, j) order as in
 * the row-wise loop below, so both give the same sums. */
CONV_NO_LIBCALLS static void col2im_flat(const qk_window *w, int64_t cg, float *dcol, int64_t ldc, float *dx)
{
    const int64_t H = w->in[1], W = w->in[2], OW = w->out[2];
    for (int64_t c = 0; c < cg; c++)
        for (int64_t i = 0; i < w->k[1]; i++) {
            int64_t r0, r1;
            flat_rows(w, i, &r0, &r1);
            if (r1 <= r0)
                continue;
            for (int64_t j = 0; j < w->k[2]; j++) {
                float *src = dcol + ((c * w->k[1] + i) * w->k[2] + j) * ldc;
                const int64_t offw = j - w->pb[2];
                int64_t lo, hi;
                col_range(offw, 1, W, OW, &lo, &hi);
                if (hi <= lo)
                    continue;
                for (int64_t oh = r0; oh < r1; oh++) {
                    for (int64_t o = 0; o < lo; o++)
                        src[oh * OW + o] = 0.0f;
                    for (int64_t o = hi; o < OW; o++)
                        src[oh * OW + o] = 0.0f;
                }
                const int64_t shift = (i - w->pb[1]) * W + offw;
                const int64_t f0 = r0 * OW + lo, f1 = (r1 - 1) * OW + hi;
                qk_fk()->add(dx + c * H * W + f0 + shift, src + f0, f1 - f0);
            }
        }
}

/* Adjoint of im2col: dx[c][ih][iw] += dcol[...] (rows ldc apart; dcol is
 * scratch: the flat path clears its pad columns). avx512: the CPU has it
 * (stride-2 rows by qk_cflat_add_s2__avx512, the same sums). */
CONV_NO_LIBCALLS static void col2im(const qk_window *w, int64_t cg, float *dcol, int64_t ldc, float *dx, int avx512)
{
    const int64_t H = w->in[1], W = w->in[2], OH = w->out[1], OW = w->out[2];
    const int64_t sh = w->s[1], sw = w->s[2];
    if (win_flat(w)) {
        col2im_flat(w, cg, dcol, ldc, dx);
        return;
    }
    for (int64_t c = 0; c < cg; c++)
        for (int64_t i = 0; i < w->k[1]; i++)
            for (int64_t j = 0; j < w->k[2]; j++) {
                const float *src = dcol + ((c * w->k[1] + i) * w->k[2] + j) * ldc;
                int64_t offw = j * w->d[2] - w->pb[2], lo, hi;
                col_range(offw, sw, W, OW, &lo, &hi);
                for (int64_t oh = 0; oh < OH; oh++, src += OW) {
                    int64_t ih = oh * sh - w->pb[1] + i * w->d[1];
                    if (ih < 0 || ih >= H)
                        continue;
                    float *dst = dx + (c * H + ih) * W + offw;
                    if (sw == 1)
                        row_add(dst + lo, src + lo, hi - lo);
                    else if (sw == 2 && avx512)
                        qk_cflat_add_s2__avx512(dst + lo * 2, src + lo, hi - lo);
                    else
                        for (int64_t o = lo; o < hi; o++)
                            dst[o * sw] += src[o];
                }
            }
}

/* ---- tasks ---- */

typedef struct conv_ctx {
    const qk_exec *x;
    const conv_state *s;
    const float *X, *W, *B, *dY;
    float *Y, *dX, *dW, *dB;
    int64_t P;    /* backward: batch parts */
    int write_dx; /* backward: dX is fresh (uncleared): write it, don't add */
} conv_ctx;

/* The epilogue of output channel m: the folded BatchNormalization (and its
 * activation) of an inference plan, else a plain copy. */
static qk_cflat_epi conv_epi(const conv_state *s, int64_t m)
{
    qk_cflat_epi e = { .op = QK_CFLAT_COPY };
    if (s->bnab) {
        e.a = s->bnab[m];
        e.b = s->bnab[s->M + m];
        e.lo = s->bn_lo;
        e.hi = s->bn_hi;
        e.op = s->bn_act.clip ? QK_CFLAT_CLIP : s->bn_act.node >= 0 ? QK_CFLAT_RELU : QK_CFLAT_AFFINE;
    }
    return e;
}

/* Rows (sample n, channels [m0, m1)) of the output are final and in
 * cache: apply the folded BatchNormalization (and its activation) unless
 * the caller did (applied), take the row moments for the training one
 * (fuse.h). */
static void conv_moments(const conv_state *s, float *Y, int64_t n, int64_t m0, int64_t m1, int applied)
{
    const int64_t osz = qk_win_out_size(&s->w);
    if (s->bnab && !applied) {
        const qk_fkern *fk = qk_fk();
        for (int64_t m = m0; m < m1; m++) {
            float *y = Y + (n * s->M + m) * osz;
            const float a = s->bnab[m], b = s->bnab[s->M + m], ab[4] = { a, b, s->bn_lo, s->bn_hi };
            if (s->bn_act.clip)
                fk->affine_clip(y, y, ab, osz);
            else
                (s->bn_act.node >= 0 ? fk->affine_relu : fk->affine)(y, y, a, b, osz);
        }
    }
    if (!s->rmom)
        return;
    for (int64_t m = m0; m < m1; m++)
        qk_row_moments(Y + (n * s->M + m) * osz, osz, s->rmom + (n * s->M + m) * 3);
}

const double *qk_conv_row_moments(const qk_node *conv)
{
    const conv_state *s = conv->state;
    return s ? s->rmom : NULL;
}

/* ---- FLAT path ---- */

/* The copies below read planes of a few KiB, a sample's channel or a
 * channel's samples apart; each asks for the plane it reads two calls later
 * (the strips: the next channel's planes) with qk_prefetch_floats. */

/* Zero-padded planes: nch channels of nb samples (sample k, channel ch at
 * src + k*sn + ch*sc, h x w) into dst[(ch*nb + k)*pq] (qk_cflat_pad), then
 * the zero slack after the last plane (stride 2's dY). */
static void flat_pad(const conv_state *s, const float *src, int64_t sn, int64_t sc, int64_t nch, int64_t nb, int64_t h,
                     int64_t w, int64_t pt, int64_t pl, float *dst)
{
    for (int64_t ch = 0; ch < nch; ch++)
        for (int64_t k = 0; k < nb; k++) {
            if (k + 2 < nb)
                qk_prefetch_floats(src + (k + 2) * sn + ch * sc, h * w);
            qk_cflat_pad__avx512(dst + (ch * nb + k) * s->pq, src + k * sn + ch * sc, h, w, s->Wq, pt, pl, s->pq);
        }
    memset(dst + nch * nb * s->pq, 0, (size_t)s->slack * sizeof(float));
}

/* Stride-2 phases of the padded input: channel c, phase (p, q) of sample k
 * at dst[((c*nph + 2p + q)*nb + k)*pq] (qk_cflat_phases); then the slack. */
static void phase_pad(const conv_state *s, const float *src, int64_t sn, int64_t nb, float *dst)
{
    const qk_window *w = &s->w;
    const int64_t H = w->in[1], W = w->in[2];
    for (int64_t c = 0; c < s->C; c++)
        for (int64_t k = 0; k < nb; k++) {
            if (k + 2 < nb)
                qk_prefetch_floats(src + (k + 2) * sn + c * H * W, H * W);
            qk_cflat_phases__avx512(dst + (c * s->nph * nb + k) * s->pq, nb * s->pq, (int)s->nph, src + k * sn + c * H * W,
                                    H, W, s->Hq, s->Wq, w->pb[1], w->pb[2], s->pq);
        }
    memset(dst + s->C * s->nph * nb * s->pq, 0, (size_t)s->slack * sizeof(float));
}

/* Stride-1 strips of nch channels of nb samples (sample k, channel ch at
 * src + k*sn + ch*cs, h x w) into dst + ch*ld (qk_cflat_strip), then the
 * slack; the next channel's planes are asked for while one is copied. */
static void flat_strips(const conv_state *s, const float *src, int64_t sn, int64_t cs, int64_t nch, int64_t nb,
                        int64_t h, int64_t w, int64_t pt, float *dst, int64_t ld)
{
    for (int64_t ch = 0; ch < nch; ch++) {
        if (ch + 1 < nch)
            for (int64_t k = 0; k < nb; k++)
                qk_prefetch_floats(src + k * sn + (ch + 1) * cs, h * w);
        qk_cflat_strip__avx512(dst + ch * ld, src + ch * cs, sn, nb, h, w, s->gap, pt, ld);
    }
    memset(dst + nch * ld, 0, (size_t)s->slack * sizeof(float));
}

/* The padded input of samples [n0, n0 + nb) (flat_geom's layout), then the slack. */
static void flat_input(const conv_state *s, const flat_geo *g, const float *X, int64_t n0, int64_t nb, float *xb)
{
    const qk_window *w = &s->w;
    const int64_t isz = qk_win_in_size(w);
    if (s->fs != 1) {
        phase_pad(s, X + n0 * s->C * isz, s->C * isz, nb, xb);
        return;
    }
    flat_strips(s, X + n0 * s->C * isz, s->C * isz, isz, s->C, nb, w->in[1], w->in[2], w->pb[1], xb, g->xld);
}

/* Tap offsets into that layout for batches of nb samples (stride 1: the
 * flipped dX pass reads its dY buffer with the same offsets). */
static void flat_offsets(const conv_state *s, const flat_geo *g, int64_t nb, int64_t *off)
{
    const int64_t kh = s->w.k[1], kw = s->w.k[2];
    for (int64_t i = 0; i < kh; i++)
        for (int64_t j = 0; j < kw; j++)
            off[i * kw + j] = s->fs == 1 ? i * g->Wq + j
                                         : ((i & 1) * 2 + (j & 1)) * nb * s->pq + (i >> 1) * s->Wq + (j >> 1);
}

/* Forward task t: samples [t*fb, +fb) in one kernel call over their
 * padded planes side by side. */
static void conv_fwd_flat(const conv_ctx *c, int64_t t, int worker)
{
    const conv_state *s = c->s;
    const qk_window *w = &s->w;
    const int64_t osz = qk_win_out_size(w), OH = w->out[1], OW = w->out[2], fb = flat_fwd_batch(s);
    const int64_t n0 = t * fb, nb = s->N - n0 < fb ? s->N - n0 : fb;
    const flat_geo g = flat_geom(s, nb);
    const int64_t fup = qk_cflat_fup(g.F);
    int64_t off[QK_CFLAT_MAXK];
    float *xb = qk_exec_ws(c->x, worker), *ys = xb + s->C * g.xld + s->slack;
    flat_input(s, &g, c->X, n0, nb, xb);
    flat_offsets(s, &g, nb, off);
    qk_cflat_fwd(s->wpk, s->M, s->C, (int)s->ksz, off, xb, g.xld, g.F, c->B, ys, fup);
    for (int64_t k = 0; k < nb; k++) {
        float *y = c->Y + (n0 + k) * s->M * osz;
        for (int64_t m = 0; m < s->M; m++) {
            const qk_cflat_epi e = conv_epi(s, m);
            qk_cflat_unpad__avx512(y + m * osz, ys + m * fup + g.y0 + k * g.step, OH, OW, g.Wq, &e);
            conv_moments(s, c->Y, n0 + k, m, m + 1, 1);
        }
    }
}

/* Backward of samples [n0, n1): dW partials into pw (set), dB into pb
 * (set), dX written or added. Per batch of nb samples: dY padded so that,
 * from g.dv on, it is dY on the forward output grid (zeros in the pad
 * columns and after) -- the dW kernel's operand. For stride 1 that buffer
 * is a strip with the flipped pads, so the same buffer feeds the dX
 * kernel (the flipped, transposed weights; all nb samples in one call). */
static void conv_bwd_flat(const conv_ctx *c, int64_t n0, int64_t n1, float *pw, float *pb, int worker)
{
    const conv_state *s = c->s;
    const qk_window *w = &s->w;
    const int64_t C = s->C, M = s->M, kh = w->k[1], kk = s->ksz, K = s->K;
    const int64_t H = w->in[1], W = w->in[2], OH = w->out[1], OW = w->out[2], isz = H * W, osz = OH * OW;
    const int64_t nbmax = flat_batch(s), pt2 = s->fs == 1 ? kh - 1 - w->pb[1] : 0;
    const flat_geo gm = flat_geom(s, nbmax);
    float *xb = qk_exec_ws(c->x, worker), *dy0 = xb + C * gm.xld + s->slack;
    float *ys = dy0 + 16 + M * gm.dld + s->slack; /* stride 1: dX strips; stride 2: W^T dY columns */
    int64_t off[QK_CFLAT_MAXK];
    for (int64_t b0 = n0; b0 < n1; b0 += nbmax) {
        const int64_t nb = n1 - b0 < nbmax ? n1 - b0 : nbmax;
        const flat_geo g = flat_geom(s, nb);
        const float *dy = c->dY + b0 * M * osz;
        /* the dW kernel's dY rows start 64-byte aligned (its three dY
         * loads per step then never split a cache line) */
        float *dyb = dy0 + (16 - g.dv % 16) % 16;
        if (s->fs == 1) {
            flat_strips(s, dy, M * osz, osz, M, nb, OH, OW, pt2, dyb, g.dld);
        } else {
            flat_pad(s, dy, M * osz, osz, M, nb, OH, OW, 0, 0, dyb);
        }
        flat_offsets(s, &g, nb, off);
        if (pw) {
            flat_input(s, &g, c->X, b0, nb, xb);
            if (kk == 1) { /* a 1x1: one tap, a plain GEMM dW = dY X^T over the positions */
                qk_sgemm(c->x->g->opts.sgemm, 0, 1, M, C, g.K, 1.0f, dyb + g.dv, g.dld, xb, g.xld,
                         b0 != n0 ? 1.0f : 0.0f, pw, C);
            } else {
                for (int64_t t0 = 0; t0 < kk; t0 += QK_CFLAT_MAXTAP) {
                    int nt = kk - t0 < QK_CFLAT_MAXTAP ? (int)(kk - t0) : QK_CFLAT_MAXTAP;
                    qk_cflat_dw(dyb + g.dv, g.dld, M, xb, g.xld, C, g.K, nt, off + t0, pw + t0, kk, b0 != n0);
                }
            }
        }
        if (!c->dX)
            continue;
        if (s->fs != 1) {
            for (int64_t k = 0; k < nb; k++) {
                float *dx = c->dX + (b0 + k) * C * isz;
                qk_sgemm(c->x->g->opts.sgemm, 1, 0, K, osz, M, 1.0f, c->W, K, c->dY + (b0 + k) * M * osz, osz,
                         0.0f, ys, osz);
                if (c->write_dx)
                    memset(dx, 0, (size_t)(C * isz) * sizeof(float));
                col2im(w, C, ys, osz, dx, 1);
            }
            continue;
        }
        const int64_t gx = qk_cflat_fup(g.GX);
        qk_cflat_fwd(s->wfpk, C, M, (int)kk, off, dyb, g.dld, g.GX, NULL, ys, gx);
        const qk_cflat_epi e = { .op = c->write_dx ? QK_CFLAT_COPY : QK_CFLAT_ADD };
        for (int64_t k = 0; k < nb; k++) {
            float *dx = c->dX + (b0 + k) * C * isz;
            for (int64_t ci = 0; ci < C; ci++)
                qk_cflat_unpad__avx512(dx + ci * isz, ys + ci * gx + g.x0 + k * g.step, H, W, g.Wq, &e);
        }
    }
    if (pb)
        for (int64_t n = n0; n < n1; n++)
            for (int64_t m = 0; m < M; m++) {
                float acc = qk_vsum(c->dY + (n * M + m) * osz, osz);
                pb[m] = n == n0 ? acc : pb[m] + acc;
            }
}

static void conv_fwd_task(void *vc, int64_t t, int worker)
{
    const conv_ctx *c = vc;
    const conv_state *s = c->s;
    const qk_window *w = &s->w;
    const int64_t isz = qk_win_in_size(w), osz = qk_win_out_size(w);
    if (s->path == CONV_DW) {
        int64_t n0 = (t / s->C) * DW_NB, ch = t % s->C, np = s->N - n0 < DW_NB ? s->N - n0 : DW_NB;
        qk_dw_fwd(w, np, c->X + (n0 * s->C + ch) * isz, s->C * isz, c->W + ch * s->ksz, c->B ? c->B[ch] : 0.0f,
                  c->Y + (n0 * s->M + ch) * osz, s->M * osz, qk_exec_ws(c->x, worker));
        for (int64_t k = 0; k < np; k++)
            conv_moments(s, c->Y, n0 + k, ch, ch + 1, 0);
        return;
    }
    if (s->path == CONV_FLAT) {
        conv_fwd_flat(c, t, worker);
        return;
    }
    if (s->path == CONV_IM2COL) {
        /* fb samples side by side: Y[mg, fb*osz] = W_g * col[K, fb*osz] */
        const int64_t fb = fwd_batch(s, osz), b = t / s->group, g = t % s->group, n0 = b * fb;
        const int64_t nb = s->N - n0 < fb ? s->N - n0 : fb, ld = nb * osz;
        float *col = qk_exec_ws(c->x, worker), *yb = col + s->K * fb * osz;
        for (int64_t k = 0; k < nb; k++)
            im2col(w, s->cg, c->X + ((n0 + k) * s->C + g * s->cg) * isz, col + k * osz, ld);
        float *dst = nb == 1 ? c->Y + (n0 * s->M + g * s->mg) * osz : yb;
        qk_sgemm(c->x->g->opts.sgemm, 0, 0, s->mg, ld, s->K, 1.0f, c->W + g * s->mg * s->K, s->K, col, ld, 0.0f,
                 dst, ld);
        for (int64_t k = 0; k < nb; k++)
            for (int64_t m = 0; m < s->mg; m++) {
                float *y = c->Y + ((n0 + k) * s->M + g * s->mg + m) * osz;
                float bias = c->B ? c->B[g * s->mg + m] : 0.0f;
                if (nb > 1)
                    qk_fk()->affine(y, yb + m * ld + k * osz, 1.0f, bias, osz);
                else if (c->B)
                    qk_vaddc(y, bias, osz);
                conv_moments(s, c->Y, n0 + k, g * s->mg + m, g * s->mg + m + 1, 0);
            }
        return;
    }
    /* 1x1 */
    int64_t n = t / s->group, g = t % s->group;
    const float *xg = c->X + (n * s->C + g * s->cg) * isz;
    float *yg = c->Y + (n * s->M + g * s->mg) * osz;
    qk_sgemm(c->x->g->opts.sgemm, 0, 0, s->mg, osz, s->K, 1.0f, c->W + g * s->mg * s->K, s->K, xg, osz, 0.0f,
             yg, osz);
    if (c->B)
        for (int64_t m = 0; m < s->mg; m++)
            qk_vaddc(yg + m * osz, c->B[g * s->mg + m], osz);
    conv_moments(s, c->Y, n, g * s->mg, (g + 1) * s->mg, 0);
}

static qk_status conv_forward(qk_exec *x, qk_node *n)
{
    qk_graph *g = x->g;
    conv_state *s = n->state;
    const qk_value *bv = qk_in(g, n, 2);
    conv_ctx c = { .x = x, .s = s, .X = qk_f32(&qk_in(g, n, 0)->t), .W = qk_f32(&qk_in(g, n, 1)->t),
                   .B = bv ? qk_f32(&bv->t) : NULL, .Y = qk_f32(&qk_out(g, n, 0)->t) };
    if (s->bnab) {
        /* the BatchNormalization's own a, b (batchnorm.c, eval mode) */
        const qk_node *bn = &g->nodes[s->bn];
        const float *sc = qk_f32(&qk_in(g, bn, 1)->t), *bb = qk_f32(&qk_in(g, bn, 2)->t);
        const float *mu = qk_f32(&qk_in(g, bn, 3)->t), *var = qk_f32(&qk_in(g, bn, 4)->t);
        const float eps = qk_node_float(bn, "epsilon", 1e-5f);
        for (int64_t m = 0; m < s->M; m++) {
            float inv = 1.0f / sqrtf(var[m] + eps), a = sc[m] * inv;
            s->bnab[m] = a;
            s->bnab[s->M + m] = bb[m] - mu[m] * a;
        }
        c.Y = qk_f32(&g->values[s->bn_out].t);
        if (s->bn_act.clip)
            qk_clip_bounds(g, &g->nodes[s->bn_act.node], &s->bn_lo, &s->bn_hi);
    }
    if (s->path == CONV_REF || x->g->opts.reference) {
        qk_conv_ref_forward(&s->w, s->N, s->C, s->M, s->group, c.X, c.W, c.B, c.Y);
        for (int64_t i = 0; i < s->N; i++)
            conv_moments(s, c.Y, i, 0, s->M, 0);
        return QK_OK;
    }
    if (s->path == CONV_FLAT)
        qk_cflat_pack(c.W, s->M, s->C, s->ksz, s->wpk);
    int64_t tasks = s->path == CONV_DW ? (s->N + DW_NB - 1) / DW_NB * s->C : s->N * s->group;
    if (s->path == CONV_IM2COL) {
        int64_t fb = fwd_batch(s, qk_win_out_size(&s->w));
        tasks = (s->N + fb - 1) / fb * s->group;
    }
    if (s->path == CONV_FLAT)
        tasks = (s->N + flat_fwd_batch(s) - 1) / flat_fwd_batch(s);
    qk_pool_run(x->pool, tasks, conv_fwd_task, &c);
    return QK_OK;
}

/* Backward task (part p, group or channel block q): samples [n0, n1). */
static void conv_bwd_task(void *vc, int64_t t, int worker)
{
    const conv_ctx *c = vc;
    const conv_state *s = c->s;
    const qk_window *w = &s->w;
    const int64_t isz = qk_win_in_size(w), osz = qk_win_out_size(w);
    const int64_t nq = s->path == CONV_DW ? s->C : s->group;
    const int64_t p = t / nq, q = t % nq;
    const int64_t n0 = p * s->N / c->P, n1 = (p + 1) * s->N / c->P;
    float *pw = c->dW ? s->part + p * (s->M * s->K + s->M) : NULL;
    float *pb = c->dB ? s->part + p * (s->M * s->K + s->M) + s->M * s->K : NULL;
    if (s->path == CONV_DW) {
        const int64_t ch = q, xi = (n0 * s->C + ch) * isz, yi = (n0 * s->M + ch) * osz;
        qk_dw_bwd(w, n1 - n0, c->X + xi, s->C * isz, c->W + ch * s->ksz, c->dY + yi, s->M * osz,
                  c->dX ? c->dX + xi : NULL, c->write_dx, pw ? pw + ch * s->ksz : NULL, pb ? pb + ch : NULL, 1,
                  qk_exec_ws(c->x, worker));
        return;
    }
    if (s->path == CONV_FLAT) {
        conv_bwd_flat(c, n0, n1, pw, pb, worker);
        return;
    }
    const int64_t g = q, mg = s->mg, K = s->K;
    const float *Wg = c->W + g * mg * K;
    /* IM2COL: batches of nb samples side by side (columns ld = nb*osz):
     * dW_g[mg, K] (+)= dY_g[mg, ld] * col[K, ld]^T and dcol[K, ld] =
     * W_g^T dY_g, so small feature maps get deep GEMMs; 1x1: one sample at
     * a time straight from X and into dX */
    const int im2 = s->path == CONV_IM2COL;
    const int64_t nbmax = im2 ? dw_batch(s, osz) : 1;
    float *dcol = im2 ? qk_exec_ws(c->x, worker) : NULL, *col = dcol ? dcol + K * nbmax * osz : NULL;
    float *dyp = col ? col + K * nbmax * osz : NULL;
    for (int64_t b0 = n0; b0 < n1 && (pw || (c->dX && im2)); b0 += nbmax) {
        const int64_t nb = n1 - b0 < nbmax ? n1 - b0 : nbmax, ld = nb * osz;
        const float *dys;
        if (nb == 1) {
            dys = c->dY + (b0 * s->M + g * mg) * osz;
        } else {
            for (int64_t k = 0; k < nb; k++)
                for (int64_t m = 0; m < mg; m++)
                    memcpy(dyp + m * ld + k * osz, c->dY + ((b0 + k) * s->M + g * mg + m) * osz,
                           (size_t)osz * sizeof(float));
            dys = dyp;
        }
        if (pw) {
            const float *src;
            if (im2) {
                for (int64_t k = 0; k < nb; k++)
                    im2col(w, s->cg, c->X + ((b0 + k) * s->C + g * s->cg) * isz, col + k * osz, ld);
                src = col;
            } else {
                src = c->X + (b0 * s->C + g * s->cg) * isz;
            }
            qk_sgemm(c->x->g->opts.sgemm, 0, 1, mg, K, ld, 1.0f, dys, ld, src, ld, b0 == n0 ? 0.0f : 1.0f,
                     pw + g * mg * K, K);
        }
        if (c->dX && im2) {
            qk_sgemm(c->x->g->opts.sgemm, 1, 0, K, ld, mg, 1.0f, Wg, K, dys, ld, 0.0f, dcol, ld);
            for (int64_t k = 0; k < nb; k++) {
                float *dxg = c->dX + ((b0 + k) * s->C + g * s->cg) * isz;
                if (c->write_dx)
                    memset(dxg, 0, (size_t)(s->cg * isz) * sizeof(float));
                col2im(w, s->cg, dcol + k * osz, ld, dxg, 0);
            }
        }
    }
    for (int64_t n = n0; n < n1; n++) {
        const float *dyg = c->dY + (n * s->M + g * mg) * osz;
        float beta = n == n0 ? 0.0f : 1.0f;
        if (pb)
            for (int64_t m = 0; m < mg; m++) {
                float acc = qk_vsum(dyg + m * osz, osz);
                pb[g * mg + m] = beta == 0.0f ? acc : pb[g * mg + m] + acc;
            }
        if (c->dX && s->path == CONV_1X1)
            qk_sgemm(c->x->g->opts.sgemm, 1, 0, K, osz, mg, 1.0f, Wg, K, dyg, osz, c->write_dx ? 0.0f : 1.0f,
                     c->dX + (n * s->C + g * s->cg) * isz, osz);
    }
}

/* dW[e] += sum_p part[p][e] in part order; e over [dW | dB]. */
static void conv_reduce_task(void *vc, int64_t t, int worker)
{
    (void)worker;
    const conv_ctx *c = vc;
    const conv_state *s = c->s;
    const int64_t stride = s->M * s->K + s->M, total = c->dW ? stride : s->M;
    const int64_t base = c->dW ? 0 : s->M * s->K;
    int64_t e0 = t * RED_CHUNK, e1 = e0 + RED_CHUNK < total ? e0 + RED_CHUNK : total;
    for (int64_t e = e0; e < e1; e++) {
        int64_t idx = base + e;
        int isb = idx >= s->M * s->K;
        if (isb && !c->dB)
            continue;
        const float *pp = s->part + idx;
        float acc = pp[0];
        for (int64_t p = 1; p < c->P; p++)
            acc += pp[p * stride];
        if (isb)
            c->dB[idx - s->M * s->K] += acc;
        else
            c->dW[idx] += acc;
    }
}

static qk_status conv_backward(qk_exec *x, qk_node *n)
{
    qk_graph *g = x->g;
    conv_state *s = n->state;
    qk_value *xv = qk_in(g, n, 0), *wv = qk_in(g, n, 1), *bv = qk_in(g, n, 2);
    conv_ctx c = { .x = x, .s = s, .X = qk_f32(&xv->t), .W = qk_f32(&wv->t),
                   .dY = qk_f32(&qk_out(g, n, 0)->grad), .dX = xv->grad.data,
                   .dW = wv->grad.data, .dB = bv ? bv->grad.data : NULL };
    /* the executor hands a fresh (uncleared) dX when nothing has written it
     * yet: grad_zeroed == 2 (see exec.c); every path below then writes all
     * of it */
    c.write_dx = c.dX && xv->grad_zeroed == 2;
    if (s->path == CONV_REF || x->g->opts.reference) {
        if (c.write_dx) {
            memset(c.dX, 0, (size_t)qk_tensor_numel(&xv->grad) * sizeof(float));
            xv->grad_zeroed = 1;
        }
        qk_conv_ref_backward(&s->w, s->N, s->C, s->M, s->group, c.X, c.W, c.dY, c.dX, c.dW, c.dB);
        return QK_OK;
    }
    if ((c.dW || c.dB) && (!s->part || conv_parts(s->N) > s->parts_cap))
        return qk_error(QK_ERR_STATE, "Conv: backward without a training plan");
    c.P = conv_parts(s->N);
    if (s->path == CONV_FLAT && c.dX && s->fs == 1) {
        if (!s->wfpk)
            return qk_error(QK_ERR_STATE, "Conv: backward without a training plan");
        qk_cflat_pack_flip(c.W, s->M, s->C, (int)s->w.k[1], (int)s->w.k[2], s->wfpk);
    }
    int64_t nq = s->path == CONV_DW ? s->C : s->group;
    qk_pool_run(x->pool, c.P * nq, conv_bwd_task, &c);
    if (c.write_dx)
        xv->grad_zeroed = 1;
    if (c.dW || c.dB) {
        int64_t total = c.dW ? s->M * s->K + s->M : s->M;
        qk_pool_run(x->pool, (total + RED_CHUNK - 1) / RED_CHUNK, conv_reduce_task, &c);
    }
    return QK_OK;
}

const qk_op qk_op_conv = {
    .type = "Conv",
    .init = conv_init,
    .infer = conv_infer,
    .reshape = conv_reshape,
    .forward = conv_forward,
    .backward = conv_backward,
    .destroy = conv_destroy,
};
