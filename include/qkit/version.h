/* qkit version: the version of these headers (compile time) and of the
 * library that is running (qk_version, run time). libqkit.so's SONAME is
 * libqkit.so.QKIT_VERSION_MAJOR; the major number changes when the ABI does.
 *
 * Example (`make test` runs it):
 *
 *   printf("headers %s, library %s\n", QKIT_VERSION_STRING, qk_version());
 *   if (qk_version_number() / 10000 != QKIT_VERSION_MAJOR)
 *       return 1;                                  // built against another ABI
 * (end of example)
 *
 * Thread safety: both functions may be called from any thread at any time.
 */
#ifndef QKIT_VERSION_H
#define QKIT_VERSION_H

#define QKIT_VERSION_MAJOR 0
#define QKIT_VERSION_MINOR 1
#define QKIT_VERSION_PATCH 0
#define QKIT_VERSION_STR_(a, b, c) #a "." #b "." #c
#define QKIT_VERSION_STR(a, b, c) QKIT_VERSION_STR_(a, b, c)
#define QKIT_VERSION_STRING QKIT_VERSION_STR(QKIT_VERSION_MAJOR, QKIT_VERSION_MINOR, QKIT_VERSION_PATCH)

#ifdef __cplusplus
extern "C" {
#endif

/* "MAJOR.MINOR.PATCH" of the library linked in (static string). */
const char *qk_version(void);
/* MAJOR * 10000 + MINOR * 100 + PATCH of the library linked in. */
int qk_version_number(void);

#ifdef __cplusplus
}
#endif

#endif
