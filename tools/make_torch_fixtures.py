#!/usr/bin/python3
"""Write the PyTorch golden fixtures used by tests/test_torch_import.c.

Run from the repository root with Debian's python (torch 1.13, onnx 1.12):
    /usr/bin/python3 tools/make_torch_fixtures.py [--out tests/data/torch]

For each reference architecture (bench/torch_peer.py defines them):
    <out>/<arch>.onnx              eval-mode export, opset 13, dynamic batch,
                                   BatchNormalization kept, initializers named
                                   as the PyTorch state_dict (conv1.weight, ...)
    <out>/<arch>/input_0.pb        TensorProto "input"  float32 [4,1,28,28]
    <out>/<arch>/output_0.pb       TensorProto "logits" float32 [4,10] (PyTorch)
and one file with torch's default eval export (Conv+BN folded into Conv with
bias, initializers renamed onnx::Conv_N), to cover what users usually get:
    <out>/mobilenetv2s_folded.onnx   (same weights and expected logits as
                                      mobilenetv2s/; folding changes the
                                      float rounding by ~1e-6 only)

Weights are seeded He-normal; every BatchNorm gets random
affine parameters and running statistics (seeded), so BN visibly changes the
result (the script checks that resetting the statistics moves the logits).
Inputs are seeded N(0,1) values, roughly the range of normalized images.
Output is deterministic for a given torch build; the files are committed.
"""
import argparse
import os
import sys

import numpy as np
import torch
import onnx
from onnx import numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the tree
sys.path.insert(0, os.path.join(HERE, "..", "bench"))
import torch_peer as tp  # noqa: E402

SEED = 20240601


def init_weights(model, gen):
    """He-normal (fan_in, ReLU gain) conv/linear weights and small random
    biases: keeps activations and logits O(1), so the 1e-4 tolerance of
    tests/test_torch_import.c is a tight relative check (PyTorch's default
    init shrinks the logits to ~0.2)."""
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            fan_in = m.weight[0].numel()
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))


def randomize_bn(model, gen):
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            with torch.no_grad():
                m.weight.copy_(0.5 + torch.rand(c, generator=gen))           # [0.5, 1.5)
                m.bias.copy_(0.2 * torch.randn(c, generator=gen))
                m.running_mean.copy_(0.2 * torch.randn(c, generator=gen))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=gen))  # [0.5, 2)


def write_pb(arr, name, path):
    t = numpy_helper.from_array(np.ascontiguousarray(arr, dtype=np.float32), name)
    with open(path, "wb") as f:
        f.write(t.SerializeToString())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(HERE, "..", "tests", "data", "torch"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(1)
    for i, arch in enumerate(tp.ARCHS):
        torch.manual_seed(SEED + i)
        gen = torch.Generator().manual_seed(SEED + 100 + i)
        model = tp.make_model(arch)
        init_weights(model, gen)
        randomize_bn(model, gen)
        model.eval()
        x = torch.randn(4, 1, 28, 28, generator=gen)
        with torch.no_grad():
            y = model(x)
            # BN must matter: default statistics give clearly different logits
            plain = tp.make_model(arch)
            plain.load_state_dict({k: v for k, v in model.state_dict().items()
                                   if "running" not in k}, strict=False)
            plain.eval()
            dy = (plain(x) - y).abs().max().item()
        assert dy > 1e-2, f"{arch}: BN statistics have no visible effect ({dy})"
        path = os.path.join(a.out, f"{arch}.onnx")
        tp.export_onnx(model, path, fold_bn=False)
        m = onnx.load(path)
        onnx.checker.check_model(m)
        d = os.path.join(a.out, arch)
        os.makedirs(d, exist_ok=True)
        write_pb(x.numpy(), "input", os.path.join(d, "input_0.pb"))
        write_pb(y.numpy(), "logits", os.path.join(d, "output_0.pb"))
        ops = sorted({n.op_type for n in m.graph.node})
        print(f"{arch}: {os.path.getsize(path)} bytes, logits |max| {y.abs().max().item():.3f}, "
              f"BN effect {dy:.3f}, ops {' '.join(ops)}")
        if arch == "mobilenetv2s":
            fpath = os.path.join(a.out, f"{arch}_folded.onnx")
            tp.export_onnx(model, fpath, fold_bn=True)
            fm = onnx.load(fpath)
            onnx.checker.check_model(fm)
            ops = sorted({n.op_type for n in fm.graph.node})
            print(f"{arch}_folded: {os.path.getsize(fpath)} bytes, ops {' '.join(ops)}")


if __name__ == "__main__":
    main()
