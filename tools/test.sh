#!/usr/bin/env bash
# The README's test command: install what is missing, build, run the test
# suite, then run it again under AddressSanitizer + UndefinedBehaviorSanitizer,
# then a libFuzzer smoke of every harness in fuzz/: the committed corpus
# replayed and mutated to 30000 inputs with a fixed seed (tools/fuzz.sh --runs;
# needs clang, which --test installs). Longer campaigns: tools/fuzz.sh SECONDS. QKIT_SKIP_SAN=1 / QKIT_SKIP_FUZZ=1 skip those
# two stages for quick local runs; CI runs everything.
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
if [ "${QKIT_SKIP_FUZZ:-0}" != 1 ]; then
  if command -v clang >/dev/null; then
    echo "== fuzz smoke (tools/fuzz.sh --runs 30000, $jobs harnesses at once) =="
    QKIT_FUZZ_JOBS=${QKIT_FUZZ_JOBS:-$jobs} bash tools/fuzz.sh --runs 30000
  else
    echo "== fuzz smoke skipped: clang not installed ==" >&2
  fi
fi
