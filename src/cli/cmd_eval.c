/* qkit eval: top-1 accuracy of an ONNX model on an MNIST-format test set. */
#include "cli.h"
#include "qkit/registry.h"
#include "qkit/onnx.h"
#include "qkit/qrun.h"
#include "qkit/train.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static const cli_opt opts[] = {
    { "model", "FILE.onnx", "model to evaluate (required)", 0 },
    CLI_DATA_OPTS,
    { "split", "NAME", "IDX data: t10k (default) or train", 0 },
    { "reference", "FILE.onnx", "data without labels: report agreement with this (float) model", 0 },
    { "limit", "N", "evaluate only the first N images", 0 },
    { "batch", "N", "batch size (default 256)", 0 },
    { "real", NULL, "quantized (QDQ) model: run it on the integer engine (the backend's arithmetic)", 0 },
    { "compare", NULL, "quantized model: fake-quant vs integer top-1, gap, per-tensor SQNR / max error in LSBs", 0 },
    { "arith", "NAME", "with --real/--compare: fp32, gemmlowp or pot instead of the model's qkit.arith", 0 },
    { "preds", "FILE", "write each image's predicted class, one per line in dataset order (not with --compare)", 0 },
    CLI_COMMON_OPTS,
    { NULL, NULL, NULL, 0 }
};

/* --compare: the QDQ graph (fake quant) against its lowering (integer). */
static int run_compare(cli_args *a, const char *path, qk_graph *fake, const qk_lower_opts *lo, const qk_dataset *ds,
                       qk_norm norm, int batch, qk_pool *pool)
{
    qk_graph *real = NULL;
    qk_lower_stats ls;
    qk_compare_result cr;
    qk_status st = qk_qdq_lower(fake, lo, &real, &ls);
    /* --arith: the simulation follows the arithmetic the integer side runs (qkit's reading of
     * its own files rounds as the model's qkit.arith says) */
    if (st == QK_OK && lo->arith >= 0)
        st = qk_graph_set_meta(fake, "qkit.arith", qk_arith_name(ls.arith));
    if (st == QK_OK)
        st = qk_qdq_compare(fake, real, ds, norm, batch, pool, &cr);
    qk_graph_destroy(real);
    if (st != QK_OK)
        return cli_fail("eval", st);
    if (cli_flag(a, "json")) {
        cli_json j;
        cli_json_begin(&j, stdout);
        cli_json_str(&j, "model", path);
        cli_json_str(&j, "arith", qk_arith_name(ls.arith));
        cli_json_num(&j, "fake_top1", cr.fake_top1);
        cli_json_num(&j, "real_top1", cr.real_top1);
        cli_json_num(&j, "gap", cr.gap);
        cli_json_int(&j, "images", cr.images);
        cli_json_num(&j, "max_logit_diff", cr.max_logit_diff);
        cli_json_int(&j, "int_layers", ls.int_layers);
        cli_json_int(&j, "float_layers", ls.float_layers);
        cli_json_int(&j, "threads", qk_pool_threads(pool));
        cli_json_arr_begin(&j, "tensors");
        for (int i = 0; i < cr.n_sites; i++) {
            const qk_site_agree *s = &cr.sites[i];
            cli_json_obj_begin(&j, NULL);
            cli_json_str(&j, "name", s->name);
            if (isinf(s->sqnr_db))
                cli_json_raw(&j, "sqnr_db", "null");
            else
                cli_json_num(&j, "sqnr_db", s->sqnr_db);
            cli_json_num(&j, "max_err_lsb", s->max_err_lsb);
            cli_json_num(&j, "mismatch", s->mismatch);
            cli_json_obj_end(&j);
        }
        cli_json_arr_end(&j);
        cli_json_end(&j);
    } else {
        printf("%s (arith %s, %d integer / %d float layers, %lld images)\n", path, qk_arith_name(ls.arith),
               ls.int_layers, ls.float_layers, (long long)cr.images);
        printf("  fake top-1 %.2f%%  real top-1 %.2f%%  gap %+.2f points  max logit diff %.3g\n",
               100 * cr.fake_top1, 100 * cr.real_top1, 100 * cr.gap, cr.max_logit_diff);
        printf("  %-40s %10s %8s %9s\n", "tensor", "SQNR dB", "max LSB", "mismatch");
        for (int i = 0; i < cr.n_sites; i++) {
            const qk_site_agree *s = &cr.sites[i];
            char q[32];
            if (isinf(s->sqnr_db))
                snprintf(q, sizeof q, "exact");
            else
                snprintf(q, sizeof q, "%.1f", s->sqnr_db);
            printf("  %-40s %10s %8.0f %8.3f%%\n", s->name, q, s->max_err_lsb, 100 * s->mismatch);
        }
    }
    qk_compare_result_free(&cr);
    return 0;
}

/* Unlabelled data: agreement with --reference, or (--real) of the integer
 * engine with the QDQ model run in float. */
static int run_agreement(cli_args *a, const char *path, qk_graph *g, const qk_lower_opts *lo, int real,
                         const qk_dataset *ds, qk_norm norm, int batch, qk_pool *pool)
{
    const char *refp = cli_get(a, "reference");
    if (!refp && !real)
        return cli_usage_error("eval", "the data has no labels: pass --reference FLOAT.onnx (agreement with the float "
                               "model) or --real (integer engine vs the QDQ model)");
    qk_graph *ref = NULL, *ig = NULL;
    qk_lower_stats ls = { 0 };
    qk_agree_result r;
    qk_status st = refp ? cli_load_model(refp, &ref) : QK_OK;
    qk_graph *test = g;
    if (st == QK_OK && real) {
        if ((st = qk_qdq_lower(g, lo, &ig, &ls)) == QK_OK)
            st = qk_lower_prepare_run(ig);
        test = ig;
    }
    if (st == QK_OK)
        st = qk_evaluate_agreement(ref ? ref : g, test, ds, norm, batch, pool, &r);
    qk_graph_destroy(ref);
    qk_graph_destroy(ig);
    if (st != QK_OK)
        return cli_fail("eval", st);
    const char *against = refp ? refp : "the QDQ model in float";
    if (cli_flag(a, "json")) {
        cli_json j;
        cli_json_begin(&j, stdout);
        cli_json_str(&j, "model", path);
        cli_json_str(&j, "reference", against);
        cli_json_bool(&j, "labels", 0);
        cli_json_int(&j, "images", r.images);
        cli_json_num(&j, "top1_agree", r.top1);
        cli_json_num(&j, "top5_agree", r.top5);
        if (isinf(r.sqnr_db))
            cli_json_raw(&j, "sqnr_db", "null");
        else
            cli_json_num(&j, "sqnr_db", r.sqnr_db);
        cli_json_num(&j, "cosine", r.cosine);
        if (real)
            cli_json_str(&j, "arith", qk_arith_name(ls.arith));
        cli_json_int(&j, "threads", qk_pool_threads(pool));
        cli_json_end(&j);
    } else {
        printf("%s%s vs %s (no labels, %lld images): top-1 agreement %.2f%%, top-5 agreement %.2f%%, output SQNR ",
               path, real ? " (integer engine)" : "", against, (long long)r.images, 100 * r.top1, 100 * r.top5);
        if (isinf(r.sqnr_db))
            printf("exact");
        else
            printf("%.1f dB", r.sqnr_db);
        printf(", cosine %.6f\n", r.cosine);
    }
    return 0;
}

/* --preds: one class per line, written atomically (a crash or a full disk
 * leaves the previous file); 0 on success, else a message on stderr. */
typedef struct preds_ctx { const int32_t *pred; int64_t n; } preds_ctx;

static qk_status preds_write(FILE *f, void *ctx)
{
    const preds_ctx *c = ctx;
    for (int64_t i = 0; i < c->n; i++)
        if (fprintf(f, "%d\n", (int)c->pred[i]) < 0)
            return qk_error(QK_ERR_IO, "write failed: %s", strerror(errno));
    return QK_OK;
}

static int write_preds(const char *path, const int32_t *pred, int64_t n)
{
    preds_ctx c = { pred, n };
    if (qk_file_write_atomic(path, preds_write, &c) != QK_OK) {
        fprintf(stderr, "qkit eval: --preds: %s\n", qk_last_error());
        return 1;
    }
    return 0;
}

static int run(cli_args *a)
{
    const char *path = cli_get(a, "model");
    if (!path)
        return cli_usage_error("eval", "--model FILE.onnx is required");
    long long limit, batch;
    if (cli_int(a, "limit", 0, 1, 1LL << 40, &limit) || cli_int(a, "batch", 256, 1, 65536, &batch))
        return 2;
    const char *split = cli_get(a, "split") ? cli_get(a, "split") : "t10k";
    int ok, rc = 1;
    qk_pool *pool = cli_pool(a, "eval", &ok);
    if (!ok)
        return 2;
    qk_graph *g = NULL;
    qk_dataset ds = { 0 };
    int32_t *pred = NULL;
    qk_eval_result r;
    cli_data cd;

    qk_status st = cli_load_model(path, &g);
    if (st != QK_OK)
        goto fail;
    int nrc = cli_data_setup(a, "eval", g, &cd, &st);
    if (nrc == 1)
        goto fail;
    if (nrc == 2) {
        rc = 2;
        goto done;
    }
    qk_norm norm = cd.norm;
    st = cli_data_load(&cd, cli_get(a, "data"), split, 0, limit, pool, &ds);
    if (st != QK_OK)
        goto fail;
    qk_dataset view = ds;
    int real = cli_flag(a, "real"), compare = cli_flag(a, "compare");
    qk_lower_opts lo;
    qk_lower_opts_default(&lo);
    lo.verbose = cli_flag(a, "verbose");
    if (cli_get(a, "arith")) {
        const char *an = cli_get(a, "arith");
        lo.arith = strcmp(an, "fp32") == 0 ? QK_ARITH_FP32 : strcmp(an, "gemmlowp") == 0 ? QK_ARITH_GEMMLOWP
                 : strcmp(an, "pot") == 0 ? QK_ARITH_POT : -2;
        if (lo.arith == -2) {
            rc = cli_usage_error("eval", "--arith must be fp32, gemmlowp or pot (got '%s')", an);
            goto done;
        }
    }
    qk_lower_stats ls = { 0 };
    const char *preds = cli_get(a, "preds");
    if (compare && preds) {
        rc = cli_usage_error("eval", "--preds does not go with --compare");
        goto done;
    }
    if (!qk_dataset_has_labels(&view)) {
        if (compare || preds) {
            rc = cli_usage_error("eval", "--compare and --preds need labelled data (%s has none); without labels "
                                 "use --reference FLOAT.onnx or --real", cli_get(a, "data"));
            goto done;
        }
        rc = run_agreement(a, path, g, &lo, real, &view, norm, (int)batch, pool);
        goto done;
    }
    if (compare) {
        rc = run_compare(a, path, g, &lo, &view, norm, (int)batch, pool);
        goto done;
    }
    if (real) {
        qk_graph *ig;
        if ((st = qk_qdq_lower(g, &lo, &ig, &ls)) != QK_OK)
            goto fail;
        qk_graph_destroy(g);
        g = ig;
        /* the runner's passes (qk_qrun does the same): fused float epilogues, NHWC between
         * integer convolutions, uint8 activation codes; bit-identical logits, faster. --compare
         * keeps the plain graph */
        if ((st = qk_lower_prepare_run(g)) != QK_OK)
            goto fail;
    }
    if (preds && !(pred = qk_malloc((size_t)view.n * sizeof *pred))) {
        st = qk_error(QK_ERR_NOMEM, "eval: out of memory for %lld predictions", (long long)view.n);
        goto fail;
    }
    {   /* one untimed forward first (zeros), as the benches warm up: images_per_s is the steady
         * state, not the first touch of the plan's buffers or the tile state */
        int64_t wb = batch < view.n ? batch : view.n;
        qk_plan_options o = g->opts; /* only the logits are read: the batch may run in slices */
        o.slice = qk_slice_for_threads(qk_pool_threads(pool));
        qk_graph_set_options(g, &o);
        if (wb > 0 && ((st = qk_graph_plan(g, wb, 0, pool)) != QK_OK || (st = qk_graph_set_batch(g, wb)) != QK_OK))
            goto fail;
        qk_tensor *in = &g->values[g->inputs[0]].t;
        if (wb > 0 && in->data)
            memset(in->data, 0, (size_t)qk_tensor_numel(in) * qk_dtype_size(in->dtype));
        if (wb > 0 && (st = qk_graph_forward(g)) != QK_OK)
            goto fail;
    }
    st = qk_evaluate_preds(g, &view, norm, (int)batch, pool, &r, pred);
    if (st != QK_OK)
        goto fail;
    if (preds && write_preds(preds, pred, view.n))
        goto done;
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
        if (real) {
            cli_json_bool(&j, "real", 1);
            cli_json_str(&j, "arith", qk_arith_name(ls.arith));
            cli_json_int(&j, "int_layers", ls.int_layers);
            cli_json_int(&j, "float_layers", ls.float_layers);
        }
        cli_json_end(&j);
    } else {
        printf("%s%s: top-1 %.2f%% (%lld/%lld), loss %.4f, %.0f images/s\n", path,
               real ? " (integer engine)" : "", 100 * r.top1, (long long)r.correct, (long long)r.images, r.loss,
               r.images_per_s);
        if (real)
            printf("  arith %s: %d integer layers, %d float layers, %d integer ops, %d float ops\n",
                   qk_arith_name(ls.arith), ls.int_layers, ls.float_layers, ls.int_nodes, ls.float_nodes);
    }
    rc = 0;
    goto done;
fail:
    cli_fail("eval", st);
done:
    qk_free(pred);
    qk_graph_destroy(g);
    qk_dataset_free(&ds);
    qk_pool_destroy(pool);
    return rc;
}

const cli_cmd cli_cmd_eval = {
    "eval", "evaluate an ONNX model's top-1 accuracy on Fashion-MNIST (or --data)",
    "--model FILE.onnx [options]",
    "The input preprocessing comes from the model's metadata (qkit.norm.*,\n"
    "qkit.preprocess.*); models without it (e.g. exported by PyTorch) get the\n"
    "Fashion-MNIST default; --preprocess and --mean/--std/... override both.\n"
    "images_per_s counts compute only, not data loading. Data without labels\n"
    "(a flat image folder, a .npy without --labels) gives the agreement with\n"
    "--reference FLOAT.onnx (or, with --real, with the QDQ model in float):\n"
    "top-1 and top-5 agreement, output SQNR and cosine similarity.\n"
    "--real lowers a quantized QDQ model (qkit ptq --out) to integer operators\n"
    "with the backend's requantization (metadata qkit.arith) and evaluates that;\n"
    "--compare runs both and prints fake top-1, real top-1, gap = fake - real and\n"
    "per quantized tensor the SQNR (dB, \"exact\" / null when identical) and the\n"
    "largest code difference in LSBs.\n"
    "--preds FILE writes the predicted class (first maximum) of every evaluated\n"
    "image, one per line in dataset order, for the float, fake-quant or --real\n"
    "model (compare with tools/ort_eval.js --preds).",
    opts, run
};
