"""Dropout (Srivastava et al., 2014): in training, mask a random fraction of the units; at test time use all.

Inverted dropout scales the kept units by 1 / (1 - p) during training, so that the expected activation is the
same in training and at test time and evaluation needs no rescaling at all:

    y = m * x / (1 - p),    m_i ~ Bernoulli(1 - p) independently,    E[y] = x.

Paper: N. Srivastava, G. Hinton, A. Krizhevsky, I. Sutskever, R. Salakhutdinov, "Dropout: A Simple Way to
Prevent Neural Networks from Overfitting", JMLR 15 (2014). https://jmlr.org/papers/v15/srivastava14a.html
"""

from __future__ import annotations

import torch
from torch import nn

from ._checks import check_float_tensor, check_number

__all__ = ["dropout", "Dropout"]

_INT64_MIN = -(2**63)


def _keep_mask(x: torch.Tensor, p: float, generator: torch.Generator | None) -> torch.Tensor:
    """Boolean keep-mask with x's shape and memory layout, True with probability 1 - p, on x's device.

    Random bits come from ``random_`` over the full int64 range (64 uniform bits per int64), viewed as k-bit
    signed integers r, uniform on [-2^(k-1), 2^(k-1)). A unit is dropped iff r < T - 2^(k-1) with
    T = round(p * 2^k), so P(drop) = T / 2^k: exact when p * 256 is an integer (k = 8, one byte per unit:
    p = 0.5, 0.25, ...), otherwise k = 32 and |P(drop) - p| <= 2^-33 (a float32 uniform draw has a resolution
    of 2^-24). A bool keep-mask drawn this way is several times faster on CPU than ``bernoulli_`` into a
    float tensor, which is what ``torch.nn.functional.dropout`` does there (benchmarks/bench_core_ops.py).
    """
    n = x.numel()
    # strides that empty_like gives: x's own when x is dense (channels_last stays channels_last)
    stride = torch.empty_like(x, dtype=torch.int8, device="meta").stride()
    if (p * 256).is_integer():
        bits = torch.empty((n + 7) // 8, dtype=torch.int64, device=x.device)
        bits.random_(_INT64_MIN, None, generator=generator)
        # int8 0/1 written in place, then reinterpreted as bool: no second buffer
        keep = bits.view(torch.int8)[:n].ge_(int(p * 256) - 128).view(torch.bool)
    else:
        bits = torch.empty((n + 1) // 2, dtype=torch.int64, device=x.device)
        bits.random_(_INT64_MIN, None, generator=generator)
        threshold = round(p * 2**32) - 2**31
        if threshold > 2**31 - 1:  # p within 2^-33 of 1: every unit dropped
            keep = torch.zeros(n, dtype=torch.bool, device=x.device)
        else:
            keep = torch.ge(bits.view(torch.int32)[:n], threshold)
    return keep.as_strided(x.shape, stride)


def _apply_mask(t: torch.Tensor, keep: torch.Tensor, scale: float, out: torch.Tensor | None = None):
    # t * keep * scale in one pass once keep is in t's dtype: a bool operand would make TensorIterator cast
    # element by element (several times slower on CPU), and torch.where / masked_fill are slower still.
    m = keep.to(t.dtype)
    return torch.addcmul(t.new_zeros(()), t, m, value=scale, out=out)


class _DropoutFunction(torch.autograd.Function):
    """y = x * m / (1 - p); dy/dx = m / (1 - p). Saves the bool mask (1 byte per unit), not a float copy."""

    @staticmethod
    def forward(ctx, x, p, generator, inplace):
        if p == 1.0:
            ctx.all_dropped = True
            if inplace:
                ctx.mark_dirty(x)
                return x.zero_()
            return torch.zeros_like(x)
        ctx.all_dropped = False
        ctx.scale = 1.0 / (1.0 - p)
        keep = _keep_mask(x, p, generator)
        ctx.save_for_backward(keep)
        if inplace:
            ctx.mark_dirty(x)
            return _apply_mask(x, keep, ctx.scale, out=x)
        return _apply_mask(x, keep, ctx.scale)

    @staticmethod
    def backward(ctx, grad):
        if ctx.all_dropped:
            # 0 rather than grad * m * inf: p = 1 must give zero gradients, not NaN
            return torch.zeros_like(grad), None, None, None
        (keep,) = ctx.saved_tensors
        # plain differentiable ops on grad, so double backward works too
        return _apply_mask(grad, keep, ctx.scale), None, None, None


def _check_args(p, generator):
    p = float(check_number(p, "p", low=0.0, high=1.0))
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator or None, got {type(generator).__name__}")
    return p


def dropout(x: torch.Tensor, p: float = 0.5, training: bool = True, generator: torch.Generator | None = None,
            *, inplace: bool = False) -> torch.Tensor:
    r"""Inverted dropout: zero each unit with probability p and scale the kept ones by 1 / (1 - p).

    Paper: Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks from Overfitting", JMLR 2014.

    .. math::
        y = \frac{m \odot x}{1 - p}, \qquad m_i \sim \mathrm{Bernoulli}(1 - p), \qquad \mathbb{E}[y] = x.

    Notes:
        - ``p`` is the probability of DROPPING a unit, as in PyTorch; the paper's p is the probability of
          keeping one. The paper scales the weights by its p at test time; inverted dropout (PyTorch, here)
          scales by 1 / (1 - p) in training instead, so evaluation is the identity.
        - When ``training`` is False or ``p == 0`` the input tensor itself is returned (not a copy), as
          ``torch.nn.functional.dropout`` does; so is an empty input.
        - ``p == 1`` gives exact zeros and zero gradients, even for inf/NaN inputs (PyTorch multiplies by 0
          and returns NaN there). Otherwise a dropped inf or NaN becomes NaN, as in PyTorch (``x * 0``).
        - The mask is drawn in x's memory order, so the same seed gives a different mask for a
          channels_last tensor than for a contiguous one; the output keeps x's memory format.
        - P(drop) is exactly p when p * 256 is an integer (p = 0.5, 0.25, ...), otherwise within 2^-33 of p.
        - The backward saves the boolean mask only and computes ``grad * m / (1 - p)``.

    Args:
        x: input tensor of any shape, floating point, on any device.
        p: probability of dropping a unit, in [0, 1]. Default: 0.5.
        training: apply dropout when True, return ``x`` unchanged when False. Default: True.
        generator: a ``torch.Generator`` on x's device for a reproducible mask; None uses the global RNG
            (``torch.manual_seed``). Default: None.
        inplace: overwrite ``x`` with the result and return it. Default: False.

    Shape:
        - Input: any shape (*).
        - Output: (*), the same shape, dtype, device and memory format.

    Examples::

        >>> g = torch.Generator().manual_seed(0)
        >>> y = dropout(torch.ones(2, 4), p=0.5, generator=g)   # entries are 0 or 2
        >>> dropout(torch.ones(2, 4), p=0.5, training=False)      # identity in evaluation
        tensor([[1., 1., 1., 1.],
                [1., 1., 1., 1.]])
    """
    check_float_tensor(x, "x")
    p = _check_args(p, generator)
    if generator is not None and generator.device.type != x.device.type:
        raise ValueError(f"generator: expected a generator on x's device ({x.device.type}), "
                         f"got one on {generator.device.type}")
    if not training or p == 0.0 or x.numel() == 0:
        return x
    return _DropoutFunction.apply(x, p, generator, bool(inplace))


class Dropout(nn.Module):
    r"""Inverted dropout as a layer: active in ``train()`` mode, the identity in ``eval()`` mode.

    Paper: Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks from Overfitting", JMLR 2014.

    .. math::
        y = \frac{m \odot x}{1 - p}, \qquad m_i \sim \mathrm{Bernoulli}(1 - p).

    A drop-in replacement for ``torch.nn.Dropout``: same constructor arguments, same ``repr``. See
    :func:`dropout` for the conventions (p is the drop probability; p = 1 gives zeros).

    Args:
        p: probability of dropping a unit, in [0, 1]. Default: 0.5.
        inplace: overwrite the input with the result. Default: False.
        generator: a ``torch.Generator`` on the input's device for reproducible masks; None uses the global
            RNG. Default: None.

    Shape:
        - Input: any shape (*).
        - Output: (*), the same shape.

    Examples::

        >>> layer = Dropout(p=0.5)
        >>> y = layer(torch.randn(8, 16))     # training mode: about half the entries are 0
        >>> y = layer.eval()(torch.randn(8, 16))   # evaluation: the identity
    """

    def __init__(self, p: float = 0.5, inplace: bool = False, *, generator: torch.Generator | None = None):
        super().__init__()
        self.p = _check_args(p, generator)
        self.inplace = inplace
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training, self.generator, inplace=self.inplace)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"
