/* Data sources beyond IDX: image folders (PNG/JPEG written here with libpng
 * and libjpeg), resize/crop against values Pillow/torchvision give, .npy
 * (both layouts, both dtypes, labels), .pb directories, per-channel
 * normalization and its metadata, agreement without labels, and every
 * bad-input case (library messages and the CLI's exit status). */
#include "qkit/data.h"
#include "qkit/graph.h"
#include "qkit/onnx.h"
#include "qkit/registry.h"
#include "qkit/train.h"
#include "cli_fx.h"
#include "qt.h"

#include <jpeglib.h>
#include <png.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static char g_dir[64];

static const char *P(const char *name)
{
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static void mkdirs(const char *name)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    for (char *s = p + strlen(g_dir) + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            mkdir(p, 0755);
            *s = '/';
        }
    mkdir(p, 0755);
}

/* interleaved [h, w, c] */
static void write_png(const char *path, int w, int h, int c, const uint8_t *pix)
{
    FILE *f = fopen(path, "wb");
    png_structp p = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(p);
    png_init_io(p, f);
    png_set_IHDR(p, info, (png_uint_32)w, (png_uint_32)h, 8, c == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(p, info);
    for (int y = 0; y < h; y++)
        png_write_row(p, (png_const_bytep)(pix + (size_t)y * w * c));
    png_write_end(p, NULL);
    png_destroy_write_struct(&p, &info);
    fclose(f);
}

static void write_jpeg(const char *path, int w, int h, const uint8_t *rgb)
{
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr err;
    ci.err = jpeg_std_error(&err);
    jpeg_create_compress(&ci);
    FILE *f = fopen(path, "wb");
    jpeg_stdio_dest(&ci, f);
    ci.image_width = (JDIMENSION)w;
    ci.image_height = (JDIMENSION)h;
    ci.input_components = 3;
    ci.in_color_space = JCS_RGB;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, 95, TRUE);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW row = (JSAMPROW)(rgb + (size_t)ci.next_scanline * w * 3);
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    fclose(f);
}

static void truncate_half(const char *path)
{
    struct stat sb;
    stat(path, &sb);
    QT_CHECK(truncate(path, sb.st_size / 2) == 0, "truncate %s", path);
}

/* The 13x9 RGB test image (pixel (i, j, c) = (37 i + 11 j + 50 c) % 256). */
static void test_image(uint8_t *a)
{
    for (int i = 0; i < 9; i++)
        for (int j = 0; j < 13; j++)
            for (int c = 0; c < 3; c++)
                a[(i * 13 + j) * 3 + c] = (uint8_t)((i * 37 + j * 11 + c * 50) % 256);
}

static void test_resize_pil(void)
{
    uint8_t img[9 * 13 * 3];
    test_image(img);
    write_png(P("grad.png"), 13, 9, 3, img);
    /* torchvision Compose([Resize(4), CenterCrop(3)]) on the PIL image (Pillow 9.4), CHW */
    static const uint8_t want43[27] = { 68, 97, 126, 143, 170, 182, 178, 136, 80, 118, 147, 176, 187, 177,
                                        130, 87, 74, 82, 168, 192, 179, 164, 106, 73, 77, 101, 129 };
    static const uint8_t want65[75] = {
        54, 71, 89, 106, 124, 106, 123, 141, 158, 176, 159, 176, 194, 209, 161, 201, 205, 124, 96, 48, 107, 60, 58, 66, 84,
        104, 121, 139, 156, 174, 156, 173, 191, 195, 197, 209, 200, 159, 112, 52, 96, 87, 46, 63, 81, 64, 81, 99, 116, 134,
        154, 171, 189, 206, 201, 204, 199, 190, 98, 84, 163, 71, 62, 57, 73, 61, 78, 96, 113, 131, 114, 131, 149, 166, 184
    };
    uint8_t *chw;
    int c, h, w;
    qk_data_opts o = { .resize = 4, .crop = 3 };
    QT_OK(qk_image_load(P("grad.png"), &o, &chw, &c, &h, &w));
    QT_CHECK(c == 3 && h == 3 && w == 3 && chw && !memcmp(chw, want43, 27), "Resize(4)+CenterCrop(3) = PIL");
    qk_free(chw);
    qk_data_opts o2 = { .resize = 6, .crop = 5 };
    QT_OK(qk_image_load(P("grad.png"), &o2, &chw, &c, &h, &w));
    QT_CHECK(c == 3 && h == 5 && w == 5 && chw && !memcmp(chw, want65, 75), "Resize(6)+CenterCrop(5) = PIL");
    qk_free(chw);
    /* upscale 13x9 -> 20x14: Pillow's sum 107223, row 5 green 162,167,174,182,189,196 */
    uint8_t up[14 * 20 * 3];
    QT_OK(qk_image_resize(img, 9, 13, 3, up, 14, 20));
    long sum = 0;
    for (int i = 0; i < 14 * 20 * 3; i++)
        sum += up[i];
    QT_CHECK(sum == 107223 && up[(5 * 20 + 0) * 3 + 1] == 162 && up[(5 * 20 + 5) * 3 + 1] == 196,
             "upscale = PIL (sum %ld)", sum);
    /* RGB -> L as PIL's convert("L"): sum 14780, row 3 starts 152 163 174 185 196 */
    qk_data_opts og = { .c = 1 };
    QT_OK(qk_image_load(P("grad.png"), &og, &chw, &c, &h, &w));
    sum = 0;
    for (int i = 0; chw && i < 9 * 13; i++)
        sum += chw[i];
    QT_CHECK(c == 1 && sum == 14780 && chw[3 * 13] == 152 && chw[3 * 13 + 4] == 196, "RGB->L = PIL (sum %ld)", sum);
    qk_free(chw);
    int oh, ow;
    qk_image_out_size(375, 500, 256, 0, &oh, &ow);
    QT_CHECK(oh == 256 && ow == 341, "Resize(256) of 500x375 -> 341x256 (%dx%d)", ow, oh);
}

static void test_folder(qk_pool *pool)
{
    uint8_t rgb[5 * 6 * 3], gray[5 * 6];
    for (int i = 0; i < 5 * 6 * 3; i++)
        rgb[i] = (uint8_t)(i * 7);
    for (int i = 0; i < 5 * 6; i++)
        gray[i] = (uint8_t)(255 - i);
    mkdirs("fold/a_cls");
    mkdirs("fold/b_cls");
    write_png(P("fold/a_cls/0.png"), 6, 5, 3, rgb);
    write_png(P("fold/a_cls/1.PNG"), 6, 5, 1, gray);
    write_png(P("fold/b_cls/x.png"), 6, 5, 3, rgb);
    qk_dataset ds;
    qk_data_opts o = { .c = 3 };
    QT_OK(qk_dataset_load_images(P("fold"), &o, pool, &ds));
    QT_CHECK(ds.n == 3 && ds.c == 3 && ds.h == 5 && ds.w == 6 && ds.classes == 2 && ds.labels32 &&
                 qk_dataset_label(&ds, 0) == 0 && qk_dataset_label(&ds, 1) == 0 && qk_dataset_label(&ds, 2) == 1,
             "folder: 3 images, 2 classes, sorted labels");
    int ok = ds.images != NULL;
    for (int k = 0; ok && k < 3; k++)
        for (int p = 0; p < 30; p++)
            ok &= ds.images[k * 30 + p] == rgb[p * 3 + k] && ds.images[90 + k * 30 + p] == gray[p];
    QT_CHECK(ok, "folder: PNG pixels round trip (CHW), gray replicated to RGB");
    qk_dataset_free(&ds);
    /* flat folder: unlabelled; need_labels refuses it */
    mkdirs("flat");
    write_png(P("flat/b.png"), 6, 5, 3, rgb);
    write_png(P("flat/a.png"), 6, 5, 3, rgb);
    QT_OK(qk_dataset_load_images(P("flat"), NULL, pool, &ds));
    QT_CHECK(ds.n == 2 && !qk_dataset_has_labels(&ds) && qk_dataset_label(&ds, 1) == -1, "flat folder unlabelled");
    qk_dataset_free(&ds);
    qk_data_opts nl = { .need_labels = 1 };
    QT_CHECK(qk_dataset_load_images(P("flat"), &nl, pool, &ds) == QK_ERR_ARG && strstr(qk_last_error(), "labels"),
             "flat folder with labels required: %s", qk_last_error());
    /* JPEG decodes (lossy: close to the source) */
    mkdirs("jpg/c0");
    uint8_t big[16 * 16 * 3];
    for (int i = 0; i < 16 * 16 * 3; i++)
        big[i] = (uint8_t)(100 + (i % 3) * 40);
    write_jpeg(P("jpg/c0/a.jpg"), 16, 16, big);
    QT_OK(qk_dataset_load_images(P("jpg"), NULL, pool, &ds));
    QT_CHECK(ds.n == 1 && ds.c == 3 && ds.h == 16 && abs((int)ds.images[0] - 100) <= 3 &&
                 abs((int)ds.images[256 * 2] - 180) <= 3, "JPEG decode");
    qk_dataset_free(&ds);

    /* bad input: each names the file or folder */
    mkdirs("bad_trunc/c0");
    write_png(P("bad_trunc/c0/t.png"), 6, 5, 3, rgb);
    truncate_half(P("bad_trunc/c0/t.png"));
    QT_CHECK(qk_dataset_load_images(P("bad_trunc"), NULL, pool, &ds) == QK_ERR_FORMAT &&
                 strstr(qk_last_error(), "bad_trunc/c0/t.png") && ds.n == 0,
             "truncated PNG: %s", qk_last_error());
    mkdirs("bad_jpg");
    write_jpeg(P("bad_jpg/t.jpg"), 16, 16, big);
    truncate_half(P("bad_jpg/t.jpg"));
    QT_CHECK(qk_dataset_load_images(P("bad_jpg"), NULL, pool, &ds) == QK_ERR_FORMAT &&
                 strstr(qk_last_error(), "bad_jpg/t.jpg"), "truncated JPEG: %s", qk_last_error());
    mkdirs("bad_bytes");
    FILE *f = fopen(P("bad_bytes/x.png"), "wb");
    fputs("definitely not an image", f);
    fclose(f);
    QT_CHECK(qk_dataset_load_images(P("bad_bytes"), NULL, pool, &ds) == QK_ERR_FORMAT &&
                 strstr(qk_last_error(), "bad_bytes/x.png"), "not an image: %s", qk_last_error());
    mkdirs("bad_empty/c0");
    mkdirs("bad_empty/c1");
    write_png(P("bad_empty/c0/a.png"), 6, 5, 3, rgb);
    QT_CHECK(qk_dataset_load_images(P("bad_empty"), NULL, pool, &ds) == QK_ERR_FORMAT &&
                 strstr(qk_last_error(), "bad_empty/c1"), "empty class folder: %s", qk_last_error());
    mkdirs("bad_mixed/c0");
    write_png(P("bad_mixed/c0/a.png"), 6, 5, 3, rgb);
    write_png(P("bad_mixed/c0/b.png"), 5, 6, 3, rgb);
    QT_CHECK(qk_dataset_load_images(P("bad_mixed"), NULL, pool, &ds) == QK_ERR_SHAPE &&
                 strstr(qk_last_error(), "a.png") && strstr(qk_last_error(), "b.png") &&
                 strstr(qk_last_error(), "--resize"), "mixed sizes: %s", qk_last_error());
    qk_data_opts rc = { .resize = 4, .crop = 4 };
    QT_OK(qk_dataset_load_images(P("bad_mixed"), &rc, pool, &ds));
    QT_CHECK(ds.n == 2 && ds.h == 4 && ds.w == 4, "mixed sizes with --resize/--crop");
    qk_dataset_free(&ds);
}

/* A folder of n images of w x h (index i: PNG gray, PNG RGB or JPEG by i % 3
 * when mixed, else gray PNG), pixels from a hash of (i, pixel): noise, so
 * that the image data is most of the file. */
static void write_noise_folder(const char *dir, int n, int w, int h, int mixed)
{
    uint8_t *pix = malloc((size_t)w * h * 3);
    for (int i = 0; i < n; i++) {
        char p[512];
        int kind = mixed ? i % 3 : 0;
        for (int k = 0; k < w * h * 3; k++)
            pix[k] = (uint8_t)((((uint32_t)i * 2654435761u) ^ ((uint32_t)k * 40503u)) >> 7);
        snprintf(p, sizeof p, "%s/c%d/%03d.%s", dir, mixed ? i % 2 : 0, i, kind == 2 ? "jpg" : "png");
        if (kind == 2)
            write_jpeg(p, w, h, pix);
        else
            write_png(p, w, h, kind == 1 ? 3 : 1, pix);
    }
    free(pix);
}

static void truncate_to(const char *path, double frac)
{
    struct stat sb;
    stat(path, &sb);
    QT_CHECK(truncate(path, (off_t)((double)sb.st_size * frac)) == 0, "truncate %s", path);
}

typedef struct reader_arg {
    const qk_dataset *ds, *ref;
    int ok;
} reader_arg;

/* A second thread that waits on the same dataset and reads it. */
static void *reader_main(void *arg)
{
    reader_arg *r = arg;
    int64_t per = (int64_t)qk_dataset_channels(r->ds) * r->ds->h * r->ds->w;
    r->ok = 1;
    for (int64_t i = 0; i < r->ds->n; i++)
        r->ok &= qk_dataset_wait(r->ds, i, i + 1) == QK_OK &&
                 !memcmp(r->ds->images + i * per, r->ref->images + i * per, (size_t)per);
    return NULL;
}

/* Background decoding (qk_data_opts.background): the same pixels as
 * decoding before returning, for any thread count and through views,
 * fill and the batcher; waits; a damaged image late in the folder; free
 * while decoding. */
static void test_background(qk_pool *pool)
{
    enum { N = 45 };
    mkdirs("bg/c0");
    mkdirs("bg/c1");
    write_noise_folder(P("bg"), N, 20, 14, 1);
    qk_data_opts variants[2] = { { .c = 3 }, { .c = 3, .resize = 12, .crop = 10 } };
    for (int v = 0; v < 2; v++) {
        qk_dataset eager, bg;
        qk_data_opts o = variants[v];
        QT_OK(qk_dataset_load_images(P("bg"), &o, pool, &eager));
        QT_CHECK(eager.decoder == NULL && qk_dataset_ready(&eager) == N, "eager: every item ready");
        int64_t per = (int64_t)eager.c * eager.h * eager.w;
        for (int t = 0; t < 2; t++) { /* the pool's threads, then one (NULL pool) */
            o.background = 1;
            QT_OK(qk_dataset_load_images(P("bg"), &o, t ? NULL : pool, &bg));
            QT_CHECK(bg.n == N && bg.c == eager.c && bg.h == eager.h && bg.w == eager.w && bg.classes == 2 &&
                         qk_dataset_label(&bg, 7) == qk_dataset_label(&eager, 7),
                     "background: sizes and labels known at once (variant %d)", v);
            /* a view before anything was waited for: its items wait on the shared decoder */
            qk_dataset view = qk_dataset_view(&bg, 30, 10);
            QT_CHECK(view.decoder == bg.decoder && view.first == 30, "view shares the decoding");
            QT_OK(qk_dataset_wait(&view, 0, view.n));
            QT_CHECK(qk_dataset_ready(&view) == 10 && qk_dataset_ready(&bg) >= 40, "view ready after its wait");
            QT_CHECK(!memcmp(view.images, eager.images + 30 * per, (size_t)(10 * per)), "view pixels = eager");
            qk_dataset vv = qk_dataset_view(&view, 2, 3); /* a view of a view */
            QT_CHECK(vv.first == 32 && qk_dataset_ready(&vv) == 3, "view of a view");
            /* fill and the batcher wait for their items and give eager's floats */
            qk_norm nm = qk_norm_imagenet();
            float *xa = malloc((size_t)(N * per) * sizeof *xa), *xb = malloc((size_t)(N * per) * sizeof *xb);
            int64_t items[3] = { 44, 0, 21 }, ya[N], yb[N], m;
            QT_OK(qk_dataset_fill(&eager, &nm, items, 3, xa, ya, pool));
            QT_OK(qk_dataset_fill(&bg, &nm, items, 3, xb, yb, pool));
            QT_CHECK(!memcmp(xa, xb, (size_t)(3 * per) * sizeof *xa) && ya[0] == yb[0], "fill = eager");
            qk_batcher ba, bb;
            QT_OK(qk_batcher_init(&ba, &eager, 8, 1, 3, nm, NULL));
            QT_OK(qk_batcher_init(&bb, &bg, 8, 1, 3, nm, NULL));
            qk_batcher_epoch(&ba, 1);
            qk_batcher_epoch(&bb, 1);
            int same = 1;
            for (int64_t i = 0; i < qk_batcher_count(&ba); i++) {
                int64_t ma;
                QT_OK(qk_batcher_get(&ba, i, xa, ya, &ma));
                QT_OK(qk_batcher_get(&bb, i, xb, yb, &m));
                same &= m == ma && !memcmp(xa, xb, (size_t)(m * per) * sizeof *xa) &&
                        !memcmp(ya, yb, (size_t)m * sizeof *ya);
            }
            QT_CHECK(same, "shuffled batches = eager (variant %d, %s)", v, t ? "1 thread" : "pool");
            qk_batcher_free(&ba);
            qk_batcher_free(&bb);
            free(xa);
            free(xb);
            QT_OK(qk_dataset_wait(&bg, 0, N));
            QT_CHECK(qk_dataset_ready(&bg) == N && !memcmp(bg.images, eager.images, (size_t)(N * per)),
                     "all pixels = eager (variant %d, %s)", v, t ? "1 thread" : "pool");
            QT_OK(qk_dataset_wait(&bg, 5, 5));
            qk_dataset_free(&bg);
            QT_CHECK(bg.decoder == NULL && bg.images == NULL, "free zeroes");
        }
        /* another thread waits and reads while this one does */
        o.background = 1;
        QT_OK(qk_dataset_load_images(P("bg"), &o, pool, &bg));
        reader_arg ra = { &bg, &eager, 0 };
        pthread_t th;
        QT_CHECK(pthread_create(&th, NULL, reader_main, &ra) == 0, "reader thread");
        int64_t last[1] = { N - 1 };
        float *x1 = malloc((size_t)per * sizeof *x1);
        qk_norm nmi = qk_norm_imagenet();
        QT_OK(qk_dataset_fill(&bg, &nmi, last, 1, x1, NULL, NULL));
        free(x1);
        pthread_join(th, NULL);
        QT_CHECK(ra.ok, "a second reader thread sees eager's pixels");
        qk_dataset_free(&bg);
        qk_dataset_free(&eager);
    }

    /* a damaged image late in the folder: 28x28 gray noise PNGs, #25 and #33 truncated */
    enum { NB = 40 };
    mkdirs("bg_bad/c0");
    write_noise_folder(P("bg_bad"), NB, 28, 28, 0);
    truncate_to(P("bg_bad/c0/025.png"), 0.6);
    truncate_to(P("bg_bad/c0/033.png"), 0.6);
    qk_dataset ds;
    QT_CHECK(qk_dataset_load_images(P("bg_bad"), NULL, pool, &ds) == QK_ERR_FORMAT &&
                 strstr(qk_last_error(), "025.png") && ds.n == 0 && !ds.images,
             "eager: the first damaged file: %s", qk_last_error());
    qk_data_opts ob = { .background = 1 };
    for (int t = 0; t < 2; t++) {
        QT_OK(qk_dataset_load_images(P("bg_bad"), &ob, t ? NULL : pool, &ds));
        QT_OK(qk_dataset_wait(&ds, 0, 25));
        QT_CHECK(qk_dataset_wait(&ds, 0, 26) == QK_ERR_FORMAT && strstr(qk_last_error(), "bg_bad/c0/025.png"),
                 "wait reaching the damaged image: %s", qk_last_error());
        QT_CHECK(qk_dataset_wait(&ds, 34, 40) == QK_ERR_FORMAT && strstr(qk_last_error(), "025.png"),
                 "wait past it: the first damaged file, not #33: %s", qk_last_error());
        QT_CHECK(qk_dataset_ready(&ds) == 25, "ready stops at the damaged image (%lld)",
                 (long long)qk_dataset_ready(&ds));
        QT_OK(qk_dataset_wait(&ds, 3, 20));
        qk_dataset view = qk_dataset_view(&ds, 20, 10);
        QT_OK(qk_dataset_wait(&view, 0, 5));
        QT_CHECK(qk_dataset_wait(&view, 0, 6) == QK_ERR_FORMAT, "a view reaching it");
        qk_norm nm = qk_norm_default();
        qk_batcher b;
        float x[8 * 28 * 28];
        int64_t y[8], m = -1, two[2] = { 1, 24 }, bad[1] = { 30 };
        QT_OK(qk_batcher_init(&b, &ds, 8, 0, 0, nm, NULL));
        qk_batcher_epoch(&b, 0);
        QT_OK(qk_batcher_get(&b, 2, x, y, &m));
        QT_CHECK(m == 8, "batch before the damaged image");
        QT_CHECK(qk_batcher_get(&b, 3, x, y, &m) == QK_ERR_FORMAT && m == 0 && strstr(qk_last_error(), "025.png"),
                 "batch with the damaged image: %s", qk_last_error());
        qk_batcher_free(&b);
        QT_OK(qk_dataset_fill(&ds, &nm, two, 2, x, y, NULL));
        QT_CHECK(qk_dataset_fill(&ds, &nm, bad, 1, x, y, NULL) == QK_ERR_FORMAT, "fill past it");
        qk_dataset_free(&ds);
    }

    /* free while decoding: stops and joins the threads (sanitizers check the rest) */
    mkdirs("bg_big/c0");
    write_noise_folder(P("bg_big"), 60, 160, 120, 0);
    int early = 0;
    for (int r = 0; r < 6; r++) {
        QT_OK(qk_dataset_load_images(P("bg_big"), &ob, r & 1 ? NULL : pool, &ds));
        early += qk_dataset_ready(&ds) < ds.n;
        if (r >= 4)
            QT_OK(qk_dataset_wait(&ds, 0, 3)); /* some decoded, most not */
        qk_dataset_free(&ds);
        QT_CHECK(ds.decoder == NULL && ds.n == 0, "free while decoding zeroes");
    }
    QT_CHECK(early > 0, "freed at least once before the decoding finished (%d of 6)", early);
}

static void test_npy(void)
{
    const int N = 2, C = 3, H = 2, W = 4;
    uint8_t nchw[2 * 3 * 2 * 4], nhwc[2 * 3 * 2 * 4];
    float fn[48], fh[48];
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    int v = n * 100 + c * 30 + y * 5 + x;
                    nchw[((n * C + c) * H + y) * W + x] = (uint8_t)v;
                    nhwc[((n * H + y) * W + x) * C + c] = (uint8_t)v;
                    fn[((n * C + c) * H + y) * W + x] = (float)v / 255.0f;
                    fh[((n * H + y) * W + x) * C + c] = (float)v / 255.0f;
                }
    int64_t d_nchw[4] = { N, C, H, W }, d_nhwc[4] = { N, H, W, C }, dl[1] = { N };
    int64_t lab[2] = { 4, 1 };
    QT_OK(qk_npy_write(P("u8_nchw.npy"), "|u1", 4, d_nchw, nchw));
    QT_OK(qk_npy_write(P("u8_nhwc.npy"), "|u1", 4, d_nhwc, nhwc));
    QT_OK(qk_npy_write(P("f32_nchw.npy"), "<f4", 4, d_nchw, fn));
    QT_OK(qk_npy_write(P("f32_nhwc.npy"), "<f4", 4, d_nhwc, fh));
    QT_OK(qk_npy_write(P("lab.npy"), "<i8", 1, dl, lab));
    const char *names[4] = { "u8_nchw.npy", "u8_nhwc.npy", "f32_nchw.npy", "f32_nhwc.npy" };
    for (int i = 0; i < 4; i++) {
        qk_data_opts o = { .nhwc = i & 1, .labels = P("lab.npy") };
        qk_dataset ds;
        QT_OK(qk_dataset_load_npy(P(names[i]), &o, &ds));
        int ok = ds.n == N && ds.c == C && ds.h == H && ds.w == W && qk_dataset_label(&ds, 0) == 4 &&
                 qk_dataset_label(&ds, 1) == 1 && ds.classes == 5;
        for (int k = 0; ok && k < 48; k++)
            ok &= i < 2 ? ds.images && ds.images[k] == nchw[k] : ds.fimages && ds.fimages[k] == fn[k];
        QT_CHECK(ok, "npy %s: values in NCHW, labels", names[i]);
        /* uint8 v and float v / 255 normalize to the same value */
        if (ok) {
            qk_norm nm = qk_norm_imagenet();
            float x[48];
            int64_t items[2] = { 0, 1 };
            QT_OK(qk_dataset_fill(&ds, &nm, items, 2, x, NULL, NULL));
            double v = ((double)(0 * 100 + 1 * 30 + 1 * 5 + 2) / 255.0 - 0.456) / 0.224;
            QT_NEAR(x[(1 * H + 1) * W + 2], v, 1e-5, "per-channel normalization");
        }
        qk_dataset_free(&ds);
    }
    /* bad .npy: wrong dtype, wrong rank, labels that do not fit */
    double d64[4] = { 0 };
    int64_t d2[2] = { 2, 2 };
    QT_OK(qk_npy_write(P("f64.npy"), "<f8", 2, d2, d64));
    qk_dataset ds;
    QT_CHECK(qk_dataset_load_npy(P("f64.npy"), NULL, &ds) == QK_ERR_FORMAT && strstr(qk_last_error(), "<f8") &&
                 strstr(qk_last_error(), "f64.npy"), "npy wrong dtype: %s", qk_last_error());
    QT_OK(qk_npy_write(P("u8_2d.npy"), "|u1", 2, d2, nchw));
    QT_CHECK(qk_dataset_load_npy(P("u8_2d.npy"), NULL, &ds) == QK_ERR_FORMAT && strstr(qk_last_error(), "[2,2]"),
             "npy wrong shape: %s", qk_last_error());
    int64_t d3[1] = { 3 };
    QT_OK(qk_npy_write(P("lab3.npy"), "<i8", 1, d3, (int64_t[]){ 0, 1, 2 }));
    qk_data_opts o = { .labels = P("lab3.npy") };
    QT_CHECK(qk_dataset_load_npy(P("u8_nchw.npy"), &o, &ds) == QK_ERR_FORMAT && strstr(qk_last_error(), "lab3.npy"),
             "npy labels count: %s", qk_last_error());
    FILE *f = fopen(P("short.npy"), "wb");
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fclose(f);
    QT_CHECK(qk_dataset_load_npy(P("short.npy"), NULL, &ds) == QK_ERR_FORMAT, "npy truncated header");
    /* absurd shapes: refused before anything that size is allocated */
    static const char *const shapes[] = { "(4, 9223372036854775807)", "(1099511627777,)", "(100000000,)" };
    for (int i = 0; i < 3; i++) {
        char hdr[128];
        int k = snprintf(hdr, sizeof hdr, "{'descr': '|u1', 'fortran_order': False, 'shape': %s, }\n", shapes[i]);
        f = fopen(P("huge.npy"), "wb");
        fwrite("\x93NUMPY\x01\x00", 1, 8, f);
        fputc(k & 255, f);
        fputc(k >> 8, f);
        fwrite(hdr, 1, (size_t)k, f);
        fwrite("abcd", 1, 4, f);
        fclose(f);
        QT_CHECK(qk_dataset_load_npy(P("huge.npy"), NULL, &ds) == QK_ERR_FORMAT &&
                     strstr(qk_last_error(), i < 2 ? "implausibly large" : "4 present"),
                 "npy shape %s: %s", shapes[i], qk_last_error());
    }
}

/* A PNG that announces w x h pixels (signature, IHDR, an empty IDAT). */
static void write_png_header(const char *path, uint32_t w, uint32_t h)
{
    uint8_t ch[17] = { 'I', 'H', 'D', 'R' };
    for (int i = 0; i < 4; i++) {
        ch[4 + i] = (uint8_t)(w >> (24 - 8 * i));
        ch[8 + i] = (uint8_t)(h >> (24 - 8 * i));
    }
    ch[12] = 8; /* bit depth */
    ch[13] = 2; /* RGB */
    uLong crc = crc32(0L, ch, 17);
    uint8_t len[4] = { 0, 0, 0, 13 }, c4[4] = { (uint8_t)(crc >> 24), (uint8_t)(crc >> 16), (uint8_t)(crc >> 8),
                                                (uint8_t)crc };
    FILE *f = fopen(path, "wb");
    fwrite("\x89PNG\r\n\x1a\n", 1, 8, f);
    fwrite(len, 1, 4, f);
    fwrite(ch, 1, 17, f);
    fwrite(c4, 1, 4, f);
    /* an empty IDAT chunk: libpng reads the header up to the image data */
    static const uint8_t idat[12] = { 0, 0, 0, 0, 'I', 'D', 'A', 'T', 0x35, 0xAF, 0x06, 0x1E };
    fwrite(idat, 1, 12, f);
    fclose(f);
}

static void test_image_limits(void)
{
    uint8_t *pix = NULL;
    int c, h, w;
    write_png_header(P("bomb.png"), 200000, 200000);
    QT_CHECK(qk_image_decode(P("bomb.png"), 0, &pix, &c, &h, &w) == QK_ERR_FORMAT && !pix &&
                 strstr(qk_last_error(), "200000x200000") && strstr(qk_last_error(), "bomb.png"),
             "decompression bomb: %s", qk_last_error());
    /* a valid header of a modest size, data missing: an error, not a crash */
    write_png_header(P("nodata.png"), 64, 64);
    QT_CHECK(qk_image_decode(P("nodata.png"), 0, &pix, &c, &h, &w) == QK_ERR_FORMAT && !pix,
             "PNG without data: %s", qk_last_error());
    /* resizing a thin image to a huge shorter side */
    uint8_t px[3 * 1 * 400] = { 0 };
    write_png(P("thin.png"), 400, 1, 3, px);
    qk_data_opts o = { .resize = 30000 };
    uint8_t *chw = NULL;
    QT_CHECK(qk_image_load(P("thin.png"), &o, &chw, &c, &h, &w) == QK_ERR_FORMAT && !chw &&
                 strstr(qk_last_error(), "thin.png"),
             "resize past the pixel limit: %s", qk_last_error());
}

static void test_pb(void)
{
    mkdirs("pbdir");
    qk_tensor a, b;
    qk_tensor_alloc(&a, QK_F32, 4, (int64_t[]){ 2, 1, 4, 4 });
    qk_tensor_alloc(&b, QK_F32, 4, (int64_t[]){ 1, 1, 4, 4 });
    for (int i = 0; i < 32; i++)
        qk_f32(&a)[i] = (float)i;
    for (int i = 0; i < 16; i++)
        qk_f32(&b)[i] = 100.0f + (float)i;
    QT_OK(qk_onnx_save_tensor(&a, "x", P("pbdir/input_0.pb")));
    QT_OK(qk_onnx_save_tensor(&b, "x", P("pbdir/input_1.pb")));
    QT_OK(qk_onnx_save_tensor(&b, "y", P("pbdir/output_0.pb"))); /* ignored: outputs */
    qk_data_kind k;
    QT_CHECK(qk_data_kind_of(P("pbdir"), &k) == QK_OK && k == QK_DATA_PB, "pb dir detected");
    qk_dataset ds;
    QT_OK(qk_data_open(P("pbdir"), NULL, NULL, NULL, &ds));
    QT_CHECK(ds.n == 3 && ds.c == 1 && ds.h == 4 && ds.fimages && ds.fimages[31] == 31.0f &&
                 ds.fimages[32] == 100.0f && !qk_dataset_has_labels(&ds), "pb dir: 3 images concatenated in order");
    qk_dataset_free(&ds);
    mkdirs("pbbad");
    qk_tensor c;
    qk_tensor_alloc(&c, QK_F32, 4, (int64_t[]){ 1, 1, 5, 4 });
    QT_OK(qk_onnx_save_tensor(&a, "x", P("pbbad/a.pb")));
    QT_OK(qk_onnx_save_tensor(&c, "x", P("pbbad/b.pb")));
    QT_CHECK(qk_data_open(P("pbbad"), NULL, NULL, NULL, &ds) == QK_ERR_SHAPE && strstr(qk_last_error(), "b.pb"),
             "pb shapes differ: %s", qk_last_error());
    qk_tensor_free(&a);
    qk_tensor_free(&b);
    qk_tensor_free(&c);
    QT_CHECK(qk_data_kind_of(P("u8_nchw.npy"), &k) == QK_OK && k == QK_DATA_NPY, "npy detected");
    QT_CHECK(qk_data_kind_of(P("fold"), &k) == QK_OK && k == QK_DATA_FOLDER, "folder detected");
    QT_CHECK(qk_data_kind_of(P("nothing"), &k) == QK_ERR_IO && strstr(qk_last_error(), "nothing"), "missing path");
}

static void test_meta(void)
{
    qk_graph *g;
    QT_OK(qk_graph_create(&g));
    float m[3] = { 0.485f, 0.456f, 0.406f }, s[3] = { 0.229f, 0.224f, 0.225f }, rm[8], rs[8], a, b;
    int nc;
    QT_OK(qk_graph_set_norm(g, 0.2860f, 0.3530f));
    QT_CHECK(!strcmp(qk_graph_get_meta(g, "qkit.norm.mean"), "0.286000013"), "scalar norm text unchanged: %s",
             qk_graph_get_meta(g, "qkit.norm.mean"));
    QT_OK(qk_graph_get_norm_ch(g, 8, &nc, rm, rs));
    QT_CHECK(nc == 1 && rm[0] == 0.2860f && rs[0] == 0.3530f, "old keys read per channel");
    QT_OK(qk_graph_set_norm_ch(g, 3, m, s));
    QT_OK(qk_graph_get_norm_ch(g, 8, &nc, rm, rs));
    QT_CHECK(nc == 3 && rm[1] == m[1] && rs[2] == s[2], "per-channel norm round trip (%s)",
             qk_graph_get_meta(g, "qkit.norm.mean"));
    QT_CHECK(qk_graph_get_norm(g, &a, &b) == QK_ERR_FORMAT && strstr(qk_last_error(), "qk_graph_get_norm_ch"),
             "scalar read of per-channel values refused");
    qk_graph_prep p = { 255.0f, 1, 256, 224 }, r = { 0 };
    QT_OK(qk_graph_set_prep(g, &p));
    QT_OK(qk_graph_get_prep(g, &r));
    QT_CHECK(r.scale == 255.0f && r.bgr == 1 && r.resize == 256 && r.crop == 224, "prep metadata round trip");
    qk_graph_destroy(g);
}

static void test_agreement(qk_pool *pool)
{
    qk_graph *g = NULL, *g2 = NULL;
    if (qk_onnx_load("tests/data/torch/lenet.onnx", &g) != QK_OK || qk_onnx_load("tests/data/torch/lenet.onnx", &g2)) {
        QT_CHECK(0, "load lenet: %s", qk_last_error());
        return;
    }
    float *x = malloc(8 * 28 * 28 * sizeof *x);
    for (int i = 0; i < 8 * 28 * 28; i++)
        x[i] = (float)((i * 7919) % 256) / 255.0f;
    qk_dataset ds;
    QT_OK(qk_dataset_from_f32(8, 1, 28, 28, x, 0, NULL, &ds));
    qk_agree_result r;
    QT_OK(qk_evaluate_agreement(g, g2, &ds, qk_norm_default(), 4, pool, &r));
    QT_CHECK(r.images == 8 && r.top1 == 1.0 && r.top5 == 1.0 && isinf(r.sqnr_db) && fabs(r.cosine - 1.0) < 1e-9,
             "agreement of a model with itself");
    qk_eval_result e;
    QT_CHECK(qk_evaluate(g, &ds, qk_norm_default(), 4, pool, &e) == QK_ERR_ARG && strstr(qk_last_error(), "labels"),
             "evaluate without labels refused: %s", qk_last_error());
    qk_dataset_free(&ds);
    QT_OK(qk_dataset_from_f32(2, 3, 16, 16, x, 1, (int64_t[]){ 0, 1 }, &ds));
    QT_CHECK(qk_evaluate(g, &ds, qk_norm_default(), 4, pool, &e) == QK_ERR_SHAPE &&
                 strstr(qk_last_error(), "[2,3,16,16]") && strstr(qk_last_error(), "[N,1,28,28]"),
             "channel/size mismatch names both shapes: %s", qk_last_error());
    qk_dataset_free(&ds);
    free(x);
    qk_graph_destroy(g);
    qk_graph_destroy(g2);
}

static void test_cli(void)
{
    if (!cli_fx_init()) {
        QT_CHECK(0, "qkit binary missing");
        return;
    }
    const char *m = "tests/data/torch/lenet.onnx";
    int rc = q("eval --model %s --data %s --resize 28 --crop 28", m, P("bad_trunc"));
    QT_CHECK(rc == 1 && has("t.png"), "cli corrupt image: rc %d %s", rc, out);
    /* a damaged image late in a folder: decoded in the background (default) or before (QKIT_DECODE=eager),
     * the command fails naming it, and writes nothing */
    for (int eager = 0; eager < 2; eager++) {
        if (eager)
            setenv("QKIT_DECODE", "eager", 1);
        rc = q("eval --model %s --data %s", m, P("bg_bad"));
        QT_CHECK(rc == 1 && has("bg_bad/c0/025.png") && has("corrupt or truncated PNG"),
                 "cli damaged image late (eager %d): rc %d %s", eager, rc, out);
        rc = q("ptq --model %s --backend tensorrt --data %s --calib 8 --no-fp32 --out %s", m, P("bg_bad"),
               P("never2.onnx"));
        QT_CHECK(rc == 1 && has("025.png") && !exists(P("never2.onnx")),
                 "cli ptq, damaged image after the calibration images: nothing written (eager %d): rc %d %s", eager,
                 rc, out);
        rc = q("eval --model %s --data %s --limit 25", m, P("bg_bad"));
        QT_CHECK(rc == 0, "cli --limit before the damaged image (eager %d): rc %d %s", eager, rc, out);
        unsetenv("QKIT_DECODE");
    }
    /* the same predictions and accuracy decoding in the background or not, on 1 or 2 threads */
    char pr[4][4096];
    static const char *const pr_env[4] = { NULL, NULL, "eager", "eager" };
    for (int k = 0; k < 4; k++) {
        if (pr_env[k])
            setenv("QKIT_DECODE", pr_env[k], 1);
        char pf[32];
        snprintf(pf, sizeof pf, "preds_%d.txt", k);
        rc = q("eval --model %s --data %s --resize 28 --crop 28 --threads %d --batch 16 --preds %s", m, P("bg"),
               1 + (k & 1), P(pf));
        unsetenv("QKIT_DECODE");
        char *cut = strstr(out, " images/s"); /* the line up to the speed, then the predictions */
        while (cut && cut > out && cut[-1] != ',')
            cut--;
        size_t len = cut ? (size_t)(cut - out) : 0;
        len = len < sizeof pr[k] / 2 ? len : sizeof pr[k] / 2;
        memcpy(pr[k], out, len);
        FILE *f = fopen(P(pf), "r");
        size_t got = f ? fread(pr[k] + len, 1, sizeof pr[k] - len - 1, f) : 0;
        pr[k][len + got] = 0;
        if (f)
            fclose(f);
        QT_CHECK(rc == 0 && len > 0 && got > 0, "cli eval on the folder (%d): rc %d %s", k, rc, out);
    }
    /* a 3-channel model: the mixed-precision and analysis batches hold 3 channels per image */
    rc = q("ptq --model tests/data/export/tiny_op14.onnx --backend academic --data %s --resize 8 --crop 8 --calib 16 "
           "--mp-budget 6 --analyze %s --out %s", P("bg"), P("an3.json"), P("q3.onnx"));
    QT_CHECK(rc == 0 && has("mixed precision") && exists(P("an3.json")) && exists(P("q3.onnx")),
             "cli ptq --mp-budget --analyze, 3 channels: rc %d %s", rc, out);
    QT_CHECK(!strcmp(pr[0], pr[1]) && !strcmp(pr[0], pr[2]) && !strcmp(pr[0], pr[3]),
             "same accuracy and predictions, background/eager, 1/2 threads:\n%s\n%s", pr[0], pr[2]);
    rc = q("eval --model %s --data %s", m, P("bad_empty"));
    QT_CHECK(rc == 1 && has("bad_empty/c1"), "cli empty class folder: rc %d %s", rc, out);
    rc = q("ptq --model %s --backend tensorrt --data %s --out %s", m, P("bad_mixed"), P("never.onnx"));
    QT_CHECK(rc == 1 && has("--resize") && !exists(P("never.onnx")), "cli mixed sizes, nothing written: rc %d %s",
             rc, out);
    rc = q("eval --model %s --data %s", m, P("f64.npy"));
    QT_CHECK(rc == 1 && has("<f8"), "cli npy dtype: rc %d %s", rc, out);
    rc = q("eval --model %s --data %s --labels %s", m, P("u8_nchw.npy"), P("lab.npy"));
    QT_CHECK(rc == 1 && has("[2,3,2,4]") && has("[N,1,28,28]"), "cli shape mismatch names both: rc %d %s", rc, out);
    rc = q("eval --model %s --data %s --resize 8", m, P("u8_nchw.npy"));
    QT_CHECK(rc == 1 && has("image folders"), "cli --resize on npy: rc %d %s", rc, out);
    rc = q("eval --model %s --data %s --mean 0.1,0.2", m, P("fold"));
    QT_CHECK(rc != 0, "cli 2 means for 1 channel: rc %d %s", rc, out);
    rc = q("eval --model %s --data %s --preprocess nope", m, P("fold"));
    QT_CHECK(rc == 2, "cli bad preset: rc %d", rc);
    /* unlabelled: agreement with a reference */
    uint8_t *u = malloc(6 * 28 * 28);
    for (int i = 0; i < 6 * 28 * 28; i++)
        u[i] = (uint8_t)((i * 31) % 251);
    QT_OK(qk_npy_write(P("lenet_in.npy"), "|u1", 3, (int64_t[]){ 6, 28, 28 }, u));
    free(u);
    rc = q("eval --model %s --data %s", m, P("lenet_in.npy"));
    QT_CHECK(rc == 2 && has("--reference"), "cli unlabelled without reference: rc %d %s", rc, out);
    rc = q("eval --model %s --data %s --reference %s --json", m, P("lenet_in.npy"), m);
    QT_CHECK(rc == 0 && has("\"top1_agree\": 1,") && has("\"cosine\": 1,"), "cli agreement: rc %d %s", rc, out);
    rc = q("ptq --model %s --backend tensorrt --data %s --calib 6 --out %s", m, P("lenet_in.npy"), P("q.onnx"));
    QT_CHECK(rc == 0 && has("top-1 agreement") && has("cosine") && exists(P("q.onnx")), "cli ptq unlabelled: rc %d %s",
             rc, out);
    rc = q("eval --model %s --data %s --real --json", P("q.onnx"), P("lenet_in.npy"));
    QT_CHECK(rc == 0 && has("top5_agree"), "cli eval --real unlabelled: rc %d %s", rc, out);
    rc = q("ptq --model %s --backend fbgemm --data %s --calib 6 --mean 0.5 --std 0.25 --out %s --json", m,
           P("lenet_in.npy"), P("q2.onnx"));
    QT_CHECK(rc == 0 && has("sqnr_db"), "cli ptq explicit norm: rc %d %s", rc, out);
    qk_graph *g;
    float mean = 0, std = 0;
    if (rc == 0 && qk_onnx_load(P("q2.onnx"), &g) == QK_OK) {
        QT_CHECK(qk_graph_get_norm(g, &mean, &std) == QK_OK && mean == 0.5f && std == 0.25f,
                 "explicit --mean/--std stored in the written model");
        qk_graph_destroy(g);
    }
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/qkit_dio_%d", (int)getpid());
    mkdir(g_dir, 0755);
    qk_pool *pool = NULL;
    qk_pool_create(2, &pool);
    test_resize_pil();
    test_folder(pool);
    test_background(pool);
    test_npy();
    test_image_limits();
    test_pb();
    test_meta();
    test_agreement(pool);
    test_cli();
    qk_pool_destroy(pool);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", g_dir);
    return qt_finish("test_data_io");
}
