/* Elementwise runs of QkLearnQuant (qat_op.c): forward and backward over
 * one contiguous run of one channel. The portable loops here are the
 * reference; qat_run__avx512.c computes the same IEEE float operations in
 * the same order 16 elements at a time, and both keep the parameter
 * gradient sums in 16 double lanes (element j of the run goes to lane
 * j mod 16; lanes added 0..15 at the end of the run), so the two give
 * bit-identical y, dx and parameter gradients (tests/test_qat.c checks). */
#include "qat_internal.h"
#include "qkit/cpu.h"

#include <math.h>

#define LN2 0.69314718055994530942

int qk_lq_vec_ok(const qk_qat_attr *a)
{
    return a->algo != QK_QAT_DSQ && !(a->algo == QK_QAT_DOREFA && a->weight) && !a->paper;
}

int qk_lq_use_vec(const qk_qat_attr *a, int reference)
{
    return !reference && qk_lq_vec_ok(a) && qk_cpu_isa() >= QK_ISA_AVX512;
}

void qk_lq_fwd_run(const qk_qat_attr *a, const qk_qat_chan *c, const float *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float tv = qk_qat_transform(a, c, x[i]);
        y[i] = (float)(qk_qat_code(a, c, tv) - c->z) * c->s;
    }
}

void qk_lq_bwd_run(const qk_qat_attr *a, const qk_qat_chan *c, const float *x, const float *dy, float *dx,
                   int64_t n, double acc[2])
{
    double l0[16] = { 0 }, l1[16] = { 0 };
    const float qn = (float)a->qn, qp = (float)a->qp, zf = (float)c->z;
    const int lsq = a->algo == QK_QAT_LSQ || a->algo == QK_QAT_LSQ_PLUS || a->algo == QK_QAT_TQT;
    for (int64_t i = 0; i < n; i++) {
        int l = (int)(i & 15);
        float xv = x[i], g = dy[i];
        float tv = qk_qat_transform(a, c, xv);
        float u = tv / c->s;
        float r = u != u ? zf : qk_round_f(u, a->scheme.round) + zf;
        int in = u == u && r >= qn && r <= qp;
        float q = r < qn ? qn : r > qp ? qp : r;
        float dt = in ? g : 0.0f;
        if (a->algo == QK_QAT_DSQ && in) {
            double slope;
            qk_qat_dsq((double)u, QK_QAT_DSQ_ALPHA, NULL, &slope);
            dt = (float)(g * slope);
        }
        /* LSQ / TQT (the papers' estimator): inside means qn < u + z < qp on
           the unrounded value; d y / d s = R(u) - u inside, q - z outside */
        if (lsq) {
            float uz = u + zf;
            in = uz > qn && uz < qp;
            dt = in ? g : 0.0f;
        }
        double dyds = (double)(q - zf) - (in ? (double)u : 0.0);
        float d = dt;
        switch (a->algo) {
        case QK_QAT_LSQ:
            l0[l] += (double)g * dyds;
            break;
        case QK_QAT_LSQ_PLUS:
            l0[l] += (double)g * dyds;
            if (!in)
                l1[l] -= (double)g * (double)c->s;
            break;
        case QK_QAT_TQT:
            l0[l] += (double)g * dyds * LN2 * (double)c->s;
            break;
        case QK_QAT_PACT:
        case QK_QAT_PACT_ASYM:
        case QK_QAT_PACT_SYM:
        case QK_QAT_WRPN:
            if (xv >= c->hi) {
                d = 0;
                if (a->algo == QK_QAT_PACT_ASYM)
                    l1[l] += g;
                else if (a->algo != QK_QAT_WRPN)
                    l0[l] += g;
            } else if (xv < c->lo) {
                d = 0;
                if (a->algo == QK_QAT_PACT_ASYM)
                    l0[l] += g;
                else if (a->algo == QK_QAT_PACT_SYM)
                    l0[l] -= g;
            }
            break;
        case QK_QAT_DOREFA:
            if (a->weight) {
                float th = tanhf(xv);
                d = dt * (1.0f - th * th) / c->norm;
            } else if (xv >= c->hi || xv < c->lo) {
                d = 0;
            }
            break;
        default:
            break;
        }
        if (dx)
            dx[i] += d;
    }
    for (int l = 0; l < 16; l++) {
        acc[0] += l0[l];
        acc[1] += l1[l];
    }
}
