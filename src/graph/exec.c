/* Planned executor: shapes, buffers and workspace are set up once by
 * qk_graph_plan; qk_graph_forward / qk_graph_backward never allocate. */
#include "qkit/graph.h"

#include <string.h>
#include <unistd.h>

/* profile.c: add dt seconds to node n's row (locks the profiler). */
void qk_profiler_add(qk_profiler *p, const qk_node *n, double dt, int backward);

void qk_graph_set_options(qk_graph *g, const qk_plan_options *o)
{
    qk_graph_unplan(g);
    if (o)
        g->opts = *o;
    else
        memset(&g->opts, 0, sizeof g->opts);
}

void qk_graph_unplan(qk_graph *g)
{
    if (!g->planned)
        return;
    for (int i = 0; i < g->n_values; i++) {
        qk_value *v = &g->values[i];
        if (v->kind == QK_VALUE_ACT || v->kind == QK_VALUE_INPUT)
            v->t.data = NULL;
        if (v->grad.owned)
            qk_tensor_free(&v->grad);
        memset(&v->grad, 0, sizeof v->grad);
        v->requires_grad = 0;
    }
    qk_aligned_free(g->arena);
    g->arena = NULL;
    qk_aligned_free(g->exec.ws);
    qk_free(g->exec.slice_io);
    memset(&g->exec, 0, sizeof g->exec);
    g->planned = 0;
}

static void sync_grad_shapes(qk_graph *g)
{
    for (int i = 0; i < g->n_values; i++) {
        qk_value *v = &g->values[i];
        if (v->grad.data) {
            v->grad.dtype = QK_F32;
            v->grad.ndim = v->t.ndim;
            memcpy(v->grad.dims, v->t.dims, sizeof v->t.dims);
        }
    }
}

static uint64_t plan_limit(const qk_graph *g);
static qk_status plan_slices(qk_graph *g);

/* Value v's shape, empty dims counted as 1, within the plan limit: what
 * operators derive from a shape (window geometry, workspace) then fits in
 * int64. */
static qk_status check_value(const qk_graph *g, int v)
{
    const qk_value *x = &g->values[v];
    int64_t nz[QK_MAX_DIMS];
    size_t b;
    if (x->t.ndim < 0 || x->t.ndim > QK_MAX_DIMS)
        return qk_error(QK_ERR_SHAPE, "value '%s' has rank %d", x->name, x->t.ndim);
    for (int d = 0; d < x->t.ndim; d++)
        nz[d] = x->t.dims[d] > 0 ? x->t.dims[d] : 1;
    char sb[128];
    if (!qk_shape_bytes(x->t.dtype ? x->t.dtype : QK_F32, x->t.ndim, nz, &b))
        return qk_error(QK_ERR_SHAPE, "value '%s' has shape %s, whose size overflows", x->name,
                        qk_shape_str(&x->t, sb, sizeof sb));
    if (b > plan_limit(g)) {
        return qk_error(QK_ERR_NOMEM, "value '%s' has shape %s, too large for the plan's memory limit of %llu MiB",
                        x->name, qk_shape_str(&x->t, sb, sizeof sb), (unsigned long long)(plan_limit(g) >> 20));
    }
    return QK_OK;
}

qk_status qk_graph_infer(qk_graph *g)
{
    if (!g->order) {
        qk_status st = qk_graph_sort(g);
        if (st != QK_OK)
            return st;
    }
    for (int i = 0; i < g->n_inputs; i++) {
        qk_status st = check_value(g, g->inputs[i]);
        if (st != QK_OK)
            return st;
    }
    for (int k = 0; k < g->n_nodes; k++) {
        qk_node *n = &g->nodes[g->order[k]];
        if (!n->op)
            return qk_error(QK_ERR_STATE, "node '%s': operator '%s' is not bound", n->name, n->op_type);
        if (!n->op->infer)
            continue;
        qk_status st = n->op->infer(g, n);
        for (int j = 0; j < n->n_out && st == QK_OK; j++)
            if (n->out[j] >= 0)
                st = check_value(g, n->out[j]);
        if (st != QK_OK)
            return qk_error_context(st, "node '%s' (%s)", n->name, n->op_type);
    }
    return QK_OK;
}

static void set_input_batch(qk_graph *g, int64_t batch)
{
    for (int i = 0; i < g->n_inputs; i++) {
        qk_value *v = &g->values[g->inputs[i]];
        if (v->dyn_batch)
            v->t.dims[0] = batch;
    }
}

/* The plan's memory limit: opts.max_bytes, else physical memory. */
static uint64_t plan_limit(const qk_graph *g)
{
    if (g->opts.max_bytes)
        return g->opts.max_bytes;
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    return pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz : (uint64_t)1 << 62;
}

qk_status qk_graph_check_bytes(const qk_graph *g, const char *what, qk_dtype dt, int ndim, const int64_t *dims)
{
    size_t b;
    qk_tensor sh = { 0 };
    char sb[128];
    if (ndim < 0 || ndim > QK_MAX_DIMS)
        return qk_error(QK_ERR_SHAPE, "%s: rank %d out of range", what, ndim);
    qk_tensor_set_shape(&sh, dt, ndim, dims);
    if (!qk_shape_bytes(dt, ndim, dims, &b))
        return qk_error(QK_ERR_SHAPE, "%s: shape %s is too large (its size overflows)", what,
                        qk_shape_str(&sh, sb, sizeof sb));
    uint64_t limit = plan_limit(g);
    if (b > limit)
        return qk_error(QK_ERR_NOMEM, "%s: shape %s needs %llu MiB, over the limit of %llu MiB%s", what,
                        qk_shape_str(&sh, sb, sizeof sb), (unsigned long long)(b >> 20),
                        (unsigned long long)(limit >> 20),
                        g->opts.max_bytes ? " (plan option max_bytes)" : " (physical memory)");
    return QK_OK;
}

/* Bytes of the plan's arena into *arena, after checking (without overflow)
 * that every value's size is representable and that arena + gradients of
 * parameters + per-worker workspace stay within g->opts.max_bytes (default:
 * physical memory). Errors name the value / the amounts. */
static qk_status plan_bytes(const qk_graph *g, int64_t max_batch, size_t ws, const qk_pool *pool, size_t *arena)
{
    const uint64_t big = (uint64_t)1 << 62;
    uint64_t total = 0, extra = 0;
    int largest = -1;
    uint64_t largest_b = 0;
    for (int i = 0; i < g->n_values; i++) {
        const qk_value *v = &g->values[i];
        int act = v->kind == QK_VALUE_ACT || v->kind == QK_VALUE_INPUT;
        if (!act && !v->requires_grad)
            continue;
        size_t b, gb = 0, nb;
        int64_t nz[QK_MAX_DIMS]; /* the shape with empty dims as 1: bounds what operators derive from it */
        for (int d = 0; d < v->t.ndim && d < QK_MAX_DIMS; d++)
            nz[d] = v->t.dims[d] > 0 ? v->t.dims[d] : 1;
        if (!qk_shape_bytes(v->t.dtype, v->t.ndim, v->t.dims, &b) ||
            !qk_shape_bytes(v->t.dtype ? v->t.dtype : QK_F32, v->t.ndim, nz, &nb) || nb > plan_limit(g) ||
            (v->requires_grad && !qk_shape_bytes(QK_F32, v->t.ndim, v->t.dims, &gb)) || b > big || gb > big) {
            char sb[128];
            return qk_error(QK_ERR_SHAPE, "plan: value '%s' has shape %s, whose size overflows (batch %lld)",
                            v->name, qk_shape_str(&v->t, sb, sizeof sb), (long long)max_batch);
        }
        uint64_t add = act ? ((uint64_t)b + 63) / 64 * 64 + ((uint64_t)gb + 63) / 64 * 64 : gb;
        if (act)
            total += add;
        else
            extra += add;
        if (add > largest_b)
            largest_b = add, largest = i;
        if (total > big || extra > big)
            break;
    }
    int nw = qk_pool_threads(pool);
    uint64_t need = total + extra + ((uint64_t)ws + 63) / 64 * 64 * (uint64_t)(nw > 0 ? nw : 1);
    uint64_t limit = plan_limit(g);
    if (total > big || extra > big || need > limit) {
        char sb[128];
        const qk_value *lv = largest >= 0 ? &g->values[largest] : NULL;
        return qk_error(QK_ERR_NOMEM, "plan: needs %llu MiB or more at batch %lld (largest value '%s' %s), over the "
                        "limit of %llu MiB%s", (unsigned long long)(need >> 20), (long long)max_batch,
                        lv ? lv->name : "?", lv ? qk_shape_str(&lv->t, sb, sizeof sb) : "",
                        (unsigned long long)(limit >> 20),
                        g->opts.max_bytes ? " (plan option max_bytes)" : " (physical memory)");
    }
    *arena = (size_t)total;
    return QK_OK;
}

qk_status qk_graph_plan(qk_graph *g, int64_t max_batch, int training, qk_pool *pool)
{
    qk_graph_unplan(g);
    if (max_batch < 1)
        return qk_error(QK_ERR_ARG, "plan: batch must be at least 1 (got %lld)", (long long)max_batch);
    qk_status st = qk_graph_sort(g);
    if (st != QK_OK)
        return st;
    for (int i = 0; i < g->n_inputs; i++) {
        qk_value *v = &g->values[g->inputs[i]];
        if (v->t.dtype == 0 || qk_dtype_size(v->t.dtype) == 0)
            return qk_error(QK_ERR_UNSUPPORTED, "graph input '%s' has an unsupported data type", v->name);
    }
    /* A graph with no dynamic input runs at its fixed batch: the first float
     * input of rank >= 2 caps max_batch (callers that feed batches read
     * g->max_batch; qk_onnx_dynamic_batch lifts a fixed batch of 1). */
    int any_dyn = 0;
    for (int i = 0; i < g->n_inputs; i++)
        any_dyn |= g->values[g->inputs[i]].dyn_batch;
    for (int i = 0; !any_dyn && i < g->n_inputs; i++) {
        const qk_value *v = &g->values[g->inputs[i]];
        if (v->t.dtype == QK_F32 && v->t.ndim >= 2 && v->t.dims[0] >= 1) {
            if (max_batch > v->t.dims[0])
                max_batch = v->t.dims[0];
            break;
        }
    }
    set_input_batch(g, max_batch);
    st = qk_graph_infer(g);
    if (st != QK_OK)
        return st;

    /* Which values need gradients. */
    if (training) {
        for (int i = 0; i < g->n_values; i++)
            g->values[i].requires_grad = g->values[i].kind == QK_VALUE_PARAM;
        for (int k = 0; k < g->n_nodes; k++) {
            qk_node *n = &g->nodes[g->order[k]];
            int any = 0;
            for (int j = 0; j < n->n_in; j++)
                any |= n->in[j] >= 0 && g->values[n->in[j]].requires_grad;
            if (any && n->op->backward)
                for (int j = 0; j < n->n_out; j++)
                    g->values[n->out[j]].requires_grad = 1;
        }
    }

    /* Every value's size against the limit before operators size their
     * workspace from the shapes (again below with the workspace). */
    size_t total = 0;
    st = plan_bytes(g, max_batch, 0, pool, &total);
    if (st != QK_OK)
        return st;

    /* Node buffers and workspace. */
    size_t ws = 0;
    for (int k = 0; k < g->n_nodes; k++) {
        qk_node *n = &g->nodes[g->order[k]];
        if (!n->op->reshape)
            continue;
        size_t b = 0;
        st = n->op->reshape(g, n, training, &b);
        if (st != QK_OK)
            return qk_error_context(st, "node '%s' (%s)", n->name, n->op_type);
        if (b > ws)
            ws = b;
    }

    /* One arena for activations, inputs and activation gradients. */
    st = plan_bytes(g, max_batch, ws, pool, &total);
    if (st != QK_OK)
        return st;
    g->arena = qk_aligned_alloc_pool(total ? total : 64, pool);
    if (!g->arena)
        return qk_error(QK_ERR_NOMEM, "plan: cannot allocate %zu bytes of activations (batch %lld)",
                        total, (long long)max_batch);
    uint8_t *p = g->arena;
    for (int i = 0; i < g->n_values; i++) {
        qk_value *v = &g->values[i];
        if (v->kind == QK_VALUE_ACT || v->kind == QK_VALUE_INPUT) {
            v->t.data = p;
            v->t.owned = 0;
            p += (qk_tensor_bytes(&v->t) + 63) & ~(size_t)63;
            if (v->requires_grad) {
                v->grad.data = p;
                v->grad.owned = 0;
                p += (qk_tensor_numel(&v->t) * sizeof(float) + 63) & ~(size_t)63;
            }
        } else if (v->requires_grad) {
            st = qk_tensor_alloc(&v->grad, QK_F32, v->t.ndim, v->t.dims);
            if (st != QK_OK) {
                g->planned = 1; /* so that unplan frees the arena and the grads made so far */
                qk_graph_unplan(g);
                return st;
            }
        }
    }
    sync_grad_shapes(g);

    g->exec.g = g;
    g->exec.pool = pool;
    g->exec.training = training;
    g->exec.nworkers = qk_pool_threads(pool);
    g->exec.ws_stride = (ws + 63) & ~(size_t)63;
    g->exec.ws = qk_aligned_alloc(g->exec.ws_stride * (size_t)g->exec.nworkers + 64);
    if (!g->exec.ws) {
        g->planned = 1;
        qk_graph_unplan(g);
        return qk_error(QK_ERR_NOMEM, "plan: cannot allocate %zu bytes of workspace", ws);
    }
    g->training = training;
    g->max_batch = max_batch;
    g->batch = max_batch;
    g->planned = 1;
    if (!training && g->opts.slice > 0 && (st = plan_slices(g)) != QK_OK) {
        qk_graph_unplan(g);
        return st;
    }
    return QK_OK;
}

qk_status qk_graph_set_batch(qk_graph *g, int64_t batch)
{
    if (!g->planned)
        return qk_error(QK_ERR_STATE, "set_batch: graph is not planned");
    if (batch < 1 || batch > g->max_batch)
        return qk_error(QK_ERR_ARG, "set_batch: batch %lld outside 1..%lld (the planned maximum)",
                        (long long)batch, (long long)g->max_batch);
    if (batch == g->batch)
        return QK_OK;
    set_input_batch(g, batch);
    qk_status st = qk_graph_infer(g);
    if (st != QK_OK)
        return st;
    sync_grad_shapes(g);
    g->batch = batch;
    return QK_OK;
}

static qk_status forward_nodes(qk_graph *g)
{
    qk_profiler *prof = g->opts.profiler;
    for (int k = 0; k < g->n_nodes; k++) {
        qk_node *n = &g->nodes[g->order[k]];
        double t0 = prof ? qk_now() : 0;
        qk_status st = n->op->forward(&g->exec, n);
        if (prof)
            qk_profiler_add(prof, n, qk_now() - t0, 0);
        if (st != QK_OK)
            return qk_error_context(st, "node '%s' (%s)", n->name, n->op_type);
    }
    return QK_OK;
}

/* Every activation's first dimension is the batch (the graph can run a
 * slice of it as a batch of its own). */
static int batch_major(const qk_graph *g, int64_t batch)
{
    for (int i = 0; i < g->n_values; i++) {
        const qk_value *v = &g->values[i];
        if ((v->kind == QK_VALUE_ACT || v->kind == QK_VALUE_INPUT) && (v->t.ndim < 1 || v->t.dims[0] != batch))
            return 0;
    }
    return 1;
}

/* The graph's inputs and outputs point at samples [s0, ...) of their buffers. */
static void slice_io(qk_graph *g, int64_t s0)
{
    for (int i = 0; i < g->exec.slice_nio; i++) {
        const qk_slice_io *o = &g->exec.slice_io[i];
        g->values[o->v].t.data = o->base + (size_t)s0 * o->per;
    }
}

/* The batch in slices of opts.slice samples (qk_plan_options): the
 * inputs' and outputs' buffers are walked slice by slice, every other
 * value reuses the start of its own. Returns QK_ERR_UNSUPPORTED, having
 * changed nothing, when the graph is not batch-major at the slice size. */
static qk_status forward_sliced(qk_graph *g)
{
    const int64_t B = g->batch, S = g->opts.slice;
    qk_status st = qk_graph_set_batch(g, S);
    if (st != QK_OK)
        return st;
    if (!batch_major(g, S)) {
        st = qk_graph_set_batch(g, B);
        return st == QK_OK ? QK_ERR_UNSUPPORTED : st;
    }
    for (int64_t s0 = 0; s0 < B && st == QK_OK; s0 += S) {
        const int64_t n = B - s0 < S ? B - s0 : S;
        if ((st = qk_graph_set_batch(g, n)) != QK_OK)
            break;
        slice_io(g, s0);
        st = forward_nodes(g);
    }
    slice_io(g, 0);
    qk_status st2 = qk_graph_set_batch(g, B);
    return st != QK_OK ? st : st2;
}

/* Nodes that mix the samples of a batch without changing its shape:
 * a normalization over axis 0 (softmax family, Lp), a cumulative sum (its
 * axis is an input), a BatchNormalization on batch statistics. Shape
 * changes along axis 0 show in batch_major. */
static int mixes_samples(const qk_graph *g, const qk_node *n)
{
    static const char *axis_ops[] = { "Softmax", "LogSoftmax", "Hardmax", "LpNormalization" };
    if (!strcmp(n->op_type, "CumSum"))
        return 1;
    if (!strcmp(n->op_type, "BatchNormalization"))
        return qk_node_int(n, "training_mode", 0) != 0;
    for (size_t i = 0; i < sizeof axis_ops / sizeof axis_ops[0]; i++)
        if (!strcmp(n->op_type, axis_ops[i]) && n->n_in > 0 && n->in[0] >= 0) {
            int64_t nd = g->values[n->in[0]].t.ndim, ax = qk_node_int(n, "axis", 1);
            return ax == 0 || ax == -nd;
        }
    return 0;
}

/* At plan (inference, opts.slice set): the inputs and outputs to walk, or
 * none when a node mixes samples. */
static qk_status plan_slices(qk_graph *g)
{
    for (int k = 0; k < g->n_nodes; k++)
        if (mixes_samples(g, &g->nodes[k]))
            return QK_OK;
    qk_slice_io *io = qk_calloc((size_t)(g->n_inputs + g->n_outputs) + 1, sizeof *io);
    if (!io)
        return qk_error(QK_ERR_NOMEM, "plan: out of memory");
    int nio = 0;
    for (int i = 0; i < g->n_inputs + g->n_outputs; i++) {
        int v = i < g->n_inputs ? g->inputs[i] : g->outputs[i - g->n_inputs], seen = 0;
        for (int j = 0; j < nio; j++)
            seen |= io[j].v == v;
        const qk_tensor *t = &g->values[v].t;
        if (seen || t->ndim < 1 || t->dims[0] < 1)
            continue;
        io[nio].v = v;
        io[nio].base = t->data;
        io[nio].per = qk_tensor_bytes(t) / (size_t)t->dims[0];
        nio++;
    }
    g->exec.slice_io = io;
    g->exec.slice_nio = nio;
    return QK_OK;
}

int64_t qk_slice_for_threads(int threads)
{
    int64_t s = 16 * (int64_t)(threads > 0 ? threads : 1);
    return s > 32 ? s : 32;
}

qk_status qk_graph_forward(qk_graph *g)
{
    if (!g->planned)
        return qk_error(QK_ERR_STATE, "forward: graph is not planned");
    const int64_t S = g->opts.slice;
    if (g->exec.slice_io && S > 0 && g->batch > S && batch_major(g, g->batch)) {
        qk_status st = forward_sliced(g);
        if (st != QK_ERR_UNSUPPORTED)
            return st;
    }
    return forward_nodes(g);
}

/* grad_zeroed: 0 = not yet touched this backward, 1 = zeroed (or holds
 * sums), 2 = logically zero but not cleared ("fresh"). */
static void zero_grad(qk_value *v)
{
    if (v->grad.data && v->grad_zeroed != 1) {
        memset(v->grad.data, 0, qk_tensor_numel(&v->grad) * sizeof(float));
        v->grad_zeroed = 1;
    }
}

/* Ops whose backward, given an input whose grad_zeroed is 2, WRITES that
 * input's whole gradient instead of adding to it and sets grad_zeroed to 1:
 * the executor then skips clearing it (a full-tensor pass per activation).
 * The bit mask of the inputs that holds for: Conv and BatchNormalization
 * write only dX fresh (they add dW, dScale, ...: an activation weight, as
 * QAT's quantized weights are, must be cleared first). */
static unsigned writes_fresh_grads(const qk_node *n)
{
    if (!strcmp(n->op_type, "Relu") || !strcmp(n->op_type, "Clip") || !strcmp(n->op_type, "BatchNormalization") ||
        !strcmp(n->op_type, "Conv"))
        return 1u;
    return !strcmp(n->op_type, "Add") ? 3u : 0u;
}

qk_status qk_graph_backward(qk_graph *g, int loss)
{
    if (!g->planned || !g->training)
        return qk_error(QK_ERR_STATE, "backward: graph is not planned for training");
    if (loss < 0 || loss >= g->n_values || !g->values[loss].grad.data)
        return qk_error(QK_ERR_ARG, "backward: loss value has no gradient (does it depend on a parameter?)");
    if (qk_tensor_numel(&g->values[loss].t) != 1)
        return qk_error(QK_ERR_SHAPE, "backward: loss '%s' is not a scalar", g->values[loss].name);
    for (int i = 0; i < g->n_values; i++)
        g->values[i].grad_zeroed = 0;
    for (int i = 0; i < g->n_values; i++)
        if (g->values[i].kind == QK_VALUE_PARAM)
            zero_grad(&g->values[i]);
    qk_profiler *prof = g->opts.profiler;
    qk_value *lv = &g->values[loss];
    zero_grad(lv);
    qk_f32(&lv->grad)[0] = 1.0f;
    for (int k = g->n_nodes - 1; k >= 0; k--) {
        qk_node *n = &g->nodes[g->order[k]];
        if (!n->op->backward)
            continue;
        int reached = 0;
        for (int j = 0; j < n->n_out; j++)
            reached |= g->values[n->out[j]].grad_zeroed;
        if (!reached)
            continue; /* no gradient flows through this node */
        int needs = 0;
        for (int j = 0; j < n->n_in; j++)
            needs |= n->in[j] >= 0 && g->values[n->in[j]].grad.data != NULL;
        if (!needs)
            continue;
        for (int j = 0; j < n->n_out; j++)
            zero_grad(&g->values[n->out[j]]);
        unsigned fresh = writes_fresh_grads(n);
        for (int j = 0; j < n->n_in; j++) {
            if (n->in[j] < 0)
                continue;
            qk_value *v = &g->values[n->in[j]];
            int dup = 0;
            for (int k2 = 0; k2 < n->n_in; k2++)
                dup |= k2 != j && n->in[k2] == n->in[j];
            if (j < 8 && (fresh >> j & 1u) && !dup && v->grad.data && v->grad_zeroed == 0 && v->kind != QK_VALUE_PARAM)
                v->grad_zeroed = 2;
            else
                zero_grad(v);
        }
        double t0 = prof ? qk_now() : 0;
        qk_status st = n->op->backward(&g->exec, n);
        if (prof)
            qk_profiler_add(prof, n, qk_now() - t0, 1);
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j] >= 0 && g->values[n->in[j]].grad_zeroed == 2)
                zero_grad(&g->values[n->in[j]]); /* the op did not write it */
        if (st != QK_OK)
            return qk_error_context(st, "backward of node '%s' (%s)", n->name, n->op_type);
    }
    return QK_OK;
}
