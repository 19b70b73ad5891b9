/* NHWC depthwise int8 convolution on AVX-512 VNNI (i8gemm.h, qk_i8_dwq4).
 *
 * Four taps of one channel are interleaved byte by byte (two rounds of
 * unpacks of four 64-byte tap vectors) so that one vpdpbusd adds the four
 * products (x_t + 128*sgn) * w_t of each channel into its int32 lane.
 * Unpacks work inside 128-bit lanes, so the accumulators hold the chunk's
 * bytes in a fixed permuted order (qk_i8_dwq4_pos); weights and output
 * parameters are stored in that order, and the final packs restore the
 * byte order. Taps outside the image read the zero point (code zx, so
 * x - zx = 0); the bias holds -zx * sum(w), so the sum over all taps is
 * exactly the reference's sum over the taps inside the image.
 *
 * Two ways through a row. Flat: for stride 1 the interior output pixels
 * of a row are one run of bytes O in [i0*C, (i1+1)*C) whose input for tap
 * (a, b) is the byte O + ((ih0+a*dh)*W + b*dw - pl)*C, a 1-D correlation
 * over the flattened row; chunk k's channels are (64k + q) % C, a pattern
 * of period lcm(64, C) bytes (q4->flat_n chunks). Pixel: one output pixel
 * at a time, chunks of 64 channels (q4->pix_n of them), taps by their own
 * offsets; used for the border pixels, other strides, and when the flat
 * table is absent. */
#include "i8gemm.h"

#include "q31__avx512.h"

#include <immintrin.h>
#include <stdint.h>

#define MAXQ (QK_I8_DW_MAXTAPS / 4)

typedef struct {
    int fp32, u8out, sgn;
    __m512i zxv, zo, lo, hi, zero, flip;
    __m512 flo, fhi;
} q4_ctx;

/* 4 taps -> 4 vectors of interleaved quads, accumulated. */
static inline void q4_quad(__m512i acc[4], __m512i a0, __m512i a1, __m512i a2, __m512i a3, const uint8_t *w)
{
    __m512i l01 = _mm512_unpacklo_epi8(a0, a1), h01 = _mm512_unpackhi_epi8(a0, a1);
    __m512i l23 = _mm512_unpacklo_epi8(a2, a3), h23 = _mm512_unpackhi_epi8(a2, a3);
    acc[0] = _mm512_dpbusd_epi32(acc[0], _mm512_unpacklo_epi16(l01, l23), _mm512_load_si512(w));
    acc[1] = _mm512_dpbusd_epi32(acc[1], _mm512_unpackhi_epi16(l01, l23), _mm512_load_si512(w + 64));
    acc[2] = _mm512_dpbusd_epi32(acc[2], _mm512_unpacklo_epi16(h01, h23), _mm512_load_si512(w + 128));
    acc[3] = _mm512_dpbusd_epi32(acc[3], _mm512_unpackhi_epi16(h01, h23), _mm512_load_si512(w + 192));
}

#define NOTAP INT64_MIN

static inline __m512i q4_load(const q4_ctx *k, const uint8_t *x, int64_t off, int64_t o, __mmask64 mk)
{
    if (off == NOTAP)
        return k->zxv;
    __m512i v = _mm512_maskz_loadu_epi8(mk, x + (off + o));
    return k->sgn ? _mm512_xor_si512(v, k->flip) : v;
}

/* One chunk: x + tp[t] + o is tap t's first byte (tp[t] NOTAP: the zero
 * point), ch its table entry, 64 output bytes (mask mk) to y. */
static inline void q4_chunk(const q4_ctx *k, const uint8_t *x, const int64_t *tp, int64_t o, int64_t nq,
                            const uint8_t *ch, __mmask64 mk, uint8_t *y)
{
    const int32_t *par = (const int32_t *)(ch + nq * 256);
    __m512i acc[4];
    for (int j = 0; j < 4; j++)
        acc[j] = _mm512_load_si512(par + 16 * j);
    for (int64_t qd = 0; qd < nq; qd++) {
        const int64_t *t = tp + 4 * qd;
        q4_quad(acc, q4_load(k, x, t[0], o, mk), q4_load(k, x, t[1], o, mk), q4_load(k, x, t[2], o, mk),
                q4_load(k, x, t[3], o, mk), ch + qd * 256);
    }
    __m512i r[4];
    for (int j = 0; j < 4; j++) {
        if (k->fp32) {
            __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(acc[j]), _mm512_load_ps((const float *)par + 64 + 16 * j));
            f = _mm512_min_ps(_mm512_max_ps(f, k->flo), k->fhi);
            r[j] = _mm512_add_epi32(_mm512_cvtps_epi32(f), k->zo);
        } else {
            __m512i sh = _mm512_load_si512(par + 128 + 16 * j);
            __m512i x = _mm512_sllv_epi32(acc[j], _mm512_max_epi32(sh, k->zero));
            x = srdhm16(x, _mm512_load_si512(par + 64 + 16 * j));
            x = rdbpot16(x, _mm512_max_epi32(_mm512_sub_epi32(k->zero, sh), k->zero));
            r[j] = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(x, k->lo), k->hi), k->zo);
        }
    }
    __m512i a = _mm512_packs_epi32(r[0], r[1]), b = _mm512_packs_epi32(r[2], r[3]);
    _mm512_mask_storeu_epi8(y, mk, k->u8out ? _mm512_packus_epi16(a, b) : _mm512_packs_epi16(a, b));
}

static inline __mmask64 mask_n(int64_t n) { return n >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << n) - 1); }

/* Output pixels [ow0, ow1) one at a time. */
static void q4_pixels(const q4_ctx *k, const qk_i8_dwrow *p, const qk_i8_dwq4 *q4, int64_t ow0, int64_t ow1)
{
    const int64_t C = p->C, kk = p->kh * p->kw, nq = q4->nq;
    int64_t tp[QK_I8_DW_MAXTAPS];
    const uint8_t *pix = q4->tab + (size_t)q4->flat_n * (size_t)q4->stride;
    for (int64_t ow = ow0; ow < ow1; ow++) {
        int64_t iw0 = ow * p->sw - p->pl;
        for (int64_t t = 0; t < 4 * nq; t++) {
            int64_t ih = p->ih0 + (t / p->kw) * p->dh, iw = iw0 + (t % p->kw) * p->dw;
            tp[t] = t < kk && ih >= 0 && ih < p->H && iw >= 0 && iw < p->W ? (ih * p->W + iw) * C : NOTAP;
        }
        uint8_t *y = (uint8_t *)p->y + ow * C;
        for (int64_t cb = 0; cb < q4->pix_n; cb++)
            q4_chunk(k, p->x, tp, 64 * cb, nq, pix + (size_t)cb * (size_t)q4->stride, mask_n(C - 64 * cb), y + 64 * cb);
    }
}

void qk_i8_dw_nhwc_row__vnni(const qk_i8_dwrow *p)
{
    const qk_i8_dwq4 *q4 = p->q4;
    if (!q4 || (p->mode != QK_RQ_GEMMLOWP && p->mode != QK_RQ_FP32) ||
        (p->out_type != QK_U8 && p->out_type != QK_I8)) {
        qk_i8_dw_nhwc_row__avx512(p);
        return;
    }
    q4_ctx k;
    k.fp32 = p->mode == QK_RQ_FP32;
    k.u8out = p->out_type == QK_U8;
    k.sgn = p->sgn;
    k.zxv = _mm512_set1_epi8((char)(p->sgn ? p->zx + 128 : p->zx));
    k.flip = _mm512_set1_epi8((char)0x80);
    k.zo = _mm512_set1_epi32(p->zo);
    k.zero = _mm512_setzero_si512();
    k.lo = _mm512_set1_epi32(p->qmin - p->zo);
    k.hi = _mm512_set1_epi32(p->qmax - p->zo);
    k.flo = _mm512_set1_ps((float)(p->qmin - p->zo));
    k.fhi = _mm512_set1_ps((float)(p->qmax - p->zo));
    const int64_t C = p->C, nq = q4->nq, kk = p->kh * p->kw;
    /* the interior pixels [i0, i1]: every tap's column inside the image */
    int64_t i0 = p->pl, i1 = p->W - 1 + p->pl - (p->kw - 1) * p->dw;
    if (i1 > p->OW - 1)
        i1 = p->OW - 1;
    if (p->sw != 1 || !q4->flat_n || i1 < i0) {
        q4_pixels(&k, p, q4, 0, p->OW);
        return;
    }
    q4_pixels(&k, p, q4, 0, i0);
    int64_t tp[QK_I8_DW_MAXTAPS];
    for (int64_t t = 0; t < 4 * nq; t++) {
        int64_t ih = p->ih0 + (t / p->kw) * p->dh;
        tp[t] = t < kk && ih >= 0 && ih < p->H ? (ih * p->W + (t % p->kw) * p->dw - p->pl) * C : NOTAP;
    }
    uint8_t *y = p->y;
    int64_t end = (i1 + 1) * C, ph = 0;
    for (int64_t o = i0 * C; o < end; o += 64) {
        q4_chunk(&k, p->x, tp, o, nq, q4->tab + (size_t)ph * (size_t)q4->stride, mask_n(end - o), y + o);
        if (++ph == q4->flat_n)
            ph = 0;
    }
    q4_pixels(&k, p, q4, i1 + 1, p->OW);
}
