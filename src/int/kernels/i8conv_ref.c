/* int8 convolution (i8conv.h): the reference, the 7-loop definition
 * every path is tested against. */
#include "i8conv.h"

qk_status qk_i8conv_ref(const qk_i8conv_desc *d, int64_t N, int64_t H, int64_t W, const void *x, void *y)
{
    qk_status st = qk_i8conv_check(d);
    if (st != QK_OK)
        return st;
    int64_t OH = qk_conv_out_dim(H, d->kh, d->stride_h, d->dil_h, d->pad_t, d->pad_b);
    int64_t OW = qk_conv_out_dim(W, d->kw, d->stride_w, d->dil_w, d->pad_l, d->pad_r);
    if (OH < 1 || OW < 1 || !d->w)
        return qk_error(QK_ERR_SHAPE, "int8 conv reference: no output or no weights");
    int64_t Cg = d->C / d->groups, Cog = d->Co / d->groups;
    for (int64_t n = 0; n < N; n++)
        for (int64_t co = 0; co < d->Co; co++) {
            int64_t gi = co / Cog, q = d->rq.n == 1 ? 0 : co;
            int32_t zw = wzero(d, co);
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    uint32_t s = d->bias ? (uint32_t)d->bias[co] : 0;
                    for (int64_t ci = 0; ci < Cg; ci++)
                        for (int64_t a = 0; a < d->kh; a++)
                            for (int64_t b = 0; b < d->kw; b++) {
                                int64_t ih = oh * d->stride_h - d->pad_t + a * d->dil_h;
                                int64_t iw = ow * d->stride_w - d->pad_l + b * d->dil_w;
                                int32_t xv = d->x_zero; /* padding is real zero */
                                if (ih >= 0 && ih < H && iw >= 0 && iw < W) {
                                    int64_t xi = ((n * d->C + gi * Cg + ci) * H + ih) * W + iw;
                                    xv = d->x_type == QK_U8 ? (int32_t)((const uint8_t *)x)[xi]
                                                            : (int32_t)((const int8_t *)x)[xi];
                                }
                                int32_t wv = w_at(d, ((co * Cg + ci) * d->kh + a) * d->kw + b);
                                s += (uint32_t)((xv - d->x_zero) * (wv - zw));
                            }
                    int32_t v = qk_requant_value(d->rq.mode, (int32_t)s, d->rq.mult ? d->rq.mult[q] : 0,
                                                 d->rq.shift ? d->rq.shift[q] : 0, d->rq.scale ? d->rq.scale[q] : 0.0f,
                                                 d->rq.zero_point, d->rq.qmin, d->rq.qmax);
                    int64_t o = ((n * d->Co + co) * OH + oh) * OW + ow;
                    switch (d->out_type) {
                    case QK_U8: ((uint8_t *)y)[o] = (uint8_t)v; break;
                    case QK_I8: ((int8_t *)y)[o] = (int8_t)v; break;
                    case QK_I16: ((int16_t *)y)[o] = (int16_t)v; break;
                    default: ((int32_t *)y)[o] = v; break;
                    }
                }
        }
    return QK_OK;
}
