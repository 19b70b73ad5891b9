/* Float row kernels of the training hot path (Relu, BatchNormalization, Add,
 * col2im), written once in fkern_body.h with 16-lane GNU C vectors and
 * compiled twice: fkern.c for any x86-64 (the compiler splits each vector
 * into SSE2 registers) and fkern__avx512.c (one zmm register). Both
 * compilations perform the same IEEE operations lane by lane (no FMA
 * contraction: -ffp-contract=off) and combine lanes in the same order, so
 * results are bit-identical whichever runs; qk_fk() picks one once from the
 * CPU (QKIT_ISA=ref forces the portable one). */
#ifndef QKIT_OPS_FKERN_H
#define QKIT_OPS_FKERN_H

#include <stdint.h>

typedef struct qk_fkern {
    /* y = max(x, 0) (+0 for x < 0, x itself otherwise: -0 and NaN pass) */
    void (*relu)(float *y, const float *x, int64_t n);
    /* dx = (or +=, when !write) dy where x > 0, else +0 */
    void (*relu_bwd)(float *dx, const float *dy, const float *x, int64_t n, int write);
    /* *s1 += sum(x - shift), *s2 += sum((x - shift)^2) */
    void (*moments)(const float *x, int64_t n, float shift, double *s1, double *s2);
    /* *s1 += sum(dy), *s2 += sum(dy * (x - mean)) */
    void (*dsums)(const float *dy, const float *x, int64_t n, float mean, double *s1, double *s2);
    /* dx = (or +=) gs * dy + k1 * x + k0 */
    void (*bn_dx)(float *dx, const float *dy, const float *x, float gs, float k1, float k0, int64_t n, int write);
    /* y = a * x + b */
    void (*affine)(float *y, const float *x, float a, float b, int64_t n);
    /* y = relu(a * x + b): affine, then relu, bit for bit */
    void (*affine_relu)(float *y, const float *x, float a, float b, int64_t n);
    /* dsums and bn_dx of dy = (dz where a * x + b > 0, else +0): the Relu
     * backward folded into BatchNormalization's, its mask recomputed from
     * the input with the forward's a, b (same values as the two passes) */
    void (*dsums_relu)(const float *dz, const float *x, float a, float b, int64_t n, float mean, double *s1,
                       double *s2);
    void (*bn_dx_relu)(float *dx, const float *dz, const float *x, float a, float b, float gs, float k1, float k0,
                       int64_t n, int write);
    /* Clip (ReLU6 and the like): y = min(max(x, lo), hi), a NaN passes */
    void (*clip)(float *y, const float *x, float lo, float hi, int64_t n);
    /* dx = (or +=) dy where lo <= x <= hi, else +0 */
    void (*clip_bwd)(float *dx, const float *dy, const float *x, float lo, float hi, int64_t n, int write);
    /* ab = { a, b, lo, hi }: y = clip(a * x + b, lo, hi), affine then clip bit for bit */
    void (*affine_clip)(float *y, const float *x, const float ab[4], int64_t n);
    /* dsums and bn_dx of dy = (dz where lo <= a * x + b <= hi, else +0): a
     * fused Clip's backward, its mask recomputed from the normalization's
     * input with the forward's a, b */
    void (*dsums_clip)(const float *dz, const float *x, const float ab[4], int64_t n, float mean, double *s1,
                       double *s2);
    void (*bn_dx_clip)(float *dx, const float *dz, const float *x, const float ab[4], float gs, float k1, float k0,
                       int64_t n, int write);
    /* y += x */
    void (*add)(float *y, const float *x, int64_t n);
    /* y = a + b */
    void (*add2)(float *y, const float *a, const float *b, int64_t n);
    /* y = relu(a + b) */
    void (*add2_relu)(float *y, const float *a, const float *b, int64_t n);
} qk_fkern;

const qk_fkern *qk_fk(void);

extern const qk_fkern qk_fkern_ref, qk_fkern_avx512;

#endif
