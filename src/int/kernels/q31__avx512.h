/* gemmlowp's Q31 fixed-point steps on 16 int32 lanes (AVX-512), shared by
 * the AVX-512 kernel files: include only from a *__avx512.c / *__vnni.c /
 * *__amx.c file (they are compiled with the AVX-512 flags). Lane for lane
 * equal to qk_srdhm and qk_rdbpot (requant.c) for multipliers q >= 0. */
#ifndef QK_INT_Q31_AVX512_H
#define QK_INT_Q31_AVX512_H

#include <immintrin.h>
#include <stdint.h>

static inline __m512i srdhm16(__m512i x, __m512i q)
{
    const __m512i half = _mm512_set1_epi64(INT64_C(1) << 30);
    /* (x*q + 2^30) >> 31 equals gemmlowp's SRDHM for q >= 0 (see int.h). */
    __m512i pe = _mm512_srli_epi64(_mm512_add_epi64(_mm512_mul_epi32(x, q), half), 31);
    __m512i po = _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(x, 32), _mm512_srli_epi64(q, 32)), half);
    po = _mm512_slli_epi64(_mm512_srli_epi64(po, 31), 32);
    return _mm512_mask_blend_epi32(0xAAAA, pe, po);
}

static inline __m512i rdbpot16(__m512i x, __m512i n)
{
    const __m512i one = _mm512_set1_epi32(1);
    __m512i mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, n), one);
    __m512i rem = _mm512_and_si512(x, mask);
    __m512i thr = _mm512_srai_epi32(mask, 1);
    thr = _mm512_mask_add_epi32(thr, _mm512_cmplt_epi32_mask(x, _mm512_setzero_si512()), thr, one);
    __m512i y = _mm512_srav_epi32(x, n);
    return _mm512_mask_add_epi32(y, _mm512_cmpgt_epi32_mask(rem, thr), y, one);
}

/* qk_mbqm: x * 2^max(e,0) (wrapping), SRDHM by q, rounding right shift by max(-e,0) */
static inline __m512i mbqm16(__m512i x, __m512i q, __m512i lsh, __m512i rsh)
{
    return rdbpot16(srdhm16(_mm512_sllv_epi32(x, lsh), q), rsh);
}

#endif
