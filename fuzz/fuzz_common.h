/* Shared by the libFuzzer harnesses in fuzz/ (built by `make fuzz`, run by
 * tools/fuzz.sh). Not part of the library.
 *
 * fz_path(data, size) (fz_path_n: two files at once): the bytes as a file for loaders that read a path: one
 * memfd per process, rewritten for every input, named /proc/self/fd/N (a
 * regular file to fopen/gzopen/fstat). */
#ifndef QKIT_FUZZ_COMMON_H
#define QKIT_FUZZ_COMMON_H

#include "qkit/qkit.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static inline const char *fz_path_n(int slot, const uint8_t *data, size_t size)
{
    static int fds[2] = { -1, -1 };
    static char paths[2][64];
    int *fd = &fds[slot & 1];
    char *path = paths[slot & 1];
    if (*fd < 0) {
        *fd = memfd_create("qkit-fuzz", 0);
        if (*fd < 0) {
            perror("memfd_create");
            abort();
        }
        snprintf(path, 64, "/proc/self/fd/%d", *fd);
    }
    if (ftruncate(*fd, 0) != 0 || (size && pwrite(*fd, data, size, 0) != (ssize_t)size)) {
        perror("memfd write");
        abort();
    }
    return path;
}

static inline const char *fz_path(const uint8_t *data, size_t size) { return fz_path_n(0, data, size); }

/* Quiet library, one thread. */
static inline void fz_init(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    qk_log_set_level(QK_LOG_ERROR);
    setenv("OPENBLAS_NUM_THREADS", "1", 0);
    setenv("OMP_NUM_THREADS", "1", 0);
}

/* Reads n bytes (ASan then checks that they are all addressable). */
static inline void fz_touch(const void *p, int64_t n)
{
    const uint8_t *b = p;
    volatile uint8_t acc = 0;
    for (int64_t i = 0; i < n; i++)
        acc ^= b[i];
    (void)acc;
}

/* A FuzzedDataProvider in C: reads fixed-size values from the front of the
 * input; when it runs out every read gives zeros. */
typedef struct fz_in {
    const uint8_t *p;
    size_t n;
} fz_in;

static inline uint64_t fz_bits(fz_in *in, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) {
        v |= (uint64_t)(in->n ? in->p[0] : 0) << (8 * i);
        if (in->n) {
            in->p++;
            in->n--;
        }
    }
    return v;
}

static inline uint8_t fz_u8(fz_in *in) { return (uint8_t)fz_bits(in, 1); }

/* Integer in [lo, hi] (hi - lo < 2^16). */
static inline int fz_range(fz_in *in, int lo, int hi)
{
    uint32_t span = (uint32_t)(hi - lo) + 1;
    return lo + (int)(fz_bits(in, span > 256 ? 2 : 1) % span);
}

/* A float: mostly "reasonable" (a mantissa byte times a power of two), but
 * also any raw bit pattern (NaN, Inf, denormals, negatives, zero). */
static inline float fz_float(fz_in *in)
{
    uint8_t sel = fz_u8(in);
    if (sel < 200) {
        int m = fz_u8(in);
        int e = (int)(fz_u8(in) % 40) - 30;
        return (float)(m + 1) * ldexpf(1.0f, e);
    }
    uint32_t b = (uint32_t)fz_bits(in, 4);
    float f;
    memcpy(&f, &b, 4);
    return f;
}

/* Plan limits of the harnesses: memory (qk_plan_options.max_bytes) and a
 * nominal amount of work (below) above which a planned model is not run.
 * Such models are valid, only slow; the limits keep every input within the
 * fuzzer's timeout. */
#define FZ_MAX_BYTES ((size_t)8 << 20)
#define FZ_MAX_WORK 4000000.0

static inline void fz_limit(qk_graph *g)
{
    qk_plan_options o = g->opts;
    o.max_bytes = FZ_MAX_BYTES;
    qk_graph_set_options(g, &o);
}

/* Rough operation count of one forward of a planned graph: per node, the
 * elements of its inputs and outputs, times the window (kernel_shape or the
 * weight's receptive field) or the reduction length of a matrix product. */
static inline double fz_work(const qk_graph *g)
{
    double w = 0;
    for (int k = 0; k < g->n_nodes; k++) {
        const qk_node *n = &g->nodes[k];
        double io = 0, win = 1;
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j] >= 0)
                io += (double)qk_tensor_numel(&g->values[n->in[j]].t);
        double out = 0;
        for (int j = 0; j < n->n_out; j++)
            if (n->out[j] >= 0)
                out += (double)qk_tensor_numel(&g->values[n->out[j]].t);
        const qk_attr *ks = qk_node_attr(n, "kernel_shape");
        if (ks && ks->type == QK_ATTR_INTS)
            for (int i = 0; i < ks->n; i++)
                win *= ks->ints[i] > 0 ? (double)ks->ints[i] : 1;
        if (n->n_in > 1 && n->in[1] >= 0) { /* weights: Conv*, Gemm, MatMul */
            const qk_tensor *t = &g->values[n->in[1]].t;
            double r = 1;
            for (int i = 0; i < t->ndim; i++)
                r *= t->dims[i] > 0 ? (double)t->dims[i] : 1;
            if (r > win)
                win = r;
        }
        w += io + out * win;
    }
    return w;
}

#endif
