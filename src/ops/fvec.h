/* Small float vector loops written so that gcc -O2 (whose "very cheap"
 * vectorizer only takes loops with a known trip count and no alias checks)
 * and clang vectorize them: blocks of 16 with a constant inner count on
 * restrict pointers, then a scalar tail. Reductions use four 4-lane GNU C
 * vectors (gcc and clang; SSE2 registers on any x86-64) as accumulators so
 * they stay in registers; 16 lanes are combined in a fixed order. Results
 * are identical on every ISA (no FMA contraction under -std=c11). */
#ifndef QKIT_OPS_FVEC_H
#define QKIT_OPS_FVEC_H

#include <stdint.h>
#include <string.h>

#define QK_VB 16

/* y[i] += x[i] */
/* A hint: the n floats at p into the cache, one request per 64 bytes (no
 * effect on results). For short runs far apart, which the hardware
 * prefetchers do not follow: a plane or row a sample or a channel away. */
static inline void qk_prefetch_floats(const float *p, int64_t n)
{
    for (int64_t i = 0; i < n; i += 16)
        __builtin_prefetch(p + i);
}

static inline void qk_vadd(float *restrict y, const float *restrict x, int64_t n)
{
    int64_t i = 0;
    for (; i + QK_VB <= n; i += QK_VB)
        for (int l = 0; l < QK_VB; l++)
            y[i + l] += x[i + l];
    for (; i < n; i++)
        y[i] += x[i];
}

/* y[i] += a * x[i] */
static inline void qk_vaxpy(float *restrict y, float a, const float *restrict x, int64_t n)
{
    int64_t i = 0;
    for (; i + QK_VB <= n; i += QK_VB)
        for (int l = 0; l < QK_VB; l++)
            y[i + l] += a * x[i + l];
    for (; i < n; i++)
        y[i] += a * x[i];
}

/* y[i] = a * x[i] + b */
static inline void qk_vaffine(float *restrict y, const float *restrict x, float a, float b, int64_t n)
{
    int64_t i = 0;
    for (; i + QK_VB <= n; i += QK_VB)
        for (int l = 0; l < QK_VB; l++)
            y[i + l] = a * x[i + l] + b;
    for (; i < n; i++)
        y[i] = a * x[i] + b;
}

/* y[i] += c */
static inline void qk_vaddc(float *restrict y, float c, int64_t n)
{
    int64_t i = 0;
    for (; i + QK_VB <= n; i += QK_VB)
        for (int l = 0; l < QK_VB; l++)
            y[i + l] += c;
    for (; i < n; i++)
        y[i] += c;
}

/* y[i] = v */
static inline void qk_vfill(float *restrict y, float v, int64_t n)
{
    int64_t i = 0;
    for (; i + QK_VB <= n; i += QK_VB)
        for (int l = 0; l < QK_VB; l++)
            y[i + l] = v;
    for (; i < n; i++)
        y[i] = v;
}

/* Combine 16 lanes in a fixed tree order. */
static inline float qk_vlanes_sum(const float *a)
{
    float t[8];
    for (int l = 0; l < 8; l++)
        t[l] = a[l] + a[l + 8];
    return ((t[0] + t[4]) + (t[1] + t[5])) + ((t[2] + t[6]) + (t[3] + t[7]));
}

typedef float qk_f4 __attribute__((vector_size(16)));
typedef int32_t qk_i4 __attribute__((vector_size(16))); /* lane masks of qk_f4 compares */

static inline qk_f4 qk_f4_ld(const float *p)
{
    qk_f4 v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* 16 lanes of a0..a3 (lane l of a_k is lane 4k + l) plus scalar tail lanes. */
static inline float qk_f4_sum(qk_f4 a0, qk_f4 a1, qk_f4 a2, qk_f4 a3, const float *tail)
{
    float a[QK_VB];
    memcpy(a, &a0, 16);
    memcpy(a + 4, &a1, 16);
    memcpy(a + 8, &a2, 16);
    memcpy(a + 12, &a3, 16);
    for (int l = 0; l < QK_VB; l++)
        a[l] += tail[l];
    return qk_vlanes_sum(a);
}

/* sum x[i] */
static inline float qk_vsum(const float *restrict x, int64_t n)
{
    qk_f4 a0 = { 0 }, a1 = { 0 }, a2 = { 0 }, a3 = { 0 };
    float t[QK_VB] = { 0 };
    int64_t i = 0;
    for (; i + QK_VB <= n; i += QK_VB) {
        a0 += qk_f4_ld(x + i);
        a1 += qk_f4_ld(x + i + 4);
        a2 += qk_f4_ld(x + i + 8);
        a3 += qk_f4_ld(x + i + 12);
    }
    for (int l = 0; i < n; i++, l++)
        t[l] = x[i];
    return qk_f4_sum(a0, a1, a2, a3, t);
}

/* sum x[i] * y[i] */
static inline float qk_vdot(const float *restrict x, const float *restrict y, int64_t n)
{
    qk_f4 a0 = { 0 }, a1 = { 0 }, a2 = { 0 }, a3 = { 0 };
    float t[QK_VB] = { 0 };
    int64_t i = 0;
    for (; i + QK_VB <= n; i += QK_VB) {
        a0 += qk_f4_ld(x + i) * qk_f4_ld(y + i);
        a1 += qk_f4_ld(x + i + 4) * qk_f4_ld(y + i + 4);
        a2 += qk_f4_ld(x + i + 8) * qk_f4_ld(y + i + 8);
        a3 += qk_f4_ld(x + i + 12) * qk_f4_ld(y + i + 12);
    }
    for (int l = 0; i < n; i++, l++)
        t[l] = x[i] * y[i];
    return qk_f4_sum(a0, a1, a2, a3, t);
}

#endif
