/* The machine line every bench prints in its header: the CPU model (as
 * lscpu's "Model name": /proc/cpuinfo, else CPUID's brand string), the
 * instruction-set level qkit dispatches at (QKIT_ISA caps it) and the
 * per-core peaks measured here: FP32 FMA (AVX-512 at the avx512 level and
 * above, else AVX2) and, where usable at that level, AVX-512 VNNI
 * (vpdpbusd). Each peak is the best of many short runs of 24 independent
 * chains, so a busy machine lowers it little. Header-only: each bench is
 * one file (bench/README.md). */
#ifndef QK_BENCH_MACHINE_H
#define QK_BENCH_MACHINE_H

#include "qkit/cpu.h"

#include <stdio.h>
#include <string.h>

static void bm_cpu_model(char *buf, size_t n)
{
    snprintf(buf, n, "%s", qk_cpu_features_get()->brand);
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10) && strchr(line, ':')) {
            char *s = strchr(line, ':') + 1;
            while (*s == ' ' || *s == '\t')
                s++;
            s[strcspn(s, "\n")] = 0;
            snprintf(buf, n, "%s", s);
            break;
        }
    if (f)
        fclose(f);
}

#define BM_R24(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15) \
    X(16) X(17) X(18) X(19) X(20) X(21) X(22) X(23)
#define BM_CLOB "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", \
    "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23",  \
    "xmm30", "xmm31"
#define BM_VN(r) "vpdpbusd %%zmm30, %%zmm31, %%zmm" #r "\n\t"
#define BM_F5(r) "vfmadd231ps %%zmm30, %%zmm31, %%zmm" #r "\n\t"
#define BM_F2(r) "vfmadd231ps %%ymm14, %%ymm15, %%ymm" #r "\n\t"
#define BM_R12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

__attribute__((target("avx512f,avx512vnni"))) static double bm_loop_vnni(long it)
{
    double t0 = qk_now();
    __asm__ volatile("vpxord %%zmm30, %%zmm30, %%zmm30\n\tvpxord %%zmm31, %%zmm31, %%zmm31\n\t"
                     "1:\n\t" BM_R24(BM_VN) "dec %0\n\tjnz 1b\n\t"
                     : "+r"(it)::"cc", BM_CLOB);
    return qk_now() - t0;
}

__attribute__((target("avx512f"))) static double bm_loop_fma512(long it)
{
    double t0 = qk_now();
    __asm__ volatile("vpxord %%zmm30, %%zmm30, %%zmm30\n\tvpxord %%zmm31, %%zmm31, %%zmm31\n\t"
                     "1:\n\t" BM_R24(BM_F5) "dec %0\n\tjnz 1b\n\t"
                     : "+r"(it)::"cc", BM_CLOB);
    return qk_now() - t0;
}

__attribute__((target("avx2,fma"))) static double bm_loop_fma256(long it)
{
    double t0 = qk_now();
    __asm__ volatile("vxorps %%ymm14, %%ymm14, %%ymm14\n\tvxorps %%ymm15, %%ymm15, %%ymm15\n\t"
                     "1:\n\t" BM_R12(BM_F2) "dec %0\n\tjnz 1b\n\t"
                     : "+r"(it)::"cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
                       "xmm9", "xmm10", "xmm11", "xmm14", "xmm15");
    return qk_now() - t0;
}

/* ops per second of the best of `runs` calls of loop(it): ops = it * per_it */
static double bm_best(double (*loop)(long), long it, double per_it, int runs)
{
    double best = 1e30;
    for (int r = 0; r < runs; r++) {
        double t = loop(it);
        best = t < best ? t : best;
    }
    return it * per_it / best;
}

typedef struct bm_machine {
    char model[256];
    qk_isa isa;
    double fp32_gflops, vnni_gops; /* per core; 0: not usable at this level */
} bm_machine;

/* Measures (about 0.5 s) and prints "# CPU: ...", "# ISA: ..." and
 * "# peaks: ..." lines on f. */
static bm_machine bm_machine_print(FILE *f)
{
    bm_machine m;
    memset(&m, 0, sizeof m);
    bm_cpu_model(m.model, sizeof m.model);
    m.isa = qk_cpu_isa();
    char desc[256];
    if (m.isa >= QK_ISA_AVX512)
        m.fp32_gflops = bm_best(bm_loop_fma512, 20000, 24.0 * 16 * 2, 300) / 1e9;
    else if (m.isa >= QK_ISA_AVX2)
        m.fp32_gflops = bm_best(bm_loop_fma256, 20000, 12.0 * 8 * 2, 300) / 1e9;
    if (m.isa >= QK_ISA_VNNI)
        m.vnni_gops = bm_best(bm_loop_vnni, 20000, 24.0 * 64 * 2, 300) / 1e9;
    fprintf(f, "# CPU: %s\n# ISA: %s (detected %s; %s)\n", m.model, qk_isa_name(m.isa),
            qk_isa_name(qk_cpu_features_get()->detected), qk_cpu_describe(desc, sizeof desc));
    fprintf(f, "# peaks per core (measured): FP32 FMA %.0f GFLOP/s (%s)", m.fp32_gflops,
            m.isa >= QK_ISA_AVX512 ? "AVX-512" : "AVX2");
    if (m.vnni_gops > 0)
        fprintf(f, ", AVX-512 VNNI %.0f GOP/s (int8/float %.1fx)", m.vnni_gops, m.vnni_gops / m.fp32_gflops);
    fprintf(f, "\n");
    return m;
}

#endif
