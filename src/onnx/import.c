/* ONNX ModelProto -> qk_graph (see qk_onnx_read in include/qkit/onnx.h for
 * the mapping). Every error names the file and the node, value or field at
 * fault; on error the partly built graph is destroyed. */
#include "onnx_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct importer {
    const char *file;               /* label for messages */
    const Onnx__GraphProto *gp;
    qk_graph *g;
} importer;

/* "file 'X': <message>" */
static qk_status ferr(const importer *im, qk_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static qk_status ferr(const importer *im, qk_status st, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return qk_error(st, "file '%s': %s", im->file, msg);
}

static int is_default_domain(const char *d)
{
    return !d || !d[0] || strcmp(d, "ai.onnx") == 0;
}

/* Display name of ONNX node i: its name, or "#i" when it has none. */
static const char *node_label(const Onnx__NodeProto *np, size_t i, char *buf, size_t n)
{
    if (np->name && np->name[0])
        return np->name;
    snprintf(buf, n, "#%zu", i);
    return buf;
}

/* ---- opset ----
 * For models older than QK_ONNX_OPSET_MIN: the version of each operator's
 * schema in force at opset 11. An old model is accepted when every node's
 * operator is listed with a version <= the model's opset, i.e. its
 * definition is the same as at opset 11 (from onnx.defs, ONNX 1.12). */
static const struct { const char *op; int since; } op_since_at_11[] = {
    {"Abs", 6}, {"Acos", 7}, {"Acosh", 9}, {"Add", 7}, {"And", 7}, {"Asin", 7}, {"Asinh", 9},
    {"Atan", 7}, {"Atanh", 9}, {"BatchNormalization", 9}, {"Cast", 9}, {"Ceil", 6},
    {"ConstantOfShape", 9}, {"ConvInteger", 10}, {"Cos", 7}, {"Cosh", 9}, {"DequantizeLinear", 10},
    {"Div", 7}, {"Dropout", 10}, {"Elu", 6}, {"Erf", 9}, {"Exp", 6}, {"Expand", 8}, {"EyeLike", 9},
    {"Floor", 6}, {"GRU", 7}, {"GlobalAveragePool", 1}, {"GlobalLpPool", 2}, {"GlobalMaxPool", 1},
    {"Greater", 9}, {"HardSigmoid", 6}, {"Identity", 1}, {"InstanceNormalization", 6},
    {"IsInf", 10}, {"IsNaN", 9}, {"LRN", 1}, {"LSTM", 7}, {"LeakyRelu", 6}, {"Less", 9},
    {"Log", 6}, {"LpNormalization", 1}, {"MatMul", 9}, {"MatMulInteger", 10}, {"Max", 8},
    {"MaxRoiPool", 1}, {"Mean", 8}, {"MeanVarianceNormalization", 9}, {"Min", 8}, {"Mod", 10},
    {"Mul", 7}, {"Multinomial", 7}, {"Neg", 6}, {"NonZero", 9}, {"Not", 1}, {"Or", 7},
    {"PRelu", 9}, {"Pow", 7}, {"QLinearConv", 10}, {"QLinearMatMul", 10},
    {"QuantizeLinear", 10}, {"RNN", 7}, {"RandomNormal", 1}, {"RandomNormalLike", 1},
    {"RandomUniform", 1}, {"RandomUniformLike", 1}, {"Reciprocal", 6}, {"Relu", 6},
    {"Reshape", 5}, {"ReverseSequence", 10}, {"RoiAlign", 10}, {"Selu", 6}, {"Shape", 1},
    {"Shrink", 9}, {"Sigmoid", 6}, {"Sign", 9}, {"Sin", 7}, {"Sinh", 9}, {"Size", 1},
    {"Softplus", 1}, {"Softsign", 1}, {"SpaceToDepth", 1}, {"Sqrt", 6}, {"StringNormalizer", 10},
    {"Sub", 7}, {"Sum", 8}, {"Tan", 7}, {"Tanh", 6}, {"TfIdfVectorizer", 9},
    {"ThresholdedRelu", 10}, {"Tile", 6}, {"Transpose", 1}, {"Where", 9}, {"Xor", 7},
};

static int op_since(const char *op)
{
    for (size_t i = 0; i < sizeof op_since_at_11 / sizeof op_since_at_11[0]; i++)
        if (strcmp(op_since_at_11[i].op, op) == 0)
            return op_since_at_11[i].since;
    return 11;
}

/* Opset 21 QuantizeLinear/DequantizeLinear attributes qkit does not
 * implement: block quantization (block_size != 0) and an output_dtype that
 * is not uint8/int8 (qkit takes the type from the zero point). */
static qk_status check_opset21_attrs(const importer *im, const Onnx__NodeProto *np, const char *nl)
{
    if (strcmp(np->op_type, "QuantizeLinear") != 0 && strcmp(np->op_type, "DequantizeLinear") != 0)
        return QK_OK;
    for (size_t k = 0; k < np->n_attribute; k++) {
        const Onnx__AttributeProto *a = np->attribute[k];
        if (!a->name)
            continue;
        if (strcmp(a->name, "block_size") == 0 && a->i != 0)
            return ferr(im, QK_ERR_UNSUPPORTED, "node '%s' (%s): block quantization (block_size %lld) is not "
                        "supported", nl, np->op_type, (long long)a->i);
        if (strcmp(a->name, "output_dtype") == 0 && a->i != 0 && a->i != 2 && a->i != 3)
            return ferr(im, QK_ERR_UNSUPPORTED, "node '%s' (%s): output_dtype %s is not supported (uint8 and "
                        "int8 are)", nl, np->op_type, qk_onnx_dtype_name((int)a->i));
        if (strcmp(a->name, "output_dtype") == 0 && a->i != 0 && np->n_input < 3)
            return ferr(im, QK_ERR_UNSUPPORTED, "node '%s' (%s): output_dtype without a zero point is not "
                        "supported", nl, np->op_type);
    }
    return QK_OK;
}

static qk_status check_opset_and_ops(importer *im, const Onnx__ModelProto *m, int64_t *opset)
{
    const Onnx__GraphProto *gp = m->graph;
    qk_status st;
    int found = 0;
    for (size_t i = 0; i < m->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *o = m->opset_import[i];
        if (is_default_domain(o->domain)) {
            *opset = o->has_version ? o->version : 0;
            found = 1;
        }
    }
    if (!found)
        return ferr(im, QK_ERR_UNSUPPORTED, "the model imports no opset of the default ONNX domain "
                    "(qkit supports opsets %d..%d)", QK_ONNX_OPSET_MIN, QK_ONNX_OPSET_MAX);
    if (*opset > QK_ONNX_OPSET_MAX || *opset < 1)
        return ferr(im, QK_ERR_UNSUPPORTED, "the model uses opset %lld of the default ONNX domain; "
                    "qkit supports opsets %d..%d", (long long)*opset, QK_ONNX_OPSET_MIN, QK_ONNX_OPSET_MAX);
    char lb[32];
    for (size_t i = 0; i < gp->n_node; i++) {
        const Onnx__NodeProto *np = gp->node[i];
        const char *nl = node_label(np, i, lb, sizeof lb);
        if (!np->op_type || !np->op_type[0])
            return ferr(im, QK_ERR_FORMAT, "node '%s' has no op_type", nl);
        if (!is_default_domain(np->domain) && strcmp(np->domain, "ai.qkit") != 0)
            return ferr(im, QK_ERR_UNSUPPORTED, "node '%s' (%s): operator domain '%s' is not supported",
                        nl, np->op_type, np->domain);
        st = check_opset21_attrs(im, np, nl);
        if (st != QK_OK)
            return st;
    }
    if (*opset < QK_ONNX_OPSET_MIN)
        for (size_t i = 0; i < gp->n_node; i++) {
            const Onnx__NodeProto *np = gp->node[i];
            if (op_since(np->op_type) > *opset)
                return ferr(im, QK_ERR_UNSUPPORTED, "the model uses opset %lld of the default ONNX domain; "
                            "qkit supports opsets %d..%d, and older ones only when every operator is "
                            "unchanged since (%s changed at opset %d)", (long long)*opset, QK_ONNX_OPSET_MIN,
                            QK_ONNX_OPSET_MAX, np->op_type, op_since(np->op_type));
        }
    return QK_OK;
}

/* ---- initializers ---- */

/* Whether input slot `i` of `op` holds non-trainable data (statistics,
 * quantizer constants, bounds) rather than a weight. */
static int const_slot(const char *op, size_t i)
{
    if (strcmp(op, "BatchNormalization") == 0)
        return i == 3 || i == 4;
    if (strcmp(op, "QuantizeLinear") == 0 || strcmp(op, "DequantizeLinear") == 0)
        return i == 1 || i == 2;
    if (strcmp(op, "QLinearConv") == 0 || strcmp(op, "QLinearMatMul") == 0)
        return i != 0 && i != 3 && i != 8;
    if (strcmp(op, "ConvInteger") == 0 || strcmp(op, "MatMulInteger") == 0)
        return i >= 2;
    if (strcmp(op, "Clip") == 0 || strcmp(op, "Dropout") == 0 || strcmp(op, "Pad") == 0)
        return i >= 1;
    if (strcmp(op, "Resize") == 0 || strcmp(op, "Upsample") == 0)
        return i >= 1;
    if (strcmp(op, "SoftmaxCrossEntropyLoss") == 0)
        return i == 2;
    if (strcmp(op, "Pow") == 0 || strcmp(op, "Split") == 0)
        return i == 1; /* exponent, split sizes */
    if (strcmp(op, "Range") == 0 || strcmp(op, "ConstantOfShape") == 0)
        return 1;
    /* Shape-like inputs (int64 in valid models, CONST anyway). */
    if (strcmp(op, "Reshape") == 0 || strcmp(op, "Squeeze") == 0 || strcmp(op, "Unsqueeze") == 0 ||
        strcmp(op, "Expand") == 0 || strcmp(op, "Tile") == 0 || strcmp(op, "Slice") == 0)
        return i >= 1;
    return 0;
}

static qk_value_kind init_kind(const importer *im, const char *name, const qk_tensor *t)
{
    if (t->dtype != QK_F32)
        return QK_VALUE_CONST;
    int weight = 0, cst = 0;
    for (size_t k = 0; k < im->gp->n_node; k++) {
        const Onnx__NodeProto *np = im->gp->node[k];
        for (size_t i = 0; i < np->n_input; i++)
            if (np->input[i] && strcmp(np->input[i], name) == 0) {
                if (const_slot(np->op_type, i))
                    cst = 1;
                else
                    weight = 1;
            }
    }
    return weight && !cst ? QK_VALUE_PARAM : QK_VALUE_CONST;
}

static qk_status add_initializers(importer *im)
{
    char what[512];
    for (size_t k = 0; k < im->gp->n_initializer; k++) {
        const Onnx__TensorProto *tp = im->gp->initializer[k];
        if (!tp->name || !tp->name[0])
            return ferr(im, QK_ERR_FORMAT, "initializer #%zu has no name", k);
        snprintf(what, sizeof what, "file '%s': initializer '%s'", im->file, tp->name);
        qk_tensor t;
        qk_status st = qk_onnx_tensor_from_proto(tp, &t, what);
        if (st != QK_OK)
            return st;
        qk_value_kind kind = init_kind(im, tp->name, &t);
        int id = qk_graph_add_init(im->g, tp->name, kind, &t);
        if (id < 0) {
            qk_tensor_free(&t);
            return qk_error_context(QK_ERR_FORMAT, "file '%s'", im->file);
        }
        im->g->values[id].no_decay = kind == QK_VALUE_PARAM && im->g->values[id].t.ndim <= 1;
    }
    return QK_OK;
}

/* ---- graph inputs ---- */

static qk_status add_inputs(importer *im)
{
    for (size_t k = 0; k < im->gp->n_input; k++) {
        const Onnx__ValueInfoProto *vi = im->gp->input[k];
        if (!vi->name || !vi->name[0])
            return ferr(im, QK_ERR_FORMAT, "graph input #%zu has no name", k);
        int v = qk_graph_find_value(im->g, vi->name);
        if (v >= 0 && im->g->values[v].kind != QK_VALUE_ACT)
            continue; /* also an initializer (IR < 4 style): a constant here */
        const Onnx__TypeProto *tp = vi->type;
        if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
            return ferr(im, QK_ERR_UNSUPPORTED, "graph input '%s' is not a tensor (sequence, map, "
                        "optional and sparse inputs are not supported)", vi->name);
        const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
        int32_t et = tt->has_elem_type ? tt->elem_type : 0;
        qk_dtype dt = qk_onnx_dtype_from_proto(et);
        if (!dt)
            return ferr(im, QK_ERR_UNSUPPORTED, "graph input '%s' has data type %s (%d), which qkit "
                        "does not support", vi->name, qk_onnx_dtype_name(et), (int)et);
        if (!tt->shape)
            return ferr(im, QK_ERR_UNSUPPORTED, "graph input '%s' has no shape (qkit needs its rank "
                        "and every dimension except the batch)", vi->name);
        size_t nd = tt->shape->n_dim;
        if (nd > QK_MAX_DIMS)
            return ferr(im, QK_ERR_UNSUPPORTED, "graph input '%s' has rank %zu; qkit supports up to %d",
                        vi->name, nd, QK_MAX_DIMS);
        int64_t dims[QK_MAX_DIMS];
        for (size_t d = 0; d < nd; d++) {
            const Onnx__TensorShapeProto__Dimension *dm = tt->shape->dim[d];
            int known = dm->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            if (known && dm->dim_value < 0)
                return ferr(im, QK_ERR_FORMAT, "graph input '%s' has negative dimension %lld",
                            vi->name, (long long)dm->dim_value);
            if (!known && d > 0)
                return ferr(im, QK_ERR_UNSUPPORTED, "graph input '%s': dimension %zu is symbolic ('%s'); "
                            "qkit allows a symbolic size only for dimension 0 (the batch)", vi->name, d,
                            dm->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM &&
                            dm->dim_param ? dm->dim_param : "?");
            dims[d] = known ? dm->dim_value : -1;
        }
        if (qk_graph_add_input(im->g, vi->name, dt, (int)nd, dims) < 0)
            return qk_error_context(QK_ERR_FORMAT, "file '%s'", im->file);
    }
    return QK_OK;
}

/* ---- nodes ---- */

/* Constant node -> CONST initializer named after its output. */
static qk_status add_constant(importer *im, const Onnx__NodeProto *np, const char *nl)
{
    if (np->n_output != 1 || !np->output[0] || !np->output[0][0])
        return ferr(im, QK_ERR_FORMAT, "Constant node '%s' must have exactly one output", nl);
    if (np->n_attribute != 1)
        return ferr(im, QK_ERR_FORMAT, "Constant node '%s' must have exactly one attribute (has %zu)",
                    nl, np->n_attribute);
    const Onnx__AttributeProto *a = np->attribute[0];
    const char *an = a->name ? a->name : "";
    qk_tensor t;
    memset(&t, 0, sizeof t);
    qk_status st = QK_OK;
    int64_t n1 = 0;
    if (strcmp(an, "value") == 0 && a->t) {
        char what[512];
        snprintf(what, sizeof what, "file '%s': Constant node '%s' value", im->file, nl);
        st = qk_onnx_tensor_from_proto(a->t, &t, what);
    } else if (strcmp(an, "value_float") == 0) {
        st = qk_tensor_alloc(&t, QK_F32, 0, NULL);
        if (st == QK_OK)
            qk_f32(&t)[0] = a->f;
    } else if (strcmp(an, "value_int") == 0) {
        st = qk_tensor_alloc(&t, QK_I64, 0, NULL);
        if (st == QK_OK)
            ((int64_t *)t.data)[0] = a->i;
    } else if (strcmp(an, "value_floats") == 0) {
        n1 = (int64_t)a->n_floats;
        st = qk_tensor_alloc(&t, QK_F32, 1, &n1);
        if (st == QK_OK && n1)
            memcpy(t.data, a->floats, a->n_floats * sizeof(float));
    } else if (strcmp(an, "value_ints") == 0) {
        n1 = (int64_t)a->n_ints;
        st = qk_tensor_alloc(&t, QK_I64, 1, &n1);
        if (st == QK_OK && n1)
            memcpy(t.data, a->ints, a->n_ints * sizeof(int64_t));
    } else {
        return ferr(im, QK_ERR_UNSUPPORTED, "Constant node '%s': attribute '%s' is not supported "
                    "(value, value_float(s) and value_int(s) are)", nl, an);
    }
    if (st != QK_OK)
        return st;
    if (qk_graph_add_init(im->g, np->output[0], QK_VALUE_CONST, &t) < 0) {
        qk_tensor_free(&t);
        return qk_error_context(QK_ERR_FORMAT, "file '%s'", im->file);
    }
    return QK_OK;
}

static const char *attr_type_name(int t)
{
    switch (t) {
    case 0: return "UNDEFINED";
    case 1: return "FLOAT";
    case 2: return "INT";
    case 3: return "STRING";
    case 4: return "TENSOR";
    case 5: return "GRAPH";
    case 6: return "FLOATS";
    case 7: return "INTS";
    case 8: return "STRINGS";
    case 9: return "TENSORS";
    case 10: return "GRAPHS";
    case 11: return "SPARSE_TENSOR";
    case 12: return "SPARSE_TENSORS";
    case 13: return "TYPE_PROTO";
    case 14: return "TYPE_PROTOS";
    }
    return "UNKNOWN";
}

static qk_status add_attributes(importer *im, int node, const Onnx__NodeProto *np, const char *nl)
{
    qk_graph *g = im->g;
    for (size_t k = 0; k < np->n_attribute; k++) {
        const Onnx__AttributeProto *a = np->attribute[k];
        if (!a->name || !a->name[0])
            return ferr(im, QK_ERR_FORMAT, "node '%s' (%s): attribute #%zu has no name", nl, np->op_type, k);
        if (a->ref_attr_name && a->ref_attr_name[0])
            return ferr(im, QK_ERR_UNSUPPORTED, "node '%s' (%s): attribute '%s' refers to a function "
                        "attribute, which qkit does not support", nl, np->op_type, a->name);
        int type = a->has_type ? (int)a->type : 0;
        qk_status st;
        switch (type) {
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT:
            st = qk_node_set_float(g, node, a->name, a->f);
            break;
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT:
            st = qk_node_set_int(g, node, a->name, a->i);
            break;
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING: {
            char *s = qk_malloc(a->s.len + 1);
            if (!s)
                return qk_error(QK_ERR_NOMEM, "out of memory loading '%s'", im->file);
            if (a->s.len)
                memcpy(s, a->s.data, a->s.len);
            s[a->s.len] = 0;
            st = qk_node_set_string(g, node, a->name, s);
            qk_free(s);
            break;
        }
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS:
            if (a->n_ints > 0x7fffffff)
                return ferr(im, QK_ERR_FORMAT, "node '%s': attribute '%s' is too long", nl, a->name);
            /* (an empty list may come as NULL; graph.c memcpy's it) */
            st = qk_node_set_ints(g, node, a->name, (int)a->n_ints, a->ints ? a->ints : (int64_t[1]){0});
            break;
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS:
            if (a->n_floats > 0x7fffffff)
                return ferr(im, QK_ERR_FORMAT, "node '%s': attribute '%s' is too long", nl, a->name);
            st = qk_node_set_floats(g, node, a->name, (int)a->n_floats, a->floats ? a->floats : (float[1]){0});
            break;
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR: {
            if (!a->t)
                return ferr(im, QK_ERR_FORMAT, "node '%s' (%s): TENSOR attribute '%s' has no tensor",
                            nl, np->op_type, a->name);
            char what[512];
            snprintf(what, sizeof what, "file '%s': node '%s' (%s) attribute '%s'", im->file, nl,
                     np->op_type, a->name);
            qk_tensor t;
            st = qk_onnx_tensor_from_proto(a->t, &t, what);
            if (st != QK_OK)
                return st;
            st = qk_node_set_tensor(g, node, a->name, &t);
            qk_tensor_free(&t); /* no-op when ownership moved */
            break;
        }
        default:
            return ferr(im, QK_ERR_UNSUPPORTED, "node '%s' (%s): attribute '%s' has type %s, which qkit "
                        "does not support", nl, np->op_type, a->name, attr_type_name(type));
        }
        if (st != QK_OK)
            return st;
    }
    return QK_OK;
}

static qk_status add_nodes(importer *im)
{
    qk_graph *g = im->g;
    const Onnx__GraphProto *gp = im->gp;
    char lb[32];
    /* Pass 1: Constant nodes become initializers; every other output an
     * activation value (so node order in the file does not matter). */
    for (size_t k = 0; k < gp->n_node; k++) {
        const Onnx__NodeProto *np = gp->node[k];
        const char *nl = node_label(np, k, lb, sizeof lb);
        if (strcmp(np->op_type, "Constant") == 0) {
            qk_status st = add_constant(im, np, nl);
            if (st != QK_OK)
                return st;
            continue;
        }
        for (size_t j = 0; j < np->n_output; j++)
            if (np->output[j] && np->output[j][0] && qk_graph_add_value(g, np->output[j], QK_VALUE_ACT) < 0)
                return qk_error_context(QK_ERR_FORMAT, "file '%s': node '%s' (%s)", im->file, nl, np->op_type);
    }
    /* Pass 2: nodes. */
    int cap = 0;
    int *in = NULL, *out = NULL;
    qk_status st = QK_OK;
    for (size_t k = 0; k < gp->n_node && st == QK_OK; k++) {
        const Onnx__NodeProto *np = gp->node[k];
        if (strcmp(np->op_type, "Constant") == 0)
            continue;
        const char *nl = node_label(np, k, lb, sizeof lb);
        size_t need = np->n_input > np->n_output ? np->n_input : np->n_output;
        if ((int)need > cap) {
            int *ni = qk_realloc(in, need * sizeof(int)), *no = ni ? qk_realloc(out, need * sizeof(int)) : NULL;
            if (ni)
                in = ni;
            if (no)
                out = no;
            if (!ni || !no) {
                st = qk_error(QK_ERR_NOMEM, "out of memory loading '%s'", im->file);
                break;
            }
            cap = (int)need;
        }
        for (size_t i = 0; i < np->n_input && st == QK_OK; i++) {
            const char *nm = np->input[i];
            in[i] = nm && nm[0] ? qk_graph_find_value(g, nm) : -1;
            if (nm && nm[0] && in[i] < 0)
                st = ferr(im, QK_ERR_FORMAT, "node '%s' (%s) uses value '%s' as input %zu, but no input, "
                          "initializer or node output defines it", nl, np->op_type, nm, i);
        }
        size_t n_out = np->n_output;
        while (n_out > 0 && (!np->output[n_out - 1] || !np->output[n_out - 1][0]))
            n_out--; /* trailing absent optional outputs */
        for (size_t j = 0; j < n_out && st == QK_OK; j++) {
            if (np->output[j] && np->output[j][0]) {
                out[j] = qk_graph_find_value(g, np->output[j]);
                continue;
            }
            char base[160];
            snprintf(base, sizeof base, "%s_unused%zu", np->name && np->name[0] ? np->name : np->op_type, j);
            char *nm = qk_graph_unique_name(g, base);
            out[j] = nm ? qk_graph_add_value(g, nm, QK_VALUE_ACT) : -1;
            qk_free(nm);
            if (out[j] < 0)
                st = qk_error(QK_ERR_NOMEM, "out of memory loading '%s'", im->file);
        }
        if (st != QK_OK)
            break;
        int id = qk_graph_add_node(g, np->op_type, np->name, (int)np->n_input, in, (int)n_out, out);
        if (id < 0) {
            st = qk_error_context(QK_ERR_FORMAT, "file '%s'", im->file);
            break;
        }
        if (np->domain && np->domain[0]) {
            g->nodes[id].domain = qk_strdup(np->domain);
            if (!g->nodes[id].domain)
                st = qk_error(QK_ERR_NOMEM, "out of memory loading '%s'", im->file);
        }
        if (st == QK_OK)
            st = add_attributes(im, id, np, nl);
    }
    qk_free(in);
    qk_free(out);
    return st;
}

/* ---- outputs ---- */

static qk_status add_outputs(importer *im)
{
    qk_graph *g = im->g;
    for (size_t k = 0; k < im->gp->n_output; k++) {
        const Onnx__ValueInfoProto *vi = im->gp->output[k];
        if (!vi->name || !vi->name[0])
            return ferr(im, QK_ERR_FORMAT, "graph output #%zu has no name", k);
        int v = qk_graph_find_value(g, vi->name);
        if (v < 0)
            return ferr(im, QK_ERR_FORMAT, "graph output '%s' is never defined (no input, initializer "
                        "or node output has that name)", vi->name);
        qk_status st = qk_graph_add_output(g, v);
        if (st != QK_OK)
            return st;
        /* Declared dtype/shape as a hint on activations (plan replaces it). */
        qk_value *val = &g->values[v];
        const Onnx__TypeProto *tp = vi->type;
        if (val->kind != QK_VALUE_ACT || !tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE ||
            !tp->tensor_type || !tp->tensor_type->has_elem_type)
            continue;
        qk_dtype dt = qk_onnx_dtype_from_proto(tp->tensor_type->elem_type);
        if (!dt)
            continue;
        val->t.dtype = dt;
        const Onnx__TensorShapeProto *sp = tp->tensor_type->shape;
        if (!sp || sp->n_dim > QK_MAX_DIMS)
            continue;
        val->t.ndim = (int)sp->n_dim;
        for (size_t d = 0; d < sp->n_dim; d++)
            val->t.dims[d] = sp->dim[d]->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE
                                 ? sp->dim[d]->dim_value : 1;
    }
    return QK_OK;
}

static qk_status build(importer *im, const Onnx__ModelProto *m, qk_graph **out)
{
    if (!m->graph)
        return qk_error(QK_ERR_FORMAT, "file '%s' is not a valid ONNX model (it has no graph)", im->file);
    im->gp = m->graph;
    int64_t opset = 0;
    qk_status st = check_opset_and_ops(im, m, &opset);
    if (st != QK_OK)
        return st;
    st = qk_graph_create(&im->g);
    if (st != QK_OK)
        return st;
    qk_graph *g = im->g;
    g->opset = opset;
    if (im->gp->name && im->gp->name[0]) {
        g->name = qk_strdup(im->gp->name);
        if (!g->name)
            st = qk_error(QK_ERR_NOMEM, "out of memory loading '%s'", im->file);
    }
    for (size_t i = 0; i < m->n_metadata_props && st == QK_OK; i++) {
        const Onnx__StringStringEntryProto *e = m->metadata_props[i];
        st = qk_graph_set_meta(g, e->key ? e->key : "", e->value ? e->value : "");
    }
    if (st == QK_OK)
        st = add_initializers(im);
    if (st == QK_OK)
        st = add_inputs(im);
    if (st == QK_OK)
        st = add_nodes(im);
    if (st == QK_OK)
        st = add_outputs(im);
    if (st != QK_OK) {
        qk_graph_destroy(g);
        im->g = NULL;
        return st;
    }
    *out = g;
    return QK_OK;
}

qk_status qk_onnx_read_buffer(const void *data, size_t len, const char *label, qk_graph **out)
{
    *out = NULL;
    importer im = {label ? label : "<memory>", NULL, NULL};
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, data);
    if (!m)
        return qk_error(QK_ERR_FORMAT, "file '%s' is not a valid ONNX model (protobuf parse failed)", im.file);
    qk_status st = build(&im, m, out);
    onnx__model_proto__free_unpacked(m, NULL);
    return st;
}

qk_status qk_onnx_read(const char *path, qk_graph **out)
{
    *out = NULL;
    uint8_t *buf;
    size_t len;
    qk_status st = qk_onnx_read_file(path, &buf, &len);
    if (st != QK_OK)
        return st;
    st = qk_onnx_read_buffer(buf, len, path, out);
    qk_free(buf);
    return st;
}
