/* qkit qat: quantization-aware training of a float model for a backend
 * profile; prints FP32, PTQ-start and QAT accuracy, writes the QDQ model. */
#include "cli.h"
#include "qkit/onnx.h"
#include "qkit/qat.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const cli_opt opts[] = {
    { "model", "FILE.onnx", "float model to train (required)", 0 },
    { "backend", "NAME", "backend profile (required; `qkit backends` lists them)", 0 },
    { "algo", "NAME", "ste, pact, pact-sym, pact-asym, dorefa, wrpn, lsq, lsq+, dsq or tqt (default lsq)", 0 },
    { "w-algo", "NAME", "weight algorithm (default: --algo; lsq for the pact methods)", 0 },
    { "wbits", "N", "weight bits (default: the profile's, 8)", 0 },
    { "abits", "N", "activation bits (default: the profile's, 8)", 0 },
    { "epochs", "N", "epochs (default 4)", 0 },
    { "lr", "X", "base learning rate (default 0.01 where BN stays in training: academic without --bn-fold; 0.003 where BN is folded or absent; cosine to 0; SGD nesterov momentum 0.9)", 0 },
    { "q-lr", "X", "learning rate of the quantizer parameters (default: --lr / 30: 0.00033 or 0.0001)", 0 },
    { "q-wd", "X", "weight decay of the quantizer parameters (default: 1e-4 on pact clips, 0 on steps)", 0 },
    { "wd", "X", "weight decay of the model weights (default 5e-4)", 0 },
    { "batch", "N", "batch size (default 128)", 0 },
    { "calib", "N", "calibration images for the PTQ start (default 512)", 0 },
    { "epoch-steps", "N", "cap every epoch at N steps; the schedule spans epochs*N", 0 },
    { "seed", "S", "shuffling and augmentation seed (default 1)", 0 },
    { "observer", "NAME", "activation observer of the calibration that initialises the activation quantizers "
      "(default: mse for activations of 4 bits or fewer on a min-max profile, i.e. academic; else the profile's): "
      "minmax, ema, mavg-absmax, percentile, mse, kl, aciq-laplace, "
      "aciq-gauss, nsigma, pot-mse, pot-kl", 0 },
    { "w-observer", "NAME", "weight observer of that calibration (default: the profile's, usually minmax; at 2 "
      "bits mse: resnet8 W2A2 lsq 90.72% against 83.37%)", 0 },
    { "paper-init", NULL, "weight scales by the papers' rules (lsq: 2 mean|w|/sqrt(Qp)) instead of the calibration", 0 },
    { "bn-fold", "N", "BN folding strategy (docs/ALGORITHMS.md 6; default: the profile's): 0 fold once before "
      "QAT; 1 fold with frozen running stats; 2 fold with batch stats (two passes); 3 fold with running stats and "
      "the sd/sd_batch correction (two passes); 4 PyTorch's ConvBn (conv / scale, then a real BN). All deploy the "
      "folded conv", 0 },
    { "freeze-bn", "E", "with --bn-fold 2-4, or BN the profile keeps in float (academic): after epoch E, BN uses "
      "its running statistics and stops updating them", 0 },
    { "teacher", "FILE.onnx", "distillation: add kd-w * kd-t^2 * KL(softmax(teacher / kd-t) || softmax(model / "
      "kd-t)) to the loss; the float teacher runs in inference mode on every training batch", 0 },
    { "kd-t", "T", "distillation temperature (default 4)", 0 },
    { "kd-w", "W", "distillation weight (default 1)", 0 },
    { "widen", "K", "WRPN width multiplier: every Conv/Gemm but the last gets K times its output channels (copies, "
      "the next layer's weights split over them: the same function to start from)", 0 },
    { "freeze-observer", "E", "stop updating the EMA ranges of ste/dsq activations after epoch E", 0 },
    { "progressive", NULL, "lower the bit-width in stages (8 -> 6 -> 4) spread over the epochs", 0 },
    { "report", "FILE.json", "per epoch and quantized tensor: learned clip, observed max, % of values kept", 0 },
    { "report-svg", "FILE.svg", "the report as an SVG chart, clip vs max per tensor over the epochs "
      "(default: --report with .svg)", 0 },
    { "first-last-bits", "N", "bits of the first and last weighted layer (academic default: 8)", 0 },
    { "per-tensor", NULL, "per-tensor weights (academic profile only)", 0 },
    CLI_DATA_OPTS,
    { "calib-data", "PATH", "training (and calibration) data, labelled (default: the training split of IDX --data, "
      "else --data)", 0 },
    { "limit", "N", "evaluate only the first N test images", 0 },
    { "out", "FILE.onnx", "write the quantized model (QDQ ONNX, as qkit ptq --out)", 0 },
    { "checkpoint", "FILE", "checkpoint written (atomically) after every epoch", 0 },
    { "resume", "FILE", "continue exactly from a checkpoint of the same command", 0 },
    { "dry-run", NULL, "print where every quantizer goes and which algorithm, then stop", 0 },
    CLI_COMMON_OPTS,
    { NULL, NULL, NULL, 0 }
};

static int on_epoch(void *user, const qk_epoch_stats *s)
{
    const cli_args *a = user;
    if (!cli_flag(a, "json") && (isatty(STDOUT_FILENO) || cli_flag(a, "verbose"))) {
        printf("epoch %d/%d  loss %.4f  train %.2f%%  test %.2f%%  lr %.5f  %.0f img/s  %.1fs\n", s->epoch,
               s->epochs, s->train_loss, 100 * s->train_top1, 100 * s->test_top1, s->lr, s->images_per_s,
               s->seconds);
        fflush(stdout);
    }
    return 0;
}

static int run(cli_args *a)
{
    const char *path = cli_get(a, "model"), *bname = cli_get(a, "backend");
    if (!path)
        return cli_usage_error("qat", "--model FILE.onnx is required");
    if (!bname)
        return cli_usage_error("qat", "--backend NAME is required (see `qkit backends`)");
    qk_qat_config c;
    qk_qat_config_default(&c);
    if (!(c.ptq.backend = qk_backend_find(bname)))
        return cli_usage_error("qat", "%s", qk_last_error());
    const char *an = cli_get(a, "algo"), *wn = cli_get(a, "w-algo");
    if (an && qk_qat_algo_parse(an, &c.algo) != QK_OK)
        return cli_usage_error("qat", "%s", qk_last_error());
    if (wn) {
        qk_qat_algo w;
        if (qk_qat_algo_parse(wn, &w) != QK_OK)
            return cli_usage_error("qat", "--w-algo: %s", qk_last_error());
        c.w_algo = (int)w;
    }
    long long wbits, abits, epochs, batch, calib, esteps, seed, flb, limit, bnf, fobs, fbn, widen;
    double lr, qlr, qwd, wd, kdt, kdw;
    if (cli_int(a, "wbits", 0, 2, 16, &wbits) || cli_int(a, "abits", 0, 2, 16, &abits) ||
        cli_int(a, "epochs", c.train.epochs, 1, 100000, &epochs) || cli_int(a, "batch", c.train.batch, 1, 65536, &batch) ||
        cli_int(a, "calib", c.calib, 1, 1LL << 30, &calib) || cli_int(a, "epoch-steps", 0, 0, 1LL << 40, &esteps) ||
        cli_int(a, "seed", (long long)c.train.seed, 0, 1LL << 62, &seed) ||
        cli_int(a, "first-last-bits", 0, 2, 16, &flb) || cli_int(a, "limit", 0, 1, 1LL << 40, &limit) ||
        cli_int(a, "bn-fold", -1, 0, 4, &bnf) || cli_int(a, "freeze-observer", 0, 1, 100000, &fobs) ||
        cli_int(a, "freeze-bn", 0, 1, 100000, &fbn) || cli_int(a, "widen", 1, 1, 16, &widen) ||
        cli_double(a, "lr", c.train.lr, 1e-12, 100, &lr) || cli_double(a, "q-lr", 0, 0, 100, &qlr) ||
        cli_double(a, "q-wd", -1, 0, 1, &qwd) || cli_double(a, "wd", c.train.optim.weight_decay, 0, 1, &wd) ||
        cli_double(a, "kd-t", c.train.kd_t, 1e-3, 1000, &kdt) || cli_double(a, "kd-w", c.train.kd_w, 0, 1000, &kdw))
        return 2;
    c.ptq.wbits = (int)wbits;
    c.ptq.abits = (int)abits;
    c.ptq.first_last_bits = (int)flb;
    c.ptq.per_tensor_weights = cli_flag(a, "per-tensor");
    c.ptq.a_observer = cli_get(a, "observer");
    c.ptq.w_observer = cli_get(a, "w-observer");
    if (cli_observer_check("qat", "observer", c.ptq.a_observer) ||
        cli_observer_check("qat", "w-observer", c.ptq.w_observer))
        return 2;
    if (qk_backend_qparams(c.ptq.backend, c.ptq.wbits, c.ptq.abits, NULL, NULL) != QK_OK)
        return cli_usage_error("qat", "%s", qk_last_error());
    c.train.epochs = (int)epochs;
    c.train.batch = (int)batch;
    c.train.epoch_steps = esteps;
    c.train.seed = (uint64_t)seed;
    c.train.lr = (float)lr;
    c.train.optim.weight_decay = (float)wd;
    c.train.checkpoint = cli_get(a, "checkpoint");
    c.train.resume = cli_get(a, "resume");
    c.train.progress = cli_progress_enabled(a);
    c.train.on_epoch = on_epoch;
    c.train.user = a;
    c.q_lr = (float)qlr;
    c.q_wd = cli_get(a, "q-wd") ? (float)qwd : -1.0f;
    c.calib = calib;
    c.paper_init = cli_flag(a, "paper-init");
    c.bn_fold = (int)bnf;
    c.freeze_observer = (int)fobs;
    c.freeze_bn = (int)fbn;
    c.widen = (int)widen;
    c.train.kd_t = (float)kdt;
    c.train.kd_w = (float)kdw;
    const char *tpath_kd = cli_get(a, "teacher");
    if (!tpath_kd && (cli_get(a, "kd-t") || cli_get(a, "kd-w")))
        return cli_usage_error("qat", "--kd-t / --kd-w need --teacher FILE.onnx");
    const char *rjson = cli_get(a, "report"), *rsvg = cli_get(a, "report-svg");
    char svgbuf[4096];
    if (rjson && !rsvg) {
        size_t L = strlen(rjson);
        snprintf(svgbuf, sizeof svgbuf, "%.*s.svg", (int)(L > 5 && strcmp(rjson + L - 5, ".json") == 0 ? L - 5 : L),
                 rjson);
        rsvg = svgbuf;
    }
    c.report = rjson || rsvg;
    c.progressive = cli_flag(a, "progressive");
    int dry = cli_flag(a, "dry-run"), json = cli_flag(a, "json"), ok, rc = 1;
    const char *out = cli_get(a, "out");
    qk_pool *pool = cli_pool(a, "qat", &ok);
    if (!ok)
        return 2;
    qk_graph *g = NULL, *teacher = NULL;
    qk_qat *q = NULL;
    qk_dataset train = { 0 }, test = { 0 };
    qk_eval_result fr = { 0 }, pr = { 0 }, qr = { 0 };
    qk_qat_result res;
    cli_data cd;
    double t0 = qk_now();
    qk_status st = cli_load_model(path, &g);
    if (st != QK_OK)
        goto fail;
    int nrc = cli_data_setup(a, "qat", g, &cd, &st);
    if (nrc == 1)
        goto fail;
    if (nrc == 2) {
        rc = 2;
        goto done;
    }
    qk_norm norm = cd.norm;
    if ((st = cli_data_store(&cd, g)) != QK_OK)
        goto fail;
    if (tpath_kd) {
        if ((st = cli_load_model(tpath_kd, &teacher)) != QK_OK) {
            fprintf(stderr, "qkit qat: --teacher %s: %s\n", tpath_kd, qk_last_error());
            rc = 2;
            goto done;
        }
        c.train.teacher = teacher;
    }
    st = qk_qat_prepare(g, &c, &q);
    g = NULL; /* owned by q (or destroyed) */
    if (st != QK_OK) {
        /* undeployable or badly configured: a usage error, nothing written */
        rc = st == QK_ERR_UNSUPPORTED || st == QK_ERR_ARG ? 2 : 1;
        fprintf(stderr, "qkit qat: %s\n", qk_last_error());
        goto done;
    }
    if (dry) {
        qk_qat_print_plan(q, stdout);
        rc = 0;
        goto done;
    }
    {
        const char *dpath = cli_get(a, "data"), *tpath = cli_get(a, "calib-data");
        if ((st = cli_data_load(&cd, tpath ? tpath : dpath, "train", 1, 0, pool, &train)) != QK_OK ||
            (st = cli_data_load(&cd, dpath, "t10k", 1, limit, pool, &test)) != QK_OK)
            goto fail;
    }
    qk_dataset tview = test;
    /* FP32 reference: the float model as loaded */
    qk_graph *fg = NULL;
    if ((st = cli_load_model(path, &fg)) == QK_OK)
        st = qk_evaluate(fg, &tview, norm, 256, pool, &fr);
    qk_graph_destroy(fg);
    if (st != QK_OK)
        goto fail;
    if ((st = qk_qat_calibrate(q, &train, norm, pool)) != QK_OK ||
        (st = qk_evaluate(qk_qat_graph(q), &tview, norm, 256, pool, &pr)) != QK_OK)
        goto fail;
    if (!json)
        printf("fp32 top-1 %.2f%%, PTQ start (%s W%s A%s) top-1 %.2f%%\n", 100 * fr.top1, bname,
               wbits ? cli_get(a, "wbits") : "8", abits ? cli_get(a, "abits") : "8", 100 * pr.top1);
    fflush(stdout);
    if ((st = qk_qat_train(q, &train, &tview, pool, &res)) != QK_OK)
        goto fail;
    if ((st = qk_qat_finish(q)) != QK_OK || (st = qk_evaluate(qk_qat_graph(q), &tview, norm, 256, pool, &qr)) != QK_OK)
        goto fail;
    if (cli_flag(a, "verbose"))
        qk_qat_print_plan(q, stderr);
    if (out && (st = qk_qat_save_qdq(q, out)) != QK_OK)
        goto fail;
    if (c.report && (st = qk_qat_write_report(q, rjson, rsvg)) != QK_OK)
        goto fail;
    double secs = qk_now() - t0;
    const char *wa = wn ? wn : (c.algo == QK_QAT_PACT || c.algo == QK_QAT_PACT_SYM || c.algo == QK_QAT_PACT_ASYM)
                                   ? "(default)" : qk_qat_algo_name(c.algo);
    if (json) {
        cli_json j;
        cli_json_begin(&j, stdout);
        cli_json_str(&j, "model", path);
        cli_json_str(&j, "backend", bname);
        cli_json_str(&j, "algo", qk_qat_algo_name(c.algo));
        cli_json_str(&j, "w_algo", wa);
        cli_json_int(&j, "wbits", wbits ? wbits : 8);
        cli_json_int(&j, "abits", abits ? abits : c.ptq.backend->abits_default);
        qk_ptq_result pi;
        qk_ptq_result_get(qk_qat_qmodel(q), &pi);
        cli_json_str(&j, "a_observer", pi.a_observer);
        cli_json_str(&j, "w_observer", pi.w_observer);
        cli_json_int(&j, "epochs", res.train.epochs_done);
        cli_json_int(&j, "steps", res.train.steps);
        cli_json_num(&j, "lr", res.lr);
        cli_json_num(&j, "fp32_top1", fr.top1);
        cli_json_num(&j, "ptq_top1", pr.top1);
        cli_json_num(&j, "top1", qr.top1);
        cli_json_num(&j, "delta", qr.top1 - fr.top1);
        cli_json_int(&j, "images", qr.images);
        cli_json_num(&j, "images_per_s", res.train.images_per_s);
        cli_json_num(&j, "train_seconds", res.train.seconds);
        cli_json_num(&j, "seconds", secs);
        cli_json_int(&j, "rollbacks", res.rollbacks);
        if (out)
            cli_json_str(&j, "out", out);
        cli_json_int(&j, "threads", qk_pool_threads(pool));
        cli_json_end(&j);
    } else {
        printf("QAT %s (weights %s), %d epochs, %lld steps, lr %g, %.0f images/s training", qk_qat_algo_name(c.algo),
               wa, res.train.epochs_done, (long long)res.train.steps, (double)res.lr, res.train.images_per_s);
        if (res.rollbacks)
            printf(", %d divergence rollbacks (lr x%g)", res.rollbacks, (double)res.lr_scale);
        printf("\nquantized top-1 %.2f%% (%+.2f points vs fp32, %+.2f vs PTQ) on %lld images, %.1f s\n",
               100 * qr.top1, 100 * (qr.top1 - fr.top1), 100 * (qr.top1 - pr.top1), (long long)qr.images, secs);
        if (out)
            printf("wrote %s\n", out);
    }
    rc = 0;
    goto done;
fail:
    cli_fail("qat", st);
done:
    qk_graph_destroy(g);
    qk_qat_destroy(q);
    qk_graph_destroy(teacher);
    qk_dataset_free(&train);
    qk_dataset_free(&test);
    qk_pool_destroy(pool);
    return rc;
}

const cli_cmd cli_cmd_qat = {
    "qat", "quantization-aware training for a backend profile (PACT, LSQ/LSQ+, DoReFa, WRPN, DSQ, TQT): QDQ model",
    "--model FILE.onnx --backend NAME --algo NAME [options]",
    "Prepares and calibrates the float model exactly as `qkit ptq` (same\n"
    "placement, BN folded where the profile folds it; --dry-run shows it), puts a\n"
    "learnable quantizer at every site initialised from that calibration (its\n"
    "activation observer: --observer; by default mse for activations of 4 bits or\n"
    "fewer where the profile takes min-max, i.e. academic: mobilenetv2s W4A4 starts\n"
    "at 80.67% instead of 51.04% and lsq ends 0.83 points higher), trains\n"
    "with SGD nesterov + cosine (4 epochs by default; lr 0.01 where the model\n"
    "keeps BatchNormalization in training, i.e. academic without --bn-fold,\n"
    "0.003 where BN is folded into the convs: at 0.01 a folded resnet8 collapses;\n"
    "quantizer parameters in their own group, --q-lr (default lr / 30) and\n"
    "--q-wd), then writes the same QDQ file as `qkit ptq --out` with the learned\n"
    "scales (qkit eval / export take it).\n"
    "A non-finite loss, gradient or quantizer parameter rolls back to the last\n"
    "checkpoint (or the start), halves the learning rates and goes on; after 3\n"
    "rollbacks it fails. Undeployable algorithm/profile pairs and bad bit-widths\n"
    "exit 2 with the reason, writing nothing.",
    opts, run
};
