/* qkit ptq: post-training quantization of a float model for a backend
 * profile; prints FP32 vs fake-quantized accuracy, writes the QDQ model. */
#include "cli.h"
#include "qkit/registry.h"
#include "qkit/onnx.h"
#include "qkit/ptq.h"
#include "qkit/quant.h"
#include "qkit/train.h"

#include <stdlib.h>
#include <string.h>

static const cli_opt opts[] = {
    { "model", "FILE.onnx", "float model to quantize (required)", 0 },
    { "backend", "NAME", "backend profile (required; `qkit backends` lists them)", 0 },
    { "wbits", "N", "weight bits (default: the profile's, 8)", 0 },
    { "abits", "N", "activation bits (default: the profile's, 8; ppl-w8a16: 16)", 0 },
    { "observer", "NAME", "activation observer (default: the profile's): minmax, ema, mavg-absmax, percentile, "
      "mse, kl, aciq-laplace, aciq-gauss, nsigma, pot-mse, pot-kl", 0 },
    { "w-observer", "NAME", "weight observer (default: the profile's, usually minmax)", 0 },
    { "bit-alloc", "w|a|wa", "ACIQ per-channel bit allocation at the average width (4 bits or fewer)", 0 },
    { "bias-correct", NULL, "correct quantized weights' per-channel variance and the layers' output means", 0 },
    { "calib", "N", "calibration images, the first N of the training split (default 512)", 0 },
    { "first-last-bits", "N", "bits of the first and last weighted layer (academic default: 8)", 0 },
    { "reduce-range", NULL, "7-bit activations (fbgemm)", 0 },
    { "per-tensor", NULL, "per-tensor weights (academic profile only)", 0 },
    { "exclude", "NODE", "keep this node in float", 1 },
    { "out", "FILE.onnx", "write the quantized model (QDQ ONNX, opset 13)", 0 },
    { "dry-run", NULL, "print where every quantizer goes and why, then stop", 0 },
    { "data", "DIR", "MNIST-format dataset directory (default " QK_FASHION_MNIST_DIR ")", 0 },
    { "limit", "N", "evaluate only the first N test images", 0 },
    { "no-fp32", NULL, "skip the FP32 evaluation", 0 },
    { "mean", "X", "input normalization mean (default: the model's metadata, else 0.2860)", 0 },
    { "std", "X", "input normalization std (default: the model's metadata, else 0.3530)", 0 },
    CLI_COMMON_OPTS,
    { NULL, NULL, NULL, 0 }
};

static void on_progress(void *user, int64_t done, int64_t total)
{
    (void)total;
    qk_progress_update(user, done, NULL);
}

/* DequantizeLinear nodes of g: one per quantizer the QDQ file holds. */
static int dq_count(const qk_graph *g)
{
    int n = 0;
    for (int i = 0; i < g->n_nodes; i++)
        n += qk_node_is(&g->nodes[i], "DequantizeLinear");
    return n;
}

/* --dry-run: the plan as text, or with --json one object whose "plan" holds its lines. */
static int dry_run(const qk_qmodel *m, const char *path, int json)
{
    if (!json) {
        qk_ptq_print_plan(m, stdout);
        return 0;
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return -1;
    qk_ptq_print_plan(m, f);
    fclose(f);
    qk_ptq_result r;
    qk_ptq_result_get(m, &r);
    cli_json j;
    cli_json_begin(&j, stdout);
    cli_json_str(&j, "model", path);
    cli_json_str(&j, "backend", r.backend);
    cli_json_int(&j, "wbits", r.wbits);
    cli_json_int(&j, "abits", r.abits);
    cli_json_str(&j, "w_observer", r.w_observer);
    cli_json_str(&j, "a_observer", r.a_observer);
    cli_json_int(&j, "quantizers", r.n_quantizers);
    cli_json_int(&j, "weight_quantizers", r.n_weight_quantizers);
    cli_json_int(&j, "activation_quantizers", r.n_act_quantizers);
    cli_json_arr_begin(&j, "plan");
    for (char *line = buf, *nl; line && *line; line = nl ? nl + 1 : NULL) {
        if ((nl = strchr(line, '\n')))
            *nl = 0;
        cli_json_str(&j, NULL, line);
    }
    cli_json_arr_end(&j);
    cli_json_end(&j);
    free(buf);
    return 0;
}

static int run(cli_args *a)
{
    const char *path = cli_get(a, "model"), *bname = cli_get(a, "backend");
    if (!path)
        return cli_usage_error("ptq", "--model FILE.onnx is required");
    if (!bname)
        return cli_usage_error("ptq", "--backend NAME is required (see `qkit backends`)");
    long long wbits, abits, calib, flb, limit;
    if (cli_int(a, "wbits", 0, 2, 16, &wbits) || cli_int(a, "abits", 0, 2, 16, &abits) ||
        cli_int(a, "calib", 512, 1, 1LL << 30, &calib) || cli_int(a, "first-last-bits", 0, 2, 16, &flb) ||
        cli_int(a, "limit", 0, 1, 1LL << 40, &limit))
        return 2;
    qk_ptq_config c;
    qk_ptq_config_default(&c);
    if (!(c.backend = qk_backend_find(bname)))
        return cli_usage_error("ptq", "%s", qk_last_error());
    c.wbits = (int)wbits;
    c.abits = (int)abits;
    c.reduce_range = cli_flag(a, "reduce-range");
    if (qk_ptq_config_check(&c) != QK_OK)
        return cli_usage_error("ptq", "%s", qk_last_error());
    c.a_observer = cli_get(a, "observer");
    c.w_observer = cli_get(a, "w-observer");
    for (int k = 0; k < 2; k++) { /* options are checked before any long work */
        const char *want = k ? c.w_observer : c.a_observer;
        const char *const *names = qk_observer_names();
        int found = !want;
        for (int i = 0; names[i] && !found; i++)
            found = strcmp(names[i], want) == 0;
        if (!found) {
            char list[512];
            size_t n = 0;
            list[0] = 0;
            for (int i = 0; names[i] && n < sizeof list; i++)
                n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "", names[i]);
            return cli_usage_error("ptq", "--%s '%s': unknown observer; valid: %s", k ? "w-observer" : "observer",
                                   want, list);
        }
    }
    c.first_last_bits = (int)flb;
    c.per_tensor_weights = cli_flag(a, "per-tensor");
    c.bias_correct = cli_flag(a, "bias-correct");
    const char *ba = cli_get(a, "bit-alloc");
    if (ba) {
        if (strcmp(ba, "w") == 0)
            c.bit_alloc = QK_BITALLOC_W;
        else if (strcmp(ba, "a") == 0)
            c.bit_alloc = QK_BITALLOC_A;
        else if (strcmp(ba, "wa") == 0 || strcmp(ba, "aw") == 0)
            c.bit_alloc = QK_BITALLOC_W | QK_BITALLOC_A;
        else
            return cli_usage_error("ptq", "--bit-alloc '%s': use w, a or wa", ba);
    }
    const char **ex;
    c.n_exclude = cli_multi(a, "exclude", &ex);
    c.exclude = ex;
    int dry = cli_flag(a, "dry-run"), json = cli_flag(a, "json"), ok, rc = 1;
    const char *out = cli_get(a, "out");
    if (out && !dry && cli_check_writable("ptq", "out", out))
        return 2;
    qk_pool *pool = cli_pool(a, "ptq", &ok);
    if (!ok)
        return 2;
    qk_graph *g = NULL;
    qk_qmodel *m = NULL;
    qk_dataset train = { 0 }, test = { 0 };
    qk_eval_result fr = { 0 }, qr = { 0 };
    qk_norm norm;
    qk_status st = cli_load_model(path, &g);
    if (st != QK_OK)
        goto fail;
    int nrc = cli_norm(a, g, &norm, &st);
    if (nrc == 1)
        goto fail;
    if (nrc == 2) {
        rc = 2;
        goto done;
    }
    for (int i = 0; i < c.n_exclude; i++)
        if (qk_graph_find_node(g, c.exclude[i]) < 0) {
            fprintf(stderr, "qkit ptq: --exclude '%s': no node of that name (`qkit info --model %s` lists them)\n",
                    c.exclude[i], path);
            rc = 2;
            goto done;
        }
    if (!dry) {
        if ((st = qk_dataset_load_dir(cli_get(a, "data"), "train", &train)) != QK_OK ||
            (st = qk_dataset_load_dir(cli_get(a, "data"), "t10k", &test)) != QK_OK)
            goto fail;
        if (calib > train.n) {
            fprintf(stderr, "qkit ptq: --calib %lld: the training split has only %lld images\n", calib,
                    (long long)train.n);
            rc = 2;
            goto done;
        }
    }
    qk_dataset tview = test;
    if (limit > 0 && limit < test.n)
        tview = qk_dataset_view(&test, 0, limit);
    if (!dry && !cli_flag(a, "no-fp32") && (st = qk_evaluate(g, &tview, norm, 256, pool, &fr)) != QK_OK)
        goto fail;
    st = qk_ptq_prepare(g, &c, &m);
    g = NULL; /* owned by m (or destroyed) */
    if (st != QK_OK)
        goto fail;
    if (dry) {
        rc = dry_run(m, path, json) ? 1 : 0;
        goto done;
    }
    qk_progress pr;
    qk_progress_begin(&pr, "calibrating", calib, cli_progress_enabled(a));
    st = qk_ptq_calibrate(m, &train, norm, calib, pool, on_progress, &pr);
    qk_progress_end(&pr);
    if (st != QK_OK)
        goto fail;
    if (cli_flag(a, "verbose"))
        qk_ptq_print_plan(m, stderr);
    if (out && (st = qk_ptq_save_qdq(m, out)) != QK_OK)
        goto fail;
    if ((st = qk_evaluate(qk_qmodel_graph(m), &tview, norm, 256, pool, &qr)) != QK_OK)
        goto fail;
    qk_ptq_result r; /* what the library decided (the effective configuration) and its time */
    qk_ptq_result_get(m, &r);
    /* quantizers with no QDQ form (16-bit, log code) stay float in the file: say so */
    int in_file = out ? dq_count(qk_qmodel_graph(m)) : r.n_quantizers;
    if (out && in_file < r.n_quantizers)
        fprintf(stderr, "qkit ptq: note: %d of the %d quantizers (%s) have no QDQ form in ONNX opset 13 and are "
                "kept in float in %s%s; qkit's accuracy below simulates them, the file does not, and "
                "`qkit export` refuses it\n", r.n_quantizers - in_file, r.n_quantizers,
                r.abits > 8 ? "activations over 8 bits" : "logarithmic code", out,
                r.abits > 8 ? "" : " (weights stored fake-quantized)");
    if (json) {
        cli_json j;
        cli_json_begin(&j, stdout);
        cli_json_str(&j, "model", path);
        cli_json_str(&j, "backend", r.backend);
        cli_json_int(&j, "wbits", r.wbits);
        cli_json_int(&j, "abits", r.abits);
        cli_json_str(&j, "w_observer", r.w_observer);
        cli_json_str(&j, "a_observer", r.a_observer);
        cli_json_str(&j, "bit_alloc", r.bit_alloc_name);
        cli_json_bool(&j, "bias_correct", r.bias_correct);
        cli_json_int(&j, "calib", calib);
        cli_json_int(&j, "quantizers", r.n_quantizers);
        if (out)
            cli_json_int(&j, "quantizers_in_file", in_file);
        if (!cli_flag(a, "no-fp32"))
            cli_json_num(&j, "fp32_top1", fr.top1);
        cli_json_num(&j, "top1", qr.top1);
        if (!cli_flag(a, "no-fp32"))
            cli_json_num(&j, "delta", qr.top1 - fr.top1);
        cli_json_int(&j, "images", qr.images);
        cli_json_num(&j, "ptq_seconds", r.seconds);
        cli_json_num(&j, "images_per_s", qr.images_per_s);
        if (out)
            cli_json_str(&j, "out", out);
        cli_json_int(&j, "threads", qk_pool_threads(pool));
        cli_json_end(&j);
    } else {
        printf("backend %s, W%d A%d, observers %s/%s, %lld calibration images, %d quantizers (%.2f s)\n",
               r.backend, r.wbits, r.abits, r.w_observer, r.a_observer, calib, r.n_quantizers, r.seconds);
        if (!cli_flag(a, "no-fp32"))
            printf("fp32      top-1 %.2f%%\n", 100 * fr.top1);
        printf("quantized top-1 %.2f%%", 100 * qr.top1);
        if (!cli_flag(a, "no-fp32"))
            printf(" (%+.2f points)", 100 * (qr.top1 - fr.top1));
        printf(" on %lld images\n", (long long)qr.images);
        if (out)
            printf("wrote %s\n", out);
    }
    rc = 0;
    goto done;
fail:
    cli_fail("ptq", st);
done:
    qk_graph_destroy(g);
    qk_qmodel_destroy(m);
    qk_dataset_free(&train);
    qk_dataset_free(&test);
    qk_pool_destroy(pool);
    return rc;
}

const cli_cmd cli_cmd_ptq = {
    "ptq", "post-training quantization for a backend profile: FP32 vs quantized accuracy, QDQ model",
    "--model FILE.onnx --backend NAME [options]",
    "BN is folded where the profile folds it; quantizers go where the profile\n"
    "says (--dry-run shows each and why). Activation observers see the float\n"
    "activations of the calibration images; weights are quantized from their\n"
    "values. The written model is standard ONNX (QuantizeLinear/DequantizeLinear,\n"
    "opset 13; a Clip between them under 8 bits) with the scheme in its metadata;\n"
    "`qkit eval` evaluates it. ptq_seconds in --json is the time the library\n"
    "spent in prepare + calibration (+ writing), not the evaluations.",
    opts, run
};
