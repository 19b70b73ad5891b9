/* QkDistillLoss (domain ai.qkit): the knowledge-distillation term of
 * Hinton et al. 2015, as PyTorch's usual
 *   w * T^2 * F.kl_div(F.log_softmax(s / T), F.softmax(t / T), reduction="batchmean").
 *
 *   inputs  student [N, K] float32 (logits), teacher [N, K] float32 (logits;
 *           no gradient)
 *   attrs   T (float, temperature > 0, default 4), w (float, weight, default 1)
 *   output  loss, scalar: w T^2 / N * sum_n sum_k p_t (log p_t - log p_s),
 *           p = softmax(logits / T) per row (0 when N = 0)
 *   backward  d student = d loss * w T / N * (p_s - p_t)
 * Rows in order, softmax sums in double: identical for any thread count. */
#include "qkit/ops.h"

#include <math.h>
#include <string.h>

typedef struct kd_state {
    float T, w;
} kd_state;

static qk_status kd_init(qk_graph *g, qk_node *n)
{
    (void)g;
    if (n->n_in != 2 || n->n_out != 1 || n->in[0] < 0 || n->in[1] < 0)
        return qk_error(QK_ERR_FORMAT, "QkDistillLoss '%s' takes student and teacher logits and one output", n->name);
    kd_state *s = qk_calloc(1, sizeof *s);
    if (!s)
        return qk_error(QK_ERR_NOMEM, "QkDistillLoss '%s': out of memory", n->name);
    n->state = s;
    s->T = qk_node_float(n, "T", 4.0f);
    s->w = qk_node_float(n, "w", 1.0f);
    if (!(s->T > 0.0f) || !isfinite(s->T) || !(s->w >= 0.0f) || !isfinite(s->w))
        return qk_error(QK_ERR_ARG, "QkDistillLoss '%s': temperature %g must be > 0 and weight %g >= 0", n->name,
                        (double)s->T, (double)s->w);
    return QK_OK;
}

static void kd_destroy(qk_node *n)
{
    qk_free(n->state);
    n->state = NULL;
}

static qk_status kd_infer(qk_graph *g, qk_node *n)
{
    const qk_value *sv = qk_in(g, n, 0), *tv = qk_in(g, n, 1);
    char a[96], b[96];
    if (sv->t.dtype != QK_F32 || tv->t.dtype != QK_F32 || sv->t.ndim != 2 || !qk_shape_equal(&sv->t, &tv->t))
        return qk_error(QK_ERR_SHAPE, "distillation: the teacher's output '%s' %s does not match the student's '%s' "
                        "%s (float32 [N, classes] both)", tv->name, qk_shape_str(&tv->t, a, sizeof a), sv->name,
                        qk_shape_str(&sv->t, b, sizeof b));
    qk_tensor_set_shape(&qk_out(g, n, 0)->t, QK_F32, 0, NULL);
    return QK_OK;
}

/* p = softmax(z / T) of one row of K, in double. */
static void soft_row(const float *z, int64_t K, double T, double *p)
{
    double mx = -INFINITY, sum = 0;
    for (int64_t k = 0; k < K; k++)
        mx = (double)z[k] / T > mx ? (double)z[k] / T : mx;
    for (int64_t k = 0; k < K; k++)
        sum += p[k] = exp((double)z[k] / T - mx);
    for (int64_t k = 0; k < K; k++)
        p[k] /= sum;
}

enum { KD_MAX_K = 4096 };

static qk_status kd_forward(qk_exec *x, qk_node *n)
{
    const kd_state *s = n->state;
    qk_graph *g = x->g;
    const qk_tensor *st = &qk_in(g, n, 0)->t, *tt = &qk_in(g, n, 1)->t;
    const int64_t N = st->dims[0], K = st->dims[1];
    if (K > KD_MAX_K)
        return qk_error(QK_ERR_UNSUPPORTED, "QkDistillLoss '%s': %lld classes (at most %d)", n->name, (long long)K,
                        KD_MAX_K);
    double ps[KD_MAX_K], pt[KD_MAX_K], L = 0, T = s->T;
    for (int64_t r = 0; r < N; r++) {
        soft_row(qk_f32(st) + r * K, K, T, ps);
        soft_row(qk_f32(tt) + r * K, K, T, pt);
        for (int64_t k = 0; k < K; k++)
            if (pt[k] > 0)
                L += pt[k] * (log(pt[k]) - log(ps[k] > 0 ? ps[k] : 1e-300));
    }
    qk_f32(&qk_out(g, n, 0)->t)[0] = N > 0 ? (float)((double)s->w * T * T * L / (double)N) : 0.0f;
    return QK_OK;
}

static qk_status kd_backward(qk_exec *x, qk_node *n)
{
    const kd_state *s = n->state;
    qk_graph *g = x->g;
    qk_value *sv = qk_in(g, n, 0);
    const qk_tensor *tt = &qk_in(g, n, 1)->t;
    if (!sv->grad.data)
        return QK_OK;
    const int64_t N = sv->t.dims[0], K = sv->t.dims[1];
    if (N == 0 || K > KD_MAX_K)
        return QK_OK;
    double ps[KD_MAX_K], pt[KD_MAX_K], T = s->T;
    double c = (double)qk_f32(&qk_out(g, n, 0)->grad)[0] * (double)s->w * T / (double)N;
    float *ds = qk_f32(&sv->grad);
    for (int64_t r = 0; r < N; r++) {
        soft_row(qk_f32(&sv->t) + r * K, K, T, ps);
        soft_row(qk_f32(tt) + r * K, K, T, pt);
        for (int64_t k = 0; k < K; k++)
            ds[r * K + k] += (float)(c * (ps[k] - pt[k]));
    }
    return QK_OK;
}

static qk_status kd_reshape(qk_graph *g, qk_node *n, int training, size_t *ws)
{
    (void)g;
    (void)n;
    (void)training;
    *ws = 0;
    return QK_OK;
}

const qk_op qk_op_distill_loss = { "QkDistillLoss", kd_init, kd_infer, kd_reshape, kd_forward, kd_backward,
                                   kd_destroy, "ai.qkit" };
