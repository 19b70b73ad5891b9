#!/usr/bin/env bash
# Runs every libFuzzer harness (fuzz/fuzz_*.c, built by `make fuzz`) for
# SECONDS each (default 30) on a temporary copy of its committed corpus
# fuzz/corpus/<name>/ (the committed corpus is never modified), with
# -timeout=10 -rss_limit_mb=2048 and leak detection. Fails (exit 1) on any
# crash, sanitizer report, leak, timeout or out-of-memory; the reproducer
# and the log are kept in $QKIT_FUZZ_OUT (default build-fuzz/runs/<name>/).
#   tools/fuzz.sh [SECONDS] [NAME...]     e.g. tools/fuzz.sh 600 onnx qdq
#   tools/fuzz.sh --runs N [NAME...]      replays the corpus, then N - corpus
#                                         mutated inputs; with the fixed seed this
#                                         is the same inputs every time (the test
#                                         command's smoke)
#   QKIT_FUZZ_SEED=N      libFuzzer seed (default 1)
# QKIT_FUZZ_JOBS=N runs N harnesses at once (default 1).
set -uo pipefail
cd "$(dirname "$0")/.."
runs=
if [ "${1:-}" = --runs ]; then
  runs=${2:-}
  shift 2 || true
  case "$runs" in ''|*[!0-9]*) echo "fuzz.sh: --runs needs a number (got '$runs')" >&2; exit 2 ;; esac
  limit=(-runs="$runs")
else
  secs=${1:-30}
  shift || true
  case "$secs" in ''|*[!0-9]*) echo "fuzz.sh: SECONDS must be a number (got '$secs')" >&2; exit 2 ;; esac
  limit=(-max_total_time="$secs")
fi
if ! command -v clang >/dev/null; then
  echo "fuzz.sh: clang is needed (apt-get install clang)" >&2
  exit 2
fi
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for f in fuzz/fuzz_*.c; do n=${f#fuzz/fuzz_}; names+=("${n%.c}"); done
fi
make -s -j"$(nproc 2>/dev/null || echo 2)" fuzz >/dev/null || { echo "fuzz.sh: make fuzz failed" >&2; exit 1; }

# Longest input per harness (larger inputs only slow the search down).
max_len() {
  case "$1" in
    onnx) echo 16384 ;;
    qdq) echo 2048 ;;
    *) echo 8192 ;;
  esac
}

out_root=${QKIT_FUZZ_OUT:-build-fuzz/runs}
export ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
fail=0
run_one() {
  local n=$1 bin=build-fuzz/fuzz_$1 out=$out_root/$1
  rm -rf "$out" && mkdir -p "$out/corpus"
  [ -d "fuzz/corpus/$n" ] && cp -r "fuzz/corpus/$n/." "$out/corpus/"
  local dict=()
  [ -f "fuzz/$n.dict" ] && dict=(-dict="fuzz/$n.dict")
  "$bin" "$out/corpus" "${dict[@]}" -seed="${QKIT_FUZZ_SEED:-1}" "${limit[@]}" -timeout=10 -rss_limit_mb=2048 \
    -max_len="$(max_len "$n")" -print_final_stats=1 -artifact_prefix="$out/" >"$out/log" 2>&1
  local rc=$?
  local execs rate
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out/log")
  if [ $rc -ne 0 ]; then
    echo "FAIL fuzz_$n (exit $rc) after ${execs:-?} runs; log: $out/log; reproducer:" \
         "$(ls "$out"/crash-* "$out"/leak-* "$out"/timeout-* "$out"/oom-* 2>/dev/null | head -1)"
    grep -m3 -E 'ERROR|runtime error|SUMMARY' "$out/log" | sed 's/^/    /'
    return 1
  fi
  local cov
  cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$out/log" | tail -1)
  echo "ok   fuzz_$n: ${execs:-?} runs (${rate:-?}/s; $cov)"
}
jobs=${QKIT_FUZZ_JOBS:-1}
if [ "$jobs" -le 1 ]; then
  for n in "${names[@]}"; do run_one "$n" || fail=1; done
else
  pids=()
  for n in "${names[@]}"; do
    run_one "$n" & pids+=($!)
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 1; done
  done
  for p in "${pids[@]}"; do wait "$p" || fail=1; done
fi
[ $fail -eq 0 ] && echo "fuzz: all ${#names[@]} harnesses clean" || echo "fuzz: FAILED" >&2
exit $fail
