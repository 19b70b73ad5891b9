/* QAT training throughput against qkit's float training of the same model,
 * batch and threads (docs/STATUS.md "QAT"; target: ratio >= 0.6).
 *
 * Both sides train through the public API with the same recipe (batch 128,
 * SGD nesterov, cosine over the steps of one round, augmentation on):
 * float = qk_train on the model as loaded; QAT = qk_qat_train on the same
 * model prepared for the backend (default academic W4A4 lsq) and calibrated
 * on 256 images. The figure of each side is the trainer's own compute
 * throughput (qk_train_result.images_per_s: forward, loss, backward and
 * optimizer step; data preparation excluded). Rounds alternate float and
 * QAT so that load on a shared machine hits both alike; the best round of
 * each side is reported, with the ratio QAT / float.
 *
 *   build/bench/bench_qat [--model FILE.onnx ...] [--algo NAME=lsq] [--backend NAME=academic]
 *                         [--wbits N=4] [--abits N=4] [--threads T=2] [--steps N=20]
 *                         [--repeat R=3] [--data DIR] [--only float|qat]
 * --only runs one side (peak memory of each: /usr/bin/time -v).
 * Exit status 1 when a run fails, 2 on a usage error. */
#include "qkit/registry.h"
#include "qkit/cpu.h"
#include "qkit/data.h"
#include "qkit/qat.h"
#include "qkit/train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MODELS 8

typedef struct bopts {
    const char *models[MAX_MODELS], *algo, *backend, *data, *only;
    int n_models, wbits, abits, threads, steps, repeat;
} bopts;

static int usage(const char *m)
{
    fprintf(stderr, "bench_qat: %s\nusage: bench_qat [--model FILE.onnx ...] [--algo NAME] [--backend NAME] "
            "[--wbits N] [--abits N] [--threads T] [--steps N] [--repeat R] [--data DIR] [--only float|qat]\n", m);
    return 2;
}

static void recipe(qk_train_config *t, int steps, qk_norm norm)
{
    t->epochs = 1;
    t->epoch_steps = steps;
    t->norm = norm;
    t->progress = 0;
}

static int one_model(const bopts *o, const char *path, const qk_dataset *train, qk_pool *pool)
{
    qk_graph *fg = NULL, *qg = NULL;
    qk_qat *q = NULL;
    double best_f = 0, best_q = 0;
    int rc = 1;
    qk_status st = qk_onnx_load(path, &fg);
    if (st == QK_OK)
        st = qk_onnx_load(path, &qg);
    qk_norm norm = qk_norm_default();
    if (st == QK_OK && qk_graph_get_norm(fg, &norm.mean, &norm.std) != QK_OK)
        norm = qk_norm_default();
    qk_qat_config c;
    qk_qat_config_default(&c);
    c.ptq.backend = qk_backend_find(o->backend);
    c.ptq.wbits = o->wbits;
    c.ptq.abits = o->abits;
    c.calib = 256;
    recipe(&c.train, o->steps, norm); /* prepare copies the config */
    if (st == QK_OK && !c.ptq.backend)
        st = QK_ERR_NOTFOUND;
    if (st == QK_OK)
        st = qk_qat_algo_parse(o->algo, &c.algo);
    int want_qat = !o->only || strcmp(o->only, "qat") == 0;
    if (st == QK_OK && want_qat) {
        st = qk_qat_prepare(qg, &c, &q);
        qg = NULL;
    }
    if (st == QK_OK && want_qat)
        st = qk_qat_calibrate(q, train, norm, pool);
    for (int r = 0; st == QK_OK && r < o->repeat; r++) {
        qk_train_config t;
        qk_train_config_default(&t);
        recipe(&t, o->steps, norm);
        qk_train_result fr;
        if (!o->only || strcmp(o->only, "float") == 0) {
            if ((st = qk_train(fg, train, NULL, &t, pool, &fr)) != QK_OK)
                break;
            best_f = fr.images_per_s > best_f ? fr.images_per_s : best_f;
        }
        if (!want_qat)
            continue;
        /* the QAT recipe: its own lr and quantizer group; one round's steps */
        qk_qat_result qr;
        if ((st = qk_qat_train(q, train, NULL, pool, &qr)) != QK_OK)
            break;
        best_q = qr.train.images_per_s > best_q ? qr.train.images_per_s : best_q;
    }
    if (st == QK_OK) {
        printf("%-28s %-8s W%dA%d %12.0f %12.0f %8.2f\n", path, o->algo, o->wbits, o->abits, best_f, best_q,
               best_f > 0 ? best_q / best_f : 0);
        rc = 0;
    } else {
        printf("%-28s failed: %s\n", path, qk_last_error());
    }
    qk_graph_destroy(fg);
    qk_graph_destroy(qg);
    qk_qat_destroy(q);
    return rc;
}

int main(int argc, char **argv)
{
    bopts o = { .algo = "lsq", .backend = "academic", .wbits = 4, .abits = 4, .threads = 2, .steps = 20,
                .repeat = 3 };
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return usage("missing value");
        if (strcmp(k, "--model") == 0 && o.n_models < MAX_MODELS)
            o.models[o.n_models++] = v;
        else if (strcmp(k, "--algo") == 0)
            o.algo = v;
        else if (strcmp(k, "--backend") == 0)
            o.backend = v;
        else if (strcmp(k, "--only") == 0)
            o.only = v;
        else if (strcmp(k, "--data") == 0)
            o.data = v;
        else if (strcmp(k, "--wbits") == 0)
            o.wbits = atoi(v);
        else if (strcmp(k, "--abits") == 0)
            o.abits = atoi(v);
        else if (strcmp(k, "--threads") == 0)
            o.threads = atoi(v);
        else if (strcmp(k, "--steps") == 0)
            o.steps = atoi(v);
        else if (strcmp(k, "--repeat") == 0)
            o.repeat = atoi(v);
        else
            return usage(k);
        i++;
    }
    if (o.threads < 1 || o.steps < 1 || o.repeat < 1)
        return usage("threads, steps and repeat must be >= 1");
    if (o.n_models == 0) {
        o.models[o.n_models++] = "models/lenet.onnx";
        o.models[o.n_models++] = "models/resnet8.onnx";
    }
    qk_dataset train = { 0 };
    if (qk_dataset_load_dir(o.data, "train", &train) != QK_OK) {
        fprintf(stderr, "bench_qat: %s\n", qk_last_error());
        return 1;
    }
    qk_pool *pool = NULL;
    if (qk_pool_create(o.threads, &pool) != QK_OK) {
        fprintf(stderr, "bench_qat: %s\n", qk_last_error());
        qk_dataset_free(&train);
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    char cpu[256];
    qk_log_set_level(QK_LOG_ERROR);
    printf("# bench_qat: %s, %d threads, batch 128, %d steps x %d rounds (best), %s\n", qk_cpu_describe(cpu, sizeof cpu),
           o.threads, o.steps, o.repeat, o.backend);
    printf("%-28s %-8s %-4s %12s %12s %8s\n", "model", "algo", "bits", "float img/s", "qat img/s", "ratio");
    int rc = 0;
    for (int m = 0; m < o.n_models; m++)
        rc |= one_model(&o, o.models[m], &train, pool);
    qk_pool_destroy(pool);
    qk_dataset_free(&train);
    return rc;
}
