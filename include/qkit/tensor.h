/* qkit tensor layer: dense n-d tensors, row-major (C order).
 * dtype values are ONNX TensorProto.DataType values (frozen).
 *
 * Thread safety: functions on different tensors may run in parallel; a tensor that
 * one thread modifies must not be read by another meanwhile.
 */
#ifndef QKIT_TENSOR_H
#define QKIT_TENSOR_H

#include "base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qk_dtype {
    QK_F32 = 1,
    QK_U8 = 2,
    QK_I8 = 3,
    QK_I16 = 5, /* int16 outputs of the integer output stage and quantized Add */
    QK_I32 = 6,
    QK_I64 = 7
} qk_dtype;

#define QK_MAX_DIMS 8

typedef struct qk_tensor {
    qk_dtype dtype;
    int ndim;                    /* 0 = scalar (numel 1) */
    int64_t dims[QK_MAX_DIMS];
    void *data;                  /* 64-byte aligned when owned */
    int owned;                   /* 1: qk_tensor_free releases data */
} qk_tensor;

size_t qk_dtype_size(qk_dtype dt);      /* 0 for unknown */
const char *qk_dtype_name(qk_dtype dt); /* "float32", "int8", ... */
/* Elements (0 when a dimension is <= 0; saturates at INT64_MAX). */
int64_t qk_tensor_numel(const qk_tensor *t);
/* Element i of an integer tensor (uint8, int8, int16, int32, int64) as int64;
 * 0 for float32. The caller checks i < numel and t->data != NULL. */
int64_t qk_tensor_int_at(const qk_tensor *t, int64_t i);
size_t qk_tensor_bytes(const qk_tensor *t); /* numel x element size; saturates at SIZE_MAX */
/* Bytes of a tensor of dtype dt and shape dims[ndim] into *bytes, computed
 * without overflow: 0 when the product of the dimensions (negative ones
 * count as 0) times the element size does not fit in int64 (*bytes = 0). */
int qk_shape_bytes(qk_dtype dt, int ndim, const int64_t *dims, size_t *bytes);

/* Allocate zero-filled owned storage; t's previous contents are ignored.
 * A shape whose size overflows int64 bytes is QK_ERR_SHAPE (nothing allocated). */
qk_status qk_tensor_alloc(qk_tensor *t, qk_dtype dt, int ndim, const int64_t *dims);
void qk_tensor_free(qk_tensor *t);               /* safe on zeroed/unowned */
qk_status qk_tensor_clone(qk_tensor *dst, const qk_tensor *src); /* deep copy */
/* Set shape only (no allocation). */
void qk_tensor_set_shape(qk_tensor *t, qk_dtype dt, int ndim, const int64_t *dims);
int qk_shape_equal(const qk_tensor *a, const qk_tensor *b);
/* "[128,1,28,28]" into buf; returns buf. */
char *qk_shape_str(const qk_tensor *t, char *buf, size_t n);

static inline float *qk_f32(const qk_tensor *t) { return (float *)t->data; }

#ifdef __cplusplus
}
#endif
#endif
