/* libFuzzer harness: a TensorProto file (.pb, the ONNX test-data format)
 * read with qk_onnx_load_tensor. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_init();
    qk_tensor t;
    char *name = NULL;
    if (qk_onnx_load_tensor(fz_path(data, size), &t, &name) == QK_OK) {
        /* touch every byte: the tensor must be as large as its shape says */
        volatile uint8_t acc = 0;
        const uint8_t *p = t.data;
        for (size_t i = 0; i < qk_tensor_bytes(&t); i++)
            acc ^= p[i];
        (void)acc;
        qk_tensor_free(&t);
        qk_free(name);
    }
    return 0;
}
