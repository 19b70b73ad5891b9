/* qkit bench: run the benchmark matrix of a config (bench.h), append each
 * cell to DIR/results.jsonl, print the MQBench metrics, write report.html. */
#include "cli.h"
#include "qkit/bench.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

static const cli_opt opts[] = {
    { "config", "FILE", "benchmark config (YAML; bench/matrix.yaml is the default matrix)", 0 },
    { "out", "DIR", "output directory: results.jsonl and report.html (created if missing)", 0 },
    { "resume", NULL, "keep the cells DIR/results.jsonl already has with the same configuration", 0 },
    { "jobs", "N", "cells run at once, each in its own process (default 1)", 0 },
    { "block", "NAME", "run only this block of the config (e.g. main)", 0 },
    { "list", NULL, "print the cells and stop", 0 },
    { "report", NULL, "only rebuild DIR/report.html (and print the metrics) from DIR/results.jsonl", 0 },
    { "threads", "N", "threads per cell (default: cores / jobs)", 0 },
    { "json", NULL, "print one JSON object (summary and metrics) on stdout", 0 },
    { "verbose", NULL, "print one line per finished cell", 0 },
    { "help", NULL, "show this help", 0 },
    { NULL, NULL, NULL, 0 }
};

typedef struct prog { int tty, verbose; } prog;

static void clock_str(double s, char *b, size_t n)
{
    if (s < 0) {
        snprintf(b, n, "--:--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(b, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(b, n, "%02ld:%02ld", t / 60, t % 60);
}

static void on_event(void *user, const qk_bench_event *e)
{
    const prog *p = user;
    char el[32], eta[32];
    clock_str(e->elapsed, el, sizeof el);
    clock_str(e->eta, eta, sizeof eta);
    if (p->tty) {
        fprintf(stderr, "\r\033[K[%d/%d] %s %s | %d running | %s elapsed | ETA %s", e->done, e->total,
                e->kind == QK_BENCH_CELL_START ? "running" : e->status, e->cell->key, e->running, el, eta);
        fflush(stderr);
    }
    if (p->verbose && e->kind == QK_BENCH_CELL_DONE)
        fprintf(stderr, "%s[%d/%d] %s %s (%s)\n", p->tty ? "\r\033[K" : "", e->done, e->total, e->status,
                e->cell->key, el);
}

static void print_stats(const char *title, const qk_bench_stat *s, int n, int gap)
{
    if (!n)
        return;
    printf("%s\n", title);
    for (int i = 0; i < n; i++)
        printf("  %-14s %-12s %-12s W%dA%d  %s %6.2f  std %5.2f  [%6.2f, %6.2f]  n %d\n", s[i].algo,
               s[i].model[0] ? s[i].model : "(models)", s[i].backend[0] ? s[i].backend : "(hardware)", s[i].wbits,
               s[i].abits, gap ? "gap" : "top-1", 100 * s[i].mean, 100 * s[i].std, 100 * s[i].min, 100 * s[i].max,
               s[i].n);
}

static void json_stats(cli_json *j, const char *key, const qk_bench_stat *s, int n)
{
    cli_json_arr_begin(j, key);
    for (int i = 0; i < n; i++) {
        cli_json_obj_begin(j, NULL);
        cli_json_str(j, "algo", s[i].algo);
        if (s[i].model[0])
            cli_json_str(j, "model", s[i].model);
        if (s[i].backend[0])
            cli_json_str(j, "backend", s[i].backend);
        cli_json_int(j, "wbits", s[i].wbits);
        cli_json_int(j, "abits", s[i].abits);
        cli_json_num(j, "mean", s[i].mean);
        cli_json_num(j, "std", s[i].std);
        cli_json_num(j, "min", s[i].min);
        cli_json_num(j, "max", s[i].max);
        cli_json_int(j, "n", s[i].n);
        cli_json_obj_end(j);
    }
    cli_json_arr_end(j);
}

static int run(cli_args *a)
{
    const char *cfg = cli_get(a, "config"), *dir = cli_get(a, "out");
    int report_only = cli_flag(a, "report"), json = cli_flag(a, "json");
    if (!dir && !cli_flag(a, "list"))
        return cli_usage_error("bench", "--out DIR is required");
    if (!cfg && !report_only)
        return cli_usage_error("bench", "--config FILE is required");
    long long jobs, threads;
    if (cli_int(a, "jobs", 1, 1, 256, &jobs) || cli_int(a, "threads", 0, 1, 1024, &threads))
        return 2;
    qk_bench_config *c = NULL;
    qk_status st;
    if (cfg && (st = qk_bench_config_load(cfg, &c)) != QK_OK) {
        fprintf(stderr, "qkit bench: %s\n", qk_last_error());
        return st == QK_ERR_NOMEM ? 1 : 2;
    }
    int rc = 0;
    if (cli_flag(a, "list")) {
        for (int i = 0; i < c->n_cells; i++)
            printf("%-8s %s\n", c->cells[i].block, c->cells[i].key);
        printf("%d cells\n", c->n_cells);
        goto done;
    }
    qk_bench_summary s = { 0 };
    if (!report_only) {
        prog p = { isatty(STDERR_FILENO) && !json, cli_flag(a, "verbose") };
        qk_bench_opts o = { dir, cli_flag(a, "resume"), (int)jobs, (int)threads, cli_get(a, "block"), on_event, &p };
        st = qk_bench_run(c, &o, &s);
        if (p.tty)
            fprintf(stderr, "\r\033[K");
        if (st != QK_OK) {
            fprintf(stderr, "qkit bench: %s\n", qk_last_error());
            rc = st == QK_ERR_STATE || st == QK_ERR_NOTFOUND ? 2 : 1;
            goto done;
        }
    }
    char path[1024], html[1024];
    snprintf(path, sizeof path, "%s/results.jsonl", dir);
    snprintf(html, sizeof html, "%s/report.html", dir);
    qk_bench_results r;
    qk_bench_metrics m;
    if ((st = qk_bench_results_load(path, c ? c->name : NULL, &r)) != QK_OK) {
        fprintf(stderr, "qkit bench: %s\n", qk_last_error());
        rc = st == QK_ERR_STATE ? 2 : 1;
        goto done;
    }
    if ((st = qk_bench_metrics_compute(&r, &m)) == QK_OK) {
        if (report_only && (st = qk_bench_report_write(&r, &m, html)) != QK_OK)
            fprintf(stderr, "qkit bench: %s\n", qk_last_error());
        if (json) {
            cli_json j;
            cli_json_begin(&j, stdout);
            cli_json_str(&j, "config", r.config);
            cli_json_str(&j, "results", path);
            cli_json_str(&j, "report", html);
            cli_json_int(&j, "cells", r.n);
            if (!report_only) {
                cli_json_int(&j, "ran", s.ran);
                cli_json_int(&j, "resumed", s.resumed);
                cli_json_int(&j, "ok", s.ok);
                cli_json_int(&j, "skipped", s.skipped);
                cli_json_int(&j, "errors", s.errors);
                cli_json_num(&j, "seconds", s.seconds);
            }
            json_stats(&j, "hw_robustness", m.hw_robust, m.n_hw);
            json_stats(&j, "arch_robustness", m.arch_robust, m.n_arch);
            json_stats(&j, "academic_gap", m.acad_gap, m.n_acad);
            json_stats(&j, "hw_gap", m.hw_gap, m.n_gap);
            cli_json_end(&j);
        } else {
            if (!report_only)
                printf("%d cells: %d resumed, %d ran (%d ok, %d skipped, %d errors) in %.1f s\n", s.total,
                       s.resumed, s.ran, s.ok, s.skipped, s.errors, s.seconds);
            print_stats("hardware robustness (fake top-1 across hardware profiles, %):", m.hw_robust, m.n_hw, 0);
            print_stats("architecture robustness (fake top-1 across models, %):", m.arch_robust, m.n_arch, 0);
            print_stats("academic - deployable (points):", m.acad_gap, m.n_acad, 1);
            printf("wrote %s and %s\n", path, html);
        }
        qk_bench_metrics_free(&m);
    }
    if (st != QK_OK)
        rc = 1;
    qk_bench_results_free(&r);
done:
    qk_bench_config_free(c);
    return rc;
}

const cli_cmd cli_cmd_bench = {
    "bench", "the benchmark matrix: models x algorithms x backends x bits, MQBench metrics, HTML report",
    "--config FILE --out DIR [--resume] [--jobs N] [--json]",
    "Each cell (model, algorithm, backend profile, bit-widths, seed) runs FP32,\n"
    "the algorithm (PTQ or QAT) with fake quantization, and the integer engine,\n"
    "and appends one line to DIR/results.jsonl the moment it ends (fsynced);\n"
    "--resume skips cells already there with the same configuration hash, so an\n"
    "interrupted run loses only the cells that were running. Cells whose\n"
    "algorithm does not fit the backend are recorded as skipped with the reason.\n"
    "DIR/report.html is one self-contained page (inline SVG, no script).\n"
    "Exit status: 0 done (failed cells are recorded, not fatal), 1 I/O or\n"
    "results errors, 2 bad usage or config.",
    opts, run
};
