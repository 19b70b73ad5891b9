/* qkit: neural-network quantization toolkit — umbrella header.
 *
 * Train, import, evaluate and run a float CNN:
 *
 * Example (`#include <qkit/qkit.h>`; `make test` runs it):
 *
 *   qk_pool *pool;
 *   if (qk_pool_create(0, &pool) != QK_OK)              // all cores
 *       return 1;
 *   qk_graph *g;
 *   if (qk_onnx_load("models/resnet8.onnx", &g) != QK_OK) {
 *       fprintf(stderr, "%s\n", qk_last_error());       // names file/node/value
 *       return 1;
 *   }
 *   qk_dataset test;
 *   if (qk_dataset_load_dir(NULL, "t10k", &test) != QK_OK)   // Fashion-MNIST
 *       return 1;
 *   qk_dataset part = qk_dataset_view(&test, 0, 500);
 *   qk_norm norm = qk_norm_default();                  // unless the model has its own:
 *   qk_graph_get_norm(g, &norm.mean, &norm.std);       // from model metadata
 *   qk_eval_result r;
 *   qk_status st = qk_evaluate(g, &part, norm, 100, pool, &r);
 *   if (st == QK_OK)
 *       printf("top-1 %.2f%%\n", 100 * r.top1);
 *   qk_dataset_free(&test); qk_graph_destroy(g); qk_pool_destroy(pool);
 *   if (st != QK_OK)
 *       return 1;
 * (end of example)
 *
 * Public headers (one per layer, or a few for the larger layers; listed
 * bottom up, dependencies pointing down; docs/ARCHITECTURE.md):
 *   version.h  QKIT_VERSION_MAJOR/MINOR/PATCH, qk_version (the library's)
 *   base.h     status codes, errors, logging, allocation, thread pool, RNG, clock
 *   cpu.h      CPU feature detection (once, in one place)
 *   tensor.h   n-d tensors
 *   graph.h    values, nodes, planned executor, reverse-mode autodiff, edits
 *   ops.h      float operators (ONNX semantics), GEMM
 *   onnx.h     ONNX import/export, TensorProto files, running a model
 *   data.h     IDX datasets, batching, augmentation, normalization
 *   train.h    optimizers, schedules, trainer, checkpoints, evaluation
 *   zoo.h      reference architectures (lenet, resnet8, mobilenetv2s)
 *   quant.h    quantizer math, observers, ACIQ, bias correction, hooks
 *   backend.h  hardware backend profiles (data)
 *   fold.h     BatchNormalization folding into Conv / Gemm
 *   ptq.h      prepare, post-training calibration, the QDQ model file
 *   analyze.h  layer-by-layer analysis (which layer hurts), mixed precision
 *   qat.h      quantization-aware training: learnable quantizers, the QAT run
 *   deploy.h   per-backend deploy files from a QDQ model
 *   int.h      integer kernels: requantization, int8 GEMM/conv, add, pooling
 *   qrun.h     integer inference of a QDQ model (lowering, runner)
 *   registry.h the operators of every layer joined: qk_ops_bind, qk_onnx_load
 *   flat.h     the flat API for bindings (ctypes): handles, options by name, JSON results
 *   bench.h    the benchmark matrix: config, runner, results, MQBench metrics, report
 *   qkit.h     this umbrella: includes all of the above
 * Each header that opens with an "Example" has it compiled and run by
 * `make test` (tools/header_examples.sh), so the examples match the API.
 *
 * Thread safety: each header states its rule under "Thread safety"; in short, an
 * object (graph, model, pool, observer) is used by one thread at a time,
 * distinct objects in parallel, and errors are per thread.
 */
#ifndef QKIT_QKIT_H
#define QKIT_QKIT_H

#include "version.h"
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
#include "analyze.h"
#include "qat.h"
#include "int.h"
#include "qrun.h"
#include "fold.h"
#include "deploy.h"
#include "registry.h"
#include "flat.h"
#include "bench.h"

#endif
