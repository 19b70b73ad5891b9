/* NHWC depthwise int8 convolution on AVX-512 VNNI (i8gemm.h, qk_i8_dwq4).
 *
 * Four taps of one channel are interleaved byte by byte (two rounds of
 * unpacks of four 64-byte tap vectors) so that one vpdpbusd adds the four
 * products (x_t + 128*sgn) * w_t of each channel into its int32 lane.
 * Unpacks work inside 128-bit lanes, so the accumulators hold the chunk's
 * bytes in a fixed permuted order (i8gemm.h, qk_i8_dwq4); weights and output
 * parameters are stored in that order, and the final packs restore the
 * byte order. Taps outside the image read p->zrow, a run of the zero
 * point's code (x - zx = 0); the bias holds -zx * sum(w), so the sum over
 * all taps is exactly the reference's sum over the taps inside the image.
 *
 * Two ways through a row. Flat: for stride 1 the interior output pixels
 * of a row are one run of bytes O in [i0*C, (i1+1)*C) whose input for tap
 * (a, b) is the byte O + ((ih0+a*dh)*W + b*dw - pl)*C, a 1-D correlation
 * over the flattened row; chunk k's channels are (64k + q) % C, a pattern
 * of period lcm(64, C) bytes (q4->flat_n chunks). Pixel: one output pixel
 * at a time, chunks of 64 channels (q4->pix_n of them), taps by their own
 * offsets; used for the border pixels, other strides, and when the flat
 * table is absent. Weights that do not fit int8 (uint8 weights with a zero
 * point) come as two int8 halves per tap (q4->kt = 2*kh*kw): the second
 * half's taps read the first half's input bytes again. */
#include "i8gemm.h"

#include "q31__avx512.h"

#include <immintrin.h>
#include <stdint.h>

#define INLINE static inline __attribute__((always_inline))

typedef struct {
    __m512i zo, flip;
    __m512 flo, fhi;
    __m512i lo, hi, zero;
} q4_ctx;

/* 4 taps -> 4 vectors of interleaved quads, accumulated into c0..c3. */
#define Q4_QUAD(t0, t1, t2, t3, w)                                                                  \
    do {                                                                                            \
        __m512i l01 = _mm512_unpacklo_epi8(t0, t1), h01 = _mm512_unpackhi_epi8(t0, t1);             \
        __m512i l23 = _mm512_unpacklo_epi8(t2, t3), h23 = _mm512_unpackhi_epi8(t2, t3);             \
        c0 = _mm512_dpbusd_epi32(c0, _mm512_unpacklo_epi16(l01, l23), _mm512_load_si512(w));         \
        c1 = _mm512_dpbusd_epi32(c1, _mm512_unpackhi_epi16(l01, l23), _mm512_load_si512((w) + 64));  \
        c2 = _mm512_dpbusd_epi32(c2, _mm512_unpacklo_epi16(h01, h23), _mm512_load_si512((w) + 128)); \
        c3 = _mm512_dpbusd_epi32(c3, _mm512_unpackhi_epi16(h01, h23), _mm512_load_si512((w) + 192)); \
    } while (0)

INLINE __m512i q4_load(const q4_ctx *k, int sgn, const uint8_t *p, __mmask64 mk)
{
    __m512i v = _mm512_maskz_loadu_epi8(mk, p);
    return sgn ? _mm512_xor_si512(v, k->flip) : v;
}

/* Output stage of accumulator vector j (parameters par), the arithmetic of
 * qk_i8_requant_row__avx512. */
INLINE __m512i q4_out(const q4_ctx *k, int fp32, __m512i acc, const int32_t *par, int j)
{
    if (fp32) {
        __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), _mm512_load_ps((const float *)par + 64 + 16 * j));
        f = _mm512_min_ps(_mm512_max_ps(f, k->flo), k->fhi);
        return _mm512_add_epi32(_mm512_cvtps_epi32(f), k->zo);
    }
    __m512i sh = _mm512_load_si512(par + 128 + 16 * j);
    __m512i x = _mm512_sllv_epi32(acc, _mm512_max_epi32(sh, k->zero));
    x = srdhm16(x, _mm512_load_si512(par + 64 + 16 * j));
    x = rdbpot16(x, _mm512_max_epi32(_mm512_sub_epi32(k->zero, sh), k->zero));
    return _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(x, k->lo), k->hi), k->zo);
}

/* One chunk: tap t's bytes at tb[t] + u (nq quads), table entry ch, 64
 * output bytes (mask mk) to y. */
INLINE void q4_chunk(const q4_ctx *k, int fp32, int u8out, int sgn, int64_t nq, const uint8_t *const *tb,
                     int64_t u, const uint8_t *ch, __mmask64 mk, uint8_t *y)
{
    const int32_t *par = (const int32_t *)(ch + nq * 256);
    __m512i c0 = _mm512_load_si512(par), c1 = _mm512_load_si512(par + 16), c2 = _mm512_load_si512(par + 32),
            c3 = _mm512_load_si512(par + 48);
    for (int64_t qd = 0; qd < nq; qd++) {
        const uint8_t *const *t = tb + 4 * qd;
        __m512i t0 = q4_load(k, sgn, t[0] + u, mk), t1 = q4_load(k, sgn, t[1] + u, mk);
        __m512i t2 = q4_load(k, sgn, t[2] + u, mk), t3 = q4_load(k, sgn, t[3] + u, mk);
        Q4_QUAD(t0, t1, t2, t3, ch + qd * 256);
    }
    __m512i a = _mm512_packs_epi32(q4_out(k, fp32, c0, par, 0), q4_out(k, fp32, c1, par, 1));
    __m512i b = _mm512_packs_epi32(q4_out(k, fp32, c2, par, 2), q4_out(k, fp32, c3, par, 3));
    _mm512_mask_storeu_epi8(y, mk, u8out ? _mm512_packus_epi16(a, b) : _mm512_packs_epi16(a, b));
}

INLINE __mmask64 mask_n(int64_t n) { return n >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << n) - 1); }

/* n output bytes in chunks: tap t's input at tb[t] (as advanced by the
 * chunk's offset), table entries from ch0 cycling every nph; y. */
INLINE void q4_run(const q4_ctx *k, int fp32, int u8out, int sgn, int64_t nq, const uint8_t *const *tb, int64_t n,
                   const uint8_t *ch0, int64_t stride, int64_t nph, uint8_t *y)
{
    int64_t ph = 0;
    for (int64_t u = 0; u < n; u += 64) {
        q4_chunk(k, fp32, u8out, sgn, nq, tb, u, ch0 + ph * stride, mask_n(n - u), y + u);
        if (++ph == nph)
            ph = 0;
    }
}

typedef void (*q4_run_fn)(const q4_ctx *, int64_t, const uint8_t *const *, int64_t, const uint8_t *, int64_t,
                          int64_t, uint8_t *);

/* Instances: output stage x output type x input sign, 3 quads (3x3) or any. */
#define Q4_RUN(name, fp32, u8out, sgn, nq3)                                                                     \
    static void name(const q4_ctx *k, int64_t nq, const uint8_t *const *tb, int64_t n, const uint8_t *ch0,      \
                     int64_t stride, int64_t nph, uint8_t *y)                                                   \
    {                                                                                                           \
        q4_run(k, fp32, u8out, sgn, nq3 ? 3 : nq, tb, n, ch0, stride, nph, y);                                  \
    }
Q4_RUN(run_fu0_3, 1, 1, 0, 1) Q4_RUN(run_fu1_3, 1, 1, 1, 1) Q4_RUN(run_fs0_3, 1, 0, 0, 1) Q4_RUN(run_fs1_3, 1, 0, 1, 1)
Q4_RUN(run_qu0_3, 0, 1, 0, 1) Q4_RUN(run_qu1_3, 0, 1, 1, 1) Q4_RUN(run_qs0_3, 0, 0, 0, 1) Q4_RUN(run_qs1_3, 0, 0, 1, 1)
Q4_RUN(run_fu0_n, 1, 1, 0, 0) Q4_RUN(run_fu1_n, 1, 1, 1, 0) Q4_RUN(run_fs0_n, 1, 0, 0, 0) Q4_RUN(run_fs1_n, 1, 0, 1, 0)
Q4_RUN(run_qu0_n, 0, 1, 0, 0) Q4_RUN(run_qu1_n, 0, 1, 1, 0) Q4_RUN(run_qs0_n, 0, 0, 0, 0) Q4_RUN(run_qs1_n, 0, 0, 1, 0)

static const q4_run_fn runs[16] = { run_fu0_3, run_fu1_3, run_fs0_3, run_fs1_3, run_qu0_3, run_qu1_3, run_qs0_3,
                                    run_qs1_3, run_fu0_n, run_fu1_n, run_fs0_n, run_fs1_n, run_qu0_n, run_qu1_n,
                                    run_qs0_n, run_qs1_n };

void qk_i8_dw_nhwc_row__vnni(const qk_i8_dwrow *p)
{
    const qk_i8_dwq4 *q4 = p->q4;
    if (!q4 || !p->zrow || (p->mode != QK_RQ_GEMMLOWP && p->mode != QK_RQ_FP32) ||
        (p->out_type != QK_U8 && p->out_type != QK_I8)) {
        qk_i8_dw_nhwc_row__avx512(p);
        return;
    }
    int fp32 = p->mode == QK_RQ_FP32, u8out = p->out_type == QK_U8;
    q4_ctx k;
    k.flip = _mm512_set1_epi8((char)0x80);
    k.zo = _mm512_set1_epi32(p->zo);
    k.zero = _mm512_setzero_si512();
    k.lo = _mm512_set1_epi32(p->qmin - p->zo);
    k.hi = _mm512_set1_epi32(p->qmax - p->zo);
    k.flo = _mm512_set1_ps((float)(p->qmin - p->zo));
    k.fhi = _mm512_set1_ps((float)(p->qmax - p->zo));
    const int64_t C = p->C, nq = q4->nq, kk = p->kh * p->kw, kt = q4->kt, W = p->W;
    q4_run_fn run = runs[(nq == 3 ? 0 : 8) + (fp32 ? 0 : 4) + (u8out ? 0 : 2) + (p->sgn ? 1 : 0)];
    int64_t tr[QK_I8_DW_MAXTAPS], tc[QK_I8_DW_MAXTAPS];
    const uint8_t *tb[QK_I8_DW_MAXTAPS];
    for (int64_t t = 0; t < 4 * nq; t++) { /* table tap t reads kernel tap t % kk (split weights: twice) */
        int64_t a = (t % kk) / p->kw, ih = p->ih0 + a * p->dh;
        tr[t] = t < kt && ih >= 0 && ih < p->H ? ih : -1;
        tc[t] = ((t % kk) % p->kw) * p->dw - p->pl;
    }
    /* the interior pixels [i0, i1]: every tap's column inside the image */
    int64_t i0 = p->pl, i1 = W - 1 + p->pl - (p->kw - 1) * p->dw;
    if (i1 > p->OW - 1)
        i1 = p->OW - 1;
    int flat = p->sw == 1 && q4->flat_n && i1 >= i0;
    const uint8_t *pix = q4->tab + q4->flat_n * q4->stride;
    for (int64_t ow = 0; ow < p->OW; ow++) {
        if (flat && ow == i0) { /* the interior as one run */
            for (int64_t t = 0; t < 4 * nq; t++)
                tb[t] = tr[t] >= 0 ? p->x + (tr[t] * W + i0 + tc[t]) * C : p->zrow;
            run(&k, nq, tb, (i1 + 1 - i0) * C, q4->tab, q4->stride, q4->flat_n, (uint8_t *)p->y + i0 * C);
            ow = i1;
            continue;
        }
        int64_t iw0 = ow * p->sw;
        for (int64_t t = 0; t < 4 * nq; t++) {
            int64_t iw = iw0 + tc[t];
            tb[t] = tr[t] >= 0 && iw >= 0 && iw < W ? p->x + (tr[t] * W + iw) * C : p->zrow;
        }
        run(&k, nq, tb, C, pix, q4->stride, q4->pix_n, (uint8_t *)p->y + ow * C);
    }
}
