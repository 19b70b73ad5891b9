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
 *    "qkit.bias_correct", plus the float model's "qkit.norm.mean/std";
 *    "qkit.cle" = "1" when the float model was cross-layer equalized first
 *    (and "qkit.cle_relu6" = "1" when its ReLU6 became ReLU), "qkit.recon"
 *    = the reconstruction method when one ran.
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
                                   and the layer output means (calibration data): 0 the
                                   profile's default (qk_backend.bias_correct), 1 on, -1 off */
    const qk_quant_hooks *hooks;/* custom quantize / preprocess functions (NULL: none) */
    int verbose;
    int cle;                    /* cross-layer equalization (qk_cle_apply, default options) of the
                                   float graph at the start of prepare, before BN folding: 0 the
                                   profile's default (qk_backend.cle), 1 on, -1 off */
    int cle_relu6;              /* with CLE on: ReLU6 between equalized layers becomes ReLU first
                                   (changes the float model); QK_ERR_ARG when CLE is off */
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
    double seconds;             /* spent in prepare (cross-layer equalization included), calibrate,
                                   reconstruct, convert and save on m */
    int cle;                    /* 1: cross-layer equalization was applied (the profile's default or asked) */
    int cle_pairs;              /* layer pairs it equalized */
    int cle_relu6;              /* ReLU6 nodes it turned into ReLU (cle_relu6) */
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

/* ==== Cross-layer equalization and reconstruction (cle.c, recon.c) ====
 * Kept as one block; docs/ALGORITHMS.md §3.3 and §5. */

/* Cross-layer equalization (data-free, Nagel et al. 2019) on a float graph
 * (qk_ptq_prepare runs it with the default options when qk_ptq_config.cle
 * resolves on; a caller may also run it itself before prepare): for
 * L1 -> [BatchNormalization] -> [Relu | Clip(0, max)] -> L2 (Conv of any
 * group, so depthwise too, or Gemm; initializer weights; every value in
 * between read once), channel i between them gets
 * s_i = sqrt(r1_i r2_i) / r2_i (r1: L1's output-channel range, BN scale
 * included; r2: L2's input-channel range): L1's channel (its BN's gamma and
 * beta when there is a BN, else the weight row and bias) is divided by s_i
 * and L2's input channel multiplied by it. Sweeps over all pairs repeat
 * until every |ln s_i| < tol or max_iters sweeps. The float function is
 * unchanged (to rounding). A Clip with a finite upper bound (ReLU6) is not
 * positively homogeneous: such pairs are skipped unless relu6_to_relu,
 * which drops the bound first (the paper's choice; it changes the model).
 * Bias absorption (bias_absorb): for a pair with a BN, c_i = max(0, beta_i
 * - 3 |gamma_i|) moves from the BN's beta into L2's bias (W2 c), only when
 * L2 has no padding; exact while the BN output stays above c_i (the
 * paper's 3-sigma assumption), so the float output may move slightly.
 * The graph is unplanned; L2 may get a new bias initializer. */
typedef struct qk_cle_options {
    int max_iters;     /* sweeps (default 100) */
    double tol;        /* stop when every |ln s_i| < tol (default 1e-6) */
    int bias_absorb;   /* default 1 */
    int relu6_to_relu; /* default 0: pairs through ReLU6 are skipped */
} qk_cle_options;
typedef struct qk_cle_result {
    int n_pairs;       /* layer pairs equalized */
    int n_iters;       /* sweeps run */
    int n_absorbed;    /* channels whose bias was absorbed */
    int n_relu6;       /* ReLU6 nodes turned into ReLU */
} qk_cle_result;
void qk_cle_options_default(qk_cle_options *o);
/* o NULL: the defaults; r may be NULL. Errors: QK_ERR_ARG (max_iters < 1). */
qk_status qk_cle_apply(qk_graph *g, const qk_cle_options *o, qk_cle_result *r);
/* s_i = sqrt(r1_i r2_i) / r2_i (1 where a range is 0). */
void qk_cle_scales(int64_t n, const double *r1, const double *r2, double *s);

/* Reconstruction after qk_ptq_calibrate (docs/ALGORITHMS.md §5): the
 * weights' scales and zero points stay as calibrated (the profile's weight
 * observer); the integer codes of the weights change (and, for brecq and
 * qdrop, the activation steps), so the model stays an ordinary QDQ model
 * (qk_ptq_save_qdq; metadata "qkit.recon").
 *   QK_RECON_ADAROUND: layers in graph order; layer l minimises
 *     mean over output positions of sum over channels (f(W x) - f(W~ x~))^2
 *     + lambda * sum (1 - |2 h(V) - 1|^beta)
 *   with x the float network's input of the layer, x~ the input the
 *   quantized network (earlier layers already reconstructed) gives it, f the
 *   per-channel BatchNormalization and Relu/Clip that follow the layer (when
 *   they are its only reader), W~ = s (clamp(floor(W/s) + h(V) + z, qn, qp)
 *   - z), h the rectified sigmoid (zeta 1.1, gamma -0.1), V initialised so
 *   h(V) = frac(W/s), Adam (lr) on V, beta annealed linearly from beta_start
 *   to beta_end after warm-up (the first `warmup` fraction of the iterations
 *   has no regulariser). Each iteration draws `batch` calibration images
 *   and up to 64 output positions of each (a stochastic estimate of the same
 *   loss); at the end a weight rounds up iff h(V) >= 0.5.
 *   QK_RECON_BRECQ: the same relaxation per block (a residual block, else up
 *     to three plain layers; docs/ALGORITHMS.md §5.2 says how blocks are
 *     found): every weight of the block and the steps of the block's
 *     activation quantizers (LSQ gradient, Adam at 4e-5 with cosine decay;
 *     zero points fixed) minimise the block output's squared error weighted
 *     by the float model's Fisher diagonal (0.5 + 0.5 g^2 / mean g^2, g the
 *     gradient of the cross-entropy, labels of ds or else the float
 *     prediction), on the block input the quantized network gives; whole
 *     images per iteration.
 *   QK_RECON_QDROP: BRECQ with each element of the block inputs the float
 *     value with probability 1 - drop_p (Wei et al. 2022), during
 *     reconstruction only. (qk_adaround_linear: per layer, the input mixed.)
 * Layers whose weight has no integer codes (a hook, the NNIE code) are
 * left as they are. */
typedef enum qk_recon_method {
    QK_RECON_NONE = 0,
    QK_RECON_ADAROUND = 1,
    QK_RECON_BRECQ = 2,
    QK_RECON_QDROP = 3
} qk_recon_method;
typedef struct qk_recon_config {
    qk_recon_method method;
    int iters;                    /* per layer or block (> 0) */
    int batch;                    /* images per iteration (> 0, <= the images used; brecq/qdrop <= 1024) */
    int64_t images;               /* calibration images used (0: all that are given) */
    double lambda, lr, warmup;    /* 0.01, 1e-3 (brecq/qdrop 1e-2), 0.2 */
    double beta_start, beta_end;  /* 20, 2 */
    double drop_p;                /* qdrop: probability of the quantized input, 0.5 */
    uint64_t seed;
    int verbose;                  /* one line per layer or block on stderr */
} qk_recon_config;
typedef struct qk_recon_result {
    int n_layers;                 /* layers reconstructed */
    double loss_nearest, loss_recon; /* summed over layers (blocks): output error of the calibrated
                                        quantizers (nearest rounding) and of the result */
    int64_t flipped;              /* codes that differ from nearest rounding */
    double seconds;
} qk_recon_result;
/* The defaults above for method m (iters: adaround 1000, brecq/qdrop 500;
 * batch 32; bench/RESULTS.md has the accuracy against iterations they were
 * chosen from). */
void qk_recon_config_default(qk_recon_config *c, qk_recon_method m);
/* "adaround" | "brecq" | "qdrop" | "none"; QK_ERR_ARG otherwise. */
qk_status qk_recon_method_parse(const char *s, qk_recon_method *out);
const char *qk_recon_method_name(qk_recon_method m);
/* Reconstruct a calibrated model on the first n images of ds (the
 * calibration images). Errors: not calibrated, or already converted to QDQ
 * (QK_ERR_STATE); iters or batch < 1, batch > images, n > ds->n
 * (QK_ERR_ARG, naming the field); brecq/qdrop on a block the sub-graph
 * cannot represent (QK_ERR_UNSUPPORTED, naming it). r may be NULL. */
qk_status qk_ptq_reconstruct(qk_qmodel *m, const qk_dataset *ds, qk_norm norm, int64_t n, const qk_recon_config *c,
                             qk_pool *pool, qk_recon_result *r);

/* AdaRound of one linear layer y = W x (W [co, k] row-major, per output
 * channel scale/zp/qn/qp), on n inputs X [n, k] (xq: the quantized inputs,
 * NULL: X), no activation; codes [co, k] receives the result. The building
 * block of qk_ptq_reconstruct, public for tests and callers with their own
 * layers. *mse_nearest / *mse_out (may be NULL): mean squared output error
 * of nearest rounding and of the result on all n inputs. */
qk_status qk_adaround_linear(const float *W, int64_t co, int64_t k, const float *scale, const int32_t *zp,
                             const int32_t *qn, const int32_t *qp, const float *X, const float *xq, int64_t n,
                             const qk_recon_config *c, int32_t *codes, double *mse_nearest, double *mse_out);
/* The pieces, for the numeric checks of docs/ALGORITHMS.md §5.1:
 * h(V) = clip(sigmoid(V) (zeta - gamma) + gamma, 0, 1); V with h(V) = frac;
 * 1 - |2h - 1|^beta; beta at iteration t of T (beta_start through the warm-up). */
double qk_adaround_h(double v);
double qk_adaround_v_init(double frac);
double qk_adaround_reg(double h, double beta);
double qk_adaround_beta(int64_t t, int64_t T, double warmup, double beta_start, double beta_end);

#ifdef __cplusplus
}
#endif
#endif
