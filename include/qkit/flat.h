/* qkit flat API: the library for foreign-function interfaces (Python's
 * ctypes, cffi, other languages). Only opaque handles, scalars, strings and
 * flat arrays cross it, so a binding mirrors no C struct: options are set by
 * name from text, results come back as JSON text. The Python package
 * python/qkit (docs/PYTHON.md) is built on it.
 *
 * Example (`make test` runs it):
 *
 *   qk_graph *g;
 *   if (qk_onnx_load("models/lenet.onnx", &g) != QK_OK)
 *       return 1;
 *   enum { N = 4 };
 *   static uint8_t pix[N * 28 * 28];                   // four black images, NCHW uint8
 *   qk_dataset *ds;
 *   qk_flat_opts *o;
 *   char *json = NULL;
 *   qk_status st = qk_flat_data_create(QK_U8, N, 1, 28, 28, pix, 0, NULL, &ds);
 *   if (st != QK_OK || qk_flat_opts_create(&o) != QK_OK)
 *       return 1;
 *   st = qk_flat_opts_set(o, "backend", "tensorrt");
 *   if (st == QK_OK)
 *       st = qk_flat_opts_set(o, "observer", "minmax");
 *   if (st == QK_OK)                                   // quantize; NULL: no file written
 *       st = qk_flat_ptq("models/lenet.onnx", ds, NULL, o, NULL, NULL, &json);
 *   if (st == QK_OK)
 *       printf("%s\n", json);                          // {"backend": "tensorrt", ...}
 *   else
 *       fprintf(stderr, "%s\n", qk_last_error());
 *   assert(qk_flat_opts_set(o, "wbitz", "4") == QK_ERR_NOTFOUND);   // names the valid keys
 *   qk_free(json);
 *   json = NULL;
 *   if (st == QK_OK && (st = qk_flat_model_info(g, &json)) == QK_OK)
 *       assert(strstr(json, "\"opset\""));        // inputs, outputs, ops, metadata
 *   qk_free(json);
 *   qk_flat_opts_destroy(o);
 *   qk_flat_data_destroy(ds);
 *   qk_graph_destroy(g);
 *   if (st != QK_OK)
 *       return 1;
 * (end of example)
 *
 * Conventions: every function returns a qk_status with qk_last_error()
 * set (the binding raises it); JSON strings are qk_malloc'ed (free with
 * qk_free), UTF-8, one object, non-finite numbers written as null.
 *
 * Data: a dataset made from an array holds either uint8 pixels (0..255),
 * normalized as `qkit eval` would (the model's metadata "qkit.norm.*" and
 * "qkit.norm.scale/bgr", else the Fashion-MNIST default), or float32
 * values that are the model's input as they are (no normalization: what a
 * PyTorch DataLoader with its transforms yields). The options mean, std,
 * scale and bgr replace either rule: x = scale (v - mean[k]) / std[k], v
 * the pixel / 255 or the float value.
 *
 * Thread safety: as the layers below: a graph, dataset or options object is
 * used by one thread at a time; a pool runs one call at a time.
 */
#ifndef QKIT_FLAT_H
#define QKIT_FLAT_H

#include "registry.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- options by name ----
 * Keys (a '-' in a key is read as '_'; flags take 1/0/true/false/yes/no):
 *   ptq:    backend NAME (required for qk_flat_ptq), wbits N, abits N,
 *           observer NAME (activations; also a_observer), w_observer NAME,
 *           first_last_bits N (-1: no override), reduce_range, per_tensor,
 *           bias_correct (1/0; not set: the profile's default, replaced by
 *           recon), bit_alloc none|w|a|wa, exclude NODE (each call adds
 *           one), images N (calibration images: default min(512, given);
 *           more than given is an error), cle (1: cross-layer equalization
 *           first, 0: none; not set: the profile's default, qk_backend.cle),
 *           cle_relu6, recon none|adaround|brecq|qdrop, recon_iters N,
 *           recon_batch N, no_fp32
 *   data:   mean X[,Y,Z], std X[,Y,Z] (one or per channel), scale X, bgr,
 *           batch N (evaluation batch, default 256)
 *   eval:   real (the integer engine), arith fp32|gemmlowp|pot (with real),
 *           reference FILE.onnx (agreement with it when there are no labels)
 * Errors: QK_ERR_NOTFOUND for an unknown key (the message lists the keys),
 * QK_ERR_ARG for a value that does not parse or is out of range, naming
 * the key and the value; the option keeps its previous value then. */
typedef struct qk_flat_opts qk_flat_opts;
qk_status qk_flat_opts_create(qk_flat_opts **out);
void qk_flat_opts_destroy(qk_flat_opts *o); /* NULL is fine */
qk_status qk_flat_opts_set(qk_flat_opts *o, const char *key, const char *value);

/* ---- data from arrays ----
 * dtype QK_U8 or QK_F32; n images of c x h x w, NCHW (nhwc 0) or NHWC
 * (nhwc 1), copied; labels: n int64 values >= 0 or NULL (unlabelled).
 * Errors: those of qk_dataset_from_u8 / _f32, QK_ERR_ARG for another dtype. */
qk_status qk_flat_data_create(int dtype, int64_t n, int c, int h, int w, const void *data, int nhwc,
                              const int64_t *labels, qk_dataset **out);
void qk_flat_data_destroy(qk_dataset *ds); /* NULL is fine */

/* ---- models (load with qk_onnx_load, free with qk_graph_destroy) ----
 * Run g in inference mode on n_in arrays in the order of g->inputs: input i
 * has dtype dtypes[i] (a qk_dtype), ndims[i] dimensions
 * dims[i * QK_MAX_DIMS ...] and C-order data[i] (borrowed). Checks and
 * planning as qk_onnx_run (onnx.h; errors name the input and both shapes).
 * *outs receives *n_out tensors (free with qk_onnx_free_tensors), read
 * with qk_flat_tensor_get. */
qk_status qk_flat_run(qk_graph *g, int n_in, const int *dtypes, const int *ndims, const int64_t *dims,
                      const void *const *data, qk_pool *pool, int *n_out, qk_tensor **outs);
/* Tensor i of an array from qk_flat_run: dtype, ndim, dims (QK_MAX_DIMS
 * entries) and a pointer to its data (valid until the array is freed). */
qk_status qk_flat_tensor_get(const qk_tensor *ts, int i, int *dtype, int *ndim, int64_t *dims, const void **data);

/* g described as JSON: {"name", "opset", "inputs": [{"name", "dtype",
 * "shape"}] (declared; -1 where the batch is dynamic), "outputs": [{"name",
 * "dtype", "shape"}] (at batch 1), "nodes", "ops": {op_type: count},
 * "params", "quantized" (QuantizeLinear/DequantizeLinear present),
 * "metadata": {key: value}}. Plans g at batch 1 (as `qkit info`). */
qk_status qk_flat_model_info(qk_graph *g, char **json);

/* Post-training quantization of the float model at model_path with the
 * options o (backend required) on the first `images` items of calib
 * (labels not needed); preprocessing as under "Data" (explicit mean, std,
 * scale or bgr are stored in the written model's metadata, as `qkit ptq`
 * does). eval (may be NULL): with labels, FP32 and fake-quantized top-1;
 * without, agreement with the float model. out_path (may be NULL): the QDQ
 * model is written there (ptq.h). A model exported with a fixed batch of 1
 * is quantized for any batch (qk_onnx_dynamic_batch). *json: the resolved configuration
 * (backend, wbits, abits, w_observer, a_observer, per_channel,
 * reduce_range, bias_correct, bit_alloc, first_last_bits), the work
 * (calib_images, quantizers, weight_quantizers, activation_quantizers,
 * folded_bn, quantizers_in_file, ptq_seconds, out) and, with eval, fp32_top1,
 * top1, delta, images or top1_agree, top5_agree, sqnr_db, cosine, images. */
qk_status qk_flat_ptq(const char *model_path, const qk_dataset *calib, const qk_dataset *eval, const qk_flat_opts *o,
                      const char *out_path, qk_pool *pool, char **json);

/* Evaluate g on ds (o may be NULL); a model exported with a fixed batch of
 * 1 is made dynamic first (qk_onnx_dynamic_batch). Labelled: {"top1", "correct",
 * "images", "loss", "images_per_s"}; with real: the integer engine runs the
 * QDQ model (qrun.h) and "arith", "int_layers", "float_layers" are added.
 * Unlabelled: agreement {"top1_agree", "top5_agree", "sqnr_db", "cosine",
 * "images"} of g with the reference model, or with real of the integer
 * engine with g in float; neither is QK_ERR_ARG. g stays planned. */
qk_status qk_flat_evaluate(qk_graph *g, const qk_dataset *ds, const qk_flat_opts *o, qk_pool *pool, char **json);

/* qk_deploy_export (deploy.h): backend NULL = the model's qkit.backend;
 * *json = {"backend", "out", "files": [...], "weights", "activations",
 * "bias", "qlinear_layers"}. */
qk_status qk_flat_export(const char *model_path, const char *backend, const char *dir, char **json);

/* The backend profiles: {"backends": [{"name", "summary", "arith",
 * "wbits": [min, max], "abits": [min, max], "w_observer", "a_observer"}]}. */
qk_status qk_flat_backends(char **json);

#ifdef __cplusplus
}
#endif
#endif
