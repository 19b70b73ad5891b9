/* AVX-512 body of QkAdd's FP32 (MLAS) arithmetic for 8-bit operands
 * (lower_ops.c): the same float operations in the same order as its
 * portable loop -- t = ra*(a - za) + rb*(b - zb) (a product, a product, a
 * sum: no fused multiply-add), clamped to [lo, hi], rounded half to even by
 * adding and subtracting 1.5 * 2^23, plus zp -- so the codes are identical.
 * Called only when qk_cpu_isa_usable(QK_ISA_AVX512). */
#include "eltwise8.h"

#include "q31__avx512.h"

#include <immintrin.h>

static inline __m512i ld16(const void *p, int u, __mmask16 k)
{
    __m128i v = _mm_maskz_loadu_epi8(k, p);
    return u ? _mm512_cvtepu8_epi32(v) : _mm512_cvtepi8_epi32(v);
}

void qk_qadd8__avx512(const void *a, int ua, const void *b, int ub, void *y, int uy, int64_t i0, int64_t i1, float ra,
                      int32_t za, float rb, int32_t zb, float lo, float hi, int32_t zp)
{
    const __m512 vra = _mm512_set1_ps(ra), vrb = _mm512_set1_ps(rb), vlo = _mm512_set1_ps(lo),
                 vhi = _mm512_set1_ps(hi), magic = _mm512_set1_ps(12582912.0f);
    const __m512i vza = _mm512_set1_epi32(za), vzb = _mm512_set1_epi32(zb), vzp = _mm512_set1_epi32(zp);
    (void)uy; /* the clamp keeps the code in the output's range: its low byte is the store */
    for (int64_t i = i0; i < i1; i += 16) {
        __mmask16 k = i1 - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (i1 - i)) - 1);
        __m512 fa = _mm512_cvtepi32_ps(_mm512_sub_epi32(ld16((const uint8_t *)a + i, ua, k), vza));
        __m512 fb = _mm512_cvtepi32_ps(_mm512_sub_epi32(ld16((const uint8_t *)b + i, ub, k), vzb));
        __m512 t = _mm512_add_ps(_mm512_mul_ps(vra, fa), _mm512_mul_ps(vrb, fb));
        t = _mm512_min_ps(_mm512_max_ps(t, vlo), vhi);
        t = _mm512_sub_ps(_mm512_add_ps(t, magic), magic);
        __m512i q = _mm512_add_epi32(_mm512_cvttps_epi32(t), vzp);
        _mm512_mask_cvtepi32_storeu_epi8((uint8_t *)y + i, k, q);
    }
}

/* QkAdd in gemmlowp (TFLite) arithmetic on 8-bit codes: qk_qadd_value lane
 * for lane -- both inputs shifted left, each scaled by its Q31 multiplier,
 * summed, scaled by the output multiplier, the zero point added, clamped. */
void qk_qadd8_gemmlowp__avx512(const qk_qadd *p, const void *a, int ua, const void *b, int ub, void *y, int64_t i0,
                               int64_t i1)
{
    const __m512i z1 = _mm512_set1_epi32(p->z1), z2 = _mm512_set1_epi32(p->z2), zo = _mm512_set1_epi32(p->zo);
    const __m512i ls = _mm512_set1_epi32(p->left_shift);
    const __m512i m1 = _mm512_set1_epi32(p->m1), m2 = _mm512_set1_epi32(p->m2), mo = _mm512_set1_epi32(p->mo);
    const __m512i l1 = _mm512_set1_epi32(p->e1 > 0 ? p->e1 : 0), r1 = _mm512_set1_epi32(p->e1 > 0 ? 0 : -p->e1);
    const __m512i l2 = _mm512_set1_epi32(p->e2 > 0 ? p->e2 : 0), r2 = _mm512_set1_epi32(p->e2 > 0 ? 0 : -p->e2);
    const __m512i lo_ = _mm512_set1_epi32(p->eo > 0 ? p->eo : 0), ro = _mm512_set1_epi32(p->eo > 0 ? 0 : -p->eo);
    const __m512i qn = _mm512_set1_epi32(p->qmin), qp = _mm512_set1_epi32(p->qmax);
    for (int64_t i = i0; i < i1; i += 16) {
        __mmask16 k = i1 - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (i1 - i)) - 1);
        __m512i va = _mm512_sllv_epi32(_mm512_sub_epi32(ld16((const uint8_t *)a + i, ua, k), z1), ls);
        __m512i vb = _mm512_sllv_epi32(_mm512_sub_epi32(ld16((const uint8_t *)b + i, ub, k), z2), ls);
        __m512i sum = _mm512_add_epi32(mbqm16(va, m1, l1, r1), mbqm16(vb, m2, l2, r2));
        __m512i q = _mm512_add_epi32(mbqm16(sum, mo, lo_, ro), zo);
        q = _mm512_min_epi32(_mm512_max_epi32(q, qn), qp);
        _mm512_mask_cvtepi32_storeu_epi8((uint8_t *)y + i, k, q);
    }
}
