/* qkit: command-line entry point. Each subcommand lives in cmd_<name>.c. */
#include "cli.h"
#include "qkit/version.h"

#include <stdio.h>
#include <string.h>

extern const cli_cmd cli_cmd_train, cli_cmd_eval, cli_cmd_info, cli_cmd_run;
extern const cli_cmd cli_cmd_export, cli_cmd_ptq, cli_cmd_backends;
extern const cli_cmd cli_cmd_qat, cli_cmd_bench, cli_cmd_analyze;

static const cli_cmd *const commands[] = {
    &cli_cmd_train, &cli_cmd_eval, &cli_cmd_info, &cli_cmd_run, &cli_cmd_ptq, &cli_cmd_qat, &cli_cmd_analyze, &cli_cmd_backends, &cli_cmd_export, &cli_cmd_bench, NULL
};

static void usage(FILE *f)
{
    fprintf(f, "qkit: neural-network quantization toolkit\n\nusage: qkit COMMAND [options]\n\ncommands:\n");
    for (int i = 0; commands[i]; i++)
        fprintf(f, "  %-10s %s\n", commands[i]->name, commands[i]->summary);
    fprintf(f, "\n`qkit COMMAND --help` describes a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "help") == 0 && argc > 2) { /* qkit help CMD = qkit CMD --help */
        for (int i = 0; commands[i]; i++)
            if (strcmp(argv[2], commands[i]->name) == 0) {
                cli_help(commands[i], stdout);
                return 0;
            }
        fprintf(stderr, "qkit: unknown command '%s'\n\n", argv[2]);
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("qkit %s\n", qk_version()); /* the library's (qkit/version.h) */
        return 0;
    }
    for (int i = 0; commands[i]; i++) {
        if (strcmp(argv[1], commands[i]->name) != 0)
            continue;
        cli_args a;
        int rc = cli_parse(commands[i], argc - 2, argv + 2, &a);
        if (rc == 1)
            return 0;
        if (rc)
            return rc;
        if (cli_flag(&a, "verbose"))
            qk_log_set_level(QK_LOG_DEBUG);
        qk_status st = cli_env_init();
        if (st != QK_OK)
            return cli_fail(commands[i]->name, st);
        rc = commands[i]->run(&a);
        cli_env_finish();
        return rc;
    }
    fprintf(stderr, "qkit: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
