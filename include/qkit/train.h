/* qkit training layer: optimizers (SGD momentum/nesterov, Adam) with
 * parameter groups, learning-rate schedules, the trainer loop with atomic
 * checkpoints and exact resume, and evaluation.
 *
 * Example, a short run (`make test` runs it):
 *
 *   qk_graph *g;
 *   qk_dataset all;
 *   if (qk_zoo_build("lenet", 1, &g) != QK_OK || qk_dataset_load_dir(NULL, "train", &all) != QK_OK)
 *       return 1;
 *   qk_dataset train = qk_dataset_view(&all, 0, 512), test = qk_dataset_view(&all, 512, 256);
 *   qk_train_config cfg; qk_train_config_default(&cfg);   // the reference recipe
 *   cfg.epochs = 1; cfg.epoch_steps = 4; cfg.batch = 64;   // a few steps only
 *   cfg.progress = 0;
 *   // cfg.checkpoint = "lenet.qkck";                    // atomic, resumable
 *   qk_train_result r;
 *   qk_status st = qk_train(g, &train, NULL, &cfg, NULL, &r);
 *   qk_eval_result e;
 *   if (st == QK_OK)
 *       st = qk_evaluate(g, &test, cfg.norm, 128, NULL, &e);   // e.top1
 *   if (st != QK_OK)
 *       fprintf(stderr, "%s\n", qk_last_error());
 *   qk_graph_destroy(g);
 *   qk_dataset_free(&all);
 *   if (st != QK_OK || r.steps != 4)
 *       return 1;
 * (end of example)
 *
 * Semantics matched (PyTorch 1.13):
 *  - SGD: g' = g + wd * p (wd skipped for no_decay params); buf = m * buf + g'
 *    (buf = g' on the first step, dampening 0); nesterov: d = g' + m * buf,
 *    else d = buf; p -= lr * d.
 *  - Adam: g' = g + wd * p (L2, not AdamW); m = b1*m + (1-b1)*g';
 *    v = b2*v + (1-b2)*g'^2; p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
 *  - Schedule, stepped PER ITERATION (CosineAnnealingLR with T_max = total
 *    optimizer steps, eta_min 0, scheduler.step() after every optimizer step,
 *    as bench/torch_peer.py does): step s (0-based) of T uses
 *    lr(s) = base * 0.5 * (1 + cos(pi * s / T)). With W warm-up steps:
 *    s < W: base * (s + 1) / W; then cosine over the remaining T - W steps
 *    (s' = s - W, T' = T - W).
 *  - Loss: ONNX SoftmaxCrossEntropyLoss, reduction mean (= F.cross_entropy).
 *  - Epoch: a fresh shuffle of the training set (seeded by seed + epoch),
 *    ceil(n / batch) steps, the last batch partial (drop_last = False).
 *
 * Thread safety: one training or evaluation per graph at a time (graph.h);
 * different graphs train in parallel. Checkpoint files must not be shared
 * by two runs.
 */
#ifndef QKIT_TRAIN_H
#define QKIT_TRAIN_H

#include "data.h"
#include "graph.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- optimizers ---- */
typedef enum qk_optim_kind { QK_OPTIM_SGD = 0, QK_OPTIM_ADAM = 1 } qk_optim_kind;

typedef struct qk_optim_config {
    qk_optim_kind kind;
    float momentum;          /* SGD; 0 = plain SGD */
    int nesterov;            /* SGD; needs momentum > 0 */
    float weight_decay;      /* L2 coefficient added to the gradient */
    float beta1, beta2, eps; /* Adam (0.9, 0.999, 1e-8) */
} qk_optim_config;

/* Settings of one parameter (a "parameter group" entry). */
typedef struct qk_param_opts {
    float lr_mult;      /* this parameter's lr = scheduled lr * lr_mult (default 1) */
    float weight_decay; /* default: config weight_decay, 0 for values marked no_decay */
    int kind;           /* qk_optim_kind for this parameter (default: the config's) */
    int frozen;         /* 1: never updated (default 0) */
} qk_param_opts;

typedef struct qk_optim qk_optim;

/* Track every PARAM value of g (in value order) with default qk_param_opts;
 * allocates all state buffers now (momentum / Adam moments, zero), none
 * later. Parameters added to g afterwards are not tracked. */
qk_status qk_optim_create(qk_graph *g, const qk_optim_config *c, qk_optim **out);
void qk_optim_destroy(qk_optim *o);
/* Change the settings of PARAM value `value` (QK_ERR_NOTFOUND if untracked). */
qk_status qk_optim_set_param(qk_optim *o, int value, const qk_param_opts *p);
qk_status qk_optim_get_param(const qk_optim *o, int value, qk_param_opts *p);
/* One update of every tracked parameter from its grad (values[i].grad,
 * filled by qk_graph_backward) with base learning rate lr. No allocation.
 * QK_ERR_STATE if a parameter has no gradient buffer (graph not planned for
 * training). */
qk_status qk_optim_step(qk_optim *o, float lr);
int64_t qk_optim_step_count(const qk_optim *o); /* steps taken (Adam's t) */
/* Reset state to zero buffers and step count 0. */
void qk_optim_reset(qk_optim *o);

/* ---- schedules ---- */
typedef enum qk_sched_kind { QK_SCHED_COSINE = 0, QK_SCHED_CONSTANT = 1 } qk_sched_kind;
/* Learning rate of 0-based optimizer step `step` of `total` (see top). */
float qk_sched_lr(qk_sched_kind kind, float base_lr, int64_t warmup, int64_t step, int64_t total);

/* ---- trainer ---- */
typedef struct qk_epoch_stats {
    int epoch, epochs;           /* epoch just finished (1-based), planned epochs */
    int64_t step, total_steps;   /* optimizer steps done so far, planned in all */
    float lr;                    /* lr of the last step */
    double train_loss, train_top1; /* over this epoch's training batches (augmented) */
    double test_top1, test_loss; /* -1 when there is no test set */
    double images_per_s;         /* training compute only (forward+backward+step) */
    double seconds;              /* wall time of the epoch, evaluation included */
} qk_epoch_stats;

/* Called after every epoch; return nonzero to stop training (not an error). */
typedef int (*qk_train_epoch_fn)(void *user, const qk_epoch_stats *s);
/* Called after every optimizer step (e.g. QAT schedules); an error stops training. */
typedef qk_status (*qk_train_step_fn)(void *user, qk_graph *g, int64_t step, float loss);
/* Called once per PARAM value before training: adjust its opts (parameter
 * groups, e.g. a separate lr for quantizer parameters). */
typedef void (*qk_train_param_fn)(void *user, const qk_graph *g, int value, qk_param_opts *o);

typedef struct qk_train_config {
    qk_optim_config optim;   /* SGD, momentum 0.9, nesterov, wd 5e-4 */
    float lr;                /* 0.05 */
    qk_sched_kind sched;     /* QK_SCHED_COSINE */
    int64_t warmup_steps;    /* 0 */
    int epochs;              /* 8 */
    int64_t epoch_steps;     /* 0 = full epochs; > 0 caps the steps of every epoch and the
                                schedule spans epochs * epoch_steps (torch_peer.py --steps) */
    int64_t max_steps;       /* 0 = none; stop once this many optimizer steps were taken in all
                                (the schedule is unchanged; not part of the config hash) */
    int batch;               /* 128 */
    qk_augment aug;          /* flip 1, crop_pad 2 */
    qk_norm norm;            /* 0.2860 / 0.3530 */
    uint64_t seed;           /* 1: shuffling and augmentation */
    const char *checkpoint;  /* NULL or path written (atomically) after every epoch and
                                when stopping early */
    const char *resume;      /* NULL or a checkpoint to continue from */
    int progress;            /* -1: progress line when stderr is a terminal; 0 off; 1 on */
    void *user;              /* passed to the callbacks */
    qk_train_param_fn param_opts;
    qk_train_epoch_fn on_epoch;
    qk_train_step_fn on_step;
    qk_graph *teacher;       /* NULL, or a bound float model with the model's input and output
                                shapes (borrowed; planned here for inference at `batch`, unplanned
                                on return): it runs on every training batch (the same augmented,
                                normalized images) and the loss becomes cross-entropy +
                                kd_w * kd_t^2 * KL(softmax(teacher / kd_t) || softmax(model / kd_t))
                                (Hinton et al. 2015; batch mean; op QkDistillLoss). Part of the
                                config hash (with kd_t, kd_w) only when set. */
    float kd_t;              /* distillation temperature (4) */
    float kd_w;              /* distillation weight (1) */
} qk_train_config;

void qk_train_config_default(qk_train_config *c);
/* FNV-1a hash of every field that shapes the trajectory (optimizer, lr,
 * schedule, epochs, epoch_steps, batch, augmentation, norm, seed) and the
 * training set size. A checkpoint written under another hash is refused. */
uint64_t qk_train_config_hash(const qk_train_config *c, int64_t n_train);

typedef struct qk_train_result {
    int epochs_done;         /* complete epochs */
    int64_t steps;           /* optimizer steps in all (resumed ones included) */
    double train_loss;       /* mean training loss of the last epoch, or of the steps run in an epoch cut short by max_steps */
    double test_top1, test_loss; /* last evaluation (-1: none) */
    double images_per_s;     /* training compute throughput over this call */
    double seconds;          /* wall time of this call */
    int stopped_early;       /* max_steps or on_epoch stopped before the last epoch */
} qk_train_result;

/* Train g (a float model with one input [N,C,H,W] and one output [N,classes],
 * e.g. from the zoo or ONNX import) on train, evaluating on test (may be
 * NULL) after each epoch. The loop plans the graph once for cfg->batch
 * (qk_graph_set_batch for the last partial batch) and does not allocate per
 * step. For training a labels input and a SoftmaxCrossEntropyLoss node are
 * appended to g; they are removed again before returning (success or not), so
 * g is the model graph, unplanned, with trained parameters, updated BN
 * statistics and metadata "qkit.norm.*" set from cfg->norm.
 * Errors: QK_ERR_NUMERIC on a NaN/Inf loss (names the step, suggests a lower
 * lr); QK_ERR_ARG for bad config; QK_ERR_FORMAT / QK_ERR_ARG for a checkpoint
 * that does not match the model or config; I/O errors from checkpointing. */
qk_status qk_train(qk_graph *g, const qk_dataset *train, const qk_dataset *test,
                   const qk_train_config *cfg, qk_pool *pool, qk_train_result *res);

/* ---- checkpoints ----
 * File format "QKCK" version 1 (little-endian), documented in
 * src/train/checkpoint.c: header (magic, version, config hash, epoch,
 * step, seed), metadata key/values, then every PARAM and CONST value by name
 * (dtype, dims, data), then optimizer state buffers by parameter name.
 * Written to "<path>.tmp" and renamed over path. */
typedef struct qk_ckpt_info {
    uint32_t version;
    uint64_t config_hash;
    int64_t epoch;           /* completed epochs */
    int64_t batch_in_epoch;  /* batches done in the current (incomplete) epoch; 0 at an epoch end */
    int64_t step;            /* optimizer steps done */
    uint64_t seed;
    char arch[64];           /* metadata "qkit.arch" or "" */
} qk_ckpt_info;
qk_status qk_checkpoint_info(const char *path, qk_ckpt_info *info);
/* Load the PARAM and CONST values (and metadata) of a checkpoint into g by
 * name: every PARAM/CONST of g must be present with the same shape
 * (QK_ERR_FORMAT names the value otherwise); optimizer state is skipped. */
qk_status qk_checkpoint_load_params(const char *path, qk_graph *g);

/* ---- evaluation ---- */
typedef struct qk_eval_result {
    double top1;         /* fraction correct in [0, 1] */
    int64_t images, correct;
    double loss;         /* mean cross-entropy of the logits */
    double images_per_s; /* forward compute time only (data preparation excluded) */
    double seconds;      /* compute seconds */
} qk_eval_result;

/* Eval-mode forward (BN running statistics) of g over ds in dataset order,
 * normalized with norm, no augmentation. Binds unbound ops; plans g for
 * inference at batch unless it is already planned for inference with a
 * maximum batch >= batch (left planned on return). g->outputs[0] must be
 * [N, classes] scores. */
qk_status qk_evaluate(qk_graph *g, const qk_dataset *ds, qk_norm norm, int batch, qk_pool *pool,
                      qk_eval_result *r);
/* The same; pred (ds->n entries, may be NULL) receives each image's
 * predicted class (first maximum). */
qk_status qk_evaluate_preds(qk_graph *g, const qk_dataset *ds, qk_norm norm, int batch, qk_pool *pool,
                            qk_eval_result *r, int32_t *pred);

/* Agreement of a model with a reference (its float model), for data
 * without labels. Over all images: */
typedef struct qk_agree_result {
    int64_t images;
    double top1;    /* fraction where both give the same class (first maximum) */
    double top5;    /* fraction where the reference's class is among the model's 5 highest
                       (all classes when there are fewer than 5) */
    double sqnr_db; /* 10 log10(sum ref^2 / sum (ref - out)^2) over every output value;
                       INFINITY when the outputs are identical */
    double cosine;  /* mean over images of the cosine similarity of the output rows */
    double seconds; /* compute seconds (both models) */
} qk_agree_result;
/* Runs ref and g (eval mode; both bound and planned as qk_evaluate does)
 * on the same normalized batches of ds (labels ignored) and compares
 * g->outputs[0] with ref->outputs[0] ([N, classes] each, same classes).
 * Errors: as qk_evaluate (shapes name the data and the input), QK_ERR_SHAPE
 * when the outputs differ in shape. */
qk_status qk_evaluate_agreement(qk_graph *ref, qk_graph *g, const qk_dataset *ds, qk_norm norm, int batch,
                                qk_pool *pool, qk_agree_result *r);

#ifdef __cplusplus
}
#endif
#endif
