"""Colour augmentation: brightness, contrast, saturation, hue and ColorJitter, batched on (B, C, H, W).

The lecture's "changing brightness" and "colour jitter (brightness, contrast, saturation, hue)": a photo of
the same object under other light is still the same object, so random colour changes add variation that the
label does not depend on (Krizhevsky et al., 2012, altered the RGB intensities of AlexNet's training images;
Howard, 2013, "Some improvements on deep convolutional neural network based image classification", added
random brightness, contrast and colour changes).

Every op follows ``torchvision.transforms.v2.functional`` (the tensor kernels); with x the image, f the
factor, bound = 1 for float images and 255 for uint8 ones, and gray(x) = 0.2989 R + 0.587 G + 0.114 B
(ITU-R 601-2 luma, the grayscale image; x itself when C = 1):

* brightness: ``clamp(f * x, 0, bound)``,                        f >= 0 (0 black, 1 unchanged)
* contrast:   ``clamp(f * x + (1 - f) * mean(gray(x)), 0, bound)``, f >= 0 (0 flat grey, 1 unchanged),
  the mean taken over each image's H x W grayscale pixels;
* saturation: ``clamp(f * x + (1 - f) * gray(x), 0, bound)``,       f >= 0 (0 grayscale, > 1 vivid);
* hue: convert to HSV, ``H <- (H + f) mod 1``, convert back;      f in [-0.5, 0.5] (a turn of the colour
  wheel by f * 360 degrees; S and V, hence max(R, G, B) and min(R, G, B), are unchanged).

Notes that settle conventions:

* Each op accepts a Python number (one factor for the batch) or a tensor of shape (B,) (one per image).
* uint8 rounding follows torchvision's rule, and torchvision (like Pillow's ImageEnhance) truncates: the
  result is computed in float32, clamped to [0, 255], and cast, which rounds towards zero; for uint8 the
  grayscale image of contrast and saturation is floored first, and hue works on x / 255 and returns
  ``trunc(255.999 * rgb)``. (Rounding to nearest would be unbiased, but would not reproduce torchvision
  or Pillow.)
* Saturation and hue need colour: C = 3, else a ValueError (torchvision silently returns a grayscale image
  unchanged). Brightness and contrast take C = 1 or C = 3.
* float16 and bfloat16 images are processed in float32 and cast back.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from ._common import check_factor, check_generator, check_image, rand, to_work

__all__ = [
    "adjust_brightness", "adjust_contrast", "adjust_saturation", "adjust_hue",
    "rgb_to_grayscale", "color_jitter", "ColorJitter", "JitterParams",
]

#: ITU-R 601-2 luma weights of R, G, B, torchvision's (Pillow uses 0.299, 0.587, 0.114 in fixed point)
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)

#: op ids of ColorJitter's order, torchvision's numbering
BRIGHTNESS, CONTRAST, SATURATION, HUE = 0, 1, 2, 3
_OP_NAMES = ("brightness", "contrast", "saturation", "hue")

_COLOR = (3,)
_GRAY_OR_COLOR = (1, 3)
_NEEDS_RGB = " (an RGB image; grayscale has no saturation or hue)"


# ---------------------------------------------------------------------------------------------------------
# kernels: on the float working copy w (values in [0, bound]), factors already checked and broadcastable


def _gray(w: torch.Tensor, integer: bool) -> torch.Tensor:
    """gray(w), shape (B, 1, H, W); floored for uint8 levels, as torchvision does before blending."""
    if w.shape[1] == 1:
        return w
    r, g, b = w.unbind(1)
    # torchvision's expression and order of operations, so that uint8 floors agree with it
    gray = r.mul(GRAY_WEIGHTS[0]).add_(g, alpha=GRAY_WEIGHTS[1]).add_(b, alpha=GRAY_WEIGHTS[2]).unsqueeze(1)
    return gray.floor_() if integer else gray


def _finish(out: torch.Tensor, bound: float, integer: bool) -> torch.Tensor:
    """Clamp to [0, bound] in place; truncate uint8 levels (values are >= 0, so floor is the truncation)."""
    out = out.clamp_(0, bound)
    return out.floor_() if integer else out


def _blend(w: torch.Tensor, f: torch.Tensor, g, bound: float, integer: bool) -> torch.Tensor:
    """``clamp(f * w + (1 - f) * g, 0, bound)``, f of shape (B, 1, 1, 1); g None means 0 (brightness)."""
    out = w * f if g is None else torch.addcmul(g * (1 - f), w, f)  # one pass over w, not three
    return _finish(out, bound, integer)


def _hue_shift(f: torch.Tensor) -> torch.Tensor:
    """The hue factor f (B, 1, 1, 1) as the per-channel offset ``6 f + n + 6`` of :func:`_hue`, (B, 3, 1, 1).

    n = 5, 3, 1 for R, G, B; the extra 6 keeps k positive (h6 >= -1, 6 f >= -3), so that its fractional
    part gives k mod 6.
    """
    n = torch.tensor([11.0, 9.0, 7.0], dtype=f.dtype, device=f.device).view(1, 3, 1, 1)
    return 6 * f + n


def _hue(w: torch.Tensor, shift: torch.Tensor, integer: bool) -> torch.Tensor:
    """Turn the hue of RGB images; ``shift`` from :func:`_hue_shift`.

    The closed form of HSV -> RGB: with V = max, V S = max - min = delta and h6 = 6 H,
    ``channel_n = V - V S clamp(min(k, 4 - k), 0, 1)``, ``k = (n + h6 + 6 f) mod 6``, n = 5, 3, 1 for
    R, G, B. The shift keeps S and V, so max and min stay as they are: only h6 needs computing.
    """
    if integer:
        w = w * (1.0 / 255)
    r, g, b = w.unbind(1)  # (B, H, W) each
    # (torch.aminmax over the channel dimension is many times slower on the CPU than these four passes)
    maxc = torch.maximum(torch.maximum(r, g), b)
    minc = torch.minimum(torch.minimum(r, g), b)
    delta = maxc - minc
    # 6 H times delta, by which channel is the largest (red wins ties, then green, as in Pillow)
    num = torch.where(maxc == r, g - b, torch.where(maxc == g, (b - r).add_(delta, alpha=2),
                                                    (r - g).add_(delta, alpha=4)))
    h6 = num.div_(delta).nan_to_num_(0.0)  # grey pixels (delta = 0): any hue will do; 0/0 -> 0
    k = (h6.unsqueeze(1) + shift).mul_(1 / 6).frac_().mul_(6)  # (B, 3, H, W), k mod 6 in [0, 6)
    t = torch.minimum(k, 4 - k).clamp_(0, 1)
    out = torch.addcmul(maxc.unsqueeze(1), delta.unsqueeze(1), t, value=-1)
    if integer:
        # torchvision's float -> uint8 conversion: times 256 - 1e-3, truncated (-0.0 for a -ulp stays 0)
        out = out.mul_(255.999).trunc_()
    return out


# ---------------------------------------------------------------------------------------------------------
# functional ops


def rgb_to_grayscale(x: torch.Tensor) -> torch.Tensor:
    """The grayscale image ``gray(x) = 0.2989 R + 0.587 G + 0.114 B``, shape (B, 1, H, W), in x's dtype.

    uint8 images are truncated, as torchvision does. Grayscale input (C = 1) is returned as a copy.
    """
    check_image(x, channels=_GRAY_OR_COLOR)
    w, _, integer = to_work(x)
    return _gray(w, integer).to(x.dtype, copy=True)


def _apply(x, factor, *, channels, low, high, kernel):
    check_image(x, channels=channels, why=_NEEDS_RGB if channels == _COLOR else "")
    f = check_factor(factor, "factor", x.shape[0], low=low, high=high)
    w, bound, integer = to_work(x)
    return kernel(w, _per_image(f, w), bound, integer).to(x.dtype)


def _per_image(f, w: torch.Tensor) -> torch.Tensor:
    """A checked factor as a (B, 1, 1, 1) tensor in w's dtype: one arithmetic path for numbers and tensors,
    so that the functional ops and ColorJitter give bit-identical results."""
    if isinstance(f, torch.Tensor):
        return f.to(device=w.device, dtype=w.dtype).view(-1, 1, 1, 1)
    return torch.full((w.shape[0], 1, 1, 1), f, dtype=w.dtype, device=w.device)


def adjust_brightness(x: torch.Tensor, factor) -> torch.Tensor:
    """Scale the brightness: ``out = clamp(f * x, 0, bound)``.

    As ``torchvision.transforms.v2.functional.adjust_brightness`` (and, on uint8, exactly as Pillow's
    ``ImageEnhance.Brightness``, which blends with a black image and truncates).

    Args:
        x: images, float in [0, 1] (bound = 1) or uint8 (bound = 255), C = 1 or 3.
        factor: f >= 0, a number or a tensor of shape (B,), one per image. 0 gives black, 1 the image.

    Shape:
        x: (B, C, H, W); output: the same, same dtype.

    Examples::

        >>> adjust_brightness(torch.full((1, 3, 2, 2), 0.5), 1.5).unique().item()
        0.75
    """
    return _apply(x, factor, channels=_GRAY_OR_COLOR, low=0.0, high=None,
                  kernel=lambda w, f, bound, integer: _blend(w, f, None, bound, integer))


def adjust_contrast(x: torch.Tensor, factor) -> torch.Tensor:
    """Scale the contrast: ``out = clamp(f * x + (1 - f) * mean(gray(x)), 0, bound)``, mean per image.

    As ``torchvision.transforms.v2.functional.adjust_contrast``: the blend partner is the mean of the image's
    grayscale version (0.2989 R + 0.587 G + 0.114 B, floored for uint8), a flat grey of the same brightness.

    Args:
        x: images, float in [0, 1] or uint8, C = 1 or 3.
        factor: f >= 0, a number or a tensor of shape (B,). 0 gives a flat grey image, 1 the image.

    Shape:
        x: (B, C, H, W); output: the same, same dtype.
    """
    def kernel(w, f, bound, integer):
        return _blend(w, f, _gray(w, integer).mean(dim=(1, 2, 3), keepdim=True), bound, integer)

    return _apply(x, factor, channels=_GRAY_OR_COLOR, low=0.0, high=None, kernel=kernel)


def adjust_saturation(x: torch.Tensor, factor) -> torch.Tensor:
    """Scale the saturation: ``out = clamp(f * x + (1 - f) * gray(x), 0, bound)``.

    As ``torchvision.transforms.v2.functional.adjust_saturation``: a blend with the grayscale image,
    gray(x) = 0.2989 R + 0.587 G + 0.114 B (floored for uint8). Without clamping it keeps the HSV hue and
    scales max(R, G, B) - min(R, G, B) by f.

    Args:
        x: RGB images (C = 3), float in [0, 1] or uint8.
        factor: f >= 0, a number or a tensor of shape (B,). 0 gives the grayscale image, 1 the image.

    Shape:
        x: (B, 3, H, W); output: the same, same dtype.
    """
    return _apply(x, factor, channels=_COLOR, low=0.0, high=None,
                  kernel=lambda w, f, bound, integer: _blend(w, f, _gray(w, integer), bound, integer))


def adjust_hue(x: torch.Tensor, factor) -> torch.Tensor:
    """Turn the hue: RGB -> HSV, ``H <- (H + f) mod 1``, HSV -> RGB.

    As ``torchvision.transforms.v2.functional.adjust_hue`` (and Python's ``colorsys``): f is a fraction of a
    full turn of the colour wheel, so f = +-0.5 gives the complementary colours and f = 0 the image
    (up to rounding). Saturation S and value V are kept, hence per pixel max(R, G, B) and min(R, G, B).
    uint8 images are converted to x / 255 and back with ``trunc(255.999 * rgb)``, as torchvision does.

    Args:
        x: RGB images (C = 3), float in [0, 1] or uint8.
        factor: f in [-0.5, 0.5], a number or a tensor of shape (B,).

    Shape:
        x: (B, 3, H, W); output: the same, same dtype.
    """
    return _apply(x, factor, channels=_COLOR, low=-0.5, high=0.5,
                  kernel=lambda w, f, bound, integer: _hue(w, _hue_shift(f), integer))


# ---------------------------------------------------------------------------------------------------------
# colour jitter: the four ops, in a random order per image


def _check_order(order, batch: int, device) -> torch.Tensor:
    if not isinstance(order, torch.Tensor) or order.is_floating_point() or order.is_complex() \
            or order.dtype == torch.bool:
        raise TypeError(f"order: expected an integer tensor of shape (B, 4), got "
                        f"{getattr(order, 'dtype', type(order).__name__)}")
    if tuple(order.shape) != (batch, 4):
        raise ValueError(f"order: expected shape (B, 4) = ({batch}, 4), got {tuple(order.shape)}")
    order = order.to(device=device, dtype=torch.long)
    ok = (order.sort(dim=1).values == torch.arange(4, device=device)).all(dim=1)
    if not bool(ok.all()):
        i = int((~ok).nonzero()[0, 0])
        raise ValueError(f"order: expected each row to be a permutation of 0, 1, 2, 3 (brightness, contrast, "
                         f"saturation, hue), got {order[i].tolist()} (image {i})")
    return order


def _jitter(w: torch.Tensor, order: torch.Tensor, fb, fc, fs, fh, bound: float, integer: bool):
    """Four rounds; in round r image i applies op ``order[i, r]``. Factors: (B, 1, 1, 1) tensors or None.

    The three blends (brightness, contrast, saturation) share one formula, f * w + (1 - f) * g, so a round
    does them all in one pass: each image gets the factor f and the partner g of its own op, and an image
    whose op this round is the hue or a disabled op gets f = 1, which leaves it exactly as it is. The hue,
    the costly op, runs only on the images whose turn it is (about a quarter of the batch per round).
    """
    blend_on = [f is not None for f in (fb, fc, fs)]
    if any(blend_on):
        ones = torch.ones(w.shape[0], dtype=w.dtype, device=w.device)
        # table[i, op]: image i's factor for op; 1 (a blend that changes nothing) for the hue and ops off
        table = torch.stack([ones if f is None else f.view(-1) for f in (fb, fc, fs)] + [ones], dim=1)
        f_round = table.gather(1, order)  # (B, 4): the factor image i blends with in round r
        one_minus = 1 - f_round
        c_con = (order == CONTRAST) * one_minus  # weight of mean(gray) in round r: 1 - f or 0
        c_sat = (order == SATURATION) * one_minus  # weight of gray in round r
    shift = None if fh is None else _hue_shift(fh)  # (B, 3, 1, 1)
    owned = False  # w may still be the caller's tensor: never write into it
    for r in range(4):
        if any(blend_on):
            f = f_round[:, r].view(-1, 1, 1, 1)
            if fc is None and fs is None:
                out = w * f
            else:
                gray = _gray(w, integer)  # (B, 1, H, W)
                if fc is None:  # (1 - f) g without a (B, 1, H, W) torch.where
                    g1 = gray * c_sat[:, r].view(-1, 1, 1, 1)
                else:
                    g1 = c_con[:, r].view(-1, 1, 1, 1) * gray.mean(dim=(1, 2, 3), keepdim=True)
                    if fs is not None:
                        g1 = torch.addcmul(g1, gray, c_sat[:, r].view(-1, 1, 1, 1))
                out = torch.addcmul(g1, w, f)
            w, owned = _finish(out, bound, integer), True
        if fh is not None:
            sel = (order[:, r] == HUE).nonzero().squeeze(1)
            if sel.numel():
                if not owned:
                    w, owned = w.clone(), True
                w.index_copy_(0, sel, _hue(w.index_select(0, sel), shift.index_select(0, sel), integer))
    return w


def color_jitter(x: torch.Tensor, order: torch.Tensor, brightness=None, contrast=None, saturation=None,
                 hue=None) -> torch.Tensor:
    """Apply brightness, contrast, saturation and hue changes to each image in that image's own order.

    The deterministic core of :class:`ColorJitter`: image i applies op ``order[i, 0]``, then
    ``order[i, 1]``, and so on, where 0 = :func:`adjust_brightness`, 1 = :func:`adjust_contrast`,
    2 = :func:`adjust_saturation`, 3 = :func:`adjust_hue` (torchvision's numbering); an op whose factor is
    None is skipped. The result is bit for bit that of applying the functional ops image by image in that
    order (for uint8, with the truncation after every op, as torchvision does), but runs batched: four
    rounds over the whole batch.

    Args:
        x: images, float in [0, 1] or uint8; C = 3, or C = 1 when saturation and hue are None.
        order: integer tensor of shape (B, 4), each row a permutation of 0, 1, 2, 3.
        brightness, contrast, saturation: factors >= 0, numbers or tensors of shape (B,), or None to skip.
        hue: factor in [-0.5, 0.5], a number or a tensor of shape (B,), or None to skip.

    Shape:
        x: (B, C, H, W); output: the same, same dtype.
    """
    check_image(x, channels=_GRAY_OR_COLOR)
    batch = x.shape[0]
    if (saturation is not None or hue is not None) and x.shape[1] != 3:
        check_image(x, channels=_COLOR, why=_NEEDS_RGB)
    order = _check_order(order, batch, x.device)
    specs = (("brightness", brightness, 0.0, None), ("contrast", contrast, 0.0, None),
             ("saturation", saturation, 0.0, None), ("hue", hue, -0.5, 0.5))
    factors = [None if f is None else check_factor(f, name, batch, low=low, high=high)
               for name, f, low, high in specs]
    w, bound, integer = to_work(x)
    factors = [None if f is None else _per_image(f, w) for f in factors]
    return _jitter(w, order, *factors, bound, integer).to(x.dtype)


class JitterParams(NamedTuple):
    """The random draws of one :class:`ColorJitter` call: the per-image order and factors."""

    order: torch.Tensor  #: (B, 4) int64, row i the op order of image i
    brightness: torch.Tensor | None  #: (B,) float64, or None when the op is off
    contrast: torch.Tensor | None
    saturation: torch.Tensor | None
    hue: torch.Tensor | None


def _jitter_range(value, name: str, centre: float, bound: tuple[float, float], clip_first_on_zero: bool):
    """torchvision's ColorJitter rule: a number v means [centre - v, centre + v], a pair is (min, max)."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not value >= 0:  # catches NaN too
            raise ValueError(f"{name}: expected a non-negative number or a (min, max) pair, got {value!r}")
        lo, hi = centre - value, centre + value
        if clip_first_on_zero:
            lo = max(lo, 0.0)
    elif isinstance(value, (list, tuple)) and len(value) == 2 \
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        lo, hi = float(value[0]), float(value[1])
    else:
        raise TypeError(f"{name}: expected a number or a (min, max) pair of numbers, got {value!r}")
    if not (bound[0] <= lo <= hi <= bound[1]):
        raise ValueError(f"{name}: expected {bound[0]} <= min <= max <= {bound[1]}, got ({lo}, {hi})")
    if lo == hi == centre:
        return None  # the identity: skip the op
    return float(lo), float(hi)


class ColorJitter(nn.Module):
    r"""Randomly change the brightness, contrast, saturation and hue of each image, in a random order.

    torchvision's ``ColorJitter``, batched: every image of the batch draws its own four factors and its own
    order of the four ops (torchvision draws one set per call, i.e. per image in a per-image dataset
    transform). Factors are uniform on their ranges:

    * a number b for brightness, contrast or saturation means f ~ U[max(0, 1 - b), 1 + b]; a number h for
      hue means f ~ U[-h, h] (h <= 0.5);
    * a pair (min, max) means f ~ U[min, max] (min >= 0; for hue -0.5 <= min <= max <= 0.5);
    * 0 (the default) or None turns the op off.

    The ops are :func:`adjust_brightness` (``clamp(f x)``), :func:`adjust_contrast`
    (``clamp(f x + (1 - f) mean(gray(x)))``), :func:`adjust_saturation` (``clamp(f x + (1 - f) gray(x))``)
    and :func:`adjust_hue` (H <- H + f in HSV); the order is a uniformly random permutation per image, as
    torchvision's ``torch.randperm(4)``. The work is done by :func:`color_jitter` in four batched rounds.

    Args:
        brightness: how much to jitter brightness, a number >= 0 or a (min, max) pair. Default: 0.
        contrast: how much to jitter contrast, as brightness. Default: 0.
        saturation: how much to jitter saturation, as brightness. Default: 0.
        hue: how much to jitter hue, a number in [0, 0.5] or a pair within [-0.5, 0.5]. Default: 0.
        generator: default source of randomness for :meth:`forward`. Default: torch's CPU generator.

    Shape:
        input: (B, C, H, W), float in [0, 1] or uint8; C = 3, or 1 with saturation and hue off.
        output: the same, same dtype.

    Examples::

        >>> jitter = ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
        >>> g = torch.Generator().manual_seed(0)
        >>> jitter(torch.rand(16, 3, 32, 32), generator=g).shape
        torch.Size([16, 3, 32, 32])
    """

    def __init__(self, brightness=0, contrast=0, saturation=0, hue=0,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        inf = math.inf
        self.brightness = _jitter_range(brightness, "brightness", 1.0, (0.0, inf), True)
        self.contrast = _jitter_range(contrast, "contrast", 1.0, (0.0, inf), True)
        self.saturation = _jitter_range(saturation, "saturation", 1.0, (0.0, inf), True)
        self.hue = _jitter_range(hue, "hue", 0.0, (-0.5, 0.5), False)
        self.generator = check_generator(generator)

    def get_params(self, batch_size: int, generator: torch.Generator | None = None,
                   device: torch.device | str | None = None) -> JitterParams:
        """Draw the order and factors for ``batch_size`` images.

        One (B, 8) tensor of uniforms: columns 0-3 are sort keys whose argsort is the image's order (a
        uniformly random permutation), columns 4-7 give the brightness, contrast, saturation and hue factors
        (drawn whether or not an op is on, so that turning one op off does not change the others' draws).
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 0:
            raise ValueError(f"batch_size: expected a non-negative integer, got {batch_size!r}")
        generator = check_generator(generator) if generator is not None else self.generator
        device = torch.device("cpu") if device is None else torch.device(device)
        u = rand((batch_size, 8), generator, device)
        order = u[:, :4].argsort(dim=1)
        factors = [None if rng is None else rng[0] + (rng[1] - rng[0]) * u[:, 4 + i]
                   for i, rng in enumerate((self.brightness, self.contrast, self.saturation, self.hue))]
        return JitterParams(order, *factors)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        check_image(x, channels=_GRAY_OR_COLOR)
        if (self.saturation is not None or self.hue is not None) and x.shape[1] != 3:
            check_image(x, channels=_COLOR, why=_NEEDS_RGB)
        params = self.get_params(x.shape[0], generator, x.device)
        w, bound, integer = to_work(x)
        factors = [None if f is None else f.to(w.dtype).view(-1, 1, 1, 1) for f in params[1:]]
        return _jitter(w, params.order, *factors, bound, integer).to(x.dtype)

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={getattr(self, name)}" for name in _OP_NAMES)
