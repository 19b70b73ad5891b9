/* base + graph core: pool determinism, RNG, error messages, graph sort. */
#include "qkit/graph.h"
#include "qt.h"

#include <string.h>

typedef struct { double *out; int64_t n; } sum_ctx;

static void sum_task(void *ctx, int64_t t, int w)
{
    (void)w;
    sum_ctx *c = ctx;
    double s = 0;
    for (int64_t i = 0; i < 1000; i++)
        s += 1.0 / (double)(t * 1000 + i + 1);
    c->out[t] = s;
}

int main(void)
{
    /* pool: every task runs exactly once, same results for 1 and 4 threads */
    for (int nt = 1; nt <= 4; nt += 3) {
        qk_pool *p;
        QT_OK(qk_pool_create(nt, &p));
        QT_CHECK(qk_pool_threads(p) == nt, "threads %d", qk_pool_threads(p));
        double out[257] = { 0 };
        sum_ctx c = { out, 257 };
        for (int rep = 0; rep < 50; rep++)
            qk_pool_run(p, 257, sum_task, &c);
        double s = 0;
        for (int i = 0; i < 257; i++)
            s += out[i];
        QT_NEAR(s, 13.0340, 1e-3, "harmonic sum over tasks");
        qk_pool_destroy(p);
    }
    /* rng: deterministic, uniform range, below() bound */
    qk_rng a, b;
    qk_rng_seed(&a, 42);
    qk_rng_seed(&b, 42);
    int same = 1, inrange = 1;
    double mean = 0;
    for (int i = 0; i < 10000; i++) {
        float u = qk_rng_uniform(&a);
        same &= u == qk_rng_uniform(&b);
        inrange &= u >= 0 && u < 1;
        mean += u;
        inrange &= qk_rng_below(&a, 7) < 7;
        qk_rng_below(&b, 7);
    }
    QT_CHECK(same, "rng not deterministic");
    QT_CHECK(inrange, "rng out of range");
    QT_NEAR(mean / 10000, 0.5, 0.02, "uniform mean");

    /* errors carry context */
    qk_error(QK_ERR_IO, "file '%s' missing", "x.gz");
    qk_error_context(QK_ERR_IO, "dataset");
    QT_CHECK(strcmp(qk_last_error(), "dataset: file 'x.gz' missing") == 0, "%s", qk_last_error());

    /* graph: duplicate names rejected, sort finds order, cycles/undefined reported */
    qk_graph *g;
    QT_OK(qk_graph_create(&g));
    int x = qk_graph_add_input(g, "x", QK_F32, 2, (int64_t[]){ -1, 4 });
    int y = qk_graph_add_value(g, "y", QK_VALUE_ACT);
    int z = qk_graph_add_value(g, "z", QK_VALUE_ACT);
    QT_CHECK(qk_graph_add_value(g, "y", QK_VALUE_ACT) < 0, "duplicate accepted");
    int n1 = qk_graph_add_node(g, "Relu", "second", 1, &y, 1, &z);
    int n0 = qk_graph_add_node(g, "Relu", "first", 1, &x, 1, &y);
    QT_CHECK(n0 == 1 && n1 == 0, "node ids");
    QT_OK(qk_graph_sort(g));
    QT_CHECK(g->order[0] == 1 && g->order[1] == 0, "topological order");
    QT_CHECK(qk_graph_add_node(g, "Relu", "again", 1, &x, 1, &y) < 0, "double producer accepted");
    QT_CHECK(g->values[x].dyn_batch == 1, "dynamic batch flag");
    QT_OK(qk_node_set_ints(g, n0, "pads", 4, (int64_t[]){ 1, 1, 1, 1 }));
    int64_t pads[4];
    QT_CHECK(qk_node_ints(&g->nodes[n0], "pads", pads, 4) == 4 && pads[3] == 1, "ints attr");
    /* shared helpers: op type by domain, initializers */
    QT_CHECK(qk_node_is(&g->nodes[n0], "Relu") && !qk_node_is(&g->nodes[n0], "Clip"), "qk_node_is");
    QT_CHECK(qk_node_is_in(&g->nodes[n0], NULL, "Relu") && !qk_node_is_in(&g->nodes[n0], "ai.qkit", "Relu"),
             "qk_node_is_in default domain");
    g->nodes[n0].domain = qk_strdup("ai.qkit");
    QT_CHECK(!qk_node_is(&g->nodes[n0], "Relu") && qk_node_is_in(&g->nodes[n0], "ai.qkit", "Relu"),
             "qk_node_is_in ai.qkit");
    QT_CHECK(qk_domain_is_default("ai.onnx") && qk_domain_is_default("") && !qk_domain_is_default("ai.qkit"),
             "default domain spellings");
    QT_CHECK(!qk_value_is_initializer(&g->values[x]), "an input is no initializer");
    qk_graph_destroy(g);

    /* int16 is a dtype like the others; integer elements of every width */
    QT_CHECK(qk_dtype_size(QK_I16) == 2 && strcmp(qk_dtype_name(QK_I16), "int16") == 0, "int16 dtype");
    {
        qk_tensor t16, t64;
        QT_OK(qk_tensor_alloc(&t16, QK_I16, 1, (int64_t[]){ 2 }));
        QT_OK(qk_tensor_alloc(&t64, QK_I64, 1, (int64_t[]){ 2 }));
        ((int16_t *)t16.data)[1] = -30000;
        ((int64_t *)t64.data)[1] = 5000000000LL;
        QT_CHECK(qk_tensor_int_at(&t16, 1) == -30000 && qk_tensor_int_at(&t64, 1) == 5000000000LL,
                 "qk_tensor_int_at int16/int64");
        qk_tensor_free(&t16);
        qk_tensor_free(&t64);
    }
    QT_CHECK(qk_clamp_i32(-5000000000LL, -128, 127) == -128 && qk_clamp_i32(300, 0, 255) == 255 &&
             qk_clamp_i32(7, 0, 255) == 7, "qk_clamp_i32");

    QT_OK(qk_graph_create(&g));
    int u = qk_graph_add_value(g, "u", QK_VALUE_ACT);
    int w = qk_graph_add_value(g, "w", QK_VALUE_ACT);
    qk_graph_add_node(g, "Relu", "a", 1, &u, 1, &w);
    qk_graph_add_node(g, "Relu", "b", 1, &w, 1, &u);
    QT_CHECK(qk_graph_sort(g) == QK_ERR_FORMAT, "cycle not detected");
    QT_CHECK(strstr(qk_last_error(), "never computed") != NULL, "%s", qk_last_error());
    qk_graph_destroy(g);
    return qt_finish("test_base");
}
