"""Mixing augmentations: mixup and CutMix, with soft labels that compose with label smoothing.

mixup (Zhang, Cisse, Dauphin and Lopez-Paz, 2018, "mixup: Beyond Empirical Risk Minimization",
arXiv:1710.09412) trains on convex combinations of pairs of examples and of their labels:

    x~ = lambda x_i + (1 - lambda) x_j,    y~ = lambda y_i + (1 - lambda) y_j,    lambda ~ Beta(alpha, alpha).

CutMix (Yun, Han, Oh, Chun, Choe and Yoo, 2019, "CutMix: Regularization Strategy to Train Strong Classifiers
with Localizable Features", arXiv:1905.04899) pastes a box of x_j into x_i instead of blending, and mixes the
labels by area:

    x~ = M * x_i + (1 - M) * x_j,    y~ = lambda' y_i + (1 - lambda') y_j,

where the box has the centre (r_y, r_x) uniform over the image and sides H sqrt(1 - lambda) by
W sqrt(1 - lambda), is clipped to the image, and lambda' = 1 - (box area) / (H W) is the share of x_i that is
actually left after clipping.

Conventions:

* The partner j of image i is ``index[i]`` for a uniformly random permutation ``index`` of the batch, as in
  both papers' code (torchvision v2's MixUp and CutMix pair each image with its neighbour instead).
* lambda is drawn once per batch, as in both papers (one box per batch for CutMix); ``per_image=True``
  draws one lambda (and one box) per image instead.
* The labels y_i are ``smooth_one_hot(y, num_classes, label_smoothing)`` (``tricksref.label_smoothing``):
  smoothing is affine in the one-hot vector, so smoothing the mixed labels and mixing the smoothed labels
  are the same thing, and every soft label sums to 1.
* lambda ~ Beta(alpha, alpha) is drawn from the given generator as G1 / (G1 + G2) with G1, G2 ~ Gamma(alpha)
  (``torch.distributions`` takes no generator); the Gamma variates come from Marsaglia and Tsang's (2000)
  method, in log space so that small alpha (lambda near 0 or 1) does not underflow.
* uint8 images: mixup blends in float32 and rounds to the nearest level; CutMix copies pixels, exact for
  every dtype.
"""

from __future__ import annotations

import math

import torch

from .._checks import check_number
from ..label_smoothing import smooth_one_hot
from ._common import check_generator, check_image, draw_device, rand, to_work

__all__ = ["mixup", "cutmix"]

_CANDIDATES = 8  # Marsaglia-Tsang proposals per variate per round; each is accepted with probability > 0.95


def _log_gamma(shape: float, n: int, generator: torch.Generator | None) -> torch.Tensor:
    """log of n Gamma(shape, 1) variates, float64, on the generator's device.

    Marsaglia and Tsang (2000): for a >= 1, with d = a - 1/3, c = 1 / sqrt(9 d), z ~ N(0, 1), u ~ U(0, 1),
    v = (1 + c z)^3, accept d v when v > 0 and log u < z^2 / 2 + d - d v + d log v. Every variate is drawn
    for a + 1 and boosted, G(a) = G(a + 1) U^(1/a), which is valid for every a > 0.
    """
    device = draw_device(generator)
    d = shape + 1.0 - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    out = torch.empty(n, dtype=torch.float64, device=device)
    todo = torch.ones(n, dtype=torch.bool, device=device)
    while bool(todo.any()):
        z = torch.randn((n, _CANDIDATES), generator=generator, dtype=torch.float64, device=device)
        u = torch.rand((n, _CANDIDATES), generator=generator, dtype=torch.float64, device=device)
        v = (1.0 + c * z) ** 3
        log_v = torch.log(v.clamp(min=1e-300))
        ok = (v > 0) & (torch.log(u) < 0.5 * z * z + d - d * v + d * log_v)
        first = ok.to(torch.uint8).argmax(dim=1, keepdim=True)
        got = ok.any(dim=1) & todo
        out = torch.where(got, math.log(d) + log_v.gather(1, first).squeeze(1), out)
        todo = todo & ~got
    boost = torch.log(torch.rand(n, generator=generator, dtype=torch.float64, device=device)) / shape
    return out + boost


def _sample_beta(a: float, b: float, n: int, generator: torch.Generator | None) -> torch.Tensor:
    """n Beta(a, b) variates, G1 / (G1 + G2) = sigmoid(log G1 - log G2), float64, on the generator's device"""
    return torch.sigmoid(_log_gamma(a, n, generator) - _log_gamma(b, n, generator))


def _soft_targets(y, num_classes, label_smoothing, batch: int, device, dtype) -> torch.Tensor:
    """Smoothed one-hot targets (B, K) from integer labels (B,) or soft labels (B, K)."""
    check_number(num_classes, "num_classes", low=1, integer=True)
    check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"y: expected a tensor of class labels (B,) or soft labels (B, K), got "
                        f"{type(y).__name__}")
    if y.is_floating_point():
        if tuple(y.shape) != (batch, num_classes):
            raise ValueError(f"y: expected soft labels of shape (B, num_classes) = ({batch}, {num_classes}) "
                             f"or class labels of shape (B,) = ({batch},), got shape {tuple(y.shape)}")
        q = y.to(device=device, dtype=dtype)
        return q * (1.0 - label_smoothing) + label_smoothing / num_classes
    if y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"y: expected integer class labels or float soft labels, got dtype {y.dtype}")
    if tuple(y.shape) != (batch,):
        raise ValueError(f"y: expected class labels of shape (B,) = ({batch},) to match x, got shape "
                         f"{tuple(y.shape)}")
    try:
        q = smooth_one_hot(y.to(device), num_classes, label_smoothing)
    except ValueError as err:  # labels out of range: say which argument they came from
        raise ValueError(f"y: {err}") from None
    return q.to(dtype)


def _common_args(x, alpha, generator, per_image):
    check_image(x, nonempty=True)
    check_number(alpha, "alpha", low=0.0, low_open=True)
    if not math.isfinite(alpha):
        raise ValueError(f"alpha: expected a finite value, got {alpha!r}")
    check_generator(generator)
    if not isinstance(per_image, bool):
        raise TypeError(f"per_image: expected a bool, got {type(per_image).__name__}")


def _label_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _permutation(batch: int, generator, device) -> torch.Tensor:
    return torch.randperm(batch, generator=generator, device=draw_device(generator)).to(device)


def mixup(x: torch.Tensor, y: torch.Tensor, num_classes: int, alpha: float = 0.2,
          label_smoothing: float = 0.0, generator: torch.Generator | None = None, *, per_image: bool = False):
    """mixup: blend each image and its label with those of a random partner from the same batch.

    ``x~ = lambda x + (1 - lambda) x[index]``, ``y~ = lambda q(y) + (1 - lambda) q(y[index])``, with
    lambda ~ Beta(alpha, alpha), ``index`` a random permutation of the batch and q the smoothed one-hot
    encoding (``tricksref.label_smoothing.smooth_one_hot``). Train on (x~, y~) with a cross-entropy that
    takes probabilities, e.g. ``F.cross_entropy(logits, y_soft)``.

    Zhang et al., 2018, "mixup: Beyond Empirical Risk Minimization" (arXiv:1710.09412).

    Args:
        x: images, float in [0, 1] or uint8 (blended in float32 and rounded).
        y: integer class labels of shape (B,), or soft labels of shape (B, num_classes) (e.g. from an earlier
            mix; they are smoothed as ``(1 - eps) y + eps / K``).
        num_classes: K, the number of classes.
        alpha: the Beta(alpha, alpha) parameter, > 0. Small alpha keeps lambda near 0 or 1 (mild mixing);
            alpha = 1 makes lambda uniform. Default: 0.2 (the paper's ImageNet runs used 0.1 to 0.4, its
            CIFAR-10 runs 1).
        label_smoothing: eps in [0, 1], applied to the labels before mixing. Default: 0.
        generator: source of randomness (lambda, then the permutation). Default: torch's CPU generator.
        per_image: draw one lambda per image instead of one per batch. Default: False (as the paper).

    Returns:
        ``(x_mixed, y_soft)``: x_mixed in x's dtype and shape; y_soft of shape (B, K), float32 (float64 for
        float64 images), each row summing to 1.

    Shape:
        x: (B, C, H, W); y: (B,) or (B, K).

    Examples::

        >>> g = torch.Generator().manual_seed(0)
        >>> x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,), generator=g)
        >>> xm, ym = mixup(x, y, num_classes=10, alpha=0.2, label_smoothing=0.1, generator=g)
        >>> torch.allclose(ym.sum(1), torch.ones(8))
        True
    """
    _common_args(x, alpha, generator, per_image)
    batch = x.shape[0]
    q = _soft_targets(y, num_classes, label_smoothing, batch, x.device, _label_dtype(x))
    lam = _sample_beta(alpha, alpha, batch if per_image else 1, generator).to(x.device)  # (B,) or (1,)
    index = _permutation(batch, generator, x.device)
    w, bound, integer = to_work(x)
    lam_x = lam.to(w.dtype).view(-1, 1, 1, 1)
    x_mixed = w * lam_x + w[index] * (1 - lam_x)
    if integer:
        x_mixed = x_mixed.round_().clamp_(0, bound)
    lam_y = lam.to(q.dtype).view(-1, 1)
    return x_mixed.to(x.dtype), q * lam_y + q[index] * (1 - lam_y)


def _cutmix_boxes(lam: torch.Tensor, u_row: torch.Tensor, u_col: torch.Tensor, img_h: int, img_w: int):
    """Boxes [y1, y2) x [x1, x2) per the CutMix paper's code, and the kept share lambda' = 1 - area / (H W).

    Centre r_y = floor(u H), r_x = floor(u W); half sides floor(H sqrt(1 - lambda) / 2) and
    floor(W sqrt(1 - lambda) / 2); the box is clipped to the image, and lambda' recomputed from what is left.
    """
    cut = torch.sqrt(1.0 - lam)
    half_h = torch.floor(0.5 * img_h * cut).long()
    half_w = torch.floor(0.5 * img_w * cut).long()
    cy = torch.floor(u_row * img_h).long().clamp_(max=img_h - 1)
    cx = torch.floor(u_col * img_w).long().clamp_(max=img_w - 1)
    y1, y2 = (cy - half_h).clamp(0, img_h), (cy + half_h).clamp(0, img_h)
    x1, x2 = (cx - half_w).clamp(0, img_w), (cx + half_w).clamp(0, img_w)
    kept = 1.0 - ((y2 - y1) * (x2 - x1)).to(torch.float64) / (img_h * img_w)
    return (y1, y2, x1, x2), kept


def cutmix(x: torch.Tensor, y: torch.Tensor, num_classes: int, alpha: float = 1.0,
           label_smoothing: float = 0.0, generator: torch.Generator | None = None, *,
           per_image: bool = False):
    """CutMix: paste a random box from a partner image, and mix the labels by the pasted area.

    ``x~ = M * x + (1 - M) * x[index]`` with M zero inside the box, and
    ``y~ = lambda' q(y) + (1 - lambda') q(y[index])``, lambda' = 1 - (box area) / (H W) after clipping the
    box to the image. The box: lambda ~ Beta(alpha, alpha), sides H sqrt(1 - lambda) by W sqrt(1 - lambda)
    (rounded down to even numbers of pixels), centre uniform over the pixels. ``index`` is a random
    permutation of the batch; q is ``tricksref.label_smoothing.smooth_one_hot``.

    Yun et al., 2019, "CutMix: Regularization Strategy to Train Strong Classifiers with Localizable
    Features" (arXiv:1905.04899).

    Args:
        x: images, float or uint8 (pixels are copied, never blended).
        y: integer class labels of shape (B,), or soft labels of shape (B, num_classes).
        num_classes: K, the number of classes.
        alpha: the Beta(alpha, alpha) parameter, > 0. Default: 1.0 (lambda uniform, as in the paper).
        label_smoothing: eps in [0, 1], applied to the labels before mixing. Default: 0.
        generator: source of randomness (lambda, the box centre, then the permutation).
            Default: torch's CPU generator.
        per_image: one lambda and one box per image instead of one per batch. Default: False (as the paper).

    Returns:
        ``(x_mixed, y_soft)``: x_mixed in x's dtype and shape; y_soft of shape (B, K), float32 (float64 for
        float64 images), each row summing to 1.

    Shape:
        x: (B, C, H, W); y: (B,) or (B, K).

    Examples::

        >>> g = torch.Generator().manual_seed(0)
        >>> x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,), generator=g)
        >>> xm, ym = cutmix(x, y, num_classes=10, generator=g)
        >>> xm.shape, ym.shape
        (torch.Size([8, 3, 32, 32]), torch.Size([8, 10]))
    """
    _common_args(x, alpha, generator, per_image)
    batch, _, img_h, img_w = x.shape
    q = _soft_targets(y, num_classes, label_smoothing, batch, x.device, _label_dtype(x))
    n = batch if per_image else 1
    lam = _sample_beta(alpha, alpha, n, generator)
    u = rand((n, 2), generator, lam.device)
    (y1, y2, x1, x2), kept = _cutmix_boxes(lam, u[:, 0], u[:, 1], img_h, img_w)
    index = _permutation(batch, generator, x.device)
    y1, y2, x1, x2, kept = (t.to(x.device) for t in (y1, y2, x1, x2, kept))
    rows = torch.arange(img_h, device=x.device).view(1, 1, img_h, 1)
    cols = torch.arange(img_w, device=x.device).view(1, 1, 1, img_w)
    box = ((rows >= y1.view(-1, 1, 1, 1)) & (rows < y2.view(-1, 1, 1, 1))
           & (cols >= x1.view(-1, 1, 1, 1)) & (cols < x2.view(-1, 1, 1, 1)))  # (n, 1, H, W)
    x_mixed = torch.where(box, x[index], x)
    kept_y = kept.to(q.dtype).view(-1, 1)
    return x_mixed, q * kept_y + q[index] * (1 - kept_y)
