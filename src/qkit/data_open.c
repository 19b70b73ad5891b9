/* Data sources by path: IDX directories, image folders, .npy files and
 * directories of ONNX TensorProto .pb files. This sits in the top layer
 * because the .pb reader belongs to the onnx layer, which the data layer
 * may not call. */
#include "qkit/onnx.h"
#include "qkit/registry.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted .pb paths under dir: dir/ *.pb (input_* only when output_* exist),
 * else dir/test_data_set_* / input_*.pb. *n = 0 when there are none. */
static qk_status list_pb(const char *dir, char ***out, int64_t *n)
{
    *out = NULL;
    *n = 0;
    char **v = NULL;
    int64_t cnt = 0, cap = 0;
    qk_status st = QK_OK;
    for (int pass = 0; pass < 2 && cnt == 0 && st == QK_OK; pass++) {
        DIR *d = opendir(dir);
        if (!d)
            return qk_error(QK_ERR_IO, "data %s: cannot open the directory", dir);
        int has_out = 0;
        struct dirent *e;
        while ((e = readdir(d)))
            has_out |= !strncmp(e->d_name, "output_", 7) && ends_with(e->d_name, ".pb");
        rewinddir(d);
        while (st == QK_OK && (e = readdir(d))) {
            if (e->d_name[0] == '.')
                continue;
            char p[4096];
            if (pass == 0) {
                if (!ends_with(e->d_name, ".pb") || (has_out && strncmp(e->d_name, "input_", 6)))
                    continue;
                snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            } else {
                if (strncmp(e->d_name, "test_data_set_", 14))
                    continue;
                snprintf(p, sizeof p, "%s/%s/input_0.pb", dir, e->d_name);
                struct stat sb;
                if (stat(p, &sb) != 0)
                    continue;
            }
            if (cnt == cap) {
                cap = cap ? 2 * cap : 64;
                char **nv = qk_realloc(v, (size_t)cap * sizeof *nv);
                if (!nv) {
                    st = qk_error(QK_ERR_NOMEM, "data %s: out of memory", dir);
                    break;
                }
                v = nv;
            }
            if (!(v[cnt] = qk_strdup(p))) {
                st = qk_error(QK_ERR_NOMEM, "data %s: out of memory", dir);
                break;
            }
            cnt++;
        }
        closedir(d);
    }
    if (st != QK_OK) {
        for (int64_t i = 0; i < cnt; i++)
            qk_free(v[i]);
        qk_free(v);
        return st;
    }
    if (cnt > 1) /* qsort of an empty list: v may be NULL */
        qsort(v, (size_t)cnt, sizeof *v, cmp_str);
    *out = v;
    *n = cnt;
    return QK_OK;
}

static void free_list(char **v, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        qk_free(v[i]);
    qk_free(v);
}

qk_status qk_data_kind_of(const char *path, qk_data_kind *kind)
{
    if (!path || !path[0]) {
        *kind = QK_DATA_IDX;
        return QK_OK;
    }
    struct stat sb;
    if (stat(path, &sb) != 0)
        return qk_error(QK_ERR_IO, "data %s does not exist (expected an IDX directory such as Debian's "
                        "dataset-fashion-mnist, an image folder, a .npy file or a directory of .pb tensors)", path);
    if (S_ISREG(sb.st_mode)) {
        if (ends_with(path, ".npy") || ends_with(path, ".NPY")) {
            *kind = QK_DATA_NPY;
            return QK_OK;
        }
        return qk_error(QK_ERR_FORMAT, "data %s: a file must be a .npy array (folders: image folder, IDX files or "
                        ".pb tensors)", path);
    }
    if (!S_ISDIR(sb.st_mode))
        return qk_error(QK_ERR_IO, "data %s is neither a file nor a directory", path);
    if (qk_dataset_is_idx_dir(path)) {
        *kind = QK_DATA_IDX;
        return QK_OK;
    }
    char **v;
    int64_t n;
    qk_status st = list_pb(path, &v, &n);
    if (st != QK_OK)
        return st;
    free_list(v, n);
    *kind = n > 0 ? QK_DATA_PB : QK_DATA_FOLDER;
    return QK_OK;
}

qk_status qk_dataset_load_pb_dir(const char *dir, const qk_data_opts *o, qk_dataset *ds)
{
    memset(ds, 0, sizeof *ds);
    qk_data_opts none = { 0 };
    if (!o)
        o = &none;
    char **v;
    int64_t n;
    qk_status st = list_pb(dir, &v, &n);
    if (st != QK_OK)
        return st;
    if (n == 0)
        return qk_error(QK_ERR_FORMAT, "data %s holds no .pb tensors", dir);
    qk_tensor *ts = qk_calloc((size_t)n, sizeof *ts);
    if (!ts) {
        free_list(v, n);
        return qk_error(QK_ERR_NOMEM, "data %s: out of memory", dir);
    }
    int64_t total = 0, C = 0, H = 0, W = 0;
    qk_dtype dt = QK_F32;
    for (int64_t i = 0; i < n && st == QK_OK; i++) {
        if ((st = qk_onnx_load_tensor(v[i], &ts[i], NULL)) != QK_OK)
            break;
        qk_tensor *t = &ts[i];
        char sb[96];
        int nd = t->ndim;
        int64_t k = nd == 4 ? t->dims[0] : 1, c = nd == 4 ? t->dims[1] : nd == 3 ? t->dims[0] : 0,
                h = nd >= 3 ? t->dims[nd - 2] : 0, w = nd >= 3 ? t->dims[nd - 1] : 0;
        if ((t->dtype != QK_F32 && t->dtype != QK_U8) || (nd != 3 && nd != 4) || c < 1 || c > QK_MAX_CHANNELS) {
            st = qk_error(QK_ERR_FORMAT, "%s is %s %s: images must be float32 or uint8 [N,C,H,W] or [C,H,W]", v[i],
                          qk_dtype_name(t->dtype), qk_shape_str(t, sb, sizeof sb));
            break;
        }
        if (i == 0) {
            C = c, H = h, W = w, dt = t->dtype;
        } else if (c != C || h != H || w != W || t->dtype != dt) {
            char sa[96];
            st = qk_error(QK_ERR_SHAPE, "tensors of different shapes: %s is %s %s, %s is %s %s", v[0],
                          qk_dtype_name(ts[0].dtype), qk_shape_str(&ts[0], sa, sizeof sa), v[i],
                          qk_dtype_name(t->dtype), qk_shape_str(t, sb, sizeof sb));
            break;
        }
        total += k;
    }
    if (st == QK_OK) {
        int64_t use = o->limit > 0 && o->limit < total ? o->limit : total, per = C * H * W, at = 0;
        size_t es = dt == QK_F32 ? sizeof(float) : 1;
        char *buf = qk_malloc((size_t)(total * per) * es);
        if (!buf)
            st = qk_error(QK_ERR_NOMEM, "data %s: out of memory", dir);
        for (int64_t i = 0; buf && i < n; i++) {
            int64_t k = ts[i].ndim == 4 ? ts[i].dims[0] : 1;
            memcpy(buf + (size_t)(at * per) * es, ts[i].data, (size_t)(k * per) * es);
            at += k;
        }
        if (buf) {
            st = dt == QK_F32 ? qk_dataset_from_f32(use, (int)C, (int)H, (int)W, (const float *)buf, 0, NULL, ds)
                              : qk_dataset_from_u8(use, (int)C, (int)H, (int)W, (const uint8_t *)buf, 0, NULL, ds);
            qk_free(buf);
        }
        if (st == QK_OK && o->labels && (st = qk_dataset_load_labels(o->labels, total, ds)) != QK_OK)
            qk_dataset_free(ds);
        if (st == QK_OK && !o->labels && o->need_labels) {
            qk_dataset_free(ds);
            st = qk_error(QK_ERR_ARG, "data %s: .pb tensors have no labels: pass --labels FILE.npy", dir);
        }
    }
    for (int64_t i = 0; i < n; i++)
        qk_tensor_free(&ts[i]);
    qk_free(ts);
    free_list(v, n);
    return st;
}

qk_status qk_data_open(const char *path, const char *split, const qk_data_opts *o, qk_pool *pool, qk_dataset *ds)
{
    memset(ds, 0, sizeof *ds);
    qk_data_opts none = { 0 };
    if (!o)
        o = &none;
    qk_data_kind kind;
    qk_status st = qk_data_kind_of(path, &kind);
    if (st != QK_OK)
        return st;
    switch (kind) {
    case QK_DATA_IDX:
        st = qk_dataset_load_dir(path, split ? split : "t10k", ds);
        if (st == QK_OK && o->limit > 0 && o->limit < ds->n)
            ds->n = o->limit; /* owned arrays stay whole; free releases them */
        return st;
    case QK_DATA_NPY:
        return qk_dataset_load_npy(path, o, ds);
    case QK_DATA_PB:
        return qk_dataset_load_pb_dir(path, o, ds);
    case QK_DATA_FOLDER:
        if (o->labels)
            return qk_error(QK_ERR_ARG, "data %s: --labels goes with .npy or .pb data, not image folders", path);
        return qk_dataset_load_images(path, o, pool, ds);
    }
    return qk_error(QK_ERR_ARG, "data %s: unknown kind", path);
}
