#!/usr/bin/env python3
"""Write Fashion-MNIST as image folders of 3-channel 32x32 PNGs.

    python3 tools/fashion_to_png.py OUT [--data DIR] [--train N] [--test N] [--jpeg SIZE]

OUT/train/<k>-<name>/00000.png and OUT/test/<k>-<name>/00000.png, one
subfolder per class (the names sort in label order, as `qkit --data FOLDER`
expects). Each 28x28 gray image is zero-padded by 2 pixels to 32x32 and
replicated to R, G and B (exact: no interpolation). --jpeg SIZE writes
SIZE x SIZE RGB JPEGs (quality 90, 00000.jpg) instead: the 28x28 image
resized with PIL's bilinear filter, no padding (`qkit eval --resize 28
--crop 28` brings them back to the models' input). Needs python3-numpy and
python3-pil; reads the IDX files of Debian's dataset-fashion-mnist.
"""
import argparse
import gzip
import os
import sys

import numpy as np
from PIL import Image

NAMES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]


def read_idx(path):
    op = gzip.open if path.endswith(".gz") else open
    with op(path, "rb") as f:
        data = f.read()
    nd = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * nd).reshape(dims)


def find(d, split, kind, n):
    for suf in (".gz", ""):
        p = os.path.join(d, "%s-%s-idx%d-ubyte%s" % (split, kind, n, suf))
        if os.path.exists(p):
            return p
    sys.exit("fashion_to_png: %s/%s-%s-idx%d-ubyte(.gz) not found (apt-get install dataset-fashion-mnist)"
             % (d, split, kind, n))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--train", type=int, default=0, help="first N training images (default all)")
    ap.add_argument("--test", type=int, default=0, help="first N test images (default all)")
    ap.add_argument("--jpeg", type=int, default=0, metavar="SIZE", help="SIZE x SIZE JPEGs instead of 32x32 PNGs")
    a = ap.parse_args()
    for split, sub, lim in (("train", "train", a.train), ("t10k", "test", a.test)):
        x = read_idx(find(a.data, split, "images", 3))
        y = read_idx(find(a.data, split, "labels", 1))
        if lim:
            x, y = x[:lim], y[:lim]
        for k, name in enumerate(NAMES):
            os.makedirs(os.path.join(a.out, sub, "%d-%s" % (k, name)), exist_ok=True)
        pad = np.zeros((32, 32), np.uint8)
        for i in range(len(x)):
            d = os.path.join(a.out, sub, "%d-%s" % (y[i], NAMES[y[i]]))
            if a.jpeg:
                im = Image.fromarray(x[i], "L").resize((a.jpeg, a.jpeg), Image.BILINEAR).convert("RGB")
                im.save(os.path.join(d, "%05d.jpg" % i), quality=90)
                continue
            pad[2:30, 2:30] = x[i]
            rgb = np.repeat(pad[:, :, None], 3, axis=2)
            Image.fromarray(rgb, "RGB").save(os.path.join(d, "%05d.png" % i))
        print("wrote %d %s images to %s" % (len(x), sub, os.path.join(a.out, sub)))


if __name__ == "__main__":
    main()
