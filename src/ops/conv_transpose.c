/* ConvTranspose (ONNX opset 1-21), 1-D to 3-D, float32, forward and
 * backward; a plain direct implementation (no GEMM).
 *
 * X [N, C, D...], W [C, M/group, k...], optional B [M] -> Y [N, M, O...]:
 *   Y[n, m, o] += X[n, c, i] * W[c, m - g*Mg, j]  for o = i*stride + j*dil - pad_begin
 * (c in group g of C/group channels). Output size per axis:
 *   O = stride*(D-1) + output_padding + (k-1)*dil + 1 - pad_begin - pad_end,
 * or output_shape when given (padding then derived from it), auto_pad
 * SAME_UPPER/SAME_LOWER (O = D*stride, the odd padding at the end / the
 * beginning) or NOTSET/VALID (pads, default 0).
 * Forward runs one task per (n, m) output plane; sums in float in a fixed
 * (c, i, j) order. Backward: dX by the matching gather, dW and dB in double,
 * serially. */
#include "light_util.h"

typedef struct ct_state {
    int sd;                     /* spatial dims */
    int64_t N, C, M, G, Cg, Mg;
    int64_t in[3], out[3], k[3], st[3], dil[3], pb[3];
    int64_t in_sz, out_sz, k_sz;
} ct_state;

static qk_status ct_init(qk_graph *g, qk_node *n)
{
    (void)g;
    if (n->n_in < 2 || n->n_in > 3 || n->in[0] < 0 || n->in[1] < 0 || n->n_out != 1)
        return qk_error(QK_ERR_FORMAT, "needs X, W [, B] and one output");
    ct_state *s = qk_calloc(1, sizeof *s);
    if (!s)
        return qk_error(QK_ERR_NOMEM, "out of memory");
    n->state = s;
    return QK_OK;
}

static void ct_destroy(qk_node *n)
{
    qk_free(n->state);
    n->state = NULL;
}

static qk_status ct_infer(qk_graph *g, qk_node *n)
{
    ct_state *s = n->state;
    const qk_value *xv = qk_in(g, n, 0), *wv = qk_in(g, n, 1), *bv = qk_in(g, n, 2);
    const qk_tensor *x = &xv->t, *w = &wv->t;
    if (x->dtype != QK_F32 || w->dtype != QK_F32)
        return qk_error(QK_ERR_UNSUPPORTED, "X and W must be float32");
    int sd = x->ndim - 2;
    if (sd < 1 || sd > 3 || w->ndim != x->ndim)
        return qk_error(QK_ERR_UNSUPPORTED, "X rank %d / W rank %d: 1-D to 3-D convolutions are supported",
                        x->ndim, w->ndim);
    s->sd = sd;
    s->G = qk_node_int(n, "group", 1);
    s->N = x->dims[0];
    s->C = x->dims[1];
    if (s->G < 1 || s->C % s->G || w->dims[0] != s->C)
        return qk_error(QK_ERR_SHAPE, "W dim 0 (%lld) must equal X channels (%lld), divisible by group %lld",
                        (long long)w->dims[0], (long long)s->C, (long long)s->G);
    s->Mg = w->dims[1];
    s->M = s->Mg * s->G;
    s->Cg = s->C / s->G;
    if (bv && (bv->t.dtype != QK_F32 || qk_tensor_numel(&bv->t) != s->M))
        return qk_error(QK_ERR_SHAPE, "B '%s' must be float32 with %lld elements", bv->name, (long long)s->M);
    int64_t ks[3], strides[3], dil[3], pads[6], opad[3], oshape[3];
    int nk = qk_node_ints(n, "kernel_shape", ks, 3), nst = qk_node_ints(n, "strides", strides, 3);
    int ndl = qk_node_ints(n, "dilations", dil, 3), np = qk_node_ints(n, "pads", pads, 6);
    int nop = qk_node_ints(n, "output_padding", opad, 3), nos = qk_node_ints(n, "output_shape", oshape, 3);
    const char *ap = qk_node_string(n, "auto_pad", "NOTSET");
    int same_upper = strcmp(ap, "SAME_UPPER") == 0, same_lower = strcmp(ap, "SAME_LOWER") == 0;
    if (!same_upper && !same_lower && strcmp(ap, "NOTSET") != 0 && strcmp(ap, "VALID") != 0)
        return qk_error(QK_ERR_ARG, "auto_pad \"%s\" is not valid", ap);
    if ((nk && nk != sd) || (nst && nst != sd) || (ndl && ndl != sd) || (np && np != 2 * sd) ||
        (nop && nop != sd) || (nos && nos != sd && nos != sd + 2))
        return qk_error(QK_ERR_ARG, "attribute lengths do not match %d spatial dims", sd);
    int64_t od[QK_MAX_DIMS];
    od[0] = s->N;
    od[1] = s->M;
    s->in_sz = s->out_sz = s->k_sz = 1;
    for (int i = 0; i < 3; i++) {
        s->in[i] = s->out[i] = s->k[i] = s->st[i] = s->dil[i] = 1;
        s->pb[i] = 0;
    }
    for (int i = 0; i < sd; i++) {
        int64_t D = x->dims[2 + i], k = w->dims[2 + i];
        if (nk && ks[i] != k)
            return qk_error(QK_ERR_SHAPE, "kernel_shape %lld does not match W dim %lld", (long long)ks[i],
                            (long long)k);
        int64_t stv = nst ? strides[i] : 1, dl = ndl ? dil[i] : 1, op = nop ? opad[i] : 0;
        int64_t full = stv * (D - 1) + op + (k - 1) * dl + 1, O, pbeg;
        if (nos || same_upper || same_lower) {
            O = nos ? oshape[nos == sd ? i : i + 2] : D * stv;
            int64_t total = full - O;
            if (total < 0)
                total = 0; /* output_shape beyond the full size: zero-padded at the end */
            pbeg = same_lower ? total - total / 2 : total / 2;
        } else {
            pbeg = np ? pads[i] : 0;
            O = full - pbeg - (np ? pads[i + sd] : 0);
        }
        if (O < 0)
            return qk_error(QK_ERR_SHAPE, "negative output size on axis %d", i);
        s->in[i] = D;
        s->out[i] = O;
        s->k[i] = k;
        s->st[i] = stv;
        s->dil[i] = dl;
        s->pb[i] = pbeg;
        od[2 + i] = O;
        s->in_sz *= D;
        s->out_sz *= O;
        s->k_sz *= k;
    }
    qk_tensor_set_shape(&qk_out(g, n, 0)->t, QK_F32, x->ndim, od);
    return QK_OK;
}

typedef struct ct_job {
    const ct_state *s;
    const float *x, *w, *b, *dy;
    float *y, *dx;
} ct_job;

/* Calls body(i_flat, o_flat, j_flat) for every input position i and kernel
 * tap j landing inside the output. */
#define CT_LOOP(s, BODY)                                                                              \
    for (int64_t i0 = 0; i0 < (s)->in[0]; i0++)                                                       \
        for (int64_t j0 = 0; j0 < (s)->k[0]; j0++) {                                                  \
            int64_t o0 = i0 * (s)->st[0] + j0 * (s)->dil[0] - (s)->pb[0];                             \
            if (o0 < 0 || o0 >= (s)->out[0])                                                          \
                continue;                                                                             \
            for (int64_t i1 = 0; i1 < (s)->in[1]; i1++)                                               \
                for (int64_t j1 = 0; j1 < (s)->k[1]; j1++) {                                          \
                    int64_t o1 = i1 * (s)->st[1] + j1 * (s)->dil[1] - (s)->pb[1];                     \
                    if (o1 < 0 || o1 >= (s)->out[1])                                                  \
                        continue;                                                                     \
                    for (int64_t i2 = 0; i2 < (s)->in[2]; i2++)                                       \
                        for (int64_t j2 = 0; j2 < (s)->k[2]; j2++) {                                  \
                            int64_t o2 = i2 * (s)->st[2] + j2 * (s)->dil[2] - (s)->pb[2];             \
                            if (o2 < 0 || o2 >= (s)->out[2])                                          \
                                continue;                                                             \
                            int64_t ii = (i0 * (s)->in[1] + i1) * (s)->in[2] + i2;                    \
                            int64_t oo = (o0 * (s)->out[1] + o1) * (s)->out[2] + o2;                  \
                            int64_t jj = (j0 * (s)->k[1] + j1) * (s)->k[2] + j2;                      \
                            BODY;                                                                     \
                        }                                                                             \
                }                                                                                     \
        }

static void ct_fwd_range(void *c, int64_t lo, int64_t hi)
{
    const ct_job *jb = c;
    const ct_state *s = jb->s;
    for (int64_t p = lo; p < hi; p++) {
        int64_t nn = p / s->M, m = p % s->M, g = m / s->Mg, ml = m % s->Mg;
        float *y = jb->y + p * s->out_sz;
        float bias = jb->b ? jb->b[m] : 0.0f;
        for (int64_t o = 0; o < s->out_sz; o++)
            y[o] = bias;
        for (int64_t cl = 0; cl < s->Cg; cl++) {
            int64_t cc = g * s->Cg + cl;
            const float *x = jb->x + (nn * s->C + cc) * s->in_sz;
            const float *w = jb->w + (cc * s->Mg + ml) * s->k_sz;
            CT_LOOP(s, y[oo] += x[ii] * w[jj])
        }
    }
}

static void ct_bwd_x_range(void *c, int64_t lo, int64_t hi)
{
    const ct_job *jb = c;
    const ct_state *s = jb->s;
    for (int64_t p = lo; p < hi; p++) {
        int64_t nn = p / s->C, cc = p % s->C, g = cc / s->Cg;
        float *dx = jb->dx + p * s->in_sz;
        for (int64_t ml = 0; ml < s->Mg; ml++) {
            int64_t m = g * s->Mg + ml;
            const float *dy = jb->dy + (nn * s->M + m) * s->out_sz;
            const float *w = jb->w + (cc * s->Mg + ml) * s->k_sz;
            CT_LOOP(s, dx[ii] += dy[oo] * w[jj])
        }
    }
}

static int64_t ct_chunk(int64_t per)
{
    int64_t c = per ? QK_LT_GRAIN / 8 / per : 1;
    return c < 1 ? 1 : c;
}

static qk_status ct_forward(qk_exec *x, qk_node *n)
{
    const ct_state *s = n->state;
    qk_graph *g = x->g;
    const qk_value *bv = qk_in(g, n, 2);
    ct_job j = { s, qk_f32(&qk_in(g, n, 0)->t), qk_f32(&qk_in(g, n, 1)->t), bv ? qk_f32(&bv->t) : NULL, NULL,
                 qk_f32(&qk_out(g, n, 0)->t), NULL };
    qk_lt_par(x->pool, s->N * s->M, ct_chunk(s->Cg * s->in_sz * s->k_sz), ct_fwd_range, &j);
    return QK_OK;
}

static qk_status ct_backward(qk_exec *x, qk_node *n)
{
    const ct_state *s = n->state;
    qk_graph *g = x->g;
    qk_value *xv = qk_in(g, n, 0), *wv = qk_in(g, n, 1), *bv = qk_in(g, n, 2), *yv = qk_out(g, n, 0);
    if (!yv->grad.data)
        return QK_OK;
    const float *dy = qk_f32(&yv->grad), *X = qk_f32(&xv->t);
    if (xv->grad.data) {
        ct_job j = { s, NULL, qk_f32(&wv->t), NULL, dy, NULL, qk_f32(&xv->grad) };
        qk_lt_par(x->pool, s->N * s->C, ct_chunk(s->Mg * s->in_sz * s->k_sz), ct_bwd_x_range, &j);
    }
    if (wv->grad.data) {
        float *dw = qk_f32(&wv->grad);
        for (int64_t cc = 0; cc < s->C; cc++)
            for (int64_t ml = 0; ml < s->Mg; ml++) {
                int64_t m = (cc / s->Cg) * s->Mg + ml;
                float *w = dw + (cc * s->Mg + ml) * s->k_sz;
                for (int64_t nn = 0; nn < s->N; nn++) {
                    const float *xx = X + (nn * s->C + cc) * s->in_sz, *d = dy + (nn * s->M + m) * s->out_sz;
                    CT_LOOP(s, w[jj] += xx[ii] * d[oo])
                }
            }
    }
    if (bv && bv->grad.data) {
        float *db = qk_f32(&bv->grad);
        for (int64_t m = 0; m < s->M; m++) {
            double acc = 0;
            for (int64_t nn = 0; nn < s->N; nn++)
                for (int64_t o = 0; o < s->out_sz; o++)
                    acc += dy[(nn * s->M + m) * s->out_sz + o];
            db[m] += (float)acc;
        }
    }
    return QK_OK;
}

const qk_op qk_op_convtranspose = { "ConvTranspose", ct_init, ct_infer, NULL, ct_forward, ct_backward,
                                    ct_destroy, NULL };
