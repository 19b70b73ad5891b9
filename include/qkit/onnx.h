/* qkit onnx layer: ONNX model and tensor import/export through protobuf-c
 * (code generated at build time from the system's onnx.proto), and a helper
 * that runs a loaded model on given input tensors.
 *
 * qk_onnx_read gives an unbound graph (the onnx layer knows no operator);
 * qk_onnx_load (qkit/registry.h) reads and binds with every operator qkit
 * has, which is what most callers want.
 *
 * Example (`make test` runs it):
 *
 *   qk_graph *g;
 *   if (qk_onnx_load("models/lenet.onnx", &g) != QK_OK) {
 *       fprintf(stderr, "qkit: %s\n", qk_last_error());
 *       return 1;
 *   }
 *   qk_tensor x;                                   // or qk_onnx_load_tensor("input_0.pb", ...)
 *   qk_tensor_alloc(&x, QK_F32, 4, (int64_t[]){2, 1, 28, 28});   // two zero images
 *   int n_out; qk_tensor *out;
 *   qk_status st = qk_onnx_run(g, 1, &x, NULL, &n_out, &out);   // plans at x's batch
 *   if (st == QK_OK) {
 *       assert(n_out == 1 && out[0].dims[0] == 2 && out[0].dims[1] == 10);
 *       qk_onnx_free_tensors(out, n_out);          // (qk_onnx_save_tensor writes one)
 *   }
 *   qk_tensor_free(&x);
 *   qk_graph_destroy(g);                           // (qk_onnx_save writes the model)
 *   if (st != QK_OK)
 *       return 1;
 * (end of example)
 *
 * Data types: float32, uint8, int8, int32, int64 (qk_dtype = ONNX enum);
 * ONNX BOOL tensors are read as uint8 (0/1). Every other ONNX data type is
 * QK_ERR_UNSUPPORTED with a message naming the tensor and the type.
 *
 * Every function returns QK_OK or an error status with a message (see
 * qk_last_error()) that names the file and what is wrong; on error nothing
 * is left allocated and *out / outputs are untouched or NULL.
 *
 * Thread safety: loading, saving and running different models, or the same file
 * read by several threads, may run in parallel; the graph they fill or read
 * follows graph.h's rule.
 */
#ifndef QKIT_ONNX_H
#define QKIT_ONNX_H

#include "graph.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Lowest / highest default-domain opset qk_onnx_read accepts. Operators
 * read the forms of every opset in that range (attributes that became
 * inputs: Pad pads, Slice starts/ends, Split split, Squeeze/Unsqueeze and
 * Reduce* axes, Clip min/max, Upsample/Resize scales; Softmax's axis
 * semantics before 13; the Resize-10 coordinates) and refuse attribute
 * values they do not implement (QK_ERR_UNSUPPORTED naming the node). A
 * model with an older opset (>= 1) is also accepted when every one of its
 * operators has the same definition at that opset as at opset 11 (for
 * example GlobalAveragePool-1, HardSigmoid-6). */
#define QK_ONNX_OPSET_MIN 7
#define QK_ONNX_OPSET_MAX 21

/* Read an ONNX ModelProto into a new graph, not bound (bind it with
 * qk_graph_bind and the operator tables of the layers the caller knows, or
 * use qk_onnx_load of qkit/registry.h) and not planned. Mapping:
 *   - graph inputs that are not initializers -> qk_graph_add_input; a
 *     symbolic or missing dim 0 becomes -1 (dynamic batch); any other
 *     symbolic dim is an error naming the input;
 *   - initializers -> qk_graph_add_init: PARAM for float tensors used as
 *     weights, CONST for the rest (non-float tensors, BatchNormalization
 *     running mean/var, Quantize/DequantizeLinear and QLinear* scales and
 *     zero points, Clip bounds, Dropout ratio, unused tensors);
 *     PARAMs of rank <= 1 get no_decay = 1;
 *   - Constant nodes -> CONST initializers named after their output;
 *   - nodes with INT, FLOAT, STRING, INTS, FLOATS, TENSOR attributes; an
 *     empty input name is an absent optional input (-1); an empty output
 *     name is dropped when trailing, else given a fresh unused name;
 *   - graph outputs (an initializer or input may be an output); the
 *     declared dtype/shape of an activation output is stored in its value
 *     as a hint (plan replaces it); metadata_props -> graph meta; the graph
 *     name; g->opset = the model's default-domain opset.
 * Errors: QK_ERR_IO (missing/unreadable file), QK_ERR_FORMAT (not a
 * protobuf ModelProto, value used but never defined, duplicate names, bad
 * tensor sizes), QK_ERR_UNSUPPORTED (opset, operator domain other than the
 * default and "ai.qkit", data type, external data, attribute type,
 * non-tensor inputs), QK_ERR_NOMEM. An operator qkit lacks is reported by
 * the binding (qk_graph_bind), not here. */
qk_status qk_onnx_read(const char *path, qk_graph **out);

/* The same from a serialized ModelProto in memory; `label` names the
 * source in messages (e.g. the file name). */
qk_status qk_onnx_read_buffer(const void *data, size_t len, const char *label, qk_graph **out);

/* Write g as an ONNX model: ir_version 8, default-domain opset g->opset (13
 * if unset), producer "qkit"; every PARAM/CONST value as an initializer
 * with raw_data; graph inputs with dim 0 written as the symbolic "N" when
 * dynamic; outputs with dtype and, when known, shape (dim 0 "N" when it
 * follows the dynamic batch); node attributes; metadata_props from the
 * graph meta. The file is written atomically: a temporary file in the same
 * directory, fsync, rename; on any error the temporary file is removed and
 * `path` is untouched. */
qk_status qk_onnx_save(const qk_graph *g, const char *path);

/* Read one TensorProto (.pb, the ONNX test-data format) into *t (owned).
 * *name_out, when name_out is not NULL, receives the tensor's name (a
 * qk_malloc'd string, "" if none; free with qk_free). */
qk_status qk_onnx_load_tensor(const char *path, qk_tensor *t, char **name_out);
/* Write t as a TensorProto with raw_data (name may be NULL); atomic like
 * qk_onnx_save. */
qk_status qk_onnx_save_tensor(const qk_tensor *t, const char *name, const char *path);

/* A model exported with a fixed batch of 1 (torch.onnx.export's default):
 * every float input of rank >= 2 whose dim 0 is 1 becomes dynamic, Reshape
 * targets folded to that batch follow it, and a warning says so once per
 * input. Returns the number of inputs changed (0: nothing to do). Data
 * loops that feed such a model batches (evaluation, calibration) need it;
 * qk_onnx_run does it by itself when a larger batch arrives. */
int qk_onnx_dynamic_batch(qk_graph *g);

/* Run a loaded graph in inference mode on n_in tensors given in the order
 * of g->inputs (graph inputs, initializers excluded).
 *   - inputs declared with a dynamic dim 0 take their batch from the given
 *     tensors (all dynamic inputs must agree); their other dims and rank
 *     must match the declaration;
 *   - inputs with fixed dims must match exactly;
 *   - dtype must match; mismatches are QK_ERR_SHAPE / QK_ERR_ARG naming the
 *     input and both shapes.
 * The graph is planned (training = 0, with `pool`, which must outlive the
 * plan) at the batch found, or only re-batched when an existing eval plan
 * with the same pool is large enough; it stays planned afterwards.
 * On success *outputs is a qk_malloc'd array of *n_out owned tensors
 * (deep copies of g->outputs in order); free with qk_onnx_free_tensors. */
qk_status qk_onnx_run(qk_graph *g, int n_in, const qk_tensor *inputs, qk_pool *pool,
                      int *n_out, qk_tensor **outputs);

/* qk_onnx_run on tensors read from .pb files. When every file's tensor
 * name is the name of a distinct graph input, files are matched to inputs
 * by name; otherwise by position. */
qk_status qk_onnx_run_files(qk_graph *g, int n_files, const char *const *paths, qk_pool *pool,
                            int *n_out, qk_tensor **outputs);

/* Turn graph input `name` into a CONST initializer holding a copy of
 * `value` (dtype and shape checked like qk_onnx_run; unplans the graph).
 * qkit plans static shapes, so inputs that decide a shape (Reshape's
 * shape, Squeeze/Unsqueeze axes, ...) must be constants at plan time; the
 * ONNX node tests feed them as graph inputs, and `qkit run` may too.
 * Errors: QK_ERR_NOTFOUND (no such graph input), QK_ERR_ARG/QK_ERR_SHAPE
 * (value does not match the declaration), QK_ERR_NOMEM. */
qk_status qk_onnx_freeze_input(qk_graph *g, const char *name, const qk_tensor *value);

/* Free an array returned by qk_onnx_run / qk_onnx_run_files (NULL is ok). */
void qk_onnx_free_tensors(qk_tensor *ts, int n);

/* ONNX TensorProto.DataType name ("FLOAT", "DOUBLE", ...) for messages. */
const char *qk_onnx_dtype_name(int onnx_type);

#ifdef __cplusplus
}
#endif
#endif
