/* Op fusion decided at plan time, without changing the graph.
 *
 * In a plan (training or inference) a BatchNormalization, or an Add of two
 * float tensors of the output's shape, whose only output feeds exactly one
 * node, a float activation, and is not a graph output, runs that activation
 * itself: its forward writes the activation's output (bit for bit the two
 * passes), its backward applies the activation's mask to the activation's
 * output gradient, and the activation does nothing. The producer's own
 * output is then never written. The activation is a Relu, or (after a
 * BatchNormalization only) a Clip whose bounds are attributes or constant
 * initializers (ReLU6). After a BatchNormalization the activation's mask
 * (Relu: z > 0; Clip: min <= z <= max, its own backward) is taken from
 * z = a * x + b recomputed from the normalization's input with the
 * forward's a, b (bit for bit the z the forward clipped), so the backward
 * does not read the activation's output; after an Add, Relu's mask is
 * read from its output.
 * Both ops ask qk_act_fused at reshape, so they agree; it returns the
 * activation's node index and fills *act, or returns -1. The graph option
 * no_fuse (qk_plan_options) turns off every fusion below. */
#ifndef QKIT_OPS_FUSE_H
#define QKIT_OPS_FUSE_H

#include "qkit/graph.h"

typedef struct qk_fused_act {
    int node; /* the activation's node index, or -1 */
    int out;  /* its output value, or -1 */
    int clip; /* 0: Relu; 1: Clip, bounds by qk_clip_bounds */
} qk_fused_act;

int qk_act_fused(const qk_graph *g, const qk_node *producer, int training, qk_fused_act *act);

/* A fused Clip's bounds (its attributes, or its constant min/max inputs;
 * absent: -FLT_MAX / FLT_MAX). */
void qk_clip_bounds(const qk_graph *g, const qk_node *clip, float *lo, float *hi);

/* In a training plan a Conv whose output feeds only a BatchNormalization
 * (as its X) and is not a graph output computes the moments of each
 * (sample, channel) row of its output while the row is in cache, and the
 * BatchNormalization combines those instead of reading its input once
 * more. qk_conv_bn_fused returns that BatchNormalization's node index, or
 * -1; qk_conv_row_moments gives the rows of the conv's last forward,
 * [N][M][3] as qk_row_moments writes them. */
int qk_conv_bn_fused(const qk_graph *g, const qk_node *conv, int training);
const double *qk_conv_row_moments(const qk_node *conv);

/* In an inference plan a Conv whose output feeds only a BatchNormalization
 * in eval mode (running statistics, parameters that are initializers, no
 * extra outputs; the output not a graph output) applies that
 * normalization itself, row by row while each output row is in cache, with
 * the same per-channel a, b and the same kernel as the BatchNormalization
 * (bit for bit the two passes), and writes the BatchNormalization's output
 * (or its fused Relu's, qk_relu_fused). The BatchNormalization then does
 * nothing; the Conv's own output is never written. Returns the
 * BatchNormalization's node index, or -1. Off with no_fuse and in
 * reference plans. */
int qk_conv_bn_folded(const qk_graph *g, const qk_node *conv, int training);

/* out = { shift, sum(x - shift), sum((x - shift)^2) } over x[0..n), shift =
 * x[0] (0 for an empty row): the one way batch-norm statistics start. */
void qk_row_moments(const float *x, int64_t n, double out[3]);

/* In an inference plan a DequantizeLinear (per tensor, or per channel on
 * axis 1 of a 4-D input) whose output feeds only a Clip with constant
 * bounds (or directly a GlobalAveragePool), whose output feeds only a
 * GlobalAveragePool, none of them a graph output, computes the pool's
 * output itself, one (sample, channel) plane at a time: the plane
 * dequantized and clipped into the worker's scratch, then summed and
 * divided as the pool does (bit for bit the three passes, none of the two
 * float tensors in between written). The tail of a TensorRT-style network
 * (conv -> int32 -> dequantize -> ReLU6 -> global average). Returns the
 * GlobalAveragePool's node index and sets *clip (the Clip's, or -1), or
 * returns -1. Off with no_fuse and in reference plans. */
int qk_dq_gap_fused(const qk_graph *g, const qk_node *dq, int training, int *clip);
/* The DequantizeLinear that runs node n (a Clip or GlobalAveragePool) by
 * qk_dq_gap_fused, or -1. */
int qk_dq_gap_runner(const qk_graph *g, const qk_node *n, int training);

/* The node producing value v, or -1. */
int qk_producer(const qk_graph *g, int v);

#endif
