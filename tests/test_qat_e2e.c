/* QAT pipeline on the shipped lenet and Fashion-MNIST: W4A4 lsq improves on
 * its PTQ start in 60 steps (loss lower, top-1 not lower); the QDQ file loads and at W8A8
 * tensorrt `qkit eval --compare` shows a gap <= 0.1 points; resnet8 at
 * W8A8 tensorrt stays within 2 points of its PTQ start; --resume
 * continues bit-identically; the divergence guard rolls back and recovers,
 * or fails after 3 rollbacks writing nothing; --observer picks the
 * calibration the quantizers start from (the PTQ start of `qkit ptq
 * --observer`), mse by default for academic activations of 4 bits or
 * fewer; the CLI refuses bad input with exit 2 and writes nothing. Skips (passing) without the data. */
#include "qkit/onnx.h"
#include "qkit/registry.h"
#include "qkit/qat.h"
#include "cli_fx.h"
#include "qt.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

static qk_pool *pool;
static qk_dataset train, test;
static char tmp[256];

static void cfg(const char *backend, qk_qat_algo algo, int bits, int steps, qk_qat_config *c)
{
    qk_qat_config_default(c);
    c->ptq.backend = qk_backend_find(backend);
    c->ptq.wbits = c->ptq.abits = bits;
    c->algo = algo;
    c->calib = 128;
    c->train.epochs = 1;
    c->train.epoch_steps = steps;
    c->train.batch = 64;
    c->train.progress = 0;
}

static qk_qat *open_q(const qk_qat_config *c, qk_graph **gout)
{
    qk_graph *g;
    qk_qat *q = NULL;
    QT_OK(qk_onnx_load("models/lenet.onnx", &g));
    if (gout)
        *gout = g;
    QT_OK(qk_qat_prepare(g, c, &q));
    return q;
}

static double eval_top1(qk_qat *q, qk_norm norm, double *loss)
{
    qk_eval_result r = { 0 };
    QT_OK(qk_evaluate(qk_qat_graph(q), &test, norm, 250, pool, &r));
    if (loss)
        *loss = r.loss;
    return r.top1;
}

static void test_lenet_w4a4_lsq(void)
{
    qk_qat_config c;
    cfg("academic", QK_QAT_LSQ, 4, 60, &c);
    /* 60 steps: the lr of the folded recipe. The 4-epoch default with BN in
     * training (0.01) ends these 60 steps below the start (0.9230 -> 0.9160);
     * it pays off over the full schedule (bench/RESULTS.md, QAT). */
    c.train.lr = QK_QAT_LR_FOLDED;
    /* from the min-max start: the MSE start that is now the default
     * here is already 0.9270 on these 1000 images, and 60 steps raise its top-1 (0.9310) but
     * not its loss (0.2121 -> 0.2136) */
    c.ptq.a_observer = "minmax";
    qk_qat *q = open_q(&c, NULL);
    if (!q)
        return;
    qk_norm norm = qk_norm_default();
    QT_OK(qk_qat_calibrate(q, &train, norm, pool));
    double lp, lq, ptq = eval_top1(q, norm, &lp);
    qk_qat_result r;
    QT_OK(qk_qat_train(q, &train, NULL, pool, &r));
    QT_OK(qk_qat_finish(q));
    double qat = eval_top1(q, norm, &lq);
    QT_CHECK(qat >= ptq && lq < lp, "lenet W4A4 lsq: PTQ start %.4f (loss %.4f) -> QAT %.4f (loss %.4f)", ptq, lp, qat,
             lq);
    char path[300];
    snprintf(path, sizeof path, "%s/w4a4.onnx", tmp);
    QT_OK(qk_qat_save_qdq(q, path));
    qk_graph *g = NULL;
    QT_OK(qk_onnx_load(path, &g));
    if (g) {
        qk_eval_result e;
        QT_OK(qk_evaluate(g, &test, norm, 250, pool, &e));
        QT_NEAR(e.top1, qat, 0.002, "the QDQ file evaluates as the converted model");
        QT_CHECK(qk_graph_get_meta(g, "qkit.quantized") && qk_graph_get_meta(g, "qkit.qat"), "QDQ metadata");
    }
    qk_graph_destroy(g);
    qk_qat_destroy(q);
}

/* The default quantizer lr on an 8-bit profile: resnet8 (BN folded by
 * tensorrt, no batch statistics in training) must not fall below its PTQ
 * start. At q_lr = lr (0.003), the default before the conv-weight gradient
 * fix, the first steps drove lsq weight steps of a few thousandths below
 * zero and the model collapsed from 94% to ~40% in 20 steps. */
static void test_resnet8_w8_stable(void)
{
    if (access("models/resnet8.onnx", R_OK) != 0)
        return;
    qk_qat_config c;
    cfg("tensorrt", QK_QAT_LSQ, 8, 20, &c);
    qk_graph *g;
    qk_qat *q = NULL;
    QT_OK(qk_onnx_load("models/resnet8.onnx", &g));
    QT_OK(qk_qat_prepare(g, &c, &q));
    if (!q)
        return;
    qk_norm norm = qk_norm_default();
    qk_dataset small = qk_dataset_view(&test, 0, 500), all = test;
    test = small;
    QT_OK(qk_qat_calibrate(q, &train, norm, pool));
    double ptq = eval_top1(q, norm, NULL);
    qk_qat_result r;
    QT_OK(qk_qat_train(q, &train, NULL, pool, &r));
    QT_OK(qk_qat_finish(q));
    double qat = eval_top1(q, norm, NULL);
    test = all;
    QT_CHECK(qat >= ptq - 0.02 && r.rollbacks == 0, "resnet8 tensorrt W8A8 lsq, 20 steps: PTQ start %.4f -> QAT %.4f "
             "(%d rollbacks)", ptq, qat, r.rollbacks);
    qk_qat_destroy(q);
}

/* --progressive: stages 8, 6, 4 (one epoch of 3 steps each); afterwards
 * every quantizer is back at its own width, the step count covers all
 * stages and the model still improves on its PTQ start's loss. */
static void test_progressive(void)
{
    qk_qat_config c;
    cfg("academic", QK_QAT_LSQ, 4, 3, &c);
    c.train.epochs = 3;
    c.progressive = 1;
    qk_qat *q = open_q(&c, NULL);
    if (!q)
        return;
    qk_norm norm = qk_norm_default();
    QT_OK(qk_qat_calibrate(q, &train, norm, pool));
    qk_qat_result r;
    QT_OK(qk_qat_train(q, &train, NULL, pool, &r));
    QT_CHECK(r.train.steps == 9 && r.train.epochs_done == 3, "progressive: %lld steps, %d epochs",
             (long long)r.train.steps, r.train.epochs_done);
    qk_graph *g = qk_qat_graph(q);
    int at_final = 1, n4 = 0;
    for (int k = 0; k < g->n_nodes; k++) {
        const qk_node *n = &g->nodes[k];
        if (!qk_node_is_in(n, "ai.qkit", "QkLearnQuant"))
            continue;
        at_final &= qk_node_int(n, "bits", 0) == qk_node_int(n, "final_bits", -1);
        n4 += qk_node_int(n, "bits", 0) == 4;
    }
    QT_CHECK(at_final && n4 > 0, "progressive: every quantizer back at its own width (%d at 4 bits)", n4);
    qk_qat_destroy(q);
}

static int same_file(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        int x = fgetc(fa), y = fgetc(fb);
        same = x == y;
        if (x == EOF || y == EOF)
            break;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return same;
}

/* max_steps splits one run; the resumed half must equal the straight one. */
/* bn_fold 0: PACT, split at the end of epoch 1; bn_fold 4 with --freeze-bn 1
 * and a teacher: split inside epoch 2 (after the freeze). progressive: lsq
 * W4A4 in stages 8, 6, 4 of one 3-step epoch each, split at `split` steps
 * (3: at the end of the first stage; 4: inside the second). */
static void test_resume_exact_with(int bn_fold, qk_graph *teacher, int progressive, int split)
{
    char ck[300], a[300], b[300];
    snprintf(ck, sizeof ck, "%s/r.qkck", tmp);
    snprintf(a, sizeof a, "%s/a.onnx", tmp);
    snprintf(b, sizeof b, "%s/b.onnx", tmp);
    remove(ck);
    qk_norm norm = qk_norm_default();
    int total = progressive ? 9 : 6;
    for (int run = 0; run < 3; run++) {
        qk_qat_config c;
        cfg("academic", progressive ? QK_QAT_LSQ : QK_QAT_PACT, 4, 3, &c);
        c.train.epochs = progressive ? 3 : 2;
        c.progressive = progressive;
        c.train.checkpoint = run ? ck : NULL;
        c.train.max_steps = run == 1 ? split : 0;
        c.train.resume = run == 2 ? ck : NULL;
        if (bn_fold > 0) {
            c.bn_fold = bn_fold;
            c.freeze_bn = 1;
            c.train.teacher = teacher;
        }
        qk_qat *q = open_q(&c, NULL);
        if (!q)
            return;
        QT_OK(qk_qat_calibrate(q, &train, norm, pool));
        qk_qat_result r;
        QT_OK(qk_qat_train(q, &train, NULL, pool, &r));
        QT_CHECK(r.train.steps == (run == 1 ? split : total), "run %d: %lld steps", run, (long long)r.train.steps);
        if (run != 1)
            QT_OK(qk_qat_save_qdq(q, run ? b : a));
        qk_qat_destroy(q);
    }
    QT_CHECK(same_file(a, b), "resumed QAT (%s, split at step %d) writes the same model as the uninterrupted run",
             progressive ? "progressive 8-6-4" : bn_fold ? "bn_fold 4, --freeze-bn 1, a teacher" : "bn_fold 0", split);
}

static void test_resume_exact(void)
{
    test_resume_exact_with(0, NULL, 0, 3);
    test_resume_exact_with(0, NULL, 1, 3);
    test_resume_exact_with(0, NULL, 1, 4);
    qk_graph *t = NULL;
    QT_OK(qk_onnx_load("models/lenet.onnx", &t));
    if (t)
        test_resume_exact_with(4, t, 0, 4);
    qk_graph_destroy(t);
}

static int inject_once(void *user, const qk_epoch_stats *s)
{
    qk_graph *g = user;
    static int done;
    (void)s;
    if (done++)
        return 0;
    for (int i = 0; i < g->n_values; i++)
        if (strstr(g->values[i].name, "_qat_param")) {
            qk_f32(&g->values[i].t)[0] = NAN;
            break;
        }
    return 0;
}

static void test_divergence_guard(void)
{
    qk_norm norm = qk_norm_default();
    /* a NaN quantizer value after epoch 1: rolled back to its checkpoint, lr halved, finishes */
    char ck[300], out[300];
    snprintf(ck, sizeof ck, "%s/g.qkck", tmp);
    snprintf(out, sizeof out, "%s/guard.onnx", tmp);
    qk_qat_config c;
    cfg("academic", QK_QAT_LSQ, 4, 2, &c);
    c.train.epochs = 2;
    c.train.checkpoint = ck;
    c.train.on_epoch = inject_once;
    qk_graph *g;
    QT_OK(qk_onnx_load("models/lenet.onnx", &g));
    c.train.user = g; /* prepare keeps g as the model graph */
    qk_qat *q = NULL;
    QT_OK(qk_qat_prepare(g, &c, &q));
    if (!q)
        return;
    QT_CHECK(qk_qat_graph(q) == g, "the session trains the graph it was given");
    QT_OK(qk_qat_calibrate(q, &train, norm, pool));
    qk_qat_result r;
    QT_OK(qk_qat_train(q, &train, NULL, pool, &r));
    QT_CHECK(r.rollbacks == 1 && r.lr_scale == 0.5f && r.train.steps == 4, "guard: %d rollbacks, scale %g, %lld steps",
             r.rollbacks, (double)r.lr_scale, (long long)r.train.steps);
    QT_OK(qk_qat_save_qdq(q, out));
    qk_qat_destroy(q);

    /* a huge lr: fails after 3 rollbacks; nothing is written */
    cfg("academic", QK_QAT_LSQ, 4, 3, &c);
    c.train.lr = 1e36f;
    q = open_q(&c, NULL);
    if (!q)
        return;
    QT_OK(qk_qat_calibrate(q, &train, norm, pool));
    qk_log_level lv = qk_log_get_level();
    qk_log_set_level(QK_LOG_ERROR);
    qk_status st = qk_qat_train(q, &train, NULL, pool, &r);
    qk_log_set_level(lv);
    QT_CHECK(st == QK_ERR_NUMERIC && r.rollbacks == 3 && strstr(qk_last_error(), "diverged"),
             "huge lr: %s after %d rollbacks: %s", qk_status_str(st), r.rollbacks, qk_last_error());
    snprintf(out, sizeof out, "%s/nan.onnx", tmp);
    if (st != QK_OK) {
        st = qk_qat_save_qdq(q, out);
        QT_CHECK(st != QK_OK && !exists(out), "no model is written from a diverged run (%s)", qk_status_str(st));
    }
    qk_qat_destroy(q);
}

/* --bn-fold 1-4 (docs/ALGORITHMS.md section 6): each strategy trains in its
 * own form and deploys the folded conv: W_f = W gamma / sqrt(var + eps),
 * b_f = beta + (b - mean) gamma / sqrt(var + eps) from the trained W, gamma,
 * beta and the running statistics (within 1e-6 relative); the training
 * graph in inference mode and the deployed graph agree; accuracy stays near
 * the PTQ start. */
typedef struct fold_expect {
    char conv[64];
    int64_t nw, M;
    float wf[64 * 32 * 9], bf[64];
} fold_expect;

static int find_reader(const qk_graph *g, int v, const char *type)
{
    for (int k = 0; k < g->n_nodes; k++)
        for (int i = 0; i < g->nodes[k].n_in; i++)
            if (g->nodes[k].in[i] == v && strcmp(g->nodes[k].op_type, type) == 0)
                return k;
    return -1;
}

static int bn_expect(qk_graph *g, fold_expect *e, int max)
{
    int n = 0;
    for (int k = 0; k < g->n_nodes && n < max; k++) {
        const qk_node *f = &g->nodes[k];
        if (!qk_node_is_in(f, "ai.qkit", "QkBnFoldW"))
            continue;
        int L = find_reader(g, f->out[0], "QkLearnQuant"), A = find_reader(g, f->out[1], "QkBnAffine");
        int P = L >= 0 ? find_reader(g, g->nodes[L].out[0], "Conv") : -1;
        if (P < 0 || A < 0)
            continue;
        const qk_node *a = &g->nodes[A];
        int mu = a->in[3], var = a->in[4];
        if (g->values[mu].producer >= 0) { /* strategies 2-4: QkBnStats passes the running statistics */
            const qk_node *st = &g->nodes[g->values[mu].producer];
            mu = st->in[1];
            var = st->in[2];
        }
        const qk_tensor *W = &g->values[f->in[0]].t;
        const float *w = qk_f32(W), *ga = qk_f32(&g->values[f->in[1]].t), *be = qk_f32(&g->values[a->in[2]].t);
        const float *m = qk_f32(&g->values[mu].t), *v = qk_f32(&g->values[var].t);
        const float *bb = a->n_in > 6 && a->in[6] >= 0 ? qk_f32(&g->values[a->in[6]].t) : NULL;
        double eps = qk_node_float(f, "eps", -1);
        e[n].M = W->dims[0];
        e[n].nw = qk_tensor_numel(W);
        if (e[n].nw > (int64_t)(sizeof e[n].wf / sizeof(float)) || e[n].M > 64)
            continue;
        snprintf(e[n].conv, sizeof e[n].conv, "%s", g->nodes[P].name);
        int64_t per = e[n].nw / e[n].M;
        for (int64_t c = 0; c < e[n].M; c++) {
            double s = ga[c] / sqrt((double)v[c] + eps);
            for (int64_t i = 0; i < per; i++)
                e[n].wf[c * per + i] = (float)(w[c * per + i] * s);
            e[n].bf[c] = (float)(be[c] + ((bb ? bb[c] : 0.0) - m[c]) * s);
        }
        n++;
    }
    return n;
}

static double rel(double a, double b) { return fabs(a - b) / fmax(fabs(b), 1e-30); }

static void test_bn_strategies(void)
{
    qk_norm norm = qk_norm_default();
    for (int s = 1; s <= 4; s++) {
        qk_qat_config c;
        cfg("academic", QK_QAT_LSQ, 4, 8, &c);
        c.bn_fold = s;
        qk_qat *q = open_q(&c, NULL);
        if (!q)
            return;
        QT_OK(qk_qat_calibrate(q, &train, norm, pool));
        double ptq = eval_top1(q, norm, NULL);
        qk_qat_result r;
        QT_OK(qk_qat_train(q, &train, NULL, pool, &r));
        qk_graph *g = qk_qat_graph(q);
        static fold_expect e[4];
        int ne = bn_expect(g, e, 4);
        QT_CHECK(ne == 2, "S%d: lenet's two conv + BN pairs in training form (%d)", s, ne);
        double la, lb, ta = eval_top1(q, norm, &la);
        QT_OK(qk_qat_finish(q));
        double tb = eval_top1(q, norm, &lb);
        /* the deployed biases sit on the engine's int32 grid s_x * s_w (a 4-bit weight step makes it coarse) */
        QT_CHECK(fabs(ta - tb) <= 0.002 && rel(la, lb) < 3e-3, "S%d: training form in inference = deployed conv "
                 "(top-1 %.4f / %.4f, loss %.6f / %.6f)", s, ta, tb, la, lb);
        QT_CHECK(tb > 0.8 && tb >= ptq - 0.03, "S%d: QAT top-1 %.4f (PTQ start %.4f)", s, tb, ptq);
        int extra = 0;
        for (int k = 0; k < g->n_nodes; k++)
            extra += strncmp(g->nodes[k].op_type, "QkBn", 4) == 0 || qk_node_is(&g->nodes[k], "BatchNormalization");
        QT_CHECK(extra == 0, "S%d: only the folded convs are left (%d BN nodes)", s, extra);
        for (int i = 0; i < ne; i++) {
            int k = qk_graph_find_node(g, e[i].conv);
            if (k < 0) {
                QT_CHECK(0, "S%d: conv '%s' deployed", s, e[i].conv);
                continue;
            }
            int wv = g->nodes[k].in[1];
            if (g->values[wv].producer >= 0)
                wv = g->nodes[g->values[wv].producer].in[0];
            const float *wf = qk_f32(&g->values[wv].t);
            double worst = 0;
            for (int64_t j = 0; j < e[i].nw; j++)
                worst = fmax(worst, rel(wf[j], e[i].wf[j]));
            QT_CHECK(worst <= 1e-6, "S%d '%s': deployed W_f = the fold formula (worst rel %g)", s, e[i].conv, worst);
        }
        /* b_f: the fold formula rounded to the accumulator grid s_x * s_w[c] (read from the QDQ form) */
        QT_OK(qk_ptq_convert_qdq(qk_qat_qmodel(q)));
        for (int i = 0; i < ne; i++) {
            int k = qk_graph_find_node(g, e[i].conv);
            if (k < 0)
                continue;
            const qk_node *n = &g->nodes[k];
            int px = g->values[n->in[0]].producer, pw = g->values[n->in[1]].producer;
            if (px < 0 || pw < 0) {
                QT_CHECK(0, "S%d '%s': input and weights dequantized in the QDQ form", s, e[i].conv);
                continue;
            }
            const qk_tensor *tsx = &g->values[g->nodes[px].in[1]].t, *tsw = &g->values[g->nodes[pw].in[1]].t;
            const float *bf = qk_f32(&g->values[n->in[2]].t);
            double worst = 0, off = 0;
            for (int64_t j = 0; j < e[i].M; j++) {
                double grid = (double)qk_f32(tsx)[0] * qk_f32(tsw)[qk_tensor_numel(tsw) == 1 ? 0 : j];
                worst = fmax(worst, fabs(bf[j] - e[i].bf[j]) / grid);
                off = fmax(off, fabs(bf[j] / grid - nearbyint(bf[j] / grid)));
            }
            QT_CHECK(worst <= 0.5 + 1e-4 && off < 1e-3, "S%d '%s': deployed b_f = the fold formula on the grid "
                     "s_x * s_w (worst %.4g grid steps away, %.3g off the grid)", s, e[i].conv, worst, off);
        }
        qk_qat_destroy(q);
    }
    /* 1 and 2 threads: the same QDQ file (strategy 3: both passes, batch statistics, correction) */
    char f[2][300];
    for (int t = 0; t < 2; t++) {
        qk_pool *p1 = NULL;
        QT_OK(qk_pool_create(1 + t, &p1));
        qk_qat_config c;
        cfg("academic", QK_QAT_LSQ, 4, 4, &c);
        c.bn_fold = 3;
        qk_qat *q = open_q(&c, NULL);
        snprintf(f[t], sizeof f[t], "%s/s3_t%d.onnx", tmp, t + 1);
        qk_qat_result r;
        if (q && qk_qat_calibrate(q, &train, norm, p1) == QK_OK && qk_qat_train(q, &train, NULL, p1, &r) == QK_OK)
            QT_OK(qk_qat_save_qdq(q, f[t]));
        qk_qat_destroy(q);
        qk_pool_destroy(p1);
    }
    QT_CHECK(same_file(f[0], f[1]), "--bn-fold 3: 1 and 2 threads write the same model");
}

/* --freeze-bn 1 with strategies 2 and 4: the running statistics after the
 * first epoch are those at the end; without it they keep moving. */
typedef struct bn_watch {
    qk_graph *g;
    float mean[64], var[64];
    int n;
} bn_watch;

static int bn_running(qk_graph *g, float *mean, float *var)
{
    for (int k = 0; k < g->n_nodes; k++) {
        int kept = qk_node_is(&g->nodes[k], "BatchNormalization"); /* in float: inputs 3, 4 */
        if (kept || qk_node_is_in(&g->nodes[k], "ai.qkit", "QkBnStats")) {
            const qk_tensor *m = &g->values[g->nodes[k].in[1 + 2 * kept]].t;
            const qk_tensor *v = &g->values[g->nodes[k].in[2 + 2 * kept]].t;
            int n = (int)qk_tensor_numel(m);
            n = n > 64 ? 64 : n;
            memcpy(mean, m->data, (size_t)n * sizeof(float));
            memcpy(var, v->data, (size_t)n * sizeof(float));
            return n;
        }
    }
    return 0;
}

static int watch_epoch(void *user, const qk_epoch_stats *s)
{
    bn_watch *w = user;
    if (s->epoch == 1)
        w->n = bn_running(w->g, w->mean, w->var);
    return 0;
}

/* --freeze-bn 1 of strategies 2 and 4 and of BN kept in float (academic
 * without --bn-fold, s = -1): the running statistics stop changing after
 * epoch 1; the written model carries no qkit_frozen mark. */
static void test_freeze_bn(void)
{
    qk_norm norm = qk_norm_default();
    const int strategies[3] = { -1, 2, 4 };
    for (int si = 0; si < 3; si++)
        for (int freeze = 0; freeze <= 1; freeze++) {
            int s = strategies[si];
            qk_qat_config c;
            cfg("academic", QK_QAT_LSQ, 4, 3, &c);
            c.train.epochs = 2;
            c.bn_fold = s;
            c.freeze_bn = freeze;
            bn_watch w = { 0 };
            c.train.on_epoch = watch_epoch;
            c.train.user = &w;
            qk_qat *q = open_q(&c, &w.g);
            if (!q)
                return;
            QT_OK(qk_qat_calibrate(q, &train, norm, pool));
            qk_qat_result r;
            QT_OK(qk_qat_train(q, &train, NULL, pool, &r));
            float m[64], v[64];
            int n = bn_running(w.g, m, v);
            int same = n > 0 && n == w.n && memcmp(m, w.mean, (size_t)n * sizeof *m) == 0 &&
                       memcmp(v, w.var, (size_t)n * sizeof *v) == 0;
            QT_CHECK(n > 0 && same == freeze, "%s%d %s: running statistics %s after epoch 1", s < 0 ? "BN kept, " : "S",
                     s, freeze ? "--freeze-bn 1" : "no freeze", same ? "unchanged" : "changed");
            if (s < 0 && freeze) {
                char path[300];
                snprintf(path, sizeof path, "%s/fbn.onnx", tmp);
                qk_graph *back = NULL;
                QT_OK(qk_qat_save_qdq(q, path));
                QT_OK(qk_onnx_load(path, &back));
                int marks = 0, bns = 0;
                for (int k = 0; back && k < back->n_nodes; k++) {
                    bns += qk_node_is(&back->nodes[k], "BatchNormalization");
                    marks += qk_node_attr(&back->nodes[k], "qkit_frozen") != NULL;
                }
                QT_CHECK(bns > 0 && marks == 0, "BN kept, frozen: the file has %d BN nodes, %d qkit_frozen marks", bns,
                         marks);
                qk_graph_destroy(back);
            }
            qk_qat_destroy(q);
        }
}

/* The activation observer QAT calibrates with: mse at 4 bits or fewer on the
 * academic profile (min-max there otherwise), the profile's elsewhere, the
 * configured one whenever given. */
static void test_observer_default(void)
{
    static const struct { const char *backend, *given; int abits; const char *want; } t[] = {
        { "academic", NULL, 4, "mse" },     { "academic", NULL, 2, "mse" },
        { "academic", NULL, 8, "minmax" },  { "academic", NULL, 6, "minmax" },
        { "academic", "kl", 4, "kl" },      { "academic", "minmax", 4, "minmax" },
        { "tensorrt", NULL, 8, "percentile" },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        qk_qat_config c;
        cfg(t[i].backend, QK_QAT_LSQ, 8, 1, &c);
        c.ptq.abits = t[i].abits;
        c.ptq.a_observer = t[i].given;
        qk_qat *q = open_q(&c, NULL);
        qk_ptq_result r = { 0 };
        if (q)
            qk_ptq_result_get(qk_qat_qmodel(q), &r);
        QT_CHECK(r.a_observer && strcmp(r.a_observer, t[i].want) == 0, "%s A%d, --observer %s: %s (want %s)",
                 t[i].backend, t[i].abits, t[i].given ? t[i].given : "-", r.a_observer ? r.a_observer : "(none)",
                 t[i].want);
        qk_qat_destroy(q);
    }
}

/* A 12-class model on lenet's input, for the teacher mismatch. */
static void write_12_class(const char *path)
{
    qk_graph *g;
    QT_OK(qk_graph_create(&g));
    int64_t xd[4] = { -1, 1, 28, 28 }, wd[2] = { 784, 12 };
    int x = qk_graph_add_input(g, "input", QK_F32, 4, xd);
    qk_tensor t;
    QT_OK(qk_tensor_alloc(&t, QK_F32, 2, wd));
    int w = qk_graph_add_init(g, "w", QK_VALUE_PARAM, &t);
    int f = qk_graph_add_value(g, "flat", QK_VALUE_ACT), y = qk_graph_add_value(g, "logits", QK_VALUE_ACT);
    int fin[2] = { f, w };
    qk_graph_add_node(g, "Flatten", "flatten", 1, &x, 1, &f);
    qk_graph_add_node(g, "Gemm", "fc", 2, fin, 1, &y);
    qk_graph_add_output(g, y);
    QT_OK(qk_onnx_save(g, path));
    qk_graph_destroy(g);
}

static void test_cli(void)
{
    if (!cli_fx_init()) {
        QT_CHECK(1, "no qkit binary");
        return;
    }
    char o[300], t12[300];
    snprintf(o, sizeof o, "%s/cli.onnx", tmp);
    snprintf(t12, sizeof t12, "%s/t12.onnx", tmp);
    write_12_class(t12);
    unlink(o);
    int trc = q("qat --model models/lenet.onnx --backend academic --teacher %s --epochs 1 --epoch-steps 2 --limit 100 "
                "--out %s", t12, o);
    QT_CHECK(trc == 2 && has("does not match") && !exists(o), "a 12-class teacher for a 10-class model: rc %d: %s",
             trc, out);
    /* distillation from the float lenet with BN strategy 4 frozen after epoch 1: runs, writes, deploys */
    trc = q("qat --model models/lenet.onnx --backend academic --wbits 4 --abits 4 --bn-fold 4 --freeze-bn 1 "
            "--teacher models/lenet.onnx --kd-t 4 --kd-w 0.5 --epochs 2 --epoch-steps 4 --batch 64 --calib 128 "
            "--limit 500 --threads 2 --json --out %s", o);
    const char *tp = strstr(out, "\"top1\": ");
    QT_CHECK(trc == 0 && exists(o) && tp && atof(tp + 8) > 0.8, "qat --teacher --bn-fold 4 --freeze-bn 1: %s", out);
    /* WRPN width multiplier: lenet x2 trains and deploys */
    trc = q("qat --model models/lenet.onnx --backend academic --wbits 4 --abits 4 --widen 2 --epochs 1 "
            "--epoch-steps 4 --batch 64 --calib 128 --limit 500 --threads 2 --json --out %s", o);
    tp = strstr(out, "\"top1\": ");
    QT_CHECK(trc == 0 && exists(o) && tp && atof(tp + 8) > 0.8, "qat --widen 2: %s", out);
    trc = q("qat --model models/lenet.onnx --backend tensorrt --freeze-bn 1 --dry-run");
    QT_CHECK(trc == 0 && has("no batch statistics to freeze") && has("folds BN before training"),
             "--freeze-bn on a folding profile without --bn-fold 2-4: a note: %s", out);
    trc = q("qat --model models/lenet.onnx --backend academic --freeze-bn 1 --dry-run");
    QT_CHECK(trc == 0 && !has("no batch statistics to freeze"), "--freeze-bn with BN kept in float: no note: %s", out);
    trc = q("qat --model models/lenet.onnx --backend academic --bn-fold 3 --dry-run");
    QT_CHECK(trc == 0 && has("strategy 3 on 2 Conv/Gemm"), "--bn-fold 3 --dry-run: %s", out);
    static const struct { const char *args, *msg; } bad[] = {
        { "--backend academic --algo nope", "unknown QAT algorithm" },
        { "--backend tvm --algo lsq", "power-of-two" },
        { "--backend tensorrt --algo tqt", "tqt" },
        { "--backend tensorrt --algo lsq+", "zero point" },
        { "--backend tensorrt --algo lsq --abits 4", "tensorrt" },
        { "--backend academic --algo lsq --wbits 9", "9-bit" },
        { "--backend nnie --algo ste", "linear" },
        { "--backend academic --algo lsq --w-algo pact", "activation clipping" },
        { "--backend vitis --algo tqt --bn-fold 2", "quantizes the bias" },
        { "--backend academic --kd-w 2", "need --teacher" },
        { "--backend academic --observer bogus", "unknown observer" },
        { "--backend academic --w-observer bogus", "unknown observer" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        unlink(o);
        int rc = q("qat --model models/lenet.onnx %s --out %s", bad[i].args, o);
        QT_CHECK(rc == 2 && has(bad[i].msg) && !exists(o), "qkit qat %s: rc %d, output: %s", bad[i].args, rc, out);
    }
    /* --observer: the calibration that initialises the quantizers is the one of `qkit ptq --observer`
     * (same PTQ start), a different start from minmax, in the JSON and the file; W4A4 academic without
     * --observer starts from mse */
    static const char *const cmd[4] = {
        "qat --model models/lenet.onnx --backend academic --wbits 4 --abits 4 --observer mse --epochs 1 "
        "--epoch-steps 2 --batch 64 --calib 128 --limit 1000 --threads 2 --json --out %s",
        "qat --model models/lenet.onnx --backend academic --wbits 4 --abits 4 --observer minmax --epochs 1 "
        "--epoch-steps 2 --batch 64 --calib 128 --limit 1000 --threads 2 --json --out %s",
        "ptq --model models/lenet.onnx --backend academic --wbits 4 --abits 4 --observer mse --no-fp32 "
        "--calib 128 --limit 1000 --threads 2 --json --out %s",
        "qat --model models/lenet.onnx --backend academic --wbits 4 --abits 4 --epochs 1 "
        "--epoch-steps 2 --batch 64 --calib 128 --limit 1000 --threads 2 --json --out %s",
    };
    double start[4] = { -1, -1, -1, -1 };
    for (int k = 0; k < 4; k++) {
        unlink(o);
        int orc = q(cmd[k], o);
        const char *key = k == 2 ? "\"top1\": " : "\"ptq_top1\": ", *sp = strstr(out, key);
        QT_CHECK(orc == 0 && sp && exists(o) && has(k == 1 ? "\"a_observer\": \"minmax\"" : "\"a_observer\": \"mse\""),
                 "%s: rc %d: %s", cmd[k], orc, out);
        start[k] = sp ? atof(sp + strlen(key)) : -1;
        if (k == 0) {
            qk_graph *g = NULL;
            QT_OK(qk_onnx_load(o, &g));
            const char *ao = g ? qk_graph_get_meta(g, "qkit.a_observer") : NULL;
            QT_CHECK(ao && strcmp(ao, "mse") == 0, "qat --observer mse: qkit.a_observer %s", ao ? ao : "(none)");
            qk_graph_destroy(g);
        }
    }
    QT_CHECK(start[0] == start[2] && start[0] == start[3] && start[0] != start[1],
             "PTQ start: qat --observer mse %.4f, ptq --observer mse %.4f, qat default %.4f, qat minmax %.4f", start[0],
             start[2], start[3], start[1]);
    int rc = q("qat --model models/lenet.onnx --backend academic --algo pact --wbits 4 --abits 4 --dry-run");
    QT_CHECK(rc == 0 && has("QAT: weights lsq, activations pact"), "dry run: %s", out);
    /* W8A8 tensorrt: the QDQ file deploys; fake vs integer gap <= 0.1 points */
    char rj[320], rs[320];
    snprintf(rj, sizeof rj, "%s/rep.json", tmp);
    snprintf(rs, sizeof rs, "%s/rep.svg", tmp);
    rc = q("qat --model models/lenet.onnx --backend tensorrt --algo lsq --epochs 1 --epoch-steps 8 --batch 64 "
           "--calib 128 --limit 500 --threads 2 --json --out %s --report %s", o, rj);
    QT_CHECK(rc == 0 && has("\"ptq_top1\"") && has("\"images_per_s\"") && exists(o), "qat tensorrt: %s", out);
    QT_CHECK(exists(rj) && exists(rs), "--report writes %s and %s", rj, rs);
    rc = q("eval --model %s --compare --limit 2000 --threads 2 --json", o);
    const char *gp = strstr(out, "\"gap\": ");
    double gap = gp ? atof(gp + 7) : 1;
    QT_CHECK(rc == 0 && fabs(gap) <= 0.001, "eval --compare gap %g: %s", gap, out);
}

int main(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/test_qat_%d", (int)getpid());
    mkdir(tmp, 0700);
    if (access("models/lenet.onnx", R_OK) != 0 || qk_dataset_load_dir(NULL, "train", &train) != QK_OK ||
        qk_dataset_load_dir(NULL, "t10k", &test) != QK_OK) {
        printf("test_qat_e2e: skipped (no lenet model or Fashion-MNIST)\n");
        return qt_finish("test_qat_e2e");
    }
    qk_dataset full = test;
    test = qk_dataset_view(&full, 0, 1000);
    QT_OK(qk_pool_create(2, &pool));
    test_lenet_w4a4_lsq();
    test_resnet8_w8_stable();
    test_resume_exact();
    test_progressive();
    test_divergence_guard();
    test_bn_strategies();
    test_freeze_bn();
    test_observer_default();
    test_cli();
    qk_pool_destroy(pool);
    qk_dataset_free(&train);
    qk_dataset_free(&full);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmp);
    return qt_finish("test_qat_e2e");
}
