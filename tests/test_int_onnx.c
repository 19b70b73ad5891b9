/* The ONNX integer operators on their node tests (libonnx-testdata:
 * test_qlinearconv, test_qlinearmatmul_2D/3D, test_convinteger_*,
 * test_matmulinteger), bit-exact, in every variant qkit has:
 *   - inputs as the test gives them (weights re-packed every run), and with
 *     every input but the first frozen into an initializer (packed once at
 *     plan);
 *   - fast kernels on 1 and 2 threads, and the plain reference;
 *   - every requantization mode (the expected data lie far from rounding
 *     ties, so ONNX Runtime's fp32/RNE, gemmlowp, single rounding all match;
 *     the power-of-two shift mode is only checked on integer-output ops).
 * Skipped with a note when the test data are not installed. */
#include "qkit/registry.h"
#include "qkit/int.h"
#include "qkit/onnx.h"
#include "qkit/ops.h"
#include "qt.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define NODE_DIR "/usr/share/libonnx-testdata/data/node"

static const char *tests[] = {"test_qlinearconv", "test_qlinearmatmul_2D", "test_qlinearmatmul_3D",
                              "test_convinteger_with_padding", "test_convinteger_without_padding",
                              "test_basic_convinteger", "test_matmulinteger"};

static int load_set(const char *dir, const char *kind, qk_tensor *t, int max)
{
    int n = 0;
    for (; n < max; n++) {
        char p[512];
        snprintf(p, sizeof p, "%s/test_data_set_0/%s_%d.pb", dir, kind, n);
        struct stat sb;
        if (stat(p, &sb) != 0)
            break;
        if (qk_onnx_load_tensor(p, &t[n], NULL) != QK_OK)
            return -1;
    }
    return n;
}

static void run_variant(const char *name, const char *dir, int freeze, qk_pool *pool, int ref, qk_rq_mode mode)
{
    qk_tensor in[10], want[2];
    memset(in, 0, sizeof in);
    memset(want, 0, sizeof want);
    int nin = load_set(dir, "input", in, 10), nout = load_set(dir, "output", want, 2);
    QT_CHECK(nin > 0 && nout == 1, "%s: cannot read test data", name);
    if (nin <= 0 || nout != 1)
        return;
    char p[512];
    snprintf(p, sizeof p, "%s/model.onnx", dir);
    qk_graph *g = NULL;
    QT_OK(qk_onnx_load(p, &g));
    if (!g)
        return;
    if (freeze) {
        const char *names[10];
        for (int i = 0; i < g->n_inputs && i < 10; i++)
            names[i] = g->values[g->inputs[i]].name;
        int ni = g->n_inputs;
        for (int i = 1; i < ni && i < nin; i++)
            QT_OK(qk_onnx_freeze_input(g, names[i], &in[i])); /* only input 0 is fed */
    }
    qk_graph_set_options(g, &(qk_plan_options){ .reference = ref, .onnx_rounding = mode });
    int n_out = 0;
    qk_tensor *out = NULL;
    qk_status st = qk_onnx_run(g, freeze ? 1 : nin, in, pool, &n_out, &out);
    QT_CHECK(st == QK_OK, "%s (freeze %d, ref %d, %s): %s", name, freeze, ref, qk_rq_mode_name(mode),
             qk_last_error());
    if (st == QK_OK) {
        int same = n_out == 1 && out[0].dtype == want[0].dtype && qk_shape_equal(&out[0], &want[0]) &&
                   memcmp(out[0].data, want[0].data, qk_tensor_bytes(&want[0])) == 0;
        QT_CHECK(same, "%s (freeze %d, ref %d, threads %d, %s): output differs from the expected data", name, freeze,
                 ref, qk_pool_threads(pool), qk_rq_mode_name(mode));
    }
    qk_onnx_free_tensors(out, n_out);
    qk_graph_destroy(g);
    for (int i = 0; i < nin; i++)
        qk_tensor_free(&in[i]);
    qk_tensor_free(&want[0]);
}

int main(void)
{
    struct stat sb;
    if (stat(NODE_DIR, &sb) != 0) {
        printf("note: %s not found (apt-get install libonnx-testdata): ONNX integer node tests skipped\n", NODE_DIR);
        return qt_finish("test_int_onnx");
    }
    qk_pool *p1 = NULL, *p2 = NULL;
    QT_OK(qk_pool_create(1, &p1));
    QT_OK(qk_pool_create(2, &p2));
    qk_rq_mode modes[] = {QK_RQ_FP32, QK_RQ_GEMMLOWP, QK_RQ_Q31_SINGLE};
    for (size_t t = 0; t < sizeof tests / sizeof tests[0]; t++) {
        char dir[400];
        snprintf(dir, sizeof dir, "%s/%s", NODE_DIR, tests[t]);
        int fails = qt_fail;
        int ql = strncmp(tests[t], "test_qlinear", 12) == 0;
        for (int freeze = 0; freeze <= 1; freeze++)
            for (int mi = 0; mi < (ql ? 3 : 1); mi++) {
                run_variant(tests[t], dir, freeze, p1, 0, modes[mi]);
                run_variant(tests[t], dir, freeze, p2, 0, modes[mi]);
                run_variant(tests[t], dir, freeze, p2, 1, modes[mi]);
            }
        printf("onnx-int: %-34s %s\n", tests[t], qt_fail == fails ? "bit-exact in every variant" : "FAILED");
    }
    qk_pool_destroy(p1);
    qk_pool_destroy(p2);
    return qt_finish("test_int_onnx");
}
