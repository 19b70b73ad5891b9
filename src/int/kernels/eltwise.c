/* Quantized Add, Concat requantization and pooling: reference kernels with
 * TFLite's integer arithmetic (docs/ALGORITHMS.md §7). NCHW. */
#include "qkit/int.h"

#include <emmintrin.h>
#include <math.h>

static int32_t load_q(qk_dtype t, const void *p, int64_t i)
{
    switch (t) {
    case QK_U8: return ((const uint8_t *)p)[i];
    case QK_I8: return ((const int8_t *)p)[i];
    case QK_I16: return ((const int16_t *)p)[i];
    default: return ((const int32_t *)p)[i];
    }
}

static void store_q(qk_dtype t, void *p, int64_t i, int32_t v)
{
    switch (t) {
    case QK_U8: ((uint8_t *)p)[i] = (uint8_t)v; break;
    case QK_I8: ((int8_t *)p)[i] = (int8_t)v; break;
    case QK_I16: ((int16_t *)p)[i] = (int16_t)v; break;
    default: ((int32_t *)p)[i] = v; break;
    }
}

/* ---- quantized Add ---- */

qk_status qk_qadd_prepare(qk_dtype type, double s1, int32_t z1, double s2, int32_t z2, double so, int32_t zo,
                          int32_t qmin, int32_t qmax, qk_qadd *p)
{
    int32_t lo, hi;
    if (type != QK_U8 && type != QK_I8 && type != QK_I16)
        return qk_error(QK_ERR_ARG, "quantized Add: type %d is not uint8, int8 or int16", (int)type);
    qk_int_range(type, &lo, &hi);
    if (!(s1 > 0) || !(s2 > 0) || !(so > 0) || !isfinite(s1) || !isfinite(s2) || !isfinite(so))
        return qk_error(QK_ERR_ARG, "quantized Add: scales (%g, %g, %g) must be finite and > 0", s1, s2, so);
    if (z1 < lo || z1 > hi || z2 < lo || z2 > hi || zo < lo || zo > hi)
        return qk_error(QK_ERR_ARG, "quantized Add: zero points (%d, %d, %d) outside [%d, %d]", z1, z2, zo, lo, hi);
    if (qmin < lo || qmax > hi || qmin > qmax)
        return qk_error(QK_ERR_ARG, "quantized Add: clamp [%d, %d] empty or outside [%d, %d]", qmin, qmax, lo, hi);
    p->type = type;
    p->z1 = z1;
    p->z2 = z2;
    p->zo = zo;
    p->qmin = qmin;
    p->qmax = qmax;
    p->left_shift = type == QK_I16 ? 15 : 20;
    double t = 2.0 * (s1 > s2 ? s1 : s2);
    qk_status st;
    if ((st = qk_quantize_multiplier(s1 / t, &p->m1, &p->e1)) != QK_OK ||
        (st = qk_quantize_multiplier(s2 / t, &p->m2, &p->e2)) != QK_OK ||
        (st = qk_quantize_multiplier(t / ((double)(1 << p->left_shift) * so), &p->mo, &p->eo)) != QK_OK)
        return qk_error_context(st, "quantized Add");
    if (p->eo > 0)
        return qk_error(QK_ERR_ARG, "quantized Add: output scale %g is too small for the inputs' (%g, %g)", so,
                        s1, s2);
    return QK_OK;
}

int32_t qk_qadd_value(const qk_qadd *p, int32_t q1, int32_t q2)
{
    int32_t a = (int32_t)((uint32_t)(q1 - p->z1) << p->left_shift);
    int32_t b = (int32_t)((uint32_t)(q2 - p->z2) << p->left_shift);
    int32_t sum = qk_mbqm(a, p->m1, p->e1) + qk_mbqm(b, p->m2, p->e2);
    int64_t y = (int64_t)qk_mbqm(sum, p->mo, p->eo) + p->zo;
    return y < p->qmin ? p->qmin : y > p->qmax ? p->qmax : (int32_t)y;
}

void qk_qadd_run(const qk_qadd *p, int64_t n, const void *a, const void *b, void *y)
{
    for (int64_t i = 0; i < n; i++)
        store_q(p->type, y, i, qk_qadd_value(p, load_q(p->type, a, i), load_q(p->type, b, i)));
}

/* ---- Concat requantization (TFLite reference ConcatenationWithScaling) ---- */

int32_t qk_requant_float_rna(int32_t q, float si, int32_t zi, float so, int32_t zo, int32_t qmin, int32_t qmax)
{
    if (si == so && zi == zo)
        return qk_clamp_i32(q, qmin, qmax);
    float inv = 1.0f / so;
    float scale = si * inv;
    float bias = -(float)zi * scale;
    float v = (float)q * scale;
    v = v + bias;                         /* two roundings, as TFLite (no fused multiply-add) */
    double r = (double)roundf(v) + zo; /* saturates below, also for +-inf (NaN: the zero point) */
    if (r != r)
        r = zo;
    return r < qmin ? qmin : r > qmax ? qmax : (int32_t)r;
}

void qk_concat_requant(qk_dtype type, int64_t n, const void *x, float si, int32_t zi, float so, int32_t zo,
                       void *y)
{
    int32_t lo, hi;
    qk_int_range(type, &lo, &hi);
    for (int64_t i = 0; i < n; i++)
        store_q(type, y, i, qk_requant_float_rna(load_q(type, x, i), si, zi, so, zo, lo, hi));
}

/* ---- pooling ---- */

static qk_status pool_check(const qk_pool2d *p, int64_t H, int64_t W, int64_t *OH, int64_t *OW, const char *what)
{
    if (p->kh < 1 || p->kw < 1 || p->stride_h < 1 || p->stride_w < 1 || p->dil_h < 1 || p->dil_w < 1 ||
        p->pad_t < 0 || p->pad_l < 0 || p->pad_b < 0 || p->pad_r < 0)
        return qk_error(QK_ERR_ARG, "%s: invalid kernel/stride/dilation/pads", what);
    *OH = qk_conv_out_dim(H, p->kh, p->stride_h, p->dil_h, p->pad_t, p->pad_b);
    *OW = qk_conv_out_dim(W, p->kw, p->stride_w, p->dil_w, p->pad_l, p->pad_r);
    if (*OH < 1 || *OW < 1)
        return qk_error(QK_ERR_SHAPE, "%s: window %lldx%lld does not fit input %lldx%lld", what, (long long)p->kh,
                        (long long)p->kw, (long long)H, (long long)W);
    return QK_OK;
}

qk_status qk_i8_avgpool(qk_dtype type, const qk_pool2d *p, int32_t zero, int64_t N, int64_t C, int64_t H,
                        int64_t W, const void *x, void *y)
{
    int64_t OH, OW;
    qk_status st = pool_check(p, H, W, &OH, &OW, "AveragePool");
    if (st != QK_OK)
        return st;
    int32_t lo, hi;
    qk_int_range(type, &lo, &hi);
    for (int64_t nc = 0; nc < N * C; nc++) {
        int64_t xo = nc * H * W, yo = nc * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                int32_t acc = 0, cnt = 0;
                for (int64_t i = 0; i < p->kh; i++) {
                    int64_t ih = oh * p->stride_h - p->pad_t + i * p->dil_h;
                    for (int64_t j = 0; j < p->kw; j++) {
                        int64_t iw = ow * p->stride_w - p->pad_l + j * p->dil_w;
                        if (ih >= 0 && ih < H && iw >= 0 && iw < W) {
                            acc += load_q(type, x, xo + ih * W + iw);
                            cnt++;
                        } else if (p->count_include_pad && ih < H + p->pad_b && iw < W + p->pad_r) {
                            acc += zero;
                            cnt++;
                        }
                    }
                }
                store_q(type, y, yo + oh * OW + ow, cnt ? qk_clamp_i32(qk_avg_round(acc, cnt), lo, hi) : zero);
            }
    }
    return QK_OK;
}

/* 8-bit max pooling without dilation, planes of H x W bytes (NCHW). The
 * codes are compared as unsigned bytes (int8 with the sign bit flipped,
 * an order-preserving map), so one loop serves both types; a window wholly
 * in the padding gives the type's minimum, as in the general loop below.
 * 2x2 windows of stride 2 without padding (LeNet's pools) take SSE2: the
 * vertical max of two rows, then the max of each byte pair. */
static void maxpool8(int sgn, const qk_pool2d *p, int64_t NC, int64_t H, int64_t W, int64_t OH, int64_t OW,
                     const void *vx, void *vy)
{
    const uint8_t flip = sgn ? 0x80 : 0;
    const uint8_t *x = vx;
    uint8_t *y = vy;
    const int two = p->kh == 2 && p->kw == 2 && p->stride_h == 2 && p->stride_w == 2 && p->pad_t == 0 &&
                    p->pad_l == 0 && p->pad_b == 0 && p->pad_r == 0;
    const __m128i fl = _mm_set1_epi8((char)flip), lowb = _mm_set1_epi16(0x00FF);
    for (int64_t nc = 0; nc < NC; nc++) {
        const uint8_t *xp = x + nc * H * W;
        uint8_t *yp = y + nc * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t ow = 0;
            if (two) { /* rows 2oh, 2oh+1 exist: OH = floor(H/2) without padding */
                const uint8_t *r0 = xp + 2 * oh * W, *r1 = r0 + W;
                for (; ow + 8 <= OW; ow += 8) { /* 16 input bytes -> 8 outputs */
                    __m128i a = _mm_xor_si128(_mm_loadl_epi64((const __m128i *)(r0 + 2 * ow)), fl);
                    __m128i b = _mm_xor_si128(_mm_loadl_epi64((const __m128i *)(r0 + 2 * ow + 8)), fl);
                    __m128i c = _mm_xor_si128(_mm_loadl_epi64((const __m128i *)(r1 + 2 * ow)), fl);
                    __m128i d = _mm_xor_si128(_mm_loadl_epi64((const __m128i *)(r1 + 2 * ow + 8)), fl);
                    __m128i v = _mm_max_epu8(_mm_unpacklo_epi64(a, b), _mm_unpacklo_epi64(c, d));
                    __m128i m = _mm_max_epu8(v, _mm_srli_epi16(v, 8)); /* pair max in each 16-bit lane's low byte */
                    __m128i o = _mm_packus_epi16(_mm_and_si128(m, lowb), _mm_setzero_si128());
                    _mm_storel_epi64((__m128i *)(yp + oh * OW + ow), _mm_xor_si128(o, fl));
                }
            }
            for (; ow < OW; ow++) {
                int m = -1;
                for (int64_t i = 0; i < p->kh; i++) {
                    int64_t ih = oh * p->stride_h - p->pad_t + i;
                    if (ih < 0 || ih >= H)
                        continue;
                    const uint8_t *xr = xp + ih * W;
                    for (int64_t j = 0; j < p->kw; j++) {
                        int64_t iw = ow * p->stride_w - p->pad_l + j;
                        if (iw >= 0 && iw < W) {
                            int v = xr[iw] ^ flip;
                            m = v > m ? v : m;
                        }
                    }
                }
                yp[oh * OW + ow] = (uint8_t)((m < 0 ? 0 : m) ^ flip);
            }
        }
    }
}

qk_status qk_i8_maxpool(qk_dtype type, const qk_pool2d *p, int64_t N, int64_t C, int64_t H, int64_t W,
                        const void *x, void *y)
{
    int64_t OH, OW;
    qk_status st = pool_check(p, H, W, &OH, &OW, "MaxPool");
    if (st != QK_OK)
        return st;
    if ((type == QK_U8 || type == QK_I8) && p->dil_h == 1 && p->dil_w == 1) {
        maxpool8(type == QK_I8, p, N * C, H, W, OH, OW, x, y);
        return QK_OK;
    }
    for (int64_t nc = 0; nc < N * C; nc++) {
        int64_t xo = nc * H * W, yo = nc * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                int32_t m = INT32_MIN;
                for (int64_t i = 0; i < p->kh; i++) {
                    int64_t ih = oh * p->stride_h - p->pad_t + i * p->dil_h;
                    for (int64_t j = 0; j < p->kw; j++) {
                        int64_t iw = ow * p->stride_w - p->pad_l + j * p->dil_w;
                        if (ih >= 0 && ih < H && iw >= 0 && iw < W) {
                            int32_t v = load_q(type, x, xo + ih * W + iw);
                            m = v > m ? v : m;
                        }
                    }
                }
                if (m == INT32_MIN) { /* window entirely in the padding */
                    int32_t lo, hi;
                    qk_int_range(type, &lo, &hi);
                    m = lo;
                }
                store_q(type, y, yo + oh * OW + ow, m);
            }
    }
    return QK_OK;
}

void qk_i8_global_avgpool(qk_dtype type, int64_t N, int64_t C, int64_t HW, const void *x, void *y)
{
    int32_t lo, hi;
    qk_int_range(type, &lo, &hi);
    for (int64_t nc = 0; nc < N * C; nc++) {
        int32_t acc = 0;
        for (int64_t i = 0; i < HW; i++)
            acc += load_q(type, x, nc * HW + i);
        store_q(type, y, nc, qk_clamp_i32(qk_avg_round(acc, (int32_t)HW), lo, hi));
    }
}
