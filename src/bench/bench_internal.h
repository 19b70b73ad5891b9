/* Private to src/bench: helpers shared by the config, the runner, the
 * results reader and the report. */
#ifndef QKIT_BENCH_INTERNAL_H
#define QKIT_BENCH_INTERNAL_H

#include "qkit/bench.h"
#include "qkit/data.h"

#include <stdarg.h>

/* FNV-1a 64 over n bytes, continuing from h (0: the offset basis). */
uint64_t qk_bench_fnv(const void *p, size_t n, uint64_t h);
qk_status qk_bench_hash_file(const char *path, uint64_t *h);
/* Whole file, NUL-terminated (qk_free it). */
qk_status qk_bench_read_file(const char *path, char **text, size_t *len);

/* A growing string (JSON lines, the HTML report). */
typedef struct qk_sbuf { char *s; size_t n, cap; int oom; } qk_sbuf;
void qk_sbuf_printf(qk_sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void qk_sbuf_json_str(qk_sbuf *b, const char *s);  /* "..." with JSON escapes */
void qk_sbuf_html(qk_sbuf *b, const char *s);      /* HTML-escaped text */
void qk_sbuf_num(qk_sbuf *b, double v);            /* %.17g, null when not finite */
void qk_sbuf_free(qk_sbuf *b);

/* The datasets of one data folder (loaded once by the runner). */
typedef struct qk_bench_data { qk_dataset train, test; } qk_bench_data;

/* Run one cell in this process with `threads` threads and append its line
 * to `results` (the JSON object, no newline) in *line. Never fails the
 * caller: failures become status "error" lines. */
void qk_bench_cell_run(const qk_bench_config *c, const qk_bench_cell *cell, const qk_bench_data *d, int threads,
                       qk_sbuf *line);
/* The line of a cell that did not finish (crash: reason). */
void qk_bench_cell_line(const qk_bench_config *c, const qk_bench_cell *cell, const char *status, const char *reason,
                        qk_sbuf *line);

#endif
