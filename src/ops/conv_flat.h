/* Direct convolution on "padded flat" planes, the kernel of Conv's FLAT path
 * (stride 1, no dilation, output width = input width, group 1).
 *
 * An input plane is stored padded: Hp rows of Wp = W + kw - 1 floats, the
 * pads zero, then zero slack. Output position (oh, ow) is computed at flat
 * index f = oh * Wp + ow, and the input it reads for kernel tap (i, j) sits
 * at f + i * Wp + j: every tap is one contiguous, shifted run of the plane,
 * so no im2col buffer is built. Positions with ow >= OW (the pad columns)
 * and f >= F are computed too and ignored by the caller. Conv puts several
 * samples' planes side by side in one row (a strip, qk_cflat_strip__avx512:
 * the pad columns between them shared), so Wp is then the strip's width.
 *
 *   y[m * ldy + f] = b[m] (0 if b is NULL)
 *                    + sum_c sum_{t<kk} w[m][c][t] * x[c * ldx + f + off[t]]
 *
 * for m < M, f < F, summed over c, then t (fixed order: results do not
 * depend on threads). For a stride-1 kernel kh x kw, tap t = i*kw + j has
 * off[t] = i*Wp + j; a stride-2 conv stores each channel as its four
 * even/odd row/column phases and a tap reads the phase of its parity (see
 * conv.c). The weights go through qk_cflat_pack first. The kernel reads x
 * up to c * ldx + qk_cflat_fup(F) + max(off) and writes y up to
 * m * ldy + qk_cflat_fup(F). */
#ifndef QKIT_OPS_CONV_FLAT_H
#define QKIT_OPS_CONV_FLAT_H

#include <stdint.h>

#define QK_CFLAT_MB 8  /* output channels per register block */
#define QK_CFLAT_FB 48 /* positions per register block (3 x 16 lanes) */
#define QK_CFLAT_MAXTAP 9 /* qk_cflat_dw: taps per call at most */
#define QK_CFLAT_MAXK 49  /* Conv's FLAT path: kernel taps at most (7x7) */

static inline int64_t qk_cflat_fup(int64_t F) { return (F + QK_CFLAT_FB - 1) / QK_CFLAT_FB * QK_CFLAT_FB; }

/* floats of the packed weights: [ceil(M/8)][C][kk][8], zero-filled past M */
static inline int64_t qk_cflat_packed_floats(int64_t M, int64_t C, int64_t kk)
{
    return (M + QK_CFLAT_MB - 1) / QK_CFLAT_MB * QK_CFLAT_MB * C * kk;
}

/* w [M][C][kk] (kk = kh * kw) -> wpk */
void qk_cflat_pack(const float *w, int64_t M, int64_t C, int64_t kk, float *wpk);

/* the dX weights of a conv with weights w [M][C][kh][kw]: a conv from M to C
 * channels with w'[c][m][i][j] = w[m][c][kh-1-i][kw-1-j], packed */
void qk_cflat_pack_flip(const float *w, int64_t M, int64_t C, int kh, int kw, float *wpk);

void qk_cflat_fwd(const float *wpk, int64_t M, int64_t C, int kk, const int64_t *off, const float *x, int64_t ldx,
                  int64_t F, const float *b, float *y, int64_t ldy);

/* Weight gradient over K positions (K a multiple of 16):
 *   dw[(m*C + c)*dws + t] (+)= sum_{f<K} dy[m*ldd + f] * x[c*ldx + f + off[t]]
 * (set when !accumulate). dy must be zero wherever its position is not a
 * real output (pad columns, the end of a plane). */
void qk_cflat_dw(const float *dy, int64_t ldd, int64_t M, const float *x, int64_t ldx, int64_t C, int64_t K,
                 int ntap, const int64_t *off, float *dw, int64_t dws, int accumulate);

/* the two implementations of each (the functions above pick one from the CPU) */
void qk_cflat_dw_ref(const float *dy, int64_t ldd, int64_t M, const float *x, int64_t ldx, int64_t C, int64_t K,
                     int ntap, const int64_t *off, float *dw, int64_t dws, int accumulate);
void qk_cflat_dw__avx512(const float *dy, int64_t ldd, int64_t M, const float *x, int64_t ldx, int64_t C,
                         int64_t K, int ntap, const int64_t *off, float *dw, int64_t dws, int accumulate);
void qk_cflat_fwd_ref(const float *wpk, int64_t M, int64_t C, int kk, const int64_t *off, const float *x,
                      int64_t ldx, int64_t F, const float *b, float *y, int64_t ldy);
void qk_cflat_fwd__avx512(const float *wpk, int64_t M, int64_t C, int kk, const int64_t *off, const float *x,
                          int64_t ldx, int64_t F, const float *b, float *y, int64_t ldy);

/* Copies into and out of the padded layout. AVX-512 only: Conv takes the
 * FLAT path only on a CPU that has it. */

/* One plane: h rows of w floats (src, rows w apart) into dst, rows of Wq
 * floats: pt zero rows, then per row pl zeros, the w values and zeros up
 * to the next row's values; zeros from the last value to dst + pq. */
void qk_cflat_pad__avx512(float *dst, const float *src, int64_t h, int64_t w, int64_t Wq, int64_t pt, int64_t pl,
                          int64_t pq);

/* nb planes side by side in one strip (stride 1): plane k (h rows of w
 * floats at src + k*sn) at columns gap + k*(w + gap) of rows pt.. of dst,
 * rows of Wq = gap + nb*(w + gap) floats; zeros everywhere else up to
 * dst + ld (pt rows above, the gap columns, the rows below). */
void qk_cflat_strip__avx512(float *dst, const float *src, int64_t sn, int64_t nb, int64_t h, int64_t w, int64_t gap,
                            int64_t pt, int64_t ld);

/* The stride-2 phases of one plane (H x W, padded by pt rows and pl
 * columns), all four or (nph 1) phase 0 only: phase ph = 2p + q at dst +
 * ph * ps, Hq rows of Wq floats, element (u, v) = padded plane at row
 * 2u + p, column 2v + q (zero outside the image), zeros after the rows up
 * to pq. */
void qk_cflat_phases__avx512(float *dst, int64_t ps, int nph, const float *src, int64_t H, int64_t W, int64_t Hq,
                             int64_t Wq, int64_t pt, int64_t pl, int64_t pq);

/* What qk_cflat_unpad does to each value on the way out. */
enum { QK_CFLAT_COPY, QK_CFLAT_ADD, QK_CFLAT_AFFINE, QK_CFLAT_RELU, QK_CFLAT_CLIP };
typedef struct qk_cflat_epi {
    int op;              /* QK_CFLAT_* */
    float a, b, lo, hi;  /* AFFINE, RELU, CLIP: a*v + b (product then sum, two roundings), then max(., 0) or the clamp */
} qk_cflat_epi;

/* h rows of w floats from ys (rows ld apart) to the dense y (rows w apart):
 * y = v (COPY), y += v (ADD), y = a*v + b (AFFINE), then relu (RELU) or
 * clamped to [lo, hi] (CLIP), bit for bit the fkern row kernels. */
void qk_cflat_unpad__avx512(float *y, const float *ys, int64_t h, int64_t w, int64_t ld, const qk_cflat_epi *e);

/* dst[2*o] += src[o] for o < n (stride 2's col2im rows), odd elements untouched */
void qk_cflat_add_s2__avx512(float *dst, const float *src, int64_t n);

#endif
