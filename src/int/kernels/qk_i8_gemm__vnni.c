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

#include "epi__avx512.h"

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

/* ---- short K with the output stage in registers (i8gemm.h, small) ----
 * Row by row: the row's K bytes broadcast as K4 dwords (the last one
 * loaded under a mask, so no byte past the row is read), against B's K4 x
 * nv vectors held in registers (packed B: panel of 32 columns, [K4][32][4]
 * bytes, zero past K); the accumulator starts at colconst (wrapping adds
 * commute with the epilogue's), then the epilogue's arithmetic and one
 * 64-byte store per row, as qk_i8_epilogue__avx512. */

/* B vector (kk, v) of the column group at n (n a multiple of 64). */
QK_EPI_INLINE __m512i sm_b(const qk_i8gemm *g, int64_t n, int64_t K4, int64_t kk, int v)
{
    const uint8_t *bp = (const uint8_t *)g->bpack + ((n / NR) + v / 2) * K4 * NR * 4;
    return _mm512_loadu_si512(bp + kk * NR * 4 + (v % 2) * 64);
}

QK_EPI_INLINE void sm_run(const qk_i8gemm *g, int fp, int K4, int nv, int64_t mb, const uint8_t *A, int64_t lda,
                          int64_t n, int64_t w, uint8_t *C, int64_t ldc)
{
    const qk_epi_k ek = qk_epi_consts(g);
    const int u8 = g->out_type == QK_U8;
    const __mmask64 mst = w == 64 ? ~(__mmask64)0 : (((__mmask64)1 << w) - 1);
    const int64_t K = g->K, tail = K - 4 * (K4 - 1); /* bytes of the last dword, 1..4 */
    const __mmask16 mtail = (__mmask16)((1u << tail) - 1);
    const qk_epi16 c0 = qk_epi16_load(g, n, w, fp);
    const qk_epi16 c1 = nv > 1 ? qk_epi16_load(g, n + 16, w - 16, fp) : c0;
    const qk_epi16 c2 = nv > 2 ? qk_epi16_load(g, n + 32, w - 32, fp) : c0;
    const qk_epi16 c3 = nv > 3 ? qk_epi16_load(g, n + 48, w - 48, fp) : c0;
    __m512i b[4][4];
    for (int kk = 0; kk < K4; kk++)
        for (int v = 0; v < nv; v++)
            b[kk][v] = sm_b(g, n, K4, kk, v);
    const __m512i z = _mm512_setzero_si512();
    for (int64_t m = 0; m < mb; m++) {
        const uint8_t *a = A + m * lda;
        __m512i t0 = c0.cc, t1 = c1.cc, t2 = c2.cc, t3 = c3.cc;
        for (int kk = 0; kk < K4; kk++) {
            __m512i av;
            if (kk < K4 - 1 || tail == 4) {
                int32_t d;
                memcpy(&d, a + 4 * kk, 4);
                av = _mm512_set1_epi32(d);
            } else {
                av = _mm512_broadcastd_epi32(_mm_maskz_loadu_epi8(mtail, a + 4 * kk));
            }
            t0 = _mm512_dpbusd_epi32(t0, av, b[kk][0]);
            if (nv > 1)
                t1 = _mm512_dpbusd_epi32(t1, av, b[kk][1]);
            if (nv > 2)
                t2 = _mm512_dpbusd_epi32(t2, av, b[kk][2]);
            if (nv > 3)
                t3 = _mm512_dpbusd_epi32(t3, av, b[kk][3]);
        }
        __m512i y0 = qk_epi16_stage(&c0, fp, t0, &ek);
        if (nv == 1) {
            _mm512_mask_cvtepi32_storeu_epi8(C + m * ldc, c0.mk, y0);
            continue;
        }
        __m512i y1 = qk_epi16_stage(&c1, fp, t1, &ek);
        __m512i y2 = nv > 2 ? qk_epi16_stage(&c2, fp, t2, &ek) : z;
        __m512i y3 = nv > 3 ? qk_epi16_stage(&c3, fp, t3, &ek) : z;
        _mm512_mask_storeu_epi8(C + m * ldc, mst, qk_epi_pack64(y0, y1, y2, y3, u8));
    }
}

typedef void (*sm_fn)(const qk_i8gemm *, int64_t, const uint8_t *, int64_t, int64_t, int64_t, uint8_t *, int64_t);
#define SM_FN(fp, K4, nv)                                                                                      \
    static void sm_##fp##_##K4##_##nv(const qk_i8gemm *g, int64_t mb, const uint8_t *A, int64_t lda, int64_t n, \
                                      int64_t w, uint8_t *C, int64_t ldc)                                       \
    {                                                                                                           \
        sm_run(g, fp, K4, nv, mb, A, lda, n, w, C, ldc);                                                        \
    }
#define SM_NV(fp, K4) SM_FN(fp, K4, 1) SM_FN(fp, K4, 2) SM_FN(fp, K4, 3) SM_FN(fp, K4, 4)
#define SM_K(fp) SM_NV(fp, 1) SM_NV(fp, 2) SM_NV(fp, 3) SM_NV(fp, 4)
SM_K(0)
SM_K(1)
#define SM_REF_NV(fp, K4) sm_##fp##_##K4##_1, sm_##fp##_##K4##_2, sm_##fp##_##K4##_3, sm_##fp##_##K4##_4
#define SM_REF_K(fp) SM_REF_NV(fp, 1), SM_REF_NV(fp, 2), SM_REF_NV(fp, 3), SM_REF_NV(fp, 4)
static const sm_fn sm_fns[2][16] = { { SM_REF_K(0) }, { SM_REF_K(1) } };

void qk_i8_gemm_small__vnni(const qk_i8gemm *g, int64_t mb, const uint8_t *A, int64_t lda, int64_t n0, int64_t n1,
                            uint8_t *C, int64_t ldc)
{
    int64_t K4 = (g->K + 3) / 4;
    for (int64_t n = n0; n < n1; n += 64) {
        int64_t w = n1 - n < 64 ? n1 - n : 64;
        sm_fns[g->mode == QK_RQ_FP32][(K4 - 1) * 4 + (w + 15) / 16 - 1](g, mb, A, lda, n, w, C + (n - n0), ldc);
    }
}
