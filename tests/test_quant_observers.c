/* Observers (docs/ALGORITHMS.md §2): names and errors, minmax (per
 * tensor and per channel), EMA and Paddle moving-average sequences, the
 * Paddle range_abs_max window, percentile, MSE grid search properties, KL
 * (the section 2.6 histograms, histogram growth), ACIQ ranges, N-sigma,
 * power-of-two search (section 2.8 example, mode over batches), bad input. */
#include "qkit/cpu.h"
#include "qkit/quant.h"
#include "qt.h"
#include "../src/quant/observer_internal.h"

#include <float.h>
#include <string.h>

static qk_tensor vec(float *d, int64_t n) { return (qk_tensor){ QK_F32, 1, { n }, d, 0 }; }

static qk_observer *mk(const char *name, qk_qparams p, const qk_observer_opts *o)
{
    qk_observer *ob = NULL;
    QT_OK(qk_observer_create(name, &p, o, &ob));
    return ob;
}

static void feed(qk_observer *o, float *x, int64_t n) { qk_tensor t = vec(x, n); QT_OK(qk_observer_update(o, &t)); }

static void range1(qk_observer *o, float *mn, float *mx) { QT_OK(qk_observer_range(o, mn, mx)); }

/* Laplace(0, b) by inverse CDF, N(0, sigma) from the qkit RNG. */
static void laplace(float *x, int n, float b, uint64_t seed)
{
    qk_rng r;
    qk_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) {
        double u = qk_rng_uniform(&r) - 0.5;
        x[i] = (float)(-b * (u < 0 ? -1 : 1) * log(1 - 2 * fabs(u)));
    }
}

static void gauss(float *x, int n, float sigma, uint64_t seed)
{
    qk_rng r;
    qk_rng_seed(&r, seed);
    for (int i = 0; i < n; i++)
        x[i] = sigma * qk_rng_normal(&r);
}

static void test_names(void)
{
    const char *want[] = { "minmax", "ema", "mavg-absmax", "percentile", "mse", "kl", "aciq-laplace", "aciq-gauss",
                           "nsigma", "pot-mse", "pot-kl" };
    const char *const *names = qk_observer_names();
    int n = 0;
    while (names[n])
        n++;
    QT_CHECK(n == 11, "%d observer names", n);
    for (int i = 0; i < 11 && i < n; i++)
        QT_CHECK(strcmp(names[i], want[i]) == 0, "name %d: %s", i, names[i]);
    qk_observer *o;
    qk_qparams p = QK_QPARAMS_UINT8;
    qk_status st = qk_observer_create("entropy", &p, NULL, &o);
    QT_CHECK(st == QK_ERR_NOTFOUND && o == NULL, "unknown name -> NOTFOUND");
    const char *msg = qk_last_error();
    QT_CHECK(strstr(msg, "'entropy'") != NULL, "message names the bad one: %s", msg);
    for (int i = 0; i < 11; i++)
        QT_CHECK(strstr(msg, want[i]) != NULL, "message lists %s: %s", want[i], msg);
}

static void test_minmax(void)
{
    qk_observer *o = mk("minmax", QK_QPARAMS_UINT8, NULL);
    float a[3] = { 1, -2, 3 }, b[2] = { 0.5f, 4 }, mn, mx;
    feed(o, a, 3);
    feed(o, b, 2);
    range1(o, &mn, &mx);
    QT_CHECK(mn == -2 && mx == 4 && qk_observer_channels(o) == 1, "minmax [%g, %g]", (double)mn, (double)mx);
    qk_observer_reset(o);
    QT_CHECK(qk_observer_range(o, &mn, &mx) == QK_ERR_STATE, "reset forgets");
    float x[6] = { -1.0f, -0.5f, 0.0f, 0.3f, 0.7f, 2.0f }, s;
    int32_t z;
    feed(o, x, 6);
    QT_OK(qk_observer_qparams(o, &s, &z));
    QT_CHECK(s == 3.0f / 255 && z == 85, "minmax qparams s %g z %d", (double)s, z);
    qk_observer_destroy(o);

    /* per channel, axis 1 of [2, 3, 2] */
    qk_qparams pc = QK_QPARAMS_INT8_SYM;
    pc.per_channel = 1;
    pc.axis = 1;
    o = mk("minmax", pc, NULL);
    float t[12] = { 1, 2, -3, 4, 5, 6, /* n = 1 */ -7, 0, 9, 1, 1, -12 };
    qk_tensor tt = { QK_F32, 3, { 2, 3, 2 }, t, 0 };
    QT_OK(qk_observer_update(o, &tt));
    float cm[3], cx[3], cs[3];
    int32_t cz[3];
    range1(o, cm, cx);
    QT_CHECK(cm[0] == -7 && cx[0] == 2 && cm[1] == -3 && cx[1] == 9 && cm[2] == -12 && cx[2] == 6,
             "per-channel ranges [%g,%g] [%g,%g] [%g,%g]", (double)cm[0], (double)cx[0], (double)cm[1], (double)cx[1],
             (double)cm[2], (double)cx[2]);
    QT_OK(qk_observer_qparams(o, cs, cz));
    QT_CHECK(cs[0] == 7.0f / 127 && cs[1] == 9.0f / 127 && cs[2] == 12.0f / 127, "per-channel scales");
    /* channel count change and a tensor without the axis */
    qk_tensor t2 = { QK_F32, 3, { 1, 4, 3 }, t, 0 }, t3 = { QK_F32, 1, { 12 }, t, 0 };
    QT_CHECK(qk_observer_update(o, &t2) == QK_ERR_SHAPE && strstr(qk_last_error(), "channels"), "channel change: %s",
             qk_last_error());
    QT_CHECK(qk_observer_update(o, &t3) == QK_ERR_SHAPE && strstr(qk_last_error(), "axis 1"), "missing axis: %s",
             qk_last_error());
    qk_observer_destroy(o);
}

static void test_ema_paddle(void)
{
    const float maxima[3] = { 1, 2, 4 };
    const double ema_want[3] = { 1.0, 1.1, 1.39 }, pd_want[3] = { 1.0, 1.526316, 2.439114 };
    qk_observer *e = mk("ema", QK_QPARAMS_UINT8, NULL);
    qk_observer *m = mk("mavg-absmax", QK_QPARAMS_INT8_SYM, NULL);
    for (int i = 0; i < 3; i++) {
        float b[2] = { -maxima[i] / 2, maxima[i] }, mn, mx;
        feed(e, b, 2);
        feed(m, b, 2);
        range1(e, &mn, &mx);
        QT_NEAR(mx, ema_want[i], 2e-7, "EMA max");
        QT_NEAR(mn, -ema_want[i] / 2, 2e-7, "EMA min");
        range1(m, &mn, &mx);
        QT_NEAR(mx, pd_want[i], 1e-6, "Paddle moving_average_abs_max T");
        QT_CHECK(mn == -mx, "Paddle range symmetric");
    }
    /* the frozen T gives Paddle's quantizer: s = T/127 (bin = 2^(b-1) - 1) */
    float s;
    int32_t z;
    QT_OK(qk_observer_qparams(m, &s, &z));
    QT_NEAR(s, 2.439114 / 127, 1e-8, "Paddle scale T/127");
    qk_observer_destroy(e);
    qk_observer_destroy(m);

    /* non-negative data: (0, T); range_abs_max window of 2 */
    qk_observer_opts wo = { .window = 2 };
    m = mk("mavg-absmax", QK_QPARAMS_UINT8, &wo);
    const float seq[4] = { 1, 4, 2, 1 }, want[4] = { 1, 4, 4, 2 };
    for (int i = 0; i < 4; i++) {
        float b[2] = { 0, seq[i] }, mn, mx;
        feed(m, b, 2);
        range1(m, &mn, &mx);
        QT_CHECK(mn == 0 && mx == want[i], "range_abs_max window step %d: [%g, %g]", i, (double)mn, (double)mx);
    }
    qk_observer_destroy(m);
    qk_observer_opts bad = { .ema_ratio = 1.5 };
    qk_observer *o;
    qk_qparams p = QK_QPARAMS_UINT8;
    QT_CHECK(qk_observer_create("ema", &p, &bad, &o) == QK_ERR_ARG && strstr(qk_last_error(), "ema_ratio"),
             "bad ema_ratio");
}

static void test_percentile(void)
{
    static float x[1000];
    for (int i = 0; i < 1000; i++)
        x[i] = (float)i;
    qk_observer_opts po = { .percentile = 0.99 };
    qk_observer *o = mk("percentile", QK_QPARAMS_UINT8, &po);
    feed(o, x, 1000);
    float mn, mx;
    range1(o, &mn, &mx);
    /* the 990th value (989) lies in bin floor(989 * 2048 / 999) = 2027 */
    QT_NEAR(mx, 2027.5 * 999.0 / 2048, 1e-3, "percentile T = bin centre");
    QT_CHECK(mn == 0, "percentile min");
    /* second batch: EMA 0.9 of the clipped batch maxima */
    feed(o, x, 1000);
    float mx2;
    range1(o, &mn, &mx2);
    QT_NEAR(mx2, mx, 1e-3, "percentile EMA of equal batches");
    qk_observer_destroy(o);
}

static double fq_mse(qk_qparams p, const float *x, int n, float lo, float hi)
{
    float s, *y = malloc((size_t)n * sizeof *y);
    int32_t z;
    qk_qparams_compute(&p, lo, hi, &s, &z);
    qk_tensor tx = { QK_F32, 1, { n }, (float *)x, 0 }, ty = { QK_F32, 1, { n }, y, 0 };
    qk_fake_quant(&p, 1, &s, &z, &tx, &ty, NULL);
    double e = 0;
    for (int i = 0; i < n; i++)
        e += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
    free(y);
    return e / n;
}

static void test_mse(void)
{
    enum { N = 8192 };
    static float x[N];
    laplace(x, N, 1.0f, 5);
    qk_qparams p4 = { .bits = 4 };
    qk_observer *o = mk("mse", p4, NULL);
    feed(o, x, N);
    float mn, mx, omn = INFINITY, omx = -INFINITY;
    range1(o, &mn, &mx);
    for (int i = 0; i < N; i++) {
        omn = fminf(omn, x[i]);
        omx = fmaxf(omx, x[i]);
    }
    QT_CHECK(mn >= omn && mx <= omx && mx < omx, "MSE range [%g, %g] inside observed [%g, %g] and clipped",
             (double)mn, (double)mx, (double)omn, (double)omx);
    double l_best = fq_mse(p4, x, N, mn, mx), l_0 = fq_mse(p4, x, N, omn, omx);
    QT_CHECK(l_best <= l_0 && l_best < 0.8 * l_0, "MSE loss %.4g vs minmax %.4g", l_best, l_0);
    /* best of the grid: no candidate beats it */
    int beaten = 0;
    for (int i = 0; i < 95; i++) {
        float f = (float)(1.0 - i * 0.01);
        beaten += fq_mse(p4, x, N, omn * f, omx * f) < l_best;
    }
    QT_CHECK(beaten == 0, "%d grid candidates beat the chosen one", beaten);
    qk_observer_destroy(o);

    /* per channel (80 steps): each channel's range inside its observed one */
    qk_qparams pc = { .bits = 4, .is_signed = 1, .symmetric = 1, .narrow = 1, .per_channel = 1, .axis = 0 };
    o = mk("mse", pc, NULL);
    static float w[4 * 512];
    for (int c = 0; c < 4; c++)
        laplace(w + c * 512, 512, (float)(c + 1), 10 + c);
    qk_tensor tw = { QK_F32, 2, { 4, 512 }, w, 0 };
    QT_OK(qk_observer_update(o, &tw));
    float cm[4], cx[4];
    range1(o, cm, cx);
    for (int c = 0; c < 4; c++) {
        float a = 0;
        for (int i = 0; i < 512; i++)
            a = fmaxf(a, fabsf(w[c * 512 + i]));
        QT_CHECK(fmaxf(-cm[c], cx[c]) <= a && fmaxf(-cm[c], cx[c]) > 0.2f * a, "channel %d amax %g of %g", c,
                 (double)fmaxf(-cm[c], cx[c]), (double)a);
    }
    QT_CHECK(cx[3] > cx[0], "wider channel, wider range");
    qk_observer_destroy(o);
}

static void test_kl(void)
{
    static double h[2048];
    double kl;
    memset(h, 0, sizeof h);
    for (int j = 0; j < 128; j++)
        h[j] = 1;
    int m = qk_kl_threshold(h, 2048, 128, &kl);
    QT_CHECK(m == 128 && kl == 0, "KL case 1: m = %d, KL = %g (T = 128.5 w)", m, kl);
    for (int j = 0; j < 256; j++)
        h[j] = 1;
    m = qk_kl_threshold(h, 2048, 128, &kl);
    QT_CHECK(m == 256 && kl == 0, "KL case 2: m = %d, KL = %g (T = 256.5 w)", m, kl);
    /* folding: with outliers the short slices have positive divergence */
    QT_CHECK(qk_kl_divergence_at(h, 2048, 200, 128) > 0, "folded slice diverges");
    QT_CHECK(qk_kl_threshold(h, 100, 128, NULL) == 100, "levels >= bins: no clipping");

    /* observer: threshold on Laplace data lies inside (0, max) */
    enum { N = 1 << 15 };
    static float x[N], y[N];
    laplace(x, N, 1.0f, 21);
    qk_observer *o = mk("kl", QK_QPARAMS_INT8_SYM, NULL);
    feed(o, x, N);
    float mn, mx, amax = 0;
    for (int i = 0; i < N; i++)
        amax = fmaxf(amax, fabsf(x[i]));
    range1(o, &mn, &mx);
    QT_CHECK(mx > 0.3f * amax && mx < amax && mn == -mx, "KL T = %g of max %g", (double)mx, (double)amax);
    qk_observer_destroy(o);

    /* a non-negative tensor (|Laplace|, as after ReLU) with the default
     * levels searches with 2^bits = 256 target bins: the same threshold as
     * kl_levels = 256 given explicitly, not the one of 128 */
    for (int i = 0; i < N; i++)
        y[i] = fabsf(x[i]);
    qk_observer_opts o128 = { .kl_levels = 128 }, o256 = { .kl_levels = 256 };
    qk_observer *d = mk("kl", QK_QPARAMS_INT8_SYM, NULL), *e = mk("kl", QK_QPARAMS_INT8_SYM, &o128),
                *f = mk("kl", QK_QPARAMS_INT8_SYM, &o256);
    feed(d, y, N);
    feed(e, y, N);
    feed(f, y, N);
    float dmn, dmx, emn, emx, fmn, fmx;
    range1(d, &dmn, &dmx);
    range1(e, &emn, &emx);
    range1(f, &fmn, &fmx);
    QT_CHECK(dmx == fmx && dmx != emx && dmn == 0, "KL non-negative: default T %g, 256 levels %g, 128 levels %g",
             (double)dmx, (double)fmx, (double)emx);
    qk_observer_destroy(d);
    qk_observer_destroy(e);
    qk_observer_destroy(f);

    /* growth: batches with max 1 then exactly 2 bin like one batch of max 2 */
    for (int i = 0; i < N; i++) {
        y[i] = (float)(i % 1000) / 999.0f * (i < N / 2 ? 1.0f : 2.0f);
        if (i % 3 == 0)
            y[i] = -y[i];
    }
    qk_observer *a = mk("kl", QK_QPARAMS_INT8_SYM, NULL), *b = mk("kl", QK_QPARAMS_INT8_SYM, NULL);
    feed(a, y, N / 2);
    feed(a, y + N / 2, N / 2);
    feed(b, y, N);
    float amn, amx, bmn, bmx;
    range1(a, &amn, &amx);
    range1(b, &bmn, &bmx);
    QT_CHECK(amx == bmx && amn == bmn, "histogram doubling exact: %g vs %g", (double)amx, (double)bmx);
    qk_observer_destroy(a);
    qk_observer_destroy(b);

    /* all-zero data: range (0, 0), eps scale, no NaN */
    o = mk("kl", QK_QPARAMS_UINT8, NULL);
    memset(y, 0, sizeof y);
    feed(o, y, 100);
    float s;
    int32_t z;
    QT_OK(qk_observer_qparams(o, &s, &z));
    QT_CHECK(s == FLT_EPSILON && z == 0, "KL zeros: s %g z %d", (double)s, z);
    qk_observer_destroy(o);
    qk_qparams pc = QK_QPARAMS_INT8_SYM_CH0;
    QT_CHECK(qk_observer_create("kl", &pc, NULL, &o) == QK_ERR_UNSUPPORTED && strstr(qk_last_error(), "per tensor"),
             "KL per channel: %s", qk_last_error());
}

/* The threshold search against the definition: qk_kl_divergence_at at
 * every candidate (first minimum on ties), on count histograms of several
 * shapes (a zero spike, sparse, flat tails, outliers) and levels. */
static void test_kl_search_vs_definition(void)
{
    static double h[2048];
    static float x[1 << 14];
    const int levels[] = { 128, 256, 8, 1 }, bins[] = { 2048, 2048, 300, 64 };
    qk_rng r;
    qk_rng_seed(&r, 77);
    for (int shape = 0; shape < 7; shape++)
        for (int v = 0; v < 4; v++) {
            int nb = bins[v], lv = levels[v];
            memset(h, 0, sizeof h);
            if (shape >= 5) { /* exact ties: all mass in the first levels bins, KL 0 for many thresholds */
                for (int j = 0; j < lv && j < nb; j++)
                    h[j] = shape == 5 ? 1e6 : 100;
                goto search;
            }
            laplace(x, 1 << 14, 1.0f, 90 + (uint64_t)shape);
            float amax = 0;
            for (int i = 0; i < 1 << 14; i++)
                amax = fmaxf(amax, fabsf(x[i]));
            for (int i = 0; i < 1 << 14; i++) {
                int j = (int)(fabsf(x[i]) / amax * (float)nb);
                j = j < nb ? j : nb - 1;
                if (shape == 1 && j % 7)
                    continue;                                      /* sparse */
                h[shape == 2 ? j / 2 : j] += shape == 4 ? qk_rng_uniform(&r) : 1; /* 4: not counts */
            }
            if (shape == 3)
                h[0] += 50000; /* the post-ReLU zero spike */
        search:;
            double kl_ref = INFINITY, kl;
            int m_ref = lv;
            for (int i = lv; i < nb; i++) {
                double d = qk_kl_divergence_at(h, nb, i, lv);
                if (d < kl_ref) {
                    kl_ref = d;
                    m_ref = i;
                }
            }
            int m = qk_kl_threshold(h, nb, lv, &kl);
            QT_CHECK(m == m_ref || (lv >= nb && m == nb), "KL search shape %d levels %d: m %d, definition %d", shape,
                     lv, m, m_ref);
            QT_CHECK(lv >= nb || kl == kl_ref, "KL search shape %d levels %d: %.17g vs %.17g (the definition)", shape,
                     lv, kl, kl_ref);
        }
}

/* The histogram observers' scans: the AVX-512 kernels against the portable
 * ones, and pooled updates (1, 2, 3 threads) against the plain loops. */
static void test_hist_scans(void)
{
    enum { N = 100003, NB = 2048 };
    static float x[N];
    static uint32_t c0[2 * NB], c1[2 * NB];
    static double ref[NB];
    laplace(x, N, 1.0f, 123);
    for (int i = 0; i < N; i++)
        x[i] = i % 5 == 0 ? -0.0f : i % 2 ? fmaxf(x[i], 0.0f) : x[i]; /* zeros of both signs */
    int vec512 = qk_cpu_isa_usable(QK_ISA_AVX512);
    const int64_t lens[] = { 0, 1, 15, 16, 17, 33, 1000, N };
    for (int t = 0; t < 8 && vec512; t++) {
        int64_t n = lens[t];
        float a0, b0, a1, b1;
        int ok0 = qk_obs_minmax(x + 3, n - (n > 3 ? 3 : n), &a0, &b0);
        int ok1 = qk_obs_minmax__avx512(x + 3, n - (n > 3 ? 3 : n), &a1, &b1);
        QT_CHECK(ok0 == ok1 && ok0 && a0 == a1 && b0 == b1, "minmax n %lld: AVX-512 [%g %g] vs [%g %g]",
                 (long long)n, (double)a1, (double)b1, (double)a0, (double)b0);
        memset(c0, 0, sizeof c0);
        memset(c1, 0, sizeof c1);
        double k = NB / 7.5;
        qk_obs_absbins(x, n, k, NB, c0);
        qk_obs_absbins__avx512(x, n, k, NB, c1);
        int same = 1;
        for (int b = 0; b < NB; b++)
            same &= c0[b] + c0[NB + b] == c1[b] + c1[NB + b];
        QT_CHECK(same, "absbins n %lld: AVX-512 counts differ", (long long)n);
    }
    x[777] = NAN;
    float a, b;
    QT_CHECK(!qk_obs_minmax(x, N, &a, &b) && (!vec512 || !qk_obs_minmax__avx512(x, N, &a, &b)), "minmax: NaN seen");
    x[777] = 0.5f;

    /* pooled kl updates == the loops of qk_obs_batch_stats and the old binning */
    float amax = 0, lo = INFINITY;
    for (int i = 0; i < N; i++) {
        amax = fmaxf(amax, fabsf(x[i]));
        lo = x[i] < lo ? x[i] : lo;
    }
    memset(ref, 0, sizeof ref);
    for (int i = 0; i < N; i++) {
        int64_t j = (int64_t)(fabs((double)x[i]) * (NB / (double)amax));
        ref[j < NB ? j : NB - 1] += 1;
    }
    for (int th = 0; th <= 3; th++) {
        qk_pool *pool = NULL;
        if (th && qk_pool_create(th, &pool) != QK_OK)
            continue;
        qk_observer *o = mk("kl", QK_QPARAMS_INT8_SYM, NULL);
        qk_tensor t = vec(x, N);
        QT_OK(qk_observer_update_pool(o, &t, pool));
        QT_CHECK(memcmp(o->hist, ref, sizeof ref) == 0, "pooled histogram (%d threads) differs", th);
        QT_CHECK(o->s[0][0] == lo && o->s[1][0] == amax, "pooled min/max (%d threads): %g %g", th, o->s[0][0],
                 o->s[1][0]);
        float keep = x[N - 2];
        x[N - 2] = INFINITY;
        QT_CHECK(qk_observer_update_pool(o, &t, pool) == QK_ERR_NUMERIC && strstr(qk_last_error(), "element 100001"),
                 "pooled Inf (%d threads): %s", th, qk_last_error());
        x[N - 2] = keep;
        qk_observer_destroy(o);
        qk_pool_destroy(pool);
    }
    /* a zero minimum keeps the sign of the first zero, as the plain loop */
    float z[40];
    for (int i = 0; i < 40; i++)
        z[i] = i == 3 ? -0.0f : i % 2 ? 0.0f : 1.0f;
    qk_observer *o = mk("kl", QK_QPARAMS_INT8_SYM, NULL);
    feed(o, z, 40);
    QT_CHECK(o->s[0][0] == 0 && !signbit(o->s[0][0]), "zero minimum: first zero +0");
    qk_observer_destroy(o);
    z[1] = -0.0f;
    o = mk("kl", QK_QPARAMS_INT8_SYM, NULL);
    feed(o, z, 40);
    QT_CHECK(o->s[0][0] == 0 && signbit(o->s[0][0]), "zero minimum: first zero -0");
    qk_observer_destroy(o);
}

static void moments(const float *x, int n, double *mean, double *b, double *sd, float *mn, float *mx)
{
    double s = 0, a = 0, q = 0;
    *mn = INFINITY;
    *mx = -INFINITY;
    for (int i = 0; i < n; i++) {
        s += x[i];
        *mn = fminf(*mn, x[i]);
        *mx = fmaxf(*mx, x[i]);
    }
    *mean = s / n;
    for (int i = 0; i < n; i++) {
        a += fabs(x[i] - *mean);
        q += (x[i] - *mean) * (x[i] - *mean);
    }
    *b = a / n;
    *sd = sqrt(q / (n - 1));
}

static void test_aciq_nsigma(void)
{
    enum { N = 1 << 16 };
    static float x[N];
    double mu, b, sd;
    float omn, omx, mn, mx;
    /* Laplace b = 1, 4 bits: alpha = 5.029 b */
    laplace(x, N, 1.0f, 31);
    moments(x, N, &mu, &b, &sd, &omn, &omx);
    qk_observer *o = mk("aciq-laplace", (qk_qparams){ .bits = 4, .is_signed = 1 }, NULL);
    feed(o, x, N);
    range1(o, &mn, &mx);
    double a = qk_aciq_alpha(QK_ACIQ_LAPLACE, 4, 0) * b, lo = fmax(omn, mu - a);
    QT_NEAR(mn, lo, 1e-5, "ACIQ Laplace lo = max(min, mu - alpha)");
    QT_NEAR(mx, lo + 2 * a, 1e-5, "ACIQ Laplace hi = lo + 2 alpha");
    QT_NEAR(mx - mn, 2 * 5.029, 0.1, "ACIQ Laplace width ~ 2 x 5.029 b");
    qk_observer_destroy(o);
    /* two batches: b averaged over batches, moments merged exactly */
    o = mk("aciq-laplace", (qk_qparams){ .bits = 4, .is_signed = 1 }, NULL);
    feed(o, x, N / 2);
    feed(o, x + N / 2, N / 2);
    float mn2, mx2;
    range1(o, &mn2, &mx2);
    QT_NEAR(mx2 - mn2, mx - mn, 0.02, "ACIQ over two batches");
    qk_observer_destroy(o);

    /* Gaussian sigma = 2, 8 bits: alpha = 3.924 sigma = 7.848 */
    gauss(x, N, 2.0f, 32);
    moments(x, N, &mu, &b, &sd, &omn, &omx);
    o = mk("aciq-gauss", (qk_qparams){ .bits = 8, .is_signed = 1 }, NULL);
    feed(o, x, N);
    range1(o, &mn, &mx);
    a = qk_aciq_alpha(QK_ACIQ_GAUSS, 8, 0) * sd;
    lo = fmax(omn, mu - a);
    QT_NEAR(mn, lo, 1e-5, "ACIQ Gauss lo");
    QT_NEAR(mx, lo + fmin(2 * a, (double)omx - omn), 1e-5, "ACIQ Gauss hi");
    QT_NEAR(a, 7.848, 0.08, "ACIQ Gauss alpha ~ 7.848");
    qk_observer_destroy(o);

    /* post-ReLU (one-sided, auto): [0, min(max, max(mu,0) + alpha*(M+1) sigma)] */
    for (int i = 0; i < N; i++)
        x[i] = fmaxf(x[i], 0.0f);
    moments(x, N, &mu, &b, &sd, &omn, &omx);
    o = mk("aciq-gauss", (qk_qparams){ .bits = 4 }, NULL);
    feed(o, x, N);
    range1(o, &mn, &mx);
    QT_CHECK(mn == 0, "one-sided lo 0");
    QT_NEAR(mx, fmin(omx, mu + qk_aciq_alpha(QK_ACIQ_GAUSS, 5, 0) * sd), 1e-4, "one-sided hi uses alpha*(M+1)");
    qk_observer_destroy(o);
    qk_observer_opts two = { .aciq_sided = 2 };
    o = mk("aciq-gauss", (qk_qparams){ .bits = 4 }, &two);
    feed(o, x, N);
    float tmn, tmx;
    range1(o, &tmn, &tmx);
    QT_CHECK(tmn > 0 || tmx != mx, "forced two-sided differs");
    qk_observer_destroy(o);

    /* per channel ACIQ: channel scale follows b */
    static float w[2 * 4096];
    laplace(w, 4096, 1.0f, 40);
    laplace(w + 4096, 4096, 3.0f, 41);
    qk_tensor tw = { QK_F32, 2, { 2, 4096 }, w, 0 };
    o = mk("aciq-laplace", QK_QPARAMS_INT8_SYM_CH0, NULL);
    QT_OK(qk_observer_update(o, &tw));
    float cm[2], cx[2];
    range1(o, cm, cx);
    QT_NEAR((cx[1] - cm[1]) / (cx[0] - cm[0]), 3.0, 0.25, "per-channel ACIQ width ratio");
    qk_observer_destroy(o);

    /* nsigma: N(0,1) with outliers -> mean +- 2.6 std inside observed range */
    gauss(x, N, 1.0f, 50);
    x[0] = 100;
    x[1] = -80;
    moments(x, N, &mu, &b, &sd, &omn, &omx);
    o = mk("nsigma", QK_QPARAMS_UINT8, NULL);
    feed(o, x, N / 4);
    feed(o, x + N / 4, N - N / 4);
    range1(o, &mn, &mx);
    QT_NEAR(mn, mu - 2.6 * sd, 1e-5, "nsigma lo (two batches merged)");
    QT_NEAR(mx, mu + 2.6 * sd, 1e-5, "nsigma hi");
    qk_observer_destroy(o);
    qk_observer_opts ten = { .nsigma = 10 };
    o = mk("nsigma", QK_QPARAMS_UINT8, &ten);
    float u[4] = { -0.1f, 0.2f, 0.3f, 0.05f };
    feed(o, u, 4);
    range1(o, &mn, &mx);
    QT_CHECK(mn == -0.1f && mx == 0.3f, "nsigma never wider than observed");
    qk_observer_destroy(o);
}

static double sse_pot(const float *x, int n, int f)
{
    qk_qparams p = { .bits = 8, .is_signed = 1, .symmetric = 1, .pot = 1 };
    float s = ldexpf(1.0f, -f), y[16];
    int32_t z = 0;
    qk_tensor tx = { QK_F32, 1, { n }, (float *)x, 0 }, ty = { QK_F32, 1, { n }, y, 0 };
    qk_fake_quant(&p, 1, &s, &z, &tx, &ty, NULL);
    double e = 0;
    for (int i = 0; i < n; i++)
        e += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
    return e;
}

static void test_pot_search(void)
{
    qk_qparams p = { .bits = 8, .is_signed = 1, .symmetric = 1, .pot = 1 };
    float A[4] = { 0.9f, -0.3f, 0.05f, 0.41f }, B[4] = { 0.45f, -0.1f, 0.02f, 0.2f };
    QT_NEAR(sse_pot(A, 4, 7), 3.604e-5, 0.002e-5, "SSE f=7");
    QT_NEAR(sse_pot(A, 4, 8), 0.1631, 0.0001, "SSE f=8 (230 clips to 127)");
    QT_NEAR(sse_pot(A, 4, 9), 0.4538, 0.0001, "SSE f=9");
    float s, mn, mx;
    int32_t z;
    qk_observer *o = mk("pot-mse", p, NULL);
    feed(o, A, 4);
    QT_OK(qk_observer_qparams(o, &s, &z));
    QT_CHECK(s == 1.0f / 128 && z == 0, "section 2.8 example: f = 7 (s = %g)", (double)s);
    range1(o, &mn, &mx);
    QT_CHECK(mx == 127.0f / 128 && mn == -1.0f, "pot range [%g, %g]", (double)mn, (double)mx);
    feed(o, B, 4); /* votes 7, 8: tie -> smaller f */
    QT_OK(qk_observer_qparams(o, &s, &z));
    QT_CHECK(s == 1.0f / 128, "tie -> f 7");
    feed(o, B, 4); /* 7, 8, 8 -> 8 */
    QT_OK(qk_observer_qparams(o, &s, &z));
    QT_CHECK(s == 1.0f / 256, "mode -> f 8 (s = %g)", (double)s);
    qk_observer_destroy(o);
    /* network inputs: only f0; a tensor that would prefer f0+1 */
    float C[4] = { 0.9f, 0.01f, 0.02f, 0.03f };
    qk_observer_opts one = { .pot_candidates = 1 };
    o = mk("pot-mse", p, &one);
    feed(o, C, 4);
    QT_OK(qk_observer_qparams(o, &s, &z));
    QT_CHECK(s == 1.0f / 128, "pot_candidates 1 -> f0");
    qk_observer_destroy(o);

    /* pot-kl on Laplace data: a power of two no larger than f0's scale */
    enum { N = 1 << 15 };
    static float x[N];
    laplace(x, N, 1.0f, 60);
    float amax = 0;
    for (int i = 0; i < N; i++)
        amax = fmaxf(amax, fabsf(x[i]));
    o = mk("pot-kl", p, NULL);
    feed(o, x, N);
    QT_OK(qk_observer_qparams(o, &s, &z));
    int e;
    QT_CHECK(frexpf(s, &e) == 0.5f && s <= ldexpf(1, -qk_pot_frac_bits(amax / 127.0)) && s >= amax / 127.0f / 16,
             "pot-kl s = %g (amax %g)", (double)s, (double)amax);
    qk_observer_destroy(o);

    qk_qparams np = QK_QPARAMS_INT8_SYM;
    QT_CHECK(qk_observer_create("pot-mse", &np, NULL, &o) == QK_ERR_UNSUPPORTED && strstr(qk_last_error(), "power-of-two"),
             "pot-mse without pot: %s", qk_last_error());
}

static void test_bad_input(void)
{
    qk_observer *o = mk("minmax", QK_QPARAMS_UINT8, NULL);
    float mn, mx;
    QT_CHECK(qk_observer_range(o, &mn, &mx) == QK_ERR_STATE && strstr(qk_last_error(), "no data"), "no data");
    float x[3] = { 1, NAN, 2 };
    qk_tensor t = vec(x, 3);
    QT_CHECK(qk_observer_update(o, &t) == QK_ERR_NUMERIC && strstr(qk_last_error(), "element 1"), "NaN: %s",
             qk_last_error());
    x[1] = INFINITY;
    QT_CHECK(qk_observer_update(o, &t) == QK_ERR_NUMERIC, "Inf");
    qk_tensor empty = { QK_F32, 1, { 0 }, x, 0 };
    QT_OK(qk_observer_update(o, &empty));
    QT_CHECK(qk_observer_range(o, &mn, &mx) == QK_ERR_STATE, "empty batch ignored");
    qk_tensor it = { QK_I32, 1, { 3 }, x, 0 };
    QT_CHECK(qk_observer_update(o, &it) == QK_ERR_ARG, "int input");
    /* lookup: every listed name is its own entry; an unknown one lists them */
    const char *const *names = qk_observer_names();
    for (int k = 0; names[k]; k++) {
        const char *c = NULL;
        QT_CHECK(qk_observer_lookup(names[k], &c) == QK_OK && c == names[k], "lookup %s", names[k]);
    }
    const char *c = names[0];
    QT_CHECK(qk_observer_lookup("min-max", &c) == QK_ERR_NOTFOUND && c == NULL &&
                 strstr(qk_last_error(), "'min-max'") && strstr(qk_last_error(), "pot-kl"),
             "unknown observer named, valid ones listed: %s", qk_last_error());
    QT_CHECK(qk_observer_lookup(NULL, &c) == QK_ERR_NOTFOUND, "NULL name");
    /* constant tensors for every observer: finite positive scale, no NaN */
    for (int k = 0; names[k]; k++) {
        qk_qparams p = QK_QPARAMS_INT8_SYM;
        if (strncmp(names[k], "pot", 3) == 0)
            p.pot = 1;
        for (int v = 0; v < 2; v++) {
            qk_observer *ob;
            QT_OK(qk_observer_create(names[k], &p, NULL, &ob));
            float c[64];
            for (int i = 0; i < 64; i++)
                c[i] = v ? 3.0f : 0.0f;
            qk_tensor tc = vec(c, 64);
            QT_OK(qk_observer_update(ob, &tc));
            float s;
            int32_t z;
            QT_OK(qk_observer_qparams(ob, &s, &z));
            QT_CHECK(s > 0 && isfinite(s) && z == 0, "%s on constant %d: s %g z %d", names[k], v ? 3 : 0, (double)s, z);
            qk_observer_destroy(ob);
        }
    }
    qk_observer_destroy(o);
}

int main(void)
{
    test_names();
    test_minmax();
    test_ema_paddle();
    test_percentile();
    test_mse();
    test_kl();
    test_kl_search_vs_definition();
    test_hist_scans();
    test_aciq_nsigma();
    test_pot_search();
    test_bad_input();
    return qt_finish("test_quant_observers");
}
