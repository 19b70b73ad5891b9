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

#endif
