/* The default PTQ recipe of a backend profile (qk_backend.cle,
 * qk_backend.bias_correct; qk_ptq_config.cle / .bias_correct: 0 the
 * profile's default, 1 on, -1 off), on zoo models and synthetic images (no
 * installed data needed):
 *   - a profile whose default has cross-layer equalization applies it in
 *     prepare and reports it (qk_ptq_result.cle, cle_pairs, metadata
 *     qkit.cle): the folded weights equal those of prepare with cle = -1 on
 *     a graph equalized by qk_cle_apply first; cle = -1 leaves the float
 *     weights as they are; the same profile with cle = -1 reports none;
 *   - a profile whose default has bias correction runs it in calibration
 *     (biases move; qkit.bias_correct = 1) and not with -1;
 *   - bad values and combinations are QK_ERR_ARG naming the field;
 *   - QAT takes no PTQ pass: the default config says -1, 0 is taken as -1
 *     on such a profile, 1 is QK_ERR_UNSUPPORTED;
 *   - qk_ptq_from_qdq rebuilds a file with the equalization the file had. */
#include "qkit/analyze.h"
#include "qkit/qat.h"
#include "ptq_fx.h"

static const qk_backend *with_default(int cle)
{
    for (int i = 0; i < qk_backend_count(); i++) {
        const qk_backend *b = qk_backend_get(i);
        if (cle ? b->cle : b->bias_correct)
            return b;
    }
    return NULL;
}

/* The float weight (input 1) or bias (input 2) of node `name` (through the
 * FakeQuant a prepared model puts there), NULL if none. */
static const float *param(qk_graph *g, const char *name, int input, int64_t *n)
{
    int k = qk_graph_find_node(g, name);
    if (k < 0 || g->nodes[k].n_in <= input || g->nodes[k].in[input] < 0)
        return NULL;
    int v = g->nodes[k].in[input], p = g->values[v].producer;
    if (p >= 0 && qk_node_is_in(&g->nodes[p], "ai.qkit", "FakeQuant"))
        v = g->nodes[p].in[0];
    const qk_value *x = &g->values[v];
    if (!qk_value_is_initializer_with_data(x) || x->t.dtype != QK_F32)
        return NULL;
    *n = qk_tensor_numel(&x->t);
    return qk_f32(&x->t);
}

/* Max |a - b| over the Conv/Gemm weights (and biases when `bias`) of two
 * graphs with the same nodes; *compared: tensors compared. */
static double param_diff(qk_graph *a, qk_graph *b, int bias, int *compared)
{
    double d = 0;
    *compared = 0;
    for (int i = 0; i < a->n_nodes; i++) {
        const qk_node *n = &a->nodes[i];
        if (!qk_node_is(n, "Conv") && !qk_node_is(n, "Gemm"))
            continue;
        for (int in = 1; in <= 1 + bias; in++) {
            int64_t na, nb;
            const float *pa = param(a, n->name, in, &na), *pb = param(b, n->name, in, &nb);
            if (!pa || !pb || na != nb) {
                if (pa || pb)
                    d = 1e30;
                continue;
            }
            for (int64_t j = 0; j < na; j++)
                d = fmax(d, fabs((double)pa[j] - pb[j]));
            (*compared)++;
        }
    }
    return d;
}

static void test_profile_table(void)
{
    const qk_backend *c = with_default(1), *bc = with_default(0);
    QT_CHECK(c != NULL, "a profile's default recipe has cross-layer equalization");
    QT_CHECK(bc != NULL, "a profile's default recipe has bias correction");
    /* the recipes bench/RESULTS.md measured ("Default PTQ recipes") */
    QT_CHECK(qk_backend_find("vitis")->cle && !qk_backend_find("vitis")->bias_correct, "vitis: cle");
    QT_CHECK(qk_backend_find("nnie")->cle && !qk_backend_find("nnie")->bias_correct, "nnie: cle");
    QT_CHECK(!qk_backend_find("tvm")->cle && qk_backend_find("tvm")->bias_correct, "tvm: bias correction");
    /* the profiles whose recipe measured within 0.15 points without passes keep none */
    static const char *const plain[] = { "academic", "tensorrt", "fbgemm", "snpe", "acl", "openvino", "tengine",
                                         "onnx-qlinear", "ppl-w8a16" };
    for (size_t i = 0; i < sizeof plain / sizeof *plain; i++) {
        const qk_backend *b = qk_backend_find(plain[i]);
        QT_CHECK(b && !b->cle && !b->bias_correct, "%s: no default pass", plain[i]);
    }
}

static void test_cle_default(void)
{
    const qk_backend *b = with_default(1);
    if (!b)
        return;
    qk_ptq_config c;
    qk_ptq_config_default(&c);
    c.backend = b;
    /* the default: equalized in prepare */
    qk_qmodel *m = prepare_zoo("resnet8", &c);
    qk_ptq_result r;
    if (m) {
        qk_ptq_result_get(m, &r);
        QT_CHECK(r.cle == 1 && r.cle_pairs > 0 && r.cle_relu6 == 0, "%s default: cle %d, %d pairs", b->name, r.cle,
                 r.cle_pairs);
        QT_CHECK(has_str(qk_graph_get_meta(qk_qmodel_graph(m), "qkit.cle"), "1"), "metadata qkit.cle");
    }
    /* the same as equalizing first by hand with the pass off */
    qk_graph *g;
    qk_qmodel *m2 = NULL, *m3 = NULL;
    qk_cle_result cr;
    QT_OK(qk_zoo_build("resnet8", 7, &g));
    QT_OK(qk_cle_apply(g, NULL, &cr));
    c.cle = -1;
    QT_OK(qk_ptq_prepare(g, &c, &m2));
    if (m && m2) {
        qk_ptq_result_get(m2, &r);
        QT_CHECK(r.cle == 0 && r.cle_pairs == 0 && !qk_graph_get_meta(qk_qmodel_graph(m2), "qkit.cle"),
                 "cle -1: none reported");
        int n;
        double d = param_diff(qk_qmodel_graph(m), qk_qmodel_graph(m2), 1, &n);
        QT_CHECK(n >= 18 && d == 0, "default = qk_cle_apply + cle -1: %d tensors, max diff %g", n, d);
    }
    /* switched off: the folded float weights differ from the equalized ones */
    m3 = prepare_zoo("resnet8", &c);
    if (m && m3) {
        int n;
        double d = param_diff(qk_qmodel_graph(m), qk_qmodel_graph(m3), 1, &n);
        QT_CHECK(n >= 18 && d > 1e-4, "cle -1 leaves the weights unequalized: %d tensors, max diff %g", n, d);
    }
    qk_qmodel_destroy(m);
    qk_qmodel_destroy(m2);
    qk_qmodel_destroy(m3);
    /* asked on a profile without it */
    qk_ptq_config t = cfg_for("tensorrt");
    t.cle = 1;
    m = prepare_zoo("resnet8", &t);
    if (m) {
        qk_ptq_result_get(m, &r);
        QT_CHECK(r.cle == 1 && r.cle_pairs == cr.n_pairs, "tensorrt cle 1: %d pairs (qk_cle_apply: %d)", r.cle_pairs,
                 cr.n_pairs);
        qk_qmodel_destroy(m);
    }
    t.cle = 0;
    m = prepare_zoo("resnet8", &t);
    if (m) {
        qk_ptq_result_get(m, &r);
        QT_CHECK(r.cle == 0, "tensorrt default: no cle");
        qk_qmodel_destroy(m);
    }
}

static void test_bad_values(void)
{
    const qk_backend *b = with_default(1);
    if (!b)
        return;
    struct {
        int cle, relu6, bc;
        const char *want;
    } bad[] = { { 2, 0, 0, "cle 2" }, { -2, 0, 0, "cle -2" }, { 0, 0, 3, "bias_correct 3" },
                { -1, 1, 0, "cle_relu6" } };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        qk_graph *g;
        qk_qmodel *m = (qk_qmodel *)1;
        QT_OK(qk_zoo_build("lenet", 7, &g));
        qk_ptq_config c;
        qk_ptq_config_default(&c);
        c.backend = b;
        c.cle = bad[i].cle;
        c.cle_relu6 = bad[i].relu6;
        c.bias_correct = bad[i].bc;
        qk_status st = qk_ptq_prepare(g, &c, &m);
        QT_CHECK(st == QK_ERR_ARG && m == NULL && has_str(qk_last_error(), bad[i].want), "%s: %d %s", bad[i].want,
                 (int)st, qk_last_error());
    }
    /* relu6 with the profile's default equalization is fine */
    qk_ptq_config c;
    qk_ptq_config_default(&c);
    c.backend = b;
    c.cle_relu6 = 1;
    qk_qmodel *m = prepare_zoo("mobilenetv2s", &c);
    if (m) {
        qk_ptq_result r;
        qk_ptq_result_get(m, &r);
        QT_CHECK(r.cle == 1 && r.cle_relu6 > 0 &&
                 has_str(qk_graph_get_meta(qk_qmodel_graph(m), "qkit.cle_relu6"), "1"),
                 "cle_relu6 on the default: %d ReLU6 -> ReLU", r.cle_relu6);
        qk_qmodel_destroy(m);
    }
}

/* The biases of every weighted layer after calibration (a copy) and their count. */
static float *biases(qk_qmodel *m, int64_t *n)
{
    qk_graph *g = qk_qmodel_graph(m);
    float *out = NULL;
    *n = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        int64_t k;
        const float *p = (qk_node_is(&g->nodes[i], "Conv") || qk_node_is(&g->nodes[i], "Gemm"))
                             ? param(g, g->nodes[i].name, 2, &k) : NULL;
        if (!p)
            continue;
        float *o = realloc(out, (size_t)(*n + k) * sizeof *o);
        if (!o)
            break;
        out = o;
        memcpy(out + *n, p, (size_t)k * sizeof *o);
        *n += k;
    }
    return out;
}

static void test_bias_correct_default(void)
{
    const qk_backend *b = with_default(0);
    if (!b)
        return;
    qk_dataset ds = synth_ds(64, 3, 0);
    float *bias[2] = { NULL, NULL };
    int64_t nb[2] = { 0, 0 };
    for (int k = 0; k < 2; k++) {
        qk_ptq_config c;
        qk_ptq_config_default(&c);
        c.backend = b;
        c.cle = -1;
        c.bias_correct = k ? -1 : 0;
        qk_qmodel *m = prepare_zoo("lenet", &c);
        if (!m)
            continue;
        QT_OK(qk_ptq_calibrate(m, &ds, qk_norm_default(), 64, pool, NULL, NULL));
        qk_ptq_result r;
        qk_ptq_result_get(m, &r);
        QT_CHECK(r.bias_correct == !k, "%s bias_correct %d: reported %d", b->name, c.bias_correct, r.bias_correct);
        bias[k] = biases(m, &nb[k]);
        QT_OK(qk_ptq_convert_qdq(m));
        const char *meta = qk_graph_get_meta(qk_qmodel_graph(m), "qkit.bias_correct");
        QT_CHECK(meta && strcmp(meta, k ? "0" : "1") == 0, "qkit.bias_correct %s", meta ? meta : "(none)");
        qk_qmodel_destroy(m);
    }
    int moved = 0;
    for (int64_t j = 0; bias[0] && bias[1] && nb[0] == nb[1] && j < nb[0]; j++)
        moved += bias[0][j] != bias[1][j];
    QT_CHECK(nb[0] > 0 && nb[0] == nb[1] && moved > 0, "the default moved %d of %lld biases", moved,
             (long long)nb[0]);
    free(bias[0]);
    free(bias[1]);
    qk_dataset_free(&ds);
}

static void test_qat_no_passes(void)
{
    const qk_backend *b = with_default(1);
    if (!b)
        return;
    qk_qat_config q;
    qk_qat_config_default(&q);
    QT_CHECK(q.ptq.cle == -1 && q.ptq.bias_correct == -1, "QAT default: no PTQ pass (%d, %d)", q.ptq.cle,
             q.ptq.bias_correct);
    q.ptq.backend = b;
    q.algo = b->act.pot ? QK_QAT_TQT : QK_QAT_LSQ;
    q.ptq.cle = 0; /* the profile's default: still none for QAT */
    qk_graph *g;
    qk_qat *qat = NULL;
    QT_OK(qk_zoo_build("lenet", 7, &g));
    qk_status st = qk_qat_prepare(g, &q, &qat);
    QT_CHECK(st == QK_OK, "QAT on %s: %s", b->name, qk_last_error());
    if (qat) {
        qk_ptq_result r;
        qk_ptq_result_get(qk_qat_qmodel(qat), &r);
        QT_CHECK(r.cle == 0 && r.bias_correct == 0, "QAT: cle %d, bias correction %d", r.cle, r.bias_correct);
        qk_qat_destroy(qat);
    }
    q.ptq.cle = 1;
    QT_OK(qk_zoo_build("lenet", 7, &g));
    st = qk_qat_prepare(g, &q, &qat);
    QT_CHECK(st == QK_ERR_UNSUPPORTED && has_str(qk_last_error(), "PTQ pass"), "QAT cle 1: %d %s", (int)st,
             qk_last_error());
    q.ptq.cle = -1;
    q.ptq.bias_correct = 1;
    QT_OK(qk_zoo_build("lenet", 7, &g));
    st = qk_qat_prepare(g, &q, &qat);
    QT_CHECK(st == QK_ERR_UNSUPPORTED && has_str(qk_last_error(), "bias correction"), "QAT bias_correct 1: %d %s",
             (int)st, qk_last_error());
}

/* A file written with the default equalization and one without: from_qdq
 * rebuilds each with the float weights it was quantized from. */
static void test_from_qdq(void)
{
    const qk_backend *b = with_default(1);
    if (!b)
        return;
    qk_dataset ds = synth_ds(32, 5, 0);
    for (int k = 0; k < 2; k++) {
        qk_ptq_config c;
        qk_ptq_config_default(&c);
        c.backend = b;
        c.cle = k ? -1 : 0;
        qk_qmodel *m = prepare_zoo("resnet8", &c), *ref = prepare_zoo("resnet8", &c), *m2 = NULL;
        if (m && ref && qk_ptq_calibrate(m, &ds, qk_norm_default(), 32, pool, NULL, NULL) == QK_OK &&
            qk_ptq_convert_qdq(m) == QK_OK) {
            qk_graph *fg;
            QT_OK(qk_zoo_build("resnet8", 7, &fg));
            qk_status st = qk_ptq_from_qdq(fg, qk_qmodel_graph(m), &m2);
            QT_CHECK(st == QK_OK, "from_qdq: %s", qk_last_error());
        }
        if (m2) {
            qk_ptq_result r;
            qk_ptq_result_get(m2, &r);
            QT_CHECK(r.cle == !k, "from_qdq of a file %s equalization: cle %d", k ? "without" : "with", r.cle);
            int n;
            double d = param_diff(qk_qmodel_graph(ref), qk_qmodel_graph(m2), 0, &n);
            QT_CHECK(n >= 9 && d == 0, "from_qdq: the float weights the file came from (%d tensors, max diff %g)", n,
                     d);
        }
        qk_qmodel_destroy(m);
        qk_qmodel_destroy(ref);
        qk_qmodel_destroy(m2);
    }
    qk_dataset_free(&ds);
}

int main(void)
{
    fx_begin("qkit_ptq_recipe");
    RUN(test_profile_table);
    RUN(test_cle_default);
    RUN(test_bad_values);
    RUN(test_bias_correct_default);
    RUN(test_qat_no_passes);
    RUN(test_from_qdq);
    fx_end();
    return qt_finish("test_ptq_recipe");
}
