/* Private helpers of the light float operators (activation.c, eltwise.c,
 * shape_ops.c, softmax.c): deterministic parallel ranges, axis and attribute
 * helpers, value lookups. Not a public header. */
#ifndef QK_OPS_LIGHT_UTIL_H
#define QK_OPS_LIGHT_UTIL_H

#include "qkit/ops.h"

#include <string.h>

/* Elements per pool task for memory-bound elementwise loops. Chosen from
 * the problem size only (determinism rule of base.h). */
#define QK_LT_GRAIN 32768

typedef void (*qk_lt_range_fn)(void *ctx, int64_t lo, int64_t hi);

typedef struct qk_lt_range_job {
    qk_lt_range_fn fn;
    void *ctx;
    int64_t n, chunk;
} qk_lt_range_job;

static inline void qk_lt_range_task(void *c, int64_t t, int w)
{
    (void)w;
    const qk_lt_range_job *j = c;
    int64_t lo = t * j->chunk, hi = lo + j->chunk;
    if (hi > j->n)
        hi = j->n;
    j->fn(j->ctx, lo, hi);
}

/* Call fn(ctx, lo, hi) over [0, n) in chunks of `chunk` items, one pool task
 * per chunk (serial when a single chunk). Each item must be computed
 * independently, so the result does not depend on the thread count. */
static inline void qk_lt_par(qk_pool *pool, int64_t n, int64_t chunk, qk_lt_range_fn fn, void *ctx)
{
    if (n <= 0)
        return;
    if (chunk < 1)
        chunk = 1;
    int64_t nt = (n + chunk - 1) / chunk;
    if (nt == 1 || !pool) {
        fn(ctx, 0, n);
        return;
    }
    qk_lt_range_job j = { fn, ctx, n, chunk };
    qk_pool_run(pool, nt, qk_lt_range_task, &j);
}

/* Normalize axis in [-r, r) (or [-r, r] when `inclusive`); -1 if out of range. */
static inline int qk_lt_axis(int64_t axis, int r, int inclusive)
{
    int64_t hi = inclusive ? r : r - 1;
    if (axis < 0)
        axis += r;
    if (axis < 0 || axis > hi)
        return -1;
    return (int)axis;
}

static inline int64_t qk_lt_prod(const int64_t *d, int lo, int hi)
{
    int64_t p = 1;
    for (int i = lo; i < hi; i++) /* saturates instead of overflowing; plan limits reject such shapes */
        if (__builtin_mul_overflow(p, d[i], &p))
            return INT64_MAX;
    return p;
}

static inline int qk_lt_is_int(qk_dtype dt)
{
    return dt == QK_I64 || dt == QK_I32 || dt == QK_I8 || dt == QK_U8;
}

/* Copy dtype and shape of src into dst (output shape rule of shape-preserving ops). */
static inline void qk_lt_same_shape(qk_tensor *dst, const qk_tensor *src)
{
    qk_tensor_set_shape(dst, src->dtype, src->ndim, src->dims);
}

/* grad[i] += src[i] over n floats (chunked over the pool). */
typedef struct qk_lt_acc_ctx {
    float *dst;
    const float *src;
} qk_lt_acc_ctx;

static inline void qk_lt_acc_range(void *c, int64_t lo, int64_t hi)
{
    qk_lt_acc_ctx *a = c;
    float *restrict d = a->dst;
    const float *restrict s = a->src;
    for (int64_t i = lo; i < hi; i++)
        d[i] += s[i];
}

static inline void qk_lt_acc(qk_pool *pool, float *dst, const float *src, int64_t n)
{
    qk_lt_acc_ctx c = { dst, src };
    qk_lt_par(pool, n, QK_LT_GRAIN, qk_lt_acc_range, &c);
}

#endif
