/* int8 convolution (i8conv.h): output size, per-worker workspace of each
 * path, and which path a shape takes. */
#include "i8conv.h"

int64_t qk_conv_out_dim(int64_t in, int64_t k, int64_t stride, int64_t dil, int64_t p0, int64_t p1)
{
    int64_t span = dil * (k - 1) + 1;
    if (stride < 1 || in + p0 + p1 < span)
        return 0;
    return (in + p0 + p1 - span) / stride + 1;
}

/* nhwc: input rows a block of `rows` output pixels can touch. */
static int64_t nhwc_in_rows(const qk_i8conv *c, int64_t H, int64_t W)
{
    int64_t OW = qk_conv_out_dim(W, c->kw, c->sw, c->dw, c->pl, c->pr);
    if (OW < 1)
        return 0;
    int64_t span = (conv_rows(c) + OW - 1) / OW + 1, r = (span - 1) * c->sh + (c->kh - 1) * c->dh + 1;
    return r < H ? r : H;
}

size_t qk_i8conv_nhwc_buf_bytes(const qk_i8conv *c, int64_t H, int64_t W)
{
    if (c->pointwise)
        return qk_i8_align64((size_t)(conv_rows(c) * c->Cg));
    return qk_i8_align64((size_t)(nhwc_in_rows(c, H, W) * W * c->Cg));
}

static size_t qk_i8conv_ws_bytes_explicit(const qk_i8conv *c, int64_t H, int64_t W);

/* One input channel (a first layer): the input rows a block of output
 * pixels reads, zero-point padded to Wp = W + pl + pr columns. */
size_t qk_i8conv_c1_buf_bytes(const qk_i8conv *c, int64_t H, int64_t W)
{
    int64_t OW = qk_conv_out_dim(W, c->kw, c->sw, c->dw, c->pl, c->pr);
    if (OW < 1)
        return 0;
    (void)H;
    int64_t span = (conv_rows(c) + OW - 1) / OW + 1, rows = (span - 1) * c->sh + (c->kh - 1) * c->dh + 1;
    return qk_i8_align64((size_t)(rows * (W + c->pl + c->pr)));
}

/* The padded rows buffer: R + kh - 1 rows of Wp pixels, and what the
 * AMX tiles read past them (rows up to a multiple of 32, the last chunk). */
size_t qk_i8conv_imp_buf_bytes(const qk_i8conv *c, int64_t W)
{
    int64_t Wp, R = imp_rows(c, W, &Wp);
    if (R < 1)
        return 0;
    int64_t rows = (R + c->kh - 1) * Wp * c->Cg;
    int64_t reach = qk_i8_roundup(R * Wp, 32) * c->Cg + (c->kh - 1) * Wp * c->Cg + c->KS;
    return qk_i8_align64((size_t)(rows > reach ? rows : reach));
}

/* Row sums (weights with a nonzero zero point): prefix sums of the padded
 * buffer's bytes, one int32 per byte and one more. */
size_t qk_i8conv_imp_pre_bytes(const qk_i8conv *c, int64_t W)
{
    return c->gimp && c->gimp->need_rowsum ? qk_i8_align64((qk_i8conv_imp_buf_bytes(c, W) + 1) * 4) : 0;
}
int64_t qk_i8conv_imp_npx(const qk_i8conv *c, int64_t W)
{
    return (int64_t)(qk_i8conv_imp_buf_bytes(c, W) / (size_t)c->Cg) + 16 + c->kw;
}

int64_t qk_i8conv_imp_tstride(const qk_i8conv *c, int64_t W)
{
    return (int64_t)qk_i8_align64((size_t)qk_i8conv_imp_npx(c, W) * 4);
}

size_t qk_i8conv_imp_pair_bytes(const qk_i8conv *c, int64_t W)
{
    return c->bpair ? (size_t)(c->Cg / 4 * qk_i8conv_imp_tstride(c, W)) : 0;
}

const char *qk_i8conv_path(const qk_i8conv *c, int64_t H, int64_t W)
{
    (void)H;
    int64_t Wp;
    if (c->depthwise)
        return "depthwise";
    if (c->pointwise)
        return "pointwise";
    return imp_rows(c, W, &Wp) >= 1 ? "implicit" : "im2col";
}

size_t qk_i8conv_ws_bytes(const qk_i8conv *c, int64_t H, int64_t W)
{
    if (qk_i8conv_imp_buf_bytes(c, W)) {
        size_t e = qk_i8conv_ws_bytes_explicit(c, H, W),
               i = qk_i8conv_imp_buf_bytes(c, W) + qk_i8conv_imp_pre_bytes(c, W) + qk_i8conv_imp_pair_bytes(c, W) +
                   qk_i8gemm_ws_bytes(c->gimp);
        return e > i ? e : i;
    }
    return qk_i8conv_ws_bytes_explicit(c, H, W);
}

static size_t qk_i8conv_ws_bytes_explicit(const qk_i8conv *c, int64_t H, int64_t W)
{
    if (c->depthwise) { /* the NCHW plane kernel's scratch, or the NHWC one's zero-point row */
        size_t plane = qk_i8_align64((size_t)(qk_conv_out_dim(H, c->kh, c->sh, c->dh, c->pt, c->pb) *
                                              qk_conv_out_dim(W, c->kw, c->sw, c->dw, c->pl, c->pr) * 4)) +
                       qk_i8_align64((size_t)c->kw * 16);
        size_t zrow = qk_i8_align64((size_t)(W * c->C + 64));
        if (c->dw_vnni && c->dq4.rows) { /* + the row-quad kernel's ring of input rows */
            int64_t OW = qk_conv_out_dim(W, c->kw, c->sw, c->dw, c->pl, c->pr);
            zrow += qk_i8_dw_rows_bytes(c->C, OW, (c->kh - 1) * c->dh + 1);
        }
        return plane > zrow ? plane : zrow;
    }
    size_t col = c->pointwise ? 0 : qk_i8_align64((size_t)(conv_rows(c) * c->K));
    return col + (c->nhwc ? qk_i8conv_nhwc_buf_bytes(c, H, W) : c->Cg == 1 ? qk_i8conv_c1_buf_bytes(c, H, W) : 0) +
           qk_i8gemm_ws_bytes(c->gm[0]);
}

int64_t qk_i8conv_dw_nblk(const qk_i8conv *c, int64_t OH, int64_t OW)
{
    int64_t row = OW * c->Co * (int64_t)qk_dtype_size(c->out_type), n = (8192 + row - 1) / row;
    return n < OH ? n : OH;
}
