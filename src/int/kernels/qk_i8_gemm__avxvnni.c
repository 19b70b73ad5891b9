/* int8 GEMM kernel for AVX2 CPUs with AVX-VNNI (the VEX-encoded vpdpbusd
 * on 256-bit registers: Intel Alder Lake and later client cores, AMD Zen 5;
 * compiled with -mavx2 -mfma -mavxvnni; called only when
 * qk_i8_kernel_usable says so). The "avx2" kernel widens both operands to
 * int16 (vpmaddubsw would saturate); vpdpbusd sums four u8 x s8 products
 * into each int32 lane without saturating, so this one reads the bytes as
 * they are: four times the K per instruction, exact on every input.
 *
 * Packed B: [panel of 16 columns][Kp/4][16][4] bytes (i8gemm.c, K4
 * layout). u8 activations: vpdpbusd(A broadcast (u8), B (s8)); s8
 * activations: B stored as Bs + 128 (u8) with A the signed operand, the
 * extra 128*rowsum(A) removed by the output stage (i8gemm.h). A rows are
 * copied zero-padded to Kp bytes, MR-row groups filled with zero rows.
 * Micro-tile 6 x 16 (12 ymm accumulators); output stage and row sums of
 * the "avx2" kernel. */
#include "i8gemm.h"

#include <immintrin.h>
#include <string.h>

#define MR 6
#define NR 16

size_t qk_i8_gemm_ws__avxvnni(const qk_i8gemm *g) { return (size_t)qk_i8_roundup(g->mb, MR) * (size_t)g->Kp; }

const void *qk_i8_gemm_prepare__avxvnni(const qk_i8gemm *g, int64_t mb, const void *A, int64_t lda, void *kws,
                                        int64_t *ldap)
{
    int64_t rows = qk_i8_roundup(mb, MR);
    qk_i8_pad_rows(g, mb, A, lda, kws);
    memset((uint8_t *)kws + mb * g->Kp, 0, (size_t)((rows - mb) * g->Kp));
    *ldap = g->Kp;
    return kws;
}

static inline int32_t ld32(const uint8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

#define ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define DECL(r) __m256i c##r##0 = _mm256_setzero_si256(), c##r##1 = _mm256_setzero_si256();
#define STEP(r, DP)                                                                                  \
    av = _mm256_set1_epi32(ld32(a + r * lda + 4 * kk));                                              \
    c##r##0 = DP(c##r##0, av, b0);                                                                   \
    c##r##1 = DP(c##r##1, av, b1);
#define DP_U(c, a, b) _mm256_dpbusd_avx_epi32(c, a, b) /* A u8, B s8 */
#define DP_S(c, a, b) _mm256_dpbusd_avx_epi32(c, b, a) /* B+128 u8, A s8 */
#define STEP_U(r) STEP(r, DP_U)
#define STEP_S(r) STEP(r, DP_S)
#define STORE(r)                                                                                     \
    if (r < mr) {                                                                                    \
        _mm256_storeu_si256((__m256i *)(c + r * ldc), c##r##0);                                      \
        _mm256_storeu_si256((__m256i *)(c + r * ldc + 8), c##r##1);                                  \
    }
#define TILE_FN(name, S)                                                                             \
    static void name(int64_t K4, const uint8_t *a, int64_t lda, const uint8_t *bp, int32_t *c,       \
                     int64_t ldc, int mr)                                                            \
    {                                                                                                \
        ROWS(DECL)                                                                                   \
        for (int64_t kk = 0; kk < K4; kk++, bp += 4 * NR) {                                          \
            __m256i b0 = _mm256_loadu_si256((const __m256i *)bp);                                    \
            __m256i b1 = _mm256_loadu_si256((const __m256i *)(bp + 32));                             \
            __m256i av;                                                                              \
            ROWS(STEP_##S)                                                                           \
        }                                                                                            \
        ROWS(STORE)                                                                                  \
    }
TILE_FN(tile_u, U)
TILE_FN(tile_s, S)

void qk_i8_gemm__avxvnni(const qk_i8gemm *g, int64_t mb, const void *Ap, int64_t ldap, int64_t n0, int64_t nbp,
                         int32_t *acc, int64_t ldacc, void *kws)
{
    (void)kws;
    const int64_t K4 = g->Kp / 4;
    void (*tile)(int64_t, const uint8_t *, int64_t, const uint8_t *, int32_t *, int64_t, int) =
        g->b_u8 ? tile_s : tile_u;
    for (int64_t j = 0; j < nbp; j += NR) {
        const uint8_t *bp = (const uint8_t *)g->bpack + ((n0 + j) / NR) * K4 * NR * 4;
        for (int64_t m = 0; m < mb; m += MR) {
            int mr = mb - m < MR ? (int)(mb - m) : MR;
            tile(K4, (const uint8_t *)Ap + m * ldap, ldap, bp, acc + m * ldacc + j, ldacc, mr);
        }
    }
}
