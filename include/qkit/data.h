/* qkit data layer: datasets (IDX files, image folders, .npy, arrays in
 * memory), per-epoch shuffling, batching with normalization and
 * augmentation.
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
 *           int64_t n;
 *           if (qk_batcher_get(&b, i, x, y, &n) != QK_OK)   // x [n,1,28,28] f32, y [n] i64
 *               return 1;
 *           assert(n == (i < 7 ? 128 : 1000 - 7 * 128));   // the last batch is partial
 *       }
 *   }
 *   free(x); free(y);
 *   qk_batcher_free(&b);
 *   qk_dataset_free(&train);
 * (end of example)
 *
 * Beyond IDX files: image folders (PNG/JPEG through libpng and
 * libjpeg-turbo, resized and cropped the torchvision way), .npy arrays and
 * arrays in memory (qk_dataset_from_u8 / _f32), any number of channels and
 * classes, labels optional, per-channel normalization.
 *
 * Determinism: the order of epoch e depends only on (seed, e); the
 * augmentation of batch i of epoch e only on (seed, e, i). A run resumed at
 * any batch therefore sees exactly the data an uninterrupted run sees.
 *
 * Background decoding: an image folder loaded with qk_data_opts.background
 * is returned once its file list is read and every image header checked;
 * the images are decoded in dataset order on background threads while the
 * caller computes. qk_dataset_fill and qk_batcher_get wait for the items
 * they read (an evaluation in dataset order starts on the first batch while
 * later images are still being decoded); code that reads the pixel arrays
 * itself calls qk_dataset_wait first. Every other loader (and an eager
 * folder) returns a dataset whose items are all ready.
 *
 * Thread safety: a loaded dataset is read-only: any number of threads may
 * read it (and wait on it); a batcher belongs to one thread at a time.
 * qk_dataset_free of a dataset still decoding stops and joins its threads;
 * no other thread may use the dataset or its views then.
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
/* Most channels a dataset or a normalization may have. */
#define QK_MAX_CHANNELS 8

/* n images of c x h x w values, image after image (NCHW), and optional
 * labels. The pixels are either uint8 (`images`, 0..255) or float32
 * (`fimages`, on the [0,1] pixel scale: a float value v is normalized like
 * the uint8 pixel 255 v); exactly one of the two is set. Labels are either
 * uint8 (`labels`, the IDX files) or int32 (`labels32`, the other loaders)
 * or neither (unlabelled: calibration, agreement with a float model).
 * c == 0 means 1 (datasets built before channels existed: positional
 * initializers { n, h, w, images, labels, owned } keep working). classes:
 * number of classes when known (0: unknown; QK_NUM_CLASSES for IDX).
 * owned = 1: qk_dataset_free releases the arrays; views have owned = 0.
 * decoder: set while the images of a folder loaded with
 * qk_data_opts.background may still be decoding (pixels of an item are
 * valid only once qk_dataset_wait covered it); NULL: every item is ready.
 * first: index of item 0 in the decoder's order (views). */
typedef struct qk_dataset {
    int64_t n;
    int h, w;
    uint8_t *images; /* [n, c, h, w] or NULL */
    uint8_t *labels; /* [n] or NULL */
    int owned;
    int c;
    float *fimages;    /* [n, c, h, w] or NULL */
    int32_t *labels32; /* [n] or NULL */
    int classes;
    struct qk_decoder *decoder; /* background decoding (owned by the dataset with owned = 1) or NULL */
    int64_t first;
} qk_dataset;

int qk_dataset_channels(const qk_dataset *ds);            /* c, 1 when 0 */
int qk_dataset_has_labels(const qk_dataset *ds);          /* 1 if labels or labels32 */
int64_t qk_dataset_label(const qk_dataset *ds, int64_t i); /* -1 when unlabelled */
/* "[n,c,h,w] uint8" / "float32" into buf (for messages). */
const char *qk_dataset_shape_str(const qk_dataset *ds, char *buf, size_t size);
/* QK_OK when the images fit a model input of dims[4] ([N,C,H,W], N any);
 * else QK_ERR_SHAPE naming both shapes ("data X is [...], model input 'in'
 * is [...]"). what/input name the data and the input in the message. */
qk_status qk_dataset_check_input(const qk_dataset *ds, const char *what, const char *input, int ndim,
                                 const int64_t *dims);

/* A dataset from arrays in memory (the entry points for bindings such as
 * ctypes): n images of c x h x w, NCHW (nhwc 0) or NHWC (nhwc 1), copied
 * into an owned NCHW dataset. labels: n int64 labels >= 0 or NULL.
 * Errors: QK_ERR_ARG (sizes < 1, c > QK_MAX_CHANNELS, a negative label),
 * QK_ERR_NOMEM. */
qk_status qk_dataset_from_u8(int64_t n, int c, int h, int w, const uint8_t *pixels, int nhwc,
                             const int64_t *labels, qk_dataset *ds);
qk_status qk_dataset_from_f32(int64_t n, int c, int h, int w, const float *values, int nhwc,
                              const int64_t *labels, qk_dataset *ds);

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
/* 1 if dir holds <split>-images-idx3-ubyte[.gz] for split train or t10k. */
int qk_dataset_is_idx_dir(const char *dir);

/* A non-owning view of items [start, start + n) of src (clamped to src->n);
 * it shares src's background decoding (waits on a view wait for src's items). */
qk_dataset qk_dataset_view(const qk_dataset *src, int64_t start, int64_t n);
/* Safe on zeroed or view datasets. A dataset still decoding in the
 * background is stopped first: its threads finish the image in hand and are
 * joined. */
void qk_dataset_free(qk_dataset *ds);

/* Wait until items [lo, hi) of ds (clamped to [0, ds->n)) are decoded and
 * may be read. Returns at once for a dataset without background decoding.
 * Images are decoded in dataset order and decoding stops at the first one
 * that fails: that image's error (QK_ERR_FORMAT, QK_ERR_IO, ...; the message
 * names the file) is then returned by every wait whose range ends after it,
 * and waits on earlier items still succeed. The result depends only on the
 * files, not on the thread count or timing. */
qk_status qk_dataset_wait(const qk_dataset *ds, int64_t lo, int64_t hi);
/* How many items of ds, from its first, are decoded now (no waiting):
 * ds->n when all are (always, without background decoding). */
int64_t qk_dataset_ready(const qk_dataset *ds);

/* ---- loading options (image folders, .npy files) ---- */
typedef struct qk_data_opts {
    int c;       /* channels to produce from decoded images: 1 or 3 (gray <-> RGB
                    as PIL's convert: L = (19595 R + 38470 G + 7471 B + 32768) >> 16);
                    0: as decoded */
    int resize;  /* > 0: resize so the shorter side is this (bilinear, PIL's
                    antialiased resampling as torchvision's Resize on PIL images) */
    int crop;    /* > 0: centre crop crop x crop after resizing (torchvision
                    CenterCrop: offsets round((size - crop) / 2), zero padding
                    when the image is smaller) */
    int nhwc;    /* .npy images: 1 = [N,H,W,C], 0 = [N,C,H,W] ([N,H,W] is C = 1) */
    const char *labels; /* .npy labels file (int64/int32/uint8 [N]) or NULL */
    int need_labels;    /* 1: an unlabelled source is an error */
    int64_t limit;      /* > 0: load at most this many images (in order) */
    int background;     /* image folders: 1 = decode in the background
                           (qk_dataset_load_images); 0 = before returning */
} qk_data_opts;

/* The most pixels one image may have, decoded or after resizing (Pillow's
 * decompression-bomb limit): a larger one is QK_ERR_FORMAT before anything
 * is allocated. */
#define QK_IMAGE_MAX_PIXELS 178956970LL

/* Decode one PNG or JPEG file (libpng / libjpeg-turbo; the type is taken
 * from the file's signature) into *pix, a qk_malloc'ed [h, w, c] uint8
 * array (interleaved, c = 1 or 3; alpha dropped, 16-bit reduced to 8,
 * palettes expanded), converted to want_c channels when want_c is 1 or 3.
 * Errors: QK_ERR_IO (unreadable), QK_ERR_FORMAT (not PNG/JPEG, corrupt or
 * truncated, more than QK_IMAGE_MAX_PIXELS: the message names the file). */
qk_status qk_image_decode(const char *path, int want_c, uint8_t **pix, int *c, int *h, int *w);
/* Resize an interleaved [h, w, c] uint8 image to [oh, ow, c] the way
 * Pillow's Image.resize(BILINEAR) does (triangle filter widened by the
 * scale when shrinking, horizontal pass then vertical, 22-bit fixed point):
 * bit-identical to Pillow 9 on the images tested. dst must not alias src. */
qk_status qk_image_resize(const uint8_t *src, int h, int w, int c, uint8_t *dst, int oh, int ow);
/* Shorter side to `resize` (0: unchanged), then centre crop `crop` (0: none):
 * the output size torchvision's Resize(resize) + CenterCrop(crop) gives. */
void qk_image_out_size(int h, int w, int resize, int crop, int *oh, int *ow);
/* Decode + convert + resize + crop one file into *chw, a qk_malloc'ed
 * [c, h, w] uint8 array (c = o->c or as decoded; h, w as
 * qk_image_out_size). Errors as qk_image_decode. */
qk_status qk_image_load(const char *path, const qk_data_opts *o, uint8_t **chw, int *c, int *h, int *w);
/* The c, h, w qk_image_load gives for the file, from its header alone (the
 * PNG chunks before the image data, the JPEG markers before the scan): no
 * pixel is decoded. Errors as qk_image_load for what the header shows (a
 * missing file, not a PNG/JPEG, a corrupt header, the pixel limits);
 * damage in the image data is found by qk_image_load only. */
qk_status qk_image_probe(const char *path, const qk_data_opts *o, int *c, int *h, int *w);

/* An image folder: one subfolder per class (names sorted bytewise = labels
 * 0, 1, ...), or a flat folder of images (unlabelled). Files ending in
 * .png/.jpg/.jpeg (any case) are read. Every file's header is read first
 * (on pool; NULL: serial): all images must end up the same size (same
 * files, or --resize + --crop). Then the images are decoded, converted,
 * resized and cropped straight into the dataset's array:
 *   o->background 0: on pool, before returning;
 *   o->background 1: on qk_pool_threads(pool) background threads of their
 *     own (not the pool's: the caller's compute keeps the pool), in dataset
 *     order, after returning; readers wait (qk_dataset_wait). A damaged
 *     image found then is reported by the waits that reach it.
 * Pixels are the same either way and for any thread count. Errors name the
 * file or folder: QK_ERR_IO (missing folder or file), an empty class folder
 * or no images (QK_ERR_FORMAT), a corrupt image (QK_ERR_FORMAT; in the
 * background: from the waits), mixed sizes (QK_ERR_SHAPE, both files and
 * sizes), QK_ERR_NOMEM (also: no decoding thread could be started).
 * On error *ds is zeroed. */
qk_status qk_dataset_load_images(const char *dir, const qk_data_opts *o, qk_pool *pool, qk_dataset *ds);

/* A .npy file (NumPy format 1.0-3.0, C order) of uint8 or float32 images,
 * [N,C,H,W] or [N,H,W,C] (o->nhwc) or [N,H,W]; labels from o->labels.
 * Errors: QK_ERR_FORMAT naming the file and its dtype/shape (another dtype,
 * Fortran order, another rank, a labels count or dtype that does not fit). */
qk_status qk_dataset_load_npy(const char *path, const qk_data_opts *o, qk_dataset *ds);
/* Labels of ds from a .npy of n integers (int64, int32 or uint8; n: the
 * number of items the source had, ds->n <= n): sets ds->labels32 and
 * ds->classes. Errors: QK_ERR_FORMAT naming the file, dtype and shape. */
qk_status qk_dataset_load_labels(const char *path, int64_t n, qk_dataset *ds);
/* Read a whole .npy: dtype descr ("<f4", "|u1", "<i8", ...), ndim, dims[8],
 * data (qk_malloc'ed, little-endian as stored). */
qk_status qk_npy_read(const char *path, char descr[16], int *ndim, int64_t dims[8], void **data);
/* Write a C-order .npy (descr "<f4", "|u1", "<i8", "<i4"), atomically. */
qk_status qk_npy_write(const char *path, const char *descr, int ndim, const int64_t *dims, const void *data);

/* ---- normalization: x = scale * (pixel / 255 - mean[k]) / std[k] ----
 * mean/std: one value for every channel (nc == 0, the original form: a
 * { mean, std } initializer keeps working) or nc per-channel values
 * cmean/cstd (nc == 1 or the data's channel count). scale 0 means 1 (the
 * expression is then exactly the original one). bgr = 1: output channel k
 * takes the data's channel c-1-k (RGB data into a BGR model); mean[k] and
 * std[k] are in the model's channel order. */
typedef struct qk_norm {
    float mean, std;
    int nc;
    float cmean[QK_MAX_CHANNELS], cstd[QK_MAX_CHANNELS];
    float scale;
    int bgr;
} qk_norm;
#define QK_NORM_FASHION_MEAN 0.2860f
#define QK_NORM_FASHION_STD 0.3530f
qk_norm qk_norm_default(void); /* Fashion-MNIST 0.2860 / 0.3530 */
/* ImageNet: mean 0.485,0.456,0.406, std 0.229,0.224,0.225 (torchvision). */
qk_norm qk_norm_imagenet(void);
/* mean/std of channel k (the scalar ones when nc == 0). */
float qk_norm_mean(const qk_norm *n, int k);
float qk_norm_std(const qk_norm *n, int k);
/* QK_ERR_ARG unless every std > 0 and nc is 0, 1 or c (c channels of data). */
qk_status qk_norm_check(const qk_norm *n, int c);
/* A model's own values are its metadata: qk_graph_get_norm / qk_graph_get_norm_ch (graph.h). */

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
/* The table of channel k: lut[p] = scale * (p / 255 - mean[k]) / std[k]. */
void qk_norm_lut_ch(const qk_norm *n, int k, float lut[256]);
/* Normalize images [items] of ds into x [m, c, h, w] (c, h, w of ds), no
 * augmentation; y (may be NULL) receives the labels (-1 unlabelled). Runs
 * the images on pool (NULL: serial). Waits for the items first
 * (qk_dataset_wait up to the largest index); its error is returned and x
 * is then not written. */
qk_status qk_dataset_fill(const qk_dataset *ds, const qk_norm *norm, const int64_t *items, int64_t m, float *x,
                          int64_t *y, qk_pool *pool);

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
    float (*luts)[256]; /* [c] per-channel tables (uint8 data) */
} qk_batcher;

/* batch >= 1; shuffle 0 = dataset order; aug NULL = none. Allocates only the
 * index array and the channel tables (the dataset is never copied). The
 * dataset may be unlabelled (y then receives -1). */
qk_status qk_batcher_init(qk_batcher *b, const qk_dataset *ds, int64_t batch, int shuffle,
                          uint64_t seed, qk_norm norm, const qk_augment *aug);
void qk_batcher_free(qk_batcher *b);
/* Order for epoch e: identity shuffled by an RNG seeded from (seed, e)
 * (identity when shuffle is 0). No allocation. */
void qk_batcher_epoch(qk_batcher *b, int64_t epoch);
/* Batches per epoch: ceil(n / batch) (the last batch may be partial). */
int64_t qk_batcher_count(const qk_batcher *b);
/* Fill batch i (0-based) of the current epoch: x receives [m, c, h, w]
 * normalized floats (NCHW), y (may be NULL) m int64 labels (-1 for an
 * unlabelled dataset; augmentation needs uint8 data); *m receives the
 * batch's size (0 if i is out of range). Augmentation draws come from an
 * RNG seeded from (seed, epoch, i): per image, flip bit, then dy, then dx.
 * Waits for the batch's items (qk_dataset_wait up to the largest index: in
 * dataset order only the batch, shuffled usually the whole dataset); its
 * error is returned (*m 0, x not written). */
qk_status qk_batcher_get(qk_batcher *b, int64_t i, float *x, int64_t *y, int64_t *m);

#ifdef __cplusplus
}
#endif
#endif
