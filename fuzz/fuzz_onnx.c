/* libFuzzer harness: an ONNX model from bytes (qk_onnx_load_buffer: parse,
 * import, bind), planned at batch 2 (within FZ_MAX_BYTES) and run once on
 * zeros (when its nominal work is within FZ_MAX_WORK). Any crash, leak,
 * sanitizer report or hang is a bug; errors are fine. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_init();
    qk_graph *g = NULL;
    if (qk_onnx_load_buffer(data, size, "fuzz.onnx", &g) != QK_OK)
        return 0;
    fz_limit(g);
    if (qk_graph_plan(g, 2, 0, NULL) == QK_OK && fz_work(g) <= FZ_MAX_WORK) {
        for (int i = 0; i < g->n_inputs; i++) {
            qk_tensor *t = &g->values[g->inputs[i]].t;
            if (t->data)
                memset(t->data, 0, qk_tensor_bytes(t));
        }
        (void)qk_graph_forward(g);
    }
    qk_graph_destroy(g);
    return 0;
}
