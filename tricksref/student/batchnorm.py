"""Batch normalization through ``torch.nn.functional.batch_norm``, differentiated by autograd."""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["batch_norm"]


def batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps) -> torch.Tensor:
    """y for the checked arguments of :func:`tricksref.batch_norm` (running statistics updated in place)."""
    return F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)
