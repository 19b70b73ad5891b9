#!/usr/bin/env bash
# torchvision image classifiers through qkit (not a test; needs python3-torch,
# python3-torchvision, python3-onnx as comparison peers, never a qkit
# dependency). bench/torchvision_models.py exports each model with
# torch.onnx.export defaults (random weights, eval mode, batch 1, small
# inputs) together with PyTorch's output; `qkit run` runs the export and the
# outputs are compared: rel err = max |qkit - torch| / max |torch| over the
# logits; pass when <= 1e-4.
# Then (QKIT_TV_PTQ=1, the default; 0 skips it) each model that runs goes
# through `qkit ptq` for the tensorrt, fbgemm and onnx-qlinear profiles on 16
# random calibration images of its input size (a .npy, no labels):
# `--dry-run` (how many quantizers, which ops stay float), the QDQ file, the
# agreement of the fake-quant model with the float one (top-1, SQNR), and
# `qkit eval --real` (the integer engine against the QDQ model). Random
# weights make near-constant logits, so top-1 agreement is only indicative;
# SQNR is the figure to read.
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

[ "${QKIT_TV_PTQ:-1}" = 1 ] || exit 0
echo
echo "| model | backend | quantizers | ops reading no quantized input (dry run) | fake vs float top-1 / SQNR dB | real vs fake top-1 / SQNR dB | ptq s |"
echo "|---|---|---|---|---|---|---|"
for m in $models; do
  [ -f "$dir/$m/qkit_0.pb" ] || continue
  $PY - "$dir/$m" <<'PYEOF'
import sys, numpy as np, onnx
from onnx import numpy_helper
d = sys.argv[1]
t = onnx.TensorProto(); t.ParseFromString(open(d + "/input_0.pb", "rb").read())
x = numpy_helper.to_array(t)
rng = np.random.default_rng(0)
np.save(d + "/calib.npy", rng.standard_normal((16,) + x.shape[1:]).astype(np.float32))
PYEOF
  for B in tensorrt fbgemm onnx-qlinear; do
    # the .npy holds model-ready floats: no normalization (--mean 0 --std 1)
    N="--mean 0 --std 1"
    dry=$("$Q" ptq --model "$dir/$m/model.onnx" --backend $B --calib-data "$dir/$m/calib.npy" $N --dry-run 2>&1)
    nq=$(printf '%s\n' "$dry" | sed -n 's/^\([0-9]*\) quantizers.*/\1/p' | head -1)
    fl=$(printf '%s\n' "$dry" | sed -n 's/^\([0-9]*\) operators read no quantized input.*/\1/p' | head -1)
    t0=$(date +%s.%N)
    if ! js=$("$Q" ptq --model "$dir/$m/model.onnx" --backend $B --calib-data "$dir/$m/calib.npy" \
             --data "$dir/$m/calib.npy" $N --out "$dir/$m/q_$B.onnx" --json 2>"$dir/$m/ptq_$B.err"); then
      echo "| $m | $B | ${nq:-?} | - | FAIL: $(tail -1 "$dir/$m/ptq_$B.err" | cut -c1-120) | - | - |"; continue
    fi
    t1=$(date +%s.%N)
    rj=$("$Q" eval --model "$dir/$m/q_$B.onnx" --data "$dir/$m/calib.npy" $N --real --json 2>"$dir/$m/real_$B.err") \
      || rj='{"top1_agree": -1, "sqnr_db": -1, "error": 1}'
    $PY - "$m" "$B" "${nq:-?}" "${fl:-0}" "$js" "$rj" "$(echo "$t1 - $t0" | bc)" "$dir/$m/real_$B.err" <<'PYEOF'
import sys, json
m, b, nq, fl, js, rj, sec, err = sys.argv[1:9]
a, r = json.loads(js), json.loads(rj)
f = lambda v: "inf" if v is None else "%.1f" % v
real = "FAIL: " + open(err).read().strip().splitlines()[-1][:100] if r.get("error") else \
       "%.2f / %s" % (r["top1_agree"], f(r["sqnr_db"]))
print("| %s | %s | %s | %s | %.2f / %s | %s | %.1f |" % (m, b, nq, fl, a["top1_agree"], f(a["sqnr_db"]), real, float(sec)))
PYEOF
  done
done
