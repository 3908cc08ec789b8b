"""Helpers shared by the probes (child side): call one case, keep its error, check what came back.

A probe runs a list of cases in one call (one round trip per test, not per case) and returns, for each case,
either the student's outputs or the reason the case failed, so that one case crashing costs that case only.
``StudentError`` (a missing function, an off-limits call, a timeout) is not per case: it ends the probe.
"""

from __future__ import annotations

import torch

from ..submission import StudentError, describe_exception


class CaseError(Exception):
    """One case went wrong on the student's side; the message is for the student."""


def attempt(fn, *args, **kwargs) -> dict:
    """``{"value": fn(...)}`` or ``{"error": message}``; StudentError passes through."""
    try:
        return {"value": fn(*args, **kwargs), "error": None}
    except StudentError:
        raise
    except CaseError as exc:
        return {"value": None, "error": str(exc)}
    except Exception as exc:
        return {"value": None, "error": describe_exception(exc, limit=400)}


def student_call(ns: dict, name: str, *args, **kwargs):
    """Call the student's ``name``; an exception it raises becomes a CaseError naming the function."""
    from ..submission import call

    try:
        return call(ns, name, *args, **kwargs)
    except (StudentError, CaseError):  # a CaseError: raised by a probe's own callback (e.g. grad_fn)
        raise
    except NotImplementedError:
        raise CaseError(f"{name} is not written yet (it raises NotImplementedError): replace the "
                        f"`raise NotImplementedError()` with your code") from None
    except Exception as exc:
        raise CaseError(f"{name} raised {describe_exception(exc, limit=400)}") from None


def tensor_out(value, name: str, what: str = "its result") -> torch.Tensor:
    """``value`` if it is a tensor, else a CaseError saying what ``name`` returned instead."""
    if isinstance(value, torch.Tensor):
        return value
    raise CaseError(f"{name} should return {what} as a torch.Tensor, got {type(value).__name__}")


def unpack(value, name: str, count: int, what: str) -> tuple:
    """``value`` as a tuple of ``count`` items (``what`` names them), else a CaseError."""
    if not isinstance(value, (tuple, list)) or len(value) != count:
        got = (f"a {type(value).__name__} of length {len(value)}" if isinstance(value, (tuple, list))
               else type(value).__name__)
        raise CaseError(f"{name} should return a tuple {what}, got {got}")
    return tuple(value)


def changed(before: torch.Tensor, after: torch.Tensor) -> bool:
    """Whether a tensor handed to the student was modified (in place) by their code."""
    if before.shape != after.shape or before.dtype != after.dtype:
        return True
    return not torch.equal(before.cpu(), after.detach().cpu())


def to_device(t, device: str):
    return t.to(device) if isinstance(t, torch.Tensor) else t


def cuda_available() -> bool:
    try:
        return bool(torch.cuda.is_available())
    except Exception:  # a child without access to the driver
        return False
