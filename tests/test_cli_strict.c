/* Nothing dropped silently: every `qkit` command either does what it says
 * or stops with a clear message. 16-bit activations and NNIE's log code
 * (no QDQ form) are announced by ptq and refused by export; onnx-qlinear
 * export of a model none of whose layers it can convert is an error; bad
 * options (observer, --exclude node, unwritable --out, --limit 0) exit 2
 * before any data is read; each command has one JSON shape (--dry-run,
 * export --list, --compare); `qkit info` prints node names whole;
 * `qkit help CMD`; `qkit train --steps` says it stopped early. */
#include "qkit/graph.h"
#include "qkit/onnx.h"
#include "qkit/zoo.h"
#include "qt.h"
#include "cli_fx.h"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp[256];

int main(void)
{
    if (!cli_fx_init()) {
        QT_CHECK(0, "qkit binary %s not found (run from the repository root)", qkit);
        return qt_finish("test_cli_strict");
    }
    snprintf(tmp, sizeof tmp, "/tmp/qkit_cli_strict_%d", (int)getpid());
    mkdir(tmp, 0755);
    char data[400], model[400], p[600], d[600];
    snprintf(data, sizeof data, "%s/data", tmp);
    mkdir(data, 0755);
    cli_fx_tiny_mnist(data, 128, 32);
    /* a model with a long node name */
    snprintf(model, sizeof model, "%s/lenet.onnx", tmp);
    qk_graph *g;
    QT_OK(qk_zoo_build("lenet", 3, &g));
    const char *longname = "a_rather_long_node_name_that_exclude_needs_whole";
    free(g->nodes[g->n_nodes - 1].name);
    g->nodes[g->n_nodes - 1].name = strdup(longname);
    QT_OK(qk_onnx_save(g, model));
    qk_graph_destroy(g);

    /* 16-bit activations: announced, and export refuses instead of writing 0 activations */
    char s16[500];
    snprintf(s16, sizeof s16, "%s/s16.onnx", tmp);
    int rc = q("ptq --model %s --backend snpe --abits 16 --calib 32 --data %s --out %s --no-fp32", model, data, s16);
    QT_CHECK(rc == 0 && has("no QDQ form") && has("kept in float"), "snpe A16 ptq: rc %d %s", rc, out);
    snprintf(d, sizeof d, "%s/s16dir", tmp);
    rc = q("export --model %s --out %s", s16, d);
    QT_CHECK(rc == 1 && has("16-bit") && has("nothing was exported") && !exists(d), "snpe A16 export: rc %d %s", rc,
             out);
    snprintf(p, sizeof p, "%s/ppl.onnx", tmp);
    rc = q("ptq --model %s --backend ppl-w8a16 --calib 32 --data %s --out %s --no-fp32 --json", model, data, p);
    QT_CHECK(rc == 0 && has("\"quantizers_in_file\": "), "ppl-w8a16 ptq: rc %d %s", rc, out);
    rc = q("export --model %s --out %s", p, d);
    QT_CHECK(rc == 1 && has("16-bit") && !exists(d), "ppl-w8a16 export: rc %d %s", rc, out);
    /* NNIE: no quantizer has a QDQ form */
    snprintf(p, sizeof p, "%s/nnie.onnx", tmp);
    rc = q("ptq --model %s --backend nnie --calib 32 --data %s --out %s --no-fp32", model, data, p);
    QT_CHECK(rc == 0 && has("logarithmic") && has("kept in float"), "nnie ptq: rc %d %s", rc, out);
    rc = q("export --model %s --out %s", p, d);
    QT_CHECK(rc == 1 && has("nnie") && has("no deploy files") && !exists(d), "nnie export: rc %d %s", rc, out);
    /* onnx-qlinear of a tensorrt model: no layer converts -> an error, not "0 layers" */
    snprintf(p, sizeof p, "%s/trt.onnx", tmp);
    rc = q("ptq --model %s --backend tensorrt --calib 32 --data %s --out %s --no-fp32", model, data, p);
    QT_CHECK(rc == 0, "tensorrt ptq: rc %d %s", rc, out);
    rc = q("export --model %s --backend onnx-qlinear --out %s", p, d);
    QT_CHECK(rc == 1 && has("QLinearConv") && has("tensorrt") && !exists(d), "qlinear of trt: rc %d %s", rc, out);
    /* --compare --json carries threads like every other --json */
    rc = q("eval --model %s --data %s --compare --json --threads 1", p, data);
    QT_CHECK(rc == 0 && has("\"threads\": 1") && has("\"fake_top1\""), "compare --json: rc %d %s", rc, out);

    /* power-of-two profiles: the simulation rounds as the engine (half up,
     * recorded in qkit.rounding; bias on the accumulator grid): fake == real */
    static const char *const pot[3] = { "--backend tvm --wbits 4 --abits 4", "--backend tvm", "--backend vitis" };
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/pot%d.onnx", tmp, i);
        rc = q("ptq --model %s %s --calib 64 --data %s --out %s --no-fp32", model, pot[i], data, p);
        /* vitis's quantized biases are stored fake-quantized: no "kept in float" note for them */
        QT_CHECK(rc == 0 && !has("no QDQ form"), "ptq %s: rc %d %s", pot[i], rc, out);
        rc = q("info --model %s", p);
        QT_CHECK(rc == 0 && has("qkit.rounding = half_up"), "%s: metadata qkit.rounding: %s", pot[i], out);
        rc = q("eval --model %s --data %s --compare --json", p, data);
        QT_CHECK(rc == 0 && has("\"gap\": 0,") && has("\"max_logit_diff\": 0,"), "%s: fake == real: %s", pot[i],
                 out);
    }

    /* options are validated before any long work (a missing data dir would fail later with 1) */
    rc = q("ptq --model %s --backend snpe --observer bogus --data %s/nodata", model, tmp);
    QT_CHECK(rc == 2 && has("bogus") && has("minmax"), "bad observer first: rc %d %s", rc, out);
    rc = q("ptq --model %s --backend snpe --w-observer bogus --data %s/nodata", model, tmp);
    QT_CHECK(rc == 2 && has("bogus"), "bad w-observer first: rc %d %s", rc, out);
    rc = q("ptq --model %s --backend snpe --exclude no.such --data %s/nodata", model, tmp);
    QT_CHECK(rc == 2 && has("no.such"), "bad --exclude first: rc %d %s", rc, out);
    rc = q("ptq --model %s --backend snpe --out %s/nodir/x.onnx --data %s/nodata", model, tmp, tmp);
    QT_CHECK(rc == 2 && has("nodir") && has("cannot write"), "unwritable --out first: rc %d %s", rc, out);
    rc = q("ptq --model %s --backend snpe --limit 0 --data %s", model, data);
    QT_CHECK(rc == 2 && has("--limit"), "ptq --limit 0: rc %d %s", rc, out);
    rc = q("eval --model %s --limit 0 --data %s", model, data);
    QT_CHECK(rc == 2 && has("--limit"), "eval --limit 0: rc %d %s", rc, out);

    /* JSON shapes */
    rc = q("ptq --model %s --backend snpe --dry-run --json", model);
    QT_CHECK(rc == 0 && out[0] == '{' && has("\"plan\": [") && has("\"quantizers\": "), "dry-run --json: rc %d %s",
             rc, out);
    rc = q("export --list --json");
    QT_CHECK(rc == 0 && has("\"files\": [\"model_float.onnx\", \"encodings.json\"]"), "export --list --json: %s", out);

    /* info prints node names whole; help CMD is the command's help */
    rc = q("info --model %s", model);
    QT_CHECK(rc == 0 && has(longname), "info node names whole: rc %d %s", rc, out);
    rc = q("ptq --model %s --backend snpe --exclude %s --dry-run", model, longname);
    QT_CHECK(rc == 0 && has(longname), "--exclude the long name: rc %d %s", rc, out);
    rc = q("help export");
    QT_CHECK(rc == 0 && has("usage: qkit export") && has("--list"), "help export: rc %d %s", rc, out);
    rc = q("help nosuch");
    QT_CHECK(rc == 2 && has("nosuch"), "help nosuch: rc %d %s", rc, out);

    /* train --steps: no "0 epochs" */
    snprintf(p, sizeof p, "%s/t.onnx", tmp);
    rc = q("train --arch lenet --out %s --steps 3 --batch 16 --data %s --threads 1", p, data);
    QT_CHECK(rc == 0 && has("3 steps") && has("stopped") && !has(": 0 epochs"), "train --steps: rc %d %s", rc, out);

    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    QT_CHECK(system(cmd) == 0, "cleanup");
    return qt_finish("test_cli_strict");
}
