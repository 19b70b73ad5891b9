/* The data options every data-reading command shares (one definition:
 * CLI_DATA_OPTS in cli.h): where the images come from and how they are
 * preprocessed. Precedence for the preprocessing: the model's metadata
 * (qkit.norm.*, qkit.preprocess.*), else the Fashion-MNIST default; then
 * --preprocess; then the single flags. */
#include "cli.h"
#include "qkit/registry.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "a,b,c" into v (at most max); returns the count, -1 on a bad list. */
static int parse_list(const char *s, int max, float *v)
{
    int n = 0;
    const char *p = s;
    for (;;) {
        char *end;
        errno = 0;
        double d = strtod(p, &end);
        if (end == p || errno || !isfinite(d) || n >= max)
            return -1;
        v[n++] = (float)d;
        if (!*end)
            return n;
        if (*end != ',')
            return -1;
        p = end + 1;
    }
}

static int parse_size(const cli_args *a, const char *name, int *out)
{
    long long v;
    if (cli_int(a, name, *out, 0, 16384, &v))
        return -1;
    *out = (int)v;
    return 0;
}

int cli_data_setup(const cli_args *a, const char *cmd, const qk_graph *g, cli_data *d, qk_status *st)
{
    memset(d, 0, sizeof *d);
    *st = QK_OK;
    d->norm = qk_norm_default();
    float m[QK_MAX_CHANNELS], s[QK_MAX_CHANNELS];
    int nc;
    *st = qk_graph_get_norm_ch(g, QK_MAX_CHANNELS, &nc, m, s);
    if (*st != QK_OK && *st != QK_ERR_NOTFOUND)
        return 1;
    if (*st == QK_OK) {
        d->norm.mean = m[0];
        d->norm.std = s[0];
        if (nc > 1) {
            d->norm.nc = nc;
            memcpy(d->norm.cmean, m, (size_t)nc * sizeof *m);
            memcpy(d->norm.cstd, s, (size_t)nc * sizeof *s);
        }
    }
    qk_graph_prep gp = { 0 };
    if ((*st = qk_graph_get_prep(g, &gp)) != QK_OK)
        return 1;
    d->norm.scale = gp.scale;
    d->norm.bgr = gp.bgr;
    d->o.resize = gp.resize;
    d->o.crop = gp.crop;
    const qk_value *in = g->n_inputs == 1 ? &g->values[g->inputs[0]] : NULL;
    if (in && in->t.ndim == 4 && (in->t.dims[1] == 1 || in->t.dims[1] == 3))
        d->o.c = (int)in->t.dims[1];
    const char *pre = cli_get(a, "preprocess");
    if (pre) {
        d->explicit_prep = 1;
        if (!strcmp(pre, "imagenet")) {
            d->norm = qk_norm_imagenet();
            d->o.resize = 256;
            d->o.crop = 224;
            d->size_flags = 1;
        } else if (!strcmp(pre, "none")) {
            qk_norm z = { .mean = 0.0f, .std = 1.0f };
            d->norm = z;
            d->o.resize = d->o.crop = 0;
        } else {
            cli_usage_error(cmd, "--preprocess must be imagenet or none (got '%s')", pre);
            return 2;
        }
    }
    const char *ms = cli_get(a, "mean"), *ss = cli_get(a, "std");
    float cm[QK_MAX_CHANNELS], cs[QK_MAX_CHANNELS];
    int nm = 0, ns = 0;
    if (ms && (nm = parse_list(ms, QK_MAX_CHANNELS, cm)) < 0) {
        cli_usage_error(cmd, "--mean must be a number or a comma-separated list (got '%s')", ms);
        return 2;
    }
    if (ss && ((ns = parse_list(ss, QK_MAX_CHANNELS, cs)) < 0)) {
        cli_usage_error(cmd, "--std must be a number or a comma-separated list (got '%s')", ss);
        return 2;
    }
    for (int k = 0; k < ns; k++)
        if (!(cs[k] > 0.0f)) {
            cli_usage_error(cmd, "--std values must be > 0 (got '%s')", ss);
            return 2;
        }
    if (ms || ss) {
        d->explicit_prep = 1;
        int n = nm > ns ? nm : ns;
        if (nm > 1 && ns > 1 && nm != ns) {
            cli_usage_error(cmd, "--mean has %d values, --std %d", nm, ns);
            return 2;
        }
        float om[QK_MAX_CHANNELS], os[QK_MAX_CHANNELS];
        int on = d->norm.nc > 0 ? d->norm.nc : 1;
        for (int k = 0; k < QK_MAX_CHANNELS; k++) {
            om[k] = qk_norm_mean(&d->norm, k < on ? k : 0);
            os[k] = qk_norm_std(&d->norm, k < on ? k : 0);
        }
        if (n <= 1 && on == 1) { /* scalar, as before */
            d->norm.mean = nm ? cm[0] : om[0];
            d->norm.std = ns ? cs[0] : os[0];
            d->norm.nc = 0;
        } else {
            n = n > on ? n : on;
            for (int k = 0; k < n; k++) {
                d->norm.cmean[k] = nm ? cm[nm == 1 ? 0 : k] : om[k];
                d->norm.cstd[k] = ns ? cs[ns == 1 ? 0 : k] : os[k];
            }
            d->norm.nc = n;
            d->norm.mean = d->norm.cmean[0];
            d->norm.std = d->norm.cstd[0];
        }
    }
    if (cli_get(a, "scale")) {
        double sc;
        if (cli_double(a, "scale", 1, 1e-9, 1e9, &sc))
            return 2;
        d->norm.scale = (float)sc;
        d->explicit_prep = 1;
    }
    if (cli_flag(a, "bgr"))
        d->norm.bgr = d->explicit_prep = 1;
    if (cli_get(a, "resize") || cli_get(a, "crop"))
        d->explicit_prep = d->size_flags = 1;
    if (parse_size(a, "resize", &d->o.resize) || parse_size(a, "crop", &d->o.crop))
        return 2;
    const char *lay = cli_get(a, "layout");
    if (lay) {
        if (!strcmp(lay, "NHWC") || !strcmp(lay, "nhwc"))
            d->o.nhwc = 1;
        else if (strcmp(lay, "NCHW") && strcmp(lay, "nchw")) {
            cli_usage_error(cmd, "--layout must be NCHW or NHWC (got '%s')", lay);
            return 2;
        }
    }
    d->o.labels = cli_get(a, "labels");
    return 0;
}

qk_status cli_data_load(const cli_data *d, const char *path, const char *split, int need_labels, int64_t limit,
                        qk_pool *pool, qk_dataset *ds)
{
    qk_data_opts o = d->o;
    o.need_labels = need_labels;
    o.limit = limit;
    o.background = cli_env_background_decode(); /* image folders: readers wait per batch */
    qk_data_kind kind;
    qk_status st = qk_data_kind_of(path, &kind);
    if (st != QK_OK)
        return st;
    if ((o.resize || o.crop) && kind != QK_DATA_FOLDER && d->size_flags)
        return qk_error(QK_ERR_ARG, "--resize/--crop apply to image folders; %s is not one", path ? path : "(IDX)");
    if (kind != QK_DATA_FOLDER)
        o.resize = o.crop = 0;
    if ((st = qk_data_open(path, split, &o, pool, ds)) != QK_OK)
        return st;
    if ((st = qk_norm_check(&d->norm, qk_dataset_channels(ds))) != QK_OK) {
        qk_dataset_free(ds);
        return qk_error_context(st, "data %s", path ? path : QK_FASHION_MNIST_DIR);
    }
    return QK_OK;
}

qk_status cli_data_store(const cli_data *d, qk_graph *g)
{
    if (!d->explicit_prep)
        return QK_OK;
    int n = d->norm.nc > 0 ? d->norm.nc : 1;
    float m[QK_MAX_CHANNELS], s[QK_MAX_CHANNELS];
    for (int k = 0; k < n; k++) {
        m[k] = qk_norm_mean(&d->norm, k);
        s[k] = qk_norm_std(&d->norm, k);
    }
    qk_status st = qk_graph_set_norm_ch(g, n, m, s);
    qk_graph_prep p = { d->norm.scale, d->norm.bgr, d->o.resize, d->o.crop };
    return st != QK_OK ? st : qk_graph_set_prep(g, &p);
}
