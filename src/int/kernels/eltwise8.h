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
