/* Shared by the tests that run the built `qkit` binary: find it, run it
 * with stderr merged into one buffer, look at the output. Header-only. */
#ifndef QKIT_TESTS_CLI_FX_H
#define QKIT_TESTS_CLI_FX_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <zlib.h>

static char qkit[512], out[1 << 17];

/* $QKIT_BUILD/qkit (default build/qkit); 0 if the binary is missing. */
static int cli_fx_init(void)
{
    const char *b = getenv("QKIT_BUILD");
    snprintf(qkit, sizeof qkit, "%s/qkit", b ? b : "build");
    struct stat s;
    return stat(qkit, &s) == 0;
}

/* Run "qkit ARGS" with stderr merged; returns the exit code, output in out[]. */
static int q(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int q(const char *fmt, ...)
{
    char args[2048], cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s %s 2>&1 </dev/null", qkit, args);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int exists(const char *path)
{
    struct stat s;
    return stat(path, &s) == 0;
}

static int has(const char *s) { return strstr(out, s) != NULL; }

/* A tiny MNIST-format IDX file: images (n x 28 x 28, a fixed pattern) or
 * labels (n, i % 10), gzip-compressed. */
__attribute__((unused)) static void cli_fx_write_idx(const char *path, int images, int n)
{
    size_t hdr = images ? 16 : 8, body = images ? (size_t)n * 784 : (size_t)n;
    unsigned char *b = calloc(1, hdr + body);
    b[2] = 8;
    b[3] = images ? 3 : 1;
    b[4] = (unsigned char)(n >> 24), b[5] = (unsigned char)(n >> 16), b[6] = (unsigned char)(n >> 8);
    b[7] = (unsigned char)n;
    if (images)
        b[11] = 28, b[15] = 28;
    for (size_t i = 0; i < body; i++)
        b[hdr + i] = images ? (unsigned char)((i * 7919) % 251) : (unsigned char)(i % 10);
    gzFile f = gzopen(path, "wb");
    gzwrite(f, b, (unsigned)(hdr + body));
    gzclose(f);
    free(b);
}

/* dir/{train,t10k}-{images,labels}-idx*-ubyte.gz with ntrain / ntest items. */
__attribute__((unused)) static void cli_fx_tiny_mnist(const char *dir, int ntrain, int ntest)
{
    static const char *const files[4] = { "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                          "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz" };
    char p[1024];
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        cli_fx_write_idx(p, !(i & 1), i < 2 ? ntrain : ntest);
    }
}

#endif
