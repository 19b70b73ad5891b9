/* Private to the quant layer's PTQ files (ptq.c, ptq_calib.c, ptq_qdq.c,
 * fakequant_op.c). Not a public header. */
#ifndef QK_PTQ_INTERNAL_H
#define QK_PTQ_INTERNAL_H

#include "qkit/ptq.h"
#include "quant_internal.h"

/* What a FakeQuant node does in forward. */
typedef enum qk_fq_mode {
    QK_FQ_OFF = 0,     /* y = x */
    QK_FQ_OBSERVE = 1, /* the quantizer observes x (hooks included); y = x */
    QK_FQ_QUANT = 2,   /* y = fake-quantized x with the frozen parameters */
    QK_FQ_CONST = 3    /* y = a stored tensor (weights quantized at calibration) */
} qk_fq_mode;

/* Runtime of one site, owned by the qmodel; a FakeQuant node points at it. */
typedef struct qk_fq_rt {
    qk_fq_mode mode;
    qk_quantizer *q;   /* observer + hooks */
    int via_quantizer; /* QUANT runs qk_quantizer_run (hooks, NNIE) */
    int axis;          /* per-channel axis of scale/zp, -1: per tensor */
    int64_t n_ch;
    float *scale;      /* n_ch each */
    int32_t *zp, *qn, *qp;
    qk_round round;
    float *cst;        /* CONST */
    int64_t cst_n;
    int32_t *codes;    /* CONST weights: the integer codes (cst = (codes - zp) scale); NULL when a
                          hook or the NNIE code made cst */
    double *step_grad; /* NULL, or n_ch sums: a training backward in QUANT mode (not via_quantizer)
                          adds the LSQ gradient of the loss with respect to each step (block
                          reconstruction, recon_block.c) */
    const char *name;
    int gl_want;       /* an activation site of a gemmlowp profile: in inference, the codes of the engine's
                          output stage ahead of it (qk_glsim) where there is one */
} qk_fq_rt;

/* Attach rt to a bound FakeQuant node (QK_ERR_ARG if n is not one). */
qk_status qk_fakequant_attach(qk_node *n, qk_fq_rt *rt);
/* Fake-quantize with rt's per-channel parameters: q = clamp(R(x / s) + z),
 * y = (q - z) s, in float32 (ONNX QuantizeLinear's division, so a QDQ file
 * reproduces it). [outer, n_ch, inner] layout; mask optional. */
void qk_fq_apply(const qk_fq_rt *rt, const float *x, float *y, int64_t outer, int64_t inner, uint8_t *mask,
                 qk_pool *pool);

/* A weighted layer (Conv / Gemm / MatMul) with a quantized weight. */
typedef struct qk_qlayer {
    int node;          /* the layer node */
    int w_site, a_site;/* site indices (-1: none) */
    int w_axis;        /* output-channel axis of the weight */
    int64_t n_out;     /* output channels */
    double *in_mean;   /* calibration mean of the layer's input, per sample element */
    int64_t in_numel;  /* elements of one sample of the input */
    int64_t in_count;  /* samples accumulated */
} qk_qlayer;

/* Per-channel activation statistics (activation bit allocation). */
typedef struct qk_chstat {
    int64_t n_ch, count;
    double *sum, *sum2;
    float *mn, *mx;
} qk_chstat;

struct qk_qmodel {
    qk_graph *g;
    qk_ptq_config cfg;
    qk_qparams wq, aq;       /* the backend's quantizers at the chosen bits */
    int n_sites;
    qk_qsite *sites;
    qk_fq_rt *rt;            /* n_sites */
    qk_chstat *chstat;       /* n_sites (used for activation sites with bit allocation) */
    int n_layers;
    qk_qlayer *layers;
    int n_folded;
    int calibrated;
    int calib_begun;         /* a calibration passed its argument checks (observers may hold its data) */
    int exported;            /* the graph now holds QuantizeLinear/DequantizeLinear */
    int first_last_bits;     /* resolved: the width of the first/last weighted layer, -1 none */
    int cle, cle_pairs, cle_relu6; /* resolved: cross-layer equalization applied; its pairs, ReLU6 -> ReLU */
    double seconds;          /* spent in the PTQ calls on this model (qk_ptq_result) */
    char **exclude;
    int n_exclude;
};

qk_status qk_ptq_quantize_weights(qk_qmodel *m);
/* Weight site s quantized again at `bits` (its quantizer rebuilt; no bias correction). */
qk_status qk_ptq_requantize_weight(qk_qmodel *m, int s, int bits);
/* Each quantized layer's float bias set to the engine's int32 grid s_x * s_w
 * (ptq_calib.c says when and where). */
void qk_ptq_snap_bias(qk_qmodel *m);
/* A name "<value><suffix>" (then "_1", "_2", ...) no value or node of g
 * uses, allocated (qk_free); NULL when out of memory. */
char *qk_ptq_site_name(const qk_graph *g, const char *value, const char *suffix);
/* "none", "w", "a" or "wa" for QK_BITALLOC_* flags. */
const char *qk_ptq_bit_alloc_name(int flags);

#endif
