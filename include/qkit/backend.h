/* qkit quant layer, part 2: hardware backend profiles. Each profile is one
 * entry of a data table (src/quant/backend.c), never a code path: prepare
 * (ptq.h) reads which tensors get quantizers and of what kind, the integer
 * engine reads how the hardware requantizes.
 *
 * Example (`make test` runs it):
 *
 *   const qk_backend *b = qk_backend_find("tensorrt");   // NULL + message if unknown
 *   qk_qparams w, a;
 *   if (!b || qk_backend_qparams(b, 8, 8, &w, &a) != QK_OK)
 *       return 1;
 *   assert(w.is_signed && w.symmetric && w.narrow && w.per_channel);   // int8 per-channel W
 *   assert(!a.per_channel);                                             // per-tensor A
 *   for (int i = 0; i < qk_backend_count(); i++)
 *       printf("%s\n", qk_backend_get(i)->name);
 * (end of example)
 *
 * Sources (docs/ALGORITHMS.md §8 and the MQBench paper's backend table):
 * TensorRT, FBGEMM, SNPE, TVM, ARM Compute Library, OpenVINO, Tengine,
 * ONNX QLinear (ONNX Runtime), PPL (W8A16), Xilinx Vitis DPU, HiSilicon
 * NNIE, plus an "academic" profile whose scheme the user chooses.
 *
 * Thread safety: the profile table is read-only: any thread, any time.
 */
#ifndef QKIT_BACKEND_H
#define QKIT_BACKEND_H

#include "quant.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Which op inputs/outputs get activation quantizers. Frozen values. */
typedef enum qk_qcover {
    QK_COVER_CONV_FC = 0,  /* the activation inputs of Conv / Gemm / MatMul only */
    QK_COVER_ADD_POOL = 1, /* + the inputs of Add and of the pooling ops */
    QK_COVER_ALL = 2       /* every op output (after a fusable ReLU/Clip), the
                              network input and the graph outputs */
} qk_qcover;

/* How an element-wise Add is handled. Frozen values. */
typedef enum qk_add_rule {
    QK_ADD_FLOAT = 0,     /* stays in float; its inputs get quantizers only if
                             the coverage quantizes them for another reason */
    QK_ADD_QUANT = 1,     /* both inputs quantized, integer add rescales both
                             (TFLite/QNNPACK QLinearAdd) */
    QK_ADD_TRT_FUSE = 2   /* TensorRT: an input produced by a Conv (through BN)
                             stays unquantized, the add fuses into that conv's
                             int32 epilogue; the other input is quantized */
} qk_add_rule;

/* How Concat is handled. Frozen values. */
typedef enum qk_concat_rule {
    QK_CONCAT_FLOAT = 0,   /* stays in float */
    QK_CONCAT_REQUANT = 1, /* inputs requantized to the output's scale */
    QK_CONCAT_SHARED = 2   /* pass-through: every input shares the output's quantizer */
} qk_concat_rule;

/* How the backend's integer pipeline requantizes an int32 accumulator
 * (docs/ALGORITHMS.md §7). Frozen values. */
typedef enum qk_arith {
    QK_ARITH_FP32 = 0,     /* float32 multiplier, round half to even (ONNX Runtime/MLAS,
                              FBGEMM, TensorRT, OpenVINO) */
    QK_ARITH_GEMMLOWP = 1, /* Q31 fixed-point multiplier + shift, gemmlowp rounding
                              (TFLite, ARM CL, SNPE/Hexagon, Tengine) */
    QK_ARITH_POT = 2,      /* power-of-two scales, shift with round half up (Vitis DPU, TVM pot) */
    QK_ARITH_NONE = 3      /* no linear integer pipeline (NNIE's log code): simulation only */
} qk_arith;

typedef struct qk_backend {
    const char *name;
    const char *summary;     /* one line: the scheme */
    qk_qparams weight;       /* the weight quantizer at 8 bits */
    qk_qparams act;          /* the activation quantizer at 8 bits */
    int act_unsigned_relu;   /* non-negative activations (after ReLU/ReLU6) use an
                                unsigned grid with zero point 0 (OpenVINO) */
    qk_qcover cover;
    qk_add_rule add;
    qk_concat_rule concat;
    int fold_bn;             /* BN folded into the conv before weight quantization */
    int first_last_8bit;     /* first and last weighted layer kept at 8 bits */
    int user_scheme;         /* academic: the user may change every field of the scheme */
    int quant_bias;          /* bias fake-quantized too (Vitis: 8-bit power of two) */
    int reduce_range;        /* option --reduce-range: 7-bit activations (FBGEMM) */
    int wbits_min, wbits_max;
    int abits_min, abits_max;
    int abits_default;       /* 8, or 16 for ppl-w8a16 */
    const char *w_observer;  /* default weight observer */
    const char *a_observer;  /* default activation observer */
    qk_arith arith;
    /* The rest of the profile's default PTQ recipe (qk_ptq_config's 0 means
     * these; bench/RESULTS.md has the W8A8 measurements they were chosen from): */
    int cle;                 /* 1: cross-layer equalization of the float model first (qk_cle_apply) */
    int bias_correct;        /* 1: bias correction after calibration */
} qk_backend;

int qk_backend_count(void);
const qk_backend *qk_backend_get(int i);
/* By name; NULL with an error recorded (qk_last_error) listing the valid names. */
const qk_backend *qk_backend_find(const char *name);
const char *qk_arith_name(qk_arith a);  /* "fp32", "gemmlowp", "pot", "none" */
const char *qk_cover_name(qk_qcover c); /* "conv/fc", "conv/fc+add/pool", "all ops" */
const char *qk_add_rule_name(qk_add_rule r);
const char *qk_concat_rule_name(qk_concat_rule r);

/* Weight and activation qparams for wbits/abits (0: the profile's default).
 * QK_ERR_UNSUPPORTED naming the backend and its allowed range when a width
 * is outside it. w/a may be NULL. */
qk_status qk_backend_qparams(const qk_backend *b, int wbits, int abits, qk_qparams *w, qk_qparams *a);

#ifdef __cplusplus
}
#endif
#endif
