/* qkit bench: one cell (model x algorithm x backend x bits x seed) through
 * the pipeline of docs/ARCHITECTURE.md: FP32 evaluation, PTQ or QAT, fake
 * quantization evaluated in float, the QDQ graph lowered to the integer
 * engine and compared (hardware gap). Produces the cell's results line. */
#include "bench_internal.h"
#include "qkit/analyze.h"
#include "qkit/cpu.h"
#include "qkit/qrun.h"
#include "qkit/registry.h"
#include "qkit/train.h"

#include <math.h>
#include <string.h>

typedef struct cell_out {
    const char *status;
    char reason[512], real_reason[256];
    double fp32, fake, real, start;
    int64_t images, calib;
    int epochs;
    int64_t epoch_steps;
    int n_clips;
    qk_bench_clip *clips;
} cell_out;

static void line_head(const qk_bench_config *c, const qk_bench_cell *cell, const char *status, qk_sbuf *b)
{
    const qk_bench_entry *e = &c->entries[cell->entry];
    qk_sbuf_printf(b, "{\"key\":");
    qk_sbuf_json_str(b, cell->key);
    qk_sbuf_printf(b, ",\"hash\":\"%016llx\",\"block\":", (unsigned long long)cell->hash);
    qk_sbuf_json_str(b, cell->block);
    qk_sbuf_printf(b, ",\"model\":");
    qk_sbuf_json_str(b, c->models[cell->model].name);
    qk_sbuf_printf(b, ",\"algo\":");
    qk_sbuf_json_str(b, e->label);
    qk_sbuf_printf(b, ",\"row\":");
    qk_sbuf_json_str(b, e->row->name);
    qk_sbuf_printf(b, ",\"kind\":\"%s\",\"backend\":\"%s\",\"wbits\":%d,\"abits\":%d,\"seed\":%llu,\"status\":\"%s\"",
                   e->row->kind == QK_BENCH_QAT ? "qat" : "ptq", cell->backend->name, cell->wbits, cell->abits,
                   (unsigned long long)cell->seed, status);
}

static void line_tail(double seconds, int threads, qk_sbuf *b)
{
    const qk_cpu_features *f = qk_cpu_features_get();
    qk_sbuf_printf(b, ",\"seconds\":%.3f,\"threads\":%d,\"cpu\":", seconds, threads);
    qk_sbuf_json_str(b, f->brand[0] ? f->brand : f->vendor);
    qk_sbuf_printf(b, ",\"qkit\":\"%s\",\"commit\":\"%s\"}", qk_bench_version(), qk_bench_commit());
}

void qk_bench_cell_line(const qk_bench_config *c, const qk_bench_cell *cell, const char *status, const char *reason,
                        qk_sbuf *line)
{
    line_head(c, cell, status, line);
    qk_sbuf_printf(line, ",\"reason\":");
    qk_sbuf_json_str(line, reason);
    line_tail(0, 0, line);
}

/* Upper clip value s * (qmax - z) of every activation site of a converted
 * QDQ model, in site order (value name, clip). */
static int read_clips(qk_qmodel *m, qk_bench_clip **out)
{
    const qk_qsite *s;
    int n = qk_qmodel_sites(m, &s), k = 0;
    qk_graph *g = qk_qmodel_graph(m);
    qk_bench_clip *c = qk_calloc((size_t)(n > 0 ? n : 1), sizeof *c);
    if (!c)
        return 0;
    for (int i = 0; i < n; i++) {
        if (s[i].is_weight)
            continue;
        char nm[256];
        snprintf(nm, sizeof nm, "%s_scale", s[i].value);
        int vs = qk_graph_find_value(g, nm);
        snprintf(nm, sizeof nm, "%s_zero_point", s[i].value);
        int vz = qk_graph_find_value(g, nm);
        if (vs < 0 || !g->values[vs].t.data || g->values[vs].t.dtype != QK_F32)
            continue;
        double scale = ((const float *)g->values[vs].t.data)[0], z = 0;
        if (vz >= 0 && g->values[vz].t.data)
            z = g->values[vz].t.dtype == QK_I8 ? ((const int8_t *)g->values[vz].t.data)[0]
                                                    : ((const uint8_t *)g->values[vz].t.data)[0];
        int b = s[i].qp.bits;
        double qmax = s[i].qp.is_signed ? (double)((1 << (b - 1)) - 1) : (double)((1 << b) - 1);
        snprintf(c[k].site, sizeof c[k].site, "%s", s[i].value);
        c[k++].start = scale * (qmax - z);
    }
    *out = c;
    return k;
}

/* Lower the converted QDQ graph and compare it with itself in float:
 * real top-1 (or a reason it has none). */
static void run_real(qk_graph *qdq, const qk_dataset *ev, qk_norm norm, qk_pool *pool, cell_out *o)
{
    qk_graph *real = NULL;
    qk_lower_opts lo;
    qk_lower_opts_default(&lo);
    qk_compare_result cr;
    qk_status st = qk_qdq_lower(qdq, &lo, &real, NULL);
    if (st == QK_OK)
        st = qk_qdq_compare(qdq, real, ev, norm, 256, pool, &cr);
    qk_graph_destroy(real);
    if (st != QK_OK) {
        snprintf(o->real_reason, sizeof o->real_reason, "%s", qk_last_error());
        return;
    }
    o->real = cr.real_top1;
    qk_compare_result_free(&cr);
}

/* 1 when st is a refusal of the configuration (the cell is skipped). */
static int refused(qk_status st, cell_out *o)
{
    if (st != QK_ERR_UNSUPPORTED)
        return 0;
    o->status = "skipped";
    snprintf(o->reason, sizeof o->reason, "%s", qk_last_error());
    return 1;
}

static qk_status run_ptq(const qk_bench_cell *cell, const qk_bench_entry *e, qk_graph *g, const qk_dataset *calib,
                         const qk_dataset *ev, qk_norm norm, qk_pool *pool, cell_out *o)
{
    const qk_bench_algo *row = e->row;
    qk_ptq_config pc;
    qk_ptq_config_default(&pc);
    pc.backend = cell->backend;
    pc.wbits = cell->wbits;
    pc.abits = cell->abits;
    pc.a_observer = row->a_observer;
    pc.bit_alloc = row->bit_alloc;
    /* rows that ask for a pass switch it on; the others take the profile's default recipe,
       except that a reconstruction or the mixed-precision search replaces a default bias
       correction (as qkit ptq --recon / --mp-budget) */
    pc.cle = row->cle ? 1 : 0;
    pc.bias_correct = row->bias_correct ? 1 : (row->recon || row->mp) ? -1 : 0;
    qk_status st = row->ptq_apply ? row->ptq_apply(row, &pc) : QK_OK;
    qk_qmodel *m = NULL;
    if (st == QK_OK && (st = qk_ptq_config_check(&pc)) == QK_OK)
        st = qk_ptq_prepare(g, &pc, &m);
    else
        qk_graph_destroy(g);
    if (st != QK_OK)
        return refused(st, o) ? QK_OK : st;
    qk_eval_result r;
    st = qk_ptq_calibrate(m, calib, norm, calib->n, pool, NULL, NULL);
    if (st == QK_OK && row->mp) {
        qk_mp_config mc = { .avg_bits = e->budget > 0 ? e->budget : cell->wbits };
        qk_mp_result mr;
        st = qk_ptq_mixed_precision_dataset(m, calib, norm, 128, &mc, pool, &mr);
        qk_mp_result_free(&mr);
        if (st == QK_ERR_ARG) /* a budget below the profile's lowest width: skipped, like a width it lacks */
            st = QK_ERR_UNSUPPORTED;
        if (st != QK_OK && refused(st, o)) {
            qk_qmodel_destroy(m);
            return QK_OK;
        }
    }
    if (st == QK_OK && row->recon) {
        qk_recon_config rc;
        qk_recon_config_default(&rc, (qk_recon_method)row->recon);
        if (e->iters)
            rc.iters = e->iters;
        rc.seed = cell->seed;
        if (rc.batch > calib->n)
            rc.batch = (int)calib->n;
        st = qk_ptq_reconstruct(m, calib, norm, calib->n, &rc, pool, NULL);
        if (st != QK_OK && refused(st, o)) {
            qk_qmodel_destroy(m);
            return QK_OK;
        }
    }
    if (st == QK_OK && (st = qk_evaluate(qk_qmodel_graph(m), ev, norm, 256, pool, &r)) == QK_OK) {
        o->fake = r.top1;
        if (qk_ptq_convert_qdq(m) == QK_OK)
            run_real(qk_qmodel_graph(m), ev, norm, pool, o);
        else
            snprintf(o->real_reason, sizeof o->real_reason, "%s", qk_last_error());
    }
    qk_qmodel_destroy(m);
    return st;
}

static qk_status run_qat(const qk_bench_config *c, const qk_bench_cell *cell, const qk_bench_entry *e, qk_graph *g,
                         const qk_bench_data *d, const qk_dataset *ev, qk_norm norm, qk_pool *pool, cell_out *o)
{
    qk_qat_config qc;
    qk_qat_config_default(&qc);
    qc.ptq.backend = cell->backend;
    qc.ptq.wbits = cell->wbits;
    qc.ptq.abits = cell->abits;
    qc.algo = (qk_qat_algo)e->row->qat_algo;
    qc.calib = o->calib;
    if (e->epochs)
        qc.train.epochs = e->epochs;
    qc.train.epoch_steps = e->epoch_steps;
    if (e->lr > 0)
        qc.train.lr = (float)e->lr;
    qc.train.seed = cell->seed;
    qc.train.progress = 0;
    o->epochs = qc.train.epochs;
    o->epoch_steps = qc.train.epoch_steps;
    qk_status st = e->row->qat_apply ? e->row->qat_apply(e->row, &qc) : QK_OK;
    qk_qat *q = NULL;
    if (st == QK_OK && (st = qk_backend_qparams(qc.ptq.backend, qc.ptq.wbits, qc.ptq.abits, NULL, NULL)) == QK_OK)
        st = qk_qat_prepare(g, &qc, &q);
    else
        qk_graph_destroy(g);
    if (st != QK_OK)
        return refused(st, o) ? QK_OK : st;
    /* The calibrated ranges QAT starts from: the same PTQ on a second copy, with
     * the observers QAT resolved (mse for low-bit activations on academic). */
    qk_ptq_result pi;
    qk_ptq_result_get(qk_qat_qmodel(q), &pi);
    qc.ptq.a_observer = pi.a_observer;
    qc.ptq.w_observer = pi.w_observer;
    qk_graph *g2 = NULL;
    qk_qmodel *m2 = NULL;
    qk_bench_clip *start = NULL;
    int n_start = 0;
    if (qk_onnx_load(c->models[cell->model].path, &g2) == QK_OK && qk_ptq_prepare(g2, &qc.ptq, &m2) == QK_OK &&
        qk_ptq_calibrate(m2, &d->train, norm, qc.calib, pool, NULL, NULL) == QK_OK && qk_ptq_convert_qdq(m2) == QK_OK)
        n_start = read_clips(m2, &start);
    qk_qmodel_destroy(m2);
    qk_eval_result r;
    qk_qat_result res;
    if ((st = qk_qat_calibrate(q, &d->train, norm, pool)) == QK_OK &&
        (st = qk_evaluate(qk_qat_graph(q), ev, norm, 256, pool, &r)) == QK_OK) {
        o->start = r.top1;
        if ((st = qk_qat_train(q, &d->train, ev, pool, &res)) == QK_OK && (st = qk_qat_finish(q)) == QK_OK &&
            (st = qk_evaluate(qk_qat_graph(q), ev, norm, 256, pool, &r)) == QK_OK) {
            o->fake = r.top1;
            if (qk_ptq_convert_qdq(qk_qat_qmodel(q)) == QK_OK) {
                run_real(qk_qat_graph(q), ev, norm, pool, o);
                qk_bench_clip *learned = NULL;
                int nl = read_clips(qk_qat_qmodel(q), &learned);
                for (int i = 0; i < nl; i++) /* pair by site name */
                    for (int j = 0; j < n_start; j++)
                        if (strcmp(learned[i].site, start[j].site) == 0) {
                            learned[i].learned = learned[i].start;
                            learned[i].start = start[j].start;
                            learned[o->n_clips++] = learned[i];
                            break;
                        }
                o->clips = learned;
            } else {
                snprintf(o->real_reason, sizeof o->real_reason, "%s", qk_last_error());
            }
        }
    }
    qk_free(start);
    qk_qat_destroy(q);
    return st;
}

void qk_bench_cell_run(const qk_bench_config *c, const qk_bench_cell *cell, const qk_bench_data *d, int threads,
                       qk_sbuf *line)
{
    double t0 = qk_now();
    const qk_bench_entry *e = &c->entries[cell->entry];
    cell_out o = { .status = "ok", .fp32 = NAN, .fake = NAN, .real = NAN, .start = NAN };
    o.calib = e->calib ? e->calib : c->calib;
    qk_pool *pool = NULL;
    qk_graph *g = NULL;
    qk_status st = QK_OK;
    char why[256] = "";
    if (e->row->fits && !e->row->fits(e->row, cell->backend, cell->wbits, cell->abits, why, sizeof why)) {
        o.status = "skipped";
        snprintf(o.reason, sizeof o.reason, "%s", why);
        goto out;
    }
    if ((st = qk_pool_create(threads, &pool)) != QK_OK || (st = qk_onnx_load(c->models[cell->model].path, &g)) != QK_OK)
        goto out;
    qk_norm norm = qk_norm_default();
    qk_graph_get_norm(g, &norm.mean, &norm.std);
    qk_clear_error();
    qk_dataset ev = d->test;
    if (c->limit > 0 && c->limit < ev.n)
        ev = qk_dataset_view(&d->test, 0, c->limit);
    o.images = ev.n;
    int64_t off = (int64_t)(cell->seed - 1) * o.calib;
    if (off + o.calib > d->train.n) {
        st = qk_error(QK_ERR_ARG, "seed %llu with calib %lld needs %lld training images (%lld)",
                      (unsigned long long)cell->seed, (long long)o.calib, (long long)(off + o.calib),
                      (long long)d->train.n);
        goto out;
    }
    qk_dataset calib = qk_dataset_view(&d->train, off, o.calib);
    qk_eval_result fr;
    if ((st = qk_evaluate(g, &ev, norm, 256, pool, &fr)) != QK_OK)
        goto out;
    o.fp32 = fr.top1;
    qk_graph *taken = g;
    g = NULL; /* owned by prepare from here */
    if (e->row->kind == QK_BENCH_PTQ)
        st = run_ptq(cell, e, taken, &calib, &ev, norm, pool, &o);
    else
        st = run_qat(c, cell, e, taken, d, &ev, norm, pool, &o);
out:
    if (st != QK_OK) {
        o.status = "error";
        snprintf(o.reason, sizeof o.reason, "%s", qk_last_error());
    }
    qk_graph_destroy(g);
    qk_pool_destroy(pool);
    line_head(c, cell, o.status, line);
    if (strcmp(o.status, "ok") != 0) {
        qk_sbuf_printf(line, ",\"reason\":");
        qk_sbuf_json_str(line, o.reason);
    }
    if (!strcmp(o.status, "ok")) {
        qk_sbuf_printf(line, ",\"fp32_top1\":");
        qk_sbuf_num(line, o.fp32);
        qk_sbuf_printf(line, ",\"fake_top1\":");
        qk_sbuf_num(line, o.fake);
        qk_sbuf_printf(line, ",\"real_top1\":");
        qk_sbuf_num(line, o.real);
        qk_sbuf_printf(line, ",\"hw_gap\":");
        qk_sbuf_num(line, o.fake - o.real);
        if (o.real_reason[0]) {
            qk_sbuf_printf(line, ",\"real_reason\":");
            qk_sbuf_json_str(line, o.real_reason);
        }
        if (e->row->kind == QK_BENCH_QAT) {
            qk_sbuf_printf(line, ",\"start_top1\":");
            qk_sbuf_num(line, o.start);
            qk_sbuf_printf(line, ",\"epochs\":%d,\"epoch_steps\":%lld,\"clips\":[", o.epochs,
                           (long long)o.epoch_steps);
            for (int i = 0; i < o.n_clips; i++) {
                qk_sbuf_printf(line, "%s{\"site\":", i ? "," : "");
                qk_sbuf_json_str(line, o.clips[i].site);
                qk_sbuf_printf(line, ",\"start\":");
                qk_sbuf_num(line, o.clips[i].start);
                qk_sbuf_printf(line, ",\"learned\":");
                qk_sbuf_num(line, o.clips[i].learned);
                qk_sbuf_printf(line, "}");
            }
            qk_sbuf_printf(line, "]");
        }
        qk_sbuf_printf(line, ",\"images\":%lld,\"calib\":%lld", (long long)o.images, (long long)o.calib);
    }
    qk_free(o.clips);
    line_tail(qk_now() - t0, threads, line);
}
