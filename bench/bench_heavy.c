/* Forward and backward time of the heavy operators (Conv, BatchNormalization,
 * MaxPool, GlobalAveragePool, Gemm) on every layer shape of the reference
 * CNNs (lenet, resnet8, mobilenetv2s; docs/ARCHITECTURE.md) at batch 128, run through
 * the graph executor on a pool of T threads. The per-model sums are the
 * heavy-op share of one training step (activations, adds and the loss are
 * not included).
 *
 *   build/bench/bench_heavy [threads=2] [reps=5] [model]
 * With 1 thread the times are process CPU time (steadier on a busy
 * machine); otherwise wall-clock. */
#include "qkit/registry.h"
#include "qkit/ops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int use_cpu_time;

static double now(void)
{
    if (!use_cpu_time)
        return qk_now();
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct layer {
    const char *model, *op;
    int64_t C, H, M, k, s, group; /* conv: C->M kxk stride s; bn/pool: C at H */
} layer;

#define CV(m, c, h, o, k, s, g) { m, "Conv", c, h, o, k, s, g }
#define BN(m, c, h) { m, "BatchNormalization", c, h, 0, 0, 0, 0 }
#define MP(m, c, h) { m, "MaxPool", c, h, 0, 2, 2, 0 }
#define GP(m, c, h) { m, "GlobalAveragePool", c, h, 0, 0, 0, 0 }
#define FC(m, i, o) { m, "Gemm", i, 1, o, 0, 0, 0 }

static const layer layers[] = {
    CV("lenet", 1, 28, 32, 3, 1, 1), BN("lenet", 32, 28), MP("lenet", 32, 28),
    CV("lenet", 32, 14, 64, 3, 1, 1), BN("lenet", 64, 14), MP("lenet", 64, 14),
    FC("lenet", 3136, 128), FC("lenet", 128, 10),

    CV("resnet8", 1, 28, 16, 3, 1, 1), BN("resnet8", 16, 28),
    CV("resnet8", 16, 28, 16, 3, 1, 1), BN("resnet8", 16, 28),
    CV("resnet8", 16, 28, 16, 3, 1, 1), BN("resnet8", 16, 28),
    CV("resnet8", 16, 28, 32, 3, 2, 1), BN("resnet8", 32, 14),
    CV("resnet8", 32, 14, 32, 3, 1, 1), BN("resnet8", 32, 14),
    CV("resnet8", 16, 28, 32, 1, 2, 1), BN("resnet8", 32, 14),
    CV("resnet8", 32, 14, 64, 3, 2, 1), BN("resnet8", 64, 7),
    CV("resnet8", 64, 7, 64, 3, 1, 1), BN("resnet8", 64, 7),
    CV("resnet8", 32, 14, 64, 1, 2, 1), BN("resnet8", 64, 7),
    GP("resnet8", 64, 7), FC("resnet8", 64, 10),

    CV("mobilenetv2s", 1, 28, 16, 3, 1, 1), BN("mobilenetv2s", 16, 28),
    CV("mobilenetv2s", 16, 28, 16, 3, 1, 16), BN("mobilenetv2s", 16, 28),
    CV("mobilenetv2s", 16, 28, 16, 1, 1, 1), BN("mobilenetv2s", 16, 28),
    CV("mobilenetv2s", 16, 28, 64, 1, 1, 1), BN("mobilenetv2s", 64, 28),
    CV("mobilenetv2s", 64, 28, 64, 3, 2, 64), BN("mobilenetv2s", 64, 14),
    CV("mobilenetv2s", 64, 14, 24, 1, 1, 1), BN("mobilenetv2s", 24, 14),
    CV("mobilenetv2s", 24, 14, 96, 1, 1, 1), BN("mobilenetv2s", 96, 14),
    CV("mobilenetv2s", 96, 14, 96, 3, 1, 96), BN("mobilenetv2s", 96, 14),
    CV("mobilenetv2s", 96, 14, 24, 1, 1, 1), BN("mobilenetv2s", 24, 14),
    CV("mobilenetv2s", 24, 14, 96, 1, 1, 1), BN("mobilenetv2s", 96, 14),
    CV("mobilenetv2s", 96, 14, 96, 3, 2, 96), BN("mobilenetv2s", 96, 7),
    CV("mobilenetv2s", 96, 7, 32, 1, 1, 1), BN("mobilenetv2s", 32, 7),
    CV("mobilenetv2s", 32, 7, 128, 1, 1, 1), BN("mobilenetv2s", 128, 7),
    CV("mobilenetv2s", 128, 7, 128, 3, 1, 128), BN("mobilenetv2s", 128, 7),
    CV("mobilenetv2s", 128, 7, 32, 1, 1, 1), BN("mobilenetv2s", 32, 7),
    CV("mobilenetv2s", 32, 7, 128, 1, 1, 1), BN("mobilenetv2s", 128, 7),
    CV("mobilenetv2s", 128, 7, 128, 3, 1, 128), BN("mobilenetv2s", 128, 7),
    CV("mobilenetv2s", 128, 7, 64, 1, 1, 1), BN("mobilenetv2s", 64, 7),
    CV("mobilenetv2s", 64, 7, 128, 1, 1, 1), BN("mobilenetv2s", 128, 7),
    GP("mobilenetv2s", 128, 7), FC("mobilenetv2s", 128, 10),
};

static int add_param(qk_graph *g, const char *name, int nd, const int64_t *d, qk_rng *r, qk_value_kind kind)
{
    qk_tensor t;
    if (qk_tensor_alloc(&t, QK_F32, nd, d) != QK_OK)
        return -1;
    for (int64_t i = 0; i < qk_tensor_numel(&t); i++)
        qk_f32(&t)[i] = qk_rng_normal(r) * 0.5f + (kind == QK_VALUE_CONST ? 1.0f : 0.0f);
    return qk_graph_add_init(g, name, kind, &t);
}

/* Builds the one-node graph; X (and every float input) is a PARAM so that
 * every input gradient is computed, except the first conv's X (the image). */
static qk_graph *build(const layer *L, int first, int *node)
{
    qk_graph *g;
    if (qk_graph_create(&g) != QK_OK)
        return NULL;
    qk_rng r;
    qk_rng_seed(&r, 5);
    const int64_t N = 128;
    int in[5], n_in = 0, y = qk_graph_add_value(g, "y", QK_VALUE_ACT);
    int64_t xd[4] = { N, L->C, L->H, L->H };
    if (strcmp(L->op, "Gemm") == 0) {
        in[n_in++] = add_param(g, "x", 2, (int64_t[]){ N, L->C }, &r, QK_VALUE_PARAM);
        in[n_in++] = add_param(g, "w", 2, (int64_t[]){ L->M, L->C }, &r, QK_VALUE_PARAM);
        in[n_in++] = add_param(g, "b", 1, (int64_t[]){ L->M }, &r, QK_VALUE_PARAM);
    } else {
        in[n_in++] = add_param(g, "x", 4, xd, &r, first ? QK_VALUE_CONST : QK_VALUE_PARAM);
    }
    if (strcmp(L->op, "Conv") == 0)
        in[n_in++] = add_param(g, "w", 4, (int64_t[]){ L->M, L->C / L->group, L->k, L->k }, &r, QK_VALUE_PARAM);
    if (strcmp(L->op, "BatchNormalization") == 0) {
        in[n_in++] = add_param(g, "scale", 1, &L->C, &r, QK_VALUE_PARAM);
        in[n_in++] = add_param(g, "bias", 1, &L->C, &r, QK_VALUE_PARAM);
        in[n_in++] = add_param(g, "mean", 1, &L->C, &r, QK_VALUE_CONST);
        in[n_in++] = add_param(g, "var", 1, &L->C, &r, QK_VALUE_CONST);
    }
    *node = qk_graph_add_node(g, L->op, "n", n_in, in, 1, &y);
    if (strcmp(L->op, "Conv") == 0) {
        int64_t p = L->k / 2;
        qk_node_set_ints(g, *node, "kernel_shape", 2, (int64_t[]){ L->k, L->k });
        qk_node_set_ints(g, *node, "strides", 2, (int64_t[]){ L->s, L->s });
        qk_node_set_ints(g, *node, "pads", 4, (int64_t[]){ p, p, p, p });
        qk_node_set_int(g, *node, "group", L->group);
    } else if (strcmp(L->op, "MaxPool") == 0) {
        qk_node_set_ints(g, *node, "kernel_shape", 2, (int64_t[]){ 2, 2 });
        qk_node_set_ints(g, *node, "strides", 2, (int64_t[]){ 2, 2 });
    } else if (strcmp(L->op, "Gemm") == 0) {
        qk_node_set_int(g, *node, "transB", 1);
    }
    qk_graph_add_output(g, y);
    return g;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 2, reps = argc > 2 ? atoi(argv[2]) : 5;
    const char *only = argc > 3 ? argv[3] : NULL;
    use_cpu_time = threads == 1;
    qk_pool *pool;
    if (qk_pool_create(threads, &pool) != QK_OK)
        return 1;
    printf("heavy ops, batch 128, %d threads, sgemm %s, best of %d (%s time)\n", threads,
           qk_sgemm_name(QK_SGEMM_DEFAULT), reps, use_cpu_time ? "CPU" : "wall");
    printf("%-13s %-20s %-22s %9s %9s\n", "model", "op", "shape", "fwd ms", "bwd ms");
    const char *cur = NULL;
    double sf = 0, sb = 0;
    for (size_t i = 0; i <= sizeof layers / sizeof layers[0]; i++) {
        const layer *L = i < sizeof layers / sizeof layers[0] ? &layers[i] : NULL;
        if (cur && (!L || strcmp(L->model, cur) != 0)) {
            printf("%-13s %-20s %-22s %9.2f %9.2f   total %.1f ms/step\n", cur, "SUM", "", sf, sb, sf + sb);
            sf = sb = 0;
        }
        if (!L)
            break;
        int first = !cur || strcmp(L->model, cur) != 0;
        cur = L->model;
        if (only && strcmp(only, L->model) != 0)
            continue;
        int node = 0;
        qk_graph *g = build(L, first, &node);
        qk_status st = qk_ops_bind(g);
        if (st == QK_OK)
            st = qk_graph_plan(g, 128, 1, pool);
        if (st != QK_OK) {
            fprintf(stderr, "%s: %s\n", L->op, qk_last_error());
            return 1;
        }
        qk_node *n = &g->nodes[node];
        qk_value *yv = qk_out(g, n, 0);
        for (int64_t e = 0; e < qk_tensor_numel(&yv->t); e++)
            qk_f32(&yv->grad)[e] = 0.01f * (float)(e % 7);
        double bf = 1e9, bb = 1e9;
        for (int r = 0; r < reps + 1; r++) {
            double t0 = now();
            qk_graph_forward(g);
            double t1 = now();
            st = n->op->backward(&g->exec, n);
            double t2 = now();
            if (st != QK_OK) {
                fprintf(stderr, "%s backward: %s\n", L->op, qk_last_error());
                return 1;
            }
            if (r) {
                bf = t1 - t0 < bf ? t1 - t0 : bf;
                bb = t2 - t1 < bb ? t2 - t1 : bb;
            }
        }
        char shape[48];
        if (strcmp(L->op, "Conv") == 0)
            snprintf(shape, sizeof shape, "%lld->%lld %lldx%lld s%lld g%lld @%lld", (long long)L->C, (long long)L->M,
                     (long long)L->k, (long long)L->k, (long long)L->s, (long long)L->group, (long long)L->H);
        else if (strcmp(L->op, "Gemm") == 0)
            snprintf(shape, sizeof shape, "%lld->%lld", (long long)L->C, (long long)L->M);
        else
            snprintf(shape, sizeof shape, "%lld @%lld", (long long)L->C, (long long)L->H);
        printf("%-13s %-20s %-22s %9.2f %9.2f\n", L->model, L->op, shape, bf * 1e3, bb * 1e3);
        sf += bf * 1e3;
        sb += bb * 1e3;
        qk_graph_destroy(g);
    }
    qk_pool_destroy(pool);
    return 0;
}
