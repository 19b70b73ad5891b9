/* Depthwise 2-D convolution kernels over a stack of planes of ONE channel
 * (several samples share the channel's weights); conv.c drives them over
 * the pool. Contract in conv_kern.h.
 *
 * Phase-plane method (equal strides s in H and W; s = 1 is the common case).
 * Let xpad_k be plane k zero-padded to PH x PW = s QH x s QW, large enough
 * for every window. It is split into s*s phase planes
 *     ph_ab[k][r][c] = xpad_k[s r + a][s c + b],     a, b in [0, s),
 * each stack stored contiguously (np planes of QH x QW, then a zero tail).
 * Tap (i, j) reads xpad_k[s oh + i dh][s ow + j dw] = ph_ab[k][oh + i'][ow + j']
 * with i dh = s i' + a, j dw = s j' + b. With the output stored at
 * q = (k QH + oh) QW + ow (junk where oh >= OH or ow >= OW), every tap is a
 * contiguous shifted read src_t[q] = ph_ab[q + i' QW + j'], and the whole
 * stack is one correlation over L = np QH QW positions:
 *     y'[q] = b + sum_t w_t src_t[q]
 * computed in blocks of 16 outputs, 9 taps per pass summed in registers.
 * Backward, with dq = dy in the q layout (junk 0, zero margin in front):
 *     dW_t = sum_q dq[q] src_t[q]                 (sums over the np samples)
 *     dph_ab[p] = sum_{t in phase ab} w_t dq[p - i' QW - j']
 * and dph is scattered back to dX. Unequal strides (or more than DW_MAXT
 * taps) use direct loops. */
#include "fvec.h"
#include "conv_kern.h"

#include "qkit/cpu.h"

#include <string.h>

#define DW_MAXT 64 /* most taps of the phase method */

typedef struct dw_geo {
    int64_t s, QH, QW, blk; /* blk: floats per phase stack incl. tail */
    int64_t L, tail;         /* L = np QH QW; tail >= max tap offset + 1 */
} dw_geo;

static int dw_phase(const qk_window *w) { return w->s[1] == w->s[2]; }

static void dw_geom(const qk_window *w, int64_t np, dw_geo *g)
{
    int64_t s = w->s[1];
    int64_t ph = (w->out[1] - 1) * s + (w->k[1] - 1) * w->d[1] + 1;
    int64_t pw = (w->out[2] - 1) * s + (w->k[2] - 1) * w->d[2] + 1;
    g->s = s;
    g->QH = (ph + s - 1) / s;
    g->QW = (pw + s - 1) / s;
    g->L = np * g->QH * g->QW;
    g->tail = (w->k[1] - 1) * w->d[1] / s * g->QW + (w->k[2] - 1) * w->d[2] / s + 1;
    g->blk = (g->L + g->tail + 15) & ~(int64_t)15;
}

int qk_dw_direct_ok(const qk_window *w)
{
    return w->in[0] == 1 && w->k[0] == 1 && w->s[1] == w->s[2] && (w->s[1] == 1 || w->s[1] == 2) &&
           w->d[1] == 1 && w->d[2] == 1 && w->k[1] <= 5 && w->k[2] <= 5;
}

/* the direct kernels, or the phase-plane method (the same on every run of
 * a process: the CPU does not change) */
static int dw_direct(const qk_window *w)
{
    return qk_cpu_isa() >= QK_ISA_AVX512 && qk_dw_direct_ok(w);
}

size_t qk_dw_scratch_floats(const qk_window *w, int64_t np, int training)
{
    if (dw_direct(w))
        return training ? qk_dw_direct_scratch_floats(w) : 0;
    if (!dw_phase(w))
        return 0;
    dw_geo g;
    dw_geom(w, np, &g);
    size_t phases = (size_t)(g.s * g.s * g.blk);
    /* forward: phases + y'; backward: phases + dq (margin + L) + one dph stack */
    return training ? phases + (size_t)(g.tail + g.L + g.blk) + 64 : phases + (size_t)g.L + 64;
}

/* Phase planes of np input planes (x + k*xs, H x W) into ph (s*s stacks). */
static void make_phases(const qk_window *w, const dw_geo *g, int64_t np, const float *x, int64_t xs, float *ph)
{
    const int64_t H = w->in[1], W = w->in[2], pt = w->pb[1], pl = w->pb[2], s = g->s, QH = g->QH, QW = g->QW;
    for (int64_t a = 0; a < s; a++)
        for (int64_t b = 0; b < s; b++) {
            float *stk = ph + (a * s + b) * g->blk;
            /* columns c with 0 <= s c + b - pl < W */
            int64_t c0 = pl - b > 0 ? (pl - b + s - 1) / s : 0;
            int64_t c1 = W - 1 + pl - b >= 0 ? (W - 1 + pl - b) / s + 1 : 0;
            c0 = c0 < QW ? c0 : QW;
            c1 = c1 < QW ? c1 : QW;
            if (c1 < c0)
                c1 = c0;
            for (int64_t k = 0; k < np; k++)
                for (int64_t r = 0; r < QH; r++) {
                    float *d = stk + (k * QH + r) * QW;
                    int64_t ih = s * r + a - pt;
                    if (ih < 0 || ih >= H || c1 == c0) {
                        memset(d, 0, (size_t)QW * sizeof(float));
                        continue;
                    }
                    const float *src = x + k * xs + ih * W + (b - pl);
                    memset(d, 0, (size_t)c0 * sizeof(float));
                    if (s == 1)
                        memcpy(d + c0, src + c0, (size_t)(c1 - c0) * sizeof(float));
                    else
                        for (int64_t c = c0; c < c1; c++)
                            d[c] = src[s * c];
                    memset(d + c1, 0, (size_t)(QW - c1) * sizeof(float));
                }
            memset(stk + g->L, 0, (size_t)(g->blk - g->L) * sizeof(float));
        }
}

/* y[q] (= init, or += if acc) + sum of up to 9 taps w_t * a_t[q]; streams
 * in blocks of 16 so the sum stays in registers (vectorized at -O2). */
#define CORR_SUM9(i) (w0 * a0[i] + w1 * a1[i] + w2 * a2[i] + w3 * a3[i] + w4 * a4[i] + w5 * a5[i] + \
                      w6 * a6[i] + w7 * a7[i] + w8 * a8[i])
static void corr9(float *restrict y, int64_t L, int acc, float init, const float *restrict a0,
                  const float *restrict a1, const float *restrict a2, const float *restrict a3,
                  const float *restrict a4, const float *restrict a5, const float *restrict a6,
                  const float *restrict a7, const float *restrict a8, const float *w)
{
    const float w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6], w7 = w[7], w8 = w[8];
    int64_t q = 0;
    if (acc) {
        for (; q + QK_VB <= L; q += QK_VB)
            for (int l = 0; l < QK_VB; l++)
                y[q + l] += CORR_SUM9(q + l);
        for (; q < L; q++)
            y[q] += CORR_SUM9(q);
    } else {
        for (; q + QK_VB <= L; q += QK_VB)
            for (int l = 0; l < QK_VB; l++)
                y[q + l] = init + CORR_SUM9(q + l);
        for (; q < L; q++)
            y[q] = init + CORR_SUM9(q);
    }
}

/* Same for 2 taps and 1 tap (short passes, e.g. the phases of stride 2). */
static void corr2(float *restrict y, int64_t L, int acc, float init, const float *restrict a0,
                  const float *restrict a1, float w0, float w1)
{
    int64_t q = 0;
    if (acc) {
        for (; q + QK_VB <= L; q += QK_VB)
            for (int l = 0; l < QK_VB; l++)
                y[q + l] += w0 * a0[q + l] + w1 * a1[q + l];
        for (; q < L; q++)
            y[q] += w0 * a0[q] + w1 * a1[q];
    } else {
        for (; q + QK_VB <= L; q += QK_VB)
            for (int l = 0; l < QK_VB; l++)
                y[q + l] = init + w0 * a0[q + l] + w1 * a1[q + l];
        for (; q < L; q++)
            y[q] = init + w0 * a0[q] + w1 * a1[q];
    }
}

/* y[q] = init + sum_t wt[t] * src[t][q], q < L: passes of up to 9 taps
 * (a pass of 5..8 taps is padded with zero-weight taps), then pairs. */
static void corr(float *y, int64_t L, float init, const float *const *src, const float *wt, int nt)
{
    if (nt == 0) {
        qk_vfill(y, init, L);
        return;
    }
    int t0 = 0;
    for (; nt - t0 >= 5; t0 += 9) {
        const float *p[9];
        float w[9];
        for (int k = 0; k < 9; k++) {
            p[k] = t0 + k < nt ? src[t0 + k] : src[0];
            w[k] = t0 + k < nt ? wt[t0 + k] : 0.0f;
        }
        corr9(y, L, t0 > 0, init, p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], w);
    }
    for (; t0 < nt; t0 += 2)
        corr2(y, L, t0 > 0, init, src[t0], t0 + 1 < nt ? src[t0 + 1] : src[t0], wt[t0],
              t0 + 1 < nt ? wt[t0 + 1] : 0.0f);
}

/* Tap t = i*kw + j: phase stack index and offset inside it. */
static void tap(const qk_window *w, const dw_geo *g, int64_t i, int64_t j, int64_t *phase, int64_t *off)
{
    int64_t vi = i * w->d[1], vj = j * w->d[2];
    *phase = (vi % g->s) * g->s + vj % g->s;
    *off = vi / g->s * g->QW + vj / g->s;
}

/* First and one-past-last output column whose input column o*s + off is in [0, W). */
static inline void col_range(int64_t off, int64_t s, int64_t W, int64_t OW, int64_t *lo, int64_t *hi)
{
    int64_t l = off >= 0 ? 0 : (-off + s - 1) / s;
    int64_t h = W - 1 - off >= 0 ? (W - 1 - off) / s + 1 : 0;
    *lo = l < OW ? l : OW;
    *hi = h < OW ? h : OW;
    if (*hi < *lo)
        *hi = *lo;
}

void qk_dw_fwd(const qk_window *w, int64_t np, const float *x, int64_t xs, const float *wk, float b, float *y,
               int64_t ys, float *scratch)
{
    const int64_t OH = w->out[1], OW = w->out[2], kh = w->k[1], kw = w->k[2];
    if (dw_direct(w)) {
        qk_dw_fwd__avx512(w, np, x, xs, wk, b, y, ys);
        return;
    }
    if (dw_phase(w) && kh * kw <= DW_MAXT) {
        dw_geo g;
        dw_geom(w, np, &g);
        float *ph = scratch, *yq = scratch + g.s * g.s * g.blk;
        make_phases(w, &g, np, x, xs, ph);
        const float *src[DW_MAXT];
        for (int64_t i = 0; i < kh; i++)
            for (int64_t j = 0; j < kw; j++) {
                int64_t p, off;
                tap(w, &g, i, j, &p, &off);
                src[i * kw + j] = ph + p * g.blk + off;
            }
        corr(yq, g.L, b, src, wk, (int)(kh * kw));
        for (int64_t k = 0; k < np; k++)
            for (int64_t oh = 0; oh < OH; oh++)
                memcpy(y + k * ys + oh * OW, yq + (k * g.QH + oh) * g.QW, (size_t)OW * sizeof(float));
        return;
    }
    const int64_t H = w->in[1], W = w->in[2], sh = w->s[1], sw = w->s[2];
    for (int64_t k = 0; k < np; k++) {
        const float *xk = x + k * xs;
        float *yk = y + k * ys;
        qk_vfill(yk, b, OH * OW);
        for (int64_t j = 0; j < kw; j++) {
            int64_t off = j * w->d[2] - w->pb[2], lo, hi;
            col_range(off, sw, W, OW, &lo, &hi);
            for (int64_t i = 0; i < kh; i++) {
                const float wv = wk[i * kw + j];
                for (int64_t oh = 0; oh < OH; oh++) {
                    int64_t ih = oh * sh - w->pb[1] + i * w->d[1];
                    if (ih < 0 || ih >= H)
                        continue;
                    float *yr = yk + oh * OW;
                    const float *xr = xk + ih * W + off;
                    for (int64_t o = lo; o < hi; o++)
                        yr[o] += wv * xr[o * sw];
                }
            }
        }
    }
}

void qk_dw_bwd(const qk_window *w, int64_t np, const float *x, int64_t xs, const float *wk, const float *dy,
               int64_t ys, float *dx, int write, float *dwk, float *db, int init, float *scratch)
{
    const int64_t OH = w->out[1], OW = w->out[2], kh = w->k[1], kw = w->k[2];
    const int64_t H = w->in[1], W = w->in[2];
    if (dw_direct(w)) {
        qk_dw_bwd__avx512(w, np, x, xs, wk, dy, ys, dx, write, dwk, db, init, scratch);
        return;
    }
    if (dx && write)
        for (int64_t k = 0; k < np; k++)
            memset(dx + k * xs, 0, (size_t)(H * W) * sizeof(float));
    if (db) {
        float s = 0.0f;
        for (int64_t k = 0; k < np; k++)
            s += qk_vsum(dy + k * ys, OH * OW);
        *db = init ? s : *db + s;
    }
    if (dw_phase(w) && kh * kw <= DW_MAXT) {
        dw_geo g;
        dw_geom(w, np, &g);
        const int64_t s = g.s, QH = g.QH, QW = g.QW;
        float *ph = scratch, *dq0 = ph + s * s * g.blk, *dq = dq0 + g.tail, *dph = dq + g.L;
        memset(dq0, 0, (size_t)(g.tail + g.L) * sizeof(float));
        for (int64_t k = 0; k < np; k++)
            for (int64_t oh = 0; oh < OH; oh++)
                memcpy(dq + (k * QH + oh) * QW, dy + k * ys + oh * OW, (size_t)OW * sizeof(float));
        if (dwk) {
            make_phases(w, &g, np, x, xs, ph);
            for (int64_t i = 0; i < kh; i++)
                for (int64_t j = 0; j < kw; j++) {
                    int64_t p, off;
                    tap(w, &g, i, j, &p, &off);
                    float v = qk_vdot(dq, ph + p * g.blk + off, g.L);
                    dwk[i * kw + j] = init ? v : dwk[i * kw + j] + v;
                }
        }
        if (!dx)
            return;
        const int64_t pt = w->pb[1], pl = w->pb[2];
        for (int64_t a = 0; a < s; a++)
            for (int64_t b = 0; b < s; b++) {
                const float *src[DW_MAXT];
                float wt[DW_MAXT];
                int nt = 0;
                for (int64_t i = 0; i < kh; i++)
                    for (int64_t j = 0; j < kw; j++) {
                        int64_t p, off;
                        tap(w, &g, i, j, &p, &off);
                        if (p != a * s + b)
                            continue;
                        src[nt] = dq - off;
                        wt[nt++] = wk[i * kw + j];
                    }
                if (!nt)
                    continue;
                corr(dph, g.L, 0.0f, src, wt, nt);
                /* dx_k[ih][iw] += dph[k][r][c] for s r + a = ih + pt, s c + b = iw + pl */
                int64_t c0 = pl - b > 0 ? (pl - b + s - 1) / s : 0;
                int64_t c1 = W - 1 + pl - b >= 0 ? (W - 1 + pl - b) / s + 1 : 0;
                c1 = c1 < QW ? c1 : QW;
                for (int64_t k = 0; k < np; k++)
                    for (int64_t r = 0; r < QH; r++) {
                        int64_t ih = s * r + a - pt;
                        if (ih < 0 || ih >= H || c1 <= c0)
                            continue;
                        float *d = dx + k * xs + ih * W + (b - pl);
                        const float *sp = dph + (k * QH + r) * QW;
                        if (s == 1)
                            qk_vadd(d + c0, sp + c0, c1 - c0);
                        else
                            for (int64_t c = c0; c < c1; c++)
                                d[s * c] += sp[c];
                    }
            }
        return;
    }
    const int64_t sh = w->s[1], sw = w->s[2];
    for (int64_t j = 0; j < kw; j++) {
        int64_t off = j * w->d[2] - w->pb[2], lo, hi;
        col_range(off, sw, W, OW, &lo, &hi);
        for (int64_t i = 0; i < kh; i++) {
            const float wv = wk[i * kw + j];
            float acc = 0.0f;
            for (int64_t k = 0; k < np; k++)
                for (int64_t oh = 0; oh < OH; oh++) {
                    int64_t ih = oh * sh - w->pb[1] + i * w->d[1];
                    if (ih < 0 || ih >= H)
                        continue;
                    const float *gr = dy + k * ys + oh * OW;
                    if (dx) {
                        float *dxs = dx + k * xs + ih * W + off;
                        for (int64_t o = lo; o < hi; o++)
                            dxs[o * sw] += wv * gr[o];
                    }
                    if (dwk) {
                        const float *xr = x + k * xs + ih * W + off;
                        for (int64_t o = lo; o < hi; o++)
                            acc += gr[o] * xr[o * sw];
                    }
                }
            if (dwk)
                dwk[i * kw + j] = init ? acc : dwk[i * kw + j] + acc;
        }
    }
}
