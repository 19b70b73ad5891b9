/* Body of the float row kernels (see fkern.h), included by fkern.c and
 * fkern__avx512.c with FK(name) naming that compilation's copies. The
 * accumulation lanes and their final combination are those of fvec.h
 * (lane l takes elements i + l of each 16-block; qk_vlanes_sum), so these
 * kernels also equal the 4-lane loops they replace. */
#include "fvec.h"

#include <string.h>

/* the 64-byte vectors never cross a call (static helpers, inlined); the
 * compilers' note about their ABI without AVX-512 does not apply */
#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

typedef float fk_v __attribute__((vector_size(64)));
typedef int32_t fk_m __attribute__((vector_size(64)));

static inline fk_v fk_ld(const float *p)
{
    fk_v v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void fk_st(float *p, fk_v v) { memcpy(p, &v, sizeof v); }

/* lanes of acc plus the tail lanes, combined in fvec.h's order */
static inline float fk_sum(fk_v acc, const float *tail)
{
    float a[QK_VB];
    memcpy(a, &acc, sizeof a);
    for (int l = 0; l < QK_VB; l++)
        a[l] += tail[l];
    return qk_vlanes_sum(a);
}

static void FK(relu)(float *restrict y, const float *restrict x, int64_t n)
{
    const fk_v z = { 0 };
    int64_t i = 0;
    for (; i + QK_VB <= n; i += QK_VB) {
        fk_v v = fk_ld(x + i);
        fk_m r = (fk_m)v & ~(v < z);
        memcpy(y + i, &r, sizeof r);
    }
    for (; i < n; i++)
        y[i] = x[i] < 0.0f ? 0.0f : x[i];
}

static void FK(relu_bwd)(float *restrict dx, const float *restrict dy, const float *restrict x, int64_t n, int write)
{
    const fk_v z = { 0 };
    int64_t i = 0;
    if (write) {
        for (; i + QK_VB <= n; i += QK_VB) {
            fk_m r = (fk_m)fk_ld(dy + i) & (fk_ld(x + i) > z);
            memcpy(dx + i, &r, sizeof r);
        }
        for (; i < n; i++)
            dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
        return;
    }
    for (; i + QK_VB <= n; i += QK_VB) {
        fk_m r = (fk_m)fk_ld(dy + i) & (fk_ld(x + i) > z);
        fk_st(dx + i, fk_ld(dx + i) + (fk_v)r);
    }
    for (; i < n; i++)
        dx[i] += x[i] > 0.0f ? dy[i] : 0.0f;
}

static void FK(moments)(const float *restrict x, int64_t n, float shift, double *s1, double *s2)
{
    const fk_v sh = shift - (fk_v){ 0 };
    fk_v a = { 0 }, q = { 0 };
    float ta[QK_VB] = { 0 }, tq[QK_VB] = { 0 };
    int64_t i = 0;
    for (; i + QK_VB <= n; i += QK_VB) {
        fk_v d = fk_ld(x + i) - sh;
        a += d;
        q += d * d;
    }
    for (int l = 0; i < n; i++, l++) {
        float d = x[i] - shift;
        ta[l] = d;
        tq[l] = d * d;
    }
    *s1 += (double)fk_sum(a, ta);
    *s2 += (double)fk_sum(q, tq);
}

static void FK(dsums)(const float *restrict dy, const float *restrict x, int64_t n, float mean, double *s1,
                      double *s2)
{
    const fk_v m = mean - (fk_v){ 0 };
    fk_v a = { 0 }, q = { 0 };
    float ta[QK_VB] = { 0 }, tq[QK_VB] = { 0 };
    int64_t i = 0;
    for (; i + QK_VB <= n; i += QK_VB) {
        fk_v g = fk_ld(dy + i);
        a += g;
        q += g * (fk_ld(x + i) - m);
    }
    for (int l = 0; i < n; i++, l++) {
        ta[l] = dy[i];
        tq[l] = dy[i] * (x[i] - mean);
    }
    *s1 += (double)fk_sum(a, ta);
    *s2 += (double)fk_sum(q, tq);
}

static void FK(bn_dx)(float *restrict dx, const float *restrict dy, const float *restrict x, float gs, float k1,
                      float k0, int64_t n, int write)
{
    const fk_v vg = gs - (fk_v){ 0 }, v1 = k1 - (fk_v){ 0 }, v0 = k0 - (fk_v){ 0 };
    int64_t i = 0;
    if (write) {
        for (; i + QK_VB <= n; i += QK_VB)
            fk_st(dx + i, vg * fk_ld(dy + i) + v1 * fk_ld(x + i) + v0);
        for (; i < n; i++)
            dx[i] = gs * dy[i] + k1 * x[i] + k0;
        return;
    }
    for (; i + QK_VB <= n; i += QK_VB)
        fk_st(dx + i, fk_ld(dx + i) + (vg * fk_ld(dy + i) + v1 * fk_ld(x + i) + v0));
    for (; i < n; i++)
        dx[i] += gs * dy[i] + k1 * x[i] + k0;
}

static void FK(affine)(float *restrict y, const float *restrict x, float a, float b, int64_t n)
{
    const fk_v va = a - (fk_v){ 0 }, vb = b - (fk_v){ 0 };
    int64_t i = 0;
    for (; i + QK_VB <= n; i += QK_VB)
        fk_st(y + i, va * fk_ld(x + i) + vb);
    for (; i < n; i++)
        y[i] = a * x[i] + b;
}

static void FK(affine_relu)(float *restrict y, const float *restrict x, float a, float b, int64_t n)
{
    const fk_v va = a - (fk_v){ 0 }, vb = b - (fk_v){ 0 }, z = { 0 };
    int64_t i = 0;
    for (; i + QK_VB <= n; i += QK_VB) {
        fk_v v = va * fk_ld(x + i) + vb;
        fk_m r = (fk_m)v & ~(v < z);
        memcpy(y + i, &r, sizeof r);
    }
    for (; i < n; i++) {
        float v = a * x[i] + b;
        y[i] = v < 0.0f ? 0.0f : v;
    }
}

/* The fused Relu's backward mask, recomputed from the normalization's
 * input: z = relu(a*x + b) > 0 exactly when a*x + b > 0 (NaN: neither). */
static void FK(dsums_relu)(const float *restrict dz, const float *restrict x, float a, float b, int64_t n,
                           float mean, double *s1, double *s2)
{
    const fk_v va = a - (fk_v){ 0 }, vb = b - (fk_v){ 0 }, m = mean - (fk_v){ 0 }, z = { 0 };
    fk_v sa = { 0 }, q = { 0 };
    float ta[QK_VB] = { 0 }, tq[QK_VB] = { 0 };
    int64_t i = 0;
    for (; i + QK_VB <= n; i += QK_VB) {
        fk_v xv = fk_ld(x + i);
        fk_v g = (fk_v)((fk_m)fk_ld(dz + i) & (va * xv + vb > z));
        sa += g;
        q += g * (xv - m);
    }
    for (int l = 0; i < n; i++, l++) {
        float g = a * x[i] + b > 0.0f ? dz[i] : 0.0f;
        ta[l] = g;
        tq[l] = g * (x[i] - mean);
    }
    *s1 += (double)fk_sum(sa, ta);
    *s2 += (double)fk_sum(q, tq);
}

static void FK(bn_dx_relu)(float *restrict dx, const float *restrict dz, const float *restrict x, float a, float b,
                           float gs, float k1, float k0, int64_t n, int write)
{
    const fk_v va = a - (fk_v){ 0 }, vb = b - (fk_v){ 0 }, z = { 0 };
    const fk_v vg = gs - (fk_v){ 0 }, v1 = k1 - (fk_v){ 0 }, v0 = k0 - (fk_v){ 0 };
    int64_t i = 0;
    for (; i + QK_VB <= n; i += QK_VB) {
        fk_v xv = fk_ld(x + i);
        fk_v g = (fk_v)((fk_m)fk_ld(dz + i) & (va * xv + vb > z));
        fk_v v = vg * g + v1 * xv + v0;
        fk_st(dx + i, write ? v : fk_ld(dx + i) + v);
    }
    for (; i < n; i++) {
        float g = a * x[i] + b > 0.0f ? dz[i] : 0.0f, v = gs * g + k1 * x[i] + k0;
        dx[i] = write ? v : dx[i] + v;
    }
}

/* Clip: min(max(v, lo), hi) as the Clip op computes it (a NaN passes);
 * its backward mask lo <= v <= hi (false for NaN). */
static inline fk_v fk_clamp(fk_v v, fk_v lo, fk_v hi)
{
    fk_m m = v < lo;
    v = (fk_v)(((fk_m)v & ~m) | ((fk_m)lo & m));
    m = v > hi;
    return (fk_v)(((fk_m)v & ~m) | ((fk_m)hi & m));
}

static inline float fk_clamp1(float v, float lo, float hi)
{
    v = v < lo ? lo : v;
    return v > hi ? hi : v;
}

static inline fk_m fk_inside(fk_v v, fk_v lo, fk_v hi) { return (v >= lo) & (v <= hi); }

static void FK(clip)(float *restrict y, const float *restrict x, float lo, float hi, int64_t n)
{
    const fk_v vl = lo - (fk_v){ 0 }, vh = hi - (fk_v){ 0 };
    int64_t i = 0;
    for (; i + QK_VB <= n; i += QK_VB)
        fk_st(y + i, fk_clamp(fk_ld(x + i), vl, vh));
    for (; i < n; i++)
        y[i] = fk_clamp1(x[i], lo, hi);
}

static void FK(clip_bwd)(float *restrict dx, const float *restrict dy, const float *restrict x, float lo, float hi,
                         int64_t n, int write)
{
    const fk_v vl = lo - (fk_v){ 0 }, vh = hi - (fk_v){ 0 };
    int64_t i = 0;
    for (; i + QK_VB <= n; i += QK_VB) {
        fk_v g = (fk_v)((fk_m)fk_ld(dy + i) & fk_inside(fk_ld(x + i), vl, vh));
        fk_st(dx + i, write ? g : fk_ld(dx + i) + g);
    }
    for (; i < n; i++) {
        float g = x[i] >= lo && x[i] <= hi ? dy[i] : 0.0f;
        dx[i] = write ? g : dx[i] + g;
    }
}

static void FK(affine_clip)(float *restrict y, const float *restrict x, const float ab[4], int64_t n)
{
    const float a = ab[0], b = ab[1], lo = ab[2], hi = ab[3];
    const fk_v va = a - (fk_v){ 0 }, vb = b - (fk_v){ 0 }, vl = lo - (fk_v){ 0 }, vh = hi - (fk_v){ 0 };
    int64_t i = 0;
    for (; i + QK_VB <= n; i += QK_VB)
        fk_st(y + i, fk_clamp(va * fk_ld(x + i) + vb, vl, vh));
    for (; i < n; i++)
        y[i] = fk_clamp1(a * x[i] + b, lo, hi);
}

static void FK(dsums_clip)(const float *restrict dz, const float *restrict x, const float ab[4], int64_t n,
                           float mean, double *s1, double *s2)
{
    const float a = ab[0], b = ab[1], lo = ab[2], hi = ab[3];
    const fk_v va = a - (fk_v){ 0 }, vb = b - (fk_v){ 0 }, vl = lo - (fk_v){ 0 }, vh = hi - (fk_v){ 0 };
    const fk_v m = mean - (fk_v){ 0 };
    fk_v sa = { 0 }, q = { 0 };
    float ta[QK_VB] = { 0 }, tq[QK_VB] = { 0 };
    int64_t i = 0;
    for (; i + QK_VB <= n; i += QK_VB) {
        fk_v xv = fk_ld(x + i);
        fk_v g = (fk_v)((fk_m)fk_ld(dz + i) & fk_inside(va * xv + vb, vl, vh));
        sa += g;
        q += g * (xv - m);
    }
    for (int l = 0; i < n; i++, l++) {
        float z = a * x[i] + b, g = z >= lo && z <= hi ? dz[i] : 0.0f;
        ta[l] = g;
        tq[l] = g * (x[i] - mean);
    }
    *s1 += (double)fk_sum(sa, ta);
    *s2 += (double)fk_sum(q, tq);
}

static void FK(bn_dx_clip)(float *restrict dx, const float *restrict dz, const float *restrict x, const float ab[4],
                           float gs, float k1, float k0, int64_t n, int write)
{
    const float a = ab[0], b = ab[1], lo = ab[2], hi = ab[3];
    const fk_v va = a - (fk_v){ 0 }, vb = b - (fk_v){ 0 }, vl = lo - (fk_v){ 0 }, vh = hi - (fk_v){ 0 };
    const fk_v vg = gs - (fk_v){ 0 }, v1 = k1 - (fk_v){ 0 }, v0 = k0 - (fk_v){ 0 };
    int64_t i = 0;
    for (; i + QK_VB <= n; i += QK_VB) {
        fk_v xv = fk_ld(x + i);
        fk_v g = (fk_v)((fk_m)fk_ld(dz + i) & fk_inside(va * xv + vb, vl, vh));
        fk_v v = vg * g + v1 * xv + v0;
        fk_st(dx + i, write ? v : fk_ld(dx + i) + v);
    }
    for (; i < n; i++) {
        float z = a * x[i] + b, g = z >= lo && z <= hi ? dz[i] : 0.0f, v = gs * g + k1 * x[i] + k0;
        dx[i] = write ? v : dx[i] + v;
    }
}

static void FK(add)(float *restrict y, const float *restrict x, int64_t n)
{
    int64_t i = 0;
    for (; i + QK_VB <= n; i += QK_VB)
        fk_st(y + i, fk_ld(y + i) + fk_ld(x + i));
    for (; i < n; i++)
        y[i] += x[i];
}

static void FK(add2)(float *restrict y, const float *restrict a, const float *restrict b, int64_t n)
{
    int64_t i = 0;
    for (; i + QK_VB <= n; i += QK_VB)
        fk_st(y + i, fk_ld(a + i) + fk_ld(b + i));
    for (; i < n; i++)
        y[i] = a[i] + b[i];
}

static void FK(add2_relu)(float *restrict y, const float *restrict a, const float *restrict b, int64_t n)
{
    const fk_v z = { 0 };
    int64_t i = 0;
    for (; i + QK_VB <= n; i += QK_VB) {
        fk_v v = fk_ld(a + i) + fk_ld(b + i);
        fk_m r = (fk_m)v & ~(v < z);
        memcpy(y + i, &r, sizeof r);
    }
    for (; i < n; i++) {
        float v = a[i] + b[i];
        y[i] = v < 0.0f ? 0.0f : v;
    }
}

#define FK_TABLE                                                                                         \
    {                                                                                                    \
        .relu = FK(relu), .relu_bwd = FK(relu_bwd), .moments = FK(moments), .dsums = FK(dsums),          \
        .bn_dx = FK(bn_dx), .affine = FK(affine), .add = FK(add), .add2 = FK(add2),                      \
        .add2_relu = FK(add2_relu), .affine_relu = FK(affine_relu), .dsums_relu = FK(dsums_relu), .bn_dx_relu = FK(bn_dx_relu),      \
        .clip = FK(clip), .clip_bwd = FK(clip_bwd), .affine_clip = FK(affine_clip),                     \
        .dsums_clip = FK(dsums_clip), .bn_dx_clip = FK(bn_dx_clip),                                     \
    }
