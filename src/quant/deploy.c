/* Deploy files, part 1: reading the quantizers of a QDQ graph (the file
 * contract of ptq.h) and rewriting it into the float model (deploy.h).
 * The range files and the export directory are in deploy_files.c. */
#include "qkit/deploy.h"

#include <stdlib.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Integer operators: a lowered model, not a QDQ one. */
static int is_integer_op(const qk_node *n)
{
    size_t k = strlen(n->op_type);
    return strncmp(n->op_type, "QLinear", 7) == 0 || (k > 7 && strcmp(n->op_type + k - 7, "Integer") == 0);
}

static const char *node_label(const qk_node *n) { return n->name && n->name[0] ? n->name : "(unnamed)"; }

/* The only consumer of value v, or -1 (none or several); *count gets the count. */
static int sole_consumer(const qk_graph *g, int v, int *count)
{
    int c = 0, who = -1;
    for (int i = 0; i < g->n_nodes; i++)
        for (int j = 0; j < g->nodes[i].n_in; j++)
            if (g->nodes[i].in[j] == v) {
                c++;
                who = i;
                break;
            }
    for (int i = 0; i < g->n_outputs; i++)
        if (g->outputs[i] == v)
            c++;
    *count = c;
    return c == 1 ? who : -1;
}

static int is_code_type(qk_dtype dt) { return dt == QK_I8 || dt == QK_U8 || dt == QK_I32; }

static void type_range(qk_dtype dt, int32_t *lo, int32_t *hi)
{
    *lo = dt == QK_I8 ? -128 : dt == QK_I32 ? INT32_MIN : 0;
    *hi = dt == QK_I8 ? 127 : dt == QK_I32 ? INT32_MAX : 255;
}

/* Range of a signed/unsigned grid of b bits. */
static void grid_range(int is_signed, int bits, int narrow, int32_t *lo, int32_t *hi)
{
    if (is_signed) {
        *lo = -(int32_t)(1u << (bits - 1)) + (narrow ? 1 : 0);
        *hi = (int32_t)(1u << (bits - 1)) - 1;
    } else {
        *lo = 0;
        *hi = (int32_t)((1u << bits) - 1);
    }
}

/* The name a weight gets in the float model: "<W>" from "<W>_dequantized"
 * when that name is free, else the DequantizeLinear output's own name
 * (which becomes free when the node is removed). */
static char *weight_name(const qk_graph *g, const char *dq_out)
{
    static const char suf[] = "_dequantized";
    size_t n = strlen(dq_out), k = sizeof suf - 1;
    if (n > k && strcmp(dq_out + n - k, suf) == 0) {
        char *c = qk_malloc(n - k + 1);
        if (!c)
            return NULL;
        memcpy(c, dq_out, n - k);
        c[n - k] = 0;
        if (qk_graph_find_value(g, c) < 0)
            return c;
        qk_free(c);
    }
    return qk_strdup(dq_out);
}

static void site_free(qk_deploy_site *s)
{
    qk_free(s->tensor);
    qk_free(s->node);
    qk_free(s->scale);
    qk_free(s->zp);
}

void qk_deploy_info_free(qk_deploy_info *info)
{
    if (!info)
        return;
    for (int i = 0; i < info->n_sites; i++)
        site_free(&info->sites[i]);
    qk_free(info->sites);
    qk_free(info->dq_nodes);
    qk_free(info->q_nodes);
    qk_free(info->clip_nodes);
    for (int i = 0; i < info->n_meta; i++) {
        qk_free(info->meta_keys[i]);
        qk_free(info->meta_vals[i]);
    }
    qk_free(info->meta_keys);
    qk_free(info->meta_vals);
    qk_free(info);
}

const qk_deploy_site *qk_deploy_find(const qk_deploy_info *info, const char *tensor)
{
    for (int i = 0; info && tensor && i < info->n_sites; i++)
        if (strcmp(info->sites[i].tensor, tensor) == 0)
            return &info->sites[i];
    return NULL;
}

/* The profile named by "qkit.backend", without recording an error. */
static const qk_backend *meta_backend(const qk_graph *g)
{
    const char *name = qk_graph_get_meta(g, "qkit.backend");
    for (int i = 0; name && i < qk_backend_count(); i++)
        if (strcmp(qk_backend_get(i)->name, name) == 0)
            return qk_backend_get(i);
    return NULL;
}

/* Scale and zero point of a Q/DQ node: copies into the site, validates. */
static qk_status read_params(const qk_graph *g, const qk_node *n, qk_dtype code_type, qk_deploy_site *s)
{
    const qk_value *sv = n->n_in > 1 && n->in[1] >= 0 ? &g->values[n->in[1]] : NULL;
    const qk_value *zv = n->n_in > 2 && n->in[2] >= 0 ? &g->values[n->in[2]] : NULL;
    if (!sv || !qk_value_is_initializer_with_data(sv) || sv->t.dtype != QK_F32)
        return qk_error(QK_ERR_UNSUPPORTED, "node '%s' (%s): the scale must be a float32 initializer",
                        node_label(n), n->op_type);
    if (zv && (!qk_value_is_initializer_with_data(zv) || zv->t.dtype != code_type))
        return qk_error(QK_ERR_FORMAT, "node '%s' (%s): zero point '%s' must be a %s initializer",
                        node_label(n), n->op_type, zv->name, qk_dtype_name(code_type));
    int64_t ns = qk_tensor_numel(&sv->t);
    if (sv->t.ndim > 1 || ns < 1 || (zv && qk_tensor_numel(&zv->t) != ns))
        return qk_error(QK_ERR_FORMAT, "node '%s' (%s): scale '%s' must be a scalar or 1-D with as many "
                        "entries as the zero point", node_label(n), n->op_type, sv->name);
    s->n = ns;
    s->scale = qk_malloc((size_t)ns * sizeof(float));
    s->zp = qk_calloc((size_t)ns, sizeof(int32_t));
    if (!s->scale || !s->zp)
        return qk_error(QK_ERR_NOMEM, "out of memory");
    for (int64_t c = 0; c < ns; c++) {
        float v = qk_f32(&sv->t)[c];
        if (!(v > 0) || !isfinite(v))
            return qk_error(QK_ERR_FORMAT, "node '%s' (%s): scale '%s'[%lld] = %g (must be > 0 and finite)",
                            node_label(n), n->op_type, sv->name, (long long)c, (double)v);
        s->scale[c] = v;
        if (zv)
            s->zp[c] = qk_tensor_int_at(&zv->t, c);
    }
    s->per_channel = sv->t.ndim == 1 && (ns > 1 || s->kind != QK_DEPLOY_ACTIVATION);
    s->axis = -1;
    if (s->per_channel) {
        int64_t ax = qk_node_int(n, "axis", 1);
        const qk_value *xv = &g->values[n->in[0]];
        int rank = s->kind == QK_DEPLOY_ACTIVATION ? 0 : xv->t.ndim;
        if (rank > 0 && ax < 0)
            ax += rank;
        if (ax < 0 || (rank > 0 && ax >= rank))
            return qk_error(QK_ERR_UNSUPPORTED, "node '%s' (%s): per-axis axis %lld is not usable",
                            node_label(n), n->op_type, (long long)qk_node_int(n, "axis", 1));
        if (rank > 0 && xv->t.dims[ax] != ns)
            return qk_error(QK_ERR_FORMAT, "node '%s' (%s): %lld scales for axis %lld of '%s' (%lld channels)",
                            node_label(n), n->op_type, (long long)ns, (long long)ax, xv->name,
                            (long long)xv->t.dims[ax]);
        s->axis = (int)ax;
    }
    return QK_OK;
}

/* Same parameters on the QuantizeLinear as on its DequantizeLinear. */
static qk_status same_params(const qk_graph *g, const qk_node *q, const qk_node *dq)
{
    for (int i = 1; i < 3; i++) {
        int a = i < q->n_in ? q->in[i] : -1, b = i < dq->n_in ? dq->in[i] : -1;
        if (a == b)
            continue;
        const qk_tensor *ta = a >= 0 ? &g->values[a].t : NULL, *tb = b >= 0 ? &g->values[b].t : NULL;
        int ok = ta && tb && ta->dtype == tb->dtype && qk_tensor_numel(ta) == qk_tensor_numel(tb) &&
                 ta->data && tb->data && memcmp(ta->data, tb->data, qk_tensor_bytes(ta)) == 0;
        if (!ok)
            return qk_error(QK_ERR_FORMAT, "QuantizeLinear '%s' and DequantizeLinear '%s' use different %s",
                            node_label(q), node_label(dq), i == 1 ? "scales" : "zero points");
    }
    return QK_OK;
}

/* A scalar integer initializer (Clip bound). */
static qk_status clip_bound(const qk_graph *g, const qk_node *clip, int i, qk_dtype dt, int32_t dflt, int32_t *out)
{
    if (i >= clip->n_in || clip->in[i] < 0) {
        *out = dflt;
        return QK_OK;
    }
    const qk_value *v = &g->values[clip->in[i]];
    if (!qk_value_is_initializer_with_data(v) || v->t.dtype != dt || qk_tensor_numel(&v->t) != 1)
        return qk_error(QK_ERR_UNSUPPORTED, "Clip '%s' between QuantizeLinear and DequantizeLinear: bound '%s' "
                        "must be a scalar %s initializer", node_label(clip), v->name, qk_dtype_name(dt));
    *out = qk_tensor_int_at(&v->t, 0);
    return QK_OK;
}

static int bits_for_span(int64_t span)
{
    int b = 1;
    while (b < 32 && ((int64_t)1 << b) < span)
        b++;
    return b;
}

/* Weight bits: "qkit.wbits" when every code fits that grid, else 8. */
static void weight_bits(const qk_graph *g, const qk_tensor *codes, const qk_backend *prof, qk_deploy_site *s)
{
    int32_t mn = INT32_MAX, mx = INT32_MIN;
    int64_t n = qk_tensor_numel(codes);
    for (int64_t k = 0; k < n; k++) {
        int32_t v = qk_tensor_int_at(codes, k);
        mn = v < mn ? v : mn;
        mx = v > mx ? v : mx;
    }
    const char *wb = qk_graph_get_meta(g, "qkit.wbits");
    int bits = wb ? atoi(wb) : 8;
    if (bits < 2 || bits > 8)
        bits = 8;
    int32_t lo, hi;
    grid_range(s->is_signed, bits, 0, &lo, &hi);
    if (n > 0 && (mn < lo || mx > hi))
        bits = 8;
    s->bits = bits;
    s->narrow = s->is_signed && prof && prof->weight.narrow && prof->weight.is_signed && !(n > 0 && mn == lo);
    grid_range(s->is_signed, bits, s->narrow, &s->qmin, &s->qmax);
}

static void set_symmetric(qk_deploy_site *s)
{
    int32_t centre = s->is_signed ? 0 : (int32_t)(1u << (s->bits - 1));
    s->symmetric = 1;
    for (int64_t c = 0; c < s->n; c++)
        if (s->zp[c] != centre)
            s->symmetric = 0;
}

static qk_status add_site(qk_deploy_info *info, int *cap, qk_deploy_site **out)
{
    if (info->n_sites == *cap) {
        int nc = *cap ? 2 * *cap : 16;
        qk_deploy_site *s = qk_realloc(info->sites, (size_t)nc * sizeof *s);
        int *a = qk_realloc(info->dq_nodes, (size_t)nc * sizeof(int));
        if (a)
            info->dq_nodes = a;
        int *b = qk_realloc(info->q_nodes, (size_t)nc * sizeof(int));
        if (b)
            info->q_nodes = b;
        int *c = qk_realloc(info->clip_nodes, (size_t)nc * sizeof(int));
        if (c)
            info->clip_nodes = c;
        if (s)
            info->sites = s;
        if (!s || !a || !b || !c)
            return qk_error(QK_ERR_NOMEM, "out of memory");
        *cap = nc;
    }
    int k = info->n_sites++;
    *out = &info->sites[k];
    memset(*out, 0, sizeof **out);
    info->dq_nodes[k] = info->q_nodes[k] = info->clip_nodes[k] = -1;
    return QK_OK;
}

/* One DequantizeLinear node -> one site. */
static qk_status scan_dq(const qk_graph *g, int di, const qk_backend *prof, qk_deploy_info *info, int *cap)
{
    const qk_node *dq = &g->nodes[di];
    if (dq->n_in < 2 || dq->in[0] < 0 || dq->n_out != 1 || dq->out[0] < 0)
        return qk_error(QK_ERR_FORMAT, "DequantizeLinear '%s': needs (x, scale[, zero_point]) and one output",
                        node_label(dq));
    const qk_value *x = &g->values[dq->in[0]];
    qk_deploy_site *s = NULL;
    qk_status st = add_site(info, cap, &s);
    if (st != QK_OK)
        return st;
    int k = info->n_sites - 1;
    info->dq_nodes[k] = di;
    s->node = qk_strdup(node_label(dq));
    if (!s->node)
        return qk_error(QK_ERR_NOMEM, "out of memory");
    if (qk_value_is_initializer_with_data(x)) {
        if (!is_code_type(x->t.dtype))
            return qk_error(QK_ERR_UNSUPPORTED, "DequantizeLinear '%s': codes '%s' are %s (int8, uint8 or int32 "
                            "expected)", node_label(dq), x->name, qk_dtype_name(x->t.dtype));
        s->kind = x->t.dtype == QK_I32 ? QK_DEPLOY_BIAS : QK_DEPLOY_WEIGHT;
        s->is_signed = x->t.dtype != QK_U8;
        if ((st = read_params(g, dq, x->t.dtype, s)) != QK_OK)
            return st;
        if (s->kind == QK_DEPLOY_BIAS) {
            s->bits = 32;
            type_range(QK_I32, &s->qmin, &s->qmax);
            for (int64_t c = 0; c < s->n; c++)
                if (s->zp[c] != 0)
                    return qk_error(QK_ERR_FORMAT, "DequantizeLinear '%s': int32 codes '%s' need zero point 0",
                                    node_label(dq), x->name);
        } else {
            weight_bits(g, &x->t, prof, s);
        }
        s->tensor = weight_name(g, g->values[dq->out[0]].name);
        if (!s->tensor)
            return qk_error(QK_ERR_NOMEM, "out of memory");
        set_symmetric(s);
        info->n_weights += s->kind == QK_DEPLOY_WEIGHT;
        info->n_bias += s->kind == QK_DEPLOY_BIAS;
        return QK_OK;
    }
    /* activation: x <- [Clip <-] QuantizeLinear */
    int ci = -1, qi = x->producer, cnt;
    if (qi >= 0 && qk_node_is(&g->nodes[qi], "Clip")) {
        ci = qi;
        const qk_node *clip = &g->nodes[ci];
        if (sole_consumer(g, clip->out[0], &cnt) != di)
            return qk_error(QK_ERR_UNSUPPORTED, "Clip '%s' between QuantizeLinear and DequantizeLinear has %d "
                            "readers (only the DequantizeLinear may read it)", node_label(clip), cnt);
        qi = clip->n_in > 0 && clip->in[0] >= 0 ? g->values[clip->in[0]].producer : -1;
    }
    if (qi < 0 || !qk_node_is(&g->nodes[qi], "QuantizeLinear"))
        return qk_error(QK_ERR_UNSUPPORTED, "DequantizeLinear '%s': input '%s' is neither an initializer nor the "
                        "codes of a QuantizeLinear (produced by %s); not a QDQ model", node_label(dq), x->name,
                        x->producer >= 0 ? g->nodes[x->producer].op_type : "nothing");
    const qk_node *q = &g->nodes[qi];
    if (q->n_in < 2 || q->in[0] < 0 || q->n_out != 1)
        return qk_error(QK_ERR_FORMAT, "QuantizeLinear '%s': needs (x, scale[, zero_point]) and one output",
                        node_label(q));
    if (sole_consumer(g, q->out[0], &cnt) != (ci >= 0 ? ci : di))
        return qk_error(QK_ERR_UNSUPPORTED, "QuantizeLinear '%s': its codes '%s' have %d readers (only a "
                        "DequantizeLinear, or one Clip, may read them)", node_label(q),
                        g->values[q->out[0]].name, cnt);
    if ((st = same_params(g, q, dq)) != QK_OK)
        return st;
    info->q_nodes[k] = qi;
    info->clip_nodes[k] = ci;
    s->kind = QK_DEPLOY_ACTIVATION;
    const qk_value *zv = q->n_in > 2 && q->in[2] >= 0 ? &g->values[q->in[2]] : NULL;
    qk_dtype ct = zv ? zv->t.dtype : QK_U8;
    if (ct != QK_I8 && ct != QK_U8)
        return qk_error(QK_ERR_UNSUPPORTED, "QuantizeLinear '%s': %s codes (int8 or uint8 expected)", node_label(q),
                        qk_dtype_name(ct));
    s->is_signed = ct == QK_I8;
    if ((st = read_params(g, dq, ct, s)) != QK_OK)
        return st;
    int32_t tlo, thi;
    type_range(ct, &tlo, &thi);
    if (ci >= 0) {
        if ((st = clip_bound(g, &g->nodes[ci], 1, ct, tlo, &s->qmin)) != QK_OK ||
            (st = clip_bound(g, &g->nodes[ci], 2, ct, thi, &s->qmax)) != QK_OK)
            return st;
        if (s->qmin > s->qmax)
            return qk_error(QK_ERR_FORMAT, "Clip '%s': code range [%d, %d] is empty", node_label(&g->nodes[ci]),
                            (int)s->qmin, (int)s->qmax);
        int64_t span = (int64_t)s->qmax - s->qmin + 1;
        s->bits = bits_for_span(span);
        s->narrow = s->is_signed && s->qmin == -(int32_t)(1u << (s->bits - 1)) + 1;
    } else {
        s->bits = 8;
        s->narrow = s->is_signed && prof && prof->act.narrow && prof->act.is_signed;
        grid_range(s->is_signed, 8, s->narrow, &s->qmin, &s->qmax);
    }
    for (int64_t c = 0; c < s->n; c++)
        if (s->zp[c] < s->qmin || s->zp[c] > s->qmax)
            return qk_error(QK_ERR_FORMAT, "QuantizeLinear '%s': zero point %d outside the code range [%d, %d]",
                            node_label(q), (int)s->zp[c], (int)s->qmin, (int)s->qmax);
    set_symmetric(s);
    s->tensor = qk_strdup(g->values[q->in[0]].name);
    if (!s->tensor)
        return qk_error(QK_ERR_NOMEM, "out of memory");
    info->n_activations++;
    return QK_OK;
}

static qk_status scan(const qk_graph *g, qk_deploy_info **out)
{
    *out = NULL;
    qk_deploy_info *info = qk_calloc(1, sizeof *info);
    if (!info)
        return qk_error(QK_ERR_NOMEM, "out of memory");
    qk_status st = QK_OK;
    int cap = 0;
    const qk_backend *prof = meta_backend(g);
    info->backend = prof;
    for (int i = 0; i < g->n_nodes && st == QK_OK; i++) {
        const qk_node *n = &g->nodes[i];
        if (is_integer_op(n))
            st = qk_error(QK_ERR_UNSUPPORTED, "node '%s' is %s: the model is already lowered to integer "
                          "operators; export needs the QDQ model `qkit ptq` writes", node_label(n), n->op_type);
        else if (n->domain && n->domain[0])
            st = qk_error(QK_ERR_UNSUPPORTED, "node '%s' (%s) is in domain '%s': export reads standard ONNX QDQ "
                          "models only", node_label(n), n->op_type, n->domain);
        else if (qk_node_is(n, "DequantizeLinear"))
            st = scan_dq(g, i, prof, info, &cap);
    }
    /* every QuantizeLinear must belong to a site */
    for (int i = 0; i < g->n_nodes && st == QK_OK; i++) {
        if (!qk_node_is(&g->nodes[i], "QuantizeLinear"))
            continue;
        int found = 0;
        for (int k = 0; k < info->n_sites && !found; k++)
            found = info->q_nodes[k] == i;
        if (!found)
            st = qk_error(QK_ERR_UNSUPPORTED, "QuantizeLinear '%s' is not followed by a DequantizeLinear",
                          node_label(&g->nodes[i]));
    }
    if (st == QK_OK && info->n_sites == 0 && qk_graph_get_meta(g, "qkit.quantized"))
        st = qk_error(QK_ERR_UNSUPPORTED, "the model was quantized by qkit (backend %s) but none of its quantizers "
                      "has a QDQ form (a logarithmic code or more than 8 bits): it simulates in qkit only and has "
                      "no deploy files", qk_graph_get_meta(g, "qkit.backend") ? qk_graph_get_meta(g, "qkit.backend")
                      : "?");
    else if (st == QK_OK && info->n_sites == 0)
        st = qk_error(QK_ERR_ARG, "the model has no QuantizeLinear/DequantizeLinear quantizers: it is a float "
                      "model, not a QDQ model (write one with `qkit ptq`)");
    if (st == QK_OK && g->n_meta > 0) {
        info->meta_keys = qk_calloc((size_t)g->n_meta, sizeof(char *));
        info->meta_vals = qk_calloc((size_t)g->n_meta, sizeof(char *));
        if (!info->meta_keys || !info->meta_vals)
            st = qk_error(QK_ERR_NOMEM, "out of memory");
        for (int i = 0; i < g->n_meta && st == QK_OK; i++) {
            info->meta_keys[i] = qk_strdup(g->meta_keys[i]);
            info->meta_vals[i] = qk_strdup(g->meta_vals[i]);
            info->n_meta = i + 1;
            if (!info->meta_keys[i] || !info->meta_vals[i])
                st = qk_error(QK_ERR_NOMEM, "out of memory");
        }
    }
    if (st != QK_OK) {
        qk_deploy_info_free(info);
        return st;
    }
    *out = info;
    return QK_OK;
}

qk_status qk_deploy_scan(const qk_graph *g, qk_deploy_info **out)
{
    if (!g || !out)
        return qk_error(QK_ERR_ARG, "deploy scan: graph or output is NULL");
    return scan(g, out);
}

/* float32((q - zp) * scale), per tensor or along axis. */
static qk_status dequantize_weight(const qk_tensor *q, const qk_deploy_site *s, qk_tensor *w)
{
    qk_status st = qk_tensor_alloc(w, QK_F32, q->ndim, q->dims);
    if (st != QK_OK)
        return st;
    int64_t n = qk_tensor_numel(q), outer = 1, ch = 1, inner = 1;
    if (s->per_channel) {
        for (int d = 0; d < s->axis; d++)
            outer *= q->dims[d];
        ch = q->dims[s->axis];
        for (int d = s->axis + 1; d < q->ndim; d++)
            inner *= q->dims[d];
    } else {
        inner = n;
    }
    float *y = qk_f32(w);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t c = 0; c < ch; c++) {
            float sc = s->scale[s->per_channel ? c : 0];
            int32_t z = s->zp[s->per_channel ? c : 0];
            int64_t base = (o * ch + c) * inner;
            for (int64_t i = 0; i < inner; i++)
                y[base + i] = (float)((int32_t)qk_tensor_int_at(q, base + i) - z) * sc;
        }
    return QK_OK;
}

static void drop_meta(qk_graph *g, const char *key)
{
    for (int i = 0; i < g->n_meta; i++)
        if (strcmp(g->meta_keys[i], key) == 0) {
            qk_free(g->meta_keys[i]);
            qk_free(g->meta_vals[i]);
            memmove(&g->meta_keys[i], &g->meta_keys[i + 1], (size_t)(g->n_meta - i - 1) * sizeof(char *));
            memmove(&g->meta_vals[i], &g->meta_vals[i + 1], (size_t)(g->n_meta - i - 1) * sizeof(char *));
            g->n_meta--;
            return;
        }
}

qk_status qk_deploy_strip_qdq(qk_graph *g)
{
    if (!g)
        return qk_error(QK_ERR_ARG, "deploy strip: graph is NULL");
    qk_deploy_info *info;
    qk_status st = scan(g, &info);
    if (st != QK_OK)
        return st;
    uint8_t *rm = qk_calloc((size_t)g->n_nodes, 1);
    char **tmp_names = qk_calloc((size_t)info->n_sites, sizeof(char *));
    if (!rm || !tmp_names) {
        st = qk_error(QK_ERR_NOMEM, "out of memory");
        goto done;
    }
    /* 1. new float weights under temporary names; consumers rewired */
    for (int k = 0; k < info->n_sites && st == QK_OK; k++) {
        const qk_deploy_site *s = &info->sites[k];
        int di = info->dq_nodes[k];
        int dq_out = g->nodes[di].out[0];
        rm[di] = 1;
        if (info->q_nodes[k] >= 0)
            rm[info->q_nodes[k]] = 1;
        if (info->clip_nodes[k] >= 0)
            rm[info->clip_nodes[k]] = 1;
        int repl;
        if (s->kind == QK_DEPLOY_ACTIVATION) {
            repl = g->nodes[info->q_nodes[k]].in[0];
        } else {
            qk_tensor w = {0};
            if ((st = dequantize_weight(&g->values[g->nodes[di].in[0]].t, s, &w)) != QK_OK)
                break;
            tmp_names[k] = qk_graph_unique_name(g, "qk_deploy_weight");
            if (!tmp_names[k]) {
                qk_tensor_free(&w);
                st = qk_error(QK_ERR_NOMEM, "out of memory");
                break;
            }
            repl = qk_graph_add_init(g, tmp_names[k], QK_VALUE_PARAM, &w);
            qk_tensor_free(&w);
            if (repl < 0) {
                st = QK_ERR_NOMEM;
                break;
            }
            g->values[repl].no_decay = g->values[repl].t.ndim <= 1;
        }
        st = qk_graph_replace_uses(g, dq_out, repl, -1);
    }
    /* 2. drop the Q/Clip/DQ nodes and their constants */
    if (st == QK_OK)
        st = qk_graph_remove_nodes(g, rm);
    /* 3. the weights take their names */
    for (int k = 0; k < info->n_sites && st == QK_OK; k++) {
        if (!tmp_names[k])
            continue;
        int v = qk_graph_find_value(g, tmp_names[k]);
        if (v < 0 || qk_graph_find_value(g, info->sites[k].tensor) >= 0) {
            st = qk_error(QK_ERR_STATE, "deploy strip: cannot name the float weight '%s'", info->sites[k].tensor);
            break;
        }
        char *nm = qk_strdup(info->sites[k].tensor);
        if (!nm) {
            st = qk_error(QK_ERR_NOMEM, "out of memory");
            break;
        }
        qk_free(g->values[v].name);
        g->values[v].name = nm;
    }
    if (st == QK_OK) {
        drop_meta(g, "qkit.quantized");
        st = qk_graph_set_meta(g, "qkit.deploy", "float model of a QDQ model");
    }
    if (st == QK_OK)
        st = qk_graph_sort(g);
done:
    for (int k = 0; tmp_names && k < info->n_sites; k++)
        qk_free(tmp_names[k]);
    qk_free(tmp_names);
    qk_free(rm);
    qk_deploy_info_free(info);
    return st;
}
