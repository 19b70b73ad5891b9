"""Tests of the Python package (python/qkit) against the built library and
the qkit command: run from the repository root with
PYTHONPATH=python python3 tests/python/test_qkit.py (tools/test_python.sh,
which `make test` runs). Ends with "test_python: N passed, M failed"."""
import gzip
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

import numpy as np

import qkit

try:  # a peer, not a dependency: its test is skipped without python3-torch
    import torch
except ImportError:
    torch = None

BUILD = os.environ.get("QKIT_BUILD", "build")
QKIT = os.path.join(BUILD, "qkit")
FASHION = "/usr/share/datasets/fashion-mnist"
LENET = "models/lenet.onnx"
MEAN, STD = 0.2860, 0.3530  # lenet's qkit.norm metadata


def idx(split, kind):
    """An MNIST-format IDX file of the Fashion-MNIST package as a numpy array."""
    name = "%s-%s-idx%d-ubyte.gz" % (split, kind, 3 if kind == "images" else 1)
    with gzip.open(os.path.join(FASHION, name), "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


# ---- a minimal TensorProto (.pb) writer and reader for `qkit run` ----

def _varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def pb_write(path, a):
    a = np.ascontiguousarray(a, np.float32)
    msg = b"".join(b"\x08" + _varint(d) for d in a.shape)  # dims (field 1)
    msg += b"\x10" + _varint(1)                             # data_type FLOAT (field 2)
    raw = a.tobytes()
    msg += b"\x4a" + _varint(len(raw)) + raw                # raw_data (field 9)
    with open(path, "wb") as f:
        f.write(msg)


def pb_read(path):
    with open(path, "rb") as f:
        buf = f.read()
    i, dims, raw, dt = 0, [], None, None

    def varint():
        nonlocal i
        v = s = 0
        while True:
            b = buf[i]
            i += 1
            v |= (b & 0x7F) << s
            s += 7
            if not b & 0x80:
                return v
    while i < len(buf):
        key = varint()
        field, wire = key >> 3, key & 7
        if wire == 0:
            v = varint()
            if field == 1:
                dims.append(v)
            elif field == 2:
                dt = v
        elif wire == 2:
            n = varint()
            chunk = buf[i:i + n]
            i += n
            if field == 9:
                raw = chunk
            elif field == 1:  # packed dims
                j = 0
                while j < len(chunk):
                    v = s = 0
                    while True:
                        b = chunk[j]
                        j += 1
                        v |= (b & 0x7F) << s
                        s += 7
                        if not b & 0x80:
                            break
                    dims.append(v)
        elif wire == 5:
            i += 4
        elif wire == 1:
            i += 8
    assert dt == 1 and raw is not None, "float32 raw_data expected in %s" % path
    return np.frombuffer(raw, np.float32).reshape(dims)


class Data:
    test_x = test_y = train_x = None

    @classmethod
    def load(cls):
        if cls.test_x is None:
            cls.test_x = idx("t10k", "images")[:, None]   # [N,1,28,28] uint8
            cls.test_y = idx("t10k", "labels")
            cls.train_x = idx("train", "images")[:2048, None]


def normalized(u8):
    return ((u8.astype(np.float32) / 255.0 - MEAN) / STD).astype(np.float32)


class TestQkit(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        Data.load()
        cls.tmp = tempfile.mkdtemp(prefix="qkit_py_")
        cls.qdq = os.path.join(cls.tmp, "q.onnx")
        cls.r_array = qkit.ptq(LENET, "tensorrt", Data.train_x[:256], out=cls.qdq,
                               data=Data.test_x[:1000], labels=Data.test_y[:1000])

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_version_backends(self):
        self.assertRegex(qkit.__version__, r"^\d+\.\d+\.\d+$")
        names = qkit.backends()
        for b in ("tensorrt", "fbgemm", "snpe", "onnx-qlinear"):
            self.assertIn(b, names)
        d = qkit.backends(details=True)
        self.assertEqual(len(d), len(names))
        self.assertIn("summary", d[0])

    def test_info(self):
        m = qkit.Model(LENET)
        i = m.info()
        self.assertEqual(i["inputs"][0]["shape"], [None, 1, 28, 28])
        self.assertEqual(i["outputs"][0]["shape"], [1, 10])
        self.assertEqual(i["ops"]["Conv"], 2)
        self.assertEqual(i["nodes"], sum(i["ops"].values()))
        self.assertFalse(i["quantized"])
        self.assertEqual(i["metadata"]["qkit.arch"], "lenet")
        self.assertEqual(m.inputs, ["input"])
        m.close()
        with self.assertRaises(qkit.Error):
            m.info() if m._info is None else m.run(np.zeros((1, 1, 28, 28), np.float32))

    def test_run_matches_cli(self):
        """Model.run equals `qkit run` on the same Fashion-MNIST images."""
        x = normalized(Data.test_x[:16])
        inp, outp = os.path.join(self.tmp, "in.pb"), os.path.join(self.tmp, "out.pb")
        pb_write(inp, x)
        subprocess.run([QKIT, "run", "--model", LENET, "--input", inp, "--output", outp], check=True,
                       stdout=subprocess.DEVNULL)
        want = pb_read(outp)
        got = qkit.Model(LENET).run(x)
        self.assertEqual(got.shape, (16, 10))
        self.assertEqual(got.dtype, np.float32)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        # the predictions are those of a trained classifier
        self.assertGreater((got.argmax(1) == Data.test_y[:16]).mean(), 0.7)

    def test_run_any_batch_and_dict(self):
        m = qkit.Model(LENET)
        x = normalized(Data.test_x[:5])
        y5 = m.run(x)
        y1 = m.run(x[2:3].astype(np.float64))  # float64 is passed as float32
        np.testing.assert_allclose(y1[0], y5[2], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(m({"input": x}), y5)

    def test_run_bad_shapes(self):
        m = qkit.Model(LENET)
        with self.assertRaises(qkit.Error) as e:
            m.run(np.zeros((2, 1, 27, 28), np.float32))
        self.assertIn("[2,1,27,28]", str(e.exception))
        self.assertEqual(e.exception.status, "QK_ERR_SHAPE")
        with self.assertRaises(qkit.Error):
            m.run(np.zeros((2, 28, 28), np.float32))          # rank
        with self.assertRaises(qkit.Error):
            m.run(np.zeros((2, 1, 28, 28), np.float32), np.zeros(1, np.float32))  # two inputs
        with self.assertRaises(qkit.Error):
            m.run({"x": np.zeros((1, 1, 28, 28), np.float32)})

    def test_ptq_array(self):
        r = self.r_array
        self.assertEqual(r["backend"], "tensorrt")
        self.assertEqual((r["wbits"], r["abits"]), (8, 8))
        self.assertEqual(r["calib_images"], 256)
        self.assertGreater(r["quantizers"], 0)
        self.assertEqual(r["out"], self.qdq)
        self.assertGreater(r["fp32_top1"], 0.8)
        self.assertLess(abs(r["delta"]), 0.02)
        q = qkit.Model(self.qdq)
        i = q.info()
        self.assertTrue(i["quantized"])
        self.assertEqual(i["metadata"]["qkit.backend"], "tensorrt")
        self.assertIn("QuantizeLinear", i["ops"])
        # the QDQ file's fake-quant accuracy equals the in-memory one ptq reported
        e = qkit.evaluate(q, Data.test_x[:1000], Data.test_y[:1000])
        self.assertAlmostEqual(e["top1"], r["top1"], places=6)
        self.assertEqual(e["images"], 1000)

    def test_ptq_generator_float(self):
        """calib as an iterable of float32 batches (a DataLoader after .numpy())."""
        def batches():
            for i in range(0, 2048, 64):
                yield normalized(Data.train_x[i:i + 64]), np.zeros(64, np.int64)
        out = os.path.join(self.tmp, "q_gen.onnx")
        r = qkit.ptq(qkit.Model(LENET), "fbgemm", batches(), out=out, images=192, observer="minmax",
                     bias_correct=True)
        self.assertEqual(r["calib_images"], 192)
        self.assertEqual(r["a_observer"], "minmax")
        self.assertTrue(r["bias_correct"])
        self.assertTrue(r["reduce_range"] or r["backend"] == "fbgemm")
        self.assertTrue(os.path.exists(out))
        # float32 data is the model input as it is: normalized test images
        e = qkit.evaluate(out, normalized(Data.test_x[:1000]), Data.test_y[:1000])
        self.assertGreater(e["top1"], 0.8)
        f = qkit.evaluate(LENET, normalized(Data.test_x[:1000]), Data.test_y[:1000])
        self.assertLess(abs(e["top1"] - f["top1"]), 0.03)
        # ... and the same as uint8 pixels normalized by the model's metadata
        u = qkit.evaluate(LENET, Data.test_x[:1000], Data.test_y[:1000])
        self.assertLess(abs(u["top1"] - f["top1"]), 0.003)

    def test_ptq_profile_default_recipe(self):
        """cle / bias_correct not given: the profile's default; True / False override it."""
        d = {b["name"]: b for b in qkit.backends(details=True)}
        self.assertTrue(d["vitis"]["cle"])
        self.assertTrue(d["tvm"]["bias_correct"])
        self.assertFalse(d["tensorrt"]["cle"] or d["tensorrt"]["bias_correct"])
        x = Data.train_x[:64]
        r = qkit.ptq(LENET, "vitis", x)
        self.assertTrue(r["cle"])
        self.assertGreater(r["cle_pairs"], 0)
        r = qkit.ptq(LENET, "vitis", x, cle=False)
        self.assertFalse(r["cle"])
        r = qkit.ptq(LENET, "tvm", x)
        self.assertTrue(r["bias_correct"])
        self.assertFalse(r["cle"])
        r = qkit.ptq(LENET, "tvm", x, bias_correct=False, cle=True)
        self.assertFalse(r["bias_correct"])
        self.assertTrue(r["cle"])
        r = qkit.ptq(LENET, "tvm", x, recon="adaround", recon_iters=5, recon_batch=8)
        self.assertFalse(r["bias_correct"])   # replaced by the reconstruction
        with self.assertRaises(qkit.Error):
            qkit.ptq(LENET, "tvm", x, recon="adaround", bias_correct=True)

    def test_ptq_options_nhwc_agreement(self):
        x = np.ascontiguousarray(Data.train_x[:128].transpose(0, 2, 3, 1))  # NHWC
        r = qkit.ptq(LENET, "academic", x, layout="NHWC", wbits=4, abits=4, per_tensor=True,
                     data=Data.test_x[:200].transpose(0, 2, 3, 1))   # no labels: agreement
        self.assertEqual((r["wbits"], r["abits"]), (4, 4))
        self.assertFalse(r["per_channel"])
        self.assertIsNone(r["out"])
        self.assertGreater(r["top1_agree"], 0.5)
        self.assertEqual(r["images"], 200)
        self.assertIn("cosine", r)

    def test_evaluate_real(self):
        fake = qkit.evaluate(self.qdq, Data.test_x[:1000], Data.test_y[:1000])
        real = qkit.evaluate(self.qdq, Data.test_x[:1000], Data.test_y[:1000], real=True)
        self.assertTrue(real["real"])
        self.assertEqual(real["arith"], "fp32")
        self.assertGreater(real["int_layers"], 0)
        self.assertLess(abs(real["top1"] - fake["top1"]), 0.01)
        ag = qkit.evaluate(self.qdq, Data.test_x[:300], real=True)   # no labels
        self.assertGreater(ag["top1_agree"], 0.97)
        ref = qkit.evaluate(self.qdq, Data.test_x[:300], reference=LENET)
        self.assertGreater(ref["top1_agree"], 0.9)
        with self.assertRaises(qkit.Error) as e:
            qkit.evaluate(self.qdq, Data.test_x[:10])     # no labels, no reference
        self.assertIn("no labels", str(e.exception))

    def test_export(self):
        d = os.path.join(self.tmp, "deploy")
        r = qkit.export(self.qdq, "tensorrt", d)
        self.assertEqual(r["backend"], "tensorrt")
        for f in ("model_float.onnx", "dynamic_range.json", "model_qdq.onnx"):
            self.assertIn(f, r["files"])
            self.assertTrue(os.path.getsize(os.path.join(d, f)) > 0)
        r = qkit.export(self.qdq, None, os.path.join(self.tmp, "deploy2"))   # the model's backend
        self.assertEqual(r["backend"], "tensorrt")
        with self.assertRaises(qkit.Error):
            qkit.export(LENET, "tensorrt", os.path.join(self.tmp, "deploy3"))  # a float model

    def test_errors(self):
        with self.assertRaises(qkit.Error) as e:
            qkit.Model(os.path.join(self.tmp, "missing.onnx"))
        self.assertIn("missing.onnx", str(e.exception))
        self.assertEqual(e.exception.status, "QK_ERR_IO")
        x = Data.train_x[:32]
        with self.assertRaises(qkit.Error) as e:
            qkit.ptq(LENET, "tensorrrt", x)
        self.assertIn("tensorrt", str(e.exception))           # lists the valid names
        with self.assertRaises(qkit.Error) as e:
            qkit.ptq(LENET, "tensorrt", x, wbitz=4)
        self.assertIn("wbitz", str(e.exception))
        with self.assertRaises(qkit.Error) as e:
            qkit.ptq(LENET, "tensorrt", x, observer="nope")
        self.assertIn("minmax", str(e.exception))
        with self.assertRaises(qkit.Error) as e:
            qkit.ptq(LENET, "tensorrt", x, wbits=3)             # outside the profile's range
        with self.assertRaises(qkit.Error) as e:
            qkit.ptq(LENET, "tensorrt", x, images=64)           # more than given
        self.assertIn("64", str(e.exception))
        with self.assertRaises(qkit.Error) as e:
            qkit.ptq(LENET, "tensorrt", x, exclude="no_such_node")
        self.assertIn("no_such_node", str(e.exception))
        with self.assertRaises(qkit.Error):
            qkit.ptq(LENET, "tensorrt", iter([]))               # no batches
        with self.assertRaises(TypeError):
            qkit.ptq(LENET, "tensorrt", 42)

    def test_bad_data_shapes(self):
        with self.assertRaises(qkit.Error) as e:
            qkit.ptq(LENET, "tensorrt", np.zeros((8, 1, 32, 32), np.uint8))
        self.assertIn("32", str(e.exception))
        self.assertIn("28", str(e.exception))                   # names both shapes
        with self.assertRaises(qkit.Error) as e:
            qkit.evaluate(LENET, np.zeros((8, 3, 28, 28), np.float32), np.zeros(8, np.int64))
        with self.assertRaises(qkit.Error) as e:
            qkit.evaluate(LENET, Data.test_x[:8], Data.test_y[:7])   # label count
        self.assertIn("labels", str(e.exception))
        with self.assertRaises(qkit.Error):
            qkit.evaluate(LENET, np.zeros((8, 28), np.float32), np.zeros(8, np.int64))
        with self.assertRaises(qkit.Error):
            qkit.evaluate(LENET, np.zeros((8, 1, 28, 28), np.int32), np.zeros(8, np.int64))
        with self.assertRaises(qkit.Error):
            qkit.ptq(LENET, "tensorrt", (np.zeros((4, 1, 28, 28), np.float32), np.zeros((4, 1, 20, 28), np.float32)))

    @unittest.skipUnless(torch is not None, "python3-torch is not installed")
    def test_torch_dataloader(self):
        """A PyTorch model exported with torch.onnx.export, calibrated from a DataLoader."""
        torch.manual_seed(0)
        net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 5)).eval()
        path = os.path.join(self.tmp, "torch.onnx")
        torch.onnx.export(net, torch.randn(1, 3, 16, 16), path, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
        ds = torch.utils.data.TensorDataset(torch.rand(96, 3, 16, 16), torch.randint(0, 5, (96,)))
        loader = torch.utils.data.DataLoader(ds, batch_size=32)
        x = ds.tensors[0][:8]
        with torch.no_grad():
            want = net(x).numpy()
        np.testing.assert_allclose(qkit.Model(path).run(x.numpy()), want, rtol=1e-4, atol=1e-5)
        out = os.path.join(self.tmp, "torch_q.onnx")
        r = qkit.ptq(path, "fbgemm", ((xb.numpy(), yb.numpy()) for xb, yb in loader), out=out, images=64)
        self.assertEqual(r["calib_images"], 64)
        r = qkit.ptq(path, "tensorrt", loader, images=96)           # tensors read through numpy
        self.assertEqual(r["calib_images"], 96)
        e = qkit.evaluate(out, loader, reference=path)              # (x, y) batches: labels too
        self.assertEqual(e["images"], 96)
        self.assertIn("correct", e)
        a = qkit.evaluate(out, x.numpy(), reference=path)
        self.assertGreater(a["cosine"], 0.99)


def main():
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(TestQkit)
    res = unittest.TextTestRunner(stream=sys.stderr, verbosity=1).run(suite)
    failed = len(res.failures) + len(res.errors)
    for t, why in res.skipped:
        print("test_python: skipped %s: %s" % (t.id().split(".")[-1], why))
    print("test_python: %d passed, %d failed" % (res.testsRun - failed - len(res.skipped), failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
