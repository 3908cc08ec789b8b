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
* The colour ops are data augmentations without a backward: an image that requires grad (with autograd on)
  is a ValueError that says to pass ``x.detach()``, rather than a result whose gradient silently stops.

Two implementations, one semantics. On the CPU, float32 and uint8 images (and float16/bfloat16 through
float32) go through a fused C kernel (``_jitter.c``, built on first use with the system C compiler and
loaded by :mod:`tricksref.augment._native`): each image is loaded once, runs all its ops while it sits in
the L1 cache, and is stored once. Everywhere else (CUDA, float64, no C compiler, or
``TRICKSREF_NATIVE=0``) the same formulas run as batched torch ops (the kernels below). The two agree up to
float rounding: the kernel follows the torch path op for op, fused multiply-adds included, and differs only
in the order of the sum behind contrast's mean (float32: within 2e-6 absolute; uint8 levels: identical on
the project's machine, where the sums are exact, and at most one level anywhere). ColorJitter and the
functional ops always take the same path, so on either one ColorJitter equals the ops applied image by
image bit for bit.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from . import _native
from ._common import check_factor, check_generator, check_image, rand, to_work, work_dtype

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
# kernels: in place on a float working copy w that the caller owns (values in [0, bound]), factors already
# checked and shaped (n, 1, 1, 1). The functional ops and ColorJitter run exactly these kernels, so their
# results agree bit for bit. Speed notes (CPU, measured in benchmarks/bench_augment.py): every torch call is
# one pass over its tensors, so the kernels write in place or into scratch the caller allocated once (fresh
# multi-megabyte temporaries made the previous version page-fault ~750 times per call), and use no
# torch.where, boolean masks or trunc, which run several times slower than arithmetic on the CPU.


#: images per pass on the CPU, as a number of float elements (1.5 MB of float32): 128 images of 3 x 32 x 32,
#: the best of 64 to 256 for ColorJitter on the project's machine (benchmarks/bench_augment.py, --chunks).
#: Larger passes leave the caches; smaller ones pay the overhead of each torch call (some 140 per pass)
#: more often.
_CHUNK_ELEMENTS = 128 * 3 * 32 * 32


def _chunk_images(x: torch.Tensor) -> int:
    """How many of x's images make one pass: :data:`_CHUNK_ELEMENTS` elements on the CPU (at least one
    image), the whole batch elsewhere, where each pass is a few hundred kernel launches whatever its size."""
    if x.device.type != "cpu":
        return max(1, x.shape[0])
    return max(1, _CHUNK_ELEMENTS // max(1, math.prod(x.shape[1:])))


def _gray(w: torch.Tensor, integer: bool, out: torch.Tensor) -> torch.Tensor:
    """gray(w) written into ``out`` (n, 1, H, W); floored for uint8 levels, as torchvision does."""
    if w.shape[1] == 1:
        return out.copy_(w)
    r, g, b = w.unbind(1)
    # torchvision's order of operations, so that uint8 floors agree with it
    torch.mul(r, GRAY_WEIGHTS[0], out=out[:, 0]).add_(g, alpha=GRAY_WEIGHTS[1]).add_(b, alpha=GRAY_WEIGHTS[2])
    return out.floor_() if integer else out


def _blend(w: torch.Tensor, f: torch.Tensor, cm, cs, bound: float, integer: bool, gray: torch.Tensor) -> None:
    """In place: ``w <- clamp(f w + cs gray(w) + cm mean(gray(w)), 0, bound)``, truncated for uint8 levels.

    One formula for the three blends: brightness is (cm, cs) = (0, 0), contrast (1 - f, 0), saturation
    (0, 1 - f); ``cm`` or ``cs`` None means 0 for every image. ColorJitter passes each image its own
    (f, cm, cs), so one call blends a batch in which every image runs its own op. The results agree bit for
    bit with the single-op calls, because the terms that vanish are exact zeros (0 * gray + x = x and
    0 + f w = f w in floating point). ``gray`` is (n, 1, H, W) scratch.
    """
    if cm is None and cs is None:  # brightness only: no partner image
        w.mul_(f)
    else:
        gray = _gray(w, integer, gray)
        if cm is not None:
            # mean(gray) as sum / count: torch's CPU mean kernel is several times slower than its sum
            mean = gray.sum(dim=(1, 2, 3), keepdim=True).div_(gray.shape[2] * gray.shape[3]).mul_(cm)
        if cs is None:  # contrast only: the partner is the flat mean
            gray.copy_(mean.expand_as(gray))
        else:
            gray.mul_(cs)
            if cm is not None:
                gray.add_(mean)
        torch.addcmul(gray, w, f, out=w)  # one pass over w for the whole blend
    w.clamp_(0, bound)
    if integer:
        w.floor_()  # values are >= 0 here, so floor is torchvision's truncation


#: per-channel offsets n / 6 of the hue formula (n = 5, 3, 1 for R, G, B) and the (2 m + 1) of each channel m
#: being the largest, see :func:`_hue`
_HUE_OFFSETS = (5 / 6, 3 / 6, 1 / 6)
_HUE_BASES = (1.0, 3.0, 5.0)


def _hue_shift(f: torch.Tensor) -> torch.Tensor:
    """The hue factor f (n, 1, 1, 1) as the per-channel shift ``frac(f + n / 6 + 1)`` of :func:`_hue`,
    shape (n, 3, 1, 1); the 1 keeps the argument of frac positive (f >= -0.5)."""
    offsets = torch.tensor(_HUE_OFFSETS, dtype=f.dtype, device=f.device).view(1, 3, 1, 1)
    return (f + offsets).add_(1).frac_()


class _HueScratch(NamedTuple):
    """Scratch of :func:`_hue` for up to N images, allocated once per call of ColorJitter."""

    full: torch.Tensor  #: (N, 3, H, W)
    planes: torch.Tensor  #: (5, N, 1, H, W)
    bases: torch.Tensor  #: (1, 3, 1, 1), the 2 m + 1 of :data:`_HUE_BASES`

    @classmethod
    def like(cls, w: torch.Tensor) -> _HueScratch:
        n, _, height, width = w.shape
        return cls(torch.empty(n, 3, height, width, dtype=w.dtype, device=w.device),
                   torch.empty(5, n, 1, height, width, dtype=w.dtype, device=w.device),
                   torch.tensor(_HUE_BASES, dtype=w.dtype, device=w.device).view(1, 3, 1, 1))


def _hue(w: torch.Tensor, shift: torch.Tensor, integer: bool, scratch=None) -> None:
    """In place: turn the hue of RGB images; ``shift`` from :func:`_hue_shift`, ``scratch`` a
    :class:`_HueScratch` for at least as many images (allocated when None).

    HSV's hue H, from the largest channel m: with V = max(R, G, B), c = V - min(R, G, B) (= V S),
    ``6 H c = G - B, 2 c + B - R, 4 c + R - G`` for m = R, G, B (mod 6 c; red wins ties, then green, as in
    Pillow and colorsys; the candidates of tied channels agree mod 6 c, so any of them will do). Back to RGB
    with the hue turned by f, each channel n is
    ``V - c clamp(min(k, 4 - k), 0, 1)``, ``k = (n + 6 (H + f)) mod 6``, n = 5, 3, 1 for R, G, B,
    written as ``clamp(V - 2 c + 6 c D, V - c, V)`` with D = |frac((H + 1/6) + frac(f + n / 6 + 1)) - 1/2|,
    the distance in turns from the middle of the channel's dark third. The turn keeps S and V, so max and
    min stay as they are and the clamp keeps every channel within them exactly: about 20 passes, none of
    them a torch.where.
    """
    n = w.shape[0]
    scratch = _HueScratch.like(w) if scratch is None else scratch
    cand = scratch.full[:n]
    vmax, vmin, chroma, hue, low = scratch.planes[:, :n].unbind(0)  # (n, 1, H, W) each
    if integer:
        w.mul_(1 / 255)
    torch.amax(w, 1, keepdim=True, out=vmax)  # V
    torch.amin(w, 1, keepdim=True, out=vmin)
    torch.sub(vmax, vmin, out=chroma)  # c
    r, g, b = w.unbind(1)
    cand_r, cand_g, cand_b = cand.unbind(1)
    torch.sub(g, b, out=cand_r)
    torch.sub(b, r, out=cand_g)
    torch.sub(r, g, out=cand_b)
    cand.addcmul_(chroma, scratch.bases)  # 6 H c + c if channel m is the largest, all >= 0
    cand.mul_(torch.eq(w, vmax, out=w))  # 0 for the channels that are not the largest (w is rebuilt below)
    torch.amax(cand, 1, keepdim=True, out=hue)
    hue.div_(chroma).nan_to_num_(0.0)  # 6 H + 1; grey pixels (0 / 0) get any hue: 0
    torch.sub(vmax, chroma, alpha=2, out=low)  # V - 2 c
    dist = torch.add(shift, hue, alpha=1 / 6, out=cand).frac_().sub_(0.5).abs_()  # D, (n, 3, H, W)
    torch.addcmul(low, chroma, dist, value=6, out=w)
    torch.clamp(w, vmin, vmax, out=w)
    if integer:
        # torchvision's float -> uint8 conversion: times 256 - 1e-3, truncated (values are >= 0)
        w.mul_(255.999).floor_()


# ---------------------------------------------------------------------------------------------------------
# functional ops


def rgb_to_grayscale(x: torch.Tensor) -> torch.Tensor:
    """The grayscale image ``gray(x) = 0.2989 R + 0.587 G + 0.114 B``, shape (B, 1, H, W), in x's dtype.

    uint8 images are truncated, as torchvision does. Grayscale input (C = 1) is returned as a copy.
    """
    check_image(x, channels=_GRAY_OR_COLOR)
    w, _, integer = to_work(x)
    gray = torch.empty(w.shape[0], 1, *w.shape[2:], dtype=w.dtype, device=w.device)
    return _gray(w, integer, gray).to(x.dtype)


def _check_no_grad(x: torch.Tensor) -> None:
    if x.requires_grad and torch.is_grad_enabled():
        raise ValueError("x: expected an image batch that does not require grad (the colour ops are data "
                         "augmentations without a backward); pass x.detach()")


def _apply(x, factor, *, channels, low, high, kernel, op):
    check_image(x, channels=channels, why=_NEEDS_RGB if channels == _COLOR else "")
    _check_no_grad(x)
    f = check_factor(factor, "factor", x.shape[0], low=low, high=high)
    if _native.available(x):  # the fused kernel, the one ColorJitter runs on the CPU
        factors = [None] * 4
        factors[op] = _per_image(f, x.shape[0], torch.float32, x.device)
        return _native.run(x, None, op, factors)
    w, bound, integer = to_work(x)
    if w is x:  # the kernels work in place, never in the caller's tensor
        w = w.clone()
    f = _per_image(f, w.shape[0], w.dtype, w.device).view(-1, 1, 1, 1)
    n = _chunk_images(w)  # the kernels' scratch stays small and the passes stay in the caches
    for a in range(0, w.shape[0], n):
        kernel(w[a:a + n], f[a:a + n], bound, integer)
    return w.to(x.dtype)


def _gray_scratch(w: torch.Tensor) -> torch.Tensor:
    return torch.empty(w.shape[0], 1, *w.shape[2:], dtype=w.dtype, device=w.device)


def _per_image(f, batch: int, dtype: torch.dtype, device) -> torch.Tensor:
    """A checked factor as a (B,) tensor in the working dtype: one arithmetic path for numbers and tensors,
    so that the functional ops and ColorJitter give bit-identical results."""
    if isinstance(f, torch.Tensor):
        return f.to(device=device, dtype=dtype)
    return torch.full((batch,), f, dtype=dtype, device=device)


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
    return _apply(x, factor, channels=_GRAY_OR_COLOR, low=0.0, high=None, op=BRIGHTNESS,
                  kernel=lambda w, f, bound, integer: _blend(w, f, None, None, bound, integer, None))


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
        _blend(w, f, 1 - f, None, bound, integer, _gray_scratch(w))

    return _apply(x, factor, channels=_GRAY_OR_COLOR, low=0.0, high=None, kernel=kernel, op=CONTRAST)


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
    def kernel(w, f, bound, integer):
        _blend(w, f, None, 1 - f, bound, integer, _gray_scratch(w))

    return _apply(x, factor, channels=_COLOR, low=0.0, high=None, kernel=kernel, op=SATURATION)


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
    return _apply(x, factor, channels=_COLOR, low=-0.5, high=0.5, op=HUE,
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


def _jitter(x: torch.Tensor, order: torch.Tensor, fb, fc, fs, fh, chunk: int | None = None) -> torch.Tensor:
    """ColorJitter's work: image i applies op ``order[i, r]`` in round r; factors (B,) tensors or None.

    On the CPU the fused kernel does it, image by image (:func:`_native.run`), unless ``chunk`` is given:
    the chunked torch path below is then run, for the tests and the benchmark. On the torch path every
    image runs its own sequence of ops, yet the batch runs together:

    * the three blends share one formula (:func:`_blend`), so a blend round is one batched call in which
      each image brings its own (f, cm, cs). Counting only the k blends that are on, an image's sequence is
      blend 1, ..., blend k with its hue somewhere among them: the work is k blend rounds over the whole
      batch, with hue slot j (the images whose hue comes after j blends) before blend round j + 1;
    * the images are sorted by hue slot once, so each hue slot is a contiguous slice, the hue (the costly
      op) runs on exactly the images that need it, and nothing is gathered or scattered per round;
    * the batch is cut into chunks of ``chunk`` images (default: :func:`_chunk_images`), each loaded once
      into a float buffer (with its permutation), processed in place with scratch allocated once per call,
      and stored back in input order.

    Returns a new tensor in x's dtype; x is not modified.
    """
    _check_no_grad(x)
    if chunk is None and _native.available(x):
        return _native.run(x, order, None, (fb, fc, fs, fh))
    batch, channels, height, width = x.shape
    out = torch.empty_like(x)
    if batch == 0:
        return out
    device, work = x.device, work_dtype(x.dtype)
    integer, bound = x.dtype == torch.uint8, (255.0 if x.dtype == torch.uint8 else 1.0)
    chunk = min(chunk or _chunk_images(x), batch)

    # each image's blends in its order (k of them), and its hue slot: how many of them precede its hue
    on = (fb is not None, fc is not None, fs is not None)
    k = sum(on)
    keep = torch.tensor((*on, False), device=device)[order]  # (B, 4)
    blends = order[keep].view(batch, k)
    slot = (keep.cumsum(1) * (order == HUE)).sum(1) if fh is not None else torch.zeros_like(order[:, 0])
    # within each chunk, images sorted by hue slot; ends[c * (k + 1) + j]: end of slot j of chunk c
    key = torch.arange(batch, device=device).div_(chunk, rounding_mode="floor").mul_(k + 1).add_(slot)
    perm = key.argsort(stable=True)  # chunk by chunk, and by slot within a chunk
    ends = torch.bincount(key, minlength=(k + 1) * -(-batch // chunk)).cumsum(0).tolist()
    home = perm.argsort().remainder_(chunk)  # where each output row sits in its chunk's buffer

    # per image (in sorted order) and blend round: (f, cm, cs), stacked as (B, k, 3, 1, 1, 1)
    if k:
        ones = torch.ones(batch, dtype=work, device=device)
        table = torch.stack([ones if f is None else f.to(work) for f in (fb, fc, fs)], dim=1)  # (B, 3)
        blends = blends[perm]
        f_round = table[perm].gather(1, blends)  # (B, k)
        one_minus = 1 - f_round
        coef = torch.stack((f_round, (blends == CONTRAST) * one_minus, (blends == SATURATION) * one_minus),
                           dim=2).view(batch, k, 3, 1, 1, 1)
    shift = _hue_shift(fh.to(work)[perm].view(-1, 1, 1, 1)) if fh is not None else None

    w_all = torch.empty(chunk, channels, height, width, dtype=work, device=device)
    gray_all = torch.empty(chunk, 1, height, width, dtype=work, device=device)
    # the hue runs on one slot at a time: scratch for the largest slot, not for the chunk
    largest_slot = max(b - a for a, b in zip([0, *ends[:-1]], ends, strict=True))
    hue_scratch = _HueScratch.like(w_all[:largest_slot]) if fh is not None else None
    cast = torch.empty_like(w_all, dtype=x.dtype) if x.dtype != work else None  # uint8 / half in and out
    for c, a in enumerate(range(0, batch, chunk)):
        e = min(a + chunk, batch)
        w = w_all[:e - a]
        if cast is None:
            torch.index_select(x, 0, perm[a:e], out=w)
        else:
            w.copy_(torch.index_select(x, 0, perm[a:e], out=cast[:e - a]))
        for j in range(k + 1):
            h0, h1 = ends[c * (k + 1) + j - 1] if c or j else 0, ends[c * (k + 1) + j]
            if fh is not None and h1 > h0:
                _hue(w[h0 - a:h1 - a], shift[h0:h1], integer, hue_scratch)
            if j < k:
                f, cm, cs = coef[a:e, j].unbind(1)
                _blend(w, f, cm if on[1] else None, cs if on[2] else None, bound, integer, gray_all[:e - a])
        if cast is None:
            torch.index_select(w, 0, home[a:e], out=out[a:e])
        else:
            torch.index_select(cast[:e - a].copy_(w), 0, home[a:e], out=out[a:e])
    return out


def color_jitter(x: torch.Tensor, order: torch.Tensor, brightness=None, contrast=None, saturation=None,
                 hue=None) -> torch.Tensor:
    """Apply brightness, contrast, saturation and hue changes to each image in that image's own order.

    The deterministic core of :class:`ColorJitter`: image i applies op ``order[i, 0]``, then
    ``order[i, 1]``, and so on, where 0 = :func:`adjust_brightness`, 1 = :func:`adjust_contrast`,
    2 = :func:`adjust_saturation`, 3 = :func:`adjust_hue` (torchvision's numbering); an op whose factor is
    None is skipped. The result is bit for bit that of applying the functional ops image by image in that
    order (for uint8, with the truncation after every op, as torchvision does), but runs batched: on the
    CPU, the fused kernel takes each image through its ops while it sits in the cache; elsewhere one
    blend round over the whole batch per blend op that is on, and the hue on the images whose turn it is
    (see :func:`_jitter`).

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
    work = work_dtype(x.dtype)
    return _jitter(x, order, *(None if f is None else _per_image(f, batch, work, x.device) for f in factors))


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
    torchvision's ``torch.randperm(4)``. The work is batched as in :func:`color_jitter`, with the same
    result bit for bit as the functional ops applied image by image. On the CPU it is memory-bound: run it
    with one intra-op thread (``torch.set_num_threads(1)``, as DataLoader workers do) on a machine whose
    cores are shared, where every parallel op would wait for a descheduled thread.

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
        return _jitter(x, params.order, *params[1:])

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={getattr(self, name)}" for name in _OP_NAMES)
