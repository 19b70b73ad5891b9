/* Shared fixture of test_ops_light.c and test_ops_shape.c: one node over
 * CONST/PARAM inputs, value and shape checks, gradient-check recording. */
#ifndef QK_TESTS_LIGHT_FX_H
#define QK_TESTS_LIGHT_FX_H
#include "qkit/registry.h"
#include "qkit/ops.h"
#include "gradcheck.h"
#include "qt.h"

#include <float.h>
#include <string.h>

static qk_pool *pool1, *pool2;

/* ---- small fixture: one node over CONST inputs, planned for inference ---- */
static qk_graph *G;
static int NODE;

static inline void fx_begin(void) { qk_graph_create(&G); }
static inline void fx_end(void) { qk_graph_destroy(G); G = NULL; }
static inline int cin(const char *name, qk_dtype dt, int nd, const int64_t *dims, const void *data)
{
    return gc_add(G, name, 0, dt, nd, dims, data, NULL);
}
static inline qk_status fx_run(const char *op, int n_in, const int *in, int n_out)
{
    NODE = gc_node(G, op, n_in, in, n_out);
    if (NODE < 0)
        return QK_ERR_ARG;
    qk_status st = qk_ops_bind(G);
    if (st == QK_OK)
        st = qk_graph_plan(G, 1, 0, pool2);
    if (st == QK_OK)
        st = qk_graph_forward(G);
    return st;
}
static inline const qk_tensor *fx_out(int k) { return &G->values[G->nodes[NODE].out[k]].t; }
static inline const float *fx_f(int k) { return qk_f32(fx_out(k)); }

static inline void check_vals(const float *got, const float *want, int n, double tol, const char *what)
{
    for (int i = 0; i < n; i++)
        QT_NEAR(got[i], want[i], tol, what);
}

static inline void check_shape(const qk_tensor *t, int nd, const int64_t *d, const char *what)
{
    int ok = t->ndim == nd;
    for (int i = 0; ok && i < nd; i++)
        ok = t->dims[i] == d[i];
    char b[128];
    QT_CHECK(ok, "%s: shape %s", what, qk_shape_str(t, b, sizeof b));
}

/* Run a gradient check and record it. */
static inline void gc_expect(qk_graph *g, int node, const gc_opts *o, const char *what)
{
    gc_result r;
    qk_status st = gc_check(g, node, o, &r);
    QT_CHECK(st == QK_OK && r.pass, "gradcheck %s: %s (%s)", what, st == QK_OK ? r.msg : qk_last_error(),
             qk_status_str(st));
}

static inline void expect_err(qk_status got, qk_status want, const char *needle, const char *what)
{
    QT_CHECK(got == want && strstr(qk_last_error(), needle) != NULL, "%s: got %s '%s', want %s naming '%s'", what,
             qk_status_str(got), qk_last_error(), qk_status_str(want), needle);
}

/* SoftmaxCrossEntropyLoss graph: scores PARAM, labels CONST, optional weights. */
static inline int sce_graph(qk_graph **pg, int nd, const int64_t *sd, const int64_t *labels, const float *w,
                     const char *red, int has_ii, int64_t ii, int n_out, qk_rng *rng)
{
    qk_graph_create(pg);
    qk_graph *g = *pg;
    int x = gc_add(g, "scores", 1, QK_F32, nd, sd, NULL, rng);
    int64_t ld[8];
    ld[0] = sd[0];
    for (int i = 2; i < nd; i++)
        ld[i - 1] = sd[i];
    int l = gc_add(g, "labels", 0, QK_I64, nd - 1, ld, labels, NULL);
    int in[3] = { x, l, -1 };
    if (w)
        in[2] = gc_add(g, "w", 0, QK_F32, 1, &sd[1], w, NULL);
    int node = gc_node(g, "SoftmaxCrossEntropyLoss", w ? 3 : 2, in, n_out);
    if (red)
        qk_node_set_string(g, node, "reduction", red);
    if (has_ii)
        qk_node_set_int(g, node, "ignore_index", ii);
    return node;
}

#endif
