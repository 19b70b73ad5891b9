/* The QAT report (qat.h, qk_qat_write_report): per epoch and quantized
 * tensor, the learned clip ((qp - z) s, the largest channel's), the max
 * the last training batch of the epoch reached (|w| for weights) and the
 * percentage of values at or below the clip; as JSON and as a
 * self-contained SVG chart (clip vs max per tensor over the epochs). */
#include "qat_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct rep_row {
    char *name;
    int weight, algo;
    int n;           /* epochs recorded */
    int *epoch;
    float *clip, *max;
    double *pct;
} rep_row;

struct qk_qat_report {
    int n_rows;
    rep_row *rows;
};

void qk_qat_report_free_(qk_qat_report *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n_rows; i++) {
        qk_free(r->rows[i].name);
        qk_free(r->rows[i].epoch);
        qk_free(r->rows[i].clip);
        qk_free(r->rows[i].max);
        qk_free(r->rows[i].pct);
    }
    qk_free(r->rows);
    qk_free(r);
}

static rep_row *row_for(qk_qat_report *r, const char *name, int weight, int algo)
{
    for (int i = 0; i < r->n_rows; i++)
        if (strcmp(r->rows[i].name, name) == 0)
            return &r->rows[i];
    rep_row *rows = qk_realloc(r->rows, (size_t)(r->n_rows + 1) * sizeof *rows);
    if (!rows)
        return NULL;
    r->rows = rows;
    rep_row *w = &rows[r->n_rows];
    memset(w, 0, sizeof *w);
    if (!(w->name = qk_strdup(name)))
        return NULL;
    w->weight = weight;
    w->algo = algo;
    r->n_rows++;
    return w;
}

qk_status qk_qat_report_record_(qk_qat_report **rp, const qk_graph *g, int epoch)
{
    if (!*rp && !(*rp = qk_calloc(1, sizeof **rp)))
        return qk_error(QK_ERR_NOMEM, "QAT report: out of memory");
    qk_qat_report *r = *rp;
    for (int k = 0; k < g->n_nodes; k++) {
        const qk_node *n = &g->nodes[k];
        if (!qk_node_is_in(n, "ai.qkit", "QkLearnQuant"))
            continue;
        qk_lq_observed o;
        qk_lq_get_observed(n, &o);
        if (!o.valid)
            continue;
        rep_row *w = row_for(r, g->values[n->in[0]].name, (int)qk_node_int(n, "weight", 0),
                             (int)qk_node_int(n, "algo", 0));
        if (!w)
            return qk_error(QK_ERR_NOMEM, "QAT report: out of memory");
        if (w->n > 0 && w->epoch[w->n - 1] == epoch)
            continue;
        size_t m = (size_t)w->n + 1;
        int *e = qk_realloc(w->epoch, m * sizeof *e);
        if (e)
            w->epoch = e;
        float *c = e ? qk_realloc(w->clip, m * sizeof *c) : NULL;
        if (c)
            w->clip = c;
        float *x = c ? qk_realloc(w->max, m * sizeof *x) : NULL;
        if (x)
            w->max = x;
        double *p = x ? qk_realloc(w->pct, m * sizeof *p) : NULL;
        if (!p)
            return qk_error(QK_ERR_NOMEM, "QAT report: out of memory");
        w->pct = p;
        w->epoch[w->n] = epoch;
        w->clip[w->n] = o.clip;
        w->max[w->n] = o.max;
        w->pct[w->n] = 100.0 * o.frac_in;
        w->n++;
    }
    return QK_OK;
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        if ((unsigned char)*s >= 0x20)
            fputc(*s, f);
    }
    fputc('"', f);
}

static void write_json(FILE *f, const qk_qat_report *r)
{
    fprintf(f, "{\n  \"tensors\": [");
    for (int i = 0; i < r->n_rows; i++) {
        const rep_row *w = &r->rows[i];
        fprintf(f, "%s\n    {\"name\": ", i ? "," : "");
        json_str(f, w->name);
        fprintf(f, ", \"kind\": \"%s\", \"algo\": \"%s\", \"epochs\": [", w->weight ? "weight" : "activation",
                qk_qat_algo_name((qk_qat_algo)w->algo));
        for (int e = 0; e < w->n; e++)
            fprintf(f, "%s{\"epoch\": %d, \"clip\": %.6g, \"max\": %.6g, \"percentile\": %.4f}", e ? ", " : "",
                    w->epoch[e], (double)w->clip[e], (double)w->max[e], w->pct[e]);
        fprintf(f, "]}");
    }
    fprintf(f, "\n  ]\n}\n");
}

static void xml_str(FILE *f, const char *s)
{
    for (; *s; s++)
        if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else if (*s == '&')
            fputs("&amp;", f);
        else
            fputc(*s, f);
}

/* Small multiples: one panel per tensor, epochs on x, clip (solid blue) and
 * max (dashed orange) on y from 0 to the panel's largest value. */
static void write_svg(FILE *f, const qk_qat_report *r)
{
    const int cols = 3, pw = 320, ph = 200, ml = 52, mr = 12, mt = 34, mb = 34, head = 56;
    int rows = (r->n_rows + cols - 1) / cols;
    int W = cols * pw, H = head + (rows ? rows : 1) * ph;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
            "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            W, H, W, H);
    fprintf(f, "<text x=\"12\" y=\"24\" font-size=\"16\" font-weight=\"bold\">qkit qat: learned clip vs observed "
            "max per quantized tensor, by epoch</text>\n<line x1=\"14\" y1=\"40\" x2=\"40\" y2=\"40\" "
            "stroke=\"#1f77b4\" stroke-width=\"2\"/><text x=\"46\" y=\"44\">clip (qp - z) s</text>\n<line x1=\"160\" "
            "y1=\"40\" x2=\"186\" y2=\"40\" stroke=\"#ff7f0e\" stroke-width=\"2\" stroke-dasharray=\"5,3\"/><text "
            "x=\"192\" y=\"44\">observed max (|w| for weights)</text>\n<text x=\"420\" y=\"44\">label: %% of values "
            "at or below the clip (last epoch)</text>\n");
    for (int i = 0; i < r->n_rows; i++) {
        const rep_row *w = &r->rows[i];
        int x0 = (i % cols) * pw, y0 = head + (i / cols) * ph;
        int px = x0 + ml, py = y0 + mt, cw = pw - ml - mr, chh = ph - mt - mb;
        double top = 0;
        for (int e = 0; e < w->n; e++) {
            top = w->clip[e] > top ? w->clip[e] : top;
            top = w->max[e] > top ? w->max[e] : top;
        }
        top = top > 0 && isfinite(top) ? top * 1.1 : 1;
        int e0 = w->n ? w->epoch[0] : 0, e1 = w->n ? w->epoch[w->n - 1] : 1;
        double span = e1 > e0 ? e1 - e0 : 1;
        fprintf(f, "<g>\n<text x=\"%d\" y=\"%d\" font-weight=\"bold\">%s ", x0 + 8, y0 + 18, w->weight ? "W" : "A");
        xml_str(f, w->name);
        fprintf(f, " (%s)</text>\n", qk_qat_algo_name((qk_qat_algo)w->algo));
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#999\"/>\n", px, py, cw,
                chh);
        for (int t = 0; t <= 2; t++) {
            double v = top * t / 2;
            int yy = py + chh - (int)(chh * t / 2);
            fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\" font-size=\"10\">%.3g</text>\n", px - 4, yy + 4, v);
        }
        for (int e = 0; e < w->n; e++) {
            int xx = px + (int)(cw * (w->epoch[e] - e0) / span);
            fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-size=\"10\">%d</text>\n", xx, py + chh + 14,
                    w->epoch[e]);
        }
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-size=\"10\">epoch</text>\n", px + cw / 2,
                py + chh + 27);
        for (int k = 0; k < 2; k++) {
            const float *v = k ? w->max : w->clip;
            fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"", k ? "#ff7f0e" : "#1f77b4",
                    k ? " stroke-dasharray=\"5,3\"" : "");
            for (int e = 0; e < w->n; e++)
                fprintf(f, "%d,%d ", px + (int)(cw * (w->epoch[e] - e0) / span),
                        py + chh - (int)(chh * (isfinite(v[e]) ? v[e] : 0) / top));
            fprintf(f, "\"/>\n");
            for (int e = 0; e < w->n; e++)
                fprintf(f, "<circle cx=\"%d\" cy=\"%d\" r=\"3\" fill=\"%s\"/>\n",
                        px + (int)(cw * (w->epoch[e] - e0) / span),
                        py + chh - (int)(chh * (isfinite(v[e]) ? v[e] : 0) / top), k ? "#ff7f0e" : "#1f77b4");
        }
        if (w->n)
            fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\" font-size=\"11\">%.2f%% kept</text>\n", px + cw - 4,
                    py + 14, w->pct[w->n - 1]);
        fprintf(f, "</g>\n");
    }
    fprintf(f, "</svg>\n");
}

/* Write through a temporary file renamed into place. */
static qk_status write_file(const char *path, const qk_qat_report *r, int svg)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return qk_error(QK_ERR_IO, "cannot write '%s'", tmp);
    if (svg)
        write_svg(f, r);
    else
        write_json(f, r);
    int bad = ferror(f);
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        remove(tmp);
        return qk_error(QK_ERR_IO, "cannot write '%s'", path);
    }
    return QK_OK;
}

qk_status qk_qat_write_report(qk_qat *q, const char *json_path, const char *svg_path)
{
    qk_qat_report *r = *qk_qat_report_(q);
    if (!r || r->n_rows == 0)
        return qk_error(QK_ERR_STATE, "QAT report: nothing recorded (set report = 1 before qk_qat_train)");
    qk_status st = json_path ? write_file(json_path, r, 0) : QK_OK;
    if (st == QK_OK && svg_path)
        st = write_file(svg_path, r, 1);
    return st;
}
