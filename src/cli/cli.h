/* qkit command-line helpers: option tables, parsing, JSON output, errors.
 * The CLI holds no logic the library lacks: each command parses options,
 * calls the library and prints. */
#ifndef QKIT_CLI_H
#define QKIT_CLI_H

#include "qkit/base.h"

#include <stdio.h>

#define CLI_MAX_OPTS 48
#define CLI_MAX_MULTI 64

typedef struct cli_opt {
    const char *name;    /* without leading "--" */
    const char *arg;     /* NULL: flag; else metavar shown in --help */
    const char *help;
    int multi;           /* may be repeated (values collected) */
} cli_opt;

typedef struct cli_args {
    const cli_opt *opts;
    int n;
    const char *val[CLI_MAX_OPTS];          /* last value (flags: "1") */
    const char *multi[CLI_MAX_OPTS][CLI_MAX_MULTI];
    int n_multi[CLI_MAX_OPTS];
} cli_args;

typedef struct cli_cmd {
    const char *name;
    const char *summary;
    const char *usage;   /* one line after "qkit NAME " */
    const char *details; /* paragraph printed after the options (may be NULL) */
    const cli_opt *opts;
    int (*run)(cli_args *a);
} cli_cmd;

/* Parse argv (after the command name). Prints --help and returns 1 when
 * asked; returns 2 (after printing an error) on bad usage; 0 on success. */
int cli_parse(const cli_cmd *cmd, int argc, char **argv, cli_args *a);
void cli_help(const cli_cmd *cmd, FILE *f);
const char *cli_get(const cli_args *a, const char *name);
int cli_flag(const cli_args *a, const char *name);
int cli_multi(const cli_args *a, const char *name, const char ***vals);
/* Integer/float option with range check; prints an error and returns -1 on bad input. */
int cli_int(const cli_args *a, const char *name, long long dflt, long long lo, long long hi, long long *out);
int cli_double(const cli_args *a, const char *name, double dflt, double lo, double hi, double *out);

/* Report a library failure: "qkit CMD: message" on stderr; returns 1. */
int cli_fail(const char *cmd, qk_status st);
/* Usage error: returns 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Input normalization for model g: its metadata (qkit.norm.mean/std), else
 * the Fashion-MNIST default, then --mean/--std. Returns 0, 1 with *st set
 * (bad metadata), or 2 (bad option, printed). */
struct qk_graph;
struct qk_norm;
int cli_norm(const cli_args *a, const struct qk_graph *g, struct qk_norm *norm, qk_status *st);
/* Thread pool from --threads (default: all cores). NULL on error (printed). */
qk_pool *cli_pool(const cli_args *a, const char *cmd, int *ok);
/* A file can be created next to `path` (its directory exists and is
 * writable): checked before long work; 0 or 2 after printing an error. */
int cli_check_writable(const char *cmd, const char *opt, const char *path);
/* Progress lines on stderr only when it is a terminal and --json is off. */
int cli_progress_enabled(const cli_args *a);

/* Minimal JSON writer for one object on stdout. */
typedef struct cli_json { FILE *f; int first; int depth; } cli_json;
void cli_json_begin(cli_json *j, FILE *f);
void cli_json_num(cli_json *j, const char *key, double v);
void cli_json_int(cli_json *j, const char *key, long long v);
void cli_json_str(cli_json *j, const char *key, const char *v);
void cli_json_bool(cli_json *j, const char *key, int v);
void cli_json_raw(cli_json *j, const char *key, const char *raw); /* pre-rendered JSON value */
void cli_json_obj_begin(cli_json *j, const char *key);  /* nested object (key NULL in arrays) */
void cli_json_obj_end(cli_json *j);
void cli_json_arr_begin(cli_json *j, const char *key);
void cli_json_arr_end(cli_json *j);
void cli_json_end(cli_json *j);
void cli_json_escape(FILE *f, const char *s);

/* The environment (cli_env.c, the only reader of QKIT_FUSE, QKIT_SGEMM,
 * QKIT_PROFILE): init reads it once (main), apply sets the plan options it
 * asks for on a graph the CLI loaded or built, finish prints the profile
 * (QKIT_PROFILE) on stderr and frees it. cli_load_model = qk_onnx_load +
 * cli_env_apply. */
qk_status cli_env_init(void);
void cli_env_apply(struct qk_graph *g);
qk_status cli_load_model(const char *path, struct qk_graph **out);
void cli_env_finish(void);

/* Options every command shares. */
#define CLI_COMMON_OPTS \
    { "threads", "N", "worker threads (default: all cores)", 0 }, \
    { "json", NULL, "print one JSON object on stdout instead of text", 0 }, \
    { "verbose", NULL, "log more detail on stderr", 0 }, \
    { "help", NULL, "show this help", 0 }

#endif
