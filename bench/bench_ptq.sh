#!/usr/bin/env bash
# PTQ benchmark (not a test): prints Markdown tables of
#   1. W8A8 PTQ with every 8-bit backend profile on each model (FP32 vs fake-quant top-1, 10k images);
#   2. the W4A4 ablation of ACIQ (Banner et al., NeurIPS 2019): naive per-channel min-max; + ACIQ clipping;
#      + bit allocation for activations; + for weights; + bias correction (academic profile);
#   3. ONNX Runtime agreement on the QDQ files of the 8-bit profiles (when node + onnxruntime-node
#      are installed: `npm ci`) and onnx.checker (when python3-onnx is installed);
#   4. the time of the whole `qkit ptq` of resnet8 (512 images, KL observer, bias correction)
#      beside PyTorch FX PTQ with HistogramObserver (bench/torch_peer.py ptq) when python3-torch is there.
#   5. (--only recon) W4A4 and W2A4 with reconstruction (--recon adaround / brecq / qdrop, --cle) beside nearest
#      rounding, and accuracy against --recon-iters (RITERS, default "0 250 1000 2000"; 256 images).
# usage: bash bench/bench_ptq.sh [--models "lenet resnet8 mobilenetv2s"] [--only matrix|ablation|ort|speed|recon]
#        [--threads N] [--limit N]
set -euo pipefail
cd "$(dirname "$0")/.."
Q=${QKIT:-build/qkit}
models="lenet resnet8 mobilenetv2s"; only=""; threads=2; limit=0
while [ $# -gt 0 ]; do
  case "$1" in
    --models) models=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --limit) limit=$2; shift 2 ;;
    *) echo "bench_ptq: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$Q" ] || make -j2 >/dev/null
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
jnum() { sed -E "s/.*\"$1\": ?([-0-9.e+]+).*/\1/"; }
lim=(); [ "$limit" -gt 0 ] && lim=(--limit "$limit")
echo "# qkit PTQ benchmark, $(date -u +%Y-%m-%d), $(lscpu | sed -n 's/^Model name: *//p'), $threads threads"

if [ -z "$only" ] || [ "$only" = matrix ]; then
  echo; echo "## W8A8, every 8-bit profile (top-1 %, FP32 -> fake quant, default observers, 512 calibration images)"
  echo; printf '| backend |'; for m in $models; do printf ' %s |' "$m"; done; echo
  printf '|---|'; for m in $models; do printf -- '---|'; done; echo
  for b in tensorrt fbgemm snpe tvm acl openvino tengine onnx-qlinear vitis nnie academic ppl-w8a16; do
    printf '| %s |' "$b"
    for m in $models; do
      out=$($Q ptq --model models/$m.onnx --backend $b --threads $threads --json "${lim[@]}" --out "$tmp/$m.$b.onnx" 2>/dev/null) ||
        out=$($Q ptq --model models/$m.onnx --backend $b --threads $threads --json "${lim[@]}")
      f=$(printf '%s' "$out" | jnum fp32_top1); t=$(printf '%s' "$out" | jnum top1)
      awk -v f="$f" -v t="$t" 'BEGIN { printf " %.2f -> %.2f (%+.2f) |", 100*f, 100*t, 100*(t-f) }'
    done; echo
  done
fi

if [ "$only" = recon ]; then
  echo; echo "## Reconstruction, academic profile (first/last layer 8-bit), ACIQ-Laplace activations, 256 calibration images (top-1 %; wall / CPU seconds of the ptq run)"
  echo; echo "| model | width | method | FP32 | top-1 | delta | ptq s | recon s |"; echo "|---|---|---|---|---|---|---|---|"
  for m in $models; do
    for w in "4 4" "2 4"; do
      set -- $w
      [ "$1" = 2 ] && [ "$m" != resnet8 ] && continue
      for meth in "" "--recon adaround" "--recon brecq" "--recon qdrop" "--cle --recon adaround"; do
        out=$($Q ptq --model models/$m.onnx --backend academic --wbits $1 --abits $2 --observer aciq-laplace --calib 256 \
              $meth --threads $threads --json "${lim[@]}")
        printf '%s' "$out" | awk -v m="$m" -v w="W$1A$2" -v meth="${meth:-nearest}" '{
          match($0, /"fp32_top1": [0-9.]+/); f = substr($0, RSTART + 13, RLENGTH - 13)
          match($0, /"top1": [0-9.]+/); t = substr($0, RSTART + 8, RLENGTH - 8)
          match($0, /"ptq_seconds": [0-9.]+/); s = substr($0, RSTART + 15, RLENGTH - 15)
          r = "-"; if (match($0, /"recon_seconds": [0-9.]+/)) r = sprintf("%.1f", substr($0, RSTART + 17, RLENGTH - 17))
          printf "| %s | %s | %s | %.2f | %.2f | %+.2f | %.1f | %s |\n", m, w, meth, 100*f, 100*t, 100*(t-f), s, r }'
      done
    done
  done
  for rm in adaround brecq; do
  echo; echo "### accuracy against --recon-iters (resnet8, W4A4 $rm)"; echo; echo "| iters | top-1 | recon s |"; echo "|---|---|---|"
  for it in ${RITERS:-0 100 250 500 1000}; do
    meth="--recon $rm --recon-iters $it"; [ "$it" = 0 ] && meth=""
    out=$($Q ptq --model models/resnet8.onnx --backend academic --wbits 4 --abits 4 --observer aciq-laplace --calib 256 \
          $meth --threads $threads --json --no-fp32 "${lim[@]}")
    printf '%s' "$out" | awk -v it="$it" '{ match($0, /"top1": [0-9.]+/); t = substr($0, RSTART + 8, RLENGTH - 8)
      r = "-"; if (match($0, /"recon_seconds": [0-9.]+/)) r = sprintf("%.1f", substr($0, RSTART + 17, RLENGTH - 17))
      printf "| %s | %.2f | %s |\n", it, 100*t, r }'
  done
  done
  exit 0
fi

if [ -z "$only" ] || [ "$only" = ablation ]; then
  echo; echo "## W4A4 ablation (academic profile: first/last layer 8-bit, per-channel weights; top-1 %)"
  echo; echo "| model | FP32 | naive min-max | + ACIQ | + bit alloc A | + bit alloc W | + bias correction | recovered |"
  echo "|---|---|---|---|---|---|---|---|"
  for m in $models; do
    row=(); fp=""
    for args in "" "--observer aciq-laplace" "--observer aciq-laplace --bit-alloc a" \
                "--observer aciq-laplace --bit-alloc wa" "--observer aciq-laplace --bit-alloc wa --bias-correct"; do
      out=$($Q ptq --model models/$m.onnx --backend academic --wbits 4 --abits 4 $args --threads $threads --json "${lim[@]}")
      fp=$(printf '%s' "$out" | jnum fp32_top1); row+=("$(printf '%s' "$out" | jnum top1)")
    done
    awk -v m="$m" -v f="$fp" -v a="${row[0]}" -v b="${row[1]}" -v c="${row[2]}" -v d="${row[3]}" -v e="${row[4]}" \
      'BEGIN { printf "| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.0f%% of the gap |\n", m, 100*f, 100*a, 100*b, 100*c, 100*d, 100*e, ((f - a) > 0 ? 100*(e - a)/(f - a) : 0) }'
  done
fi

if [ -z "$only" ] || [ "$only" = ort ]; then
  echo; echo "## QDQ files: onnx.checker and ONNX Runtime vs qkit eval (10k images)"
  if ! node -e "require('onnxruntime-node')" 2>/dev/null; then
    echo; echo "(skipped: onnxruntime-node is not installed; run npm ci)"
  else
    echo "ORT runs each file twice: as written (graph optimizations disabled: the QDQ operators in float, the"
    echo "semantics qkit eval gives the file) and with its default optimizations, which fuse DequantizeLinear ->"
    echo "Conv -> QuantizeLinear groups into its own integer kernels (so that column also holds ORT's hardware gap)."
    echo; echo "| model | backend | onnx.checker | qkit top-1 | ORT top-1 (as written / fused) | same prediction (as written / fused) |"
    echo "|---|---|---|---|---|---|"
    for m in $models; do for b in tensorrt fbgemm snpe tvm acl openvino tengine onnx-qlinear vitis academic; do
      f="$tmp/$m.$b.onnx"
      [ -f "$f" ] || $Q ptq --model models/$m.onnx --backend $b --threads $threads --no-fp32 --limit 1 --out "$f" >/dev/null
      chk="n/a"
      if /usr/bin/python3 -c "import onnx" 2>/dev/null; then
        chk=$(/usr/bin/python3 -c "import onnx,sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True); print('pass')" "$f" 2>&1 | tail -n1)
      fi
      q=$($Q eval --model "$f" --threads $threads --preds "$tmp/q.txt" --json | jnum top1)
      o1=$(node tools/ort_eval.js "$f" --opt disabled --preds "$tmp/o1.txt" --threads $threads | jnum top1)
      o2=$(node tools/ort_eval.js "$f" --preds "$tmp/o2.txt" --threads $threads | jnum top1)
      s1=$(paste -d' ' "$tmp/q.txt" "$tmp/o1.txt" | awk '$1 == $2 { s++ } END { printf "%.2f%%", 100 * s / NR }')
      s2=$(paste -d' ' "$tmp/q.txt" "$tmp/o2.txt" | awk '$1 == $2 { s++ } END { printf "%.2f%%", 100 * s / NR }')
      awk -v m="$m" -v b="$b" -v c="$chk" -v q="$q" -v o1="$o1" -v o2="$o2" -v s1="$s1" -v s2="$s2" \
        'BEGIN { printf "| %s | %s | %s | %.2f | %.2f / %.2f | %s / %s |\n", m, b, c, 100*q, 100*o1, 100*o2, s1, s2 }'
    done; done
  fi
fi

if [ -z "$only" ] || [ "$only" = speed ]; then
  echo; echo "## Whole PTQ time, resnet8, 512 calibration images, $threads threads"
  echo; echo "| tool | setting | seconds (median of 3) | top-1 % |"; echo "|---|---|---|---|"
  secs=(); top=""
  for r in 1 2 3; do
    out=$($Q ptq --model models/resnet8.onnx --backend tensorrt --observer kl --bias-correct --calib 512 --threads $threads --no-fp32 --json --out "$tmp/r8.onnx")
    secs+=("$(printf '%s' "$out" | jnum ptq_seconds)"); top=$(printf '%s' "$out" | jnum top1)
  done
  med=$(printf '%s\n' "${secs[@]}" | sort -g | sed -n 2p)
  awk -v s="$med" -v t="$top" 'BEGIN { printf "| qkit ptq | tensorrt, KL observer, bias correction (prepare + calibrate + write) | %.3f | %.2f |\n", s, 100*t }'
  if /usr/bin/python3 -c "import torch" 2>/dev/null; then
    for cb in 128 64; do
      pt=$(/usr/bin/python3 bench/torch_peer.py ptq --arch resnet8 --onnx models/resnet8.onnx --calib 512 --calib-batch $cb --repeat 3 --threads $threads --json 2>/dev/null || true)
      [ -n "$pt" ] || break
      ps=$(printf "%s" "$pt" | jnum ptq_s); pt1=$(printf "%s" "$pt" | jnum quant_top1)
      awk -v s="$ps" -v t="$pt1" -v q="$med" -v cb="$cb" 'BEGIN { printf "| PyTorch FX | HistogramObserver, per-channel weights, calibration batch %d (prepare_fx + calibrate + convert_fx, fastest of 3) | %.3f | %.2f (qkit %.1fx faster) |\n", cb, s, 100*t, s/q }'
    done
    if [ -n "$pt" ]; then
      echo; echo "qkit calibrates in batches of 128."
    else
      echo; echo "(PyTorch peer failed or is unavailable: bench/torch_peer.py ptq)"
    fi
  fi
fi
