/* Dense tensors. */
#include "qkit/tensor.h"

#include <stdio.h>
#include <string.h>

size_t qk_dtype_size(qk_dtype dt)
{
    switch (dt) {
    case QK_F32: case QK_I32: return 4;
    case QK_U8: case QK_I8: return 1;
    case QK_I16: return 2;
    case QK_I64: return 8;
    }
    return 0;
}

const char *qk_dtype_name(qk_dtype dt)
{
    switch (dt) {
    case QK_F32: return "float32";
    case QK_U8: return "uint8";
    case QK_I8: return "int8";
    case QK_I16: return "int16";
    case QK_I32: return "int32";
    case QK_I64: return "int64";
    }
    return "unknown";
}

int64_t qk_tensor_numel(const qk_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        if (t->dims[i] <= 0)
            return 0;
    for (int i = 0; i < t->ndim; i++)
        if (__builtin_mul_overflow(n, t->dims[i], &n))
            return INT64_MAX; /* saturates; the planner's size limits refuse such a shape */
    return n;
}

int64_t qk_tensor_int_at(const qk_tensor *t, int64_t i)
{
    switch (t->dtype) {
    case QK_U8: return ((const uint8_t *)t->data)[i];
    case QK_I8: return ((const int8_t *)t->data)[i];
    case QK_I16: return ((const int16_t *)t->data)[i];
    case QK_I32: return ((const int32_t *)t->data)[i];
    case QK_I64: return ((const int64_t *)t->data)[i];
    case QK_F32: break;
    }
    return 0;
}

size_t qk_tensor_bytes(const qk_tensor *t)
{
    size_t b;
    if (__builtin_mul_overflow((size_t)qk_tensor_numel(t), qk_dtype_size(t->dtype), &b))
        return SIZE_MAX;
    return b;
}

int qk_shape_bytes(qk_dtype dt, int ndim, const int64_t *dims, size_t *bytes)
{
    int64_t n = (int64_t)qk_dtype_size(dt);
    *bytes = 0;
    for (int i = 0; i < ndim; i++) {
        if (dims[i] <= 0) {
            n = 0; /* an empty tensor, whatever the other dimensions */
            break;
        }
    }
    for (int i = 0; n && i < ndim; i++)
        if (__builtin_mul_overflow(n, dims[i], &n))
            return 0;
    *bytes = (size_t)n;
    return 1;
}

void qk_tensor_set_shape(qk_tensor *t, qk_dtype dt, int ndim, const int64_t *dims)
{
    t->dtype = dt;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->dims[i] = dims[i];
}

qk_status qk_tensor_alloc(qk_tensor *t, qk_dtype dt, int ndim, const int64_t *dims)
{
    memset(t, 0, sizeof *t);
    if (ndim < 0 || ndim > QK_MAX_DIMS)
        return qk_error(QK_ERR_ARG, "tensor rank %d out of range 0..%d", ndim, QK_MAX_DIMS);
    if (qk_dtype_size(dt) == 0)
        return qk_error(QK_ERR_UNSUPPORTED, "tensor data type %d not supported", (int)dt);
    for (int i = 0; i < ndim; i++)
        if (dims[i] < 0)
            return qk_error(QK_ERR_SHAPE, "negative dimension %lld", (long long)dims[i]);
    size_t bytes;
    if (!qk_shape_bytes(dt, ndim, dims, &bytes)) {
        qk_tensor sh = { 0 };
        char sb[128];
        qk_tensor_set_shape(&sh, dt, ndim, dims);
        return qk_error(QK_ERR_SHAPE, "tensor shape %s is too large (its size overflows)",
                        qk_shape_str(&sh, sb, sizeof sb));
    }
    qk_tensor_set_shape(t, dt, ndim, dims);
    t->data = qk_aligned_alloc(bytes);
    if (!t->data)
        return qk_error(QK_ERR_NOMEM, "cannot allocate %zu bytes for a tensor", bytes);
    t->owned = 1;
    return QK_OK;
}

void qk_tensor_free(qk_tensor *t)
{
    if (t->owned && t->data)
        qk_aligned_free(t->data);
    t->data = NULL;
    t->owned = 0;
}

qk_status qk_tensor_clone(qk_tensor *dst, const qk_tensor *src)
{
    qk_status st = qk_tensor_alloc(dst, src->dtype, src->ndim, src->dims);
    if (st != QK_OK)
        return st;
    if (src->data)
        memcpy(dst->data, src->data, qk_tensor_bytes(src));
    return QK_OK;
}

int qk_shape_equal(const qk_tensor *a, const qk_tensor *b)
{
    if (a->ndim != b->ndim)
        return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->dims[i] != b->dims[i])
            return 0;
    return 1;
}

char *qk_shape_str(const qk_tensor *t, char *buf, size_t n)
{
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n > k ? n - k : 0, "[");
    for (int i = 0; i < t->ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ",%lld" : "%lld", (long long)t->dims[i]);
    if (k < n)
        snprintf(buf + k, n - k, "]");
    return buf;
}
