"""Local response normalization through ``torch.nn.functional.local_response_norm``, all four variants.

- inter, torch: the operator itself.
- inter, alexnet: the operator with an odd window of ``2*floor(n/2) + 1`` taps and alpha times the number of
  taps (torch divides alpha by its window size; the lecture does not).
- intra (both conventions): torch has no operator that sums over positions, so each position's
  neighbourhood is gathered (zero padding, then ``Tensor.unfold`` along every spatial dim) into a
  "channel" axis of T neighbours, and the operator, with a window of 2T + 1 channels centred on the
  position's own entry, sums across all of them; alpha is scaled back by that window size. The output keeps
  a channels_last input's layout; its gradient comes back contiguous (the solutions edition keeps it).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

__all__ = ["local_response_norm"]


def local_response_norm(x: torch.Tensor, size: int, alpha: float, beta: float, k: float, mode: str,
                        convention: str) -> torch.Tensor:
    """b for the checked arguments of :func:`tricksref.local_response_norm` (float32 or float64 x)."""
    if mode == "inter":
        if convention == "torch":
            return F.local_response_norm(x, size, alpha, beta, k)
        taps = 2 * (size // 2) + 1
        return F.local_response_norm(x, taps, alpha * taps, beta, k)
    before, after = (size // 2, (size - 1) // 2) if convention == "torch" else (size // 2, size // 2)
    spatial = x.shape[2:]
    d = len(spatial)
    if convention == "torch":
        alpha = alpha / size ** d  # torch's convention averages over the n^d window
    taps = before + after + 1
    pad = [before if i % 2 == 0 else after for i in range(2 * d)]  # F.pad: last dim first, (before, after)
    z = F.pad(x, pad)
    for dim in range(2, 2 + d):
        z = z.unfold(dim, taps, 1)  # (N, C, *spatial, taps, ..., taps) once every dim is unfolded
    T = taps**d
    centre = sum(before * taps**i for i in range(d))  # the position itself in the flattened window
    m = math.prod(x.shape)
    z = z.reshape(m, T, 1)  # (N C prod(spatial), T, 1): the neighbours as channels
    window = 2 * T + 1  # wide enough that the centre's window holds all T channels
    b = F.local_response_norm(z, window, alpha * window, beta, k)[:, centre, 0]
    b = b.reshape(x.shape)
    if x.dim() in (4, 5) and not x.is_contiguous() and x.is_contiguous(
            memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d):
        b = b.contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
    return b
