/* PyTorch exports through quantization (qkit ptq, eval --real): a model
 * exported with torch.onnx.export's defaults (tests/data/export/
 * shared_params.onnx, tools/make_export_fixtures.py) has a fixed batch of 1
 * and folded BatchNorm parameters shared through Identity nodes. Each layer
 * must get its own parameters (qk_graph_own_params), the batch must follow
 * the data, and the quantized model must agree with the float one. */
#include "qkit/qkit.h"
#include "cli_fx.h"
#include "qt.h"

#include <unistd.h>

static const char *model = "tests/data/export/shared_params.onnx";

static double json_num(const char *key)
{
    char k[64];
    snprintf(k, sizeof k, "\"%s\": ", key);
    const char *p = strstr(out, k);
    return p ? atof(p + strlen(k)) : -1e9;
}

static void test_own_params(void)
{
    qk_graph *g;
    QT_OK(qk_onnx_load(model, &g));
    int ident = 0, conv_bias[3] = { -1, -1, -1 }, nc = 0;
    for (int i = 0; i < g->n_nodes; i++)
        ident += qk_node_is(&g->nodes[i], "Identity");
    QT_CHECK(ident == 2, "the fixture shares parameters through 2 Identity nodes (has %d)", ident);
    int64_t dims[4] = { 2, 3, 12, 12 };
    qk_tensor x;
    QT_OK(qk_tensor_alloc(&x, QK_F32, 4, dims));
    for (int64_t i = 0; i < qk_tensor_numel(&x); i++)
        qk_f32(&x)[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    int n_out;
    qk_tensor *y0, *y1;
    QT_OK(qk_onnx_run(g, 1, &x, NULL, &n_out, &y0));
    int changed = -1;
    QT_OK(qk_graph_own_params(g, &changed));
    ident = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        ident += qk_node_is(&g->nodes[i], "Identity");
        if (qk_node_is(&g->nodes[i], "Conv") && nc < 3)
            conv_bias[nc++] = g->nodes[i].in[2];
    }
    /* 2 Identity nodes removed; the convs reading the shared weight and
     * biases now read copies of their own */
    QT_CHECK(ident == 0 && changed >= 2, "Identity nodes left %d, changes %d", ident, changed);
    QT_CHECK(nc == 3 && conv_bias[0] != conv_bias[1] && conv_bias[1] != conv_bias[2] &&
                 conv_bias[0] != conv_bias[2] && qk_value_is_initializer_with_data(&g->values[conv_bias[2]]),
             "each conv owns its bias");
    QT_OK(qk_onnx_run(g, 1, &x, NULL, &n_out, &y1));
    int same = qk_tensor_numel(&y0[0]) == qk_tensor_numel(&y1[0]);
    for (int64_t i = 0; same && i < qk_tensor_numel(&y0[0]); i++)
        same &= qk_f32(&y0[0])[i] == qk_f32(&y1[0])[i];
    QT_CHECK(same, "the float function is unchanged");
    int again = -1;
    QT_OK(qk_graph_own_params(g, &again));
    QT_CHECK(again == 0, "a second pass changes nothing (%d)", again);
    qk_onnx_free_tensors(y0, n_out);
    qk_onnx_free_tensors(y1, n_out);
    qk_tensor_free(&x);
    qk_graph_destroy(g);
}

/* The library's data loops on a fixed-batch model, without
 * qk_onnx_dynamic_batch: the plan caps the batch at 1, every image is still
 * evaluated, and the results equal those of the re-batched model. */
static void test_fixed_batch(void)
{
    qk_graph *fixed, *dyn;
    QT_OK(qk_onnx_load(model, &fixed));
    QT_OK(qk_onnx_load(model, &dyn));
    qk_log_level lvl = qk_log_get_level();
    qk_log_set_level(QK_LOG_ERROR);
    QT_CHECK(qk_onnx_dynamic_batch(dyn) == 1 && qk_onnx_dynamic_batch(dyn) == 0, "one input made dynamic, once");
    qk_log_set_level(lvl);
    const int n = 10;
    float *x = malloc(sizeof(float) * n * 3 * 12 * 12);
    for (int i = 0; i < n * 3 * 12 * 12; i++)
        x[i] = (float)((i * 7919) % 255) / 255.0f;
    qk_dataset ds;
    QT_OK(qk_dataset_from_f32(n, 3, 12, 12, x, 0, NULL, &ds));
    free(x);
    qk_norm nm = qk_norm_default();
    qk_agree_result r;
    QT_OK(qk_evaluate_agreement(dyn, fixed, &ds, nm, 8, NULL, &r));
    QT_CHECK(r.images == n && r.top1 == 1.0 && r.sqnr_db > 100, "fixed batch vs re-batched: %lld images, top1 %g, "
             "%g dB", (long long)r.images, r.top1, r.sqnr_db);
    QT_CHECK(fixed->max_batch == 1 && dyn->max_batch == 8, "planned batches %lld (fixed) and %lld",
             (long long)fixed->max_batch, (long long)dyn->max_batch);
    qk_dataset_free(&ds);
    qk_graph_destroy(fixed);
    qk_graph_destroy(dyn);
}

static void test_cli(const char *tmp)
{
    char npy[300], qdq[300];
    snprintf(npy, sizeof npy, "%s/x.npy", tmp);
    snprintf(qdq, sizeof qdq, "%s/q.onnx", tmp);
    const int n = 24;
    int64_t dims[4] = { n, 3, 12, 12 };
    float *x = malloc(sizeof(float) * n * 3 * 12 * 12);
    uint32_t s = 12345;
    for (int i = 0; i < n * 3 * 12 * 12; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)(s >> 8) / 16777216.0f;
    }
    QT_OK(qk_npy_write(npy, "<f4", 4, dims, x));
    free(x);
    static const char *const backends[] = { "tensorrt", "fbgemm", "onnx-qlinear" };
    for (int b = 0; b < 3; b++) {
        int rc = q("ptq --model %s --backend %s --data %s --calib-data %s --dry-run", model, backends[b], npy, npy);
        QT_CHECK(rc == 0 && !has("Identity"), "%s --dry-run: no quantizer on an Identity output: rc %d %s",
                 backends[b], rc, out);
        unlink(qdq);
        rc = q("ptq --model %s --backend %s --data %s --calib-data %s --out %s --json", model, backends[b], npy, npy,
               qdq);
        QT_CHECK(rc == 0 && has("fixed batch of 1") && json_num("images") == n && json_num("top1_agree") >= 0.9 &&
                     json_num("sqnr_db") > 25,
                 "%s: ptq of a fixed-batch export with shared parameters agrees with the float model: rc %d %s",
                 backends[b], rc, out);
        QT_CHECK(exists(qdq), "%s: the QDQ file is written", backends[b]);
        rc = q("eval --model %s --data %s --real --json", qdq, npy);
        QT_CHECK(rc == 0 && json_num("images") == n && json_num("top1_agree") >= 0.9,
                 "%s: eval --real of the written model: rc %d %s", backends[b], rc, out);
    }
    /* the layer analysis and the mixed-precision search batch the calibration
     * images at the dataset's channel count (3 here) */
    char html[300];
    snprintf(html, sizeof html, "%s/a.html", tmp);
    unlink(qdq);
    int rc = q("ptq --model %s --backend academic --wbits 4 --abits 8 --mp-budget 5 --mp-images 8 --analyze %s "
               "--data %s --calib-data %s --out %s --json", model, html, npy, npy, qdq);
    QT_CHECK(rc == 0 && exists(qdq) && exists(html) && json_num("images") == n,
             "academic --mp-budget --analyze on 3-channel images: rc %d %s", rc, out);
}

int main(void)
{
    if (!cli_fx_init()) {
        QT_CHECK(0, "qkit binary %s not found (run from the repository root)", qkit);
        return qt_finish("test_export_ptq");
    }
    qk_log_set_level(QK_LOG_ERROR);
    char tmp[64];
    snprintf(tmp, sizeof tmp, "/tmp/qkit_export_ptq_%d", (int)getpid());
    mkdir(tmp, 0755);
    test_own_params();
    test_fixed_batch();
    test_cli(tmp);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmp);
    return qt_finish("test_export_ptq");
}
