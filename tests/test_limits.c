/* Absurd sizes fail cleanly, before allocating (issue: "Limits"): every case
 * runs in a child process whose address space is capped at 1 GiB (setrlimit
 * RLIMIT_AS; not under AddressSanitizer, which reserves terabytes of
 * address space itself), so an attempt to allocate what the file asks for
 * would fail there with a crash or NOMEM instead of the expected clear error.
 *  - a graph input of 2^40 elements (API and ONNX file): plan refuses it
 *    (QK_ERR_NOMEM naming the value and the limit) before allocating;
 *  - a shape whose size overflows int64: QK_ERR_SHAPE naming the value;
 *  - qk_plan_options.max_bytes: a plan over the limit is refused, under it runs;
 *  - a .pb tensor declaring 2^40 elements with no data: QK_ERR_FORMAT;
 *  - IDX headers announcing 2^35 bytes (absent) or an overflowing product;
 *  - Resize with an absurd scale. */
#include "qkit/qkit.h"
#include "qt.h"

#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[] = "/tmp/qkit_limits_XXXXXX";

/* x[-1, d1, d2] -> Relu -> y */
static qk_graph *relu_graph(int64_t d1, int64_t d2)
{
    qk_graph *g = NULL;
    if (qk_graph_create(&g) != QK_OK)
        return NULL;
    int x = qk_graph_add_input(g, "x", QK_F32, 3, (int64_t[]){ -1, d1, d2 });
    int y = qk_graph_add_value(g, "y", QK_VALUE_ACT);
    qk_graph_add_node(g, "Relu", "relu", 1, &x, 1, &y);
    qk_graph_add_output(g, y);
    if (qk_ops_bind(g) != QK_OK) {
        qk_graph_destroy(g);
        return NULL;
    }
    return g;
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    QT_CHECK(f && fwrite(p, 1, n, f) == n, "write %s", path);
    if (f)
        fclose(f);
}

static void cases(void)
{
    char path[256];
    /* 2^40 floats (4 TiB): refused before allocating */
    qk_graph *g = relu_graph(1 << 20, 1 << 20);
    QT_CHECK(g != NULL, "graph");
    if (g) {
        qk_status st = qk_graph_plan(g, 1, 0, NULL);
        QT_CHECK(st == QK_ERR_NOMEM && strstr(qk_last_error(), "limit") && strstr(qk_last_error(), "'x'"),
                 "2^40 input: %s: %s", qk_status_str(st), qk_last_error());
        /* the same model as a file */
        snprintf(path, sizeof path, "%s/big.onnx", dir);
        QT_OK(qk_onnx_save(g, path));
        qk_graph_destroy(g);
        g = NULL;
        QT_OK(qk_onnx_load(path, &g));
        if (g) {
            st = qk_graph_plan(g, 4, 0, NULL);
            QT_CHECK(st == QK_ERR_NOMEM, "2^40 input from a file: %s: %s", qk_status_str(st), qk_last_error());
            qk_graph_destroy(g);
        }
    }
    /* size overflows int64 */
    g = relu_graph((int64_t)1 << 40, (int64_t)1 << 40);
    if (g) {
        qk_status st = qk_graph_plan(g, 1 << 20, 0, NULL);
        QT_CHECK(st == QK_ERR_SHAPE && strstr(qk_last_error(), "overflows"), "overflow: %s: %s", qk_status_str(st),
                 qk_last_error());
        qk_graph_destroy(g);
    }
    /* max_bytes: [8, 1024] floats = 32 KiB per value, two values */
    g = relu_graph(8, 1024);
    if (g) {
        qk_plan_options o = g->opts;
        o.max_bytes = 32 << 10;
        qk_graph_set_options(g, &o);
        qk_status st = qk_graph_plan(g, 1, 0, NULL);
        QT_CHECK(st == QK_ERR_NOMEM && strstr(qk_last_error(), "max_bytes"), "max_bytes: %s: %s",
                 qk_status_str(st), qk_last_error());
        o.max_bytes = 1 << 20;
        qk_graph_set_options(g, &o);
        QT_OK(qk_graph_plan(g, 1, 0, NULL));
        qk_graph_destroy(g);
    }
    /* .pb: dims [2^40], FLOAT, empty raw_data */
    static const uint8_t pb[] = { 0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 0x10, 0x01, 0x4a, 0x00 };
    snprintf(path, sizeof path, "%s/big.pb", dir);
    write_file(path, pb, sizeof pb);
    qk_tensor t;
    qk_status st = qk_onnx_load_tensor(path, &t, NULL);
    QT_CHECK(st == QK_ERR_FORMAT && strstr(qk_last_error(), "raw_data"), ".pb 2^40: %s: %s", qk_status_str(st),
             qk_last_error());
    /* IDX: 32768 x 1024 x 1024 bytes announced (32 GiB), 4 present */
    static const uint8_t idx[] = { 0, 0, 8, 3, 0, 0, 0x80, 0, 0, 0, 4, 0, 0, 0, 4, 0, 1, 2, 3, 4 };
    snprintf(path, sizeof path, "%s/big-idx3", dir);
    write_file(path, idx, sizeof idx);
    int64_t dims[3];
    uint8_t *data = NULL;
    st = qk_idx_read(path, 3, dims, &data);
    QT_CHECK(st == QK_ERR_IO && strstr(qk_last_error(), "truncated") && !data, "IDX 32 GiB: %s: %s",
             qk_status_str(st), qk_last_error());
    /* IDX: 2^32-1 cubed overflows int64 */
    static const uint8_t idx2[] = { 0, 0, 8, 3, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255 };
    write_file(path, idx2, sizeof idx2);
    st = qk_idx_read(path, 3, dims, &data);
    QT_CHECK(st == QK_ERR_FORMAT && strstr(qk_last_error(), "implausibly"), "IDX overflow: %s: %s",
             qk_status_str(st), qk_last_error());
    /* Resize by 1e30 */
    if (qk_graph_create(&g) == QK_OK) {
        int x = qk_graph_add_input(g, "x", QK_F32, 4, (int64_t[]){ -1, 1, 2, 2 });
        qk_tensor sc;
        qk_tensor_alloc(&sc, QK_F32, 1, (int64_t[]){ 4 });
        float *s = sc.data;
        s[0] = s[1] = 1, s[2] = s[3] = 1e30f;
        int sv = qk_graph_add_init(g, "scales", QK_VALUE_CONST, &sc);
        qk_tensor_free(&sc);
        int y = qk_graph_add_value(g, "y", QK_VALUE_ACT);
        qk_graph_add_node(g, "Resize", "rs", 3, (int[]){ x, -1, sv }, 1, &y);
        qk_graph_add_output(g, y);
        QT_OK(qk_ops_bind(g));
        st = qk_graph_plan(g, 1, 0, NULL);
        QT_CHECK(st == QK_ERR_SHAPE || st == QK_ERR_NOMEM, "Resize 1e30: %s: %s", qk_status_str(st), qk_last_error());
        qk_graph_destroy(g);
    }
}

int main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    int fds[2];
    if (pipe(fds) != 0) {
        perror("pipe");
        return 1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        if (!SANITIZED) {
            struct rlimit rl = { (rlim_t)1 << 30, (rlim_t)1 << 30 };
            if (setrlimit(RLIMIT_AS, &rl) != 0)
                perror("setrlimit");
        }
        cases();
        int counts[2] = { qt_pass, qt_fail };
        if (write(fds[1], counts, sizeof counts) != (ssize_t)sizeof counts)
            perror("write");
        fflush(NULL);
        _exit(qt_fail ? 1 : 0);
    }
    close(fds[1]);
    int counts[2] = { 0, 0 };
    if (read(fds[0], counts, sizeof counts) == (ssize_t)sizeof counts)
        qt_pass += counts[0], qt_fail += counts[1];
    close(fds[0]);
    int ws = 0;
    QT_CHECK(pid > 0 && waitpid(pid, &ws, 0) == pid, "fork/wait");
    QT_CHECK(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "child (address space capped at 1 GiB) failed: status %d", ws);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return qt_finish("test_limits");
}
