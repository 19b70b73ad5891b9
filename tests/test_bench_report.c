/* qkit bench report: built from a small hand-written results file, checked
 * as text (self-contained: no script, no network), then rendered in
 * headless chromium; the screenshot (decoded with libpng) must show drawn
 * charts where the SVGs are. Skipped with a note when chromium is absent. */
#include "cli_fx.h"
#include "qt.h"

#include <png.h>
#include <string.h>
#include <unistd.h>

static const char *rows[] = {
    "{\"qkit_bench\":1,\"config\":\"shot\"}",
    "{\"key\":\"lenet/ptq/academic/W8A8/s1\",\"hash\":\"1\",\"model\":\"lenet\",\"algo\":\"ptq\",\"backend\":\"academic\",\"wbits\":8,\"abits\":8,\"status\":\"ok\",\"fp32_top1\":0.92,\"fake_top1\":0.915,\"real_top1\":0.915,\"hw_gap\":0}",
    "{\"key\":\"lenet/ptq/academic/W4A4/s1\",\"hash\":\"2\",\"model\":\"lenet\",\"algo\":\"ptq\",\"backend\":\"academic\",\"wbits\":4,\"abits\":4,\"status\":\"ok\",\"fp32_top1\":0.92,\"fake_top1\":0.88,\"real_top1\":0.87,\"hw_gap\":0.01}",
    "{\"key\":\"lenet/ptq/academic/W2A4/s1\",\"hash\":\"3\",\"model\":\"lenet\",\"algo\":\"ptq\",\"backend\":\"academic\",\"wbits\":2,\"abits\":4,\"status\":\"ok\",\"fp32_top1\":0.92,\"fake_top1\":0.61,\"real_top1\":0.58,\"hw_gap\":0.03}",
    "{\"key\":\"lenet/lsq/academic/W8A8/s1\",\"hash\":\"4\",\"model\":\"lenet\",\"algo\":\"lsq\",\"backend\":\"academic\",\"wbits\":8,\"abits\":8,\"status\":\"ok\",\"fp32_top1\":0.92,\"fake_top1\":0.92,\"real_top1\":0.92,\"hw_gap\":0,\"clips\":[{\"site\":\"a\",\"start\":2,\"learned\":1.5},{\"site\":\"b\",\"start\":6,\"learned\":4}]}",
    "{\"key\":\"lenet/lsq/academic/W4A4/s1\",\"hash\":\"5\",\"model\":\"lenet\",\"algo\":\"lsq\",\"backend\":\"academic\",\"wbits\":4,\"abits\":4,\"status\":\"ok\",\"fp32_top1\":0.92,\"fake_top1\":0.91,\"real_top1\":0.905,\"hw_gap\":0.005}",
    "{\"key\":\"lenet/lsq/academic/W2A4/s1\",\"hash\":\"6\",\"model\":\"lenet\",\"algo\":\"lsq\",\"backend\":\"academic\",\"wbits\":2,\"abits\":4,\"status\":\"ok\",\"fp32_top1\":0.92,\"fake_top1\":0.8,\"real_top1\":0.79,\"hw_gap\":0.01}",
    "{\"key\":\"lenet/ptq/tensorrt/W8A8/s1\",\"hash\":\"7\",\"model\":\"lenet\",\"algo\":\"ptq\",\"backend\":\"tensorrt\",\"wbits\":8,\"abits\":8,\"status\":\"ok\",\"fp32_top1\":0.92,\"fake_top1\":0.91,\"real_top1\":0.905,\"hw_gap\":0.005}",
    "{\"key\":\"lenet/ptq/nnie/W8A8/s1\",\"hash\":\"8\",\"model\":\"lenet\",\"algo\":\"ptq\",\"backend\":\"nnie\",\"wbits\":8,\"abits\":8,\"status\":\"ok\",\"fp32_top1\":0.92,\"fake_top1\":0.90,\"real_top1\":null,\"hw_gap\":null,\"real_reason\":\"no integer pipeline\"}",
    "{\"key\":\"lenet/ptq/ppl-w8a16/W8A8/s1\",\"hash\":\"9\",\"model\":\"lenet\",\"algo\":\"ptq\",\"backend\":\"ppl-w8a16\",\"wbits\":8,\"abits\":8,\"status\":\"skipped\",\"reason\":\"cannot do 8-bit activations\"}",
    NULL
};

/* Chromatic pixels (max - min channel > 60) in [x0,x1) x [y0,y1). */
static long colored(png_bytep *img, int w, int h, int x0, int y0, int x1, int y1)
{
    long n = 0;
    for (int y = y0; y < y1 && y < h; y++)
        for (int x = x0; x < x1 && x < w; x++) {
            png_bytep p = img[y] + 4 * x;
            int mx = p[0] > p[1] ? p[0] : p[1], mn = p[0] < p[1] ? p[0] : p[1];
            mx = p[2] > mx ? p[2] : mx;
            mn = p[2] < mn ? p[2] : mn;
            n += mx - mn > 60;
        }
    return n;
}

static int find_chromium(char *path, size_t n)
{
    const char *c[] = { "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome", NULL };
    for (int i = 0; c[i]; i++)
        if (access(c[i], X_OK) == 0) {
            snprintf(path, n, "%s", c[i]);
            return 1;
        }
    return 0;
}

int main(void)
{
    if (!cli_fx_init()) {
        printf("test_bench_report: qkit binary missing\n");
        return qt_finish("test_bench_report");
    }
    char dir[256], path[512], cmd[2048];
    snprintf(dir, sizeof dir, "/tmp/qkit_test_bench_report_%d", (int)getpid());
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", dir, dir);
    if (system(cmd) != 0)
        return 1;
    snprintf(path, sizeof path, "%s/results.jsonl", dir);
    FILE *f = fopen(path, "w");
    for (int i = 0; f && rows[i]; i++)
        fprintf(f, "%s\n", rows[i]);
    if (f)
        fclose(f);
    QT_CHECK(q("bench --report --out %s", dir) == 0 && has("academic - deployable"), "report: %s", out);
    snprintf(path, sizeof path, "%s/report.html", dir);
    f = fopen(path, "rb");
    static char html[1 << 20];
    size_t n = f ? fread(html, 1, sizeof html - 1, f) : 0;
    html[n] = 0;
    if (f)
        fclose(f);
    QT_CHECK(strstr(html, "<svg") && strstr(html, "Hardware robustness") && strstr(html, "Per-layer clip"),
             "charts, metrics and clip figures present");
    QT_CHECK(!strstr(html, "<script") && !strstr(html, "http://") && !strstr(html, "https://") &&
             !strstr(html, "src="), "self-contained: no script, no links out");
    char chromium[256];
    if (!find_chromium(chromium, sizeof chromium)) {
        printf("info: chromium not installed (tools/deps.sh --test): the screenshot check is skipped\n");
        return qt_finish("test_bench_report");
    }
    char png[512];
    snprintf(png, sizeof png, "%s/shot.png", dir);
    snprintf(cmd, sizeof cmd, "timeout 60 %s --headless --no-sandbox --disable-gpu --hide-scrollbars "
             "--user-data-dir=%s/prof --window-size=800,600 --screenshot=%s file://%s >/dev/null 2>&1",
             chromium, dir, png, path);
    int rc = system(cmd);
    QT_CHECK(rc == 0 && exists(png), "chromium screenshot (rc %d)", rc);
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    png_bytep buf = NULL;
    if (png_image_begin_read_from_file(&im, png)) {
        im.format = PNG_FORMAT_RGBA;
        buf = malloc(PNG_IMAGE_SIZE(im));
        if (buf && !png_image_finish_read(&im, NULL, buf, 0, NULL)) {
            free(buf);
            buf = NULL;
        }
    }
    QT_CHECK(buf && im.width == 800 && im.height == 600, "screenshot decodes as 800x600");
    if (buf) {
        png_bytep rowp[600];
        for (int y = 0; y < 600; y++)
            rowp[y] = buf + (size_t)y * 800 * 4;
        /* the line chart (top left, below the title) and the heat map below it */
        long a = colored(rowp, 800, 600, 40, 120, 360, 400), b = colored(rowp, 800, 600, 150, 420, 460, 600);
        long title = colored(rowp, 800, 600, 0, 0, 800, 60);
        QT_CHECK(a > 300, "accuracy-vs-bits chart drawn (%ld coloured pixels)", a);
        QT_CHECK(b > 1000, "hardware-gap heat map drawn (%ld coloured pixels)", b);
        QT_CHECK(title < 50, "the title area is plain text (%ld)", title);
        free(buf);
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (!qt_fail && system(cmd) != 0)
        return 1;
    return qt_finish("test_bench_report");
}
