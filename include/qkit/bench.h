/* qkit bench layer: the benchmark matrix (models x algorithms x backend
 * profiles x bit-widths x seeds) run under one pipeline, its results file,
 * the MQBench metrics (Li et al., "MQBench: Towards Reproducible and
 * Deployable Model Quantization Benchmark", NeurIPS 2021 Datasets and
 * Benchmarks) and a self-contained HTML report. `qkit bench` is this layer.
 *
 * Example (`make test` runs it):
 *
 *   const char *yaml = "name: demo\nmodels: [lenet]\nalgorithms: [minmax]\n"
 *                      "backends: [academic]\nbits: [W8A8, W1A8]\ncalib: 32\nlimit: 64\n";
 *   qk_bench_config *c;
 *   if (qk_bench_config_parse(yaml, strlen(yaml), "demo.yaml", ".", &c) != QK_OK) {
 *       fprintf(stderr, "%s\n", qk_last_error());
 *       return 1;
 *   }
 *   printf("%d cells, first %s\n", c->n_cells, c->cells[0].key);  // lenet/minmax/academic/W8A8/s1
 *   const qk_bench_algo *a = qk_bench_algo_find("lsq");           // a row of the table
 *   int ok = c->n_cells == 2 && a && a->kind == QK_BENCH_QAT;
 *   qk_bench_config_free(c);
 *   if (!ok)
 *       return 1;
 * (end of example)
 *
 * ---- The config (YAML, parsed with libyaml; unknown keys are errors) ----
 *   name: matrix              # results identity (default: the file's base name)
 *   calib: 256                # calibration images (PTQ; QAT's PTQ start)
 *   limit: 1000               # evaluate the first N test images (0: all 10000)
 *   seeds: [1]                # PTQ: calibration on training images
 *                             # [(seed-1)*calib, seed*calib); QAT: trainer seed
 *   models:                   # shipped names, or {name, path, data}
 *     - lenet
 *     - {name: mine, path: my.onnx, data: /dir/with/idx/files}
 *   algorithms:               # rows of the algorithm table, or {name, label,
 *     - ptq                   #   epochs, epoch_steps, lr, calib} for QAT knobs
 *     - {name: lsq, epochs: 1, epoch_steps: 20}
 *   backends: all             # or a list of profile names
 *   bits: [W8A8]              # "W<w>A<a>"
 *   matrix:                   # optional further blocks; each key it leaves out
 *     - name: low-bit         #   is the top level's (models, algorithms, seeds)
 *       backends: [academic]
 *       bits: [W4A4, W2A4]
 * The top level's backends/bits form block "main" when both are given.
 * Relative paths are relative to the config file's folder; a shipped name
 * is looked up as models/<name>.onnx in the working directory, then next to
 * the config (../models/). Cells are the product of each block, in order
 * model, algorithm, backend, bits, seed; a cell appearing twice runs once.
 *
 * ---- The results file DIR/results.jsonl (a contract) ----
 * Line 1: {"qkit_bench": 1, "config": NAME}. Then one JSON object per
 * finished cell, appended with one write() and fsync the moment the cell
 * ends: key ("model/label/backend/WwAa/sSEED"), hash (16 hex digits: the
 * cell's configuration, see qk_bench_cell), block, model, algo (label), row
 * (table name), kind ("ptq" | "qat"), backend, wbits, abits, seed, status
 * ("ok" | "skipped" | "error"), reason (skipped/error: the library's
 * message), fp32_top1, fake_top1 (fake quantization, float arithmetic),
 * real_top1 (the integer engine; null when the backend has no integer
 * pipeline, with real_reason), hw_gap (fake_top1 - real_top1), images,
 * calib, seconds, threads, cpu, qkit, commit; QAT cells also start_top1
 * (the PTQ start), epochs, epoch_steps and clips: per activation site
 * {site, start, learned} = the upper clip value s*(qmax-z) after
 * calibration and after training. A key may appear again (a re-run after a
 * configuration change); the last line wins. */
#ifndef QKIT_BENCH_H
#define QKIT_BENCH_H

#include "backend.h"
#include "ptq.h"
#include "qat.h"

#ifdef __cplusplus
extern "C" {
#endif

/* qkit's version ("0.1.0") and the git commit the library was built from
 * ("unknown" outside a checkout). */
const char *qk_bench_version(void);
const char *qk_bench_commit(void);

/* ---- the algorithm table ----
 * One row per runnable algorithm. A PTQ row is a qk_ptq_config recipe, a
 * QAT row a qk_qat_config recipe; the runner calls the row's functions and
 * knows nothing else about it, so a new method (a reconstruction PTQ, a new
 * QAT option) is one new row in src/bench/bench_algos.c. */
typedef enum qk_bench_kind { QK_BENCH_PTQ = 0, QK_BENCH_QAT = 1 } qk_bench_kind;

typedef struct qk_bench_algo {
    const char *name;
    qk_bench_kind kind;
    const char *summary;
    const char *a_observer;     /* PTQ: activation observer (NULL: the profile's) */
    int bias_correct;           /* PTQ: bias correction */
    int bit_alloc;              /* PTQ: QK_BITALLOC_* */
    int qat_algo;               /* QAT: a qk_qat_algo */
    /* Optional further settings (NULL: none); run after the fields above. */
    qk_status (*ptq_apply)(const struct qk_bench_algo *row, qk_ptq_config *c);
    qk_status (*qat_apply)(const struct qk_bench_algo *row, qk_qat_config *c);
    /* Optional: 0 and a reason (the cell is skipped) when the row cannot
     * run at these widths on this backend; the library's own refusals
     * (QK_ERR_UNSUPPORTED from prepare) are skips too. */
    int (*fits)(const struct qk_bench_algo *row, const qk_backend *b, int wbits, int abits, char *why, size_t n);
    int recon;                  /* PTQ: a qk_recon_method run after calibration (0: none) */
    int cle;                    /* PTQ: cross-layer equalization of the float model first */
    int mp;                     /* PTQ: per-layer weight widths by the mixed-precision search after calibration,
                                   mean weight width = the entry's budget (default: the cell's weight bits) */
} qk_bench_algo;

int qk_bench_algo_count(void);
const qk_bench_algo *qk_bench_algo_get(int i);
/* NULL with an error listing the names when unknown. */
const qk_bench_algo *qk_bench_algo_find(const char *name);

/* ---- the config ---- */
typedef struct qk_bench_model {
    char *name, *path;
    char *data;                 /* IDX dataset folder; NULL: Fashion-MNIST */
} qk_bench_model;

typedef struct qk_bench_entry { /* an algorithm as the config uses it */
    char *label;                /* unique in the config (default: the row's name) */
    const qk_bench_algo *row;
    int epochs;                 /* QAT; 0: the library's default */
    int64_t epoch_steps;        /* QAT; 0: full epochs */
    double lr;                  /* QAT; 0: the library's default */
    int64_t calib;              /* 0: the config's */
    int iters;                  /* reconstruction rows: iterations per layer or block; 0: the library's default */
    double budget;              /* mixed-precision rows: mean weight bits; 0: the cell's weight bits */
} qk_bench_entry;

typedef struct qk_bench_cell {
    int model, entry;           /* indices into the config's models / entries */
    const qk_backend *backend;
    int wbits, abits;
    uint64_t seed;
    char block[32];
    char key[192];
    /* FNV-1a 64 of everything that decides the cell's numbers: model file
     * bytes, data folder, row and entry settings, backend, widths, seed,
     * calib, limit and the qkit version. */
    uint64_t hash;
} qk_bench_cell;

typedef struct qk_bench_config {
    char *name, *path;
    int64_t calib, limit;
    int n_models, n_entries, n_cells;
    qk_bench_model *models;
    qk_bench_entry *entries;
    qk_bench_cell *cells;
} qk_bench_config;

/* Parse a config (text of len bytes; label names it in errors; base_dir
 * resolves relative paths). Errors: QK_ERR_FORMAT (YAML syntax, an unknown
 * or misplaced key, a bad value: the message names the key and its line),
 * QK_ERR_NOTFOUND (unknown model file, algorithm or backend), QK_ERR_IO. */
qk_status qk_bench_config_parse(const char *text, size_t len, const char *label, const char *base_dir,
                                qk_bench_config **out);
qk_status qk_bench_config_load(const char *path, qk_bench_config **out);
void qk_bench_config_free(qk_bench_config *c);

/* ---- running ---- */
typedef enum qk_bench_event_kind { QK_BENCH_CELL_START = 0, QK_BENCH_CELL_DONE = 1 } qk_bench_event_kind;

typedef struct qk_bench_event {
    qk_bench_event_kind kind;
    const qk_bench_cell *cell;
    const char *status;         /* CELL_DONE: "ok", "skipped", "error" */
    int done, total;            /* cells finished (resumed ones included) / all */
    int running;
    double elapsed, eta;        /* seconds; eta < 0 when unknown */
} qk_bench_event;

typedef struct qk_bench_opts {
    const char *out_dir;        /* required; created if missing */
    int resume;                 /* 1: keep finished cells of the same configuration */
    int jobs;                   /* cells at once (separate processes); default 1 */
    int threads;                /* threads per cell; 0: cores / jobs (at least 1) */
    const char *block;          /* only this block's cells (NULL: all) */
    void (*on_event)(void *user, const qk_bench_event *e);
    void *user;
} qk_bench_opts;

typedef struct qk_bench_summary {
    int total, resumed, ran, ok, skipped, errors;
    double seconds;
} qk_bench_summary;

/* Run the cells not done yet, each in a child process (a crash is that
 * cell's "error" line), appending to DIR/results.jsonl, then write
 * DIR/report.html. Errors: QK_ERR_IO (DIR cannot be created or written),
 * QK_ERR_STATE (results.jsonl exists and resume is 0; or it belongs to
 * another config: nothing is written), QK_ERR_FORMAT (a corrupt line,
 * named). Cells that fail are recorded, not returned. */
qk_status qk_bench_run(const qk_bench_config *c, const qk_bench_opts *o, qk_bench_summary *s);

/* ---- results and the MQBench metrics ---- */
typedef struct qk_bench_clip { char site[96]; double start, learned; } qk_bench_clip;

typedef struct qk_bench_row {
    char key[192], block[32], model[64], algo[64], row[48], kind[8], backend[32], status[12];
    char reason[256], real_reason[192], cpu[64], qkit[16], commit[24];
    uint64_t hash, seed;
    int wbits, abits, threads, line;
    double fp32, fake, real, gap, start; /* NAN when absent */
    double seconds;
    int64_t images;
    int n_clips;
    qk_bench_clip *clips;
} qk_bench_row;

typedef struct qk_bench_results {
    char config[128];
    int n;                      /* distinct keys, file order of their last line */
    qk_bench_row *rows;
} qk_bench_results;

/* Read DIR/results.jsonl-style file. config: the expected config name (NULL:
 * any). Errors: QK_ERR_IO, QK_ERR_FORMAT naming the line (not JSON, a
 * missing field, no header), QK_ERR_STATE (header of another config). */
qk_status qk_bench_results_load(const char *path, const char *config, qk_bench_results *out);
void qk_bench_results_free(qk_bench_results *r);

/* One aggregate: mean, population standard deviation, min and max of n
 * accuracies, or one gap. */
typedef struct qk_bench_stat {
    char algo[64], model[64], backend[32];
    int wbits, abits;
    double mean, std, min, max;
    int n;
} qk_bench_stat;

/* The metrics (accuracy = fake_top1, the simulated accuracy MQBench
 * reports, of "ok" cells; seeds averaged):
 *  hw_robust[]:   per algorithm, model, bits: mean and spread across the
 *                 hardware profiles (academic excluded): hardware robustness;
 *  arch_robust[]: per algorithm, backend, bits: across models:
 *                 architecture robustness;
 *  acad_gap[]:    per algorithm, model, backend, bits: accuracy on the
 *                 academic profile minus on that hardware profile (mean =
 *                 the gap): academic vs deployable;
 *  hw_gap[]:      per algorithm, model, backend, bits: fake - real top-1
 *                 (simulation vs the integer engine) where real exists. */
typedef struct qk_bench_metrics {
    int n_hw, n_arch, n_acad, n_gap;
    qk_bench_stat *hw_robust, *arch_robust, *acad_gap, *hw_gap;
} qk_bench_metrics;

qk_status qk_bench_metrics_compute(const qk_bench_results *r, qk_bench_metrics *m);
void qk_bench_metrics_free(qk_bench_metrics *m);

/* DIR/report.html: one self-contained file (inline SVG and CSS, no script,
 * no network): the matrix tables, accuracy against bit-width per algorithm,
 * a heat map of the hardware gap, per-backend bars, the metrics, and the
 * per-layer clip figures of QAT cells. Written atomically. */
qk_status qk_bench_report_write(const qk_bench_results *r, const qk_bench_metrics *m, const char *path);

#ifdef __cplusplus
}
#endif
#endif
