/* Shared fixture of test_ptq.c and test_ptq_calib.c: a 2-thread pool, a
 * temporary directory, site and graph queries on prepared models, synthetic
 * datasets, a forward pass that returns the logits. */
#ifndef QK_TESTS_PTQ_FX_H
#define QK_TESTS_PTQ_FX_H
#include "qkit/registry.h"
#include "qkit/onnx.h"
#include "qkit/ops.h"
#include "qkit/ptq.h"
#include "qkit/train.h"
#include "qkit/zoo.h"
#include "qt.h"

#include <float.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static qk_pool *pool;
static char tmpdir[256];

static inline int count_op(const qk_graph *g, const char *op)
{
    int c = 0;
    for (int i = 0; i < g->n_nodes; i++)
        c += strcmp(g->nodes[i].op_type, op) == 0;
    return c;
}

static inline int has_str(const char *hay, const char *needle) { return hay && strstr(hay, needle) != NULL; }

static inline const qk_qsite *find_site(const qk_qmodel *m, const char *value, int is_weight)
{
    const qk_qsite *s;
    int n = qk_qmodel_sites(m, &s);
    for (int i = 0; i < n; i++)
        if (s[i].is_weight == is_weight && strcmp(s[i].value, value) == 0)
            return &s[i];
    return NULL;
}

static inline int count_sites(const qk_qmodel *m, int is_weight)
{
    const qk_qsite *s;
    int n = qk_qmodel_sites(m, &s), c = 0;
    for (int i = 0; i < n; i++)
        c += s[i].is_weight == is_weight;
    return c;
}

/* op_type of the producer of input i of node `name` ("" for initializers
 * and graph inputs, NULL when the node does not exist). */
static inline const char *input_producer(const qk_graph *g, const char *name, int i)
{
    int k = qk_graph_find_node(g, name);
    if (k < 0 || i >= g->nodes[k].n_in || g->nodes[k].in[i] < 0)
        return NULL;
    int p = g->values[g->nodes[k].in[i]].producer;
    return p < 0 ? "" : g->nodes[p].op_type;
}

/* A dataset of n 28x28 images: uniform random pixels (seed), or all `fill`
 * when seed == 0. Labels i % 10. */
static inline qk_dataset synth_ds(int64_t n, uint64_t seed, uint8_t fill)
{
    qk_dataset d = { .n = n, .h = 28, .w = 28, .owned = 1 };
    d.images = qk_malloc((size_t)n * 784);
    d.labels = qk_malloc((size_t)n);
    qk_rng r;
    qk_rng_seed(&r, seed);
    for (int64_t i = 0; i < n * 784; i++)
        d.images[i] = seed ? (uint8_t)qk_rng_below(&r, 256) : fill;
    for (int64_t i = 0; i < n; i++)
        d.labels[i] = (uint8_t)(i % 10);
    return d;
}

/* Forward the first n (<= 256) images of ds through g (left planned at n):
 * returns a malloc'ed copy of the first output (n * 10 floats) or NULL. */
static inline float *forward_n(qk_graph *g, const qk_dataset *ds, int64_t n, qk_norm norm)
{
    qk_batcher b;
    if (qk_ops_bind(g) != QK_OK || qk_graph_plan(g, n, 0, pool) != QK_OK ||
        qk_batcher_init(&b, ds, n, 0, 0, norm, NULL) != QK_OK)
        return NULL;
    int64_t m;
    qk_status st = qk_batcher_get(&b, 0, qk_f32(&g->values[g->inputs[0]].t), NULL, &m);
    qk_batcher_free(&b);
    if (st != QK_OK || m != n || qk_graph_set_batch(g, n) != QK_OK || qk_graph_forward(g) != QK_OK)
        return NULL;
    const qk_tensor *y = &g->values[g->outputs[0]].t;
    float *out = malloc((size_t)qk_tensor_numel(y) * sizeof *out);
    if (out)
        memcpy(out, y->data, (size_t)qk_tensor_numel(y) * sizeof *out);
    return out;
}

static inline double top1(qk_graph *g, const qk_dataset *ds, qk_norm norm)
{
    qk_eval_result r;
    qk_status st = qk_evaluate(g, ds, norm, 250, pool, &r);
    QT_CHECK(st == QK_OK, "evaluate: %s", qk_last_error());
    return st == QK_OK ? r.top1 : -1.0;
}

static inline qk_ptq_config cfg_for(const char *backend)
{
    qk_ptq_config c;
    qk_ptq_config_default(&c);
    c.backend = qk_backend_find(backend);
    return c;
}

static inline qk_qmodel *prepare_zoo(const char *arch, const qk_ptq_config *c)
{
    qk_graph *g;
    qk_qmodel *m = NULL;
    if (qk_zoo_build(arch, 7, &g) != QK_OK) {
        QT_CHECK(0, "zoo %s: %s", arch, qk_last_error());
        return NULL;
    }
    qk_status st = qk_ptq_prepare(g, c, &m);
    QT_CHECK(st == QK_OK, "prepare %s for %s: %s", arch, c->backend ? c->backend->name : "?", qk_last_error());
    return m;
}

/* Run one test; QT_TIMES=1 prints its wall time. */
static inline void run_timed(const char *name, void (*fn)(void))
{
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    fn();
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (getenv("QT_TIMES"))
        printf("time: %-28s %.2f s\n", name, (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec));
}
#define RUN(fn) run_timed(#fn, fn)

/* The pool and a fresh temporary directory /tmp/<tag>_<pid>. */
static inline void fx_begin(const char *tag)
{
    QT_OK(qk_pool_create(2, &pool));
    snprintf(tmpdir, sizeof tmpdir, "/tmp/%s_%d", tag, (int)getpid());
    mkdir(tmpdir, 0755);
}

static inline void fx_end(void)
{
    qk_pool_destroy(pool);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", tmpdir);
}
#endif
