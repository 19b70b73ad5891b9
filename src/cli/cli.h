/* qkit command-line helpers: option tables, parsing, JSON output, errors.
 * The CLI holds no logic the library lacks: each command parses options,
 * calls the library and prints. */
#ifndef QKIT_CLI_H
#define QKIT_CLI_H

#include "qkit/base.h"

#include <stdio.h>

#define CLI_MAX_OPTS 96
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
/* An observer name (NULL: none given) against qk_observer_names(): 0, or the
 * usage error "--OPT 'NAME': unknown observer; valid: ..." and 2. */
int cli_observer_check(const char *cmd, const char *opt, const char *name);

/* Data options (cli_data.c), one definition for eval, ptq and qat. */
#define CLI_DATA_OPTS \
    { "data", "PATH", "data: an MNIST-format IDX directory (default " QK_FASHION_MNIST_DIR "), an image folder " \
      "(one subfolder per class; PNG/JPEG), a .npy file of images or a directory of .pb tensors", 0 }, \
    { "labels", "FILE.npy", "labels of .npy / .pb data (int64, int32 or uint8 [N])", 0 }, \
    { "layout", "NCHW|NHWC", "layout of .npy images (default NCHW)", 0 }, \
    { "resize", "N", "image folders: resize the shorter side to N (bilinear, as torchvision/PIL)", 0 }, \
    { "crop", "N", "image folders: centre crop N x N (after --resize)", 0 }, \
    { "mean", "X[,Y,Z]", "normalization mean on [0,1] pixels, one or per channel (default: the model's metadata, " \
      "else 0.2860)", 0 }, \
    { "std", "X[,Y,Z]", "normalization std, one or per channel (default: the model's metadata, else 0.3530)", 0 }, \
    { "scale", "X", "multiply the normalized input by X (255 with mean 0, std 1: raw pixels)", 0 }, \
    { "bgr", NULL, "feed the channels in BGR order", 0 }, \
    { "preprocess", "NAME", "imagenet (resize 256, crop 224, ImageNet mean/std) or none (mean 0, std 1)", 0 }

#include "qkit/data.h"
struct qk_graph;
typedef struct cli_data {
    qk_norm norm;       /* normalization to apply */
    qk_data_opts o;     /* loader options (c: the model's channels) */
    int explicit_prep;  /* a preprocessing flag was given: store it in a written model */
    int size_flags;     /* --resize / --crop / --preprocess imagenet given */
} cli_data;
/* Preprocessing for model g: its metadata, else the Fashion-MNIST default,
 * then --preprocess, then --mean/--std/--scale/--bgr/--resize/--crop/
 * --layout/--labels. Returns 0, 1 with *st set (bad metadata), or 2 (bad
 * option, printed). */
int cli_data_setup(const cli_args *a, const char *cmd, const struct qk_graph *g, cli_data *d, qk_status *st);
/* Load path (NULL: the Fashion-MNIST IDX directory; split for IDX) with
 * d's options; need_labels: unlabelled data is an error; limit > 0: the
 * first limit images. An image folder keeps decoding in the background
 * (unless QKIT_DECODE=eager): the library's readers wait for what they
 * read; a command has read all of it, or calls qk_dataset_wait on all of
 * it, before it writes a file, so that a damaged image still fails it
 * before anything is written. */
qk_status cli_data_load(const cli_data *d, const char *path, const char *split, int need_labels, int64_t limit,
                        qk_pool *pool, qk_dataset *ds);
/* Store explicit preprocessing flags in g's metadata (nothing otherwise). */
qk_status cli_data_store(const cli_data *d, struct qk_graph *g);
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
 * QKIT_PROFILE, QKIT_DECODE): init reads it once (main), apply sets the plan
 * options it asks for on a graph the CLI loaded or built, finish prints the
 * profile (QKIT_PROFILE) on stderr and frees it. cli_load_model =
 * qk_onnx_load + cli_env_apply. cli_env_background_decode: 0 when
 * QKIT_DECODE=eager (image folders decoded before the command goes on),
 * else 1 (decoded in the background, overlapping the compute). */
qk_status cli_env_init(void);
void cli_env_apply(struct qk_graph *g);
int cli_env_background_decode(void);
qk_status cli_load_model(const char *path, struct qk_graph **out);
void cli_env_finish(void);

/* Options every command shares. */
#define CLI_COMMON_OPTS \
    { "threads", "N", "worker threads (default: all cores)", 0 }, \
    { "json", NULL, "print one JSON object on stdout instead of text", 0 }, \
    { "verbose", NULL, "log more detail on stderr", 0 }, \
    { "help", NULL, "show this help", 0 }

/* Layer analysis output shared by `qkit analyze` and `qkit ptq --analyze`
 * (cmd_analyze.c): the ranking as text; the HTML page to a file (1 on error). */
struct qk_analysis;
void cli_analysis_print(const struct qk_analysis *an, int top, FILE *f);
int cli_analysis_write_html(const struct qk_analysis *an, const char *path, const char *title);

#endif
