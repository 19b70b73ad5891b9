/* BN folding (qk_fold_bn) and the graph editing it is built on
 * (qk_graph_replace_uses, qk_graph_remove_nodes,
 * qk_graph_remove_unused_values):
 *   - docs/ALGORITHMS.md §6's numeric example on a 1x1 conv;
 *   - every zoo model with randomized BN statistics: logits before and after
 *     folding, no BN left, parameter bookkeeping, 1 vs 2 threads bit-equal,
 *     ONNX export + reload bit-equal;
 *   - Gemm + BN (transB 1 and 0), and the cases that must not fold (shared
 *     weight, conv output also a graph output or read twice, Gemm beta != 1);
 *   - editing edge cases: removing a node whose output is a graph output or
 *     is still read, replace_uses with an excepted node, unused values. */
#include "qkit/registry.h"
#include "qkit/fold.h"
#include "qkit/onnx.h"
#include "qkit/ops.h"
#include "qkit/zoo.h"
#include "qt.h"

#include <string.h>
#include <unistd.h>

/* Float32 initializer with the given values (or N(0,1)*scale from rng when
 * vals is NULL). Returns the value index. */
static int add_f32(qk_graph *g, const char *name, qk_value_kind kind, int ndim, const int64_t *dims,
                   const float *vals, qk_rng *rng, float scale)
{
    qk_tensor t;
    if (qk_tensor_alloc(&t, QK_F32, ndim, dims) != QK_OK)
        return -1;
    for (int64_t i = 0; i < qk_tensor_numel(&t); i++)
        qk_f32(&t)[i] = vals ? vals[i] : scale * qk_rng_normal(rng);
    int v = qk_graph_add_init(g, name, kind, &t);
    if (v < 0)
        qk_tensor_free(&t);
    return v;
}

/* One-output node with a new output value named `out`. */
static int add_node1(qk_graph *g, const char *op, const char *name, int n_in, const int *in, const char *out)
{
    int y = qk_graph_add_value(g, out, QK_VALUE_ACT);
    if (y < 0 || qk_graph_add_node(g, op, name, n_in, in, 1, &y) < 0)
        return -1;
    return y;
}

/* BN "name" on x with C channels: scale, B, mean, var either given (p[4][C])
 * or random around (1, 0, 0, 1). */
static int add_bn(qk_graph *g, int x, const char *name, int64_t C, const float *p, qk_rng *rng, float eps)
{
    char nm[4][64];
    static const char *const sfx[4] = { "weight", "bias", "running_mean", "running_var" };
    int in[5] = { x };
    for (int k = 0; k < 4; k++) {
        snprintf(nm[k], sizeof nm[k], "%s.%s", name, sfx[k]);
        float buf[64];
        for (int64_t c = 0; c < C && !p; c++)
            buf[c] = k == 0 ? 1.0f + 0.3f * qk_rng_normal(rng) : k == 3 ? 0.5f + qk_rng_uniform(rng)
                                                                        : 0.3f * qk_rng_normal(rng);
        in[k + 1] = add_f32(g, nm[k], k < 2 ? QK_VALUE_PARAM : QK_VALUE_CONST, 1, &C, p ? p + k * C : buf, rng, 0);
    }
    int y = add_node1(g, "BatchNormalization", name, 5, in, name);
    int nd = qk_graph_find_node(g, name);
    if (y < 0 || nd < 0 || qk_node_set_float(g, nd, "epsilon", eps) != QK_OK)
        return -1;
    return y;
}

static int count_op(const qk_graph *g, const char *op)
{
    int c = 0;
    for (int i = 0; i < g->n_nodes; i++)
        c += strcmp(g->nodes[i].op_type, op) == 0;
    return c;
}

/* Bind, plan at batch N (eval), fill the input from seed, forward; copies
 * the first output into out (numel floats). Returns the output numel or -1. */
static int64_t run(qk_graph *g, int64_t N, qk_pool *pool, uint64_t seed, float *out, int64_t cap)
{
    if (qk_ops_bind(g) != QK_OK || qk_graph_plan(g, N, 0, pool) != QK_OK)
        return -1;
    qk_value *in = &g->values[g->inputs[0]];
    qk_rng r;
    qk_rng_seed(&r, seed);
    for (int64_t i = 0; i < qk_tensor_numel(&in->t); i++)
        qk_f32(&in->t)[i] = qk_rng_normal(&r);
    if (qk_graph_forward(g) != QK_OK)
        return -1;
    const qk_tensor *y = &g->values[g->outputs[0]].t;
    int64_t n = qk_tensor_numel(y);
    if (n > cap)
        return -1;
    memcpy(out, y->data, (size_t)n * sizeof(float));
    return n;
}

static double max_abs(const float *a, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++)
        m = fabs(a[i]) > m ? fabs(a[i]) : m;
    return m;
}

static double max_diff(const float *a, const float *b, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++)
        m = fabs(a[i] - b[i]) > m ? fabs(a[i] - b[i]) : m;
    return m;
}

/* x [-1,2,1,1] -> conv (1x1, W [1,2,1,1], b [1]) -> bn -> y. */
static qk_graph *tiny(float eps, int with_bias)
{
    static const float W[2] = { 0.5f, -1.0f }, b[1] = { 0.1f }, bnp[4] = { 2.0f, 0.3f, 0.2f, 0.25f };
    qk_graph *g;
    if (qk_graph_create(&g) != QK_OK)
        return NULL;
    int x = qk_graph_add_input(g, "x", QK_F32, 4, (const int64_t[]){ -1, 2, 1, 1 });
    int in[3] = { x, add_f32(g, "conv.weight", QK_VALUE_PARAM, 4, (const int64_t[]){ 1, 2, 1, 1 }, W, NULL, 0),
                  with_bias ? add_f32(g, "conv.bias", QK_VALUE_PARAM, 1, (const int64_t[]){ 1 }, b, NULL, 0) : -1 };
    int c = add_node1(g, "Conv", "conv", with_bias ? 3 : 2, in, "conv");
    int y = add_bn(g, c, "bn", 1, bnp, NULL, eps);
    if (y < 0 || qk_graph_add_output(g, y) != QK_OK) {
        qk_graph_destroy(g);
        return NULL;
    }
    return g;
}

static void test_algorithms_example(qk_pool *pool)
{
    /* eps = 0 exactly as in docs/ALGORITHMS.md §6: the BN operator itself rejects
     * eps = 0, so fold first (fold only needs var + eps > 0), then run. */
    qk_graph *g = tiny(0.0f, 1);
    QT_CHECK(g != NULL, "tiny graph: %s", qk_last_error());
    if (!g)
        return;
    int n = -1;
    QT_OK(qk_fold_bn(g, &n));
    QT_CHECK(n == 1 && g->n_nodes == 1 && count_op(g, "BatchNormalization") == 0, "folded %d, %d nodes", n,
             g->n_nodes);
    int w = qk_graph_find_value(g, "conv.weight"), b = qk_graph_find_value(g, "conv.bias");
    QT_CHECK(w >= 0 && b >= 0, "conv params kept");
    if (w >= 0 && b >= 0) {
        const float *wf = qk_f32(&g->values[w].t), *bf = qk_f32(&g->values[b].t);
        /* exact: 0.5 * 2/0.5 and -1 * 4 are representable; b_f is computed
         * in double from the float32 parameters and rounded once */
        QT_CHECK(wf[0] == 2.0f && wf[1] == -4.0f, "W_f = [%g, %g], want [2, -4]", wf[0], wf[1]);
        QT_CHECK(bf[0] == (float)((double)0.3f + ((double)0.1f - (double)0.2f) * 4.0) && fabsf(bf[0] + 0.1f) < 1e-7f,
                 "b_f = %.9g", bf[0]);
    }
    QT_CHECK(qk_graph_find_value(g, "bn.running_var") < 0 && qk_graph_find_value(g, "conv") < 0,
             "BN params and the old conv output removed");
    QT_CHECK(g->n_outputs == 1 && strcmp(g->values[g->outputs[0]].name, "bn") == 0 &&
                 g->values[g->outputs[0]].producer == 0,
             "conv writes the BN output 'bn'");
    QT_OK(qk_ops_bind(g));
    QT_OK(qk_graph_plan(g, 1, 0, pool));
    if (g->planned) {
        float *x = qk_f32(&g->values[g->inputs[0]].t);
        x[0] = 1.0f;
        x[1] = 0.5f;
        QT_OK(qk_graph_forward(g));
        /* 2*1 - 4*0.5 - 0.1: exact up to the rounding of b_f */
        QT_NEAR(qk_f32(&g->values[g->outputs[0]].t)[0], -0.1, 1e-7, "fold(x)");
    }
    qk_graph_destroy(g);

    /* Same with eps tiny enough that var + eps == 0.25 in float: BN(conv(x))
     * before folding is -0.1 too. Conv without bias: the fold adds
     * "conv.bias" (PARAM, no_decay). */
    g = tiny(1e-12f, 0);
    QT_CHECK(g != NULL, "tiny graph: %s", qk_last_error());
    if (!g)
        return;
    float before = 0, after = 0;
    QT_CHECK(run(g, 1, pool, 1, &before, 1) == 1, "run before: %s", qk_last_error());
    float *x = qk_f32(&g->values[g->inputs[0]].t);
    x[0] = 1.0f;
    x[1] = 0.5f;
    QT_OK(qk_graph_forward(g));
    before = qk_f32(&g->values[g->outputs[0]].t)[0];
    QT_NEAR(before, 0.3 + (0.0 - 0.2) * 4.0, 1e-6, "BN(conv(x)) without bias");
    QT_OK(qk_fold_bn(g, &n));
    QT_CHECK(n == 1 && !g->planned, "folded %d, unplanned", n);
    int bv = qk_graph_find_value(g, "conv.bias");
    QT_CHECK(bv >= 0 && g->values[bv].kind == QK_VALUE_PARAM && g->values[bv].no_decay &&
                 g->nodes[0].n_in == 3 && g->nodes[0].in[2] == bv,
             "new bias conv.bias");
    QT_OK(qk_graph_plan(g, 1, 0, pool));
    if (g->planned) {
        x = qk_f32(&g->values[g->inputs[0]].t);
        x[0] = 1.0f;
        x[1] = 0.5f;
        QT_OK(qk_graph_forward(g));
        after = qk_f32(&g->values[g->outputs[0]].t)[0];
        QT_NEAR(after, before, 1e-6, "fold(x) == BN(conv(x))");
    }
    qk_graph_destroy(g);
}

/* Zoo models: BN statistics and affine randomized so that every fold changes
 * the weights; logits must survive folding, threads and an ONNX round trip. */
static void test_zoo(qk_pool *p1, qk_pool *p2)
{
    enum { N = 4, CAP = N * 10 };
    const char *const *names = qk_zoo_names();
    for (int k = 0; names[k]; k++) {
        const char *arch = names[k];
        qk_graph *g = NULL;
        QT_OK(qk_zoo_build(arch, 11, &g));
        if (!g)
            continue;
        qk_rng r;
        qk_rng_seed(&r, 100 + (uint64_t)k);
        int n_bn = count_op(g, "BatchNormalization");
        int64_t bn_channels = 0;
        for (int i = 0; i < g->n_nodes; i++) {
            const qk_node *n = &g->nodes[i];
            if (strcmp(n->op_type, "BatchNormalization") != 0)
                continue;
            float *gam = qk_f32(&g->values[n->in[1]].t), *bet = qk_f32(&g->values[n->in[2]].t);
            float *mu = qk_f32(&g->values[n->in[3]].t), *var = qk_f32(&g->values[n->in[4]].t);
            int64_t C = g->values[n->in[1]].t.dims[0];
            bn_channels += C;
            for (int64_t c = 0; c < C; c++) {
                gam[c] = 0.5f + qk_rng_uniform(&r);
                bet[c] = 0.2f * qk_rng_normal(&r);
                mu[c] = 0.1f * qk_rng_normal(&r);
                var[c] = 0.3f + qk_rng_uniform(&r);
            }
        }
        int64_t params = qk_graph_param_count(g);
        float before[CAP], after[CAP], after2[CAP], reload[CAP];
        int64_t n0 = run(g, N, p1, 5, before, CAP);
        QT_CHECK(n0 == CAP, "%s: run before folding: %s", arch, qk_last_error());
        double scale = max_abs(before, CAP);
        QT_CHECK(scale > 1e-3 && isfinite(scale), "%s: logits not degenerate (max |logit| %g)", arch, scale);
        /* fold from a training plan: running statistics are used anyway */
        QT_OK(qk_graph_plan(g, N, 1, p1));
        int folded = -1;
        QT_OK(qk_fold_bn(g, &folded));
        QT_CHECK(folded == n_bn && n_bn > 0, "%s: folded %d of %d BN", arch, folded, n_bn);
        QT_CHECK(count_op(g, "BatchNormalization") == 0, "%s: BN left", arch);
        QT_CHECK(!g->planned && g->order, "%s: unplanned and sorted", arch);
        /* each BN's scale+bias (2C) gone, one conv bias (C) added */
        QT_CHECK(qk_graph_param_count(g) == params - bn_channels, "%s: %lld params after, want %lld", arch,
                 (long long)qk_graph_param_count(g), (long long)(params - bn_channels));
        int cb = qk_graph_find_value(g, "conv1.bias");
        QT_CHECK(cb >= 0 && g->values[cb].no_decay && g->values[cb].kind == QK_VALUE_PARAM, "%s: conv1.bias", arch);
        QT_CHECK(qk_graph_find_value(g, "bn1.running_mean") < 0, "%s: BN statistics removed", arch);
        QT_CHECK(g->n_outputs == 1 && strcmp(g->values[g->outputs[0]].name, "logits") == 0, "%s: output", arch);

        int64_t n1 = run(g, N, p1, 5, after, CAP);
        QT_CHECK(n1 == CAP, "%s: run after folding: %s", arch, qk_last_error());
        /* W*s is rounded to float32 once per weight (2^-24 relative) and the
         * conv then sums in the same order: differences grow to ~1e-6 of the
         * logit scale through a few layers; 1e-4 leaves a wide margin while
         * any folding error (a wrong channel, eps or mean) is >= 1e-2. */
        double d = max_diff(before, after, CAP);
        QT_CHECK(d < 1e-4 * (scale > 1 ? scale : 1), "%s: folded logits differ by %g (scale %g)", arch, d, scale);

        int64_t n2 = run(g, N, p2, 5, after2, CAP);
        QT_CHECK(n2 == CAP && memcmp(after, after2, sizeof after) == 0, "%s: 1 vs 2 threads differ", arch);

        char path[128];
        snprintf(path, sizeof path, "/tmp/qk_test_fold_%d_%s.onnx", (int)getpid(), arch);
        QT_OK(qk_onnx_save(g, path));
        qk_graph *h = NULL;
        QT_OK(qk_onnx_load(path, &h));
        unlink(path);
        if (h) {
            QT_CHECK(count_op(h, "BatchNormalization") == 0 && h->n_nodes == g->n_nodes, "%s: reloaded nodes", arch);
            int64_t n3 = run(h, N, p1, 5, reload, CAP);
            QT_CHECK(n3 == CAP && memcmp(after, reload, sizeof after) == 0, "%s: reloaded logits differ by %g", arch,
                     max_diff(after, reload, CAP));
        }
        qk_graph_destroy(h);
        qk_graph_destroy(g);
    }
}

/* x [-1,K] -> Gemm (alpha 0.5, W, [C]) -> BN -> y */
static qk_graph *gemm_bn(int transB, int with_c, float beta)
{
    enum { K = 5, M = 3 };
    qk_rng r;
    qk_rng_seed(&r, 9);
    qk_graph *g;
    if (qk_graph_create(&g) != QK_OK)
        return NULL;
    int x = qk_graph_add_input(g, "x", QK_F32, 2, (const int64_t[]){ -1, K });
    int64_t wd[2] = { transB ? M : K, transB ? K : M };
    int in[3] = { x, add_f32(g, "fc.weight", QK_VALUE_PARAM, 2, wd, NULL, &r, 0.5f),
                  with_c ? add_f32(g, "fc.bias", QK_VALUE_PARAM, 1, (const int64_t[]){ M }, NULL, &r, 0.5f) : -1 };
    int y = add_node1(g, "Gemm", "fc", with_c ? 3 : 2, in, "fc");
    int nd = qk_graph_find_node(g, "fc");
    if (y < 0 || qk_node_set_int(g, nd, "transB", transB) != QK_OK ||
        qk_node_set_float(g, nd, "alpha", 0.5f) != QK_OK || qk_node_set_float(g, nd, "beta", beta) != QK_OK) {
        qk_graph_destroy(g);
        return NULL;
    }
    y = add_bn(g, y, "bn", M, NULL, &r, 1e-5f);
    if (y < 0 || qk_graph_add_output(g, y) != QK_OK) {
        qk_graph_destroy(g);
        return NULL;
    }
    return g;
}

static void test_gemm(qk_pool *pool)
{
    static const struct { int tb, c; float beta; int want; } cs[] = {
        { 1, 0, 1.0f, 1 }, { 1, 1, 1.0f, 1 }, { 0, 1, 1.0f, 1 }, { 1, 1, 0.5f, 0 }
    };
    for (int i = 0; i < 4; i++) {
        qk_graph *g = gemm_bn(cs[i].tb, cs[i].c, cs[i].beta);
        QT_CHECK(g != NULL, "gemm graph: %s", qk_last_error());
        if (!g)
            continue;
        float before[24], after[24];
        int64_t n = run(g, 8, pool, 3, before, 24);
        int folded = -1;
        QT_OK(qk_fold_bn(g, &folded));
        QT_CHECK(folded == cs[i].want, "gemm case %d (transB %d, C %d, beta %g): folded %d", i, cs[i].tb, cs[i].c,
                 (double)cs[i].beta, folded);
        int64_t n2 = run(g, 8, pool, 3, after, 24);
        /* O(1) values, K = 5 terms: float32 rounding ~1e-7 */
        QT_CHECK(n == 24 && n2 == 24 && max_diff(before, after, 24) < 1e-5 * (1 + max_abs(before, 24)),
                 "gemm case %d: differs by %g", i, max_diff(before, after, 24));
        qk_graph_destroy(g);
    }
}

/* Pairs that must not fold, and BN modes that still do. */
static void test_no_fold(qk_pool *pool)
{
    qk_rng r;
    qk_rng_seed(&r, 4);
    int n;
    /* two convs sharing one weight, each followed by a BN: nothing folds */
    qk_graph *g;
    QT_OK(qk_graph_create(&g));
    int x = qk_graph_add_input(g, "x", QK_F32, 4, (const int64_t[]){ -1, 2, 3, 3 });
    int w = add_f32(g, "w", QK_VALUE_PARAM, 4, (const int64_t[]){ 2, 2, 1, 1 }, NULL, &r, 1);
    int a = add_node1(g, "Conv", "c1", 2, (int[]){ x, w }, "c1");
    int b = add_node1(g, "Conv", "c2", 2, (int[]){ x, w }, "c2");
    int ya = add_bn(g, a, "bn_a", 2, NULL, &r, 1e-5f), yb = add_bn(g, b, "bn_b", 2, NULL, &r, 1e-5f);
    int s = add_node1(g, "Add", "sum", 2, (int[]){ ya, yb }, "sum");
    QT_OK(qk_graph_add_output(g, s));
    float before[36], after[36];
    QT_CHECK(run(g, 2, pool, 1, before, 36) == 36, "shared: run: %s", qk_last_error());
    qk_log_level lvl = qk_log_get_level();
    qk_log_set_level(QK_LOG_ERROR); /* the skip is reported as a warning */
    QT_OK(qk_fold_bn(g, &n));
    qk_log_set_level(lvl);
    QT_CHECK(n == 0 && count_op(g, "BatchNormalization") == 2, "shared weight: folded %d", n);
    QT_CHECK(run(g, 2, pool, 1, after, 36) == 36 && memcmp(before, after, sizeof before) == 0,
             "shared weight: graph changed");
    qk_graph_destroy(g);

    /* conv output is also a graph output; conv output read by BN and Relu */
    for (int c = 0; c < 2; c++) {
        QT_OK(qk_graph_create(&g));
        x = qk_graph_add_input(g, "x", QK_F32, 4, (const int64_t[]){ -1, 2, 3, 3 });
        w = add_f32(g, "w", QK_VALUE_PARAM, 4, (const int64_t[]){ 2, 2, 1, 1 }, NULL, &r, 1);
        a = add_node1(g, "Conv", "c1", 2, (int[]){ x, w }, "c1");
        ya = add_bn(g, a, "bn", 2, NULL, &r, 1e-5f);
        QT_OK(qk_graph_add_output(g, ya));
        if (c == 0)
            QT_OK(qk_graph_add_output(g, a));
        else
            QT_OK(qk_graph_add_output(g, add_node1(g, "Relu", "relu", 1, &a, "relu")));
        QT_OK(qk_fold_bn(g, &n));
        QT_CHECK(n == 0 && count_op(g, "BatchNormalization") == 1, "case %d: folded %d", c, n);
        qk_graph_destroy(g);
    }

    /* BN with training_mode = 1 and a chain conv -> BN -> BN: both fold
     * (running statistics). */
    QT_OK(qk_graph_create(&g));
    x = qk_graph_add_input(g, "x", QK_F32, 4, (const int64_t[]){ -1, 2, 3, 3 });
    w = add_f32(g, "w", QK_VALUE_PARAM, 4, (const int64_t[]){ 2, 2, 1, 1 }, NULL, &r, 1);
    a = add_node1(g, "Conv", "c1", 2, (int[]){ x, w }, "c1");
    ya = add_bn(g, a, "bn1", 2, NULL, &r, 1e-5f);
    yb = add_bn(g, ya, "bn2", 2, NULL, &r, 1e-5f);
    QT_OK(qk_graph_add_output(g, yb));
    QT_CHECK(run(g, 2, pool, 1, before, 36) == 36, "chain: run: %s", qk_last_error());
    QT_OK(qk_node_set_int(g, qk_graph_find_node(g, "bn1"), "training_mode", 1));
    QT_OK(qk_fold_bn(g, &n));
    QT_CHECK(n == 2 && g->n_nodes == 1 && strcmp(g->values[g->outputs[0]].name, "bn2") == 0, "chain: folded %d", n);
    QT_CHECK(run(g, 2, pool, 1, after, 36) == 36 && max_diff(before, after, 36) < 1e-5 * (1 + max_abs(before, 36)),
             "chain: differs by %g", max_diff(before, after, 36));
    qk_graph_destroy(g);

    QT_CHECK(qk_fold_bn(NULL, &n) == QK_ERR_ARG && n == 0, "NULL graph");
}

/* x -> r1 -> a -> r2 -> b (output), a -> r3 -> c (output); an unused
 * initializer "junk" sits between them in value order. */
static qk_graph *chain3(void)
{
    qk_graph *g;
    if (qk_graph_create(&g) != QK_OK)
        return NULL;
    int x = qk_graph_add_input(g, "x", QK_F32, 2, (const int64_t[]){ -1, 4 });
    int a = add_node1(g, "Relu", "r1", 1, &x, "a");
    add_f32(g, "junk", QK_VALUE_CONST, 1, (const int64_t[]){ 3 }, (const float[]){ 1, 2, 3 }, NULL, 0);
    int b = add_node1(g, "Relu", "r2", 1, &a, "b");
    int c = add_node1(g, "Relu", "r3", 1, &a, "c");
    if (b < 0 || c < 0 || qk_graph_add_output(g, b) != QK_OK || qk_graph_add_output(g, c) != QK_OK) {
        qk_graph_destroy(g);
        return NULL;
    }
    return g;
}

static void test_edit(qk_pool *pool)
{
    qk_graph *g = chain3();
    QT_CHECK(g != NULL, "chain3: %s", qk_last_error());
    if (!g)
        return;
    QT_OK(qk_ops_bind(g));
    QT_OK(qk_graph_plan(g, 2, 0, pool));
    int nv = g->n_values;

    /* r2 writes graph output "b": refused, graph unchanged */
    uint8_t rm[3] = { 0, 1, 0 };
    qk_status st = qk_graph_remove_nodes(g, rm);
    QT_CHECK(st == QK_ERR_ARG && strstr(qk_last_error(), "'r2'") && strstr(qk_last_error(), "graph output 'b'"),
             "remove output writer: %d %s", st, qk_last_error());
    QT_CHECK(g->n_nodes == 3 && g->n_values == nv && g->planned, "refusal changed the graph");
    /* r1 writes "a", which r2 and r3 read */
    uint8_t rm1[3] = { 1, 0, 0 };
    st = qk_graph_remove_nodes(g, rm1);
    QT_CHECK(st == QK_ERR_ARG && strstr(qk_last_error(), "'r1'") && strstr(qk_last_error(), "'a'") &&
                 strstr(qk_last_error(), "'r2'"),
             "remove a read value's producer: %d %s", st, qk_last_error());
    QT_CHECK(g->n_nodes == 3, "refusal removed a node");

    /* range checks */
    QT_CHECK(qk_graph_replace_uses(g, -1, 0, -1) == QK_ERR_ARG, "old_v -1");
    QT_CHECK(qk_graph_replace_uses(g, 0, nv, -1) == QK_ERR_ARG, "new_v out of range");
    QT_CHECK(qk_graph_replace_uses(g, 0, 1, 3) == QK_ERR_ARG, "except_node out of range");
    QT_CHECK(qk_graph_remove_nodes(g, NULL) == QK_ERR_ARG, "NULL flags");

    /* r3 reads x instead of a; r2 (excepted) keeps a */
    int x = qk_graph_find_value(g, "x"), a = qk_graph_find_value(g, "a");
    QT_OK(qk_graph_replace_uses(g, a, x, 1));
    QT_CHECK(g->nodes[1].in[0] == a && g->nodes[2].in[0] == x && !g->planned && !g->order,
             "replace_uses with except_node");
    /* outputs are rewired too: output "b" -> "a" */
    int b = qk_graph_find_value(g, "b");
    QT_OK(qk_graph_replace_uses(g, b, a, -1));
    QT_CHECK(g->outputs[0] == a && g->outputs[1] == qk_graph_find_value(g, "c"), "graph output rewired");
    /* now r2 is dead: remove it; "b" and "junk" go, indices renumbered */
    QT_OK(qk_graph_remove_nodes(g, rm));
    QT_CHECK(g->n_nodes == 2 && strcmp(g->nodes[0].name, "r1") == 0 && strcmp(g->nodes[1].name, "r3") == 0,
             "nodes kept in order");
    QT_CHECK(g->n_values == 3 && qk_graph_find_value(g, "b") < 0 && qk_graph_find_value(g, "junk") < 0,
             "%d values left", g->n_values);
    x = qk_graph_find_value(g, "x");
    a = qk_graph_find_value(g, "a");
    int c = qk_graph_find_value(g, "c");
    QT_CHECK(x == 0 && a == 1 && c == 2 && g->inputs[0] == x && g->outputs[0] == a && g->outputs[1] == c &&
                 g->nodes[0].in[0] == x && g->nodes[0].out[0] == a && g->nodes[1].in[0] == x &&
                 g->nodes[1].out[0] == c && g->values[a].producer == 0 && g->values[c].producer == 1 &&
                 g->values[x].producer == -1,
             "renumbering");
    /* still runs: a = relu(x), c = relu(x) */
    QT_OK(qk_graph_plan(g, 2, 0, pool));
    if (g->planned) {
        float *xi = qk_f32(&g->values[x].t);
        for (int i = 0; i < 8; i++)
            xi[i] = (float)i - 3.5f;
        QT_OK(qk_graph_forward(g));
        int ok = 1;
        for (int i = 0; i < 8; i++)
            ok &= qk_f32(&g->values[a].t)[i] == fmaxf(xi[i], 0) && qk_f32(&g->values[c].t)[i] == fmaxf(xi[i], 0);
        QT_CHECK(ok, "forward after editing");
    }
    /* nothing flagged, nothing unused: unchanged; removing everything is
     * refused (r1 and r3 write outputs) */
    uint8_t none[2] = { 0, 0 }, all[2] = { 1, 1 };
    QT_OK(qk_graph_remove_nodes(g, none));
    QT_CHECK(g->n_nodes == 2 && g->n_values == 3, "no-op removal");
    QT_CHECK(qk_graph_remove_nodes(g, all) == QK_ERR_ARG, "remove all");
    QT_OK(qk_graph_remove_unused_values(g));
    QT_CHECK(g->n_values == 3, "remove_unused_values keeps used values");
    QT_CHECK(qk_graph_remove_unused_values(NULL) == QK_ERR_ARG, "NULL graph");
    /* a graph input nobody reads is kept */
    QT_CHECK(qk_graph_add_input(g, "unused_in", QK_F32, 1, (const int64_t[]){ 2 }) == 3, "add input");
    QT_OK(qk_graph_remove_unused_values(g));
    QT_CHECK(g->n_values == 4 && g->n_inputs == 2, "unused graph input kept");
    qk_graph_destroy(g);
}

int main(void)
{
    qk_pool *p1 = NULL, *p2 = NULL;
    QT_OK(qk_pool_create(1, &p1));
    QT_OK(qk_pool_create(2, &p2));
    test_algorithms_example(p1);
    test_gemm(p1);
    test_no_fold(p2);
    test_edit(p1);
    test_zoo(p1, p2);
    qk_pool_destroy(p1);
    qk_pool_destroy(p2);
    return qt_finish("test_fold");
}
