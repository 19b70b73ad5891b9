#!/usr/bin/python3
"""PyTorch comparison peer for qkit (benchmarks and test fixtures only).

qkit never depends on PyTorch. This script defines the three reference
architectures of docs/ARCHITECTURE.md exactly as qkit's model zoo does, trains them with
the shared recipe, measures training throughput, and exports ONNX files that
`qkit` imports. Run it with /usr/bin/python3 (Debian's python3-torch 1.13,
python3-onnx 1.12; torchvision is not needed).

Subcommands
  train       --arch A [--epochs 8] [--threads 2] [--steps N] [--seed S]
              [--channels-last] [--out model.onnx] [--save model.pt] [--json]
  bench-train --arch A [--threads 2] [--steps 50] [--warmup 5] [--repeat R]
              [--channels-last] [--json]
  eval-torch  --arch A --weights model.pt [--threads 2] [--json]
  export      --arch A [--weights model.pt] --out model.onnx [--fold-bn]
  ptq         --arch A (--weights model.pt | --onnx model.onnx) [--calib 512]
              [--calib-batch 64] [--threads 2] [--engine auto] [--repeat R] [--json]
  qat         --arch A --onnx model.onnx [--wbits 4 --abits 4] [--epochs 4] [--steps N]
              [--lr 0.003] [--threads 2] [--channels-last] [--limit N] [--json]
              PyTorch FX QAT (prepare_qat_fx, FakeQuantize with its default
              moving-average min-max observers at the given widths, first and
              last layer too), the float recipe's SGD at --lr with a cosine
              schedule; fake-quant test top-1 and training images/s
  bench-int8  --arch A [--onnx model.onnx] [--threads 2] [--batch 256] [--repeat 3]
              [--seconds 0.3] [--engine auto] [--json]
  bench-infer --arch A [--onnx model.onnx] [--threads 2] [--batch 256] [--repeat 3]
              [--seconds 0.3] [--json]
  ops         print the ONNX op_type set torch.onnx.export emits per arch
  summary     print module layout and parameter counts

Module layout (PyTorch state_dict names = ONNX initializer names; every conv
is bias=False and followed by BatchNorm2d(eps=1e-5, momentum=0.1); all convs
3x3 use padding 1, 1x1 use padding 0; NCHW input [N,1,28,28] named "input",
output [N,10] named "logits"):

lenet (421,738 trainable parameters; + 192 BN running-stat values)
  conv1  Conv 1->32 3x3 s1 p1       bn1 BN(32)   relu   maxpool 2x2 s2
  conv2  Conv 32->64 3x3 s1 p1      bn2 BN(64)   relu   maxpool 2x2 s2
  flatten (64*7*7 = 3136)
  fc1    Linear 3136->128 (bias)    relu
  fc2    Linear 128->10 (bias)

resnet8 (77,754 trainable parameters; + 672 BN running-stat values)
  conv1  Conv 1->16 3x3 s1          bn1 BN(16)   relu
  layer1.0  BasicBlock 16->16 s1: conv1 3x3 s1, bn1, relu, conv2 3x3 s1, bn2,
            + identity, relu
  layer2.0  BasicBlock 16->32 s2: conv1 3x3 s2, bn1, relu, conv2 3x3 s1, bn2,
            + shortcut_conv 1x1 s2 -> shortcut_bn, relu
  layer3.0  BasicBlock 32->64 s2: same as layer2.0
  global average pool (AdaptiveAvgPool2d(1)) + flatten -> 64
  fc     Linear 64->10 (bias)
  Spatial sizes: 28 -> 28 -> 14 -> 7.

mobilenetv2s (50,410 trainable parameters; + 2,752 BN running-stat values)
  conv1  Conv 1->16 3x3 s1          bn1 BN(16)   relu6
  blocks.i  InvertedResidual(in, out, stride s, expansion t), hidden = in*t:
     expand_conv 1x1 in->hidden, expand_bn, relu6      (only when t != 1)
     dw_conv 3x3 stride s groups=hidden, dw_bn, relu6
     project_conv 1x1 hidden->out, project_bn          (linear, no activation)
     + input when s == 1 and in == out
     i  t  in -> out  s  hidden  residual
     0  1  16 -> 16   1  16      yes
     1  4  16 -> 24   2  64      no
     2  4  24 -> 24   1  96      yes
     3  4  24 -> 32   2  96      no
     4  4  32 -> 32   1  128     yes
     5  4  32 -> 64   1  128     no
  conv2  Conv 64->128 1x1           bn2 BN(128)  relu6
  global average pool + flatten -> 128
  fc     Linear 128->10 (bias)
  Spatial sizes: 28 -> 28 -> 14 -> 7.

Training recipe (docs/ARCHITECTURE.md): SGD momentum 0.9 nesterov, lr 0.05, cosine to 0
stepped per iteration over epochs * steps_per_epoch (CosineAnnealingLR with
T_max = total steps), weight decay 5e-4 on conv/linear weights only (not BN,
not biases), batch 128 (shuffled each epoch; last partial batch kept:
469 steps per epoch), augmentation = random horizontal flip (p 0.5) then
random crop 28 with zero padding 2 (pad value 0 in [0,1] pixel space, as
torchvision's RandomCrop before Normalize), then normalize with mean 0.2860,
std 0.3530. Throughput counts only forward + backward + optimizer step.
--channels-last runs the model in torch.channels_last memory format (NHWC;
PyTorch's oneDNN convolutions are much faster that way on CPU, depthwise
ones most of all); the default is PyTorch's default NCHW layout.

PTQ peer (ptq): PyTorch FX graph-mode post-training quantization,
torch.ao.quantization.quantize_fx prepare_fx -> calibration forwards ->
convert_fx, with QConfig(activation = HistogramObserver (reduce_range as the
engine's default qconfig), weight = PerChannelMinMaxObserver qint8
per_channel_symmetric), i.e. get_default_qconfig(engine). prepare_fx fuses
Conv+BN(+ReLU) itself. Calibration uses the first --calib images of the
Fashion-MNIST train set (normalized, no augmentation) in batches of
--calib-batch; the timed span is prepare + calibrate + convert (the fastest
of --repeat runs, each from a fresh float model). --engine auto takes the
first of fbgemm, x86, onednn, qnnpack that this torch build supports
(Debian's torch 1.13 ships onednn and qnnpack only; onednn is the x86
int8 backend there). Reported: seconds, the float and the quantized model's
top-1 on the 10k test images. Weights: a state dict (train --save) or a
qkit/torch ONNX model whose initializer names are the state_dict names
(qkit train's output, or export without --fold-bn).

ONNX export: opset 13, dynamic batch axis "batch" on "input" and "logits",
model in eval mode exported with TrainingMode.PRESERVE so BatchNormalization
nodes and the state_dict names are kept (torch's default eval export folds BN
into the convs and renames the weights; --fold-bn gives that form).
"""
import argparse
import gzip
import json
import math
import os
import platform
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DATA_DIR = os.environ.get("QKIT_FASHION_MNIST", "/usr/share/datasets/fashion-mnist")
MEAN, STD = 0.2860, 0.3530
ARCHS = ("lenet", "resnet8", "mobilenetv2s")


# ---------------------------------------------------------------- models

def bn(c):
    return nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1, 1, bias=False)
        self.bn1 = bn(32)
        self.conv2 = nn.Conv2d(32, 64, 3, 1, 1, bias=False)
        self.bn2 = bn(64)
        self.fc1 = nn.Linear(3136, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2, 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2, 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        return self.fc2(x)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = bn(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = bn(cout)
        self.has_shortcut = stride != 1 or cin != cout
        if self.has_shortcut:
            self.shortcut_conv = nn.Conv2d(cin, cout, 1, stride, 0, bias=False)
            self.shortcut_bn = bn(cout)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        s = self.shortcut_bn(self.shortcut_conv(x)) if self.has_shortcut else x
        return F.relu(y + s)


class ResNet8(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, 1, 1, bias=False)
        self.bn1 = bn(16)
        self.layer1 = nn.Sequential(BasicBlock(16, 16, 1))
        self.layer2 = nn.Sequential(BasicBlock(16, 32, 2))
        self.layer3 = nn.Sequential(BasicBlock(32, 64, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(self.pool(x), 1)
        return self.fc(x)


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, t):
        super().__init__()
        hidden = cin * t
        self.expand = t != 1
        if self.expand:
            self.expand_conv = nn.Conv2d(cin, hidden, 1, 1, 0, bias=False)
            self.expand_bn = bn(hidden)
        self.dw_conv = nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False)
        self.dw_bn = bn(hidden)
        self.project_conv = nn.Conv2d(hidden, cout, 1, 1, 0, bias=False)
        self.project_bn = bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = F.relu6(self.expand_bn(self.expand_conv(x))) if self.expand else x
        y = F.relu6(self.dw_bn(self.dw_conv(y)))
        y = self.project_bn(self.project_conv(y))
        return x + y if self.residual else y


MBV2S_CFG = [(1, 16, 1), (4, 24, 2), (4, 24, 1), (4, 32, 2), (4, 32, 1), (4, 64, 1)]


class MobileNetV2S(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, 1, 1, bias=False)
        self.bn1 = bn(16)
        blocks, cin = [], 16
        for t, c, s in MBV2S_CFG:
            blocks.append(InvertedResidual(cin, c, s, t))
            cin = c
        self.blocks = nn.Sequential(*blocks)
        self.conv2 = nn.Conv2d(64, 128, 1, 1, 0, bias=False)
        self.bn2 = bn(128)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu6(self.bn1(self.conv1(x)))
        x = self.blocks(x)
        x = F.relu6(self.bn2(self.conv2(x)))
        x = torch.flatten(self.pool(x), 1)
        return self.fc(x)


def make_model(arch):
    if arch == "lenet":
        return LeNet()
    if arch == "resnet8":
        return ResNet8()
    if arch == "mobilenetv2s":
        return MobileNetV2S()
    raise SystemExit(f"unknown arch '{arch}' (expected one of {', '.join(ARCHS)})")


def param_counts(model):
    trainable = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked"))
    return trainable, buffers


# ---------------------------------------------------------------- data

def read_idx(path):
    """IDX file (optionally gzip) -> numpy array (big-endian header)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise SystemExit(f"{path}: not an unsigned-byte IDX file")
    nd = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(nd)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * nd)
    if data.size != int(np.prod(dims)):
        raise SystemExit(f"{path}: {data.size} bytes for dims {dims}")
    return data.reshape(dims)


def load_split(split):
    pre = "train" if split == "train" else "t10k"
    x = read_idx(os.path.join(DATA_DIR, f"{pre}-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(DATA_DIR, f"{pre}-labels-idx1-ubyte.gz"))
    x = torch.from_numpy(x.astype(np.float32) / 255.0).unsqueeze(1)  # [N,1,28,28] in [0,1]
    y = torch.from_numpy(y.astype(np.int64))
    return x, y


def normalize(x):
    return (x - MEAN) / STD


def augment(x, gen):
    """Random horizontal flip (p 0.5) then random crop 28 with zero padding 2,
    per image, on a [B,1,28,28] batch in [0,1] pixel space."""
    b, _, h, w = x.shape
    flip = torch.rand(b, generator=gen) < 0.5
    x = torch.where(flip.view(b, 1, 1, 1), x.flip(3), x)
    p = 2
    xp = F.pad(x, (p, p, p, p))  # zeros
    oy = torch.randint(0, 2 * p + 1, (b,), generator=gen)
    ox = torch.randint(0, 2 * p + 1, (b,), generator=gen)
    rows = (oy.view(b, 1) + torch.arange(h).view(1, h))  # [b,h]
    cols = (ox.view(b, 1) + torch.arange(w).view(1, w))  # [b,w]
    bi = torch.arange(b).view(b, 1, 1)
    out = xp[:, 0][bi, rows.view(b, h, 1), cols.view(b, 1, w)]
    return out.unsqueeze(1).contiguous()


# ---------------------------------------------------------------- training

def make_optimizer(model, lr=0.05, wd=5e-4):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        # conv / linear weights decay; BN weight/bias and linear biases do not
        (decay if p.ndim > 1 else no_decay).append(p)
    return torch.optim.SGD([{"params": decay, "weight_decay": wd},
                            {"params": no_decay, "weight_decay": 0.0}],
                           lr=lr, momentum=0.9, nesterov=True)


def evaluate(model, x, y, batch=1000):
    model.eval()
    correct, loss = 0, 0.0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            out = model(normalize(x[i:i + batch]))
            loss += F.cross_entropy(out, y[i:i + batch], reduction="sum").item()
            correct += (out.argmax(1) == y[i:i + batch]).sum().item()
    return correct / x.shape[0], loss / x.shape[0]


def machine():
    cpu = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cpus, torch {torch.__version__}"


def cmd_train(a):
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    torch.set_num_threads(a.threads)
    gen = torch.Generator().manual_seed(a.seed)
    xtr, ytr = load_split("train")
    xte, yte = load_split("test")
    model = make_model(a.arch)
    mf = torch.channels_last if a.channels_last else torch.contiguous_format
    model = model.to(memory_format=mf)
    opt = make_optimizer(model)
    n = xtr.shape[0]
    steps_per_epoch = math.ceil(n / a.batch)
    if a.steps:
        steps_per_epoch = min(steps_per_epoch, a.steps)
    total = a.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=0.0)
    log = []
    for ep in range(a.epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        t_compute, seen, loss_sum = 0.0, 0, 0.0
        for it in range(steps_per_epoch):
            idx = perm[it * a.batch:(it + 1) * a.batch]
            xb = normalize(augment(xtr[idx], gen)).contiguous(memory_format=mf)
            yb = ytr[idx]
            t0 = time.perf_counter()
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            t_compute += time.perf_counter() - t0
            sched.step()
            seen += xb.shape[0]
            loss_sum += loss.item() * xb.shape[0]
        acc, tl = evaluate(model, xte, yte)
        rec = {"epoch": ep + 1, "train_loss": loss_sum / seen, "test_loss": tl,
               "test_acc": acc, "images_per_s": seen / t_compute,
               "lr": sched.get_last_lr()[0]}
        log.append(rec)
        if not a.json:
            print(f"epoch {ep + 1}/{a.epochs}  train loss {rec['train_loss']:.4f}  "
                  f"test loss {tl:.4f}  test acc {100 * acc:.2f}%  "
                  f"{rec['images_per_s']:.0f} images/s", flush=True)
    if a.save:
        torch.save(model.state_dict(), a.save)
    if a.out:
        export_onnx(model, a.out, fold_bn=False)
    res = {"arch": a.arch, "epochs": a.epochs, "steps_per_epoch": steps_per_epoch,
           "batch": a.batch, "threads": a.threads, "seed": a.seed,
           "layout": "NHWC" if a.channels_last else "NCHW",
           "test_acc": log[-1]["test_acc"] if log else None, "epochs_log": log,
           "machine": machine()}
    if a.json:
        print(json.dumps(res, indent=1))
    else:
        print(f"final test accuracy {100 * res['test_acc']:.2f}%")


def cmd_bench_train(a):
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    gen = torch.Generator().manual_seed(a.seed)
    xtr, ytr = load_split("train")
    model = make_model(a.arch)
    mf = torch.channels_last if a.channels_last else torch.contiguous_format
    model = model.to(memory_format=mf)
    model.train()
    opt = make_optimizer(model)
    n = xtr.shape[0]
    perm = torch.randperm(n, generator=gen)
    nb = n // a.batch
    batches = []
    for i in range(min(nb, a.warmup + a.steps)):
        idx = perm[i * a.batch:(i + 1) * a.batch]
        batches.append((normalize(augment(xtr[idx], gen)).contiguous(memory_format=mf), ytr[idx]))
    load0 = os.getloadavg()[0]
    rounds = []  # per round: list of step times
    for r in range(a.repeat):
        times = []
        for i in range((a.warmup if r == 0 else 0) + a.steps):
            xb, yb = batches[i % len(batches)]
            t0 = time.perf_counter()
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            dt = time.perf_counter() - t0
            if r > 0 or i >= a.warmup:
                times.append(dt)
        rounds.append(times)
    # best round (least disturbed by other processes on a shared machine)
    times = min(rounds, key=sum)
    ips = a.batch * len(times) / sum(times)
    med = float(np.median(times))
    res = {"arch": a.arch, "threads": a.threads, "batch": a.batch, "steps": a.steps,
           "warmup": a.warmup, "repeat": a.repeat,
           "layout": "NHWC" if a.channels_last else "NCHW",
           "images_per_s": ips, "images_per_s_median_step": a.batch / med,
           "ms_per_step_median": 1000 * med,
           "images_per_s_rounds": [a.batch * len(t) / sum(t) for t in rounds],
           "loadavg_1min_before": load0, "machine": machine()}
    if a.json:
        print(json.dumps(res))
    else:
        print(f"{a.arch} {res['layout']}: {ips:.1f} images/s (batch {a.batch}, {a.threads} threads, "
              f"{a.steps} steps after {a.warmup} warm-up; median step {res['ms_per_step_median']:.1f} ms "
              f"= {res['images_per_s_median_step']:.1f} images/s)")


def load_weights(arch, path):
    model = make_model(arch)
    model.load_state_dict(torch.load(path, map_location="cpu"))
    model.eval()
    return model


def load_onnx_weights(arch, path):
    """State dict from an ONNX model's initializers (names = state_dict keys:
    qkit train's output keeps BN and torch's names)."""
    import onnx
    from onnx import numpy_helper
    m = onnx.load(path)
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    model = make_model(arch)
    sd = model.state_dict()
    missing = []
    for k, v in sd.items():
        if k.endswith("num_batches_tracked"):
            continue
        if k not in inits:
            missing.append(k)
            continue
        arr = inits[k]
        if tuple(arr.shape) != tuple(v.shape):
            raise SystemExit(f"{path}: initializer {k} has shape {list(arr.shape)}, {arch} needs {list(v.shape)}")
        sd[k] = torch.from_numpy(np.array(arr, dtype=np.float32))
    if missing:
        raise SystemExit(f"{path}: not an unfolded {arch} model: no initializer for {', '.join(missing[:4])}"
                         f"{' ...' if len(missing) > 4 else ''}")
    model.load_state_dict(sd)
    model.eval()
    return model


def cmd_eval_torch(a):
    torch.set_num_threads(a.threads)
    model = load_onnx_weights(a.arch, a.onnx) if a.onnx else load_weights(a.arch, a.weights)
    xte, yte = load_split("test")
    acc, loss = evaluate(model, xte, yte)
    if a.json:
        print(json.dumps({"arch": a.arch, "test_acc": acc, "test_loss": loss}))
    else:
        print(f"{a.arch}: test accuracy {100 * acc:.2f}%  loss {loss:.4f}")


# ---------------------------------------------------------------- ONNX

def export_onnx(model, path, fold_bn=False):
    """Export in eval mode, opset 13, dynamic batch on input/logits.
    fold_bn=False keeps BatchNormalization nodes and the state_dict names
    (TrainingMode.PRESERVE on an eval-mode model skips torch's Conv+BN
    fusion); fold_bn=True is torch's default eval export."""
    model = model.to(memory_format=torch.contiguous_format)
    model.eval()
    dummy = torch.zeros(1, 1, 28, 28)
    mode = torch.onnx.TrainingMode.EVAL if fold_bn else torch.onnx.TrainingMode.PRESERVE
    torch.onnx.export(model, dummy, path, opset_version=13,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      training=mode, do_constant_folding=True)


def cmd_export(a):
    if a.onnx:
        model = load_onnx_weights(a.arch, a.onnx)
    else:
        model = load_weights(a.arch, a.weights) if a.weights else make_model(a.arch)
    export_onnx(model, a.out, fold_bn=a.fold_bn)
    print(f"wrote {a.out}")


def pick_engine(name):
    supported = torch.backends.quantized.supported_engines
    if name != "auto":
        if name not in supported:
            raise SystemExit(f"quantized engine '{name}' not in this torch build ({', '.join(supported)})")
        return name
    for e in ("fbgemm", "x86", "onednn", "qnnpack"):
        if e in supported:
            return e
    raise SystemExit(f"no quantized engine in this torch build ({', '.join(supported)})")


def cmd_ptq(a):
    import copy
    from torch.ao.quantization import HistogramObserver, PerChannelMinMaxObserver, QConfig, QConfigMapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    torch.set_num_threads(a.threads)
    engine = pick_engine(a.engine)
    torch.backends.quantized.engine = engine
    backend_config = None  # the native backend config (torch 1.13 has no onednn-specific one)
    # get_default_qconfig(engine) for fbgemm/x86/onednn: 7-bit activation range on fbgemm/x86
    reduce_range = engine in ("fbgemm", "x86")
    qconfig = QConfig(activation=HistogramObserver.with_args(reduce_range=reduce_range),
                      weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8,
                                                                qscheme=torch.per_channel_symmetric))
    qmap = QConfigMapping().set_global(qconfig)
    if a.onnx:
        float_model = load_onnx_weights(a.arch, a.onnx)
    else:
        float_model = load_weights(a.arch, a.weights)
    xtr, _ = load_split("train")
    xte, yte = load_split("test")
    if a.calib > xtr.shape[0]:
        raise SystemExit(f"--calib {a.calib}: the train set has {xtr.shape[0]} images")
    calib = normalize(xtr[:a.calib])
    batches = [calib[i:i + a.calib_batch] for i in range(0, a.calib, a.calib_batch)]
    example = (calib[:1],)
    float_acc, _ = evaluate(float_model, xte, yte)
    times, qmodel = [], None
    for _ in range(a.repeat):
        m = copy.deepcopy(float_model).eval()
        t0 = time.perf_counter()
        prepared = prepare_fx(m, qmap, example, backend_config=backend_config)
        t1 = time.perf_counter()
        with torch.no_grad():
            for xb in batches:
                prepared(xb)
        t2 = time.perf_counter()
        qm = convert_fx(prepared, backend_config=backend_config)
        t3 = time.perf_counter()
        times.append({"prepare_s": t1 - t0, "calibrate_s": t2 - t1, "convert_s": t3 - t2, "total_s": t3 - t0})
        qmodel = qm
    best = min(times, key=lambda t: t["total_s"])
    q_acc, q_loss = evaluate(qmodel, xte, yte)
    res = {"arch": a.arch, "engine": engine, "threads": a.threads, "calib_images": a.calib,
           "calib_batch": a.calib_batch, "repeat": a.repeat,
           "activation_observer": f"HistogramObserver(reduce_range={reduce_range})",
           "weight_observer": "PerChannelMinMaxObserver(qint8, per_channel_symmetric)",
           "ptq_s": best["total_s"], "prepare_s": best["prepare_s"], "calibrate_s": best["calibrate_s"],
           "convert_s": best["convert_s"], "ptq_s_runs": [t["total_s"] for t in times],
           "float_top1": float_acc, "quant_top1": q_acc, "quant_test_loss": q_loss,
           "weights": a.onnx or a.weights, "machine": machine()}
    if a.json:
        print(json.dumps(res))
    else:
        print(f"{a.arch} FX PTQ ({engine}, {a.threads} threads, {a.calib} calibration images in batches of "
              f"{a.calib_batch}): {best['total_s']:.3f} s (prepare {best['prepare_s']:.3f}, calibrate "
              f"{best['calibrate_s']:.3f}, convert {best['convert_s']:.3f}); top-1 float "
              f"{100 * float_acc:.2f}% -> int8 {100 * q_acc:.2f}%")


def cmd_qat(a):
    from torch.ao.quantization import (FakeQuantize, MovingAverageMinMaxObserver,
                                       MovingAveragePerChannelMinMaxObserver, QConfig, QConfigMapping)
    from torch.ao.quantization.quantize_fx import prepare_qat_fx
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    gen = torch.Generator().manual_seed(a.seed)
    qa, qw = (1 << a.abits) - 1, (1 << (a.wbits - 1))
    act = FakeQuantize.with_args(observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=qa,
                                 dtype=torch.quint8, qscheme=torch.per_tensor_affine)
    wt = FakeQuantize.with_args(observer=MovingAveragePerChannelMinMaxObserver, quant_min=-qw, quant_max=qw - 1,
                                dtype=torch.qint8, qscheme=torch.per_channel_symmetric, ch_axis=0)
    qmap = QConfigMapping().set_global(QConfig(activation=act, weight=wt))
    xtr, ytr = load_split("train")
    xte, yte = load_split("test")
    if a.limit:
        xte, yte = xte[:a.limit], yte[:a.limit]
    model = load_onnx_weights(a.arch, a.onnx)
    float_acc, _ = evaluate(model, xte, yte)
    model.train()
    prepared = prepare_qat_fx(model, qmap, (normalize(xtr[:2]),))
    mf = torch.channels_last if a.channels_last else torch.contiguous_format
    prepared = prepared.to(memory_format=mf)
    opt = make_optimizer(prepared, lr=a.lr)
    n = xtr.shape[0]
    spe = math.ceil(n / a.batch)
    if a.steps:
        spe = min(spe, a.steps)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=a.epochs * spe, eta_min=0.0)
    t_compute, seen = 0.0, 0
    for ep in range(a.epochs):
        prepared.train()
        perm = torch.randperm(n, generator=gen)
        for it in range(spe):
            idx = perm[it * a.batch:(it + 1) * a.batch]
            xb = normalize(augment(xtr[idx], gen)).contiguous(memory_format=mf)
            t0 = time.perf_counter()
            loss = F.cross_entropy(prepared(xb), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            t_compute += time.perf_counter() - t0
            sched.step()
            seen += xb.shape[0]
    q_acc, _ = evaluate(prepared, xte, yte)  # eval mode: fake quant with the learned/observed ranges
    res = {"arch": a.arch, "peer": "torch %s prepare_qat_fx, FakeQuantize(MovingAverageMinMaxObserver), "
           "per-channel symmetric weights, %s" % (torch.__version__, "channels_last" if a.channels_last else "NCHW"),
           "wbits": a.wbits, "abits": a.abits, "epochs": a.epochs, "steps_per_epoch": spe, "lr": a.lr,
           "threads": a.threads, "fp32_top1": float_acc, "top1": q_acc, "images_per_s": seen / t_compute,
           "test_images": int(xte.shape[0]), "machine": machine()}
    if a.json:
        print(json.dumps(res))
    else:
        print(f"{a.arch} PyTorch FX QAT W{a.wbits}A{a.abits}, {a.epochs} epochs: float {100 * float_acc:.2f}% -> "
              f"{100 * q_acc:.2f}%, {res['images_per_s']:.0f} images/s")


def time_median(fn, repeat, seconds):
    """Median over `repeat` rounds of seconds per call, each round calling fn
    for at least `seconds` (as qkit's bench_int8_e2e)."""
    fn()
    per = []
    for _ in range(repeat):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            dt = time.perf_counter() - t0
            if dt >= seconds:
                break
        per.append(dt / n)
    return float(np.median(per))


def peer_model(a):
    torch.manual_seed(1)
    return load_onnx_weights(a.arch, a.onnx) if a.onnx else make_model(a.arch).eval()


def cmd_bench_int8(a):
    """int8 inference throughput of PyTorch's own PTQ (FX, prepare_fx /
    convert_fx with the fbgemm default qconfig: HistogramObserver with
    reduce_range, per-channel symmetric weights; 256 calibration images) at
    batch --batch, float input to float logits; each engine of --engine
    (auto: onednn and fbgemm, those in this build) in NCHW and channels_last
    input; the fastest configuration is reported with every figure."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    torch.set_num_threads(a.threads)
    supported = torch.backends.quantized.supported_engines
    engines = [e for e in ("onednn", "fbgemm") if e in supported] if a.engine == "auto" else [a.engine]
    if not engines or any(e not in supported for e in engines):
        raise SystemExit(f"engines {engines}: this torch build has {', '.join(supported)}")
    xtr, _ = load_split("train")
    calib = normalize(xtr[:256])
    x = normalize(xtr[:a.batch])
    load0 = os.getloadavg()[0]
    configs = []
    for eng in engines:
        torch.backends.quantized.engine = eng
        m = prepare_fx(peer_model(a), get_default_qconfig_mapping("fbgemm"), (calib[:1],))
        with torch.no_grad():
            for i in range(0, 256, 64):
                m(calib[i:i + 64])
        qm = convert_fx(m).eval()
        for layout, mf in (("NCHW", torch.contiguous_format), ("NHWC", torch.channels_last)):
            xb = x.contiguous(memory_format=mf)
            with torch.inference_mode():
                t = time_median(lambda: qm(xb), a.repeat, a.seconds)
            configs.append({"engine": eng, "layout": layout, "images_per_s": a.batch / t})
    best = max(configs, key=lambda c: c["images_per_s"])
    res = {"arch": a.arch, "threads": a.threads, "batch": a.batch, "repeat": a.repeat, "qconfig": "fbgemm",
           "engine": best["engine"], "layout": best["layout"], "images_per_s": best["images_per_s"],
           "configs": configs, "loadavg_1min_before": load0, "machine": machine()}
    print(json.dumps(res) if a.json else
          f"{a.arch} int8 FX ({best['engine']}, {best['layout']}): {best['images_per_s']:.0f} images/s")


def cmd_bench_infer(a):
    """float inference throughput (eval mode, inference_mode) at batch
    --batch in NCHW and channels_last; the faster is reported."""
    torch.set_num_threads(a.threads)
    xtr, _ = load_split("train")
    x = normalize(xtr[:a.batch])
    model = peer_model(a)
    load0 = os.getloadavg()[0]
    configs = []
    for layout, mf in (("NCHW", torch.contiguous_format), ("NHWC", torch.channels_last)):
        m = model.to(memory_format=mf)
        xb = x.contiguous(memory_format=mf)
        with torch.inference_mode():
            t = time_median(lambda: m(xb), a.repeat, a.seconds)
        configs.append({"layout": layout, "images_per_s": a.batch / t})
    best = max(configs, key=lambda c: c["images_per_s"])
    res = {"arch": a.arch, "threads": a.threads, "batch": a.batch, "repeat": a.repeat, "layout": best["layout"],
           "images_per_s": best["images_per_s"], "configs": configs, "loadavg_1min_before": load0,
           "machine": machine()}
    print(json.dumps(res) if a.json else f"{a.arch} float ({best['layout']}): {best['images_per_s']:.0f} images/s")


def cmd_ops(a):
    import io
    import onnx
    for arch in ARCHS:
        for fold in (False, True):
            torch.manual_seed(0)
            buf = io.BytesIO()
            export_onnx(make_model(arch), buf, fold_bn=fold)
            m = onnx.load_from_string(buf.getvalue())
            ops = sorted({nd.op_type for nd in m.graph.node})
            print(f"{arch:13s} {'folded-BN' if fold else 'keep-BN  '}: {' '.join(ops)}")


def cmd_summary(a):
    for arch in ARCHS:
        m = make_model(arch)
        tr, bu = param_counts(m)
        print(f"{arch}: {tr} trainable parameters, {bu} BN running-stat values")
        if a.verbose:
            for name, p in m.state_dict().items():
                print(f"  {name:32s} {list(p.shape)}")


def main(argv=None):
    ap = argparse.ArgumentParser(description="PyTorch comparison peer for qkit")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--arch", required=True, choices=ARCHS)
    t.add_argument("--epochs", type=int, default=8)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--steps", type=int, default=0, help="cap on steps per epoch (0 = full epoch)")
    t.add_argument("--batch", type=int, default=128)
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    t.add_argument("--out", help="export the trained model as ONNX")
    t.add_argument("--save", help="save the state dict (.pt)")
    t.add_argument("--json", action="store_true")
    b = sub.add_parser("bench-train")
    b.add_argument("--arch", required=True, choices=ARCHS)
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--steps", type=int, default=50)
    b.add_argument("--warmup", type=int, default=5)
    b.add_argument("--repeat", type=int, default=1,
                   help="timed rounds of --steps; the fastest round is reported")
    b.add_argument("--batch", type=int, default=128)
    b.add_argument("--seed", type=int, default=1)
    b.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    b.add_argument("--json", action="store_true")
    e = sub.add_parser("eval-torch")
    e.add_argument("--arch", required=True, choices=ARCHS)
    ew = e.add_mutually_exclusive_group(required=True)
    ew.add_argument("--weights", help="state dict (.pt) from train --save")
    ew.add_argument("--onnx", help="take the weights of a qkit model (state_dict-named initializers)")
    e.add_argument("--threads", type=int, default=2)
    e.add_argument("--json", action="store_true")
    x = sub.add_parser("export")
    x.add_argument("--arch", required=True, choices=ARCHS)
    x.add_argument("--weights")
    x.add_argument("--onnx", help="take the weights of a qkit model (state_dict-named initializers)")
    x.add_argument("--out", required=True)
    x.add_argument("--fold-bn", action="store_true")
    p = sub.add_parser("ptq")
    p.add_argument("--arch", required=True, choices=ARCHS)
    w = p.add_mutually_exclusive_group(required=True)
    w.add_argument("--weights", help="state dict (.pt) from train --save")
    w.add_argument("--onnx", help="ONNX model with state_dict-named initializers (qkit train's output)")
    p.add_argument("--calib", type=int, default=512, help="calibration images (first N of the train set)")
    p.add_argument("--calib-batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--engine", default="auto", help="quantized engine: auto, fbgemm, x86, onednn, qnnpack")
    p.add_argument("--repeat", type=int, default=1, help="timed PTQ runs; the fastest is reported")
    p.add_argument("--json", action="store_true")
    qt = sub.add_parser("qat")
    qt.add_argument("--arch", required=True, choices=ARCHS)
    qt.add_argument("--onnx", required=True, help="the float model (state_dict-named initializers)")
    qt.add_argument("--wbits", type=int, default=4)
    qt.add_argument("--abits", type=int, default=4)
    qt.add_argument("--epochs", type=int, default=4)
    qt.add_argument("--steps", type=int, default=0, help="cap on steps per epoch (0 = full epoch)")
    qt.add_argument("--batch", type=int, default=128)
    qt.add_argument("--lr", type=float, default=0.003)
    qt.add_argument("--seed", type=int, default=1)
    qt.add_argument("--threads", type=int, default=2)
    qt.add_argument("--limit", type=int, default=0, help="evaluate the first N test images (0 = all)")
    qt.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    qt.add_argument("--json", action="store_true")
    for name in ("bench-int8", "bench-infer"):
        q = sub.add_parser(name)
        q.add_argument("--arch", required=True, choices=ARCHS)
        q.add_argument("--onnx", help="take the weights of a qkit model (else the default init, reproducible)")
        q.add_argument("--threads", type=int, default=2)
        q.add_argument("--batch", type=int, default=256)
        q.add_argument("--repeat", type=int, default=3)
        q.add_argument("--seconds", type=float, default=0.3)
        if name == "bench-int8":
            q.add_argument("--engine", default="auto", help="auto (onednn and fbgemm where built), onednn, fbgemm")
        q.add_argument("--json", action="store_true")
    sub.add_parser("ops")
    s = sub.add_parser("summary")
    s.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    {"train": cmd_train, "bench-train": cmd_bench_train, "eval-torch": cmd_eval_torch,
     "export": cmd_export, "ptq": cmd_ptq, "qat": cmd_qat, "bench-int8": cmd_bench_int8,
     "bench-infer": cmd_bench_infer, "ops": cmd_ops, "summary": cmd_summary}[a.cmd](a)


if __name__ == "__main__":
    main()
