/* qkit bench helpers: hashing, whole-file reads, a growing string buffer. */
#include "bench_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t qk_bench_fnv(const void *p, size_t n, uint64_t h)
{
    const unsigned char *b = p;
    if (!h)
        h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ULL;
    }
    return h;
}

qk_status qk_bench_read_file(const char *path, char **text, size_t *len)
{
    *text = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return qk_error(QK_ERR_IO, "cannot open %s", path);
    size_t cap = 1 << 16, n = 0;
    char *s = qk_malloc(cap + 1);
    while (s) {
        size_t r = fread(s + n, 1, cap - n, f);
        n += r;
        if (n < cap)
            break;
        char *t = qk_realloc(s, 2 * cap + 1);
        if (!t) {
            qk_free(s);
            s = NULL;
            break;
        }
        s = t;
        cap *= 2;
    }
    int err = ferror(f);
    fclose(f);
    if (!s)
        return qk_error(QK_ERR_NOMEM, "out of memory reading %s", path);
    if (err) {
        qk_free(s);
        return qk_error(QK_ERR_IO, "cannot read %s", path);
    }
    s[n] = 0;
    *text = s;
    *len = n;
    return QK_OK;
}

qk_status qk_bench_hash_file(const char *path, uint64_t *h)
{
    char *t;
    size_t n;
    qk_status st = qk_bench_read_file(path, &t, &n);
    if (st != QK_OK)
        return st;
    *h = qk_bench_fnv(t, n, 0);
    qk_free(t);
    return QK_OK;
}

static void grow(qk_sbuf *b, size_t extra)
{
    if (b->oom || b->n + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + extra + 1)
        cap *= 2;
    char *s = qk_realloc(b->s, cap);
    if (!s) {
        b->oom = 1;
        return;
    }
    b->s = s;
    b->cap = cap;
}

void qk_sbuf_printf(qk_sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (k < 0)
        return;
    grow(b, (size_t)k);
    if (b->oom)
        return;
    va_start(ap, fmt);
    vsnprintf(b->s + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

void qk_sbuf_json_str(qk_sbuf *b, const char *s)
{
    qk_sbuf_printf(b, "\"");
    for (; s && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            qk_sbuf_printf(b, "\\%c", ch);
        else if (ch == '\n')
            qk_sbuf_printf(b, "\\n");
        else if (ch < 0x20)
            qk_sbuf_printf(b, "\\u%04x", ch);
        else
            qk_sbuf_printf(b, "%c", ch);
    }
    qk_sbuf_printf(b, "\"");
}

void qk_sbuf_html(qk_sbuf *b, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '<': qk_sbuf_printf(b, "&lt;"); break;
        case '>': qk_sbuf_printf(b, "&gt;"); break;
        case '&': qk_sbuf_printf(b, "&amp;"); break;
        case '"': qk_sbuf_printf(b, "&quot;"); break;
        default: qk_sbuf_printf(b, "%c", *s);
        }
    }
}

void qk_sbuf_num(qk_sbuf *b, double v)
{
    if (isfinite(v))
        qk_sbuf_printf(b, "%.17g", v);
    else
        qk_sbuf_printf(b, "null");
}

void qk_sbuf_free(qk_sbuf *b)
{
    qk_free(b->s);
    b->s = NULL;
    b->n = b->cap = 0;
}
