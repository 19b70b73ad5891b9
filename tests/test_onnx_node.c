/* ONNX node-test conformance runner over libonnx-testdata
 * (/usr/share/libonnx-testdata/data/node/test_*; override the directory
 * with QKIT_ONNX_NODE_DIR and pick tests with QKIT_ONNX_NODE_FILTER=substr).
 *
 * For each test directory: if any node's operator is not registered
 * (qk_op_find == NULL, or a non-default domain) the test is skipped and
 * counted as "not supported" for that operator. Otherwise model.onnx is
 * loaded with qk_onnx_load and every test_data_set_* is run with
 * qk_onnx_run_files twice: fast kernels on a 2-thread pool, and the plain
 * reference kernels serially. Outputs are compared with output_*.pb:
 *   - floats: |got - want| <= atol + rtol * |want| with rtol 1e-3 and
 *     atol 1e-5 (NaN matches NaN). ONNX's own backend tests use rtol 1e-3,
 *     atol 1e-7; atol 1e-7 is tighter than float32 rounding of sums near
 *     zero (the expected data come from numpy, often in float64, and qkit
 *     accumulates GEMM/conv sums in a different order with FMA), so results
 *     that cancel to ~1e-6 would fail for no real error;
 *   - integers (and bool as uint8): exactly.
 * A test that loads or runs with QK_ERR_UNSUPPORTED (a feature of a
 * supported operator qkit lacks) is reported as "unsupported variant",
 * never silently; the goal is zero of those. Every other failure is a test
 * failure naming the test and the worst mismatch.
 * Output: one "onnx-node: <Op> ran N, passed P" line per supported op type
 * (a test counts for every op type in its model) and a total line. */
#include "qt.h"
#include "qkit/registry.h"
#include "qkit/onnx.h"
#include "qkit/ops.h"
#include "onnx.pb-c.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NODE_DIR "/usr/share/libonnx-testdata/data/node"
#define RTOL 1e-3
#define ATOL 1e-5

typedef struct op_count {
    char name[64];
    int ran, passed, variant, skipped;
} op_count;

static op_count *counts;
static int n_counts;

static op_count *count_for(const char *op)
{
    for (int i = 0; i < n_counts; i++)
        if (strcmp(counts[i].name, op) == 0)
            return &counts[i];
    op_count *nc = realloc(counts, (size_t)(n_counts + 1) * sizeof *nc);
    if (!nc) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    counts = nc;
    memset(&counts[n_counts], 0, sizeof counts[0]);
    snprintf(counts[n_counts].name, sizeof counts[0].name, "%s", op);
    return &counts[n_counts++];
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
static int cmp_count(const void *a, const void *b)
{
    return strcmp(((const op_count *)a)->name, ((const op_count *)b)->name);
}

static int file_exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* Sorted names in dir starting with prefix; returns the count. */
static int list_dir(const char *dir, const char *prefix, char ***out)
{
    *out = NULL;
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0, cap = 0;
    char **names = NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0)
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            char **nn = realloc(names, (size_t)cap * sizeof *nn);
            if (!nn)
                exit(2);
            names = nn;
        }
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    if (n)
        qsort(names, (size_t)n, sizeof *names, cmp_str);
    *out = names;
    return n;
}

static void free_list(char **names, int n)
{
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* Distinct op types of the model; returns 0 if all are supported, else 1
 * (and counts the test as skipped for each unsupported op), -1 if the
 * model cannot be parsed. */
static int model_ops(const char *path, char ops[][64], int *n_ops, int max)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(len > 0 ? (size_t)len : 1);
    size_t got = buf ? fread(buf, 1, (size_t)len, f) : 0;
    fclose(f);
    Onnx__ModelProto *m = got == (size_t)len ? onnx__model_proto__unpack(NULL, got, buf) : NULL;
    free(buf);
    if (!m || !m->graph) {
        if (m)
            onnx__model_proto__free_unpacked(m, NULL);
        return -1;
    }
    *n_ops = 0;
    int unsupported = 0;
    for (size_t i = 0; i < m->graph->n_node; i++) {
        const Onnx__NodeProto *np = m->graph->node[i];
        const char *op = np->op_type ? np->op_type : "?";
        int dflt = !np->domain || !np->domain[0] || strcmp(np->domain, "ai.onnx") == 0;
        char key[64];
        snprintf(key, sizeof key, "%s%s%s", dflt ? "" : np->domain, dflt ? "" : ":", op);
        int seen = 0;
        for (int k = 0; k < *n_ops; k++)
            seen |= strcmp(ops[k], key) == 0;
        if (seen || *n_ops >= max)
            continue;
        snprintf(ops[(*n_ops)++], 64, "%s", key);
        if (!dflt || !qk_op_find(op))
            unsupported = 1;
    }
    if (unsupported)
        for (int k = 0; k < *n_ops; k++) {
            const char *colon = strchr(ops[k], ':');
            if (colon || !qk_op_find(ops[k]))
                count_for(ops[k])->skipped++;
        }
    onnx__model_proto__free_unpacked(m, NULL);
    return unsupported;
}

/* Compare got with want; on mismatch writes a description into msg. */
static int compare(const qk_tensor *got, const qk_tensor *want, char *msg, size_t n)
{
    char a[128], b[128];
    if (got->dtype != want->dtype) {
        snprintf(msg, n, "dtype %s, expected %s", qk_dtype_name(got->dtype), qk_dtype_name(want->dtype));
        return 0;
    }
    if (!qk_shape_equal(got, want) || got->ndim != want->ndim) {
        snprintf(msg, n, "shape %s, expected %s", qk_shape_str(got, a, sizeof a), qk_shape_str(want, b, sizeof b));
        return 0;
    }
    int64_t ne = qk_tensor_numel(want), bad = 0, worst = -1;
    double worst_ratio = 0, worst_err = 0;
    for (int64_t i = 0; i < ne; i++) {
        double g, w;
        switch (want->dtype) {
        case QK_F32: g = qk_f32(got)[i]; w = qk_f32(want)[i]; break;
        case QK_U8: g = ((uint8_t *)got->data)[i]; w = ((uint8_t *)want->data)[i]; break;
        case QK_I8: g = ((int8_t *)got->data)[i]; w = ((int8_t *)want->data)[i]; break;
        case QK_I32: g = ((int32_t *)got->data)[i]; w = ((int32_t *)want->data)[i]; break;
        default: g = (double)((int64_t *)got->data)[i]; w = (double)((int64_t *)want->data)[i]; break;
        }
        double err, ratio;
        if (want->dtype == QK_F32) {
            if (isnan(w) && isnan(g))
                continue;
            if (isinf(w) && g == w)
                continue;
            double tol = ATOL + RTOL * fabs(w);
            err = fabs(g - w);
            if (!(err <= tol)) {
                ratio = isnan(err) ? INFINITY : err / tol;
                bad++;
                if (worst < 0 || ratio > worst_ratio)
                    worst = i, worst_ratio = ratio, worst_err = err;
            }
        } else {
            int differ = want->dtype == QK_I64 ? ((int64_t *)got->data)[i] != ((int64_t *)want->data)[i] : g != w;
            if (differ) {
                err = fabs(g - w);
                bad++;
                if (worst < 0 || err > worst_err)
                    worst = i, worst_err = err;
            }
        }
    }
    if (!bad)
        return 1;
    double g, w;
    switch (want->dtype) {
    case QK_F32: g = qk_f32(got)[worst]; w = qk_f32(want)[worst]; break;
    case QK_U8: g = ((uint8_t *)got->data)[worst]; w = ((uint8_t *)want->data)[worst]; break;
    case QK_I8: g = ((int8_t *)got->data)[worst]; w = ((int8_t *)want->data)[worst]; break;
    case QK_I32: g = ((int32_t *)got->data)[worst]; w = ((int32_t *)want->data)[worst]; break;
    default: g = (double)((int64_t *)got->data)[worst]; w = (double)((int64_t *)want->data)[worst]; break;
    }
    snprintf(msg, n, "%lld of %lld elements differ; worst at flat index %lld: got %.9g, expected %.9g "
             "(abs err %.3g)", (long long)bad, (long long)ne, (long long)worst, g, w, worst_err);
    return 0;
}

enum { T_PASS, T_FAIL, T_VARIANT };

static int n_property;

/* A training-mode Dropout with ratio > 0 draws its mask from numpy's RNG,
 * which qkit cannot reproduce; check the defining property instead: every
 * y is 0 or x / (1 - ratio), the mask (if any) marks the kept ones, and the
 * dropped fraction lies within 5 sigma of ratio. Returns -1 when the test
 * is not of that kind, else 1 (pass) / 0 (fail, msg set). */
static int dropout_property(const qk_graph *g0, int n_in, const qk_tensor *in, int n_out,
                            const qk_tensor *out, char *msg, size_t n)
{
    (void)g0;
    if (g0->n_nodes != 1 || strcmp(g0->nodes[0].op_type, "Dropout") != 0 || n_in < 3 ||
        in[2].dtype != QK_U8 || !((uint8_t *)in[2].data)[0] || in[1].dtype != QK_F32)
        return -1;
    double r = qk_f32(&in[1])[0];
    if (r <= 0)
        return -1;
    double scale = 1.0 / (1.0 - r);
    const float *x = qk_f32(&in[0]), *y = qk_f32(&out[0]);
    const uint8_t *mask = n_out > 1 ? out[1].data : NULL;
    int64_t ne = qk_tensor_numel(&in[0]), dropped = 0;
    for (int64_t i = 0; i < ne; i++) {
        double kept_v = x[i] * scale;
        int kept = fabs(y[i] - kept_v) <= ATOL + RTOL * fabs(kept_v), zero = y[i] == 0;
        if (!kept && !zero) {
            snprintf(msg, n, "y[%lld] = %g is neither 0 nor x/(1-ratio) = %g", (long long)i, y[i], kept_v);
            return 0;
        }
        if (x[i] != 0 && mask && mask[i] != kept) {
            snprintf(msg, n, "mask[%lld] = %d but y[%lld] %s", (long long)i, mask[i], (long long)i,
                     kept ? "is kept" : "is dropped");
            return 0;
        }
        dropped += x[i] != 0 && !kept;
    }
    double mean = ne * r, sd = sqrt(ne * r * (1 - r));
    if (fabs(dropped - mean) > 5 * sd + 1) {
        snprintf(msg, n, "dropped %lld of %lld, expected about %.1f", (long long)dropped, (long long)ne, mean);
        return 0;
    }
    return 1;
}

/* Load the model and run one data set in one mode. */
static int run_set(const char *model, const char *test, const char *set_dir, const char *mode, qk_pool *pool)
{
    char path[1280];
    qk_graph *g;
    qk_status st = qk_onnx_load(model, &g);
    if (st == QK_ERR_UNSUPPORTED) {
        printf("onnx-node: unsupported variant %s: %s\n", test, qk_last_error());
        return T_VARIANT;
    }
    if (st != QK_OK) {
        QT_CHECK(0, "%s: load failed: %s: %s", test, qk_status_str(st), qk_last_error());
        return T_FAIL;
    }
    qk_graph_set_options(g, &(qk_plan_options){ .reference = strcmp(mode, "reference") == 0 });
    /* input_i.pb is the i-th graph input that is not an initializer. */
    qk_tensor in[64], run_in[64], want[64];
    int n_in = 0, n_want = 0, n_run = 0, n_out = 0, result = T_PASS;
    qk_tensor *outs = NULL;
    memset(in, 0, sizeof in);
    memset(want, 0, sizeof want);
    for (; n_in < 64; n_in++) {
        snprintf(path, sizeof path, "%s/input_%d.pb", set_dir, n_in);
        if (!file_exists(path))
            break;
        QT_OK(qk_onnx_load_tensor(path, &in[n_in], NULL));
    }
    for (; n_want < 64; n_want++) {
        snprintf(path, sizeof path, "%s/output_%d.pb", set_dir, n_want);
        if (!file_exists(path))
            break;
        QT_OK(qk_onnx_load_tensor(path, &want[n_want], NULL));
    }
    if (n_in != g->n_inputs) {
        QT_CHECK(0, "%s: %d input files for %d graph inputs", test, n_in, g->n_inputs);
        result = T_FAIL;
        goto done;
    }
    /* Shape inputs (Reshape shape, Slice starts, Resize scales, ...) are fed
     * as data like any input: qk_onnx_run reads small inputs while it plans. */
    for (int i = 0; i < n_in; i++)
        run_in[n_run++] = in[i];
    st = qk_onnx_run(g, n_run, run_in, pool, &n_out, &outs);
    if (st == QK_ERR_UNSUPPORTED) {
        printf("onnx-node: unsupported variant %s (%s): %s\n", test, mode, qk_last_error());
        result = T_VARIANT;
        goto done;
    }
    if (st != QK_OK) {
        QT_CHECK(0, "%s (%s): run failed: %s: %s", test, mode, qk_status_str(st), qk_last_error());
        result = T_FAIL;
        goto done;
    }
    if (n_out != n_want) {
        QT_CHECK(0, "%s (%s): %d outputs, expected %d", test, mode, n_out, n_want);
        result = T_FAIL;
        goto done;
    }
    char msg[512];
    int prop = dropout_property(g, n_in, in, n_out, outs, msg, sizeof msg);
    if (prop == 0) {
        QT_CHECK(0, "%s (%s): %s", test, mode, msg);
        result = T_FAIL;
    }
    for (int i = 0; i < n_out && prop < 0; i++)
        if (!compare(&outs[i], &want[i], msg, sizeof msg)) {
            QT_CHECK(0, "%s (%s): output %d '%s': %s", test, mode, i, g->values[g->outputs[i]].name, msg);
            result = T_FAIL;
        }
    if (result == T_PASS) {
        qt_pass++;
        if (mode[0] == 'f') {
            n_property += prop > 0;
            if (prop > 0)
                printf("onnx-node: note: %s checked by property (random dropout mask)\n", test);
        }
    }
done:
    qk_onnx_free_tensors(outs, n_out);
    for (int i = 0; i < n_in; i++)
        qk_tensor_free(&in[i]);
    for (int i = 0; i < n_want; i++)
        qk_tensor_free(&want[i]);
    qk_graph_destroy(g);
    return result;
}

static int run_test(const char *dir, const char *test, qk_pool *pool)
{
    char model[1024], sdir[1024];
    snprintf(model, sizeof model, "%s/%s/model.onnx", dir, test);
    snprintf(sdir, sizeof sdir, "%s/%s", dir, test);
    char **sets;
    int n_sets = list_dir(sdir, "test_data_set_", &sets);
    int result = T_PASS;
    if (n_sets <= 0) {
        QT_CHECK(0, "%s: no test_data_set_* directory", test);
        result = T_FAIL;
    }
    for (int mode = 0; mode < 2 && result == T_PASS; mode++) {
        for (int s = 0; s < n_sets && result == T_PASS; s++) {
            char set_dir[1200];
            snprintf(set_dir, sizeof set_dir, "%s/%s", sdir, sets[s]);
            result = run_set(model, test, set_dir, mode ? "reference" : "fast", mode ? NULL : pool);
        }
    }
    free_list(sets, n_sets > 0 ? n_sets : 0);
    return result;
}

int main(void)
{
    const char *dir = getenv("QKIT_ONNX_NODE_DIR");
    const char *filter = getenv("QKIT_ONNX_NODE_FILTER");
    if (!dir)
        dir = NODE_DIR;
    char **tests;
    int n_tests = list_dir(dir, "test_", &tests);
    if (n_tests <= 0) {
        QT_CHECK(0, "ONNX node test data not found in %s: run `apt-get install libonnx-testdata`", dir);
        free_list(tests, 0);
        return qt_finish("test_onnx_node");
    }
    qk_pool *pool = NULL;
    QT_OK(qk_pool_create(2, &pool));
    int ran = 0, passed = 0, variants = 0, skipped = 0;
    for (int t = 0; t < n_tests; t++) {
        if (filter && !strstr(tests[t], filter))
            continue;
        char path[1024], ops[32][64];
        int n_ops = 0;
        snprintf(path, sizeof path, "%s/%s/model.onnx", dir, tests[t]);
        int r = model_ops(path, ops, &n_ops, 32);
        if (r < 0) {
            QT_CHECK(0, "%s: cannot parse %s", tests[t], path);
            continue;
        }
        if (r > 0) {
            skipped++;
            continue;
        }
        int res = run_test(dir, tests[t], pool);
        for (int k = 0; k < n_ops; k++) {
            op_count *c = count_for(ops[k]);
            if (res == T_VARIANT) {
                c->variant++;
            } else {
                c->ran++;
                c->passed += res == T_PASS;
            }
        }
        variants += res == T_VARIANT;
        ran += res != T_VARIANT;
        passed += res == T_PASS;
    }
    qsort(counts, (size_t)n_counts, sizeof *counts, cmp_count);
    char line[8192];
    size_t k = 0;
    line[0] = 0;
    for (int i = 0; i < n_counts; i++) {
        const op_count *c = &counts[i];
        if (c->variant)
            printf("onnx-node: %s ran %d, passed %d, unsupported variant %d\n", c->name, c->ran,
                   c->passed, c->variant);
        else if (c->ran)
            printf("onnx-node: %s ran %d, passed %d\n", c->name, c->ran, c->passed);
        if (c->skipped && k < sizeof line - 80)
            k += (size_t)snprintf(line + k, sizeof line - k, " %s(%d)", c->name, c->skipped);
    }
    int n_unsup = 0;
    for (int i = 0; i < n_counts; i++)
        n_unsup += counts[i].skipped > 0;
    printf("onnx-node: total ran %d, passed %d, failed %d, unsupported variant %d; "
           "skipped %d tests using %d operators qkit does not support\n",
           ran, passed, ran - passed, variants, skipped, n_unsup);
    printf("onnx-node-skipped (not supported, tests):%s\n", line);
    QT_CHECK(ran + variants > 0, "no node test of a supported operator was found in %s", dir);
    free(counts);
    free_list(tests, n_tests);
    qk_pool_destroy(pool);
    return qt_finish("test_onnx_node");
}
