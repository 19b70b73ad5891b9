#!/usr/bin/env bash
# End to end on an image folder: Fashion-MNIST written as 3-channel 32x32 PNGs
# (tools/fashion_to_png.py), a torchvision ResNet-18 adapted to 32x32 / 10 classes
# (3x3 stride-1 stem; its max-pool kept, POOL=0 drops it: 4x the compute) trained
# on it with PyTorch in channels_last (a peer, not a qkit
# dependency), exported to ONNX (dynamic batch), then for tensorrt, fbgemm and snpe:
#   qkit ptq --data FOLDER/test --calib-data FOLDER/train   (W8A8 vs FP32)
#   qkit eval --compare                                     (hardware gap)
#   ONNX Runtime on the QDQ file vs qkit's fake-quant predictions (tools/ort_run.js;
#   skipped when onnxruntime-node is not installed: `npm ci`)
#
#   bench/bench_resnet18_folder.sh                 full data, 3 epochs (~25 min on 2 cores)
#   NTRAIN=3000 NTEST=500 EPOCHS=1 bench/bench_resnet18_folder.sh     a short run
# Needs python3-torch, python3-torchvision, python3-pil, python3-numpy, python3-onnx.
set -euo pipefail
NTRAIN=${NTRAIN:-0} NTEST=${NTEST:-0} EPOCHS=${EPOCHS:-3} POOL=${POOL:-1} CALIB=${CALIB:-512}
THREADS=${THREADS:-$(nproc)}
PY=/usr/bin/python3
D=${WORK:-$(mktemp -d /tmp/qkit_r18.XXXXXX)}
make -s build/qkit
echo "date: $(date -u)  CPU: $(lscpu | sed -n 's/^Model name: *//p')  threads $THREADS  work dir $D"
[ -d "$D/fm/test" ] || $PY tools/fashion_to_png.py "$D/fm" --train "$NTRAIN" --test "$NTEST"
if [ ! -f "$D/r18.onnx" ]; then
$PY - "$D" "$EPOCHS" "$THREADS" "$POOL" <<'PYEOF'
import sys, time, torch, torchvision, torchvision.transforms as T
d, epochs, threads, pool = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.manual_seed(0); torch.set_num_threads(threads)
norm = T.Normalize([0.286] * 3, [0.353] * 3)
tr = torchvision.datasets.ImageFolder(d + "/fm/train", T.Compose([T.RandomHorizontalFlip(), T.ToTensor(), norm]))
te = torchvision.datasets.ImageFolder(d + "/fm/test", T.Compose([T.ToTensor(), norm]))
L = torch.utils.data.DataLoader(tr, batch_size=128, shuffle=True, num_workers=0)
m = torchvision.models.resnet18(num_classes=10)
m.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
if not pool:
    m.maxpool = torch.nn.Identity()
cl = torch.channels_last
m = m.to(memory_format=cl)
opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.05, total_steps=epochs * len(L))
for e in range(epochs):
    m.train(); t0 = time.time()
    for x, y in L:
        opt.zero_grad(); loss = torch.nn.functional.cross_entropy(m(x.contiguous(memory_format=cl)), y); loss.backward(); opt.step(); sched.step()
    print("epoch %d: loss %.4f (%.0f s)" % (e + 1, loss.item(), time.time() - t0), flush=True)
m.eval(); m = m.to(memory_format=torch.contiguous_format); c = n = 0
with torch.no_grad():
    for x, y in torch.utils.data.DataLoader(te, batch_size=256):
        c += (m(x).argmax(1) == y).sum().item(); n += len(y)
print("torch fp32 top-1 %.2f%% on %d test images" % (100.0 * c / n, n))
torch.onnx.export(m, torch.zeros(1, 3, 32, 32), d + "/r18.onnx", input_names=["input"], output_names=["logits"],
                  dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, opset_version=13)
# the normalized test set as one TensorProto, for ONNX Runtime
import onnx.numpy_helper as nh
X = torch.stack([te[i][0] for i in range(len(te))]).numpy()
open(d + "/test_x.pb", "wb").write(nh.from_array(X, "input").SerializeToString())
PYEOF
fi
M="--mean 0.286,0.286,0.286 --std 0.353,0.353,0.353"
for B in tensorrt fbgemm snpe; do
  build/qkit ptq --model "$D/r18.onnx" --backend $B --data "$D/fm/test" --calib-data "$D/fm/train" --calib $CALIB \
    $M --threads $THREADS --out "$D/r18_$B.onnx" --json | tee "$D/ptq_$B.json"
  build/qkit eval --model "$D/r18_$B.onnx" --data "$D/fm/test" --compare --json --threads $THREADS \
    | $PY -c 'import json,sys; r=json.load(sys.stdin); print("  %s: fake %.4f real %.4f gap %+.2f points" % (sys.argv[1], r["fake_top1"], r["real_top1"], 100*r["gap"]))' $B
  if [ -d node_modules/onnxruntime-node ]; then
    build/qkit eval --model "$D/r18_$B.onnx" --data "$D/fm/test" --preds "$D/qk_$B.txt" --threads $THREADS >/dev/null
    rm -rf "$D/ort_$B"; node tools/ort_run.js "$D/r18_$B.onnx" "$D/test_x.pb" --out "$D/ort_$B" --threads $THREADS >/dev/null
    $PY - "$D/ort_$B/output_0.pb" "$D/qk_$B.txt" $B "$D/fm/test" <<'PYEOF'
import os, sys, numpy as np, onnx, onnx.numpy_helper as nh
t = onnx.TensorProto(); t.ParseFromString(open(sys.argv[1], "rb").read())
o = nh.to_array(t).argmax(1); q = np.loadtxt(sys.argv[2], dtype=int)
root = sys.argv[4]  # labels in ImageFolder order: sorted classes, sorted files
y = np.concatenate([np.full(len(os.listdir(os.path.join(root, c))), i) for i, c in enumerate(sorted(os.listdir(root)))])
print("  %s: ONNX Runtime on the QDQ file top-1 %.2f%%, qkit fake quant %.2f%%; predictions agree on %.2f%% of %d images"
      % (sys.argv[3], 100.0 * (o == y).mean(), 100.0 * (q == y).mean(), 100.0 * (o == q).mean(), len(q)))
PYEOF
  fi
done
