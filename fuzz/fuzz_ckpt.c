/* libFuzzer harness: training checkpoints (src/train/checkpoint.c) through
 * qk_checkpoint_info and qk_ckpt_load into a small fixed model with an Adam
 * optimizer. The input is the file without its trailing FNV-1a checksum:
 * the harness appends the right one, so mutations reach the parser instead
 * of stopping at the checksum test (the checksum test itself is tested in
 * tests/test_train.c).
 * QKIT_FUZZ_WRITE_SEED=path: write a valid seed (a checkpoint of that model,
 * checksum stripped) to path and exit. */
#include "fuzz_common.h"
#include "train_internal.h"

static qk_graph *model;
static qk_optim *opt;

static int add_init(qk_graph *g, const char *name, qk_value_kind kind, qk_dtype dt, int ndim, const int64_t *dims)
{
    qk_tensor t;
    if (qk_tensor_alloc(&t, dt, ndim, dims) != QK_OK)
        abort();
    memset(t.data, 0, qk_tensor_bytes(&t));
    int v = qk_graph_add_init(g, name, kind, &t);
    if (v < 0)
        abort();
    qk_tensor_free(&t);
    return v;
}

static void build_model(void)
{
    if (qk_graph_create(&model) != QK_OK)
        abort();
    int x = qk_graph_add_input(model, "x", QK_F32, 2, (int64_t[]){ -1, 4 });
    int w = add_init(model, "fc.weight", QK_VALUE_PARAM, QK_F32, 2, (int64_t[]){ 3, 4 });
    int b = add_init(model, "fc.bias", QK_VALUE_PARAM, QK_F32, 1, (int64_t[]){ 3 });
    add_init(model, "shape", QK_VALUE_CONST, QK_I64, 1, (int64_t[]){ 2 });
    int y = qk_graph_add_value(model, "y", QK_VALUE_ACT);
    if (qk_graph_add_node(model, "Gemm", "fc", 3, (int[]){ x, w, b }, 1, &y) < 0 ||
        qk_node_set_int(model, model->n_nodes - 1, "transB", 1) != QK_OK ||
        qk_graph_add_output(model, y) != QK_OK || qk_graph_set_meta(model, "qkit.arch", "fuzz") != QK_OK)
        abort();
    qk_optim_config c = { 0 };
    c.kind = QK_OPTIM_ADAM;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    c.eps = 1e-8f;
    if (qk_optim_create(model, &c, &opt) != QK_OK)
        abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_init();
    const char *seed = getenv("QKIT_FUZZ_WRITE_SEED");
    if (seed) {
        build_model();
        qk_train_state s = { 0x1234, 7, 1, 2, 3, 0.5, 4, 5 };
        if (qk_ckpt_save(seed, model, opt, &s) != QK_OK) {
            fprintf(stderr, "%s\n", qk_last_error());
            exit(1);
        }
        FILE *f = fopen(seed, "r+b");
        if (!f || fseek(f, 0, SEEK_END) != 0 || ftruncate(fileno(f), ftell(f) - 8) != 0)
            exit(1);
        fclose(f);
        exit(0);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size + 8);
    if (!buf)
        return 0;
    if (size)
        memcpy(buf, data, size);
    uint64_t h = qk_fnv1a(QK_FNV_INIT, data, size);
    for (int i = 0; i < 8; i++)
        buf[size + i] = (uint8_t)(h >> (8 * i));
    const char *path = fz_path(buf, size + 8);
    free(buf);
    build_model();
    qk_ckpt_info info;
    (void)qk_checkpoint_info(path, &info);
    qk_train_state s;
    (void)qk_ckpt_load(path, model, opt, &s, 0);
    qk_optim_destroy(opt);
    qk_graph_destroy(model);
    build_model(); /* (metadata and values the load changed start afresh) */
    (void)qk_checkpoint_load_params(path, model);
    qk_optim_destroy(opt);
    qk_graph_destroy(model);
    return 0;
}
