/* AdaRound and its QDrop variant: learned rounding of a calibrated model's
 * weights, layer by layer (ptq.h, docs/ALGORITHMS.md §5). The optimizer
 * (recon_core) works on one layer written as per-group matrix products
 * Y = A (W~ X) + B on sampled input columns; recon_model.c turns the
 * model's layers into that form. */
#include "recon_internal.h"

#include <math.h>
#include <string.h>

#define ZETA 1.1
#define GAMMA (-0.1)

double qk_adaround_h(double v)
{
    double h = (ZETA - GAMMA) / (1.0 + exp(-v)) + GAMMA;
    return h < 0 ? 0 : h > 1 ? 1 : h;
}

double qk_adaround_v_init(double frac)
{
    double f = frac < 1e-6 ? 1e-6 : frac > 1 - 1e-6 ? 1 - 1e-6 : frac;
    return -log((ZETA - GAMMA) / (f - GAMMA) - 1.0);
}

double qk_adaround_reg(double h, double beta) { return 1.0 - pow(fabs(2.0 * h - 1.0), beta); }

double qk_adaround_beta(int64_t t, int64_t T, double warmup, double b0, double b1)
{
    double w = warmup * (double)T;
    if ((double)t <= w || T <= 0)
        return b0;
    double r = ((double)t - w) / ((double)T - w);
    return b0 + (b1 - b0) * (r > 1 ? 1 : r);
}

void qk_recon_config_default(qk_recon_config *c, qk_recon_method m)
{
    memset(c, 0, sizeof *c);
    c->method = m;
    c->iters = m == QK_RECON_BRECQ || m == QK_RECON_QDROP ? 500 : 1000;
    c->batch = 32;
    c->lambda = 0.01;
    c->lr = m == QK_RECON_BRECQ || m == QK_RECON_QDROP ? 1e-2 : 1e-3;
    c->warmup = 0.2;
    c->beta_start = 20;
    c->beta_end = 2;
    c->drop_p = 0.5;
    c->seed = 1;
}

static const char *const method_names[] = { "none", "adaround", "brecq", "qdrop" };

const char *qk_recon_method_name(qk_recon_method m)
{
    return (unsigned)m < 4 ? method_names[m] : "?";
}

qk_status qk_recon_method_parse(const char *s, qk_recon_method *out)
{
    for (int i = 0; s && i < 4; i++)
        if (strcmp(s, method_names[i]) == 0) {
            *out = (qk_recon_method)i;
            return QK_OK;
        }
    return qk_error(QK_ERR_ARG, "reconstruction method '%s': use adaround, brecq or qdrop", s ? s : "");
}

qk_status qk_recon_config_check(const qk_recon_config *c, int64_t images)
{
    if (c->iters < 1)
        return qk_error(QK_ERR_ARG, "reconstruction iterations %d (--recon-iters): at least 1", c->iters);
    if (c->batch < 1)
        return qk_error(QK_ERR_ARG, "reconstruction batch %d (--recon-batch): at least 1", c->batch);
    if (c->batch > images)
        return qk_error(QK_ERR_ARG, "reconstruction batch %d (--recon-batch) is larger than the %lld "
                        "calibration images (--calib)", c->batch, (long long)images);
    if (!(c->lambda >= 0) || !(c->lr > 0) || !(c->warmup >= 0 && c->warmup < 1) || !(c->beta_start > 0) ||
        !(c->beta_end > 0) || !(c->drop_p >= 0 && c->drop_p <= 1))
        return qk_error(QK_ERR_ARG, "reconstruction: lambda >= 0, lr > 0, 0 <= warmup < 1, betas > 0 and "
                        "0 <= drop_p <= 1 are required");
    return QK_OK;
}

/* W~ from V (and the in-range mask, the derivative of h): wt = s (clamp(fl +
 * h + z) - z). */
static void soft_weights(const recon_layer *L, const float *V, float *wt, float *dwdv, float *sgo)
{
    int64_t kg = L->kg;
    for (int64_t o = 0; o < L->co; o++) {
        double s = L->scale[o];
        int32_t z = L->zp[o];
        for (int64_t j = 0; j < kg; j++) {
            int64_t i = o * kg + j;
            double sg = 1.0 / (1.0 + exp(-(double)V[i]));
            double hr = sg * (ZETA - GAMMA) + GAMMA, h = hr < 0 ? 0 : hr > 1 ? 1 : hr;
            sgo[i] = (float)sg;
            double q = L->floor_w[i] + h + z;
            int inside = q >= L->qn[o] && q <= L->qp[o];
            q = q < L->qn[o] ? L->qn[o] : q > L->qp[o] ? L->qp[o] : q;
            wt[i] = (float)(s * (q - z));
            if (dwdv)
                dwdv[i] = inside && hr > 0 && hr < 1 ? (float)(s * sg * (1 - sg) * (ZETA - GAMMA)) : 0.0f;
        }
    }
}

/* Hard weights: round up iff h(V) >= 0.5 (V >= 0); codes and values. */
static void hard_weights(const recon_layer *L, const float *V, int32_t *codes, float *wt)
{
    for (int64_t o = 0; o < L->co; o++)
        for (int64_t j = 0; j < L->kg; j++) {
            int64_t i = o * L->kg + j;
            int64_t q = (int64_t)L->floor_w[i] + (V[i] >= 0) + L->zp[o];
            q = q < L->qn[o] ? L->qn[o] : q > L->qp[o] ? L->qp[o] : q;
            if (codes)
                codes[i] = (int32_t)q;
            wt[i] = (float)(L->scale[o] * (double)(q - L->zp[o]));
        }
}

/* Y[co, M] = post(W X) per group; X is [groups*kg, ldx] with M columns. */
static void layer_forward(const recon_layer *L, const float *w, const float *X, int64_t M, int64_t ldx, float *Y)
{
    int64_t cog = L->co / L->groups;
    for (int64_t gi = 0; gi < L->groups; gi++)
        qk_sgemm(QK_SGEMM_DEFAULT, 0, 0, cog, M, L->kg, 1.0f, w + gi * cog * L->kg, L->kg,
                 X + gi * L->kg * ldx, ldx, 0.0f, Y + gi * cog * M, M);
    for (int64_t o = 0; o < L->co; o++) {
        float a = L->post_a ? L->post_a[o] : 1.0f, b = L->post_b ? L->post_b[o] : 0.0f;
        float *y = Y + o * M;
        for (int64_t c = 0; c < M; c++)
            y[c] = a * y[c] + b;
    }
}

static inline float act(const recon_layer *L, float y) { return y < L->lo ? L->lo : y > L->hi ? L->hi : y; }

/* Loss (sum over channels, mean over columns) of Yq against T after the
 * activation; with dY, the gradient with respect to W~ X before post(). */
static double out_loss(const recon_layer *L, const float *Yq, const float *T, int64_t M, float *dY)
{
    double loss = 0;
    for (int64_t o = 0; o < L->co; o++) {
        float a = L->post_a ? L->post_a[o] : 1.0f;
        for (int64_t c = 0; c < M; c++) {
            int64_t i = o * M + c;
            float y = Yq[i], d = act(L, y) - act(L, T[i]);
            loss += (double)d * d;
            if (dY)
                dY[i] = y > L->lo && y < L->hi ? 2.0f * d * a / (float)M : 0.0f;
        }
    }
    return loss / (double)M;
}

qk_status qk_recon_layer_run(recon_layer *L, const qk_recon_config *c, int32_t *codes, double *loss_nearest,
                             double *loss_out, int64_t *flipped)
{
    int64_t nw = L->co * L->kg, K = L->groups * L->kg, Mc = L->max_cols;
    float *V = qk_malloc((size_t)nw * 6 * sizeof *V);
    float *X = qk_malloc((size_t)(K * Mc * 2 + L->co * Mc * 3) * sizeof *X);
    qk_status st = V && X ? QK_OK : qk_error(QK_ERR_NOMEM, "reconstruction: out of memory");
    if (st != QK_OK)
        goto done;
    float *wt = V + nw, *dwdv = wt + nw, *am = dwdv + nw, *av = am + nw, *sgv = av + nw;
    float *Xf = X, *Xq = Xf + K * Mc, *T = Xq + K * Mc, *Yq = T + L->co * Mc, *dY = Yq + L->co * Mc;
    float *dW = dwdv; /* dW is folded into dwdv in place */
    for (int64_t i = 0; i < nw; i++) {
        double v = L->w[i] / L->scale[i / L->kg], f = floor(v);
        L->floor_w[i] = (float)f;
        V[i] = (float)qk_adaround_v_init(v - f);
        am[i] = av[i] = 0;
    }
    qk_rng rng;
    qk_rng_seed(&rng, c->seed);
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    double b1t = 1, b2t = 1;
    float *gw = qk_malloc((size_t)nw * sizeof *gw);
    if (!gw) {
        st = qk_error(QK_ERR_NOMEM, "reconstruction: out of memory");
        goto done;
    }
    for (int t = 0; t < c->iters; t++) {
        int64_t M = 0;
        if ((st = L->sample(L->ctx, &rng, c, Xf, Xq, &M)) != QK_OK)
            break;
        layer_forward(L, L->w, Xf, M, M, T);
        soft_weights(L, V, wt, dwdv, sgv);
        layer_forward(L, wt, Xq, M, M, Yq);
        out_loss(L, Yq, T, M, dY);
        int64_t cog = L->co / L->groups;
        for (int64_t gi = 0; gi < L->groups; gi++) /* gw = dY Xq^T */
            qk_sgemm(QK_SGEMM_DEFAULT, 0, 1, cog, L->kg, M, 1.0f, dY + gi * cog * M, M, Xq + gi * L->kg * M, M,
                     0.0f, gw + gi * cog * L->kg, L->kg);
        int reg = t >= c->warmup * c->iters;
        double beta = qk_adaround_beta(t, c->iters, c->warmup, c->beta_start, c->beta_end);
        b1t *= b1;
        b2t *= b2;
        for (int64_t i = 0; i < nw; i++) {
            double g = (double)gw[i] * dW[i];
            if (reg && c->lambda > 0) {
                double sg = sgv[i];
                double hr = sg * (ZETA - GAMMA) + GAMMA;
                if (hr > 0 && hr < 1) {
                    double u = 2 * hr - 1, au = fabs(u);
                    double dr = au > 0 ? -beta * exp((beta - 1) * log(au)) * (u < 0 ? -1 : 1) * 2 : 0.0;
                    g += c->lambda * dr * sg * (1 - sg) * (ZETA - GAMMA);
                }
            }
            am[i] = (float)(b1 * am[i] + (1 - b1) * g);
            av[i] = (float)(b2 * av[i] + (1 - b2) * g * g);
            V[i] -= (float)(c->lr * (am[i] / (1 - b1t)) / (sqrt(av[i] / (1 - b2t)) + eps));
        }
    }
    if (st != QK_OK) {
        qk_free(gw);
        goto done;
    }
    hard_weights(L, V, codes, wt);
    /* the result against nearest rounding on fresh batches */
    float *wn = gw;
    for (int64_t o = 0; o < L->co; o++)
        for (int64_t j = 0; j < L->kg; j++) {
            int64_t i = o * L->kg + j;
            double q = nearbyint(L->w[i] / L->scale[o]) + L->zp[o];
            q = q < L->qn[o] ? L->qn[o] : q > L->qp[o] ? L->qp[o] : q;
            wn[i] = (float)(L->scale[o] * (q - L->zp[o]));
            if (flipped)
                *flipped += (int32_t)q != codes[i];
        }
    double ln = 0, lo = 0;
    qk_recon_config ev = *c;
    ev.drop_p = 1.0; /* evaluate on the quantized inputs */
    for (int r = 0; r < 4; r++) {
        int64_t M = 0;
        if ((st = L->sample(L->ctx, &rng, &ev, Xf, Xq, &M)) != QK_OK)
            break;
        layer_forward(L, L->w, Xf, M, M, T);
        layer_forward(L, wn, Xq, M, M, Yq);
        ln += out_loss(L, Yq, T, M, NULL) / 4;
        layer_forward(L, wt, Xq, M, M, Yq);
        lo += out_loss(L, Yq, T, M, NULL) / 4;
    }
    if (loss_nearest)
        *loss_nearest = ln;
    if (loss_out)
        *loss_out = lo;
    qk_free(gw);
done:
    qk_free(V);
    qk_free(X);
    return st;
}

/* qk_adaround_linear: columns are rows of X. */
typedef struct dense_ctx {
    const float *X, *xq;
    int64_t n, k, batch;
} dense_ctx;

static qk_status dense_sample(void *ctx, qk_rng *rng, const qk_recon_config *c, float *Xf, float *Xq, int64_t *M)
{
    const dense_ctx *d = ctx;
    int64_t B = d->batch;
    for (int64_t b = 0; b < B; b++) {
        int64_t r = (int64_t)qk_rng_below(rng, (uint32_t)d->n);
        for (int64_t j = 0; j < d->k; j++) {
            float xf = d->X[r * d->k + j], xq = d->xq ? d->xq[r * d->k + j] : xf;
            Xf[j * B + b] = xf;
            Xq[j * B + b] = c->method == QK_RECON_QDROP && qk_rng_uniform(rng) >= c->drop_p ? xf : xq;
        }
    }
    *M = B;
    return QK_OK;
}

qk_status qk_adaround_linear(const float *W, int64_t co, int64_t k, const float *scale, const int32_t *zp,
                             const int32_t *qn, const int32_t *qp, const float *X, const float *xq, int64_t n,
                             const qk_recon_config *c, int32_t *codes, double *mse_nearest, double *mse_out)
{
    if (!W || !scale || !zp || !qn || !qp || !X || !codes || !c || co < 1 || k < 1 || n < 1)
        return qk_error(QK_ERR_ARG, "adaround: missing argument");
    qk_status st = qk_recon_config_check(c, n);
    if (st != QK_OK)
        return st;
    dense_ctx d = { X, xq, n, k, c->batch };
    float *fl = qk_malloc((size_t)(co * k) * sizeof *fl);
    if (!fl)
        return qk_error(QK_ERR_NOMEM, "adaround: out of memory");
    recon_layer L = { .co = co, .kg = k, .groups = 1, .w = W, .floor_w = fl, .scale = scale, .zp = zp,
                      .qn = qn, .qp = qp, .lo = -INFINITY, .hi = INFINITY, .max_cols = c->batch,
                      .sample = dense_sample, .ctx = &d };
    int64_t flipped = 0;
    st = qk_recon_layer_run(&L, c, codes, NULL, NULL, &flipped);
    /* exact output errors on all n inputs */
    for (int w = 0; st == QK_OK && w < 2 && (mse_nearest || mse_out); w++) {
        double acc = 0;
        for (int64_t r = 0; r < n; r++)
            for (int64_t o = 0; o < co; o++) {
                double yf = 0, yq = 0;
                for (int64_t j = 0; j < k; j++) {
                    double q = w == 0 ? nearbyint(W[o * k + j] / scale[o]) + zp[o] : codes[o * k + j];
                    q = q < qn[o] ? qn[o] : q > qp[o] ? qp[o] : q;
                    yf += (double)W[o * k + j] * X[r * k + j];
                    yq += scale[o] * (q - zp[o]) * (xq ? xq[r * k + j] : X[r * k + j]);
                }
                acc += (yf - yq) * (yf - yq);
            }
        acc /= (double)(n * co);
        if (w == 0 && mse_nearest)
            *mse_nearest = acc;
        if (w == 1 && mse_out)
            *mse_out = acc;
    }
    qk_free(fl);
    return st;
}
