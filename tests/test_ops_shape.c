/* Light data-movement ops (Flatten, Reshape, Concat, Gather, Squeeze,
 * Unsqueeze, Shape, Dropout, Identity, Constant), Softmax / LogSoftmax and
 * SoftmaxCrossEntropyLoss: forward values against hand-computed cases,
 * backward against finite differences (gradcheck.h). */
#include "light_fx.h"

/* ===================== shape ops ===================== */
static float seqf[64];

static void test_shape_forward(void)
{
    for (int i = 0; i < 64; i++)
        seqf[i] = (float)i;
    static const struct { int64_t axis; int64_t d0, d1; } fl[] = {
        { 0, 1, 24 }, { 1, 2, 12 }, { 2, 6, 4 }, { 3, 24, 1 }, { -1, 6, 4 }, { -3, 1, 24 } };
    for (size_t k = 0; k < sizeof fl / sizeof fl[0]; k++) {
        fx_begin();
        int x = cin("x", QK_F32, 3, (int64_t[]){ 2, 3, 4 }, seqf);
        NODE = gc_node(G, "Flatten", 1, &x, 1);
        qk_node_set_int(G, NODE, "axis", fl[k].axis);
        QT_OK(qk_ops_bind(G));
        QT_OK(qk_graph_plan(G, 1, 0, NULL));
        QT_OK(qk_graph_forward(G));
        check_shape(fx_out(0), 2, (int64_t[]){ fl[k].d0, fl[k].d1 }, "Flatten");
        check_vals(fx_f(0), seqf, 24, 0, "Flatten data");
        fx_end();
    }
    static const struct { int ns; int64_t s[4]; int az; int nd; int64_t d[4]; } rs[] = {
        { 2, { 0, -1 }, 0, 2, { 2, 12 } },
        { 3, { 4, -1, 2 }, 0, 3, { 4, 3, 2 } },
        { 4, { 2, 0, 1, -1 }, 0, 4, { 2, 3, 1, 4 } },
        { 1, { -1 }, 0, 1, { 24 } },
        { 3, { 0, 0, 4 }, 0, 3, { 2, 3, 4 } },
    };
    for (size_t k = 0; k < sizeof rs / sizeof rs[0]; k++) {
        fx_begin();
        int x = cin("x", QK_F32, 3, (int64_t[]){ 2, 3, 4 }, seqf);
        int sh = cin("shape", QK_I64, 1, (int64_t[]){ rs[k].ns }, rs[k].s);
        QT_OK(fx_run("Reshape", 2, (int[]){ x, sh }, 1));
        check_shape(fx_out(0), rs[k].nd, rs[k].d, "Reshape");
        check_vals(fx_f(0), seqf, 24, 0, "Reshape data");
        fx_end();
    }
    fx_begin(); /* allowzero: [0,3,4] -> [3,4,0] */
    int x = cin("x", QK_F32, 3, (int64_t[]){ 0, 3, 4 }, NULL);
    int sh = cin("shape", QK_I64, 1, (int64_t[]){ 3 }, (int64_t[]){ 3, 4, 0 });
    NODE = gc_node(G, "Reshape", 2, (int[]){ x, sh }, 1);
    qk_node_set_int(G, NODE, "allowzero", 1);
    QT_OK(qk_ops_bind(G));
    QT_OK(qk_graph_plan(G, 1, 0, NULL));
    QT_OK(qk_graph_forward(G));
    check_shape(fx_out(0), 3, (int64_t[]){ 3, 4, 0 }, "Reshape allowzero");
    fx_end();

    fx_begin(); /* shape produced by a Constant node */
    x = cin("x", QK_F32, 2, (int64_t[]){ 4, 6 }, seqf);
    int cv = qk_graph_add_value(G, "c", QK_VALUE_ACT);
    int cn = qk_graph_add_node(G, "Constant", "shape_const", 0, (int[]){ 0 }, 1, &cv);
    qk_tensor ct;
    qk_tensor_alloc(&ct, QK_I64, 1, (int64_t[]){ 3 });
    memcpy(ct.data, (int64_t[]){ 2, -1, 3 }, 3 * sizeof(int64_t));
    qk_node_set_tensor(G, cn, "value", &ct);
    QT_OK(fx_run("Reshape", 2, (int[]){ x, cv }, 1));
    check_shape(fx_out(0), 3, (int64_t[]){ 2, 4, 3 }, "Reshape from Constant");
    const qk_tensor *cvt = &G->values[cv].t;
    QT_CHECK(cvt->dtype == QK_I64 && ((int64_t *)cvt->data)[1] == -1, "Constant output");
    fx_end();

    fx_begin(); /* Concat axis 1 of [2,1,2] and [2,2,2] */
    int a = cin("a", QK_F32, 3, (int64_t[]){ 2, 1, 2 }, (float[]){ 0, 1, 2, 3 });
    int b = cin("b", QK_F32, 3, (int64_t[]){ 2, 2, 2 }, (float[]){ 10, 11, 12, 13, 14, 15, 16, 17 });
    NODE = gc_node(G, "Concat", 2, (int[]){ a, b }, 1);
    qk_node_set_int(G, NODE, "axis", -2);
    QT_OK(qk_ops_bind(G));
    QT_OK(qk_graph_plan(G, 1, 0, NULL));
    QT_OK(qk_graph_forward(G));
    check_shape(fx_out(0), 3, (int64_t[]){ 2, 3, 2 }, "Concat");
    check_vals(fx_f(0), (float[]){ 0, 1, 10, 11, 12, 13, 2, 3, 14, 15, 16, 17 }, 12, 0, "Concat data");
    fx_end();

    fx_begin(); /* Gather axis 1, negative index */
    a = cin("a", QK_F32, 2, (int64_t[]){ 2, 3 }, (float[]){ 0, 1, 2, 3, 4, 5 });
    b = cin("i", QK_I64, 2, (int64_t[]){ 2, 2 }, (int64_t[]){ 2, -3, 1, 1 });
    NODE = gc_node(G, "Gather", 2, (int[]){ a, b }, 1);
    qk_node_set_int(G, NODE, "axis", 1);
    QT_OK(qk_ops_bind(G));
    QT_OK(qk_graph_plan(G, 1, 0, NULL));
    QT_OK(qk_graph_forward(G));
    check_shape(fx_out(0), 3, (int64_t[]){ 2, 2, 2 }, "Gather");
    check_vals(fx_f(0), (float[]){ 2, 0, 1, 1, 5, 3, 4, 4 }, 8, 0, "Gather data");
    fx_end();

    fx_begin(); /* Unsqueeze (axes input) then Squeeze (all) */
    a = cin("a", QK_F32, 2, (int64_t[]){ 3, 4 }, seqf);
    b = cin("axes", QK_I64, 1, (int64_t[]){ 2 }, (int64_t[]){ -1, 0 });
    QT_OK(fx_run("Unsqueeze", 2, (int[]){ a, b }, 1));
    check_shape(fx_out(0), 4, (int64_t[]){ 1, 3, 4, 1 }, "Unsqueeze");
    fx_end();
    fx_begin();
    a = cin("a", QK_F32, 4, (int64_t[]){ 1, 3, 1, 4 }, seqf);
    QT_OK(fx_run("Squeeze", 1, &a, 1));
    check_shape(fx_out(0), 2, (int64_t[]){ 3, 4 }, "Squeeze all");
    fx_end();
    fx_begin();
    a = cin("a", QK_F32, 4, (int64_t[]){ 1, 3, 1, 4 }, seqf);
    b = cin("axes", QK_I64, 1, (int64_t[]){ 1 }, (int64_t[]){ -2 });
    QT_OK(fx_run("Squeeze", 2, (int[]){ a, b }, 1));
    check_shape(fx_out(0), 3, (int64_t[]){ 1, 3, 4 }, "Squeeze axis");
    fx_end();

    fx_begin(); /* Shape with start/end */
    a = cin("a", QK_F32, 3, (int64_t[]){ 3, 4, 5 }, NULL);
    NODE = gc_node(G, "Shape", 1, &a, 1);
    qk_node_set_int(G, NODE, "start", 1);
    qk_node_set_int(G, NODE, "end", -1);
    QT_OK(qk_ops_bind(G));
    QT_OK(qk_graph_plan(G, 1, 0, NULL));
    QT_OK(qk_graph_forward(G));
    check_shape(fx_out(0), 1, (int64_t[]){ 1 }, "Shape");
    QT_CHECK(((int64_t *)fx_out(0)->data)[0] == 4, "Shape value");
    fx_end();

    fx_begin(); /* Dropout with mask: identity, mask all ones; Identity on int64 */
    a = cin("a", QK_F32, 2, (int64_t[]){ 2, 3 }, seqf);
    QT_OK(fx_run("Dropout", 1, &a, 2));
    check_vals(fx_f(0), seqf, 6, 0, "Dropout");
    const uint8_t *mk = fx_out(1)->data;
    QT_CHECK(fx_out(1)->dtype == QK_U8 && mk[0] == 1 && mk[5] == 1, "Dropout mask");
    fx_end();
    fx_begin();
    a = cin("a", QK_I64, 1, (int64_t[]){ 3 }, (int64_t[]){ -5, 7, 1LL << 40 });
    QT_OK(fx_run("Identity", 1, &a, 1));
    QT_CHECK(((int64_t *)fx_out(0)->data)[2] == 1LL << 40, "Identity int64");
    fx_end();

    fx_begin(); /* Constant with value_floats */
    int cy = qk_graph_add_value(G, "cy", QK_VALUE_ACT);
    NODE = qk_graph_add_node(G, "Constant", "k", 0, (int[]){ 0 }, 1, &cy);
    qk_node_set_floats(G, NODE, "value_floats", 3, (float[]){ 1.5f, -2, 3 });
    qk_graph_add_output(G, cy);
    QT_OK(qk_ops_bind(G));
    QT_OK(qk_graph_plan(G, 1, 0, NULL));
    QT_OK(qk_graph_forward(G));
    check_shape(fx_out(0), 1, (int64_t[]){ 3 }, "Constant value_floats");
    check_vals(fx_f(0), (float[]){ 1.5f, -2, 3 }, 3, 0, "Constant value_floats");
    fx_end();
}

/* x.view(x.size(0), -1) as PyTorch exports it with a dynamic batch:
 * Shape -> Gather(0) -> Unsqueeze -> Concat(.., [-1]) -> Reshape. The target
 * shape is computed at infer time and follows qk_graph_set_batch. */
static void test_dynamic_reshape(void)
{
    qk_graph *g;
    qk_graph_create(&g);
    int x = qk_graph_add_input(g, "x", QK_F32, 3, (int64_t[]){ -1, 3, 4 });
    int i0 = gc_add(g, "zero", 0, QK_I64, 0, NULL, (int64_t[]){ 0 }, NULL);
    int ax = gc_add(g, "axes", 0, QK_I64, 1, (int64_t[]){ 1 }, (int64_t[]){ 0 }, NULL);
    int m1 = gc_add(g, "minus1", 0, QK_I64, 1, (int64_t[]){ 1 }, (int64_t[]){ -1 }, NULL);
    int v[5];
    const char *names[5] = { "shape", "n", "n1", "target", "y" };
    for (int k = 0; k < 5; k++)
        v[k] = qk_graph_add_value(g, names[k], QK_VALUE_ACT);
    qk_graph_add_node(g, "Shape", "sh", 1, &x, 1, &v[0]);
    qk_graph_add_node(g, "Gather", "ga", 2, (int[]){ v[0], i0 }, 1, &v[1]);
    qk_graph_add_node(g, "Unsqueeze", "un", 2, (int[]){ v[1], ax }, 1, &v[2]);
    int cat = qk_graph_add_node(g, "Concat", "cat", 2, (int[]){ v[2], m1 }, 1, &v[3]);
    qk_node_set_int(g, cat, "axis", 0);
    qk_graph_add_node(g, "Reshape", "rs", 2, (int[]){ x, v[3] }, 1, &v[4]);
    qk_graph_add_output(g, v[4]);
    QT_OK(qk_ops_bind(g));
    QT_OK(qk_graph_plan(g, 8, 0, pool2));
    check_shape(&g->values[v[4]].t, 2, (int64_t[]){ 8, 12 }, "dynamic reshape at plan");
    QT_OK(qk_graph_set_batch(g, 3));
    check_shape(&g->values[v[4]].t, 2, (int64_t[]){ 3, 12 }, "dynamic reshape after set_batch");
    for (int i = 0; i < 36; i++)
        qk_f32(&g->values[x].t)[i] = (float)i;
    QT_OK(qk_graph_forward(g));
    check_vals(qk_f32(&g->values[v[4]].t), seqf, 36, 0, "dynamic reshape data");
    const int64_t *tg = g->values[v[3]].t.data;
    QT_CHECK(tg[0] == 3 && tg[1] == -1, "runtime target %lld %lld", (long long)tg[0], (long long)tg[1]);
    qk_graph_destroy(g);
}

static void test_shape_grad(void)
{
    qk_rng rng;
    qk_rng_seed(&rng, 42);
    /* Concat of three differentiable inputs along axis 1 (and one const) */
    qk_graph *g;
    qk_graph_create(&g);
    int a = gc_add(g, "a", 1, QK_F32, 3, (int64_t[]){ 2, 1, 3 }, NULL, &rng);
    int b = gc_add(g, "b", 1, QK_F32, 3, (int64_t[]){ 2, 2, 3 }, NULL, &rng);
    int c = gc_add(g, "c", 0, QK_F32, 3, (int64_t[]){ 2, 3, 3 }, NULL, &rng);
    int d = gc_add(g, "d", 1, QK_F32, 3, (int64_t[]){ 2, 1, 3 }, NULL, &rng);
    int node = gc_node(g, "Concat", 4, (int[]){ a, b, c, d }, 1);
    qk_node_set_int(g, node, "axis", 1);
    gc_opts o = gc_defaults();
    gc_expect(g, node, &o, "Concat");
    qk_graph_destroy(g);

    static const char *copy_ops[] = { "Identity", "Dropout", "Flatten", "Reshape", "Squeeze", "Unsqueeze" };
    for (int k = 0; k < 6; k++) {
        qk_graph_create(&g);
        int x = gc_add(g, "x", 1, QK_F32, 3, (int64_t[]){ 2, 1, 3 }, NULL, &rng);
        int in[2] = { x, -1 }, nin = 1;
        if (k == 3) {
            in[1] = gc_add(g, "s", 0, QK_I64, 1, (int64_t[]){ 2 }, (int64_t[]){ 3, 2 }, NULL);
            nin = 2;
        }
        if (k == 5) {
            in[1] = gc_add(g, "axes", 0, QK_I64, 1, (int64_t[]){ 1 }, (int64_t[]){ 0 }, NULL);
            nin = 2;
        }
        node = gc_node(g, copy_ops[k], nin, in, 1);
        gc_expect(g, node, &o, copy_ops[k]);
        qk_graph_destroy(g);
    }

    /* Gather with repeated indices: the gradient accumulates */
    qk_graph_create(&g);
    a = gc_add(g, "a", 1, QK_F32, 2, (int64_t[]){ 4, 3 }, NULL, &rng);
    b = gc_add(g, "i", 0, QK_I64, 1, (int64_t[]){ 5 }, (int64_t[]){ 0, 3, -1, 0, 2 }, NULL);
    node = gc_node(g, "Gather", 2, (int[]){ a, b }, 1);
    gc_expect(g, node, &o, "Gather");
    qk_graph_destroy(g);
}

/* Dropout with training_mode = true: y in {0, x/(1-r)}, mask consistent,
 * drop rate near r, same mask for 1 and 2 threads, backward uses the mask. */
static void test_dropout_train(void)
{
    const int64_t ne = 100000;
    uint8_t *masks[2] = { NULL, NULL };
    for (int t = 0; t < 2; t++) {
        qk_graph *g;
        qk_graph_create(&g);
        qk_rng rng;
        qk_rng_seed(&rng, 3);
        int x = gc_add(g, "x", 1, QK_F32, 2, (int64_t[]){ 1000, 100 }, NULL, &rng);
        int r = gc_add(g, "r", 0, QK_F32, 0, NULL, (float[]){ 0.25f }, NULL);
        int tm = gc_add(g, "t", 0, QK_U8, 0, NULL, (uint8_t[]){ 1 }, NULL);
        int node = gc_node(g, "Dropout", 3, (int[]){ x, r, tm }, 2);
        qk_node_set_int(g, node, "seed", 5);
        QT_OK(qk_ops_bind(g));
        QT_OK(qk_graph_plan(g, 1000, 1, t ? pool2 : NULL));
        QT_OK(qk_graph_forward(g));
        qk_node *n = &g->nodes[node];
        const float *xd = qk_f32(&g->values[x].t), *y = qk_f32(&g->values[n->out[0]].t);
        const uint8_t *m = g->values[n->out[1]].t.data;
        int64_t bad = 0, dropped = 0;
        for (int64_t i = 0; i < ne; i++) {
            bad += m[i] ? fabsf(y[i] - xd[i] / 0.75f) > 1e-6f * (1 + fabsf(y[i])) : y[i] != 0.0f;
            dropped += !m[i];
        }
        QT_CHECK(bad == 0, "Dropout train: %lld outputs inconsistent with the mask", (long long)bad);
        QT_CHECK(fabs(dropped - 0.25 * ne) < 5 * sqrt(ne * 0.25 * 0.75), "Dropout drop rate %lld of %lld",
                 (long long)dropped, (long long)ne);
        masks[t] = qk_malloc(ne);
        memcpy(masks[t], m, ne);
        /* backward: dx = dy * mask / (1 - r) */
        qk_value *yv = &g->values[n->out[0]];
        for (int64_t i = 0; i < ne; i++)
            qk_f32(&yv->grad)[i] = 1.0f;
        memset(g->values[x].grad.data, 0, ne * sizeof(float));
        QT_OK(n->op->backward(&g->exec, n));
        bad = 0;
        for (int64_t i = 0; i < ne; i++)
            bad += qk_f32(&g->values[x].grad)[i] != (m[i] ? 1.0f / 0.75f : 0.0f);
        QT_CHECK(bad == 0, "Dropout backward: %lld wrong", (long long)bad);
        /* the next call draws a new mask */
        QT_OK(qk_graph_forward(g));
        QT_CHECK(memcmp(masks[t], m, ne) != 0, "Dropout: same mask twice");
        qk_graph_destroy(g);
    }
    QT_CHECK(masks[0] && masks[1] && memcmp(masks[0], masks[1], ne) == 0, "Dropout: serial vs 2 threads differ");
    qk_free(masks[0]);
    qk_free(masks[1]);
}

/* ===================== softmax and loss ===================== */
static void test_softmax(void)
{
    const float want[3] = { 0.0900305732f, 0.244728471f, 0.665240956f };
    fx_begin();
    int x = cin("x", QK_F32, 2, (int64_t[]){ 2, 3 }, (float[]){ 1, 2, 3, 1000, 1001, 1002 });
    QT_OK(fx_run("Softmax", 1, &x, 1));
    check_vals(fx_f(0), want, 3, 1e-6, "Softmax");
    check_vals(fx_f(0) + 3, want, 3, 1e-6, "Softmax large");
    fx_end();
    fx_begin();
    x = cin("x", QK_F32, 2, (int64_t[]){ 2, 3 }, (float[]){ 1, 2, 3, 1000, 1001, 1002 });
    QT_OK(fx_run("LogSoftmax", 1, &x, 1));
    for (int i = 0; i < 6; i++)
        QT_NEAR(fx_f(0)[i], logf(want[i % 3]), 1e-5, "LogSoftmax");
    fx_end();

    fx_begin(); /* axis 0 of [2,3]: columns */
    x = cin("x", QK_F32, 2, (int64_t[]){ 2, 3 }, (float[]){ 0, 1, 2, 0, 0, 0 });
    NODE = gc_node(G, "Softmax", 1, &x, 1);
    qk_node_set_int(G, NODE, "axis", 0);
    QT_OK(qk_ops_bind(G));
    QT_OK(qk_graph_plan(G, 1, 0, NULL));
    QT_OK(qk_graph_forward(G));
    float e1 = 1.0f / (1.0f + expf(-1.0f)), e2 = 1.0f / (1.0f + expf(-2.0f));
    check_vals(fx_f(0), (float[]){ 0.5f, e1, e2, 0.5f, 1 - e1, 1 - e2 }, 6, 1e-6, "Softmax axis 0");
    fx_end();

    fx_begin(); /* opset 11: axis 1 of [2,2,2] coerces to [2,4] */
    G->opset = 11;
    x = cin("x", QK_F32, 3, (int64_t[]){ 2, 2, 2 }, (float[]){ 0, 0, 0, 0, 1, 1, 1, 1 });
    QT_OK(fx_run("Softmax", 1, &x, 1));
    check_vals(fx_f(0), (float[]){ 0.25f, 0.25f, 0.25f, 0.25f, 0.25f, 0.25f, 0.25f, 0.25f }, 8, 1e-7,
               "Softmax opset 11");
    fx_end();

    static const char *ops[] = { "Softmax", "LogSoftmax" };
    for (int k = 0; k < 2; k++)
        for (int axis = -1; axis <= 1; axis++) {
            qk_graph *g;
            qk_graph_create(&g);
            qk_rng rng;
            qk_rng_seed(&rng, 9 + axis);
            int a = gc_add(g, "x", 1, QK_F32, 3, (int64_t[]){ 2, 4, 3 }, NULL, &rng);
            int node = gc_node(g, ops[k], 1, &a, 1);
            qk_node_set_int(g, node, "axis", axis);
            gc_opts o = gc_defaults();
            gc_expect(g, node, &o, ops[k]);
            qk_graph_destroy(g);
        }
}


static void test_sce(void)
{
    const float sc[6] = { 1, 2, 3, 1, 1, 1 };
    const double l0 = 0.407605964, l1 = log(3.0);
    static const char *reds[] = { "mean", "sum", "none" };
    for (int r = 0; r < 3; r++) {
        qk_graph *g;
        int node = sce_graph(&g, 2, (int64_t[]){ 2, 3 }, (int64_t[]){ 2, 0 }, NULL, r ? reds[r] : NULL, 0, 0, 1,
                             NULL);
        memcpy(g->values[0].t.data, sc, sizeof sc);
        QT_OK(qk_ops_bind(g));
        QT_OK(qk_graph_plan(g, 2, 0, NULL));
        QT_OK(qk_graph_forward(g));
        const qk_tensor *y = &g->values[g->nodes[node].out[0]].t;
        if (r == 0)
            QT_NEAR(qk_f32(y)[0], (l0 + l1) / 2, 1e-6, "SCE mean");
        if (r == 1)
            QT_NEAR(qk_f32(y)[0], l0 + l1, 1e-6, "SCE sum");
        if (r == 2) {
            check_shape(y, 1, (int64_t[]){ 2 }, "SCE none");
            QT_NEAR(qk_f32(y)[0], l0, 1e-6, "SCE none 0");
            QT_NEAR(qk_f32(y)[1], l1, 1e-6, "SCE none 1");
        }
        QT_CHECK(y->ndim == (r == 2 ? 1 : 0), "SCE output rank %d", y->ndim);
        qk_graph_destroy(g);
    }
    { /* weights + ignore_index, with log_prob */
        qk_graph *g;
        int node = sce_graph(&g, 2, (int64_t[]){ 3, 3 }, (int64_t[]){ 2, -1, 0 }, (float[]){ 1, 2, 3 }, NULL, 1, -1,
                             2, NULL);
        memcpy(g->values[0].t.data, (float[]){ 1, 2, 3, 5, 5, 5, 1, 1, 1 }, 9 * sizeof(float));
        QT_OK(qk_ops_bind(g));
        QT_OK(qk_graph_plan(g, 3, 0, NULL));
        QT_OK(qk_graph_forward(g));
        QT_NEAR(qk_f32(&g->values[g->nodes[node].out[0]].t)[0], (3 * l0 + 1 * l1) / 4, 1e-6, "SCE weight ii");
        const float *lp = qk_f32(&g->values[g->nodes[node].out[1]].t);
        QT_NEAR(lp[2], -l0, 1e-6, "SCE log_prob");
        QT_NEAR(lp[4], -l1, 1e-6, "SCE log_prob ignored row");
        qk_graph_destroy(g);
    }
    { /* training through the executor: d scores = (softmax - onehot) / N */
        qk_graph *g;
        int node = sce_graph(&g, 2, (int64_t[]){ 2, 3 }, (int64_t[]){ 2, 0 }, NULL, NULL, 0, 0, 1, NULL);
        memcpy(g->values[0].t.data, sc, sizeof sc);
        QT_OK(qk_ops_bind(g));
        QT_OK(qk_graph_plan(g, 2, 1, pool2));
        QT_OK(qk_graph_forward(g));
        QT_OK(qk_graph_backward(g, g->nodes[node].out[0]));
        const float *gx = qk_f32(&g->values[0].grad);
        const float want[6] = { 0.0900305732f / 2, 0.244728471f / 2, (0.665240956f - 1) / 2,
                                (1.0f / 3 - 1) / 2, 1.0f / 6, 1.0f / 6 };
        check_vals(gx, want, 6, 1e-6, "SCE grad");
        qk_graph_destroy(g);
    }
    { /* label out of range -> QK_ERR_ARG at forward */
        qk_graph *g;
        sce_graph(&g, 2, (int64_t[]){ 2, 3 }, (int64_t[]){ 3, 0 }, NULL, NULL, 0, 0, 1, NULL);
        QT_OK(qk_ops_bind(g));
        QT_OK(qk_graph_plan(g, 2, 0, NULL));
        qk_status st = qk_graph_forward(g);
        QT_CHECK(st == QK_ERR_ARG && strstr(qk_last_error(), "label 3"), "SCE bad label: %s", qk_last_error());
        qk_graph_destroy(g);
    }
    /* gradient checks */
    qk_rng rng;
    qk_rng_seed(&rng, 2024);
    for (int r = 0; r < 3; r++) {
        qk_graph *g;
        int node = sce_graph(&g, 2, (int64_t[]){ 4, 5 }, (int64_t[]){ 1, 4, 0, 1 }, NULL, reds[r], 0, 0, 1, &rng);
        gc_opts o = gc_defaults();
        gc_expect(g, node, &o, reds[r]);
        qk_graph_destroy(g);
    }
    {
        qk_graph *g; /* [N,C,d1,d2], weights, ignore_index, both outputs get gradients */
        int64_t lab[12] = { 0, 2, 1, 1, 2, 0, 0, 2, 1, 2, 2, 0 };
        int node = sce_graph(&g, 4, (int64_t[]){ 2, 3, 2, 3 }, lab, (float[]){ 0.5f, 2, 1 }, "mean", 1, 1, 2, &rng);
        gc_opts o = gc_defaults();
        gc_expect(g, node, &o, "SCE NCd weights ii log_prob");
        qk_graph_destroy(g);
        node = sce_graph(&g, 3, (int64_t[]){ 2, 3, 2 }, lab, (float[]){ 0.5f, 2, 1 }, "sum", 1, 2, 1, &rng);
        gc_expect(g, node, &o, "SCE Nd sum ii");
        qk_graph_destroy(g);
    }
}

int main(void)
{
    qk_pool_create(1, &pool1);
    qk_pool_create(2, &pool2);
    test_shape_forward();
    test_shape_grad();
    test_dynamic_reshape();
    test_dropout_train();
    test_softmax();
    test_sce();
    qk_pool_destroy(pool1);
    qk_pool_destroy(pool2);
    return qt_finish("test_ops_shape");
}
