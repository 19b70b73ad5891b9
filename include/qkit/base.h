/* qkit base layer: status codes and error messages, logging, allocation,
 * thread pool, RNG, progress line, clock.
 *
 * Every library function that can fail returns a qk_status and records a
 * human-readable message (naming the file, node or value) that
 * qk_last_error() returns until the next error on the same thread.
 * Only the CLI exits the process.
 *
 * Example (`make test` runs it):
 *
 *   qk_dataset ds;
 *   qk_status st = qk_dataset_load_dir("/nonexistent", "train", &ds);
 *   if (st != QK_OK)                      // QK_ERR_IO; the message names the file
 *       printf("qkit: %s (%s)\n", qk_last_error(), qk_status_str(st));
 *   assert(st == QK_ERR_IO);
 * (end of example)
 *
 * Thread safety: errors are per thread (qk_last_error names this thread's last
 * error); allocation, RNG objects and the clock may be used from any thread
 * (one RNG object by one thread at a time). qk_log_set_level is process-wide:
 * set it before starting threads. A qk_pool runs one qk_pool_run at a time:
 * threads that run work concurrently each need their own pool (or NULL).
 */
#ifndef QKIT_BASE_H
#define QKIT_BASE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Frozen values: never renumber. */
typedef enum qk_status {
    QK_OK = 0,
    QK_ERR_NOMEM = 1,       /* allocation failed */
    QK_ERR_IO = 2,          /* file missing, unreadable, truncated */
    QK_ERR_FORMAT = 3,      /* malformed file contents */
    QK_ERR_UNSUPPORTED = 4, /* operator, opset, dtype or option not supported */
    QK_ERR_SHAPE = 5,       /* shape mismatch */
    QK_ERR_ARG = 6,         /* invalid argument or parameter value */
    QK_ERR_NUMERIC = 7,     /* NaN/Inf or other numerical failure */
    QK_ERR_STATE = 8,       /* call made in the wrong state (e.g. not planned) */
    QK_ERR_NOTFOUND = 9     /* named thing does not exist */
} qk_status;

const char *qk_status_str(qk_status st);

/* Record a formatted message for this thread and return st (so callers can
 * write `return qk_error(QK_ERR_ARG, "...", ...);`). */
qk_status qk_error(qk_status st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prefix the current message with context: "ctx: old message". */
qk_status qk_error_context(qk_status st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
const char *qk_last_error(void);
void qk_clear_error(void);

/* ---- logging (stderr) ---- */
typedef enum qk_log_level {
    QK_LOG_ERROR = 0, QK_LOG_WARN = 1, QK_LOG_INFO = 2, QK_LOG_DEBUG = 3
} qk_log_level;
void qk_log_set_level(qk_log_level lvl);
qk_log_level qk_log_get_level(void);
void qk_log(qk_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- allocation: all return NULL on failure (callers check) ---- */
void *qk_malloc(size_t bytes);
void *qk_calloc(size_t n, size_t size);
void *qk_realloc(void *p, size_t bytes);
void qk_free(void *p);
/* 64-byte aligned, zero-filled; free with qk_aligned_free. */
void *qk_aligned_alloc(size_t bytes);
void qk_aligned_free(void *p);
char *qk_strdup(const char *s);

/* ---- thread pool ----
 * qk_pool_run(pool, ntasks, fn, ctx) calls fn(ctx, task, worker) once for
 * every task in [0, ntasks); worker in [0, qk_pool_threads(pool)) names the
 * calling thread's scratch slot. Returns when all tasks are done. The caller
 * participates as worker 0. A NULL pool runs everything serially as worker 0.
 * Determinism rule: kernels choose ntasks from the problem size only (never
 * from the thread count) and each task's result must not depend on which
 * worker runs it; then results are identical for 1 and N threads. */
typedef struct qk_pool qk_pool;
typedef void (*qk_task_fn)(void *ctx, int64_t task, int worker);
qk_status qk_pool_create(int nthreads, qk_pool **out); /* nthreads <= 0: all cores */
void qk_pool_destroy(qk_pool *pool);
int qk_pool_threads(const qk_pool *pool);
void qk_pool_run(qk_pool *pool, int64_t ntasks, qk_task_fn fn, void *ctx);
/* qk_aligned_alloc that zero-fills over the pool (NULL: serial): large
 * buffers, where the first touch of every page is the cost. */
void *qk_aligned_alloc_pool(size_t bytes, qk_pool *pool);
int qk_cpu_count(void);

/* ---- RNG: xoshiro256**, seeded by splitmix64; identical on every platform ---- */
typedef struct qk_rng { uint64_t s[4]; } qk_rng;
void qk_rng_seed(qk_rng *r, uint64_t seed);
uint64_t qk_rng_u64(qk_rng *r);
uint32_t qk_rng_below(qk_rng *r, uint32_t n);   /* uniform in [0, n) */
float qk_rng_uniform(qk_rng *r);                /* uniform in [0, 1) */
float qk_rng_normal(qk_rng *r);                 /* N(0, 1), Box-Muller */

/* ---- clock and progress line ---- */
double qk_now(void); /* monotonic seconds */

/* v clamped to [lo, hi] (lo <= hi): the saturation of integer codes. */
static inline int32_t qk_clamp_i32(int64_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : v > hi ? hi : (int32_t)v;
}

/* Write a file atomically: fn(f, ctx) writes into "<path>.tmp.XXXXXX",
 * which is flushed, fsynced and renamed over path; on any error (fn's own
 * status, or QK_ERR_IO naming the file) the temporary file is removed and
 * path is untouched. */
typedef qk_status (*qk_write_fn)(FILE *f, void *ctx);
qk_status qk_file_write_atomic(const char *path, qk_write_fn fn, void *ctx);

/* A single self-overwriting line on stderr when stderr is a terminal
 * (or when forced); silent otherwise. */
typedef struct qk_progress {
    char label[48];
    int64_t total, done;
    double t0, last_draw;
    int enabled;
} qk_progress;
void qk_progress_begin(qk_progress *p, const char *label, int64_t total, int enabled);
/* extra: short free text, e.g. "loss 0.412 acc 0.871"; may be NULL. */
void qk_progress_update(qk_progress *p, int64_t done, const char *extra);
void qk_progress_end(qk_progress *p);
int qk_stderr_is_tty(void);

#ifdef __cplusplus
}
#endif
#endif
