/* int8 GEMM kernel for AMX (tdpbusd / tdpbssd on 16x64-byte tiles); body in
 * i8gemm_amx_body.h. Called only when qk_cpu_isa_usable(QK_ISA_AMX), i.e.
 * after the kernel granted XTILEDATA (src/base/cpu.c). The tile
 * configuration is loaded and released inside every call, so any pool
 * thread may run it. */
#include "i8gemm.h"

#include <immintrin.h>

#define AMX_SUFFIX amx
#define AMX_STATE
#define AMX_CFG(c) _tile_loadconfig(c)
#define AMX_ZERO(t) _tile_zero(t)
#define AMX_LOAD(t, p, s) _tile_loadd(t, p, s)
#define AMX_STORE(t, p, s) _tile_stored(t, p, s)
#define AMX_DPBUSD(c, a, b) _tile_dpbusd(c, a, b)
#define AMX_DPBSSD(c, a, b) _tile_dpbssd(c, a, b)
#define AMX_RELEASE() _tile_release()
#include "i8gemm_amx_body.h"
