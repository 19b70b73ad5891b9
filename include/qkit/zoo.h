/* qkit model zoo: the reference architectures (docs/ARCHITECTURE.md; lenet, resnet8,
 * mobilenetv2s) built as float graphs with PyTorch-default initialization.
 *
 * Example (`make test` runs it):
 *
 *   qk_graph *g;
 *   if (qk_zoo_build("resnet8", 1, &g) != QK_OK)
 *       return 1;
 *   qk_status st = qk_ops_bind(g);              // the zoo does not bind operators
 *   if (st == QK_OK)
 *       st = qk_graph_plan(g, 16, 1, NULL);     // training plan, batch <= 16
 *   assert(qk_graph_param_count(g) == qk_zoo_param_count("resnet8"));
 *   qk_graph_destroy(g);
 *   if (st != QK_OK)
 *       return 1;
 * (end of example)
 *
 * Every graph has one input "input" float32 [-1,1,28,28] and one output
 * "logits" float32 [-1,10]; ONNX op types Conv, BatchNormalization (epsilon
 * 1e-5, momentum 0.9 = PyTorch momentum 0.1), Relu, Clip (ReLU6, min/max
 * as CONST inputs), MaxPool, Add, GlobalAveragePool, Flatten, Gemm
 * (transB = 1). Value names are the PyTorch state_dict names of the module
 * layout documented at the top of src/zoo/zoo.c (= bench/torch_peer.py), so
 * a state_dict / ONNX export maps 1:1 (e.g. "conv1.weight",
 * "layer2.0.bn1.running_var", "blocks.3.dw_conv.weight", "fc.bias").
 * BN running mean/var are CONST values; weights, BN scale/bias and biases are
 * PARAM values; BN scale/bias and biases are marked no_decay.
 * Initialization (same distribution as PyTorch defaults; the RNG is qkit's,
 * so values differ from PyTorch's): Conv/Linear weight and bias
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)), BN weight 1, bias 0, mean 0, var 1.
 * Metadata: "qkit.arch", "qkit.norm.mean", "qkit.norm.std".
 *
 * Thread safety: qk_zoo_build may be called from any thread (each call builds its own graph).
 */
#ifndef QKIT_ZOO_H
#define QKIT_ZOO_H

#include "graph.h"

#ifdef __cplusplus
extern "C" {
#endif

/* NULL-terminated list of architecture names. */
const char *const *qk_zoo_names(void);
/* Build arch with parameters drawn from an RNG seeded with seed (same seed,
 * same values). Unknown arch: QK_ERR_NOTFOUND listing the valid names. */
qk_status qk_zoo_build(const char *arch, uint64_t seed, qk_graph **out);
/* Trainable parameter count of arch as PyTorch reports it (sum of
 * p.numel() over model.parameters()); -1 for an unknown name. */
int64_t qk_zoo_param_count(const char *arch);

#ifdef __cplusplus
}
#endif
#endif
