"""Data augmentation, batched on (B, C, H, W) images on any device (the lecture's "data augmentation").

Augmentation increases the amount of data by adding slightly modified copies of the images the model already
has; the extra variation gives better generalization. The lecture's ops, all following torchvision's
``transforms.v2.functional`` semantics and argument order, each working on a whole batch at once with
per-image random parameters drawn from an optional ``torch.Generator``:

* geometry (:mod:`tricksref.augment.geometry`): ``hflip``, ``vflip``, ``random_hflip``, ``random_vflip``,
  ``resized_crop``, ``random_resized_crop`` (and ``random_resized_crop_params``);
* colour (:mod:`tricksref.augment.color`): ``adjust_brightness``, ``adjust_contrast``,
  ``adjust_saturation``, ``adjust_hue``, ``rgb_to_grayscale``, ``color_jitter`` and the module
  ``ColorJitter``;
* mixing (:mod:`tricksref.augment.mix`): ``mixup`` and ``cutmix`` with soft labels that compose with label
  smoothing.

Images are float with values in [0, 1] or uint8 with values in [0, 255], and come back in the dtype given.

Example::

    import torch
    from tricksref import augment as A

    g = torch.Generator().manual_seed(0)
    x = torch.rand(256, 3, 32, 32)
    x = A.random_hflip(x, generator=g)
    x = A.random_resized_crop(x, 32, scale=(0.35, 1.0), generator=g)
    x = A.ColorJitter(0.4, 0.4, 0.4, 0.1)(x, generator=g)
"""

from __future__ import annotations

from .color import (
    ColorJitter,
    JitterParams,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    color_jitter,
    rgb_to_grayscale,
)
from .geometry import (
    hflip,
    random_hflip,
    random_resized_crop,
    random_resized_crop_params,
    random_vflip,
    resized_crop,
    vflip,
)
from .mix import cutmix, mixup

__all__ = [
    "hflip", "vflip", "random_hflip", "random_vflip",
    "resized_crop", "random_resized_crop", "random_resized_crop_params",
    "adjust_brightness", "adjust_contrast", "adjust_saturation", "adjust_hue", "rgb_to_grayscale",
    "color_jitter", "ColorJitter", "JitterParams",
    "mixup", "cutmix",
]
