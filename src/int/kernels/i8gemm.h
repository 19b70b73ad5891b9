/* Internal: the int8 GEMM object, the kernel table entry type and the
 * per-ISA kernel functions (qk_i8_gemm__<isa>.c). Not a public header.
 *
 * Data flow of one task (a block of mb rows x nb columns):
 *   rowsum (if any rowcoef != 0) -> prepare_a (convert/pad A rows) ->
 *   compute (raw sums into the int32 tile acc[mb][nb]) ->
 *   epilogue (T = acc - rowcoef[n]*rowsum[m] + colconst[n], requantize, store).
 *
 * raw = sum_{k<Kp} A'[m,k] * B'[k,n] where B' is the packed weights:
 *   Bs = B - offB (offB = 128 for u8 weights, else 0) as int8, and for the
 *   VNNI kernel with s8 activations Bs + 128 as uint8 (vpdpbusd takes the
 *   activations as its signed operand), which adds 128*rowsum(A) (delta = 1).
 * rowcoef[n] = zb_s[n] + 128*delta, zb_s = b_zero - offB;
 * colconst[n] = bias[n] + K*za*zb_s[n] - za*colsum(Bs)[n]   (mod 2^32). */
#ifndef QK_INT_I8GEMM_H
#define QK_INT_I8GEMM_H

#include "qkit/int.h"

enum { QK_PACK_NK = 0, QK_PACK_I16 = 1, QK_PACK_K4 = 2 };

typedef struct qk_i8_kernel qk_i8_kernel;

struct qk_i8gemm {
    qk_dtype a_type, b_type, out_type;
    int64_t K, N, Kp, Np;      /* K padded to kernel->kalign, N to kernel->nr */
    const qk_i8_kernel *k;
    int has_b;
    int b_u8;                  /* packed B holds Bs + 128 as uint8 (delta = 1) */
    void *bpack;
    int32_t *colsum, *rowcoef, *colconst; /* [Np] */
    int need_rowsum;
    int32_t a_zero;
    int nb_zero;
    qk_rq_mode mode;
    int rq_n;
    int32_t *mult, *shift;     /* [Np], expanded per column */
    int32_t *lsh, *rsh;        /* GEMMLOWP: max(e,0), max(-e,0) */
    float *scale;              /* [Np] */
    int32_t zo, qmin, qmax;
    int64_t mb, nb;            /* task block: rows (multiple of mr), columns (multiple of nr) */
    size_t off_rs, off_kern, off_out, ws_bytes; /* workspace layout; acc tile at 0 */
};

struct qk_i8_kernel {
    qk_i8_kernel_info info;
    int layout;                /* QK_PACK_* */
    int kalign;                /* Kp multiple of this */
    int b_u8_for_s8a;          /* K4 layout: store Bs + 128 when A is s8 */
    int64_t mb;                /* rows per task */
    size_t (*kern_ws)(const qk_i8gemm *g);
    void (*rowsum)(const qk_i8gemm *g, int64_t mb, const void *A, int64_t lda, int32_t *rs);
    const void *(*prepare_a)(const qk_i8gemm *g, int64_t mb, const void *A, int64_t lda, void *kws,
                             int64_t *ldap);
    void (*compute)(const qk_i8gemm *g, int64_t mb, const void *Ap, int64_t ldap, int64_t n0, int64_t nbp,
                    int32_t *acc, int64_t ldacc, void *kws);
    /* Writes rows [0,mb) x columns [n0, n0+nb) of type out_type to out + m*ldo + j. */
    void (*epilogue)(const qk_i8gemm *g, int64_t mb, int64_t n0, int64_t nb, const int32_t *acc,
                     int64_t ldacc, const int32_t *rs, void *out, int64_t ldo);
    /* Optional (AMX, VNNI): compute with A read in place, row m at X + m*xs
     * and its K chunk c of kalign bytes (64 for AMX, 4 for VNNI) at
     * X + m*xs + koff[c] (rows may overlap: an implicit im2col); AMX reads
     * rows past mb up to the next multiple of 32 too (their sums are
     * dropped), VNNI none. NULL where the kernel lacks it. */
    void (*compute_koff)(const qk_i8gemm *g, int64_t mb, const uint8_t *X, int64_t xs, const int64_t *koff,
                         int64_t n0, int64_t nbp, int32_t *acc, int64_t ldacc, void *kws);
    /* Optional (VNNI): a short K (g->Kp <= QK_I8_SMALL_K) in one pass, the
     * output stage applied in registers (row sums, if any, taken there), for uint8 A and
     * an int8/uint8 FP32 or GEMMLOWP output (qk_i8_small_ok); A rows read
     * in place, row m at A + m*lda, K bytes each (koff NULL) or its dword
     * kk at A + m*lda + koff[kk] (an implicit im2col; K a multiple of 4);
     * rows [0, mb) x columns [n0, n1) (n0 a multiple of 64) to
     * C + m*ldc + (n - n0). NULL where the kernel lacks it. */
    void (*small)(const qk_i8gemm *g, int64_t mb, const uint8_t *A, int64_t lda, const int64_t *koff, int64_t n0,
                  int64_t n1, uint8_t *C, int64_t ldc);
};
#define QK_I8_SMALL_K 16
static inline int qk_i8_small_ok(const qk_i8gemm *g)
{
    return g->k->small && g->Kp <= QK_I8_SMALL_K && g->a_type == QK_U8 && !g->b_u8 &&
           (g->out_type == QK_U8 || g->out_type == QK_I8) && (g->mode == QK_RQ_FP32 || g->mode == QK_RQ_GEMMLOWP);
}

/* A block of R output rows of an implicit-im2col convolution (i8conv_implicit.c):
 * acc rows r*rowlen + [0, valid) are output pixels, the rest (pad columns)
 * are computed and dropped; columns [n0, n1); output row r's pixels go to
 * C + r*valid*ldc_m (ldc_n as in qk_i8gemm_block). rs: the rows' sums
 * when g->need_rowsum (over the bytes read), else NULL. Needs
 * g->k->compute_koff; R*rowlen <= g->mb (<= QK_I8_IMP_MAXROWS). */
#define QK_I8_IMP_MAXROWS 128
void qk_i8gemm_block_rows(const qk_i8gemm *g, int64_t R, int64_t rowlen, int64_t valid, const uint8_t *X,
                          int64_t xs, const int64_t *koff, const int32_t *rs, int64_t n0, int64_t n1, void *C,
                          int64_t ldc_m, int64_t ldc_n, void *ws);

/* VNNI, at most 16 columns, uint8 A (not b_u8): pixel pairs. X holds A
 * as pairs of rows, pair p's dword kk at X + p*xs + koff[kk] as 8 bytes
 * (row 2p's dword, then row 2p+1's); bp the weights repacked by
 * qk_i8_pairs_pack__vnni (QK_I8_PAIRS_BYTES(g)); raw sums of rows [0, mb)
 * into acc[m][0..15] (ldacc >= 16), as compute_koff would. Pairs up to
 * (mb + 11)/12*6 are read. */
#define QK_I8_PAIRS_BYTES(g) ((size_t)((g)->Kp / 4) * 128)
void qk_i8_pairs_pack__vnni(const qk_i8gemm *g, uint8_t *bp);
void qk_i8_gemm_pairs__vnni(const qk_i8gemm *g, const uint8_t *bp, int64_t mb, const uint8_t *X, int64_t xs,
                            const int64_t *koff, int32_t *acc, int64_t ldacc);
/* The output stage of R output rows of rowlen accumulator rows each (the
 * first valid of them stored), as qk_i8gemm_block_rows after its compute. */
void qk_i8gemm_store_rows(const qk_i8gemm *g, int64_t R, int64_t rowlen, int64_t valid, const int32_t *acc,
                          int64_t ldacc, const int32_t *rs, int64_t n0, int64_t n1, void *C, int64_t ldc_m,
                          int64_t ldc_n, void *ws);

/* Generic scalar pieces (i8gemm.c), usable by every kernel. */
void qk_i8_rowsum_ref(const qk_i8gemm *g, int64_t mb, const void *A, int64_t lda, int32_t *rs);
void qk_i8_epilogue_ref(const qk_i8gemm *g, int64_t mb, int64_t n0, int64_t nb, const int32_t *acc,
                        int64_t ldacc, const int32_t *rs, void *out, int64_t ldo);
/* One output channel's stage applied to a run of accumulators (depthwise
 * convolution): y[i] = requant(acc[i]) of type out_type. */
typedef struct qk_i8_rowq {
    qk_rq_mode mode;
    qk_dtype out_type;
    int32_t mult, shift, lsh, rsh;
    float scale;
    int32_t zo, qmin, qmax;
} qk_i8_rowq;
void qk_i8_requant_row_ref(const qk_i8_rowq *q, const int32_t *acc, int64_t n, void *out);
void qk_i8_requant_row__avx512(const qk_i8_rowq *q, const int32_t *acc, int64_t n, void *out);
/* One depthwise plane: acc[oh*OW + ow] = bias + sum over taps inside the
 * image of w[a*kw+b] * (x[ih*W + iw] - zx); lo[b]..hi[b] are the output
 * columns whose tap b is inside the image (precomputed). Wrapping uint32. */
typedef struct qk_i8_dwplane {
    const uint8_t *x;
    int sgn;                   /* x is int8 */
    int32_t zx, bias;
    const int32_t *w;          /* [kh*kw], zero point removed */
    int64_t H, W, OH, OW, kh, kw, sh, sw, dh, dw, pt, pl;
    const int64_t *lo, *hi;
    uint32_t *acc;
} qk_i8_dwplane;
void qk_i8_dw_plane_ref(const qk_i8_dwplane *p);
void qk_i8_dw_plane__avx512(const qk_i8_dwplane *p);

/* Tables of the VNNI NHWC depthwise kernel (qk_i8_dw__vnni.c). A chunk is
 * 64 consecutive output bytes; its byte q sits in accumulator j = (q%16)/4,
 * int32 lane i = 4*(q/16) + q%4 (the order two rounds of in-lane unpacks
 * leave). Each chunk entry (stride bytes, 64-aligned): nq quads of 4 x 64
 * bytes of weights (lane i of vector j: the 4 taps 4*qd.. of q's channel,
 * 0 past the last tap or channel), then int32 [4][16] bias (with
 * -zx*sum(w) folded in), [4][16] multiplier or float scale, [4][16] shift,
 * all in that lane order. flat_n chunks for channels (64k + q) % C
 * (flat_n = lcm(64, C)/64; 0: no flat table), then pix_n = ceil(C/64)
 * chunks for channels 64k + q. kt taps: the kernel's kh*kw, or twice that
 * when weights outside [-128, 127] (uint8 weights with a zero point) are
 * split into two int8 halves: tap kk + t reads the input bytes of tap t. */
typedef struct qk_i8_dwq4 {
    uint8_t *tab;
    int64_t nq, flat_n, pix_n, stride, kt;
    int64_t rows;              /* 0, or kh: row quads (kw <= 4): quad qd holds kernel row qd % kh,
                                * its taps (a, 0..3) in the four bytes, zero weights past kw
                                * (qk_i8_dw_nhwc_rows__vnni) */
} qk_i8_dwq4;
/* Builds q4 from w [C][kk] (kk = kt taps; zero point removed, all in [-128, 127]),
 * bias/mult/shift/scale [C], x zero point zxu (in the unsigned code:
 * zx + 128 for int8 input); fp32: scales instead of multipliers. Frees
 * an earlier table. */
qk_status qk_i8_dwq4_build(qk_i8_dwq4 *q4, int64_t C, int64_t kk, const int32_t *w, const int32_t *bias,
                           const int32_t *mult, const int32_t *shift, const float *scale, int fp32, int32_t zxu);
void qk_i8_dwq4_free(qk_i8_dwq4 *q4);

/* One output row of an NHWC depthwise convolution (channel multiplier 1):
 * for ow in [0, OW), c in [0, C):
 *   acc = bias[c] + sum over taps (a, b) inside the image of
 *         wt[(a*kw + b)*C + c] * (x[((ih0 + a*dh)*W + ow*sw - pl + b*dw)*C + c] - zx)
 *   (wrapping uint32), y[ow*C + c] = qk_requant_value(mode, acc, mult[c],
 *   shift[c], scale[c], zo, qmin, qmax) stored as out_type.
 * x: one image [H][W][C]; wt: weights with the zero point removed, [kh*kw][C]. */
typedef struct qk_i8_dwrow {
    const uint8_t *x;
    int sgn;                   /* x is int8 */
    int32_t zx;
    int64_t C, H, W, OW, kh, kw, sw, dh, dw, pl, ih0;
    const int32_t *wt, *bias, *mult, *shift;
    const int32_t *wp;         /* wt as int16 pairs of taps (2i, 2i+1) per channel: [(kh*kw+1)/2][C] */
    const float *scale;
    qk_rq_mode mode;
    qk_dtype out_type;
    int32_t zo, qmin, qmax;
    void *y;                   /* [OW][C] of out_type */
    const qk_i8_dwq4 *q4;      /* VNNI tables, NULL: none */
    const uint8_t *zrow;       /* VNNI: >= W*C + 64 bytes, each the zero point's code (int8 or uint8) */
    int64_t sh, nrows;         /* row-quad kernel: output rows nrows, the first at input row ih0, */
    uint8_t *x4;               /* sh apart; y their first; scratch of qk_i8_dw_rows_bytes (64-aligned) */
} qk_i8_dwrow;
/* The AVX-512 row handles up to this many taps (kh*kw); more go to the reference. */
#define QK_I8_DW_MAXTAPS 64
void qk_i8_dw_nhwc_row_ref(const qk_i8_dwrow *p);
/* The reference's step for output column ow, channel c (the AVX2 row's
 * channels past the last multiple of 8). */
void qk_i8_dw_nhwc_one(const qk_i8_dwrow *p, int64_t ow, int64_t c);
/* The rows' tap offsets for output column ow: off[a*kw + b] = the byte
 * offset of tap (a, b)'s pixel, -1 outside the image; off[kh*kw] = -1 (the
 * partner of an odd last tap, weight 0). */
void qk_i8_dw_tap_offsets(const qk_i8_dwrow *p, int64_t ow, int64_t *off);
/* 8 channels per step with vpmaddwd (AVX2); the same codes. */
void qk_i8_dw_nhwc_row__avx2(const qk_i8_dwrow *p);
void qk_i8_dw_nhwc_row__avx512(const qk_i8_dwrow *p);
/* The same with q4 (output types uint8/int8, GEMMLOWP or FP32 stage;
 * anything else goes to the AVX-512 row). */
void qk_i8_dw_nhwc_row__vnni(const qk_i8_dwrow *p);
/* p->nrows output rows with a row-quad table (q4->rows): each input row's
 * kernel-row quads (its bytes at columns iw, iw + dw, .. interleaved per
 * channel) are built once into p->x4 and read by every output row that
 * uses that input row, so the interleaving costs once per input row
 * instead of once per kernel row and output row. */
void qk_i8_dw_nhwc_rows__vnni(const qk_i8_dwrow *p);
/* Its scratch for C channels, OW output columns, a ring of nin = (kh - 1)*dh + 1 input rows. */
size_t qk_i8_dw_rows_bytes(int64_t C, int64_t OW, int64_t nin);

/* Copy mb rows of K bytes into a zero-padded [mb][Kp] buffer. */
void qk_i8_pad_rows(const qk_i8gemm *g, int64_t mb, const void *A, int64_t lda, uint8_t *dst);

/* One block of rows through every column chunk of [n0, n1): rowsum, pack A,
 * compute, epilogue; output (m, n) to C[m*ldc_m + (n-n0)*ldc_n] (C is the
 * element (0, n0)). ws: qk_i8gemm_ws_bytes(g) bytes. Used by run and conv. */
void qk_i8gemm_block(const qk_i8gemm *g, int64_t mb, const void *A, int64_t lda, int64_t n0, int64_t n1,
                     void *C, int64_t ldc_m, int64_t ldc_n, void *ws);

/* Per-ISA entry points (files qk_i8_gemm__<isa>.c). */
#define QK_I8_DECL(isa)                                                                                   \
    size_t qk_i8_gemm_ws__##isa(const qk_i8gemm *g);                                                     \
    const void *qk_i8_gemm_prepare__##isa(const qk_i8gemm *g, int64_t mb, const void *A, int64_t lda,    \
                                          void *kws, int64_t *ldap);                                     \
    void qk_i8_gemm__##isa(const qk_i8gemm *g, int64_t mb, const void *Ap, int64_t ldap, int64_t n0,     \
                           int64_t nbp, int32_t *acc, int64_t ldacc, void *kws);
QK_I8_DECL(avx2)
QK_I8_DECL(avxvnni)
QK_I8_DECL(avx512)
QK_I8_DECL(vnni)
QK_I8_DECL(amx)
QK_I8_DECL(amxemu)
void qk_i8_gemm_small__vnni(const qk_i8gemm *g, int64_t mb, const uint8_t *A, int64_t lda, const int64_t *koff,
                            int64_t n0, int64_t n1, uint8_t *C, int64_t ldc);
void qk_i8_gemm_koff__vnni(const qk_i8gemm *g, int64_t mb, const uint8_t *X, int64_t xs, const int64_t *koff,
                           int64_t n0, int64_t nbp, int32_t *acc, int64_t ldacc, void *kws);
void qk_i8_gemm_koff__amx(const qk_i8gemm *g, int64_t mb, const uint8_t *X, int64_t xs, const int64_t *koff,
                          int64_t n0, int64_t nbp, int32_t *acc, int64_t ldacc, void *kws);
void qk_i8_gemm_koff__amxemu(const qk_i8gemm *g, int64_t mb, const uint8_t *X, int64_t xs, const int64_t *koff,
                             int64_t n0, int64_t nbp, int32_t *acc, int64_t ldacc, void *kws);
void qk_i8_rowsum__avx2(const qk_i8gemm *g, int64_t mb, const void *A, int64_t lda, int32_t *rs);
void qk_i8_rowsum__avx512(const qk_i8gemm *g, int64_t mb, const void *A, int64_t lda, int32_t *rs);
void qk_i8_epilogue__avx2(const qk_i8gemm *g, int64_t mb, int64_t n0, int64_t nb, const int32_t *acc,
                          int64_t ldacc, const int32_t *rs, void *out, int64_t ldo);
void qk_i8_epilogue__avx512(const qk_i8gemm *g, int64_t mb, int64_t n0, int64_t nb, const int32_t *acc,
                            int64_t ldacc, const int32_t *rs, void *out, int64_t ldo);

static inline int64_t qk_i8_roundup(int64_t x, int64_t a) { return (x + a - 1) / a * a; }
static inline size_t qk_i8_align64(size_t x) { return (x + 63) & ~(size_t)63; }

#endif
