"""A student's submission as the grading suites see it: something that runs probes and returns data.

A *probe* is a small function in ``grader/probes/<assignment>.py`` that calls the student's functions the way
one test needs (forward, then backward through autograd; forward then the student's own backward with the
cache it returned; a seeded generator built from a seed; ...) and returns plain data (see
``grader.transport``)::

    def forward(ns, *, a, n, k, alpha, beta):           # ns: the student's namespace
        out = call(ns, "lrn_inter", a, n, k, alpha, beta)
        return {"b": out}

A suite asks ``sub.run("lrn.forward", a=..., n=...)`` and compares what comes back with ``tricksref``, in its
own process. Two implementations share this interface:

- ``InProcessSubmission``: runs the probe here, on a namespace we already have (the student's self-check in
  their own kernel; the project's tests of the suites against the reference and against known bugs). Inputs
  and outputs still make the round trip through ``transport`` so both paths see the very same data.
- ``grader.sandbox``'s submission: runs the probe in a locked-down child process that executed the
  student's code (never this process).

A probe reports the student's mistakes by raising ``StudentError``; any other exception escaping a probe is
the student's code raising, reported with its type and message (never the grader's traceback).
"""

from __future__ import annotations

import abc
import importlib
import traceback
from typing import Any

from . import transport

__all__ = ["StudentError", "Submission", "InProcessSubmission", "resolve_probe", "call", "describe_exception"]


class StudentError(Exception):
    """What went wrong on the student's side, with a message meant for the student.

    ``kind`` is one of ``"error"`` (their code raised), ``"missing"`` (a function is not defined),
    ``"bad_output"`` (wrong type, shape, dtype), ``"timeout"``, ``"crash"`` (their process died: exit,
    signal, memory), ``"forbidden"`` (an off-limits call), ``"syntax"`` (the code does not compile).
    """

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message

    def __str__(self) -> str:
        return self.message


def describe_exception(exc: BaseException, limit: int = 1200) -> str:
    """One readable paragraph: type, message and the last frames of the student's own code."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if "<student>" in f.filename or f.filename.startswith("<cell")]
    where = "".join(f"  line {f.lineno}, in {f.name}: {f.line or ''}\n" for f in frames[-3:])
    text = f"{type(exc).__name__}: {exc}\n{where}".rstrip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
        raise StudentError("missing", f"{name} is defined but is not a function (got {type(fn).__name__})")
    return fn(*args, **kwargs)


class Submission(abc.ABC):
    """The student's functions, reachable only through probes that exchange plain data."""

    @abc.abstractmethod
    def run(self, probe: str, /, **inputs: Any) -> dict[str, Any]:
        """Run ``probe`` on ``inputs`` against the student's code and return its outputs.

        Raises ``StudentError`` for anything the student's code did wrong (including timeouts and crashes).
        """

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
        try:
            out = fn(self.namespace, **inputs)
        except StudentError:
            raise
        except Exception as exc:
            raise StudentError("error", describe_exception(exc)) from None
        try:
            return transport.decode(transport.encode(out))
        except transport.TransportError as exc:
            raise StudentError("bad_output", f"the result could not be read: {exc}") from None
