"""The student's side of the sandbox: lock the process down, execute the graded cells, serve probe calls.

Runs in a child of the fork server that already holds torch, numpy, the transport, the probes and the guards
in memory; nothing is imported from disk after the lock-down (the project is not even mounted). The protocol
with the grader, one frame each way per request (see ``grader.sandbox.protocol``), all bodies being
``grader.transport`` messages::

    {"op": "load", "cells": [[index, source], ...]}  ->  {"loaded": [message, ...]}   (one per failing cell)
    {"op": "run", "probe": "lrn.forward", "inputs": {...}}  ->  {"ok": {...}} | {"error": {"kind", "message"}}
    {"op": "bye"}                                             ->  the process exits

Whatever this process sends is untrusted by the grader: the student's code runs here and may replace any of
it. What keeps grading honest is in the grader (plain data only, references computed there).
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
from ..submission import StudentError, describe_exception, resolve_probe
from . import jail
from .protocol import recv_frame, send_frame

#: modules graded code may not import: the reference, and the grader's own answers and machinery
BLOCKED = ("tricksref", "grader.suite", "grader.suites", "grader.hidden", "grader.nbgrader_bridge",
           "grader.cli", "grader.gradebook", "grader.bundle", "grader.notebook", "grader.sandbox.server")

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
    # `from grader import check` in a locked cell must not break grading
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


def lock_down(*, ctrl_fd: int, out_fd: int, mode: str, plan: dict, uid: int, gid: int, limits: dict,
              scratch: str | None, forbidden: list[str], unshare: int = 0) -> int:
    """Everything between the fork and the student's first line; returns the control socket's fd.

    ``mode``: ``"namespaces"`` (root: private namespaces, private root, own user id), ``"userns"`` (an
    unprivileged user namespace does the same) or ``"none"`` (limits and a scratch folder only). ``unshare``:
    the namespaces this process enters itself (its PID namespace was made by its parent).
    """
    jail.set_parent_death_signal()
    os.setsid()
    if unshare:
        jail.unshare(unshare)
    if mode in ("namespaces", "userns"):
        jail.build_root(plan, uid=uid if mode == "namespaces" else 0, gid=gid if mode == "namespaces" else 0,
                        scratch_bytes=int(limits["scratch_bytes"]))
        if mode == "userns":
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
    if mode != "none" or os.geteuid() == 0:
        jail.drop_privileges(uid if mode == "namespaces" or os.geteuid() == 0 else os.geteuid(), gid)
    jail.set_parent_death_signal()  # a change of user clears it
    os.environ.clear()
    os.environ.update(_ENV, HOME=os.getcwd(), TMPDIR="/tmp" if mode != "none" else os.getcwd())
    _clean_imports(forbidden)
    import signal
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-large file is an OSError, not a silent death
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    import torch
    torch.set_num_threads(1)
    return ctrl


def _exec_cells(cells, ns: dict) -> list[str]:
    """Run the graded cells in order, as a kernel would: an error in one cell does not stop the next."""
    problems = []
    for index, source in cells:
        filename = f"<cell {index}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        try:
            code = compile(source, filename, "exec", dont_inherit=True)
        except (SyntaxError, ValueError) as exc:
            where = f" (line {exc.lineno})" if getattr(exc, "lineno", None) else ""
            problems.append(f"cell {index} does not compile{where}: {type(exc).__name__}: "
                            f"{getattr(exc, 'msg', exc)}")
            continue
        try:
            exec(code, ns)
        except SystemExit:
            problems.append(f"cell {index} called sys.exit(): graded code must not exit (the rest of the "
                            f"cell was skipped)")
        except BaseException as exc:  # noqa: BLE001 - the student's code may raise anything
            problems.append(f"cell {index} raised {_describe(exc)}")
    return problems


def _describe(exc: BaseException) -> str:
    try:
        return describe_exception(exc)
    except BaseException:  # noqa: BLE001 - a __str__ that raises
        return type(exc).__name__


def _run(ns: dict, probe: str, inputs: dict) -> dict:
    try:
        fn = resolve_probe(probe)
    except (ValueError, ImportError) as exc:
        return {"grader_error": f"probe {probe!r}: {exc}"}
    try:
        out = fn(ns, **inputs)
    except StudentError as exc:
        return {"error": {"kind": str(exc.kind), "message": str(exc.message)}}
    except SystemExit:
        return {"error": {"kind": "error",
                          "message": "your code called sys.exit(): graded code must not exit"}}
    except RecursionError:
        return {"error": {"kind": "error", "message": "RecursionError: maximum recursion depth exceeded"}}
    except BaseException as exc:  # noqa: BLE001
        return {"error": {"kind": "error", "message": _describe(exc)}}
    return {"ok": out}


def serve(ctrl: int, assignment: str) -> None:
    """Answer the grader's requests until it says bye or goes away."""
    sock = socket.socket(fileno=ctrl)
    sock.setblocking(True)
    ns: dict = {"__name__": "__main__", "__builtins__": builtins}
    guards = sys.modules.get("grader.guards")
    guard_error = None
    # an assignment the guards do not list (a test's own) has nothing off limits
    if guards is not None and assignment in getattr(guards, "FORBIDDEN", ()):
        try:
            guards.install(assignment)
        except Exception as exc:  # noqa: BLE001 - a grader problem: report it, never run unguarded
            guard_error = f"grader.guards.install({assignment!r}) failed: {type(exc).__name__}: {exc}"
    while True:
        try:
            request = transport.decode(recv_frame(sock))
        except Exception:  # noqa: BLE001 - the grader went away
            os._exit(0)
        op = request.get("op")
        if op == "load":
            reply = ({"grader_error": guard_error} if guard_error
                     else {"loaded": _exec_cells(request["cells"], ns)})
        elif op == "run":
            reply = _run(ns, request["probe"], request["inputs"])
        else:
            os._exit(0)
        try:
            data = transport.encode(reply)
        except BaseException as exc:  # noqa: BLE001 - not plain data (or the student broke the encoder)
            text = _describe(exc) if not isinstance(exc, transport.TransportError) else str(exc)
            data = transport.encode({"error": {"kind": "bad_output",
                                               "message": f"the result could not be sent back: {text}"}})
        try:
            send_frame(sock, data)
        except OSError:
            os._exit(0)
