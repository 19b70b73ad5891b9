/* Private to src/int/lower_ops*.c: small helpers shared by the ai.qkit
 * operators (lower_internal.h). */
#ifndef QK_INT_LOWER_OPS_H
#define QK_INT_LOWER_OPS_H

#include "lower_internal.h"

static inline int is_q8(qk_dtype t) { return t == QK_U8 || t == QK_I8; }

static inline int32_t ld(qk_dtype t, const void *p, int64_t i)
{
    switch (t) {
    case QK_U8: return ((const uint8_t *)p)[i];
    case QK_I8: return ((const int8_t *)p)[i];
    default: return ((const int32_t *)p)[i];
    }
}

static inline void st8(qk_dtype t, void *p, int64_t i, int32_t v)
{
    if (t == QK_U8)
        ((uint8_t *)p)[i] = (uint8_t)v;
    else
        ((int8_t *)p)[i] = (int8_t)v;
}

/* Output-stage attributes shared by the ops. */
typedef struct ostage {
    qk_dtype out;
    int32_t zp, qmin, qmax;
} ostage;

static inline qk_status ostage_read(const qk_node *n, ostage *o)
{
    o->out = (qk_dtype)qk_node_int(n, "out_type", QK_U8);
    o->zp = (int32_t)qk_node_int(n, "y_zero_point", 0);
    int32_t lo, hi;
    qk_int_range(o->out, &lo, &hi);
    o->qmin = (int32_t)qk_node_int(n, "qmin", lo);
    o->qmax = (int32_t)qk_node_int(n, "qmax", hi);
    if (!is_q8(o->out) && o->out != QK_I32)
        return qk_error(QK_ERR_ARG, "%s '%s': out_type %d is not uint8, int8 or int32", n->op_type, n->name,
                        (int)o->out);
    if (o->qmin < lo || o->qmax > hi || o->qmin > o->qmax || o->zp < lo || o->zp > hi)
        return qk_error(QK_ERR_ARG, "%s '%s': zero point %d / clamp [%d, %d] outside %s's range", n->op_type,
                        n->name, o->zp, o->qmin, o->qmax, qk_dtype_name(o->out));
    return QK_OK;
}

static inline qk_status need_init(qk_graph *g, const qk_node *n, int i, qk_dtype dt, const char *what)
{
    const qk_value *v = qk_in(g, n, i);
    if (!v || (v->kind != QK_VALUE_PARAM && v->kind != QK_VALUE_CONST) || v->t.dtype != dt || !v->t.data)
        return qk_error(QK_ERR_ARG, "%s '%s': input %d (%s) must be a %s initializer", n->op_type, n->name, i, what,
                        qk_dtype_name(dt));
    return QK_OK;
}

static inline void plain_destroy(qk_node *n)
{
    qk_free(n->state);
    n->state = NULL;
}

/* QkEpilogue over elements [lo, hi) (lower_ops_epi.c): the reference and
 * an AVX-512 variant (qk_f32_epilogue__avx512.c), bit-identical. */
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
void qk_epi_range_ref(const qk_epi_run *e, int64_t lo, int64_t hi);
void qk_epi_range__avx512(const qk_epi_run *e, int64_t lo, int64_t hi);

 /* QkAdd FP32 arithmetic on 8-bit codes, elements [i0, i1) (u*: 1 uint8, 0
 * int8); the same codes as the portable loop in lower_ops.c */
void qk_qadd8__avx512(const void *a, int ua, const void *b, int ub, void *y, int uy, int64_t i0, int64_t i1, float ra,
                      int32_t za, float rb, int32_t zb, float lo, float hi, int32_t zp);
/* The same in gemmlowp arithmetic: qk_qadd_value's codes (multipliers >= 0) */
void qk_qadd8_gemmlowp__avx512(const qk_qadd *p, const void *a, int ua, const void *b, int ub, void *y, int64_t i0,
                               int64_t i1);

#endif
