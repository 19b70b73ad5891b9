/* AVX-512 bodies of QuantizeLinear / DequantizeLinear on one run of one
 * channel (qdq_ops.c), 16 elements per step with the same IEEE float
 * operations in the same order as the portable loops there -- a division,
 * the clamp to [qn - z - 1, qp - z + 1] (NaN kept, then mapped to 0),
 * round half to even by adding and subtracting 1.5 * 2^23, the zero point,
 * saturation; a subtraction and a product for the dequantizer (a
 * conversion and a product for int32) -- so the codes and values are
 * identical. Called only when
 * qk_cpu_isa_usable(QK_ISA_AVX512). */
#include "quant_internal.h"
#include "../ops/fvec.h"

#include <immintrin.h>

void qk_q_run__avx512(const float *x, int64_t n, float sc, int32_t z, int u8, void *y)
{
    const int32_t qn = u8 ? 0 : -128, qp = u8 ? 255 : 127;
    const __m512 vs = _mm512_set1_ps(sc), lo = _mm512_set1_ps((float)(qn - z - 1)),
                 hi = _mm512_set1_ps((float)(qp - z + 1)), magic = _mm512_set1_ps(12582912.0f),
                 fz = _mm512_setzero_ps();
    const __m512i vz = _mm512_set1_epi32(z), vqn = _mm512_set1_epi32(qn), vqp = _mm512_set1_epi32(qp);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_div_ps(_mm512_maskz_loadu_ps(k, x + i), vs);
        __m512 t = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, lo, _CMP_LT_OQ), lo);
        t = _mm512_mask_mov_ps(t, _mm512_cmp_ps_mask(t, hi, _CMP_GT_OQ), hi);
        t = _mm512_mask_mov_ps(fz, _mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), t);
        t = _mm512_sub_ps(_mm512_add_ps(t, magic), magic);
        __m512i r = _mm512_add_epi32(_mm512_cvttps_epi32(t), vz);
        r = _mm512_min_epi32(_mm512_max_epi32(r, vqn), vqp);
        _mm512_mask_cvtepi32_storeu_epi8((uint8_t *)y + i, k, r);
    }
}

void qk_dq_run__avx512(const void *x, int xt_u8, int64_t n, float sc, int32_t z, float *y)
{
    const __m512 vs = _mm512_set1_ps(sc);
    const __m512i vz = _mm512_set1_epi32(z);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m128i b = _mm_maskz_loadu_epi8(k, (const uint8_t *)x + i);
        __m512i q = xt_u8 ? _mm512_cvtepu8_epi32(b) : _mm512_cvtepi8_epi32(b);
        _mm512_mask_storeu_ps(y + i, k, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(q, vz)), vs));
    }
}

/* sum over n values of clip(dequantize(x)) (clip when lo <= hi is asked
 * for by `clip`), in qk_vsum's lane order: lane l of each 16-block, the tail
 * added to its lanes, the lanes combined by qk_vlanes_sum */
float qk_dq_clip_sum__avx512(const void *x, qk_dtype xt, int64_t n, float sc, int32_t z, int clip, float lo,
                             float hi)
{
    const __m512 vs = _mm512_set1_ps(sc), vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
    const __m512i vz = _mm512_set1_epi32(z);
    __m512 acc = _mm512_setzero_ps(), tail = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512i q;
        if (xt == QK_I32) {
            q = _mm512_maskz_loadu_epi32(k, (const int32_t *)x + i);
        } else {
            __m128i b = _mm_maskz_loadu_epi8(k, (const uint8_t *)x + i);
            q = _mm512_sub_epi32(xt == QK_U8 ? _mm512_cvtepu8_epi32(b) : _mm512_cvtepi8_epi32(b), vz);
        }
        __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(q), vs);
        if (clip) {
            v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, vlo, _CMP_LT_OQ), vlo);
            v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, vhi, _CMP_GT_OQ), vhi);
        }
        if (k == 0xffff)
            acc = _mm512_add_ps(acc, v);
        else
            tail = _mm512_maskz_mov_ps(k, v);
    }
    float a[16];
    _mm512_storeu_ps(a, _mm512_add_ps(acc, tail));
    return qk_vlanes_sum(a);
}
