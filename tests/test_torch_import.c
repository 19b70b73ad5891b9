/* Golden test against PyTorch: the reference architectures exported by
 * torch.onnx.export (tools/make_torch_fixtures.py, torch 1.13, opset 13,
 * dynamic batch) must import and reproduce PyTorch's eval-mode logits.
 *
 * Fixtures (committed, regenerate with /usr/bin/python3
 * tools/make_torch_fixtures.py):
 *   tests/data/torch/<arch>.onnx          BN kept, state_dict names
 *   tests/data/torch/<arch>/input_0.pb    "input"  float32 [4,1,28,28]
 *   tests/data/torch/<arch>/output_0.pb   "logits" float32 [4,10] (PyTorch)
 *   tests/data/torch/mobilenetv2s_folded.onnx  torch's default eval export
 *       (Conv+BN folded, onnx::Conv_N names) of the same mobilenetv2s
 * The data directory is $QKIT_SOURCE_DIR/tests/data/torch, or
 * tests/data/torch relative to the working directory (the test runner runs
 * from the repository root).
 *
 * Tolerance 1e-4 absolute on logits of magnitude up to ~8: float32 with a
 * different summation order than PyTorch's oneDNN/BLAS kernels differs by
 * ~1e-6 relative; folding BN into the convs (the _folded file) adds rounding
 * of the same order. A wrong padding, stride, BN epsilon or ReLU6 bound moves
 * the logits by 1e-2 or more (the fixture script checks that BN statistics
 * alone move them by > 1e-2).
 *
 * Also checked: the parameter count equals PyTorch's (BN running statistics
 * and Clip bounds are CONST, not PARAM), the state_dict names are present,
 * batch 1 (dynamic batch) gives the same first row, and a 2-thread pool
 * gives bit-identical logits to the serial run (determinism rule).
 *
 * Zoo = peer: qkit's own model zoo graph (qk_zoo_build) with the PyTorch
 * weights copied in by name must have exactly the PyTorch value set
 * (every PARAM/CONST name and shape, apart from the zoo's shared ReLU6
 * bounds) and reproduce the same logits, so "lenet" etc. mean the same
 * network in qkit and in bench/torch_peer.py. (The zoo writes ReLU6 as one
 * Clip; torch exports Relu followed by Clip: same function.) */
#include "qkit/registry.h"
#include "qkit/onnx.h"
#include "qkit/ops.h"
#include "qkit/zoo.h"
#include "qt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL 1e-4

typedef struct {
    const char *model;      /* file stem under tests/data/torch */
    const char *data;       /* folder with input_0.pb / output_0.pb */
    int64_t params;         /* sum of p.numel() over model.parameters() */
    const char *names[4];   /* initializers that must keep their names */
} fixture;

static const fixture FIX[] = {
    { "lenet", "lenet", 421738,
      { "conv1.weight", "bn2.running_var", "fc1.weight", "fc2.bias" } },
    { "resnet8", "resnet8", 77754,
      { "layer1.0.conv1.weight", "layer2.0.shortcut_conv.weight",
        "layer3.0.shortcut_bn.running_mean", "fc.weight" } },
    { "mobilenetv2s", "mobilenetv2s", 50410,
      { "blocks.0.dw_conv.weight", "blocks.1.expand_bn.weight",
        "blocks.5.project_bn.running_var", "bn2.bias" } },
    /* folded: conv biases added (50410 - BN scales/shifts + conv biases) */
    { "mobilenetv2s_folded", "mobilenetv2s", -1, { "fc.weight", "fc.bias", NULL, NULL } },
};

static void path_join(char *buf, size_t n, const char *dir, const char *a, const char *b)
{
    if (b)
        snprintf(buf, n, "%s/%s/%s", dir, a, b);
    else
        snprintf(buf, n, "%s/%s.onnx", dir, a);
}

static double max_abs_diff(const qk_tensor *a, const qk_tensor *b, int64_t n)
{
    const float *x = qk_f32(a), *y = qk_f32(b);
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)x[i] - (double)y[i]);
        if (!(d <= m)) /* NaN propagates as failure */
            m = d != d ? INFINITY : d;
    }
    return m;
}

static void check_fixture(const char *dir, const fixture *f, qk_pool *pool2)
{
    char mpath[1024], ipath[1024], opath[1024];
    path_join(mpath, sizeof mpath, dir, f->model, NULL);
    path_join(ipath, sizeof ipath, dir, f->data, "input_0.pb");
    path_join(opath, sizeof opath, dir, f->data, "output_0.pb");

    qk_graph *g = NULL;
    qk_tensor x = { 0 }, want = { 0 };
    int n_out = 0, n_out2 = 0, n_out1 = 0;
    qk_tensor *out = NULL, *out2 = NULL, *out1 = NULL;
    qk_status st = qk_onnx_load(mpath, &g);
    QT_CHECK(st == QK_OK, "%s: load: %s", f->model, qk_last_error());
    if (st != QK_OK)
        return;
    QT_OK(qk_onnx_load_tensor(ipath, &x, NULL));
    QT_OK(qk_onnx_load_tensor(opath, &want, NULL));
    if (!x.data || !want.data)
        goto done;
    QT_CHECK(x.ndim == 4 && x.dims[0] == 4 && x.dims[1] == 1 && x.dims[2] == 28 && x.dims[3] == 28,
             "%s: input fixture shape", f->model);
    QT_CHECK(want.ndim == 2 && want.dims[0] == 4 && want.dims[1] == 10, "%s: output fixture shape",
             f->model);

    /* graph interface and names */
    QT_CHECK(g->n_inputs == 1 && strcmp(g->values[g->inputs[0]].name, "input") == 0,
             "%s: one graph input named 'input'", f->model);
    QT_CHECK(g->n_outputs == 1 && strcmp(g->values[g->outputs[0]].name, "logits") == 0,
             "%s: one graph output named 'logits'", f->model);
    if (f->params > 0)
        QT_CHECK(qk_graph_param_count(g) == f->params, "%s: %lld trainable parameters, torch has %lld",
                 f->model, (long long)qk_graph_param_count(g), (long long)f->params);
    for (int i = 0; i < 4 && f->names[i]; i++)
        QT_CHECK(qk_graph_find_value(g, f->names[i]) >= 0, "%s: value '%s' missing", f->model,
                 f->names[i]);

    /* batch 4, serial */
    st = qk_onnx_run(g, 1, &x, NULL, &n_out, &out);
    QT_CHECK(st == QK_OK, "%s: run: %s", f->model, qk_last_error());
    if (st != QK_OK)
        goto done;
    QT_CHECK(n_out == 1 && qk_shape_equal(&out[0], &want), "%s: output shape", f->model);
    if (n_out == 1 && qk_shape_equal(&out[0], &want)) {
        double d = max_abs_diff(&out[0], &want, 40);
        QT_CHECK(d < TOL, "%s: max |qkit - torch| = %.3g (tol %g)", f->model, d, TOL);
        printf("%-20s max |qkit - torch| = %.3g\n", f->model, d);
    }

    /* batch 1 through the dynamic batch axis: first row */
    qk_tensor x1 = x;
    x1.dims[0] = 1;
    x1.owned = 0;
    st = qk_onnx_run(g, 1, &x1, NULL, &n_out1, &out1);
    QT_CHECK(st == QK_OK, "%s: run batch 1: %s", f->model, qk_last_error());
    if (st == QK_OK && n_out1 == 1 && out1[0].ndim == 2 && out1[0].dims[0] == 1 &&
        out1[0].dims[1] == 10) {
        double d = max_abs_diff(&out1[0], &want, 10);
        QT_CHECK(d < TOL, "%s: batch 1: max |qkit - torch| = %.3g", f->model, d);
    } else if (st == QK_OK) {
        QT_CHECK(0, "%s: batch 1 output shape", f->model);
    }

    /* 2 threads: bit-identical to serial */
    if (pool2) {
        st = qk_onnx_run(g, 1, &x, pool2, &n_out2, &out2);
        QT_CHECK(st == QK_OK, "%s: run 2 threads: %s", f->model, qk_last_error());
        if (st == QK_OK && n_out2 == 1 && qk_shape_equal(&out2[0], &out[0]))
            QT_CHECK(memcmp(out2[0].data, out[0].data, qk_tensor_bytes(&out[0])) == 0,
                     "%s: 2 threads differ from serial", f->model);
    }

done:
    qk_onnx_free_tensors(out, n_out);
    qk_onnx_free_tensors(out1, n_out1);
    qk_onnx_free_tensors(out2, n_out2);
    qk_tensor_free(&x);
    qk_tensor_free(&want);
    qk_graph_destroy(g);
}

/* Build the zoo graph of arch, copy the torch weights from the imported
 * ONNX graph by name, run it and compare with PyTorch's logits. */
static void check_zoo(const char *dir, const char *arch)
{
    char mpath[1024], ipath[1024], opath[1024];
    path_join(mpath, sizeof mpath, dir, arch, NULL);
    path_join(ipath, sizeof ipath, dir, arch, "input_0.pb");
    path_join(opath, sizeof opath, dir, arch, "output_0.pb");
    qk_graph *src = NULL, *z = NULL;
    qk_tensor x = { 0 }, want = { 0 };
    qk_tensor *out = NULL;
    int n_out = 0;
    qk_status st = qk_onnx_load(mpath, &src);
    QT_CHECK(st == QK_OK, "zoo %s: load: %s", arch, qk_last_error());
    if (st == QK_OK)
        st = qk_zoo_build(arch, 7, &z);
    QT_CHECK(st == QK_OK, "zoo %s: build: %s", arch, qk_last_error());
    if (st != QK_OK)
        goto done;
    QT_CHECK(qk_graph_param_count(z) == qk_graph_param_count(src), "zoo %s: %lld params, torch %lld",
             arch, (long long)qk_graph_param_count(z), (long long)qk_graph_param_count(src));
    QT_CHECK(qk_zoo_param_count(arch) == qk_graph_param_count(src), "zoo %s: param_count %lld",
             arch, (long long)qk_zoo_param_count(arch));
    int copied = 0, missing = 0;
    for (int i = 0; i < z->n_values; i++) {
        qk_value *v = &z->values[i];
        if (v->kind != QK_VALUE_PARAM && v->kind != QK_VALUE_CONST)
            continue;
        if (strncmp(v->name, "relu6.", 6) == 0)
            continue;
        int j = qk_graph_find_value(src, v->name);
        if (j < 0 || !qk_shape_equal(&src->values[j].t, &v->t) ||
            src->values[j].kind != v->kind) {
            missing++;
            QT_CHECK(0, "zoo %s: '%s' absent from the torch export or of another shape/kind", arch,
                     v->name);
            continue;
        }
        memcpy(v->t.data, src->values[j].t.data, qk_tensor_bytes(&v->t));
        copied++;
    }
    /* and the other way: every torch initializer of rank >= 1 is in the zoo */
    for (int j = 0; j < src->n_values; j++) {
        const qk_value *v = &src->values[j];
        if ((v->kind == QK_VALUE_PARAM || v->kind == QK_VALUE_CONST) && v->t.ndim >= 1 &&
            qk_graph_find_value(z, v->name) < 0) {
            missing++;
            QT_CHECK(0, "zoo %s: torch value '%s' has no zoo counterpart", arch, v->name);
        }
    }
    QT_CHECK(copied > 0 && missing == 0, "zoo %s: %d values copied, %d unmatched", arch, copied,
             missing);
    QT_OK(qk_ops_bind(z));
    QT_OK(qk_onnx_load_tensor(ipath, &x, NULL));
    QT_OK(qk_onnx_load_tensor(opath, &want, NULL));
    if (!x.data || !want.data)
        goto done;
    st = qk_onnx_run(z, 1, &x, NULL, &n_out, &out);
    QT_CHECK(st == QK_OK, "zoo %s: run: %s", arch, qk_last_error());
    if (st == QK_OK && n_out == 1 && qk_shape_equal(&out[0], &want)) {
        double d = max_abs_diff(&out[0], &want, 40);
        QT_CHECK(d < TOL, "zoo %s: max |qkit zoo - torch| = %.3g (tol %g)", arch, d, TOL);
        printf("zoo %-16s max |qkit - torch| = %.3g\n", arch, d);
    } else if (st == QK_OK) {
        QT_CHECK(0, "zoo %s: output shape", arch);
    }
done:
    qk_onnx_free_tensors(out, n_out);
    qk_tensor_free(&x);
    qk_tensor_free(&want);
    qk_graph_destroy(z);
    qk_graph_destroy(src);
}

int main(void)
{
    char dir[900];
    const char *src = getenv("QKIT_SOURCE_DIR");
    snprintf(dir, sizeof dir, "%s/tests/data/torch", src && *src ? src : ".");

    qk_pool *pool2 = NULL;
    QT_OK(qk_pool_create(2, &pool2));
    for (size_t i = 0; i < sizeof FIX / sizeof FIX[0]; i++)
        check_fixture(dir, &FIX[i], pool2);
    qk_pool_destroy(pool2);
    for (int i = 0; i < 3; i++)
        check_zoo(dir, FIX[i].model);

    /* a missing file is reported, not crashed on */
    qk_graph *g = NULL;
    char bad[1024];
    snprintf(bad, sizeof bad, "%s/no_such_model.onnx", dir);
    QT_CHECK(qk_onnx_load(bad, &g) == QK_ERR_IO && g == NULL, "missing file: %s", qk_last_error());
    return qt_finish("test_torch_import");
}
