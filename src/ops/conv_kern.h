/* Plain float kernels over a sliding window (geometry in
 * src/graph/window.h), private to src/ops: the N-d reference convolution
 * (conv_ref.c) and the depthwise 2-D kernels (conv_dw.c, conv_dw__avx512.c). */
#ifndef QKIT_OPS_CONV_KERN_H
#define QKIT_OPS_CONV_KERN_H

#include "../graph/window.h"

/* ---- reference convolution (conv_ref.c): N-d, any group; serial ----
 * x [N, C, in...], wt [M, C/group, k...], b [M] or NULL, y [N, M, out...]. */
void qk_conv_ref_forward(const qk_window *w, int64_t N, int64_t C, int64_t M, int64_t group,
                         const float *x, const float *wt, const float *b, float *y);
/* ADDS dX (if dx), dW (if dw), dB (if db) for output gradient dy. */
void qk_conv_ref_backward(const qk_window *w, int64_t N, int64_t C, int64_t M, int64_t group,
                          const float *x, const float *wt, const float *dy, float *dx, float *dw,
                          float *db);

/* ---- depthwise 2-D (conv_dw.c): np planes of one channel (e.g. several
 * samples): plane k is x + k*xs [H, W] -> y + k*ys [OH, OW]; weights
 * wk [kh, kw], bias b. scratch: qk_dw_scratch_floats(w, np, training). ---- */
size_t qk_dw_scratch_floats(const qk_window *w, int64_t np, int training);
void qk_dw_fwd(const qk_window *w, int64_t np, const float *x, int64_t xs, const float *wk, float b, float *y,
               int64_t ys, float *scratch);
/* dx (if non-NULL) = (write ? 0 : dx) + d/dx; dwk[kh*kw] and *db (if
 * non-NULL) are set (init) or added to, summed over the np planes. */
void qk_dw_bwd(const qk_window *w, int64_t np, const float *x, int64_t xs, const float *wk, const float *dy,
               int64_t ys, float *dx, int write, float *dwk, float *db, int init, float *scratch);

/* The direct AVX-512 kernels (conv_dw__avx512.c), which qk_dw_fwd and
 * qk_dw_bwd use on a CPU with AVX-512 when qk_dw_direct_ok(w): equal
 * strides 1 or 2, no dilation, kernel at most 5x5. Other CPUs and shapes
 * take the phase-plane method (conv_dw.c). */
int qk_dw_direct_ok(const qk_window *w);
size_t qk_dw_direct_scratch_floats(const qk_window *w);
void qk_dw_fwd__avx512(const qk_window *w, int64_t np, const float *x, int64_t xs, const float *wk, float b,
                       float *y, int64_t ys);
void qk_dw_bwd__avx512(const qk_window *w, int64_t np, const float *x, int64_t xs, const float *wk,
                       const float *dy, int64_t ys, float *dx, int write, float *dwk, float *db, int init,
                       float *scratch);

#endif
