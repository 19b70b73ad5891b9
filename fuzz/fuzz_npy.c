/* libFuzzer harness: .npy files, read whole with qk_npy_read and as an
 * image dataset with its labels through qk_dataset_load_npy.
 * Input: byte 0 bit 0 picks NHWC, bit 1 a labels file, bits 2-7 a limit
 * (0: all); bytes 1-2 (little endian) where the labels file starts; the rest
 * is the images file then the labels file. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_init();
    if (size < 3)
        return 0;
    int flags = data[0];
    size_t split = (size_t)data[1] | (size_t)data[2] << 8;
    data += 3;
    size -= 3;
    if (split > size)
        split = size;
    const char *img = fz_path_n(0, data, split), *lab = fz_path_n(1, data + split, size - split);
    char descr[16];
    int ndim = 0;
    int64_t dims[8];
    void *buf = NULL;
    if (qk_npy_read(img, descr, &ndim, dims, &buf) == QK_OK) {
        if (ndim < 0 || ndim > 8)
            abort();
        qk_free(buf);
    }
    qk_data_opts o = { 0 };
    o.nhwc = flags & 1;
    o.labels = flags & 2 ? lab : NULL;
    o.limit = flags >> 2;
    qk_dataset ds;
    if (qk_dataset_load_npy(img, &o, &ds) == QK_OK) {
        int64_t px = ds.n * qk_dataset_channels(&ds) * ds.h * ds.w;
        if (ds.images)
            fz_touch(ds.images, px);
        if (ds.fimages)
            fz_touch(ds.fimages, px * 4);
        for (int64_t i = 0; i < ds.n; i++)
            if (qk_dataset_has_labels(&ds) && (qk_dataset_label(&ds, i) < 0 || qk_dataset_label(&ds, i) >= ds.classes))
                abort(); /* labels lie in [0, classes) */
        qk_dataset_free(&ds);
    }
    return 0;
}
