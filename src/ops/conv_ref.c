/* Reference convolution: the specification the fast paths in conv.c are
 * tested against. Direct loops over 3 spatial dims (1-D/2-D are 3-D with
 * leading unit dims, see src/graph/window.h); any group; serial; sums in float in
 * the natural loop order. ONNX Conv semantics:
 *   y[n, m, o] = b[m] + sum_{c in group(m), k} w[m, c, k] * x[n, g*Cg + c, o*s - pb + k*d]
 * with out-of-range input positions reading 0. */
#include "conv_kern.h"

void qk_conv_ref_forward(const qk_window *w, int64_t N, int64_t C, int64_t M, int64_t group,
                         const float *x, const float *wt, const float *b, float *y)
{
    const int64_t cg = C / group, mg = M / group;
    const int64_t isz = qk_win_in_size(w), osz = qk_win_out_size(w), ksz = qk_win_k_size(w);
    for (int64_t n = 0; n < N; n++)
        for (int64_t m = 0; m < M; m++) {
            const int64_t g = m / mg;
            float *yp = y + (n * M + m) * osz;
            for (int64_t o0 = 0; o0 < w->out[0]; o0++)
                for (int64_t o1 = 0; o1 < w->out[1]; o1++)
                    for (int64_t o2 = 0; o2 < w->out[2]; o2++) {
                        float acc = b ? b[m] : 0.0f;
                        for (int64_t c = 0; c < cg; c++) {
                            const float *xp = x + (n * C + g * cg + c) * isz;
                            const float *wp = wt + (m * cg + c) * ksz;
                            for (int64_t k0 = 0; k0 < w->k[0]; k0++) {
                                int64_t i0 = o0 * w->s[0] - w->pb[0] + k0 * w->d[0];
                                if (i0 < 0 || i0 >= w->in[0])
                                    continue;
                                for (int64_t k1 = 0; k1 < w->k[1]; k1++) {
                                    int64_t i1 = o1 * w->s[1] - w->pb[1] + k1 * w->d[1];
                                    if (i1 < 0 || i1 >= w->in[1])
                                        continue;
                                    for (int64_t k2 = 0; k2 < w->k[2]; k2++) {
                                        int64_t i2 = o2 * w->s[2] - w->pb[2] + k2 * w->d[2];
                                        if (i2 < 0 || i2 >= w->in[2])
                                            continue;
                                        acc += wp[(k0 * w->k[1] + k1) * w->k[2] + k2] *
                                               xp[(i0 * w->in[1] + i1) * w->in[2] + i2];
                                    }
                                }
                            }
                        }
                        yp[(o0 * w->out[1] + o1) * w->out[2] + o2] = acc;
                    }
        }
}

void qk_conv_ref_backward(const qk_window *w, int64_t N, int64_t C, int64_t M, int64_t group,
                          const float *x, const float *wt, const float *dy, float *dx, float *dw,
                          float *db)
{
    const int64_t cg = C / group, mg = M / group;
    const int64_t isz = qk_win_in_size(w), osz = qk_win_out_size(w), ksz = qk_win_k_size(w);
    for (int64_t n = 0; n < N; n++)
        for (int64_t m = 0; m < M; m++) {
            const int64_t g = m / mg;
            const float *dyp = dy + (n * M + m) * osz;
            for (int64_t o0 = 0; o0 < w->out[0]; o0++)
                for (int64_t o1 = 0; o1 < w->out[1]; o1++)
                    for (int64_t o2 = 0; o2 < w->out[2]; o2++) {
                        float gy = dyp[(o0 * w->out[1] + o1) * w->out[2] + o2];
                        if (db)
                            db[m] += gy;
                        for (int64_t c = 0; c < cg; c++) {
                            const int64_t xoff = (n * C + g * cg + c) * isz, woff = (m * cg + c) * ksz;
                            for (int64_t k0 = 0; k0 < w->k[0]; k0++) {
                                int64_t i0 = o0 * w->s[0] - w->pb[0] + k0 * w->d[0];
                                if (i0 < 0 || i0 >= w->in[0])
                                    continue;
                                for (int64_t k1 = 0; k1 < w->k[1]; k1++) {
                                    int64_t i1 = o1 * w->s[1] - w->pb[1] + k1 * w->d[1];
                                    if (i1 < 0 || i1 >= w->in[1])
                                        continue;
                                    for (int64_t k2 = 0; k2 < w->k[2]; k2++) {
                                        int64_t i2 = o2 * w->s[2] - w->pb[2] + k2 * w->d[2];
                                        if (i2 < 0 || i2 >= w->in[2])
                                            continue;
                                        int64_t xi = xoff + (i0 * w->in[1] + i1) * w->in[2] + i2;
                                        int64_t wi = woff + (k0 * w->k[1] + k1) * w->k[2] + k2;
                                        if (dx)
                                            dx[xi] += wt[wi] * gy;
                                        if (dw)
                                            dw[wi] += x[xi] * gy;
                                    }
                                }
                            }
                        }
                    }
        }
}
