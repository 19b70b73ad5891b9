#!/usr/bin/env bash
# PyTorch interop check (not a test; needs python3-torch + python3-onnx):
# each shipped model's weights are loaded into the PyTorch peer, evaluated by
# PyTorch, exported by torch.onnx.export (opset 13; BN kept, and BN folded),
# and the exported files evaluated by qkit. Prints top-1 and loss side by side.
# usage: bash bench/bench_torch_import.sh [models...]
set -euo pipefail
cd "$(dirname "$0")/.."
Q=${QKIT:-build/qkit}
[ -x "$Q" ] || make -j2 >/dev/null
models=${*:-lenet resnet8 mobilenetv2s}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
P=bench/torch_peer.py
jnum() { sed -E "s/.*\"$1\": ([-0-9.e+]+).*/\1/"; }
echo "| model | PyTorch top-1 / loss | qkit on torch export (BN kept) | qkit on torch export (BN folded) |"
echo "|---|---|---|---|"
for m in $models; do
  t=$(/usr/bin/python3 $P eval-torch --arch $m --onnx models/$m.onnx --json 2>/dev/null)
  /usr/bin/python3 $P export --arch $m --onnx models/$m.onnx --out "$tmp/$m.onnx" >/dev/null 2>&1
  /usr/bin/python3 $P export --arch $m --onnx models/$m.onnx --fold-bn --out "$tmp/${m}_f.onnx" >/dev/null 2>&1
  a=$($Q eval --model "$tmp/$m.onnx" --json); b=$($Q eval --model "$tmp/${m}_f.onnx" --json)
  printf '| %s | %.2f%% / %.4f | %.2f%% / %.4f | %.2f%% / %.4f |\n' "$m" \
    "$(awk -v v="$(printf '%s' "$t" | jnum test_acc)" 'BEGIN{print 100*v}')" "$(printf '%s' "$t" | jnum test_loss)" \
    "$(awk -v v="$(printf '%s' "$a" | jnum top1)" 'BEGIN{print 100*v}')" "$(printf '%s' "$a" | jnum loss)" \
    "$(awk -v v="$(printf '%s' "$b" | jnum top1)" 'BEGIN{print 100*v}')" "$(printf '%s' "$b" | jnum loss)"
done
