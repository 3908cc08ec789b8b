"""Plumbing shared by the augmentation ops: input checks, the float working copy, random draws.

Conventions settled here, once for every op of ``tricksref.augment``:

* Images are batched, shape (B, C, H, W), either floating point with values in [0, 1] or uint8 with values in
  [0, 255]. Every op returns the dtype it was given.
* Arithmetic runs on a float "working copy": float32 for uint8, float16 and bfloat16 input (half types lose
  too much in a blend), the input's own dtype for float32 and float64.
* Random parameters are drawn on the generator's device (the CPU, with torch's default CPU generator, when
  ``generator`` is None, so ``torch.manual_seed`` governs them) and then moved to the images' device. The same
  seed therefore gives the same augmentation on CPU and CUDA.
"""

from __future__ import annotations

import operator

import torch

from .._checks import check_number

IMAGE_LAYOUT = "(B, C, H, W)"


def check_image(x, name: str = "x", channels: tuple[int, ...] | None = None, why: str = "",
                nonempty: bool = False) -> torch.Tensor:
    """Raise unless ``x`` is a (B, C, H, W) float or uint8 tensor, with C in ``channels`` when given and
    H, W >= 1 when ``nonempty`` (for ops that measure areas)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of shape {IMAGE_LAYOUT}, got {type(x).__name__}")
    if not (x.is_floating_point() or x.dtype == torch.uint8):
        raise TypeError(f"{name}: expected a floating-point tensor with values in [0, 1] or a uint8 tensor "
                        f"with values in [0, 255], got dtype {x.dtype}")
    if x.dim() != 4:
        raise ValueError(f"{name}: expected a 4D tensor of shape {IMAGE_LAYOUT}, got {x.dim()}D with shape "
                         f"{tuple(x.shape)}")
    if channels is not None and x.shape[1] not in channels:
        allowed = " or ".join(map(str, channels))
        raise ValueError(f"{name}: expected {allowed} channels{why}, got C={x.shape[1]} in shape "
                         f"{tuple(x.shape)}")
    if nonempty and (x.shape[2] < 1 or x.shape[3] < 1):
        raise ValueError(f"{name}: expected images of at least 1 x 1 pixels, got shape {tuple(x.shape)}")
    return x


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """The float dtype the arithmetic runs in for images of ``dtype``."""
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def to_work(x: torch.Tensor) -> tuple[torch.Tensor, float, bool]:
    """Return ``(w, bound, integer)``: the float working copy, its top value, whether it holds uint8 levels.

    ``w`` may alias ``x`` (float32/float64 input): the kernels never write into it.
    """
    w = x.to(work_dtype(x.dtype))
    integer = x.dtype == torch.uint8
    return w, (255.0 if integer else 1.0), integer


def check_factor(factor, name: str, batch: int, *, low=None, high=None):
    """Validate a per-op factor: a real number or a tensor of shape (B,); return a float or a (B,) tensor.

    The interval is closed. A tensor factor costs one host sync (the range check), which is why
    ``ColorJitter`` calls the kernels directly with the factors it drew itself.
    """
    if isinstance(factor, torch.Tensor):
        if factor.dim() == 0:
            factor = factor.item()
        else:
            if factor.is_complex() or factor.dtype == torch.bool:
                raise TypeError(f"{name}: expected a real tensor, got dtype {factor.dtype}")
            if tuple(factor.shape) != (batch,):
                raise ValueError(f"{name}: expected a number or a tensor of shape (B,) = ({batch},), got "
                                 f"shape {tuple(factor.shape)}")
            f = factor.double() if not factor.is_floating_point() else factor
            bad = torch.isnan(f)
            if low is not None:
                bad = bad | (f < low)
            if high is not None:
                bad = bad | (f > high)
            if bool(bad.any()):
                lo = "-inf" if low is None else low
                hi = "inf" if high is None else high
                first = f[bad][0].item()
                raise ValueError(f"{name}: expected every value in [{lo}, {hi}], got {first!r} "
                                 f"(image {int(bad.nonzero()[0, 0])})")
            return factor
    check_number(factor, name, low=low, high=high)
    return float(factor)


def check_generator(generator, name: str = "generator") -> torch.Generator | None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{name}: expected a torch.Generator or None, got {type(generator).__name__}")
    return generator


def draw_device(generator: torch.Generator | None) -> torch.device:
    """Where random numbers are drawn: on the generator's device, the CPU without one."""
    return torch.device("cpu") if generator is None else generator.device


def rand(shape, generator, device) -> torch.Tensor:
    """Uniform [0, 1) float64 numbers drawn from ``generator`` and moved to ``device``."""
    u = torch.rand(shape, generator=generator, dtype=torch.float64, device=draw_device(generator))
    return u.to(device)


def as_index(value, name: str) -> int:
    """A Python integer (bools and floats rejected), for crop coordinates and sizes."""
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected an integer, got bool {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__} {value!r}") from None


def parse_size(size, name: str = "size") -> tuple[int, int]:
    """``size`` as (h, w): an int s means (s, s), as in torchvision's RandomResizedCrop."""
    if isinstance(size, (list, tuple)):
        if len(size) != 2:
            raise ValueError(f"{name}: expected an int or a pair (h, w), got a sequence of length "
                             f"{len(size)}")
        h, w = (as_index(s, name) for s in size)
    else:
        h = w = as_index(size, name)
    if h < 1 or w < 1:
        raise ValueError(f"{name}: expected positive output sizes, got {(h, w)}")
    return h, w
