/* Deploy files, part 2: the range files (TensorRT dynamic ranges, SNPE /
 * AIMET encodings, qkit's generic quantizer table) and the atomic export
 * directory (deploy.h; formats also in README.md "Deploy files"). */
#include "qkit/deploy.h"
#include "qkit/onnx.h"
#include "qkit/ops.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- JSON */

/* %.9g round-trips a float32; JSON has no NaN/Inf (scales are validated). */
static void json_float(FILE *f, double v) { fprintf(f, "%.9g", v); }

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static const char *kind_name(qk_deploy_kind k)
{
    return k == QK_DEPLOY_WEIGHT ? "weight" : k == QK_DEPLOY_ACTIVATION ? "activation" : "bias";
}

static const char *meta(const qk_deploy_info *info, const char *key)
{
    for (int i = 0; i < info->n_meta; i++)
        if (strcmp(info->meta_keys[i], key) == 0)
            return info->meta_vals[i];
    return NULL;
}

typedef qk_status (*write_fn)(FILE *f, const qk_deploy_info *info);

typedef struct write_ctx {
    write_fn fn;
    const qk_deploy_info *info;
} write_ctx;

static qk_status write_one(FILE *f, void *ctx)
{
    const write_ctx *w = ctx;
    return w->fn(f, w->info);
}

/* Write through fn atomically (qk_file_write_atomic). */
static qk_status write_atomic(const char *path, write_fn fn, const qk_deploy_info *info)
{
    write_ctx w = { fn, info };
    return qk_file_write_atomic(path, write_one, &w);
}

/* ------------------------------------------------------------ TensorRT */

static qk_status trt_check(const qk_deploy_info *info)
{
    for (int k = 0; k < info->n_sites; k++) {
        const qk_deploy_site *s = &info->sites[k];
        if (s->kind != QK_DEPLOY_ACTIVATION)
            continue;
        if (!s->is_signed || s->per_channel || s->zp[0] != 0)
            return qk_error(QK_ERR_UNSUPPORTED, "tensorrt takes symmetric per-tensor int8 activations (zero "
                            "point 0); '%s' is %s%s with zero point %d (the model was quantized for '%s')",
                            s->tensor, s->is_signed ? "int8" : "uint8", s->per_channel ? " per channel" : "",
                            (int)s->zp[0], meta(info, "qkit.backend") ? meta(info, "qkit.backend") : "?");
    }
    return QK_OK;
}

static qk_status trt_write(FILE *f, const qk_deploy_info *info)
{
    qk_status st = trt_check(info);
    if (st != QK_OK)
        return st;
    fprintf(f, "{\n  \"format\": \"qkit-tensorrt-dynamic-range\",\n  \"version\": 1,\n"
               "  \"convention\": \"amax = scale * 127; ITensor::setDynamicRange(-amax, amax); "
               "activation tensors of model_float.onnx\",\n  \"tensorrt\": {\n    \"blob_range\": {");
    int first = 1;
    for (int k = 0; k < info->n_sites; k++) {
        const qk_deploy_site *s = &info->sites[k];
        if (s->kind != QK_DEPLOY_ACTIVATION)
            continue;
        fprintf(f, "%s\n      ", first ? "" : ",");
        first = 0;
        json_str(f, s->tensor);
        fputs(": ", f);
        json_float(f, (double)(float)((double)s->scale[0] * 127.0));
    }
    fprintf(f, "%s}\n  }\n}\n", first ? "" : "\n    ");
    return QK_OK;
}

qk_status qk_deploy_write_dynamic_range(const qk_deploy_info *info, const char *path)
{
    if (!info || !path)
        return qk_error(QK_ERR_ARG, "deploy: info or path is NULL");
    return write_atomic(path, trt_write, info);
}

/* ---------------------------------------------------------------- SNPE */

static void snpe_encoding(FILE *f, const qk_deploy_site *s, int64_t c)
{
    double sc = s->scale[c];
    int32_t z = s->zp[c];
    int64_t zu = s->is_signed && s->bits < 32 ? (int64_t)z + ((int64_t)1 << (s->bits - 1)) : z;
    fprintf(f, "{\"bitwidth\": %d, \"dtype\": \"int\", \"is_symmetric\": \"%s\", \"max\": ", s->bits,
            s->symmetric ? "True" : "False");
    json_float(f, (double)((int64_t)s->qmax - z) * sc);
    fputs(", \"min\": ", f);
    json_float(f, (double)((int64_t)s->qmin - z) * sc);
    fprintf(f, ", \"offset\": %lld, \"scale\": ", (long long)-zu);
    json_float(f, sc);
    fputc('}', f);
}

static void snpe_group(FILE *f, const qk_deploy_info *info, int acts)
{
    int first = 1;
    for (int k = 0; k < info->n_sites; k++) {
        const qk_deploy_site *s = &info->sites[k];
        if ((s->kind == QK_DEPLOY_ACTIVATION) != acts)
            continue;
        fprintf(f, "%s\n    ", first ? "" : ",");
        first = 0;
        json_str(f, s->tensor);
        fputs(": [", f);
        for (int64_t c = 0; c < s->n; c++) {
            fputs(c ? ",\n      " : "\n      ", f);
            snpe_encoding(f, s, c);
        }
        fputs("\n    ]", f);
    }
    fputs(first ? "}" : "\n  }", f);
}

static qk_status snpe_write(FILE *f, const qk_deploy_info *info)
{
    fputs("{\n  \"version\": \"0.6.1\",\n  \"activation_encodings\": {", f);
    snpe_group(f, info, 1);
    fputs(",\n  \"param_encodings\": {", f);
    snpe_group(f, info, 0);
    fputs("\n}\n", f);
    return QK_OK;
}

qk_status qk_deploy_write_encodings(const qk_deploy_info *info, const char *path)
{
    if (!info || !path)
        return qk_error(QK_ERR_ARG, "deploy: info or path is NULL");
    return write_atomic(path, snpe_write, info);
}

/* ------------------------------------------------------------- generic */

static qk_status generic_write(FILE *f, const qk_deploy_info *info)
{
    const char *be = meta(info, "qkit.backend"), *ar = meta(info, "qkit.arith");
    fputs("{\n  \"format\": \"qkit-quant-params\",\n  \"version\": 1,\n  \"backend\": ", f);
    if (be)
        json_str(f, be);
    else
        fputs("null", f);
    fputs(",\n  \"arith\": ", f);
    if (ar)
        json_str(f, ar);
    else if (info->backend)
        json_str(f, qk_arith_name(info->backend->arith));
    else
        fputs("null", f);
    fputs(",\n  \"metadata\": {", f);
    for (int i = 0; i < info->n_meta; i++) {
        fputs(i ? ",\n    " : "\n    ", f);
        json_str(f, info->meta_keys[i]);
        fputs(": ", f);
        json_str(f, info->meta_vals[i]);
    }
    fputs(info->n_meta ? "\n  },\n  \"quantizers\": [" : "},\n  \"quantizers\": [", f);
    for (int k = 0; k < info->n_sites; k++) {
        const qk_deploy_site *s = &info->sites[k];
        fputs(k ? ",\n    {\"tensor\": " : "\n    {\"tensor\": ", f);
        json_str(f, s->tensor);
        fprintf(f, ", \"kind\": \"%s\", \"node\": ", kind_name(s->kind));
        json_str(f, s->node);
        fprintf(f, ",\n     \"bits\": %d, \"signed\": %s, \"symmetric\": %s, \"narrow\": %s, \"per_channel\": %s, "
                   "\"axis\": ", s->bits, s->is_signed ? "true" : "false", s->symmetric ? "true" : "false",
                s->narrow ? "true" : "false", s->per_channel ? "true" : "false");
        if (s->per_channel)
            fprintf(f, "%d", s->axis);
        else
            fputs("null", f);
        fprintf(f, ", \"qmin\": %lld, \"qmax\": %lld,\n     \"scale\": [", (long long)s->qmin, (long long)s->qmax);
        for (int64_t c = 0; c < s->n; c++) {
            if (c)
                fputs(", ", f);
            json_float(f, s->scale[c]);
        }
        fputs("],\n     \"zero_point\": [", f);
        for (int64_t c = 0; c < s->n; c++)
            fprintf(f, "%s%d", c ? ", " : "", (int)s->zp[c]);
        fputs("]}", f);
    }
    fputs(info->n_sites ? "\n  ]\n}\n" : "]\n}\n", f);
    return QK_OK;
}

qk_status qk_deploy_write_quant_params(const qk_deploy_info *info, const char *path)
{
    if (!info || !path)
        return qk_error(QK_ERR_ARG, "deploy: info or path is NULL");
    return write_atomic(path, generic_write, info);
}

/* ---------------------------------------------------- export directory */

typedef struct stage {
    char *dir;       /* the target, trailing slashes removed */
    char *tmp;       /* the staging directory */
    int dir_exists;
    qk_deploy_result *res;
} stage;

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = qk_malloc(n);
    if (s)
        snprintf(s, n, "%s/%s", a, b);
    return s;
}

static qk_status stage_open(stage *sg, const char *dir, qk_deploy_result *res)
{
    memset(sg, 0, sizeof *sg);
    sg->res = res;
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    if (n == 0)
        return qk_error(QK_ERR_ARG, "export: the output directory name is empty");
    sg->dir = qk_malloc(n + 1);
    if (!sg->dir)
        return qk_error(QK_ERR_NOMEM, "out of memory");
    memcpy(sg->dir, dir, n);
    sg->dir[n] = 0;
    struct stat stt;
    if (stat(sg->dir, &stt) == 0) {
        if (!S_ISDIR(stt.st_mode))
            return qk_error(QK_ERR_IO, "'%s' exists and is not a directory", sg->dir);
        if (access(sg->dir, W_OK) != 0)
            return qk_error(QK_ERR_IO, "cannot write into '%s': %s", sg->dir, strerror(errno));
        sg->dir_exists = 1;
    }
    if (!(sg->tmp = qk_malloc(n + 16)))
        return qk_error(QK_ERR_NOMEM, "out of memory");
    snprintf(sg->tmp, n + 16, "%s.tmp.XXXXXX", sg->dir);
    if (!mkdtemp(sg->tmp)) {
        int e = errno;
        char *pc = qk_strdup(sg->dir);
        qk_status st = qk_error(QK_ERR_IO, "cannot create the output directory '%s' (in '%s'): %s",
                                sg->dir, pc ? dirname(pc) : "?", strerror(e));
        qk_free(pc);
        qk_free(sg->tmp);
        sg->tmp = NULL;
        return st;
    }
    (void)chmod(sg->tmp, 0755);
    return QK_OK;
}

/* Path of a file in the staging directory, recorded in the result. */
static char *stage_file(stage *sg, const char *name)
{
    qk_deploy_result *r = sg->res;
    if (r->n_files < QK_DEPLOY_MAX_FILES)
        snprintf(r->files[r->n_files++], sizeof r->files[0], "%s", name);
    char *p = join(sg->tmp, name);
    if (!p)
        qk_error(QK_ERR_NOMEM, "out of memory");
    return p;
}

static void stage_abort(stage *sg)
{
    if (sg->tmp) {
        for (int i = 0; i < sg->res->n_files; i++) {
            char *p = join(sg->tmp, sg->res->files[i]);
            if (p)
                unlink(p);
            qk_free(p);
        }
        rmdir(sg->tmp);
    }
    qk_free(sg->tmp);
    qk_free(sg->dir);
    sg->tmp = sg->dir = NULL;
}

static void fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

/* Move the finished files into place. */
static qk_status stage_commit(stage *sg)
{
    qk_status st = QK_OK;
    fsync_dir(sg->tmp);
    if (!sg->dir_exists && rename(sg->tmp, sg->dir) == 0) {
        char *pc = qk_strdup(sg->dir);
        if (pc)
            fsync_dir(dirname(pc));
        qk_free(pc);
        qk_free(sg->tmp);
        qk_free(sg->dir);
        sg->tmp = sg->dir = NULL;
        return QK_OK;
    }
    for (int i = 0; i < sg->res->n_files && st == QK_OK; i++) {
        char *from = join(sg->tmp, sg->res->files[i]), *to = join(sg->dir, sg->res->files[i]);
        if (!from || !to)
            st = qk_error(QK_ERR_NOMEM, "out of memory");
        else if (rename(from, to) != 0)
            st = qk_error(QK_ERR_IO, "cannot move '%s' into '%s': %s", sg->res->files[i], sg->dir,
                          strerror(errno));
        qk_free(from);
        qk_free(to);
    }
    if (st == QK_OK)
        fsync_dir(sg->dir);
    stage_abort(sg); /* removes what was not moved, and the staging directory */
    return st;
}

/* Byte copy of a file (fsync'ed). */
static qk_status copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb");
    if (!in)
        return qk_error(QK_ERR_IO, "cannot read '%s': %s", from, strerror(errno));
    FILE *out = fopen(to, "wb");
    if (!out) {
        int e = errno;
        fclose(in);
        return qk_error(QK_ERR_IO, "cannot create '%s': %s", to, strerror(e));
    }
    char buf[1 << 16];
    size_t n;
    int e = 0;
    while (!e && (n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n)
            e = errno ? errno : EIO;
    if (!e && ferror(in))
        e = EIO;
    if (!e && (fflush(out) != 0 || fsync(fileno(out)) != 0))
        e = errno ? errno : EIO;
    if (fclose(out) != 0 && !e)
        e = errno ? errno : EIO;
    fclose(in);
    if (e)
        return qk_error(QK_ERR_IO, "cannot copy '%s' to '%s': %s", from, to, strerror(e));
    return QK_OK;
}

/* Resolve the backend: an explicit name, else the model's metadata. */
static qk_status resolve_backend(const qk_graph *g, const char *name, const qk_backend **out)
{
    if (!name) {
        name = qk_graph_get_meta(g, "qkit.backend");
        if (!name)
            return qk_error(QK_ERR_ARG, "no backend given and the model has no \"qkit.backend\" metadata");
    }
    *out = qk_backend_find(name);
    return *out ? QK_OK : QK_ERR_NOTFOUND;
}

/* Output shapes for the saved model: plan at batch 1 when the graph allows
 * (a failure only means the file declares fewer shapes). */
static void infer_shapes(qk_graph *g)
{
    if (qk_quant_bind(g) == QK_OK && qk_graph_plan(g, 1, 0, NULL) == QK_OK)
        qk_graph_unplan(g);
    qk_clear_error();
}

static qk_status export_impl(qk_graph *g, const char *src_path, const char *backend, const char *dir,
                             qk_deploy_result *res)
{
    const qk_backend *b = NULL;
    qk_deploy_info *info = NULL;
    qk_status st = qk_deploy_scan(g, &info);
    if (st == QK_OK)
        st = resolve_backend(g, backend, &b);
    int trt = st == QK_OK && strcmp(b->name, "tensorrt") == 0;
    int snpe = st == QK_OK && strcmp(b->name, "snpe") == 0;
    int qlin = st == QK_OK && strcmp(b->name, "onnx-qlinear") == 0;
    if (trt)
        st = trt_check(info);
    /* quantizers `qkit ptq` kept in float (16-bit activations, NNIE's log
     * code: no opset-13 QDQ form) would be missing from every deploy file */
    const char *fs = qk_graph_get_meta(g, "qkit.float_sites");
    if (st == QK_OK && fs && atoi(fs) > 0)
        st = qk_error(QK_ERR_UNSUPPORTED, "%d activation quantizers of this model (%s-bit, backend %s) have no QDQ "
                      "form and were kept in float when it was written; the %s files would miss them, so nothing "
                      "was exported", atoi(fs), qk_graph_get_meta(g, "qkit.abits") ? qk_graph_get_meta(g, "qkit.abits")
                      : "?", qk_graph_get_meta(g, "qkit.backend") ? qk_graph_get_meta(g, "qkit.backend") : "?",
                      b->name);
    res->backend = b;
    if (info) {
        res->n_weights = info->n_weights;
        res->n_activations = info->n_activations;
        res->n_bias = info->n_bias;
    }
    stage sg;
    int opened = 0;
    if (st == QK_OK) {
        st = stage_open(&sg, dir, res);
        opened = 1;
    }
    char *p = NULL;
    if (st == QK_OK && trt) {
        if (!(p = stage_file(&sg, "model_qdq.onnx")))
            st = QK_ERR_NOMEM;
        else
            st = src_path ? copy_file(src_path, p) : qk_onnx_save(g, p);
        qk_free(p);
    }
    if (st == QK_OK && (trt || snpe)) {
        st = qk_deploy_strip_qdq(g);
        if (st == QK_OK) {
            infer_shapes(g);
            if (!(p = stage_file(&sg, "model_float.onnx")))
                st = QK_ERR_NOMEM;
            else
                st = qk_onnx_save(g, p);
            qk_free(p);
        }
    }
    if (st == QK_OK && qlin) {
        st = qk_deploy_to_qlinear(g, &res->n_qlinear);
        if (st == QK_OK && res->n_qlinear == 0)
            st = qk_error(QK_ERR_UNSUPPORTED, "no layer of the model has a form QLinearConv/QLinearMatMul can take "
                          "(x and y of one 8-bit type, a Relu only as the output's floor; the model's backend is "
                          "%s): quantize it with `qkit ptq --backend onnx-qlinear`; nothing was exported",
                          qk_graph_get_meta(g, "qkit.backend") ? qk_graph_get_meta(g, "qkit.backend") : "unknown");
        if (st == QK_OK) {
            infer_shapes(g);
            if (!(p = stage_file(&sg, "model_qlinear.onnx")))
                st = QK_ERR_NOMEM;
            else
                st = qk_onnx_save(g, p);
            qk_free(p);
        }
    }
    if (st == QK_OK && !qlin) {
        const char *name = trt ? "dynamic_range.json" : snpe ? "encodings.json" : "quant_params.json";
        if (!(p = stage_file(&sg, name)))
            st = QK_ERR_NOMEM;
        else
            st = trt ? qk_deploy_write_dynamic_range(info, p)
                     : snpe ? qk_deploy_write_encodings(info, p) : qk_deploy_write_quant_params(info, p);
        qk_free(p);
    }
    if (st == QK_OK)
        st = stage_commit(&sg);
    else if (opened)
        stage_abort(&sg);
    if (st != QK_OK)
        res->n_files = 0;
    qk_deploy_info_free(info);
    return st;
}

qk_status qk_deploy_export_graph(qk_graph *g, const char *backend, const char *dir, qk_deploy_result *res)
{
    qk_deploy_result local;
    if (!res)
        res = &local;
    memset(res, 0, sizeof *res);
    if (!g || !dir)
        return qk_error(QK_ERR_ARG, "export: graph or output directory is NULL");
    return export_impl(g, NULL, backend, dir, res);
}

qk_status qk_deploy_export(const char *model_path, const char *backend, const char *dir, qk_deploy_result *res)
{
    qk_deploy_result local;
    if (!res)
        res = &local;
    memset(res, 0, sizeof *res);
    if (!model_path || !dir)
        return qk_error(QK_ERR_ARG, "export: model path or output directory is NULL");
    if (backend && !qk_backend_find(backend))
        return QK_ERR_NOTFOUND;
    qk_graph *g = NULL;
    qk_status st = qk_onnx_read(model_path, &g);
    if (st == QK_OK && (st = qk_quant_bind(g)) != QK_OK) {
        st = qk_error_context(st, "file '%s'", model_path);
        qk_graph_destroy(g);
    }
    if (st != QK_OK)
        return qk_error_context(st, "export");
    st = export_impl(g, model_path, backend, dir, res);
    qk_graph_destroy(g);
    return st;
}
