"""Probes for the ``stagewise`` assignment: ``stagewise_sgd(w0, grad_fn, stage_lrs, iters_per_stage)``.

Functions do not cross the process boundary, so a case describes ``grad_fn`` as data (``make_grad_fn``): the
gradient of a quadratic plus a table of offsets indexed by the step. The grader builds the very same function
from the same data for the reference.
"""

from __future__ import annotations

import torch

from ._common import CaseError, attempt, changed, cuda_available, student_call, tensor_out

NAME = "stagewise_sgd"
_MISSING = object()


def make_grad_fn(spec: dict, record: list | None = None):
    """``grad_fn(w, step) = A @ (w - c) + offsets[step % K]`` (flattened), recording each step in ``record``.

    ``spec``: ``A`` (d, d), ``c`` (d,), ``offsets`` (K, d), on the device of the iterates.
    """
    A, c, offsets = spec["A"], spec["c"], spec["offsets"]

    def grad_fn(w, step=_MISSING):
        if step is _MISSING:
            raise CaseError("grad_fn takes two arguments: call grad_fn(w, step) with the step counter")
        if not isinstance(w, torch.Tensor):
            raise CaseError(f"grad_fn expects the iterate w as a torch.Tensor, got {type(w).__name__}")
        if isinstance(step, torch.Tensor) and step.numel() == 1:
            step = step.item()
        if isinstance(step, bool) or not isinstance(step, int):
            raise CaseError(f"the step passed to grad_fn must be an int, got {type(step).__name__}")
        if record is not None:
            record.append(step)
        flat = w.detach().reshape(-1)
        g = A.to(flat.dtype) @ (flat - c.to(flat.dtype)) + offsets[step % offsets.shape[0]].to(flat.dtype)
        return g.reshape(w.shape)

    return grad_fn


def run(ns, *, cases: list, device: str = "cpu") -> dict:
    """``stagewise_sgd`` on each case ``{w0, spec, stage_lrs, T}``: the iterates, the steps ``grad_fn`` saw,
    whether ``w0`` changed, and whether two iterates share memory (the same tensor appended twice)."""
    if device != "cpu" and not cuda_available():
        return {"results": None, "cuda": False}
    return {"results": [attempt(_run_one, ns, c, device) for c in cases], "cuda": device != "cpu"}


def _run_one(ns, c, device):
    w0 = c["w0"].to(device)
    keep = w0.clone()
    spec = {k: v.to(device) for k, v in c["spec"].items()}
    steps: list = []
    result = student_call(ns, NAME, w0, make_grad_fn(spec, steps), list(c["stage_lrs"]), c["T"])
    if not isinstance(result, (list, tuple)):
        raise CaseError(f"{NAME} should return a list of tensors (the iterate after each update), got "
                        f"{type(result).__name__}")
    iterates = [tensor_out(w, NAME, "each iterate") for w in result]
    ptrs = [w.data_ptr() for w in iterates if w.numel()]
    return {"iterates": [w.detach() for w in iterates], "steps": steps,
            "w0_modified": changed(keep, w0), "aliased": len(set(ptrs)) < len(ptrs),
            "device": iterates[0].device.type if iterates else device}
