/* The QDQ form of a calibrated model (ptq.h, "The QDQ model file"): each
 * FakeQuant node becomes QuantizeLinear [-> Clip] -> DequantizeLinear, or a
 * DequantizeLinear of stored integer weight codes. */
#include "ptq_internal.h"
#include "qkit/onnx.h"
#include "qkit/ops.h"

#include <stdio.h>
#include <string.h>

/* A constant "<value><suffix>" of n entries (a scalar when `scalar`); -1 when out of memory. */
static int add_tensor(qk_graph *g, const char *value, const char *suffix, qk_dtype dt, int64_t n, int scalar,
                      const void *vals)
{
    qk_tensor t;
    int64_t dims[1] = { n };
    if (qk_tensor_alloc(&t, dt, scalar ? 0 : 1, dims) != QK_OK)
        return -1;
    for (int64_t i = 0; i < n; i++) {
        if (dt == QK_F32)
            qk_f32(&t)[i] = ((const float *)vals)[i];
        else if (dt == QK_I8)
            ((int8_t *)t.data)[i] = (int8_t)((const int32_t *)vals)[i];
        else
            ((uint8_t *)t.data)[i] = (uint8_t)((const int32_t *)vals)[i];
    }
    char *name = qk_ptq_site_name(g, value, suffix);
    int v = name ? qk_graph_add_init(g, name, QK_VALUE_CONST, &t) : -1;
    qk_free(name);
    if (v < 0)
        qk_tensor_free(&t);
    return v;
}

/* Turn node k into op_type with inputs in[0..nin). */
static qk_status retarget(qk_graph *g, int k, const char *op_type, int nin, const int *in)
{
    qk_node *n = &g->nodes[k];
    if (n->op && n->op->destroy)
        n->op->destroy(n);
    n->state = NULL;
    n->op = NULL;
    char *t = qk_strdup(op_type);
    int *p = qk_realloc(n->in, (size_t)nin * sizeof *p);
    if (!t || !p) {
        qk_free(t);
        if (p)
            n->in = p;
        return qk_error(QK_ERR_NOMEM, "QDQ conversion: out of memory");
    }
    qk_free(n->op_type);
    n->op_type = t;
    qk_free(n->domain);
    n->domain = NULL;
    n->in = p;
    memcpy(n->in, in, (size_t)nin * sizeof *in);
    n->n_in = nin;
    return QK_OK;
}

static qk_status weight_site(qk_qmodel *m, int s)
{
    qk_graph *g = m->g;
    qk_fq_rt *rt = &m->rt[s];
    const qk_qsite *t = &m->sites[s];
    int k = t->node, wv = g->nodes[k].in[0];
    qk_dtype dt = t->qp.is_signed ? QK_I8 : QK_U8;
    int64_t numel = qk_tensor_numel(&g->values[wv].t);
    qk_tensor q;
    qk_status st = qk_tensor_alloc(&q, dt, g->values[wv].t.ndim, g->values[wv].t.dims);
    if (st != QK_OK)
        return st;
    for (int64_t i = 0; i < numel; i++) {
        if (dt == QK_I8)
            ((int8_t *)q.data)[i] = (int8_t)rt->codes[i];
        else
            ((uint8_t *)q.data)[i] = (uint8_t)rt->codes[i];
    }
    char *name = qk_ptq_site_name(g, t->value, "_quantized");
    int qv = name ? qk_graph_add_init(g, name, QK_VALUE_CONST, &q) : -1;
    qk_free(name);
    if (qv < 0) {
        qk_tensor_free(&q);
        return qk_error(QK_ERR_NOMEM, "QDQ conversion: out of memory");
    }
    int scalar = rt->axis < 0;
    int sv = add_tensor(g, t->value, "_scale", QK_F32, rt->n_ch, scalar, rt->scale);
    int zv = add_tensor(g, t->value, "_zero_point", dt, rt->n_ch, scalar, rt->zp);
    if (sv < 0 || zv < 0)
        return qk_error(QK_ERR_NOMEM, "QDQ conversion: out of memory");
    int in[3] = { qv, sv, zv };
    if ((st = retarget(g, k, "DequantizeLinear", 3, in)) != QK_OK)
        return st;
    if (!scalar)
        st = qk_node_set_int(g, k, "axis", rt->axis);
    return st;
}

static qk_status act_site(qk_qmodel *m, int s)
{
    qk_graph *g = m->g;
    qk_fq_rt *rt = &m->rt[s];
    const qk_qsite *t = &m->sites[s];
    int k = t->node, xv = g->nodes[k].in[0], deq = g->nodes[k].out[0];
    qk_dtype dt = t->qp.is_signed ? QK_I8 : QK_U8;
    int sv = add_tensor(g, t->value, "_scale", QK_F32, 1, 1, rt->scale);
    int zv = add_tensor(g, t->value, "_zero_point", dt, 1, 1, rt->zp);
    char *name = qk_ptq_site_name(g, t->value, "_quantized");
    int qv = name ? qk_graph_add_value(g, name, QK_VALUE_ACT) : -1;
    qk_free(name);
    if (sv < 0 || zv < 0 || qv < 0)
        return qk_error(QK_ERR_NOMEM, "QDQ conversion: out of memory");
    int in[3] = { xv, sv, zv };
    qk_status st = retarget(g, k, "QuantizeLinear", 3, in);
    if (st != QK_OK)
        return st;
    g->nodes[k].out[0] = qv;
    g->values[qv].producer = k;
    g->values[deq].producer = -1;
    int cv = qv;
    int32_t lo = rt->qn[0], hi = rt->qp[0];
    int32_t full_lo = dt == QK_I8 ? -128 : 0, full_hi = dt == QK_I8 ? 127 : 255;
    if (lo != full_lo || hi != full_hi) {
        int lv = add_tensor(g, t->value, "_qmin", dt, 1, 1, &lo);
        int hv = add_tensor(g, t->value, "_qmax", dt, 1, 1, &hi);
        name = qk_ptq_site_name(g, t->value, "_clipped");
        cv = name ? qk_graph_add_value(g, name, QK_VALUE_ACT) : -1;
        qk_free(name);
        name = qk_ptq_site_name(g, t->value, "_clip");
        int cin[3] = { qv, lv, hv };
        int ck = lv >= 0 && hv >= 0 && cv >= 0 && name ? qk_graph_add_node(g, "Clip", name, 3, cin, 1, &cv) : -1;
        qk_free(name);
        if (ck < 0)
            return qk_error(QK_ERR_NOMEM, "QDQ conversion: out of memory");
    }
    name = qk_ptq_site_name(g, t->value, "_dequantize");
    int din[3] = { cv, sv, zv };
    int dk = name ? qk_graph_add_node(g, "DequantizeLinear", name, 3, din, 1, &deq) : -1;
    qk_free(name);
    return dk < 0 ? qk_error(QK_ERR_NOMEM, "QDQ conversion: out of memory") : QK_OK;
}

/* A site with no ONNX form: its consumers read the float value (weights:
 * the stored fake-quantized values). */
static qk_status drop_site(qk_qmodel *m, int s, uint8_t *remove)
{
    qk_graph *g = m->g;
    const qk_fq_rt *rt = &m->rt[s];
    int k = m->sites[s].node, xv = g->nodes[k].in[0], deq = g->nodes[k].out[0];
    if (m->sites[s].is_weight && rt->cst) {
        qk_tensor *w = &g->values[xv].t;
        if (qk_tensor_numel(w) != rt->cst_n)
            return qk_error(QK_ERR_STATE, "QDQ conversion: weight '%s' changed shape", m->sites[s].value);
        memcpy(w->data, rt->cst, (size_t)rt->cst_n * sizeof(float));
    }
    remove[k] = 1;
    return qk_graph_replace_uses(g, deq, xv, k);
}

static qk_status set_meta(qk_qmodel *m, int float_sites)
{
    qk_graph *g = m->g;
    char buf[64];
    qk_status st = qk_graph_set_meta(g, "qkit.quantized", "1");
    if (st == QK_OK)
        st = qk_graph_set_meta(g, "qkit.backend", m->cfg.backend->name);
    snprintf(buf, sizeof buf, "%d", m->wq.bits);
    if (st == QK_OK)
        st = qk_graph_set_meta(g, "qkit.wbits", buf);
    snprintf(buf, sizeof buf, "%d", m->aq.bits);
    if (st == QK_OK)
        st = qk_graph_set_meta(g, "qkit.abits", buf);
    if (st == QK_OK)
        st = qk_graph_set_meta(g, "qkit.w_observer", m->cfg.w_observer);
    if (st == QK_OK)
        st = qk_graph_set_meta(g, "qkit.a_observer", m->cfg.a_observer);
    if (st == QK_OK)
        st = qk_graph_set_meta(g, "qkit.arith", qk_arith_name(m->cfg.backend->arith));
    if (st == QK_OK)
        st = qk_graph_set_meta(g, "qkit.bit_alloc", qk_ptq_bit_alloc_name(m->cfg.bit_alloc));
    if (st == QK_OK)
        st = qk_graph_set_meta(g, "qkit.bias_correct", m->cfg.bias_correct ? "1" : "0");
    snprintf(buf, sizeof buf, "%d", float_sites);
    if (st == QK_OK)
        st = qk_graph_set_meta(g, "qkit.float_sites", buf);
    /* QuantizeLinear is round-half-to-even in ONNX; a profile whose engine
     * rounds otherwise (tvm, vitis: half up) says so here, and qkit's
     * QuantizeLinear follows it (qdq_ops.c; ONNX Runtime reads the file with
     * ties to even: an approximation) */
    if (st == QK_OK && m->aq.round != QK_ROUND_HALF_EVEN)
        st = qk_graph_set_meta(g, "qkit.rounding", qk_round_name(m->aq.round));
    return st;
}

static qk_status convert_qdq(qk_qmodel *m)
{
    if (m->exported)
        return QK_OK;
    if (!m->calibrated)
        return qk_error(QK_ERR_STATE, "QDQ conversion: calibrate the model first");
    for (int s = 0; s < m->n_sites; s++)
        if (!m->sites[s].is_weight && m->rt[s].axis >= 0 && !m->rt[s].via_quantizer)
            return qk_error(QK_ERR_UNSUPPORTED,
                            "activation '%s' has per-channel bit-widths (activation bit allocation): that is "
                            "simulation only and has no QDQ form; drop bit allocation for activations to write "
                            "a model file",
                            m->sites[s].value);
    qk_graph *g = m->g;
    int n0 = g->n_nodes;
    uint8_t *remove = qk_calloc((size_t)n0, 1);
    if (!remove)
        return qk_error(QK_ERR_NOMEM, "QDQ conversion: out of memory");
    uint8_t *is_layer_w = qk_calloc((size_t)(m->n_sites ? m->n_sites : 1), 1);
    qk_status st = is_layer_w ? QK_OK : qk_error(QK_ERR_NOMEM, "QDQ conversion: out of memory");
    for (int i = 0; st == QK_OK && i < m->n_layers; i++)
        is_layer_w[m->layers[i].w_site] = 1;
    int float_sites = 0;
    for (int s = 0; s < m->n_sites && st == QK_OK; s++) {
        const qk_qsite *t = &m->sites[s];
        const qk_fq_rt *rt = &m->rt[s];
        int linear = t->qp.scheme == QK_QSCHEME_LINEAR && t->qp.bits <= 8;
        if (t->is_weight && is_layer_w[s] && rt->codes && linear)
            st = weight_site(m, s);
        else if (!t->is_weight && linear && !rt->via_quantizer)
            st = act_site(m, s);
        else {
            float_sites += !t->is_weight;
            st = drop_site(m, s, remove);
        }
    }
    qk_free(is_layer_w);
    if (st == QK_OK) {
        /* nodes added above are never removed: grow the flags */
        uint8_t *r = qk_realloc(remove, (size_t)g->n_nodes);
        if (!r) {
            st = qk_error(QK_ERR_NOMEM, "QDQ conversion: out of memory");
        } else {
            remove = r;
            for (int k = n0; k < g->n_nodes; k++)
                remove[k] = 0;
        }
    }
    if (st == QK_OK)
        st = qk_graph_remove_nodes(g, remove);
    qk_free(remove);
    if (st == QK_OK) {
        if (g->opset < 13)
            g->opset = 13;
        st = set_meta(m, float_sites);
    }
    if (st == QK_OK)
        st = qk_quant_bind(g);
    if (st == QK_OK)
        m->exported = 1;
    return st;
}

qk_status qk_ptq_convert_qdq(qk_qmodel *m)
{
    double t0 = qk_now();
    qk_status st = convert_qdq(m);
    m->seconds += qk_now() - t0;
    return st;
}

qk_status qk_ptq_save_qdq(qk_qmodel *m, const char *path)
{
    double t0 = qk_now();
    qk_status st = convert_qdq(m);
    if (st == QK_OK)
        st = qk_onnx_save(m->g, path);
    m->seconds += qk_now() - t0;
    return st;
}
