/* Faults: `qkit train`, `qkit qat` and `qkit ptq --out` / `qkit export`
 * killed with SIGKILL at random points leave every output either as it was
 * or complete, and a --resume from the checkpoint ends with the very bytes
 * of an uninterrupted run. A full disk (a 64 KiB tmpfs) and a read-only
 * directory give a clear error and keep the previous file (skipped, with a
 * note, where tmpfs cannot be mounted: not root). */
#include "qkit/onnx.h"
#include "qkit/registry.h"
#include "qkit/zoo.h"
#include "qt.h"
#include "cli_fx.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char tmp[256], data[400];

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long k = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)k + 1);
    *n = fread(b, 1, (size_t)k, f);
    fclose(f);
    return b;
}

static int same_file(const char *a, const char *b)
{
    size_t na = 0, nb = 0;
    unsigned char *x = slurp(a, &na), *y = slurp(b, &nb);
    int same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* Run "qkit ARGS" (sh -c, output discarded) and SIGKILL its process group
 * after `after` seconds; 1 if it was killed, 0 if it ended first. */
static int run_killed(double after, const char *args)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "exec %s %s >/dev/null 2>&1 </dev/null", qkit, args);
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    double t0 = now();
    int st;
    while (now() - t0 < after) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            return 0;
        usleep(1000);
    }
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return WIFSIGNALED(st);
}

/* An ONNX file qkit loads (a killed writer must never leave half of one). */
static int loads(const char *path)
{
    qk_graph *g = NULL;
    qk_status st = qk_onnx_load(path, &g);
    qk_graph_destroy(g);
    qk_clear_error();
    return st == QK_OK;
}

/* Kill a training command (train or qat) at random points, resume from its
 * checkpoint, and compare the result with the uninterrupted reference. */
static void kill_and_resume(const char *name, const char *base_args, int iters)
{
    char ref[600], o[600], ck[600], args[3000], cmd[800];
    snprintf(ref, sizeof ref, "%s/%s_ref.onnx", tmp, name);
    snprintf(ck, sizeof ck, "%s/%s_ref.ckpt", tmp, name);
    snprintf(args, sizeof args, "%s --out %s --checkpoint %s", base_args, ref, ck);
    double t = now();
    QT_CHECK(q("%s", args) == 0, "%s reference with checkpoint: %s", name, out);
    t = now() - t;
    for (int it = 0; it < iters; it++) {
        snprintf(o, sizeof o, "%s/%s_run.onnx", tmp, name);
        snprintf(ck, sizeof ck, "%s/%s_run.ckpt", tmp, name);
        snprintf(cmd, sizeof cmd, "rm -f %s/%s_run*", tmp, name);
        QT_CHECK(system(cmd) == 0, "rm");
        double at = t * (0.15 + 0.7 * (double)rand() / RAND_MAX);
        snprintf(args, sizeof args, "%s --out %s --checkpoint %s", base_args, o, ck);
        int killed = run_killed(at, args);
        QT_CHECK(!exists(o) || loads(o), "%s killed at %.2fs: %s is half written", name, at, o);
        if (exists(ck))
            snprintf(args, sizeof args, "%s --out %s --checkpoint %s --resume %s", base_args, o, ck, ck);
        int rc = q("%s", args);
        QT_CHECK(rc == 0, "%s resumed (killed %d at %.2fs, checkpoint %d): rc %d %s", name, killed, at, exists(ck),
                 rc, out);
        QT_CHECK(same_file(o, ref), "%s killed at %.2fs (%s), resumed: the model differs from the straight run",
                 name, at, killed ? "killed" : "had ended");
    }
}

/* Kill a writer of `target` (which holds a previous version) at random points. */
static void kill_writer(const char *what, const char *args_fmt, const char *target, int is_onnx, int iters)
{
    char prev[1200], fresh[1200], args[3000];
    snprintf(prev, sizeof prev, "%s.prev", target);
    snprintf(fresh, sizeof fresh, "%s.fresh", target);
    snprintf(args, sizeof args, args_fmt, fresh);
    double t0 = now();
    QT_CHECK(q("%s", args) == 0, "%s: %s", what, out);
    double t = now() - t0;
    for (int it = 0; it < iters; it++) {
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "cp %s %s && cp %s %s", prev, target, prev, target);
        QT_CHECK(system(cmd) == 0, "cp");
        snprintf(args, sizeof args, args_fmt, target);
        double at = t * (0.3 + 0.7 * (double)rand() / RAND_MAX);
        run_killed(at, args);
        int old = same_file(target, prev), neu = same_file(target, fresh);
        QT_CHECK(old || neu || (is_onnx && loads(target)), "%s killed at %.2fs: %s is neither the previous nor a "
                 "complete new file", what, at, target);
    }
}

int main(void)
{
    if (!cli_fx_init()) {
        QT_CHECK(0, "qkit binary %s not found (run from the repository root)", qkit);
        return qt_finish("test_faults");
    }
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    snprintf(tmp, sizeof tmp, "/tmp/qkit_faults_%d", (int)getpid());
    mkdir(tmp, 0755);
    snprintf(data, sizeof data, "%s/data", tmp);
    mkdir(data, 0755);
    char model[600], args[2000], prev[700];
    cli_fx_tiny_mnist(data, 256, 64);
    snprintf(model, sizeof model, "%s/resnet8.onnx", tmp);
    qk_graph *g;
    QT_OK(qk_zoo_build("resnet8", 2, &g));
    QT_OK(qk_onnx_save(g, model));
    qk_graph_destroy(g);

    /* training and QAT: kill, resume, same bytes */
    snprintf(args, sizeof args, "train --arch lenet --epochs 4 --batch 32 --data %s --threads 2", data);
    kill_and_resume("train", args, 3);
    char lenet[600];
    snprintf(lenet, sizeof lenet, "%s/lenet.onnx", tmp);
    QT_OK(qk_zoo_build("lenet", 2, &g));
    QT_OK(qk_onnx_save(g, lenet));
    qk_graph_destroy(g);
    snprintf(args, sizeof args, "qat --model %s --backend tensorrt --epochs 3 --batch 32 --calib 64 --data %s "
             "--threads 2 --limit 32", lenet, data);
    kill_and_resume("qat", args, 3);

    /* writers: ptq --out over an existing model, export over an existing directory */
    char target[600];
    snprintf(target, sizeof target, "%s/w.onnx", tmp);
    snprintf(prev, sizeof prev, "%s.prev", target);
    snprintf(args, sizeof args, "ptq --model %s --backend snpe --calib 32 --data %s --no-fp32 --limit 32 --out %s",
             model, data, prev);
    QT_CHECK(q("%s", args) == 0, "previous version: %s", out);
    snprintf(args, sizeof args, "ptq --model %s --backend tensorrt --calib 64 --data %s --no-fp32 --limit 32 --out %%s",
             model, data);
    kill_writer("ptq --out", args, target, 1, 3);

    /* a full disk and a read-only directory */
    char full[600];
    snprintf(full, sizeof full, "%s/full", tmp);
    mkdir(full, 0755);
    if (mount("tmpfs", full, "tmpfs", 0, "size=64k") != 0) {
        printf("note: tmpfs not mountable here (%s): full-disk checks skipped\n", strerror(errno));
    } else {
        char f[700], d[700];
        snprintf(f, sizeof f, "%s/m.onnx", full);
        FILE *pf = fopen(f, "w");
        fputs("previous contents", pf);
        fclose(pf);
        int rc = q("ptq --model %s --backend tensorrt --calib 32 --data %s --no-fp32 --limit 32 --out %s", model, data,
                   f);
        QT_CHECK(rc == 1 && has("No space left") && has("m.onnx"), "full disk, ptq: rc %d %s", rc, out);
        size_t n = 0;
        unsigned char *b = slurp(f, &n);
        QT_CHECK(b && n == 17 && memcmp(b, "previous contents", 17) == 0, "full disk: previous file intact");
        free(b);
        snprintf(args, sizeof args, "ls %s | grep -q tmp", full);
        QT_CHECK(system(args) != 0, "full disk: no temporary file left");
        rc = q("train --arch resnet8 --epochs 1 --epoch-steps 1 --batch 8 --data %s --out %s/t.onnx", data, full);
        QT_CHECK(rc == 1 && has("No space left"), "full disk, train: rc %d %s", rc, out);
        snprintf(d, sizeof d, "%s/exp", full);
        rc = q("export --model %s --out %s", prev, d);
        QT_CHECK(rc == 1 && has("No space left"), "full disk, export: rc %d %s", rc, out);
        /* read only */
        QT_CHECK(mount("tmpfs", full, "tmpfs", MS_REMOUNT | MS_RDONLY, "size=64k") == 0, "remount ro: %s",
                 strerror(errno));
        rc = q("ptq --model %s --backend tensorrt --calib 32 --data %s --no-fp32 --out %s", model, data, f);
        QT_CHECK(rc == 2 && has("Read-only"), "read-only dir, ptq: rc %d %s", rc, out);
        rc = q("export --model %s --out %s", prev, d);
        QT_CHECK(rc == 1 && has("Read-only"), "read-only dir, export: rc %d %s", rc, out);
        rc = q("train --arch lenet --epochs 1 --epoch-steps 1 --batch 8 --data %s --out %s/t.onnx", data, full);
        QT_CHECK(rc != 0 && has("Read-only"), "read-only dir, train: rc %d %s", rc, out);
        b = slurp(f, &n);
        QT_CHECK(b && n == 17 && memcmp(b, "previous contents", 17) == 0, "read-only: previous file intact");
        free(b);
        umount(full);
    }
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    QT_CHECK(system(cmd) == 0, "cleanup");
    return qt_finish("test_faults");
}
