/* The CLI's environment: the only place qkit reads QKIT_FUSE, QKIT_SGEMM,
 * QKIT_PROFILE and QKIT_DECODE (README, "Environment"). The first three
 * become plan options that cli_env_apply gives every graph the CLI loads or
 * builds; QKIT_DECODE the loader option qk_data_opts.background. */
#include "cli.h"
#include "qkit/onnx.h"

#include "qkit/graph.h"
#include "qkit/ops.h"
#include "qkit/registry.h"

#include <stdlib.h>
#include <string.h>

static qk_plan_options env_opts;
static qk_profiler *env_prof;
static int env_eager_decode;

qk_status cli_env_init(void)
{
    memset(&env_opts, 0, sizeof env_opts);
    const char *e = getenv("QKIT_FUSE");
    env_opts.no_fuse = e && !strcmp(e, "0");
    e = getenv("QKIT_SGEMM");
    if (e && e[0]) {
        qk_sgemm_kind k;
        if (qk_sgemm_parse(e, &k) == QK_OK)
            env_opts.sgemm = k;
        else
            qk_log(QK_LOG_WARN, "QKIT_SGEMM=%s is not one of dnnl, openblas, reference; using %s", e,
                   qk_sgemm_name(QK_SGEMM_DEFAULT));
        qk_clear_error();
    }
    e = getenv("QKIT_DECODE");
    env_eager_decode = e && !strcmp(e, "eager");
    if (e && e[0] && strcmp(e, "eager") && strcmp(e, "background"))
        qk_log(QK_LOG_WARN, "QKIT_DECODE=%s is not eager or background; decoding in the background", e);
    e = getenv("QKIT_PROFILE");
    if (e && e[0] && strcmp(e, "0") != 0) {
        qk_status st = qk_profiler_create(!strcmp(e, "node"), &env_prof);
        if (st != QK_OK)
            return st;
        env_opts.profiler = env_prof;
    }
    return QK_OK;
}

int cli_env_background_decode(void)
{
    return !env_eager_decode;
}

void cli_env_apply(qk_graph *g)
{
    if (g)
        qk_graph_set_options(g, &env_opts);
}

qk_status cli_load_model(const char *path, qk_graph **out)
{
    qk_status st = qk_onnx_load(path, out);
    if (st == QK_OK) {
        qk_onnx_dynamic_batch(*out); /* datasets come in batches */
        cli_env_apply(*out);
    }
    return st;
}

void cli_env_finish(void)
{
    if (env_prof)
        qk_profiler_print(env_prof, stderr);
    qk_profiler_destroy(env_prof);
    env_prof = NULL;
    env_opts.profiler = NULL;
}
