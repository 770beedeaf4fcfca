"""Values between the judge and the runner as data only: msgpack, with NumPy arrays and torch
tensors as (dtype, shape, bytes). Decoding builds nothing but None, bool, int, float, complex, str,
bytes, list, tuple, dict, set, NumPy arrays and scalars, torch tensors and dtypes, and `Remote`
markers: no pickle, no eval, no code. Anything else a runner holds (a model, a student's class)
travels as a `Remote` marker with its type's name.
"""
import os

import msgpack
import numpy as np

LIMIT = 256 * 2**20  # bytes in one message
_TUPLE, _ARRAY, _SCALAR, _TENSOR, _REMOTE, _COMPLEX, _SET, _TORCH_DTYPE, _NP_DTYPE, _IMPORT = range(1, 11)
DTYPES = {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16",
          "float32", "float64", "complex64", "complex128"}


class Remote:
    """A value that stays in the student's process (it is not data): usable inside `with student:`."""

    __slots__ = ("name", "kind")

    def __init__(self, kind, name=None):
        self.name, self.kind = name, kind

    def __getattr__(self, attr):
        raise TypeError(f"{self.name or 'this value'} is a {self.kind} that lives in the student's process: "
                        f"use it inside `with student:` and assign what the test checks (arrays, numbers)")

    def __repr__(self):
        return f"<{self.kind} in the student's process>"


class Import:
    """A module, or a class or function of an installed library, sent by name: the runner imports it.
    Only the judge sends these; the judge refuses them in what the runner sends back."""

    __slots__ = ("module", "qualname")

    def __init__(self, module, qualname=""):
        self.module, self.qualname = module, qualname

    @classmethod
    def of(cls, value):
        """An Import for a module or for a library's class or function, or None."""
        import importlib
        import types
        if isinstance(value, types.ModuleType):
            return cls(value.__name__)
        module, qualname = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
        if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
            return None
        try:
            found = importlib.import_module(module)
            for part in qualname.split("."):
                found = getattr(found, part)
        except Exception:
            return None
        return cls(module, qualname) if found is value else None

    def load(self):
        import importlib
        found = importlib.import_module(self.module)
        for part in filter(None, self.qualname.split(".")):
            found = getattr(found, part)
        return found


def _torch():
    import sys
    return sys.modules.get("torch")


def _pack(value, strict=False):
    return msgpack.packb(value, default=_strict if strict else _default, strict_types=True, use_bin_type=True)


class NotData(TypeError):
    pass


def _strict(value):
    packed = _default(value, strict=True)
    return packed


def _array(array):
    if array.dtype.name not in DTYPES:
        raise NotData(f"arrays of dtype {array.dtype} are not data")
    return [array.dtype.name, list(array.shape), array.tobytes(order="C")]


def _default(value, strict=False):
    kind = type(value)
    if isinstance(value, tuple):
        return msgpack.ExtType(_TUPLE, _pack(list(value), strict))
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, (set, frozenset)):
        return msgpack.ExtType(_SET, _pack(list(value), strict))
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, complex):
        return msgpack.ExtType(_COMPLEX, _pack([value.real, value.imag]))
    if isinstance(value, np.ndarray):
        return msgpack.ExtType(_ARRAY, _pack(_array(value)))
    if isinstance(value, np.generic) and value.dtype.name in DTYPES:
        return msgpack.ExtType(_SCALAR, _pack(_array(np.asarray(value))))
    if isinstance(value, np.dtype):
        return msgpack.ExtType(_NP_DTYPE, _pack(value.name))
    torch = _torch()
    if torch is not None:
        if isinstance(value, torch.Tensor) and value.layout == torch.strided and not value.is_meta:
            return msgpack.ExtType(_TENSOR, _pack(_tensor(value)))
        if isinstance(value, torch.dtype):
            return msgpack.ExtType(_TORCH_DTYPE, _pack(str(value).removeprefix("torch.")))
        if isinstance(value, torch.Size):
            return msgpack.ExtType(_TUPLE, _pack(list(value)))
    if kind is Import:
        return msgpack.ExtType(_IMPORT, _pack([value.module, value.qualname]))
    if kind is Remote:
        return msgpack.ExtType(_REMOTE, _pack(str(value.kind)))
    name = getattr(kind, "__name__", "object")
    if strict:
        raise NotData(f"a {name} is not data")
    return msgpack.ExtType(_REMOTE, _pack(str(name) if isinstance(name, str) else "object"))


def _tensor(value):
    torch = _torch()
    data = value.detach().cpu()
    dtype = str(data.dtype).removeprefix("torch.")
    if data.dtype == torch.bfloat16:
        data = data.view(torch.int16)
    grad = value.grad if value.is_leaf and value.requires_grad else None
    return [dtype, _array(data.numpy()), bool(value.requires_grad), None if grad is None else _tensor(grad)]


def encode(value, strict=False):
    """Bytes for a value. What is not data becomes a Remote marker, or with `strict` raises NotData."""
    return _pack(value, strict)


def _ext(code, data):
    if code == _TUPLE:
        return tuple(_unpack(data))
    if code == _SET:
        return set(_unpack(data))
    if code == _COMPLEX:
        real, imag = _unpack(data)
        return complex(float(real), float(imag))
    if code == _ARRAY:
        return _decode_array(_unpack(data))
    if code == _SCALAR:
        return _decode_array(_unpack(data))[()]
    if code == _NP_DTYPE:
        name = _unpack(data)
        if name not in DTYPES:
            raise ValueError(f"unknown dtype {name!r}")
        return np.dtype(name)
    if code == _TENSOR:
        return _decode_tensor(_unpack(data))
    if code == _TORCH_DTYPE:
        import torch
        name = _unpack(data)
        dtype = getattr(torch, name, None) if isinstance(name, str) and name.isidentifier() else None
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"unknown torch dtype {name!r}")
        return dtype
    if code == _IMPORT:
        if not _imports:
            raise ValueError("an import where only data may be")
        module, qualname = _unpack(data)
        return Import(str(module), str(qualname)).load()
    if code == _REMOTE:
        name = _unpack(data)
        return Remote(name if isinstance(name, str) else "object")
    raise ValueError(f"unknown extension type {code}")


def _decode_array(parts):
    dtype, shape, raw = parts
    if dtype not in DTYPES or not isinstance(raw, bytes) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise ValueError("malformed array")
    dtype = np.dtype(dtype)
    if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != len(raw):
        raise ValueError("array size does not match its shape")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def _decode_tensor(parts):
    import torch
    dtype, array, requires_grad, grad = parts
    name = str(dtype)
    target = getattr(torch, name, None) if name.isidentifier() else None
    if not isinstance(target, torch.dtype):
        raise ValueError(f"unknown torch dtype {name!r}")
    tensor = torch.from_numpy(_decode_array(array))
    tensor = tensor.view(target) if target == torch.bfloat16 else tensor.to(target)
    if requires_grad is True and (tensor.is_floating_point() or tensor.is_complex()):
        tensor.requires_grad_(True)
        if grad is not None:
            tensor.grad = _decode_tensor(grad)
    return tensor


def _unpack(data):
    return msgpack.unpackb(data, ext_hook=_ext, raw=False, strict_map_key=False, use_list=True)


_imports = False


def decode(data, imports=False):
    """The value in bytes from `encode` (raises ValueError on anything malformed). With `imports`
    (the runner, decoding what the judge sent), Import markers are imported."""
    global _imports
    if not isinstance(data, (bytes, bytearray)) or len(data) > LIMIT:
        raise ValueError("not a message")
    _imports = imports
    try:
        return _unpack(data)
    except (ValueError, TypeError, KeyError, IndexError, msgpack.ExtraData, msgpack.FormatError,
            msgpack.StackError, RecursionError, OverflowError) as exc:
        raise ValueError(f"malformed data: {type(exc).__name__}") from None
    finally:
        _imports = False


def frames(fd):
    """Length-prefixed frames read from fd."""
    buffer = b""
    while True:
        while len(buffer) < 4 or len(buffer) < 4 + int.from_bytes(buffer[:4], "big"):
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return
            buffer += chunk
        size = int.from_bytes(buffer[:4], "big")
        yield buffer[4:4 + size]
        buffer = buffer[4 + size:]


def send(fd, data):
    view = memoryview(len(data).to_bytes(4, "big") + data)
    while view:
        view = view[os.write(fd, view):]
