/* int8 convolution (i8conv.h), explicit im2col: the rows of a block of
 * output pixels are built in the worker's scratch (from NCHW planes, from
 * the zero-point padded rows of one input channel, or from NHWC rows) and
 * go through the group's GEMM. */
#include "i8conv.h"

#include <string.h>

/* im2col rows for output pixels [p0, p0+np) of image n, group gi: row i is
 * K bytes in (c, kh, kw) order; out-of-image taps get x_zero. */
static void im2col(const conv_ctx *r, int64_t n, int64_t gi, int64_t p0, int64_t np, uint8_t *col)
{
    const qk_i8conv *c = r->c;
    uint8_t zx = (uint8_t)c->x_zero;
    const uint8_t *xg = r->x + (size_t)((n * c->C + gi * c->Cg) * r->H * r->W);
    int64_t oh = p0 / r->OW, ow = p0 % r->OW;
    for (int64_t i = 0; i < np; i++, ow = ow + 1 < r->OW ? ow + 1 : (oh++, 0)) {
        uint8_t *dst = col + i * c->K;
        int64_t ih0 = oh * c->sh - c->pt, iw0 = ow * c->sw - c->pl;
        if (ih0 >= 0 && ih0 + (c->kh - 1) * c->dh < r->H && iw0 >= 0 && iw0 + (c->kw - 1) * c->dw < r->W) {
            for (int64_t ch = 0; ch < c->Cg; ch++) /* window inside the image: no checks */
                for (int64_t a = 0; a < c->kh; a++) {
                    const uint8_t *xr = xg + ch * r->H * r->W + (ih0 + a * c->dh) * r->W + iw0;
                    for (int64_t b = 0; b < c->kw; b++)
                        *dst++ = xr[b * c->dw];
                }
            continue;
        }
        for (int64_t ch = 0; ch < c->Cg; ch++) {
            const uint8_t *xc = xg + ch * r->H * r->W;
            for (int64_t a = 0; a < c->kh; a++) {
                int64_t ih = oh * c->sh - c->pt + a * c->dh;
                if (ih < 0 || ih >= r->H) {
                    memset(dst, zx, (size_t)c->kw);
                    dst += c->kw;
                    continue;
                }
                const uint8_t *xr = xc + ih * r->W;
                for (int64_t b = 0; b < c->kw; b++) {
                    int64_t iw = ow * c->sw - c->pl + b * c->dw;
                    *dst++ = (iw >= 0 && iw < r->W) ? xr[iw] : zx;
                }
            }
        }
    }
}

/* im2col rows of output pixels [p0, p0+np) for one input channel from
 * padded rows: no bounds checks per tap. */
static void im2col_c1(const conv_ctx *r, int64_t n, int64_t p0, int64_t np, uint8_t *buf, uint8_t *col)
{
    const qk_i8conv *c = r->c;
    const int64_t W = r->W, H = r->H, Wp = W + c->pl + c->pr, K = c->K;
    const uint8_t zx = (uint8_t)c->x_zero, *x = r->x + (size_t)(n * H * W);
    int64_t oh0 = p0 / r->OW, oh1 = (p0 + np - 1) / r->OW;
    int64_t pr0 = oh0 * c->sh, pr1 = oh1 * c->sh + (c->kh - 1) * c->dh + 1; /* padded rows [pr0, pr1) */
    for (int64_t j = pr0; j < pr1; j++) {
        uint8_t *d = buf + (j - pr0) * Wp;
        int64_t ih = j - c->pt;
        if (ih < 0 || ih >= H) {
            memset(d, zx, (size_t)Wp);
            continue;
        }
        memset(d, zx, (size_t)c->pl);
        memcpy(d + c->pl, x + ih * W, (size_t)W);
        memset(d + c->pl + W, zx, (size_t)c->pr);
    }
    int64_t oh = oh0, ow = p0 % r->OW;
    for (int64_t i = 0; i < np; i++, ow = ow + 1 < r->OW ? ow + 1 : (oh++, 0)) {
        uint8_t *dst = col + i * K;
        const uint8_t *src = buf + (oh * c->sh - pr0) * Wp + ow * c->sw;
        for (int64_t a = 0; a < c->kh; a++, src += c->dh * Wp)
            for (int64_t b = 0; b < c->kw; b++)
                *dst++ = src[b * c->dw];
    }
}

/* 8x8 byte transpose of r[0..7] (r[k] byte j -> r[j] byte k), SWAR: swap
 * 1-, 2- then 4-byte blocks between rows 1, 2 then 4 apart. */
static inline void tr8x8(uint64_t r[8])
{
    for (int i = 0; i < 8; i += 2) {
        uint64_t t = ((r[i] >> 8) ^ r[i + 1]) & 0x00FF00FF00FF00FFull;
        r[i + 1] ^= t, r[i] ^= t << 8;
    }
    for (int i = 0; i < 8; i += (i & 1) ? 3 : 1) { /* pairs (0,2) (1,3) (4,6) (5,7) */
        uint64_t t = ((r[i] >> 16) ^ r[i + 2]) & 0x0000FFFF0000FFFFull;
        r[i + 2] ^= t, r[i] ^= t << 16;
    }
    for (int i = 0; i < 4; i++) {
        uint64_t t = ((r[i] >> 32) ^ r[i + 4]) & 0x00000000FFFFFFFFull;
        r[i + 4] ^= t, r[i] ^= t << 32;
    }
}

/* nhwc: transpose channels [Cg] of input pixels [pix0, pix0+npix) of image
 * n, group gi into buf[i][Cg] (a pure byte permutation). */
void qk_i8conv_to_nhwc(const conv_ctx *r, int64_t n, int64_t gi, int64_t pix0, int64_t npix, uint8_t *buf)
{
    const qk_i8conv *c = r->c;
    const uint8_t *xg = r->x + (size_t)((n * c->C + gi * c->Cg) * r->H * r->W) + pix0;
    int64_t HW = r->H * r->W, Cg = c->Cg;
    for (int64_t c0 = 0; c0 < Cg; c0 += 8) { /* 8 channels at a time: 8 streams in, one out */
        int64_t cn = Cg - c0 < 8 ? Cg - c0 : 8;
        const uint8_t *src = xg + c0 * HW;
        uint8_t *d = buf + c0;
        int64_t i = 0;
        if (cn == 8) {
            for (; i + 8 <= npix; i += 8, d += 8 * Cg) { /* 8 pixels x 8 channels per step */
                uint64_t m[8];
                for (int k = 0; k < 8; k++)
                    memcpy(&m[k], src + k * HW + i, 8);
                tr8x8(m);
                for (int k = 0; k < 8; k++)
                    memcpy(d + k * Cg, &m[k], 8);
            }
            for (; i < npix; i++, d += Cg)
                for (int k = 0; k < 8; k++)
                    d[k] = src[k * HW + i];
        } else {
            for (; i < npix; i++, d += Cg)
                for (int64_t k = 0; k < cn; k++)
                    d[k] = src[k * HW + i];
        }
    }
}

/* memcpy of n bytes, inlined 16 at a time when n is a multiple of 16. */
static inline void copy_px(uint8_t *d, const uint8_t *s, int64_t n)
{
    if ((n & 15) == 0)
        for (int64_t k = 0; k < n; k += 16)
            memcpy(d + k, s + k, 16);
    else
        memcpy(d, s, (size_t)n);
}

static void im2col_nhwc(const conv_ctx *r, int64_t ih0, const uint8_t *buf, int64_t p0, int64_t np, uint8_t *col)
{
    const qk_i8conv *c = r->c;
    int64_t Cg = c->Cg, W = r->W;
    int zx = (uint8_t)c->x_zero;
    int64_t oh = p0 / r->OW, ow = p0 % r->OW;
    for (int64_t i = 0; i < np; i++, ow = ow + 1 < r->OW ? ow + 1 : (oh++, 0)) {
        uint8_t *dst = col + i * c->K;
        int64_t iw0 = ow * c->sw - c->pl, iwl = iw0 + (c->kw - 1) * c->dw;
        int inside = iw0 >= 0 && iwl < W && c->dw == 1; /* the kw taps are one contiguous run */
        for (int64_t a = 0; a < c->kh; a++) {
            int64_t ih = oh * c->sh - c->pt + a * c->dh;
            if (ih < 0 || ih >= r->H) {
                memset(dst, zx, (size_t)(c->kw * Cg));
                dst += c->kw * Cg;
                continue;
            }
            const uint8_t *row = buf + (ih - ih0) * W * Cg;
            if (inside) {
                copy_px(dst, row + iw0 * Cg, c->kw * Cg);
                dst += c->kw * Cg;
                continue;
            }
            for (int64_t b = 0; b < c->kw; b++, dst += Cg) {
                int64_t iw = iw0 + b * c->dw;
                if (iw >= 0 && iw < W)
                    copy_px(dst, row + iw * Cg, Cg);
                else
                    memset(dst, zx, (size_t)Cg);
            }
        }
    }
}

void qk_i8conv_gemm_task(void *vctx, int64_t t, int worker)
{
    conv_ctx *r = vctx;
    const qk_i8conv *c = r->c;
    int64_t blk = t % r->nblk, gi = (t / r->nblk) % c->groups, n = t / r->nblk / c->groups;
    int64_t rows = conv_rows(c), p0 = blk * rows, np = r->P - p0 < rows ? r->P - p0 : rows;
    uint8_t *ws = r->ws + (size_t)worker * r->ws_stride;
    uint8_t *y;
    int64_t ldm, ldn;
    if (r->y_nhwc) { /* pixel-major: one row of Co per output pixel, stored by the epilogue directly */
        y = r->y + (size_t)((n * r->P + p0) * c->Co + gi * c->Cog) * r->es;
        ldm = c->Co, ldn = 1;
    } else {
        y = r->y + (size_t)((n * c->Co + gi * c->Cog) * r->P + p0) * r->es;
        ldm = 1, ldn = r->P;
    }
    if (c->pointwise) { /* A rows = the input pixels, transposed */
        uint8_t *buf = ws, *gws = ws + qk_i8conv_nhwc_buf_bytes(c, r->H, r->W);
        if (r->x_nhwc) { /* groups == 1: the rows are the input itself */
            qk_i8gemm_block(c->gm[gi], np, r->x + (size_t)((n * r->P + p0) * c->C), c->C, 0, c->Cog, y, ldm, ldn,
                            gws);
            return;
        }
        qk_i8conv_to_nhwc(r, n, gi, p0, np, buf);
        qk_i8gemm_block(c->gm[gi], np, buf, c->Cg, 0, c->Cog, y, ldm, ldn, gws);
        return;
    }
    uint8_t *col = ws, *gws = ws + qk_i8_align64((size_t)(rows * c->K));
    if (c->nhwc) {
        uint8_t *buf = gws;
        gws += qk_i8conv_nhwc_buf_bytes(c, r->H, r->W);
        int64_t ih0 = 0;
        if (r->x_nhwc) { /* groups == 1: the image is already [H][W][C] */
            buf = (uint8_t *)(uintptr_t)(r->x + (size_t)(n * r->H * r->W * c->C));
        } else {
            int64_t oh0 = p0 / r->OW, oh1 = (p0 + np - 1) / r->OW;
            int64_t ih1 = oh1 * c->sh - c->pt + (c->kh - 1) * c->dh + 1;
            ih0 = oh0 * c->sh - c->pt;
            ih0 = ih0 < 0 ? 0 : ih0;
            ih1 = ih1 > r->H ? r->H : ih1;
            if (ih1 > ih0)
                qk_i8conv_to_nhwc(r, n, gi, ih0 * r->W, (ih1 - ih0) * r->W, buf);
        }
        im2col_nhwc(r, ih0, buf, p0, np, col);
    } else {
        if (c->Cg == 1) { /* groups 1 here (depthwise has its own tasks); x_nhwc: the same bytes */
            uint8_t *buf = gws;
            gws += qk_i8conv_c1_buf_bytes(c, r->H, r->W);
            im2col_c1(r, n, p0, np, buf, col);
        } else {
            im2col(r, n, gi, p0, np, col);
        }
    }
    qk_i8gemm_block(c->gm[gi], np, col, c->K, 0, c->Cog, y, ldm, ldn, gws);
}
