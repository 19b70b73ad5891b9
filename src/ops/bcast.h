/* numpy multidirectional broadcasting for the plain operators of
 * compare.c, unary.c (Pow) and layout.c (Expand): output shape of up to 4
 * operands and per-operand element strides (0 along broadcast dims).
 * Not a public header. */
#ifndef QK_OPS_BCAST_H
#define QK_OPS_BCAST_H

#include "light_util.h"

#define QK_BC_MAX 4

typedef struct qk_bcast {
    int nd, nop;
    int64_t dims[QK_MAX_DIMS];
    int64_t st[QK_BC_MAX][QK_MAX_DIMS];
    int64_t numel;
} qk_bcast;

/* Output shape of operands t[0..nop); QK_ERR_SHAPE when not broadcastable. */
static inline qk_status qk_bcast_shape(int nop, const qk_tensor *const *t, int *nd_out, int64_t *d)
{
    int nd = 0;
    for (int k = 0; k < nop; k++)
        nd = t[k]->ndim > nd ? t[k]->ndim : nd;
    for (int i = 0; i < nd; i++) {
        int64_t v = 1;
        for (int k = 0; k < nop; k++) {
            int j = i - (nd - t[k]->ndim);
            int64_t dk = j >= 0 ? t[k]->dims[j] : 1;
            if (dk == 1)
                continue;
            if (v != 1 && v != dk) {
                char a[128], b[128];
                return qk_error(QK_ERR_SHAPE, "shapes %s and %s are not broadcastable",
                                qk_shape_str(t[0], a, sizeof a), qk_shape_str(t[k], b, sizeof b));
            }
            v = dk;
        }
        d[i] = v;
    }
    *nd_out = nd;
    return QK_OK;
}

/* Strides of each operand against output shape (nd, dims). */
static inline void qk_bcast_init(qk_bcast *b, int nd, const int64_t *dims, int nop, const qk_tensor *const *t)
{
    b->nd = nd;
    b->nop = nop;
    memcpy(b->dims, dims, (size_t)nd * sizeof(int64_t));
    b->numel = qk_lt_prod(dims, 0, nd);
    for (int k = 0; k < nop; k++) {
        int64_t s = 1;
        for (int i = nd - 1; i >= 0; i--) {
            int j = i - (nd - t[k]->ndim);
            int64_t dk = j >= 0 ? t[k]->dims[j] : 1;
            b->st[k][i] = dk == 1 ? 0 : s;
            s *= dk;
        }
    }
}

/* Offsets of output element e in each operand. */
static inline void qk_bcast_off(const qk_bcast *b, int64_t e, int64_t *off)
{
    for (int k = 0; k < b->nop; k++)
        off[k] = 0;
    for (int i = b->nd - 1; i >= 0; i--) {
        int64_t c = e % b->dims[i];
        e /= b->dims[i];
        for (int k = 0; k < b->nop; k++)
            off[k] += c * b->st[k][i];
    }
}

/* Element i of a tensor of any supported dtype as double; store back. */
static inline double qk_elem_get(const qk_tensor *t, int64_t i)
{
    switch (t->dtype) {
    case QK_F32: return qk_f32(t)[i];
    case QK_I64: return (double)((const int64_t *)t->data)[i];
    case QK_I32: return ((const int32_t *)t->data)[i];
    case QK_I8: return ((const int8_t *)t->data)[i];
    case QK_I16: return ((const int16_t *)t->data)[i];
    case QK_U8: return ((const uint8_t *)t->data)[i];
    }
    return 0;
}

static inline void qk_elem_set(qk_tensor *t, int64_t i, double v)
{
    switch (t->dtype) {
    case QK_F32: qk_f32(t)[i] = (float)v; break;
    case QK_I64: ((int64_t *)t->data)[i] = (int64_t)v; break;
    case QK_I32: ((int32_t *)t->data)[i] = (int32_t)v; break;
    case QK_I8: ((int8_t *)t->data)[i] = (int8_t)v; break;
    case QK_I16: ((int16_t *)t->data)[i] = (int16_t)v; break;
    case QK_U8: ((uint8_t *)t->data)[i] = (uint8_t)v; break;
    }
}

#endif
