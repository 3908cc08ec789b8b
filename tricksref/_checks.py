"""Input validation shared by the trick modules: errors name the parameter and what was expected."""

from __future__ import annotations

import numbers

import torch

__all__ = ["check_float_tensor", "check_min_dim", "check_choice", "check_number"]


def check_float_tensor(x, name: str = "input") -> torch.Tensor:
    """Return ``x`` if it is a floating-point tensor, else raise TypeError naming ``name``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")
    return x


def check_min_dim(x: torch.Tensor, min_dim: int, name: str = "input", shape: str = "") -> torch.Tensor:
    """Raise ValueError unless ``x.dim() >= min_dim``; ``shape`` documents the expected layout."""
    if x.dim() < min_dim:
        layout = f" of shape {shape}" if shape else ""
        raise ValueError(f"{name}: expected a tensor with at least {min_dim} dimensions{layout}, "
                         f"got {x.dim()}D with shape {tuple(x.shape)}")
    return x


def check_choice(value, choices, name: str):
    """Raise ValueError unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_number(value, name: str, *, low=None, high=None, low_open=False, high_open=False,
                 integer=False):
    """Check a real scalar against an interval; ``[low, high]`` closed unless ``*_open`` is set."""
    kind = numbers.Integral if integer else numbers.Real  # numpy scalars are welcome too
    if isinstance(value, (bool, torch.Tensor)) or not isinstance(value, kind):
        if isinstance(value, torch.Tensor) and value.numel() == 1 and not integer:
            value = value.item()
        else:
            expected = "an integer" if integer else "a real number"
            raise TypeError(f"{name}: expected {expected}, got {type(value).__name__} {value!r}")
    lo_ok = low is None or (value > low if low_open else value >= low)
    hi_ok = high is None or (value < high if high_open else value <= high)
    if not (lo_ok and hi_ok):
        lb = "-inf" if low is None else low
        hb = "inf" if high is None else high
        left = "(" if low_open or low is None else "["
        right = ")" if high_open or high is None else "]"
        interval = f"{left}{lb}, {hb}{right}"
        raise ValueError(f"{name}: expected a value in {interval}, got {value!r}")
    return value
