/* QAT beyond the quantizers: the BN-folding operators of strategies 1-4
 * (gradients against finite differences, 1 vs 2 threads), each strategy's
 * training form against the numbers of docs/ALGORITHMS.md section 6 and by
 * finite differences through the whole conv + BN pair, the distillation
 * loss (a hand value, its gradient), and --widen on the zoo models (the
 * same function) with a refusal. */
#include "qkit/onnx.h"
#include "qkit/registry.h"
#include "qkit/ops.h"
#include "qkit/qat.h"
#include "../src/quant/qat_internal.h"
#include "gradcheck.h"
#include "qt.h"

#include <math.h>
#include <string.h>

static qk_pool *pool2;

/* ---- the BN-folding operators (qat_bn_op.c) ---- */

/* One operator on random inputs: y [4, 5, 3, 2] (or W [5, 3, 2, 2] for
 * QkBnFoldW), per-channel inputs [5]; gamma in [0.5, 1.5] (Unscale divides
 * by it), variances in [0.2, 2]. Every PARAM input checked against central
 * differences (smooth functions: no kinks to skip). Returns the node. */
static int bn_op_graph(qk_graph **gp, const char *op, int training_stats, qk_pool *pool, float *out_y, float *out_d)
{
    qk_graph *g;
    QT_OK(qk_graph_create(&g));
    qk_rng rng;
    qk_rng_seed(&rng, 11);
    int64_t yd[4] = { 4, 5, 3, 2 }, wd[4] = { 5, 3, 2, 2 }, c5 = 5;
    int in[7], nin = 0, nout = 1;
    int fold = strcmp(op, "QkBnFoldW") == 0, stats = strcmp(op, "QkBnStats") == 0;
    in[nin++] = gc_add(g, "y", 1, QK_F32, 4, fold ? wd : yd, NULL, &rng);
    int gam = gc_add(g, "gamma", 1, QK_F32, 1, &c5, NULL, NULL);
    gc_fill(&g->values[gam].t, &rng, 0.5f, 1.5f);
    if (fold) {
        in[nin++] = gam;
        in[nin++] = gc_add(g, "var", 1, QK_F32, 1, &c5, NULL, NULL);
        nout = 2;
    } else if (stats) {
        in[nin++] = gc_add(g, "mean", 0, QK_F32, 1, &c5, NULL, &rng);
        in[nin++] = gc_add(g, "var", 0, QK_F32, 1, &c5, NULL, NULL);
        nout = 2;
    } else if (strcmp(op, "QkBnAffine") == 0) {
        in[nin++] = gam;
        in[nin++] = gc_add(g, "beta", 1, QK_F32, 1, &c5, NULL, &rng);
        in[nin++] = gc_add(g, "mu", 1, QK_F32, 1, &c5, NULL, &rng);
        in[nin++] = gc_add(g, "var", 1, QK_F32, 1, &c5, NULL, NULL);
        in[nin++] = gc_add(g, "var_w", 1, QK_F32, 1, &c5, NULL, NULL);
        in[nin++] = gc_add(g, "b", 1, QK_F32, 1, &c5, NULL, &rng);
    } else {
        in[nin++] = gam;
        in[nin++] = gc_add(g, "var", 1, QK_F32, 1, &c5, NULL, NULL);
        in[nin++] = gc_add(g, "b", 1, QK_F32, 1, &c5, NULL, &rng);
    }
    for (int i = 0; i < g->n_values; i++)
        if (strncmp(g->values[i].name, "var", 3) == 0)
            gc_fill(&g->values[i].t, &rng, 0.2f, 2.0f);
    int k = gc_node(g, op, nin, in, nout);
    g->nodes[k].domain = qk_strdup("ai.qkit");
    qk_node_set_float(g, k, "eps", 1e-3f);
    if (fold)
        qk_node_set_int(g, k, "axis", 0);
    if (stats && !training_stats)
        qk_node_set_int(g, k, "frozen", 1);
    *gp = g;
    if (out_y) { /* one forward + backward with dy = 1 for the thread test */
        QT_OK(qk_ops_bind(g));
        QT_OK(qk_graph_plan(g, fold ? 5 : 4, 1, pool));
        QT_OK(qk_graph_forward(g));
        qk_node *nd = &g->nodes[k];
        for (int o = 0; o < nd->n_out; o++) {
            qk_value *v = &g->values[nd->out[o]];
            for (int64_t i = 0; i < qk_tensor_numel(&v->grad); i++)
                qk_f32(&v->grad)[i] = 0.25f + 0.01f * (float)i;
        }
        for (int i = 0; i < nd->n_in; i++)
            if (g->values[nd->in[i]].grad.data)
                memset(g->values[nd->in[i]].grad.data, 0, qk_tensor_bytes(&g->values[nd->in[i]].grad));
        QT_OK(nd->op->backward(&g->exec, nd));
        const qk_value *y = &g->values[nd->out[0]], *dy = &g->values[nd->in[0]];
        memcpy(out_y, y->t.data, qk_tensor_bytes(&y->t));
        memcpy(out_d, dy->grad.data, qk_tensor_bytes(&dy->grad));
    }
    return k;
}

static void test_bn_ops(void)
{
    static const char *ops[] = { "QkBnFoldW", "QkBnStats", "QkBnAffine", "QkBnUnscale" };
    for (int i = 0; i < 4; i++) {
        for (int mode = 1; mode >= (i == 1 ? 0 : 1); mode--) { /* Stats: batch, then frozen */
            qk_graph *g;
            int k = bn_op_graph(&g, ops[i], mode, NULL, NULL, NULL);
            gc_opts o = gc_defaults();
            o.tol = 2e-3;
            gc_result r;
            qk_status st = gc_check(g, k, &o, &r);
            QT_CHECK(st == QK_OK && (r.pass || (i == 1 && !mode)), "%s%s gradients vs finite differences: %s, worst "
                     "rel %g (input %d)", ops[i], mode ? "" : " frozen", qk_status_str(st), r.worst_rel, r.worst_input);
            if (i == 1 && !mode) { /* frozen: the running statistics pass through, no gradient into y */
                const float *mu = qk_f32(&g->values[g->nodes[k].out[0]].t), *rm = qk_f32(&g->values[g->nodes[k].in[1]].t);
                QT_CHECK(memcmp(mu, rm, 5 * sizeof *mu) == 0, "frozen QkBnStats passes the running mean");
            }
            qk_graph_destroy(g);
        }
        /* 1 vs 2 threads: identical bits, forward and backward */
        float y[2][240], d[2][240];
        for (int t = 0; t < 2; t++) {
            qk_graph *g;
            bn_op_graph(&g, ops[i], 1, t ? pool2 : NULL, y[t], d[t]);
            qk_graph_destroy(g);
        }
        size_t ny = (size_t)(i == 1 ? 5 : i == 0 ? 60 : 120) * sizeof(float), nd = (size_t)(i == 0 ? 60 : 120) * sizeof(float);
        QT_CHECK(memcmp(y[0], y[1], ny) == 0 && memcmp(d[0], d[1], nd) == 0, "%s: 1 and 2 threads give the same bits",
                 ops[i]);
    }
    /* section 6 check through QkBnAffine: W x = 0.5 * 1 - 1 * 0.5 = 0 without bias, b = 0.1, gamma 2,
     * beta 0.3, mu 0.2, var = var_w = 0.25: factor exactly 1, z = y + b_f with b_f = -0.1 */
    qk_graph *g;
    int k = bn_op_graph(&g, "QkBnAffine", 1, NULL, NULL, NULL);
    qk_node_set_float(g, k, "eps", 1e-12f);
    const float v[7] = { 0.0f, 2.0f, 0.3f, 0.2f, 0.25f, 0.25f, 0.1f }; /* y, gamma, beta, mu, var, var_w, b */
    for (int i = 0; i < 7; i++) {
        qk_tensor *t = &g->values[g->nodes[k].in[i]].t;
        for (int64_t e = 0; e < qk_tensor_numel(t); e++)
            qk_f32(t)[e] = v[i];
    }
    qk_f32(&g->values[g->nodes[k].in[0]].t)[7] = 0.7f;
    QT_OK(qk_ops_bind(g));
    QT_OK(qk_graph_plan(g, 4, 0, NULL));
    QT_OK(qk_graph_forward(g));
    const float *z = qk_f32(&g->values[g->nodes[k].out[0]].t);
    QT_NEAR(z[1], -0.1, 1e-7, "QkBnAffine: b_f = beta + (b - mu) gamma / sd = -0.1");
    float bf = (float)((double)0.3f + ((double)0.1f - (double)0.2f) * (2.0 / sqrt((double)0.25f + (double)1e-12f)));
    QT_CHECK(z[7] == 0.7f + bf && z[1] == bf, "QkBnAffine: factor exactly 1 when var_w == var, bias in double");
    qk_graph_destroy(g);
}

/* ---- the strategies' training forms (qat_bn.c) without quantizers ---- */

/* x [nb, cin, hw, hw] -> Conv(k x k, pad k/2; bias when b) -> BN (gamma, beta, mean, var) -> y,
 * then loss = ReduceSumSquare(y) (for the gradient check). */
static qk_graph *bn_pair_graph(int nb, int cin, int cout, int k, int hw, const float *w, const float *b,
                               const float *bn, float eps, int *loss)
{
    qk_graph *g;
    QT_OK(qk_graph_create(&g));
    int64_t xd[4] = { -1, cin, hw, hw }, wd[4] = { cout, cin, k, k }, c1 = cout;
    int x = qk_graph_add_input(g, "x", QK_F32, 4, xd);
    qk_tensor t;
    QT_OK(qk_tensor_alloc(&t, QK_F32, 4, wd));
    memcpy(t.data, w, qk_tensor_bytes(&t));
    int in[3] = { x, qk_graph_add_init(g, "w", QK_VALUE_PARAM, &t), -1 };
    if (b) {
        QT_OK(qk_tensor_alloc(&t, QK_F32, 1, &c1));
        memcpy(t.data, b, (size_t)cout * sizeof(float));
        in[2] = qk_graph_add_init(g, "b", QK_VALUE_PARAM, &t);
    }
    int c = qk_graph_add_value(g, "c", QK_VALUE_ACT), y = qk_graph_add_value(g, "y", QK_VALUE_ACT);
    int kc = qk_graph_add_node(g, "Conv", "conv", b ? 3 : 2, in, 1, &c);
    int64_t pads[4] = { k / 2, k / 2, k / 2, k / 2 };
    qk_node_set_ints(g, kc, "pads", 4, pads);
    static const char *nm[4] = { "gamma", "beta", "mean", "var" };
    int bin[5] = { c };
    for (int i = 0; i < 4; i++) {
        QT_OK(qk_tensor_alloc(&t, QK_F32, 1, &c1));
        memcpy(t.data, bn + i * cout, (size_t)cout * sizeof(float));
        bin[i + 1] = qk_graph_add_init(g, nm[i], i < 2 ? QK_VALUE_PARAM : QK_VALUE_CONST, &t);
    }
    int kb = qk_graph_add_node(g, "BatchNormalization", "bn", 5, bin, 1, &y);
    qk_node_set_float(g, kb, "epsilon", eps);
    qk_graph_add_output(g, y);
    /* loss = sum(y * R), R fixed N(0, 1) [nb, cout, hw, hw] (a sum of squares would not
     * depend on W under batch normalisation) */
    int64_t rd[4] = { nb, cout, hw, hw };
    QT_OK(qk_tensor_alloc(&t, QK_F32, 4, rd));
    qk_rng rng;
    qk_rng_seed(&rng, 9);
    for (int64_t i = 0; i < qk_tensor_numel(&t); i++)
        qk_f32(&t)[i] = qk_rng_normal(&rng);
    int mr[2] = { y, qk_graph_add_init(g, "r", QK_VALUE_CONST, &t) }, yr = qk_graph_add_value(g, "yr", QK_VALUE_ACT);
    qk_graph_add_node(g, "Mul", "mul", 2, mr, 1, &yr);
    *loss = qk_graph_add_value(g, "loss", QK_VALUE_ACT);
    int kl = qk_graph_add_node(g, "ReduceSum", "sum", 1, &yr, 1, loss);
    qk_node_set_int(g, kl, "keepdims", 0);
    qk_graph_add_output(g, *loss);
    QT_OK(qk_ops_bind(g));
    return g;
}

static float *val(qk_graph *g, const char *name)
{
    int v = qk_graph_find_value(g, name);
    return v >= 0 ? qk_f32(&g->values[v].t) : NULL;
}

/* docs/ALGORITHMS.md section 6 check: W = 0.5, b = 0, gamma 2, beta 0.3, mu 0.2, var 1, eps 0 (1e-12),
 * batch x = [1, 3]: S2-S4 give the training-mode BN output [-1.7, 2.3], S1 [0.9, 2.9]; the running
 * statistics become 0.28 / 0.95 (S1: unchanged); converted without a step: W_f = 1, b_f = -0.1.
 * Then each strategy's gradients (W, b, gamma, beta) against central differences on a 3x3 conv. */
static void test_bn_strategy_forms(void)
{
    const float w1 = 0.5f, bn1[4] = { 2.0f, 0.3f, 0.2f, 1.0f }, x1[2] = { 1.0f, 3.0f };
    for (int S = 1; S <= 4; S++) {
        for (int step = 1; step >= 0; step--) {
            int loss;
            qk_graph *g = bn_pair_graph(2, 1, 1, 1, 1, &w1, NULL, bn1, 1e-12f, &loss);
            qk_qat_bn *bn = NULL;
            int nf = 0;
            QT_OK(qk_qat_bn_fold_(g, S, &bn, &nf));
            QT_OK(qk_qat_bn_install_(bn, g));
            QT_OK(qk_ops_bind(g));
            if (step) {
                QT_OK(qk_graph_plan(g, 2, 1, NULL));
                memcpy(g->values[g->inputs[0]].t.data, x1, sizeof x1);
                QT_OK(qk_graph_forward(g));
                const float *y = val(g, "y"), *m = val(g, "mean"), *v = val(g, "var");
                double e0 = S == 1 ? 0.9 : -1.7, e1 = S == 1 ? 2.9 : 2.3;
                QT_CHECK(y && fabs(y[0] - e0) < 1e-5 && fabs(y[1] - e1) < 1e-5, "S%d training output [%g, %g] "
                         "(expected [%g, %g])", S, y ? (double)y[0] : 0.0, y ? (double)y[1] : 0.0, e0, e1);
                QT_CHECK(m && v && fabs(m[0] - (S == 1 ? 0.2 : 0.28)) < 1e-6 && fabs(v[0] - (S == 1 ? 1.0 : 0.95)) < 1e-6,
                         "S%d running statistics after the step %g, %g", S, m ? (double)m[0] : 0.0,
                         v ? (double)v[0] : 0.0);
            } else {
                QT_OK(qk_qat_bn_finish_(bn, g));
                int k = qk_graph_find_node(g, "conv");
                int extra = g->n_nodes != 3;
                const float *wf = k >= 0 ? qk_f32(&g->values[g->nodes[k].in[1]].t) : NULL;
                const float *bf = k >= 0 && g->nodes[k].n_in == 3 ? qk_f32(&g->values[g->nodes[k].in[2]].t) : NULL;
                QT_CHECK(extra == 0 && wf && bf && fabsf(wf[0] - 1.0f) < 1e-6f && fabsf(bf[0] + 0.1f) < 1e-6f,
                         "S%d converts to W_f = 1, b_f = -0.1 (%d nodes)", S, g->n_nodes);
            }
            qk_qat_bn_free_(bn);
            qk_graph_destroy(g);
        }
    }
    /* gradients: 2 -> 3 channels, 3x3, 4x4 images, batch 3, with a conv bias */
    qk_rng rng;
    qk_rng_seed(&rng, 3);
    float w[54], b[3], bnp[12], x[96];
    for (int i = 0; i < 54; i++)
        w[i] = 0.4f * qk_rng_normal(&rng);
    for (int i = 0; i < 3; i++) {
        b[i] = 0.2f * qk_rng_normal(&rng);
        bnp[i] = 0.5f + qk_rng_uniform(&rng);
        bnp[3 + i] = 0.3f * qk_rng_normal(&rng);
        bnp[6 + i] = 0.3f * qk_rng_normal(&rng);
        bnp[9 + i] = 0.5f + 1.5f * qk_rng_uniform(&rng);
    }
    for (int i = 0; i < 96; i++)
        x[i] = qk_rng_normal(&rng);
    static const char *pn[4] = { "w_qat_unfolded", "b_qat_unfolded", "gamma", "beta" };
    for (int S = 1; S <= 4; S++) {
        int loss;
        qk_graph *g = bn_pair_graph(3, 2, 3, 3, 4, w, b, bnp, 1e-5f, &loss);
        qk_qat_bn *bn = NULL;
        int nf = 0;
        QT_OK(qk_qat_bn_fold_(g, S, &bn, &nf));
        QT_OK(qk_qat_bn_install_(bn, g));
        QT_OK(qk_ops_bind(g));
        QT_OK(qk_graph_plan(g, 3, 1, NULL));
        loss = qk_graph_find_value(g, "loss"); /* folding renumbered the values */
        float *rm = val(g, "mean"), *rv = val(g, "var"), m0[3], v0[3];
        memcpy(m0, rm, sizeof m0);
        memcpy(v0, rv, sizeof v0);
        memcpy(g->values[g->inputs[0]].t.data, x, sizeof x);
        QT_OK(qk_graph_forward(g));
        QT_OK(qk_graph_backward(g, loss));
        double worst = 0;
        for (int p = 0; p < 4; p++) {
            int v = qk_graph_find_value(g, pn[p]);
            if (v < 0) {
                QT_CHECK(0, "S%d: value %s", S, pn[p]);
                continue;
            }
            int64_t n = qk_tensor_numel(&g->values[v].t);
            float *pv = qk_f32(&g->values[v].t), ga[64];
            memcpy(ga, g->values[v].grad.data, (size_t)n * sizeof(float));
            for (int64_t e = 0; e < n; e++) {
                double L[2];
                float keep = pv[e], h = 1e-3f;
                for (int sgn = 0; sgn < 2; sgn++) {
                    pv[e] = keep + (sgn ? h : -h);
                    memcpy(rm, m0, sizeof m0); /* the running statistics as in the analytic pass */
                    memcpy(rv, v0, sizeof v0);
                    QT_OK(qk_graph_forward(g));
                    L[sgn] = qk_f32(&g->values[loss].t)[0];
                }
                pv[e] = keep;
                double num = (L[1] - L[0]) / (2.0 * h), r = fabs(num - ga[e]) / fmax(1.0, fabs(num));
                worst = r > worst ? r : worst;
            }
        }
        QT_CHECK(worst < 2e-2, "S%d: W, b, gamma, beta gradients vs finite differences (worst rel %g)", S, worst);
        qk_qat_bn_free_(bn);
        qk_graph_destroy(g);
    }
}

/* --widen K: the widened zoo models compute what the originals do (random
 * inputs, batch 3), with K times the channels in the first conv. */
static int run_model(qk_graph *g, const float *x, int64_t nx, float *y, int64_t *ny)
{
    if (qk_graph_plan(g, 3, 0, NULL) != QK_OK)
        return 0;
    qk_value *in = &g->values[g->inputs[0]], *out = &g->values[g->outputs[0]];
    if (qk_tensor_numel(&in->t) != nx)
        return 0;
    memcpy(in->t.data, x, (size_t)nx * sizeof *x);
    if (qk_graph_forward(g) != QK_OK)
        return 0;
    *ny = qk_tensor_numel(&out->t);
    memcpy(y, out->t.data, (size_t)*ny * sizeof *y);
    return 1;
}

static void test_widen(void)
{
    static const char *models[] = { "models/lenet.onnx", "models/resnet8.onnx", "models/mobilenetv2s.onnx" };
    static float x[3 * 28 * 28], y0[64], y1[64];
    qk_rng rng;
    qk_rng_seed(&rng, 4);
    for (int i = 0; i < 3 * 28 * 28; i++)
        x[i] = qk_rng_normal(&rng);
    for (int m = 0; m < 3; m++)
        for (int K = 2; K <= 3; K++) {
            qk_graph *a = NULL, *b = NULL;
            if (qk_onnx_load(models[m], &a) != QK_OK || qk_onnx_load(models[m], &b) != QK_OK) {
                QT_CHECK(0, "load %s", models[m]);
                qk_graph_destroy(a);
                qk_graph_destroy(b);
                continue;
            }
            int nw = 0;
            QT_OK(qk_qat_widen_(b, K, &nw));
            int64_t n0 = 0, n1 = 0;
            int ok = run_model(a, x, 3 * 28 * 28, y0, &n0) && run_model(b, x, 3 * 28 * 28, y1, &n1) && n0 == n1;
            double worst = 0, big = 0;
            for (int64_t i = 0; ok && i < n0; i++) {
                worst = fmax(worst, fabs((double)y0[i] - y1[i]));
                big = fmax(big, fabs((double)y0[i]));
            }
            int c1 = -1;
            for (int k = 0; k < b->n_nodes && c1 < 0; k++)
                if (qk_node_is(&b->nodes[k], "Conv"))
                    c1 = k;
            int64_t m0 = c1 >= 0 ? b->values[b->nodes[c1].in[1]].t.dims[0] : 0;
            int64_t ma = c1 >= 0 ? a->values[a->nodes[c1].in[1]].t.dims[0] : -1;
            QT_CHECK(ok && worst <= 1e-4 * fmax(1.0, big) && nw > 0 && m0 == K * ma,
                     "%s --widen %d: %d layers widened (first conv %lld -> %lld channels), same output (max diff %g)",
                     models[m], K, nw, (long long)ma, (long long)m0, worst);
            qk_graph_destroy(a);
            qk_graph_destroy(b);
        }
    /* a structure it cannot widen: refused, graph unchanged */
    qk_graph *g;
    QT_OK(qk_graph_create(&g));
    int64_t xd[4] = { -1, 1, 4, 4 }, wd[4] = { 2, 1, 1, 1 }, wd2[4] = { 3, 4, 1, 1 };
    int xi = qk_graph_add_input(g, "x", QK_F32, 4, xd);
    qk_tensor t;
    QT_OK(qk_tensor_alloc(&t, QK_F32, 4, wd));
    int in1[2] = { xi, qk_graph_add_init(g, "w1", QK_VALUE_PARAM, &t) };
    QT_OK(qk_tensor_alloc(&t, QK_F32, 4, wd2));
    int c = qk_graph_add_value(g, "c", QK_VALUE_ACT), cc = qk_graph_add_value(g, "cc", QK_VALUE_ACT);
    int y = qk_graph_add_value(g, "y", QK_VALUE_ACT), cat[2] = { c, c };
    int in2[2] = { cc, qk_graph_add_init(g, "w2", QK_VALUE_PARAM, &t) };
    qk_graph_add_node(g, "Conv", "conv1", 2, in1, 1, &c);
    int k = qk_graph_add_node(g, "Concat", "cat", 2, cat, 1, &cc);
    qk_node_set_int(g, k, "axis", 1);
    qk_graph_add_node(g, "Conv", "conv2", 2, in2, 1, &y);
    qk_graph_add_output(g, y);
    QT_OK(qk_ops_bind(g));
    int nw = 0;
    qk_status st = qk_qat_widen_(g, 2, &nw);
    QT_CHECK(st == QK_ERR_UNSUPPORTED && strstr(qk_last_error(), "cat") && g->values[in1[1]].t.dims[0] == 2,
             "--widen through a Concat: refused, unchanged (%s)", qk_last_error());
    qk_graph_destroy(g);
}

/* QkDistillLoss: a hand value (T = 2, w = 0.5: p_t = [0.75, 0.25], p_s =
 * [0.5, 0.5], KL = 0.75 ln 1.5 + 0.25 ln 0.5 = 0.130812, loss = w T^2 KL)
 * and the student gradient against finite differences. */
static void test_distill_loss(void)
{
    for (int pass = 0; pass < 2; pass++) {
        qk_graph *g;
        QT_OK(qk_graph_create(&g));
        qk_rng rng;
        qk_rng_seed(&rng, 5);
        int64_t d[2] = { pass ? 6 : 1, pass ? 10 : 2 };
        const float s0[2] = { 0.0f, 0.0f }, t0[2] = { 2.0f * logf(3.0f), 0.0f };
        int in[2] = { gc_add(g, "student", 1, QK_F32, 2, d, pass ? NULL : s0, &rng),
                      gc_add(g, "teacher", 0, QK_F32, 2, d, pass ? NULL : t0, &rng) };
        if (pass)
            gc_fill(&g->values[in[1]].t, &rng, 3.0f, 3.0f);
        int k = gc_node(g, "QkDistillLoss", 2, in, 1);
        g->nodes[k].domain = qk_strdup("ai.qkit");
        qk_node_set_float(g, k, "T", pass ? 3.0f : 2.0f);
        qk_node_set_float(g, k, "w", 0.5f);
        if (!pass) {
            QT_OK(qk_ops_bind(g));
            QT_OK(qk_graph_plan(g, 1, 0, NULL));
            QT_OK(qk_graph_forward(g));
            double kl = 0.75 * log(1.5) + 0.25 * log(0.5);
            QT_NEAR(qk_f32(&g->values[g->nodes[k].out[0]].t)[0], 0.5 * 4 * kl, 1e-6, "distillation loss w T^2 KL");
        } else {
            gc_opts o = gc_defaults();
            o.tol = 2e-3;
            gc_result r;
            qk_status st = gc_check(g, k, &o, &r);
            QT_CHECK(st == QK_OK && r.pass, "QkDistillLoss d student vs finite differences: worst rel %g",
                     r.worst_rel);
        }
        qk_graph_destroy(g);
    }
}

int main(void)
{
    QT_OK(qk_pool_create(2, &pool2));
    test_bn_ops();
    test_bn_strategy_forms();
    test_distill_loss();
    test_widen();
    qk_pool_destroy(pool2);
    return qt_finish("test_qat_bn");
}
