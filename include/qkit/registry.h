/* qkit top layer: every operator of every layer in one place.
 *
 * Each layer exports the table of its own operators (ops.h
 * qk_float_op_table, quant.h qk_quant_op_table, int.h qk_int_op_table);
 * this layer, above all of them, joins the three. Adding an operator
 * touches only its own layer's list.
 *
 *   qk_graph *g;
 *   if (qk_onnx_load("model.onnx", &g) != QK_OK)   // read + qk_ops_bind
 *       fprintf(stderr, "%s\n", qk_last_error());
 *
 * Thread safety: the operator tables are read-only: qk_ops_bind and
 * qk_onnx_load may run in parallel on different graphs.
 */
#ifndef QKIT_REGISTRY_H
#define QKIT_REGISTRY_H

#include "graph.h"
#include "data.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bind every node whose op is NULL with the operators of all layers and
 * run its init (qk_graph_bind: errors name the node and operator). */
qk_status qk_ops_bind(qk_graph *g);
/* Operator by op_type (any domain), or NULL. */
const qk_op *qk_op_find(const char *op_type);
/* NULL-terminated list of every supported op_type (for `qkit info`, docs). */
const char *const *qk_op_names(void);

/* Read an ONNX model (qk_onnx_read / qk_onnx_read_buffer, onnx.h) and bind
 * it with qk_ops_bind; bound, not planned. Errors: those of the reader, and
 * QK_ERR_UNSUPPORTED naming the file, node and operator for an operator
 * qkit lacks. */
qk_status qk_onnx_load(const char *path, qk_graph **out);
/* The same from a serialized ModelProto in memory; `label` names the
 * source in messages (e.g. the file name). */
qk_status qk_onnx_load_buffer(const void *data, size_t len, const char *label, qk_graph **out);

/* ---- data sources by path (here because the .pb reader is the onnx layer's) ----
 * kind: QK_DATA_IDX (a directory of MNIST-format IDX files; NULL or "" is
 * QK_FASHION_MNIST_DIR), QK_DATA_NPY (a .npy file), QK_DATA_PB (a directory
 * of ONNX TensorProto .pb files, or of test_data_set_* folders holding
 * input_*.pb: the ONNX test-data format), QK_DATA_FOLDER (an image folder).
 * Frozen values. */
typedef enum qk_data_kind { QK_DATA_IDX = 1, QK_DATA_FOLDER = 2, QK_DATA_NPY = 3, QK_DATA_PB = 4 } qk_data_kind;
/* The kind of path (by name and contents); QK_ERR_IO when it does not exist. */
qk_status qk_data_kind_of(const char *path, qk_data_kind *kind);
/* Load any of them: split (IDX only: "train" or "t10k"), o (loader options;
 * NULL = none), pool for decoding (an image folder with o->background
 * keeps decoding after this returns: qk_dataset_wait, data.h). */
qk_status qk_data_open(const char *path, const char *split, const qk_data_opts *o, qk_pool *pool, qk_dataset *ds);
/* The .pb form: the tensors (float32 or uint8, [k,C,H,W] or [C,H,W]) in
 * name order, concatenated; only input_*.pb when output_*.pb are present;
 * labels from o->labels (.npy). Errors name the file and its shape. */
qk_status qk_dataset_load_pb_dir(const char *dir, const qk_data_opts *o, qk_dataset *ds);

#ifdef __cplusplus
}
#endif
#endif
