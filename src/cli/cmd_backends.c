/* qkit backends: the hardware backend profiles and their schemes. */
#include "cli.h"
#include "qkit/backend.h"

#include <stdio.h>

static const cli_opt opts[] = { CLI_COMMON_OPTS, { NULL, NULL, NULL, 0 } };

static void scheme(const qk_qparams *q, char *buf, size_t n)
{
    if (q->scheme == QK_QSCHEME_NNIE_LOG) {
        snprintf(buf, n, "log8 (NNIE)");
        return;
    }
    snprintf(buf, n, "%s %s%s %s%s%s", q->is_signed ? "int" : "uint", q->symmetric ? "sym" : "asym",
             q->narrow ? " narrow" : "", q->per_channel ? "per-channel" : "per-tensor", q->pot ? " pow2" : "",
             q->round == QK_ROUND_HALF_UP ? " half-up" : "");
}

static int run(cli_args *a)
{
    char w[64], ac[64];
    if (cli_flag(a, "json")) {
        cli_json j;
        cli_json_begin(&j, stdout);
        cli_json_arr_begin(&j, "backends");
        for (int i = 0; i < qk_backend_count(); i++) {
            const qk_backend *b = qk_backend_get(i);
            scheme(&b->weight, w, sizeof w);
            scheme(&b->act, ac, sizeof ac);
            cli_json_obj_begin(&j, NULL);
            cli_json_str(&j, "name", b->name);
            cli_json_str(&j, "summary", b->summary);
            cli_json_str(&j, "weights", w);
            cli_json_str(&j, "activations", ac);
            cli_json_str(&j, "quantized", qk_cover_name(b->cover));
            cli_json_str(&j, "add", qk_add_rule_name(b->add));
            cli_json_str(&j, "concat", qk_concat_rule_name(b->concat));
            cli_json_bool(&j, "fold_bn", b->fold_bn);
            cli_json_str(&j, "arith", qk_arith_name(b->arith));
            cli_json_int(&j, "wbits_min", b->wbits_min);
            cli_json_int(&j, "wbits_max", b->wbits_max);
            cli_json_int(&j, "abits_min", b->abits_min);
            cli_json_int(&j, "abits_max", b->abits_max);
            cli_json_str(&j, "w_observer", b->w_observer);
            cli_json_str(&j, "a_observer", b->a_observer);
            cli_json_bool(&j, "cle", b->cle);
            cli_json_bool(&j, "bias_correct", b->bias_correct);
            cli_json_obj_end(&j);
        }
        cli_json_arr_end(&j);
        cli_json_end(&j);
        return 0;
    }
    printf("%-13s %-28s %-26s %-17s %-7s %-6s %-9s %s\n", "backend", "weights", "activations", "quantized", "BN",
           "bits W", "bits A", "arith");
    for (int i = 0; i < qk_backend_count(); i++) {
        const qk_backend *b = qk_backend_get(i);
        char bw[16], ba[16];
        scheme(&b->weight, w, sizeof w);
        scheme(&b->act, ac, sizeof ac);
        snprintf(bw, sizeof bw, "%d-%d", b->wbits_min, b->wbits_max);
        snprintf(ba, sizeof ba, "%d-%d", b->abits_min, b->abits_max);
        printf("%-13s %-28s %-26s %-17s %-7s %-6s %-9s %s\n", b->name, w, ac, qk_cover_name(b->cover),
               b->fold_bn ? "folded" : "kept", bw, ba, qk_arith_name(b->arith));
    }
    printf("\n");
    for (int i = 0; i < qk_backend_count(); i++) {
        const qk_backend *b = qk_backend_get(i);
        printf("%-13s %s; add: %s; concat: %s; PTQ default: observers %s/%s%s%s\n", b->name, b->summary,
               qk_add_rule_name(b->add), qk_concat_rule_name(b->concat), b->w_observer, b->a_observer,
               b->cle ? ", cle (cross-layer equalization first; --no-cle: off)" : "",
               b->bias_correct ? ", bias-correct (after calibration; --no-bias-correct: off)" : "");
    }
    return 0;
}

const cli_cmd cli_cmd_backends = {
    "backends", "list the hardware backend profiles and their quantization schemes", "[options]",
    "Each profile is one entry of a table (src/quant/backend.c): the weight and\n"
    "activation quantizers, which op inputs/outputs are quantized, how Add and\n"
    "Concat are handled, whether BN is folded, the bit-widths it can do, the\n"
    "integer arithmetic of its requantization and its default PTQ recipe (the\n"
    "observers; cle where cross-layer equalization runs first, bias-correct where\n"
    "bias correction follows the calibration).",
    opts, run
};
