/* Decode + preprocess throughput of an image folder: JPEG/PNG decoding
 * (libjpeg-turbo / libpng), shorter side to 256 (Pillow's bilinear), centre
 * crop 224, then normalization to float NCHW with the ImageNet mean/std --
 * the pipeline of torchvision's Resize(256), CenterCrop(224), ToTensor(),
 * Normalize(...) on PIL images. bench/bench_decode.sh runs it next to that
 * pipeline.
 *
 *   build/bench/bench_decode DIR THREADS [REPEAT] [OUT.npy]
 *
 * Prints images/s (best of REPEAT); OUT.npy receives the uint8 [N,3,224,224]
 * pixels (for the pixel comparison with PIL). */
#include "qkit/data.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_decode DIR THREADS [REPEAT] [OUT.npy]\n");
        return 2;
    }
    int threads = atoi(argv[2]), repeat = argc > 3 ? atoi(argv[3]) : 3;
    qk_pool *pool = NULL;
    if (qk_pool_create(threads, &pool) != QK_OK) {
        fprintf(stderr, "%s\n", qk_last_error());
        return 1;
    }
    qk_data_opts o = { .c = 3, .resize = 256, .crop = 224 };
    qk_norm norm = qk_norm_imagenet();
    double best = 1e30;
    int64_t n = 0;
    for (int r = 0; r < repeat; r++) {
        qk_dataset ds;
        double t0 = qk_now();
        if (qk_dataset_load_images(argv[1], &o, pool, &ds) != QK_OK) {
            fprintf(stderr, "%s\n", qk_last_error());
            return 1;
        }
        n = ds.n;
        float *x = malloc((size_t)n * 3 * 224 * 224 * sizeof *x);
        int64_t *items = malloc((size_t)n * sizeof *items);
        for (int64_t i = 0; i < n; i++)
            items[i] = i;
        if (qk_dataset_fill(&ds, &norm, items, n, x, NULL, pool) != QK_OK) {
            fprintf(stderr, "%s\n", qk_last_error());
            return 1;
        }
        double t = qk_now() - t0;
        best = t < best ? t : best;
        if (r == repeat - 1 && argc > 4) {
            int64_t d[4] = { n, 3, 224, 224 };
            if (qk_npy_write(argv[4], "|u1", 4, d, ds.images) != QK_OK)
                fprintf(stderr, "%s\n", qk_last_error());
        }
        free(x);
        free(items);
        qk_dataset_free(&ds);
    }
    printf("qkit: %lld images, %d threads: %.1f images/s (%.3f s)\n", (long long)n, qk_pool_threads(pool),
           (double)n / best, best);
    qk_pool_destroy(pool);
    return 0;
}
