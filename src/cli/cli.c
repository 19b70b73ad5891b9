/* Option parsing, help, JSON output for the qkit commands. */
#include "cli.h"
#include "qkit/data.h"
#include "qkit/graph.h"
#include "qkit/quant.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int find_opt(const cli_cmd *cmd, const char *name, size_t len)
{
    for (int i = 0; cmd->opts[i].name; i++)
        if (strlen(cmd->opts[i].name) == len && strncmp(cmd->opts[i].name, name, len) == 0)
            return i;
    return -1;
}

void cli_help(const cli_cmd *cmd, FILE *f)
{
    fprintf(f, "usage: qkit %s %s\n\n%s\n\noptions:\n", cmd->name, cmd->usage, cmd->summary);
    for (int i = 0; cmd->opts[i].name; i++) {
        char left[64];
        const cli_opt *o = &cmd->opts[i];
        snprintf(left, sizeof left, "--%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        fprintf(f, "  %-24s %s%s\n", left, o->help, o->multi ? " (repeatable)" : "");
    }
    if (cmd->details)
        fprintf(f, "\n%s\n", cmd->details);
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "qkit %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see `qkit %s --help`)\n", cmd);
    va_end(ap);
    return 2;
}

int cli_observer_check(const char *cmd, const char *opt, const char *name)
{
    const char *canon;
    if (!name || qk_observer_lookup(name, &canon) == QK_OK)
        return 0;
    return cli_usage_error(cmd, "--%s: %s", opt, qk_last_error());
}

int cli_parse(const cli_cmd *cmd, int argc, char **argv, cli_args *a)
{
    memset(a, 0, sizeof *a);
    a->opts = cmd->opts;
    for (a->n = 0; cmd->opts[a->n].name; a->n++)
        if (a->n >= CLI_MAX_OPTS) {
            fprintf(stderr, "qkit %s: internal error: more than %d options in the table\n", cmd->name, CLI_MAX_OPTS);
            return 2;
        }
    for (int i = 0; i < argc; i++) {
        const char *s = argv[i];
        if (strcmp(s, "-h") == 0)
            s = "--help";
        if (strncmp(s, "--", 2) != 0)
            return cli_usage_error(cmd->name, "unexpected argument '%s'", s);
        const char *name = s + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        int k = find_opt(cmd, name, len);
        if (k < 0)
            return cli_usage_error(cmd->name, "unknown option '--%.*s'", (int)len, name);
        const cli_opt *o = &cmd->opts[k];
        const char *v = "1";
        if (o->arg) {
            if (eq)
                v = eq + 1;
            else if (i + 1 < argc)
                v = argv[++i];
            else
                return cli_usage_error(cmd->name, "option --%s needs a value (%s)", o->name, o->arg);
        } else if (eq) {
            return cli_usage_error(cmd->name, "option --%s takes no value", o->name);
        }
        a->val[k] = v;
        if (o->multi) {
            if (a->n_multi[k] >= CLI_MAX_MULTI)
                return cli_usage_error(cmd->name, "too many --%s options", o->name);
            a->multi[k][a->n_multi[k]++] = v;
        }
    }
    if (cli_flag(a, "help")) {
        cli_help(cmd, stdout);
        return 1;
    }
    return 0;
}

static int idx(const cli_args *a, const char *name)
{
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->opts[i].name, name) == 0)
            return i;
    return -1;
}

const char *cli_get(const cli_args *a, const char *name)
{
    int k = idx(a, name);
    return k >= 0 ? a->val[k] : NULL;
}

int cli_flag(const cli_args *a, const char *name) { return cli_get(a, name) != NULL; }

int cli_multi(const cli_args *a, const char *name, const char ***vals)
{
    int k = idx(a, name);
    if (k < 0) {
        *vals = NULL;
        return 0;
    }
    *vals = (const char **)a->multi[k];
    return a->n_multi[k];
}

int cli_int(const cli_args *a, const char *name, long long dflt, long long lo, long long hi, long long *out)
{
    const char *s = cli_get(a, name);
    if (!s) {
        *out = dflt;
        return 0;
    }
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "qkit: --%s must be an integer in %lld..%lld (got '%s')\n", name, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_double(const cli_args *a, const char *name, double dflt, double lo, double hi, double *out)
{
    const char *s = cli_get(a, name);
    if (!s) {
        *out = dflt;
        return 0;
    }
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi) {
        fprintf(stderr, "qkit: --%s must be a number in %g..%g (got '%s')\n", name, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_fail(const char *cmd, qk_status st)
{
    fprintf(stderr, "qkit %s: error: %s\n", cmd, qk_last_error());
    (void)st;
    return 1;
}

qk_pool *cli_pool(const cli_args *a, const char *cmd, int *ok)
{
    long long nt;
    *ok = 0;
    if (cli_int(a, "threads", 0, 0, 256, &nt) < 0)
        return NULL;
    qk_pool *p = NULL;
    qk_status st = qk_pool_create((int)nt, &p);
    if (st != QK_OK) {
        cli_fail(cmd, st);
        return NULL;
    }
    *ok = 1;
    return p;
}

int cli_progress_enabled(const cli_args *a)
{
    return !cli_flag(a, "json") && qk_stderr_is_tty();
}

/* ---- JSON ---- */

void cli_json_escape(FILE *f, const char *s)
{
    fputc('"', f);
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", f);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void key(cli_json *j, const char *k)
{
    if (!j->first)
        fputs(", ", j->f);
    j->first = 0;
    if (k) {
        cli_json_escape(j->f, k);
        fputs(": ", j->f);
    }
}

void cli_json_begin(cli_json *j, FILE *f)
{
    j->f = f;
    j->first = 1;
    j->depth = 0;
    fputc('{', f);
}

void cli_json_num(cli_json *j, const char *k, double v)
{
    key(j, k);
    if (isfinite(v))
        fprintf(j->f, "%.10g", v);
    else
        fputs("null", j->f);
}

void cli_json_int(cli_json *j, const char *k, long long v)
{
    key(j, k);
    fprintf(j->f, "%lld", v);
}

void cli_json_str(cli_json *j, const char *k, const char *v)
{
    key(j, k);
    if (v)
        cli_json_escape(j->f, v);
    else
        fputs("null", j->f);
}

void cli_json_bool(cli_json *j, const char *k, int v)
{
    key(j, k);
    fputs(v ? "true" : "false", j->f);
}

void cli_json_raw(cli_json *j, const char *k, const char *raw)
{
    key(j, k);
    fputs(raw, j->f);
}

void cli_json_obj_begin(cli_json *j, const char *k)
{
    key(j, k);
    fputc('{', j->f);
    j->first = 1;
    j->depth++;
}

void cli_json_obj_end(cli_json *j)
{
    fputc('}', j->f);
    j->first = 0;
    j->depth--;
}

void cli_json_arr_begin(cli_json *j, const char *k)
{
    key(j, k);
    fputc('[', j->f);
    j->first = 1;
    j->depth++;
}

void cli_json_arr_end(cli_json *j)
{
    fputc(']', j->f);
    j->first = 0;
    j->depth--;
}

void cli_json_end(cli_json *j)
{
    fputs("}\n", j->f);
    fflush(j->f);
}
int cli_check_writable(const char *cmd, const char *opt, const char *path)
{
    char tmp[4096];
    if (!path || snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path) >= (int)sizeof tmp)
        return cli_usage_error(cmd, "--%s: path too long", opt);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        fprintf(stderr, "qkit %s: --%s %s: cannot write there: %s\n", cmd, opt, path, strerror(errno));
        return 2;
    }
    close(fd);
    unlink(tmp);
    return 0;
}
