/* `qkit ptq` end to end on a zoo model and a small generated dataset (no
 * installed data or shipped models needed): a full run writing a QDQ file
 * that `qkit eval` and `qkit info` read, --dry-run, --json keys, and the
 * errors (missing --model, unknown backend or observer, a width the backend
 * cannot do, --calib beyond the training split, --exclude of a missing node,
 * activation bit allocation with --out, an already quantized model): each a
 * clear message, the right exit code and no output file; the profiles'
 * default recipes (vitis: cross-layer equalization, tvm: bias correction)
 * shown by `qkit backends`, --dry-run and --json, applied (file metadata),
 * switched off (--no-cle, --no-bias-correct), replaced by --recon and
 * --mp-budget, and contradicting flags refused (exit 2). */
#include "qkit/onnx.h"
#include "qkit/zoo.h"
#include "qt.h"
#include "cli_fx.h"

#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmp[256];

/* An IDX file of n 28x28 images (pseudo-random pixels) or n labels. */
int main(void)
{
    if (!cli_fx_init()) {
        QT_CHECK(0, "qkit binary %s not found (run from the repository root)", qkit);
        return qt_finish("test_ptq_cli");
    }
    snprintf(tmp, sizeof tmp, "/tmp/qkit_ptq_cli_%d", (int)getpid());
    mkdir(tmp, 0755);
    char data[400], model[400], qdq[400], p[600];
    snprintf(data, sizeof data, "%s/data", tmp);
    mkdir(data, 0755);
    cli_fx_tiny_mnist(data, 200, 64);
    snprintf(model, sizeof model, "%s/resnet8.onnx", tmp);
    qk_graph *g;
    QT_OK(qk_zoo_build("resnet8", 5, &g));
    QT_OK(qk_onnx_save(g, model));
    qk_graph_destroy(g);
    snprintf(qdq, sizeof qdq, "%s/q.onnx", tmp);

    /* help and argument errors */
    int rc = q("ptq --help");
    QT_CHECK(rc == 0 && has("--backend") && has("--calib") && has("--bit-alloc") && has("--exclude"), "ptq --help: %s",
             out);
    rc = q("ptq --backend tensorrt");
    QT_CHECK(rc == 2 && has("--model"), "missing --model: rc %d %s", rc, out);
    rc = q("ptq --model %s", model);
    QT_CHECK(rc == 2 && has("--backend"), "missing --backend: rc %d %s", rc, out);
    rc = q("ptq --model %s --backend nope --data %s", model, data);
    QT_CHECK(rc == 2 && has("nope") && has("tensorrt") && has("academic") && has("nnie"),
             "unknown backend lists the valid ones: rc %d %s", rc, out);
    rc = q("ptq --model %s --backend tensorrt --wbits 4 --calib 64 --data %s --out %s", model, data, qdq);
    QT_CHECK(rc == 2 && has("tensorrt") && has("4-bit") && !exists(qdq), "tensorrt --wbits 4: rc %d %s", rc, out);
    rc = q("ptq --model %s --backend tensorrt --calib 1000 --data %s --out %s", model, data, qdq);
    QT_CHECK(rc == 2 && has("--calib 1000") && has("200") && !exists(qdq), "--calib beyond the training split: rc %d %s",
             rc, out);
    rc = q("ptq --model %s --backend tensorrt --observer bogus --dry-run", model);
    QT_CHECK(rc == 2 && has("bogus") && has("minmax") && has("kl"), "unknown observer: rc %d %s", rc, out);
    rc = q("ptq --model %s --backend tensorrt --exclude no.such.node --dry-run", model);
    QT_CHECK(rc == 2 && has("no.such.node"), "--exclude of a missing node: rc %d %s", rc, out);
    rc = q("ptq --model %s --backend academic --bit-alloc x --dry-run", model);
    QT_CHECK(rc == 2 && has("--bit-alloc"), "bad --bit-alloc: rc %d %s", rc, out);
    rc = q("ptq --model %s --backend academic --bit-alloc w --dry-run", model);
    QT_CHECK(rc == 1 && has("4 bits"), "--bit-alloc at 8 bits: rc %d %s", rc, out);
    /* reconstruction: bad input exits 2, names the option, writes nothing */
    rc = q("ptq --model %s --backend academic --recon adaround --recon-iters 0 --data %s --out %s", model, data, qdq);
    QT_CHECK(rc == 2 && has("--recon-iters") && !exists(qdq), "--recon-iters 0: rc %d %s", rc, out);
    rc = q("ptq --model %s --backend academic --recon qdrop --calib 16 --recon-batch 32 --data %s --out %s", model,
           data, qdq);
    QT_CHECK(rc == 2 && has("--recon-batch") && !exists(qdq), "--recon-batch > --calib: rc %d %s", rc, out);
    rc = q("ptq --model %s --backend nnie --recon adaround --data %s --out %s", model, data, qdq);
    QT_CHECK(rc == 2 && has("--recon") && has("nnie") && !exists(qdq), "--recon with nnie: rc %d %s", rc, out);
    rc = q("ptq --model %s --backend academic --recon brecq --recon-iters 0 --data %s --out %s", model, data, qdq);
    QT_CHECK(rc == 2 && has("--recon-iters") && !exists(qdq), "--recon brecq --recon-iters 0: rc %d %s", rc, out);
    rc = q("ptq --model %s --backend academic --wbits 4 --abits 4 --recon brecq --recon-iters 10 --recon-batch 4 "
           "--calib 16 --limit 50 --data %s --out %s", model, data, qdq);
    QT_CHECK(rc == 0 && has("brecq:") && exists(qdq), "--recon brecq: rc %d %s", rc, out);
    if (exists(qdq)) {
        rc = q("eval --model %s --real --limit 50 --data %s", qdq, data);
        QT_CHECK(rc == 0 && has("top-1"), "eval --real of the brecq file: rc %d %s", rc, out);
        remove(qdq);
    }
    rc = q("ptq --model %s --backend academic --wbits 4 --cle --recon adaround --recon-iters 5 --recon-batch 4 "
           "--calib 16 --limit 50 --data %s --out %s", model, data, qdq);
    QT_CHECK(rc == 0 && has("adaround:") && exists(qdq), "--cle --recon adaround: rc %d %s", rc, out);
    if (exists(qdq)) {
        rc = q("eval --model %s --real --limit 50 --data %s", qdq, data);
        QT_CHECK(rc == 0 && has("top-1"), "eval --real of the reconstructed file: rc %d %s", rc, out);
        remove(qdq);
    }
    /* the profiles' default recipes: shown by backends, --dry-run and --json, applied, switched off */
    rc = q("backends --json");
    QT_CHECK(rc == 0 && has("\"name\": \"vitis\"") && has("\"cle\": true") && has("\"bias_correct\": true"),
             "backends --json: the default passes: rc %d %s", rc, out);
    rc = q("backends");
    QT_CHECK(rc == 0 && has("--no-cle: off") && has("--no-bias-correct: off"), "backends text: rc %d %s", rc, out);
    rc = q("ptq --model %s --backend vitis --dry-run --json", model);
    QT_CHECK(rc == 0 && has("\"cle\": true") && has("\"cle_pairs\": ") && has("\"bias_correct\": false"),
             "vitis dry run: default cle: rc %d %s", rc, out);
    rc = q("ptq --model %s --backend vitis --dry-run", model);
    QT_CHECK(rc == 0 && has("cross-layer equalization on (the profile's default"), "vitis plan: rc %d %s", rc, out);
    rc = q("ptq --model %s --backend vitis --no-cle --dry-run --json", model);
    QT_CHECK(rc == 0 && has("\"cle\": false") && !has("cle_pairs"), "vitis --no-cle: rc %d %s", rc, out);
    rc = q("ptq --model %s --backend vitis --no-cle --dry-run", model);
    QT_CHECK(rc == 0 && has("switched off; the profile's default is on"), "vitis --no-cle plan: rc %d %s", rc, out);
    rc = q("ptq --model %s --backend tvm --dry-run --json", model);
    QT_CHECK(rc == 0 && has("\"cle\": false") && has("\"bias_correct\": true"), "tvm dry run: rc %d %s", rc, out);
    rc = q("ptq --model %s --backend tensorrt --dry-run --json", model);
    QT_CHECK(rc == 0 && has("\"cle\": false") && has("\"bias_correct\": false"), "tensorrt dry run: rc %d %s", rc,
             out);
    rc = q("ptq --model %s --backend vitis --no-cle --cle --dry-run", model);
    QT_CHECK(rc == 2 && has("--no-cle") && has("choose one"), "--no-cle --cle: rc %d %s", rc, out);
    rc = q("ptq --model %s --backend vitis --no-cle --cle-relu6 --dry-run", model);
    QT_CHECK(rc == 2 && has("--cle-relu6") && has("choose one"), "--no-cle --cle-relu6: rc %d %s", rc, out);
    rc = q("ptq --model %s --backend tvm --bias-correct --no-bias-correct --dry-run", model);
    QT_CHECK(rc == 2 && has("--no-bias-correct") && has("choose one"), "both bias flags: rc %d %s", rc, out);
    rc = q("ptq --model %s --backend tvm --bias-correct --recon adaround --data %s --out %s", model, data, qdq);
    QT_CHECK(rc == 2 && has("--bias-correct") && !exists(qdq), "--recon --bias-correct on tvm: rc %d %s", rc, out);
    /* applied: the file says so (metadata), --json reports it */
    rc = q("ptq --model %s --backend vitis --calib 32 --limit 32 --data %s --out %s --json", model, data, qdq);
    QT_CHECK(rc == 0 && has("\"cle\": true") && exists(qdq), "vitis default run: rc %d %s", rc, out);
    rc = q("info --model %s", qdq);
    QT_CHECK(rc == 0 && has("qkit.cle = 1"), "vitis file: metadata qkit.cle: rc %d %s", rc, out);
    remove(qdq);
    rc = q("ptq --model %s --backend vitis --no-cle --calib 32 --limit 32 --data %s --out %s --json", model, data, qdq);
    QT_CHECK(rc == 0 && has("\"cle\": false") && exists(qdq), "vitis --no-cle run: rc %d %s", rc, out);
    rc = q("info --model %s", qdq);
    QT_CHECK(rc == 0 && !has("qkit.cle"), "vitis --no-cle file: no qkit.cle: rc %d %s", rc, out);
    remove(qdq);
    rc = q("ptq --model %s --backend tvm --calib 32 --limit 32 --data %s --out %s --json", model, data, qdq);
    QT_CHECK(rc == 0 && has("\"bias_correct\": true") && exists(qdq), "tvm default run: rc %d %s", rc, out);
    rc = q("info --model %s", qdq);
    QT_CHECK(rc == 0 && has("qkit.bias_correct = 1"), "tvm file: metadata qkit.bias_correct: rc %d %s", rc, out);
    remove(qdq);
    /* a reconstruction or mixed precision asked replaces the default bias correction */
    rc = q("ptq --model %s --backend tvm --recon adaround --recon-iters 5 --recon-batch 4 --calib 16 --limit 32 "
           "--data %s --json", model, data);
    QT_CHECK(rc == 0 && has("\"bias_correct\": false") && has("\"recon\": \"adaround\""),
             "tvm --recon: no default bias correction: rc %d %s", rc, out);
    rc = q("ptq --model %s --backend tvm --mp-budget 6 --mp-images 8 --calib 16 --limit 32 --data %s --json", model,
           data);
    QT_CHECK(rc == 0 && has("\"bias_correct\": false"), "tvm --mp-budget: rc %d %s", rc, out);
    rc = q("ptq --model %s --backend tvm --mp-budget 6 --bias-correct --calib 16 --data %s --json", model, data);
    QT_CHECK(rc == 2 && has("--bias-correct"), "tvm --mp-budget --bias-correct: rc %d %s", rc, out);

    rc = q("ptq --model %s/missing.onnx --backend tensorrt", tmp);
    QT_CHECK(rc == 1 && has("missing.onnx"), "missing model file: rc %d %s", rc, out);

    /* --dry-run: the plan, no data needed */
    rc = q("ptq --model %s --backend tensorrt --dry-run --data %s/nodata", model, tmp);
    QT_CHECK(rc == 0 && has("backend tensorrt") && has("layer1.0.conv1.weight") && has("per channel") &&
             has("9 folded"), "dry run: rc %d %s", rc, out);

    /* a full run: JSON, the QDQ file, then eval and info on it */
    rc = q("ptq --model %s --backend tensorrt --calib 64 --data %s --out %s --json --threads 2", model, data, qdq);
    QT_CHECK(rc == 0 && has("\"backend\": \"tensorrt\"") && has("\"top1\": ") && has("\"fp32_top1\": ") &&
             has("\"quantizers\": ") && has("\"calib\": 64") && has("\"images\": 64") && exists(qdq),
             "ptq --json --out: rc %d %s", rc, out);
    rc = q("eval --model %s --data %s --json", qdq, data);
    QT_CHECK(rc == 0 && has("\"top1\": ") && has("\"images\": 64"), "eval of the QDQ file: rc %d %s", rc, out);
    rc = q("info --model %s", qdq);
    QT_CHECK(rc == 0 && has("QuantizeLinear") && has("DequantizeLinear") && has("qkit.backend"),
             "info of the QDQ file: rc %d %s", rc, out);
    rc = q("ptq --model %s --backend tensorrt --dry-run", qdq);
    QT_CHECK(rc == 1 && has("already quantized"), "ptq of a quantized model: rc %d %s", rc, out);
    /* text output */
    rc = q("ptq --model %s --backend snpe --calib 32 --data %s --limit 32", model, data);
    QT_CHECK(rc == 0 && has("backend snpe, W8 A8") && has("fp32      top-1") && has("quantized top-1") &&
             has("on 32 images"), "ptq text: rc %d %s", rc, out);

    /* activation bit allocation is simulation only: no file */
    snprintf(p, sizeof p, "%s/ba.onnx", tmp);
    rc = q("ptq --model %s --backend academic --wbits 4 --abits 4 --bit-alloc a --calib 32 --data %s --out %s", model,
           data, p);
    QT_CHECK(rc == 1 && has("no QDQ form") && !exists(p), "--bit-alloc a --out: rc %d %s", rc, out);
    rc = q("ptq --model %s --backend academic --wbits 4 --abits 4 --bit-alloc a --calib 32 --data %s --json", model,
           data);
    QT_CHECK(rc == 0 && has("\"bit_alloc\": \"a\""), "--bit-alloc a without --out simulates: rc %d %s", rc, out);

    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    QT_CHECK(system(cmd) == 0, "cleanup");
    return qt_finish("test_ptq_cli");
}
