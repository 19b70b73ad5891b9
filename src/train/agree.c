/* Agreement between a model and its reference (qk_evaluate_agreement):
 * top-1 / top-5 agreement, output SQNR and cosine similarity, for data
 * without labels. */
#include "qkit/ops.h"
#include "qkit/train.h"

#include <math.h>
#include <string.h>

static qk_status prepare(qk_graph *g, const qk_dataset *ds, int batch, qk_pool *pool, const char *what)
{
    if (g->n_inputs != 1 || g->n_outputs < 1)
        return qk_error(QK_ERR_ARG, "agreement: the %s model must have one input and an output", what);
    const qk_value *in = &g->values[g->inputs[0]];
    qk_status st = qk_dataset_check_input(ds, "", in->name, in->t.ndim, in->t.dims);
    if (st != QK_OK)
        return qk_error_context(st, "agreement (%s model)", what);
    if ((st = qk_graph_bind(g, &qk_float_op_table, 1)) != QK_OK)
        return st;
    if (!(g->planned && !g->training && g->max_batch >= batch && g->exec.pool == pool) &&
        (st = qk_graph_plan(g, batch, 0, pool)) != QK_OK)
        return qk_error_context(st, "agreement (%s model)", what);
    return QK_OK;
}

static int64_t argmax(const float *p, int64_t n)
{
    int64_t b = 0;
    for (int64_t i = 1; i < n; i++)
        if (p[i] > p[b])
            b = i;
    return b;
}

/* 1 if class c is among the k highest of p (ties: earlier index ranks higher, as argmax). */
static int in_topk(const float *p, int64_t n, int64_t c, int k)
{
    int64_t above = 0;
    for (int64_t i = 0; i < n; i++)
        above += p[i] > p[c] || (p[i] == p[c] && i < c);
    return above < k;
}

qk_status qk_evaluate_agreement(qk_graph *ref, qk_graph *g, const qk_dataset *ds, qk_norm norm, int batch,
                                qk_pool *pool, qk_agree_result *r)
{
    memset(r, 0, sizeof *r);
    if (batch < 1 || !ds || ds->n < 1 || (!ds->images && !ds->fimages))
        return qk_error(QK_ERR_ARG, "agreement: need batch >= 1 and a non-empty dataset");
    if (qk_norm_check(&norm, qk_dataset_channels(ds)) != QK_OK)
        return qk_error_context(QK_ERR_ARG, "agreement");
    if (batch > ds->n)
        batch = (int)ds->n;
    qk_status st = prepare(ref, ds, batch, pool, "reference");
    if (st == QK_OK)
        st = prepare(g, ds, batch, pool, "compared");
    if (st != QK_OK)
        return st;
    int64_t B = ref->max_batch < g->max_batch ? ref->max_batch : g->max_batch;
    int64_t *items = qk_malloc((size_t)B * sizeof *items);
    if (!items)
        return qk_error(QK_ERR_NOMEM, "agreement: out of memory");
    double sig = 0, err = 0, cos_sum = 0, compute = 0;
    int64_t same1 = 0, same5 = 0;
    for (int64_t start = 0; start < ds->n && st == QK_OK; start += B) {
        int64_t m = ds->n - start < B ? ds->n - start : B;
        for (int64_t k = 0; k < m; k++)
            items[k] = start + k;
        qk_tensor *xr = &ref->values[ref->inputs[0]].t, *xg = &g->values[g->inputs[0]].t;
        if ((st = qk_dataset_fill(ds, &norm, items, m, qk_f32(xr), NULL, pool)) != QK_OK ||
            (st = qk_graph_set_batch(ref, m)) != QK_OK || (st = qk_graph_set_batch(g, m)) != QK_OK)
            break;
        memcpy(qk_f32(xg), qk_f32(xr), qk_tensor_bytes(xr));
        double t0 = qk_now();
        if ((st = qk_graph_forward(ref)) != QK_OK || (st = qk_graph_forward(g)) != QK_OK)
            break;
        compute += qk_now() - t0;
        const qk_tensor *orf = &ref->values[ref->outputs[0]].t, *og = &g->values[g->outputs[0]].t;
        if (orf->ndim != 2 || og->ndim != 2 || orf->dims[1] != og->dims[1] || orf->dtype != QK_F32 ||
            og->dtype != QK_F32) {
            char a[96], b[96];
            st = qk_error(QK_ERR_SHAPE, "agreement: outputs '%s' %s and '%s' %s must both be float32 [N, classes]",
                          ref->values[ref->outputs[0]].name, qk_shape_str(orf, a, sizeof a),
                          g->values[g->outputs[0]].name, qk_shape_str(og, b, sizeof b));
            break;
        }
        int64_t C = orf->dims[1];
        const float *pr = qk_f32(orf), *pg = qk_f32(og);
        for (int64_t i = 0; i < m; i++) {
            const float *a = pr + i * C, *b = pg + i * C;
            int64_t ca = argmax(a, C);
            same1 += ca == argmax(b, C);
            same5 += in_topk(b, C, ca, 5);
            double aa = 0, bb = 0, ab = 0;
            for (int64_t k = 0; k < C; k++) {
                double d = (double)a[k] - b[k];
                sig += (double)a[k] * a[k];
                err += d * d;
                aa += (double)a[k] * a[k];
                bb += (double)b[k] * b[k];
                ab += (double)a[k] * b[k];
            }
            cos_sum += aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : (aa == bb ? 1.0 : 0.0);
        }
        r->images += m;
    }
    qk_free(items);
    if (st != QK_OK)
        return st;
    r->top1 = (double)same1 / (double)r->images;
    r->top5 = (double)same5 / (double)r->images;
    r->sqnr_db = err > 0 ? 10.0 * log10(sig / err) : INFINITY;
    r->cosine = cos_sum / (double)r->images;
    r->seconds = compute;
    return QK_OK;
}
