/* ONNX import/export: model round trip (outputs, attributes, initializers,
 * metadata), tensor .pb round trip for every dtype, and bad input (missing,
 * truncated, garbage, unsupported opset/operator/domain, undefined value,
 * symbolic dims, external data, failed atomic save). Run under
 * `make SAN=1 test` for leaks. */
#include "qt.h"
#include "qkit/registry.h"
#include "qkit/onnx.h"
#include "qkit/ops.h"
#include "onnx.pb-c.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[64];

static const char *tpath(const char *name)
{
    static char buf[8][256];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static int contains(const char *hay, const char *needle) { return hay && strstr(hay, needle) != NULL; }

static void fill_random(qk_tensor *t, qk_rng *r, float lo, float hi)
{
    float *p = qk_f32(t);
    for (int64_t i = 0; i < qk_tensor_numel(t); i++)
        p[i] = lo + (hi - lo) * qk_rng_uniform(r);
}

static int add_param(qk_graph *g, const char *name, qk_value_kind kind, int ndim, const int64_t *dims,
                     qk_rng *r, float lo, float hi)
{
    qk_tensor t;
    if (qk_tensor_alloc(&t, QK_F32, ndim, dims) != QK_OK)
        return -1;
    fill_random(&t, r, lo, hi);
    int id = qk_graph_add_init(g, name, kind, &t);
    if (id >= 0)
        g->values[id].no_decay = kind == QK_VALUE_PARAM && ndim <= 1;
    return id;
}

static int act(qk_graph *g, const char *name) { return qk_graph_add_value(g, name, QK_VALUE_ACT); }

/* x[N,1,8,8] -> Conv(4,3x3,pad 1) -> BN -> Relu -> Identity -> MaxPool 2 ->
 * Flatten -> Gemm(3) -> Reshape[-1,3] -> Clip(lo, hi) = y; Softmax(y) = p;
 * also the CONST "shape" as an output. */
static qk_graph *build_net(void)
{
    qk_graph *g;
    if (qk_graph_create(&g) != QK_OK)
        return NULL;
    qk_rng r;
    qk_rng_seed(&r, 42);
    g->name = qk_strdup("rt_net");
    g->opset = 14;
    qk_graph_set_meta(g, "qkit.norm_mean", "0.2860");
    qk_graph_set_meta(g, "author", "test_onnx");
    int x = qk_graph_add_input(g, "x", QK_F32, 4, (int64_t[]){-1, 1, 8, 8});
    int w = add_param(g, "conv.weight", QK_VALUE_PARAM, 4, (int64_t[]){4, 1, 3, 3}, &r, -0.5f, 0.5f);
    int b = add_param(g, "conv.bias", QK_VALUE_PARAM, 1, (int64_t[]){4}, &r, -0.1f, 0.1f);
    int bs = add_param(g, "bn.weight", QK_VALUE_PARAM, 1, (int64_t[]){4}, &r, 0.5f, 1.5f);
    int bb = add_param(g, "bn.bias", QK_VALUE_PARAM, 1, (int64_t[]){4}, &r, -0.1f, 0.1f);
    int bm = add_param(g, "bn.running_mean", QK_VALUE_CONST, 1, (int64_t[]){4}, &r, -0.1f, 0.1f);
    int bv = add_param(g, "bn.running_var", QK_VALUE_CONST, 1, (int64_t[]){4}, &r, 0.5f, 1.5f);
    int fw = add_param(g, "fc.weight", QK_VALUE_PARAM, 2, (int64_t[]){3, 64}, &r, -0.2f, 0.2f);
    int fb = add_param(g, "fc.bias", QK_VALUE_PARAM, 1, (int64_t[]){3}, &r, -0.1f, 0.1f);
    int lo = add_param(g, "clip.lo", QK_VALUE_CONST, 0, NULL, &r, -0.3f, -0.3f);
    int hi = add_param(g, "clip.hi", QK_VALUE_CONST, 0, NULL, &r, 0.4f, 0.4f);
    qk_tensor st;
    qk_tensor_alloc(&st, QK_I64, 1, (int64_t[]){2});
    ((int64_t *)st.data)[0] = -1;
    ((int64_t *)st.data)[1] = 3;
    int shp = qk_graph_add_init(g, "shape", QK_VALUE_CONST, &st);
    int c = act(g, "c"), bn = act(g, "bn"), rl = act(g, "r"), id = act(g, "id"), mp = act(g, "mp");
    int fl = act(g, "fl"), gm = act(g, "gm"), rs = act(g, "rs"), y = act(g, "y"), p = act(g, "p");
    int n;
    n = qk_graph_add_node(g, "Conv", "conv", 3, (int[]){x, w, b}, 1, (int[]){c});
    qk_node_set_ints(g, n, "kernel_shape", 2, (int64_t[]){3, 3});
    qk_node_set_ints(g, n, "pads", 4, (int64_t[]){1, 1, 1, 1});
    qk_node_set_ints(g, n, "strides", 2, (int64_t[]){1, 1});
    qk_node_set_int(g, n, "group", 1);
    qk_node_set_string(g, n, "auto_pad", "NOTSET");
    n = qk_graph_add_node(g, "BatchNormalization", "bn", 5, (int[]){c, bs, bb, bm, bv}, 1, (int[]){bn});
    qk_node_set_float(g, n, "epsilon", 1e-5f);
    qk_node_set_float(g, n, "momentum", 0.9f);
    qk_graph_add_node(g, "Relu", "relu", 1, (int[]){bn}, 1, (int[]){rl});
    n = qk_graph_add_node(g, "Identity", "ident", 1, (int[]){rl}, 1, (int[]){id});
    /* Extra attributes on Identity (ignored by the op) cover FLOATS and TENSOR. */
    qk_node_set_floats(g, n, "note_floats", 3, (float[]){0.5f, -1.25f, 3e-8f});
    qk_tensor at;
    qk_tensor_alloc(&at, QK_I32, 2, (int64_t[]){2, 2});
    for (int i = 0; i < 4; i++)
        ((int32_t *)at.data)[i] = i * 7 - 3;
    qk_node_set_tensor(g, n, "note_tensor", &at);
    n = qk_graph_add_node(g, "MaxPool", "pool", 1, (int[]){id}, 1, (int[]){mp});
    qk_node_set_ints(g, n, "kernel_shape", 2, (int64_t[]){2, 2});
    qk_node_set_ints(g, n, "strides", 2, (int64_t[]){2, 2});
    n = qk_graph_add_node(g, "Flatten", "flat", 1, (int[]){mp}, 1, (int[]){fl});
    qk_node_set_int(g, n, "axis", 1);
    n = qk_graph_add_node(g, "Gemm", "fc", 3, (int[]){fl, fw, fb}, 1, (int[]){gm});
    qk_node_set_int(g, n, "transB", 1);
    qk_node_set_float(g, n, "alpha", 1.0f);
    n = qk_graph_add_node(g, "Reshape", "reshape", 2, (int[]){gm, shp}, 1, (int[]){rs});
    qk_node_set_int(g, n, "allowzero", 0);
    qk_graph_add_node(g, "Clip", "clip", 3, (int[]){rs, lo, hi}, 1, (int[]){y});
    n = qk_graph_add_node(g, "Softmax", "softmax", 1, (int[]){y}, 1, (int[]){p});
    qk_node_set_int(g, n, "axis", -1);
    qk_graph_add_output(g, y);
    qk_graph_add_output(g, p);
    qk_graph_add_output(g, shp);
    return g;
}

static int attr_equal(const qk_attr *a, const qk_attr *b)
{
    if (strcmp(a->name, b->name) != 0 || a->type != b->type)
        return 0;
    switch (a->type) {
    case QK_ATTR_INT: return a->i == b->i;
    case QK_ATTR_FLOAT: return memcmp(&a->f, &b->f, sizeof a->f) == 0;
    case QK_ATTR_STRING: return strcmp(a->s, b->s) == 0;
    case QK_ATTR_INTS: return a->n == b->n && memcmp(a->ints, b->ints, (size_t)a->n * sizeof(int64_t)) == 0;
    case QK_ATTR_FLOATS: return a->n == b->n && memcmp(a->floats, b->floats, (size_t)a->n * sizeof(float)) == 0;
    case QK_ATTR_TENSOR:
        return a->t->dtype == b->t->dtype && qk_shape_equal(a->t, b->t) && a->t->ndim == b->t->ndim &&
               memcmp(a->t->data, b->t->data, qk_tensor_bytes(a->t)) == 0;
    }
    return 0;
}

static void compare_graphs(const qk_graph *a, const qk_graph *b)
{
    QT_CHECK(strcmp(a->name, b->name) == 0, "graph name '%s' vs '%s'", a->name, b->name);
    QT_CHECK(a->opset == b->opset, "opset %lld vs %lld", (long long)a->opset, (long long)b->opset);
    QT_CHECK(a->n_meta == b->n_meta, "meta count %d vs %d", a->n_meta, b->n_meta);
    for (int i = 0; i < a->n_meta; i++) {
        const char *v = qk_graph_get_meta(b, a->meta_keys[i]);
        QT_CHECK(v && strcmp(v, a->meta_vals[i]) == 0, "meta '%s'", a->meta_keys[i]);
    }
    QT_CHECK(a->n_inputs == b->n_inputs && a->n_outputs == b->n_outputs, "input/output counts");
    for (int i = 0; i < a->n_inputs && i < b->n_inputs; i++) {
        const qk_value *va = &a->values[a->inputs[i]], *vb = &b->values[b->inputs[i]];
        QT_CHECK(strcmp(va->name, vb->name) == 0 && va->dyn_batch == vb->dyn_batch &&
                 va->t.dtype == vb->t.dtype && va->t.ndim == vb->t.ndim, "input %d '%s'", i, va->name);
        for (int d = 1; d < va->t.ndim; d++)
            QT_CHECK(va->t.dims[d] == vb->t.dims[d], "input '%s' dim %d", va->name, d);
    }
    for (int i = 0; i < a->n_outputs && i < b->n_outputs; i++)
        QT_CHECK(strcmp(a->values[a->outputs[i]].name, b->values[b->outputs[i]].name) == 0, "output %d", i);
    int n_init = 0;
    for (int i = 0; i < a->n_values; i++) {
        const qk_value *va = &a->values[i];
        if (va->kind != QK_VALUE_PARAM && va->kind != QK_VALUE_CONST)
            continue;
        n_init++;
        int j = qk_graph_find_value(b, va->name);
        QT_CHECK(j >= 0, "initializer '%s' missing after reload", va->name);
        if (j < 0)
            continue;
        const qk_value *vb = &b->values[j];
        QT_CHECK(va->kind == vb->kind, "initializer '%s': kind %d vs %d", va->name, va->kind, vb->kind);
        QT_CHECK(va->no_decay == vb->no_decay, "initializer '%s': no_decay %d vs %d", va->name,
                 va->no_decay, vb->no_decay);
        QT_CHECK(va->t.dtype == vb->t.dtype && va->t.ndim == vb->t.ndim && qk_shape_equal(&va->t, &vb->t) &&
                 memcmp(va->t.data, vb->t.data, qk_tensor_bytes(&va->t)) == 0,
                 "initializer '%s' data/shape differ", va->name);
    }
    int n_init_b = 0;
    for (int i = 0; i < b->n_values; i++)
        n_init_b += b->values[i].kind == QK_VALUE_PARAM || b->values[i].kind == QK_VALUE_CONST;
    QT_CHECK(n_init == n_init_b, "initializer count %d vs %d", n_init, n_init_b);
    QT_CHECK(a->n_nodes == b->n_nodes, "node count %d vs %d", a->n_nodes, b->n_nodes);
    for (int k = 0; k < a->n_nodes && k < b->n_nodes; k++) {
        const qk_node *na = &a->nodes[k];
        int kb = qk_graph_find_node(b, na->name);
        QT_CHECK(kb >= 0, "node '%s' missing", na->name);
        if (kb < 0)
            continue;
        const qk_node *nb = &b->nodes[kb];
        QT_CHECK(strcmp(na->op_type, nb->op_type) == 0 && na->n_in == nb->n_in && na->n_out == nb->n_out,
                 "node '%s' op/arity", na->name);
        for (int i = 0; i < na->n_in && i < nb->n_in; i++)
            QT_CHECK(strcmp(a->values[na->in[i]].name, b->values[nb->in[i]].name) == 0, "node '%s' input %d",
                     na->name, i);
        QT_CHECK(na->n_attr == nb->n_attr, "node '%s' attribute count %d vs %d", na->name, na->n_attr, nb->n_attr);
        for (int i = 0; i < na->n_attr; i++) {
            const qk_attr *ab = qk_node_attr(nb, na->attr[i].name);
            QT_CHECK(ab && attr_equal(&na->attr[i], ab), "node '%s' attribute '%s' differs", na->name,
                     na->attr[i].name);
        }
    }
}

static int same_tensors(const qk_tensor *a, const qk_tensor *b, int n)
{
    for (int i = 0; i < n; i++)
        if (a[i].dtype != b[i].dtype || a[i].ndim != b[i].ndim || !qk_shape_equal(&a[i], &b[i]) ||
            memcmp(a[i].data, b[i].data, qk_tensor_bytes(&a[i])) != 0)
            return 0;
    return 1;
}

static int files_equal(const char *p, const char *q)
{
    FILE *a = fopen(p, "rb"), *b = fopen(q, "rb");
    int eq = a && b;
    while (eq) {
        int ca = fgetc(a), cb = fgetc(b);
        eq = ca == cb;
        if (ca == EOF || cb == EOF)
            break;
    }
    if (a)
        fclose(a);
    if (b)
        fclose(b);
    return eq;
}

static void test_round_trip(void)
{
    qk_graph *g = build_net();
    QT_CHECK(g != NULL, "build_net");
    if (!g)
        return;
    QT_OK(qk_ops_bind(g));
    qk_rng r;
    qk_rng_seed(&r, 7);
    qk_tensor x;
    QT_OK(qk_tensor_alloc(&x, QK_F32, 4, (int64_t[]){2, 1, 8, 8}));
    fill_random(&x, &r, -1, 1);
    int na = 0, nb = 0;
    qk_tensor *oa = NULL, *ob = NULL;
    QT_OK(qk_onnx_run(g, 1, &x, NULL, &na, &oa));
    QT_CHECK(na == 3 && oa && oa[0].ndim == 2 && oa[0].dims[0] == 2 && oa[0].dims[1] == 3, "outputs of the net");
    const char *p1 = tpath("rt.onnx"), *p2 = tpath("rt2.onnx");
    QT_OK(qk_onnx_save(g, p1));

    /* The file itself: ir_version, producer, opset, symbolic batch. */
    FILE *f = fopen(p1, "rb");
    static uint8_t buf[1 << 16];
    size_t len = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f)
        fclose(f);
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, buf);
    QT_CHECK(m && m->ir_version == 8 && m->producer_name && strcmp(m->producer_name, "qkit") == 0 &&
             m->n_opset_import == 1 && m->opset_import[0]->version == 14, "model header");
    if (m) {
        const Onnx__TensorShapeProto *sp = m->graph->input[0]->type->tensor_type->shape;
        QT_CHECK(sp->n_dim == 4 && sp->dim[0]->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM &&
                 strcmp(sp->dim[0]->dim_param, "N") == 0 && sp->dim[1]->dim_value == 1, "input dim 0 is 'N'");
        const Onnx__TensorShapeProto *so = m->graph->output[0]->type->tensor_type->shape;
        QT_CHECK(so && so->n_dim == 2 && so->dim[0]->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM &&
                 so->dim[1]->dim_value == 3, "output y shape [N,3]");
        QT_CHECK(m->graph->n_initializer == 11 && m->n_metadata_props == 2, "initializers %zu, meta %zu",
                 m->graph->n_initializer, m->n_metadata_props);
        onnx__model_proto__free_unpacked(m, NULL);
    }

    qk_graph *g2 = NULL;
    QT_OK(qk_onnx_load(p1, &g2));
    if (g2) {
        compare_graphs(g, g2);
        QT_OK(qk_onnx_run(g2, 1, &x, NULL, &nb, &ob));
        QT_CHECK(na == nb && same_tensors(oa, ob, na), "outputs identical after save/load");
        QT_OK(qk_onnx_save(g2, p2));
        QT_CHECK(files_equal(p1, p2), "save(load(save(g))) is byte-identical to save(g)");

        /* A different batch replans; fixed dims are checked. */
        qk_tensor x3, bad;
        QT_OK(qk_tensor_alloc(&x3, QK_F32, 4, (int64_t[]){3, 1, 8, 8}));
        fill_random(&x3, &r, -1, 1);
        qk_onnx_free_tensors(ob, nb);
        ob = NULL;
        QT_OK(qk_onnx_run(g2, 1, &x3, NULL, &nb, &ob));
        QT_CHECK(nb == 3 && ob[0].dims[0] == 3, "batch 3 output");
        QT_OK(qk_tensor_alloc(&bad, QK_F32, 4, (int64_t[]){2, 1, 9, 8}));
        int nc = 0;
        qk_tensor *oc = NULL;
        qk_status st = qk_onnx_run(g2, 1, &bad, NULL, &nc, &oc);
        QT_CHECK(st == QK_ERR_SHAPE && contains(qk_last_error(), "'x'") && contains(qk_last_error(), "[2,1,9,8]") &&
                 contains(qk_last_error(), "[N,1,8,8]") && oc == NULL, "shape mismatch: %s", qk_last_error());
        st = qk_onnx_run(g2, 0, NULL, NULL, &nc, &oc);
        QT_CHECK(st == QK_ERR_ARG && contains(qk_last_error(), "'x'"), "input count: %s", qk_last_error());
        qk_tensor_free(&x3);
        qk_tensor_free(&bad);

        /* run_files matches by tensor name. */
        const char *xp = tpath("x.pb");
        QT_OK(qk_onnx_save_tensor(&x, "x", xp));
        qk_onnx_free_tensors(ob, nb);
        ob = NULL;
        QT_OK(qk_onnx_run_files(g2, 1, &xp, NULL, &nb, &ob));
        QT_CHECK(na == nb && same_tensors(oa, ob, na), "run_files outputs");
        qk_graph_destroy(g2);
    }

    /* Freeze the input of a fresh copy: no inputs left, same result. */
    QT_OK(qk_onnx_load(p1, &g2));
    if (g2) {
        QT_CHECK(qk_onnx_freeze_input(g2, "nope", &x) == QK_ERR_NOTFOUND, "freeze unknown input");
        QT_OK(qk_onnx_freeze_input(g2, "x", &x));
        QT_CHECK(g2->n_inputs == 0, "frozen input removed");
        int nd = 0;
        qk_tensor *od = NULL;
        QT_OK(qk_onnx_run(g2, 0, NULL, NULL, &nd, &od));
        QT_CHECK(nd == na && same_tensors(oa, od, na), "frozen run outputs");
        qk_onnx_free_tensors(od, nd);
        qk_graph_destroy(g2);
    }
    qk_onnx_free_tensors(oa, na);
    qk_onnx_free_tensors(ob, nb);
    qk_tensor_free(&x);
    qk_graph_destroy(g);
}

/* ---- tensor .pb files ---- */

static void test_tensors(void)
{
    static const qk_dtype dts[] = {QK_F32, QK_U8, QK_I8, QK_I32, QK_I64};
    static const int64_t shapes[3][3] = {{0}, {5}, {2, 3, 4}};
    static const int ranks[3] = {0, 1, 3};
    qk_rng r;
    qk_rng_seed(&r, 3);
    for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++)
        for (int s = 0; s < 3; s++) {
            qk_tensor t, u;
            QT_OK(qk_tensor_alloc(&t, dts[d], ranks[s], shapes[s]));
            uint8_t *p = t.data;
            for (size_t i = 0; i < qk_tensor_bytes(&t); i++)
                p[i] = (uint8_t)qk_rng_u64(&r);
            if (dts[d] == QK_F32)
                fill_random(&t, &r, -100, 100);
            const char *path = tpath("t.pb");
            QT_OK(qk_onnx_save_tensor(&t, "tensor_name", path));
            char *name = NULL;
            QT_OK(qk_onnx_load_tensor(path, &u, &name));
            QT_CHECK(name && strcmp(name, "tensor_name") == 0, "tensor name");
            QT_CHECK(u.dtype == t.dtype && u.ndim == t.ndim && qk_shape_equal(&u, &t) &&
                     memcmp(u.data, t.data, qk_tensor_bytes(&t)) == 0, "%s rank %d round trip",
                     qk_dtype_name(dts[d]), ranks[s]);
            qk_free(name);
            qk_tensor_free(&t);
            qk_tensor_free(&u);
        }
    /* Empty tensor (a zero dim) and no name. */
    qk_tensor t, u;
    QT_OK(qk_tensor_alloc(&t, QK_F32, 2, (int64_t[]){0, 3}));
    QT_OK(qk_onnx_save_tensor(&t, NULL, tpath("e.pb")));
    char *name = NULL;
    QT_OK(qk_onnx_load_tensor(tpath("e.pb"), &u, &name));
    QT_CHECK(u.ndim == 2 && u.dims[0] == 0 && u.dims[1] == 3 && name && !name[0], "empty tensor");
    qk_free(name);
    qk_tensor_free(&t);
    qk_tensor_free(&u);

    /* Typed fields, BOOL, and unsupported/invalid tensors, packed by hand. */
    struct { int32_t type; int n_i32; int32_t i32[3]; int n_i64; int64_t i64[3]; int n_f; float f[3];
             int ext; qk_status want; const char *msg; } cases[] = {
        {ONNX__TENSOR_PROTO__DATA_TYPE__BOOL, 3, {1, 0, 2}, 0, {0}, 0, {0}, 0, QK_OK, NULL},
        {ONNX__TENSOR_PROTO__DATA_TYPE__INT8, 3, {-128, 5, 127}, 0, {0}, 0, {0}, 0, QK_OK, NULL},
        {ONNX__TENSOR_PROTO__DATA_TYPE__UINT8, 3, {0, 200, 255}, 0, {0}, 0, {0}, 0, QK_OK, NULL},
        {ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 0, {0}, 3, {-5, 1LL << 40, 7}, 0, {0}, 0, QK_OK, NULL},
        {ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 0, {0}, 0, {0}, 3, {1.5f, -2, 3}, 0, QK_OK, NULL},
        {ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 0, {0}, 0, {0}, 2, {1.5f, -2}, 0, QK_ERR_FORMAT, "float_data"},
        {ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE, 0, {0}, 0, {0}, 0, {0}, 0, QK_ERR_UNSUPPORTED, "DOUBLE"},
        {ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 0, {0}, 0, {0}, 0, {0}, 1, QK_ERR_UNSUPPORTED, "external"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        Onnx__TensorProto tp = ONNX__TENSOR_PROTO__INIT;
        int64_t dims[1] = {3};
        tp.n_dims = 1;
        tp.dims = dims;
        tp.has_data_type = 1;
        tp.data_type = cases[c].type;
        tp.n_int32_data = (size_t)cases[c].n_i32;
        tp.int32_data = cases[c].i32;
        tp.n_int64_data = (size_t)cases[c].n_i64;
        tp.int64_data = cases[c].i64;
        tp.n_float_data = (size_t)cases[c].n_f;
        tp.float_data = cases[c].f;
        Onnx__StringStringEntryProto loc = ONNX__STRING_STRING_ENTRY_PROTO__INIT, *locp = &loc;
        loc.key = "location";
        loc.value = "weights.bin";
        if (cases[c].ext) {
            tp.n_external_data = 1;
            tp.external_data = &locp;
            tp.has_data_location = 1;
            tp.data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
        }
        uint8_t pb[256];
        size_t n = onnx__tensor_proto__pack(&tp, pb);
        const char *path = tpath("h.pb");
        FILE *f = fopen(path, "wb");
        fwrite(pb, 1, n, f);
        fclose(f);
        qk_status st = qk_onnx_load_tensor(path, &u, NULL);
        QT_CHECK(st == cases[c].want && (!cases[c].msg || contains(qk_last_error(), cases[c].msg)),
                 "hand-made tensor %zu: %s (%s)", c, qk_status_str(st), qk_last_error());
        if (st != QK_OK)
            continue;
        QT_CHECK(u.ndim == 1 && u.dims[0] == 3, "hand-made tensor %zu shape", c);
        for (int i = 0; i < 3; i++) {
            double got = u.dtype == QK_F32 ? qk_f32(&u)[i] : u.dtype == QK_I64 ? (double)((int64_t *)u.data)[i]
                       : u.dtype == QK_I8 ? ((int8_t *)u.data)[i] : ((uint8_t *)u.data)[i];
            double want = cases[c].n_f ? cases[c].f[i] : cases[c].n_i64 ? (double)cases[c].i64[i]
                        : cases[c].type == ONNX__TENSOR_PROTO__DATA_TYPE__BOOL ? (cases[c].i32[i] != 0)
                        : cases[c].i32[i];
            QT_CHECK(got == want, "hand-made tensor %zu element %d: %g vs %g", c, i, got, want);
        }
        qk_tensor_free(&u);
    }
    QT_CHECK(qk_onnx_load_tensor(tpath("missing.pb"), &u, NULL) == QK_ERR_IO &&
             contains(qk_last_error(), "missing.pb"), "missing tensor file: %s", qk_last_error());
}

/* ---- hand-made models for the error paths ---- */

typedef struct mini {
    int64_t opset;
    const char *op, *node_name, *domain;
    const char *in[3];
    int n_in;
    const char *out[2];
    int n_out;
    const char *dim1_param; /* symbolic dim 1 of input x */
    int ext_init;           /* initializer "m" stored externally */
    int x_is_init;          /* "x" also an initializer (IR 3 style) */
} mini;

/* Graph: input x float [N, 4]; initializer m float scalar (0.25); one node;
 * output y. */
static void write_mini(const char *path, const mini *d)
{
    Onnx__ModelProto m = ONNX__MODEL_PROTO__INIT;
    Onnx__GraphProto g = ONNX__GRAPH_PROTO__INIT;
    Onnx__OperatorSetIdProto os = ONNX__OPERATOR_SET_ID_PROTO__INIT, *osp = &os;
    Onnx__NodeProto node = ONNX__NODE_PROTO__INIT, *nodep = &node;
    Onnx__ValueInfoProto xi = ONNX__VALUE_INFO_PROTO__INIT, yo = ONNX__VALUE_INFO_PROTO__INIT;
    Onnx__ValueInfoProto *xip = &xi, *yop = &yo;
    Onnx__TypeProto xt = ONNX__TYPE_PROTO__INIT, yt = ONNX__TYPE_PROTO__INIT;
    Onnx__TypeProto__Tensor xtt = ONNX__TYPE_PROTO__TENSOR__INIT, ytt = ONNX__TYPE_PROTO__TENSOR__INIT;
    Onnx__TensorShapeProto xs = ONNX__TENSOR_SHAPE_PROTO__INIT;
    Onnx__TensorShapeProto__Dimension d0 = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT,
                                      d1 = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT, *dp[2] = {&d0, &d1};
    Onnx__TensorProto mi = ONNX__TENSOR_PROTO__INIT, xinit = ONNX__TENSOR_PROTO__INIT, *inits[2] = {&mi, &xinit};
    Onnx__StringStringEntryProto loc = ONNX__STRING_STRING_ENTRY_PROTO__INIT, *locp = &loc;
    float mval = 0.25f, xval[8] = {0};
    int64_t xdims[2] = {2, 4};

    m.has_ir_version = 1;
    m.ir_version = 8;
    m.graph = &g;
    m.n_opset_import = 1;
    m.opset_import = &osp;
    os.domain = "";
    os.has_version = 1;
    os.version = d->opset;
    g.name = "mini";
    d0.value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
    d0.dim_param = "N";
    if (d->dim1_param) {
        d1.value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
        d1.dim_param = (char *)d->dim1_param;
    } else {
        d1.value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
        d1.dim_value = 4;
    }
    xs.n_dim = 2;
    xs.dim = dp;
    xtt.has_elem_type = ytt.has_elem_type = 1;
    xtt.elem_type = ytt.elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    xtt.shape = &xs;
    xt.value_case = yt.value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    xt.tensor_type = &xtt;
    yt.tensor_type = &ytt;
    xi.name = "x";
    xi.type = &xt;
    yo.name = "y";
    yo.type = &yt;
    g.n_input = 1;
    g.input = &xip;
    g.n_output = 1;
    g.output = &yop;
    mi.name = "m";
    mi.has_data_type = 1;
    mi.data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    if (d->ext_init) {
        loc.key = "location";
        loc.value = "m.bin";
        mi.n_external_data = 1;
        mi.external_data = &locp;
        mi.has_data_location = 1;
        mi.data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    } else {
        mi.has_raw_data = 1;
        mi.raw_data.len = sizeof mval;
        mi.raw_data.data = (uint8_t *)&mval;
    }
    xinit.name = "x";
    xinit.has_data_type = 1;
    xinit.data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    xinit.n_dims = 2;
    xinit.dims = xdims;
    xinit.n_float_data = 8;
    xinit.float_data = xval;
    g.n_initializer = d->x_is_init ? 2 : 1;
    g.initializer = inits;
    node.op_type = (char *)d->op;
    node.name = (char *)d->node_name;
    node.domain = (char *)d->domain;
    node.n_input = (size_t)d->n_in;
    node.input = (char **)d->in;
    node.n_output = (size_t)d->n_out;
    node.output = (char **)d->out;
    g.n_node = 1;
    g.node = &nodep;

    size_t n = onnx__model_proto__get_packed_size(&m);
    uint8_t *buf = malloc(n);
    onnx__model_proto__pack(&m, buf);
    FILE *f = fopen(path, "wb");
    fwrite(buf, 1, n, f);
    fclose(f);
    free(buf);
}

static void expect_load_error(const char *what, const char *path, qk_status want, const char *m1, const char *m2)
{
    qk_graph *g = (qk_graph *)1;
    qk_status st = qk_onnx_load(path, &g);
    const char *msg = qk_last_error();
    QT_CHECK(st == want && g == NULL && contains(msg, path) && (!m1 || contains(msg, m1)) &&
             (!m2 || contains(msg, m2)), "%s: got %s: %s", what, qk_status_str(st), msg);
    if (st == QK_OK)
        qk_graph_destroy(g);
}

static void test_bad_models(void)
{
    expect_load_error("missing file", tpath("does_not_exist.onnx"), QK_ERR_IO, "does_not_exist", NULL);

    /* Truncated: the first half of a valid model. */
    FILE *f = fopen(tpath("rt.onnx"), "rb");
    static uint8_t buf[1 << 16];
    size_t len = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f)
        fclose(f);
    QT_CHECK(len > 1000, "rt.onnx present (%zu bytes)", len);
    f = fopen(tpath("half.onnx"), "wb");
    fwrite(buf, 1, len / 2, f);
    fclose(f);
    expect_load_error("truncated", tpath("half.onnx"), QK_ERR_FORMAT, "not a valid ONNX model", NULL);

    /* Random garbage, and an empty file. */
    qk_rng r;
    qk_rng_seed(&r, 99);
    for (size_t i = 0; i < 4096; i++)
        buf[i] = (uint8_t)qk_rng_u64(&r);
    f = fopen(tpath("garbage.onnx"), "wb");
    fwrite(buf, 1, 4096, f);
    fclose(f);
    expect_load_error("garbage", tpath("garbage.onnx"), QK_ERR_FORMAT, "not a valid ONNX model", NULL);
    f = fopen(tpath("empty.onnx"), "wb");
    fclose(f);
    expect_load_error("empty", tpath("empty.onnx"), QK_ERR_FORMAT, "not a valid ONNX model", NULL);

    /* Never crash: every 7th prefix and 300 single-byte mutations of rt.onnx
     * either load or fail with a message (ASan/UBSan watch the rest). */
    int survived = 0, total = 0;
    static uint8_t mut[1 << 16];
    f = fopen(tpath("rt.onnx"), "rb");
    len = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f)
        fclose(f);
    for (size_t cut = 0; cut < len; cut += 7, total++) {
        qk_graph *g = NULL;
        qk_status st = qk_onnx_load_buffer(buf, cut, "prefix", &g);
        survived += (st == QK_OK) == (g != NULL) && (st == QK_OK || qk_last_error()[0]);
        qk_graph_destroy(g);
    }
    for (int k = 0; k < 300 && len; k++, total++) {
        memcpy(mut, buf, len);
        mut[qk_rng_below(&r, (uint32_t)len)] = (uint8_t)qk_rng_u64(&r);
        qk_graph *g = NULL;
        qk_status st = qk_onnx_load_buffer(mut, len, "mutant", &g);
        survived += (st == QK_OK) == (g != NULL) && (st == QK_OK || qk_last_error()[0]);
        qk_graph_destroy(g);
    }
    QT_CHECK(survived == total, "prefixes/mutants: %d of %d consistent", survived, total);

    mini relu = {13, "Relu", "act", NULL, {"x"}, 1, {"y"}, 1, NULL, 0, 0};
    write_mini(tpath("ok.onnx"), &relu);
    qk_graph *g = NULL;
    QT_OK(qk_onnx_load(tpath("ok.onnx"), &g));
    QT_CHECK(g && g->n_inputs == 1 && g->values[g->inputs[0]].dyn_batch && g->n_nodes == 1 &&
             qk_graph_find_value(g, "m") >= 0 && g->values[qk_graph_find_value(g, "m")].kind == QK_VALUE_CONST,
             "minimal model: dynamic batch input, unused initializer m is CONST");
    qk_graph_destroy(g);

    mini c = relu;
    c.opset = 22;
    write_mini(tpath("opset22.onnx"), &c);
    expect_load_error("opset 22", tpath("opset22.onnx"), QK_ERR_UNSUPPORTED, "opset 22", "7..21");
    c.opset = 6;
    c.op = "Flatten";
    write_mini(tpath("opset6.onnx"), &c);
    expect_load_error("opset 6 Flatten", tpath("opset6.onnx"), QK_ERR_UNSUPPORTED, "opset 6", "Flatten");
    c.opset = 9; /* inside 7..21: accepted */
    write_mini(tpath("opset9.onnx"), &c);
    QT_OK(qk_onnx_load(tpath("opset9.onnx"), &g));
    QT_CHECK(g && g->opset == 9, "opset 9 Flatten model accepted");
    qk_graph_destroy(g);
    c = relu;
    c.opset = 6; /* Relu-6 is Relu at opset 11 too: accepted */
    write_mini(tpath("opset6r.onnx"), &c);
    QT_OK(qk_onnx_load(tpath("opset6r.onnx"), &g));
    QT_CHECK(g && g->opset == 6, "opset 6 Relu model accepted");
    qk_graph_destroy(g);

    c = relu;
    c.op = "FooBar";
    c.node_name = "weird_node";
    write_mini(tpath("foobar.onnx"), &c);
    expect_load_error("unsupported operator", tpath("foobar.onnx"), QK_ERR_UNSUPPORTED, "weird_node", "FooBar");
    c = relu;
    c.domain = "com.example";
    write_mini(tpath("domain.onnx"), &c);
    expect_load_error("unsupported domain", tpath("domain.onnx"), QK_ERR_UNSUPPORTED, "com.example", "act");

    c = relu;
    c.op = "Add";
    c.in[1] = "ghost";
    c.n_in = 2;
    write_mini(tpath("ghost.onnx"), &c);
    expect_load_error("undefined value", tpath("ghost.onnx"), QK_ERR_FORMAT, "ghost", "act");
    c = relu;
    c.out[0] = "z"; /* graph output y never produced */
    write_mini(tpath("noout.onnx"), &c);
    expect_load_error("undefined output", tpath("noout.onnx"), QK_ERR_FORMAT, "'y'", "never defined");
    c = relu;
    c.dim1_param = "C";
    write_mini(tpath("symdim.onnx"), &c);
    expect_load_error("symbolic dim 1", tpath("symdim.onnx"), QK_ERR_UNSUPPORTED, "'x'", "'C'");
    c = relu;
    c.ext_init = 1;
    write_mini(tpath("ext.onnx"), &c);
    expect_load_error("external data", tpath("ext.onnx"), QK_ERR_UNSUPPORTED, "'m'", "external");
    c = relu;
    c.in[0] = "m";
    c.out[0] = "x"; /* x produced by a node and declared as input */
    c.out[1] = NULL;
    write_mini(tpath("dup.onnx"), &c);
    expect_load_error("value defined twice", tpath("dup.onnx"), QK_ERR_FORMAT, "'x'", "twice");

    /* Optional inputs: Clip(x, "", m) -> in[1] == -1, m CONST (a bound);
     * trailing empty output dropped. */
    c = relu;
    c.op = "Clip";
    c.in[1] = "";
    c.in[2] = "m";
    c.n_in = 3;
    write_mini(tpath("clip.onnx"), &c);
    QT_OK(qk_onnx_load(tpath("clip.onnx"), &g));
    if (g) {
        int m = qk_graph_find_value(g, "m");
        QT_CHECK(g->nodes[0].n_in == 3 && g->nodes[0].in[1] == -1 && g->nodes[0].in[2] == m &&
                 g->values[m].kind == QK_VALUE_CONST, "Clip optional input absent, bound CONST");
        qk_graph_destroy(g);
    }
    c = relu;
    c.op = "Dropout";
    c.out[1] = "";
    c.n_out = 2;
    write_mini(tpath("dropout.onnx"), &c);
    QT_OK(qk_onnx_load(tpath("dropout.onnx"), &g));
    QT_CHECK(g && g->nodes[0].n_out == 1, "trailing empty output dropped");
    qk_graph_destroy(g);
    /* Add(x, m) with x also an initializer: x is a constant, m a weight. */
    c = relu;
    c.op = "Add";
    c.in[1] = "m";
    c.n_in = 2;
    c.x_is_init = 1;
    write_mini(tpath("xinit.onnx"), &c);
    QT_OK(qk_onnx_load(tpath("xinit.onnx"), &g));
    if (g) {
        int x = qk_graph_find_value(g, "x");
        QT_CHECK(g->n_inputs == 0 && x >= 0 && g->values[x].kind == QK_VALUE_PARAM &&
                 g->values[qk_graph_find_value(g, "m")].no_decay == 1, "input that is an initializer");
        int n_out = 0;
        qk_tensor *out = NULL;
        QT_OK(qk_onnx_run(g, 0, NULL, NULL, &n_out, &out));
        QT_CHECK(n_out == 1 && out[0].dims[0] == 2 && qk_f32(&out[0])[7] == 0.25f, "initializer-only run");
        qk_onnx_free_tensors(out, n_out);
        qk_graph_destroy(g);
    }
}

static int leftover_temp_files(void)
{
    DIR *d = opendir(tmpdir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += strstr(e->d_name, ".tmp.") != NULL;
    if (d)
        closedir(d);
    return n;
}

static void test_atomic_save(void)
{
    qk_graph *g = build_net();
    if (!g)
        return;
    /* Into a missing directory. */
    qk_status st = qk_onnx_save(g, tpath("no/such/dir/m.onnx"));
    QT_CHECK(st == QK_ERR_IO && contains(qk_last_error(), "no/such/dir"), "save into missing dir: %s",
             qk_last_error());
    /* Over a directory: the rename fails after writing; the temp file must go. */
    char sub[256];
    snprintf(sub, sizeof sub, "%s/adir", tmpdir);
    QT_CHECK(mkdir(sub, 0755) == 0, "mkdir");
    st = qk_onnx_save(g, sub);
    QT_CHECK(st == QK_ERR_IO, "save over a directory fails: %s", qk_status_str(st));
    QT_CHECK(leftover_temp_files() == 0, "no temporary file left after a failed save");
    rmdir(sub);
    /* A failed save leaves an existing file untouched. */
    const char *p = tpath("keep.onnx");
    QT_OK(qk_onnx_save(g, p));
    long before = 0, after = 0;
    FILE *f = fopen(p, "rb");
    if (f) {
        fseek(f, 0, SEEK_END);
        before = ftell(f);
        fclose(f);
    }
    int w = qk_graph_find_value(g, "conv.weight");
    g->values[w].t.dtype = (qk_dtype)11; /* DOUBLE: unsupported on export */
    st = qk_onnx_save(g, p);
    g->values[w].t.dtype = QK_F32;
    QT_CHECK(st == QK_ERR_UNSUPPORTED && contains(qk_last_error(), "conv.weight"), "bad dtype export: %s",
             qk_last_error());
    f = fopen(p, "rb");
    if (f) {
        fseek(f, 0, SEEK_END);
        after = ftell(f);
        fclose(f);
    }
    QT_CHECK(before > 0 && before == after && leftover_temp_files() == 0, "existing file untouched");
    qk_graph_destroy(g);
}

static void cleanup(void)
{
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    char p[512];
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(tmpdir);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/qkit_test_onnx_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_round_trip();
    test_tensors();
    test_bad_models();
    test_atomic_save();
    if (getenv("QKIT_TEST_KEEP")) /* keep the files for inspection */
        printf("files kept in %s\n", tmpdir);
    else
        cleanup();
    return qt_finish("test_onnx");
}
