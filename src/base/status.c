/* Status strings, thread-local error messages, logging. */
#include "qkit/base.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char err_msg[1024];
static qk_log_level log_level = QK_LOG_WARN;

const char *qk_status_str(qk_status st)
{
    switch (st) {
    case QK_OK: return "ok";
    case QK_ERR_NOMEM: return "out of memory";
    case QK_ERR_IO: return "i/o error";
    case QK_ERR_FORMAT: return "malformed input";
    case QK_ERR_UNSUPPORTED: return "unsupported";
    case QK_ERR_SHAPE: return "shape mismatch";
    case QK_ERR_ARG: return "invalid argument";
    case QK_ERR_NUMERIC: return "numerical error";
    case QK_ERR_STATE: return "invalid state";
    case QK_ERR_NOTFOUND: return "not found";
    }
    return "unknown status";
}

qk_status qk_error(qk_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_msg, sizeof err_msg, fmt, ap);
    va_end(ap);
    return st;
}

qk_status qk_error_context(qk_status st, const char *fmt, ...)
{
    char ctx[256], old[sizeof err_msg - 300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    va_end(ap);
    snprintf(old, sizeof old, "%.700s", err_msg);
    if (old[0])
        snprintf(err_msg, sizeof err_msg, "%s: %s", ctx, old);
    else
        snprintf(err_msg, sizeof err_msg, "%s: %s", ctx, qk_status_str(st));
    return st;
}

const char *qk_last_error(void) { return err_msg[0] ? err_msg : "no error message recorded"; }
void qk_clear_error(void) { err_msg[0] = 0; }

void qk_log_set_level(qk_log_level lvl) { log_level = lvl; }
qk_log_level qk_log_get_level(void) { return log_level; }

void qk_log(qk_log_level lvl, const char *fmt, ...)
{
    static const char *tag[] = { "error", "warning", "info", "debug" };
    if (lvl > log_level)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "qkit %s: ", tag[lvl]);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}
