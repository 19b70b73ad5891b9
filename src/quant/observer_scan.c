/* The per-tensor scans of the histogram observers (observer_hist.c): min /
 * max with the finiteness check, and the |x| bin counts, in chunks over the
 * thread pool. Both are exact in any order (extremes; integer counts), so
 * the result is the same for every thread count and for the AVX-512
 * kernels (observer_scan__avx512.c), which the tests compare with these. */
#include "observer_internal.h"
#include "qkit/cpu.h"
#include "qkit/ops.h"

#include <math.h>
#include <string.h>

#define SCAN_GRAIN 32768

int qk_obs_minmax(const float *x, int64_t n, float *mn, float *mx)
{
    float lo = INFINITY, hi = -INFINITY;
    int ok = 1;
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        ok &= isfinite(v) != 0;
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    *mn = lo;
    *mx = hi;
    return ok;
}

void qk_obs_absbins(const float *x, int64_t n, double k, int nb, uint32_t *cnt)
{
    int64_t i = 0;
    uint32_t *c1 = cnt + nb; /* a second copy: runs of one bin (the zeros) do not wait on each other */
    for (; i + 2 <= n; i += 2) {
        int64_t j0 = (int64_t)(fabs((double)x[i]) * k), j1 = (int64_t)(fabs((double)x[i + 1]) * k);
        cnt[j0 < nb ? j0 : nb - 1]++;
        c1[j1 < nb ? j1 : nb - 1]++;
    }
    for (; i < n; i++) {
        int64_t j = (int64_t)(fabs((double)x[i]) * k);
        cnt[j < nb ? j : nb - 1]++;
    }
}

static int use_avx512(const qk_observer *o) { return !o->reference && qk_cpu_isa() >= QK_ISA_AVX512; }

typedef struct scan_job {
    const float *x;
    int64_t n;
    double k;
    int nb, vec;
    float *mn, *mx; /* per worker */
    int *ok;        /* per worker */
    uint32_t *cnt;  /* per worker, 2 nb each */
} scan_job;

static void chunk(const scan_job *j, int64_t t, int64_t *lo, int64_t *len)
{
    *lo = t * SCAN_GRAIN;
    *len = j->n - *lo < SCAN_GRAIN ? j->n - *lo : SCAN_GRAIN;
}

static void minmax_task(void *ctx, int64_t t, int w)
{
    const scan_job *j = ctx;
    int64_t lo, len;
    chunk(j, t, &lo, &len);
    float a, b;
    int ok = j->vec ? qk_obs_minmax__avx512(j->x + lo, len, &a, &b) : qk_obs_minmax(j->x + lo, len, &a, &b);
    j->ok[w] &= ok;
    j->mn[w] = a < j->mn[w] ? a : j->mn[w];
    j->mx[w] = b > j->mx[w] ? b : j->mx[w];
}

static void bins_task(void *ctx, int64_t t, int w)
{
    const scan_job *j = ctx;
    int64_t lo, len;
    chunk(j, t, &lo, &len);
    uint32_t *c = j->cnt + (size_t)w * 2 * (size_t)j->nb;
    if (j->vec)
        qk_obs_absbins__avx512(j->x + lo, len, j->k, j->nb, c);
    else
        qk_obs_absbins(j->x + lo, len, j->k, j->nb, c);
}

static void run(qk_pool *pool, int64_t n, qk_task_fn fn, scan_job *j)
{
    int64_t nt = (n + SCAN_GRAIN - 1) / SCAN_GRAIN;
    if (nt <= 1 || !pool) {
        for (int64_t t = 0; t < nt; t++)
            fn(j, t, 0);
        return;
    }
    qk_pool_run(pool, nt, fn, j);
}

static qk_status scratch(qk_observer *o, int nw, size_t bytes)
{
    (void)nw;
    if (o->scan_bytes >= bytes)
        return QK_OK;
    void *p = qk_realloc(o->scan, bytes);
    if (!p)
        return qk_error(QK_ERR_NOMEM, "observer '%s': out of memory", o->kind->name);
    o->scan = p;
    o->scan_bytes = bytes;
    return QK_OK;
}

/* The first zero of x (there is one when an extreme is zero): the loops
 * that keep the first of equal values keep its sign. */
static double first_zero(const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (x[i] == 0)
            return x[i];
    return 0;
}

qk_status qk_obs_scan_minmax(qk_observer *o, const float *x, int64_t n, qk_pool *pool, double *mn, double *mx)
{
    int nw = pool ? qk_pool_threads(pool) : 1;
    qk_status st = scratch(o, nw, (size_t)nw * (2 * sizeof(float) + sizeof(int)));
    if (st != QK_OK)
        return st;
    scan_job j = { x, n, 0, 0, use_avx512(o), o->scan, (float *)o->scan + nw, (int *)((float *)o->scan + 2 * nw),
                   NULL };
    for (int w = 0; w < nw; w++) {
        j.mn[w] = INFINITY;
        j.mx[w] = -INFINITY;
        j.ok[w] = 1;
    }
    run(pool, n, minmax_task, &j);
    float lo = INFINITY, hi = -INFINITY;
    int ok = 1;
    for (int w = 0; w < nw; w++) {
        ok &= j.ok[w];
        lo = j.mn[w] < lo ? j.mn[w] : lo;
        hi = j.mx[w] > hi ? j.mx[w] : hi;
    }
    for (int64_t i = 0; !ok && i < n; i++)
        if (!isfinite(x[i]))
            return qk_error(QK_ERR_NUMERIC, "observer '%s': input has a non-finite value (%g) at element %lld",
                            o->kind->name, (double)x[i], (long long)i);
    *mn = lo == 0 ? first_zero(x, n) : lo;
    *mx = hi == 0 ? first_zero(x, n) : hi;
    return QK_OK;
}

qk_status qk_obs_scan_hist(qk_observer *o, const float *x, int64_t n, double k, qk_pool *pool)
{
    int nw = pool ? qk_pool_threads(pool) : 1, nb = o->opt.bins;
    size_t per = 2 * (size_t)nb;
    qk_status st = scratch(o, nw, (size_t)nw * per * sizeof(uint32_t));
    if (st != QK_OK)
        return st;
    scan_job j = { x, n, k, nb, use_avx512(o), NULL, NULL, NULL, o->scan };
    memset(j.cnt, 0, (size_t)nw * per * sizeof(uint32_t));
    /* a worker's counts stay below 2^32: at most 2^31 elements a run */
    for (int64_t lo = 0; lo < n; lo += (int64_t)1 << 31) {
        j.x = x + lo;
        j.n = n - lo < ((int64_t)1 << 31) ? n - lo : (int64_t)1 << 31;
        run(pool, j.n, bins_task, &j);
        for (int w = 0; w < nw; w++) {
            uint32_t *c = j.cnt + (size_t)w * per;
            for (int b = 0; b < nb; b++)
                o->hist[b] += (double)c[b] + (double)c[nb + b];
            memset(c, 0, per * sizeof(uint32_t));
        }
    }
    return QK_OK;
}
