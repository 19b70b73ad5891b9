/* qkit quant layer, part 4: deploy files (MQBench's convert_deploy idea).
 * A QDQ model (ptq.h, "The QDQ model file") is turned into what one
 * backend's toolchain consumes: a float model plus a range table.
 *
 * In one call, qk_deploy_export("q.onnx", NULL, "deploy/", &r) reads a QDQ
 * file and writes the files of its backend (metadata "qkit.backend") into
 * deploy/; r.files names them. Step by step on a QDQ graph:
 *
 * Example (`make test` runs it):
 *
 *   qk_graph *g;                          // a QDQ model made in memory (ptq.h)
 *   qk_dataset test;
 *   if (qk_onnx_load("models/lenet.onnx", &g) != QK_OK ||
 *       qk_dataset_load_dir(NULL, "t10k", &test) != QK_OK)
 *       return 1;
 *   qk_ptq_config c; qk_ptq_config_default(&c);
 *   c.backend = qk_backend_find("snpe");
 *   qk_qmodel *m;
 *   if (qk_ptq_prepare(g, &c, &m) != QK_OK)
 *       return 1;
 *   qk_status st = qk_ptq_calibrate(m, &test, qk_norm_default(), 64, NULL, NULL, NULL);
 *   if (st == QK_OK)
 *       st = qk_ptq_convert_qdq(m);
 *   qk_deploy_info *info = NULL;
 *   if (st == QK_OK)
 *       st = qk_deploy_scan(qk_qmodel_graph(m), &info);   // every quantizer and its parameters
 *   if (st == QK_OK)
 *       st = qk_deploy_strip_qdq(qk_qmodel_graph(m));     // the float model (weights dequantized)
 *   // qk_deploy_write_encodings(info, "encodings.json") writes SNPE's range file
 *   int n_sites = info ? info->n_sites : 0;
 *   qk_deploy_info_free(info);
 *   qk_qmodel_destroy(m);
 *   qk_dataset_free(&test);
 *   if (st != QK_OK || n_sites == 0)
 *       return 1;
 * (end of example)
 *
 * What each backend gets in DIR (the formats are specified in README.md,
 * section "Deploy files", and at the writers below):
 *   tensorrt      model_float.onnx, dynamic_range.json, model_qdq.onnx
 *   snpe          model_float.onnx, encodings.json
 *   onnx-qlinear  model_qlinear.onnx (QLinearConv / QLinearMatMul where a layer
 *                 matches, QDQ elsewhere)
 *   every other   quant_params.json
 *
 * Output is atomic: every file is written into a fresh temporary directory
 * next to DIR ("DIR.tmp.XXXXXX"), then, when DIR does not exist, that
 * directory is renamed to DIR; when DIR is an existing directory, the
 * finished files are renamed into it one by one (each rename atomic; a file
 * in DIR is either the old one or the complete new one). On any error the
 * temporary directory is removed and DIR is left as it was.
 *
 * Thread safety: each export reads its own model and writes its own directory;
 * concurrent exports to different directories are safe, to the same one not.
 */
#ifndef QKIT_DEPLOY_H
#define QKIT_DEPLOY_H

#include "backend.h"
#include "graph.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One quantizer found in a QDQ graph. */
typedef enum qk_deploy_kind {
    QK_DEPLOY_WEIGHT = 0,     /* DequantizeLinear of an int8/uint8 initializer */
    QK_DEPLOY_ACTIVATION = 1, /* QuantizeLinear -> [Clip] -> DequantizeLinear on a value */
    QK_DEPLOY_BIAS = 2        /* DequantizeLinear of an int32 initializer (zero point 0) */
} qk_deploy_kind;

typedef struct qk_deploy_site {
    char *tensor;      /* its name in the float model: the weight initializer ("<W>"
                          from "<W>_quantized") or the activation value x */
    char *node;        /* the DequantizeLinear node's name */
    qk_deploy_kind kind;
    int bits;          /* activations: from the Clip range when there is one, else 8;
                          weights: metadata "qkit.wbits" when every code fits that
                          width, else 8; bias: 32 */
    int is_signed;     /* the codes' type: int8/int32 signed, uint8 unsigned */
    int symmetric;     /* inferred: every zero point is 0 (signed) or 2^(bits-1)
                          (unsigned), the grid's centre */
    int narrow;        /* qmin = -2^(bits-1) + 1 (signed only) */
    int per_channel;   /* 1-D scale: one (scale, zero point) per index of `axis` */
    int axis;          /* normalized (>= 0); -1 per tensor */
    int32_t qmin, qmax;/* the code range: Clip's bounds when present, else the width's
                          range, narrowed when the profile named by "qkit.backend"
                          uses a narrow grid for this kind */
    int64_t n;         /* number of (scale, zero point) pairs (1 per tensor) */
    float *scale;      /* n entries, > 0 and finite */
    int32_t *zp;       /* n entries, within [qmin, qmax] of the codes' type */
} qk_deploy_site;

typedef struct qk_deploy_info {
    int n_sites;
    qk_deploy_site *sites; /* in graph node order */
    int n_weights, n_activations, n_bias;
    int *dq_nodes, *q_nodes, *clip_nodes; /* per site: its DequantizeLinear, QuantizeLinear
                                             and Clip node in the scanned graph (-1: none) */
    const qk_backend *backend; /* the profile named by "qkit.backend", NULL if absent/unknown */
    int n_meta;                /* a copy of the model's metadata_props */
    char **meta_keys, **meta_vals;
} qk_deploy_info;

/* Find every quantizer of a QDQ graph (as qk_onnx_load gives it).
 * Errors (each names the node or value):
 *   QK_ERR_ARG          no QuantizeLinear/DequantizeLinear quantizer at all
 *                       (a float model: run `qkit ptq` first);
 *   QK_ERR_UNSUPPORTED  integer ops (QLinearConv, ConvInteger, ...): the model is
 *                       already lowered; a QuantizeLinear whose codes are read by
 *                       anything but Clip/DequantizeLinear; a DequantizeLinear of
 *                       something that is neither an initializer nor a
 *                       QuantizeLinear chain;
 *   QK_ERR_FORMAT       scale not > 0 and finite, zero point outside the Clip range,
 *                       QuantizeLinear and DequantizeLinear with different
 *                       parameters, scale/zero-point count mismatch;
 *   QK_ERR_NOMEM. */
qk_status qk_deploy_scan(const qk_graph *g, qk_deploy_info **out);
void qk_deploy_info_free(qk_deploy_info *info);
/* The site quantizing `tensor` (its float-model name), or NULL. */
const qk_deploy_site *qk_deploy_find(const qk_deploy_info *info, const char *tensor);

/* Rewrite a QDQ graph into the float model, in place: every weight
 * DequantizeLinear becomes a float32 PARAM initializer named "<W>" (the
 * "_dequantized" suffix dropped; a fresh unique name if that is taken)
 * holding float32((q - zp) * scale), exactly what the operator computes;
 * every QuantizeLinear -> [Clip] -> DequantizeLinear chain is removed and
 * its consumers read the original value again. Metadata "qkit.quantized" is
 * dropped, "qkit.deploy" = "float model of a QDQ model" added; everything
 * else is kept. Same errors as qk_deploy_scan (checked before anything
 * changes; only QK_ERR_NOMEM can leave g partly rewritten). */
qk_status qk_deploy_strip_qdq(qk_graph *g);

/* Rewrite a QDQ graph in place into ONNX Runtime's operator form (standard
 * ONNX, opset 10 operators):
 *   DQ(x) , DQ(W) [, float bias] -> Conv [-> Relu] -> Q(y)  =>  QLinearConv
 *   DQ(x) , DQ(W) -> MatMul | Gemm(transA 0, alpha 1, no bias) [-> Relu] -> Q(y)
 *                                                           =>  QLinearMatMul
 * where x and y are 8-bit per-tensor activation sites of the same type
 * (ONNX Runtime's kernels write x's type) without a Clip, the chain values
 * have no other reader, and for Conv an int8 x has int8 weights. The bias becomes int32
 * RNE(b / float32(s_x * s_w[c])) (ONNX Runtime's quantizer); Gemm's
 * transB = 1 weight codes are transposed to [K, N] (per-channel scales become
 * QLinearMatMul's per-column ones) and QLinearMatMul's b gets a's type
 * (int8 <-> uint8 by +-128 on codes and zero points, exact); a Relu is folded only when y's zero point
 * is the type's minimum (then the output saturation is the Relu, exactly).
 * The QLinear node writes the Q's codes "<y>_quantized"; DequantizeLinear
 * nodes left without readers are removed. Layers that match nothing (a Gemm
 * with bias, a layer whose output is not quantized, ...) stay in QDQ form,
 * which ONNX Runtime also runs. *n_layers (may be NULL) gets the number of
 * layers rewritten; metadata "qkit.deploy" and "qkit.qlinear_layers" are
 * set. Errors: those of qk_deploy_scan (before anything changes),
 * QK_ERR_NOMEM. */
qk_status qk_deploy_to_qlinear(qk_graph *g, int *n_layers);

/* ---- the range files (atomic: temporary file + rename) ---- */

/* TensorRT, activation sites only (weights: TensorRT takes the per-channel
 * max of the float weights, which is 127 * scale for codes that reach
 * +-127):
 *   {"format": "qkit-tensorrt-dynamic-range", "version": 1,
 *    "convention": "...", "tensorrt": {"blob_range": {"<x>": amax, ...}}}
 * amax = float32(scale * 127) for ITensor::setDynamicRange(-amax, amax)
 * (MQBench's clip_ranges.json layout). QK_ERR_UNSUPPORTED naming the tensor
 * when an activation is not signed with zero point 0 (TensorRT is
 * symmetric int8 only). */
qk_status qk_deploy_write_dynamic_range(const qk_deploy_info *info, const char *path);

/* SNPE / AIMET quantization encodings:
 *   {"version": "0.6.1", "activation_encodings": {"<x>": [E]},
 *    "param_encodings": {"<W>": [E per channel, or one]}}
 *   E = {"bitwidth": b, "dtype": "int", "is_symmetric": "True"|"False",
 *        "max": (qmax - zp) * scale, "min": (qmin - zp) * scale,
 *        "offset": -zp_u, "scale": scale}
 * zp_u is the zero point on SNPE's unsigned grid [0, 2^b - 1]: the file's
 * zero point for unsigned quantizers (offset = -zero_point), zp + 2^(b-1)
 * for signed ones (int8 symmetric: offset -128, AIMET's symmetric
 * convention); min/max are the same on either grid. Bias sites go to
 * param_encodings with bitwidth 32. */
qk_status qk_deploy_write_encodings(const qk_deploy_info *info, const char *path);

/* Generic, every site:
 *   {"format": "qkit-quant-params", "version": 1, "backend": "...", "arith": "...",
 *    "metadata": {every metadata_props pair},
 *    "quantizers": [{"tensor", "kind": "weight"|"activation"|"bias", "node",
 *                    "bits", "signed", "symmetric", "narrow", "per_channel",
 *                    "axis" (null per tensor), "qmin", "qmax",
 *                    "scale": [n], "zero_point": [n]}, ...]}
 * Floats are printed with 9 significant digits (float32 round trip). */
qk_status qk_deploy_write_quant_params(const qk_deploy_info *info, const char *path);

/* ---- one call ---- */
#define QK_DEPLOY_MAX_FILES 4

typedef struct qk_deploy_result {
    const qk_backend *backend;
    int n_files;
    char files[QK_DEPLOY_MAX_FILES][32]; /* names inside dir, in writing order */
    int n_weights, n_activations, n_bias;
    int n_qlinear;                       /* onnx-qlinear: layers rewritten */
} qk_deploy_result;

/* Load the QDQ model at model_path and write backend's files into dir
 * (atomic, see the top). backend: a profile name, or NULL to use the
 * model's "qkit.backend". res may be NULL. Errors: those of qk_onnx_load
 * (QK_ERR_IO for a missing or truncated file, QK_ERR_FORMAT, ...), of
 * qk_deploy_scan and of the writers; QK_ERR_NOTFOUND for an unknown backend
 * (the message lists the valid ones), QK_ERR_ARG for no backend given and
 * none in the metadata, QK_ERR_IO when dir cannot be created or written (the message names
 * the path and the system's reason). */
qk_status qk_deploy_export(const char *model_path, const char *backend, const char *dir, qk_deploy_result *res);
/* The same from a QDQ graph; g is stripped to the float model in place
 * (destroy it as usual afterwards). model_qdq.onnx is g as qk_onnx_save
 * writes it (qk_deploy_export copies the source file byte for byte). */
qk_status qk_deploy_export_graph(qk_graph *g, const char *backend, const char *dir, qk_deploy_result *res);

#ifdef __cplusplus
}
#endif
#endif
