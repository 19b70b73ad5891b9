/* Depthwise 2-D convolution straight from the planes, AVX-512 (conv_kern.h;
 * conv_dw.c calls it when the CPU has AVX-512 and qk_dw_direct_ok holds:
 * equal strides 1 or 2, no dilation, kernels up to 5x5).
 *
 * One plane at a time, one output row at a time, 16 output columns per
 * zmm register. Tap (i, j) of output lanes ow0..ow0+15 reads input row
 * oh*s + i - pt at columns s*(ow0 + k) + j - pl: a masked load (columns
 * outside the image and lanes past the row's end read as zero, the masked
 * lanes are never touched in memory), and for stride 2 two loads whose
 * even elements one permute gathers. No padded copy of the plane is made.
 *
 *   forward   y = b + sum over taps (i, j) in order of w_ij * x_tap (FMA)
 *   dW, db    per-lane sums over every plane of the call, dy * x_tap,
 *             reduced at the end (fixed order: the call's planes are fixed
 *             by the shapes, so results do not depend on threads)
 *   dX        the transposed correlation: dx[ih][iw] += sum_ij w_ij *
 *             dy[(ih + pt - i)/s][(iw + pl - j)/s] over the terms whose
 *             divisions are exact; for stride 2 the dy row is first spread
 *             into a zero-stuffed row of twice the width, which turns the
 *             column condition into a plain stride-1 read.
 * Rows whose tap row falls outside the image contribute nothing and are
 * skipped. The loops over taps are unrolled for the kernel sizes of the
 * shipped models (3x3) so the accumulators stay in registers. */
#include "conv_kern.h"

#include "lanes16.h"

#include <immintrin.h>
#include <string.h>

#define DWD_MAXK 5

/* The masks of one tap column j over output lanes q0..q0+15: reading row
 * columns S*(q0 + k) + cj, k < nk, zero elsewhere. They depend on the
 * column block and j only, so each block computes them once for all rows. */
typedef struct tapmask {
    int64_t c0;          /* first column read: S*q0 + cj */
    __mmask16 a, b, out; /* S 1: a; S 2: the two loads' and the result's */
} tapmask;

static inline tapmask tap_mask(int64_t W, int64_t q0, int64_t cj, int64_t nk, const int S)
{
    tapmask t;
    t.c0 = S * q0 + cj;
    t.out = qk_lanes16(0, nk);
    if (S == 1) {
        t.a = qk_lanes16(-t.c0, W - t.c0) & t.out;
        t.b = 0;
    } else {
        t.a = qk_lanes16(-t.c0, W - t.c0);
        t.b = qk_lanes16(-t.c0 - 16, W - t.c0 - 16);
    }
    return t;
}

static inline __attribute__((always_inline)) __m512 ld_tap(const float *row, const tapmask *t, const int S)
{
    if (S == 1)
        return _mm512_maskz_loadu_ps(t->a, row + t->c0);
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    __m512 a = _mm512_maskz_loadu_ps(t->a, row + t->c0);
    __m512 b = _mm512_maskz_loadu_ps(t->b, row + t->c0 + 16);
    return _mm512_maskz_permutex2var_ps(t->out, a, even, b);
}

/* tm[j] = the masks of tap column j < KW in the column block at q0 (nk
 * lanes), whose column offset is cj0 + dir * j. */
static inline __attribute__((always_inline)) void block_masks(int64_t W, int64_t q0, int64_t nk, int64_t cj0,
                                                              int dir, tapmask *tm, const int KW, const int S)
{
#pragma GCC unroll 5
    for (int j = 0; j < KW; j++)
        tm[j] = tap_mask(W, q0, cj0 + dir * j, nk, S);
}

static inline __attribute__((always_inline)) void fwd_plane(const qk_window *w, const float *x, const float *wk,
                                                            float b, float *y, const int KH, const int KW,
                                                            const int S)
{
    const int64_t H = w->in[1], W = w->in[2], OH = w->out[1], OW = w->out[2], pt = w->pb[1], pl = w->pb[2];
    for (int64_t ow0 = 0; ow0 < OW; ow0 += 16) {
        const int64_t nk = OW - ow0 < 16 ? OW - ow0 : 16;
        tapmask tm[DWD_MAXK] = { { 0 } };
        block_masks(W, ow0, nk, -pl, 1, tm, KW, S);
        for (int64_t oh = 0; oh < OH; oh++) {
            __m512 acc = _mm512_set1_ps(b);
#pragma GCC unroll 5
            for (int i = 0; i < KH; i++) {
                const int64_t ih = oh * S + i - pt;
                if (ih < 0 || ih >= H)
                    continue;
                const float *row = x + ih * W;
#pragma GCC unroll 5
                for (int j = 0; j < KW; j++)
                    acc = _mm512_fmadd_ps(_mm512_set1_ps(wk[i * KW + j]), ld_tap(row, &tm[j], S), acc);
            }
            _mm512_mask_storeu_ps(y + oh * OW + ow0, tm[0].out, acc);
        }
    }
}

/* dW (acc[i*KW + j]) and db (*bacc) lane sums of one plane */
static inline __attribute__((always_inline)) void dw_plane(const qk_window *w, const float *x, const float *dy,
                                                           __m512 *acc, __m512 *bacc, const int KH, const int KW,
                                                           const int S)
{
    const int64_t H = w->in[1], W = w->in[2], OH = w->out[1], OW = w->out[2], pt = w->pb[1], pl = w->pb[2];
    for (int64_t ow0 = 0; ow0 < OW; ow0 += 16) {
        const int64_t nk = OW - ow0 < 16 ? OW - ow0 : 16;
        tapmask tm[DWD_MAXK] = { { 0 } };
        block_masks(W, ow0, nk, -pl, 1, tm, KW, S);
        for (int64_t oh = 0; oh < OH; oh++) {
            const __m512 g = _mm512_maskz_loadu_ps(tm[0].out, dy + oh * OW + ow0);
            *bacc = _mm512_add_ps(*bacc, g);
#pragma GCC unroll 5
            for (int i = 0; i < KH; i++) {
                const int64_t ih = oh * S + i - pt;
                if (ih < 0 || ih >= H)
                    continue;
                const float *row = x + ih * W;
#pragma GCC unroll 5
                for (int j = 0; j < KW; j++)
                    acc[i * KW + j] = _mm512_fmadd_ps(g, ld_tap(row, &tm[j], S), acc[i * KW + j]);
            }
        }
    }
}

/* The same for a 3x3 kernel with the nine tap sums and the bias sum in
 * named registers for the whole plane (an array of vectors, as acc is,
 * stays in memory: every FMA would load and store its sum), added into acc
 * and bacc once per plane: per-plane partial sums, in an order fixed by
 * the shapes (the same for any thread count). */
#define DW3_TAPS(i, A0, A1, A2)                                                                      \
    do {                                                                                             \
        const int64_t ih = oh * S + (i) - pt;                                                        \
        if (ih >= 0 && ih < H) {                                                                     \
            const float *row = x + ih * W;                                                           \
            A0 = _mm512_fmadd_ps(g, ld_tap(row, &tm[0], S), A0);                                      \
            A1 = _mm512_fmadd_ps(g, ld_tap(row, &tm[1], S), A1);                                      \
            A2 = _mm512_fmadd_ps(g, ld_tap(row, &tm[2], S), A2);                                      \
        }                                                                                            \
    } while (0)

static inline __attribute__((always_inline)) void dw_plane33(const qk_window *w, const float *x, const float *dy,
                                                             __m512 *acc, __m512 *bacc, const int S)
{
    const int64_t H = w->in[1], W = w->in[2], OH = w->out[1], OW = w->out[2], pt = w->pb[1], pl = w->pb[2];
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0;
    __m512 bs = a0;
    for (int64_t ow0 = 0; ow0 < OW; ow0 += 16) {
        const int64_t nk = OW - ow0 < 16 ? OW - ow0 : 16;
        tapmask tm[DWD_MAXK] = { { 0 } };
        block_masks(W, ow0, nk, -pl, 1, tm, 3, S);
        for (int64_t oh = 0; oh < OH; oh++) {
            const __m512 g = _mm512_maskz_loadu_ps(tm[0].out, dy + oh * OW + ow0);
            bs = _mm512_add_ps(bs, g);
            DW3_TAPS(0, a0, a1, a2);
            DW3_TAPS(1, a3, a4, a5);
            DW3_TAPS(2, a6, a7, a8);
        }
    }
    acc[0] = _mm512_add_ps(acc[0], a0), acc[1] = _mm512_add_ps(acc[1], a1), acc[2] = _mm512_add_ps(acc[2], a2);
    acc[3] = _mm512_add_ps(acc[3], a3), acc[4] = _mm512_add_ps(acc[4], a4), acc[5] = _mm512_add_ps(acc[5], a5);
    acc[6] = _mm512_add_ps(acc[6], a6), acc[7] = _mm512_add_ps(acc[7], a7), acc[8] = _mm512_add_ps(acc[8], a8);
    *bacc = _mm512_add_ps(*bacc, bs);
}
#undef DW3_TAPS

/* dy row of OW floats spread to 2*OW: z[2q] = dy[q], z[2q + 1] = 0 */
static void stuff_row(const float *dy, int64_t OW, float *z)
{
    const __m512i lo = _mm512_set_epi32(16, 7, 16, 6, 16, 5, 16, 4, 16, 3, 16, 2, 16, 1, 16, 0);
    const __m512i hi = _mm512_set_epi32(16, 15, 16, 14, 16, 13, 16, 12, 16, 11, 16, 10, 16, 9, 16, 8);
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t q0 = 0; q0 < OW; q0 += 16) {
        const int64_t n = OW - q0 < 16 ? OW - q0 : 16;
        __m512 v = _mm512_maskz_loadu_ps(qk_lanes16(0, n), dy + q0);
        _mm512_mask_storeu_ps(z + 2 * q0, qk_lanes16(0, 2 * n), _mm512_permutex2var_ps(v, lo, zero));
        _mm512_mask_storeu_ps(z + 2 * q0 + 16, qk_lanes16(0, 2 * n - 16), _mm512_permutex2var_ps(v, hi, zero));
    }
}

/* dx (one plane, H x W) = (write ? 0 : dx) + the transposed correlation of
 * dy; for S = 2, zs holds the plane's zero-stuffed dy rows (OH x 2*OW). */
static inline __attribute__((always_inline)) void dx_plane(const qk_window *w, const float *dy, const float *zs,
                                                           const float *wk, float *dx, int write, const int KH,
                                                           const int KW, const int S)
{
    const int64_t H = w->in[1], W = w->in[2], OH = w->out[1], OW = w->out[2], pt = w->pb[1], pl = w->pb[2];
    const int64_t ZW = S * OW; /* width of the rows read: dy (S 1) or stuffed dy (S 2) */
    for (int64_t iw0 = 0; iw0 < W; iw0 += 16) {
        const int64_t nk = W - iw0 < 16 ? W - iw0 : 16;
        tapmask tm[DWD_MAXK] = { { 0 } };
        block_masks(ZW, iw0, nk, pl, -1, tm, KW, 1);
        const __mmask16 m = tm[0].out;
        for (int64_t ih = 0; ih < H; ih++) {
            __m512 acc = write ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m, dx + ih * W + iw0);
#pragma GCC unroll 5
            for (int i = 0; i < KH; i++) {
                const int64_t r = ih + pt - i; /* = oh * S */
                if (r < 0 || r % S || r / S >= OH)
                    continue;
                const float *row = S == 1 ? dy + r * OW : zs + r / S * ZW;
#pragma GCC unroll 5
                for (int j = 0; j < KW; j++)
                    acc = _mm512_fmadd_ps(_mm512_set1_ps(wk[i * KW + j]), ld_tap(row, &tm[j], 1), acc);
            }
            _mm512_mask_storeu_ps(dx + ih * W + iw0, m, acc);
        }
    }
}

#define DWD_CASE(KH, KW, S, CALL) \
    if (kh == KH && kw == KW && s == S) { CALL(KH, KW, S); return; }

void qk_dw_fwd__avx512(const qk_window *w, int64_t np, const float *x, int64_t xs, const float *wk, float b,
                       float *y, int64_t ys)
{
    const int kh = (int)w->k[1], kw = (int)w->k[2], s = (int)w->s[1];
#define FWD(KH, KW, S)                                    \
    for (int64_t k = 0; k < np; k++)                      \
        fwd_plane(w, x + k * xs, wk, b, y + k * ys, KH, KW, S)
    DWD_CASE(3, 3, 1, FWD);
    DWD_CASE(3, 3, 2, FWD);
    for (int64_t k = 0; k < np; k++)
        fwd_plane(w, x + k * xs, wk, b, y + k * ys, kh, kw, s == 1 ? 1 : 2);
#undef FWD
}

size_t qk_dw_direct_scratch_floats(const qk_window *w)
{
    return w->s[1] == 2 ? (size_t)(w->out[1] * 2 * w->out[2]) + 32 : 0;
}

static inline __attribute__((always_inline)) void bwd_planes(const qk_window *w, int64_t np, const float *x,
                                                             int64_t xs, const float *wk, const float *dy,
                                                             int64_t ys, float *dx, int write, float *dwk,
                                                             float *db, int init, float *scratch, const int KH,
                                                             const int KW, const int S)
{
    const int64_t OH = w->out[1], OW = w->out[2];
    if (dwk || db) {
        __m512 acc[DWD_MAXK * DWD_MAXK], bacc = _mm512_setzero_ps();
#pragma GCC unroll 25
        for (int t = 0; t < KH * KW; t++)
            acc[t] = _mm512_setzero_ps();
        for (int64_t k = 0; k < np; k++) {
            if (KH == 3 && KW == 3)
                dw_plane33(w, x + k * xs, dy + k * ys, acc, &bacc, S);
            else
                dw_plane(w, x + k * xs, dy + k * ys, acc, &bacc, KH, KW, S);
        }
        if (dwk)
            for (int t = 0; t < KH * KW; t++) {
                float v = _mm512_reduce_add_ps(acc[t]);
                dwk[t] = init ? v : dwk[t] + v;
            }
        if (db) {
            float v = _mm512_reduce_add_ps(bacc);
            *db = init ? v : *db + v;
        }
    }
    if (!dx)
        return;
    for (int64_t k = 0; k < np; k++) {
        const float *dyk = dy + k * ys;
        if (S == 2)
            for (int64_t oh = 0; oh < OH; oh++)
                stuff_row(dyk + oh * OW, OW, scratch + oh * 2 * OW);
        dx_plane(w, dyk, scratch, wk, dx + k * xs, write, KH, KW, S);
    }
}

void qk_dw_bwd__avx512(const qk_window *w, int64_t np, const float *x, int64_t xs, const float *wk,
                       const float *dy, int64_t ys, float *dx, int write, float *dwk, float *db, int init,
                       float *scratch)
{
    const int kh = (int)w->k[1], kw = (int)w->k[2], s = (int)w->s[1];
#define BWD(KH, KW, S) bwd_planes(w, np, x, xs, wk, dy, ys, dx, write, dwk, db, init, scratch, KH, KW, S)
    DWD_CASE(3, 3, 1, BWD);
    DWD_CASE(3, 3, 2, BWD);
    bwd_planes(w, np, x, xs, wk, dy, ys, dx, write, dwk, db, init, scratch, kh, kw, s == 1 ? 1 : 2);
#undef BWD
}
