/* End-to-end inference of the shipped models, quantized: qkit's integer
 * engine (qk_qrun) beside qkit's float path on the float model and ONNX
 * Runtime on the exported onnx-qlinear model (QLinearConv/QLinearMatMul).
 *
 *   build/bench/bench_int8_e2e [--models DIR] [--profiles a,b] [--repeat R]
 *                              [--seconds S] [--max-batch B] [--no-peer] [--no-torch]
 *
 * Per model (DIR/{lenet,resnet8,mobilenetv2s}.onnx, those present) and
 * profile (tensorrt, fbgemm, onnx-qlinear at W8A8): PTQ with the profile's
 * observers on the first 256 training images (library API, as `qkit ptq`),
 * the QDQ model written to /tmp, then
 *  - correctness first: on the first 512 test images the integer engine's
 *    predictions against fake quant (the QDQ graph in float), its logits
 *    identical for 1 and 2 threads and to the plain NCHW lowering without
 *    the runner's passes (==plain), and (with the peer) ONNX Runtime's
 *    predictions on the first 256 against the engine's;
 *  - throughput at batch 256 (images/s: qk_qrun_forward of 256 images, run
 *    max_batch at a time inside, default 64) and latency at batch 1 (ms),
 *    at 1 and 2 threads: of R rounds, each repeating the call for at least
 *    S seconds, the median;
 *  - float: the float model's qk_graph_forward at batch 256 and 1, same
 *    rounds (planned at 256 / 1);
 *  - peer: `node tools/ort_bench.js` (run from the repository root) when
 *    node and onnxruntime-node are installed, same threads, batch, rounds,
 *    its default optimizations, in its best form for the model: the QDQ file
 *    itself (ORT fuses Q/DQ pairs into its integer kernels) and, where the
 *    profile's quantization fits QLinearConv/QLinearMatMul, the exported
 *    QLinear model; the faster is compared and named ("qdq" / "qlinear");
 *  - second peer: PyTorch 1.13's own int8 (`bench/torch_peer.py bench-int8`:
 *    FX PTQ with the fbgemm qconfig on the model's weights, the onednn and
 *    fbgemm engines where built, NCHW and channels_last input, the fastest
 *    configuration) when /usr/bin/python3 imports torch; per model and
 *    threads (its quantization is its own, not the profile's).
 * The header names the CPU, the ISA level used and the measured peaks
 * (bench_machine.h). Prints a Markdown table; ratios are of figures
 * measured in this run. */
#include "qkit/registry.h"
#include "qkit/data.h"
#include "qkit/deploy.h"
#include "qkit/onnx.h"
#include "qkit/ops.h"
#include "qkit/ptq.h"
#include "qkit/qrun.h"
#include "qkit/train.h"

#include "bench_machine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BATCH 256
#define CHECK_N 512

static int repeat = 5, max_batch = 64, peer = 1, tpeer = 1;
static double seconds = 0.3;

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median over rounds of seconds per call of fn(ctx). */
typedef qk_status (*call_fn)(void *ctx);
static double time_calls(call_fn fn, void *ctx)
{
    double per[64];
    int R = repeat < 64 ? repeat : 64;
    for (int r = 0; r < R; r++) {
        int64_t runs = 0;
        double t0 = qk_now(), dt;
        do {
            if (fn(ctx) != QK_OK)
                return -1;
            runs++;
            dt = qk_now() - t0;
        } while (dt < seconds);
        per[r] = dt / (double)runs;
    }
    qsort(per, (size_t)R, sizeof *per, cmp_d);
    return per[R / 2];
}

typedef struct { qk_graph *g; int64_t n; const float *x; } fwd_ctx;
static qk_status float_call(void *v)
{
    fwd_ctx *c = v;
    qk_status st = qk_graph_set_batch(c->g, c->n);
    if (st == QK_OK) {
        memcpy(c->g->values[c->g->inputs[0]].t.data, c->x, (size_t)(c->n * 784) * sizeof(float));
        st = qk_graph_forward(c->g);
    }
    return st;
}

typedef struct { qk_qrun *r; int64_t n; const float *x; float *y; } q_ctx;
static qk_status q_call(void *v)
{
    q_ctx *c = v;
    return qk_qrun_forward(c->r, c->n, 1, 28, 28, c->x, c->y);
}

static int64_t argmax(const float *p, int64_t n)
{
    int64_t b = 0;
    for (int64_t i = 1; i < n; i++)
        if (p[i] > p[b])
            b = i;
    return b;
}

static int have_peer(void)
{
    return peer && system("node -e \"require('onnxruntime-node')\" >/dev/null 2>&1") == 0 &&
           access("tools/ort_bench.js", R_OK) == 0;
}

/* ORT figures for model at threads; 0 on success. */
static int ort_run(const char *model, int threads, const char *check, double *ips, double *ms, double *agree)
{
    char cmd[2048], line[1024];
    snprintf(cmd, sizeof cmd, "node tools/ort_bench.js '%s' --threads %d --batch %d --repeat %d --seconds %g%s%s",
             model, threads, BATCH, repeat, seconds, check ? " --check " : "", check ? check : "");
    FILE *p = popen(cmd, "r");
    if (!p)
        return 1;
    int ok = 0;
    *agree = -1;
    while (fgets(line, sizeof line, p)) {
        char *a = strstr(line, "\"images_per_s\":"), *b = strstr(line, "\"latency_ms\":"), *c = strstr(line, "\"agree\":");
        if (a && b) {
            ok = sscanf(a + 15, "%lf", ips) == 1 && sscanf(b + 13, "%lf", ms) == 1;
            if (c && sscanf(c + 8, "%lf", agree) != 1)
                *agree = -1;
        }
    }
    return pclose(p) != 0 || !ok;
}

static int have_torch(void)
{
    return tpeer && system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0 &&
           access("bench/torch_peer.py", R_OK) == 0;
}

/* PyTorch int8 images/s of arch (weights from path) at threads; cfg gets
 * "engine/layout"; 0 on success. */
static int torch_run(const char *arch, const char *path, int threads, double *ips, char *cfg, size_t ncfg)
{
    char cmd[2048], line[8192];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 bench/torch_peer.py bench-int8 --arch %s --onnx '%s' --threads %d --batch %d "
             "--repeat %d --seconds %g --json 2>/dev/null",
             arch, path, threads, BATCH, repeat, seconds);
    FILE *p = popen(cmd, "r");
    if (!p)
        return 1;
    int ok = 0;
    while (fgets(line, sizeof line, p)) {
        char *a = strstr(line, "\"images_per_s\":"), *e = strstr(line, "\"engine\": \""),
             *l = strstr(line, "\"layout\": \"");
        if (a && e && l) {
            ok = sscanf(a + 15, "%lf", ips) == 1;
            snprintf(cfg, ncfg, "%.*s/%.*s", (int)strcspn(e + 11, "\""), e + 11, (int)strcspn(l + 11, "\""), l + 11);
        }
    }
    return pclose(p) != 0 || !ok;
}

typedef struct row {
    const char *model, *profile;
    int threads;
    double f_ips, f_ms, q_ips, q_ms, o_ips, o_ms, t_ips;
    char t_cfg[32];
    const char *o_form;
    double agree_fake, agree_ort;
    int same_threads, same_plain;
} row;

static row rows[64];
static int nrows;

/* The runner's logits ya (fused epilogues, NHWC: qk_lower_fuse, qk_lower_layout)
 * against the plain NCHW lowering of the same file, bit for bit, on the first
 * CHECK_N images x (1 x 28 x 28 each). */
static int plain_same(const char *qpath, const float *x, const float *ya, int64_t K)
{
    enum { PB = 64 };
    qk_graph *q = NULL, *r = NULL;
    int same = qk_onnx_load(qpath, &q) == QK_OK && qk_qdq_lower(q, NULL, &r, NULL) == QK_OK &&
               qk_graph_plan(r, PB, 0, NULL) == QK_OK && qk_graph_set_batch(r, PB) == QK_OK;
    for (int64_t i = 0; i + PB <= CHECK_N && same; i += PB) {
        memcpy(r->values[r->inputs[0]].t.data, x + i * 784, (size_t)(PB * 784) * sizeof(float));
        same = qk_graph_forward(r) == QK_OK &&
               memcmp(r->values[r->outputs[0]].t.data, ya + i * K, (size_t)(PB * K) * sizeof(float)) == 0;
    }
    qk_graph_destroy(r);
    qk_graph_destroy(q);
    return same;
}

static void fail(const char *what)
{
    fprintf(stderr, "bench_int8_e2e: %s: %s\n", what, qk_last_error());
    exit(1);
}

int main(int argc, char **argv)
{
    const char *dir = "models", *profiles_arg = "tensorrt,fbgemm,onnx-qlinear";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--models") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--profiles") && i + 1 < argc)
            profiles_arg = argv[++i];
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc)
            repeat = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--max-batch") && i + 1 < argc)
            max_batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-peer"))
            peer = tpeer = 0;
        else if (!strcmp(argv[i], "--no-torch"))
            tpeer = 0;
        else {
            fprintf(stderr, "usage: bench_int8_e2e [--models DIR] [--profiles a,b] [--repeat R] [--seconds S] "
                            "[--max-batch B] [--no-peer] [--no-torch]\n");
            return 2;
        }
    }
    if (repeat < 1 || seconds <= 0 || max_batch < 1) {
        fprintf(stderr, "bench_int8_e2e: --repeat, --seconds and --max-batch must be positive\n");
        return 2;
    }
    qk_log_set_level(QK_LOG_WARN);
    int use_peer = have_peer(), use_torch = have_torch();
    bm_machine_print(stdout);
    qk_dataset test = { 0 }, train = { 0 };
    if (qk_dataset_load_dir(NULL, "t10k", &test) != QK_OK || qk_dataset_load_dir(NULL, "train", &train) != QK_OK)
        fail("dataset");
    qk_pool *pools[3] = { NULL, NULL, NULL };
    if (qk_pool_create(1, &pools[1]) != QK_OK || qk_pool_create(2, &pools[2]) != QK_OK)
        fail("pool");
    static const char *const models[] = { "lenet", "resnet8", "mobilenetv2s" };
    float *x = malloc((size_t)CHECK_N * 784 * sizeof(float)), *ya = malloc((size_t)CHECK_N * 64 * sizeof(float)),
          *yb = malloc((size_t)CHECK_N * 64 * sizeof(float));
    int64_t *lab = malloc((size_t)CHECK_N * sizeof(int64_t));
    int32_t *fake_pred = malloc((size_t)CHECK_N * sizeof(int32_t));
    if (!x || !ya || !yb || !lab || !fake_pred)
        return 1;
    printf("bench_int8_e2e: %d rounds of >= %.2f s, median; int8 engine max_batch %d; peers %s, %s\n", repeat,
           seconds, max_batch, use_peer ? "ONNX Runtime (onnxruntime-node)" : "no ORT",
           use_torch ? "PyTorch int8 (torch_peer.py bench-int8)" : "no PyTorch");
    for (int mi = 0; mi < 3; mi++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s.onnx", dir, models[mi]);
        struct stat sb;
        if (stat(path, &sb) != 0) {
            printf("(skipping %s: not found)\n", path);
            continue;
        }
        qk_graph *fg;
        qk_norm norm = qk_norm_default();
        if (qk_onnx_load(path, &fg) != QK_OK)
            fail(path);
        if (qk_graph_get_norm(fg, &norm.mean, &norm.std) == QK_ERR_FORMAT)
            fail("norm");
        qk_batcher bt;
        if (qk_batcher_init(&bt, &test, CHECK_N, 0, 0, norm, NULL) != QK_OK)
            fail("batcher");
        qk_batcher_epoch(&bt, 0);
        int64_t got;
        if (qk_batcher_get(&bt, 0, x, lab, &got) != QK_OK)
            fail("batch");
        qk_batcher_free(&bt);
        /* float figures at 1 and 2 threads */
        double f_ips[3], f_ms[3];
        if (qk_ops_bind(fg) != QK_OK)
            fail("bind");
        qk_plan_options po = fg->opts; /* as qkit eval runs it: batches in slices */
        for (int t = 1; t <= 2; t++) {
            fwd_ctx c = { fg, BATCH, x };
            po.slice = qk_slice_for_threads(t);
            qk_graph_set_options(fg, &po);
            if (qk_graph_plan(fg, BATCH, 0, pools[t]) != QK_OK)
                fail("plan");
            f_ips[t] = BATCH / time_calls(float_call, &c);
            c.n = 1;
            if (qk_graph_plan(fg, 1, 0, pools[t]) != QK_OK)
                fail("plan");
            f_ms[t] = 1e3 * time_calls(float_call, &c);
        }
        double t_ips[3] = { -1, -1, -1 };
        char t_cfg[3][32] = { "", "", "" };
        for (int t = 1; t <= 2 && use_torch; t++)
            if (torch_run(models[mi], path, t, &t_ips[t], t_cfg[t], sizeof t_cfg[t]) != 0)
                t_ips[t] = -1;
        for (const char *pp = profiles_arg; *pp;) {
            char prof[64];
            size_t len = strcspn(pp, ",");
            snprintf(prof, sizeof prof, "%.*s", (int)len, pp);
            pp += len + (pp[len] == ',');
            char qpath[600], edir[600], epath[700], ppath[600];
            snprintf(qpath, sizeof qpath, "/tmp/qkit_bench_e2e_%s_%s.onnx", models[mi], prof);
            snprintf(edir, sizeof edir, "/tmp/qkit_bench_e2e_%s_%s", models[mi], prof);
            snprintf(epath, sizeof epath, "%s/model_qlinear.onnx", edir);
            snprintf(ppath, sizeof ppath, "/tmp/qkit_bench_e2e_%s_%s.preds", models[mi], prof);
            /* PTQ (as `qkit ptq --calib 256`) */
            qk_graph *g2;
            qk_qmodel *qm;
            qk_ptq_config cfg;
            qk_ptq_config_default(&cfg);
            cfg.backend = qk_backend_find(prof);
            if (!cfg.backend)
                fail(prof);
            if (qk_onnx_load(path, &g2) != QK_OK || qk_ptq_prepare(g2, &cfg, &qm) != QK_OK ||
                qk_ptq_calibrate(qm, &train, norm, 256, pools[2], NULL, NULL) != QK_OK ||
                qk_ptq_save_qdq(qm, qpath) != QK_OK)
                fail("ptq");
            qk_eval_result er;
            qk_dataset view = qk_dataset_view(&test, 0, CHECK_N);
            if (qk_evaluate_preds(qk_qmodel_graph(qm), &view, norm, 256, pools[2], &er, fake_pred) != QK_OK)
                fail("fake eval");
            qk_qmodel_destroy(qm);
            qk_deploy_result dr;
            int have_export = use_peer && qk_deploy_export(qpath, "onnx-qlinear", edir, &dr) == QK_OK;
            /* correctness: engine vs fake, 1 vs 2 threads */
            qk_qrun *qr[3] = { NULL, NULL, NULL };
            qk_qrun_opts o;
            qk_qrun_opts_default(&o);
            o.max_batch = max_batch;
            for (int t = 1; t <= 2; t++) {
                o.pool = pools[t];
                if (qk_qrun_load(qpath, &o, &qr[t]) != QK_OK)
                    fail(qpath);
            }
            int64_t K = qk_qrun_classes(qr[1]);
            if (K > 64 || qk_qrun_forward(qr[1], CHECK_N, 1, 28, 28, x, ya) != QK_OK ||
                qk_qrun_forward(qr[2], CHECK_N, 1, 28, 28, x, yb) != QK_OK)
                fail("qrun forward");
            int same_threads = memcmp(ya, yb, (size_t)(CHECK_N * K) * sizeof(float)) == 0;
            int same_plain = plain_same(qpath, x, ya, K);
            if (!same_plain)
                fprintf(stderr, "bench_int8_e2e: %s %s: runner logits differ from the plain lowering\n", models[mi],
                        prof);
            int64_t agree = 0;
            FILE *pf = fopen(ppath, "w");
            for (int64_t i = 0; i < CHECK_N; i++) {
                int64_t p = argmax(ya + i * K, K);
                agree += p == fake_pred[i];
                if (pf)
                    fprintf(pf, "%lld\n", (long long)p);
            }
            if (pf)
                fclose(pf);
            if (!same_threads)
                fprintf(stderr, "bench_int8_e2e: %s %s: logits differ between 1 and 2 threads\n", models[mi], prof);
            for (int t = 1; t <= 2; t++) {
                row *w = &rows[nrows++];
                memset(w, 0, sizeof *w);
                w->model = models[mi], w->profile = qk_strdup(prof), w->threads = t;
                w->f_ips = f_ips[t], w->f_ms = f_ms[t];
                w->agree_fake = (double)agree / CHECK_N;
                w->same_threads = same_threads;
                w->same_plain = same_plain;
                q_ctx c = { qr[t], BATCH, x, ya };
                w->q_ips = BATCH / time_calls(q_call, &c);
                c.n = 1;
                w->q_ms = 1e3 * time_calls(q_call, &c);
                w->o_ips = w->o_ms = w->agree_ort = -1;
                w->t_ips = t_ips[t];
                snprintf(w->t_cfg, sizeof w->t_cfg, "%s", t_cfg[t]);
                w->o_form = "";
                if (use_peer) {
                    double ips, ms, ag;
                    if (ort_run(qpath, t, ppath, &ips, &ms, &ag) == 0)
                        w->o_ips = ips, w->o_ms = ms, w->agree_ort = ag, w->o_form = "qdq";
                    if (have_export && ort_run(epath, t, ppath, &ips, &ms, &ag) == 0 && ips > w->o_ips)
                        w->o_ips = ips, w->o_ms = ms, w->agree_ort = ag, w->o_form = "qlinear";
                }
                fprintf(stderr, "  %s %s t%d: float %.0f/s, int8 %.0f/s, ort %.0f/s, torch %.0f/s\n", models[mi],
                        prof, t, w->f_ips, w->q_ips, w->o_ips, w->t_ips);
            }
            qk_qrun_destroy(qr[1]);
            qk_qrun_destroy(qr[2]);
            if (nrows >= 60)
                break;
        }
        qk_graph_destroy(fg);
    }
    printf("\n| model | profile | threads | float img/s | int8 img/s | int8/float | ORT int8 img/s | int8/ORT "
           "| PyTorch int8 img/s | int8/PyTorch | float b1 ms | int8 b1 ms | ORT b1 ms | agree fake | agree ORT "
           "| 1T==2T | ==plain |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < nrows; i++) {
        const row *w = &rows[i];
        char o1[48] = "-", o2[32] = "-", o3[32] = "-", o4[32] = "-";
        if (w->o_ips > 0) {
            snprintf(o1, sizeof o1, "%.0f (%s)", w->o_ips, w->o_form);
            snprintf(o2, sizeof o2, "%.2fx", w->q_ips / w->o_ips);
            snprintf(o3, sizeof o3, "%.3f", w->o_ms);
        }
        if (w->agree_ort >= 0)
            snprintf(o4, sizeof o4, "%.1f%%", 100 * w->agree_ort);
        char t1[64] = "-", t2[32] = "-";
        if (w->t_ips > 0) {
            snprintf(t1, sizeof t1, "%.0f (%s)", w->t_ips, w->t_cfg);
            snprintf(t2, sizeof t2, "%.2fx", w->q_ips / w->t_ips);
        }
        printf("| %s | %s | %d | %.0f | %.0f | %.2fx | %s | %s | %s | %s | %.3f | %.3f | %s | %.1f%% | %s | %s | %s |\n",
               w->model, w->profile, w->threads, w->f_ips, w->q_ips, w->q_ips / w->f_ips, o1, o2, t1, t2, w->f_ms,
               w->q_ms, o3, 100 * w->agree_fake, o4, w->same_threads ? "yes" : "NO", w->same_plain ? "yes" : "NO");
    }
    qk_pool_destroy(pools[1]);
    qk_pool_destroy(pools[2]);
    qk_dataset_free(&test);
    qk_dataset_free(&train);
    free(x), free(ya), free(yb), free(lab), free(fake_pred);
    return 0;
}
