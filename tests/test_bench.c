/* qkit bench: config errors, a tiny matrix (skips, reproducibility across
 * thread counts, jobs and reruns), resume, kill -9 and resume, bad results
 * files, an unwritable output directory. Runs the built qkit binary. */
#include "cli_fx.h"
#include "qt.h"
#include "qkit/bench.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

static void write_file(const char *name, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static char buf[1 << 18];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return strdup(buf);
}

static int count_lines(const char *path)
{
    char *s = slurp(path);
    int n = 0;
    for (char *p = s; p && *p; p++)
        n += *p == '\n';
    free(s);
    return n;
}

/* The accuracy fields of every cell line, in key order: "key fp32 fake real". */
static char *accuracies(const char *path)
{
    qk_bench_results r;
    static char out_[8192];
    out_[0] = 0;
    if (qk_bench_results_load(path, NULL, &r) != QK_OK)
        return strdup("(unreadable)");
    for (int pass = 0; pass < r.n; pass++) { /* selection by key: order-free */
        const qk_bench_row *best = NULL;
        for (int i = 0; i < r.n; i++) {
            char mark[200];
            snprintf(mark, sizeof mark, "%s ", r.rows[i].key);
            if (strstr(out_, mark))
                continue;
            if (!best || strcmp(r.rows[i].key, best->key) < 0)
                best = &r.rows[i];
        }
        snprintf(out_ + strlen(out_), sizeof out_ - strlen(out_), "%s %.17g %.17g %.17g %s\n", best->key, best->fp32,
                 best->fake, best->real, best->status);
    }
    qk_bench_results_free(&r);
    return strdup(out_);
}

static const char *tiny = "name: tiny\ncalib: 32\nlimit: 100\nmodels: [lenet]\nalgorithms: [ptq, kl]\n"
                          "backends: [tensorrt, academic, ppl-w8a16]\nbits: [W8A8]\n";

static void config_errors(void)
{
    write_file("k.yaml", "name: x\nmodels: [lenet]\nalgorithms: [ptq]\nbackends: [academic]\nbits: [W8A8]\nlimt: 5\n");
    QT_CHECK(q("bench --config %s/k.yaml --out %s/o", dir, dir) == 2 && has("unknown key 'limt'") && has("k.yaml:6"),
             "unknown top-level key: %s", out);
    write_file("k2.yaml", "models: [lenet]\nalgorithms:\n  - {name: lsq, epocs: 1}\nbackends: [academic]\nbits: [W8A8]\n");
    QT_CHECK(q("bench --config %s/k2.yaml --out %s/o", dir, dir) == 2 && has("unknown key 'epocs'") && has(":3:"),
             "unknown algorithm key: %s", out);
    write_file("m.yaml", "models: [alexnet]\nalgorithms: [ptq]\nbackends: [academic]\nbits: [W8A8]\n");
    QT_CHECK(q("bench --config %s/m.yaml --out %s/o", dir, dir) == 2 && has("unknown model 'alexnet'"),
             "unknown model: %s", out);
    write_file("a.yaml", "models: [lenet]\nalgorithms: [adaround2]\nbackends: [academic]\nbits: [W8A8]\n");
    QT_CHECK(q("bench --config %s/a.yaml --out %s/o", dir, dir) == 2 && has("unknown algorithm 'adaround2'"),
             "unknown algorithm: %s", out);
    write_file("b.yaml", "models: [lenet]\nalgorithms: [ptq]\nbackends: [tensorflow]\nbits: [W8A8]\n");
    QT_CHECK(q("bench --config %s/b.yaml --out %s/o", dir, dir) == 2 && has("tensorflow") && has("b.yaml:3"),
             "unknown backend: %s", out);
    write_file("y.yaml", "models: [lenet\nalgorithms: [ptq]\n");
    QT_CHECK(q("bench --config %s/y.yaml --out %s/o", dir, dir) == 2 && has("YAML"), "bad YAML: %s", out);
    write_file("w.yaml", "models: [lenet]\nalgorithms: [ptq]\nbackends: [academic]\nbits: [8bit]\n");
    QT_CHECK(q("bench --config %s/w.yaml --out %s/o", dir, dir) == 2 && has("W<bits>A<bits>"), "bad bits: %s", out);
    QT_CHECK(q("bench --config %s/k.yaml", dir) == 2 && has("--out"), "no --out: %s", out);
}

static void tiny_runs(void)
{
    write_file("tiny.yaml", tiny);
    char p1[512], p2[512], p3[512];
    snprintf(p1, sizeof p1, "%s/r1/results.jsonl", dir);
    snprintf(p2, sizeof p2, "%s/r2/results.jsonl", dir);
    snprintf(p3, sizeof p3, "%s/r3/results.jsonl", dir);
    QT_CHECK(q("bench --config %s/tiny.yaml --out %s/r1 --threads 1", dir, dir) == 0 && has("6 cells") &&
             has("4 ok, 2 skipped"), "tiny run: %s", out);
    char html[512];
    snprintf(html, sizeof html, "%s/r1/report.html", dir);
    QT_CHECK(exists(html), "report written");
    char *s = slurp(p1);
    QT_CHECK(s && strstr(s, "\"status\":\"skipped\"") && strstr(s, "ppl-w8a16") && strstr(s, "cannot do 8-bit"),
             "ppl-w8a16 W8A8 skipped with the reason");
    QT_CHECK(s && strstr(s, "\"real_top1\":0.") && strstr(s, "\"cpu\":") && strstr(s, "\"commit\":"),
             "fake/real/cpu/commit recorded");
    free(s);
    QT_CHECK(q("bench --config %s/tiny.yaml --out %s/r2 --threads 2 --jobs 2", dir, dir) == 0, "2 threads: %s", out);
    QT_CHECK(q("bench --config %s/tiny.yaml --out %s/r3 --threads 2", dir, dir) == 0, "rerun: %s", out);
    char *a1 = accuracies(p1), *a2 = accuracies(p2), *a3 = accuracies(p3);
    QT_CHECK(strcmp(a1, a2) == 0, "1 thread vs 2 threads x 2 jobs: bit-identical accuracies\n%s---\n%s", a1, a2);
    QT_CHECK(strcmp(a1, a3) == 0, "rerun: bit-identical accuracies");
    free(a1);
    free(a2);
    free(a3);
    /* the same dir again: refused without --resume, nothing touched */
    int before = count_lines(p1);
    QT_CHECK(q("bench --config %s/tiny.yaml --out %s/r1", dir, dir) == 2 && has("--resume"), "exists: %s", out);
    QT_CHECK(q("bench --config %s/tiny.yaml --out %s/r1 --resume", dir, dir) == 0 && has("6 resumed, 0 ran"),
             "resume skips done cells: %s", out);
    QT_CHECK(count_lines(p1) == before, "resume appended nothing");
    /* a changed configuration re-runs the cells */
    write_file("tiny.yaml", "name: tiny\ncalib: 32\nlimit: 60\nmodels: [lenet]\nalgorithms: [ptq, kl]\n"
               "backends: [tensorrt, academic, ppl-w8a16]\nbits: [W8A8]\n");
    QT_CHECK(q("bench --config %s/tiny.yaml --out %s/r1 --resume", dir, dir) == 0 && has("0 resumed, 6 ran"),
             "changed config re-runs: %s", out);
    write_file("tiny.yaml", tiny);
    /* another config's results */
    write_file("other.yaml", "name: other\nmodels: [lenet]\nalgorithms: [ptq]\nbackends: [academic]\nbits: [W8A8]\n");
    before = count_lines(p1);
    QT_CHECK(q("bench --config %s/other.yaml --out %s/r1 --resume", dir, dir) == 2 && has("results.jsonl:1") &&
             has("'tiny'"), "other config: %s", out);
    QT_CHECK(count_lines(p1) == before, "other config: nothing written");
    /* a corrupt line */
    FILE *f = fopen(p2, "a");
    if (f) {
        fputs("{\"key\": \"lenet/ptq\", oops\n", f);
        fclose(f);
    }
    before = count_lines(p2);
    QT_CHECK(q("bench --config %s/tiny.yaml --out %s/r2 --resume", dir, dir) == 1 && has("results.jsonl:8") &&
             has("corrupt"), "corrupt line named: %s", out);
    QT_CHECK(count_lines(p2) == before, "corrupt: nothing written");
    /* unwritable output directory */
    QT_CHECK(q("bench --config %s/tiny.yaml --out %s/tiny.yaml/sub", dir, dir) == 1 && has("cannot create output"),
             "unwritable out: %s", out);
}

/* kill -9 in the middle, then --resume finishes with every cell once. */
static void kill_resume(void)
{
    write_file("kill.yaml", "name: kill\ncalib: 32\nlimit: 100\nmodels: [lenet]\nalgorithms: [ptq, minmax, kl]\n"
               "backends: [tensorrt, academic]\nbits: [W8A8]\n");
    char cfg[512], od[512], res[512];
    snprintf(cfg, sizeof cfg, "%s/kill.yaml", dir);
    snprintf(od, sizeof od, "%s/rk", dir);
    snprintf(res, sizeof res, "%s/rk/results.jsonl", dir);
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        freopen("/dev/null", "w", stdout);
        freopen("/dev/null", "w", stderr);
        execl(qkit, qkit, "bench", "--config", cfg, "--out", od, "--threads", "1", (char *)NULL);
        _exit(127);
    }
    int waited = 0;
    while (count_lines(res) < 3 && waited < 2400) { /* header + 2 cells (up to 2 min on a loaded machine) */
        usleep(50000);
        waited++;
    }
    kill(-pid, SIGKILL);
    waitpid(pid, NULL, 0);
    int lines = count_lines(res);
    QT_CHECK(lines >= 3 && lines < 8, "killed part way (%d lines)", lines);
    QT_CHECK(q("bench --config %s --out %s --resume --threads 1", cfg, od) == 0 && has("6 cells"), "resume: %s", out);
    qk_bench_results r;
    QT_OK(qk_bench_results_load(res, "kill", &r));
    int ok = 0;
    for (int i = 0; i < r.n; i++)
        ok += !strcmp(r.rows[i].status, "ok");
    QT_CHECK(r.n == 6 && ok == 6, "every cell once and ok (%d rows, %d ok)", r.n, ok);
    QT_CHECK(count_lines(res) <= 1 + 6 + 1, "at most the running cell re-ran (%d lines)", count_lines(res));
    qk_bench_results_free(&r);
}

/* Reconstruction and equalization rows (the algorithm table's PTQ variants): they run, differ
 * from plain PTQ where they should, are reproducible for 1 and 2 threads, and `iters` is theirs. */
static void recon_rows(void)
{
    write_file("rec.yaml", "name: rec\ncalib: 32\nlimit: 100\nmodels: [lenet]\n"
               "algorithms: [ptq, cle, {name: adaround, iters: 4}, {name: qdrop, iters: 2}, {name: mp, budget: 5}]\n"
               "backends: [academic]\nbits: [W4A4]\n");
    char p1[512], p2[512];
    snprintf(p1, sizeof p1, "%s/rec1/results.jsonl", dir);
    snprintf(p2, sizeof p2, "%s/rec2/results.jsonl", dir);
    QT_CHECK(q("bench --config %s/rec.yaml --out %s/rec1 --threads 1", dir, dir) == 0 && has("5 ok"),
             "reconstruction rows: %s", out);
    QT_CHECK(q("bench --config %s/rec.yaml --out %s/rec2 --threads 2", dir, dir) == 0, "2 threads: %s", out);
    char *a1 = accuracies(p1), *a2 = accuracies(p2);
    QT_CHECK(strcmp(a1, a2) == 0, "reconstruction rows, 1 vs 2 threads: bit-identical accuracies\n%s---\n%s", a1, a2);
    QT_CHECK(strstr(a1, "/adaround/") && strstr(a1, "/qdrop/") && strstr(a1, "/cle/") && strstr(a1, "/mp/"),
             "rows recorded:\n%s", a1);
    free(a1);
    free(a2);
    write_file("rec2.yaml", "models: [lenet]\nalgorithms: [{name: kl, iters: 5}]\nbackends: [academic]\nbits: [W8A8]\n");
    QT_CHECK(q("bench --config %s/rec2.yaml --out %s/o", dir, dir) == 2 && has("iters applies to reconstruction"),
             "iters on a non-reconstruction row: %s", out);
    /* mixed precision: skipped (with the library's reason) on a profile with one weight width or a
     * budget below its lowest; `budget` is the mp row's own key */
    write_file("mp.yaml", "models: [lenet]\ncalib: 32\nlimit: 50\nalgorithms: [{name: mp, budget: 5}, "
               "{name: mp, label: mp1, budget: 1}]\nbackends: [academic, tensorrt, tvm]\nbits: [W8A8]\n");
    QT_CHECK(q("bench --config %s/mp.yaml --out %s/mp --threads 1", dir, dir) == 0 && has("2 ok") &&
                 has("4 skipped"), "mp cells (tvm: its default bias correction gives way): %s", out);
    char pm[512];
    snprintf(pm, sizeof pm, "%s/mp/results.jsonl", dir);
    char *rm = slurp(pm);
    QT_CHECK(rm && strstr(rm, "allows only 8-bit weights") && strstr(rm, "below the lowest width"),
             "skip reasons recorded:\n%s", rm ? rm : "(none)");
    free(rm);
    write_file("mp2.yaml", "models: [lenet]\nalgorithms: [{name: ptq, budget: 4}]\nbackends: [academic]\nbits: [W8A8]\n");
    QT_CHECK(q("bench --config %s/mp2.yaml --out %s/o", dir, dir) == 2 && has("budget applies to the mixed"),
             "budget on a non-mp row: %s", out);
}

int main(void)
{
    if (!cli_fx_init()) {
        printf("test_bench: qkit binary missing\n");
        return qt_finish("test_bench");
    }
    snprintf(dir, sizeof dir, "/tmp/qkit_test_bench_%d", (int)getpid());
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", dir, dir);
    if (system(cmd) != 0)
        return 1;
    config_errors();
    tiny_runs();
    recon_rows();
    kill_resume();
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (!qt_fail && system(cmd) != 0)
        return 1;
    return qt_finish("test_bench");
}
