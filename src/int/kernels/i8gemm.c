/* int8 GEMM: kernel table and dispatch, create (weight packing and
 * zero-point corrections, once) -> run (tasks over the pool), the scalar
 * kernel and the reference. See i8gemm.h for the data flow. */
#include "i8gemm.h"

#include <emmintrin.h>

#include <string.h>

/* ---------------- the scalar kernel ("ref" level) ----------------
 * Packed B: Bs as int8, [n][Kp]. A used in place. */

static size_t ws_none(const qk_i8gemm *g)
{
    (void)g;
    return 0;
}

static const void *prepare_none(const qk_i8gemm *g, int64_t mb, const void *A, int64_t lda, void *kws,
                                int64_t *ldap)
{
    (void)g, (void)mb, (void)kws;
    *ldap = lda;
    return A;
}

static void compute_ref(const qk_i8gemm *g, int64_t mb, const void *Ap, int64_t lda, int64_t n0, int64_t nbp,
                        int32_t *acc, int64_t ldacc, void *kws)
{
    (void)kws;
    const int8_t *bp = g->bpack;
    int64_t K = g->K, Kp = g->Kp;
    for (int64_t m = 0; m < mb; m++)
        for (int64_t j = 0; j < nbp; j++) {
            const int8_t *b = bp + (n0 + j) * Kp;
            uint32_t s = 0;
            if (g->a_type == QK_U8) {
                const uint8_t *a = (const uint8_t *)Ap + m * lda;
                for (int64_t k = 0; k < K; k++)
                    s += (uint32_t)((int32_t)a[k] * b[k]);
            } else {
                const int8_t *a = (const int8_t *)Ap + m * lda;
                for (int64_t k = 0; k < K; k++)
                    s += (uint32_t)((int32_t)a[k] * b[k]);
            }
            acc[m * ldacc + j] = (int32_t)s;
        }
}

void qk_i8_rowsum_ref(const qk_i8gemm *g, int64_t mb, const void *A, int64_t lda, int32_t *rs)
{
    for (int64_t m = 0; m < mb; m++) {
        uint32_t s = 0;
        if (g->a_type == QK_U8) {
            const uint8_t *a = (const uint8_t *)A + m * lda;
            for (int64_t k = 0; k < g->K; k++)
                s += a[k];
        } else {
            const int8_t *a = (const int8_t *)A + m * lda;
            for (int64_t k = 0; k < g->K; k++)
                s += (uint32_t)(int32_t)a[k];
        }
        rs[m] = (int32_t)s;
    }
}

void qk_i8_epilogue_ref(const qk_i8gemm *g, int64_t mb, int64_t n0, int64_t nb, const int32_t *acc,
                        int64_t ldacc, const int32_t *rs, void *out, int64_t ldo)
{
    for (int64_t m = 0; m < mb; m++) {
        uint32_t r = rs ? (uint32_t)rs[m] : 0;
        for (int64_t j = 0; j < nb; j++) {
            int64_t n = n0 + j;
            int32_t t = (int32_t)((uint32_t)acc[m * ldacc + j] - (uint32_t)g->rowcoef[n] * r + (uint32_t)g->colconst[n]);
            int32_t y = qk_requant_value(g->mode, t, g->mult[n], g->shift[n], g->scale[n], g->zo, g->qmin, g->qmax);
            switch (g->out_type) {
            case QK_U8: ((uint8_t *)out)[m * ldo + j] = (uint8_t)y; break;
            case QK_I8: ((int8_t *)out)[m * ldo + j] = (int8_t)y; break;
            case QK_I16: ((int16_t *)out)[m * ldo + j] = (int16_t)y; break;
            default: ((int32_t *)out)[m * ldo + j] = y; break;
            }
        }
    }
}

void qk_i8_requant_row_ref(const qk_i8_rowq *q, const int32_t *acc, int64_t n, void *out)
{
    for (int64_t i = 0; i < n; i++) {
        int32_t y = qk_requant_value(q->mode, acc[i], q->mult, q->shift, q->scale, q->zo, q->qmin, q->qmax);
        switch (q->out_type) {
        case QK_U8: ((uint8_t *)out)[i] = (uint8_t)y; break;
        case QK_I8: ((int8_t *)out)[i] = (int8_t)y; break;
        case QK_I16: ((int16_t *)out)[i] = (int16_t)y; break;
        default: ((int32_t *)out)[i] = y; break;
        }
    }
}

void qk_i8_pad_rows(const qk_i8gemm *g, int64_t mb, const void *A, int64_t lda, uint8_t *dst)
{
    for (int64_t m = 0; m < mb; m++) {
        memcpy(dst + m * g->Kp, (const uint8_t *)A + m * lda, (size_t)g->K);
        memset(dst + m * g->Kp + g->K, 0, (size_t)(g->Kp - g->K));
    }
}

/* ---------------- the kernel list ---------------- */

#define ISA_KERNEL(nm, lvl, test, MR, NR, lay, ka, bu8, MB, rsum, epi, sfx)                                \
    {{nm, lvl, test, MR, NR}, lay, ka, bu8, MB, qk_i8_gemm_ws__##sfx, rsum, qk_i8_gemm_prepare__##sfx,       \
     qk_i8_gemm__##sfx, epi, NULL, NULL}
#define ISA_KERNEL_KOFF_SMALL(nm, lvl, test, MR, NR, lay, ka, bu8, MB, rsum, epi, sfx)                     \
    {{nm, lvl, test, MR, NR}, lay, ka, bu8, MB, qk_i8_gemm_ws__##sfx, rsum, qk_i8_gemm_prepare__##sfx,       \
     qk_i8_gemm__##sfx, epi, qk_i8_gemm_koff__##sfx, qk_i8_gemm_small__##sfx}
#define ISA_KERNEL_KOFF(nm, lvl, test, MR, NR, lay, ka, bu8, MB, rsum, epi, sfx)                           \
    {{nm, lvl, test, MR, NR}, lay, ka, bu8, MB, qk_i8_gemm_ws__##sfx, rsum, qk_i8_gemm_prepare__##sfx,       \
     qk_i8_gemm__##sfx, epi, qk_i8_gemm_koff__##sfx, NULL}

static const qk_i8_kernel kernels[] = {
    {{"ref", QK_ISA_REF, 0, 1, 1}, QK_PACK_NK, 1, 0, 32, ws_none, qk_i8_rowsum_ref, prepare_none, compute_ref,
     qk_i8_epilogue_ref, NULL, NULL},
    ISA_KERNEL("avx2", QK_ISA_AVX2, 0, 6, 16, QK_PACK_I16, 2, 0, 60, qk_i8_rowsum__avx2, qk_i8_epilogue__avx2, avx2),
    /* AVX2 level as well, and AVX-VNNI (kernel_usable); after "avx2" so that dispatch prefers it */
    ISA_KERNEL("avx2-vnni", QK_ISA_AVX2, 0, 6, 16, QK_PACK_K4, 4, 1, 60, qk_i8_rowsum__avx2, qk_i8_epilogue__avx2,
               avxvnni),
    ISA_KERNEL("avx512", QK_ISA_AVX512, 0, 12, 32, QK_PACK_I16, 2, 0, 96, qk_i8_rowsum__avx512,
               qk_i8_epilogue__avx512, avx512),
    ISA_KERNEL_KOFF_SMALL("vnni", QK_ISA_VNNI, 0, 12, 32, QK_PACK_K4, 4, 1, 96, qk_i8_rowsum__avx512,
               qk_i8_epilogue__avx512, vnni),
    ISA_KERNEL_KOFF("amx", QK_ISA_AMX, 0, 32, 32, QK_PACK_K4, 64, 0, 64, qk_i8_rowsum__avx512,
                    qk_i8_epilogue__avx512, amx),
    /* The AMX kernel's exact code with tile instructions emulated in C:
     * tests its packing and tiling on CPUs without AMX. */
    ISA_KERNEL_KOFF("amx-emu", QK_ISA_REF, 1, 32, 32, QK_PACK_K4, 64, 0, 64, qk_i8_rowsum_ref,
                    qk_i8_epilogue_ref, amxemu),
};
#define NKERNELS ((int)(sizeof kernels / sizeof kernels[0]))

int qk_i8_kernel_count(void) { return NKERNELS; }

const qk_i8_kernel_info *qk_i8_kernel_get(int i)
{
    return (i >= 0 && i < NKERNELS) ? &kernels[i].info : NULL;
}

/* The CPU runs kernel k: its level, and AVX-VNNI for the kernel that needs it. */
static int kernel_usable(const qk_i8_kernel *k)
{
    if (k->info.test_only)
        return 1;
    if (!qk_cpu_isa_usable(k->info.isa))
        return 0;
    return k->compute != qk_i8_gemm__avxvnni || qk_cpu_features_get()->avx_vnni;
}

int qk_i8_kernel_usable(int i) { return i >= 0 && i < NKERNELS && kernel_usable(&kernels[i]); }

int qk_i8_kernel_for_isa(qk_isa isa)
{
    int best = 0;
    for (int i = 0; i < NKERNELS; i++)
        if (!kernels[i].info.test_only && kernels[i].info.isa <= isa && kernel_usable(&kernels[i]) &&
            kernels[i].info.isa >= kernels[best].info.isa)
            best = i;
    return best;
}

const char *qk_i8gemm_kernel_name(const qk_i8gemm *g) { return g->k->info.name; }

/* ---------------- descriptor checks ---------------- */

static qk_status check_desc(const qk_i8gemm_desc *d)
{
    int32_t lo, hi;
    if ((d->a_type != QK_U8 && d->a_type != QK_I8) || (d->b_type != QK_U8 && d->b_type != QK_I8))
        return qk_error(QK_ERR_ARG, "int8 GEMM: operand types %s x %s (expected uint8 or int8)",
                        qk_dtype_name(d->a_type), qk_dtype_name(d->b_type));
    if (d->K < 1 || d->N < 1 || d->K > INT32_MAX / 2 || d->N > INT32_MAX / 2)
        return qk_error(QK_ERR_ARG, "int8 GEMM: invalid sizes K=%lld N=%lld", (long long)d->K, (long long)d->N);
    if (d->B && d->ldb < (d->b_trans ? d->K : d->N))
        return qk_error(QK_ERR_ARG, "int8 GEMM: ldb %lld is smaller than a row of B", (long long)d->ldb);
    qk_int_range(d->a_type, &lo, &hi);
    if (d->a_zero < lo || d->a_zero > hi)
        return qk_error(QK_ERR_ARG, "int8 GEMM: activation zero point %d outside [%d, %d]", d->a_zero, lo, hi);
    if (!((d->nb_zero == 0 && !d->b_zero) || ((d->nb_zero == 1 || d->nb_zero == d->N) && d->b_zero)))
        return qk_error(QK_ERR_ARG, "int8 GEMM: %d weight zero points given; expected 1 or N=%lld", d->nb_zero,
                        (long long)d->N);
    qk_int_range(d->b_type, &lo, &hi);
    for (int i = 0; i < d->nb_zero; i++)
        if (d->b_zero[i] < lo || d->b_zero[i] > hi)
            return qk_error(QK_ERR_ARG, "int8 GEMM: weight zero point[%d] = %d outside [%d, %d]", i, d->b_zero[i],
                            lo, hi);
    qk_status st = qk_requant_check(&d->rq, d->out_type, d->N);
    if (st != QK_OK)
        return qk_error_context(st, "int8 GEMM");
    if (d->kernel < -1 || d->kernel >= NKERNELS)
        return qk_error(QK_ERR_ARG, "int8 GEMM: kernel index %d (have %d)", d->kernel, NKERNELS);
    return QK_OK;
}

static int32_t b_at(const qk_i8gemm_desc *d, int64_t k, int64_t n)
{
    int64_t i = d->b_trans ? n * d->ldb + k : k * d->ldb + n;
    return d->b_type == QK_U8 ? (int32_t)((const uint8_t *)d->B)[i] : (int32_t)((const int8_t *)d->B)[i];
}

static size_t bpack_bytes(const qk_i8gemm *g)
{
    size_t e = g->k->layout == QK_PACK_I16 ? 2 : 1;
    return qk_i8_align64((size_t)g->Kp * (size_t)g->Np * e);
}

static void pack_b(qk_i8gemm *g, const qk_i8gemm_desc *d)
{
    int32_t offb = d->b_type == QK_U8 ? 128 : 0;
    int64_t Kp = g->Kp, nr = g->k->info.nr;
    memset(g->bpack, 0, bpack_bytes(g));
    for (int64_t n = 0; n < g->N; n++) {
        int64_t p = n / nr, c = n % nr;
        int32_t cs = 0;
        for (int64_t k = 0; k < g->K; k++) {
            int32_t bs = b_at(d, k, n) - offb;
            cs += bs;
            switch (g->k->layout) {
            case QK_PACK_NK: ((int8_t *)g->bpack)[n * Kp + k] = (int8_t)bs; break;
            case QK_PACK_I16: ((int16_t *)g->bpack)[((p * (Kp / 2) + k / 2) * nr + c) * 2 + k % 2] = (int16_t)bs; break;
            default:
                ((uint8_t *)g->bpack)[((p * (Kp / 4) + k / 4) * nr + c) * 4 + k % 4] =
                    (uint8_t)(g->b_u8 ? bs + 128 : bs);
                break;
            }
        }
        g->colsum[n] = cs;
    }
    g->has_b = 1;
}

/* Zero-point corrections and the per-column output stage. */
static void set_quant(qk_i8gemm *g, const qk_i8gemm_desc *d)
{
    int32_t offb = d->b_type == QK_U8 ? 128 : 0;
    int64_t za = d->a_zero;
    g->a_zero = d->a_zero;
    g->need_rowsum = 0;
    g->mode = d->rq.mode;
    g->zo = d->rq.zero_point;
    if (d->out_type == QK_I32) {
        g->qmin = INT32_MIN;
        g->qmax = INT32_MAX;
    } else {
        g->qmin = d->rq.qmin;
        g->qmax = d->rq.qmax;
    }
    for (int64_t n = 0; n < g->Np; n++) {
        g->rowcoef[n] = g->colconst[n] = 0;
        g->mult[n] = g->shift[n] = g->lsh[n] = g->rsh[n] = 0;
        g->scale[n] = 0.0f;
        if (n >= g->N)
            continue;
        int64_t zbs = (d->nb_zero ? d->b_zero[d->nb_zero == 1 ? 0 : n] : 0) - offb;
        g->rowcoef[n] = (int32_t)(zbs + 128 * g->b_u8);
        if (g->rowcoef[n] != 0)
            g->need_rowsum = 1;
        int64_t cc = (d->bias ? d->bias[n] : 0) + g->K * za * zbs - za * (int64_t)g->colsum[n];
        g->colconst[n] = (int32_t)(uint32_t)(uint64_t)cc;
        int64_t q = d->rq.n == 1 ? 0 : n;
        if (d->rq.mode == QK_RQ_FP32) {
            g->scale[n] = d->rq.scale[q];
        } else if (d->rq.mode != QK_RQ_NONE) {
            g->shift[n] = d->rq.shift[q];
            if (d->rq.mode != QK_RQ_SHIFT)
                g->mult[n] = d->rq.mult[q];
            g->lsh[n] = g->shift[n] > 0 ? g->shift[n] : 0;
            g->rsh[n] = g->shift[n] > 0 ? 0 : -g->shift[n];
        }
    }
}

void qk_i8gemm_destroy(qk_i8gemm *g)
{
    if (!g)
        return;
    qk_aligned_free(g->bpack);
    qk_aligned_free(g->colsum);
    qk_free(g);
}

qk_status qk_i8gemm_create(const qk_i8gemm_desc *d, qk_i8gemm **out)
{
    *out = NULL;
    qk_status st = check_desc(d);
    if (st != QK_OK)
        return st;
    int ki = d->kernel >= 0 ? d->kernel : qk_i8_kernel_for_isa(qk_cpu_isa());
    /* automatic choice: AMX tiles take K in steps of 64 bytes; a short K
     * (a first layer with one input channel: K = 9) would be mostly
     * padding there, so it runs on the VNNI kernel (same integer results) */
    if (d->kernel < 0 && kernels[ki].info.isa == QK_ISA_AMX && d->K < kernels[ki].kalign)
        ki = qk_i8_kernel_for_isa(QK_ISA_VNNI);
    const qk_i8_kernel *k = &kernels[ki];
    if (!kernel_usable(k))
        return qk_error(QK_ERR_UNSUPPORTED, "int8 GEMM: kernel '%s' needs %s, which this CPU lacks", k->info.name,
                        qk_isa_name(k->info.isa));
    qk_i8gemm *g = qk_calloc(1, sizeof *g);
    if (!g)
        return qk_error(QK_ERR_NOMEM, "int8 GEMM: out of memory");
    g->k = k;
    g->a_type = d->a_type;
    g->b_type = d->b_type;
    g->out_type = d->out_type;
    g->K = d->K;
    g->N = d->N;
    g->Kp = qk_i8_roundup(d->K, k->kalign);
    g->Np = qk_i8_roundup(d->N, k->info.nr < 16 ? 16 : k->info.nr);
    g->b_u8 = k->b_u8_for_s8a && d->a_type == QK_I8;
    g->nb_zero = d->nb_zero;
    g->rq_n = d->rq.n;
    g->mb = k->mb;
    g->nb = g->Np < 256 ? g->Np : 256;
    size_t np = (size_t)g->Np;
    g->bpack = qk_aligned_alloc(bpack_bytes(g));
    g->colsum = qk_aligned_alloc(qk_i8_align64(np * 4 * 9));
    if (!g->bpack || !g->colsum) {
        qk_i8gemm_destroy(g);
        return qk_error(QK_ERR_NOMEM, "int8 GEMM: out of memory packing %lldx%lld weights", (long long)d->K,
                        (long long)d->N);
    }
    g->rowcoef = g->colsum + np;
    g->colconst = g->rowcoef + np;
    g->mult = g->colconst + np;
    g->shift = g->mult + np;
    g->lsh = g->shift + np;
    g->rsh = g->lsh + np;
    g->scale = (float *)(g->rsh + np);
    /* workspace: acc tile, row sums, kernel scratch, strided-output tile */
    size_t tile = qk_i8_align64((size_t)g->mb * (size_t)g->nb * 4);
    g->off_rs = tile;
    g->off_kern = g->off_rs + qk_i8_align64((size_t)g->mb * 4);
    g->off_out = g->off_kern + qk_i8_align64(k->kern_ws(g));
    g->ws_bytes = g->off_out + tile;
    if (d->B)
        pack_b(g, d);
    set_quant(g, d);
    *out = g;
    return QK_OK;
}

qk_status qk_i8gemm_update(qk_i8gemm *g, const qk_i8gemm_desc *d)
{
    qk_status st = check_desc(d);
    if (st != QK_OK)
        return st;
    if (d->a_type != g->a_type || d->b_type != g->b_type || d->out_type != g->out_type || d->K != g->K ||
        d->N != g->N || d->nb_zero != g->nb_zero || d->rq.n != g->rq_n ||
        (d->kernel >= 0 && &kernels[d->kernel] != g->k))
        return qk_error(QK_ERR_ARG, "int8 GEMM update: types, sizes, kernel or parameter counts changed");
    if (d->B)
        pack_b(g, d);
    set_quant(g, d);
    return QK_OK;
}

size_t qk_i8gemm_ws_bytes(const qk_i8gemm *g) { return g->ws_bytes; }

/* ---------------- run ---------------- */

/* One round of interleaves of a 16 x 16 byte transpose: elements of w bytes
 * of rows 2i and 2i + 1, the low halves into d[i], the high into d[i + 8]. */
static inline void interleave(const __m128i *s, __m128i *d, int w)
{
    for (int i = 0; i < 8; i++) {
        __m128i x = s[2 * i], y = s[2 * i + 1];
        switch (w) {
        case 1: d[i] = _mm_unpacklo_epi8(x, y), d[i + 8] = _mm_unpackhi_epi8(x, y); break;
        case 2: d[i] = _mm_unpacklo_epi16(x, y), d[i + 8] = _mm_unpackhi_epi16(x, y); break;
        case 4: d[i] = _mm_unpacklo_epi32(x, y), d[i + 8] = _mm_unpackhi_epi32(x, y); break;
        default: d[i] = _mm_unpacklo_epi64(x, y), d[i + 8] = _mm_unpackhi_epi64(x, y); break;
        }
    }
}

/* d[j*ldd + m] = s[m*lds + j] for a 16 x 16 block of bytes (SSE2: four
 * rounds of interleaves, which leave column j in the vector at j's 4 bits
 * reversed). */
static void transpose16(const uint8_t *s, int64_t lds, uint8_t *d, int64_t ldd)
{
    __m128i a[16], b[16];
    for (int i = 0; i < 16; i++)
        a[i] = _mm_loadu_si128((const __m128i *)(s + i * lds));
    interleave(a, b, 1);
    interleave(b, a, 2);
    interleave(a, b, 4);
    interleave(b, a, 8);
    static const int col[16] = {0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15}; /* a[i]: column col[i] */
    for (int i = 0; i < 16; i++)
        _mm_storeu_si128((__m128i *)(d + col[i] * ldd), a[i]);
}

/* The same for a 4 x 4 block of dwords (strides in bytes). */
static void transpose4(const uint8_t *s, int64_t lds, uint8_t *d, int64_t ldd)
{
    __m128i r0 = _mm_loadu_si128((const __m128i *)s), r1 = _mm_loadu_si128((const __m128i *)(s + lds));
    __m128i r2 = _mm_loadu_si128((const __m128i *)(s + 2 * lds)), r3 = _mm_loadu_si128((const __m128i *)(s + 3 * lds));
    __m128i u0 = _mm_unpacklo_epi32(r0, r1), u1 = _mm_unpacklo_epi32(r2, r3);
    __m128i u2 = _mm_unpackhi_epi32(r0, r1), u3 = _mm_unpackhi_epi32(r2, r3);
    _mm_storeu_si128((__m128i *)d, _mm_unpacklo_epi64(u0, u1));
    _mm_storeu_si128((__m128i *)(d + ldd), _mm_unpackhi_epi64(u0, u1));
    _mm_storeu_si128((__m128i *)(d + 2 * ldd), _mm_unpacklo_epi64(u2, u3));
    _mm_storeu_si128((__m128i *)(d + 3 * ldd), _mm_unpackhi_epi64(u2, u3));
}

/* c[(j*ldc_n + m)*es ..] = t[(m*nb + j)*es ..] for rows [m0, m1), columns [j0, nb) */
static void to_planes_edge(const uint8_t *t, int64_t nb, uint8_t *c, int64_t ldc_n, size_t es, int64_t m0,
                           int64_t m1, int64_t j0)
{
    for (int64_t j = j0; j < nb; j++)
        for (int64_t m = m0; m < m1; m++)
            memcpy(c + (size_t)(j * ldc_n + m) * es, t + (size_t)(m * nb + j) * es, es);
}

/* tmp [mb][nb] of es-byte elements into planes (ldc_m = 1): B x B block
 * transposes by tr, the ragged edges one element at a time */
static void to_planes(const uint8_t *t, int64_t mb, int64_t nb, uint8_t *c, int64_t ldc_n, size_t es, int64_t B,
                      void (*tr)(const uint8_t *, int64_t, uint8_t *, int64_t))
{
    int64_t m0 = 0;
    for (; m0 + B <= mb; m0 += B) {
        int64_t j0 = 0;
        for (; j0 + B <= nb; j0 += B)
            tr(t + (size_t)(m0 * nb + j0) * es, nb * (int64_t)es, c + (size_t)(j0 * ldc_n + m0) * es,
               ldc_n * (int64_t)es);
        to_planes_edge(t, nb, c, ldc_n, es, m0, m0 + B, j0);
    }
    to_planes_edge(t, nb, c, ldc_n, es, m0, mb, 0);
}

/* tmp [mb][nb] (row-major) -> C[m*ldc_m + j*ldc_n]; the conv stores NCHW
 * with ldc_m = 1, where each column j becomes one contiguous run (block
 * transposes, then the ragged edges one element at a time). */
static void scatter(const qk_i8gemm *g, int64_t mb, int64_t nb, const void *tmp, void *C, int64_t ldc_m,
                    int64_t ldc_n)
{
    switch (g->out_type) {
    case QK_U8:
    case QK_I8:
        if (ldc_m == 1) { /* planes (NCHW) */
            to_planes(tmp, mb, nb, C, ldc_n, 1, 16, transpose16);
            break;
        }
        for (int64_t j = 0; j < nb; j++) {
            const uint8_t *t = (const uint8_t *)tmp + j;
            uint8_t *c = (uint8_t *)C + j * ldc_n;
            for (int64_t m = 0; m < mb; m++)
                c[m * ldc_m] = t[m * nb];
        }
        break;
    case QK_I16:
        for (int64_t j = 0; j < nb; j++) {
            const int16_t *t = (const int16_t *)tmp + j;
            int16_t *c = (int16_t *)C + j * ldc_n;
            for (int64_t m = 0; m < mb; m++)
                c[m * ldc_m] = t[m * nb];
        }
        break;
    default:
        if (ldc_m == 1) { /* planes (NCHW) */
            to_planes(tmp, mb, nb, C, ldc_n, 4, 4, transpose4);
            break;
        }
        for (int64_t j = 0; j < nb; j++) {
            const int32_t *t = (const int32_t *)tmp + j;
            int32_t *c = (int32_t *)C + j * ldc_n;
            for (int64_t m = 0; m < mb; m++)
                c[m * ldc_m] = t[m * nb];
        }
        break;
    }
}

/* Epilogue of an mb x nb accumulator tile (columns from n) into C: pixel
 * rows directly when ldc_n == 1, else through the workspace and scattered. */
static void store_block(const qk_i8gemm *g, int64_t mb, int64_t n, int64_t nb, const int32_t *acc, const int32_t *rs,
                        uint8_t *c, int64_t ldc_m, int64_t ldc_n, uint8_t *w, int64_t ldacc)
{
    if (ldc_n == 1) {
        g->k->epilogue(g, mb, n, nb, acc, ldacc, rs, c, ldc_m);
    } else {
        void *tmp = w + g->off_out;
        g->k->epilogue(g, mb, n, nb, acc, ldacc, rs, tmp, nb);
        scatter(g, mb, nb, tmp, c, ldc_m, ldc_n);
    }
}

void qk_i8gemm_block(const qk_i8gemm *g, int64_t mb, const void *A, int64_t lda, int64_t n0, int64_t n1, void *C,
                     int64_t ldc_m, int64_t ldc_n, void *ws)
{
    const qk_i8_kernel *k = g->k;
    uint8_t *w = ws;
    int32_t *acc = (int32_t *)w, *rs = NULL;
    void *kws = w + g->off_kern;
    size_t es = qk_dtype_size(g->out_type);
    if (ldc_n == 1 && n0 % 64 == 0 && qk_i8_small_ok(g)) {
        k->small(g, mb, A, lda, NULL, n0, n1, C, ldc_m);
        return;
    }
    if (g->need_rowsum) {
        rs = (int32_t *)(w + g->off_rs);
        k->rowsum(g, mb, A, lda, rs);
    }
    int64_t ldap;
    const void *Ap = k->prepare_a(g, mb, A, lda, kws, &ldap);
    for (int64_t n = n0; n < n1; n += g->nb) {
        int64_t nb = n1 - n < g->nb ? n1 - n : g->nb;
        int64_t nbp = qk_i8_roundup(nb, k->info.nr);
        k->compute(g, mb, Ap, ldap, n, nbp, acc, g->nb, kws);
        store_block(g, mb, n, nb, acc, rs, (uint8_t *)C + (size_t)((n - n0) * ldc_n) * es, ldc_m, ldc_n, w, g->nb);
    }
}

void qk_i8gemm_block_rows(const qk_i8gemm *g, int64_t R, int64_t rowlen, int64_t valid, const uint8_t *X,
                          int64_t xs, const int64_t *koff, const int32_t *rs, int64_t n0, int64_t n1, void *C,
                          int64_t ldc_m, int64_t ldc_n, void *ws)
{
    const qk_i8_kernel *k = g->k;
    uint8_t *w = ws;
    int32_t *acc = (int32_t *)w;
    void *kws = w + g->off_kern;
    size_t es = qk_dtype_size(g->out_type);
    if (ldc_n == 1 && n0 % 64 == 0 && qk_i8_small_ok(g)) { /* short K: the output stage in registers */
        for (int64_t r = 0; r < R; r++)
            k->small(g, valid, X + r * rowlen * xs, xs, koff, n0, n1, (uint8_t *)C + (size_t)(r * valid * ldc_m) * es,
                     ldc_m);
        return;
    }
    for (int64_t n = n0; n < n1; n += g->nb) {
        int64_t nb = n1 - n < g->nb ? n1 - n : g->nb;
        int64_t nbp = qk_i8_roundup(nb, k->info.nr);
        k->compute_koff(g, R * rowlen, X, xs, koff, n, nbp, acc, g->nb, kws);
        for (int64_t r = 0; r < R; r++)
            store_block(g, valid, n, nb, acc + r * rowlen * g->nb, rs ? rs + r * rowlen : NULL,
                        (uint8_t *)C + (size_t)(r * valid * ldc_m + (n - n0) * ldc_n) * es, ldc_m, ldc_n, w, g->nb);
    }
}

void qk_i8gemm_store_rows(const qk_i8gemm *g, int64_t R, int64_t rowlen, int64_t valid, const int32_t *acc,
                          int64_t ldacc, const int32_t *rs, int64_t n0, int64_t n1, void *C, int64_t ldc_m,
                          int64_t ldc_n, void *ws)
{
    size_t es = qk_dtype_size(g->out_type);
    for (int64_t r = 0; r < R; r++)
        store_block(g, valid, n0, n1 - n0, acc + r * rowlen * ldacc, rs ? rs + r * rowlen : NULL,
                    (uint8_t *)C + (size_t)(r * valid * ldc_m) * es, ldc_m, ldc_n, ws, ldacc);
}

typedef struct {
    const qk_i8gemm *g;
    int64_t M, nmb, nnb;
    const uint8_t *A;
    int64_t lda;
    uint8_t *C;
    int64_t ldc_m, ldc_n;
    uint8_t *ws;
    size_t ws_stride;
} run_ctx;

static void run_task(void *vctx, int64_t t, int worker)
{
    run_ctx *r = vctx;
    const qk_i8gemm *g = r->g;
    int64_t im = t / r->nnb, in = t % r->nnb;
    int64_t m0 = im * g->mb, n0 = in * g->nb;
    int64_t mb = r->M - m0 < g->mb ? r->M - m0 : g->mb;
    int64_t n1 = n0 + g->nb < g->N ? n0 + g->nb : g->N;
    size_t es = qk_dtype_size(g->out_type);
    qk_i8gemm_block(g, mb, r->A + m0 * r->lda, r->lda, n0, n1, r->C + (size_t)(m0 * r->ldc_m + n0 * r->ldc_n) * es,
                    r->ldc_m, r->ldc_n, r->ws + (size_t)worker * r->ws_stride);
}

qk_status qk_i8gemm_run(const qk_i8gemm *g, int64_t M, const void *A, int64_t lda, void *C, int64_t ldc_m,
                        int64_t ldc_n, qk_pool *pool, void *ws, size_t ws_stride)
{
    if (!g->has_b)
        return qk_error(QK_ERR_STATE, "int8 GEMM: weights were never supplied");
    if (M < 0 || lda < g->K || ldc_n < 1 || (M > 1 && ldc_m < 1))
        return qk_error(QK_ERR_ARG, "int8 GEMM: invalid M=%lld lda=%lld ldc=(%lld, %lld)", (long long)M,
                        (long long)lda, (long long)ldc_m, (long long)ldc_n);
    if (!ws || ws_stride < g->ws_bytes || ((uintptr_t)ws & 63) || (ws_stride & 63))
        return qk_error(QK_ERR_ARG, "int8 GEMM: workspace of %zu bytes per worker (64-aligned) required",
                        g->ws_bytes);
    if (M == 0)
        return QK_OK;
    run_ctx r = {g, M, (M + g->mb - 1) / g->mb, (g->N + g->nb - 1) / g->nb, A, lda, C, ldc_m, ldc_n, ws, ws_stride};
    qk_pool_run(pool, r.nmb * r.nnb, run_task, &r);
    return QK_OK;
}

/* ---------------- reference (the specification) ---------------- */

qk_status qk_i8gemm_ref(const qk_i8gemm_desc *d, int64_t M, const void *A, int64_t lda, void *C, int64_t ldc_m,
                        int64_t ldc_n)
{
    qk_status st = check_desc(d);
    if (st != QK_OK)
        return st;
    if (!d->B)
        return qk_error(QK_ERR_STATE, "int8 GEMM reference: no weights");
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < d->N; n++) {
            int32_t zb = d->nb_zero ? d->b_zero[d->nb_zero == 1 ? 0 : n] : 0;
            uint32_t s = d->bias ? (uint32_t)d->bias[n] : 0;
            for (int64_t k = 0; k < d->K; k++) {
                int32_t a = d->a_type == QK_U8 ? (int32_t)((const uint8_t *)A)[m * lda + k]
                                               : (int32_t)((const int8_t *)A)[m * lda + k];
                s += (uint32_t)((a - d->a_zero) * (b_at(d, k, n) - zb));
            }
            int64_t q = d->rq.n == 1 ? 0 : n;
            int32_t y = qk_requant_value(d->rq.mode, (int32_t)s, d->rq.mult ? d->rq.mult[q] : 0,
                                         d->rq.shift ? d->rq.shift[q] : 0, d->rq.scale ? d->rq.scale[q] : 0.0f,
                                         d->rq.zero_point, d->rq.qmin, d->rq.qmax);
            int64_t o = m * ldc_m + n * ldc_n;
            switch (d->out_type) {
            case QK_U8: ((uint8_t *)C)[o] = (uint8_t)y; break;
            case QK_I8: ((int8_t *)C)[o] = (int8_t)y; break;
            case QK_I16: ((int16_t *)C)[o] = (int16_t)y; break;
            default: ((int32_t *)C)[o] = y; break;
            }
        }
    return QK_OK;
}
