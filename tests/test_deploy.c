/* Deploy files (deploy.h): a hand-built QDQ model (Conv with per-channel
 * int8 weights and Q/DQ on its input, Relu, Flatten, Q/DQ, Gemm) exported
 * for tensorrt, snpe and the generic table; the JSON files parsed back and
 * checked against the formulas (amax = scale * 127, offset = -zp, min/max =
 * (qmin/qmax - zp) * scale); the float model re-imported and compared with
 * the QDQ graph minus its Q/DQ nodes; bad input (float model, unknown
 * backend, unwritable or non-directory DIR, truncated model, tensorrt with
 * uint8 activations, onnx-qlinear) leaves nothing behind. */
#include "qt.h"
#include "qkit/registry.h"
#include "qkit/deploy.h"
#include "qkit/onnx.h"
#include "qkit/ops.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
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
static int exists(const char *p) { struct stat s; return stat(p, &s) == 0; }

/* Entries of tmpdir whose name contains ".tmp." (left-over staging). */
static int leftovers(void)
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

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) {
        b[n] = 0;
        if (len)
            *len = (size_t)n;
    }
    return b;
}

/* ------------------------------------------------ a minimal JSON reader */

typedef enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } jtype;
typedef struct jv {
    jtype t;
    double num;
    char *str;            /* J_STR */
    int n;                /* J_ARR / J_OBJ */
    char **keys;          /* J_OBJ */
    struct jv *items;
} jv;

static const char *jp;
static int jerr;

static void jws(void) { while (*jp == ' ' || *jp == '\n' || *jp == '\t' || *jp == '\r') jp++; }

static char *jstring(void)
{
    if (*jp != '"') { jerr = 1; return NULL; }
    jp++;
    size_t cap = 16, n = 0;
    char *s = malloc(cap);
    while (*jp && *jp != '"') {
        char c = *jp++;
        if (c == '\\') {
            c = *jp++;
            if (c == 'u') { c = (char)strtol((char[5]){jp[0], jp[1], jp[2], jp[3], 0}, NULL, 16); jp += 4; }
        }
        if (n + 2 > cap) s = realloc(s, cap *= 2);
        s[n++] = c;
    }
    if (*jp != '"') jerr = 1; else jp++;
    s[n] = 0;
    return s;
}

static jv jparse(void)
{
    jv v = {0};
    jws();
    if (*jp == '{' || *jp == '[') {
        int obj = *jp == '{';
        v.t = obj ? J_OBJ : J_ARR;
        jp++;
        jws();
        if (*jp == (obj ? '}' : ']')) { jp++; return v; }
        for (;;) {
            jws();
            char *k = NULL;
            if (obj) {
                k = jstring();
                jws();
                if (*jp != ':') { jerr = 1; free(k); return v; }
                jp++;
            }
            jv item = jparse();
            v.items = realloc(v.items, (size_t)(v.n + 1) * sizeof(jv));
            v.keys = realloc(v.keys, (size_t)(v.n + 1) * sizeof(char *));
            v.items[v.n] = item;
            v.keys[v.n++] = k;
            jws();
            if (*jp == ',') { jp++; continue; }
            if (*jp == (obj ? '}' : ']')) { jp++; return v; }
            jerr = 1;
            return v;
        }
    }
    if (*jp == '"') { v.t = J_STR; v.str = jstring(); return v; }
    if (!strncmp(jp, "true", 4)) { v.t = J_BOOL; v.num = 1; jp += 4; return v; }
    if (!strncmp(jp, "false", 5)) { v.t = J_BOOL; jp += 5; return v; }
    if (!strncmp(jp, "null", 4)) { v.t = J_NULL; jp += 4; return v; }
    char *end;
    v.t = J_NUM;
    v.num = strtod(jp, &end);
    if (end == jp) jerr = 1;
    jp = end;
    return v;
}

static void jfree(jv *v)
{
    for (int i = 0; i < v->n; i++) {
        jfree(&v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->str);
}

static int jload(const char *path, jv *out)
{
    char *text = read_all(path, NULL);
    memset(out, 0, sizeof *out);
    if (!text)
        return 0;
    jp = text;
    jerr = 0;
    *out = jparse();
    jws();
    int ok = !jerr && *jp == 0;
    free(text);
    return ok;
}

static const jv *jget(const jv *o, const char *key)
{
    static const jv none = {J_NULL, 0, NULL, 0, NULL, NULL};
    if (!o || o->t != J_OBJ)
        return &none;
    for (int i = 0; i < o->n; i++)
        if (strcmp(o->keys[i], key) == 0)
            return &o->items[i];
    return &none;
}

static const jv *jat(const jv *a, int i)
{
    static const jv none = {J_NULL, 0, NULL, 0, NULL, NULL};
    return a && a->t == J_ARR && i < a->n ? &a->items[i] : &none;
}

/* --------------------------------------------------- the QDQ test model */

enum { C_OUT = 2, H = 4, FC_IN = C_OUT * H * H, FC_OUT = 3 };

typedef struct variant {
    int act_signed;   /* int8 zp 0 (tensorrt) or uint8 zp 3 / 100 */
    int fc_u8;        /* fc weight uint8 per tensor zp 120 instead of int8 per channel */
    int clip4;        /* a 4-bit Clip(0, 15) between Q and DQ of "flat" (unsigned only) */
    const char *backend; /* metadata qkit.backend (NULL: none) */
    int qlin;         /* onnx-qlinear shape: Q/DQ on relu_out (uint8 zp 0) instead of flat's
                         uint8 one being the only one; fc without bias, Q/DQ on logits */
} variant;

static const float conv_scale[C_OUT] = { 0.0125f, 0.0071f };
static const float fc_scale[FC_OUT] = { 0.02f, 0.0133f, 0.0091f };
static const float fc_scale_u8 = 0.0047f;
static const float in_scale = 0.0213f, flat_scale = 0.0371f, relu_scale = 0.0252f, logit_scale = 0.0625f;

static int add_scalar_f(qk_graph *g, const char *name, float v)
{
    qk_tensor t;
    if (qk_tensor_alloc(&t, QK_F32, 0, NULL) != QK_OK)
        return -1;
    qk_f32(&t)[0] = v;
    return qk_graph_add_init(g, name, QK_VALUE_CONST, &t);
}

static int add_scalar_i(qk_graph *g, const char *name, qk_dtype dt, int v)
{
    qk_tensor t;
    if (qk_tensor_alloc(&t, dt, 0, NULL) != QK_OK)
        return -1;
    if (dt == QK_I8) ((int8_t *)t.data)[0] = (int8_t)v;
    else ((uint8_t *)t.data)[0] = (uint8_t)v;
    return qk_graph_add_init(g, name, QK_VALUE_CONST, &t);
}

/* codes[k] = ((k * 37 + seed) % 255) - 127 : every code in -127..127, the
 * extremes reached in each channel of these sizes */
static int add_weight_i8(qk_graph *g, const char *base, int ndim, const int64_t *dims, int nch, const float *sc,
                         int seed)
{
    char name[96];
    qk_tensor q, s, z;
    if (qk_tensor_alloc(&q, QK_I8, ndim, dims) != QK_OK)
        return -1;
    int64_t n = qk_tensor_numel(&q), per = n / nch;
    for (int64_t k = 0; k < n; k++)
        ((int8_t *)q.data)[k] = (int8_t)(((k * 37 + seed) % 255) - 127);
    for (int c = 0; c < nch; c++) { /* make +-127 appear in every channel */
        ((int8_t *)q.data)[c * per] = 127;
        ((int8_t *)q.data)[c * per + 1] = -127;
    }
    int64_t d1[1] = { nch };
    qk_tensor_alloc(&s, QK_F32, 1, d1);
    qk_tensor_alloc(&z, QK_I8, 1, d1);
    memcpy(s.data, sc, (size_t)nch * sizeof(float));
    snprintf(name, sizeof name, "%s_quantized", base);
    int qv = qk_graph_add_init(g, name, QK_VALUE_CONST, &q);
    snprintf(name, sizeof name, "%s_scale", base);
    int sv = qk_graph_add_init(g, name, QK_VALUE_CONST, &s);
    snprintf(name, sizeof name, "%s_zero_point", base);
    int zv = qk_graph_add_init(g, name, QK_VALUE_CONST, &z);
    snprintf(name, sizeof name, "%s_dequantized", base);
    int out = qk_graph_add_value(g, name, QK_VALUE_ACT);
    snprintf(name, sizeof name, "%s_DequantizeLinear", base);
    int nd = qk_graph_add_node(g, "DequantizeLinear", name, 3, (int[]){ qv, sv, zv }, 1, &out);
    qk_node_set_int(g, nd, "axis", 0);
    return out;
}

static int add_weight_u8(qk_graph *g, const char *base, int ndim, const int64_t *dims, float sc, int zp)
{
    char name[96];
    qk_tensor q;
    if (qk_tensor_alloc(&q, QK_U8, ndim, dims) != QK_OK)
        return -1;
    int64_t n = qk_tensor_numel(&q);
    for (int64_t k = 0; k < n; k++)
        ((uint8_t *)q.data)[k] = (uint8_t)((k * 53 + 11) % 256);
    snprintf(name, sizeof name, "%s_quantized", base);
    int qv = qk_graph_add_init(g, name, QK_VALUE_CONST, &q);
    snprintf(name, sizeof name, "%s_scale", base);
    int sv = add_scalar_f(g, name, sc);
    snprintf(name, sizeof name, "%s_zero_point", base);
    int zv = add_scalar_i(g, name, QK_U8, zp);
    snprintf(name, sizeof name, "%s_dequantized", base);
    int out = qk_graph_add_value(g, name, QK_VALUE_ACT);
    snprintf(name, sizeof name, "%s_DequantizeLinear", base);
    qk_graph_add_node(g, "DequantizeLinear", name, 3, (int[]){ qv, sv, zv }, 1, &out);
    return out;
}

/* QuantizeLinear -> [Clip] -> DequantizeLinear on value x; returns "<x>_dequantized". */
static int add_qdq(qk_graph *g, int x, float sc, int is_signed, int zp, int clip_lo, int clip_hi)
{
    char name[96];
    const char *base = g->values[x].name;
    char b[64];
    snprintf(b, sizeof b, "%s", base);
    qk_dtype dt = is_signed ? QK_I8 : QK_U8;
    snprintf(name, sizeof name, "%s_scale", b);
    int sv = add_scalar_f(g, name, sc);
    snprintf(name, sizeof name, "%s_zero_point", b);
    int zv = add_scalar_i(g, name, dt, zp);
    snprintf(name, sizeof name, "%s_quantized", b);
    int qv = qk_graph_add_value(g, name, QK_VALUE_ACT);
    snprintf(name, sizeof name, "%s_QuantizeLinear", b);
    qk_graph_add_node(g, "QuantizeLinear", name, 3, (int[]){ x, sv, zv }, 1, &qv);
    if (clip_lo <= clip_hi) {
        snprintf(name, sizeof name, "%s_qmin", b);
        int lo = add_scalar_i(g, name, dt, clip_lo);
        snprintf(name, sizeof name, "%s_qmax", b);
        int hi = add_scalar_i(g, name, dt, clip_hi);
        snprintf(name, sizeof name, "%s_clipped", b);
        int cv = qk_graph_add_value(g, name, QK_VALUE_ACT);
        snprintf(name, sizeof name, "%s_Clip", b);
        qk_graph_add_node(g, "Clip", name, 3, (int[]){ qv, lo, hi }, 1, &cv);
        qv = cv;
    }
    snprintf(name, sizeof name, "%s_dequantized", b);
    int out = qk_graph_add_value(g, name, QK_VALUE_ACT);
    snprintf(name, sizeof name, "%s_DequantizeLinear", b);
    qk_graph_add_node(g, "DequantizeLinear", name, 3, (int[]){ qv, sv, zv }, 1, &out);
    return out;
}

static int in_zp(const variant *v) { return v->act_signed ? 0 : 3; }
static int flat_zp(const variant *v) { return v->act_signed ? 0 : v->clip4 ? 2 : 100; }

/* quantized = 0: the same network in float (no Q/DQ), weights random. */
static qk_graph *build(const variant *v, int quantized)
{
    qk_graph *g;
    if (qk_graph_create(&g) != QK_OK)
        return NULL;
    qk_rng r;
    qk_rng_seed(&r, 7);
    int x = qk_graph_add_input(g, "input", QK_F32, 4, (int64_t[]){ -1, 1, H, H });
    int xin = quantized ? add_qdq(g, x, in_scale, v->act_signed, in_zp(v), 1, 0) : x;
    int w;
    if (quantized) {
        w = add_weight_i8(g, "conv.weight", 4, (int64_t[]){ C_OUT, 1, 3, 3 }, C_OUT, conv_scale, 5);
    } else {
        qk_tensor t;
        qk_tensor_alloc(&t, QK_F32, 4, (int64_t[]){ C_OUT, 1, 3, 3 });
        for (int i = 0; i < C_OUT * 9; i++) qk_f32(&t)[i] = qk_rng_uniform(&r) - 0.5f;
        w = qk_graph_add_init(g, "conv.weight", QK_VALUE_PARAM, &t);
    }
    qk_tensor bt;
    qk_tensor_alloc(&bt, QK_F32, 1, (int64_t[]){ C_OUT });
    qk_f32(&bt)[0] = 0.1f;
    qk_f32(&bt)[1] = -0.2f;
    int b = qk_graph_add_init(g, "conv.bias", QK_VALUE_PARAM, &bt);
    int co = qk_graph_add_value(g, "conv_out", QK_VALUE_ACT);
    int cn = qk_graph_add_node(g, "Conv", "conv", 3, (int[]){ xin, w, b }, 1, &co);
    qk_node_set_ints(g, cn, "pads", 4, (int64_t[]){ 1, 1, 1, 1 });
    qk_node_set_ints(g, cn, "kernel_shape", 2, (int64_t[]){ 3, 3 });
    int ro = qk_graph_add_value(g, "relu_out", QK_VALUE_ACT);
    qk_graph_add_node(g, "Relu", "relu", 1, &co, 1, &ro);
    int rin = quantized && v->qlin ? add_qdq(g, ro, relu_scale, 0, 0, 1, 0) : ro;
    int fl = qk_graph_add_value(g, "flat", QK_VALUE_ACT);
    qk_graph_add_node(g, "Flatten", "flatten", 1, &rin, 1, &fl);
    int fin = quantized ? add_qdq(g, fl, flat_scale, v->act_signed, flat_zp(v), v->clip4 ? 0 : 1, v->clip4 ? 15 : 0)
                        : fl;
    int fw;
    if (!quantized) {
        qk_tensor t;
        qk_tensor_alloc(&t, QK_F32, 2, (int64_t[]){ FC_OUT, FC_IN });
        for (int i = 0; i < FC_OUT * FC_IN; i++) qk_f32(&t)[i] = qk_rng_uniform(&r) - 0.5f;
        fw = qk_graph_add_init(g, "fc.weight", QK_VALUE_PARAM, &t);
    } else if (v->fc_u8) {
        fw = add_weight_u8(g, "fc.weight", 2, (int64_t[]){ FC_OUT, FC_IN }, fc_scale_u8, 120);
    } else {
        fw = add_weight_i8(g, "fc.weight", 2, (int64_t[]){ FC_OUT, FC_IN }, FC_OUT, fc_scale, 9);
    }
    int fbv = -1;
    if (!v->qlin) {
        qk_tensor fb;
        qk_tensor_alloc(&fb, QK_F32, 1, (int64_t[]){ FC_OUT });
        fbv = qk_graph_add_init(g, "fc.bias", QK_VALUE_PARAM, &fb);
    }
    int y = qk_graph_add_value(g, "logits", QK_VALUE_ACT);
    int gn = qk_graph_add_node(g, "Gemm", "fc", fbv >= 0 ? 3 : 2, (int[]){ fin, fw, fbv }, 1, &y);
    qk_node_set_int(g, gn, "transB", 1);
    qk_graph_add_output(g, quantized && v->qlin ? add_qdq(g, y, logit_scale, 0, 128, 1, 0) : y);
    g->opset = 13;
    if (quantized) {
        qk_graph_set_meta(g, "qkit.quantized", "1");
        qk_graph_set_meta(g, "qkit.wbits", "8");
        qk_graph_set_meta(g, "qkit.abits", v->clip4 ? "4" : "8");
        qk_graph_set_meta(g, "qkit.arith", "fp32");
    }
    if (v->backend)
        qk_graph_set_meta(g, "qkit.backend", v->backend);
    qk_graph_set_meta(g, "qkit.norm.mean", "0.286");
    return g;
}

static int save_variant(const variant *v, int quantized, const char *path)
{
    qk_graph *g = build(v, quantized);
    qk_status st = g ? qk_onnx_save(g, path) : QK_ERR_NOMEM;
    QT_CHECK(st == QK_OK, "save %s: %s", path, qk_last_error());
    qk_graph_destroy(g);
    return st == QK_OK;
}

/* Weight codes as the builder made them. */
static int8_t code_i8(int64_t k, int per, int seed)
{
    if (k % per == 0) return 127;
    if (k % per == 1) return -127;
    return (int8_t)(((k * 37 + seed) % 255) - 127);
}

/* ------------------------------------------------------------- tests */

static void test_scan(void)
{
    variant v = { 1, 0, 0, "tensorrt", 0 };
    qk_graph *g = build(&v, 1);
    qk_deploy_info *info = NULL;
    QT_OK(qk_deploy_scan(g, &info));
    if (!info) {
        qk_graph_destroy(g);
        return;
    }
    QT_CHECK(info->n_sites == 4 && info->n_weights == 2 && info->n_activations == 2 && info->n_bias == 0,
             "sites %d (w %d a %d b %d)", info->n_sites, info->n_weights, info->n_activations, info->n_bias);
    QT_CHECK(info->backend && strcmp(info->backend->name, "tensorrt") == 0, "profile from metadata");
    const qk_deploy_site *w = qk_deploy_find(info, "conv.weight"), *a = qk_deploy_find(info, "input");
    const qk_deploy_site *f = qk_deploy_find(info, "flat"), *fw = qk_deploy_find(info, "fc.weight");
    QT_CHECK(w && a && f && fw, "sites found by float-model name");
    if (w && a && f && fw) {
        QT_CHECK(w->kind == QK_DEPLOY_WEIGHT && w->per_channel && w->axis == 0 && w->n == C_OUT && w->bits == 8 &&
                 w->is_signed && w->symmetric && w->narrow && w->qmin == -127 && w->qmax == 127,
                 "conv.weight: kind %d pc %d axis %d n %lld bits %d signed %d sym %d narrow %d [%d,%d]", w->kind,
                 w->per_channel, w->axis, (long long)w->n, w->bits, w->is_signed, w->symmetric, w->narrow,
                 (int)w->qmin, (int)w->qmax);
        QT_CHECK(w->scale[1] == conv_scale[1] && w->zp[1] == 0, "conv.weight scale copied");
        QT_CHECK(strcmp(w->node, "conv.weight_DequantizeLinear") == 0, "node name %s", w->node);
        QT_CHECK(a->kind == QK_DEPLOY_ACTIVATION && !a->per_channel && a->axis == -1 && a->n == 1 && a->bits == 8 &&
                 a->is_signed && a->symmetric && a->narrow && a->qmin == -127 && a->scale[0] == in_scale,
                 "input: kind %d pc %d bits %d signed %d sym %d narrow %d qmin %d", a->kind, a->per_channel, a->bits,
                 a->is_signed, a->symmetric, a->narrow, (int)a->qmin);
        QT_CHECK(fw->n == FC_OUT && fw->axis == 0, "fc.weight per channel");
    }
    qk_deploy_info_free(info);

    /* the generic 4-bit unsigned variant: bits from the Clip, asymmetric */
    qk_graph_destroy(g);
    variant v4 = { 0, 1, 1, "academic", 0 };
    g = build(&v4, 1);
    QT_OK(qk_deploy_scan(g, &info));
    f = info ? qk_deploy_find(info, "flat") : NULL;
    fw = info ? qk_deploy_find(info, "fc.weight") : NULL;
    QT_CHECK(f && f->bits == 4 && f->qmin == 0 && f->qmax == 15 && !f->is_signed && !f->symmetric && f->zp[0] == 2,
             "flat 4-bit: bits %d [%d,%d]", f ? f->bits : -1, f ? (int)f->qmin : 0, f ? (int)f->qmax : 0);
    QT_CHECK(fw && !fw->per_channel && fw->axis == -1 && !fw->is_signed && fw->zp[0] == 120 && fw->qmin == 0 &&
             fw->qmax == 255, "fc.weight uint8 per tensor");
    qk_deploy_info_free(info);
    qk_graph_destroy(g);
}

/* The float model: same nodes minus Q/DQ, weights dequantized. */
static void check_float_model(const char *path, const variant *v)
{
    qk_graph *f = NULL;
    QT_OK(qk_onnx_load(path, &f));
    if (!f)
        return;
    const char *ops[] = { "Conv", "Relu", "Flatten", "Gemm" };
    int ok = f->n_nodes == 4;
    for (int i = 0; ok && i < 4; i++)
        ok = strcmp(f->nodes[i].op_type, ops[i]) == 0;
    QT_CHECK(ok, "float model nodes: %d (Conv Relu Flatten Gemm expected)", f->n_nodes);
    int cn = qk_graph_find_node(f, "conv"), gn = qk_graph_find_node(f, "fc");
    QT_CHECK(cn >= 0 && gn >= 0, "node names kept");
    if (cn >= 0 && gn >= 0) {
        QT_CHECK(strcmp(f->values[f->nodes[cn].in[0]].name, "input") == 0, "conv reads the graph input");
        QT_CHECK(strcmp(f->values[f->nodes[cn].in[1]].name, "conv.weight") == 0, "conv weight named conv.weight");
        QT_CHECK(strcmp(f->values[f->nodes[gn].in[0]].name, "flat") == 0, "gemm reads flat");
        QT_CHECK(strcmp(f->values[f->nodes[gn].in[1]].name, "fc.weight") == 0, "gemm weight named fc.weight");
        QT_CHECK(qk_node_int(&f->nodes[gn], "transB", 0) == 1, "attributes kept");
    }
    /* no quantizer constants left */
    int stray = 0;
    for (int i = 0; i < f->n_values; i++)
        stray += strstr(f->values[i].name, "_quantized") || strstr(f->values[i].name, "_scale") ||
                 strstr(f->values[i].name, "_zero_point");
    QT_CHECK(stray == 0, "%d quantizer values left in the float model", stray);
    int wv = qk_graph_find_value(f, "conv.weight");
    if (wv >= 0) {
        const qk_tensor *t = &f->values[wv].t;
        QT_CHECK(t->dtype == QK_F32 && t->ndim == 4 && t->dims[0] == C_OUT && f->values[wv].kind == QK_VALUE_PARAM,
                 "conv.weight float32 [2,1,3,3] param");
        int bad = 0;
        for (int64_t k = 0; k < qk_tensor_numel(t); k++)
            bad += qk_f32(t)[k] != (float)code_i8(k, 9, 5) * conv_scale[k / 9];
        QT_CHECK(bad == 0, "conv.weight = code * scale[c] exactly (%d differ)", bad);
    }
    int fv = qk_graph_find_value(f, "fc.weight");
    if (fv >= 0 && v->fc_u8) {
        const qk_tensor *t = &f->values[fv].t;
        int bad = 0;
        for (int64_t k = 0; k < qk_tensor_numel(t); k++)
            bad += qk_f32(t)[k] != (float)((int)((k * 53 + 11) % 256) - 120) * fc_scale_u8;
        QT_CHECK(bad == 0, "fc.weight = (q - 120) * scale exactly (%d differ)", bad);
    }
    QT_CHECK(qk_graph_get_meta(f, "qkit.quantized") == NULL && qk_graph_get_meta(f, "qkit.deploy") != NULL &&
             qk_graph_get_meta(f, "qkit.norm.mean") != NULL, "metadata: quantized flag dropped, the rest kept");
    qk_graph_destroy(f);
}

/* The float model and the QDQ model compute nearly the same function:
 * they differ only by the activation rounding (8-bit, two sites). */
static void check_runs(const char *qdq_path, const char *float_path)
{
    qk_graph *q = NULL, *f = NULL;
    QT_OK(qk_onnx_load(qdq_path, &q));
    QT_OK(qk_onnx_load(float_path, &f));
    if (!q || !f) {
        qk_graph_destroy(q);
        qk_graph_destroy(f);
        return;
    }
    qk_tensor x;
    qk_tensor_alloc(&x, QK_F32, 4, (int64_t[]){ 2, 1, H, H });
    qk_rng r;
    qk_rng_seed(&r, 3);
    for (int i = 0; i < 2 * H * H; i++)
        qk_f32(&x)[i] = 2.0f * qk_rng_uniform(&r) - 1.0f;
    int nq = 0, nf = 0;
    qk_tensor *yq = NULL, *yf = NULL;
    QT_OK(qk_onnx_run(q, 1, &x, NULL, &nq, &yq));
    QT_OK(qk_onnx_run(f, 1, &x, NULL, &nf, &yf));
    if (yq && yf && nq == 1 && nf == 1) {
        double num = 0, den = 0;
        for (int i = 0; i < 2 * FC_OUT; i++) {
            double d = qk_f32(&yq[0])[i] - qk_f32(&yf[0])[i];
            num += d * d;
            den += (double)qk_f32(&yf[0])[i] * qk_f32(&yf[0])[i];
        }
        /* 8-bit activation grids: relative error well under 5% */
        QT_CHECK(den > 0 && num <= 0.0025 * den, "float vs QDQ output: rel. error^2 %g", den > 0 ? num / den : -1);
    }
    qk_onnx_free_tensors(yq, nq);
    qk_onnx_free_tensors(yf, nf);
    qk_tensor_free(&x);
    qk_graph_destroy(q);
    qk_graph_destroy(f);
}

static void test_tensorrt(void)
{
    variant v = { 1, 0, 0, "tensorrt", 0 };
    const char *model = tpath("trt.onnx"), *dir = tpath("trt_out");
    if (!save_variant(&v, 1, model))
        return;
    qk_deploy_result r;
    QT_OK(qk_deploy_export(model, NULL, dir, &r));
    QT_CHECK(r.backend && strcmp(r.backend->name, "tensorrt") == 0 && r.n_files == 3, "tensorrt: %d files",
             r.n_files);
    QT_CHECK(r.n_weights == 2 && r.n_activations == 2, "result counts");
    char p[320];
    snprintf(p, sizeof p, "%s/dynamic_range.json", dir);
    jv j;
    QT_CHECK(jload(p, &j), "dynamic_range.json parses");
    const jv *br = jget(jget(&j, "tensorrt"), "blob_range");
    QT_CHECK(br->t == J_OBJ && br->n == 2, "blob_range has the 2 activations (got %d)", br->n);
    QT_CHECK(jget(&j, "version")->num == 1, "version 1");
    QT_CHECK((float)jget(br, "input")->num == (float)((double)in_scale * 127.0), "input amax = scale*127: %.9g",
             jget(br, "input")->num);
    QT_CHECK((float)jget(br, "flat")->num == (float)((double)flat_scale * 127.0), "flat amax = scale*127");
    QT_CHECK(jget(br, "conv.weight")->t == J_NULL, "weights are not in blob_range");
    jfree(&j);
    size_t la, lb;
    char *a = read_all(model, &la);
    snprintf(p, sizeof p, "%s/model_qdq.onnx", dir);
    char *b = read_all(p, &lb);
    QT_CHECK(a && b && la == lb && memcmp(a, b, la) == 0, "model_qdq.onnx is the QDQ model byte for byte");
    free(a);
    free(b);
    snprintf(p, sizeof p, "%s/model_float.onnx", dir);
    check_float_model(p, &v);
    check_runs(model, p);
    QT_CHECK(leftovers() == 0, "no staging directory left");

    /* export again into the existing directory: files replaced, others kept */
    snprintf(p, sizeof p, "%s/keep.txt", dir);
    FILE *fk = fopen(p, "w");
    if (fk) { fputs("mine\n", fk); fclose(fk); }
    QT_OK(qk_deploy_export(model, "tensorrt", dir, &r));
    QT_CHECK(exists(p), "an existing directory keeps its other files");
    QT_CHECK(leftovers() == 0, "no staging directory left (existing DIR)");

    /* the same from a graph */
    qk_graph *g = build(&v, 1);
    const char *dir2 = tpath("trt_graph");
    QT_OK(qk_deploy_export_graph(g, NULL, dir2, &r));
    snprintf(p, sizeof p, "%s/model_float.onnx", dir2);
    check_float_model(p, &v);
    snprintf(p, sizeof p, "%s/model_qdq.onnx", dir2);
    qk_graph *back = NULL;
    QT_OK(qk_onnx_load(p, &back));
    QT_CHECK(back && back->n_nodes == 10, "model_qdq.onnx from a graph re-imports with its 10 nodes");
    qk_graph_destroy(back);
    qk_graph_destroy(g);
}

static void check_enc(const jv *e, int bits, double scale, int zp_file, int zp_u, int qmin, int qmax, int sym,
                      const char *what)
{
    QT_CHECK(jget(e, "bitwidth")->num == bits, "%s bitwidth %g", what, jget(e, "bitwidth")->num);
    QT_CHECK(jget(e, "dtype")->str && strcmp(jget(e, "dtype")->str, "int") == 0, "%s dtype int", what);
    QT_CHECK(jget(e, "is_symmetric")->str && strcmp(jget(e, "is_symmetric")->str, sym ? "True" : "False") == 0,
             "%s is_symmetric", what);
    QT_CHECK(jget(e, "offset")->num == -zp_u, "%s offset %g (expected %d)", what, jget(e, "offset")->num, -zp_u);
    QT_CHECK((float)jget(e, "scale")->num == (float)scale, "%s scale", what);
    QT_NEAR(jget(e, "min")->num, (qmin - zp_file) * scale, 1e-7 * fabs((qmin - zp_file) * scale) + 1e-12, what);
    QT_NEAR(jget(e, "max")->num, (qmax - zp_file) * scale, 1e-7 * fabs((qmax - zp_file) * scale) + 1e-12, what);
}

static void test_snpe(void)
{
    variant v = { 0, 1, 0, "snpe", 0 };
    const char *model = tpath("snpe.onnx"), *dir = tpath("snpe_out");
    if (!save_variant(&v, 1, model))
        return;
    qk_deploy_result r;
    QT_OK(qk_deploy_export(model, NULL, dir, &r));
    QT_CHECK(r.n_files == 2 && strcmp(r.files[0], "model_float.onnx") == 0 && strcmp(r.files[1], "encodings.json") == 0,
             "snpe files");
    char p[320];
    snprintf(p, sizeof p, "%s/encodings.json", dir);
    jv j;
    QT_CHECK(jload(p, &j), "encodings.json parses");
    const jv *ae = jget(&j, "activation_encodings"), *pe = jget(&j, "param_encodings");
    QT_CHECK(ae->n == 2 && pe->n == 2, "2 activation and 2 param encodings (%d, %d)", ae->n, pe->n);
    /* uint8 activations: offset = -zero_point, min/max on [0, 255] */
    check_enc(jat(jget(ae, "input"), 0), 8, in_scale, 3, 3, 0, 255, 0, "input");
    check_enc(jat(jget(ae, "flat"), 0), 8, flat_scale, 100, 100, 0, 255, 0, "flat");
    /* int8 per-channel weights: one entry per channel, signed grid shifted by 128 */
    const jv *cw = jget(pe, "conv.weight");
    QT_CHECK(cw->t == J_ARR && cw->n == C_OUT, "conv.weight: %d channel encodings", cw->n);
    for (int c = 0; c < C_OUT; c++)
        check_enc(jat(cw, c), 8, conv_scale[c], 0, 128, -128, 127, 1, "conv.weight[c]");
    const jv *fw = jget(pe, "fc.weight");
    QT_CHECK(fw->n == 1, "fc.weight per tensor");
    check_enc(jat(fw, 0), 8, fc_scale_u8, 120, 120, 0, 255, 0, "fc.weight");
    jfree(&j);
    snprintf(p, sizeof p, "%s/model_float.onnx", dir);
    check_float_model(p, &v);
    snprintf(p, sizeof p, "%s/model_qdq.onnx", dir);
    QT_CHECK(!exists(p), "snpe gets no QDQ copy");
}

static void test_generic(void)
{
    variant v = { 0, 1, 1, "academic", 0 };
    const char *model = tpath("gen.onnx"), *dir = tpath("gen_out");
    if (!save_variant(&v, 1, model))
        return;
    qk_deploy_result r;
    QT_OK(qk_deploy_export(model, NULL, dir, &r));
    QT_CHECK(r.n_files == 1 && strcmp(r.files[0], "quant_params.json") == 0, "generic: quant_params.json only");
    char p[320];
    snprintf(p, sizeof p, "%s/quant_params.json", dir);
    jv j;
    QT_CHECK(jload(p, &j), "quant_params.json parses");
    QT_CHECK(jget(&j, "backend")->str && strcmp(jget(&j, "backend")->str, "academic") == 0, "backend");
    QT_CHECK(jget(&j, "arith")->str && strcmp(jget(&j, "arith")->str, "fp32") == 0, "arith");
    QT_CHECK(jget(jget(&j, "metadata"), "qkit.abits")->str != NULL, "metadata copied");
    const jv *qs = jget(&j, "quantizers");
    QT_CHECK(qs->t == J_ARR && qs->n == 4, "4 quantizers (got %d)", qs->n);
    int seen = 0;
    for (int i = 0; i < qs->n; i++) {
        const jv *q = jat(qs, i);
        const char *t = jget(q, "tensor")->str;
        if (!t)
            continue;
        if (strcmp(t, "conv.weight") == 0) {
            seen |= 1;
            QT_CHECK(strcmp(jget(q, "kind")->str, "weight") == 0 && jget(q, "per_channel")->num == 1 &&
                     jget(q, "axis")->t == J_NUM && jget(q, "axis")->num == 0 && jget(q, "signed")->num == 1 &&
                     jget(q, "symmetric")->num == 1 && jget(q, "bits")->num == 8, "conv.weight entry");
            QT_CHECK(jget(q, "scale")->n == C_OUT && (float)jat(jget(q, "scale"), 1)->num == conv_scale[1] &&
                     jget(q, "zero_point")->n == C_OUT, "conv.weight scales");
            QT_CHECK(jget(q, "qmin")->num == -127 && jget(q, "qmax")->num == 127, "academic weights narrow");
        } else if (strcmp(t, "flat") == 0) {
            seen |= 2;
            QT_CHECK(strcmp(jget(q, "kind")->str, "activation") == 0 && jget(q, "bits")->num == 4 &&
                     jget(q, "qmin")->num == 0 && jget(q, "qmax")->num == 15 && jget(q, "signed")->num == 0 &&
                     jget(q, "axis")->t == J_NULL && jat(jget(q, "zero_point"), 0)->num == 2 &&
                     (float)jat(jget(q, "scale"), 0)->num == flat_scale, "flat 4-bit entry");
        } else if (strcmp(t, "input") == 0) {
            seen |= 4;
            QT_CHECK(jat(jget(q, "zero_point"), 0)->num == 3 && jget(q, "symmetric")->num == 0, "input entry");
        } else if (strcmp(t, "fc.weight") == 0) {
            seen |= 8;
        }
    }
    QT_CHECK(seen == 15, "every site listed (mask %d)", seen);
    jfree(&j);

    /* --backend overrides the metadata: fbgemm gets the generic table too */
    const char *dir2 = tpath("fbgemm_out");
    QT_OK(qk_deploy_export(model, "fbgemm", dir2, &r));
    QT_CHECK(r.backend && strcmp(r.backend->name, "fbgemm") == 0 && r.n_files == 1, "fbgemm override");
}

static int count_op(const qk_graph *g, const char *op)
{
    int c = 0;
    for (int i = 0; i < g->n_nodes; i++)
        c += strcmp(g->nodes[i].op_type, op) == 0;
    return c;
}

static void test_qlinear(void)
{
    qk_graph *g;
    variant v = { 0, 0, 0, "onnx-qlinear", 1 };
    const char *model = tpath("qlin.onnx"), *dir = tpath("qlin_out");
    if (!save_variant(&v, 1, model))
        return;
    qk_deploy_result r;
    QT_OK(qk_deploy_export(model, NULL, dir, &r));
    QT_CHECK(r.n_files == 1 && strcmp(r.files[0], "model_qlinear.onnx") == 0 && r.n_qlinear == 2,
             "onnx-qlinear: %d files, %d layers", r.n_files, r.n_qlinear);
    char p[320];
    snprintf(p, sizeof p, "%s/model_qlinear.onnx", dir);
    qk_graph *ql = NULL, *q = NULL;
    QT_OK(qk_onnx_load(p, &ql));
    QT_OK(qk_onnx_load(model, &q));
    if (!ql || !q) {
        qk_graph_destroy(ql);
        qk_graph_destroy(q);
        return;
    }
    QT_CHECK(count_op(ql, "QLinearConv") == 1 && count_op(ql, "QLinearMatMul") == 1 && count_op(ql, "Conv") == 0 &&
             count_op(ql, "Gemm") == 0 && count_op(ql, "Relu") == 0, "QLinearConv + QLinearMatMul replace Conv, "
             "Relu, Gemm");
    /* Q(input), DQ(relu codes) -> Flatten, Q(flat), DQ(logits) remain */
    QT_CHECK(count_op(ql, "QuantizeLinear") == 2 && count_op(ql, "DequantizeLinear") == 2,
             "Q %d DQ %d left", count_op(ql, "QuantizeLinear"), count_op(ql, "DequantizeLinear"));
    int bq = qk_graph_find_value(ql, "conv.bias_quantized");
    QT_CHECK(bq >= 0 && ql->values[bq].t.dtype == QK_I32, "int32 bias");
    if (bq >= 0) {
        int32_t b0 = ((int32_t *)ql->values[bq].t.data)[0], b1 = ((int32_t *)ql->values[bq].t.data)[1];
        QT_CHECK(b0 == (int32_t)nearbyint(0.1 / (double)(in_scale * conv_scale[0])) &&
                 b1 == (int32_t)nearbyint(-0.2 / (double)(in_scale * conv_scale[1])),
                 "bias = RNE(b / (s_x s_w[c])): %d %d", (int)b0, (int)b1);
    }
    /* int8 [N,K] weight of a uint8 activation: [K,N] uint8 codes + 128, zero points 128 */
    int wt = qk_graph_find_value(ql, "fc.weight_quantized_t_u8");
    int wz = qk_graph_find_value(ql, "fc.weight_quantized_t_u8_zero_point");
    QT_CHECK(wt >= 0 && ql->values[wt].t.ndim == 2 && ql->values[wt].t.dims[0] == FC_IN &&
             ql->values[wt].t.dims[1] == FC_OUT && ql->values[wt].t.dtype == QK_U8,
             "Gemm transB weight transposed to [K, N] uint8");
    QT_CHECK(wz >= 0 && ql->values[wz].t.dtype == QK_U8 && qk_tensor_numel(&ql->values[wz].t) == FC_OUT &&
             ((uint8_t *)ql->values[wz].t.data)[2] == 128, "per-column uint8 zero points 128");
    if (wt >= 0) {
        int bad = 0;
        const uint8_t *c = ql->values[wt].t.data;
        for (int n = 0; n < FC_OUT; n++)
            for (int k = 0; k < FC_IN; k++)
                bad += c[k * FC_OUT + n] != code_i8((int64_t)n * FC_IN + k, FC_IN, 9) + 128;
        QT_CHECK(bad == 0, "transposed codes (%d differ)", bad);
    }
    /* same function: the integer requantization and the int32 bias differ from
     * the float QDQ path by at most a code or so per site; through the 32-input
     * fc that is a few logit LSBs */
    qk_tensor x;
    qk_tensor_alloc(&x, QK_F32, 4, (int64_t[]){ 4, 1, H, H });
    qk_rng rg;
    qk_rng_seed(&rg, 11);
    for (int i = 0; i < 4 * H * H; i++)
        qk_f32(&x)[i] = 4.0f * qk_rng_uniform(&rg) - 0.5f;
    int nq = 0, nl = 0;
    qk_tensor *yq = NULL, *yl = NULL;
    QT_OK(qk_onnx_run(q, 1, &x, NULL, &nq, &yq));
    QT_OK(qk_onnx_run(ql, 1, &x, NULL, &nl, &yl));
    if (yq && yl && nq == 1 && nl == 1) {
        double mx = 0, mag = 0;
        for (int i = 0; i < 4 * FC_OUT; i++) {
            mx = fmax(mx, fabs(qk_f32(&yq[0])[i] - qk_f32(&yl[0])[i]));
            mag = fmax(mag, fabs(qk_f32(&yq[0])[i]));
        }
        QT_CHECK(mag > 10 * logit_scale, "logits not degenerate (max |y| %g)", mag);
        QT_CHECK(mx <= 4 * logit_scale, "QLinear vs QDQ logits: max diff %g (%g LSB)", mx, mx / logit_scale);
    }
    qk_onnx_free_tensors(yq, nq);
    qk_onnx_free_tensors(yl, nl);
    qk_tensor_free(&x);
    qk_graph_destroy(ql);
    qk_graph_destroy(q);

    /* ONNX Runtime's QLinear kernels write the input's type: an int8 output
     * of a uint8 input stays QDQ */
    g = NULL;
    {
        qk_graph *g2 = build(&v, 1);
        int zl = qk_graph_find_value(g2, "logits_zero_point");
        if (zl >= 0) {
            qk_tensor t;
            qk_tensor_alloc(&t, QK_I8, 0, NULL);
            qk_tensor_free(&g2->values[zl].t);
            g2->values[zl].t = t;
        }
        int n2 = -1;
        QT_OK(qk_deploy_to_qlinear(g2, &n2));
        QT_CHECK(n2 == 1 && count_op(g2, "Gemm") == 1 && count_op(g2, "QLinearConv") == 1,
                 "int8 output of a uint8 input: the Gemm stays QDQ (%d converted)", n2);
        qk_graph_destroy(g2);
    }

    /* a Gemm with bias stays in QDQ form; the conv still converts */
    variant vb = { 0, 0, 0, "onnx-qlinear", 0 };
    g = build(&vb, 1);
    int n = -1;
    QT_OK(qk_deploy_to_qlinear(g, &n));
    QT_CHECK(n == 0 && count_op(g, "Gemm") == 1 && count_op(g, "Conv") == 1,
             "no quantized conv output, Gemm with bias: nothing converted (%d)", n);
    qk_graph_destroy(g);
}

static void test_bad_input(void)
{
    variant vf = { 1, 0, 0, "tensorrt", 0 }, vu = { 0, 0, 0, "fbgemm", 0 }, vn = { 1, 0, 0, NULL, 0 };
    const char *fmodel = tpath("float.onnx"), *qmodel = tpath("trt2.onnx"), *umodel = tpath("u8.onnx");
    const char *nmodel = tpath("nometa.onnx");
    save_variant(&vf, 0, fmodel);
    save_variant(&vf, 1, qmodel);
    save_variant(&vu, 1, umodel);
    save_variant(&vn, 1, nmodel);
    qk_deploy_result r;
    const char *dir = tpath("bad_out");

    qk_status st = qk_deploy_export(fmodel, "tensorrt", dir, &r);
    QT_CHECK(st == QK_ERR_ARG && contains(qk_last_error(), "float model"), "float model: %s", qk_last_error());
    QT_CHECK(!exists(dir), "float model: nothing written");

    st = qk_deploy_export(qmodel, "tensorrtx", dir, &r);
    QT_CHECK(st == QK_ERR_NOTFOUND && contains(qk_last_error(), "tensorrtx") && contains(qk_last_error(), "snpe") &&
             contains(qk_last_error(), "tensorrt,"), "unknown backend lists the valid ones: %s", qk_last_error());
    QT_CHECK(!exists(dir), "unknown backend: nothing written");

    st = qk_deploy_export(nmodel, NULL, dir, &r);
    QT_CHECK(st == QK_ERR_ARG && contains(qk_last_error(), "qkit.backend"), "no backend: %s", qk_last_error());

    /* a path below a regular file can never be created (also as root) */
    char p[320];
    snprintf(p, sizeof p, "%s/out", fmodel);
    st = qk_deploy_export(qmodel, NULL, p, &r);
    QT_CHECK(st == QK_ERR_IO && contains(qk_last_error(), "cannot create"), "unwritable DIR: %s", qk_last_error());
    st = qk_deploy_export(qmodel, NULL, fmodel, &r);
    QT_CHECK(st == QK_ERR_IO && contains(qk_last_error(), "not a directory"), "DIR is a file: %s", qk_last_error());
    st = qk_deploy_export(qmodel, NULL, "/nonexistent-qkit-dir/sub/out", &r);
    QT_CHECK(st == QK_ERR_IO, "missing parent: %s", qk_last_error());

    /* truncated model */
    size_t len;
    char *bytes = read_all(qmodel, &len);
    const char *tmodel = tpath("trunc.onnx");
    FILE *f = fopen(tmodel, "wb");
    if (f && bytes) {
        fwrite(bytes, 1, len / 2, f);
        fclose(f);
    }
    free(bytes);
    st = qk_deploy_export(tmodel, NULL, dir, &r);
    QT_CHECK(st == QK_ERR_IO || st == QK_ERR_FORMAT, "truncated model: %s (%s)", qk_status_str(st), qk_last_error());
    QT_CHECK(contains(qk_last_error(), "trunc.onnx"), "truncated: message names the file: %s", qk_last_error());
    QT_CHECK(!exists(dir), "truncated: nothing written");
    st = qk_deploy_export(tpath("missing.onnx"), NULL, dir, &r);
    QT_CHECK(st == QK_ERR_IO, "missing model: %s", qk_last_error());

    /* tensorrt needs int8 zp 0 activations */
    st = qk_deploy_export(umodel, "tensorrt", dir, &r);
    QT_CHECK(st == QK_ERR_UNSUPPORTED && contains(qk_last_error(), "'input'") && contains(qk_last_error(), "uint8"),
             "tensorrt on uint8 activations: %s", qk_last_error());
    QT_CHECK(!exists(dir), "tensorrt refusal: nothing written");

    st = qk_deploy_export(fmodel, "onnx-qlinear", dir, &r);
    QT_CHECK(st == QK_ERR_ARG, "onnx-qlinear of a float model: %s", qk_last_error());
    QT_CHECK(!exists(dir), "onnx-qlinear: nothing written");

    /* a failed export into an existing directory leaves it as it was */
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "%s/dynamic_range.json", dir);
    f = fopen(p, "w");
    if (f) { fputs("old\n", f); fclose(f); }
    st = qk_deploy_export(umodel, "tensorrt", dir, &r);
    char *old = read_all(p, NULL);
    QT_CHECK(st != QK_OK && old && strcmp(old, "old\n") == 0, "existing files untouched after an error");
    free(old);
    QT_CHECK(r.n_files == 0, "no files reported after an error");
    QT_CHECK(leftovers() == 0, "no staging directory left after errors");

    /* structure errors: a DequantizeLinear of an activation not from QuantizeLinear */
    qk_graph *g = build(&vf, 1);
    int rn = qk_graph_find_node(g, "relu"), fv = qk_graph_find_value(g, "flat_quantized");
    int qn = qk_graph_find_node(g, "flat_QuantizeLinear");
    if (rn >= 0 && fv >= 0 && qn >= 0) {
        /* a second reader of the codes: the Q output is shared */
        int extra = qk_graph_add_value(g, "codes_copy", QK_VALUE_ACT);
        qk_graph_add_node(g, "Identity", "reader", 1, &fv, 1, &extra);
        qk_graph_add_output(g, extra);
        qk_deploy_info *info = NULL;
        st = qk_deploy_scan(g, &info);
        QT_CHECK(st == QK_ERR_UNSUPPORTED && contains(qk_last_error(), "flat_QuantizeLinear") && !info,
                 "shared codes: %s", qk_last_error());
        st = qk_deploy_strip_qdq(g);
        QT_CHECK(st == QK_ERR_UNSUPPORTED && g->n_nodes == 11, "strip refuses before changing the graph");
    }
    qk_graph_destroy(g);

    /* a bad scale */
    g = build(&vf, 1);
    int sv = qk_graph_find_value(g, "input_scale");
    if (sv >= 0)
        qk_f32(&g->values[sv].t)[0] = -1.0f;
    qk_deploy_info *info = NULL;
    st = qk_deploy_scan(g, &info);
    QT_CHECK(st == QK_ERR_FORMAT && contains(qk_last_error(), "input_scale"), "negative scale: %s", qk_last_error());
    qk_graph_destroy(g);
}

/* The CLI (QKIT_BUILD/qkit, as tools/run_tests.sh sets it): exit codes and output. */
static int run_cli(const char *qkit, const char *args, char *out, size_t cap)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1 </dev/null", qkit, args);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(void)
{
    const char *b = getenv("QKIT_BUILD");
    char qkit[256], out[8192], args[768];
    snprintf(qkit, sizeof qkit, "%s/qkit", b ? b : "build");
    if (!exists(qkit) || run_cli(qkit, "export --help", out, sizeof out) != 0) {
        printf("test_deploy: no qkit binary with `export` at %s; CLI checks skipped\n", qkit);
        return;
    }
    QT_CHECK(contains(out, "--backend") && contains(out, "--out"), "export --help: %s", out);
    snprintf(args, sizeof args, "export --model %s --out %s --json", tpath("trt.onnx"), tpath("cli_trt"));
    int rc = run_cli(qkit, args, out, sizeof out);
    QT_CHECK(rc == 0 && contains(out, "\"backend\": \"tensorrt\"") && contains(out, "dynamic_range.json") &&
             contains(out, "\"activations\": 2"), "export --json: rc %d: %s", rc, out);
    snprintf(args, sizeof args, "export --model %s --backend snpe --out %s", tpath("trt.onnx"), tpath("cli_snpe"));
    rc = run_cli(qkit, args, out, sizeof out);
    QT_CHECK(rc == 0 && contains(out, "encodings.json"), "export --backend snpe: rc %d: %s", rc, out);
    snprintf(args, sizeof args, "export --model %s --out %s", tpath("float.onnx"), tpath("cli_bad"));
    rc = run_cli(qkit, args, out, sizeof out);
    QT_CHECK(rc == 1 && contains(out, "float model") && !exists(tpath("cli_bad")), "float model: rc %d: %s", rc, out);
    snprintf(args, sizeof args, "export --model %s --backend nope --out %s", tpath("trt.onnx"), tpath("cli_bad"));
    rc = run_cli(qkit, args, out, sizeof out);
    QT_CHECK(rc == 1 && contains(out, "valid backends are"), "unknown backend: rc %d: %s", rc, out);
    snprintf(args, sizeof args, "export --model %s", tpath("trt.onnx"));
    rc = run_cli(qkit, args, out, sizeof out);
    QT_CHECK(rc == 2 && contains(out, "--out"), "missing --out: rc %d: %s", rc, out);
    rc = run_cli(qkit, "export --list", out, sizeof out);
    QT_CHECK(rc == 0 && contains(out, "model_qlinear.onnx") && contains(out, "encodings.json"), "export --list: %s",
             out);
}

static void rm_tree(const char *path)
{
    DIR *d = opendir(path);
    if (!d) {
        unlink(path);
        return;
    }
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", path, e->d_name);
            rm_tree(p);
        }
    closedir(d);
    rmdir(path);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/qkit_test_deploy_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_scan();
    test_tensorrt();
    test_snpe();
    test_generic();
    test_qlinear();
    test_bad_input();
    test_cli();
    if (getenv("QKIT_TEST_KEEP"))
        printf("kept %s\n", tmpdir);
    else
        rm_tree(tmpdir);
    return qt_finish("test_deploy");
}
