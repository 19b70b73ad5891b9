/* Operator profiler (graph.h): rows of time per op type or node name. */
#include "qkit/graph.h"

#include <pthread.h>
#include <string.h>

#define PROF_MAX 256 /* rows beyond this are not recorded */

typedef struct prof_row {
    char name[48];
    double fwd, bwd;
    long calls;
} prof_row;

struct qk_profiler {
    pthread_mutex_t mu;
    int per_node;
    int n;
    prof_row rows[PROF_MAX];
};

qk_status qk_profiler_create(int per_node, qk_profiler **out)
{
    if (!out)
        return qk_error(QK_ERR_ARG, "profiler: out is NULL");
    *out = NULL;
    qk_profiler *p = qk_calloc(1, sizeof *p);
    if (!p)
        return qk_error(QK_ERR_NOMEM, "profiler: out of memory");
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        qk_free(p);
        return qk_error(QK_ERR_NOMEM, "profiler: cannot create its lock");
    }
    p->per_node = per_node != 0;
    *out = p;
    return QK_OK;
}

void qk_profiler_destroy(qk_profiler *p)
{
    if (!p)
        return;
    pthread_mutex_destroy(&p->mu);
    qk_free(p);
}

void qk_profiler_reset(qk_profiler *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->n = 0;
    memset(p->rows, 0, sizeof p->rows);
    pthread_mutex_unlock(&p->mu);
}

int qk_profiler_rows(const qk_profiler *p)
{
    return p ? p->n : 0;
}

int qk_profiler_row(const qk_profiler *p, int i, const char **name, double *fwd, double *bwd, long *calls)
{
    if (!p || i < 0 || i >= p->n)
        return 0;
    if (name)
        *name = p->rows[i].name;
    if (fwd)
        *fwd = p->rows[i].fwd;
    if (bwd)
        *bwd = p->rows[i].bwd;
    if (calls)
        *calls = p->rows[i].calls;
    return 1;
}

/* Executor side (exec.c): add dt seconds to the row of node n. */
void qk_profiler_add(qk_profiler *p, const qk_node *n, double dt, int backward)
{
    const char *name = p->per_node ? n->name : n->op->type;
    pthread_mutex_lock(&p->mu);
    int i = 0;
    while (i < p->n && strncmp(p->rows[i].name, name, sizeof p->rows[i].name - 1))
        i++;
    if (i == p->n && p->n < PROF_MAX)
        snprintf(p->rows[p->n++].name, sizeof p->rows[0].name, "%s", name);
    if (i < p->n) {
        if (backward) {
            p->rows[i].bwd += dt;
        } else {
            p->rows[i].fwd += dt;
            p->rows[i].calls++;
        }
    }
    pthread_mutex_unlock(&p->mu);
}

void qk_profiler_print(const qk_profiler *p, FILE *f)
{
    if (!p || !f)
        return;
    double tot = 0;
    for (int i = 0; i < p->n; i++)
        tot += p->rows[i].fwd + p->rows[i].bwd;
    fprintf(f, "qkit profile: %s, forward s, backward s, share\n", p->per_node ? "node" : "op");
    for (int i = 0; i < p->n; i++)
        fprintf(f, "  %-22s %9.4f %9.4f %5.1f%%\n", p->rows[i].name, p->rows[i].fwd, p->rows[i].bwd,
                tot > 0 ? 100.0 * (p->rows[i].fwd + p->rows[i].bwd) / tot : 0.0);
}
