/* Gemm and MatMul (ONNX opset 13), forward and backward.
 *
 * Gemm:   Y[M,N] = alpha * op(A) * op(B) + beta * C
 *         A [M,K] ([K,M] if transA), B [K,N] ([N,K] if transB), C optional,
 *         unidirectionally broadcast to [M,N] (shape (), [1], [N], [1,N],
 *         [M,1], [M,N]).
 * MatMul: numpy matmul: A [..., M, K] x B [..., K, N] -> [..., M, N] with
 *         broadcast batch dims; a 1-D A is [1,K] with M dropped from the
 *         output, a 1-D B is [K,1] with N dropped.
 *
 * Work is split into output tiles of at most TILE_M x TILE_N (fixed sizes,
 * so the split depends on the shape only); each tile is one qk_sgemm over
 * the full depth, run by one pool task: bit-identical for any thread count.
 * Gradients that sum over broadcast batch entries (MatMul) are accumulated
 * per tile in increasing batch order. the graph option `reference` makes every
 * product use plain loops (qk_sgemm's reference backend is not switched;
 * a local loop is used instead). */
#include "qkit/ops.h"

#include <string.h>

#define TILE_M 64
#define TILE_N 256

/* Plain C[M,N] = alpha*op(A)*op(B) + beta*C (beta 0: C not read). */
static void gemm_ref(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                     int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            float s = 0.0f;
            for (int64_t k = 0; k < K; k++)
                s += (ta ? A[k * lda + i] : A[i * lda + k]) * (tb ? B[j * ldb + k] : B[k * ldb + j]);
            C[i * ldc + j] = alpha * s + (beta == 0.0f ? 0.0f : beta * C[i * ldc + j]);
        }
}

/* One product description; tiles index its C. */
typedef struct gjob {
    int ta, tb;
    int64_t M, N, K;
    float alpha, beta;
    const float *A, *B;
    float *C;
    int64_t lda, ldb, ldc;
} gjob;

static inline int64_t tiles_of(int64_t M, int64_t N)
{
    return ((M + TILE_M - 1) / TILE_M) * ((N + TILE_N - 1) / TILE_N);
}

/* -1: plain loops (the graph option `reference`), else the qk_sgemm_kind
 * of the graph option `sgemm`. */
static int gemm_kern(const qk_exec *x)
{
    return x->g->opts.reference ? -1 : x->g->opts.sgemm;
}

/* Tile t of job j: rows [r0, r1) x cols [c0, c1) of C. */
static void gjob_tile(const gjob *j, int64_t t, int kern)
{
    int64_t nt = (j->N + TILE_N - 1) / TILE_N;
    int64_t r0 = (t / nt) * TILE_M, c0 = (t % nt) * TILE_N;
    int64_t m = j->M - r0 < TILE_M ? j->M - r0 : TILE_M, n = j->N - c0 < TILE_N ? j->N - c0 : TILE_N;
    const float *a = j->ta ? j->A + r0 : j->A + r0 * j->lda;
    const float *b = j->tb ? j->B + c0 * j->ldb : j->B + c0;
    float *c = j->C + r0 * j->ldc + c0;
    if (kern < 0)
        gemm_ref(j->ta, j->tb, m, n, j->K, j->alpha, a, j->lda, b, j->ldb, j->beta, c, j->ldc);
    else
        qk_sgemm((qk_sgemm_kind)kern, j->ta, j->tb, m, n, j->K, j->alpha, a, j->lda, b, j->ldb, j->beta, c, j->ldc);
}

/* ------------------------------------------------------------------ Gemm */

typedef struct gemm_state {
    float alpha, beta;
    int ta, tb;
    int64_t M, N, K;
    int64_t csm, csn; /* C strides over Y's rows / cols (0 = broadcast) */
} gemm_state;

static qk_status gemm_init(qk_graph *g, qk_node *n)
{
    (void)g;
    if (n->n_in < 2 || n->n_in > 3 || n->n_out != 1 || n->in[0] < 0 || n->in[1] < 0)
        return qk_error(QK_ERR_ARG, "Gemm: expects inputs A, B[, C] and one output");
    gemm_state *s = qk_calloc(1, sizeof *s);
    if (!s)
        return qk_error(QK_ERR_NOMEM, "Gemm: out of memory");
    n->state = s;
    s->alpha = qk_node_float(n, "alpha", 1.0f);
    s->beta = qk_node_float(n, "beta", 1.0f);
    s->ta = qk_node_int(n, "transA", 0) != 0;
    s->tb = qk_node_int(n, "transB", 0) != 0;
    return QK_OK;
}

static void state_destroy(qk_node *n)
{
    qk_free(n->state);
    n->state = NULL;
}

static qk_status gemm_infer(qk_graph *g, qk_node *n)
{
    gemm_state *s = n->state;
    const qk_tensor *a = &qk_in(g, n, 0)->t, *b = &qk_in(g, n, 1)->t;
    const qk_value *cv = qk_in(g, n, 2);
    char b1[96], b2[96], b3[96];
    if (a->dtype != QK_F32 || b->dtype != QK_F32 || (cv && cv->t.dtype != QK_F32))
        return qk_error(QK_ERR_UNSUPPORTED, "Gemm: only float32 is supported");
    if (a->ndim != 2 || b->ndim != 2)
        return qk_error(QK_ERR_SHAPE, "Gemm: A %s and B %s must be 2-D", qk_shape_str(a, b1, sizeof b1),
                        qk_shape_str(b, b2, sizeof b2));
    int64_t M = s->ta ? a->dims[1] : a->dims[0], K = s->ta ? a->dims[0] : a->dims[1];
    int64_t K2 = s->tb ? b->dims[1] : b->dims[0], N = s->tb ? b->dims[0] : b->dims[1];
    if (K != K2)
        return qk_error(QK_ERR_SHAPE, "Gemm: A %s (transA=%d) and B %s (transB=%d) disagree on K (%lld vs %lld)",
                        qk_shape_str(a, b1, sizeof b1), s->ta, qk_shape_str(b, b2, sizeof b2), s->tb,
                        (long long)K, (long long)K2);
    s->M = M;
    s->N = N;
    s->K = K;
    s->csm = s->csn = 0;
    if (cv) {
        const qk_tensor *c = &cv->t;
        int ok = c->ndim <= 2;
        if (c->ndim >= 1) {
            int64_t cn = c->dims[c->ndim - 1];
            ok &= cn == 1 || cn == N;
            s->csn = cn == N ? 1 : 0;
        }
        if (c->ndim == 2) {
            ok &= c->dims[0] == 1 || c->dims[0] == M;
            s->csm = c->dims[0] == M ? c->dims[1] : 0;
        }
        if (!ok)
            return qk_error(QK_ERR_SHAPE, "Gemm: C %s cannot be broadcast to [%lld,%lld] (A %s, B %s)",
                            qk_shape_str(c, b3, sizeof b3), (long long)M, (long long)N,
                            qk_shape_str(a, b1, sizeof b1), qk_shape_str(b, b2, sizeof b2));
    }
    qk_tensor_set_shape(&qk_out(g, n, 0)->t, QK_F32, 2, (int64_t[]){ M, N });
    return QK_OK;
}

typedef struct gemm_ctx {
    const gemm_state *s;
    gjob j;
    const float *C; /* forward bias, or NULL */
    int kern; /* gemm_kern */
} gemm_ctx;

static void gemm_fwd_task(void *vc, int64_t t, int worker)
{
    (void)worker;
    const gemm_ctx *c = vc;
    const gemm_state *s = c->s;
    gjob j = c->j;
    if (c->C) {
        /* Y tile = beta * C (broadcast), then Y += alpha * A*B. */
        int64_t nt = (j.N + TILE_N - 1) / TILE_N, r0 = (t / nt) * TILE_M, c0 = (t % nt) * TILE_N;
        int64_t r1 = r0 + TILE_M < j.M ? r0 + TILE_M : j.M, c1 = c0 + TILE_N < j.N ? c0 + TILE_N : j.N;
        for (int64_t r = r0; r < r1; r++)
            for (int64_t q = c0; q < c1; q++)
                j.C[r * j.ldc + q] = s->beta * c->C[r * s->csm + q * s->csn];
        j.beta = 1.0f;
    }
    gjob_tile(&j, t, c->kern);
}

static qk_status gemm_forward(qk_exec *x, qk_node *n)
{
    qk_graph *g = x->g;
    const gemm_state *s = n->state;
    const qk_value *cv = qk_in(g, n, 2);
    const qk_tensor *a = &qk_in(g, n, 0)->t, *b = &qk_in(g, n, 1)->t;
    gemm_ctx c = { .s = s, .kern = gemm_kern(x) };
    c.j = (gjob){ s->ta, s->tb, s->M, s->N, s->K, s->alpha, 0.0f, qk_f32(a), qk_f32(b),
                  qk_f32(&qk_out(g, n, 0)->t), a->dims[1], b->dims[1], s->N };
    c.C = cv && s->beta != 0.0f ? qk_f32(&cv->t) : NULL;
    qk_pool_run(x->pool, tiles_of(s->M, s->N), gemm_fwd_task, &c);
    return QK_OK;
}

static void gjob_task(void *vc, int64_t t, int worker)
{
    (void)worker;
    const gemm_ctx *c = vc;
    gjob_tile(&c->j, t, c->kern);
}

static qk_status gemm_backward(qk_exec *x, qk_node *n)
{
    qk_graph *g = x->g;
    const gemm_state *s = n->state;
    qk_value *av = qk_in(g, n, 0), *bv = qk_in(g, n, 1), *cv = qk_in(g, n, 2);
    const float *A = qk_f32(&av->t), *B = qk_f32(&bv->t), *dY = qk_f32(&qk_out(g, n, 0)->grad);
    const int64_t M = s->M, N = s->N, K = s->K, lda = av->t.dims[1], ldb = bv->t.dims[1];
    gemm_ctx c = { .s = s, .kern = gemm_kern(x) };
    if (av->grad.data) {
        /* d op(A) = alpha * dY * op(B)^T, stored transposed when transA. */
        if (!s->ta)
            c.j = (gjob){ 0, !s->tb, M, K, N, s->alpha, 1.0f, dY, B, av->grad.data, N, ldb, K };
        else
            c.j = (gjob){ s->tb, 1, K, M, N, s->alpha, 1.0f, B, dY, av->grad.data, ldb, N, M };
        qk_pool_run(x->pool, tiles_of(c.j.M, c.j.N), gjob_task, &c);
    }
    if (bv->grad.data) {
        /* d op(B) = alpha * op(A)^T * dY, stored transposed when transB. */
        if (!s->tb)
            c.j = (gjob){ !s->ta, 0, K, N, M, s->alpha, 1.0f, A, dY, bv->grad.data, lda, N, N };
        else
            c.j = (gjob){ 1, s->ta, N, K, M, s->alpha, 1.0f, dY, A, bv->grad.data, N, lda, K };
        qk_pool_run(x->pool, tiles_of(c.j.M, c.j.N), gjob_task, &c);
    }
    if (cv && cv->grad.data) {
        /* dC = beta * dY summed over broadcast dims, rows in order. */
        float *dC = cv->grad.data;
        for (int64_t r = 0; r < M; r++)
            for (int64_t q = 0; q < N; q++)
                dC[r * s->csm + q * s->csn] += s->beta * dY[r * N + q];
    }
    return QK_OK;
}

const qk_op qk_op_gemm = {
    .type = "Gemm",
    .init = gemm_init,
    .infer = gemm_infer,
    .forward = gemm_forward,
    .backward = gemm_backward,
    .destroy = state_destroy,
};

/* ---------------------------------------------------------------- MatMul */

typedef struct matmul_state {
    int64_t M, N, K;
    int nb;                /* output batch rank */
    int64_t bd[QK_MAX_DIMS]; /* output batch dims */
    int64_t as[QK_MAX_DIMS], bs[QK_MAX_DIMS]; /* A/B matrix strides per batch dim (0 = broadcast) */
    int64_t nbatch, a_mats, b_mats;
} matmul_state;

static qk_status matmul_init(qk_graph *g, qk_node *n)
{
    (void)g;
    if (n->n_in != 2 || n->n_out != 1 || n->in[0] < 0 || n->in[1] < 0)
        return qk_error(QK_ERR_ARG, "MatMul: expects inputs A, B and one output");
    n->state = qk_calloc(1, sizeof(matmul_state));
    return n->state ? QK_OK : qk_error(QK_ERR_NOMEM, "MatMul: out of memory");
}

static qk_status matmul_infer(qk_graph *g, qk_node *n)
{
    matmul_state *s = n->state;
    const qk_tensor *a = &qk_in(g, n, 0)->t, *b = &qk_in(g, n, 1)->t;
    char b1[96], b2[96];
    if (a->dtype != QK_F32 || b->dtype != QK_F32)
        return qk_error(QK_ERR_UNSUPPORTED, "MatMul: only float32 is supported");
    if (a->ndim < 1 || b->ndim < 1)
        return qk_error(QK_ERR_SHAPE, "MatMul: A %s and B %s must have rank >= 1",
                        qk_shape_str(a, b1, sizeof b1), qk_shape_str(b, b2, sizeof b2));
    s->M = a->ndim >= 2 ? a->dims[a->ndim - 2] : 1;
    s->K = a->dims[a->ndim - 1];
    int64_t K2 = b->ndim >= 2 ? b->dims[b->ndim - 2] : b->dims[0];
    s->N = b->ndim >= 2 ? b->dims[b->ndim - 1] : 1;
    if (s->K != K2)
        return qk_error(QK_ERR_SHAPE, "MatMul: A %s and B %s disagree on K (%lld vs %lld)",
                        qk_shape_str(a, b1, sizeof b1), qk_shape_str(b, b2, sizeof b2), (long long)s->K,
                        (long long)K2);
    int ra = a->ndim > 2 ? a->ndim - 2 : 0, rb = b->ndim > 2 ? b->ndim - 2 : 0;
    s->nb = ra > rb ? ra : rb;
    int64_t sa = 1, sb = 1;
    s->nbatch = 1;
    for (int i = s->nb - 1; i >= 0; i--) {
        int ia = i - (s->nb - ra), ib = i - (s->nb - rb);
        int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
        if (da != db && da != 1 && db != 1)
            return qk_error(QK_ERR_SHAPE, "MatMul: batch dims of A %s and B %s do not broadcast",
                            qk_shape_str(a, b1, sizeof b1), qk_shape_str(b, b2, sizeof b2));
        s->bd[i] = da > db ? da : db;
        if (da == 0 || db == 0)
            s->bd[i] = 0;
        s->as[i] = da == 1 ? 0 : sa;
        s->bs[i] = db == 1 ? 0 : sb;
        sa *= da;
        sb *= db;
        s->nbatch *= s->bd[i];
    }
    s->a_mats = sa;
    s->b_mats = sb;
    int64_t od[QK_MAX_DIMS];
    int r = 0;
    for (int i = 0; i < s->nb; i++)
        od[r++] = s->bd[i];
    if (a->ndim >= 2)
        od[r++] = s->M;
    if (b->ndim >= 2)
        od[r++] = s->N;
    if (r > QK_MAX_DIMS)
        return qk_error(QK_ERR_SHAPE, "MatMul: output rank %d too large", r);
    qk_tensor_set_shape(&qk_out(g, n, 0)->t, QK_F32, r, od);
    return QK_OK;
}

/* Matrix indices of A and B for output batch entry b. */
static void mm_index(const matmul_state *s, int64_t b, int64_t *ia, int64_t *ib)
{
    int64_t a = 0, bb = 0;
    for (int i = s->nb - 1; i >= 0; i--) {
        int64_t d = b % s->bd[i];
        b /= s->bd[i];
        a += d * s->as[i];
        bb += d * s->bs[i];
    }
    *ia = a;
    *ib = bb;
}

typedef struct mm_ctx {
    const matmul_state *s;
    const float *A, *B, *dY;
    float *Y, *dA, *dB;
    int64_t tiles;
    int kern; /* gemm_kern */
} mm_ctx;

static void mm_fwd_task(void *vc, int64_t t, int worker)
{
    (void)worker;
    const mm_ctx *c = vc;
    const matmul_state *s = c->s;
    int64_t b = t / c->tiles, ia, ib;
    mm_index(s, b, &ia, &ib);
    gjob j = { 0, 0, s->M, s->N, s->K, 1.0f, 0.0f, c->A + ia * s->M * s->K, c->B + ib * s->K * s->N,
               c->Y + b * s->M * s->N, s->K, s->N, s->N };
    gjob_tile(&j, t % c->tiles, c->kern);
}

static qk_status matmul_forward(qk_exec *x, qk_node *n)
{
    qk_graph *g = x->g;
    const matmul_state *s = n->state;
    mm_ctx c = { .s = s, .A = qk_f32(&qk_in(g, n, 0)->t), .B = qk_f32(&qk_in(g, n, 1)->t),
                 .Y = qk_f32(&qk_out(g, n, 0)->t), .tiles = tiles_of(s->M, s->N), .kern = gemm_kern(x) };
    qk_pool_run(x->pool, s->nbatch * c.tiles, mm_fwd_task, &c);
    return QK_OK;
}

/* dA[ia] += sum over output batches b mapping to ia of dY[b] * B[ib]^T. */
static void mm_da_task(void *vc, int64_t t, int worker)
{
    (void)worker;
    const mm_ctx *c = vc;
    const matmul_state *s = c->s;
    int64_t tiles = tiles_of(s->M, s->K), ia = t / tiles;
    for (int64_t b = 0; b < s->nbatch; b++) {
        int64_t a, bb;
        mm_index(s, b, &a, &bb);
        if (a != ia)
            continue;
        gjob j = { 0, 1, s->M, s->K, s->N, 1.0f, 1.0f, c->dY + b * s->M * s->N, c->B + bb * s->K * s->N,
                   c->dA + ia * s->M * s->K, s->N, s->N, s->K };
        gjob_tile(&j, t % tiles, c->kern);
    }
}

/* dB[ib] += sum over b mapping to ib of A[ia]^T * dY[b]. */
static void mm_db_task(void *vc, int64_t t, int worker)
{
    (void)worker;
    const mm_ctx *c = vc;
    const matmul_state *s = c->s;
    int64_t tiles = tiles_of(s->K, s->N), ib = t / tiles;
    for (int64_t b = 0; b < s->nbatch; b++) {
        int64_t a, bb;
        mm_index(s, b, &a, &bb);
        if (bb != ib)
            continue;
        gjob j = { 1, 0, s->K, s->N, s->M, 1.0f, 1.0f, c->A + a * s->M * s->K, c->dY + b * s->M * s->N,
                   c->dB + ib * s->K * s->N, s->K, s->N, s->N };
        gjob_tile(&j, t % tiles, c->kern);
    }
}

static qk_status matmul_backward(qk_exec *x, qk_node *n)
{
    qk_graph *g = x->g;
    const matmul_state *s = n->state;
    qk_value *av = qk_in(g, n, 0), *bv = qk_in(g, n, 1);
    mm_ctx c = { .s = s, .A = qk_f32(&av->t), .B = qk_f32(&bv->t), .dY = qk_f32(&qk_out(g, n, 0)->grad),
                 .dA = av->grad.data, .dB = bv->grad.data, .kern = gemm_kern(x) };
    if (c.dA)
        qk_pool_run(x->pool, s->a_mats * tiles_of(s->M, s->K), mm_da_task, &c);
    if (c.dB)
        qk_pool_run(x->pool, s->b_mats * tiles_of(s->K, s->N), mm_db_task, &c);
    return QK_OK;
}

const qk_op qk_op_matmul = {
    .type = "MatMul",
    .init = matmul_init,
    .infer = matmul_infer,
    .forward = matmul_forward,
    .backward = matmul_backward,
    .destroy = state_destroy,
};
