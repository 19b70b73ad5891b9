/* qkit train: train a reference architecture on an MNIST-format dataset. */
#include "cli.h"
#include "qkit/registry.h"
#include "qkit/onnx.h"
#include "qkit/ops.h"
#include "qkit/train.h"
#include "qkit/zoo.h"

#include <stdlib.h>
#include <string.h>

static const cli_opt opts[] = {
    { "arch", "NAME", "architecture: lenet, resnet8 or mobilenetv2s", 0 },
    { "out", "FILE.onnx", "where to write the trained model (required)", 0 },
    { "epochs", "N", "epochs (default 8)", 0 },
    { "steps", "N", "stop after N optimizer steps in all (smoke tests, timing)", 0 },
    { "epoch-steps", "N", "cap every epoch at N steps; the schedule spans epochs*N", 0 },
    { "seed", "S", "seed for initialization, shuffling and augmentation (default 1)", 0 },
    { "lr", "X", "base learning rate (default 0.05, cosine to 0)", 0 },
    { "batch", "N", "batch size (default 128)", 0 },
    { "wd", "X", "weight decay, not applied to BN and biases (default 5e-4)", 0 },
    { "optim", "NAME", "sgd (momentum 0.9 nesterov, default) or adam", 0 },
    { "warmup", "N", "linear warm-up steps (default 0)", 0 },
    { "no-augment", NULL, "no random flip/crop", 0 },
    { "data", "DIR", "MNIST-format dataset directory (default " QK_FASHION_MNIST_DIR ")", 0 },
    { "mean", "X", "input normalization mean (default 0.2860)", 0 },
    { "std", "X", "input normalization std (default 0.3530)", 0 },
    { "checkpoint", "FILE", "checkpoint written after every epoch (default OUT.ckpt)", 0 },
    { "resume", "FILE", "continue exactly from a checkpoint of the same configuration", 0 },
    CLI_COMMON_OPTS,
    { NULL, NULL, NULL, 0 }
};

static int on_epoch(void *user, const qk_epoch_stats *s)
{
    const cli_args *a = user;
    if (!cli_flag(a, "json"))
        printf("epoch %d/%d  loss %.4f  train %.2f%%  test %.2f%%  lr %.5f  %.0f img/s  %.1fs\n",
               s->epoch, s->epochs, s->train_loss, 100 * s->train_top1, 100 * s->test_top1, s->lr,
               s->images_per_s, s->seconds);
    fflush(stdout);
    return 0;
}

static int run(cli_args *a)
{
    const char *arch = cli_get(a, "arch"), *out = cli_get(a, "out");
    if (!arch)
        return cli_usage_error("train", "--arch is required (one of lenet, resnet8, mobilenetv2s)");
    if (!out)
        return cli_usage_error("train", "--out FILE.onnx is required");
    qk_train_config cfg;
    qk_train_config_default(&cfg);
    long long epochs, steps, epoch_steps, seed, batch, warmup;
    double lr, wd, mean, std;
    if (cli_int(a, "epochs", cfg.epochs, 1, 100000, &epochs) || cli_int(a, "steps", 0, 0, 1LL << 40, &steps) ||
        cli_int(a, "epoch-steps", 0, 0, 1LL << 40, &epoch_steps) ||
        cli_int(a, "seed", (long long)cfg.seed, 0, 1LL << 62, &seed) ||
        cli_int(a, "batch", cfg.batch, 1, 65536, &batch) || cli_int(a, "warmup", 0, 0, 1LL << 40, &warmup) ||
        cli_double(a, "lr", cfg.lr, 0, 100, &lr) || cli_double(a, "wd", cfg.optim.weight_decay, 0, 1, &wd) ||
        cli_double(a, "mean", cfg.norm.mean, -1e6, 1e6, &mean) || cli_double(a, "std", cfg.norm.std, 1e-9, 1e6, &std))
        return 2;
    const char *optim = cli_get(a, "optim");
    if (optim && strcmp(optim, "sgd") && strcmp(optim, "adam"))
        return cli_usage_error("train", "--optim must be sgd or adam (got '%s')", optim);
    if (optim && strcmp(optim, "adam") == 0) {
        cfg.optim.kind = QK_OPTIM_ADAM;
        cfg.optim.momentum = 0;
        cfg.optim.nesterov = 0;
        if (!cli_get(a, "lr"))
            lr = 1e-3;
    }
    cfg.epochs = (int)epochs;
    cfg.max_steps = steps;
    cfg.epoch_steps = epoch_steps;
    cfg.seed = (uint64_t)seed;
    cfg.batch = (int)batch;
    cfg.warmup_steps = warmup;
    cfg.lr = (float)lr;
    cfg.optim.weight_decay = (float)wd;
    cfg.norm.mean = (float)mean;
    cfg.norm.std = (float)std;
    if (cli_flag(a, "no-augment")) {
        cfg.aug.flip = 0;
        cfg.aug.crop_pad = 0;
    }
    char *ckpt = NULL;
    if (cli_get(a, "checkpoint")) {
        ckpt = qk_strdup(cli_get(a, "checkpoint"));
    } else {
        ckpt = qk_malloc(strlen(out) + 8);
        if (ckpt)
            sprintf(ckpt, "%s.ckpt", out);
    }
    if (!ckpt)
        return cli_fail("train", qk_error(QK_ERR_NOMEM, "out of memory"));
    cfg.checkpoint = ckpt;
    cfg.resume = cli_get(a, "resume");
    cfg.progress = cli_progress_enabled(a) ? 1 : 0;
    cfg.user = a;
    cfg.on_epoch = on_epoch;

    int ok, rc = 1;
    qk_pool *pool = cli_pool(a, "train", &ok);
    if (!ok) {
        qk_free(ckpt);
        return 2;
    }
    qk_graph *g = NULL;
    qk_dataset train = { 0 }, test = { 0 };
    qk_train_result r;
    qk_status st = qk_zoo_build(arch, cfg.seed, &g);
    if (st == QK_OK)
        st = qk_ops_bind(g);
    cli_env_apply(g);
    if (st == QK_OK)
        st = qk_dataset_load_dir(cli_get(a, "data"), "train", &train);
    if (st == QK_OK)
        st = qk_dataset_load_dir(cli_get(a, "data"), "t10k", &test);
    if (st == QK_OK)
        st = qk_train(g, &train, &test, &cfg, pool, &r);
    if (st == QK_OK)
        st = qk_onnx_save(g, out);
    if (st != QK_OK) {
        cli_fail("train", st);
        goto done;
    }
    if (cli_flag(a, "json")) {
        cli_json j;
        cli_json_begin(&j, stdout);
        cli_json_str(&j, "arch", arch);
        cli_json_str(&j, "model", out);
        cli_json_int(&j, "epochs", r.epochs_done);
        cli_json_int(&j, "steps", r.steps);
        cli_json_bool(&j, "stopped_early", r.stopped_early);
        cli_json_num(&j, "train_loss", r.train_loss);
        cli_json_num(&j, "top1", r.test_top1);
        cli_json_num(&j, "images_per_s", r.images_per_s);
        cli_json_num(&j, "seconds", r.seconds);
        cli_json_int(&j, "threads", qk_pool_threads(pool));
        cli_json_end(&j);
    } else {
        if (r.stopped_early)
            printf("wrote %s: %lld steps (stopped by --steps after %d complete epochs), test top-1 %.2f%%, "
                   "%.0f training images/s\n", out, (long long)r.steps, r.epochs_done, 100 * r.test_top1,
                   r.images_per_s);
        else
            printf("wrote %s: %d epochs, %lld steps, test top-1 %.2f%%, %.0f training images/s\n", out,
                   r.epochs_done, (long long)r.steps, 100 * r.test_top1, r.images_per_s);
    }
    rc = 0;
done:
    qk_graph_destroy(g);
    qk_dataset_free(&train);
    qk_dataset_free(&test);
    qk_pool_destroy(pool);
    qk_free(ckpt);
    return rc;
}

const cli_cmd cli_cmd_train = {
    "train", "train a reference architecture (the DESIGN recipe by default)",
    "--arch NAME --out FILE.onnx [options]",
    "Defaults: SGD momentum 0.9 nesterov, lr 0.05 cosine to 0, weight decay 5e-4\n"
    "(not on BN or biases), batch 128, random flip + crop with padding 2,\n"
    "normalization mean 0.2860 std 0.3530, seed 1. A checkpoint is written\n"
    "atomically after every epoch; --resume continues from it exactly.",
    opts, run
};
