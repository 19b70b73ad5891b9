/* Training layer: optimizer numerics against hand-computed values (SGD
 * nesterov with weight decay and its no_decay exclusion, Adam with bias
 * correction), the cosine schedule, checkpoints (exact resume at an epoch
 * boundary and mid-epoch, with another thread count; config/arch mismatch;
 * corruption), NaN detection, parameter groups, and a seeded end-to-end run
 * on real Fashion-MNIST whose accuracy must land in a stated band. */
#include "qkit/ops.h"
#include "qkit/train.h"
#include "qkit/zoo.h"
#include "qt.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ---- optimizer on a two-parameter graph with hand-set gradients ---- */
static qk_graph *tiny_graph(int *w, int *b)
{
    qk_graph *g;
    qk_graph_create(&g);
    qk_tensor t;
    qk_tensor_alloc(&t, QK_F32, 1, (int64_t[]){ 3 });
    for (int i = 0; i < 3; i++)
        qk_f32(&t)[i] = 1.0f;
    *w = qk_graph_add_init(g, "w", QK_VALUE_PARAM, &t);
    qk_tensor_alloc(&t, QK_F32, 1, (int64_t[]){ 2 });
    qk_f32(&t)[0] = qk_f32(&t)[1] = 1.0f;
    *b = qk_graph_add_init(g, "b", QK_VALUE_PARAM, &t);
    g->values[*b].no_decay = 1;
    qk_tensor_alloc(&g->values[*w].grad, QK_F32, 1, (int64_t[]){ 3 });
    qk_tensor_alloc(&g->values[*b].grad, QK_F32, 1, (int64_t[]){ 2 });
    for (int i = 0; i < 3; i++)
        qk_f32(&g->values[*w].grad)[i] = 0.5f;
    for (int i = 0; i < 2; i++)
        qk_f32(&g->values[*b].grad)[i] = 0.5f;
    return g;
}

static void test_sgd(void)
{
    int w, b;
    qk_graph *g = tiny_graph(&w, &b);
    qk_optim_config c = { QK_OPTIM_SGD, 0.9f, 1, 0.01f, 0.9f, 0.999f, 1e-8f };
    qk_optim *o;
    QT_OK(qk_optim_create(g, &c, &o));
    /* Hand computation, lr 0.1, m 0.9, wd 0.01, grad 0.5, p0 1:
     * decayed w: step 1 g' = 0.51, buf 0.51, d = 0.51 + 0.9*0.51 = 0.969, p = 0.9031
     *            step 2 g' = 0.509031, buf = 0.459 + 0.509031 = 0.968031,
     *            d = 0.509031 + 0.8712279 = 1.3802589, p = 0.76507411
     * no_decay b: step 1 p = 1 - 0.1*0.95 = 0.905; step 2 buf 0.95, d 1.355, p 0.7695 */
    QT_OK(qk_optim_step(o, 0.1f));
    QT_NEAR(qk_f32(&g->values[w].t)[2], 0.9031, 1e-6, "sgd w step 1");
    QT_NEAR(qk_f32(&g->values[b].t)[1], 0.905, 1e-6, "sgd b step 1 (no decay)");
    QT_OK(qk_optim_step(o, 0.1f));
    QT_NEAR(qk_f32(&g->values[w].t)[0], 0.76507411, 1e-6, "sgd w step 2");
    QT_NEAR(qk_f32(&g->values[b].t)[0], 0.7695, 1e-6, "sgd b step 2 (no decay)");
    QT_CHECK(qk_optim_step_count(o) == 2, "step count");

    /* plain momentum (no nesterov) from scratch, and a parameter group:
     * b gets lr x 0.5; frozen w stays. buf = g; p -= lr*buf: b: 1 - 0.05*0.5 */
    qk_optim_destroy(o);
    c.nesterov = 0;
    QT_OK(qk_optim_create(g, &c, &o));
    qk_param_opts po;
    QT_OK(qk_optim_get_param(o, b, &po));
    QT_CHECK(po.weight_decay == 0.0f && po.lr_mult == 1.0f, "no_decay default opts");
    po.lr_mult = 0.5f;
    QT_OK(qk_optim_set_param(o, b, &po));
    QT_OK(qk_optim_get_param(o, w, &po));
    QT_CHECK(po.weight_decay == 0.01f, "decay default %g", (double)po.weight_decay);
    po.frozen = 1;
    QT_OK(qk_optim_set_param(o, w, &po));
    float b0 = qk_f32(&g->values[b].t)[0], w0 = qk_f32(&g->values[w].t)[0];
    QT_OK(qk_optim_step(o, 0.1f));
    QT_NEAR(qk_f32(&g->values[b].t)[0], b0 - 0.05 * 0.5, 1e-7, "momentum step 1 with lr_mult");
    QT_CHECK(qk_f32(&g->values[w].t)[0] == w0, "frozen parameter unchanged");
    QT_OK(qk_optim_step(o, 0.1f)); /* buf = 0.9*0.5 + 0.5 = 0.95 */
    QT_NEAR(qk_f32(&g->values[b].t)[0], b0 - 0.025 - 0.05 * 0.95, 1e-6, "momentum step 2");
    QT_CHECK(qk_optim_set_param(o, 12345, &po) == QK_ERR_NOTFOUND, "untracked value");
    qk_optim_destroy(o);
    qk_optim_config bad = c;
    bad.momentum = 0;
    bad.nesterov = 1;
    QT_CHECK(qk_optim_create(g, &bad, &o) == QK_ERR_ARG, "nesterov without momentum refused");
    qk_graph_destroy(g);
}

static void test_adam(void)
{
    int w, b;
    qk_graph *g = tiny_graph(&w, &b);
    qk_optim_config c = { QK_OPTIM_ADAM, 0, 0, 0.0f, 0.9f, 0.999f, 1e-8f };
    qk_optim *o;
    QT_OK(qk_optim_create(g, &c, &o));
    /* constant gradient, no decay: bias-corrected m_hat = 0.5 and v_hat =
     * 0.25 every step, so each step moves lr * 0.5 / (0.5 + 1e-8) = lr. */
    for (int t = 1; t <= 3; t++) {
        QT_OK(qk_optim_step(o, 0.01f));
        QT_NEAR(qk_f32(&g->values[w].t)[1], 1.0 - 0.01 * t, 2e-6, "adam constant-gradient step");
    }
    qk_optim_destroy(o);

    /* with L2 weight decay 0.1 (PyTorch Adam weight_decay, not AdamW):
     * step 1: g' = 0.6 -> m_hat 0.6, v_hat 0.36 -> p = 0.99 (b: no decay, 0.99 too)
     * step 2: g' = 0.5 + 0.099 = 0.599, m = 0.054 + 0.0599 = 0.1139,
     *         v = 0.999*0.00036 + 0.001*0.358801 = 0.000718441,
     *         m_hat = 0.1139/0.19 = 0.59947368, v_hat = 0.000718441/0.001999 = 0.35940020,
     *         p = 0.99 - 0.01 * 0.59947368 / 0.59950000 = 0.98000044 */
    qk_graph_destroy(g);
    g = tiny_graph(&w, &b);
    c.weight_decay = 0.1f;
    QT_OK(qk_optim_create(g, &c, &o));
    QT_OK(qk_optim_step(o, 0.01f));
    QT_NEAR(qk_f32(&g->values[w].t)[0], 0.99, 1e-6, "adam wd step 1");
    QT_NEAR(qk_f32(&g->values[b].t)[0], 0.99, 1e-6, "adam no_decay step 1");
    QT_OK(qk_optim_step(o, 0.01f));
    QT_NEAR(qk_f32(&g->values[w].t)[0], 0.98000044, 2e-6, "adam wd step 2");
    QT_NEAR(qk_f32(&g->values[b].t)[0], 0.98, 2e-6, "adam no_decay step 2");
    qk_optim_destroy(o);
    qk_graph_destroy(g);
}

static void test_sched(void)
{
    /* CosineAnnealingLR(T_max = 100, eta_min 0), stepped per iteration */
    QT_NEAR(qk_sched_lr(QK_SCHED_COSINE, 0.05f, 0, 0, 100), 0.05, 1e-9, "cos step 0");
    QT_NEAR(qk_sched_lr(QK_SCHED_COSINE, 0.05f, 0, 25, 100), 0.0426776695, 1e-8, "cos step 25");
    QT_NEAR(qk_sched_lr(QK_SCHED_COSINE, 0.05f, 0, 50, 100), 0.025, 1e-8, "cos step 50");
    QT_NEAR(qk_sched_lr(QK_SCHED_COSINE, 0.05f, 0, 99, 100), 1.2336e-5, 1e-8, "cos step 99");
    QT_NEAR(qk_sched_lr(QK_SCHED_COSINE, 0.05f, 0, 100, 100), 0.0, 1e-12, "cos end");
    /* 10 warm-up steps then cosine over the remaining 100 */
    QT_NEAR(qk_sched_lr(QK_SCHED_COSINE, 0.05f, 10, 0, 110), 0.005, 1e-9, "warmup 0");
    QT_NEAR(qk_sched_lr(QK_SCHED_COSINE, 0.05f, 10, 9, 110), 0.05, 1e-9, "warmup 9");
    QT_NEAR(qk_sched_lr(QK_SCHED_COSINE, 0.05f, 10, 10, 110), 0.05, 1e-9, "after warmup");
    QT_NEAR(qk_sched_lr(QK_SCHED_COSINE, 0.05f, 10, 60, 110), 0.025, 1e-8, "warmup + cos mid");
    QT_NEAR(qk_sched_lr(QK_SCHED_CONSTANT, 0.05f, 0, 77, 100), 0.05, 1e-9, "constant");
}

/* ---- trainer ---- */
static int same_params(const qk_graph *a, const qk_graph *b)
{
    if (a->n_values != b->n_values)
        return 0;
    for (int i = 0; i < a->n_values; i++) {
        const qk_value *x = &a->values[i], *y = &b->values[i];
        if (x->kind != QK_VALUE_PARAM && x->kind != QK_VALUE_CONST)
            continue;
        if (memcmp(x->t.data, y->t.data, qk_tensor_bytes(&x->t)) != 0) {
            fprintf(stderr, "differs: %s\n", x->name);
            return 0;
        }
    }
    return 1;
}

static int count_epochs(void *user, const qk_epoch_stats *s)
{
    int *n = user;
    (*n)++;
    return s->train_loss < 0; /* never stops */
}

static void test_resume(const qk_dataset *train, const qk_dataset *test, qk_pool *p1, qk_pool *p2,
                        const char *dir)
{
    qk_dataset tr = qk_dataset_view(train, 0, 300), te = qk_dataset_view(test, 0, 100);
    char ck_a[512], ck_b[512], ck_c[512];
    snprintf(ck_a, sizeof ck_a, "%s/a.qkck", dir);
    snprintf(ck_b, sizeof ck_b, "%s/b.qkck", dir);
    snprintf(ck_c, sizeof ck_c, "%s/c.qkck", dir);
    qk_train_config c;
    qk_train_config_default(&c);
    c.epochs = 2;
    c.batch = 64; /* 5 steps per epoch, the last one partial (44) */
    c.progress = 0;
    c.checkpoint = ck_a;
    int n_ep = 0;
    c.user = &n_ep;
    c.on_epoch = count_epochs;

    /* A: uninterrupted, 2 threads */
    qk_graph *a = NULL, *b = NULL, *cg = NULL;
    QT_OK(qk_zoo_build("resnet8", 5, &a));
    int nv0 = a->n_values, nn0 = a->n_nodes;
    qk_train_result ra, rb, rc;
    QT_OK(qk_train(a, &tr, &te, &c, p2, &ra));
    QT_CHECK(ra.epochs_done == 2 && ra.steps == 10 && !ra.stopped_early, "A: %d epochs %lld steps",
             ra.epochs_done, (long long)ra.steps);
    QT_CHECK(n_ep == 2, "on_epoch called %d times", n_ep);
    QT_CHECK(a->n_values == nv0 && a->n_nodes == nn0 && a->n_inputs == 1 && !a->planned,
             "loss/labels removed, graph unplanned");
    QT_CHECK(ra.test_top1 > 0.1 && ra.test_top1 <= 1.0, "A test top-1 %g", ra.test_top1);
    qk_ckpt_info info;
    QT_OK(qk_checkpoint_info(ck_a, &info));
    QT_CHECK(info.epoch == 2 && info.step == 10 && info.batch_in_epoch == 0 && strcmp(info.arch, "resnet8") == 0,
             "info: epoch %lld step %lld arch %s", (long long)info.epoch, (long long)info.step, info.arch);

    /* B: stop after epoch 1 (max_steps), resume on 1 thread from a fresh graph */
    QT_OK(qk_zoo_build("resnet8", 5, &b));
    c.checkpoint = ck_b;
    c.max_steps = 5;
    QT_OK(qk_train(b, &tr, &te, &c, p2, &rb));
    QT_CHECK(rb.stopped_early && rb.epochs_done == 1 && rb.steps == 5, "B stops after epoch 1");
    qk_graph_destroy(b);
    QT_OK(qk_zoo_build("resnet8", 99, &b)); /* other init: the checkpoint overwrites it */
    c.max_steps = 0;
    c.resume = ck_b;
    QT_OK(qk_train(b, &tr, &te, &c, p1, &rb));
    QT_CHECK(rb.steps == 10 && rb.epochs_done == 2, "B resumed to %lld steps", (long long)rb.steps);
    QT_CHECK(same_params(a, b), "epoch-boundary resume: parameters and BN statistics bit-identical");
    QT_CHECK(rb.test_top1 == ra.test_top1 && rb.test_loss == ra.test_loss, "B accuracy %g vs %g", rb.test_top1,
             ra.test_top1);

    /* C: stop mid-epoch 1 (step 3), resume */
    c.resume = NULL;
    c.checkpoint = ck_c;
    c.max_steps = 3;
    QT_OK(qk_zoo_build("resnet8", 5, &cg));
    QT_OK(qk_train(cg, &tr, &te, &c, p2, &rc));
    QT_CHECK(rc.train_loss > 0.5 && rc.train_loss < 5, "mid-epoch stop reports the partial epoch's loss (%g)",
             rc.train_loss);
    QT_OK(qk_checkpoint_info(ck_c, &info));
    QT_CHECK(info.epoch == 0 && info.batch_in_epoch == 3 && info.step == 3, "mid-epoch checkpoint position");
    c.max_steps = 0;
    c.resume = ck_c;
    QT_OK(qk_train(cg, &tr, &te, &c, p2, &rc));
    QT_CHECK(same_params(a, cg), "mid-epoch resume: bit-identical");
    QT_CHECK(rc.test_top1 == ra.test_top1, "C accuracy %g vs %g", rc.test_top1, ra.test_top1);

    /* resuming under another configuration is refused */
    c.lr = 0.1f;
    qk_status st = qk_train(cg, &tr, &te, &c, p2, &rc);
    QT_CHECK(st == QK_ERR_ARG && strstr(qk_last_error(), "different training configuration"), "hash: %s",
             qk_last_error());
    QT_CHECK(cg->n_values == nv0 && cg->n_nodes == nn0, "graph restored after a failed resume");
    c.lr = 0.05f;

    /* checkpoint of another architecture */
    qk_graph *l = NULL;
    QT_OK(qk_zoo_build("lenet", 1, &l));
    st = qk_checkpoint_load_params(ck_a, l);
    QT_CHECK(st == QK_ERR_FORMAT && strstr(qk_last_error(), "another architecture"), "arch mismatch: %s",
             qk_last_error());
    qk_graph_destroy(l);

    /* loading the parameters into a fresh graph reproduces A */
    qk_graph *d = NULL;
    QT_OK(qk_zoo_build("resnet8", 123, &d));
    QT_OK(qk_checkpoint_load_params(ck_a, d));
    QT_CHECK(same_params(a, d), "qk_checkpoint_load_params");
    qk_eval_result e;
    QT_OK(qk_evaluate(d, &te, c.norm, 64, p1, &e));
    QT_CHECK(e.images == 100 && fabs(e.top1 - ra.test_top1) < 1e-12, "qk_evaluate %g vs trainer %g", e.top1,
             ra.test_top1);
    QT_NEAR(e.loss, ra.test_loss, 1e-4, "qk_evaluate loss vs trainer");
    QT_CHECK(e.images_per_s > 0, "images/s");
    qk_graph_destroy(d);

    /* corruption: flip one byte */
    FILE *f = fopen(ck_a, "r+b");
    if (f) {
        fseek(f, 200, SEEK_SET);
        int ch = fgetc(f);
        fseek(f, 200, SEEK_SET);
        fputc(ch ^ 0x5a, f);
        fclose(f);
    }
    st = qk_checkpoint_info(ck_a, &info);
    QT_CHECK(st == QK_ERR_FORMAT && strstr(qk_last_error(), "corrupt"), "corrupt: %s", qk_last_error());
    st = qk_checkpoint_info("/nonexistent/x.qkck", &info);
    QT_CHECK(st == QK_ERR_IO, "missing checkpoint");
    unlink(ck_a);
    unlink(ck_b);
    unlink(ck_c);
    qk_graph_destroy(a);
    qk_graph_destroy(b);
    qk_graph_destroy(cg);
}

/* Plan-time fusion (BatchNormalization + Relu or Clip, src/ops/fuse.h)
 * and the portable float kernels change no bit of training: resnet8
 * (Relu) and mobilenetv2s (Clip 0..6) trained for 5 steps fused and
 * unfused (plan option no_fuse, QKIT_FUSE=0 in the CLI) must agree
 * exactly, with batch statistics and with every BatchNormalization frozen
 * (qkit_frozen, eval mode in training: QAT's --freeze-bn). */
static void set_frozen(qk_graph *g)
{
    for (int k = 0; k < g->n_nodes; k++)
        if (!strcmp(g->nodes[k].op_type, "BatchNormalization"))
            QT_OK(qk_node_set_int(g, k, "qkit_frozen", 1));
}

static void fusion_same_arch(const char *arch, int frozen, const qk_dataset *train, qk_pool *pool)
{
    qk_dataset tr = qk_dataset_view(train, 0, 300);
    qk_train_config c;
    qk_train_config_default(&c);
    c.epochs = 1;
    c.batch = 64;
    c.progress = 0;
    qk_graph *a = NULL, *b = NULL;
    qk_train_result ra, rb;
    QT_OK(qk_zoo_build(arch, 3, &a));
    QT_OK(qk_zoo_build(arch, 3, &b));
    if (!a || !b)
        goto done;
    if (frozen) {
        set_frozen(a);
        set_frozen(b);
    }
    QT_OK(qk_train(a, &tr, NULL, &c, pool, &ra));
    qk_graph_set_options(b, &(qk_plan_options){ .no_fuse = 1 });
    QT_OK(qk_train(b, &tr, NULL, &c, pool, &rb));
    QT_CHECK(same_params(a, b) && ra.train_loss == rb.train_loss,
             "%s%s: BatchNormalization+activation fusion: training bit-identical to the unfused ops (loss %.9g vs "
             "%.9g)",
             arch, frozen ? " (frozen BN)" : "", ra.train_loss, rb.train_loss);
    if (frozen)
        goto done;
    /* and inference (BatchNormalization+activation, Add+Relu fused in eval plans too) */
    qk_eval_result ea, eb;
    QT_OK(qk_evaluate(a, &tr, c.norm, 128, pool, &ea));
    qk_graph_set_options(a, &(qk_plan_options){ .no_fuse = 1 });
    QT_OK(qk_evaluate(a, &tr, c.norm, 128, pool, &eb));
    QT_CHECK(ea.images == 300 && ea.top1 == eb.top1 && ea.loss == eb.loss,
             "%s: fusion in inference: the same outputs as unfused (top-1 %.4f vs %.4f, loss %.12g vs %.12g)", arch,
             ea.top1, eb.top1, ea.loss, eb.loss);
done:
    qk_graph_destroy(a);
    qk_graph_destroy(b);
}

static void test_fusion_same(const qk_dataset *train, qk_pool *pool)
{
    static const char *const archs[] = { "resnet8", "mobilenetv2s" };
    for (int k = 0; k < 2; k++)
        for (int frozen = 0; frozen < 2; frozen++)
            fusion_same_arch(archs[k], frozen, train, pool);
}

static void test_nan(const qk_dataset *train, qk_pool *pool)
{
    qk_dataset tr = qk_dataset_view(train, 0, 256);
    qk_graph *g = NULL;
    QT_OK(qk_zoo_build("lenet", 1, &g));
    int v = qk_graph_find_value(g, "fc2.bias");
    qk_f32(&g->values[v].t)[3] = NAN;
    int nv0 = g->n_values;
    qk_train_config c;
    qk_train_config_default(&c);
    c.progress = 0;
    c.batch = 64;
    qk_train_result r;
    qk_status st = qk_train(g, &tr, NULL, &c, pool, &r);
    QT_CHECK(st == QK_ERR_NUMERIC, "NaN loss -> %s", qk_status_str(st));
    QT_CHECK(strstr(qk_last_error(), "step 1") && strstr(qk_last_error(), "lower learning rate"), "message: %s",
             qk_last_error());
    QT_CHECK(g->n_values == nv0 && !g->planned, "graph restored after the error");
    qk_graph_destroy(g);

    /* bad config */
    QT_OK(qk_zoo_build("lenet", 1, &g));
    c.batch = 0;
    QT_CHECK(qk_train(g, &tr, NULL, &c, pool, &r) == QK_ERR_ARG, "batch 0 refused");
    qk_graph_destroy(g);
}

/* lenet, seed 1, 6000 training images, 1 epoch (47 steps of 128, cosine to
 * 0, the reference recipe otherwise), evaluated on the first 2000 test images.
 * Measured: seeds 1..4 give top-1 0.742, 0.764, 0.746, 0.744 (train loss
 * 1.08-1.18); the PyTorch peer in the same setting, seeds 1..3: 0.755,
 * 0.767, 0.756 (train loss 1.00-1.08). Band [0.72, 0.80]: it moves only if
 * training changes (kernels summing in another order shift it by < 1%). */
static void test_end_to_end(const qk_dataset *train, const qk_dataset *test, qk_pool *pool)
{
    if (SANITIZED) {
        printf("info: sanitizer build: the accuracy band run is skipped (it runs in the plain build)\n");
        return;
    }
    qk_dataset tr = qk_dataset_view(train, 0, 6000), te = qk_dataset_view(test, 0, 2000);
    qk_graph *g = NULL;
    QT_OK(qk_zoo_build("lenet", 1, &g));
    qk_train_config c;
    qk_train_config_default(&c);
    c.epochs = 1;
    c.progress = 0;
    qk_train_result r;
    double t0 = qk_now();
    QT_OK(qk_train(g, &tr, &te, &c, pool, &r));
    double secs = qk_now() - t0;
    QT_CHECK(r.steps == 47, "steps %lld", (long long)r.steps);
    QT_CHECK(r.test_top1 >= 0.72 && r.test_top1 <= 0.80, "lenet 1 epoch / 6000 images: top-1 %.4f outside [0.72, 0.80]",
             r.test_top1);
    QT_CHECK(r.train_loss > 0.9 && r.train_loss < 1.3, "train loss %g outside (0.9, 1.3)", r.train_loss);
    printf("info: lenet 6000 images 1 epoch: test top-1 %.4f, loss %.4f, train %.0f images/s, %.1f s\n", r.test_top1,
           r.test_loss, r.images_per_s, secs);
    qk_norm n;
    QT_OK(qk_graph_get_norm(g, &n.mean, &n.std));
    QT_CHECK(n.mean == c.norm.mean && n.std == c.norm.std, "norm metadata");
    qk_graph_destroy(g);
}

int main(void)
{
    test_sgd();
    test_adam();
    test_sched();

    qk_dataset train = { 0 }, test = { 0 };
    qk_status st = qk_dataset_load_dir(NULL, "train", &train);
    if (st == QK_OK)
        st = qk_dataset_load_dir(NULL, "t10k", &test);
    QT_CHECK(st == QK_OK, "Fashion-MNIST: %s", qk_last_error());
    if (st == QK_OK) {
        qk_pool *p1, *p2;
        QT_OK(qk_pool_create(1, &p1));
        QT_OK(qk_pool_create(2, &p2));
        char dir[] = "/tmp/qkit_train_XXXXXX";
        QT_CHECK(mkdtemp(dir) != NULL, "mkdtemp");
        test_resume(&train, &test, p1, p2, dir);
        rmdir(dir);
        test_fusion_same(&train, p2);
        test_nan(&train, p2);
        test_end_to_end(&train, &test, p2);
        qk_pool_destroy(p1);
        qk_pool_destroy(p2);
    }
    qk_dataset_free(&train);
    qk_dataset_free(&test);
    return qt_finish("test_train");
}
