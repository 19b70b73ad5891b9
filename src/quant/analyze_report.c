/* The analysis (analyze.h) as JSON for tools and as a self-contained HTML
 * page (tables and inline SVG, no script, no network) for people. */
#include "qkit/analyze.h"

#include <math.h>
#include <string.h>

static void jnum(FILE *f, const char *key, double v, int comma)
{
    if (isfinite(v))
        fprintf(f, "\"%s\": %.6g%s", key, v, comma ? ", " : "");
    else
        fprintf(f, "\"%s\": null%s", key, comma ? ", " : "");
}

static void jstr(FILE *f, const char *s)
{
    fputc('"', f);
    for (; s && *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", *s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

qk_status qk_analysis_write_json(const qk_analysis *a, FILE *f)
{
    if (!a || !f)
        return qk_error(QK_ERR_ARG, "analysis JSON: no analysis or file");
    fprintf(f, "{\"backend\": ");
    jstr(f, a->backend);
    fprintf(f, ", \"images\": %lld, ", (long long)a->n_images);
    jnum(f, "output_sqnr_db", a->out_sqnr, 1);
    jnum(f, "output_cos", a->out_cos, 1);
    jnum(f, "top1_float", a->top1_float, 1);
    jnum(f, "top1_quant", a->top1_quant, 1);
    jnum(f, "top1_agree", a->agree, 1);
    fprintf(f, "\"ranking\": [");
    for (int i = 0; i < a->n_rank; i++) {
        fprintf(f, "%s", i ? ", " : "");
        jstr(f, a->sites[a->rank[i]].value);
    }
    fprintf(f, "],\n \"sites\": [");
    for (int s = 0; s < a->n_sites; s++) {
        const qk_analyze_site *S = &a->sites[s];
        fprintf(f, "%s\n  {\"value\": ", s ? "," : "");
        jstr(f, S->value);
        fprintf(f, ", \"probe\": ");
        jstr(f, S->probe);
        fprintf(f, ", \"kind\": \"%s\", \"bits\": %d, \"active\": %s, ", S->is_weight ? "weight" : "activation",
                S->bits, S->active ? "true" : "false");
        jnum(f, "sqnr_accumulated_db", S->sqnr_acc, 1);
        jnum(f, "cos_accumulated", S->cos_acc, 1);
        jnum(f, "sqnr_alone_db", S->sqnr_alone, 1);
        jnum(f, "cos_alone", S->cos_alone, 1);
        jnum(f, "output_sqnr_alone_db", S->out_sqnr_alone, 1);
        jnum(f, "clip_lo", S->lo, 1);
        jnum(f, "clip_hi", S->hi, 1);
        jnum(f, "min", S->fmin, 1);
        jnum(f, "max", S->fmax, 1);
        jnum(f, "clipped_fraction", S->clipped, 1);
        jnum(f, "hist_lo", S->hmin, 1);
        jnum(f, "hist_hi", S->hmax, 1);
        fprintf(f, "\"hist\": [");
        for (int k = 0; k < QK_ANALYZE_BINS; k++)
            fprintf(f, "%s%lld", k ? "," : "", (long long)S->hist[k]);
        fprintf(f, "]}");
    }
    fprintf(f, "\n ]}\n");
    return ferror(f) ? qk_error(QK_ERR_IO, "analysis JSON: write failed") : QK_OK;
}

static void html_esc(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else if (*s == '&')
            fputs("&amp;", f);
        else if (*s == '"')
            fputs("&quot;", f);
        else
            fputc(*s, f);
    }
}

/* color: mark < 20 dB red and < 30 dB yellow (alone figures; the
 * accumulated ones are low everywhere in a deep network and stay plain) */
static void cell_db(FILE *f, double v, int color)
{
    if (isinf(v) && v > 0)
        fprintf(f, "<td>&infin;</td>");
    else
        fprintf(f, "<td class=\"%s\">%.1f</td>", !color ? "" : v < 20 ? "bad" : v < 30 ? "warn" : "", v);
}

static double clamp_db(double v) { return !isfinite(v) ? (v > 0 ? 80 : 0) : v < 0 ? 0 : v > 80 ? 80 : v; }

/* The SQNR of every active site along the network: accumulated (line) and
 * alone at the tensor (dots), 0..80 dB. */
static void svg_profile(FILE *f, const qk_analysis *a)
{
    int n = 0;
    for (int s = 0; s < a->n_sites; s++)
        n += a->sites[s].active;
    if (n == 0)
        return;
    double W = 1100, H = 300, L = 50, R = 20, T = 20, B = 40, pw = W - L - R, ph = H - T - B;
    fprintf(f, "<svg width=\"%.0f\" height=\"%.0f\" xmlns=\"http://www.w3.org/2000/svg\" font-size=\"12\">\n", W, H);
    for (int db = 0; db <= 80; db += 20) {
        double y = T + ph * (1 - db / 80.0);
        fprintf(f, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%d dB</text>\n", L, y, W - R, y, L - 4, y + 4, db);
    }
    double dx = n > 1 ? pw / (n - 1) : 0;
    const char *col[3] = { "#c0392b", "#2471a3", "#7d3c98" };
    for (int series = 0; series < 3; series++) {
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%s\"%s points=\"", col[series],
                series == 0 ? "2" : "1.5", series == 2 ? " stroke-dasharray=\"4 3\"" : "");
        for (int s = 0, i = 0; s < a->n_sites; s++) {
            const qk_analyze_site *S = &a->sites[s];
            if (!S->active)
                continue;
            double v = series == 0 ? S->sqnr_acc : series == 1 ? S->sqnr_alone : S->out_sqnr_alone;
            fprintf(f, "%.1f,%.1f ", L + dx * i++, T + ph * (1 - clamp_db(v) / 80.0));
        }
        fprintf(f, "\"/>\n");
    }
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\">site (network order) &rarr;</text>\n", L, H - 22);
    const char *lab[3] = { "accumulated (all quantized)", "alone, at the tensor / layer output",
                           "alone, at the network output" };
    for (int k = 0; k < 3; k++)
        fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"14\" height=\"4\" fill=\"%s\"/><text x=\"%.0f\" y=\"%.0f\">%s"
                "</text>\n", L + 250 + 260 * k, H - 14, col[k], L + 268 + 260 * k, H - 8, lab[k]);
    fprintf(f, "</svg>\n");
}

/* Histogram of one site (log counts) with its clip range. */
static void svg_hist(FILE *f, const qk_analyze_site *S)
{
    double W = 340, H = 130, L = 8, T = 18, ph = 90, pw = W - 2 * L;
    int64_t mx = 1;
    for (int k = 0; k < QK_ANALYZE_BINS; k++)
        mx = S->hist[k] > mx ? S->hist[k] : mx;
    fprintf(f, "<svg width=\"%.0f\" height=\"%.0f\" xmlns=\"http://www.w3.org/2000/svg\" font-size=\"11\">"
            "<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"#fafafa\" stroke=\"#ccc\"/>", W, H, W, H);
    fprintf(f, "<text x=\"%.0f\" y=\"13\">", L);
    html_esc(f, S->value);
    fprintf(f, " (%s, %d bit)</text>", S->is_weight ? "W" : "A", S->bits);
    double bw = pw / QK_ANALYZE_BINS, lm = log1p((double)mx);
    for (int k = 0; k < QK_ANALYZE_BINS; k++) {
        if (!S->hist[k])
            continue;
        double h = ph * log1p((double)S->hist[k]) / lm;
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#5d8aa8\"/>", L + k * bw,
                T + ph - h, bw, h);
    }
    double span = S->hmax - S->hmin;
    for (int e = 0; e < 2; e++) {
        double v = e ? S->hi : S->lo;
        if (!isfinite(v) || span <= 0)
            continue;
        double x = L + pw * (v - S->hmin) / span;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"#c0392b\" stroke-width=\"2\"/>", x,
                T, x, T + ph);
    }
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\">%.3g</text><text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">%.3g</text>",
            L, H - 6, S->hmin, W - L, H - 6, S->hmax);
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\" fill=\"#c0392b\">clip [%.3g, %.3g], %.3f%% "
            "out</text></svg>\n", W / 2, H - 6, S->lo, S->hi, 100 * S->clipped);
}

qk_status qk_analysis_write_html(const qk_analysis *a, const char *title, FILE *f)
{
    if (!a || !f)
        return qk_error(QK_ERR_ARG, "analysis HTML: no analysis or file");
    fprintf(f, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>");
    html_esc(f, title ? title : "qkit analysis");
    fprintf(f, "</title>\n<style>body{font-family:sans-serif;margin:20px;max-width:1150px;color:#222}"
            "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}td{white-space:nowrap}"
            "text-align:right}td:nth-child(2),th:nth-child(2){text-align:left}th{background:#eee}"
            ".bad{background:#f5b7b1}.warn{background:#fcf3cf}.grid{display:flex;flex-wrap:wrap;gap:8px}"
            "p.note{font-size:13px;color:#555}</style></head><body>\n<h1>");
    html_esc(f, title ? title : "qkit analysis");
    fprintf(f, "</h1>\n<p>backend <b>");
    html_esc(f, a->backend);
    fprintf(f, "</b>, %lld images. Network output: SQNR <b>", (long long)a->n_images);
    if (isfinite(a->out_sqnr))
        fprintf(f, "%.1f dB", a->out_sqnr);
    else
        fprintf(f, "&infin;");
    fprintf(f, "</b>, cosine %.5f", a->out_cos);
    if (a->top1_float >= 0)
        fprintf(f, "; top-1 float %.2f%%, quantized %.2f%%", 100 * a->top1_float, 100 * a->top1_quant);
    fprintf(f, "; same class on %.2f%% of the images.</p>\n", 100 * a->agree);
    fprintf(f, "<h2>SQNR along the network</h2>\n");
    svg_profile(f, a);
    fprintf(f, "<p class=\"note\">accumulated: the quantized network against the float one (errors of all earlier "
            "layers included); alone: only that site quantized. A weight site is measured at its layer's output.</p>"
            "\n<h2>Ranking: the sites that hurt most</h2>\n<table><tr><th>#</th><th>site</th><th>kind</th>"
            "<th>bits</th><th>output SQNR, alone (dB)</th><th>SQNR alone (dB)</th><th>SQNR accum. (dB)</th>"
            "<th>cos accum.</th><th>clipped %%</th><th>clip range</th></tr>\n");
    for (int i = 0; i < a->n_rank; i++) {
        const qk_analyze_site *S = &a->sites[a->rank[i]];
        fprintf(f, "<tr><td>%d</td><td>", i + 1);
        html_esc(f, S->value);
        fprintf(f, "</td><td>%s</td><td>%d</td>", S->is_weight ? "weight" : "act", S->bits);
        cell_db(f, S->out_sqnr_alone, 1);
        cell_db(f, S->sqnr_alone, 1);
        cell_db(f, S->sqnr_acc, 0);
        fprintf(f, "<td>%.5f</td><td>%.3f</td><td>[%.3g, %.3g]</td></tr>\n", S->cos_acc, 100 * S->clipped, S->lo,
                S->hi);
    }
    fprintf(f, "</table>\n<h2>Histograms (log counts) and clip ranges (red)</h2>\n<div class=\"grid\">\n");
    for (int i = 0; i < a->n_rank; i++)
        svg_hist(f, &a->sites[a->rank[i]]);
    fprintf(f, "</div>\n</body></html>\n");
    return ferror(f) ? qk_error(QK_ERR_IO, "analysis HTML: write failed") : QK_OK;
}
