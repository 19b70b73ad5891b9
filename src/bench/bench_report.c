/* qkit bench: DIR/report.html, one self-contained page (inline SVG and CSS;
 * no script, no fonts or images from the network): charts first (accuracy
 * against bit-width, the hardware-gap heat map, per-backend bars), then the
 * MQBench metrics, the matrix tables, skipped cells and QAT clip figures. */
#include "bench_internal.h"

#include <math.h>
#include <string.h>

static const char *const palette[] = { "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                                       "#e377c2", "#7f7f7f", "#bcbd22", "#17becf" };
#define PAL(i) palette[(i) % 10]

/* distinct strings in first-seen order */
typedef struct names { const char *v[256]; int n; } names;
static int names_add(names *s, const char *x)
{
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->v[i], x))
            return i;
    if (s->n == 256)
        return -1;
    s->v[s->n] = x;
    return s->n++;
}

typedef struct bits { int w[64], a[64], n; } bits;
static void bits_add(bits *b, int w, int a)
{
    for (int i = 0; i < b->n; i++)
        if (b->w[i] == w && b->a[i] == a)
            return;
    if (b->n < 64) {
        b->w[b->n] = w;
        b->a[b->n++] = a;
    }
    for (int i = b->n - 1; i > 0 && (b->w[i] > b->w[i - 1] || (b->w[i] == b->w[i - 1] && b->a[i] > b->a[i - 1]));
         i--) {
        int t = b->w[i]; b->w[i] = b->w[i - 1]; b->w[i - 1] = t;
        t = b->a[i]; b->a[i] = b->a[i - 1]; b->a[i - 1] = t;
    }
}

static const qk_bench_row *find(const qk_bench_results *r, const char *model, const char *algo, const char *backend,
                                int w, int a)
{
    for (int i = 0; i < r->n; i++) {
        const qk_bench_row *x = &r->rows[i];
        if (!strcmp(x->model, model) && !strcmp(x->algo, algo) && !strcmp(x->backend, backend) && x->wbits == w &&
            x->abits == a)
            return x;
    }
    return NULL;
}

static int rok(const qk_bench_row *x) { return x && !strcmp(x->status, "ok"); }

/* Accuracy axis [lo, 1]: lo a multiple of 0.1 below the smallest value. */
static double axis_lo(double mn) { return mn >= 1 ? 0.9 : fmax(0, floor((mn - 0.02) * 10) / 10); }

static void text(qk_sbuf *b, double x, double y, const char *anchor, int size, const char *s)
{
    qk_sbuf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" font-size=\"%d\">", x, y, anchor, size);
    qk_sbuf_html(b, s);
    qk_sbuf_printf(b, "</text>");
}

static void y_axis(qk_sbuf *b, double x0, double y0, double h, double w, double lo, double hi, const char *unit)
{
    for (int k = 0; k <= 4; k++) {
        double v = lo + (hi - lo) * k / 4, y = y0 + h - h * k / 4;
        char t[32];
        snprintf(t, sizeof t, "%.1f%s", 100 * v, unit);
        qk_sbuf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>", x0, y, x0 + w, y);
        text(b, x0 - 4, y + 4, "end", 10, t);
    }
}

/* Accuracy against bit-width (academic profile, or any backend with several
 * widths), one line per algorithm, one chart per model. */
static void chart_bits(qk_sbuf *b, const qk_bench_results *r, const names *models, const names *algos)
{
    for (int mi = 0; mi < models->n; mi++) {
        bits bw = { .n = 0 };
        double mn = 1;
        for (int i = 0; i < r->n; i++) {
            const qk_bench_row *x = &r->rows[i];
            if (rok(x) && !strcmp(x->model, models->v[mi]) && !strcmp(x->backend, "academic")) {
                bits_add(&bw, x->wbits, x->abits);
                mn = fmin(mn, x->fake);
            }
        }
        if (bw.n < 2)
            continue;
        double W = 460, H = 260, x0 = 50, y0 = 20, pw = 280, ph = 200, lo = axis_lo(mn);
        qk_sbuf_printf(b, "<figure><svg class=\"chart\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\">", W, H,
                       W, H);
        y_axis(b, x0, y0, ph, pw, lo, 1, "%");
        for (int k = 0; k < bw.n; k++) {
            char t[16];
            snprintf(t, sizeof t, "W%dA%d", bw.w[k], bw.a[k]);
            text(b, x0 + pw * (k + 0.5) / bw.n, y0 + ph + 16, "middle", 11, t);
        }
        int shown = 0;
        for (int ai = 0; ai < algos->n; ai++) {
            qk_sbuf pts = { 0 };
            int np = 0;
            for (int k = 0; k < bw.n; k++) {
                const qk_bench_row *x = find(r, models->v[mi], algos->v[ai], "academic", bw.w[k], bw.a[k]);
                if (!rok(x))
                    continue;
                double px = x0 + pw * (k + 0.5) / bw.n, py = y0 + ph - ph * (x->fake - lo) / (1 - lo);
                qk_sbuf_printf(&pts, "%s%.1f,%.1f", np++ ? " " : "", px, py);
                qk_sbuf_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>", px, py, PAL(ai));
            }
            if (np > 1)
                qk_sbuf_printf(b, "<polyline points=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\"/>", pts.s,
                               PAL(ai));
            qk_sbuf_free(&pts);
            if (np && shown < 22) {
                qk_sbuf_printf(b, "<rect x=\"%.0f\" y=\"%d\" width=\"10\" height=\"10\" fill=\"%s\"/>", x0 + pw + 20,
                               12 + 11 * shown, PAL(ai));
                text(b, x0 + pw + 34, 21 + 11 * shown, "start", 10, algos->v[ai]);
                shown++;
            }
        }
        qk_sbuf_printf(b, "</svg><figcaption>%s: fake-quant top-1 against bit-width (academic profile)</figcaption>"
                       "</figure>\n", models->v[mi]);
    }
}

static const char *gap_color(double g, char *buf)
{
    double p = 100 * g; /* points */
    if (p < 0) {         /* real better than fake: blue */
        double t = fmin(1, -p / 2);
        sprintf(buf, "rgb(%d,%d,%d)", (int)(120 - 90 * t), (int)(170 - 60 * t), 230);
    } else {             /* green (0) to red (>= 2 points) */
        double t = fmin(1, p / 2);
        sprintf(buf, "rgb(%d,%d,%d)", (int)(60 + 180 * t), (int)(180 - 130 * t), (int)(80 - 30 * t));
    }
    return buf;
}

/* Heat map: rows model/algo/bits, columns backends, colour = fake - real. */
static void chart_heat(qk_sbuf *b, const qk_bench_results *r, const names *models, const names *algos,
                       const names *backs, const bits *bw)
{
    int nrows = 0;
    for (int mi = 0; mi < models->n; mi++)
        for (int ai = 0; ai < algos->n; ai++)
            for (int k = 0; k < bw->n; k++)
                for (int bi = 0; bi < backs->n; bi++)
                    if (rok(find(r, models->v[mi], algos->v[ai], backs->v[bi], bw->w[k], bw->a[k]))) {
                        nrows++;
                        bi = backs->n;
                    }
    if (!nrows)
        return;
    if (nrows > 80)
        nrows = 80;
    double cw = 46, ch = 16, x0 = 190, y0 = 70, W = x0 + cw * backs->n + 10, H = y0 + ch * nrows + 30;
    qk_sbuf_printf(b, "<figure><svg class=\"chart\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\">", W, H, W,
                   H);
    for (int bi = 0; bi < backs->n; bi++)
        qk_sbuf_printf(b, "<text transform=\"translate(%.1f,%.1f) rotate(-45)\" font-size=\"10\">%s</text>",
                       x0 + cw * bi + cw / 2, y0 - 4, backs->v[bi]);
    int row = 0;
    char col[32], t[160];
    for (int mi = 0; mi < models->n; mi++)
        for (int ai = 0; ai < algos->n; ai++)
            for (int k = 0; k < bw->n && row < nrows; k++) {
                int any = 0;
                for (int bi = 0; bi < backs->n; bi++)
                    any |= rok(find(r, models->v[mi], algos->v[ai], backs->v[bi], bw->w[k], bw->a[k]));
                if (!any)
                    continue;
                double y = y0 + ch * row;
                snprintf(t, sizeof t, "%s %s W%dA%d", models->v[mi], algos->v[ai], bw->w[k], bw->a[k]);
                text(b, x0 - 6, y + 12, "end", 10, t);
                for (int bi = 0; bi < backs->n; bi++) {
                    const qk_bench_row *x = find(r, models->v[mi], algos->v[ai], backs->v[bi], bw->w[k], bw->a[k]);
                    double x1 = x0 + cw * bi;
                    if (!x)
                        continue;
                    if (!rok(x) || !isfinite(x->gap)) {
                        qk_sbuf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#eee\">"
                                       "<title>", x1, y, cw - 1, ch - 1);
                        qk_sbuf_html(b, rok(x) ? x->real_reason : x->reason);
                        qk_sbuf_printf(b, "</title></rect>");
                        text(b, x1 + cw / 2, y + 12, "middle", 9, rok(x) ? "n/a" : "skip");
                        continue;
                    }
                    qk_sbuf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>", x1,
                                   y, cw - 1, ch - 1, gap_color(x->gap, col));
                    snprintf(t, sizeof t, "%+.2f", 100 * x->gap);
                    text(b, x1 + cw / 2, y + 12, "middle", 9, t);
                }
                row++;
            }
    qk_sbuf_printf(b, "</svg><figcaption>Hardware gap: fake-quant minus integer-engine top-1, in points (green 0, "
                   "red &ge; 2, blue: the integer engine scores higher; grey: no integer pipeline or skipped)"
                   "</figcaption></figure>\n");
}

/* Per-backend bars of one algorithm (the first) at each model's widest
 * bit-width: fake (solid) and real (light) top-1. */
static void chart_backends(qk_sbuf *b, const qk_bench_results *r, const names *models, const names *algos,
                           const names *backs, const bits *bw)
{
    for (int mi = 0; mi < models->n; mi++)
        for (int k = 0; k < bw->n; k++) {
            const char *algo = NULL;
            int nb = 0;
            double mn = 1;
            for (int ai = 0; ai < algos->n && !algo; ai++) {
                nb = 0;
                for (int bi = 0; bi < backs->n; bi++) {
                    const qk_bench_row *x = find(r, models->v[mi], algos->v[ai], backs->v[bi], bw->w[k], bw->a[k]);
                    if (rok(x)) {
                        nb++;
                        mn = fmin(mn, fmin(x->fake, isfinite(x->real) ? x->real : 1));
                    }
                }
                if (nb >= 2)
                    algo = algos->v[ai];
            }
            if (!algo)
                continue;
            double x0 = 50, y0 = 15, ph = 160, bwid = 30, W = x0 + bwid * backs->n + 20, H = y0 + ph + 70,
                   lo = axis_lo(mn);
            qk_sbuf_printf(b, "<figure><svg class=\"chart\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\">",
                           W, H, W, H);
            y_axis(b, x0, y0, ph, bwid * backs->n, lo, 1, "%");
            for (int bi = 0; bi < backs->n; bi++) {
                const qk_bench_row *x = find(r, models->v[mi], algo, backs->v[bi], bw->w[k], bw->a[k]);
                double x1 = x0 + bwid * bi + 3;
                qk_sbuf_printf(b, "<text transform=\"translate(%.1f,%.1f) rotate(45)\" font-size=\"10\">%s</text>",
                               x1 + 6, y0 + ph + 8, backs->v[bi]);
                if (!rok(x))
                    continue;
                double v[2] = { x->fake, x->real };
                for (int j = 0; j < 2; j++) {
                    if (!isfinite(v[j]))
                        continue;
                    double h = fmax(1, ph * (v[j] - lo) / (1 - lo));
                    qk_sbuf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"11\" height=\"%.1f\" fill=\"%s\" "
                                   "opacity=\"%s\"><title>%s %.2f%%</title></rect>", x1 + 12 * j, y0 + ph - h, h,
                                   PAL(bi), j ? "0.5" : "1", j ? "real" : "fake", 100 * v[j]);
                }
            }
            qk_sbuf_printf(b, "</svg><figcaption>%s, %s, W%dA%d: top-1 per backend (solid: fake-quant, light: "
                           "integer engine)</figcaption></figure>\n", models->v[mi], algo, bw->w[k], bw->a[k]);
        }
}

/* Learned activation clip against the calibrated one, per layer (QAT). */
static void chart_clips(qk_sbuf *b, const qk_bench_results *r)
{
    int any = 0;
    for (int i = 0; i < r->n; i++) {
        const qk_bench_row *x = &r->rows[i];
        if (!rok(x) || x->n_clips == 0)
            continue;
        if (!any++)
            qk_sbuf_printf(b, "<h2>Per-layer clip values (QAT)</h2><p>Upper clip s&middot;(q<sub>max</sub>&minus;z) "
                           "of each activation quantizer: calibrated start (grey) and learned (colour).</p>\n");
        int n = x->n_clips < 40 ? x->n_clips : 40;
        double mx = 0;
        for (int k = 0; k < n; k++)
            mx = fmax(mx, fmax(x->clips[k].start, x->clips[k].learned));
        if (!(mx > 0))
            continue;
        double x0 = 40, y0 = 10, ph = 120, bw = 16, W = x0 + bw * n + 20, H = y0 + ph + 20;
        qk_sbuf_printf(b, "<figure><svg class=\"chart\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\">", W,
                       H, W, H);
        for (int k = 0; k < n; k++) {
            double v[2] = { x->clips[k].start, x->clips[k].learned };
            for (int j = 0; j < 2; j++) {
                double h = isfinite(v[j]) ? ph * v[j] / mx : 0;
                qk_sbuf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"7\" height=\"%.1f\" fill=\"%s\"><title>",
                               x0 + bw * k + 7 * j, y0 + ph - h, h, j ? "#d62728" : "#999");
                qk_sbuf_html(b, x->clips[k].site);
                qk_sbuf_printf(b, " %s %.4g</title></rect>", j ? "learned" : "start", v[j]);
            }
        }
        char t[32];
        snprintf(t, sizeof t, "%.3g", mx);
        text(b, x0 - 4, y0 + 8, "end", 10, t);
        text(b, x0 - 4, y0 + ph, "end", 10, "0");
        qk_sbuf_printf(b, "</svg><figcaption>");
        qk_sbuf_html(b, x->key);
        qk_sbuf_printf(b, "</figcaption></figure>\n");
    }
}

static void pct(qk_sbuf *b, double v)
{
    if (isfinite(v))
        qk_sbuf_printf(b, "<td>%.2f</td>", 100 * v);
    else
        qk_sbuf_printf(b, "<td>&ndash;</td>");
}

static void stat_table(qk_sbuf *b, const char *title, const char *what, const qk_bench_stat *s, int n, int gap)
{
    if (!n)
        return;
    qk_sbuf_printf(b, "<h3>%s</h3><p>%s</p><table><tr><th>algorithm</th><th>model</th><th>backend</th><th>bits</th>"
                   "<th>%s</th><th>std</th><th>min</th><th>max</th><th>n</th></tr>\n", title, what,
                   gap ? "mean gap (pts)" : "mean top-1 (%)");
    for (int i = 0; i < n; i++) {
        qk_sbuf_printf(b, "<tr><td>");
        qk_sbuf_html(b, s[i].algo);
        qk_sbuf_printf(b, "</td><td>%s</td><td>%s</td><td>W%dA%d</td>", s[i].model[0] ? s[i].model : "(all)",
                       s[i].backend[0] ? s[i].backend : "(hardware)", s[i].wbits, s[i].abits);
        pct(b, s[i].mean);
        pct(b, s[i].std);
        pct(b, s[i].min);
        pct(b, s[i].max);
        qk_sbuf_printf(b, "<td>%d</td></tr>\n", s[i].n);
    }
    qk_sbuf_printf(b, "</table>\n");
}

typedef struct page { const char *s; size_t n; } page;
static qk_status write_page(FILE *f, void *ctx)
{
    const page *p = ctx;
    return fwrite(p->s, 1, p->n, f) == p->n ? QK_OK : qk_error(QK_ERR_IO, "short write");
}

qk_status qk_bench_report_write(const qk_bench_results *r, const qk_bench_metrics *m, const char *path)
{
    names models = { .n = 0 }, algos = { .n = 0 }, backs = { .n = 0 };
    bits bw = { .n = 0 };
    int n_ok = 0, n_skip = 0, n_err = 0;
    const char *cpu = "unknown", *ver = "?", *commit = "unknown";
    for (int i = 0; i < r->n; i++) {
        const qk_bench_row *x = &r->rows[i];
        names_add(&models, x->model);
        names_add(&algos, x->algo);
        bits_add(&bw, x->wbits, x->abits);
        n_ok += !strcmp(x->status, "ok");
        n_skip += !strcmp(x->status, "skipped");
        n_err += !strcmp(x->status, "error");
        if (x->cpu[0]) {
            cpu = x->cpu;
            ver = x->qkit;
            commit = x->commit;
        }
    }
    for (int i = 0; i < qk_backend_count(); i++) /* backends in the profile table's order */
        for (int k = 0; k < r->n; k++)
            if (!strcmp(r->rows[k].backend, qk_backend_get(i)->name)) {
                names_add(&backs, qk_backend_get(i)->name);
                break;
            }
    for (int k = 0; k < r->n; k++)
        names_add(&backs, r->rows[k].backend);
    qk_sbuf b = { 0 };
    qk_sbuf_printf(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>qkit bench: ");
    qk_sbuf_html(&b, r->config);
    qk_sbuf_printf(&b, "</title><style>body{font-family:sans-serif;margin:12px;color:#222}"
                   "table{border-collapse:collapse;margin:6px 0 14px;font-size:12px}"
                   "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#f2f2f2}"
                   "td:first-child{text-align:left}figure{display:inline-block;margin:6px 10px 10px 0;"
                   "vertical-align:top}figcaption{font-size:11px;max-width:460px}svg{font-family:sans-serif;"
                   "background:#fff}.skip{color:#999}.err{color:#c00}h2{font-size:17px;margin:14px 0 4px}"
                   "h3{font-size:14px;margin:10px 0 2px}p{font-size:12px;margin:2px 0}</style></head><body>\n");
    qk_sbuf_printf(&b, "<h1 style=\"font-size:20px\">qkit bench: ");
    qk_sbuf_html(&b, r->config);
    qk_sbuf_printf(&b, "</h1><p>%d cells: %d ok, %d skipped, %d errors. CPU: ", r->n, n_ok, n_skip, n_err);
    qk_sbuf_html(&b, cpu);
    qk_sbuf_printf(&b, "; qkit %s (commit %s). Accuracies are top-1 on the evaluated test images: FP32, fake "
                   "quantization (float arithmetic) and real (the integer engine).</p>\n", ver, commit);
    qk_sbuf_printf(&b, "<h2>Charts</h2>\n");
    chart_bits(&b, r, &models, &algos);
    chart_heat(&b, r, &models, &algos, &backs, &bw);
    chart_backends(&b, r, &models, &algos, &backs, &bw);
    qk_sbuf_printf(&b, "<h2>MQBench metrics</h2>\n");
    stat_table(&b, "Hardware robustness", "An algorithm's fake-quant top-1 across the hardware profiles (academic "
               "excluded): mean and spread.", m->hw_robust, m->n_hw, 0);
    stat_table(&b, "Architecture robustness", "An algorithm's fake-quant top-1 across models, per backend.",
               m->arch_robust, m->n_arch, 0);
    stat_table(&b, "Academic vs deployable", "Top-1 on the academic profile minus on each hardware profile "
               "(same algorithm, model and bits), in points.", m->acad_gap, m->n_acad, 1);
    stat_table(&b, "Hardware gap", "Fake-quant minus integer-engine top-1, in points.", m->hw_gap, m->n_gap, 1);
    qk_sbuf_printf(&b, "<h2>Matrix</h2><p>Each cell: fake / real top-1 (%%); &ndash; no integer pipeline; "
                   "skip: the algorithm does not fit the backend (hover for the reason).</p>\n");
    for (int mi = 0; mi < models.n; mi++)
        for (int k = 0; k < bw.n; k++) {
            int any = 0;
            for (int i = 0; i < r->n; i++)
                any |= !strcmp(r->rows[i].model, models.v[mi]) && r->rows[i].wbits == bw.w[k] &&
                       r->rows[i].abits == bw.a[k];
            if (!any)
                continue;
            qk_sbuf_printf(&b, "<h3>%s W%dA%d</h3><table><tr><th>algorithm</th><th>FP32</th>", models.v[mi], bw.w[k],
                           bw.a[k]);
            for (int bi = 0; bi < backs.n; bi++)
                qk_sbuf_printf(&b, "<th>%s</th>", backs.v[bi]);
            qk_sbuf_printf(&b, "</tr>\n");
            for (int ai = 0; ai < algos.n; ai++) {
                double fp = NAN;
                int row_any = 0;
                for (int bi = 0; bi < backs.n; bi++) {
                    const qk_bench_row *x = find(r, models.v[mi], algos.v[ai], backs.v[bi], bw.w[k], bw.a[k]);
                    row_any |= x != NULL;
                    if (rok(x))
                        fp = x->fp32;
                }
                if (!row_any)
                    continue;
                qk_sbuf_printf(&b, "<tr><td>");
                qk_sbuf_html(&b, algos.v[ai]);
                qk_sbuf_printf(&b, "</td>");
                pct(&b, fp);
                for (int bi = 0; bi < backs.n; bi++) {
                    const qk_bench_row *x = find(r, models.v[mi], algos.v[ai], backs.v[bi], bw.w[k], bw.a[k]);
                    if (!x) {
                        qk_sbuf_printf(&b, "<td></td>");
                    } else if (!rok(x)) {
                        qk_sbuf_printf(&b, "<td class=\"%s\" title=\"", strcmp(x->status, "error") ? "skip" : "err");
                        qk_sbuf_html(&b, x->reason);
                        qk_sbuf_printf(&b, "\">%s</td>", strcmp(x->status, "error") ? "skip" : "error");
                    } else {
                        qk_sbuf_printf(&b, "<td>%.2f / ", 100 * x->fake);
                        if (isfinite(x->real))
                            qk_sbuf_printf(&b, "%.2f</td>", 100 * x->real);
                        else
                            qk_sbuf_printf(&b, "&ndash;</td>");
                    }
                }
                qk_sbuf_printf(&b, "</tr>\n");
            }
            qk_sbuf_printf(&b, "</table>\n");
        }
    if (n_skip + n_err) {
        qk_sbuf_printf(&b, "<h2>Skipped and failed cells</h2><table><tr><th>cell</th><th>status</th><th>reason</th>"
                       "</tr>\n");
        for (int i = 0; i < r->n; i++) {
            const qk_bench_row *x = &r->rows[i];
            if (rok(x))
                continue;
            qk_sbuf_printf(&b, "<tr><td>");
            qk_sbuf_html(&b, x->key);
            qk_sbuf_printf(&b, "</td><td>%s</td><td style=\"text-align:left\">", x->status);
            qk_sbuf_html(&b, x->reason);
            qk_sbuf_printf(&b, "</td></tr>\n");
        }
        qk_sbuf_printf(&b, "</table>\n");
    }
    chart_clips(&b, r);
    qk_sbuf_printf(&b, "</body></html>\n");
    if (b.oom) {
        qk_sbuf_free(&b);
        return qk_error(QK_ERR_NOMEM, "out of memory writing the report");
    }
    page p = { b.s, b.n };
    qk_status st = qk_file_write_atomic(path, write_page, &p);
    qk_sbuf_free(&b);
    return st;
}
