/* int8 convolution (i8conv.h), implicit im2col (the AMX or VNNI kernel's
 * compute_koff): the GEMM reads its A rows in place from zero-point padded
 * NHWC input rows. */
#include "i8conv.h"

#include <emmintrin.h>
#include <string.h>

/* Implicit im2col: one task per (image, block of R output rows). The
 * input rows the block reads are copied once, zero-point padded, as NHWC
 * rows of Wp pixels; output pixel (oh, ow) of the block is flat row
 * (oh - oh0)*Wp + ow, and kernel row a's kw*Cg bytes of its im2col row are
 * the contiguous bytes at ((oh - oh0 + a)*Wp + ow)*Cg: the AMX tiles load
 * them in place (rows Cg bytes apart; the VNNI kernel broadcasts them 4 bytes at a time),
 * the weights past kw*Cg being zero. */
void qk_i8conv_imp_task(void *vctx, int64_t t, int worker)
{
    conv_ctx *r = vctx;
    const qk_i8conv *c = r->c;
    int64_t Wp, R = imp_rows(c, r->W, &Wp);
    int64_t n = t / r->nblk, oh0 = (t % r->nblk) * R, Rb = r->OH - oh0 < R ? r->OH - oh0 : R;
    const int64_t Cg = c->Cg, W = r->W, H = r->H, rows = Rb + c->kh - 1, ka = c->gimp->k->kalign, nck = c->KS / ka;
    size_t bb = qk_i8conv_imp_buf_bytes(c, W);
    uint8_t *P = r->ws + (size_t)worker * r->ws_stride, *T = P + bb + qk_i8conv_imp_pre_bytes(c, W);
    uint8_t *gws = T + qk_i8conv_imp_pair_bytes(c, W);
    const int zx = (uint8_t)c->x_zero;
    for (int64_t j = 0; j < rows; j++) {
        int64_t ih = oh0 + j - c->pt;
        uint8_t *d = P + j * Wp * Cg;
        if (ih < 0 || ih >= H) {
            memset(d, zx, (size_t)(Wp * Cg));
            continue;
        }
        memset(d, zx, (size_t)(c->pl * Cg));
        if (r->x_nhwc || c->C == 1) /* one channel: an NCHW row is an NHWC row */
            memcpy(d + c->pl * Cg, r->x + (size_t)((n * H + ih) * W * Cg), (size_t)(W * Cg));
        else
            qk_i8conv_to_nhwc(r, n, 0, ih * W, W, d + c->pl * Cg);
        memset(d + (c->pl + W) * Cg, zx, (size_t)(c->pr * Cg));
    }
    memset(P + rows * Wp * Cg, zx, bb - (size_t)(rows * Wp * Cg));
    int64_t koff[QK_I8_IMP_MAXCHUNK];
    for (int64_t a = 0; a < c->kh; a++)
        for (int64_t q = 0; q < nck; q++)
            koff[a * nck + q] = a * Wp * Cg + q * ka;
    uint8_t *y;
    int64_t ldm, ldn;
    if (r->y_nhwc) {
        y = r->y + (size_t)((n * r->P + oh0 * r->OW) * c->Co) * r->es;
        ldm = c->Co, ldn = 1;
    } else {
        y = r->y + (size_t)(n * c->Co * r->P + oh0 * r->OW) * r->es;
        ldm = 1, ldn = r->P;
    }
    int32_t rsb[QK_I8_IMP_MAXROWS], *rs = NULL;
    if (c->gimp->need_rowsum && !(ldn == 1 && qk_i8_small_ok(c->gimp))) { /* (the short-K kernel sums its rows) */
        /* row f's sum: over the kh runs of KS bytes the tiles read; with
         * KS a multiple of Cg those runs are whole pixels (a box sum of
         * per-pixel sums, qk_i8_box_sums_*), else prefix sums of the bytes */
        uint32_t *pre = (uint32_t *)(P + bb);
        const int sg = c->x_type == QK_I8;
        if (c->KS % Cg == 0 && Cg % 16 == 0) {
            if (qk_cpu_isa() >= QK_ISA_AVX512)
                qk_i8_box_sums__avx512(P, (Rb + c->kh - 1) * Wp, Cg, sg, c->KS / Cg, c->kh, Wp, Rb, r->OW, pre, rsb);
            else
                qk_i8_box_sums_ref(P, (Rb + c->kh - 1) * Wp, Cg, sg, c->KS / Cg, c->kh, Wp, Rb, r->OW, pre, rsb);
        } else {
            pre[0] = 0;
            if (sg)
                for (size_t i = 0; i < bb; i++)
                    pre[i + 1] = pre[i] + (uint32_t)(int32_t)(int8_t)P[i];
            else
                for (size_t i = 0; i < bb; i++)
                    pre[i + 1] = pre[i] + P[i];
            for (int64_t f = 0; f < Rb * Wp; f++) {
                uint32_t sum = 0;
                for (int64_t a = 0; a < c->kh && f % Wp < r->OW; a++) {
                    int64_t o = (f + a * Wp) * Cg;
                    sum += pre[o + c->KS] - pre[o];
                }
                rsb[f] = (int32_t)sum;
            }
        }
        rs = rsb;
    }
    if (!c->bpair) {
        qk_i8gemm_block_rows(c->gimp, Rb, Wp, r->OW, P, Cg, koff, rs, 0, c->Co, y, ldm, ldn, gws);
        return;
    }
    /* pixel pairs (at most 16 output channels): T holds the padded rows' dwords transposed, row c
     * the dword c of every pixel, so any two consecutive pixels' dwords are 8 adjacent bytes;
     * pixel f's tap (a, b), dword c at T + c*ts + (f + a*Wp + b)*4 */
    const int64_t npx = (int64_t)(bb / (size_t)Cg), NPX = qk_i8conv_imp_npx(c, W), ts = qk_i8conv_imp_tstride(c, W);
    qk_i8conv_transpose4(P, npx, Cg, (uint8_t)c->x_zero, NPX, T, ts);
    int64_t kp[QK_I8_IMP_MAXCHUNK], nk = 0; /* dword q of kernel row a: tap b = 4q / Cg, dword 4q % Cg / 4 */
    for (int64_t a = 0; a < c->kh; a++)
        for (int64_t b = 0; b < c->kw; b++)
            for (int64_t c4 = 0; c4 < Cg / 4; c4++)
                kp[nk++] = c4 * ts + (a * Wp + b) * 4;
    qk_i8_gemm_pairs__vnni(c->gimp, c->bpair, Rb * Wp, T, 8, kp, (int32_t *)gws, 16);
    qk_i8gemm_store_rows(c->gimp, Rb, Wp, r->OW, (const int32_t *)gws, 16, rs, 0, c->Co, y, ldm, ldn, gws);
}

/* i8conv.h: whole pixels' row sums as a kh x run box sum of per-pixel sums,
 * separable: horizontal runs hs[q] = ps[q] + .. + ps[q + run - 1] (in
 * place), then kh of them a padded row apart, over each output row's OW
 * real pixels (the pad columns' rows are dropped). */
void qk_i8_box_sums_ref(const uint8_t *P, int64_t npx, int64_t Cg, int sg, int64_t run, int64_t kh, int64_t Wp,
                        int64_t R, int64_t OW, uint32_t *pre, int32_t *rs)
{
    qk_i8_pixel_sums__sse2(P, npx + run - 1, Cg, sg, pre);
    for (int64_t q = 0; q < npx; q++) {
        uint32_t s = pre[q];
        for (int64_t b = 1; b < run; b++)
            s += pre[q + b];
        pre[q] = s;
    }
    for (int64_t oh = 0; oh < R; oh++) {
        uint32_t *d = (uint32_t *)rs + oh * Wp;
        const uint32_t *h = pre + oh * Wp;
        for (int64_t ow = 0; ow < OW; ow++)
            d[ow] = h[ow];
        for (int64_t ow = OW; ow < Wp; ow++)
            d[ow] = 0; /* pad columns: computed, dropped */
        for (int64_t a = 1; a < kh; a++)
            for (int64_t ow = 0; ow < OW; ow++)
                d[ow] += h[a * Wp + ow];
    }
}

/* T (i8conv.h): row c (ts bytes apart) the dword c of pixels [0, NPX) of
 * P (npx pixels of Cg bytes; past them the zero point's code). */
void qk_i8conv_transpose4(const uint8_t *P, int64_t npx, int64_t Cg, uint8_t zx, int64_t NPX, uint8_t *T, int64_t ts)
{
    int64_t p = 0;
    if (Cg % 16 == 0)
        for (; p + 4 <= npx; p += 4) /* 4 pixels x 4 dwords at a time */
            for (int64_t k = 0; k < Cg; k += 16) {
                const uint8_t *s = P + p * Cg + k;
                __m128i a = _mm_loadu_si128((const __m128i *)s), b = _mm_loadu_si128((const __m128i *)(s + Cg));
                __m128i c = _mm_loadu_si128((const __m128i *)(s + 2 * Cg));
                __m128i d = _mm_loadu_si128((const __m128i *)(s + 3 * Cg));
                __m128i t0 = _mm_unpacklo_epi32(a, b), t1 = _mm_unpacklo_epi32(c, d);
                __m128i t2 = _mm_unpackhi_epi32(a, b), t3 = _mm_unpackhi_epi32(c, d);
                uint8_t *o = T + (k / 4) * ts + p * 4;
                _mm_storeu_si128((__m128i *)o, _mm_unpacklo_epi64(t0, t1));
                _mm_storeu_si128((__m128i *)(o + ts), _mm_unpackhi_epi64(t0, t1));
                _mm_storeu_si128((__m128i *)(o + 2 * ts), _mm_unpacklo_epi64(t2, t3));
                _mm_storeu_si128((__m128i *)(o + 3 * ts), _mm_unpackhi_epi64(t2, t3));
            }
    for (int64_t c4 = 0; c4 < Cg / 4; c4++) {
        uint8_t *o = T + c4 * ts;
        for (int64_t q = p; q < npx; q++)
            memcpy(o + 4 * q, P + q * Cg + 4 * c4, 4);
        memset(o + 4 * npx, zx, (size_t)(4 * (NPX - npx)));
    }
}
