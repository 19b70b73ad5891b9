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

/* ---- block reconstruction (recon_graph.c, recon_block.c) ---- */
#define RB_MAX_IN 4
#define RB_MAX_FQ 32

/* A block of m->g: nodes in graph order (constant-only nodes such as the
 * weight FakeQuant nodes are not listed: they come with their readers). */
typedef struct recon_block {
    int first, last;   /* positions in the non-constant order */
    int *nodes, n_nodes;
    int in[RB_MAX_IN], n_in; /* activations read from before the block */
    int out;           /* the block output (its quantized form where the block quantizes it) */
    int out_base;      /* the float value out quantizes (out itself when not quantized) */
    int n_layers, big;
} recon_block;
qk_status qk_recon_blocks(const qk_qmodel *m, recon_block **out, int *nb);
void qk_recon_blocks_free(recon_block *b, int nb);

/* A block (or the whole model) as its own graph for forward/backward:
 * inputs in[] (the block inputs, batch -1), out (the block output), aux:
 * fisher: int64 labels of a SoftmaxCrossEntropyLoss (sum) on out; else a
 * float input G of out's shape, loss = ReduceSum(out * G) (so d loss / d
 * out = G). BatchNormalization becomes Mul + Add by constants. The
 * FakeQuant of a weight site with learn_site[s] is replaced by a parameter
 * (a copy of the float weight, which the caller overwrites with W~); the
 * other initializers are constants. vmap: m->g value -> here. */
typedef struct recon_sub {
    qk_graph *g;
    int in[RB_MAX_IN], n_in, out, aux, loss;
    int *vmap;
    int fq_node[RB_MAX_FQ], fq_site[RB_MAX_FQ], n_fq; /* FakeQuant nodes (unattached) and their sites */
    int w_val[RB_MAX_FQ], w_site[RB_MAX_FQ], n_w;     /* learned weights: parameter W~ and its site */
} recon_sub;
qk_status qk_recon_sub_build(const qk_qmodel *m, const int *nodes, int n_nodes, const int *ins, int n_in, int out,
                             const uint8_t *learn_site, int fisher, recon_sub *s);
void qk_recon_sub_free(recon_sub *s);
/* Values vals[j] ([N, pers[j]] each) of the first N images of ds, all
 * quantizers off (float_run) or as they are, into outs[j]. */
qk_status qk_recon_collect(qk_qmodel *m, const qk_dataset *ds, qk_norm norm, int64_t N, int nv, const int *vals,
                           int float_run, float **outs, const int64_t *pers);
/* Per-element loss weights of each block output (F[b]: [N, pers[b]]). */
qk_status qk_recon_fisher(qk_qmodel *m, const qk_dataset *ds, qk_norm norm, int64_t N, const recon_block *bl, int nb,
                          float **F, const int64_t *pers, qk_pool *pool);
/* BRECQ / QDrop over the blocks of a calibrated model (m->g planned for
 * inference at min(N, 128)). */
qk_status qk_recon_blocks_run(qk_qmodel *m, const qk_dataset *ds, qk_norm norm, int64_t N, const qk_recon_config *c,
                              qk_pool *pool, qk_recon_result *res);

#endif
