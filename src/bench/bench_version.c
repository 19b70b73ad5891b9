/* qkit's version and the commit the library was built from (the Makefile
 * passes QKIT_COMMIT and rebuilds this file when HEAD moves). */
#include "qkit/bench.h"

#ifndef QKIT_COMMIT
#define QKIT_COMMIT "unknown"
#endif

const char *qk_bench_version(void) { return "0.1.0"; }
const char *qk_bench_commit(void) { return QKIT_COMMIT; }
