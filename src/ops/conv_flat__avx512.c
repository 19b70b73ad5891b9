/* AVX-512 kernel of the padded-flat direct convolution (conv_flat.h):
 * 8 output channels x 48 positions in 24 zmm accumulators; per tap, three
 * unaligned loads of the shifted input run and eight broadcast weights.
 * Accumulators are named variables (an array would live in memory at -O2). */
#include "conv_flat.h"

#include "lanes16.h"

#include <immintrin.h>

#define ACC_ROW(r) __m512 a##r##0, a##r##1, a##r##2
#define ACC_INIT(r)                                                                                  \
    do {                                                                                             \
        int64_t m_ = mb * QK_CFLAT_MB + r;                                                           \
        a##r##0 = a##r##1 = a##r##2 = _mm512_set1_ps(b && m_ < M ? b[m_] : 0.0f);                  \
    } while (0)
#define ACC_FMA(r)                                                                                   \
    do {                                                                                             \
        __m512 w_ = _mm512_set1_ps(wt[r]);                                                           \
        a##r##0 = _mm512_fmadd_ps(w_, x0, a##r##0);                                                  \
        a##r##1 = _mm512_fmadd_ps(w_, x1, a##r##1);                                                  \
        a##r##2 = _mm512_fmadd_ps(w_, x2, a##r##2);                                                  \
    } while (0)
#define ACC_STORE(r)                                                                                 \
    do {                                                                                             \
        if (mb * QK_CFLAT_MB + r < M) {                                                              \
            float *yr_ = y + (mb * QK_CFLAT_MB + r) * ldy + f0;                                      \
            _mm512_storeu_ps(yr_, a##r##0);                                                          \
            _mm512_storeu_ps(yr_ + 16, a##r##1);                                                     \
            _mm512_storeu_ps(yr_ + 32, a##r##2);                                                     \
        }                                                                                            \
    } while (0)

void qk_cflat_fwd__avx512(const float *wpk, int64_t M, int64_t C, int kk, const int64_t *off, const float *x,
                          int64_t ldx, int64_t F, const float *b, float *y, int64_t ldy)
{
    const int64_t Mb = (M + QK_CFLAT_MB - 1) / QK_CFLAT_MB;
    for (int64_t f0 = 0; f0 < F; f0 += QK_CFLAT_FB)
        for (int64_t mb = 0; mb < Mb; mb++) {
            ACC_ROW(0);
            ACC_ROW(1);
            ACC_ROW(2);
            ACC_ROW(3);
            ACC_ROW(4);
            ACC_ROW(5);
            ACC_ROW(6);
            ACC_ROW(7);
            ACC_INIT(0);
            ACC_INIT(1);
            ACC_INIT(2);
            ACC_INIT(3);
            ACC_INIT(4);
            ACC_INIT(5);
            ACC_INIT(6);
            ACC_INIT(7);
            const float *wt = wpk + mb * C * kk * QK_CFLAT_MB;
            for (int64_t c = 0; c < C; c++) {
                const float *xc = x + c * ldx + f0;
                for (int t = 0; t < kk; t++, wt += QK_CFLAT_MB) {
                    const float *xs = xc + off[t];
                    __m512 x0 = _mm512_loadu_ps(xs), x1 = _mm512_loadu_ps(xs + 16), x2 = _mm512_loadu_ps(xs + 32);
                    ACC_FMA(0);
                    ACC_FMA(1);
                    ACC_FMA(2);
                    ACC_FMA(3);
                    ACC_FMA(4);
                    ACC_FMA(5);
                    ACC_FMA(6);
                    ACC_FMA(7);
                }
            }
            ACC_STORE(0);
            ACC_STORE(1);
            ACC_STORE(2);
            ACC_STORE(3);
            ACC_STORE(4);
            ACC_STORE(5);
            ACC_STORE(6);
            ACC_STORE(7);
        }
}

/* Weight gradient: for one input channel, 3 output channels x up to 9 taps
 * of 16-lane partial sums (27 accumulators) over the K positions; per step
 * 3 dY loads and ntap shifted x loads feed 3 * ntap FMAs. Named variables
 * again; taps past ntap read tap 0 and are not stored. */
#define DW_T(r, t) __m512 d##r##t = _mm512_setzero_ps()
#define DW_ROW(r)                                                                                    \
    DW_T(r, 0);                                                                                      \
    DW_T(r, 1);                                                                                      \
    DW_T(r, 2);                                                                                      \
    DW_T(r, 3);                                                                                      \
    DW_T(r, 4);                                                                                      \
    DW_T(r, 5);                                                                                      \
    DW_T(r, 6);                                                                                      \
    DW_T(r, 7);                                                                                      \
    DW_T(r, 8)
#define DW_FMA_T(t)                                                                                  \
    do {                                                                                             \
        __m512 xv = _mm512_loadu_ps(xc + f + o##t);                                                  \
        __asm__("" : "+v"(xv)); /* one load, not one per FMA (gcc folds it) */                       \
        d0##t = _mm512_fmadd_ps(g0, xv, d0##t);                                                      \
        d1##t = _mm512_fmadd_ps(g1, xv, d1##t);                                                      \
        d2##t = _mm512_fmadd_ps(g2, xv, d2##t);                                                      \
    } while (0)
#define DW_OUT_T(r, t)                                                                               \
    do {                                                                                             \
        if (t < ntap && m0 + r < M) {                                                                \
            float *o_ = dw + ((m0 + r) * C + c) * dws + t;                                          \
            float s_ = _mm512_reduce_add_ps(d##r##t);                                                \
            *o_ = accumulate ? *o_ + s_ : s_;                                                        \
        }                                                                                            \
    } while (0)
#define DW_OUT_ROW(r)                                                                                \
    do {                                                                                             \
        DW_OUT_T(r, 0);                                                                              \
        DW_OUT_T(r, 1);                                                                              \
        DW_OUT_T(r, 2);                                                                              \
        DW_OUT_T(r, 3);                                                                              \
        DW_OUT_T(r, 4);                                                                              \
        DW_OUT_T(r, 5);                                                                              \
        DW_OUT_T(r, 6);                                                                              \
        DW_OUT_T(r, 7);                                                                              \
        DW_OUT_T(r, 8);                                                                              \
    } while (0)

void qk_cflat_dw__avx512(const float *dy, int64_t ldd, int64_t M, const float *x, int64_t ldx, int64_t C,
                         int64_t K, int ntap, const int64_t *off, float *dw, int64_t dws, int accumulate)
{
    int64_t o[QK_CFLAT_MAXTAP];
    for (int t = 0; t < QK_CFLAT_MAXTAP; t++)
        o[t] = off[t < ntap ? t : 0];
    const int64_t o0 = o[0], o1 = o[1], o2 = o[2], o3 = o[3], o4 = o[4], o5 = o[5], o6 = o[6], o7 = o[7], o8 = o[8];
    for (int64_t c = 0; c < C; c++) {
        const float *xc = x + c * ldx;
        for (int64_t m0 = 0; m0 < M; m0 += 3) {
            /* rows past M reuse row m0 (their sums are not stored) */
            const float *r0 = dy + m0 * ldd, *r1 = m0 + 1 < M ? r0 + ldd : r0, *r2 = m0 + 2 < M ? r0 + 2 * ldd : r0;
            DW_ROW(0);
            DW_ROW(1);
            DW_ROW(2);
            for (int64_t f = 0; f < K; f += 16) {
                __m512 g0 = _mm512_loadu_ps(r0 + f), g1 = _mm512_loadu_ps(r1 + f), g2 = _mm512_loadu_ps(r2 + f);
                DW_FMA_T(0);
                if (ntap > 1) {
                    DW_FMA_T(1);
                    DW_FMA_T(2);
                    DW_FMA_T(3);
                    DW_FMA_T(4);
                    DW_FMA_T(5);
                    DW_FMA_T(6);
                    DW_FMA_T(7);
                    DW_FMA_T(8);
                }
            }
            DW_OUT_ROW(0);
            DW_OUT_ROW(1);
            DW_OUT_ROW(2);
        }
    }
}

/* ---- copies into and out of the padded layout ---- */

static void zero_run(float *d, int64_t n)
{
    const __m512 z = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(d + i, z);
    if (i < n)
        _mm512_mask_storeu_ps(d + i, qk_lanes16(0, n - i), z);
}

void qk_cflat_pad__avx512(float *dst, const float *src, int64_t h, int64_t w, int64_t Wq, int64_t pt, int64_t pl,
                          int64_t pq)
{
    zero_run(dst, pt * Wq);
    for (int64_t r = 0; r < h; r++) {
        /* padded row pt + r: column j holds src column j - pl */
        float *d = dst + (pt + r) * Wq;
        const float *s = src + r * w;
        for (int64_t j = 0; j < Wq; j += 16) {
            __m512 v = _mm512_maskz_loadu_ps(qk_lanes16(pl - j, pl + w - j), s + (j - pl));
            _mm512_mask_storeu_ps(d + j, qk_lanes16(0, Wq - j), v);
        }
    }
    zero_run(dst + (pt + h) * Wq, pq - (pt + h) * Wq);
}

void qk_cflat_strip__avx512(float *dst, const float *src, int64_t sn, int64_t nb, int64_t h, int64_t w, int64_t gap,
                            int64_t pt, int64_t ld)
{
    const int64_t step = w + gap, Wq = gap + nb * step;
    zero_run(dst, pt * Wq);
    for (int64_t r = 0; r < h; r++) {
        float *d = dst + (pt + r) * Wq;
        /* per plane: gap zeros, then the row's w values */
        for (int64_t k = 0; k < nb; k++) {
            const float *s = src + k * sn + r * w;
            for (int64_t j = 0; j < step; j += 16) {
                __m512 v = _mm512_maskz_loadu_ps(qk_lanes16(gap - j, gap + w - j), s + (j - gap));
                _mm512_mask_storeu_ps(d + k * step + j, qk_lanes16(0, step - j), v);
            }
        }
        zero_run(d + nb * step, gap);
    }
    zero_run(dst + (pt + h) * Wq, ld - (pt + h) * Wq);
}

void qk_cflat_phases__avx512(float *dst, int64_t ps, int nph, const float *src, int64_t H, int64_t W, int64_t Hq,
                             int64_t Wq, int64_t pt, int64_t pl, int64_t pq)
{
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    const int both = nph == 4;
    for (int64_t u = 0; u < Hq; u++)
        for (int64_t p = 0; p < (both ? 2 : 1); p++) {
            float *d0 = dst + 2 * p * ps + u * Wq, *d1 = d0 + ps;
            const int64_t r = 2 * u + p - pt;
            if (r < 0 || r >= H) {
                zero_run(d0, Wq);
                if (both)
                    zero_run(d1, Wq);
                continue;
            }
            /* lanes e of the 32 loaded: image column 2*v0 - pl + e, phase
             * q = e & 1, element v0 + e / 2 */
            const float *s = src + r * W;
            for (int64_t v0 = 0; v0 < Wq; v0 += 16) {
                const int64_t c = 2 * v0 - pl;
                __m512 lo = _mm512_maskz_loadu_ps(qk_lanes16(-c, W - c), s + c);
                __m512 hi = _mm512_maskz_loadu_ps(qk_lanes16(-c - 16, W - c - 16), s + c + 16);
                const __mmask16 m = qk_lanes16(0, Wq - v0);
                _mm512_mask_storeu_ps(d0 + v0, m, _mm512_permutex2var_ps(lo, even, hi));
                if (both)
                    _mm512_mask_storeu_ps(d1 + v0, m, _mm512_permutex2var_ps(lo, odd, hi));
            }
        }
    for (int64_t ph = 0; ph < nph; ph++)
        zero_run(dst + ph * ps + Hq * Wq, pq - Hq * Wq);
}

void qk_cflat_unpad__avx512(float *y, const float *ys, int64_t h, int64_t w, int64_t ld, const qk_cflat_epi *e)
{
    const __m512 a = _mm512_set1_ps(e->a), b = _mm512_set1_ps(e->b), lo = _mm512_set1_ps(e->lo),
                 hi = _mm512_set1_ps(e->hi), z = _mm512_setzero_ps();
    const int op = e->op;
    for (int64_t r = 0; r < h; r++, y += w, ys += ld)
        for (int64_t j = 0; j < w; j += 16) {
            const __mmask16 m = qk_lanes16(0, w - j);
            __m512 v = _mm512_maskz_loadu_ps(m, ys + j);
            if (op == QK_CFLAT_ADD)
                v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, y + j), v);
            else if (op != QK_CFLAT_COPY) {
                v = _mm512_add_ps(_mm512_mul_ps(a, v), b);
                if (op == QK_CFLAT_RELU)
                    v = _mm512_maskz_mov_ps((__mmask16)~_mm512_cmp_ps_mask(v, z, _CMP_LT_OQ), v);
                else if (op == QK_CFLAT_CLIP) {
                    v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, lo, _CMP_LT_OQ), lo);
                    v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, hi, _CMP_GT_OQ), hi);
                }
            }
            _mm512_mask_storeu_ps(y + j, m, v);
        }
}

void qk_cflat_add_s2__avx512(float *dst, const float *src, int64_t n)
{
    for (int64_t o = 0; o < n; o += 8, dst += 16, src += 8) {
        /* the even lanes of up to 8 elements: src expanded into them */
        const __mmask16 m = (__mmask16)(0x5555u & qk_lanes16(0, 2 * (n - o)));
        __m512 v = _mm512_maskz_expandloadu_ps(m, src);
        _mm512_mask_storeu_ps(dst, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, dst), v));
    }
}
