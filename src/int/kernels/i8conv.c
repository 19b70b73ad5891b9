/* int8 convolution (i8conv.h): the descriptor check, create, update and
 * destroy; the weights in the layouts the paths read. */
#include "i8conv.h"

#include <string.h>

qk_status qk_i8conv_check(const qk_i8conv_desc *d)
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

/* The VNNI tables when that kernel runs and every weight fits int8, or
 * two int8 halves (uint8 weights with a zero point: w = lo + hi, lo =
 * clamp(w, -128, 127), hi in [-127, 127]; the second half's taps read the
 * first half's input bytes). With kw <= 4 the taps are laid out as row
 * quads (the row kernel, i8gemm.h), else in order. */
static qk_status set_dwq4(qk_i8conv *c)
{
    int64_t kk = c->kh * c->kw;
    qk_i8_dwq4_free(&c->dq4);
    int ok = c->dw_vnni && c->Cog == 1 && kk <= QK_I8_DW_MAXTAPS &&
             (c->mode == QK_RQ_FP32 || c->mode == QK_RQ_GEMMLOWP) && (c->out_type == QK_U8 || c->out_type == QK_I8);
    int fits = 1, halves = 1;
    for (int64_t i = 0; ok && i < c->Co * kk; i++) {
        fits &= c->dw_w[i] >= -128 && c->dw_w[i] <= 127;
        halves &= c->dw_w[i] >= -255 && c->dw_w[i] <= 254;
    }
    const int rows = c->kw <= 4 && (fits ? 4 : 8) * c->kh <= QK_I8_DW_MAXTAPS;
    const int64_t per = rows ? 4 * c->kh : kk, kt = fits ? per : 2 * per; /* taps per half, in all */
    if (!ok || (!fits && !(halves && kt <= QK_I8_DW_MAXTAPS)))
        return QK_OK;
    int32_t *wt = qk_calloc((size_t)(c->Co * kt), sizeof *wt);
    if (!wt)
        return qk_error(QK_ERR_NOMEM, "int8 conv: out of memory");
    for (int64_t co = 0; co < c->Co; co++)
        for (int64_t a = 0; a < c->kh; a++)
            for (int64_t b = 0; b < c->kw; b++) {
                int32_t w = c->dw_w[co * kk + a * c->kw + b], lo = w < -128 ? -128 : w > 127 ? 127 : w;
                int64_t t = rows ? 4 * a + b : a * c->kw + b;
                wt[co * kt + t] = fits ? w : lo;
                if (!fits)
                    wt[co * kt + per + t] = w - lo;
            }
    int32_t zxu = c->x_type == QK_I8 ? c->x_zero + 128 : c->x_zero;
    qk_status st = qk_i8_dwq4_build(&c->dq4, c->Co, kt, wt, c->dw_bias, c->dw_mult, c->dw_shift, c->dw_scale,
                                    c->mode == QK_RQ_FP32, zxu);
    qk_free(wt);
    if (st == QK_OK && rows)
        c->dq4.rows = c->kh;
    return st;
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

/* Implicit im2col (AMX or VNNI kernels): who qualifies (from the shapes; the row-sum condition is
 * checked at run, as zero points may change with an update). A single input channel (a network's
 * first convolution on grey images) qualifies too where the kernel reads 4-byte chunks: its NCHW
 * rows are NHWC rows, and a kernel row's kw bytes padded to 4 cost little; AMX's 64-byte chunks
 * would multiply the work. */
static int implicit_shape(const qk_i8conv *c)
{
    int one = c->C == 1 && (c->kh > 1 || c->kw > 1) && c->gm && c->gm[0]->k->kalign == 4;
    return ((c->nhwc && !c->pointwise && c->Cg >= 16) || one) && c->groups == 1 && c->sh == 1 && c->sw == 1 &&
           c->dh == 1 && c->dw == 1;
}

/* wimp from wperm and the GEMM over it. The padding bytes are the output
 * channel's weight zero point: real weight 0, so every term of the
 * zero-point expansion over the padded K is exact, the row sums being
 * taken over all the bytes the tiles read (qk_i8conv_imp_task). */
static qk_status implicit_weights(qk_i8conv *c, const qk_i8conv_desc *d, int create)
{
    /* one input channel: the weights [Co][1][kh][kw] are already in (kh, kw, c) order */
    const uint8_t *src = c->wperm ? c->wperm : (const uint8_t *)d->w;
    for (int64_t co = 0; co < c->Co && src; co++)
        for (int64_t a = 0; a < c->kh; a++) {
            uint8_t *dst = c->wimp + (co * c->kh + a) * c->KS;
            memcpy(dst, src + co * c->K + a * c->kw * c->Cg, (size_t)(c->kw * c->Cg));
            memset(dst + c->kw * c->Cg, (uint8_t)wzero(d, co), (size_t)(c->KS - c->kw * c->Cg));
        }
    qk_i8gemm_desc g = group_desc(c, d, 0);
    g.K = c->kh * c->KS;
    g.B = d->w ? c->wimp : NULL;
    g.ldb = g.K;
    return create ? qk_i8gemm_create(&g, &c->gimp) : qk_i8gemm_update(c->gimp, &g);
}

/* The pixel-pair weights where that kernel applies (i8conv.h, bpair). */
static qk_status set_pairs(qk_i8conv *c)
{
    const qk_i8gemm *g = c->gimp;
    int ok = g && g->k->info.isa == QK_ISA_VNNI && !g->k->info.test_only && c->Co <= 16 && c->x_type == QK_U8 &&
             !g->b_u8 && c->Cg >= 16 && c->Cg % 4 == 0 && c->KS == c->kw * c->Cg && g->Kp > QK_I8_SMALL_K;
    if (!ok) {
        qk_aligned_free(c->bpair);
        c->bpair = NULL;
        return QK_OK;
    }
    if (!c->bpair && !(c->bpair = qk_aligned_alloc(QK_I8_PAIRS_BYTES(g))))
        return qk_error(QK_ERR_NOMEM, "int8 conv: out of memory");
    if (g->has_b)
        qk_i8_pairs_pack__vnni(g, c->bpair);
    return QK_OK;
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
    qk_aligned_free(c->bpair);
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
    qk_status st = qk_i8conv_check(d);
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
        int kidx = d->kernel >= 0 ? d->kernel : qk_i8_kernel_for_isa(qk_cpu_isa());
        const qk_i8_kernel_info *ki = qk_i8_kernel_get(kidx);
        if (!qk_i8_kernel_usable(kidx)) {
            qk_i8conv_destroy(c);
            return qk_error(QK_ERR_UNSUPPORTED, "int8 conv: kernel '%s' needs %s, which this CPU lacks", ki->name,
                            qk_isa_name(ki->isa));
        }
        c->dw_vec = !ki->test_only && ki->isa >= QK_ISA_AVX512;
        c->dw_avx2 = !ki->test_only && ki->isa >= QK_ISA_AVX2;
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
            c->KS = qk_i8_roundup(c->kw * c->Cg, c->gm[0]->k->kalign);
            c->wimp = qk_malloc((size_t)(c->Co * c->kh * c->KS));
            if (!c->wimp || (st = implicit_weights(c, d, 1)) != QK_OK) {
                qk_i8conv_destroy(c);
                return st != QK_OK ? qk_error_context(st, "conv (implicit im2col)")
                                   : qk_error(QK_ERR_NOMEM, "int8 conv: out of memory");
            }
            if (!c->gimp->k->compute_koff || c->KS % c->gimp->k->kalign) { /* its own choice of kernel differs */
                qk_i8gemm_destroy(c->gimp);
                c->gimp = NULL;
            }
            if ((st = set_pairs(c)) != QK_OK) {
                qk_i8conv_destroy(c);
                return st;
            }
        }
    }
    *out = c;
    return QK_OK;
}

qk_status qk_i8conv_update(qk_i8conv *c, const qk_i8conv_desc *d)
{
    qk_status st = qk_i8conv_check(d);
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
        if ((st = set_pairs(c)) != QK_OK)
            return st;
    }
    return QK_OK;
}
