/* Backend profiles: one table entry per hardware library (backend.h). The
 * schemes follow docs/ALGORITHMS.md §8 (MQBench's backend table) and the
 * vendors' documented integer arithmetic. */
#include "qkit/backend.h"

#include <stdio.h>
#include <string.h>

#define W_SYM_CH ((qk_qparams){ .bits = 8, .is_signed = 1, .symmetric = 1, .narrow = 1, .per_channel = 1 })
#define W_SYM_CH_FULL ((qk_qparams){ .bits = 8, .is_signed = 1, .symmetric = 1, .per_channel = 1 })
#define A_SYM ((qk_qparams){ .bits = 8, .is_signed = 1, .symmetric = 1, .narrow = 1 })
#define U8_ASYM ((qk_qparams){ .bits = 8 })
#define POT_SYM ((qk_qparams){ .bits = 8, .is_signed = 1, .symmetric = 1, .pot = 1 })
#define NNIE_LOG ((qk_qparams){ .bits = 8, .is_signed = 1, .symmetric = 1, .scheme = QK_QSCHEME_NNIE_LOG })

static const qk_backend table[] = {
    { .name = "academic",
      .summary = "user-chosen scheme (default int sym per-channel W, uint asym A), conv/fc inputs, "
                 "first/last layer 8-bit, no BN folding",
      .weight = W_SYM_CH, .act = U8_ASYM, .cover = QK_COVER_CONV_FC, .add = QK_ADD_FLOAT,
      .concat = QK_CONCAT_FLOAT, .fold_bn = 0, .first_last_8bit = 1, .user_scheme = 1,
      .wbits_min = 2, .wbits_max = 16, .abits_min = 2, .abits_max = 16, .abits_default = 8,
      .w_observer = "minmax", .a_observer = "minmax", .arith = QK_ARITH_FP32 },
    { .name = "tensorrt",
      .summary = "int8 symmetric narrow, per-channel W, per-tensor A, BN folded, residual add fused "
                 "into the conv epilogue",
      .weight = W_SYM_CH, .act = A_SYM, .cover = QK_COVER_CONV_FC, .add = QK_ADD_TRT_FUSE,
      .concat = QK_CONCAT_SHARED, .fold_bn = 1, .wbits_min = 8, .wbits_max = 8, .abits_min = 8,
      .abits_max = 8, .abits_default = 8, .w_observer = "minmax", .a_observer = "percentile", .arith = QK_ARITH_FP32 },
    { .name = "fbgemm",
      .summary = "int8 symmetric per-channel W (amax/127.5), uint8 asymmetric A (--reduce-range: 7 bit), "
                 "every op output quantized",
      .weight = W_SYM_CH_FULL, .act = U8_ASYM, .cover = QK_COVER_ALL, .add = QK_ADD_QUANT,
      .concat = QK_CONCAT_REQUANT, .fold_bn = 1, .reduce_range = 1, .wbits_min = 8, .wbits_max = 8,
      .abits_min = 7, .abits_max = 8, .abits_default = 8, .w_observer = "minmax", .a_observer = "percentile",
      .arith = QK_ARITH_FP32 },
    { .name = "snpe",
      .summary = "uint8 asymmetric per-tensor W and A (A16 possible), every op output quantized",
      .weight = U8_ASYM, .act = U8_ASYM, .cover = QK_COVER_ALL, .add = QK_ADD_QUANT,
      .concat = QK_CONCAT_REQUANT, .fold_bn = 1, .wbits_min = 8, .wbits_max = 8, .abits_min = 8,
      .abits_max = 16, .abits_default = 8, .w_observer = "minmax", .a_observer = "minmax",
      .arith = QK_ARITH_GEMMLOWP },
    { .name = "tvm",
      .summary = "power-of-two scales, per-tensor, symmetric int W and A, conv/fc + add/pool, activations "
                 "rounded half up",
      .weight = POT_SYM, .act = { .bits = 8, .is_signed = 1, .symmetric = 1, .pot = 1, .round = QK_ROUND_HALF_UP }, .cover = QK_COVER_ADD_POOL, .add = QK_ADD_QUANT,
      .concat = QK_CONCAT_REQUANT, .fold_bn = 1, .wbits_min = 2, .wbits_max = 8, .abits_min = 2,
      .abits_max = 8, .abits_default = 8, .w_observer = "pot-mse", .a_observer = "pot-mse",
      .arith = QK_ARITH_POT, .bias_correct = 1 },
    { .name = "acl",
      .summary = "ARM Compute Library: int8 symmetric per-channel W, uint8 asymmetric per-tensor A, "
                 "only conv/fc quantized",
      .weight = W_SYM_CH, .act = U8_ASYM, .cover = QK_COVER_CONV_FC, .add = QK_ADD_FLOAT,
      .concat = QK_CONCAT_FLOAT, .fold_bn = 1, .wbits_min = 8, .wbits_max = 8, .abits_min = 8,
      .abits_max = 8, .abits_default = 8, .w_observer = "minmax", .a_observer = "minmax",
      .arith = QK_ARITH_GEMMLOWP },
    { .name = "openvino",
      .summary = "symmetric int8 (per-channel W), unsigned after ReLU, concat passes through, add quantized",
      .weight = W_SYM_CH, .act = A_SYM, .act_unsigned_relu = 1, .cover = QK_COVER_ADD_POOL,
      .add = QK_ADD_QUANT, .concat = QK_CONCAT_SHARED, .fold_bn = 1, .wbits_min = 2, .wbits_max = 8,
      .abits_min = 8, .abits_max = 8, .abits_default = 8, .w_observer = "minmax", .a_observer = "minmax",
      .arith = QK_ARITH_FP32 },
    { .name = "tengine",
      .summary = "uint8 asymmetric per-tensor W and A, conv/fc + add/pool",
      .weight = U8_ASYM, .act = U8_ASYM, .cover = QK_COVER_ADD_POOL, .add = QK_ADD_QUANT,
      .concat = QK_CONCAT_REQUANT, .fold_bn = 1, .wbits_min = 8, .wbits_max = 8, .abits_min = 8,
      .abits_max = 8, .abits_default = 8, .w_observer = "minmax", .a_observer = "minmax",
      .arith = QK_ARITH_GEMMLOWP },
    { .name = "onnx-qlinear",
      .summary = "ONNX QLinearConv/QLinearMatMul (ONNX Runtime): uint8 asymmetric per-tensor W and A",
      .weight = U8_ASYM, .act = U8_ASYM, .cover = QK_COVER_ADD_POOL, .add = QK_ADD_QUANT,
      .concat = QK_CONCAT_REQUANT, .fold_bn = 1, .wbits_min = 8, .wbits_max = 8, .abits_min = 8,
      .abits_max = 8, .abits_default = 8, .w_observer = "minmax", .a_observer = "minmax",
      .arith = QK_ARITH_FP32 },
    { .name = "ppl-w8a16",
      .summary = "PPL: int8 symmetric per-channel W, 16-bit asymmetric A",
      .weight = W_SYM_CH, .act = { .bits = 16, .is_signed = 1 }, .cover = QK_COVER_ADD_POOL,
      .add = QK_ADD_QUANT, .concat = QK_CONCAT_REQUANT, .fold_bn = 1, .wbits_min = 8, .wbits_max = 8,
      .abits_min = 16, .abits_max = 16, .abits_default = 16, .w_observer = "minmax", .a_observer = "minmax",
      .arith = QK_ARITH_FP32 },
    { .name = "vitis",
      .summary = "Xilinx DPU: power-of-two symmetric int8 per-tensor, bias quantized, activations "
                 "rounded half up, every op output quantized",
      .weight = POT_SYM, .act = { .bits = 8, .is_signed = 1, .symmetric = 1, .pot = 1, .round = QK_ROUND_HALF_UP },
      .cover = QK_COVER_ALL, .add = QK_ADD_QUANT, .concat = QK_CONCAT_REQUANT, .fold_bn = 1,
      .quant_bias = 1, .wbits_min = 8, .wbits_max = 8, .abits_min = 8, .abits_max = 8, .abits_default = 8,
      .w_observer = "pot-mse", .a_observer = "pot-mse", .arith = QK_ARITH_POT, .cle = 1 },
    { .name = "nnie",
      .summary = "HiSilicon NNIE: 8-bit logarithmic code on weights and conv/fc inputs (simulation only)",
      .weight = NNIE_LOG, .act = NNIE_LOG, .cover = QK_COVER_CONV_FC, .add = QK_ADD_FLOAT,
      .concat = QK_CONCAT_FLOAT, .fold_bn = 1, .wbits_min = 8, .wbits_max = 8, .abits_min = 8,
      .abits_max = 8, .abits_default = 8, .w_observer = "minmax", .a_observer = "minmax",
      .arith = QK_ARITH_NONE, .cle = 1 },
};

#define N_BACKENDS ((int)(sizeof table / sizeof table[0]))

int qk_backend_count(void) { return N_BACKENDS; }

const qk_backend *qk_backend_get(int i) { return i >= 0 && i < N_BACKENDS ? &table[i] : NULL; }

const qk_backend *qk_backend_find(const char *name)
{
    for (int i = 0; i < N_BACKENDS; i++)
        if (name && strcmp(table[i].name, name) == 0)
            return &table[i];
    char list[512];
    size_t k = 0;
    list[0] = 0;
    for (int i = 0; i < N_BACKENDS && k < sizeof list; i++)
        k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "", table[i].name);
    qk_error(QK_ERR_NOTFOUND, "unknown backend '%s': valid backends are %s", name ? name : "(null)", list);
    return NULL;
}

const char *qk_arith_name(qk_arith a)
{
    static const char *const n[] = { "fp32", "gemmlowp", "pot", "none" };
    return (unsigned)a < 4 ? n[a] : "?";
}

const char *qk_cover_name(qk_qcover c)
{
    static const char *const n[] = { "conv/fc", "conv/fc+add/pool", "all ops" };
    return (unsigned)c < 3 ? n[c] : "?";
}

const char *qk_add_rule_name(qk_add_rule r)
{
    static const char *const n[] = { "float", "quantized", "fused into conv (TensorRT)" };
    return (unsigned)r < 3 ? n[r] : "?";
}

const char *qk_concat_rule_name(qk_concat_rule r)
{
    static const char *const n[] = { "float", "requantize to output scale", "shared scale (pass-through)" };
    return (unsigned)r < 3 ? n[r] : "?";
}

static int bits_ok(int b) { return (b >= 2 && b <= 8) || b == 16; }

qk_status qk_backend_qparams(const qk_backend *b, int wbits, int abits, qk_qparams *w, qk_qparams *a)
{
    if (!b)
        return qk_error(QK_ERR_ARG, "backend: NULL profile");
    int wb = wbits ? wbits : b->weight.bits;
    int ab = abits ? abits : b->abits_default;
    if (wb < b->wbits_min || wb > b->wbits_max || !bits_ok(wb))
        return qk_error(QK_ERR_UNSUPPORTED, "backend '%s' cannot do %d-bit weights (supported: %d..%d%s)", b->name,
                        wb, b->wbits_min, b->wbits_max, b->wbits_max == 16 ? ", 16 only above 8" : "");
    if (ab < b->abits_min || ab > b->abits_max || !bits_ok(ab))
        return qk_error(QK_ERR_UNSUPPORTED, "backend '%s' cannot do %d-bit activations (supported: %d..%d%s)",
                        b->name, ab, b->abits_min, b->abits_max, b->abits_max == 16 ? ", 16 only above 8" : "");
    if (w) {
        *w = b->weight;
        w->bits = wb;
    }
    if (a) {
        *a = b->act;
        a->bits = ab;
    }
    return QK_OK;
}
