/* RNG (xoshiro256**), monotonic clock, progress line. */
#include "qkit/base.h"
#include "qkit/version.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void qk_rng_seed(qk_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t qk_rng_u64(qk_rng *r)
{
    uint64_t *s = r->s;
    uint64_t res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return res;
}

uint32_t qk_rng_below(qk_rng *r, uint32_t n)
{
    /* Lemire's multiply-shift with rejection: unbiased. */
    uint64_t m = (uint64_t)(uint32_t)(qk_rng_u64(r) >> 32) * n;
    uint32_t l = (uint32_t)m;
    if (l < n) {
        uint32_t t = (uint32_t)(-n) % n;
        while (l < t) {
            m = (uint64_t)(uint32_t)(qk_rng_u64(r) >> 32) * n;
            l = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

float qk_rng_uniform(qk_rng *r) { return (float)(qk_rng_u64(r) >> 40) * (1.0f / 16777216.0f); }

float qk_rng_normal(qk_rng *r)
{
    double u1 = ((double)(qk_rng_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (double)(qk_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

double qk_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int qk_stderr_is_tty(void) { return isatty(2); }

void qk_progress_begin(qk_progress *p, const char *label, int64_t total, int enabled)
{
    memset(p, 0, sizeof *p);
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    p->total = total;
    p->enabled = enabled;
    p->t0 = qk_now();
}

void qk_progress_update(qk_progress *p, int64_t done, const char *extra)
{
    p->done = done;
    if (!p->enabled)
        return;
    double now = qk_now();
    if (now - p->last_draw < 0.2 && done < p->total)
        return;
    p->last_draw = now;
    double el = now - p->t0, rate = el > 0 ? (double)done / el : 0;
    double eta = rate > 0 && p->total > done ? (double)(p->total - done) / rate : 0;
    fprintf(stderr, "\r%s %lld/%lld %.0f/s ETA %.0fs %s\033[K", p->label, (long long)done,
            (long long)p->total, rate, eta, extra ? extra : "");
    fflush(stderr);
}

void qk_progress_end(qk_progress *p)
{
    if (p->enabled) {
        fputc('\r', stderr);
        fputs("\033[K", stderr);
        fflush(stderr);
    }
}

const char *qk_version(void) { return QKIT_VERSION_STRING; }

int qk_version_number(void) { return QKIT_VERSION_MAJOR * 10000 + QKIT_VERSION_MINOR * 100 + QKIT_VERSION_PATCH; }
