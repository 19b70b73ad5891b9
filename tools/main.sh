#!/usr/bin/env bash
# The README's main-job command: install what is missing, build qkit, then
# evaluate every shipped model on the Fashion-MNIST test set and print a table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh
jobs=$(nproc 2>/dev/null || echo 2)
make -j"$jobs" >/dev/null
Q=build/qkit
printf '\n%-14s %8s %10s %12s\n' model "top-1" images "images/s"
printf '%-14s %8s %10s %12s\n' -------------- -------- ---------- ------------
for m in models/*.onnx; do
  name=$(basename "$m" .onnx)
  out=$($Q eval --model "$m" --json)
  top1=$(printf '%s' "$out" | sed -E 's/.*"top1": ([0-9.]+).*/\1/')
  imgs=$(printf '%s' "$out" | sed -E 's/.*"images": ([0-9]+).*/\1/')
  ips=$(printf '%s' "$out" | sed -E 's/.*"images_per_s": ([0-9.]+).*/\1/')
  awk -v n="$name" -v t="$top1" -v i="$imgs" -v r="$ips" 'BEGIN { printf "%-14s %7.2f%% %10s %12.0f\n", n, t * 100, i, r }' 
done
