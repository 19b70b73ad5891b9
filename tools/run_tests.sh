#!/usr/bin/env bash
# Runs every test binary in $QKIT_BUILD/tests, sums their counts and ends with
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
[ ${#bad[@]} -gt 0 ] && echo "failing: ${bad[*]}"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
