/* Graph building: values, nodes, attributes, metadata, topological order. */
#include "qkit/graph.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

qk_status qk_graph_create(qk_graph **out)
{
    *out = qk_calloc(1, sizeof(qk_graph));
    if (!*out)
        return qk_error(QK_ERR_NOMEM, "graph: out of memory");
    (*out)->opset = 13;
    return QK_OK;
}

static void attr_free(qk_attr *a)
{
    qk_free(a->name);
    qk_free(a->s);
    qk_free(a->ints);
    qk_free(a->floats);
    if (a->t) {
        qk_tensor_free(a->t);
        qk_free(a->t);
    }
    memset(a, 0, sizeof *a);
}

void qk_node_clear(qk_node *n)
{
    if (n->op && n->op->destroy)
        n->op->destroy(n);
    for (int a = 0; a < n->n_attr; a++)
        attr_free(&n->attr[a]);
    qk_free(n->attr);
    qk_free(n->name);
    qk_free(n->op_type);
    qk_free(n->domain);
    qk_free(n->in);
    qk_free(n->out);
    memset(n, 0, sizeof *n);
}

void qk_graph_destroy(qk_graph *g)
{
    if (!g)
        return;
    qk_graph_unplan(g);
    for (int i = 0; i < g->n_nodes; i++)
        qk_node_clear(&g->nodes[i]);
    for (int i = 0; i < g->n_values; i++) {
        qk_value *v = &g->values[i];
        qk_free(v->name);
        qk_tensor_free(&v->t);
        qk_tensor_free(&v->grad);
    }
    for (int i = 0; i < g->n_meta; i++) {
        qk_free(g->meta_keys[i]);
        qk_free(g->meta_vals[i]);
    }
    qk_free(g->meta_keys);
    qk_free(g->meta_vals);
    qk_free(g->values);
    qk_free(g->nodes);
    qk_free(g->inputs);
    qk_free(g->outputs);
    qk_free(g->order);
    qk_free(g->name);
    qk_free(g);
}

int qk_graph_find_value(const qk_graph *g, const char *name)
{
    for (int i = 0; i < g->n_values; i++)
        if (strcmp(g->values[i].name, name) == 0)
            return i;
    return -1;
}

int qk_graph_find_node(const qk_graph *g, const char *name)
{
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i].name && strcmp(g->nodes[i].name, name) == 0)
            return i;
    return -1;
}

char *qk_graph_unique_name(const qk_graph *g, const char *base)
{
    size_t n = strlen(base) + 24;
    char *s = qk_malloc(n);
    if (!s)
        return NULL;
    snprintf(s, n, "%s", base);
    for (int k = 1; qk_graph_find_value(g, s) >= 0 || qk_graph_find_node(g, s) >= 0; k++)
        snprintf(s, n, "%s_%d", base, k);
    return s;
}

int qk_graph_add_value(qk_graph *g, const char *name, qk_value_kind kind)
{
    if (!name || !name[0]) {
        qk_error(QK_ERR_ARG, "graph: a value needs a non-empty name");
        return -1;
    }
    if (qk_graph_find_value(g, name) >= 0) {
        qk_error(QK_ERR_FORMAT, "graph: value name '%s' is defined twice", name);
        return -1;
    }
    if (g->n_values == g->cap_values) {
        int cap = g->cap_values ? 2 * g->cap_values : 64;
        qk_value *nv = qk_realloc(g->values, (size_t)cap * sizeof *nv);
        if (!nv) {
            qk_error(QK_ERR_NOMEM, "graph: out of memory");
            return -1;
        }
        g->values = nv;
        g->cap_values = cap;
    }
    qk_value *v = &g->values[g->n_values];
    memset(v, 0, sizeof *v);
    v->name = qk_strdup(name);
    if (!v->name) {
        qk_error(QK_ERR_NOMEM, "graph: out of memory");
        return -1;
    }
    v->kind = kind;
    v->producer = -1;
    return g->n_values++;
}

static int push_int(int **arr, int *n, int v)
{
    int *na = qk_realloc(*arr, (size_t)(*n + 1) * sizeof(int));
    if (!na)
        return -1;
    na[(*n)++] = v;
    *arr = na;
    return 0;
}

int qk_graph_add_input(qk_graph *g, const char *name, qk_dtype dt, int ndim, const int64_t *dims)
{
    int id = qk_graph_add_value(g, name, QK_VALUE_INPUT);
    if (id < 0)
        return -1;
    qk_tensor_set_shape(&g->values[id].t, dt, ndim, dims);
    if (ndim > 0 && dims[0] < 0) {
        g->values[id].dyn_batch = 1;
        g->values[id].t.dims[0] = 1;
    }
    if (push_int(&g->inputs, &g->n_inputs, id) < 0) {
        qk_error(QK_ERR_NOMEM, "graph: out of memory");
        return -1;
    }
    return id;
}

int qk_graph_add_init(qk_graph *g, const char *name, qk_value_kind kind, qk_tensor *t)
{
    int id = qk_graph_add_value(g, name, kind);
    if (id < 0)
        return -1;
    g->values[id].t = *t;
    memset(t, 0, sizeof *t);
    return id;
}

qk_status qk_graph_add_output(qk_graph *g, int value)
{
    if (value < 0 || value >= g->n_values)
        return qk_error(QK_ERR_ARG, "graph: output value index %d out of range", value);
    if (push_int(&g->outputs, &g->n_outputs, value) < 0)
        return qk_error(QK_ERR_NOMEM, "graph: out of memory");
    return QK_OK;
}

int qk_graph_add_node(qk_graph *g, const char *op_type, const char *name,
                      int n_in, const int *in, int n_out, const int *out)
{
    for (int i = 0; i < n_in; i++)
        if (in[i] < -1 || in[i] >= g->n_values) {
            qk_error(QK_ERR_ARG, "graph: node '%s' input %d has bad value index %d",
                     name ? name : op_type, i, in[i]);
            return -1;
        }
    for (int i = 0; i < n_out; i++) {
        if (out[i] < 0 || out[i] >= g->n_values) {
            qk_error(QK_ERR_ARG, "graph: node '%s' output %d has bad value index %d",
                     name ? name : op_type, i, out[i]);
            return -1;
        }
        if (g->values[out[i]].producer >= 0 || g->values[out[i]].kind != QK_VALUE_ACT) {
            qk_error(QK_ERR_FORMAT, "graph: value '%s' is produced twice (node '%s')",
                     g->values[out[i]].name, name ? name : op_type);
            return -1;
        }
    }
    if (g->n_nodes == g->cap_nodes) {
        int cap = g->cap_nodes ? 2 * g->cap_nodes : 32;
        qk_node *nn = qk_realloc(g->nodes, (size_t)cap * sizeof *nn);
        if (!nn) {
            qk_error(QK_ERR_NOMEM, "graph: out of memory");
            return -1;
        }
        g->nodes = nn;
        g->cap_nodes = cap;
    }
    int id = g->n_nodes;
    qk_node *n = &g->nodes[id];
    memset(n, 0, sizeof *n);
    char auto_name[64];
    if (!name || !name[0]) {
        snprintf(auto_name, sizeof auto_name, "%s_%d", op_type, id);
        name = auto_name;
    }
    n->name = qk_strdup(name);
    n->op_type = qk_strdup(op_type);
    n->in = qk_malloc((size_t)(n_in ? n_in : 1) * sizeof(int));
    n->out = qk_malloc((size_t)(n_out ? n_out : 1) * sizeof(int));
    if (!n->name || !n->op_type || !n->in || !n->out) {
        qk_free(n->name);
        qk_free(n->op_type);
        qk_free(n->in);
        qk_free(n->out);
        qk_error(QK_ERR_NOMEM, "graph: out of memory");
        return -1;
    }
    n->n_in = n_in;
    n->n_out = n_out;
    if (n_in > 0)
        memcpy(n->in, in, (size_t)n_in * sizeof(int));
    if (n_out > 0)
        memcpy(n->out, out, (size_t)n_out * sizeof(int));
    for (int i = 0; i < n_out; i++)
        g->values[out[i]].producer = id;
    g->n_nodes++;
    qk_free(g->order);
    g->order = NULL;
    return id;
}

qk_status qk_graph_set_meta(qk_graph *g, const char *key, const char *val)
{
    for (int i = 0; i < g->n_meta; i++)
        if (strcmp(g->meta_keys[i], key) == 0) {
            char *d = qk_strdup(val);
            if (!d)
                return qk_error(QK_ERR_NOMEM, "graph: out of memory");
            qk_free(g->meta_vals[i]);
            g->meta_vals[i] = d;
            return QK_OK;
        }
    char **k = qk_realloc(g->meta_keys, (size_t)(g->n_meta + 1) * sizeof(char *));
    if (!k)
        return qk_error(QK_ERR_NOMEM, "graph: out of memory");
    g->meta_keys = k;
    char **v = qk_realloc(g->meta_vals, (size_t)(g->n_meta + 1) * sizeof(char *));
    if (!v)
        return qk_error(QK_ERR_NOMEM, "graph: out of memory");
    g->meta_vals = v;
    k[g->n_meta] = qk_strdup(key);
    v[g->n_meta] = qk_strdup(val);
    if (!k[g->n_meta] || !v[g->n_meta]) {
        qk_free(k[g->n_meta]);
        qk_free(v[g->n_meta]);
        return qk_error(QK_ERR_NOMEM, "graph: out of memory");
    }
    g->n_meta++;
    return QK_OK;
}

const char *qk_graph_get_meta(const qk_graph *g, const char *key)
{
    for (int i = 0; i < g->n_meta; i++)
        if (strcmp(g->meta_keys[i], key) == 0)
            return g->meta_vals[i];
    return NULL;
}

int qk_domain_is_default(const char *domain)
{
    return !domain || !domain[0] || strcmp(domain, "ai.onnx") == 0;
}

int qk_node_is(const qk_node *n, const char *type)
{
    return qk_domain_is_default(n->domain) && strcmp(n->op_type, type) == 0;
}

int qk_node_is_in(const qk_node *n, const char *domain, const char *type)
{
    int same = qk_domain_is_default(domain) ? qk_domain_is_default(n->domain)
                                            : n->domain && strcmp(n->domain, domain) == 0;
    return same && strcmp(n->op_type, type) == 0;
}

static qk_status meta_float(const char *s, const char *key, float *out)
{
    char *end;
    double d = strtod(s, &end);
    while (*end == ' ')
        end++;
    if (end == s || *end)
        return qk_error(QK_ERR_FORMAT, "graph metadata %s = '%s' is not a number", key, s);
    *out = (float)d;
    return QK_OK;
}

/* A list of up to max comma-separated numbers. */
static qk_status meta_floats(const char *s, const char *key, int max, int *n, float *out)
{
    *n = 0;
    const char *p = s;
    for (;;) {
        char *end;
        double d = strtod(p, &end);
        if (end == p || *n >= max)
            return qk_error(QK_ERR_FORMAT, "graph metadata %s = '%s' is not a number (or a list of at most %d)", key, s,
                            max);
        out[(*n)++] = (float)d;
        while (*end == ' ')
            end++;
        if (!*end)
            return QK_OK;
        if (*end != ',')
            return qk_error(QK_ERR_FORMAT, "graph metadata %s = '%s' is not a number", key, s);
        p = end + 1;
    }
}

qk_status qk_graph_get_norm_ch(const qk_graph *g, int max, int *nc, float *mean, float *std)
{
    const char *m = qk_graph_get_meta(g, "qkit.norm.mean");
    const char *s = qk_graph_get_meta(g, "qkit.norm.std");
    if (!m && !s)
        return QK_ERR_NOTFOUND;
    if (!m || !s)
        return qk_error(QK_ERR_FORMAT, "graph metadata has only one of qkit.norm.mean and qkit.norm.std");
    float rm[16], rs[16];
    int nm, ns;
    if (max > 16)
        max = 16;
    qk_status st = meta_floats(m, "qkit.norm.mean", max, &nm, rm);
    if (st == QK_OK)
        st = meta_floats(s, "qkit.norm.std", max, &ns, rs);
    if (st != QK_OK)
        return st;
    if (nm != ns && nm != 1 && ns != 1)
        return qk_error(QK_ERR_FORMAT, "graph metadata qkit.norm.mean has %d values, qkit.norm.std %d", nm, ns);
    int n = nm > ns ? nm : ns;
    for (int k = 0; k < n; k++)
        if (!(rs[ns == 1 ? 0 : k] > 0.0f))
            return qk_error(QK_ERR_FORMAT, "graph metadata qkit.norm.std = %s must be > 0", s);
    for (int k = 0; k < n; k++) {
        mean[k] = rm[nm == 1 ? 0 : k];
        std[k] = rs[ns == 1 ? 0 : k];
    }
    *nc = n;
    return QK_OK;
}

qk_status qk_graph_get_norm(const qk_graph *g, float *mean, float *std)
{
    float m[16], s[16];
    int n;
    qk_status st = qk_graph_get_norm_ch(g, 16, &n, m, s);
    if (st != QK_OK)
        return st;
    for (int k = 1; k < n; k++)
        if (m[k] != m[0] || s[k] != s[0])
            return qk_error(QK_ERR_FORMAT, "graph metadata qkit.norm.* holds per-channel values; read them with "
                            "qk_graph_get_norm_ch");
    *mean = m[0];
    *std = s[0];
    return QK_OK;
}

static qk_status set_list(qk_graph *g, const char *key, int nc, const float *v)
{
    char buf[16 * 24];
    int same = 1, k = 0;
    for (int i = 1; i < nc; i++)
        same &= v[i] == v[0];
    for (int i = 0; i < (same ? 1 : nc); i++)
        k += snprintf(buf + k, sizeof buf - (size_t)k, "%s%.9g", i ? "," : "", (double)v[i]);
    return qk_graph_set_meta(g, key, buf);
}

qk_status qk_graph_set_norm_ch(qk_graph *g, int nc, const float *mean, const float *std)
{
    if (nc < 1 || nc > 16)
        return qk_error(QK_ERR_ARG, "normalization: %d channels (1..16)", nc);
    for (int k = 0; k < nc; k++)
        if (!(std[k] > 0.0f))
            return qk_error(QK_ERR_ARG, "normalization std must be > 0 (got %g)", (double)std[k]);
    qk_status st = set_list(g, "qkit.norm.mean", nc, mean);
    return st != QK_OK ? st : set_list(g, "qkit.norm.std", nc, std);
}

qk_status qk_graph_set_norm(qk_graph *g, float mean, float std)
{
    return qk_graph_set_norm_ch(g, 1, &mean, &std);
}

static qk_status meta_int(const qk_graph *g, const char *key, int *out)
{
    const char *s = qk_graph_get_meta(g, key);
    if (!s)
        return QK_OK;
    float v;
    qk_status st = meta_float(s, key, &v);
    if (st != QK_OK)
        return st;
    if (v < 0 || v > 1e6 || v != (float)(int)v)
        return qk_error(QK_ERR_FORMAT, "graph metadata %s = '%s' is not a count", key, s);
    *out = (int)v;
    return QK_OK;
}

qk_status qk_graph_get_prep(const qk_graph *g, qk_graph_prep *p)
{
    const char *s = qk_graph_get_meta(g, "qkit.norm.scale");
    qk_status st = QK_OK;
    if (s && (st = meta_float(s, "qkit.norm.scale", &p->scale)) != QK_OK)
        return st;
    if ((st = meta_int(g, "qkit.norm.bgr", &p->bgr)) != QK_OK || (st = meta_int(g, "qkit.preprocess.resize", &p->resize)) != QK_OK)
        return st;
    return meta_int(g, "qkit.preprocess.crop", &p->crop);
}

qk_status qk_graph_set_prep(qk_graph *g, const qk_graph_prep *p)
{
    char buf[32];
    qk_status st = QK_OK;
    if (p->scale > 0.0f && p->scale != 1.0f) {
        snprintf(buf, sizeof buf, "%.9g", (double)p->scale);
        st = qk_graph_set_meta(g, "qkit.norm.scale", buf);
    }
    if (st == QK_OK && p->bgr)
        st = qk_graph_set_meta(g, "qkit.norm.bgr", "1");
    if (st == QK_OK && p->resize > 0) {
        snprintf(buf, sizeof buf, "%d", p->resize);
        st = qk_graph_set_meta(g, "qkit.preprocess.resize", buf);
    }
    if (st == QK_OK && p->crop > 0) {
        snprintf(buf, sizeof buf, "%d", p->crop);
        st = qk_graph_set_meta(g, "qkit.preprocess.crop", buf);
    }
    return st;
}

/* ---- attributes ---- */

static qk_attr *attr_slot(qk_graph *g, int node, const char *name, qk_status *st)
{
    *st = QK_OK;
    if (node < 0 || node >= g->n_nodes) {
        *st = qk_error(QK_ERR_ARG, "graph: node index %d out of range", node);
        return NULL;
    }
    qk_node *n = &g->nodes[node];
    for (int i = 0; i < n->n_attr; i++)
        if (strcmp(n->attr[i].name, name) == 0) {
            char *nm = n->attr[i].name;
            n->attr[i].name = NULL;
            attr_free(&n->attr[i]);
            n->attr[i].name = nm;
            return &n->attr[i];
        }
    qk_attr *na = qk_realloc(n->attr, (size_t)(n->n_attr + 1) * sizeof *na);
    if (!na) {
        *st = qk_error(QK_ERR_NOMEM, "graph: out of memory");
        return NULL;
    }
    n->attr = na;
    qk_attr *a = &na[n->n_attr];
    memset(a, 0, sizeof *a);
    a->name = qk_strdup(name);
    if (!a->name) {
        *st = qk_error(QK_ERR_NOMEM, "graph: out of memory");
        return NULL;
    }
    n->n_attr++;
    return a;
}

void qk_node_remove_attr(qk_node *n, const char *name)
{
    for (int i = 0; i < n->n_attr; i++)
        if (strcmp(n->attr[i].name, name) == 0) {
            attr_free(&n->attr[i]);
            memmove(&n->attr[i], &n->attr[i + 1], (size_t)(n->n_attr - i - 1) * sizeof *n->attr);
            n->n_attr--;
            return;
        }
}

qk_status qk_node_set_int(qk_graph *g, int node, const char *name, int64_t v)
{
    qk_status st;
    qk_attr *a = attr_slot(g, node, name, &st);
    if (!a)
        return st;
    a->type = QK_ATTR_INT;
    a->i = v;
    return QK_OK;
}

qk_status qk_node_set_float(qk_graph *g, int node, const char *name, float v)
{
    qk_status st;
    qk_attr *a = attr_slot(g, node, name, &st);
    if (!a)
        return st;
    a->type = QK_ATTR_FLOAT;
    a->f = v;
    return QK_OK;
}

qk_status qk_node_set_ints(qk_graph *g, int node, const char *name, int n, const int64_t *v)
{
    qk_status st;
    qk_attr *a = attr_slot(g, node, name, &st);
    if (!a)
        return st;
    a->type = QK_ATTR_INTS;
    a->ints = qk_malloc((size_t)(n ? n : 1) * sizeof(int64_t));
    if (!a->ints)
        return qk_error(QK_ERR_NOMEM, "graph: out of memory");
    if (n > 0)
        memcpy(a->ints, v, (size_t)n * sizeof(int64_t));
    a->n = n;
    return QK_OK;
}

qk_status qk_node_set_floats(qk_graph *g, int node, const char *name, int n, const float *v)
{
    qk_status st;
    qk_attr *a = attr_slot(g, node, name, &st);
    if (!a)
        return st;
    a->type = QK_ATTR_FLOATS;
    a->floats = qk_malloc((size_t)(n ? n : 1) * sizeof(float));
    if (!a->floats)
        return qk_error(QK_ERR_NOMEM, "graph: out of memory");
    if (n > 0)
        memcpy(a->floats, v, (size_t)n * sizeof(float));
    a->n = n;
    return QK_OK;
}

qk_status qk_node_set_string(qk_graph *g, int node, const char *name, const char *s)
{
    qk_status st;
    qk_attr *a = attr_slot(g, node, name, &st);
    if (!a)
        return st;
    a->type = QK_ATTR_STRING;
    a->s = qk_strdup(s);
    return a->s ? QK_OK : qk_error(QK_ERR_NOMEM, "graph: out of memory");
}

qk_status qk_node_set_tensor(qk_graph *g, int node, const char *name, qk_tensor *t)
{
    qk_status st;
    qk_attr *a = attr_slot(g, node, name, &st);
    if (!a)
        return st;
    a->type = QK_ATTR_TENSOR;
    a->t = qk_malloc(sizeof(qk_tensor));
    if (!a->t)
        return qk_error(QK_ERR_NOMEM, "graph: out of memory");
    *a->t = *t;
    memset(t, 0, sizeof *t);
    return QK_OK;
}

const qk_attr *qk_node_attr(const qk_node *n, const char *name)
{
    for (int i = 0; i < n->n_attr; i++)
        if (strcmp(n->attr[i].name, name) == 0)
            return &n->attr[i];
    return NULL;
}

int64_t qk_node_int(const qk_node *n, const char *name, int64_t dflt)
{
    const qk_attr *a = qk_node_attr(n, name);
    return a && a->type == QK_ATTR_INT ? a->i : dflt;
}

float qk_node_float(const qk_node *n, const char *name, float dflt)
{
    const qk_attr *a = qk_node_attr(n, name);
    return a && a->type == QK_ATTR_FLOAT ? a->f : dflt;
}

const char *qk_node_string(const qk_node *n, const char *name, const char *dflt)
{
    const qk_attr *a = qk_node_attr(n, name);
    return a && a->type == QK_ATTR_STRING ? a->s : dflt;
}

int qk_node_ints(const qk_node *n, const char *name, int64_t *out, int max)
{
    const qk_attr *a = qk_node_attr(n, name);
    if (!a || a->type != QK_ATTR_INTS)
        return 0;
    for (int i = 0; i < a->n && i < max; i++)
        out[i] = a->ints[i];
    return a->n;
}

/* ---- analysis ---- */

qk_status qk_graph_sort(qk_graph *g)
{
    int *order = qk_malloc((size_t)(g->n_nodes ? g->n_nodes : 1) * sizeof(int));
    char *ready = qk_calloc((size_t)(g->n_values ? g->n_values : 1), 1);
    char *done = qk_calloc((size_t)(g->n_nodes ? g->n_nodes : 1), 1);
    if (!order || !ready || !done) {
        qk_free(order);
        qk_free(ready);
        qk_free(done);
        return qk_error(QK_ERR_NOMEM, "graph: out of memory");
    }
    for (int i = 0; i < g->n_values; i++)
        ready[i] = g->values[i].producer < 0;
    int k = 0, progress = 1;
    while (k < g->n_nodes && progress) {
        progress = 0;
        for (int i = 0; i < g->n_nodes; i++) {
            if (done[i])
                continue;
            const qk_node *n = &g->nodes[i];
            int ok = 1;
            for (int j = 0; j < n->n_in && ok; j++)
                ok = n->in[j] < 0 || ready[n->in[j]];
            if (!ok)
                continue;
            for (int j = 0; j < n->n_out; j++)
                ready[n->out[j]] = 1;
            done[i] = 1;
            order[k++] = i;
            progress = 1;
        }
    }
    qk_status st = QK_OK;
    if (k < g->n_nodes) {
        for (int i = 0; i < g->n_nodes; i++) {
            if (done[i])
                continue;
            const qk_node *n = &g->nodes[i];
            for (int j = 0; j < n->n_in; j++)
                if (n->in[j] >= 0 && !ready[n->in[j]]) {
                    st = qk_error(QK_ERR_FORMAT,
                                  "graph: node '%s' (%s) input '%s' is never computed "
                                  "(missing producer or a cycle)",
                                  n->name, n->op_type, g->values[n->in[j]].name);
                    break;
                }
            break;
        }
        qk_free(order);
    } else {
        qk_free(g->order);
        g->order = order;
    }
    qk_free(ready);
    qk_free(done);
    return st;
}

int qk_graph_consumers(const qk_graph *g, int v, int *nodes, int max)
{
    int c = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const qk_node *n = &g->nodes[i];
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j] == v) {
                if (nodes && c < max)
                    nodes[c] = i;
                c++;
                break;
            }
    }
    return c;
}

int64_t qk_graph_param_count(const qk_graph *g)
{
    int64_t n = 0;
    for (int i = 0; i < g->n_values; i++)
        if (g->values[i].kind == QK_VALUE_PARAM)
            n += qk_tensor_numel(&g->values[i].t);
    return n;
}
