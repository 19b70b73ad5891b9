/* Resize (ONNX opset 10-19) and Upsample (opset 7-9), float32 forward and
 * backward.
 *
 * Resize(X[, roi][, scales][, sizes]): output dim i = floor(in_i * scale_i)
 * from scales, or sizes_i (optionally only on `axes`, opset 18; the
 * keep_aspect_ratio_policy "stretch" only); scales/sizes/roi known at infer
 * time (known.h). With sizes, scale_i = out_i / in_i. L_i = in_i * scale_i,
 * unrounded (as the ONNX reference). Each output index x of
 * an axis maps to the input coordinate x' by coordinate_transformation_mode:
 *   half_pixel (default)   (x + 0.5) / scale - 0.5
 *   pytorch_half_pixel     the same, 0 when L_i <= 1
 *   align_corners          x * (in_i - 1) / (L_i - 1), 0 when L_i == 1
 *   asymmetric             x / scale
 *   tf_half_pixel_for_nn   (x + 0.5) / scale
 *   tf_crop_and_resize     roi-based (outside [0, in_i - 1]:
 *                          extrapolation_value)
 * mode nearest (nearest_mode round_prefer_floor (default),
 * round_prefer_ceil, floor, ceil), linear (taps floor(x'), floor(x') + 1,
 * weights 1 - r, r) or cubic (cubic_coeff_a, exclude_outside); tap indices
 * are clamped into the axis (edge values). Opset 10 Resize and Upsample use
 * asymmetric coordinates and nearest index floor(x') (ceil(x') when
 * downsampling), as onnxruntime does. antialias = 1 is QK_ERR_UNSUPPORTED.
 * Axes are separable: y = sum over the taps of every axis of the product of
 * the weights times x at those indices. Backward adds w * dy into each tap
 * (serial: taps overlap). */
#include "known.h"

#include <math.h>

#define RZ_TAPS 4

enum { RZ_NEAREST, RZ_LINEAR, RZ_CUBIC };
enum { CT_HALF, CT_PYTORCH_HALF, CT_ALIGN, CT_ASYM, CT_TF_HALF_NN, CT_TF_CROP };
enum { NM_RPF, NM_RPC, NM_FLOOR, NM_CEIL, NM_SIMPLE };

typedef struct rz_axis {
    int64_t in, out;
    int taps;
    int64_t *idx; /* out * taps */
    float *w;     /* out * taps */
    uint8_t *outside; /* tf_crop_and_resize: x' outside the axis */
} rz_axis;

typedef struct rz_state {
    int mode, ct, nm, exclude, legacy, upsample;
    float cubic_a, extrap;
    int nd;
    rz_axis ax[QK_MAX_DIMS];
} rz_state;

static void rz_free_axes(rz_state *s)
{
    for (int i = 0; i < QK_MAX_DIMS; i++) {
        qk_free(s->ax[i].idx);
        qk_free(s->ax[i].w);
        qk_free(s->ax[i].outside);
        s->ax[i].idx = NULL;
        s->ax[i].w = NULL;
        s->ax[i].outside = NULL;
    }
}

static void rz_destroy(qk_node *n)
{
    if (n->state)
        rz_free_axes(n->state);
    qk_free(n->state);
    n->state = NULL;
}

static qk_status rz_init_common(qk_graph *g, qk_node *n, int upsample)
{
    if (n->n_in < 1 || n->in[0] < 0 || n->n_in > (upsample ? 2 : 4) || n->n_out != 1)
        return qk_error(QK_ERR_FORMAT, "has %d inputs and %d outputs", n->n_in, n->n_out);
    rz_state *s = qk_calloc(1, sizeof *s);
    if (!s)
        return qk_error(QK_ERR_NOMEM, "out of memory");
    n->state = s;
    s->upsample = upsample;
    s->legacy = upsample || (g->opset > 0 && g->opset < 11);
    const char *m = qk_node_string(n, "mode", "nearest");
    if (strcmp(m, "nearest") == 0)
        s->mode = RZ_NEAREST;
    else if (strcmp(m, "linear") == 0 || strcmp(m, "bilinear") == 0)
        s->mode = RZ_LINEAR;
    else if (strcmp(m, "cubic") == 0 && !s->legacy)
        s->mode = RZ_CUBIC;
    else
        return qk_error(QK_ERR_UNSUPPORTED, "mode \"%s\" is not supported", m);
    static const char *cts[] = { "half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric",
                                 "tf_half_pixel_for_nn", "tf_crop_and_resize" };
    const char *ct = qk_node_string(n, "coordinate_transformation_mode", "half_pixel");
    s->ct = -1;
    for (int i = 0; i < 6; i++)
        if (strcmp(ct, cts[i]) == 0)
            s->ct = i;
    if (s->legacy)
        s->ct = CT_ASYM;
    if (s->ct < 0)
        return qk_error(QK_ERR_UNSUPPORTED, "coordinate_transformation_mode \"%s\" is not supported", ct);
    static const char *nms[] = { "round_prefer_floor", "round_prefer_ceil", "floor", "ceil" };
    const char *nm = qk_node_string(n, "nearest_mode", "round_prefer_floor");
    s->nm = -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(nm, nms[i]) == 0)
            s->nm = i;
    if (s->legacy)
        s->nm = NM_SIMPLE;
    if (s->nm < 0)
        return qk_error(QK_ERR_UNSUPPORTED, "nearest_mode \"%s\" is not supported", nm);
    s->cubic_a = qk_node_float(n, "cubic_coeff_a", -0.75f);
    s->exclude = (int)qk_node_int(n, "exclude_outside", 0);
    s->extrap = qk_node_float(n, "extrapolation_value", 0.0f);
    if (qk_node_int(n, "antialias", 0))
        return qk_error(QK_ERR_UNSUPPORTED, "antialias = 1 is not supported");
    const char *kp = qk_node_string(n, "keep_aspect_ratio_policy", "stretch");
    if (strcmp(kp, "stretch") != 0)
        return qk_error(QK_ERR_UNSUPPORTED, "keep_aspect_ratio_policy \"%s\" is not supported", kp);
    return QK_OK;
}

static qk_status resize_init(qk_graph *g, qk_node *n) { return rz_init_common(g, n, 0); }
static qk_status upsample_init(qk_graph *g, qk_node *n) { return rz_init_common(g, n, 1); }

static void cubic_coeffs(float a, double r, double *c)
{
    double x;
    x = r + 1;
    c[0] = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
    x = r;
    c[1] = ((a + 2) * x - (a + 3)) * x * x + 1;
    x = 1 - r;
    c[2] = ((a + 2) * x - (a + 3)) * x * x + 1;
    x = 2 - r;
    c[3] = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
}

static int64_t clampi(int64_t v, int64_t n) { return v < 0 ? 0 : v >= n ? n - 1 : v; }

/* Taps of one axis. */
static qk_status rz_axis_build(const rz_state *s, rz_axis *A, double scale, double roi0, double roi1)
{
    int taps = s->mode == RZ_NEAREST ? 1 : s->mode == RZ_LINEAR ? 2 : 4;
    A->taps = taps;
    A->idx = qk_calloc((size_t)(A->out ? A->out : 1) * taps, sizeof(int64_t));
    A->w = qk_calloc((size_t)(A->out ? A->out : 1) * taps, sizeof(float));
    A->outside = qk_calloc((size_t)(A->out ? A->out : 1), 1);
    if (!A->idx || !A->w || !A->outside)
        return qk_error(QK_ERR_NOMEM, "out of memory");
    int64_t in = A->in, out = A->out;
    double outf = in * scale; /* the unrounded output length (ONNX reference) */
    for (int64_t x = 0; x < out; x++) {
        double xo;
        switch (s->ct) {
        case CT_HALF: xo = (x + 0.5) / scale - 0.5; break;
        case CT_PYTORCH_HALF: xo = outf > 1 ? (x + 0.5) / scale - 0.5 : 0; break;
        case CT_ALIGN: xo = outf == 1 ? 0 : (double)x * (double)(in - 1) / (outf - 1); break;
        case CT_ASYM: xo = x / scale; break;
        case CT_TF_HALF_NN: xo = (x + 0.5) / scale; break;
        default:
            xo = outf > 1 ? roi0 * (in - 1) + x * (roi1 - roi0) * (in - 1) / (outf - 1)
                         : 0.5 * (roi0 + roi1) * (in - 1);
            A->outside[x] = xo < 0 || xo > in - 1;
            break;
        }
        int64_t *id = A->idx + x * taps;
        float *w = A->w + x * taps;
        if (s->mode == RZ_NEAREST) {
            double f = floor(xo);
            int64_t k;
            switch (s->nm) {
            case NM_RPF: k = xo - f == 0.5 ? (int64_t)f : (int64_t)floor(xo + 0.5); break;
            case NM_RPC: k = (int64_t)floor(xo + 0.5); break;
            case NM_FLOOR: k = (int64_t)f; break;
            case NM_CEIL: k = (int64_t)ceil(xo); break;
            default: k = scale < 1 ? (int64_t)ceil(xo) : (int64_t)f; break;
            }
            id[0] = clampi(k, in);
            w[0] = 1;
        } else if (s->mode == RZ_LINEAR) {
            double xc = xo < 0 ? 0 : xo > in - 1 ? (double)(in - 1) : xo;
            int64_t k = (int64_t)floor(xc);
            double r = xc - k;
            id[0] = clampi(k, in);
            id[1] = clampi(k + 1, in);
            w[0] = (float)(1 - r);
            w[1] = (float)r;
        } else {
            int64_t k = (int64_t)floor(xo);
            double c[4], sum = 0;
            cubic_coeffs(s->cubic_a, xo - k, c);
            for (int t = 0; t < 4; t++) {
                int64_t p = k - 1 + t;
                if (s->exclude && (p < 0 || p >= in))
                    c[t] = 0;
                sum += c[t];
                id[t] = clampi(p, in);
            }
            for (int t = 0; t < 4; t++)
                w[t] = (float)(s->exclude && sum != 0 ? c[t] / sum : c[t]);
        }
    }
    return QK_OK;
}

static qk_status rz_infer(qk_graph *g, qk_node *n)
{
    rz_state *s = n->state;
    const qk_value *xv = qk_in(g, n, 0);
    const qk_tensor *x = &xv->t;
    if (x->dtype != QK_F32)
        return qk_error(QK_ERR_UNSUPPORTED, "input '%s' must be float32, got %s", xv->name, qk_dtype_name(x->dtype));
    int r = x->ndim;
    float sc[QK_MAX_DIMS], roi[2 * QK_MAX_DIMS];
    int64_t sz[QK_MAX_DIMS], axes[QK_MAX_DIMS];
    int nsc = 0, nsz = 0, nroi = 0, na = qk_node_ints(n, "axes", axes, QK_MAX_DIMS);
    qk_status st = QK_OK;
    const qk_value *scv = qk_in(g, n, s->upsample || s->legacy ? 1 : 2), *szv = s->legacy ? NULL : qk_in(g, n, 3);
    const qk_value *roiv = s->legacy ? NULL : qk_in(g, n, 1);
    if (scv && qk_tensor_numel(&scv->t) == 0 && qk_known(g, scv))
        scv = NULL; /* empty scales: sizes given */
    if (s->upsample && !scv) {
        nsc = 0;
        const qk_attr *at = qk_node_attr(n, "scales");
        if (!at)
            return qk_error(QK_ERR_FORMAT, "needs scales");
        for (int i = 0; i < at->n && i < QK_MAX_DIMS; i++)
            sc[nsc++] = at->floats[i];
    } else if (scv) {
        st = qk_known_floats(g, scv, "scales", sc, QK_MAX_DIMS, &nsc);
    } else if (szv) {
        st = qk_known_ints(g, szv, "sizes", sz, QK_MAX_DIMS, &nsz);
    } else {
        return qk_error(QK_ERR_FORMAT, "needs scales or sizes");
    }
    if (st == QK_OK && s->ct == CT_TF_CROP) {
        if (!roiv)
            return qk_error(QK_ERR_FORMAT, "tf_crop_and_resize needs roi");
        st = qk_known_floats(g, roiv, "roi", roi, 2 * QK_MAX_DIMS, &nroi);
    }
    if (st != QK_OK)
        return st;
    int k = na ? na : r;
    if (!na)
        for (int i = 0; i < r; i++)
            axes[i] = i;
    if ((nsc && nsc != k) || (nsz && nsz != k) || (nroi && nroi != 2 * k))
        return qk_error(QK_ERR_ARG, "scales/sizes/roi have %d/%d/%d entries for %d axes", nsc, nsz, nroi, k);
    double scale[QK_MAX_DIMS], r0[QK_MAX_DIMS], r1[QK_MAX_DIMS];
    int64_t d[QK_MAX_DIMS];
    for (int i = 0; i < r; i++) {
        scale[i] = 1;
        d[i] = x->dims[i];
        r0[i] = 0;
        r1[i] = 1;
    }
    for (int i = 0; i < k; i++) {
        int a = qk_lt_axis(axes[i], r, 0);
        if (a < 0)
            return qk_error(QK_ERR_ARG, "axis %lld out of range", (long long)axes[i]);
        if (nsc) {
            if (!(sc[i] > 0))
                return qk_error(QK_ERR_ARG, "scale %g must be positive", sc[i]);
            scale[a] = sc[i];
            double dd = floor(x->dims[a] * (double)sc[i]);
            if (!(dd < (double)((int64_t)1 << 53)))
                return qk_error(QK_ERR_SHAPE, "scale %g makes axis %d absurdly large", sc[i], a);
            d[a] = (int64_t)dd;
        } else {
            if (sz[i] < 0)
                return qk_error(QK_ERR_ARG, "size %lld must be >= 0", (long long)sz[i]);
            d[a] = sz[i];
            scale[a] = x->dims[a] ? (double)sz[i] / (double)x->dims[a] : 1;
        }
        if (nroi) {
            r0[a] = roi[i];
            r1[a] = roi[i + k];
        }
    }
    qk_status cst = qk_graph_check_bytes(g, "output", QK_F32, r, d);
    if (cst != QK_OK)
        return cst;
    rz_free_axes(s);
    s->nd = r;
    for (int i = 0; i < r && st == QK_OK; i++) {
        s->ax[i].in = x->dims[i];
        s->ax[i].out = d[i];
        st = rz_axis_build(s, &s->ax[i], scale[i], r0[i], r1[i]);
    }
    if (st == QK_OK)
        qk_tensor_set_shape(&qk_out(g, n, 0)->t, QK_F32, r, d);
    return st;
}

/* Visit every (input offset, weight) of output element e; returns 0 when
 * e is outside (tf_crop_and_resize). */
typedef void (*rz_visit)(void *ctx, int64_t off, float w);

static int rz_element(const rz_state *s, int64_t e, rz_visit fn, void *ctx)
{
    int64_t pos[QK_MAX_DIMS];
    for (int i = s->nd - 1; i >= 0; i--) {
        pos[i] = s->ax[i].out ? e % s->ax[i].out : 0;
        e = s->ax[i].out ? e / s->ax[i].out : 0;
        if (s->ax[i].outside[pos[i]])
            return 0;
    }
    int t[QK_MAX_DIMS] = { 0 };
    for (;;) {
        int64_t off = 0;
        float w = 1;
        for (int i = 0; i < s->nd; i++) {
            const rz_axis *A = &s->ax[i];
            off = off * A->in + A->idx[pos[i] * A->taps + t[i]];
            w *= A->w[pos[i] * A->taps + t[i]];
        }
        if (w != 0)
            fn(ctx, off, w);
        int i = s->nd - 1;
        while (i >= 0 && ++t[i] == s->ax[i].taps)
            t[i--] = 0;
        if (i < 0)
            break;
    }
    return 1;
}

typedef struct rz_job {
    const rz_state *s;
    const float *x;
    float *y, *dx;
    double acc;
    float dy;
} rz_job;

static void rz_sum(void *c, int64_t off, float w)
{
    rz_job *j = c;
    j->acc += (double)w * j->x[off];
}

static void rz_fwd_range(void *c, int64_t lo, int64_t hi)
{
    rz_job j = *(const rz_job *)c;
    for (int64_t e = lo; e < hi; e++) {
        j.acc = 0;
        j.y[e] = rz_element(j.s, e, rz_sum, &j) ? (float)j.acc : j.s->extrap;
    }
}

static void rz_add(void *c, int64_t off, float w)
{
    rz_job *j = c;
    j->dx[off] += w * j->dy;
}

static qk_status rz_forward(qk_exec *x, qk_node *n)
{
    const rz_state *s = n->state;
    qk_tensor *y = &qk_out(x->g, n, 0)->t;
    rz_job j = { s, qk_f32(&qk_in(x->g, n, 0)->t), qk_f32(y), NULL, 0, 0 };
    qk_lt_par(x->pool, qk_tensor_numel(y), QK_LT_GRAIN / 8, rz_fwd_range, &j);
    return QK_OK;
}

static qk_status rz_backward(qk_exec *x, qk_node *n)
{
    const rz_state *s = n->state;
    qk_value *xv = qk_in(x->g, n, 0), *yv = qk_out(x->g, n, 0);
    if (!xv->grad.data || !yv->grad.data)
        return QK_OK;
    rz_job j = { s, NULL, NULL, qk_f32(&xv->grad), 0, 0 };
    const float *dy = qk_f32(&yv->grad);
    int64_t ne = qk_tensor_numel(&yv->t);
    for (int64_t e = 0; e < ne; e++) {
        j.dy = dy[e];
        rz_element(s, e, rz_add, &j);
    }
    return QK_OK;
}

const qk_op qk_op_resize = { "Resize", resize_init, rz_infer, NULL, rz_forward, rz_backward, rz_destroy, NULL };
const qk_op qk_op_upsample = { "Upsample", upsample_init, rz_infer, NULL, rz_forward, rz_backward, rz_destroy, NULL };
