/* Portable compilation of the float row kernels and the one-time choice
 * between it and the AVX-512 one (fkern.h). */
#include "fkern.h"

#include "qkit/cpu.h"

#define FK(name) fk_##name##_ref
#include "fkern_body.h"

const qk_fkern qk_fkern_ref = FK_TABLE;

const qk_fkern *qk_fk(void)
{
    static const qk_fkern *chosen;
    const qk_fkern *k = __atomic_load_n(&chosen, __ATOMIC_ACQUIRE);
    if (!k) {
        k = qk_cpu_isa() >= QK_ISA_AVX512 ? &qk_fkern_avx512 : &qk_fkern_ref;
        __atomic_store_n(&chosen, k, __ATOMIC_RELEASE);
    }
    return k;
}
