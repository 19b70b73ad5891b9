/* The A side of the int16-pair GEMM kernels, shared by qk_i8_gemm__avx2.c
 * (MR 6) and qk_i8_gemm__avx512.c (MR 12): both widen A to int16 and pack
 * it the same way for vpmaddwd. Included by each (so compiled with that
 * file's ISA flags and its MR a constant); the includer defines MR and
 * PACK_SUFFIX (avx2, avx512), which names qk_i8_gemm_ws__<suffix> and
 * qk_i8_gemm_prepare__<suffix> (i8gemm.h). */
#define PACK_CAT_(a, b) a##b
#define PACK_CAT(a, b) PACK_CAT_(a, b)

/* A is packed per group of MR rows as [Kp/2][MR] int32 (a pair of int16:
 * k even in the low half), rows past mb zero. */
size_t PACK_CAT(qk_i8_gemm_ws__, PACK_SUFFIX)(const qk_i8gemm *g)
{
    return (size_t)qk_i8_roundup(g->mb, MR) * (size_t)g->Kp * 2;
}

const void *PACK_CAT(qk_i8_gemm_prepare__, PACK_SUFFIX)(const qk_i8gemm *g, int64_t mb, const void *A, int64_t lda,
                                                      void *kws, int64_t *ldap)
{
    int64_t K = g->K, K2 = g->Kp / 2;
    int sgn = g->a_type == QK_I8;
    int32_t *dst = kws;
    for (int64_t m0 = 0; m0 < mb; m0 += MR) {
        int32_t *d = dst + (m0 / MR) * K2 * MR;
        for (int r = 0; r < MR; r++) {
            const uint8_t *a = (const uint8_t *)A + (m0 + r) * lda;
            for (int64_t kk = 0; kk < K2; kk++) {
                int32_t lo = 0, hi = 0;
                if (m0 + r < mb) {
                    if (2 * kk < K)
                        lo = sgn ? (int8_t)a[2 * kk] : a[2 * kk];
                    if (2 * kk + 1 < K)
                        hi = sgn ? (int8_t)a[2 * kk + 1] : a[2 * kk + 1];
                }
                d[kk * MR + r] = (int32_t)((uint32_t)(uint16_t)lo | ((uint32_t)(uint16_t)hi << 16));
            }
        }
    }
    *ldap = K2 * MR;
    return kws;
}
