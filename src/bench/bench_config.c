/* qkit bench: the YAML config (bench.h) parsed with libyaml's document API,
 * expanded into cells. Every key is checked; errors name the key and line. */
#include "bench_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <yaml.h>

typedef struct pctx {
    yaml_document_t *doc;
    const char *label, *base;
    qk_bench_config *c;
    uint64_t *model_hash;
} pctx;

#define LINE(n) ((int)(n)->start_mark.line + 1)

static qk_status perr(const pctx *p, const yaml_node_t *n, const char *fmt, const char *a, const char *b)
{
    char msg[512];
    snprintf(msg, sizeof msg, fmt, a ? a : "", b ? b : "");
    return qk_error(QK_ERR_FORMAT, "%s:%d: %s", p->label, n ? LINE(n) : 0, msg);
}

static const char *scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static yaml_node_t *node(const pctx *p, int id) { return yaml_document_get_node(p->doc, id); }

/* Every key of mapping n must be in keys (NULL-terminated). */
static qk_status check_keys(const pctx *p, const yaml_node_t *n, const char *where, const char *const *keys)
{
    for (yaml_node_pair_t *kv = n->data.mapping.pairs.start; kv < n->data.mapping.pairs.top; kv++) {
        const yaml_node_t *kn = node(p, kv->key);
        const char *k = scalar(kn);
        int ok = 0;
        for (int i = 0; k && keys[i]; i++)
            ok |= strcmp(k, keys[i]) == 0;
        if (!ok) {
            char list[256] = "";
            for (int i = 0; keys[i]; i++)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", keys[i]);
            char w[320];
            snprintf(w, sizeof w, "%s (allowed: %s)", where, list);
            return perr(p, kn, "unknown key '%s' in %s", k ? k : "(not a string)", w);
        }
    }
    return QK_OK;
}

static yaml_node_t *get(const pctx *p, const yaml_node_t *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *kv = map->data.mapping.pairs.start; kv < map->data.mapping.pairs.top; kv++) {
        const char *k = scalar(node(p, kv->key));
        if (k && strcmp(k, key) == 0)
            return node(p, kv->value);
    }
    return NULL;
}

static qk_status get_int(const pctx *p, const yaml_node_t *n, const char *key, int64_t lo, int64_t hi, int64_t *v)
{
    const char *s = scalar(n);
    char *end;
    errno = 0;
    long long x = s ? strtoll(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || x < lo || x > hi) {
        char r[64];
        snprintf(r, sizeof r, "%lld..%lld", (long long)lo, (long long)hi);
        return perr(p, n, "'%s' must be an integer in %s", key, r);
    }
    *v = x;
    return QK_OK;
}

/* A scalar or a sequence of scalars, as a list of nodes. */
static int as_list(const pctx *p, yaml_node_t *n, yaml_node_t **items, int cap)
{
    if (n->type == YAML_SCALAR_NODE || n->type == YAML_MAPPING_NODE) {
        items[0] = n;
        return 1;
    }
    int k = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top && k < cap; it++)
        items[k++] = node(p, *it);
    return k;
}

static int file_exists(const char *path)
{
    struct stat s;
    return stat(path, &s) == 0 && S_ISREG(s.st_mode);
}

static char *join(const char *base, const char *rel)
{
    if (rel[0] == '/' || !base || !*base)
        return qk_strdup(rel);
    size_t n = strlen(base) + strlen(rel) + 2;
    char *s = qk_malloc(n);
    if (s)
        snprintf(s, n, "%s/%s", base, rel);
    return s;
}

static int is_shipped(const char *name)
{
    return !strcmp(name, "lenet") || !strcmp(name, "resnet8") || !strcmp(name, "mobilenetv2s");
}

static qk_status add_model(pctx *p, yaml_node_t *n, int *index)
{
    static const char *const keys[] = { "name", "path", "data", NULL };
    const char *name = scalar(n), *path = NULL, *data = NULL;
    if (n->type == YAML_MAPPING_NODE) {
        qk_status st = check_keys(p, n, "a model", keys);
        if (st != QK_OK)
            return st;
        name = scalar(get(p, n, "name"));
        path = scalar(get(p, n, "path"));
        data = scalar(get(p, n, "data"));
    }
    if (!name || !*name)
        return perr(p, n, "a model needs a name%s%s", NULL, NULL);
    qk_bench_config *c = p->c;
    for (int i = 0; i < c->n_models; i++)
        if (strcmp(c->models[i].name, name) == 0) {
            if (path || data)
                return perr(p, n, "model '%s' is defined twice%s", name, NULL);
            *index = i;
            return QK_OK;
        }
    char *file = NULL;
    if (path) {
        file = join(p->base, path);
    } else if (is_shipped(name)) {
        char rel[128];
        snprintf(rel, sizeof rel, "models/%s.onnx", name);
        file = file_exists(rel) ? qk_strdup(rel) : NULL;
        if (!file) {
            snprintf(rel, sizeof rel, "../models/%s.onnx", name);
            file = join(p->base, rel);
        }
    } else {
        return qk_error(QK_ERR_NOTFOUND, "%s:%d: unknown model '%s' (shipped: lenet, resnet8, mobilenetv2s; "
                        "or give {name, path, data})", p->label, LINE(n), name);
    }
    if (!file)
        return qk_error(QK_ERR_NOMEM, "out of memory");
    if (!file_exists(file)) {
        qk_status st = qk_error(QK_ERR_NOTFOUND, "%s:%d: model '%s': no file %s", p->label, LINE(n), name, file);
        qk_free(file);
        return st;
    }
    qk_bench_model *m = qk_realloc(c->models, (size_t)(c->n_models + 1) * sizeof *m);
    uint64_t *h = qk_realloc(p->model_hash, (size_t)(c->n_models + 1) * sizeof *h);
    if (m)
        c->models = m;
    if (h)
        p->model_hash = h;
    if (!m || !h) {
        qk_free(file);
        return qk_error(QK_ERR_NOMEM, "out of memory");
    }
    m = &c->models[c->n_models];
    memset(m, 0, sizeof *m);
    m->path = file;
    m->name = qk_strdup(name);
    m->data = data ? join(p->base, data) : NULL;
    c->n_models++;
    if (!m->name || (data && !m->data))
        return qk_error(QK_ERR_NOMEM, "out of memory");
    qk_status st = qk_bench_hash_file(m->path, &p->model_hash[c->n_models - 1]);
    *index = c->n_models - 1;
    return st;
}

static qk_status add_entry(pctx *p, yaml_node_t *n, int *index)
{
    static const char *const keys[] = { "name", "label", "epochs", "epoch_steps", "lr", "calib", "iters", "budget", NULL };
    qk_bench_entry e = { 0 };
    const char *name = scalar(n), *label = NULL;
    qk_status st;
    if (n->type == YAML_MAPPING_NODE) {
        if ((st = check_keys(p, n, "an algorithm", keys)) != QK_OK)
            return st;
        name = scalar(get(p, n, "name"));
        label = scalar(get(p, n, "label"));
        yaml_node_t *v;
        int64_t x;
        if ((v = get(p, n, "epochs"))) {
            if ((st = get_int(p, v, "epochs", 1, 10000, &x)) != QK_OK)
                return st;
            e.epochs = (int)x;
        }
        if ((v = get(p, n, "epoch_steps")) && (st = get_int(p, v, "epoch_steps", 1, 1LL << 40, &e.epoch_steps)) != QK_OK)
            return st;
        if ((v = get(p, n, "calib")) && (st = get_int(p, v, "calib", 1, 1 << 30, &e.calib)) != QK_OK)
            return st;
        if ((v = get(p, n, "iters"))) {
            if ((st = get_int(p, v, "iters", 1, 1000000, &x)) != QK_OK)
                return st;
            e.iters = (int)x;
        }
        if ((v = get(p, n, "lr"))) {
            const char *s = scalar(v);
            char *end;
            e.lr = s ? strtod(s, &end) : 0;
            if (!s || *end || !(e.lr > 0 && e.lr < 100))
                return perr(p, v, "'lr' must be a number in (0, 100)%s%s", NULL, NULL);
        }
        if ((v = get(p, n, "budget"))) {
            const char *s = scalar(v);
            char *end;
            e.budget = s ? strtod(s, &end) : 0;
            if (!s || *end || !(e.budget >= 1 && e.budget <= 16))
                return perr(p, v, "'budget' must be a mean weight width in bits, 1 to 16%s%s", NULL, NULL);
        }
    }
    if (!name)
        return perr(p, n, "an algorithm needs a name%s%s", NULL, NULL);
    if (!(e.row = qk_bench_algo_find(name)))
        return qk_error_context(QK_ERR_NOTFOUND, "%s:%d", p->label, LINE(n));
    if (e.row->kind != QK_BENCH_QAT && (e.epochs || e.epoch_steps || e.lr > 0))
        return perr(p, n, "epochs/epoch_steps/lr apply to QAT algorithms, not '%s'%s", name, NULL);
    if (!e.row->recon && e.iters)
        return perr(p, n, "iters applies to reconstruction algorithms (adaround, brecq, qdrop), not '%s'%s", name, NULL);
    if (!e.row->mp && e.budget > 0)
        return perr(p, n, "budget applies to the mixed-precision algorithm (mp), not '%s'%s", name, NULL);
    if (!label)
        label = name;
    qk_bench_config *c = p->c;
    for (int i = 0; i < c->n_entries; i++) {
        qk_bench_entry *o = &c->entries[i];
        if (strcmp(o->label, label) != 0)
            continue;
        if (n->type == YAML_SCALAR_NODE || (o->row == e.row && o->epochs == e.epochs &&
                                            o->epoch_steps == e.epoch_steps && o->lr == e.lr && o->calib == e.calib &&
                                            o->iters == e.iters && o->budget == e.budget)) {
            *index = i;
            return QK_OK;
        }
        return perr(p, n, "algorithm label '%s' is used twice with different settings (give one a label)%s", label,
                    NULL);
    }
    qk_bench_entry *ne = qk_realloc(c->entries, (size_t)(c->n_entries + 1) * sizeof *ne);
    if (!ne)
        return qk_error(QK_ERR_NOMEM, "out of memory");
    c->entries = ne;
    e.label = qk_strdup(label);
    if (!e.label)
        return qk_error(QK_ERR_NOMEM, "out of memory");
    c->entries[c->n_entries] = e;
    *index = c->n_entries++;
    return QK_OK;
}

static qk_status parse_bits(const pctx *p, const yaml_node_t *n, int *w, int *a)
{
    const char *s = scalar(n);
    char tail;
    if (!s || (sscanf(s, "W%dA%d%c", w, a, &tail) != 2 && sscanf(s, "w%da%d%c", w, a, &tail) != 2) || *w < 1 ||
        *w > 32 || *a < 1 || *a > 32)
        return perr(p, n, "bits '%s': write W<bits>A<bits>, e.g. W8A8%s", s ? s : "(not a string)", NULL);
    return QK_OK;
}

typedef struct block_lists {
    yaml_node_t *models, *algorithms, *backends, *bits, *seeds;
} block_lists;

#define MAXL 256

static qk_status add_cell(pctx *p, const char *block, int mi, int ei, const qk_backend *b, int w, int a,
                          uint64_t seed)
{
    qk_bench_config *c = p->c;
    const qk_bench_entry *e = &c->entries[ei];
    char key[192];
    snprintf(key, sizeof key, "%s/%s/%s/W%dA%d/s%llu", c->models[mi].name, e->label, b->name, w, a,
             (unsigned long long)seed);
    for (int i = 0; i < c->n_cells; i++)
        if (strcmp(c->cells[i].key, key) == 0)
            return QK_OK;
    qk_bench_cell *nc = qk_realloc(c->cells, (size_t)(c->n_cells + 1) * sizeof *nc);
    if (!nc)
        return qk_error(QK_ERR_NOMEM, "out of memory");
    c->cells = nc;
    qk_bench_cell *cell = &c->cells[c->n_cells++];
    memset(cell, 0, sizeof *cell);
    cell->model = mi;
    cell->entry = ei;
    cell->backend = b;
    cell->wbits = w;
    cell->abits = a;
    cell->seed = seed;
    snprintf(cell->block, sizeof cell->block, "%s", block);
    snprintf(cell->key, sizeof cell->key, "%s", key);
    char desc[1024];
    int k = snprintf(desc, sizeof desc, "%016llx|%s|%s|%s|%d|%lld|%.17g|%lld|%s|%d|%d|%llu|%lld|%lld|%s",
                     (unsigned long long)p->model_hash[mi], c->models[mi].data ? c->models[mi].data : "-",
                     e->row->name, e->row->kind == QK_BENCH_QAT ? "qat" : "ptq", e->epochs, (long long)e->epoch_steps,
                     e->lr, (long long)e->calib, b->name, w, a, (unsigned long long)seed, (long long)c->calib,
                     (long long)c->limit, qk_bench_version());
    if (e->row->recon && k > 0 && (size_t)k < sizeof desc) /* (other rows keep their earlier hashes) */
        k += snprintf(desc + k, sizeof desc - (size_t)k, "|iters %d", e->iters);
    if (e->row->mp && k > 0 && (size_t)k < sizeof desc)
        k += snprintf(desc + k, sizeof desc - (size_t)k, "|budget %.17g", e->budget);
    /* a profile whose default PTQ recipe has passes: its PTQ cells' results depend on them
       (--resume reruns cells recorded before the default; other profiles keep their hashes) */
    if (e->row->kind == QK_BENCH_PTQ && (b->cle || b->bias_correct) && k > 0 && (size_t)k < sizeof desc)
        snprintf(desc + k, sizeof desc - (size_t)k, "|default cle %d bias-correct %d", b->cle, b->bias_correct);
    cell->hash = qk_bench_fnv(desc, strlen(desc), 0);
    return QK_OK;
}

static qk_status expand_block(pctx *p, const char *bname, const block_lists *l, yaml_node_t *where)
{
    yaml_node_t *items[MAXL], *bits[64], *seeds[64], *algos[MAXL], *backs[64];
    int mi[MAXL], ei[MAXL];
    const qk_backend *be[64];
    qk_status st;
    if (!l->models || !l->algorithms || !l->backends || !l->bits)
        return perr(p, where, "block '%s' needs models, algorithms, backends and bits%s", bname, NULL);
    int nm = as_list(p, l->models, items, MAXL);
    for (int i = 0; i < nm; i++)
        if ((st = add_model(p, items[i], &mi[i])) != QK_OK)
            return st;
    int na = as_list(p, l->algorithms, algos, MAXL);
    for (int i = 0; i < na; i++)
        if ((st = add_entry(p, algos[i], &ei[i])) != QK_OK)
            return st;
    int nb = 0;
    const char *all = scalar(l->backends);
    if (all && strcmp(all, "all") == 0) {
        for (int i = 0; i < qk_backend_count() && i < 64; i++)
            be[nb++] = qk_backend_get(i);
    } else {
        nb = as_list(p, l->backends, backs, 64);
        for (int i = 0; i < nb; i++) {
            const char *s = scalar(backs[i]);
            if (!s || !(be[i] = qk_backend_find(s)))
                return qk_error_context(QK_ERR_NOTFOUND, "%s:%d", p->label, LINE(backs[i]));
        }
    }
    int nbits = as_list(p, l->bits, bits, 64), w[64], a[64];
    for (int i = 0; i < nbits; i++)
        if ((st = parse_bits(p, bits[i], &w[i], &a[i])) != QK_OK)
            return st;
    uint64_t sv[64] = { 1 };
    int ns = 1;
    if (l->seeds) {
        ns = as_list(p, l->seeds, seeds, 64);
        for (int i = 0; i < ns; i++) {
            int64_t x;
            if ((st = get_int(p, seeds[i], "seeds", 1, 1LL << 40, &x)) != QK_OK)
                return st;
            sv[i] = (uint64_t)x;
        }
    }
    if (!nm || !na || !nb || !nbits || !ns)
        return perr(p, where, "block '%s' has an empty list%s", bname, NULL);
    for (int m = 0; m < nm; m++)
        for (int e = 0; e < na; e++)
            for (int b = 0; b < nb; b++)
                for (int k = 0; k < nbits; k++)
                    for (int s = 0; s < ns; s++)
                        if ((st = add_cell(p, bname, mi[m], ei[e], be[b], w[k], a[k], sv[s])) != QK_OK)
                            return st;
    return QK_OK;
}

static qk_status parse_root(pctx *p, yaml_node_t *root)
{
    static const char *const keys[] = { "name", "calib", "limit", "seeds", "models", "algorithms", "backends",
                                        "bits", "matrix", NULL };
    static const char *const bkeys[] = { "name", "models", "algorithms", "backends", "bits", "seeds", NULL };
    qk_bench_config *c = p->c;
    qk_status st;
    if (!root || root->type != YAML_MAPPING_NODE)
        return perr(p, root, "the config must be a mapping of keys (name, models, algorithms, backends, bits, ...)%s%s",
                    NULL, NULL);
    if ((st = check_keys(p, root, "the config", keys)) != QK_OK)
        return st;
    yaml_node_t *v;
    if ((v = get(p, root, "name"))) {
        const char *s = scalar(v);
        if (!s || !*s || strlen(s) > 100 || strpbrk(s, "\"\\\n"))
            return perr(p, v, "'name' must be a short string%s%s", NULL, NULL);
        qk_free(c->name);
        if (!(c->name = qk_strdup(s)))
            return qk_error(QK_ERR_NOMEM, "out of memory");
    }
    c->calib = 256;
    if ((v = get(p, root, "calib")) && (st = get_int(p, v, "calib", 1, 1 << 30, &c->calib)) != QK_OK)
        return st;
    if ((v = get(p, root, "limit")) && (st = get_int(p, v, "limit", 0, 1LL << 40, &c->limit)) != QK_OK)
        return st;
    block_lists top = { get(p, root, "models"), get(p, root, "algorithms"), get(p, root, "backends"),
                        get(p, root, "bits"), get(p, root, "seeds") };
    int blocks = 0;
    if (top.backends || top.bits) {
        if ((st = expand_block(p, "main", &top, root)) != QK_OK)
            return st;
        blocks++;
    }
    yaml_node_t *mx = get(p, root, "matrix");
    if (mx) {
        if (mx->type != YAML_SEQUENCE_NODE)
            return perr(p, mx, "'matrix' must be a list of blocks%s%s", NULL, NULL);
        for (yaml_node_item_t *it = mx->data.sequence.items.start; it < mx->data.sequence.items.top; it++) {
            yaml_node_t *b = node(p, *it);
            if (b->type != YAML_MAPPING_NODE)
                return perr(p, b, "a matrix block must be a mapping%s%s", NULL, NULL);
            if ((st = check_keys(p, b, "a matrix block", bkeys)) != QK_OK)
                return st;
            block_lists l = top;
            yaml_node_t *x;
            if ((x = get(p, b, "models")))
                l.models = x;
            if ((x = get(p, b, "algorithms")))
                l.algorithms = x;
            if ((x = get(p, b, "seeds")))
                l.seeds = x;
            l.backends = get(p, b, "backends");
            l.bits = get(p, b, "bits");
            char bname[32];
            const char *s = scalar(get(p, b, "name"));
            snprintf(bname, sizeof bname, "%s", s ? s : "");
            if (!s)
                snprintf(bname, sizeof bname, "block%d", blocks + 1);
            if ((st = expand_block(p, bname, &l, b)) != QK_OK)
                return st;
            blocks++;
        }
    }
    if (!blocks)
        return perr(p, root, "no cells: give backends and bits (or a 'matrix' list)%s%s", NULL, NULL);
    return QK_OK;
}

qk_status qk_bench_config_parse(const char *text, size_t len, const char *label, const char *base_dir,
                                qk_bench_config **out)
{
    *out = NULL;
    yaml_parser_t parser;
    yaml_document_t doc;
    pctx p = { &doc, label ? label : "config", base_dir, NULL, NULL };
    if (!yaml_parser_initialize(&parser))
        return qk_error(QK_ERR_NOMEM, "out of memory");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        qk_status st = qk_error(QK_ERR_FORMAT, "%s:%d: YAML: %s %s", p.label, (int)parser.problem_mark.line + 1,
                                parser.problem ? parser.problem : "syntax error", parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        return st;
    }
    qk_status st = QK_OK;
    qk_bench_config *c = qk_calloc(1, sizeof *c);
    if (!c) {
        st = qk_error(QK_ERR_NOMEM, "out of memory");
        goto done;
    }
    p.c = c;
    const char *b = label ? strrchr(label, '/') : NULL;
    char nm[128];
    snprintf(nm, sizeof nm, "%s", b ? b + 1 : label ? label : "bench");
    char *dot = strrchr(nm, '.');
    if (dot && dot != nm)
        *dot = 0;
    if (!(c->name = qk_strdup(nm)) || !(c->path = qk_strdup(label ? label : ""))) {
        st = qk_error(QK_ERR_NOMEM, "out of memory");
        goto done;
    }
    st = parse_root(&p, yaml_document_get_root_node(&doc));
done:
    qk_free(p.model_hash);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    if (st != QK_OK)
        qk_bench_config_free(c);
    else
        *out = c;
    return st;
}

qk_status qk_bench_config_load(const char *path, qk_bench_config **out)
{
    *out = NULL;
    char *text;
    size_t len;
    qk_status st = qk_bench_read_file(path, &text, &len);
    if (st != QK_OK)
        return st;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    else
        snprintf(dir, sizeof dir, ".");
    st = qk_bench_config_parse(text, len, path, dir, out);
    qk_free(text);
    return st;
}

void qk_bench_config_free(qk_bench_config *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->n_models; i++) {
        qk_free(c->models[i].name);
        qk_free(c->models[i].path);
        qk_free(c->models[i].data);
    }
    for (int i = 0; i < c->n_entries; i++)
        qk_free(c->entries[i].label);
    qk_free(c->models);
    qk_free(c->entries);
    qk_free(c->cells);
    qk_free(c->name);
    qk_free(c->path);
    qk_free(c);
}
