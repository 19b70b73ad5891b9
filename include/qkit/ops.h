/* qkit ops layer: float operators with ONNX semantics (forward, backward,
 * shape rule), a plain reference and, where speed matters, a fast path.
 *
 * Every operator is one qk_op entry in qk_float_op_table (listed in
 * src/ops/registry.c). qk_graph_bind(g, &qk_float_op_table, 1) binds a
 * graph of float operators; qk_ops_bind (qkit/registry.h) binds with the
 * operators of every layer. */
#ifndef QKIT_OPS_H
#define QKIT_OPS_H

#include "graph.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The float operators (default ONNX domain). */
extern const qk_op_table qk_float_op_table;

/* Kernel selection: 0 = fast (default), 1 = plain reference everywhere.
 * Tests compare the two; exports use what the caller sets. */
void qk_ops_set_reference(int on);
int qk_ops_reference(void);

/* Row-major single-precision GEMM, single-threaded (callers parallelize
 * with the pool): C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C.
 * transa/transb: 0 = as stored, 1 = transposed. */
void qk_sgemm(int transa, int transb, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
              float *C, int64_t ldc);
/* Which implementation qk_sgemm uses ("dnnl", "openblas" or "reference"). */
const char *qk_sgemm_backend(void);
qk_status qk_sgemm_set_backend(const char *name);

/* Multiply-accumulates of one node at the current shapes (0 for ops
 * without a GEMM-like core). */
int64_t qk_node_macs(const qk_graph *g, const qk_node *n);

#ifdef __cplusplus
}
#endif
#endif
