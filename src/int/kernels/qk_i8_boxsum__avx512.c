/* AVX-512 row sums of the implicit-im2col convolution (i8conv.h,
 * qk_i8_box_sums__avx512): the same wrapping uint32 sums as the portable
 * loops of i8conv_implicit.c, 16 pixels per step. */
#include "i8conv.h"

#include <immintrin.h>

/* Sums of 16 pixels of 16 bytes: psadbw leaves each pixel's two halves in
 * qwords 2p, 2p+1 of its 64-byte load (low dwords); the even and the odd
 * halves of four loads are gathered into 16 lanes each and added. */
static inline __m512i sums16x16(const uint8_t *p, __m512i flip)
{
    const __m512i z = _mm512_setzero_si512();
    const __m512i ev = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28);
    const __m512i od = _mm512_setr_epi32(2, 6, 10, 14, 18, 22, 26, 30, 2, 6, 10, 14, 18, 22, 26, 30);
    __m512i s[4];
    for (int j = 0; j < 4; j++)
        s[j] = _mm512_sad_epu8(_mm512_xor_si512(_mm512_loadu_si512(p + 64 * j), flip), z);
    __m512i e01 = _mm512_permutex2var_epi32(s[0], ev, s[1]), e23 = _mm512_permutex2var_epi32(s[2], ev, s[3]);
    __m512i o01 = _mm512_permutex2var_epi32(s[0], od, s[1]), o23 = _mm512_permutex2var_epi32(s[2], od, s[3]);
    __m512i e = _mm512_inserti64x4(e01, _mm512_castsi512_si256(e23), 1);
    __m512i o = _mm512_inserti64x4(o01, _mm512_castsi512_si256(o23), 1);
    return _mm512_add_epi32(e, o);
}

void qk_i8_box_sums__avx512(const uint8_t *P, int64_t npx, int64_t Cg, int sg, int64_t run, int64_t kh,
                            int64_t Wp, int64_t R, int64_t OW, uint32_t *pre, int32_t *rs)
{
    const int64_t n = npx + run - 1; /* pixel sums the runs read */
    int64_t q = 0;
    if (Cg == 16) {
        const __m512i flip = _mm512_set1_epi8(sg ? (char)0x80 : 0), bias = _mm512_set1_epi32(sg ? 128 * 16 : 0);
        for (; q + 16 <= n; q += 16)
            _mm512_storeu_si512(pre + q, _mm512_sub_epi32(sums16x16(P + q * 16, flip), bias));
    }
    if (q < n)
        qk_i8_pixel_sums__sse2(P + q * Cg, n - q, Cg, sg, pre + q);
    /* horizontal runs in place: a step reads its lanes' run before storing them */
    for (q = 0; q < npx; q += 16) {
        __mmask16 mk = npx - q >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (npx - q)) - 1);
        __m512i s = _mm512_maskz_loadu_epi32(mk, pre + q);
        for (int64_t b = 1; b < run; b++)
            s = _mm512_add_epi32(s, _mm512_maskz_loadu_epi32(mk, pre + q + b));
        _mm512_mask_storeu_epi32(pre + q, mk, s);
    }
    /* kh runs a padded row apart; the pad columns' sums are 0 (dropped) */
    for (int64_t oh = 0; oh < R; oh++)
        for (int64_t ow = 0; ow < Wp; ow += 16) {
            int64_t v = OW - ow < 0 ? 0 : OW - ow, w = Wp - ow < 16 ? Wp - ow : 16;
            __mmask16 mv = v >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << v) - 1);
            __mmask16 mw = (__mmask16)((1u << w) - 1);
            const uint32_t *h = pre + oh * Wp + ow;
            __m512i s = _mm512_maskz_loadu_epi32(mv, h);
            for (int64_t a = 1; a < kh; a++)
                s = _mm512_add_epi32(s, _mm512_maskz_loadu_epi32(mv, h + a * Wp));
            _mm512_mask_storeu_epi32(rs + oh * Wp + ow, mw, s);
        }
}
