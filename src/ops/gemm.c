/* Row-major single-precision GEMM behind one entry point, qk_sgemm.
 *
 *   C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C      (row-major)
 *
 * Backends: "dnnl" (oneDNN dnnl_sgemm, row-major API), "openblas"
 * (cblas_sgemm) and "reference" (plain loops, the specification). The
 * caller names one (qk_sgemm_kind; operators pass their graph's option
 * `sgemm`); QK_SGEMM_DEFAULT is the one measured fastest on our conv
 * shapes (bench/bench_sgemm.c). No process-wide choice: the CLI maps
 * QKIT_SGEMM=dnnl|openblas|reference to the option.
 *
 * qk_sgemm is single-threaded: callers parallelize with qk_pool. Neither
 * library may start its own thread team, and the host program's settings
 * must survive (libqkit runs inside other programs): oneDNN (OpenMP build)
 * sizes its team from the calling thread's OpenMP ICV, so each call sets
 * omp_set_num_threads(1) for its thread and puts the thread's value back
 * before returning; OpenBLAS's thread count is process-wide, so it is 1
 * only while some qk_sgemm call is inside cblas_sgemm (a count under a
 * mutex) and the host's value is restored when the last one leaves.
 * omp_{get,set}_num_threads are looked up with dlsym (libgomp is loaded as
 * libdnnl's dependency), so libqkit needs no -fopenmp / -lgomp.
 *
 * beta == 0 follows BLAS: C is not read (NaN/garbage in C does not leak). */
#include "qkit/ops.h"

#include <cblas.h>
#include <dlfcn.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <string.h>

static const char *const bk_names[] = { "dnnl", "dnnl", "openblas", "reference" };

/* Default measured by bench/bench_sgemm.c on the conv shapes (see the
 * report in that file's header). */
#define BK_DEFAULT QK_SGEMM_DNNL

/* One-time setup of the libraries (no choice is stored here). */
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
typedef void (*omp_set_fn)(int);
typedef int (*omp_get_fn)(void);
static omp_set_fn omp_set;
static omp_get_fn omp_get;

static void sgemm_init(void)
{
    omp_set = (omp_set_fn)dlsym(RTLD_DEFAULT, "omp_set_num_threads");
    omp_get = (omp_get_fn)dlsym(RTLD_DEFAULT, "omp_get_max_threads");
    if (!omp_set || !omp_get)
        omp_set = NULL, omp_get = NULL;
}

/* OpenBLAS at one thread while any qk_sgemm is inside it (see above). */
static pthread_mutex_t blas_mu = PTHREAD_MUTEX_INITIALIZER;
static int blas_active, blas_saved;

static void blas_enter(void)
{
    pthread_mutex_lock(&blas_mu);
    if (blas_active++ == 0) {
        blas_saved = openblas_get_num_threads();
        if (blas_saved != 1)
            openblas_set_num_threads(1);
    }
    pthread_mutex_unlock(&blas_mu);
}

static void blas_leave(void)
{
    pthread_mutex_lock(&blas_mu);
    if (--blas_active == 0 && blas_saved != 1)
        openblas_set_num_threads(blas_saved);
    pthread_mutex_unlock(&blas_mu);
}

static qk_sgemm_kind resolve(qk_sgemm_kind k)
{
    return k > QK_SGEMM_DEFAULT && k <= QK_SGEMM_REFERENCE ? k : BK_DEFAULT;
}

const char *qk_sgemm_name(qk_sgemm_kind kind)
{
    return bk_names[resolve(kind)];
}

qk_status qk_sgemm_parse(const char *name, qk_sgemm_kind *out)
{
    for (int i = QK_SGEMM_DNNL; name && i <= QK_SGEMM_REFERENCE; i++)
        if (strcmp(name, bk_names[i]) == 0) {
            *out = (qk_sgemm_kind)i;
            return QK_OK;
        }
    return qk_error(QK_ERR_ARG, "sgemm backend '%s' is not one of dnnl, openblas, reference",
                    name ? name : "(null)");
}

/* Plain loops. Loop order keeps the innermost loop contiguous in C and B
 * for the common NN / TN cases. */
static void sgemm_ref(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                      const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                      float *C, int64_t ldc)
{
    for (int64_t i = 0; i < M; i++) {
        float *c = C + i * ldc;
        if (beta == 0.0f)
            for (int64_t j = 0; j < N; j++)
                c[j] = 0.0f;
        else if (beta != 1.0f)
            for (int64_t j = 0; j < N; j++)
                c[j] *= beta;
        if (!tb) {
            for (int64_t k = 0; k < K; k++) {
                float a = alpha * (ta ? A[k * lda + i] : A[i * lda + k]);
                const float *b = B + k * ldb;
                for (int64_t j = 0; j < N; j++)
                    c[j] += a * b[j];
            }
        } else {
            for (int64_t j = 0; j < N; j++) {
                const float *b = B + j * ldb;
                float s = 0.0f;
                for (int64_t k = 0; k < K; k++)
                    s += (ta ? A[k * lda + i] : A[i * lda + k]) * b[k];
                c[j] += alpha * s;
            }
        }
    }
}

void qk_sgemm(qk_sgemm_kind kind, int transa, int transb, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
              float *C, int64_t ldc)
{
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0 || alpha == 0.0f) {
        sgemm_ref(transa, transb, M, N, 0, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    pthread_once(&init_once, sgemm_init);
    qk_sgemm_kind bk = resolve(kind);
    int omp_prev = omp_get && bk != QK_SGEMM_REFERENCE ? omp_get() : 1;
    if (omp_prev != 1)
        omp_set(1);
    int done = 0;
    if (bk == QK_SGEMM_DNNL) {
        done = dnnl_sgemm(transa ? 'T' : 'N', transb ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) ==
               dnnl_success; /* argument error: the reference below */
    } else if (bk == QK_SGEMM_OPENBLAS && M <= INT32_MAX && N <= INT32_MAX && K <= INT32_MAX &&
               lda <= INT32_MAX && ldb <= INT32_MAX && ldc <= INT32_MAX) {
        blas_enter();
        cblas_sgemm(CblasRowMajor, transa ? CblasTrans : CblasNoTrans, transb ? CblasTrans : CblasNoTrans,
                    (blasint)M, (blasint)N, (blasint)K, alpha, A, (blasint)lda, B, (blasint)ldb, beta, C,
                    (blasint)ldc);
        blas_leave();
        done = 1;
    }
    if (omp_prev != 1)
        omp_set(omp_prev);
    if (!done)
        sgemm_ref(transa, transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
