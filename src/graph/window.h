/* Sliding-window geometry shared by Conv, MaxPool and AveragePool (ONNX
 * kernel_shape / strides / pads / dilations / auto_pad / ceil_mode).
 * Internal to the library, shared by the float operators (src/ops) and the
 * integer ones (src/int); not a public header.
 *
 * A qk_window always has 3 spatial dims; a 1-D or 2-D window is stored
 * right-aligned with leading unit dims (in = out = k = s = d = 1, pads 0),
 * which leaves the NC[D]HW memory layout unchanged. So a 1-D conv is a 2-D
 * conv with H = 1, and every reference loop nest is 3-deep. */
#ifndef QK_GRAPH_WINDOW_H
#define QK_GRAPH_WINDOW_H

#include "qkit/graph.h"

enum { QK_PAD_NOTSET = 0, QK_PAD_SAME_UPPER = 1, QK_PAD_SAME_LOWER = 2, QK_PAD_VALID = 3 };

/* Attributes as written on the node (counts 0 = absent). */
typedef struct qk_win_attrs {
    int auto_pad;
    int nk, ns, nd, np;
    int64_t k[3], s[3], d[3], p[6]; /* p: ONNX order [b0, b1, .., e0, e1, ..] */
    int ceil_mode;
} qk_win_attrs;

typedef struct qk_window {
    int nsp;                                     /* real spatial rank 1..3 */
    int64_t in[3], out[3], k[3], s[3], d[3];
    int64_t pb[3], pe[3];                        /* pads at begin / end */
} qk_window;

/* Parse and validate kernel_shape, strides, dilations, pads, auto_pad,
 * ceil_mode of node n (op: name for messages). */
qk_status qk_win_parse(const qk_node *n, const char *op, qk_win_attrs *a);

/* Output size and pads for spatial input dims in[0..nsp) and kernel
 * kernel[0..nsp) (from the weight for Conv, from kernel_shape for pools):
 *   NOTSET: out = floor_or_ceil((in + pb + pe - ((k-1)d+1)) / s) + 1; with
 *           ceil_mode the last window must start inside input + begin pad
 *           (PyTorch / ONNX reference rule);
 *   VALID:  pads 0, out = floor((in - ((k-1)d+1)) / s) + 1;
 *   SAME_*: out = ceil(in / s), total pad max(0, (out-1)s + (k-1)d+1 - in),
 *           the odd unit at the end (UPPER) or the beginning (LOWER).
 * Fails (QK_ERR_SHAPE) when an output dim would be < 1. */
qk_status qk_win_resolve(const qk_win_attrs *a, const char *op, int nsp, const int64_t *in,
                         const int64_t *kernel, qk_window *w);

/* Number of spatial positions (product of the 3 dims). */
static inline int64_t qk_win_in_size(const qk_window *w) { return w->in[0] * w->in[1] * w->in[2]; }
static inline int64_t qk_win_out_size(const qk_window *w) { return w->out[0] * w->out[1] * w->out[2]; }
static inline int64_t qk_win_k_size(const qk_window *w) { return w->k[0] * w->k[1] * w->k[2]; }

#endif
