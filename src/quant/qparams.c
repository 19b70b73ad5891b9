/* Quantizer parameters, (scale, zero point) from a range, rounding modes,
 * quantize / dequantize / fake quantization per tensor and per channel,
 * the clipped STE mask, NNIE log code. Contracts: include/qkit/quant.h. */
#include "qkit/quant.h"
#include "quant_internal.h"

#include <float.h>
#include <math.h>
#include <string.h>

qk_status qk_qparams_validate(const qk_qparams *p)
{
    if (!p)
        return qk_error(QK_ERR_ARG, "quantizer parameters: NULL");
    if (!((p->bits >= 2 && p->bits <= 8) || p->bits == 16))
        return qk_error(QK_ERR_ARG, "quantizer bits %d: supported are 2..8 and 16", p->bits);
    if (p->is_signed != 0 && p->is_signed != 1)
        return qk_error(QK_ERR_ARG, "quantizer is_signed %d: must be 0 or 1", p->is_signed);
    if (p->symmetric != 0 && p->symmetric != 1)
        return qk_error(QK_ERR_ARG, "quantizer symmetric %d: must be 0 or 1", p->symmetric);
    if (p->narrow != 0 && p->narrow != 1)
        return qk_error(QK_ERR_ARG, "quantizer narrow %d: must be 0 or 1", p->narrow);
    if (p->narrow && !p->is_signed)
        return qk_error(QK_ERR_ARG, "quantizer narrow range needs a signed code (unsigned has no -2^(b-1) to drop)");
    if (p->per_channel != 0 && p->per_channel != 1)
        return qk_error(QK_ERR_ARG, "quantizer per_channel %d: must be 0 or 1", p->per_channel);
    if (p->per_channel && (p->axis < 0 || p->axis >= QK_MAX_DIMS))
        return qk_error(QK_ERR_ARG, "quantizer per-channel axis %d: must be in [0, %d)", p->axis, QK_MAX_DIMS);
    if (p->pot != 0 && p->pot != 1)
        return qk_error(QK_ERR_ARG, "quantizer pot %d: must be 0 or 1", p->pot);
    if ((unsigned)p->round > QK_ROUND_HALF_UP)
        return qk_error(QK_ERR_ARG, "quantizer rounding mode %d: must be 0 (half_even), 1 (half_away) or 2 (half_up)",
                        (int)p->round);
    if ((unsigned)p->scheme > QK_QSCHEME_NNIE_LOG)
        return qk_error(QK_ERR_ARG, "quantizer scheme %d: must be 0 (linear) or 1 (nnie_log)", (int)p->scheme);
    if (p->scheme == QK_QSCHEME_NNIE_LOG &&
        (p->bits != 8 || !p->is_signed || !p->symmetric || p->per_channel || p->pot))
        return qk_error(QK_ERR_ARG, "NNIE log quantizer: must be 8-bit signed symmetric per tensor, no pot");
    return QK_OK;
}

void qk_quant_range(const qk_qparams *p, int32_t *qn, int32_t *qp)
{
    if (p->is_signed) {
        *qp = (int32_t)((1 << (p->bits - 1)) - 1);
        *qn = p->narrow ? -*qp : -*qp - 1;
    } else {
        *qn = 0;
        *qp = (int32_t)((1 << p->bits) - 1);
    }
}

const char *qk_round_name(qk_round r)
{
    switch (r) {
    case QK_ROUND_HALF_EVEN: return "half_even";
    case QK_ROUND_HALF_AWAY: return "half_away";
    case QK_ROUND_HALF_UP: return "half_up";
    }
    return "?";
}

qk_status qk_round_parse(const char *s, qk_round *out)
{
    static const struct { const char *name; qk_round r; } tab[] = {
        { "half_even", QK_ROUND_HALF_EVEN }, { "rne", QK_ROUND_HALF_EVEN },
        { "half_away", QK_ROUND_HALF_AWAY }, { "rna", QK_ROUND_HALF_AWAY },
        { "half_up", QK_ROUND_HALF_UP }, { "rhu", QK_ROUND_HALF_UP },
    };
    for (size_t i = 0; s && i < sizeof tab / sizeof tab[0]; i++)
        if (strcmp(s, tab[i].name) == 0) {
            *out = tab[i].r;
            return QK_OK;
        }
    return qk_error(QK_ERR_ARG, "unknown rounding mode '%s' (valid: half_even|rne, half_away|rna, half_up|rhu)",
                    s ? s : "(null)");
}

double qk_round_double(double v, qk_round m)
{
    if (!isfinite(v))
        return v;
    double f = floor(v), d = v - f; /* exact for finite doubles */
    switch (m) {
    case QK_ROUND_HALF_AWAY:
        if (d == 0.5)
            return v < 0 ? f : f + 1;
        return d > 0.5 ? f + 1 : f;
    case QK_ROUND_HALF_UP:
        return d >= 0.5 ? f + 1 : f;
    default:
        if (d == 0.5)
            return fmod(f, 2.0) == 0 ? f : f + 1;
        return d > 0.5 ? f + 1 : f;
    }
}

float qk_round_float(float v, qk_round m)
{
    return qk_round_f(v, m);
}

int32_t qk_quantize_scalar(double x, double s, int32_t z, int32_t qn, int32_t qp, qk_round m)
{
    if (isnan(x))
        return z < qn ? qn : z > qp ? qp : z;
    double r = qk_round_double(x / s, m) + z;
    if (r < qn)
        r = qn;
    if (r > qp)
        r = qp;
    return (int32_t)r;
}

int qk_pot_frac_bits(double s0)
{
    int e;
    double m = frexp(s0, &e); /* s0 = m 2^e, m in [0.5, 1) */
    int c = m == 0.5 ? e - 1 : e; /* ceil(log2 s0) */
    return -c;
}

/* One channel's (s, z); p valid, min <= max finite. */
static void compute_one(const qk_qparams *p, int32_t qn, int32_t qp, float min, float max, float *scale,
                        int32_t *zp)
{
    float mn = min < 0 ? min : 0.0f, mx = max > 0 ? max : 0.0f;
    float s;
    int32_t z = 0;
    if (p->symmetric) {
        float amax = -mn > mx ? -mn : mx;
        if (p->pot && p->is_signed) {
            float a = mn / (float)qn, b = mx / (float)qp;
            s = a > b ? a : b;
        } else if (p->narrow) {
            s = amax / (float)qp;
        } else {
            s = amax / ((float)(qp - qn) / 2.0f);
        }
        if (!p->is_signed)
            z = (qn + qp + 1) / 2; /* PyTorch quint8 symmetric: 128 */
    } else {
        s = (mx - mn) / (float)(qp - qn);
    }
    if (!(s >= FLT_EPSILON))
        s = FLT_EPSILON;
    if (p->pot)
        s = ldexpf(1.0f, -qk_pot_frac_bits(s));
    if (!p->symmetric) {
        float r = qk_round_f(mn / s, QK_ROUND_HALF_EVEN);
        float zf = (float)qn - r;
        z = zf < (float)qn ? qn : zf > (float)qp ? qp : (int32_t)zf;
    }
    *scale = s;
    *zp = z;
}

qk_status qk_qparams_compute_n(const qk_qparams *p, int64_t n, const float *min, const float *max,
                               float *scale, int32_t *zp)
{
    qk_status st = qk_qparams_validate(p);
    if (st != QK_OK)
        return st;
    int32_t qn, qp;
    qk_quant_range(p, &qn, &qp);
    for (int64_t c = 0; c < n; c++) {
        if (!isfinite(min[c]) || !isfinite(max[c]))
            return qk_error(QK_ERR_NUMERIC, "quantizer range of channel %lld is not finite: [%g, %g]",
                            (long long)c, (double)min[c], (double)max[c]);
        if (min[c] > max[c])
            return qk_error(QK_ERR_ARG, "quantizer range of channel %lld: min %g > max %g", (long long)c,
                            (double)min[c], (double)max[c]);
        compute_one(p, qn, qp, min[c], max[c], &scale[c], &zp[c]);
    }
    return QK_OK;
}

qk_status qk_qparams_compute(const qk_qparams *p, float min, float max, float *scale, int32_t *zp)
{
    return qk_qparams_compute_n(p, 1, &min, &max, scale, zp);
}

qk_status qk_qparams_channels(const qk_qparams *p, const qk_tensor *x, int64_t *n)
{
    if (!p->per_channel) {
        *n = 1;
        return QK_OK;
    }
    if (p->axis >= x->ndim) {
        char buf[96];
        return qk_error(QK_ERR_SHAPE, "per-channel axis %d needs a tensor with at least %d dimensions, got %s",
                        p->axis, p->axis + 1, qk_shape_str(x, buf, sizeof buf));
    }
    *n = x->dims[p->axis];
    return QK_OK;
}

qk_status qk_q_layout(const qk_qparams *p, const qk_tensor *x, qk_q_lay *l)
{
    int64_t numel = qk_tensor_numel(x);
    if (!p->per_channel) {
        l->outer = 1;
        l->ch = 1;
        l->inner = numel;
        return QK_OK;
    }
    int64_t c;
    qk_status st = qk_qparams_channels(p, x, &c);
    if (st != QK_OK)
        return st;
    l->outer = 1;
    for (int i = 0; i < p->axis; i++)
        l->outer *= x->dims[i];
    l->ch = c;
    l->inner = 1;
    for (int i = p->axis + 1; i < x->ndim; i++)
        l->inner *= x->dims[i];
    return QK_OK;
}

/* Common checks of the array entry points. */
static qk_status check_call(const qk_qparams *p, int64_t n_scale, const float *scale, const int32_t *zp,
                            const qk_tensor *t, qk_q_lay *l, int32_t *qn, int32_t *qp)
{
    qk_status st = qk_qparams_validate(p);
    if (st != QK_OK)
        return st;
    if (p->scheme != QK_QSCHEME_LINEAR)
        return qk_error(QK_ERR_ARG, "this entry point is for linear quantizers (use qk_nnie_fake_quant)");
    if (t->dtype != QK_F32)
        return qk_error(QK_ERR_ARG, "quantizer tensor must be float32, got %s", qk_dtype_name(t->dtype));
    st = qk_q_layout(p, t, l);
    if (st != QK_OK)
        return st;
    if (n_scale != l->ch)
        return qk_error(QK_ERR_SHAPE, "quantizer has %lld scale(s), the tensor needs %lld", (long long)n_scale,
                        (long long)l->ch);
    qk_quant_range(p, qn, qp);
    for (int64_t c = 0; c < n_scale; c++) {
        if (!(scale[c] > 0) || !isfinite(scale[c]))
            return qk_error(QK_ERR_ARG, "quantizer scale[%lld] = %g: must be positive and finite", (long long)c,
                            (double)scale[c]);
        if (zp[c] < *qn || zp[c] > *qp)
            return qk_error(QK_ERR_ARG, "quantizer zero point[%lld] = %d outside [%d, %d]", (long long)c, zp[c],
                            *qn, *qp);
    }
    return QK_OK;
}

qk_status qk_quantize(const qk_qparams *p, int64_t n_scale, const float *scale, const int32_t *zp,
                      const qk_tensor *x, int32_t *q)
{
    qk_q_lay l;
    int32_t qn, qp;
    qk_status st = check_call(p, n_scale, scale, zp, x, &l, &qn, &qp);
    if (st != QK_OK)
        return st;
    const float *xs = qk_f32(x);
    for (int64_t o = 0; o < l.outer; o++)
        for (int64_t c = 0; c < l.ch; c++) {
            int64_t base = (o * l.ch + c) * l.inner;
            float inv = 1.0f / scale[c];
            for (int64_t i = 0; i < l.inner; i++)
                q[base + i] = qk_q_code(xs[base + i], inv, zp[c], qn, qp, p->round, NULL);
        }
    return QK_OK;
}

qk_status qk_dequantize(const qk_qparams *p, int64_t n_scale, const float *scale, const int32_t *zp,
                        const int32_t *q, qk_tensor *y)
{
    qk_q_lay l;
    int32_t qn, qp;
    qk_status st = check_call(p, n_scale, scale, zp, y, &l, &qn, &qp);
    if (st != QK_OK)
        return st;
    float *ys = qk_f32(y);
    for (int64_t o = 0; o < l.outer; o++)
        for (int64_t c = 0; c < l.ch; c++) {
            int64_t base = (o * l.ch + c) * l.inner;
            for (int64_t i = 0; i < l.inner; i++)
                ys[base + i] = (float)(q[base + i] - zp[c]) * scale[c];
        }
    return QK_OK;
}

void qk_q_fake_run(const float *x, float *y, uint8_t *mask, int64_t n, float s, int32_t z, int32_t qn,
                   int32_t qp, qk_round m)
{
    float inv = 1.0f / s;
    for (int64_t i = 0; i < n; i++) {
        uint8_t in;
        int32_t q = qk_q_code(x[i], inv, z, qn, qp, m, &in);
        y[i] = (float)(q - z) * s;
        if (mask)
            mask[i] = in;
    }
}

qk_status qk_fake_quant(const qk_qparams *p, int64_t n_scale, const float *scale, const int32_t *zp,
                        const qk_tensor *x, qk_tensor *y, uint8_t *mask)
{
    qk_q_lay l;
    int32_t qn, qp;
    qk_status st = check_call(p, n_scale, scale, zp, x, &l, &qn, &qp);
    if (st != QK_OK)
        return st;
    if (y->dtype != QK_F32 || qk_tensor_numel(y) != qk_tensor_numel(x))
        return qk_error(QK_ERR_SHAPE, "fake quant output must be float32 with %lld elements",
                        (long long)qk_tensor_numel(x));
    const float *xs = qk_f32(x);
    float *ys = qk_f32(y);
    for (int64_t o = 0; o < l.outer; o++)
        for (int64_t c = 0; c < l.ch; c++) {
            int64_t base = (o * l.ch + c) * l.inner;
            qk_q_fake_run(xs + base, ys + base, mask ? mask + base : NULL, l.inner, scale[c], zp[c], qn, qp,
                          p->round);
        }
    return QK_OK;
}

void qk_fake_quant_backward(int64_t n, const uint8_t *mask, const float *dy, float *dx)
{
    for (int64_t i = 0; i < n; i++)
        if (mask[i])
            dx[i] += dy[i];
}

void qk_quant_error(int64_t n, const float *x, const float *y, double *sqnr_db, double *rmse)
{
    double sx = 0, se = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)x[i] - (double)y[i];
        sx += (double)x[i] * x[i];
        se += d * d;
    }
    if (sqnr_db)
        *sqnr_db = se > 0 ? 10.0 * log10(sx / se) : INFINITY;
    if (rmse)
        *rmse = n > 0 ? sqrt(se / (double)n) : 0.0;
}

qk_status qk_nnie_fake_quant(float data_max, int64_t n, const float *x, float *y)
{
    if (!(data_max > 0) || !isfinite(data_max))
        return qk_error(QK_ERR_ARG, "NNIE quantizer: data_max %g must be positive and finite", (double)data_max);
    double zn = qk_round_double(16.0 * log2((double)data_max), QK_ROUND_HALF_EVEN) - 127.0;
    double tpos = exp2((zn - 16.0) / 16.0), tneg = exp2((zn + 1.0 - 16.0) / 16.0);
    for (int64_t i = 0; i < n; i++) {
        double v = x[i];
        if (v > tpos) {
            double k = qk_round_double(16.0 * log2(v) - zn, QK_ROUND_HALF_EVEN);
            k = k < 0 ? 0 : k > 127 ? 127 : k;
            y[i] = (float)exp2((k + zn) / 16.0);
        } else if (v < -tneg) {
            double k = qk_round_double(16.0 * log2(-v) - zn, QK_ROUND_HALF_EVEN);
            k = k < 1 ? 1 : k > 127 ? 127 : k;
            y[i] = (float)-exp2((k + zn) / 16.0);
        } else {
            y[i] = 0.0f; /* also NaN */
        }
    }
    return QK_OK;
}
