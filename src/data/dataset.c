/* Dataset accessors, shape checks and datasets built from arrays in memory. */
#include "qkit/data.h"

#include <stdio.h>
#include <string.h>

int qk_dataset_channels(const qk_dataset *ds)
{
    return ds->c > 0 ? ds->c : 1;
}

int qk_dataset_has_labels(const qk_dataset *ds)
{
    return ds->labels || ds->labels32;
}

int64_t qk_dataset_label(const qk_dataset *ds, int64_t i)
{
    return ds->labels ? ds->labels[i] : ds->labels32 ? ds->labels32[i] : -1;
}

const char *qk_dataset_shape_str(const qk_dataset *ds, char *buf, size_t size)
{
    snprintf(buf, size, "[%lld,%d,%d,%d] %s", (long long)ds->n, qk_dataset_channels(ds), ds->h, ds->w,
             ds->fimages ? "float32" : "uint8");
    return buf;
}

qk_status qk_dataset_check_input(const qk_dataset *ds, const char *what, const char *input, int ndim,
                                 const int64_t *dims)
{
    char a[96], b[96];
    int ok = ndim == 4 && dims[1] == qk_dataset_channels(ds) && dims[2] == ds->h && dims[3] == ds->w;
    if (ok)
        return QK_OK;
    int k = snprintf(b, sizeof b, "[");
    for (int d = 0; d < ndim && k < (int)sizeof b - 24; d++)
        k += snprintf(b + k, sizeof b - (size_t)k, d == 0 ? "N" : ",%lld", (long long)dims[d]);
    snprintf(b + k, sizeof b - (size_t)k, "]");
    return qk_error(QK_ERR_SHAPE, "data %s%sis %s (images of %dx%dx%d) but model input '%s' is %s%s", what ? what : "",
                    what && *what ? " " : "", qk_dataset_shape_str(ds, a, sizeof a), qk_dataset_channels(ds), ds->h, ds->w,
                    input ? input : "?", b,
                    ndim == 4 && dims[1] != qk_dataset_channels(ds) && (dims[1] == 1 || dims[1] == 3)
                        ? " (image folders are converted to the model's channels; arrays are not)"
                        : ndim == 4 ? " (resize with --resize N / --crop N for image folders)" : "");
}

static qk_status from_arrays(int64_t n, int c, int h, int w, const void *src, size_t esz, int nhwc,
                             const int64_t *labels, qk_dataset *ds)
{
    memset(ds, 0, sizeof *ds);
    if (n < 1 || c < 1 || h < 1 || w < 1 || c > QK_MAX_CHANNELS || !src)
        return qk_error(QK_ERR_ARG, "dataset from memory: need n, h, w >= 1 and 1 <= c <= %d (got n %lld, c %d, "
                        "h %d, w %d)", QK_MAX_CHANNELS, (long long)n, c, h, w);
    int64_t per = (int64_t)c * h * w, hw = (int64_t)h * w;
    void *dst = qk_malloc((size_t)(n * per) * esz);
    int32_t *lab = labels ? qk_malloc((size_t)n * sizeof *lab) : NULL;
    if (!dst || (labels && !lab)) {
        qk_free(dst);
        qk_free(lab);
        return qk_error(QK_ERR_NOMEM, "dataset from memory: cannot allocate %lld images", (long long)n);
    }
    if (!nhwc)
        memcpy(dst, src, (size_t)(n * per) * esz);
    else
        for (int64_t i = 0; i < n; i++)
            for (int64_t p = 0; p < hw; p++)
                for (int k = 0; k < c; k++)
                    memcpy((char *)dst + ((i * c + k) * hw + p) * esz, (const char *)src + ((i * hw + p) * c + k) * esz,
                           esz);
    int64_t mx = -1;
    for (int64_t i = 0; labels && i < n; i++) {
        if (labels[i] < 0 || labels[i] > 0x7fffffff) {
            qk_free(dst);
            qk_free(lab);
            return qk_error(QK_ERR_ARG, "dataset from memory: label %lld of item %lld is not a class index",
                            (long long)labels[i], (long long)i);
        }
        lab[i] = (int32_t)labels[i];
        mx = labels[i] > mx ? labels[i] : mx;
    }
    ds->n = n;
    ds->c = c;
    ds->h = h;
    ds->w = w;
    if (esz == 1)
        ds->images = dst;
    else
        ds->fimages = dst;
    ds->labels32 = lab;
    ds->classes = (int)(mx + 1);
    ds->owned = 1;
    return QK_OK;
}

qk_status qk_dataset_from_u8(int64_t n, int c, int h, int w, const uint8_t *pixels, int nhwc,
                             const int64_t *labels, qk_dataset *ds)
{
    return from_arrays(n, c, h, w, pixels, 1, nhwc, labels, ds);
}

qk_status qk_dataset_from_f32(int64_t n, int c, int h, int w, const float *values, int nhwc,
                              const int64_t *labels, qk_dataset *ds)
{
    return from_arrays(n, c, h, w, values, sizeof(float), nhwc, labels, ds);
}
