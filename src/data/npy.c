/* .npy files (NumPy's array format, versions 1.0 to 3.0): reading and
 * writing whole C-order arrays, and datasets of images (uint8 or float32,
 * NCHW or NHWC) with optional labels.
 *
 * Layout: "\x93NUMPY", major, minor, header length (uint16 LE for 1.x,
 * uint32 LE for 2.x/3.x), then an ASCII Python dict literal
 * {'descr': '<f4', 'fortran_order': False, 'shape': (N, C, H, W), }
 * padded with spaces and '\n', then the data. */
#include "qkit/data.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Value of 'key' in the header dict: a pointer just after "'key':" and spaces. */
static const char *dict_value(const char *hdr, const char *key)
{
    char k[32];
    snprintf(k, sizeof k, "'%s'", key);
    const char *p = strstr(hdr, k);
    if (!p)
        return NULL;
    p += strlen(k);
    while (*p == ' ')
        p++;
    if (*p != ':')
        return NULL;
    p++;
    while (*p == ' ')
        p++;
    return p;
}

static qk_status parse_header(const char *path, const char *hdr, char descr[16], int *ndim, int64_t dims[8],
                              int64_t *numel)
{
    const char *d = dict_value(hdr, "descr"), *f = dict_value(hdr, "fortran_order"), *s = dict_value(hdr, "shape");
    if (!d || !f || !s || (*d != '\'' && *d != '"') || *s != '(')
        return qk_error(QK_ERR_FORMAT, "%s: not a .npy header I can read: %.120s", path, hdr);
    int i = 0;
    for (d++; *d && *d != '\'' && *d != '"' && i < 15; d++)
        descr[i++] = *d;
    descr[i] = 0;
    if (strncmp(f, "False", 5) != 0)
        return qk_error(QK_ERR_FORMAT, "%s: Fortran-order arrays are not supported (save with np.ascontiguousarray)",
                        path);
    *ndim = 0;
    *numel = 1;
    s++;
    while (*s && *s != ')') {
        while (*s == ' ' || *s == ',')
            s++;
        if (*s == ')')
            break;
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end == s || v < 0 || *ndim >= 8)
            return qk_error(QK_ERR_FORMAT, "%s: bad shape in the .npy header: %.120s", path, hdr);
        const int64_t cap = (int64_t)1 << 40;
        if (v > cap || (*numel > 0 && v > cap / *numel))
            return qk_error(QK_ERR_FORMAT, "%s: implausibly large shape (more than 2^40 elements)", path);
        dims[(*ndim)++] = v;
        *numel *= v;
        s = end;
    }
    return QK_OK;
}

static size_t descr_size(const char *descr)
{
    if (!strcmp(descr, "|u1") || !strcmp(descr, "<u1") || !strcmp(descr, "|i1") || !strcmp(descr, "|b1"))
        return 1;
    if (!strcmp(descr, "<f4") || !strcmp(descr, "<i4") || !strcmp(descr, "<u4"))
        return 4;
    if (!strcmp(descr, "<f8") || !strcmp(descr, "<i8") || !strcmp(descr, "<u8"))
        return 8;
    if (!strcmp(descr, "<f2") || !strcmp(descr, "<i2") || !strcmp(descr, "<u2"))
        return 2;
    return 0;
}

qk_status qk_npy_read(const char *path, char descr[16], int *ndim, int64_t dims[8], void **data)
{
    *data = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return qk_error(QK_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    qk_status st = QK_OK;
    char *hdr = NULL;
    unsigned char pre[12];
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        st = qk_error(QK_ERR_FORMAT, "%s: not a .npy file (no \\x93NUMPY signature)", path);
        goto done;
    }
    size_t hlen = pre[8] | (size_t)pre[9] << 8;
    if (pre[6] >= 2) {
        if (fread(pre + 10, 1, 2, f) != 2) {
            st = qk_error(QK_ERR_FORMAT, "%s: truncated .npy header", path);
            goto done;
        }
        hlen |= (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
    }
    if (hlen > (1u << 20) || !(hdr = qk_malloc(hlen + 1))) {
        st = qk_error(QK_ERR_FORMAT, "%s: bad .npy header length %zu", path, hlen);
        goto done;
    }
    if (fread(hdr, 1, hlen, f) != hlen) {
        st = qk_error(QK_ERR_FORMAT, "%s: truncated .npy header", path);
        goto done;
    }
    hdr[hlen] = 0;
    int64_t numel = 0;
    if ((st = parse_header(path, hdr, descr, ndim, dims, &numel)) != QK_OK)
        goto done;
    size_t es = descr_size(descr);
    if (!es) {
        st = qk_error(QK_ERR_FORMAT, "%s: dtype '%s' is not supported", path, descr);
        goto done;
    }
    size_t bytes = (size_t)numel * es;
    long here = ftell(f);
    if (here >= 0 && fseek(f, 0, SEEK_END) == 0) { /* the data must be there before it is allocated */
        long end = ftell(f);
        if (end >= here && (size_t)(end - here) < bytes) {
            st = qk_error(QK_ERR_FORMAT, "%s: truncated: the header announces %zu data bytes, %ld present", path,
                          bytes, end - here);
            goto done;
        }
        fseek(f, here, SEEK_SET);
    }
    if (!(*data = qk_malloc(bytes ? bytes : 1))) {
        st = qk_error(QK_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, bytes);
        goto done;
    }
    size_t got = fread(*data, 1, bytes, f);
    if (got != bytes) {
        st = qk_error(QK_ERR_FORMAT, "%s: truncated: the header announces %zu data bytes, %zu present", path, bytes,
                      got);
        goto done;
    }
    if (fgetc(f) != EOF)
        st = qk_error(QK_ERR_FORMAT, "%s: trailing bytes after the %zu data bytes the header announces", path, bytes);
done:
    fclose(f);
    qk_free(hdr);
    if (st != QK_OK) {
        qk_free(*data);
        *data = NULL;
    }
    return st;
}

typedef struct npy_w {
    const char *descr;
    int ndim;
    const int64_t *dims;
    const void *data;
} npy_w;

static qk_status npy_write_fn(FILE *f, void *ctx)
{
    npy_w *w = ctx;
    char h[256];
    int k = snprintf(h, sizeof h, "{'descr': '%s', 'fortran_order': False, 'shape': (", w->descr);
    int64_t numel = 1;
    for (int d = 0; d < w->ndim; d++) {
        k += snprintf(h + k, sizeof h - (size_t)k, "%lld,%s", (long long)w->dims[d], d + 1 < w->ndim ? " " : "");
        numel *= w->dims[d];
    }
    k += snprintf(h + k, sizeof h - (size_t)k, "), }");
    int total = 10 + k + 1, pad = (64 - total % 64) % 64;
    unsigned char pre[10] = { 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0 };
    int hlen = k + pad + 1;
    pre[8] = (unsigned char)(hlen & 255);
    pre[9] = (unsigned char)(hlen >> 8);
    if (fwrite(pre, 1, 10, f) != 10 || fwrite(h, 1, (size_t)k, f) != (size_t)k)
        return qk_error(QK_ERR_IO, "npy: write failed");
    for (int i = 0; i < pad; i++)
        fputc(' ', f);
    fputc('\n', f);
    size_t bytes = (size_t)numel * descr_size(w->descr);
    if (fwrite(w->data, 1, bytes, f) != bytes)
        return qk_error(QK_ERR_IO, "npy: write failed");
    return QK_OK;
}

qk_status qk_npy_write(const char *path, const char *descr, int ndim, const int64_t *dims, const void *data)
{
    if (!descr_size(descr) || ndim < 0 || ndim > 8)
        return qk_error(QK_ERR_ARG, "%s: cannot write dtype '%s' with %d dimensions", path, descr, ndim);
    npy_w w = { descr, ndim, dims, data };
    return qk_file_write_atomic(path, npy_write_fn, &w);
}

qk_status qk_dataset_load_labels(const char *path, int64_t n, qk_dataset *ds)
{
    char descr[16];
    int nd;
    int64_t dims[8];
    void *raw;
    qk_status st = qk_npy_read(path, descr, &nd, dims, &raw);
    if (st != QK_OK)
        return st;
    size_t es = descr_size(descr);
    int isint = descr[1] == 'i' || descr[1] == 'u';
    if (nd != 1 || dims[0] != n || !isint || es == 2) {
        qk_free(raw);
        return qk_error(QK_ERR_FORMAT, "labels %s: dtype %s shape [%lld%s]: expected %lld integer labels "
                        "(int64, int32 or uint8 [N])", path, descr, nd ? (long long)dims[0] : 0LL,
                        nd > 1 ? ",..." : "", (long long)n);
    }
    int32_t *lab = qk_malloc((size_t)n * sizeof *lab);
    if (!lab) {
        qk_free(raw);
        return qk_error(QK_ERR_NOMEM, "labels %s: out of memory", path);
    }
    int64_t mx = -1;
    for (int64_t i = 0; i < n; i++) {
        int64_t v = es == 1 ? ((const uint8_t *)raw)[i] : es == 4 ? ((const int32_t *)raw)[i] : ((const int64_t *)raw)[i];
        if (v < 0 || v >= (1 << 24)) { /* 16M classes at most: the class count stays an int */
            qk_free(raw);
            qk_free(lab);
            return qk_error(QK_ERR_FORMAT, "labels %s: label %lld of item %lld is not a class index", path,
                            (long long)v, (long long)i);
        }
        lab[i] = (int32_t)v;
        mx = v > mx ? v : mx;
    }
    qk_free(raw);
    ds->labels32 = lab;
    ds->classes = (int)(mx + 1);
    return QK_OK;
}

qk_status qk_dataset_load_npy(const char *path, const qk_data_opts *o, qk_dataset *ds)
{
    memset(ds, 0, sizeof *ds);
    qk_data_opts none = { 0 };
    if (!o)
        o = &none;
    char descr[16];
    int nd;
    int64_t dims[8];
    void *raw;
    qk_status st = qk_npy_read(path, descr, &nd, dims, &raw);
    if (st != QK_OK)
        return st;
    int u8 = !strcmp(descr, "|u1") || !strcmp(descr, "<u1"), f32 = !strcmp(descr, "<f4");
    char shp[128];
    int k = snprintf(shp, sizeof shp, "[");
    for (int d = 0; d < nd; d++)
        k += snprintf(shp + k, sizeof shp - (size_t)k, "%s%lld", d ? "," : "", (long long)dims[d]);
    snprintf(shp + k, sizeof shp - (size_t)k, "]");
    if (!u8 && !f32) {
        qk_free(raw);
        return qk_error(QK_ERR_FORMAT, "%s: dtype %s shape %s: images must be float32 (<f4) or uint8 (|u1)", path,
                        descr, shp);
    }
    int64_t n = nd >= 1 ? dims[0] : 0, c, h, w;
    if (nd == 3) {
        c = 1, h = dims[1], w = dims[2];
    } else if (nd == 4) {
        c = o->nhwc ? dims[3] : dims[1];
        h = o->nhwc ? dims[1] : dims[2];
        w = o->nhwc ? dims[2] : dims[3];
    } else {
        qk_free(raw);
        return qk_error(QK_ERR_FORMAT, "%s: %s shape %s: images must be [N,C,H,W], [N,H,W,C] (--layout NHWC) or "
                        "[N,H,W]", path, descr, shp);
    }
    if (n < 1 || c < 1 || h < 1 || w < 1 || c > QK_MAX_CHANNELS || h > 65535 || w > 65535) {
        qk_free(raw);
        return qk_error(QK_ERR_FORMAT, "%s: %s shape %s read as %s: %lld images of %lldx%lldx%lld (channels 1..%d)%s",
                        path, descr, shp, o->nhwc ? "NHWC" : "NCHW", (long long)n, (long long)c, (long long)h,
                        (long long)w, QK_MAX_CHANNELS,
                        !o->nhwc && nd == 4 && dims[3] <= 4 ? "; is it NHWC (--layout NHWC)?" : "");
    }
    int64_t use = o->limit > 0 && o->limit < n ? o->limit : n;
    st = u8 ? qk_dataset_from_u8(use, (int)c, (int)h, (int)w, raw, o->nhwc && nd == 4, NULL, ds)
            : qk_dataset_from_f32(use, (int)c, (int)h, (int)w, raw, o->nhwc && nd == 4, NULL, ds);
    qk_free(raw);
    if (st != QK_OK)
        return qk_error_context(st, "%s", path);
    if (o->labels && (st = qk_dataset_load_labels(o->labels, n, ds)) != QK_OK) {
        qk_dataset_free(ds);
        return st;
    }
    if (!o->labels && o->need_labels) {
        qk_dataset_free(ds);
        return qk_error(QK_ERR_ARG, "%s: an array has no labels: pass --labels FILE.npy", path);
    }
    return QK_OK;
}
