/* Private: the observer object shared by observer.c (interface, moment and
 * min/max based kinds) and observer_hist.c (kl, pot-mse, pot-kl). */
#ifndef QK_OBSERVER_INTERNAL_H
#define QK_OBSERVER_INTERNAL_H

#include "quant_internal.h"

typedef struct qk_obs_kind {
    const char *name;
    int per_channel;  /* per-channel supported */
    int needs_pot;    /* pot-*: needs pot, symmetric, per tensor */
    /* one batch: x is float32 viewed as l; o->nch == l->ch, scratch ready */
    qk_status (*update)(qk_observer *o, const float *x, const qk_q_lay *l);
    qk_status (*range)(qk_observer *o, float *mn, float *mx);
    qk_status (*qparams)(qk_observer *o, float *s, int32_t *z); /* NULL: from range */
} qk_obs_kind;

#define QK_OBS_SLOTS 8   /* per-channel double state arrays */
#define QK_OBS_WORK 6    /* per-channel double batch-statistics arrays */
#define QK_POT_F_OFF 512 /* pot mode histogram covers f in [-512, 512) */

struct qk_observer {
    const qk_obs_kind *kind;
    qk_qparams qp;
    qk_observer_opts opt;  /* defaults resolved */
    int kl_levels_auto;    /* opt.kl_levels took the default (kl: 2^bits for non-negative tensors) */
    int32_t qn, qmax;      /* code range */
    double aciq_mult[2];   /* aciq: alpha*(bits) two-sided, one-sided */
    int64_t nch;           /* channels, 0 before the first update */
    int64_t nbatch;        /* batches seen (non-empty) */
    double *s[QK_OBS_SLOTS]; /* kind state, nch each, zeroed */
    double *w[QK_OBS_WORK];  /* batch statistics: min, max, mean, m2, absdev, n */
    double *hist;            /* kl / pot-kl: |x| histogram (opt.bins), percentile scratch */
    double hrange;           /* histogram covers [0, hrange) */
    double hzeros;           /* zeros seen while hrange == 0 */
    double *ring;            /* mavg-absmax window: opt.window * nch batch maxima */
    int64_t *fcount;         /* pot-mse: per-batch f votes, index f + QK_POT_F_OFF */
    qk_pool *pool;           /* borrowed for one update (qk_observer_update_pool); NULL: serial */
    int reference;           /* for one update: portable loops only (the graph option) */
    void *scan;              /* scratch of the pooled scans (observer_scan.c) */
    size_t scan_bytes;
};

/* qk_observer_update_pool with the scans' kernel choice: reference = 1
 * runs the portable loops (FakeQuant passes its graph's option). */
qk_status qk_obs_update(qk_observer *o, const qk_tensor *x, qk_pool *pool, int reference);

/* Per-channel batch statistics into o->w: w[0] min, w[1] max, w[2] mean,
 * w[3] sum (x-mean)^2 and w[4] sum |x-mean| (only when second_pass),
 * w[5] count. QK_ERR_NUMERIC on NaN/Inf. */
qk_status qk_obs_batch_stats(qk_observer *o, const float *x, const qk_q_lay *l, int second_pass);

/* Scans of one per-tensor batch x[0..n) (observer_scan.c), in chunks over
 * pool (NULL: serial), the same for any thread count:
 * qk_obs_scan_minmax: its min and max as qk_obs_batch_stats finds them (the
 * first of equal values, so a zero keeps its sign); QK_ERR_NUMERIC on
 * NaN/Inf. qk_obs_scan_hist: o->hist[min((int64_t)(|x| k), bins - 1)] += 1
 * for every element (x finite, |x| k <= bins). */
qk_status qk_obs_scan_minmax(qk_observer *o, const float *x, int64_t n, qk_pool *pool, double *mn, double *mx);
qk_status qk_obs_scan_hist(qk_observer *o, const float *x, int64_t n, double k, qk_pool *pool);
/* Their kernels on one chunk. minmax: 0 if a value is not finite (the
 * extremes are then unspecified). absbins: counts into cnt[0..2 nb) (two
 * copies of the nb bins; a bin's count is the sum of both). */
int qk_obs_minmax(const float *x, int64_t n, float *mn, float *mx);
int qk_obs_minmax__avx512(const float *x, int64_t n, float *mn, float *mx);
void qk_obs_absbins(const float *x, int64_t n, double k, int nb, uint32_t *cnt);
void qk_obs_absbins__avx512(const float *x, int64_t n, double k, int nb, uint32_t *cnt);

extern const qk_obs_kind qk_obs_kl, qk_obs_pot_mse, qk_obs_pot_kl;

#endif
