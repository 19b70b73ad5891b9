/* Values known while shapes are inferred ("known values"), shared by the
 * operators that read shape-like inputs (Reshape shape, Slice starts/ends,
 * Expand/Tile/ConstantOfShape shapes, Resize scales/sizes, Pad pads, Range,
 * Squeeze/Unsqueeze/Reduce* axes, ...). Not a public header.
 *
 * A value is known at infer time when it is
 *   - an initializer (CONST/PARAM value with data),
 *   - the output of a Constant node (its value tensor),
 *   - a graph input whose data buffer is set while shapes are inferred and
 *     that has at most QK_KV_MAX elements (qk_onnx_run points small inputs
 *     at the caller's tensors before it plans, so shape inputs fed as data,
 *     as the ONNX node tests do, are honoured; see src/onnx/run.c), or
 *   - output 0 of a node whose operator computes it at infer time from known
 *     inputs (Shape, Gather, Concat, Squeeze, Unsqueeze, Cast, Slice, Range,
 *     ConstantOfShape, Equal, Where, ...): such an operator keeps a
 *     qk_kv_state as the FIRST member of n->state and is listed in known.c.
 * Known values computed by operators are int64 or float32 with at most
 * QK_KV_MAX elements. */
#ifndef QK_OPS_KNOWN_H
#define QK_OPS_KNOWN_H

#include "light_util.h"

#define QK_KV_MAX 64

typedef struct qk_kv_state {
    int known;
    qk_tensor t; /* shape of the output, data = buf */
    union {
        int64_t i[QK_KV_MAX];
        float f[QK_KV_MAX];
    } buf;
} qk_kv_state;

/* Data of value v if known at infer time (see above), else NULL. */
const qk_tensor *qk_known(const qk_graph *g, const qk_value *v);

/* Start the known value of node n's output 0 (shape taken from y): returns
 * the buffer, or NULL (value stays unknown) when y is not int64/float32/uint8 or
 * has more than QK_KV_MAX elements. Clears `known`; the caller sets
 * qk_kv_done(n) once the buffer is filled. */
void *qk_kv_begin(qk_node *n, const qk_tensor *y);
static inline void qk_kv_done(qk_node *n) { ((qk_kv_state *)n->state)->known = 1; }

/* Integer vector from a known value (int64/int32, rank <= 1): QK_OK, or
 * QK_ERR_UNSUPPORTED naming `what` and the value when it is not known at
 * infer time, QK_ERR_SHAPE/FORMAT when it has the wrong type or size. */
qk_status qk_known_ints(const qk_graph *g, const qk_value *v, const char *what, int64_t *out, int max, int *n);

/* Float vector (float32 or integer data, rank <= 1), same contract. */
qk_status qk_known_floats(const qk_graph *g, const qk_value *v, const char *what, float *out, int max, int *n);

/* Element i of a known value of any supported dtype as double. */
double qk_known_at(const qk_tensor *t, int64_t i);

#endif
