/* Op fusion decided at plan time, without changing the graph.
 *
 * In a training plan a BatchNormalization, or an Add of two float tensors of
 * the output's shape, whose only output feeds exactly one node, a float
 * Relu, and is not a graph output, runs that Relu itself: its forward
 * writes the Relu's output (bit for bit the two passes), its backward reads
 * the Relu's output and output gradient (the Relu's mask folded in), and
 * the Relu does nothing. The producer's own output is then never written.
 * Both ops ask qk_relu_fused at reshape, so they agree; it returns the
 * Relu's node index, or -1 (always -1 when the environment sets
 * QKIT_FUSE=0). */
#ifndef QKIT_OPS_FUSE_H
#define QKIT_OPS_FUSE_H

#include "qkit/graph.h"

int qk_relu_fused(const qk_graph *g, const qk_node *producer, int training);

#endif
