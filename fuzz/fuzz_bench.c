/* libFuzzer harness: benchmark configs (YAML through libyaml) parsed with
 * qk_bench_config_parse: keys, values, model and backend names, the
 * expansion into cells. Relative paths resolve against the repository root
 * (tools/fuzz.sh runs there), so the shipped models can be named.
 * Input: the YAML text. */
#include "fuzz_common.h"

#include "qkit/bench.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_init();
    qk_bench_config *c = NULL;
    if (qk_bench_config_parse((const char *)data, size, "fuzz.yaml", ".", &c) == QK_OK) {
        if (!c || c->n_cells < 0)
            abort();
        for (int i = 0; i < c->n_cells; i++)
            if (c->cells[i].model < 0 || c->cells[i].model >= c->n_models || c->cells[i].entry < 0 ||
                c->cells[i].entry >= c->n_entries || !c->cells[i].backend)
                abort(); /* every cell points into the config */
        qk_bench_config_free(c);
    }
    return 0;
}
