/* The pooling, Concat and code-to-code requantization operators of a
 * lowered graph (domain "ai.qkit", see lower_internal.h). Loops split over
 * the pool in fixed tasks (one image, or one image and a channel range), so
 * 1 and N threads give the same codes. */
#include "lower_ops.h"
#include "qkit/ops.h"
#include "../../graph/window.h"

#include <math.h>
#include <emmintrin.h>
#include <string.h>

/* ============================================================ QkPool */

enum { POOL_MAX = 0, POOL_AVG = 1, POOL_GAP = 2 };

typedef struct qpool_state {
    int kind;
    qk_arith arith;
    qk_win_attrs a;
    qk_window w;
    qk_pool2d p;
    int count_include_pad;
    float sx, sy;
    int32_t zx;
    ostage o;
    int64_t N, C, H, W, OH, OW;
    int x_nhwc;       /* global average and max (lower_internal.h) */
    int y_nhwc;       /* max with x_nhwc: the output NHWC too */
} qpool_state;

static qk_status qpool_init(qk_graph *g, qk_node *n)
{
    (void)g;
    if (n->n_in != 1 || n->n_out != 1 || n->in[0] < 0)
        return qk_error(QK_ERR_ARG, "QkPool '%s': needs one input and one output", n->name);
    qpool_state *s = qk_calloc(1, sizeof *s);
    if (!s)
        return qk_error(QK_ERR_NOMEM, "QkPool: out of memory");
    n->state = s;
    s->kind = (int)qk_node_int(n, "kind", POOL_MAX);
    s->arith = (qk_arith)qk_node_int(n, "arith", QK_ARITH_FP32);
    s->count_include_pad = (int)qk_node_int(n, "count_include_pad", 0);
    s->sx = qk_node_float(n, "x_scale", 1), s->sy = qk_node_float(n, "y_scale", 1);
    s->zx = (int32_t)qk_node_int(n, "x_zero_point", 0);
    qk_status st = ostage_read(n, &s->o);
    if (st != QK_OK)
        return st;
    if (s->kind < POOL_MAX || s->kind > POOL_GAP || !is_q8(s->o.out))
        return qk_error(QK_ERR_ARG, "QkPool '%s': bad kind %d or out_type", n->name, s->kind);
    if (!(s->sx > 0) || !(s->sy > 0) || !isfinite(s->sx) || !isfinite(s->sy) || !isfinite(s->sx / s->sy))
        return qk_error(QK_ERR_ARG, "QkPool '%s': scales (%g, %g) must be finite and > 0, with a finite ratio",
                        n->name, (double)s->sx, (double)s->sy);
    if (s->kind != POOL_GAP && (st = qk_win_parse(n, "QkPool", &s->a)) != QK_OK)
        return st;
    if (s->kind == POOL_AVG && s->a.ceil_mode && s->count_include_pad)
        return qk_error(QK_ERR_UNSUPPORTED, "QkPool '%s': ceil_mode with count_include_pad", n->name);
    return QK_OK;
}

static qk_status qpool_infer(qk_graph *g, qk_node *n)
{
    qpool_state *s = n->state;
    const qk_tensor *x = &qk_in(g, n, 0)->t;
    char b1[96];
    if (!is_q8(x->dtype) || x->ndim != 4)
        return qk_error(QK_ERR_SHAPE, "QkPool '%s': x %s %s must be uint8/int8 NCHW", n->name,
                        qk_dtype_name(x->dtype), qk_shape_str(x, b1, sizeof b1));
    if (s->kind == POOL_MAX && x->dtype != s->o.out)
        return qk_error(QK_ERR_ARG, "QkPool '%s': max pool keeps the input type", n->name);
    s->x_nhwc = (s->kind == POOL_GAP || s->kind == POOL_MAX) && qk_node_int(n, "x_nhwc", 0);
    s->y_nhwc = s->kind == POOL_MAX && s->x_nhwc && qk_node_int(n, "y_nhwc", 0);
    s->N = x->dims[0], s->C = x->dims[1], s->H = x->dims[2], s->W = x->dims[3];
    if (s->x_nhwc) /* [N][H][W][C] in; a global average's [N][C][1][1] is the same bytes in either layout */
        s->C = x->dims[3], s->H = x->dims[1], s->W = x->dims[2];
    const int64_t hw[2] = { s->H, s->W };
    if (s->kind == POOL_GAP) {
        s->OH = s->OW = 1;
    } else {
        if (s->a.nk != 2)
            return qk_error(QK_ERR_ARG, "QkPool '%s': kernel_shape must have 2 entries", n->name);
        qk_status st = qk_win_resolve(&s->a, "QkPool", 2, hw, s->a.k, &s->w);
        if (st != QK_OK)
            return st;
        s->OH = s->w.out[1], s->OW = s->w.out[2];
        qk_pool2d p = { s->w.k[1], s->w.k[2], s->w.s[1], s->w.s[2], s->w.pb[1], s->w.pb[2], s->w.pe[1],
                        s->w.pe[2], s->w.d[1], s->w.d[2], s->count_include_pad };
        /* ceil_mode: widen the end pads so the floor formula gives OH/OW
         * (the extra cells are padding: ignored by max, not counted by avg) */
        int64_t need_h = (s->OH - 1) * p.stride_h + (p.kh - 1) * p.dil_h + 1 - s->H - p.pad_t;
        int64_t need_w = (s->OW - 1) * p.stride_w + (p.kw - 1) * p.dil_w + 1 - s->W - p.pad_l;
        p.pad_b = need_h > p.pad_b ? need_h : p.pad_b;
        p.pad_r = need_w > p.pad_r ? need_w : p.pad_r;
        s->p = p;
    }
    int64_t d[4] = { s->N, s->C, s->OH, s->OW };
    if (s->y_nhwc)
        d[1] = s->OH, d[2] = s->OW, d[3] = s->C;
    qk_tensor_set_shape(&qk_out(g, n, 0)->t, s->o.out, 4, d);
    return QK_OK;
}

/* The mean of a window of n cells from the sum of its codes: the
 * arithmetic chosen once for n (avg_prep), applied per window (avg_apply). */
typedef struct avg_rq {
    int kind; /* 0: TFLite (codes averaged, RNA); 1: a qk_requant_value mode */
    int32_t n, zx, mult, shift;
    qk_rq_mode mode;
    float scale;
} avg_rq;

static void avg_prep(const qpool_state *s, int32_t n, avg_rq *r)
{
    memset(r, 0, sizeof *r);
    r->n = n;
    r->zx = s->zx;
    if (s->sx == s->sy && s->zx == s->o.zp && s->arith != QK_ARITH_FP32)
        return; /* TFLite: codes averaged, RNA */
    r->kind = 1;
    double M = (double)s->sx / ((double)s->sy * n);
    if (s->arith == QK_ARITH_FP32) { /* MLAS: float scale, round half to even */
        r->mode = QK_RQ_FP32;
        r->scale = s->sx / (s->sy * (float)n);
        return;
    }
    int ok, e = qk_lower_pot_exp(M, &ok);
    if (s->arith == QK_ARITH_POT && ok && e >= -31 && e <= 31) {
        r->mode = QK_RQ_SHIFT;
        r->shift = -e;
        return;
    }
    int32_t q;
    if (qk_quantize_multiplier(M, &q, &e) != QK_OK) { /* M < 2^30 whenever n >= 1 and scales are sane */
        r->kind = 2;                                    /* the zero point */
        return;
    }
    r->mode = QK_RQ_GEMMLOWP;
    r->mult = q;
    r->shift = e;
}

static inline int32_t avg_apply(const qpool_state *s, const avg_rq *r, int32_t sumq)
{
    if (r->kind == 0)
        return qk_clamp_i32(qk_avg_round(sumq, r->n), s->o.qmin, s->o.qmax);
    if (r->kind == 2)
        return s->o.zp;
    return qk_requant_value(r->mode, sumq - r->n * r->zx, r->mult, r->shift, r->scale, s->o.zp, s->o.qmin, s->o.qmax);
}

/* Mean of a window: sumq = sum of codes over n cells. */
static int32_t qpool_avg(const qpool_state *s, int32_t sumq, int32_t n)
{
    avg_rq r;
    avg_prep(s, n, &r);
    return avg_apply(s, &r, sumq);
}

typedef struct qpool_job {
    const qpool_state *s;
    qk_dtype t;
    const void *x;
    void *y;
} qpool_job;

/* Global average of image `img`, [H*W][C] (NHWC): channels 64 at a time,
 * summed 16 at a time in 16-bit lanes (SSE2) over runs of at most 257
 * pixels (257 * 255 < 2^16), then widened; int8 codes as uint8 with the
 * sign bit flipped (x = (x ^ 0x80) - 128: the sum less 128 per pixel). */
static void gap_nhwc(const qpool_state *s, qk_dtype t, const void *x, void *y, int64_t img)
{
    const int64_t HW = s->H * s->W, C = s->C;
    const uint8_t fl8 = t == QK_I8 ? 0x80 : 0;
    const __m128i fl = _mm_set1_epi8((char)fl8), zero = _mm_setzero_si128();
    avg_rq rq;
    avg_prep(s, (int32_t)HW, &rq);
    for (int64_t c0 = 0; c0 < C; c0 += 64) {
        int32_t acc[64] = { 0 };
        const int64_t cn = C - c0 < 64 ? C - c0 : 64, cv = cn / 16 * 16;
        const uint8_t *p = (const uint8_t *)x + img * HW * C + c0;
        for (int64_t i0 = 0; i0 < HW; i0 += 257) {
            const int64_t i1 = i0 + 257 < HW ? i0 + 257 : HW;
            for (int64_t c = 0; c < cv; c += 16) {
                __m128i lo = zero, hi = zero;
                for (int64_t i = i0; i < i1; i++) {
                    __m128i v = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(p + i * C + c)), fl);
                    lo = _mm_add_epi16(lo, _mm_unpacklo_epi8(v, zero));
                    hi = _mm_add_epi16(hi, _mm_unpackhi_epi8(v, zero));
                }
                uint16_t l[8], h[8];
                _mm_storeu_si128((__m128i *)l, lo);
                _mm_storeu_si128((__m128i *)h, hi);
                for (int q = 0; q < 8; q++) {
                    acc[c + q] += l[q];
                    acc[c + 8 + q] += h[q];
                }
            }
            for (int64_t c = cv; c < cn; c++)
                for (int64_t i = i0; i < i1; i++)
                    acc[c] += (uint8_t)(p[i * C + c] ^ fl8);
        }
        const int32_t bias = t == QK_I8 ? 128 * (int32_t)HW : 0;
        for (int64_t c = 0; c < cn; c++)
            st8(s->o.out, y, img * C + c0 + c, avg_apply(s, &rq, acc[c] - bias));
    }
}

#define MAX_NHWC_TAPS 64

/* Max pooling of image `img` read NHWC: each output pixel's C codes are the
 * bytewise max of its window's pixels (SSE2, 16 channels at a time; int8
 * compared with the sign bit flipped); written NHWC, or NCHW when y_nhwc is
 * off. A window wholly in the padding gives the type's minimum. */
static void max_nhwc(const qpool_state *s, int sgn, const uint8_t *x, uint8_t *y, int64_t img)
{
    const qk_pool2d *p = &s->p;
    const int64_t C = s->C, H = s->H, W = s->W, OH = s->OH, OW = s->OW;
    const uint8_t fl8 = sgn ? 0x80 : 0;
    const __m128i fl = _mm_set1_epi8((char)fl8);
    const uint8_t *xi = x + (size_t)(img * H * W * C);
    const uint8_t *tap[MAX_NHWC_TAPS];
    /* windows wholly inside the image, C a multiple of 16: the taps are
     * fixed offsets from the window's first pixel */
    const int64_t kk = p->kh * p->kw;
    const int inner = kk <= MAX_NHWC_TAPS && C % 16 == 0;
    int64_t toff[MAX_NHWC_TAPS];
    for (int64_t wi = 0; inner && wi < kk; wi++)
        toff[wi] = ((wi / p->kw) * p->dil_h * W + (wi % p->kw) * p->dil_w) * C;
    for (int64_t oh = 0; oh < OH; oh++)
        for (int64_t ow = 0; ow < OW; ow++) {
            uint8_t *yo = y + (size_t)(((img * OH + oh) * OW + ow) * C);
            const int64_t ih0 = oh * p->stride_h - p->pad_t, iw0 = ow * p->stride_w - p->pad_l;
            if (inner && ih0 >= 0 && ih0 + (p->kh - 1) * p->dil_h < H && iw0 >= 0 &&
                iw0 + (p->kw - 1) * p->dil_w < W) {
                const uint8_t *b = xi + (ih0 * W + iw0) * C;
                for (int64_t c0 = 0; c0 < C; c0 += 16) {
                    __m128i m = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(b + toff[0] + c0)), fl);
                    for (int64_t t = 1; t < kk; t++)
                        m = _mm_max_epu8(m, _mm_xor_si128(_mm_loadu_si128((const __m128i *)(b + toff[t] + c0)), fl));
                    m = _mm_xor_si128(m, fl);
                    if (s->y_nhwc) {
                        _mm_storeu_si128((__m128i *)(yo + c0), m);
                        continue;
                    }
                    uint8_t v[16];
                    _mm_storeu_si128((__m128i *)v, m);
                    for (int64_t q = 0; q < 16; q++)
                        y[(size_t)(((img * C + c0 + q) * OH + oh) * OW + ow)] = v[q];
                }
                continue;
            }
            /* the window's pixels inside the image, MAX_NHWC_TAPS at a time (once per pixel when
             * the window has no more; larger windows list them again for each 16 channels) */
            int nt = 0;
            for (int64_t c0 = 0; c0 < C; c0 += 16) {
                int64_t cn = C - c0 < 16 ? C - c0 : 16;
                __m128i m = _mm_setzero_si128(); /* flipped codes: 0 is the minimum */
                for (int64_t w0 = 0; w0 < kk; w0 += MAX_NHWC_TAPS) {
                    if (c0 == 0 || kk > MAX_NHWC_TAPS) {
                        nt = 0;
                        for (int64_t wi = w0; wi < kk && wi < w0 + MAX_NHWC_TAPS; wi++) {
                            int64_t ih = oh * p->stride_h - p->pad_t + (wi / p->kw) * p->dil_h;
                            int64_t iw = ow * p->stride_w - p->pad_l + (wi % p->kw) * p->dil_w;
                            if (ih >= 0 && ih < H && iw >= 0 && iw < W)
                                tap[nt++] = xi + (ih * W + iw) * C;
                        }
                    }
                    for (int t = 0; t < nt; t++) {
                        __m128i v;
                        if (cn == 16) {
                            v = _mm_loadu_si128((const __m128i *)(tap[t] + c0));
                        } else {
                            uint8_t b[16] = { 0 };
                            memcpy(b, tap[t] + c0, (size_t)cn);
                            for (int64_t q = cn; q < 16; q++)
                                b[q] = fl8; /* flips to 0 */
                            v = _mm_loadu_si128((const __m128i *)b);
                        }
                        m = _mm_max_epu8(m, _mm_xor_si128(v, fl));
                    }
                }
                m = _mm_xor_si128(m, fl);
                if (s->y_nhwc && cn == 16) {
                    _mm_storeu_si128((__m128i *)(yo + c0), m);
                    continue;
                }
                uint8_t b[16];
                _mm_storeu_si128((__m128i *)b, m);
                if (s->y_nhwc)
                    memcpy(yo + c0, b, (size_t)cn);
                else
                    for (int64_t q = 0; q < cn; q++)
                        y[(size_t)(((img * C + c0 + q) * OH + oh) * OW + ow)] = b[q];
            }
        }
}

/* One image per task. */
static void qpool_task(void *ctx, int64_t img, int w)
{
    (void)w;
    const qpool_job *j = ctx;
    const qpool_state *s = j->s;
    qk_dtype t = j->t;
    size_t es = 1;
    const uint8_t *xi = (const uint8_t *)j->x + (size_t)(img * s->C * s->H * s->W) * es;
    uint8_t *yi = (uint8_t *)j->y + (size_t)(img * s->C * s->OH * s->OW) * es;
    if (s->kind == POOL_MAX && s->x_nhwc) {
        max_nhwc(s, t == QK_I8, j->x, j->y, img);
        return;
    }
    if (s->kind == POOL_MAX) {
        qk_i8_maxpool(t, &s->p, 1, s->C, s->H, s->W, xi, yi); /* shapes checked at infer */
        return;
    }
    if (s->kind == POOL_GAP && s->x_nhwc) {
        gap_nhwc(s, t, j->x, j->y, img);
        return;
    }
    const qk_pool2d *p = &s->p;
    for (int64_t c = 0; c < s->C; c++) {
        int64_t xo = c * s->H * s->W, yo = c * s->OH * s->OW;
        if (s->kind == POOL_GAP) {
            int32_t acc = 0;
            if (t == QK_U8)
                for (int64_t i = 0; i < s->H * s->W; i++)
                    acc += xi[xo + i];
            else
                for (int64_t i = 0; i < s->H * s->W; i++)
                    acc += (int8_t)xi[xo + i];
            st8(s->o.out, yi, c, qpool_avg(s, acc, (int32_t)(s->H * s->W)));
            continue;
        }
        for (int64_t oh = 0; oh < s->OH; oh++)
            for (int64_t ow = 0; ow < s->OW; ow++) {
                int32_t acc = 0, cnt = 0;
                for (int64_t i = 0; i < p->kh; i++) {
                    int64_t ih = oh * p->stride_h - p->pad_t + i * p->dil_h;
                    for (int64_t k = 0; k < p->kw; k++) {
                        int64_t iw = ow * p->stride_w - p->pad_l + k * p->dil_w;
                        if (ih >= 0 && ih < s->H && iw >= 0 && iw < s->W) {
                            acc += ld(t, xi, xo + ih * s->W + iw);
                            cnt++;
                        } else if (p->count_include_pad) {
                            acc += s->zx; /* padding is real 0 */
                            cnt++;
                        }
                    }
                }
                st8(s->o.out, yi, yo + oh * s->OW + ow, cnt ? qpool_avg(s, acc, cnt) : s->o.zp);
            }
    }
}

static qk_status qpool_forward(qk_exec *x, qk_node *n)
{
    const qpool_state *s = n->state;
    const qk_tensor *xt = &qk_in(x->g, n, 0)->t;
    qk_tensor *yt = &qk_out(x->g, n, 0)->t;
    qpool_job j = { s, xt->dtype, xt->data, yt->data };
    if (s->kind == POOL_MAX) { /* argument errors before the pool runs */
        qk_status st = qk_i8_maxpool(xt->dtype, &s->p, 0, s->C, s->H, s->W, xt->data, yt->data);
        if (st != QK_OK)
            return st;
    }
    qk_pool_run(x->pool, xt->dims[0], qpool_task, &j);
    return QK_OK;
}

const qk_op qk_op_qkpool = { .type = "QkPool", .init = qpool_init, .infer = qpool_infer, .forward = qpool_forward,
                             .destroy = plain_destroy, .domain = QK_LOWER_DOMAIN };

/* ============================================================ QkConcat / QkRequant */

#define CAT_MAX 64

typedef struct qcat_state {
    int64_t axis_attr;
    int axis;
    qk_arith arith;
    int nin;
    float sx[CAT_MAX];
    int32_t zx[CAT_MAX];
    float sy;
    ostage o;
    int32_t lut[CAT_MAX][256]; /* by (uint8_t)code */
    qk_dtype it[CAT_MAX];
    int64_t outer, inner[CAT_MAX], out_row;
} qcat_state;

static qk_status qcat_init(qk_graph *g, qk_node *n)
{
    (void)g;
    int req = strcmp(n->op_type, "QkRequant") == 0;
    if (n->n_in < 1 || n->n_in > CAT_MAX || (req && n->n_in != 1) || n->n_out != 1)
        return qk_error(QK_ERR_ARG, "%s '%s': %d inputs, %d outputs", n->op_type, n->name, n->n_in, n->n_out);
    qcat_state *s = qk_calloc(1, sizeof *s);
    if (!s)
        return qk_error(QK_ERR_NOMEM, "%s: out of memory", n->op_type);
    n->state = s;
    s->nin = n->n_in;
    s->axis_attr = qk_node_int(n, "axis", 1);
    s->arith = (qk_arith)qk_node_int(n, "arith", QK_ARITH_FP32);
    s->sy = qk_node_float(n, "y_scale", 0);
    qk_status st = ostage_read(n, &s->o);
    if (st != QK_OK)
        return st;
    const qk_attr *as = qk_node_attr(n, "x_scales"), *az = qk_node_attr(n, "x_zero_points");
    if (!as || !az || as->n != s->nin || az->n != s->nin || !is_q8(s->o.out))
        return qk_error(QK_ERR_ARG, "%s '%s': x_scales/x_zero_points need %d entries", n->op_type, n->name, s->nin);
    if (!(s->sy > 0) || !isfinite(s->sy))
        return qk_error(QK_ERR_ARG, "%s '%s': y_scale %g must be finite and > 0", n->op_type, n->name, (double)s->sy);
    for (int i = 0; i < s->nin; i++) {
        s->sx[i] = as->floats[i];
        s->zx[i] = (int32_t)az->ints[i];
        if (!(s->sx[i] > 0) || !isfinite(s->sx[i]))
            return qk_error(QK_ERR_ARG, "%s '%s': x_scales[%d] = %g must be finite and > 0", n->op_type, n->name, i,
                            (double)s->sx[i]);
    }
    return QK_OK;
}

static qk_status qcat_infer(qk_graph *g, qk_node *n)
{
    qcat_state *s = n->state;
    const qk_tensor *a = &qk_in(g, n, 0)->t;
    char b1[96], b2[96];
    int64_t ax = s->axis_attr < 0 ? s->axis_attr + a->ndim : s->axis_attr;
    if (ax < 0 || ax >= (a->ndim ? a->ndim : 1))
        return qk_error(QK_ERR_ARG, "%s '%s': axis %lld out of range", n->op_type, n->name, (long long)s->axis_attr);
    s->axis = (int)ax;
    int64_t d[QK_MAX_DIMS];
    memcpy(d, a->dims, sizeof d);
    d[ax] = 0;
    s->outer = 1;
    for (int i = 0; i < ax; i++)
        s->outer *= a->dims[i];
    s->out_row = 0;
    for (int k = 0; k < s->nin; k++) {
        const qk_value *v = qk_in(g, n, k);
        if (!v)
            return qk_error(QK_ERR_ARG, "%s '%s': input %d missing", n->op_type, n->name, k);
        const qk_tensor *b = &v->t;
        int ok = is_q8(b->dtype) && b->ndim == a->ndim;
        for (int i = 0; ok && i < a->ndim; i++)
            ok = i == ax || b->dims[i] == a->dims[i];
        if (!ok)
            return qk_error(QK_ERR_SHAPE, "%s '%s': input '%s' %s %s does not fit input 0 %s on axis %d", n->op_type,
                            n->name, v->name, qk_dtype_name(b->dtype), qk_shape_str(b, b1, sizeof b1),
                            qk_shape_str(a, b2, sizeof b2), s->axis);
        s->it[k] = b->dtype;
        d[ax] += b->dims[ax];
        s->inner[k] = s->outer ? qk_tensor_numel(b) / (s->outer ? s->outer : 1) : 0;
        s->out_row += s->inner[k];
        for (int c = 0; c < 256; c++) {
            int32_t q = b->dtype == QK_U8 ? c : (int8_t)(uint8_t)c;
            s->lut[k][c] = qk_lower_requant_code(s->arith, q, s->sx[k], s->zx[k], s->sy, s->o.zp, s->o.qmin,
                                                 s->o.qmax);
        }
    }
    qk_tensor_set_shape(&qk_out(g, n, 0)->t, s->o.out, a->ndim, d);
    return QK_OK;
}

static qk_status qcat_forward(qk_exec *x, qk_node *n)
{
    const qcat_state *s = n->state;
    qk_tensor *y = &qk_out(x->g, n, 0)->t;
    int64_t off = 0;
    for (int k = 0; k < s->nin; k++) {
        const uint8_t *src = qk_in(x->g, n, k)->t.data;
        for (int64_t o = 0; o < s->outer; o++)
            for (int64_t i = 0; i < s->inner[k]; i++)
                st8(s->o.out, y->data, o * s->out_row + off + i, s->lut[k][src[o * s->inner[k] + i]]);
        off += s->inner[k];
    }
    return QK_OK;
}

const qk_op qk_op_qkconcat = { .type = "QkConcat", .init = qcat_init, .infer = qcat_infer, .forward = qcat_forward,
                               .destroy = plain_destroy, .domain = QK_LOWER_DOMAIN };
const qk_op qk_op_qkrequant = { .type = "QkRequant", .init = qcat_init, .infer = qcat_infer,
                                .forward = qcat_forward, .destroy = plain_destroy, .domain = QK_LOWER_DOMAIN };
