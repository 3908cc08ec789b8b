"""Build, cache and load tricksref's small C kernels: compiled on first use with the system C compiler,
cached per user, loaded with ctypes. One machinery for every kernel: the colour ops
(:mod:`tricksref.augment._native`) and the from-scratch batch norm, dropout and LRN
(:mod:`tricksref.scratch._native`) each describe theirs with a :class:`NativeLibrary`.

Why plain C files: the kernels need no Python C-API and no torch headers (a torch extension takes about a
minute to compile; these files take well under a second), only the data pointers of contiguous CPU tensors.

Settled here:

* Switch: the environment variable ``TRICKSREF_NATIVE=0`` (read at every call) sends every op to its torch
  path; so does a CUDA tensor, an unsupported dtype, or a kernel that could not be built.
* Compiler: ``$CC`` if set, else Python's own (``sysconfig``'s ``CC``), else ``cc``; the first that is on the
  PATH. Flags: :data:`FLAGS`, first with :data:`OPENMP_FLAGS` and :data:`MACHINE_FLAGS` (``-march=native``:
  AVX2/FMA where the CPU has them), then without each where the compiler refuses it.
* Threads: every source is compiled after ``_parallel.h`` (:data:`PRELUDE`), whose ``tr_parallel_for``
  runs on OpenMP's thread pool where the compiler has OpenMP. The library then needs ``libgomp.so.1``, the
  soname of the copy inside the torch wheel, which torch has loaded by then: the kernels share torch's
  worker threads instead of competing with them (see ``_parallel.h``). Without OpenMP, pthreads.
* Cache: ``$XDG_CACHE_HOME/tricksref/native`` (default ``~/.cache/tricksref/native``), else a per-user
  folder in the temporary directory, ``tricksref-<uid>/native``. One file per key, the key a hash of the
  source, the compiler command, the flags and the machine (architecture, OS and, for ``-march=native``, the
  CPU model and feature flags). The library is compiled into a temporary name in that folder and renamed
  into place (atomic), so concurrent processes (pytest-xdist, the book's kernels, forked workers) either find
  a whole file or build their own copy; none sees a partial one.
* Trust: a cached library is code this process will run, so the folders tricksref creates are made with mode
  0700, and a folder or a library that is not owned by the current user, is writable by its group or by
  others, or is a symbolic link is refused: the next folder is tried, and where none is left the torch path
  runs, with one warning that names what was refused and why. (A predictable folder under ``/tmp`` that
  another user created first is exactly such a case.)
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
import stat
import subprocess
import sys
import sysconfig
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

__all__ = ["ENV_SWITCH", "FLAGS", "MACHINE_FLAGS", "OPENMP_FLAGS", "FLAG_SETS", "PRELUDE", "NativeLibrary",
           "UnsafeCacheError", "enabled",
           "cache_dir", "fallback_cache_dir", "compilers"]

ENV_SWITCH = "TRICKSREF_NATIVE"
#: -ffp-contract=off: only the fmaf calls written in a source fuse, so the rounding is the source's on every
#: compiler; -fno-trapping-math lets the branchless selects vectorize (values unchanged, no -ffast-math)
FLAGS = ("-O3", "-std=c99", "-ffp-contract=off", "-fno-trapping-math", "-fno-math-errno", "-fPIC", "-shared",
         "-pthread")
MACHINE_FLAGS = ("-march=native",)
OPENMP_FLAGS = ("-fopenmp",)
#: put in front of every kernel's source: tr_parallel_for
PRELUDE = Path(__file__).with_name("_parallel.h")
#: the flag sets tried in order: the first the compiler accepts is built
FLAG_SETS = ((*FLAGS, *OPENMP_FLAGS, *MACHINE_FLAGS), (*FLAGS, *OPENMP_FLAGS), (*FLAGS, *MACHINE_FLAGS),
             FLAGS)
LIBS = ("-lm",)
#: seconds a compilation may take before it counts as a failure
BUILD_TIMEOUT = 120.0
#: permission bits that make a cache entry unsafe: anyone but the owner may write it
_UNSAFE_BITS = stat.S_IWGRP | stat.S_IWOTH


class UnsafeCacheError(OSError):
    """A cache folder or library this process must not trust (wrong owner, writable by others, a link)."""


def enabled() -> bool:
    """False when ``TRICKSREF_NATIVE`` is set to 0 (or false, no, off)."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def cache_dir() -> Path:
    """Where built kernels are kept: ``$XDG_CACHE_HOME/tricksref/native`` or ``~/.cache/tricksref/native``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tricksref" / "native"


def fallback_cache_dir() -> Path:
    """The per-user folder in the temporary directory, for where the home cache is not writable."""
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


def _key(source: bytes, cmd: list[str], flags: tuple[str, ...], abi_version: int) -> str:
    h = hashlib.sha256()
    for part in (source, "\0".join(cmd).encode(), "\0".join(flags).encode(),
                 _machine(bool(set(flags) & set(MACHINE_FLAGS))).encode(), str(abi_version).encode()):
        h.update(part)
        h.update(b"\x00\x01")
    return h.hexdigest()[:20]


def check_trusted(path: Path, *, folder: bool) -> None:
    """Raise :class:`UnsafeCacheError` unless ``path`` is a real folder (or regular file) owned by this user
    and writable by nobody else. Not a symbolic link: its target could change under us."""
    if not hasattr(os, "getuid"):  # no POSIX owners (Windows): the user's profile folders are private
        return
    st = os.lstat(path)
    kind = "folder" if folder else "file"
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeCacheError(f"{path}: a symbolic link, expected a real {kind}")
    if not (stat.S_ISDIR(st.st_mode) if folder else stat.S_ISREG(st.st_mode)):
        raise UnsafeCacheError(f"{path}: not a {kind}")
    if st.st_uid != os.getuid():
        raise UnsafeCacheError(f"{path}: owned by uid {st.st_uid}, expected this user (uid {os.getuid()})")
    if st.st_mode & _UNSAFE_BITS:
        mode = stat.S_IMODE(st.st_mode)
        raise UnsafeCacheError(f"{path}: writable by its group or others (mode {mode:o}), expected writable "
                               f"by its owner only")


def prepare_folder(folder: Path, owned: int) -> Path:
    """Create ``folder`` (missing levels with mode 0700) and check its last ``owned`` levels, the ones that
    are tricksref's own (``tricksref/native``), with :func:`check_trusted`."""
    folder = Path(folder)
    for level in reversed([folder, *folder.parents]):
        if not os.path.lexists(level):
            try:
                os.mkdir(level, 0o700)
            except FileExistsError:  # another process made it meanwhile: checked below like any other
                pass
    for level in [folder, *folder.parents][:owned]:
        check_trusted(level, folder=True)
    return folder


def _compile(cmd: list[str], flags: tuple[str, ...], source: bytes, target: Path) -> None:
    """Compile ``source`` into ``target`` atomically (a temporary file in the same folder, then a rename)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        # the source goes in on stdin: exactly the bytes that were hashed into the key
        proc = subprocess.run([*cmd, *flags, "-x", "c", "-", "-o", tmp, *LIBS], input=source,
                              capture_output=True, timeout=BUILD_TIMEOUT, check=False)
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip() or f"exit status {proc.returncode}"
            raise RuntimeError(f"{shlex.join(cmd)} failed: {err[-1500:]}")
        os.chmod(tmp, 0o700)  # the linker applies the umask (a group-writable 0775 under umask 002)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class NativeLibrary:
    """One C kernel: its source, the ABI version its ``tr_abi_version()`` must return, and ``declare``,
    which sets the ctypes signatures of its functions on the loaded library.

    :meth:`library` builds (or finds in the cache) and loads it once per process; :meth:`build` does one
    build into a given folder, for the tests and benchmarks. ``state`` holds the outcome of the first call:
    the library or None, whether it was tried, the error, the path.
    """

    def __init__(self, name: str, source: Path, abi_version: int, declare: Callable[[ctypes.CDLL], None],
                 what: str, fallback: str) -> None:
        self.name = name
        self.source = Path(source)
        self.abi_version = abi_version
        self.declare = declare
        self.what = what  # e.g. "tricksref.augment: the native colour kernel"
        self.fallback = fallback  # what runs instead, for the warning
        self._lock = threading.Lock()
        self.state: dict = {"lib": None, "tried": False, "error": None, "path": None, "refused": []}

    def reset(self) -> None:
        """Forget the outcome of the first call, so that the next :meth:`library` tries again (tests)."""
        self.state.update(lib=None, tried=False, error=None, path=None, refused=[])

    def _load(self, path: Path) -> ctypes.CDLL:
        lib = ctypes.CDLL(str(path))
        lib.tr_abi_version.restype = ctypes.c_int
        if lib.tr_abi_version() != self.abi_version:
            raise OSError(f"{path}: ABI version {lib.tr_abi_version()}, expected {self.abi_version}")
        self.declare(lib)
        return lib

    def build(self, directory: Path | None = None, compiler: list[str] | None = None
              ) -> tuple[ctypes.CDLL, Path]:
        """Build (or find in the cache) and load the kernel; return ``(library, path)``. Raises RuntimeError
        with the compiler's message, or with why each cache folder was refused, when nothing loads."""
        # the prelude, then the kernel, with its own file name and line numbers in the compiler's messages
        source = (PRELUDE.read_bytes() + f'\n#line 1 "{self.source.name}"\n'.encode()
                  + self.source.read_bytes())
        candidates = [compiler] if compiler is not None else compilers()
        found = [c for c in candidates if shutil.which(c[0])]
        if not found:
            raise RuntimeError(f"no C compiler found (tried {', '.join(shlex.join(c) for c in candidates)}; "
                               f"set CC)")
        # (folder, how many of its levels are ours to check): a given folder is checked itself only
        folders = [(Path(directory), 1)] if directory is not None else [(cache_dir(), 2),
                                                                        (fallback_cache_dir(), 2)]
        errors: list[str] = []
        self.state["refused"] = refused = []
        refused_folders: set[Path] = set()
        for cmd in found:
            for flags in FLAG_SETS:
                name = f"{self.name}-{_key(source, cmd, flags, self.abi_version)}.so"
                for folder, owned in folders:
                    if folder in refused_folders:
                        continue
                    path = folder / name
                    try:
                        prepare_folder(folder, owned)
                        if os.path.lexists(path):
                            check_trusted(path, folder=False)
                            try:
                                return self._load(path), path
                            except OSError:  # a damaged file (another tool, a full disk): build it again
                                pass
                        _compile(cmd, flags, source, path)
                        return self._load(path), path
                    except UnsafeCacheError as err:  # refused, with all it holds: never loaded, never written
                        errors.append(f"refused {err}")
                        refused.append(str(err))
                        refused_folders.add(folder)
                    except (OSError, subprocess.SubprocessError) as err:  # folder not writable, load failed
                        errors.append(f"{path}: {err}")
                    except RuntimeError as err:  # the compiler refused: the next flags or compiler
                        errors.append(str(err))
                        break
        named = [f"refused {r}" for r in refused]
        raise RuntimeError("; ".join(dict.fromkeys(named + errors[-3:])))  # every refusal, named once

    def library(self) -> ctypes.CDLL | None:
        """The loaded kernel, built on the first call of the process; None (after one warning) if that
        failed."""
        if self.state["tried"]:
            return self.state["lib"]
        with self._lock:
            if not self.state["tried"]:
                try:
                    self.state["lib"], self.state["path"] = self.build()
                    if self.state["refused"]:
                        refused = "; ".join(dict.fromkeys(self.state["refused"]))
                        warnings.warn(f"{self.what}: refused an unsafe cache ({refused}); built and loaded "
                                      f"{self.state['path']} instead", RuntimeWarning, stacklevel=3)
                except Exception as err:  # never raise: the torch path is always there
                    self.state["error"] = str(err)
                    warnings.warn(f"{self.what} is not used ({err}); {self.fallback} (same results up to "
                                  f"float rounding, slower). Set {ENV_SWITCH}=0 to skip the build.",
                                  RuntimeWarning, stacklevel=3)
                self.state["tried"] = True
        return self.state["lib"]
