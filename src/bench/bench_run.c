/* qkit bench: the runner. Cells run in child processes (a crash is that
 * cell's "error" line, never the bench's), at most opts->jobs at once; each
 * appends its results line with one write() and fsync the moment it ends,
 * so an interrupted run loses only the cells that were running. */
#include "bench_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Append line + '\n' in one write, then fsync. */
static qk_status append_line(const char *path, const char *line, size_t n)
{
    char *buf = qk_malloc(n + 1);
    if (!buf)
        return qk_error(QK_ERR_NOMEM, "out of memory");
    memcpy(buf, line, n);
    buf[n] = '\n';
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    qk_status st = QK_OK;
    if (fd < 0)
        st = qk_error(QK_ERR_IO, "cannot open %s for appending: %s", path, strerror(errno));
    else {
        ssize_t w = write(fd, buf, n + 1);
        if (w != (ssize_t)(n + 1) || fsync(fd) != 0)
            st = qk_error(QK_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        if (close(fd) != 0 && st == QK_OK)
            st = qk_error(QK_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    }
    qk_free(buf);
    return st;
}

static qk_status prepare_dir(const char *dir)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return qk_error(QK_ERR_IO, "cannot create output directory %s: %s", dir, strerror(errno));
    struct stat s;
    if (stat(dir, &s) != 0 || !S_ISDIR(s.st_mode))
        return qk_error(QK_ERR_IO, "output %s is not a directory", dir);
    if (access(dir, W_OK | X_OK) != 0)
        return qk_error(QK_ERR_IO, "output directory %s is not writable: %s", dir, strerror(errno));
    return QK_OK;
}

typedef struct data_slot { const char *dir; qk_bench_data d; int loaded; } data_slot;

static const char *dir_key(const char *d) { return d ? d : ""; }

static qk_status load_data(data_slot *slots, int *n, const char *dir, const qk_bench_data **out)
{
    for (int i = 0; i < *n; i++)
        if (strcmp(dir_key(slots[i].dir), dir_key(dir)) == 0) {
            *out = &slots[i].d;
            return QK_OK;
        }
    data_slot *s = &slots[(*n)++];
    s->dir = dir;
    qk_status st = qk_dataset_load_dir(dir, "train", &s->d.train);
    if (st == QK_OK)
        st = qk_dataset_load_dir(dir, "t10k", &s->d.test);
    *out = &s->d;
    return st;
}

static void event(const qk_bench_opts *o, qk_bench_event_kind k, const qk_bench_cell *cell, const char *status,
                  int done, int total, int running, double t0, int ran, int to_run)
{
    if (!o->on_event)
        return;
    double el = qk_now() - t0;
    qk_bench_event e = { k, cell, status, done, total, running, el, ran > 0 ? el / ran * (to_run - ran) : -1 };
    o->on_event(o->user, &e);
}

/* The status word of the line a child wrote for cell (the last line with
 * its key), or "error" when there is none. */
static const char *written_status(const char *path, const char *key)
{
    qk_bench_results r;
    const char *st = "error";
    if (qk_bench_results_load(path, NULL, &r) != QK_OK)
        return st;
    for (int i = 0; i < r.n; i++)
        if (strcmp(r.rows[i].key, key) == 0)
            st = !strcmp(r.rows[i].status, "ok") ? "ok" : !strcmp(r.rows[i].status, "skipped") ? "skipped" : "error";
    qk_bench_results_free(&r);
    return st;
}

qk_status qk_bench_run(const qk_bench_config *c, const qk_bench_opts *o, qk_bench_summary *sum)
{
    memset(sum, 0, sizeof *sum);
    double t0 = qk_now();
    if (!o->out_dir)
        return qk_error(QK_ERR_ARG, "no output directory");
    qk_status st = prepare_dir(o->out_dir);
    if (st != QK_OK)
        return st;
    char path[1024], report[1024];
    snprintf(path, sizeof path, "%s/results.jsonl", o->out_dir);
    snprintf(report, sizeof report, "%s/report.html", o->out_dir);
    qk_bench_results prev = { 0 };
    struct stat fs;
    int have = stat(path, &fs) == 0 && fs.st_size > 0;
    if (have && !o->resume)
        return qk_error(QK_ERR_STATE, "%s exists: use --resume to continue it, or another --out", path);
    if (have && (st = qk_bench_results_load(path, c->name, &prev)) != QK_OK)
        return st;
    if (!have) {
        qk_sbuf h = { 0 };
        qk_sbuf_printf(&h, "{\"qkit_bench\":1,\"config\":");
        qk_sbuf_json_str(&h, c->name);
        qk_sbuf_printf(&h, "}");
        st = h.oom ? qk_error(QK_ERR_NOMEM, "out of memory") : append_line(path, h.s, h.n);
        qk_sbuf_free(&h);
        if (st != QK_OK)
            return st;
    }
    int jobs = o->jobs > 0 ? o->jobs : 1;
    int threads = o->threads > 0 ? o->threads : qk_cpu_count() / jobs;
    if (threads < 1)
        threads = 1;
    int *todo = qk_calloc((size_t)c->n_cells + 1, sizeof *todo);
    pid_t *pids = qk_calloc((size_t)jobs, sizeof *pids);
    int *slot_cell = qk_calloc((size_t)jobs, sizeof *slot_cell);
    data_slot *slots = qk_calloc((size_t)c->n_models + 1, sizeof *slots);
    int n_slots = 0, n_todo = 0;
    if (!todo || !pids || !slot_cell || !slots) {
        st = qk_error(QK_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < c->n_cells; i++) {
        const qk_bench_cell *cell = &c->cells[i];
        if (o->block && strcmp(o->block, cell->block) != 0)
            continue;
        sum->total++;
        int kept = 0;
        for (int k = 0; k < prev.n && !kept; k++)
            kept = !strcmp(prev.rows[k].key, cell->key) && prev.rows[k].hash == cell->hash &&
                   (!strcmp(prev.rows[k].status, "ok") || !strcmp(prev.rows[k].status, "skipped"));
        if (kept)
            sum->resumed++;
        else
            todo[n_todo++] = i;
    }
    if (sum->total == 0 && o->block) {
        st = qk_error(QK_ERR_NOTFOUND, "no cells in block '%s'", o->block);
        goto done;
    }
    /* data first, in the parent: children share it copy-on-write */
    for (int i = 0; i < n_todo; i++) {
        const qk_bench_data *d;
        if ((st = load_data(slots, &n_slots, c->models[c->cells[todo[i]].model].data, &d)) != QK_OK)
            goto done;
    }
    int next = 0, running = 0, ran = 0;
    while (next < n_todo || running > 0) {
        while (running < jobs && next < n_todo) {
            const qk_bench_cell *cell = &c->cells[todo[next]];
            const qk_bench_data *d = NULL;
            load_data(slots, &n_slots, c->models[cell->model].data, &d);
            fflush(NULL);
            pid_t pid = fork();
            if (pid < 0) {
                st = qk_error(QK_ERR_IO, "fork: %s", strerror(errno));
                goto wait_all;
            }
            if (pid == 0) {
                qk_sbuf line = { 0 };
                qk_bench_cell_run(c, cell, d, threads, &line);
                int rc = line.oom || append_line(path, line.s, line.n) != QK_OK ? 3 : 0;
                _exit(rc);
            }
            int k = 0;
            while (pids[k])
                k++;
            pids[k] = pid;
            slot_cell[k] = todo[next++];
            running++;
            event(o, QK_BENCH_CELL_START, cell, NULL, sum->resumed + ran, sum->total, running, t0, ran, n_todo);
        }
        int ws;
        pid_t pid = waitpid(-1, &ws, 0);
        if (pid < 0) {
            if (errno == EINTR)
                continue;
            st = qk_error(QK_ERR_IO, "waitpid: %s", strerror(errno));
            goto done;
        }
        int k = 0;
        while (k < jobs && pids[k] != pid)
            k++;
        if (k == jobs)
            continue;
        pids[k] = 0;
        running--;
        ran++;
        const qk_bench_cell *cell = &c->cells[slot_cell[k]];
        const char *status;
        if (WIFEXITED(ws) && WEXITSTATUS(ws) == 0) {
            status = written_status(path, cell->key);
        } else {
            char why[128];
            if (WIFSIGNALED(ws))
                snprintf(why, sizeof why, "the cell's process ended by signal %d (%s)", WTERMSIG(ws),
                         strsignal(WTERMSIG(ws)));
            else
                snprintf(why, sizeof why, "the cell's process could not write its line (exit %d)", WEXITSTATUS(ws));
            qk_sbuf line = { 0 };
            qk_bench_cell_line(c, cell, "error", why, &line);
            if (!line.oom)
                append_line(path, line.s, line.n);
            qk_sbuf_free(&line);
            status = "error";
        }
        sum->ran++;
        sum->ok += !strcmp(status, "ok");
        sum->skipped += !strcmp(status, "skipped");
        sum->errors += !strcmp(status, "error");
        event(o, QK_BENCH_CELL_DONE, cell, status, sum->resumed + ran, sum->total, running, t0, ran, n_todo);
    }
    {
        qk_bench_results r;
        qk_bench_metrics m;
        if ((st = qk_bench_results_load(path, c->name, &r)) == QK_OK) {
            if ((st = qk_bench_metrics_compute(&r, &m)) == QK_OK) {
                st = qk_bench_report_write(&r, &m, report);
                qk_bench_metrics_free(&m);
            }
            qk_bench_results_free(&r);
        }
    }
    goto done;
wait_all:
    for (int k = 0; k < jobs; k++)
        if (pids[k] > 0)
            waitpid(pids[k], NULL, 0);
done:
    for (int i = 0; i < n_slots; i++) {
        qk_dataset_free(&slots[i].d.train);
        qk_dataset_free(&slots[i].d.test);
    }
    qk_free(slots);
    qk_free(todo);
    qk_free(pids);
    qk_free(slot_cell);
    qk_bench_results_free(&prev);
    sum->seconds = qk_now() - t0;
    return st;
}
