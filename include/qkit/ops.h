/* qkit ops layer: float operators with ONNX semantics (forward, backward,
 * shape rule), a plain reference and, where speed matters, a fast path.
 *
 * Every operator is one qk_op entry in qk_float_op_table (listed in
 * src/ops/registry.c). qk_graph_bind(g, &qk_float_op_table, 1) binds a
 * graph of float operators; qk_ops_bind (qkit/registry.h) binds with the
 * operators of every layer.
 *
 * Thread safety: the operators keep their state in their node (see graph.h);
 * qk_sgemm and the other free functions may be called from any thread on
 * distinct outputs, and leave the host's OpenMP/OpenBLAS thread settings as
 * they were.
 */
#ifndef QKIT_OPS_H
#define QKIT_OPS_H

#include "graph.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The float operators (default ONNX domain). */
extern const qk_op_table qk_float_op_table;

/* Row-major single-precision GEMM, single-threaded (callers parallelize
 * with the pool): C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C.
 * transa/transb: 0 = as stored, 1 = transposed. kind picks the library
 * (qk_sgemm_kind, graph.h; operators pass their graph's option `sgemm`). */
void qk_sgemm(qk_sgemm_kind kind, int transa, int transb, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
              float *C, int64_t ldc);
/* The implementation kind names ("dnnl", "openblas" or "reference";
 * QK_SGEMM_DEFAULT gives the default's name). */
const char *qk_sgemm_name(qk_sgemm_kind kind);
/* "dnnl" | "openblas" | "reference" -> *out; QK_ERR_ARG otherwise. */
qk_status qk_sgemm_parse(const char *name, qk_sgemm_kind *out);

/* Multiply-accumulates of one node at the current shapes (0 for ops
 * without a GEMM-like core). */
int64_t qk_node_macs(const qk_graph *g, const qk_node *n);

#ifdef __cplusplus
}
#endif
#endif
