/* Image folders: one subfolder per class (sorted names = labels) or a flat
 * folder of images. Every file's header is read on the thread pool
 * (qk_image_probe: sizes checked before any decoding), then the files are
 * decoded, converted, resized and cropped (qk_image_load) into the owned
 * uint8 array: on the pool before returning, or in the background by a
 * decoder (decode.c) while the caller computes. */
#include "data_internal.h"

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

static int is_image_name(const char *n)
{
    const char *d = strrchr(n, '.');
    return d && (!strcasecmp(d, ".png") || !strcasecmp(d, ".jpg") || !strcasecmp(d, ".jpeg"));
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct strlist {
    char **v;
    int64_t n, cap;
} strlist;

static qk_status sl_push(strlist *l, const char *a, const char *b)
{
    if (l->n == l->cap) {
        int64_t cap = l->cap ? 2 * l->cap : 64;
        char **v = qk_realloc(l->v, (size_t)cap * sizeof *v);
        if (!v)
            return qk_error(QK_ERR_NOMEM, "image folder: out of memory");
        l->v = v;
        l->cap = cap;
    }
    size_t n = strlen(a) + (b ? strlen(b) + 1 : 0) + 1;
    char *s = qk_malloc(n);
    if (!s)
        return qk_error(QK_ERR_NOMEM, "image folder: out of memory");
    if (b)
        snprintf(s, n, "%s/%s", a, b);
    else
        snprintf(s, n, "%s", a);
    l->v[l->n++] = s;
    return QK_OK;
}

static void sl_free(strlist *l)
{
    for (int64_t i = 0; i < l->n; i++)
        qk_free(l->v[i]);
    qk_free(l->v);
    memset(l, 0, sizeof *l);
}

/* Entries of dir: subfolders into dirs, image files into files (names only, sorted). */
static qk_status list_dir(const char *dir, strlist *dirs, strlist *files)
{
    DIR *d = opendir(dir);
    if (!d)
        return qk_error(QK_ERR_IO, "image folder %s: cannot open it", dir);
    struct dirent *e;
    qk_status st = QK_OK;
    while (st == QK_OK && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (stat(p, &sb) != 0)
            continue;
        if (S_ISDIR(sb.st_mode) && dirs)
            st = sl_push(dirs, e->d_name, NULL);
        else if (S_ISREG(sb.st_mode) && is_image_name(e->d_name))
            st = sl_push(files, e->d_name, NULL);
    }
    closedir(d);
    if (dirs && dirs->n > 1) /* qsort of an empty list: v may be NULL */
        qsort(dirs->v, (size_t)dirs->n, sizeof *dirs->v, cmp_str);
    if (files->n > 1)
        qsort(files->v, (size_t)files->n, sizeof *files->v, cmp_str);
    return st;
}

/* Per image, on the pool: its header (probe) or its pixels into its slot
 * (decode). The first failure in dataset order is kept (whichever thread
 * finds it), so the error does not depend on the thread count. */
typedef struct load_job {
    char **paths;
    const qk_data_opts *o;
    int *c, *h, *w;    /* probe: [n] */
    uint8_t *images;   /* decode: [n, c, h, w] */
    int64_t per;
    int c0, h0, w0;
    pthread_mutex_t mu;
    int64_t failed;    /* the first image that failed (n: none) */
    qk_status fail_st;
    char fail_msg[512];
} load_job;

static void job_fail(load_job *j, int64_t i, qk_status st)
{
    pthread_mutex_lock(&j->mu);
    if (i < j->failed) {
        j->failed = i;
        j->fail_st = st;
        snprintf(j->fail_msg, sizeof j->fail_msg, "%s", qk_last_error());
    }
    pthread_mutex_unlock(&j->mu);
}

static void probe_task(void *ctx, int64_t i, int worker)
{
    (void)worker;
    load_job *j = ctx;
    qk_status st = qk_image_probe(j->paths[i], j->o, &j->c[i], &j->h[i], &j->w[i]);
    if (st != QK_OK)
        job_fail(j, i, st);
}

static void decode_task(void *ctx, int64_t i, int worker)
{
    (void)worker;
    load_job *j = ctx;
    qk_status st = qk_image_load_into(j->paths[i], j->o, j->images + i * j->per, j->c0, j->h0, j->w0);
    if (st != QK_OK)
        job_fail(j, i, st);
}

qk_status qk_dataset_load_images(const char *dir, const qk_data_opts *o, qk_pool *pool, qk_dataset *ds)
{
    memset(ds, 0, sizeof *ds);
    qk_data_opts none = { 0 };
    if (!o)
        o = &none;
    strlist classes = { 0 }, top = { 0 }, paths = { 0 };
    int32_t *lab = NULL;
    int64_t lab_cap = 0;
    uint8_t *img = NULL;
    load_job j = { 0 };
    pthread_mutex_init(&j.mu, NULL);
    qk_status st = list_dir(dir, &classes, &top);
    if (st != QK_OK)
        goto done;
    if (classes.n > 0 && top.n > 0) {
        st = qk_error(QK_ERR_FORMAT, "image folder %s has both class subfolders (%s, ...) and images (%s, ...): use "
                      "one subfolder per class, or a flat folder of images", dir, classes.v[0], top.v[0]);
        goto done;
    }
    if (classes.n == 0) {
        if (top.n == 0) {
            st = qk_error(QK_ERR_FORMAT, "image folder %s holds no .png/.jpg/.jpeg images and no class subfolders",
                          dir);
            goto done;
        }
        if (o->need_labels) {
            st = qk_error(QK_ERR_ARG, "image folder %s is flat (no class subfolders): its images have no labels", dir);
            goto done;
        }
        for (int64_t i = 0; i < top.n && st == QK_OK; i++)
            st = sl_push(&paths, dir, top.v[i]);
    } else {
        for (int64_t k = 0; k < classes.n && st == QK_OK; k++) {
            char sub[4096];
            snprintf(sub, sizeof sub, "%s/%s", dir, classes.v[k]);
            strlist f = { 0 };
            st = list_dir(sub, NULL, &f);
            if (st == QK_OK && f.n == 0)
                st = qk_error(QK_ERR_FORMAT, "class folder %s (class %lld) holds no .png/.jpg/.jpeg images", sub,
                              (long long)k);
            for (int64_t i = 0; i < f.n && st == QK_OK; i++) {
                st = sl_push(&paths, sub, f.v[i]);
                if (st == QK_OK && paths.n > lab_cap) {
                    lab_cap = lab_cap ? 2 * lab_cap : 1024;
                    int32_t *nl = qk_realloc(lab, (size_t)lab_cap * sizeof *lab);
                    if (!nl)
                        st = qk_error(QK_ERR_NOMEM, "image folder: out of memory");
                    else
                        lab = nl;
                }
                if (st == QK_OK)
                    lab[paths.n - 1] = (int32_t)k;
            }
            sl_free(&f);
        }
    }
    if (st != QK_OK)
        goto done;
    int64_t n = o->limit > 0 && o->limit < paths.n ? o->limit : paths.n;
    while (paths.n > n) /* only the first n are read */
        qk_free(paths.v[--paths.n]);
    /* every header first: missing files, damaged headers and mixed sizes fail here, before any decoding */
    j.paths = paths.v;
    j.o = o;
    j.failed = n;
    j.c = qk_calloc((size_t)n, sizeof *j.c);
    j.h = qk_calloc((size_t)n, sizeof *j.h);
    j.w = qk_calloc((size_t)n, sizeof *j.w);
    if (!j.c || !j.h || !j.w) {
        st = qk_error(QK_ERR_NOMEM, "image folder: out of memory");
        goto done;
    }
    qk_pool_run(pool, n, probe_task, &j);
    if (j.failed < n) {
        st = qk_error(j.fail_st, "%s", j.fail_msg);
        goto done;
    }
    for (int64_t i = 1; i < n; i++)
        if (j.c[i] != j.c[0] || j.h[i] != j.h[0] || j.w[i] != j.w[0]) {
            st = qk_error(QK_ERR_SHAPE, "images of different sizes: %s is %dx%dx%d, %s is %dx%dx%d (C x H x W); "
                          "pass --resize N and --crop N (or --preprocess imagenet)%s", paths.v[0], j.c[0], j.h[0],
                          j.w[0], paths.v[i], j.c[i], j.h[i], j.w[i],
                          j.c[i] != j.c[0] ? ", and the model's channel count converts gray/RGB" : "");
            goto done;
        }
    j.c0 = j.c[0];
    j.h0 = j.h[0];
    j.w0 = j.w[0];
    j.per = (int64_t)j.c0 * j.h0 * j.w0;
    if (!(img = qk_malloc((size_t)(n * j.per)))) {
        st = qk_error(QK_ERR_NOMEM, "image folder %s: cannot allocate %lld images of %lld bytes", dir, (long long)n,
                      (long long)j.per);
        goto done;
    }
    if (o->background) {
        st = qk_decoder_start(paths.v, n, o, img, j.c0, j.h0, j.w0, qk_pool_threads(pool), &ds->decoder);
        memset(&paths, 0, sizeof paths); /* the decoder's now */
        if (st != QK_OK)
            goto done;
    } else {
        j.images = img;
        qk_pool_run(pool, n, decode_task, &j);
        if (j.failed < n) {
            st = qk_error(j.fail_st, "%s", j.fail_msg);
            goto done;
        }
    }
    ds->n = n;
    ds->c = j.c0;
    ds->h = j.h0;
    ds->w = j.w0;
    ds->images = img;
    ds->labels32 = lab;
    ds->classes = lab ? (int)classes.n : 0;
    ds->owned = 1;
    img = NULL;
    lab = NULL;
done:
    pthread_mutex_destroy(&j.mu);
    qk_free(j.c);
    qk_free(j.h);
    qk_free(j.w);
    qk_free(img);
    qk_free(lab);
    sl_free(&classes);
    sl_free(&top);
    sl_free(&paths);
    return st;
}
