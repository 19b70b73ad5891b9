/* Training throughput of the reference CNNs (lenet, resnet8, mobilenetv2s;
 * docs/ARCHITECTURE.md) at batch 128: images / (time of forward + loss + backward +
 * optimizer step), beside PyTorch's figure for the same model
 * (bench/torch_peer.py bench-train) when /usr/bin/python3 can import torch.
 *
 * The step is the trainer's (src/train/trainer.c one_step) built from the
 * public API: the zoo model with a labels input and a
 * SoftmaxCrossEntropyLoss (mean) appended, planned once for batch 128 in
 * training mode on a pool of T threads, then per step qk_graph_forward,
 * qk_graph_backward, qk_optim_step (SGD momentum 0.9 nesterov, weight decay
 * 5e-4 off BN and biases, constant lr 0.05 as the peer uses). Data
 * preparation is excluded: warmup + steps augmented, normalized batches of
 * the Fashion-MNIST training set are made before timing (as the peer does)
 * and copied into the input buffer outside the timed region.
 *
 * Checks, per model:
 *  - before timing, equivalence: the first 3 losses of this loop must equal,
 *    bit for bit, those qk_train reports (on_step) for the same seed, data
 *    and constant schedule, so what is timed is the trainer's computation;
 *  - on the first round, before its figure is used, learning: every loss is
 *    finite and the mean of the last quarter of the round's steps (warm-up
 *    included) is below the mean of the first quarter.
 *
 * Timing follows the peer: round 1 runs W warm-up steps (not timed) then N
 * timed steps; rounds 2..R run N timed steps each; the figure is the fastest
 * round's images/s (least disturbed on a shared machine), with the median
 * step of that round beside it.
 *
 * The peer runs in both memory formats (NCHW and channels_last, the one
 * PyTorch users pick for speed on CPUs) and the faster is compared.
 *
 * --infer: float inference instead, at batch 256: the shipped models
 * (--models DIR, default models/M.onnx) planned for inference on T threads,
 * images/s of qk_graph_forward on 256 normalized training images, the
 * median of R rounds of >= 0.3 s each; the peer (torch_peer.py
 * bench-infer, eval mode, inference_mode, the same weights) in NCHW and
 * channels_last, the faster compared.
 *
 *   build/bench/bench_train [--arch NAME] [--threads T=2] [--steps N=50, >= 16]
 *                           [--warmup W=5] [--repeat R=3] [--no-peer]
 *                           [--peer bench/torch_peer.py] [--data DIR]
 *                           [--infer [--models DIR]] [--profile]
 * --profile (training): each model's per-node forward/backward seconds over
 * its timed steps, on stderr.
 * Exit status 1 if a check fails (the model's row then says so and has no
 * figures), 2 on a usage error. */
#include "qkit/registry.h"
#include "qkit/data.h"
#include "qkit/onnx.h"
#include "qkit/ops.h"
#include "qkit/train.h"
#include "qkit/zoo.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_machine.h"

#define BATCH 128
#define IBATCH 256
#define LR 0.05f
#define CHECK_STEPS 3

typedef struct opts {
    const char *arch, *peer, *data, *models;
    int threads, steps, warmup, repeat, no_peer, infer, profile;
} opts;

/* --profile: per-node forward/backward time of the timed training steps */
static qk_profiler *prof;

typedef struct model {
    qk_graph *g;
    qk_optim *opt;
    int labels, loss;
} model;

typedef struct figures {
    double ips, ips_median; /* best round: mean over its steps; its median step */
    double rounds[16];      /* images/s of every round */
    int n_rounds;
    double loss_first, loss_last;
} figures;

static int fail_status(const char *arch, const char *what, qk_status st)
{
    fprintf(stderr, "bench_train: %s: %s: %s (%s)\n", arch, what, qk_last_error(), qk_status_str(st));
    return 1;
}

/* The zoo model with the trainer's loss head, planned for training. */
static qk_status model_build(const char *arch, qk_pool *pool, model *m)
{
    memset(m, 0, sizeof *m);
    m->labels = m->loss = -1;
    qk_status st = qk_zoo_build(arch, 1, &m->g);
    if (st != QK_OK)
        return st;
    qk_graph *g = m->g;
    m->labels = qk_graph_add_input(g, "labels", QK_I64, 1, (const int64_t[]){ -1 });
    m->loss = m->labels >= 0 ? qk_graph_add_value(g, "loss", QK_VALUE_ACT) : -1;
    int in[2] = { g->outputs[0], m->labels };
    int node = m->loss >= 0 ? qk_graph_add_node(g, "SoftmaxCrossEntropyLoss", "loss", 2, in, 1, &m->loss) : -1;
    if (node < 0)
        return qk_error(QK_ERR_NOMEM, "bench_train: adding the loss");
    st = qk_node_set_string(g, node, "reduction", "mean");
    if (st == QK_OK)
        st = qk_ops_bind(g);
    if (st == QK_OK && prof) {
        qk_plan_options po;
        memset(&po, 0, sizeof po);
        po.profiler = prof;
        qk_graph_set_options(g, &po);
    }
    if (st == QK_OK)
        st = qk_graph_plan(g, BATCH, 1, pool);
    qk_train_config cfg;
    qk_train_config_default(&cfg);
    if (st == QK_OK)
        st = qk_optim_create(g, &cfg.optim, &m->opt);
    return st;
}

static void model_free(model *m)
{
    qk_optim_destroy(m->opt);
    qk_graph_destroy(m->g);
    memset(m, 0, sizeof *m);
}

/* One training step on batch k of the prepared data; *secs gets the time
 * of forward + loss + backward + optimizer step. */
static qk_status model_step(model *m, const float *xs, const int64_t *ys, int64_t k, float *loss, double *secs)
{
    qk_graph *g = m->g;
    const int64_t n = (int64_t)BATCH * 28 * 28;
    memcpy(qk_f32(&g->values[g->inputs[0]].t), xs + k * n, (size_t)n * sizeof(float));
    memcpy(g->values[m->labels].t.data, ys + k * BATCH, BATCH * sizeof(int64_t));
    double t0 = qk_now();
    qk_status st = qk_graph_forward(g);
    if (st == QK_OK)
        st = qk_graph_backward(g, m->loss);
    if (st == QK_OK)
        st = qk_optim_step(m->opt, LR);
    *secs = qk_now() - t0;
    *loss = qk_f32(&g->values[m->loss].t)[0];
    return st;
}

/* ---- equivalence with qk_train ---- */
typedef struct loss_log {
    float v[CHECK_STEPS];
    int n;
} loss_log;

static qk_status log_step(void *user, qk_graph *g, int64_t step, float loss)
{
    (void)g;
    loss_log *l = user;
    if (step >= 1 && step <= CHECK_STEPS)
        l->v[step - 1] = loss;
    l->n = (int)step;
    return QK_OK;
}

static qk_status trainer_losses(const char *arch, const qk_dataset *train, qk_pool *pool, loss_log *l)
{
    qk_graph *g = NULL;
    qk_train_config cfg;
    qk_train_config_default(&cfg);
    cfg.sched = QK_SCHED_CONSTANT;
    cfg.max_steps = CHECK_STEPS;
    cfg.progress = 0;
    cfg.user = l;
    cfg.on_step = log_step;
    qk_train_result r;
    qk_status st = qk_zoo_build(arch, 1, &g);
    if (st == QK_OK)
        st = qk_ops_bind(g);
    if (st == QK_OK)
        st = qk_train(g, train, NULL, &cfg, pool, &r);
    qk_graph_destroy(g);
    return st;
}

/* ---- timing ---- */
static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int bench_model(const opts *o, const char *arch, const qk_dataset *train, qk_pool *pool, figures *f)
{
    memset(f, 0, sizeof *f);
    int rc = 1;
    model m;
    float *xs = NULL;
    int64_t *ys = NULL;
    double *times = NULL, *best = NULL;
    float *losses = NULL;
    qk_batcher bt;
    memset(&bt, 0, sizeof bt);
    qk_train_config cfg;
    qk_train_config_default(&cfg);
    qk_status st = model_build(arch, pool, &m);
    if (st != QK_OK) {
        rc = fail_status(arch, "building the training graph", st);
        goto done;
    }
    /* the prepared batches: epoch 0 of the trainer's batcher (full batches only) */
    st = qk_batcher_init(&bt, train, BATCH, 1, cfg.seed, cfg.norm, &cfg.aug);
    if (st != QK_OK) {
        rc = fail_status(arch, "batcher", st);
        goto done;
    }
    qk_batcher_epoch(&bt, 0);
    int64_t nb = train->n / BATCH, want = o->warmup + o->steps;
    if (nb > want)
        nb = want;
    if (nb < CHECK_STEPS) {
        fprintf(stderr, "bench_train: the training set has fewer than %d full batches\n", CHECK_STEPS);
        goto done;
    }
    const int64_t n = (int64_t)BATCH * 28 * 28;
    int64_t nsteps = (int64_t)o->warmup + (int64_t)o->steps * o->repeat;
    xs = qk_malloc((size_t)(nb * n) * sizeof(float));
    ys = qk_malloc((size_t)(nb * BATCH) * sizeof(int64_t));
    times = qk_malloc((size_t)nsteps * sizeof(double));
    best = qk_malloc((size_t)o->steps * sizeof(double));
    losses = qk_malloc((size_t)want * sizeof(float));
    if (!xs || !ys || !times || !best || !losses) {
        fprintf(stderr, "bench_train: out of memory\n");
        goto done;
    }
    for (int64_t k = 0; k < nb; k++) {
        int64_t got;
        if (qk_batcher_get(&bt, k, xs + k * n, ys + k * BATCH, &got) != QK_OK || got != BATCH) {
            fprintf(stderr, "bench_train: batch %lld is not full\n", (long long)k);
            goto done;
        }
    }

    /* equivalence: the trainer on the same data must see the same losses */
    loss_log ref;
    memset(&ref, 0, sizeof ref);
    st = trainer_losses(arch, train, pool, &ref);
    if (st != QK_OK) {
        rc = fail_status(arch, "qk_train", st);
        goto done;
    }
    if (ref.n != CHECK_STEPS) {
        fprintf(stderr, "bench_train: %s: qk_train took %d steps, expected %d\n", arch, ref.n, CHECK_STEPS);
        goto done;
    }

    /* R rounds of timed steps; round 1 starts with the warm-up and its
     * losses are checked */
    int64_t t = 0;
    for (int r = 0; r < o->repeat; r++) {
        int64_t len = (r == 0 ? o->warmup : 0) + o->steps;
        for (int64_t i = 0; i < len; i++) {
            float loss;
            double secs;
            if (prof && r == 0 && i == o->warmup)
                qk_profiler_reset(prof); /* the timed steps only */
            st = model_step(&m, xs, ys, i % nb, &loss, &secs);
            if (st != QK_OK) {
                rc = fail_status(arch, "training step", st);
                goto done;
            }
            if (r == 0) {
                losses[i] = loss;
                if (!isfinite(loss)) {
                    fprintf(stderr, "bench_train: %s: loss is %g at step %lld\n", arch, (double)loss,
                            (long long)i + 1);
                    goto done;
                }
                if (i < CHECK_STEPS && memcmp(&loss, &ref.v[i], sizeof loss) != 0) {
                    fprintf(stderr, "bench_train: %s: step %lld loss %.9g differs from qk_train's %.9g\n", arch,
                            (long long)i + 1, (double)loss, (double)ref.v[i]);
                    goto done;
                }
                if (i == len - 1) {
                    int64_t q = len / 4 > 0 ? len / 4 : 1;
                    double a = 0, b = 0;
                    for (int64_t k = 0; k < q; k++) {
                        a += losses[k];
                        b += losses[len - 1 - k];
                    }
                    f->loss_first = a / (double)q;
                    f->loss_last = b / (double)q;
                    if (!(f->loss_last < f->loss_first)) {
                        fprintf(stderr,
                                "bench_train: %s: the loss did not decrease (first %lld steps %.4f, last %.4f)\n",
                                arch, (long long)q, f->loss_first, f->loss_last);
                        goto done;
                    }
                }
            }
            if (r > 0 || i >= o->warmup)
                times[t++] = secs;
        }
    }
    /* best round = least total time */
    int best_r = 0;
    double best_sum = -1;
    for (int r = 0; r < o->repeat; r++) {
        double s = 0;
        for (int i = 0; i < o->steps; i++)
            s += times[(int64_t)r * o->steps + i];
        if (r < 16)
            f->rounds[r] = (double)BATCH * o->steps / s;
        if (best_sum < 0 || s < best_sum) {
            best_sum = s;
            best_r = r;
        }
    }
    f->n_rounds = o->repeat < 16 ? o->repeat : 16;
    memcpy(best, times + (int64_t)best_r * o->steps, (size_t)o->steps * sizeof(double));
    qsort(best, (size_t)o->steps, sizeof(double), cmp_double);
    double med = o->steps % 2 ? best[o->steps / 2] : 0.5 * (best[o->steps / 2 - 1] + best[o->steps / 2]);
    f->ips = (double)BATCH * o->steps / best_sum;
    f->ips_median = (double)BATCH / med;
    rc = 0;
    if (prof) {
        fprintf(stderr, "%s: per node, the %d timed rounds (forward and backward; the optimizer step is not a node)\n",
                arch, o->repeat);
        qk_profiler_print(prof, stderr);
    }
done:
    qk_batcher_free(&bt);
    model_free(&m);
    qk_free(xs);
    qk_free(ys);
    qk_free(times);
    qk_free(best);
    qk_free(losses);
    return rc;
}

/* ---- the PyTorch peer ---- */
static int peer_available(const char *script)
{
    FILE *f = fopen(script, "r");
    if (!f)
        return 0;
    fclose(f);
    return system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
}

static double json_num(const char *s, const char *key)
{
    char pat[96];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(s, pat);
    return p ? strtod(p + strlen(pat), NULL) : -1;
}

/* The peer's figures: images/s of its best round and of that round's median
 * step, its rounds' images/s (" a b c") and the load average it saw. */
typedef struct peer_figures {
    double ips, ips_median, load;
    char rounds[256];
    const char *layout;
} peer_figures;

static int peer_run1(const opts *o, const char *arch, int channels_last, peer_figures *pf)
{
    char cmd[1024], line[8192];
    memset(pf, 0, sizeof *pf);
    pf->ips = -1;
    pf->layout = channels_last ? "NHWC" : "NCHW";
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 %s bench-train --arch %s --threads %d --steps %d --warmup %d --repeat %d --json%s",
             o->peer, arch, o->threads, o->steps, o->warmup, o->repeat, channels_last ? " --channels-last" : "");
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    while (fgets(line, sizeof line, p))
        if (strstr(line, "\"images_per_s\"")) {
            pf->ips = json_num(line, "images_per_s");
            pf->ips_median = json_num(line, "images_per_s_median_step");
            pf->load = json_num(line, "loadavg_1min_before");
            const char *r = strstr(line, "\"images_per_s_rounds\": [");
            int len = 0;
            for (r = r ? strchr(r, '[') + 1 : NULL; r && len < (int)sizeof pf->rounds - 16;) {
                char *e;
                double v = strtod(r, &e);
                if (e == r)
                    break;
                len += snprintf(pf->rounds + len, sizeof pf->rounds - (size_t)len, " %.1f", v);
                r = *e == ',' ? e + 1 : e;
            }
        }
    int rc = pclose(p);
    return pf->ips > 0 && rc == 0 ? 0 : -1;
}

/* Both layouts; pf gets the faster, other the NCHW/NHWC figures. */
static int peer_run(const opts *o, const char *arch, peer_figures *pf, char *other, size_t n)
{
    peer_figures a, b;
    int ra = peer_run1(o, arch, 0, &a), rb = peer_run1(o, arch, 1, &b);
    snprintf(other, n, "NCHW %.1f, channels_last %.1f", a.ips, b.ips);
    if (ra && rb)
        return -1;
    *pf = (rb || (!ra && a.ips >= b.ips)) ? a : b;
    return 0;
}

/* ---- float inference (--infer) ---- */
static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int infer_model(const opts *o, const char *arch, const qk_dataset *train, qk_pool *pool)
{
    char path[512], cmd[1024], line[8192];
    snprintf(path, sizeof path, "%s/%s.onnx", o->models, arch);
    qk_graph *g = NULL;
    qk_norm norm = qk_norm_default();
    qk_batcher bt;
    float *x = malloc((size_t)IBATCH * 784 * sizeof(float));
    int64_t *lab = malloc((size_t)IBATCH * sizeof(int64_t));
    qk_status st = x && lab ? qk_onnx_load(path, &g) : QK_ERR_NOMEM;
    if (st == QK_OK && qk_graph_get_norm(g, &norm.mean, &norm.std) == QK_ERR_FORMAT)
        st = QK_ERR_FORMAT;
    if (st == QK_OK && (st = qk_batcher_init(&bt, train, IBATCH, 0, 0, norm, NULL)) == QK_OK) {
        qk_batcher_epoch(&bt, 0);
        int64_t got;
        st = qk_batcher_get(&bt, 0, x, lab, &got);
        qk_batcher_free(&bt);
    }
    if (st == QK_OK && (st = qk_ops_bind(g)) == QK_OK) {
        qk_plan_options po = g->opts; /* as qkit eval runs it: batches in slices */
        po.slice = qk_slice_for_threads(qk_pool_threads(pool));
        qk_graph_set_options(g, &po);
        st = qk_graph_plan(g, IBATCH, 0, pool);
    }
    double per[16];
    for (int r = 0; r < o->repeat && st == QK_OK; r++) {
        int64_t runs = 0;
        double t0 = qk_now(), dt;
        do {
            memcpy(g->values[g->inputs[0]].t.data, x, (size_t)IBATCH * 784 * sizeof(float));
            st = qk_graph_forward(g);
            runs++;
            dt = qk_now() - t0;
        } while (st == QK_OK && dt < 0.3);
        per[r] = dt / (double)runs;
    }
    qk_graph_destroy(g);
    free(x), free(lab);
    if (st != QK_OK)
        return fail_status(arch, "inference", st);
    qsort(per, (size_t)o->repeat, sizeof *per, cmp_d);
    double ips = IBATCH / per[o->repeat / 2], pips = -1;
    char cfg[160] = "";
    if (!o->no_peer) {
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/python3 %s bench-infer --arch %s --onnx '%s' --threads %d --batch %d --repeat %d --json",
                 o->peer, arch, path, o->threads, IBATCH, o->repeat);
        FILE *p = popen(cmd, "r");
        while (p && fgets(line, sizeof line, p))
            if (strstr(line, "\"images_per_s\"")) {
                pips = json_num(line, "images_per_s");
                const char *c = strstr(line, "\"configs\""), *l = strstr(line, "\"layout\": \"");
                const char *a = c ? strstr(c, "\"NCHW\", ") : NULL, *b = c ? strstr(c, "\"NHWC\", ") : NULL;
                snprintf(cfg, sizeof cfg, "%.4s; NCHW %.0f, channels_last %.0f; load %.2f", l ? l + 11 : "?",
                         a ? json_num(a, "images_per_s") : -1, b ? json_num(b, "images_per_s") : -1,
                         json_num(line, "loadavg_1min_before"));
            }
        if (p && pclose(p) != 0)
            pips = -1;
    }
    if (pips > 0)
        printf("| %s | %.0f | %.0f (%s) | %.2f |\n", arch, ips, pips, cfg, ips / pips);
    else
        printf("| %s | %.0f | - | - |\n", arch, ips);
    fflush(stdout);
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_train [--arch NAME] [--threads T=2] [--steps N=50] [--warmup W=5] "
                    "[--repeat R=3] [--no-peer] [--peer bench/torch_peer.py] [--data DIR] [--infer [--models DIR]] "
                    "[--profile]\n");
}

static int parse_int(const char *s, int lo, int hi, int *v)
{
    char *e;
    long x = s ? strtol(s, &e, 10) : 0;
    if (!s || *e || x < lo || x > hi)
        return -1;
    *v = (int)x;
    return 0;
}

int main(int argc, char **argv)
{
    opts o = { NULL, "bench/torch_peer.py", NULL, "models", 2, 50, 5, 3, 0, 0, 0 };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "--arch") && v)
            o.arch = argv[++i];
        else if (!strcmp(a, "--peer") && v)
            o.peer = argv[++i];
        else if (!strcmp(a, "--data") && v)
            o.data = argv[++i];
        else if (!strcmp(a, "--threads"))
            bad = parse_int(v, 1, 256, &o.threads), i++;
        else if (!strcmp(a, "--steps"))
            bad = parse_int(v, 16, 100000, &o.steps), i++; /* >= 16: the learning check needs them */
        else if (!strcmp(a, "--warmup"))
            bad = parse_int(v, 0, 100000, &o.warmup), i++;
        else if (!strcmp(a, "--repeat"))
            bad = parse_int(v, 1, 16, &o.repeat), i++;
        else if (!strcmp(a, "--no-peer"))
            o.no_peer = 1;
        else if (!strcmp(a, "--infer"))
            o.infer = 1;
        else if (!strcmp(a, "--profile"))
            o.profile = 1;
        else if (!strcmp(a, "--models") && v)
            o.models = argv[++i];
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage();
            return 0;
        } else
            bad = 1;
        if (bad) {
            usage();
            return 2;
        }
    }
    if (o.warmup + o.steps < CHECK_STEPS) {
        usage();
        return 2;
    }
    const char *const *names = qk_zoo_names();
    if (o.arch) {
        int found = 0;
        for (int k = 0; names[k]; k++)
            found |= !strcmp(names[k], o.arch);
        if (!found) {
            fprintf(stderr, "bench_train: unknown architecture '%s'\n", o.arch);
            return 2;
        }
    }
    int peer = !o.no_peer && peer_available(o.peer);
    if (o.profile && !o.infer && qk_profiler_create(1, &prof) != QK_OK) {
        fprintf(stderr, "bench_train: %s\n", qk_last_error());
        return 1;
    }
    qk_pool *pool = NULL;
    qk_dataset train = { 0 };
    qk_status st = qk_pool_create(o.threads, &pool);
    if (st == QK_OK)
        st = qk_dataset_load_dir(o.data, "train", &train);
    if (st != QK_OK) {
        fprintf(stderr, "bench_train: %s\n", qk_last_error());
        qk_pool_destroy(pool);
        return 1;
    }
    bm_machine_print(stdout);
    if (o.infer) {
        printf("float inference, batch %d, %d threads, median of %d rounds of >= 0.3 s; sgemm backend %s\n\n",
               IBATCH, o.threads, o.repeat, qk_sgemm_name(QK_SGEMM_DEFAULT));
        printf("| model | qkit images/s | PyTorch images/s (faster layout; both; load) | qkit / PyTorch |\n");
        printf("|---|---|---|---|\n");
        int fails = 0;
        o.no_peer = !peer;
        for (int k = 0; names[k]; k++)
            if (!o.arch || !strcmp(o.arch, names[k]))
                fails += infer_model(&o, names[k], &train, pool) != 0;
        qk_dataset_free(&train);
        qk_pool_destroy(pool);
        return fails ? 1 : 0;
    }
    printf("training throughput, batch %d, %d threads, %d timed steps x %d rounds after %d warm-up "
           "(best round; median step in brackets); sgemm backend %s\n",
           BATCH, o.threads, o.steps, o.repeat, o.warmup, qk_sgemm_name(QK_SGEMM_DEFAULT));
    if (!peer)
        printf("PyTorch peer: %s\n", o.no_peer ? "off (--no-peer)" : "not available (/usr/bin/python3 cannot import torch "
                                                                     "or the script is missing)");
    printf("\n| model | loss first/last quarter | qkit images/s | PyTorch images/s (faster layout) | qkit / PyTorch |\n");
    printf("|---|---|---|---|---|\n");
    fflush(stdout);
    int fails = 0, nm = 0;
    char notes[8][512];
    for (int k = 0; names[k] && nm < 8; k++) {
        if (o.arch && strcmp(o.arch, names[k]))
            continue;
        figures f;
        if (bench_model(&o, names[k], &train, pool, &f) != 0) {
            printf("| %s | check failed | - | - | - |\n", names[k]);
            fails++;
            continue;
        }
        peer_figures pf = { -1, -1, -1, "", "" };
        char ptxt[96] = "-", rtxt[64] = "-", both[96] = "";
        if (peer) {
            if (peer_run(&o, names[k], &pf, both, sizeof both) == 0) {
                snprintf(ptxt, sizeof ptxt, "%.1f (%.1f) %s", pf.ips, pf.ips_median, pf.layout);
                snprintf(rtxt, sizeof rtxt, "%.2f (%.2f)", f.ips / pf.ips, f.ips_median / pf.ips_median);
            } else {
                snprintf(ptxt, sizeof ptxt, "peer failed");
            }
        }
        printf("| %s | %.3f / %.3f | %.1f (%.1f) | %s | %s |\n", names[k], f.loss_first, f.loss_last, f.ips,
               f.ips_median, ptxt, rtxt);
        fflush(stdout);
        int len = snprintf(notes[nm], sizeof notes[nm], "%s: qkit rounds", names[k]);
        for (int r = 0; r < f.n_rounds && len < (int)sizeof notes[nm]; r++)
            len += snprintf(notes[nm] + len, sizeof notes[nm] - (size_t)len, " %.1f", f.rounds[r]);
        if (pf.ips > 0 && len < (int)sizeof notes[nm])
            snprintf(notes[nm] + len, sizeof notes[nm] - (size_t)len,
                     "; PyTorch (%s) rounds%s (1-min load average before: %.2f); %s", pf.layout, pf.rounds, pf.load,
                     both);
        nm++;
    }
    printf("\n");
    for (int k = 0; k < nm; k++)
        printf("%s\n", notes[k]);
    qk_dataset_free(&train);
    qk_pool_destroy(pool);
    qk_profiler_destroy(prof);
    return fails ? 1 : 0;
}
