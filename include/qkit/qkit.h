/* qkit: neural-network quantization toolkit — umbrella header.
 *
 * Train, import, evaluate and run a float CNN:
 *
 *   #include <qkit/qkit.h>
 *
 *   qk_pool *pool;  qk_pool_create(0, &pool);           // all cores
 *   qk_graph *g;
 *   if (qk_onnx_load("models/resnet8.onnx", &g) != QK_OK) {
 *       fprintf(stderr, "%s\n", qk_last_error());       // names file/node/value
 *       return 1;
 *   }
 *   qk_dataset test;  qk_dataset_load_dir(NULL, "t10k", &test);  // Fashion-MNIST
 *   qk_norm norm;     qk_norm_get(g, &norm);            // from model metadata
 *   qk_eval_result r; qk_evaluate(g, &test, norm, 256, pool, &r);
 *   printf("top-1 %.2f%%\n", 100 * r.top1);
 *   qk_dataset_free(&test); qk_graph_destroy(g); qk_pool_destroy(pool);
 *
 * Layers (one header each, dependencies pointing down):
 *   base.h   status codes, errors, allocation, thread pool, RNG, progress
 *   cpu.h    CPU feature detection (once, in one place)
 *   tensor.h n-d tensors
 *   graph.h  values, nodes, planned executor, reverse-mode autodiff
 *   ops.h    float operators (ONNX semantics), GEMM
 *   onnx.h   ONNX import/export, TensorProto files, running a model
 *   data.h   IDX datasets, batching, augmentation, normalization
 *   train.h  optimizers, schedules, trainer, checkpoints, evaluation
 *   zoo.h    reference architectures (lenet, resnet8, mobilenetv2s)
 *   int.h    integer kernels: requantization, int8 GEMM/conv
 *   qrun.h   integer inference of a quantized QDQ model (lowering, runner)
 *   registry.h  the operators of every layer joined: qk_ops_bind,
 *            qk_onnx_load (read + bind)
 */
#ifndef QKIT_QKIT_H
#define QKIT_QKIT_H

#include "base.h"
#include "cpu.h"
#include "tensor.h"
#include "graph.h"
#include "ops.h"
#include "onnx.h"
#include "data.h"
#include "train.h"
#include "zoo.h"
#include "quant.h"
#include "backend.h"
#include "ptq.h"
#include "int.h"
#include "qrun.h"
#include "fold.h"
#include "deploy.h"
#include "registry.h"

#endif
