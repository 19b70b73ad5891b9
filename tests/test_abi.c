/* libqkit.so as another program sees it: SONAME libqkit.so.MAJOR, the
 * public functions (those the headers declare) exported, internal ones and
 * the generated protobuf code not; qk_version matches the headers; the
 * pkg-config template names the version. */
#include "qkit/version.h"
#include "qt.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char out[1 << 20];

static int sh(const char *cmd)
{
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    return pclose(p);
}

int main(void)
{
    const char *b = getenv("QKIT_BUILD") ? getenv("QKIT_BUILD") : "build";
    char cmd[512], so[256];
    QT_CHECK(strcmp(qk_version(), QKIT_VERSION_STRING) == 0, "qk_version %s, headers %s", qk_version(),
             QKIT_VERSION_STRING);
    snprintf(so, sizeof so, "%s/libqkit.so.%d", b, QKIT_VERSION_MAJOR);
    snprintf(cmd, sizeof cmd, "objdump -p %s/libqkit.so | grep SONAME", b);
    char want[64];
    snprintf(want, sizeof want, "libqkit.so.%d", QKIT_VERSION_MAJOR);
    QT_CHECK(sh(cmd) == 0 && strstr(out, want), "SONAME %s: %s", want, out);
    /* every exported function is in the list the headers give (build/libqkit.map) */
    snprintf(cmd, sizeof cmd, "nm -D --defined-only %s/libqkit.so | awk '{print $3}' | sort", b);
    QT_CHECK(sh(cmd) == 0, "nm");
    char map[256];
    snprintf(map, sizeof map, "%s/libqkit.map", b);
    FILE *f = fopen(map, "r");
    QT_CHECK(f != NULL, "%s", map);
    static char mapbuf[1 << 20];
    size_t mn = f ? fread(mapbuf, 1, sizeof mapbuf - 1, f) : 0;
    mapbuf[mn] = 0;
    if (f)
        fclose(f);
    int n = 0, bad = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        char key[300];
        snprintf(key, sizeof key, " %s;", line);
        if (strncmp(line, "qk_", 3) != 0 || !strstr(mapbuf, key)) {
            if (bad++ < 5)
                QT_CHECK(0, "exported but not public: %s", line);
        }
        n++;
    }
    QT_CHECK(bad == 0 && n > 200, "%d exported symbols, %d not public", n, bad);
    /* a program that loads the library by its SONAME finds the API, not the internals */
    void *h = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    QT_CHECK(h != NULL, "dlopen %s: %s", so, dlerror());
    if (h) {
        const char *(*ver)(void) = (const char *(*)(void))dlsym(h, "qk_version");
        QT_CHECK(ver && strcmp(ver(), QKIT_VERSION_STRING) == 0, "qk_version through dlsym");
        QT_CHECK(dlsym(h, "qk_graph_create") != NULL, "qk_graph_create exported");
        QT_CHECK(dlsym(h, "qk_ptq_site_name") == NULL, "internal qk_ptq_site_name hidden");
        QT_CHECK(dlsym(h, "onnx__model_proto__descriptor") == NULL, "protobuf symbols hidden");
        dlclose(h);
    }
    f = fopen("tools/qkit.pc.in", "r");
    char pc[2048] = "";
    size_t pn = f ? fread(pc, 1, sizeof pc - 1, f) : 0;
    pc[pn] = 0;
    if (f)
        fclose(f);
    QT_CHECK(strstr(pc, "Version: @VERSION@") && strstr(pc, "-lqkit"), "qkit.pc.in: %s", pc);
    return qt_finish("test_abi");
}
