/* The flat API for bindings (include/qkit/flat.h): options by name, datasets
 * from arrays, run / info / ptq / evaluate / export with JSON results. The
 * steps are those of the CLI's commands (src/cli/cmd_*.c) without their
 * printing; no logic of its own beyond choosing the preprocessing. */
#include "flat_internal.h"
#include "qkit/deploy.h"
#include "qkit/onnx.h"
#include "qkit/ptq.h"
#include "qkit/qrun.h"
#include "qkit/quant.h"
#include "qkit/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- data ---- */

qk_status qk_flat_data_create(int dtype, int64_t n, int c, int h, int w, const void *data, int nhwc,
                              const int64_t *labels, qk_dataset **out)
{
    if (dtype != QK_U8 && dtype != QK_F32)
        return qk_error(QK_ERR_ARG, "data: images must be uint8 pixels or float32 values (got %s)",
                        qk_dtype_name((qk_dtype)dtype));
    if (!data)
        return qk_error(QK_ERR_ARG, "data: no array");
    qk_dataset *ds = qk_calloc(1, sizeof *ds);
    if (!ds)
        return qk_error(QK_ERR_NOMEM, "data: out of memory");
    qk_status st = dtype == QK_U8 ? qk_dataset_from_u8(n, c, h, w, data, nhwc, labels, ds)
                                  : qk_dataset_from_f32(n, c, h, w, data, nhwc, labels, ds);
    if (st != QK_OK) {
        qk_free(ds);
        return st;
    }
    *out = ds;
    return QK_OK;
}

void qk_flat_data_destroy(qk_dataset *ds)
{
    if (!ds)
        return;
    qk_dataset_free(ds);
    qk_free(ds);
}

/* The preprocessing of ds for model g: float values as they are, uint8
 * pixels as the model's metadata says (else the Fashion-MNIST default);
 * then the options. *explicit_prep: the options set some of it. */
static qk_status flat_norm(const qk_graph *g, const qk_dataset *ds, const qk_flat_opts *o, qk_norm *norm,
                           int *explicit_prep)
{
    qk_norm n = qk_norm_default();
    qk_status st;
    if (ds->fimages) {
        qk_norm id = { .mean = 0.0f, .std = 1.0f, .scale = 1.0f };
        n = id;
    } else {
        float m[QK_MAX_CHANNELS], s[QK_MAX_CHANNELS];
        int nc;
        st = qk_graph_get_norm_ch(g, QK_MAX_CHANNELS, &nc, m, s);
        if (st != QK_OK && st != QK_ERR_NOTFOUND)
            return st;
        if (st == QK_OK) {
            n.mean = m[0];
            n.std = s[0];
            if (nc > 1) {
                n.nc = nc;
                memcpy(n.cmean, m, (size_t)nc * sizeof *m);
                memcpy(n.cstd, s, (size_t)nc * sizeof *s);
            }
        }
        qk_graph_prep gp = { 0 };
        if ((st = qk_graph_get_prep(g, &gp)) != QK_OK)
            return st;
        n.scale = gp.scale;
        n.bgr = gp.bgr;
    }
    int ex = 0;
    if (o && (o->n_mean || o->n_std)) {
        ex = 1;
        int on = n.nc > 0 ? n.nc : 1;
        int c = o->n_mean > o->n_std ? o->n_mean : o->n_std;
        if (o->n_mean > 1 && o->n_std > 1 && o->n_mean != o->n_std)
            return qk_error(QK_ERR_ARG, "options mean and std: %d and %d values", o->n_mean, o->n_std);
        c = c > on ? c : on;
        float om[QK_MAX_CHANNELS], os[QK_MAX_CHANNELS];
        for (int k = 0; k < c; k++) {
            om[k] = qk_norm_mean(&n, k < on ? k : 0);
            os[k] = qk_norm_std(&n, k < on ? k : 0);
        }
        for (int k = 0; k < c; k++) {
            n.cmean[k] = o->n_mean ? o->mean[o->n_mean == 1 ? 0 : k] : om[k];
            n.cstd[k] = o->n_std ? o->std[o->n_std == 1 ? 0 : k] : os[k];
        }
        n.mean = n.cmean[0];
        n.std = n.cstd[0];
        n.nc = c > 1 ? c : 0;
    }
    if (o && o->has_scale) {
        n.scale = o->scale;
        ex = 1;
    }
    if (o && o->has_bgr) {
        n.bgr = o->bgr;
        ex = 1;
    }
    if ((st = qk_norm_check(&n, qk_dataset_channels(ds))) != QK_OK)
        return qk_error_context(st, "data");
    *norm = n;
    if (explicit_prep)
        *explicit_prep = ex;
    return QK_OK;
}

/* Explicit preprocessing into the model's metadata (as `qkit ptq --mean ...`). */
static qk_status flat_store_norm(qk_graph *g, const qk_norm *n)
{
    int c = n->nc > 0 ? n->nc : 1;
    float m[QK_MAX_CHANNELS], s[QK_MAX_CHANNELS];
    for (int k = 0; k < c; k++) {
        m[k] = qk_norm_mean(n, k);
        s[k] = qk_norm_std(n, k);
    }
    qk_status st = qk_graph_set_norm_ch(g, c, m, s);
    qk_graph_prep p = { 0 };
    if (st == QK_OK)
        st = qk_graph_get_prep(g, &p);
    p.scale = n->scale;
    p.bgr = n->bgr;
    return st != QK_OK ? st : qk_graph_set_prep(g, &p);
}

/* ---- JSON into a memory stream ---- */

typedef struct jw {
    FILE *f;
    char *buf;
    size_t len;
    int first;
} jw;

static qk_status jw_open(jw *j)
{
    memset(j, 0, sizeof *j);
    if (!(j->f = open_memstream(&j->buf, &j->len)))
        return qk_error(QK_ERR_NOMEM, "JSON result: out of memory");
    fputc('{', j->f);
    j->first = 1;
    return QK_OK;
}

static void jw_esc(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

/* The separator, then "k": when k is not NULL (an object member). */
static void jw_key(jw *j, const char *k)
{
    if (!j->first)
        fputs(", ", j->f);
    j->first = 0;
    if (k) {
        jw_esc(j->f, k);
        fputs(": ", j->f);
    }
}

static void jw_str(jw *j, const char *k, const char *v)
{
    jw_key(j, k);
    if (v)
        jw_esc(j->f, v);
    else
        fputs("null", j->f);
}

static void jw_int(jw *j, const char *k, int64_t v)
{
    jw_key(j, k);
    fprintf(j->f, "%lld", (long long)v);
}

static void jw_num(jw *j, const char *k, double v)
{
    jw_key(j, k);
    if (isfinite(v))
        fprintf(j->f, "%.17g", v);
    else
        fputs("null", j->f);
}

static void jw_bool(jw *j, const char *k, int v)
{
    jw_key(j, k);
    fputs(v ? "true" : "false", j->f);
}

static void jw_begin(jw *j, const char *k, char c)
{
    jw_key(j, k);
    fputc(c, j->f);
    j->first = 1;
}

static void jw_end(jw *j, char c)
{
    fputc(c, j->f);
    j->first = 0;
}

/* Close the stream; *out receives the text (qk_malloc'ed) or NULL on error. */
static qk_status jw_close(jw *j, char **out)
{
    fputc('}', j->f);
    int bad = ferror(j->f);
    fclose(j->f);
    char *s = bad ? NULL : qk_malloc(j->len + 1);
    if (s) {
        memcpy(s, j->buf, j->len);
        s[j->len] = 0;
    }
    free(j->buf);
    if (!s)
        return qk_error(QK_ERR_NOMEM, "JSON result: out of memory");
    *out = s;
    return QK_OK;
}

static void jw_shape(jw *j, const char *k, const qk_tensor *t, int dyn)
{
    jw_begin(j, k, '[');
    for (int d = 0; d < t->ndim; d++)
        jw_int(j, NULL, d == 0 && dyn ? -1 : t->dims[d]);
    jw_end(j, ']');
}

/* ---- models ---- */

qk_status qk_flat_run(qk_graph *g, int n_in, const int *dtypes, const int *ndims, const int64_t *dims,
                      const void *const *data, qk_pool *pool, int *n_out, qk_tensor **outs)
{
    if (!g || n_in < 0 || (n_in > 0 && (!dtypes || !ndims || !dims || !data)))
        return qk_error(QK_ERR_ARG, "run: bad arguments");
    if (n_in != g->n_inputs)
        return qk_error(QK_ERR_ARG, "run: the model has %d inputs, %d arrays given", g->n_inputs, n_in);
    qk_tensor *in = qk_calloc(n_in > 0 ? (size_t)n_in : 1, sizeof *in);
    if (!in)
        return qk_error(QK_ERR_NOMEM, "run: out of memory");
    qk_status st = QK_OK;
    for (int i = 0; i < n_in && st == QK_OK; i++) {
        if (ndims[i] < 0 || ndims[i] > QK_MAX_DIMS)
            st = qk_error(QK_ERR_SHAPE, "run: input %d has %d dimensions (at most %d)", i, ndims[i], QK_MAX_DIMS);
        else if (!qk_dtype_size((qk_dtype)dtypes[i]))
            st = qk_error(QK_ERR_ARG, "run: input %d: unsupported dtype %d", i, dtypes[i]);
        else {
            qk_tensor_set_shape(&in[i], (qk_dtype)dtypes[i], ndims[i], dims + (size_t)i * QK_MAX_DIMS);
            in[i].data = (void *)data[i];
            in[i].owned = 0;
        }
    }
    if (st == QK_OK)
        st = qk_onnx_run(g, n_in, in, pool, n_out, outs);
    qk_free(in);
    return st;
}

qk_status qk_flat_tensor_get(const qk_tensor *ts, int i, int *dtype, int *ndim, int64_t *dims, const void **data)
{
    if (!ts || i < 0)
        return qk_error(QK_ERR_ARG, "tensor %d: bad arguments", i);
    const qk_tensor *t = &ts[i];
    *dtype = (int)t->dtype;
    *ndim = t->ndim;
    for (int d = 0; d < QK_MAX_DIMS; d++)
        dims[d] = d < t->ndim ? t->dims[d] : 0;
    *data = t->data;
    return QK_OK;
}

qk_status qk_flat_model_info(qk_graph *g, char **json)
{
    if (!g || !json)
        return qk_error(QK_ERR_ARG, "info: bad arguments");
    qk_status st = qk_graph_plan(g, 1, 0, NULL);
    if (st != QK_OK)
        return st;
    jw j;
    if ((st = jw_open(&j)) != QK_OK)
        return st;
    jw_str(&j, "name", g->name);
    jw_int(&j, "opset", g->opset);
    jw_begin(&j, "inputs", '[');
    for (int i = 0; i < g->n_inputs; i++) {
        const qk_value *v = &g->values[g->inputs[i]];
        jw_begin(&j, NULL, '{');
        jw_str(&j, "name", v->name);
        jw_str(&j, "dtype", qk_dtype_name(v->t.dtype));
        jw_shape(&j, "shape", &v->t, v->dyn_batch);
        jw_end(&j, '}');
    }
    jw_end(&j, ']');
    jw_begin(&j, "outputs", '[');
    for (int i = 0; i < g->n_outputs; i++) {
        const qk_value *v = &g->values[g->outputs[i]];
        jw_begin(&j, NULL, '{');
        jw_str(&j, "name", v->name);
        jw_str(&j, "dtype", qk_dtype_name(v->t.dtype));
        jw_shape(&j, "shape", &v->t, 0);
        jw_end(&j, '}');
    }
    jw_end(&j, ']');
    jw_int(&j, "nodes", g->n_nodes);
    int quantized = 0;
    jw_begin(&j, "ops", '{');
    for (int k = 0; k < g->n_nodes; k++) { /* op types in first-use order, with counts */
        const char *t = g->nodes[k].op_type;
        int seen = 0, count = 0;
        for (int i = 0; i < k && !seen; i++)
            seen = strcmp(g->nodes[i].op_type, t) == 0;
        if (seen)
            continue;
        for (int i = k; i < g->n_nodes; i++)
            count += strcmp(g->nodes[i].op_type, t) == 0;
        jw_int(&j, t, count);
        quantized |= qk_node_is(&g->nodes[k], "QuantizeLinear") || qk_node_is(&g->nodes[k], "DequantizeLinear");
    }
    jw_end(&j, '}');
    jw_int(&j, "params", qk_graph_param_count(g));
    jw_bool(&j, "quantized", quantized);
    jw_begin(&j, "metadata", '{');
    for (int i = 0; i < g->n_meta; i++)
        jw_str(&j, g->meta_keys[i], g->meta_vals[i]);
    jw_end(&j, '}');
    return jw_close(&j, json);
}

/* ---- ptq ---- */

static qk_status flat_config(const qk_flat_opts *o, qk_graph *g, qk_ptq_config *c)
{
    qk_ptq_config_default(c);
    if (!o || !o->backend)
        return qk_error(QK_ERR_ARG, "ptq: option backend is required (qkit.backends() / `qkit backends` list them)");
    c->backend = o->backend;
    c->wbits = o->wbits;
    c->abits = o->abits;
    c->reduce_range = o->reduce_range;
    qk_status st = qk_ptq_config_check(c);
    if (st != QK_OK)
        return st;
    c->a_observer = o->a_observer;
    c->w_observer = o->w_observer;
    c->first_last_bits = o->first_last_bits;
    c->per_tensor_weights = o->per_tensor;
    c->bias_correct = o->bias_correct;
    c->bit_alloc = o->bit_alloc;
    c->cle = o->cle;
    c->cle_relu6 = o->cle_relu6;
    if (c->cle_relu6 && c->cle == 0 && !c->backend->cle)
        c->cle = 1; /* cle_relu6 alone asks for the equalization it modifies, as --cle-relu6 */
    c->n_exclude = o->n_exclude;
    c->exclude = (const char *const *)o->exclude;
    for (int i = 0; i < o->n_exclude; i++)
        if (qk_graph_find_node(g, o->exclude[i]) < 0)
            return qk_error(QK_ERR_NOTFOUND, "ptq: exclude '%s': no node of that name (info()['ops'] and `qkit "
                            "info` list the model's nodes)", o->exclude[i]);
    if (o->recon && o->bias_correct > 0)
        return qk_error(QK_ERR_ARG, "ptq: recon with bias_correct: use one or the other");
    if (o->recon && c->bias_correct == 0)
        c->bias_correct = -1; /* reconstruction replaces the profile's default bias correction */
    return QK_OK;
}

static int dq_count(const qk_graph *g)
{
    int n = 0;
    for (int i = 0; i < g->n_nodes; i++)
        n += qk_node_is(&g->nodes[i], "DequantizeLinear");
    return n;
}

static void jw_agree(jw *j, const qk_agree_result *ag)
{
    jw_num(j, "top1_agree", ag->top1);
    jw_num(j, "top5_agree", ag->top5);
    jw_num(j, "sqnr_db", ag->sqnr_db);
    jw_num(j, "cosine", ag->cosine);
    jw_int(j, "images", ag->images);
}

qk_status qk_flat_ptq(const char *model_path, const qk_dataset *calib, const qk_dataset *eval, const qk_flat_opts *o,
                      const char *out_path, qk_pool *pool, char **json)
{
    if (!model_path || !calib || !json)
        return qk_error(QK_ERR_ARG, "ptq: model path, calibration data and result are required");
    qk_graph *g = NULL, *fg = NULL;
    qk_qmodel *m = NULL;
    qk_eval_result fr = { 0 }, qr = { 0 };
    qk_agree_result ag = { 0 };
    qk_recon_result rr = { 0 };
    qk_ptq_config c;
    qk_norm cnorm, enorm;
    int explicit_prep = 0, labelled = 0;
    int64_t n = 0;
    qk_status st = qk_onnx_load(model_path, &g);
    if (st == QK_OK) {
        qk_onnx_dynamic_batch(g); /* a batch-1 export is fed batches */
        st = flat_config(o, g, &c);
    }
    if (st == QK_OK)
        st = flat_norm(g, calib, o, &cnorm, &explicit_prep);
    if (st == QK_OK && eval)
        st = flat_norm(g, eval, o, &enorm, NULL);
    if (st != QK_OK)
        goto done;
    n = o->images > 0 ? o->images : calib->n < 512 ? calib->n : 512;
    if (n > calib->n || n < 1) {
        st = qk_error(QK_ERR_ARG, "ptq: %lld calibration images asked, the calibration data has %lld",
                      (long long)n, (long long)calib->n);
        goto done;
    }
    if (o->recon && o->recon_batch > n) {
        st = qk_error(QK_ERR_ARG, "ptq: recon_batch %d is larger than the %lld calibration images", o->recon_batch,
                      (long long)n);
        goto done;
    }
    if (explicit_prep && (st = flat_store_norm(g, &cnorm)) != QK_OK)
        goto done;
    if (eval) {
        labelled = qk_dataset_has_labels(eval);
        if (!labelled && (st = qk_onnx_load(model_path, &fg)) != QK_OK)
            goto done;
        if (fg)
            qk_onnx_dynamic_batch(fg);
        if (labelled && !o->no_fp32 && (st = qk_evaluate(g, eval, enorm, o->batch, pool, &fr)) != QK_OK)
            goto done;
    }
    st = qk_ptq_prepare(g, &c, &m); /* with cross-layer equalization first when c.cle resolves on */
    g = NULL; /* owned by m (or destroyed) */
    if (st != QK_OK || (st = qk_ptq_calibrate(m, calib, cnorm, n, pool, NULL, NULL)) != QK_OK)
        goto done;
    if (o->recon) {
        qk_recon_config rc;
        qk_recon_config_default(&rc, o->recon);
        rc.iters = o->recon_iters;
        rc.batch = o->recon_batch;
        if ((st = qk_ptq_reconstruct(m, calib, cnorm, n, &rc, pool, &rr)) != QK_OK)
            goto done;
    }
    if (out_path && (st = qk_ptq_save_qdq(m, out_path)) != QK_OK)
        goto done;
    if (eval && labelled && (st = qk_evaluate(qk_qmodel_graph(m), eval, enorm, o->batch, pool, &qr)) != QK_OK)
        goto done;
    if (eval && !labelled &&
        (st = qk_evaluate_agreement(fg, qk_qmodel_graph(m), eval, enorm, o->batch, pool, &ag)) != QK_OK)
        goto done;
    qk_ptq_result r;
    qk_ptq_result_get(m, &r);
    jw j;
    if ((st = jw_open(&j)) != QK_OK)
        goto done;
    jw_str(&j, "backend", r.backend);
    jw_int(&j, "wbits", r.wbits);
    jw_int(&j, "abits", r.abits);
    jw_str(&j, "w_observer", r.w_observer);
    jw_str(&j, "a_observer", r.a_observer);
    jw_bool(&j, "per_channel", r.per_channel);
    jw_bool(&j, "reduce_range", r.reduce_range);
    jw_bool(&j, "bias_correct", r.bias_correct);
    jw_str(&j, "bit_alloc", r.bit_alloc_name);
    jw_int(&j, "first_last_bits", r.first_last_bits);
    jw_int(&j, "calib_images", n);
    jw_int(&j, "quantizers", r.n_quantizers);
    jw_int(&j, "weight_quantizers", r.n_weight_quantizers);
    jw_int(&j, "activation_quantizers", r.n_act_quantizers);
    jw_int(&j, "folded_bn", r.n_folded);
    jw_int(&j, "quantizers_in_file", out_path ? dq_count(qk_qmodel_graph(m)) : r.n_quantizers);
    jw_bool(&j, "cle", r.cle);
    if (r.cle)
        jw_int(&j, "cle_pairs", r.cle_pairs);
    if (o->recon) {
        jw_str(&j, "recon", qk_recon_method_name(o->recon));
        jw_int(&j, "recon_layers", rr.n_layers);
        jw_num(&j, "recon_seconds", rr.seconds);
    }
    jw_num(&j, "ptq_seconds", r.seconds);
    jw_str(&j, "out", out_path);
    if (eval && labelled) {
        if (!o->no_fp32)
            jw_num(&j, "fp32_top1", fr.top1);
        jw_num(&j, "top1", qr.top1);
        if (!o->no_fp32)
            jw_num(&j, "delta", qr.top1 - fr.top1);
        jw_int(&j, "images", qr.images);
    } else if (eval) {
        jw_agree(&j, &ag);
    }
    st = jw_close(&j, json);
done:
    qk_graph_destroy(g);
    qk_graph_destroy(fg);
    qk_qmodel_destroy(m);
    return st;
}

/* ---- evaluate ---- */

qk_status qk_flat_evaluate(qk_graph *g, const qk_dataset *ds, const qk_flat_opts *o, qk_pool *pool, char **json)
{
    if (!g || !ds || !json)
        return qk_error(QK_ERR_ARG, "evaluate: bad arguments");
    qk_flat_opts dflt = { .arith = -1, .batch = 256 };
    if (!o)
        o = &dflt;
    qk_onnx_dynamic_batch(g); /* a batch-1 export is fed batches */
    qk_norm norm;
    qk_status st = flat_norm(g, ds, o, &norm, NULL);
    if (st != QK_OK)
        return st;
    qk_lower_opts lo;
    qk_lower_opts_default(&lo);
    if (o->arith >= 0)
        lo.arith = o->arith;
    qk_lower_stats ls = { 0 };
    qk_graph *ig = NULL, *ref = NULL;
    int labelled = qk_dataset_has_labels(ds);
    if (!labelled && !o->real && !o->reference)
        return qk_error(QK_ERR_ARG, "evaluate: the data has no labels: give labels, a reference float model "
                        "(agreement with it) or real (the integer engine against the QDQ model in float)");
    if (o->real && ((st = qk_qdq_lower(g, &lo, &ig, &ls)) != QK_OK || (st = qk_lower_prepare_run(ig)) != QK_OK))
        goto done;
    qk_graph *test = ig ? ig : g;
    jw j;
    if (labelled) {
        qk_eval_result r;
        if ((st = qk_evaluate(test, ds, norm, o->batch, pool, &r)) != QK_OK || (st = jw_open(&j)) != QK_OK)
            goto done;
        jw_num(&j, "top1", r.top1);
        jw_int(&j, "correct", r.correct);
        jw_int(&j, "images", r.images);
        jw_num(&j, "loss", r.loss);
        jw_num(&j, "images_per_s", r.images_per_s);
    } else {
        qk_agree_result r;
        if (o->reference && (st = qk_onnx_load(o->reference, &ref)) != QK_OK)
            goto done;
        if (ref)
            qk_onnx_dynamic_batch(ref);
        if ((st = qk_evaluate_agreement(ref ? ref : g, test, ds, norm, o->batch, pool, &r)) != QK_OK ||
            (st = jw_open(&j)) != QK_OK)
            goto done;
        jw_agree(&j, &r);
        jw_str(&j, "reference", o->reference ? o->reference : "the QDQ model in float");
    }
    jw_bool(&j, "real", o->real);
    if (o->real) {
        jw_str(&j, "arith", qk_arith_name(ls.arith));
        jw_int(&j, "int_layers", ls.int_layers);
        jw_int(&j, "float_layers", ls.float_layers);
    }
    st = jw_close(&j, json);
done:
    qk_graph_destroy(ig);
    qk_graph_destroy(ref);
    return st;
}

/* ---- export, backends ---- */

qk_status qk_flat_export(const char *model_path, const char *backend, const char *dir, char **json)
{
    if (!model_path || !dir || !json)
        return qk_error(QK_ERR_ARG, "export: model path, directory and result are required");
    qk_deploy_result r;
    qk_status st = qk_deploy_export(model_path, backend && backend[0] ? backend : NULL, dir, &r);
    if (st != QK_OK)
        return st;
    jw j;
    if ((st = jw_open(&j)) != QK_OK)
        return st;
    jw_str(&j, "backend", r.backend->name);
    jw_str(&j, "out", dir);
    jw_begin(&j, "files", '[');
    for (int i = 0; i < r.n_files; i++)
        jw_str(&j, NULL, r.files[i]);
    jw_end(&j, ']');
    jw_int(&j, "weights", r.n_weights);
    jw_int(&j, "activations", r.n_activations);
    jw_int(&j, "bias", r.n_bias);
    jw_int(&j, "qlinear_layers", r.n_qlinear);
    return jw_close(&j, json);
}

qk_status qk_flat_backends(char **json)
{
    if (!json)
        return qk_error(QK_ERR_ARG, "backends: no result pointer");
    jw j;
    qk_status st = jw_open(&j);
    if (st != QK_OK)
        return st;
    jw_begin(&j, "backends", '[');
    for (int i = 0; i < qk_backend_count(); i++) {
        const qk_backend *b = qk_backend_get(i);
        jw_begin(&j, NULL, '{');
        jw_str(&j, "name", b->name);
        jw_str(&j, "summary", b->summary);
        jw_str(&j, "arith", qk_arith_name(b->arith));
        jw_begin(&j, "wbits", '[');
        jw_int(&j, NULL, b->wbits_min);
        jw_int(&j, NULL, b->wbits_max);
        jw_end(&j, ']');
        jw_begin(&j, "abits", '[');
        jw_int(&j, NULL, b->abits_min);
        jw_int(&j, NULL, b->abits_max);
        jw_end(&j, ']');
        jw_str(&j, "w_observer", b->w_observer);
        jw_str(&j, "a_observer", b->a_observer);
        jw_bool(&j, "cle", b->cle);
        jw_bool(&j, "bias_correct", b->bias_correct);
        jw_end(&j, '}');
    }
    jw_end(&j, ']');
    return jw_close(&j, json);
}
