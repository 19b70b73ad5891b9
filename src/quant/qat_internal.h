/* Private to the QAT files (qat_op.c, qat.c): the learnable quantizer
 * operator QkLearnQuant (domain ai.qkit) and the per-algorithm rules shared
 * by the operator and the conversion to the QDQ file. Not a public header.
 *
 * QkLearnQuant(x [, P] [, S]) -> y, y = FQ(T(x)) on the grid [qn, qp]:
 *   x  float32 input (a weight initializer or an activation);
 *   P  optional PARAM float32, the learned quantities, C or 2C entries
 *      (C = 1 per tensor, dims[axis] per channel), layout per algorithm below;
 *   S  optional CONST float32 state (not trained): the EMA range of ste/dsq
 *      activations, the fixed zero points of lsq.
 * Attributes (ints unless noted): algo (qk_qat_algo), bits, signed,
 * symmetric, narrow, pot (the profile's scheme, used where a range becomes
 * (s, z) through qk_qparams_compute), qn, qp (the clamp range), round
 * (qk_round), axis (-1 per tensor), weight (1: weight semantics), gs (1:
 * LSQ gradient scale 1/sqrt(N Qp)), paper (dorefa: the paper's exact
 * formula, simulation only), ema (float, 0.9).
 *
 *  algo       P                   S              forward (per channel c)
 *  STE        -                   lo[C], hi[C]   range lo..hi (weights: min/max of the current
 *                                                weights; activations: EMA of batch min/max,
 *                                                updated in training forward), clipped STE
 *  DSQ        -                   lo[C], hi[C]   as STE; backward by DSQ's tanh staircase, alpha 0.4
 *  WRPN       -                   -              T = clip(x, -1, 1) (weights) / clip(x, 0, 1)
 *  DOREFA     -                   -              weights T = tanh(x) / max|tanh(x)| on [-1, 1];
 *                                                activations clip(x, 0, 1)
 *  LSQ        s[C]                z[C] or none   s learned (grad scale), z fixed
 *  LSQ_PLUS   s[C], zf[C]         -              z = clamp(RNE(zf)) learned (STE), s learned
 *  PACT       alpha[C]            -              T = clip(x, 0, alpha)
 *  PACT_ASYM  lo[C], alpha[C]     -              T = clip(x, lo, alpha)
 *  PACT_SYM   alpha[C]            -              T = clip(x, -|alpha|, |alpha|)
 *  TQT        log2t[C]            -              s = 2^ceil(log2t) / 2^(b-1) (signed) or / 2^b, z = 0
 * Clip-based ones take (s, z) = qk_qparams_compute(scheme, lo, hi) with s
 * treated as a constant in backward (PACT's estimator). */
#ifndef QK_QAT_INTERNAL_H
#define QK_QAT_INTERNAL_H

#include "qkit/graph.h"
#include "qkit/qat.h"
#include "quant_internal.h"

/* Minimum learned scale (MQBench clamps |s| >= eps). */
#define QK_QAT_EPS 1e-8f
/* DSQ's fixed staircase temperature. */
#define QK_QAT_DSQ_ALPHA 0.4

/* The number of P entries per channel of an algorithm (0, 1 or 2) and of S. */
int qk_qat_n_learned(qk_qat_algo a);
int qk_qat_n_state(qk_qat_algo a, int has_fixed_z);

/* Per-channel quantizer of a QkLearnQuant node, as its forward uses it. */
typedef struct qk_qat_chan {
    float s;          /* scale */
    int32_t z;        /* zero point */
    float lo, hi;     /* clip bounds of T (clip-based algorithms), else -inf/+inf */
    float norm;       /* dorefa weights: max|tanh(x)| of the channel */
} qk_qat_chan;

/* The settings of one node, parsed from its attributes. */
typedef struct qk_qat_attr {
    qk_qat_algo algo;
    qk_qparams scheme; /* bits, signed, symmetric, narrow, pot, round (per tensor) */
    int32_t qn, qp;
    int axis;
    int weight, gs, paper;
    float ema;
} qk_qat_attr;

/* Read the node's attributes into a (QK_ERR_ARG naming the node if bad). */
qk_status qk_qat_attr_parse(const qk_node *n, qk_qat_attr *a);

/* The (s, z, lo, hi, norm) of each of C channels of a node with settings a,
 * learned values P (may be NULL), state S (may be NULL) and input x laid out
 * [outer, C, inner] (read for weight ranges and dorefa's max|tanh|). Exactly
 * what forward uses; the QDQ conversion calls it for the final parameters.
 * QK_ERR_NUMERIC when a parameter is not finite. */
qk_status qk_qat_channels(const qk_qat_attr *a, const float *P, const float *S, const float *x, int64_t outer,
                          int64_t C, int64_t inner, qk_qat_chan *ch);

/* T(x) of one element (the transform before the grid: clip, tanh normalisation). */
static inline float qk_qat_transform(const qk_qat_attr *a, const qk_qat_chan *c, float x)
{
    if (a->algo == QK_QAT_DOREFA && a->weight)
        return tanhf(x) / c->norm;
    return x < c->lo ? c->lo : x > c->hi ? c->hi : x;
}

/* The integer code of T (q = clamp(R(T / s) + z, qn, qp); NaN -> z). */
static inline int32_t qk_qat_code(const qk_qat_attr *a, const qk_qat_chan *c, float t)
{
    float v = t / c->s;
    float r = v != v ? (float)c->z : qk_round_f(v, a->scheme.round) + (float)c->z;
    r = r < (float)a->qn ? (float)a->qn : r > (float)a->qp ? (float)a->qp : r;
    return (int32_t)r;
}

/* Elementwise runs of one channel (qat_run.c; qat_run__avx512.c computes
 * the same bits): y = FQ(T(x)) over n elements; backward adds dL/dx into dx
 * (may be NULL) and the run's parameter-gradient sums (lane order fixed)
 * into acc[0] (first learned entry) and acc[1] (second). qk_lq_use_vec: the
 * AVX-512 bodies apply (not reference mode, the CPU has them, and the
 * algorithm is one they cover: not DSQ, not DoReFa weights). */
int qk_lq_vec_ok(const qk_qat_attr *a);
int qk_lq_use_vec(const qk_qat_attr *a, int reference);
void qk_lq_fwd_run(const qk_qat_attr *a, const qk_qat_chan *c, const float *x, float *y, int64_t n);
void qk_lq_bwd_run(const qk_qat_attr *a, const qk_qat_chan *c, const float *x, const float *dy, float *dx,
                   int64_t n, double acc[2]);
void qk_lq_fwd_run__avx512(const qk_qat_attr *a, const qk_qat_chan *c, const float *x, float *y, int64_t n);
void qk_lq_bwd_run__avx512(const qk_qat_attr *a, const qk_qat_chan *c, const float *x, const float *dy, float *dx,
                           int64_t n, double acc[2]);

/* What a QkLearnQuant node with attribute observe = 1 saw in its last
 * forward: the max of x (of |x| for weights), the largest channel clip
 * (qp - z) s, and the fraction of elements at or below their channel's clip. */
typedef struct qk_lq_observed {
    int valid;
    float max, clip;
    double frac_in;
} qk_lq_observed;
void qk_lq_get_observed(const qk_node *n, qk_lq_observed *o);

/* The report (qat_report.c): per epoch and site, what qk_lq_get_observed says. */
typedef struct qk_qat_report qk_qat_report;
qk_status qk_qat_report_record_(qk_qat_report **r, const qk_graph *g, int epoch);
void qk_qat_report_free_(qk_qat_report *r);
qk_qat_report **qk_qat_report_(qk_qat *q);

/* --progressive: run every learnable quantizer at max(its own width, bits)
 * (qat_op.c documents the rescaling). */
qk_status qk_qat_set_stage_bits_(qk_graph *g, int bits);

/* DSQ soft staircase in grid units (u = x / s): the soft value Q_S(u) and its
 * slope dQ_S/du, alpha in (0, 1) (ALGORITHMS.md section 4 "DSQ"). */
void qk_qat_dsq(double u, double alpha, double *soft, double *slope);

/* DoReFa's paper forward for k bits (k = 1: mean|w| sign(w), sign(0) = +1),
 * over n weights with one normalisation (simulation only: its grid has a
 * half-integer zero point). */
void qk_qat_dorefa_paper(int k, int64_t n, const float *w, float *y);

/* BN-folding strategies 1-4 (qat_bn.c; operators in qat_bn_op.c). */
typedef struct qk_qat_bn qk_qat_bn;
/* Before the PTQ prepare: record every Conv/Gemm -> BatchNormalization pair,
 * then qk_fold_bn (*n_folded); QK_ERR_UNSUPPORTED when a BN was folded that
 * does not directly follow its layer (chains). */
qk_status qk_qat_bn_fold_(qk_graph *g, int strategy, qk_qat_bn **out, int *n_folded);
/* After the prepare: QK_ERR_UNSUPPORTED when the profile quantizes a folded bias. */
qk_status qk_qat_bn_check_(const qk_qat_bn *b, const qk_graph *g);
/* The training form of every pair (after the learnable quantizers are in
 * place; the caller binds); qk_qat_bn_finish_ writes the folded layers back
 * (running statistics) and removes the training nodes. NULL b: nothing. */
qk_status qk_qat_bn_install_(qk_qat_bn *b, qk_graph *g);
qk_status qk_qat_bn_finish_(qk_qat_bn *b, qk_graph *g);
/* --freeze-bn: every QkBnStats passes the running statistics through, and
 * every BatchNormalization kept in float runs in eval mode (attribute
 * qkit_frozen, removed by qk_qat_finish). */
qk_status qk_qat_bn_freeze_(qk_graph *g);
/* --freeze-bn has batch statistics to freeze: strategies 2-4, or BN the
 * profile keeps in float (no --bn-fold on a profile that does not fold). */
int qk_qat_bn_freezable_(const qk_qat_config *c);
int qk_qat_bn_count_(const qk_qat_bn *b);
void qk_qat_bn_free_(qk_qat_bn *b);

/* --widen K (qat_widen.c, WRPN): every Conv / Gemm with a weighted layer
 * downstream gets K times its output channels, the readers' input weights
 * split over the copies so the function is unchanged; *n_widened layers.
 * QK_ERR_UNSUPPORTED naming the node for a structure it cannot widen (the
 * graph unchanged). K < 2: nothing. */
qk_status qk_qat_widen_(qk_graph *g, int K, int *n_widened);

/* Session internals shared by qat.c (owner of struct qk_qat) and qat_train.c. */
qk_status qk_qat_install_(qk_qat *q);                 /* learnable quantizers in place (once) */
void qk_qat_set_diverged_(qk_qat *q, int diverged);   /* 1: the last training failed numerically */
const qk_qat_config *qk_qat_config_(const qk_qat *q);
qk_norm qk_qat_norm_(const qk_qat *q);                /* from the calibration call */
/* "backend=B wbits=W abits=A algo=X w_algo=Y": what a checkpoint must match. */
const char *qk_qat_signature_(const qk_qat *q, char *buf, size_t n);

#endif
