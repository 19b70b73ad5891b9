/* int8 convolution (i8conv.h): the depthwise tasks and the run, which
 * checks the call and hands each path's tasks to the pool. */
#include "i8conv.h"

#include <string.h>

/* Depthwise: one task per (image, output channel). The plane is
 * accumulated tap by tap over the output columns whose input column lies in
 * the image (padding is x_zero, i.e. contributes 0), then requantized in
 * one run (vectorized at the AVX-512 level and above). */
static void dw_task(void *vctx, int64_t t, int worker)
{
    conv_ctx *r = vctx;
    const qk_i8conv *c = r->c;
    int64_t n = t / c->Co, co = t % c->Co, ci = co / c->Cog;
    int64_t H = r->H, W = r->W, OW = r->OW, sw = c->sw, kw = c->kw;
    uint8_t *ws = r->ws + (size_t)worker * r->ws_stride;
    uint32_t *acc = (uint32_t *)ws;
    int64_t *lo = (int64_t *)(ws + qk_i8_align64((size_t)(r->P * 4))), *hi = lo + kw;
    const uint8_t *xc = r->x + (size_t)((n * c->C + ci) * H * W);
    const int32_t *wk = c->dw_w + co * c->kh * kw;
    int sgn = c->x_type == QK_I8;
    int32_t zx = c->x_zero;
    for (int64_t b = 0; b < kw; b++) { /* output columns whose tap b is inside the image */
        int64_t off = b * c->dw - c->pl;  /* iw = ow*sw + off */
        lo[b] = off >= 0 ? 0 : (-off + sw - 1) / sw;
        hi[b] = W - 1 - off < 0 ? -1 : (W - 1 - off) / sw;
        if (hi[b] > OW - 1)
            hi[b] = OW - 1;
    }
    qk_i8_dwplane pl = {xc, sgn, zx, c->dw_bias[co], wk, H, W, r->OH, OW, c->kh, kw, c->sh, sw, c->dh, c->dw,
                        c->pt, c->pl, lo, hi, acc};
    if (c->dw_vec)
        qk_i8_dw_plane__avx512(&pl);
    else
        qk_i8_dw_plane_ref(&pl);
    qk_i8_rowq q = {c->mode, c->out_type, c->dw_mult[co], c->dw_shift[co],
                    c->dw_shift[co] > 0 ? c->dw_shift[co] : 0, c->dw_shift[co] > 0 ? 0 : -c->dw_shift[co],
                    c->dw_scale[co], c->zo, c->qmin, c->qmax};
    uint8_t *y = r->y + (size_t)((n * c->Co + co) * r->P) * r->es;
    if (c->dw_vec)
        qk_i8_requant_row__avx512(&q, (const int32_t *)acc, r->P, y);
    else
        qk_i8_requant_row_ref(&q, (const int32_t *)acc, r->P, y);
}

/* Depthwise, NHWC in and out (multiplier 1): one task per (image, block of
 * r->nblk output rows), each pixel's channels vectorized. */
static void dw_nhwc_task(void *vctx, int64_t t, int worker)
{
    conv_ctx *r = vctx;
    const qk_i8conv *c = r->c;
    uint8_t *zrow = r->ws + (size_t)worker * r->ws_stride;
    if (c->dq4.tab)
        memset(zrow, (uint8_t)c->x_zero, (size_t)(r->W * c->C + 64));
    int64_t per = (r->OH + r->nblk - 1) / r->nblk, n = t / per, oh0 = (t % per) * r->nblk;
    int64_t oh1 = oh0 + r->nblk < r->OH ? oh0 + r->nblk : r->OH;
    if (c->dw_vnni && c->dq4.tab && c->dq4.rows) { /* the block's rows at once (row quads) */
        qk_i8_dwrow p = {r->x + (size_t)(n * r->H * r->W * c->C), c->x_type == QK_I8, c->x_zero, c->C, r->H, r->W,
                         r->OW, c->kh, c->kw, c->sw, c->dh, c->dw, c->pl, oh0 * c->sh - c->pt, c->dw_wt, c->dw_bias,
                         c->dw_mult, c->dw_shift, c->dw_wp, c->dw_scale, c->mode, c->out_type, c->zo, c->qmin,
                         c->qmax, r->y + (size_t)((n * r->OH + oh0) * r->OW * c->Co) * r->es, &c->dq4, zrow,
                         c->sh, oh1 - oh0, zrow + qk_i8_align64((size_t)(r->W * c->C + 64))};
        qk_i8_dw_nhwc_rows__vnni(&p);
        return;
    }
    for (int64_t oh = oh0; oh < oh1; oh++) {
        qk_i8_dwrow p = {r->x + (size_t)(n * r->H * r->W * c->C), c->x_type == QK_I8, c->x_zero, c->C, r->H, r->W,
                         r->OW, c->kh, c->kw, c->sw, c->dh, c->dw, c->pl, oh * c->sh - c->pt, c->dw_wt, c->dw_bias,
                         c->dw_mult, c->dw_shift, c->dw_wp, c->dw_scale, c->mode, c->out_type, c->zo, c->qmin,
                         c->qmax, r->y + (size_t)((n * r->OH + oh) * r->OW * c->Co) * r->es,
                         c->dq4.tab ? &c->dq4 : NULL, zrow, c->sh, 1, NULL};
        if (c->dw_vnni)
            qk_i8_dw_nhwc_row__vnni(&p);
        else if (c->dw_vec)
            qk_i8_dw_nhwc_row__avx512(&p);
        else if (c->dw_avx2)
            qk_i8_dw_nhwc_row__avx2(&p);
        else
            qk_i8_dw_nhwc_row_ref(&p);
    }
}

qk_status qk_i8conv_run_layout(const qk_i8conv *c, int64_t N, int64_t H, int64_t W, const void *x, int x_nhwc,
                               void *y, int y_nhwc, qk_pool *pool, void *ws, size_t ws_stride)
{
    int64_t OH = qk_conv_out_dim(H, c->kh, c->sh, c->dh, c->pt, c->pb);
    int64_t OW = qk_conv_out_dim(W, c->kw, c->sw, c->dw, c->pl, c->pr);
    if (N < 0 || OH < 1 || OW < 1)
        return qk_error(QK_ERR_SHAPE, "int8 conv: kernel %lldx%lld does not fit input %lldx%lld", (long long)c->kh,
                        (long long)c->kw, (long long)H, (long long)W);
    if (!c->depthwise && !c->gm[0]->has_b)
        return qk_error(QK_ERR_STATE, "int8 conv: weights were never supplied");
    if ((x_nhwc && !qk_i8conv_nhwc_ok(c, 1)) || (y_nhwc && !qk_i8conv_nhwc_ok(c, 0)))
        return qk_error(QK_ERR_ARG, "int8 conv: NHWC %s needs groups 1 (and >= 8 or exactly 1 input channels) "
                        "or a depthwise convolution with channel multiplier 1", x_nhwc ? "input" : "output");
    if (c->depthwise && x_nhwc != y_nhwc)
        return qk_error(QK_ERR_ARG, "int8 conv: depthwise NHWC needs both input and output NHWC (x %d, y %d)",
                        x_nhwc, y_nhwc);
    size_t need = qk_i8conv_ws_bytes(c, H, W);
    if (!ws || ws_stride < need || ((uintptr_t)ws & 63) || (ws_stride & 63))
        return qk_error(QK_ERR_ARG, "int8 conv: workspace of %zu bytes per worker (64-aligned) required", need);
    conv_ctx r = {c, H, W, OH, OW, OH * OW, 0, x, y, ws, ws_stride, qk_dtype_size(c->out_type), x_nhwc, y_nhwc};
    if (c->depthwise && x_nhwc) {
        /* rows per task: about 8 KiB of output each (small tasks cost more
         * in hand-out than they compute), at least 4 tasks per thread */
        int64_t nt = qk_pool_threads(pool);
        r.nblk = qk_i8conv_dw_nblk(c, OH, OW);
        while (r.nblk > 1 && N * ((OH + r.nblk - 1) / r.nblk) < 4 * nt)
            r.nblk--;
        qk_pool_run(pool, N * ((OH + r.nblk - 1) / r.nblk), dw_nhwc_task, &r);
    } else if (c->depthwise) {
        qk_pool_run(pool, N * c->Co, dw_task, &r);
    } else {
        int64_t Wp, R = imp_rows(c, W, &Wp);
        if (R >= 1) {
            r.nblk = (OH + R - 1) / R;
            qk_pool_run(pool, N * r.nblk, qk_i8conv_imp_task, &r);
            return QK_OK;
        }
        r.nblk = (r.P + conv_rows(c) - 1) / conv_rows(c);
        qk_pool_run(pool, N * c->groups * r.nblk, qk_i8conv_gemm_task, &r);
    }
    return QK_OK;
}

qk_status qk_i8conv_run(const qk_i8conv *c, int64_t N, int64_t H, int64_t W, const void *x, void *y, qk_pool *pool,
                        void *ws, size_t ws_stride)
{
    return qk_i8conv_run_layout(c, N, H, W, x, 0, y, 0, pool, ws, ws_stride);
}

int qk_i8conv_nhwc_ok(const qk_i8conv *c, int input)
{
    if (c->depthwise)
        return c->Cog == 1;
    if (c->groups != 1)
        return 0;
    return input ? (c->nhwc || c->C == 1) : 1;
}
