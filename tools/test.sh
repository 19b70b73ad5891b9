#!/usr/bin/env bash
# The README's test command: install what is missing, build, run the test
# suite, then run it again under AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh --test
jobs=$(nproc 2>/dev/null || echo 2)
make -j"$jobs" tests
make test
if [ "${QKIT_SKIP_SAN:-0}" != 1 ]; then
  echo "== again under ASan + UBSan =="
  make -j"$jobs" SAN=1 tests
  ASAN_OPTIONS=detect_leaks=1 make SAN=1 test
fi
