/* Depthwise int8 convolution pieces below the kernels (i8gemm.h): the
 * reference planes and rows every vector kernel falls back to and is
 * tested against, and the tables of the VNNI NHWC kernel. */
#include "i8gemm.h"

#include <string.h>

void qk_i8_dw_plane_ref(const qk_i8_dwplane *p)
{
    for (int64_t i = 0; i < p->OH * p->OW; i++)
        p->acc[i] = (uint32_t)p->bias;
    for (int64_t oh = 0; oh < p->OH; oh++) {
        uint32_t *ar = p->acc + oh * p->OW;
        for (int64_t a = 0; a < p->kh; a++) {
            int64_t ih = oh * p->sh - p->pt + a * p->dh;
            if (ih < 0 || ih >= p->H)
                continue;
            const uint8_t *xr = p->x + ih * p->W;
            for (int64_t b = 0; b < p->kw; b++) {
                const uint8_t *xp = xr + b * p->dw - p->pl;
                uint32_t w = (uint32_t)p->w[a * p->kw + b];
                for (int64_t ow = p->lo[b]; ow <= p->hi[b]; ow++) {
                    int32_t xv = p->sgn ? (int32_t)(int8_t)xp[ow * p->sw] : (int32_t)xp[ow * p->sw];
                    ar[ow] += w * (uint32_t)(xv - p->zx);
                }
            }
        }
    }
}

void qk_i8_dw_nhwc_one(const qk_i8_dwrow *p, int64_t ow, int64_t c)
{
    const int64_t C = p->C;
    uint32_t s = (uint32_t)p->bias[c];
    for (int64_t a = 0; a < p->kh; a++) {
        int64_t ih = p->ih0 + a * p->dh;
        if (ih < 0 || ih >= p->H)
            continue;
        for (int64_t b = 0; b < p->kw; b++) {
            int64_t iw = ow * p->sw - p->pl + b * p->dw;
            if (iw < 0 || iw >= p->W)
                continue;
            const uint8_t *xp = p->x + (ih * p->W + iw) * C + c;
            int32_t xv = p->sgn ? (int32_t)(int8_t)*xp : (int32_t)*xp;
            s += (uint32_t)p->wt[(a * p->kw + b) * C + c] * (uint32_t)(xv - p->zx);
        }
    }
    int32_t v = qk_requant_value(p->mode, (int32_t)s, p->mult[c], p->shift[c], p->scale[c], p->zo, p->qmin, p->qmax);
    int64_t o = ow * C + c;
    switch (p->out_type) {
    case QK_U8: ((uint8_t *)p->y)[o] = (uint8_t)v; break;
    case QK_I8: ((int8_t *)p->y)[o] = (int8_t)v; break;
    case QK_I16: ((int16_t *)p->y)[o] = (int16_t)v; break;
    default: ((int32_t *)p->y)[o] = v; break;
    }
}

void qk_i8_dw_tap_offsets(const qk_i8_dwrow *p, int64_t ow, int64_t *off)
{
    const int64_t iw0 = ow * p->sw - p->pl, kk = p->kh * p->kw;
    for (int64_t a = 0; a < p->kh; a++)
        for (int64_t b = 0; b < p->kw; b++) {
            int64_t ih = p->ih0 + a * p->dh, iw = iw0 + b * p->dw;
            off[a * p->kw + b] = ih >= 0 && ih < p->H && iw >= 0 && iw < p->W ? (ih * p->W + iw) * p->C : -1;
        }
    off[kk] = -1;
}

void qk_i8_dw_nhwc_row_ref(const qk_i8_dwrow *p)
{
    for (int64_t ow = 0; ow < p->OW; ow++)
        for (int64_t c = 0; c < p->C; c++)
            qk_i8_dw_nhwc_one(p, ow, c);
}

void qk_i8_dwq4_free(qk_i8_dwq4 *q4)
{
    qk_aligned_free(q4->tab);
    q4->tab = NULL;
    q4->rows = 0;
}

static int64_t gcd64(int64_t a, int64_t b) { return b ? gcd64(b, a % b) : a; }

/* One chunk entry (i8gemm.h) for the channels chan(q) (-1: none). */
static void dwq4_chunk(uint8_t *e, int64_t nq, int64_t kk, const int64_t *chan, const int32_t *w,
                       const int32_t *bias, const int32_t *mult, const int32_t *shift, const float *scale, int fp32,
                       int32_t zxu)
{
    int32_t *par = (int32_t *)(e + nq * 256);
    for (int64_t j = 0; j < 4; j++)
        for (int64_t i = 0; i < 16; i++) {
            int64_t q = 16 * (i / 4) + 4 * j + i % 4, c = chan[q];
            for (int64_t t = 0; t < 4 * nq; t++)
                e[(t / 4) * 256 + j * 64 + i * 4 + t % 4] = (uint8_t)(int8_t)(c >= 0 && t < kk ? w[c * kk + t] : 0);
            uint32_t b = 0, m = 0, sh = 0;
            if (c >= 0) {
                uint32_t sw = 0;
                for (int64_t t = 0; t < kk; t++)
                    sw += (uint32_t)w[c * kk + t];
                b = (uint32_t)bias[c] - (uint32_t)zxu * sw; /* wrapping, as the accumulator */
                if (fp32)
                    memcpy(&m, &scale[c], 4);
                else
                    m = (uint32_t)mult[c], sh = (uint32_t)shift[c];
            }
            par[j * 16 + i] = (int32_t)b;
            par[64 + j * 16 + i] = (int32_t)m;
            par[128 + j * 16 + i] = (int32_t)sh;
        }
}

qk_status qk_i8_dwq4_build(qk_i8_dwq4 *q4, int64_t C, int64_t kk, const int32_t *w, const int32_t *bias,
                           const int32_t *mult, const int32_t *shift, const float *scale, int fp32, int32_t zxu)
{
    qk_i8_dwq4_free(q4);
    q4->kt = kk;
    q4->nq = (kk + 3) / 4;
    q4->stride = (q4->nq + 3) * 256;
    q4->flat_n = C / gcd64(C, 64); /* lcm(64, C) / 64 */
    if (q4->flat_n > 64)
        q4->flat_n = 0; /* (long period: pixels only) */
    q4->pix_n = (C + 63) / 64;
    if (!(q4->tab = qk_aligned_alloc((size_t)((q4->flat_n + q4->pix_n) * q4->stride))))
        return qk_error(QK_ERR_NOMEM, "int8 conv: out of memory");
    int64_t chan[64];
    for (int64_t k = 0; k < q4->flat_n + q4->pix_n; k++) {
        for (int64_t q = 0; q < 64; q++)
            chan[q] = k < q4->flat_n ? (64 * k + q) % C : 64 * (k - q4->flat_n) + q < C ? 64 * (k - q4->flat_n) + q : -1;
        dwq4_chunk(q4->tab + k * q4->stride, q4->nq, kk, chan, w, bias, mult, shift, scale, fp32, zxu);
    }
    return QK_OK;
}
