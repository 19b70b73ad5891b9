#!/usr/bin/env bash
# Runs every test binary in $QKIT_BUILD/tests and every header example in
# $QKIT_BUILD/hdrex, sums their counts and ends with
# the line "N passed, N failed". Exit status is non-zero if anything failed.
set -u
B=${QKIT_BUILD:-build}
pass=0; fail=0; bad=()
for t in "$B"/tests/test_*; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  start=$(date +%s)
  out=$("$t" 2>&1); rc=$?
  secs=$(( $(date +%s) - start ))
  line=$(printf '%s\n' "$out" | grep -E '^[a-z0-9_]+: [0-9]+ passed, [0-9]+ failed' | tail -n1)
  p=$(printf '%s' "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/'); p=${p:-0}
  f=$(printf '%s' "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/'); f=${f:-0}
  if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  pass=$((pass + p)); fail=$((fail + f))
  if [ $rc -ne 0 ]; then bad+=("$name"); printf '%s\n' "$out" | grep -vE '^(ok|PASS)' | tail -n 40; fi
  printf '%-28s %5d passed %4d failed  %3ds\n' "$name" "$p" "$f" "$secs"
  printf '%s\n' "$out" | grep -E '^(onnx-node|info):' || true
done
# The integer engine's automatic kernel choice at each instruction-set level a
# CPU can select (QKIT_ISA caps it; test_int_gemm forces every kernel by index):
# the lowering and end-to-end integer tests again at vnni (AVX-512 VNNI without
# AMX: Zen 4/5, Ice Lake), avx512 and avx2; the float operators and fused
# chains at avx2 (the portable depthwise method, row kernels and fused
# dequantize-pool loops instead of the AVX-512 ones).
for isa in vnni avx512 avx2; do
  for t in test_int_onnx test_lower test_int_dw test_ops_heavy test_options; do
    case "$t" in test_ops_heavy|test_options) [ "$isa" != avx2 ] && continue ;; esac
    [ -x "$B/tests/$t" ] || continue
    name="$t (QKIT_ISA=$isa)"
    start=$(date +%s)
    out=$(QKIT_ISA=$isa "$B/tests/$t" 2>&1); rc=$?
    secs=$(( $(date +%s) - start ))
    line=$(printf '%s\n' "$out" | grep -E '^[a-z0-9_]+: [0-9]+ passed, [0-9]+ failed' | tail -n1)
    p=$(printf '%s' "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/'); p=${p:-0}
    f=$(printf '%s' "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/'); f=${f:-0}
    if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    pass=$((pass + p)); fail=$((fail + f))
    if [ $rc -ne 0 ]; then bad+=("$name"); printf '%s\n' "$out" | grep -vE '^(ok|PASS)' | tail -n 40; fi
    printf '%-28s %5d passed %4d failed  %3ds\n' "$name" "$p" "$f" "$secs"
  done
done
# The worked examples of the public headers (tools/header_examples.sh): one
# program each, run from the repository root; exit status 0 counts as 1 passed.
for t in "$B"/hdrex/*; do
  [ -f "$t" ] && [ -x "$t" ] || continue
  name="example $(basename "$t").h"
  start=$(date +%s)
  out=$("$t" 2>&1); rc=$?
  secs=$(( $(date +%s) - start ))
  if [ $rc -eq 0 ]; then p=1; f=0; else p=0; f=1; bad+=("$name"); printf '%s\n' "$out" | tail -n 20; fi
  pass=$((pass + p)); fail=$((fail + f))
  printf '%-28s %5d passed %4d failed  %3ds\n' "$name" "$p" "$f" "$secs"
done
# The Python package (python/qkit) with Debian's python3 and numpy
# (tools/test_python.sh: skipped with a note when numpy is missing).
start=$(date +%s)
out=$(QKIT_BUILD="$B" bash tools/test_python.sh 2>&1); rc=$?
secs=$(( $(date +%s) - start ))
line=$(printf '%s\n' "$out" | grep -E '^test_python: [0-9]+ passed, [0-9]+ failed' | tail -n1)
p=$(printf '%s' "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/'); p=${p:-0}
f=$(printf '%s' "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/'); f=${f:-0}
if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
pass=$((pass + p)); fail=$((fail + f))
if [ $rc -ne 0 ]; then bad+=("test_python"); printf '%s\n' "$out" | tail -n 40; fi
printf '%-28s %5d passed %4d failed  %3ds\n' "test_python" "$p" "$f" "$secs"
printf '%s\n' "$out" | grep -E '^test_python: skipped' || true
# The umbrella header names and includes every public header.
miss=""
for h in include/qkit/*.h; do
  n=$(basename "$h")
  grep -q "^ \*   $n " include/qkit/qkit.h || miss="$miss $n(list)"
  [ "$n" = qkit.h ] || grep -q "^#include \"$n\"" include/qkit/qkit.h || miss="$miss $n(include)"
done
if [ -z "$miss" ]; then pass=$((pass + 1)); else fail=$((fail + 1)); bad+=("qkit.h"); echo "qkit.h misses:$miss"; fi
# The layering of docs/ARCHITECTURE.md holds on every include of src/.
if bash tools/check_layers.sh; then pass=$((pass + 1)); else fail=$((fail + 1)); bad+=("layers"); fi
[ ${#bad[@]} -gt 0 ] && echo "failing: ${bad[*]}"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
