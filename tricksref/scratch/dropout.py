"""Dropout from scratch: the keep-mask drawn from a seed, inverted scaling, and the mask's own backward.

    y = m * x / (1 - p),    m_i ~ Bernoulli(1 - p),    dL/dx = m * dL/dy / (1 - p)

The random bits come from a counter-based generator: the word w of the stream is SplitMix64's output
function applied to ``seed + (w + 1) * G`` (Steele, Lea and Flood, "Fast splittable pseudorandom number
generators", OOPSLA 2014), one 64-bit seed drawn from the torch generator per call. Each word gives 8 units
one byte each when p * 256 is an integer (p = 0.5, 0.25, ...: P(drop) exactly p), else 2 units 32 bits each
(|P(drop) - p| <= 2^-33); a unit is dropped iff its r < round(p * 2^k). Counter-based, the mask is the same
whatever the thread count and on every path: :func:`keep_mask` computes it with torch's integer ops (the
reference, and the path on CUDA), the C kernel (``_kernels.c``) computes the same bits and applies them in
the same pass on the CPU. Under a torch.func transform or torch.compile the mask is drawn with
``torch.rand`` instead, which those understand (vmap's ``randomness`` modes included).
"""

from __future__ import annotations

import torch

from . import _native

__all__ = ["dropout", "keep_mask"]

_INT64_MIN = -(2**63)
_GOLDEN = 0x9E3779B97F4A7C15
_M1, _M2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _signed(u: int) -> int:
    """The int64 whose bits are the uint64 ``u`` (torch has no uint64 arithmetic)."""
    return u - 2**64 if u >= 2**63 else u


def _shift_right(z: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 bits (torch's ``>>`` is arithmetic: it copies the sign bit)."""
    return (z >> s) & ((1 << (64 - s)) - 1)


def _words(seed: int | torch.Tensor, count: int, device) -> torch.Tensor:
    """Words 0 .. count-1 of the stream, as int64 bits: mix(seed + (w + 1) G) with SplitMix64's mix."""
    z = torch.arange(1, count + 1, dtype=torch.int64, device=device) * _signed(_GOLDEN) + seed
    z = (z ^ _shift_right(z, 30)) * _signed(_M1)  # int64 products wrap modulo 2^64, as uint64 ones do
    z = (z ^ _shift_right(z, 27)) * _signed(_M2)
    return z ^ _shift_right(z, 31)


def _bits_and_threshold(p: float) -> tuple[int, int]:
    """k bits per unit and the threshold T = p * 2^k: 8 bits where that is exact, else 32."""
    if (p * 256).is_integer():
        return 8, int(p * 256)
    return 32, round(p * 2**32)


def keep_mask(seed: int | torch.Tensor, n: int, p: float, device) -> torch.Tensor:
    """The flat boolean keep-mask of n units for this seed (True: kept), with torch's integer ops."""
    bits, threshold = _bits_and_threshold(p)
    per = 64 // bits
    z = _words(seed, (n + per - 1) // per, device)
    if bits == 8:  # byte j of a word is (z >> 8j) & 0xff: little-endian memory order
        r = z.view(torch.uint8)[:n].to(torch.int16)
    else:
        r = z.view(torch.int32)[:n].to(torch.int64) & 0xFFFFFFFF
    return r >= threshold


def _draw_seed(x: torch.Tensor, generator: torch.Generator | None) -> int | torch.Tensor:
    """64 bits from the generator (or the global RNG of x's device): the generator advances by one draw."""
    seed = torch.empty((), dtype=torch.int64, device=x.device).random_(_INT64_MIN, None, generator=generator)
    return seed if x.device.type == "cuda" else int(seed)  # stays on the GPU: no synchronisation


def _apply(t: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
    """t * keep * scale. The keep-mask is cast to t's dtype first: with a bool operand TensorIterator casts
    element by element (several times slower on CPU)."""
    # no graph to record: the kernel may run
    if (not torch.is_grad_enabled() and keep.is_contiguous() and keep.dtype == torch.bool
            and _native.usable(t)):
        dx = torch.empty_like(t)
        _native.library().tr_apply_mask(t.data_ptr(), keep.data_ptr(), dx.data_ptr(), t.numel(), scale,
                                        _native.threads_for(t.numel()))
        return dx
    return t * keep.to(t.dtype) * scale


def _forward_plain(x: torch.Tensor, p: float, seed, inplace: bool):
    """(y, keep) for a plain tensor: the C kernel in one pass where it runs, else :func:`keep_mask`."""
    scale = 1.0 / (1.0 - p)
    if not isinstance(seed, torch.Tensor) and _native.usable(x):
        bits, threshold = _bits_and_threshold(p)
        keep = torch.empty_like(x, dtype=torch.bool)
        y = x if inplace else torch.empty_like(x)
        status = _native.library().tr_dropout(x.data_ptr(), y.data_ptr(), keep.data_ptr(), x.numel(),
                                              seed % 2**64, threshold, bits, scale,
                                              _native.threads_for(x.numel()))
        if status:
            raise RuntimeError(f"tricksref: the dropout kernel refused bits={bits}")
        return y, keep
    # memory order, so that a channels_last x (dense, not contiguous) has its mask in its own layout
    stride = torch.empty_like(x, dtype=torch.int8, device="meta").stride()
    keep = keep_mask(seed, x.numel(), p, x.device).as_strided(x.shape, stride)
    if inplace:
        return x.mul_(keep.to(x.dtype)).mul_(scale), keep
    return _apply(x, keep, scale), keep


class _DropoutFunction(torch.autograd.Function):
    """(y, keep) with y = x * keep / (1 - p); the backward and the jvp apply the same mask, with ordinary
    tensor operations, so that second derivatives and torch.func transforms work. Saves the bool mask
    (1 byte per unit), not a float copy."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, p, seed, keep, inplace):
        if p == 1.0:  # exact zeros, also for inf and NaN inputs (x * 0 would give NaN)
            return (x.zero_() if inplace else torch.zeros_like(x)), torch.zeros_like(x, dtype=torch.bool)
        if keep is None:
            return _forward_plain(x, p, seed, inplace)
        return (x.mul_(keep.to(x.dtype)).mul_(1.0 / (1.0 - p)) if inplace
                else _apply(x, keep, 1.0 / (1.0 - p))), keep.view_as(keep)  # an input cannot be an output

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, p, _, _, inplace = inputs
        _, keep = output
        ctx.mark_non_differentiable(keep)
        ctx.set_materialize_grads(False)  # else autograd fills a full-size zero grad for keep
        if inplace:
            ctx.mark_dirty(x)
        ctx.p = p
        ctx.save_for_backward(keep)
        ctx.save_for_forward(keep)

    @staticmethod
    def backward(ctx, g, _):
        (keep,) = ctx.saved_tensors
        if g is None:
            return None, None, None, None, None
        if ctx.p == 1.0:  # 0 rather than g * 0 = NaN for an inf g: p = 1 must give zero gradients
            return torch.zeros_like(g), None, None, None, None
        return _apply(g, keep, 1.0 / (1.0 - ctx.p)), None, None, None, None

    @staticmethod
    def jvp(ctx, dx, *_):
        (keep,) = ctx.saved_tensors
        if dx is None:
            return None, None
        dy = torch.zeros_like(dx) if ctx.p == 1.0 else _apply(dx, keep, 1.0 / (1.0 - ctx.p))
        return dy, None


def dropout(x: torch.Tensor, p: float, generator: torch.Generator | None, inplace: bool) -> torch.Tensor:
    """Inverted dropout in training, for 0 < p <= 1 and a non-empty x (the caller checked the arguments)."""
    if not _native._plain(x):  # a torch.func transform or torch.compile: a mask they understand
        # drawn for x's (per-sample) shape, so that vmap's randomness="same" and "different" both apply
        u = torch.rand(x.shape, dtype=torch.float64, device=x.device, generator=generator)
        keep = u >= p
        return _DropoutFunction.apply(x, p, None, keep, inplace)[0]
    seed = _draw_seed(x, generator)
    return _DropoutFunction.apply(x, p, seed, None, inplace)[0]
