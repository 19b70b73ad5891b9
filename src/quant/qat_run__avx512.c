/* AVX-512 bodies of the QkLearnQuant runs (qat_run.c holds the portable
 * reference and the contract): the same float operations in the same order,
 * 16 elements per step, parameter-gradient sums in the same 16 double lanes,
 * so results are bit-identical. Only for the algorithms qk_lq_vec_ok
 * accepts (no DSQ, no DoReFa weights); called only when
 * qk_cpu_isa_usable(QK_ISA_AVX512). */
#include "qat_internal.h"

#include <immintrin.h>

#define LN2 0.69314718055994530942

static inline __mmask16 tail_mask(int64_t left)
{
    return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
}

/* qk_round_f on 16 lanes (finite or infinite v; NaN lanes are replaced by the caller). */
static inline __m512 round16(__m512 v, qk_round m)
{
    if (m == QK_ROUND_HALF_EVEN)
        return _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
    __m512 f = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    __m512 d = _mm512_sub_ps(v, f), f1 = _mm512_add_ps(f, one);
    if (m == QK_ROUND_HALF_UP)
        return _mm512_mask_mov_ps(f, _mm512_cmp_ps_mask(d, half, _CMP_GE_OQ), f1);
    /* half away: d > 0.5 -> f + 1; d == 0.5 -> v < 0 ? f : f + 1 */
    __mmask16 up = _mm512_cmp_ps_mask(d, half, _CMP_GT_OQ) |
                   (_mm512_cmp_ps_mask(d, half, _CMP_EQ_OQ) &
                    _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_NLT_UQ));
    return _mm512_mask_mov_ps(f, up, f1);
}

/* T(x): clip to [lo, hi] with NaN kept (x < lo ? lo : x > hi ? hi : x). */
static inline __m512 clip16(__m512 x, __m512 lo, __m512 hi)
{
    __m512 t = _mm512_mask_mov_ps(x, _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ), lo);
    return _mm512_mask_mov_ps(t, _mm512_cmp_ps_mask(t, hi, _CMP_GT_OQ), hi);
}

void qk_lq_fwd_run__avx512(const qk_qat_attr *a, const qk_qat_chan *c, const float *x, float *y, int64_t n)
{
    const __m512 lo = _mm512_set1_ps(c->lo), hi = _mm512_set1_ps(c->hi), s = _mm512_set1_ps(c->s),
                 zf = _mm512_set1_ps((float)c->z), qn = _mm512_set1_ps((float)a->qn),
                 qp = _mm512_set1_ps((float)a->qp);
    const qk_round m = a->scheme.round;
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 k = tail_mask(n - i);
        __m512 t = clip16(_mm512_maskz_loadu_ps(k, x + i), lo, hi);
        __m512 u = _mm512_div_ps(t, s);
        __m512 r = _mm512_add_ps(round16(u, m), zf);
        r = _mm512_mask_mov_ps(zf, _mm512_cmp_ps_mask(u, u, _CMP_ORD_Q), r);
        r = _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(r, qn, _CMP_LT_OQ), qn);
        r = _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(r, qp, _CMP_GT_OQ), qp);
        _mm512_mask_storeu_ps(y + i, k, _mm512_mul_ps(_mm512_sub_ps(r, zf), s));
    }
}

static inline __m512d lo8(__m512 v) { return _mm512_cvtps_pd(_mm512_castps512_ps256(v)); }
static inline __m512d hi8(__m512 v)
{
    return _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}

void qk_lq_bwd_run__avx512(const qk_qat_attr *a, const qk_qat_chan *c, const float *x, const float *dy, float *dx,
                           int64_t n, double acc[2])
{
    const __m512 lo = _mm512_set1_ps(c->lo), hi = _mm512_set1_ps(c->hi), s = _mm512_set1_ps(c->s),
                 zf = _mm512_set1_ps((float)c->z), qn = _mm512_set1_ps((float)a->qn),
                 qp = _mm512_set1_ps((float)a->qp), fz = _mm512_setzero_ps();
    const __m512d sd = _mm512_set1_pd((double)c->s), ln2 = _mm512_set1_pd(LN2);
    const qk_qat_algo algo = a->algo;
    const qk_round m = a->scheme.round;
    const int lsq = algo == QK_QAT_LSQ || algo == QK_QAT_LSQ_PLUS || algo == QK_QAT_TQT;
    const int need_dyds = lsq;
    __m512d a0l = _mm512_setzero_pd(), a0h = a0l, a1l = a0l, a1h = a0l;
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 k = tail_mask(n - i);
        __m512 xv = _mm512_maskz_loadu_ps(k, x + i), g = _mm512_maskz_loadu_ps(k, dy + i);
        __m512 u = _mm512_div_ps(clip16(xv, lo, hi), s);
        __mmask16 ord = _mm512_cmp_ps_mask(u, u, _CMP_ORD_Q);
        __mmask16 in;
        __m512 q = fz;
        if (lsq) {
            __m512 uz = _mm512_add_ps(u, zf);
            in = _mm512_cmp_ps_mask(uz, qn, _CMP_GT_OQ) & _mm512_cmp_ps_mask(uz, qp, _CMP_LT_OQ);
        } else {
            __m512 r = _mm512_mask_mov_ps(zf, ord, _mm512_add_ps(round16(u, m), zf));
            in = ord & _mm512_cmp_ps_mask(r, qn, _CMP_GE_OQ) & _mm512_cmp_ps_mask(r, qp, _CMP_LE_OQ);
        }
        if (need_dyds) {
            __m512 r = _mm512_mask_mov_ps(zf, ord, _mm512_add_ps(round16(u, m), zf));
            q = _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(r, qn, _CMP_LT_OQ), qn);
            q = _mm512_mask_mov_ps(q, _mm512_cmp_ps_mask(q, qp, _CMP_GT_OQ), qp);
        }
        __mmask16 dmask = in; /* dx = g where set, else +0 */
        if (need_dyds) {
            __m512 qz = _mm512_sub_ps(q, zf);
            __m512 um = _mm512_maskz_mov_ps(in, u);
            __m512d dl = _mm512_sub_pd(lo8(qz), lo8(um)), dh = _mm512_sub_pd(hi8(qz), hi8(um));
            __m512d gl = lo8(g), gh = hi8(g);
            __m512d tl = _mm512_mul_pd(gl, dl), th = _mm512_mul_pd(gh, dh);
            if (algo == QK_QAT_TQT) {
                tl = _mm512_mul_pd(_mm512_mul_pd(tl, ln2), sd);
                th = _mm512_mul_pd(_mm512_mul_pd(th, ln2), sd);
            }
            __mmask8 kl = (__mmask8)(k & 0xff), kh = (__mmask8)(k >> 8);
            a0l = _mm512_mask_add_pd(a0l, kl, a0l, tl);
            a0h = _mm512_mask_add_pd(a0h, kh, a0h, th);
            if (algo == QK_QAT_LSQ_PLUS) {
                __mmask16 out = (__mmask16)(k & ~in);
                a1l = _mm512_mask_sub_pd(a1l, (__mmask8)(out & 0xff), a1l, _mm512_mul_pd(gl, sd));
                a1h = _mm512_mask_sub_pd(a1h, (__mmask8)(out >> 8), a1h, _mm512_mul_pd(gh, sd));
            }
        } else if (algo == QK_QAT_PACT || algo == QK_QAT_PACT_ASYM || algo == QK_QAT_PACT_SYM ||
                   algo == QK_QAT_WRPN || algo == QK_QAT_DOREFA) {
            __mmask16 above = k & _mm512_cmp_ps_mask(xv, hi, _CMP_GE_OQ);
            __mmask16 below = k & ~above & _mm512_cmp_ps_mask(xv, lo, _CMP_LT_OQ);
            dmask &= (__mmask16)~(above | below);
            if (algo != QK_QAT_WRPN && algo != QK_QAT_DOREFA) {
                __m512d gl = lo8(g), gh = hi8(g);
                if (algo == QK_QAT_PACT_ASYM) {
                    a1l = _mm512_mask_add_pd(a1l, (__mmask8)(above & 0xff), a1l, gl);
                    a1h = _mm512_mask_add_pd(a1h, (__mmask8)(above >> 8), a1h, gh);
                    a0l = _mm512_mask_add_pd(a0l, (__mmask8)(below & 0xff), a0l, gl);
                    a0h = _mm512_mask_add_pd(a0h, (__mmask8)(below >> 8), a0h, gh);
                } else {
                    a0l = _mm512_mask_add_pd(a0l, (__mmask8)(above & 0xff), a0l, gl);
                    a0h = _mm512_mask_add_pd(a0h, (__mmask8)(above >> 8), a0h, gh);
                    if (algo == QK_QAT_PACT_SYM) {
                        a0l = _mm512_mask_sub_pd(a0l, (__mmask8)(below & 0xff), a0l, gl);
                        a0h = _mm512_mask_sub_pd(a0h, (__mmask8)(below >> 8), a0h, gh);
                    }
                }
            }
        }
        if (dx) {
            __m512 d = _mm512_maskz_mov_ps(dmask, g);
            _mm512_mask_storeu_ps(dx + i, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, dx + i), d));
        }
    }
    double l0[16], l1[16];
    _mm512_storeu_pd(l0, a0l);
    _mm512_storeu_pd(l0 + 8, a0h);
    _mm512_storeu_pd(l1, a1l);
    _mm512_storeu_pd(l1 + 8, a1h);
    for (int l = 0; l < 16; l++) {
        acc[0] += l0[l];
        acc[1] += l1[l];
    }
}
