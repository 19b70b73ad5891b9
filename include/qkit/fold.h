/* qkit graph rewrite: fold BatchNormalization into the preceding Conv or
 * Gemm (docs/ALGORITHMS.md §6, "Fold (Eq.)"; strategy S0 there when done
 * before QAT, and the inference form of every strategy).
 *
 * Example (`make test` runs it):
 *
 *   qk_graph *g;
 *   if (qk_onnx_load("models/resnet8.onnx", &g) != QK_OK)   // bound, not planned
 *       return 1;
 *   int n;
 *   if (qk_fold_bn(g, &n) != QK_OK) {
 *       fprintf(stderr, "%s\n", qk_last_error());
 *       return 1;
 *   }
 *   assert(n == 9);   // every BatchNormalization of resnet8 is gone; conv*.bias added
 *   qk_status st = qk_graph_plan(g, 128, 0, NULL);   // plan again: folding unplans
 *   qk_graph_destroy(g);                             // (or qk_onnx_save it)
 *   if (st != QK_OK)
 *       return 1;
 * (end of example)
 *
 * Worked example (docs/ALGORITHMS.md §6 test): W = [0.5, -1.0], b = 0.1,
 * gamma = 2, beta = 0.3, mean = 0.2, var = 0.25, eps = 0 ->
 * W_f = [2, -4], b_f = -0.1; for x = [1, 0.5] the folded conv gives -0.1,
 * as BN(conv(x)) does.
 *
 * Thread safety: folds modify their graph: graph.h's rule.
 */
#ifndef QKIT_FOLD_H
#define QKIT_FOLD_H

#include "graph.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fold every BatchNormalization B whose input X is the output of a node P
 * where:
 *   - P is a Conv (any group, rank, stride) with weight W [M, C/group, ...],
 *     or a Gemm whose B input is the weight W ([M, K] with transB = 1,
 *     [K, M] with transB = 0) with C absent (and beta 1) or a rank-1 [M]
 *     initializer with beta = 1; alpha and transA may be anything;
 *   - X is read by B only (as its input 0) and is not a graph output;
 *   - B's scale, B, mean, var are float32 [M] initializers; B's optional
 *     running-statistics outputs are unused;
 *   - W (and P's bias, if any) are float32 initializers read by P only and
 *     not graph outputs. A shared W or bias is left alone with a warning
 *     (qk_log), since scaling it in place would change the other reader.
 * Folding, per output channel m, in double, stored as float32:
 *     s_m = scale_m / sqrt(var_m + epsilon)
 *     W_f[m, ...] = W[m, ...] * s_m
 *     b_f[m] = B_m + (b_m - mean_m) * s_m            (b = 0 when P had none)
 * P then writes B's output value (so consumers and graph outputs keep their
 * names), B and the values only it used (its parameters, X) are removed.
 * When P had no bias, a new PARAM value [M] (no_decay = 1) is added, named
 * "<prefix>.bias" for a weight named "<prefix>.weight" (PyTorch's name for a
 * fused conv), else "<weight name>_bias", made unique if taken.
 * Running statistics are used whatever the mode: a BN with training_mode = 1
 * (batch statistics) or a graph planned for training is folded with its
 * running mean/var, which is what it computes at inference; batch-statistics
 * behaviour is not preserved. Chains (P -> BN -> BN) fold repeatedly.
 *
 * The graph is unplanned (replan before forward), node and value indices
 * change (qk_graph_remove_nodes), g->order is recomputed; bound operators
 * stay bound. *n_folded (may be NULL) receives the number of BN nodes folded
 * (0 is not an error).
 * Errors: QK_ERR_ARG (g NULL); QK_ERR_NOMEM: some BN may already be folded
 * and the graph is valid, unless the final node removal itself ran out of
 * memory (the message then says the graph must be destroyed);
 * QK_ERR_FORMAT (the graph cannot be ordered afterwards: a cycle or an
 * undefined value that was already there). */
qk_status qk_fold_bn(qk_graph *g, int *n_folded);

#ifdef __cplusplus
}
#endif
#endif
