/* NHWC depthwise int8 convolution on AVX-512 VNNI (i8gemm.h, qk_i8_dwq4).
 *
 * Four taps of one channel are interleaved byte by byte (two rounds of
 * unpacks of four 64-byte tap vectors) so that one vpdpbusd adds the four
 * products (x_t + 128*sgn) * w_t of each channel into its int32 lane.
 * Unpacks work inside 128-bit lanes, so the accumulators hold the chunk's
 * bytes in a fixed permuted order (i8gemm.h, qk_i8_dwq4); weights and output
 * parameters are stored in that order, and the final packs restore the
 * byte order. Taps outside the image read p->zrow, a run of the zero
 * point's code (x - zx = 0); the bias holds -zx * sum(w), so the sum over
 * all taps is exactly the reference's sum over the taps inside the image.
 *
 * Two ways through a row. Flat: for stride 1 the interior output pixels
 * of a row are one run of bytes O in [i0*C, (i1+1)*C) whose input for tap
 * (a, b) is the byte O + ((ih0+a*dh)*W + b*dw - pl)*C, a 1-D correlation
 * over the flattened row; chunk k's channels are (64k + q) % C, a pattern
 * of period lcm(64, C) bytes (q4->flat_n chunks). Pixel: one output pixel
 * at a time, chunks of 64 channels (q4->pix_n of them), taps by their own
 * offsets; used for the border pixels, other strides, and when the flat
 * table is absent. Weights that do not fit int8 (uint8 weights with a zero
 * point) come as two int8 halves per tap (q4->kt = 2*kh*kw): the second
 * half's taps read the first half's input bytes again. */
#include "i8gemm.h"

#include "q31__avx512.h"

#include <immintrin.h>
#include <stdint.h>

#define INLINE static inline __attribute__((always_inline))

typedef struct {
    __m512i zo, flip;
    __m512 flo, fhi;
    __m512i lo, hi, zero;
} q4_ctx;

/* 4 taps -> 4 vectors of interleaved quads (lane order of i8gemm.h, qk_i8_dwq4). */
INLINE void q4_interleave(__m512i t0, __m512i t1, __m512i t2, __m512i t3, __m512i v[4])
{
    __m512i l01 = _mm512_unpacklo_epi8(t0, t1), h01 = _mm512_unpackhi_epi8(t0, t1);
    __m512i l23 = _mm512_unpacklo_epi8(t2, t3), h23 = _mm512_unpackhi_epi8(t2, t3);
    v[0] = _mm512_unpacklo_epi16(l01, l23);
    v[1] = _mm512_unpackhi_epi16(l01, l23);
    v[2] = _mm512_unpacklo_epi16(h01, h23);
    v[3] = _mm512_unpackhi_epi16(h01, h23);
}

/* 4 taps -> their interleaved quads accumulated into c0..c3. */
#define Q4_QUAD(t0, t1, t2, t3, w)                                                                  \
    do {                                                                                            \
        __m512i v_[4];                                                                              \
        q4_interleave(t0, t1, t2, t3, v_);                                                          \
        c0 = _mm512_dpbusd_epi32(c0, v_[0], _mm512_load_si512(w));                                  \
        c1 = _mm512_dpbusd_epi32(c1, v_[1], _mm512_load_si512((w) + 64));                           \
        c2 = _mm512_dpbusd_epi32(c2, v_[2], _mm512_load_si512((w) + 128));                          \
        c3 = _mm512_dpbusd_epi32(c3, v_[3], _mm512_load_si512((w) + 192));                          \
    } while (0)

INLINE __m512i q4_load(const q4_ctx *k, int sgn, const uint8_t *p, __mmask64 mk)
{
    __m512i v = _mm512_maskz_loadu_epi8(mk, p);
    return sgn ? _mm512_xor_si512(v, k->flip) : v;
}

/* Output stage of accumulator vector j (parameters par), the arithmetic of
 * qk_i8_requant_row__avx512. */
INLINE __m512i q4_out(const q4_ctx *k, int fp32, __m512i acc, const int32_t *par, int j)
{
    if (fp32) {
        __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), _mm512_load_ps((const float *)par + 64 + 16 * j));
        f = _mm512_min_ps(_mm512_max_ps(f, k->flo), k->fhi);
        return _mm512_add_epi32(_mm512_cvtps_epi32(f), k->zo);
    }
    __m512i sh = _mm512_load_si512(par + 128 + 16 * j);
    __m512i x = _mm512_sllv_epi32(acc, _mm512_max_epi32(sh, k->zero));
    x = srdhm16(x, _mm512_load_si512(par + 64 + 16 * j));
    x = rdbpot16(x, _mm512_max_epi32(_mm512_sub_epi32(k->zero, sh), k->zero));
    return _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(x, k->lo), k->hi), k->zo);
}

/* One chunk: tap t's bytes at tb[t] + u (nq quads), table entry ch, 64
 * output bytes (mask mk) to y. */
INLINE void q4_chunk(const q4_ctx *k, int fp32, int u8out, int sgn, int64_t nq, const uint8_t *const *tb,
                     int64_t u, const uint8_t *ch, __mmask64 mk, uint8_t *y)
{
    const int32_t *par = (const int32_t *)(ch + nq * 256);
    __m512i c0 = _mm512_load_si512(par), c1 = _mm512_load_si512(par + 16), c2 = _mm512_load_si512(par + 32),
            c3 = _mm512_load_si512(par + 48);
    for (int64_t qd = 0; qd < nq; qd++) {
        const uint8_t *const *t = tb + 4 * qd;
        __m512i t0 = q4_load(k, sgn, t[0] + u, mk), t1 = q4_load(k, sgn, t[1] + u, mk);
        __m512i t2 = q4_load(k, sgn, t[2] + u, mk), t3 = q4_load(k, sgn, t[3] + u, mk);
        Q4_QUAD(t0, t1, t2, t3, ch + qd * 256);
    }
    __m512i a = _mm512_packs_epi32(q4_out(k, fp32, c0, par, 0), q4_out(k, fp32, c1, par, 1));
    __m512i b = _mm512_packs_epi32(q4_out(k, fp32, c2, par, 2), q4_out(k, fp32, c3, par, 3));
    _mm512_mask_storeu_epi8(y, mk, u8out ? _mm512_packus_epi16(a, b) : _mm512_packs_epi16(a, b));
}

INLINE __mmask64 mask_n(int64_t n) { return n >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << n) - 1); }

/* n output bytes in chunks: tap t's input at tb[t] (as advanced by the
 * chunk's offset), table entries from ch0 cycling every nph; y. */
INLINE void q4_run(const q4_ctx *k, int fp32, int u8out, int sgn, int64_t nq, const uint8_t *const *tb, int64_t n,
                   const uint8_t *ch0, int64_t stride, int64_t nph, uint8_t *y)
{
    int64_t ph = 0;
    for (int64_t u = 0; u < n; u += 64) {
        q4_chunk(k, fp32, u8out, sgn, nq, tb, u, ch0 + ph * stride, mask_n(n - u), y + u);
        if (++ph == nph)
            ph = 0;
    }
}

typedef void (*q4_run_fn)(const q4_ctx *, int64_t, const uint8_t *const *, int64_t, const uint8_t *, int64_t,
                          int64_t, uint8_t *);

/* Instances: output stage x output type x input sign, 3 quads (3x3) or any. */
#define Q4_RUN(name, fp32, u8out, sgn, nq3)                                                                     \
    static void name(const q4_ctx *k, int64_t nq, const uint8_t *const *tb, int64_t n, const uint8_t *ch0,      \
                     int64_t stride, int64_t nph, uint8_t *y)                                                   \
    {                                                                                                           \
        q4_run(k, fp32, u8out, sgn, nq3 ? 3 : nq, tb, n, ch0, stride, nph, y);                                  \
    }
Q4_RUN(run_fu0_3, 1, 1, 0, 1) Q4_RUN(run_fu1_3, 1, 1, 1, 1) Q4_RUN(run_fs0_3, 1, 0, 0, 1) Q4_RUN(run_fs1_3, 1, 0, 1, 1)
Q4_RUN(run_qu0_3, 0, 1, 0, 1) Q4_RUN(run_qu1_3, 0, 1, 1, 1) Q4_RUN(run_qs0_3, 0, 0, 0, 1) Q4_RUN(run_qs1_3, 0, 0, 1, 1)
Q4_RUN(run_fu0_n, 1, 1, 0, 0) Q4_RUN(run_fu1_n, 1, 1, 1, 0) Q4_RUN(run_fs0_n, 1, 0, 0, 0) Q4_RUN(run_fs1_n, 1, 0, 1, 0)
Q4_RUN(run_qu0_n, 0, 1, 0, 0) Q4_RUN(run_qu1_n, 0, 1, 1, 0) Q4_RUN(run_qs0_n, 0, 0, 0, 0) Q4_RUN(run_qs1_n, 0, 0, 1, 0)

static const q4_run_fn runs[16] = { run_fu0_3, run_fu1_3, run_fs0_3, run_fs1_3, run_qu0_3, run_qu1_3, run_qs0_3,
                                    run_qs1_3, run_fu0_n, run_fu1_n, run_fs0_n, run_fs1_n, run_qu0_n, run_qu1_n,
                                    run_qs0_n, run_qs1_n };

static q4_ctx q4_setup(const qk_i8_dwrow *p)
{
    q4_ctx k;
    k.flip = _mm512_set1_epi8((char)0x80);
    k.zo = _mm512_set1_epi32(p->zo);
    k.zero = _mm512_setzero_si512();
    k.lo = _mm512_set1_epi32(p->qmin - p->zo);
    k.hi = _mm512_set1_epi32(p->qmax - p->zo);
    k.flo = _mm512_set1_ps((float)(p->qmin - p->zo));
    k.fhi = _mm512_set1_ps((float)(p->qmax - p->zo));
    return k;
}

void qk_i8_dw_nhwc_row__vnni(const qk_i8_dwrow *p)
{
    const qk_i8_dwq4 *q4 = p->q4;
    if (!q4 || !p->zrow || (p->mode != QK_RQ_GEMMLOWP && p->mode != QK_RQ_FP32) ||
        (p->out_type != QK_U8 && p->out_type != QK_I8)) {
        qk_i8_dw_nhwc_row__avx512(p);
        return;
    }
    int fp32 = p->mode == QK_RQ_FP32, u8out = p->out_type == QK_U8;
    q4_ctx k = q4_setup(p);
    const int64_t C = p->C, nq = q4->nq, kk = p->kh * p->kw, kt = q4->kt, W = p->W;
    q4_run_fn run = runs[(nq == 3 ? 0 : 8) + (fp32 ? 0 : 4) + (u8out ? 0 : 2) + (p->sgn ? 1 : 0)];
    int64_t tr[QK_I8_DW_MAXTAPS], tc[QK_I8_DW_MAXTAPS];
    const uint8_t *tb[QK_I8_DW_MAXTAPS];
    for (int64_t t = 0; t < 4 * nq; t++) { /* table tap t reads kernel tap t % kk (split weights: twice) */
        int64_t a = (t % kk) / p->kw, ih = p->ih0 + a * p->dh;
        tr[t] = t < kt && ih >= 0 && ih < p->H ? ih : -1;
        tc[t] = ((t % kk) % p->kw) * p->dw - p->pl;
    }
    /* the interior pixels [i0, i1]: every tap's column inside the image */
    int64_t i0 = p->pl, i1 = W - 1 + p->pl - (p->kw - 1) * p->dw;
    if (i1 > p->OW - 1)
        i1 = p->OW - 1;
    int flat = p->sw == 1 && q4->flat_n && i1 >= i0;
    const uint8_t *pix = q4->tab + q4->flat_n * q4->stride;
    for (int64_t ow = 0; ow < p->OW; ow++) {
        if (flat && ow == i0) { /* the interior as one run */
            for (int64_t t = 0; t < 4 * nq; t++)
                tb[t] = tr[t] >= 0 ? p->x + (tr[t] * W + i0 + tc[t]) * C : p->zrow;
            run(&k, nq, tb, (i1 + 1 - i0) * C, q4->tab, q4->stride, q4->flat_n, (uint8_t *)p->y + i0 * C);
            ow = i1;
            continue;
        }
        int64_t iw0 = ow * p->sw;
        for (int64_t t = 0; t < 4 * nq; t++) {
            int64_t iw = iw0 + tc[t];
            tb[t] = tr[t] >= 0 && iw >= 0 && iw < W ? p->x + (tr[t] * W + iw) * C : p->zrow;
        }
        run(&k, nq, tb, C, pix, q4->stride, q4->pix_n, (uint8_t *)p->y + ow * C);
    }
}

/* ---- row quads (q4->rows = kh, kw <= 4) ----
 * A row's output chunks in the order of the row kernel above: flat (the
 * interior as one run of bytes, stride 1) and pixel chunks. For each chunk
 * s and kernel column b, the input bytes' offset in an input row (-1: the
 * zero-point row), the table entry, the output offset and the mask. The
 * quads of input row j and chunk s (Q4_QUAD's four unpacked vectors of
 * taps b = 0..3) are 256 bytes at x4 + ((j % R)*nsq + s)*256, a ring of
 * the R = (kh - 1)*dh + 1 input rows an output row reads: output row i's
 * kernel row a reads input row j = i*sh + a*dh of the block, each input
 * row built once. */
typedef struct {
    int64_t off[4], yo;
    const uint8_t *tab;
    __mmask64 mk;
} rq_chunk;

static int64_t rq_nsq_max(int64_t C, int64_t OW) { return OW * ((C + 63) / 64) + (OW * C + 63) / 64; }

size_t qk_i8_dw_rows_bytes(int64_t C, int64_t OW, int64_t nin)
{
    int64_t n = rq_nsq_max(C, OW);
    return qk_i8_align64((size_t)n * sizeof(rq_chunk)) + (size_t)(nin * n) * 256;
}

static int64_t rq_chunks(const qk_i8_dwrow *p, rq_chunk *sq)
{
    const qk_i8_dwq4 *q4 = p->q4;
    const int64_t C = p->C, W = p->W, OW = p->OW;
    int64_t i0 = p->pl, i1 = W - 1 + p->pl - (p->kw - 1) * p->dw, n = 0;
    if (i1 > OW - 1)
        i1 = OW - 1;
    const int flat = p->sw == 1 && q4->flat_n && i1 >= i0;
    const uint8_t *pix = q4->tab + q4->flat_n * q4->stride;
    for (int64_t ow = 0; ow < OW; ow++) {
        if (flat && ow == i0) {
            int64_t len = (i1 + 1 - i0) * C;
            for (int64_t u = 0, ph = 0; u < len; u += 64, ph = ph + 1 == q4->flat_n ? 0 : ph + 1, n++) {
                for (int b = 0; b < 4; b++) {
                    int64_t bb = b < p->kw ? b : p->kw - 1; /* zero weights past kw: any bytes */
                    sq[n].off[b] = (i0 + bb * p->dw - p->pl) * C + u;
                }
                sq[n].yo = i0 * C + u;
                sq[n].tab = q4->tab + ph * q4->stride;
                sq[n].mk = mask_n(len - u);
            }
            ow = i1;
            continue;
        }
        for (int64_t kc = 0; kc < q4->pix_n; kc++, n++) {
            for (int b = 0; b < 4; b++) {
                int64_t iw = ow * p->sw - p->pl + (b < p->kw ? b : p->kw - 1) * p->dw;
                sq[n].off[b] = iw >= 0 && iw < W ? iw * C + 64 * kc : -1;
            }
            sq[n].yo = ow * C + 64 * kc;
            sq[n].tab = pix + kc * q4->stride;
            sq[n].mk = mask_n(C - 64 * kc);
        }
    }
    return n;
}

/* The quads of one input row (NULL: outside the image, all taps the zero point). */
INLINE void rq_build(const q4_ctx *k, int sgn, const uint8_t *row, const uint8_t *zrow, const rq_chunk *sq,
                     int64_t nsq, uint8_t *dst)
{
    for (int64_t s = 0; s < nsq; s++, dst += 256) {
        const rq_chunk *q = &sq[s];
#define RQ_TAP(b) q4_load(k, sgn, row && q->off[b] >= 0 ? row + q->off[b] : zrow, q->mk)
        __m512i t0 = RQ_TAP(0), t1 = RQ_TAP(1), t2 = RQ_TAP(2), t3 = RQ_TAP(3);
#undef RQ_TAP
        __m512i v[4];
        q4_interleave(t0, t1, t2, t3, v);
        for (int j = 0; j < 4; j++)
            _mm512_store_si512(dst + 64 * j, v[j]);
    }
}

INLINE void rq_rows(const qk_i8_dwrow *p, int fp32, int u8out, int sgn)
{
    const qk_i8_dwq4 *q4 = p->q4;
    const q4_ctx k = q4_setup(p);
    const int64_t C = p->C, W = p->W, kh = q4->rows, nq = q4->nq;
    rq_chunk *sq = (rq_chunk *)p->x4;
    const int64_t nsq = rq_chunks(p, sq);
    uint8_t *x4 = p->x4 + qk_i8_align64((size_t)rq_nsq_max(C, p->OW) * sizeof(rq_chunk));
    const int64_t R = (kh - 1) * p->dh + 1; /* a ring of the input rows one output row reads */
    int64_t arow[2 * QK_I8_DW_MAXTAPS / 4], built = 0;
    for (int64_t qd = 0; qd < nq; qd++)
        arow[qd] = (qd % kh) * p->dh;
    for (int64_t i = 0; i < p->nrows; i++) {
        for (int64_t j = built > i * p->sh ? built : i * p->sh; j <= i * p->sh + R - 1; j++) {
            int64_t ih = p->ih0 + j;
            rq_build(&k, sgn, ih >= 0 && ih < p->H ? p->x + ih * W * C : NULL, p->zrow, sq, nsq,
                     x4 + (j % R) * nsq * 256);
        }
        built = i * p->sh + R;
        const uint8_t *slot[2 * QK_I8_DW_MAXTAPS / 4]; /* quad qd's input row in the ring */
        for (int64_t qd = 0; qd < nq; qd++)
            slot[qd] = x4 + ((i * p->sh + arow[qd]) % R) * nsq * 256;
        uint8_t *y = (uint8_t *)p->y + i * p->OW * C;
        for (int64_t s = 0; s < nsq; s++) {
            const rq_chunk *q = &sq[s];
            const int32_t *par = (const int32_t *)(q->tab + nq * 256);
            __m512i c0 = _mm512_load_si512(par), c1 = _mm512_load_si512(par + 16), c2 = _mm512_load_si512(par + 32),
                    c3 = _mm512_load_si512(par + 48);
            for (int64_t qd = 0; qd < nq; qd++) {
                const uint8_t *xq = slot[qd] + s * 256, *w = q->tab + qd * 256;
                c0 = _mm512_dpbusd_epi32(c0, _mm512_load_si512(xq), _mm512_load_si512(w));
                c1 = _mm512_dpbusd_epi32(c1, _mm512_load_si512(xq + 64), _mm512_load_si512(w + 64));
                c2 = _mm512_dpbusd_epi32(c2, _mm512_load_si512(xq + 128), _mm512_load_si512(w + 128));
                c3 = _mm512_dpbusd_epi32(c3, _mm512_load_si512(xq + 192), _mm512_load_si512(w + 192));
            }
            __m512i a = _mm512_packs_epi32(q4_out(&k, fp32, c0, par, 0), q4_out(&k, fp32, c1, par, 1));
            __m512i b = _mm512_packs_epi32(q4_out(&k, fp32, c2, par, 2), q4_out(&k, fp32, c3, par, 3));
            _mm512_mask_storeu_epi8(y + q->yo, q->mk, u8out ? _mm512_packus_epi16(a, b) : _mm512_packs_epi16(a, b));
        }
    }
}

#define RQ_FN(name, fp32, u8out, sgn) \
    static void name(const qk_i8_dwrow *p) { rq_rows(p, fp32, u8out, sgn); }
RQ_FN(rq_fu0, 1, 1, 0) RQ_FN(rq_fu1, 1, 1, 1) RQ_FN(rq_fs0, 1, 0, 0) RQ_FN(rq_fs1, 1, 0, 1)
RQ_FN(rq_qu0, 0, 1, 0) RQ_FN(rq_qu1, 0, 1, 1) RQ_FN(rq_qs0, 0, 0, 0) RQ_FN(rq_qs1, 0, 0, 1)
static void (*const rq_fns[8])(const qk_i8_dwrow *) = { rq_fu0, rq_fu1, rq_fs0, rq_fs1,
                                                         rq_qu0, rq_qu1, rq_qs0, rq_qs1 };

void qk_i8_dw_nhwc_rows__vnni(const qk_i8_dwrow *p)
{
    const qk_i8_dwq4 *q4 = p->q4;
    if (!q4 || !q4->rows || !p->zrow || !p->x4 || (p->mode != QK_RQ_GEMMLOWP && p->mode != QK_RQ_FP32) ||
        (p->out_type != QK_U8 && p->out_type != QK_I8)) { /* not a row-quad table: the row kernels */
        qk_i8_dwrow r = *p;
        const size_t row = (size_t)(p->OW * p->C) * qk_dtype_size(p->out_type);
        for (int64_t i = 0; i < p->nrows; i++, r.ih0 += p->sh, r.y = (uint8_t *)r.y + row)
            (q4 && !q4->rows ? qk_i8_dw_nhwc_row__vnni : qk_i8_dw_nhwc_row__avx512)(&r);
        return;
    }
    rq_fns[(p->mode == QK_RQ_FP32 ? 0 : 4) + (p->out_type == QK_U8 ? 0 : 2) + (p->sgn ? 1 : 0)](p);
}
