/* QkEpilogue (eltwise8.h; qk_epi_range_ref) with AVX-512: 16 elements per
 * step, the same IEEE float operations as the reference in the same order
 * (convert, multiply, add, relu as x < 0 ? 0 : x, divide, clamp, NaN -> 0,
 * round half to even by vcvtps2dq in the default rounding mode: equal to
 * the reference's rne_small on the clamped range), so bit-identical. Called
 * only when qk_cpu_isa_usable(QK_ISA_AVX512). */
#include "eltwise8.h"

#include <immintrin.h>

static inline __m512 ld16(qk_dtype t, const void *p, int64_t i, __mmask16 mk, __m512i z)
{
    __m512i v;
    switch (t) {
    case QK_U8: v = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mk, (const uint8_t *)p + i)); break;
    case QK_I8: v = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mk, (const int8_t *)p + i)); break;
    default: v = _mm512_maskz_loadu_epi32(mk, (const int32_t *)p + i); break;
    }
    return _mm512_cvtepi32_ps(_mm512_sub_epi32(v, z));
}

void qk_epi_range__avx512(const qk_epi_run *e, int64_t lo, int64_t hi)
{
    int32_t qn, qp;
    qk_int_range(e->out, &qn, &qp);
    const __m512 qlo = _mm512_set1_ps((float)(qn - e->zy - 1)), qhi = _mm512_set1_ps((float)(qp - e->zy + 1));
    const __m512 ys = _mm512_set1_ps(e->ys), fz = _mm512_setzero_ps();
    const __m512i za = _mm512_set1_epi32(e->za), zb = _mm512_set1_epi32(e->zb), zy = _mm512_set1_epi32(e->zy);
    const __m512i iqn = _mm512_set1_epi32(qn), iqp = _mm512_set1_epi32(qp);
    int64_t c = (lo / e->run) % e->C, r = lo % e->run;
    float ta[QK_EPI_TAB + 16], tb[QK_EPI_TAB + 16];
    const int tab = qk_epi_tables(e, 16, ta, tb);
    for (int64_t i = lo; i < hi; i += 16) {
        int n = hi - i < 16 ? (int)(hi - i) : 16;
        __mmask16 mk = n == 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
        float sbuf[16], tbuf[16];
        const float *sa = sbuf, *sb = tbuf;
        if (tab) {
            sa = ta + c;
            sb = tb + c;
            c = (c + n) % e->C;
        } else {
            qk_epi_gather(e, n, &c, &r, sbuf, tbuf);
        }
        __m512 v = _mm512_mul_ps(ld16(e->at, e->a, i, mk, za), _mm512_maskz_loadu_ps(mk, sa));
        if (e->b) {
            __m512 u = e->b_int ? _mm512_mul_ps(ld16(e->bt, e->b, i, mk, zb), _mm512_maskz_loadu_ps(mk, sb))
                                : _mm512_maskz_loadu_ps(mk, (const float *)e->b + i);
            v = _mm512_add_ps(v, u);
        }
        if (e->relu)
            v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, fz, _CMP_LT_OQ), fz);
        __m512 x = _mm512_div_ps(v, ys);
        __m512 t = _mm512_mask_mov_ps(x, _mm512_cmp_ps_mask(x, qlo, _CMP_LT_OQ), qlo);
        t = _mm512_mask_mov_ps(t, _mm512_cmp_ps_mask(t, qhi, _CMP_GT_OQ), qhi);
        t = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, x, _CMP_ORD_Q), t);
        __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(t), zy);
        q = _mm512_min_epi32(_mm512_max_epi32(q, iqn), iqp);
        _mm512_mask_cvtepi32_storeu_epi8((uint8_t *)e->y + i, mk, q);
    }
}
