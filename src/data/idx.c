/* IDX files (the MNIST / Fashion-MNIST container) and datasets made of an
 * images file and a labels file.
 *
 * IDX layout (big-endian): bytes 0,1 = 0; byte 2 = element type (0x08 =
 * unsigned byte, the only one read here); byte 3 = number of dimensions d;
 * then d uint32 sizes; then prod(sizes) elements. Files may be gzip
 * compressed: zlib's gzopen/gzread read compressed and plain files alike. */
#include "data_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#define INSTALL_HINT "install it with: apt-get install dataset-fashion-mnist, or pass --data DIR"

/* Read up to n bytes; returns bytes read or -1 (message recorded). */
static int64_t gz_read_all(gzFile f, const char *path, uint8_t *dst, int64_t n)
{
    int64_t got = 0;
    while (got < n) {
        int64_t want = n - got;
        if (want > (1 << 30))
            want = 1 << 30;
        int r = gzread(f, dst + got, (unsigned)want);
        if (r < 0) {
            int err;
            const char *m = gzerror(f, &err);
            qk_error(QK_ERR_IO, "%s: read error: %s", path, m ? m : "unknown");
            return -1;
        }
        if (r == 0)
            break;
        got += r;
    }
    return got;
}

qk_status qk_idx_read(const char *path, int ndim, int64_t *dims, uint8_t **data)
{
    *data = NULL;
    if (ndim < 1 || ndim > 4)
        return qk_error(QK_ERR_ARG, "%s: IDX files with %d dimensions are not supported", path, ndim);
    errno = 0;
    gzFile f = gzopen(path, "rb");
    if (!f)
        return qk_error(QK_ERR_IO, "%s: cannot open: %s", path, strerror(errno ? errno : ENOENT));
    uint8_t hdr[4 + 4 * 4];
    int64_t hbytes = 4 + 4 * (int64_t)ndim;
    int64_t got = gz_read_all(f, path, hdr, 4);
    qk_status st = QK_OK;
    if (got < 0) {
        st = QK_ERR_IO;
        goto done;
    }
    if (got < 4) {
        st = qk_error(QK_ERR_IO, "%s: truncated: expected at least %lld header bytes, %lld present", path,
                      (long long)hbytes, (long long)got);
        goto done;
    }
    uint32_t magic = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
    uint32_t want_magic = 0x00000800u | (uint32_t)ndim;
    if (magic != want_magic) {
        st = qk_error(QK_ERR_FORMAT,
                      "%s: bad IDX magic 0x%08x (expected 0x%08x: unsigned bytes, %d dimension%s); "
                      "is this the right file?",
                      path, magic, want_magic, ndim, ndim == 1 ? "" : "s");
        goto done;
    }
    got = gz_read_all(f, path, hdr + 4, 4 * (int64_t)ndim);
    if (got < 0) {
        st = QK_ERR_IO;
        goto done;
    }
    if (got < 4 * (int64_t)ndim) {
        st = qk_error(QK_ERR_IO, "%s: truncated: expected %lld header bytes, %lld present", path,
                      (long long)hbytes, (long long)(4 + got));
        goto done;
    }
    int64_t total = 1;
    for (int i = 0; i < ndim; i++) {
        const uint8_t *p = hdr + 4 + 4 * i;
        dims[i] = (int64_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
        if (__builtin_mul_overflow(total, dims[i], &total) || total > ((int64_t)1 << 36)) {
            st = qk_error(QK_ERR_FORMAT, "%s: IDX dimensions are implausibly large", path);
            goto done;
        }
    }
    /* The buffer grows as data arrives (from 1 MiB, doubling), so a header
     * announcing more than the file holds costs no more memory than the
     * file's (decompressed) contents. */
    int64_t cap = total < ((int64_t)1 << 20) ? total : ((int64_t)1 << 20);
    *data = qk_malloc((size_t)(cap ? cap : 1));
    if (!*data) {
        st = qk_error(QK_ERR_NOMEM, "%s: cannot allocate %lld bytes", path, (long long)cap);
        goto done;
    }
    got = 0;
    for (;;) {
        int64_t r = gz_read_all(f, path, *data + got, cap - got);
        if (r < 0) {
            st = QK_ERR_IO;
            goto done;
        }
        got += r;
        if (got < cap || cap == total)
            break;
        int64_t ncap = cap * 2 < total ? cap * 2 : total;
        uint8_t *nb = qk_realloc(*data, (size_t)ncap);
        if (!nb) {
            st = qk_error(QK_ERR_NOMEM, "%s: cannot allocate %lld bytes", path, (long long)ncap);
            goto done;
        }
        *data = nb;
        cap = ncap;
    }
    if (got < total) {
        st = qk_error(QK_ERR_IO, "%s: truncated: expected %lld bytes (%lld header + %lld data), %lld present",
                      path, (long long)(hbytes + total), (long long)hbytes, (long long)total,
                      (long long)(hbytes + got));
        goto done;
    }
    uint8_t extra;
    got = gz_read_all(f, path, &extra, 1);
    if (got != 0) {
        st = got < 0 ? QK_ERR_IO
                     : qk_error(QK_ERR_FORMAT, "%s: trailing bytes after the %lld bytes the header announces", path,
                                (long long)(hbytes + total));
        goto done;
    }
done:
    gzclose(f);
    if (st != QK_OK) {
        qk_free(*data);
        *data = NULL;
    }
    return st;
}

void qk_dataset_free(qk_dataset *ds)
{
    if (ds->owned) {
        qk_decoder_destroy(ds->decoder); /* its threads write into images */
        qk_free(ds->images);
        qk_free(ds->labels);
        qk_free(ds->fimages);
        qk_free(ds->labels32);
    }
    memset(ds, 0, sizeof *ds);
}

qk_dataset qk_dataset_view(const qk_dataset *src, int64_t start, int64_t n)
{
    qk_dataset v = { 0 };
    if (start < 0)
        start = 0;
    if (start > src->n)
        start = src->n;
    if (n < 0 || n > src->n - start)
        n = src->n - start;
    v.n = n;
    v.h = src->h;
    v.w = src->w;
    int64_t per = (int64_t)qk_dataset_channels(src) * src->h * src->w;
    v.images = src->images ? src->images + start * per : NULL;
    v.labels = src->labels ? src->labels + start : NULL;
    v.owned = 0;
    v.c = src->c;
    v.fimages = src->fimages ? src->fimages + start * per : NULL;
    v.labels32 = src->labels32 ? src->labels32 + start : NULL;
    v.classes = src->classes;
    v.decoder = src->decoder;
    v.first = src->first + start;
    return v;
}

qk_status qk_dataset_load(const char *images_path, const char *labels_path, qk_dataset *ds)
{
    memset(ds, 0, sizeof *ds);
    int64_t di[3], dl[1];
    uint8_t *img = NULL, *lab = NULL;
    qk_status st = qk_idx_read(images_path, 3, di, &img);
    if (st != QK_OK)
        return st;
    st = qk_idx_read(labels_path, 1, dl, &lab);
    if (st != QK_OK) {
        qk_free(img);
        return st;
    }
    if (di[0] != dl[0]) {
        qk_free(img);
        qk_free(lab);
        return qk_error(QK_ERR_FORMAT, "%s has %lld images but %s has %lld labels", images_path, (long long)di[0],
                        labels_path, (long long)dl[0]);
    }
    if (di[1] < 1 || di[2] < 1 || di[1] > 65535 || di[2] > 65535) {
        qk_free(img);
        qk_free(lab);
        return qk_error(QK_ERR_FORMAT, "%s: unsupported image size %lldx%lld", images_path, (long long)di[1],
                        (long long)di[2]);
    }
    for (int64_t i = 0; i < dl[0]; i++)
        if (lab[i] >= QK_NUM_CLASSES) {
            st = qk_error(QK_ERR_FORMAT, "%s: label %d of item %lld is outside 0..%d", labels_path, lab[i],
                          (long long)i, QK_NUM_CLASSES - 1);
            qk_free(img);
            qk_free(lab);
            return st;
        }
    ds->n = di[0];
    ds->h = (int)di[1];
    ds->w = (int)di[2];
    ds->images = img;
    ds->labels = lab;
    ds->owned = 1;
    ds->c = 1;
    ds->classes = QK_NUM_CLASSES;
    return QK_OK;
}

static int file_exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* <dir>/<split>-<kind>-idx<d>-ubyte(.gz) into buf; 1 if found. */
static int find_file(char *buf, size_t n, const char *dir, const char *split, const char *kind, int d)
{
    snprintf(buf, n, "%s/%s-%s-idx%d-ubyte.gz", dir, split, kind, d);
    if (file_exists(buf))
        return 1;
    snprintf(buf, n, "%s/%s-%s-idx%d-ubyte", dir, split, kind, d);
    return file_exists(buf);
}

qk_status qk_dataset_load_dir(const char *dir, const char *split, qk_dataset *ds)
{
    memset(ds, 0, sizeof *ds);
    if (!dir || !dir[0])
        dir = QK_FASHION_MNIST_DIR;
    if (!split || (strcmp(split, "train") && strcmp(split, "t10k") && strcmp(split, "test")))
        return qk_error(QK_ERR_ARG, "dataset split '%s' is not one of train, t10k (test)", split ? split : "(null)");
    if (strcmp(split, "test") == 0)
        split = "t10k";
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return qk_error(QK_ERR_IO, "dataset directory %s does not exist; " INSTALL_HINT, dir);
    char ip[4096], lp[4096];
    if (!find_file(ip, sizeof ip, dir, split, "images", 3))
        return qk_error(QK_ERR_IO, "%s/%s-images-idx3-ubyte(.gz) not found; " INSTALL_HINT, dir, split);
    if (!find_file(lp, sizeof lp, dir, split, "labels", 1))
        return qk_error(QK_ERR_IO, "%s/%s-labels-idx1-ubyte(.gz) not found; " INSTALL_HINT, dir, split);
    return qk_dataset_load(ip, lp, ds);
}

int qk_dataset_is_idx_dir(const char *dir)
{
    char p[4096];
    return dir && (find_file(p, sizeof p, dir, "train", "images", 3) || find_file(p, sizeof p, dir, "t10k", "images", 3));
}
