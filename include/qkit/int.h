/* qkit integer engine: requantization (gemmlowp/TFLite, ONNX Runtime, power
 * of two), int8 GEMM and convolution kernels (plain C reference + AVX2,
 * AVX2 with AVX-VNNI, AVX-512, AVX-512 VNNI, AMX), quantized Add / Concat /
 * pooling, and the ONNX operators QLinearConv, QLinearMatMul, ConvInteger,
 * MatMulInteger.
 *
 * Example (docs/ALGORITHMS.md §7, the worked example: one output channel,
 * K = 4; `make test` runs it):
 *
 *   const int8_t A[4] = {15, -15, 50, -10};   // activation codes: s_x 0.02, z_x -10
 *   const int8_t B[4] = {30, -25, 10, 5};     // weights K x N = 4 x 1: s_w 0.01, z_w 0
 *   const int32_t bias = 350;                 // 0.07 / (s_x s_w)
 *   int32_t q; int e;                         // output s_y 0.005, z_y -20:
 *   qk_quantize_multiplier(0.02 * 0.01 / 0.005, &q, &e);   // (1374389535, -4)
 *   qk_i8gemm_desc d = {.a_type = QK_I8, .b_type = QK_I8, .K = 4, .N = 1,
 *       .B = B, .ldb = 1, .a_zero = -10, .bias = &bias, .out_type = QK_I8,
 *       .rq = {.mode = QK_RQ_GEMMLOWP, .n = 1, .mult = &q, .shift = &e,
 *              .zero_point = -20, .qmin = -20, .qmax = 127},   // ReLU6 fused
 *       .kernel = -1};                        // the best kernel for this CPU
 *   qk_i8gemm *g;
 *   if (qk_i8gemm_create(&d, &g) != QK_OK)    // packs B once
 *       return 1;
 *   size_t ws_bytes = qk_i8gemm_ws_bytes(g) + 64;
 *   void *ws = qk_aligned_alloc(ws_bytes);    // one slot: serial run (pool NULL)
 *   int8_t y;
 *   qk_status st = ws ? qk_i8gemm_run(g, 1, A, 4, &y, 1, 1, NULL, ws, ws_bytes) : QK_ERR_NOMEM;
 *   qk_aligned_free(ws);
 *   qk_i8gemm_destroy(g);
 *   if (st != QK_OK || y != 53)               // D(53) = 0.005 (53 + 20) = 0.365
 *       return 1;
 * (end of example)
 *
 * Arithmetic contract (all kernels, bit-exact with the reference):
 *   T[m,n] = sum_k (A[m,k] - za) * (B[k,n] - zb[n]) + bias[n]   (int32, wraps
 *            modulo 2^32 like two's-complement hardware; never saturates)
 *   y[m,n] = requant(T[m,n], n)   (qk_requant_value; clamp to [qmin, qmax])
 * Kernels expand this as sum A*B - zb*rowsum(A) - za*colsum(B) + K*za*zb,
 * which is the same value modulo 2^32.
 *
 * Thread safety: the kernels are pure functions of their arguments: any thread,
 * distinct outputs.
 */
#ifndef QKIT_INT_H
#define QKIT_INT_H

#include "cpu.h"
#include "graph.h"
#include "quant.h" /* the fixed-point primitives (qk_mbqm, qk_act_bounds, ...) */

#ifdef __cplusplus
extern "C" {
#endif

/* Output-stage rounding scheme: which framework a quantized model's integer
 * arithmetic must reproduce. Frozen values. */
typedef enum qk_rq_mode {
    QK_RQ_NONE = 0,       /* no scaling: int32 output T (out_type QK_I32 only) */
    QK_RQ_GEMMLOWP = 1,   /* q/e Q31 multiplier, qk_mbqm (TFLite reference, gemmlowp,
                             CMSIS-NN): SRDHM (~RHU) then RDBPOT (RNA) */
    QK_RQ_Q31_SINGLE = 2, /* q/e Q31 multiplier, qk_mbqm_single (TFLite single
                             rounding, XNNPACK rndnu): RHU */
    QK_RQ_FP32 = 3,       /* float32 scale: f = (float)T * scale, clamped in float to
                             [qmin-zp, qmax-zp], rounded half to even, + zp.
                             ONNX Runtime / MLAS QLinearConv and QLinearMatMul
                             (scale = x_scale * w_scale / y_scale in float32),
                             XNNPACK fp32 */
    QK_RQ_SHIFT = 4       /* power of two: qk_shift_round(T, shift) (Vitis/DPU) */
} qk_rq_mode;
const char *qk_rq_mode_name(qk_rq_mode m);

/* Output stage of a GEMM/conv: y = clamp(requant(T) + zero_point, qmin, qmax).
 * mult/shift (GEMMLOWP, Q31_SINGLE: mult in [0, 2^31), shift = e in
 * [-31, 30]; SHIFT: shift in [-31, 31]) or scale (FP32: finite, >= 0) have n
 * entries: 1 (per tensor) or N (per output channel). [qmin, qmax] lies in the
 * output type's range; fused ReLU/ReLU6 are these bounds (qk_act_bounds). */
typedef struct qk_requant {
    qk_rq_mode mode;
    int n;
    const int32_t *mult;
    const int32_t *shift;
    const float *scale;
    int32_t zero_point;
    int32_t qmin, qmax;
} qk_requant;

/* One value through the output stage (the reference every kernel matches). */
int32_t qk_requant_value(qk_rq_mode mode, int32_t acc, int32_t mult, int32_t shift, float scale,
                         int32_t zp, int32_t qmin, int32_t qmax);
/* Validate r for out_type (QK_U8, QK_I8, QK_I16, QK_I32) and n_channels. */
qk_status qk_requant_check(const qk_requant *r, qk_dtype out_type, int64_t n_channels);

/* ============================ int8 GEMM ==================================
 * C[m,n] = requant(sum_k (A[m,k] - a_zero) * (B[k,n] - b_zero[n]) + bias[n])
 * A: activations u8 or s8, row-major M x K with row stride lda (any M per run).
 * B: weights u8 or s8, K x N, packed once at create into the kernel's layout
 * together with the zero-point/column-sum corrections (QNNPACK-style
 * create -> run). Output element (m, n) goes to C[m*ldc_m + n*ldc_n]
 * (row-major: ldc_m = ldc, ldc_n = 1; transposed stores allowed). */
typedef struct qk_i8gemm_desc {
    qk_dtype a_type;        /* QK_U8 or QK_I8 */
    qk_dtype b_type;        /* QK_U8 or QK_I8 */
    int64_t K, N;           /* >= 1 */
    const void *B;          /* weights, or NULL to supply later (qk_i8gemm_update) */
    int64_t ldb;
    int b_trans;            /* 0: (k,n) at B[k*ldb + n]; 1: at B[n*ldb + k] (ONNX Conv [N][K]) */
    int32_t a_zero;         /* in a_type's range */
    int nb_zero;            /* 1 or N entries in b_zero (0 with b_zero NULL: zero) */
    const int32_t *b_zero;  /* in b_type's range */
    const int32_t *bias;    /* N int32 or NULL */
    qk_dtype out_type;      /* QK_I32 (rq.mode NONE), QK_U8, QK_I8 or QK_I16 */
    qk_requant rq;
    int kernel;             /* -1: best for qk_cpu_isa(); else an index into the kernel list */
} qk_i8gemm_desc;

typedef struct qk_i8gemm qk_i8gemm;

/* Errors: QK_ERR_ARG (types, sizes, zero points, requant parameters, kernel
 * index), QK_ERR_UNSUPPORTED (kernel not usable on this CPU), QK_ERR_NOMEM. */
qk_status qk_i8gemm_create(const qk_i8gemm_desc *d, qk_i8gemm **out);
/* Re-pack weights and recompute corrections/requant from d (same types, K,
 * N, kernel, nb_zero and rq.n as at create; no allocation). For weights or
 * quantization parameters that are graph inputs. */
qk_status qk_i8gemm_update(qk_i8gemm *g, const qk_i8gemm_desc *d);
void qk_i8gemm_destroy(qk_i8gemm *g);
/* Scratch bytes each worker needs in run (multiple of 64). */
size_t qk_i8gemm_ws_bytes(const qk_i8gemm *g);
/* ws: qk_pool_threads(pool) slots of ws_stride >= qk_i8gemm_ws_bytes bytes,
 * 64-byte aligned. Tasks are M x N blocks fixed by the kernel, so results are
 * identical for any thread count. QK_ERR_STATE if weights were never given. */
qk_status qk_i8gemm_run(const qk_i8gemm *g, int64_t M, const void *A, int64_t lda, void *C,
                        int64_t ldc_m, int64_t ldc_n, qk_pool *pool, void *ws, size_t ws_stride);
const char *qk_i8gemm_kernel_name(const qk_i8gemm *g);

/* The plain C reference (the specification): straight from the descriptor,
 * no packing, single-threaded. Same errors as create. */
qk_status qk_i8gemm_ref(const qk_i8gemm_desc *d, int64_t M, const void *A, int64_t lda, void *C,
                        int64_t ldc_m, int64_t ldc_n);

/* The kernel list (each kernel listed once; dispatch, tests and benchmarks
 * read it). test_only kernels (a software emulation of the AMX kernel's data
 * flow) are never picked by dispatch. */
typedef struct qk_i8_kernel_info {
    const char *name;
    qk_isa isa;
    int test_only;
    int mr, nr;
} qk_i8_kernel_info;
int qk_i8_kernel_count(void);
const qk_i8_kernel_info *qk_i8_kernel_get(int i);
/* 1 if this CPU runs kernel i: its level (qk_cpu_isa_usable) and any
 * further feature it needs ("avx2-vnni": AVX-VNNI); test-only kernels
 * always. */
int qk_i8_kernel_usable(int i);
/* Kernel index dispatch picks for isa (the best one at or below it). */
int qk_i8_kernel_for_isa(qk_isa isa);

/* ========================= int8 convolution ==============================
 * ONNX Conv semantics, NCHW in and out: x [N][C][H][W], w [Co][C/groups][kh][kw],
 * y [N][Co][OH][OW], OH = (H + pt + pb - dh*(kh-1) - 1)/sh + 1.
 * Padding contributes x_zero (real 0), never integer 0. Internally: im2col
 * rows (one output pixel, K = C/groups*kh*kw in (c, kh, kw) order) + the GEMM
 * above per group, storing NCHW directly; groups with one input channel
 * (depthwise, any channel multiplier) use a direct kernel. w_zero may be per
 * output channel. */
typedef struct qk_i8conv_desc {
    qk_dtype x_type, w_type, out_type;
    int64_t C, Co, groups;
    int64_t kh, kw;
    int64_t stride_h, stride_w, dil_h, dil_w;
    int64_t pad_t, pad_l, pad_b, pad_r;
    const void *w;          /* or NULL (qk_i8conv_update later) */
    int32_t x_zero;
    int nw_zero;            /* 1 or Co */
    const int32_t *w_zero;
    const int32_t *bias;    /* Co or NULL */
    qk_requant rq;          /* rq.n: 1 or Co */
    int kernel;             /* as in qk_i8gemm_desc */
} qk_i8conv_desc;

typedef struct qk_i8conv qk_i8conv;
qk_status qk_i8conv_create(const qk_i8conv_desc *d, qk_i8conv **out);
qk_status qk_i8conv_update(qk_i8conv *c, const qk_i8conv_desc *d);
void qk_i8conv_destroy(qk_i8conv *c);
/* Output size along one axis; <= 0 means the window does not fit. */
int64_t qk_conv_out_dim(int64_t in, int64_t k, int64_t stride, int64_t dil, int64_t p0, int64_t p1);
size_t qk_i8conv_ws_bytes(const qk_i8conv *c, int64_t H, int64_t W);
qk_status qk_i8conv_run(const qk_i8conv *c, int64_t N, int64_t H, int64_t W, const void *x, void *y,
                        qk_pool *pool, void *ws, size_t ws_stride);
/* The same with either activation in NHWC: x_nhwc 1 reads x as [N][H][W][C],
 * y_nhwc 1 writes y as [N][OH][OW][Co]; the codes are exactly those of
 * qk_i8conv_run (the same arithmetic, another element order), for any
 * kernel and thread count. Allowed when qk_i8conv_nhwc_ok(c, 1) (input) /
 * qk_i8conv_nhwc_ok(c, 0) (output):
 *  - groups 1: NHWC output always; NHWC input with >= 8 input channels
 *    (used in place, no transpose) or exactly 1;
 *  - depthwise (groups = C, one input channel per group) with channel
 *    multiplier 1 (Co = C): both or neither of x_nhwc, y_nhwc (a direct
 *    kernel with channels as the vector dimension, one task per output row);
 *  - anything else (grouped, depthwise with multiplier > 1): NCHW only.
 * Workspace as qk_i8conv_run (qk_i8conv_ws_bytes). Errors: those of
 * qk_i8conv_run, QK_ERR_ARG for a layout c does not support. */
qk_status qk_i8conv_run_layout(const qk_i8conv *c, int64_t N, int64_t H, int64_t W, const void *x, int x_nhwc,
                               void *y, int y_nhwc, qk_pool *pool, void *ws, size_t ws_stride);
/* input 1: may x be NHWC; input 0: may y be NHWC (see qk_i8conv_run_layout). */
int qk_i8conv_nhwc_ok(const qk_i8conv *c, int input);
/* Which path a run on H x W input takes (diagnostics, tests): "depthwise",
 * "pointwise" (1x1 on the input rows), "implicit" (AMX tiles read the
 * padded input rows in place: groups 1, stride 1, no dilation, >= 16
 * input channels, padded row width <= 64), or "im2col". */
const char *qk_i8conv_path(const qk_i8conv *c, int64_t H, int64_t W);
/* Reference: the direct 7-loop definition. */
qk_status qk_i8conv_ref(const qk_i8conv_desc *d, int64_t N, int64_t H, int64_t W, const void *x, void *y);

/* ==================== element-wise and pooling (reference) ===============
 * Quantized Add, TFLite int8/int16 scheme (docs/ALGORITHMS.md §7):
 * left_shift 20 (15 for int16), t = 2*max(s1,s2), m1 = s1/t, m2 = s2/t,
 * m_out = t/(2^left_shift * s_out), y = clamp(MBQM(MBQM(a<<ls, m1) +
 * MBQM(b<<ls, m2), m_out) + z_out). */
typedef struct qk_qadd {
    qk_dtype type;          /* QK_I8, QK_U8 or QK_I16 (inputs and output) */
    int32_t z1, z2, zo;
    int32_t m1, m2, mo;
    int e1, e2, eo;
    int left_shift;
    int32_t qmin, qmax;
} qk_qadd;
/* Scales are taken in double: pass a model's float32 scales (as TFLite
 * does, promoting them) or exact decimals (the check in docs/ALGORITHMS.md §7). */
qk_status qk_qadd_prepare(qk_dtype type, double s1, int32_t z1, double s2, int32_t z2, double so,
                          int32_t zo, int32_t qmin, int32_t qmax, qk_qadd *p);
int32_t qk_qadd_value(const qk_qadd *p, int32_t q1, int32_t q2);
void qk_qadd_run(const qk_qadd *p, int64_t n, const void *a, const void *b, void *y);

/* Concat input requantization (TFLite reference, float with RNA):
 * q' = clamp(RNA((q - zi) * si / so) + zo); a copy when (si, zi) == (so, zo). */
int32_t qk_requant_float_rna(int32_t q, float si, int32_t zi, float so, int32_t zo, int32_t qmin,
                             int32_t qmax);
void qk_concat_requant(qk_dtype type, int64_t n, const void *x, float si, int32_t zi, float so,
                       int32_t zo, void *y);

/* Pooling over NCHW, integer in = integer out with the same (s, z) (TFLite).
 * AveragePool sums the window (padding excluded unless count_include_pad,
 * where padded cells count as z) and rounds acc/n half away from zero:
 * (acc + n/2)/n or (acc - n/2)/n (TFLite). MaxPool ignores padding. */
typedef struct qk_pool2d {
    int64_t kh, kw, stride_h, stride_w, pad_t, pad_l, pad_b, pad_r, dil_h, dil_w;
    int count_include_pad;
} qk_pool2d;
qk_status qk_i8_avgpool(qk_dtype type, const qk_pool2d *p, int32_t zero, int64_t N, int64_t C, int64_t H,
                        int64_t W, const void *x, void *y);
qk_status qk_i8_maxpool(qk_dtype type, const qk_pool2d *p, int64_t N, int64_t C, int64_t H, int64_t W,
                        const void *x, void *y);
/* Mean over H*W per (n, c), same rounding as AveragePool. */
void qk_i8_global_avgpool(qk_dtype type, int64_t N, int64_t C, int64_t HW, const void *x, void *y);

/* ============================ ONNX operators ============================
 * QLinearConv, QLinearMatMul (requant QK_RQ_FP32, as ONNX Runtime), and
 * ConvInteger, MatMulInteger (int32 out): forward only. Weights and
 * quantization parameters that are initializers are packed once at plan;
 * graph inputs are re-packed each run. qk_int_op_table lists them and the
 * lowered integer operators of domain "ai.qkit" (QkConv, QkGemm, QkAdd,
 * QkPool, QkConcat, QkRequant, QkEpilogue; qrun.h); qk_lower_bind (qrun.h)
 * binds with the float, quant and integer tables. */
extern const qk_op qk_op_qlinearconv, qk_op_qlinearmatmul, qk_op_convinteger, qk_op_matmulinteger;
extern const qk_op_table qk_int_op_table;

/* Rounding mode the ONNX integer ops of graph g use for their output stage
 * (a node attribute qkit_rounding overrides it): g's option onnx_rounding
 * (qk_plan_options), QK_RQ_FP32 when 0. Read at plan. */
qk_rq_mode qk_int_onnx_rounding(const qk_graph *g);

#ifdef __cplusplus
}
#endif
#endif
