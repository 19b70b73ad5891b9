/* Run a loaded graph on given input tensors (used by `qkit run` and the
 * ONNX node-test runner); see qk_onnx_run in include/qkit/onnx.h. */
#include "qkit/onnx.h"

#include <stdio.h>
#include <string.h>

/* "[N,3,32,32]" for a declared input (dim 0 "N" when dynamic). */
static char *decl_shape_str(const qk_value *v, char *buf, size_t n)
{
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int d = 0; d < v->t.ndim && k < n; d++) {
        if (d == 0 && v->dyn_batch)
            k += (size_t)snprintf(buf + k, n - k, "N");
        else
            k += (size_t)snprintf(buf + k, n - k, "%lld", (long long)v->t.dims[d]);
        if (d + 1 < v->t.ndim && k < n)
            k += (size_t)snprintf(buf + k, n - k, ",");
    }
    if (k < n)
        snprintf(buf + k, n - k, "]");
    return buf;
}

void qk_onnx_free_tensors(qk_tensor *ts, int n)
{
    if (!ts)
        return;
    for (int i = 0; i < n; i++)
        qk_tensor_free(&ts[i]);
    qk_free(ts);
}

/* dtype and shape of t against declared graph input v. */
static qk_status check_one(const qk_value *v, const qk_tensor *t)
{
    char a[160], b[160];
    if (t->dtype != v->t.dtype)
        return qk_error(QK_ERR_ARG, "input '%s' must be %s, got %s", v->name,
                        qk_dtype_name(v->t.dtype), qk_dtype_name(t->dtype));
    int ok = t->ndim == v->t.ndim;
    for (int d = 0; ok && d < t->ndim; d++)
        ok = (d == 0 && v->dyn_batch) || t->dims[d] == v->t.dims[d];
    if (!ok)
        return qk_error(QK_ERR_SHAPE, "input '%s' has shape %s, the model expects %s",
                        v->name, qk_shape_str(t, a, sizeof a), decl_shape_str(v, b, sizeof b));
    if (!t->data && qk_tensor_numel(t) > 0)
        return qk_error(QK_ERR_ARG, "input '%s' has no data", v->name);
    return QK_OK;
}

qk_status qk_onnx_freeze_input(qk_graph *g, const char *name, const qk_tensor *value)
{
    int k = 0;
    while (k < g->n_inputs && strcmp(g->values[g->inputs[k]].name, name) != 0)
        k++;
    if (k == g->n_inputs)
        return qk_error(QK_ERR_NOTFOUND, "freeze: '%s' is not a graph input", name);
    qk_value *v = &g->values[g->inputs[k]];
    qk_status st = check_one(v, value);
    if (st != QK_OK)
        return qk_error_context(st, "freeze");
    qk_tensor t;
    st = qk_tensor_clone(&t, value);
    if (st != QK_OK)
        return st;
    qk_graph_unplan(g);
    v->kind = QK_VALUE_CONST;
    v->dyn_batch = 0;
    v->t = t;
    for (int i = k + 1; i < g->n_inputs; i++)
        g->inputs[i - 1] = g->inputs[i];
    g->n_inputs--;
    return QK_OK;
}

static qk_status check_inputs(const qk_graph *g, int n_in, const qk_tensor *inputs, int64_t *batch)
{
    if (n_in != g->n_inputs) {
        char names[512];
        size_t k = 0;
        names[0] = 0;
        for (int i = 0; i < g->n_inputs && k < sizeof names; i++)
            k += (size_t)snprintf(names + k, sizeof names - k, "%s'%s'", i ? ", " : "",
                                  g->values[g->inputs[i]].name);
        return qk_error(QK_ERR_ARG, "run: the model has %d input(s) (%s) but %d tensor(s) were given",
                        g->n_inputs, names, n_in);
    }
    *batch = -1;
    const char *batch_from = NULL;
    for (int i = 0; i < n_in; i++) {
        const qk_value *v = &g->values[g->inputs[i]];
        const qk_tensor *t = &inputs[i];
        qk_status st = check_one(v, t);
        if (st != QK_OK)
            return qk_error_context(st, "run");
        if (!v->dyn_batch)
            continue;
        if (t->dims[0] < 1)
            return qk_error(QK_ERR_SHAPE, "run: input '%s' has batch %lld; at least 1 is needed",
                            v->name, (long long)t->dims[0]);
        if (*batch >= 0 && t->dims[0] != *batch)
            return qk_error(QK_ERR_SHAPE, "run: input '%s' has batch %lld but input '%s' has %lld",
                            v->name, (long long)t->dims[0], batch_from, (long long)*batch);
        *batch = t->dims[0];
        batch_from = v->name;
    }
    if (*batch < 0)
        *batch = 1;
    return QK_OK;
}

/* Inputs small enough to be read as known values at plan time (the
 * QK_KV_MAX of src/ops/known.h). */
#define RUN_SMALL_INPUT 64

static int is_small(const qk_tensor *t) { return qk_tensor_numel(t) <= RUN_SMALL_INPUT; }

/* Whether a small input's data differs from what the current plan saw
 * (its buffer still holds the previous run's data): shapes may depend on it. */
static int small_inputs_changed(const qk_graph *g, const qk_tensor *inputs)
{
    if (!g->planned)
        return 1;
    for (int i = 0; i < g->n_inputs; i++) {
        const qk_value *v = &g->values[g->inputs[i]];
        if (!is_small(&inputs[i]))
            continue;
        size_t bytes = qk_tensor_bytes(&inputs[i]);
        if (bytes != qk_tensor_bytes(&v->t) || (bytes && memcmp(v->t.data, inputs[i].data, bytes) != 0))
            return 1;
    }
    return 0;
}

/* After an input became dynamic (adopt_batch): Reshape targets that PyTorch
 * folded to the exported batch ([1, C, ...] where the Reshape's input and
 * output both have dim 0 = 1) get 0 ("copy the input's dim 0") instead of
 * 1, which is the same shape at batch 1 and follows any other batch. The
 * new target is a new CONST value (the old one may be shared). Best effort:
 * nothing changes when shapes cannot be inferred at batch 1. */
static void rebatch_shapes(qk_graph *g)
{
    if (qk_graph_infer(g) != QK_OK) {
        qk_clear_error();
        return;
    }
    for (int k = 0; k < g->n_nodes; k++) {
        qk_node *n = &g->nodes[k];
        if (strcmp(n->op_type, "Reshape") != 0 || n->n_in < 2 || n->in[1] < 0 || n->in[0] < 0 ||
            qk_node_int(n, "allowzero", 0) != 0)
            continue;
        const qk_value *sv = &g->values[n->in[1]];
        const qk_tensor *x = &g->values[n->in[0]].t, *y = &g->values[n->out[0]].t;
        if (sv->kind != QK_VALUE_CONST || sv->t.dtype != QK_I64 || sv->t.ndim != 1 || sv->t.dims[0] < 1 ||
            ((const int64_t *)sv->t.data)[0] != 1 || x->ndim < 1 || x->dims[0] != 1 || y->ndim < 1 ||
            y->dims[0] != 1)
            continue;
        qk_tensor t;
        if (qk_tensor_clone(&t, &sv->t) != QK_OK)
            break;
        ((int64_t *)t.data)[0] = 0;
        char base[200];
        snprintf(base, sizeof base, "%s_rebatched", sv->name);
        char *nm = qk_graph_unique_name(g, base);
        int id = nm ? qk_graph_add_init(g, nm, QK_VALUE_CONST, &t) : -1;
        qk_free(nm);
        if (id < 0) {
            qk_tensor_free(&t);
            qk_clear_error();
            break;
        }
        g->nodes[k].in[1] = id; /* g->nodes may not move: adding a value does not touch nodes */
    }
}

/* A model exported with a fixed batch (dim 0 of a float input of rank >= 2
 * declared 1) run on another batch: that input's dim 0 becomes dynamic and
 * qkit re-plans, saying so once per input. Shapes inside the model that
 * were folded to batch 1 may still refuse the new batch (the error names
 * the node). */
static void adopt_batch(qk_graph *g, int n_in, const qk_tensor *inputs)
{
    for (int i = 0; i < n_in && i < g->n_inputs; i++) {
        qk_value *v = &g->values[g->inputs[i]];
        const qk_tensor *t = &inputs[i];
        if (v->dyn_batch || v->t.dtype != QK_F32 || v->t.ndim < 2 || t->ndim != v->t.ndim ||
            v->t.dims[0] != 1 || t->dims[0] == 1 || t->dims[0] < 1 || t->dtype != v->t.dtype)
            continue;
        int same = 1;
        for (int d = 1; d < t->ndim; d++)
            same &= t->dims[d] == v->t.dims[d];
        if (!same)
            continue;
        qk_log(QK_LOG_WARN, "input '%s' was exported with a fixed batch of 1; re-planning the model for "
               "batch %lld", v->name, (long long)t->dims[0]);
        qk_graph_unplan(g);
        v->dyn_batch = 1;
        rebatch_shapes(g);
    }
}

int qk_onnx_dynamic_batch(qk_graph *g)
{
    int changed = 0;
    for (int i = 0; g && i < g->n_inputs; i++) {
        qk_value *v = &g->values[g->inputs[i]];
        if (v->dyn_batch || v->t.dtype != QK_F32 || v->t.ndim < 2 || v->t.dims[0] != 1)
            continue;
        qk_log(QK_LOG_WARN, "input '%s' was exported with a fixed batch of 1; qkit runs the model at any batch",
               v->name);
        qk_graph_unplan(g);
        v->dyn_batch = 1;
        changed++;
    }
    if (changed)
        rebatch_shapes(g);
    return changed;
}

qk_status qk_onnx_run(qk_graph *g, int n_in, const qk_tensor *inputs, qk_pool *pool,
                      int *n_out, qk_tensor **outputs)
{
    *n_out = 0;
    *outputs = NULL;
    int64_t batch;
    adopt_batch(g, n_in, inputs);
    qk_status st = check_inputs(g, n_in, inputs, &batch);
    if (st != QK_OK)
        return st;
    int replan = !g->planned || g->training || g->max_batch < batch || g->exec.pool != pool ||
                 small_inputs_changed(g, inputs);
    if (replan) {
        /* Small inputs are known while shapes are planned (known.h): point
         * them at the caller's data until plan gives them their buffers. */
        qk_graph_unplan(g);
        for (int i = 0; i < n_in; i++) {
            qk_value *v = &g->values[g->inputs[i]];
            if (is_small(&inputs[i])) {
                v->t.data = inputs[i].data;
                v->t.owned = 0;
            }
        }
        st = qk_graph_plan(g, batch, 0, pool);
        if (st != QK_OK)
            for (int i = 0; i < n_in; i++)
                g->values[g->inputs[i]].t.data = NULL;
    } else {
        st = qk_graph_set_batch(g, batch);
    }
    if (st != QK_OK)
        return st;
    for (int i = 0; i < n_in; i++) {
        qk_value *v = &g->values[g->inputs[i]];
        size_t bytes = qk_tensor_bytes(&inputs[i]);
        if (bytes != qk_tensor_bytes(&v->t))
            return qk_error(QK_ERR_STATE, "run: input '%s' buffer size mismatch after planning", v->name);
        if (bytes)
            memcpy(v->t.data, inputs[i].data, bytes);
    }
    st = qk_graph_forward(g);
    if (st != QK_OK)
        return st;
    qk_tensor *outs = qk_calloc((size_t)(g->n_outputs ? g->n_outputs : 1), sizeof *outs);
    if (!outs)
        return qk_error(QK_ERR_NOMEM, "run: out of memory");
    for (int i = 0; i < g->n_outputs; i++) {
        st = qk_tensor_clone(&outs[i], &g->values[g->outputs[i]].t);
        if (st != QK_OK) {
            qk_onnx_free_tensors(outs, i);
            return qk_error_context(st, "run: output '%s'", g->values[g->outputs[i]].name);
        }
    }
    *outputs = outs;
    *n_out = g->n_outputs;
    return QK_OK;
}

qk_status qk_onnx_run_files(qk_graph *g, int n_files, const char *const *paths, qk_pool *pool,
                            int *n_out, qk_tensor **outputs)
{
    *n_out = 0;
    *outputs = NULL;
    if (n_files < 0)
        return qk_error(QK_ERR_ARG, "run: negative number of input files");
    qk_tensor *ts = qk_calloc((size_t)(n_files ? n_files : 1), sizeof *ts);
    char **names = qk_calloc((size_t)(n_files ? n_files : 1), sizeof *names);
    int *slot = qk_malloc((size_t)(n_files ? n_files : 1) * sizeof *slot);
    qk_tensor *ordered = qk_calloc((size_t)(n_files ? n_files : 1), sizeof *ordered);
    qk_status st = QK_OK;
    if (!ts || !names || !slot || !ordered)
        st = qk_error(QK_ERR_NOMEM, "run: out of memory");
    int loaded = 0;
    for (; st == QK_OK && loaded < n_files; loaded++) {
        st = qk_onnx_load_tensor(paths[loaded], &ts[loaded], &names[loaded]);
        if (st != QK_OK)
            break;
    }
    if (st == QK_OK) {
        /* By name when every file names a distinct graph input, else by position. */
        int by_name = n_files == g->n_inputs;
        for (int i = 0; i < n_files && by_name; i++) {
            slot[i] = -1;
            for (int k = 0; k < g->n_inputs; k++)
                if (strcmp(names[i], g->values[g->inputs[k]].name) == 0)
                    slot[i] = k;
            for (int j = 0; j < i && slot[i] >= 0; j++)
                if (slot[j] == slot[i])
                    slot[i] = -1;
            by_name = slot[i] >= 0;
        }
        for (int i = 0; i < n_files; i++)
            ordered[by_name ? slot[i] : i] = ts[i]; /* shallow: ts keeps ownership */
        st = qk_onnx_run(g, n_files, ordered, pool, n_out, outputs);
    }
    if (ts)
        for (int i = 0; i < n_files; i++)
            qk_tensor_free(&ts[i]);
    if (names)
        for (int i = 0; i < n_files; i++)
            qk_free(names[i]);
    qk_free(ts);
    qk_free(names);
    qk_free(slot);
    qk_free(ordered);
    return st;
}
