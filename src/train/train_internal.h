/* Private to src/train: optimizer layout (read by the checkpoint code) and
 * the trainer's resumable state. */
#ifndef QKIT_TRAIN_INTERNAL_H
#define QKIT_TRAIN_INTERNAL_H

#include "qkit/train.h"

typedef struct qk_optim_param {
    int value;         /* PARAM value index in the graph */
    int64_t n;         /* elements */
    qk_param_opts o;
    float *buf;        /* SGD momentum buffer / Adam first moment [n] */
    float *buf2;       /* Adam second moment [n] */
    int has_buf;       /* SGD: momentum buffer holds a value (PyTorch: None before step 1) */
    int64_t steps;     /* updates applied to this parameter (Adam's t) */
} qk_optim_param;

struct qk_optim {
    qk_graph *g;
    qk_optim_config c;
    int n;
    qk_optim_param *p;
    int64_t steps;
};

/* Where a training run stands; everything needed to resume exactly. */
typedef struct qk_train_state {
    uint64_t config_hash;
    uint64_t seed;
    int64_t epoch;          /* completed epochs */
    int64_t batch_in_epoch; /* batches done in epoch `epoch` */
    int64_t step;           /* optimizer steps done */
    double ep_loss_sum;     /* sum over the epoch's batches of loss * batch size */
    int64_t ep_correct, ep_seen;
} qk_train_state;

/* Atomic write (path.tmp + fsync + rename) of g's PARAM/CONST values and
 * metadata, o's state (may be NULL) and s. */
qk_status qk_ckpt_save(const char *path, const qk_graph *g, const qk_optim *o, const qk_train_state *s);
/* Restore g's PARAM/CONST values (all must be present, same shapes),
 * metadata, o's state (every tracked parameter must be present; o may be
 * NULL) and *s (may be NULL). When expect_hash != 0 a different config hash
 * is refused with QK_ERR_ARG. */
qk_status qk_ckpt_load(const char *path, qk_graph *g, qk_optim *o, qk_train_state *s, uint64_t expect_hash);

/* 64-bit FNV-1a. */
static inline uint64_t qk_fnv1a(uint64_t h, const void *data, size_t n)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}
#define QK_FNV_INIT 0xcbf29ce484222325ull

#endif
