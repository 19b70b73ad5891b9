/* qkit bench: reading results.jsonl (each line parsed with libyaml: JSON is
 * YAML's flow syntax) and the MQBench metrics computed from it. */
#include "bench_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

static const char *sval(yaml_document_t *d, yaml_node_t *map, const char *key, yaml_node_t **nd)
{
    for (yaml_node_pair_t *kv = map->data.mapping.pairs.start; kv < map->data.mapping.pairs.top; kv++) {
        yaml_node_t *k = yaml_document_get_node(d, kv->key), *v = yaml_document_get_node(d, kv->value);
        if (k->type == YAML_SCALAR_NODE && strcmp((const char *)k->data.scalar.value, key) == 0) {
            if (nd)
                *nd = v;
            return v->type == YAML_SCALAR_NODE ? (const char *)v->data.scalar.value : NULL;
        }
    }
    if (nd)
        *nd = NULL;
    return NULL;
}

static double num(const char *s)
{
    if (!s || !strcmp(s, "null") || !*s)
        return NAN;
    char *e;
    double v = strtod(s, &e);
    return *e ? NAN : v;
}

#define COPY(dst, src) snprintf(dst, sizeof dst, "%s", (src) ? (src) : "")

static qk_status parse_row(yaml_document_t *d, yaml_node_t *root, const char *path, int line, qk_bench_row *r)
{
    static const char *const need[] = { "key", "hash", "status", "model", "algo", "backend", "wbits", "abits", NULL };
    for (int i = 0; need[i]; i++)
        if (!sval(d, root, need[i], NULL))
            return qk_error(QK_ERR_FORMAT, "%s:%d: not a qkit bench result (no field '%s')", path, line, need[i]);
    memset(r, 0, sizeof *r);
    r->line = line;
    COPY(r->key, sval(d, root, "key", NULL));
    COPY(r->block, sval(d, root, "block", NULL));
    COPY(r->model, sval(d, root, "model", NULL));
    COPY(r->algo, sval(d, root, "algo", NULL));
    COPY(r->row, sval(d, root, "row", NULL));
    COPY(r->kind, sval(d, root, "kind", NULL));
    COPY(r->backend, sval(d, root, "backend", NULL));
    COPY(r->status, sval(d, root, "status", NULL));
    COPY(r->reason, sval(d, root, "reason", NULL));
    COPY(r->real_reason, sval(d, root, "real_reason", NULL));
    COPY(r->cpu, sval(d, root, "cpu", NULL));
    COPY(r->qkit, sval(d, root, "qkit", NULL));
    COPY(r->commit, sval(d, root, "commit", NULL));
    r->hash = strtoull(sval(d, root, "hash", NULL), NULL, 16);
    const char *s = sval(d, root, "seed", NULL);
    r->seed = s ? strtoull(s, NULL, 10) : 1;
    r->wbits = atoi(sval(d, root, "wbits", NULL));
    r->abits = atoi(sval(d, root, "abits", NULL));
    s = sval(d, root, "threads", NULL);
    r->threads = s ? atoi(s) : 0;
    r->fp32 = num(sval(d, root, "fp32_top1", NULL));
    r->fake = num(sval(d, root, "fake_top1", NULL));
    r->real = num(sval(d, root, "real_top1", NULL));
    r->gap = num(sval(d, root, "hw_gap", NULL));
    r->start = num(sval(d, root, "start_top1", NULL));
    r->seconds = num(sval(d, root, "seconds", NULL));
    s = sval(d, root, "images", NULL);
    r->images = s ? atoll(s) : 0;
    yaml_node_t *cl;
    sval(d, root, "clips", &cl);
    if (cl && cl->type == YAML_SEQUENCE_NODE) {
        int n = (int)(cl->data.sequence.items.top - cl->data.sequence.items.start);
        r->clips = qk_calloc((size_t)(n > 0 ? n : 1), sizeof *r->clips);
        if (!r->clips)
            return qk_error(QK_ERR_NOMEM, "out of memory");
        for (yaml_node_item_t *it = cl->data.sequence.items.start; it < cl->data.sequence.items.top; it++) {
            yaml_node_t *c = yaml_document_get_node(d, *it);
            if (c->type != YAML_MAPPING_NODE)
                continue;
            qk_bench_clip *k = &r->clips[r->n_clips++];
            COPY(k->site, sval(d, c, "site", NULL));
            k->start = num(sval(d, c, "start", NULL));
            k->learned = num(sval(d, c, "learned", NULL));
        }
    }
    return QK_OK;
}

static void row_free(qk_bench_row *r) { qk_free(r->clips); }

qk_status qk_bench_results_load(const char *path, const char *config, qk_bench_results *out)
{
    memset(out, 0, sizeof *out);
    char *text;
    size_t len;
    qk_status st = qk_bench_read_file(path, &text, &len);
    if (st != QK_OK)
        return st;
    int line = 0, cap = 0;
    char *p = text;
    while (st == QK_OK && p < text + len) {
        line++;
        char *nl = memchr(p, '\n', (size_t)(text + len - p));
        if (!nl) {
            st = qk_error(QK_ERR_FORMAT, "%s:%d: line cut short (no newline at the end of the file)", path, line);
            break;
        }
        yaml_parser_t ps;
        yaml_document_t doc;
        if (!yaml_parser_initialize(&ps)) {
            st = qk_error(QK_ERR_NOMEM, "out of memory");
            break;
        }
        yaml_parser_set_input_string(&ps, (const unsigned char *)p, (size_t)(nl - p));
        if (!yaml_parser_load(&ps, &doc)) {
            st = qk_error(QK_ERR_FORMAT, "%s:%d: corrupt line (%s at column %d)", path, line,
                          ps.problem ? ps.problem : "syntax error", (int)ps.problem_mark.column + 1);
            yaml_parser_delete(&ps);
            break;
        }
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        if (!root || root->type != YAML_MAPPING_NODE) {
            st = qk_error(QK_ERR_FORMAT, "%s:%d: corrupt line (not a JSON object)", path, line);
        } else if (line == 1) {
            const char *cfg = sval(&doc, root, "config", NULL);
            if (!sval(&doc, root, "qkit_bench", NULL) || !cfg)
                st = qk_error(QK_ERR_FORMAT, "%s:1: not a qkit bench results file (no qkit_bench header)", path);
            else if (config && strcmp(cfg, config) != 0)
                st = qk_error(QK_ERR_STATE, "%s:1: results of config '%s', not '%s': use another --out", path, cfg,
                              config);
            else
                snprintf(out->config, sizeof out->config, "%s", cfg);
        } else {
            qk_bench_row r;
            if ((st = parse_row(&doc, root, path, line, &r)) == QK_OK) {
                for (int i = 0; i < out->n; i++)
                    if (strcmp(out->rows[i].key, r.key) == 0) { /* last line wins */
                        row_free(&out->rows[i]);
                        memmove(&out->rows[i], &out->rows[i + 1], (size_t)(out->n - i - 1) * sizeof r);
                        out->n--;
                        break;
                    }
                if (out->n == cap) {
                    cap = cap ? 2 * cap : 64;
                    qk_bench_row *nr = qk_realloc(out->rows, (size_t)cap * sizeof *nr);
                    if (!nr) {
                        row_free(&r);
                        st = qk_error(QK_ERR_NOMEM, "out of memory");
                    } else {
                        out->rows = nr;
                    }
                }
                if (st == QK_OK)
                    out->rows[out->n++] = r;
            }
        }
        yaml_document_delete(&doc);
        yaml_parser_delete(&ps);
        p = nl + 1;
    }
    if (st == QK_OK && line == 0)
        st = qk_error(QK_ERR_FORMAT, "%s: empty results file", path);
    qk_free(text);
    if (st != QK_OK)
        qk_bench_results_free(out);
    return st;
}

void qk_bench_results_free(qk_bench_results *r)
{
    for (int i = 0; r && i < r->n; i++)
        row_free(&r->rows[i]);
    if (r) {
        qk_free(r->rows);
        r->rows = NULL;
        r->n = 0;
    }
}

/* ---- metrics ---- */
typedef struct acc { qk_bench_stat *s; double *sum, *sq; int n, cap; } acc;

static int acc_add(acc *a, const char *algo, const char *model, const char *backend, int w, int ab, double v)
{
    if (!isfinite(v))
        return 0;
    int i;
    for (i = 0; i < a->n; i++) {
        qk_bench_stat *s = &a->s[i];
        if (!strcmp(s->algo, algo) && !strcmp(s->model, model) && !strcmp(s->backend, backend) && s->wbits == w &&
            s->abits == ab)
            break;
    }
    if (i == a->n) {
        if (a->n == a->cap) {
            int cap = a->cap ? 2 * a->cap : 32;
            qk_bench_stat *s = qk_realloc(a->s, (size_t)cap * sizeof *s);
            double *sum = s ? qk_realloc(a->sum, (size_t)cap * sizeof *sum) : NULL;
            if (s)
                a->s = s;
            if (sum)
                a->sum = sum;
            double *sq = sum ? qk_realloc(a->sq, (size_t)cap * sizeof *sq) : NULL;
            if (!sq)
                return -1;
            a->sq = sq;
            a->cap = cap;
        }
        qk_bench_stat *s = &a->s[a->n++];
        memset(s, 0, sizeof *s);
        COPY(s->algo, algo);
        COPY(s->model, model);
        COPY(s->backend, backend);
        s->wbits = w;
        s->abits = ab;
        s->min = INFINITY;
        s->max = -INFINITY;
        a->sum[i] = a->sq[i] = 0;
    }
    qk_bench_stat *s = &a->s[i];
    s->n++;
    a->sum[i] += v;
    a->sq[i] += v * v;
    s->min = v < s->min ? v : s->min;
    s->max = v > s->max ? v : s->max;
    return 0;
}

static void acc_finish(acc *a, qk_bench_stat **out, int *n)
{
    for (int i = 0; i < a->n; i++) {
        qk_bench_stat *s = &a->s[i];
        s->mean = a->sum[i] / s->n;
        double var = a->sq[i] / s->n - s->mean * s->mean;
        s->std = var > 0 ? sqrt(var) : 0;
    }
    qk_free(a->sum);
    qk_free(a->sq);
    *out = a->s;
    *n = a->n;
}

static int ok(const qk_bench_row *r) { return !strcmp(r->status, "ok"); }
static int academic(const qk_bench_row *r) { return !strcmp(r->backend, "academic"); }

qk_status qk_bench_metrics_compute(const qk_bench_results *r, qk_bench_metrics *m)
{
    memset(m, 0, sizeof *m);
    acc hw = { 0 }, arch = { 0 }, gap = { 0 }, ac = { 0 }, acad = { 0 };
    int bad = 0;
    for (int i = 0; i < r->n; i++) {
        const qk_bench_row *x = &r->rows[i];
        if (!ok(x))
            continue;
        if (!academic(x))
            bad |= acc_add(&hw, x->algo, x->model, "", x->wbits, x->abits, x->fake);
        else
            bad |= acc_add(&ac, x->algo, x->model, "academic", x->wbits, x->abits, x->fake);
        bad |= acc_add(&arch, x->algo, "", x->backend, x->wbits, x->abits, x->fake);
        bad |= acc_add(&gap, x->algo, x->model, x->backend, x->wbits, x->abits, x->gap);
    }
    qk_bench_stat *acs;
    int n_ac;
    acc_finish(&ac, &acs, &n_ac);
    for (int i = 0; i < r->n; i++) { /* academic accuracy minus each hardware profile's */
        const qk_bench_row *x = &r->rows[i];
        if (!ok(x) || academic(x))
            continue;
        for (int k = 0; k < n_ac; k++)
            if (!strcmp(acs[k].algo, x->algo) && !strcmp(acs[k].model, x->model) && acs[k].wbits == x->wbits &&
                acs[k].abits == x->abits)
                bad |= acc_add(&acad, x->algo, x->model, x->backend, x->wbits, x->abits, acs[k].mean - x->fake);
    }
    qk_free(acs);
    acc_finish(&hw, &m->hw_robust, &m->n_hw);
    acc_finish(&arch, &m->arch_robust, &m->n_arch);
    acc_finish(&gap, &m->hw_gap, &m->n_gap);
    acc_finish(&acad, &m->acad_gap, &m->n_acad);
    if (bad) {
        qk_bench_metrics_free(m);
        return qk_error(QK_ERR_NOMEM, "out of memory");
    }
    return QK_OK;
}

void qk_bench_metrics_free(qk_bench_metrics *m)
{
    qk_free(m->hw_robust);
    qk_free(m->arch_robust);
    qk_free(m->acad_gap);
    qk_free(m->hw_gap);
    memset(m, 0, sizeof *m);
}
