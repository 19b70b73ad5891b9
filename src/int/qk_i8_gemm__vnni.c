/* int8 GEMM kernel for AVX-512 VNNI (vpdpbusd: u8 x s8, four products
 * summed into each int32 lane, wrapping, no saturation). Called only when
 * qk_cpu_isa_usable(QK_ISA_VNNI).
 *
 * Packed B: [panel of 32 columns][Kp/4][32][4] bytes (K padded to 4 with
 * zeros). u8 activations: vpdpbusd(A broadcast (u8), B (s8)). s8
 * activations: B is stored as Bs + 128 (u8) and A is the signed operand,
 * vpdpbusd(B+128, A broadcast); the extra 128*rowsum(A) is removed by the
 * output stage (rowcoef, see i8gemm.h). A rows are packed per task into the
 * worker's scratch (below). Micro-tile 12 x 32 (24 zmm accumulators). */
#include "i8gemm.h"

#include <immintrin.h>
#include <string.h>

#define MR 12
#define NR 32

/* A is packed per group of MR rows as [Kp/4][MR] int32 (4 consecutive k
 * of one row), rows past mb zero: one pointer feeds every broadcast. */
size_t qk_i8_gemm_ws__vnni(const qk_i8gemm *g) { return (size_t)qk_i8_roundup(g->mb, MR) * (size_t)g->Kp; }

const void *qk_i8_gemm_prepare__vnni(const qk_i8gemm *g, int64_t mb, const void *A, int64_t lda, void *kws,
                                     int64_t *ldap)
{
    int64_t K = g->K, K4 = g->Kp / 4, Kf = K / 4;
    int32_t *dst = kws;
    for (int64_t m0 = 0; m0 < mb; m0 += MR) {
        int32_t *d = dst + (m0 / MR) * K4 * MR;
        for (int r = 0; r < MR; r++) {
            if (m0 + r >= mb) {
                for (int64_t kk = 0; kk < K4; kk++)
                    d[kk * MR + r] = 0;
                continue;
            }
            const uint8_t *a = (const uint8_t *)A + (m0 + r) * lda;
            for (int64_t kk = 0; kk < Kf; kk++)
                memcpy(&d[kk * MR + r], a + 4 * kk, 4);
            if (Kf < K4) {
                uint8_t t[4] = {0, 0, 0, 0};
                memcpy(t, a + 4 * Kf, (size_t)(K - 4 * Kf));
                memcpy(&d[Kf * MR + r], t, 4);
            }
        }
    }
    *ldap = K4 * MR;
    return kws;
}

#define ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define DP_U(c, a, b) _mm512_dpbusd_epi32(c, a, b) /* A u8, B s8 */
#define DP_S(c, a, b) _mm512_dpbusd_epi32(c, b, a) /* B+128 u8, A s8 */
#define DECL(r) __m512i c##r##0 = _mm512_setzero_si512(), c##r##1 = _mm512_setzero_si512();
#define STORE(r)                                                                                     \
    if (r < mr) {                                                                                    \
        _mm512_storeu_si512(c + r * ldc, c##r##0);                                                   \
        _mm512_storeu_si512(c + r * ldc + 16, c##r##1);                                              \
    }
#define TILE_FN(name, DP)                                                                            \
    static void name(int64_t K4, const int32_t *ap, const uint8_t *bp, int32_t *c, int64_t ldc, int mr) \
    {                                                                                                \
        ROWS(DECL)                                                                                   \
        for (int64_t kk = 0; kk < K4; kk++, ap += MR, bp += 4 * NR) {                                \
            __m512i b0 = _mm512_loadu_si512(bp), b1 = _mm512_loadu_si512(bp + 64);                  \
            __m512i av;                                                                              \
            ROWS(STEP_##DP)                                                                          \
        }                                                                                            \
        ROWS(STORE)                                                                                  \
    }
#define STEP_DP_U(r)                                                                                 \
    av = _mm512_set1_epi32(ap[r]);                                                                   \
    c##r##0 = DP_U(c##r##0, av, b0);                                                                 \
    c##r##1 = DP_U(c##r##1, av, b1);
#define STEP_DP_S(r)                                                                                 \
    av = _mm512_set1_epi32(ap[r]);                                                                   \
    c##r##0 = DP_S(c##r##0, av, b0);                                                                 \
    c##r##1 = DP_S(c##r##1, av, b1);

TILE_FN(tile_ua, DP_U)
TILE_FN(tile_sa, DP_S)

void qk_i8_gemm__vnni(const qk_i8gemm *g, int64_t mb, const void *Ap, int64_t ldap, int64_t n0, int64_t nbp,
                      int32_t *acc, int64_t ldacc, void *kws)
{
    (void)kws;
    int64_t K4 = g->Kp / 4;
    int sgn = g->a_type == QK_I8;
    for (int64_t j = 0; j < nbp; j += NR) {
        const uint8_t *bp = (const uint8_t *)g->bpack + ((n0 + j) / NR) * K4 * NR * 4;
        for (int64_t m = 0; m < mb; m += MR) {
            int mr = mb - m < MR ? (int)(mb - m) : MR;
            const int32_t *ap = (const int32_t *)Ap + (m / MR) * ldap;
            if (sgn)
                tile_sa(K4, ap, bp, acc + m * ldacc + j, ldacc, mr);
            else
                tile_ua(K4, ap, bp, acc + m * ldacc + j, ldacc, mr);
        }
    }
}
