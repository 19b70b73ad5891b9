/* The trainer loop and evaluation.
 *
 * qk_train appends to the model graph a labels input (int64 [N]) and a
 * SoftmaxCrossEntropyLoss node (reduction mean) reading the model output,
 * plans once for cfg->batch with training = 1, and runs per step:
 *   batcher -> input/labels buffers (no copy of the dataset, no allocation),
 *   qk_graph_set_batch (only the last, partial batch changes it),
 *   forward, loss check (NaN/Inf -> QK_ERR_NUMERIC), backward,
 *   lr = qk_sched_lr(step), optimizer step.
 * After every epoch it evaluates on the test set with the same plan in
 * inference mode (BN running statistics; exec.training toggled, which every
 * operator reads per call), writes the checkpoint and calls on_epoch. The
 * loss node and labels input are removed before returning.
 *
 * Resume: the data order and augmentation of (epoch, batch) are pure
 * functions of the seed (src/data/batch.c), and the checkpoint holds every
 * parameter, BN statistic, optimizer buffer and the position, so a resumed
 * run computes bit-identical parameters to an uninterrupted one. */
#include "train_internal.h"
#include "qkit/ops.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void qk_train_config_default(qk_train_config *c)
{
    memset(c, 0, sizeof *c);
    c->optim.kind = QK_OPTIM_SGD;
    c->optim.momentum = 0.9f;
    c->optim.nesterov = 1;
    c->optim.weight_decay = 5e-4f;
    c->optim.beta1 = 0.9f;
    c->optim.beta2 = 0.999f;
    c->optim.eps = 1e-8f;
    c->lr = 0.05f;
    c->sched = QK_SCHED_COSINE;
    c->epochs = 8;
    c->batch = 128;
    c->aug.flip = 1;
    c->aug.crop_pad = 2;
    c->norm = qk_norm_default();
    c->seed = 1;
    c->progress = -1;
    c->kd_t = 4.0f;
    c->kd_w = 1.0f;
}

#define H_FIELD(h, x) ((h) = qk_fnv1a((h), &(x), sizeof(x)))

uint64_t qk_train_config_hash(const qk_train_config *c, int64_t n_train)
{
    uint64_t h = QK_FNV_INIT;
    int32_t kind = (int32_t)c->optim.kind, nest = c->optim.nesterov, sched = (int32_t)c->sched;
    int32_t epochs = c->epochs, batch = c->batch, flip = c->aug.flip, pad = c->aug.crop_pad;
    H_FIELD(h, kind);
    H_FIELD(h, c->optim.momentum);
    H_FIELD(h, nest);
    H_FIELD(h, c->optim.weight_decay);
    H_FIELD(h, c->optim.beta1);
    H_FIELD(h, c->optim.beta2);
    H_FIELD(h, c->optim.eps);
    H_FIELD(h, c->lr);
    H_FIELD(h, sched);
    H_FIELD(h, c->warmup_steps);
    H_FIELD(h, epochs);
    H_FIELD(h, c->epoch_steps);
    H_FIELD(h, batch);
    H_FIELD(h, flip);
    H_FIELD(h, pad);
    H_FIELD(h, c->norm.mean);
    H_FIELD(h, c->norm.std);
    H_FIELD(h, c->seed);
    H_FIELD(h, n_train);
    if (c->teacher) { /* only then: the hashes of runs without a teacher stay as they were */
        H_FIELD(h, c->kd_t);
        H_FIELD(h, c->kd_w);
    }
    return h ? h : 1; /* 0 means "do not check" internally */
}

/* ---- model input/output checks ---- */
static qk_status check_model(const qk_graph *g, const qk_dataset *ds, const char *what)
{
    if (g->n_inputs != 1 || g->n_outputs < 1)
        return qk_error(QK_ERR_ARG, "%s: the model must have one input and an output (has %d inputs, %d outputs)",
                        what, g->n_inputs, g->n_outputs);
    const qk_value *in = &g->values[g->inputs[0]];
    char sb[128];
    if (!ds->n || (!ds->images && !ds->fimages))
        return qk_error(QK_ERR_ARG, "%s: the dataset is empty", what);
    if (in->t.dtype != QK_F32)
        return qk_error(QK_ERR_SHAPE, "%s: model input '%s' is %s %s; float32 [N,C,H,W] expected", what, in->name,
                        qk_dtype_name(in->t.dtype), qk_shape_str(&in->t, sb, sizeof sb));
    qk_status st = qk_dataset_check_input(ds, "", in->name, in->t.ndim, in->t.dims);
    if (st != QK_OK)
        return qk_error_context(st, "%s", what);
    if (!in->dyn_batch)
        return qk_error(QK_ERR_SHAPE, "%s: model input '%s' has a fixed batch of %lld; export it with a dynamic "
                                      "batch axis", what, in->name, (long long)in->t.dims[0]);
    return QK_OK;
}

static int need_classes(const qk_dataset *ds)
{
    return ds->classes > 0 ? ds->classes : ds->labels ? QK_NUM_CLASSES : 1;
}

static qk_status check_output(const qk_graph *g, const qk_dataset *ds, const char *what)
{
    const qk_value *o = &g->values[g->outputs[0]];
    char sb[128];
    int nc = need_classes(ds);
    if (o->t.dtype != QK_F32 || o->t.ndim != 2 || o->t.dims[0] != g->batch || o->t.dims[1] < nc)
        return qk_error(QK_ERR_SHAPE, "%s: model output '%s' is %s %s; expected float32 [N,classes >= %d]%s", what,
                        o->name, qk_dtype_name(o->t.dtype), qk_shape_str(&o->t, sb, sizeof sb), nc,
                        ds->classes > 0 ? " (the data's class count)" : "");
    return QK_OK;
}

/* Correct predictions (first maximum, as torch.argmax) and the summed
 * cross-entropy (double) of m rows of logits. */
static void score_rows(const float *z, int64_t m, int64_t C, const int64_t *y, int64_t *correct, double *loss,
                       int32_t *pred)
{
    for (int64_t k = 0; k < m; k++) {
        const float *r = z + k * C;
        int64_t best = 0;
        for (int64_t c = 1; c < C; c++)
            if (r[c] > r[best])
                best = c;
        *correct += best == y[k];
        if (pred)
            pred[k] = (int32_t)best;
        if (loss) {
            double mx = r[best], s = 0;
            for (int64_t c = 0; c < C; c++)
                s += exp((double)r[c] - mx);
            *loss += mx + log(s) - (double)r[y[k]];
        }
    }
}

/* Forward over ds in order on a planned graph (training flag as set by the
 * caller); labels_v >= 0 is also filled (trainer's plan). */
static qk_status eval_run(qk_graph *g, int labels_v, const qk_dataset *ds, qk_norm norm, qk_eval_result *r,
                          int64_t *ybuf_scratch, int32_t *pred)
{
    memset(r, 0, sizeof *r);
    qk_value *in = &g->values[g->inputs[0]];
    qk_value *out = &g->values[g->outputs[0]];
    int64_t *ybuf = labels_v >= 0 ? (int64_t *)g->values[labels_v].t.data : ybuf_scratch;
    const int64_t B = g->max_batch;
    int64_t *items = qk_malloc((size_t)B * sizeof *items);
    if (!items)
        return qk_error(QK_ERR_NOMEM, "evaluate: out of memory");
    double compute = 0, loss = 0;
    for (int64_t start = 0; start < ds->n; start += B) {
        int64_t m = ds->n - start < B ? ds->n - start : B;
        float *x = qk_f32(&in->t);
        for (int64_t k = 0; k < m; k++)
            items[k] = start + k;
        qk_status st = qk_dataset_fill(ds, &norm, items, m, x, ybuf, g->exec.pool);
        if (st == QK_OK)
            st = qk_graph_set_batch(g, m);
        double t0 = qk_now();
        if (st == QK_OK)
            st = qk_graph_forward(g);
        compute += qk_now() - t0;
        if (st != QK_OK) {
            qk_free(items);
            return st;
        }
        score_rows(qk_f32(&out->t), m, out->t.dims[1], ybuf, &r->correct, &loss, pred ? pred + start : NULL);
    }
    qk_free(items);
    r->images = ds->n;
    r->top1 = (double)r->correct / (double)ds->n;
    r->loss = loss / (double)ds->n;
    r->seconds = compute;
    r->images_per_s = compute > 0 ? (double)ds->n / compute : 0;
    return QK_OK;
}

qk_status qk_evaluate(qk_graph *g, const qk_dataset *ds, qk_norm norm, int batch, qk_pool *pool, qk_eval_result *r)
{
    return qk_evaluate_preds(g, ds, norm, batch, pool, r, NULL);
}

qk_status qk_evaluate_preds(qk_graph *g, const qk_dataset *ds, qk_norm norm, int batch, qk_pool *pool,
                            qk_eval_result *r, int32_t *pred)
{
    memset(r, 0, sizeof *r);
    if (batch < 1)
        return qk_error(QK_ERR_ARG, "evaluate: batch must be at least 1 (got %d)", batch);
    if (qk_norm_check(&norm, qk_dataset_channels(ds)) != QK_OK)
        return qk_error_context(QK_ERR_ARG, "evaluate");
    qk_status st = check_model(g, ds, "evaluate");
    if (st != QK_OK)
        return st;
    if (!qk_dataset_has_labels(ds))
        return qk_error(QK_ERR_ARG, "evaluate: the data has no labels (measure agreement with a float model: "
                        "qk_evaluate_agreement)");
    if (batch > ds->n)
        batch = (int)ds->n;
    st = qk_graph_bind(g, &qk_float_op_table, 1);
    if (st != QK_OK)
        return st;
    if (!(g->planned && !g->training && g->max_batch >= batch && g->exec.pool == pool)) {
        st = qk_graph_plan(g, batch, 0, pool);
        if (st != QK_OK)
            return qk_error_context(st, "evaluate");
    }
    st = check_output(g, ds, "evaluate");
    if (st != QK_OK)
        return st;
    int64_t *ybuf = qk_malloc((size_t)g->max_batch * sizeof(int64_t));
    if (!ybuf)
        return qk_error(QK_ERR_NOMEM, "evaluate: out of memory");
    st = eval_run(g, -1, ds, norm, r, ybuf, pred);
    qk_free(ybuf);
    return st;
}

/* ---- loss attachment ---- */
typedef struct attach {
    int n_values0, n_nodes0, n_inputs0;
    int labels, loss, node;
    int teacher;    /* distillation: the teacher-logits input, else -1 */
    int active;
} attach;

/* The same rank and dimensions after the batch axis. */
static int same_sample_shape(const qk_tensor *a, const qk_tensor *b)
{
    if (a->ndim != b->ndim || a->ndim < 1)
        return 0;
    for (int i = 1; i < a->ndim; i++)
        if (a->dims[i] != b->dims[i])
            return 0;
    return 1;
}

/* With a teacher (planned, its output [batch, K]): a teacher-logits input
 * [N, K], kd = QkDistillLoss(output, teacher logits), loss = Add(ce, kd). */
static qk_status kd_attach(qk_graph *g, const qk_train_config *c, attach *a)
{
    const qk_tensor *to = &c->teacher->values[c->teacher->outputs[0]].t;
    int64_t dims[2] = { -1, to->ndim == 2 ? to->dims[1] : 0 };
    char *tn = qk_graph_unique_name(g, "teacher_logits"), *kn = qk_graph_unique_name(g, "loss_kd"),
         *cn = qk_graph_unique_name(g, "loss_total");
    int ok = tn && kn && cn;
    a->teacher = ok ? qk_graph_add_input(g, tn, QK_F32, 2, dims) : -1;
    int kd = a->teacher >= 0 ? qk_graph_add_value(g, kn, QK_VALUE_ACT) : -1;
    int tot = kd >= 0 ? qk_graph_add_value(g, cn, QK_VALUE_ACT) : -1;
    int in[2] = { g->outputs[0], a->teacher }, k = tot >= 0 ? qk_graph_add_node(g, "QkDistillLoss", kn, 2, in, 1, &kd) : -1;
    qk_status st = k >= 0 && (g->nodes[k].domain = qk_strdup("ai.qkit")) ? QK_OK : QK_ERR_NOMEM;
    if (st == QK_OK)
        st = qk_node_set_float(g, k, "T", c->kd_t);
    if (st == QK_OK)
        st = qk_node_set_float(g, k, "w", c->kd_w);
    int sum[2] = { a->loss, kd };
    if (st == QK_OK && qk_graph_add_node(g, "Add", cn, 2, sum, 1, &tot) < 0)
        st = QK_ERR_NOMEM;
    qk_free(tn);
    qk_free(kn);
    qk_free(cn);
    if (st != QK_OK)
        return qk_error_context(st, "train: adding the distillation loss");
    a->loss = tot;
    return QK_OK;
}

static qk_status loss_attach(qk_graph *g, attach *a)
{
    memset(a, 0, sizeof *a);
    a->teacher = -1;
    a->n_values0 = g->n_values;
    a->n_nodes0 = g->n_nodes;
    a->n_inputs0 = g->n_inputs;
    a->active = 1;
    char *ln = qk_graph_unique_name(g, "labels");
    char *lo = qk_graph_unique_name(g, "loss");
    if (!ln || !lo) {
        qk_free(ln);
        qk_free(lo);
        return qk_error(QK_ERR_NOMEM, "train: out of memory");
    }
    a->labels = qk_graph_add_input(g, ln, QK_I64, 1, (const int64_t[]){ -1 });
    a->loss = a->labels >= 0 ? qk_graph_add_value(g, lo, QK_VALUE_ACT) : -1;
    int in[2] = { g->outputs[0], a->labels };
    a->node = a->loss >= 0 ? qk_graph_add_node(g, "SoftmaxCrossEntropyLoss", lo, 2, in, 1, &a->loss) : -1;
    qk_free(ln);
    qk_free(lo);
    if (a->node < 0)
        return qk_error_context(QK_ERR_NOMEM, "train: adding the loss");
    return qk_node_set_string(g, a->node, "reduction", "mean");
}

/* Remove what loss_attach added (they are the last values/nodes/input).
 * The graph API has no removal, so this pops them here. */
static void loss_detach(qk_graph *g, attach *a)
{
    if (!a->active)
        return;
    qk_graph_unplan(g);
    for (int i = g->n_nodes - 1; i >= a->n_nodes0; i--)
        qk_node_clear(&g->nodes[i]);
    g->n_nodes = a->n_nodes0;
    for (int i = g->n_values - 1; i >= a->n_values0; i--) {
        qk_value *v = &g->values[i];
        qk_free(v->name);
        qk_tensor_free(&v->t);
        qk_tensor_free(&v->grad);
    }
    g->n_values = a->n_values0;
    g->n_inputs = a->n_inputs0;
    qk_free(g->order);
    g->order = NULL;
    a->active = 0;
}

/* ---- the loop ---- */
typedef struct run {
    qk_graph *g;
    const qk_train_config *c;
    qk_optim *opt;
    qk_batcher bt;
    attach at;
    qk_train_state s;
    int64_t steps_epoch, total;
    int progress;
} run;

static qk_status validate(const qk_train_config *c, const qk_dataset *train, const qk_dataset *test)
{
    if (c->batch < 1)
        return qk_error(QK_ERR_ARG, "train: batch must be at least 1 (got %d)", c->batch);
    if (c->epochs < 1)
        return qk_error(QK_ERR_ARG, "train: epochs must be at least 1 (got %d)", c->epochs);
    if (!(c->lr > 0.0f) || !isfinite(c->lr))
        return qk_error(QK_ERR_ARG, "train: learning rate must be > 0 (got %g)", (double)c->lr);
    if (c->warmup_steps < 0 || c->epoch_steps < 0 || c->max_steps < 0)
        return qk_error(QK_ERR_ARG, "train: warmup, epoch_steps and max_steps must be >= 0");
    if (c->sched != QK_SCHED_COSINE && c->sched != QK_SCHED_CONSTANT)
        return qk_error(QK_ERR_ARG, "train: unknown schedule %d", (int)c->sched);
    if (!train || train->n < 1)
        return qk_error(QK_ERR_ARG, "train: the training set is empty");
    if (test && test->n > 0 && (test->h != train->h || test->w != train->w))
        return qk_error(QK_ERR_SHAPE, "train: test images are %dx%d, training images %dx%d", test->h, test->w,
                        train->h, train->w);
    return QK_OK;
}

static void setup_params(run *r)
{
    if (!r->c->param_opts)
        return;
    for (int i = 0; i < r->opt->n; i++) {
        qk_optim_param *q = &r->opt->p[i];
        qk_param_opts o = q->o;
        r->c->param_opts(r->c->user, r->g, q->value, &o);
        if (qk_optim_set_param(r->opt, q->value, &o) != QK_OK)
            qk_log(QK_LOG_WARN, "train: %s (parameter options ignored)", qk_last_error());
    }
}

static qk_status test_eval(run *r, const qk_dataset *test, qk_eval_result *e)
{
    r->g->exec.training = 0;
    qk_status st = eval_run(r->g, r->at.labels, test, r->c->norm, e, NULL, NULL);
    r->g->exec.training = 1;
    return st;
}

static qk_status one_step(run *r, int64_t i, float *lr_out, double *compute)
{
    qk_graph *g = r->g;
    float *x = qk_f32(&g->values[g->inputs[0]].t);
    int64_t *y = g->values[r->at.labels].t.data;
    int64_t m;
    qk_status st = qk_batcher_get(&r->bt, i, x, y, &m);
    if (st == QK_OK)
        st = qk_graph_set_batch(g, m);
    if (st != QK_OK)
        return st;
    double t0 = qk_now();
    if (r->at.teacher >= 0) { /* the teacher's logits on the same images */
        qk_graph *t = r->c->teacher;
        qk_value *tv = &t->values[t->inputs[0]];
        memcpy(tv->t.data, x, (size_t)m * (size_t)(qk_tensor_numel(&tv->t) / tv->t.dims[0]) * sizeof(float));
        if ((st = qk_graph_set_batch(t, m)) != QK_OK || (st = qk_graph_forward(t)) != QK_OK)
            return qk_error_context(st, "the teacher model");
        const qk_tensor *to = &t->values[t->outputs[0]].t;
        memcpy(g->values[r->at.teacher].t.data, to->data, qk_tensor_bytes(to));
    }
    st = qk_graph_forward(g);
    if (st != QK_OK)
        return st;
    float loss = qk_f32(&g->values[r->at.loss].t)[0];
    float lr = qk_sched_lr(r->c->sched, r->c->lr, r->c->warmup_steps, r->s.step, r->total);
    if (!isfinite(loss))
        return qk_error(QK_ERR_NUMERIC,
                        "training diverged: the loss is %s at step %lld (epoch %lld, batch %lld) with learning rate "
                        "%.4g; try a lower learning rate (e.g. --lr %.3g)",
                        isnan(loss) ? "NaN" : "infinite", (long long)r->s.step + 1, (long long)r->s.epoch + 1,
                        (long long)i + 1, (double)lr, (double)r->c->lr / 4);
    st = qk_graph_backward(g, r->at.loss);
    if (st == QK_OK)
        st = qk_optim_step(r->opt, lr);
    *compute += qk_now() - t0;
    if (st != QK_OK)
        return st;
    const qk_value *out = &g->values[g->outputs[0]];
    score_rows(qk_f32(&out->t), m, out->t.dims[1], y, &r->s.ep_correct, NULL, NULL);
    r->s.ep_loss_sum += (double)loss * (double)m;
    r->s.ep_seen += m;
    r->s.step++;
    r->s.batch_in_epoch = i + 1;
    *lr_out = lr;
    if (r->c->on_step)
        return r->c->on_step(r->c->user, g, r->s.step, loss);
    return QK_OK;
}

static qk_status train_loop(run *r, const qk_dataset *test, qk_pool *pool, qk_train_result *res)
{
    const qk_train_config *c = r->c;
    qk_graph *g = r->g;
    double compute_all = 0;
    int64_t images_all = 0, last_eval_step = -1;
    int stop = 0;
    float lr = c->lr;
    (void)pool;
    while (r->s.epoch < c->epochs && !stop) {
        if (c->max_steps && r->s.step >= c->max_steps) {
            stop = 1;
            break;
        }
        double te = qk_now(), compute = 0;
        int64_t seen0 = r->s.ep_seen;
        qk_batcher_epoch(&r->bt, r->s.epoch);
        qk_progress pr;
        char label[48], extra[96];
        snprintf(label, sizeof label, "epoch %lld/%d", (long long)r->s.epoch + 1, c->epochs);
        int64_t ep_images = r->steps_epoch * c->batch < r->bt.ds->n ? r->steps_epoch * c->batch : r->bt.ds->n;
        qk_progress_begin(&pr, label, ep_images, r->progress);
        for (int64_t i = r->s.batch_in_epoch; i < r->steps_epoch; i++) {
            if (c->max_steps && r->s.step >= c->max_steps) {
                stop = 1;
                break;
            }
            qk_status st = one_step(r, i, &lr, &compute);
            if (st != QK_OK) {
                qk_progress_end(&pr);
                return st;
            }
            if (r->progress) {
                snprintf(extra, sizeof extra, "loss %.4f acc %.4f lr %.4g", r->s.ep_loss_sum / (double)r->s.ep_seen,
                         (double)r->s.ep_correct / (double)r->s.ep_seen, (double)lr);
                qk_progress_update(&pr, r->s.ep_seen, extra);
            }
        }
        qk_progress_end(&pr);
        compute_all += compute;
        images_all += r->s.ep_seen - seen0;
        if (stop) {
            /* stopped inside an epoch (max_steps): its loss so far */
            if (r->s.ep_seen > 0)
                res->train_loss = r->s.ep_loss_sum / (double)r->s.ep_seen;
            if (c->checkpoint && r->s.batch_in_epoch > 0) {
                /* as after a whole epoch (whose evaluation read the test images): no checkpoint
                 * before the test data decoded (background decoding, data.h) */
                qk_status st = test ? qk_dataset_wait(test, 0, test->n) : QK_OK;
                if (st == QK_OK)
                    st = qk_ckpt_save(c->checkpoint, g, r->opt, &r->s);
                if (st != QK_OK)
                    return st;
            }
            break;
        }
        /* epoch complete */
        qk_epoch_stats es = { 0 };
        es.epoch = (int)r->s.epoch + 1;
        es.epochs = c->epochs;
        es.step = r->s.step;
        es.total_steps = r->total;
        es.lr = lr;
        es.train_loss = r->s.ep_seen ? r->s.ep_loss_sum / (double)r->s.ep_seen : 0;
        es.train_top1 = r->s.ep_seen ? (double)r->s.ep_correct / (double)r->s.ep_seen : 0;
        es.test_top1 = es.test_loss = -1;
        es.images_per_s = compute > 0 ? (double)(r->s.ep_seen - seen0) / compute : 0;
        res->train_loss = es.train_loss;
        if (test && test->n > 0) {
            qk_eval_result e;
            qk_status st = test_eval(r, test, &e);
            if (st != QK_OK)
                return qk_error_context(st, "evaluation after epoch %d", es.epoch);
            es.test_top1 = res->test_top1 = e.top1;
            es.test_loss = res->test_loss = e.loss;
            last_eval_step = r->s.step;
        }
        r->s.epoch++;
        r->s.batch_in_epoch = 0;
        r->s.ep_loss_sum = 0;
        r->s.ep_correct = r->s.ep_seen = 0;
        res->epochs_done = (int)r->s.epoch;
        if (c->checkpoint) {
            qk_status st = qk_ckpt_save(c->checkpoint, g, r->opt, &r->s);
            if (st != QK_OK)
                return st;
        }
        es.seconds = qk_now() - te;
        qk_log(QK_LOG_INFO, "epoch %d/%d: train loss %.4f acc %.4f, test top-1 %.4f loss %.4f, %.0f images/s",
               es.epoch, es.epochs, es.train_loss, es.train_top1, es.test_top1, es.test_loss, es.images_per_s);
        if (c->on_epoch && c->on_epoch(c->user, &es))
            stop = r->s.epoch < c->epochs;
    }
    res->stopped_early = stop;
    res->steps = r->s.step;
    res->epochs_done = (int)r->s.epoch;
    res->images_per_s = compute_all > 0 ? (double)images_all / compute_all : 0;
    if (test && test->n > 0 && last_eval_step != r->s.step) {
        qk_eval_result e;
        qk_status st = test_eval(r, test, &e);
        if (st != QK_OK)
            return qk_error_context(st, "final evaluation");
        res->test_top1 = e.top1;
        res->test_loss = e.loss;
    }
    return QK_OK;
}

qk_status qk_train(qk_graph *g, const qk_dataset *train, const qk_dataset *test, const qk_train_config *cfg,
                   qk_pool *pool, qk_train_result *res)
{
    double t0 = qk_now();
    memset(res, 0, sizeof *res);
    res->test_top1 = res->test_loss = -1;
    qk_status st = validate(cfg, train, test);
    if (st == QK_OK)
        st = check_model(g, train, "train");
    if (st == QK_OK && test && test->n > 0)
        st = check_model(g, test, "train (test set)");
    if (st == QK_OK && (!qk_dataset_has_labels(train) || (test && test->n > 0 && !qk_dataset_has_labels(test))))
        st = qk_error(QK_ERR_ARG, "train: the data has no labels");
    if (st != QK_OK)
        return st;
    run r;
    memset(&r, 0, sizeof r);
    r.g = g;
    r.c = cfg;
    r.progress = cfg->progress < 0 ? qk_stderr_is_tty() : cfg->progress != 0;
    r.steps_epoch = (train->n + cfg->batch - 1) / cfg->batch;
    if (cfg->epoch_steps > 0 && cfg->epoch_steps < r.steps_epoch)
        r.steps_epoch = cfg->epoch_steps;
    r.total = r.steps_epoch * cfg->epochs;
    r.s.config_hash = qk_train_config_hash(cfg, train->n);
    r.s.seed = cfg->seed;

    if (cfg->norm.nc > 0) {
        float m[QK_MAX_CHANNELS], sd[QK_MAX_CHANNELS];
        for (int k = 0; k < cfg->norm.nc; k++)
            m[k] = qk_norm_mean(&cfg->norm, k), sd[k] = qk_norm_std(&cfg->norm, k);
        st = qk_graph_set_norm_ch(g, cfg->norm.nc, m, sd);
    } else {
        st = qk_graph_set_norm(g, cfg->norm.mean, cfg->norm.std);
    }
    if (st == QK_OK && cfg->teacher) {
        const qk_graph *t = cfg->teacher;
        if (t->n_inputs != 1 || t->n_outputs < 1)
            st = qk_error(QK_ERR_ARG, "train: the teacher model needs one input and an output");
        else if ((st = qk_graph_plan(cfg->teacher, cfg->batch, 0, pool)) != QK_OK)
            st = qk_error_context(st, "train: planning the teacher model");
        else if (!same_sample_shape(&t->values[t->inputs[0]].t, &g->values[g->inputs[0]].t))
            st = qk_error(QK_ERR_SHAPE, "train: the teacher's input '%s' and the model's '%s' differ in shape",
                          t->values[t->inputs[0]].name, g->values[g->inputs[0]].name);
    }
    if (st == QK_OK)
        st = loss_attach(g, &r.at);
    if (st == QK_OK && cfg->teacher)
        st = kd_attach(g, cfg, &r.at);
    if (st == QK_OK)
        st = qk_graph_bind(g, &qk_float_op_table, 1);
    if (st == QK_OK)
        st = qk_graph_plan(g, cfg->batch, 1, pool);
    if (st == QK_OK)
        st = check_output(g, train, "train");
    if (st == QK_OK)
        st = qk_optim_create(g, &cfg->optim, &r.opt);
    if (st == QK_OK) {
        setup_params(&r);
        st = qk_batcher_init(&r.bt, train, cfg->batch, 1, cfg->seed, cfg->norm, &cfg->aug);
    }
    if (st == QK_OK && cfg->resume) {
        st = qk_ckpt_load(cfg->resume, g, r.opt, &r.s, r.s.config_hash);
        if (st == QK_OK && (r.s.batch_in_epoch >= r.steps_epoch || r.s.batch_in_epoch < 0 || r.s.epoch < 0))
            st = qk_error(QK_ERR_FORMAT, "checkpoint %s: position epoch %lld batch %lld is invalid", cfg->resume,
                          (long long)r.s.epoch, (long long)r.s.batch_in_epoch);
        if (st == QK_OK)
            qk_log(QK_LOG_INFO, "resuming from %s at epoch %lld, batch %lld (step %lld)", cfg->resume,
                   (long long)r.s.epoch + 1, (long long)r.s.batch_in_epoch, (long long)r.s.step);
    }
    if (st == QK_OK)
        st = train_loop(&r, test, pool, res);
    res->seconds = qk_now() - t0;
    qk_batcher_free(&r.bt);
    qk_optim_destroy(r.opt);
    loss_detach(g, &r.at);
    if (cfg->teacher)
        qk_graph_unplan(cfg->teacher);
    return st;
}
