/* qkit graph layer: values, nodes, attributes, topological order, shape
 * inference, a planned forward executor and reverse-mode autodiff.
 *
 * A graph holds values (graph inputs, initializers, activations) and nodes
 * (one ONNX-style operator each). Values and nodes are referred to by index.
 * Activation values carry a batch dimension in dims[0].
 *
 * Example, y = x W^T with a Gemm node (`make test` runs it):
 *
 *   qk_graph *g;
 *   if (qk_graph_create(&g) != QK_OK)
 *       return 1;
 *   int x = qk_graph_add_input(g, "x", QK_F32, 2, (int64_t[]){-1, 2});   // [batch, 2]
 *   qk_tensor wt;
 *   qk_tensor_alloc(&wt, QK_F32, 2, (int64_t[]){1, 2});
 *   qk_f32(&wt)[0] = 2; qk_f32(&wt)[1] = -1;
 *   int w = qk_graph_add_init(g, "W", QK_VALUE_PARAM, &wt);            // takes the data
 *   int y = qk_graph_add_value(g, "y", QK_VALUE_ACT);
 *   int node = qk_graph_add_node(g, "Gemm", "fc", 2, (int[]){x, w}, 1, &y);
 *   qk_node_set_int(g, node, "transB", 1);
 *   qk_graph_add_output(g, y);
 *   qk_status st = qk_ops_bind(g);                  // qkit/registry.h: find each node's operator
 *   if (st == QK_OK)
 *       st = qk_graph_plan(g, 4, 0, NULL);          // shapes, buffers, workspace: once
 *   if (st == QK_OK) {
 *       qk_graph_set_batch(g, 3);                   // any batch up to the planned 4
 *       float *in = qk_f32(&g->values[x].t);
 *       for (int i = 0; i < 6; i++) in[i] = (float)i;   // rows (0,1) (2,3) (4,5)
 *       st = qk_graph_forward(g);                   // no allocation inside
 *   }
 *   if (st != QK_OK) {
 *       fprintf(stderr, "%s\n", qk_last_error());
 *       return 1;
 *   }
 *   const float *out = qk_f32(&g->values[y].t);      // 2 x0 - x1
 *   assert(out[0] == -1 && out[1] == 1 && out[2] == 3);
 *   qk_graph_destroy(g);
 * (end of example)
 *
 * Thread safety: a graph (and every value, node and plan it owns) is used by one
 * thread at a time; different graphs may be built, planned and run in
 * parallel (tests/test_embed.c). Read-only queries of a graph nobody
 * modifies may run concurrently. A profiler shared by several graphs locks itself.
 */
#ifndef QKIT_GRAPH_H
#define QKIT_GRAPH_H

#include "tensor.h"

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- values ---- */
typedef enum qk_value_kind {
    QK_VALUE_ACT = 0,   /* produced by a node; buffer planned by qk_graph_plan */
    QK_VALUE_INPUT = 1, /* graph input; buffer planned, filled by the caller */
    QK_VALUE_PARAM = 2, /* trainable initializer (owned data) */
    QK_VALUE_CONST = 3  /* non-trainable initializer (owned data): shapes,
                           BN running statistics, quantizer constants */
} qk_value_kind;

typedef struct qk_value {
    char *name;
    qk_value_kind kind;
    qk_tensor t;       /* shape + data; for ACT/INPUT dims[0] is the batch */
    qk_tensor grad;    /* d loss / d value, same shape; allocated by plan when needed */
    int producer;      /* node index, -1 for inputs and initializers */
    int requires_grad; /* set by plan (training): params, and acts downstream of them */
    int no_decay;      /* params excluded from weight decay (BN scale/bias, biases) */
    int grad_zeroed;   /* executor bookkeeping during backward */
    int dyn_batch;     /* INPUT: dims[0] follows the planned batch (declared -1) */
} qk_value;

/* ---- attributes (ONNX AttributeProto subset) ---- */
typedef enum qk_attr_type {
    QK_ATTR_FLOAT = 1, QK_ATTR_INT = 2, QK_ATTR_STRING = 3, QK_ATTR_TENSOR = 4,
    QK_ATTR_FLOATS = 6, QK_ATTR_INTS = 7
} qk_attr_type; /* ONNX AttributeType values */

typedef struct qk_attr {
    char *name;
    qk_attr_type type;
    int64_t i;
    float f;
    char *s;
    int n;            /* length of ints/floats */
    int64_t *ints;
    float *floats;
    qk_tensor *t;     /* owned */
} qk_attr;

struct qk_graph;
struct qk_node;
struct qk_exec;

/* ---- plan options ----
 * How a graph runs, chosen by the caller per graph (no process-wide
 * switches, no environment: only the CLI reads QKIT_* variables and fills
 * these). Zero-initialised = the defaults. Stored in the graph by
 * qk_graph_set_options and kept across re-plans; graphs the library derives
 * from another (the lowered integer graph of qk_qdq_lower) inherit them. */
typedef enum qk_sgemm_kind {
    QK_SGEMM_DEFAULT = 0,   /* the measured fastest (bench/bench_sgemm.c): dnnl */
    QK_SGEMM_DNNL = 1,      /* oneDNN dnnl_sgemm */
    QK_SGEMM_OPENBLAS = 2,  /* cblas_sgemm */
    QK_SGEMM_REFERENCE = 3  /* plain loops */
} qk_sgemm_kind;

typedef struct qk_profiler qk_profiler;

typedef struct qk_plan_options {
    int reference;          /* 1: plain reference kernels everywhere (tests compare) */
    int no_fuse;            /* 1: no plan-time operator fusion (Conv+BN, Add/BN+Relu) */
    int sgemm;              /* qk_sgemm_kind of the float GEMMs */
    int onnx_rounding;      /* qk_rq_mode (int.h) of the output stage of QLinearConv /
                               QLinearMatMul; 0 = QK_RQ_FP32 (ONNX Runtime's) */
    qk_profiler *profiler;  /* borrowed, may be NULL: times every forward/backward op */
    size_t max_bytes;       /* most bytes a plan may allocate (activations, gradients,
                               workspace); 0 = the machine's physical memory. More is
                               refused with QK_ERR_NOMEM before anything is allocated */
    int64_t slice;          /* inference plans: qk_graph_forward runs a larger batch in
                               slices of this many samples, so that each layer's
                               output is still in cache when the next reads it; 0 =
                               whole batches. Afterwards only the graph inputs and
                               outputs hold every sample (other values: the last
                               slice). Read at plan; not applied when some value's
                               first dimension does not follow the batch or a node
                               mixes samples (softmax over axis 0, CumSum, a
                               BatchNormalization on batch statistics) */
} qk_plan_options;

/* A qk_plan_options.slice for a pool of this many threads: 16 samples per
 * thread, at least 32 (the size that keeps a small CNN's layer outputs in
 * the caches while leaving every thread several tasks per layer). */
int64_t qk_slice_for_threads(int threads);

/* ---- profiler ----
 * Time per operator type (or per node name) in forward and backward,
 * recorded by qk_graph_forward/backward of every graph whose options name
 * it. Owned by the caller. Recording locks the profiler, so graphs may
 * share one and run in different threads. */
qk_status qk_profiler_create(int per_node, qk_profiler **out);
void qk_profiler_destroy(qk_profiler *p);
void qk_profiler_reset(qk_profiler *p);
/* Number of rows (distinct op types or node names recorded so far). */
int qk_profiler_rows(const qk_profiler *p);
/* Row i: name, seconds forward and backward, forward calls. Returns 0 when
 * i is out of range. */
int qk_profiler_row(const qk_profiler *p, int i, const char **name, double *fwd, double *bwd, long *calls);
/* "qkit profile: op, forward s, backward s, share" and one line per row. */
void qk_profiler_print(const qk_profiler *p, FILE *f);

/* ---- operators ----
 * An operator implements ONNX semantics for one op_type. All hooks except
 * forward are optional. Hooks see the whole graph so they can read input
 * shapes (g->values[n->in[i]].t) and constant data (shape tensors).
 *   init:     once, after binding: parse and validate attributes into
 *             n->state; error names the node.
 *   infer:    set every output's dtype and dims from the inputs' (batch
 *             included). Called at plan and whenever the batch changes;
 *             must not allocate.
 *   reshape:  at plan, after infer, shapes at the maximum batch: allocate
 *             buffers kept from forward to backward in n->state and report
 *             the scratch bytes each worker needs (*ws_bytes).
 *   forward:  compute outputs from inputs. x->training says train/eval.
 *   backward: given output grads (values[out].grad), ADD input grads into
 *             values[in].grad for every input whose grad.data != NULL
 *             (buffers are zeroed by the executor before first use).
 *   destroy:  free n->state.
 * domain: NULL (or "") for the default ONNX domain, else e.g. "ai.qkit";
 * a node binds to the operator of its own domain and op_type. */
typedef struct qk_op {
    const char *type;
    qk_status (*init)(struct qk_graph *g, struct qk_node *n);
    qk_status (*infer)(struct qk_graph *g, struct qk_node *n);
    qk_status (*reshape)(struct qk_graph *g, struct qk_node *n, int training,
                         size_t *ws_bytes);
    qk_status (*forward)(struct qk_exec *x, struct qk_node *n);
    qk_status (*backward)(struct qk_exec *x, struct qk_node *n);
    void (*destroy)(struct qk_node *n);
    const char *domain;
} qk_op;

/* The operators one layer defines: a NULL-terminated list. Each layer
 * exports its own table (ops.h: qk_float_op_table, quant.h:
 * qk_quant_op_table, int.h: qk_int_op_table); qk_graph_bind takes the
 * tables a caller knows, and qkit/registry.h joins all of them. */
typedef struct qk_op_table {
    const char *name;          /* for messages: "float", "quant", "int" */
    const qk_op *const *ops;   /* NULL-terminated */
} qk_op_table;

typedef struct qk_node {
    char *name;
    char *op_type;
    char *domain;       /* NULL or "" = default ONNX domain */
    const qk_op *op;    /* bound by qk_graph_bind */
    int n_in, n_out;
    int *in, *out;      /* value indices; -1 = absent optional input */
    int n_attr;
    qk_attr *attr;
    void *state;        /* op-private */
} qk_node;

/* The default ONNX domain: NULL, "" or "ai.onnx" (as import accepts it). */
int qk_domain_is_default(const char *domain);
/* n is op_type `type` of the default ONNX domain. */
int qk_node_is(const qk_node *n, const char *type);
/* n is op_type `type` of `domain` (NULL or "": the default domain). */
int qk_node_is_in(const qk_node *n, const char *domain, const char *type);

/* An initializer: a value whose tensor the graph holds (PARAM or CONST). */
static inline int qk_value_is_initializer(const qk_value *v)
{
    return v->kind == QK_VALUE_PARAM || v->kind == QK_VALUE_CONST;
}
/* An initializer whose data is present and that no node writes: its
 * contents can be read as constants (files checked before trusting them). */
static inline int qk_value_is_initializer_with_data(const qk_value *v)
{
    return qk_value_is_initializer(v) && v->producer < 0 && v->t.data;
}

/* Execution context handed to forward/backward. */
/* A graph input or output walked slice by slice (qk_plan_options.slice):
 * its buffer and bytes per sample. */
typedef struct qk_slice_io {
    int v;
    uint8_t *base;
    size_t per;
} qk_slice_io;

typedef struct qk_exec {
    struct qk_graph *g;
    qk_pool *pool;      /* may be NULL (serial) */
    int training;
    int nworkers;       /* qk_pool_threads(pool) */
    uint8_t *ws;        /* nworkers * ws_stride bytes, 64-aligned */
    size_t ws_stride;
    qk_slice_io *slice_io; /* inference plan with opts.slice whose nodes allow it, else NULL */
    int slice_nio;
} qk_exec;

/* Scratch of worker w (ws_stride bytes, 64-aligned). */
static inline void *qk_exec_ws(const qk_exec *x, int w) { return x->ws + (size_t)w * x->ws_stride; }

typedef struct qk_graph {
    char *name;
    int n_values, cap_values;
    qk_value *values;
    int n_nodes, cap_nodes;
    qk_node *nodes;
    int n_inputs, n_outputs;
    int *inputs, *outputs;    /* value indices */
    int *order;               /* topological order of nodes (n_nodes) */
    int n_meta;
    char **meta_keys, **meta_vals; /* ONNX metadata_props */
    int64_t opset;            /* default-domain opset (import/export) */
    qk_plan_options opts;     /* qk_graph_set_options; read at plan and in forward */
    /* plan */
    int planned;
    int training;
    int64_t max_batch, batch;
    qk_exec exec;
    void *arena;              /* activation (+ grad) storage */
} qk_graph;

/* ---- building ---- */
qk_status qk_graph_create(qk_graph **out);
void qk_graph_destroy(qk_graph *g);
/* Free everything node n owns (op state, attributes, names, edge arrays)
 * and zero it; the node stays in g->nodes (graph editing compacts). */
void qk_node_clear(qk_node *n);
/* Each returns the new index, or -1 with the error recorded (duplicate name, no memory). */
int qk_graph_add_value(qk_graph *g, const char *name, qk_value_kind kind);
/* Graph input; dims[0] may be -1 (dynamic batch). */
int qk_graph_add_input(qk_graph *g, const char *name, qk_dtype dt, int ndim, const int64_t *dims);
/* Initializer; takes ownership of *t (t is zeroed on return). */
int qk_graph_add_init(qk_graph *g, const char *name, qk_value_kind kind, qk_tensor *t);
int qk_graph_add_node(qk_graph *g, const char *op_type, const char *name,
                      int n_in, const int *in, int n_out, const int *out);
qk_status qk_graph_add_output(qk_graph *g, int value);
int qk_graph_find_value(const qk_graph *g, const char *name);
int qk_graph_find_node(const qk_graph *g, const char *name);
/* A unique name "<base>", "<base>_1", ... not used by any value or node. */
char *qk_graph_unique_name(const qk_graph *g, const char *base);
qk_status qk_graph_set_meta(qk_graph *g, const char *key, const char *val);
const char *qk_graph_get_meta(const qk_graph *g, const char *key);
/* The model's input normalization x = (pixel / 255 - mean) / std, kept as
 * metadata "qkit.norm.mean" / "qkit.norm.std" ("%.9g" text).
 * get: QK_OK and *mean, *std; QK_ERR_NOTFOUND when both keys are absent and
 * QK_ERR_FORMAT when one is missing, not a number or std <= 0 (*mean and
 * *std untouched on both). set: QK_ERR_ARG unless std > 0. */
qk_status qk_graph_get_norm(const qk_graph *g, float *mean, float *std);
qk_status qk_graph_set_norm(qk_graph *g, float mean, float std);
/* Per-channel form: the same keys hold a comma-separated list "m0,m1,m2"
 * when the channels differ (one "%.9g" value when they are all equal, so a
 * single-valued model is written exactly as qk_graph_set_norm writes it).
 * get: *nc receives the number of values (1 for the scalar form), at most
 * max (QK_ERR_FORMAT beyond; also for a count mismatch between the keys);
 * qk_graph_get_norm on a list of differing values is QK_ERR_FORMAT naming
 * this function. Errors otherwise as above. */
qk_status qk_graph_get_norm_ch(const qk_graph *g, int max, int *nc, float *mean, float *std);
qk_status qk_graph_set_norm_ch(qk_graph *g, int nc, const float *mean, const float *std);
/* The rest of the input preprocessing, as metadata written only when set:
 * "qkit.norm.scale" (multiplier after normalizing; 1 when absent),
 * "qkit.norm.bgr" ("1": channels reversed), "qkit.preprocess.resize" and
 * "qkit.preprocess.crop" (pixels; 0 when absent). get leaves a field
 * untouched when its key is absent; QK_ERR_FORMAT for a malformed value. */
typedef struct qk_graph_prep {
    float scale;
    int bgr, resize, crop;
} qk_graph_prep;
qk_status qk_graph_get_prep(const qk_graph *g, qk_graph_prep *p);
qk_status qk_graph_set_prep(qk_graph *g, const qk_graph_prep *p);

/* ---- attributes ---- */
qk_status qk_node_set_int(qk_graph *g, int node, const char *name, int64_t v);
qk_status qk_node_set_float(qk_graph *g, int node, const char *name, float v);
qk_status qk_node_set_ints(qk_graph *g, int node, const char *name, int n, const int64_t *v);
qk_status qk_node_set_floats(qk_graph *g, int node, const char *name, int n, const float *v);
qk_status qk_node_set_string(qk_graph *g, int node, const char *name, const char *s);
qk_status qk_node_set_tensor(qk_graph *g, int node, const char *name, qk_tensor *t); /* takes ownership */
/* Removes attribute `name` from node n (nothing when absent). */
void qk_node_remove_attr(qk_node *n, const char *name);
const qk_attr *qk_node_attr(const qk_node *n, const char *name);
int64_t qk_node_int(const qk_node *n, const char *name, int64_t dflt);
float qk_node_float(const qk_node *n, const char *name, float dflt);
const char *qk_node_string(const qk_node *n, const char *name, const char *dflt);
/* Copies up to max ints into out; returns the count found (0 if absent). */
int qk_node_ints(const qk_node *n, const char *name, int64_t *out, int max);

/* Input i of node n as a value, or NULL if absent/optional. */
static inline qk_value *qk_in(qk_graph *g, const qk_node *n, int i) {
    return (i < n->n_in && n->in[i] >= 0) ? &g->values[n->in[i]] : NULL;
}
static inline qk_value *qk_out(qk_graph *g, const qk_node *n, int i) {
    return (i < n->n_out && n->out[i] >= 0) ? &g->values[n->out[i]] : NULL;
}

/* ---- binding ----
 * Bind every node whose op is NULL to the operator of tables[0..n_tables)
 * with the node's domain (NULL, "" and "ai.onnx" are the default domain)
 * and op_type, run its init (an init failure destroys what it allocated,
 * leaves the node unbound and names the node), then sort. Errors
 * (QK_ERR_UNSUPPORTED) name the node: an operator no table lists (the
 * message points at `qkit info --ops`), an operator listed only in another
 * domain, a domain no table uses. Nodes already bound are left alone. */
qk_status qk_graph_bind(qk_graph *g, const qk_op_table *tables, int n_tables);
/* Operator of `tables` with this domain and op_type, or NULL. */
const qk_op *qk_op_table_find(const qk_op_table *tables, int n_tables, const char *domain, const char *op_type);

/* ---- analysis ---- */
/* Topological sort into g->order; error on cycles or values used before
 * definition (names the node and value). */
qk_status qk_graph_sort(qk_graph *g);
/* Number of nodes reading value v. */
int qk_graph_consumers(const qk_graph *g, int v, int *nodes, int max);
int64_t qk_graph_param_count(const qk_graph *g);

/* ---- options ----
 * Copy *o (NULL: the defaults) into g->opts; unplans a planned graph (the
 * next qk_graph_plan applies them). The profiler is borrowed. */
void qk_graph_set_options(qk_graph *g, const qk_plan_options *o);

/* ---- execution ----
 * plan: requires every node bound (n->op) and inited. Sorts, infers shapes at
 * max_batch, marks requires_grad (training), allocates activation buffers,
 * gradient buffers (training) and per-worker workspace. Replanning frees the
 * previous plan. The pool is borrowed (must outlive the plan). A graph
 * without a dynamic-batch input runs at its fixed batch: the dim 0 of its
 * first float input of rank >= 2 caps max_batch (g->max_batch says what was
 * planned; callers that feed batches use it).
 * Errors: those of binding and shape inference; QK_ERR_SHAPE naming the value
 * when a shape's size overflows; QK_ERR_NOMEM when the plan needs more than
 * opts.max_bytes (checked before allocating) or an allocation fails. */
/* For operators that allocate at plan time in proportion to a shape (tables,
 * folded constants): QK_ERR_SHAPE when the size of dims[ndim] of dt
 * overflows, QK_ERR_NOMEM when it exceeds the plan's limit (opts.max_bytes,
 * default physical memory); `what` starts the message. */
qk_status qk_graph_check_bytes(const qk_graph *g, const char *what, qk_dtype dt, int ndim, const int64_t *dims);
qk_status qk_graph_plan(qk_graph *g, int64_t max_batch, int training, qk_pool *pool);
void qk_graph_unplan(qk_graph *g);
/* Set the batch (1..max_batch) for the next forward: re-infers shapes. */
qk_status qk_graph_set_batch(qk_graph *g, int64_t batch);
/* Runs every node in order on the data already in the input buffers. */
qk_status qk_graph_forward(qk_graph *g);
/* Reverse pass from scalar value `loss` (d loss/d loss = 1). Parameter
 * gradients are overwritten (not accumulated across calls). */
qk_status qk_graph_backward(qk_graph *g, int loss);
/* Run infer for all nodes in order (used by plan/set_batch; also for
 * shape-only inspection with inputs' dims set). */
qk_status qk_graph_infer(qk_graph *g);

/* ---- editing (src/graph/edit.c) ----
 * For graph rewrites. Each leaves the graph unplanned with g->order reset
 * (the next qk_graph_plan / qk_graph_sort recomputes it); bound operators
 * stay bound. Node and value INDICES change when nodes or values are
 * removed (relative order is kept): re-look-up anything held by index.
 *
 * replace_uses: every node input, and every graph output, that reads value
 * old_v reads new_v instead, except the inputs of node except_node (-1:
 * none). Producers are unchanged. Errors: QK_ERR_ARG (index out of range). */
qk_status qk_graph_replace_uses(qk_graph *g, int old_v, int new_v, int except_node);
/* Removes every node i with remove[i] != 0 (remove has g->n_nodes entries),
 * destroying its operator state, then the values no longer referenced (see
 * qk_graph_remove_unused_values). A value a removed node writes may still be
 * read afterwards only if a kept node also writes it (a rewrite moved it
 * there); producers are recomputed. Errors, before anything changes:
 * QK_ERR_ARG (NULL argument; a removed node writes a graph output or a
 * value a kept node reads: the message names both), QK_ERR_NOMEM. */
qk_status qk_graph_remove_nodes(qk_graph *g, const uint8_t *remove);
/* Removes every value (initializers included) that no node reads or writes
 * and that is neither a graph input nor a graph output, compacting
 * g->values and renumbering node inputs/outputs, g->inputs, g->outputs.
 * Errors: QK_ERR_ARG (g NULL), QK_ERR_NOMEM (graph unchanged). */
qk_status qk_graph_remove_unused_values(qk_graph *g);
/* Gives every layer its own parameters, as quantization needs: an Identity
 * node reading an initializer (how torch.onnx.export shares tensors of equal
 * values) is removed and its output becomes an initializer with a copy of
 * the data (same name); an initializer read as a parameter (input 1 or
 * later) of several Conv/ConvTranspose/Gemm/MatMul/BatchNormalization nodes
 * is copied for each further reader ("<name>_1", ...). The float function is
 * unchanged (weights shared on purpose are no longer tied in training).
 * *n_changed (may be NULL): Identity nodes removed + copies made.
 * Errors: QK_ERR_ARG (g NULL), QK_ERR_NOMEM (the graph stays valid). */
qk_status qk_graph_own_params(qk_graph *g, int *n_changed);

#ifdef __cplusplus
}
#endif
#endif
