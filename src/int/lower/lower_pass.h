/* Private to src/int/lower/lower.c, lower_match.c and lower_emit.c: the
 * state of one lowering pass (qk_qdq_lower) and the helpers the pattern
 * matchers share. Calls go one way: lower.c (driver) -> lower_match.c
 * (patterns) -> lower_emit.c (emit helpers), the driver also calling the
 * emit helpers directly. */
#ifndef QK_INT_LOWER_PASS_H
#define QK_INT_LOWER_PASS_H

#include "lower_internal.h"

typedef struct lw {
    const qk_graph *s;
    qk_graph *g;
    qk_arith arith;
    int verbose;
    int *map, *lq, *wdq, *ncons, *cons, *isout, *prod;
    float *lqs;
    int32_t *lqz;
    qk_dtype *lqt;  /* codes type of lq[v] */
    qk_dtype *qt;   /* dtype of map[v] when known (0 unknown) */
    uint8_t *done;  /* source nodes already emitted as part of a pattern */
    qk_lower_stats st;
} lw;

static inline const qk_node *snode(const lw *L, int i) { return &L->s->nodes[i]; }
static inline const qk_value *sval(const lw *L, int v) { return &L->s->values[v]; }
static inline int is_q8(qk_dtype t) { return t == QK_U8 || t == QK_I8; }
static inline int sin_(const qk_node *n, int i) { return i < n->n_in ? n->in[i] : -1; }

typedef struct qpar {
    int n;               /* entries */
    const float *s;
    int32_t z[1];        /* first zero point (per tensor) */
    const qk_tensor *zt; /* NULL: absent (0) */
    qk_dtype type;       /* the codes' type */
    int64_t axis;
} qpar;

static inline int32_t qpar_z(const qpar *p, int i) { return p->zt ? (int32_t)qk_tensor_int_at(p->zt, p->n == 1 ? 0 : i) : 0; }

typedef struct chain {
    int q;          /* source Q node, -1 none */
    int relu;       /* source Relu/Clip node, -1 none */
    int pool, flat; /* source MaxPool [and Flatten] between the activation and Q, -1 none */
    qk_act act;
    float lo, hi;
    qpar p;
} chain;

#define TRY(x) do { qk_status st_ = (x); if (st_ != QK_OK) return st_; } while (0)
#define NOMEM(n) qk_error(QK_ERR_NOMEM, "lower: node '%s': out of memory", (n)->name)

/* lower_emit.c: names, values, parameters, copies, output chains */
char *qk_lw_uniq(lw *L, const char *base);
int qk_lw_new_act(lw *L, const char *base, int fresh);
int qk_lw_new_init(lw *L, const char *base, qk_dtype dt, int ndim, const int64_t *dims, const void *data);
int qk_lw_get_v(lw *L, int v);
qk_status qk_lw_qpar_read(lw *L, int ni, qpar *p);
qk_status qk_lw_copy_attrs(lw *L, int dst, const qk_node *n);
qk_status qk_lw_emit_copy(lw *L, int ni, const int *in_override, int codes_from, int *out_new);
int qk_lw_add_qnode(lw *L, const char *type, const char *base, int nin, const int *in, int out);
qk_status qk_lw_set_ostage(lw *L, int nd, qk_dtype out, int32_t zp, int32_t qmin, int32_t qmax);
qk_status qk_lw_find_chain(lw *L, int v, int allow_act, chain *c);
void qk_lw_chain_done(lw *L, const chain *c);
int qk_lw_chain_out(lw *L, const chain *c);
qk_status qk_lw_chain_bounds(const lw *L, const chain *c, int nd, int32_t *qmin, int32_t *qmax);

/* lower_match.c: one function per pattern; *handled = 1 when the node was
 * emitted in integer form (else the driver copies it as a float node). */
enum { K_CONV = 0, K_GEMM = 1, K_MATMUL = 2 };
qk_status qk_lw_lower_weighted(lw *L, int ni, int kind, int *handled);
qk_status qk_lw_lower_add(lw *L, int ni, int *handled);
qk_status qk_lw_lower_pool(lw *L, int ni, int kind, int *handled);
qk_status qk_lw_lower_concat(lw *L, int ni, int *handled);
qk_status qk_lw_lower_relu(lw *L, int ni, int *handled);
qk_status qk_lw_lower_dq(lw *L, int ni, int *handled);
qk_status qk_lw_lower_q(lw *L, int ni, int *handled);
qk_status qk_lw_lower_code_clip(lw *L, int ni, int *handled);
qk_status qk_lw_lower_shape(lw *L, int ni, int *handled);

#endif
