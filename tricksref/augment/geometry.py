"""Geometric augmentation: flips, crops and resizing, batched on (B, C, H, W).

Why flip? The lecture's example: a data set where every Ford faces left and every Chevrolet faces right.
A CNN trained on it can reach perfect training accuracy by learning the facing direction instead of the
brand, and then calls a Ford that faces right a Chevrolet. Flipping every training image horizontally with
probability 1/2 breaks the accidental link between direction and class: both brands now face both ways, so
the only cue left is the car itself. More generally, augmentation adds slightly modified copies of the data
the model already has, which gives more variation and better generalization. A flip is only safe when it
keeps the label: a horizontal flip suits cars and animals, a vertical flip suits aerial or microscope images
but not digits (a 6 becomes a 9) or street scenes.

Resizing and cropping (``random_resized_crop``, the "Inception" crop of Szegedy et al., 2015) teach the
network to recognize an object at different scales, positions and aspect ratios.

Conventions (torchvision's, ``torchvision.transforms.v2.functional``):

* ``hflip`` reverses the width axis (left-right mirror), ``vflip`` the height axis (upside down).
* ``resized_crop(x, top, left, height, width, size)`` takes rows ``top .. top + height - 1`` and columns
  ``left .. left + width - 1``, then resizes bilinearly to ``size`` with half-pixel centres
  (``align_corners=False``), antialiased when shrinking by default (torchvision v2's default,
  ``antialias=True``: Pillow's bilinear filter, whose support widens with the shrink factor).
  ``F.interpolate(..., antialias=...)`` and Pillow's ``Image.resize(..., BILINEAR)`` are the oracles.
  A crop box that leaves the image is an error (torchvision pads with zeros instead).
* uint8 images are resized in float32, then rounded (half to even) and clamped to [0, 255].
  torchvision resizes uint8 on the CPU with a fixed-point kernel, which can differ by one grey level.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .._checks import check_number
from ._common import as_index, check_generator, check_image, parse_size, rand, to_work

__all__ = [
    "hflip", "vflip", "random_hflip", "random_vflip",
    "resized_crop", "random_resized_crop", "random_resized_crop_params",
]


def hflip(x: torch.Tensor) -> torch.Tensor:
    """Flip images horizontally (mirror left-right): ``out[..., i, j] = x[..., i, W - 1 - j]``.

    Args:
        x: images, float in [0, 1] or uint8.

    Shape:
        x: (B, C, H, W); output: the same, same dtype.

    Examples::

        >>> x = torch.arange(3.).view(1, 1, 1, 3)
        >>> hflip(x).flatten().tolist()
        [2.0, 1.0, 0.0]
    """
    return check_image(x).flip(-1)


def vflip(x: torch.Tensor) -> torch.Tensor:
    """Flip images vertically (upside down): ``out[..., i, j] = x[..., H - 1 - i, j]``.

    Args:
        x: images, float in [0, 1] or uint8.

    Shape:
        x: (B, C, H, W); output: the same, same dtype.

    Examples::

        >>> x = torch.arange(3.).view(1, 1, 3, 1)
        >>> vflip(x).flatten().tolist()
        [2.0, 1.0, 0.0]
    """
    return check_image(x).flip(-2)


def _random_flip(x, p, generator, dim):
    check_image(x)
    check_number(p, "p", low=0.0, high=1.0)
    check_generator(generator)
    flip = rand((x.shape[0],), generator, x.device) < p  # (B,)
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(dim), x)


def random_hflip(x: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each image horizontally with probability ``p``, independently per image.

    Args:
        x: images, float in [0, 1] or uint8.
        p: probability of flipping an image, in [0, 1]. Default: 0.5.
        generator: source of randomness (one uniform number per image). Default: torch's CPU generator.

    Shape:
        x: (B, C, H, W); output: the same, same dtype.
    """
    return _random_flip(x, p, generator, -1)


def random_vflip(x: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each image vertically with probability ``p``, independently per image.

    Args:
        x: images, float in [0, 1] or uint8.
        p: probability of flipping an image, in [0, 1]. Default: 0.5.
        generator: source of randomness (one uniform number per image). Default: torch's CPU generator.

    Shape:
        x: (B, C, H, W); output: the same, same dtype.
    """
    return _random_flip(x, p, generator, -2)


# ---------------------------------------------------------------------------------------------------------
# resized crop


def _box_param(value, name: str, batch: int, device) -> int | torch.Tensor:
    """A crop coordinate: a Python int, or an integer tensor of shape (B,) (moved to ``device``)."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name}: expected an integer or an integer tensor of shape (B,), got dtype "
                            f"{value.dtype}")
        if value.dim() == 0:
            return int(value.item())
        if tuple(value.shape) != (batch,):
            raise ValueError(f"{name}: expected an integer or a tensor of shape (B,) = ({batch},), got shape "
                             f"{tuple(value.shape)}")
        return value.to(device=device, dtype=torch.long)
    return as_index(value, name)


def _check_box(top, left, height, width, img_h: int, img_w: int) -> None:
    """Every crop must lie inside its image; the error names the coordinate at fault."""

    def first_bad(cond):
        if isinstance(cond, torch.Tensor):
            if bool(cond.any()):
                return int(cond.nonzero()[0, 0])
            return None
        return 0 if cond else None

    def val(v, i):
        return int(v[i]) if isinstance(v, torch.Tensor) else v

    checks = [
        ("height", height < 1, lambda i: f"expected a crop height >= 1, got {val(height, i)}"),
        ("width", width < 1, lambda i: f"expected a crop width >= 1, got {val(width, i)}"),
        ("top", top < 0, lambda i: f"expected top >= 0, got {val(top, i)}"),
        ("left", left < 0, lambda i: f"expected left >= 0, got {val(left, i)}"),
        ("top", top + height > img_h,
         lambda i: f"crop rows [top, top + height) = [{val(top, i)}, {val(top, i) + val(height, i)}) "
                   f"leave the image of height H={img_h}"),
        ("left", left + width > img_w,
         lambda i: f"crop columns [left, left + width) = [{val(left, i)}, {val(left, i) + val(width, i)}) "
                   f"leave the image of width W={img_w}"),
    ]
    for name, cond, message in checks:
        i = first_bad(cond)
        if i is not None:
            per_image = any(isinstance(v, torch.Tensor) for v in (top, left, height, width))
            raise ValueError(f"{name}: {message(i)}{f' (image {i})' if per_image else ''}")


def _resize_weights(start: torch.Tensor, length: torch.Tensor, in_size: int, out_size: int, antialias: bool,
                    dtype: torch.dtype) -> torch.Tensor:
    """Per-image 1-D resampling matrices, shape (B, out_size, in_size): out = weights @ in along one axis.

    The crop [start, start + length) is resized to out_size with half-pixel centres. Output pixel i sits at
    ``c_i = scale * (i + 0.5)`` (crop coordinates, in pixel edges), scale = length / out_size, and input
    pixel j (centre j + 0.5) gets the triangle weight ``max(0, 1 - |j + 0.5 - c_i| / s)``, normalized over
    the crop, where s = scale when antialiasing a shrink and 1 otherwise. For s = 1 this is exactly
    bilinear interpolation with edge clamping; for s = scale it is PyTorch's (and Pillow's) antialiased
    bilinear filter, whose support grows with the shrink factor.
    """
    start64, length64 = start.to(torch.float64), length.to(torch.float64)  # (B,)
    scale = length64 / out_size  # (B,)
    centre = scale[:, None] * (torch.arange(out_size, dtype=torch.float64, device=start.device) + 0.5)
    support = torch.where(scale > 1, scale, torch.ones_like(scale)) if antialias else torch.ones_like(scale)
    j = torch.arange(in_size, dtype=torch.float64, device=start.device) - start64[:, None]  # (B, in)
    dist = (j[:, None, :] + 0.5 - centre[:, :, None]).abs() / support[:, None, None]  # (B, out, in)
    weights = (1.0 - dist).clamp_(min=0.0)
    inside = (j >= 0) & (j < length64[:, None])  # (B, in): only the crop contributes
    weights = weights * inside[:, None, :]
    return (weights / weights.sum(-1, keepdim=True)).to(dtype)


def resized_crop(x: torch.Tensor, top, left, height, width, size, antialias: bool = True) -> torch.Tensor:
    """Crop each image to a box and resize the crop bilinearly to ``size``.

    The same box for the whole batch (Python ints: a slice and one ``F.interpolate`` call), or one box per
    image (integer tensors of shape (B,): per-image separable resampling matrices, ``Wy @ x @ Wx^T``, one
    batched matmul, no Python loop; O(B C h_out H W) work, fine for training-sized images).

    Args:
        x: images, float in [0, 1] or uint8.
        top, left: row and column of the crop's top-left pixel; ints or integer tensors of shape (B,).
        height, width: size of the crop in pixels (>= 1); ints or integer tensors of shape (B,).
            The box must lie inside the image: ``0 <= top``, ``top + height <= H``, and likewise for columns.
        size: output size, an int s for (s, s) or a pair (h, w). (torchvision's functional ``resize`` reads a
            one-element size as the length of the smaller edge; here an int always means a square.)
        antialias: low-pass filter when shrinking, as torchvision v2 and ``F.interpolate(antialias=True)``
            do. Default: True. With False, plain bilinear interpolation (aliases on strong shrinks).

    Shape:
        x: (B, C, H, W); output: (B, C, h, w), the dtype of x.

    Examples::

        >>> x = torch.rand(4, 3, 32, 32)
        >>> resized_crop(x, 4, 4, 24, 24, 32).shape
        torch.Size([4, 3, 32, 32])
    """
    check_image(x)
    out_h, out_w = parse_size(size)
    if not isinstance(antialias, bool):
        raise TypeError(f"antialias: expected a bool, got {type(antialias).__name__}")
    batch, _, img_h, img_w = x.shape
    box = [_box_param(v, n, batch, x.device)
           for v, n in ((top, "top"), (left, "left"), (height, "height"), (width, "width"))]
    _check_box(*box, img_h, img_w)
    return _resized_crop(x, *box, (out_h, out_w), antialias)


def _resized_crop(x, top, left, height, width, size, antialias):
    """The kernel of :func:`resized_crop`, for boxes already checked."""
    w, bound, integer = to_work(x)
    batch, _, img_h, img_w = x.shape
    box = (top, left, height, width)
    # F.interpolate(antialias=True) returns wrong values for an output width of 1 (PyTorch 2.13: it then
    # skips the vertical pass); the resampling matrices below are right there (checked against Pillow)
    if not any(isinstance(v, torch.Tensor) for v in box) and not (antialias and size[1] == 1):
        crop = w[:, :, top:top + height, left:left + width]
        out = F.interpolate(crop, size=size, mode="bilinear", align_corners=False, antialias=antialias)
    else:
        t, l, h, wd = (v if isinstance(v, torch.Tensor) else torch.full((batch,), v, device=x.device)
                       for v in box)
        wy = _resize_weights(t, h, img_h, size[0], antialias, w.dtype)  # (B, h_out, H)
        wx = _resize_weights(l, wd, img_w, size[1], antialias, w.dtype)  # (B, w_out, W)
        out = wy[:, None] @ w @ wx[:, None].transpose(-1, -2)  # (B, C, h_out, w_out)
    if integer:
        out = out.round().clamp_(0, bound)
    return out.to(x.dtype)


def _sample_boxes(u_area: torch.Tensor, u_logr: torch.Tensor, u_top: torch.Tensor, u_left: torch.Tensor,
                  img_h: int, img_w: int, scale, ratio):
    """torchvision's RandomResizedCrop sampling, batched, from given uniforms (float64, [0, 1)).

    u_area, u_logr: (B, T) for T tries; u_top, u_left: (B,). Each try draws an area fraction
    s ~ U(scale) and a log aspect ratio log r ~ U(log ratio), and proposes width round(sqrt(s H W r)) and
    height round(sqrt(s H W / r)). The first try that fits (0 < w <= W and 0 < h <= H) wins, placed
    uniformly: top ~ U{0, ..., H - h}, left ~ U{0, ..., W - w}. If none fits, the fallback is a centred
    crop: the whole image when its aspect ratio lies inside ``ratio``, else the largest centred crop with
    the nearest allowed ratio.
    """
    area = img_h * img_w
    target = area * (scale[0] + (scale[1] - scale[0]) * u_area)  # (B, T)
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(lo + (hi - lo) * u_logr)
    # torch.round, like Python's round, rounds half to even
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    fits = (w > 0) & (w <= img_w) & (h > 0) & (h <= img_h)  # (B, T)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # index of the first fitting try
    any_fit = fits.any(dim=1)
    w = w.gather(1, first).squeeze(1)
    h = h.gather(1, first).squeeze(1)

    in_ratio = img_w / img_h
    if in_ratio < min(ratio):
        fw, fh = img_w, int(round(img_w / min(ratio)))
    elif in_ratio > max(ratio):
        fw, fh = int(round(img_h * max(ratio))), img_h
    else:
        fw, fh = img_w, img_h
    h = torch.where(any_fit, h, torch.full_like(h, fh)).long()
    w = torch.where(any_fit, w, torch.full_like(w, fw)).long()
    top = torch.minimum(torch.floor(u_top * (img_h - h + 1)).long(), img_h - h)
    left = torch.minimum(torch.floor(u_left * (img_w - w + 1)).long(), img_w - w)
    top = torch.where(any_fit, top, (img_h - h) // 2)
    left = torch.where(any_fit, left, (img_w - w) // 2)
    return top, left, h, w


_TRIES = 10  # torchvision's number of attempts before the central-crop fallback


def _check_scale_ratio(scale, ratio):
    for name, value in (("scale", scale), ("ratio", ratio)):
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise TypeError(f"{name}: expected a pair (min, max), got {value!r}")
        for v in value:
            check_number(v, name)
    if not 0 <= scale[0] <= scale[1] or scale[1] <= 0:
        raise ValueError(f"scale: expected 0 <= min <= max and max > 0, got {tuple(scale)}")
    if not 0 < ratio[0] <= ratio[1]:
        raise ValueError(f"ratio: expected 0 < min <= max, got {tuple(ratio)}")
    if not all(math.isfinite(v) for v in (*scale, *ratio)):
        raise ValueError(f"scale, ratio: expected finite values, got {tuple(scale)}, {tuple(ratio)}")


def random_resized_crop_params(x: torch.Tensor, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                               generator: torch.Generator | None = None):
    """Draw one crop box per image with torchvision's RandomResizedCrop rule.

    Up to 10 tries per image: area fraction s ~ U(scale), aspect ratio r = exp(U(log ratio)),
    w = round(sqrt(s H W r)), h = round(sqrt(s H W / r)); the first box that fits wins, at a uniformly random
    position. When none fits, a centred crop (the whole image if its aspect ratio is within ``ratio``).

    Args:
        x: the images (only their shape and device are used).
        scale: (min, max) fraction of the image area. Default: (0.08, 1.0).
        ratio: (min, max) aspect ratio width / height. Default: (3/4, 4/3).
        generator: source of randomness; 22 uniform float64 numbers per image (10 areas, 10 ratios, top,
            left), drawn as one (B, 22) tensor. Default: torch's CPU generator.

    Returns:
        ``(top, left, height, width)``, int64 tensors of shape (B,) on x's device, ready for
        :func:`resized_crop`.
    """
    check_image(x, nonempty=True)
    _check_scale_ratio(scale, ratio)
    check_generator(generator)
    batch, _, img_h, img_w = x.shape
    u = rand((batch, 2 * _TRIES + 2), generator, x.device)
    return _sample_boxes(u[:, :_TRIES], u[:, _TRIES:2 * _TRIES], u[:, -2], u[:, -1], img_h, img_w,
                         scale, ratio)


def random_resized_crop(x: torch.Tensor, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                        generator: torch.Generator | None = None, *, antialias: bool = True) -> torch.Tensor:
    """Crop a random box of random area and aspect ratio from each image and resize it to ``size``.

    The "Inception" crop (Szegedy et al., 2015, "Going deeper with convolutions"), as torchvision's
    ``RandomResizedCrop``: box per :func:`random_resized_crop_params`, then :func:`resized_crop`.
    Each image of the batch gets its own box.

    Args:
        x: images, float in [0, 1] or uint8.
        size: output size, an int s for (s, s) or a pair (h, w).
        scale: (min, max) fraction of the image area the crop covers, before resizing. Default: (0.08, 1.0).
        ratio: (min, max) aspect ratio width / height of the crop. Default: (3/4, 4/3).
        generator: source of randomness. Default: torch's CPU generator.
        antialias: as in :func:`resized_crop`. Default: True.

    Shape:
        x: (B, C, H, W); output: (B, C, h, w), the dtype of x.

    Examples::

        >>> g = torch.Generator().manual_seed(0)
        >>> random_resized_crop(torch.rand(8, 3, 64, 64), 32, generator=g).shape
        torch.Size([8, 3, 32, 32])
    """
    check_image(x, nonempty=True)
    out_size = parse_size(size)
    if not isinstance(antialias, bool):
        raise TypeError(f"antialias: expected a bool, got {type(antialias).__name__}")
    # the boxes fit by construction: skip resized_crop's checks (each one a host sync on CUDA)
    top, left, height, width = random_resized_crop_params(x, scale, ratio, generator)
    return _resized_crop(x, top, left, height, width, out_size, antialias)
