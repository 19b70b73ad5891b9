/* The qkit command line end to end: --help everywhere, --json keys, and bad
 * input (unknown option, missing/truncated files, unknown names, wrong
 * shapes) giving a clear message, a non-zero exit and no partial output. */
#include "qkit/onnx.h"
#include "qt.h"
#include "cli_fx.h"

#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

static char tmp[256];

static void write_idx(const char *path, int images, int n, int gz, int truncate)
{
    size_t hdr = images ? 16 : 8, body = images ? (size_t)n * 784 : (size_t)n;
    unsigned char *b = calloc(1, hdr + body);
    b[2] = 8;
    b[3] = images ? 3 : 1;
    b[4] = (unsigned char)(n >> 24), b[5] = (unsigned char)(n >> 16), b[6] = (unsigned char)(n >> 8), b[7] = (unsigned char)n;
    if (images)
        b[11] = 28, b[15] = 28;
    for (size_t i = 0; i < body; i++)
        b[hdr + i] = images ? (unsigned char)((i * 7919) % 251) : (unsigned char)(i % 10);
    size_t len = truncate ? (hdr + body) / 2 : hdr + body;
    if (gz) {
        gzFile f = gzopen(path, "wb");
        gzwrite(f, b, (unsigned)len);
        gzclose(f);
    } else {
        FILE *f = fopen(path, "wb");
        fwrite(b, 1, len, f);
        fclose(f);
    }
    free(b);
}

static void make_dataset(const char *dir, int truncate_test)
{
    char p[512];
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", dir);
    write_idx(p, 1, 256, 1, 0);
    snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte.gz", dir);
    write_idx(p, 0, 256, 1, 0);
    snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte", dir);
    write_idx(p, 1, 64, 0, truncate_test);
    snprintf(p, sizeof p, "%s/t10k-labels-idx1-ubyte", dir);
    write_idx(p, 0, 64, 0, 0);
}

int main(void)
{
    if (!cli_fx_init()) {
        QT_CHECK(0, "qkit binary %s not found (run from the repository root)", qkit);
        return qt_finish("test_cli");
    }
    snprintf(tmp, sizeof tmp, "/tmp/qkit_cli_%d", (int)getpid());
    mkdir(tmp, 0755);

    /* --help on every command */
    const char *cmds[] = { "train", "eval", "info", "run" };
    for (int i = 0; i < 4; i++) {
        int rc = q("%s --help", cmds[i]);
        QT_CHECK(rc == 0 && has("usage: qkit") && has("--threads") && has("--json"), "%s --help: rc %d: %s", cmds[i], rc, out);
    }
    QT_CHECK(q("--help") == 0 && has("commands:"), "qkit --help");
    QT_CHECK(q("frobnicate") == 2 && has("unknown command"), "unknown command: %s", out);
    QT_CHECK(q("eval --model x.onnx --bogus 3") == 2 && has("unknown option '--bogus'"), "unknown option: %s", out);
    QT_CHECK(q("eval") == 2 && has("--model"), "missing --model: %s", out);
    QT_CHECK(q("train --arch lenet --out %s/x.onnx --epochs zero", tmp) == 2 && has("--epochs"), "bad int: %s", out);

    /* missing and malformed model files */
    QT_CHECK(q("eval --model %s/missing.onnx", tmp) == 1 && has("missing.onnx"), "missing model: %s", out);
    char p[600], p2[600];
    snprintf(p, sizeof p, "%s/garbage.onnx", tmp);
    FILE *f = fopen(p, "wb");
    fputs("this is not a protobuf model at all \x01\x02\xff", f);
    fclose(f);
    QT_CHECK(q("info --model %s", p) == 1 && has("garbage.onnx"), "garbage model: %s", out);
    /* truncated copy of a real model */
    f = fopen("tests/data/torch/lenet.onnx", "rb");
    QT_CHECK(f != NULL, "tests/data/torch/lenet.onnx missing");
    if (f) {
        static unsigned char buf[1 << 21];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        snprintf(p, sizeof p, "%s/trunc.onnx", tmp);
        f = fopen(p, "wb");
        fwrite(buf, 1, n / 2, f);
        fclose(f);
        QT_CHECK(q("eval --model %s", p) == 1 && has("trunc.onnx"), "truncated model: %s", out);
        /* info on the real one */
        int rc = q("info --model tests/data/torch/lenet.onnx --json");
        QT_CHECK(rc == 0 && has("\"macs\"") && has("\"params\": 421738"), "info json: %s", out);
        /* run with a wrong-shaped input */
        qk_tensor t;
        qk_tensor_alloc(&t, QK_F32, 4, (int64_t[]){ 2, 1, 27, 28 });
        snprintf(p2, sizeof p2, "%s/bad_in.pb", tmp);
        qk_onnx_save_tensor(&t, "input", p2);
        qk_tensor_free(&t);
        snprintf(p, sizeof p, "%s/out.pb", tmp);
        rc = q("run --model tests/data/torch/lenet.onnx --input %s --output %s", p2, p);
        QT_CHECK(rc == 1 && has("27") && !exists(p), "wrong shape run: rc %d %s", rc, out);
        rc = q("run --model tests/data/torch/lenet.onnx --input tests/data/torch/lenet/input_0.pb --output %s --json", p);
        QT_CHECK(rc == 0 && exists(p) && has("[4,10]"), "run: rc %d %s", rc, out);
    }

    /* datasets: missing directory, truncated file */
    QT_CHECK(q("eval --model tests/data/torch/lenet.onnx --data %s/nodata", tmp) == 1 &&
             has("dataset-fashion-mnist"), "missing data: %s", out);
    snprintf(p, sizeof p, "%s/trunc_data", tmp);
    make_dataset(p, 1);
    QT_CHECK(q("eval --model tests/data/torch/lenet.onnx --data %s", p) == 1 && has("t10k-images"),
             "truncated data: %s", out);

    /* unknown architecture: names the valid ones, writes nothing */
    snprintf(p, sizeof p, "%s/data", tmp);
    make_dataset(p, 0);
    snprintf(p2, sizeof p2, "%s/m.onnx", tmp);
    QT_CHECK(q("train --arch vgg99 --out %s --data %s", p2, p) == 1 && has("lenet") && !exists(p2),
             "unknown arch: %s", out);

    /* a tiny real run: train 3 steps on the small dataset, then eval/info the result */
    int rc = q("train --arch lenet --steps 3 --batch 32 --out %s --data %s --json --threads 2", p2, p);
    QT_CHECK(rc == 0 && exists(p2) && has("\"steps\": 3"), "train: rc %d %s", rc, out);
    rc = q("eval --model %s --data %s --json", p2, p);
    QT_CHECK(rc == 0 && has("\"top1\": ") && has("\"images\": 64") && has("\"images_per_s\": "), "eval json: %s", out);
    rc = q("info --model %s", p2);
    QT_CHECK(rc == 0 && has("qkit.arch = lenet") && has("Conv"), "info text: %s", out);
    /* --out into a missing directory: error, no stray temp file */
    rc = q("train --arch lenet --steps 1 --batch 32 --out %s/nodir/m.onnx --data %s", tmp, p);
    QT_CHECK(rc == 1 && has("nodir"), "unwritable out: rc %d %s", rc, out);

    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    QT_CHECK(system(cmd) == 0, "cleanup");
    return qt_finish("test_cli");
}
