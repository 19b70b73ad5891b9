/* Deploy files, part 3: a QDQ graph rewritten into ONNX QLinearConv /
 * QLinearMatMul (the onnx-qlinear backend, ONNX Runtime's operator-oriented
 * format; deploy.h qk_deploy_to_qlinear). Standard ONNX ops only: layers
 * that do not match a pattern stay in QDQ form, which ONNX Runtime also
 * runs. */
#include "qkit/deploy.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int is_graph_output(const qk_graph *g, int v)
{
    for (int i = 0; i < g->n_outputs; i++)
        if (g->outputs[i] == v)
            return 1;
    return 0;
}

/* The only node reading v (and v not a graph output), else -1. */
static int sole_reader(const qk_graph *g, int v)
{
    int who = -1, c = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        for (int j = 0; j < g->nodes[i].n_in; j++)
            if (g->nodes[i].in[j] == v) {
                c++;
                who = i;
                break;
            }
    }
    return c == 1 && !is_graph_output(g, v) ? who : -1;
}

static int site_of_dq(const qk_deploy_info *info, int node)
{
    for (int k = 0; k < info->n_sites; k++)
        if (info->dq_nodes[k] == node)
            return k;
    return -1;
}

static int site_of_q(const qk_deploy_info *info, int node)
{
    for (int k = 0; k < info->n_sites; k++)
        if (info->q_nodes[k] == node)
            return k;
    return -1;
}

/* An 8-bit per-tensor activation site without a Clip (the QLinear output
 * saturates to the whole type, so narrower grids do not fit). */
static int plain_act(const qk_deploy_info *info, int k)
{
    const qk_deploy_site *s = &info->sites[k];
    int32_t lo = s->is_signed ? -128 : 0, hi = s->is_signed ? 127 : 255;
    return s->kind == QK_DEPLOY_ACTIVATION && !s->per_channel && info->clip_nodes[k] < 0 && s->qmin >= lo &&
           s->qmax <= hi && s->bits == 8 && !s->narrow;
}

/* A zero point input: the node's own, or a new scalar 0 of type dt. */
static int zp_input(qk_graph *g, const qk_node *n, int i, qk_dtype dt)
{
    if (i < n->n_in && n->in[i] >= 0)
        return n->in[i];
    char *name = qk_graph_unique_name(g, "qk_zero_point");
    qk_tensor t;
    if (!name || qk_tensor_alloc(&t, dt, 0, NULL) != QK_OK) {
        qk_free(name);
        return -1;
    }
    int v = qk_graph_add_init(g, name, QK_VALUE_CONST, &t);
    qk_free(name);
    return v;
}

static qk_status push(int **list, int *n, int *cap, int v)
{
    if (*n == *cap) {
        int nc = *cap ? 2 * *cap : 16;
        int *p = qk_realloc(*list, (size_t)nc * sizeof(int));
        if (!p)
            return qk_error(QK_ERR_NOMEM, "out of memory");
        *list = p;
        *cap = nc;
    }
    (*list)[(*n)++] = v;
    return QK_OK;
}

/* int32 bias for QLinearConv: RNE(b / float32(s_x * s_w[c])), saturated
 * (ONNX Runtime's quantizer). */
static int make_bias(qk_graph *g, const qk_value *b, float sx, const qk_deploy_site *w, const char *base)
{
    int64_t co = qk_tensor_numel(&b->t);
    qk_tensor t;
    if (qk_tensor_alloc(&t, QK_I32, 1, (int64_t[]){ co }) != QK_OK)
        return -1;
    for (int64_t c = 0; c < co; c++) {
        double bs = (double)(sx * w->scale[w->per_channel ? c : 0]);
        double q = nearbyint((double)qk_f32(&b->t)[c] / bs);
        q = q > 2147483647.0 ? 2147483647.0 : q < -2147483648.0 ? -2147483648.0 : q;
        ((int32_t *)t.data)[c] = (int32_t)q;
    }
    char nm[280];
    snprintf(nm, sizeof nm, "%s_quantized", base);
    char *name = qk_graph_unique_name(g, nm);
    if (!name) {
        qk_tensor_free(&t);
        return -1;
    }
    int v = qk_graph_add_init(g, name, QK_VALUE_CONST, &t);
    qk_free(name);
    return v;
}

/* QLinearMatMul's b: the weight codes as [K, N] (transposed from Gemm's
 * transB = 1 [N, K]) and of a's type (what every ONNX Runtime kernel
 * takes): int8 <-> uint8 by +-128 on the codes and the zero points,
 * which leaves every q - zp unchanged. New initializers only when needed;
 * *codes / *zp are value indices (*zp -1 when the DQ has none and no shift). */
static qk_status matmul_weight(qk_graph *g, int codes_v, int zp_v, int transpose, qk_dtype want, int *codes, int *zp)
{
    *codes = codes_v;
    *zp = zp_v;
    const qk_value *w = &g->values[codes_v];
    int shift = w->t.dtype == want ? 0 : want == QK_U8 ? 128 : -128;
    if (!transpose && !shift)
        return QK_OK;
    int64_t r = w->t.dims[0], c = w->t.dims[1];
    qk_tensor t, z = { 0 };
    if (qk_tensor_alloc(&t, want, 2, transpose ? (int64_t[]){ c, r } : (int64_t[]){ r, c }) != QK_OK)
        return qk_error(QK_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < r; i++)
        for (int64_t j = 0; j < c; j++) {
            int32_t q = (w->t.dtype == QK_I8 ? ((const int8_t *)w->t.data)[i * c + j]
                                             : ((const uint8_t *)w->t.data)[i * c + j]) + shift;
            ((uint8_t *)t.data)[transpose ? j * r + i : i * c + j] = (uint8_t)(want == QK_I8 ? (uint8_t)(int8_t)q : q);
        }
    char nm[280];
    snprintf(nm, sizeof nm, "%s%s%s", w->name, transpose ? "_t" : "", shift ? (want == QK_U8 ? "_u8" : "_s8") : "");
    if (shift) {
        const qk_tensor *zt = zp_v >= 0 ? &g->values[zp_v].t : NULL;
        int64_t n = zt ? qk_tensor_numel(zt) : 1;
        if (qk_tensor_alloc(&z, want, zt ? zt->ndim : 0, zt ? zt->dims : NULL) != QK_OK) {
            qk_tensor_free(&t);
            return qk_error(QK_ERR_NOMEM, "out of memory");
        }
        for (int64_t k = 0; k < n; k++) {
            int32_t q = (zt ? (zt->dtype == QK_I8 ? ((const int8_t *)zt->data)[k] : ((const uint8_t *)zt->data)[k])
                            : 0) + shift;
            ((uint8_t *)z.data)[k] = (uint8_t)(want == QK_I8 ? (uint8_t)(int8_t)q : q);
        }
    }
    char *name = qk_graph_unique_name(g, nm);
    int v = name ? qk_graph_add_init(g, name, QK_VALUE_CONST, &t) : -1;
    qk_free(name);
    qk_tensor_free(&t);
    if (v < 0) {
        qk_tensor_free(&z);
        return qk_error(QK_ERR_NOMEM, "out of memory");
    }
    *codes = v;
    if (shift) {
        snprintf(nm, sizeof nm, "%s_zero_point", g->values[v].name);
        name = qk_graph_unique_name(g, nm);
        int zv = name ? qk_graph_add_init(g, name, QK_VALUE_CONST, &z) : -1;
        qk_free(name);
        qk_tensor_free(&z);
        if (zv < 0)
            return qk_error(QK_ERR_NOMEM, "out of memory");
        *zp = zv;
    }
    return QK_OK;
}

/* Try one weighted node; *done = 1 when rewritten. */
typedef struct renames {
    int n, cap;
    char **from, **to; /* after the removal: value `from` takes the name `to` */
} renames;

static qk_status rename_later(renames *rn, const char *from, const char *to)
{
    if (rn->n == rn->cap) {
        int nc = rn->cap ? 2 * rn->cap : 8;
        char **a = qk_realloc(rn->from, (size_t)nc * sizeof(char *));
        if (a)
            rn->from = a;
        char **b = qk_realloc(rn->to, (size_t)nc * sizeof(char *));
        if (b)
            rn->to = b;
        if (!a || !b)
            return qk_error(QK_ERR_NOMEM, "out of memory");
        rn->cap = nc;
    }
    rn->from[rn->n] = qk_strdup(from);
    rn->to[rn->n] = qk_strdup(to);
    rn->n++;
    return rn->from[rn->n - 1] && rn->to[rn->n - 1] ? QK_OK : qk_error(QK_ERR_NOMEM, "out of memory");
}

static qk_status convert_layer(qk_graph *g, const qk_deploy_info *info, int ni, int **rm, int *n_rm, int *cap_rm,
                               renames *rn, int *done)
{
    *done = 0;
    qk_node *n = &g->nodes[ni];
    int conv = qk_node_is(n, "Conv"), gemm = qk_node_is(n, "Gemm"), mm = qk_node_is(n, "MatMul");
    if ((!conv && !gemm && !mm) || n->n_in < 2 || n->in[0] < 0 || n->in[1] < 0 || n->n_out != 1)
        return QK_OK;
    int da = g->values[n->in[0]].producer, dw = g->values[n->in[1]].producer;
    int ka = da >= 0 ? site_of_dq(info, da) : -1, kw = dw >= 0 ? site_of_dq(info, dw) : -1;
    if (ka < 0 || kw < 0 || !plain_act(info, ka) || info->sites[kw].kind != QK_DEPLOY_WEIGHT)
        return QK_OK;
    const qk_deploy_site *w = &info->sites[kw];
    const qk_value *wv = &g->values[g->nodes[dw].in[0]];
    int bias = n->n_in > 2 && n->in[2] >= 0 ? n->in[2] : -1;
    if (conv) {
        if (w->per_channel && w->axis != 0)
            return QK_OK;
        if (bias >= 0 && (g->values[bias].producer >= 0 || g->values[bias].t.dtype != QK_F32 ||
                          !g->values[bias].t.data || g->values[bias].t.ndim != 1))
            return QK_OK;
    } else {
        if (bias >= 0 || wv->t.ndim != 2)
            return QK_OK; /* QLinearMatMul has no bias: such layers stay QDQ */
        if (gemm && (qk_node_int(n, "transA", 0) != 0 || qk_node_float(n, "alpha", 1.0f) != 1.0f))
            return QK_OK;
        int tb = gemm ? (int)qk_node_int(n, "transB", 0) : 0;
        if (w->per_channel && w->axis != (tb ? 0 : 1))
            return QK_OK;
    }
    /* output chain: [Relu ->] QuantizeLinear */
    int v = n->out[0], relu = -1;
    int r = sole_reader(g, v);
    if (r >= 0 && qk_node_is(&g->nodes[r], "Relu")) {
        relu = r;
        v = g->nodes[r].out[0];
        r = sole_reader(g, v);
    }
    int ky = r >= 0 ? site_of_q(info, r) : -1;
    if (ky < 0 || !plain_act(info, ky))
        return QK_OK;
    const qk_deploy_site *y = &info->sites[ky];
    if (relu >= 0 && y->zp[0] != (y->is_signed ? -128 : 0))
        return QK_OK; /* Relu is exact only as the output saturation */
    int qy = r;
    qk_dtype at = info->sites[ka].is_signed ? QK_I8 : QK_U8, yt = y->is_signed ? QK_I8 : QK_U8;
    qk_dtype wt = wv->t.dtype;
    /* ONNX Runtime's kernels: y of x's type; int8 x takes int8 w only (MatMul
     * weights are converted below, conv weights are not) */
    if (yt != at || (conv && at == QK_I8 && wt != QK_I8))
        return QK_OK;
    /* inputs (indices taken before anything is added) */
    int x_codes = g->nodes[da].in[0], sx = g->nodes[da].in[1];
    int w_codes = g->nodes[dw].in[0], sw = g->nodes[dw].in[1];
    int sy = g->nodes[qy].in[1], y_out = g->nodes[qy].out[0];
    float sxf = info->sites[ka].scale[0];
    char base[200];
    snprintf(base, sizeof base, "%s", n->name && n->name[0] ? n->name : g->values[n->out[0]].name);
    int zx = zp_input(g, &g->nodes[da], 2, at);
    int zw;
    if (!conv) {
        int z0 = g->nodes[dw].n_in > 2 ? g->nodes[dw].in[2] : -1;
        int tb = gemm && qk_node_int(&g->nodes[ni], "transB", 0);
        qk_status st0 = matmul_weight(g, w_codes, z0, tb, at, &w_codes, &zw);
        if (st0 != QK_OK)
            return st0;
        wt = at;
        if (zw < 0)
            zw = zp_input(g, &g->nodes[dw], 2, wt);
    } else {
        zw = zp_input(g, &g->nodes[dw], 2, wt);
    }
    int zy = zp_input(g, &g->nodes[qy], 2, yt);
    if (zx < 0 || zw < 0 || zy < 0)
        return qk_error(QK_ERR_NOMEM, "out of memory");
    int nb = -1;
    if (bias >= 0) {
        char bn[256];
        snprintf(bn, sizeof bn, "%s", g->values[bias].name);
        if ((nb = make_bias(g, &g->values[bias], sxf, w, bn)) < 0)
            return qk_error(QK_ERR_NOMEM, "out of memory");
    }
    char nm[256];
    snprintf(nm, sizeof nm, "%s_qlinear", base);
    char *name = qk_graph_unique_name(g, nm);
    if (!name)
        return qk_error(QK_ERR_NOMEM, "out of memory");
    /* the codes get a new value now and the Q's name once the Q is gone */
    char *yname = qk_graph_unique_name(g, g->values[y_out].name);
    int y_new = yname ? qk_graph_add_value(g, yname, QK_VALUE_ACT) : -1;
    qk_status st = y_new >= 0 ? rename_later(rn, yname, g->values[y_out].name) : QK_ERR_NOMEM;
    qk_free(yname);
    int in[9] = { x_codes, sx, zx, w_codes, sw, zw, sy, zy, nb };
    int nd = st == QK_OK ? qk_graph_add_node(g, conv ? "QLinearConv" : "QLinearMatMul", name,
                                             conv ? (nb >= 0 ? 9 : 8) : 8, in, 1, &y_new)
                         : -1;
    qk_free(name);
    if (nd < 0)
        return st != QK_OK ? st : QK_ERR_NOMEM;
    if ((st = qk_graph_replace_uses(g, y_out, y_new, nd)) != QK_OK)
        return st;
    if (conv) { /* the window attributes, as they are */
        const qk_node *c = &g->nodes[ni];
        for (int a = 0; a < c->n_attr; a++) {
            const qk_attr *at2 = &c->attr[a];
            qk_status st = QK_OK;
            if (at2->type == QK_ATTR_INT)
                st = qk_node_set_int(g, nd, at2->name, at2->i);
            else if (at2->type == QK_ATTR_INTS)
                st = qk_node_set_ints(g, nd, at2->name, at2->n, at2->ints);
            else if (at2->type == QK_ATTR_STRING)
                st = qk_node_set_string(g, nd, at2->name, at2->s);
            if (st != QK_OK)
                return st;
        }
    }
    st = push(rm, n_rm, cap_rm, ni);
    if (st == QK_OK && relu >= 0)
        st = push(rm, n_rm, cap_rm, relu);
    if (st == QK_OK)
        st = push(rm, n_rm, cap_rm, qy);
    *done = st == QK_OK;
    return st;
}

qk_status qk_deploy_to_qlinear(qk_graph *g, int *n_layers)
{
    if (n_layers)
        *n_layers = 0;
    if (!g)
        return qk_error(QK_ERR_ARG, "deploy qlinear: graph is NULL");
    qk_deploy_info *info;
    qk_status st = qk_deploy_scan(g, &info);
    if (st != QK_OK)
        return st;
    int n0 = g->n_nodes, *rm = NULL, n_rm = 0, cap_rm = 0, count = 0;
    renames rn = { 0, 0, NULL, NULL };
    for (int i = 0; i < n0 && st == QK_OK; i++) {
        int done = 0;
        st = convert_layer(g, info, i, &rm, &n_rm, &cap_rm, &rn, &done);
        count += done;
    }
    uint8_t *mark = NULL;
    if (st == QK_OK && !(mark = qk_calloc((size_t)g->n_nodes, 1)))
        st = qk_error(QK_ERR_NOMEM, "out of memory");
    if (st == QK_OK) {
        for (int i = 0; i < n_rm; i++)
            mark[rm[i]] = 1;
        /* DequantizeLinear nodes nobody reads any more */
        for (int changed = 1; changed;) {
            changed = 0;
            for (int i = 0; i < g->n_nodes; i++) {
                const qk_node *n = &g->nodes[i];
                if (mark[i] || !qk_node_is(n, "DequantizeLinear") || is_graph_output(g, n->out[0]))
                    continue;
                int readers = 0;
                for (int j = 0; j < g->n_nodes && !readers; j++)
                    for (int k = 0; !mark[j] && k < g->nodes[j].n_in; k++)
                        readers += g->nodes[j].in[k] == n->out[0];
                if (!readers) {
                    mark[i] = 1;
                    changed = 1;
                }
            }
        }
        st = qk_graph_remove_nodes(g, mark);
    }
    for (int i = 0; i < rn.n && st == QK_OK; i++) {
        int v = qk_graph_find_value(g, rn.from[i]);
        if (v < 0 || qk_graph_find_value(g, rn.to[i]) >= 0) {
            st = qk_error(QK_ERR_STATE, "deploy qlinear: cannot name the codes '%s'", rn.to[i]);
            break;
        }
        qk_free(g->values[v].name);
        g->values[v].name = rn.to[i];
        rn.to[i] = NULL;
    }
    if (st == QK_OK) {
        char buf[32];
        snprintf(buf, sizeof buf, "%d", count);
        st = qk_graph_set_meta(g, "qkit.deploy", "QLinearConv/QLinearMatMul model of a QDQ model");
        if (st == QK_OK)
            st = qk_graph_set_meta(g, "qkit.qlinear_layers", buf);
    }
    if (st == QK_OK)
        st = qk_graph_sort(g);
    if (st == QK_OK && n_layers)
        *n_layers = count;
    for (int i = 0; i < rn.n; i++) {
        qk_free(rn.from[i]);
        qk_free(rn.to[i]);
    }
    qk_free(rn.from);
    qk_free(rn.to);
    qk_free(mark);
    qk_free(rm);
    qk_deploy_info_free(info);
    return st;
}
