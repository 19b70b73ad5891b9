/* CPU feature detection (see include/qkit/cpu.h): CPUID + XGETBV, and for
 * AMX the Linux permission request for the tile data state. Run once. */
#include "qkit/cpu.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define QK_X86 1
#else
#define QK_X86 0
#endif

#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

static qk_cpu_features feat;
static pthread_once_t feat_once = PTHREAD_ONCE_INIT;

static const char *const isa_names[QK_ISA_COUNT] = {"ref", "avx2", "avx512", "vnni", "amx"};

const char *qk_isa_name(qk_isa isa)
{
    return ((unsigned)isa < QK_ISA_COUNT) ? isa_names[isa] : "?";
}

qk_status qk_isa_parse(const char *s, qk_isa *out)
{
    for (int i = 0; i < QK_ISA_COUNT; i++)
        if (s && strcasecmp(s, isa_names[i]) == 0) {
            *out = (qk_isa)i;
            return QK_OK;
        }
    return qk_error(QK_ERR_ARG, "unknown instruction-set level '%s' (expected ref, avx2, avx512, vnni or amx)",
                    s ? s : "(null)");
}

#if QK_X86
static void cpuid(unsigned leaf, unsigned sub, unsigned r[4])
{
    __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
}

static uint64_t xgetbv0(void)
{
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

/* Linux: ask for permission to use the AMX tile data state (XFEATURE 18).
 * Without it the first tile instruction raises SIGILL. */
static int request_amx(void)
{
#if defined(__linux__) && defined(SYS_arch_prctl)
    enum { ARCH_GET_XCOMP_PERM = 0x1022, ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0)
        return 0;
    unsigned long bitmask = 0;
    if (syscall(SYS_arch_prctl, ARCH_GET_XCOMP_PERM, &bitmask) != 0)
        return 0;
    return (bitmask & (1UL << XFEATURE_XTILEDATA)) != 0;
#else
    return 0;
#endif
}

static void detect_x86(qk_cpu_features *f)
{
    unsigned r[4];
    cpuid(0, 0, r);
    unsigned max_leaf = r[0];
    memcpy(f->vendor, &r[1], 4);
    memcpy(f->vendor + 4, &r[3], 4);
    memcpy(f->vendor + 8, &r[2], 4);
    f->vendor[12] = 0;
    cpuid(0x80000000u, 0, r);
    if (r[0] >= 0x80000004u) {
        for (unsigned i = 0; i < 3; i++) {
            cpuid(0x80000002u + i, 0, r);
            memcpy(f->brand + 16 * i, r, 16);
        }
        f->brand[48] = 0;
        /* trim leading blanks */
        size_t k = 0;
        while (f->brand[k] == ' ')
            k++;
        memmove(f->brand, f->brand + k, strlen(f->brand + k) + 1);
        for (k = strlen(f->brand); k > 0 && f->brand[k - 1] == ' '; k--)
            f->brand[k - 1] = 0;
    }
    if (max_leaf < 1)
        return;
    cpuid(1, 0, r);
    int osxsave = (r[2] >> 27) & 1;
    f->sse42 = (r[2] >> 20) & 1;
    f->fma = (r[2] >> 12) & 1;
    f->avx = (r[2] >> 28) & 1;
    f->f16c = (r[2] >> 29) & 1;
    uint64_t xcr0 = osxsave ? xgetbv0() : 0;
    f->os_avx = (xcr0 & 0x6) == 0x6;
    f->os_avx512 = f->os_avx && (xcr0 & 0xe0) == 0xe0;
    f->os_amx = (xcr0 & 0x60000) == 0x60000;
    if (max_leaf >= 7) {
        cpuid(7, 0, r);
        f->avx2 = (r[1] >> 5) & 1;
        f->avx512f = (r[1] >> 16) & 1;
        f->avx512dq = (r[1] >> 17) & 1;
        f->avx512bw = (r[1] >> 30) & 1;
        f->avx512vl = (r[1] >> 31) & 1;
        f->avx512vnni = (r[2] >> 11) & 1;
        f->amx_bf16 = (r[3] >> 22) & 1;
        f->amx_tile = (r[3] >> 24) & 1;
        f->amx_int8 = (r[3] >> 25) & 1;
        unsigned r1[4];
        cpuid(7, 1, r1);
        f->avx_vnni = (r1[0] >> 4) & 1;
    }
    qk_isa lvl = QK_ISA_REF;
    if (f->os_avx && f->avx && f->avx2 && f->fma)
        lvl = QK_ISA_AVX2;
    if (lvl == QK_ISA_AVX2 && f->os_avx512 && f->avx512f && f->avx512bw && f->avx512vl && f->avx512dq)
        lvl = QK_ISA_AVX512;
    if (lvl == QK_ISA_AVX512 && f->avx512vnni)
        lvl = QK_ISA_VNNI;
    if (lvl == QK_ISA_VNNI && f->amx_tile && f->amx_int8 && f->os_amx) {
        f->amx_granted = request_amx();
        if (f->amx_granted)
            lvl = QK_ISA_AMX;
    }
    f->detected = lvl;
}
#endif

static void detect(void)
{
    qk_cpu_features *f = &feat;
    memset(f, 0, sizeof *f);
    strcpy(f->vendor, "unknown");
#if QK_X86
    detect_x86(f);
#endif
    f->level = f->detected;
    /* The library's one environment reader (cpu.h, README): a process-wide
     * capability cap, like the CPU itself. */
    const char *env = getenv("QKIT_ISA");
    if (env && *env) {
        qk_isa cap;
        if (qk_isa_parse(env, &cap) != QK_OK)
            qk_log(QK_LOG_WARN, "QKIT_ISA='%s' is not one of ref, avx2, avx512, vnni, amx: ignored", env);
        else if (cap < f->level)
            f->level = cap;
    }
}

const qk_cpu_features *qk_cpu_features_get(void)
{
    pthread_once(&feat_once, detect);
    return &feat;
}

qk_isa qk_cpu_isa(void) { return qk_cpu_features_get()->level; }

int qk_cpu_isa_usable(qk_isa isa)
{
    return (unsigned)isa < QK_ISA_COUNT && isa <= qk_cpu_features_get()->detected;
}

char *qk_cpu_describe(char *buf, size_t n)
{
    const qk_cpu_features *f = qk_cpu_features_get();
    snprintf(buf, n, "%s %s:%s%s%s%s%s%s -> %s", f->vendor, f->brand[0] ? f->brand : "(no brand)",
             f->avx2 ? " avx2" : "", f->avx_vnni ? " avx-vnni" : "", f->avx512f && f->os_avx512 ? " avx512" : "",
             f->avx512vnni ? " vnni" : "",
             f->amx_int8 ? (f->amx_granted ? " amx(granted)" : " amx(not granted)") : "",
             f->os_avx ? "" : " (no OS AVX state)", qk_isa_name(f->level));
    return buf;
}
