/* qkit quant layer, part 4: quantization-aware training (QAT). A float model
 * is prepared and calibrated exactly as `qkit ptq` does (same backend
 * profile, same placement, BN folded where the profile folds it), each
 * quantization site then becomes a learnable quantizer operator
 * (QkLearnQuant, domain ai.qkit, forward and backward through the graph's
 * autodiff) initialised from the calibration, the model is trained with
 * qkit's trainer, and the learned scales / zero points go back into the
 * sites so the same QDQ file as `qkit ptq --out` is written (qkit eval,
 * eval --real / --compare and export take it unchanged).
 *
 *   qk_graph *g; qk_onnx_load("lenet.onnx", &g);
 *   qk_qat_config c; qk_qat_config_default(&c);
 *   c.ptq.backend = qk_backend_find("academic");
 *   c.ptq.wbits = c.ptq.abits = 4;
 *   c.algo = QK_QAT_LSQ;                       // c.w_algo: another one for weights
 *   c.bn_fold = 4;                             // PyTorch-style ConvBn (section 6); -1: the profile's
 *   c.freeze_bn = 3;                           // BN statistics frozen after epoch 3
 *   // c.train.teacher = teacher;              // distillation (c.train.kd_t, kd_w)
 *   c.train.epochs = 4;                        // trainer recipe: SGD nesterov, cosine
 *   qk_qat *q;
 *   qk_qat_prepare(g, &c, &q);                 // takes g; refuses undeployable algorithms
 *   qk_qat_calibrate(q, &train, norm, pool);   // PTQ start: evaluate qk_qat_graph(q) now
 *   qk_qat_result r;
 *   qk_qat_train(q, &train, &test, pool, &r);  // learnable quantizers, divergence guard
 *   qk_qat_save_qdq(q, "lenet_w4a4.onnx");     // learned qparams -> QDQ file
 *   qk_qat_destroy(q);
 *
 * Algorithms (formulas: docs/ALGORITHMS.md section 4): ste (fixed range:
 * weights min/max, activations an EMA min/max observer updated in training
 * forward; clipped STE), pact (learned clip alpha; L2 on alpha = its weight
 * decay; sites with negative values get a learned lower bound too: asymmetric
 * PACT on affine profiles, pact-sym on symmetric ones), pact-sym, pact-asym,
 * dorefa (weights tanh(w)/max|tanh(w)| on the profile's grid over [-1, 1];
 * activations clip [0, 1]), wrpn (fixed [-1, 1] / [0, 1]), lsq (learned
 * scale, gradient scale 1/sqrt(N Qp); paper_init: weights initialised
 * 2 mean|w|/sqrt(Qp)), lsq+ (lsq plus a learned zero point on activations;
 * paper_init: weights max(|mu-3sigma|, |mu+3sigma|)/2^(b-1)), dsq (ste forward, tanh soft
 * staircase backward, alpha 0.4), tqt (learned log2 threshold, power-of-two
 * scale). Activation methods (pact*) train weights with lsq unless w_algo
 * says otherwise. Clip-to-[0, 1] activation methods (dorefa, wrpn) keep
 * sites with negative values (e.g. the normalised network input) at ste.
 *
 * BN folding (bn_fold, docs/ALGORITHMS.md section 6): 0 folds once and
 * trains the folded conv; 1-4 place and calibrate on the folded conv too,
 * then train each Conv/Gemm + BN pair in the strategy's form (graph
 * operators QkBnFoldW, QkBnStats, QkBnAffine, QkBnUnscale, with backward)
 * and write it back folded with the running statistics, so every strategy
 * gives the same kind of QDQ file. freeze_bn: strategies 2-4, and BN a
 * profile keeps in float (academic without bn_fold), switch to the running
 * statistics after that many epochs.
 *
 * Distillation: c.train.teacher (a float model with the same input and
 * output shapes, checked by qk_qat_prepare: QK_ERR_ARG otherwise) adds
 * kd_w * kd_t^2 * KL(softmax(teacher / kd_t) || softmax(model / kd_t)).
 *
 * Refused with QK_ERR_UNSUPPORTED and the reason: a profile without a linear
 * integer grid (nnie), widths outside 2..8 or the profile's range, hooks,
 * bit allocation; bn_fold 1-4 on a profile that quantizes biases (vitis);
 * lsq / lsq+ on power-of-two profiles (their scales are
 * learned floats); tqt on float-scale profiles other than academic; lsq+ on
 * profiles with symmetric activations (zero point fixed at 0).
 *
 * Divergence guard: a non-finite loss, gradient or learned parameter stops
 * training before the parameters are used again; the run rolls back to the
 * last good state (the last checkpoint this run wrote or resumed from, else
 * the state before training), halves the learning rate of every parameter
 * and goes on (logged as a warning); after max_retries rollbacks it fails
 * with QK_ERR_NUMERIC. A model is never written from non-finite values, nor
 * after a run that failed this way (qk_qat_finish and qk_qat_save_qdq refuse).
 *
 * Thread safety: a QAT run and its graph are used by one thread at a time;
 * different runs may proceed in parallel.
 */
#ifndef QKIT_QAT_H
#define QKIT_QAT_H

#include "ptq.h"
#include "train.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Frozen values. */
typedef enum qk_qat_algo {
    QK_QAT_STE = 0,
    QK_QAT_PACT = 1,
    QK_QAT_PACT_SYM = 2,
    QK_QAT_PACT_ASYM = 3,
    QK_QAT_DOREFA = 4,
    QK_QAT_WRPN = 5,
    QK_QAT_LSQ = 6,
    QK_QAT_LSQ_PLUS = 7,
    QK_QAT_DSQ = 8,
    QK_QAT_TQT = 9,
    QK_QAT_COUNT = 10
} qk_qat_algo;

/* "ste", "pact", "pact-sym", "pact-asym", "dorefa", "wrpn", "lsq", "lsq+", "dsq", "tqt". */
const char *qk_qat_algo_name(qk_qat_algo a);
/* QK_ERR_NOTFOUND listing the valid names. */
qk_status qk_qat_algo_parse(const char *s, qk_qat_algo *out);

/* Default quantizer lr as a share of the model lr (qk_qat_config.q_lr). */
#define QK_QAT_Q_LR_RATIO (1.0f / 30.0f)
/* Default model lr (qk_qat_config.train.lr <= 0): QK_QAT_LR_BN where the
 * trained graph keeps its BatchNormalization layers (academic profile
 * without bn_fold), QK_QAT_LR_FOLDED where BN is folded into the convs
 * before training (every folding profile, bn_fold 0-4) or absent. */
#define QK_QAT_LR_BN 0.01f
#define QK_QAT_LR_FOLDED 0.003f
/* Default activation observer of the calibration that initialises the
 * quantizers (qk_qat_config.ptq.a_observer NULL): QK_QAT_A_OBSERVER_LOW for
 * activations of QK_QAT_LOW_ABITS bits or fewer where the profile's own
 * observer is min-max (the academic profile), else the profile's. Measured
 * on mobilenetv2s academic W4A4 (bench/RESULTS.md): PTQ start 51.04% ->
 * 80.67%, QAT lsq 90.62% -> 91.45%. */
#define QK_QAT_A_OBSERVER_LOW "mse"
#define QK_QAT_LOW_ABITS 4

typedef struct qk_qat_config {
    qk_ptq_config ptq;      /* backend (required), wbits, abits, observers, first_last_bits,
                               per_tensor_weights, exclude (as qkit ptq); a_observer NULL: the
                               profile's, but QK_QAT_A_OBSERVER_LOW (mse) for activations of 4 bits
                               or fewer on a min-max profile; no cross-layer equalization or bias
                               correction (the default sets ptq.cle and ptq.bias_correct to -1; 0,
                               the profile's PTQ default, is taken as -1 too; 1 is
                               QK_ERR_UNSUPPORTED) */
    qk_qat_algo algo;       /* activation algorithm (and weights unless w_algo >= 0) */
    int w_algo;             /* -1: algo (lsq for the activation-only pact methods) */
    int64_t calib;          /* calibration images (default 512) */
    qk_train_config train;  /* the trainer recipe; defaults: lr <= 0 (automatic, resolved by
                               qk_qat_prepare: 0.01 while BatchNormalization stays in the trained
                               graph, 0.003 where BN is folded or absent; measured on resnet8:
                               academic W4A4 gains at 0.01, tensorrt W8A8 collapses there),
                               4 epochs; else the float recipe */
    float q_lr;             /* quantizer parameters' lr; <= 0: train.lr * QK_QAT_Q_LR_RATIO
                               (0.00033 / 0.0001 at the default lrs; at train.lr itself, 8-bit lsq weight
                               steps, a few thousandths, overshoot and kill channels) */
    float q_wd;             /* their weight decay; < 0: 1e-4 on the clips of pact, pact-sym and
                               pact-asym sites (PACT's L2 on alpha), 0 on step sizes and
                               thresholds */
    int max_retries;        /* divergence guard rollbacks before failing (default 3) */
    int paper_init;         /* 1: weight scales from the papers' rules (lsq 2 mean|w|/sqrt(Qp), lsq+
                               max(|mu-3sigma|, |mu+3sigma|)/2^(b-1)); 0 (default): from the
                               calibration, so training starts at the PTQ model */
    int bn_fold;            /* -1 (default): the profile's (folding profiles fold BN once before
                               QAT, docs/ALGORITHMS.md section 6 strategy 0; academic keeps BN
                               in float); 0: strategy 0 on any profile; 1-4: strategies 1-4 of
                               section 6 (1: running statistics, frozen; 2: weights folded with
                               batch statistics; 3: folded with running statistics plus the
                               sd/sd_B correction; 4: PyTorch's ConvBn, a real BN on the
                               unscaled conv), each a pair of passes only where the strategy
                               says so; every one deploys the folded conv with running
                               statistics. A model without BN: a logged note. */
    int freeze_observer;    /* > 0: the EMA ranges of ste/dsq activations stop updating after
                               this many epochs (0: never) */
    int progressive;        /* 1: lower the width in stages 8, 6, ... down to the target (epochs
                               spread evenly; each stage its own cosine schedule, starting from
                               the previous stage's quantizers, clip ranges kept); a
                               checkpoint records its stage and --resume goes on from it */
    int report;             /* 1: record, at the end of every epoch, each quantizer's clip, the
                               max of its input in the epoch's last batch and the percentage of
                               values within the clip (qk_qat_write_report) */
    int freeze_bn;          /* > 0, bn_fold 2-4 or BN kept in float (bn_fold -1 on a profile
                               that keeps BN): after this many epochs BN uses its running
                               statistics and stops updating them (0: never; other strategies
                               have no batch statistics: a logged note) */
    int widen;              /* >= 2: WRPN's width multiplier applied to the float model first:
                               every Conv / Gemm but the last gets widen times its output
                               channels, copies of the trained ones, and the next layer's input
                               weights are split over the copies (shares 2(j+1)/(K(K+1)), unequal
                               so the copies can diverge) so the function is unchanged; 0, 1:
                               none. QK_ERR_UNSUPPORTED for a structure it cannot widen
                               (Concat, Reshape, grouped convs, ...) */
} qk_qat_config;

void qk_qat_config_default(qk_qat_config *c);

typedef struct qk_qat qk_qat;

/* Takes ownership of g (destroyed on error too). Checks the algorithms
 * against the profile (see the top), then qk_ptq_prepare. */
qk_status qk_qat_prepare(qk_graph *g, const qk_qat_config *c, qk_qat **out);
void qk_qat_destroy(qk_qat *q);
qk_graph *qk_qat_graph(qk_qat *q);
qk_qmodel *qk_qat_qmodel(qk_qat *q);
/* The PTQ plan, then the algorithm of every site. */
void qk_qat_print_plan(const qk_qat *q, FILE *f);
/* PTQ calibration on the first c->calib training images (the configured
 * observers, else the profile's; mse for low-bit activations, see
 * QK_QAT_A_OBSERVER_LOW); afterwards qk_qat_graph evaluates the PTQ starting point. */
qk_status qk_qat_calibrate(qk_qat *q, const qk_dataset *train, qk_norm norm, qk_pool *pool);

typedef struct qk_qat_result {
    qk_train_result train;  /* of the last (successful) trainer call */
    int rollbacks;          /* divergence guard rollbacks */
    float lr_scale;         /* learning-rate factor in effect at the end (0.5^rollbacks) */
    float lr;               /* the model lr used (train.lr, or the automatic default) */
} qk_qat_result;

/* Replace every site by its learnable quantizer (first call), then train
 * with c->train (cfg.norm is taken from the calibration call). Checkpoints
 * (c->train.checkpoint) hold the learned quantities and the EMA ranges;
 * c->train.resume continues bit-identically. Afterwards the graph holds the
 * learnable quantizers; qk_qat_finish turns them into the deployed form. */
qk_status qk_qat_train(qk_qat *q, const qk_dataset *train, const qk_dataset *test, qk_pool *pool,
                       qk_qat_result *r);
/* Learned scales / zero points into the FakeQuant sites, weights re-quantized
 * with them (idempotent). The graph then evaluates exactly what the QDQ file
 * computes. QK_ERR_NUMERIC if a weight or learned value is not finite. */
qk_status qk_qat_finish(qk_qat *q);
/* The recorded report (c.report = 1) as JSON and / or a self-contained SVG
 * chart, clip vs max per tensor over the epochs (either path may be NULL;
 * atomic). QK_ERR_STATE when nothing was recorded. */
qk_status qk_qat_write_report(qk_qat *q, const char *json_path, const char *svg_path);
/* qk_qat_finish, then the QDQ file of qk_ptq_save_qdq (atomic). */
qk_status qk_qat_save_qdq(qk_qat *q, const char *path);

#ifdef __cplusplus
}
#endif
#endif
