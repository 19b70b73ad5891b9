/* Custom quantizer hooks (PaddleSlim quant_aware's weight/act quantize and
 * preprocess functions) and the quantization site that runs a
 * tensor through preprocess -> custom or built-in quantizer. quant.h. */
#include "quant_internal.h"

#include <string.h>

qk_status qk_quant_hooks_register(qk_quant_hooks *h, qk_hook_kind kind, qk_hook_fn fn, void *ctx)
{
    if (!h)
        return qk_error(QK_ERR_ARG, "quantizer hooks: NULL hook table");
    if ((unsigned)kind >= QK_HOOK_COUNT)
        return qk_error(QK_ERR_ARG,
                        "quantizer hook kind %d: must be 0 (weight quantize), 1 (act quantize), 2 (weight preprocess) "
                        "or 3 (act preprocess)",
                        (int)kind);
    h->fn[kind] = fn;
    h->ctx[kind] = fn ? ctx : NULL;
    return QK_OK;
}

struct qk_quantizer {
    qk_qparams qp;
    qk_observer *obs;
    int is_weight;
    char *name;
    qk_quant_hooks hooks;
    int calibrating;
    int64_t step;
    int64_t n;       /* (s, z) pairs, 0 before calibration */
    float *scale;
    int32_t *zp;
    float data_max;  /* NNIE log code */
    float *tmp;      /* preprocess output */
    int64_t tmp_cap;
};

qk_status qk_quantizer_create(const qk_quantizer_desc *d, qk_quantizer **out)
{
    *out = NULL;
    qk_quantizer *q = qk_calloc(1, sizeof *q);
    if (!q)
        return qk_error(QK_ERR_NOMEM, "quantizer: out of memory");
    q->qp = d->qp;
    q->is_weight = d->is_weight != 0;
    q->calibrating = 1;
    if (d->hooks)
        q->hooks = *d->hooks;
    q->name = qk_strdup(d->name ? d->name : "");
    if (!q->name) {
        qk_free(q);
        return qk_error(QK_ERR_NOMEM, "quantizer: out of memory");
    }
    qk_status st = qk_observer_create(d->observer ? d->observer : "minmax", &d->qp, d->opts, &q->obs);
    if (st != QK_OK) {
        qk_quantizer_destroy(q);
        return qk_error_context(st, "quantizer '%s'", d->name ? d->name : "");
    }
    *out = q;
    return QK_OK;
}

void qk_quantizer_destroy(qk_quantizer *q)
{
    if (!q)
        return;
    qk_observer_destroy(q->obs);
    qk_free(q->name);
    qk_free(q->scale);
    qk_free(q->zp);
    qk_free(q->tmp);
    qk_free(q);
}

void qk_quantizer_set_calibrating(qk_quantizer *q, int on) { q->calibrating = on != 0; }

void qk_quantizer_params(const qk_quantizer *q, int64_t *n, const float **scale, const int32_t **zp)
{
    *n = q->n;
    *scale = q->scale;
    *zp = q->zp;
}

qk_observer *qk_quantizer_observer(qk_quantizer *q) { return q->obs; }

/* Recompute (s, z) (and the NNIE data max) from the observer. */
static qk_status refresh_params(qk_quantizer *q)
{
    int64_t n = qk_observer_channels(q->obs);
    if (n != q->n) {
        float *s = qk_realloc(q->scale, (size_t)n * sizeof *s);
        if (s)
            q->scale = s;
        int32_t *z = qk_realloc(q->zp, (size_t)n * sizeof *z);
        if (z)
            q->zp = z;
        if (!s || !z)
            return qk_error(QK_ERR_NOMEM, "quantizer '%s': out of memory", q->name);
        q->n = n;
    }
    qk_status st = qk_observer_qparams(q->obs, q->scale, q->zp);
    if (st == QK_OK && q->qp.scheme == QK_QSCHEME_NNIE_LOG) {
        float mn, mx;
        st = qk_observer_range(q->obs, &mn, &mx);
        q->data_max = -mn > mx ? -mn : mx;
    }
    return st;
}

qk_status qk_quantizer_run(qk_quantizer *q, const qk_tensor *x, qk_tensor *y, uint8_t *mask)
{
    int64_t numel = qk_tensor_numel(x);
    if (x->dtype != QK_F32 || y->dtype != QK_F32 || qk_tensor_numel(y) != numel)
        return qk_error(QK_ERR_ARG, "quantizer '%s': input and output must be float32 with the same element count",
                        q->name);
    qk_hook_call call = { q->name, q->is_weight, &q->qp, q->calibrating, q->step };
    const qk_tensor *src = x;
    qk_tensor pre = *x;
    qk_status st;
    int kpre = q->is_weight ? QK_HOOK_WEIGHT_PREPROCESS : QK_HOOK_ACT_PREPROCESS;
    int kq = q->is_weight ? QK_HOOK_WEIGHT_QUANTIZE : QK_HOOK_ACT_QUANTIZE;
    if (q->hooks.fn[kpre]) {
        if (numel > q->tmp_cap) {
            float *t = qk_realloc(q->tmp, (size_t)numel * sizeof *t);
            if (!t)
                return qk_error(QK_ERR_NOMEM, "quantizer '%s': out of memory", q->name);
            q->tmp = t;
            q->tmp_cap = numel;
        }
        pre.data = q->tmp;
        pre.owned = 0;
        st = q->hooks.fn[kpre](q->hooks.ctx[kpre], &call, x, &pre);
        if (st != QK_OK)
            return qk_error_context(st, "quantizer '%s': %s preprocess hook", q->name, q->is_weight ? "weight" : "act");
        src = &pre;
    }
    if (q->hooks.fn[kq]) {
        st = q->hooks.fn[kq](q->hooks.ctx[kq], &call, src, y);
        if (st != QK_OK)
            return qk_error_context(st, "quantizer '%s': %s quantize hook", q->name, q->is_weight ? "weight" : "act");
        if (mask)
            memset(mask, 1, (size_t)numel);
        q->step++;
        return QK_OK;
    }
    if (q->calibrating) {
        st = qk_observer_update(q->obs, src);
        if (st == QK_OK && numel > 0)
            st = refresh_params(q);
        if (st != QK_OK)
            return qk_error_context(st, "quantizer '%s'", q->name);
    }
    if (q->n == 0) {
        if (numel == 0)
            return QK_OK;
        return qk_error(QK_ERR_STATE, "quantizer '%s' has no scale yet: calibrate it first", q->name);
    }
    if (q->qp.scheme == QK_QSCHEME_NNIE_LOG) {
        st = q->data_max > 0 ? qk_nnie_fake_quant(q->data_max, numel, qk_f32(src), qk_f32(y))
                             : (memset(y->data, 0, (size_t)numel * sizeof(float)), QK_OK);
        if (mask)
            memset(mask, 1, (size_t)numel);
    } else {
        st = qk_fake_quant(&q->qp, q->n, q->scale, q->zp, src, y, mask);
    }
    if (st != QK_OK)
        return qk_error_context(st, "quantizer '%s'", q->name);
    q->step++;
    return QK_OK;
}
