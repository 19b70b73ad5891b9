/* ACIQ (Banner et al., NeurIPS 2019): optimal clipping by numerical
 * minimization of the Laplace / Gaussian MSE model, per-channel bit
 * allocation under an exact average budget, bias (mean/variance) correction
 * of quantized weights. docs/ALGORITHMS.md §2.7 and §3; contracts in quant.h. */
#include "quant_internal.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

double qk_aciq_mse(qk_aciq_prior prior, double alpha, double bits, int one_sided)
{
    double clip;
    if (prior == QK_ACIQ_GAUSS) {
        /* (a^2 + 1)(1 - erf(a / sqrt 2)) - sqrt(2/pi) a e^(-a^2/2), sigma = 1 */
        clip = (alpha * alpha + 1.0) * erfc(alpha / M_SQRT2) -
               sqrt(2.0 / M_PI) * alpha * exp(-0.5 * alpha * alpha);
    } else {
        clip = 2.0 * exp(-alpha); /* 2 b^2 e^(-a/b), b = 1 */
    }
    double q = alpha * alpha / (3.0 * exp2(2.0 * bits));
    return one_sided ? 0.5 * clip + q / 8.0 : clip + q;
}

double qk_aciq_alpha(qk_aciq_prior prior, double bits, int one_sided)
{
    if (!(bits >= 0) || bits > 32)
        return NAN;
    /* The MSE is convex in alpha (clip noise E[(|X|-a)_+^2] is convex, the
     * quantization term a parabola), so golden-section search on a bracket
     * that contains the minimum converges to it. alpha* < 10 + 1.5 bits for
     * both priors at every bits in [0, 32]. */
    const double g = 0.5 * (sqrt(5.0) - 1.0);
    double a = 0.0, b = 10.0 + 1.5 * bits;
    double c = b - g * (b - a), d = a + g * (b - a);
    double fc = qk_aciq_mse(prior, c, bits, one_sided), fd = qk_aciq_mse(prior, d, bits, one_sided);
    for (int it = 0; it < 200 && b - a > 1e-10; it++) {
        if (fc < fd) {
            b = d;
            d = c;
            fd = fc;
            c = b - g * (b - a);
            fc = qk_aciq_mse(prior, c, bits, one_sided);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + g * (b - a);
            fd = qk_aciq_mse(prior, d, bits, one_sided);
        }
    }
    return 0.5 * (a + b);
}

/* --------------------------------------------------------- bit allocation */

static double clampd(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

static double shifted_total(int64_t n, const double *raw, double c, int lo, int hi)
{
    double t = 0;
    for (int64_t i = 0; i < n; i++)
        t += clampd(raw[i] + c, lo, hi); /* -inf + c clamps to lo */
    return t;
}

qk_status qk_aciq_bit_alloc(int64_t n, const double *alpha, double avg_bits, int min_bits, int max_bits,
                            int *bits_out, double *raw_out)
{
    if (n < 1)
        return qk_error(QK_ERR_ARG, "bit allocation: %lld channels (need at least 1)", (long long)n);
    if (min_bits < 0 || max_bits > 16 || min_bits > max_bits)
        return qk_error(QK_ERR_ARG, "bit allocation: bit range [%d, %d] must lie in [0, 16]", min_bits, max_bits);
    double total = (double)n * avg_bits, T = floor(total + 0.5);
    if (!isfinite(total) || fabs(total - T) > 1e-9 * fmax(1.0, fabs(total)))
        return qk_error(QK_ERR_ARG,
                        "bit allocation: %lld channels x %g average bits is not a whole number of bits",
                        (long long)n, avg_bits);
    if (T < (double)n * min_bits || T > (double)n * max_bits)
        return qk_error(QK_ERR_ARG, "bit allocation: average %g bits outside the per-channel range [%d, %d]",
                        avg_bits, min_bits, max_bits);
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!(alpha[i] >= 0) || !isfinite(alpha[i]))
            return qk_error(QK_ERR_ARG, "bit allocation: alpha[%lld] = %g must be finite and >= 0", (long long)i,
                            alpha[i]);
        sum += cbrt(alpha[i] * alpha[i]);
    }
    double *raw = raw_out ? raw_out : qk_malloc((size_t)n * sizeof(double));
    double *frac = qk_malloc((size_t)n * sizeof(double));
    if (!raw || !frac) {
        if (!raw_out)
            qk_free(raw);
        qk_free(frac);
        return qk_error(QK_ERR_NOMEM, "bit allocation: out of memory");
    }
    /* 1. closed form, B = n 2^M total bins, bins_i proportional to alpha_i^(2/3) */
    double logB = log2((double)n) + avg_bits;
    for (int64_t i = 0; i < n; i++) {
        if (sum == 0) /* all channels constant: the same share each */
            raw[i] = avg_bits;
        else
            raw[i] = alpha[i] > 0 ? logB + log2(cbrt(alpha[i] * alpha[i])) - log2(sum) : -INFINITY;
    }
    /* 2. shift c with sum clip(raw + c) = T: the total is continuous and
     * non-decreasing in c, lo at c_lo, hi at c_hi. */
    double rmin = INFINITY, rmax = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(raw[i])) {
            rmin = fmin(rmin, raw[i]);
            rmax = fmax(rmax, raw[i]);
        }
    double c_lo = min_bits - rmax - 1, c_hi = max_bits - rmin + 1;
    for (int it = 0; it < 200; it++) {
        double mid = 0.5 * (c_lo + c_hi);
        if (shifted_total(n, raw, mid, min_bits, max_bits) < T)
            c_lo = mid;
        else
            c_hi = mid;
    }
    double c = 0.5 * (c_lo + c_hi);
    /* 3. largest remainder */
    double got = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = clampd(raw[i] + c, min_bits, max_bits);
        double f = floor(v);
        bits_out[i] = (int)f;
        frac[i] = v - f;
        got += f;
    }
    int64_t deficit = (int64_t)(T - got);
    while (deficit > 0) {
        int64_t best = -1;
        for (int64_t i = 0; i < n; i++) {
            if (bits_out[i] >= max_bits)
                continue;
            if (best < 0 || frac[i] > frac[best] + 1e-9 ||
                (fabs(frac[i] - frac[best]) <= 1e-9 && alpha[i] > alpha[best]))
                best = i;
        }
        if (best < 0)
            break; /* cannot happen: T <= n max_bits */
        bits_out[best]++;
        frac[best] = -1; /* each channel gets at most one extra bit per round */
        deficit--;
    }
    while (deficit < 0) { /* bisection slack: take back from the smallest parts */
        int64_t best = -1;
        for (int64_t i = 0; i < n; i++)
            if (bits_out[i] > min_bits && (best < 0 || frac[i] < frac[best]))
                best = i;
        if (best < 0)
            break;
        bits_out[best]--;
        frac[best] = 2;
        deficit++;
    }
    if (!raw_out)
        qk_free(raw);
    qk_free(frac);
    return QK_OK;
}

/* -------------------------------------------------------- bias correction */

static void mean_std(const float *v, int64_t K, double *mean, double *std)
{
    double s = 0;
    for (int64_t k = 0; k < K; k++)
        s += v[k];
    double m = s / (double)K, s2 = 0;
    for (int64_t k = 0; k < K; k++)
        s2 += ((double)v[k] - m) * ((double)v[k] - m);
    *mean = m;
    *std = sqrt(s2 / (double)K);
}

qk_status qk_bias_correct_weights(int64_t C, int64_t K, const float *w, float *wq, float *xi, float *mu)
{
    if (C < 1 || K < 1)
        return qk_error(QK_ERR_ARG, "bias correction: weight shape [%lld, %lld] is empty", (long long)C,
                        (long long)K);
    for (int64_t c = 0; c < C; c++) {
        const float *a = w + c * K;
        float *b = wq + c * K;
        double m, sd, mq, sq;
        mean_std(a, K, &m, &sd);
        mean_std(b, K, &mq, &sq);
        if (!isfinite(m + sd + mq + sq))
            return qk_error(QK_ERR_NUMERIC, "bias correction: channel %lld has non-finite weights", (long long)c);
        double x = sd / (sq + 1e-8);
        for (int64_t k = 0; k < K; k++)
            b[k] = (float)(((double)b[k] - mq) * x + m);
        if (xi)
            xi[c] = (float)x;
        if (mu)
            mu[c] = (float)(m - mq);
    }
    return QK_OK;
}
