"""qkit from Python: run, quantize, evaluate and export ONNX models with
numpy arrays in and out, over libqkit (ctypes; numpy is the only
dependency). docs/PYTHON.md is the reference.

    import numpy as np, qkit
    m = qkit.Model("models/lenet.onnx")
    logits = m.run(np.zeros((2, 1, 28, 28), np.float32))   # [2, 10]
    r = qkit.ptq("models/lenet.onnx", "tensorrt", calib_images, out="q.onnx")
    print(qkit.evaluate("q.onnx", test_images, test_labels, real=True)["top1"])

Data: float32 arrays are the model's input as they are (what a PyTorch
DataLoader with its transforms yields); uint8 arrays are pixels
normalized as `qkit eval` would (the model's metadata, else the
Fashion-MNIST default); the options mean, std, scale and bgr replace either.
Errors raise qkit.Error with qkit's message.
"""
import ctypes
import json
import os
import threading
import weakref

import numpy as np

from . import _lib
from ._lib import lib

__all__ = ["Error", "Model", "ptq", "evaluate", "export", "backends", "set_threads", "__version__"]

#: Version of the libqkit that was loaded ("MAJOR.MINOR.PATCH").
__version__ = lib.qk_version().decode()

# One pool for the process (qk_pool runs one call at a time: the lock
# serializes the calls that use it; ctypes releases the GIL meanwhile).
_lock = threading.RLock()
_pool = None
_threads = 0


# qk_status values (include/qkit/base.h; frozen)
_STATUS = {1: "QK_ERR_NOMEM", 2: "QK_ERR_IO", 3: "QK_ERR_FORMAT", 4: "QK_ERR_UNSUPPORTED", 5: "QK_ERR_SHAPE",
           6: "QK_ERR_ARG", 7: "QK_ERR_NUMERIC", 8: "QK_ERR_STATE", 9: "QK_ERR_NOTFOUND"}


class Error(Exception):
    """A qkit error: str(e) is qkit's message; e.status is the status name
    ("QK_ERR_SHAPE", ...) and e.code its number when the library raised it,
    both None for errors found on the Python side (array shapes, dtypes)."""

    def __init__(self, message, code=None):
        super().__init__(message)
        self.code = code
        self.status = _STATUS.get(code, "QK_ERR_%d" % code) if code else None


def _check(st):
    if st != 0:
        msg = lib.qk_last_error()
        raise Error(msg.decode(errors="replace") if msg else lib.qk_status_str(st).decode(), st)


def _get_pool():
    global _pool
    if _pool is None:
        p = ctypes.c_void_p()
        _check(lib.qk_pool_create(_threads, ctypes.byref(p)))
        _pool = p
    return _pool


def set_threads(n):
    """Threads for the calls that follow (0: all cores, the default).
    Results do not depend on the thread count."""
    global _pool, _threads
    with _lock:
        if _pool is not None:
            lib.qk_pool_destroy(_pool)
            _pool = None
        _threads = int(n)
        for m in list(Model._live):
            m._replan = True


def _take_json(ptr):
    try:
        return json.loads(ctypes.string_at(ptr.value).decode())
    finally:
        lib.qk_free(ptr)


def backends(details=False):
    """Names of the backend profiles (details=True: a dict per profile with
    summary, arith, wbits/abits ranges and the default recipe: observers,
    cle, bias_correct)."""
    out = ctypes.c_void_p()
    _check(lib.qk_flat_backends(ctypes.byref(out)))
    b = _take_json(out)["backends"]
    return b if details else [x["name"] for x in b]


def _path(model):
    if isinstance(model, Model):
        return model.path
    if isinstance(model, (str, bytes, os.PathLike)):
        return os.fsdecode(model)
    raise TypeError("model must be a path or a qkit.Model, not %s" % type(model).__name__)


_DTYPES = {np.dtype(np.float32): _lib.QK_F32, np.dtype(np.uint8): _lib.QK_U8, np.dtype(np.int8): _lib.QK_I8,
           np.dtype(np.int16): _lib.QK_I16, np.dtype(np.int32): _lib.QK_I32, np.dtype(np.int64): _lib.QK_I64}
_NP = {v: k for k, v in _DTYPES.items()}


def _as_input(x, what):
    a = np.asarray(x)
    if a.dtype == np.bool_:
        a = a.astype(np.uint8)
    elif a.dtype.kind == "f" and a.dtype != np.float32:
        a = a.astype(np.float32)
    if a.dtype not in _DTYPES:
        raise Error("%s: dtype %s is not supported (float32, uint8, int8, int16, int32, int64)" % (what, a.dtype))
    if a.ndim > _lib.MAX_DIMS:
        raise Error("%s: %d dimensions (at most %d)" % (what, a.ndim, _lib.MAX_DIMS))
    return np.ascontiguousarray(a)


class Model:
    """An ONNX model loaded into qkit (float or quantized QDQ).

    run(x) runs it on numpy arrays (any batch when the model's batch is
    dynamic); info() describes it. The model is freed by close() or when
    the object goes away; `with qkit.Model(path) as m:` works too."""

    _live = weakref.WeakSet()

    def __init__(self, path):
        self.path = _path(path)
        self._g = ctypes.c_void_p()
        _check(lib.qk_onnx_load(self.path.encode(), ctypes.byref(self._g)))
        self._replan = False
        self._info = None
        Model._live.add(self)

    def close(self):
        g, self._g = getattr(self, "_g", None), None
        if g and g.value and lib is not None:
            with _lock:
                lib.qk_graph_destroy(g)
        Model._live.discard(self)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _handle(self):
        if not self._g:
            raise Error("model %s is closed" % self.path)
        if self._replan:  # a new pool: reload, the old plan names the old pool
            g = ctypes.c_void_p()
            _check(lib.qk_onnx_load(self.path.encode(), ctypes.byref(g)))
            lib.qk_graph_destroy(self._g)
            self._g, self._replan = g, False
        return self._g

    def info(self):
        """A dict: name, opset, inputs and outputs ([{name, dtype, shape}];
        input dim 0 is None when the batch is dynamic, output shapes are at
        batch 1), nodes, ops ({op_type: count}), params, quantized,
        metadata."""
        if self._info is None:
            out = ctypes.c_void_p()
            with _lock:
                _check(lib.qk_flat_model_info(self._handle(), ctypes.byref(out)))
            info = _take_json(out)
            for v in info["inputs"]:
                v["shape"] = [None if d < 0 else d for d in v["shape"]]
            self._info = info
        return dict(self._info)

    @property
    def inputs(self):
        """Names of the model's inputs, in order."""
        return [v["name"] for v in self.info()["inputs"]]

    @property
    def outputs(self):
        """Names of the model's outputs, in order."""
        return [v["name"] for v in self.info()["outputs"]]

    def run(self, *inputs):
        """Run the model (inference) on numpy arrays given in the order of
        its inputs (or one dict name -> array). Returns one array when the
        model has one output, else a tuple. Float arrays are passed as
        float32; shapes and dtypes are checked against the model (a
        mismatch raises qkit.Error naming the input and both shapes)."""
        if len(inputs) == 1 and isinstance(inputs[0], dict):
            d = inputs[0]
            names = self.inputs
            missing = [k for k in names if k not in d]
            extra = [k for k in d if k not in names]
            if missing or extra:
                raise Error("run: inputs %s expected, got %s" % (names, sorted(d)))
            inputs = [d[k] for k in names]
        arrs = [_as_input(x, "run: input %d" % i) for i, x in enumerate(inputs)]
        n = len(arrs)
        dtypes = (ctypes.c_int * max(n, 1))(*[_DTYPES[a.dtype] for a in arrs])
        ndims = (ctypes.c_int * max(n, 1))(*[a.ndim for a in arrs])
        dims = (ctypes.c_int64 * (max(n, 1) * _lib.MAX_DIMS))()
        for i, a in enumerate(arrs):
            for k, s in enumerate(a.shape):
                dims[i * _lib.MAX_DIMS + k] = s
        data = (ctypes.c_void_p * max(n, 1))(*[a.ctypes.data for a in arrs])
        n_out = ctypes.c_int()
        outs = ctypes.c_void_p()
        with _lock:
            _check(lib.qk_flat_run(self._handle(), n, dtypes, ndims, dims, data, _get_pool(),
                                   ctypes.byref(n_out), ctypes.byref(outs)))
        try:
            res = []
            for i in range(n_out.value):
                dt, nd, ptr = ctypes.c_int(), ctypes.c_int(), ctypes.c_void_p()
                od = (ctypes.c_int64 * _lib.MAX_DIMS)()
                _check(lib.qk_flat_tensor_get(outs, i, ctypes.byref(dt), ctypes.byref(nd), od, ctypes.byref(ptr)))
                a = np.empty(tuple(od[:nd.value]), _NP[dt.value])
                if a.nbytes:
                    ctypes.memmove(a.ctypes.data, ptr.value, a.nbytes)
                res.append(a)
        finally:
            lib.qk_onnx_free_tensors(outs, n_out.value)
        return res[0] if len(res) == 1 else tuple(res)

    __call__ = run


class _Opts:
    """qk_flat_opts from keyword arguments (flat.h lists the keys)."""

    def __init__(self, options):
        self.h = ctypes.c_void_p()
        _check(lib.qk_flat_opts_create(ctypes.byref(self.h)))
        try:
            for k, v in options.items():
                if v is None:
                    continue
                if k == "exclude" and not isinstance(v, str):
                    for node in v:
                        self.set(k, node)
                elif isinstance(v, (list, tuple, np.ndarray)):
                    self.set(k, ",".join(repr(float(x)) for x in v))
                else:
                    self.set(k, v)
        except BaseException:
            self.close()
            raise

    def set(self, k, v):
        if isinstance(v, bool):
            v = "1" if v else "0"
        _check(lib.qk_flat_opts_set(self.h, str(k).encode(), os.fsdecode(v).encode() if isinstance(v, os.PathLike)
                                    else str(v).encode()))

    def close(self):
        if self.h:
            lib.qk_flat_opts_destroy(self.h)
            self.h = None


def _is_array(x):
    return isinstance(x, np.ndarray) or hasattr(x, "__array__") or hasattr(x, "__array_interface__")


def _gather(data, limit, what):
    """An array, or the batches of an iterable concatenated (at most limit
    images; a batch may be a tuple (x, y, ...): x is taken, and y is
    gathered as labels when present). Returns (x, y or None)."""
    if _is_array(data):
        return np.asarray(data), None
    xs, ys, n = [], [], 0
    try:
        it = iter(data)
    except TypeError:
        raise TypeError("%s must be a numpy array or an iterable of numpy batches, not %s"
                        % (what, type(data).__name__)) from None
    for b in it:
        y = None
        if isinstance(b, (tuple, list)):
            if not b:
                continue
            b, y = b[0], (b[1] if len(b) > 1 else None)
        b = np.asarray(b)
        if b.ndim == 0:
            raise Error("%s: a batch is a scalar; batches are arrays [N, C, H, W]" % what)
        xs.append(b)
        if y is not None:
            ys.append(np.asarray(y).reshape(-1))
        n += b.shape[0]
        if limit and n >= limit:
            break
    if not xs:
        raise Error("%s: the iterable gave no batches" % what)
    shapes = {x.shape[1:] for x in xs}
    if len(shapes) > 1:
        raise Error("%s: batches of different image shapes %s" % (what, sorted(shapes)))
    x = np.concatenate(xs)
    y = np.concatenate(ys) if len(ys) == len(xs) else None
    return x, y


class _Data:
    """A qk_dataset from numpy arrays: x [N, C, H, W] (layout "NCHW") or
    [N, H, W, C] ("NHWC") or [N, H, W], uint8 pixels or float values;
    y: N integer labels >= 0 or None."""

    def __init__(self, x, y, layout, what):
        self.h = None
        a = np.asarray(x)
        lay = str(layout).upper()
        if lay not in ("NCHW", "NHWC"):
            raise Error("%s: layout must be NCHW or NHWC (got %r)" % (what, layout))
        if a.ndim == 3:
            a = a[:, None] if lay == "NCHW" else a[..., None]
        if a.ndim != 4:
            raise Error("%s: images must be [N, C, H, W] (or %s with layout=%r), got shape %s"
                        % (what, "[N, H, W, C]", "NHWC", list(np.shape(x))))
        if a.dtype.kind == "f":
            dt, a = _lib.QK_F32, np.ascontiguousarray(a, np.float32)
        elif a.dtype == np.uint8:
            dt, a = _lib.QK_U8, np.ascontiguousarray(a)
        else:
            raise Error("%s: images must be uint8 pixels or float values, not %s" % (what, a.dtype))
        n = a.shape[0]
        c, h, w = (a.shape[1], a.shape[2], a.shape[3]) if lay == "NCHW" else (a.shape[3], a.shape[1], a.shape[2])
        lab = None
        if y is not None:
            yy = np.asarray(y)
            if yy.dtype.kind not in "iu" or yy.ndim != 1 or yy.shape[0] != n:
                raise Error("%s: labels must be %d integers [N], got %s %s" % (what, n, yy.dtype, list(yy.shape)))
            lab = np.ascontiguousarray(yy, np.int64)
        self._keep = (a, lab)
        h_ = ctypes.c_void_p()
        _check(lib.qk_flat_data_create(dt, n, c, h, w, a.ctypes.data, int(lay == "NHWC"),
                                       lab.ctypes.data if lab is not None else None, ctypes.byref(h_)))
        self.h = h_
        self.n = n

    def close(self):
        if self.h:
            lib.qk_flat_data_destroy(self.h)
            self.h = None


def ptq(model, backend, calib, out=None, data=None, labels=None, layout="NCHW", **options):
    """Post-training quantization of a float ONNX model for a backend
    profile (qkit.backends()).

    model: path or qkit.Model. calib: images [N, C, H, W] as a numpy array,
    or any iterable of numpy batches (a PyTorch DataLoader: x or (x, y)
    batches; tensors are read through numpy), read up to `images`
    (default 512). out: where to write the QDQ ONNX model (None: not
    written). data / labels: optional test images (array or iterable) and
    labels: the result then has fp32_top1, top1 and delta, or without labels
    the agreement with the float model. options: wbits, abits, observer,
    w_observer, first_last_bits, reduce_range, per_tensor, bias_correct,
    bit_alloc, exclude (a node name or a list), images, cle, cle_relu6,
    recon, recon_iters, recon_batch, no_fp32, mean, std, scale, bgr, batch.
    cle and bias_correct not given (None): the profile's default recipe.
    Returns a dict of the resolved configuration and the figures."""
    path = _path(model)
    limit = int(options.get("images") or 512)
    cx, _ = _gather(calib, limit, "calib")
    cx = cx[:limit]
    opts = _Opts(dict(options, backend=backend))
    cd = ed = None
    res = ctypes.c_void_p()
    try:
        cd = _Data(cx, None, layout, "calib")
        if data is not None:
            ex, ey = _gather(data, 0, "data")
            ed = _Data(ex, labels if labels is not None else ey, layout, "data")
        with _lock:
            _check(lib.qk_flat_ptq(path.encode(), cd.h, ed.h if ed else None, opts.h,
                                   os.fsdecode(out).encode() if out is not None else None, _get_pool(),
                                   ctypes.byref(res)))
    finally:
        opts.close()
        if cd:
            cd.close()
        if ed:
            ed.close()
    return _take_json(res)


def evaluate(model, x, y=None, real=False, reference=None, layout="NCHW", **options):
    """Evaluate a model on images x (array [N, C, H, W] or an iterable of
    batches, as ptq's calib) with labels y: {"top1", "correct", "images",
    "loss", "images_per_s"}. real=True runs a quantized (QDQ) model on the
    integer engine ("arith", "int_layers", "float_layers" added). Without
    labels: agreement {"top1_agree", "top5_agree", "sqnr_db", "cosine"} with
    `reference` (a float model's path), or with real=True of the integer
    engine with the QDQ model in float. options: batch, arith, mean, std,
    scale, bgr."""
    ex, ey = _gather(x, 0, "x")
    opts = _Opts(dict(options, real=bool(real), reference=_path(reference) if reference is not None else None))
    own = not isinstance(model, Model)
    m = Model(model) if own else model
    d = None
    res = ctypes.c_void_p()
    try:
        d = _Data(ex, y if y is not None else ey, layout, "x")
        with _lock:
            _check(lib.qk_flat_evaluate(m._handle(), d.h, opts.h, _get_pool(), ctypes.byref(res)))
    finally:
        opts.close()
        if d:
            d.close()
        if own:
            m.close()
    return _take_json(res)


def export(model, backend, out_dir):
    """Write the deploy files of a QDQ model (as `qkit export`): backend
    None uses the model's own ("qkit.backend" metadata). Returns {"backend",
    "out", "files", "weights", "activations", "bias", "qlinear_layers"}."""
    res = ctypes.c_void_p()
    with _lock:
        _check(lib.qk_flat_export(_path(model).encode(), backend.encode() if backend else None,
                                  os.fsdecode(out_dir).encode(), ctypes.byref(res)))
    return _take_json(res)
