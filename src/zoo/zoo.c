/* Model zoo: The reference architectures (docs/ARCHITECTURE.md) as float graphs.
 *
 * The module layout is bench/torch_peer.py's; value names are the PyTorch
 * state_dict names, so a state_dict (or the peer's ONNX export with
 * TrainingMode.PRESERVE) maps 1:1 onto these graphs. Every conv is
 * bias=False and followed by BatchNorm2d(eps 1e-5, momentum 0.1) = ONNX
 * BatchNormalization(epsilon 1e-5, momentum 0.9); 3x3 convs pad 1, 1x1 pad 0.
 * Each BN "X" has X.weight, X.bias (PARAM, no_decay), X.running_mean,
 * X.running_var (CONST); each conv "X" has X.weight [cout, cin/groups, k, k];
 * each Linear "X" has X.weight [out, in] and X.bias [out] (no_decay).
 * Node names are the module names; functional ops get the names in
 * parentheses below. Each node's single output value has the node's name,
 * except the last Gemm, whose output is "logits".
 *
 * lenet (421,738 parameters = 288 + 64 + 18,432 + 128 + 401,536 + 1,290)
 *   conv1 Conv 1->32 3x3 s1 p1, bn1, (relu1), (pool1) MaxPool 2x2 s2
 *   conv2 Conv 32->64 3x3 s1 p1, bn2, (relu2), (pool2) MaxPool 2x2 s2
 *   (flatten) -> 3136, fc1 Gemm 3136->128, (relu3), fc2 Gemm 128->10
 *
 * resnet8 (77,754 parameters = stem 176 + layer1 4,672 + layer2 14,528 +
 *          layer3 57,728 + fc 650)
 *   conv1 Conv 1->16 3x3, bn1, (relu)
 *   layerL.0 BasicBlock (L = 1, 2, 3: 16->16 s1, 16->32 s2, 32->64 s2):
 *     layerL.0.conv1 3x3 stride s, layerL.0.bn1, (layerL.0.relu1),
 *     layerL.0.conv2 3x3 s1, layerL.0.bn2,
 *     shortcut: input, or layerL.0.shortcut_conv 1x1 stride s +
 *               layerL.0.shortcut_bn when the shape changes (L = 2, 3),
 *     (layerL.0.add) Add(bn2, shortcut), (layerL.0.relu2)
 *   (pool) GlobalAveragePool, (flatten), fc Gemm 64->10
 *
 * mobilenetv2s (50,410 parameters = stem 176 + blocks 40,496 + conv2/bn2
 *               8,448 + fc 1,290)
 *   conv1 Conv 1->16 3x3, bn1, (act1) Clip 0..6
 *   blocks.i (t, c, s) = (1,16,1) (4,24,2) (4,24,1) (4,32,2) (4,32,1) (4,64,1),
 *   hidden = in * t:
 *     blocks.i.expand_conv 1x1 in->hidden, blocks.i.expand_bn, (blocks.i.expand_act)
 *                                                        (only when t != 1)
 *     blocks.i.dw_conv 3x3 stride s groups hidden, blocks.i.dw_bn, (blocks.i.dw_act)
 *     blocks.i.project_conv 1x1 hidden->c, blocks.i.project_bn   (linear)
 *     (blocks.i.add) Add(input, project_bn) when s == 1 and in == c
 *   conv2 Conv 64->128 1x1, bn2, (act2) Clip 0..6
 *   (pool) GlobalAveragePool, (flatten), fc Gemm 128->10
 *   The Clip nodes share the CONST scalars "relu6.min" (0) and "relu6.max" (6).
 *
 * Initialization (PyTorch defaults in distribution): conv / linear weights
 * kaiming_uniform(a = sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with
 * fan_in = cin/groups * k * k; linear bias U(-1/sqrt(fan_in), ..); BN weight
 * 1, bias 0, running mean 0, var 1. Values are drawn from one qk_rng seeded
 * with the seed, in construction order. */
#include "qkit/zoo.h"
#include "qkit/data.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct zb {
    qk_graph *g;
    qk_rng rng;
    qk_status st;
    int c6min, c6max; /* ReLU6 constants, created on first use */
} zb;

static const char *const g_names[] = { "lenet", "resnet8", "mobilenetv2s", NULL };

const char *const *qk_zoo_names(void)
{
    return g_names;
}

/* Record the first failure; later calls become no-ops returning -1. */
static int fail(zb *b)
{
    if (b->st == QK_OK)
        b->st = QK_ERR_NOMEM;
    return -1;
}

static int add_tensor(zb *b, const char *name, qk_value_kind kind, int ndim, const int64_t *dims,
                      float bound, float fill, int no_decay)
{
    if (b->st != QK_OK)
        return -1;
    qk_tensor t;
    qk_status st = qk_tensor_alloc(&t, QK_F32, ndim, dims);
    if (st != QK_OK) {
        b->st = st;
        return -1;
    }
    float *p = qk_f32(&t);
    int64_t n = qk_tensor_numel(&t);
    for (int64_t i = 0; i < n; i++)
        p[i] = bound > 0 ? (2.0f * qk_rng_uniform(&b->rng) - 1.0f) * bound : fill;
    int id = qk_graph_add_init(b->g, name, kind, &t);
    if (id < 0) {
        qk_tensor_free(&t);
        b->st = QK_ERR_NOMEM;
        return -1;
    }
    b->g->values[id].no_decay = no_decay;
    return id;
}

/* New node with one output value named `name` (or out_name). */
static int add_node(zb *b, const char *op, const char *name, const char *out_name, int n_in, const int *in,
                    int *node)
{
    if (b->st != QK_OK)
        return -1;
    for (int i = 0; i < n_in; i++)
        if (in[i] < 0)
            return fail(b);
    int y = qk_graph_add_value(b->g, out_name ? out_name : name, QK_VALUE_ACT);
    if (y < 0)
        return fail(b);
    int nd = qk_graph_add_node(b->g, op, name, n_in, in, 1, &y);
    if (nd < 0)
        return fail(b);
    *node = nd;
    return y;
}

static void set_ints(zb *b, int nd, const char *key, int64_t a, int64_t c, int n)
{
    int64_t v[4] = { a, c, a, c };
    if (b->st == QK_OK && qk_node_set_ints(b->g, nd, key, n, v) != QK_OK)
        b->st = QK_ERR_NOMEM;
}

static int conv(zb *b, int x, const char *name, int cin, int cout, int k, int stride, int groups)
{
    char wn[160];
    snprintf(wn, sizeof wn, "%s.weight", name);
    int64_t dims[4] = { cout, cin / groups, k, k };
    float bound = 1.0f / sqrtf((float)(cin / groups * k * k));
    int w = add_tensor(b, wn, QK_VALUE_PARAM, 4, dims, bound, 0, 0);
    int nd = -1, in[2] = { x, w };
    int y = add_node(b, "Conv", name, NULL, 2, in, &nd);
    if (y < 0)
        return -1;
    set_ints(b, nd, "kernel_shape", k, k, 2);
    set_ints(b, nd, "strides", stride, stride, 2);
    set_ints(b, nd, "pads", k / 2, k / 2, 4);
    set_ints(b, nd, "dilations", 1, 1, 2);
    if (b->st == QK_OK && qk_node_set_int(b->g, nd, "group", groups) != QK_OK)
        b->st = QK_ERR_NOMEM;
    return y;
}

static int bn(zb *b, int x, const char *name, int c)
{
    char n1[160], n2[160], n3[160], n4[160];
    snprintf(n1, sizeof n1, "%s.weight", name);
    snprintf(n2, sizeof n2, "%s.bias", name);
    snprintf(n3, sizeof n3, "%s.running_mean", name);
    snprintf(n4, sizeof n4, "%s.running_var", name);
    int64_t d = c;
    int in[5] = { x, add_tensor(b, n1, QK_VALUE_PARAM, 1, &d, 0, 1.0f, 1),
                  add_tensor(b, n2, QK_VALUE_PARAM, 1, &d, 0, 0.0f, 1),
                  add_tensor(b, n3, QK_VALUE_CONST, 1, &d, 0, 0.0f, 0),
                  add_tensor(b, n4, QK_VALUE_CONST, 1, &d, 0, 1.0f, 0) };
    int nd = -1;
    int y = add_node(b, "BatchNormalization", name, NULL, 5, in, &nd);
    if (y < 0)
        return -1;
    if (qk_node_set_float(b->g, nd, "epsilon", 1e-5f) != QK_OK ||
        qk_node_set_float(b->g, nd, "momentum", 0.9f) != QK_OK)
        return fail(b);
    return y;
}

static int unary(zb *b, const char *op, int x, const char *name)
{
    int nd;
    return add_node(b, op, name, NULL, 1, &x, &nd);
}

static int relu6(zb *b, int x, const char *name)
{
    if (b->c6min < 0) {
        const int64_t one = 1; /* rank 0: dims unused */
        b->c6min = add_tensor(b, "relu6.min", QK_VALUE_CONST, 0, &one, 0, 0.0f, 0);
        b->c6max = add_tensor(b, "relu6.max", QK_VALUE_CONST, 0, &one, 0, 6.0f, 0);
    }
    int in[3] = { x, b->c6min, b->c6max }, nd;
    return add_node(b, "Clip", name, NULL, 3, in, &nd);
}

static int add2(zb *b, int x, int y, const char *name)
{
    int in[2] = { x, y }, nd;
    return add_node(b, "Add", name, NULL, 2, in, &nd);
}

static int maxpool2(zb *b, int x, const char *name)
{
    int nd;
    int y = add_node(b, "MaxPool", name, NULL, 1, &x, &nd);
    if (y < 0)
        return -1;
    set_ints(b, nd, "kernel_shape", 2, 2, 2);
    set_ints(b, nd, "strides", 2, 2, 2);
    return y;
}

static int flatten(zb *b, int x)
{
    int nd;
    int y = add_node(b, "Flatten", "flatten", NULL, 1, &x, &nd);
    if (y >= 0 && qk_node_set_int(b->g, nd, "axis", 1) != QK_OK)
        return fail(b);
    return y;
}

static int linear(zb *b, int x, const char *name, int in_f, int out_f, const char *out_name)
{
    char wn[160], bn_[160];
    snprintf(wn, sizeof wn, "%s.weight", name);
    snprintf(bn_, sizeof bn_, "%s.bias", name);
    float bound = 1.0f / sqrtf((float)in_f);
    int64_t wd[2] = { out_f, in_f }, bd = out_f;
    int w = add_tensor(b, wn, QK_VALUE_PARAM, 2, wd, bound, 0, 0);
    int bias = add_tensor(b, bn_, QK_VALUE_PARAM, 1, &bd, bound, 0, 1);
    int in[3] = { x, w, bias }, nd;
    int y = add_node(b, "Gemm", name, out_name, 3, in, &nd);
    if (y < 0)
        return -1;
    if (qk_node_set_float(b->g, nd, "alpha", 1.0f) != QK_OK || qk_node_set_float(b->g, nd, "beta", 1.0f) != QK_OK ||
        qk_node_set_int(b->g, nd, "transB", 1) != QK_OK)
        return fail(b);
    return y;
}

/* conv + bn [+ activation]; act: 0 none, 1 Relu, 6 Clip 0..6. */
static int conv_bn(zb *b, int x, const char *conv_name, const char *bn_name, const char *act_name, int act,
                   int cin, int cout, int k, int stride, int groups)
{
    int y = conv(b, x, conv_name, cin, cout, k, stride, groups);
    y = bn(b, y, bn_name, cout);
    if (act == 1)
        y = unary(b, "Relu", y, act_name);
    else if (act == 6)
        y = relu6(b, y, act_name);
    return y;
}

static int build_lenet(zb *b, int x)
{
    x = conv_bn(b, x, "conv1", "bn1", "relu1", 1, 1, 32, 3, 1, 1);
    x = maxpool2(b, x, "pool1");
    x = conv_bn(b, x, "conv2", "bn2", "relu2", 1, 32, 64, 3, 1, 1);
    x = maxpool2(b, x, "pool2");
    x = flatten(b, x);
    x = linear(b, x, "fc1", 3136, 128, NULL);
    x = unary(b, "Relu", x, "relu3");
    return linear(b, x, "fc2", 128, 10, "logits");
}

static int basic_block(zb *b, int x, const char *p, int cin, int cout, int stride)
{
    char c1[64], b1[64], r1[64], c2[64], b2[64], sc[64], sb[64], ad[64], r2[64];
    snprintf(c1, sizeof c1, "%s.conv1", p);
    snprintf(b1, sizeof b1, "%s.bn1", p);
    snprintf(r1, sizeof r1, "%s.relu1", p);
    snprintf(c2, sizeof c2, "%s.conv2", p);
    snprintf(b2, sizeof b2, "%s.bn2", p);
    snprintf(sc, sizeof sc, "%s.shortcut_conv", p);
    snprintf(sb, sizeof sb, "%s.shortcut_bn", p);
    snprintf(ad, sizeof ad, "%s.add", p);
    snprintf(r2, sizeof r2, "%s.relu2", p);
    int y = conv_bn(b, x, c1, b1, r1, 1, cin, cout, 3, stride, 1);
    y = conv_bn(b, y, c2, b2, NULL, 0, cout, cout, 3, 1, 1);
    int s = x;
    if (stride != 1 || cin != cout)
        s = conv_bn(b, x, sc, sb, NULL, 0, cin, cout, 1, stride, 1);
    y = add2(b, y, s, ad);
    return unary(b, "Relu", y, r2);
}

static int build_resnet8(zb *b, int x)
{
    x = conv_bn(b, x, "conv1", "bn1", "relu", 1, 1, 16, 3, 1, 1);
    x = basic_block(b, x, "layer1.0", 16, 16, 1);
    x = basic_block(b, x, "layer2.0", 16, 32, 2);
    x = basic_block(b, x, "layer3.0", 32, 64, 2);
    x = unary(b, "GlobalAveragePool", x, "pool");
    x = flatten(b, x);
    return linear(b, x, "fc", 64, 10, "logits");
}

static int inverted_residual(zb *b, int x, int i, int cin, int cout, int stride, int t)
{
    char n[9][64];
    const char *sfx[9] = { "expand_conv", "expand_bn", "expand_act", "dw_conv", "dw_bn",
                           "dw_act", "project_conv", "project_bn", "add" };
    for (int k = 0; k < 9; k++)
        snprintf(n[k], sizeof n[k], "blocks.%d.%s", i, sfx[k]);
    int hidden = cin * t;
    int y = x;
    if (t != 1)
        y = conv_bn(b, y, n[0], n[1], n[2], 6, cin, hidden, 1, 1, 1);
    y = conv_bn(b, y, n[3], n[4], n[5], 6, hidden, hidden, 3, stride, hidden);
    y = conv_bn(b, y, n[6], n[7], NULL, 0, hidden, cout, 1, 1, 1);
    if (stride == 1 && cin == cout)
        y = add2(b, x, y, n[8]);
    return y;
}

static int build_mobilenetv2s(zb *b, int x)
{
    static const int cfg[6][3] = { { 1, 16, 1 }, { 4, 24, 2 }, { 4, 24, 1 },
                                   { 4, 32, 2 }, { 4, 32, 1 }, { 4, 64, 1 } };
    x = conv_bn(b, x, "conv1", "bn1", "act1", 6, 1, 16, 3, 1, 1);
    int cin = 16;
    for (int i = 0; i < 6; i++) {
        x = inverted_residual(b, x, i, cin, cfg[i][1], cfg[i][2], cfg[i][0]);
        cin = cfg[i][1];
    }
    x = conv_bn(b, x, "conv2", "bn2", "act2", 6, 64, 128, 1, 1, 1);
    x = unary(b, "GlobalAveragePool", x, "pool");
    x = flatten(b, x);
    return linear(b, x, "fc", 128, 10, "logits");
}

int64_t qk_zoo_param_count(const char *arch)
{
    if (!arch)
        return -1;
    if (strcmp(arch, "lenet") == 0)
        return 421738;
    if (strcmp(arch, "resnet8") == 0)
        return 77754;
    if (strcmp(arch, "mobilenetv2s") == 0)
        return 50410;
    return -1;
}

qk_status qk_zoo_build(const char *arch, uint64_t seed, qk_graph **out)
{
    *out = NULL;
    int which = -1;
    for (int i = 0; arch && g_names[i]; i++)
        if (strcmp(arch, g_names[i]) == 0)
            which = i;
    if (which < 0)
        return qk_error(QK_ERR_NOTFOUND, "unknown architecture '%s' (valid: lenet, resnet8, mobilenetv2s)",
                        arch ? arch : "(null)");
    zb b = { 0 };
    b.c6min = b.c6max = -1;
    qk_status st = qk_graph_create(&b.g);
    if (st != QK_OK)
        return st;
    qk_rng_seed(&b.rng, seed);
    b.g->name = qk_strdup(arch);
    if (!b.g->name)
        b.st = QK_ERR_NOMEM;
    int x = -1;
    if (b.st == QK_OK)
        x = qk_graph_add_input(b.g, "input", QK_F32, 4, (const int64_t[]){ -1, 1, 28, 28 });
    if (x < 0 && b.st == QK_OK)
        b.st = QK_ERR_NOMEM;
    int y = -1;
    if (b.st == QK_OK)
        y = which == 0 ? build_lenet(&b, x) : which == 1 ? build_resnet8(&b, x) : build_mobilenetv2s(&b, x);
    if (b.st == QK_OK && y < 0)
        b.st = QK_ERR_NOMEM;
    if (b.st == QK_OK)
        b.st = qk_graph_add_output(b.g, y);
    if (b.st == QK_OK)
        b.st = qk_graph_set_meta(b.g, "qkit.arch", arch);
    if (b.st == QK_OK)
        b.st = qk_graph_set_norm(b.g, QK_NORM_FASHION_MEAN, QK_NORM_FASHION_STD);
    if (b.st == QK_OK)
        b.st = qk_graph_sort(b.g);
    if (b.st != QK_OK) {
        qk_graph_destroy(b.g);
        return qk_error_context(b.st, "model zoo: building %s", arch);
    }
    *out = b.g;
    return QK_OK;
}
