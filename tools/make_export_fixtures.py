#!/usr/bin/python3
"""Write the small PyTorch exports used by tests/test_ops_export.c.

Run from the repository root with Debian's python (torch 1.13, onnx 1.12):
    /usr/bin/python3 tools/make_export_fixtures.py [--out tests/data/export]

One tiny seeded model using reflect Pad, Conv, Relu, bilinear Resize,
ConvTranspose, flatten + Transpose, LayerNorm, Linear, Gelu (exact),
a token mean (ReduceMean), a reshape by x.size(0) and Sqrt/Abs, exported
three ways with torch.onnx.export:
    <out>/tiny_op14.onnx     defaults (opset 14, fixed batch 1: LayerNorm and
                             Gelu decomposed into ReduceMean/Pow/Sqrt/Erf ...)
    <out>/tiny_op17.onnx     opset 17 (LayerNormalization), dynamic batch
                             (the Shape -> Gather -> Unsqueeze -> Concat ->
                             Reshape chain stays in the graph)
    <out>/tiny_op11.onnx     opset 11, dynamic batch
    <out>/shared_params.onnx a conv net whose three BatchNorms (and two convs)
                             hold equal values, exported with the defaults:
                             the folded parameters are shared through Identity
                             nodes, the batch is fixed at 1 (what quantization
                             of such exports must handle)
and the data:
    <out>/input_b1.pb, output_b1.pb   batch 1 ("x" [1,3,8,8] -> "y" [1,5])
    <out>/input_b3.pb, output_b3.pb   batch 3 (the fixed-batch export is
                                      re-planned by qkit at batch 3)
Output is deterministic for a given torch build; the files are committed.
"""
import argparse
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import numpy_helper


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.up = nn.ConvTranspose2d(8, 6, 2, stride=2)
        self.ln = nn.LayerNorm(6)
        self.fc = nn.Linear(6, 12)
        self.head = nn.Linear(12, 5)

    def forward(self, x):
        b = x.size(0)
        x = F.pad(x, (1, 1, 2, 0), mode="reflect")
        x = F.relu(self.conv(x))
        x = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)
        x = self.up(x)
        t = x.flatten(2).transpose(1, 2)
        t = F.gelu(self.fc(self.ln(t)))
        t = t.mean(dim=1).reshape(b, -1)
        z = self.head(t)
        return z + 0.1 * torch.sqrt(torch.abs(z) + 1.0)


class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.c3, self.b3 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = F.relu(self.b1(self.c1(x)))
        y = F.relu(self.b2(self.c2(x)))
        x = F.relu(self.b3(self.c3(y)) + x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def export_shared(out):
    torch.manual_seed(0)
    m = Shared().eval()
    with torch.no_grad():
        for b in (m.b1, m.b2, m.b3):
            b.running_mean.fill_(0.1)
            b.running_var.fill_(2.0)
            b.weight.fill_(1.5)
            b.bias.fill_(0.2)
        m.c3.weight.copy_(m.c2.weight)
        m.c3.bias.copy_(m.c2.bias)
    torch.onnx.export(m, (torch.randn(1, 3, 12, 12),), os.path.join(out, "shared_params.onnx"),
                      input_names=["x"], output_names=["y"])


def save(t, name, path):
    with open(path, "wb") as f:
        f.write(numpy_helper.from_array(t.detach().numpy(), name).SerializeToString())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/data/export")
    out = ap.parse_args().out
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(5)
    m = Tiny().eval()
    with torch.no_grad():
        for p in m.ln.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x1 = torch.randn(1, 3, 8, 8)
    x3 = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        y1, y3 = m(x1), m(x3)
    save(x1, "x", os.path.join(out, "input_b1.pb"))
    save(y1, "y", os.path.join(out, "output_b1.pb"))
    save(x3, "x", os.path.join(out, "input_b3.pb"))
    save(y3, "y", os.path.join(out, "output_b3.pb"))
    kw = dict(input_names=["x"], output_names=["y"])
    dyn = dict(dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    torch.onnx.export(m, (x1,), os.path.join(out, "tiny_op14.onnx"), **kw)
    torch.onnx.export(m, (x1,), os.path.join(out, "tiny_op17.onnx"), opset_version=17, **kw, **dyn)
    torch.onnx.export(m, (x1,), os.path.join(out, "tiny_op11.onnx"), opset_version=11, **kw, **dyn)
    export_shared(out)


if __name__ == "__main__":
    main()
