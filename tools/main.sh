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
# profiles: fake-quant accuracy, the integer engine's accuracy (the same model
# run in the backend's integer arithmetic), the hardware gap (fake - real) and
# the integer engine's speed beside the float model's.
M=models/resnet8.onnx
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fl=$($Q eval --model "$M" --json)
fps=$(printf '%s' "$fl" | sed -E 's/.*"images_per_s": ([0-9.]+).*/\1/')
printf '\nPTQ of %s, 512 calibration images, 10k test images (float: %.0f images/s)\n\n' "$M" "$fps"
printf '%-12s %-5s %-34s %7s %7s %7s %7s %6s %10s\n' backend bits setting FP32 fake delta real gap "int img/s"
printf '%-12s %-5s %-34s %7s %7s %7s %7s %6s %10s\n' ------------ ----- ---------------------------------- ------- ------- ------- ------- ------ ----------
ptq_row() { # backend bits label args...
  local b=$1 bits=$2 label=$3; shift 3
  local out f t real gap ips
  out=$($Q ptq --model "$M" --backend "$b" --json --out "$tmp/q.onnx" "$@")
  f=$(printf '%s' "$out" | sed -E 's/.*"fp32_top1": ([0-9.]+).*/\1/'); t=$(printf '%s' "$out" | sed -E 's/.*"top1": ([0-9.]+).*/\1/')
  real=nan; gap=nan; ips=nan
  if cmp=$($Q eval --model "$tmp/q.onnx" --compare --json 2>/dev/null); then
    real=$(printf '%s' "$cmp" | sed -E 's/.*"real_top1": ([-0-9.e]+).*/\1/'); gap=$(printf '%s' "$cmp" | sed -E 's/.*"gap": ([-0-9.e]+).*/\1/')
    ips=$($Q eval --model "$tmp/q.onnx" --real --json | sed -E 's/.*"images_per_s": ([0-9.]+).*/\1/')
  fi
  awk -v b="$b" -v w="$bits" -v l="$label" -v f="$f" -v t="$t" -v r="$real" -v g="$gap" -v s="$ips" 'BEGIN {
    printf "%-12s %-5s %-34s %6.2f%% %6.2f%% %+7.2f", b, w, l, 100*f, 100*t, 100*(t-f)
    if (r == "nan") printf " %7s %6s %10s\n", "-", "-", "-"; else printf " %6.2f%% %+6.2f %10.0f\n", 100*r, 100*g, s }'
}
ptq_row tensorrt W8A8 "percentile observer"
ptq_row fbgemm W8A8 "percentile, every op output"
ptq_row snpe W8A8 "uint8 asym, gemmlowp requant"
ptq_row openvino W8A8 "symmetric, unsigned after ReLU"
ptq_row onnx-qlinear W8A8 "uint8 asym, ONNX Runtime rounding"
ptq_row academic W4A4 "naive per-channel min-max" --wbits 4 --abits 4
ptq_row academic W4A4 "ACIQ + bit alloc W + bias corr." --wbits 4 --abits 4 --observer aciq-laplace --bit-alloc w --bias-correct
ptq_row tvm W4A4 "power-of-two scales" --wbits 4 --abits 4
printf '\ndelta = fake - FP32; gap = fake - real (the hardware gap, in points); real = integer arithmetic\n'
