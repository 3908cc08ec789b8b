"""The student's side of the sandbox: lock the process down, execute the graded cells, serve probe calls.

Runs in a child of the fork server that already holds torch, numpy, the transport, the probes and the guards
in memory; nothing is imported from disk after the lock-down (the project is not even mounted). The protocol
with the grader, one frame each way (see ``grader.sandbox.protocol``), all bodies ``grader.transport``
messages::

    (on its own, once locked down)                            ->  {"ready": true}
    {"op": "load", "cells": [[index, source], ...], "modules": [...] | None}
                                                              ->  {"loaded": [{cell, line, type, message}]}
    {"op": "run", "probe": "lrn.forward", "inputs": {...}}    ->  {"results": [...]}  (see grader.probes)

``ready`` comes before any student code has run, so the grader knows that a sandbox which dies before it is
the grader's failure, not the student's. With ``modules`` (the assignment's policy, ``grader.policy``), the
cells run with restricted builtins: imports only of those modules, none of ``getattr``, ``eval``, ``open``
and the like. Whatever this process sends after ``ready`` is untrusted by the grader: the student's code runs
here and may replace any of it. What keeps grading honest is in the grader.
"""

from __future__ import annotations

import builtins
import importlib.abc
import io
import linecache
import os
import socket
import sys
import types

from .. import transport
from ..submission import Refused, resolve_probe
from . import jail
from .protocol import recv_frame, send_frame

#: modules graded code may not import: the reference, and the grader's own answers and machinery
BLOCKED = ("tricksref", "grader.suite", "grader.suites", "grader.hidden", "grader.reference",
           "grader.nbgrader_bridge", "grader.cli", "grader.gradebook", "grader.bundle", "grader.notebook",
           "grader.grading", "grader.expected", "grader.sandbox.server")

_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/scratch", "TMPDIR": "/tmp", "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def _blocked(name: str) -> bool:
    return any(name == b or name.startswith(b + ".") for b in BLOCKED)


class _Blocker(importlib.abc.MetaPathFinder):
    """Makes ``import tricksref`` fail with a message that says why (the files are not there anyway)."""

    def find_spec(self, name, path=None, target=None):
        if _blocked(name):
            raise ModuleNotFoundError(f"No module named {name!r}: the reference and the grading suites "
                                      f"are not available to graded code (write the function yourself)",
                                      name=name)
        return None


def _no_check(*args, **kwargs):
    """The self-check does nothing while grading: the grader runs the full suite itself."""
    return None


def _clean_imports(forbidden: list[str]) -> None:
    for name in [m for m in sys.modules if _blocked(m)]:
        del sys.modules[name]
    sys.meta_path[:] = [f for f in sys.meta_path
                        if "editable" not in (getattr(f, "__module__", "") or type(f).__module__ or "")
                        and "editable" not in getattr(f, "__name__", "")]
    sys.meta_path.insert(0, _Blocker())

    def shown(p):
        real = os.path.realpath(p or ".")
        # drop the project's folder (and any folder above it), keep folders inside it such as a .venv
        return p not in ("", ".") and os.path.isdir(p) and not any(
            f == real or f.startswith(real.rstrip("/") + "/") for f in forbidden)

    sys.path[:] = [p for p in sys.path if shown(p)]
    sys.path_importer_cache.clear()
    importlib.invalidate_caches()
    # `from grader import check` in a graded cell must not break grading
    check_mod = types.ModuleType("grader.check")
    check_mod.check = _no_check
    sys.modules["grader.check"] = check_mod
    grader_pkg = sys.modules.get("grader")
    if grader_pkg is not None:
        grader_pkg.check = _no_check


def _redirect_output(out_fd: int) -> None:
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(out_fd, 1)
    os.dup2(out_fd, 2)
    if out_fd > 2:
        os.close(out_fd)
    for fd, name in ((1, "stdout"), (2, "stderr")):
        stream = io.TextIOWrapper(open(fd, "wb", buffering=0, closefd=False), encoding="utf-8",
                                  errors="backslashreplace", line_buffering=True, write_through=True)
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(open(0, "rb", closefd=False), encoding="utf-8")


def _close_other_fds(keep: int) -> int:
    """Move the control socket to fd 3 and close every other descriptor above 2."""
    if keep != 3:
        os.dup2(keep, 3)
        os.close(keep)
    os.closerange(4, 1 << 16)
    return 3


def lock_down(*, ctrl_fd: int, out_fd: int, namespaced: bool, user: bool, plan: dict, uid: int, gid: int,
              limits: dict, scratch: str | None, group=None) -> int:
    """Everything between the fork and the student's first line; returns the control socket's fd.

    In order: its own session and control group; (``namespaced``) new mount, network, IPC and UTS namespaces
    and the private root (in a user namespace, ``user``, a second one locks those mounts); output to the
    grader's pipe, every other descriptor closed; resource limits; its own user id (as root) or no
    capabilities, no new privileges; a scrubbed environment and imports; the seccomp filter last.
    """
    from . import seccomp

    jail.set_parent_death_signal()
    os.setsid()
    if group is not None:
        group.join()
    if namespaced:
        jail.unshare(jail.NAMESPACES & ~jail.CLONE_NEWPID)  # its PID namespace was made by the server
        jail.build_root(plan, uid=0 if user else uid, gid=0 if user else gid,
                        scratch_bytes=int(limits["scratch_bytes"]))
        if user:
            # a second user namespace locks the mounts above: they can no longer be undone from inside
            jail.unshare(jail.CLONE_NEWUSER | jail.CLONE_NEWNS)
            jail.write_id_maps(uid, 0, gid, 0)
    elif scratch is not None:
        os.chdir(scratch)
    _redirect_output(out_fd)
    ctrl = _close_other_fds(ctrl_fd)
    jail.set_limits(cpu_seconds=int(limits["cpu_seconds"]),
                    address_space=jail.address_space_now() + int(limits["memory_bytes"]),
                    file_bytes=int(limits["file_bytes"]), nproc=int(limits["nproc"]))
    if namespaced or os.geteuid() == 0:
        jail.drop_privileges(uid if not user else os.geteuid(), gid)
    else:
        jail.prctl(jail.PR_SET_NO_NEW_PRIVS, 1)
    jail.set_parent_death_signal()  # a change of user clears it
    os.environ.clear()
    os.environ.update(_ENV, HOME=os.getcwd(), TMPDIR="/tmp" if namespaced else os.getcwd())
    _clean_imports(plan.get("forbidden", []))
    import signal
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-large file is an OSError, not a silent death
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    import torch
    torch.set_num_threads(1)
    seccomp.install()
    return ctrl


# ----------------------------------------------------------------------------------------- running cells

# builtins graded code may not reach when the cells run under an assignment's policy (grader.policy refuses
# them in the source first; this is the second layer)
_DENIED_BUILTINS = ("eval", "exec", "compile", "getattr", "setattr", "delattr", "hasattr", "globals",
                    "locals", "vars", "dir", "open", "input", "breakpoint", "exit", "quit", "help",
                    "memoryview")


def _refused(index: int):
    raise Refused(int(index))


def restricted_builtins(modules: list[str] | None) -> dict:
    """The builtins the cells run with: all of them without ``modules``; else without the denied ones and
    with an ``__import__`` that admits only ``modules`` (no private module, and ``grader`` only as the
    do-nothing self-check)."""
    table = dict(vars(builtins))
    table["__grader_refused__"] = _refused
    if modules is None:
        return table
    allowed = set(modules)
    real_import = builtins.__import__
    fake_grader = types.ModuleType("grader")
    fake_grader.check = _no_check

    def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
        parts = name.split(".")
        if name == "grader" and (not fromlist or tuple(fromlist) == ("check",)) and level == 0:
            return fake_grader
        if level != 0 or parts[0] not in allowed or any(p.startswith("_") and p != "__future__"
                                                        for p in parts):
            raise ImportError(f"importing {name} is not allowed in graded code")
        return real_import(name, globals, locals, fromlist, level)

    for name in _DENIED_BUILTINS:
        table.pop(name, None)
    table["__import__"] = guarded_import
    return table


def _where(exc: BaseException) -> tuple[int, int]:
    import traceback

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith("<cell")]
    if not frames:
        return 0, 0
    f = frames[-1]
    return int(f.filename.strip("<>").split()[1]), int(f.lineno or 0)


def _exec_cells(cells, ns: dict) -> list[dict]:
    """Run the graded cells in order, as a kernel would: an error in one cell does not stop the next."""
    problems = []
    for index, source in cells:
        filename = f"<cell {index}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        try:
            code = compile(source, filename, "exec", dont_inherit=True)
        except (SyntaxError, ValueError) as exc:
            problems.append({"cell": int(index), "line": int(getattr(exc, "lineno", 0) or 0),
                             "type": type(exc).__name__, "message": str(getattr(exc, "msg", exc))[:300]})
            continue
        try:
            exec(code, ns)
        except BaseException as exc:  # noqa: BLE001 - the student's code may raise anything, SystemExit too
            cell, line = _where(exc)
            try:
                text = str(exc)[:300]
            except BaseException:  # noqa: BLE001 - a __str__ that raises
                text = ""
            problems.append({"cell": int(index), "line": line or 0, "type": type(exc).__name__[:100],
                             "message": text})
    return problems


def _run(ns: dict, probe: str, inputs: dict) -> dict:
    try:
        fn = resolve_probe(probe)
    except (ValueError, ImportError) as exc:
        return {"grader_error": f"probe {probe!r}: {exc}"}
    try:
        return fn(ns, **inputs)
    except BaseException as exc:  # noqa: BLE001 - the course's probes catch per case; a test's may not
        try:
            text = str(exc)[:500]
        except BaseException:  # noqa: BLE001 - a __str__ that raises
            text = ""
        return {"raised": {"type": type(exc).__name__[:100], "message": text}}


def serve(ctrl: int, assignment: str) -> None:
    """Put the guards in, say ready, then answer the grader's requests until it says bye or goes away."""
    sock = socket.socket(fileno=ctrl)
    sock.setblocking(True)
    guards = sys.modules.get("grader.guards")
    # an assignment the guards do not list (a test's own) has nothing off limits
    if guards is not None and assignment in getattr(guards, "FORBIDDEN", ()):
        guards.install(assignment)  # raises: a set-up failure, the grader's, reported before "ready"
        guards.seal()
    send_frame(sock, transport.encode({"ready": True}))
    ns: dict = {"__name__": "__main__"}
    while True:
        try:
            request = transport.decode(recv_frame(sock))
        except Exception:  # noqa: BLE001 - the grader went away
            os._exit(0)
        op = request.get("op")
        try:
            if op == "load":
                ns["__builtins__"] = restricted_builtins(request.get("modules"))
                reply = {"loaded": _exec_cells(request["cells"], ns)}
            elif op == "run":
                reply = _run(ns, request["probe"], request["inputs"])
            else:
                os._exit(0)
            data = transport.encode(reply)
        except BaseException as exc:  # noqa: BLE001 - the student broke the probe, the encoder, anything
            try:
                text = str(exc)[:300]
            except BaseException:  # noqa: BLE001
                text = ""
            data = transport.encode({"broken": {"type": type(exc).__name__[:100], "message": text}})
        try:
            send_frame(sock, data)
        except OSError:
            os._exit(0)
