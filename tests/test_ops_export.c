/* Operators of exported image classifiers (layout.c, pad.c, reduce.c,
 * unary.c, norm.c, resize.c, conv_transpose.c, compare.c, tensor_gen.c):
 * backward against finite differences (gradcheck.h), a few forward values
 * by hand, and the known-value folding of a Shape -> Slice -> Concat ->
 * Reshape chain at plan time. The ONNX node tests (test_onnx_node) check
 * the forward semantics in depth. */
#include "light_fx.h"
#include "qkit/onnx.h"

static qk_rng rng;

#define I64(...) ((int64_t[]){ __VA_ARGS__ })

/* One-node gradient check: x PARAM of shape dims, extra CONST int64 inputs. */
static void grad1(const char *op, int nd, const int64_t *dims, int n_extra, const int64_t *const *extra,
                  const int *extra_len, void (*attrs)(qk_graph *, int), const gc_opts *o)
{
    qk_graph *g;
    qk_graph_create(&g);
    int in[6];
    in[0] = gc_add(g, "x", 1, QK_F32, nd, dims, NULL, &rng);
    for (int k = 0; k < n_extra; k++) {
        char nm[16];
        snprintf(nm, sizeof nm, "c%d", k);
        in[1 + k] = extra[k] ? gc_add(g, nm, 0, QK_I64, 1, I64(extra_len[k]), extra[k], NULL) : -1;
    }
    int node = gc_node(g, op, 1 + n_extra, in, 1);
    if (attrs)
        attrs(g, node);
    gc_expect(g, node, o, op);
    qk_graph_destroy(g);
}

static void perm_attr(qk_graph *g, int n) { qk_node_set_ints(g, n, "perm", 3, I64(2, 0, 1)); }
static void reflect_attr(qk_graph *g, int n) { qk_node_set_string(g, n, "mode", "reflect"); }
static void edge_attr(qk_graph *g, int n) { qk_node_set_string(g, n, "mode", "edge"); }
static void keep0_attr(qk_graph *g, int n) { qk_node_set_int(g, n, "keepdims", 0); }
static void axis1_attr(qk_graph *g, int n) { qk_node_set_int(g, n, "axis", 1); }
static void tanh_attr(qk_graph *g, int n) { qk_node_set_string(g, n, "approximate", "tanh"); }
static void linear_attr(qk_graph *g, int n)
{
    qk_node_set_string(g, n, "mode", "linear");
    qk_node_set_string(g, n, "coordinate_transformation_mode", "pytorch_half_pixel");
}
static void align_attr(qk_graph *g, int n)
{
    qk_node_set_string(g, n, "mode", "linear");
    qk_node_set_string(g, n, "coordinate_transformation_mode", "align_corners");
}

static void test_layout_grad(void)
{
    gc_opts o = gc_defaults();
    grad1("Transpose", 3, I64(2, 3, 4), 0, NULL, NULL, perm_attr, &o);
    const int64_t *sl[4] = { I64(1, -1), I64(3, -4), I64(1, 2), I64(1, -1) };
    grad1("Slice", 3, I64(2, 4, 5), 4, sl, (int[]){ 2, 2, 2, 2 }, NULL, &o);
    const int64_t *ex[1] = { I64(2, 3, 4) };
    grad1("Expand", 2, I64(3, 1), 1, ex, (int[]){ 3 }, NULL, &o);
    const int64_t *ti[1] = { I64(2, 3) };
    grad1("Tile", 2, I64(2, 2), 1, ti, (int[]){ 2 }, NULL, &o);
    const int64_t *pd[1] = { I64(0, 1, 2, 0, 2, 1) };
    grad1("Pad", 3, I64(1, 3, 4), 1, pd, (int[]){ 6 }, NULL, &o);
    grad1("Pad", 3, I64(1, 3, 4), 1, pd, (int[]){ 6 }, reflect_attr, &o);
    grad1("Pad", 3, I64(1, 3, 4), 1, pd, (int[]){ 6 }, edge_attr, &o);

    /* Split into [1, 3] along axis 1, gradient through both outputs */
    qk_graph *g;
    qk_graph_create(&g);
    int x = gc_add(g, "x", 1, QK_F32, 2, I64(2, 4), NULL, &rng);
    int s = gc_add(g, "s", 0, QK_I64, 1, I64(2), I64(1, 3), NULL);
    int node = gc_node(g, "Split", 2, (int[]){ x, s }, 2);
    qk_node_set_int(g, node, "axis", 1);
    gc_expect(g, node, &o, "Split");
    qk_graph_destroy(g);
}

static void test_reduce_grad(void)
{
    gc_opts o = gc_defaults();
    static const char *ops[] = { "ReduceMean", "ReduceSum", "ReduceL2", "ReduceSumSquare", "ReduceLogSumExp",
                                 "ReduceMax", "ReduceProd" };
    const int64_t *ax[1] = { I64(0, 2) };
    for (int k = 0; k < 7; k++) {
        /* axes as input (opset 18 form; ReduceSum 13) */
        grad1(ops[k], 3, I64(3, 2, 4), 1, ax, (int[]){ 2 }, k % 2 ? keep0_attr : NULL, &o);
    }
    /* axes attribute form, and reduce-all */
    qk_graph *g;
    qk_graph_create(&g);
    int x = gc_add(g, "x", 1, QK_F32, 2, I64(3, 5), NULL, &rng);
    int node = gc_node(g, "ReduceMean", 1, &x, 1);
    qk_node_set_ints(g, node, "axes", 1, I64(-1));
    gc_expect(g, node, &o, "ReduceMean axes attribute");
    qk_graph_destroy(g);
    grad1("ReduceL1", 2, I64(3, 5), 0, NULL, NULL, NULL, &o);
}

static void test_unary_grad(void)
{
    static const char *ops[] = { "Exp", "Neg", "Erf", "Gelu", "Softplus", "Mish", "Tanh", "Sin", "Softsign",
                                 "Elu", "Selu", "LeakyRelu", "Abs" };
    gc_opts o = gc_defaults();
    o.auto_kink = 1;
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++)
        grad1(ops[k], 2, I64(3, 4), 0, NULL, NULL, NULL, &o);
    grad1("Gelu", 2, I64(3, 4), 0, NULL, NULL, tanh_attr, &o);
    /* positive inputs: Sqrt, Log, Reciprocal, Pow */
    static const char *pos[] = { "Sqrt", "Log", "Reciprocal" };
    for (int k = 0; k < 3; k++) {
        qk_graph *g;
        qk_graph_create(&g);
        int x = gc_add(g, "x", 1, QK_F32, 2, I64(2, 3), NULL, &rng);
        gc_fill(&g->values[x].t, &rng, 0.5f, 2.0f);
        int node = gc_node(g, pos[k], 1, &x, 1);
        gc_expect(g, node, &o, pos[k]);
        qk_graph_destroy(g);
    }
    qk_graph *g;
    qk_graph_create(&g);
    int x = gc_add(g, "x", 1, QK_F32, 2, I64(2, 3), NULL, &rng);
    gc_fill(&g->values[x].t, &rng, 0.5f, 2.0f);
    int e = gc_add(g, "e", 1, QK_F32, 1, I64(3), (float[]){ 2.0f, 0.5f, 3.0f }, NULL);
    int node = gc_node(g, "Pow", 2, (int[]){ x, e }, 1);
    gc_expect(g, node, &o, "Pow");
    qk_graph_destroy(g);
    /* Where: gradient to X where cond, to Y elsewhere (broadcast Y) */
    qk_graph_create(&g);
    int c = gc_add(g, "c", 0, QK_U8, 2, I64(2, 3), (uint8_t[]){ 1, 0, 1, 0, 0, 1 }, NULL);
    x = gc_add(g, "x", 1, QK_F32, 2, I64(2, 3), NULL, &rng);
    int y = gc_add(g, "y", 1, QK_F32, 1, I64(3), NULL, &rng);
    node = gc_node(g, "Where", 3, (int[]){ c, x, y }, 1);
    gc_expect(g, node, &o, "Where");
    qk_graph_destroy(g);
}

static void test_norm_resize_grad(void)
{
    gc_opts o = gc_defaults();
    qk_graph *g;
    qk_graph_create(&g);
    int x = gc_add(g, "x", 1, QK_F32, 3, I64(2, 3, 4), NULL, &rng);
    int s = gc_add(g, "s", 1, QK_F32, 2, I64(3, 4), NULL, &rng);
    int b = gc_add(g, "b", 1, QK_F32, 2, I64(3, 4), NULL, &rng);
    int node = gc_node(g, "LayerNormalization", 3, (int[]){ x, s, b }, 1);
    qk_node_set_int(g, node, "axis", 1);
    gc_expect(g, node, &o, "LayerNormalization");
    qk_graph_destroy(g);

    qk_graph_create(&g);
    x = gc_add(g, "x", 1, QK_F32, 4, I64(2, 3, 2, 3), NULL, &rng);
    s = gc_add(g, "s", 1, QK_F32, 1, I64(3), NULL, &rng);
    b = gc_add(g, "b", 1, QK_F32, 1, I64(3), NULL, &rng);
    node = gc_node(g, "InstanceNormalization", 3, (int[]){ x, s, b }, 1);
    gc_expect(g, node, &o, "InstanceNormalization");
    qk_graph_destroy(g);

    for (int k = 0; k < 3; k++) {
        qk_graph_create(&g);
        x = gc_add(g, "x", 1, QK_F32, 4, I64(1, 2, 3, 3), NULL, &rng);
        int sc = gc_add(g, "scales", 0, QK_F32, 1, I64(4), (float[]){ 1, 1, 2, k == 2 ? 0.7f : 1.5f }, NULL);
        node = gc_node(g, "Resize", 3, (int[]){ x, -1, sc }, 1);
        if (k == 1)
            linear_attr(g, node);
        if (k == 2)
            align_attr(g, node);
        gc_expect(g, node, &o, k == 0 ? "Resize nearest" : k == 1 ? "Resize linear" : "Resize align_corners");
        qk_graph_destroy(g);
    }

    /* ConvTranspose with groups, stride, pads and bias */
    qk_graph_create(&g);
    x = gc_add(g, "x", 1, QK_F32, 4, I64(1, 4, 3, 3), NULL, &rng);
    int w = gc_add(g, "w", 1, QK_F32, 4, I64(4, 3, 3, 2), NULL, &rng);
    b = gc_add(g, "b", 1, QK_F32, 1, I64(6), NULL, &rng);
    node = gc_node(g, "ConvTranspose", 3, (int[]){ x, w, b }, 1);
    qk_node_set_int(g, node, "group", 2);
    qk_node_set_ints(g, node, "strides", 2, I64(2, 1));
    qk_node_set_ints(g, node, "pads", 4, I64(1, 0, 0, 1));
    gc_expect(g, node, &o, "ConvTranspose");
    qk_graph_destroy(g);
    (void)axis1_attr;
}

/* Shape -> Slice -> Concat -> Reshape with a dynamic batch: the target is
 * computed at plan time and follows qk_graph_set_batch. */
static void test_known_chain(void)
{
    qk_graph *g;
    qk_graph_create(&g);
    int x = qk_graph_add_input(g, "x", QK_F32, 3, I64(-1, 2, 3));
    int st = gc_add(g, "st", 0, QK_I64, 1, I64(1), I64(0), NULL);
    int en = gc_add(g, "en", 0, QK_I64, 1, I64(1), I64(1), NULL);
    int m1 = gc_add(g, "m1", 0, QK_I64, 1, I64(1), I64(-1), NULL);
    int sh = qk_graph_add_value(g, "sh", QK_VALUE_ACT), n0 = qk_graph_add_value(g, "n0", QK_VALUE_ACT);
    int tgt = qk_graph_add_value(g, "tgt", QK_VALUE_ACT), y = qk_graph_add_value(g, "y", QK_VALUE_ACT);
    qk_graph_add_node(g, "Shape", "shape", 1, &x, 1, &sh);
    qk_graph_add_node(g, "Slice", "slice", 3, (int[]){ sh, st, en }, 1, &n0);
    int cat = qk_graph_add_node(g, "Concat", "cat", 2, (int[]){ n0, m1 }, 1, &tgt);
    qk_node_set_int(g, cat, "axis", 0);
    qk_graph_add_node(g, "Reshape", "reshape", 2, (int[]){ x, tgt }, 1, &y);
    qk_graph_add_output(g, y);
    QT_OK(qk_ops_bind(g));
    QT_OK(qk_graph_plan(g, 4, 0, NULL));
    QT_CHECK(g->values[y].t.ndim == 2 && g->values[y].t.dims[0] == 4 && g->values[y].t.dims[1] == 6,
             "Reshape target folded at plan: [4, 6]");
    QT_OK(qk_graph_set_batch(g, 3));
    QT_CHECK(g->values[y].t.dims[0] == 3 && g->values[y].t.dims[1] == 6, "and follows the batch: [3, 6]");
    qk_graph_destroy(g);
}

/* Small PyTorch exports (tools/make_export_fixtures.py): Pad (pads computed
 * by a ConstantOfShape/Concat/Reshape/Slice/Transpose/Cast chain), Resize,
 * ConvTranspose, LayerNorm (decomposed at opset 14, LayerNormalization at
 * 17), Gelu through Erf, ReduceMean, Sqrt/Abs. Outputs within 1e-4 of
 * PyTorch's (relative to the largest logit), at batch 1 and batch 3 (the
 * fixed-batch opset-14 export is re-planned). */
static void test_torch_exports(void)
{
    static const char *models[] = { "tiny_op14", "tiny_op17", "tiny_op11" };
    static const char *batches[] = { "b1", "b3" };
    for (int m = 0; m < 3; m++) {
        char path[256];
        snprintf(path, sizeof path, "tests/data/export/%s.onnx", models[m]);
        qk_graph *g = NULL;
        QT_OK(qk_onnx_load(path, &g));
        if (!g)
            continue;
        for (int b = 0; b < 2; b++) {
            qk_tensor x, want;
            snprintf(path, sizeof path, "tests/data/export/input_%s.pb", batches[b]);
            QT_OK(qk_onnx_load_tensor(path, &x, NULL));
            snprintf(path, sizeof path, "tests/data/export/output_%s.pb", batches[b]);
            QT_OK(qk_onnx_load_tensor(path, &want, NULL));
            int n_out = 0;
            qk_tensor *out = NULL;
            qk_status st = qk_onnx_run(g, 1, &x, pool1, &n_out, &out);
            QT_CHECK(st == QK_OK && n_out == 1, "%s %s: run: %s", models[m], batches[b], qk_last_error());
            if (st == QK_OK && n_out == 1) {
                double err = 0, mx = 0;
                int same = qk_shape_equal(&out[0], &want) && out[0].ndim == want.ndim;
                for (int64_t i = 0; same && i < qk_tensor_numel(&want); i++) {
                    double d = fabs((double)qk_f32(&out[0])[i] - qk_f32(&want)[i]);
                    err = d > err ? d : err;
                    mx = fabs(qk_f32(&want)[i]) > mx ? fabs(qk_f32(&want)[i]) : mx;
                }
                QT_CHECK(same && err <= 1e-4 * mx, "%s %s: max error %.3g (largest logit %.3g)", models[m],
                         batches[b], err, mx);
            }
            qk_onnx_free_tensors(out, n_out);
            qk_tensor_free(&x);
            qk_tensor_free(&want);
        }
        qk_graph_destroy(g);
    }
}

int main(void)
{
    qk_rng_seed(&rng, 12);
    test_layout_grad();
    test_reduce_grad();
    test_unary_grad();
    test_norm_resize_grad();
    test_known_chain();
    test_torch_exports();
    return qt_finish("test_ops_export");
}
