/* Layer-by-layer analysis (analyze.h): SQNR of a layer quantized at 8 bits
 * on a Gaussian input, a model against (almost) itself, the rebuilding of a
 * calibrated model from its QDQ file; mixed-precision checks. */
#include "qkit/analyze.h"
#include "ptq_fx.h"

#include <math.h>

/* x [N, 784] -> Gemm(W [16, 784], transB) -> y, W ~ N(0, 0.05). */
static qk_graph *gemm_graph(void)
{
    qk_graph *g;
    QT_OK(qk_graph_create(&g));
    int64_t xd[2] = { -1, 784 }, wd[2] = { 16, 784 };
    int x = qk_graph_add_input(g, "x", QK_F32, 2, xd);
    qk_tensor w;
    QT_OK(qk_tensor_alloc(&w, QK_F32, 2, wd));
    qk_rng r;
    qk_rng_seed(&r, 3);
    for (int i = 0; i < 16 * 784; i++)
        qk_f32(&w)[i] = 0.05f * qk_rng_normal(&r);
    int wv = qk_graph_add_init(g, "W", QK_VALUE_PARAM, &w);
    int y = qk_graph_add_value(g, "y", QK_VALUE_ACT);
    int in[2] = { x, wv };
    int k = qk_graph_add_node(g, "Gemm", "fc", 2, in, 1, &y);
    QT_OK(qk_node_set_int(g, k, "transB", 1));
    QT_OK(qk_graph_add_output(g, y));
    QT_OK(qk_ops_bind(g));
    return g;
}

/* Images whose normalized pixels are ~ N(0, 1): p = 128 + 20 z. */
static qk_dataset gauss_ds(int64_t n)
{
    qk_dataset d = synth_ds(n, 1, 0);
    qk_rng r;
    qk_rng_seed(&r, 11);
    for (int64_t i = 0; i < n * 784; i++) {
        float p = 128.0f + 20.0f * qk_rng_normal(&r);
        d.images[i] = (uint8_t)(p < 0 ? 0 : p > 255 ? 255 : p + 0.5f);
    }
    return d;
}

static const qk_norm gnorm = { .mean = 128.0f / 255.0f, .std = 20.0f / 255.0f };

static qk_qmodel *calibrated(int bits, const qk_dataset *ds)
{
    qk_ptq_config c = cfg_for("academic");
    c.wbits = c.abits = bits;
    c.first_last_bits = -1;
    qk_qmodel *m = NULL;
    QT_OK(qk_ptq_prepare(gemm_graph(), &c, &m));
    QT_OK(qk_ptq_calibrate(m, ds, gnorm, ds->n, pool, NULL, NULL));
    return m;
}

static void test_gaussian_8bit(void)
{
    qk_dataset ds = gauss_ds(128);
    qk_qmodel *m = calibrated(8, &ds);
    qk_analysis *a = NULL;
    QT_OK(qk_ptq_analyze_dataset(m, &ds, gnorm, 128, pool, &a));
    QT_CHECK(a && a->n_sites == 2 && a->n_rank == 2, "2 sites ranked");
    for (int s = 0; a && s < a->n_sites; s++) {
        const qk_analyze_site *S = &a->sites[s];
        QT_CHECK(S->active && S->sqnr_alone > 35, "site %s alone %.1f dB > 35", S->value, S->sqnr_alone);
        QT_CHECK(S->out_sqnr_alone > 35, "site %s output alone %.1f dB > 35", S->value, S->out_sqnr_alone);
        QT_CHECK(S->cos_alone > 0.999, "site %s cos %.6f", S->value, S->cos_alone);
        int64_t tot = 0;
        for (int k = 0; k < QK_ANALYZE_BINS; k++)
            tot += S->hist[k];
        QT_CHECK(tot > 0 && S->clipped < 1e-3, "minmax: (almost) nothing clipped: %g", S->clipped);
    }
    QT_CHECK(a && a->out_sqnr > 30 && a->out_sqnr < 45, "output SQNR %.1f", a ? a->out_sqnr : 0);
    /* a weight is measured at its layer's output */
    QT_CHECK(a && strcmp(a->sites[1].probe, "y") == 0, "probe of W: %s", a ? a->sites[1].probe : "");
    char path[400];
    snprintf(path, sizeof path, "%s/a.json", tmpdir);
    FILE *f = fopen(path, "w");
    QT_OK(qk_analysis_write_json(a, f));
    fclose(f);
    snprintf(path, sizeof path, "%s/a.html", tmpdir);
    f = fopen(path, "w");
    QT_OK(qk_analysis_write_html(a, "t", f));
    fclose(f);
    /* the same model rebuilt from its QDQ file gives the same figures */
    snprintf(path, sizeof path, "%s/q.onnx", tmpdir);
    double out = a ? a->out_sqnr : 0, w_alone = a ? a->sites[1].sqnr_alone : 0;
    qk_analysis_destroy(a);
    QT_OK(qk_ptq_save_qdq(m, path));
    qk_qmodel_destroy(m);
    qk_graph *q;
    QT_OK(qk_onnx_load(path, &q));
    QT_OK(qk_ptq_from_qdq(gemm_graph(), q, &m));
    QT_OK(qk_ptq_analyze_dataset(m, &ds, gnorm, 128, pool, &a));
    QT_CHECK(a && fabs(a->out_sqnr - out) < 1e-3 && fabs(a->sites[1].sqnr_alone - w_alone) < 1e-3,
             "from the file: %.4f vs %.4f dB", a ? a->out_sqnr : 0, out);
    qk_analysis_destroy(a);
    qk_qmodel_destroy(m);
    QT_CHECK(qk_ptq_from_qdq(gemm_graph(), q, &m) == QK_OK, "twice");
    qk_qmodel_destroy(m);
    qk_graph_destroy(q);
    /* a float model is no QDQ file */
    q = gemm_graph();
    QT_CHECK(qk_ptq_from_qdq(gemm_graph(), q, &m) == QK_ERR_FORMAT, "float file refused");
    qk_graph_destroy(q);
    qk_dataset_free(&ds);
}

/* 16-bit quantization: the model against itself, very high SQNR everywhere. */
static void test_self(void)
{
    qk_dataset ds = gauss_ds(64);
    qk_qmodel *m = calibrated(16, &ds);
    qk_analysis *a = NULL;
    QT_OK(qk_ptq_analyze_dataset(m, &ds, gnorm, 64, pool, &a));
    QT_CHECK(a && a->out_sqnr > 80 && a->agree == 1.0, "W16A16 output %.1f dB", a ? a->out_sqnr : 0);
    for (int s = 0; a && s < a->n_sites; s++)
        QT_CHECK(a->sites[s].sqnr_acc > 80, "%s %.1f dB", a->sites[s].value, a->sites[s].sqnr_acc);
    qk_analysis_destroy(a);
    /* unquantized: all inactive, infinite */
    QT_CHECK(qk_ptq_analyze_dataset(m, &ds, gnorm, 0, pool, &a) == QK_ERR_ARG, "0 images");
    qk_qmodel_destroy(m);
    qk_dataset_free(&ds);
}

static void test_mixed_precision(void)
{
    qk_dataset ds = gauss_ds(64);
    qk_qmodel *m = calibrated(8, &ds);
    int64_t dims[2] = { 64, 784 };
    qk_tensor x;
    QT_OK(qk_tensor_alloc(&x, QK_F32, 2, dims));
    qk_batcher b;
    QT_OK(qk_batcher_init(&b, &ds, 64, 0, 0, gnorm, NULL));
    int64_t got;
    QT_OK(qk_batcher_get(&b, 0, qk_f32(&x), NULL, &got));
    qk_batcher_free(&b);
    qk_mp_config c = { .avg_bits = 1.5 };
    qk_mp_result r;
    QT_CHECK(qk_ptq_mp_check(m, &c) == QK_ERR_ARG && strstr(qk_last_error(), "--mp-budget"), "below 2 bits: %s",
             qk_last_error());
    c.avg_bits = 4.5;
    QT_OK(qk_ptq_mixed_precision(m, &x, &c, pool, &r));
    QT_CHECK(r.n_layers == 1 && r.layers[0].bits == 4 && r.avg_bits == 4, "one layer at 4.5 -> 4 bits: %d",
             r.n_layers ? r.layers[0].bits : -1);
    /* sensitivity falls with the width: 2 bits is far worse than 8 */
    QT_CHECK(r.n_widths == 7 && r.layers[0].sqnr[0] + 20 < r.layers[0].sqnr[6], "SQNR 2 bits %.1f, 8 bits %.1f",
             r.layers[0].sqnr[0], r.layers[0].sqnr[6]);
    qk_mp_result_free(&r);
    qk_analysis *a = NULL;
    QT_OK(qk_ptq_analyze(m, &x, NULL, pool, &a));
    QT_CHECK(a && a->sites[1].bits == 4 && a->top1_float == -1, "analysis sees 4-bit W: %d", a ? a->sites[1].bits : 0);
    qk_analysis_destroy(a);
    QT_CHECK(strcmp(qk_graph_get_meta(qk_qmodel_graph(m), "qkit.mp_bits"), "4") == 0, "metadata");
    c = (qk_mp_config){ .max_bytes = 784 * 16 * 3 / 8 };
    QT_OK(qk_ptq_mixed_precision(m, &x, &c, pool, &r));
    QT_CHECK(r.layers[0].bits == 3 && r.bytes == 784 * 16 * 3 / 8, "bytes budget: %d bits", r.layers[0].bits);
    qk_mp_result_free(&r);
    qk_qmodel_destroy(m);
    /* a profile with 8-bit weights only */
    qk_ptq_config tc = cfg_for("tensorrt");
    QT_OK(qk_ptq_prepare(gemm_graph(), &tc, &m));
    c.avg_bits = 4;
    QT_CHECK(qk_ptq_mp_check(m, &c) == QK_ERR_UNSUPPORTED && strstr(qk_last_error(), "--mp-budget"), "tensorrt: %s",
             qk_last_error());
    qk_qmodel_destroy(m);
    qk_tensor_free(&x);
    qk_dataset_free(&ds);
}

int main(void)
{
    fx_begin("qkit_analyze");
    RUN(test_gaussian_8bit);
    RUN(test_self);
    RUN(test_mixed_precision);
    fx_end();
    return qt_finish("test_analyze");
}
