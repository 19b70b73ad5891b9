/* QkEpilogue (eltwise8.h; qk_epi_range_ref) with AVX2: 8 elements per
 * step, the same IEEE float operations as the reference in the same order
 * (convert, multiply, add, relu as x < 0 ? 0 : x, divide, clamp, NaN -> 0,
 * round half to even by vcvtps2dq in the default rounding mode), so
 * bit-identical; as the AVX-512 variant, on 8 lanes. It stops at the last
 * multiple of 8 elements from lo (the caller finishes the rest with the
 * reference). Called only when the dispatch level is at least AVX2. */
#include "eltwise8.h"

#include <immintrin.h>

static inline __m256 ld8(qk_dtype t, const void *p, int64_t i, __m256i z)
{
    __m256i v;
    switch (t) {
    case QK_U8: v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)((const uint8_t *)p + i))); break;
    case QK_I8: v = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)((const int8_t *)p + i))); break;
    default: v = _mm256_loadu_si256((const __m256i *)((const int32_t *)p + i)); break;
    }
    return _mm256_cvtepi32_ps(_mm256_sub_epi32(v, z));
}

/* 8 int32 codes in range -> 8 bytes (the low byte of each) */
static inline void st8(uint8_t *y, __m256i q)
{
    const __m256i pick = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 4, 8, 12,
                                          -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    __m256i s = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(q, pick), _mm256_setr_epi32(0, 4, 1, 1, 1, 1, 1, 1));
    _mm_storel_epi64((__m128i *)y, _mm256_castsi256_si128(s));
}

int64_t qk_epi_range__avx2(const qk_epi_run *e, int64_t lo, int64_t hi)
{
    int32_t qn, qp;
    qk_int_range(e->out, &qn, &qp);
    const __m256 qlo = _mm256_set1_ps((float)(qn - e->zy - 1)), qhi = _mm256_set1_ps((float)(qp - e->zy + 1));
    const __m256 ys = _mm256_set1_ps(e->ys), fz = _mm256_setzero_ps();
    const __m256i za = _mm256_set1_epi32(e->za), zb = _mm256_set1_epi32(e->zb), zy = _mm256_set1_epi32(e->zy);
    const __m256i iqn = _mm256_set1_epi32(qn), iqp = _mm256_set1_epi32(qp);
    const int64_t end = lo + (hi - lo) / 8 * 8;
    int64_t c = (lo / e->run) % e->C, r = lo % e->run;
    float ta[QK_EPI_TAB + 8], tb[QK_EPI_TAB + 8];
    const int tab = qk_epi_tables(e, 8, ta, tb);
    for (int64_t i = lo; i < end; i += 8) {
        float sbuf[8], tbuf[8];
        const float *sa = sbuf, *sb = tbuf;
        if (tab) {
            sa = ta + c;
            sb = tb + c;
            c = (c + 8) % e->C;
        } else {
            qk_epi_gather(e, 8, &c, &r, sbuf, tbuf);
        }
        __m256 v = _mm256_mul_ps(ld8(e->at, e->a, i, za), _mm256_loadu_ps(sa));
        if (e->b) {
            __m256 u = e->b_int ? _mm256_mul_ps(ld8(e->bt, e->b, i, zb), _mm256_loadu_ps(sb))
                                : _mm256_loadu_ps((const float *)e->b + i);
            v = _mm256_add_ps(v, u);
        }
        if (e->relu)
            v = _mm256_blendv_ps(v, fz, _mm256_cmp_ps(v, fz, _CMP_LT_OQ));
        __m256 x = _mm256_div_ps(v, ys);
        __m256 t = _mm256_blendv_ps(x, qlo, _mm256_cmp_ps(x, qlo, _CMP_LT_OQ));
        t = _mm256_blendv_ps(t, qhi, _mm256_cmp_ps(t, qhi, _CMP_GT_OQ));
        t = _mm256_and_ps(t, _mm256_cmp_ps(x, x, _CMP_ORD_Q));
        __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(t), zy);
        st8((uint8_t *)e->y + i, _mm256_min_epi32(_mm256_max_epi32(q, iqn), iqp));
    }
    return end;
}

/* QkAdd's FP32 arithmetic on 8-bit codes (eltwise8.h), 8 lanes: the AVX-512
 * loop's operations (products, sum, clamp, round half to even by the
 * 1.5 * 2^23 trick, zero point) over [i0, i0 + 8k); returns its end. */
int64_t qk_qadd8__avx2(const void *a, int ua, const void *b, int ub, void *y, int64_t i0, int64_t i1, float ra,
                       int32_t za, float rb, int32_t zb, float lo, float hi, int32_t zp)
{
    const __m256 vra = _mm256_set1_ps(ra), vrb = _mm256_set1_ps(rb), vlo = _mm256_set1_ps(lo),
                 vhi = _mm256_set1_ps(hi), magic = _mm256_set1_ps(12582912.0f);
    const __m256i vza = _mm256_set1_epi32(za), vzb = _mm256_set1_epi32(zb), vzp = _mm256_set1_epi32(zp);
    const int64_t end = i0 + (i1 - i0) / 8 * 8;
    for (int64_t i = i0; i < end; i += 8) {
        __m128i xa = _mm_loadl_epi64((const __m128i *)((const uint8_t *)a + i));
        __m128i xb = _mm_loadl_epi64((const __m128i *)((const uint8_t *)b + i));
        __m256 fa = _mm256_cvtepi32_ps(_mm256_sub_epi32(ua ? _mm256_cvtepu8_epi32(xa) : _mm256_cvtepi8_epi32(xa), vza));
        __m256 fb = _mm256_cvtepi32_ps(_mm256_sub_epi32(ub ? _mm256_cvtepu8_epi32(xb) : _mm256_cvtepi8_epi32(xb), vzb));
        __m256 t = _mm256_add_ps(_mm256_mul_ps(vra, fa), _mm256_mul_ps(vrb, fb));
        t = _mm256_min_ps(_mm256_max_ps(t, vlo), vhi);
        t = _mm256_sub_ps(_mm256_add_ps(t, magic), magic);
        st8((uint8_t *)y + i, _mm256_add_epi32(_mm256_cvttps_epi32(t), vzp));
    }
    return end;
}
