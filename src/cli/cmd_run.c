/* qkit run: run any supported ONNX model on TensorProto (.pb) files. */
#include "cli.h"
#include "qkit/registry.h"
#include "qkit/onnx.h"

static const cli_opt opts[] = {
    { "model", "FILE.onnx", "model to run (required)", 0 },
    { "input", "IN.pb", "input tensor, in the order of the model's inputs (or matched by name)", 1 },
    { "output", "OUT.pb", "where to write output i (in the model's output order)", 1 },
    CLI_COMMON_OPTS,
    { NULL, NULL, NULL, 0 }
};

static int run(cli_args *a)
{
    const char *path = cli_get(a, "model");
    const char **ins, **outs;
    int n_in = cli_multi(a, "input", &ins), n_outp = cli_multi(a, "output", &outs);
    if (!path)
        return cli_usage_error("run", "--model FILE.onnx is required");
    if (n_in == 0)
        return cli_usage_error("run", "at least one --input IN.pb is required");
    int ok, rc = 1;
    qk_pool *pool = cli_pool(a, "run", &ok);
    if (!ok)
        return 2;
    qk_graph *g = NULL;
    qk_tensor *y = NULL;
    int n_out = 0;
    qk_status st = cli_load_model(path, &g);
    if (st == QK_OK && n_outp > g->n_outputs) {
        st = qk_error(QK_ERR_ARG, "%d --output files given but the model has %d outputs", n_outp, g->n_outputs);
    }
    if (st == QK_OK)
        st = qk_onnx_run_files(g, n_in, ins, pool, &n_out, &y);
    for (int i = 0; st == QK_OK && i < n_outp; i++)
        st = qk_onnx_save_tensor(&y[i], g->values[g->outputs[i]].name, outs[i]);
    if (st != QK_OK) {
        cli_fail("run", st);
        goto done;
    }
    if (cli_flag(a, "json")) {
        cli_json j;
        cli_json_begin(&j, stdout);
        cli_json_str(&j, "model", path);
        cli_json_arr_begin(&j, "outputs");
        for (int i = 0; i < n_out; i++) {
            char sh[96];
            cli_json_obj_begin(&j, NULL);
            cli_json_str(&j, "name", g->values[g->outputs[i]].name);
            cli_json_str(&j, "dtype", qk_dtype_name(y[i].dtype));
            cli_json_raw(&j, "shape", qk_shape_str(&y[i], sh, sizeof sh));
            cli_json_str(&j, "file", i < n_outp ? outs[i] : NULL);
            cli_json_obj_end(&j);
        }
        cli_json_arr_end(&j);
        cli_json_end(&j);
    } else {
        for (int i = 0; i < n_out; i++) {
            char sh[96];
            printf("output %s %s %s%s%s\n", g->values[g->outputs[i]].name, qk_dtype_name(y[i].dtype),
                   qk_shape_str(&y[i], sh, sizeof sh), i < n_outp ? " -> " : "", i < n_outp ? outs[i] : "");
        }
    }
    rc = 0;
done:
    qk_onnx_free_tensors(y, n_out);
    qk_graph_destroy(g);
    qk_pool_destroy(pool);
    return rc;
}

const cli_cmd cli_cmd_run = {
    "run", "run a model on ONNX TensorProto files (the format of the ONNX test data)",
    "--model FILE.onnx --input IN.pb [--input ...] [--output OUT.pb ...]",
    "Outputs are written in the model's output order; any model made of\n"
    "supported operators runs, so its results can be checked against another runtime.",
    opts, run
};
