/* Single-thread SGEMM throughput of each qk_sgemm backend on the GEMM shapes
 * the reference CNNs' convolutions and fc layers produce (batch 128,
 * per-sample im2col GEMMs):
 *   fwd : Y[Cout,OHW]  = W[Cout,K] * col[K,OHW]        (N,N)
 *   dW  : dW[Cout,K]  += dY[Cout,OHW] * col[K,OHW]^T   (N,T)
 *   dX  : dcol[K,OHW]  = W[Cout,K]^T * dY[Cout,OHW]    (T,N)
 * Each result is first checked against the reference backend, then timed.
 *
 *   build/bench/bench_sgemm [seconds-per-case]     (default 0.05) */
#include "qkit/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { const char *name; int64_t M, N, K; } shape;

static const shape shapes[] = {
    { "lenet c1 1->32 @28", 32, 784, 9 },
    { "lenet c2 32->64 @14", 64, 196, 288 },
    { "resnet 16 @28", 16, 784, 144 },
    { "resnet 16->32 s2 @14", 32, 196, 144 },
    { "resnet 32 @14", 32, 196, 288 },
    { "resnet 32->64 s2 @7", 64, 49, 288 },
    { "resnet 64 @7", 64, 49, 576 },
    { "mbv2 1x1 16->64 @28", 64, 784, 16 },
    { "mbv2 1x1 64->24 @14", 24, 196, 64 },
    { "mbv2 1x1 24->96 @14", 96, 196, 24 },
    { "mbv2 1x1 96->32 @7", 32, 49, 96 },
    { "mbv2 1x1 32->128 @7", 128, 49, 32 },
    { "mbv2 1x1 64->128 @7", 128, 49, 64 },
    { "conv M128 N784 K576", 128, 784, 576 },
};

static void fill(float *p, int64_t n, unsigned seed)
{
    qk_rng r;
    qk_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++)
        p[i] = qk_rng_uniform(&r) * 2.0f - 1.0f;
}

/* variant 0 fwd, 1 dW, 2 dX: returns GFLOP/s, or -1 if the check failed. */
static double run(const char *bk, int var, const shape *s, double secs, float *A, float *B,
                  float *C, float *Cref)
{
    int64_t M, N, K, lda, ldb;
    int ta = 0, tb = 0;
    if (var == 0) { M = s->M; N = s->N; K = s->K; lda = K; ldb = N; }
    else if (var == 1) { M = s->M; N = s->K; K = s->N; tb = 1; lda = K; ldb = K; }
    else { M = s->K; N = s->N; K = s->M; ta = 1; lda = M; ldb = N; }
    qk_sgemm_kind kind;
    if (qk_sgemm_parse(bk, &kind) != QK_OK)
        return -1;
    memset(Cref, 0, (size_t)(M * N) * sizeof(float));
    qk_sgemm(QK_SGEMM_REFERENCE, ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, Cref, N);
    memset(C, 0, (size_t)(M * N) * sizeof(float));
    qk_sgemm(kind, ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N);
    for (int64_t i = 0; i < M * N; i++)
        if (fabsf(C[i] - Cref[i]) > 1e-4f * (float)K + 1e-4f) {
            fprintf(stderr, "%s %s var %d: mismatch at %lld: %g vs %g\n", bk, s->name, var,
                    (long long)i, C[i], Cref[i]);
            return -1;
        }
    int64_t reps = 1;
    double t;
    for (;;) {
        double t0 = qk_now();
        for (int64_t r = 0; r < reps; r++)
            qk_sgemm(kind, ta, tb, M, N, K, 1.0f, A, lda, B, ldb, r ? 1.0f : 0.0f, C, N);
        t = qk_now() - t0;
        if (t >= secs)
            break;
        reps = t > 1e-4 ? (int64_t)(reps * secs / t * 1.1) + 1 : reps * 10;
    }
    return 2.0 * (double)M * (double)N * (double)K * (double)reps / t * 1e-9;
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 0.05;
    static const char *const bks[] = { "dnnl", "openblas" };
    size_t cap = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        size_t m = (size_t)((shapes[i].M + shapes[i].K) * shapes[i].N + shapes[i].M * shapes[i].K);
        if (m > cap)
            cap = m;
    }
    float *A = qk_aligned_alloc(cap * 4), *B = qk_aligned_alloc(cap * 4);
    float *C = qk_aligned_alloc(cap * 4), *Cr = qk_aligned_alloc(cap * 4);
    if (!A || !B || !C || !Cr) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    fill(A, (int64_t)cap, 1);
    fill(B, (int64_t)cap, 2);
    printf("single-thread GFLOP/s (OPENBLAS_CORETYPE=%s)\n",
           getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "(unset)");
    printf("%-24s %5s %5s %5s | %7s %7s | %7s %7s | %7s %7s\n", "shape", "M", "N", "K",
           "fwd dnl", "fwd obl", "dW dnl", "dW obl", "dX dnl", "dX obl");
    double sum[2] = { 0, 0 };
    int fails = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const shape *s = &shapes[i];
        double g[3][2];
        for (int v = 0; v < 3; v++)
            for (int b = 0; b < 2; b++) {
                g[v][b] = run(bks[b], v, s, secs, A, B, C, Cr);
                if (g[v][b] < 0)
                    fails++;
                else
                    sum[b] += log(g[v][b]);
            }
        printf("%-24s %5lld %5lld %5lld | %7.1f %7.1f | %7.1f %7.1f | %7.1f %7.1f\n", s->name,
               (long long)s->M, (long long)s->N, (long long)s->K, g[0][0], g[0][1], g[1][0],
               g[1][1], g[2][0], g[2][1]);
    }
    int n = (int)(3 * sizeof shapes / sizeof shapes[0]);
    printf("geometric mean: dnnl %.1f, openblas %.1f GFLOP/s\n", exp(sum[0] / n), exp(sum[1] / n));
    qk_aligned_free(A);
    qk_aligned_free(B);
    qk_aligned_free(C);
    qk_aligned_free(Cr);
    return fails ? 1 : 0;
}
