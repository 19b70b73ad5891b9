/* int8 GEMM throughput of every kernel qkit has on this CPU, at 1 and 2
 * threads, beside the machine's measured peak and oneDNN's
 * dnnl_gemm_u8s8s32 (row-major, same offsets):
 *   - C[M,N] int32 = (A u8 - 128)(B s8) on 1024x1024x1024 and on the
 *     reference models' convolution GEMMs at batch 32 (M = batch*OH*OW
 *     output pixels, N = output channels, K = Cin*kh*kw: what an NHWC
 *     int8 convolution multiplies);
 *   - the same 1024^3 with the fused u8 output stage (fp32 and gemmlowp);
 *   - int8 convolutions end to end (NCHW, im2col + GEMM or depthwise; and
 *     NHWC as the integer runner lays them out), each kernel's output
 *     compared with the reference kernel's.
 * Every kernel's result is first checked bit-exactly against the plain
 * reference (and oneDNN's against qkit's) before anything is timed.
 * Times are the best of repeated runs (the machine may be shared).
 *
 *   build/bench/bench_gemm_i8 [seconds-per-case]   (default 0.25)
 *   QKIT_ISA caps the level dispatch uses (kernels are forced by index here). */
#include "qkit/int.h"

#include "bench_machine.h"

#include <dlfcn.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { const char *name; int64_t M, N, K; } shape;

static const shape shapes[] = {
    {"square 1024^3", 1024, 1024, 1024},
    {"lenet c1 1->32 @28", 32 * 784, 32, 9},
    {"lenet c2 32->64 @14", 32 * 196, 64, 288},
    {"lenet fc1 3136->128", 32, 128, 3136},
    {"resnet 16 @28", 32 * 784, 16, 144},
    {"resnet 16->32 s2 @14", 32 * 196, 32, 144},
    {"resnet 32 @14", 32 * 196, 32, 288},
    {"resnet 32->64 s2 @7", 32 * 49, 64, 288},
    {"resnet 64 @7", 32 * 49, 64, 576},
    {"mbv2 1x1 16->64 @28", 32 * 784, 64, 16},
    {"mbv2 1x1 64->24 @14", 32 * 196, 24, 64},
    {"mbv2 1x1 24->96 @14", 32 * 196, 96, 24},
    {"mbv2 1x1 96->32 @7", 32 * 49, 32, 96},
    {"mbv2 1x1 64->128 @7", 32 * 49, 128, 64},
};
#define NSHAPES ((int)(sizeof shapes / sizeof shapes[0]))

static double secs_per_case = 0.25;

/* ---- peak: 24 independent vpdpbusd chains, best of many short runs ---- */
#define VN(r) "vpdpbusd %%zmm30, %%zmm31, %%zmm" #r "\n\t"
__attribute__((target("avx512f,avx512vnni"))) static double vnni_loop(long iters)
{
    double t0 = qk_now();
    __asm__ volatile("vpxord %%zmm30, %%zmm30, %%zmm30\n\tvpxord %%zmm31, %%zmm31, %%zmm31\n\t"
                     "1:\n\t" VN(0) VN(1) VN(2) VN(3) VN(4) VN(5) VN(6) VN(7) VN(8) VN(9) VN(10) VN(11) VN(12)
                         VN(13) VN(14) VN(15) VN(16) VN(17) VN(18) VN(19) VN(20) VN(21) VN(22) VN(23)
                     "dec %0\n\tjnz 1b\n\t"
                     : "+r"(iters)::"cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
                       "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18",
                       "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm30", "xmm31");
    return qk_now() - t0;
}

static double vnni_peak(void)
{
    long it = 200000;
    double best = 1e9;
    for (int r = 0; r < 300; r++) {
        double t = vnni_loop(it);
        best = t < best ? t : best;
    }
    return it * 24.0 * 64 * 2 / best; /* 64 u8*s8 products per vpdpbusd, 2 ops each */
}

/* ---- oneDNN (OpenMP build: thread count through omp_set_num_threads) ---- */
static void dnnl_threads(int n)
{
    void (*set)(int) = (void (*)(int))dlsym(RTLD_DEFAULT, "omp_set_num_threads");
    if (set)
        set(n);
}

static int dnnl_run(const shape *s, const uint8_t *A, const int8_t *B, int32_t *C)
{
    int32_t co = 0;
    return dnnl_gemm_u8s8s32('N', 'N', 'F', s->M, s->N, s->K, 1.0f, A, s->K, 128, B, s->N, 0, 0.0f, C, s->N, &co) ==
           dnnl_success;
}

/* ---- timing ---- */
typedef struct {
    qk_i8gemm *g;
    const shape *s;
    const uint8_t *A;
    void *C;
    qk_pool *pool;
    uint8_t *ws;
    size_t wss;
} job;

static double time_qk(const job *j, int max_reps)
{
    double best = 1e30, spent = 0;
    for (int r = 0; r < max_reps && (r < 2 || spent < secs_per_case); r++) {
        double t0 = qk_now();
        qk_i8gemm_run(j->g, j->s->M, j->A, j->s->K, j->C, j->s->N, 1, j->pool, j->ws, j->wss);
        double t = qk_now() - t0;
        spent += t;
        best = t < best ? t : best;
    }
    return best;
}

static double time_dnnl(const shape *s, const uint8_t *A, const int8_t *B, int32_t *C)
{
    double best = 1e30, spent = 0;
    for (int r = 0; r < 1000 && (r < 2 || spent < secs_per_case); r++) {
        double t0 = qk_now();
        dnnl_run(s, A, B, C);
        double t = qk_now() - t0;
        spent += t;
        best = t < best ? t : best;
    }
    return best;
}

static qk_status make_gemm(const shape *s, const int8_t *B, int kernel, qk_dtype out, qk_rq_mode mode,
                           qk_i8gemm **g)
{
    static int32_t zb = 0, mult, shift;
    static float scale;
    qk_i8gemm_desc d = {.a_type = QK_U8, .b_type = QK_I8, .K = s->K, .N = s->N, .B = B, .ldb = s->N, .a_zero = 128,
                        .nb_zero = 1, .b_zero = &zb, .out_type = out, .kernel = kernel};
    if (out != QK_I32) {
        double M = 1.0 / (40.0 * 74.0 * 74.0 * 0.5);
        scale = (float)M;
        qk_quantize_multiplier(M, &mult, (int *)&shift);
        d.rq = (qk_requant){mode, 1, &mult, &shift, &scale, 128, 0, 255};
    }
    return qk_i8gemm_create(&d, g);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        secs_per_case = atof(argv[1]);
    char cpu[256];
    printf("# int8 GEMM benchmark\n%s\n", qk_cpu_describe(cpu, sizeof cpu));
    bm_machine_print(stdout);
    double peak = 0;
    if (qk_cpu_isa_usable(QK_ISA_VNNI)) {
        peak = vnni_peak();
        printf("peak AVX-512 VNNI, 1 core (24 independent vpdpbusd chains, best of 300 runs): %.0f GOP/s"
               "  [issue's figure for its machine: ~590 GOP/s/core]\n", peak / 1e9);
    } else {
        printf("peak AVX-512 VNNI: not available on this CPU\n");
    }
    printf("AMX int8 tiles: %s  [issue's figure: ~3.7 TOP/s/core]\n",
           qk_cpu_isa_usable(QK_ISA_AMX) ? "available" : "not available on this CPU/OS (amx kernel not timed)");
    printf("oneDNN %d.%d.%d dnnl_gemm_u8s8s32 (row-major, ao=128, bo=0)\n\n", DNNL_VERSION_MAJOR,
           DNNL_VERSION_MINOR, DNNL_VERSION_PATCH);

    qk_pool *pools[2];
    qk_pool_create(1, &pools[0]);
    qk_pool_create(2, &pools[1]);
    int nk = qk_i8_kernel_count(), kern[8], nkern = 0;
    for (int k = 0; k < nk; k++) {
        const qk_i8_kernel_info *ki = qk_i8_kernel_get(k);
        if (!ki->test_only && qk_i8_kernel_usable(k))
            kern[nkern++] = k;
    }
    int64_t maxa = 0, maxb = 0, maxc = 0;
    for (int i = 0; i < NSHAPES; i++) {
        maxa = shapes[i].M * shapes[i].K > maxa ? shapes[i].M * shapes[i].K : maxa;
        maxb = shapes[i].K * shapes[i].N > maxb ? shapes[i].K * shapes[i].N : maxb;
        maxc = shapes[i].M * shapes[i].N > maxc ? shapes[i].M * shapes[i].N : maxc;
    }
    uint8_t *A = qk_aligned_alloc((size_t)maxa);
    int8_t *B = qk_aligned_alloc((size_t)maxb);
    int32_t *C = qk_aligned_alloc((size_t)maxc * 4), *R = qk_aligned_alloc((size_t)maxc * 4);
    uint8_t *ws = NULL;
    if (!A || !B || !C || !R) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    qk_rng rng;
    qk_rng_seed(&rng, 42);
    for (int64_t i = 0; i < maxa; i++)
        A[i] = (uint8_t)qk_rng_u64(&rng);
    for (int64_t i = 0; i < maxb; i++)
        B[i] = (int8_t)qk_rng_u64(&rng);

    /* correctness first: every kernel (and oneDNN) against the reference */
    int bad = 0;
    for (int i = 0; i < NSHAPES; i++) {
        const shape *s = &shapes[i];
        qk_i8gemm_desc d = {.a_type = QK_U8, .b_type = QK_I8, .K = s->K, .N = s->N, .B = B, .ldb = s->N,
                            .a_zero = 128, .out_type = QK_I32};
        qk_i8gemm_ref(&d, s->M, A, s->K, R, s->N, 1);
        for (int q = 0; q < nkern; q++) {
            qk_i8gemm *g;
            if (make_gemm(s, B, kern[q], QK_I32, QK_RQ_NONE, &g) != QK_OK) {
                fprintf(stderr, "create: %s\n", qk_last_error());
                return 1;
            }
            size_t wss = qk_i8gemm_ws_bytes(g);
            qk_aligned_free(ws);
            ws = qk_aligned_alloc(wss * 2);
            qk_i8gemm_run(g, s->M, A, s->K, C, s->N, 1, pools[1], ws, wss);
            if (memcmp(C, R, (size_t)(s->M * s->N) * 4)) {
                printf("MISMATCH: kernel %s on %s\n", qk_i8_kernel_get(kern[q])->name, s->name);
                bad++;
            }
            qk_i8gemm_destroy(g);
        }
        dnnl_threads(2);
        if (!dnnl_run(s, A, B, C) || memcmp(C, R, (size_t)(s->M * s->N) * 4)) {
            printf("MISMATCH: oneDNN on %s\n", s->name);
            bad++;
        }
    }
    printf("correctness: %d kernels + oneDNN on %d shapes vs reference: %s\n\n", nkern, NSHAPES,
           bad ? "MISMATCHES (timings below are not meaningful)" : "all bit-exact");

    /* timings */
    printf("GOP/s (2*M*N*K / best time), int32 output; %%pk = best qkit / (VNNI peak x threads)\n");
    printf("%-22s %6s %5s %5s thr", "shape", "M", "N", "K");
    for (int q = 0; q < nkern; q++)
        printf(" %8s", qk_i8_kernel_get(kern[q])->name);
    printf(" %8s %6s\n", "oneDNN", "%pk");
    for (int i = 0; i < NSHAPES; i++) {
        const shape *s = &shapes[i];
        double ops = 2.0 * (double)s->M * (double)s->N * (double)s->K;
        for (int th = 1; th <= 2; th++) {
            printf("%-22s %6lld %5lld %5lld %3d", s->name, (long long)s->M, (long long)s->N, (long long)s->K, th);
            double best = 0;
            for (int q = 0; q < nkern; q++) {
                qk_i8gemm *g;
                make_gemm(s, B, kern[q], QK_I32, QK_RQ_NONE, &g);
                size_t wss = qk_i8gemm_ws_bytes(g);
                qk_aligned_free(ws);
                ws = qk_aligned_alloc(wss * 2);
                job j = {g, s, A, C, pools[th - 1], ws, wss};
                int is_ref = qk_i8_kernel_get(kern[q])->isa == QK_ISA_REF;
                double t = time_qk(&j, is_ref && ops > 1e9 ? 1 : 1000);
                double gops = ops / t / 1e9;
                if (!is_ref && gops > best)
                    best = gops;
                printf(" %8.1f", gops);
                qk_i8gemm_destroy(g);
            }
            dnnl_threads(th);
            printf(" %8.1f", ops / time_dnnl(s, A, B, C) / 1e9);
            if (peak > 0)
                printf(" %5.0f%%", 100.0 * best / (peak / 1e9 * th));
            printf("\n");
            fflush(stdout);
        }
    }

    /* fused output stage on the square case, best kernel */
    int kbest = qk_i8_kernel_for_isa(qk_cpu_isa());
    printf("\nsquare 1024^3 with the fused uint8 output stage, kernel %s:\n", qk_i8_kernel_get(kbest)->name);
    qk_rq_mode modes[] = {QK_RQ_NONE, QK_RQ_FP32, QK_RQ_GEMMLOWP, QK_RQ_Q31_SINGLE};
    for (int m = 0; m < 4; m++)
        for (int th = 1; th <= 2; th++) {
            qk_i8gemm *g;
            make_gemm(&shapes[0], B, kbest, modes[m] == QK_RQ_NONE ? QK_I32 : QK_U8, modes[m], &g);
            size_t wss = qk_i8gemm_ws_bytes(g);
            qk_aligned_free(ws);
            ws = qk_aligned_alloc(wss * 2);
            job j = {g, &shapes[0], A, C, pools[th - 1], ws, wss};
            printf("  %-12s %d thr: %7.1f GOP/s\n", modes[m] == QK_RQ_NONE ? "int32 out" : qk_rq_mode_name(modes[m]),
                   th, 2e-9 * 1024 * 1024 * 1024 / time_qk(&j, 1000));
            qk_i8gemm_destroy(g);
        }

    /* convolutions end to end (batch 32; nhwc: input and output NHWC) */
    typedef struct { const char *name; int64_t C, Co, groups, H, k, s, p; int nhwc; } cshape;
    static const cshape cs[] = {
        {"lenet c2 32->64 3x3 @14", 32, 64, 1, 14, 3, 1, 1, 0},
        {"resnet 32 3x3 @14", 32, 32, 1, 14, 3, 1, 1, 0},
        {"resnet 16->32 3x3 s2 @28", 16, 32, 1, 28, 3, 2, 1, 0},
        {"mbv2 1x1 24->96 @14", 24, 96, 1, 14, 1, 1, 0, 0},
        {"mbv2 dw 96 3x3 @14", 96, 96, 96, 14, 3, 1, 1, 0},
        {"resnet 16 3x3 @28 NHWC", 16, 16, 1, 28, 3, 1, 1, 1},
        {"resnet 32 3x3 @14 NHWC", 32, 32, 1, 14, 3, 1, 1, 1},
        {"resnet 64 3x3 @7 NHWC", 64, 64, 1, 7, 3, 1, 1, 1},
        {"resnet 16->32 3x3 s2 @28 NHWC", 16, 32, 1, 28, 3, 2, 1, 1},
        {"mbv2 1x1 16->64 @28 NHWC", 16, 64, 1, 28, 1, 1, 0, 1},
        {"mbv2 1x1 24->96 @14 NHWC", 24, 96, 1, 14, 1, 1, 0, 1},
        {"mbv2 dw 16 3x3 @28 NHWC", 16, 16, 16, 28, 3, 1, 1, 1},
        {"mbv2 dw 64 3x3 s2 @28 NHWC", 64, 64, 64, 28, 3, 2, 1, 1},
        {"mbv2 dw 96 3x3 @14 NHWC", 96, 96, 96, 14, 3, 1, 1, 1},
    };
    printf("\nint8 convolution, u8 -> u8 (fp32 requant), NCHW unless marked NHWC, batch 32, GOP/s:\n");
    printf("%-26s thr", "layer");
    for (int q = 0; q < nkern; q++)
        printf(" %8s", qk_i8_kernel_get(kern[q])->name);
    printf("\n");
    int64_t Nb = 32;
    uint8_t *x = qk_aligned_alloc((size_t)(Nb * 96 * 28 * 28)), *y = qk_aligned_alloc((size_t)(Nb * 96 * 28 * 28));
    uint8_t *yref = qk_aligned_alloc((size_t)(Nb * 96 * 28 * 28));
    int8_t *w = qk_aligned_alloc(96 * 96 * 9);
    for (int64_t i = 0; i < Nb * 96 * 28 * 28; i++)
        x[i] = (uint8_t)qk_rng_u64(&rng);
    for (int64_t i = 0; i < 96 * 96 * 9; i++)
        w[i] = (int8_t)qk_rng_u64(&rng);
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        const cshape *c = &cs[i];
        int64_t OH = qk_conv_out_dim(c->H, c->k, c->s, 1, c->p, c->p);
        double ops = 2.0 * Nb * OH * OH * c->Co * (c->C / c->groups) * c->k * c->k;
        for (int th = 1; th <= 2; th++) {
            printf("%-26s %3d", c->name, th);
            for (int q = 0; q < nkern; q++) {
                int32_t zw = 0;
                float sc = 0.001f;
                qk_i8conv_desc d = {.x_type = QK_U8, .w_type = QK_I8, .out_type = QK_U8, .C = c->C, .Co = c->Co,
                                    .groups = c->groups, .kh = c->k, .kw = c->k, .stride_h = c->s, .stride_w = c->s,
                                    .dil_h = 1, .dil_w = 1, .pad_t = c->p, .pad_l = c->p, .pad_b = c->p,
                                    .pad_r = c->p, .w = w, .x_zero = 128, .nw_zero = 1, .w_zero = &zw,
                                    .rq = {QK_RQ_FP32, 1, NULL, NULL, &sc, 128, 0, 255}, .kernel = kern[q]};
                qk_i8conv *cv;
                if (qk_i8conv_create(&d, &cv) != QK_OK) {
                    printf(" %8s", "err");
                    continue;
                }
                size_t wss = (qk_i8conv_ws_bytes(cv, c->H, c->H) + 63) & ~(size_t)63;
                qk_aligned_free(ws);
                ws = qk_aligned_alloc(wss * 2);
                double best = 1e30, spent = 0;
                int is_ref = qk_i8_kernel_get(kern[q])->isa == QK_ISA_REF;
                for (int r = 0; r < (is_ref ? 1 : 1000) && (r < 2 || spent < secs_per_case); r++) {
                    double t0 = qk_now();
                    qk_i8conv_run_layout(cv, Nb, c->H, c->H, x, c->nhwc, y, c->nhwc, pools[th - 1], ws, wss);
                    double t = qk_now() - t0;
                    spent += t;
                    best = t < best ? t : best;
                }
                size_t ny = (size_t)(Nb * c->Co * OH * OH);
                if (q == 0)
                    memcpy(yref, y, ny);
                if (memcmp(y, yref, ny)) {
                    printf(" %8s", "MISMATCH");
                    bad++;
                } else {
                    printf(" %8.1f", ops / best / 1e9);
                }
                qk_i8conv_destroy(cv);
            }
            printf("\n");
            fflush(stdout);
        }
    }
    qk_aligned_free(x), qk_aligned_free(y), qk_aligned_free(yref), qk_aligned_free(w);
    qk_aligned_free(ws), qk_aligned_free(A), qk_aligned_free(B), qk_aligned_free(C), qk_aligned_free(R);
    qk_pool_destroy(pools[0]);
    qk_pool_destroy(pools[1]);
    return bad ? 1 : 0;
}
