#!/usr/bin/env bash
# Decoding overlapped with compute: wall time of `qkit eval --model M --data FOLDER` with the
# folder's images decoded in the background while the evaluation runs (the default) against
# QKIT_DECODE=eager (every image decoded before the evaluation starts), on a folder of JPEGs.
# Median of ROUNDS rounds (the two modes alternate), peak RSS, the compute-only images/s and
# the top-1 of each (they must be equal); then the time to the first batch
# (build/bench/bench_overlap: the loader alone, same folder and options).
#   bench/bench_overlap.sh [N_IMAGES] [ROUNDS] [MODELS]
# Defaults: 2000 images, 5 rounds, "resnet8 mobilenetv2s" (models/M.onnx). Needs python3-numpy,
# python3-pil and dataset-fashion-mnist (tools/fashion_to_png.py writes the JPEGs).
set -euo pipefail
N=${1:-2000}
R=${2:-5}
MODELS=${3:-"resnet8 mobilenetv2s"}
PY=/usr/bin/python3
make -s build/qkit build/bench/bench_overlap
D=$(mktemp -d /tmp/qkit_overlap.XXXXXX)
trap 'rm -rf "$D"' EXIT
$PY tools/fashion_to_png.py "$D" --train 1 --test "$N" --jpeg 256 >/dev/null
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores;" \
     "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "data: $N Fashion-MNIST test images as 256x256 RGB JPEGs (quality 90), $(du -sh "$D/test" | cut -f1);" \
     "qkit eval --resize 28 --crop 28 (RGB -> gray, 256 -> 28), batch 256"
for T in 1 2; do
  for M in $MODELS; do
    $PY - "$D/test" "$T" "$R" "models/$M.onnx" <<'PYEOF'
import json, os, statistics, subprocess, sys, time
d, threads, rounds, model = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
runs = {"eager": [], "background": []}
for i in range(rounds):
    for mode in ("eager", "background") if i % 2 == 0 else ("background", "eager"):
        cmd = ["build/qkit", "eval", "--model", model, "--data", d, "--resize", "28", "--crop", "28",
               "--threads", threads, "--json"]
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=dict(os.environ, QKIT_DECODE=mode))
        out = p.stdout.read()
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        if status != 0:
            sys.exit("bench_overlap: %s failed (status %d)" % (" ".join(cmd), status))
        j = json.loads(out)
        runs[mode].append((wall, ru.ru_maxrss / 1024.0, j["images_per_s"], j["top1"]))
top1 = {m: {r[3] for r in v} for m, v in runs.items()}
same = len(top1["eager"] | top1["background"]) == 1
med = {m: [statistics.median(r[k] for r in v) for k in range(3)] for m, v in runs.items()}
e, b = med["eager"], med["background"]
print("%-12s %d thread%s: eager %.2f s, background %.2f s (%.2fx, %.2f s less); peak RSS %.0f / %.0f MB; "
      "compute %.0f / %.0f images/s; top-1 %s %s" % (
          os.path.basename(model)[:-5], int(threads), "" if threads == "1" else "s", e[0], b[0], e[0] / b[0],
          e[0] - b[0], e[1], b[1], e[2], b[2], "%.4f" % next(iter(top1["eager"])),
          "(identical)" if same else "DIFFERS: %s" % top1))
print("    walls eager %s, background %s" % (" ".join("%.2f" % r[0] for r in runs["eager"]),
                                              " ".join("%.2f" % r[0] for r in runs["background"])))
PYEOF
  done
  build/bench/bench_overlap "$D/test" "$T" 256 1 28 28 "$R"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
