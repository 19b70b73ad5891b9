/* The algorithm table of qkit bench: one row per algorithm the runner can
 * run (bench.h). Add a method by adding a row; the runner is unchanged. */
#include "qkit/bench.h"

#include <stdio.h>
#include <string.h>

/* ACIQ bit allocation spreads an average budget of 4 bits or fewer. */
static int fits_low_bits(const qk_bench_algo *row, const qk_backend *b, int wbits, int abits, char *why, size_t n)
{
    (void)row;
    (void)b;
    (void)abits;
    if (wbits <= 4)
        return 1;
    snprintf(why, n, "ACIQ bit allocation needs 4 weight bits or fewer (W%d)", wbits);
    return 0;
}

#define PTQ(nm, obs, sum) { .name = nm, .kind = QK_BENCH_PTQ, .summary = sum, .a_observer = obs, .qat_algo = -1 }
#define QAT(nm, algo, sum) { .name = nm, .kind = QK_BENCH_QAT, .summary = sum, .qat_algo = algo }
#define RECON(nm, m, sum) { .name = nm, .kind = QK_BENCH_PTQ, .summary = sum, .qat_algo = -1, .recon = m }

static const qk_bench_algo rows[] = {
    PTQ("ptq", NULL, "PTQ with the profile's own observers"),
    PTQ("minmax", "minmax", "PTQ, activation range min/max"),
    PTQ("ema", "ema", "PTQ, EMA of batch min/max"),
    PTQ("mavg-absmax", "mavg-absmax", "PTQ, moving average of |x| max"),
    PTQ("percentile", "percentile", "PTQ, percentile clipping"),
    PTQ("mse", "mse", "PTQ, clip minimising the quantization MSE"),
    PTQ("kl", "kl", "PTQ, KL divergence (TensorRT entropy)"),
    PTQ("aciq-laplace", "aciq-laplace", "PTQ, ACIQ analytic clip (Laplace)"),
    PTQ("aciq-gauss", "aciq-gauss", "PTQ, ACIQ analytic clip (Gauss)"),
    PTQ("nsigma", "nsigma", "PTQ, mean + n sigma"),
    PTQ("pot-mse", "pot-mse", "PTQ, power-of-two scale by MSE"),
    PTQ("pot-kl", "pot-kl", "PTQ, power-of-two scale by KL"),
    { .name = "bias-correct", .kind = QK_BENCH_PTQ, .summary = "PTQ, profile observers + bias correction",
      .bias_correct = 1, .qat_algo = -1 },
    { .name = "aciq-bitalloc", .kind = QK_BENCH_PTQ, .summary = "PTQ, ACIQ per-channel weight bit allocation",
      .bit_alloc = QK_BITALLOC_W, .qat_algo = -1, .fits = fits_low_bits },
    { .name = "cle", .kind = QK_BENCH_PTQ, .summary = "PTQ after cross-layer equalization", .qat_algo = -1, .cle = 1 },
    { .name = "mp", .kind = QK_BENCH_PTQ, .summary = "PTQ + mixed-precision weight widths (mean: budget or wbits)",
      .qat_algo = -1, .mp = 1 },
    RECON("adaround", QK_RECON_ADAROUND, "PTQ + AdaRound (per-layer weight rounding)"),
    RECON("brecq", QK_RECON_BRECQ, "PTQ + BRECQ (block reconstruction, Fisher-weighted)"),
    RECON("qdrop", QK_RECON_QDROP, "PTQ + QDrop (BRECQ with dropped activation quantization)"),
    QAT("ste", QK_QAT_STE, "QAT, fixed ranges, clipped STE"),
    QAT("pact", QK_QAT_PACT, "QAT, PACT learned clip (LSQ weights)"),
    QAT("pact-sym", QK_QAT_PACT_SYM, "QAT, symmetric PACT"),
    QAT("pact-asym", QK_QAT_PACT_ASYM, "QAT, asymmetric PACT"),
    QAT("dorefa", QK_QAT_DOREFA, "QAT, DoReFa"),
    QAT("wrpn", QK_QAT_WRPN, "QAT, WRPN"),
    QAT("lsq", QK_QAT_LSQ, "QAT, LSQ learned step size"),
    QAT("lsq+", QK_QAT_LSQ_PLUS, "QAT, LSQ+ (learned zero point)"),
    QAT("dsq", QK_QAT_DSQ, "QAT, differentiable soft quantization"),
    QAT("tqt", QK_QAT_TQT, "QAT, trained power-of-two thresholds"),
};

int qk_bench_algo_count(void) { return (int)(sizeof rows / sizeof rows[0]); }

const qk_bench_algo *qk_bench_algo_get(int i) { return i >= 0 && i < qk_bench_algo_count() ? &rows[i] : NULL; }

const qk_bench_algo *qk_bench_algo_find(const char *name)
{
    char list[1024] = "";
    size_t k = 0;
    for (int i = 0; i < qk_bench_algo_count(); i++) {
        if (name && strcmp(rows[i].name, name) == 0)
            return &rows[i];
        k += (size_t)snprintf(list + k, k < sizeof list ? sizeof list - k : 0, "%s%s", i ? ", " : "", rows[i].name);
        if (k >= sizeof list)
            k = sizeof list - 1;
    }
    qk_error(QK_ERR_NOTFOUND, "unknown algorithm '%s' (algorithms: %s)", name ? name : "(null)", list);
    return NULL;
}
