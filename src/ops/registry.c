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

extern const qk_op qk_op_transpose, qk_op_slice, qk_op_split, qk_op_expand, qk_op_tile; /* layout.c */
extern const qk_op qk_op_cast, qk_op_castlike, qk_op_constantofshape, qk_op_range; /* tensor_gen.c */
extern const qk_op qk_op_equal, qk_op_less, qk_op_greater, qk_op_lessorequal, qk_op_greaterorequal, qk_op_and,
    qk_op_or, qk_op_xor, qk_op_not, qk_op_where; /* compare.c */
extern const qk_op qk_op_sqrt, qk_op_exp, qk_op_log, qk_op_neg, qk_op_abs, qk_op_reciprocal, qk_op_erf, qk_op_gelu,
    qk_op_softplus, qk_op_softsign, qk_op_mish, qk_op_tanh, qk_op_sin, qk_op_cos, qk_op_floor, qk_op_ceil,
    qk_op_round, qk_op_sign, qk_op_elu, qk_op_selu, qk_op_celu, qk_op_leakyrelu, qk_op_thresholdedrelu,
    qk_op_pow; /* unary.c */
extern const qk_op qk_op_reducemean, qk_op_reducesum, qk_op_reducemax, qk_op_reducemin, qk_op_reduceprod,
    qk_op_reducel1, qk_op_reducel2, qk_op_reducesumsquare, qk_op_reducelogsum, qk_op_reducelogsumexp; /* reduce.c */
extern const qk_op qk_op_pad; /* pad.c */
extern const qk_op qk_op_layernormalization, qk_op_instancenormalization; /* norm.c */
extern const qk_op qk_op_resize, qk_op_upsample; /* resize.c */
extern const qk_op qk_op_convtranspose; /* conv_transpose.c */
extern const qk_op qk_op_distill_loss; /* distill.c, domain ai.qkit (training with a teacher) */

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

    &qk_op_transpose, &qk_op_slice, &qk_op_split, &qk_op_expand, &qk_op_tile,
    &qk_op_cast, &qk_op_castlike, &qk_op_constantofshape, &qk_op_range,
    &qk_op_equal, &qk_op_less, &qk_op_greater, &qk_op_lessorequal, &qk_op_greaterorequal, &qk_op_and,
    &qk_op_or, &qk_op_xor, &qk_op_not, &qk_op_where,
    &qk_op_sqrt, &qk_op_exp, &qk_op_log, &qk_op_neg, &qk_op_abs, &qk_op_reciprocal, &qk_op_erf, &qk_op_gelu,
    &qk_op_softplus, &qk_op_softsign, &qk_op_mish, &qk_op_tanh, &qk_op_sin, &qk_op_cos, &qk_op_floor, &qk_op_ceil,
    &qk_op_round, &qk_op_sign, &qk_op_elu, &qk_op_selu, &qk_op_celu, &qk_op_leakyrelu, &qk_op_thresholdedrelu,
    &qk_op_pow,
    &qk_op_reducemean, &qk_op_reducesum, &qk_op_reducemax, &qk_op_reducemin, &qk_op_reduceprod,
    &qk_op_reducel1, &qk_op_reducel2, &qk_op_reducesumsquare, &qk_op_reducelogsum, &qk_op_reducelogsumexp,
    &qk_op_pad, &qk_op_layernormalization, &qk_op_instancenormalization,
    &qk_op_resize, &qk_op_upsample,
    &qk_op_convtranspose,
    &qk_op_distill_loss,

    NULL
};

const qk_op_table qk_float_op_table = { "float", ops };
