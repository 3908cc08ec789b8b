"""Label smoothing (Szegedy et al., 2016): train on soft targets instead of one-hot ones.

The smoothed target of a label y over K classes is

    q_k = (1 - eps) * [k == y] + eps / K,

so every class keeps a little probability mass and the network is not pushed towards infinite logits.
Mixup and CutMix (``tricksref.augment``) build their soft targets with ``smooth_one_hot``, which is how label
smoothing composes with them.
"""

from __future__ import annotations

import torch

from ._checks import check_number

__all__ = ["smooth_one_hot"]


def smooth_one_hot(target: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """One-hot encode integer labels and smooth them: ``(1 - eps) * onehot + eps / K``.

    Args:
        target: integer class labels, shape (B,), values in [0, num_classes).
        num_classes: K, the number of classes (>= 1).
        smoothing: eps in [0, 1]; 0 gives the plain one-hot encoding.

    Returns:
        A float32 tensor of shape (B, K) on ``target``'s device whose rows sum to 1.
    """
    if not isinstance(target, torch.Tensor) or target.is_floating_point() or target.is_complex():
        raise TypeError(f"target: expected an integer tensor of class labels, got "
                        f"{getattr(target, 'dtype', type(target).__name__)}")
    if target.dim() != 1:
        raise ValueError(f"target: expected shape (B,), got {tuple(target.shape)}")
    check_number(num_classes, "num_classes", low=1, integer=True)
    check_number(smoothing, "smoothing", low=0.0, high=1.0)
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= num_classes):
        raise ValueError(f"target: expected labels in [0, {num_classes}), got values in "
                         f"[{int(target.min())}, {int(target.max())}]")
    q = torch.full((target.shape[0], num_classes), smoothing / num_classes, device=target.device)
    q.scatter_(1, target.long().unsqueeze(1), 1.0 - smoothing + smoothing / num_classes)
    return q
