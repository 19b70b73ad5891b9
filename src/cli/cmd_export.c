/* qkit export: a QDQ model -> the files one backend's toolchain consumes. */
#include "cli.h"
#include "qkit/deploy.h"

#include <stdio.h>
#include <string.h>

static const cli_opt opts[] = {
    { "model", "Q.onnx", "QDQ model written by `qkit ptq` (required)", 0 },
    { "backend", "NAME", "target profile (default: the model's qkit.backend metadata)", 0 },
    { "out", "DIR", "output directory (required; created, or files replaced atomically)", 0 },
    { "list", NULL, "list the backends and what each gets", 0 },
    CLI_COMMON_OPTS,
    { NULL, NULL, NULL, 0 }
};

static const char *files_for(const char *backend)
{
    if (strcmp(backend, "tensorrt") == 0)
        return "model_float.onnx dynamic_range.json model_qdq.onnx";
    if (strcmp(backend, "snpe") == 0)
        return "model_float.onnx encodings.json";
    if (strcmp(backend, "onnx-qlinear") == 0)
        return "model_qlinear.onnx";
    return "quant_params.json";
}

static int list(const cli_args *a)
{
    int json = cli_flag(a, "json");
    cli_json j;
    if (json) {
        cli_json_begin(&j, stdout);
        cli_json_arr_begin(&j, "backends");
    }
    for (int i = 0; i < qk_backend_count(); i++) {
        const char *name = qk_backend_get(i)->name;
        if (json) {
            cli_json_obj_begin(&j, NULL);
            cli_json_str(&j, "name", name);
            cli_json_arr_begin(&j, "files"); /* the shape `export --json` gives */
            char buf[128];
            snprintf(buf, sizeof buf, "%s", files_for(name));
            for (char *t = strtok(buf, " "); t; t = strtok(NULL, " "))
                cli_json_str(&j, NULL, t);
            cli_json_arr_end(&j);
            cli_json_obj_end(&j);
        } else {
            printf("%-14s %s\n", name, files_for(name));
        }
    }
    if (json) {
        cli_json_arr_end(&j);
        cli_json_end(&j);
    }
    return 0;
}

static int run(cli_args *a)
{
    if (cli_flag(a, "list"))
        return list(a);
    const char *model = cli_get(a, "model"), *out = cli_get(a, "out"), *backend = cli_get(a, "backend");
    if (!model)
        return cli_usage_error("export", "--model Q.onnx is required");
    if (!out)
        return cli_usage_error("export", "--out DIR is required");
    qk_deploy_result r;
    qk_status st = qk_deploy_export(model, backend, out, &r);
    if (st != QK_OK)
        return cli_fail("export", st);
    if (cli_flag(a, "json")) {
        cli_json j;
        cli_json_begin(&j, stdout);
        cli_json_str(&j, "model", model);
        cli_json_str(&j, "backend", r.backend->name);
        cli_json_str(&j, "out", out);
        cli_json_arr_begin(&j, "files");
        for (int i = 0; i < r.n_files; i++)
            cli_json_str(&j, NULL, r.files[i]);
        cli_json_arr_end(&j);
        cli_json_int(&j, "weights", r.n_weights);
        cli_json_int(&j, "activations", r.n_activations);
        cli_json_int(&j, "bias", r.n_bias);
        if (strcmp(r.backend->name, "onnx-qlinear") == 0)
            cli_json_int(&j, "qlinear_layers", r.n_qlinear);
        cli_json_end(&j);
    } else {
        printf("%s -> %s (backend %s): %d weight, %d activation quantizers%s\n", model, out, r.backend->name,
               r.n_weights, r.n_activations, r.n_bias ? " (+ int32 bias)" : "");
        if (strcmp(r.backend->name, "onnx-qlinear") == 0)
            printf("  %d layers as QLinearConv/QLinearMatMul, the rest in QDQ form\n", r.n_qlinear);
        for (int i = 0; i < r.n_files; i++)
            printf("  wrote %s/%s\n", out, r.files[i]);
    }
    return 0;
}

const cli_cmd cli_cmd_export = {
    "export", "write a QDQ model's deploy files for a backend (TensorRT, SNPE, ...)",
    "--model Q.onnx --out DIR [--backend NAME] | --list",
    "tensorrt: model_float.onnx + dynamic_range.json (amax = scale * 127) + model_qdq.onnx;\n"
    "snpe: model_float.onnx + encodings.json (AIMET style, offset = -zero_point);\n"
    "onnx-qlinear: model_qlinear.onnx (QLinearConv/QLinearMatMul); any other backend: quant_params.json.\n"
    "The formats are described in README.md, section \"Deploy files\".",
    opts, run
};
