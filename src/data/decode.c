/* Background decoding of an image folder (qk_data_opts.background). The
 * decoder's threads claim images in dataset order, decode each straight
 * into its slot of the dataset's array and publish progress as a prefix:
 * images [0, ready) are decoded. A reader compares its range with `ready`
 * (an acquire load: no lock once the images it needs are there) and
 * otherwise sleeps on the condition variable, which a thread signals when
 * the prefix moves or an image fails.
 *
 * Errors: the first failure stops the claims; images already claimed still
 * finish. Claims are made in order, so every image before a failed one was
 * claimed before it and finishes: the prefix then stops exactly at the
 * smallest failing index, the first damaged file in dataset order whatever
 * the thread count or timing, and every wait that reaches past it returns
 * that file's error. */
#include "data_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

struct qk_decoder {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t *th;
    int nth;        /* threads started */
    char **paths;   /* [n] */
    int64_t n;
    qk_data_opts o; /* c, resize, crop */
    uint8_t *images;
    int c, h, w;
    /* under mu */
    int64_t next;   /* the next image to claim */
    uint8_t *done;  /* [n]: 1 once decoded */
    int64_t failed; /* the first image that failed (n: none) */
    qk_status fail_st;
    char fail_msg[512];
    int stop;       /* claim nothing more: an image failed, or destroy */
    /* stored under mu (release), loaded anywhere (acquire) */
    _Atomic int64_t ready;
};

qk_status qk_image_load_into(const char *path, const qk_data_opts *o, uint8_t *dst, int c, int h, int w)
{
    uint8_t *chw;
    int C, H, W;
    qk_status st = qk_image_load(path, o, &chw, &C, &H, &W);
    if (st != QK_OK)
        return st;
    if (C != c || H != h || W != w)
        st = qk_error(QK_ERR_SHAPE, "%s: decoded to %dx%dx%d (C x H x W), but its header said %dx%dx%d when the folder "
                      "was read (did the file change?)", path, C, H, W, c, h, w);
    else
        memcpy(dst, chw, (size_t)c * h * w);
    qk_free(chw);
    return st;
}

static void *decode_main(void *arg)
{
    struct qk_decoder *d = arg;
    const int64_t per = (int64_t)d->c * d->h * d->w;
    pthread_mutex_lock(&d->mu);
    while (!d->stop && d->next < d->n) {
        int64_t i = d->next++;
        pthread_mutex_unlock(&d->mu);
        char msg[sizeof d->fail_msg] = "";
        qk_status st = qk_image_load_into(d->paths[i], &d->o, d->images + i * per, d->c, d->h, d->w);
        if (st != QK_OK)
            snprintf(msg, sizeof msg, "%s", qk_last_error());
        pthread_mutex_lock(&d->mu);
        if (st == QK_OK) {
            d->done[i] = 1;
            int64_t r = atomic_load_explicit(&d->ready, memory_order_relaxed);
            if (r == i) {
                while (r < d->n && d->done[r])
                    r++;
                atomic_store_explicit(&d->ready, r, memory_order_release);
                pthread_cond_broadcast(&d->cv);
            }
        } else if (i < d->failed) {
            d->failed = i;
            d->fail_st = st;
            memcpy(d->fail_msg, msg, sizeof msg);
            d->stop = 1;
            pthread_cond_broadcast(&d->cv);
        }
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

void qk_decoder_destroy(struct qk_decoder *d)
{
    if (!d)
        return;
    pthread_mutex_lock(&d->mu);
    d->stop = 1;
    pthread_mutex_unlock(&d->mu);
    for (int t = 0; t < d->nth; t++)
        pthread_join(d->th[t], NULL);
    pthread_cond_destroy(&d->cv);
    pthread_mutex_destroy(&d->mu);
    for (int64_t i = 0; d->paths && i < d->n; i++)
        qk_free(d->paths[i]);
    qk_free(d->paths);
    qk_free(d->done);
    qk_free(d->th);
    qk_free(d);
}

qk_status qk_decoder_start(char **paths, int64_t n, const qk_data_opts *o, uint8_t *images, int c, int h, int w,
                           int nthreads, struct qk_decoder **out)
{
    *out = NULL;
    struct qk_decoder *d = qk_calloc(1, sizeof *d);
    if (!d) {
        for (int64_t i = 0; i < n; i++)
            qk_free(paths[i]);
        qk_free(paths);
        return qk_error(QK_ERR_NOMEM, "image folder: out of memory");
    }
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    d->paths = paths;
    d->n = n;
    d->o.c = o->c;
    d->o.resize = o->resize;
    d->o.crop = o->crop;
    d->images = images;
    d->c = c;
    d->h = h;
    d->w = w;
    d->failed = n;
    atomic_init(&d->ready, 0);
    if (nthreads > n)
        nthreads = (int)n;
    if (nthreads < 1)
        nthreads = 1;
    d->done = qk_calloc((size_t)n, 1);
    d->th = qk_calloc((size_t)nthreads, sizeof *d->th);
    if (!d->done || !d->th) {
        qk_decoder_destroy(d);
        return qk_error(QK_ERR_NOMEM, "image folder: out of memory");
    }
    for (int t = 0; t < nthreads && pthread_create(&d->th[t], NULL, decode_main, d) == 0; t++)
        d->nth++;
    if (d->nth == 0) {
        qk_decoder_destroy(d);
        return qk_error(QK_ERR_NOMEM, "image folder: cannot start a decoding thread");
    }
    *out = d;
    return QK_OK;
}

qk_status qk_dataset_wait(const qk_dataset *ds, int64_t lo, int64_t hi)
{
    struct qk_decoder *d = ds->decoder;
    if (lo < 0)
        lo = 0;
    if (hi > ds->n)
        hi = ds->n;
    if (!d || hi <= lo)
        return QK_OK;
    const int64_t need = ds->first + hi;
    if (atomic_load_explicit(&d->ready, memory_order_acquire) >= need)
        return QK_OK;
    pthread_mutex_lock(&d->mu);
    int64_t r;
    /* ready never passes failed: it stops there when the images before it are in */
    while ((r = atomic_load_explicit(&d->ready, memory_order_relaxed)) < need && r < d->failed)
        pthread_cond_wait(&d->cv, &d->mu);
    qk_status st = r >= need ? QK_OK : qk_error(d->fail_st, "%s", d->fail_msg);
    pthread_mutex_unlock(&d->mu);
    return st;
}

int64_t qk_dataset_ready(const qk_dataset *ds)
{
    if (!ds->decoder)
        return ds->n;
    int64_t r = atomic_load_explicit(&ds->decoder->ready, memory_order_acquire) - ds->first;
    return r < 0 ? 0 : r > ds->n ? ds->n : r;
}
