/* int8 GEMM kernel for AVX2 (compiled with -mavx2 -mfma; called only when
 * qk_cpu_isa_usable(QK_ISA_AVX2)).
 *
 * vpmaddubsw would saturate its int16 pair sums (255*127*2 > 32767), so
 * operands are widened to int16 and multiplied with vpmaddwd (int16 x int16
 * pairs summed in int32): exact on every input, bit-identical to the
 * reference. Packed B: int16 pairs, [panel of 16 columns][Kp/2][16][2].
 * A rows are converted to int16 and packed in the worker's scratch.
 * Micro-tile 6 x 16 (12 ymm accumulators). */
#include "i8gemm.h"

#include <immintrin.h>
#include <string.h>

#define MR 6
#define NR 16

#define PACK_SUFFIX avx2
#include "i8gemm_pack_i16_body.h"

#define ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define DECL(r) __m256i c##r##0 = _mm256_setzero_si256(), c##r##1 = _mm256_setzero_si256();
#define STEP(r)                                                                                      \
    av = _mm256_set1_epi32(ap[r]);                                                                   \
    c##r##0 = _mm256_add_epi32(c##r##0, _mm256_madd_epi16(av, b0));                                  \
    c##r##1 = _mm256_add_epi32(c##r##1, _mm256_madd_epi16(av, b1));
#define STORE(r)                                                                                     \
    if (r < mr) {                                                                                    \
        _mm256_storeu_si256((__m256i *)(c + r * ldc), c##r##0);                                      \
        _mm256_storeu_si256((__m256i *)(c + r * ldc + 8), c##r##1);                                  \
    }

static void tile(int64_t K2, const int32_t *ap, const int16_t *bp, int32_t *c, int64_t ldc, int mr)
{
    ROWS(DECL)
    for (int64_t kk = 0; kk < K2; kk++, ap += MR, bp += 2 * NR) {
        __m256i b0 = _mm256_loadu_si256((const __m256i *)bp), b1 = _mm256_loadu_si256((const __m256i *)(bp + 16));
        __m256i av;
        ROWS(STEP)
    }
    ROWS(STORE)
}

void qk_i8_gemm__avx2(const qk_i8gemm *g, int64_t mb, const void *Ap, int64_t ldap, int64_t n0, int64_t nbp,
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

/* Row sums of raw A (u8, or s8 as (a ^ 0x80) - 128) with vpsadbw. */
void qk_i8_rowsum__avx2(const qk_i8gemm *g, int64_t mb, const void *A, int64_t lda, int32_t *rs)
{
    int sgn = g->a_type == QK_I8;
    __m256i flip = _mm256_set1_epi8(sgn ? (char)0x80 : 0), z = _mm256_setzero_si256();
    for (int64_t m = 0; m < mb; m++) {
        const uint8_t *a = (const uint8_t *)A + m * lda;
        __m256i s = z;
        int64_t k = 0;
        for (; k + 32 <= g->K; k += 32)
            s = _mm256_add_epi64(s, _mm256_sad_epu8(_mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(a + k)), flip), z));
        uint64_t t[4];
        _mm256_storeu_si256((__m256i *)t, s);
        uint32_t sum = (uint32_t)(t[0] + t[1] + t[2] + t[3]) - (sgn ? (uint32_t)(128 * k) : 0);
        for (; k < g->K; k++)
            sum += sgn ? (uint32_t)(int32_t)(int8_t)a[k] : a[k];
        rs[m] = (int32_t)sum;
    }
}

/* ---- output stage, 8 columns at a time ---- */

static inline __m256i srdhm8(__m256i x, __m256i q)
{
    const __m256i half = _mm256_set1_epi64x(INT64_C(1) << 30);
    /* (x*q + 2^30) >> 31 equals gemmlowp's SRDHM for q >= 0 (see int.h); only
     * the low 32 bits of the shift are kept, so a logical shift suffices. */
    __m256i pe = _mm256_srli_epi64(_mm256_add_epi64(_mm256_mul_epi32(x, q), half), 31);
    __m256i po = _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(x, 32), _mm256_srli_epi64(q, 32)), half);
    po = _mm256_slli_epi64(_mm256_srli_epi64(po, 31), 32);
    return _mm256_blend_epi32(pe, po, 0xAA);
}

static inline __m256i rdbpot8(__m256i x, __m256i n)
{
    const __m256i one = _mm256_set1_epi32(1);
    __m256i mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, n), one);
    __m256i rem = _mm256_and_si256(x, mask);
    __m256i thr = _mm256_sub_epi32(_mm256_srai_epi32(mask, 1), _mm256_cmpgt_epi32(_mm256_setzero_si256(), x));
    return _mm256_sub_epi32(_mm256_srav_epi32(x, n), _mm256_cmpgt_epi32(rem, thr));
}

/* The output stage's constants and its three modes on 8 lanes (t: the
 * int32 sums; per-lane scale, or multiplier and left / right shifts). */
typedef struct rq8k {
    __m256i zo, lo, hi;
    __m256 flo, fhi;
} rq8k;

static inline rq8k rq8_consts(int32_t zo, int32_t qmin, int32_t qmax)
{
    rq8k k = {_mm256_set1_epi32(zo), _mm256_set1_epi32(qmin - zo), _mm256_set1_epi32(qmax - zo),
              _mm256_set1_ps((float)(qmin - zo)), _mm256_set1_ps((float)(qmax - zo))};
    return k;
}

static inline __m256i rq8(qk_rq_mode mode, __m256i t, const float *scale, const int32_t *mult, __m256i lsh,
                          __m256i rsh, const rq8k *k)
{
    if (mode == QK_RQ_NONE)
        return t;
    if (mode == QK_RQ_FP32) {
        __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(t), _mm256_loadu_ps(scale));
        f = _mm256_min_ps(_mm256_max_ps(f, k->flo), k->fhi);
        return _mm256_add_epi32(_mm256_cvtps_epi32(f), k->zo);
    }
    __m256i x = _mm256_sllv_epi32(t, lsh);
    x = srdhm8(x, _mm256_loadu_si256((const __m256i *)mult));
    x = rdbpot8(x, rsh);
    return _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(x, k->lo), k->hi), k->zo);
}

static inline void store8(qk_dtype t, void *out, int64_t i, __m256i y)
{
    switch (t) {
    case QK_U8:
    case QK_I8: {
        __m256i s = _mm256_shuffle_epi8(y, _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                                            0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1));
        s = _mm256_permutevar8x32_epi32(s, _mm256_setr_epi32(0, 4, 1, 1, 1, 1, 1, 1));
        _mm_storel_epi64((__m128i *)((uint8_t *)out + i), _mm256_castsi256_si128(s));
        break;
    }
    case QK_I16: {
        __m256i s = _mm256_shuffle_epi8(y, _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1,
                                                            0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1));
        s = _mm256_permute4x64_epi64(s, 0x08);
        _mm_storeu_si128((__m128i *)((int16_t *)out + i), _mm256_castsi256_si128(s));
        break;
    }
    default: _mm256_storeu_si256((__m256i *)((int32_t *)out + i), y); break;
    }
}

void qk_i8_epilogue__avx2(const qk_i8gemm *g, int64_t mb, int64_t n0, int64_t nb, const int32_t *acc,
                          int64_t ldacc, const int32_t *rs, void *out, int64_t ldo)
{
    if (g->mode != QK_RQ_NONE && g->mode != QK_RQ_GEMMLOWP && g->mode != QK_RQ_FP32) {
        qk_i8_epilogue_ref(g, mb, n0, nb, acc, ldacc, rs, out, ldo);
        return;
    }
    int64_t nv = nb & ~(int64_t)7;
    const rq8k k = rq8_consts(g->zo, g->qmin, g->qmax);
    size_t es = qk_dtype_size(g->out_type);
    for (int64_t m = 0; m < mb; m++) {
        __m256i r = _mm256_set1_epi32(rs ? rs[m] : 0);
        for (int64_t j = 0; j < nv; j += 8) {
            int64_t n = n0 + j;
            __m256i t = _mm256_loadu_si256((const __m256i *)(acc + m * ldacc + j));
            t = _mm256_sub_epi32(t, _mm256_mullo_epi32(_mm256_loadu_si256((const __m256i *)(g->rowcoef + n)), r));
            t = _mm256_add_epi32(t, _mm256_loadu_si256((const __m256i *)(g->colconst + n)));
            __m256i y = g->mode == QK_RQ_GEMMLOWP
                            ? rq8(g->mode, t, NULL, g->mult + n, _mm256_loadu_si256((const __m256i *)(g->lsh + n)),
                                  _mm256_loadu_si256((const __m256i *)(g->rsh + n)), &k)
                            : rq8(g->mode, t, g->scale + n, NULL, t, t, &k);
            store8(g->out_type, (uint8_t *)out + (size_t)(m * ldo) * es, j, y);
        }
    }
    if (nv < nb)
        qk_i8_epilogue_ref(g, mb, n0 + nv, nb - nv, acc + nv, ldacc, rs, (uint8_t *)out + (size_t)nv * es, ldo);
}

/* One output row of an NHWC depthwise convolution (i8gemm.h), 8 channels
 * per step: taps in pairs as int16 (x - zx, w - w_zero in [-255, 255]) into
 * vpmaddwd, exact; the output stage of the epilogue above. Channels past
 * the last multiple of 8 go through the reference's per-channel step. */
void qk_i8_dw_nhwc_row__avx2(const qk_i8_dwrow *p)
{
    if ((p->mode != QK_RQ_NONE && p->mode != QK_RQ_GEMMLOWP && p->mode != QK_RQ_FP32) ||
        p->kh * p->kw > QK_I8_DW_MAXTAPS) {
        qk_i8_dw_nhwc_row_ref(p);
        return;
    }
    const int64_t C = p->C, C8 = C & ~(int64_t)7;
    const __m256i z = _mm256_set1_epi32(p->zx), zero = _mm256_setzero_si256();
    const rq8k k = rq8_consts(p->zo, p->qmin, p->qmax);
    size_t es = qk_dtype_size(p->out_type);
    const int64_t np = (p->kh * p->kw + 1) / 2;
    int64_t off[QK_I8_DW_MAXTAPS + 1];
    for (int64_t ow = 0; ow < p->OW; ow++) {
        uint8_t *yo = (uint8_t *)p->y + (size_t)(ow * C) * es;
        qk_i8_dw_tap_offsets(p, ow, off);
        for (int64_t c0 = 0; c0 < C8; c0 += 8) {
            __m256i t = _mm256_loadu_si256((const __m256i *)(p->bias + c0));
            const uint8_t *xc = p->x + c0;
            for (int64_t i = 0; i < np; i++) {
                int64_t o0 = off[2 * i], o1 = off[2 * i + 1];
                __m256i d0 = zero, d1 = zero;
                if (o0 >= 0) {
                    __m128i xb = _mm_loadl_epi64((const __m128i *)(xc + o0));
                    d0 = _mm256_sub_epi32(p->sgn ? _mm256_cvtepi8_epi32(xb) : _mm256_cvtepu8_epi32(xb), z);
                }
                if (o1 >= 0) {
                    __m128i xb = _mm_loadl_epi64((const __m128i *)(xc + o1));
                    d1 = _mm256_sub_epi32(p->sgn ? _mm256_cvtepi8_epi32(xb) : _mm256_cvtepu8_epi32(xb), z);
                }
                __m256i pr = _mm256_blend_epi16(d0, _mm256_slli_epi32(d1, 16), 0xAA);
                t = _mm256_add_epi32(t, _mm256_madd_epi16(pr, _mm256_loadu_si256((const __m256i *)(p->wp + i * C + c0))));
            }
            __m256i sh = _mm256_loadu_si256((const __m256i *)(p->shift + c0));
            __m256i y = rq8(p->mode, t, p->scale + c0, p->mult + c0, _mm256_max_epi32(sh, zero),
                            _mm256_max_epi32(_mm256_sub_epi32(zero, sh), zero), &k);
            store8(p->out_type, yo, c0, y);
        }
        for (int64_t c = C8; c < C; c++)
            qk_i8_dw_nhwc_one(p, ow, c);
    }
}
