"""A student's submission as the grading suites see it: something that runs probes and returns data.

A *probe* is a small function in ``grader/probes/<assignment>.py`` that calls the student's functions on a
list of cases the way one test needs them and returns, for each case, the student's raw outputs (and the
inputs as they are after the call) or what went wrong, as plain data (see ``grader.transport``). It never
judges: the grader compares what comes back with references it computed itself, and validates every reply
(``grader.replies``) before it believes any of it.

Two implementations of ``Submission``:

- ``InProcessSubmission``: runs the probe here, on a namespace we already have (the student's self-check in
  their own kernel; the project's tests of the suites). Inputs and outputs still make the round trip through
  ``transport`` so both paths see the very same data.
- ``grader.sandbox``'s submission: runs the probe in a locked-down child process that executed the
  student's code (never this process).
"""

from __future__ import annotations

import abc
import importlib
import linecache
import traceback
from typing import Any

from . import transport

__all__ = ["StudentError", "GraderError", "ProbeInterference", "Submission", "InProcessSubmission",
           "resolve_probe", "call", "case_error", "Refused"]


class StudentError(Exception):
    """What went wrong on the student's side for a whole call, with a message meant for the student.

    ``kind`` is one of ``"error"`` (their code raised), ``"missing"`` (a function is not defined),
    ``"bad_output"`` (a reply that cannot be read), ``"timeout"``, ``"crash"`` (their process died: exit,
    signal, memory), ``"forbidden"`` (an off-limits call), ``"syntax"`` (the code does not compile).
    """

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message

    def __str__(self) -> str:
        return self.message


class GraderError(Exception):
    """The grader itself failed (the sandbox could not be set up, a suite made no check): never a student's
    zero; the notebook is reported to the instructor and graded again on the next run."""


class ProbeInterference(Exception):
    """A probe's reply does not have the shape the grader asked for: the student's code interfered with the
    grader's probe (or broke it). The test that asked scores 0 with this message."""


class Refused(Exception):
    """Raised in the sandbox by the stub of a function that ``grader.policy`` refused (``index``: which)."""

    def __init__(self, index: int):
        super().__init__(index)
        self.index = index


def _where(exc: BaseException) -> list[list]:
    """The last frames of the student's own code in a traceback: ``[[filename, line], ...]``."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if f.filename.startswith("<cell") or "<student>" in f.filename]
    return [[f.filename, int(f.lineno or 0)] for f in frames[-3:]]


def case_error(exc: BaseException, function: str) -> dict:
    """What went wrong when the probe called the student's ``function``, as data for the grader.

    The grader decides how much of it to show: the exception's text only in visible tests (a hidden test's
    message never repeats text the student's code could have built from the hidden inputs).
    """
    if isinstance(exc, Refused):
        return {"kind": "refused", "function": function, "index": int(exc.index)}
    if isinstance(exc, StudentError):
        return {"kind": exc.kind, "function": function, "message": str(exc.message)[:1000]}
    if isinstance(exc, NotImplementedError):
        return {"kind": "not_implemented", "function": function}
    try:
        text = str(exc)
    except BaseException:  # noqa: BLE001 - a __str__ that raises
        text = ""
    return {"kind": "raised", "function": function, "type": type(exc).__name__[:100], "message": text[:1000],
            "where": _where(exc)}


def resolve_probe(probe: str):
    """``"lrn.forward"`` -> the function ``forward`` of ``grader.probes.lrn``."""
    module, _, name = probe.rpartition(".")
    if not module or not name.isidentifier():
        raise ValueError(f"probe: expected '<assignment>.<function>', got {probe!r}")
    fn = getattr(importlib.import_module(f"grader.probes.{module}"), name, None)
    if fn is None or name.startswith("_"):
        raise ValueError(f"probe: grader.probes.{module} has no probe {name!r}")
    return fn


def call(ns: dict, name: str, *args, **kwargs):
    """Call the student's function ``name`` from namespace ``ns``; a missing one is a StudentError."""
    fn = ns.get(name)
    if fn is None:
        raise StudentError("missing", f"function {name}() is not defined: define it in the solution cell "
                                      f"(check the spelling)")
    if not callable(fn):
        raise StudentError("missing", f"{name} is defined but is not a function")
    return fn(*args, **kwargs)


class Submission(abc.ABC):
    """The student's functions, reachable only through probes that exchange plain data.

    ``refused``: the functions ``grader.policy`` refused, name -> why (the suites never call them);
    ``refusals``: the same as a list, stub ``i`` being item ``i``.
    """

    refusals: list[tuple[str, str]] = []

    @property
    def refused(self) -> dict[str, str]:
        return dict(self.refusals)

    @abc.abstractmethod
    def run(self, probe: str, /, **inputs: Any) -> dict[str, Any]:
        """Run ``probe`` on ``inputs`` against the student's code and return its reply (not yet validated).

        Raises ``StudentError`` for what ends the call as a whole (timeout, crash, missing function).
        """

    def line(self, filename: str, lineno: int) -> str | None:
        """The text of line ``lineno`` of the student's code ``filename`` (``"<cell 5>"``), or None."""
        return None

    def close(self) -> None:  # noqa: B027 (optional to override: the default holds nothing)
        """Release what the submission holds (a child process, a scratch directory)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class InProcessSubmission(Submission):
    """Runs probes in this process on ``namespace`` (trusted code only: self-check, the project's tests)."""

    def __init__(self, namespace: dict[str, Any]):
        self.namespace = namespace

    def run(self, probe: str, /, **inputs: Any) -> dict[str, Any]:
        fn = resolve_probe(probe)
        inputs = transport.decode(transport.encode(inputs))
        out = fn(self.namespace, **inputs)
        try:
            return transport.decode(transport.encode(out))
        except transport.TransportError as exc:
            raise StudentError("bad_output", f"the result could not be read: {exc}") from None

    def line(self, filename: str, lineno: int) -> str | None:
        text = linecache.getline(filename, lineno)
        return text.rstrip("\n") or None
