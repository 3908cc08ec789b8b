"""Probes of the ``dropout`` assignment.

``dropout_forward(x, p, training, generator=None) -> (out, mask)`` and
``dropout_backward(dout, mask, p) -> dx``. A case names a seed, not a generator (objects do not cross the
process boundary): the probe builds the ``torch.Generator`` and seeds it.
"""

from __future__ import annotations

import torch

from ..guards import no_autograd
from ._common import attempt, pair, raw, student

FORWARD, BACKWARD = "dropout_forward", "dropout_backward"


def forward(ns, *, cases: list) -> dict:
    """``dropout_forward`` on each case ``{x, p, training, seed}``: ``out``, ``mask`` and x after the call."""
    def one(c):
        generator = None if c.get("seed") is None else torch.Generator().manual_seed(int(c["seed"]))
        out, mask = pair(FORWARD, student(ns, FORWARD, c["x"], c["p"], c["training"], generator), 2,
                         "(out, mask)")
        return {"out": raw(out), "mask": raw(mask), "x": c["x"]}

    return {"results": [attempt(FORWARD, lambda c=c: one(c)) for c in cases]}


def backward(ns, *, cases: list) -> dict:
    """``dropout_backward(dout, mask, p)`` on each case (mask may be None), with autograd off limits:
    ``dx`` and dout after the call."""
    def one(c):
        with no_autograd(BACKWARD):
            dx = student(ns, BACKWARD, c["dout"], c["mask"], c["p"])
        return {"dx": raw(dx), "dout": c["dout"]}

    return {"results": [attempt(BACKWARD, lambda c=c: one(c)) for c in cases]}
