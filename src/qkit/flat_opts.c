/* The flat API's options (flat.h, "options by name"): every key parsed and
 * checked from its text form when it is set, so a binding passes strings
 * and learns of a bad value at once, with the key and value named. */
#include "flat_internal.h"
#include "qkit/quant.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const flat_keys =
    "backend, wbits, abits, observer, a_observer, w_observer, first_last_bits, reduce_range, per_tensor, "
    "bias_correct, bit_alloc, exclude, images, cle, cle_relu6, recon, recon_iters, recon_batch, no_fp32, mean, "
    "std, scale, bgr, batch, real, arith, reference";

qk_status qk_flat_opts_create(qk_flat_opts **out)
{
    qk_flat_opts *o = qk_calloc(1, sizeof *o);
    if (!o)
        return qk_error(QK_ERR_NOMEM, "flat options: out of memory");
    o->arith = -1;
    o->batch = 256;
    qk_recon_config rc;
    qk_recon_config_default(&rc, QK_RECON_NONE);
    o->recon_iters = rc.iters;
    o->recon_batch = rc.batch;
    *out = o;
    return QK_OK;
}

void qk_flat_opts_destroy(qk_flat_opts *o)
{
    if (!o)
        return;
    for (int i = 0; i < o->n_exclude; i++)
        qk_free(o->exclude[i]);
    qk_free(o->reference);
    qk_free(o);
}

static qk_status parse_int(const char *key, const char *v, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (end == v || *end || errno || x < lo || x > hi)
        return qk_error(QK_ERR_ARG, "option %s: '%s' is not an integer in [%lld, %lld]", key, v, lo, hi);
    *out = x;
    return QK_OK;
}

static qk_status parse_flag(const char *key, const char *v, int *out)
{
    if (!strcmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes"))
        *out = 1;
    else if (!strcmp(v, "0") || !strcasecmp(v, "false") || !strcasecmp(v, "no"))
        *out = 0;
    else
        return qk_error(QK_ERR_ARG, "option %s: '%s' is not a flag (1/0, true/false, yes/no)", key, v);
    return QK_OK;
}

/* "a,b,c": 1..max finite numbers (> 0 when positive). */
static qk_status parse_list(const char *key, const char *v, int positive, int max, float *out, int *n)
{
    int k = 0;
    const char *p = v;
    for (;;) {
        char *end;
        errno = 0;
        double d = strtod(p, &end);
        if (end == p || errno || !isfinite(d) || k >= max || (positive && !(d > 0)))
            return qk_error(QK_ERR_ARG, "option %s: '%s' is not a list of at most %d %snumbers", key, v, max,
                            positive ? "positive " : "");
        out[k++] = (float)d;
        if (!*end)
            break;
        if (*end != ',')
            return qk_error(QK_ERR_ARG, "option %s: '%s' is not a comma-separated list", key, v);
        p = end + 1;
    }
    *n = k;
    return QK_OK;
}

static qk_status set_observer(const char *key, const char *v, const char **out)
{
    qk_status st = qk_observer_lookup(v, out);
    return st == QK_OK ? QK_OK : qk_error_context(QK_ERR_ARG, "option %s", key);
}

qk_status qk_flat_opts_set(qk_flat_opts *o, const char *key_in, const char *v)
{
    if (!o || !key_in || !v)
        return qk_error(QK_ERR_ARG, "qk_flat_opts_set: NULL argument");
    char key[40];
    snprintf(key, sizeof key, "%s", key_in);
    for (char *p = key; *p; p++)
        *p = *p == '-' ? '_' : *p;
    long long x;
    qk_status st = QK_OK;
    if (!strcmp(key, "backend")) {
        const qk_backend *b = qk_backend_find(v);
        if (!b)
            return qk_error_context(QK_ERR_ARG, "option backend");
        o->backend = b;
    } else if (!strcmp(key, "wbits") || !strcmp(key, "abits")) {
        if ((st = parse_int(key, v, 0, 16, &x)) == QK_OK)
            *(key[0] == 'w' ? &o->wbits : &o->abits) = (int)x;
    } else if (!strcmp(key, "first_last_bits")) {
        if ((st = parse_int(key, v, -1, 16, &x)) == QK_OK)
            o->first_last_bits = (int)x;
    } else if (!strcmp(key, "observer") || !strcmp(key, "a_observer")) {
        st = set_observer(key, v, &o->a_observer);
    } else if (!strcmp(key, "w_observer")) {
        st = set_observer(key, v, &o->w_observer);
    } else if (!strcmp(key, "reduce_range")) {
        st = parse_flag(key, v, &o->reduce_range);
    } else if (!strcmp(key, "per_tensor")) {
        st = parse_flag(key, v, &o->per_tensor);
    } else if (!strcmp(key, "bias_correct")) { /* as cle: 1 on, -1 off, 0 (not set) the profile's default */
        int on;
        if ((st = parse_flag(key, v, &on)) == QK_OK)
            o->bias_correct = on ? 1 : -1;
    } else if (!strcmp(key, "bit_alloc")) {
        if (!strcmp(v, "none") || !strcmp(v, ""))
            o->bit_alloc = 0;
        else if (!strcmp(v, "w"))
            o->bit_alloc = QK_BITALLOC_W;
        else if (!strcmp(v, "a"))
            o->bit_alloc = QK_BITALLOC_A;
        else if (!strcmp(v, "wa") || !strcmp(v, "aw"))
            o->bit_alloc = QK_BITALLOC_W | QK_BITALLOC_A;
        else
            st = qk_error(QK_ERR_ARG, "option bit_alloc: '%s': use none, w, a or wa", v);
    } else if (!strcmp(key, "exclude")) {
        if (o->n_exclude >= FLAT_MAX_EXCLUDE)
            return qk_error(QK_ERR_ARG, "option exclude: more than %d nodes", FLAT_MAX_EXCLUDE);
        if (!(o->exclude[o->n_exclude] = qk_strdup(v)))
            return qk_error(QK_ERR_NOMEM, "option exclude: out of memory");
        o->n_exclude++;
    } else if (!strcmp(key, "images")) {
        if ((st = parse_int(key, v, 0, 1LL << 40, &x)) == QK_OK)
            o->images = x;
    } else if (!strcmp(key, "cle")) { /* given: on (1) or off (-1); never set: the profile's default (0) */
        int on;
        if ((st = parse_flag(key, v, &on)) == QK_OK)
            o->cle = on ? 1 : -1;
    } else if (!strcmp(key, "cle_relu6")) {
        st = parse_flag(key, v, &o->cle_relu6);
    } else if (!strcmp(key, "no_fp32")) {
        st = parse_flag(key, v, &o->no_fp32);
    } else if (!strcmp(key, "recon")) {
        qk_recon_method m;
        if ((st = qk_recon_method_parse(v, &m)) != QK_OK)
            return qk_error_context(QK_ERR_ARG, "option recon");
        o->recon = m;
    } else if (!strcmp(key, "recon_iters") || !strcmp(key, "recon_batch")) {
        if ((st = parse_int(key, v, 1, 1 << 30, &x)) == QK_OK)
            *(key[6] == 'i' ? &o->recon_iters : &o->recon_batch) = (int)x;
    } else if (!strcmp(key, "mean")) {
        st = parse_list(key, v, 0, QK_MAX_CHANNELS, o->mean, &o->n_mean);
    } else if (!strcmp(key, "std")) {
        st = parse_list(key, v, 1, QK_MAX_CHANNELS, o->std, &o->n_std);
    } else if (!strcmp(key, "scale")) {
        float s;
        int n;
        if ((st = parse_list(key, v, 1, 1, &s, &n)) != QK_OK)
            st = qk_error(QK_ERR_ARG, "option scale: '%s' is not one number (> 0)", v);
        if (st == QK_OK) {
            o->scale = s;
            o->has_scale = 1;
        }
    } else if (!strcmp(key, "bgr")) {
        if ((st = parse_flag(key, v, &o->bgr)) == QK_OK)
            o->has_bgr = 1;
    } else if (!strcmp(key, "batch")) {
        if ((st = parse_int(key, v, 1, 65536, &x)) == QK_OK)
            o->batch = (int)x;
    } else if (!strcmp(key, "real")) {
        st = parse_flag(key, v, &o->real);
    } else if (!strcmp(key, "arith")) {
        int a = !strcmp(v, "fp32") ? QK_ARITH_FP32 : !strcmp(v, "gemmlowp") ? QK_ARITH_GEMMLOWP
              : !strcmp(v, "pot") ? QK_ARITH_POT : !strcmp(v, "") || !strcmp(v, "model") ? -1 : -2;
        if (a == -2)
            return qk_error(QK_ERR_ARG, "option arith: '%s': use fp32, gemmlowp or pot", v);
        o->arith = a;
    } else if (!strcmp(key, "reference")) {
        char *r = v[0] ? qk_strdup(v) : NULL;
        if (v[0] && !r)
            return qk_error(QK_ERR_NOMEM, "option reference: out of memory");
        qk_free(o->reference);
        o->reference = r;
    } else {
        return qk_error(QK_ERR_NOTFOUND, "unknown option '%s'; valid: %s", key_in, flat_keys);
    }
    return st;
}
