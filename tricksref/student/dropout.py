"""Dropout through ``torch.nn.functional.dropout``, with tricksref's ``generator`` semantics."""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["dropout"]

_INT64_MIN = -(2**63)


def dropout(x: torch.Tensor, p: float, generator: torch.Generator | None, inplace: bool) -> torch.Tensor:
    """Inverted dropout in training, for 0 < p <= 1 and a non-empty x (the caller checked the arguments).

    With a generator: one seed is drawn from it (so it advances, and the same state gives the same mask) and
    ``F.dropout`` runs on the global RNG seeded with it, inside ``torch.random.fork_rng`` so that the global
    RNG is left as it was.
    """
    if p == 1.0:  # exact zeros and zero gradients, also for inf and NaN (F.dropout multiplies by 0: NaN)
        if inplace:
            return x.zero_()
        return torch.where(torch.zeros_like(x, dtype=torch.bool), x, torch.zeros((), dtype=x.dtype,
                                                                                 device=x.device))
    if generator is None:
        return F.dropout(x, p, True, inplace)
    seed = int(torch.empty((), dtype=torch.int64, device=generator.device).random_(
        _INT64_MIN, None, generator=generator))
    cuda = [x.device.index if x.device.index is not None else torch.cuda.current_device()] \
        if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed % 2**63)  # manual_seed takes a non-negative seed
        return F.dropout(x, p, True, inplace)
