#!/usr/bin/env bash
# Image decoding + preprocessing, qkit vs torchvision's PIL pipeline, side by side:
# JPEG (500x375, quality 90) -> Resize(256) -> CenterCrop(224) -> float NCHW normalized
# with the ImageNet mean/std, at 1 and 2 threads (PIL: a thread pool of that size, as a
# DataLoader's workers would be). Also checks that qkit's uint8 pixels equal PIL's.
#   bench/bench_decode.sh [N_IMAGES]      (needs python3-pil, python3-numpy, python3-torchvision)
set -euo pipefail
N=${1:-200}
PY=/usr/bin/python3
make -s build/bench/bench_decode
D=$(mktemp -d /tmp/qkit_decode.XXXXXX)
trap 'rm -rf "$D"' EXIT
mkdir -p "$D/jpg"
$PY - "$D/jpg" "$N" <<'PYEOF'
import sys, numpy as np
from PIL import Image
out, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
yy, xx = np.mgrid[0:375, 0:500]
for i in range(n):
    a = np.stack([(xx * (1 + i % 3) + yy) % 256, (yy * 2 + i * 7) % 256, (xx + yy * (i % 5)) % 256], 2)
    a = (a * 0.7 + rng.integers(0, 77, a.shape)).astype(np.uint8)
    Image.fromarray(a, "RGB").save("%s/%04d.jpg" % (out, i), quality=90)
PYEOF
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $N JPEGs 500x375"
for T in 1 2; do
  build/bench/bench_decode "$D/jpg" $T 3 "$D/qkit_$T.npy"
  $PY - "$D/jpg" $T "$D/qkit_$T.npy" <<'PYEOF'
import sys, os, time, glob
import numpy as np
from concurrent.futures import ThreadPoolExecutor
from PIL import Image
import torch, torchvision.transforms as T
torch.set_num_threads(1)
d, threads, qk = sys.argv[1], int(sys.argv[2]), sys.argv[3]
files = sorted(glob.glob(d + "/*.jpg"))
tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
pix = T.Compose([T.Resize(256), T.CenterCrop(224)])
def one(p):
    with Image.open(p) as im:
        return tf(im.convert("RGB"))
best = 1e30
for r in range(3):
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as ex:
        xs = list(ex.map(one, files))
    torch.stack(xs)
    best = min(best, time.perf_counter() - t0)
print("PIL/torchvision: %d images, %d threads: %.1f images/s (%.3f s)" % (len(files), threads, len(files) / best, best))
q = np.load(qk)
ref = np.stack([np.asarray(pix(Image.open(p).convert("RGB"))).transpose(2, 0, 1) for p in files])
diff = np.abs(q.astype(int) - ref.astype(int))
print("pixels qkit vs PIL: max |diff| %d, %.4f%% differ" % (diff.max(), 100.0 * (diff > 0).mean()))
PYEOF
done
