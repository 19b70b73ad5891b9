#!/usr/bin/env bash
# QAT benchmark (not a test; docs/STATUS.md "Quantization-aware training"): prints Markdown tables of
#   1. academic W4A4 lsq and pact (and W2A2 lsq on resnet8) against FP32 and the calibrated PTQ start,
#      <= 4 epochs, test top-1 on the full 10k test set;
#   2. W8A8 QAT (lsq) vs PTQ of the same profile (tensorrt, fbgemm, snpe), with the hardware gap
#      of the written QDQ model (`qkit eval --compare`);
#   3. training throughput, float vs QAT (build/bench/bench_qat), with the ratio.
#   The PyTorch 1.13 QAT peer (bench/torch_peer.py qat: prepare_qat_fx, FakeQuantize with its default
#   moving-average min-max observers, every layer at the table's widths, the same SGD recipe and epochs)
#   runs beside qkit in tables 1 and 3 when python3-torch is installed (QKIT_NO_TORCH=1 skips it).
# Full runs take hours on a loaded 2-core machine: --models / --only / --epochs narrow them.
# usage: bash bench/bench_qat.sh [--models "lenet resnet8 mobilenetv2s"] [--only w4a4|w8a8|speed]
#        [--algos "lsq pact"] [--epochs N] [--threads N] [--limit N]
set -euo pipefail
cd "$(dirname "$0")/.."
Q=${QKIT:-build/qkit}
models="lenet resnet8 mobilenetv2s"; only=""; threads=2; limit=0; epochs=4; algos="lsq pact"
while [ $# -gt 0 ]; do
  case "$1" in
    --models) models=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --algos) algos=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --limit) limit=$2; shift 2 ;;
    *) echo "bench_qat: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$Q" ] || make -j2 >/dev/null
[ -x build/bench/bench_qat ] || make -j2 build/bench/bench_qat >/dev/null
PY=/usr/bin/python3
torch_ok=0
[ "${QKIT_NO_TORCH:-0}" != 1 ] && $PY -c "import torch" 2>/dev/null && torch_ok=1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
jnum() { sed -E "s/.*\"$1\": ?([-0-9.e+]+).*/\1/"; }
pct() { awk -v v="$1" 'BEGIN { printf "%.2f", 100 * v }'; }
lim=(); [ "$limit" -gt 0 ] && lim=(--limit "$limit")
echo "# qkit QAT benchmark, $(date -u +%Y-%m-%d), $(lscpu | sed -n 's/^Model name: *//p'), $threads threads, $epochs epochs"

qat_row() { # model backend algo wbits abits
  local out
  out=$($Q qat --model models/$1.onnx --backend $2 --algo $3 --wbits $4 --abits $5 --epochs $epochs \
        --threads $threads --json "${lim[@]}" --out "$tmp/$1.$2.$3.onnx")
  local f p t s
  f=$(printf '%s' "$out" | jnum fp32_top1); p=$(printf '%s' "$out" | jnum ptq_top1); t=$(printf '%s' "$out" | jnum top1)
  s=$(printf '%s' "$out" | jnum seconds)
  echo "| $1 | $2 | $3 | W$4A$5 | $(pct $f) | $(pct $p) | $(pct $t) | $(awk -v a=$t -v b=$f 'BEGIN{printf "%+.2f", 100*(a-b)}') | ${s%.*} |"
}

if [ -z "$only" ] || [ "$only" = w4a4 ]; then
  echo; echo "## Academic profile (first/last layer 8-bit): FP32, PTQ start, QAT top-1 %"
  echo; echo "| model | backend | algo | bits | FP32 | PTQ start | QAT | QAT - FP32 | seconds |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for m in $models; do
    for a in $algos; do qat_row $m academic $a 4 4; done
    [ "$m" = resnet8 ] && qat_row $m academic lsq 2 2
    if [ $torch_ok = 1 ]; then
      for wa in "4 4" $([ "$m" = resnet8 ] && echo "2_2"); do
        set -- ${wa/_/ }
        tl=(); [ "$limit" -gt 0 ] && tl=(--limit "$limit")
        t0=$(date +%s)
        out=$($PY bench/torch_peer.py qat --arch $m --onnx models/$m.onnx --wbits $1 --abits $2 --epochs $epochs \
              --threads $threads --channels-last "${tl[@]}" --json)
        f=$(printf '%s' "$out" | jnum fp32_top1); t=$(printf '%s' "$out" | jnum top1)
        echo "| $m | PyTorch FX QAT (all layers W$1A$2) | FakeQuantize | W$1A$2 | $(pct $f) | - | $(pct $t) |" \
             "$(awk -v a=$t -v b=$f 'BEGIN{printf "%+.2f", 100*(a-b)}') | $(( $(date +%s) - t0 )) |"
      done
    fi
  done
fi

if [ -z "$only" ] || [ "$only" = w8a8 ]; then
  echo; echo "## W8A8: QAT (lsq) vs PTQ of the same profile; hardware gap of the QAT model"
  echo; echo "| model | backend | PTQ | QAT | gap fake - real (points) |"
  echo "|---|---|---|---|---|"
  for m in $models; do
    for b in tensorrt fbgemm snpe; do
      out=$($Q qat --model models/$m.onnx --backend $b --algo lsq --epochs $epochs --threads $threads --json \
            "${lim[@]}" --out "$tmp/$m.$b.w8.onnx")
      p=$(printf '%s' "$out" | jnum ptq_top1); t=$(printf '%s' "$out" | jnum top1)
      g=$($Q eval --model "$tmp/$m.$b.w8.onnx" --compare --threads $threads --json "${lim[@]}" | jnum gap)
      echo "| $m | $b | $(pct $p) | $(pct $t) | $(awk -v g=$g 'BEGIN{printf "%.2f", 100*g}') |"
    done
  done
fi

if [ -z "$only" ] || [ "$only" = speed ]; then
  echo; echo "## Training throughput, float vs QAT (academic W4A4 lsq, batch 128)"
  echo; echo '```'
  build/bench/bench_qat $(for m in $models; do printf -- '--model models/%s.onnx ' $m; done) --threads $threads
  echo '```'
  if [ $torch_ok = 1 ]; then
    echo; echo "PyTorch FX QAT training throughput, same batch and threads (W4A4, 30 steps after the first epoch's start):"
    echo; echo "| model | layout | PyTorch QAT img/s |"; echo "|---|---|---|"
    for m in $models; do
      for cl in "" --channels-last; do
        out=$($PY bench/torch_peer.py qat --arch $m --onnx models/$m.onnx --epochs 1 --steps 30 --limit 1000 \
              --threads $threads $cl --json)
        echo "| $m | ${cl:-NCHW} | $(printf '%s' "$out" | jnum images_per_s | awk '{printf "%.0f", $1}') |"
      done
    done
  fi
fi
