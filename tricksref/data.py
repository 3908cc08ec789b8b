"""Data that ships with the project or its packages: nothing is downloaded at run time.

- ``load_digits``: scikit-learn's 8x8 handwritten digits (Alpaydin and Kaynak), upsampled to a CNN's input
  size.
- ``make_cars``: a generated data set for the lecture's "Ford faces left, Chevrolet faces right" example. The
  class (the brand) is the car's *shape*: brand A (index 0, "Ford") is a sedan with a long, low cabin; brand B
  (index 1, "Chevrolet") a pickup with a short, tall cabin. The facing direction is a separate attribute that
  shows in the headlight (yellow, at the front) and the tail light (red, at the back). With
  ``facing="tied"`` every Ford faces left and every Chevrolet faces right, as in the lecture's training set;
  with ``facing="random"`` the direction is independent of the brand, as in the world.
- ``sample_photos``: a few real photographs that scikit-image ships (astronaut, cat, coffee, rocket), for
  augmentation galleries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ._checks import check_choice, check_number

__all__ = ["DataSplit", "load_digits", "make_cars", "CAR_BRANDS", "FACINGS", "sample_photos", "PHOTOS"]

CAR_BRANDS = ("Ford (brand A)", "Chevrolet (brand B)")
FACINGS = ("left", "right")
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


@dataclass(frozen=True)
class DataSplit:
    """A train/test split of images ``x`` (N, C, H, W) float32 in [0, 1] and integer labels ``y`` (N,)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def num_classes(self) -> int:
        return int(torch.cat([self.y_train, self.y_test]).max()) + 1

    def to(self, device) -> DataSplit:
        return DataSplit(*(t.to(device) for t in (self.x_train, self.y_train, self.x_test, self.y_test)))


def load_digits(size: int = 32, *, test_fraction: float = 0.25, classes=None, seed: int = 0) -> DataSplit:
    """scikit-learn's digits (1797 images of 8x8, 10 classes) as a stratified train/test split.

    Args:
        size: output height and width; the 8x8 images are upsampled bilinearly (8 keeps them as they are).
        test_fraction: the share of each class held out for testing, in (0, 1).
        classes: keep only these digit classes (relabelled 0..len(classes)-1 in the order given); None keeps
            all.
        seed: the seed of the split.

    Returns:
        A ``DataSplit`` with x of shape (N, 1, size, size), float32 in [0, 1].
    """
    from sklearn.datasets import load_digits as _load

    check_number(size, "size", low=8, integer=True)
    check_number(test_fraction, "test_fraction", low=0.0, high=1.0, low_open=True, high_open=True)
    bunch = _load()
    x = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8)
    y = torch.as_tensor(bunch.target, dtype=torch.long)
    if classes is not None:
        classes = [int(c) for c in classes]
        if not classes or len(set(classes)) != len(classes) or not all(0 <= c <= 9 for c in classes):
            raise ValueError(f"classes: expected distinct digits in 0..9, got {classes}")
        keep = torch.isin(y, torch.tensor(classes))
        x, y = x[keep], y[keep]
        y = torch.tensor([classes.index(int(c)) for c in y], dtype=torch.long)
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp_(0.0, 1.0)
    g = torch.Generator().manual_seed(seed)
    test = torch.zeros(len(y), dtype=torch.bool)
    for c in y.unique():  # stratified: the same share of every class is held out
        idx = (y == c).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=g)]
        test[idx[: round(test_fraction * len(idx))]] = True
    return DataSplit(x[~test], y[~test], x[test], y[test])


def _boxes(u, v, u0, u1, v0, v1):
    """Mask of the axis-aligned boxes [u0, u1] x [v0, v1] (per image, broadcast over the pixel grid)."""
    return (u >= u0) & (u <= u1) & (v >= v0) & (v <= v1)


def make_cars(n: int, *, size: int = 32, facing: str = "tied", generator: torch.Generator | None = None):
    """Generate ``n`` side views of two brands of car, for the lecture's facing-direction example.

    Brand A (label 0, "Ford") is a sedan: a long, low cabin in the middle of the body. Brand B (label 1,
    "Chevrolet") is a pickup: a short, tall cabin over the front axle and an open bed behind it. The brand is
    the shape of the cabin, which a horizontal flip does not change; the facing direction is marked by a
    yellow headlight at the front and a red tail light at the back, which a flip swaps. Position, size, body
    colour and background vary per image.

    Args:
        n: the number of images.
        size: height and width in pixels (>= 16).
        facing: ``"tied"`` (brand A faces left, brand B faces right: the lecture's biased training set),
            ``"random"`` (independent of the brand), ``"left"``, ``"right"`` or ``"opposite"`` (brand A faces
            right, brand B faces left: every car the other way round from the training set).
        generator: a ``torch.Generator`` for reproducible data.

    Returns:
        ``(x, brand, facing)``: images (n, 3, size, size) float32 in [0, 1], brand labels (n,) and facing
        labels (n,) with 0 = left and 1 = right.
    """
    check_number(n, "n", low=0, integer=True)
    check_number(size, "size", low=16, integer=True)
    check_choice(facing, ("tied", "random", "left", "right", "opposite"), "facing")
    g = generator

    def rand(*shape):
        return torch.rand(*shape, generator=g)

    brand = (rand(n) < 0.5).long()
    right = {"tied": brand, "opposite": 1 - brand, "left": torch.zeros(n, dtype=torch.long),
             "right": torch.ones(n, dtype=torch.long), "random": (rand(n) < 0.5).long()}[facing]

    # car frame: length L and its left end x0, ground line y0, in pixels; u in [0, 1] runs from the front
    length = size * (0.62 + 0.2 * rand(n))
    x0 = (size - length) * rand(n)
    y0 = size * (0.78 + 0.12 * rand(n))
    col = torch.arange(size, dtype=torch.float32) + 0.5
    px = col.view(1, 1, size)                               # (1, 1, W)
    py = col.view(1, size, 1)                               # (1, H, 1)
    u = (px - x0.view(n, 1, 1)) / length.view(n, 1, 1)      # (n, 1, W): 0 at the left end
    u = torch.where(right.view(n, 1, 1).bool(), 1.0 - u, u)  # 0 at the front, whichever way it faces
    v = (y0.view(n, 1, 1) - py) / length.view(n, 1, 1)      # (n, H, 1): height above the ground / L
    u, v = torch.broadcast_tensors(u, v)                    # (n, H, W)

    sedan = (brand == 0).view(n, 1, 1)
    body = _boxes(u, v, 0.0, 1.0, 0.06, 0.2) & ~((u < 0.22) & (v > 0.16))  # a lower hood at the front
    cabin_sedan = _boxes(u, v, 0.28, 0.78, 0.2, 0.33) & (v - 0.2 <= 0.9 * (u - 0.2))  # sloped windshield
    cabin_pickup = _boxes(u, v, 0.22, 0.46, 0.2, 0.42)
    bed_wall = _boxes(u, v, 0.5, 1.0, 0.2, 0.25)  # the pickup's open bed: a low rim, empty above
    cabin = torch.where(sedan, cabin_sedan, cabin_pickup)
    window = torch.where(sedan, _boxes(u, v, 0.36, 0.72, 0.23, 0.3), _boxes(u, v, 0.27, 0.42, 0.27, 0.38))
    car = body | cabin | (~sedan & bed_wall)
    wheels = ((u - 0.2) ** 2 + (v - 0.06) ** 2 <= 0.075**2) | ((u - 0.8) ** 2 + (v - 0.06) ** 2 <= 0.075**2)
    head = _boxes(u, v, 0.0, 0.08, 0.09, 0.17)
    tail = _boxes(u, v, 0.92, 1.0, 0.1, 0.2)

    # colours (n, 3, 1, 1): a random body hue, a grey-green background, a little noise
    hue = rand(n) * 2 * math.pi
    body_rgb = 0.45 + 0.3 * torch.stack([torch.cos(hue), torch.cos(hue - 2.1), torch.cos(hue + 2.1)], 1)
    bg_rgb = (0.55 + 0.25 * rand(n, 1)) * torch.tensor([0.85, 0.95, 0.8]) + 0.05 * rand(n, 3)
    x = bg_rgb.view(n, 3, 1, 1).expand(n, 3, size, size).clone()

    def paint(mask, rgb):
        rgb = torch.as_tensor(rgb, dtype=torch.float32)
        rgb = rgb.view(1, 3, 1, 1) if rgb.dim() == 1 else rgb.view(n, 3, 1, 1)
        x.copy_(torch.where(mask.unsqueeze(1), rgb.expand_as(x), x))

    paint(car, body_rgb)
    paint(window & cabin, [0.75, 0.88, 0.95])
    paint(wheels, [0.08, 0.08, 0.08])
    paint(head & body, [1.0, 0.9, 0.1])
    paint(tail & car, [0.9, 0.05, 0.05])
    x = (x + 0.04 * torch.randn(x.shape, generator=g)).clamp_(0.0, 1.0)
    return x, brand, right


def sample_photos(names=PHOTOS, size: int | None = 128) -> torch.Tensor:
    """Real photographs shipped with scikit-image, as a batch (B, 3, size, size) float32 in [0, 1].

    Each photo is centre-cropped to a square and resized to ``size`` (None keeps the square crop of the first
    photo's size for all). Names: ``"astronaut"``, ``"chelsea"`` (a cat), ``"coffee"``, ``"rocket"``.
    """
    import skimage.data

    names = (names,) if isinstance(names, str) else tuple(names)
    if not names:
        raise ValueError("names: expected at least one photo name")
    imgs = []
    for name in names:
        check_choice(name, PHOTOS, "names")
        a = torch.as_tensor(getattr(skimage.data, name)()).permute(2, 0, 1).float() / 255.0  # (3, H, W)
        s = min(a.shape[1:])
        top, left = (a.shape[1] - s) // 2, (a.shape[2] - s) // 2
        imgs.append(a[:, top:top + s, left:left + s])
    side = size or imgs[0].shape[1]
    return torch.stack([F.interpolate(a[None], size=(side, side), mode="bilinear", antialias=True,
                                      align_corners=False)[0] for a in imgs]).clamp_(0.0, 1.0)
