"""Probes for the ``dropout`` assignment.

``dropout_forward(x, p, training, generator=None) -> (out, mask)`` and
``dropout_backward(dout, mask, p) -> dx``.
A case names a seed, not a generator (objects do not cross the process boundary): the probe builds the
``torch.Generator`` on the input's device and seeds it.
"""

from __future__ import annotations

import torch

from ..guards import no_autograd
from ._common import CaseError, attempt, changed, cuda_available, student_call, tensor_out, unpack

FORWARD, BACKWARD = "dropout_forward", "dropout_backward"


def _generator(seed, device):
    if seed is None:
        return None
    return torch.Generator(device=device).manual_seed(int(seed))


def _forward_one(ns, c, device):
    x = c["x"].to(device)
    keep = x.clone()
    result = student_call(ns, FORWARD, x, c["p"], c["training"], _generator(c.get("seed"), device))
    out, mask = unpack(result, FORWARD, 2, "(out, mask)")
    out = tensor_out(out, FORWARD, "out")
    if mask is not None and not isinstance(mask, torch.Tensor):
        raise CaseError(f"{FORWARD} should return mask as a boolean torch.Tensor (or None in evaluation "
                        f"mode), got {type(mask).__name__}")
    return {"out": out.detach(), "mask": None if mask is None else mask.detach(), "device": out.device.type,
            "modified": changed(keep, x)}


def forward(ns, *, cases: list, device: str = "cpu") -> dict:
    """``dropout_forward`` on each case ``{x, p, training, seed}``: out, mask, and whether x changed."""
    if device != "cpu" and not cuda_available():
        return {"results": None, "cuda": False}
    return {"results": [attempt(_forward_one, ns, c, device) for c in cases], "cuda": device != "cpu"}


def _backward_one(ns, c):
    dout = c["dout"]
    keep = dout.clone()
    with no_autograd(BACKWARD):
        dx = student_call(ns, BACKWARD, dout, c["mask"], c["p"])
    dx = tensor_out(dx, BACKWARD, "dx")
    return {"dx": dx.detach(), "modified": changed(keep, dout)}


def backward(ns, *, cases: list) -> dict:
    """``dropout_backward(dout, mask, p)`` on each case (mask may be None), with autograd off-limits."""
    return {"results": [attempt(_backward_one, ns, c) for c in cases]}
