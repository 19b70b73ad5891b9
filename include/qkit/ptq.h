/* qkit quant layer, part 3: prepare (BN folding + quantizer placement by a
 * backend profile), post-training calibration and its passes (ACIQ bit
 * allocation, bias correction), and the QDQ ONNX model it writes.
 *
 * Example (`make test` runs it):
 *
 *   qk_graph *g;
 *   qk_dataset test;
 *   if (qk_onnx_load("models/resnet8.onnx", &g) != QK_OK ||
 *       qk_dataset_load_dir(NULL, "t10k", &test) != QK_OK)
 *       return 1;
 *   qk_dataset calib = qk_dataset_view(&test, 0, 128), eval = qk_dataset_view(&test, 128, 256);
 *   qk_norm norm = qk_norm_default();
 *   qk_graph_get_norm(g, &norm.mean, &norm.std);   // the model's own normalization
 *   qk_ptq_config c;
 *   qk_ptq_config_default(&c);
 *   c.backend = qk_backend_find("tensorrt");
 *   qk_qmodel *m;
 *   if (qk_ptq_prepare(g, &c, &m) != QK_OK) // takes ownership of g
 *       return 1;
 *   qk_ptq_print_plan(m, stdout);           // where every quantizer went, and why
 *   qk_eval_result r;
 *   qk_status st = qk_ptq_calibrate(m, &calib, norm, 128, NULL, NULL, NULL);
 *   if (st == QK_OK)                        // fake quantization in float arithmetic
 *       st = qk_evaluate(qk_qmodel_graph(m), &eval, norm, 64, NULL, &r);
 *   if (st == QK_OK)
 *       st = qk_ptq_convert_qdq(m);         // or qk_ptq_save_qdq(m, "q.onnx")
 *   qk_ptq_result pr;
 *   qk_ptq_result_get(m, &pr);              // what was decided, and the time it took
 *   qk_qmodel_destroy(m);
 *   qk_dataset_free(&test);
 *   if (st != QK_OK || r.top1 < 0.5)
 *       return 1;
 * (end of example)
 *
 * ---- The QDQ model file (qkit ptq --out q.onnx; an ONNX contract) ----
 * Standard ONNX, default-domain opset 13, every op in the default domain:
 *  - weight W (Conv OIHW, Gemm [out,in] with transB = 1, MatMul [in,out])
 *    of a quantized layer: an integer initializer "<W>_quantized" (int8 when
 *    the weight quantizer is signed, else uint8) holding the codes, a
 *    float32 initializer "<W>_scale" and one "<W>_zero_point" of the codes'
 *    type, both [C] when per channel (DequantizeLinear axis = 0 for Conv
 *    and Gemm, 1 for MatMul) or scalars; a DequantizeLinear node whose
 *    output "<W>_dequantized" is what the layer reads;
 *  - an activation x that is quantized: QuantizeLinear(x, "<x>_scale",
 *    "<x>_zero_point") -> "<x>_quantized" -> DequantizeLinear -> "<x>_dequantized";
 *    every consumer the profile quantizes reads "<x>_dequantized", the
 *    others still read x. Scalar scale (float32) and zero point (uint8 for
 *    unsigned, int8 for signed quantizers);
 *  - bit-widths under 8: a Clip(codes, lo, hi) node between QuantizeLinear
 *    and DequantizeLinear, lo/hi scalar initializers of the codes' type
 *    ("<x>_qmin", "<x>_qmax"); weight codes are stored already in range;
 *  - 16-bit activations (ppl-w8a16, snpe A16): ONNX opset 13 has no int16
 *    QuantizeLinear, so these sites are simulated in memory only and the
 *    file keeps them in float; metadata "qkit.float_sites" counts them;
 *  - bias stays float32 (the integer engine quantizes it to int32 at
 *    s_x * s_w[c]); for a backend with quant_bias (vitis) the bias is stored
 *    already fake-quantized;
 *  - NNIE's logarithmic code has no ONNX form: its sites are simulated only;
 *  - metadata_props: "qkit.quantized" = "1", "qkit.backend" (profile name),
 *    "qkit.wbits", "qkit.abits", "qkit.w_observer", "qkit.a_observer",
 *    "qkit.arith" (qk_arith_name of the profile), "qkit.bit_alloc",
 *    "qkit.bias_correct", plus the float model's "qkit.norm.mean/std".
 *  - "qkit.rounding" (only where the profile's engine rounds activations
 *    otherwise than ties to even: tvm, vitis = "half_up"): qkit's
 *    QuantizeLinear rounds so, which makes `qkit eval` of the file equal the
 *    integer engine (`qkit eval --compare`); ONNX Runtime and other readers
 *    round ties to even, an approximation (resnet8 tvm W4A4, 2000 images:
 *    ORT 64.65%, qkit and the integer engine 63.30%). For tvm the float
 *    biases are stored on the accumulator grid s_x * s_w the engine uses.
 * Importing such a file gives a graph the float engine runs (QuantizeLinear
 * / DequantizeLinear are ordinary operators), i.e. fake quantization.
 *
 * Thread safety: a qk_qmodel (and the graph it owns) is used by one thread at a
 * time; different models may be prepared, calibrated and saved in parallel.
 */
#ifndef QKIT_PTQ_H
#define QKIT_PTQ_H

#include "backend.h"
#include <stdio.h>
#include "data.h"
#include "graph.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { QK_BITALLOC_W = 1, QK_BITALLOC_A = 2 };

typedef struct qk_ptq_config {
    const qk_backend *backend;  /* required */
    int wbits, abits;           /* 0: the profile's default */
    const char *w_observer;     /* NULL: the profile's default */
    const char *a_observer;
    qk_observer_opts w_opts, a_opts;
    int first_last_bits;        /* 0: the profile's rule (academic: 8); > 0: that width
                                   for the first and last weighted layer; -1: no override */
    int reduce_range;           /* 7-bit activations (profiles with reduce_range) */
    int per_tensor_weights;     /* academic: per-tensor instead of per-channel weights */
    int n_exclude;              /* node names kept in float */
    const char *const *exclude;
    int bit_alloc;              /* QK_BITALLOC_W | QK_BITALLOC_A: ACIQ per-channel bit
                                   allocation at the average budget (bits <= 4 only) */
    int bias_correct;           /* correct quantized weights' per-channel mean/variance
                                   and the layer output means (calibration data) */
    const qk_quant_hooks *hooks;/* custom quantize / preprocess functions (NULL: none) */
    int verbose;
} qk_ptq_config;

void qk_ptq_config_default(qk_ptq_config *c);
/* QK_OK when c's profile can do the bit-widths c asks for (reduce_range:
 * 7-bit activations unless abits is set), else QK_ERR_UNSUPPORTED naming
 * them; checks nothing else (prepare checks again, with the rest). */
qk_status qk_ptq_config_check(const qk_ptq_config *c);

/* One quantizer placed by prepare. */
typedef struct qk_qsite {
    char *value;        /* the quantized value's name */
    int is_weight;
    qk_qparams qp;      /* as placed (bits after overrides) */
    char observer[24];
    char reason[160];   /* why it is here, for qk_ptq_print_plan */
    int node;           /* the FakeQuant node in qk_qmodel_graph */
    int layer;          /* weighted layer index (weights), else -1 */
} qk_qsite;

typedef struct qk_qmodel qk_qmodel;

/* Takes ownership of g (destroyed on error too). Folds BN where the profile
 * says so, then inserts a FakeQuant node (domain "ai.qkit") for every site.
 * Errors: a graph that is already quantized (QuantizeLinear/QLinear* nodes),
 * bit-widths the backend cannot do, an unknown observer, an excluded node
 * name that does not exist. */
qk_status qk_ptq_prepare(qk_graph *g, const qk_ptq_config *c, qk_qmodel **out);
void qk_qmodel_destroy(qk_qmodel *m);
qk_graph *qk_qmodel_graph(qk_qmodel *m);
int qk_qmodel_sites(const qk_qmodel *m, const qk_qsite **sites);
/* Human-readable plan: one line per site (value, kind, scheme, observer, reason). */
void qk_ptq_print_plan(const qk_qmodel *m, FILE *f);

/* What the library decided for a prepared model: the configuration once
 * the profile's defaults and the overrides are resolved, and the work done.
 * Strings point into the profile or the model (valid while it lives). */
typedef struct qk_ptq_result {
    const char *backend;        /* profile name */
    int wbits, abits;           /* widths of the weight / activation quantizers */
    int first_last_bits;        /* width set for the first and last weighted layer
                                   (the profile's rule only raises one); -1: none */
    const char *w_observer, *a_observer;
    int reduce_range;           /* 1: 7-bit activations asked (fbgemm) */
    int per_channel;            /* weights quantized per output channel */
    int bias_correct;
    int bit_alloc;              /* QK_BITALLOC_* flags */
    const char *bit_alloc_name; /* "none", "w", "a" or "wa" (metadata qkit.bit_alloc) */
    int n_quantizers, n_weight_quantizers, n_act_quantizers;
    int n_folded;               /* BatchNormalization nodes folded into layers */
    int calibrated;
    double seconds;             /* spent in prepare, calibrate, convert and save on m */
} qk_ptq_result;
void qk_ptq_result_get(const qk_qmodel *m, qk_ptq_result *r);

/* Calibrate on the first n images of ds (QK_ERR_ARG if ds has fewer):
 * activation observers see the float activations, weights are quantized
 * from their values, then bit allocation and bias correction run as
 * configured. Afterwards the graph fake-quantizes (qk_evaluate it). A
 * model calibrates once: a second call is QK_ERR_STATE, also after a
 * call that failed part way (prepare the float graph again). */
typedef void (*qk_ptq_progress_fn)(void *user, int64_t done, int64_t total);
qk_status qk_ptq_calibrate(qk_qmodel *m, const qk_dataset *ds, qk_norm norm, int64_t n, qk_pool *pool,
                           qk_ptq_progress_fn progress, void *user);

/* Turn the calibrated model's FakeQuant nodes into the QDQ form described
 * above, in place (idempotent); the graph then still evaluates the same
 * fake quantization through QuantizeLinear/DequantizeLinear. Errors: not
 * calibrated; activation bit allocation (per-channel bit-widths on
 * activations have no ONNX form: simulation only). */
qk_status qk_ptq_convert_qdq(qk_qmodel *m);
/* qk_ptq_convert_qdq, then write the model (atomic: temp file + rename). */
qk_status qk_ptq_save_qdq(qk_qmodel *m, const char *path);

#ifdef __cplusplus
}
#endif
#endif
