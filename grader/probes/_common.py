"""Helpers shared by the probes (the sandbox's side): call the student's function, keep what it returned.

A probe runs a list of cases in one call (one round trip per test, not per case) and returns, for each case,
``{"value": {...}}`` (the student's raw outputs and the case's inputs as they are after the call) or
``{"error": {...}}`` (``grader.submission.case_error``), so that one case going wrong costs that case only.
Nothing here judges the outputs: the grader does, with its own references, after validating the reply.
"""

from __future__ import annotations

import torch

from ..submission import StudentError, call, case_error

__all__ = ["attempt", "raw", "pair", "student"]


class BadReturn(Exception):
    """The student's function returned something of the wrong structure (not a tuple of the right length)."""

    def __init__(self, function: str, got, expected: str):
        super().__init__(function)
        self.error = {"kind": "bad_return", "function": function, "type": type(got).__name__[:100],
                      "len": len(got) if isinstance(got, (tuple, list)) else None, "expected": expected}


def attempt(function: str, thunk) -> dict:
    """``{"value": thunk()}``, or ``{"error": ...}`` describing what the student's ``function`` did wrong.

    ``function`` is the student function the case calls first (a backward case calls the forward first:
    ``thunk`` may raise ``_Blame`` to name another one).
    """
    try:
        return {"value": thunk()}
    except BadReturn as exc:
        return {"error": exc.error}
    except _Blame as exc:
        return {"error": case_error(exc.cause, exc.function)}
    except RecursionError:
        return {"error": {"kind": "raised", "function": function, "type": "RecursionError",
                          "message": "maximum recursion depth exceeded", "where": []}}
    except Exception as exc:  # the student's code may raise anything
        return {"error": case_error(exc, function)}


class _Blame(Exception):
    def __init__(self, function: str, cause: BaseException):
        super().__init__(function)
        self.function, self.cause = function, cause


def student(ns: dict, name: str, *args, **kwargs):
    """Call the student's ``name``; whatever it raises is reported as ``name``'s error."""
    try:
        return call(ns, name, *args, **kwargs)
    except (BadReturn, _Blame):
        raise
    except StudentError as exc:
        raise _Blame(name, exc) from None
    except Exception as exc:
        raise _Blame(name, exc) from None


def raw(value):
    """What the student returned, as plain data: a tensor (detached, a plain ``torch.Tensor``), None, or a
    description ``{"type": name}`` of anything else."""
    if isinstance(value, torch.Tensor):
        return torch.Tensor.detach(value)
    if value is None:
        return None
    return {"type": type(value).__name__[:100]}


def pair(function: str, value, count: int, expected: str) -> tuple:
    """``value`` as a tuple of ``count`` items, else ``BadReturn`` (``expected`` names them)."""
    if not isinstance(value, (tuple, list)) or len(value) != count:
        raise BadReturn(function, value, expected)
    return tuple(value)
