/* The gemmlowp output stage in the fake-quant simulation (quant_internal.h,
 * qk_glsim): the chain before an activation quantizer that the integer
 * engine runs as one requantizing layer, and that layer's output codes
 * computed as the engine computes them. Used by QuantizeLinear when it reads
 * a QDQ file qkit wrote for a gemmlowp profile, and by the FakeQuant sites
 * of a prepared model of such a profile (fakequant_op.c). */
#include "quant_internal.h"

#include <math.h>
#include <string.h>

/* Readers of value v: node inputs and graph outputs. */
static int n_readers(const qk_graph *g, int v)
{
    int k = 0;
    for (int i = 0; i < g->n_nodes; i++)
        for (int j = 0; j < g->nodes[i].n_in; j++)
            k += g->nodes[i].in[j] == v;
    for (int i = 0; i < g->n_outputs; i++)
        k += g->outputs[i] == v;
    return k;
}

/* Clip's bound: input `in` (opset 11+: a float scalar initializer; absent:
 * none) or attribute `attr` (opset 6). 0 when it is computed at run time. */
static int clip_bound(const qk_graph *g, const qk_node *n, int in, const char *attr, float none, float *b)
{
    *b = none;
    if (n->n_in > in && n->in[in] >= 0) {
        const qk_value *v = &g->values[n->in[in]];
        if (!qk_value_is_initializer(v) || v->t.dtype != QK_F32 || qk_tensor_numel(&v->t) != 1 || !v->t.data)
            return 0;
        *b = qk_f32(&v->t)[0];
        return 1;
    }
    *b = qk_node_float(n, attr, none);
    return 1;
}

/* The node of type op that produced v, looking through the operators the
 * engine runs on the codes themselves (max pooling, shape changes): their
 * output is a dequantization with the same scale; the layer's input only).
 * -1: none. */
static int producer_is(const qk_graph *g, int v, const char *dom, const char *op, int look_through)
{
    static const char *const same_codes[] = { "MaxPool", "Flatten", "Reshape", "Squeeze", "Unsqueeze",
                                              "Transpose", "Identity" };
    for (int hops = 0; v >= 0 && hops < 8; hops++) {
        int p = g->values[v].producer, pass = 0;
        if (p < 0)
            return -1;
        const qk_node *n = &g->nodes[p];
        if (qk_node_is_in(n, dom, op))
            return p;
        for (size_t k = 0; k < sizeof same_codes / sizeof *same_codes; k++)
            pass |= qk_node_is(n, same_codes[k]);
        if (!pass || !look_through || n->n_in < 1)
            return -1;
        v = n->in[0];
    }
    return -1;
}

/* The layer chain ahead of v: [Relu | Clip with constant bounds] after a
 * Conv, Gemm (alpha and beta 1, transA 0) or MatMul, each intermediate value read by
 * the chain alone. The layer's node, or -1; *act, *lo, *hi: the clamp. */
static int layer_chain(const qk_graph *g, int v, int *act, float *lo, float *hi)
{
    *act = QK_ACT_NONE;
    *lo = -INFINITY;
    *hi = INFINITY;
    int p = v >= 0 ? g->values[v].producer : -1;
    if (p < 0)
        return -1;
    const qk_node *n = &g->nodes[p];
    if (qk_node_is(n, "Relu") || qk_node_is(n, "Clip")) {
        if (qk_node_is(n, "Relu"))
            *act = QK_ACT_RELU;
        else if (!clip_bound(g, n, 1, "min", -INFINITY, lo) || !clip_bound(g, n, 2, "max", INFINITY, hi))
            return -1;
        else
            *act = QK_ACT_CLIP;
        v = n->in[0];
        if (v < 0 || n_readers(g, v) != 1 || (p = g->values[v].producer) < 0)
            return -1;
        n = &g->nodes[p];
    }
    if (!qk_node_is(n, "Conv") && !qk_node_is(n, "Gemm") && !qk_node_is(n, "MatMul"))
        return -1;
    if (n->n_in < 2 || (qk_node_is(n, "Gemm") && (qk_node_float(n, "alpha", 1.0f) != 1.0f ||
                                                  qk_node_float(n, "beta", 1.0f) != 1.0f ||
                                                  qk_node_int(n, "transA", 0) != 0)))
        return -1; /* the lowering's float cases (lower_match.c) */
    return p;
}

static int alloc_params(qk_glsim *s, int64_t C)
{
    s->C = C;
    s->inv = qk_malloc((size_t)C * sizeof *s->inv);
    s->mult = qk_malloc((size_t)C * sizeof *s->mult);
    s->shift = qk_malloc((size_t)C * sizeof *s->shift);
    return s->inv && s->mult && s->shift;
}

int qk_glsim_build(qk_glsim *s, const qk_graph *g, int v, const char *qop_domain, const char *qop,
                   qk_glsim_qparams_fn qp, void *user, float sy, int32_t zy, qk_dtype yt)
{
    memset(s, 0, sizeof *s);
    const float *sx, *sw;
    int64_t nx, nw;
    int32_t zx, zw;
    int act, ok = 1, p = v >= 0 ? g->values[v].producer : -1;
    float lo, hi;
    if (!(sy > 0) || !isfinite(sy) || p < 0 || n_readers(g, v) != 1)
        return 0; /* a value read elsewhere too stays float in the engine, quantized apart */
    if (qk_node_is(&g->nodes[p], "GlobalAveragePool")) {
        const qk_node *n = &g->nodes[p];
        const qk_tensor *x = n->in[0] >= 0 ? &g->values[n->in[0]].t : NULL;
        int xq = n->in[0] >= 0 ? producer_is(g, n->in[0], qop_domain, qop, 1) : -1;
        if (!x || x->ndim != 4 || xq < 0 || !qp(user, g, xq, &sx, &nx, &zx) || nx != 1 || !(sx[0] > 0) ||
            x->dims[2] * x->dims[3] > 65536 || !alloc_params(s, 1))
            goto none;
        s->n = (int32_t)(x->dims[2] * x->dims[3]);
        s->zx = zx;
        s->kind = sx[0] == sy && zx == zy ? QK_GL_AVG_CODES : QK_GL_AVG;
        s->inv[0] = (double)s->n / (double)sx[0];
        /* lower_ops_pool.c's multiplier */
        ok = qk_quantize_multiplier((double)sx[0] / ((double)sy * s->n), &s->mult[0], &s->shift[0]) == QK_OK;
        act = QK_ACT_NONE;
        lo = -INFINITY, hi = INFINITY;
    } else {
        /* max pooling and Flatten after the layer: the max of the codes */
        for (int hops = 0; hops < 4 && (qk_node_is(&g->nodes[p], "MaxPool") || qk_node_is(&g->nodes[p], "Flatten"));
             hops++) {
            v = g->nodes[p].in[0];
            if (v < 0 || n_readers(g, v) != 1 || (p = g->values[v].producer) < 0)
                return 0;
        }
        int L = layer_chain(g, v, &act, &lo, &hi);
        if (L < 0)
            return 0;
        const qk_node *n = &g->nodes[L];
        int xq = producer_is(g, n->in[0], qop_domain, qop, 1), wq = producer_is(g, n->in[1], qop_domain, qop, 0);
        const qk_tensor *y = &g->values[n->out[0]].t;
        const qk_node *wn = wq >= 0 ? &g->nodes[wq] : NULL;
        const qk_tensor *w = wn && wn->n_in > 0 && wn->in[0] >= 0 ? &g->values[wn->in[0]].t : NULL;
        s->conv = qk_node_is(n, "Conv");
        int64_t C = s->conv ? (y->ndim > 1 ? y->dims[1] : 0) : (y->ndim > 0 ? y->dims[y->ndim - 1] : 0);
        int64_t grp = s->conv ? qk_node_int(n, "group", 1) : 1;
        /* the engine's integer layers: 2-D convolutions, plain or depthwise with multiplier 1 */
        if (!w || (s->conv && (w->ndim != 4 || y->ndim != 4 || (grp != 1 && (grp != C || w->dims[1] != 1)))) ||
            (!s->conv && w->ndim != 2))
            goto none;
        if (xq < 0 || wq < 0 || !qp(user, g, xq, &sx, &nx, &zx) || !qp(user, g, wq, &sw, &nw, &zw) || nx != 1 ||
            C < 1 || (nw != 1 && nw != C) || !alloc_params(s, C))
            goto none;
        for (int64_t k = 0; ok && k < C; k++) {
            double unit = (double)sx[0] * (double)sw[nw == 1 ? 0 : k]; /* the engine's products (lower_match.c) */
            ok = unit > 0 && isfinite(unit) &&
                 qk_quantize_multiplier(unit / (double)sy, &s->mult[k], &s->shift[k]) == QK_OK;
            s->inv[k] = 1.0 / unit;
        }
    }
    if (ok && qk_act_bounds(yt, sy, zy, (qk_act)act, lo, hi, &s->qmin, &s->qmax) == QK_OK) {
        s->zp = zy;
        return 1;
    }
none:
    qk_clear_error();
    qk_glsim_free(s);
    return 0;
}

void qk_glsim_free(qk_glsim *s)
{
    qk_free(s->inv);
    qk_free(s->mult);
    qk_free(s->shift);
    memset(s, 0, sizeof *s);
}

int64_t qk_glsim_inner(const qk_glsim *s, const qk_tensor *x)
{
    int64_t n = qk_tensor_numel(x);
    if (x->ndim < 2 || n == 0 || !s->inv)
        return 0;
    if (s->kind != QK_GL_LAYER)
        return n; /* one set of parameters */
    if (!s->conv)
        return x->dims[x->ndim - 1] == s->C ? 1 : 0;
    int64_t per = n / x->dims[0]; /* one sample, channel-major */
    return per % s->C == 0 ? per / s->C : 0;
}
