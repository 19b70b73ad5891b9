/* qkit eval: top-1 accuracy of an ONNX model on an MNIST-format test set. */
#include "cli.h"
#include "qkit/onnx.h"
#include "qkit/train.h"

#include <string.h>

static const cli_opt opts[] = {
    { "model", "FILE.onnx", "model to evaluate (required)", 0 },
    { "data", "DIR", "MNIST-format dataset directory (default " QK_FASHION_MNIST_DIR ")", 0 },
    { "split", "NAME", "t10k (default) or train", 0 },
    { "limit", "N", "evaluate only the first N images", 0 },
    { "batch", "N", "batch size (default 256)", 0 },
    { "mean", "X", "input normalization mean (default: the model's metadata, else 0.2860)", 0 },
    { "std", "X", "input normalization std (default: the model's metadata, else 0.3530)", 0 },
    CLI_COMMON_OPTS,
    { NULL, NULL, NULL, 0 }
};

static int run(cli_args *a)
{
    const char *path = cli_get(a, "model");
    if (!path)
        return cli_usage_error("eval", "--model FILE.onnx is required");
    long long limit, batch;
    if (cli_int(a, "limit", 0, 0, 1LL << 40, &limit) || cli_int(a, "batch", 256, 1, 65536, &batch))
        return 2;
    const char *split = cli_get(a, "split") ? cli_get(a, "split") : "t10k";
    int ok, rc = 1;
    qk_pool *pool = cli_pool(a, "eval", &ok);
    if (!ok)
        return 2;
    qk_graph *g = NULL;
    qk_dataset ds = { 0 };
    qk_eval_result r;
    qk_norm norm;
    double mean, std;
    qk_status st = qk_onnx_load(path, &g);
    if (st != QK_OK)
        goto fail;
    st = qk_norm_get(g, &norm);
    if (st != QK_OK && st != QK_ERR_NOTFOUND)
        goto fail;
    if (cli_double(a, "mean", norm.mean, -1e6, 1e6, &mean) || cli_double(a, "std", norm.std, 1e-9, 1e6, &std)) {
        rc = 2;
        goto done;
    }
    norm.mean = (float)mean;
    norm.std = (float)std;
    st = qk_dataset_load_dir(cli_get(a, "data"), split, &ds);
    if (st != QK_OK)
        goto fail;
    qk_dataset view = ds;
    if (limit > 0 && limit < ds.n)
        view = qk_dataset_view(&ds, 0, limit);
    st = qk_evaluate(g, &view, norm, (int)batch, pool, &r);
    if (st != QK_OK)
        goto fail;
    if (cli_flag(a, "json")) {
        cli_json j;
        cli_json_begin(&j, stdout);
        cli_json_str(&j, "model", path);
        cli_json_num(&j, "top1", r.top1);
        cli_json_int(&j, "images", r.images);
        cli_json_int(&j, "correct", r.correct);
        cli_json_num(&j, "loss", r.loss);
        cli_json_num(&j, "images_per_s", r.images_per_s);
        cli_json_int(&j, "threads", qk_pool_threads(pool));
        cli_json_end(&j);
    } else {
        printf("%s: top-1 %.2f%% (%lld/%lld), loss %.4f, %.0f images/s\n", path, 100 * r.top1,
               (long long)r.correct, (long long)r.images, r.loss, r.images_per_s);
    }
    rc = 0;
    goto done;
fail:
    cli_fail("eval", st);
done:
    qk_graph_destroy(g);
    qk_dataset_free(&ds);
    qk_pool_destroy(pool);
    return rc;
}

const cli_cmd cli_cmd_eval = {
    "eval", "evaluate an ONNX model's top-1 accuracy on Fashion-MNIST (or --data)",
    "--model FILE.onnx [options]",
    "The input normalization comes from the model's metadata (qkit.norm.mean,\n"
    "qkit.norm.std); models without it (e.g. exported by PyTorch) get the\n"
    "Fashion-MNIST default; --mean/--std override both. images_per_s counts\n"
    "compute only, not data loading.",
    opts, run
};
