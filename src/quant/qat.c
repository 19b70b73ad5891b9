/* Quantization-aware training (qat.h): deployability checks, PTQ prepare and
 * calibration, the learnable quantizers put in place of the FakeQuant sites,
 * training under the divergence guard, and the way back to FakeQuant sites
 * with the learned parameters (so the PTQ QDQ writer writes the file). */
#include "ptq_internal.h"
#include "qat_internal.h"
#include "qkit/fold.h"
#include "qkit/ops.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define QAT_PARAM_SUFFIX "_qat_param"
#define QAT_STATE_SUFFIX "_qat_state"

struct qk_qat {
    qk_qat_config c;
    qk_qmodel *m;
    qk_qat_algo *algo;     /* per site, decided at install */
    qk_qat_algo w_algo;
    qk_norm norm;
    int calibrated, installed, finished;
    int diverged; /* the last qk_qat_train failed with QK_ERR_NUMERIC: nothing is written */
    qk_qat_report *report; /* c.report: per-epoch statistics */
    qk_qat_bn *bn;         /* bn_fold 1-4: the folded pairs and their training form */
};

void qk_qat_config_default(qk_qat_config *c)
{
    memset(c, 0, sizeof *c);
    qk_ptq_config_default(&c->ptq);
    c->ptq.cle = -1; /* PTQ passes, also where the profile's PTQ recipe has them: QAT trains */
    c->ptq.bias_correct = -1;
    c->algo = QK_QAT_LSQ;
    c->w_algo = -1;
    c->calib = 512;
    qk_train_config_default(&c->train);
    c->train.lr = 0; /* automatic: QK_QAT_LR_BN or QK_QAT_LR_FOLDED, resolved in qk_qat_prepare */
    c->train.epochs = 4;
    c->q_wd = -1.0f;
    c->max_retries = 3;
    c->bn_fold = -1;
}

static int is_pact(qk_qat_algo a) { return a == QK_QAT_PACT || a == QK_QAT_PACT_SYM || a == QK_QAT_PACT_ASYM; }

/* The weight algorithm: w_algo, else algo (lsq for the activation-only pact
 * methods; ste on power-of-two profiles, where lsq cannot deploy). */
static qk_qat_algo weight_algo(const qk_qat_config *c, const qk_qparams *wq)
{
    if (c->w_algo >= 0)
        return (qk_qat_algo)c->w_algo;
    if (is_pact(c->algo))
        return wq->pot ? QK_QAT_STE : QK_QAT_LSQ;
    return c->algo;
}

/* QK_ERR_UNSUPPORTED with the reason when the profile cannot deploy what
 * the algorithms learn. */
static qk_status check_deployable(const qk_qat_config *c, const qk_backend *b, const qk_qparams *wq,
                                  const qk_qparams *aq, qk_qat_algo wa)
{
    const qk_ptq_config *p = &c->ptq;
    if ((unsigned)c->algo >= QK_QAT_COUNT || (unsigned)wa >= QK_QAT_COUNT)
        return qk_error(QK_ERR_ARG, "unknown QAT algorithm");
    if (b->arith == QK_ARITH_NONE || wq->scheme != QK_QSCHEME_LINEAR || aq->scheme != QK_QSCHEME_LINEAR)
        return qk_error(QK_ERR_UNSUPPORTED, "backend '%s' has no linear integer grid (logarithmic code): "
                        "QAT learns linear quantizers", b->name);
    if (wq->bits > 8 || aq->bits > 8)
        return qk_error(QK_ERR_UNSUPPORTED, "QAT learns 2..8-bit quantizers; backend '%s' at W%d A%d has "
                        "wider ones", b->name, wq->bits, aq->bits);
    if (p->first_last_bits > 8)
        return qk_error(QK_ERR_UNSUPPORTED, "QAT learns 2..8-bit quantizers (first/last layer bits %d)",
                        p->first_last_bits);
    if (p->hooks)
        return qk_error(QK_ERR_UNSUPPORTED, "QAT does not run custom quantizer hooks");
    if (p->bit_alloc || p->bias_correct > 0)
        return qk_error(QK_ERR_UNSUPPORTED, "QAT learns its own ranges: bit allocation and bias correction are "
                        "PTQ passes");
    if (is_pact(wa))
        return qk_error(QK_ERR_UNSUPPORTED, "%s is an activation clipping method; choose another weight "
                        "algorithm (lsq, ste, dorefa, wrpn, dsq, lsq+, tqt)", qk_qat_algo_name(wa));
    if (wq->pot && (wa == QK_QAT_LSQ || wa == QK_QAT_LSQ_PLUS))
        return qk_error(QK_ERR_UNSUPPORTED, "%s learns float weight scales; backend '%s' needs power-of-two "
                        "scales (use tqt, or ste)", qk_qat_algo_name(wa), b->name);
    if (aq->pot && (c->algo == QK_QAT_LSQ || c->algo == QK_QAT_LSQ_PLUS))
        return qk_error(QK_ERR_UNSUPPORTED, "%s learns float activation scales; backend '%s' needs "
                        "power-of-two scales (use tqt, or ste)", qk_qat_algo_name(c->algo), b->name);
    if ((c->algo == QK_QAT_TQT && !aq->pot && !b->user_scheme) || (wa == QK_QAT_TQT && !wq->pot && !b->user_scheme))
        return qk_error(QK_ERR_UNSUPPORTED, "tqt learns power-of-two thresholds for power-of-two hardware; "
                        "backend '%s' uses float scales (use lsq; tqt runs on tvm, vitis or academic)", b->name);
    if (c->algo == QK_QAT_LSQ_PLUS && aq->symmetric)
        return qk_error(QK_ERR_UNSUPPORTED, "lsq+ learns an activation zero point; backend '%s' has symmetric "
                        "activations (zero point fixed): use lsq", b->name);
    if (c->algo == QK_QAT_PACT_ASYM && aq->symmetric)
        return qk_error(QK_ERR_UNSUPPORTED, "pact-asym learns two clip bounds; backend '%s' has symmetric "
                        "activations: use pact or pact-sym", b->name);
    return QK_OK;
}

/* --bn-fold (docs/ALGORITHMS.md section 6): strategy 0 folds every Conv/Gemm
 * -> BatchNormalization pair once, before the quantizers are placed (the
 * folding profiles do that in qk_ptq_prepare anyway); 1-4 record the pairs
 * and fold them too (placement and calibration see the inference form), and
 * training rebuilds each pair in the strategy's form (qat_bn.c). */
static qk_status apply_bn_fold(qk_graph *g, const qk_qat_config *c, const qk_backend *b, int *n_folded,
                               qk_qat_bn **bn)
{
    *n_folded = 0;
    *bn = NULL;
    if (c->bn_fold < 0)
        return QK_OK;
    if (c->bn_fold > 4)
        return qk_error(QK_ERR_ARG, "BN folding strategy %d: the strategies are 0-4", c->bn_fold);
    int n_bn = 0;
    for (int i = 0; i < g->n_nodes; i++)
        n_bn += qk_node_is(&g->nodes[i], "BatchNormalization");
    if (n_bn == 0) {
        qk_log(QK_LOG_WARN, "note: --bn-fold %d: the model has no BatchNormalization; nothing to fold",
               c->bn_fold);
        return QK_OK;
    }
    if (c->bn_fold > 0)
        return qk_qat_bn_fold_(g, c->bn_fold, bn, n_folded);
    return b->fold_bn ? QK_OK : qk_fold_bn(g, n_folded);
}

/* --teacher: the teacher takes the student's input and gives its output
 * shape (both planned at batch 1 for inference, then unplanned). */
static qk_status check_teacher(qk_graph *g, qk_graph *t)
{
    char a[96], b[96];
    if (t->n_inputs != 1 || t->n_outputs < 1 || g->n_inputs != 1 || g->n_outputs < 1)
        return qk_error(QK_ERR_ARG, "--teacher: the teacher and the model need one input and an output each");
    qk_status st = qk_graph_plan(t, 1, 0, NULL);
    if (st != QK_OK)
        return qk_error_context(st, "--teacher: the teacher model");
    if ((st = qk_graph_plan(g, 1, 0, NULL)) != QK_OK) {
        qk_graph_unplan(t);
        return st;
    }
    const qk_value *ti = &t->values[t->inputs[0]], *gi = &g->values[g->inputs[0]];
    const qk_value *to = &t->values[t->outputs[0]], *go = &g->values[g->outputs[0]];
    if (!qk_shape_equal(&ti->t, &gi->t))
        st = qk_error(QK_ERR_ARG, "--teacher: the teacher's input '%s' %s does not match the model's '%s' %s",
                      ti->name, qk_shape_str(&ti->t, a, sizeof a), gi->name, qk_shape_str(&gi->t, b, sizeof b));
    else if (!qk_shape_equal(&to->t, &go->t) || to->t.dtype != QK_F32 || go->t.dtype != QK_F32)
        st = qk_error(QK_ERR_ARG, "--teacher: the teacher's output '%s' %s does not match the model's '%s' %s "
                      "(distillation compares them class by class)", to->name, qk_shape_str(&to->t, a, sizeof a),
                      go->name, qk_shape_str(&go->t, b, sizeof b));
    qk_graph_unplan(t);
    qk_graph_unplan(g);
    return st;
}

qk_status qk_qat_prepare(qk_graph *g, const qk_qat_config *c, qk_qat **out)
{
    *out = NULL;
    qk_status st;
    const qk_backend *b = c ? c->ptq.backend : NULL;
    if (!b) {
        qk_graph_destroy(g);
        return qk_error(QK_ERR_ARG, "QAT: no backend profile given");
    }
    qk_qparams wq, aq;
    int abits = c->ptq.abits ? c->ptq.abits : (c->ptq.reduce_range ? 7 : 0);
    if ((st = qk_backend_qparams(b, c->ptq.wbits, abits, &wq, &aq)) != QK_OK) {
        qk_graph_destroy(g);
        return st;
    }
    qk_qat_algo wa = weight_algo(c, &wq);
    if ((st = check_deployable(c, b, &wq, &aq, wa)) != QK_OK) {
        qk_graph_destroy(g);
        return st;
    }
    if (c->train.teacher && (st = check_teacher(g, c->train.teacher)) != QK_OK) {
        qk_graph_destroy(g);
        return st;
    }
    if (c->widen < 0 || c->widen > 16) {
        qk_graph_destroy(g);
        return qk_error(QK_ERR_ARG, "--widen %d: the width multiplier is an integer in 1..16", c->widen);
    }
    if (c->widen > 1) {
        int nw = 0;
        if ((st = qk_qat_widen_(g, c->widen, &nw)) != QK_OK) {
            qk_graph_destroy(g);
            return st;
        }
        qk_log(QK_LOG_INFO, "--widen %d: %d layers widened", c->widen, nw);
    }
    if (c->freeze_bn < 0) {
        qk_graph_destroy(g);
        return qk_error(QK_ERR_ARG, "--freeze-bn %d: give a number of epochs >= 1", c->freeze_bn);
    }
    if (c->freeze_bn > 0 && !qk_qat_bn_freezable_(c))
        qk_log(QK_LOG_WARN, "note: --freeze-bn %d: %s has no batch statistics to freeze (strategies 2-4 have: "
               "--bn-fold 2, 3 or 4, and BN the profile keeps in float); ignored", c->freeze_bn,
               c->bn_fold == 1 ? "BN folding strategy 1 uses the running statistics throughout and"
               : c->bn_fold == 0 ? "BN folding strategy 0 removes BN before training and"
                                 : "the profile folds BN before training, so QAT");
    if (c->calib < 1) {
        qk_graph_destroy(g);
        return qk_error(QK_ERR_ARG, "QAT: calibration needs at least one image");
    }
    if (c->ptq.cle > 0 || c->ptq.cle_relu6) {
        qk_graph_destroy(g);
        return qk_error(QK_ERR_UNSUPPORTED, "QAT: cross-layer equalization is a PTQ pass (qk_ptq_config.cle); "
                        "equalize the float model first (qk_cle_apply) to train from it");
    }
    int n_folded = 0;
    qk_qat_bn *bn = NULL;
    if ((st = apply_bn_fold(g, c, b, &n_folded, &bn)) != QK_OK) {
        qk_graph_destroy(g);
        return st;
    }
    qk_qat *q = qk_calloc(1, sizeof *q);
    if (!q) {
        qk_qat_bn_free_(bn);
        qk_graph_destroy(g);
        return qk_error(QK_ERR_NOMEM, "QAT: out of memory");
    }
    q->c = *c;
    q->w_algo = wa;
    q->bn = bn;
    /* Low-bit activations start from the MSE-optimal clip where the profile would
     * take min-max (QK_QAT_A_OBSERVER_LOW). */
    if (!q->c.ptq.a_observer && aq.bits <= QK_QAT_LOW_ABITS && strcmp(b->a_observer, "minmax") == 0)
        q->c.ptq.a_observer = QK_QAT_A_OBSERVER_LOW;
    qk_ptq_config pc = q->c.ptq;
    pc.cle = -1; /* also where the profile's PTQ default has them (0) */
    pc.bias_correct = -1;
    if ((st = qk_ptq_prepare(g, &pc, &q->m)) != QK_OK) {
        qk_qat_bn_free_(bn);
        qk_free(q);
        return st;
    }
    if ((st = qk_qat_bn_check_(q->bn, q->m->g)) != QK_OK) {
        qk_qat_destroy(q);
        return st;
    }
    if (n_folded)
        q->m->n_folded = n_folded;
    if (!(q->c.train.lr > 0)) {
        int keeps_bn = 0;
        for (int i = 0; i < q->m->g->n_nodes; i++)
            keeps_bn |= qk_node_is(&q->m->g->nodes[i], "BatchNormalization");
        q->c.train.lr = keeps_bn ? QK_QAT_LR_BN : QK_QAT_LR_FOLDED;
    }
    q->c.ptq.exclude = NULL; /* prepare copied them */
    q->c.ptq.n_exclude = 0;
    q->algo = qk_calloc((size_t)(q->m->n_sites ? q->m->n_sites : 1), sizeof *q->algo);
    if (!q->algo) {
        qk_qat_destroy(q);
        return qk_error(QK_ERR_NOMEM, "QAT: out of memory");
    }
    *out = q;
    return QK_OK;
}

void qk_qat_destroy(qk_qat *q)
{
    if (!q)
        return;
    qk_qmodel_destroy(q->m);
    qk_qat_report_free_(q->report);
    qk_qat_bn_free_(q->bn);
    qk_free(q->algo);
    qk_free(q);
}

qk_graph *qk_qat_graph(qk_qat *q) { return q->m->g; }
qk_qmodel *qk_qat_qmodel(qk_qat *q) { return q->m; }

void qk_qat_print_plan(const qk_qat *q, FILE *f)
{
    qk_ptq_print_plan(q->m, f);
    fprintf(f, "QAT: weights %s, activations %s", qk_qat_algo_name(q->w_algo), qk_qat_algo_name(q->c.algo));
    if (q->c.algo == QK_QAT_DOREFA || q->c.algo == QK_QAT_WRPN)
        fprintf(f, " (sites with negative values keep ste)");
    else if (q->c.algo == QK_QAT_PACT)
        fprintf(f, " (sites with negative values get a learned lower bound)");
    else if (q->c.algo == QK_QAT_TQT)
        fprintf(f, " (unsigned-grid sites with negative values keep ste)");
    fputc('\n', f);
    if (q->c.bn_fold >= 1)
        fprintf(f, "BN folding: strategy %d on %d Conv/Gemm + BatchNormalization pairs (trained in that form, "
                "deployed folded with running statistics)\n", q->c.bn_fold, qk_qat_bn_count_(q->bn));
    if (q->installed)
        for (int s = 0; s < q->m->n_sites; s++)
            fprintf(f, "  %-3s %-34s %s\n", q->m->sites[s].is_weight ? "W" : "A", q->m->sites[s].value,
                    qk_qat_algo_name(q->algo[s]));
}

qk_status qk_qat_calibrate(qk_qat *q, const qk_dataset *train, qk_norm norm, qk_pool *pool)
{
    if (q->calibrated)
        return qk_error(QK_ERR_STATE, "QAT: the model is already calibrated");
    int64_t n = q->c.calib < train->n ? q->c.calib : train->n;
    qk_status st = qk_ptq_calibrate(q->m, train, norm, n, pool, NULL, NULL);
    if (st != QK_OK)
        return st;
    q->norm = norm;
    q->calibrated = 1;
    return QK_OK;
}

/* ---- install: FakeQuant sites -> QkLearnQuant ---- */

/* Rebuild node k in place as op_type reading in[0..nin) (same name and
 * outputs; state, attributes freed; unbound). */
static qk_status node_retype(qk_graph *g, int k, const char *op_type, int nin, const int *in)
{
    qk_node *n = &g->nodes[k];
    char *name = qk_strdup(n->name), *t = qk_strdup(op_type), *dom = qk_strdup("ai.qkit");
    int *ni = qk_malloc((size_t)nin * sizeof *ni), *no = qk_malloc((size_t)n->n_out * sizeof *no);
    int n_out = n->n_out;
    if (!name || !t || !dom || !ni || !no) {
        qk_free(name);
        qk_free(t);
        qk_free(dom);
        qk_free(ni);
        qk_free(no);
        return qk_error(QK_ERR_NOMEM, "QAT: out of memory");
    }
    memcpy(ni, in, (size_t)nin * sizeof *ni);
    memcpy(no, n->out, (size_t)n_out * sizeof *no);
    qk_node_clear(n);
    n->name = name;
    n->op_type = t;
    n->domain = dom;
    n->in = ni;
    n->n_in = nin;
    n->out = no;
    n->n_out = n_out;
    for (int i = 0; i < n_out; i++)
        if (no[i] >= 0)
            g->values[no[i]].producer = k;
    qk_graph_unplan(g); /* frees the plan's buffers (clearing `planned` alone leaked them) */
    qk_free(g->order);
    g->order = NULL;
    return QK_OK;
}

/* A new float32 initializer "<site>_<suffix>" of n values. */
static int add_values(qk_graph *g, const char *site, const char *suffix, qk_value_kind kind, int64_t n,
                      const float *v)
{
    qk_tensor t;
    if (qk_tensor_alloc(&t, QK_F32, 1, &n) != QK_OK)
        return -1;
    memcpy(t.data, v, (size_t)n * sizeof(float));
    char base[600];
    snprintf(base, sizeof base, "%s%s", site, suffix);
    char *name = qk_graph_unique_name(g, base);
    int id = name ? qk_graph_add_init(g, name, kind, &t) : -1;
    qk_free(name);
    if (id < 0)
        qk_tensor_free(&t);
    else
        g->values[id].no_decay = 1; /* the quantizer group's decay is set explicitly */
    return id;
}

/* Per-channel statistics of a weight [outer, C, inner]: mean|w|, mean, std, max|w|. */
static void weight_stats(const float *w, int64_t outer, int64_t C, int64_t inner, int64_t c, double *mabs,
                         double *mean, double *sd, double *amax)
{
    double s1 = 0, s2 = 0, sa = 0, mx = 0;
    int64_t cnt = outer * inner;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t k = 0; k < inner; k++) {
            double v = w[(o * C + c) * inner + k];
            s1 += v;
            s2 += v * v;
            sa += fabs(v);
            mx = fabs(v) > mx ? fabs(v) : mx;
        }
    *mean = s1 / (double)cnt;
    double var = s2 / (double)cnt - *mean * *mean;
    *sd = var > 0 ? sqrt(var) : 0;
    *mabs = sa / (double)cnt;
    *amax = mx;
}

static qk_status install_site(qk_qat *q, int s)
{
    qk_qmodel *m = q->m;
    qk_graph *g = m->g;
    qk_qsite *t = &m->sites[s];
    qk_fq_rt *rt = &m->rt[s];
    int k = t->node, xv = g->nodes[k].in[0];
    const qk_qparams *qp = &t->qp;
    int weight = t->is_weight;
    qk_qat_algo a = weight ? q->w_algo : q->c.algo;
    int init_lsqp = 0;
    float lo = 0, hi = 0;
    if (weight && t->layer < 0)
        a = QK_QAT_STE; /* a quantized bias (vitis): its power-of-two min/max */
    if (weight && a == QK_QAT_LSQ_PLUS) {
        a = QK_QAT_LSQ; /* LSQ+ weights are symmetric: LSQ with LSQ+'s init */
        init_lsqp = 1;
    }
    if (!weight) {
        qk_status st = qk_observer_range(qk_quantizer_observer(rt->q), &lo, &hi);
        if (st != QK_OK)
            return qk_error_context(st, "QAT: activation '%s'", t->value);
        int neg = lo < 0;
        if (neg && (a == QK_QAT_DOREFA || a == QK_QAT_WRPN || (a == QK_QAT_TQT && !qp->is_signed)))
            a = QK_QAT_STE;
        if (neg && a == QK_QAT_PACT)
            a = qp->symmetric ? QK_QAT_PACT_SYM : QK_QAT_PACT_ASYM;
    }
    q->algo[s] = a;
    qk_tensor *X = &g->values[xv].t;
    int axis = weight && qp->per_channel ? qp->axis : -1;
    int64_t C = 1, outer = 1, inner = qk_tensor_numel(X);
    if (axis >= 0) {
        C = X->dims[axis];
        inner = 1;
        for (int d = 0; d < axis; d++)
            outer *= X->dims[d];
        for (int d = axis + 1; d < X->ndim; d++)
            inner *= X->dims[d];
    }
    int32_t qn, qpv;
    qk_quant_range(qp, &qn, &qpv);
    if (!weight) { /* as calibration: 8-bit activations saturate to the container */
        qn = rt->qn[0];
        qpv = rt->qp[0];
    }
    int nl = qk_qat_n_learned(a), ns = weight ? (a == QK_QAT_LSQ) : qk_qat_n_state(a, 1);
    float *P = qk_calloc((size_t)(2 * C), sizeof *P), *S = qk_calloc((size_t)(2 * C), sizeof *S);
    if (!P || !S) {
        qk_free(P);
        qk_free(S);
        return qk_error(QK_ERR_NOMEM, "QAT: out of memory");
    }
    for (int64_t c = 0; c < C; c++) {
        int32_t z = weight ? (rt->zp ? rt->zp[rt->n_ch == C ? c : 0] : 0) : rt->zp[0];
        double Qp = (double)qpv - z > 1 ? (double)qpv - z : 1;
        if (weight) {
            double mabs, mean, sd, amax;
            weight_stats(qk_f32(X), outer, C, inner, c, &mabs, &mean, &sd, &amax);
            if (a == QK_QAT_LSQ) {
                double sv = rt->scale && rt->n_ch == C ? rt->scale[c] : 2 * mabs / sqrt(Qp); /* calibration */
                if (q->c.paper_init)
                    sv = init_lsqp ? fmax(fabs(mean - 3 * sd), fabs(mean + 3 * sd)) / (double)(1 << (qp->bits - 1))
                                   : 2 * mabs / sqrt(Qp);
                P[c] = (float)(sv > 0 ? sv : 1e-4);
                S[c] = (float)z;
            } else if (a == QK_QAT_TQT) {
                P[c] = (float)log2(amax > 0 ? amax : 1e-4);
            }
        } else {
            double amax = fmax(fabs(lo), fabs(hi));
            switch (a) {
            case QK_QAT_STE: case QK_QAT_DSQ:
                S[0] = lo;
                S[1] = hi;
                break;
            case QK_QAT_LSQ:
                P[0] = rt->scale[0];
                S[0] = (float)z;
                break;
            case QK_QAT_LSQ_PLUS:
                P[0] = rt->scale[0];
                P[1] = (float)z;
                break;
            case QK_QAT_PACT:
                P[0] = hi > 0 ? hi : 1.0f;
                break;
            case QK_QAT_PACT_ASYM:
                P[0] = lo;
                P[1] = hi > 0 ? hi : 1.0f;
                break;
            case QK_QAT_PACT_SYM:
                P[0] = (float)(amax > 0 ? amax : 1.0);
                break;
            case QK_QAT_TQT:
                P[0] = (float)log2(amax > 0 ? amax : 1.0);
                break;
            default:
                break;
            }
        }
    }
    /* LSQ+ learned zero points live on the weight of the state row: P[C..2C) */
    int pv = -1, sv = -1;
    if (nl > 0 && (pv = add_values(g, t->value, QAT_PARAM_SUFFIX, QK_VALUE_PARAM, nl * C, P)) < 0) {
        qk_free(P);
        qk_free(S);
        return qk_error(QK_ERR_NOMEM, "QAT: cannot add the parameters of '%s'", t->value);
    }
    if (ns > 0 && (sv = add_values(g, t->value, QAT_STATE_SUFFIX, QK_VALUE_CONST, ns * C, S)) < 0) {
        qk_free(P);
        qk_free(S);
        return qk_error(QK_ERR_NOMEM, "QAT: cannot add the state of '%s'", t->value);
    }
    qk_free(P);
    qk_free(S);
    if (weight && g->values[xv].kind == QK_VALUE_CONST)
        g->values[xv].kind = QK_VALUE_PARAM;
    int in[3] = { xv, pv, sv };
    qk_status st = node_retype(g, k, "QkLearnQuant", 3, in);
    const struct { const char *n; int64_t v; } ia[] = {
        { "algo", a }, { "bits", qp->bits }, { "signed", qp->is_signed }, { "symmetric", qp->symmetric },
        { "narrow", qp->narrow }, { "pot", qp->pot }, { "round", qp->round }, { "qn", qn }, { "qp", qpv },
        { "axis", axis }, { "weight", weight }, { "gs", a == QK_QAT_LSQ || a == QK_QAT_LSQ_PLUS },
        { "observe", q->c.report != 0 },
    };
    for (size_t i = 0; st == QK_OK && i < sizeof ia / sizeof ia[0]; i++)
        st = qk_node_set_int(g, k, ia[i].n, ia[i].v);
    return st;
}

static qk_status install(qk_qat *q)
{
    if (!q->calibrated)
        return qk_error(QK_ERR_STATE, "QAT: calibrate the model first");
    for (int s = 0; s < q->m->n_sites; s++) {
        qk_status st = install_site(q, s);
        if (st != QK_OK)
            return st;
    }
    qk_status st = qk_qat_bn_install_(q->bn, q->m->g);
    if (st != QK_OK)
        return st;
    q->installed = 1;
    return qk_quant_bind(q->m->g);
}

/* ---- finish: QkLearnQuant -> FakeQuant with the learned parameters ---- */

static qk_status rt_resize(qk_fq_rt *rt, int64_t n)
{
    float *sc = qk_realloc(rt->scale, (size_t)n * sizeof *sc);
    if (sc)
        rt->scale = sc;
    int32_t *zp = qk_realloc(rt->zp, (size_t)n * sizeof *zp);
    if (zp)
        rt->zp = zp;
    int32_t *qn = qk_realloc(rt->qn, (size_t)n * sizeof *qn);
    if (qn)
        rt->qn = qn;
    int32_t *qp = qk_realloc(rt->qp, (size_t)n * sizeof *qp);
    if (qp)
        rt->qp = qp;
    if (!sc || !zp || !qn || !qp)
        return qk_error(QK_ERR_NOMEM, "QAT: out of memory");
    rt->n_ch = n;
    return QK_OK;
}

static qk_status finish_site(qk_qat *q, int s)
{
    qk_qmodel *m = q->m;
    qk_graph *g = m->g;
    qk_qsite *t = &m->sites[s];
    qk_fq_rt *rt = &m->rt[s];
    qk_node *n = &g->nodes[t->node];
    qk_qat_attr a;
    qk_status st = qk_qat_attr_parse(n, &a);
    if (st != QK_OK)
        return st;
    int xv = n->in[0];
    const qk_value *P = qk_in(g, n, 1), *S = qk_in(g, n, 2);
    const qk_tensor *X = &g->values[xv].t;
    int64_t numel = qk_tensor_numel(X), C = 1, outer = 1, inner = numel;
    if (a.axis >= 0) {
        C = X->dims[a.axis];
        inner = 1;
        for (int d = 0; d < a.axis; d++)
            outer *= X->dims[d];
        for (int d = a.axis + 1; d < X->ndim; d++)
            inner *= X->dims[d];
    }
    qk_qat_chan *ch = qk_malloc((size_t)C * sizeof *ch);
    if (!ch)
        return qk_error(QK_ERR_NOMEM, "QAT: out of memory");
    st = qk_qat_channels(&a, P ? qk_f32(&P->t) : NULL, S ? qk_f32(&S->t) : NULL, qk_f32(X), outer, C, inner, ch);
    if (st == QK_OK)
        st = rt_resize(rt, C);
    for (int64_t c = 0; st == QK_OK && c < C; c++) {
        rt->scale[c] = ch[c].s;
        rt->zp[c] = ch[c].z;
        rt->qn[c] = a.qn;
        rt->qp[c] = a.qp;
        if (!(ch[c].s > 0) || !isfinite(ch[c].s))
            st = qk_error(QK_ERR_NUMERIC, "QAT: '%s' learned a scale of %g", t->value, (double)ch[c].s);
    }
    rt->axis = a.axis;
    if (st == QK_OK && t->is_weight) {
        int32_t *codes = qk_realloc(rt->codes, (size_t)numel * sizeof *codes);
        float *cst = codes ? qk_realloc(rt->cst, (size_t)numel * sizeof *cst) : NULL;
        if (codes)
            rt->codes = codes;
        if (cst)
            rt->cst = cst;
        if (!codes || !cst)
            st = qk_error(QK_ERR_NOMEM, "QAT: out of memory");
        const float *w = qk_f32(X);
        for (int64_t i = 0; st == QK_OK && i < numel; i++) {
            if (!isfinite(w[i])) {
                st = qk_error(QK_ERR_NUMERIC, "QAT: weight '%s' holds a non-finite value", t->value);
                break;
            }
            const qk_qat_chan *c = &ch[C == 1 ? 0 : (i / inner) % C];
            codes[i] = qk_qat_code(&a, c, qk_qat_transform(&a, c, w[i]));
            cst[i] = (float)(codes[i] - c->z) * c->s;
        }
        rt->cst_n = numel;
        rt->mode = QK_FQ_CONST;
    } else {
        rt->mode = QK_FQ_QUANT;
    }
    qk_free(ch);
    if (st == QK_OK)
        st = node_retype(g, t->node, "FakeQuant", 1, &xv);
    return st;
}

void qk_qat_set_diverged_(qk_qat *q, int diverged) { q->diverged = diverged; }

int qk_qat_bn_freezable_(const qk_qat_config *c)
{
    return (c->bn_fold >= 2 && c->bn_fold <= 4) || (c->bn_fold < 0 && c->ptq.backend && !c->ptq.backend->fold_bn);
}

qk_status qk_qat_finish(qk_qat *q)
{
    if (q->diverged) /* its values may be finite yet meaningless */
        return qk_error(QK_ERR_NUMERIC, "QAT: training diverged; no model is converted or written from it");
    if (q->finished)
        return QK_OK;
    if (!q->installed)
        return qk_error(QK_ERR_STATE, "QAT: nothing trained yet (qk_qat_train)");
    qk_qmodel *m = q->m;
    qk_graph *g = m->g;
    qk_graph_unplan(g);
    qk_status bst = qk_qat_bn_finish_(q->bn, g);
    if (bst != QK_OK)
        return qk_error_context(bst, "QAT conversion");
    for (int s = 0; s < m->n_sites; s++) {
        qk_status st = finish_site(q, s);
        if (st != QK_OK)
            return qk_error_context(st, "QAT conversion");
    }
    qk_ptq_snap_bias(m);
    for (int k = 0; k < g->n_nodes; k++) /* --freeze-bn's mark on BN kept in float: not ONNX */
        if (qk_node_is(&g->nodes[k], "BatchNormalization"))
            qk_node_remove_attr(&g->nodes[k], "qkit_frozen");
    qk_status st = qk_quant_bind(g);
    for (int s = 0; st == QK_OK && s < m->n_sites; s++)
        st = qk_fakequant_attach(&g->nodes[m->sites[s].node], &m->rt[s]);
    if (st == QK_OK)
        st = qk_graph_remove_unused_values(g);
    if (st == QK_OK)
        st = qk_graph_set_meta(g, "qkit.qat", qk_qat_algo_name(q->c.algo));
    if (st == QK_OK)
        st = qk_graph_set_meta(g, "qkit.qat.w_algo", qk_qat_algo_name(q->w_algo));
    if (st == QK_OK)
        q->finished = 1;
    return st;
}

qk_status qk_qat_save_qdq(qk_qat *q, const char *path)
{
    qk_status st = qk_qat_finish(q);
    return st != QK_OK ? st : qk_ptq_save_qdq(q->m, path);
}

qk_status qk_qat_install_(qk_qat *q)
{
    if (q->finished)
        return qk_error(QK_ERR_STATE, "QAT: the model was already converted for deployment");
    return q->installed ? QK_OK : install(q);
}

const qk_qat_config *qk_qat_config_(const qk_qat *q) { return &q->c; }
qk_qat_report **qk_qat_report_(qk_qat *q) { return &q->report; }
qk_norm qk_qat_norm_(const qk_qat *q) { return q->norm; }

const char *qk_qat_signature_(const qk_qat *q, char *buf, size_t n)
{
    int k = snprintf(buf, n, "backend=%s wbits=%d abits=%d algo=%s w_algo=%s calib=%lld bn_fold=%d freeze_observer=%d "
                     "progressive=%d", q->c.ptq.backend->name,
                     q->m->wq.bits, q->m->aq.bits, qk_qat_algo_name(q->c.algo), qk_qat_algo_name(q->w_algo),
                     (long long)q->c.calib, q->c.bn_fold, q->c.freeze_observer,
                     q->c.progressive);
    if (q->c.freeze_bn > 0 && k > 0 && (size_t)k < n) /* only when set: older signatures stay as they were */
        k += snprintf(buf + k, n - (size_t)k, " freeze_bn=%d", q->c.freeze_bn);
    if (q->c.widen > 1 && k > 0 && (size_t)k < n)
        snprintf(buf + k, n - (size_t)k, " widen=%d", q->c.widen);
    return buf;
}
