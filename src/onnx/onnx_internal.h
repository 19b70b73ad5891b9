/* Internal helpers shared by the onnx layer's files (not installed). */
#ifndef QKIT_ONNX_INTERNAL_H
#define QKIT_ONNX_INTERNAL_H

#include "onnx.pb-c.h"
#include "qkit/onnx.h"

/* ONNX data type -> qk_dtype (BOOL reads as QK_U8); 0 when unsupported. */
qk_dtype qk_onnx_dtype_from_proto(int32_t onnx_type);

/* Decode a TensorProto (raw_data or the typed fields) into an owned *t.
 * `what` names the tensor in messages, e.g. "file 'm.onnx': initializer 'w'".
 * Errors: QK_ERR_UNSUPPORTED (data type, external data, segments),
 * QK_ERR_FORMAT (sizes that do not match the dims), QK_ERR_NOMEM. */
qk_status qk_onnx_tensor_from_proto(const Onnx__TensorProto *tp, qk_tensor *t, const char *what);

/* Fill *tp (initialized here) so that it points into t's dims and data
 * (no copy): raw_data, dims, data_type, name (may be NULL). *tp is valid
 * while t and name are. */
void qk_onnx_tensor_to_proto(const qk_tensor *t, const char *name, Onnx__TensorProto *tp);

/* Whole file into a qk_malloc'd buffer (*buf may be NULL when *len is 0).
 * Errors: QK_ERR_IO naming the file, QK_ERR_NOMEM. */
qk_status qk_onnx_read_file(const char *path, uint8_t **buf, size_t *len);

/* Serialize msg into `path` atomically: temp file in the same directory,
 * fsync, rename; on error the temp file is removed. Errors: QK_ERR_IO. */
qk_status qk_onnx_write_atomic(const char *path, const ProtobufCMessage *msg);

#endif
