/* Observers: the common interface (create by name, update, range, qparams)
 * and the kinds built on per-channel moments and extremes: minmax, ema,
 * mavg-absmax, percentile, mse, aciq-laplace, aciq-gauss, nsigma.
 * Histogram kinds (kl, pot-mse, pot-kl) are in observer_hist.c.
 * Semantics: include/qkit/quant.h and docs/ALGORITHMS.md §2. */
#include "observer_internal.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------------- helpers */

qk_status qk_obs_batch_stats(qk_observer *o, const float *x, const qk_q_lay *l, int second_pass)
{
    double *mn = o->w[0], *mx = o->w[1], *mean = o->w[2], *m2 = o->w[3], *ad = o->w[4], *cnt = o->w[5];
    for (int64_t c = 0; c < l->ch; c++) {
        mn[c] = INFINITY;
        mx[c] = -INFINITY;
        mean[c] = m2[c] = ad[c] = 0;
        cnt[c] = (double)(l->outer * l->inner);
    }
    for (int64_t b = 0; b < l->outer; b++)
        for (int64_t c = 0; c < l->ch; c++) {
            const float *p = x + (b * l->ch + c) * l->inner;
            double lo = mn[c], hi = mx[c], s = 0;
            for (int64_t i = 0; i < l->inner; i++) {
                float v = p[i];
                if (!isfinite(v))
                    return qk_error(QK_ERR_NUMERIC, "observer '%s': input has a non-finite value (%g) at element %lld",
                                    o->kind->name, (double)v, (long long)((b * l->ch + c) * l->inner + i));
                lo = v < lo ? v : lo;
                hi = v > hi ? v : hi;
                s += v;
            }
            mn[c] = lo;
            mx[c] = hi;
            mean[c] += s;
        }
    for (int64_t c = 0; c < l->ch; c++)
        mean[c] /= cnt[c];
    if (!second_pass)
        return QK_OK;
    for (int64_t b = 0; b < l->outer; b++)
        for (int64_t c = 0; c < l->ch; c++) {
            const float *p = x + (b * l->ch + c) * l->inner;
            double mu = mean[c], s2 = 0, sa = 0;
            for (int64_t i = 0; i < l->inner; i++) {
                double d = p[i] - mu;
                s2 += d * d;
                sa += fabs(d);
            }
            m2[c] += s2;
            ad[c] += sa;
        }
    return QK_OK;
}

static void store_range(float *mn, float *mx, int64_t c, double lo, double hi)
{
    mn[c] = (float)lo;
    mx[c] = (float)hi;
    if (mn[c] > mx[c]) /* float rounding of a degenerate range */
        mn[c] = mx[c];
}

/* ------------------------------------------------------------------ minmax */
/* s[0] min, s[1] max */
static qk_status minmax_update(qk_observer *o, const float *x, const qk_q_lay *l)
{
    qk_status st = qk_obs_batch_stats(o, x, l, 0);
    if (st != QK_OK)
        return st;
    for (int64_t c = 0; c < o->nch; c++) {
        if (o->nbatch == 0 || o->w[0][c] < o->s[0][c])
            o->s[0][c] = o->w[0][c];
        if (o->nbatch == 0 || o->w[1][c] > o->s[1][c])
            o->s[1][c] = o->w[1][c];
    }
    return QK_OK;
}

static qk_status minmax_range(qk_observer *o, float *mn, float *mx)
{
    for (int64_t c = 0; c < o->nch; c++)
        store_range(mn, mx, c, o->s[0][c], o->s[1][c]);
    return QK_OK;
}

/* --------------------------------------------------------------------- ema */
/* s[0] min, s[1] max: first batch sets, then m = r m + (1 - r) m_batch
 * (MQBench EMAMinMaxObserver; float32 arithmetic like torch). */
static void ema_mix(qk_observer *o, int64_t c, double bmin, double bmax)
{
    if (o->nbatch == 0) {
        o->s[0][c] = (float)bmin;
        o->s[1][c] = (float)bmax;
        return;
    }
    float r = (float)o->opt.ema_ratio, q = (float)(1.0 - o->opt.ema_ratio);
    o->s[0][c] = (float)o->s[0][c] * r + (float)bmin * q;
    o->s[1][c] = (float)o->s[1][c] * r + (float)bmax * q;
}

static qk_status ema_update(qk_observer *o, const float *x, const qk_q_lay *l)
{
    qk_status st = qk_obs_batch_stats(o, x, l, 0);
    if (st != QK_OK)
        return st;
    for (int64_t c = 0; c < o->nch; c++)
        ema_mix(o, c, o->w[0][c], o->w[1][c]);
    return QK_OK;
}

/* ------------------------------------------------------------- mavg-absmax */
/* s[0] state, s[1] accum, s[2] running min (sign of the range), s[3] window max.
 * Paddle FindMovingAverageAbsMaxFunctor: state = r state + 1,
 * accum = r accum + max|x|, T = accum / state. window > 0: Paddle
 * FindRangeAbsMaxFunctor, T = max of the last `window` batch maxima. */
static qk_status mavg_update(qk_observer *o, const float *x, const qk_q_lay *l)
{
    qk_status st = qk_obs_batch_stats(o, x, l, 0);
    if (st != QK_OK)
        return st;
    double r = o->opt.moving_rate;
    int64_t W = o->opt.window;
    for (int64_t c = 0; c < o->nch; c++) {
        double cur = fmax(fabs(o->w[0][c]), fabs(o->w[1][c]));
        if (o->nbatch == 0 || o->w[0][c] < o->s[2][c])
            o->s[2][c] = o->w[0][c];
        if (W > 0) {
            o->ring[(o->nbatch % W) * o->nch + c] = cur;
            int64_t n = o->nbatch + 1 < W ? o->nbatch + 1 : W;
            double m = 0;
            for (int64_t k = 0; k < n; k++)
                m = fmax(m, o->ring[k * o->nch + c]);
            o->s[3][c] = m;
        } else {
            o->s[0][c] = r * o->s[0][c] + 1.0;
            o->s[1][c] = r * o->s[1][c] + cur;
        }
    }
    return QK_OK;
}

/* Threshold T as a range: (-T, T), or (0, T) when no value was negative. */
static void threshold_range(float *mn, float *mx, int64_t c, double T, double seen_min)
{
    store_range(mn, mx, c, seen_min >= 0 ? 0.0 : -T, T);
}

static qk_status mavg_range(qk_observer *o, float *mn, float *mx)
{
    for (int64_t c = 0; c < o->nch; c++) {
        double T = o->opt.window > 0 ? o->s[3][c] : o->s[1][c] / o->s[0][c];
        threshold_range(mn, mx, c, T, o->s[2][c]);
    }
    return QK_OK;
}

/* -------------------------------------------------------------- percentile */
/* s[0], s[1]: EMA of the clipped batch range (MQBench EMAQuantileObserver,
 * with the cumulative count it intends). */
static qk_status pct_update(qk_observer *o, const float *x, const qk_q_lay *l)
{
    qk_status st = qk_obs_batch_stats(o, x, l, 0);
    if (st != QK_OK)
        return st;
    int nb = o->opt.bins;
    double *h = o->hist;
    for (int64_t c = 0; c < o->nch; c++) {
        double bmin = o->w[0][c], bmax = o->w[1][c], amax = fmax(-bmin, bmax), T = amax;
        if (amax > 0) {
            memset(h, 0, (size_t)nb * sizeof *h);
            double k = nb / amax;
            for (int64_t b = 0; b < l->outer; b++) {
                const float *p = x + (b * l->ch + c) * l->inner;
                for (int64_t i = 0; i < l->inner; i++) {
                    int64_t j = (int64_t)(fabs((double)p[i]) * k);
                    h[j < nb ? j : nb - 1] += 1;
                }
            }
            double need = o->opt.percentile * o->w[5][c], cum = 0;
            for (int j = 0; j < nb; j++) {
                cum += h[j];
                if (cum >= need) {
                    T = (j + 0.5) * (amax / nb);
                    break;
                }
            }
        }
        ema_mix(o, c, fmax(bmin, -T), fmin(bmax, T));
    }
    return QK_OK;
}

/* --------------------------------------------------------------------- mse */
/* s[0], s[1]: min of the chosen minima, max of the chosen maxima. */
static double lp_loss(const float *x, const qk_q_lay *l, int64_t c, float s, int32_t z, int32_t qn, int32_t qp,
                      qk_round m, double p)
{
    float inv = 1.0f / s;
    double acc = 0;
    for (int64_t b = 0; b < l->outer; b++) {
        const float *px = x + (b * l->ch + c) * l->inner;
        double part = 0;
        for (int64_t i = 0; i < l->inner; i++) {
            float y = (float)(qk_q_code(px[i], inv, z, qn, qp, m, NULL) - z) * s;
            double d = fabs((double)y - (double)px[i]);
            part += p == 2.0 ? d * d : pow(d, p);
        }
        acc += part;
    }
    return acc / (double)(l->outer * l->inner);
}

static qk_status mse_update(qk_observer *o, const float *x, const qk_q_lay *l)
{
    qk_status st = qk_obs_batch_stats(o, x, l, 0);
    if (st != QK_OK)
        return st;
    for (int64_t c = 0; c < o->nch; c++) {
        float mn0 = (float)o->w[0][c], mx0 = (float)o->w[1][c];
        float best_mn = mn0, best_mx = mx0;
        double best = 1e10; /* MQBench's initial best score */
        for (int i = 0; i < o->opt.mse_steps; i++) {
            float f = (float)(1.0 - i * 0.01);
            float nmn = mn0 * f, nmx = mx0 * f, s;
            int32_t z;
            st = qk_qparams_compute(&o->qp, nmn, nmx, &s, &z);
            if (st != QK_OK)
                return st;
            double loss = lp_loss(x, l, c, s, z, o->qn, o->qmax, o->qp.round, o->opt.mse_p);
            if (loss < best) {
                best = loss;
                best_mn = nmn;
                best_mx = nmx;
            }
        }
        if (o->nbatch == 0 || best_mn < o->s[0][c])
            o->s[0][c] = best_mn;
        if (o->nbatch == 0 || best_mx > o->s[1][c])
            o->s[1][c] = best_mx;
    }
    return QK_OK;
}

/* ------------------------------------------------------- aciq and nsigma */
/* s[0] count, s[1] mean, s[2] M2 (Chan's parallel merge), s[3] sum of the
 * per-batch sums |x - mean_batch|, s[4] min, s[5] max. */
static qk_status moments_update(qk_observer *o, const float *x, const qk_q_lay *l)
{
    qk_status st = qk_obs_batch_stats(o, x, l, 1);
    if (st != QK_OK)
        return st;
    for (int64_t c = 0; c < o->nch; c++) {
        double na = o->s[0][c], nb = o->w[5][c], n = na + nb;
        double d = o->w[2][c] - o->s[1][c];
        o->s[1][c] += d * nb / n;
        o->s[2][c] += o->w[3][c] + d * d * na * nb / n;
        o->s[0][c] = n;
        o->s[3][c] += o->w[4][c];
        if (o->nbatch == 0 || o->w[0][c] < o->s[4][c])
            o->s[4][c] = o->w[0][c];
        if (o->nbatch == 0 || o->w[1][c] > o->s[5][c])
            o->s[5][c] = o->w[1][c];
    }
    return QK_OK;
}

static double moments_std(const qk_observer *o, int64_t c)
{
    double n = o->s[0][c];
    return n > 1 ? sqrt(o->s[2][c] / (n - 1)) : 0.0; /* unbiased, like torch.std */
}

/* ACIQ (cnn-quantization alpha2DeltaOffset with clip2max): two-sided
 * [lo, lo + min(2 alpha, max - min)], lo = max(min, mu - alpha); one-sided
 * [0, min(max, max(mu, 0) + alpha_pos)]. b = mean over all data of
 * |x - batch mean| (the per-batch b averaged, weighted by batch size). */
static qk_status aciq_range(qk_observer *o, float *mn, float *mx)
{
    int gauss = strcmp(o->kind->name, "aciq-gauss") == 0;
    for (int64_t c = 0; c < o->nch; c++) {
        double mu = o->s[1][c], lo = o->s[4][c], hi = o->s[5][c];
        double scale = gauss ? moments_std(o, c) : o->s[3][c] / o->s[0][c];
        int one = o->opt.aciq_sided == 1 || (o->opt.aciq_sided == 0 && lo >= 0);
        if (one) {
            double a = o->aciq_mult[1] * scale;
            store_range(mn, mx, c, 0.0, fmin(hi, fmax(mu, 0.0) + a));
        } else {
            double a = o->aciq_mult[0] * scale;
            double off = fmax(lo, mu - a);
            store_range(mn, mx, c, off, off + fmin(2 * a, hi - lo));
        }
    }
    return QK_OK;
}

static qk_status nsigma_range(qk_observer *o, float *mn, float *mx)
{
    for (int64_t c = 0; c < o->nch; c++) {
        double mu = o->s[1][c], k = o->opt.nsigma * moments_std(o, c);
        store_range(mn, mx, c, fmax(o->s[4][c], mu - k), fmin(o->s[5][c], mu + k));
    }
    return QK_OK;
}

/* ------------------------------------------------------------ registry */

static const qk_obs_kind k_minmax = { "minmax", 1, 0, minmax_update, minmax_range, NULL };
static const qk_obs_kind k_ema = { "ema", 1, 0, ema_update, minmax_range, NULL };
static const qk_obs_kind k_mavg = { "mavg-absmax", 1, 0, mavg_update, mavg_range, NULL };
static const qk_obs_kind k_pct = { "percentile", 1, 0, pct_update, minmax_range, NULL };
static const qk_obs_kind k_mse = { "mse", 1, 0, mse_update, minmax_range, NULL };
static const qk_obs_kind k_aciq_l = { "aciq-laplace", 1, 0, moments_update, aciq_range, NULL };
static const qk_obs_kind k_aciq_g = { "aciq-gauss", 1, 0, moments_update, aciq_range, NULL };
static const qk_obs_kind k_nsigma = { "nsigma", 1, 0, moments_update, nsigma_range, NULL };

static const qk_obs_kind *const kinds[] = {
    &k_minmax, &k_ema, &k_mavg, &k_pct, &k_mse, &qk_obs_kl, &k_aciq_l, &k_aciq_g, &k_nsigma,
    &qk_obs_pot_mse, &qk_obs_pot_kl, NULL
};

const char *const *qk_observer_names(void)
{
    static const char *names[sizeof kinds / sizeof kinds[0]];
    for (size_t i = 0; kinds[i]; i++)
        names[i] = kinds[i]->name;
    return names;
}

qk_status qk_observer_lookup(const char *name, const char **out)
{
    *out = NULL;
    for (int i = 0; kinds[i]; i++)
        if (name && strcmp(kinds[i]->name, name) == 0) {
            *out = kinds[i]->name;
            return QK_OK;
        }
    char list[256] = "";
    for (int i = 0; kinds[i]; i++) {
        strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
        strncat(list, kinds[i]->name, sizeof list - strlen(list) - 1);
    }
    return qk_error(QK_ERR_NOTFOUND, "unknown observer '%s' (valid: %s)", name ? name : "(null)", list);
}

static qk_status resolve_opts(qk_observer *o, const qk_observer_opts *in)
{
    qk_observer_opts d = { 0 };
    if (in)
        d = *in;
    const qk_qparams *p = &o->qp;
#define DEF(f, v) if (d.f == 0) d.f = (v)
    DEF(ema_ratio, 0.9);
    DEF(moving_rate, 0.9);
    DEF(percentile, 0.99999);
    DEF(bins, 2048);
    DEF(kl_levels, (p->is_signed || p->symmetric) ? 1 << (p->bits - 1) : 1 << p->bits);
    DEF(mse_steps, p->per_channel ? 80 : 95);
    DEF(mse_p, 2.0);
    DEF(nsigma, 2.6);
    DEF(pot_candidates, 5);
#undef DEF
    const char *nm = o->kind->name;
    if (!(d.ema_ratio > 0 && d.ema_ratio < 1))
        return qk_error(QK_ERR_ARG, "observer '%s': ema_ratio %g must be in (0, 1)", nm, d.ema_ratio);
    if (!(d.moving_rate > 0 && d.moving_rate <= 1))
        return qk_error(QK_ERR_ARG, "observer '%s': moving_rate %g must be in (0, 1]", nm, d.moving_rate);
    if (d.window < 0 || d.window > 1000000)
        return qk_error(QK_ERR_ARG, "observer '%s': window %d must be in [0, 1000000]", nm, d.window);
    if (!(d.percentile > 0 && d.percentile <= 1))
        return qk_error(QK_ERR_ARG, "observer '%s': percentile %g must be a fraction in (0, 1]", nm, d.percentile);
    if (d.bins < 2 || d.bins > (1 << 20) || d.bins % 2)
        return qk_error(QK_ERR_ARG, "observer '%s': bins %d must be even and in [2, 2^20]", nm, d.bins);
    if (d.kl_levels < 1)
        return qk_error(QK_ERR_ARG, "observer '%s': kl_levels %d must be positive", nm, d.kl_levels);
    if (d.mse_steps < 1 || d.mse_steps > 100)
        return qk_error(QK_ERR_ARG, "observer '%s': mse_steps %d must be in [1, 100]", nm, d.mse_steps);
    if (!(d.mse_p > 0) || !isfinite(d.mse_p))
        return qk_error(QK_ERR_ARG, "observer '%s': mse_p %g must be positive", nm, d.mse_p);
    if (!(d.nsigma > 0) || !isfinite(d.nsigma))
        return qk_error(QK_ERR_ARG, "observer '%s': nsigma %g must be positive", nm, d.nsigma);
    if (d.pot_candidates < 1 || d.pot_candidates > 32)
        return qk_error(QK_ERR_ARG, "observer '%s': pot_candidates %d must be in [1, 32]", nm, d.pot_candidates);
    if (d.aciq_sided < 0 || d.aciq_sided > 2)
        return qk_error(QK_ERR_ARG, "observer '%s': aciq_sided %d must be 0 (auto), 1 (one-sided) or 2 (two-sided)",
                        nm, d.aciq_sided);
    o->opt = d;
    o->kl_levels_auto = !(in && in->kl_levels);
    return QK_OK;
}

qk_status qk_observer_create(const char *name, const qk_qparams *p, const qk_observer_opts *opts,
                             qk_observer **out)
{
    *out = NULL;
    const char *canon;
    if (qk_observer_lookup(name, &canon) != QK_OK)
        return QK_ERR_NOTFOUND;
    const qk_obs_kind *k = NULL;
    for (int i = 0; kinds[i]; i++)
        if (kinds[i]->name == canon)
            k = kinds[i];
    qk_status st = qk_qparams_validate(p);
    if (st != QK_OK)
        return qk_error_context(st, "observer '%s'", k->name);
    if (p->scheme != QK_QSCHEME_LINEAR && strcmp(k->name, "minmax") != 0)
        return qk_error(QK_ERR_UNSUPPORTED, "observer '%s': the NNIE log quantizer takes its range from minmax",
                        k->name);
    if (p->per_channel && !k->per_channel)
        return qk_error(QK_ERR_UNSUPPORTED, "observer '%s' is per tensor only (per-channel requested on axis %d)",
                        k->name, p->axis);
    if (k->needs_pot && (!p->pot || !p->symmetric))
        return qk_error(QK_ERR_UNSUPPORTED, "observer '%s' needs a power-of-two symmetric quantizer (pot=1, symmetric=1)",
                        k->name);
    qk_observer *o = qk_calloc(1, sizeof *o);
    if (!o)
        return qk_error(QK_ERR_NOMEM, "observer '%s': out of memory", k->name);
    o->kind = k;
    o->qp = *p;
    qk_quant_range(p, &o->qn, &o->qmax);
    st = resolve_opts(o, opts);
    if (st != QK_OK) {
        qk_free(o);
        return st;
    }
    int gauss = strcmp(k->name, "aciq-gauss") == 0;
    o->aciq_mult[0] = qk_aciq_alpha(gauss ? QK_ACIQ_GAUSS : QK_ACIQ_LAPLACE, p->bits, 0);
    o->aciq_mult[1] = qk_aciq_alpha(gauss ? QK_ACIQ_GAUSS : QK_ACIQ_LAPLACE, p->bits, 1);
    *out = o;
    return QK_OK;
}

static void free_state(qk_observer *o)
{
    for (int i = 0; i < QK_OBS_SLOTS; i++) {
        qk_free(o->s[i]);
        o->s[i] = NULL;
    }
    for (int i = 0; i < QK_OBS_WORK; i++) {
        qk_free(o->w[i]);
        o->w[i] = NULL;
    }
    qk_free(o->hist);
    qk_free(o->ring);
    qk_free(o->fcount);
    qk_free(o->scan);
    o->scan = NULL;
    o->scan_bytes = 0;
    o->hist = o->ring = NULL;
    o->fcount = NULL;
    o->nch = 0;
    o->nbatch = 0;
    o->hrange = o->hzeros = 0;
}

void qk_observer_reset(qk_observer *o)
{
    if (o)
        free_state(o);
}

void qk_observer_destroy(qk_observer *o)
{
    if (!o)
        return;
    free_state(o);
    qk_free(o);
}

const char *qk_observer_name(const qk_observer *o) { return o->kind->name; }
int64_t qk_observer_channels(const qk_observer *o) { return o->nch; }

static qk_status alloc_state(qk_observer *o, int64_t nch)
{
    size_t n = (size_t)nch;
    for (int i = 0; i < QK_OBS_SLOTS; i++)
        if (!(o->s[i] = qk_calloc(n, sizeof(double))))
            goto nomem;
    for (int i = 0; i < QK_OBS_WORK; i++)
        if (!(o->w[i] = qk_calloc(n, sizeof(double))))
            goto nomem;
    if (!(o->hist = qk_calloc((size_t)o->opt.bins, sizeof(double))))
        goto nomem;
    if (o->opt.window > 0 && !(o->ring = qk_calloc((size_t)o->opt.window * n, sizeof(double))))
        goto nomem;
    if (!(o->fcount = qk_calloc(2 * QK_POT_F_OFF, sizeof(int64_t))))
        goto nomem;
    o->nch = nch;
    return QK_OK;
nomem:
    free_state(o);
    return qk_error(QK_ERR_NOMEM, "observer '%s': out of memory for %lld channels", o->kind->name, (long long)nch);
}

qk_status qk_observer_update(qk_observer *o, const qk_tensor *x) { return qk_observer_update_pool(o, x, NULL); }

qk_status qk_observer_update_pool(qk_observer *o, const qk_tensor *x, qk_pool *pool)
{
    return qk_obs_update(o, x, pool, 0);
}

qk_status qk_obs_update(qk_observer *o, const qk_tensor *x, qk_pool *pool, int reference)
{
    if (x->dtype != QK_F32)
        return qk_error(QK_ERR_ARG, "observer '%s': input must be float32, got %s", o->kind->name,
                        qk_dtype_name(x->dtype));
    qk_q_lay l;
    qk_status st = qk_q_layout(&o->qp, x, &l);
    if (st != QK_OK)
        return qk_error_context(st, "observer '%s'", o->kind->name);
    if (qk_tensor_numel(x) == 0)
        return QK_OK;
    if (o->nch == 0) {
        st = alloc_state(o, l.ch);
        if (st != QK_OK)
            return st;
    } else if (o->nch != l.ch) {
        return qk_error(QK_ERR_SHAPE, "observer '%s': %lld channels on axis %d, earlier batches had %lld",
                        o->kind->name, (long long)l.ch, o->qp.axis, (long long)o->nch);
    }
    o->pool = pool;
    o->reference = reference;
    st = o->kind->update(o, qk_f32(x), &l);
    o->pool = NULL;
    o->reference = 0;
    if (st != QK_OK)
        return st;
    o->nbatch++;
    return QK_OK;
}

qk_status qk_observer_range(qk_observer *o, float *min, float *max)
{
    if (o->nbatch == 0)
        return qk_error(QK_ERR_STATE, "observer '%s' has seen no data", o->kind->name);
    return o->kind->range(o, min, max);
}

qk_status qk_observer_qparams(qk_observer *o, float *scale, int32_t *zp)
{
    if (o->nbatch == 0)
        return qk_error(QK_ERR_STATE, "observer '%s' has seen no data", o->kind->name);
    if (o->kind->qparams)
        return o->kind->qparams(o, scale, zp);
    float *mn = qk_malloc((size_t)o->nch * 2 * sizeof(float));
    if (!mn)
        return qk_error(QK_ERR_NOMEM, "observer '%s': out of memory", o->kind->name);
    float *mx = mn + o->nch;
    qk_status st = o->kind->range(o, mn, mx);
    if (st == QK_OK)
        st = qk_qparams_compute_n(&o->qp, o->nch, mn, mx, scale, zp);
    qk_free(mn);
    return st == QK_OK ? st : qk_error_context(st, "observer '%s'", o->kind->name);
}
