/* prepare: fold BN where the profile folds it, decide which tensors get
 * quantizers (the profile's coverage, add and concat rules, first/last
 * layer overrides, user exclusions) and insert a FakeQuant node for each
 * (ptq.h). Calibration is in ptq_calib.c, the QDQ file in ptq_qdq.c. */
#include "ptq_internal.h"
#include "qkit/fold.h"
#include "qkit/ops.h"

#include <stdio.h>
#include <string.h>

void qk_ptq_config_default(qk_ptq_config *c)
{
    memset(c, 0, sizeof *c);
}

qk_status qk_ptq_config_check(const qk_ptq_config *c)
{
    int abits = c->abits ? c->abits : c->reduce_range ? 7 : 0;
    return qk_backend_qparams(c->backend, c->wbits, abits, NULL, NULL);
}

const char *qk_ptq_bit_alloc_name(int flags)
{
    static const char *const names[4] = { "none", "w", "a", "wa" };
    return names[flags & (QK_BITALLOC_W | QK_BITALLOC_A)];
}

/* Conv / Gemm / MatMul with an initializer weight. */
static int is_layer(const qk_graph *g, const qk_node *n)
{
    if (!(qk_node_is(n, "Conv") || qk_node_is(n, "Gemm") || qk_node_is(n, "MatMul")) || n->n_in < 2 || n->in[1] < 0)
        return 0;
    return qk_value_is_initializer(&g->values[n->in[1]]);
}

/* Ops whose output lies on the input's grid (same scale and zero point). */
static int is_passthrough(const qk_node *n)
{
    static const char *const t[] = { "Flatten", "Reshape", "Identity", "Dropout", "Squeeze", "Unsqueeze",
                                     "MaxPool", NULL };
    for (int i = 0; t[i]; i++)
        if (qk_node_is(n, t[i]))
            return 1;
    return 0;
}

static int is_pool(const qk_node *n)
{
    return qk_node_is(n, "MaxPool") || qk_node_is(n, "AveragePool") || qk_node_is(n, "GlobalAveragePool");
}

static int is_fusable_act(const qk_node *n) { return qk_node_is(n, "Relu") || qk_node_is(n, "Clip"); }

/* Lower bound of a Clip (input 1 constant, or the opset-6 attribute). */
static float clip_min(const qk_graph *g, const qk_node *n)
{
    if (n->n_in > 1 && n->in[1] >= 0) {
        const qk_value *v = &g->values[n->in[1]];
        if (qk_value_is_initializer(v) && v->t.dtype == QK_F32 && v->t.data)
            return qk_f32(&v->t)[0];
        return -1.0f;
    }
    return qk_node_float(n, "min", -1.0f);
}

typedef struct req {
    int site, node, input; /* node input `input` reads the site's dequantized value */
} req;

typedef struct prep {
    qk_qmodel *m;
    const qk_backend *b;
    int *site_of;     /* per value: site index or -1 */
    uint8_t *inherit; /* per value: lies on an upstream quantizer's grid */
    uint8_t *nonneg;  /* per value: known >= 0 */
    uint8_t *reads_q; /* per node: its input 0 reads a quantized value */
    req *reqs;
    int n_reqs, cap_reqs;
    int first_layer, last_layer; /* node indices */
} prep;

static qk_status push_req(prep *p, int site, int node, int input)
{
    if (p->n_reqs == p->cap_reqs) {
        int cap = p->cap_reqs ? 2 * p->cap_reqs : 64;
        req *r = qk_realloc(p->reqs, (size_t)cap * sizeof *r);
        if (!r)
            return qk_error(QK_ERR_NOMEM, "prepare: out of memory");
        p->reqs = r;
        p->cap_reqs = cap;
    }
    p->reqs[p->n_reqs++] = (req){ site, node, input };
    return QK_OK;
}

/* A new quantizer for value v; *site gets its index. */
static qk_status new_site(prep *p, int v, int is_weight, const qk_qparams *qp, const char *observer,
                          const char *why, int *site)
{
    qk_qmodel *m = p->m;
    qk_qsite *s = qk_realloc(m->sites, (size_t)(m->n_sites + 1) * sizeof *s);
    if (s)
        m->sites = s;
    char *name = s ? qk_strdup(m->g->values[v].name) : NULL;
    if (!name)
        return qk_error(QK_ERR_NOMEM, "prepare: out of memory");
    qk_qsite *t = &s[m->n_sites];
    memset(t, 0, sizeof *t);
    t->value = name;
    t->is_weight = is_weight;
    t->qp = *qp;
    snprintf(t->observer, sizeof t->observer, "%s", observer);
    snprintf(t->reason, sizeof t->reason, "%s", why);
    t->node = -1;
    t->layer = -1;
    if (!is_weight)
        p->site_of[v] = m->n_sites;
    *site = m->n_sites++;
    return QK_OK;
}

static int excluded(const qk_qmodel *m, const qk_node *n)
{
    for (int i = 0; i < m->n_exclude; i++)
        if (strcmp(m->exclude[i], n->name) == 0)
            return 1;
    return 0;
}

/* Activation qparams for value v at `bits`. */
static qk_qparams act_qparams(const prep *p, int v, int bits)
{
    qk_qparams a = p->m->aq;
    a.bits = bits;
    if (p->b->act_unsigned_relu && p->nonneg[v]) {
        a.is_signed = 0;
        a.symmetric = 0; /* min = 0: z = 0, the full unsigned grid */
        a.narrow = 0;
    }
    return a;
}

/* Input `input` of node k asks for a quantized value. */
static qk_status want_act(prep *p, int k, int input, int bits, const char *why)
{
    qk_graph *g = p->m->g;
    int v = g->nodes[k].in[input];
    if (v < 0 || qk_value_is_initializer(&g->values[v]) || (g->values[v].t.dtype && g->values[v].t.dtype != QK_F32))
        return QK_OK;
    if (input == 0)
        p->reads_q[k] = 1;
    if (p->inherit[v])
        return QK_OK;
    int s = p->site_of[v];
    if (s < 0) {
        qk_qparams a = act_qparams(p, v, bits);
        qk_status st = new_site(p, v, 0, &a, p->m->cfg.a_observer, why, &s);
        if (st != QK_OK)
            return st;
    } else if (bits > p->m->sites[s].qp.bits) {
        p->m->sites[s].qp.bits = bits; /* a first/last-layer override wins */
        snprintf(p->m->sites[s].reason, sizeof p->m->sites[s].reason, "%s", why);
    }
    return push_req(p, s, k, input);
}

static int layer_w_axis(const qk_node *n)
{
    if (qk_node_is(n, "Conv"))
        return 0;
    if (qk_node_is(n, "Gemm"))
        return qk_node_int(n, "transB", 0) ? 0 : 1;
    return 1; /* MatMul [in, out] */
}

/* A site's reason: qk_qsite.reason holds it (longer text is cut there). */
typedef char why_text[sizeof(((qk_qsite *)0)->reason)];

/* every op output: the network inputs are quantized too */
static qk_status place_inputs(prep *p)
{
    qk_qmodel *m = p->m;
    qk_graph *g = m->g;
    for (int i = 0; i < g->n_inputs; i++) {
        int v = g->inputs[i], s;
        if ((!g->values[v].t.dtype || g->values[v].t.dtype == QK_F32) && p->site_of[v] < 0) {
            qk_qparams a = act_qparams(p, v, m->aq.bits);
            qk_status st = new_site(p, v, 0, &a, m->cfg.a_observer, "network input (every op output)", &s);
            if (st != QK_OK)
                return st;
        }
    }
    return QK_OK;
}

/* Which outputs are known >= 0 (OpenVINO's unsigned-after-ReLU). */
static void mark_nonneg(prep *p, const qk_node *n)
{
    const qk_graph *g = p->m->g;
    if (n->n_out < 1 || n->out[0] < 0)
        return;
    int y = n->out[0], x0 = n->n_in > 0 ? n->in[0] : -1;
    if (qk_node_is(n, "Relu") || (qk_node_is(n, "Clip") && clip_min(g, n) >= 0.0f))
        p->nonneg[y] = 1;
    else if ((is_passthrough(n) || is_pool(n)) && x0 >= 0)
        p->nonneg[y] = p->nonneg[x0];
    else if (qk_node_is(n, "Add") && n->n_in == 2 && n->in[0] >= 0 && n->in[1] >= 0)
        p->nonneg[y] = p->nonneg[n->in[0]] && p->nonneg[n->in[1]];
}

/* Record weighted layer k (weight site s) for calibration's passes. */
static qk_status add_layer(prep *p, int k, int s, int axis)
{
    qk_qmodel *m = p->m;
    const qk_node *n = &m->g->nodes[k];
    qk_qlayer *L = qk_realloc(m->layers, (size_t)(m->n_layers + 1) * sizeof *L);
    if (!L)
        return qk_error(QK_ERR_NOMEM, "prepare: out of memory");
    m->layers = L;
    L = &L[m->n_layers];
    memset(L, 0, sizeof *L);
    L->node = k;
    L->w_site = s;
    /* the input's quantizer; an input on an upstream quantizer's grid (a MaxPool, Flatten, ...
       of a quantized value, which passes its codes through) has that one */
    const qk_graph *g = m->g;
    int v = n->in[0];
    for (int hop = 0; v >= 0 && p->site_of[v] < 0 && p->inherit[v] && hop < g->n_nodes; hop++) {
        int pr = g->values[v].producer;
        v = pr >= 0 && g->nodes[pr].n_in > 0 ? g->nodes[pr].in[0] : -1;
    }
    L->a_site = v >= 0 ? p->site_of[v] : -1;
    L->w_axis = axis;
    L->n_out = m->g->values[n->in[1]].t.dims[axis];
    m->sites[s].layer = m->n_layers++;
    return QK_OK;
}

/* A weighted layer: its input, its weight (the first/last-layer width where
 * the profile or the caller sets one) and, for quant_bias, its bias. */
static qk_status place_layer(prep *p, int k)
{
    qk_qmodel *m = p->m;
    const qk_backend *b = p->b;
    const qk_node *n = &m->g->nodes[k];
    int abits = m->aq.bits, wbits = m->wq.bits, fl = m->first_last_bits;
    int bits = abits, lw = wbits, s;
    const char *tag = "";
    why_text why;
    qk_status st;
    if (fl > 0 && (k == p->first_layer || k == p->last_layer)) {
        /* the profile's rule (first_last_bits 0) only raises a width
           (W16A16 stays 16-bit); an explicit first_last_bits sets it */
        int raise = m->cfg.first_last_bits == 0;
        bits = raise && abits > fl ? abits : fl;
        lw = raise && wbits > fl ? wbits : fl;
        tag = k == p->first_layer ? ", first layer" : ", last layer";
    }
    snprintf(why, sizeof why, "input of %s '%s' (%s%s)", n->op_type, n->name, qk_cover_name(b->cover), tag);
    if ((st = want_act(p, k, 0, bits, why)) != QK_OK)
        return st;
    qk_qparams w = m->wq;
    w.bits = lw;
    int axis = layer_w_axis(n);
    if (w.per_channel)
        w.axis = axis;
    snprintf(why, sizeof why, "weight of %s '%s'%s%s", n->op_type, n->name,
             w.per_channel ? ", per channel" : ", per tensor", tag);
    if ((st = new_site(p, n->in[1], 1, &w, m->cfg.w_observer, why, &s)) != QK_OK ||
        (st = add_layer(p, k, s, axis)) != QK_OK || (st = push_req(p, s, k, 1)) != QK_OK)
        return st;
    if (b->quant_bias && n->n_in > 2 && n->in[2] >= 0) {
        qk_qparams bq = { .bits = 8, .is_signed = 1, .symmetric = 1, .pot = 1 };
        snprintf(why, sizeof why, "bias of %s '%s' (bias quantized, power of two)", n->op_type, n->name);
        if ((st = new_site(p, n->in[2], 1, &bq, "minmax", why, &s)) != QK_OK)
            return st;
        return push_req(p, s, k, 2);
    }
    return QK_OK;
}

/* The inputs of Add (quantized add, or TensorRT's fusion rule) the profile quantizes. */
static qk_status place_add(prep *p, int k)
{
    const qk_graph *g = p->m->g;
    const qk_node *n = &g->nodes[k];
    int fused = 0; /* TensorRT fuses one conv-fed input, the first */
    why_text why;
    for (int i = 0; i < n->n_in && i < 2; i++) {
        int v = n->in[i];
        if (v < 0)
            continue;
        int pr = g->values[v].producer;
        int conv_fed = pr >= 0 && qk_node_is(&g->nodes[pr], "Conv");
        if (p->b->add == QK_ADD_QUANT) {
            snprintf(why, sizeof why, "input of Add '%s' (quantized add)", n->name);
        } else if (p->b->add == QK_ADD_TRT_FUSE && conv_fed && !fused) {
            fused = 1;
            continue;
        } else if (p->b->add == QK_ADD_TRT_FUSE) {
            snprintf(why, sizeof why, "input of Add '%s' %s (TensorRT fuses the %sconv-fed input into "
                     "the conv epilogue)", n->name, conv_fed ? "from a second conv" : "not produced by a conv",
                     conv_fed ? "first " : "");
        } else {
            continue;
        }
        qk_status st = want_act(p, k, i, p->m->aq.bits, why);
        if (st != QK_OK)
            return st;
    }
    return QK_OK;
}

/* The inputs node k asks quantized under the profile's rules. */
static qk_status place_node_inputs(prep *p, int k)
{
    const qk_backend *b = p->b;
    const qk_node *n = &p->m->g->nodes[k];
    int abits = p->m->aq.bits;
    why_text why;
    qk_status st = QK_OK;
    if (is_layer(p->m->g, n))
        return place_layer(p, k);
    if (qk_node_is(n, "Add") && b->cover != QK_COVER_ALL)
        return place_add(p, k);
    if (is_pool(n) && b->cover == QK_COVER_ADD_POOL) {
        snprintf(why, sizeof why, "input of %s '%s' (conv/fc + add/pool)", n->op_type, n->name);
        return want_act(p, k, 0, abits, why);
    }
    if (qk_node_is(n, "Concat") && b->concat == QK_CONCAT_REQUANT && b->cover != QK_COVER_ALL)
        for (int i = 0; i < n->n_in && st == QK_OK; i++) {
            snprintf(why, sizeof why, "input of Concat '%s' (requantized to the output scale)", n->name);
            st = want_act(p, k, i, abits, why);
        }
    return st;
}

/* every op output: node k reads the quantized form of its quantized inputs */
static qk_status wire_quantized_inputs(prep *p, int k)
{
    const qk_node *n = &p->m->g->nodes[k];
    for (int i = 0; i < n->n_in; i++) {
        int v = n->in[i];
        if (v >= 0 && (p->site_of[v] >= 0 || p->inherit[v])) {
            if (i == 0)
                p->reads_q[k] = 1;
            if (p->site_of[v] >= 0) {
                qk_status st = push_req(p, p->site_of[v], k, i);
                if (st != QK_OK)
                    return st;
            }
        }
    }
    return QK_OK;
}

/* Every node reading v is an activation or a BatchNormalization (that
 * fuse into the producer), and there is at least one. */
static int feeds_only_fused(const qk_graph *g, int v)
{
    int seen = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const qk_node *c = &g->nodes[i];
        for (int j = 0; j < c->n_in; j++)
            if (c->in[j] == v) {
                if (!is_fusable_act(c) && !qk_node_is(c, "BatchNormalization"))
                    return 0;
                seen = 1;
                break;
            }
    }
    return seen;
}

/* Node k's outputs: on the input's grid after a passthrough op, or (every
 * op output) a quantizer unless an activation or BN fuses into k. */
static qk_status place_outputs(prep *p, int k, int xin)
{
    qk_qmodel *m = p->m;
    const qk_graph *g = m->g;
    const qk_node *n = &g->nodes[k];
    why_text why;
    for (int i = 0; i < n->n_out; i++) {
        int y = n->out[i], s;
        if (y < 0 || (g->values[y].t.dtype && g->values[y].t.dtype != QK_F32))
            continue;
        if (is_passthrough(n) && p->reads_q[k]) {
            p->inherit[y] = 1;
            continue;
        }
        if (p->b->cover != QK_COVER_ALL || xin || qk_node_is(n, "Shape"))
            continue;
        int is_out = 0;
        for (int j = 0; j < g->n_outputs; j++)
            is_out |= g->outputs[j] == y;
        if (feeds_only_fused(g, y) && !is_out)
            continue;
        snprintf(why, sizeof why, "output of %s '%s' (every op output)", n->op_type, n->name);
        qk_qparams a = act_qparams(p, y, m->aq.bits);
        qk_status st = new_site(p, y, 0, &a, m->cfg.a_observer, why, &s);
        if (st != QK_OK)
            return st;
    }
    return QK_OK;
}

/* Decide every quantizer, in topological order (ptq.h, prepare). */
static qk_status place(prep *p)
{
    qk_graph *g = p->m->g;
    int all = p->b->cover == QK_COVER_ALL;
    qk_status st = all ? place_inputs(p) : QK_OK;
    for (int o = 0; o < g->n_nodes && st == QK_OK; o++) {
        int k = g->order[o];
        int xin = excluded(p->m, &g->nodes[k]);
        mark_nonneg(p, &g->nodes[k]);
        if (!xin)
            st = place_node_inputs(p, k);
        if (st == QK_OK && all && !xin)
            st = wire_quantized_inputs(p, k);
        if (st == QK_OK)
            st = place_outputs(p, k, xin);
    }
    return st;
}

char *qk_ptq_site_name(const qk_graph *g, const char *value, const char *suffix)
{
    size_t n = strlen(value) + strlen(suffix) + 1;
    char *base = qk_malloc(n);
    if (!base)
        return NULL;
    snprintf(base, n, "%s%s", value, suffix);
    char *s = qk_graph_unique_name(g, base);
    qk_free(base);
    return s;
}

/* The FakeQuant node of site s ("<value>_fakequant", domain ai.qkit);
 * *y gets its output "<value>_dequantized". */
static qk_status add_fakequant(qk_qmodel *m, int s, int *y)
{
    qk_graph *g = m->g;
    const char *value = m->sites[s].value;
    int v = qk_graph_find_value(g, value);
    char *yn = qk_ptq_site_name(g, value, "_dequantized");
    char *nn = qk_ptq_site_name(g, value, "_fakequant");
    *y = yn ? qk_graph_add_value(g, yn, QK_VALUE_ACT) : -1;
    int k = *y >= 0 && nn ? qk_graph_add_node(g, "FakeQuant", nn, 1, &v, 1, y) : -1;
    char *domain = k >= 0 ? qk_strdup("ai.qkit") : NULL;
    qk_free(yn);
    qk_free(nn);
    if (!domain)
        return qk_error(QK_ERR_NOMEM, "prepare: cannot add the quantizer of '%s'", value);
    g->nodes[k].domain = domain;
    m->sites[s].node = k;
    return QK_OK;
}

/* Insert one FakeQuant node per site and rewire the requests. */
static qk_status insert(prep *p)
{
    qk_qmodel *m = p->m;
    qk_graph *g = m->g;
    int *deq = qk_malloc((size_t)(m->n_sites ? m->n_sites : 1) * sizeof *deq);
    if (!deq)
        return qk_error(QK_ERR_NOMEM, "prepare: out of memory");
    qk_status st = QK_OK;
    for (int s = 0; s < m->n_sites && st == QK_OK; s++)
        st = add_fakequant(m, s, &deq[s]);
    for (int r = 0; r < p->n_reqs && st == QK_OK; r++)
        g->nodes[p->reqs[r].node].in[p->reqs[r].input] = deq[p->reqs[r].site];
    /* every op output: graph outputs read the quantized value too */
    if (st == QK_OK && p->b->cover == QK_COVER_ALL)
        for (int j = 0; j < g->n_outputs; j++) {
            int s = p->site_of[g->outputs[j]];
            if (s >= 0)
                g->outputs[j] = deq[s];
        }
    qk_free(deq);
    return st;
}

static int already_quantized(const qk_graph *g, const char **what)
{
    static const char *const t[] = { "QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul",
                                     "ConvInteger", "MatMulInteger", "FakeQuant", NULL };
    for (int i = 0; i < g->n_nodes; i++)
        for (int j = 0; t[j]; j++)
            if (strcmp(g->nodes[i].op_type, t[j]) == 0) {
                *what = g->nodes[i].name;
                return 1;
            }
    /* a qkit file whose every site is simulated (16-bit, NNIE, hooks) has
       no QDQ node, only fake-quantized weights: its metadata tells */
    const char *q = qk_graph_get_meta(g, "qkit.quantized");
    if (q && strcmp(q, "1") == 0) {
        *what = NULL;
        return 1;
    }
    return 0;
}

static qk_status make_runtime(qk_qmodel *m)
{
    qk_graph *g = m->g;
    m->rt = qk_calloc((size_t)(m->n_sites ? m->n_sites : 1), sizeof *m->rt);
    m->chstat = qk_calloc((size_t)(m->n_sites ? m->n_sites : 1), sizeof *m->chstat);
    if (!m->rt || !m->chstat)
        return qk_error(QK_ERR_NOMEM, "prepare: out of memory");
    for (int s = 0; s < m->n_sites; s++) {
        qk_qsite *t = &m->sites[s];
        qk_fq_rt *rt = &m->rt[s];
        rt->name = t->value;
        rt->axis = -1;
        rt->round = t->qp.round;
        rt->mode = QK_FQ_OFF;
        rt->gl_want = !t->is_weight && m->cfg.backend->arith == QK_ARITH_GEMMLOWP;
        qk_quantizer_desc d = { .qp = t->qp, .observer = t->observer,
                                .opts = t->is_weight ? &m->cfg.w_opts : &m->cfg.a_opts, .is_weight = t->is_weight,
                                .name = t->value, .hooks = m->cfg.hooks };
        qk_status st = qk_quantizer_create(&d, &rt->q);
        if (st != QK_OK)
            return qk_error_context(st, "%s", t->reason);
        int kq = t->is_weight ? QK_HOOK_WEIGHT_QUANTIZE : QK_HOOK_ACT_QUANTIZE;
        int kp = t->is_weight ? QK_HOOK_WEIGHT_PREPROCESS : QK_HOOK_ACT_PREPROCESS;
        rt->via_quantizer = t->qp.scheme == QK_QSCHEME_NNIE_LOG ||
                            (m->cfg.hooks && (m->cfg.hooks->fn[kq] || m->cfg.hooks->fn[kp]));
        if ((st = qk_fakequant_attach(&g->nodes[t->node], rt)) != QK_OK)
            return st;
    }
    return QK_OK;
}

qk_status qk_ptq_prepare(qk_graph *g, const qk_ptq_config *c, qk_qmodel **out)
{
    double t0 = qk_now();
    *out = NULL;
    qk_status st = QK_OK;
    const char *what = NULL;
    if (!c || !c->backend) {
        qk_graph_destroy(g);
        return qk_error(QK_ERR_ARG, "prepare: no backend profile given");
    }
    if (already_quantized(g, &what)) {
        /* the message first: `what` points into g */
        if (!what)
            st = qk_error(QK_ERR_UNSUPPORTED, "the model is already quantized (metadata qkit.quantized = 1: "
                          "written by qkit ptq); give prepare the float model");
        else
            st = qk_error(QK_ERR_UNSUPPORTED,
                          "the model is already quantized (node '%s'); give prepare the float model", what);
        qk_graph_destroy(g);
        return st;
    }
    qk_qmodel *m = qk_calloc(1, sizeof *m);
    if (!m) {
        qk_graph_destroy(g);
        return qk_error(QK_ERR_NOMEM, "prepare: out of memory");
    }
    m->g = g;
    m->cfg = *c;
    const qk_backend *b = c->backend;
    prep p = { .m = m, .b = b, .first_layer = -1, .last_layer = -1 };
    int abits = c->abits;
    if (c->reduce_range) {
        if (!b->reduce_range) {
            st = qk_error(QK_ERR_UNSUPPORTED, "backend '%s' has no reduce-range option (fbgemm has)", b->name);
            goto fail;
        }
        abits = abits ? abits : 7;
    }
    if ((st = qk_backend_qparams(b, c->wbits, abits, &m->wq, &m->aq)) != QK_OK)
        goto fail;
    if (c->per_tensor_weights) {
        if (!b->user_scheme) {
            st = qk_error(QK_ERR_UNSUPPORTED, "backend '%s' fixes the weight granularity; --per-tensor needs "
                          "the academic profile", b->name);
            goto fail;
        }
        m->wq.per_channel = 0;
    }
    if (c->first_last_bits > 0 && (c->first_last_bits < 2 || (c->first_last_bits > 8 && c->first_last_bits != 16))) {
        st = qk_error(QK_ERR_ARG, "first/last layer bits %d: supported 2..8 and 16", c->first_last_bits);
        goto fail;
    }
    m->first_last_bits = c->first_last_bits ? c->first_last_bits : (b->first_last_8bit ? 8 : -1);
    m->cfg.w_observer = c->w_observer ? c->w_observer : b->w_observer;
    m->cfg.a_observer = c->a_observer ? c->a_observer : b->a_observer;
    if (c->bit_alloc & ~(QK_BITALLOC_W | QK_BITALLOC_A)) {
        st = qk_error(QK_ERR_ARG, "bit allocation flags %d: use w, a or wa", c->bit_alloc);
        goto fail;
    }
    if (((c->bit_alloc & QK_BITALLOC_W) && m->wq.bits > 4) || ((c->bit_alloc & QK_BITALLOC_A) && m->aq.bits > 4)) {
        st = qk_error(QK_ERR_UNSUPPORTED, "ACIQ bit allocation applies at 4 bits or fewer (W%d A%d asked)",
                      m->wq.bits, m->aq.bits);
        goto fail;
    }
    if ((c->bit_alloc & QK_BITALLOC_W) && !m->wq.per_channel) {
        st = qk_error(QK_ERR_UNSUPPORTED, "weight bit allocation needs per-channel weights (backend '%s' is per "
                      "tensor)", b->name);
        goto fail;
    }
    if (c->bit_alloc && (m->wq.pot || m->wq.scheme != QK_QSCHEME_LINEAR)) {
        st = qk_error(QK_ERR_UNSUPPORTED, "bit allocation needs a linear float-scale scheme (backend '%s')",
                      b->name);
        goto fail;
    }
    /* exclusions must name nodes */
    if (c->n_exclude > 0) {
        m->exclude = qk_calloc((size_t)c->n_exclude, sizeof *m->exclude);
        if (!m->exclude) {
            st = qk_error(QK_ERR_NOMEM, "prepare: out of memory");
            goto fail;
        }
        for (int i = 0; i < c->n_exclude; i++) {
            if (qk_graph_find_node(g, c->exclude[i]) < 0) {
                st = qk_error(QK_ERR_NOTFOUND, "--exclude '%s': no node of that name (see `qkit info`)",
                              c->exclude[i]);
                goto fail;
            }
            if (!(m->exclude[i] = qk_strdup(c->exclude[i]))) {
                st = qk_error(QK_ERR_NOMEM, "prepare: out of memory");
                goto fail;
            }
            m->n_exclude++;
        }
    }
    m->cfg.exclude = NULL;
    m->cfg.n_exclude = 0;
    if (c->cle < -1 || c->cle > 1 || c->bias_correct < -1 || c->bias_correct > 1) {
        st = qk_error(QK_ERR_ARG, "prepare: %s %d: use 1 (on), -1 (off) or 0 (the profile's default)",
                      c->cle < -1 || c->cle > 1 ? "cle" : "bias_correct",
                      c->cle < -1 || c->cle > 1 ? c->cle : c->bias_correct);
        goto fail;
    }
    /* the passes resolved: m->cfg holds 0/1 from here on */
    m->cfg.bias_correct = c->bias_correct ? c->bias_correct > 0 : b->bias_correct != 0;
    m->cle = c->cle ? c->cle > 0 : b->cle != 0;
    if (c->cle_relu6 && !m->cle) {
        st = qk_error(QK_ERR_ARG, "cle_relu6 (--cle-relu6) applies with cross-layer equalization, which is off "
                      "(%s)", c->cle < 0 ? "switched off" : "not in the profile's default; ask for it");
        goto fail;
    }
    if ((st = qk_graph_own_params(g, NULL)) != QK_OK)
        goto fail;
    if (m->cle) { /* the float model itself, before folding (BN scales are equalized with their conv) */
        qk_cle_options co;
        qk_cle_options_default(&co);
        co.relu6_to_relu = c->cle_relu6 != 0;
        qk_cle_result cr;
        if ((st = qk_cle_apply(g, &co, &cr)) != QK_OK ||
            (st = qk_graph_set_meta(g, "qkit.cle", "1")) != QK_OK ||
            (co.relu6_to_relu && (st = qk_graph_set_meta(g, "qkit.cle_relu6", "1")) != QK_OK))
            goto fail;
        m->cle_pairs = cr.n_pairs;
        m->cle_relu6 = cr.n_relu6;
        if (c->verbose)
            fprintf(stderr, "cle: %d layer pairs, %d sweeps, %d channels' biases absorbed, %d ReLU6 -> ReLU\n",
                    cr.n_pairs, cr.n_iters, cr.n_absorbed, cr.n_relu6);
    }
    if (b->fold_bn && (st = qk_fold_bn(g, &m->n_folded)) != QK_OK)
        goto fail;
    if ((st = qk_graph_sort(g)) != QK_OK)
        goto fail;
    for (int o = 0; o < g->n_nodes; o++)
        if (is_layer(g, &g->nodes[g->order[o]])) {
            if (p.first_layer < 0)
                p.first_layer = g->order[o];
            p.last_layer = g->order[o];
        }
    if (p.first_layer < 0) {
        st = qk_error(QK_ERR_UNSUPPORTED, "the model has no Conv, Gemm or MatMul with initializer weights to quantize");
        goto fail;
    }
    p.site_of = qk_malloc((size_t)g->n_values * sizeof *p.site_of);
    p.inherit = qk_calloc((size_t)g->n_values, 1);
    p.nonneg = qk_calloc((size_t)g->n_values, 1);
    p.reads_q = qk_calloc((size_t)g->n_nodes, 1);
    if (!p.site_of || !p.inherit || !p.nonneg || !p.reads_q) {
        st = qk_error(QK_ERR_NOMEM, "prepare: out of memory");
        goto done;
    }
    for (int v = 0; v < g->n_values; v++)
        p.site_of[v] = -1;
    if ((st = place(&p)) != QK_OK)
        goto done;
    if ((st = insert(&p)) != QK_OK)
        goto done;
    if ((st = qk_quant_bind(g)) != QK_OK)
        goto done;
    st = make_runtime(m);
done:
    qk_free(p.site_of);
    qk_free(p.inherit);
    qk_free(p.nonneg);
    qk_free(p.reads_q);
    qk_free(p.reqs);
    if (st == QK_OK) {
        m->seconds = qk_now() - t0;
        *out = m;
        return QK_OK;
    }
fail:
    qk_qmodel_destroy(m);
    return st;
}

void qk_qmodel_destroy(qk_qmodel *m)
{
    if (!m)
        return;
    for (int s = 0; m->rt && s < m->n_sites; s++) {
        qk_fq_rt *rt = &m->rt[s];
        qk_quantizer_destroy(rt->q);
        qk_free(rt->scale);
        qk_free(rt->zp);
        qk_free(rt->qn);
        qk_free(rt->qp);
        qk_free(rt->cst);
        qk_free(rt->codes);
    }
    for (int s = 0; m->chstat && s < m->n_sites; s++) {
        qk_free(m->chstat[s].sum);
        qk_free(m->chstat[s].sum2);
        qk_free(m->chstat[s].mn);
        qk_free(m->chstat[s].mx);
    }
    for (int s = 0; s < m->n_sites; s++)
        qk_free(m->sites[s].value);
    for (int i = 0; i < m->n_layers; i++)
        qk_free(m->layers[i].in_mean);
    for (int i = 0; i < m->n_exclude; i++)
        qk_free(m->exclude[i]);
    qk_free(m->exclude);
    qk_free(m->rt);
    qk_free(m->chstat);
    qk_free(m->sites);
    qk_free(m->layers);
    qk_graph_destroy(m->g);
    qk_free(m);
}

qk_graph *qk_qmodel_graph(qk_qmodel *m) { return m->g; }

void qk_ptq_result_get(const qk_qmodel *m, qk_ptq_result *r)
{
    memset(r, 0, sizeof *r);
    r->backend = m->cfg.backend->name;
    r->wbits = m->wq.bits;
    r->abits = m->aq.bits;
    r->first_last_bits = m->first_last_bits;
    r->w_observer = m->cfg.w_observer;
    r->a_observer = m->cfg.a_observer;
    r->reduce_range = m->cfg.reduce_range;
    r->per_channel = m->wq.per_channel;
    r->bias_correct = m->cfg.bias_correct;
    r->bit_alloc = m->cfg.bit_alloc;
    r->bit_alloc_name = qk_ptq_bit_alloc_name(m->cfg.bit_alloc);
    r->n_quantizers = m->n_sites;
    for (int s = 0; s < m->n_sites; s++)
        m->sites[s].is_weight ? r->n_weight_quantizers++ : r->n_act_quantizers++;
    r->n_folded = m->n_folded;
    r->calibrated = m->calibrated;
    r->seconds = m->seconds;
    r->cle = m->cle;
    r->cle_pairs = m->cle_pairs;
    r->cle_relu6 = m->cle_relu6;
}

int qk_qmodel_sites(const qk_qmodel *m, const qk_qsite **sites)
{
    if (sites)
        *sites = m->sites;
    return m->n_sites;
}

static void scheme_str(const qk_qparams *q, char *buf, size_t n)
{
    if (q->scheme == QK_QSCHEME_NNIE_LOG) {
        snprintf(buf, n, "nnie-log8");
        return;
    }
    snprintf(buf, n, "%s%d %s%s%s%s%s", q->is_signed ? "int" : "uint", q->bits,
             q->symmetric ? "sym" : "asym", q->narrow ? " narrow" : "",
             q->per_channel ? " per-channel" : " per-tensor", q->pot ? " pow2" : "",
             q->round == QK_ROUND_HALF_UP ? " half-up" : q->round == QK_ROUND_HALF_AWAY ? " half-away" : "");
}

/* The operators that read no quantized input (no FakeQuant feeds them,
 * through pass-through ops; a Relu/Clip right after a layer or an Add is
 * fused into it): the integer engine runs them in float between a DequantizeLinear and
 * the next QuantizeLinear. A lower bound: lowering may keep more in float.
 * Grouped by type with a count and the first node's name. */
static void print_float_ops(const qk_qmodel *m, FILE *f)
{
    const qk_graph *g = m->g;
    int n_types = 0, total = 0;
    const char *types[64];
    int counts[64], first[64];
    int *prod = qk_malloc((size_t)(g->n_values ? g->n_values : 1) * sizeof *prod);
    if (!prod)
        return;
    for (int v = 0; v < g->n_values; v++)
        prod[v] = -1;
    for (int i = 0; i < g->n_nodes; i++)
        for (int j = 0; j < g->nodes[i].n_out; j++)
            if (g->nodes[i].out[j] >= 0)
                prod[g->nodes[i].out[j]] = i;
    for (int i = 0; i < g->n_nodes; i++) {
        const qk_node *n = &g->nodes[i];
        if (!strcmp(n->op_type, "FakeQuant") || qk_node_is(n, "Constant"))
            continue;
        int acts = 0, quantized = 0;
        for (int j = 0; j < n->n_in; j++) {
            int v = n->in[j];
            if (v < 0 || qk_value_is_initializer(&g->values[v]))
                continue;
            acts++;
            /* quantized: written by a FakeQuant, through pass-through ops */
            int p = prod[v], hops = 0;
            while (p >= 0 && is_passthrough(&g->nodes[p]) && g->nodes[p].n_in > 0 && g->nodes[p].in[0] >= 0 &&
                   hops++ < 64)
                p = prod[g->nodes[p].in[0]];
            quantized |= p >= 0 && !strcmp(g->nodes[p].op_type, "FakeQuant");
        }
        if (!acts || quantized)
            continue;
        int p0 = n->in[0] >= 0 ? prod[n->in[0]] : -1;
        if (is_fusable_act(n) && p0 >= 0 &&
            (qk_node_is(&g->nodes[p0], "Conv") || qk_node_is(&g->nodes[p0], "Gemm") ||
             qk_node_is(&g->nodes[p0], "MatMul") || qk_node_is(&g->nodes[p0], "Add")))
            continue; /* fused into the layer before it */
        total++;
        int t = 0;
        while (t < n_types && strcmp(types[t], n->op_type) != 0)
            t++;
        if (t == n_types) {
            if (n_types == 64)
                continue;
            types[n_types] = n->op_type;
            counts[n_types] = 0;
            first[n_types++] = i;
        }
        counts[t]++;
    }
    qk_free(prod);
    if (!total) {
        fprintf(f, "every operator reads quantized inputs\n");
        return;
    }
    fprintf(f, "%d operators read no quantized input (outside %s's coverage '%s', or excluded) and run in float "
            "(`qkit eval --real --verbose` lists every node the integer engine keeps in float):\n", total,
            m->cfg.backend->name, qk_cover_name(m->cfg.backend->cover));
    for (int t = 0; t < n_types; t++)
        fprintf(f, "  F   %-16s x%-4d e.g. '%s'\n", types[t], counts[t], g->nodes[first[t]].name);
}

void qk_ptq_print_plan(const qk_qmodel *m, FILE *f)
{
    const qk_backend *b = m->cfg.backend;
    int nw = 0, na = 0;
    for (int s = 0; s < m->n_sites; s++)
        m->sites[s].is_weight ? nw++ : na++;
    fprintf(f, "backend %s: %s\n", b->name, b->summary);
    fprintf(f, "coverage %s; add %s; concat %s; BN %s (%d folded); arithmetic %s\n", qk_cover_name(b->cover),
            qk_add_rule_name(b->add), qk_concat_rule_name(b->concat), b->fold_bn ? "folded" : "kept", m->n_folded,
            qk_arith_name(b->arith));
    fprintf(f, "%d quantizers: %d weights (observer %s), %d activations (observer %s)\n", m->n_sites, nw,
            m->cfg.w_observer, na, m->cfg.a_observer);
    /* the passes and where their setting came from (m->cfg.cle keeps the caller's value) */
    fprintf(f, "passes: cross-layer equalization %s", m->cle ? "on" : "off");
    if (m->cle)
        fprintf(f, " (%s: %d layer pairs, %d ReLU6 -> ReLU)", m->cfg.cle > 0 ? "asked" : "the profile's default",
                m->cle_pairs, m->cle_relu6);
    else if (b->cle)
        fprintf(f, " (switched off; the profile's default is on)");
    fprintf(f, "; bias correction %s", m->cfg.bias_correct ? "on" : "off");
    if (m->cfg.bias_correct != (b->bias_correct != 0))
        fprintf(f, " (%s)", m->cfg.bias_correct ? "asked" : "switched off; the profile's default is on");
    else if (m->cfg.bias_correct)
        fprintf(f, " (the profile's default)");
    fputc('\n', f);
    for (int s = 0; s < m->n_sites; s++) {
        const qk_qsite *t = &m->sites[s];
        char sch[96];
        scheme_str(&t->qp, sch, sizeof sch);
        fprintf(f, "  %-3s %-34s %-34s %s", t->is_weight ? "W" : "A", t->value, sch, t->reason);
        const qk_fq_rt *rt = m->rt ? &m->rt[s] : NULL;
        if (m->calibrated && rt && rt->n_ch == 1 && rt->scale)
            fprintf(f, " [scale %.6g zp %d: range %.4g..%.4g]", rt->scale[0], rt->zp[0],
                    rt->scale[0] * (rt->qn[0] - rt->zp[0]), rt->scale[0] * (rt->qp[0] - rt->zp[0]));
        else if (m->calibrated && rt && rt->n_ch > 1)
            fprintf(f, " [%lld channels]", (long long)rt->n_ch);
        fputc('\n', f);
    }
    for (int i = 0; i < m->n_exclude; i++)
        fprintf(f, "  excluded (kept in float): %s\n", m->exclude[i]);
    print_float_ops(m, f);
}
