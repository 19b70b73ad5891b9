/* Private to recon.c and recon_model.c: one layer in the form the
 * reconstruction optimizer works on. Not a public header. */
#ifndef QK_RECON_INTERNAL_H
#define QK_RECON_INTERNAL_H

#include "ptq_internal.h"
#include "qkit/ops.h"

/* Fills Xf and Xq ([groups*kg, M] row-major, leading dimension M, M <=
 * max_cols): the float and the quantized input columns of one batch
 * (QK_RECON_QDROP: Xq already mixed with Xf). */
typedef qk_status (*recon_sample_fn)(void *ctx, qk_rng *rng, const qk_recon_config *c, float *Xf, float *Xq,
                                     int64_t *M);

/* y[o] = act(post_a[o] * (W x)[o] + post_b[o]); W [co, kg], group g's rows
 * [g co/groups, (g+1) co/groups) read input rows [g kg, (g+1) kg). */
typedef struct recon_layer {
    int64_t co, kg, groups;
    const float *w;         /* float weights [co, kg] */
    float *floor_w;         /* work: floor(w / s) */
    const float *scale;     /* per output channel */
    const int32_t *zp, *qn, *qp;
    const float *post_a, *post_b; /* NULL: 1 and 0 */
    float lo, hi;           /* activation clamp (-inf/inf: none) */
    int64_t max_cols;
    recon_sample_fn sample;
    void *ctx;
} recon_layer;

qk_status qk_recon_config_check(const qk_recon_config *c, int64_t images);
/* Optimise the rounding of L (codes [co, kg] receives the result);
 * losses on 4 fresh batches of quantized inputs; *flipped += codes that
 * differ from nearest rounding. */
qk_status qk_recon_layer_run(recon_layer *L, const qk_recon_config *c, int32_t *codes, double *loss_nearest,
                             double *loss_out, int64_t *flipped);

#endif
