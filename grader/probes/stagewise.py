"""Probes of the ``stagewise`` assignment: ``stagewise_sgd(w0, grad_fn, stage_lrs, iters_per_stage)``.

Functions do not cross the process boundary, so a case describes ``grad_fn`` as data (``make_grad_fn``): the
gradient of a quadratic plus a table of offsets indexed by the step. The grader builds the very same function
from the same data for its reference, and reads the steps the student used from the iterates themselves.
"""

from __future__ import annotations

import torch

from ._common import attempt, raw, student

NAME = "stagewise_sgd"
_MISSING = object()
#: the most iterates a reply may hold (the cases ask for at most a few dozen)
MAX_ITERATES = 1000


class GradFnMisuse(Exception):
    """The student called grad_fn the wrong way (the message says how)."""


def make_grad_fn(spec: dict):
    """``grad_fn(w, step) = A @ (w - c) + offsets[step % K]`` (flattened, then back to w's shape).

    ``spec``: ``A`` (d, d), ``c`` (d,), ``offsets`` (K, d), on the device of the iterates.
    """
    A, c, offsets = spec["A"], spec["c"], spec["offsets"]

    def grad_fn(w, step=_MISSING):
        if step is _MISSING:
            raise GradFnMisuse("grad_fn takes two arguments: call grad_fn(w, step) with the step counter")
        if not isinstance(w, torch.Tensor):
            raise GradFnMisuse(f"grad_fn expects the iterate w as a torch.Tensor, got {type(w).__name__}")
        if isinstance(step, torch.Tensor) and step.numel() == 1:
            step = step.item()
        if isinstance(step, bool) or not isinstance(step, int):
            raise GradFnMisuse(f"the step passed to grad_fn must be an int, got {type(step).__name__}")
        flat = w.detach().reshape(-1)
        g = A.to(flat.dtype) @ (flat - c.to(flat.dtype)) + offsets[step % offsets.shape[0]].to(flat.dtype)
        return g.reshape(w.shape)

    return grad_fn


def run(ns, *, cases: list) -> dict:
    """``stagewise_sgd`` on each case ``{w0, spec, stage_lrs, T}``: the iterates it returned (a list, or a
    description of what else it returned) and w0 after the call."""
    def one(c):
        w0 = c["w0"]
        result = student(ns, NAME, w0, make_grad_fn(c["spec"]), list(c["stage_lrs"]), c["T"])
        if isinstance(result, (list, tuple)):
            iterates = [raw(w) for w in list(result)[:MAX_ITERATES]]
        else:
            iterates = raw(result)
        return {"iterates": iterates, "w0": w0}

    return {"results": [attempt(NAME, lambda c=c: one(c)) for c in cases]}
