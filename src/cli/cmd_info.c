/* qkit info: layers, shapes, parameters, MACs and quantizers of an ONNX model. */
#include "cli.h"
#include "qkit/registry.h"
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


/* One quantizer of a QDQ model: a DequantizeLinear of an integer
 * initializer (weight) or a QuantizeLinear (activation; its bit-width from
 * a Clip between it and the DequantizeLinear). */
typedef struct qinfo {
    const char *tensor, *kind, *dtype;
    int bits, axis;
    int64_t channels;
    float smin, smax;
    int32_t zp;
} qinfo;

static int quantizer_of(const qk_graph *g, const qk_node *n, qinfo *q)
{
    int is_q = strcmp(n->op_type, "QuantizeLinear") == 0, is_dq = strcmp(n->op_type, "DequantizeLinear") == 0;
    if ((!is_q && !is_dq) || n->n_in < 2 || n->in[0] < 0 || n->in[1] < 0)
        return 0;
    const qk_value *x = &g->values[n->in[0]], *sc = &g->values[n->in[1]];
    const qk_value *zp = n->n_in > 2 && n->in[2] >= 0 ? &g->values[n->in[2]] : NULL;
    int init = qk_value_is_initializer(x);
    if (is_dq && !init)
        return 0; /* the second half of an activation pair */
    memset(q, 0, sizeof *q);
    q->tensor = x->name;
    q->kind = is_dq ? "weight" : "activation";
    qk_dtype dt = is_dq ? x->t.dtype : zp ? zp->t.dtype : QK_U8;
    q->dtype = qk_dtype_name(dt);
    q->bits = dt == QK_I32 ? 32 : 8;
    q->channels = qk_tensor_numel(&sc->t);
    q->axis = q->channels > 1 ? (int)qk_node_int(n, "axis", 1) : -1;
    const float *s = qk_f32(&sc->t);
    q->smin = q->smax = s ? s[0] : 0;
    for (int64_t i = 1; s && i < q->channels; i++) {
        q->smin = s[i] < q->smin ? s[i] : q->smin;
        q->smax = s[i] > q->smax ? s[i] : q->smax;
    }
    q->zp = zp ? (int32_t)qk_tensor_int_at(&zp->t, 0) : 0;
    if (is_q) { /* Q -> Clip(lo, hi) -> DQ: bits from the clip range */
        int cons[4], nc = qk_graph_consumers(g, n->out[0], cons, 4);
        const qk_node *c = nc == 1 ? &g->nodes[cons[0]] : NULL;
        if (c && strcmp(c->op_type, "Clip") == 0 && c->n_in == 3 && c->in[1] >= 0 && c->in[2] >= 0) {
            int32_t lo = (int32_t)qk_tensor_int_at(&g->values[c->in[1]].t, 0), hi = (int32_t)qk_tensor_int_at(&g->values[c->in[2]].t, 0);
            int b = 1;
            while ((1 << b) < hi - lo + 1)
                b++;
            q->bits = b;
        }
    } else { /* weights: bits from the code range actually used */
        int32_t lo = 0, hi = 0;
        int64_t n_el = qk_tensor_numel(&x->t);
        for (int64_t i = 0; i < n_el; i++) {
            int32_t v = (int32_t)qk_tensor_int_at(&x->t, i) - (q->channels == 1 ? q->zp : 0);
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        int b = 1;
        while ((1 << b) < (dt == QK_U8 ? hi - lo + 1 : 2 * (hi > -lo ? hi : -lo) + 1))
            b++;
        q->bits = b < 8 ? b : 8;
    }
    return 1;
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
    qk_status st = cli_load_model(path, &g);
    if (st == QK_OK)
        st = qk_graph_plan(g, 1, 0, NULL); /* shapes at batch 1 */
    if (st != QK_OK) {
        qk_graph_destroy(g);
        return cli_fail("info", st);
    }
    int json = cli_flag(a, "json");
    cli_json j;
    int64_t total_macs = 0, total_params = qk_graph_param_count(g), total_const = 0;
    int nw = 28; /* node names are printed whole (--exclude needs them) */
    for (int k = 0; k < g->n_nodes; k++)
        if (g->nodes[k].name && (int)strlen(g->nodes[k].name) > nw)
            nw = (int)strlen(g->nodes[k].name);
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
        printf("\n%-4s %-*s %-20s %-18s %10s %12s\n", "#", nw, "node", "op", "output (batch 1)", "params", "MACs");
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
            printf("%-4d %-*s %-20.20s %-18s %10lld %12lld\n", k, nw, n->name ? n->name : "", n->op_type, sh, (long long)p,
                   (long long)m);
        }
    }
    int nq = 0;
    qinfo q;
    if (json) {
        cli_json_arr_end(&j);
        cli_json_arr_begin(&j, "quantizers");
    }
    for (int k = 0; k < g->n_nodes; k++) {
        if (!quantizer_of(g, &g->nodes[g->order[k]], &q))
            continue;
        if (json) {
            cli_json_obj_begin(&j, NULL);
            cli_json_str(&j, "tensor", q.tensor);
            cli_json_str(&j, "kind", q.kind);
            cli_json_str(&j, "dtype", q.dtype);
            cli_json_int(&j, "bits", q.bits);
            cli_json_int(&j, "channels", q.channels);
            cli_json_int(&j, "axis", q.axis);
            cli_json_num(&j, "scale_min", q.smin);
            cli_json_num(&j, "scale_max", q.smax);
            if (q.channels == 1)
                cli_json_int(&j, "zero_point", q.zp);
            cli_json_obj_end(&j);
        } else {
            if (nq == 0)
                printf("\nquantizers:\n  %-10s %-34s %-6s %4s %-18s %s\n", "kind", "tensor", "type", "bits",
                       "granularity", "scale");
            char gr[32];
            if (q.channels > 1)
                snprintf(gr, sizeof gr, "%lld ch, axis %d", (long long)q.channels, q.axis);
            else
                snprintf(gr, sizeof gr, "per tensor, zp %d", q.zp);
            if (q.channels > 1)
                printf("  %-10s %-34s %-6s %4d %-18s %.4g..%.4g\n", q.kind, q.tensor, q.dtype, q.bits, gr, q.smin,
                       q.smax);
            else
                printf("  %-10s %-34s %-6s %4d %-18s %.4g\n", q.kind, q.tensor, q.dtype, q.bits, gr, q.smin);
        }
        nq++;
    }
    if (json) {
        cli_json_arr_end(&j);
        cli_json_int(&j, "n_quantizers", nq);
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
        if (nq)
            printf("%d quantizers (QuantizeLinear/DequantizeLinear)\n", nq);
        printf("%d nodes, %lld trainable parameters, %lld constant values, %lld MACs per image\n", g->n_nodes,
               (long long)total_params, (long long)total_const, (long long)total_macs);
    }
    qk_graph_destroy(g);
    return 0;
}

const cli_cmd cli_cmd_info = {
    "info", "show a model's layers, shapes, parameters, MACs and quantizers",
    "--model FILE.onnx | --ops",
    NULL, opts, run
};
