/* qk_graph -> ONNX ModelProto (see qk_onnx_save in include/qkit/onnx.h).
 * The protobuf-c messages point into the graph's own strings and tensor
 * data (no copies); the arrays that hold them come from a small arena that
 * is released in one go. */
#include "onnx_internal.h"

#include <string.h>

typedef struct arena {
    void **blocks;
    int n, cap;
} arena;

static void *arena_alloc(arena *a, size_t n, size_t size)
{
    if (a->n == a->cap) {
        int cap = a->cap ? 2 * a->cap : 64;
        void **nb = qk_realloc(a->blocks, (size_t)cap * sizeof *nb);
        if (!nb)
            return NULL;
        a->blocks = nb;
        a->cap = cap;
    }
    void *p = qk_calloc(n ? n : 1, size);
    if (p)
        a->blocks[a->n++] = p;
    return p;
}

static void arena_free(arena *a)
{
    for (int i = 0; i < a->n; i++)
        qk_free(a->blocks[i]);
    qk_free(a->blocks);
}

static char sym_batch[] = "N";
static char empty_name[] = "";

/* ValueInfo for a graph input or output. dyn0: dim 0 written as "N".
 * with_shape: 0 writes only the element type. */
static Onnx__ValueInfoProto *value_info(arena *ar, const qk_value *v, int dyn0, int with_shape)
{
    Onnx__ValueInfoProto *vi = arena_alloc(ar, 1, sizeof *vi);
    Onnx__TypeProto *tp = arena_alloc(ar, 1, sizeof *tp);
    Onnx__TypeProto__Tensor *tt = arena_alloc(ar, 1, sizeof *tt);
    Onnx__TensorShapeProto *sp = arena_alloc(ar, 1, sizeof *sp);
    int nd = with_shape ? v->t.ndim : 0;
    Onnx__TensorShapeProto__Dimension *dims = arena_alloc(ar, (size_t)nd, sizeof *dims);
    Onnx__TensorShapeProto__Dimension **dimp = arena_alloc(ar, (size_t)nd, sizeof *dimp);
    if (!vi || !tp || !tt || !sp || !dims || !dimp)
        return NULL;
    onnx__value_info_proto__init(vi);
    onnx__type_proto__init(tp);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(sp);
    vi->name = v->name;
    vi->type = tp;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    tt->has_elem_type = 1;
    tt->elem_type = v->t.dtype ? (int32_t)v->t.dtype : ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    if (!with_shape)
        return vi;
    tt->shape = sp;
    sp->n_dim = (size_t)nd;
    sp->dim = dimp;
    for (int d = 0; d < nd; d++) {
        onnx__tensor_shape_proto__dimension__init(&dims[d]);
        if (d == 0 && dyn0) {
            dims[d].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            dims[d].dim_param = sym_batch;
        } else {
            dims[d].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            dims[d].dim_value = v->t.dims[d];
        }
        dimp[d] = &dims[d];
    }
    return vi;
}

static qk_status node_proto(arena *ar, const qk_graph *g, const qk_node *n, Onnx__NodeProto *np)
{
    onnx__node_proto__init(np);
    np->name = n->name;
    np->op_type = n->op_type;
    if (n->domain && n->domain[0])
        np->domain = n->domain;
    np->n_input = (size_t)n->n_in;
    np->input = arena_alloc(ar, (size_t)n->n_in, sizeof(char *));
    np->n_output = (size_t)n->n_out;
    np->output = arena_alloc(ar, (size_t)n->n_out, sizeof(char *));
    Onnx__AttributeProto *at = arena_alloc(ar, (size_t)n->n_attr, sizeof *at);
    np->attribute = arena_alloc(ar, (size_t)n->n_attr, sizeof *np->attribute);
    if (!np->input || !np->output || !at || !np->attribute)
        return QK_ERR_NOMEM;
    for (int i = 0; i < n->n_in; i++)
        np->input[i] = n->in[i] >= 0 ? g->values[n->in[i]].name : empty_name;
    for (int i = 0; i < n->n_out; i++)
        np->output[i] = g->values[n->out[i]].name;
    np->n_attribute = (size_t)n->n_attr;
    for (int k = 0; k < n->n_attr; k++) {
        const qk_attr *a = &n->attr[k];
        Onnx__AttributeProto *p = &at[k];
        onnx__attribute_proto__init(p);
        np->attribute[k] = p;
        p->name = a->name;
        p->has_type = 1;
        p->type = (Onnx__AttributeProto__AttributeType)a->type;
        switch (a->type) {
        case QK_ATTR_FLOAT:
            p->has_f = 1;
            p->f = a->f;
            break;
        case QK_ATTR_INT:
            p->has_i = 1;
            p->i = a->i;
            break;
        case QK_ATTR_STRING:
            p->has_s = 1;
            p->s.data = (uint8_t *)(a->s ? a->s : empty_name);
            p->s.len = a->s ? strlen(a->s) : 0;
            break;
        case QK_ATTR_INTS:
            p->n_ints = (size_t)a->n;
            p->ints = a->ints;
            break;
        case QK_ATTR_FLOATS:
            p->n_floats = (size_t)a->n;
            p->floats = a->floats;
            break;
        case QK_ATTR_TENSOR:
            if (!a->t)
                return qk_error(QK_ERR_STATE, "node '%s': tensor attribute '%s' has no tensor",
                                n->name, a->name);
            p->t = arena_alloc(ar, 1, sizeof *p->t);
            if (!p->t)
                return QK_ERR_NOMEM;
            qk_onnx_tensor_to_proto(a->t, NULL, p->t);
            break;
        default:
            return qk_error(QK_ERR_UNSUPPORTED, "node '%s': attribute '%s' has type %d, which cannot be "
                            "exported", n->name, a->name, (int)a->type);
        }
    }
    return QK_OK;
}

static qk_status build_model(arena *ar, const qk_graph *g, Onnx__ModelProto *m, Onnx__GraphProto *gp)
{
    onnx__model_proto__init(m);
    onnx__graph_proto__init(gp);
    m->has_ir_version = 1;
    m->ir_version = 8;
    m->producer_name = "qkit";
    m->graph = gp;
    gp->name = g->name && g->name[0] ? g->name : "qkit";

    /* Opsets: the default domain, and version 1 of any other domain used. */
    Onnx__OperatorSetIdProto *os = arena_alloc(ar, (size_t)g->n_nodes + 1, sizeof *os);
    m->opset_import = arena_alloc(ar, (size_t)g->n_nodes + 1, sizeof *m->opset_import);
    if (!os || !m->opset_import)
        return QK_ERR_NOMEM;
    onnx__operator_set_id_proto__init(&os[0]);
    os[0].domain = empty_name;
    os[0].has_version = 1;
    os[0].version = g->opset > 0 ? g->opset : 13;
    m->opset_import[m->n_opset_import++] = &os[0];
    for (int i = 0; i < g->n_nodes; i++) {
        const char *d = g->nodes[i].domain;
        if (!d || !d[0] || strcmp(d, "ai.onnx") == 0)
            continue;
        size_t k = 1;
        while (k < m->n_opset_import && strcmp(m->opset_import[k]->domain, d) != 0)
            k++;
        if (k < m->n_opset_import)
            continue;
        onnx__operator_set_id_proto__init(&os[k]);
        os[k].domain = (char *)d;
        os[k].has_version = 1;
        os[k].version = 1;
        m->opset_import[m->n_opset_import++] = &os[k];
    }

    /* Metadata. */
    Onnx__StringStringEntryProto *me = arena_alloc(ar, (size_t)g->n_meta, sizeof *me);
    m->metadata_props = arena_alloc(ar, (size_t)g->n_meta, sizeof *m->metadata_props);
    if (!me || !m->metadata_props)
        return QK_ERR_NOMEM;
    for (int i = 0; i < g->n_meta; i++) {
        onnx__string_string_entry_proto__init(&me[i]);
        me[i].key = g->meta_keys[i];
        me[i].value = g->meta_vals[i];
        m->metadata_props[i] = &me[i];
    }
    m->n_metadata_props = (size_t)g->n_meta;

    /* Initializers: every PARAM and CONST value, in value order. */
    int n_init = 0;
    for (int i = 0; i < g->n_values; i++)
        n_init += g->values[i].kind == QK_VALUE_PARAM || g->values[i].kind == QK_VALUE_CONST;
    Onnx__TensorProto *tps = arena_alloc(ar, (size_t)n_init, sizeof *tps);
    gp->initializer = arena_alloc(ar, (size_t)n_init, sizeof *gp->initializer);
    if (!tps || !gp->initializer)
        return QK_ERR_NOMEM;
    for (int i = 0; i < g->n_values; i++) {
        const qk_value *v = &g->values[i];
        if (v->kind != QK_VALUE_PARAM && v->kind != QK_VALUE_CONST)
            continue;
        if (!qk_dtype_size(v->t.dtype))
            return qk_error(QK_ERR_UNSUPPORTED, "initializer '%s' has unsupported data type %d",
                            v->name, (int)v->t.dtype);
        if (!v->t.data && qk_tensor_numel(&v->t) > 0)
            return qk_error(QK_ERR_STATE, "initializer '%s' has no data", v->name);
        Onnx__TensorProto *tp = &tps[gp->n_initializer];
        qk_onnx_tensor_to_proto(&v->t, v->name, tp);
        gp->initializer[gp->n_initializer++] = tp;
    }

    /* Inputs. */
    gp->input = arena_alloc(ar, (size_t)g->n_inputs, sizeof *gp->input);
    if (!gp->input)
        return QK_ERR_NOMEM;
    int64_t batch = -1; /* current dims[0] of the first dynamic input */
    for (int i = 0; i < g->n_inputs; i++) {
        const qk_value *v = &g->values[g->inputs[i]];
        if (v->dyn_batch && batch < 0 && v->t.ndim > 0)
            batch = v->t.dims[0];
        if (!qk_dtype_size(v->t.dtype))
            return qk_error(QK_ERR_UNSUPPORTED, "graph input '%s' has unsupported data type %d",
                            v->name, (int)v->t.dtype);
        gp->input[i] = value_info(ar, v, v->dyn_batch, 1);
        if (!gp->input[i])
            return QK_ERR_NOMEM;
    }
    gp->n_input = (size_t)g->n_inputs;

    /* Outputs: shape when the dtype is known; dim 0 symbolic when it
     * follows the dynamic batch. */
    gp->output = arena_alloc(ar, (size_t)g->n_outputs, sizeof *gp->output);
    if (!gp->output)
        return QK_ERR_NOMEM;
    for (int i = 0; i < g->n_outputs; i++) {
        const qk_value *v = &g->values[g->outputs[i]];
        int dyn0 = v->kind == QK_VALUE_INPUT ? v->dyn_batch
                 : v->kind == QK_VALUE_ACT && batch >= 0 && v->t.ndim > 0 && v->t.dims[0] == batch;
        gp->output[i] = value_info(ar, v, dyn0, v->t.dtype != 0);
        if (!gp->output[i])
            return QK_ERR_NOMEM;
    }
    gp->n_output = (size_t)g->n_outputs;

    /* Nodes, in topological order when known. */
    Onnx__NodeProto *nps = arena_alloc(ar, (size_t)g->n_nodes, sizeof *nps);
    gp->node = arena_alloc(ar, (size_t)g->n_nodes, sizeof *gp->node);
    if (!nps || !gp->node)
        return QK_ERR_NOMEM;
    for (int k = 0; k < g->n_nodes; k++) {
        int idx = g->order ? g->order[k] : k;
        qk_status st = node_proto(ar, g, &g->nodes[idx], &nps[k]);
        if (st != QK_OK)
            return st;
        gp->node[k] = &nps[k];
    }
    gp->n_node = (size_t)g->n_nodes;
    return QK_OK;
}

qk_status qk_onnx_save(const qk_graph *g, const char *path)
{
    arena ar = {0};
    Onnx__ModelProto m;
    Onnx__GraphProto gp;
    qk_status st = build_model(&ar, g, &m, &gp);
    if (st == QK_ERR_NOMEM)
        st = qk_error(QK_ERR_NOMEM, "out of memory exporting to '%s'", path);
    else if (st != QK_OK)
        st = qk_error_context(st, "cannot export to '%s'", path);
    else
        st = qk_onnx_write_atomic(path, &m.base);
    arena_free(&ar);
    return st;
}
