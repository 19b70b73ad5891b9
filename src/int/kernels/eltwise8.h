/* Internal to src/int: element-wise AVX-512 kernels on 8-bit codes that
 * the lowered ai.qkit operators call (src/int/lower). Each matches a
 * portable loop of its operator bit for bit; callers check the dispatch
 * level (qk_cpu_isa) first. */
#ifndef QK_INT_ELTWISE8_H
#define QK_INT_ELTWISE8_H

#include "qkit/int.h"

/* QkEpilogue over elements [lo, hi): an AVX-512 variant
 * (qk_f32_epilogue__avx512.c) bit-identical to the portable loop
 * qk_epi_range_ref of src/int/lower/lower_ops_epi.c. */
typedef struct qk_epi_run {
    qk_dtype at, bt, out;       /* a: U8 / I8 / I32; b: F32 or integer; out U8 / I8 */
    const void *a, *b;          /* b NULL: no Add */
    int b_int, relu;
    int32_t za, zb, zy;
    float ys;
    const float *sa, *sb;       /* nsa / nsb entries: 1 or C */
    int64_t nsa, nsb, C, run;   /* run: consecutive elements of one channel (1 for NHWC) */
    void *y;
} qk_epi_run;
/* The scales of the vector passes, V lanes: for NHWC (run 1) tables ta, tb
 * of C + V entries (entry k: channel k % C), so V consecutive elements read
 * V consecutive entries from the first one's channel; returns 1 when built
 * (C <= QK_EPI_TAB), else 0 and the pass gathers per element (qk_epi_gather:
 * n elements from channel *c, position *r of its run, both advanced). */
#define QK_EPI_TAB 1024
static inline int qk_epi_tables(const qk_epi_run *e, int V, float *ta, float *tb)
{
    if (e->run != 1 || e->C > QK_EPI_TAB)
        return 0;
    for (int64_t k = 0; k < e->C + V; k++) {
        ta[k] = e->sa[e->nsa == 1 ? 0 : k % e->C];
        tb[k] = e->sb ? e->sb[e->nsb == 1 ? 0 : k % e->C] : 0.0f;
    }
    return 1;
}

static inline void qk_epi_gather(const qk_epi_run *e, int n, int64_t *c, int64_t *r, float *sa, float *sb)
{
    for (int k = 0; k < n; k++) {
        sa[k] = e->sa[e->nsa == 1 ? 0 : *c];
        sb[k] = e->sb ? e->sb[e->nsb == 1 ? 0 : *c] : 0.0f;
        if (++*r == e->run)
            *r = 0, *c = *c + 1 < e->C ? *c + 1 : 0;
    }
}

void qk_epi_range__avx512(const qk_epi_run *e, int64_t lo, int64_t hi);
/* The same with AVX2 over [lo, lo + 8k), the largest such range in
 * [lo, hi) (qk_f32_epilogue__avx2.c); returns its end, where the caller
 * goes on with the reference. */
int64_t qk_epi_range__avx2(const qk_epi_run *e, int64_t lo, int64_t hi);

/* QkAdd FP32 arithmetic on 8-bit codes, elements [i0, i1) (u*: 1 uint8, 0
 * int8); the same codes as the portable loop in src/int/lower/lower_ops.c */
void qk_qadd8__avx512(const void *a, int ua, const void *b, int ub, void *y, int uy, int64_t i0, int64_t i1, float ra,
                      int32_t za, float rb, int32_t zb, float lo, float hi, int32_t zp);
/* The same with AVX2 over [i0, i0 + 8k), the largest such range in [i0, i1);
 * returns its end (qk_f32_epilogue__avx2.c). */
int64_t qk_qadd8__avx2(const void *a, int ua, const void *b, int ub, void *y, int64_t i0, int64_t i1, float ra,
                       int32_t za, float rb, int32_t zb, float lo, float hi, int32_t zp);
/* The same in gemmlowp arithmetic: qk_qadd_value's codes (multipliers >= 0) */
void qk_qadd8_gemmlowp__avx512(const qk_qadd *p, const void *a, int ua, const void *b, int ub, void *y, int64_t i0,
                               int64_t i1);

#endif
