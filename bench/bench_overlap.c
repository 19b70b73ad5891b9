/* Time to the first batch of an image folder, decoding before returning
 * (eager) against decoding in the background (qk_data_opts.background):
 * when qk_dataset_load_images returns, when the first BATCH images can be
 * read (qk_dataset_wait), when all can. bench/bench_overlap.sh runs it next
 * to `qkit eval` on the same folder.
 *
 *   build/bench/bench_overlap DIR THREADS BATCH C RESIZE CROP [REPEAT]
 *
 * C, RESIZE, CROP: the loader options (0: none), as qkit eval's --resize
 * and --crop with a model of C channels. Prints the median of REPEAT
 * rounds (default 5), eager and background alternating. */
#include "qkit/data.h"

#include <stdio.h>
#include <stdlib.h>

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int main(int argc, char **argv)
{
    if (argc < 7) {
        fprintf(stderr, "usage: bench_overlap DIR THREADS BATCH C RESIZE CROP [REPEAT]\n");
        return 2;
    }
    int threads = atoi(argv[2]), repeat = argc > 7 ? atoi(argv[7]) : 5;
    int64_t batch = atoll(argv[3]);
    if (repeat < 1 || repeat > 100 || batch < 1) {
        fprintf(stderr, "bench_overlap: REPEAT 1..100, BATCH >= 1\n");
        return 2;
    }
    qk_pool *pool = NULL;
    if (qk_pool_create(threads, &pool) != QK_OK) {
        fprintf(stderr, "%s\n", qk_last_error());
        return 1;
    }
    qk_data_opts o = { .c = atoi(argv[4]), .resize = atoi(argv[5]), .crop = atoi(argv[6]) };
    double eager[100], ret[100], first[100], all[100];
    int64_t n = 0;
    for (int r = 0; r < repeat; r++)
        for (int bg = 0; bg < 2; bg++) {
            qk_dataset ds;
            o.background = bg;
            double t0 = qk_now();
            qk_status st = qk_dataset_load_images(argv[1], &o, pool, &ds);
            double t1 = qk_now();
            if (st == QK_OK)
                st = qk_dataset_wait(&ds, 0, batch);
            double t2 = qk_now();
            if (st == QK_OK)
                st = qk_dataset_wait(&ds, 0, ds.n);
            double t3 = qk_now();
            if (st != QK_OK) {
                fprintf(stderr, "%s\n", qk_last_error());
                return 1;
            }
            n = ds.n;
            qk_dataset_free(&ds);
            if (bg) {
                ret[r] = t1 - t0;
                first[r] = t2 - t0;
                all[r] = t3 - t0;
            } else {
                eager[r] = t1 - t0;
            }
        }
    printf("%lld images, %d threads, batch %lld, median of %d: eager: load %.3f s (first batch then too); "
           "background: load returns %.3f s, first batch %.3f s, all %.3f s\n",
           (long long)n, qk_pool_threads(pool), (long long)batch, repeat, median(eager, repeat),
           median(ret, repeat), median(first, repeat), median(all, repeat));
    qk_pool_destroy(pool);
    return 0;
}
