/* int8 GEMM kernel for AVX-512 F/BW/VL/DQ without VNNI, plus the AVX-512
 * row sums and output stage shared by the vnni and amx kernels (their
 * levels include AVX-512). Called only when qk_cpu_isa_usable(QK_ISA_AVX512).
 *
 * Same arithmetic as the AVX2 kernel: operands widened to int16, vpmaddwd
 * (exact). Packed B: int16 pairs [panel of 32 columns][Kp/2][32][2]; A rows
 * widened to int16 and packed in the worker's scratch. Micro-tile 12 x 32. */
#include "i8gemm.h"

#include "epi__avx512.h"

#include <immintrin.h>
#include <string.h>

#define MR 12
#define NR 32

#define PACK_SUFFIX avx512
#include "i8gemm_pack_i16_body.h"

#define ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define DECL(r) __m512i c##r##0 = _mm512_setzero_si512(), c##r##1 = _mm512_setzero_si512();
#define STEP(r)                                                                                      \
    av = _mm512_set1_epi32(ap[r]);                                                                   \
    c##r##0 = _mm512_add_epi32(c##r##0, _mm512_madd_epi16(av, b0));                                  \
    c##r##1 = _mm512_add_epi32(c##r##1, _mm512_madd_epi16(av, b1));
#define STORE(r)                                                                                     \
    if (r < mr) {                                                                                    \
        _mm512_storeu_si512(c + r * ldc, c##r##0);                                                   \
        _mm512_storeu_si512(c + r * ldc + 16, c##r##1);                                              \
    }

static void tile(int64_t K2, const int32_t *ap, const int16_t *bp, int32_t *c, int64_t ldc, int mr)
{
    ROWS(DECL)
    for (int64_t kk = 0; kk < K2; kk++, ap += MR, bp += 2 * NR) {
        __m512i b0 = _mm512_loadu_si512(bp), b1 = _mm512_loadu_si512(bp + 32);
        __m512i av;
        ROWS(STEP)
    }
    ROWS(STORE)
}

void qk_i8_gemm__avx512(const qk_i8gemm *g, int64_t mb, const void *Ap, int64_t ldap, int64_t n0, int64_t nbp,
                        int32_t *acc, int64_t ldacc, void *kws)
{
    (void)kws;
    int64_t K2 = g->Kp / 2;
    for (int64_t j = 0; j < nbp; j += NR) {
        const int16_t *bp = (const int16_t *)g->bpack + ((n0 + j) / NR) * K2 * NR * 2;
        for (int64_t m = 0; m < mb; m += MR) {
            int mr = mb - m < MR ? (int)(mb - m) : MR;
            tile(K2, (const int32_t *)Ap + (m / MR) * ldap, bp, acc + m * ldacc + j, ldacc, mr);
        }
    }
}

void qk_i8_rowsum__avx512(const qk_i8gemm *g, int64_t mb, const void *A, int64_t lda, int32_t *rs)
{
    int sgn = g->a_type == QK_I8;
    __m512i flip = _mm512_set1_epi8(sgn ? (char)0x80 : 0), z = _mm512_setzero_si512();
    for (int64_t m = 0; m < mb; m++) {
        const uint8_t *a = (const uint8_t *)A + m * lda;
        __m512i s = z;
        int64_t k = 0;
        for (; k + 64 <= g->K; k += 64)
            s = _mm512_add_epi64(s, _mm512_sad_epu8(_mm512_xor_si512(_mm512_loadu_si512(a + k), flip), z));
        if (k < g->K) { /* tail: flip, then zero the bytes past K */
            __mmask64 mk = (__mmask64)((UINT64_C(1) << (g->K - k)) - 1);
            __m512i v = _mm512_maskz_mov_epi8(mk, _mm512_xor_si512(_mm512_maskz_loadu_epi8(mk, a + k), flip));
            s = _mm512_add_epi64(s, _mm512_sad_epu8(v, z));
        }
        uint32_t sum = (uint32_t)_mm512_reduce_add_epi64(s) - (sgn ? (uint32_t)(128 * g->K) : 0);
        rs[m] = (int32_t)sum;
    }
}

/* ---- output stage, 16 columns at a time (masked tail) ---- */


/* One accumulator vector through the output stage (rs: with row sums,
 * the same wrapping int32 operations as the general loop). */
QK_EPI_INLINE __m512i epi_one(const qk_epi16 *c, int fp, const int32_t *a, const int32_t *rs, int32_t r,
                              const qk_epi_k *k)
{
    __m512i t = _mm512_maskz_loadu_epi32(c->mk, a);
    if (rs)
        t = _mm512_sub_epi32(t, _mm512_mullo_epi32(c->rc, _mm512_set1_epi32(r)));
    return qk_epi16_stage(c, fp, _mm512_add_epi32(t, c->cc), k);
}

/* The epilogue's common case, int8/uint8 output: groups of 64 columns
 * outside, rows inside, so a group's parameters stay in registers down the
 * rows; each row's 64 results packed to bytes (exact: they are clamped to
 * the output type) and stored at once (epi__avx512.h). Rows of columns
 * [n, n + w), w <= 16 * nv, the instances below taking nv constant. */
QK_EPI_INLINE void epi_bytes_run(const qk_i8gemm *g, int fp, int nv, int64_t mb, int64_t n, int64_t w,
                                const int32_t *acc, int64_t ldacc, const int32_t *rs, uint8_t *out, int64_t ldo)
{
    const qk_epi_k k = qk_epi_consts(g);
    const int u8 = g->out_type == QK_U8;
    const __mmask64 mst = w == 64 ? ~(__mmask64)0 : (((__mmask64)1 << w) - 1);
    const qk_epi16 c0 = qk_epi16_load(g, n, w, fp);
    const qk_epi16 c1 = nv > 1 ? qk_epi16_load(g, n + 16, w - 16, fp) : c0;
    const qk_epi16 c2 = nv > 2 ? qk_epi16_load(g, n + 32, w - 32, fp) : c0;
    const qk_epi16 c3 = nv > 3 ? qk_epi16_load(g, n + 48, w - 48, fp) : c0;
    const __m512i z = _mm512_setzero_si512();
    for (int64_t m = 0; m < mb; m++) {
        const int32_t *a = acc + m * ldacc;
        const int32_t r = rs ? rs[m] : 0;
        __m512i y0 = epi_one(&c0, fp, a, rs, r, &k);
        __m512i y1 = nv > 1 ? epi_one(&c1, fp, a + 16, rs, r, &k) : z;
        __m512i y2 = nv > 2 ? epi_one(&c2, fp, a + 32, rs, r, &k) : z;
        __m512i y3 = nv > 3 ? epi_one(&c3, fp, a + 48, rs, r, &k) : z;
        if (nv == 1) /* one vector: a plain narrowing store */
            _mm512_mask_cvtepi32_storeu_epi8(out + m * ldo, c0.mk, y0);
        else
            _mm512_mask_storeu_epi8(out + m * ldo, mst, qk_epi_pack64(y0, y1, y2, y3, u8));
    }
}

#define EPI_BYTES(name, fp)                                                                                   \
    static void name(const qk_i8gemm *g, int64_t mb, int64_t n0, int64_t nb, const int32_t *acc,            \
                     int64_t ldacc, const int32_t *rs, void *out, int64_t ldo)                              \
    {                                                                                                        \
        for (int64_t j0 = 0; j0 < nb; j0 += 64) {                                                            \
            int64_t w = nb - j0 < 64 ? nb - j0 : 64;                                                         \
            uint8_t *o = (uint8_t *)out + j0;                                                                \
            const int32_t *a = acc + j0;                                                                     \
            switch ((w + 15) / 16) {                                                                         \
            case 1: epi_bytes_run(g, fp, 1, mb, n0 + j0, w, a, ldacc, rs, o, ldo); break;                    \
            case 2: epi_bytes_run(g, fp, 2, mb, n0 + j0, w, a, ldacc, rs, o, ldo); break;                    \
            case 3: epi_bytes_run(g, fp, 3, mb, n0 + j0, w, a, ldacc, rs, o, ldo); break;                    \
            default: epi_bytes_run(g, fp, 4, mb, n0 + j0, w, a, ldacc, rs, o, ldo); break;                   \
            }                                                                                                \
        }                                                                                                    \
    }
EPI_BYTES(epi_bytes_fp32, 1)
EPI_BYTES(epi_bytes_q31, 0)

void qk_i8_epilogue__avx512(const qk_i8gemm *g, int64_t mb, int64_t n0, int64_t nb, const int32_t *acc,
                            int64_t ldacc, const int32_t *rs, void *out, int64_t ldo)
{
    if (g->mode != QK_RQ_NONE && g->mode != QK_RQ_GEMMLOWP && g->mode != QK_RQ_FP32) {
        qk_i8_epilogue_ref(g, mb, n0, nb, acc, ldacc, rs, out, ldo);
        return;
    }
    const __m512i zo = _mm512_set1_epi32(g->zo);
    const __m512i lo = _mm512_set1_epi32(g->qmin - g->zo), hi = _mm512_set1_epi32(g->qmax - g->zo);
    const __m512 flo = _mm512_set1_ps((float)(g->qmin - g->zo)), fhi = _mm512_set1_ps((float)(g->qmax - g->zo));
    if (!rs && nb <= 64 && g->mode == QK_RQ_NONE && g->out_type == QK_I32) { /* (<= 4 blocks in registers) */
        /* int32 sums for a float stage after the conv (e.g. a residual Add) */
        const int nv = (int)((nb + 15) / 16);
        __m512i cc[4];
        __mmask16 mk[4];
        for (int v = 0; v < nv; v++) {
            mk[v] = nb - 16 * v >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (nb - 16 * v)) - 1);
            cc[v] = _mm512_loadu_si512(g->colconst + n0 + 16 * v);
        }
        for (int64_t m = 0; m < mb; m++)
            for (int v = 0; v < nv; v++)
                _mm512_mask_storeu_epi32((int32_t *)out + m * ldo + 16 * v, mk[v],
                                         _mm512_add_epi32(_mm512_maskz_loadu_epi32(mk[v], acc + m * ldacc + 16 * v),
                                                          cc[v]));
        return;
    }
    if ((g->out_type == QK_U8 || g->out_type == QK_I8) && (g->mode == QK_RQ_FP32 || g->mode == QK_RQ_GEMMLOWP)) {
        (g->mode == QK_RQ_FP32 ? epi_bytes_fp32 : epi_bytes_q31)(g, mb, n0, nb, acc, ldacc, rs, out, ldo);
        return;
    }
    for (int64_t m = 0; m < mb; m++) {
        __m512i r = _mm512_set1_epi32(rs ? rs[m] : 0);
        for (int64_t j = 0; j < nb; j += 16) {
            int64_t n = n0 + j;
            __mmask16 mk = nb - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (nb - j)) - 1);
            /* columns up to Np are readable (padded), the tile row up to nb rounded to 16 */
            __m512i t = _mm512_maskz_loadu_epi32(mk, acc + m * ldacc + j);
            if (rs)
                t = _mm512_sub_epi32(t, _mm512_mullo_epi32(_mm512_loadu_si512(g->rowcoef + n), r));
            t = _mm512_add_epi32(t, _mm512_loadu_si512(g->colconst + n));
            __m512i y;
            if (g->mode == QK_RQ_NONE) {
                y = t;
            } else if (g->mode == QK_RQ_FP32) {
                __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(t), _mm512_loadu_ps(g->scale + n));
                f = _mm512_min_ps(_mm512_max_ps(f, flo), fhi);
                y = _mm512_add_epi32(_mm512_cvtps_epi32(f), zo);
            } else {
                __m512i x = _mm512_sllv_epi32(t, _mm512_loadu_si512(g->lsh + n));
                x = srdhm16(x, _mm512_loadu_si512(g->mult + n));
                x = rdbpot16(x, _mm512_loadu_si512(g->rsh + n));
                x = _mm512_min_epi32(_mm512_max_epi32(x, lo), hi);
                y = _mm512_add_epi32(x, zo);
            }
            switch (g->out_type) {
            case QK_U8:
            case QK_I8: _mm512_mask_cvtepi32_storeu_epi8((uint8_t *)out + m * ldo + j, mk, y); break;
            case QK_I16: _mm512_mask_cvtepi32_storeu_epi16((int16_t *)out + m * ldo + j, mk, y); break;
            default: _mm512_mask_storeu_epi32((int32_t *)out + m * ldo + j, mk, y); break;
            }
        }
    }
}

void qk_i8_requant_row__avx512(const qk_i8_rowq *q, const int32_t *acc, int64_t n, void *out)
{
    if (q->mode != QK_RQ_NONE && q->mode != QK_RQ_GEMMLOWP && q->mode != QK_RQ_FP32) {
        qk_i8_requant_row_ref(q, acc, n, out);
        return;
    }
    const __m512i zo = _mm512_set1_epi32(q->zo), lo = _mm512_set1_epi32(q->qmin - q->zo),
                  hi = _mm512_set1_epi32(q->qmax - q->zo);
    const __m512 flo = _mm512_set1_ps((float)(q->qmin - q->zo)), fhi = _mm512_set1_ps((float)(q->qmax - q->zo));
    const __m512 sc = _mm512_set1_ps(q->scale);
    const __m512i mult = _mm512_set1_epi32(q->mult), lsh = _mm512_set1_epi32(q->lsh), rsh = _mm512_set1_epi32(q->rsh);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 mk = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512i t = _mm512_maskz_loadu_epi32(mk, acc + i), y;
        if (q->mode == QK_RQ_NONE) {
            y = t;
        } else if (q->mode == QK_RQ_FP32) {
            __m512 f = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(t), sc), flo), fhi);
            y = _mm512_add_epi32(_mm512_cvtps_epi32(f), zo);
        } else {
            __m512i x = rdbpot16(srdhm16(_mm512_sllv_epi32(t, lsh), mult), rsh);
            y = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(x, lo), hi), zo);
        }
        switch (q->out_type) {
        case QK_U8:
        case QK_I8: _mm512_mask_cvtepi32_storeu_epi8((uint8_t *)out + i, mk, y); break;
        case QK_I16: _mm512_mask_cvtepi32_storeu_epi16((int16_t *)out + i, mk, y); break;
        default: _mm512_mask_storeu_epi32((int32_t *)out + i, mk, y); break;
        }
    }
}

void qk_i8_dw_plane__avx512(const qk_i8_dwplane *p)
{
    const __m512i z = _mm512_set1_epi32(p->zx);
    int64_t OW = p->OW, sw = p->sw;
    for (int64_t i = 0; i < p->OH * OW; i++)
        p->acc[i] = (uint32_t)p->bias;
    for (int64_t oh = 0; oh < p->OH; oh++) {
        uint32_t *ar = p->acc + oh * OW;
        for (int64_t a = 0; a < p->kh; a++) {
            int64_t ih = oh * p->sh - p->pt + a * p->dh;
            if (ih < 0 || ih >= p->H)
                continue;
            const uint8_t *xr = p->x + ih * p->W;
            for (int64_t b = 0; b < p->kw; b++) {
                int64_t l = p->lo[b], h = p->hi[b];
                const uint8_t *xp = xr + b * p->dw - p->pl;
                uint32_t w = (uint32_t)p->w[a * p->kw + b];
                if (sw != 1) {
                    for (int64_t ow = l; ow <= h; ow++)
                        ar[ow] += w * (uint32_t)((p->sgn ? (int32_t)(int8_t)xp[ow * sw] : (int32_t)xp[ow * sw]) - p->zx);
                    continue;
                }
                const __m512i wv = _mm512_set1_epi32((int32_t)w);
                for (int64_t i = l; i <= h; i += 16) {
                    __mmask16 mk = h + 1 - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (h + 1 - i)) - 1);
                    __m128i xb = _mm_maskz_loadu_epi8(mk, xp + i);
                    __m512i xv = p->sgn ? _mm512_cvtepi8_epi32(xb) : _mm512_cvtepu8_epi32(xb);
                    __m512i acc = _mm512_maskz_loadu_epi32(mk, ar + i);
                    acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(wv, _mm512_sub_epi32(xv, z)));
                    _mm512_mask_storeu_epi32(ar + i, mk, acc);
                }
            }
        }
    }
}

/* NHWC depthwise row (i8gemm.h): 16 channels per vector; the taps of one
 * output pixel accumulated in a register two at a time ((x - zx) and
 * (w - zw) lie in [-255, 255], so int16 pairs and vpmaddwd are exact);
 * taps outside the image contribute 0 (as the reference skips them); then
 * the per-channel output stage (the same vector arithmetic as the GEMM
 * epilogue above). */
void qk_i8_dw_nhwc_row__avx512(const qk_i8_dwrow *p)
{
    if ((p->mode != QK_RQ_NONE && p->mode != QK_RQ_GEMMLOWP && p->mode != QK_RQ_FP32) ||
        p->kh * p->kw > QK_I8_DW_MAXTAPS) {
        qk_i8_dw_nhwc_row_ref(p);
        return;
    }
    const int64_t C = p->C;
    const __m512i z = _mm512_set1_epi32(p->zx), zo = _mm512_set1_epi32(p->zo), zero = _mm512_setzero_si512();
    const __m512i lo = _mm512_set1_epi32(p->qmin - p->zo), hi = _mm512_set1_epi32(p->qmax - p->zo);
    const __m512 flo = _mm512_set1_ps((float)(p->qmin - p->zo)), fhi = _mm512_set1_ps((float)(p->qmax - p->zo));
    size_t es = qk_dtype_size(p->out_type);
    const int64_t np = (p->kh * p->kw + 1) / 2;
    int64_t off[QK_I8_DW_MAXTAPS + 1];
    for (int64_t ow = 0; ow < p->OW; ow++) {
        uint8_t *yo = (uint8_t *)p->y + (size_t)(ow * C) * es;
        qk_i8_dw_tap_offsets(p, ow, off);
        for (int64_t c0 = 0; c0 < C; c0 += 16) {
            __mmask16 mk = C - c0 >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (C - c0)) - 1);
            __m512i t = _mm512_maskz_loadu_epi32(mk, p->bias + c0);
            const uint8_t *xc = p->x + c0;
            for (int64_t i = 0; i < np; i++) { /* taps 2i, 2i+1: (x - zx) as int16 pairs, vpmaddwd (exact) */
                int64_t o0 = off[2 * i], o1 = off[2 * i + 1];
                __m512i d0 = zero, d1 = zero;
                if (o0 >= 0) {
                    __m128i xb = _mm_maskz_loadu_epi8(mk, xc + o0);
                    d0 = _mm512_sub_epi32(p->sgn ? _mm512_cvtepi8_epi32(xb) : _mm512_cvtepu8_epi32(xb), z);
                }
                if (o1 >= 0) {
                    __m128i xb = _mm_maskz_loadu_epi8(mk, xc + o1);
                    d1 = _mm512_sub_epi32(p->sgn ? _mm512_cvtepi8_epi32(xb) : _mm512_cvtepu8_epi32(xb), z);
                }
                __m512i pr = _mm512_mask_blend_epi16(0xAAAAAAAAu, d0, _mm512_slli_epi32(d1, 16));
                t = _mm512_add_epi32(t, _mm512_madd_epi16(pr, _mm512_maskz_loadu_epi32(mk, p->wp + i * C + c0)));
            }
            __m512i y;
            if (p->mode == QK_RQ_NONE) {
                y = t;
            } else if (p->mode == QK_RQ_FP32) {
                __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(t), _mm512_maskz_loadu_ps(mk, p->scale + c0));
                f = _mm512_min_ps(_mm512_max_ps(f, flo), fhi);
                y = _mm512_add_epi32(_mm512_cvtps_epi32(f), zo);
            } else {
                __m512i sh = _mm512_maskz_loadu_epi32(mk, p->shift + c0);
                __m512i x = _mm512_sllv_epi32(t, _mm512_max_epi32(sh, zero));
                x = srdhm16(x, _mm512_maskz_loadu_epi32(mk, p->mult + c0));
                x = rdbpot16(x, _mm512_max_epi32(_mm512_sub_epi32(zero, sh), zero));
                y = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(x, lo), hi), zo);
            }
            switch (p->out_type) {
            case QK_U8:
            case QK_I8: _mm512_mask_cvtepi32_storeu_epi8(yo + c0, mk, y); break;
            case QK_I16: _mm512_mask_cvtepi32_storeu_epi16((int16_t *)yo + c0, mk, y); break;
            default: _mm512_mask_storeu_epi32((int32_t *)yo + c0, mk, y); break;
            }
        }
    }
}
