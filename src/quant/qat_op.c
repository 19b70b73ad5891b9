/* QkLearnQuant (domain ai.qkit): the learnable quantizer of QAT, forward and
 * backward (qat_internal.h documents inputs, attributes and the algorithms;
 * docs/ALGORITHMS.md section 4 the formulas).
 *
 * Determinism: elementwise work runs in fixed chunks of LQ_GRAIN elements
 * (the count depends on the tensor size only); reductions of parameter
 * gradients keep one partial sum per chunk and channel, added in chunk
 * order, so 1 and N threads give bit-identical results. */
#include "qat_internal.h"
#include "qkit/ops.h"

#include <float.h>
#include <math.h>
#include <string.h>

#define LQ_GRAIN 16384

static const char *const algo_names[QK_QAT_COUNT] = { "ste", "pact", "pact-sym", "pact-asym", "dorefa",
                                                      "wrpn", "lsq", "lsq+", "dsq", "tqt" };

const char *qk_qat_algo_name(qk_qat_algo a) { return (unsigned)a < QK_QAT_COUNT ? algo_names[a] : "?"; }

qk_status qk_qat_algo_parse(const char *s, qk_qat_algo *out)
{
    for (int i = 0; s && i < QK_QAT_COUNT; i++)
        if (strcmp(s, algo_names[i]) == 0) {
            *out = (qk_qat_algo)i;
            return QK_OK;
        }
    return qk_error(QK_ERR_NOTFOUND, "unknown QAT algorithm '%s': valid algorithms are ste, pact, pact-sym, "
                    "pact-asym, dorefa, wrpn, lsq, lsq+, dsq, tqt", s ? s : "(null)");
}

int qk_qat_n_learned(qk_qat_algo a)
{
    switch (a) {
    case QK_QAT_LSQ: case QK_QAT_PACT: case QK_QAT_PACT_SYM: case QK_QAT_TQT:
        return 1;
    case QK_QAT_LSQ_PLUS: case QK_QAT_PACT_ASYM:
        return 2;
    default:
        return 0;
    }
}

int qk_qat_n_state(qk_qat_algo a, int has_fixed_z)
{
    if (a == QK_QAT_STE || a == QK_QAT_DSQ)
        return 2;
    return a == QK_QAT_LSQ && has_fixed_z ? 1 : 0;
}

qk_status qk_qat_attr_parse(const qk_node *n, qk_qat_attr *a)
{
    memset(a, 0, sizeof *a);
    int64_t algo = qk_node_int(n, "algo", -1);
    a->algo = (qk_qat_algo)algo;
    a->scheme.bits = (int)qk_node_int(n, "bits", 8);
    a->scheme.is_signed = (int)qk_node_int(n, "signed", 0);
    a->scheme.symmetric = (int)qk_node_int(n, "symmetric", 0);
    a->scheme.narrow = (int)qk_node_int(n, "narrow", 0);
    a->scheme.pot = (int)qk_node_int(n, "pot", 0);
    a->scheme.round = (qk_round)qk_node_int(n, "round", QK_ROUND_HALF_EVEN);
    a->axis = (int)qk_node_int(n, "axis", -1);
    a->weight = (int)qk_node_int(n, "weight", 0);
    a->gs = (int)qk_node_int(n, "gs", 0);
    a->paper = (int)qk_node_int(n, "paper", 0);
    a->ema = qk_node_float(n, "ema", 0.9f);
    if (algo < 0 || algo >= QK_QAT_COUNT)
        return qk_error(QK_ERR_ARG, "QkLearnQuant '%s': algo %lld is not a QAT algorithm", n->name, (long long)algo);
    int bits_ok = a->scheme.bits >= 2 && a->scheme.bits <= 8;
    if (a->algo == QK_QAT_DOREFA && a->paper)
        bits_ok = a->scheme.bits >= 1 && a->scheme.bits <= 8; /* the paper's 1-bit weights */
    if (!bits_ok)
        return qk_error(QK_ERR_ARG, "QkLearnQuant '%s': bits %d (QAT quantizers take 2..8)", n->name,
                        a->scheme.bits);
    if ((unsigned)a->scheme.round > QK_ROUND_HALF_UP)
        return qk_error(QK_ERR_ARG, "QkLearnQuant '%s': unknown rounding mode %d", n->name, (int)a->scheme.round);
    int32_t qn, qp;
    qk_qparams tmp = a->scheme;
    if (a->scheme.bits < 2)
        tmp.bits = 2;
    qk_quant_range(&tmp, &qn, &qp);
    a->qn = (int32_t)qk_node_int(n, "qn", qn);
    a->qp = (int32_t)qk_node_int(n, "qp", qp);
    if (a->qn >= a->qp)
        return qk_error(QK_ERR_ARG, "QkLearnQuant '%s': code range [%d, %d] is empty", n->name, a->qn, a->qp);
    if (!(a->ema >= 0.0f && a->ema < 1.0f))
        return qk_error(QK_ERR_ARG, "QkLearnQuant '%s': ema ratio %g outside [0, 1)", n->name, (double)a->ema);
    return QK_OK;
}

/* ---- per-channel parameters ---- */

static qk_status range_qparams(const qk_qat_attr *a, float lo, float hi, qk_qat_chan *c)
{
    qk_qparams p = a->scheme;
    p.per_channel = 0;
    if (p.bits < 2)
        p.bits = 2;
    if (lo > hi)
        lo = hi = 0.5f * (lo + hi);
    return qk_qparams_compute(&p, lo, hi, &c->s, &c->z);
}

qk_status qk_qat_channels(const qk_qat_attr *a, const float *P, const float *S, const float *x, int64_t outer,
                          int64_t C, int64_t inner, qk_qat_chan *ch)
{
    int nl = qk_qat_n_learned(a->algo);
    for (int64_t i = 0; i < (int64_t)nl * C; i++)
        if (!isfinite(P[i]))
            return qk_error(QK_ERR_NUMERIC, "learned quantizer value %lld is %s", (long long)i,
                            P[i] != P[i] ? "NaN" : "infinite");
    for (int64_t c = 0; c < C; c++) {
        qk_qat_chan *q = &ch[c];
        q->lo = -INFINITY;
        q->hi = INFINITY;
        q->norm = 1.0f;
        q->z = 0;
        qk_status st = QK_OK;
        switch (a->algo) {
        case QK_QAT_STE:
        case QK_QAT_DSQ: {
            float lo = S ? S[c] : 0, hi = S ? S[C + c] : 0;
            if (a->weight) { /* min/max of the current weights */
                lo = INFINITY;
                hi = -INFINITY;
                for (int64_t o = 0; o < outer; o++)
                    for (int64_t k = 0; k < inner; k++) {
                        float v = x[(o * C + c) * inner + k];
                        lo = v < lo ? v : lo;
                        hi = v > hi ? v : hi;
                    }
            }
            if (!isfinite(lo) || !isfinite(hi))
                return qk_error(QK_ERR_NUMERIC, "quantizer range of channel %lld is not finite", (long long)c);
            st = range_qparams(a, lo, hi, q);
            break;
        }
        case QK_QAT_DOREFA:
            if (a->weight) {
                float m = 0;
                for (int64_t o = 0; o < outer; o++)
                    for (int64_t k = 0; k < inner; k++) {
                        float v = fabsf(tanhf(x[(o * C + c) * inner + k]));
                        m = v > m ? v : m;
                    }
                if (!isfinite(m))
                    return qk_error(QK_ERR_NUMERIC, "dorefa weight channel %lld is not finite", (long long)c);
                q->norm = m > 0 ? m : 1.0f;
                st = range_qparams(a, -1.0f, 1.0f, q);
                break;
            }
            /* activations as wrpn */
            /* fall through */
        case QK_QAT_WRPN:
            q->lo = a->weight ? -1.0f : 0.0f;
            q->hi = 1.0f;
            st = range_qparams(a, q->lo, q->hi, q);
            break;
        case QK_QAT_LSQ:
            q->s = P[c] > QK_QAT_EPS ? P[c] : QK_QAT_EPS;
            q->z = S ? (int32_t)S[c] : 0;
            break;
        case QK_QAT_LSQ_PLUS: {
            q->s = P[c] > QK_QAT_EPS ? P[c] : QK_QAT_EPS;
            float z = qk_round_f(P[C + c], QK_ROUND_HALF_EVEN);
            q->z = z < (float)a->qn ? a->qn : z > (float)a->qp ? a->qp : (int32_t)z;
            break;
        }
        case QK_QAT_PACT:
            q->lo = 0.0f;
            q->hi = P[c] > QK_QAT_EPS ? P[c] : QK_QAT_EPS;
            st = range_qparams(a, q->lo, q->hi, q);
            break;
        case QK_QAT_PACT_ASYM:
            q->lo = P[c] < 0.0f ? P[c] : 0.0f;
            q->hi = P[C + c] > QK_QAT_EPS ? P[C + c] : QK_QAT_EPS;
            st = range_qparams(a, q->lo, q->hi, q);
            break;
        case QK_QAT_PACT_SYM: {
            float al = fabsf(P[c]) > QK_QAT_EPS ? fabsf(P[c]) : QK_QAT_EPS;
            q->lo = -al;
            q->hi = al;
            st = range_qparams(a, q->lo, q->hi, q);
            break;
        }
        case QK_QAT_TQT: {
            float e = ceilf(P[c]);
            if (e > 100.0f || e < -100.0f)
                return qk_error(QK_ERR_NUMERIC, "tqt log2 threshold %g out of range", (double)P[c]);
            int sh = a->scheme.is_signed ? a->scheme.bits - 1 : a->scheme.bits;
            q->s = ldexpf(1.0f, (int)e - sh);
            break;
        }
        default:
            return qk_error(QK_ERR_ARG, "unknown QAT algorithm %d", (int)a->algo);
        }
        if (st != QK_OK)
            return st;
    }
    return QK_OK;
}

void qk_qat_dsq(double u, double alpha, double *soft, double *slope)
{
    double f = floor(u), m = f + 0.5;
    double k = log(2.0 / alpha - 1.0), sphi = 1.0 / (1.0 - alpha);
    double t = tanh(k * (u - m));
    if (soft)
        *soft = f + (sphi * t + 1.0) / 2.0;
    if (slope)
        *slope = k * sphi / 2.0 * (1.0 - t * t);
}

void qk_qat_dorefa_paper(int k, int64_t n, const float *w, float *y)
{
    if (k <= 1) {
        double s = 0;
        for (int64_t i = 0; i < n; i++)
            s += fabs((double)w[i]);
        float e = n ? (float)(s / (double)n) : 0.0f;
        for (int64_t i = 0; i < n; i++)
            y[i] = w[i] >= 0 ? e : -e;
        return;
    }
    double m = 0, L = (double)((1 << k) - 1);
    for (int64_t i = 0; i < n; i++) {
        double v = fabs(tanh((double)w[i]));
        m = v > m ? v : m;
    }
    if (m == 0)
        m = 1;
    for (int64_t i = 0; i < n; i++) {
        double r = tanh((double)w[i]) / (2 * m) + 0.5;
        y[i] = (float)(2.0 * qk_round_double(L * r, QK_ROUND_HALF_EVEN) / L - 1.0);
    }
}

/* ---- the operator ---- */

typedef struct lq_state {
    qk_qat_attr a;
    qk_qat_chan *ch;
    int64_t C;
    double *part;      /* backward partial sums: [chunk][2][C] */
    int64_t part_n;
    qk_lq_observed obs; /* attribute observe = 1: of the last forward */
} lq_state;

void qk_lq_get_observed(const qk_node *n, qk_lq_observed *o)
{
    const lq_state *s = n->state;
    if (s)
        *o = s->obs;
    else
        memset(o, 0, sizeof *o);
}

static void lq_destroy(qk_node *n)
{
    lq_state *s = n->state;
    if (s) {
        qk_free(s->ch);
        qk_free(s->part);
    }
    qk_free(s);
    n->state = NULL;
}

static qk_status lq_init(qk_graph *g, qk_node *n)
{
    (void)g;
    if (n->n_in < 1 || n->n_in > 3 || n->n_out != 1)
        return qk_error(QK_ERR_FORMAT, "QkLearnQuant '%s' takes 1 to 3 inputs and one output", n->name);
    lq_state *s = qk_calloc(1, sizeof *s);
    if (!s)
        return qk_error(QK_ERR_NOMEM, "out of memory");
    n->state = s;
    return qk_qat_attr_parse(n, &s->a);
}

/* [outer, C, inner] view of x around the node's axis. */
static qk_status lq_layout(const qk_node *n, const qk_qat_attr *a, const qk_tensor *x, int64_t *outer, int64_t *C,
                           int64_t *inner)
{
    *outer = 1;
    *C = 1;
    *inner = qk_tensor_numel(x);
    if (a->axis < 0)
        return QK_OK;
    if (a->axis >= x->ndim)
        return qk_error(QK_ERR_SHAPE, "QkLearnQuant '%s': axis %d, input has rank %d", n->name, a->axis, x->ndim);
    *C = x->dims[a->axis];
    *inner = 1;
    for (int d = 0; d < a->axis; d++)
        *outer *= x->dims[d];
    for (int d = a->axis + 1; d < x->ndim; d++)
        *inner *= x->dims[d];
    return QK_OK;
}

static qk_status lq_infer(qk_graph *g, qk_node *n)
{
    lq_state *s = n->state;
    const qk_value *x = qk_in(g, n, 0);
    if (x->t.dtype != QK_F32)
        return qk_error(QK_ERR_UNSUPPORTED, "QkLearnQuant input '%s' must be float32", x->name);
    int64_t outer, C, inner;
    qk_status st = lq_layout(n, &s->a, &x->t, &outer, &C, &inner);
    if (st != QK_OK)
        return st;
    const qk_value *P = qk_in(g, n, 1), *S = qk_in(g, n, 2);
    int64_t np = P ? qk_tensor_numel(&P->t) : 0, ns = S ? qk_tensor_numel(&S->t) : 0;
    int nl = qk_qat_n_learned(s->a.algo);
    if (np != nl * C || (P && P->t.dtype != QK_F32))
        return qk_error(QK_ERR_SHAPE, "QkLearnQuant '%s' (%s): %lld learned values, expected %lld (float32)", n->name,
                        qk_qat_algo_name(s->a.algo), (long long)np, (long long)(nl * C));
    if ((S && S->t.dtype != QK_F32) || (ns != 0 && ns != qk_qat_n_state(s->a.algo, 1) * C) ||
        (ns == 0 && (s->a.algo == QK_QAT_STE || s->a.algo == QK_QAT_DSQ) && !s->a.weight))
        return qk_error(QK_ERR_SHAPE, "QkLearnQuant '%s' (%s): state has %lld values", n->name,
                        qk_qat_algo_name(s->a.algo), (long long)ns);
    if (!s->a.weight && C != 1)
        return qk_error(QK_ERR_UNSUPPORTED, "QkLearnQuant '%s': activations are quantized per tensor", n->name);
    qk_tensor_set_shape(&qk_out(g, n, 0)->t, QK_F32, x->t.ndim, x->t.dims);
    return QK_OK;
}

static qk_status lq_reshape(qk_graph *g, qk_node *n, int training, size_t *ws)
{
    (void)training;
    (void)ws;
    lq_state *s = n->state;
    int64_t outer, C, inner, numel = qk_tensor_numel(&qk_in(g, n, 0)->t);
    qk_status st = lq_layout(n, &s->a, &qk_in(g, n, 0)->t, &outer, &C, &inner);
    if (st != QK_OK)
        return st;
    int64_t nchunks = (numel + LQ_GRAIN - 1) / LQ_GRAIN, pn = (nchunks ? nchunks : 1) * 2 * C;
    qk_qat_chan *ch = qk_realloc(s->ch, (size_t)C * sizeof *ch);
    if (!ch)
        return qk_error(QK_ERR_NOMEM, "out of memory");
    s->ch = ch;
    s->C = C;
    if (pn > s->part_n) {
        double *p = qk_realloc(s->part, (size_t)pn * sizeof *p);
        if (!p)
            return qk_error(QK_ERR_NOMEM, "out of memory");
        s->part = p;
        s->part_n = pn;
    }
    return QK_OK;
}

typedef struct lq_job {
    const lq_state *s;
    const float *x, *dy;
    float *y, *dx;
    int64_t n, C, inner;
    int vec; /* qk_lq_use_vec */
    float mn[1024], mx[1024]; /* forward EMA: per-chunk batch min/max (activations) */
    int64_t cnt[1024];        /* observe: per-chunk count inside the clip */
} lq_job;

/* The channel of element i0 and the end *i1 (<= hi) of its run. */
static inline int64_t run_at(const lq_job *j, int64_t i0, int64_t hi, int64_t *i1)
{
    if (j->C == 1) {
        *i1 = hi;
        return 0;
    }
    int64_t e = (i0 / j->inner + 1) * j->inner;
    *i1 = e < hi ? e : hi;
    return (i0 / j->inner) % j->C;
}

static void fwd_task(void *ctx, int64_t t, int w)
{
    (void)w;
    lq_job *j = ctx;
    const qk_qat_attr *a = &j->s->a;
    int64_t lo = t * LQ_GRAIN, hi = lo + LQ_GRAIN < j->n ? lo + LQ_GRAIN : j->n;
    for (int64_t i0 = lo, i1; i0 < hi; i0 = i1) {
        int64_t ci = run_at(j, i0, hi, &i1);
        if (j->vec)
            qk_lq_fwd_run__avx512(a, &j->s->ch[ci], j->x + i0, j->y + i0, i1 - i0);
        else
            qk_lq_fwd_run(a, &j->s->ch[ci], j->x + i0, j->y + i0, i1 - i0);
    }
}

static void minmax_task(void *ctx, int64_t t, int w)
{
    (void)w;
    lq_job *j = ctx;
    int64_t lo = t * LQ_GRAIN, hi = lo + LQ_GRAIN < j->n ? lo + LQ_GRAIN : j->n;
    float mn = INFINITY, mx = -INFINITY;
    for (int64_t i = lo; i < hi; i++) {
        float v = j->x[i];
        mn = v < mn ? v : mn;
        mx = v > mx ? v : mx;
    }
    j->mn[t] = mn;
    j->mx[t] = mx;
}

/* observe: per chunk, the max (|x| for weights) and the count of elements
 * within the channel's clip, hi = (qp - z) s (weights: |x| <= hi). */
static void observe_task(void *ctx, int64_t t, int w)
{
    (void)w;
    lq_job *j = ctx;
    const qk_qat_attr *a = &j->s->a;
    int64_t lo = t * LQ_GRAIN, hi = lo + LQ_GRAIN < j->n ? lo + LQ_GRAIN : j->n, cnt = 0;
    float mx = -INFINITY;
    for (int64_t i0 = lo, i1; i0 < hi; i0 = i1) {
        int64_t ci = run_at(j, i0, hi, &i1);
        const qk_qat_chan *c = &j->s->ch[ci];
        float clip = (float)(a->qp - c->z) * c->s;
        for (int64_t i = i0; i < i1; i++) {
            float v = a->weight ? fabsf(j->x[i]) : j->x[i];
            mx = v > mx ? v : mx;
            cnt += v <= clip;
        }
    }
    j->mx[t] = mx;
    j->cnt[t] = cnt;
}

static void run_tasks(qk_pool *pool, int64_t nt, qk_task_fn fn, void *ctx)
{
    if (nt <= 1 || !pool)
        for (int64_t t = 0; t < nt; t++)
            fn(ctx, t, 0);
    else
        qk_pool_run(pool, nt, fn, ctx);
}

/* EMA of the batch min/max into S (ste/dsq activations, training forward). */
static qk_status ema_update(qk_exec *ex, lq_job *j, float *S, float r)
{
    double bmin = INFINITY, bmax = -INFINITY;
    for (int64_t lo = 0; lo < j->n; lo += 1024 * (int64_t)LQ_GRAIN) {
        lq_job sub = *j;
        sub.x = j->x + lo;
        sub.n = j->n - lo < 1024 * (int64_t)LQ_GRAIN ? j->n - lo : 1024 * (int64_t)LQ_GRAIN;
        int64_t nt = (sub.n + LQ_GRAIN - 1) / LQ_GRAIN;
        run_tasks(ex->pool, nt, minmax_task, &sub);
        for (int64_t t = 0; t < nt; t++) {
            bmin = sub.mn[t] < bmin ? sub.mn[t] : bmin;
            bmax = sub.mx[t] > bmax ? sub.mx[t] : bmax;
        }
    }
    if (j->n == 0)
        return QK_OK;
    if (!isfinite(bmin) || !isfinite(bmax))
        return qk_error(QK_ERR_NUMERIC, "activation range is not finite");
    S[0] = r * S[0] + (1.0f - r) * (float)bmin;
    S[1] = r * S[1] + (1.0f - r) * (float)bmax;
    return QK_OK;
}

static qk_status lq_forward(qk_exec *ex, qk_node *n)
{
    lq_state *s = n->state;
    qk_graph *g = ex->g;
    const qk_tensor *x = &qk_in(g, n, 0)->t;
    qk_value *P = qk_in(g, n, 1), *S = qk_in(g, n, 2);
    int64_t outer, C, inner, numel = qk_tensor_numel(x);
    qk_status st = lq_layout(n, &s->a, x, &outer, &C, &inner);
    if (st != QK_OK)
        return st;
    lq_job job = { .s = s }, *j = &job;
    j->vec = qk_lq_use_vec(&s->a, g->opts.reference);
    j->x = qk_f32(x);
    j->y = qk_f32(&qk_out(g, n, 0)->t);
    j->n = numel;
    j->C = C;
    j->inner = inner;
    if (ex->training && !s->a.weight && S && (s->a.algo == QK_QAT_STE || s->a.algo == QK_QAT_DSQ) &&
        !qk_node_int(n, "frozen", 0))
        st = ema_update(ex, j, qk_f32(&S->t), s->a.ema);
    if (st == QK_OK)
        st = qk_qat_channels(&s->a, P ? qk_f32(&P->t) : NULL, S ? qk_f32(&S->t) : NULL, j->x, outer, C, inner,
                             s->ch);
    if (st == QK_OK && s->a.algo == QK_QAT_DOREFA && s->a.paper && s->a.weight) {
        for (int64_t c = 0; c < C && outer == 1; c++)
            qk_qat_dorefa_paper(s->a.scheme.bits, inner, j->x + c * inner, j->y + c * inner);
        if (outer != 1)
            st = qk_error(QK_ERR_UNSUPPORTED, "QkLearnQuant '%s': dorefa paper mode needs axis 0", n->name);
    } else if (st == QK_OK) {
        run_tasks(ex->pool, (numel + LQ_GRAIN - 1) / LQ_GRAIN, fwd_task, j);
    }
    if (st == QK_OK && numel > 0 && qk_node_int(n, "observe", 0)) {
        int64_t nt = (numel + LQ_GRAIN - 1) / LQ_GRAIN, cnt = 0;
        float mx = -INFINITY, clip = 0;
        for (int64_t lo = 0; lo < nt; lo += 1024) { /* 1024 chunks per round (the job's arrays) */
            lq_job sub = *j;
            sub.x = j->x + lo * LQ_GRAIN;
            sub.n = numel - lo * LQ_GRAIN;
            sub.n = sub.n < 1024 * (int64_t)LQ_GRAIN ? sub.n : 1024 * (int64_t)LQ_GRAIN;
            int64_t snt = (sub.n + LQ_GRAIN - 1) / LQ_GRAIN;
            run_tasks(ex->pool, snt, observe_task, &sub);
            for (int64_t t = 0; t < snt; t++) {
                mx = sub.mx[t] > mx ? sub.mx[t] : mx;
                cnt += sub.cnt[t];
            }
        }
        for (int64_t c = 0; c < C; c++) {
            float v = (float)(s->a.qp - s->ch[c].z) * s->ch[c].s;
            clip = v > clip ? v : clip;
        }
        s->obs.valid = 1;
        s->obs.max = mx;
        s->obs.clip = clip;
        s->obs.frac_in = (double)cnt / (double)numel;
    }
    return st;
}

/* Chunk t's backward: dx and one partial sum per learned entry and channel. */
static void bwd_task(void *ctx, int64_t t, int w)
{
    (void)w;
    lq_job *j = ctx;
    const lq_state *s = j->s;
    int64_t C = j->C;
    double *p0 = s->part + (t * 2) * C, *p1 = p0 + C;
    for (int64_t c = 0; c < C; c++)
        p0[c] = p1[c] = 0;
    int64_t lo = t * LQ_GRAIN, hi = lo + LQ_GRAIN < j->n ? lo + LQ_GRAIN : j->n;
    for (int64_t i0 = lo, i1; i0 < hi; i0 = i1) {
        int64_t ci = run_at(j, i0, hi, &i1);
        double acc[2] = { 0, 0 };
        float *dx = j->dx ? j->dx + i0 : NULL;
        if (j->vec)
            qk_lq_bwd_run__avx512(&s->a, &s->ch[ci], j->x + i0, j->dy + i0, dx, i1 - i0, acc);
        else
            qk_lq_bwd_run(&s->a, &s->ch[ci], j->x + i0, j->dy + i0, dx, i1 - i0, acc);
        p0[ci] += acc[0];
        p1[ci] += acc[1];
    }
}

/* DoReFa weights: the max|tanh| normaliser's own gradient (argmax element of
 * each channel): dx_m -= sign(tanh x_m) sech^2(x_m) / M^2 sum_i dT_i tanh(x_i). */
static void dorefa_norm_grad(const lq_state *s, const float *x, const float *dy, float *dx, int64_t outer, int64_t C,
                             int64_t inner)
{
    const qk_qat_attr *a = &s->a;
    for (int64_t c = 0; c < C; c++) {
        const qk_qat_chan *ch = &s->ch[c];
        double acc = 0;
        int64_t am = -1;
        float best = -1;
        for (int64_t o = 0; o < outer; o++)
            for (int64_t k = 0; k < inner; k++) {
                int64_t i = (o * C + c) * inner + k;
                float th = tanhf(x[i]);
                if (fabsf(th) > best) {
                    best = fabsf(th);
                    am = i;
                }
                float u = (th / ch->norm) / ch->s;
                float r = qk_round_f(u, a->scheme.round) + (float)ch->z;
                if (r >= (float)a->qn && r <= (float)a->qp)
                    acc += (double)dy[i] * th;
            }
        if (am < 0 || best <= 0)
            continue;
        float th = tanhf(x[am]);
        double sg = th >= 0 ? 1.0 : -1.0;
        dx[am] -= (float)(sg * (1.0 - (double)th * th) / ((double)ch->norm * ch->norm) * acc);
    }
}

static qk_status lq_backward(qk_exec *ex, qk_node *n)
{
    lq_state *s = n->state;
    qk_graph *g = ex->g;
    qk_value *xv = qk_in(g, n, 0), *yv = qk_out(g, n, 0), *P = qk_in(g, n, 1);
    if (!yv->grad.data)
        return QK_OK;
    int has_dp = P && P->grad.data;
    if (!xv->grad.data && !has_dp)
        return QK_OK;
    int64_t outer, C, inner, numel = qk_tensor_numel(&xv->t);
    qk_status st = lq_layout(n, &s->a, &xv->t, &outer, &C, &inner);
    if (st != QK_OK)
        return st;
    lq_job j = { .s = s, .x = qk_f32(&xv->t), .dy = qk_f32(&yv->grad), .dx = xv->grad.data ? qk_f32(&xv->grad) : NULL,
                 .n = numel, .C = C, .inner = inner, .vec = qk_lq_use_vec(&s->a, g->opts.reference) };
    int64_t nt = (numel + LQ_GRAIN - 1) / LQ_GRAIN;
    run_tasks(ex->pool, nt, bwd_task, &j);
    if (s->a.algo == QK_QAT_DOREFA && s->a.weight && j.dx)
        dorefa_norm_grad(s, j.x, j.dy, j.dx, outer, C, inner);
    if (!has_dp)
        return QK_OK;
    double gscale = 1.0;
    if (s->a.gs) {
        /* LSQ: N = weights per channel, or features per sample */
        int64_t N = s->a.weight ? numel / C : (xv->t.ndim > 0 && xv->t.dims[0] > 0 ? numel / xv->t.dims[0] : numel);
        double Qp = (double)s->a.qp - (double)s->ch[0].z;
        gscale = 1.0 / sqrt((double)(N > 0 ? N : 1) * (Qp > 1 ? Qp : 1));
    }
    float *dp = qk_f32(&P->grad);
    int nl = qk_qat_n_learned(s->a.algo);
    for (int k = 0; k < nl; k++)
        for (int64_t c = 0; c < C; c++) {
            double acc = 0;
            for (int64_t t = 0; t < nt; t++)
                acc += s->part[(t * 2 + k) * C + c];
            if (s->a.algo == QK_QAT_PACT_SYM && qk_f32(&P->t)[c] < 0)
                acc = -acc;
            dp[k * C + c] += (float)(acc * gscale);
        }
    return QK_OK;
}

const qk_op qk_op_learnquant = { "QkLearnQuant", lq_init, lq_infer, lq_reshape, lq_forward, lq_backward,
                                 lq_destroy, "ai.qkit" };

/* --progressive: every QkLearnQuant whose own width (attribute final_bits,
 * recorded on the first call) is below `bits` runs at max(final, bits): the
 * attributes bits, qn, qp change and the learned scale of lsq / lsq+ (and
 * their zero points) is rescaled so the clip range stays where it was
 * (each stage starts from the previous one). Clip-based and fixed-range
 * algorithms keep their real-valued parameters. */
qk_status qk_qat_set_stage_bits_(qk_graph *g, int bits)
{
    for (int k = 0; k < g->n_nodes; k++) {
        qk_node *n = &g->nodes[k];
        if (!qk_node_is_in(n, "ai.qkit", "QkLearnQuant"))
            continue;
        lq_state *s = n->state;
        qk_status st;
        int fb = (int)qk_node_int(n, "final_bits", -1);
        if (fb < 0) {
            fb = (int)qk_node_int(n, "bits", 8);
            if ((st = qk_node_set_int(g, k, "final_bits", fb)) != QK_OK)
                return st;
        }
        int nb = fb > bits ? fb : bits, ob = (int)qk_node_int(n, "bits", 8);
        if (nb == ob || !s)
            continue;
        qk_qparams p = s->a.scheme;
        p.bits = nb;
        int32_t qn, qp;
        qk_quant_range(&p, &qn, &qp);
        double r = ((double)s->a.qp - s->a.qn) / ((double)qp - qn); /* old steps per new step */
        qk_value *P = qk_in(g, n, 1), *S = qk_in(g, n, 2);
        int64_t C = P ? qk_tensor_numel(&P->t) / (qk_qat_n_learned(s->a.algo) ? qk_qat_n_learned(s->a.algo) : 1) : 0;
        if (P && (s->a.algo == QK_QAT_LSQ || s->a.algo == QK_QAT_LSQ_PLUS)) {
            float *pv = qk_f32(&P->t);
            for (int64_t c = 0; c < C; c++) {
                pv[c] = (float)(pv[c] * r);
                if (s->a.algo == QK_QAT_LSQ_PLUS)
                    pv[C + c] = (float)(qn + (pv[C + c] - s->a.qn) / r);
            }
            if (S && s->a.algo == QK_QAT_LSQ) {
                float *sv = qk_f32(&S->t);
                for (int64_t c = 0; c < qk_tensor_numel(&S->t); c++)
                    sv[c] = (float)qk_round_double(qn + (sv[c] - s->a.qn) / r, QK_ROUND_HALF_EVEN);
            }
        }
        if ((st = qk_node_set_int(g, k, "bits", nb)) != QK_OK || (st = qk_node_set_int(g, k, "qn", qn)) != QK_OK ||
            (st = qk_node_set_int(g, k, "qp", qp)) != QK_OK || (st = qk_qat_attr_parse(n, &s->a)) != QK_OK)
            return st;
    }
    return QK_OK;
}
