/* A fixed thread pool. Tasks are handed out by an atomic counter; the caller
 * works as worker 0. See base.h for the determinism rule. */
#include "qkit/base.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

struct qk_pool {
    int n;                  /* threads including the caller */
    pthread_t *th;
    pthread_mutex_t mu;
    pthread_cond_t cv_start, cv_done;
    atomic_ullong generation; /* bumped (under mu) to publish a job */
    atomic_int stop;
    int sleepers;           /* workers blocked on cv_start (under mu) */
    int caller_waiting;     /* caller blocked on cv_done (under mu) */
    /* current job: written before generation is bumped */
    qk_task_fn fn;
    void *ctx;
    int64_t ntasks;
    atomic_llong next;
    atomic_int active;      /* workers still running the current job */
};

/* Between jobs a thread spins this long on the shared counters before it
 * blocks: ops run back to back in training and inference, and a futex
 * wake-up per op costs more than many small ops take. */
#define POOL_SPIN_S 200e-6

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

typedef struct { qk_pool *p; int id; } worker_arg;

static void run_tasks(qk_pool *p, int worker)
{
    for (;;) {
        int64_t t = atomic_fetch_add(&p->next, 1);
        if (t >= p->ntasks)
            break;
        p->fn(p->ctx, t, worker);
    }
}

/* Spin until *v differs from old (generation) or stop; 1 if it changed. */
static int spin_gen(qk_pool *p, unsigned long long old)
{
    double t0 = qk_now();
    for (int i = 1;; i++) {
        if (atomic_load_explicit(&p->generation, memory_order_acquire) != old || atomic_load(&p->stop))
            return 1;
        cpu_relax();
        if ((i & 63) == 0 && qk_now() - t0 > POOL_SPIN_S)
            return 0;
    }
}

static void *worker_main(void *arg)
{
    worker_arg *wa = arg;
    qk_pool *p = wa->p;
    int id = wa->id;
    free(wa);
    unsigned long long seen = 0;
    for (;;) {
        if (!spin_gen(p, seen)) {
            pthread_mutex_lock(&p->mu);
            p->sleepers++;
            while (!atomic_load(&p->stop) && atomic_load(&p->generation) == seen)
                pthread_cond_wait(&p->cv_start, &p->mu);
            p->sleepers--;
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop))
            break;
        seen = atomic_load_explicit(&p->generation, memory_order_acquire);
        run_tasks(p, id);
        if (atomic_fetch_sub_explicit(&p->active, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->mu);
            if (p->caller_waiting)
                pthread_cond_signal(&p->cv_done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

int qk_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

qk_status qk_pool_create(int nthreads, qk_pool **out)
{
    *out = NULL;
    if (nthreads <= 0)
        nthreads = qk_cpu_count();
    if (nthreads > 256)
        return qk_error(QK_ERR_ARG, "thread count %d is too large (max 256)", nthreads);
    qk_pool *p = calloc(1, sizeof *p);
    if (!p)
        return qk_error(QK_ERR_NOMEM, "thread pool: out of memory");
    p->n = nthreads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_start, NULL);
    pthread_cond_init(&p->cv_done, NULL);
    p->th = calloc((size_t)nthreads, sizeof *p->th);
    if (!p->th) {
        free(p);
        return qk_error(QK_ERR_NOMEM, "thread pool: out of memory");
    }
    for (int i = 1; i < nthreads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (wa) {
            wa->p = p;
            wa->id = i;
        }
        if (!wa || pthread_create(&p->th[i], NULL, worker_main, wa) != 0) {
            free(wa);
            p->n = i;
            qk_pool_destroy(p);
            return qk_error(QK_ERR_NOMEM, "thread pool: cannot start thread %d", i);
        }
    }
    *out = p;
    return QK_OK;
}

void qk_pool_destroy(qk_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->cv_start);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++)
        pthread_join(p->th[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv_start);
    pthread_cond_destroy(&p->cv_done);
    free(p->th);
    free(p);
}

int qk_pool_threads(const qk_pool *p) { return p ? p->n : 1; }

void qk_pool_run(qk_pool *p, int64_t ntasks, qk_task_fn fn, void *ctx)
{
    if (ntasks <= 0)
        return;
    if (!p || p->n == 1 || ntasks == 1) {
        for (int64_t t = 0; t < ntasks; t++)
            fn(ctx, t, 0);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    p->ntasks = ntasks;
    atomic_store(&p->next, 0);
    atomic_store(&p->active, p->n - 1);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    if (p->sleepers)
        pthread_cond_broadcast(&p->cv_start);
    pthread_mutex_unlock(&p->mu);
    run_tasks(p, 0);
    double t0 = qk_now();
    for (int i = 1; atomic_load_explicit(&p->active, memory_order_acquire) > 0; i++) {
        cpu_relax();
        if ((i & 63) == 0 && qk_now() - t0 > POOL_SPIN_S)
            break;
    }
    if (atomic_load_explicit(&p->active, memory_order_acquire) > 0) {
        pthread_mutex_lock(&p->mu);
        p->caller_waiting = 1;
        while (atomic_load(&p->active) > 0)
            pthread_cond_wait(&p->cv_done, &p->mu);
        p->caller_waiting = 0;
        pthread_mutex_unlock(&p->mu);
    }
}
