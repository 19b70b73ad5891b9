/* Cross-layer equalization and reconstruction (ptq.h):
 *   - docs/ALGORITHMS.md §3.3's CLE check (r1 = [4, 0.25], r2 = [1, 4]);
 *   - CLE leaves the float output of the shipped models (else zoo models)
 *     unchanged within 1e-5 relative, and the ranges equal afterwards;
 *   - §5.1's AdaRound checks (h, V init, regulariser, beta schedule);
 *   - AdaRound (and QDrop) of a single linear layer: output MSE below
 *     nearest rounding's;
 *   - qk_ptq_reconstruct on a small model: codes stay in range, the QDQ
 *     file is written and reloads; bad input (0 iterations, batch larger
 *     than the images, not calibrated);
 *   - BRECQ on a residual block (resnet8's layer1.0): its output error
 *     against the float network below nearest rounding's; the learned
 *     activation steps positive, finite and written as the file's scales. */
#include "ptq_fx.h"

#include <math.h>

static void test_cle_check(void)
{
    double r1[2] = { 4, 0.25 }, r2[2] = { 1, 4 }, s[2];
    qk_cle_scales(2, r1, r2, s);
    QT_NEAR(s[0], 2.0, 1e-12, "s0");
    QT_NEAR(s[1], 0.25, 1e-12, "s1");
    QT_NEAR(r1[0] / s[0], 2.0, 1e-12, "new r1[0]");
    QT_NEAR(r2[0] * s[0], 2.0, 1e-12, "new r2[0]");
    QT_NEAR(r1[1] / s[1], 1.0, 1e-12, "new r1[1]");
    QT_NEAR(r2[1] * s[1], 1.0, 1e-12, "new r2[1]");
}

static qk_graph *load_model(const char *arch, int *shipped)
{
    char path[512];
    const char *dir = getenv("QKIT_MODELS");
    snprintf(path, sizeof path, "%s/%s.onnx", dir && *dir ? dir : "models", arch);
    qk_graph *g = NULL;
    *shipped = access(path, R_OK) == 0 && qk_onnx_load(path, &g) == QK_OK;
    if (*shipped)
        return g;
    return qk_zoo_build(arch, 5, &g) == QK_OK ? g : NULL;
}

static void test_cle_models(void)
{
    static const char *const arch[] = { "lenet", "resnet8", "mobilenetv2s" };
    qk_dataset ds = synth_ds(16, 3, 0);
    for (int i = 0; i < 3; i++) {
        int shipped;
        qk_graph *g = load_model(arch[i], &shipped);
        QT_CHECK(g != NULL, "load %s", arch[i]);
        if (!g)
            continue;
        float *y0 = forward_n(g, &ds, 16, qk_norm_default());
        qk_cle_options o;
        qk_cle_options_default(&o);
        o.bias_absorb = 0;
        qk_cle_result r;
        QT_OK(qk_cle_apply(g, &o, &r));
        QT_CHECK(r.n_pairs >= 1 && r.n_relu6 == 0, "%s: %d pairs", arch[i], r.n_pairs);
        float *y1 = forward_n(g, &ds, 16, qk_norm_default());
        double mx = 0, d = 0;
        for (int k = 0; y0 && y1 && k < 160; k++) {
            mx = fmax(mx, fabs(y0[k]));
            d = fmax(d, fabs(y0[k] - y1[k]));
        }
        QT_CHECK(y0 && y1 && d <= 1e-5 * mx, "%s (%s): CLE moved the logits by %g (max %g)", arch[i],
                 shipped ? "shipped" : "zoo", d, mx);
        /* a second application finds nothing left to equalize */
        QT_OK(qk_cle_apply(g, &o, &r));
        QT_CHECK(r.n_iters == 1, "%s: %d sweeps after equalization", arch[i], r.n_iters);
        free(y0);
        free(y1);
        qk_graph_destroy(g);
    }
    /* ReLU6 -> ReLU on mobilenetv2s: more pairs, the bounds dropped */
    int shipped;
    qk_graph *g = load_model("mobilenetv2s", &shipped);
    if (g) {
        qk_cle_options o;
        qk_cle_options_default(&o);
        o.relu6_to_relu = 1;
        qk_cle_result r;
        QT_OK(qk_cle_apply(g, &o, &r));
        QT_CHECK(r.n_relu6 > 0 && r.n_pairs > r.n_relu6 / 2, "relu6: %d pairs, %d converted", r.n_pairs, r.n_relu6);
        qk_graph_destroy(g);
    }
    qk_cle_options bad;
    qk_cle_options_default(&bad);
    bad.max_iters = 0;
    QT_CHECK(qk_cle_apply(NULL, NULL, NULL) == QK_ERR_ARG, "NULL graph");
    qk_dataset_free(&ds);
}

static void test_adaround_checks(void)
{
    const double v[5] = { -6, -1, 0, 1, 6 }, h[5] = { 0, 0.222730, 0.5, 0.777270, 1 };
    for (int i = 0; i < 5; i++)
        QT_NEAR(qk_adaround_h(v[i]), h[i], 1e-6, "h(V)");
    QT_NEAR(qk_adaround_v_init(0.25), -0.887303, 1e-6, "V(0.25)");
    QT_NEAR(qk_adaround_v_init(0.9), 1.609438, 1e-6, "V(0.9)");
    QT_NEAR(qk_adaround_h(qk_adaround_v_init(0.37)), 0.37, 1e-9, "h(V(frac)) = frac");
    const double hh[5] = { 0, 0.25, 0.5, 0.9, 1 }, r20[5] = { 0, 0.999999, 1, 0.988471, 0 },
                 r2[5] = { 0, 0.75, 1, 0.36, 0 };
    for (int i = 0; i < 5; i++) {
        QT_NEAR(qk_adaround_reg(hh[i], 20), r20[i], 1e-6, "reg beta 20");
        QT_NEAR(qk_adaround_reg(hh[i], 2), r2[i], 1e-6, "reg beta 2");
    }
    QT_NEAR(qk_adaround_beta(0, 10000, 0.2, 20, 2), 20, 1e-12, "beta(0)");
    QT_NEAR(qk_adaround_beta(2000, 10000, 0.2, 20, 2), 20, 1e-12, "beta(2000)");
    QT_NEAR(qk_adaround_beta(6000, 10000, 0.2, 20, 2), 11, 1e-12, "beta(6000)");
    QT_NEAR(qk_adaround_beta(10000, 10000, 0.2, 20, 2), 2, 1e-12, "beta(10000)");
}

static void test_adaround_linear(void)
{
    enum { CO = 8, K = 32, N = 256 };
    static float W[CO * K], X[N * K], Xq[N * K], sc[CO];
    static int32_t zp[CO], qn[CO], qp[CO], codes[CO * K];
    qk_rng r;
    qk_rng_seed(&r, 11);
    for (int i = 0; i < CO * K; i++)
        W[i] = 0.3f * qk_rng_normal(&r);
    for (int i = 0; i < N * K; i++) {
        X[i] = qk_rng_normal(&r) + 0.5f;
        Xq[i] = X[i] + 0.05f * qk_rng_normal(&r);
    }
    for (int o = 0; o < CO; o++) { /* 4-bit symmetric, per channel */
        float m = 0;
        for (int j = 0; j < K; j++)
            m = fmaxf(m, fabsf(W[o * K + j]));
        sc[o] = m / 7;
        zp[o] = 0;
        qn[o] = -7;
        qp[o] = 7;
    }
    for (int method = QK_RECON_ADAROUND; method <= QK_RECON_QDROP; method += 2) {
        qk_recon_config c;
        qk_recon_config_default(&c, (qk_recon_method)method);
        c.iters = 1000;
        double mn = -1, mo = -1;
        QT_OK(qk_adaround_linear(W, CO, K, sc, zp, qn, qp, X, method == QK_RECON_QDROP ? Xq : NULL, N, &c, codes, &mn,
                                 &mo));
        QT_CHECK(mo < mn, "%s: output MSE %g, nearest rounding %g", qk_recon_method_name(c.method), mo, mn);
        int up_down = 1;
        for (int i = 0; i < CO * K; i++) {
            double f = floor(W[i] / sc[i / K]);
            up_down &= codes[i] == (int32_t)f || codes[i] == (int32_t)f + 1 || codes[i] == 7 || codes[i] == -7;
        }
        QT_CHECK(up_down, "every code rounds the weight down or up");
    }
    qk_recon_config c;
    qk_recon_config_default(&c, QK_RECON_ADAROUND);
    c.iters = 0;
    QT_CHECK(qk_adaround_linear(W, CO, K, sc, zp, qn, qp, X, NULL, N, &c, codes, NULL, NULL) == QK_ERR_ARG &&
                 has_str(qk_last_error(), "--recon-iters"), "0 iterations: %s", qk_last_error());
    c.iters = 10;
    c.batch = N + 1;
    QT_CHECK(qk_adaround_linear(W, CO, K, sc, zp, qn, qp, X, NULL, N, &c, codes, NULL, NULL) == QK_ERR_ARG &&
                 has_str(qk_last_error(), "--recon-batch"), "batch > images: %s", qk_last_error());
}

static void test_reconstruct_model(void)
{
    qk_dataset ds = synth_ds(64, 5, 0);
    qk_ptq_config pc = cfg_for("academic");
    pc.wbits = 4;
    pc.abits = 8;
    qk_qmodel *m = prepare_zoo("resnet8", &pc);
    if (!m)
        return;
    qk_recon_config c;
    qk_recon_config_default(&c, QK_RECON_QDROP);
    c.iters = 20;
    c.batch = 4;
    QT_CHECK(qk_ptq_reconstruct(m, &ds, qk_norm_default(), 32, &c, pool, NULL) == QK_ERR_STATE, "not calibrated");
    QT_OK(qk_ptq_calibrate(m, &ds, qk_norm_default(), 32, pool, NULL, NULL));
    c.batch = 33;
    QT_CHECK(qk_ptq_reconstruct(m, &ds, qk_norm_default(), 32, &c, pool, NULL) == QK_ERR_ARG, "batch 33 > 32");
    c.batch = 4;
    qk_recon_result r;
    QT_OK(qk_ptq_reconstruct(m, &ds, qk_norm_default(), 32, &c, pool, &r));
    QT_CHECK(r.n_layers >= 8, "%d layers reconstructed", r.n_layers);
    char path[400];
    snprintf(path, sizeof path, "%s/recon.onnx", tmpdir);
    QT_OK(qk_ptq_save_qdq(m, path));
    qk_graph *q = NULL;
    QT_OK(qk_onnx_load(path, &q));
    QT_CHECK(q && has_str(qk_graph_get_meta(q, "qkit.recon"), "qdrop"), "metadata qkit.recon");
    float *y = q ? forward_n(q, &ds, 8, qk_norm_default()) : NULL;
    QT_CHECK(y && isfinite(y[0]), "the QDQ file runs");
    free(y);
    qk_graph_destroy(q);
    qk_qmodel_destroy(m);
    qk_dataset_free(&ds);
}

/* Value `name` of graph g on the first n images of ds (g planned at n), malloc'ed. */
static float *value_n(qk_graph *g, const qk_dataset *ds, int64_t n, const char *name, int64_t *numel)
{
    float *y = forward_n(g, ds, n, qk_norm_default());
    int v = qk_graph_find_value(g, name);
    free(y);
    if (!y || v < 0)
        return NULL;
    const qk_tensor *t = &g->values[v].t;
    *numel = qk_tensor_numel(t);
    float *out = malloc((size_t)*numel * sizeof *out);
    if (out)
        memcpy(out, t->data, (size_t)*numel * sizeof *out);
    return out;
}

/* Mean squared error of resnet8's first residual block output (layer1.0.relu2)
 * against the float network, W4A4, nearest rounding or BRECQ. */
static double block_mse(const qk_dataset *ds, const float *ref, int64_t numel, qk_recon_method method,
                        qk_recon_result *rr, qk_qmodel **keep)
{
    qk_ptq_config pc = cfg_for("academic");
    pc.wbits = 4;
    pc.abits = 4;
    pc.first_last_bits = -1;
    qk_qmodel *m = prepare_zoo("resnet8", &pc);
    if (!m)
        return -1;
    QT_OK(qk_ptq_calibrate(m, ds, qk_norm_default(), 64, pool, NULL, NULL));
    if (method != QK_RECON_NONE) {
        qk_recon_config c;
        qk_recon_config_default(&c, method);
        c.iters = 100;
        c.batch = 8;
        QT_OK(qk_ptq_reconstruct(m, ds, qk_norm_default(), 64, &c, pool, rr));
    }
    int64_t nq = 0;
    float *y = value_n(qk_qmodel_graph(m), ds, 32, "layer1.0.relu2", &nq);
    double e = 0;
    for (int64_t i = 0; y && ref && nq == numel && i < numel; i++)
        e += ((double)y[i] - ref[i]) * ((double)y[i] - ref[i]);
    QT_CHECK(y && nq == numel, "layer1.0.relu2 of the quantized model: %lld values, float %lld", (long long)nq,
             (long long)numel);
    free(y);
    if (keep)
        *keep = m;
    else
        qk_qmodel_destroy(m);
    return e / (double)(numel ? numel : 1);
}

static void test_brecq_block(void)
{
    qk_dataset ds = synth_ds(64, 9, 0);
    qk_graph *g = NULL;
    QT_OK(qk_zoo_build("resnet8", 7, &g)); /* the float twin of prepare_zoo's model */
    int64_t numel = 0;
    float *ref = g ? value_n(g, &ds, 32, "layer1.0.relu2", &numel) : NULL;
    QT_CHECK(ref != NULL, "float layer1.0.relu2");
    qk_graph_destroy(g);
    qk_recon_result rr = { 0 };
    qk_qmodel *m = NULL;
    double e_near = block_mse(&ds, ref, numel, QK_RECON_NONE, NULL, NULL);
    double e_brecq = block_mse(&ds, ref, numel, QK_RECON_BRECQ, &rr, &m);
    if (getenv("QT_VERBOSE"))
        printf("block output MSE: brecq %g, nearest %g\n", e_brecq, e_near);
    QT_CHECK(e_near > 0 && e_brecq >= 0 && e_brecq < e_near, "block output MSE: brecq %g, nearest %g", e_brecq, e_near);
    QT_CHECK(rr.n_layers >= 8 && rr.flipped > 0 && rr.loss_recon < rr.loss_nearest,
             "brecq: %d layers, %lld flipped, loss %g -> %g", rr.n_layers, (long long)rr.flipped, rr.loss_nearest,
             rr.loss_recon);
    /* learned activation steps: positive and finite, written as the file's scales */
    const qk_qsite *sites;
    int ns = m ? qk_qmodel_sites(m, &sites) : 0, checked = 0;
    char path[400];
    snprintf(path, sizeof path, "%s/brecq.onnx", tmpdir);
    QT_CHECK(m && qk_ptq_save_qdq(m, path) == QK_OK, "save: %s", qk_last_error());
    qk_graph *q = NULL;
    QT_OK(qk_onnx_load(path, &q));
    for (int s = 0; q && s < ns; s++) {
        if (sites[s].is_weight)
            continue;
        char name[300];
        snprintf(name, sizeof name, "%s_scale", sites[s].value);
        int v = qk_graph_find_value(q, name);
        float sc = v >= 0 ? qk_f32(&q->values[v].t)[0] : NAN;
        QT_CHECK(v >= 0 && isfinite(sc) && sc > 0, "activation step %s = %g", name, sc);
        checked += v >= 0;
    }
    QT_CHECK(checked >= 6, "%d activation steps in the file", checked);
    QT_CHECK(q && has_str(qk_graph_get_meta(q, "qkit.recon"), "brecq"), "metadata qkit.recon");
    float *y = q ? forward_n(q, &ds, 8, qk_norm_default()) : NULL;
    QT_CHECK(y && isfinite(y[0]), "the QDQ file runs");
    free(y);
    qk_graph_destroy(q);
    qk_qmodel_destroy(m);
    free(ref);
    qk_dataset_free(&ds);
}

int main(void)
{
    fx_begin("qkit_recon");
    RUN(test_cle_check);
    RUN(test_cle_models);
    RUN(test_adaround_checks);
    RUN(test_adaround_linear);
    RUN(test_reconstruct_model);
    RUN(test_brecq_block);
    fx_end();
    return qt_finish("test_recon");
}
