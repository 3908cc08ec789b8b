"""References of the ``dropout`` suites: inverted dropout where it is deterministic (evaluation mode, p = 0,
p = 1) and the backward for a given mask."""

from __future__ import annotations

import torch


def deterministic(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``tricksref.dropout`` where it draws nothing: evaluation mode, p = 0, p = 1."""
    import tricksref

    if training and 0 < p < 1:
        raise ValueError(f"p: expected 0 or 1 in training (a random mask otherwise), got {p!r}")
    return tricksref.dropout(x, p=p, training=training)


def backward(dout: torch.Tensor, mask: torch.Tensor | None, p: float) -> torch.Tensor:
    """dL/dx of inverted dropout with keep-mask ``mask``: ``dout * mask / (1 - p)`` (``dout`` for None)."""
    if mask is None:
        return dout
    if p >= 1:
        return torch.zeros_like(dout)
    return torch.where(mask, dout / (1 - p), torch.zeros_like(dout))


def visible_expected() -> dict:
    """The expected values of the visible tests' cases (``grader.expected`` ships them as data)."""
    from grader.suites import dropout as visible

    return {"eval": [deterministic(c["x"], c["p"], False) for c in visible.EVAL_CASES],
            "p0": deterministic(visible.P0_CASE["x"], 0.0, True),
            "backward": [backward(c["dout"], c["mask"], c["p"]) for c in visible.BACKWARD_SMALL]}
