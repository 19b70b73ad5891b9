/* TensorProto <-> qk_tensor, .pb tensor files (the ONNX test-data format),
 * whole-file reads and atomic writes shared by the onnx layer.
 *
 * Decoding follows onnx.proto: data in raw_data (fixed-width little endian,
 * BOOL one byte per element) or in the typed field for the type
 * (float_data for FLOAT; int32_data for INT32, INT8, UINT8, BOOL;
 * int64_data for INT64). Data stored externally is not supported. */
#include "onnx_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *qk_onnx_dtype_name(int t)
{
    static const char *const names[] = {
        "UNDEFINED", "FLOAT", "UINT8", "INT8", "UINT16", "INT16", "INT32", "INT64", "STRING",
        "BOOL", "FLOAT16", "DOUBLE", "UINT32", "UINT64", "COMPLEX64", "COMPLEX128", "BFLOAT16"
    };
    if (t >= 0 && t < (int)(sizeof names / sizeof names[0]))
        return names[t];
    return "UNKNOWN";
}

qk_dtype qk_onnx_dtype_from_proto(int32_t t)
{
    switch (t) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: return QK_F32;
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8: return QK_U8;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT8: return QK_I8;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: return QK_I32;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: return QK_I64;
    case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: return QK_U8;
    default: return (qk_dtype)0;
    }
}

qk_status qk_onnx_tensor_from_proto(const Onnx__TensorProto *tp, qk_tensor *t, const char *what)
{
    memset(t, 0, sizeof *t);
    int32_t ot = tp->has_data_type ? tp->data_type : 0;
    qk_dtype dt = qk_onnx_dtype_from_proto(ot);
    if (!dt)
        return qk_error(QK_ERR_UNSUPPORTED, "%s has data type %s (%d), which qkit does not support "
                        "(supported: FLOAT, UINT8, INT8, INT32, INT64, BOOL)",
                        what, qk_onnx_dtype_name(ot), (int)ot);
    if (tp->n_external_data > 0 ||
        (tp->has_data_location && tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL))
        return qk_error(QK_ERR_UNSUPPORTED, "%s is stored as external data, which qkit does not "
                        "support (save the model with all tensors inside the .onnx file)", what);
    if (tp->segment)
        return qk_error(QK_ERR_UNSUPPORTED, "%s is a segmented tensor, which qkit does not support", what);
    if (tp->n_dims > QK_MAX_DIMS)
        return qk_error(QK_ERR_UNSUPPORTED, "%s has rank %zu; qkit supports up to %d dimensions",
                        what, tp->n_dims, QK_MAX_DIMS);
    size_t esz = qk_dtype_size(dt), numel = 1;
    for (size_t i = 0; i < tp->n_dims; i++) {
        if (tp->dims[i] < 0)
            return qk_error(QK_ERR_FORMAT, "%s has a negative dimension %lld", what, (long long)tp->dims[i]);
        if (__builtin_mul_overflow(numel, (size_t)tp->dims[i], &numel) || numel > SIZE_MAX / 8)
            return qk_error(QK_ERR_FORMAT, "%s has absurdly large dimensions", what);
    }
    size_t have = 0;
    const char *field = "raw_data";
    if (tp->has_raw_data) {
        if (tp->raw_data.len != numel * esz)
            return qk_error(QK_ERR_FORMAT, "%s: raw_data holds %zu bytes but dims need %zu (%zu x %s)",
                            what, tp->raw_data.len, numel * esz, numel, qk_dtype_name(dt));
        have = numel;
    } else if (dt == QK_F32) {
        have = tp->n_float_data, field = "float_data";
    } else if (dt == QK_I64) {
        have = tp->n_int64_data, field = "int64_data";
    } else {
        have = tp->n_int32_data, field = "int32_data";
    }
    if (have != numel)
        return qk_error(QK_ERR_FORMAT, "%s: %s holds %zu values but dims need %zu",
                        what, field, have, numel);
    qk_status st = qk_tensor_alloc(t, dt, (int)tp->n_dims, tp->dims);
    if (st != QK_OK)
        return qk_error_context(st, "%s", what);
    if (numel == 0)
        return QK_OK;
    if (tp->has_raw_data) {
        memcpy(t->data, tp->raw_data.data, numel * esz); /* x86: little endian already */
    } else if (dt == QK_F32) {
        memcpy(t->data, tp->float_data, numel * sizeof(float));
    } else if (dt == QK_I64) {
        memcpy(t->data, tp->int64_data, numel * sizeof(int64_t));
    } else if (dt == QK_I32) {
        memcpy(t->data, tp->int32_data, numel * sizeof(int32_t));
    } else if (dt == QK_I8) {
        int8_t *d = t->data;
        for (size_t i = 0; i < numel; i++)
            d[i] = (int8_t)tp->int32_data[i];
    } else { /* U8, BOOL */
        uint8_t *d = t->data;
        int is_bool = ot == ONNX__TENSOR_PROTO__DATA_TYPE__BOOL;
        for (size_t i = 0; i < numel; i++)
            d[i] = is_bool ? (uint8_t)(tp->int32_data[i] != 0) : (uint8_t)tp->int32_data[i];
    }
    return QK_OK;
}

void qk_onnx_tensor_to_proto(const qk_tensor *t, const char *name, Onnx__TensorProto *tp)
{
    onnx__tensor_proto__init(tp);
    tp->n_dims = (size_t)t->ndim;
    tp->dims = (int64_t *)t->dims;
    tp->has_data_type = 1;
    tp->data_type = (int32_t)t->dtype;
    tp->name = (char *)name;
    tp->has_raw_data = 1;
    tp->raw_data.len = t->data ? qk_tensor_bytes(t) : 0;
    tp->raw_data.data = t->data;
}

/* ---- files ---- */

qk_status qk_onnx_read_file(const char *path, uint8_t **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return qk_error(QK_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return qk_error(QK_ERR_IO, "cannot read '%s': not a regular file", path);
    }
    size_t n = (size_t)sb.st_size;
    uint8_t *b = qk_malloc(n ? n : 1);
    if (!b) {
        fclose(f);
        return qk_error(QK_ERR_NOMEM, "cannot allocate %zu bytes to read '%s'", n, path);
    }
    size_t got = fread(b, 1, n, f);
    int err = ferror(f);
    fclose(f);
    if (got != n || err) {
        qk_free(b);
        return qk_error(QK_ERR_IO, "cannot read '%s': short read (%zu of %zu bytes)", path, got, n);
    }
    *buf = b;
    *len = n;
    return QK_OK;
}

typedef struct file_buffer {
    ProtobufCBuffer base;
    FILE *f;
    int err; /* errno of the first failed write */
} file_buffer;

static void file_buffer_append(ProtobufCBuffer *b, size_t len, const uint8_t *data)
{
    file_buffer *fb = (file_buffer *)b;
    if (!fb->err && len && fwrite(data, 1, len, fb->f) != len)
        fb->err = errno ? errno : EIO;
}

static qk_status pack_to_file(FILE *f, void *ctx)
{
    file_buffer fb = {{file_buffer_append}, f, 0};
    protobuf_c_message_pack_to_buffer(ctx, &fb.base);
    if (fb.err) {
        errno = fb.err;
        return qk_error(QK_ERR_IO, "write error: %s", strerror(fb.err));
    }
    return QK_OK;
}

qk_status qk_onnx_write_atomic(const char *path, const ProtobufCMessage *msg)
{
    return qk_file_write_atomic(path, pack_to_file, (void *)msg);
}

/* ---- .pb tensor files ---- */

qk_status qk_onnx_load_tensor(const char *path, qk_tensor *t, char **name_out)
{
    memset(t, 0, sizeof *t);
    if (name_out)
        *name_out = NULL;
    uint8_t *buf;
    size_t len;
    qk_status st = qk_onnx_read_file(path, &buf, &len);
    if (st != QK_OK)
        return st;
    Onnx__TensorProto *tp = onnx__tensor_proto__unpack(NULL, len, buf);
    qk_free(buf);
    if (!tp)
        return qk_error(QK_ERR_FORMAT, "file '%s' is not a valid ONNX tensor (protobuf parse failed)", path);
    if (!tp->has_data_type) {
        onnx__tensor_proto__free_unpacked(tp, NULL);
        return qk_error(QK_ERR_FORMAT, "file '%s' is not a valid ONNX tensor (no data_type)", path);
    }
    size_t wn = strlen(path) + 64;
    char *what = qk_malloc(wn);
    if (!what) {
        onnx__tensor_proto__free_unpacked(tp, NULL);
        return qk_error(QK_ERR_NOMEM, "out of memory reading '%s'", path);
    }
    snprintf(what, wn, "file '%s': tensor", path);
    st = qk_onnx_tensor_from_proto(tp, t, what);
    qk_free(what);
    if (st == QK_OK && name_out) {
        *name_out = qk_strdup(tp->name ? tp->name : "");
        if (!*name_out) {
            qk_tensor_free(t);
            st = qk_error(QK_ERR_NOMEM, "out of memory reading '%s'", path);
        }
    }
    onnx__tensor_proto__free_unpacked(tp, NULL);
    return st;
}

qk_status qk_onnx_save_tensor(const qk_tensor *t, const char *name, const char *path)
{
    if (!qk_dtype_size(t->dtype))
        return qk_error(QK_ERR_UNSUPPORTED, "cannot save tensor '%s' to '%s': data type %d unsupported",
                        name ? name : "", path, (int)t->dtype);
    if (t->ndim < 0 || t->ndim > QK_MAX_DIMS)
        return qk_error(QK_ERR_ARG, "cannot save tensor '%s' to '%s': rank %d out of range",
                        name ? name : "", path, t->ndim);
    if (!t->data && qk_tensor_numel(t) > 0)
        return qk_error(QK_ERR_ARG, "cannot save tensor '%s' to '%s': it has no data", name ? name : "", path);
    Onnx__TensorProto tp;
    qk_onnx_tensor_to_proto(t, name, &tp);
    return qk_onnx_write_atomic(path, &tp.base);
}
