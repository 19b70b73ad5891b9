/* libFuzzer harness: IDX files (plain or gzip) read with qk_idx_read at 1..4
 * dimensions, then an images + labels pair through qk_dataset_load.
 * Input: byte 0 picks the rank; bytes 1-2 (little endian) where the
 * labels file starts; the rest is the images file then the labels file. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_init();
    if (size < 3)
        return 0;
    int ndim = 1 + data[0] % 4;
    size_t split = (size_t)data[1] | (size_t)data[2] << 8;
    data += 3;
    size -= 3;
    if (split > size)
        split = size;
    const char *img = fz_path_n(0, data, split), *lab = fz_path_n(1, data + split, size - split);
    int64_t dims[4];
    uint8_t *buf = NULL;
    if (qk_idx_read(img, ndim, dims, &buf) == QK_OK) {
        int64_t n = 1;
        for (int i = 0; i < ndim; i++)
            n *= dims[i];
        fz_touch(buf, n);
        qk_free(buf);
    }
    qk_dataset ds;
    if (qk_dataset_load(img, lab, &ds) == QK_OK) {
        fz_touch(ds.images, ds.n * ds.h * ds.w);
        fz_touch(ds.labels, ds.n);
        qk_dataset_free(&ds);
    }
    return 0;
}
