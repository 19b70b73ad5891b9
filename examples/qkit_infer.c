/* qkit_infer: integer-only inference of a quantized QDQ model (qrun.h).
 *
 *   qkit_infer q.onnx                 one synthetic image: prints its logits
 *   qkit_infer q.onnx DATASET_DIR     top-1 on DATASET_DIR's t10k split
 *                                     (MNIST format, e.g. /usr/share/datasets/fashion-mnist)
 * Exit status 0 on success, 1 on any error (the message on stderr). */
#include <qkit/qkit.h>

#include <stdio.h>
#include <stdlib.h>

static int fail(const char *what)
{
    fprintf(stderr, "qkit_infer: %s: %s\n", what, qk_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s MODEL.onnx [DATASET_DIR]\n", argv[0]);
        return 2;
    }
    qk_qrun_opts o;
    qk_qrun_opts_default(&o);
    qk_qrun *r;
    if (qk_qrun_load(argv[1], &o, &r) != QK_OK)
        return fail("load");
    int64_t d[4];
    qk_qrun_input_shape(r, d);
    int64_t classes = qk_qrun_classes(r), per = d[1] * d[2] * d[3];
    const qk_lower_stats *s = qk_qrun_stats(r);
    printf("%s: arith %s, %d integer layers, %d float layers, input [N,%lld,%lld,%lld], %lld outputs\n", argv[1],
           qk_arith_name(s->arith), s->int_layers, s->float_layers, (long long)d[1], (long long)d[2],
           (long long)d[3], (long long)classes);
    int rc = 1;
    float *x = NULL, *y = NULL;
    if (argc == 2) {
        x = malloc((size_t)per * sizeof *x);
        y = malloc((size_t)classes * sizeof *y);
        if (!x || !y)
            goto done;
        for (int64_t i = 0; i < per; i++)
            x[i] = (float)((i * 37) % 11) / 5.0f - 1.0f;
        if (qk_qrun_forward(r, 1, d[1], d[2], d[3], x, y) != QK_OK) {
            rc = fail("forward");
            goto done;
        }
        for (int64_t k = 0; k < classes; k++)
            printf("%s%.6g", k ? " " : "logits: ", y[k]);
        printf("\n");
        rc = 0;
        goto done;
    }
    qk_dataset ds;
    if (qk_dataset_load_dir(argv[2], "t10k", &ds) != QK_OK) {
        rc = fail("dataset");
        goto done;
    }
    qk_batcher b;
    int64_t batch = 256, correct = 0;
    if (d[1] != 1 || d[2] != ds.h || d[3] != ds.w || qk_batcher_init(&b, &ds, batch, 0, 0, qk_qrun_norm(r), NULL) != QK_OK) {
        fprintf(stderr, "qkit_infer: the dataset's %dx%d images do not fit the model\n", ds.h, ds.w);
        qk_dataset_free(&ds);
        goto done;
    }
    x = malloc((size_t)(batch * per) * sizeof *x);
    y = malloc((size_t)(batch * classes) * sizeof *y);
    int64_t *lab = malloc((size_t)batch * sizeof *lab);
    qk_batcher_epoch(&b, 0);
    double t0 = qk_now();
    for (int64_t i = 0; x && y && lab && i < qk_batcher_count(&b); i++) {
        int64_t m;
        if (qk_batcher_get(&b, i, x, lab, &m) != QK_OK) {
            fail("data");
            break;
        }
        if (qk_qrun_forward(r, m, d[1], d[2], d[3], x, y) != QK_OK) {
            fail("forward");
            break;
        }
        for (int64_t j = 0; j < m; j++) {
            int64_t best = 0;
            for (int64_t k = 1; k < classes; k++)
                best = y[j * classes + k] > y[j * classes + best] ? k : best;
            correct += best == lab[j];
        }
        if (i + 1 == qk_batcher_count(&b)) {
            double dt = qk_now() - t0;
            printf("top-1 %.2f%% (%lld/%lld), %.0f images/s\n", 100.0 * (double)correct / (double)ds.n,
                   (long long)correct, (long long)ds.n, (double)ds.n / dt);
            rc = 0;
        }
    }
    free(lab);
    qk_batcher_free(&b);
    qk_dataset_free(&ds);
done:
    free(x);
    free(y);
    qk_qrun_destroy(r);
    return rc;
}
