/* qkit data layer: IDX datasets (MNIST / Fashion-MNIST format), per-epoch
 * shuffling, batching with normalization and augmentation.
 *
 * Example (`make test` runs it):
 *
 *   qk_dataset train;
 *   if (qk_dataset_load_dir(NULL, "train", &train) != QK_OK) {   // default dir
 *       fprintf(stderr, "%s\n", qk_last_error());
 *       return 1;
 *   }
 *   qk_dataset part = qk_dataset_view(&train, 0, 1000);   // the first 1000 images
 *   qk_batcher b;
 *   qk_augment aug = { .flip = 1, .crop_pad = 2 };
 *   float *x = malloc(128 * 28 * 28 * sizeof *x);
 *   int64_t *y = malloc(128 * sizeof *y);
 *   if (!x || !y || qk_batcher_init(&b, &part, 128, 1, 42, qk_norm_default(), &aug) != QK_OK)
 *       return 1;
 *   for (int64_t e = 0; e < 2; e++) {
 *       qk_batcher_epoch(&b, e);                       // shuffle for epoch e
 *       for (int64_t i = 0; i < qk_batcher_count(&b); i++) {
 *           int64_t n = qk_batcher_get(&b, i, x, y);   // x [n,1,28,28] f32, y [n] i64
 *           assert(n == (i < 7 ? 128 : 1000 - 7 * 128));   // the last batch is partial
 *       }
 *   }
 *   free(x); free(y);
 *   qk_batcher_free(&b);
 *   qk_dataset_free(&train);
 * (end of example)
 *
 * Determinism: the order of epoch e depends only on (seed, e); the
 * augmentation of batch i of epoch e only on (seed, e, i). A run resumed at
 * any batch therefore sees exactly the data an uninterrupted run sees.
 *
 * Thread safety: a loaded dataset is read-only: any number of threads may read it;
 * a batcher belongs to one thread at a time.
 */
#ifndef QKIT_DATA_H
#define QKIT_DATA_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif


/* Default location of Debian's dataset-fashion-mnist package. */
#define QK_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"
#define QK_NUM_CLASSES 10

/* n images of h x w uint8 pixels (row-major, image after image) and n labels
 * in [0, QK_NUM_CLASSES). owned = 1: qk_dataset_free releases the arrays;
 * views (qk_dataset_view) have owned = 0. */
typedef struct qk_dataset {
    int64_t n;
    int h, w;
    uint8_t *images; /* [n, h, w] */
    uint8_t *labels; /* [n] */
    int owned;
} qk_dataset;

/* Read one IDX file of unsigned bytes (type code 0x08), gzip-compressed or
 * plain (zlib's gzread reads both). Expects exactly `ndim` dimensions
 * (magic 0x0000080<ndim>); dims[0..ndim) receive the sizes, *data a
 * qk_malloc'ed array of prod(dims) bytes (free with qk_free).
 * Errors: QK_ERR_IO (missing/unreadable file; truncated: says how many bytes
 * were expected and how many are present), QK_ERR_FORMAT (wrong magic,
 * wrong number of dimensions, trailing bytes). */
qk_status qk_idx_read(const char *path, int ndim, int64_t *dims, uint8_t **data);

/* Images (idx3) + labels (idx1) files into *ds. Errors as qk_idx_read, plus
 * QK_ERR_FORMAT for an image/label count mismatch or a label >= 10. */
qk_status qk_dataset_load(const char *images_path, const char *labels_path, qk_dataset *ds);

/* <dir>/<split>-images-idx3-ubyte[.gz] and <dir>/<split>-labels-idx1-ubyte[.gz]
 * (the .gz name is tried first). dir NULL or "" = QK_FASHION_MNIST_DIR;
 * split "train" or "t10k" ("test" is accepted as t10k). A missing directory
 * or file gives QK_ERR_IO with "install it with: apt-get install
 * dataset-fashion-mnist, or pass --data DIR". */
qk_status qk_dataset_load_dir(const char *dir, const char *split, qk_dataset *ds);

/* A non-owning view of items [start, start + n) of src (clamped to src->n). */
qk_dataset qk_dataset_view(const qk_dataset *src, int64_t start, int64_t n);
void qk_dataset_free(qk_dataset *ds); /* safe on zeroed or view datasets */

/* ---- normalization: x = (pixel / 255 - mean) / std ---- */
typedef struct qk_norm {
    float mean, std;
} qk_norm;
#define QK_NORM_FASHION_MEAN 0.2860f
#define QK_NORM_FASHION_STD 0.3530f
qk_norm qk_norm_default(void); /* Fashion-MNIST 0.2860 / 0.3530 */
/* A model's own values are its metadata: qk_graph_get_norm (graph.h). */

/* ---- augmentation ---- */
typedef struct qk_augment {
    int flip;     /* 1: random horizontal flip with p = 0.5 */
    int crop_pad; /* > 0: random crop h x w from the image zero-padded by this
                     many pixels on each side (pad with raw pixel 0, then
                     normalize: torchvision RandomCrop(h, padding) before
                     Normalize). 0: no crop. */
} qk_augment;

/* Fisher-Yates shuffle of idx[0..n) with r (in place). */
void qk_shuffle(int64_t *idx, int64_t n, qk_rng *r);

/* One image into normalized float: dst[y][x] = lut[src'(y, x)] where src' is
 * src mirrored horizontally when flip, then shifted: src'(y, x) =
 * src_flipped(y + dy - pad, x + dx - pad) and raw 0 outside the image.
 * dy, dx in [0, 2*pad]; pad = 0, dy = dx = 0 is the identity.
 * lut[p] = (p / 255 - mean) / std (qk_norm_lut). Order as the peer script:
 * flip first, then crop. */
void qk_image_prepare(const uint8_t *src, int h, int w, float *dst, const float *lut,
                      int flip, int pad, int dy, int dx);
void qk_norm_lut(qk_norm n, float lut[256]);

/* ---- batcher ---- */
typedef struct qk_batcher {
    const qk_dataset *ds; /* borrowed */
    int64_t batch;
    int shuffle;
    uint64_t seed;
    qk_norm norm;
    qk_augment aug;
    int64_t *perm;  /* [ds->n]: the current epoch's order */
    int64_t epoch;  /* epoch the order belongs to (-1 before qk_batcher_epoch) */
    float lut[256];
} qk_batcher;

/* batch >= 1; shuffle 0 = dataset order; aug NULL = none. Allocates only the
 * index array (the dataset is never copied). */
qk_status qk_batcher_init(qk_batcher *b, const qk_dataset *ds, int64_t batch, int shuffle,
                          uint64_t seed, qk_norm norm, const qk_augment *aug);
void qk_batcher_free(qk_batcher *b);
/* Order for epoch e: identity shuffled by an RNG seeded from (seed, e)
 * (identity when shuffle is 0). No allocation. */
void qk_batcher_epoch(qk_batcher *b, int64_t epoch);
/* Batches per epoch: ceil(n / batch) (the last batch may be partial). */
int64_t qk_batcher_count(const qk_batcher *b);
/* Fill batch i (0-based) of the current epoch: x receives [m, 1, h, w]
 * normalized floats (NCHW), y (may be NULL) m int64 labels; returns m
 * (0 if i is out of range). Augmentation draws come from an RNG seeded
 * from (seed, epoch, i): per image, flip bit, then dy, then dx. */
int64_t qk_batcher_get(qk_batcher *b, int64_t i, float *x, int64_t *y);

#ifdef __cplusplus
}
#endif
#endif
