#!/usr/bin/env bash
# torchvision image classifiers through qkit (not a test; needs python3-torch,
# python3-torchvision, python3-onnx as comparison peers, never a qkit
# dependency). bench/torchvision_models.py exports each model with
# torch.onnx.export defaults (random weights, eval mode, batch 1, small
# inputs) together with PyTorch's output; `qkit run` runs the export and the
# outputs are compared: rel err = max |qkit - torch| / max |torch| over the
# logits; pass when <= 1e-4.
# usage: bash bench/bench_torchvision.sh [models...]   (QKIT_TV_DIR keeps exports)
set -uo pipefail
cd "$(dirname "$0")/.."
Q=${QKIT:-build/qkit}
[ -x "$Q" ] || make -j2 >/dev/null
PY=/usr/bin/python3
dir=${QKIT_TV_DIR:-$(mktemp -d)}
[ -n "${QKIT_TV_DIR:-}" ] || trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir"
if [ -z "${QKIT_TV_SKIP_EXPORT:-}" ]; then
  $PY bench/torchvision_models.py "$dir" "$@" > "$dir/export.log" 2>"$dir/export.err"
fi
echo "| model | ops | qkit run (s) | max rel err | pass |"
echo "|---|---|---|---|---|"
models=${*:-$(cut -d' ' -f1 "$dir/export.log")}
for m in $models; do
  line=$(grep "^$m " "$dir/export.log" | head -1)
  ops=$(printf '%s' "$line" | cut -d' ' -f2-)
  if [ ! -f "$dir/$m/model.onnx" ]; then
    echo "| $m | - | - | - | export failed: ${ops#EXPORT-FAILED } |"; continue
  fi
  nops=$(printf '%s' "$ops" | tr ',' '\n' | grep -c .)
  t0=$(date +%s.%N)
  if ! err=$("$Q" run --model "$dir/$m/model.onnx" --input "$dir/$m/input_0.pb" --output "$dir/$m/qkit_0.pb" 2>&1 >/dev/null); then
    echo "| $m | $nops | - | - | FAIL: $(printf '%s' "$err" | tail -1 | cut -c1-160) |"; continue
  fi
  t1=$(date +%s.%N)
  rel=$($PY - "$dir/$m" <<'PYEOF'
import sys, numpy as np, onnx
from onnx import numpy_helper
d = sys.argv[1]
def load(p):
    t = onnx.TensorProto(); t.ParseFromString(open(p, "rb").read()); return numpy_helper.to_array(t)
a, b = load(d + "/qkit_0.pb").astype(np.float64), load(d + "/output_0.pb").astype(np.float64)
print("shape" if a.shape != b.shape else "%.3g" % (np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)))
PYEOF
)
  ok=$(awk -v r="$rel" 'BEGIN{print (r != "shape" && r + 0 <= 1e-4) ? "yes" : "NO"}')
  printf '| %s | %s | %.2f | %s | %s |\n' "$m" "$nops" "$(echo "$t1 - $t0" | bc)" "$rel" "$ok"
done
