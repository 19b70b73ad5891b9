/* The integer-model runner and the fake-versus-real comparison (qrun.h). */
#include "lower_internal.h"
#include "qkit/onnx.h"
#include "qkit/ops.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

struct qk_qrun {
    qk_graph *g;
    qk_lower_stats st;
    qk_norm norm;
    int64_t dims[4];
    int64_t classes, max_batch;
};

void qk_qrun_opts_default(qk_qrun_opts *o)
{
    memset(o, 0, sizeof *o);
    o->max_batch = 64;
    o->arith = -1;
}

qk_status qk_qrun_create(const qk_graph *qdq, const qk_qrun_opts *o, qk_qrun **out)
{
    *out = NULL;
    qk_qrun_opts d;
    if (!o) {
        qk_qrun_opts_default(&d);
        o = &d;
    }
    if (o->max_batch < 1)
        return qk_error(QK_ERR_ARG, "qrun: max_batch must be >= 1 (got %lld)", (long long)o->max_batch);
    qk_qrun *r = qk_calloc(1, sizeof *r);
    if (!r)
        return qk_error(QK_ERR_NOMEM, "qrun: out of memory");
    qk_lower_opts lo;
    qk_lower_opts_default(&lo);
    lo.arith = o->arith;
    qk_status st = qk_qdq_lower(qdq, &lo, &r->g, &r->st);
    if (st == QK_OK) /* fused float epilogues, NHWC between convolutions, uint8 activations */
        st = qk_lower_prepare_run(r->g);
    if (st != QK_OK)
        goto fail;
    qk_graph *g = r->g;
    if (g->n_inputs != 1 || g->n_outputs != 1 || g->values[g->inputs[0]].t.ndim != 4 ||
        g->values[g->inputs[0]].t.dtype != QK_F32) {
        st = qk_error(QK_ERR_SHAPE, "qrun: the model must have one float32 input [N,C,H,W] and one output");
        goto fail;
    }
    memcpy(r->dims, g->values[g->inputs[0]].t.dims, sizeof r->dims);
    if (g->values[g->inputs[0]].dyn_batch)
        r->dims[0] = -1;
    r->norm = qk_norm_default();
    if (qk_graph_get_norm(g, &r->norm.mean, &r->norm.std) == QK_ERR_FORMAT) {
        st = QK_ERR_FORMAT;
        goto fail;
    }
    r->max_batch = r->dims[0] > 0 ? r->dims[0] : o->max_batch;
    qk_plan_options po = g->opts; /* the runner hands out the logits only: batches run in slices */
    po.slice = qk_slice_for_threads(qk_pool_threads(o->pool));
    qk_graph_set_options(g, &po);
    if ((st = qk_graph_plan(g, r->max_batch, 0, o->pool)) != QK_OK)
        goto fail;
    const qk_tensor *y = &g->values[g->outputs[0]].t;
    if (y->ndim != 2 || y->dtype != QK_F32) {
        char b[96];
        st = qk_error(QK_ERR_SHAPE, "qrun: output '%s' is %s %s, expected float32 [N, classes]",
                      g->values[g->outputs[0]].name, qk_dtype_name(y->dtype), qk_shape_str(y, b, sizeof b));
        goto fail;
    }
    r->classes = y->dims[1];
    *out = r;
    return QK_OK;
fail:
    qk_qrun_destroy(r);
    return st;
}

qk_status qk_qrun_load(const char *path, const qk_qrun_opts *o, qk_qrun **out)
{
    *out = NULL;
    qk_graph *g;
    qk_status st = qk_onnx_read(path, &g);
    if (st == QK_OK && (st = qk_lower_bind(g)) != QK_OK) {
        qk_graph_destroy(g);
        return qk_error_context(st, "file '%s'", path);
    }
    if (st != QK_OK)
        return st;
    st = qk_qrun_create(g, o, out);
    qk_graph_destroy(g);
    return st == QK_OK ? QK_OK : qk_error_context(st, "%s", path);
}

void qk_qrun_destroy(qk_qrun *r)
{
    if (!r)
        return;
    qk_graph_destroy(r->g);
    qk_free(r);
}

void qk_qrun_input_shape(const qk_qrun *r, int64_t dims[4]) { memcpy(dims, r->dims, sizeof r->dims); }
int64_t qk_qrun_classes(const qk_qrun *r) { return r->classes; }
qk_norm qk_qrun_norm(const qk_qrun *r) { return r->norm; }
qk_graph *qk_qrun_graph(qk_qrun *r) { return r->g; }
const qk_lower_stats *qk_qrun_stats(const qk_qrun *r) { return &r->st; }

qk_status qk_qrun_forward(qk_qrun *r, int64_t n, int64_t c, int64_t h, int64_t w, const float *x, float *logits)
{
    if (n < 1 || !x || !logits)
        return qk_error(QK_ERR_ARG, "qrun: need n >= 1 (got %lld) and input/output buffers", (long long)n);
    if (c != r->dims[1] || h != r->dims[2] || w != r->dims[3] || (r->dims[0] > 0 && n % r->dims[0]))
        return qk_error(QK_ERR_SHAPE, "qrun: input [%lld,%lld,%lld,%lld] does not match the model's "
                        "[%lld,%lld,%lld,%lld]",
                        (long long)n, (long long)c, (long long)h, (long long)w, (long long)r->dims[0],
                        (long long)r->dims[1], (long long)r->dims[2], (long long)r->dims[3]);
    qk_graph *g = r->g;
    int64_t per = c * h * w;
    for (int64_t i = 0; i < n; i += r->max_batch) {
        int64_t m = n - i < r->max_batch ? n - i : r->max_batch;
        qk_status st = qk_graph_set_batch(g, m);
        if (st != QK_OK)
            return st;
        memcpy(g->values[g->inputs[0]].t.data, x + i * per, (size_t)(m * per) * sizeof(float));
        if ((st = qk_graph_forward(g)) != QK_OK)
            return st;
        memcpy(logits + i * r->classes, g->values[g->outputs[0]].t.data, (size_t)(m * r->classes) * sizeof(float));
    }
    return QK_OK;
}

/* ---------------------------------------------------------------- compare */

typedef struct site_acc {
    int fv, rv;        /* value in fake / real */
    float s;
    int32_t z;
    double sig, err, maxd;
    int64_t diff, count;
} site_acc;

static int32_t code_at(const qk_tensor *t, int64_t i)
{
    return t->dtype == QK_U8 ? ((const uint8_t *)t->data)[i] : ((const int8_t *)t->data)[i];
}

static int64_t argmax(const float *p, int64_t n)
{
    int64_t b = 0;
    for (int64_t i = 1; i < n; i++)
        if (p[i] > p[b])
            b = i;
    return b;
}

qk_status qk_qdq_compare(qk_graph *fake, qk_graph *real, const qk_dataset *ds, qk_norm norm, int batch,
                         qk_pool *pool, qk_compare_result *r)
{
    memset(r, 0, sizeof *r);
    if (batch < 1 || !ds || ds->n < 1)
        return qk_error(QK_ERR_ARG, "compare: need batch >= 1 and a non-empty dataset");
    if (batch > ds->n)
        batch = (int)ds->n;
    qk_status st = qk_lower_bind(fake);
    if (st == QK_OK)
        st = qk_lower_bind(real);
    if (st != QK_OK)
        return st;
    if ((st = qk_graph_plan(fake, batch, 0, pool)) != QK_OK || (st = qk_graph_plan(real, batch, 0, pool)) != QK_OK)
        return qk_error_context(st, "compare");
    if (fake->n_inputs != 1 || real->n_inputs != 1 || fake->n_outputs < 1 || real->n_outputs < 1)
        return qk_error(QK_ERR_SHAPE, "compare: models need one input and one output");
    const qk_tensor *fo = &fake->values[fake->outputs[0]].t, *ro = &real->values[real->outputs[0]].t;
    if (fo->ndim != 2 || ro->ndim != 2 || fo->dims[1] != ro->dims[1])
        return qk_error(QK_ERR_SHAPE, "compare: outputs must both be [N, classes]");
    int64_t classes = fo->dims[1];
    site_acc *sa = qk_calloc((size_t)fake->n_nodes + 1, sizeof *sa);
    int64_t *lab = qk_malloc((size_t)batch * sizeof(int64_t));
    qk_batcher b;
    int have_b = 0;
    if (!sa || !lab) {
        st = qk_error(QK_ERR_NOMEM, "compare: out of memory");
        goto done;
    }
    int ns = 0;
    for (int i = 0; i < fake->n_nodes; i++) {
        const qk_node *n = &fake->nodes[i];
        if (strcmp(n->op_type, "QuantizeLinear") != 0 || n->n_in < 2 || n->out[0] < 0)
            continue;
        const qk_value *sv = &fake->values[n->in[1]];
        const qk_value *zv = n->n_in > 2 && n->in[2] >= 0 ? &fake->values[n->in[2]] : NULL;
        if (qk_tensor_numel(&sv->t) != 1)
            continue;
        int rv = qk_graph_find_value(real, fake->values[n->out[0]].name);
        if (rv < 0)
            continue;
        sa[ns].fv = n->out[0];
        sa[ns].rv = rv;
        sa[ns].s = qk_f32(&sv->t)[0];
        sa[ns].z = zv ? (zv->t.dtype == QK_U8 ? ((const uint8_t *)zv->t.data)[0] : ((const int8_t *)zv->t.data)[0]) : 0;
        ns++;
    }
    if ((st = qk_batcher_init(&b, ds, batch, 0, 0, norm, NULL)) != QK_OK)
        goto done;
    have_b = 1;
    qk_batcher_epoch(&b, 0);
    int64_t nb = qk_batcher_count(&b), fc = 0, rc = 0;
    float *fx = qk_f32(&fake->values[fake->inputs[0]].t);
    for (int64_t bi = 0; bi < nb && st == QK_OK; bi++) {
        int64_t m;
        if ((st = qk_batcher_get(&b, bi, fx, lab, &m)) != QK_OK || (st = qk_graph_set_batch(fake, m)) != QK_OK ||
            (st = qk_graph_set_batch(real, m)) != QK_OK)
            break;
        memcpy(real->values[real->inputs[0]].t.data, fx, qk_tensor_bytes(&fake->values[fake->inputs[0]].t));
        if ((st = qk_graph_forward(fake)) != QK_OK || (st = qk_graph_forward(real)) != QK_OK)
            break;
        const float *fl = qk_f32(fo), *rl = qk_f32(ro);
        for (int64_t i = 0; i < m; i++) {
            fc += argmax(fl + i * classes, classes) == lab[i];
            rc += argmax(rl + i * classes, classes) == lab[i];
            for (int64_t k = 0; k < classes; k++) {
                double d = fabs((double)fl[i * classes + k] - rl[i * classes + k]);
                r->max_logit_diff = d > r->max_logit_diff ? d : r->max_logit_diff;
            }
        }
        for (int k = 0; k < ns; k++) {
            const qk_tensor *a = &fake->values[sa[k].fv].t, *c = &real->values[sa[k].rv].t;
            if (a->dtype != c->dtype || qk_tensor_numel(a) != qk_tensor_numel(c))
                continue;
            int64_t ne = qk_tensor_numel(a);
            for (int64_t i = 0; i < ne; i++) {
                int32_t qa = code_at(a, i), qc = code_at(c, i);
                double f = (double)sa[k].s * (qa - sa[k].z), d = (double)sa[k].s * (qa - qc);
                sa[k].sig += f * f;
                sa[k].err += d * d;
                double ad = fabs((double)(qa - qc));
                sa[k].maxd = ad > sa[k].maxd ? ad : sa[k].maxd;
                sa[k].diff += qa != qc;
            }
            sa[k].count += ne;
        }
        r->images += m;
    }
    if (st != QK_OK)
        goto done;
    r->fake_top1 = (double)fc / (double)r->images;
    r->real_top1 = (double)rc / (double)r->images;
    r->gap = r->fake_top1 - r->real_top1;
    r->sites = qk_calloc((size_t)ns + 1, sizeof *r->sites);
    if (!r->sites) {
        st = qk_error(QK_ERR_NOMEM, "compare: out of memory");
        goto done;
    }
    r->n_sites = ns;
    for (int k = 0; k < ns; k++) {
        qk_site_agree *s = &r->sites[k];
        snprintf(s->name, sizeof s->name, "%s", fake->values[sa[k].fv].name);
        s->sqnr_db = sa[k].err > 0 ? 10.0 * log10(sa[k].sig / sa[k].err) : INFINITY;
        s->max_err_lsb = sa[k].maxd;
        s->count = sa[k].count;
        s->mismatch = sa[k].count ? (double)sa[k].diff / (double)sa[k].count : 0;
    }
done:
    if (have_b)
        qk_batcher_free(&b);
    qk_free(sa);
    qk_free(lab);
    if (st != QK_OK)
        qk_compare_result_free(r);
    return st;
}

void qk_compare_result_free(qk_compare_result *r)
{
    qk_free(r->sites);
    r->sites = NULL;
    r->n_sites = 0;
}
