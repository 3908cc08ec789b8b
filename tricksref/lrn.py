"""Local response normalization (LRN), inter-channel and intra-channel (Krizhevsky et al., 2012).

Each activation is divided by the energy of its neighbours, across channels (inter) or across positions in the
same channel (intra); see :func:`local_response_norm` for the formulas and the conventions. This module checks
the arguments; the computation is the edition's (:mod:`tricksref._edition`): from scratch with a closed-form
backward in the solutions edition, through ``torch.nn.functional.local_response_norm`` in the student one.
"""

from __future__ import annotations

import torch
from torch import nn

from . import _edition
from ._checks import check_choice, check_float_tensor, check_min_dim, check_number

__all__ = ["local_response_norm", "LocalResponseNorm"]

MODES = ("inter", "intra")
CONVENTIONS = ("torch", "alexnet")

_impl = _edition.implementation("lrn")


def local_response_norm(x: torch.Tensor, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0,
                        *, mode: str = "inter", convention: str = "torch") -> torch.Tensor:
    r"""Local response normalization across channels (``mode="inter"``) or positions (``mode="intra"``).

    Krizhevsky, Sutskever and Hinton, "ImageNet Classification with Deep Convolutional Neural Networks",
    NeurIPS 2012, section 3.3. The lecture's formulas, with ``a^i_{x,y}`` the activation of channel ``i`` at
    position ``(x, y)``, ``N`` channels and a window of ``n``:

    .. math::

        b^i_{x,y} = a^i_{x,y} \Big/ \Big(k + \alpha \sum_{j=\max(0,\,i-n/2)}^{\min(N-1,\,i+n/2)}
                    (a^j_{x,y})^2\Big)^{\beta} \qquad\text{(inter)}

        b^i_{x,y} = a^i_{x,y} \Big/ \Big(k + \alpha \sum_{u=\max(0,\,x-n/2)}^{\min(W,\,x+n/2)}
                    \sum_{v=\max(0,\,y-n/2)}^{\min(H,\,y+n/2)} (a^i_{u,v})^2\Big)^{\beta} \qquad\text{(intra)}

    Every variant computes ``b = a * s^-beta`` with ``s = k + alpha' * sum_{window} a^2``, zero outside:

    ==========  ===========  ==================================================  ==================
    mode        convention   window around index ``i`` along each summed dim     ``alpha'``
    ==========  ===========  ==================================================  ==================
    inter       torch        channels ``i - floor(n/2) .. i + floor((n-1)/2)``   ``alpha / n``
    inter       alexnet      channels ``i - floor(n/2) .. i + floor(n/2)``       ``alpha``
    intra       torch        positions, as inter/torch, along all ``d`` dims     ``alpha / n^d``
    intra       alexnet      positions, as inter/alexnet, along all dims         ``alpha``
    ==========  ===========  ==================================================  ==================

    Conventions, where the sources disagree:

    - ``"alexnet"`` is the lecture's (and the paper's) formula: ``n/2`` is ``floor(n/2)``, so the window has
      ``2*floor(n/2) + 1`` taps centred on ``i``, clipped at the borders, and ``alpha`` multiplies the *sum*.
      An even ``n`` sums the same window as ``n + 1``: the lecture's ``n = 2`` sums three channels, and
      neighbours 2, 1, 2 with ``k = 0, alpha = beta = 1`` give the centre ``1 / (0 + 4 + 1 + 4) = 1/9``.
      The intra bounds ``min(W, .)``, ``min(H, .)`` are read as the last valid index.
    - ``"torch"`` is ``torch.nn.functional.local_response_norm`` (and Caffe, for the odd ``n`` it allows):
      exactly ``n`` taps with zeros outside, and ``alpha`` multiplies the *mean* (it is divided by ``n``, by
      ``n^d`` for an intra window of ``d`` dims). For an even ``n`` the window reaches one index further back
      than forward.
      ``mode="inter", convention="torch"`` equals torch's operator for every size.
    - To reproduce the paper with torch's arguments, take ``size = 2*floor(n/2) + 1`` and
      ``alpha_torch = alpha_paper * size``: for AlexNet's ``n = 5, k = 2, alpha = 1e-4, beta = 0.75`` that is
      ``torch.nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)``. An even ``n`` needs ``size = n + 1``:
      the paper's window is then ``n + 1`` wide and symmetric, while torch's ``size = n`` is lopsided.
    - Clipping the window at the border (the lecture) and zero padding (torch) give the same sum.

    Derivatives: first and second derivatives (``create_graph=True``, gradient penalties), forward-mode AD
    (``torch.func.jvp``) and the torch.func transforms (``vmap``, ``grad``) give torch's values; the solutions
    edition's backward is the closed form (see :mod:`tricksref.scratch.lrn`). float16 and bfloat16 inputs are
    computed in float32 and the result is rounded back.

    Args:
        x: the activations ``a``, a floating-point tensor of shape (N, C, *) with at least one dim after C.
        size: ``n``, the window length, an int >= 1.
        alpha: the scale ``alpha`` (default 1e-4).
        beta: the exponent ``beta`` (default 0.75).
        k: the additive constant ``k`` (default 1.0).
        mode: ``"inter"`` (across channels, default) or ``"intra"`` (across positions, within a channel).
        convention: ``"torch"`` (default) or ``"alexnet"`` (the lecture's).

    Shape:
        - Input: (N, C, *): (N, C, L), (N, C, H, W), (N, C, D, H, W) and so on; ``"intra"`` sums a square
          (cube, ...) over all the dims after C, a segment of L for 3-D input.
        - Output: the shape, dtype, device and (channels_last included) memory format of the input.

    Examples::

        >>> a = torch.tensor([2.0, 1.0, 2.0]).view(1, 3, 1, 1)
        >>> local_response_norm(a, 2, alpha=1.0, beta=1.0, k=0.0, convention="alexnet")[0, 1, 0, 0]
        tensor(0.1111)
        >>> x = torch.randn(8, 96, 27, 27)
        >>> torch.allclose(local_response_norm(x, 5), torch.nn.functional.local_response_norm(x, 5))
        True
    """
    check_float_tensor(x, "x")
    check_choice(mode, MODES, "mode")
    check_choice(convention, CONVENTIONS, "convention")
    _check_params(size, alpha, beta, k)
    check_min_dim(x, 3, "x", "(N, C, *)")

    if x.dtype in (torch.float16, torch.bfloat16):
        # Squares overflow float16 from |a| = 256 on, and a sum of rounded squares loses bits: use float32.
        return _impl.local_response_norm(x.float(), size, alpha, beta, k, mode, convention).to(x.dtype)
    return _impl.local_response_norm(x, size, alpha, beta, k, mode, convention)


class LocalResponseNorm(nn.Module):
    r"""Local response normalization as a layer: :func:`local_response_norm` with fixed arguments.

    With the defaults ``mode="inter", convention="torch"`` it behaves as ``torch.nn.LocalResponseNorm``. It
    has no parameters and no buffers.

    Args:
        size: ``n``, the window length, an int >= 1.
        alpha: the scale ``alpha`` (default 1e-4).
        beta: the exponent ``beta`` (default 0.75).
        k: the additive constant ``k`` (default 1.0).
        mode: ``"inter"`` (default) or ``"intra"``.
        convention: ``"torch"`` (default) or ``"alexnet"``.

    Shape:
        - Input: (N, C, *)
        - Output: same as the input.

    Examples::

        >>> lrn = LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0, convention="alexnet")  # AlexNet's
        >>> lrn(torch.randn(2, 96, 27, 27)).shape
        torch.Size([2, 96, 27, 27])
    """

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0,
                 mode: str = "inter", convention: str = "torch") -> None:
        super().__init__()
        _check_params(size, alpha, beta, k)
        self.size = size
        self.alpha = alpha
        self.beta = beta
        self.k = k
        self.mode = check_choice(mode, MODES, "mode")
        self.convention = check_choice(convention, CONVENTIONS, "convention")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return local_response_norm(x, self.size, self.alpha, self.beta, self.k,
                                   mode=self.mode, convention=self.convention)

    def extra_repr(self) -> str:
        return (f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}, "
                f"mode={self.mode!r}, convention={self.convention!r}")


def _check_params(size, alpha, beta, k) -> None:
    check_number(size, "size", low=1, integer=True)
    check_number(alpha, "alpha")
    check_number(beta, "beta")
    check_number(k, "k")
