/* gradcheck.h — header-only finite-difference gradient check for one operator.
 *
 * API (all static; include after "qkit/ops.h"):
 *
 *   qk_graph *g; qk_graph_create(&g);
 *   qk_rng rng; qk_rng_seed(&rng, 1);
 *   int x = gc_add(g, "x", 1, QK_F32, 2, (int64_t[]){3, 5}, NULL, &rng);  // PARAM, random N(0,1)
 *   int m = gc_add(g, "min", 0, QK_F32, 0, NULL, (float[]){-0.5f}, NULL); // CONST, given data
 *   int node = gc_node(g, "Clip", 2, (int[]){x, m}, 1);                    // outputs "y0".."yK"
 *   qk_node_set_float(g, node, "alpha", 0.2f);                             // attributes, if any
 *   gc_opts o = gc_defaults();
 *   o.kinks[0] = -0.5; o.n_kinks = 1;                                      // skip |x - kink| < skip_dist
 *   gc_result r;
 *   qk_status st = gc_check(g, node, &o, &r);   // binds, plans, checks every PARAM input
 *   ... st == QK_OK && r.pass ...               // r.worst_rel, r.worst_input, r.worst_index
 *   qk_graph_destroy(g);
 *
 * What gc_check does:
 *   1. qk_ops_bind(g); qk_graph_plan(g, batch, training=1, o->pool) with batch =
 *      dims[0] of the node's first input that has rank >= 1 (else 1).
 *   2. forward; draws R ~ N(0,1) for every output that has a gradient buffer
 *      (optionally only those in o->out_mask), writes values[out].grad = R,
 *      zeroes every input grad and calls n->op->backward directly (the graph
 *      executor's qk_graph_backward wants a scalar loss).
 *   3. For each PARAM input (diff=1) and each element e (or a deterministic
 *      sample of o->max_elems elements): numeric = (L(x+eps) - L(x-eps)) / 2eps
 *      with L = sum over outputs of sum(R*y), accumulated in double. The
 *      perturbation is applied to the float input, and the actual float step
 *      (x+eps)-(x-eps) is used as the denominator.
 *   4. err = |analytic - numeric| / max(o->floor, |analytic|, |numeric|);
 *      r->pass = worst err <= o->tol (and at least one element was checked).
 *
 * Skipping non-differentiable points (ReLU/Clip kinks, MaxPool ties):
 *   - o->kinks[0..n_kinks): skip elements with |x - kink| < o->skip_dist;
 *   - o->skip(ctx, g, node, input_slot, elem): a callback returning nonzero to skip;
 *   - o->auto_kink: skip when the one-sided slopes (L(x+eps)-L(x))/eps and
 *     (L(x)-L(x-eps))/eps differ by more than o->kink_tol*max(1,|slope|) — catches
 *     kinks without knowing where they are (costs one extra forward per element).
 * r->skipped counts what was skipped; r->checked what was compared.
 *
 * CONST inputs (diff=0) are never differentiated (labels, shapes, min/max of
 * Clip when they are not to be checked). int64/int32 data must be given.
 * gc_add with data == NULL fills float tensors with rng N(0,1) * 1 (use
 * gc_fill to change the distribution after adding).
 */
#ifndef QK_TESTS_GRADCHECK_H
#define QK_TESTS_GRADCHECK_H

#include "qkit/registry.h"
#include "qkit/ops.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define GC_MAX_KINKS 8

typedef int (*gc_skip_fn)(void *ctx, qk_graph *g, int node, int input_slot, int64_t elem);

typedef struct gc_opts {
    double eps;         /* finite-difference step (default 1e-3) */
    double tol;         /* pass if worst relative error <= tol (default 1e-2) */
    double floor;       /* denominator floor for the relative error (default 0.1) */
    int n_kinks;
    double kinks[GC_MAX_KINKS];
    double skip_dist;   /* default 2*eps */
    gc_skip_fn skip;
    void *skip_ctx;
    int auto_kink;      /* default 0 */
    double kink_tol;    /* default 0.05 */
    uint32_t out_mask;  /* bit k: put R on output k; 0 = all outputs with a grad */
    int64_t max_elems;  /* per input; 0 = all (default 0) */
    uint64_t seed;      /* for R (default 7) */
    qk_pool *pool;      /* NULL = serial */
    int verbose;        /* print each compared element */
} gc_opts;

typedef struct gc_result {
    int pass;
    double worst_rel;
    int worst_input;    /* input slot of the node */
    int64_t worst_index;
    double worst_analytic, worst_numeric;
    int64_t checked, skipped;
    char msg[256];      /* one-line summary */
} gc_result;

static inline gc_opts gc_defaults(void)
{
    gc_opts o;
    memset(&o, 0, sizeof o);
    o.eps = 1e-3;
    o.tol = 1e-2;
    o.floor = 0.1;
    o.skip_dist = -1;
    o.kink_tol = 0.05;
    o.seed = 7;
    return o;
}

/* Fill a float tensor with lo + (hi-lo)*U[0,1) or, when lo == hi, N(0,1)*|lo|. */
static inline void gc_fill(qk_tensor *t, qk_rng *rng, float lo, float hi)
{
    int64_t n = qk_tensor_numel(t);
    float *p = qk_f32(t);
    for (int64_t i = 0; i < n; i++)
        p[i] = lo == hi ? qk_rng_normal(rng) * fabsf(lo) : lo + (hi - lo) * qk_rng_uniform(rng);
}

/* Add an initializer: diff=1 -> PARAM (differentiated), 0 -> CONST.
 * data: copied (numel * dtype size bytes); NULL -> float N(0,1) from rng
 * (zeros if rng is NULL). Returns the value index or -1. */
static inline int gc_add(qk_graph *g, const char *name, int diff, qk_dtype dt, int ndim,
                         const int64_t *dims, const void *data, qk_rng *rng)
{
    qk_tensor t;
    if (qk_tensor_alloc(&t, dt, ndim, dims) != QK_OK)
        return -1;
    if (data)
        memcpy(t.data, data, qk_tensor_bytes(&t));
    else if (rng && dt == QK_F32)
        gc_fill(&t, rng, 1.0f, 1.0f);
    int id = qk_graph_add_init(g, name, diff ? QK_VALUE_PARAM : QK_VALUE_CONST, &t);
    if (id < 0)
        qk_tensor_free(&t);
    return id;
}

/* Add node op_type reading in[0..n_in) (-1 = absent) with n_out fresh ACT
 * outputs named "<op>_y<k>"; marks them graph outputs. Returns the node index. */
static inline int gc_node(qk_graph *g, const char *op_type, int n_in, const int *in, int n_out)
{
    int out[8];
    char name[96];
    if (n_out > 8)
        return -1;
    for (int k = 0; k < n_out; k++) {
        snprintf(name, sizeof name, "%s_y%d", op_type, k);
        out[k] = qk_graph_add_value(g, name, QK_VALUE_ACT);
        if (out[k] < 0)
            return -1;
    }
    snprintf(name, sizeof name, "%s_node", op_type);
    int node = qk_graph_add_node(g, op_type, name, n_in, in, n_out, out);
    if (node < 0)
        return -1;
    for (int k = 0; k < n_out; k++)
        if (qk_graph_add_output(g, out[k]) != QK_OK)
            return -1;
    return node;
}

/* L = sum_k sum_i R_k[i] * y_k[i] in double, over outputs with a stored R. */
static inline double gc_loss_(qk_graph *g, qk_node *n, float *const *R)
{
    double L = 0;
    for (int k = 0; k < n->n_out; k++) {
        if (!R[k])
            continue;
        const qk_value *v = &g->values[n->out[k]];
        int64_t m = qk_tensor_numel(&v->t);
        const float *y = qk_f32(&v->t);
        for (int64_t i = 0; i < m; i++)
            L += (double)R[k][i] * (double)y[i];
    }
    return L;
}

static inline qk_status gc_forward_loss_(qk_graph *g, qk_node *n, float *const *R, double *L)
{
    qk_status st = qk_graph_forward(g);
    if (st != QK_OK)
        return st;
    *L = gc_loss_(g, n, R);
    return QK_OK;
}

static inline qk_status gc_check(qk_graph *g, int node, const gc_opts *opt, gc_result *r)
{
    gc_opts o = opt ? *opt : gc_defaults();
    if (o.skip_dist < 0)
        o.skip_dist = 2 * o.eps;
    memset(r, 0, sizeof *r);
    r->worst_input = -1;
    r->worst_index = -1;

    qk_status st = qk_ops_bind(g);
    if (st != QK_OK)
        return st;
    qk_node *n = &g->nodes[node];
    int64_t batch = 1;
    for (int j = 0; j < n->n_in; j++) {
        const qk_value *v = qk_in(g, n, j);
        if (v && v->t.ndim >= 1) {
            batch = v->t.dims[0] > 0 ? v->t.dims[0] : 1;
            break;
        }
    }
    st = qk_graph_plan(g, batch, 1, o.pool);
    if (st != QK_OK)
        return st;
    n = &g->nodes[node];
    if (!n->op->backward)
        return qk_error(QK_ERR_UNSUPPORTED, "gradcheck: op %s has no backward", n->op_type);

    st = qk_graph_forward(g);
    if (st != QK_OK)
        return st;

    /* Random output gradients R, kept in owned buffers. */
    float *R[8] = { 0 };
    qk_rng rng;
    qk_rng_seed(&rng, o.seed);
    int nr = 0;
    for (int k = 0; k < n->n_out && k < 8; k++) {
        qk_value *v = &g->values[n->out[k]];
        if (!v->grad.data || v->t.dtype != QK_F32)
            continue;
        if (o.out_mask && !(o.out_mask & (1u << k)))
            continue;
        int64_t m = qk_tensor_numel(&v->t);
        R[k] = qk_malloc((size_t)(m ? m : 1) * sizeof(float));
        if (!R[k]) {
            st = qk_error(QK_ERR_NOMEM, "gradcheck: out of memory");
            goto done;
        }
        for (int64_t i = 0; i < m; i++)
            R[k][i] = qk_rng_normal(&rng);
        nr++;
    }
    if (nr == 0) {
        st = qk_error(QK_ERR_STATE, "gradcheck: node %s has no float output with a gradient", n->name);
        goto done;
    }

    /* Analytic: grads of outputs = R (others 0), inputs zeroed, op backward. */
    for (int k = 0; k < n->n_out; k++) {
        qk_value *v = &g->values[n->out[k]];
        if (!v->grad.data)
            continue;
        int64_t m = qk_tensor_numel(&v->t);
        if (R[k])
            memcpy(v->grad.data, R[k], (size_t)m * sizeof(float));
        else
            memset(v->grad.data, 0, (size_t)m * sizeof(float));
    }
    for (int j = 0; j < n->n_in; j++) {
        qk_value *v = qk_in(g, n, j);
        if (v && v->grad.data)
            memset(v->grad.data, 0, (size_t)qk_tensor_numel(&v->grad) * sizeof(float));
    }
    st = n->op->backward(&g->exec, n);
    if (st != QK_OK)
        goto done;

    /* Numeric. */
    for (int j = 0; j < n->n_in; j++) {
        qk_value *v = qk_in(g, n, j);
        if (!v || v->kind != QK_VALUE_PARAM || !v->grad.data || v->t.dtype != QK_F32)
            continue;
        /* The same value may feed several slots: check it once. */
        int seen = 0;
        for (int jj = 0; jj < j; jj++)
            seen |= n->in[jj] == n->in[j];
        if (seen)
            continue;
        float *x = qk_f32(&v->t);
        const float *ga = qk_f32(&v->grad);
        int64_t m = qk_tensor_numel(&v->t);
        int64_t step = (o.max_elems > 0 && m > o.max_elems) ? (m + o.max_elems - 1) / o.max_elems : 1;
        for (int64_t e = 0; e < m; e += step) {
            float x0 = x[e];
            int skip = 0;
            for (int q = 0; q < o.n_kinks; q++)
                skip |= fabs((double)x0 - o.kinks[q]) < o.skip_dist;
            if (!skip && o.skip)
                skip = o.skip(o.skip_ctx, g, node, j, e);
            if (skip) {
                r->skipped++;
                continue;
            }
            double Lp, Lm, L0 = 0;
            float xp = (float)(x0 + o.eps), xm = (float)(x0 - o.eps);
            x[e] = xp;
            if ((st = gc_forward_loss_(g, n, R, &Lp)) != QK_OK)
                goto done;
            x[e] = xm;
            if ((st = gc_forward_loss_(g, n, R, &Lm)) != QK_OK)
                goto done;
            if (o.auto_kink) {
                x[e] = x0;
                if ((st = gc_forward_loss_(g, n, R, &L0)) != QK_OK)
                    goto done;
            }
            x[e] = x0;
            double h = (double)xp - (double)xm;
            double num = (Lp - Lm) / h;
            if (o.auto_kink) {
                double sp = (Lp - L0) / ((double)xp - x0), sm = (L0 - Lm) / ((double)x0 - xm);
                double mx = fabs(sp) > fabs(sm) ? fabs(sp) : fabs(sm);
                if (fabs(sp - sm) > o.kink_tol * (mx > 1 ? mx : 1)) {
                    r->skipped++;
                    continue;
                }
            }
            double an = ga[e];
            double den = fabs(an) > fabs(num) ? fabs(an) : fabs(num);
            if (den < o.floor)
                den = o.floor;
            double err = fabs(an - num) / den;
            if (o.verbose)
                fprintf(stderr, "gradcheck %s in%d[%lld]: x=%g analytic %.7g numeric %.7g err %.3g\n",
                        n->name, j, (long long)e, (double)x0, an, num, err);
            r->checked++;
            if (err > r->worst_rel || r->worst_index < 0) {
                r->worst_rel = err;
                r->worst_input = j;
                r->worst_index = e;
                r->worst_analytic = an;
                r->worst_numeric = num;
            }
        }
    }
    /* Leave the graph's outputs at the unperturbed forward values. */
    st = qk_graph_forward(g);
    r->pass = st == QK_OK && r->checked > 0 && r->worst_rel <= o.tol;
    snprintf(r->msg, sizeof r->msg,
             "%s: worst rel err %.3g at input %d [%lld] (analytic %.7g, numeric %.7g); %lld checked, %lld skipped",
             n->op_type, r->worst_rel, r->worst_input, (long long)r->worst_index, r->worst_analytic,
             r->worst_numeric, (long long)r->checked, (long long)r->skipped);
done:
    for (int k = 0; k < 8; k++)
        qk_free(R[k]);
    return st;
}

#endif
