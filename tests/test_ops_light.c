/* Light float operators: activations and broadcasting binary ops (forward
 * values against hand-computed cases, backward against finite differences
 * with gradcheck.h), the harness's own ability to fail, 1 vs 2 threads
 * bit-identical for every light op, and error cases naming the node.
 * Shape ops, softmax and the loss: test_ops_shape.c. */
#include "light_fx.h"
#include "../src/ops/fkern.h"

#include "qkit/registry.h"
#include "qkit/cpu.h"

/* ===================== activations ===================== */
static void test_act_forward(void)
{
    const float x5[] = { -4, -1, 0, 1, 4 };
    fx_begin();
    int x = cin("x", QK_F32, 1, (int64_t[]){ 5 }, x5);
    QT_OK(fx_run("Relu", 1, &x, 1));
    check_vals(fx_f(0), (float[]){ 0, 0, 0, 1, 4 }, 5, 0, "Relu");
    fx_end();

    fx_begin();
    x = cin("x", QK_F32, 1, (int64_t[]){ 5 }, x5);
    int lo = cin("lo", QK_F32, 0, NULL, (float[]){ -0.5f });
    int hi = cin("hi", QK_F32, 0, NULL, (float[]){ 2.0f });
    QT_OK(fx_run("Clip", 3, (int[]){ x, lo, hi }, 1));
    check_vals(fx_f(0), (float[]){ -0.5f, -0.5f, 0, 1, 2 }, 5, 0, "Clip min max");
    fx_end();

    fx_begin(); /* only max (min absent) */
    x = cin("x", QK_F32, 1, (int64_t[]){ 5 }, x5);
    hi = cin("hi", QK_F32, 0, NULL, (float[]){ 0.5f });
    QT_OK(fx_run("Clip", 3, (int[]){ x, -1, hi }, 1));
    check_vals(fx_f(0), (float[]){ -4, -1, 0, 0.5f, 0.5f }, 5, 0, "Clip max only");
    fx_end();

    fx_begin(); /* no bounds: identity */
    x = cin("x", QK_F32, 1, (int64_t[]){ 5 }, x5);
    QT_OK(fx_run("Clip", 1, &x, 1));
    check_vals(fx_f(0), x5, 5, 0, "Clip default");
    fx_end();

    fx_begin(); /* opset 6 attribute form: ReLU6 */
    x = cin("x", QK_F32, 1, (int64_t[]){ 5 }, (float[]){ -1, 3, 6, 7, 100 });
    NODE = gc_node(G, "Clip", 1, &x, 1);
    qk_node_set_float(G, NODE, "min", 0.0f);
    qk_node_set_float(G, NODE, "max", 6.0f);
    QT_OK(qk_ops_bind(G));
    QT_OK(qk_graph_plan(G, 1, 0, NULL));
    QT_OK(qk_graph_forward(G));
    check_vals(fx_f(0), (float[]){ 0, 3, 6, 6, 6 }, 5, 0, "Clip attributes");
    fx_end();

    fx_begin(); /* int8 Clip and Relu */
    const int8_t xi[] = { -128, -5, 0, 5, 127 };
    x = cin("x", QK_I8, 1, (int64_t[]){ 5 }, xi);
    lo = cin("lo", QK_I8, 0, NULL, (int8_t[]){ -3 });
    hi = cin("hi", QK_I8, 0, NULL, (int8_t[]){ 100 });
    QT_OK(fx_run("Clip", 3, (int[]){ x, lo, hi }, 1));
    const int8_t *yi = fx_out(0)->data;
    QT_CHECK(fx_out(0)->dtype == QK_I8 && yi[0] == -3 && yi[1] == -3 && yi[2] == 0 && yi[3] == 5 && yi[4] == 100,
             "Clip int8: %d %d %d %d %d", yi[0], yi[1], yi[2], yi[3], yi[4]);
    fx_end();
    fx_begin();
    x = cin("x", QK_I8, 1, (int64_t[]){ 5 }, xi);
    QT_OK(fx_run("Relu", 1, &x, 1));
    yi = fx_out(0)->data;
    QT_CHECK(yi[0] == 0 && yi[1] == 0 && yi[2] == 0 && yi[3] == 5 && yi[4] == 127, "Relu int8");
    fx_end();

    fx_begin();
    x = cin("x", QK_F32, 1, (int64_t[]){ 3 }, (float[]){ -1, 0, 1 });
    NODE = gc_node(G, "HardSigmoid", 1, &x, 1);
    qk_node_set_float(G, NODE, "alpha", 0.5f);
    qk_node_set_float(G, NODE, "beta", 0.6f);
    QT_OK(qk_ops_bind(G));
    QT_OK(qk_graph_plan(G, 1, 0, NULL));
    QT_OK(qk_graph_forward(G));
    check_vals(fx_f(0), (float[]){ 0.1f, 0.6f, 1.0f }, 3, 1e-6, "HardSigmoid");
    fx_end();

    fx_begin();
    x = cin("x", QK_F32, 1, (int64_t[]){ 5 }, x5);
    QT_OK(fx_run("HardSwish", 1, &x, 1));
    check_vals(fx_f(0), (float[]){ 0, -1.0f / 3, 0, 2.0f / 3, 4 }, 5, 1e-6, "HardSwish");
    fx_end();

    fx_begin();
    x = cin("x", QK_F32, 1, (int64_t[]){ 5 }, (float[]){ 0, 2, -2, -100, 100 });
    QT_OK(fx_run("Sigmoid", 1, &x, 1));
    check_vals(fx_f(0), (float[]){ 0.5f, 0.880797078f, 0.119202922f, 0, 1 }, 5, 1e-6, "Sigmoid");
    QT_CHECK(fx_f(0)[3] >= 0 && fx_f(0)[3] < 1e-30f, "Sigmoid(-100) = %g", fx_f(0)[3]);
    fx_end();
}

static void test_act_grad(void)
{
    static const char *ops[] = { "Relu", "Clip", "HardSigmoid", "HardSwish", "Sigmoid" };
    for (int k = 0; k < 5; k++) {
        qk_graph *g;
        qk_graph_create(&g);
        qk_rng rng;
        qk_rng_seed(&rng, 10 + k);
        int x = gc_add(g, "x", 1, QK_F32, 3, (int64_t[]){ 2, 3, 7 }, NULL, &rng);
        gc_fill(&g->values[x].t, &rng, -5, 5);
        gc_opts o = gc_defaults();
        int node;
        if (k == 1) { /* learnable bounds: min and max get gradients too */
            int lo = gc_add(g, "lo", 1, QK_F32, 0, NULL, (float[]){ -1.5f }, NULL);
            int hi = gc_add(g, "hi", 1, QK_F32, 0, NULL, (float[]){ 2.0f }, NULL);
            node = gc_node(g, "Clip", 3, (int[]){ x, lo, hi }, 1);
            o.kinks[0] = -1.5;
            o.kinks[1] = 2.0;
            o.n_kinks = 2;
            o.skip_dist = 0.01;
        } else {
            node = gc_node(g, ops[k], 1, &x, 1);
            if (k == 0)
                o.kinks[o.n_kinks++] = 0;
            if (k == 2) { /* alpha 0.2 beta 0.5: kinks at -2.5 and 2.5 */
                o.kinks[o.n_kinks++] = -2.5;
                o.kinks[o.n_kinks++] = 2.5;
            }
            if (k == 3) {
                o.kinks[o.n_kinks++] = -3;
                o.kinks[o.n_kinks++] = 3;
            }
        }
        gc_expect(g, node, &o, ops[k]);
        qk_graph_destroy(g);
    }
    /* auto_kink: Relu with values exactly at the kink is skipped, not failed */
    qk_graph *g;
    qk_graph_create(&g);
    int x = gc_add(g, "x", 1, QK_F32, 1, (int64_t[]){ 4 }, (float[]){ 0.0f, 1.0f, -1.0f, 0.0f }, NULL);
    int node = gc_node(g, "Relu", 1, &x, 1);
    gc_opts o = gc_defaults();
    o.auto_kink = 1;
    gc_result r;
    QT_OK(gc_check(g, node, &o, &r));
    QT_CHECK(r.pass && r.skipped == 2 && r.checked == 2, "auto_kink: %s", r.msg);
    qk_graph_destroy(g);
}

/* ===================== binary broadcasting ops ===================== */
static void test_eltwise_forward(void)
{
    fx_begin(); /* [2,3] + [3] */
    int a = cin("a", QK_F32, 2, (int64_t[]){ 2, 3 }, (float[]){ 1, 2, 3, 4, 5, 6 });
    int b = cin("b", QK_F32, 1, (int64_t[]){ 3 }, (float[]){ 10, 20, 30 });
    QT_OK(fx_run("Add", 2, (int[]){ a, b }, 1));
    check_shape(fx_out(0), 2, (int64_t[]){ 2, 3 }, "Add bcast");
    check_vals(fx_f(0), (float[]){ 11, 22, 33, 14, 25, 36 }, 6, 0, "Add bcast");
    fx_end();

    fx_begin(); /* [2,1] * [1,3] -> [2,3] */
    a = cin("a", QK_F32, 2, (int64_t[]){ 2, 1 }, (float[]){ 2, 3 });
    b = cin("b", QK_F32, 2, (int64_t[]){ 1, 3 }, (float[]){ 1, 10, 100 });
    QT_OK(fx_run("Mul", 2, (int[]){ a, b }, 1));
    check_shape(fx_out(0), 2, (int64_t[]){ 2, 3 }, "Mul outer");
    check_vals(fx_f(0), (float[]){ 2, 20, 200, 3, 30, 300 }, 6, 0, "Mul outer");
    fx_end();

    fx_begin(); /* scalar - [3], [3] / scalar */
    a = cin("a", QK_F32, 0, NULL, (float[]){ 1 });
    b = cin("b", QK_F32, 1, (int64_t[]){ 3 }, (float[]){ 1, 2, 4 });
    QT_OK(fx_run("Sub", 2, (int[]){ a, b }, 1));
    check_vals(fx_f(0), (float[]){ 0, -1, -3 }, 3, 0, "Sub scalar");
    fx_end();
    fx_begin();
    a = cin("a", QK_F32, 1, (int64_t[]){ 3 }, (float[]){ 1, 2, 4 });
    b = cin("b", QK_F32, 0, NULL, (float[]){ 4 });
    QT_OK(fx_run("Div", 2, (int[]){ a, b }, 1));
    check_vals(fx_f(0), (float[]){ 0.25f, 0.5f, 1 }, 3, 0, "Div scalar");
    fx_end();

    fx_begin(); /* [2,3,1,2] + [3,4,1] -> [2,3,4,2] (both broadcast) */
    float av[12], bv[12];
    for (int i = 0; i < 12; i++) {
        av[i] = (float)i;
        bv[i] = (float)(100 * i);
    }
    a = cin("a", QK_F32, 4, (int64_t[]){ 2, 3, 1, 2 }, av);
    b = cin("b", QK_F32, 3, (int64_t[]){ 3, 4, 1 }, bv);
    QT_OK(fx_run("Add", 2, (int[]){ a, b }, 1));
    check_shape(fx_out(0), 4, (int64_t[]){ 2, 3, 4, 2 }, "Add 4d bcast");
    int bad = 0;
    for (int i0 = 0; i0 < 2; i0++)
        for (int i1 = 0; i1 < 3; i1++)
            for (int i2 = 0; i2 < 4; i2++)
                for (int i3 = 0; i3 < 2; i3++)
                    bad += fx_f(0)[((i0 * 3 + i1) * 4 + i2) * 2 + i3] != av[(i0 * 3 + i1) * 2 + i3] + bv[i1 * 4 + i2];
    QT_CHECK(bad == 0, "Add 4d bcast: %d wrong", bad);
    fx_end();

    fx_begin(); /* uint8 wraps like numpy; int32 Div truncates */
    a = cin("a", QK_U8, 1, (int64_t[]){ 3 }, (uint8_t[]){ 200, 3, 10 });
    b = cin("b", QK_U8, 1, (int64_t[]){ 3 }, (uint8_t[]){ 100, 5, 20 });
    QT_OK(fx_run("Add", 2, (int[]){ a, b }, 1));
    const uint8_t *u = fx_out(0)->data;
    QT_CHECK(fx_out(0)->dtype == QK_U8 && u[0] == 44 && u[1] == 8 && u[2] == 30, "Add uint8 %d %d %d", u[0], u[1], u[2]);
    fx_end();
    fx_begin();
    a = cin("a", QK_U8, 1, (int64_t[]){ 3 }, (uint8_t[]){ 3, 3, 10 });
    b = cin("b", QK_U8, 1, (int64_t[]){ 3 }, (uint8_t[]){ 5, 2, 200 });
    QT_OK(fx_run("Sub", 2, (int[]){ a, b }, 1));
    u = fx_out(0)->data;
    QT_CHECK(u[0] == 254 && u[1] == 1 && u[2] == 66, "Sub uint8 %d %d %d", u[0], u[1], u[2]);
    fx_end();
    fx_begin();
    a = cin("a", QK_I32, 1, (int64_t[]){ 4 }, (int32_t[]){ 7, -7, 9, 5 });
    b = cin("b", QK_I32, 1, (int64_t[]){ 4 }, (int32_t[]){ 2, 2, -4, 0 });
    QT_OK(fx_run("Div", 2, (int[]){ a, b }, 1));
    const int32_t *q = fx_out(0)->data;
    QT_CHECK(q[0] == 3 && q[1] == -3 && q[2] == -2 && q[3] == 0, "Div int32 %d %d %d %d", q[0], q[1], q[2], q[3]);
    fx_end();
}

static void test_eltwise_grad(void)
{
    static const char *ops[] = { "Add", "Sub", "Mul", "Div" };
    static const struct { int na; int64_t a[4]; int nb; int64_t b[4]; } cases[] = {
        { 4, { 2, 3, 2, 2 }, 4, { 2, 3, 2, 2 } }, /* equal */
        { 3, { 2, 3, 4 }, 2, { 3, 1 } },          /* B broadcast on two dims */
        { 1, { 4 }, 3, { 2, 3, 4 } },             /* A broadcast (lower rank) */
        { 0, { 0 }, 2, { 2, 3 } },                /* scalar A */
        { 3, { 2, 1, 3 }, 3, { 1, 4, 1 } },       /* both broadcast */
        { 4, { 2, 3, 1, 1 }, 4, { 2, 3, 2, 2 } }, /* bias-like [N,C,1,1] */
    };
    for (int k = 0; k < 4; k++)
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            qk_graph *g;
            qk_graph_create(&g);
            qk_rng rng;
            qk_rng_seed(&rng, 100 * k + c);
            int a = gc_add(g, "a", 1, QK_F32, cases[c].na, cases[c].a, NULL, &rng);
            int b = gc_add(g, "b", 1, QK_F32, cases[c].nb, cases[c].b, NULL, &rng);
            if (k == 3) /* divisor away from zero */
                gc_fill(&g->values[b].t, &rng, 0.5f, 2.0f);
            int node = gc_node(g, ops[k], 2, (int[]){ a, b }, 1);
            char what[64];
            snprintf(what, sizeof what, "%s case %zu", ops[k], c);
            gc_opts o = gc_defaults();
            gc_expect(g, node, &o, what);
            qk_graph_destroy(g);
        }
    /* the same value on both sides: x*x, x-x */
    for (int k = 1; k < 3; k++) {
        qk_graph *g;
        qk_graph_create(&g);
        qk_rng rng;
        qk_rng_seed(&rng, 77);
        int a = gc_add(g, "a", 1, QK_F32, 2, (int64_t[]){ 3, 4 }, NULL, &rng);
        int node = gc_node(g, ops[k], 2, (int[]){ a, a }, 1);
        gc_opts o = gc_defaults();
        gc_expect(g, node, &o, k == 1 ? "x - x" : "x * x");
        qk_graph_destroy(g);
    }
    /* only one input differentiable (B constant) */
    qk_graph *g;
    qk_graph_create(&g);
    qk_rng rng;
    qk_rng_seed(&rng, 5);
    int a = gc_add(g, "a", 1, QK_F32, 2, (int64_t[]){ 3, 4 }, NULL, &rng);
    int b = gc_add(g, "b", 0, QK_F32, 1, (int64_t[]){ 4 }, NULL, &rng);
    int node = gc_node(g, "Mul", 2, (int[]){ a, b }, 1);
    gc_opts o = gc_defaults();
    gc_expect(g, node, &o, "Mul const B");
    qk_graph_destroy(g);
}

/* A deliberately wrong backward must be caught by the harness. */
static qk_status bad_forward(qk_exec *x, qk_node *n)
{
    const qk_tensor *a = &x->g->values[n->in[0]].t;
    qk_tensor *y = &x->g->values[n->out[0]].t;
    for (int64_t i = 0; i < qk_tensor_numel(a); i++)
        qk_f32(y)[i] = qk_f32(a)[i] * qk_f32(a)[i];
    return QK_OK;
}
static qk_status bad_backward(qk_exec *x, qk_node *n) /* should be 2*x*dy */
{
    qk_value *a = &x->g->values[n->in[0]], *y = &x->g->values[n->out[0]];
    for (int64_t i = 0; i < qk_tensor_numel(&a->t); i++)
        qk_f32(&a->grad)[i] += 2.1f * qk_f32(&a->t)[i] * qk_f32(&y->grad)[i];
    return QK_OK;
}
static qk_status bad_infer(qk_graph *g, qk_node *n)
{
    g->values[n->out[0]].t = g->values[n->in[0]].t;
    g->values[n->out[0]].t.data = NULL;
    g->values[n->out[0]].t.owned = 0;
    return QK_OK;
}
static const qk_op bad_op = { "BadSquare", NULL, bad_infer, NULL, bad_forward, bad_backward, NULL, NULL };

static void test_harness_fails(void)
{
    qk_graph *g;
    qk_graph_create(&g);
    qk_rng rng;
    qk_rng_seed(&rng, 1);
    int x = gc_add(g, "x", 1, QK_F32, 1, (int64_t[]){ 6 }, NULL, &rng);
    int node = gc_node(g, "BadSquare", 1, &x, 1);
    g->nodes[node].op = &bad_op;
    gc_opts o = gc_defaults();
    gc_result r;
    QT_OK(gc_check(g, node, &o, &r));
    QT_CHECK(!r.pass && r.worst_rel > 0.03 && r.worst_input == 0, "harness must catch a wrong gradient: %s", r.msg);
    qk_graph_destroy(g);
}

/* ===================== determinism: 1 vs 2 threads ===================== */
/* Builds op over PARAM inputs of the given shapes, plans for training with
 * `pool`, runs forward and backward (output grad = fixed random), and copies
 * the output and the input grads into out (concatenated). Returns floats written. */
static int64_t run_fb(qk_pool *pool, const char *op, int nin, const int *nd, const int64_t (*dims)[4],
                      int64_t axis, float *out, int64_t cap)
{
    qk_graph *g;
    qk_graph_create(&g);
    qk_rng rng;
    qk_rng_seed(&rng, 1234);
    int in[4];
    for (int i = 0; i < nin; i++) {
        char nm[8] = { 'x', (char)('0' + i), 0 };
        in[i] = gc_add(g, nm, 1, QK_F32, nd[i], dims[i], NULL, &rng);
    }
    int node = gc_node(g, op, nin, in, 1);
    if (axis != INT64_MIN)
        qk_node_set_int(g, node, "axis", axis);
    int64_t w = 0;
    if (qk_ops_bind(g) != QK_OK || qk_graph_plan(g, dims[0][0], 1, pool) != QK_OK ||
        qk_graph_forward(g) != QK_OK) {
        qk_graph_destroy(g);
        return -1;
    }
    qk_node *n = &g->nodes[node];
    qk_value *y = &g->values[n->out[0]];
    int64_t m = qk_tensor_numel(&y->t);
    for (int64_t i = 0; i < m; i++)
        qk_f32(&y->grad)[i] = qk_rng_normal(&rng);
    for (int i = 0; i < nin; i++)
        memset(g->values[in[i]].grad.data, 0, qk_tensor_bytes(&g->values[in[i]].grad));
    if (n->op->backward(&g->exec, n) != QK_OK) {
        qk_graph_destroy(g);
        return -1;
    }
    for (int64_t i = 0; i < m && w < cap; i++)
        out[w++] = qk_f32(&y->t)[i];
    for (int i = 0; i < nin; i++) {
        int64_t mi = qk_tensor_numel(&g->values[in[i]].t);
        for (int64_t e = 0; e < mi && w < cap; e++)
            out[w++] = qk_f32(&g->values[in[i]].grad)[e];
    }
    qk_graph_destroy(g);
    return w;
}

static void check_threads_axis(const char *op, int nin, const int *nd, const int64_t (*dims)[4], int64_t axis)
{
    int64_t cap = 1 << 20;
    float *a = qk_malloc(cap * sizeof(float)), *b = qk_malloc(cap * sizeof(float));
    int64_t na = run_fb(pool1, op, nin, nd, dims, axis, a, cap);
    int64_t nb = run_fb(pool2, op, nin, nd, dims, axis, b, cap);
    QT_CHECK(na > 0 && na == nb && memcmp(a, b, na * sizeof(float)) == 0, "%s: 1 vs 2 threads differ (%lld, %lld)",
             op, (long long)na, (long long)nb);
    qk_free(a);
    qk_free(b);
}

static void check_threads(const char *op, int nin, const int *nd, const int64_t (*dims)[4])
{
    check_threads_axis(op, nin, nd, dims, INT64_MIN);
}

/* SCE on [N,C,d] with every thread count: loss and scores grad bit-identical. */
static void sce_threads(void)
{
    float *res[2];
    int64_t np = 0;
    for (int t = 0; t < 2; t++) {
        qk_rng rng;
        qk_rng_seed(&rng, 99);
        int64_t lab[4096 * 3];
        for (int i = 0; i < 4096 * 3; i++)
            lab[i] = qk_rng_below(&rng, 10);
        qk_graph *g;
        int node = sce_graph(&g, 3, (int64_t[]){ 4096, 10, 3 }, lab, NULL, NULL, 0, 0, 1, &rng);
        res[t] = NULL;
        if (qk_ops_bind(g) == QK_OK && qk_graph_plan(g, 4096, 1, t ? pool2 : pool1) == QK_OK &&
            qk_graph_forward(g) == QK_OK && qk_graph_backward(g, g->nodes[node].out[0]) == QK_OK) {
            np = 1 + 4096 * 30;
            res[t] = qk_malloc(np * sizeof(float));
            res[t][0] = qk_f32(&g->values[g->nodes[node].out[0]].t)[0];
            memcpy(res[t] + 1, g->values[0].grad.data, (np - 1) * sizeof(float));
        }
        qk_graph_destroy(g);
    }
    QT_CHECK(res[0] && res[1] && memcmp(res[0], res[1], np * sizeof(float)) == 0, "SCE: 1 vs 2 threads differ");
    /* E[logsumexp] of 10 N(0,1) scores is about log(10) + 1/2 */
    QT_CHECK(res[0] && fabsf(res[0][0] - (logf(10.0f) + 0.5f)) < 0.2f, "SCE of N(0,1) scores near log(10)+0.5: %g",
             res[0] ? res[0][0] : -1.0);
    qk_free(res[0]);
    qk_free(res[1]);
}

static void test_threads(void)
{
    const int64_t big[2][4] = { { 8, 16, 24, 24 }, { 8, 16, 24, 24 } };
    const int nd4[2] = { 4, 4 };
    check_threads("Add", 2, nd4, big);
    check_threads("Relu", 1, nd4, big);
    check_threads("Sigmoid", 1, nd4, big);
    check_threads("HardSwish", 1, nd4, big);
    const int64_t bc[2][4] = { { 8, 16, 24, 24 }, { 16, 1, 1 } };
    const int ndb[2] = { 4, 3 };
    check_threads("Mul", 2, ndb, bc);
    check_threads("Div", 2, ndb, bc);
    const int64_t one[1][4] = { { 64, 10, 24, 24 } };
    const int nd1[1] = { 4 };
    check_threads_axis("Softmax", 1, nd1, one, 1);
    check_threads_axis("LogSoftmax", 1, nd1, one, -1);
    check_threads_axis("Concat", 2, nd4, big, 1);
    check_threads("Flatten", 1, nd4, big);
    sce_threads();
}

/* ===================== errors ===================== */

static void test_errors(void)
{
    fx_begin();
    int a = cin("a", QK_F32, 2, (int64_t[]){ 2, 3 }, NULL);
    int b = cin("b", QK_F32, 1, (int64_t[]){ 4 }, NULL);
    expect_err(fx_run("Add", 2, (int[]){ a, b }, 1), QK_ERR_SHAPE, "Add_node", "Add not broadcastable");
    QT_CHECK(strstr(qk_last_error(), "[2,3]") && strstr(qk_last_error(), "[4]"), "shapes named: %s", qk_last_error());
    fx_end();

    fx_begin();
    a = cin("a", QK_F32, 2, (int64_t[]){ 2, 3 }, NULL);
    b = cin("b", QK_I64, 1, (int64_t[]){ 3 }, NULL);
    expect_err(fx_run("Mul", 2, (int[]){ a, b }, 1), QK_ERR_SHAPE, "Mul_node", "Mul dtype mismatch");
    fx_end();

    fx_begin();
    a = cin("a", QK_F32, 2, (int64_t[]){ 2, 3 }, NULL);
    b = cin("b", QK_F32, 1, (int64_t[]){ 2 }, NULL);
    expect_err(fx_run("Clip", 2, (int[]){ a, b }, 1), QK_ERR_SHAPE, "Clip_node", "Clip non-scalar min");
    fx_end();

    static const struct { int ns; int64_t s[3]; qk_status st; const char *what; } bad[] = {
        { 2, { 5, 5 }, QK_ERR_SHAPE, "Reshape wrong count" },
        { 2, { -1, -1 }, QK_ERR_ARG, "Reshape two -1" },
        { 2, { 7, -1 }, QK_ERR_SHAPE, "Reshape -1 not divisible" },
        { 3, { 0, 0, 0 }, QK_ERR_SHAPE, "Reshape 0 beyond input rank" },
        { 1, { -3 }, QK_ERR_ARG, "Reshape negative entry" },
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        fx_begin();
        a = cin("a", QK_F32, 2, (int64_t[]){ 4, 6 }, NULL);
        b = cin("s", QK_I64, 1, (int64_t[]){ bad[k].ns }, bad[k].s);
        expect_err(fx_run("Reshape", 2, (int[]){ a, b }, 1), bad[k].st, "Reshape_node", bad[k].what);
        fx_end();
    }
    fx_begin(); /* shape not known at plan time */
    a = cin("a", QK_F32, 2, (int64_t[]){ 4, 6 }, NULL);
    b = qk_graph_add_input(G, "s", QK_I64, 1, (int64_t[]){ 2 });
    expect_err(fx_run("Reshape", 2, (int[]){ a, b }, 1), QK_ERR_UNSUPPORTED, "Reshape_node", "Reshape runtime shape");
    fx_end();

    static const char *axis_ops[] = { "Concat", "Flatten", "Softmax", "LogSoftmax", "Gather" };
    for (int k = 0; k < 5; k++) {
        fx_begin();
        a = cin("a", QK_F32, 2, (int64_t[]){ 2, 3 }, NULL);
        b = cin("i", QK_I64, 1, (int64_t[]){ 1 }, (int64_t[]){ 0 });
        NODE = gc_node(G, axis_ops[k], k == 4 ? 2 : 1, (int[]){ a, b }, 1);
        qk_node_set_int(G, NODE, "axis", k == 1 ? 3 : -3);
        qk_status st = qk_ops_bind(G);
        if (st == QK_OK)
            st = qk_graph_plan(G, 1, 0, NULL);
        char need[64];
        snprintf(need, sizeof need, "%s_node", axis_ops[k]);
        expect_err(st, QK_ERR_ARG, need, "axis out of range");
        QT_CHECK(strstr(qk_last_error(), "axis") != NULL, "message names the axis: %s", qk_last_error());
        fx_end();
    }
    fx_begin();
    a = cin("a", QK_F32, 2, (int64_t[]){ 2, 3 }, NULL);
    b = cin("b", QK_F32, 2, (int64_t[]){ 3, 3 }, NULL);
    NODE = gc_node(G, "Concat", 2, (int[]){ a, b }, 1);
    qk_node_set_int(G, NODE, "axis", 1);
    QT_OK(qk_ops_bind(G));
    expect_err(qk_graph_plan(G, 1, 0, NULL), QK_ERR_SHAPE, "Concat_node", "Concat mismatch");
    fx_end();
    fx_begin(); /* Concat without axis: error at bind */
    a = cin("a", QK_F32, 2, (int64_t[]){ 2, 3 }, NULL);
    expect_err(fx_run("Concat", 1, &a, 1), QK_ERR_FORMAT, "Concat_node", "Concat no axis");
    fx_end();
    fx_begin();
    a = cin("a", QK_F32, 2, (int64_t[]){ 2, 3 }, NULL);
    b = cin("i", QK_I64, 1, (int64_t[]){ 1 }, (int64_t[]){ 3 });
    expect_err(fx_run("Gather", 2, (int[]){ a, b }, 1), QK_ERR_ARG, "Gather_node", "Gather index out of range");
    fx_end();
    fx_begin();
    a = cin("a", QK_F32, 2, (int64_t[]){ 2, 3 }, NULL);
    expect_err(fx_run("Squeeze", 2, (int[]){ a, cin("ax", QK_I64, 1, (int64_t[]){ 1 }, (int64_t[]){ 1 }) }, 1),
               QK_ERR_SHAPE, "Squeeze_node", "Squeeze non-1 dim");
    fx_end();
    { /* SCE: bad reduction (bind), labels shape mismatch (plan) */
        qk_graph *g;
        sce_graph(&g, 2, (int64_t[]){ 2, 3 }, (int64_t[]){ 0, 1 }, NULL, "avg", 0, 0, 1, NULL);
        expect_err(qk_ops_bind(g), QK_ERR_ARG, "SoftmaxCrossEntropyLoss_node", "SCE reduction");
        qk_graph_destroy(g);
        qk_graph_create(&g);
        int x = gc_add(g, "x", 0, QK_F32, 2, (int64_t[]){ 2, 3 }, NULL, NULL);
        int l = gc_add(g, "l", 0, QK_I64, 1, (int64_t[]){ 3 }, NULL, NULL);
        gc_node(g, "SoftmaxCrossEntropyLoss", 2, (int[]){ x, l }, 1);
        QT_OK(qk_ops_bind(g));
        expect_err(qk_graph_plan(g, 1, 0, NULL), QK_ERR_SHAPE, "SoftmaxCrossEntropyLoss_node", "SCE labels shape");
        qk_graph_destroy(g);
    }
}

/* The float row kernels (src/ops/fkern.h): the portable table against plain
 * loops (elementwise kernels exactly, sums to double precision), and the
 * AVX-512 table bit for bit against the portable one, on odd lengths with
 * -0, NaN and large values mixed in. */
static void fk_fill(float *v, int64_t n, unsigned seed)
{
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        v[i] = (float)((int)(seed >> 9) % 2001 - 1000) / 250.0f;
        if (i % 37 == 5)
            v[i] = -0.0f;
        if (i % 53 == 7)
            v[i] = 3e30f;
    }
}

static void test_fkern(void)
{
    enum { NMAX = 800 };
    static const int64_t lens[] = { 0, 1, 15, 16, 17, 31, 33, 49, 100, 784 };
    float x[NMAX], dy[NMAX], y0[NMAX], y1[NMAX];
    const qk_fkern *r = &qk_fkern_ref, *v = &qk_fkern_avx512;
    const int vec = qk_cpu_isa_usable(QK_ISA_AVX512);
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        const int64_t n = lens[li];
        fk_fill(x, NMAX, 7u + (unsigned)li);
        fk_fill(dy, NMAX, 99u + (unsigned)li);
        if (n > 2)
            x[n - 2] = NAN;
        int ok = 1;
        r->relu(y0, x, n);
        for (int64_t i = 0; i < n; i++) {
            float e = x[i] < 0.0f ? 0.0f : x[i];
            ok &= memcmp(&e, &y0[i], sizeof e) == 0;
        }
        for (int w = 0; w < 2; w++) {
            memcpy(y0, dy, sizeof y0);
            r->relu_bwd(y0, dy, x, n, w);
            for (int64_t i = 0; i < n; i++) {
                float g = x[i] > 0.0f ? dy[i] : 0.0f, e = w ? g : dy[i] + g;
                ok &= e == y0[i];
            }
            memcpy(y0, dy, sizeof y0);
            r->bn_dx(y0, dy, x, 0.5f, -0.25f, 0.125f, n, w);
            for (int64_t i = 0; i < n; i++) {
                float e = 0.5f * dy[i] + -0.25f * x[i] + 0.125f;
                e = w ? e : dy[i] + e;
                ok &= memcmp(&e, &y0[i], sizeof e) == 0 || (e != e && y0[i] != y0[i]);
            }
        }
        r->affine(y0, x, 1.5f, -2.0f, n);
        r->add2(y1, x, dy, n);
        for (int64_t i = 0; i < n; i++) {
            float e = 1.5f * x[i] + -2.0f, e2 = x[i] + dy[i];
            ok &= (e == y0[i] || (e != e && y0[i] != y0[i])) && (e2 == y1[i] || (e2 != e2 && y1[i] != y1[i]));
        }
        QT_CHECK(ok, "fkern portable elementwise kernels equal plain loops (n=%lld)", (long long)n);
        /* sums on finite values */
        fk_fill(x, NMAX, 3u + (unsigned)li);
        for (int64_t i = 0; i < n; i++)
            x[i] = x[i] > 1e20f ? 1.0f : x[i];
        double s1 = 0, s2 = 0, e1 = 0, e2 = 0, d1 = 0, d2 = 0, f1 = 0, f2 = 0;
        r->moments(x, n, 0.5f, &s1, &s2);
        r->dsums(dy, x, n, 0.25f, &d1, &d2);
        for (int64_t i = 0; i < n; i++) {
            e1 += x[i] - 0.5;
            e2 += (x[i] - 0.5) * (x[i] - 0.5);
        }
        QT_CHECK(fabs(s1 - e1) <= 1e-4 * (1 + fabs(e1)) && fabs(s2 - e2) <= 1e-5 * (1 + e2),
                 "fkern moments n=%lld: %.6g %.6g vs %.6g %.6g", (long long)n, s1, s2, e1, e2);
        for (int64_t i = 0; i < n; i++) {
            f1 += dy[i];
            f2 += (double)dy[i] * ((double)x[i] - 0.25);
        }
        QT_CHECK(fabs(d1 - f1) <= 1e-6 * (1 + fabs(f1)) && fabs(d2 - f2) <= 1e-6 * (1 + fabs(f2)),
                 "fkern dsums n=%lld: %.6g %.6g vs %.6g %.6g", (long long)n, d1, d2, f1, f2);
        if (!vec)
            continue;
        /* AVX-512 against portable, bit for bit */
        fk_fill(x, NMAX, 11u + (unsigned)li);
        if (n > 2)
            x[n - 2] = NAN;
        int same = 1;
#define FK_SAME(call)                                                                  \
    do {                                                                               \
        memcpy(y0, dy, sizeof y0);                                                     \
        memcpy(y1, dy, sizeof y1);                                                     \
        {                                                                              \
            const qk_fkern *k = r;                                                     \
            float *out = y0;                                                           \
            call;                                                                      \
        }                                                                              \
        {                                                                              \
            const qk_fkern *k = v;                                                     \
            float *out = y1;                                                           \
            call;                                                                      \
        }                                                                              \
        same &= memcmp(y0, y1, sizeof y0) == 0;                                        \
    } while (0)
        FK_SAME(k->relu(out, x, n));
        FK_SAME(k->relu_bwd(out, dy, x, n, 0));
        FK_SAME(k->relu_bwd(out, dy, x, n, 1));
        FK_SAME(k->bn_dx(out, dy, x, 0.3f, -0.7f, 0.01f, n, 0));
        FK_SAME(k->bn_dx(out, dy, x, 0.3f, -0.7f, 0.01f, n, 1));
        FK_SAME(k->affine(out, x, 0.37f, -1.1f, n));
        FK_SAME(k->add(out, x, n));
        FK_SAME(k->add2(out, x, dy, n));
#undef FK_SAME
        double a1 = 0, a2 = 0, b1 = 0, b2 = 0;
        r->moments(x, n, 0.3f, &a1, &a2);
        v->moments(x, n, 0.3f, &b1, &b2);
        same &= memcmp(&a1, &b1, sizeof a1) == 0 && memcmp(&a2, &b2, sizeof a2) == 0;
        a1 = a2 = b1 = b2 = 0;
        r->dsums(dy, x, n, -0.2f, &a1, &a2);
        v->dsums(dy, x, n, -0.2f, &b1, &b2);
        same &= memcmp(&a1, &b1, sizeof a1) == 0 && memcmp(&a2, &b2, sizeof a2) == 0;
        QT_CHECK(same, "fkern AVX-512 kernels equal the portable ones bit for bit (n=%lld)", (long long)n);
    }
    if (!vec)
        printf("note: no AVX-512 on this CPU: the fkern AVX-512 comparison was skipped\n");
}

int main(void)
{
    qk_pool_create(1, &pool1);
    qk_pool_create(2, &pool2);
    test_act_forward();
    test_act_grad();
    test_eltwise_forward();
    test_eltwise_grad();
    test_harness_fails();
    test_threads();
    test_fkern();
    test_errors();
    qk_pool_destroy(pool1);
    qk_pool_destroy(pool2);
    return qt_finish("test_ops_light");
}
