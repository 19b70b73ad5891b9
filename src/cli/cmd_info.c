/* qkit info: layers, shapes, parameters and MACs of an ONNX model. */
#include "cli.h"
#include "qkit/onnx.h"
#include "qkit/ops.h"

#include <string.h>

static const cli_opt opts[] = {
    { "model", "FILE.onnx", "model to describe", 0 },
    { "ops", NULL, "list the operators qkit supports", 0 },
    CLI_COMMON_OPTS,
    { NULL, NULL, NULL, 0 }
};

static int64_t node_params(const qk_graph *g, const qk_node *n)
{
    int64_t p = 0;
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i] >= 0 && g->values[n->in[i]].kind == QK_VALUE_PARAM)
            p += qk_tensor_numel(&g->values[n->in[i]].t);
    return p;
}

static int list_ops(const cli_args *a)
{
    const char *const *names = qk_op_names();
    if (cli_flag(a, "json")) {
        cli_json j;
        cli_json_begin(&j, stdout);
        cli_json_arr_begin(&j, "ops");
        for (int i = 0; names[i]; i++)
            cli_json_str(&j, NULL, names[i]);
        cli_json_arr_end(&j);
        cli_json_end(&j);
    } else {
        for (int i = 0; names[i]; i++)
            printf("%s\n", names[i]);
    }
    return 0;
}

static int run(cli_args *a)
{
    if (cli_flag(a, "ops"))
        return list_ops(a);
    const char *path = cli_get(a, "model");
    if (!path)
        return cli_usage_error("info", "--model FILE.onnx (or --ops) is required");
    qk_graph *g = NULL;
    qk_status st = qk_onnx_load(path, &g);
    if (st == QK_OK)
        st = qk_graph_plan(g, 1, 0, NULL); /* shapes at batch 1 */
    if (st != QK_OK) {
        qk_graph_destroy(g);
        return cli_fail("info", st);
    }
    int json = cli_flag(a, "json");
    cli_json j;
    int64_t total_macs = 0, total_params = qk_graph_param_count(g), total_const = 0;
    for (int i = 0; i < g->n_values; i++)
        if (g->values[i].kind == QK_VALUE_CONST)
            total_const += qk_tensor_numel(&g->values[i].t);
    if (json) {
        cli_json_begin(&j, stdout);
        cli_json_str(&j, "model", path);
        cli_json_int(&j, "opset", g->opset);
        cli_json_obj_begin(&j, "metadata");
        for (int i = 0; i < g->n_meta; i++)
            cli_json_str(&j, g->meta_keys[i], g->meta_vals[i]);
        cli_json_obj_end(&j);
        cli_json_arr_begin(&j, "layers");
    } else {
        printf("model %s (opset %lld)\n", path, (long long)g->opset);
        for (int i = 0; i < g->n_meta; i++)
            printf("  metadata %s = %s\n", g->meta_keys[i], g->meta_vals[i]);
        for (int i = 0; i < g->n_inputs; i++) {
            char sh[96];
            const qk_value *v = &g->values[g->inputs[i]];
            qk_shape_str(&v->t, sh, sizeof sh);
            printf("  input  %s %s %s%s\n", v->name, qk_dtype_name(v->t.dtype), sh,
                   v->dyn_batch ? " (dim 0 = batch)" : "");
        }
        printf("\n%-4s %-28s %-20s %-18s %10s %12s\n", "#", "node", "op", "output (batch 1)", "params", "MACs");
    }
    for (int k = 0; k < g->n_nodes; k++) {
        const qk_node *n = &g->nodes[g->order[k]];
        char sh[96] = "";
        if (n->n_out > 0)
            qk_shape_str(&g->values[n->out[0]].t, sh, sizeof sh);
        int64_t p = node_params(g, n), m = qk_node_macs(g, n);
        total_macs += m;
        if (json) {
            cli_json_obj_begin(&j, NULL);
            cli_json_str(&j, "name", n->name);
            cli_json_str(&j, "op", n->op_type);
            cli_json_str(&j, "output", n->n_out > 0 ? g->values[n->out[0]].name : "");
            cli_json_raw(&j, "shape", sh[0] ? sh : "null");
            cli_json_int(&j, "params", p);
            cli_json_int(&j, "macs", m);
            cli_json_obj_end(&j);
        } else {
            printf("%-4d %-28.28s %-20.20s %-18s %10lld %12lld\n", k, n->name, n->op_type, sh, (long long)p,
                   (long long)m);
        }
    }
    if (json) {
        cli_json_arr_end(&j);
        cli_json_int(&j, "nodes", g->n_nodes);
        cli_json_int(&j, "params", total_params);
        cli_json_int(&j, "constants", total_const);
        cli_json_int(&j, "macs", total_macs);
        cli_json_end(&j);
    } else {
        for (int i = 0; i < g->n_outputs; i++) {
            char sh[96];
            const qk_value *v = &g->values[g->outputs[i]];
            printf("  output %s %s %s\n", v->name, qk_dtype_name(v->t.dtype), qk_shape_str(&v->t, sh, sizeof sh));
        }
        printf("%d nodes, %lld trainable parameters, %lld constant values, %lld MACs per image\n", g->n_nodes,
               (long long)total_params, (long long)total_const, (long long)total_macs);
    }
    qk_graph_destroy(g);
    return 0;
}

const cli_cmd cli_cmd_info = {
    "info", "show a model's layers, shapes, parameters and MACs",
    "--model FILE.onnx | --ops",
    NULL, opts, run
};
