/* qkit ptq: post-training quantization of a float model for a backend
 * profile; prints FP32 vs fake-quantized accuracy, writes the QDQ model. */
#include "cli.h"
#include "qkit/registry.h"
#include "qkit/onnx.h"
#include "qkit/ptq.h"
#include "qkit/analyze.h"
#include "qkit/quant.h"
#include "qkit/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const cli_opt opts[] = {
    { "model", "FILE.onnx", "float model to quantize (required)", 0 },
    { "backend", "NAME", "backend profile (required; `qkit backends` lists them)", 0 },
    { "wbits", "N", "weight bits (default: the profile's, 8)", 0 },
    { "abits", "N", "activation bits (default: the profile's, 8; ppl-w8a16: 16)", 0 },
    { "observer", "NAME", "activation observer (default: the profile's): minmax, ema, mavg-absmax, percentile, "
      "mse, kl, aciq-laplace, aciq-gauss, nsigma, pot-mse, pot-kl", 0 },
    { "w-observer", "NAME", "weight observer (default: the profile's, usually minmax)", 0 },
    { "bit-alloc", "w|a|wa", "ACIQ per-channel bit allocation at the average width (4 bits or fewer)", 0 },
    { "bias-correct", NULL, "correct quantized weights' per-channel variance and the layers' output means (the "
      "default of the profiles that `qkit backends` marks bias-correct)", 0 },
    { "no-bias-correct", NULL, "no bias correction, also where the profile's default has it", 0 },
    { "cle", NULL, "cross-layer equalization + bias absorption of the float model first (data-free; the default "
      "of the profiles that `qkit backends` marks cle)", 0 },
    { "no-cle", NULL, "no cross-layer equalization, also where the profile's default has it", 0 },
    { "cle-relu6", NULL, "with cross-layer equalization (asked or the profile's): turn ReLU6 between equalized "
      "layers into ReLU (changes the float model)", 0 },
    { "recon", "METHOD", "reconstruct the weights' rounding on the calibration images: adaround (per layer), brecq or qdrop (per block, activation steps learned too); replaces a default bias correction", 0 },
    { "recon-iters", "N", "reconstruction iterations per layer or block (default: adaround 1000, brecq/qdrop 500)", 0 },
    { "recon-batch", "N", "reconstruction images per iteration (default 32)", 0 },
    { "calib", "N", "calibration images, the first N of the calibration data (default 512)", 0 },
    { "calib-data", "PATH", "calibration data, labels not needed (default: the training split of IDX --data, "
      "else --data); any --data form or a flat image folder", 0 },
    { "first-last-bits", "N", "bits of the first and last weighted layer (academic default: 8)", 0 },
    { "reduce-range", NULL, "7-bit activations (fbgemm)", 0 },
    { "per-tensor", NULL, "per-tensor weights (academic profile only)", 0 },
    { "exclude", "NODE", "keep this node in float", 1 },
    { "out", "FILE.onnx", "write the quantized model (QDQ ONNX, opset 13)", 0 },
    { "analyze", "FILE", "layer-by-layer analysis on the first test images (--limit, else 500): ranking "
      "printed on stderr, FILE written (.json: JSON, else HTML)", 0 },
    { "mp-budget", "BITS|SIZE", "mixed precision: per-layer weight widths under a budget, the mean weight "
      "width (4) or the weight-code size (60KB, 61440B; KB = 1024 B); activations at --abits", 0 },
    { "mp-images", "N", "calibration images for the mixed-precision sensitivity (default 128)", 0 },
    { "dry-run", NULL, "print where every quantizer goes and why, then stop", 0 },
    CLI_DATA_OPTS,
    { "limit", "N", "evaluate only the first N test images", 0 },
    { "no-fp32", NULL, "skip the FP32 evaluation", 0 },
    CLI_COMMON_OPTS,
    { NULL, NULL, NULL, 0 }
};

static void on_progress(void *user, int64_t done, int64_t total)
{
    (void)total;
    qk_progress_update(user, done, NULL);
}

/* --mp-budget: "4" (mean bits) or "60KB" / "61440B" / "0.5MB" (bytes). 0 on success. */
static int parse_budget(const char *v, qk_mp_config *mc)
{
    char *end;
    double x = strtod(v, &end);
    if (end == v || !(x > 0))
        return 1;
    if (*end == 0) {
        mc->avg_bits = x;
        return 0;
    }
    double mul = strcasecmp(end, "B") == 0 ? 1 : strcasecmp(end, "KB") == 0 || strcasecmp(end, "KiB") == 0 ? 1024
               : strcasecmp(end, "MB") == 0 || strcasecmp(end, "MiB") == 0 ? 1048576 : 0;
    if (mul == 0 || x * mul < 1)
        return 1;
    mc->max_bytes = (int64_t)(x * mul);
    return 0;
}

/* Mixed precision on the first n calibration images; prints the assignment. */
static qk_status run_mp(qk_qmodel *m, const qk_dataset *train, qk_norm norm, int64_t n, const qk_mp_config *mc,
                        qk_pool *pool, int json)
{
    n = n < train->n ? n : train->n;
    qk_mp_result r;
    qk_status st = qk_ptq_mixed_precision_dataset(m, train, norm, n, mc, pool, &r);
    if (st != QK_OK)
        return st;
    FILE *f = json ? stderr : stdout;
    fprintf(f, "mixed precision: mean weight width %.3f bits, %lld bytes of weight codes; sensitivity = output "
            "SQNR with only that layer quantized (%lld images)\n", r.avg_bits, (long long)r.bytes, (long long)n);
    for (int l = 0; l < r.n_layers; l++) {
        const qk_mp_layer *L = &r.layers[l];
        fprintf(f, "  %-34s %8lld params  %2d bits ", L->weight, (long long)L->params, L->bits);
        for (int k = 0; k < r.n_widths; k++)
            fprintf(f, " %d:%.1f", r.widths[k], L->sqnr[k]);
        fprintf(f, " dB\n");
    }
    qk_mp_result_free(&r);
    return QK_OK;
}

/* --analyze FILE: the layer analysis before the model is converted to QDQ. */
static int analyze_report(cli_args *a, qk_qmodel *m, const qk_dataset *test, qk_norm norm, long long limit,
                          qk_pool *pool, qk_status *st)
{
    const char *path = cli_get(a, "analyze");
    qk_analysis *an = NULL;
    int64_t n = limit > 0 && limit < test->n ? limit : test->n < 500 ? test->n : 500;
    if ((*st = qk_ptq_analyze_dataset(m, test, norm, n, pool, &an)) != QK_OK)
        return 1;
    cli_analysis_print(an, 10, stderr);
    size_t L = strlen(path);
    int rc = 0;
    if (L > 5 && strcmp(path + L - 5, ".json") == 0) {
        FILE *f = fopen(path, "w");
        *st = f ? qk_analysis_write_json(an, f) : qk_error(QK_ERR_IO, "--analyze: cannot write %s", path);
        if (f && fclose(f) != 0 && *st == QK_OK)
            *st = qk_error(QK_ERR_IO, "--analyze: writing %s failed", path);
        rc = *st != QK_OK;
    } else if (cli_analysis_write_html(an, path, cli_get(a, "model"))) {
        rc = 2;
    }
    qk_analysis_destroy(an);
    return rc;
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
    cli_json_bool(&j, "cle", r.cle);
    if (r.cle)
        cli_json_int(&j, "cle_pairs", r.cle_pairs);
    cli_json_bool(&j, "bias_correct", r.bias_correct);
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
    /* options are checked before any long work */
    if (cli_observer_check("ptq", "observer", c.a_observer) || cli_observer_check("ptq", "w-observer", c.w_observer))
        return 2;
    c.first_last_bits = (int)flb;
    if (cli_flag(a, "no-cle") && (cli_flag(a, "cle") || cli_flag(a, "cle-relu6")))
        return cli_usage_error("ptq", "--no-cle with --%s: choose one", cli_flag(a, "cle") ? "cle" : "cle-relu6");
    c.cle = cli_flag(a, "no-cle") ? -1 : cli_flag(a, "cle") ? 1 : 0;
    c.cle_relu6 = cli_flag(a, "cle-relu6");
    if (c.cle_relu6 && c.cle == 0 && !c.backend->cle)
        c.cle = 1; /* --cle-relu6 alone asks for the equalization it modifies */
    c.verbose = cli_flag(a, "verbose");
    c.per_tensor_weights = cli_flag(a, "per-tensor");
    if (cli_flag(a, "bias-correct") && cli_flag(a, "no-bias-correct"))
        return cli_usage_error("ptq", "--bias-correct with --no-bias-correct: choose one");
    c.bias_correct = cli_flag(a, "bias-correct") ? 1 : cli_flag(a, "no-bias-correct") ? -1 : 0;
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
    qk_mp_config mc = { 0 };
    const char *mpb = cli_get(a, "mp-budget");
    long long mp_images;
    if (cli_int(a, "mp-images", 128, 1, 1LL << 30, &mp_images))
        return 2;
    if (mpb && parse_budget(mpb, &mc))
        return cli_usage_error("ptq", "--mp-budget '%s': give the mean weight width (4, 4.5) or a size (60KB, "
                               "61440B)", mpb);
    qk_recon_config rcfg;
    qk_recon_method rmeth = QK_RECON_NONE;
    const char *rm = cli_get(a, "recon");
    if (rm && qk_recon_method_parse(rm, &rmeth) != QK_OK)
        return cli_usage_error("ptq", "--recon: %s", qk_last_error());
    qk_recon_config_default(&rcfg, rmeth); /* the method's default iterations */
    long long riters, rbatch;
    if (cli_int(a, "recon-iters", rcfg.iters, 1, 1 << 30, &riters) || cli_int(a, "recon-batch", rcfg.batch, 1, 1 << 30, &rbatch))
        return 2;
    if ((rcfg.method == QK_RECON_BRECQ || rcfg.method == QK_RECON_QDROP) && rbatch > 1024)
        return cli_usage_error("ptq", "--recon-batch %lld: brecq and qdrop take at most 1024 images per iteration",
                               rbatch);
    if (rcfg.method && rbatch > calib)
        return cli_usage_error("ptq", "--recon-batch %lld: larger than the %lld calibration images (--calib)",
                               rbatch, calib);
    if (rcfg.method && c.bias_correct > 0)
        return cli_usage_error("ptq", "--recon with --bias-correct: use one or the other");
    if ((rcfg.method || mpb) && c.bias_correct == 0)
        c.bias_correct = -1; /* reconstruction and mixed precision replace the profile's default bias correction */
    if (rcfg.method && c.hooks)
        return cli_usage_error("ptq", "--recon: custom quantize hooks leave no integer codes to reconstruct");
    rcfg.iters = (int)riters;
    rcfg.batch = (int)rbatch;
    rcfg.verbose = cli_flag(a, "verbose");
    {
        qk_qparams wq;
        if (rcfg.method && qk_backend_qparams(c.backend, c.wbits, 0, &wq, NULL) == QK_OK &&
            wq.scheme == QK_QSCHEME_NNIE_LOG)
            return cli_usage_error("ptq", "--recon: backend '%s' stores weights in a logarithmic code, not "
                                   "integer codes on a scale; reconstruction cannot be represented", bname);
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
    qk_agree_result ag = { 0 };
    qk_graph *fg = NULL; /* unlabelled data: the float model, for agreement */
    cli_data cd;
    qk_status st = cli_load_model(path, &g);
    if (st != QK_OK)
        goto fail;
    int nrc = cli_data_setup(a, "ptq", g, &cd, &st);
    if (nrc == 1)
        goto fail;
    if (nrc == 2) {
        rc = 2;
        goto done;
    }
    qk_norm norm = cd.norm;
    const char *dpath = cli_get(a, "data"), *cpath = cli_get(a, "calib-data");
    for (int i = 0; i < c.n_exclude; i++)
        if (qk_graph_find_node(g, c.exclude[i]) < 0) {
            fprintf(stderr, "qkit ptq: --exclude '%s': no node of that name (`qkit info --model %s` lists them)\n",
                    c.exclude[i], path);
            rc = 2;
            goto done;
        }
    if (!dry) {
        qk_data_kind dk;
        if ((st = qk_data_kind_of(dpath, &dk)) != QK_OK)
            goto fail;
        /* calibration: --calib-data, else the training split of IDX data, else the data itself */
        if (cpath)
            st = cli_data_load(&cd, cpath, "train", 0, calib, pool, &train);
        else
            st = cli_data_load(&cd, dpath, "train", 0, dk == QK_DATA_IDX ? 0 : calib, pool, &train);
        if (st != QK_OK || (st = cli_data_load(&cd, dpath, "t10k", 0, limit, pool, &test)) != QK_OK)
            goto fail;
        if (calib > train.n) {
            if (cli_get(a, "calib") || (!cpath && dk == QK_DATA_IDX)) {
                fprintf(stderr, "qkit ptq: --calib %lld: the %s has only %lld images\n", calib,
                        cpath || dk != QK_DATA_IDX ? "calibration data" : "training split", (long long)train.n);
                rc = 2;
                goto done;
            }
            calib = train.n;
        }
        if ((st = cli_data_store(&cd, g)) != QK_OK)
            goto fail;
    }
    qk_dataset tview = test;
    int labelled = dry || qk_dataset_has_labels(&test);
    if (!labelled && (st = cli_load_model(path, &fg)) != QK_OK)
        goto fail;
    if (!dry && labelled && !cli_flag(a, "no-fp32") && (st = qk_evaluate(g, &tview, norm, 256, pool, &fr)) != QK_OK)
        goto fail;
    st = qk_ptq_prepare(g, &c, &m); /* cross-layer equalization, when on, happens here */
    g = NULL; /* owned by m (or destroyed) */
    if (st != QK_OK)
        goto fail;
    if (mpb && qk_ptq_mp_check(m, &mc) != QK_OK) {
        fprintf(stderr, "qkit ptq: %s\n", qk_last_error());
        rc = 2;
        goto done;
    }
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
    qk_recon_result rr = { 0 };
    if (rcfg.method) {
        qk_progress_begin(&pr, "reconstructing", 0, 0);
        st = qk_ptq_reconstruct(m, &train, norm, calib, &rcfg, pool, &rr);
        qk_progress_end(&pr);
        if (st != QK_OK)
            goto fail;
    }
    if (cli_flag(a, "verbose"))
        qk_ptq_print_plan(m, stderr);
    if (mpb && (st = run_mp(m, &train, norm, mp_images, &mc, pool, json)) != QK_OK) {
        if (st == QK_ERR_ARG || st == QK_ERR_UNSUPPORTED) {
            fprintf(stderr, "qkit ptq: %s\n", qk_last_error());
            rc = 2;
            goto done;
        }
        goto fail;
    }
    /* files are written below: first every image must have decoded (a damaged one fails the command here) */
    if ((st = qk_dataset_wait(&train, 0, train.n)) != QK_OK || (st = qk_dataset_wait(&test, 0, test.n)) != QK_OK)
        goto fail;
    if (cli_get(a, "analyze") && (rc = analyze_report(a, m, &tview, norm, limit, pool, &st)) != 0)
        goto done_or_fail;
    if (out && (st = qk_ptq_save_qdq(m, out)) != QK_OK)
        goto fail;
    if (labelled && (st = qk_evaluate(qk_qmodel_graph(m), &tview, norm, 256, pool, &qr)) != QK_OK)
        goto fail;
    if (!labelled && (st = qk_evaluate_agreement(fg, qk_qmodel_graph(m), &tview, norm, 256, pool, &ag)) != QK_OK)
        goto fail;
    qk_ptq_result r; /* what the library decided (the effective configuration) and its time */
    qk_ptq_result_get(m, &r);
    /* quantizers with no QDQ form (16-bit, log code) stay float in the file: say so; quantized
       biases (vitis) are no DequantizeLinear either, but stored already fake-quantized */
    int in_file = out ? dq_count(qk_qmodel_graph(m)) : r.n_quantizers, n_bias = 0;
    {
        const qk_qsite *sites;
        int ns = qk_qmodel_sites(m, &sites);
        for (int s = 0; s < ns; s++)
            n_bias += sites[s].is_weight && sites[s].layer < 0;
    }
    if (out && in_file + n_bias < r.n_quantizers)
        fprintf(stderr, "qkit ptq: note: %d of the %d quantizers (%s) have no QDQ form in ONNX opset 13 and are "
                "kept in float in %s%s; qkit's accuracy below simulates them, the file does not, and "
                "`qkit export` refuses it\n", r.n_quantizers - n_bias - in_file, r.n_quantizers,
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
        if (rcfg.method) {
            cli_json_str(&j, "recon", qk_recon_method_name(rcfg.method));
            cli_json_int(&j, "recon_iters", rcfg.iters);
            cli_json_int(&j, "recon_batch", rcfg.batch);
            cli_json_int(&j, "recon_layers", rr.n_layers);
            cli_json_num(&j, "recon_seconds", rr.seconds);
        }
        cli_json_bool(&j, "cle", r.cle);
        if (r.cle)
            cli_json_int(&j, "cle_pairs", r.cle_pairs);
        cli_json_int(&j, "quantizers", r.n_quantizers);
        if (out)
            cli_json_int(&j, "quantizers_in_file", in_file);
        if (!labelled) {
            cli_json_bool(&j, "labels", 0);
            cli_json_num(&j, "top1_agree", ag.top1);
            cli_json_num(&j, "top5_agree", ag.top5);
            if (isinf(ag.sqnr_db))
                cli_json_raw(&j, "sqnr_db", "null");
            else
                cli_json_num(&j, "sqnr_db", ag.sqnr_db);
            cli_json_num(&j, "cosine", ag.cosine);
            cli_json_int(&j, "images", ag.images);
        } else {
        if (!cli_flag(a, "no-fp32"))
            cli_json_num(&j, "fp32_top1", fr.top1);
        cli_json_num(&j, "top1", qr.top1);
        if (!cli_flag(a, "no-fp32"))
            cli_json_num(&j, "delta", qr.top1 - fr.top1);
        cli_json_int(&j, "images", qr.images);
        cli_json_num(&j, "images_per_s", qr.images_per_s);
        }
        cli_json_num(&j, "ptq_seconds", r.seconds);
        if (out)
            cli_json_str(&j, "out", out);
        cli_json_int(&j, "threads", qk_pool_threads(pool));
        cli_json_end(&j);
    } else {
        printf("backend %s, W%d A%d, observers %s/%s%s, %lld calibration images, %d quantizers (%.2f s)\n",
               r.backend, r.wbits, r.abits, r.w_observer, r.a_observer, r.cle ? ", cross-layer equalization" : "",
               calib, r.n_quantizers, r.seconds);
        if (!labelled) {
            printf("quantized vs fp32 (no labels, %lld images): top-1 agreement %.2f%%, top-5 agreement %.2f%%, "
                   "output SQNR ", (long long)ag.images, 100 * ag.top1, 100 * ag.top5);
            if (isinf(ag.sqnr_db))
                printf("exact");
            else
                printf("%.1f dB", ag.sqnr_db);
            printf(", cosine %.6f\n", ag.cosine);
        } else {
            if (!cli_flag(a, "no-fp32"))
                printf("fp32      top-1 %.2f%%\n", 100 * fr.top1);
            printf("quantized top-1 %.2f%%", 100 * qr.top1);
            if (!cli_flag(a, "no-fp32"))
                printf(" (%+.2f points)", 100 * (qr.top1 - fr.top1));
            printf(" on %lld images\n", (long long)qr.images);
        }
        if (rcfg.method)
            printf("%s: %d layers, output error %.4g -> %.4g, %lld codes flipped (%.1f s)\n",
                   qk_recon_method_name(rcfg.method), rr.n_layers, rr.loss_nearest, rr.loss_recon,
                   (long long)rr.flipped, rr.seconds);
        if (out)
            printf("wrote %s\n", out);
    }
    rc = 0;
    goto done;
done_or_fail:
    if (rc == 2)
        goto done;
fail:
    cli_fail("ptq", st);
done:
    qk_graph_destroy(g);
    qk_graph_destroy(fg);
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
