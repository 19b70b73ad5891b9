/* int8 GEMM kernel for AVX-512 VNNI (vpdpbusd: u8 x s8, four products
 * summed into each int32 lane, wrapping, no saturation). Called only when
 * qk_cpu_isa_usable(QK_ISA_VNNI).
 *
 * Packed B: [panel of 32 columns][Kp/4][32][4] bytes (K padded to 4 with
 * zeros). u8 activations: vpdpbusd(A broadcast (u8), B (s8)). s8
 * activations: B is stored as Bs + 128 (u8) and A is the signed operand,
 * vpdpbusd(B+128, A broadcast); the extra 128*rowsum(A) is removed by the
 * output stage (rowcoef, see i8gemm.h). Micro-tile 12 x 32 (24 zmm
 * accumulators), or 12 x 16 where a panel has at most 16 real columns (a
 * layer with 16 output channels: no work on the zero half).
 *
 * A is read 4 bytes per broadcast: row r of a tile at x + r*xs, its
 * dword kk at + kk*ks or at + koff[kk]. In place (xs = lda, ks = 4) for
 * GEMM rows with K a multiple of 4 and few column panels (the models'
 * convolutions: no copy at all); packed per group of MR rows as [Kp/4][MR]
 * dwords (xs = 4, ks = 4*MR) where A is reused across >= PACK_PANELS
 * panels or K is not a multiple of 4 (rows zero-padded); at + koff[kk]
 * for compute_koff (an implicit im2col, chunks of 4 bytes). A last
 * in-place tile of fewer than MR rows is gathered into the scratch first,
 * so no byte past the block's rows is read. */
#include "i8gemm.h"

#include "epi__avx512.h"

#include <immintrin.h>
#include <string.h>

#define MR 12
#define NR 32
#define PACK_PANELS 4

static int packed(const qk_i8gemm *g) { return g->K % 4 || g->Np >= PACK_PANELS * NR; }

/* Scratch: the tail tile [MR][Kp], then (packed) the block's rows. */
size_t qk_i8_gemm_ws__vnni(const qk_i8gemm *g)
{
    return (size_t)(MR + (packed(g) ? qk_i8_roundup(g->mb, MR) : 0)) * (size_t)g->Kp;
}

const void *qk_i8_gemm_prepare__vnni(const qk_i8gemm *g, int64_t mb, const void *A, int64_t lda, void *kws,
                                     int64_t *ldap)
{
    if (!packed(g)) {
        *ldap = lda;
        return A;
    }
    int64_t K = g->K, K4 = g->Kp / 4, Kf = K / 4;
    int32_t *dst = (int32_t *)((uint8_t *)kws + (size_t)MR * (size_t)g->Kp);
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
    *ldap = K4 * MR * 4; /* bytes per group of MR rows */
    return dst;
}

static inline int32_t ld32(const uint8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

#define ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define DP_U(c, a, b) _mm512_dpbusd_epi32(c, a, b) /* A u8, B s8 */
#define DP_S(c, a, b) _mm512_dpbusd_epi32(c, b, a) /* B+128 u8, A s8 */
#define DECL2(r) __m512i c##r##0 = _mm512_setzero_si512(), c##r##1 = _mm512_setzero_si512();
#define DECL1(r) __m512i c##r##0 = _mm512_setzero_si512();
#define STORE2(r)                                                                                    \
    _mm512_storeu_si512(c + r * ldc, c##r##0);                                                       \
    _mm512_storeu_si512(c + r * ldc + 16, c##r##1);
#define STORE1(r) _mm512_storeu_si512(c + r * ldc, c##r##0);
#define STEP2(r, DP)                                                                                 \
    av = _mm512_set1_epi32(ld32(q + r * RS));                                                        \
    c##r##0 = DP(c##r##0, av, b0);                                                                   \
    c##r##1 = DP(c##r##1, av, b1);
#define STEP1(r, DP)                                                                                 \
    av = _mm512_set1_epi32(ld32(q + r * RS));                                                        \
    c##r##0 = DP(c##r##0, av, b0);
#define STEP2_U(r) STEP2(r, DP_U)
#define STEP2_S(r) STEP2(r, DP_S)
#define STEP1_U(r) STEP1(r, DP_U)
#define STEP1_S(r) STEP1(r, DP_S)
#define OFF_LIN(kk) (4 * (kk))
#define OFF_PK(kk) (4 * MR * (kk))
#define OFF_TAB(kk) (koff[kk])
#define LOADB2 __m512i b0 = _mm512_loadu_si512(bp), b1 = _mm512_loadu_si512(bp + 64);
#define LOADB1 __m512i b0 = _mm512_loadu_si512(bp);
/* A full MR-row tile: acc rows r at c + r*ldc, NV*16 columns; A row r at
 * x + r*RS (RS: xs, or 4 for the packed layout, a constant there so that
 * every broadcast addresses one register plus a displacement). */
#define TILE_FN(name, NV, S, OFF)                                                                    \
    static void name(int64_t K4, const int64_t *koff, const uint8_t *x, int64_t xs, const uint8_t *bp,  \
                     int32_t *c, int64_t ldc)                                                        \
    {                                                                                                \
        (void)koff, (void)xs;                                                                        \
        ROWS(DECL##NV)                                                                               \
        for (int64_t kk = 0; kk < K4; kk++, bp += 4 * NR) {                                          \
            const uint8_t *q = x + OFF(kk);                                                          \
            LOADB##NV                                                                                \
            __m512i av;                                                                              \
            ROWS(STEP##NV##_##S)                                                                     \
        }                                                                                            \
        ROWS(STORE##NV)                                                                              \
    }
#define RS xs
TILE_FN(t2u_lin, 2, U, OFF_LIN)
TILE_FN(t2s_lin, 2, S, OFF_LIN)
TILE_FN(t1u_lin, 1, U, OFF_LIN)
TILE_FN(t1s_lin, 1, S, OFF_LIN)
TILE_FN(t2u_tab, 2, U, OFF_TAB)
TILE_FN(t2s_tab, 2, S, OFF_TAB)
TILE_FN(t1u_tab, 1, U, OFF_TAB)
TILE_FN(t1s_tab, 1, S, OFF_TAB)
#undef RS
#define RS 4
TILE_FN(t2u_pk, 2, U, OFF_PK)
TILE_FN(t2s_pk, 2, S, OFF_PK)
TILE_FN(t1u_pk, 1, U, OFF_PK)
TILE_FN(t1s_pk, 1, S, OFF_PK)
#undef RS

typedef void (*tile_fn)(int64_t, const int64_t *, const uint8_t *, int64_t, const uint8_t *, int32_t *, int64_t);
enum { T_LIN, T_TAB, T_PK };
/* [T_*][signed A][two vectors] */
static const tile_fn tiles[3][2][2] = {{{t1u_lin, t2u_lin}, {t1s_lin, t2s_lin}},
                                       {{t1u_tab, t2u_tab}, {t1s_tab, t2s_tab}},
                                       {{t1u_pk, t2u_pk}, {t1s_pk, t2s_pk}}};

/* Rows [0, mb) of A (row m at x + m*xs, dword kk at + 4*kk or + koff[kk];
 * or packed: group of MR rows g at x + g*xs) times columns [n0, n0 + nbp)
 * of packed B into acc. */
static void run_tiles(const qk_i8gemm *g, int64_t mb, const uint8_t *x, int64_t xs, const int64_t *koff, int pk,
                      int64_t n0, int64_t nbp, int32_t *acc, int64_t ldacc, uint8_t *kws)
{
    const int64_t K4 = g->Kp / 4, full = pk ? qk_i8_roundup(mb, MR) : mb / MR * MR;
    const int sgn = g->a_type == QK_I8;
    const int64_t gs = pk ? xs : MR * xs; /* step between groups of MR rows */
    const int kind = pk ? T_PK : koff ? T_TAB : T_LIN;
    int32_t tail[MR * NR];
    if (full < mb) { /* the last rows, gathered: [MR][Kp], rows past mb zero */
        memset(kws, 0, (size_t)(MR * g->Kp));
        for (int64_t m = full; m < mb; m++) {
            uint8_t *d = kws + (m - full) * g->Kp;
            if (koff)
                for (int64_t kk = 0; kk < K4; kk++)
                    memcpy(d + 4 * kk, x + m * xs + koff[kk], 4);
            else
                memcpy(d, x + m * xs, (size_t)g->Kp);
        }
    }
    for (int64_t j = 0; j < nbp; j += NR) {
        const uint8_t *bp = (const uint8_t *)g->bpack + ((n0 + j) / NR) * K4 * NR * 4;
        const int two = g->N - (n0 + j) > 16, w = two ? NR : 16;
        for (int64_t m = 0; m < full; m += MR) {
            int64_t mr = mb - m < MR ? mb - m : MR;
            if (mr == MR) {
                tiles[kind][sgn][two](K4, koff, x + (m / MR) * gs, xs, bp, acc + m * ldacc + j, ldacc);
                continue;
            }
            tiles[T_PK][sgn][two](K4, NULL, x + (m / MR) * gs, 4, bp, tail, NR); /* zero rows past mb */
            for (int64_t r = 0; r < mr; r++)
                memcpy(acc + (m + r) * ldacc + j, tail + r * NR, (size_t)w * 4);
        }
        if (full < mb) {
            tiles[T_LIN][sgn][two](K4, NULL, kws, g->Kp, bp, tail, NR);
            for (int64_t m = full; m < mb; m++)
                memcpy(acc + m * ldacc + j, tail + (m - full) * NR, (size_t)w * 4);
        }
    }
}

void qk_i8_gemm__vnni(const qk_i8gemm *g, int64_t mb, const void *Ap, int64_t ldap, int64_t n0, int64_t nbp,
                      int32_t *acc, int64_t ldacc, void *kws)
{
    run_tiles(g, mb, Ap, ldap, NULL, packed(g), n0, nbp, acc, ldacc, kws);
}

void qk_i8_gemm_koff__vnni(const qk_i8gemm *g, int64_t mb, const uint8_t *X, int64_t xs, const int64_t *koff,
                           int64_t n0, int64_t nbp, int32_t *acc, int64_t ldacc, void *kws)
{
    run_tiles(g, mb, X, xs, koff, 0, n0, nbp, acc, ldacc, kws);
}

/* ---- short K with the output stage in registers (i8gemm.h, small) ----
 * Row by row: the row's K bytes broadcast as K4 dwords (the last one
 * loaded under a mask, so no byte past the row is read; or, with koff, the
 * dwords at koff[kk] from the row's start: K is then a multiple of 4), against B's K4 x
 * nv vectors held in registers (packed B: panel of 32 columns, [K4][32][4]
 * bytes, zero past K); the accumulator starts at colconst (wrapping adds
 * commute with the epilogue's); weights with a zero point (row sums) add a
 * dot product of the row with ones, its sum times rowcoef subtracted; then
 * the epilogue's arithmetic and one 64-byte store per row, as
 * qk_i8_epilogue__avx512. */

/* B vector (kk, v) of the column group at n (n a multiple of 64). */
QK_EPI_INLINE __m512i sm_b(const qk_i8gemm *g, int64_t n, int64_t K4, int64_t kk, int v)
{
    const uint8_t *bp = (const uint8_t *)g->bpack + ((n / NR) + v / 2) * K4 * NR * 4;
    return _mm512_loadu_si512(bp + kk * NR * 4 + (v % 2) * 64);
}

QK_EPI_INLINE void sm_run(const qk_i8gemm *g, int fp, int K4, int nv, int64_t mb, const uint8_t *A, int64_t lda,
                          const int64_t *koff, int64_t n, int64_t w, uint8_t *C, int64_t ldc)
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
    int64_t off[4];
    for (int kk = 0; kk < K4; kk++) {
        off[kk] = koff ? koff[kk] : 4 * kk;
        for (int v = 0; v < nv; v++)
            b[kk][v] = sm_b(g, n, K4, kk, v);
    }
    const __m512i z = _mm512_setzero_si512(), ones = _mm512_set1_epi8(1);
    const int rsum = g->need_rowsum; /* the row's byte sum in every lane, as one more dot product */
    for (int64_t m = 0; m < mb; m++) {
        const uint8_t *a = A + m * lda;
        __m512i t0 = c0.cc, t1 = c1.cc, t2 = c2.cc, t3 = c3.cc, rs = z;
        for (int kk = 0; kk < K4; kk++) {
            __m512i av;
            if (kk < K4 - 1 || tail == 4) {
                int32_t d;
                memcpy(&d, a + off[kk], 4);
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
            if (rsum)
                rs = _mm512_dpbusd_epi32(rs, av, ones);
        }
        if (rsum) { /* T = acc - rowcoef*rowsum + colconst */
            t0 = _mm512_sub_epi32(t0, _mm512_mullo_epi32(c0.rc, rs));
            t1 = nv > 1 ? _mm512_sub_epi32(t1, _mm512_mullo_epi32(c1.rc, rs)) : t1;
            t2 = nv > 2 ? _mm512_sub_epi32(t2, _mm512_mullo_epi32(c2.rc, rs)) : t2;
            t3 = nv > 3 ? _mm512_sub_epi32(t3, _mm512_mullo_epi32(c3.rc, rs)) : t3;
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

typedef void (*sm_fn)(const qk_i8gemm *, int64_t, const uint8_t *, int64_t, const int64_t *, int64_t, int64_t,
                      uint8_t *, int64_t);
#define SM_FN(fp, K4, nv)                                                                                      \
    static void sm_##fp##_##K4##_##nv(const qk_i8gemm *g, int64_t mb, const uint8_t *A, int64_t lda,            \
                                      const int64_t *koff, int64_t n, int64_t w, uint8_t *C, int64_t ldc)       \
    {                                                                                                           \
        sm_run(g, fp, K4, nv, mb, A, lda, koff, n, w, C, ldc);                                                  \
    }
#define SM_NV(fp, K4) SM_FN(fp, K4, 1) SM_FN(fp, K4, 2) SM_FN(fp, K4, 3) SM_FN(fp, K4, 4)
#define SM_K(fp) SM_NV(fp, 1) SM_NV(fp, 2) SM_NV(fp, 3) SM_NV(fp, 4)
SM_K(0)
SM_K(1)
#define SM_REF_NV(fp, K4) sm_##fp##_##K4##_1, sm_##fp##_##K4##_2, sm_##fp##_##K4##_3, sm_##fp##_##K4##_4
#define SM_REF_K(fp) SM_REF_NV(fp, 1), SM_REF_NV(fp, 2), SM_REF_NV(fp, 3), SM_REF_NV(fp, 4)
static const sm_fn sm_fns[2][16] = { { SM_REF_K(0) }, { SM_REF_K(1) } };

void qk_i8_gemm_small__vnni(const qk_i8gemm *g, int64_t mb, const uint8_t *A, int64_t lda, const int64_t *koff,
                            int64_t n0, int64_t n1, uint8_t *C, int64_t ldc)
{
    int64_t K4 = (g->K + 3) / 4;
    for (int64_t n = n0; n < n1; n += 64) {
        int64_t w = n1 - n < 64 ? n1 - n : 64;
        sm_fns[g->mode == QK_RQ_FP32][(K4 - 1) * 4 + (w + 15) / 16 - 1](g, mb, A, lda, koff, n, w, C + (n - n0), ldc);
    }
}

/* ---- pixel pairs: at most 16 output channels (i8gemm.h, qk_i8_gemm_pairs__vnni) ----
 * One 8-byte broadcast carries dword kk of two consecutive pixels; lane l
 * of vector v is channel 8v + l/2 of pixel l % 2, so 12 pairs x 2 vectors
 * fill the 24 accumulators with one broadcast per two vpdpbusd (the 12x16
 * tile has one per vpdpbusd). The stores de-interleave the lanes into the
 * accumulator rows of the ordinary tile. */
static inline int64_t ld64(const uint8_t *p)
{
    int64_t v;
    memcpy(&v, p, 8);
    return v;
}

#define PAIRS12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define PAIRS6(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define P_DECL(r) __m512i p##r##0 = _mm512_setzero_si512(), p##r##1 = _mm512_setzero_si512();
#define P_STEP(r)                                                                                    \
    av = _mm512_set1_epi64(ld64(q + r * xs));                                                        \
    p##r##0 = _mm512_dpbusd_epi32(p##r##0, av, b0);                                                  \
    p##r##1 = _mm512_dpbusd_epi32(p##r##1, av, b1);
#define P_STORE(r)                                                                                   \
    _mm512_storeu_si512(c + (2 * r) * ldc, p##r##0);                                                 \
    _mm512_storeu_si512(c + (2 * r + 1) * ldc, p##r##1);
#define PAIR_FN(name, ROWS)                                                                          \
    __attribute__((noinline)) static void name(int64_t K4, const int64_t *koff, const uint8_t *x, int64_t xs, const uint8_t *bp, \
                     int32_t *c, int64_t ldc)                                                        \
    {                                                                                                \
        ROWS(P_DECL)                                                                                 \
        for (int64_t kk = 0; kk < K4; kk++, bp += 128) {                                             \
            const uint8_t *q = x + koff[kk];                                                         \
            __m512i b0 = _mm512_load_si512(bp), b1 = _mm512_load_si512(bp + 64), av;                 \
            ROWS(P_STEP)                                                                             \
        }                                                                                            \
        ROWS(P_STORE)                                                                                \
    }
PAIR_FN(pairs12, PAIRS12)
PAIR_FN(pairs6, PAIRS6)

/* Rows 2r, 2r+1 of c hold pair r's vectors as computed: de-interleave them in place. */
static void pairs_unzip(int64_t np, int32_t *c, int64_t ldc)
{
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for (int64_t r = 0; r < np; r++) {
        __m512i v0 = _mm512_loadu_si512(c + 2 * r * ldc), v1 = _mm512_loadu_si512(c + (2 * r + 1) * ldc);
        _mm512_storeu_si512(c + 2 * r * ldc, _mm512_permutex2var_epi32(v0, ev, v1));
        _mm512_storeu_si512(c + (2 * r + 1) * ldc, _mm512_permutex2var_epi32(v0, od, v1));
    }
}

void qk_i8_pairs_pack__vnni(const qk_i8gemm *g, uint8_t *bp)
{
    const int64_t K4 = g->Kp / 4;
    const uint8_t *src = (const uint8_t *)g->bpack; /* panel 0: [K4][32][4] */
    for (int64_t kk = 0; kk < K4; kk++)
        for (int v = 0; v < 2; v++)
            for (int l = 0; l < 16; l++)
                memcpy(bp + (kk * 2 + v) * 64 + 4 * l, src + (kk * NR + 8 * v + l / 2) * 4, 4);
}

void qk_i8_gemm_pairs__vnni(const qk_i8gemm *g, const uint8_t *bp, int64_t mb, const uint8_t *X, int64_t xs,
                            const int64_t *koff, int32_t *acc, int64_t ldacc)
{
    const int64_t K4 = g->Kp / 4;
    int32_t tail[12 * 16];
    int64_t m = 0;
    for (; m + 24 <= mb; m += 24) {
        pairs12(K4, koff, X + (m / 2) * xs, xs, bp, acc + m * ldacc, ldacc);
        pairs_unzip(12, acc + m * ldacc, ldacc);
    }
    for (; m < mb; m += 12) {
        if (m + 12 <= mb) {
            pairs6(K4, koff, X + (m / 2) * xs, xs, bp, acc + m * ldacc, ldacc);
            pairs_unzip(6, acc + m * ldacc, ldacc);
            continue;
        }
        pairs6(K4, koff, X + (m / 2) * xs, xs, bp, tail, 16);
        pairs_unzip(6, tail, 16);
        for (int64_t r = 0; r < mb - m; r++)
            memcpy(acc + (m + r) * ldacc, tail + r * 16, 64);
    }
}
