/* qkit CPU feature detection: done once, in one place (src/base/cpu.c).
 *
 * Kernels come in instruction-set levels; dispatch asks for the highest level
 * the CPU, the operating system and the environment allow.
 *
 * Example (`make test` runs it):
 *
 *   qk_isa isa = qk_cpu_isa();            // e.g. QK_ISA_VNNI
 *   printf("%s\n", qk_isa_name(isa));     // "vnni"
 *   assert(qk_cpu_isa_usable(isa) && qk_cpu_isa_usable(QK_ISA_REF));
 * (end of example)
 *
 * Levels are ordered: each includes everything below it.
 *   ref     plain C, always available (the specification)
 *   avx2    AVX2 + FMA (Haswell and later, Zen)
 *   avx512  AVX-512 F/BW/VL/DQ, with OS support for the ZMM state (XCR0)
 *   vnni    avx512 + AVX512-VNNI (vpdpbusd)
 *   amx     vnni + AMX-TILE + AMX-INT8, the XTILECFG/XTILEDATA state enabled
 *           in XCR0, AND the kernel granted this process the tile data state
 *           (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA=18), Linux 5.16+)
 *
 * The environment variable QKIT_ISA=ref|avx2|avx512|vnni|amx caps the level
 * (the one environment variable the library reads: a capability cap that
 * holds for the whole process, like the CPU itself; every other choice is a
 * per-graph plan option, graph.h)
 * (read once, at the first call); a value above what the CPU has is ignored
 * (the detected level is used) and an unknown value is reported once with
 * qk_log(QK_LOG_WARN) and ignored. Detection is thread-safe (pthread_once). */
#ifndef QKIT_CPU_H
#define QKIT_CPU_H

#include "base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Frozen values: never renumber (ordered: a higher level includes the lower). */
typedef enum qk_isa {
    QK_ISA_REF = 0,
    QK_ISA_AVX2 = 1,
    QK_ISA_AVX512 = 2,
    QK_ISA_VNNI = 3,
    QK_ISA_AMX = 4
} qk_isa;
#define QK_ISA_COUNT 5

typedef struct qk_cpu_features {
    char vendor[13];     /* "GenuineIntel", "AuthenticAMD", ... */
    char brand[49];      /* processor brand string */
    /* CPUID bits */
    int sse42, avx, fma, f16c, avx2;
    int avx512f, avx512dq, avx512bw, avx512vl, avx512vnni, avx_vnni;
    int amx_tile, amx_int8, amx_bf16;
    /* operating-system support (XGETBV XCR0) */
    int os_avx;          /* XMM|YMM state enabled */
    int os_avx512;       /* opmask|ZMM_Hi256|Hi16_ZMM enabled */
    int os_amx;          /* XTILECFG|XTILEDATA enabled */
    int amx_granted;     /* arch_prctl(ARCH_REQ_XCOMP_PERM) succeeded */
    qk_isa detected;     /* highest level usable, before QKIT_ISA */
    qk_isa level;        /* after the QKIT_ISA cap: what dispatch uses */
} qk_cpu_features;

/* Detects on the first call (thread-safe), then returns the same object. */
const qk_cpu_features *qk_cpu_features_get(void);
/* The level dispatch uses (detected, capped by QKIT_ISA). */
qk_isa qk_cpu_isa(void);
/* 1 if kernels of this level may run on this machine (ignores the QKIT_ISA
 * cap, so tests can force every level the CPU has). */
int qk_cpu_isa_usable(qk_isa isa);
const char *qk_isa_name(qk_isa isa);   /* "ref", "avx2", ...; "?" if invalid */
/* Parses "ref|avx2|avx512|vnni|amx" (case-insensitive). QK_ERR_ARG if unknown. */
qk_status qk_isa_parse(const char *s, qk_isa *out);
/* One line "vendor brand: avx2 avx-vnni avx512 vnni amx(granted) -> level" for logs. */
char *qk_cpu_describe(char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
