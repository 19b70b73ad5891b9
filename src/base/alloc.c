/* Checked allocation wrappers; callers test for NULL. */
#include "qkit/base.h"

#include <stdlib.h>
#include <string.h>

void *qk_malloc(size_t bytes) { return malloc(bytes ? bytes : 1); }
void *qk_calloc(size_t n, size_t size) { return calloc(n ? n : 1, size ? size : 1); }
void *qk_realloc(void *p, size_t bytes) { return realloc(p, bytes ? bytes : 1); }
void qk_free(void *p) { free(p); }

void *qk_aligned_alloc(size_t bytes)
{
    size_t n = (bytes + 63) & ~(size_t)63;
    void *p = NULL;
    if (n == 0)
        n = 64;
    if (posix_memalign(&p, 64, n) != 0)
        return NULL;
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
