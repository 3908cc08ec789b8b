"""Label smoothing (Szegedy et al., 2016): train on soft targets instead of one-hot ones.

The smoothed target of a label y over K classes is

    q_k = (1 - eps) * [k == y] + eps / K,

so every class keeps a little probability mass and the network is not pushed towards infinite logits.
Mixup and CutMix (``tricksref.augment``) build their soft targets with ``smooth_one_hot``, which is how label
smoothing composes with them; ``label_smoothing_cross_entropy`` and ``LabelSmoothingCrossEntropy`` take either
integer labels or such soft targets and smooth them in the loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_choice, check_float_tensor, check_number

__all__ = ["smooth_one_hot", "label_smoothing_cross_entropy", "LabelSmoothingCrossEntropy"]

_REDUCTIONS = ("mean", "sum", "none")


def smooth_one_hot(target: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """One-hot encode integer labels and smooth them: ``(1 - eps) * onehot + eps / K``.

    Args:
        target: integer class labels, shape (B,), values in [0, num_classes).
        num_classes: K, the number of classes (>= 1).
        smoothing: eps in [0, 1]; 0 gives the plain one-hot encoding.

    Returns:
        A float32 tensor of shape (B, K) on ``target``'s device whose rows sum to 1.

    Examples::

        >>> smooth_one_hot(torch.tensor([2, 0]), 3, smoothing=0.3)   # 1 - eps + eps / K = 0.8 on the label
        tensor([[0.1000, 0.1000, 0.8000],
                [0.8000, 0.1000, 0.1000]])
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


def label_smoothing_cross_entropy(logits: torch.Tensor, target: torch.Tensor, smoothing: float = 0.0,
                                  reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy against label-smoothed targets (Szegedy et al., 2016; He et al., 2019).

    With p = softmax(z) over K classes and a target distribution q, each example's loss is

        loss = -sum_k q'_k log p_k,     q' = (1 - eps) * q + eps / K,

    where q is the one-hot vector of an integer label y, or a soft target row as given (mixup and cutmix
    produce those). For an integer label this is ``(1 - eps) * (-log p_y) + eps * mean_k(-log p_k)``.

    Notes:
        - The same convention as ``torch.nn.functional.cross_entropy(logits, target, label_smoothing=eps)``
          for both kinds of target: eps / K goes to every class, the true one included (so the true class gets
          1 - eps + eps / K), and soft targets are smoothed too.
        - ``reduction="mean"`` averages over the B examples (no class weights, no ignored index).
        - Integer labels are checked to lie in [0, K), which reads them back from the device once per call.

    Args:
        logits: unnormalized scores z, floating point, shape (B, K).
        target: integer class labels of shape (B,), or soft targets (rows of probabilities), floating point,
            shape (B, K).
        smoothing: eps in [0, 1]; 0 gives the plain cross-entropy. Default: 0.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (the per-example losses, shape (B,)).
            Default: ``"mean"``.

    Shape:
        - logits: (B, K); target: (B,) integer or (B, K) floating point.
        - Output: a scalar, or (B,) with ``reduction="none"``.

    Examples::

        >>> logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
        >>> y = torch.tensor([0, 1])
        >>> label_smoothing_cross_entropy(logits, y, smoothing=0.1)
        tensor(0.4421)
        >>> torch.nn.functional.cross_entropy(logits, y, label_smoothing=0.1)   # torch's, the same
        tensor(0.4421)
        >>> y_soft = 0.7 * smooth_one_hot(y, 3) + 0.3 * smooth_one_hot(y.flip(0), 3)   # mixup's targets
        >>> label_smoothing_cross_entropy(logits, y_soft, smoothing=0.1)
        tensor(0.8471)
    """
    check_float_tensor(logits, "logits")
    if logits.dim() != 2:
        raise ValueError(f"logits: expected shape (B, K), got {logits.dim()}D with shape "
                         f"{tuple(logits.shape)}")
    eps = float(check_number(smoothing, "smoothing", low=0.0, high=1.0))
    check_choice(reduction, _REDUCTIONS, "reduction")
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target: expected a tensor of labels (B,) or soft targets (B, K), got "
                        f"{type(target).__name__}")
    if target.device != logits.device:
        raise ValueError(f"target: expected a tensor on logits' device {logits.device}, got {target.device}")
    B, K = logits.shape
    log_p = F.log_softmax(logits, dim=1)  # (B, K)

    if target.is_floating_point():
        if target.shape != logits.shape:
            raise ValueError(f"target: expected soft targets of logits' shape (B, K) = {(B, K)}, got "
                             f"{tuple(target.shape)}; integer labels have shape (B,)")
        q = (1.0 - eps) * target.to(log_p.dtype) + eps / K  # (B, K)
        loss = -(q * log_p).sum(dim=1)  # (B,)
    else:
        if target.dtype == torch.bool or target.is_complex():
            raise TypeError(f"target: expected integer labels or floating-point soft targets, "
                            f"got {target.dtype}")
        if target.shape != (B,):
            raise ValueError(f"target: expected integer labels of shape (B,) = ({B},), got "
                             f"{tuple(target.shape)}; soft targets must be floating point, shape (B, K)")
        if B and (int(target.min()) < 0 or int(target.max()) >= K):
            raise ValueError(f"target: expected labels in [0, {K}), got values in "
                             f"[{int(target.min())}, {int(target.max())}]")
        nll = -log_p.gather(1, target.long().unsqueeze(1)).squeeze(1)  # -log p_y, (B,)
        uniform = -log_p.mean(dim=1)                                    # mean_k(-log p_k), (B,)
        loss = (1.0 - eps) * nll + eps * uniform

    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


class LabelSmoothingCrossEntropy(nn.Module):
    """Cross-entropy with label smoothing, as a module; see ``label_smoothing_cross_entropy``.

    Accepts integer labels (B,) and soft targets (B, K) alike, so one criterion serves plain batches and
    mixup/cutmix batches.

    Args:
        smoothing: eps in [0, 1]. Default: 0.1 (Szegedy et al., 2016; He et al., 2019).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``. Default: ``"mean"``.

    Shape:
        - Input: logits (B, K); target (B,) integer or (B, K) floating point.
        - Output: a scalar, or (B,) with ``reduction="none"``.

    Examples::

        >>> criterion = LabelSmoothingCrossEntropy(smoothing=0.1)
        >>> model = torch.nn.Linear(4, 3)
        >>> x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
        >>> loss = criterion(model(x), y)
        >>> loss.backward()
        >>> criterion
        LabelSmoothingCrossEntropy(smoothing=0.1, reduction='mean')
    """

    def __init__(self, smoothing: float = 0.1, reduction: str = "mean") -> None:
        super().__init__()
        self.smoothing = float(check_number(smoothing, "smoothing", low=0.0, high=1.0))
        self.reduction = check_choice(reduction, _REDUCTIONS, "reduction")

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return label_smoothing_cross_entropy(logits, target, self.smoothing, self.reduction)

    def extra_repr(self) -> str:
        return f"smoothing={self.smoothing}, reduction={self.reduction!r}"
