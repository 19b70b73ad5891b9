/* `qkit eval --real`, `--compare` and `--preds` end to end on a small
 * quantized model made here (qkit ptq --calib 64 on models/lenet.onnx):
 * the JSON keys and their ranges, the predictions file, and the errors (a
 * float model with --real, an NNIE model whose code has no integer
 * pipeline, --preds with --compare). Skips with an info line when
 * models/lenet.onnx or the Fashion-MNIST test set is absent. */
#include "qt.h"
#include "cli_fx.h"
#include "qkit/onnx.h"
#include "qkit/registry.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmp[256];

/* The number after "key": in out[], or NAN. */
static double num(const char *key)
{
    char k[128];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = strstr(out, k);
    return p ? strtod(p + strlen(k), NULL) : NAN;
}

static int in01(double v) { return v >= 0 && v <= 1; }

int main(void)
{
    if (!cli_fx_init()) {
        QT_CHECK(0, "qkit binary %s not found (run from the repository root)", qkit);
        return qt_finish("test_real_cli");
    }
    const char *model = "models/lenet.onnx";
    if (!exists(model) || !(exists("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz") ||
                            exists("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte"))) {
        printf("test_real_cli: info: %s or the Fashion-MNIST test set is absent; skipping\n", model);
        return qt_finish("test_real_cli");
    }
    snprintf(tmp, sizeof tmp, "/tmp/qkit_real_cli_%d", (int)getpid());
    mkdir(tmp, 0755);
    char qm[600], nn[600], pr[600], pf[600];
    snprintf(qm, sizeof qm, "%s/q.onnx", tmp);
    snprintf(nn, sizeof nn, "%s/nnie.onnx", tmp);
    snprintf(pr, sizeof pr, "%s/real.txt", tmp);
    snprintf(pf, sizeof pf, "%s/fake.txt", tmp);

    int rc = q("ptq --model %s --backend fbgemm --calib 64 --limit 200 --no-fp32 --threads 2 --out %s", model, qm);
    QT_CHECK(rc == 0 && exists(qm), "ptq fbgemm: rc %d: %s", rc, out);
    if (rc != 0)
        return qt_finish("test_real_cli");

    /* --real --json: accuracy, throughput, lowering counts */
    rc = q("eval --model %s --real --limit 200 --threads 2 --json --preds %s", qm, pr);
    double top1 = num("top1"), ips = num("images_per_s");
    QT_CHECK(rc == 0 && in01(top1) && top1 > 0.5 && ips > 0 && num("images") == 200 && has("\"real\": true") &&
                 has("\"arith\": \"fp32\"") && num("int_layers") >= 4 && num("float_layers") == 0,
             "eval --real --json: rc %d: %s", rc, out);
    /* --preds: 200 classes in [0, 10), one per line */
    FILE *f = fopen(pr, "r");
    int lines = 0, ok = f != NULL;
    int real_pred[200];
    for (int v; f && fscanf(f, "%d", &v) == 1; lines++) {
        ok &= v >= 0 && v < 10;
        if (lines < 200)
            real_pred[lines] = v;
    }
    if (f)
        fclose(f);
    QT_CHECK(ok && lines == 200, "--preds %s: %d lines, classes in range %d", pr, lines, ok);

    /* fake-quant predictions of the same model agree with the engine's on nearly all images */
    rc = q("eval --model %s --limit 200 --threads 1 --json --preds %s", qm, pf);
    QT_CHECK(rc == 0 && in01(num("top1")) && !has("\"real\""), "eval fake --json: rc %d: %s", rc, out);
    f = fopen(pf, "r");
    int same = 0, nf = 0;
    for (int v; f && fscanf(f, "%d", &v) == 1; nf++)
        same += nf < lines && v == real_pred[nf];
    if (f)
        fclose(f);
    QT_CHECK(nf == 200 && same >= 196, "fake vs real predictions: %d of %d agree", same, nf);

    /* 1 and 2 threads: the same integer results */
    rc = q("eval --model %s --real --limit 200 --threads 1 --json", qm);
    QT_CHECK(rc == 0 && num("top1") == top1, "eval --real 1 thread: top1 %g vs %g: %s", num("top1"), top1, out);

    /* --compare --json */
    rc = q("eval --model %s --compare --limit 200 --threads 2 --json", qm);
    double ft = num("fake_top1"), rt = num("real_top1"), gap = num("gap");
    QT_CHECK(rc == 0 && in01(ft) && in01(rt) && fabs(gap - (ft - rt)) < 1e-6 && fabs(gap) < 0.03 &&
                 rt == top1 && num("images") == 200 && has("\"tensors\": [") && has("\"max_err_lsb\""),
             "eval --compare --json: rc %d: %s", rc, out);
    /* text form */
    rc = q("eval --model %s --compare --limit 64", qm);
    QT_CHECK(rc == 0 && has("fake top-1") && has("real top-1") && has("SQNR"), "eval --compare text: %s", out);

    /* errors */
    rc = q("eval --model %s --real --limit 16", model);
    QT_CHECK(rc == 1 && has("eval") && has("arith"), "float model with --real: rc %d: %s", rc, out);
    rc = q("eval --model %s --compare --limit 16", model);
    QT_CHECK(rc == 1, "float model with --compare: rc %d: %s", rc, out);
    rc = q("eval --model %s --compare --preds %s/x.txt --limit 16", qm, tmp);
    QT_CHECK(rc == 2 && has("--preds"), "--preds with --compare: rc %d: %s", rc, out);
    rc = q("eval --model %s --real --arith bogus --limit 16", qm);
    QT_CHECK(rc == 2 && has("--arith"), "bad --arith: rc %d: %s", rc, out);
    rc = q("eval --model %s --real --preds %s/nodir/x.txt --limit 16", qm, tmp);
    QT_CHECK(rc == 1 && has("--preds"), "unwritable --preds: rc %d: %s", rc, out);
    rc = q("ptq --model %s --backend nnie --calib 64 --limit 16 --no-fp32 --threads 2 --out %s", model, nn);
    QT_CHECK(rc == 0 && exists(nn), "ptq nnie: rc %d: %s", rc, out);
    if (rc == 0) {
        rc = q("eval --model %s --real --limit 16", nn);
        QT_CHECK(rc == 1 && (has("none") || has("NNIE") || has("nnie")), "nnie model with --real: rc %d: %s", rc, out);
        rc = q("eval --model %s --compare --limit 16", nn);
        QT_CHECK(rc == 1, "nnie model with --compare: rc %d: %s", rc, out);
    }

    /* 2-bit weights: the simulation holds the bias the engine adds (int32 at s_x * s_w), so fake
       and real agree code for code (an unsnapped bias put 4% of fc1's output codes one off) */
    char w2[600];
    snprintf(w2, sizeof w2, "%s/w2a4.onnx", tmp);
    rc = q("ptq --model %s --backend academic --wbits 2 --abits 4 --calib 64 --no-fp32 --limit 10 --threads 2 --out %s",
           model, w2);
    QT_CHECK(rc == 0 && exists(w2), "ptq academic W2A4: rc %d: %s", rc, out);
    rc = q("eval --model %s --compare --limit 500 --threads 2 --json", w2);
    double worst = -1;
    for (const char *p = strstr(out, "\"mismatch\":"); p; p = strstr(p + 1, "\"mismatch\":"))
        worst = fmax(worst, strtod(p + 11, NULL));
    QT_CHECK(rc == 0 && fabs(num("gap")) <= 0.001 && worst >= 0 && worst < 0.005,
             "W2A4 fake vs real: gap %g, worst tensor mismatch %g: %s", num("gap"), worst, out);
    unlink(w2);

    /* gemmlowp profiles: the simulation runs the engine's double-rounding output stage after
     * every conv / fc (through max pooling and Flatten) and global average pool, so fake and
     * real agree on all but a few codes in 10^5 (where the float sum of a wide layer errs by
     * more than half an accumulator unit; before: 0.1-0.2% of lenet snpe's relu1 codes one
     * step apart), and ptq's own evaluation equals qkit's reading of the file it wrote */
    const char *gl[][2] = { { "models/lenet.onnx", "snpe" }, { "models/lenet.onnx", "acl" },
                            { "models/resnet8.onnx", "snpe" } };
    for (size_t k = 0; k < sizeof gl / sizeof *gl; k++) {
        if (!exists(gl[k][0]))
            continue;
        snprintf(w2, sizeof w2, "%s/gl.onnx", tmp);
        rc = q("ptq --model %s --backend %s --calib 64 --no-fp32 --limit 500 --threads 2 --json --out %s", gl[k][0],
               gl[k][1], w2);
        double ptq_top1 = num("top1");
        QT_CHECK(rc == 0 && exists(w2), "ptq %s %s: rc %d: %s", gl[k][0], gl[k][1], rc, out);
        rc = q("eval --model %s --compare --limit 500 --threads 2 --json", w2);
        worst = -1;
        for (const char *p = strstr(out, "\"mismatch\":"); p; p = strstr(p + 1, "\"mismatch\":"))
            worst = fmax(worst, strtod(p + 11, NULL));
        QT_CHECK(rc == 0 && fabs(num("gap")) <= 0.002 && worst >= 0 && worst <= 1e-4 && num("fake_top1") == ptq_top1,
                 "%s %s: ptq top-1 %g, file fake %g, real %g, worst tensor mismatch %g", gl[k][0], gl[k][1],
                 ptq_top1, num("fake_top1"), num("real_top1"), worst);
        unlink(w2);
    }

    /* a dead channel: BN gamma 0 folds conv1's channel 0 to zero weights (minmax scale: the float
     * epsilon) with a bias of 8, whose int32 code at s_x * s_w would be ~4e9: the scale is raised
     * so the code fits (a note says so) and fake and real agree (before: the engine's code
     * saturated and the channel's outputs came out near 4 instead of 8) */
    qk_graph *dg = NULL;
    int bn = -1;
    if (qk_onnx_load(model, &dg) == QK_OK)
        for (int k = 0; k < dg->n_nodes && bn < 0; k++)
            bn = qk_node_is(&dg->nodes[k], "BatchNormalization") ? k : -1;
    if (bn >= 0) {
        qk_f32(&dg->values[dg->nodes[bn].in[1]].t)[0] = 0.0f;
        qk_f32(&dg->values[dg->nodes[bn].in[2]].t)[0] = 8.0f;
        char dead[300];
        snprintf(dead, sizeof dead, "%s/dead.onnx", tmp);
        snprintf(w2, sizeof w2, "%s/dead_q.onnx", tmp);
        QT_OK(qk_onnx_save(dg, dead));
        rc = q("ptq --model %s --backend tensorrt --calib 64 --no-fp32 --limit 500 --threads 2 --out %s", dead, w2);
        QT_CHECK(rc == 0 && has("so the bias fits"), "ptq of a model with a dead channel: rc %d: %s", rc, out);
        rc = q("eval --model %s --compare --limit 500 --threads 2 --json", w2);
        worst = -1;
        for (const char *p = strstr(out, "\"mismatch\":"); p; p = strstr(p + 1, "\"mismatch\":"))
            worst = fmax(worst, strtod(p + 11, NULL));
        QT_CHECK(rc == 0 && fabs(num("gap")) <= 0.002 && worst >= 0 && worst < 0.001,
                 "dead channel with a bias of 8: gap %g, worst tensor mismatch %g: %s", num("gap"), worst, out);
        unlink(dead);
        unlink(w2);
    }
    qk_graph_destroy(dg);

    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "test_real_cli: could not remove %s\n", tmp);
    return qt_finish("test_real_cli");
}
