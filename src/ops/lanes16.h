/* The 16-lane masks of the AVX-512 row kernels (include only from
 * *__avx512.c files, which get the ISA flags). */
#ifndef QKIT_OPS_LANES16_H
#define QKIT_OPS_LANES16_H

#include <immintrin.h>
#include <stdint.h>

/* lanes lo <= k < hi of a 16-lane mask */
static inline __mmask16 qk_lanes16(int64_t lo, int64_t hi)
{
    lo = lo < 0 ? 0 : lo;
    hi = hi > 16 ? 16 : hi;
    if (hi <= lo)
        return 0;
    return (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
}

#endif
