/* libqkit inside another program: a host that uses OpenMP and OpenBLAS
 * itself keeps its thread settings across qkit calls (every sgemm backend,
 * with and without a pool), and two host threads that each plan and run
 * their own model at once get what each gets alone (bit for bit). Built
 * with -fopenmp (Makefile). */
#include "qkit/qkit.h"
#include "qt.h"

#include <cblas.h>
#include <omp.h>
#include <pthread.h>
#include <string.h>

/* A small in-memory dataset of n 28x28 images. */
static void make_ds(qk_dataset *ds, int64_t n)
{
    memset(ds, 0, sizeof *ds);
    ds->n = n, ds->h = 28, ds->w = 28;
    ds->images = qk_malloc((size_t)n * 784);
    ds->labels = qk_malloc((size_t)n);
    for (int64_t i = 0; i < n * 784; i++)
        ds->images[i] = (uint8_t)((i * 7919) % 251);
    for (int64_t i = 0; i < n; i++)
        ds->labels[i] = (uint8_t)(i % 10);
    ds->owned = 1;
}

typedef struct job {
    const char *arch;
    uint64_t seed;
    float logits[8 * 10];
    qk_status st;
} job;

/* Build, plan, run one batch of 8 inputs; logits kept. */
static void *run_job(void *p)
{
    job *j = p;
    qk_graph *g = NULL;
    j->st = qk_zoo_build(j->arch, j->seed, &g);
    if (j->st == QK_OK)
        j->st = qk_ops_bind(g);
    if (j->st == QK_OK)
        j->st = qk_graph_plan(g, 8, 0, NULL);
    if (j->st == QK_OK) {
        float *in = qk_f32(&g->values[g->inputs[0]].t);
        for (int i = 0; i < 8 * 784; i++)
            in[i] = (float)((i * 31 + (int)j->seed) % 97) / 97.0f - 0.5f;
        j->st = qk_graph_forward(g);
    }
    if (j->st == QK_OK)
        memcpy(j->logits, qk_f32(&g->values[g->outputs[0]].t), sizeof j->logits);
    qk_graph_destroy(g);
    return NULL;
}

int main(void)
{
    omp_set_num_threads(2);
    openblas_set_num_threads(2);
    qk_dataset ds;
    make_ds(&ds, 64);
    qk_norm norm = { .mean = 0.286f, .std = 0.353f };
    static const char *const kinds[] = { "dnnl", "openblas", "reference" };
    for (int k = 0; k < 3; k++) {
        for (int threads = 0; threads <= 2; threads += 2) {
            qk_graph *g;
            QT_OK(qk_zoo_build("lenet", 1, &g));
            QT_OK(qk_ops_bind(g));
            qk_plan_options o = g->opts;
            qk_sgemm_kind sk;
            QT_OK(qk_sgemm_parse(kinds[k], &sk));
            o.sgemm = sk;
            qk_graph_set_options(g, &o);
            qk_pool *pool = NULL;
            if (threads)
                QT_OK(qk_pool_create(threads, &pool));
            qk_eval_result r;
            QT_OK(qk_evaluate(g, &ds, norm, 16, pool, &r));
            QT_CHECK(omp_get_max_threads() == 2, "%s, pool %d: host OpenMP threads %d after qk_evaluate (2 set)",
                     kinds[k], threads, omp_get_max_threads());
            QT_CHECK(openblas_get_num_threads() == 2, "%s, pool %d: host OpenBLAS threads %d after qk_evaluate "
                     "(2 set)", kinds[k], threads, openblas_get_num_threads());
            qk_pool_destroy(pool);
            qk_graph_destroy(g);
        }
    }
    /* the host's own OpenMP region still gets its 2 threads */
    int team = 0;
#pragma omp parallel
    {
#pragma omp single
        team = omp_get_num_threads();
    }
    QT_CHECK(team == 2, "host OpenMP team of %d after qkit (2 set)", team);
    /* and its BLAS still works */
    float a[4] = { 1, 2, 3, 4 }, b[4] = { 1, 0, 0, 1 }, c[4] = { 0 };
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 2, 2, 2, 1.0f, a, 2, b, 2, 0.0f, c, 2);
    QT_CHECK(c[0] == 1 && c[3] == 4, "host sgemm");

    /* two threads, each its own model, at once == one at a time */
    job alone[2] = { { "resnet8", 3, { 0 }, QK_OK }, { "lenet", 5, { 0 }, QK_OK } }, both[2];
    memcpy(both, alone, sizeof both);
    for (int rep = 0; rep < 3; rep++) {
        run_job(&alone[0]);
        run_job(&alone[1]);
        pthread_t t[2];
        for (int i = 0; i < 2; i++)
            pthread_create(&t[i], NULL, run_job, &both[i]);
        for (int i = 0; i < 2; i++)
            pthread_join(t[i], NULL);
        for (int i = 0; i < 2; i++) {
            QT_CHECK(alone[i].st == QK_OK && both[i].st == QK_OK, "%s: %s", alone[i].arch, qk_last_error());
            QT_CHECK(memcmp(alone[i].logits, both[i].logits, sizeof alone[i].logits) == 0,
                     "%s: concurrent run differs from the run alone", alone[i].arch);
        }
    }
    qk_dataset_free(&ds);
    return qt_finish("test_embed");
}
