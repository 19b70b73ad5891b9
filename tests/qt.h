/* Minimal test harness: each test binary counts checks and ends with
 * "<name>: N passed, M failed"; tools/run_tests.sh sums them. */
#ifndef QT_H
#define QT_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* SANITIZED: 1 in an AddressSanitizer build (gcc or clang), where tests run
 * 5-10x slower and leave accuracy budgets to the plain build. */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

static int qt_pass, qt_fail;

#define QT_CHECK(cond, ...) do { \
    if (cond) qt_pass++; \
    else { qt_fail++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
           fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

#define QT_OK(expr) do { qk_status qt_st_ = (expr); \
    QT_CHECK(qt_st_ == QK_OK, "%s -> %s: %s", #expr, qk_status_str(qt_st_), qk_last_error()); } while (0)

#define QT_NEAR(a, b, tol, what) do { double qa_ = (a), qb_ = (b); \
    QT_CHECK(fabs(qa_ - qb_) <= (tol), "%s: %.9g vs %.9g (tol %g)", what, qa_, qb_, (double)(tol)); } while (0)

static inline int qt_finish(const char *name)
{
    printf("%s: %d passed, %d failed\n", name, qt_pass, qt_fail);
    return qt_fail ? 1 : 0;
}
#endif
