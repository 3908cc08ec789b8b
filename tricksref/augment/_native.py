"""The fused colour kernel (``_jitter.c``): built on first use with the system C compiler, cached, loaded
with ctypes.

Why a plain C file: the kernel needs no Python C-API and no torch headers (a torch extension takes about a
minute to compile; this file takes well under a second), only the data pointers of contiguous CPU tensors.

Settled here:

* Switch: the environment variable ``TRICKSREF_NATIVE=0`` (read at every call) sends every colour op to the
  torch path; so does a CUDA tensor, an unsupported dtype, or a kernel that could not be built.
* Compiler: ``$CC`` if set, else Python's own (``sysconfig``'s ``CC``), else ``cc``; the first that is on the
  PATH. Flags: :data:`FLAGS`, first with :data:`MACHINE_FLAGS` (``-march=native``: AVX2/FMA where the CPU has
  them), then without them where the compiler refuses those.
* Cache: ``$XDG_CACHE_HOME/tricksref/native`` (default ``~/.cache/tricksref/native``; a per-user folder in the
  temporary directory where that is not writable), one file per key, the key a hash of the source, the
  compiler command, the flags and the machine (architecture, OS and, for ``-march=native``, the CPU model and
  feature flags). The library is compiled into a temporary name in that folder and renamed into place
  (atomic), so concurrent processes (pytest-xdist, the book's kernels, forked workers) either find a whole
  file or build their own copy; none sees a partial one.
* Failure: the first failure to build or load warns once per process (a :class:`RuntimeWarning` that names
  the compiler's error) and the torch path runs from then on; nothing raises.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import warnings
from pathlib import Path

import torch

__all__ = ["ENV_SWITCH", "enabled", "library", "run", "build"]

ENV_SWITCH = "TRICKSREF_NATIVE"
SOURCE = Path(__file__).with_name("_jitter.c")
#: must match TR_ABI_VERSION in _jitter.c
ABI_VERSION = 1
#: -ffp-contract=off: only the fmaf calls written in the source fuse, so the rounding is the source's on every
#: compiler; -fno-trapping-math lets the branchless selects vectorize (values unchanged, no -ffast-math)
FLAGS = ("-O3", "-std=c99", "-ffp-contract=off", "-fno-trapping-math", "-fno-math-errno", "-fPIC", "-shared",
         "-pthread")
MACHINE_FLAGS = ("-march=native",)
LIBS = ("-lm",)
#: seconds a compilation may take before it counts as a failure
BUILD_TIMEOUT = 120.0

_lock = threading.Lock()
_state: dict = {"lib": None, "tried": False, "error": None, "path": None}


def enabled() -> bool:
    """False when ``TRICKSREF_NATIVE`` is set to 0 (or false, no, off)."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def cache_dir() -> Path:
    """Where built kernels are kept: ``$XDG_CACHE_HOME/tricksref/native`` or ``~/.cache/tricksref/native``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tricksref" / "native"


def _fallback_cache_dir() -> Path:
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return Path(tempfile.gettempdir()) / f"tricksref-{user}" / "native"


def compilers() -> list[list[str]]:
    """Candidate compiler commands in order of preference, each split into words: $CC, sysconfig's CC, cc."""
    seen, out = set(), []
    for cmd in (os.environ.get("CC"), sysconfig.get_config_var("CC"), "cc"):
        words = shlex.split(cmd) if cmd else []
        if words and tuple(words) not in seen:
            seen.add(tuple(words))
            out.append(words)
    return out


def _machine(native_flags: bool) -> str:
    """What a build depends on besides source and flags; with -march=native, the CPU itself."""
    parts = [sys.platform, platform.machine()]
    if native_flags:
        cpu = platform.processor()
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
                keep = ("model name", "flags", "features", "cpu part", "isa")
                lines = [ln.strip() for ln in fh.read().split("\n\n", 1)[0].splitlines()]
                cpu = "\n".join(ln for ln in lines if ln.split(":", 1)[0].strip().lower() in keep) or cpu
        except OSError:
            pass
        parts.append(cpu)
    return "\n".join(parts)


def _key(source: bytes, cmd: list[str], flags: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for part in (source, "\0".join(cmd).encode(), "\0".join(flags).encode(),
                 _machine(bool(set(flags) & set(MACHINE_FLAGS))).encode(), str(ABI_VERSION).encode()):
        h.update(part)
        h.update(b"\x00\x01")
    return h.hexdigest()[:20]


def _load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    if lib.tr_abi_version() != ABI_VERSION:
        raise OSError(f"{path}: ABI version {lib.tr_abi_version()}, expected {ABI_VERSION}")
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    lib.tr_color_ops.restype = ctypes.c_int
    lib.tr_color_ops.argtypes = [ptr, ptr, ctypes.c_int, i64, i64, i64, ptr, i64, i64,
                                 ptr, ptr, ptr, ptr, i64]
    return lib


def _compile(cmd: list[str], flags: tuple[str, ...], source: bytes, target: Path) -> None:
    """Compile ``source`` into ``target`` atomically (a temporary file in the same folder, then a rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        # the source goes in on stdin: exactly the bytes that were hashed into the key
        proc = subprocess.run([*cmd, *flags, "-x", "c", "-", "-o", tmp, *LIBS], input=source,
                              capture_output=True, timeout=BUILD_TIMEOUT, check=False)
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip() or f"exit status {proc.returncode}"
            raise RuntimeError(f"{shlex.join(cmd)} failed: {err[-1500:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def build(directory: Path | None = None, compiler: list[str] | None = None) -> tuple[ctypes.CDLL, Path]:
    """Build (or find in the cache) and load the kernel; return ``(library, path)``. Raises RuntimeError
    with the compiler's message when no candidate builds. Used by :func:`library`, and by the tests and the
    benchmark with a fresh ``directory``."""
    source = SOURCE.read_bytes()
    candidates = [compiler] if compiler is not None else compilers()
    found = [c for c in candidates if shutil.which(c[0])]
    if not found:
        raise RuntimeError(f"no C compiler found (tried {', '.join(shlex.join(c) for c in candidates)}; "
                           f"set CC)")
    directories = [directory] if directory is not None else [cache_dir(), _fallback_cache_dir()]
    errors = []
    for cmd in found:
        for flags in ((*FLAGS, *MACHINE_FLAGS), FLAGS):
            name = f"jitter-{_key(source, cmd, flags)}.so"
            for folder in directories:
                path = Path(folder) / name
                try:
                    if path.exists():
                        try:
                            return _load(path), path
                        except OSError:  # a damaged file (another tool, a full disk): build it again
                            pass
                    _compile(cmd, flags, source, path)
                    return _load(path), path
                except (OSError, subprocess.SubprocessError) as err:  # folder not writable, load failed
                    errors.append(f"{path}: {err}")
                except RuntimeError as err:  # the compiler refused: the next flags or compiler
                    errors.append(str(err))
                    break
    raise RuntimeError("; ".join(errors[-3:]))


def library() -> ctypes.CDLL | None:
    """The loaded kernel, built on the first call of the process; None (after one warning) if that failed."""
    if _state["tried"]:
        return _state["lib"]
    with _lock:
        if not _state["tried"]:
            try:
                _state["lib"], _state["path"] = build()
            except Exception as err:  # never raise: the torch path is always there
                _state["error"] = str(err)
                warnings.warn(f"tricksref.augment: could not build the native colour kernel ({err}); the "
                              f"colour ops use the torch path (same results up to float rounding, slower). "
                              f"Set {ENV_SWITCH}=0 to skip the build.", RuntimeWarning, stacklevel=3)
            _state["tried"] = True
    return _state["lib"]


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
