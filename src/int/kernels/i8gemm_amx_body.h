/* Body of the AMX int8 GEMM kernel, included twice: by qk_i8_gemm__amx.c
 * with the real tile instructions and by i8gemm_amxemu.c with a plain C
 * emulation of them (so its packing and tiling are tested on any CPU).
 * The includer defines AMX_SUFFIX and the tile macros:
 *   AMX_STATE  AMX_CFG(cfg)  AMX_ZERO(t)  AMX_LOAD(t, ptr, stride)
 *   AMX_STORE(t, ptr, stride)  AMX_DPBUSD(c, a, b)  AMX_DPBSSD(c, a, b)  AMX_RELEASE()
 *
 * Tiles (palette 1, each 16 rows x 64 bytes): 0-3 C (int32 16x16), 4-5 A
 * (16 rows x 64 k), 6-7 B (16 k-quads x 16 columns x 4). One step covers a
 * 32 x 32 block of C and 64 of K. A rows are copied to a zero-padded
 * [roundup(mb,32)][Kp] scratch (Kp a multiple of 64); B is the K4 layout
 * with 32-column panels, so a B tile is 16 rows of 64 bytes at stride 128.
 * u8 activations use tdpbusd, s8 tdpbssd; weights are Bs (int8). */
#include <string.h>

#define AMX_MR 32
#define AMX_NR 32
#define AMX_CAT_(a, b) a##b
#define AMX_CAT(a, b) AMX_CAT_(a, b)

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_cfg;

size_t AMX_CAT(qk_i8_gemm_ws__, AMX_SUFFIX)(const qk_i8gemm *g)
{
    return (size_t)qk_i8_roundup(g->mb, AMX_MR) * (size_t)g->Kp + AMX_MR * AMX_NR * 4;
}

const void *AMX_CAT(qk_i8_gemm_prepare__, AMX_SUFFIX)(const qk_i8gemm *g, int64_t mb, const void *A, int64_t lda,
                                                       void *kws, int64_t *ldap)
{
    int64_t mbp = qk_i8_roundup(mb, AMX_MR);
    qk_i8_pad_rows(g, mb, A, lda, kws);
    memset((uint8_t *)kws + mb * g->Kp, 0, (size_t)((mbp - mb) * g->Kp));
    *ldap = g->Kp;
    return kws;
}

/* koff NULL: chunk c of row m at Ap + m*ldap + 64c (the padded scratch);
 * else at Ap + m*ldap + koff[c] (A read in place). */
static inline void AMX_CAT(amx_core_, AMX_SUFFIX)(const qk_i8gemm *g, int64_t mb, const uint8_t *A, int64_t ldap,
                                                 const int64_t *koff, int64_t n0, int64_t nbp, int32_t *acc,
                                                 int64_t ldacc, void *kws)
{
    AMX_STATE
    _Alignas(64) amx_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = 16;
    }
    AMX_CFG(&cfg);
    int64_t mbp = qk_i8_roundup(mb, AMX_MR), Kc = g->Kp / 64;
    int32_t *tmp = (int32_t *)((uint8_t *)kws + mbp * g->Kp);
    int sgn = g->a_type == QK_I8;
    for (int64_t j = 0; j < nbp; j += AMX_NR) {
        const uint8_t *bpan = (const uint8_t *)g->bpack + ((n0 + j) / AMX_NR) * g->Kp * AMX_NR;
        for (int64_t m = 0; m < mbp; m += AMX_MR) {
            AMX_ZERO(0);
            AMX_ZERO(1);
            AMX_ZERO(2);
            AMX_ZERO(3);
            for (int64_t kc = 0; kc < Kc; kc++) {
                const uint8_t *a0 = A + m * ldap + (koff ? koff[kc] : kc * 64), *b0 = bpan + kc * 16 * 4 * AMX_NR;
                AMX_LOAD(4, a0, ldap);
                AMX_LOAD(5, a0 + 16 * ldap, ldap);
                AMX_LOAD(6, b0, 4 * AMX_NR);
                AMX_LOAD(7, b0 + 64, 4 * AMX_NR);
                if (sgn) {
                    AMX_DPBSSD(0, 4, 6);
                    AMX_DPBSSD(1, 4, 7);
                    AMX_DPBSSD(2, 5, 6);
                    AMX_DPBSSD(3, 5, 7);
                } else {
                    AMX_DPBUSD(0, 4, 6);
                    AMX_DPBUSD(1, 4, 7);
                    AMX_DPBUSD(2, 5, 6);
                    AMX_DPBUSD(3, 5, 7);
                }
            }
            int full = m + AMX_MR <= mb;
            int32_t *c = full ? acc + m * ldacc + j : tmp;
            int64_t ldc = full ? ldacc : AMX_NR;
            AMX_STORE(0, c, ldc * 4);
            AMX_STORE(1, c + 16, ldc * 4);
            AMX_STORE(2, c + 16 * ldc, ldc * 4);
            AMX_STORE(3, c + 16 * ldc + 16, ldc * 4);
            if (!full)
                for (int64_t r = 0; m + r < mb; r++)
                    memcpy(acc + (m + r) * ldacc + j, tmp + r * AMX_NR, AMX_NR * 4);
        }
    }
    AMX_RELEASE();
}

void AMX_CAT(qk_i8_gemm__, AMX_SUFFIX)(const qk_i8gemm *g, int64_t mb, const void *Ap, int64_t ldap, int64_t n0,
                                        int64_t nbp, int32_t *acc, int64_t ldacc, void *kws)
{
    AMX_CAT(amx_core_, AMX_SUFFIX)(g, mb, Ap, ldap, NULL, n0, nbp, acc, ldacc, kws);
}

void AMX_CAT(qk_i8_gemm_koff__, AMX_SUFFIX)(const qk_i8gemm *g, int64_t mb, const uint8_t *X, int64_t xs,
                                             const int64_t *koff, int64_t n0, int64_t nbp, int32_t *acc,
                                             int64_t ldacc, void *kws)
{
    AMX_CAT(amx_core_, AMX_SUFFIX)(g, mb, X, xs, koff, n0, nbp, acc, ldacc, kws);
}
