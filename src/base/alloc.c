/* Checked allocation wrappers; callers test for NULL. */
#include "qkit/base.h"

#include <stdlib.h>
#include <string.h>

void *qk_malloc(size_t bytes) { return malloc(bytes ? bytes : 1); }
void *qk_calloc(size_t n, size_t size) { return calloc(n ? n : 1, size ? size : 1); }
void *qk_realloc(void *p, size_t bytes) { return realloc(p, bytes ? bytes : 1); }
void qk_free(void *p) { free(p); }

static void *aligned_raw(size_t bytes, size_t *n)
{
    void *p = NULL;
    *n = (bytes + 63) & ~(size_t)63;
    if (*n == 0)
        *n = 64;
    return posix_memalign(&p, 64, *n) == 0 ? p : NULL;
}

void *qk_aligned_alloc(size_t bytes)
{
    size_t n;
    void *p = aligned_raw(bytes, &n);
    if (p)
        memset(p, 0, n);
    return p;
}

#define ZERO_GRAIN ((size_t)1 << 20)

typedef struct zero_job {
    uint8_t *p;
    size_t n;
} zero_job;

static void zero_task(void *ctx, int64_t t, int w)
{
    (void)w;
    const zero_job *j = ctx;
    size_t lo = (size_t)t * ZERO_GRAIN, len = j->n - lo < ZERO_GRAIN ? j->n - lo : ZERO_GRAIN;
    memset(j->p + lo, 0, len);
}

void *qk_aligned_alloc_pool(size_t bytes, qk_pool *pool)
{
    size_t n;
    void *p = aligned_raw(bytes, &n);
    if (!p)
        return NULL;
    zero_job j = { p, n };
    int64_t nt = (int64_t)((n + ZERO_GRAIN - 1) / ZERO_GRAIN);
    if (pool && nt > 1)
        qk_pool_run(pool, nt, zero_task, &j);
    else
        memset(p, 0, n);
    return p;
}

void qk_aligned_free(void *p) { free(p); }

char *qk_strdup(const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}
