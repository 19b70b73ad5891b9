/* Post-training quantization on Fashion-MNIST (ptq.h, the hooks of quant.h):
 *   3. calibration (set size errors) and the accuracy budgets: W8A8 within
 *      1 point of float for tensorrt / fbgemm / snpe, W16A16 within 0.2;
 *   4. the QDQ file: structure, metadata, bit-exact agreement with the
 *      in-memory fake quantization, Clip under 8 bits, refusal of
 *      activation bit allocation;
 *   5. custom quantizer hooks: min-max + fake quant re-implemented through
 *      the hook API against the built-in observer, a weight preprocess, a
 *      failing hook;
 *   7. bias correction moves the layer output means towards the float ones.
 * The float model is models/<arch>.onnx (directory $QKIT_MODELS, default
 * "models"; resnet8, else lenet) when present, otherwise a zoo lenet trained
 * here for 60 steps: the float-vs-quantized accuracy budgets then print an
 * "info:" line instead (a model that far from convergence is not what they
 * are about). Without the Fashion-MNIST package everything here is skipped
 * with an "info:" line. */
#include "ptq_fx.h"

static qk_dataset train_ds, test_ds; /* Fashion-MNIST */

/* ------------------------------------------------------------ models */

/* The float model: $QKIT_MODELS/<arch>.onnx, or (trained == NULL) none. */
static qk_graph *load_shipped(const char *arch)
{
    const char *dir = getenv("QKIT_MODELS");
    char p[512];
    snprintf(p, sizeof p, "%s/%s.onnx", dir && *dir ? dir : "models", arch);
    if (access(p, R_OK) != 0)
        return NULL;
    qk_graph *g = NULL;
    QT_CHECK(qk_onnx_load(p, &g) == QK_OK, "load %s: %s", p, qk_last_error());
    return g;
}

static char model_path[512]; /* the float model parts 3-5 and 7 use */
static int model_shipped;

/* models/resnet8.onnx, else models/lenet.onnx, else a zoo lenet trained for
 * 60 steps of 64 images (~75% top-1: enough for the relative checks). */
static int pick_model(void)
{
    static const char *const arch[] = { "resnet8", "lenet" };
    for (int i = 0; i < 2; i++) {
        qk_graph *g = load_shipped(arch[i]);
        if (g) {
            const char *dir = getenv("QKIT_MODELS");
            snprintf(model_path, sizeof model_path, "%s/%s.onnx", dir && *dir ? dir : "models", arch[i]);
            model_shipped = 1;
            qk_graph_destroy(g);
            printf("info: PTQ on real data uses %s\n", model_path);
            return 1;
        }
    }
    qk_graph *g;
    if (qk_zoo_build("lenet", 3, &g) != QK_OK)
        return 0;
    qk_train_config tc;
    qk_train_config_default(&tc);
    tc.epochs = 1;
    tc.epoch_steps = 60;
    tc.batch = 64;
    tc.progress = 0;
    tc.aug = (qk_augment){ 0, 0 };
    qk_train_result r;
    qk_status st = qk_train(g, &train_ds, NULL, &tc, pool, &r);
    QT_CHECK(st == QK_OK, "quick lenet training: %s", qk_last_error());
    snprintf(model_path, sizeof model_path, "%s/lenet_quick.onnx", tmpdir);
    if (st == QK_OK)
        QT_OK(st = qk_onnx_save(g, model_path));
    qk_graph_destroy(g);
    printf("info: no models/resnet8.onnx or models/lenet.onnx ($QKIT_MODELS): PTQ on real data uses a lenet trained "
           "for 60 steps; the float-vs-quantized accuracy budgets are skipped\n");
    return st == QK_OK;
}

static qk_graph *load_model(void)
{
    qk_graph *g = NULL;
    QT_CHECK(qk_onnx_load(model_path, &g) == QK_OK, "load %s: %s", model_path, qk_last_error());
    return g;
}

static qk_norm model_norm(const qk_graph *g)
{
    qk_norm n = qk_norm_default();
    qk_graph_get_norm(g, &n.mean, &n.std); /* the default when absent */
    return n;
}

/* Prepare the model with c and calibrate on the first n training images. */
static qk_qmodel *ptq_model(const qk_ptq_config *c, int64_t n)
{
    qk_graph *g = load_model();
    if (!g)
        return NULL;
    qk_norm norm = model_norm(g);
    qk_qmodel *m = NULL;
    qk_status st = qk_ptq_prepare(g, c, &m);
    QT_CHECK(st == QK_OK, "prepare (%s): %s", c->backend->name, qk_last_error());
    if (st != QK_OK)
        return NULL;
    st = qk_ptq_calibrate(m, &train_ds, norm, n, pool, NULL, NULL);
    QT_CHECK(st == QK_OK, "calibrate (%s): %s", c->backend->name, qk_last_error());
    if (st != QK_OK) {
        qk_qmodel_destroy(m);
        return NULL;
    }
    return m;
}

/* ------------------------------------------------------------ 3. calibration */

static double float_top1;
static qk_dataset test1k;

static void test_calibration(void)
{
    qk_graph *g = load_model();
    if (!g)
        return;
    qk_norm norm = model_norm(g);
    float_top1 = top1(g, &test1k, norm);
    QT_CHECK(float_top1 > 0.6, "float model top-1 %.3f", float_top1);
    /* a calibration set smaller than asked */
    qk_ptq_config c = cfg_for("tensorrt");
    qk_qmodel *m;
    QT_OK(qk_ptq_prepare(g, &c, &m));
    qk_dataset small = qk_dataset_view(&train_ds, 0, 100);
    qk_status st = qk_ptq_calibrate(m, &small, norm, 256, pool, NULL, NULL);
    QT_CHECK(st == QK_ERR_ARG && has_str(qk_last_error(), "256") && has_str(qk_last_error(), "100"),
             "calibration set of 100 for 256 images: %s", qk_last_error());
    QT_CHECK(qk_ptq_calibrate(m, &small, norm, 0, pool, NULL, NULL) == QK_ERR_ARG, "0 calibration images");
    QT_CHECK(qk_ptq_convert_qdq(m) == QK_ERR_STATE, "QDQ before calibration: %s", qk_last_error());
    qk_qmodel_destroy(m);

    static const char *const be[] = { "tensorrt", "fbgemm", "snpe" };
    for (int i = 0; i < 3; i++) {
        c = cfg_for(be[i]);
        m = ptq_model(&c, 256);
        if (!m)
            continue;
        double t = top1(qk_qmodel_graph(m), &test1k, norm);
        printf("info: %s W8A8 top-1 %.1f%% (float %.1f%%)\n", be[i], 100 * t, 100 * float_top1);
        if (SANITIZED)
            ;
        else if (model_shipped)
            QT_CHECK(fabs(t - float_top1) <= 0.01 + 1e-9, "%s W8A8 within 1 point of float: %.3f vs %.3f", be[i],
                     t, float_top1);
        else
            QT_CHECK(t > float_top1 - 0.05, "%s W8A8 on the quick model: %.3f vs %.3f", be[i], t, float_top1);
        qk_qmodel_destroy(m);
    }
    /* W16A16: 16-bit weights and activations are all but lossless */
    c = cfg_for("academic");
    c.wbits = c.abits = 16;
    m = ptq_model(&c, 256);
    if (m) {
        double t = top1(qk_qmodel_graph(m), &test1k, norm);
        QT_CHECK(SANITIZED || fabs(t - float_top1) <= 0.002 + 1e-9, "academic W16A16 within 0.2 points: %.3f vs %.3f",
                 t, float_top1);
        qk_qmodel_destroy(m);
    }
}

/* ------------------------------------------------------------ 4. QDQ */

static const qk_value *find_init(const qk_graph *g, const char *name)
{
    int v = qk_graph_find_value(g, name);
    return v >= 0 && (g->values[v].kind == QK_VALUE_CONST || g->values[v].kind == QK_VALUE_PARAM) ? &g->values[v]
                                                                                                   : NULL;
}

static const char *meta(const qk_graph *g, const char *k)
{
    const char *v = qk_graph_get_meta(g, k);
    return v ? v : "";
}

/* Save c's calibrated model, reload it, compare with the in-memory fake
 * quantization: top-1 on 1000 images and logits on 256, both exactly.
 * Tolerance 0 by design: weights are stored as the integer codes the
 * in-memory model dequantizes ((q - z) s in float32 both ways), and the
 * in-memory activation fake quant divides x / s in float32, rounds half to
 * even and clamps to the container (or the Clip range) exactly as
 * QuantizeLinear [-> Clip] -> DequantizeLinear does. */
static void check_qdq(const qk_ptq_config *c, const char *tag, int expect_clips)
{
    qk_qmodel *m = ptq_model(c, 128);
    if (!m)
        return;
    qk_graph *g = qk_qmodel_graph(m);
    qk_norm norm = model_norm(g);
    double t_mem = top1(g, &test1k, norm);
    float *y_mem = forward_n(g, &test1k, 256, norm);
    int nw = count_sites(m, 1), na = count_sites(m, 0);
    /* expected weight codes of one quantized layer */
    const qk_qsite *sites;
    int ns = qk_qmodel_sites(m, &sites), n_small = 0;
    for (int i = 0; i < ns; i++)
        n_small += !sites[i].is_weight && sites[i].qp.bits < 8;
    char path[400];
    snprintf(path, sizeof path, "%s/qdq_%s.onnx", tmpdir, tag);
    QT_OK(qk_ptq_save_qdq(m, path));
    qk_graph *r = NULL;
    QT_OK(qk_onnx_load(path, &r));
    if (!r || !y_mem) {
        free(y_mem);
        qk_graph_destroy(r);
        qk_qmodel_destroy(m);
        return;
    }
    QT_CHECK(r->opset >= 13, "%s: opset %lld", tag, (long long)r->opset);
    QT_CHECK(count_op(r, "FakeQuant") == 0, "%s: no FakeQuant in the file", tag);
    QT_CHECK(count_op(r, "QuantizeLinear") == na, "%s: %d QuantizeLinear for %d activation sites", tag,
             count_op(r, "QuantizeLinear"), na);
    QT_CHECK(count_op(r, "DequantizeLinear") == na + nw, "%s: %d DequantizeLinear for %d sites", tag,
             count_op(r, "DequantizeLinear"), na + nw);
    qk_graph *f = load_model();
    int clips0 = f ? count_op(f, "Clip") : 0; /* ReLU6 */
    qk_graph_destroy(f);
    QT_CHECK(count_op(r, "Clip") == clips0 + n_small && (!expect_clips || n_small > 0),
             "%s: one Clip between Q and DQ for each of the %d sub-8-bit activation sites (%d Clip, %d in the float "
             "model)", tag, n_small, count_op(r, "Clip"), clips0);
    /* weights: <W>_quantized int8/uint8 with the float weight's shape */
    for (int i = 0; i < ns; i++) {
        if (!sites[i].is_weight)
            continue;
        char nm[300];
        snprintf(nm, sizeof nm, "%s_quantized", sites[i].value);
        const qk_value *q = find_init(r, nm);
        qk_dtype want = sites[i].qp.is_signed ? QK_I8 : QK_U8;
        QT_CHECK(q && q->t.dtype == want, "%s: initializer %s of type %s", tag, nm, want == QK_I8 ? "int8" : "uint8");
        snprintf(nm, sizeof nm, "%s_scale", sites[i].value);
        const qk_value *s = find_init(r, nm);
        QT_CHECK(s && s->t.dtype == QK_F32, "%s: %s", tag, nm);
        if (q && s && sites[i].qp.per_channel)
            QT_CHECK(s->t.ndim == 1 && s->t.dims[0] == q->t.dims[0], "%s: per-channel scale of %s", tag, nm);
        if (q && q->t.dtype == QK_I8 && sites[i].qp.bits < 8) {
            int32_t lo = 0, hi = 0;
            for (int64_t j = 0; j < qk_tensor_numel(&q->t); j++) {
                int8_t v = ((const int8_t *)q->t.data)[j];
                lo = v < lo ? v : lo;
                hi = v > hi ? v : hi;
            }
            int32_t qmax = (1 << (sites[i].qp.bits - 1)) - 1;
            QT_CHECK(lo >= -qmax - 1 && hi <= qmax, "%s: %d-bit codes of %s in range [%d, %d]", tag, sites[i].qp.bits,
                     sites[i].value, lo, hi);
        }
    }
    QT_CHECK(!strcmp(meta(r, "qkit.quantized"), "1") && !strcmp(meta(r, "qkit.backend"), c->backend->name),
             "%s: metadata quantized/backend", tag);
    char wb[16], ab[16];
    snprintf(wb, sizeof wb, "%d", c->wbits ? c->wbits : 8);
    snprintf(ab, sizeof ab, "%d", c->abits ? c->abits : c->backend->abits_default);
    QT_CHECK(!strcmp(meta(r, "qkit.wbits"), wb) && !strcmp(meta(r, "qkit.abits"), ab), "%s: metadata bits %s %s", tag,
             meta(r, "qkit.wbits"), meta(r, "qkit.abits"));
    QT_CHECK(!strcmp(meta(r, "qkit.arith"), qk_arith_name(c->backend->arith)) && *meta(r, "qkit.w_observer") &&
             *meta(r, "qkit.a_observer") && !strcmp(meta(r, "qkit.bit_alloc"), "none") &&
             !strcmp(meta(r, "qkit.bias_correct"), "0") && *meta(r, "qkit.norm.mean"),
             "%s: metadata arith/observers/bit_alloc/bias_correct/norm", tag);
    double t_file = top1(r, &test1k, norm);
    QT_CHECK(t_file == t_mem, "%s: QDQ file top-1 %.4f == in-memory fake quant %.4f", tag, t_file, t_mem);
    float *y_file = forward_n(r, &test1k, 256, norm);
    int64_t diff = 0;
    for (int64_t j = 0; y_file && j < 2560; j++)
        diff += y_file[j] != y_mem[j];
    QT_CHECK(y_file && diff == 0, "%s: QDQ file logits bit-identical to the in-memory model (%lld differ)", tag,
             (long long)diff);
    /* the converted in-memory graph still computes the same */
    float *y_conv = forward_n(qk_qmodel_graph(m), &test1k, 64, norm);
    QT_CHECK(y_conv && !memcmp(y_conv, y_mem, 640 * sizeof(float)), "%s: converted graph logits", tag);
    free(y_conv);
    free(y_mem);
    free(y_file);
    qk_graph_destroy(r);
    qk_qmodel_destroy(m);
}

static void test_qdq(void)
{
    qk_ptq_config c = cfg_for("tensorrt");
    check_qdq(&c, "tensorrt", 0);
    c = cfg_for("snpe"); /* uint8 weights */
    check_qdq(&c, "snpe", 0);
    c = cfg_for("academic");
    c.wbits = c.abits = 4;
    check_qdq(&c, "academic_w4a4", 1);

    /* activation bit allocation: simulation only, no file */
    c = cfg_for("academic");
    c.wbits = c.abits = 4;
    c.bit_alloc = QK_BITALLOC_A;
    qk_qmodel *m = ptq_model(&c, 128);
    if (m) {
        char path[400];
        snprintf(path, sizeof path, "%s/bitalloc_a.onnx", tmpdir);
        qk_status st = qk_ptq_save_qdq(m, path);
        QT_CHECK(st == QK_ERR_UNSUPPORTED && has_str(qk_last_error(), "no QDQ form") && access(path, F_OK) != 0,
                 "activation bit allocation refuses to write a file: %s", qk_last_error());
        float *y = forward_n(qk_qmodel_graph(m), &test1k, 64, model_norm(qk_qmodel_graph(m)));
        int ok = y != NULL, right = 0;
        for (int j = 0; y && j < 64; j++) {
            int best = 0;
            for (int k = 0; k < 10; k++) {
                ok &= isfinite(y[j * 10 + k]);
                best = y[j * 10 + k] > y[j * 10 + best] ? k : best;
            }
            right += best == test1k.labels[j];
        }
        QT_CHECK(ok && right >= 24, "bit-allocated W4A4 still simulates (%d of 64 right)", right);
        free(y);
        qk_qmodel_destroy(m);
    }
    /* weight bit allocation has a QDQ form (per-channel codes in int8) */
    c.bit_alloc = QK_BITALLOC_W;
    m = ptq_model(&c, 128);
    if (m) {
        char path[400];
        snprintf(path, sizeof path, "%s/bitalloc_w.onnx", tmpdir);
        QT_OK(qk_ptq_save_qdq(m, path));
        qk_graph *r = NULL;
        QT_OK(qk_onnx_load(path, &r));
        QT_CHECK(r && !strcmp(meta(r, "qkit.bit_alloc"), "w"), "bit_alloc metadata");
        qk_graph_destroy(r);
        qk_qmodel_destroy(m);
    }
}

/* ------------------------------------------------------------ 5. hooks */

/* Min-max calibration + fake quantization through the hook API: one entry
 * per tensor name with the running min / max seen while calibrating. */
typedef struct mm_entry {
    char name[160];
    float mn, mx;
    int seen;
} mm_entry;

typedef struct mm_hook {
    mm_entry e[64];
    int n;
    int64_t calib_calls, quant_calls, weight_calls;
    int bad_name;
} mm_hook;

static mm_entry *mm_get(mm_hook *h, const char *name)
{
    for (int i = 0; i < h->n; i++)
        if (!strcmp(h->e[i].name, name))
            return &h->e[i];
    if (h->n == 64)
        return NULL;
    mm_entry *e = &h->e[h->n++];
    snprintf(e->name, sizeof e->name, "%s", name);
    e->seen = 0;
    return e;
}

static qk_status mm_act(void *ctx, const qk_hook_call *call, const qk_tensor *x, qk_tensor *y)
{
    mm_hook *h = ctx;
    mm_entry *e = mm_get(h, call->tensor_name);
    if (!e)
        return qk_error(QK_ERR_NOMEM, "mm hook: too many sites");
    h->bad_name |= call->is_weight || !call->tensor_name[0];
    int64_t n = qk_tensor_numel(x);
    const float *p = qk_f32(x);
    if (call->calibrating) {
        h->calib_calls++;
        for (int64_t i = 0; i < n; i++) {
            if (!e->seen || p[i] < e->mn)
                e->mn = p[i];
            if (!e->seen || p[i] > e->mx)
                e->mx = p[i];
            e->seen = 1;
        }
        memcpy(y->data, x->data, (size_t)n * sizeof(float));
        return QK_OK;
    }
    h->quant_calls++;
    if (!e->seen)
        return qk_error(QK_ERR_STATE, "mm hook: '%s' was never calibrated", call->tensor_name);
    float s;
    int32_t z;
    qk_status st = qk_qparams_compute(call->qp, e->mn, e->mx, &s, &z);
    return st != QK_OK ? st : qk_fake_quant(call->qp, 1, &s, &z, x, y, NULL);
}

/* Weight preprocess: clip every weight to +-clip (PaddleSlim-style). */
static qk_status clip_weights(void *ctx, const qk_hook_call *call, const qk_tensor *x, qk_tensor *y)
{
    mm_hook *h = ctx;
    float c = 0.02f;
    h->weight_calls++;
    h->bad_name |= !call->is_weight || !strstr(call->tensor_name, "weight");
    for (int64_t i = 0; i < qk_tensor_numel(x); i++) {
        float v = qk_f32(x)[i];
        qk_f32(y)[i] = v > c ? c : v < -c ? -c : v;
    }
    return QK_OK;
}

static qk_status failing_hook(void *ctx, const qk_hook_call *call, const qk_tensor *x, qk_tensor *y)
{
    (void)ctx;
    (void)x;
    (void)y;
    return qk_error(QK_ERR_NUMERIC, "custom hook refuses '%s'", call->tensor_name);
}

static void test_hooks(void)
{
    qk_quant_hooks hk;
    memset(&hk, 0, sizeof hk);
    QT_CHECK(qk_quant_hooks_register(&hk, QK_HOOK_COUNT, mm_act, NULL) == QK_ERR_ARG, "bad hook kind");
    QT_CHECK(qk_quant_hooks_register(NULL, QK_HOOK_ACT_QUANTIZE, mm_act, NULL) == QK_ERR_ARG, "NULL table");

    /* built-in minmax (academic W8A8: uint8 affine, per-tensor, minmax) */
    qk_ptq_config c = cfg_for("academic");
    c.a_observer = "minmax";
    qk_qmodel *mb = ptq_model(&c, 256);
    mm_hook *h = calloc(1, sizeof *h);
    QT_OK(qk_quant_hooks_register(&hk, QK_HOOK_ACT_QUANTIZE, mm_act, h));
    c.hooks = &hk;
    qk_qmodel *mh = ptq_model(&c, 256);
    if (!mb || !mh) {
        qk_qmodel_destroy(mb);
        qk_qmodel_destroy(mh);
        free(h);
        return;
    }
    qk_norm norm = model_norm(qk_qmodel_graph(mb));
    QT_CHECK(h->n == count_sites(mh, 0) && !h->bad_name, "hook saw the %d activation sites by name (%d)",
             count_sites(mh, 0), h->n);
    QT_CHECK(h->calib_calls == (int64_t)h->n * 2 && h->quant_calls == 0,
             "calibration: 2 batches of 128 per site with calibrating = 1 (%lld calls)", (long long)h->calib_calls);
    double tb = top1(qk_qmodel_graph(mb), &test1k, norm), th = top1(qk_qmodel_graph(mh), &test1k, norm);
    QT_CHECK(h->quant_calls > 0, "hook quantizes after calibration");
    float *yb = forward_n(qk_qmodel_graph(mb), &test1k, 256, norm), *yh = forward_n(qk_qmodel_graph(mh), &test1k, 256, norm);
    double maxd = 0, maxa = 0;
    int64_t ndiff = 0;
    for (int64_t j = 0; yb && yh && j < 2560; j++) {
        double d = fabs((double)yb[j] - yh[j]);
        maxd = d > maxd ? d : maxd;
        maxa = fabs(yb[j]) > maxa ? fabs(yb[j]) : maxa;
        ndiff += d != 0;
    }
    printf("info: hook min-max vs built-in: top-1 %.4f vs %.4f, %lld of 2560 logits differ, max |diff| %.3g "
           "(max |logit| %.3g)\n", th, tb, (long long)ndiff, maxd, maxa);
    /* Same (s, z) at every site (the hook's float min/max = the observer's).
     * The hook fake-quantizes with qk_fake_quant (x * (1/s), PyTorch) while
     * the built-in path divides (x / s, ONNX QuantizeLinear): the two differ
     * by one code only for inputs within an ulp of a rounding tie, rare
     * events whose effect on a logit is a few LSBs of one activation scaled
     * through the network: budget 1e-2 of the logit range, and at most 2 of
     * 1000 top-1 decisions. */
    QT_CHECK(yb && yh && maxd <= 1e-2 * (maxa > 1 ? maxa : 1), "hook logits match the built-in (max diff %.3g)", maxd);
    QT_CHECK(fabs(tb - th) * (double)test1k.n <= 2.0 + 1e-6, "hook top-1 %.4f vs built-in %.4f", th, tb);
    free(yb);
    free(yh);
    /* the QDQ file of a hooked site has no QuantizeLinear: simulated */
    QT_OK(qk_ptq_convert_qdq(mh));
    QT_CHECK(count_op(qk_qmodel_graph(mh), "QuantizeLinear") == 0, "hooked activation sites are simulation only");
    qk_qmodel_destroy(mh);

    /* a weight preprocess (clip to +-0.02) changes the result */
    mm_hook *hw = calloc(1, sizeof *hw);
    memset(&hk, 0, sizeof hk);
    QT_OK(qk_quant_hooks_register(&hk, QK_HOOK_WEIGHT_PREPROCESS, clip_weights, hw));
    c.hooks = &hk;
    mh = ptq_model(&c, 256);
    if (mh) {
        QT_CHECK(hw->weight_calls == count_sites(mh, 1) && !hw->bad_name, "weight preprocess once per weight (%lld)",
                 (long long)hw->weight_calls);
        yb = forward_n(qk_qmodel_graph(mb), &test1k, 64, norm);
        yh = forward_n(qk_qmodel_graph(mh), &test1k, 64, norm);
        double d = 0;
        for (int64_t j = 0; yb && yh && j < 640; j++)
            d += fabs((double)yb[j] - yh[j]);
        QT_CHECK(yb && yh && d > 1.0, "clipped weights change the logits (sum |diff| %.3g)", d);
        free(yb);
        free(yh);
        qk_qmodel_destroy(mh);
    }
    /* a failing hook fails calibration with its error */
    memset(&hk, 0, sizeof hk);
    QT_OK(qk_quant_hooks_register(&hk, QK_HOOK_ACT_PREPROCESS, failing_hook, NULL));
    qk_graph *g = load_model();
    qk_qmodel *mf = NULL;
    if (g && qk_ptq_prepare(g, &c, &mf) == QK_OK) {
        qk_status st = qk_ptq_calibrate(mf, &train_ds, norm, 64, pool, NULL, NULL);
        QT_CHECK(st == QK_ERR_NUMERIC && has_str(qk_last_error(), "custom hook refuses"),
                 "failing hook: %s: %s", qk_status_str(st), qk_last_error());
        QT_CHECK(qk_ptq_convert_qdq(mf) == QK_ERR_STATE, "not calibrated after the failure");
        /* the observers hold the failed run's data: no second calibration on top of it */
        st = qk_ptq_calibrate(mf, &train_ds, norm, 64, pool, NULL, NULL);
        QT_CHECK(st == QK_ERR_STATE && has_str(qk_last_error(), "failed part way"),
                 "calibrating again after a failure: %s: %s", qk_status_str(st), qk_last_error());
    }
    qk_qmodel_destroy(mf);
    free(hw);
    free(h);
    qk_qmodel_destroy(mb);
}

/* ------------------------------------------------------------ 7. bias correction */

/* Sum over layers and channels of (mean_q - mean_f)^2 of each weighted
 * layer's output on n calibration images (names shared by the float and
 * the academic graph, which keeps BN). */
static double mean_err(qk_graph *gq, qk_graph *gf, int64_t n, qk_norm norm, int *layers)
{
    float *a = forward_n(gq, &train_ds, n, norm), *b = forward_n(gf, &train_ds, n, norm);
    double err = 0;
    *layers = 0;
    for (int k = 0; a && b && k < gf->n_nodes; k++) {
        const qk_node *nd = &gf->nodes[k];
        if (strcmp(nd->op_type, "Conv") && strcmp(nd->op_type, "Gemm"))
            continue;
        const qk_value *vf = &gf->values[nd->out[0]];
        int vq = qk_graph_find_value(gq, vf->name);
        if (vq < 0 || qk_tensor_numel(&gq->values[vq].t) != qk_tensor_numel(&vf->t))
            continue;
        int64_t C = vf->t.dims[1], inner = qk_tensor_numel(&vf->t) / (n * C);
        for (int64_t ch = 0; ch < C; ch++) {
            double sf = 0, sq = 0;
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < inner; j++) {
                    sf += qk_f32(&vf->t)[(i * C + ch) * inner + j];
                    sq += qk_f32(&gq->values[vq].t)[(i * C + ch) * inner + j];
                }
            double d = (sq - sf) / (double)(n * inner);
            err += d * d;
        }
        (*layers)++;
    }
    free(a);
    free(b);
    return err;
}

static void test_bias_correction(void)
{
    qk_ptq_config c = cfg_for("academic");
    c.wbits = c.abits = 4;
    qk_qmodel *m0 = ptq_model(&c, 256);
    c.bias_correct = 1;
    qk_qmodel *m1 = ptq_model(&c, 256);
    qk_graph *gf = load_model();
    if (!m0 || !m1 || !gf) {
        qk_qmodel_destroy(m0);
        qk_qmodel_destroy(m1);
        qk_graph_destroy(gf);
        return;
    }
    qk_norm norm = model_norm(gf);
    int l0, l1;
    double e0 = mean_err(qk_qmodel_graph(m0), gf, 256, norm, &l0), e1 = mean_err(qk_qmodel_graph(m1), gf, 256, norm, &l1);
    double t0 = top1(qk_qmodel_graph(m0), &test1k, norm), t1 = top1(qk_qmodel_graph(m1), &test1k, norm);
    printf("info: W4A4 bias correction: output-mean error %.4g -> %.4g over %d layers, top-1 %.1f%% -> %.1f%%\n", e0,
           e1, l1, 100 * t0, 100 * t1);
    QT_CHECK(l0 >= 4 && l0 == l1, "layers compared: %d", l0);
    QT_CHECK(e1 < 0.7 * e0, "bias correction brings the layer output means closer to float: %.4g -> %.4g", e0, e1);
    QT_CHECK(SANITIZED || t1 >= t0 - 0.005, "bias correction does not cost accuracy: %.3f -> %.3f", t0, t1);
    /* the biases (or the BN means of bias-free convs) moved; the float values are untouched */
    qk_graph *g0 = qk_qmodel_graph(m0), *g1 = qk_qmodel_graph(m1);
    int changed = 0, same0 = 1, compared = 0;
    for (int v = 0; v < gf->n_values; v++) {
        const qk_value *x = &gf->values[v];
        size_t l = strlen(x->name);
        int is_bias = (l > 5 && !strcmp(x->name + l - 5, ".bias") && strstr(x->name, "fc")) ||
                      (l > 13 && !strcmp(x->name + l - 13, ".running_mean"));
        if (!is_bias || x->t.dtype != QK_F32)
            continue;
        int v0 = qk_graph_find_value(g0, x->name), v1 = qk_graph_find_value(g1, x->name);
        if (v0 < 0 || v1 < 0)
            continue;
        compared++;
        /* fc biases are on the engine's grid in both models (moved by less than a grid step
           without correction); BN means are the float ones unless corrected */
        int on_grid = !strcmp(x->name + l - 5, ".bias");
        for (int64_t j = 0; j < qk_tensor_numel(&x->t); j++) {
            changed += qk_f32(&g1->values[v1].t)[j] != qk_f32(&g0->values[v0].t)[j];
            same0 &= on_grid || qk_f32(&g0->values[v0].t)[j] == qk_f32(&x->t)[j];
        }
    }
    QT_CHECK(compared >= 2 && changed > 0 && same0, "biases changed with correction only (%d tensors, %d values moved)",
             compared, changed);
    qk_qmodel_destroy(m0);
    qk_qmodel_destroy(m1);
    qk_graph_destroy(gf);
}

int main(void)
{
    fx_begin("qkit_ptq_calib");
    if (qk_dataset_load_dir(NULL, "train", &train_ds) != QK_OK ||
        qk_dataset_load_dir(NULL, "t10k", &test_ds) != QK_OK) {
        printf("info: Fashion-MNIST not installed (%s): PTQ checks on real data skipped\n", qk_last_error());
    } else if (pick_model()) {
        test1k = qk_dataset_view(&test_ds, 0, SANITIZED ? 256 : 1000);
        if (SANITIZED)
            printf("info: sanitizer build: 256 test images, accuracy budgets skipped (they run in the plain build)\n");
        RUN(test_calibration);
        RUN(test_qdq);
        RUN(test_hooks);
        RUN(test_bias_correction);
    }
    qk_dataset_free(&train_ds);
    qk_dataset_free(&test_ds);
    fx_end();
    return qt_finish("test_ptq_calib");
}
