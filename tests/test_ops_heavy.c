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
#include "qkit/registry.h"
#include "qkit/ops.h"
#include "gradcheck.h"
#include "qt.h"
#include "../src/ops/conv_flat.h"

#include "qkit/cpu.h"

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
    qk_graph_set_options(g, &(qk_plan_options){ .reference = reference });
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
    if (getenv("QT_VERBOSE"))
        printf("info: %s: %s\n", what, r.msg);
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
    /* stride 2 with OW >= 12 (the FLAT phase path), odd width, asymmetric pads */
    { "3x3 s2 flat phases", 2, 3, 4, 1, 2, { 9, 25 }, { 3, 3 }, { 2, 2 }, { 1, 1 }, { 1, 1, 0, 2 }, NULL, 1 },
    /* stride 1 with OW == W but rows past both image edges and wide left pads */
    { "3x3 flat tall pads", 2, 3, 4, 1, 2, { 6, 5 }, { 3, 3 }, { 1, 1 }, { 1, 1 }, { 3, 2, 1, 0 }, NULL, 1 },
    { "3x3 dil2", 2, 3, 4, 1, 2, { 10, 9 }, { 3, 3 }, { 1, 1 }, { 2, 2 }, { 2, 2, 2, 2 }, NULL, 0 },
    { "group2 s2", 2, 4, 6, 2, 2, { 8, 7 }, { 3, 3 }, { 2, 1 }, { 1, 1 }, { 1, 1, 1, 1 }, NULL, 1 },
    { "depthwise 3x3", 3, 5, 5, 5, 2, { 9, 8 }, { 3, 3 }, { 1, 1 }, { 1, 1 }, { 1, 1, 1, 1 }, NULL, 1 },
    { "depthwise s2", 2, 6, 6, 6, 2, { 9, 10 }, { 3, 3 }, { 2, 2 }, { 1, 1 }, { 1, 1, 1, 1 }, NULL, 1 },
    { "depthwise 5x5 dil", 2, 3, 3, 3, 2, { 11, 9 }, { 5, 5 }, { 1, 2 }, { 1, 2 }, { 2, 3, 1, 2 }, NULL, 0 },
    { "depthwise s2 dil2 asym", 2, 3, 3, 3, 2, { 10, 11 }, { 3, 2 }, { 2, 2 }, { 2, 3 }, { 2, 0, 1, 3 }, NULL, 1 },
    { "depthwise s3 even", 3, 2, 2, 2, 2, { 12, 10 }, { 4, 4 }, { 3, 3 }, { 1, 1 }, { 1, 2, 2, 1 }, NULL, 1 },
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
    /* stride 2 down to 7x7 (FLAT), 8 samples per kernel call and a short last call */
    { "resnet s2 7x7 N70", 70, 8, 16, 1, 2, { 14, 14 }, { 3, 3 }, { 2, 2 }, { 1, 1 }, { 1, 1, 1, 1 }, NULL, 1 },
    { "s1 12x13 N67", 67, 4, 8, 1, 2, { 12, 13 }, { 3, 3 }, { 1, 1 }, { 1, 1 }, { 1, 1, 1, 1 }, NULL, 1 },
    { "mbv2 dw N18", 18, 24, 24, 24, 2, { 14, 14 }, { 3, 3 }, { 2, 2 }, { 1, 1 }, { 1, 1, 1, 1 }, NULL, 0 },
    { "mbv2 dw s1 N33", 33, 12, 12, 12, 2, { 7, 7 }, { 3, 3 }, { 1, 1 }, { 1, 1 }, { 1, 1, 1, 1 }, NULL, 1 },
    { "mbv2 1x1 N20", 20, 24, 96, 1, 2, { 14, 14 }, { 1, 1 }, { 1, 1 }, { 1, 1 }, { 0, 0, 0, 0 }, NULL, 0 },
    /* stride 1 FLAT strips: 7x7 planes 8 to a strip and a short last strip;
     * pads only below, and a 1x3 kernel (the dW kernel's last block reads
     * zero rows under dY);
     * asymmetric and tall pads; a 5x5 (gap 2) and a 7x7 kernel (dW taps in
     * chunks of 9) */
    { "s1 7x7 N70", 70, 8, 16, 1, 2, { 7, 7 }, { 3, 3 }, { 1, 1 }, { 1, 1 }, { 1, 1, 1, 1 }, NULL, 1 },
    { "s1 pads below N19", 19, 3, 5, 1, 2, { 9, 8 }, { 3, 3 }, { 1, 1 }, { 1, 1 }, { 0, 1, 2, 1 }, NULL, 1 },
    { "s1 1x3 N10", 10, 3, 4, 1, 2, { 5, 7 }, { 1, 3 }, { 1, 1 }, { 1, 1 }, { 0, 1, 0, 1 }, NULL, 1 },
    { "s1 asym tall pads N13", 13, 4, 3, 1, 2, { 8, 11 }, { 3, 3 }, { 1, 1 }, { 1, 1 }, { 2, 2, 2, 0 }, NULL, 1 },
    { "s1 5x5 N11", 11, 5, 7, 1, 2, { 10, 9 }, { 5, 5 }, { 1, 1 }, { 1, 1 }, { 2, 2, 2, 2 }, NULL, 0 },
    { "s1 7x7 kernel N9", 9, 3, 4, 1, 2, { 12, 12 }, { 7, 7 }, { 1, 1 }, { 1, 1 }, { 3, 3, 3, 3 }, NULL, 1 },
    /* 1x1 stride 2 (FLAT, phase (0, 0) only): the resnet8 shortcuts, and an odd plane with pads */
    { "shortcut 1x1 s2 N19", 19, 16, 32, 1, 2, { 28, 28 }, { 1, 1 }, { 2, 2 }, { 1, 1 }, { 0, 0, 0, 0 }, NULL, 0 },
    { "shortcut 1x1 s2 7x7 N21", 21, 8, 16, 1, 2, { 14, 14 }, { 1, 1 }, { 2, 2 }, { 1, 1 }, { 0, 0, 0, 0 }, NULL, 1 },
    { "1x1 s2 odd pads N9", 9, 5, 6, 1, 2, { 15, 17 }, { 1, 1 }, { 2, 2 }, { 1, 1 }, { 1, 2, 0, 1 }, NULL, 1 },
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

/* ---- Gemm / MatMul ---- */

typedef struct gemm_cfg {
    const char *name;
    int64_t M, K, N;
    int ta, tb;
    float alpha, beta;
    int cnd;            /* C rank: -1 absent, 0 scalar, 1, 2 */
    int64_t cdims[2];
} gemm_cfg;

static void gemm_attrs(qk_graph *g, int node, const void *vc)
{
    const gemm_cfg *c = vc;
    qk_node_set_int(g, node, "transA", c->ta);
    qk_node_set_int(g, node, "transB", c->tb);
    qk_node_set_float(g, node, "alpha", c->alpha);
    qk_node_set_float(g, node, "beta", c->beta);
}

static int gemm_inputs(const gemm_cfg *c, tin *ins)
{
    memset(ins, 0, 3 * sizeof *ins);
    ins[0] = (tin){ "a", 1, 2, { c->ta ? c->K : c->M, c->ta ? c->M : c->K }, 1, 1 };
    ins[1] = (tin){ "b", 1, 2, { c->tb ? c->N : c->K, c->tb ? c->K : c->N }, 1, 1 };
    if (c->cnd < 0)
        return 2;
    ins[2] = (tin){ "c", 1, c->cnd, { c->cdims[0], c->cdims[1] }, 1, 1 };
    return 3;
}

static const gemm_cfg gemm_cases[] = {
    { "no C", 5, 7, 3, 0, 0, 1.0f, 1.0f, -1, { 0 } },
    { "C [N]", 4, 6, 5, 0, 0, 1.0f, 1.0f, 1, { 5 } },
    { "C [1,N] transB", 4, 6, 5, 0, 1, 1.0f, 1.0f, 2, { 1, 5 } },
    { "C [M,1] transA", 4, 3, 5, 1, 0, 0.5f, 2.0f, 2, { 4, 1 } },
    { "C [M,N] both", 3, 4, 6, 1, 1, 0.25f, 0.35f, 2, { 3, 6 } },
    { "C scalar", 2, 3, 4, 0, 0, 1.0f, 0.5f, 0, { 0 } },
    { "C [1]", 3, 7, 3, 0, 1, 1.5f, 1.0f, 1, { 1 } },
};

static const gemm_cfg gemm_big[] = {
    { "fc 70x300x130 transB", 70, 300, 130, 0, 1, 1.0f, 1.0f, 1, { 130 } },
    { "fc 129x65x270 transA", 129, 65, 270, 1, 0, 0.5f, 1.0f, 2, { 129, 270 } },
};

typedef struct mm_cfg {
    const char *name;
    int ra, rb;
    int64_t a[4], b[4];
} mm_cfg;

static const mm_cfg mm_cases[] = {
    { "2-D", 2, 2, { 3, 4 }, { 4, 5 } },
    { "3-D", 3, 3, { 2, 3, 4 }, { 2, 4, 3 } },
    { "bcast 4-D x 3-D", 4, 3, { 2, 1, 3, 4 }, { 3, 4, 2 } },
    { "3-D x 2-D", 3, 2, { 3, 2, 5 }, { 5, 4 } },
    { "2-D x 3-D", 2, 3, { 2, 5 }, { 3, 5, 4 } },
    { "1-D x 2-D", 1, 2, { 4 }, { 4, 3 } },
    { "3-D x 1-D", 3, 1, { 2, 3, 4 }, { 4 } },
    { "1-D x 1-D", 1, 1, { 6 }, { 6 } },
};

static void test_gemm(void)
{
    tin ins[3];
    /* Tolerance: tiled qk_sgemm vs plain dot products, K <= 300 terms. */
    for (size_t i = 0; i < sizeof gemm_cases / sizeof gemm_cases[0]; i++) {
        const gemm_cfg *c = &gemm_cases[i];
        char what[96];
        snprintf(what, sizeof what, "Gemm %s", c->name);
        int n_in = gemm_inputs(c, ins);
        check_fast_ref(what, "Gemm", n_in, ins, 1, gemm_attrs, c, 1e-5);
        gc_opts o = gc_defaults();
        o.eps = 1e-2; /* linear in each input */
        check_grad(what, "Gemm", n_in, ins, 1, gemm_attrs, c, &o);
    }
    for (size_t i = 0; i < sizeof gemm_big / sizeof gemm_big[0]; i++) {
        const gemm_cfg *c = &gemm_big[i];
        char what[96];
        snprintf(what, sizeof what, "Gemm %s", c->name);
        int n_in = gemm_inputs(c, ins);
        check_fast_ref(what, "Gemm", n_in, ins, 1, gemm_attrs, c, 1e-5);
    }
    for (size_t i = 0; i < sizeof mm_cases / sizeof mm_cases[0]; i++) {
        const mm_cfg *c = &mm_cases[i];
        char what[96];
        snprintf(what, sizeof what, "MatMul %s", c->name);
        ins[0] = (tin){ "a", 1, c->ra, { c->a[0], c->a[1], c->a[2], c->a[3] }, 1, 1 };
        ins[1] = (tin){ "b", 1, c->rb, { c->b[0], c->b[1], c->b[2], c->b[3] }, 1, 1 };
        check_fast_ref(what, "MatMul", 2, ins, 1, NULL, NULL, 1e-5);
        gc_opts o = gc_defaults();
        o.eps = 1e-2;
        check_grad(what, "MatMul", 2, ins, 1, NULL, NULL, &o);
    }
    ins[0] = (tin){ "a", 1, 3, { 3, 70, 300 }, 1, 1 };
    ins[1] = (tin){ "b", 1, 2, { 300, 260 }, 1, 1 };
    check_fast_ref("MatMul big 3-D x 2-D", "MatMul", 2, ins, 1, NULL, NULL, 1e-5);
    /* shape error */
    gemm_cfg bad = gemm_cases[1];
    gemm_inputs(&bad, ins);
    ins[1].dims[0] = 5;
    int node;
    qk_graph *g = make_graph("Gemm", 3, ins, 1, 1, &node);
    qk_status st = qk_ops_bind(g);
    if (st == QK_OK)
        st = qk_graph_plan(g, 4, 0, NULL);
    QT_CHECK(st == QK_ERR_SHAPE && strstr(qk_last_error(), "disagree on K"), "Gemm K mismatch: %s", qk_last_error());
    qk_graph_destroy(g);
}

/* ---- BatchNormalization ---- */

static void bn_attrs(qk_graph *g, int node, const void *vc)
{
    (void)vc;
    qk_node_set_float(g, node, "epsilon", 1e-3f);
    qk_node_set_float(g, node, "momentum", 0.8f);
}

static int bn_inputs(int rank, const int64_t *xd, tin *ins)
{
    ins[0] = (tin){ "x", 1, rank, { xd[0], xd[1], xd[2], xd[3], xd[4] }, 2.0f, 2.0f };
    ins[1] = (tin){ "scale", 1, 1, { xd[1] }, 0.5f, 1.5f };
    ins[2] = (tin){ "bias", 1, 1, { xd[1] }, 1, 1 };
    ins[3] = (tin){ "mean", 0, 1, { xd[1] }, -0.5f, 0.5f };
    ins[4] = (tin){ "var", 0, 1, { xd[1] }, 0.5f, 2.0f };
    return 5;
}

static void test_bn(void)
{
    tin ins[5];
    static const struct { int rank; int64_t d[5]; } cases[] = {
        { 4, { 4, 3, 5, 5 } }, { 2, { 6, 4 } }, { 3, { 3, 2, 7 } }, { 5, { 2, 3, 2, 3, 2 } }, { 4, { 19, 9, 3, 4 } },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char what[96];
        snprintf(what, sizeof what, "BatchNormalization rank %d case %zu", cases[i].rank, i);
        bn_inputs(cases[i].rank, cases[i].d, ins);
        /* one implementation: the check is 1 vs 2 threads (and tol 0 vs itself) */
        check_fast_ref(what, "BatchNormalization", 5, ins, 1, bn_attrs, NULL, 0.0);
        /* y is smooth in every input: eps 1e-2 keeps the truncation error
         * (O(eps^2)) small while the float rounding of L (~1e-5 over 2000
         * outputs) divided by 2*eps drops to ~5e-4. */
        gc_opts o = gc_defaults();
        o.eps = 1e-2;
        check_grad(what, "BatchNormalization", 5, ins, 1, bn_attrs, NULL, &o);
    }
    /* Training forward against a direct double-precision computation, and the
     * in-place running-stat update (PyTorch: unbiased variance). */
    int64_t d[5] = { 5, 3, 4, 3 };
    bn_inputs(4, d, ins);
    int node;
    qk_graph *g = make_graph("BatchNormalization", 5, ins, 1, 5, &node);
    bn_attrs(g, node, NULL);
    QT_OK(qk_ops_bind(g));
    QT_OK(qk_graph_plan(g, 5, 1, pool2));
    qk_node *n = &g->nodes[node];
    float rm0[3], rv0[3];
    memcpy(rm0, qk_in(g, n, 3)->t.data, sizeof rm0);
    memcpy(rv0, qk_in(g, n, 4)->t.data, sizeof rv0);
    QT_OK(qk_graph_forward(g));
    const float *x = qk_f32(&qk_in(g, n, 0)->t), *y = qk_f32(&qk_out(g, n, 0)->t);
    const float *sc = qk_f32(&qk_in(g, n, 1)->t), *bb = qk_f32(&qk_in(g, n, 2)->t);
    double worst = 0, worst_rs = 0;
    for (int c = 0; c < 3; c++) {
        double m = 0, v = 0;
        for (int k = 0; k < 5; k++)
            for (int s = 0; s < 12; s++)
                m += x[(k * 3 + c) * 12 + s];
        m /= 60;
        for (int k = 0; k < 5; k++)
            for (int s = 0; s < 12; s++)
                v += (x[(k * 3 + c) * 12 + s] - m) * (x[(k * 3 + c) * 12 + s] - m);
        for (int k = 0; k < 5; k++)
            for (int s = 0; s < 12; s++) {
                int e = (k * 3 + c) * 12 + s;
                double ref = sc[c] * (x[e] - m) / sqrt(v / 60 + 1e-3) + bb[c];
                worst = fmax(worst, fabs(ref - y[e]));
            }
        double rm = 0.8 * rm0[c] + 0.2 * m, rv = 0.8 * rv0[c] + 0.2 * v / 59;
        worst_rs = fmax(worst_rs, fabs(rm - qk_f32(&qk_in(g, n, 3)->t)[c]));
        worst_rs = fmax(worst_rs, fabs(rv - qk_f32(&qk_in(g, n, 4)->t)[c]));
    }
    QT_CHECK(worst < 2e-5, "BN training forward vs double: %g", worst);
    QT_CHECK(worst_rs < 1e-5, "BN running stats (momentum 0.8, unbiased var): %g", worst_rs);
    /* Eval mode: affine forward and backward dX = dY * scale / sqrt(var + eps). */
    g->exec.training = 0;
    QT_OK(qk_graph_forward(g));
    const float *rm = qk_f32(&qk_in(g, n, 3)->t), *rv = qk_f32(&qk_in(g, n, 4)->t);
    float *dy = qk_f32(&qk_out(g, n, 0)->grad), *dx = qk_f32(&qk_in(g, n, 0)->grad);
    for (int e = 0; e < 180; e++)
        dy[e] = (float)((e * 7) % 11) - 5.0f;
    memset(dx, 0, 180 * sizeof(float));
    QT_OK(n->op->backward(&g->exec, n));
    worst = 0;
    double worst_dx = 0;
    for (int e = 0; e < 180; e++) {
        int c = (e / 12) % 3;
        double is = 1.0 / sqrt(rv[c] + 1e-3);
        worst = fmax(worst, fabs(sc[c] * (x[e] - rm[c]) * is + bb[c] - y[e]));
        worst_dx = fmax(worst_dx, fabs(dy[e] * sc[c] * is - dx[e]));
    }
    QT_CHECK(worst < 2e-5 && worst_dx < 2e-5, "BN eval forward %g, backward %g", worst, worst_dx);
    qk_graph_destroy(g);

    /* ONNX training_mode=1 outputs (biased variance, ONNX reference) without
     * touching the inputs when the executor is not training. */
    g = make_graph("BatchNormalization", 5, ins, 3, 5, &node);
    qk_node_set_int(g, node, "training_mode", 1);
    QT_OK(qk_ops_bind(g));
    QT_OK(qk_graph_plan(g, 5, 0, NULL));
    n = &g->nodes[node];
    memcpy(rm0, qk_in(g, n, 3)->t.data, sizeof rm0);
    QT_OK(qk_graph_forward(g));
    x = qk_f32(&qk_in(g, n, 0)->t);
    worst = 0;
    for (int c = 0; c < 3; c++) {
        double m = 0, v = 0;
        for (int k = 0; k < 5; k++)
            for (int s = 0; s < 12; s++)
                m += x[(k * 3 + c) * 12 + s];
        m /= 60;
        for (int k = 0; k < 5; k++)
            for (int s = 0; s < 12; s++)
                v += (x[(k * 3 + c) * 12 + s] - m) * (x[(k * 3 + c) * 12 + s] - m);
        const float *iv = qk_f32(&qk_in(g, n, 4)->t);
        worst = fmax(worst, fabs(0.9 * rm0[c] + 0.1 * m - qk_f32(&qk_out(g, n, 1)->t)[c]));
        worst = fmax(worst, fabs(0.9 * iv[c] + 0.1 * v / 60 - qk_f32(&qk_out(g, n, 2)->t)[c]));
        worst = fmax(worst, fabs(rm0[c] - qk_f32(&qk_in(g, n, 3)->t)[c]));
    }
    QT_CHECK(worst < 1e-5, "BN training_mode outputs: %g", worst);
    qk_graph_destroy(g);
}

/* ---- pools ---- */

typedef struct pool_cfg {
    const char *name, *op;
    int nsp;
    int64_t N, C, in[3], k[3], s[3], d[3], p[6];
    int ceil, cip;
    const char *auto_pad;
} pool_cfg;

static void pool_attrs(qk_graph *g, int node, const void *vc)
{
    const pool_cfg *c = vc;
    if (strcmp(c->op, "GlobalAveragePool") == 0)
        return;
    qk_node_set_ints(g, node, "kernel_shape", c->nsp, c->k);
    if (c->s[0])
        qk_node_set_ints(g, node, "strides", c->nsp, c->s);
    if (c->d[0])
        qk_node_set_ints(g, node, "dilations", c->nsp, c->d);
    if (c->auto_pad)
        qk_node_set_string(g, node, "auto_pad", c->auto_pad);
    else
        qk_node_set_ints(g, node, "pads", 2 * c->nsp, c->p);
    if (c->ceil)
        qk_node_set_int(g, node, "ceil_mode", 1);
    if (c->cip)
        qk_node_set_int(g, node, "count_include_pad", 1);
}

static const pool_cfg pool_cases[] = {
    { "2x2 s2", "MaxPool", 2, 2, 3, { 6, 8 }, { 2, 2 }, { 2, 2 }, { 0 }, { 0 }, 0, 0, NULL },
    { "2x2 s2 odd", "MaxPool", 2, 2, 3, { 7, 5 }, { 2, 2 }, { 2, 2 }, { 0 }, { 0 }, 0, 0, NULL },
    { "2x2 s2 ceil odd", "MaxPool", 2, 2, 2, { 7, 5 }, { 2, 2 }, { 2, 2 }, { 0 }, { 0 }, 1, 0, NULL },
    { "3x3 s2 p1", "MaxPool", 2, 2, 2, { 9, 8 }, { 3, 3 }, { 2, 2 }, { 0 }, { 1, 1, 1, 1 }, 0, 0, NULL },
    { "dil2", "MaxPool", 2, 1, 2, { 8, 9 }, { 2, 3 }, { 1, 2 }, { 2, 2 }, { 0, 1, 1, 0 }, 0, 0, NULL },
    { "same_upper", "MaxPool", 2, 2, 2, { 7, 6 }, { 3, 2 }, { 2, 2 }, { 0 }, { 0 }, 0, 0, "SAME_UPPER" },
    { "1-D", "MaxPool", 1, 2, 3, { 11 }, { 3 }, { 2 }, { 0 }, { 1, 0 }, 0, 0, NULL },
    { "3-D", "MaxPool", 3, 1, 2, { 4, 5, 6 }, { 2, 2, 3 }, { 2, 1, 2 }, { 0 }, { 0, 1, 1, 0, 0, 1 }, 0, 0, NULL },
    { "3x3 p1", "AveragePool", 2, 2, 3, { 7, 6 }, { 3, 3 }, { 1, 1 }, { 0 }, { 1, 1, 1, 1 }, 0, 0, NULL },
    { "3x3 p1 include_pad", "AveragePool", 2, 2, 2, { 7, 6 }, { 3, 3 }, { 2, 1 }, { 0 }, { 1, 1, 1, 1 }, 0, 1, NULL },
    { "ceil s2", "AveragePool", 2, 2, 2, { 7, 8 }, { 3, 3 }, { 2, 2 }, { 0 }, { 0 }, 1, 0, NULL },
    { "ceil s2 include_pad", "AveragePool", 2, 1, 2, { 7, 8 }, { 3, 2 }, { 2, 2 }, { 0 }, { 1, 0, 1, 0 }, 1, 1, NULL },
    { "same_lower", "AveragePool", 2, 2, 2, { 5, 6 }, { 2, 3 }, { 1, 2 }, { 0 }, { 0 }, 0, 0, "SAME_LOWER" },
    { "1-D", "AveragePool", 1, 2, 2, { 10 }, { 4 }, { 3 }, { 0 }, { 2, 1 }, 0, 0, NULL },
    { "3-D", "AveragePool", 3, 2, 2, { 4, 4, 5 }, { 2, 3, 2 }, { 2, 1, 2 }, { 0 }, { 0, 1, 0, 0, 1, 1 }, 0, 0, NULL },
    { "2-D", "GlobalAveragePool", 2, 3, 4, { 5, 7 }, { 0 }, { 0 }, { 0 }, { 0 }, 0, 0, NULL },
    { "1-D", "GlobalAveragePool", 1, 2, 3, { 9 }, { 0 }, { 0 }, { 0 }, { 0 }, 0, 0, NULL },
    { "3-D", "GlobalAveragePool", 3, 2, 2, { 3, 4, 2 }, { 0 }, { 0 }, { 0 }, { 0 }, 0, 0, NULL },
};

static void test_pool(void)
{
    tin ins[1];
    for (size_t i = 0; i < sizeof pool_cases / sizeof pool_cases[0]; i++) {
        const pool_cfg *c = &pool_cases[i];
        char what[96];
        snprintf(what, sizeof what, "%s %s", c->op, c->name);
        ins[0] = (tin){ "x", 1, 2 + c->nsp, { c->N, c->C, c->in[0], c->in[1], c->in[2] }, 1, 1 };
        /* Max: exact (same comparisons); Avg: same sums; tolerance covers
         * only float rounding of the divisor order. */
        check_fast_ref(what, c->op, 1, ins, 1, pool_attrs, c, 1e-6);
        gc_opts o = gc_defaults();
        if (strcmp(c->op, "MaxPool") == 0)
            o.auto_kink = 1; /* skip points where the argmax switches within eps */
        else
            o.eps = 1e-2;    /* linear */
        check_grad(what, c->op, 1, ins, 1, pool_attrs, c, &o);
    }
    /* lenet-sized MaxPool: fast 2x2 kernel vs reference, threads */
    pool_cfg big = pool_cases[0];
    big.N = 19;
    big.C = 32;
    big.in[0] = big.in[1] = 28;
    ins[0] = (tin){ "x", 1, 4, { big.N, big.C, 28, 28 }, 1, 1 };
    check_fast_ref("MaxPool 2x2 s2 N19 C32 28x28", "MaxPool", 1, ins, 1, pool_attrs, &big, 0.0);
}

/* ---- qk_sgemm backends ---- */

static int count_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    if (!d)
        return -1;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

typedef struct sg_ctx { int64_t M, N, K; const float *A, *B; float *C; qk_sgemm_kind kind; } sg_ctx;

static void sg_task(void *vc, int64_t t, int worker)
{
    (void)worker;
    sg_ctx *c = vc;
    qk_sgemm(c->kind, 0, 1, c->M, c->N, c->K, 1.0f, c->A, c->K, c->B, c->K, 0.0f, c->C + t * c->M * c->N, c->N);
}

static void test_sgemm(void)
{
    static const char *const bks[] = { "dnnl", "openblas", "reference" };
    static const qk_sgemm_kind kinds[] = { QK_SGEMM_DNNL, QK_SGEMM_OPENBLAS, QK_SGEMM_REFERENCE };
    qk_rng r;
    qk_rng_seed(&r, 3);
    enum { CAP = 8000 };
    float *A = qk_malloc(CAP * 4), *B = qk_malloc(CAP * 4), *C = qk_malloc(CAP * 4), *R = qk_malloc(CAP * 4);
    for (int i = 0; i < CAP; i++) {
        A[i] = qk_rng_normal(&r);
        B[i] = qk_rng_normal(&r);
    }
    const char *def = qk_sgemm_name(QK_SGEMM_DEFAULT);
    QT_CHECK(strcmp(def, "dnnl") == 0 || strcmp(def, "openblas") == 0 || strcmp(def, "reference") == 0,
             "default backend %s", def);
    qk_sgemm_kind pk = QK_SGEMM_DEFAULT;
    QT_CHECK(qk_sgemm_parse("mkl", &pk) == QK_ERR_ARG, "unknown backend accepted");
    for (int b = 0; b < 3; b++)
        QT_CHECK(qk_sgemm_parse(bks[b], &pk) == QK_OK && pk == kinds[b] && !strcmp(qk_sgemm_name(pk), bks[b]),
                 "sgemm kind %s", bks[b]);
    /* M, N, K, lda/ldb/ldc padding, alpha, beta, transposes; beta = 0 must
     * ignore NaN already in C (BLAS rule). Reference: plain double loops. */
    static const int64_t shp[][3] = { { 7, 5, 3 }, { 33, 17, 40 }, { 1, 64, 9 }, { 16, 1, 31 }, { 5, 6, 0 } };
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (size_t si = 0; si < sizeof shp / sizeof shp[0]; si++) {
                int64_t M = shp[si][0], N = shp[si][1], K = shp[si][2];
                int64_t lda = (ta ? M : K) + 2, ldb = (tb ? K : N) + 1, ldc = N + 3;
                float alpha = 0.75f, beta = si & 1 ? 0.5f : 0.0f;
                for (int64_t i = 0; i < M; i++)
                    for (int64_t j = 0; j < N; j++) {
                        double acc = 0;
                        for (int64_t k = 0; k < K; k++)
                            acc += (double)(ta ? A[k * lda + i] : A[i * lda + k]) * (tb ? B[j * ldb + k] : B[k * ldb + j]);
                        R[i * ldc + j] = (float)(alpha * acc + (beta != 0.0f ? beta * (float)(i - j) : 0.0));
                    }
                for (int b = 0; b < 3; b++) {
                    for (int64_t i = 0; i < M; i++)
                        for (int64_t j = 0; j < N; j++)
                            C[i * ldc + j] = beta != 0.0f ? (float)(i - j) : NAN;
                    qk_sgemm(kinds[b], ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
                    double err = 0;
                    for (int64_t i = 0; i < M; i++)
                        for (int64_t j = 0; j < N; j++) {
                            double d = fabs((double)C[i * ldc + j] - R[i * ldc + j]);
                            err = d > err || d != d ? d : err;
                        }
                    /* float sums of <= 40 products of N(0,1): ~1e-6 relative */
                    QT_CHECK(err < 1e-4, "sgemm %s ta=%d tb=%d %lldx%lldx%lld: err %g", bks[b], ta, tb,
                             (long long)M, (long long)N, (long long)K, err);
                }
            }
    /* From pool workers (and the caller): no library may start threads of
     * its own. 256^3 is big enough for oneDNN to open an OpenMP team if
     * omp_set_num_threads(1) were missing. */
    int before = count_threads();
    enum { SZ = 256 };
    float *A2 = qk_calloc(SZ * SZ, 4), *B2 = qk_calloc(SZ * SZ, 4), *C2 = qk_calloc(2 * SZ * SZ, 4);
    sg_ctx c = { SZ, SZ, SZ, A2, B2, C2, QK_SGEMM_DEFAULT };
    for (int b = 0; b < 2; b++) {
        c.kind = kinds[b];
        qk_pool_run(pool2, 1, sg_task, &c);
        qk_pool_run(pool2, 2, sg_task, &c);
    }
    QT_CHECK(count_threads() == before, "threads before %d after %d sgemm calls from the pool", before,
             count_threads());
    qk_free(A2);
    qk_free(B2);
    qk_free(C2);
    qk_free(A);
    qk_free(B);
    qk_free(C);
    qk_free(R);
}

/* MaxPool Indices output (storage orders) and uint8 forward. */
static void test_maxpool_extras(void)
{
    for (int so = 0; so < 2; so++) {
        qk_graph *g;
        QT_OK(qk_graph_create(&g));
        float xv[2 * 3 * 4];
        for (int i = 0; i < 24; i++)
            xv[i] = (float)((i * 7) % 24);
        int x = gc_add(g, "x", 0, QK_F32, 4, (int64_t[]){ 1, 2, 3, 4 }, xv, NULL);
        int node = gc_node(g, "MaxPool", 1, &x, 2);
        qk_node_set_ints(g, node, "kernel_shape", 2, (int64_t[]){ 2, 2 });
        qk_node_set_ints(g, node, "strides", 2, (int64_t[]){ 1, 2 });
        qk_node_set_int(g, node, "storage_order", so);
        QT_OK(qk_ops_bind(g));
        QT_OK(qk_graph_plan(g, 1, 0, NULL));
        QT_OK(qk_graph_forward(g));
        qk_node *n = &g->nodes[node];
        const float *y = qk_f32(&qk_out(g, n, 0)->t);
        const int64_t *ind = qk_out(g, n, 1)->t.data;
        int ok = qk_out(g, n, 1)->t.dtype == QK_I64 && qk_tensor_numel(&qk_out(g, n, 0)->t) == 8;
        for (int c = 0; c < 2 && ok; c++)
            for (int oh = 0; oh < 2; oh++)
                for (int ow = 0; ow < 2; ow++) {
                    int best = -1;
                    for (int i = 0; i < 2; i++)
                        for (int j = 0; j < 2; j++) {
                            int e = c * 12 + (oh + i) * 4 + 2 * ow + j;
                            if (best < 0 || xv[e] > xv[best])
                                best = e;
                        }
                    int h = (best % 12) / 4, w = best % 4;
                    int64_t want = so ? c * 12 + w * 3 + h : best;
                    int o = c * 4 + oh * 2 + ow;
                    ok &= y[o] == xv[best] && ind[o] == want;
                }
        QT_CHECK(ok, "MaxPool Indices storage_order=%d", so);
        qk_graph_destroy(g);
    }
    qk_graph *g;
    QT_OK(qk_graph_create(&g));
    uint8_t xu[16];
    for (int i = 0; i < 16; i++)
        xu[i] = (uint8_t)(250 - 17 * i % 256);
    int x = gc_add(g, "x", 0, QK_U8, 4, (int64_t[]){ 1, 1, 4, 4 }, xu, NULL);
    int node = gc_node(g, "MaxPool", 1, &x, 1);
    qk_node_set_ints(g, node, "kernel_shape", 2, (int64_t[]){ 3, 3 });
    qk_node_set_ints(g, node, "pads", 4, (int64_t[]){ 1, 1, 1, 1 });
    qk_node_set_ints(g, node, "strides", 2, (int64_t[]){ 2, 2 });
    QT_OK(qk_ops_bind(g));
    QT_OK(qk_graph_plan(g, 1, 0, NULL));
    QT_OK(qk_graph_forward(g));
    const uint8_t *yu = g->values[g->nodes[node].out[0]].t.data;
    int ok = g->values[g->nodes[node].out[0]].t.dtype == QK_U8;
    for (int oh = 0; oh < 2; oh++)
        for (int ow = 0; ow < 2; ow++) {
            int m = 0;
            for (int i = -1; i < 2; i++)
                for (int j = -1; j < 2; j++) {
                    int h = 2 * oh + i, w = 2 * ow + j;
                    if (h >= 0 && h < 4 && w >= 0 && w < 4 && xu[h * 4 + w] > m)
                        m = xu[h * 4 + w];
                }
            ok &= yu[oh * 2 + ow] == m;
        }
    QT_CHECK(ok, "MaxPool uint8");
    qk_graph_destroy(g);
}

/* The padded-flat convolution kernels (src/ops/conv_flat.h): AVX-512
 * against the portable ones on random sizes (channel counts off the
 * 8-block, positions off the 48-block, stride-1 and phase-style tap
 * offsets). They round differently (fused multiply-add), so to 1e-5 of
 * the largest magnitude. */
static void test_cflat_kernels(void)
{
    if (!qk_cpu_isa_usable(QK_ISA_AVX512)) {
        printf("note: no AVX-512: conv_flat kernel comparison skipped\n");
        return;
    }
    uint32_t seed = 5;
#define RNDF() (seed = seed * 1664525u + 1013904223u, (float)((int)(seed >> 9) % 2001 - 1000) / 1000.0f)
    for (int it = 0; it < 12; it++) {
        int64_t M = 1 + it * 5 % 19, C = 1 + it * 7 % 13, F = 30 + it * 37 % 200, Wp = 9 + it % 7;
        int kk = it % 3 == 0 ? 1 : it % 3 == 1 ? 9 : 4;
        int64_t off[9];
        for (int t = 0; t < kk; t++)
            off[t] = it % 2 ? (t / 3) * Wp + t % 3 : (t % 4) * 61 + t / 2; /* stride-1 / phase-like */
        int64_t ldx = qk_cflat_fup(F) + 3 * Wp + 300, K = (F + 15) / 16 * 16;
        float *x = qk_aligned_alloc((size_t)(C * ldx + 64) * sizeof(float));
        float *w = qk_aligned_alloc((size_t)(M * C * kk) * sizeof(float));
        float *wp = qk_aligned_alloc((size_t)qk_cflat_packed_floats(M, C, kk) * sizeof(float));
        float *b = qk_aligned_alloc((size_t)M * sizeof(float));
        int64_t ldy = qk_cflat_fup(F);
        float *y0 = qk_aligned_alloc((size_t)(M * ldy) * sizeof(float)), *y1 = qk_aligned_alloc((size_t)(M * ldy) * sizeof(float));
        float *dy = qk_aligned_alloc((size_t)(M * K + 64) * sizeof(float));
        float *g0 = qk_aligned_alloc((size_t)(M * C * kk) * sizeof(float)), *g1 = qk_aligned_alloc((size_t)(M * C * kk) * sizeof(float));
        for (int64_t i = 0; i < C * ldx + 64; i++)
            x[i] = RNDF();
        for (int64_t i = 0; i < M * C * kk; i++)
            w[i] = RNDF();
        for (int64_t i = 0; i < M; i++)
            b[i] = RNDF();
        for (int64_t i = 0; i < M * K + 64; i++)
            dy[i] = RNDF();
        qk_cflat_pack(w, M, C, kk, wp);
        qk_cflat_fwd_ref(wp, M, C, kk, off, x, ldx, F, it % 2 ? b : NULL, y0, ldy);
        qk_cflat_fwd__avx512(wp, M, C, kk, off, x, ldx, F, it % 2 ? b : NULL, y1, ldy);
        double md = 0, mx = 1e-30;
        for (int64_t m = 0; m < M; m++)
            for (int64_t f = 0; f < F; f++) {
                double d = fabs((double)y0[m * ldy + f] - y1[m * ldy + f]);
                md = d > md ? d : md;
                mx = fabs(y0[m * ldy + f]) > mx ? fabs(y0[m * ldy + f]) : mx;
            }
        QT_CHECK(md <= 1e-5 * mx, "cflat fwd M%lld C%lld F%lld taps %d: AVX-512 vs portable differ by %g (max %g)",
                 (long long)M, (long long)C, (long long)F, kk, md, mx);
        if (kk <= QK_CFLAT_MAXTAP) {
            for (int acc = 0; acc < 2; acc++) {
                for (int64_t i = 0; i < M * C * kk; i++)
                    g0[i] = g1[i] = 0.5f;
                qk_cflat_dw_ref(dy, K, M, x, ldx, C, K, kk, off, g0, kk, acc);
                qk_cflat_dw__avx512(dy, K, M, x, ldx, C, K, kk, off, g1, kk, acc);
                md = 0, mx = 1e-30;
                for (int64_t i = 0; i < M * C * kk; i++) {
                    double d = fabs((double)g0[i] - g1[i]);
                    md = d > md ? d : md;
                    mx = fabs(g0[i]) > mx ? fabs(g0[i]) : mx;
                }
                QT_CHECK(md <= 1e-5 * mx + 1e-4, "cflat dW M%lld C%lld K%lld taps %d acc %d: differ by %g (max %g)",
                         (long long)M, (long long)C, (long long)K, kk, acc, md, mx);
            }
        }
        qk_aligned_free(x), qk_aligned_free(w), qk_aligned_free(wp), qk_aligned_free(b);
        qk_aligned_free(y0), qk_aligned_free(y1), qk_aligned_free(dy), qk_aligned_free(g0), qk_aligned_free(g1);
    }
#undef RNDF
}

int main(void)
{
    if (qk_pool_create(2, &pool2) != QK_OK)
        return 1;
    test_sgemm();
    test_conv();
    test_gemm();
    test_bn();
    test_pool();
    test_maxpool_extras();
    test_cflat_kernels();
    qk_pool_destroy(pool2);
    return qt_finish("test_ops_heavy");
}
