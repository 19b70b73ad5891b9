/* The quant layer's operator table (quant.h). */
#include "qkit/ops.h"
#include "qkit/quant.h"

extern const qk_op qk_op_quantizelinear, qk_op_dequantizelinear; /* qdq_ops.c */
extern const qk_op qk_op_fakequant; /* fakequant_op.c, domain ai.qkit */
extern const qk_op qk_op_learnquant; /* qat_op.c, domain ai.qkit (QAT) */
extern const qk_op qk_op_bn_foldw, qk_op_bn_stats, qk_op_bn_affine, qk_op_bn_unscale; /* qat_bn_op.c (QAT BN folding) */

static const qk_op *const ops[] = { &qk_op_quantizelinear, &qk_op_dequantizelinear, &qk_op_fakequant, &qk_op_learnquant,
                                    &qk_op_bn_foldw, &qk_op_bn_stats, &qk_op_bn_affine, &qk_op_bn_unscale, NULL };

const qk_op_table qk_quant_op_table = { "quant", ops };

qk_status qk_quant_bind(qk_graph *g)
{
    const qk_op_table t[] = { qk_float_op_table, qk_quant_op_table };
    return qk_graph_bind(g, t, 2);
}
