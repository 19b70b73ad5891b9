/* `qkit analyze` and `qkit ptq --analyze / --mp-budget` end to end on a zoo
 * model and a small generated dataset: the ranking, JSON and HTML outputs,
 * and the errors of --mp-budget (exit 2, nothing written). */
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
        return qt_finish("test_analyze_cli");
    }
    snprintf(tmp, sizeof tmp, "/tmp/qkit_analyze_cli_%d", (int)getpid());
    mkdir(tmp, 0755);
    char data[400], model[400], qdq[400], p[600], html[600];
    snprintf(data, sizeof data, "%s/data", tmp);
    mkdir(data, 0755);
    cli_fx_tiny_mnist(data, 64, 32);
    snprintf(model, sizeof model, "%s/lenet.onnx", tmp);
    qk_graph *g;
    QT_OK(qk_zoo_build("lenet", 5, &g));
    QT_OK(qk_onnx_save(g, model));
    qk_graph_destroy(g);
    snprintf(qdq, sizeof qdq, "%s/q.onnx", tmp);
    snprintf(html, sizeof html, "%s/a.html", tmp);

    int rc = q("ptq --model %s --backend tensorrt --observer kl --calib 32 --data %s --out %s --threads 2", model,
               data, qdq);
    QT_CHECK(rc == 0 && exists(qdq), "ptq: rc %d %s", rc, out);
    rc = q("analyze --model %s --quant %s --data %s --limit 16 --html %s --threads 2", model, qdq, data, html);
    QT_CHECK(rc == 0 && has("rank") && has("out-alone") && has("conv") && exists(html), "analyze: rc %d %s", rc, out);
    rc = q("analyze --model %s --quant %s --data %s --limit 16 --json", model, qdq, data);
    QT_CHECK(rc == 0 && has("\"ranking\": [") && has("\"sqnr_accumulated_db\"") && has("\"hist\": ["),
             "analyze --json: rc %d", rc);
    rc = q("analyze --model %s --quant %s --data %s", model, model, data);
    QT_CHECK(rc == 1 && has("qkit metadata"), "a float file as --quant: rc %d %s", rc, out);
    rc = q("analyze --model %s", model);
    QT_CHECK(rc == 2 && has("--quant"), "missing --quant: rc %d %s", rc, out);
    snprintf(p, sizeof p, "%s/a.json", tmp);
    rc = q("ptq --model %s --backend tensorrt --calib 32 --data %s --limit 16 --analyze %s", model, data, p);
    QT_CHECK(rc == 0 && exists(p), "ptq --analyze: rc %d %s", rc, out);

    /* mixed precision: errors name the option, exit 2, no file */
    snprintf(p, sizeof p, "%s/mp.onnx", tmp);
    rc = q("ptq --model %s --backend tensorrt --mp-budget 4 --calib 32 --data %s --out %s", model, data, p);
    QT_CHECK(rc == 2 && has("--mp-budget") && has("tensorrt") && !exists(p), "mp on tensorrt: rc %d %s", rc, out);
    rc = q("ptq --model %s --backend academic --mp-budget 1.5 --calib 32 --data %s --out %s", model, data, p);
    QT_CHECK(rc == 2 && has("--mp-budget") && has("lowest") && !exists(p), "budget below 2 bits: rc %d %s", rc, out);
    rc = q("ptq --model %s --backend academic --mp-budget 2KB --calib 32 --data %s --out %s", model, data, p);
    QT_CHECK(rc == 2 && has("--mp-budget") && has("bytes") && !exists(p), "bytes below: rc %d %s", rc, out);
    rc = q("ptq --model %s --backend academic --mp-budget x --calib 32 --data %s --out %s", model, data, p);
    QT_CHECK(rc == 2 && has("--mp-budget") && !exists(p), "bad budget: rc %d %s", rc, out);
    rc = q("ptq --model %s --backend academic --mp-budget 5 --mp-images 8 --calib 32 --data %s --limit 16 --out %s "
           "--threads 2", model, data, p);
    QT_CHECK(rc == 0 && has("mixed precision: mean weight width") && exists(p), "mp run: rc %d %s", rc, out);
    rc = q("info --model %s", p);
    QT_CHECK(rc == 0 && has("qkit.mp_bits"), "mp metadata: rc %d", rc);

    snprintf(p, sizeof p, "rm -rf %s", tmp);
    if (system(p) != 0)
        fprintf(stderr, "warning: could not remove %s\n", tmp);
    return qt_finish("test_analyze_cli");
}
