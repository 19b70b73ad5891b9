/* Data layer: IDX parsing (gzip and plain) on files written here, every
 * bad-input case and its message, shuffle determinism, augmentation
 * (flip = mirror, crop = shift with zero fill), normalization values,
 * batching (partial last batch, resumable order), norm metadata. */
#include "qkit/data.h"
#include "qkit/graph.h"
#include "qt.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static char g_dir[64];

static void path_of(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", g_dir, name);
}

/* IDX file with the given magic's last byte (ndim), dims and payload;
 * payload_len may be less than the dims announce (truncation) or more. */
static void write_idx(const char *name, int gz, int ndim, const uint32_t *dims, const uint8_t *payload,
                      size_t payload_len, uint8_t type)
{
    char p[256];
    path_of(p, sizeof p, name);
    uint8_t hdr[4 + 16] = { 0, 0, type, (uint8_t)ndim };
    for (int i = 0; i < ndim; i++) {
        hdr[4 + 4 * i] = (uint8_t)(dims[i] >> 24);
        hdr[5 + 4 * i] = (uint8_t)(dims[i] >> 16);
        hdr[6 + 4 * i] = (uint8_t)(dims[i] >> 8);
        hdr[7 + 4 * i] = (uint8_t)dims[i];
    }
    if (gz) {
        gzFile f = gzopen(p, "wb");
        gzwrite(f, hdr, 4 + 4 * (unsigned)ndim);
        if (payload_len)
            gzwrite(f, payload, (unsigned)payload_len);
        gzclose(f);
    } else {
        FILE *f = fopen(p, "wb");
        fwrite(hdr, 1, 4 + 4 * (size_t)ndim, f);
        fwrite(payload, 1, payload_len, f);
        fclose(f);
    }
}

static uint8_t g_img[3 * 4 * 5], g_lab[4] = { 7, 0, 9, 3 };

static void write_pair(const char *prefix, int gz, int n_img, int n_lab, size_t img_bytes)
{
    char a[128], b[128];
    snprintf(a, sizeof a, "%s-images-idx3-ubyte%s", prefix, gz ? ".gz" : "");
    snprintf(b, sizeof b, "%s-labels-idx1-ubyte%s", prefix, gz ? ".gz" : "");
    uint32_t di[3] = { (uint32_t)n_img, 4, 5 }, dl[1] = { (uint32_t)n_lab };
    write_idx(a, gz, 3, di, g_img, img_bytes, 0x08);
    write_idx(b, gz, 1, dl, g_lab, (size_t)n_lab, 0x08);
}

static qk_status load_pair(const char *prefix, int gz, qk_dataset *ds)
{
    char a[256], b[256], na[128], nb[128];
    snprintf(na, sizeof na, "%s-images-idx3-ubyte%s", prefix, gz ? ".gz" : "");
    snprintf(nb, sizeof nb, "%s-labels-idx1-ubyte%s", prefix, gz ? ".gz" : "");
    path_of(a, sizeof a, na);
    path_of(b, sizeof b, nb);
    return qk_dataset_load(a, b, ds);
}

static void test_idx(void)
{
    for (int i = 0; i < 60; i++)
        g_img[i] = (uint8_t)(i * 4 + 3);
    for (int gz = 0; gz <= 1; gz++) {
        write_pair("ok", gz, 3, 3, 60);
        qk_dataset ds;
        QT_OK(load_pair("ok", gz, &ds));
        QT_CHECK(ds.n == 3 && ds.h == 4 && ds.w == 5 && ds.owned, "dims (gz %d)", gz);
        QT_CHECK(ds.images && memcmp(ds.images, g_img, 60) == 0, "pixels (gz %d)", gz);
        QT_CHECK(ds.labels && ds.labels[0] == 7 && ds.labels[2] == 9, "labels (gz %d)", gz);
        qk_dataset v = qk_dataset_view(&ds, 1, 100);
        QT_CHECK(v.n == 2 && v.images == ds.images + 20 && v.labels[0] == 0 && !v.owned, "view clamps");
        qk_dataset_free(&v);
        QT_CHECK(ds.images != NULL, "freeing a view leaves the owner");
        qk_dataset_free(&ds);
        QT_CHECK(ds.images == NULL && ds.n == 0, "free zeroes");
    }
    qk_status st;
    qk_dataset ds;
    /* truncated image payload: 16 header + 60 announced, 50 present */
    for (int gz = 0; gz <= 1; gz++) {
        write_pair("trunc", gz, 3, 3, 50);
        st = load_pair("trunc", gz, &ds);
        QT_CHECK(st == QK_ERR_IO && strstr(qk_last_error(), "truncated") &&
                     strstr(qk_last_error(), "expected 76 bytes") && strstr(qk_last_error(), "66 present"),
                 "truncated (gz %d): %s", gz, qk_last_error());
        QT_CHECK(ds.images == NULL, "nothing left on error");
    }
    /* truncated header */
    {
        char p[256];
        path_of(p, sizeof p, "short-images-idx3-ubyte");
        FILE *f = fopen(p, "wb");
        fwrite("\0\0\x08\x03\0\0", 1, 6, f);
        fclose(f);
        int64_t dims[3];
        uint8_t *data;
        st = qk_idx_read(p, 3, dims, &data);
        QT_CHECK(st == QK_ERR_IO && strstr(qk_last_error(), "truncated") && strstr(qk_last_error(), "16 header bytes"),
                 "short header: %s", qk_last_error());
    }
    /* wrong magic: a labels file where images are expected; wrong type code */
    {
        char a[256], b[256];
        write_pair("ok", 0, 3, 3, 60);
        path_of(a, sizeof a, "ok-labels-idx1-ubyte");
        path_of(b, sizeof b, "ok-labels-idx1-ubyte");
        st = qk_dataset_load(a, b, &ds);
        QT_CHECK(st == QK_ERR_FORMAT && strstr(qk_last_error(), "magic 0x00000801") &&
                     strstr(qk_last_error(), "0x00000803"),
                 "magic: %s", qk_last_error());
        uint32_t d1[1] = { 4 };
        write_idx("float-labels", 0, 1, d1, g_lab, 4, 0x0D);
        path_of(a, sizeof a, "float-labels");
        int64_t dims[1];
        uint8_t *data;
        QT_CHECK(qk_idx_read(a, 1, dims, &data) == QK_ERR_FORMAT, "float IDX refused");
    }
    /* image/label count mismatch */
    write_pair("mismatch", 1, 3, 4, 60);
    st = load_pair("mismatch", 1, &ds);
    QT_CHECK(st == QK_ERR_FORMAT && strstr(qk_last_error(), "3 images") && strstr(qk_last_error(), "4 labels"),
             "count mismatch: %s", qk_last_error());
    /* label >= 10 */
    g_lab[1] = 10;
    write_pair("badlabel", 0, 3, 3, 60);
    st = load_pair("badlabel", 0, &ds);
    QT_CHECK(st == QK_ERR_FORMAT && strstr(qk_last_error(), "label 10") && strstr(qk_last_error(), "item 1"),
             "label range: %s", qk_last_error());
    g_lab[1] = 0;
    /* trailing bytes */
    {
        uint8_t big[70] = { 0 };
        uint32_t di[3] = { 3, 4, 5 };
        write_idx("trail", 0, 3, di, big, 70, 0x08);
        char p[256];
        path_of(p, sizeof p, "trail");
        int64_t dims[3];
        uint8_t *data;
        st = qk_idx_read(p, 3, dims, &data);
        QT_CHECK(st == QK_ERR_FORMAT && strstr(qk_last_error(), "trailing"), "trailing: %s", qk_last_error());
    }
    /* directory loading: .gz preferred, plain accepted, "test" = t10k */
    {
        write_pair("train", 1, 3, 3, 60);
        write_pair("t10k", 0, 3, 3, 60);
        QT_OK(qk_dataset_load_dir(g_dir, "train", &ds));
        QT_CHECK(ds.n == 3, "dir train");
        qk_dataset_free(&ds);
        QT_OK(qk_dataset_load_dir(g_dir, "test", &ds));
        QT_CHECK(ds.n == 3 && ds.labels[3 - 1] == 9, "dir t10k (plain files)");
        qk_dataset_free(&ds);
        QT_CHECK(qk_dataset_load_dir(g_dir, "valid", &ds) == QK_ERR_ARG, "bad split");
    }
    /* missing directory / missing file: the install hint */
    st = qk_dataset_load_dir("/nonexistent/qkit-data", "train", &ds);
    QT_CHECK(st == QK_ERR_IO && strstr(qk_last_error(), "/nonexistent/qkit-data") &&
                 strstr(qk_last_error(), "apt-get install dataset-fashion-mnist") &&
                 strstr(qk_last_error(), "--data DIR"),
             "missing dir: %s", qk_last_error());
    {
        char sub[256];
        path_of(sub, sizeof sub, "empty");
        mkdir(sub, 0700);
        st = qk_dataset_load_dir(sub, "t10k", &ds);
        QT_CHECK(st == QK_ERR_IO && strstr(qk_last_error(), "t10k-images-idx3-ubyte") &&
                     strstr(qk_last_error(), "apt-get install dataset-fashion-mnist"),
                 "missing file: %s", qk_last_error());
        rmdir(sub);
    }
}

static void test_prepare(void)
{
    qk_norm n = qk_norm_default();
    float lut[256];
    qk_norm_lut(n, lut);
    QT_NEAR(lut[0], -0.2860 / 0.3530, 1e-6, "lut[0]");
    QT_NEAR(lut[255], (1.0 - 0.2860) / 0.3530, 1e-6, "lut[255]");
    QT_NEAR(lut[128], (128.0 / 255.0 - 0.2860) / 0.3530, 1e-6, "lut[128]");

    enum { H = 4, W = 5 };
    uint8_t src[H * W];
    for (int i = 0; i < H * W; i++)
        src[i] = (uint8_t)(10 + i);
    float out[H * W];
    qk_image_prepare(src, H, W, out, lut, 0, 0, 0, 0);
    int ok = 1;
    for (int i = 0; i < H * W; i++)
        ok &= out[i] == lut[src[i]];
    QT_CHECK(ok, "identity");
    qk_image_prepare(src, H, W, out, lut, 0, 2, 2, 2);
    ok = 1;
    for (int i = 0; i < H * W; i++)
        ok &= out[i] == lut[src[i]];
    QT_CHECK(ok, "centered crop is the identity");
    qk_image_prepare(src, H, W, out, lut, 1, 0, 0, 0);
    ok = 1;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            ok &= out[y * W + x] == lut[src[y * W + (W - 1 - x)]];
    QT_CHECK(ok, "flip is a mirror");
    /* crop pad 2 at offset (dy 0, dx 4): out(y, x) = src(y - 2, x + 2), zero outside */
    qk_image_prepare(src, H, W, out, lut, 0, 2, 0, 4);
    ok = 1;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int sy = y - 2, sx = x + 2;
            float want = (sy >= 0 && sy < H && sx < W) ? lut[src[sy * W + sx]] : lut[0];
            ok &= out[y * W + x] == want;
        }
    QT_CHECK(ok, "crop shifts with zero (raw pixel 0) fill");
    QT_CHECK(out[0] == lut[0] && out[2 * W + 0] == lut[src[0 * W + 2]], "crop corner values");
    /* flip then crop (torch_peer.py order): out(y, x) = flipped(y + dy - 2, x + dx - 2) */
    qk_image_prepare(src, H, W, out, lut, 1, 2, 3, 1);
    ok = 1;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int sy = y + 1, fx = x - 1;
            float want = (sy < H && fx >= 0) ? lut[src[sy * W + (W - 1 - fx)]] : lut[0];
            ok &= out[y * W + x] == want;
        }
    QT_CHECK(ok, "flip then crop");
}

static int is_perm(const int64_t *p, int64_t n)
{
    char seen[1000] = { 0 };
    for (int64_t i = 0; i < n; i++) {
        if (p[i] < 0 || p[i] >= n || seen[p[i]])
            return 0;
        seen[p[i]] = 1;
    }
    return 1;
}

static void test_batcher(void)
{
    enum { N = 250, H = 6, W = 7 };
    static uint8_t img[N * H * W], lab[N];
    for (int i = 0; i < N; i++) {
        lab[i] = (uint8_t)(i % 10);
        for (int k = 0; k < H * W; k++)
            img[i * H * W + k] = (uint8_t)((i * 31 + k * 7) % 251 + 1); /* never 0 */
    }
    qk_dataset ds = { .n = N, .h = H, .w = W, .images = img, .labels = lab };
    qk_norm nm = qk_norm_default();

    /* plain batching: dataset order, normalized, partial last batch */
    qk_batcher b;
    QT_OK(qk_batcher_init(&b, &ds, 64, 0, 1, nm, NULL));
    qk_batcher_epoch(&b, 0);
    QT_CHECK(qk_batcher_count(&b) == 4, "ceil(250/64) = 4");
    static float x[64 * H * W], x2[64 * H * W];
    int64_t y[64], y2[64];
    int64_t m, m2;
    QT_OK(qk_batcher_get(&b, 3, x, y, &m));
    QT_CHECK(m == 250 - 192, "last batch %lld", (long long)m);
    QT_CHECK(y[0] == lab[192] && x[5] == b.lut[img[192 * H * W + 5]], "order and normalization");
    QT_CHECK(qk_batcher_get(&b, 4, x, y, &m2) == QK_OK && m2 == 0, "out of range");
    qk_batcher_free(&b);

    /* shuffle: permutation, deterministic per (seed, epoch), differs by epoch and seed */
    qk_batcher a, c;
    QT_OK(qk_batcher_init(&a, &ds, 64, 1, 42, nm, NULL));
    QT_OK(qk_batcher_init(&c, &ds, 64, 1, 42, nm, NULL));
    qk_batcher_epoch(&a, 3);
    qk_batcher_epoch(&c, 0);
    qk_batcher_epoch(&c, 1);
    qk_batcher_epoch(&c, 3);
    QT_CHECK(is_perm(a.perm, N), "a permutation");
    QT_CHECK(memcmp(a.perm, c.perm, sizeof(int64_t) * N) == 0, "epoch order depends only on (seed, epoch)");
    int64_t e3[N];
    memcpy(e3, a.perm, sizeof e3);
    qk_batcher_epoch(&a, 4);
    QT_CHECK(memcmp(a.perm, e3, sizeof e3) != 0, "epochs differ");
    qk_batcher_free(&c);
    QT_OK(qk_batcher_init(&c, &ds, 64, 1, 43, nm, NULL));
    qk_batcher_epoch(&c, 3);
    QT_CHECK(memcmp(c.perm, e3, sizeof e3) != 0, "seeds differ");
    qk_batcher_free(&a);
    qk_batcher_free(&c);

    /* Fisher-Yates is uniform: 6 orders of 3 items over 6000 shuffles */
    {
        qk_rng r;
        qk_rng_seed(&r, 9);
        int cnt[6] = { 0 };
        for (int t = 0; t < 6000; t++) {
            int64_t p[3] = { 0, 1, 2 };
            qk_shuffle(p, 3, &r);
            cnt[p[0] * 2 + (p[1] > p[2])]++;
        }
        int ok = 1;
        for (int k = 0; k < 6; k++)
            ok &= cnt[k] > 850 && cnt[k] < 1150;
        QT_CHECK(ok, "uniform shuffle: %d %d %d %d %d %d", cnt[0], cnt[1], cnt[2], cnt[3], cnt[4], cnt[5]);
    }

    /* augmentation: each image is one of the 2 x 25 flip/crop candidates,
     * draws are a function of (seed, epoch, batch) only */
    qk_augment aug = { 1, 2 };
    QT_OK(qk_batcher_init(&a, &ds, 64, 1, 5, nm, &aug));
    QT_OK(qk_batcher_init(&c, &ds, 64, 1, 5, nm, &aug));
    qk_batcher_epoch(&a, 2);
    qk_batcher_epoch(&c, 2);
    QT_OK(qk_batcher_get(&c, 0, x2, y2, &m2)); /* other call order */
    QT_OK(qk_batcher_get(&a, 1, x, y, &m));
    QT_OK(qk_batcher_get(&c, 1, x2, y2, &m2));
    QT_CHECK(m == 64 && m2 == 64 && memcmp(x, x2, sizeof x) == 0 && memcmp(y, y2, sizeof y) == 0,
             "augmented batch reproducible");
    int matched = 0, flips = 0, zeros = 0, center = 0;
    static float cand[H * W];
    for (int k = 0; k < 64; k++) {
        int64_t item = a.perm[64 + k];
        QT_CHECK(y[k] == lab[item], "label follows the image");
        int found = 0;
        for (int f = 0; f <= 1 && !found; f++)
            for (int dy = 0; dy <= 4 && !found; dy++)
                for (int dx = 0; dx <= 4 && !found; dx++) {
                    qk_image_prepare(img + item * H * W, H, W, cand, a.lut, f, 2, dy, dx);
                    if (memcmp(cand, x + k * H * W, sizeof cand) == 0) {
                        found = 1;
                        flips += f;
                        center += dy == 2 && dx == 2;
                    }
                }
        matched += found;
        for (int i = 0; i < H * W; i++)
            zeros += x[k * H * W + i] == a.lut[0];
    }
    QT_CHECK(matched == 64, "every augmented image is a flip/crop of its source (%d of 64)", matched);
    QT_CHECK(flips > 16 && flips < 48, "flip rate %d/64", flips);
    QT_CHECK(center < 16 && zeros > 0, "crops move images (%d centered, %d padded pixels)", center, zeros);
    qk_batcher_free(&a);
    qk_batcher_free(&c);

    QT_CHECK(qk_batcher_init(&a, &ds, 0, 1, 5, nm, NULL) == QK_ERR_ARG, "batch 0 refused");
    qk_augment badaug = { 0, -1 };
    QT_CHECK(qk_batcher_init(&a, &ds, 8, 1, 5, nm, &badaug) == QK_ERR_ARG, "negative pad refused");
}

static void test_norm_meta(void)
{
    qk_graph *g;
    QT_OK(qk_graph_create(&g));
    qk_norm n = qk_norm_default();
    QT_CHECK(qk_graph_get_norm(g, &n.mean, &n.std) == QK_ERR_NOTFOUND && n.mean == QK_NORM_FASHION_MEAN &&
             n.std == QK_NORM_FASHION_STD, "absent -> untouched");
    qk_norm w = { .mean = 0.1307f, .std = 0.3081f };
    QT_OK(qk_graph_set_norm(g, w.mean, w.std));
    QT_OK(qk_graph_get_norm(g, &n.mean, &n.std));
    QT_CHECK(n.mean == w.mean && n.std == w.std, "round trip %g %g", (double)n.mean, (double)n.std);
    QT_CHECK(strcmp(qk_graph_get_meta(g, "qkit.norm.std"), "0.308099985") == 0, "text %s",
             qk_graph_get_meta(g, "qkit.norm.std"));
    qk_graph_set_meta(g, "qkit.norm.std", "abc");
    QT_CHECK(qk_graph_get_norm(g, &n.mean, &n.std) == QK_ERR_FORMAT && strstr(qk_last_error(), "abc"), "bad text");
    qk_graph_set_meta(g, "qkit.norm.std", "-1");
    QT_CHECK(qk_graph_get_norm(g, &n.mean, &n.std) == QK_ERR_FORMAT, "negative std");
    QT_CHECK(qk_graph_set_norm(g, 0.5f, 0.0f) == QK_ERR_ARG, "std 0 refused");
    qk_graph_destroy(g);
}

static void test_real(void)
{
    qk_dataset ds;
    qk_status st = qk_dataset_load_dir(NULL, "t10k", &ds);
    QT_CHECK(st == QK_OK, "Fashion-MNIST test split: %s", qk_last_error());
    if (st != QK_OK)
        return;
    QT_CHECK(ds.n == 10000 && ds.h == 28 && ds.w == 28, "10000 x 28 x 28");
    int64_t hist[10] = { 0 }, sum = 0;
    for (int64_t i = 0; i < ds.n; i++)
        hist[ds.labels[i]]++;
    for (int64_t i = 0; i < ds.n * 784; i++)
        sum += ds.images[i];
    QT_CHECK(hist[0] == 1000 && hist[9] == 1000, "1000 per class");
    /* mean pixel / 255 ~ 0.2860 (the normalization constant, from the training set) */
    QT_NEAR((double)sum / (double)(ds.n * 784) / 255.0, 0.2860, 0.01, "test-set pixel mean");
    qk_dataset_free(&ds);
}

static void rm_dir(void)
{
    const char *names[] = { "ok", "trunc", "mismatch", "badlabel", "train", "t10k" };
    char p[256], n[128];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        for (int gz = 0; gz <= 1; gz++) {
            snprintf(n, sizeof n, "%s-images-idx3-ubyte%s", names[i], gz ? ".gz" : "");
            path_of(p, sizeof p, n);
            unlink(p);
            snprintf(n, sizeof n, "%s-labels-idx1-ubyte%s", names[i], gz ? ".gz" : "");
            path_of(p, sizeof p, n);
            unlink(p);
        }
    const char *more[] = { "short-images-idx3-ubyte", "float-labels", "trail" };
    for (size_t i = 0; i < 3; i++) {
        path_of(p, sizeof p, more[i]);
        unlink(p);
    }
    rmdir(g_dir);
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/qkit_data_XXXXXX");
    if (!mkdtemp(g_dir)) {
        QT_CHECK(0, "mkdtemp");
        return qt_finish("test_data");
    }
    test_idx();
    test_prepare();
    test_batcher();
    test_norm_meta();
    test_real();
    rm_dir();
    return qt_finish("test_data");
}
