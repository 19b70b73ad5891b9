/* SSE2 (the x86-64 baseline) per-pixel byte sums of the implicit-im2col
 * row sums (i8conv_implicit.c; contract in i8conv.h). */
#include "i8conv.h"

#include <emmintrin.h>

void qk_i8_pixel_prefix__sse2(const uint8_t *P, int64_t npx, int64_t Cg, int sg, uint32_t *pre)
{
    const __m128i flip = _mm_set1_epi8((char)0x80), zero = _mm_setzero_si128();
    pre[0] = 0;
    for (int64_t q = 0; q < npx; q++) {
        __m128i acc = zero;
        for (int64_t k = 0; k < Cg; k += 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(P + q * Cg + k));
            acc = _mm_add_epi64(acc, _mm_sad_epu8(sg ? _mm_xor_si128(v, flip) : v, zero));
        }
        uint32_t sum = (uint32_t)_mm_cvtsi128_si32(acc) + (uint32_t)_mm_cvtsi128_si32(_mm_srli_si128(acc, 8));
        pre[q + 1] = pre[q] + sum - (sg ? (uint32_t)(128 * Cg) : 0u);
    }
}
