/* The AMX kernel (i8gemm_amx_body.h) with its tile instructions emulated in
 * plain C: the test-only kernel "amx-emu". Semantics follow the Intel SDM
 * for TILELOADD/TILESTORED/TILEZERO/TDPBUSD/TDPBSSD with palette 1: each
 * C[m][n] (int32) gains sum over k of four byte products A[m][4k+i] *
 * B[k][4n+i], wrapping modulo 2^32; A bytes are u8 (tdpbusd) or s8 (tdpbssd),
 * B bytes s8. */
#include "i8gemm.h"

#include <string.h>

typedef struct {
    int rows, colsb;
    uint8_t d[16][64];
} emu_tile;

static void emu_cfg(emu_tile *T, const uint8_t *cfg)
{
    for (int t = 0; t < 8; t++) {
        uint16_t cb;
        memcpy(&cb, cfg + 16 + 2 * t, 2);
        T[t].colsb = cb;
        T[t].rows = cfg[48 + t];
        memset(T[t].d, 0, sizeof T[t].d);
    }
}

static void emu_load(emu_tile *t, const void *p, int64_t stride)
{
    for (int r = 0; r < t->rows; r++)
        memcpy(t->d[r], (const uint8_t *)p + r * stride, (size_t)t->colsb);
}

static void emu_store(const emu_tile *t, void *p, int64_t stride)
{
    for (int r = 0; r < t->rows; r++)
        memcpy((uint8_t *)p + r * stride, t->d[r], (size_t)t->colsb);
}

static void emu_dp(emu_tile *c, const emu_tile *a, const emu_tile *b, int a_signed)
{
    int K4 = a->colsb / 4, N = c->colsb / 4;
    for (int m = 0; m < c->rows; m++)
        for (int n = 0; n < N; n++) {
            int32_t v;
            memcpy(&v, &c->d[m][4 * n], 4);
            uint32_t s = (uint32_t)v;
            for (int k = 0; k < K4; k++)
                for (int i = 0; i < 4; i++) {
                    int32_t x = a_signed ? (int8_t)a->d[m][4 * k + i] : a->d[m][4 * k + i];
                    s += (uint32_t)(x * (int8_t)b->d[k][4 * n + i]);
                }
            v = (int32_t)s;
            memcpy(&c->d[m][4 * n], &v, 4);
        }
}

#define AMX_SUFFIX amxemu
#define AMX_STATE emu_tile T[8];
#define AMX_CFG(c) emu_cfg(T, (const uint8_t *)(c))
#define AMX_ZERO(t) memset(T[t].d, 0, sizeof T[t].d)
#define AMX_LOAD(t, p, s) emu_load(&T[t], p, s)
#define AMX_STORE(t, p, s) emu_store(&T[t], p, s)
#define AMX_DPBUSD(c, a, b) emu_dp(&T[c], &T[a], &T[b], 0)
#define AMX_DPBSSD(c, a, b) emu_dp(&T[c], &T[a], &T[b], 1)
#define AMX_RELEASE() (void)0
#include "i8gemm_amx_body.h"
