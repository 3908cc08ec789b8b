"""The fused colour kernel (``_jitter.c``): built on first use with the system C compiler, cached, loaded
with ctypes, by the machinery every tricksref kernel shares (:mod:`tricksref._native_build`: the switch
``TRICKSREF_NATIVE=0``, the compiler, the per-user cache and its checks, one warning on failure).

What is particular to the colour ops is here: the ctypes signature of ``tr_color_ops``, when the kernel runs
(:func:`available`) and how its arguments are laid out (:func:`run`).
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch

from .. import _native_build
from .._native_build import ENV_SWITCH, enabled

__all__ = ["ENV_SWITCH", "KERNEL", "enabled", "library", "run", "build", "available"]

SOURCE = Path(__file__).with_name("_jitter.c")
#: must match TR_ABI_VERSION in _jitter.c
ABI_VERSION = 1


def _declare(lib: ctypes.CDLL) -> None:
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    lib.tr_color_ops.restype = ctypes.c_int
    lib.tr_color_ops.argtypes = [ptr, ptr, ctypes.c_int, i64, i64, i64, ptr, i64, i64,
                                 ptr, ptr, ptr, ptr, i64]


KERNEL = _native_build.NativeLibrary(
    "jitter", SOURCE, ABI_VERSION, _declare, what="tricksref.augment: the native colour kernel",
    fallback="the colour ops use the torch path")
#: the outcome of the first build of this process (the library, whether it was tried, the error, the path)
_state = KERNEL.state


def build(directory: Path | None = None, compiler: list[str] | None = None) -> tuple[ctypes.CDLL, Path]:
    """Build (or find in the cache) and load the kernel; see :meth:`NativeLibrary.build`."""
    return KERNEL.build(directory, compiler)


def library() -> ctypes.CDLL | None:
    """The loaded kernel, built on the first call of the process; None (after one warning) if that failed."""
    return KERNEL.library()


def available(x: torch.Tensor) -> bool:
    """Whether the kernel runs on ``x``: switch on, CPU, float32/uint8 (float16/bfloat16 through float32),
    and the kernel built. (The callers have refused a tensor that requires grad.)"""
    return (enabled() and x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.uint8, torch.float16, torch.bfloat16)
            and library() is not None)


#: images per thread at least, in values (C H W per image): below this a thread costs more than it saves
GRAIN = 1 << 16


def run(x: torch.Tensor, order: torch.Tensor | None, op: int | None, factors, threads: int | None = None
        ) -> torch.Tensor:
    """Apply the colour ops with the kernel; return a new contiguous tensor in x's dtype.

    ``order`` (B, R) int64 gives each image's ops (ColorJitter), or ``op`` one op for every image (the
    functional ops); ``factors`` four (B,) tensors or None (brightness, contrast, saturation, hue), None
    meaning the op is off. ``threads`` defaults to torch's intra-op thread count, fewer on small batches.
    """
    if x.dtype in (torch.float16, torch.bfloat16):  # as the torch path: float32 arithmetic, cast back
        return _run(x.float(), order, op, factors, threads).to(x.dtype)
    return _run(x, order, op, factors, threads)


def _run(x: torch.Tensor, order: torch.Tensor | None, op: int | None, factors, threads: int | None
         ) -> torch.Tensor:
    """:func:`run` on a float32 or uint8 tensor."""
    dtype = x.dtype
    x = x.contiguous()
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    batch, channels, height, width = x.shape
    if x.numel() == 0:
        return out
    if order is None:
        order = torch.tensor([op], dtype=torch.int64)
        stride = 0
    else:
        order = order.to(dtype=torch.int64, device="cpu").contiguous()
        stride = order.shape[1]
    fs = [None if f is None else f.to(dtype=torch.float32, device="cpu").contiguous() for f in factors]
    if threads is None:
        threads = min(torch.get_num_threads(), max(1, x.numel() // GRAIN))
    status = library().tr_color_ops(
        x.data_ptr(), out.data_ptr(), int(dtype == torch.uint8), batch, channels, height * width,
        order.data_ptr(), stride, order.shape[-1], *(None if f is None else f.data_ptr() for f in fs),
        threads)
    if status:
        raise MemoryError("tricksref.augment: the native colour kernel could not allocate its image buffer")
    return out
