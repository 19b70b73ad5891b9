/* SSE2 (the x86-64 baseline) per-pixel byte sums of the implicit-im2col
 * row sums (i8conv_implicit.c; contract in i8conv.h). */
#include "i8conv.h"

#include <emmintrin.h>

void qk_i8_pixel_sums__sse2(const uint8_t *P, int64_t npx, int64_t Cg, int sg, uint32_t *ps)
{
    const __m128i flip = _mm_set1_epi8((char)0x80), zero = _mm_setzero_si128();
    const uint32_t bias = sg ? (uint32_t)(128 * Cg) : 0u;
    for (int64_t q = 0; q < npx; q++) { /* pixels are independent: no chain from one to the next */
        __m128i acc = zero;
        for (int64_t k = 0; k < Cg; k += 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(P + q * Cg + k));
            acc = _mm_add_epi64(acc, _mm_sad_epu8(sg ? _mm_xor_si128(v, flip) : v, zero));
        }
        acc = _mm_add_epi64(acc, _mm_unpackhi_epi64(acc, acc));
        ps[q] = (uint32_t)_mm_cvtsi128_si32(acc) - bias;
    }
}
