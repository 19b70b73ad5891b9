/* Histogram and power-of-two observers: kl (TensorRT entropy calibration),
 * pot-mse and pot-kl (greedy power-of-two search), and the
 * KL divergence search they share. docs/ALGORITHMS.md §2.6 and §2.8. */
#include "observer_internal.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------ KL */

double qk_kl_divergence_at(const double *h, int nbins, int i, int levels)
{
    if (i < 1 || i > nbins || levels < 1)
        return INFINITY;
    int nt = levels < i ? levels : i; /* target bins */
    int n = i / nt;                   /* source bins per target; the last takes the leftover */
    double outl = 0, sumP = 0, sumQ = 0;
    for (int k = i; k < nbins; k++)
        outl += h[k];
    /* pass 1: totals. P[j] = h[j] (+ outliers at j = i-1). */
    for (int t = 0; t < nt; t++) {
        int a = t * n, b = t == nt - 1 ? i : a + n;
        double cnt = 0;
        int nz = 0;
        for (int j = a; j < b; j++) {
            double pj = h[j] + (j == i - 1 ? outl : 0);
            cnt += h[j];
            nz += pj != 0;
            sumP += pj;
        }
        if (nz)
            sumQ += cnt;
    }
    if (sumP <= 0)
        return 0;
    if (sumQ <= 0)
        return INFINITY;
    /* pass 2: KL(P || Q) over P > 0 */
    double kl = 0;
    for (int t = 0; t < nt; t++) {
        int a = t * n, b = t == nt - 1 ? i : a + n;
        double cnt = 0;
        int nz = 0;
        for (int j = a; j < b; j++) {
            cnt += h[j];
            nz += (h[j] + (j == i - 1 ? outl : 0)) != 0;
        }
        double qj = nz ? cnt / nz / sumQ : 0;
        for (int j = a; j < b; j++) {
            double pj = (h[j] + (j == i - 1 ? outl : 0)) / sumP;
            if (pj <= 0)
                continue;
            if (qj <= 0)
                return INFINITY;
            kl += pj * log(pj / qj);
        }
    }
    return kl;
}

static int kl_threshold_ref(const double *hist, int nbins, int levels, double *kl_min)
{
    int m = levels;
    double best = INFINITY;
    for (int i = levels; i < nbins; i++) {
        double kl = qk_kl_divergence_at(hist, nbins, i, levels);
        if (kl < best) {
            best = kl;
            m = i;
        }
    }
    if (kl_min)
        *kl_min = best;
    return m;
}

/* The search in O(bins) per candidate without a log per bin. With S = sum P
 * (all of hist), C_t and nz_t the count and the non-zero bins of target bin
 * t, C'_t = sum of P over it and sumQ = sum hist[0..i-1]:
 *   S KL = sum_t D_t + S log(sumQ / S),
 *   D_t = sum_{j in t, P_j > 0} P_j log P_j - C'_t log(C_t / nz_t).
 * Every target bin but the last is [t n, t n + n) with n = i / levels, the
 * same for all candidates of one n, so their D_t sum once per n. Needs
 * hist >= 0 (counts). */
typedef struct kl_tab {
    const double *h;
    double *hl;  /* h log h (0 where h = 0) */
    double *pre; /* prefix sums of h, nbins + 1 */
    int *nzp;    /* prefix counts of h != 0, nbins + 1 */
} kl_tab;

static double kl_chunk(const kl_tab *k, int a, int b)
{
    double c = k->pre[b] - k->pre[a];
    int nz = k->nzp[b] - k->nzp[a];
    if (nz == 0)
        return 0;
    double hl = 0;
    for (int j = a; j < b; j++)
        hl += k->hl[j];
    return hl - c * log(c / nz);
}

/* S KL(i) given E = sum of D_t over the first levels - 1 target bins. */
static double kl_candidate(const kl_tab *k, int nbins, int i, int levels, int n, double E)
{
    double outl = k->pre[nbins] - k->pre[i], S = k->pre[nbins], sumQ = k->pre[i];
    if (S <= 0)
        return 0;
    if (sumQ <= 0)
        return INFINITY;
    int a = (levels - 1) * n;
    double c = k->pre[i] - k->pre[a], last = k->h[i - 1] + outl, hl = 0;
    int nz = k->nzp[i - 1] - k->nzp[a] + (last != 0);
    for (int j = a; j < i - 1; j++)
        hl += k->hl[j];
    double D = 0;
    if (nz) {
        if (c <= 0)
            return INFINITY;
        D = hl + (last > 0 ? last * log(last) : 0) - (c + outl) * log(c / nz);
    }
    return (E + D) / S + log(sumQ / S);
}

static int kl_tab_init(kl_tab *k, const double *hist, int nbins)
{
    for (int j = 0; j < nbins; j++)
        if (!(hist[j] >= 0) || !isfinite(hist[j]))
            return 0;
    k->h = hist;
    k->hl = qk_malloc((size_t)(2 * nbins + 1) * sizeof *k->hl);
    k->nzp = qk_malloc((size_t)(nbins + 1) * sizeof *k->nzp);
    if (!k->hl || !k->nzp) {
        qk_free(k->hl);
        qk_free(k->nzp);
        return 0;
    }
    k->pre = k->hl + nbins;
    k->pre[0] = 0;
    k->nzp[0] = 0;
    for (int j = 0; j < nbins; j++) {
        k->hl[j] = hist[j] > 0 ? hist[j] * log(hist[j]) : 0;
        k->pre[j + 1] = k->pre[j] + hist[j];
        k->nzp[j + 1] = k->nzp[j] + (hist[j] != 0);
    }
    return 1;
}

/* The fast values carry rounding from cancelling sums (about 1e-15 here,
 * of either sign), so they only screen: every candidate within KL_SCREEN
 * of the smallest is scored again by the definition, which picks among
 * them as kl_threshold_ref does (the first minimum) and gives kl_min. The
 * true minimum always passes the screen; ties (say a histogram whose mass
 * lies in the first `levels` bins, KL 0 for many i) are rescored in full. */
#define KL_SCREEN 1e-9

int qk_kl_threshold(const double *hist, int nbins, int levels, double *kl_min)
{
    if (levels >= nbins) {
        if (kl_min)
            *kl_min = 0;
        return nbins;
    }
    kl_tab k;
    if (levels < 1 || !kl_tab_init(&k, hist, nbins))
        return kl_threshold_ref(hist, nbins, levels, kl_min);
    double *f = qk_malloc((size_t)nbins * sizeof *f);
    if (!f) {
        qk_free(k.hl);
        qk_free(k.nzp);
        return kl_threshold_ref(hist, nbins, levels, kl_min);
    }
    int n = 0;
    double fbest = INFINITY, E = 0;
    for (int i = levels; i < nbins; i++) {
        if (i / levels != n) {
            n = i / levels;
            E = 0;
            for (int t = 0; t < levels - 1; t++)
                E += kl_chunk(&k, t * n, t * n + n);
        }
        f[i] = kl_candidate(&k, nbins, i, levels, n, E);
        fbest = f[i] < fbest ? f[i] : fbest;
    }
    qk_free(k.hl);
    qk_free(k.nzp);
    int m = levels;
    double best = INFINITY, cut = fbest + KL_SCREEN * (1.0 + fabs(fbest));
    for (int i = levels; i < nbins && isfinite(fbest); i++) {
        if (!(f[i] <= cut))
            continue;
        double kl = qk_kl_divergence_at(hist, nbins, i, levels);
        if (kl < best) {
            best = kl;
            m = i;
        }
    }
    qk_free(f);
    if (!isfinite(fbest)) /* no finite candidate: the definition decides */
        return kl_threshold_ref(hist, nbins, levels, kl_min);
    if (kl_min)
        *kl_min = best;
    return m;
}

/* ------------------------------------------------- accumulated |x| histogram */
/* o->hist covers [0, hrange) in opt.bins bins. The first non-zero batch sets
 * hrange = max|x| (zeros seen before go to bin 0); a later batch with a larger
 * max|x| doubles the bin width (adjacent pairs merged, exact) until it fits.
 * Slots: s[0] running min, s[1] running max. */
static qk_status hist_update(qk_observer *o, const float *x, const qk_q_lay *l)
{
    int64_t n = l->outer * l->ch * l->inner;
    double bmin, bmax;
    qk_status st = qk_obs_scan_minmax(o, x, n, o->pool, &bmin, &bmax);
    if (st != QK_OK)
        return st;
    if (o->nbatch == 0 || bmin < o->s[0][0])
        o->s[0][0] = bmin;
    if (o->nbatch == 0 || bmax > o->s[1][0])
        o->s[1][0] = bmax;
    double amax = fmax(-bmin, bmax);
    int nb = o->opt.bins;
    if (o->hrange == 0) {
        if (amax == 0) {
            o->hzeros += (double)n;
            return QK_OK;
        }
        o->hrange = amax;
        o->hist[0] += o->hzeros;
        o->hzeros = 0;
    }
    while (amax > o->hrange) {
        for (int j = 0; j < nb / 2; j++)
            o->hist[j] = o->hist[2 * j] + o->hist[2 * j + 1];
        memset(o->hist + nb / 2, 0, (size_t)(nb - nb / 2) * sizeof(double));
        o->hrange *= 2;
    }
    return qk_obs_scan_hist(o, x, n, nb / o->hrange, o->pool);
}

static qk_status kl_range(qk_observer *o, float *mn, float *mx)
{
    double T = 0;
    if (o->hrange > 0) {
        int nb = o->opt.bins;
        /* The zero spike of post-ReLU tensors sits in bin 0 and makes every
         * candidate that merges bin 0 with its neighbours look bad, so the
         * search would pick the smallest threshold. Like NVIDIA's
         * pytorch-quantization entropy calibrator, bin 0 takes bin 1's count
         * for the search (a flat histogram is unchanged). */
        double h0 = o->hist[0];
        if (nb > 1)
            o->hist[0] = o->hist[1];
        /* A non-negative tensor (after ReLU) has its whole |x| histogram
         * on one side: with the default levels it gets 2^bits target bins,
         * as NVIDIA's pytorch-quantization calibrator does for unsigned
         * tensors (TensorRT W8A8, resnet8: 90.55 -> 91.72; docs/QUANTIZATION.md). */
        int lv = o->opt.kl_levels;
        if (o->kl_levels_auto && o->s[0][0] >= 0 && o->qp.bits < 31 && lv < (1 << o->qp.bits))
            lv = 1 << o->qp.bits;
        int m = qk_kl_threshold(o->hist, nb, lv, NULL);
        o->hist[0] = h0;
        double w = o->hrange / nb;
        T = m >= nb ? o->hrange : (m + 0.5) * w;
    }
    mn[0] = o->s[0][0] >= 0 ? 0.0f : (float)-T;
    mx[0] = (float)T;
    return QK_OK;
}

const qk_obs_kind qk_obs_kl = { "kl", 0, 0, hist_update, kl_range, NULL };

/* ------------------------------------------------------- power of two */

/* f0 and the zero point for a range (qk_qparams_compute with pot=1 gives
 * the largest non-clipping 2^-f0). */
static qk_status pot_f0(const qk_observer *o, double mn, double mx, int *f0, int32_t *z)
{
    float s;
    qk_status st = qk_qparams_compute(&o->qp, (float)mn, (float)mx, &s, z);
    if (st != QK_OK)
        return st;
    *f0 = qk_pot_frac_bits(s);
    return QK_OK;
}

static int f_index(int f)
{
    int k = f + QK_POT_F_OFF;
    return k < 0 ? 0 : k >= 2 * QK_POT_F_OFF ? 2 * QK_POT_F_OFF - 1 : k;
}

/* pot-mse: per batch the f in f0 .. f0+K-1 with the least SSE (first on
 * ties) gets a vote; the result is the most voted f (smaller f on ties), as
 * MQBench's ModeMinMaxFloorObserver. s[0], s[1]: running min / max. */
static qk_status potmse_update(qk_observer *o, const float *x, const qk_q_lay *l)
{
    qk_status st = qk_obs_batch_stats(o, x, l, 0);
    if (st != QK_OK)
        return st;
    double bmin = o->w[0][0], bmax = o->w[1][0];
    if (o->nbatch == 0 || bmin < o->s[0][0])
        o->s[0][0] = bmin;
    if (o->nbatch == 0 || bmax > o->s[1][0])
        o->s[1][0] = bmax;
    int f0;
    int32_t z;
    st = pot_f0(o, bmin, bmax, &f0, &z);
    if (st != QK_OK)
        return st;
    int64_t n = l->outer * l->ch * l->inner;
    int best_f = f0;
    double best = INFINITY;
    for (int f = f0; f < f0 + o->opt.pot_candidates; f++) {
        float s = ldexpf(1.0f, -f), inv = 1.0f / s;
        if (!(s > 0) || !isfinite(inv))
            break;
        double sse = 0;
        for (int64_t i = 0; i < n; i++) {
            float y = (float)(qk_q_code(x[i], inv, z, o->qn, o->qmax, o->qp.round, NULL) - z) * s;
            double d = (double)y - (double)x[i];
            sse += d * d;
        }
        if (sse < best) {
            best = sse;
            best_f = f;
        }
    }
    o->fcount[f_index(best_f)]++;
    return QK_OK;
}

static int potmse_mode(const qk_observer *o)
{
    int best = 0;
    for (int k = 1; k < 2 * QK_POT_F_OFF; k++)
        if (o->fcount[k] > o->fcount[best])
            best = k;
    return best - QK_POT_F_OFF;
}

/* pot-kl: TensorRT KL on the accumulated histogram evaluated only at the
 * thresholds (qp - z) 2^-f, f in f0 .. f0+K-1 (f0 from the running min/max),
 * slice length i = RNE(T/w - 0.5) clamped to [1, bins]; least KL wins
 * (smaller f on ties). */
static int potkl_choose(const qk_observer *o, int *f_out, int32_t *z_out)
{
    int f0;
    int32_t z;
    if (pot_f0(o, o->s[0][0], o->s[1][0], &f0, &z) != QK_OK)
        return 0;
    *z_out = z;
    *f_out = f0;
    if (o->hrange <= 0)
        return 1;
    int nb = o->opt.bins;
    double w = o->hrange / nb, best = INFINITY;
    for (int f = f0; f < f0 + o->opt.pot_candidates; f++) {
        double T = ldexp((double)(o->qmax - z), -f);
        double iv = qk_round_double(T / w - 0.5, QK_ROUND_HALF_EVEN);
        int i = iv < 1 ? 1 : iv > nb ? nb : (int)iv;
        double kl = qk_kl_divergence_at(o->hist, nb, i, o->opt.kl_levels);
        if (kl < best) {
            best = kl;
            *f_out = f;
        }
    }
    return 1;
}

static qk_status pot_result(qk_observer *o, int *f, int32_t *z)
{
    if (o->kind == &qk_obs_pot_kl) {
        if (!potkl_choose(o, f, z))
            return qk_error(QK_ERR_NUMERIC, "observer '%s': invalid range", o->kind->name);
        return QK_OK;
    }
    int f0;
    qk_status st = pot_f0(o, o->s[0][0], o->s[1][0], &f0, z);
    if (st != QK_OK)
        return st;
    *f = potmse_mode(o);
    return QK_OK;
}

static qk_status pot_qparams(qk_observer *o, float *s, int32_t *z)
{
    int f = 0;
    qk_status st = pot_result(o, &f, z);
    if (st != QK_OK)
        return st;
    s[0] = ldexpf(1.0f, -f);
    return QK_OK;
}

static qk_status pot_range(qk_observer *o, float *mn, float *mx)
{
    float s;
    int32_t z;
    qk_status st = pot_qparams(o, &s, &z);
    if (st != QK_OK)
        return st;
    mx[0] = (float)(o->qmax - z) * s;
    mn[0] = o->s[0][0] >= 0 ? 0.0f : (float)(o->qn - z) * s;
    return QK_OK;
}

const qk_obs_kind qk_obs_pot_mse = { "pot-mse", 0, 1, potmse_update, pot_range, pot_qparams };
const qk_obs_kind qk_obs_pot_kl = { "pot-kl", 0, 1, hist_update, pot_range, pot_qparams };
