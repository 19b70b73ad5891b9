/* Sliding-window geometry (see window.h): attribute parsing and output size. */
#include "window.h"

#include <string.h>

/* Largest kernel size, stride, dilation or pad accepted (keeps every
 * product and sum below in int64). */
#define QK_WIN_MAX ((int64_t)1 << 24)

static qk_status get_ints(const qk_node *n, const char *op, const char *name, int max, int64_t *out,
                          int *count, int64_t minval)
{
    const qk_attr *at = qk_node_attr(n, name);
    *count = 0;
    if (!at)
        return QK_OK;
    if (at->type != QK_ATTR_INTS)
        return qk_error(QK_ERR_ARG, "%s: attribute %s must be a list of ints", op, name);
    if (at->n > max)
        return qk_error(QK_ERR_UNSUPPORTED, "%s: attribute %s has %d entries (at most %d supported: 1-D to 3-D)",
                        op, name, at->n, max);
    for (int i = 0; i < at->n; i++) {
        if (at->ints[i] < minval || at->ints[i] > QK_WIN_MAX)
            return qk_error(QK_ERR_ARG, "%s: attribute %s[%d] = %lld must be in %lld..%lld", op, name, i,
                            (long long)at->ints[i], (long long)minval, (long long)QK_WIN_MAX);
        out[i] = at->ints[i];
    }
    *count = at->n;
    return QK_OK;
}

qk_status qk_win_parse(const qk_node *n, const char *op, qk_win_attrs *a)
{
    memset(a, 0, sizeof *a);
    qk_status st;
    if ((st = get_ints(n, op, "kernel_shape", 3, a->k, &a->nk, 1)) != QK_OK ||
        (st = get_ints(n, op, "strides", 3, a->s, &a->ns, 1)) != QK_OK ||
        (st = get_ints(n, op, "dilations", 3, a->d, &a->nd, 1)) != QK_OK ||
        (st = get_ints(n, op, "pads", 6, a->p, &a->np, 0)) != QK_OK)
        return st;
    if (a->np & 1)
        return qk_error(QK_ERR_ARG, "%s: pads has %d entries (must be 2 per spatial dim)", op, a->np);
    const char *ap = qk_node_string(n, "auto_pad", "NOTSET");
    if (strcmp(ap, "NOTSET") == 0 || ap[0] == 0)
        a->auto_pad = QK_PAD_NOTSET;
    else if (strcmp(ap, "SAME_UPPER") == 0)
        a->auto_pad = QK_PAD_SAME_UPPER;
    else if (strcmp(ap, "SAME_LOWER") == 0)
        a->auto_pad = QK_PAD_SAME_LOWER;
    else if (strcmp(ap, "VALID") == 0)
        a->auto_pad = QK_PAD_VALID;
    else
        return qk_error(QK_ERR_ARG, "%s: auto_pad '%s' is not NOTSET, SAME_UPPER, SAME_LOWER or VALID", op, ap);
    if (a->auto_pad != QK_PAD_NOTSET && a->np)
        return qk_error(QK_ERR_ARG, "%s: pads and auto_pad=%s are both given", op, ap);
    int64_t cm = qk_node_int(n, "ceil_mode", 0);
    if (cm != 0 && cm != 1)
        return qk_error(QK_ERR_ARG, "%s: ceil_mode must be 0 or 1 (got %lld)", op, (long long)cm);
    a->ceil_mode = (int)cm;
    return QK_OK;
}

qk_status qk_win_resolve(const qk_win_attrs *a, const char *op, int nsp, const int64_t *in,
                         const int64_t *kernel, qk_window *w)
{
    if (nsp < 1 || nsp > 3)
        return qk_error(QK_ERR_UNSUPPORTED, "%s: %d spatial dims (1 to 3 supported)", op, nsp);
    if ((a->ns && a->ns != nsp) || (a->nd && a->nd != nsp) || (a->np && a->np != 2 * nsp) ||
        (a->nk && a->nk != nsp))
        return qk_error(QK_ERR_SHAPE,
                        "%s: input has %d spatial dims but kernel_shape/strides/dilations/pads have %d/%d/%d/%d entries",
                        op, nsp, a->nk, a->ns, a->nd, a->np);
    memset(w, 0, sizeof *w);
    w->nsp = nsp;
    int off = 3 - nsp;
    for (int i = 0; i < 3; i++) {
        w->in[i] = w->out[i] = w->k[i] = w->s[i] = w->d[i] = 1;
        w->pb[i] = w->pe[i] = 0;
    }
    for (int i = 0; i < nsp; i++) {
        int j = off + i;
        int64_t k = kernel[i], s = a->ns ? a->s[i] : 1, d = a->nd ? a->d[i] : 1, x = in[i];
        if (k < 1 || k > QK_WIN_MAX)
            return qk_error(QK_ERR_SHAPE, "%s: kernel size %lld in spatial dim %d", op, (long long)k, i);
        if (x < 0 || x > ((int64_t)1 << 61))
            return qk_error(QK_ERR_SHAPE, "%s: input size %lld in spatial dim %d", op, (long long)x, i);
        int64_t ek = (k - 1) * d + 1, o, pb = 0, pe = 0;
        switch (a->auto_pad) {
        case QK_PAD_VALID:
            o = x >= ek ? (x - ek) / s + 1 : 0;
            break;
        case QK_PAD_SAME_UPPER:
        case QK_PAD_SAME_LOWER: {
            o = (x + s - 1) / s;
            int64_t tot = (o - 1) * s + ek - x;
            if (tot < 0)
                tot = 0;
            if (a->auto_pad == QK_PAD_SAME_UPPER) {
                pb = tot / 2;
                pe = tot - pb;
            } else {
                pe = tot / 2;
                pb = tot - pe;
            }
            break;
        }
        default: {
            pb = a->np ? a->p[i] : 0;
            pe = a->np ? a->p[nsp + i] : 0;
            int64_t span = x + pb + pe - ek;
            if (span < 0) {
                o = 0;
                break;
            }
            o = a->ceil_mode ? (span + s - 1) / s + 1 : span / s + 1;
            if (a->ceil_mode && (o - 1) * s >= x + pb)
                o--;
            break;
        }
        }
        if (o < 1)
            return qk_error(QK_ERR_SHAPE,
                            "%s: spatial dim %d: input %lld with pads %lld+%lld is smaller than the (dilated) kernel %lld",
                            op, i, (long long)x, (long long)pb, (long long)pe, (long long)ek);
        w->in[j] = x;
        w->out[j] = o;
        w->k[j] = k;
        w->s[j] = s;
        w->d[j] = d;
        w->pb[j] = pb;
        w->pe[j] = pe;
    }
    return QK_OK;
}
