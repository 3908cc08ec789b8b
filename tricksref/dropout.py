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

from . import _edition
from ._checks import check_float_tensor, check_number

__all__ = ["dropout", "Dropout"]

_impl = _edition.implementation("dropout")


def _check_args(p, generator):
    p = float(check_number(p, "p", low=0.0, high=1.0))
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator or None, got {type(generator).__name__}")
    return p


def dropout(x: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, *,
            generator: torch.Generator | None = None) -> torch.Tensor:
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
        - The same positional arguments as ``torch.nn.functional.dropout`` (``x, p, training, inplace``);
          ``generator`` is keyword only.
        - The random stream is the edition's (:mod:`tricksref._edition`): the same generator state gives the
          same mask within an edition, and the generator advances, but the two editions (and torch) draw
          different masks. In the solutions edition P(drop) is exactly p when p * 256 is an integer (p = 0.5,
          0.25, ...), otherwise within 2^-33 of p; the mask is the same on every device and with or without
          the C kernel, except under torch.func transforms and torch.compile, which draw it with
          ``torch.rand`` (vmap then follows its ``randomness`` argument).
        - Derivatives: the backward (``grad * m / (1 - p)``, saving the boolean mask only) is itself
          differentiable, so second derivatives, forward-mode AD and the torch.func transforms work.

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
    if not isinstance(inplace, bool):
        raise TypeError(f"inplace: expected a bool, got {type(inplace).__name__} {inplace!r}")
    if not training or p == 0.0 or x.numel() == 0:
        return x
    return _impl.dropout(x, p, generator, inplace)


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
        return dropout(x, self.p, self.training, self.inplace, generator=self.generator)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"
