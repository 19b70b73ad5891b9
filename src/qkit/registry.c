/* The top layer: joins the operator tables of the layers (registry.h). */
#include "qkit/registry.h"

#include "qkit/int.h"
#include "qkit/onnx.h"
#include "qkit/ops.h"
#include "qkit/quant.h"

#include <string.h>

/* Every layer's table, lowest first (a copy: no shared state). */
#define N_TABLES 3
#define ALL_TABLES(t) const qk_op_table t[N_TABLES] = { qk_float_op_table, qk_quant_op_table, qk_int_op_table }

qk_status qk_ops_bind(qk_graph *g)
{
    ALL_TABLES(t);
    return qk_graph_bind(g, t, N_TABLES);
}

const qk_op *qk_op_find(const char *type)
{
    ALL_TABLES(t);
    for (int k = 0; k < N_TABLES; k++)
        for (int i = 0; t[k].ops[i]; i++)
            if (strcmp(t[k].ops[i]->type, type) == 0)
                return t[k].ops[i];
    return NULL;
}

const char *const *qk_op_names(void)
{
    enum { MAX_OPS = 128 };
    static const char *names[MAX_OPS + 1];
    ALL_TABLES(t);
    int n = 0;
    for (int k = 0; k < N_TABLES; k++)
        for (int i = 0; t[k].ops[i] && n < MAX_OPS; i++)
            names[n++] = t[k].ops[i]->type;
    names[n] = NULL;
    return names;
}

static qk_status bind_loaded(qk_status st, const char *label, qk_graph **out)
{
    if (st != QK_OK)
        return st;
    st = qk_ops_bind(*out);
    if (st != QK_OK) {
        st = qk_error_context(st, "file '%s'", label);
        qk_graph_destroy(*out);
        *out = NULL;
    }
    return st;
}

qk_status qk_onnx_load_buffer(const void *data, size_t len, const char *label, qk_graph **out)
{
    return bind_loaded(qk_onnx_read_buffer(data, len, label, out), label ? label : "<memory>", out);
}

qk_status qk_onnx_load(const char *path, qk_graph **out)
{
    return bind_loaded(qk_onnx_read(path, out), path, out);
}
