/* Normalization, augmentation and the batcher.
 *
 * Matches bench/torch_peer.py's pipeline: pixels / 255 in [0, 1], random
 * horizontal flip (p 0.5), then random crop h x w of the image zero-padded by
 * `crop_pad` on each side (pad value 0 in pixel space, i.e. torchvision
 * RandomCrop before Normalize), then (x - mean) / std. Normalization goes
 * through a 256-entry table computed in double, so a pixel value always maps
 * to the same float.
 *
 * Randomness (all qk_rng, so identical on every platform):
 *   epoch order: identity permutation shuffled (Fisher-Yates, qk_shuffle)
 *                by an RNG seeded with mix(seed, "order", epoch);
 *   batch i:     an RNG seeded with mix(seed, "augment", epoch, i); per image
 *                in batch order: flip bit (if flip), dy then dx (if crop).
 * Nothing depends on earlier epochs or batches, so resuming anywhere
 * reproduces the data exactly. */
#include "qkit/data.h"

#include <string.h>

qk_norm qk_norm_default(void)
{
    qk_norm n = { .mean = QK_NORM_FASHION_MEAN, .std = QK_NORM_FASHION_STD };
    return n;
}

qk_norm qk_norm_imagenet(void)
{
    qk_norm n = { .mean = 0.485f, .std = 0.229f, .nc = 3, .cmean = { 0.485f, 0.456f, 0.406f },
                  .cstd = { 0.229f, 0.224f, 0.225f } };
    return n;
}

float qk_norm_mean(const qk_norm *n, int k)
{
    return n->nc <= 0 ? n->mean : n->cmean[n->nc == 1 ? 0 : k];
}

float qk_norm_std(const qk_norm *n, int k)
{
    return n->nc <= 0 ? n->std : n->cstd[n->nc == 1 ? 0 : k];
}

qk_status qk_norm_check(const qk_norm *n, int c)
{
    if (n->nc < 0 || n->nc > QK_MAX_CHANNELS || (n->nc > 1 && n->nc != c))
        return qk_error(QK_ERR_ARG, "normalization has %d per-channel values, the data has %d channel%s", n->nc,
                        c, c == 1 ? "" : "s");
    for (int k = 0; k < (n->nc > 0 ? n->nc : 1); k++)
        if (!(qk_norm_std(n, k) > 0.0f))
            return qk_error(QK_ERR_ARG, "normalization std must be > 0 (got %g)", (double)qk_norm_std(n, k));
    if (n->scale < 0.0f)
        return qk_error(QK_ERR_ARG, "normalization scale must be > 0 (got %g)", (double)n->scale);
    return QK_OK;
}

void qk_norm_lut(qk_norm n, float lut[256])
{
    qk_norm_lut_ch(&n, 0, lut);
}

/* scale 0 or 1 computes exactly the original expression (same floats). */
static float norm_value(const qk_norm *n, int k, double v)
{
    double r = (v - (double)qk_norm_mean(n, k)) / (double)qk_norm_std(n, k);
    if (n->scale > 0.0f && n->scale != 1.0f)
        r *= (double)n->scale;
    return (float)r;
}

void qk_norm_lut_ch(const qk_norm *n, int k, float lut[256])
{
    for (int p = 0; p < 256; p++)
        lut[p] = norm_value(n, k, (double)p / 255.0);
}

void qk_shuffle(int64_t *idx, int64_t n, qk_rng *r)
{
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(i + 1 <= 0xffffffffLL ? qk_rng_below(r, (uint32_t)(i + 1))
                                                     : qk_rng_u64(r) % (uint64_t)(i + 1));
        int64_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}

void qk_image_prepare(const uint8_t *src, int h, int w, float *dst, const float *lut, int flip, int pad,
                      int dy, int dx)
{
    if (!flip && dy == pad && dx == pad) {
        for (int64_t k = 0; k < (int64_t)h * w; k++)
            dst[k] = lut[src[k]];
        return;
    }
    const float zero = lut[0];
    for (int y = 0; y < h; y++) {
        float *d = dst + (int64_t)y * w;
        int sy = y + dy - pad;
        if (sy < 0 || sy >= h) {
            for (int x = 0; x < w; x++)
                d[x] = zero;
            continue;
        }
        const uint8_t *row = src + (int64_t)sy * w;
        /* output x reads flipped column fx = x + dx - pad, valid in [0, w) */
        int x0 = pad - dx, x1 = w + pad - dx; /* valid x range [x0, x1) */
        if (x0 < 0)
            x0 = 0;
        if (x1 > w)
            x1 = w;
        for (int x = 0; x < x0; x++)
            d[x] = zero;
        if (flip)
            for (int x = x0; x < x1; x++)
                d[x] = lut[row[w - 1 - (x + dx - pad)]];
        else
            for (int x = x0; x < x1; x++)
                d[x] = lut[row[x + dx - pad]];
        for (int x = x1 > x0 ? x1 : x0; x < w; x++)
            d[x] = zero;
    }
}

/* splitmix64 finalizer: a well-mixed 64-bit hash step. */
static uint64_t mix64(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t stream_seed(uint64_t seed, uint64_t tag, int64_t a, int64_t b)
{
    uint64_t h = mix64(seed ^ 0x716B6974ull); /* "qkit" */
    h = mix64(h ^ tag);
    h = mix64(h ^ (uint64_t)a);
    return mix64(h ^ (uint64_t)b);
}

qk_status qk_batcher_init(qk_batcher *b, const qk_dataset *ds, int64_t batch, int shuffle, uint64_t seed,
                          qk_norm norm, const qk_augment *aug)
{
    memset(b, 0, sizeof *b);
    if (!ds || ds->n < 1 || (!ds->images && !ds->fimages))
        return qk_error(QK_ERR_ARG, "batcher: the dataset is empty");
    if (batch < 1)
        return qk_error(QK_ERR_ARG, "batcher: batch must be at least 1 (got %lld)", (long long)batch);
    const int C = qk_dataset_channels(ds);
    if (C > QK_MAX_CHANNELS)
        return qk_error(QK_ERR_ARG, "batcher: %d channels (at most %d)", C, QK_MAX_CHANNELS);
    if (qk_norm_check(&norm, C) != QK_OK)
        return qk_error_context(QK_ERR_ARG, "batcher");
    if (aug && (aug->crop_pad < 0 || aug->crop_pad > ds->h || aug->crop_pad > ds->w))
        return qk_error(QK_ERR_ARG, "batcher: crop padding %d outside 0..%d", aug->crop_pad,
                        ds->h < ds->w ? ds->h : ds->w);
    if (aug && (aug->flip || aug->crop_pad) && !ds->images)
        return qk_error(QK_ERR_ARG, "batcher: augmentation needs uint8 images");
    b->perm = qk_malloc((size_t)ds->n * sizeof(int64_t));
    b->luts = qk_malloc((size_t)C * sizeof *b->luts);
    if (!b->perm || !b->luts) {
        qk_free(b->perm);
        qk_free(b->luts);
        b->perm = NULL;
        b->luts = NULL;
        return qk_error(QK_ERR_NOMEM, "batcher: cannot allocate the index of %lld items", (long long)ds->n);
    }
    for (int k = 0; k < C; k++)
        qk_norm_lut_ch(&norm, k, b->luts[k]);
    b->ds = ds;
    b->batch = batch;
    b->shuffle = shuffle;
    b->seed = seed;
    b->norm = norm;
    if (aug)
        b->aug = *aug;
    qk_norm_lut(norm, b->lut);
    for (int64_t i = 0; i < ds->n; i++)
        b->perm[i] = i;
    b->epoch = -1;
    return QK_OK;
}

void qk_batcher_free(qk_batcher *b)
{
    qk_free(b->perm);
    qk_free(b->luts);
    memset(b, 0, sizeof *b);
}

void qk_batcher_epoch(qk_batcher *b, int64_t epoch)
{
    for (int64_t i = 0; i < b->ds->n; i++)
        b->perm[i] = i;
    if (b->shuffle) {
        qk_rng r;
        qk_rng_seed(&r, stream_seed(b->seed, 1, epoch, 0));
        qk_shuffle(b->perm, b->ds->n, &r);
    }
    b->epoch = epoch;
}

int64_t qk_batcher_count(const qk_batcher *b)
{
    return (b->ds->n + b->batch - 1) / b->batch;
}

/* One image, channel by channel, no augmentation: src channel of output
 * channel k is c-1-k under bgr. */
static void fill_one(const qk_dataset *ds, const qk_norm *norm, float (*luts)[256], int64_t item, float *x)
{
    const int C = qk_dataset_channels(ds);
    const int64_t hw = (int64_t)ds->h * ds->w;
    for (int k = 0; k < C; k++) {
        int sk = norm->bgr ? C - 1 - k : k;
        float *d = x + k * hw;
        if (ds->images) {
            const uint8_t *s = ds->images + (item * C + sk) * hw;
            const float *lut = luts[k];
            for (int64_t p = 0; p < hw; p++)
                d[p] = lut[s[p]];
        } else {
            const float *s = ds->fimages + (item * C + sk) * hw;
            for (int64_t p = 0; p < hw; p++)
                d[p] = norm_value(norm, k, (double)s[p]);
        }
    }
}

typedef struct fill_job {
    const qk_dataset *ds;
    const qk_norm *norm;
    float (*luts)[256];
    const int64_t *items;
    float *x;
} fill_job;

static void fill_task(void *ctx, int64_t t, int worker)
{
    (void)worker;
    fill_job *j = ctx;
    int64_t per = (int64_t)qk_dataset_channels(j->ds) * j->ds->h * j->ds->w;
    fill_one(j->ds, j->norm, j->luts, j->items[t], j->x + t * per);
}

/* Wait for items[0, m) of ds: the range up to the largest (decoding goes in
 * order, so that is what a wait costs anyway). */
static qk_status wait_items(const qk_dataset *ds, const int64_t *items, int64_t m)
{
    if (!ds->decoder || m < 1)
        return QK_OK;
    int64_t lo = items[0], hi = items[0];
    for (int64_t k = 1; k < m; k++) {
        lo = items[k] < lo ? items[k] : lo;
        hi = items[k] > hi ? items[k] : hi;
    }
    return qk_dataset_wait(ds, lo, hi + 1);
}

qk_status qk_dataset_fill(const qk_dataset *ds, const qk_norm *norm, const int64_t *items, int64_t m, float *x,
                          int64_t *y, qk_pool *pool)
{
    qk_status st = wait_items(ds, items, m);
    if (st != QK_OK)
        return st;
    const int C = qk_dataset_channels(ds);
    float luts[QK_MAX_CHANNELS][256];
    for (int k = 0; k < C && ds->images; k++)
        qk_norm_lut_ch(norm, k, luts[k]);
    fill_job j = { ds, norm, luts, items, x };
    qk_pool_run(m > 1 ? pool : NULL, m, fill_task, &j);
    for (int64_t k = 0; y && k < m; k++)
        y[k] = qk_dataset_label(ds, items[k]);
    return QK_OK;
}

qk_status qk_batcher_get(qk_batcher *b, int64_t i, float *x, int64_t *y, int64_t *mp)
{
    *mp = 0;
    int64_t start = i * b->batch;
    if (i < 0 || start >= b->ds->n)
        return QK_OK;
    int64_t m = b->ds->n - start < b->batch ? b->ds->n - start : b->batch;
    qk_status st = wait_items(b->ds, b->perm + start, m);
    if (st != QK_OK)
        return st;
    *mp = m;
    const int h = b->ds->h, w = b->ds->w, pad = b->aug.crop_pad, C = qk_dataset_channels(b->ds);
    const int64_t hw = (int64_t)h * w;
    if (!b->aug.flip && !pad) {
        for (int64_t k = 0; k < m; k++)
            fill_one(b->ds, &b->norm, b->luts, b->perm[start + k], x + k * C * hw);
        for (int64_t k = 0; y && k < m; k++)
            y[k] = qk_dataset_label(b->ds, b->perm[start + k]);
        return QK_OK;
    }
    qk_rng r;
    qk_rng_seed(&r, stream_seed(b->seed, 2, b->epoch, i));
    for (int64_t k = 0; k < m; k++) {
        int64_t item = b->perm[start + k];
        int flip = b->aug.flip ? (int)qk_rng_below(&r, 2) : 0;
        int dy = pad, dx = pad;
        if (pad > 0) {
            dy = (int)qk_rng_below(&r, (uint32_t)(2 * pad + 1));
            dx = (int)qk_rng_below(&r, (uint32_t)(2 * pad + 1));
        }
        for (int c = 0; c < C; c++) {
            int sc = b->norm.bgr ? C - 1 - c : c;
            qk_image_prepare(b->ds->images + (item * C + sc) * hw, h, w, x + (k * C + c) * hw, b->luts[c], flip,
                             pad, dy, dx);
        }
        if (y)
            y[k] = qk_dataset_label(b->ds, item);
    }
    return QK_OK;
}
