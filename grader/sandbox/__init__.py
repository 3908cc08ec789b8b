"""Run a student's code where it can do no harm: a fork server and a locked-down child per submission.

``open_submission(assignment, source, **limits)`` returns a ``Submission`` whose probes run in a sandboxed
child process; the grader's process never imports or executes the student's code. The pieces:

- ``server``: a fresh interpreter that imports torch and the probes once and forks one sandbox per
  submission (started once per ``grade`` call);
- ``jail``: namespaces (mount, network, PID, IPC, UTS), a private read-only root without the course, the
  reference or the hidden suites, resource limits, a user id of its own, no capabilities;
- ``child``: the student's side: execute the graded cells, answer probe calls with plain data;
- this module: the grader's side, with wall-clock timeouts per call and per notebook, a fresh child after a
  crash or a timeout, and the student's stdout/stderr captured apart from the grader's own output.

Where the machine allows no namespaces (not root, and unprivileged user namespaces disabled) the fork server
refuses to start, unless ``isolation="none"`` is asked for explicitly: then the sandbox still applies the
limits, the seccomp filter and a scratch folder, kills what the student leaves behind, and warns once that
the student's code can see the file system and the network.

A sandbox that dies before it said "ready" (before any student code ran) is a failure of the grader: the
submission's ``internal`` is set, and the grader reports it instead of scoring it.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

from .. import transport
from ..report import safe_text
from ..submission import GraderError, ProbeInterference, StudentError, Submission
from .limits import Limits
from .protocol import Closed, FrameTooLarge, Timeout, recv_frame, send_frame

__all__ = ["open_submission", "ForkServer", "SandboxSubmission", "Limits", "IsolationWarning",
           "default_server", "escape_output"]

_KINDS = {"error", "missing", "bad_output", "timeout", "crash", "forbidden", "syntax"}
_MAX_TEXT = 2000
_BOOT = ("import sys; sys.path.insert(0, {root!r}); from grader.sandbox.server import main; "
         "main(int(sys.argv[1]))")


class IsolationWarning(RuntimeWarning):
    """The machine does not allow the sandbox's namespaces: student code is less isolated."""


def escape_output(text: str) -> str:
    """Make student text safe to print: control characters (terminal escapes, carriage returns) as \\xNN."""
    return "".join(c if (c.isprintable() or c in "\n\t") else f"\\x{ord(c):02x}" if ord(c) < 256
                   else f"\\u{ord(c):04x}" for c in text)


def _text(value: Any, limit: int = _MAX_TEXT) -> str:
    s = value if isinstance(value, str) else repr(value)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _server_env() -> dict[str, str]:
    """The fork server's whole environment: nothing of the instructor's (tokens, database URLs)."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/nonexistent",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "NUMEXPR_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "MALLOC_ARENA_MAX": "2",
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1", "TORCH_CPP_LOG_LEVEL": "ERROR"}
    if "VIRTUAL_ENV" in os.environ:
        env["VIRTUAL_ENV"] = os.environ["VIRTUAL_ENV"]
    return env


class _Output:
    """The student's stdout+stderr: the first ``limit`` bytes are kept, the rest only counted."""

    def __init__(self, limit: int):
        self.limit = limit
        self.head = bytearray()
        self.dropped = 0
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    def drain(self, fd: int) -> None:
        def loop():
            try:
                while chunk := os.read(fd, 1 << 16):
                    with self.lock:
                        room = self.limit - len(self.head)
                        self.head += chunk[:max(room, 0)]
                        self.dropped += max(len(chunk) - max(room, 0), 0)
            except OSError:
                pass
            finally:
                os.close(fd)

        t = threading.Thread(target=loop, name="grader-student-output", daemon=True)
        t.start()
        self.threads.append(t)

    def join(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, end - time.monotonic()))

    def text(self) -> str:
        with self.lock:
            s = bytes(self.head).decode("utf-8", errors="replace")
            if self.dropped:
                s += f"\n[... {self.dropped} more bytes of output not kept]"
        return escape_output(s)


class _Child:
    def __init__(self, cid: int, sock: socket.socket):
        self.id = cid
        self.sock = sock


class ForkServer:
    """The grader's handle on one fork server process (start one per ``grade`` call, share it across threads).

    Args:
        extra_probes: ``{assignment: path}`` of probe modules to pre-import as ``grader.probes.<assignment>``
            (tests register a tiny assignment this way). Default: none.
        isolation: ``"auto"`` (namespaces as root, else in a user namespace; an error where neither works),
            ``"namespaces"`` (root), ``"userns"`` (a user namespace, even as root) or ``"none"`` (no
            namespaces: only the limits). Default ``"auto"``.
    """

    def __init__(self, *, extra_probes: dict[str, str] | None = None, isolation: str = "auto"):
        if isolation not in ("auto", "namespaces", "userns", "none"):
            raise ValueError(f"isolation: expected 'auto', 'namespaces', 'userns' or 'none', "
                             f"got {isolation!r}")
        self._config = {"extra_probes": {k: os.path.abspath(v) for k, v in (extra_probes or {}).items()},
                        "isolation": isolation}
        self._lock = threading.Lock()
        self._hello: dict | None = None
        self._proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._closed = False
        self._start()

    def _start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _BOOT.format(root=root), str(theirs.fileno())],
            pass_fds=[theirs.fileno()], env=_server_env(), cwd="/", stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, close_fds=True)
        theirs.close()
        self._sock = ours
        ours.send(json.dumps(self._config).encode())
        self._hello = None

    def ready(self, timeout: float = 120.0) -> dict:
        """Wait for the server's imports; return its hello (``mode``, ``warning``, ``pid``)."""
        with self._lock:
            return self._ready_locked(timeout)

    def _ready_locked(self, timeout: float = 120.0) -> dict:
        if self._hello is None:
            self._sock.settimeout(timeout)
            try:
                msg = self._sock.recv(1 << 20)
            except (TimeoutError, OSError) as exc:
                raise RuntimeError(f"the sandbox's fork server did not start: {exc}") from None
            finally:
                self._sock.settimeout(None)
            if not msg:
                raise RuntimeError("the sandbox's fork server exited while starting (see its error above)")
            hello = json.loads(msg)
            if "error" in hello:
                raise RuntimeError(f"the sandbox's fork server could not start: {hello['error']}\n"
                                   f"{hello.get('trace', '')}")
            self._hello = hello
            if hello.get("mode") == "none":
                _warn_once(hello)
        return self._hello

    @property
    def mode(self) -> str:
        return self.ready()["mode"]

    @property
    def pid(self) -> int:
        return self.ready()["pid"]

    def _request(self, req: dict, fds: Sequence[int] = ()) -> dict:
        with self._lock:
            if self._closed:
                raise RuntimeError("the fork server is closed")
            self._ready_locked()
            try:
                socket.send_fds(self._sock, [json.dumps(req).encode()], list(fds))
                msg = self._sock.recv(1 << 16)
            except OSError as exc:
                msg, err = b"", exc
            else:
                err = None
            if not msg:
                # the server died (it never runs student code, so this is rare): start a fresh one
                self._restart_locked()
                raise RuntimeError(f"the sandbox's fork server stopped answering ({err or 'closed'}); "
                                   f"it was restarted")
        reply = json.loads(msg)
        if "error" in reply:
            raise RuntimeError(f"fork server: {reply['error']}")
        return reply

    def _restart_locked(self) -> None:
        try:
            self._sock.close()
            self._proc.kill()
            self._proc.wait(5)
        except Exception:  # noqa: BLE001
            pass
        self._start()

    def spawn(self, assignment: str, limits: Limits, output: _Output) -> _Child:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        out_r, out_w = os.pipe()
        try:
            reply = self._request({"op": "spawn", "assignment": assignment, "limits": limits.to_dict()},
                                  [theirs.fileno(), out_w])
        except BaseException:
            os.close(out_r)
            ours.close()
            raise
        finally:
            theirs.close()
            os.close(out_w)
        output.drain(out_r)
        ours.setblocking(False)
        return _Child(reply["id"], ours)

    def kill(self, child: _Child) -> None:
        try:
            self._request({"op": "kill", "id": child.id, "forget": True})
        except RuntimeError:
            pass
        child.sock.close()

    def kill_and_reap(self, child: _Child, timeout: float = 0.5) -> dict | None:
        """After the child's socket closed: how its process ended (``{"exit": c}``, ``{"signal": s}``); one
        still running after ``timeout`` closed its channel itself, and is killed now (``{"closed": True}``):
        a sandbox the grader can no longer talk to never runs on."""
        try:
            status = self._request({"op": "reap", "id": child.id, "timeout": timeout})["status"]
            if status is None:
                self._request({"op": "kill", "id": child.id, "forget": True})
                status = {"closed": True}
        except RuntimeError:
            status = None
        child.sock.close()
        return status

    def open(self, assignment: str, source: str | Iterable[Any], limits: Limits | None = None, *,
             refusals: Sequence[tuple[str, str]] = (), modules: Iterable[str] | None = None
             ) -> SandboxSubmission:
        """A submission of ``source`` (see ``SandboxSubmission``), started on its first ``run``."""
        return SandboxSubmission(self, assignment, source, limits or Limits(), refusals=refusals,
                                 modules=modules)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._sock.close()
            except OSError:
                pass
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_warned = False


def _warn_once(hello: dict) -> None:
    global _warned
    if not _warned:
        _warned = True
        why = hello.get("warning") or "isolation 'none' was asked for"
        warnings.warn(f"grader sandbox: running student code WITHOUT namespace isolation ({why}). "
                      f"Resource limits, timeouts and "
                      f"process cleanup still apply, but the student's code can read the file system and "
                      f"open network connections. Run the grader as root or enable unprivileged user "
                      f"namespaces for full isolation.", IsolationWarning, stacklevel=4)


def _cells_of(source: str | Iterable[Any]) -> list[list]:
    if isinstance(source, str):
        return [[1, source]]
    cells = []
    for i, c in enumerate(source, 1):
        if isinstance(c, str):
            cells.append([i, c])
        else:
            index, text = c
            cells.append([int(index), str(text)])
    return cells


def _describe_status(status: dict | None, limits: Limits) -> str:
    if status is None:
        return "its process ended unexpectedly"
    if status.get("closed"):
        return "it closed its connection to the grader (graded code must not touch the grader's files)"
    code = status.get("exit", 0)
    if "signal" in status or code >= 128:  # a supervisor reports its child's signal as 128 + signal
        sig = status["signal"] if "signal" in status else code - 128
        names = {9: "SIGKILL: the CPU-time limit ({cpu} s) or the memory limit ({mem} MiB) was reached",
                 11: "SIGSEGV: a segmentation fault", 6: "SIGABRT: an abort (often out of memory)",
                 24: "SIGXCPU: the CPU-time limit ({cpu} s) was reached", 7: "SIGBUS: a bus error",
                 25: "SIGXFSZ: the file-size limit was reached", 15: "SIGTERM", 31: "SIGSYS: a refused "
                 "system call"}
        what = names.get(sig, f"signal {sig}").format(cpu=limits.cpu_seconds, mem=limits.memory_bytes >> 20)
        return f"its process was killed ({what})"
    return (f"its process exited with code {code} (sys.exit(), os._exit() and os.kill() have no place in "
            f"graded code)")


def _stopped(key: str, body) -> StudentError:
    """The student's code stopped a probe (``raised``) or made its reply unsendable (``broken``): a
    StudentError whose text, in a hidden test, never repeats what the student's code wrote."""
    from ..suite import in_hidden_test

    if not (isinstance(body, dict) and isinstance(body.get("type"), str) and isinstance(body.get("message"),
                                                                                         str)):
        return StudentError("bad_output", "the graded process sent a malformed reply")
    typ, text = safe_text(body["type"], 100), "" if in_hidden_test() else safe_text(body["message"], 300)
    if key == "broken":
        return StudentError("bad_output", "your code returned something that is not plain data"
                            + (f" ({text})" if text else ""))
    if typ == "SystemExit":
        return StudentError("error", "your code called sys.exit(): graded code must not exit")
    return StudentError("error", f"{typ}: {text}" if text else f"your code raised {typ}")


class SandboxSubmission(Submission):
    """A student's code running in a sandbox; ``run`` calls probes there and returns their raw replies.

    The child is started lazily (first ``run``) and re-started after a crash or a timeout, re-running the
    graded cells; a failure while running the cells themselves (timeout, crash) is final for the notebook, as
    is the notebook's time budget once spent. ``load_errors`` lists the cells that raised or did not compile,
    ``output`` the student's captured output (truncated, escaped), ``fatal`` the final error if any,
    ``internal`` a failure of the grader's own (the sandbox could not be set up) if any.

    Args:
        refusals: the functions ``grader.policy`` refused, ``[(name, why), ...]`` (their stubs are numbered
            in this order); the suites never call them.
        modules: the modules the cells may import (``grader.policy``); None: no restriction (the sandbox's
            own tests of its containment).
    """

    def __init__(self, server: ForkServer, assignment: str, source: str | Iterable[Any], limits: Limits, *,
                 refusals: Sequence[tuple[str, str]] = (), modules: Iterable[str] | None = None):
        if not isinstance(assignment, str) or not assignment.isidentifier():
            raise ValueError(f"assignment: expected an identifier such as 'lrn', got {assignment!r}")
        self.server = server
        self.assignment = assignment
        self.cells = _cells_of(source)
        self.limits = limits
        self.refusals = list(refusals)
        self.modules = None if modules is None else sorted(modules)
        self.load_errors: list[str] | None = None
        self.fatal: StudentError | None = None
        self.internal: GraderError | None = None
        self.restarts = 0
        self._out = _Output(limits.output_bytes)
        self._child: _Child | None = None
        self._started = time.monotonic()
        self._deadline = self._started + limits.notebook_timeout
        self._closed = False
        self._lines = {f"<cell {i}>": src.split("\n") for i, src in self.cells}

    # ---- lifecycle

    @property
    def output(self) -> str:
        """The student's stdout+stderr so far (complete once closed), cut to ``output_bytes`` and escaped."""
        if self._closed:
            self._out.join(2.0)  # the pipe ends when the last process of the sandbox is gone
        return self._out.text()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def line(self, filename: str, lineno: int) -> str | None:
        """The grader's own copy of the student's line ``lineno`` of ``filename`` (``"<cell 5>"``)."""
        lines = self._lines.get(filename)
        if lines is None or not 0 < lineno <= len(lines):
            return None
        return safe_text(lines[lineno - 1], 200)

    def _die(self, kind: str, message: str) -> StudentError:
        self.fatal = StudentError(kind, message)
        self._drop_child()
        return StudentError(kind, message)

    def _fail(self, why: str) -> GraderError:
        self.internal = GraderError(f"the sandbox could not be set up ({why})")
        self._drop_child()
        return self.internal

    def _drop_child(self) -> None:
        if self._child is not None:
            self.server.kill(self._child)
            self._child = None

    def _lost(self, child: _Child) -> dict | None:
        """The child's socket closed: kill it (a sandbox whose channel is gone must not run on), reap it."""
        self._child = None
        return self.server.kill_and_reap(child)

    def _budget_spent(self) -> StudentError:
        return self._die("timeout", f"grading stopped: your code used up this notebook's time budget "
                                    f"({self.limits.notebook_timeout:g} s), so the remaining tests score 0")

    def start(self) -> None:
        """Start the child and run the graded cells (``run`` does this when needed)."""
        if self._child is not None or self.fatal is not None:
            return
        if self.internal is not None:
            raise self.internal
        if self._closed:
            raise RuntimeError("submission is closed")
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise self._budget_spent()
        child = self.server.spawn(self.assignment, self.limits, self._out)
        self._child = child
        try:  # "ready": the lock-down is done; nothing of the student's has run yet
            ready = recv_frame(child.sock, time.monotonic() + max(self.limits.load_timeout, 30.0), 1 << 10)
            if transport.decode(ready) != {"ready": True}:
                raise Closed("no ready")
        except (Timeout, Closed, FrameTooLarge, transport.TransportError) as exc:
            status = self._lost(child) if isinstance(exc, Closed) else None
            raise self._fail(f"{type(exc).__name__} before it was ready, status {status}; the fork server's "
                             f"stderr has the set-up's traceback") from None
        wait = min(self.limits.load_timeout, left)
        deadline = time.monotonic() + wait
        try:
            send_frame(child.sock, transport.encode({"op": "load", "cells": self.cells,
                                                     "modules": self.modules}), deadline)
            data = recv_frame(child.sock, deadline, self.limits.message_bytes)
        except Timeout:
            if wait < self.limits.load_timeout:
                raise self._budget_spent() from None
            raise self._die("timeout", f"your notebook's graded cells did not finish running within "
                                       f"{wait:g} s: code outside functions must be quick (an infinite loop "
                                       f"or a long sleep at the top level?)") from None
        except (Closed, FrameTooLarge) as exc:
            status = self._lost(child) if isinstance(exc, Closed) else None
            raise self._die("crash", f"running your notebook's graded cells stopped the grading: "
                                     f"{_describe_status(status, self.limits)}") from None
        reply = self._decode(data)
        loaded = reply.get("loaded") if isinstance(reply, dict) and set(reply) == {"loaded"} else None
        if not isinstance(loaded, list):
            raise self._die("bad_output", "the graded process sent a malformed reply while loading")
        if self.load_errors is None:
            self.load_errors = [self._load_error(e) for e in loaded[:20]]

    def _load_error(self, e) -> str:
        """A cell that raised or did not compile, from the child's report and the grader's copy of it."""
        if not (isinstance(e, dict) and isinstance(e.get("cell"), int) and isinstance(e.get("line"), int)
                and isinstance(e.get("type"), str) and isinstance(e.get("message"), str)):
            return "a graded cell failed (the report of its error was malformed)"
        typ = safe_text(e["type"], 100)
        code = self.line(f"<cell {e['cell']}>", e["line"])
        if typ in ("SyntaxError", "IndentationError", "TabError"):
            why = safe_text(e["message"], 200)
            return f"cell {e['cell']} does not compile (line {e['line']}): {typ}: {why}"
        if typ == "SystemExit":
            return (f"cell {e['cell']} called sys.exit(): graded code must not exit (the rest of the cell "
                    f"was skipped)")
        at = f", line {e['line']}" + (f": {code.strip()}" if code else "") if e["line"] else ""
        return f"cell {e['cell']} raised {typ}: {safe_text(e['message'], 300)} (cell {e['cell']}{at})"

    def _decode(self, data: bytes):
        try:
            return transport.decode(data, max_bytes=self.limits.message_bytes)
        except transport.TransportError as exc:
            raise ProbeInterference(f"the reply could not be read: {safe_text(exc, 200)}") from None

    def run(self, probe: str, /, **inputs: Any) -> dict[str, Any]:
        if self._closed:
            raise RuntimeError("submission is closed")
        if self.internal is not None:
            raise self.internal
        if self.fatal is not None:
            raise StudentError(self.fatal.kind, self.fatal.message)
        payload = transport.encode({"op": "run", "probe": probe, "inputs": inputs})
        self.start()
        child = self._child
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise self._budget_spent()
        wait = min(self.limits.run_timeout, left)
        deadline = time.monotonic() + wait
        try:
            send_frame(child.sock, payload, deadline)
            data = recv_frame(child.sock, deadline, self.limits.message_bytes)
        except Timeout:
            self._drop_child()
            self.restarts += 1
            if wait < self.limits.run_timeout:
                raise self._budget_spent() from None
            raise StudentError("timeout", f"your code did not return within {wait:g} s: an infinite loop, a "
                                          f"blocking call or a very slow implementation?") from None
        except FrameTooLarge:
            self._drop_child()
            self.restarts += 1
            mib = self.limits.message_bytes >> 20
            raise StudentError("bad_output", f"your code returned more than {mib} MiB") from None
        except Closed:
            status = self._lost(child)
            self.restarts += 1
            raise StudentError("crash", f"your code stopped the grading: "
                                        f"{_describe_status(status, self.limits)}") from None
        reply = self._decode(data)
        if isinstance(reply, dict) and len(reply) == 1:
            (key, body), = reply.items()
            if key == "grader_error":
                raise GraderError(f"sandbox: {safe_text(body, 300)}")
            if key in ("raised", "broken"):
                raise _stopped(key, body)
        return reply

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._drop_child()


_default: ForkServer | None = None
_default_lock = threading.Lock()


def default_server() -> ForkServer:
    """The process-wide fork server, started on first use and stopped at exit."""
    global _default
    with _default_lock:
        if _default is None:
            _default = ForkServer()
            atexit.register(_default.close)
        return _default


def open_submission(assignment: str, source: str | Iterable[Any], *, server: ForkServer | None = None,
                    **limits: Any) -> SandboxSubmission:
    """Run ``source`` (a string, or the graded cells as strings or ``(index, source)`` pairs) in a sandbox.

    ``limits`` are ``Limits`` fields (``run_timeout=10``, ``notebook_timeout=120``, ``memory_bytes=...``).
    The returned submission starts its child on the first ``run``; close it (or use ``with``) when done.

    Examples::

        with open_submission("lrn", "def lrn_inter(a, n, k, alpha, beta): ...", run_timeout=5) as sub:
            out = sub.run("lrn.forward", a=torch.randn(2, 5, 3, 3), n=2, k=0.0, alpha=1.0, beta=1.0)
    """
    return (server or default_server()).open(assignment, source, Limits.from_dict(limits))
