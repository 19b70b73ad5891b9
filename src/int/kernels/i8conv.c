/* int8 convolution (NCHW, ONNX Conv semantics): im2col rows with x_zero
 * padding + the int8 GEMM per group, or a direct kernel when each group has
 * one input channel (depthwise). The reference is the 7-loop definition.
 *
 * GEMM path: A = im2col rows (one per output pixel), B = weights, output
 * stored transposed into NCHW. With >= 8 channels per group the input rows
 * a task needs are first transposed to NHWC in the worker's scratch, so an
 * im2col row is kh*kw copies of Cg contiguous bytes in (kh, kw, c) order;
 * the weights are permuted to that order once (at create/update). 1x1
 * stride-1 unpadded convolutions use the transposed rows as A directly.
 * qk_i8conv_run_layout (int.h) also takes NHWC input (used in place, no
 * transpose) and/or writes NHWC output (the GEMM epilogue stores pixel rows
 * directly instead of scattering into planes); depthwise convolutions with
 * multiplier 1 run NHWC in and out with channels as the vector dimension. */
#include "i8gemm.h"

#include <emmintrin.h>
#include <string.h>

struct qk_i8conv {
    qk_dtype x_type, w_type, out_type;
    int64_t C, Co, groups, Cg, Cog, K;
    int64_t kh, kw, sh, sw, dh, dw, pt, pl, pb, pr;
    int32_t x_zero;
    int nw_zero, rq_n;
    int depthwise;
    int nhwc;                  /* GEMM path through NHWC rows (Cg >= 8) */
    int pointwise;             /* 1x1, stride 1, no pad (nhwc only): no im2col */
    uint8_t *wperm;            /* nhwc: weights in [Co][kh][kw][Cg] order */
    qk_i8gemm **gm;            /* groups GEMMs (not depthwise) */
    /* implicit im2col (AMX, groups 1, stride 1, no dilation, Cg >= 16,
     * weights without row-sum terms): A rows read in place from zero-point
     * padded NHWC input rows; K = kh runs of kw*Cg bytes, each padded to KS
     * (a multiple of 64) with zero weights: wimp [Co][kh][KS] */
    int64_t KS;
    uint8_t *wimp;
    qk_i8gemm *gimp;
    /* depthwise: (w - w_zero) as int32 [Co][kh*kw], bias, per-channel output stage */
    int32_t *dw_w, *dw_bias, *dw_mult, *dw_shift;
    int32_t *dw_wt;            /* depthwise, multiplier 1: dw_w as [kh*kw][Co] (NHWC kernel) */
    int32_t *dw_wp;            /* the same as int16 pairs of taps: [(kh*kw+1)/2][Co] */
    int dw_vec;                /* AVX-512 output stage for the depthwise planes */
    int dw_vnni;               /* the VNNI NHWC kernel may run (dq4 when the weights fit) */
    qk_i8_dwq4 dq4;
    float *dw_scale;
    qk_rq_mode mode;
    int32_t zo, qmin, qmax;
};

int64_t qk_conv_out_dim(int64_t in, int64_t k, int64_t stride, int64_t dil, int64_t p0, int64_t p1)
{
    int64_t span = dil * (k - 1) + 1;
    if (stride < 1 || in + p0 + p1 < span)
        return 0;
    return (in + p0 + p1 - span) / stride + 1;
}

static qk_status check_conv(const qk_i8conv_desc *d)
{
    if ((d->x_type != QK_U8 && d->x_type != QK_I8) || (d->w_type != QK_U8 && d->w_type != QK_I8))
        return qk_error(QK_ERR_ARG, "int8 conv: types %s x %s (expected uint8 or int8)", qk_dtype_name(d->x_type),
                        qk_dtype_name(d->w_type));
    if (d->C < 1 || d->Co < 1 || d->groups < 1 || d->C % d->groups || d->Co % d->groups)
        return qk_error(QK_ERR_ARG, "int8 conv: channels %lld -> %lld do not split into %lld groups", (long long)d->C,
                        (long long)d->Co, (long long)d->groups);
    if (d->kh < 1 || d->kw < 1 || d->stride_h < 1 || d->stride_w < 1 || d->dil_h < 1 || d->dil_w < 1 ||
        d->pad_t < 0 || d->pad_l < 0 || d->pad_b < 0 || d->pad_r < 0)
        return qk_error(QK_ERR_ARG, "int8 conv: invalid kernel/stride/dilation/pads");
    int32_t lo, hi;
    qk_int_range(d->x_type, &lo, &hi);
    if (d->x_zero < lo || d->x_zero > hi)
        return qk_error(QK_ERR_ARG, "int8 conv: input zero point %d outside [%d, %d]", d->x_zero, lo, hi);
    if (!((d->nw_zero == 0 && !d->w_zero) || ((d->nw_zero == 1 || d->nw_zero == d->Co) && d->w_zero)))
        return qk_error(QK_ERR_ARG, "int8 conv: %d weight zero points; expected 1 or %lld", d->nw_zero,
                        (long long)d->Co);
    qk_int_range(d->w_type, &lo, &hi);
    for (int i = 0; i < d->nw_zero; i++)
        if (d->w_zero[i] < lo || d->w_zero[i] > hi)
            return qk_error(QK_ERR_ARG, "int8 conv: weight zero point[%d] = %d outside [%d, %d]", i, d->w_zero[i], lo,
                            hi);
    qk_status st = qk_requant_check(&d->rq, d->out_type, d->Co);
    return st == QK_OK ? QK_OK : qk_error_context(st, "int8 conv");
}

static int32_t w_at(const qk_i8conv_desc *d, int64_t i)
{
    return d->w_type == QK_U8 ? (int32_t)((const uint8_t *)d->w)[i] : (int32_t)((const int8_t *)d->w)[i];
}

static int32_t wzero(const qk_i8conv_desc *d, int64_t co)
{
    return d->nw_zero ? d->w_zero[d->nw_zero == 1 ? 0 : co] : 0;
}

/* nhwc: weights [Co][Cg][kh][kw] -> [Co][kh][kw][Cg] (bytes). */
static void permute_w(qk_i8conv *c, const qk_i8conv_desc *d)
{
    const uint8_t *w = d->w;
    for (int64_t co = 0; co < c->Co; co++)
        for (int64_t ci = 0; ci < c->Cg; ci++)
            for (int64_t a = 0; a < c->kh; a++)
                for (int64_t b = 0; b < c->kw; b++)
                    c->wperm[co * c->K + (a * c->kw + b) * c->Cg + ci] = w[((co * c->Cg + ci) * c->kh + a) * c->kw + b];
}

/* GEMM descriptor of group gi. */
static qk_i8gemm_desc group_desc(const qk_i8conv *c, const qk_i8conv_desc *d, int64_t gi)
{
    int64_t o = gi * c->Cog, pc = d->rq.n == 1 ? 0 : o;
    const uint8_t *wsrc = c->nhwc ? c->wperm : d->w;
    qk_i8gemm_desc g = {
        .a_type = d->x_type, .b_type = d->w_type, .K = c->K, .N = c->Cog,
        .B = d->w ? wsrc + (size_t)(o * c->K) : NULL, .ldb = c->K, .b_trans = 1,
        .a_zero = d->x_zero, .nb_zero = d->nw_zero, .b_zero = d->w_zero ? d->w_zero + (d->nw_zero == 1 ? 0 : o) : NULL,
        .bias = d->bias ? d->bias + o : NULL, .out_type = d->out_type, .rq = d->rq, .kernel = d->kernel};
    if (d->nw_zero > 1)
        g.nb_zero = (int)c->Cog;
    if (d->rq.n > 1) {
        g.rq.n = (int)c->Cog;
        g.rq.mult = d->rq.mult ? d->rq.mult + pc : NULL;
        g.rq.shift = d->rq.shift ? d->rq.shift + pc : NULL;
        g.rq.scale = d->rq.scale ? d->rq.scale + pc : NULL;
    }
    return g;
}

/* The VNNI tables when that kernel runs and every weight fits int8. */
static qk_status set_dwq4(qk_i8conv *c)
{
    int64_t kk = c->kh * c->kw;
    qk_i8_dwq4_free(&c->dq4);
    int ok = c->dw_vnni && c->Cog == 1 && kk <= QK_I8_DW_MAXTAPS &&
             (c->mode == QK_RQ_FP32 || c->mode == QK_RQ_GEMMLOWP) && (c->out_type == QK_U8 || c->out_type == QK_I8);
    for (int64_t i = 0; ok && i < c->Co * kk; i++)
        ok = c->dw_w[i] >= -128 && c->dw_w[i] <= 127;
    if (!ok)
        return QK_OK;
    return qk_i8_dwq4_build(&c->dq4, c->Co, kk, c->dw_w, c->dw_bias, c->dw_mult, c->dw_shift, c->dw_scale,
                            c->mode == QK_RQ_FP32, c->x_type == QK_I8 ? c->x_zero + 128 : c->x_zero);
}

static void set_depthwise(qk_i8conv *c, const qk_i8conv_desc *d)
{
    int64_t kk = c->kh * c->kw;
    for (int64_t co = 0; co < c->Co; co++) {
        int64_t q = d->rq.n == 1 ? 0 : co;
        if (d->w)
            for (int64_t i = 0; i < kk; i++)
                c->dw_w[co * kk + i] = w_at(d, co * kk + i) - wzero(d, co);
        c->dw_bias[co] = d->bias ? d->bias[co] : 0;
        c->dw_mult[co] = d->rq.mult && d->rq.mode != QK_RQ_FP32 ? d->rq.mult[q] : 0;
        c->dw_shift[co] = d->rq.shift && d->rq.mode != QK_RQ_FP32 ? d->rq.shift[q] : 0;
        c->dw_scale[co] = d->rq.mode == QK_RQ_FP32 ? d->rq.scale[q] : 0.0f;
    }
    if (c->dw_wt)
        for (int64_t co = 0; co < c->Co; co++)
            for (int64_t i = 0; i < kk; i++)
                c->dw_wt[i * c->Co + co] = c->dw_w[co * kk + i];
    if (c->dw_wp) /* w - w_zero is in [-255, 255]: exact in int16 */
        for (int64_t co = 0; co < c->Co; co++)
            for (int64_t i = 0; i < kk; i += 2) {
                uint32_t lo = (uint16_t)c->dw_w[co * kk + i], hi = i + 1 < kk ? (uint16_t)c->dw_w[co * kk + i + 1] : 0;
                c->dw_wp[(i / 2) * c->Co + co] = (int32_t)(lo | hi << 16);
            }
    c->mode = d->rq.mode;
    c->zo = d->rq.zero_point;
    c->qmin = d->out_type == QK_I32 ? INT32_MIN : d->rq.qmin;
    c->qmax = d->out_type == QK_I32 ? INT32_MAX : d->rq.qmax;
    c->x_zero = d->x_zero;
}

/* Implicit im2col: who qualifies (from the shapes; the row-sum condition is
 * checked at run, as zero points may change with an update). */
static int implicit_shape(const qk_i8conv *c)
{
    return c->nhwc && !c->pointwise && c->groups == 1 && c->Cg >= 16 && c->sh == 1 && c->sw == 1 && c->dh == 1 &&
           c->dw == 1;
}

/* wimp from wperm and the GEMM over it. The padding bytes are the output
 * channel's weight zero point: real weight 0, so every term of the
 * zero-point expansion over the padded K is exact, the row sums being
 * taken over all the bytes the tiles read (imp_task). */
static qk_status implicit_weights(qk_i8conv *c, const qk_i8conv_desc *d, int create)
{
    for (int64_t co = 0; co < c->Co; co++)
        for (int64_t a = 0; a < c->kh; a++) {
            uint8_t *dst = c->wimp + (co * c->kh + a) * c->KS;
            memcpy(dst, c->wperm + co * c->K + a * c->kw * c->Cg, (size_t)(c->kw * c->Cg));
            memset(dst + c->kw * c->Cg, (uint8_t)wzero(d, co), (size_t)(c->KS - c->kw * c->Cg));
        }
    qk_i8gemm_desc g = group_desc(c, d, 0);
    g.K = c->kh * c->KS;
    g.B = d->w ? c->wimp : NULL;
    g.ldb = g.K;
    return create ? qk_i8gemm_create(&g, &c->gimp) : qk_i8gemm_update(c->gimp, &g);
}

void qk_i8conv_destroy(qk_i8conv *c)
{
    if (!c)
        return;
    if (c->gm)
        for (int64_t i = 0; i < c->groups; i++)
            qk_i8gemm_destroy(c->gm[i]);
    qk_free(c->gm);
    qk_free(c->wperm);
    qk_free(c->wimp);
    qk_i8gemm_destroy(c->gimp);
    qk_free(c->dw_w);
    qk_free(c->dw_bias);
    qk_free(c->dw_wt);
    qk_free(c->dw_wp);
    qk_i8_dwq4_free(&c->dq4);
    qk_free(c);
}

qk_status qk_i8conv_create(const qk_i8conv_desc *d, qk_i8conv **out)
{
    *out = NULL;
    qk_status st = check_conv(d);
    if (st != QK_OK)
        return st;
    qk_i8conv *c = qk_calloc(1, sizeof *c);
    if (!c)
        return qk_error(QK_ERR_NOMEM, "int8 conv: out of memory");
    c->x_type = d->x_type;
    c->w_type = d->w_type;
    c->out_type = d->out_type;
    c->C = d->C;
    c->Co = d->Co;
    c->groups = d->groups;
    c->Cg = d->C / d->groups;
    c->Cog = d->Co / d->groups;
    c->kh = d->kh, c->kw = d->kw, c->sh = d->stride_h, c->sw = d->stride_w, c->dh = d->dil_h, c->dw = d->dil_w;
    c->pt = d->pad_t, c->pl = d->pad_l, c->pb = d->pad_b, c->pr = d->pad_r;
    c->K = c->Cg * c->kh * c->kw;
    c->x_zero = d->x_zero;
    c->nw_zero = d->nw_zero;
    c->rq_n = d->rq.n;
    c->depthwise = c->Cg == 1 && c->groups > 1;
    if (c->depthwise) {
        if (d->kernel >= qk_i8_kernel_count()) {
            qk_i8conv_destroy(c);
            return qk_error(QK_ERR_ARG, "int8 conv: kernel index %d", d->kernel);
        }
        const qk_i8_kernel_info *ki = qk_i8_kernel_get(d->kernel >= 0 ? d->kernel : qk_i8_kernel_for_isa(qk_cpu_isa()));
        if (!ki->test_only && !qk_cpu_isa_usable(ki->isa)) {
            qk_i8conv_destroy(c);
            return qk_error(QK_ERR_UNSUPPORTED, "int8 conv: kernel '%s' needs %s, which this CPU lacks", ki->name,
                            qk_isa_name(ki->isa));
        }
        c->dw_vec = !ki->test_only && ki->isa >= QK_ISA_AVX512;
        c->dw_vnni = !ki->test_only && ki->isa >= QK_ISA_VNNI;
        size_t co = (size_t)c->Co;
        c->dw_w = qk_calloc(co * (size_t)(c->kh * c->kw), sizeof(int32_t));
        c->dw_bias = qk_calloc(co * 4, sizeof(int32_t));
        if (c->Cog == 1) {
            c->dw_wt = qk_calloc(co * (size_t)(c->kh * c->kw), sizeof(int32_t));
            c->dw_wp = qk_calloc(co * (size_t)((c->kh * c->kw + 1) / 2), sizeof(int32_t));
        }
        if (!c->dw_w || !c->dw_bias || (c->Cog == 1 && (!c->dw_wt || !c->dw_wp))) {
            qk_i8conv_destroy(c);
            return qk_error(QK_ERR_NOMEM, "int8 conv: out of memory");
        }
        c->dw_mult = c->dw_bias + co;
        c->dw_shift = c->dw_mult + co;
        c->dw_scale = (float *)(c->dw_shift + co);
        set_depthwise(c, d);
        if ((st = set_dwq4(c)) != QK_OK) {
            qk_i8conv_destroy(c);
            return st;
        }
    } else {
        c->nhwc = c->Cg >= 8;
        c->pointwise = c->nhwc && c->kh == 1 && c->kw == 1 && c->sh == 1 && c->sw == 1 && c->pt == 0 && c->pl == 0 &&
                       c->pb == 0 && c->pr == 0;
        c->gm = qk_calloc((size_t)c->groups, sizeof *c->gm);
        if (c->nhwc)
            c->wperm = qk_malloc((size_t)(c->Co * c->K));
        if (!c->gm || (c->nhwc && !c->wperm)) {
            qk_i8conv_destroy(c);
            return qk_error(QK_ERR_NOMEM, "int8 conv: out of memory");
        }
        if (c->nhwc && d->w)
            permute_w(c, d);
        for (int64_t gi = 0; gi < c->groups; gi++) {
            qk_i8gemm_desc gd = group_desc(c, d, gi);
            if ((st = qk_i8gemm_create(&gd, &c->gm[gi])) != QK_OK) {
                qk_i8conv_destroy(c);
                return qk_error_context(st, "conv group %lld", (long long)gi);
            }
        }
        if (implicit_shape(c) && c->gm[0]->k->compute_koff) {
            c->KS = qk_i8_roundup(c->kw * c->Cg, 64);
            c->wimp = qk_malloc((size_t)(c->Co * c->kh * c->KS));
            if (!c->wimp || (st = implicit_weights(c, d, 1)) != QK_OK) {
                qk_i8conv_destroy(c);
                return st != QK_OK ? qk_error_context(st, "conv (implicit im2col)")
                                   : qk_error(QK_ERR_NOMEM, "int8 conv: out of memory");
            }
        }
    }
    *out = c;
    return QK_OK;
}

qk_status qk_i8conv_update(qk_i8conv *c, const qk_i8conv_desc *d)
{
    qk_status st = check_conv(d);
    if (st != QK_OK)
        return st;
    if (d->x_type != c->x_type || d->w_type != c->w_type || d->out_type != c->out_type || d->C != c->C ||
        d->Co != c->Co || d->groups != c->groups || d->kh != c->kh || d->kw != c->kw || d->nw_zero != c->nw_zero ||
        d->rq.n != c->rq_n)
        return qk_error(QK_ERR_ARG, "int8 conv update: types, shapes or parameter counts changed");
    c->sh = d->stride_h, c->sw = d->stride_w, c->dh = d->dil_h, c->dw = d->dil_w;
    c->pt = d->pad_t, c->pl = d->pad_l, c->pb = d->pad_b, c->pr = d->pad_r;
    c->x_zero = d->x_zero;
    if (c->depthwise) {
        set_depthwise(c, d);
        return set_dwq4(c);
    }
    c->pointwise = c->nhwc && c->kh == 1 && c->kw == 1 && c->sh == 1 && c->sw == 1 && c->pt == 0 && c->pl == 0 &&
                   c->pb == 0 && c->pr == 0;
    if (c->nhwc && d->w)
        permute_w(c, d);
    for (int64_t gi = 0; gi < c->groups; gi++) {
        qk_i8gemm_desc gd = group_desc(c, d, gi);
        if ((st = qk_i8gemm_update(c->gm[gi], &gd)) != QK_OK)
            return qk_error_context(st, "conv group %lld", (long long)gi);
    }
    if (c->gimp) {
        if (!implicit_shape(c)) { /* strides or dilations changed */
            qk_i8gemm_destroy(c->gimp);
            c->gimp = NULL;
        } else if ((st = implicit_weights(c, d, 0)) != QK_OK) {
            return qk_error_context(st, "conv (implicit im2col)");
        }
    }
    return QK_OK;
}

static int64_t conv_rows(const qk_i8conv *c) { return c->depthwise ? 0 : c->gm[0]->mb; }

/* nhwc: input rows a block of `rows` output pixels can touch. */
static int64_t nhwc_in_rows(const qk_i8conv *c, int64_t H, int64_t W)
{
    int64_t OW = qk_conv_out_dim(W, c->kw, c->sw, c->dw, c->pl, c->pr);
    if (OW < 1)
        return 0;
    int64_t span = (conv_rows(c) + OW - 1) / OW + 1, r = (span - 1) * c->sh + (c->kh - 1) * c->dh + 1;
    return r < H ? r : H;
}

static size_t nhwc_buf_bytes(const qk_i8conv *c, int64_t H, int64_t W)
{
    if (c->pointwise)
        return qk_i8_align64((size_t)(conv_rows(c) * c->Cg));
    return qk_i8_align64((size_t)(nhwc_in_rows(c, H, W) * W * c->Cg));
}

static size_t qk_i8conv_ws_bytes_explicit(const qk_i8conv *c, int64_t H, int64_t W);

/* One input channel (a first layer): the input rows a block of output
 * pixels reads, zero-point padded to Wp = W + pl + pr columns. */
static size_t c1_buf_bytes(const qk_i8conv *c, int64_t H, int64_t W)
{
    int64_t OW = qk_conv_out_dim(W, c->kw, c->sw, c->dw, c->pl, c->pr);
    if (OW < 1)
        return 0;
    (void)H;
    int64_t span = (conv_rows(c) + OW - 1) / OW + 1, rows = (span - 1) * c->sh + (c->kh - 1) * c->dh + 1;
    return qk_i8_align64((size_t)(rows * (W + c->pl + c->pr)));
}


/* Implicit im2col geometry for an H x W input: padded row width Wp, output
 * rows per task R (0: the implicit path does not apply), chunk offsets
 * per row of a task's padded buffer. */
#define IMP_MAXCHUNK 512
static int64_t imp_rows(const qk_i8conv *c, int64_t W, int64_t *Wp)
{
    *Wp = W + c->pl + c->pr;
    if (!c->gimp || c->kh * c->KS / 64 > IMP_MAXCHUNK || *Wp < c->kw)
        return 0;
    return c->gimp->mb / *Wp;
}

/* The padded rows buffer: R + kh - 1 rows of Wp pixels, and what the
 * AMX tiles read past them (rows up to a multiple of 32, the last chunk). */
static size_t imp_buf_bytes(const qk_i8conv *c, int64_t W)
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
static size_t imp_pre_bytes(const qk_i8conv *c, int64_t W)
{
    return c->gimp && c->gimp->need_rowsum ? qk_i8_align64((imp_buf_bytes(c, W) + 1) * 4) : 0;
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
    if (imp_buf_bytes(c, W)) {
        size_t e = qk_i8conv_ws_bytes_explicit(c, H, W),
               i = imp_buf_bytes(c, W) + imp_pre_bytes(c, W) + qk_i8gemm_ws_bytes(c->gimp);
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
        return plane > zrow ? plane : zrow;
    }
    size_t col = c->pointwise ? 0 : qk_i8_align64((size_t)(conv_rows(c) * c->K));
    return col + (c->nhwc ? nhwc_buf_bytes(c, H, W) : c->Cg == 1 ? c1_buf_bytes(c, H, W) : 0) +
           qk_i8gemm_ws_bytes(c->gm[0]);
}

typedef struct {
    const qk_i8conv *c;
    int64_t H, W, OH, OW, P, nblk;
    const uint8_t *x;
    uint8_t *y;
    uint8_t *ws;
    size_t ws_stride, es;
    int x_nhwc, y_nhwc;        /* qk_i8conv_run_layout */
} conv_ctx;

/* im2col rows for output pixels [p0, p0+np) of image n, group gi: row i is
 * K bytes in (c, kh, kw) order; out-of-image taps get x_zero. */
static void im2col(const conv_ctx *r, int64_t n, int64_t gi, int64_t p0, int64_t np, uint8_t *col)
{
    const qk_i8conv *c = r->c;
    uint8_t zx = (uint8_t)c->x_zero;
    const uint8_t *xg = r->x + (size_t)((n * c->C + gi * c->Cg) * r->H * r->W);
    int64_t oh = p0 / r->OW, ow = p0 % r->OW;
    for (int64_t i = 0; i < np; i++, ow = ow + 1 < r->OW ? ow + 1 : (oh++, 0)) {
        uint8_t *dst = col + i * c->K;
        int64_t ih0 = oh * c->sh - c->pt, iw0 = ow * c->sw - c->pl;
        if (ih0 >= 0 && ih0 + (c->kh - 1) * c->dh < r->H && iw0 >= 0 && iw0 + (c->kw - 1) * c->dw < r->W) {
            for (int64_t ch = 0; ch < c->Cg; ch++) /* window inside the image: no checks */
                for (int64_t a = 0; a < c->kh; a++) {
                    const uint8_t *xr = xg + ch * r->H * r->W + (ih0 + a * c->dh) * r->W + iw0;
                    for (int64_t b = 0; b < c->kw; b++)
                        *dst++ = xr[b * c->dw];
                }
            continue;
        }
        for (int64_t ch = 0; ch < c->Cg; ch++) {
            const uint8_t *xc = xg + ch * r->H * r->W;
            for (int64_t a = 0; a < c->kh; a++) {
                int64_t ih = oh * c->sh - c->pt + a * c->dh;
                if (ih < 0 || ih >= r->H) {
                    memset(dst, zx, (size_t)c->kw);
                    dst += c->kw;
                    continue;
                }
                const uint8_t *xr = xc + ih * r->W;
                for (int64_t b = 0; b < c->kw; b++) {
                    int64_t iw = ow * c->sw - c->pl + b * c->dw;
                    *dst++ = (iw >= 0 && iw < r->W) ? xr[iw] : zx;
                }
            }
        }
    }
}

/* im2col rows of output pixels [p0, p0+np) for one input channel from
 * padded rows: no bounds checks per tap. */
static void im2col_c1(const conv_ctx *r, int64_t n, int64_t p0, int64_t np, uint8_t *buf, uint8_t *col)
{
    const qk_i8conv *c = r->c;
    const int64_t W = r->W, H = r->H, Wp = W + c->pl + c->pr, K = c->K;
    const uint8_t zx = (uint8_t)c->x_zero, *x = r->x + (size_t)(n * H * W);
    int64_t oh0 = p0 / r->OW, oh1 = (p0 + np - 1) / r->OW;
    int64_t pr0 = oh0 * c->sh, pr1 = oh1 * c->sh + (c->kh - 1) * c->dh + 1; /* padded rows [pr0, pr1) */
    for (int64_t j = pr0; j < pr1; j++) {
        uint8_t *d = buf + (j - pr0) * Wp;
        int64_t ih = j - c->pt;
        if (ih < 0 || ih >= H) {
            memset(d, zx, (size_t)Wp);
            continue;
        }
        memset(d, zx, (size_t)c->pl);
        memcpy(d + c->pl, x + ih * W, (size_t)W);
        memset(d + c->pl + W, zx, (size_t)c->pr);
    }
    int64_t oh = oh0, ow = p0 % r->OW;
    for (int64_t i = 0; i < np; i++, ow = ow + 1 < r->OW ? ow + 1 : (oh++, 0)) {
        uint8_t *dst = col + i * K;
        const uint8_t *src = buf + (oh * c->sh - pr0) * Wp + ow * c->sw;
        for (int64_t a = 0; a < c->kh; a++, src += c->dh * Wp)
            for (int64_t b = 0; b < c->kw; b++)
                *dst++ = src[b * c->dw];
    }
}

/* 8x8 byte transpose of r[0..7] (r[k] byte j -> r[j] byte k), SWAR: swap
 * 1-, 2- then 4-byte blocks between rows 1, 2 then 4 apart. */
static inline void tr8x8(uint64_t r[8])
{
    for (int i = 0; i < 8; i += 2) {
        uint64_t t = ((r[i] >> 8) ^ r[i + 1]) & 0x00FF00FF00FF00FFull;
        r[i + 1] ^= t, r[i] ^= t << 8;
    }
    for (int i = 0; i < 8; i += (i & 1) ? 3 : 1) { /* pairs (0,2) (1,3) (4,6) (5,7) */
        uint64_t t = ((r[i] >> 16) ^ r[i + 2]) & 0x0000FFFF0000FFFFull;
        r[i + 2] ^= t, r[i] ^= t << 16;
    }
    for (int i = 0; i < 4; i++) {
        uint64_t t = ((r[i] >> 32) ^ r[i + 4]) & 0x00000000FFFFFFFFull;
        r[i + 4] ^= t, r[i] ^= t << 32;
    }
}

/* nhwc: transpose channels [Cg] of input pixels [pix0, pix0+npix) of image
 * n, group gi into buf[i][Cg] (a pure byte permutation). */
static void to_nhwc(const conv_ctx *r, int64_t n, int64_t gi, int64_t pix0, int64_t npix, uint8_t *buf)
{
    const qk_i8conv *c = r->c;
    const uint8_t *xg = r->x + (size_t)((n * c->C + gi * c->Cg) * r->H * r->W) + pix0;
    int64_t HW = r->H * r->W, Cg = c->Cg;
    for (int64_t c0 = 0; c0 < Cg; c0 += 8) { /* 8 channels at a time: 8 streams in, one out */
        int64_t cn = Cg - c0 < 8 ? Cg - c0 : 8;
        const uint8_t *src = xg + c0 * HW;
        uint8_t *d = buf + c0;
        int64_t i = 0;
        if (cn == 8) {
            for (; i + 8 <= npix; i += 8, d += 8 * Cg) { /* 8 pixels x 8 channels per step */
                uint64_t m[8];
                for (int k = 0; k < 8; k++)
                    memcpy(&m[k], src + k * HW + i, 8);
                tr8x8(m);
                for (int k = 0; k < 8; k++)
                    memcpy(d + k * Cg, &m[k], 8);
            }
            for (; i < npix; i++, d += Cg)
                for (int k = 0; k < 8; k++)
                    d[k] = src[k * HW + i];
        } else {
            for (; i < npix; i++, d += Cg)
                for (int64_t k = 0; k < cn; k++)
                    d[k] = src[k * HW + i];
        }
    }
}

/* memcpy of n bytes, inlined 16 at a time when n is a multiple of 16. */
static inline void copy_px(uint8_t *d, const uint8_t *s, int64_t n)
{
    if ((n & 15) == 0)
        for (int64_t k = 0; k < n; k += 16)
            memcpy(d + k, s + k, 16);
    else
        memcpy(d, s, (size_t)n);
}

static void im2col_nhwc(const conv_ctx *r, int64_t ih0, const uint8_t *buf, int64_t p0, int64_t np, uint8_t *col)
{
    const qk_i8conv *c = r->c;
    int64_t Cg = c->Cg, W = r->W;
    int zx = (uint8_t)c->x_zero;
    int64_t oh = p0 / r->OW, ow = p0 % r->OW;
    for (int64_t i = 0; i < np; i++, ow = ow + 1 < r->OW ? ow + 1 : (oh++, 0)) {
        uint8_t *dst = col + i * c->K;
        int64_t iw0 = ow * c->sw - c->pl, iwl = iw0 + (c->kw - 1) * c->dw;
        int inside = iw0 >= 0 && iwl < W && c->dw == 1; /* the kw taps are one contiguous run */
        for (int64_t a = 0; a < c->kh; a++) {
            int64_t ih = oh * c->sh - c->pt + a * c->dh;
            if (ih < 0 || ih >= r->H) {
                memset(dst, zx, (size_t)(c->kw * Cg));
                dst += c->kw * Cg;
                continue;
            }
            const uint8_t *row = buf + (ih - ih0) * W * Cg;
            if (inside) {
                copy_px(dst, row + iw0 * Cg, c->kw * Cg);
                dst += c->kw * Cg;
                continue;
            }
            for (int64_t b = 0; b < c->kw; b++, dst += Cg) {
                int64_t iw = iw0 + b * c->dw;
                if (iw >= 0 && iw < W)
                    copy_px(dst, row + iw * Cg, Cg);
                else
                    memset(dst, zx, (size_t)Cg);
            }
        }
    }
}

static void gemm_task(void *vctx, int64_t t, int worker)
{
    conv_ctx *r = vctx;
    const qk_i8conv *c = r->c;
    int64_t blk = t % r->nblk, gi = (t / r->nblk) % c->groups, n = t / r->nblk / c->groups;
    int64_t rows = conv_rows(c), p0 = blk * rows, np = r->P - p0 < rows ? r->P - p0 : rows;
    uint8_t *ws = r->ws + (size_t)worker * r->ws_stride;
    uint8_t *y;
    int64_t ldm, ldn;
    if (r->y_nhwc) { /* pixel-major: one row of Co per output pixel, stored by the epilogue directly */
        y = r->y + (size_t)((n * r->P + p0) * c->Co + gi * c->Cog) * r->es;
        ldm = c->Co, ldn = 1;
    } else {
        y = r->y + (size_t)((n * c->Co + gi * c->Cog) * r->P + p0) * r->es;
        ldm = 1, ldn = r->P;
    }
    if (c->pointwise) { /* A rows = the input pixels, transposed */
        uint8_t *buf = ws, *gws = ws + nhwc_buf_bytes(c, r->H, r->W);
        if (r->x_nhwc) { /* groups == 1: the rows are the input itself */
            qk_i8gemm_block(c->gm[gi], np, r->x + (size_t)((n * r->P + p0) * c->C), c->C, 0, c->Cog, y, ldm, ldn,
                            gws);
            return;
        }
        to_nhwc(r, n, gi, p0, np, buf);
        qk_i8gemm_block(c->gm[gi], np, buf, c->Cg, 0, c->Cog, y, ldm, ldn, gws);
        return;
    }
    uint8_t *col = ws, *gws = ws + qk_i8_align64((size_t)(rows * c->K));
    if (c->nhwc) {
        uint8_t *buf = gws;
        gws += nhwc_buf_bytes(c, r->H, r->W);
        int64_t ih0 = 0;
        if (r->x_nhwc) { /* groups == 1: the image is already [H][W][C] */
            buf = (uint8_t *)(uintptr_t)(r->x + (size_t)(n * r->H * r->W * c->C));
        } else {
            int64_t oh0 = p0 / r->OW, oh1 = (p0 + np - 1) / r->OW;
            int64_t ih1 = oh1 * c->sh - c->pt + (c->kh - 1) * c->dh + 1;
            ih0 = oh0 * c->sh - c->pt;
            ih0 = ih0 < 0 ? 0 : ih0;
            ih1 = ih1 > r->H ? r->H : ih1;
            if (ih1 > ih0)
                to_nhwc(r, n, gi, ih0 * r->W, (ih1 - ih0) * r->W, buf);
        }
        im2col_nhwc(r, ih0, buf, p0, np, col);
    } else {
        if (c->Cg == 1) { /* groups 1 here (depthwise has its own tasks); x_nhwc: the same bytes */
            uint8_t *buf = gws;
            gws += c1_buf_bytes(c, r->H, r->W);
            im2col_c1(r, n, p0, np, buf, col);
        } else {
            im2col(r, n, gi, p0, np, col);
        }
    }
    qk_i8gemm_block(c->gm[gi], np, col, c->K, 0, c->Cog, y, ldm, ldn, gws);
}

/* Implicit im2col: one task per (image, block of R output rows). The
 * input rows the block reads are copied once, zero-point padded, as NHWC
 * rows of Wp pixels; output pixel (oh, ow) of the block is flat row
 * (oh - oh0)*Wp + ow, and kernel row a's kw*Cg bytes of its im2col row are
 * the contiguous bytes at ((oh - oh0 + a)*Wp + ow)*Cg: the AMX tiles load
 * them in place (rows Cg bytes apart), the weights past kw*Cg being zero. */
static void imp_task(void *vctx, int64_t t, int worker)
{
    conv_ctx *r = vctx;
    const qk_i8conv *c = r->c;
    int64_t Wp, R = imp_rows(c, r->W, &Wp);
    int64_t n = t / r->nblk, oh0 = (t % r->nblk) * R, Rb = r->OH - oh0 < R ? r->OH - oh0 : R;
    const int64_t Cg = c->Cg, W = r->W, H = r->H, rows = Rb + c->kh - 1, nck = c->KS / 64;
    size_t bb = imp_buf_bytes(c, W);
    uint8_t *P = r->ws + (size_t)worker * r->ws_stride, *gws = P + bb + imp_pre_bytes(c, W);
    const int zx = (uint8_t)c->x_zero;
    for (int64_t j = 0; j < rows; j++) {
        int64_t ih = oh0 + j - c->pt;
        uint8_t *d = P + j * Wp * Cg;
        if (ih < 0 || ih >= H) {
            memset(d, zx, (size_t)(Wp * Cg));
            continue;
        }
        memset(d, zx, (size_t)(c->pl * Cg));
        if (r->x_nhwc)
            memcpy(d + c->pl * Cg, r->x + (size_t)((n * H + ih) * W * Cg), (size_t)(W * Cg));
        else
            to_nhwc(r, n, 0, ih * W, W, d + c->pl * Cg);
        memset(d + (c->pl + W) * Cg, zx, (size_t)(c->pr * Cg));
    }
    memset(P + rows * Wp * Cg, zx, bb - (size_t)(rows * Wp * Cg));
    int64_t koff[IMP_MAXCHUNK];
    for (int64_t a = 0; a < c->kh; a++)
        for (int64_t q = 0; q < nck; q++)
            koff[a * nck + q] = a * Wp * Cg + q * 64;
    uint8_t *y;
    int64_t ldm, ldn;
    if (r->y_nhwc) {
        y = r->y + (size_t)((n * r->P + oh0 * r->OW) * c->Co) * r->es;
        ldm = c->Co, ldn = 1;
    } else {
        y = r->y + (size_t)(n * c->Co * r->P + oh0 * r->OW) * r->es;
        ldm = 1, ldn = r->P;
    }
    int32_t rsb[QK_I8_IMP_MAXROWS], *rs = NULL;
    if (c->gimp->need_rowsum) {
        /* row f's sum: over the kh runs of KS bytes the tiles read; with
         * KS a multiple of Cg those runs are whole pixels: prefix sums of
         * per-pixel sums (SSE2 byte sums), else of the bytes */
        uint32_t *pre = (uint32_t *)(P + bb);
        const int sg = c->x_type == QK_I8;
        if (c->KS % Cg == 0 && Cg % 16 == 0) {
            const int64_t npx = (int64_t)(bb / (size_t)Cg), run = c->KS / Cg;
            const __m128i flip = _mm_set1_epi8((char)0x80), zero = _mm_setzero_si128();
            pre[0] = 0;
            for (int64_t q = 0; q < npx; q++) {
                __m128i acc = zero;
                for (int64_t k = 0; k < Cg; k += 16) {
                    __m128i v = _mm_loadu_si128((const __m128i *)(P + q * Cg + k));
                    acc = _mm_add_epi64(acc, _mm_sad_epu8(sg ? _mm_xor_si128(v, flip) : v, zero));
                }
                uint32_t sum = (uint32_t)_mm_cvtsi128_si32(acc) + (uint32_t)_mm_cvtsi128_si32(_mm_srli_si128(acc, 8));
                pre[q + 1] = pre[q] + sum - (sg ? (uint32_t)(128 * Cg) : 0u);
            }
            for (int64_t f = 0; f < Rb * Wp; f++) {
                uint32_t sum = 0;
                for (int64_t a = 0; a < c->kh && f % Wp < r->OW; a++)
                    sum += pre[f + a * Wp + run] - pre[f + a * Wp];
                rsb[f] = (int32_t)sum;
            }
        } else {
            pre[0] = 0;
            if (sg)
                for (size_t i = 0; i < bb; i++)
                    pre[i + 1] = pre[i] + (uint32_t)(int32_t)(int8_t)P[i];
            else
                for (size_t i = 0; i < bb; i++)
                    pre[i + 1] = pre[i] + P[i];
            for (int64_t f = 0; f < Rb * Wp; f++) {
                uint32_t sum = 0;
                for (int64_t a = 0; a < c->kh && f % Wp < r->OW; a++) {
                    int64_t o = (f + a * Wp) * Cg;
                    sum += pre[o + c->KS] - pre[o];
                }
                rsb[f] = (int32_t)sum;
            }
        }
        rs = rsb;
    }
    qk_i8gemm_block_rows(c->gimp, Rb, Wp, r->OW, P, Cg, koff, rs, 0, c->Co, y, ldm, ldn, gws);
}

/* Depthwise: one task per (image, output channel). The plane is
 * accumulated tap by tap over the output columns whose input column lies in
 * the image (padding is x_zero, i.e. contributes 0), then requantized in
 * one run (vectorized at the AVX-512 level and above). */
static void dw_task(void *vctx, int64_t t, int worker)
{
    conv_ctx *r = vctx;
    const qk_i8conv *c = r->c;
    int64_t n = t / c->Co, co = t % c->Co, ci = co / c->Cog;
    int64_t H = r->H, W = r->W, OW = r->OW, sw = c->sw, kw = c->kw;
    uint8_t *ws = r->ws + (size_t)worker * r->ws_stride;
    uint32_t *acc = (uint32_t *)ws;
    int64_t *lo = (int64_t *)(ws + qk_i8_align64((size_t)(r->P * 4))), *hi = lo + kw;
    const uint8_t *xc = r->x + (size_t)((n * c->C + ci) * H * W);
    const int32_t *wk = c->dw_w + co * c->kh * kw;
    int sgn = c->x_type == QK_I8;
    int32_t zx = c->x_zero;
    for (int64_t b = 0; b < kw; b++) { /* output columns whose tap b is inside the image */
        int64_t off = b * c->dw - c->pl;  /* iw = ow*sw + off */
        lo[b] = off >= 0 ? 0 : (-off + sw - 1) / sw;
        hi[b] = W - 1 - off < 0 ? -1 : (W - 1 - off) / sw;
        if (hi[b] > OW - 1)
            hi[b] = OW - 1;
    }
    qk_i8_dwplane pl = {xc, sgn, zx, c->dw_bias[co], wk, H, W, r->OH, OW, c->kh, kw, c->sh, sw, c->dh, c->dw,
                        c->pt, c->pl, lo, hi, acc};
    if (c->dw_vec)
        qk_i8_dw_plane__avx512(&pl);
    else
        qk_i8_dw_plane_ref(&pl);
    qk_i8_rowq q = {c->mode, c->out_type, c->dw_mult[co], c->dw_shift[co],
                    c->dw_shift[co] > 0 ? c->dw_shift[co] : 0, c->dw_shift[co] > 0 ? 0 : -c->dw_shift[co],
                    c->dw_scale[co], c->zo, c->qmin, c->qmax};
    uint8_t *y = r->y + (size_t)((n * c->Co + co) * r->P) * r->es;
    if (c->dw_vec)
        qk_i8_requant_row__avx512(&q, (const int32_t *)acc, r->P, y);
    else
        qk_i8_requant_row_ref(&q, (const int32_t *)acc, r->P, y);
}

/* Depthwise, NHWC in and out (multiplier 1): one task per (image, block of
 * r->nblk output rows), each pixel's channels vectorized. */
static void dw_nhwc_task(void *vctx, int64_t t, int worker)
{
    conv_ctx *r = vctx;
    const qk_i8conv *c = r->c;
    uint8_t *zrow = r->ws + (size_t)worker * r->ws_stride;
    if (c->dq4.tab)
        memset(zrow, (uint8_t)c->x_zero, (size_t)(r->W * c->C + 64));
    int64_t per = (r->OH + r->nblk - 1) / r->nblk, n = t / per, oh0 = (t % per) * r->nblk;
    int64_t oh1 = oh0 + r->nblk < r->OH ? oh0 + r->nblk : r->OH;
    for (int64_t oh = oh0; oh < oh1; oh++) {
        qk_i8_dwrow p = {r->x + (size_t)(n * r->H * r->W * c->C), c->x_type == QK_I8, c->x_zero, c->C, r->H, r->W,
                         r->OW, c->kh, c->kw, c->sw, c->dh, c->dw, c->pl, oh * c->sh - c->pt, c->dw_wt, c->dw_bias,
                         c->dw_mult, c->dw_shift, c->dw_wp, c->dw_scale, c->mode, c->out_type, c->zo, c->qmin,
                         c->qmax, r->y + (size_t)((n * r->OH + oh) * r->OW * c->Co) * r->es,
                         c->dq4.tab ? &c->dq4 : NULL, zrow};
        if (c->dw_vnni)
            qk_i8_dw_nhwc_row__vnni(&p);
        else if (c->dw_vec)
            qk_i8_dw_nhwc_row__avx512(&p);
        else
            qk_i8_dw_nhwc_row_ref(&p);
    }
}

static size_t out_es(qk_dtype t) { return t == QK_INT16 ? 2 : qk_dtype_size(t); }

qk_status qk_i8conv_run_layout(const qk_i8conv *c, int64_t N, int64_t H, int64_t W, const void *x, int x_nhwc,
                               void *y, int y_nhwc, qk_pool *pool, void *ws, size_t ws_stride)
{
    int64_t OH = qk_conv_out_dim(H, c->kh, c->sh, c->dh, c->pt, c->pb);
    int64_t OW = qk_conv_out_dim(W, c->kw, c->sw, c->dw, c->pl, c->pr);
    if (N < 0 || OH < 1 || OW < 1)
        return qk_error(QK_ERR_SHAPE, "int8 conv: kernel %lldx%lld does not fit input %lldx%lld", (long long)c->kh,
                        (long long)c->kw, (long long)H, (long long)W);
    if (!c->depthwise && !c->gm[0]->has_b)
        return qk_error(QK_ERR_STATE, "int8 conv: weights were never supplied");
    if ((x_nhwc && !qk_i8conv_nhwc_ok(c, 1)) || (y_nhwc && !qk_i8conv_nhwc_ok(c, 0)))
        return qk_error(QK_ERR_ARG, "int8 conv: NHWC %s needs groups 1 (and >= 8 or exactly 1 input channels) "
                        "or a depthwise convolution with channel multiplier 1", x_nhwc ? "input" : "output");
    if (c->depthwise && x_nhwc != y_nhwc)
        return qk_error(QK_ERR_ARG, "int8 conv: depthwise NHWC needs both input and output NHWC (x %d, y %d)",
                        x_nhwc, y_nhwc);
    size_t need = qk_i8conv_ws_bytes(c, H, W);
    if (!ws || ws_stride < need || ((uintptr_t)ws & 63) || (ws_stride & 63))
        return qk_error(QK_ERR_ARG, "int8 conv: workspace of %zu bytes per worker (64-aligned) required", need);
    conv_ctx r = {c, H, W, OH, OW, OH * OW, 0, x, y, ws, ws_stride, out_es(c->out_type), x_nhwc, y_nhwc};
    if (c->depthwise && x_nhwc) {
        /* rows per task: about 8 KiB of output each (small tasks cost more
         * in hand-out than they compute), at least 4 tasks per thread */
        int64_t row = OW * c->Co * (int64_t)r.es, nt = qk_pool_threads(pool);
        r.nblk = (8192 + row - 1) / row;
        while (r.nblk > 1 && N * ((OH + r.nblk - 1) / r.nblk) < 4 * nt)
            r.nblk--;
        if (r.nblk > OH)
            r.nblk = OH;
        qk_pool_run(pool, N * ((OH + r.nblk - 1) / r.nblk), dw_nhwc_task, &r);
    } else if (c->depthwise) {
        qk_pool_run(pool, N * c->Co, dw_task, &r);
    } else {
        int64_t Wp, R = imp_rows(c, W, &Wp);
        if (R >= 1) {
            r.nblk = (OH + R - 1) / R;
            qk_pool_run(pool, N * r.nblk, imp_task, &r);
            return QK_OK;
        }
        r.nblk = (r.P + conv_rows(c) - 1) / conv_rows(c);
        qk_pool_run(pool, N * c->groups * r.nblk, gemm_task, &r);
    }
    return QK_OK;
}

qk_status qk_i8conv_run(const qk_i8conv *c, int64_t N, int64_t H, int64_t W, const void *x, void *y, qk_pool *pool,
                        void *ws, size_t ws_stride)
{
    return qk_i8conv_run_layout(c, N, H, W, x, 0, y, 0, pool, ws, ws_stride);
}

int qk_i8conv_nhwc_ok(const qk_i8conv *c, int input)
{
    if (c->depthwise)
        return c->Cog == 1;
    if (c->groups != 1)
        return 0;
    return input ? (c->nhwc || c->C == 1) : 1;
}

qk_status qk_i8conv_ref(const qk_i8conv_desc *d, int64_t N, int64_t H, int64_t W, const void *x, void *y)
{
    qk_status st = check_conv(d);
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
                    switch ((int)d->out_type) {
                    case QK_U8: ((uint8_t *)y)[o] = (uint8_t)v; break;
                    case QK_I8: ((int8_t *)y)[o] = (int8_t)v; break;
                    case (int)QK_INT16: ((int16_t *)y)[o] = (int16_t)v; break;
                    default: ((int32_t *)y)[o] = v; break;
                    }
                }
        }
    return QK_OK;
}
