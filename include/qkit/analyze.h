/* qkit quant layer, part 4: which layer hurts? A layer-by-layer analysis of
 * a quantized model against its float original, and a mixed-precision
 * search that uses the same per-layer sensitivity.
 *
 * Example (`make test` runs it):
 *
 *   qk_graph *g;
 *   qk_dataset test;
 *   if (qk_onnx_load("models/lenet.onnx", &g) != QK_OK || qk_dataset_load_dir(NULL, "t10k", &test) != QK_OK)
 *       return 1;
 *   qk_norm norm = qk_norm_default();
 *   qk_graph_get_norm(g, &norm.mean, &norm.std);
 *   qk_ptq_config c;
 *   qk_ptq_config_default(&c);
 *   c.backend = qk_backend_find("tensorrt");
 *   qk_qmodel *m;
 *   qk_analysis *a = NULL;
 *   if (qk_ptq_prepare(g, &c, &m) != QK_OK)
 *       return 1;
 *   qk_status st = qk_ptq_calibrate(m, &test, norm, 64, NULL, NULL, NULL);
 *   if (st == QK_OK)                         // 32 images, compared site by site
 *       st = qk_ptq_analyze_dataset(m, &test, norm, 32, NULL, &a);
 *   if (st == QK_OK)
 *       printf("worst: %s, %.1f dB at the output\n", a->sites[a->rank[0]].value,
 *              a->sites[a->rank[0]].out_sqnr_alone);
 *   qk_analysis_destroy(a);
 *   qk_qmodel_destroy(m);
 *   qk_dataset_free(&test);
 *   if (st != QK_OK)
 *       return 1;
 * (end of example)
 *
 * Definitions (docs/QUANTIZATION.md "Layer-by-layer analysis"):
 *  SQNR(x, y) = 10 log10(sum x^2 / sum (x - y)^2) dB (+inf when y == x),
 *  cos(x, y) = sum xy / sqrt(sum x^2 sum y^2), summed over all images.
 *  Each site is compared at its "probe": an activation site at the tensor
 *  itself (what its consumers read), a weight site at its layer's output.
 *  - accumulated: every site quantized (the quantized network) against the
 *    float network on the same images: the errors of all earlier layers add up;
 *  - alone: only this site quantized, the rest float;
 *  - out_sqnr_alone: SQNR of the network output (logits) with only this
 *    site quantized; the ranking sorts by it, lowest (hurts most) first. */
#ifndef QKIT_ANALYZE_H
#define QKIT_ANALYZE_H

#include "ptq.h"

#ifdef __cplusplus
extern "C" {
#endif

#define QK_ANALYZE_BINS 64

typedef struct qk_analyze_site {
    const char *value;       /* the quantized tensor (points into the model) */
    const char *probe;       /* the value compared (the tensor, or the layer output) */
    int is_weight;
    int bits;                /* the quantizer's width (weights: the widest channel) */
    int active;              /* 0: the site is not quantized (e.g. kept in float by the file) */
    double sqnr_acc, cos_acc;
    double sqnr_alone, cos_alone;
    double out_sqnr_alone;
    double lo, hi;           /* clip range of the quantizer (per channel: smallest lo, largest hi) */
    double fmin, fmax;       /* float values seen at the tensor */
    double clipped;          /* fraction of the float values outside [lo, hi] */
    double hmin, hmax;       /* histogram span ([fmin, fmax] widened to contain [lo, hi] when finite) */
    int64_t hist[QK_ANALYZE_BINS];
} qk_analyze_site;

typedef struct qk_analysis {
    int n_sites;
    qk_analyze_site *sites;
    int *rank;               /* n_rank site indices, most harmful first (active sites only) */
    int n_rank;
    double out_sqnr, out_cos;/* network output, quantized vs float */
    double top1_float, top1_quant; /* against the labels (-1 when none were given) */
    double agree;            /* fraction of images with the same top-1 class */
    int64_t n_images;
    char backend[32];
} qk_analysis;

/* Analyze a calibrated model (not yet converted to QDQ) on x: [N, ...]
 * float inputs, already normalized; labels (N, may be NULL). Runs the float
 * network, the quantized one, and one pass per active site with only that
 * site quantized. Leaves the model's quantizers as they were. Errors:
 * QK_ERR_STATE (not calibrated, or converted), QK_ERR_SHAPE (x does not fit
 * the model input). */
qk_status qk_ptq_analyze(qk_qmodel *m, const qk_tensor *x, const int64_t *labels, qk_pool *pool,
                         qk_analysis **out);
/* The same on the first n images of ds (normalized with norm). */
qk_status qk_ptq_analyze_dataset(qk_qmodel *m, const qk_dataset *ds, qk_norm norm, int64_t n, qk_pool *pool,
                                 qk_analysis **out);
void qk_analysis_destroy(qk_analysis *a);
/* One JSON object (an infinite SQNR is written as null). */
qk_status qk_analysis_write_json(const qk_analysis *a, FILE *f);
/* A self-contained HTML page: tables and inline SVG charts, no script. */
qk_status qk_analysis_write_html(const qk_analysis *a, const char *title, FILE *f);

/* Rebuild a calibrated model from a QDQ file qkit wrote (ptq.h): prepares
 * float_g (ownership taken, destroyed on error too) with the file's
 * backend and widths (metadata "qkit.backend", "qkit.wbits",
 * "qkit.abits") and cross-layer equalization as the file had it
 * ("qkit.cle", "qkit.cle_relu6"; none without the key), and takes every
 * quantizer's scale, zero point, range and weight codes from the file; float initializers the file changed (bias
 * correction) are copied. A site the file keeps in float stays inactive.
 * Errors: QK_ERR_FORMAT (no qkit metadata, a site's parameters malformed). */
qk_status qk_ptq_from_qdq(qk_graph *float_g, const qk_graph *qdq, qk_qmodel **out);

/* ---- mixed precision (docs/QUANTIZATION.md "Mixed precision") ----
 * Per weighted layer l and width b in `widths`: sensitivity = mean square
 * error of the network output (logits) against the float network when only
 * layer l's weights are quantized at b (everything else float) -- the
 * proxy the assignment uses (its SQNR is reported). The assignment
 * minimizes the sum of these errors over layers subject to the budget: a
 * multiple-choice knapsack solved greedily from all-widest, lowering the
 * layer with the least error increase per bit saved until the budget holds,
 * then raising where bits are left. */
typedef struct qk_mp_config {
    double avg_bits;         /* budget: parameter-weighted mean weight width (> 0), or */
    int64_t max_bytes;       /* budget: bytes of weight codes, sum(params_l bits_l) / 8 (> 0) */
    int n_widths;            /* 0: every width the backend allows from wbits_min to 8 */
    int widths[16];
    int64_t n_images;        /* images for the sensitivity (0: 256) */
} qk_mp_config;

typedef struct qk_mp_layer {
    const char *weight;      /* the layer's weight value */
    int64_t params;
    int bits;                /* assigned */
    double mse[16];          /* output MSE per width (index as in widths) */
    double sqnr[16];         /* the same as output SQNR in dB */
} qk_mp_layer;

typedef struct qk_mp_result {
    int n_layers;
    qk_mp_layer *layers;     /* owned; qk_mp_result_free */
    int n_widths;
    int widths[16];
    double avg_bits;         /* achieved */
    int64_t bytes;           /* achieved weight-code bytes */
} qk_mp_result;

/* QK_ERR_UNSUPPORTED (naming --mp-budget) when m's profile allows a single
 * weight width or per-channel bit allocation is on; QK_ERR_ARG when the
 * budget is below what the lowest width gives. m: calibrated, not
 * converted; on success its weights are quantized at the assigned widths
 * (then evaluate or save it as usual; metadata "qkit.mp_bits"). */
qk_status qk_ptq_mixed_precision(qk_qmodel *m, const qk_tensor *x, const qk_mp_config *c, qk_pool *pool,
                                 qk_mp_result *r);
/* The same on the first n images of ds (n is capped at ds->n), normalized
 * with norm. */
qk_status qk_ptq_mixed_precision_dataset(qk_qmodel *m, const qk_dataset *ds, qk_norm norm, int64_t n,
                                         const qk_mp_config *c, qk_pool *pool, qk_mp_result *r);
/* Validate c against m's profile before any work (the same errors). */
qk_status qk_ptq_mp_check(const qk_qmodel *m, const qk_mp_config *c);
void qk_mp_result_free(qk_mp_result *r);

#ifdef __cplusplus
}
#endif
#endif
