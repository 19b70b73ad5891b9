/* QAT training (qat.h): the quantizer parameter group, the divergence guard
 * (rollback to the last good state, half the learning rate, at most
 * max_retries times) and the checkpoint signature checks around qk_train. */
#include "qat_internal.h"
#include "qkit/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct guard {
    qk_graph *g;
    const qk_qat_config *c;
    float lr_scale;
    int wrote_ckpt;
    qk_qat *q;
    int64_t steps_epoch;
    int64_t step_base;    /* --progressive: steps of the earlier stages */
    const char *resume;   /* the checkpoint this stage started from (NULL: none) */
    int64_t freeze_step;  /* freeze_observer epochs in steps (0: never) */
    int frozen;
    int64_t bn_freeze_step; /* freeze_bn epochs in steps (0: never) */
    int bn_frozen;
    char scale_str[32];
} guard;

/* --freeze-bn: every QkBnStats node passes the running statistics from
 * now on; the metadata records it for checkpoints. */
static qk_status freeze_bn(guard *gd)
{
    qk_status st = qk_qat_bn_freeze_(gd->g);
    if (st != QK_OK)
        return st;
    gd->bn_frozen = 1;
    return qk_graph_set_meta(gd->g, "qkit.qat.bn_frozen", "1");
}

/* Observer freeze: the EMA ranges of ste/dsq activations stop updating
 * (node attribute "frozen"); the metadata records it so a checkpoint
 * written afterwards resumes frozen. */
static qk_status freeze_observers(guard *gd)
{
    qk_graph *g = gd->g;
    for (int k = 0; k < g->n_nodes; k++) {
        qk_node *n = &g->nodes[k];
        if (!qk_node_is_in(n, "ai.qkit", "QkLearnQuant") || qk_node_int(n, "weight", 0))
            continue;
        int64_t a = qk_node_int(n, "algo", -1);
        qk_status st = a == QK_QAT_STE || a == QK_QAT_DSQ ? qk_node_set_int(g, k, "frozen", 1) : QK_OK;
        if (st != QK_OK)
            return st;
    }
    gd->frozen = 1;
    return qk_graph_set_meta(g, "qkit.qat.observers_frozen", "1");
}

static int is_qparam(const qk_value *v)
{
    size_t n = strlen(v->name), k = strlen("_qat_param");
    return v->kind == QK_VALUE_PARAM && n > k && strcmp(v->name + n - k, "_qat_param") == 0;
}

/* The QkLearnQuant node whose learned values are `value` (-1: none). */
static int learner_of(const qk_graph *g, int value)
{
    for (int k = 0; k < g->n_nodes; k++) {
        const qk_node *n = &g->nodes[k];
        if (n->n_in > 1 && n->in[1] == value && qk_node_is_in(n, "ai.qkit", "QkLearnQuant"))
            return k;
    }
    return -1;
}

/* The quantizer group: lr q_lr (default train.lr * QK_QAT_Q_LR_RATIO),
 * weight decay q_wd (default: PACT's L2 on the clips of the pact-family
 * sites, 1e-4, and none on step sizes or thresholds). */
static void param_opts(void *user, const qk_graph *g, int value, qk_param_opts *o)
{
    guard *gd = user;
    const qk_qat_config *c = gd->c;
    const qk_value *v = &g->values[value];
    o->lr_mult = gd->lr_scale;
    if (is_qparam(v)) {
        float qlr = c->q_lr > 0 ? c->q_lr : c->train.lr * QK_QAT_Q_LR_RATIO;
        int k = learner_of(g, value);
        int64_t a = k >= 0 ? qk_node_int(&g->nodes[k], "algo", -1) : -1;
        o->lr_mult = qlr / c->train.lr * gd->lr_scale;
        o->weight_decay = c->q_wd >= 0 ? c->q_wd
                          : (a == QK_QAT_PACT || a == QK_QAT_PACT_SYM || a == QK_QAT_PACT_ASYM) ? 1e-4f : 0.0f;
    }
}

/* Keeps every learned step size (lsq, lsq+) and upper clip (pact,
 * pact-asym) at or above QK_QAT_EPS after an optimizer step. The forward
 * pass reads max(value, eps) anyway; without the projection a step that
 * overshoots below zero leaves the parameter there, and the channel, all of
 * whose weights now clip to +-qp * eps, cannot come back (the gradient it
 * sees is the clamped one's). MQBench clamps its LSQ scales the same way. */
static void project_qparams(qk_graph *g)
{
    for (int k = 0; k < g->n_nodes; k++) {
        const qk_node *n = &g->nodes[k];
        if (!qk_node_is_in(n, "ai.qkit", "QkLearnQuant") || n->n_in < 2 || n->in[1] < 0)
            continue;
        int64_t a = qk_node_int(n, "algo", -1), first, count;
        qk_value *P = &g->values[n->in[1]];
        int64_t np = qk_tensor_numel(&P->t);
        if (a == QK_QAT_LSQ || a == QK_QAT_LSQ_PLUS || a == QK_QAT_PACT) {
            first = 0; /* the scales / clips: the first C entries */
            count = a == QK_QAT_LSQ_PLUS ? np / 2 : np;
        } else if (a == QK_QAT_PACT_ASYM) {
            first = np / 2; /* [lo..., hi...]: the upper bounds */
            count = np / 2;
        } else {
            continue;
        }
        float *p = qk_f32(&P->t) + first;
        for (int64_t i = 0; i < count; i++)
            if (p[i] < QK_QAT_EPS) /* NaN stays NaN: on_step reports it */
                p[i] = QK_QAT_EPS;
    }
}

static int all_finite(const float *p, int64_t n)
{
    float acc = 0;
    for (int64_t i = 0; i < n; i++)
        acc += p[i] * 0.0f; /* NaN or Inf make it NaN */
    return acc == 0.0f;
}

/* After every optimizer step: the gradients just applied and the learned
 * quantizer values must be finite; the lr scale goes into the metadata so
 * checkpoints carry it. */
static qk_status on_step(void *user, qk_graph *g, int64_t step, float loss)
{
    guard *gd = user;
    (void)loss;
    qk_status fst;
    step += gd->step_base;
    if (gd->freeze_step > 0 && !gd->frozen && step >= gd->freeze_step && (fst = freeze_observers(gd)) != QK_OK)
        return fst;
    if (gd->bn_freeze_step > 0 && !gd->bn_frozen && step >= gd->bn_freeze_step && (fst = freeze_bn(gd)) != QK_OK)
        return fst;
    if (gd->c->report && step % gd->steps_epoch == 0 &&
        (fst = qk_qat_report_record_(qk_qat_report_(gd->q), g, (int)(step / gd->steps_epoch))) != QK_OK)
        return fst;
    project_qparams(g);
    for (int i = 0; i < g->n_values; i++) {
        const qk_value *v = &g->values[i];
        if (v->kind != QK_VALUE_PARAM)
            continue;
        if (v->grad.data && !all_finite(qk_f32(&v->grad), qk_tensor_numel(&v->grad)))
            return qk_error(QK_ERR_NUMERIC, "the gradient of '%s' is not finite at step %lld", v->name,
                            (long long)step);
        if (is_qparam(v) && !all_finite(qk_f32(&v->t), qk_tensor_numel(&v->t)))
            return qk_error(QK_ERR_NUMERIC, "quantizer parameter '%s' is not finite at step %lld", v->name,
                            (long long)step);
    }
    const char *cur = qk_graph_get_meta(g, "qkit.qat.lr_scale");
    if (!cur || strcmp(cur, gd->scale_str) != 0)
        return qk_graph_set_meta(g, "qkit.qat.lr_scale", gd->scale_str);
    return QK_OK;
}

static int on_epoch(void *user, const qk_epoch_stats *s)
{
    guard *gd = user;
    gd->wrote_ckpt |= gd->c->train.checkpoint != NULL;
    return gd->c->train.on_epoch ? gd->c->train.on_epoch(gd->c->train.user, s) : 0;
}

/* Copies of every PARAM / CONST value (the state before training). */
typedef struct snapshot {
    int n;
    int *idx;
    float **data;
} snapshot;

static void snap_free(snapshot *s)
{
    for (int i = 0; i < s->n; i++)
        qk_free(s->data[i]);
    qk_free(s->idx);
    qk_free(s->data);
    memset(s, 0, sizeof *s);
}

static qk_status snap_take(snapshot *s, const qk_graph *g)
{
    memset(s, 0, sizeof *s);
    s->idx = qk_calloc((size_t)g->n_values + 1, sizeof *s->idx);
    s->data = qk_calloc((size_t)g->n_values + 1, sizeof *s->data);
    if (!s->idx || !s->data)
        return qk_error(QK_ERR_NOMEM, "QAT: out of memory");
    for (int i = 0; i < g->n_values; i++) {
        const qk_value *v = &g->values[i];
        if ((v->kind != QK_VALUE_PARAM && v->kind != QK_VALUE_CONST) || !v->t.data)
            continue;
        size_t b = qk_tensor_bytes(&v->t);
        void *d = qk_malloc(b ? b : 1);
        if (!d)
            return qk_error(QK_ERR_NOMEM, "QAT: out of memory");
        memcpy(d, v->t.data, b);
        s->idx[s->n] = i;
        s->data[s->n++] = d;
    }
    return QK_OK;
}

static void snap_restore(const snapshot *s, qk_graph *g)
{
    for (int i = 0; i < s->n; i++) {
        qk_value *v = &g->values[s->idx[i]];
        memcpy(v->t.data, s->data[i], qk_tensor_bytes(&v->t));
    }
}

/* --resume: the checkpoint must come from the same QAT setup; returns its lr scale. */
static qk_status check_resume(qk_qat *q, const char *path, float *scale)
{
    qk_graph *g = qk_qat_graph(q);
    char want[256];
    qk_qat_signature_(q, want, sizeof want);
    qk_status st = qk_checkpoint_load_params(path, g);
    if (st != QK_OK)
        return qk_error_context(st, "--resume %s (a checkpoint of the same qkit qat setup is needed)", path);
    const char *sig = qk_graph_get_meta(g, "qkit.qat.signature");
    if (!sig || strcmp(sig, want) != 0)
        return qk_error(QK_ERR_ARG, "--resume %s: the checkpoint was written by QAT setup '%s', this run is '%s'",
                        path, sig ? sig : "(not a QAT checkpoint)", want);
    const char *sc = qk_graph_get_meta(g, "qkit.qat.lr_scale");
    float v = sc ? strtof(sc, NULL) : 1.0f;
    *scale = v > 0 && v <= 1 ? v : 1.0f;
    return QK_OK;
}

/* The narrowest width of any learnable quantizer. */
static int min_bits(const qk_graph *g)
{
    int lo = 8;
    for (int k = 0; k < g->n_nodes; k++) {
        const qk_node *n = &g->nodes[k];
        if (qk_node_is_in(n, "ai.qkit", "QkLearnQuant")) {
            int b = (int)qk_node_int(n, "final_bits", qk_node_int(n, "bits", 8));
            lo = b < lo ? b : lo;
        }
    }
    return lo;
}

/* One qk_train call under the divergence guard (rollback, half the lr, at
 * most max_retries times). */
static qk_status train_guarded(guard *gd, qk_train_config *tc, const qk_dataset *train, const qk_dataset *test,
                               qk_pool *pool, qk_qat_result *r)
{
    qk_graph *g = gd->g;
    const qk_qat_config *c = gd->c;
    qk_status st;
    snapshot snap;
    if ((st = snap_take(&snap, g)) != QK_OK) {
        snap_free(&snap);
        return st;
    }
    for (int tries = 0;; tries++) {
        snprintf(gd->scale_str, sizeof gd->scale_str, "%.9g", (double)gd->lr_scale);
        if ((st = qk_graph_set_meta(g, "qkit.qat.lr_scale", gd->scale_str)) != QK_OK)
            break;
        st = qk_train(g, train, test, tc, pool, &r->train);
        if (st != QK_ERR_NUMERIC)
            break;
        if (tries >= c->max_retries) {
            st = qk_error(QK_ERR_NUMERIC, "training diverged %d times (last: %s); the learning rate was halved each "
                          "time down to x%g; try a lower --lr / --q-lr", tries + 1, qk_last_error(),
                          (double)gd->lr_scale);
            break;
        }
        char why[512];
        snprintf(why, sizeof why, "%s", qk_last_error());
        const char *from;
        if (gd->wrote_ckpt) {
            tc->resume = c->train.checkpoint;
            from = c->train.checkpoint;
        } else if (gd->resume) {
            tc->resume = gd->resume;
            from = gd->resume;
        } else {
            snap_restore(&snap, g);
            tc->resume = NULL;
            from = "the start of training";
        }
        gd->lr_scale *= 0.5f;
        r->rollbacks++;
        qk_log(QK_LOG_WARN, "divergence guard: %s; rolled back to %s, learning rates x%g (rollback %d of %d)", why,
               from, (double)gd->lr_scale, r->rollbacks, c->max_retries);
    }
    snap_free(&snap);
    return st;
}

static int64_t meta_int(const qk_graph *g, const char *key, int64_t dflt)
{
    const char *v = qk_graph_get_meta(g, key);
    char *end;
    long long x = v ? strtoll(v, &end, 10) : 0;
    return v && *v && !*end && x >= 0 ? (int64_t)x : dflt;
}

static qk_status set_meta_int(qk_graph *g, const char *key, int64_t v)
{
    char b[32];
    snprintf(b, sizeof b, "%lld", (long long)v);
    return qk_graph_set_meta(g, key, b);
}

/* --progressive: stages 8, 6, ... down to the narrowest site, the epochs
 * spread evenly, each stage one qk_train call (its own schedule) starting
 * from the previous stage's state. The stage and the steps of the stages
 * before it go into the metadata, so a checkpoint says where it was
 * written: --resume sets that stage's widths, lets qk_train restore the
 * stage's state (parameters, constants, optimizer, position) and goes on. max_steps counts over all stages. */
static qk_status train_progressive(guard *gd, qk_train_config *tc, const qk_dataset *train,
                                   const qk_dataset *test, qk_pool *pool, qk_qat_result *r)
{
    qk_graph *g = gd->g;
    const qk_qat_config *c = gd->c;
    int lo = min_bits(g), stages[8], ns = 0, done = 0, first = 0;
    for (int b = 8; b > lo && ns < 7; b -= 2)
        stages[ns++] = b;
    stages[ns++] = lo;
    if (c->train.resume) {
        first = (int)meta_int(g, "qkit.qat.stage", -1);
        gd->step_base = meta_int(g, "qkit.qat.step_base", -1);
        if (first < 0 || first >= ns || gd->step_base < 0)
            return qk_error(QK_ERR_FORMAT, "--resume %s: the checkpoint does not say which progressive stage wrote "
                            "it", c->train.resume);
        done = (int)meta_int(g, "qkit.qat.epoch_base", 0);
    }
    qk_status st = QK_OK;
    for (int k = 0; st == QK_OK && k < ns; k++) {
        int e = c->train.epochs * (k + 1) / ns - c->train.epochs * k / ns;
        if (e == 0)
            continue;
        if (k < first)
            continue; /* the checkpoint holds every value (constants too) as its stage left them */
        if ((st = qk_qat_set_stage_bits_(g, stages[k])) != QK_OK)
            break;
        if (c->train.max_steps && gd->step_base >= c->train.max_steps)
            break;
        tc->max_steps = c->train.max_steps ? c->train.max_steps - gd->step_base : 0;
        tc->epochs = e;
        tc->resume = gd->resume = k == first ? c->train.resume : NULL;
        if ((st = set_meta_int(g, "qkit.qat.stage", k)) != QK_OK ||
            (st = set_meta_int(g, "qkit.qat.step_base", gd->step_base)) != QK_OK ||
            (st = set_meta_int(g, "qkit.qat.epoch_base", done)) != QK_OK)
            break;
        qk_log(QK_LOG_INFO, "progressive QAT: stage %d of %d at %d bits, %d epochs%s%s", k + 1, ns, stages[k], e,
               tc->resume ? ", resumed from " : "", tc->resume ? tc->resume : "");
        gd->wrote_ckpt = 0;
        st = train_guarded(gd, tc, train, test, pool, r);
        gd->step_base += r->train.steps;
        done += r->train.epochs_done;
        if (st == QK_OK && r->train.epochs_done < e)
            break; /* stopped inside the stage (max_steps or on_epoch) */
    }
    r->train.steps = gd->step_base; /* all stages */
    r->train.epochs_done = done;
    return st;
}

qk_status qk_qat_train(qk_qat *q, const qk_dataset *train, const qk_dataset *test, qk_pool *pool,
                       qk_qat_result *r)
{
    memset(r, 0, sizeof *r);
    const qk_qat_config *c = qk_qat_config_(q);
    qk_status st = qk_qat_install_(q);
    if (st != QK_OK)
        return st;
    qk_graph *g = qk_qat_graph(q);
    char sig[256];
    qk_qat_signature_(q, sig, sizeof sig);
    guard gd = { .g = g, .c = c, .lr_scale = 1.0f, .q = q };
    gd.steps_epoch = (train->n + c->train.batch - 1) / c->train.batch;
    if (c->train.epoch_steps > 0 && c->train.epoch_steps < gd.steps_epoch)
        gd.steps_epoch = c->train.epoch_steps;
    if (gd.steps_epoch < 1)
        gd.steps_epoch = 1;
    if (c->train.resume && (st = check_resume(q, c->train.resume, &gd.lr_scale)) != QK_OK)
        return st;
    if ((st = qk_graph_set_meta(g, "qkit.qat.signature", sig)) != QK_OK)
        return st;
    if (c->freeze_observer > 0) {
        gd.freeze_step = gd.steps_epoch * c->freeze_observer;
        const char *fz = qk_graph_get_meta(g, "qkit.qat.observers_frozen");
        if (fz && strcmp(fz, "1") == 0 && (st = freeze_observers(&gd)) != QK_OK)
            return st;
    }
    if (c->freeze_bn > 0 && qk_qat_bn_freezable_(c)) {
        gd.bn_freeze_step = gd.steps_epoch * c->freeze_bn;
        const char *fz = qk_graph_get_meta(g, "qkit.qat.bn_frozen");
        if (fz && strcmp(fz, "1") == 0 && (st = freeze_bn(&gd)) != QK_OK)
            return st;
    }
    qk_train_config tc = c->train;
    tc.norm = qk_qat_norm_(q);
    tc.user = &gd;
    tc.param_opts = param_opts;
    tc.on_step = on_step;
    tc.on_epoch = on_epoch;
    gd.resume = c->train.resume;
    st = c->progressive ? train_progressive(&gd, &tc, train, test, pool, r)
                        : train_guarded(&gd, &tc, train, test, pool, r);
    r->lr_scale = gd.lr_scale;
    r->lr = c->train.lr;
    qk_qat_set_diverged_(q, st == QK_ERR_NUMERIC);
    return st;
}
