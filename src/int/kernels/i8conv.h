/* int8 convolution (NCHW, ONNX Conv semantics): im2col rows with x_zero
 * padding + the int8 GEMM per group, or a direct kernel when each group has
 * one input channel (depthwise). The reference is the 7-loop definition.
 *
 * GEMM path: A = im2col rows (one per output pixel), B = weights, output
 * stored transposed into NCHW. With >= 8 channels per group the input rows
 * a task needs are first transposed to NHWC in the worker's scratch, so an
 * im2col row is kh*kw copies of Cg contiguous bytes in (kh, kw, c) order;
 * the weights are permuted to that order once (at create/update). 1x1
 * stride-1 unpadded convolutions use the transposed rows as A directly.
 * qk_i8conv_run_layout (int.h) also takes NHWC input (used in place, no
 * transpose) and/or writes NHWC output (the GEMM epilogue stores pixel rows
 * directly instead of scattering into planes); depthwise convolutions with
 * multiplier 1 run NHWC in and out with channels as the vector dimension.
 *
 * Internal to src/int/kernels/i8conv*.c: the convolution object, one run's
 * context and the pieces those files share. The files:
 *   i8conv.c            descriptor check, create / update / destroy (weight
 *                       layouts, depthwise tables, the implicit GEMM)
 *   i8conv_ws.c         geometry and workspace sizes of each path
 *   i8conv_im2col.c     the three explicit im2col variants (NCHW, one input
 *                       channel, NHWC rows) and their GEMM task
 *   i8conv_implicit.c   the implicit-im2col task (AMX, VNNI) (its SSE2 per-pixel
 *                       byte sums in qk_i8_pixsum__sse2.c), with the dword
 *                       transpose the VNNI pixel-pair kernel reads (<= 16
 *                       output channels)
 *   i8conv_run.c        the depthwise tasks and qk_i8conv_run_layout
 *   i8conv_ref.c        the 7-loop reference */
#ifndef QK_INT_I8CONV_H
#define QK_INT_I8CONV_H

#include "i8gemm.h"

struct qk_i8conv {
    qk_dtype x_type, w_type, out_type;
    int64_t C, Co, groups, Cg, Cog, K;
    int64_t kh, kw, sh, sw, dh, dw, pt, pl, pb, pr;
    int32_t x_zero;
    int nw_zero, rq_n;
    int depthwise;
    int nhwc;                  /* GEMM path through NHWC rows (Cg >= 8) */
    int pointwise;             /* 1x1, stride 1, no pad (nhwc only): no im2col */
    uint8_t *wperm;            /* nhwc: weights in [Co][kh][kw][Cg] order */
    qk_i8gemm **gm;            /* groups GEMMs (not depthwise) */
    /* implicit im2col (AMX or VNNI, groups 1, stride 1, no dilation, Cg >= 16 or one input channel (VNNI),
     * weights without row-sum terms): A rows read in place from zero-point
     * padded NHWC input rows; K = kh runs of kw*Cg bytes, each padded to KS
     * (a multiple of the kernel's kalign: 64 AMX, 4 VNNI) with zero weights: wimp [Co][kh][KS] */
    int64_t KS;
    uint8_t *wimp;
    qk_i8gemm *gimp;
    /* implicit on VNNI with at most 16 output channels, uint8 input, Cg a
     * multiple of 4: the weights for qk_i8_gemm_pairs__vnni (else NULL) */
    uint8_t *bpair;
    /* depthwise: (w - w_zero) as int32 [Co][kh*kw], bias, per-channel output stage */
    int32_t *dw_w, *dw_bias, *dw_mult, *dw_shift;
    int32_t *dw_wt;            /* depthwise, multiplier 1: dw_w as [kh*kw][Co] (NHWC kernel) */
    int32_t *dw_wp;            /* the same as int16 pairs of taps: [(kh*kw+1)/2][Co] */
    int dw_vec;                /* AVX-512 output stage for the depthwise planes */
    int dw_avx2;               /* the AVX2 NHWC depthwise row */
    int dw_vnni;               /* the VNNI NHWC kernel may run (dq4 when the weights fit) */
    qk_i8_dwq4 dq4;
    float *dw_scale;
    qk_rq_mode mode;
    int32_t zo, qmin, qmax;
};

typedef struct {
    const qk_i8conv *c;
    int64_t H, W, OH, OW, P, nblk;
    const uint8_t *x;
    uint8_t *y;
    uint8_t *ws;
    size_t ws_stride, es;
    int x_nhwc, y_nhwc;        /* qk_i8conv_run_layout */
} conv_ctx;

static inline int32_t w_at(const qk_i8conv_desc *d, int64_t i)
{
    return d->w_type == QK_U8 ? (int32_t)((const uint8_t *)d->w)[i] : (int32_t)((const int8_t *)d->w)[i];
}

static inline int32_t wzero(const qk_i8conv_desc *d, int64_t co)
{
    return d->nw_zero ? d->w_zero[d->nw_zero == 1 ? 0 : co] : 0;
}

static inline int64_t conv_rows(const qk_i8conv *c) { return c->depthwise ? 0 : c->gm[0]->mb; }

/* Implicit im2col geometry for an H x W input: padded row width Wp, output
 * rows per task R (0: the implicit path does not apply), chunk offsets
 * per row of a task's padded buffer. R is the most that fit a task's rows,
 * or down to half of that the most whose R*Wp rows fill whole micro-tiles
 * of the kernel (a partial last tile is gathered and computed in full). */
#define QK_I8_IMP_MAXCHUNK 1024
static inline int64_t imp_rows(const qk_i8conv *c, int64_t W, int64_t *Wp)
{
    *Wp = W + c->pl + c->pr;
    if (!c->gimp || c->kh * c->KS / c->gimp->k->kalign > QK_I8_IMP_MAXCHUNK || *Wp < c->kw)
        return 0;
    /* the pixel-pair kernel's accumulators are 16 columns wide: twice the rows fit its tile */
    int64_t R = (c->bpair ? QK_I8_IMP_MAXROWS : c->gimp->mb) / *Wp, mr = c->bpair ? 24 : c->gimp->k->info.mr;
    for (int64_t r = R; r >= 1 && 2 * r >= R; r--)
        if ((r * *Wp) % mr == 0)
            return r;
    return R;
}

/* Checks a descriptor (create, update, reference). */
qk_status qk_i8conv_check(const qk_i8conv_desc *d);

/* i8conv_ws.c: per-worker scratch of the explicit paths (NHWC rows, one
 * input channel's padded rows) and of the implicit one (padded rows, their
 * prefix sums), for an H x W input. */
size_t qk_i8conv_nhwc_buf_bytes(const qk_i8conv *c, int64_t H, int64_t W);
size_t qk_i8conv_c1_buf_bytes(const qk_i8conv *c, int64_t H, int64_t W);
size_t qk_i8conv_imp_buf_bytes(const qk_i8conv *c, int64_t W);
size_t qk_i8conv_imp_pre_bytes(const qk_i8conv *c, int64_t W);
/* The padded rows transposed by dwords for the pixel-pair kernel (bpair):
 * pixels per row (the rows' and the last tile's reach past them), the
 * stride of the Cg/4 rows, the bytes. */
int64_t qk_i8conv_imp_npx(const qk_i8conv *c, int64_t W);
int64_t qk_i8conv_imp_tstride(const qk_i8conv *c, int64_t W);
size_t qk_i8conv_imp_pair_bytes(const qk_i8conv *c, int64_t W);
/* NHWC depthwise: output rows per task at most (about 8 KiB of output, at most OH). */
int64_t qk_i8conv_dw_nblk(const qk_i8conv *c, int64_t OH, int64_t OW);

/* i8conv_im2col.c: channels [Cg] of input pixels [pix0, pix0+npix) of
 * image n, group gi transposed into buf[i][Cg]; the explicit-im2col task
 * (image, group, block of conv_rows(c) output pixels). */
void qk_i8conv_to_nhwc(const conv_ctx *r, int64_t n, int64_t gi, int64_t pix0, int64_t npix, uint8_t *buf);
void qk_i8conv_gemm_task(void *vctx, int64_t t, int worker);

/* i8conv_implicit.c: the implicit-im2col task (image, block of output rows); the pixel-pair copies. */
void qk_i8conv_imp_task(void *vctx, int64_t t, int worker);
void qk_i8conv_transpose4(const uint8_t *P, int64_t npx, int64_t Cg, uint8_t zx, int64_t NPX, uint8_t *T, int64_t ts);

/* qk_i8_pixsum__sse2.c: ps[q] = the sum of the Cg bytes of pixel q at
 * P + q*Cg (as int8 when sg), q < npx; Cg a multiple of 16. Wrapping uint32. */
void qk_i8_pixel_sums__sse2(const uint8_t *P, int64_t npx, int64_t Cg, int sg, uint32_t *ps);
/* The implicit path's row sums of R output rows (Wp padded pixels each,
 * the first OW real) from the npx = (R + kh - 1)*Wp padded pixels at P
 * (and run - 1 past them): rs[oh*Wp + ow] = the sum over a < kh, b < run
 * of ps[(oh + a)*Wp + ow + b] for ow < OW, else 0; pre scratch of
 * npx + run - 1 uint32; Cg a multiple of 16; wrapping uint32. Portable
 * (i8conv_implicit.c) and AVX-512 (qk_i8_boxsum__avx512.c), equal. */
void qk_i8_box_sums_ref(const uint8_t *P, int64_t npx, int64_t Cg, int sg, int64_t run, int64_t kh, int64_t Wp,
                        int64_t R, int64_t OW, uint32_t *pre, int32_t *rs);
void qk_i8_box_sums__avx512(const uint8_t *P, int64_t npx, int64_t Cg, int sg, int64_t run, int64_t kh,
                            int64_t Wp, int64_t R, int64_t OW, uint32_t *pre, int32_t *rs);

#endif
