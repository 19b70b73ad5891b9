/* Private to src/qkit: the options object of the flat API (flat.h), shared
 * by flat_opts.c (setting them by name) and flat.c (using them). */
#ifndef QKIT_FLAT_INTERNAL_H
#define QKIT_FLAT_INTERNAL_H

#include "qkit/flat.h"
#include "qkit/ptq.h"

#define FLAT_MAX_EXCLUDE 256

struct qk_flat_opts {
    /* ptq */
    const qk_backend *backend;
    int wbits, abits, first_last_bits;
    const char *w_observer, *a_observer; /* point into qk_observer_names() */
    int reduce_range, per_tensor, bit_alloc;
    int bias_correct;                    /* 1 on, -1 off, 0 (not set): the profile's default */
    int n_exclude;
    char *exclude[FLAT_MAX_EXCLUDE];
    int64_t images;
    int cle;                             /* 1 on, -1 off, 0 (not set): the profile's default */
    int cle_relu6, no_fp32;
    qk_recon_method recon;
    int recon_iters, recon_batch;
    /* data */
    int n_mean, n_std;
    float mean[QK_MAX_CHANNELS], std[QK_MAX_CHANNELS];
    float scale;
    int has_scale, bgr, has_bgr, batch;
    /* eval */
    int real, arith;
    char *reference;
};

#endif
