/* libFuzzer harness: image files (PNG through libpng, JPEG through
 * libjpeg-turbo) read with qk_image_load: decoding, channel conversion,
 * Pillow-style resizing and the centre crop; and qk_image_probe, the
 * header-only reading of the same file, which must accept every file
 * qk_image_load accepts and give the same sizes.
 * Input: byte 0 picks the channels (as decoded, 1 or 3), byte 1 the
 * shorter side to resize to (0: none, else 1-48), byte 2 the crop (0: none,
 * else 1-48); the rest is the file. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_init();
    if (size < 3)
        return 0;
    static const int chans[3] = { 0, 1, 3 };
    qk_data_opts o = { 0 };
    o.c = chans[data[0] % 3];
    o.resize = data[1] % 49;
    o.crop = data[2] % 49;
    const char *path = fz_path(data + 3, size - 3);
    uint8_t *chw = NULL;
    int c = 0, h = 0, w = 0, pc = 0, ph = 0, pw = 0;
    qk_status probed = qk_image_probe(path, &o, &pc, &ph, &pw);
    if (qk_image_load(path, &o, &chw, &c, &h, &w) == QK_OK) {
        if (c < 1 || h < 1 || w < 1 || (o.c && c != o.c) || (o.crop && (h != o.crop || w != o.crop)))
            abort(); /* the contract of qk_image_load */
        if (probed != QK_OK || pc != c || ph != h || pw != w)
            abort(); /* the header said what the decoding gives */
        fz_touch(chw, (int64_t)c * h * w);
        qk_free(chw);
    }
    return 0;
}
