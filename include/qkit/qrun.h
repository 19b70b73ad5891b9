/* qkit integer inference of a quantized (QDQ) model: lowering to integer
 * operators that reproduce the backend's arithmetic, and a small runner for
 * applications.
 *
 * Example (`make test` runs it):
 *
 *   // A QDQ model as `qkit ptq --out q.onnx` writes it (ptq.h), made here in
 *   // memory; qk_qrun_load("q.onnx", &o, &r) reads one from a file.
 *   qk_graph *g;
 *   qk_dataset test;
 *   if (qk_onnx_load("models/lenet.onnx", &g) != QK_OK ||
 *       qk_dataset_load_dir(NULL, "t10k", &test) != QK_OK)
 *       return 1;
 *   qk_ptq_config c; qk_ptq_config_default(&c);
 *   c.backend = qk_backend_find("onnx-qlinear");
 *   qk_qmodel *m;
 *   if (qk_ptq_prepare(g, &c, &m) != QK_OK)
 *       return 1;
 *   qk_status st = qk_ptq_calibrate(m, &test, qk_norm_default(), 64, NULL, NULL, NULL);
 *   if (st == QK_OK)
 *       st = qk_ptq_convert_qdq(m);
 *
 *   qk_qrun_opts o; qk_qrun_opts_default(&o);           // batch 64, serial
 *   qk_qrun *r = NULL;
 *   if (st == QK_OK)
 *       st = qk_qrun_create(qk_qmodel_graph(m), &o, &r); // lower to integer ops, plan
 *   if (st != QK_OK) {
 *       fprintf(stderr, "%s\n", qk_last_error());
 *       return 1;
 *   }
 *   int64_t d[4]; qk_qrun_input_shape(r, d);            // {-1, 1, 28, 28}
 *   float lut[256]; qk_norm_lut(qk_qrun_norm(r), lut);  // normalize like the float model
 *   enum { N = 8 };
 *   float *images = malloc(N * 28 * 28 * sizeof *images);
 *   float *logits = malloc(N * qk_qrun_classes(r) * sizeof *logits);
 *   for (int i = 0; images && i < N; i++)
 *       qk_image_prepare(test.images + i * 28 * 28, 28, 28, images + i * 28 * 28, lut, 0, 0, 0, 0);
 *   st = images && logits ? qk_qrun_forward(r, N, 1, 28, 28, images, logits) : QK_ERR_NOMEM;
 *   free(images); free(logits);
 *   qk_qrun_destroy(r);
 *   qk_qmodel_destroy(m);
 *   qk_dataset_free(&test);
 *   if (st != QK_OK || d[1] != 1 || d[2] != 28)
 *       return 1;
 * (end of example)
 *
 * ---- Lowering (qk_qdq_lower) ----
 * Input: a QDQ graph as `qkit ptq` writes it (ptq.h, "The QDQ model file").
 * The arithmetic comes from metadata "qkit.arith" (fp32 | gemmlowp | pot;
 * "none" is an error) unless the options override it. The pass walks the
 * graph in topological order; every value is either float, or integer
 * codes with one per-tensor (scale, zero point). A DequantizeLinear of
 * codes is not executed: its consumers read the codes when they have an
 * integer form, and a DequantizeLinear is materialized only for consumers
 * that stay in float. Patterns turned into integer operators:
 *  - DQ(act) + DQ(weight) -> Conv | Gemm | MatMul [-> Relu | Clip] -> Q:
 *    QkConv / QkGemm, int8/uint8 in, int32 accumulate, int32 bias
 *    q_b = RNE(b / (s_x s_w[c])) (saturated), requantized to the Q's grid
 *    (fp32: float scale s_x*s_w/s_y, RNE, ONNX Runtime; gemmlowp: Q31
 *    multiplier + shift, TFLite; pot: rounding shift, scales must be exact
 *    powers of two), ReLU/ReLU6/Clip fused as output clamps; a MaxPool
 *    [and a Flatten] between the activation and the Q (TensorRT's conv ->
 *    ReLU -> MaxPool -> Q) runs after the requantization as an integer max
 *    on the codes (per-tensor quantization is monotone), as TensorRT fuses
 *    conv + ReLU and pools in int8;
 *  - the same without a Q on the output (TensorRT-style QDQ: only conv/fc
 *    inputs quantized): int32 accumulator (bias included) dequantized to
 *    float32 by s_x*s_w[c] (TensorRT's int8 kernel with fp32 output); the
 *    ops after it run in float;
 *  - DQ(a) + DQ(b) -> Add [-> Relu] -> Q: QkAdd (fp32: MLAS QLinearAdd;
 *    gemmlowp: TFLite; pot: shift alignment);
 *  - DQ -> MaxPool: integer max on the codes (exact); DQ -> AveragePool |
 *    GlobalAveragePool -> Q and DQ.. -> Concat -> Q: requantizing integer
 *    ops; Flatten / Reshape / Squeeze / Unsqueeze / Identity / Dropout and
 *    Relu on codes stay on codes;
 *  - Q of a value that is already codes: identity (same grid) or an
 *    integer requantization (QkRequant);
 *  - everything else (an Add fed by a float conv output, ops a profile
 *    leaves in float) is copied as a float node, with DequantizeLinear /
 *    QuantizeLinear at the boundaries.
 * Values keep their QDQ names where the meaning is the same (every Q
 * output "<x>_quantized" exists in the lowered graph as codes of the same
 * grid), so fake and real activations can be compared by name.
 * The lowered graph uses standard ONNX ops plus the domain "ai.qkit" ops
 * QkConv, QkGemm, QkAdd, QkPool, QkConcat, QkRequant; bind it with
 * qk_lower_bind (qk_qdq_lower already did).
 *
 * Thread safety: lowering reads the QDQ graph and builds a new one; the lowered
 * graph follows graph.h's rule.
 */
#ifndef QKIT_QRUN_H
#define QKIT_QRUN_H

#include "backend.h"
#include "data.h"
#include "graph.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qk_lower_opts {
    int arith;   /* -1: metadata "qkit.arith" (default); else a qk_arith */
    int verbose; /* 1: one log line per lowered node (QK_LOG_INFO) */
} qk_lower_opts;
void qk_lower_opts_default(qk_lower_opts *o);

/* What the pass did (optional output). */
typedef struct qk_lower_stats {
    qk_arith arith;
    int int_nodes;    /* ai.qkit integer operators */
    int float_nodes;  /* nodes copied as float (Q/DQ boundaries included) */
    int int_layers;   /* weighted layers run in integer */
    int float_layers; /* weighted layers left in float (input or weight not quantized) */
} qk_lower_stats;

/* Lower qdq (not modified; need not be bound) into a new bound graph *out
 * with the same inputs and outputs (float32 in, float32 logits out).
 * Errors (the message names the node and the bad value):
 *  QK_ERR_ARG         a scale that is zero, negative, NaN or infinite; a
 *                     bias value that is NaN or infinite; a
 *                     zero point of another type than the codes or outside
 *                     the codes' range (a Clip on codes narrower than it);
 *                     a per-channel scale/zero point whose length is not the
 *                     weight's output channels, or along a reduced axis;
 *                     pot arithmetic with a scale that is not a power of
 *                     two; a Q/DQ scale that is not an initializer
 *  QK_ERR_UNSUPPORTED "qkit.arith" is "none" (no integer pipeline, e.g.
 *                     NNIE), missing with opts->arith -1, or unknown; an
 *                     operator qkit does not implement (from binding)
 *  QK_ERR_FORMAT      the graph has a cycle or reads an undefined value
 *  QK_ERR_NOMEM */
qk_status qk_qdq_lower(const qk_graph *qdq, const qk_lower_opts *opts, qk_graph **out, qk_lower_stats *stats);

/* Bind a lowered graph (e.g. one loaded back from ONNX) with the float,
 * quant and integer operator tables (qk_graph_bind): the ai.qkit Qk* nodes
 * to the integer operators above, the rest to theirs. The lowered graph of
 * qk_qdq_lower inherits the QDQ graph's plan options (qk_graph_set_options). */
qk_status qk_lower_bind(qk_graph *g);

/* Epilogue fusion for execution (lower_fuse.c): on a bound graph from
 * qk_qdq_lower, each chain  integer -> DequantizeLinear [-> Add with a
 * same-shaped float or dequantized skip] [-> Relu] -> QuantizeLinear  whose
 * float intermediates have no other reader (TensorRT-style blocks: int32
 * conv accumulators dequantized, added, activated and quantized in float)
 * becomes one ai.qkit QkEpilogue node repeating the same float operations in
 * the same order: bit-identical codes without the float tensors. The
 * QuantizeLinear outputs keep their names. Leaves the graph bound, unplanned.
 * qk_qrun_create runs it before qk_lower_layout. Errors: shape inference
 * errors, QK_ERR_NOMEM. */
qk_status qk_lower_fuse(qk_graph *g);

/* NHWC layout pass for execution (lower_layout.c): on a graph from
 * qk_qdq_lower, before it is planned, marks the 4-D codes between integer
 * convolutions (group 1, or depthwise with channel multiplier 1), element-wise
 * QkAdd / QkRequant and global average pooling as [N][H][W][C] (attributes
 * x_nhwc / y_nhwc of QkConv, x_nhwc of QkPool). Graph inputs, outputs and
 * values read by any other op stay NCHW, so the logits are bit-identical;
 * the intermediate values are then no longer comparable with the QDQ graph's
 * by name (qk_qdq_compare takes the graph without this pass). qk_qrun_create
 * runs it. Errors: QK_ERR_NOMEM. */
qk_status qk_lower_layout(qk_graph *g);

/* Unsigned activation codes for execution (lower_unsign.c): on a graph from
 * qk_qdq_lower, before it is planned, every int8 activation tensor whose
 * producer and readers all allow it becomes uint8 codes q + 128 with zero
 * point z + 128 (and clamp bounds + 128), so the convolutions run the
 * uint8 x int8 kernels (no per-pixel row sums, the implicit im2col) that
 * signed activations rule out. q - z is unchanged: bit-identical logits.
 * Graph inputs and outputs keep their types; intermediate values are then
 * no longer comparable with the QDQ graph's codes by value. *changed (may
 * be NULL) = the number of values retyped. Errors: QK_ERR_NOMEM. */
qk_status qk_lower_unsign(qk_graph *g, int *changed);

/* The runner's passes in order: qk_lower_fuse, qk_lower_layout,
 * qk_lower_unsign (what qk_qrun_create, `qkit eval --real` and the flat API
 * run). */
qk_status qk_lower_prepare_run(qk_graph *g);

/* ---- runner ---- */
typedef struct qk_qrun_opts {
    int64_t max_batch;  /* images per forward pass inside qk_qrun_forward (>= 1; default 64) */
    qk_pool *pool;      /* borrowed, may be NULL (serial); must outlive the runner */
    int arith;          /* -1 (default): from the model's metadata; else a qk_arith */
} qk_qrun_opts;
void qk_qrun_opts_default(qk_qrun_opts *o);

typedef struct qk_qrun qk_qrun;

/* Load an ONNX QDQ model file, lower and plan it. Errors: those of
 * qk_onnx_load (QK_ERR_IO, QK_ERR_FORMAT, QK_ERR_UNSUPPORTED), of
 * qk_qdq_lower, QK_ERR_SHAPE if the model does not have one input
 * [N, C, H, W] and one output [N, classes], QK_ERR_ARG for bad options. */
qk_status qk_qrun_load(const char *path, const qk_qrun_opts *o, qk_qrun **out);
/* The same from a graph in memory (not modified or kept). */
qk_status qk_qrun_create(const qk_graph *qdq, const qk_qrun_opts *o, qk_qrun **out);
void qk_qrun_destroy(qk_qrun *r);
/* dims = {-1 or the fixed batch, C, H, W} of the model input. */
void qk_qrun_input_shape(const qk_qrun *r, int64_t dims[4]);
int64_t qk_qrun_classes(const qk_qrun *r);
/* Normalization stored in the model (qkit.norm.*; Fashion-MNIST default). */
qk_norm qk_qrun_norm(const qk_qrun *r);
/* The lowered graph (owned by r; planned). */
qk_graph *qk_qrun_graph(qk_qrun *r);
const qk_lower_stats *qk_qrun_stats(const qk_qrun *r);
/* n images x [c][h][w] float32 (NCHW, normalized) -> logits [n][classes].
 * Runs max_batch images at a time; no allocation. Errors: QK_ERR_SHAPE
 * when (c, h, w) is not the model's input (the message gives both),
 * QK_ERR_ARG for n < 1 or NULL buffers; operator errors. */
qk_status qk_qrun_forward(qk_qrun *r, int64_t n, int64_t c, int64_t h, int64_t w, const float *x, float *logits);

/* ---- fake versus real ----
 * Run the fake-quant QDQ graph and its lowered integer graph on the same
 * images; top-1 of each, and per quantized tensor (each QuantizeLinear
 * output of the QDQ graph found as codes in the lowered graph) the
 * agreement of the codes: SQNR = 10 log10(sum f^2 / sum (f - r)^2) over the
 * dequantized values (+inf when identical) and the largest |q_f - q_r| in
 * LSBs. Both graphs are bound (qk_lower_bind) and planned here. */
typedef struct qk_site_agree {
    char name[128];
    double sqnr_db;     /* +inf when every code agrees */
    double max_err_lsb;
    double mismatch;    /* fraction of codes that differ */
    int64_t count;      /* codes compared */
} qk_site_agree;

typedef struct qk_compare_result {
    double fake_top1, real_top1, gap; /* gap = fake - real, fractions in [0, 1] */
    int64_t images;
    double max_logit_diff;            /* largest |fake - real| logit */
    int n_sites;
    qk_site_agree *sites;             /* in the QDQ graph's node order */
} qk_compare_result;

qk_status qk_qdq_compare(qk_graph *fake, qk_graph *real, const qk_dataset *ds, qk_norm norm, int batch,
                         qk_pool *pool, qk_compare_result *r);
void qk_compare_result_free(qk_compare_result *r);

#ifdef __cplusplus
}
#endif
#endif
