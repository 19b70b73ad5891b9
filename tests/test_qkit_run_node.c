/* The ONNX node tests of the quantization operators through the `qkit run`
 * command (not only through the library): QuantizeLinear, DequantizeLinear
 * (per tensor and per axis), QLinearConv, QLinearMatMul, ConvInteger and
 * MatMulInteger. Every output must equal the test data bit for bit (integer
 * outputs exactly; float outputs of DequantizeLinear exactly too, since
 * (q - z) * s is one float32 multiply). Needs libonnx-testdata. */
#include "qkit/onnx.h"
#include "qt.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define NODE_DIR "/usr/share/libonnx-testdata/data/node"

static int exists(const char *p)
{
    struct stat s;
    return stat(p, &s) == 0;
}

static int same_tensor(const qk_tensor *a, const qk_tensor *b)
{
    if (a->dtype != b->dtype || qk_tensor_numel(a) != qk_tensor_numel(b))
        return 0;
    return memcmp(a->data, b->data, qk_tensor_bytes(a)) == 0;
}

/* Runs every test_data_set_* of one node test; returns data sets checked. */
static int run_case(const char *qkit, const char *tmp, const char *name)
{
    char dir[512], set[640], cmd[8192], path[800];
    snprintf(dir, sizeof dir, "%s/%s", NODE_DIR, name);
    int sets = 0;
    for (int k = 0; k < 16; k++) {
        snprintf(set, sizeof set, "%s/test_data_set_%d", dir, k);
        if (!exists(set))
            break;
        int n = snprintf(cmd, sizeof cmd, "%s run --model %s/model.onnx", qkit, dir);
        for (int i = 0; i < 16; i++) {
            snprintf(path, sizeof path, "%s/input_%d.pb", set, i);
            if (!exists(path))
                break;
            n += snprintf(cmd + n, sizeof cmd - (size_t)n, " --input %s", path);
        }
        int n_out = 0;
        for (int i = 0; i < 8; i++) {
            snprintf(path, sizeof path, "%s/output_%d.pb", set, i);
            if (!exists(path))
                break;
            n += snprintf(cmd + n, sizeof cmd - (size_t)n, " --output %s/%s_%d_%d.pb", tmp, name, k, i);
            n_out++;
        }
        snprintf(cmd + n, sizeof cmd - (size_t)n, " >/dev/null 2>&1");
        int rc = system(cmd);
        QT_CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "%s set %d: qkit run exit %d", name, k, rc);
        for (int i = 0; i < n_out; i++) {
            qk_tensor want, got;
            snprintf(path, sizeof path, "%s/output_%d.pb", set, i);
            QT_OK(qk_onnx_load_tensor(path, &want, NULL));
            snprintf(path, sizeof path, "%s/%s_%d_%d.pb", tmp, name, k, i);
            qk_status st = qk_onnx_load_tensor(path, &got, NULL);
            QT_CHECK(st == QK_OK, "%s set %d: no output %d written", name, k, i);
            if (st == QK_OK) {
                QT_CHECK(same_tensor(&want, &got), "%s set %d output %d: differs from the test data", name, k, i);
                qk_tensor_free(&got);
            }
            qk_tensor_free(&want);
        }
        sets++;
    }
    return sets;
}

int main(void)
{
    const char *b = getenv("QKIT_BUILD");
    char qkit[512], tmp[256];
    snprintf(qkit, sizeof qkit, "%s/qkit", b ? b : "build");
    if (!exists(NODE_DIR)) {
        printf("info: %s missing (apt-get install libonnx-testdata): skipped\n", NODE_DIR);
        return qt_finish("test_qkit_run_node");
    }
    QT_CHECK(exists(qkit), "qkit binary %s not found", qkit);
    snprintf(tmp, sizeof tmp, "/tmp/qkit_runnode_%d", (int)getpid());
    mkdir(tmp, 0755);
    static const char *const cases[] = {
        "test_quantizelinear", "test_quantizelinear_axis", "test_dequantizelinear", "test_dequantizelinear_axis",
        "test_qlinearconv", "test_qlinearmatmul_2D", "test_qlinearmatmul_3D", "test_basic_convinteger",
        "test_convinteger_with_padding", "test_convinteger_without_padding", "test_matmulinteger", NULL
    };
    int total = 0;
    for (int i = 0; cases[i]; i++) {
        int n = run_case(qkit, tmp, cases[i]);
        QT_CHECK(n > 0, "%s: no test data set found", cases[i]);
        total += n;
    }
    printf("info: qkit run: %d ONNX node test data sets of the quantization operators, bit-exact\n", total);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0)
        printf("info: could not remove %s\n", tmp);
    return qt_finish("test_qkit_run_node");
}
