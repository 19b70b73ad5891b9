/* Model zoo: every architecture builds, binds, plans (eval and training),
 * runs forward with output [N,10] (training through test_train); parameter counts equal PyTorch's
 * (computed by hand from the layouts in src/zoo/zoo.c below); names/no_decay/initialization
 * follow the documented PyTorch layout; and with the PyTorch peer's weights
 * (tests/data/torch/<arch>.onnx, initializers named as the state_dict) the
 * zoo graph reproduces PyTorch's logits (tests/data/torch/<arch>/output_0.pb).
 *
 * Hand counts (weights + BN scale/bias + linear biases):
 *   lenet:  conv1 32*1*9 = 288, bn1 64, conv2 64*32*9 = 18,432, bn2 128,
 *           fc1 128*3136 + 128 = 401,536, fc2 128*10 + 10 = 1,290 -> 421,738
 *   resnet8: stem 144 + 32 = 176; layer1 2*(2,304 + 32) = 4,672;
 *           layer2 4,608 + 64 + 9,216 + 64 + 512 + 64 = 14,528;
 *           layer3 18,432 + 128 + 36,864 + 128 + 2,048 + 128 = 57,728;
 *           fc 650 -> 77,754
 *   mobilenetv2s: stem 176; blocks 464 + 3,440 + 5,904 + 6,688 + 9,920 +
 *           14,080 = 40,496; conv2 8,192 + bn2 256; fc 1,290 -> 50,410 */
#include "qkit/registry.h"
#include "qkit/onnx.h"
#include "qkit/ops.h"
#include "qkit/zoo.h"
#include "qt.h"

#include <string.h>

static const int64_t k_counts[3] = { 421738, 77754, 50410 };
static const int64_t k_bn_stats[3] = { 192, 672, 2752 }; /* running mean + var values */

static void check_value(qk_graph *g, const char *name, qk_value_kind kind, int no_decay, int ndim,
                        const int64_t *dims)
{
    int v = qk_graph_find_value(g, name);
    QT_CHECK(v >= 0, "value %s missing", name);
    if (v < 0)
        return;
    qk_value *x = &g->values[v];
    QT_CHECK(x->kind == kind && x->no_decay == no_decay, "%s: kind %d no_decay %d", name, x->kind, x->no_decay);
    int ok = x->t.ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = x->t.dims[i] == dims[i];
    QT_CHECK(ok, "%s: shape", name);
}

/* Replace the zoo's initializers by the ONNX file's (by name, shapes equal);
 * returns the number copied. */
static int copy_inits(qk_graph *dst, const qk_graph *src)
{
    int copied = 0;
    for (int i = 0; i < dst->n_values; i++) {
        qk_value *d = &dst->values[i];
        if (d->kind != QK_VALUE_PARAM && d->kind != QK_VALUE_CONST)
            continue;
        if (strncmp(d->name, "relu6.", 6) == 0)
            continue; /* torch exports its own Clip constants */
        int j = qk_graph_find_value(src, d->name);
        QT_CHECK(j >= 0, "peer model lacks %s", d->name);
        if (j < 0)
            continue;
        const qk_value *s = &src->values[j];
        QT_CHECK(qk_shape_equal(&d->t, &s->t), "%s: shape differs from the peer's", d->name);
        if (!qk_shape_equal(&d->t, &s->t))
            continue;
        memcpy(d->t.data, s->t.data, qk_tensor_bytes(&d->t));
        copied++;
    }
    return copied;
}

static void golden(const char *arch, qk_graph *g, qk_pool *pool)
{
    char path[256], in_p[256], out_p[256];
    snprintf(path, sizeof path, "tests/data/torch/%s.onnx", arch);
    snprintf(in_p, sizeof in_p, "tests/data/torch/%s/input_0.pb", arch);
    snprintf(out_p, sizeof out_p, "tests/data/torch/%s/output_0.pb", arch);
    qk_graph *peer = NULL;
    qk_tensor x = { 0 }, want = { 0 };
    if (qk_onnx_load(path, &peer) != QK_OK || qk_onnx_load_tensor(in_p, &x, NULL) != QK_OK ||
        qk_onnx_load_tensor(out_p, &want, NULL) != QK_OK) {
        QT_CHECK(0, "%s: golden fixture unreadable: %s", arch, qk_last_error());
        goto done;
    }
    int copied = copy_inits(g, peer);
    QT_CHECK(copied > 0, "%s: nothing copied", arch);
    int nin = 0;
    qk_tensor *outs = NULL;
    QT_OK(qk_onnx_run(g, 1, &x, pool, &nin, &outs));
    if (outs) {
        QT_CHECK(qk_shape_equal(&outs[0], &want), "%s: logits shape", arch);
        double maxd = 0;
        for (int64_t i = 0; i < qk_tensor_numel(&want); i++) {
            double d = fabs(qk_f32(&outs[0])[i] - qk_f32(&want)[i]);
            maxd = d > maxd ? d : maxd;
        }
        /* float32 sums in a different order than PyTorch's: ~1e-6 relative on O(1) logits */
        QT_CHECK(maxd < 1e-4, "%s: zoo graph with the peer's weights differs from PyTorch by %g", arch, maxd);
        qk_onnx_free_tensors(outs, nin);
    }
done:
    qk_tensor_free(&x);
    qk_tensor_free(&want);
    qk_graph_destroy(peer);
}

int main(void)
{
    qk_pool *pool;
    QT_OK(qk_pool_create(2, &pool));
    const char *const *names = qk_zoo_names();
    int k = 0;
    for (; names[k]; k++) {
        const char *arch = names[k];
        qk_graph *g = NULL;
        QT_OK(qk_zoo_build(arch, 7, &g));
        if (!g)
            continue;
        QT_CHECK(qk_graph_param_count(g) == k_counts[k], "%s: %lld parameters, PyTorch has %lld", arch,
                 (long long)qk_graph_param_count(g), (long long)k_counts[k]);
        QT_CHECK(qk_zoo_param_count(arch) == k_counts[k], "%s: qk_zoo_param_count", arch);
        int64_t consts = 0;
        for (int i = 0; i < g->n_values; i++)
            if (g->values[i].kind == QK_VALUE_CONST && strncmp(g->values[i].name, "relu6.", 6) != 0)
                consts += qk_tensor_numel(&g->values[i].t);
        QT_CHECK(consts == k_bn_stats[k], "%s: %lld BN statistics", arch, (long long)consts);
        QT_CHECK(strcmp(qk_graph_get_meta(g, "qkit.arch"), arch) == 0, "%s: meta arch", arch);
        QT_CHECK(qk_graph_get_meta(g, "qkit.norm.mean") && qk_graph_get_meta(g, "qkit.norm.std"), "norm meta");
        QT_CHECK(g->n_inputs == 1 && strcmp(g->values[g->inputs[0]].name, "input") == 0, "input name");
        QT_CHECK(g->n_outputs == 1 && strcmp(g->values[g->outputs[0]].name, "logits") == 0, "output name");

        /* no_decay exactly on rank-1 params; init bounds 1/sqrt(fan_in) */
        for (int i = 0; i < g->n_values; i++) {
            qk_value *v = &g->values[i];
            if (v->kind != QK_VALUE_PARAM)
                continue;
            QT_CHECK(v->no_decay == (v->t.ndim == 1), "%s: no_decay %d", v->name, v->no_decay);
            if (v->t.ndim < 2)
                continue;
            int64_t fan_in = qk_tensor_numel(&v->t) / v->t.dims[0];
            float bound = 1.0f / sqrtf((float)fan_in), mx = 0;
            double mean = 0;
            int64_t n = qk_tensor_numel(&v->t);
            for (int64_t j = 0; j < n; j++) {
                float a = fabsf(qk_f32(&v->t)[j]);
                mx = a > mx ? a : mx;
                mean += qk_f32(&v->t)[j];
            }
            mean /= (double)n;
            QT_CHECK(mx <= bound && (n < 100 || mx > 0.9f * bound), "%s: max |w| %g, bound %g", v->name, mx, bound);
            QT_CHECK(fabs(mean) < 4.0 * bound / sqrt(3.0 * (double)n) + 1e-6, "%s: mean %g", v->name, mean);
        }

        /* same seed -> same parameters; other seed -> different */
        qk_graph *g2 = NULL, *g3 = NULL;
        QT_OK(qk_zoo_build(arch, 7, &g2));
        QT_OK(qk_zoo_build(arch, 8, &g3));
        if (g2 && g3) {
            int w = qk_graph_find_value(g, "conv1.weight");
            QT_CHECK(memcmp(g->values[w].t.data, g2->values[w].t.data, qk_tensor_bytes(&g->values[w].t)) == 0,
                     "%s: seed determinism", arch);
            QT_CHECK(memcmp(g->values[w].t.data, g3->values[w].t.data, qk_tensor_bytes(&g->values[w].t)) != 0,
                     "%s: seeds differ", arch);
        }
        qk_graph_destroy(g2);
        qk_graph_destroy(g3);

        /* bind, plan for training at 8, forward at 8 and 3 */
        QT_OK(qk_ops_bind(g));
        qk_status st = qk_graph_plan(g, 8, 1, pool);
        QT_CHECK(st == QK_OK, "%s: plan: %s", arch, qk_last_error());
        if (st == QK_OK) {
            qk_value *in = &g->values[g->inputs[0]];
            qk_rng r;
            qk_rng_seed(&r, 3);
            for (int64_t i = 0; i < 8 * 784; i++)
                qk_f32(&in->t)[i] = qk_rng_normal(&r);
            QT_OK(qk_graph_forward(g));
            qk_value *out = &g->values[g->outputs[0]];
            QT_CHECK(out->t.ndim == 2 && out->t.dims[0] == 8 && out->t.dims[1] == 10, "%s: output shape", arch);
            int finite = 1;
            for (int i = 0; i < 80; i++)
                finite &= isfinite(qk_f32(&out->t)[i]);
            QT_CHECK(finite, "%s: finite logits", arch);
            QT_OK(qk_graph_set_batch(g, 3));
            QT_OK(qk_graph_forward(g));
            QT_CHECK(out->t.dims[0] == 3 && out->t.dims[1] == 10, "%s: output shape at batch 3", arch);
        }
        qk_graph_unplan(g);
        golden(arch, g, pool);
        qk_graph_destroy(g);
    }
    QT_CHECK(k == 3, "three archs listed");

    /* names: a few PyTorch state_dict entries and their kinds */
    qk_graph *g = NULL;
    QT_OK(qk_zoo_build("resnet8", 1, &g));
    if (g) {
        check_value(g, "layer2.0.bn1.bias", QK_VALUE_PARAM, 1, 1, (int64_t[]){ 32 });
        check_value(g, "layer2.0.shortcut_conv.weight", QK_VALUE_PARAM, 0, 4, (int64_t[]){ 32, 16, 1, 1 });
        check_value(g, "layer3.0.bn2.running_var", QK_VALUE_CONST, 0, 1, (int64_t[]){ 64 });
        check_value(g, "fc.weight", QK_VALUE_PARAM, 0, 2, (int64_t[]){ 10, 64 });
        QT_CHECK(qk_graph_find_value(g, "layer1.0.shortcut_conv.weight") < 0, "no shortcut in layer1");
        int v = qk_graph_find_value(g, "layer1.0.bn1.running_var");
        QT_CHECK(v >= 0 && qk_f32(&g->values[v].t)[5] == 1.0f, "BN var init 1");
        qk_graph_destroy(g);
    }
    QT_OK(qk_zoo_build("mobilenetv2s", 1, &g));
    if (g) {
        check_value(g, "blocks.3.dw_conv.weight", QK_VALUE_PARAM, 0, 4, (int64_t[]){ 96, 1, 3, 3 });
        check_value(g, "blocks.1.expand_conv.weight", QK_VALUE_PARAM, 0, 4, (int64_t[]){ 64, 16, 1, 1 });
        check_value(g, "blocks.5.project_bn.weight", QK_VALUE_PARAM, 1, 1, (int64_t[]){ 64 });
        QT_CHECK(qk_graph_find_value(g, "blocks.0.expand_conv.weight") < 0, "t=1 has no expand conv");
        int adds = 0;
        for (int i = 0; i < g->n_nodes; i++)
            adds += strcmp(g->nodes[i].op_type, "Add") == 0;
        QT_CHECK(adds == 3, "mobilenetv2s residual adds %d (blocks 0, 2, 4)", adds);
        int dw = qk_graph_find_node(g, "blocks.3.dw_conv");
        QT_CHECK(dw >= 0 && qk_node_int(&g->nodes[dw], "group", 1) == 96, "depthwise group");
        qk_graph_destroy(g);
    }
    QT_OK(qk_zoo_build("lenet", 1, &g));
    if (g) {
        check_value(g, "fc1.weight", QK_VALUE_PARAM, 0, 2, (int64_t[]){ 128, 3136 });
        check_value(g, "fc1.bias", QK_VALUE_PARAM, 1, 1, (int64_t[]){ 128 });
        qk_graph_destroy(g);
    }

    /* unknown arch: error lists the valid names */
    g = NULL;
    qk_status st = qk_zoo_build("vgg16", 1, &g);
    QT_CHECK(st == QK_ERR_NOTFOUND && !g, "unknown arch status %d", st);
    QT_CHECK(strstr(qk_last_error(), "lenet") && strstr(qk_last_error(), "mobilenetv2s") &&
                 strstr(qk_last_error(), "vgg16"),
             "message: %s", qk_last_error());
    QT_CHECK(qk_zoo_param_count("vgg16") == -1, "count of unknown");
    qk_pool_destroy(pool);
    return qt_finish("test_zoo");
}
