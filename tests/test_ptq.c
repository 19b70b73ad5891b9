/* Post-training quantization without data files (ptq.h, backend.h):
 *   1. the backend table: names, unknown names, widths, schemes;
 *   2. prepare's placement on zoo graphs per profile (TensorRT residual add,
 *      BN folding, first/last layer, every-op-output fusion, unsigned after
 *      ReLU, exclusions, already-quantized models), and every profile on
 *      every zoo model through calibration and QDQ conversion;
 *   6. bad input: constant calibration images with every observer, option
 *      errors.
 * Calibration on real data, the QDQ file, hooks and bias correction are in
 * test_ptq_calib.c; the command line in test_ptq_cli.c. */
#include "ptq_fx.h"

/* ------------------------------------------------------------ 1. backends */

static void test_backends(void)
{
    static const char *const names[] = { "academic", "tensorrt", "fbgemm", "snpe", "tvm", "acl", "openvino",
                                         "tengine", "onnx-qlinear", "ppl-w8a16", "vitis", "nnie" };
    QT_CHECK(qk_backend_count() == 12, "backend count %d", qk_backend_count());
    for (int i = 0; i < 12; i++) {
        const qk_backend *b = qk_backend_find(names[i]);
        QT_CHECK(b && strcmp(b->name, names[i]) == 0, "find %s", names[i]);
        QT_CHECK(qk_backend_get(i) && strcmp(qk_backend_get(i)->name, names[i]) == 0, "backend %d is %s", i,
                 names[i]);
        QT_CHECK(b && b->summary && b->w_observer && b->a_observer, "%s: summary and observers", names[i]);
        /* the defaults are always valid */
        qk_qparams w, a;
        QT_CHECK(b && qk_backend_qparams(b, 0, 0, &w, &a) == QK_OK, "%s default widths: %s", names[i],
                 qk_last_error());
    }
    QT_CHECK(qk_backend_get(12) == NULL && qk_backend_get(-1) == NULL, "get out of range");
    QT_CHECK(qk_backend_find("nope") == NULL, "unknown backend");
    const char *e = qk_last_error();
    QT_CHECK(has_str(e, "nope"), "message names the bad name: %s", e);
    for (int i = 0; i < 12; i++)
        QT_CHECK(has_str(e, names[i]), "message lists %s: %s", names[i], e);
    QT_CHECK(qk_backend_find(NULL) == NULL, "NULL name");

    qk_qparams w, a;
    const qk_backend *trt = qk_backend_find("tensorrt");
    QT_CHECK(qk_backend_qparams(trt, 4, 8, &w, &a) == QK_ERR_UNSUPPORTED && has_str(qk_last_error(), "tensorrt") &&
             has_str(qk_last_error(), "4"), "tensorrt W4: %s", qk_last_error());
    QT_CHECK(qk_backend_qparams(trt, 8, 16, &w, &a) == QK_ERR_UNSUPPORTED && has_str(qk_last_error(), "tensorrt"),
             "tensorrt A16: %s", qk_last_error());
    QT_OK(qk_backend_qparams(trt, 8, 8, &w, &a));
    QT_CHECK(w.bits == 8 && w.is_signed && w.symmetric && w.narrow && w.per_channel && !w.pot, "tensorrt weights");
    QT_CHECK(a.bits == 8 && a.is_signed && a.symmetric && !a.per_channel && a.round == QK_ROUND_HALF_EVEN,
             "tensorrt activations per tensor, signed symmetric");
    QT_OK(qk_backend_qparams(qk_backend_find("snpe"), 0, 0, &w, &a));
    QT_CHECK(!w.is_signed && !w.symmetric && !w.per_channel && !a.is_signed && !a.symmetric && !a.per_channel,
             "snpe uint8 asymmetric per tensor");
    QT_OK(qk_backend_qparams(qk_backend_find("snpe"), 8, 16, NULL, &a));
    QT_CHECK(a.bits == 16, "snpe A16");
    QT_OK(qk_backend_qparams(qk_backend_find("fbgemm"), 0, 0, &w, &a));
    QT_CHECK(w.per_channel && w.symmetric && !w.narrow && !a.is_signed && !a.symmetric,
             "fbgemm: full-range per-channel W, uint8 affine A");
    QT_CHECK(qk_backend_qparams(qk_backend_find("fbgemm"), 8, 6, &w, &a) == QK_ERR_UNSUPPORTED, "fbgemm A6");
    for (int k = 0; k < 2; k++) {
        const char *nm = k ? "vitis" : "tvm";
        QT_OK(qk_backend_qparams(qk_backend_find(nm), 0, 0, &w, &a));
        QT_CHECK(w.pot && a.pot && w.symmetric && a.symmetric && !w.per_channel, "%s power of two", nm);
    }
    QT_CHECK(qk_backend_find("vitis")->act.round == QK_ROUND_HALF_UP && qk_backend_find("vitis")->quant_bias,
             "vitis: activations half up, bias quantized");
    QT_OK(qk_backend_qparams(qk_backend_find("ppl-w8a16"), 0, 0, &w, &a));
    QT_CHECK(w.bits == 8 && a.bits == 16, "ppl W8A16 by default");
    QT_CHECK(qk_backend_qparams(qk_backend_find("ppl-w8a16"), 8, 8, &w, &a) == QK_ERR_UNSUPPORTED, "ppl A8");
    QT_OK(qk_backend_qparams(qk_backend_find("nnie"), 0, 0, &w, &a));
    QT_CHECK(w.scheme == QK_QSCHEME_NNIE_LOG && a.scheme == QK_QSCHEME_NNIE_LOG, "nnie log code");
    const qk_backend *ac = qk_backend_find("academic");
    QT_OK(qk_backend_qparams(ac, 4, 4, &w, &a));
    QT_CHECK(w.bits == 4 && a.bits == 4 && w.per_channel && ac->first_last_8bit && !ac->fold_bn, "academic W4A4");
    QT_OK(qk_backend_qparams(ac, 16, 16, &w, &a));
    QT_CHECK(qk_backend_qparams(ac, 12, 8, &w, &a) == QK_ERR_UNSUPPORTED, "academic 12-bit weights");
    QT_CHECK(qk_backend_qparams(ac, 1, 8, &w, &a) == QK_ERR_UNSUPPORTED, "academic 1-bit weights");
    QT_CHECK(qk_backend_qparams(NULL, 8, 8, &w, &a) == QK_ERR_ARG, "NULL backend");
    QT_CHECK(strcmp(qk_arith_name(qk_backend_find("snpe")->arith), "gemmlowp") == 0 &&
             strcmp(qk_arith_name(qk_backend_find("vitis")->arith), "pot") == 0, "arith names");
}

/* ------------------------------------------------------------ 2. prepare */

static void test_prepare_tensorrt(void)
{
    qk_ptq_config c = cfg_for("tensorrt");
    qk_qmodel *m = prepare_zoo("resnet8", &c);
    if (!m)
        return;
    qk_graph *g = qk_qmodel_graph(m);
    QT_CHECK(count_op(g, "BatchNormalization") == 0, "tensorrt folds every BN (%d left)",
             count_op(g, "BatchNormalization"));
    int n_layers = count_op(g, "Conv") + count_op(g, "Gemm");
    QT_CHECK(n_layers == 10, "resnet8 has 9 Conv + 1 Gemm (%d)", n_layers);
    QT_CHECK(count_sites(m, 1) == n_layers, "one weight site per layer: %d", count_sites(m, 1));
    /* 8 distinct conv/fc inputs + the two shortcut-conv outputs of the downsampling residual adds */
    QT_CHECK(count_sites(m, 0) == 10, "tensorrt resnet8: 10 activation sites (%d)", count_sites(m, 0));
    QT_CHECK(count_op(g, "FakeQuant") == count_sites(m, 0) + count_sites(m, 1), "one FakeQuant per site");
    /* every layer reads a per-channel quantized weight (axis 0) */
    for (int k = 0; k < g->n_nodes; k++) {
        const qk_node *n = &g->nodes[k];
        if (strcmp(n->op_type, "Conv") && strcmp(n->op_type, "Gemm"))
            continue;
        const char *wp = input_producer(g, n->name, 1), *xp = input_producer(g, n->name, 0);
        QT_CHECK(wp && strcmp(wp, "FakeQuant") == 0, "%s weight read through FakeQuant", n->name);
        QT_CHECK(xp && strcmp(xp, "FakeQuant") == 0, "%s input read through FakeQuant (%s)", n->name, xp);
    }
    const qk_qsite *ws = find_site(m, "layer2.0.conv1.weight", 1), *fw = find_site(m, "fc.weight", 1);
    QT_CHECK(ws && ws->qp.per_channel && ws->qp.axis == 0 && ws->qp.narrow && ws->qp.bits == 8 && ws->layer >= 0,
             "conv weight per channel, narrow int8");
    QT_CHECK(fw && fw->qp.per_channel && fw->qp.axis == 0, "Gemm transB=1 weight per channel on axis 0");
    const qk_qsite *in = find_site(m, "input", 0);
    QT_CHECK(in && !in->qp.per_channel && in->qp.is_signed && strcmp(in->observer, "percentile") == 0,
             "network input: per-tensor signed, percentile observer");
    /* residual adds: the conv-fed input fuses into the conv epilogue (not
     * quantized), the other input is quantized (ptq.h, QK_ADD_TRT_FUSE) */
    static const char *const adds[3] = { "layer1.0.add", "layer2.0.add", "layer3.0.add" };
    for (int i = 0; i < 3; i++) {
        const char *p0 = input_producer(g, adds[i], 0), *p1 = input_producer(g, adds[i], 1);
        QT_CHECK(p0 && p1, "%s present", adds[i]);
        if (!p0 || !p1)
            continue;
        int q0 = strcmp(p0, "FakeQuant") == 0, q1 = strcmp(p1, "FakeQuant") == 0;
        QT_CHECK(strcmp(p0, "Conv") == 0, "%s input 0 is the main branch conv, fused (got %s)", adds[i], p0);
        QT_CHECK(q0 + q1 == 1, "%s: exactly one input quantized, the other fused into its conv (inputs from %s, %s)",
                 adds[i], p0, p1);
    }
    /* placement is deterministic and the plan prints every site */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    qk_ptq_print_plan(m, f);
    fclose(f);
    QT_CHECK(has_str(buf, "backend tensorrt") && has_str(buf, "layer3.0.conv2.weight") && has_str(buf, "per channel"),
             "plan text: %s", buf);
    free(buf);
    qk_qmodel_destroy(m);
}

static void test_prepare_academic(void)
{
    qk_ptq_config c = cfg_for("academic");
    c.wbits = 4;
    c.abits = 4;
    qk_qmodel *m = prepare_zoo("resnet8", &c);
    if (!m)
        return;
    qk_graph *g = qk_qmodel_graph(m);
    QT_CHECK(count_op(g, "BatchNormalization") == 9, "academic keeps the 9 BN (%d)", count_op(g, "BatchNormalization"));
    qk_ptq_result res;
    qk_ptq_result_get(m, &res);
    QT_CHECK(res.wbits == 4 && res.abits == 4 && res.first_last_bits == 8 && res.n_folded == 0 && !res.reduce_range,
             "academic result: W%d A%d, first/last %d, %d folded", res.wbits, res.abits, res.first_last_bits,
             res.n_folded);
    QT_CHECK(count_sites(m, 1) == 10 && count_sites(m, 0) == 8, "academic resnet8: 10 W + 8 A sites (%d, %d)",
             count_sites(m, 1), count_sites(m, 0));
    const qk_qsite *s;
    int n = qk_qmodel_sites(m, &s);
    for (int i = 0; i < n; i++) {
        int edge = !strcmp(s[i].value, "conv1.weight") || !strcmp(s[i].value, "fc.weight") ||
                   !strcmp(s[i].value, "input") || !strcmp(s[i].value, "flatten");
        QT_CHECK(s[i].qp.bits == (edge ? 8 : 4), "W4A4: %s at %d bits (first/last layer 8)", s[i].value, s[i].qp.bits);
    }
    /* first_last_bits = -1: no override */
    qk_qmodel_destroy(m);
    c.first_last_bits = -1;
    m = prepare_zoo("resnet8", &c);
    if (m) {
        const qk_qsite *w = find_site(m, "conv1.weight", 1), *x = find_site(m, "input", 0);
        QT_CHECK(w && w->qp.bits == 4 && x && x->qp.bits == 4, "first_last_bits -1: first layer at 4 bits");
        qk_qmodel_destroy(m);
    }
    c.first_last_bits = 6;
    m = prepare_zoo("resnet8", &c);
    if (m) {
        const qk_qsite *w = find_site(m, "fc.weight", 1);
        QT_CHECK(w && w->qp.bits == 6, "first_last_bits 6");
        qk_qmodel_destroy(m);
    }
    c.first_last_bits = 9;
    qk_graph *g2;
    QT_OK(qk_zoo_build("resnet8", 1, &g2));
    QT_CHECK(qk_ptq_prepare(g2, &c, &m) == QK_ERR_ARG && m == NULL, "first_last_bits 9 rejected");
    /* per-tensor weights (academic only) */
    c = cfg_for("academic");
    c.per_tensor_weights = 1;
    m = prepare_zoo("resnet8", &c);
    if (m) {
        const qk_qsite *w = find_site(m, "layer1.0.conv1.weight", 1);
        QT_CHECK(w && !w->qp.per_channel, "--per-tensor");
        qk_qmodel_destroy(m);
    }
}

static void test_prepare_fbgemm(void)
{
    qk_ptq_config c = cfg_for("fbgemm");
    qk_qmodel *m = prepare_zoo("resnet8", &c);
    if (!m)
        return;
    qk_graph *g = qk_qmodel_graph(m);
    QT_CHECK(count_op(g, "BatchNormalization") == 0, "fbgemm folds BN");
    /* every op output, except where a ReLU follows (fused) */
    for (int k = 0; k < g->n_nodes; k++) {
        const qk_node *n = &g->nodes[k];
        const char *v = g->values[n->out[0]].name;
        if (!strcmp(n->op_type, "Add"))
            QT_CHECK(find_site(m, v, 0) == NULL, "Add '%s' output feeds a ReLU: fused, no quantizer", n->name);
        if (!strcmp(n->op_type, "Relu") || !strcmp(n->op_type, "GlobalAveragePool"))
            QT_CHECK(find_site(m, v, 0) != NULL, "%s '%s' output quantized", n->op_type, n->name);
        if (!strcmp(n->op_type, "Conv") || !strcmp(n->op_type, "Add")) {
            const char *p = input_producer(g, n->name, 0);
            QT_CHECK(p && !strcmp(p, "FakeQuant"), "%s '%s' reads a quantized input 0 (from %s)", n->op_type, n->name, p);
        }
    }
    QT_CHECK(find_site(m, "input", 0) != NULL, "network input quantized");
    QT_CHECK(find_site(m, "logits", 0) != NULL, "graph output quantized");
    int out = g->outputs[0], pr = g->values[out].producer;
    QT_CHECK(pr >= 0 && !strcmp(g->nodes[pr].op_type, "FakeQuant"), "graph output reads the quantized logits");
    QT_CHECK(find_site(m, "layer2.0.shortcut_conv", 0) || find_site(m, "layer2.0.shortcut_bn", 0),
             "shortcut conv output (an Add input) quantized");
    /* 1 input + relu + 3 (layer1: relu1, conv2, relu2) + 4 + 4 (relu1, conv2, shortcut, relu2) + pool + logits */
    QT_CHECK(count_sites(m, 0) == 15 && count_sites(m, 1) == 10, "fbgemm resnet8: 15 A + 10 W sites (%d, %d)",
             count_sites(m, 0), count_sites(m, 1));
    const qk_qsite *in = find_site(m, "input", 0);
    QT_CHECK(in && !in->qp.is_signed && strcmp(in->observer, "percentile") == 0, "fbgemm acts uint8, percentile observer");
    qk_qmodel_destroy(m);
    /* --reduce-range: 7-bit activations; refused elsewhere */
    c.reduce_range = 1;
    QT_OK(qk_ptq_config_check(&c));
    m = prepare_zoo("resnet8", &c);
    if (m) {
        const qk_qsite *r = find_site(m, "relu", 0);
        QT_CHECK(r && r->qp.bits == 7, "reduce range: 7-bit activations");
        qk_ptq_result res;
        qk_ptq_result_get(m, &res);
        QT_CHECK(!strcmp(res.backend, "fbgemm") && res.wbits == 8 && res.abits == 7 && res.reduce_range &&
                 res.per_channel && res.first_last_bits == -1 && !res.bias_correct && res.bit_alloc == 0 &&
                 !strcmp(res.bit_alloc_name, "none") && !res.calibrated,
                 "result: W%d A%d rr %d pc %d fl %d ba %s", res.wbits, res.abits, res.reduce_range,
                 res.per_channel, res.first_last_bits, res.bit_alloc_name);
        QT_CHECK(!strcmp(res.w_observer, "minmax") && !strcmp(res.a_observer, "percentile"),
                 "result: the profile's observers (%s/%s)", res.w_observer, res.a_observer);
        QT_CHECK(res.n_quantizers == 25 && res.n_weight_quantizers == 10 && res.n_act_quantizers == 15 &&
                 res.n_folded > 0 && res.seconds > 0,
                 "result: %d quantizers (%d W, %d A), %d BN folded, %g s", res.n_quantizers,
                 res.n_weight_quantizers, res.n_act_quantizers, res.n_folded, res.seconds);
        qk_qmodel_destroy(m);
    }
    qk_ptq_config t = cfg_for("tensorrt");
    t.reduce_range = 1;
    QT_CHECK(qk_ptq_config_check(&t) == QK_ERR_UNSUPPORTED && has_str(qk_last_error(), "7-bit"),
             "config check: tensorrt has no 7-bit activations: %s", qk_last_error());
    qk_graph *g2;
    QT_OK(qk_zoo_build("resnet8", 1, &g2));
    QT_CHECK(qk_ptq_prepare(g2, &t, &m) == QK_ERR_UNSUPPORTED && has_str(qk_last_error(), "tensorrt"),
             "reduce range on tensorrt: %s", qk_last_error());
}

static void test_prepare_openvino(void)
{
    qk_ptq_config c = cfg_for("openvino");
    qk_qmodel *m = prepare_zoo("resnet8", &c);
    if (!m)
        return;
    qk_graph *g = qk_qmodel_graph(m);
    const qk_qsite *s;
    int n = qk_qmodel_sites(m, &s), relu_sites = 0;
    for (int i = 0; i < n; i++) {
        if (s[i].is_weight)
            continue;
        int v = qk_graph_find_value(g, s[i].value), p = v >= 0 ? g->values[v].producer : -1;
        int after_relu = p >= 0 && !strcmp(g->nodes[p].op_type, "Relu");
        relu_sites += after_relu;
        if (after_relu)
            QT_CHECK(!s[i].qp.is_signed && !s[i].qp.narrow, "openvino: '%s' after ReLU is unsigned", s[i].value);
        else if (!strcmp(s[i].value, "input") || (p >= 0 && !strcmp(g->nodes[p].op_type, "Conv")))
            QT_CHECK(s[i].qp.is_signed && s[i].qp.symmetric, "openvino: '%s' (may be negative) is signed", s[i].value);
    }
    QT_CHECK(relu_sites >= 6, "openvino: %d sites after ReLU", relu_sites);
    /* 8 conv/fc inputs + 5 Add inputs from convs + the pool input */
    QT_CHECK(count_sites(m, 0) == 14 && count_sites(m, 1) == 10, "openvino resnet8: 14 A + 10 W sites (%d, %d)",
             count_sites(m, 0), count_sites(m, 1));
    /* flatten after GlobalAveragePool after ReLU is non-negative too */
    const qk_qsite *fl = find_site(m, "flatten", 0);
    QT_CHECK(fl && !fl->qp.is_signed, "non-negativity passes through pool/flatten");
    qk_qmodel_destroy(m);
}

static void test_prepare_exclude(void)
{
    qk_ptq_config c = cfg_for("tensorrt");
    const char *ex[] = { "layer2.0.conv1" };
    c.exclude = ex;
    c.n_exclude = 1;
    qk_qmodel *m = prepare_zoo("resnet8", &c);
    if (m) {
        qk_graph *g = qk_qmodel_graph(m);
        QT_CHECK(find_site(m, "layer2.0.conv1.weight", 1) == NULL && count_sites(m, 1) == 9,
                 "excluded conv: weight not quantized");
        const char *wp = input_producer(g, "layer2.0.conv1", 1);
        QT_CHECK(wp && !strcmp(wp, ""), "excluded conv reads its float initializer (%s)", wp);
        QT_CHECK(find_site(m, "layer2.0.conv2.weight", 1) != NULL, "its neighbour still quantized");
        qk_qmodel_destroy(m);
    }
    const char *bad[] = { "no.such.node" };
    c.exclude = bad;
    qk_graph *g;
    QT_OK(qk_zoo_build("resnet8", 1, &g));
    QT_CHECK(qk_ptq_prepare(g, &c, &m) == QK_ERR_NOTFOUND && m == NULL && has_str(qk_last_error(), "no.such.node"),
             "exclude of a missing node: %s", qk_last_error());
    c.exclude = NULL;
    c.n_exclude = 0;
    c.backend = NULL;
    QT_OK(qk_zoo_build("resnet8", 1, &g));
    QT_CHECK(qk_ptq_prepare(g, &c, &m) == QK_ERR_ARG && m == NULL, "no backend");
}

/* A model quantized and saved by qkit is refused by prepare, with QDQ nodes
 * (W8A8) and without any (W16A16: every site simulated, only the metadata
 * says it is quantized). */
static void test_prepare_already_quantized(void)
{
    qk_dataset d = synth_ds(32, 11, 0);
    for (int k = 0; k < 2; k++) {
        qk_ptq_config c = cfg_for(k ? "academic" : "tensorrt");
        if (k)
            c.wbits = c.abits = 16;
        qk_qmodel *m = prepare_zoo("resnet8", &c);
        if (!m)
            continue;
        char path[400];
        snprintf(path, sizeof path, "%s/already_%d.onnx", tmpdir, k);
        QT_OK(qk_ptq_calibrate(m, &d, qk_norm_default(), 32, pool, NULL, NULL));
        QT_CHECK(qk_ptq_calibrate(m, &d, qk_norm_default(), 32, pool, NULL, NULL) == QK_ERR_STATE,
                 "calibrating twice");
        QT_OK(qk_ptq_save_qdq(m, path));
        qk_qmodel_destroy(m);
        qk_graph *g;
        QT_OK(qk_onnx_load(path, &g));
        if (!g)
            continue;
        QT_CHECK(!strcmp(qk_graph_get_meta(g, "qkit.quantized") ? qk_graph_get_meta(g, "qkit.quantized") : "", "1"),
                 "qkit.quantized metadata");
        m = NULL;
        qk_status st = qk_ptq_prepare(g, &c, &m);
        QT_CHECK(st == QK_ERR_UNSUPPORTED && m == NULL && has_str(qk_last_error(), "already quantized"),
                 "%s: re-preparing a quantized model is refused (%s: %s)", k ? "W16A16, no QDQ nodes" : "W8A8 QDQ",
                 qk_status_str(st), qk_last_error());
        qk_qmodel_destroy(m);
    }
    qk_dataset_free(&d);
}

/* Every profile prepares, calibrates and converts lenet, resnet8 and
 * mobilenetv2s (structure only: random weights, random images). */
static void test_all_profiles(void)
{
    qk_dataset d = synth_ds(4, 5, 0); /* 4 images: fbgemm's mse observer costs ~0.25 s per image on mobilenetv2s */
    const char *const *arch = qk_zoo_names();
    for (int a = 0; arch[a]; a++)
        for (int i = 0; i < qk_backend_count(); i++) {
            qk_ptq_config c;
            qk_ptq_config_default(&c);
            c.backend = qk_backend_get(i);
            qk_qmodel *m = prepare_zoo(arch[a], &c);
            if (!m)
                continue;
            qk_status st = qk_ptq_calibrate(m, &d, qk_norm_default(), 4, pool, NULL, NULL);
            QT_CHECK(st == QK_OK, "%s/%s calibrate: %s", arch[a], c.backend->name, qk_last_error());
            float *y = st == QK_OK ? forward_n(qk_qmodel_graph(m), &d, 4, qk_norm_default()) : NULL;
            int finite = y != NULL;
            for (int j = 0; y && j < 40; j++)
                finite &= isfinite(y[j]);
            QT_CHECK(finite, "%s/%s: finite logits", arch[a], c.backend->name);
            free(y);
            if (st == QK_OK)
                QT_CHECK(qk_ptq_convert_qdq(m) == QK_OK && qk_ptq_convert_qdq(m) == QK_OK &&
                             count_op(qk_qmodel_graph(m), "FakeQuant") == 0,
                         "%s/%s QDQ conversion (idempotent): %s", arch[a], c.backend->name, qk_last_error());
            qk_qmodel_destroy(m);
        }
    qk_dataset_free(&d);
}

/* ------------------------------------------------------------ 6. bad input */

/* Calibration on constant images (all pixels 0 with norm mean 0: every
 * activation is exactly 0 in resnet8 at init; and all 255) with every
 * observer: scales > 0 and finite, outputs finite. */
static void test_constant_inputs(void)
{
    const char *const *obs = qk_observer_names();
    for (int z = 0; z < 2; z++) {
        qk_dataset d = synth_ds(8, 0, z ? 255 : 0);
        qk_norm norm = { .mean = 0.0f, .std = 1.0f };
        for (int i = 0; obs[i]; i++) {
            int pot = !strncmp(obs[i], "pot-", 4);
            qk_ptq_config c = cfg_for(pot ? "tvm" : "tensorrt");
            c.a_observer = obs[i];
            qk_qmodel *m = prepare_zoo("resnet8", &c);
            if (!m)
                continue;
            qk_status st = qk_ptq_calibrate(m, &d, norm, 8, pool, NULL, NULL);
            QT_CHECK(st == QK_OK, "%s on constant %d images: %s", obs[i], z ? 255 : 0, qk_last_error());
            float *y = st == QK_OK ? forward_n(qk_qmodel_graph(m), &d, 8, norm) : NULL;
            int ok = y != NULL;
            for (int j = 0; y && j < 80; j++)
                ok &= isfinite(y[j]);
            QT_CHECK(ok, "%s: finite logits on constant input", obs[i]);
            free(y);
            if (st == QK_OK && qk_ptq_convert_qdq(m) == QK_OK) {
                qk_graph *g = qk_qmodel_graph(m);
                int bad = 0, n = 0;
                for (int v = 0; v < g->n_values; v++) {
                    const qk_value *x = &g->values[v];
                    size_t l = strlen(x->name);
                    if (x->kind != QK_VALUE_CONST || l < 6 || strcmp(x->name + l - 6, "_scale") || x->t.dtype != QK_F32)
                        continue;
                    for (int64_t j = 0; j < qk_tensor_numel(&x->t); j++, n++)
                        bad += !(qk_f32(&x->t)[j] > 0 && isfinite(qk_f32(&x->t)[j]));
                }
                QT_CHECK(n > 0 && bad == 0, "%s: %d of %d scales zero or not finite", obs[i], bad, n);
            }
            qk_qmodel_destroy(m);
        }
        qk_dataset_free(&d);
    }
}

static void test_bad_config(void)
{
    qk_graph *g;
    qk_qmodel *m = NULL;
    qk_ptq_config c = cfg_for("tensorrt");
    c.a_observer = "bogus";
    QT_OK(qk_zoo_build("resnet8", 1, &g));
    qk_status st = qk_ptq_prepare(g, &c, &m);
    QT_CHECK(st != QK_OK && m == NULL && has_str(qk_last_error(), "bogus") && has_str(qk_last_error(), "minmax") &&
             has_str(qk_last_error(), "percentile"), "unknown observer lists the valid ones: %s", qk_last_error());
    c = cfg_for("academic");
    c.w_observer = "nope";
    QT_OK(qk_zoo_build("resnet8", 1, &g));
    QT_CHECK(qk_ptq_prepare(g, &c, &m) != QK_OK && has_str(qk_last_error(), "nope"), "unknown weight observer");
    /* widths */
    c = cfg_for("tensorrt");
    c.wbits = 4;
    QT_OK(qk_zoo_build("resnet8", 1, &g));
    QT_CHECK(qk_ptq_prepare(g, &c, &m) == QK_ERR_UNSUPPORTED && has_str(qk_last_error(), "tensorrt"), "tensorrt W4: %s",
             qk_last_error());
    /* bit allocation: only at 4 bits or fewer, per-channel weights, linear scales */
    c = cfg_for("academic");
    c.bit_alloc = QK_BITALLOC_W;
    QT_OK(qk_zoo_build("resnet8", 1, &g));
    QT_CHECK(qk_ptq_prepare(g, &c, &m) == QK_ERR_UNSUPPORTED && has_str(qk_last_error(), "4 bits"),
             "bit allocation at 8 bits: %s", qk_last_error());
    c.wbits = c.abits = 4;
    c.per_tensor_weights = 1;
    QT_OK(qk_zoo_build("resnet8", 1, &g));
    QT_CHECK(qk_ptq_prepare(g, &c, &m) == QK_ERR_UNSUPPORTED && has_str(qk_last_error(), "per-channel"),
             "per-tensor weight bit allocation: %s", qk_last_error());
    c = cfg_for("tvm");
    c.wbits = c.abits = 4;
    c.bit_alloc = QK_BITALLOC_A;
    QT_OK(qk_zoo_build("resnet8", 1, &g));
    QT_CHECK(qk_ptq_prepare(g, &c, &m) == QK_ERR_UNSUPPORTED, "bit allocation with power-of-two scales: %s",
             qk_last_error());
    c = cfg_for("academic");
    c.wbits = c.abits = 4;
    c.bit_alloc = 4;
    QT_OK(qk_zoo_build("resnet8", 1, &g));
    QT_CHECK(qk_ptq_prepare(g, &c, &m) == QK_ERR_ARG, "bad bit allocation flags");
    c = cfg_for("tensorrt");
    c.per_tensor_weights = 1;
    QT_OK(qk_zoo_build("resnet8", 1, &g));
    QT_CHECK(qk_ptq_prepare(g, &c, &m) == QK_ERR_UNSUPPORTED, "per-tensor on tensorrt");
    /* a model without layers */
    QT_OK(qk_graph_create(&g));
    int x = qk_graph_add_input(g, "x", QK_F32, 2, (int64_t[]){ -1, 4 });
    int y = qk_graph_add_value(g, "y", QK_VALUE_ACT);
    qk_graph_add_node(g, "Relu", "r", 1, &x, 1, &y);
    qk_graph_add_output(g, y);
    c = cfg_for("tensorrt");
    QT_CHECK(qk_ptq_prepare(g, &c, &m) == QK_ERR_UNSUPPORTED && has_str(qk_last_error(), "Conv"),
             "no layer to quantize: %s", qk_last_error());
    /* calibration images of the wrong size */
    qk_dataset d = synth_ds(8, 3, 0);
    d.h = d.w = 14;
    m = prepare_zoo("lenet", &c);
    if (m) {
        QT_CHECK(qk_ptq_calibrate(m, &d, qk_norm_default(), 8, pool, NULL, NULL) == QK_ERR_SHAPE, "14x14 images: %s",
                 qk_last_error());
        qk_qmodel_destroy(m);
    }
    qk_dataset_free(&d);
}

int main(void)
{
    fx_begin("qkit_ptq");
    RUN(test_backends);
    RUN(test_prepare_tensorrt);
    RUN(test_prepare_academic);
    RUN(test_prepare_fbgemm);
    RUN(test_prepare_openvino);
    RUN(test_prepare_exclude);
    RUN(test_prepare_already_quantized);
    RUN(test_all_profiles);
    RUN(test_bad_config);
    RUN(test_constant_inputs);
    fx_end();
    return qt_finish("test_ptq");
}
