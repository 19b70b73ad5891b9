/* The float row kernels of fkern_body.h compiled for AVX-512 (this file's
 * name gives it the Makefile's ISA_avx512 flags); qk_fk() calls them only
 * when the CPU and OS support AVX-512. */
#include "fkern.h"

#define FK(name) fk_##name##_avx512
#include "fkern_body.h"

const qk_fkern qk_fkern_avx512 = FK_TABLE;
