#!/usr/bin/python3
"""Export torchvision image classifiers to ONNX and write reference data.

Comparison peer only (needs python3-torch, python3-torchvision, python3-onnx;
qkit never depends on them). For each model: random weights (seeded), eval
mode, torch.onnx.export with its defaults (opset of the installed torch),
one input of a small size the model allows, PyTorch's output. Writes
  OUT/<model>/model.onnx, OUT/<model>/input_0.pb, OUT/<model>/output_0.pb
and prints one line "<model> <ops>" (the distinct op types, comma-separated).

usage: torchvision_models.py OUTDIR [model ...]
"""
import os
import sys

import numpy as np
import onnx
import torch
import torchvision
from onnx import numpy_helper

# name -> input H = W (the smallest convenient size each model accepts;
# AlexNet and VGG end in adaptive pools to 6x6 / 7x7, which torch exports
# only when the feature map is a multiple of that: 224)
MODELS = {
    "alexnet": 224, "vgg11": 224, "resnet18": 64, "resnext50_32x4d": 64, "wide_resnet50_2": 64,
    "squeezenet1_0": 64, "densenet121": 64, "googlenet": 64, "inception_v3": 75,
    "mobilenet_v2": 64, "mobilenet_v3_small": 64, "shufflenet_v2_x1_0": 64, "mnasnet0_5": 64,
    "efficientnet_b0": 64, "regnet_x_400mf": 64, "convnext_tiny": 64,
}


def build(name):
    ctor = getattr(torchvision.models, name)
    kw = {"weights": None}
    if name in ("googlenet", "inception_v3"):
        kw.update(aux_logits=False, init_weights=True)
    return ctor(**kw)


def main():
    out = sys.argv[1]
    names = sys.argv[2:] or list(MODELS)
    torch.set_num_threads(2)
    for name in names:
        try:
            export_one(out, name)
        except Exception as e:  # report and go on with the next model
            print(name, "EXPORT-FAILED", str(e).splitlines()[0][:200], flush=True)


def export_one(out, name):
    if True:
        torch.manual_seed(0)
        m = build(name).eval()
        hw = MODELS[name]
        x = torch.randn(1, 3, hw, hw)
        with torch.no_grad():
            y = m(x)
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, "model.onnx")
        torch.onnx.export(m, (x,), path, input_names=["x"], output_names=["y"])
        with open(os.path.join(d, "input_0.pb"), "wb") as f:
            f.write(numpy_helper.from_array(x.numpy(), "x").SerializeToString())
        with open(os.path.join(d, "output_0.pb"), "wb") as f:
            f.write(numpy_helper.from_array(y.numpy().astype(np.float32), "y").SerializeToString())
        ops = sorted({n.op_type for n in onnx.load(path).graph.node})
        print(name, ",".join(ops), flush=True)


if __name__ == "__main__":
    main()
