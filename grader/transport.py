"""Data, not objects: what crosses between the grader and a student's process.

A message is a tree of plain values: ``None``, ``bool``, ``int``, ``float``, ``str``, numpy arrays and torch
tensors (any dtype torch has, bfloat16 included), lists, tuples and dicts with string keys. ``encode`` writes
it as a JSON manifest for the tree (with each array's dtype, shape and place) followed by the arrays' raw
bytes. ``decode`` reads it back without pickle: the manifest is JSON, dtypes come from an allow-list, every
array's place and size are checked against the message, so no bytes from a student's process can ever become
code or an object of the student's choosing in the grader: a tensor comes back as a plain ``torch.Tensor`` on
the CPU, whatever class the student returned.

Wire format (version 1): ``b"GRT1"``, the manifest's length (4 bytes, little-endian), the manifest (UTF-8
JSON: ``{"tree": ..., "arrays": [[dtype, shape, offset, nbytes], ...]}``, at most ``MAX_MANIFEST_BYTES``,
checked before it is parsed), then the array bytes. (It replaced an ``.npz`` archive, which cost about 0.25 ms
per array to read; that format is no longer read: nothing should parse more than it must from a student.)
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np
import torch

__all__ = ["encode", "decode", "TransportError", "MAX_MESSAGE_BYTES", "MAX_MANIFEST_BYTES"]

#: a decoded message may not hold more than this many bytes of arrays (a student could send a zip bomb)
MAX_MESSAGE_BYTES = 512 * 2**20
#: nor a manifest (the JSON tree) longer than this: checked before it is parsed, so that a reply cannot make
#: the grader parse tens of MiB of JSON (a probe's reply has a few KiB of manifest)
MAX_MANIFEST_BYTES = 2**20
_MAX_DEPTH = 32
_MAX_LEAVES = 100_000

# torch dtypes numpy cannot hold are sent as raw bits of the same width
_BITS = {torch.bfloat16: torch.int16, torch.float8_e4m3fn: torch.int8, torch.float8_e5m2: torch.int8}
_BY_NAME = {str(d).removeprefix("torch."): d for d in
            (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int8, torch.int16,
             torch.int32, torch.int64, torch.uint8, torch.bool, torch.complex64, torch.complex128,
             torch.float8_e4m3fn, torch.float8_e5m2)}


_MAGIC = b"GRT1"
# numpy dtype kinds a message may carry: bool, signed/unsigned int, float, complex, bytes, unicode, datetimes
_KINDS = frozenset("?biufcSUMm")


class TransportError(ValueError):
    """A message is not plain data, or is malformed or too large."""


def encode(value: Any) -> bytes:
    """Serialize a tree of plain values (see module doc) to bytes; raise TransportError on anything else."""
    arrays: dict[str, np.ndarray] = {}

    def walk(v, depth):
        if depth > _MAX_DEPTH:
            raise TransportError("message nested too deeply")
        if v is None or isinstance(v, (bool, str)):
            return {"v": v}
        if isinstance(v, (int, np.integer)):
            return {"i": str(int(v))}  # as text: JSON loses ints above 2**53
        if isinstance(v, (float, np.floating)):
            f = float(v)
            return {"f": f if math.isfinite(f) else repr(f)}
        if isinstance(v, torch.Tensor):
            t = torch.Tensor.detach(v).cpu().contiguous()
            if t.dtype not in _BY_NAME.values():
                raise TransportError(f"tensor dtype {t.dtype} cannot be sent")
            raw = t.view(_BITS[t.dtype]) if t.dtype in _BITS else t
            key = f"a{len(arrays)}"
            arrays[key] = raw.numpy()
            return {"t": key, "dtype": str(t.dtype).removeprefix("torch.")}
        if isinstance(v, np.ndarray):
            if v.dtype.hasobject:
                raise TransportError("arrays of Python objects cannot be sent")
            key = f"a{len(arrays)}"
            arrays[key] = v
            return {"n": key}
        if isinstance(v, (list, tuple)):
            return {"l" if isinstance(v, list) else "u": [walk(x, depth + 1) for x in v]}
        if isinstance(v, dict):
            if not all(isinstance(k, str) for k in v):
                raise TransportError("dict keys must be strings")
            return {"d": {k: walk(x, depth + 1) for k, x in v.items()}}
        raise TransportError(f"a value of type {type(v).__name__} is not plain data")

    tree = walk(value, 0)
    table, chunks, offset = [], [], 0
    for key in arrays:  # keys are a0, a1, ... in order
        a = arrays[key]
        if a.dtype.kind not in _KINDS:
            raise TransportError(f"arrays of dtype {a.dtype} cannot be sent")
        data = a.tobytes(order="C")  # (np.ascontiguousarray would turn a 0-d array into 1-d)
        table.append([a.dtype.str, list(a.shape), offset, len(data)])
        chunks.append(data)
        offset += len(data)
    manifest = json.dumps({"tree": tree, "arrays": table}).encode()
    return b"".join([_MAGIC, struct.pack("<I", len(manifest)), manifest, *chunks])


def _read(data: bytes, max_bytes: int) -> tuple[dict, dict[str, np.ndarray]]:
    """The manifest tree and the arrays of a version-1 message, every size and place checked."""
    try:
        (length,) = struct.unpack_from("<I", data, len(_MAGIC))
        start = len(_MAGIC) + 4
        if length > MAX_MANIFEST_BYTES:
            raise TransportError(f"message manifest of {length} bytes, more than {MAX_MANIFEST_BYTES}")
        if start + length > len(data):
            raise TransportError("malformed message: truncated manifest")
        manifest = json.loads(data[start:start + length].decode())
        tree, table = manifest["tree"], manifest["arrays"]
        if not isinstance(table, list):
            raise TransportError("malformed message")
        body = memoryview(data)[start + length:]
        if len(body) > max_bytes:
            raise TransportError(f"message larger than {max_bytes} bytes")
        arrays = {}
        for i, entry in enumerate(table):
            dtype_str, shape, offset, nbytes = entry
            dtype = np.dtype(str(dtype_str))
            if dtype.kind not in _KINDS or dtype.hasobject:
                raise TransportError(f"malformed message: dtype {dtype_str!r} not allowed")
            if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
                raise TransportError("malformed message: bad shape")
            count = math.prod(shape)
            if (not isinstance(offset, int) or not isinstance(nbytes, int) or offset < 0
                    or nbytes != count * dtype.itemsize or offset + nbytes > len(body)):
                raise TransportError("malformed message: array out of bounds")
            flat = np.frombuffer(body, dtype=dtype, count=count, offset=offset)
            arrays[f"a{i}"] = flat.reshape(shape).copy()
        return tree, arrays
    except TransportError:
        raise
    except Exception as exc:  # JSON, struct, dtype or shape errors
        raise TransportError(f"malformed message: {type(exc).__name__}: {exc}") from None


def decode(data: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> Any:
    """Inverse of ``encode``. Never unpickles; rejects messages whose arrays exceed ``max_bytes``."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TransportError(f"malformed message: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if data[:len(_MAGIC)] != _MAGIC:
        raise TransportError("malformed message: not a grader message (no GRT1 header)")
    manifest, arrays = _read(data, max_bytes)
    leaves = 0

    def build(node, depth):
        nonlocal leaves
        leaves += 1
        if depth > _MAX_DEPTH or leaves > _MAX_LEAVES or not isinstance(node, dict) or len(node) < 1:
            raise TransportError("malformed message")
        tag = next(iter(node))
        body = node[tag]
        if tag == "v":
            if body is not None and not isinstance(body, (bool, str)):
                raise TransportError("malformed message")
            return body
        if tag == "i":
            return int(body)
        if tag == "f":
            return float(body)
        if tag == "t":
            dtype = _BY_NAME.get(node.get("dtype"))
            if dtype is None or body not in arrays:
                raise TransportError("malformed tensor in message")
            t = torch.from_numpy(np.array(arrays[body]))
            return t.view(dtype) if dtype in _BITS else t.to(dtype)
        if tag == "n":
            if body not in arrays:
                raise TransportError("malformed array in message")
            return np.array(arrays[body])
        if tag in ("l", "u"):
            items = [build(x, depth + 1) for x in body]
            return items if tag == "l" else tuple(items)
        if tag == "d":
            return {str(k): build(x, depth + 1) for k, x in body.items()}
        raise TransportError(f"unknown tag {tag!r} in message")

    return build(manifest, 0)
