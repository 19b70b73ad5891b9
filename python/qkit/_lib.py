"""Loading libqkit and the prototypes of its flat API (include/qkit/flat.h).

Only opaque handles, scalars, strings and flat arrays cross this boundary;
no C struct is mirrored here. The library is found, in order, at
$QKIT_LIB (a path to libqkit.so), in the build tree the package sits in
(python/qkit -> build/libqkit.so), next to an installed package
(PREFIX/lib/python3.X/dist-packages/qkit -> PREFIX/lib/libqkit.so.0), and
by the dynamic linker's search (libqkit.so.0).
"""
import ctypes
import os

_here = os.path.dirname(os.path.abspath(__file__))

# The library's ABI major version (SONAME libqkit.so.MAJOR) this package speaks.
ABI_MAJOR = 0


def _candidates():
    env = os.environ.get("QKIT_LIB")
    if env:
        return [env]
    build = os.environ.get("QKIT_BUILD", "build")
    return [
        os.path.join(_here, "..", "..", build, "libqkit.so"),
        os.path.join(_here, "..", "..", "..", "libqkit.so.%d" % ABI_MAJOR),
        "libqkit.so.%d" % ABI_MAJOR,
    ]


def _load():
    tried = []
    for path in _candidates():
        if os.sep in path and not os.path.exists(path):
            tried.append(path + " (missing)")
            continue
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            tried.append("%s (%s)" % (path, e))
    raise ImportError("qkit: cannot load libqkit: tried " + "; ".join(tried) +
                      ". Build it with `make`, or set QKIT_LIB to the path of libqkit.so")


lib = _load()

c_int, c_int64, c_char_p, c_void_p = ctypes.c_int, ctypes.c_int64, ctypes.c_char_p, ctypes.c_void_p
P = ctypes.POINTER

_protos = {
    # base, version
    "qk_version": (c_char_p, []),
    "qk_version_number": (c_int, []),
    "qk_last_error": (c_char_p, []),
    "qk_status_str": (c_char_p, [c_int]),
    "qk_free": (None, [c_void_p]),
    "qk_pool_create": (c_int, [c_int, P(c_void_p)]),
    "qk_pool_destroy": (None, [c_void_p]),
    "qk_pool_threads": (c_int, [c_void_p]),
    # models
    "qk_onnx_load": (c_int, [c_char_p, P(c_void_p)]),
    "qk_graph_destroy": (None, [c_void_p]),
    "qk_onnx_free_tensors": (None, [c_void_p, c_int]),
    # flat API
    "qk_flat_opts_create": (c_int, [P(c_void_p)]),
    "qk_flat_opts_destroy": (None, [c_void_p]),
    "qk_flat_opts_set": (c_int, [c_void_p, c_char_p, c_char_p]),
    "qk_flat_data_create": (c_int, [c_int, c_int64, c_int, c_int, c_int, c_void_p, c_int, c_void_p,
                                    P(c_void_p)]),
    "qk_flat_data_destroy": (None, [c_void_p]),
    "qk_flat_run": (c_int, [c_void_p, c_int, P(c_int), P(c_int), P(c_int64), P(c_void_p), c_void_p,
                            P(c_int), P(c_void_p)]),
    "qk_flat_tensor_get": (c_int, [c_void_p, c_int, P(c_int), P(c_int), P(c_int64), P(c_void_p)]),
    "qk_flat_model_info": (c_int, [c_void_p, P(c_void_p)]),
    "qk_flat_ptq": (c_int, [c_char_p, c_void_p, c_void_p, c_void_p, c_char_p, c_void_p, P(c_void_p)]),
    "qk_flat_evaluate": (c_int, [c_void_p, c_void_p, c_void_p, c_void_p, P(c_void_p)]),
    "qk_flat_export": (c_int, [c_char_p, c_char_p, c_char_p, P(c_void_p)]),
    "qk_flat_backends": (c_int, [P(c_void_p)]),
}

for _name, (_res, _args) in _protos.items():
    _f = getattr(lib, _name)
    _f.restype = _res
    _f.argtypes = _args

if lib.qk_version_number() // 10000 != ABI_MAJOR:
    raise ImportError("qkit: libqkit %s has another ABI than this package (major %d)"
                      % (lib.qk_version().decode(), ABI_MAJOR))

# qk_dtype values (include/qkit/tensor.h; ONNX TensorProto.DataType, frozen)
QK_F32, QK_U8, QK_I8, QK_I16, QK_I32, QK_I64 = 1, 2, 3, 5, 6, 7
MAX_DIMS = 8  # QK_MAX_DIMS
