/* qkit quant layer, part 1: quantizer math, observers (PTQ range
 * estimation), ACIQ clipping / bit allocation / bias correction, custom
 * quantizer hooks. Formulas: docs/ALGORITHMS.md §0-§3.
 *
 * Example (docs/ALGORITHMS.md §1, uint8 asymmetric; `make test` runs it):
 *
 *   qk_qparams p = QK_QPARAMS_UINT8;               // 8 bit, unsigned, affine, RNE
 *   float s; int32_t z;
 *   qk_qparams_compute(&p, -1.0f, 2.0f, &s, &z);   // s = 3/255, z = 85
 *   float x[6] = {-1, -0.5f, 0, 0.3f, 0.7f, 2};
 *   int32_t q[6];
 *   qk_tensor t = {QK_F32, 1, {6}, x, 0};
 *   qk_quantize(&p, 1, &s, &z, &t, q);             // 0 43 85 111 145 255 (RNE; RNA: 42)
 *   assert(z == 85 && q[1] == 43 && q[3] == 111 && q[5] == 255);
 *   qk_fake_quant(&p, 1, &s, &z, &t, &t, NULL);    // in place: x = D(Q(x))
 *
 *   qk_observer *o;                                 // calibration, one observer per tensor
 *   if (qk_observer_create("mse", &p, NULL, &o) != QK_OK)   // names: qk_observer_names()
 *       return 1;
 *   for (int b = 0; b < 3; b++) {                   // one update per batch
 *       float v[4] = {-1.0f - b, 0.5f, 1.0f, 2.0f + b};
 *       qk_tensor batch = {QK_F32, 1, {4}, v, 0};
 *       qk_observer_update(o, &batch);
 *   }
 *   qk_observer_qparams(o, &s, &z);                 // the range the MSE search chose
 *   qk_observer_destroy(o);
 * (end of example)
 *
 * Float convention (every float-array function here): q = clamp(R(x * inv)
 * + z, qn, qp) with inv = 1.0f / s computed in float32, dequantized
 * (q - z) * s in float32: PyTorch's fake_quantize_per_{tensor,channel}_affine
 * bit for bit (docs/ALGORITHMS.md §1's vectors come out exactly; the ONNX
 * QuantizeLinear operator divides, x / s, and can differ by one code for
 * inputs within an ulp of a rounding tie). A NaN input quantizes to the zero
 * point (real 0); +-Inf saturate.
 *
 * Thread safety: the quantizer math (qparams, rounding, ACIQ) is pure and may be
 * called from any thread; an observer or quantizer object is used by one
 * thread at a time.
 */
#ifndef QKIT_QUANT_H
#define QKIT_QUANT_H

#include "graph.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ============================ operators ==================================
 * The quant layer's operators: QuantizeLinear, DequantizeLinear (default
 * domain) and FakeQuant (domain "ai.qkit"). qk_quant_bind binds a graph
 * with the float and these operators (qk_graph_bind). */
extern const qk_op_table qk_quant_op_table;
qk_status qk_quant_bind(qk_graph *g);

/* ============================ parameters ================================= */

/* Rounding of x/s to an integer (docs/ALGORITHMS.md §0). Frozen values. */
typedef enum qk_round {
    QK_ROUND_HALF_EVEN = 0, /* RNE: ONNX, TensorRT, torch.round, numpy */
    QK_ROUND_HALF_AWAY = 1, /* RNA: C round(), TFLite, gemmlowp RDBPOT, Paddle round_type=1 */
    QK_ROUND_HALF_UP = 2    /* RHU: floor(x + 0.5), -1.5 -> -1 (NEON vqrdmulh, DPU) */
} qk_round;

/* Code kind. Frozen values. */
typedef enum qk_qscheme {
    QK_QSCHEME_LINEAR = 0,  /* uniform affine grid s * (q - z) */
    QK_QSCHEME_NNIE_LOG = 1 /* HiSilicon NNIE 8-bit logarithmic code (docs/ALGORITHMS.md
                               §2.10): value +-2^((k + zn)/16), k in 0..127,
                               zn = RNE(16 log2 max|x|) - 127; qk_nnie_fake_quant */
} qk_qscheme;

/* One quantizer's settings, validated by qk_qparams_validate. Zero-fill and
 * set what you need; the QK_QPARAMS_* initializers cover common cases.
 *   bits:        2..8 or 16.
 *   is_signed:   code range [-2^(b-1), 2^(b-1)-1] (narrow: lower end + 1),
 *                else [0, 2^b - 1].
 *   symmetric:   z = 0 for signed; for unsigned z = 2^(b-1) (PyTorch quint8
 *                symmetric). Scale from amax = max(|min|, |max|):
 *                  narrow:  s = amax / qp            (TensorRT, TFLite weights)
 *                  full:    s = amax / ((qp - qn)/2) (PyTorch: int8 amax/127.5)
 *                Asymmetric (affine): s = (mx - mn)/(qp - qn), z = clamp(qn -
 *                RNE(mn/s), qn, qp) with mn = min(min,0), mx = max(max,0).
 *   narrow:      signed only: drop -2^(b-1) (int8 -127..127).
 *   per_channel: one (s, z) per index of dimension `axis` (Conv OIHW weights
 *                axis 0, Gemm/Linear [out,in] axis 0, ConvTranspose IOHW 1).
 *   pot:         power-of-two scale s = 2^-f. f = floor(log2(1/s0)), the largest
 *                f that never clips: s0 = max(min/qn, max/qp) for signed
 *                symmetric, else the float scale above.
 *   round:       qk_round, used for x/s (the zero point always uses RNE, as
 *                PyTorch does).
 *   scheme:      qk_qscheme; NNIE_LOG needs bits 8, signed, symmetric, per tensor. */
typedef struct qk_qparams {
    int bits;
    int is_signed;
    int symmetric;
    int narrow;
    int per_channel;
    int axis;
    int pot;
    qk_round round;
    qk_qscheme scheme;
} qk_qparams;

#define QK_QPARAMS_UINT8 ((qk_qparams){ .bits = 8, .is_signed = 0, .symmetric = 0 })
#define QK_QPARAMS_INT8_SYM ((qk_qparams){ .bits = 8, .is_signed = 1, .symmetric = 1, .narrow = 1 })
#define QK_QPARAMS_INT8_SYM_CH0 \
    ((qk_qparams){ .bits = 8, .is_signed = 1, .symmetric = 1, .narrow = 1, .per_channel = 1, .axis = 0 })

/* QK_ERR_ARG with a message naming the bad field ("bits 9: supported 2..8 and 16"). */
qk_status qk_qparams_validate(const qk_qparams *p);
/* Integer code range [qn, qp] (p assumed valid). */
void qk_quant_range(const qk_qparams *p, int32_t *qn, int32_t *qp);
const char *qk_round_name(qk_round r); /* "half_even", "half_away", "half_up" */
/* Parse "half_even"/"rne", "half_away"/"rna", "half_up"/"rhu". */
qk_status qk_round_parse(const char *s, qk_round *out);

/* Round v with mode m (exact, independent of the FP environment). */
double qk_round_double(double v, qk_round m);
float qk_round_float(float v, qk_round m);
/* Exact double-precision reference: clamp(R(x / s) + z, qn, qp). */
int32_t qk_quantize_scalar(double x, double s, int32_t z, int32_t qn, int32_t qp, qk_round m);

/* (scale, zero_point) of one channel from an observed range [min, max]
 * (section 1): 0 is added to the range; s >= FLT_EPSILON (PyTorch's eps
 * guard: a constant or all-zero tensor gets s = 1.19e-7, never 0 or NaN);
 * z clamped to [qn, qp]. Computed in float32 like PyTorch's observers.
 * QK_ERR_ARG for invalid p or min > max; QK_ERR_NUMERIC for NaN/Inf. */
qk_status qk_qparams_compute(const qk_qparams *p, float min, float max, float *scale, int32_t *zp);
/* Same for n channels. */
qk_status qk_qparams_compute_n(const qk_qparams *p, int64_t n, const float *min, const float *max,
                               float *scale, int32_t *zp);
/* Power-of-two exponent: the largest f with 2^-f >= s0 (s0 > 0, finite);
 * exact (frexp), no log rounding. */
int qk_pot_frac_bits(double s0);

/* Number of (s, z) pairs p needs for tensor x: 1 per tensor, x->dims[axis]
 * per channel. QK_ERR_SHAPE when x has no dimension `axis`. */
qk_status qk_qparams_channels(const qk_qparams *p, const qk_tensor *x, int64_t *n);

/* ===================== quantize / dequantize / fake quant ================
 * x, y: float32 tensors of the same shape (y may alias x for fake quant);
 * q: int32 codes, same element count. n_scale: 1 (per tensor) or
 * dims[axis] (per channel) entries of scale/zp. Errors: QK_ERR_ARG (bad p,
 * scale <= 0 or not finite, dtype), QK_ERR_SHAPE (axis missing, n_scale
 * mismatch). */
qk_status qk_quantize(const qk_qparams *p, int64_t n_scale, const float *scale, const int32_t *zp,
                      const qk_tensor *x, int32_t *q);
qk_status qk_dequantize(const qk_qparams *p, int64_t n_scale, const float *scale, const int32_t *zp,
                        const int32_t *q, qk_tensor *y);
/* y = D(Q(x)). mask (optional, one byte per element) receives the clipped
 * straight-through estimator: 1 where qn <= R(x/s) + z <= qp before the
 * clamp (PyTorch masks on the rounded value), else 0 (also 0 for NaN). */
qk_status qk_fake_quant(const qk_qparams *p, int64_t n_scale, const float *scale, const int32_t *zp,
                        const qk_tensor *x, qk_tensor *y, uint8_t *mask);
/* Backward of fake quant: dx[i] += dy[i] * mask[i] (ADDs, executor style). */
void qk_fake_quant_backward(int64_t n, const uint8_t *mask, const float *dy, float *dx);
/* Quantization error figures of y against x: SQNR in dB =
 * 10 log10(sum x^2 / sum (x - y)^2) (+inf when equal) and the RMSE. */
void qk_quant_error(int64_t n, const float *x, const float *y, double *sqnr_db, double *rmse);

/* NNIE logarithmic fake quantization (MQBench NNIEQuantizeFunc): with
 * zn = RNE(16 log2 data_max) - 127, x > 2^((zn-16)/16) -> 2^((k+zn)/16),
 * k = clamp(RNE(16 log2 x - zn), 0, 127); x < -2^((zn-15)/16) -> the
 * negative code with k in 1..127; anything between -> 0. Computed in
 * double. Backward is the plain STE (no mask). data_max > 0, finite. */
qk_status qk_nnie_fake_quant(float data_max, int64_t n, const float *x, float *y);

/* =============================== observers ===============================
 * An observer sees calibration batches and proposes a range [min, max] per
 * channel; qk_observer_qparams turns it into (s, z) with the observer's
 * qparams. Names (for the CLI): qk_observer_names().
 *   minmax       running min/max (per channel: reduce over all other axes)
 *   ema          first batch sets (min,max); then m = r m + (1-r) m_batch, r = ema_ratio
 *   mavg-absmax  PaddleSlim moving_average_abs_max: state = r state + 1,
 *                accum = r accum + max|x|, T = accum/state (r = moving_rate,
 *                state = accum = 0 at start); range (-T, T). window > 0: Paddle's
 *                range_abs_max instead (T = max of the last `window` batch maxima)
 *   percentile   MQBench EMAQuantile: per batch a `bins`-bin histogram of |x| on
 *                [0, max|x|]; T = centre of the first bin whose cumulative count
 *                >= percentile * N; batch range (max(min,-T), min(max,T)); EMA
 *   mse          MQBench MSEObserver: candidates (min,max)(1 - 0.01 i), i < mse_steps
 *                (95 per tensor, 80 per channel), keep the least mean |FQ(x)-x|^p
 *                (first on ties); across batches min of mins / max of maxes
 *   kl           TensorRT entropy calibration (section 2.6, qk_kl_threshold) on a
 *                `bins`-bin histogram of |x| over all batches; per tensor only;
 *                a never-negative tensor searches with 2^bits levels unless
 *                kl_levels is set
 *   aciq-laplace, aciq-gauss  ACIQ: alpha = alpha*(bits) b (Laplace, b = mean|x-mu|)
 *                or sigma (Gauss, unbiased std); range [lo, lo + 2 alpha], lo =
 *                max(min, mu - alpha); one-sided tensors (min >= 0, or forced):
 *                [0, max(mu,0) + alpha*(bits+1) b]
 *   nsigma       mean +- nsigma std, intersected with the observed [min, max]
 *                (a real clip: MQBench's ClipStdObserver takes the union instead)
 *   pot-mse, pot-kl  greedy power-of-two search (§2.8): f in f0 .. f0 +
 *                pot_candidates - 1, least SSE (per batch; the mode over batches,
 *                smaller f on ties) or least TensorRT KL at threshold qp 2^-f on
 *                the accumulated histogram. Need pot=1, symmetric, per tensor.
 * Statistics are accumulated in double; batches are processed serially. */
typedef struct qk_observer qk_observer;

/* Options; a field left 0 takes the default shown. */
typedef struct qk_observer_opts {
    double ema_ratio;     /* ema, percentile: 0.9 */
    double moving_rate;   /* mavg-absmax: 0.9 */
    int window;           /* mavg-absmax: 0 = moving average; > 0 = range_abs_max window */
    double percentile;    /* percentile: 0.99999 (fraction in (0, 1]) */
    int bins;             /* percentile, kl, pot-kl histogram bins: 2048 */
    int kl_levels;        /* kl target levels: 2^(b-1) signed or symmetric, else 2^b */
    int mse_steps;        /* mse candidates: 95 per tensor, 80 per channel */
    double mse_p;         /* mse norm: 2.0 */
    double nsigma;        /* nsigma: 2.6 */
    int pot_candidates;   /* pot-*: 5 (f0..f0+4); 1 for network inputs */
    int aciq_sided;       /* aciq: 0 auto (one-sided when min >= 0), 1 one-sided, 2 two-sided */
} qk_observer_opts;

/* NULL-terminated list of observer names. */
const char *const *qk_observer_names(void);
/* The entry of qk_observer_names() equal to name in *out; else
 * QK_ERR_NOTFOUND, the message naming it and listing the valid ones. */
qk_status qk_observer_lookup(const char *name, const char **out);
/* name: one of qk_observer_names() (else QK_ERR_NOTFOUND listing the valid
 * ones); p: the quantizer the range is for (copied, validated); opts may be
 * NULL. QK_ERR_UNSUPPORTED for per-channel with kl/pot-*. */
qk_status qk_observer_create(const char *name, const qk_qparams *p, const qk_observer_opts *opts,
                             qk_observer **out);
void qk_observer_destroy(qk_observer *o);
const char *qk_observer_name(const qk_observer *o);
/* Feed one float32 batch (any shape; per channel: must have dimension
 * `axis`, the same size every time). Empty tensors are ignored.
 * QK_ERR_NUMERIC on NaN/Inf, QK_ERR_SHAPE on a channel-count change. */
qk_status qk_observer_update(qk_observer *o, const qk_tensor *x);
/* The same over a thread pool (NULL: serial); the result does not depend
 * on the thread count. */
qk_status qk_observer_update_pool(qk_observer *o, const qk_tensor *x, qk_pool *pool);
/* Channels (1 per tensor; 0 before the first update). */
int64_t qk_observer_channels(const qk_observer *o);
/* The proposed range per channel (arrays of qk_observer_channels).
 * QK_ERR_STATE before any data. */
qk_status qk_observer_range(qk_observer *o, float *min, float *max);
/* (s, z) per channel from the range (qk_qparams_compute; pot-* give 2^-f). */
qk_status qk_observer_qparams(qk_observer *o, float *scale, int32_t *zp);
/* Forget all data (keeps name, qparams, options). */
void qk_observer_reset(qk_observer *o);

/* TensorRT KL threshold search (docs/ALGORITHMS.md §2.6) on a histogram of |x|
 * with nbins bins: for i = levels .. nbins-1, P = hist[0..i-1] with the
 * outliers sum(hist[i..]) folded into P[i-1]; Q = hist[0..i-1] merged into
 * `levels` bins (i div levels each, the last takes the leftover) and
 * expanded back evenly over the bins where P != 0 (TensorRT/MXNet use the
 * folded P for this test); KL(P||Q) over P > 0, +inf where Q = 0 < P (no
 * smoothing). Returns m = argmin (first on ties) so T = (m + 0.5) w;
 * *kl_min gets the value (may be NULL). levels >= nbins: returns nbins
 * (no clipping). */
int qk_kl_threshold(const double *hist, int nbins, int levels, double *kl_min);
/* KL(P||Q) of one candidate slice length i in 1..nbins (as above; i <
 * levels uses i target bins). */
double qk_kl_divergence_at(const double *hist, int nbins, int i, int levels);

/* ================================ ACIQ ===================================
 * Mean-square error of clipping a unit-scale prior (Laplace b = 1, Gauss
 * sigma = 1) to [-alpha, alpha] and quantizing with 2^bits levels
 * (docs/ALGORITHMS.md §2.7): clip noise + alpha^2 / (3 4^bits). one_sided: a
 * half prior clipped to [0, alpha] with 2^bits levels (post-ReLU):
 * clip/2 + alpha^2 / (24 4^bits). bits is real (>= 0). */
typedef enum qk_aciq_prior { QK_ACIQ_LAPLACE = 0, QK_ACIQ_GAUSS = 1 } qk_aciq_prior;
double qk_aciq_mse(qk_aciq_prior prior, double alpha, double bits, int one_sided);
/* alpha* / b (Laplace) or / sigma (Gauss): golden-section minimization of
 * qk_aciq_mse in double to 1e-10 (the MSE is convex in alpha). bits in
 * [0, 32]. alpha*(1..8): Laplace 1.863 2.831 3.897 5.029 6.205 7.413 8.646
 * 9.897, Gauss 1.240 1.711 2.152 2.559 2.936 3.287 3.615 3.924 (the paper's
 * 2.83/3.89/5.03 and 1.71/2.15/2.55 are these truncated); one-sided(M) =
 * alpha*(M+1). */
double qk_aciq_alpha(qk_aciq_prior prior, double bits, int one_sided);

/* Per-channel bit allocation under an exact average budget (docs/ALGORITHMS.md
 * §3.1, ACIQ eq. 11). alpha: n >= 1 per-channel ranges (clip values,
 * or std / b as proxy), >= 0 and finite. n * avg_bits must be an integer
 * (to 1e-9) within [n min_bits, n max_bits]; 0 <= min_bits <= max_bits <= 16.
 * Rule (deterministic, mean exactly avg_bits):
 *   1. raw M_i = log2(B alpha_i^(2/3) / sum_j alpha_j^(2/3)), B = n 2^avg_bits
 *      (ACIQ's closed form; raw_out, optional; -inf for alpha_i = 0);
 *   2. one shift c for all channels with sum_i clip(M_i + c, min, max) =
 *      n avg_bits (bisection; replaces the reference code's 10-step re-target
 *      loop, which can oscillate and miss the mean);
 *   3. largest remainder (Hamilton): floor every v_i = clip(M_i + c), then give
 *      one more bit to each of the channels with the largest fractional parts
 *      until the total is met; equal parts (within 1e-9) go to the larger
 *      alpha, then the lower index.
 * Example alpha = [1, 8, 27, 64], avg 4: raw [1.093 3.093 4.263 5.093],
 * shifted [1.707 3.707 4.877 5.707] -> [1, 4, 5, 6] (mean 4). */
qk_status qk_aciq_bit_alloc(int64_t n, const double *alpha, double avg_bits, int min_bits, int max_bits,
                            int *bits_out, double *raw_out);

/* ACIQ bias (mean/variance) correction of quantized weights per output
 * channel, following the reference code (docs/ALGORITHMS.md §3): with
 * m = mean(w_c), m_q = mean(wq_c), xi_c = std(w_c) / (std(wq_c) + 1e-8)
 * (population std), wq <- (wq - m_q) xi_c + m_q, then wq <- wq - m_q + m,
 * i.e. corrected = xi_c wq + (1 - xi_c) m_q + mu_c with mu_c = m - m_q.
 * w, wq: [C, K] channel-major (OIHW / [out,in] weights, axis 0); wq is
 * overwritten. xi, mu (optional, C each) let a deployment fold it: xi_c into
 * the channel scale, ((1 - xi_c) m_q + mu_c) sum(x) into the bias.
 * The corrected channel has the original mean and (up to the eps) std. */
qk_status qk_bias_correct_weights(int64_t C, int64_t K, const float *w, float *wq, float *xi, float *mu);

/* ========================= custom quantizer hooks ========================
 * PaddleSlim's quant_aware hooks: weight_quantize_func,
 * act_quantize_func replace the built-in quantizer (input: the tensor to
 * quantize, output: its fake-quantized, i.e. dequantized, value);
 * weight_preprocess_func, act_preprocess_func run before the quantizer (e.g.
 * PACT clipping). Here each is a C function pointer plus a context. */
typedef enum qk_hook_kind {
    QK_HOOK_WEIGHT_QUANTIZE = 0,
    QK_HOOK_ACT_QUANTIZE = 1,
    QK_HOOK_WEIGHT_PREPROCESS = 2,
    QK_HOOK_ACT_PREPROCESS = 3,
    QK_HOOK_COUNT = 4
} qk_hook_kind;

/* What a hook is called for. */
typedef struct qk_hook_call {
    const char *tensor_name; /* the quantized value's name ("" if none) */
    int is_weight;
    const qk_qparams *qp;    /* the built-in quantizer's settings at that site */
    int calibrating;         /* 1 while statistics are collected (PTQ calibration) */
    int64_t step;            /* calls so far at this site */
} qk_hook_call;

/* x: float32 input; y: float32 output of the same shape, allocated by the
 * caller, never aliasing x. Return QK_OK or an error (recorded with
 * qk_error); the error stops the forward pass. */
typedef qk_status (*qk_hook_fn)(void *ctx, const qk_hook_call *call, const qk_tensor *x, qk_tensor *y);

typedef struct qk_quant_hooks {
    qk_hook_fn fn[QK_HOOK_COUNT];
    void *ctx[QK_HOOK_COUNT];
} qk_quant_hooks;

/* Set (fn != NULL) or clear (fn == NULL) one hook. QK_ERR_ARG for a bad kind. */
qk_status qk_quant_hooks_register(qk_quant_hooks *h, qk_hook_kind kind, qk_hook_fn fn, void *ctx);

/* A quantization site: one tensor's quantizer (built-in observer + fake
 * quant, or the hooks). Used by prepare/calibrate passes and tests.
 *   run(x -> y): preprocess hook (if any) -> quantize hook (if any, replaces
 *   the built-in) or built-in: while calibrating, update the observer and
 *   recompute (s, z); then fake-quantize with the current (s, z). mask gets
 *   the clipped STE (all 1 after a quantize hook: plain STE). */
typedef struct qk_quantizer qk_quantizer;
typedef struct qk_quantizer_desc {
    qk_qparams qp;
    const char *observer;           /* NULL: "minmax" */
    const qk_observer_opts *opts;   /* NULL: defaults */
    int is_weight;
    const char *name;               /* NULL: "" */
    const qk_quant_hooks *hooks;    /* copied; NULL: none */
} qk_quantizer_desc;
qk_status qk_quantizer_create(const qk_quantizer_desc *d, qk_quantizer **out);
void qk_quantizer_destroy(qk_quantizer *q);
/* on = 1 (the initial state): each run updates the observer. 0: frozen. */
void qk_quantizer_set_calibrating(qk_quantizer *q, int on);
/* x, y float32, same shape (y may not alias x when a hook is set); mask optional.
 * QK_ERR_STATE when frozen before any calibration data. */
qk_status qk_quantizer_run(qk_quantizer *q, const qk_tensor *x, qk_tensor *y, uint8_t *mask);
/* Current (s, z): *n pairs (0 before calibration); arrays owned by q. */
void qk_quantizer_params(const qk_quantizer *q, int64_t *n, const float **scale, const int32_t **zp);
qk_observer *qk_quantizer_observer(qk_quantizer *q);

/* ======================= fixed-point primitives ==========================
 * Fixed point as in gemmlowp / TFLite (docs/ALGORITHMS.md §7). */

/* M = q * 2^(e-31), q in [2^30, 2^31) (or 0): frexp, RNA(M0 * 2^31), the
 * q == 2^31 carry (q /= 2, e += 1) and flush to (0, 0) when e < -31.
 * M must be finite and >= 0 (QK_ERR_ARG otherwise); M >= 2^31 is rejected
 * (e would exceed 31). Matches TFLite QuantizeMultiplier. */
qk_status qk_quantize_multiplier(double M, int32_t *q, int *e);
/* Saturating rounding doubling high multiply (gemmlowp): ~ RHU(a*b / 2^31);
 * SRDHM(INT32_MIN, INT32_MIN) = INT32_MAX. */
int32_t qk_srdhm(int32_t a, int32_t b);
/* Rounding divide by 2^n, 0 <= n <= 31, ties away from zero (gemmlowp). */
int32_t qk_rdbpot(int32_t x, int n);
/* TFLite MultiplyByQuantizedMultiplier (double rounding):
 * RDBPOT(SRDHM(x * 2^max(e,0), q), max(-e,0)); the left shift wraps modulo
 * 2^32 as on TFLite's targets. e in [-31, 30]. */
int32_t qk_mbqm(int32_t x, int32_t q, int e);
/* Single rounding: (x*q + 2^(30-e)) >> (31-e) in 64 bits, ties up (RHU),
 * saturated to int32. Matches TFLite built with TFLITE_SINGLE_ROUNDING and
 * XNNPACK's "rndnu" requantization. e in [-31, 30]. */
int32_t qk_mbqm_single(int32_t x, int32_t q, int e);
/* Power-of-two requantization (Xilinx DPU / Vitis, docs/ALGORITHMS.md §7):
 * sh > 0: floor((x + 2^(sh-1)) / 2^sh) computed exactly (RHU, ties up);
 * sh == 0: x; sh < 0: x * 2^-sh. Result saturated to int32. sh in [-31, 31]. */
int32_t qk_shift_round(int32_t x, int sh);
/* Round x to an integer with ties away from zero (TFLite TfLiteRound). */
int32_t qk_round_rna(double x);
/* acc / n rounded half away from zero (n > 0): TFLite's average of codes. */
int32_t qk_avg_round(int32_t acc, int32_t n);

typedef enum qk_act { QK_ACT_NONE = 0, QK_ACT_RELU = 1, QK_ACT_RELU6 = 2, QK_ACT_CLIP = 3 } qk_act;
/* Fused activation as output clamp (TFLite CalculateActivationRangeQuantized):
 * qmin = max(type_min, zp + RNA(lo/scale)), qmax = min(type_max, zp + RNA(hi/scale));
 * RELU: lo = 0; RELU6: lo = 0, hi = 6; CLIP: [lo, hi]. */
qk_status qk_act_bounds(qk_dtype type, float scale, int32_t zp, qk_act act, float lo, float hi,
                        int32_t *qmin, int32_t *qmax);
/* Range of an integer type: U8 [0,255], I8 [-128,127], I16, I32. */
void qk_int_range(qk_dtype type, int32_t *lo, int32_t *hi);

#ifdef __cplusplus
}
#endif
#endif
