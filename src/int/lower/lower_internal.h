/* Private to src/int/lower*.c: the integer operators of a lowered graph
 * (domain "ai.qkit") and helpers shared by the lowering pass and the runner. */
#ifndef QK_INT_LOWER_INTERNAL_H
#define QK_INT_LOWER_INTERNAL_H

#include "qkit/int.h"
#include "qkit/qrun.h"

/* The ai.qkit operators (lower_ops.c). Every one is forward only and takes
 * all of its quantization parameters from attributes and initializer
 * inputs, so a lowered graph saved to ONNX and loaded again rebinds with
 * qk_lower_bind.
 *
 *  QkConv (x, w, w_zero:int32[1|Co], bias:int32[Co]?, mult:int32[n],
 *          shift:int32[n], scale:float[n]) -> y      NCHW 2-D convolution
 *  QkGemm (same inputs)  -> y  x [..., K] times w ([N,K] if trans_b else [K,N])
 *     attrs: Conv window attributes (QkConv), trans_b (QkGemm), x_zero_point,
 *     rq_mode (qk_rq_mode), y_zero_point, qmin, qmax, out_type (ONNX dtype:
 *     2 uint8, 3 int8, 6 int32 = accumulator incl. bias, rq_mode NONE).
 *  QkAdd (a, b) -> y    same shapes; attrs a_scale, a_zero_point, b_scale,
 *     b_zero_point, y_scale, y_zero_point, qmin, qmax, arith (qk_arith),
 *     out_type.
 *  QkPool (x) -> y      attrs kind (0 max, 1 average, 2 global average),
 *     window attributes, count_include_pad, x_/y_ scale and zero point,
 *     arith, qmin, qmax, out_type. Max keeps the input's codes.
 *  QkConcat (x0, x1, ...) -> y and QkRequant (x) -> y: per input a
 *     256-entry table code -> code (x_scales, x_zero_points; y_scale,
 *     y_zero_point, qmin, qmax, arith, out_type; QkConcat: axis).
 *  QkEpilogue (a, a_scale:float[1|C], b?, b_scale:float[1|C]?) -> y codes:
 *     DequantizeLinear(a) [+ b or DequantizeLinear(b)] [Relu] QuantizeLinear
 *     with the same float operations in the same order (lower_ops_epi.c;
 *     made by qk_lower_fuse). attrs a_zero_point, b_zero_point, relu,
 *     y_scale, y_zero_point, out_type, nhwc (channel axis 3 instead of 1). */
extern const qk_op qk_op_qkconv, qk_op_qkgemm, qk_op_qkadd, qk_op_qkpool, qk_op_qkconcat, qk_op_qkrequant,
    qk_op_qkepilogue;

#define QK_LOWER_DOMAIN "ai.qkit"

/* Activation layout (attributes of QkConv x_nhwc / y_nhwc and of a global
 * average QkPool x_nhwc, default 0): 1 means that 4-D codes tensor is
 * [N][H][W][C] (shape dims in that order) instead of ONNX's NCHW. QkAdd
 * and QkRequant are element-wise and keep whatever layout they get. Only
 * the runner (and `qkit eval --real`) set them: qk_lower_layout, qrun.h. */

/* Operators that pass codes through unchanged (Flatten, Reshape, Squeeze,
 * Unsqueeze, Identity, Dropout; lower_match.c). */
int qk_lower_is_shape_op(const char *op_type);

/* Union-find over value indices (the layout and unsign passes tie values
 * that must change together). */
static inline int qk_uf_find(int *p, int v)
{
    while (p[v] != v)
        v = p[v] = p[p[v]];
    return v;
}

static inline void qk_uf_join(int *p, int a, int b)
{
    a = qk_uf_find(p, a), b = qk_uf_find(p, b);
    if (a != b)
        p[a] = b;
}

/* One code requantized from (si, zi) to (so, zo) the way arith does it
 * (the table entries of QkConcat / QkRequant):
 *   FP32:     RNE((float)(q - zi) * si / so) + zo   (= DequantizeLinear then
 *             QuantizeLinear, ONNX Runtime QLinearConcat's table)
 *   GEMMLOWP: TFLite ConcatenationWithScaling (float, RNA)
 *   POT:      qk_shift_round(q - zi, log2(so/si)) + zo (scales powers of two)
 * clamped to [qmin, qmax]. */
int32_t qk_lower_requant_code(qk_arith arith, int32_t q, float si, int32_t zi, float so, int32_t zo, int32_t qmin,
                              int32_t qmax);

/* log2(s) when s is an exact power of two (finite, > 0), else returns 0 and
 * sets *ok = 0. */
int qk_lower_pot_exp(double s, int *ok);

#endif
