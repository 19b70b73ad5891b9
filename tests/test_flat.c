/* The flat API for bindings (flat.h): options by name (unknown keys, bad
 * values, flags, lists), datasets from arrays, run against qk_onnx_run,
 * the JSON of info / ptq / evaluate / export / backends, and the errors a
 * binding turns into exceptions (shapes, missing data, no labels). */
#include "qt.h"
#include "qkit/flat.h"
#include "qkit/onnx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int has(const char *s, const char *needle) { return s && strstr(s, needle) != NULL; }

/* The number after "key": in a JSON object (-1e30 when absent). */
static double jnum(const char *json, const char *key)
{
    char k[64];
    snprintf(k, sizeof k, "\"%s\": ", key);
    const char *p = json ? strstr(json, k) : NULL;
    return p ? strtod(p + strlen(k), NULL) : -1e30;
}

static void test_opts(void)
{
    qk_flat_opts *o;
    QT_OK(qk_flat_opts_create(&o));
    QT_OK(qk_flat_opts_set(o, "backend", "fbgemm"));
    QT_OK(qk_flat_opts_set(o, "wbits", "8"));
    QT_OK(qk_flat_opts_set(o, "first-last-bits", "-1"));   /* '-' read as '_' */
    QT_OK(qk_flat_opts_set(o, "bias_correct", "true"));
    QT_OK(qk_flat_opts_set(o, "mean", "0.485,0.456,0.406"));
    QT_OK(qk_flat_opts_set(o, "exclude", "a"));
    QT_OK(qk_flat_opts_set(o, "exclude", "b"));
    QT_OK(qk_flat_opts_set(o, "recon", "brecq"));
    QT_OK(qk_flat_opts_set(o, "recon", "adaround"));
    QT_OK(qk_flat_opts_set(o, "arith", "gemmlowp"));
    QT_OK(qk_flat_opts_set(o, "reference", "models/lenet.onnx"));
    struct { const char *k, *v; qk_status st; const char *msg; } bad[] = {
        { "wbitz", "4", QK_ERR_NOTFOUND, "valid: backend" },
        { "backend", "tensorrrt", QK_ERR_ARG, "tensorrt" },
        { "wbits", "eight", QK_ERR_ARG, "wbits" },
        { "wbits", "17", QK_ERR_ARG, "[0, 16]" },
        { "observer", "nope", QK_ERR_ARG, "minmax" },
        { "bias_correct", "maybe", QK_ERR_ARG, "flag" },
        { "std", "0.2,0", QK_ERR_ARG, "positive" },
        { "mean", "1,2,3,4,5,6,7,8,9", QK_ERR_ARG, "at most 8" },
        { "scale", "1,2", QK_ERR_ARG, "one number" },
        { "bit_alloc", "x", QK_ERR_ARG, "wa" },
        { "recon", "brecqq", QK_ERR_ARG, "recon" },
        { "arith", "int4", QK_ERR_ARG, "gemmlowp" },
        { "batch", "0", QK_ERR_ARG, "batch" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        qk_status st = qk_flat_opts_set(o, bad[i].k, bad[i].v);
        QT_CHECK(st == bad[i].st && has(qk_last_error(), bad[i].msg), "%s=%s: %s %s", bad[i].k, bad[i].v,
                 qk_status_str(st), qk_last_error());
    }
    QT_CHECK(qk_flat_opts_set(o, NULL, "1") == QK_ERR_ARG, "NULL key");
    qk_flat_opts_destroy(o);
    qk_flat_opts_destroy(NULL);
}

static void test_data(const qk_dataset *test)
{
    qk_dataset *ds = NULL;
    int64_t lab[2] = { 1, 2 };
    float f[2 * 4 * 4 * 3];
    for (int i = 0; i < 2 * 4 * 4 * 3; i++)
        f[i] = (float)i;
    QT_OK(qk_flat_data_create(QK_F32, 2, 3, 4, 4, f, 1, lab, &ds));   /* NHWC -> NCHW */
    QT_CHECK(ds && ds->n == 2 && ds->c == 3 && ds->fimages && ds->fimages[1] == 3.0f && ds->fimages[16] == 1.0f &&
             qk_dataset_label(ds, 1) == 2, "NHWC float dataset");
    qk_flat_data_destroy(ds);
    qk_flat_data_destroy(NULL);
    QT_CHECK(qk_flat_data_create(QK_I32, 2, 3, 4, 4, f, 0, NULL, &ds) == QK_ERR_ARG && has(qk_last_error(), "int32"),
             "int32 images: %s", qk_last_error());
    QT_CHECK(qk_flat_data_create(QK_U8, 0, 1, 28, 28, test->images, 0, NULL, &ds) == QK_ERR_ARG, "n = 0");
    QT_CHECK(qk_flat_data_create(QK_U8, 2, 1, 28, 28, NULL, 0, NULL, &ds) == QK_ERR_ARG, "no array");
}

static void test_run_info(const qk_dataset *test)
{
    qk_graph *g, *g2;
    QT_OK(qk_onnx_load("models/lenet.onnx", &g));
    QT_OK(qk_onnx_load("models/lenet.onnx", &g2));
    enum { N = 3 };
    static float x[N * 28 * 28];
    for (int i = 0; i < N * 28 * 28; i++)
        x[i] = (test->images[i] / 255.0f - 0.286f) / 0.353f;
    int dt = QK_F32, nd = 4, n_out = 0, n2 = 0;
    int64_t dims[QK_MAX_DIMS] = { N, 1, 28, 28 };
    const void *data[1] = { x };
    qk_tensor *outs = NULL, *ref = NULL, xt;
    QT_OK(qk_flat_run(g, 1, &dt, &nd, dims, data, NULL, &n_out, &outs));
    qk_tensor_set_shape(&xt, QK_F32, 4, dims);
    xt.data = x;
    xt.owned = 0;
    QT_OK(qk_onnx_run(g2, 1, &xt, NULL, &n2, &ref));
    int odt = 0, ond = 0;
    int64_t od[QK_MAX_DIMS];
    const void *op = NULL;
    if (n_out == 1 && n2 == 1) {
        QT_OK(qk_flat_tensor_get(outs, 0, &odt, &ond, od, &op));
        QT_CHECK(odt == QK_F32 && ond == 2 && od[0] == N && od[1] == 10 && od[2] == 0, "output [3,10] float32");
        QT_CHECK(op && memcmp(op, ref[0].data, N * 10 * sizeof(float)) == 0, "same logits as qk_onnx_run");
    }
    qk_onnx_free_tensors(outs, n_out);
    qk_onnx_free_tensors(ref, n2);
    dims[2] = 27;
    QT_CHECK(qk_flat_run(g, 1, &dt, &nd, dims, data, NULL, &n_out, &outs) == QK_ERR_SHAPE &&
                 has(qk_last_error(), "[3,1,27,28]"), "bad shape: %s", qk_last_error());
    QT_CHECK(qk_flat_run(g, 2, (int[]){ 1, 1 }, (int[]){ 4, 4 }, (int64_t[2 * QK_MAX_DIMS]){ 0 },
                         (const void *[]){ x, x }, NULL, &n_out, &outs) == QK_ERR_ARG &&
             has(qk_last_error(), "1 inputs, 2 arrays"), "input count: %s", qk_last_error());
    nd = 9;
    QT_CHECK(qk_flat_run(g, 1, &dt, &nd, dims, data, NULL, &n_out, &outs) == QK_ERR_SHAPE, "rank 9");

    char *json = NULL;
    QT_OK(qk_flat_model_info(g, &json));
    QT_CHECK(has(json, "\"name\": \"lenet\"") && has(json, "\"opset\": 13") &&
             has(json, "\"shape\": [-1, 1, 28, 28]") && has(json, "\"shape\": [1, 10]") &&
             has(json, "\"Conv\": 2") && has(json, "\"quantized\": false") &&
             has(json, "\"qkit.arch\": \"lenet\"") && jnum(json, "nodes") == 12, "info: %s", json);
    qk_free(json);
    /* JSON escapes in metadata */
    QT_OK(qk_graph_set_meta(g, "note", "a \"quoted\"\\ value\n"));
    QT_OK(qk_flat_model_info(g, &json));
    QT_CHECK(has(json, "\"note\": \"a \\\"quoted\\\"\\\\ value\\u000a\""), "escapes: %s", json);
    qk_free(json);
    qk_graph_destroy(g);
    qk_graph_destroy(g2);
}

static void test_ptq_eval_export(const qk_dataset *train, const qk_dataset *test)
{
    char dir[] = "/tmp/qkit_flat_XXXXXX", q[96], dep[96];
    QT_CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(q, sizeof q, "%s/q.onnx", dir);
    snprintf(dep, sizeof dep, "%s/deploy", dir);
    qk_flat_opts *o;
    QT_OK(qk_flat_opts_create(&o));
    char *json = NULL;
    qk_dataset calib = qk_dataset_view(train, 0, 128), ev = qk_dataset_view(test, 0, 500);
    QT_CHECK(qk_flat_ptq("models/lenet.onnx", &calib, &ev, o, q, NULL, &json) == QK_ERR_ARG &&
             has(qk_last_error(), "backend is required"), "no backend: %s", qk_last_error());
    QT_OK(qk_flat_opts_set(o, "backend", "tensorrt"));
    QT_OK(qk_flat_opts_set(o, "images", "200"));
    QT_CHECK(qk_flat_ptq("models/lenet.onnx", &calib, NULL, o, q, NULL, &json) == QK_ERR_ARG &&
             has(qk_last_error(), "200 calibration images"), "too many images: %s", qk_last_error());
    QT_CHECK(access(q, F_OK) != 0, "nothing written on error");
    QT_OK(qk_flat_opts_set(o, "images", "0"));
    QT_OK(qk_flat_opts_set(o, "exclude", "nope"));
    QT_CHECK(qk_flat_ptq("models/lenet.onnx", &calib, NULL, o, q, NULL, &json) == QK_ERR_NOTFOUND &&
             has(qk_last_error(), "nope"), "exclude: %s", qk_last_error());
    qk_flat_opts_destroy(o);
    QT_OK(qk_flat_opts_create(&o));
    QT_OK(qk_flat_opts_set(o, "backend", "tensorrt"));
    QT_OK(qk_flat_ptq("models/lenet.onnx", &calib, &ev, o, q, NULL, &json));
    QT_CHECK(has(json, "\"backend\": \"tensorrt\"") && jnum(json, "calib_images") == 128 &&
             jnum(json, "fp32_top1") > 0.8 && fabs(jnum(json, "delta")) < 0.02 && jnum(json, "images") == 500 &&
             jnum(json, "quantizers_in_file") == jnum(json, "quantizers") && has(json, q), "ptq: %s", json);
    double top1 = jnum(json, "top1");
    qk_free(json);
    json = NULL;

    /* evaluate the written file: fake quant equals ptq's figure; real close to it */
    qk_graph *g;
    QT_OK(qk_onnx_load(q, &g));
    QT_OK(qk_flat_evaluate(g, &ev, NULL, NULL, &json));
    QT_CHECK(fabs(jnum(json, "top1") - top1) < 1e-9 && has(json, "\"real\": false"), "evaluate: %s", json);
    qk_free(json);
    qk_flat_opts_destroy(o);
    QT_OK(qk_flat_opts_create(&o) == QK_OK ? qk_flat_opts_set(o, "real", "1") : QK_ERR_NOMEM);
    QT_OK(qk_flat_evaluate(g, &ev, o, NULL, &json));
    QT_CHECK(fabs(jnum(json, "top1") - top1) < 0.01 && has(json, "\"arith\": \"fp32\"") &&
             jnum(json, "int_layers") == 4, "evaluate real: %s", json);
    qk_free(json);
    qk_dataset unl = ev;
    unl.labels = NULL;
    QT_OK(qk_flat_evaluate(g, &unl, o, NULL, &json));   /* integer engine vs the QDQ model in float */
    QT_CHECK(jnum(json, "top1_agree") > 0.97 && jnum(json, "cosine") > 0.99, "agreement: %s", json);
    qk_free(json);
    QT_CHECK(qk_flat_evaluate(g, &unl, NULL, NULL, &json) == QK_ERR_ARG && has(qk_last_error(), "no labels"),
             "unlabelled: %s", qk_last_error());
    qk_dataset small = { 0 };
    static uint8_t px[2 * 20 * 20];
    QT_OK(qk_dataset_from_u8(2, 1, 20, 20, px, 0, NULL, &small));
    QT_CHECK(qk_flat_evaluate(g, &small, o, NULL, &json) == QK_ERR_SHAPE && has(qk_last_error(), "[N,1,28,28]"),
             "shape: %s", qk_last_error());
    qk_dataset_free(&small);
    qk_flat_opts_destroy(o);
    qk_graph_destroy(g);

    QT_OK(qk_flat_export(q, NULL, dep, &json));
    char f[160];
    snprintf(f, sizeof f, "%s/dynamic_range.json", dep);
    QT_CHECK(has(json, "\"model_float.onnx\"") && has(json, "\"backend\": \"tensorrt\"") &&
             access(f, F_OK) == 0, "export: %s", json);
    qk_free(json);
    QT_CHECK(qk_flat_export("models/lenet.onnx", "tensorrt", dep, &json) != QK_OK, "export of a float model");
    QT_OK(qk_flat_backends(&json));
    QT_CHECK(has(json, "{\"name\": \"tensorrt\", \"summary\": ") && has(json, "\"arith\": \"gemmlowp\""),
             "backends: %.200s", json);
    qk_free(json);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    QT_CHECK(system(cmd) == 0, "cleanup");
}

int main(void)
{
    qk_dataset train, test;
    QT_OK(qk_dataset_load_dir(NULL, "train", &train));
    QT_OK(qk_dataset_load_dir(NULL, "t10k", &test));
    test_opts();
    test_data(&test);
    test_run_info(&test);
    test_ptq_eval_export(&train, &test);
    qk_dataset_free(&train);
    qk_dataset_free(&test);
    return qt_finish("test_flat");
}
