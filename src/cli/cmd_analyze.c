/* qkit analyze: layer-by-layer comparison of a quantized model (a QDQ file
 * qkit ptq wrote) with its float original: SQNR and cosine per quantized
 * tensor, accumulated and alone, histograms with clip ranges, a ranking. */
#include "cli.h"
#include "qkit/analyze.h"
#include "qkit/onnx.h"
#include "qkit/registry.h"

#include <math.h>
#include <string.h>

static const cli_opt opts[] = {
    { "model", "FLOAT.onnx", "the float model (required)", 0 },
    { "quant", "Q.onnx", "the QDQ model qkit ptq wrote from it (required)", 0 },
    { "limit", "N", "analyze the first N test images (default 500)", 0 },
    { "html", "FILE", "write a self-contained HTML report (tables, inline SVG charts)", 0 },
    { "top", "N", "rows of the ranking printed (default 10)", 0 },
    CLI_DATA_OPTS,
    CLI_COMMON_OPTS,
    { NULL, NULL, NULL, 0 }
};

void cli_analysis_print(const qk_analysis *an, int top, FILE *f)
{
    fprintf(f, "network output: SQNR %.1f dB, cosine %.5f", an->out_sqnr, an->out_cos);
    if (an->top1_float >= 0)
        fprintf(f, ", top-1 float %.2f%% quantized %.2f%%", 100 * an->top1_float, 100 * an->top1_quant);
    fprintf(f, " (%lld images)\n", (long long)an->n_images);
    fprintf(f, "%-4s %-34s %-4s %4s %9s %9s %9s %8s\n", "rank", "site", "kind", "bits", "out-alone", "alone",
            "accum", "clipped");
    for (int i = 0; i < an->n_rank && i < top; i++) {
        const qk_analyze_site *S = &an->sites[an->rank[i]];
        fprintf(f, "%-4d %-34s %-4s %4d %8.1f %9.1f %9.1f %7.3f%%\n", i + 1, S->value, S->is_weight ? "W" : "A",
                S->bits, S->out_sqnr_alone, S->sqnr_alone, S->sqnr_acc, 100 * S->clipped);
    }
}

int cli_analysis_write_html(const qk_analysis *an, const char *path, const char *title)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "qkit: cannot write %s\n", path);
        return 1;
    }
    qk_status st = qk_analysis_write_html(an, title, f);
    if (fclose(f) != 0 || st != QK_OK) {
        fprintf(stderr, "qkit: writing %s failed\n", path);
        return 1;
    }
    return 0;
}

static int run(cli_args *a)
{
    const char *fpath = cli_get(a, "model"), *qpath = cli_get(a, "quant"), *html = cli_get(a, "html");
    if (!fpath)
        return cli_usage_error("analyze", "--model FLOAT.onnx is required");
    if (!qpath)
        return cli_usage_error("analyze", "--quant Q.onnx is required (a QDQ file qkit ptq wrote)");
    long long limit, top;
    if (cli_int(a, "limit", 500, 1, 1LL << 40, &limit) || cli_int(a, "top", 10, 0, 1 << 20, &top))
        return 2;
    int ok, rc = 1;
    qk_pool *pool = cli_pool(a, "analyze", &ok);
    if (!ok)
        return 2;
    qk_graph *g = NULL, *q = NULL;
    qk_qmodel *m = NULL;
    qk_analysis *an = NULL;
    qk_dataset test = { 0 };
    cli_data cd;
    qk_status st = cli_load_model(fpath, &g);
    if (st != QK_OK || (st = cli_load_model(qpath, &q)) != QK_OK)
        goto fail;
    int nrc = cli_data_setup(a, "analyze", g, &cd, &st);
    if (nrc == 1)
        goto fail;
    if (nrc == 2) {
        rc = 2;
        goto done;
    }
    if ((st = cli_data_load(&cd, cli_get(a, "data"), "t10k", 0, limit, pool, &test)) != QK_OK)
        goto fail;
    st = qk_ptq_from_qdq(g, q, &m);
    g = NULL;
    if (st != QK_OK)
        goto fail;
    if ((st = qk_ptq_analyze_dataset(m, &test, cd.norm, limit < test.n ? limit : test.n, pool, &an)) != QK_OK)
        goto fail;
    if (cli_flag(a, "json"))
        st = qk_analysis_write_json(an, stdout);
    else
        cli_analysis_print(an, (int)top, stdout);
    if (st != QK_OK)
        goto fail;
    if (html && cli_analysis_write_html(an, html, qpath))
        goto done;
    rc = 0;
    goto done;
fail:
    cli_fail("analyze", st);
done:
    qk_analysis_destroy(an);
    qk_qmodel_destroy(m);
    qk_graph_destroy(g);
    qk_graph_destroy(q);
    qk_dataset_free(&test);
    qk_pool_destroy(pool);
    return rc;
}

const cli_cmd cli_cmd_analyze = {
    "analyze", "layer-by-layer analysis of a quantized model against its float original",
    "--model FLOAT.onnx --quant Q.onnx [options]",
    "For every quantized tensor: SQNR and cosine of the quantized network's\n"
    "activations against the float network's on the same test images\n"
    "(accumulated), of that tensor quantized alone, and of the network output\n"
    "with only that tensor quantized (out-alone; the ranking sorts by it, the\n"
    "site that hurts most first); the fraction of float values outside the\n"
    "clip range. A weight is measured at its layer's output. --json prints\n"
    "everything (histograms included; an infinite SQNR is null).",
    opts, run
};
