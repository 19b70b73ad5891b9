/* Packing, portable kernel and dispatch of the padded-flat direct
 * convolution (conv_flat.h). */
#include "conv_flat.h"

#include "qkit/cpu.h"

#include <string.h>

void qk_cflat_pack(const float *w, int64_t M, int64_t C, int64_t kk, float *wpk)
{
    const int64_t Mb = (M + QK_CFLAT_MB - 1) / QK_CFLAT_MB;
    for (int64_t mb = 0; mb < Mb; mb++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t t = 0; t < kk; t++)
                for (int r = 0; r < QK_CFLAT_MB; r++) {
                    int64_t m = mb * QK_CFLAT_MB + r;
                    wpk[((mb * C + c) * kk + t) * QK_CFLAT_MB + r] = m < M ? w[(m * C + c) * kk + t] : 0.0f;
                }
}

void qk_cflat_pack_flip(const float *w, int64_t M, int64_t C, int kh, int kw, float *wpk)
{
    const int64_t kk = (int64_t)kh * kw, Cb = (C + QK_CFLAT_MB - 1) / QK_CFLAT_MB;
    for (int64_t cb = 0; cb < Cb; cb++)
        for (int64_t m = 0; m < M; m++)
            for (int64_t t = 0; t < kk; t++)
                for (int r = 0; r < QK_CFLAT_MB; r++) {
                    int64_t c = cb * QK_CFLAT_MB + r, i = t / kw, j = t % kw;
                    wpk[((cb * M + m) * kk + t) * QK_CFLAT_MB + r] =
                        c < C ? w[(m * C + c) * kk + (kh - 1 - i) * kw + (kw - 1 - j)] : 0.0f;
                }
}

/* The same blocking as the AVX-512 kernel, in plain C; products and sums
 * are separate roundings here (the AVX-512 kernel fuses them), so the two
 * agree to rounding, not bit for bit. */
void qk_cflat_fwd_ref(const float *wpk, int64_t M, int64_t C, int kk, const int64_t *off, const float *x,
                      int64_t ldx, int64_t F, const float *b, float *y, int64_t ldy)
{
    const int64_t Mb = (M + QK_CFLAT_MB - 1) / QK_CFLAT_MB;
    for (int64_t f0 = 0; f0 < F; f0 += QK_CFLAT_FB)
        for (int64_t mb = 0; mb < Mb; mb++) {
            float acc[QK_CFLAT_MB][QK_CFLAT_FB];
            for (int r = 0; r < QK_CFLAT_MB; r++) {
                int64_t m = mb * QK_CFLAT_MB + r;
                float bv = b && m < M ? b[m] : 0.0f;
                for (int l = 0; l < QK_CFLAT_FB; l++)
                    acc[r][l] = bv;
            }
            const float *wb = wpk + mb * C * kk * QK_CFLAT_MB;
            for (int64_t c = 0; c < C; c++)
                for (int t = 0; t < kk; t++) {
                    const float *xs = x + c * ldx + f0 + off[t];
                    const float *wt = wb + (c * kk + t) * QK_CFLAT_MB;
                    for (int r = 0; r < QK_CFLAT_MB; r++)
                        for (int l = 0; l < QK_CFLAT_FB; l++)
                            acc[r][l] += wt[r] * xs[l];
                }
            for (int r = 0; r < QK_CFLAT_MB; r++) {
                int64_t m = mb * QK_CFLAT_MB + r;
                if (m < M)
                    memcpy(y + m * ldy + f0, acc[r], sizeof acc[r]);
            }
        }
}

void qk_cflat_dw_ref(const float *dy, int64_t ldd, int64_t M, const float *x, int64_t ldx, int64_t C, int64_t K,
                     int ntap, const int64_t *off, float *dw, int64_t dws, int accumulate)
{
    for (int64_t m = 0; m < M; m++)
        for (int64_t c = 0; c < C; c++)
            for (int t = 0; t < ntap; t++) {
                const float *d = dy + m * ldd, *xs = x + c * ldx + off[t];
                float lanes[16] = { 0 };
                for (int64_t f = 0; f < K; f += 16)
                    for (int l = 0; l < 16; l++)
                        lanes[l] += d[f + l] * xs[f + l];
                float acc = 0.0f;
                for (int l = 0; l < 16; l++)
                    acc += lanes[l];
                float *o = dw + (m * C + c) * dws + t;
                *o = accumulate ? *o + acc : acc;
            }
}

/* base/cpu.c detects once and caches; no second cache here. */
static int use_avx512(void)
{
    return qk_cpu_isa() >= QK_ISA_AVX512;
}

void qk_cflat_dw(const float *dy, int64_t ldd, int64_t M, const float *x, int64_t ldx, int64_t C, int64_t K,
                 int ntap, const int64_t *off, float *dw, int64_t dws, int accumulate)
{
    if (use_avx512() && ntap <= QK_CFLAT_MAXTAP)
        qk_cflat_dw__avx512(dy, ldd, M, x, ldx, C, K, ntap, off, dw, dws, accumulate);
    else
        qk_cflat_dw_ref(dy, ldd, M, x, ldx, C, K, ntap, off, dw, dws, accumulate);
}

void qk_cflat_fwd(const float *wpk, int64_t M, int64_t C, int kk, const int64_t *off, const float *x, int64_t ldx,
                  int64_t F, const float *b, float *y, int64_t ldy)
{
    if (use_avx512())
        qk_cflat_fwd__avx512(wpk, M, C, kk, off, x, ldx, F, b, y, ldy);
    else
        qk_cflat_fwd_ref(wpk, M, C, kk, off, x, ldx, F, b, y, ldy);
}
