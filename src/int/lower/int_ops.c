/* The int layer's operator table (int.h) and binding with the tables of
 * the layers below (qk_lower_bind, qrun.h). */
#include "lower_internal.h"
#include "qkit/ops.h"
#include "qkit/quant.h"

static const qk_op *const ops[] = {
    &qk_op_qlinearconv, &qk_op_convinteger, &qk_op_qlinearmatmul, &qk_op_matmulinteger,
    &qk_op_qkconv, &qk_op_qkgemm, &qk_op_qkadd, &qk_op_qkpool, &qk_op_qkconcat, &qk_op_qkrequant,
    &qk_op_qkepilogue, NULL
};

const qk_op_table qk_int_op_table = { "int", ops };

qk_status qk_lower_bind(qk_graph *g)
{
    const qk_op_table t[] = { qk_float_op_table, qk_quant_op_table, qk_int_op_table };
    return qk_graph_bind(g, t, 3);
}
