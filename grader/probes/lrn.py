"""Probes for the ``lrn`` assignment: ``lrn_inter(a, n, k, alpha, beta)`` and ``lrn_intra`` (same args)."""

from __future__ import annotations

import torch

from ._common import CaseError, attempt, changed, cuda_available, student_call, tensor_out

FUNCTIONS = ("lrn_inter", "lrn_intra")


def _check_fn(fn: str) -> str:
    if fn not in FUNCTIONS:
        raise ValueError(f"fn: expected one of {FUNCTIONS}, got {fn!r}")
    return fn


def _forward_one(ns, fn, case, device):
    a = case["a"].to(device)
    before = a.clone()
    out = tensor_out(student_call(ns, fn, a, case["n"], case["k"], case["alpha"], case["beta"]), fn)
    return {"out": out.detach(), "device": out.device.type, "modified": changed(before, a)}


def forward(ns, *, fn: str, cases: list, device: str = "cpu") -> dict:
    """``fn`` on each case ``{a, n, k, alpha, beta}``: its output, its device, and whether ``a`` changed."""
    _check_fn(fn)
    if device != "cpu" and not cuda_available():
        return {"results": None, "cuda": False}
    return {"results": [attempt(_forward_one, ns, fn, c, device) for c in cases], "cuda": device != "cpu"}


def _grad_one(ns, fn, case):
    a = case["a"].clone().requires_grad_(True)
    out = tensor_out(student_call(ns, fn, a, case["n"], case["k"], case["alpha"], case["beta"]), fn)
    if not out.requires_grad:
        raise CaseError(f"{fn}'s result is not connected to its input by autograd: avoid .detach(), "
                        f".numpy(), .item(), torch.no_grad() and tensors rebuilt from Python numbers")
    if out.shape != case["g"].shape:
        raise CaseError(f"{fn} returned a tensor whose shape differs from its input's")
    (grad,) = torch.autograd.grad(out, a, grad_outputs=case["g"].to(out.dtype), allow_unused=True)
    if grad is None:
        raise CaseError(f"{fn}'s result does not depend on its input through autograd")
    result = {"grad": grad.detach()}
    if "v" in case:  # a directional derivative of the student's own forward, by central differences
        h = case["h"]
        with torch.no_grad():
            plus = student_call(ns, fn, case["a"] + h * case["v"], case["n"], case["k"], case["alpha"],
                                case["beta"])
            minus = student_call(ns, fn, case["a"] - h * case["v"], case["n"], case["k"], case["alpha"],
                                 case["beta"])
        plus, minus = tensor_out(plus, fn), tensor_out(minus, fn)
        result["plus"] = float((plus.double() * case["g"]).sum())
        result["minus"] = float((minus.double() * case["g"]).sum())
    return result


def grad(ns, *, fn: str, cases: list) -> dict:
    """Autograd through ``fn``: the gradient of ``sum(g * fn(a, ...))`` w.r.t. ``a`` for each case.

    A case with a direction ``v`` and a step ``h`` also gets ``sum(g * fn(a +- h v))``, so that the grader
    can compare autograd with central differences of the student's own forward.
    """
    _check_fn(fn)
    return {"results": [attempt(_grad_one, ns, fn, c) for c in cases]}
