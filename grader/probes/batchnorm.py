"""Probes for the ``batchnorm`` assignment.

``batchnorm_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5)
-> (out, cache)`` and ``batchnorm_backward(dout, cache) -> (dx, dgamma, dbeta)``.
"""

from __future__ import annotations

import torch

from ..guards import no_autograd
from ._common import CaseError, attempt, changed, cuda_available, student_call, tensor_out, unpack

FORWARD, BACKWARD = "batchnorm_forward", "batchnorm_backward"


def _call_forward(ns, c, x, running_mean, running_var):
    kwargs = {k: c[k] for k in ("momentum", "eps") if c.get(k) is not None}
    result = student_call(ns, FORWARD, x, c["gamma"], c["beta"], running_mean, running_var, c["training"],
                          **kwargs)
    out, cache = unpack(result, FORWARD, 2, "(out, cache)")
    return tensor_out(out, FORWARD, "out"), cache


def _forward_one(ns, c, device):
    c = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in c.items()}
    keep = {k: c[k].clone() for k in ("x", "gamma", "beta")}
    rm, rv = c["running_mean"], c["running_var"]
    out, _ = _call_forward(ns, c, c["x"], rm, rv)
    return {"out": out.detach(), "device": out.device.type,
            "running_mean": rm, "running_var": rv,
            "modified": [k for k in ("x", "gamma", "beta") if changed(keep[k], c[k])]}


def forward(ns, *, cases: list, device: str = "cpu") -> dict:
    """``batchnorm_forward`` on each case: ``out``, the running statistics after the call (the very tensors
    passed in, updated in place or not), and which of x, gamma, beta it modified."""
    if device != "cpu" and not cuda_available():
        return {"results": None, "cuda": False}
    return {"results": [attempt(_forward_one, ns, c, device) for c in cases], "cuda": device != "cpu"}


def _backward_one(ns, c):
    # the student gets copies: a forward that modifies its inputs must not spoil the numeric check below
    c = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in c.items()}
    keep = {k: c[k].clone() for k in ("x", "gamma", "beta")}
    out, cache = _call_forward(ns, dict(c, gamma=c["gamma"].clone(), beta=c["beta"].clone()), c["x"].clone(),
                               c["running_mean"].clone(), c["running_var"].clone())
    if out.shape != c["dout"].shape:
        raise CaseError(f"{FORWARD} returned an out whose shape differs from x's")
    with no_autograd(BACKWARD):
        grads = student_call(ns, BACKWARD, c["dout"].to(out.dtype), cache)
    dx, dgamma, dbeta = unpack(grads, BACKWARD, 3, "(dx, dgamma, dbeta)")
    result = {name: tensor_out(t, BACKWARD, name).detach()
              for name, t in (("dx", dx), ("dgamma", dgamma), ("dbeta", dbeta))}
    if "vx" in c:  # the student's own forward at x +- h v (for a numeric check of their backward)
        h = c["h"]
        sums = []
        for sign in (1.0, -1.0):
            moved = dict(c, gamma=keep["gamma"] + sign * h * c["vgamma"],
                         beta=keep["beta"] + sign * h * c["vbeta"])
            o, _ = _call_forward(ns, moved, keep["x"] + sign * h * c["vx"], c["running_mean"].clone(),
                                 c["running_var"].clone())
            sums.append(float((o.detach().double() * c["dout"]).sum()))
        result["plus"], result["minus"] = sums
    return result


def backward(ns, *, cases: list) -> dict:
    """A training forward, then ``batchnorm_backward(dout, cache)`` with autograd off-limits, on each case.

    A case with directions ``vx, vgamma, vbeta`` and a step ``h`` also gets ``sum(dout * out)`` at the moved
    inputs, so the grader can compare the student's backward with central differences of their forward.
    """
    return {"results": [attempt(_backward_one, ns, c) for c in cases]}
