/* The float operator table of the ops layer (ops.h). Each operator file
 * defines one `const qk_op`; this file lists them. */
#include "qkit/ops.h"

extern const qk_op qk_op_conv;
extern const qk_op qk_op_gemm, qk_op_matmul; /* gemm_op.c */
extern const qk_op qk_op_batchnorm; /* batchnorm.c */
extern const qk_op qk_op_maxpool, qk_op_averagepool, qk_op_globalaveragepool; /* pool.c */
extern const qk_op qk_op_relu, qk_op_clip, qk_op_hardsigmoid, qk_op_hardswish, qk_op_sigmoid; /* activation.c */
extern const qk_op qk_op_add, qk_op_sub, qk_op_mul, qk_op_div; /* eltwise.c */
extern const qk_op qk_op_identity, qk_op_dropout, qk_op_flatten, qk_op_reshape, qk_op_squeeze, qk_op_unsqueeze,
    qk_op_concat, qk_op_gather, qk_op_shape, qk_op_constant; /* shape_ops.c */
extern const qk_op qk_op_softmax, qk_op_logsoftmax, qk_op_sce; /* softmax.c */

static const qk_op *const ops[] = {
    &qk_op_conv,
    &qk_op_gemm, &qk_op_matmul,
    &qk_op_batchnorm,
    &qk_op_maxpool, &qk_op_averagepool, &qk_op_globalaveragepool,
    &qk_op_relu, &qk_op_clip, &qk_op_hardsigmoid, &qk_op_hardswish, &qk_op_sigmoid,
    &qk_op_add, &qk_op_sub, &qk_op_mul, &qk_op_div,
    &qk_op_identity, &qk_op_dropout, &qk_op_flatten, &qk_op_reshape, &qk_op_squeeze, &qk_op_unsqueeze,
    &qk_op_concat, &qk_op_gather, &qk_op_shape, &qk_op_constant,
    &qk_op_softmax, &qk_op_logsoftmax, &qk_op_sce,
    NULL
};

const qk_op_table qk_float_op_table = { "float", ops };
