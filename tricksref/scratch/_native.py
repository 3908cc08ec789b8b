"""The fused CPU kernels of the from-scratch batch norm, dropout and LRN (``_kernels.c``), built, cached and
loaded by the machinery every tricksref kernel shares (:mod:`tricksref._native_build`: the switch
``TRICKSREF_NATIVE=0``, the compiler, the per-user cache and its checks, one warning on failure).

Here: the ctypes signatures, and :func:`usable`, which says whether a tensor can go to the kernel.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch

from .. import _native_build
from .._native_build import ENV_SWITCH, enabled

__all__ = ["ENV_SWITCH", "KERNEL", "enabled", "library", "build", "usable", "threads_for"]

SOURCE = Path(__file__).with_name("_kernels.c")
#: must match TR_ABI_VERSION in _kernels.c
ABI_VERSION = 2
#: values per thread at least: below this a thread costs more than it saves
GRAIN = 1 << 15


def _declare(lib: ctypes.CDLL) -> None:
    i64, u64, ptr, c_int = ctypes.c_int64, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_int
    lib.tr_bn_forward.restype = c_int
    lib.tr_bn_forward.argtypes = [ptr, ptr, i64, i64, i64, ptr, ptr, c_int, ptr, ptr, ctypes.c_double,
                                  ptr, ptr, ptr, i64]
    lib.tr_bn_backward.restype = c_int
    lib.tr_bn_backward.argtypes = [ptr, ptr, ptr, i64, i64, i64, ptr, ptr, ptr, c_int, ptr, ptr, i64]
    lib.tr_dropout.restype = c_int
    lib.tr_dropout.argtypes = [ptr, ptr, ptr, i64, u64, u64, c_int, ctypes.c_float, i64]
    lib.tr_apply_mask.restype = c_int
    lib.tr_apply_mask.argtypes = [ptr, ptr, ptr, i64, ctypes.c_float, i64]
    f32 = ctypes.c_float
    lib.tr_lrn_forward.restype = c_int
    lib.tr_lrn_forward.argtypes = [ptr, ptr, i64, i64, i64, i64, i64, f32, f32, f32, c_int, i64]
    lib.tr_lrn_backward.restype = c_int
    lib.tr_lrn_backward.argtypes = [ptr, ptr, ptr, i64, i64, i64, i64, i64, f32, f32, f32, c_int, i64]


KERNEL = _native_build.NativeLibrary(
    "scratch", SOURCE, ABI_VERSION, _declare,
    what="tricksref: the native batch-norm, dropout and LRN kernel",
    fallback="batch norm, dropout and LRN use their torch paths")


def build(directory: Path | None = None, compiler: list[str] | None = None) -> tuple[ctypes.CDLL, Path]:
    """Build (or find in the cache) and load the kernel; see :meth:`NativeLibrary.build`."""
    return KERNEL.build(directory, compiler)


def library() -> ctypes.CDLL | None:
    """The loaded kernel, built on the first call of the process; None (after one warning) if that failed."""
    return KERNEL.library()


def _plain(t: torch.Tensor) -> bool:
    """A real tensor: not wrapped by a torch.func transform, not a fake tensor of torch.compile."""
    return not torch._C._functorch.is_functorch_wrapped_tensor(t) and not torch.compiler.is_compiling()


def usable(*tensors: torch.Tensor | None) -> bool:
    """Whether the kernel may run on these tensors: switch on, all float32, contiguous, on the CPU, plain,
    and the kernel built."""
    ts = [t for t in tensors if t is not None]
    return (enabled() and all(t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous()
                              and _plain(t) for t in ts)
            and library() is not None)


def threads_for(n: int) -> int:
    """torch's intra-op thread count, fewer for small tensors."""
    return max(1, min(torch.get_num_threads(), n // GRAIN))


def ptr(t: torch.Tensor | None):
    """The data pointer of a tensor, or None (a NULL pointer) for no tensor."""
    return None if t is None else t.data_ptr()
