/* AVX-512 bodies of the histogram observers' scans (observer_scan.c): the
 * same min / max (extremes of finite floats: exact) and the same bin of
 * every element -- |x| widened to double, times k, truncated, clamped --
 * as the portable loops. Called only when qk_cpu_isa_usable(QK_ISA_AVX512). */
#include "observer_internal.h"

#include <immintrin.h>

int qk_obs_minmax__avx512(const float *x, int64_t n, float *mn, float *mx)
{
    __m512 lo = _mm512_set1_ps(INFINITY), hi = _mm512_set1_ps(-INFINITY);
    const __m512i expo = _mm512_set1_epi32(0x7f800000);
    __mmask16 bad = 0;
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(k, x + i);
        __m512i e = _mm512_and_si512(_mm512_castps_si512(v), expo);
        bad |= _mm512_mask_cmpeq_epi32_mask(k, e, expo);
        lo = _mm512_mask_min_ps(lo, k, lo, v);
        hi = _mm512_mask_max_ps(hi, k, hi, v);
    }
    *mn = _mm512_reduce_min_ps(lo);
    *mx = _mm512_reduce_max_ps(hi);
    return bad == 0;
}

void qk_obs_absbins__avx512(const float *x, int64_t n, double k, int nb, uint32_t *cnt)
{
    const __m512d vk = _mm512_set1_pd(k), top = _mm512_set1_pd((double)(nb - 1));
    uint32_t *c1 = cnt + nb;
    int32_t idx[16];
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_abs_ps(_mm512_loadu_ps(x + i));
        __m512d a = _mm512_mul_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(v)), vk);
        __m512d b = _mm512_mul_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)), vk);
        _mm256_storeu_si256((__m256i *)idx, _mm512_cvttpd_epi32(_mm512_min_pd(a, top)));
        _mm256_storeu_si256((__m256i *)(idx + 8), _mm512_cvttpd_epi32(_mm512_min_pd(b, top)));
        for (int t = 0; t < 16; t += 2) {
            cnt[idx[t]]++;
            c1[idx[t + 1]]++;
        }
    }
    qk_obs_absbins(x + i, n - i, k, nb, cnt);
}
