/* Heavy float operators: Conv, Gemm, MatMul, BatchNormalization, MaxPool,
 * AveragePool, GlobalAveragePool, and qk_sgemm.
 *
 * For each op and a set of shapes (odd sizes, strides, pads, dilations,
 * groups, depthwise, 1x1, big kernels, 1-D / 3-D):
 *   1. fast path vs plain reference (qk_ops_set_reference), forward outputs
 *      and backward input gradients, within a written tolerance;
 *   2. 1 thread vs 2 threads: bit-identical (determinism rule);
 *   3. gradient check: central finite differences of L = sum(R*y) in double
 *      (tests/gradcheck.h) for every input that has a gradient. */
#include "qkit/ops.h"
#include "gradcheck.h"
#include "qt.h"

#include <dirent.h>
#include <string.h>

/* ---- one-node graph helpers ---- */

typedef struct tin {
    const char *name;
    int kind;        /* 1 PARAM (differentiated), 0 CONST, -1 absent */
    int ndim;
    int64_t dims[6];
    float lo, hi;    /* uniform range; lo == hi: N(0,1)*|lo| */
} tin;

/* A fresh graph with one op node; inputs per spec (random data from seed). */
static qk_graph *make_graph(const char *op, int n_in, const tin *ins, int n_out, uint64_t seed, int *node)
{
    qk_graph *g;
    if (qk_graph_create(&g) != QK_OK)
        return NULL;
    qk_rng rng;
    qk_rng_seed(&rng, seed);
    int ids[8];
    for (int i = 0; i < n_in; i++) {
        if (ins[i].kind < 0) {
            ids[i] = -1;
            continue;
        }
        ids[i] = gc_add(g, ins[i].name, ins[i].kind, QK_F32, ins[i].ndim, ins[i].dims, NULL, NULL);
        gc_fill(&g->values[ids[i]].t, &rng, ins[i].lo, ins[i].hi);
    }
    *node = gc_node(g, op, n_in, ids, n_out);
    return g;
}

/* Outputs and input gradients after one forward + backward with output grads R. */
typedef struct snap {
    int nb;
    float *b[12];
    int64_t len[12];
} snap;

static void snap_free(snap *s)
{
    for (int i = 0; i < s->nb; i++)
        qk_free(s->b[i]);
    memset(s, 0, sizeof *s);
}

static void snap_add(snap *s, const qk_tensor *t)
{
    int64_t m = qk_tensor_numel(t);
    s->b[s->nb] = qk_malloc((size_t)(m ? m : 1) * sizeof(float));
    memcpy(s->b[s->nb], t->data, (size_t)m * sizeof(float));
    s->len[s->nb++] = m;
}

/* plan (training) with pool, forward, R ~ N(0,1) (seeded) on float outputs,
 * backward; snapshot outputs then input grads. Returns status. */
static qk_status run_fb(qk_graph *g, int node, qk_pool *pool, int reference, int backward, snap *out)
{
    memset(out, 0, sizeof *out);
    qk_ops_set_reference(reference);
    qk_status st = qk_ops_bind(g);
    int64_t batch = 1;
    qk_node *n = &g->nodes[node];
    if (st == QK_OK && n->n_in && qk_in(g, n, 0)->t.ndim > 0)
        batch = qk_in(g, n, 0)->t.dims[0];
    if (st == QK_OK)
        st = qk_graph_plan(g, batch, backward, pool);
    if (st == QK_OK)
        st = qk_graph_forward(g);
    n = &g->nodes[node];
    if (st == QK_OK) {
        for (int k = 0; k < n->n_out; k++)
            if (qk_out(g, n, k)->t.dtype == QK_F32)
                snap_add(out, &qk_out(g, n, k)->t);
    }
    if (st == QK_OK && backward) {
        qk_rng r;
        qk_rng_seed(&r, 99);
        for (int k = 0; k < n->n_out; k++) {
            qk_value *v = qk_out(g, n, k);
            if (!v->grad.data)
                continue;
            float *p = qk_f32(&v->grad);
            for (int64_t i = 0; i < qk_tensor_numel(&v->t); i++)
                p[i] = qk_rng_normal(&r);
        }
        for (int j = 0; j < n->n_in; j++) {
            qk_value *v = qk_in(g, n, j);
            if (v && v->grad.data)
                memset(v->grad.data, 0, (size_t)qk_tensor_numel(&v->t) * sizeof(float));
        }
        st = n->op->backward(&g->exec, n);
        for (int j = 0; j < n->n_in && st == QK_OK; j++) {
            qk_value *v = qk_in(g, n, j);
            if (v && v->grad.data)
                snap_add(out, &v->grad);
        }
    }
    qk_ops_set_reference(0);
    return st;
}

/* max |a-b| <= tol * max(1, max|b|) for every buffer. */
static int snap_close(const snap *a, const snap *b, double tol, const char *what)
{
    if (a->nb != b->nb) {
        QT_CHECK(0, "%s: %d vs %d buffers", what, a->nb, b->nb);
        return 0;
    }
    int ok = 1;
    for (int i = 0; i < a->nb; i++) {
        double mx = 1.0, err = 0;
        int64_t at = 0;
        for (int64_t e = 0; e < b->len[i]; e++)
            if (fabs(b->b[i][e]) > mx)
                mx = fabs(b->b[i][e]);
        for (int64_t e = 0; e < b->len[i]; e++) {
            double d = fabs((double)a->b[i][e] - b->b[i][e]);
            if (!(d <= err)) {
                err = d;
                at = e;
            }
        }
        QT_CHECK(err <= tol * mx, "%s: buffer %d (len %lld): max err %g at %lld (%g vs %g), scale %g", what, i,
                 (long long)b->len[i], err, (long long)at, a->b[i][at], b->b[i][at], mx);
        ok &= err <= tol * mx;
    }
    return ok;
}

static int snap_same(const snap *a, const snap *b, const char *what)
{
    int ok = a->nb == b->nb;
    for (int i = 0; ok && i < a->nb; i++)
        ok = a->len[i] == b->len[i] && memcmp(a->b[i], b->b[i], (size_t)a->len[i] * sizeof(float)) == 0;
    QT_CHECK(ok, "%s: 1 vs 2 threads not bit-identical", what);
    return ok;
}

static qk_pool *pool2;

/* fast vs reference (tol) and 1 vs 2 threads (bitwise), forward+backward. */
static void check_fast_ref(const char *what, const char *op, int n_in, const tin *ins, int n_out,
                           void (*attrs)(qk_graph *, int, const void *), const void *actx, double tol)
{
    int node;
    qk_graph *g = make_graph(op, n_in, ins, n_out, 1234, &node);
    if (attrs)
        attrs(g, node, actx);
    snap fast1, ref, fast2;
    qk_status s1 = run_fb(g, node, NULL, 0, 1, &fast1);
    QT_CHECK(s1 == QK_OK, "%s: fast: %s", what, qk_last_error());
    qk_status s2 = run_fb(g, node, NULL, 1, 1, &ref);
    QT_CHECK(s2 == QK_OK, "%s: reference: %s", what, qk_last_error());
    qk_status s3 = run_fb(g, node, pool2, 0, 1, &fast2);
    QT_CHECK(s3 == QK_OK, "%s: 2 threads: %s", what, qk_last_error());
    if (s1 == QK_OK && s2 == QK_OK && s3 == QK_OK) {
        snap_close(&fast1, &ref, tol, what);
        snap_same(&fast1, &fast2, what);
    }
    snap_free(&fast1);
    snap_free(&ref);
    snap_free(&fast2);
    qk_graph_destroy(g);
}

static void check_grad(const char *what, const char *op, int n_in, const tin *ins, int n_out,
                       void (*attrs)(qk_graph *, int, const void *), const void *actx, const gc_opts *o)
{
    int node;
    qk_graph *g = make_graph(op, n_in, ins, n_out, 777, &node);
    if (attrs)
        attrs(g, node, actx);
    gc_result r;
    qk_status st = gc_check(g, node, o, &r);
    QT_CHECK(st == QK_OK && r.pass, "%s gradcheck: %s %s", what, st == QK_OK ? "" : qk_last_error(), r.msg);
    qk_graph_destroy(g);
}

/* ---- Conv ---- */

typedef struct conv_cfg {
    const char *name;
    int64_t N, C, M, group;
    int nsp;
    int64_t in[3], k[3], s[3], d[3], p[6];
    const char *auto_pad;
    int bias;
} conv_cfg;

static void conv_attrs(qk_graph *g, int node, const void *vc)
{
    const conv_cfg *c = vc;
    if (c->group != 1)
        qk_node_set_int(g, node, "group", c->group);
    int64_t one[3] = { 1, 1, 1 };
    qk_node_set_ints(g, node, "kernel_shape", c->nsp, c->k);
    qk_node_set_ints(g, node, "strides", c->nsp, c->s[0] ? c->s : one);
    qk_node_set_ints(g, node, "dilations", c->nsp, c->d[0] ? c->d : one);
    if (c->auto_pad)
        qk_node_set_string(g, node, "auto_pad", c->auto_pad);
    else
        qk_node_set_ints(g, node, "pads", 2 * c->nsp, c->p);
}

static int conv_inputs(const conv_cfg *c, tin *ins)
{
    memset(ins, 0, 3 * sizeof *ins);
    ins[0] = (tin){ "x", 1, 2 + c->nsp, { c->N, c->C }, 1, 1 };
    ins[1] = (tin){ "w", 1, 2 + c->nsp, { c->M, c->C / c->group }, 0.5f, 0.5f };
    for (int i = 0; i < c->nsp; i++) {
        ins[0].dims[2 + i] = c->in[i];
        ins[1].dims[2 + i] = c->k[i];
    }
    ins[2] = (tin){ "b", c->bias ? 1 : -1, 1, { c->M }, 1, 1 };
    return 3;
}

static const conv_cfg conv_cases[] = {
    { "3x3 p1", 3, 3, 5, 1, 2, { 7, 7 }, { 3, 3 }, { 1, 1 }, { 1, 1 }, { 1, 1, 1, 1 }, NULL, 1 },
    { "3x3 s2 asym pads odd", 2, 4, 6, 1, 2, { 9, 11 }, { 3, 3 }, { 2, 2 }, { 1, 1 }, { 1, 0, 0, 1 }, NULL, 1 },
    { "3x3 dil2", 2, 3, 4, 1, 2, { 10, 9 }, { 3, 3 }, { 1, 1 }, { 2, 2 }, { 2, 2, 2, 2 }, NULL, 0 },
    { "group2 s2", 2, 4, 6, 2, 2, { 8, 7 }, { 3, 3 }, { 2, 1 }, { 1, 1 }, { 1, 1, 1, 1 }, NULL, 1 },
    { "depthwise 3x3", 3, 5, 5, 5, 2, { 9, 8 }, { 3, 3 }, { 1, 1 }, { 1, 1 }, { 1, 1, 1, 1 }, NULL, 1 },
    { "depthwise s2", 2, 6, 6, 6, 2, { 9, 10 }, { 3, 3 }, { 2, 2 }, { 1, 1 }, { 1, 1, 1, 1 }, NULL, 1 },
    { "depthwise 5x5 dil", 2, 3, 3, 3, 2, { 11, 9 }, { 5, 5 }, { 1, 2 }, { 1, 2 }, { 2, 3, 1, 2 }, NULL, 0 },
    { "1x1", 3, 7, 5, 1, 2, { 6, 5 }, { 1, 1 }, { 1, 1 }, { 1, 1 }, { 0, 0, 0, 0 }, NULL, 1 },
    { "1x1 s2", 2, 5, 4, 1, 2, { 7, 7 }, { 1, 1 }, { 2, 2 }, { 1, 1 }, { 0, 0, 0, 0 }, NULL, 1 },
    { "1x1 group", 2, 6, 4, 2, 2, { 5, 5 }, { 1, 1 }, { 1, 1 }, { 1, 1 }, { 0, 0, 0, 0 }, NULL, 0 },
    { "5x5 nobias", 2, 2, 3, 1, 2, { 9, 9 }, { 5, 5 }, { 1, 1 }, { 1, 1 }, { 2, 2, 2, 2 }, NULL, 0 },
    { "7x3 s(2,1)", 2, 3, 4, 1, 2, { 12, 6 }, { 7, 3 }, { 2, 1 }, { 1, 1 }, { 3, 1, 2, 0 }, NULL, 1 },
    { "same_upper s2", 2, 2, 3, 1, 2, { 8, 7 }, { 3, 3 }, { 2, 2 }, { 1, 1 }, { 0 }, "SAME_UPPER", 1 },
    { "same_lower", 2, 2, 3, 1, 2, { 6, 7 }, { 4, 2 }, { 1, 1 }, { 1, 1 }, { 0 }, "SAME_LOWER", 1 },
    { "valid", 2, 2, 3, 1, 2, { 8, 7 }, { 3, 3 }, { 2, 2 }, { 1, 1 }, { 0 }, "VALID", 1 },
    { "1-D k3 s2", 3, 3, 4, 1, 1, { 13 }, { 3 }, { 2 }, { 1 }, { 1, 2 }, NULL, 1 },
    { "1-D depthwise", 2, 4, 4, 4, 1, { 10 }, { 5 }, { 1 }, { 1 }, { 2, 2 }, NULL, 1 },
    { "3-D", 2, 2, 3, 1, 3, { 5, 6, 4 }, { 3, 3, 2 }, { 2, 1, 1 }, { 1, 1, 2 }, { 1, 1, 0, 1, 0, 1 }, NULL, 1 },
    { "3-D group", 2, 4, 2, 2, 3, { 4, 5, 5 }, { 2, 3, 3 }, { 1, 2, 1 }, { 1, 1, 1 }, { 0, 1, 1, 1, 1, 1 }, NULL, 0 },
};

/* Bigger shapes for fast vs reference and threads (not for the slow gradcheck). */
static const conv_cfg conv_big[] = {
    { "lenet c2 N19", 19, 32, 64, 1, 2, { 14, 14 }, { 3, 3 }, { 1, 1 }, { 1, 1 }, { 1, 1, 1, 1 }, NULL, 1 },
    { "resnet s2 N17", 17, 16, 32, 1, 2, { 28, 28 }, { 3, 3 }, { 2, 2 }, { 1, 1 }, { 1, 1, 1, 1 }, NULL, 0 },
    { "mbv2 dw N18", 18, 24, 24, 24, 2, { 14, 14 }, { 3, 3 }, { 2, 2 }, { 1, 1 }, { 1, 1, 1, 1 }, NULL, 0 },
    { "mbv2 1x1 N20", 20, 24, 96, 1, 2, { 14, 14 }, { 1, 1 }, { 1, 1 }, { 1, 1 }, { 0, 0, 0, 0 }, NULL, 0 },
};

static void test_conv(void)
{
    tin ins[3];
    for (size_t i = 0; i < sizeof conv_cases / sizeof conv_cases[0]; i++) {
        const conv_cfg *c = &conv_cases[i];
        char what[96];
        snprintf(what, sizeof what, "Conv %s", c->name);
        int n_in = conv_inputs(c, ins);
        /* Tolerance: fast paths sum the same products in another order (GEMM
         * blocking, FMA); sums of <= ~1000 terms of O(1) values: 1e-5 relative
         * to the largest magnitude is ~100 float ulps of headroom. */
        check_fast_ref(what, "Conv", n_in, ins, 1, conv_attrs, c, 1e-5);
        /* Conv is linear in each input, so a large step has no truncation
         * error and shrinks the float rounding of L divided by 2*eps. */
        gc_opts o = gc_defaults();
        o.eps = 1e-2;
        check_grad(what, "Conv", n_in, ins, 1, conv_attrs, c, &o);
    }
    for (size_t i = 0; i < sizeof conv_big / sizeof conv_big[0]; i++) {
        const conv_cfg *c = &conv_big[i];
        char what[96];
        snprintf(what, sizeof what, "Conv %s", c->name);
        int n_in = conv_inputs(c, ins);
        check_fast_ref(what, "Conv", n_in, ins, 1, conv_attrs, c, 1e-5);
    }
    /* shape errors name the node and the shapes */
    {
        conv_cfg c = conv_cases[0];
        conv_inputs(&c, ins);
        ins[1].dims[1] = 1;
        int node;
        qk_graph *g = make_graph("Conv", 3, ins, 1, 1, &node);
        conv_attrs(g, node, &c);
        qk_status st = qk_ops_bind(g);
        if (st == QK_OK)
            st = qk_graph_plan(g, 3, 0, NULL);
        QT_CHECK(st == QK_ERR_SHAPE && strstr(qk_last_error(), "Conv_node") &&
                     strstr(qk_last_error(), "input has 3 channels"),
                 "Conv channel mismatch error: %s", qk_last_error());
        qk_graph_destroy(g);
    }
}

int main(void)
{
    if (qk_pool_create(2, &pool2) != QK_OK)
        return 1;
    test_conv();
    qk_pool_destroy(pool2);
    return qt_finish("test_ops_heavy");
}
