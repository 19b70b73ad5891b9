/* Training checkpoints: file format "QKCK" version 1.
 *
 * All integers little-endian; str = u32 length + bytes (no NUL).
 *   "QKCK"  u32 version (1)
 *   u64 config_hash   u64 seed
 *   i64 epoch (completed)   i64 batch_in_epoch   i64 step (optimizer steps)
 *   f64 ep_loss_sum   i64 ep_correct   i64 ep_seen   (running epoch statistics)
 *   u32 n_meta,    n_meta x { str key, str value }           graph metadata
 *   u32 n_values,  n_values x { str name, u8 kind (2 PARAM, 3 CONST),
 *                               u32 dtype (ONNX), u32 ndim, i64 dims[ndim],
 *                               u64 nbytes, bytes }          every PARAM/CONST
 *   u32 optim_kind  i64 optim_steps
 *   u32 n_opt,     n_opt x { str param name, u32 kind, u32 has_buf,
 *                            i64 steps, u64 n, f32 buf[n], f32 buf2[n] }
 *   u64 FNV-1a 64 of every preceding byte
 * Data-order randomness is a pure function of (seed, epoch, batch) (see
 * src/data/batch.c), so seed + epoch + batch_in_epoch is the complete RNG
 * state. Written to "<path>.tmp", fsync'ed and renamed over path. */
#include "train_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define CK_VERSION 1u

/* ---- writing ---- */
typedef struct wr {
    FILE *f;
    uint64_t h;
    int err;
} wr;

static void w_bytes(wr *w, const void *p, size_t n)
{
    if (w->err || n == 0)
        return;
    if (fwrite(p, 1, n, w->f) != n)
        w->err = errno ? errno : EIO;
    w->h = qk_fnv1a(w->h, p, n);
}

static void w_u64(wr *w, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    w_bytes(w, b, 8);
}

static void w_u32(wr *w, uint32_t v)
{
    uint8_t b[4];
    for (int i = 0; i < 4; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    w_bytes(w, b, 4);
}

static void w_f64(wr *w, double d)
{
    uint64_t v;
    memcpy(&v, &d, 8);
    w_u64(w, v);
}

static void w_str(wr *w, const char *s)
{
    size_t n = strlen(s);
    w_u32(w, (uint32_t)n);
    w_bytes(w, s, n);
}

/* Float arrays are stored in host order; qkit targets little-endian hosts. */
static void w_floats(wr *w, const float *p, int64_t n)
{
    w_bytes(w, p, (size_t)n * sizeof(float));
}

qk_status qk_ckpt_save(const char *path, const qk_graph *g, const qk_optim *o, const qk_train_state *s)
{
    size_t plen = strlen(path);
    char *tmp = qk_malloc(plen + 5);
    if (!tmp)
        return qk_error(QK_ERR_NOMEM, "checkpoint: out of memory");
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    errno = 0;
    wr w = { fopen(tmp, "wb"), QK_FNV_INIT, 0 };
    if (!w.f) {
        qk_status st = qk_error(QK_ERR_IO, "checkpoint %s: cannot create %s: %s", path, tmp, strerror(errno));
        qk_free(tmp);
        return st;
    }
    w_bytes(&w, "QKCK", 4);
    w_u32(&w, CK_VERSION);
    w_u64(&w, s->config_hash);
    w_u64(&w, s->seed);
    w_u64(&w, (uint64_t)s->epoch);
    w_u64(&w, (uint64_t)s->batch_in_epoch);
    w_u64(&w, (uint64_t)s->step);
    w_f64(&w, s->ep_loss_sum);
    w_u64(&w, (uint64_t)s->ep_correct);
    w_u64(&w, (uint64_t)s->ep_seen);
    w_u32(&w, (uint32_t)g->n_meta);
    for (int i = 0; i < g->n_meta; i++) {
        w_str(&w, g->meta_keys[i]);
        w_str(&w, g->meta_vals[i]);
    }
    uint32_t nv = 0;
    for (int i = 0; i < g->n_values; i++)
        nv += g->values[i].kind == QK_VALUE_PARAM || g->values[i].kind == QK_VALUE_CONST;
    w_u32(&w, nv);
    for (int i = 0; i < g->n_values; i++) {
        const qk_value *v = &g->values[i];
        if (v->kind != QK_VALUE_PARAM && v->kind != QK_VALUE_CONST)
            continue;
        w_str(&w, v->name);
        uint8_t kind = (uint8_t)v->kind;
        w_bytes(&w, &kind, 1);
        w_u32(&w, (uint32_t)v->t.dtype);
        w_u32(&w, (uint32_t)v->t.ndim);
        for (int d = 0; d < v->t.ndim; d++)
            w_u64(&w, (uint64_t)v->t.dims[d]);
        size_t nb = qk_tensor_bytes(&v->t);
        w_u64(&w, nb);
        w_bytes(&w, v->t.data, nb);
    }
    w_u32(&w, o ? (uint32_t)o->c.kind : 0);
    w_u64(&w, o ? (uint64_t)o->steps : 0);
    w_u32(&w, o ? (uint32_t)o->n : 0);
    for (int i = 0; o && i < o->n; i++) {
        const qk_optim_param *q = &o->p[i];
        w_str(&w, g->values[q->value].name);
        w_u32(&w, (uint32_t)q->o.kind);
        w_u32(&w, (uint32_t)q->has_buf);
        w_u64(&w, (uint64_t)q->steps);
        w_u64(&w, (uint64_t)q->n);
        w_floats(&w, q->buf, q->n);
        w_floats(&w, q->buf2, q->n);
    }
    uint64_t h = w.h;
    w_u64(&w, h);
    if (!w.err && fflush(w.f) != 0)
        w.err = errno ? errno : EIO;
    if (!w.err && fsync(fileno(w.f)) != 0)
        w.err = errno ? errno : EIO;
    if (fclose(w.f) != 0 && !w.err)
        w.err = errno ? errno : EIO;
    if (!w.err && rename(tmp, path) != 0)
        w.err = errno ? errno : EIO;
    qk_status st = QK_OK;
    if (w.err) {
        st = qk_error(QK_ERR_IO, "checkpoint %s: write failed: %s", path, strerror(w.err));
        remove(tmp);
    }
    qk_free(tmp);
    return st;
}

/* ---- reading ---- */
typedef struct rd {
    const uint8_t *p;
    size_t n, pos;
    int bad;
} rd;

static const uint8_t *r_bytes(rd *r, size_t n)
{
    if (r->bad || n > r->n - r->pos) {
        r->bad = 1;
        return NULL;
    }
    const uint8_t *q = r->p + r->pos;
    r->pos += n;
    return q;
}

static uint64_t r_u64(rd *r)
{
    const uint8_t *b = r_bytes(r, 8);
    uint64_t v = 0;
    for (int i = 0; b && i < 8; i++)
        v |= (uint64_t)b[i] << (8 * i);
    return v;
}

static uint32_t r_u32(rd *r)
{
    const uint8_t *b = r_bytes(r, 4);
    uint32_t v = 0;
    for (int i = 0; b && i < 4; i++)
        v |= (uint32_t)b[i] << (8 * i);
    return v;
}

static double r_f64(rd *r)
{
    uint64_t v = r_u64(r);
    double d;
    memcpy(&d, &v, 8);
    return d;
}

/* A string as a NUL-terminated copy in buf (truncated to cap - 1). */
static void r_str(rd *r, char *buf, size_t cap)
{
    uint32_t n = r_u32(r);
    const uint8_t *b = r_bytes(r, n);
    size_t k = b ? (n < cap - 1 ? n : cap - 1) : 0;
    if (b)
        memcpy(buf, b, k);
    buf[k] = 0;
}

static qk_status read_file(const char *path, uint8_t **data, size_t *len)
{
    errno = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return qk_error(QK_ERR_IO, "checkpoint %s: cannot open: %s", path, strerror(errno));
    long sz = -1;
    if (fseek(f, 0, SEEK_END) == 0)
        sz = ftell(f);
    if (sz < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return qk_error(QK_ERR_IO, "checkpoint %s: cannot determine the size", path);
    }
    *data = qk_malloc((size_t)sz + 1);
    if (!*data) {
        fclose(f);
        return qk_error(QK_ERR_NOMEM, "checkpoint %s: cannot allocate %ld bytes", path, sz);
    }
    size_t got = fread(*data, 1, (size_t)sz, f);
    fclose(f);
    if (got != (size_t)sz) {
        qk_free(*data);
        *data = NULL;
        return qk_error(QK_ERR_IO, "checkpoint %s: read %zu of %ld bytes", path, got, sz);
    }
    *len = (size_t)sz;
    return QK_OK;
}

/* Open, check magic/version/checksum, parse the header into *s. */
static qk_status open_ckpt(const char *path, uint8_t **data, rd *r, qk_train_state *s)
{
    size_t len = 0;
    qk_status st = read_file(path, data, &len);
    if (st != QK_OK)
        return st;
    memset(r, 0, sizeof *r);
    r->p = *data;
    r->n = len;
    if (len < 16 || memcmp(*data, "QKCK", 4) != 0)
        return qk_error(QK_ERR_FORMAT, "%s is not a qkit checkpoint (no QKCK magic)", path);
    uint64_t stored = 0;
    for (int i = 0; i < 8; i++)
        stored |= (uint64_t)(*data)[len - 8 + i] << (8 * i);
    if (qk_fnv1a(QK_FNV_INIT, *data, len - 8) != stored)
        return qk_error(QK_ERR_FORMAT, "checkpoint %s is corrupt or truncated (checksum mismatch)", path);
    r->n = len - 8;
    r_bytes(r, 4);
    uint32_t ver = r_u32(r);
    if (ver != CK_VERSION)
        return qk_error(QK_ERR_FORMAT, "checkpoint %s has version %u; this qkit reads version %u", path, ver,
                        CK_VERSION);
    s->config_hash = r_u64(r);
    s->seed = r_u64(r);
    s->epoch = (int64_t)r_u64(r);
    s->batch_in_epoch = (int64_t)r_u64(r);
    s->step = (int64_t)r_u64(r);
    s->ep_loss_sum = r_f64(r);
    s->ep_correct = (int64_t)r_u64(r);
    s->ep_seen = (int64_t)r_u64(r);
    if (r->bad)
        return qk_error(QK_ERR_FORMAT, "checkpoint %s: header is truncated", path);
    return QK_OK;
}

qk_status qk_checkpoint_info(const char *path, qk_ckpt_info *info)
{
    memset(info, 0, sizeof *info);
    uint8_t *data = NULL;
    rd r;
    qk_train_state s;
    qk_status st = open_ckpt(path, &data, &r, &s);
    if (st == QK_OK) {
        info->version = CK_VERSION;
        info->config_hash = s.config_hash;
        info->epoch = s.epoch;
        info->batch_in_epoch = s.batch_in_epoch;
        info->step = s.step;
        info->seed = s.seed;
        uint32_t nm = r_u32(&r);
        char key[256], val[256];
        for (uint32_t i = 0; i < nm && !r.bad; i++) {
            r_str(&r, key, sizeof key);
            r_str(&r, val, sizeof val);
            if (strcmp(key, "qkit.arch") == 0) {
                size_t k = strlen(val) < sizeof info->arch - 1 ? strlen(val) : sizeof info->arch - 1;
                memcpy(info->arch, val, k);
                info->arch[k] = 0;
            }
        }
        if (r.bad)
            st = qk_error(QK_ERR_FORMAT, "checkpoint %s: metadata is truncated", path);
    }
    qk_free(data);
    return st;
}

static qk_status load_body(const char *path, rd *r, qk_graph *g, qk_optim *o)
{
    char name[1024], val[4096];
    uint32_t nm = r_u32(r);
    for (uint32_t i = 0; i < nm && !r->bad; i++) {
        r_str(r, name, sizeof name);
        r_str(r, val, sizeof val);
        if (!r->bad) {
            qk_status st = qk_graph_set_meta(g, name, val);
            if (st != QK_OK)
                return st;
        }
    }
    uint32_t nv = r_u32(r);
    char *seen = qk_calloc((size_t)(g->n_values ? g->n_values : 1), 1);
    if (!seen)
        return qk_error(QK_ERR_NOMEM, "checkpoint: out of memory");
    qk_status st = QK_OK;
    for (uint32_t i = 0; i < nv && !r->bad && st == QK_OK; i++) {
        r_str(r, name, sizeof name);
        r_bytes(r, 1); /* kind: informational; the model decides */
        uint32_t dtype = r_u32(r), ndim = r_u32(r);
        if (r->bad || ndim > QK_MAX_DIMS) {
            r->bad = 1;
            break;
        }
        int64_t dims[QK_MAX_DIMS];
        for (uint32_t d = 0; d < ndim; d++)
            dims[d] = (int64_t)r_u64(r);
        uint64_t nb = r_u64(r);
        const uint8_t *bytes = r_bytes(r, (size_t)nb);
        if (r->bad)
            break;
        int v = qk_graph_find_value(g, name);
        if (v < 0)
            continue; /* not part of this graph */
        qk_value *x = &g->values[v];
        if (x->kind != QK_VALUE_PARAM && x->kind != QK_VALUE_CONST)
            continue;
        int same = (uint32_t)x->t.dtype == dtype && (uint32_t)x->t.ndim == ndim && qk_tensor_bytes(&x->t) == nb;
        for (uint32_t d = 0; same && d < ndim; d++)
            same = x->t.dims[d] == dims[d];
        if (!same) {
            char sb[128];
            st = qk_error(QK_ERR_FORMAT,
                          "checkpoint %s: value '%s' has another type or shape than the model's %s %s "
                          "(was the checkpoint written for another architecture?)",
                          path, name, qk_dtype_name(x->t.dtype), qk_shape_str(&x->t, sb, sizeof sb));
            break;
        }
        memcpy(x->t.data, bytes, (size_t)nb);
        seen[v] = 1;
    }
    if (st == QK_OK && r->bad)
        st = qk_error(QK_ERR_FORMAT, "checkpoint %s: values section is truncated", path);
    for (int i = 0; st == QK_OK && i < g->n_values; i++) {
        qk_value *x = &g->values[i];
        if (qk_value_is_initializer(x) && !seen[i])
            st = qk_error(QK_ERR_FORMAT,
                          "checkpoint %s has no value '%s' of the model "
                          "(was it written for another architecture?)",
                          path, x->name);
    }
    qk_free(seen);
    if (st != QK_OK)
        return st;
    uint32_t okind = r_u32(r);
    uint64_t osteps = r_u64(r);
    uint32_t no = r_u32(r);
    (void)okind;
    if (r->bad)
        return qk_error(QK_ERR_FORMAT, "checkpoint %s: optimizer section is truncated", path);
    if (!o)
        return QK_OK;
    int found = 0;
    for (uint32_t i = 0; i < no && !r->bad; i++) {
        r_str(r, name, sizeof name);
        uint32_t kind = r_u32(r), has_buf = r_u32(r);
        int64_t steps = (int64_t)r_u64(r);
        uint64_t n = r_u64(r);
        const uint8_t *b1 = r_bytes(r, (size_t)n * sizeof(float));
        const uint8_t *b2 = r_bytes(r, (size_t)n * sizeof(float));
        if (r->bad)
            break;
        int v = qk_graph_find_value(g, name);
        qk_optim_param *q = NULL;
        for (int k = 0; v >= 0 && k < o->n; k++)
            if (o->p[k].value == v)
                q = &o->p[k];
        if (!q)
            continue;
        if ((uint64_t)q->n != n)
            return qk_error(QK_ERR_FORMAT, "checkpoint %s: optimizer state of '%s' has %llu elements, expected %lld",
                            path, name, (unsigned long long)n, (long long)q->n);
        if ((int)kind != q->o.kind)
            return qk_error(QK_ERR_ARG, "checkpoint %s: parameter '%s' was trained with another optimizer", path,
                            name);
        memcpy(q->buf, b1, (size_t)n * sizeof(float));
        memcpy(q->buf2, b2, (size_t)n * sizeof(float));
        q->has_buf = (int)has_buf;
        q->steps = steps;
        found++;
    }
    if (r->bad)
        return qk_error(QK_ERR_FORMAT, "checkpoint %s: optimizer section is truncated", path);
    if (found != o->n)
        return qk_error(QK_ERR_FORMAT, "checkpoint %s has optimizer state for %d of %d parameters", path, found,
                        o->n);
    o->steps = (int64_t)osteps;
    return QK_OK;
}

qk_status qk_ckpt_load(const char *path, qk_graph *g, qk_optim *o, qk_train_state *s, uint64_t expect_hash)
{
    uint8_t *data = NULL;
    rd r;
    qk_train_state hs;
    qk_status st = open_ckpt(path, &data, &r, &hs);
    if (st == QK_OK && expect_hash && hs.config_hash != expect_hash)
        st = qk_error(QK_ERR_ARG,
                      "checkpoint %s was written with a different training configuration or training set "
                      "(config hash %016llx, now %016llx); resume with the same options",
                      path, (unsigned long long)hs.config_hash, (unsigned long long)expect_hash);
    if (st == QK_OK)
        st = load_body(path, &r, g, o);
    if (st == QK_OK && s)
        *s = hs;
    qk_free(data);
    return st;
}

qk_status qk_checkpoint_load_params(const char *path, qk_graph *g)
{
    return qk_ckpt_load(path, g, NULL, NULL, 0);
}
