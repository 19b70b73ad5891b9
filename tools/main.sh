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

# Post-training quantization of the default shipped model with a few backend
# profiles (fake quantization; calibration on 512 training images).
M=models/resnet8.onnx
printf '\nPTQ of %s (10k test images)\n\n' "$M"
printf '%-14s %-6s %-36s %8s %9s %8s\n' backend bits setting "FP32" quantized delta
printf '%-14s %-6s %-36s %8s %9s %8s\n' -------------- ------ ------------------------------------ -------- --------- --------
ptq_row() { # backend bits label args...
  local b=$1 bits=$2 label=$3; shift 3
  local out; out=$($Q ptq --model "$M" --backend "$b" --json "$@")
  local f t; f=$(printf '%s' "$out" | sed -E 's/.*"fp32_top1": ([0-9.]+).*/\1/'); t=$(printf '%s' "$out" | sed -E 's/.*"top1": ([0-9.]+).*/\1/')
  awk -v b="$b" -v w="$bits" -v l="$label" -v f="$f" -v t="$t" 'BEGIN { printf "%-14s %-6s %-36s %7.2f%% %8.2f%% %+8.2f\n", b, w, l, 100*f, 100*t, 100*(t-f) }'
}
ptq_row tensorrt W8A8 "percentile observer" 
ptq_row fbgemm W8A8 "mse observer, every op output"
ptq_row snpe W8A8 "uint8 asymmetric, every op output"
ptq_row openvino W8A8 "symmetric, unsigned after ReLU"
ptq_row academic W4A4 "naive per-channel min-max" --wbits 4 --abits 4
ptq_row academic W4A4 "ACIQ + bit alloc W + bias corr." --wbits 4 --abits 4 --observer aciq-laplace --bit-alloc w --bias-correct
ptq_row tvm W4A4 "power-of-two scales" --wbits 4 --abits 4
