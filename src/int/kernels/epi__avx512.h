/* The int8/uint8 output stage of the GEMM epilogue on 16 columns at a time
 * (AVX-512), shared by the epilogue (qk_i8_gemm__avx512.c) and the VNNI
 * short-K kernel (qk_i8_gemm__vnni.c): include only from a *__avx512.c /
 * *__vnni.c / *__amx.c file. The arithmetic is that of the epilogue's
 * general loop: T = acc - rowcoef*rowsum + colconst (wrapping int32), then
 * FP32 (T*scale clamped, rounded to nearest even, + zo) or GEMMLOWP
 * (shift, SRDHM, rounding shift, clamp, + zo). */
#ifndef QK_INT_EPI_AVX512_H
#define QK_INT_EPI_AVX512_H

#include "i8gemm.h"
#include "q31__avx512.h"

#include <immintrin.h>

#define QK_EPI_INLINE static inline __attribute__((always_inline))

/* One vector's column parameters (columns n .. n+15, `left` of them real). */
typedef struct {
    __mmask16 mk;
    __m512i cc, rc, p1, p2, p3;
    __m512 sc;
} qk_epi16;

/* The tile-wide constants. */
typedef struct {
    __m512i zo, lo, hi;
    __m512 flo, fhi;
} qk_epi_k;

QK_EPI_INLINE qk_epi_k qk_epi_consts(const qk_i8gemm *g)
{
    qk_epi_k k;
    k.zo = _mm512_set1_epi32(g->zo);
    k.lo = _mm512_set1_epi32(g->qmin - g->zo);
    k.hi = _mm512_set1_epi32(g->qmax - g->zo);
    k.flo = _mm512_set1_ps((float)(g->qmin - g->zo));
    k.fhi = _mm512_set1_ps((float)(g->qmax - g->zo));
    return k;
}

QK_EPI_INLINE qk_epi16 qk_epi16_load(const qk_i8gemm *g, int64_t n, int64_t left, int fp)
{
    qk_epi16 c;
    c.mk = left >= 16 ? (__mmask16)0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
    c.cc = _mm512_maskz_loadu_epi32(c.mk, g->colconst + n);
    c.rc = _mm512_maskz_loadu_epi32(c.mk, g->rowcoef + n);
    c.sc = fp ? _mm512_maskz_loadu_ps(c.mk, g->scale + n) : _mm512_setzero_ps();
    c.p1 = fp ? c.cc : _mm512_maskz_loadu_epi32(c.mk, g->lsh + n);
    c.p2 = fp ? c.cc : _mm512_maskz_loadu_epi32(c.mk, g->mult + n);
    c.p3 = fp ? c.cc : _mm512_maskz_loadu_epi32(c.mk, g->rsh + n);
    return c;
}

/* T (colconst already added) -> output code, as int32. */
QK_EPI_INLINE __m512i qk_epi16_stage(const qk_epi16 *c, int fp, __m512i t, const qk_epi_k *k)
{
    if (fp) {
        __m512 f = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(t), c->sc), k->flo), k->fhi);
        return _mm512_add_epi32(_mm512_cvtps_epi32(f), k->zo);
    }
    __m512i x = rdbpot16(srdhm16(_mm512_sllv_epi32(t, c->p1), c->p2), c->p3);
    return _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(x, k->lo), k->hi), k->zo);
}

/* Four vectors of codes (in the output type's range) as 64 bytes in
 * column order: the packs leave dword 4l + v holding vector v's elements
 * 4l..4l+3, the permutation puts them back. */
QK_EPI_INLINE __m512i qk_epi_pack64(__m512i y0, __m512i y1, __m512i y2, __m512i y3, int u8)
{
    const __m512i perm = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    __m512i p = _mm512_packs_epi32(y0, y1), q = _mm512_packs_epi32(y2, y3);
    return _mm512_permutexvar_epi32(perm, u8 ? _mm512_packus_epi16(p, q) : _mm512_packs_epi16(p, q));
}

#endif
