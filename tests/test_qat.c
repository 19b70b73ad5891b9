/* QAT: the learnable quantizer operator (docs/ALGORITHMS.md section 4
 * numeric checks, gradients against finite differences of each
 * estimator's surrogate in double, 1 vs 2 threads), the pipeline (lenet
 * W4A4 lsq improves on its PTQ start, the QDQ file deploys with a gap <=
 * 0.1 points at W8A8 tensorrt, exact resume, the divergence guard) and
 * the CLI's refusals. */
#include "qkit/onnx.h"
#include "qkit/registry.h"
#include "qkit/ops.h"
#include "qkit/qat.h"
#include "qkit/train.h"
#include "../src/quant/qat_internal.h"
#include "qt.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

static qk_pool *pool2;

/* ---- one QkLearnQuant node ---- */
typedef struct lq_case {
    qk_qat_algo algo;
    int bits, is_signed, symmetric, narrow, axis, weight, gs, paper, training;
    int qn, qp;               /* 0, 0: the scheme's range */
    int round, reference;     /* qk_round; 1: portable loops (no AVX-512) */
    int ndim;
    int64_t dims[4];
    const float *x, *P, *S;   /* P/S NULL: absent */
    int64_t np, ns;
    const float *dy;          /* NULL: no backward */
    qk_pool *pool;
} lq_case;

typedef struct lq_out {
    float y[4096], dx[4096], dp[64];
} lq_out;

static int lq_run(const lq_case *c, lq_out *o)
{
    qk_graph *g;
    if (qk_graph_create(&g) != QK_OK)
        return 0;
    int64_t n = 1;
    for (int d = 0; d < c->ndim; d++)
        n *= c->dims[d];
    qk_tensor t;
    qk_tensor_alloc(&t, QK_F32, c->ndim, c->dims);
    memcpy(t.data, c->x, (size_t)n * sizeof(float));
    int in[3] = { qk_graph_add_init(g, "x", QK_VALUE_PARAM, &t), -1, -1 };
    if (c->P) {
        qk_tensor_alloc(&t, QK_F32, 1, &c->np);
        memcpy(t.data, c->P, (size_t)c->np * sizeof(float));
        in[1] = qk_graph_add_init(g, "p", QK_VALUE_PARAM, &t);
    }
    if (c->S) {
        qk_tensor_alloc(&t, QK_F32, 1, &c->ns);
        memcpy(t.data, c->S, (size_t)c->ns * sizeof(float));
        in[2] = qk_graph_add_init(g, "s", QK_VALUE_CONST, &t);
    }
    int y = qk_graph_add_value(g, "y", QK_VALUE_ACT);
    int k = qk_graph_add_node(g, "QkLearnQuant", "lq", 3, in, 1, &y);
    g->nodes[k].domain = qk_strdup("ai.qkit");
    qk_graph_add_output(g, y);
    qk_node_set_int(g, k, "algo", c->algo);
    qk_node_set_int(g, k, "bits", c->bits);
    qk_node_set_int(g, k, "signed", c->is_signed);
    qk_node_set_int(g, k, "symmetric", c->symmetric);
    qk_node_set_int(g, k, "narrow", c->narrow);
    qk_node_set_int(g, k, "axis", c->axis);
    qk_node_set_int(g, k, "weight", c->weight);
    qk_node_set_int(g, k, "gs", c->gs);
    qk_node_set_int(g, k, "paper", c->paper);
    qk_node_set_int(g, k, "round", c->round);
    qk_plan_options po = g->opts;
    po.reference = c->reference;
    qk_graph_set_options(g, &po);
    if (c->qn || c->qp) {
        qk_node_set_int(g, k, "qn", c->qn);
        qk_node_set_int(g, k, "qp", c->qp);
    }
    int ok = 0;
    qk_status st = qk_ops_bind(g);
    if (st == QK_OK)
        st = qk_graph_plan(g, c->ndim ? c->dims[0] : 1, c->dy != NULL || c->training, c->pool);
    if (st == QK_OK)
        st = qk_graph_forward(g);
    if (st == QK_OK) {
        memcpy(o->y, g->values[y].t.data, (size_t)n * sizeof(float));
        ok = 1;
    }
    if (st == QK_OK && c->dy) {
        qk_node *nd = &g->nodes[k];
        memcpy(g->values[y].grad.data, c->dy, (size_t)n * sizeof(float));
        memset(g->values[in[0]].grad.data, 0, (size_t)n * sizeof(float));
        if (in[1] >= 0)
            memset(g->values[in[1]].grad.data, 0, (size_t)c->np * sizeof(float));
        st = nd->op->backward(&g->exec, nd);
        memcpy(o->dx, g->values[in[0]].grad.data, (size_t)n * sizeof(float));
        if (in[1] >= 0)
            memcpy(o->dp, g->values[in[1]].grad.data, (size_t)c->np * sizeof(float));
        ok = st == QK_OK;
    }
    if (st != QK_OK)
        fprintf(stderr, "lq_run: %s\n", qk_last_error());
    qk_graph_destroy(g);
    return ok;
}

/* ---- ALGORITHMS.md section 4 numeric checks ---- */

static void test_pact_values(void)
{
    float x[5] = { -1, 0.3f, 0.9f, 1.7f, 2.5f }, P[1] = { 2 }, dy[5] = { 1, 1, 1, 1, 1 };
    lq_case c = { .algo = QK_QAT_PACT, .bits = 2, .ndim = 1, .dims = { 5 }, .x = x, .P = P, .np = 1, .dy = dy,
                  .axis = -1 };
    lq_out o;
    QT_CHECK(lq_run(&c, &o), "pact run");
    const float ey[5] = { 0, 0, 2.0f / 3, 2, 2 }, edx[5] = { 0, 1, 1, 1, 0 };
    for (int i = 0; i < 5; i++) {
        QT_NEAR(o.y[i], ey[i], 1e-6, "pact y");
        QT_NEAR(o.dx[i], edx[i], 0, "pact dx");
    }
    QT_NEAR(o.dp[0], 1.0, 0, "pact d alpha (only x = 2.5 saturates)");
}

static void test_lsq_values(void)
{
    /* s = 0.5, 4-bit signed full range (Qn 8, Qp 7): one channel per value */
    float v[6] = { -5, -0.6f, 0.1f, 0.74f, 1.3f, 3.6f }, P[6], dy[6];
    for (int i = 0; i < 6; i++)
        P[i] = 0.5f, dy[i] = 1;
    lq_case c = { .algo = QK_QAT_LSQ, .bits = 4, .is_signed = 1, .symmetric = 1, .ndim = 2, .dims = { 6, 1 },
                  .x = v, .P = P, .np = 6, .dy = dy, .axis = 0, .weight = 1 };
    lq_out o;
    QT_CHECK(lq_run(&c, &o), "lsq run");
    const float ey[6] = { -4, -0.5f, 0, 0.5f, 1.5f, 3.5f }, eds[6] = { -8, 0.2f, -0.2f, -0.48f, 0.4f, 7 };
    for (int i = 0; i < 6; i++) {
        QT_NEAR(o.y[i], ey[i], 1e-6, "lsq y");
        QT_NEAR(o.dp[i], eds[i], 1e-6, "lsq dy/ds");
    }
    /* gradient scale g = 1/sqrt(N Qp): w = [0.3, -0.25, 0.1, 0.05], b = 4 -> 0.188982 */
    float w[4] = { 0.3f, -0.25f, 0.1f, 0.05f }, s1[1] = { 0.132288f }, d4[4] = { 1, 1, 1, 1 };
    lq_case d = { .algo = QK_QAT_LSQ, .bits = 4, .is_signed = 1, .symmetric = 1, .ndim = 2, .dims = { 1, 4 },
                  .x = w, .P = s1, .np = 1, .dy = d4, .axis = 0, .weight = 1 };
    lq_out a, b;
    QT_CHECK(lq_run(&d, &a), "lsq gs off");
    d.gs = 1;
    QT_CHECK(lq_run(&d, &b), "lsq gs on");
    QT_NEAR(b.dp[0] / a.dp[0], 0.188982, 1e-6, "lsq gradient scale");
    double mabs = (0.3 + 0.25 + 0.1 + 0.05) / 4;
    QT_NEAR(2 * mabs / sqrt(7.0), 0.132288, 1e-6, "lsq init 2 mean|w|/sqrt(Qp)");
}

static void test_dorefa_values(void)
{
    float w[5] = { -1, -0.2f, 0.05f, 0.5f, 2 };
    lq_case c = { .algo = QK_QAT_DOREFA, .bits = 2, .is_signed = 1, .symmetric = 1, .ndim = 2, .dims = { 1, 5 },
                  .x = w, .axis = 0, .weight = 1, .paper = 1 };
    lq_out o;
    QT_CHECK(lq_run(&c, &o), "dorefa k=2");
    const float e2[5] = { -1, -1.0f / 3, 1.0f / 3, 1.0f / 3, 1 }, e1[5] = { -0.75f, -0.75f, 0.75f, 0.75f, 0.75f };
    for (int i = 0; i < 5; i++)
        QT_NEAR(o.y[i], e2[i], 1e-6, "dorefa k=2");
    c.bits = 1;
    QT_CHECK(lq_run(&c, &o), "dorefa k=1");
    for (int i = 0; i < 5; i++)
        QT_NEAR(o.y[i], e1[i], 1e-6, "dorefa k=1");
    /* the deployable form: tanh(w)/max|tanh| on the profile's grid (4-bit narrow: s = 1/7) */
    c.bits = 4;
    c.narrow = 1;
    c.paper = 0;
    QT_CHECK(lq_run(&c, &o), "dorefa grid");
    double m = tanh(2.0);
    for (int i = 0; i < 5; i++)
        QT_NEAR(o.y[i], qk_round_double(7 * tanh((double)w[i]) / m, QK_ROUND_HALF_EVEN) / 7, 1e-6, "dorefa grid");
}

static void test_dsq_values(void)
{
    const double u[3] = { 0.2, 0.5, 0.9 }, qs[3] = { 0.1721, 0.5, 0.9199 }, sl[3] = { 0.9764, 1.1552, 0.8619 };
    for (int i = 0; i < 3; i++) {
        double soft, slope;
        qk_qat_dsq(u[i], 0.4, &soft, &slope);
        QT_NEAR(soft, qs[i], 1e-4, "dsq soft value");
        QT_NEAR(slope, sl[i], 1e-4, "dsq slope");
    }
    QT_NEAR(log(2 / 0.4 - 1), 1.386294, 1e-6, "dsq k");
}

static void test_ste_rounding(void)
{
    /* section 1: uint8 asymmetric range [-1, 2], RNE; the EMA state is the range */
    float x[6] = { -1, -0.5f, 0, 0.3f, 0.7f, 2 }, S[2] = { -1, 2 };
    lq_case c = { .algo = QK_QAT_STE, .bits = 8, .ndim = 1, .dims = { 6 }, .x = x, .S = S, .ns = 2, .axis = -1 };
    lq_out o;
    QT_CHECK(lq_run(&c, &o), "ste run");
    /* 0.7 / s is 59.499998 in float32 division (the ONNX QuantizeLinear the QDQ file
       runs), so code 144 where x * (1/s) gives the tie 59.5 -> 145 (quant.h) */
    const double e[6] = { -1.0, -0.494118, 0.0, 0.305882, 0.694118, 2.0 };
    for (int i = 0; i < 6; i++)
        QT_NEAR(o.y[i], e[i], 1e-6, "ste uint8 asym RNE");
    /* training forward moves the EMA range (0.9 old + 0.1 batch), eval does not */
    float x2[2] = { -3, 5 }, S2[2] = { -1, 2 };
    lq_case t = { .algo = QK_QAT_STE, .bits = 8, .ndim = 1, .dims = { 2 }, .x = x2, .S = S2, .ns = 2, .axis = -1,
                  .training = 1 };
    QT_CHECK(lq_run(&t, &o), "ste training");
    QT_NEAR(o.y[1], 0.9 * 2 + 0.1 * 5, 0.02, "ste EMA max used in training forward");
}

static void test_tqt_values(void)
{
    float x[3] = { 1.0f, 3.0f, -0.3f }, P[1] = { 0.6f }, dy[3] = { 1, 0, 0 };
    /* log2 t = 0.6 -> ceil 1 -> s = 2 / 2^7 */
    lq_case c = { .algo = QK_QAT_TQT, .bits = 8, .is_signed = 1, .symmetric = 1, .ndim = 1, .dims = { 3 }, .x = x,
                  .P = P, .np = 1, .dy = dy, .axis = -1 };
    lq_out o;
    QT_CHECK(lq_run(&c, &o), "tqt run");
    QT_NEAR(o.y[0], 1.0, 0, "tqt y");
    QT_NEAR(o.y[1], 127.0 / 64, 0, "tqt saturates at qp s");
    float dy2[3] = { 0, 1, 0 };
    c.dy = dy2;
    QT_CHECK(lq_run(&c, &o), "tqt run 2");
    QT_NEAR(o.dp[0], log(2.0) * 127.0 / 64, 1e-5, "tqt d/dlog2t = ln2 s qp when clipped");
}

/* ---- gradients against finite differences of the surrogates (double) ---- */

static double frac_off(double u) { return qk_round_double(u, QK_ROUND_HALF_EVEN) - u; }

static void test_gradients(void)
{
    qk_rng r;
    qk_rng_seed(&r, 3);
    enum { N = 64 };
    float x[N], dy[N];
    double delta[N];
    for (int i = 0; i < N; i++) {
        dy[i] = qk_rng_normal(&r);
        do
            x[i] = 3.0f * qk_rng_normal(&r);
        while (fabs(frac_off(x[i] / 0.37) ) > 0.45 || fabs(x[i]) < 0.05); /* away from rounding ties */
    }
    const double h = 1e-4;
    /* LSQ: d/ds of sum dy * s (clamp(u + delta) ), delta frozen; d/dx */
    {
        float P[1] = { 0.37f };
        lq_case c = { .algo = QK_QAT_LSQ, .bits = 4, .is_signed = 1, .symmetric = 1, .ndim = 1, .dims = { N },
                      .x = x, .P = P, .np = 1, .dy = dy, .axis = -1 };
        lq_out o;
        QT_CHECK(lq_run(&c, &o), "lsq grad run");
        for (int i = 0; i < N; i++)
            delta[i] = frac_off((double)x[i] / P[0]);
        double Lp = 0, Lm = 0;
        for (int sgn = -1; sgn <= 1; sgn += 2) {
            double s = P[0] + sgn * h, L = 0;
            for (int i = 0; i < N; i++) {
                double u = x[i] / P[0], q = u > -8 && u < 7 ? x[i] / s + delta[i] : u <= -8 ? -8 : 7;
                L += dy[i] * s * q;
            }
            *(sgn < 0 ? &Lm : &Lp) = L;
        }
        QT_NEAR(o.dp[0], (Lp - Lm) / (2 * h), 1e-3 * (1 + fabs(o.dp[0])), "lsq ds vs finite differences");
        int bad = 0;
        for (int i = 0; i < N; i++) {
            double u = x[i] / P[0];
            bad += o.dx[i] != (u > -8 && u < 7 ? dy[i] : 0.0f);
        }
        QT_CHECK(bad == 0, "lsq dx: clipped STE (%d wrong)", bad);
    }
    /* TQT: s(p) = 2^p / 2^(b-1) continuous surrogate of the ceil */
    {
        float P[1] = { 1.0f };
        lq_case c = { .algo = QK_QAT_TQT, .bits = 4, .is_signed = 1, .symmetric = 1, .ndim = 1, .dims = { N },
                      .x = x, .P = P, .np = 1, .dy = dy, .axis = -1 };
        lq_out o;
        QT_CHECK(lq_run(&c, &o), "tqt grad run");
        double s0 = 2.0 / 8;
        for (int i = 0; i < N; i++)
            delta[i] = frac_off(x[i] / s0);
        double L[2];
        for (int k = 0; k < 2; k++) {
            double s = pow(2.0, 1.0 + (k ? h : -h)) / 8, acc = 0;
            for (int i = 0; i < N; i++) {
                double u = x[i] / s0, q = u > -8 && u < 7 ? x[i] / s + delta[i] : u <= -8 ? -8 : 7;
                acc += dy[i] * s * q;
            }
            L[k] = acc;
        }
        QT_NEAR(o.dp[0], (L[1] - L[0]) / (2 * h), 1e-3 * (1 + fabs(o.dp[0])), "tqt dlog2t vs finite differences");
    }
    /* PACT: s frozen: sum dy * clip(x, 0, alpha) */
    {
        float P[1] = { 2.3f };
        lq_case c = { .algo = QK_QAT_PACT, .bits = 4, .ndim = 1, .dims = { N }, .x = x, .P = P, .np = 1, .dy = dy,
                      .axis = -1 };
        lq_out o;
        QT_CHECK(lq_run(&c, &o), "pact grad run");
        double L[2];
        for (int k = 0; k < 2; k++) {
            double a = 2.3 + (k ? h : -h), acc = 0;
            for (int i = 0; i < N; i++)
                acc += dy[i] * (x[i] < 0 ? 0 : x[i] > a ? a : x[i]);
            L[k] = acc;
        }
        QT_NEAR(o.dp[0], (L[1] - L[0]) / (2 * h), 1e-3 * (1 + fabs(o.dp[0])), "pact dalpha vs finite differences");
    }
    /* DSQ: dx vs finite differences of s Q_S(x / s) inside the range */
    {
        float S[2] = { -4, 4 }, xs[N];
        for (int i = 0; i < N; i++)
            xs[i] = x[i] > 3.9f ? 3.9f : x[i] < -3.9f ? -3.9f : x[i];
        lq_case c = { .algo = QK_QAT_DSQ, .bits = 4, .is_signed = 1, .symmetric = 1, .narrow = 1, .ndim = 1,
                      .dims = { N }, .x = xs, .S = S, .ns = 2, .dy = dy, .axis = -1 };
        lq_out o;
        QT_CHECK(lq_run(&c, &o), "dsq grad run");
        float sf;
        int32_t zf;
        qk_qparams p = { .bits = 4, .is_signed = 1, .symmetric = 1, .narrow = 1 };
        float bmin = xs[0], bmax = xs[0];
        for (int i = 1; i < N; i++)
            bmin = fminf(bmin, xs[i]), bmax = fmaxf(bmax, xs[i]);
        /* the training forward moved the EMA range first */
        qk_qparams_compute(&p, 0.9f * -4 + 0.1f * bmin, 0.9f * 4 + 0.1f * bmax, &sf, &zf);
        double worst = 0;
        for (int i = 0; i < N; i++) {
            double a, b;
            qk_qat_dsq((xs[i] + h) / sf, 0.4, &a, NULL);
            qk_qat_dsq((xs[i] - h) / sf, 0.4, &b, NULL);
            double num = dy[i] * sf * (a - b) / (2 * h);
            double e = fabs(num - o.dx[i]) / (1 + fabs(num));
            worst = e > worst ? e : worst;
        }
        QT_CHECK(worst < 1e-3, "dsq dx vs finite differences: worst rel err %g", worst);
    }
    /* DoReFa weights: dx of tanh(x)/max|tanh| (the max term included) */
    {
        float w[16], d[16];
        for (int i = 0; i < 16; i++) {
            w[i] = 0.8f * qk_rng_normal(&r);
            d[i] = qk_rng_normal(&r);
        }
        lq_case c = { .algo = QK_QAT_DOREFA, .bits = 8, .is_signed = 1, .symmetric = 1, .narrow = 1, .ndim = 2,
                      .dims = { 1, 16 }, .x = w, .dy = d, .axis = 0, .weight = 1 };
        lq_out o;
        QT_CHECK(lq_run(&c, &o), "dorefa grad run");
        double worst = 0;
        for (int j = 0; j < 16; j++) {
            double L[2];
            for (int k = 0; k < 2; k++) {
                double wj = w[j] + (k ? h : -h), m = 0, acc = 0;
                for (int i = 0; i < 16; i++)
                    m = fmax(m, fabs(tanh(i == j ? wj : w[i])));
                for (int i = 0; i < 16; i++)
                    acc += d[i] * tanh(i == j ? wj : w[i]) / m;
                L[k] = acc;
            }
            double num = (L[1] - L[0]) / (2 * h), e = fabs(num - o.dx[j]) / (1 + fabs(num));
            worst = e > worst ? e : worst;
        }
        QT_CHECK(worst < 1e-3, "dorefa dx vs finite differences: worst rel err %g", worst);
    }
    /* LSQ+: the learned zero point gets -s where clamped, 0 inside */
    {
        float P[2] = { 0.37f, 3.2f }, dyl[N];
        for (int i = 0; i < N; i++)
            dyl[i] = 1;
        lq_case c = { .algo = QK_QAT_LSQ_PLUS, .bits = 4, .ndim = 1, .dims = { N }, .x = x, .P = P, .np = 2,
                      .dy = dyl, .axis = -1 };
        lq_out o;
        QT_CHECK(lq_run(&c, &o), "lsq+ grad run");
        int clamped = 0;
        for (int i = 0; i < N; i++) {
            double u = (double)(x[i] / 0.37f) + 3; /* LSQ's mask: the unrounded value */
            clamped += u <= 0 || u >= 15;
        }
        QT_NEAR(o.dp[1], -0.37 * clamped, 1e-4, "lsq+ d zero point");
    }
}

/* ---- 1 vs 2 threads ---- */

static void test_threads(void)
{
    enum { N = 70000 };
    static float x[N], dy[N];
    static lq_out o1, o2;
    qk_rng r;
    qk_rng_seed(&r, 9);
    for (int i = 0; i < N; i++) {
        x[i] = 2 * qk_rng_normal(&r);
        dy[i] = qk_rng_normal(&r);
    }
    static const qk_qat_algo algos[] = { QK_QAT_LSQ, QK_QAT_PACT_SYM, QK_QAT_DSQ };
    for (int a = 0; a < 3; a++) {
        float P[1] = { algos[a] == QK_QAT_LSQ ? 0.2f : 2.5f }, S[2] = { -3, 3 };
        lq_case c = { .algo = algos[a], .bits = 4, .is_signed = 1, .symmetric = 1, .ndim = 2, .dims = { 2, N / 2 },
                      .x = x, .P = algos[a] == QK_QAT_DSQ ? NULL : P, .np = 1, .S = algos[a] == QK_QAT_DSQ ? S : NULL,
                      .ns = 2, .dy = dy, .axis = -1, .gs = 1 };
        /* lq_out holds 4096 values: compare through a hash of the full run */
        (void)o1;
        (void)o2;
        qk_graph *g[2] = { 0 };
        float *res[2][3] = { { 0 } };
        for (int t = 0; t < 2; t++) {
            c.pool = t ? pool2 : NULL;
            qk_graph_create(&g[t]);
            qk_tensor tt;
            qk_tensor_alloc(&tt, QK_F32, 2, c.dims);
            memcpy(tt.data, x, sizeof x);
            int in[3] = { qk_graph_add_init(g[t], "x", QK_VALUE_PARAM, &tt), -1, -1 };
            int64_t one = 1, two = 2;
            if (c.P) {
                qk_tensor_alloc(&tt, QK_F32, 1, &one);
                qk_f32(&tt)[0] = P[0];
                in[1] = qk_graph_add_init(g[t], "p", QK_VALUE_PARAM, &tt);
            }
            if (c.S) {
                qk_tensor_alloc(&tt, QK_F32, 1, &two);
                memcpy(tt.data, S, sizeof S);
                in[2] = qk_graph_add_init(g[t], "s", QK_VALUE_CONST, &tt);
            }
            int y = qk_graph_add_value(g[t], "y", QK_VALUE_ACT);
            int k = qk_graph_add_node(g[t], "QkLearnQuant", "lq", 3, in, 1, &y);
            g[t]->nodes[k].domain = qk_strdup("ai.qkit");
            qk_graph_add_output(g[t], y);
            qk_node_set_int(g[t], k, "algo", c.algo);
            qk_node_set_int(g[t], k, "bits", 4);
            qk_node_set_int(g[t], k, "signed", 1);
            qk_node_set_int(g[t], k, "symmetric", 1);
            qk_node_set_int(g[t], k, "gs", 1);
            QT_OK(qk_ops_bind(g[t]));
            QT_OK(qk_graph_plan(g[t], 2, 1, c.pool));
            QT_OK(qk_graph_forward(g[t]));
            qk_node *nd = &g[t]->nodes[k];
            memcpy(g[t]->values[y].grad.data, dy, sizeof dy);
            memset(g[t]->values[in[0]].grad.data, 0, sizeof x);
            if (in[1] >= 0)
                memset(g[t]->values[in[1]].grad.data, 0, sizeof(float));
            QT_OK(nd->op->backward(&g[t]->exec, nd));
            res[t][0] = qk_f32(&g[t]->values[y].t);
            res[t][1] = qk_f32(&g[t]->values[in[0]].grad);
            res[t][2] = in[1] >= 0 ? qk_f32(&g[t]->values[in[1]].grad) : NULL;
        }
        QT_CHECK(memcmp(res[0][0], res[1][0], sizeof x) == 0, "%s forward 1 vs 2 threads", qk_qat_algo_name(algos[a]));
        QT_CHECK(memcmp(res[0][1], res[1][1], sizeof x) == 0, "%s dx 1 vs 2 threads", qk_qat_algo_name(algos[a]));
        if (res[0][2])
            QT_CHECK(memcmp(res[0][2], res[1][2], sizeof(float)) == 0, "%s dparam 1 vs 2 threads",
                     qk_qat_algo_name(algos[a]));
        qk_graph_destroy(g[0]);
        qk_graph_destroy(g[1]);
    }
}

/* The AVX-512 runs give the portable loops' bits: y, dx and the parameter
 * gradients, every algorithm they cover, all rounding modes, per tensor and
 * per channel, runs with tails, values on rounding ties and clip bounds. */
static void test_vec_equal(void)
{
    enum { N = 1000 };
    static float x[N], dy[N];
    static lq_out o[2];
    qk_rng r;
    qk_rng_seed(&r, 5);
    for (int i = 0; i < N; i++) {
        x[i] = 1.5f * qk_rng_normal(&r);
        dy[i] = qk_rng_normal(&r);
        if (i % 7 == 0)
            x[i] = 0.25f * (float)((int)(x[i] * 8)) + 0.125f; /* ties for s = 0.25 */
        if (i % 11 == 0)
            x[i] = i % 2 ? 2.0f : -1.0f; /* on the clip bounds */
    }
    static const qk_qat_algo algos[] = { QK_QAT_STE, QK_QAT_PACT, QK_QAT_PACT_SYM, QK_QAT_PACT_ASYM,
                                         QK_QAT_DOREFA, QK_QAT_WRPN, QK_QAT_LSQ, QK_QAT_LSQ_PLUS, QK_QAT_TQT };
    for (size_t a = 0; a < sizeof algos / sizeof algos[0]; a++)
        for (int rm = 0; rm < 3; rm++)
            for (int pc = 0; pc < 2; pc++) {
                qk_qat_algo al = algos[a];
                int weight = pc && (al == QK_QAT_STE || al == QK_QAT_LSQ || al == QK_QAT_TQT || al == QK_QAT_WRPN);
                if (pc && !weight)
                    continue;
                float P[8] = { 0.25f, 0.3f, 0.2f, 0.5f, 3, 3, 3, 3 }, S[8] = { -1, 2, 0, 0, 0, 0, 0, 0 };
                int64_t np = qk_qat_n_learned(al) * (weight ? 4 : 1);
                if (al == QK_QAT_PACT || al == QK_QAT_PACT_SYM)
                    P[0] = 2.0f;
                if (al == QK_QAT_PACT_ASYM) {
                    P[0] = -1.0f;
                    P[1] = 2.0f;
                }
                if (al == QK_QAT_LSQ_PLUS)
                    P[1] = 3.0f; /* zero point */
                if (al == QK_QAT_TQT)
                    P[0] = P[1] = P[2] = P[3] = 1.0f;
                int64_t ns = weight ? 0 : qk_qat_n_state(al, 0);
                int sgn = al == QK_QAT_LSQ_PLUS || al == QK_QAT_DOREFA ? 0 : 1;
                lq_case c = { .algo = al, .bits = 4, .is_signed = sgn, .symmetric = sgn, .ndim = 2,
                              .dims = { 4, N / 4 }, .x = x, .P = np ? P : NULL, .np = np, .S = ns ? S : NULL,
                              .ns = ns, .dy = dy, .axis = weight ? 0 : -1, .weight = weight, .round = rm,
                              .gs = al == QK_QAT_LSQ || al == QK_QAT_LSQ_PLUS };
                for (int ref = 0; ref < 2; ref++) {
                    c.reference = ref;
                    QT_CHECK(lq_run(&c, &o[ref]), "%s runs", qk_qat_algo_name(al));
                }
                QT_CHECK(memcmp(o[0].y, o[1].y, N * sizeof(float)) == 0, "%s round %d %s: y vec == reference",
                         qk_qat_algo_name(al), rm, weight ? "per channel" : "per tensor");
                QT_CHECK(memcmp(o[0].dx, o[1].dx, N * sizeof(float)) == 0, "%s round %d: dx vec == reference",
                         qk_qat_algo_name(al), rm);
                QT_CHECK(memcmp(o[0].dp, o[1].dp, (size_t)np * sizeof(float)) == 0,
                         "%s round %d: dparam vec == reference", qk_qat_algo_name(al), rm);
            }
}

/* --bn-fold 0 (docs/ALGORITHMS.md section 6 check): the QAT graph holds the
 * folded conv W_f = [2, -4], b_f = -0.1 for W = [0.5, -1], b = 0.1, gamma 2,
 * beta 0.3, mu 0.2, var 0.25, eps 0; strategies 1-4 place the quantizer on
 * the same W_f (their training form is built in qk_qat_train); a model
 * without BN is prepared (a note, not an error). */
static qk_graph *conv_bn_graph(int with_bn)
{
    qk_graph *g;
    QT_OK(qk_graph_create(&g));
    int64_t xd[4] = { -1, 2, 1, 1 }, wd[4] = { 1, 2, 1, 1 }, one = 1;
    int x = qk_graph_add_input(g, "x", QK_F32, 4, xd);
    qk_tensor t;
    const float wv[2] = { 0.5f, -1.0f }, bnv[4] = { 2.0f, 0.3f, 0.2f, 0.25f };
    qk_tensor_alloc(&t, QK_F32, 4, wd);
    memcpy(t.data, wv, sizeof wv);
    int w = qk_graph_add_init(g, "w", QK_VALUE_CONST, &t);
    qk_tensor_alloc(&t, QK_F32, 1, &one);
    qk_f32(&t)[0] = 0.1f;
    int b = qk_graph_add_init(g, "b", QK_VALUE_CONST, &t);
    int c = qk_graph_add_value(g, "c", QK_VALUE_ACT), y = c;
    int cin[3] = { x, w, b };
    qk_graph_add_node(g, "Conv", "conv", 3, cin, 1, &c);
    if (with_bn) {
        static const char *nm[4] = { "gamma", "beta", "mean", "var" };
        int bin[5] = { c };
        for (int i = 0; i < 4; i++) {
            qk_tensor_alloc(&t, QK_F32, 1, &one);
            qk_f32(&t)[0] = bnv[i];
            bin[i + 1] = qk_graph_add_init(g, nm[i], QK_VALUE_CONST, &t);
        }
        y = qk_graph_add_value(g, "y", QK_VALUE_ACT);
        int k = qk_graph_add_node(g, "BatchNormalization", "bn", 5, bin, 1, &y);
        qk_node_set_float(g, k, "epsilon", 1e-12f); /* > 0 required; W_f rounds to the eps = 0 values */
    }
    qk_graph_add_output(g, y);
    QT_OK(qk_ops_bind(g));
    return g;
}

static void test_bn_fold(void)
{
    qk_qat_config c;
    qk_qat_config_default(&c);
    c.ptq.backend = qk_backend_find("academic");
    c.ptq.wbits = c.ptq.abits = 4;
    c.bn_fold = 0;
    qk_qat *q = NULL;
    QT_OK(qk_qat_prepare(conv_bn_graph(1), &c, &q));
    qk_graph *g = qk_qat_graph(q);
    int bn = 0, conv = -1;
    for (int i = 0; i < g->n_nodes; i++) {
        bn += qk_node_is(&g->nodes[i], "BatchNormalization");
        if (qk_node_is(&g->nodes[i], "Conv"))
            conv = i;
    }
    QT_CHECK(bn == 0 && conv >= 0, "--bn-fold 0 folds the BN away");
    if (conv >= 0) {
        int wv = g->nodes[conv].in[1], bv = g->nodes[conv].in[2];
        if (g->values[wv].producer >= 0) /* the weight's quantization site */
            wv = g->nodes[g->values[wv].producer].in[0];
        if (g->values[bv].producer >= 0)
            bv = g->nodes[g->values[bv].producer].in[0];
        const float *wf = qk_f32(&g->values[wv].t), *bf = qk_f32(&g->values[bv].t);
        QT_CHECK(fabsf(wf[0] - 2.0f) < 1e-6f && fabsf(wf[1] + 4.0f) < 1e-6f, "W_f = [2, -4] (got [%g, %g])", (double)wf[0], (double)wf[1]);
        QT_CHECK(fabsf(bf[0] + 0.1f) < 1e-6f, "b_f = -0.1 (got %g)", (double)bf[0]);
    }
    qk_qat_destroy(q);
    for (int s = 1; s <= 4; s++) { /* 1-4: placed and calibrated on the same folded conv */
        c.bn_fold = s;
        QT_OK(qk_qat_prepare(conv_bn_graph(1), &c, &q));
        g = q ? qk_qat_graph(q) : NULL;
        int k = g ? qk_graph_find_node(g, "conv") : -1;
        if (k >= 0) {
            int wv = g->nodes[k].in[1];
            if (g->values[wv].producer >= 0)
                wv = g->nodes[g->values[wv].producer].in[0];
            const float *wf = qk_f32(&g->values[wv].t);
            QT_CHECK(fabsf(wf[0] - 2.0f) < 1e-6f && fabsf(wf[1] + 4.0f) < 1e-6f, "strategy %d: placed on W_f = [2, -4]",
                     s);
        }
        QT_CHECK(k >= 0, "strategy %d: the conv is there", s);
        qk_qat_destroy(q);
    }
    for (int s = 0; s <= 4; s++) { /* no BN: a note */
        c.bn_fold = s;
        QT_OK(qk_qat_prepare(conv_bn_graph(0), &c, &q));
        qk_qat_destroy(q);
    }
}

int main(void)
{
    QT_OK(qk_pool_create(2, &pool2));
    test_pact_values();
    test_lsq_values();
    test_dorefa_values();
    test_dsq_values();
    test_ste_rounding();
    test_tqt_values();
    test_gradients();
    test_threads();
    test_vec_equal();
    test_bn_fold();
    qk_pool_destroy(pool2);
    return qt_finish("test_qat");
}
