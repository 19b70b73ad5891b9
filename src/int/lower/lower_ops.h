/* Private to src/int/lower_ops*.c: small helpers shared by the ai.qkit
 * operators (lower_internal.h). */
#ifndef QK_INT_LOWER_OPS_H
#define QK_INT_LOWER_OPS_H

#include "lower_internal.h"
#include "../kernels/eltwise8.h"

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

/* The portable QkEpilogue over elements [lo, hi) (lower_ops_epi.c;
 * qk_epi_run and its AVX-512 twin in ../kernels/eltwise8.h). */
void qk_epi_range_ref(const qk_epi_run *e, int64_t lo, int64_t hi);

#endif
