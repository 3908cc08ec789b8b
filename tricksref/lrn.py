"""Local response normalization (LRN), inter-channel and intra-channel (Krizhevsky et al., 2012).

Each activation is divided by the energy of its neighbours, across channels (inter) or across positions in the
same channel (intra); see :func:`local_response_norm` for the formulas and the conventions. All four variants
are one computation, ``b = a * (k + alpha' * window_sum(a^2))^-beta`` with a zero-padded box window, done with
shifted slices and a closed-form backward. For an n-tap inter window and beta = 0.75 that is n + 4 elementwise
passes forward and n + 3 backward, several times faster on the CPU than autograd through
``torch.nn.functional.local_response_norm`` (``benchmarks/bench_lrn.py`` measures it).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from ._checks import check_choice, check_float_tensor, check_min_dim, check_number

__all__ = ["local_response_norm", "LocalResponseNorm"]

MODES = ("inter", "intra")
CONVENTIONS = ("torch", "alexnet")


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

    The backward is written out, not traced: with ``g = dL/db`` and ``W(i)`` the window of ``i``,
    ``dL/da_m = g_m s_m^-beta - 2 alpha' beta a_m sum_{i: m in W(i)} g_i a_i s_i^(-beta-1)``; the ``i`` whose
    window holds ``m`` form the mirrored window (it matters for even ``n`` in the torch convention). Second
    derivatives are not implemented (an error, not a wrong value). float16 and bfloat16 inputs are computed
    in float32 and the result is rounded back.

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

    before, after = (size // 2, (size - 1) // 2) if convention == "torch" else (size // 2, size // 2)
    dims = (1,) if mode == "inter" else tuple(range(2, x.dim()))
    if convention == "torch":
        alpha = alpha / size ** len(dims)
    windows = tuple((d, before, after) for d in dims)

    if x.dtype in (torch.float16, torch.bfloat16):
        # Squares overflow float16 from |a| = 256 on, and a sum of rounded squares loses bits: use float32.
        return _LRN.apply(x.float(), windows, float(alpha), float(beta), float(k)).to(x.dtype)
    return _LRN.apply(x, windows, float(alpha), float(beta), float(k))


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


class _LRN(torch.autograd.Function):
    """``b = a * s^-beta`` with ``s = k + alpha * window_sum(a^2)``, and the closed-form backward.

    The forward allocates three full-size tensors (torch's seven) and keeps two for the backward, ``s`` and
    ``s^-beta``, beside the input itself (torch's keeps three: the padded squares, ``s`` and ``s^beta``).
    """

    @staticmethod
    def forward(ctx, a, windows, alpha, beta, k):
        s = _window_sum(a, a, windows, alpha, k)
        scale = _pow_neg(s, beta)
        if not ctx.needs_input_grad[0]:
            return scale.mul_(a)  # no backward to come: the output takes scale's buffer
        ctx.save_for_backward(a, s, scale)
        ctx.windows, ctx.alpha, ctx.beta = windows, alpha, beta
        return a * scale

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        a, s, scale = ctx.saved_tensors
        t = g * scale  # g_m s_m^-beta
        mirrored = tuple((d, after, before) for d, before, after in ctx.windows)  # the i with m in W(i)
        v = _window_sum(t, a / s, mirrored, -2.0 * ctx.alpha * ctx.beta)  # sum g_i a_i s_i^(-beta-1), scaled
        return t.addcmul_(a, v), None, None, None, None


def _window_sum(p: torch.Tensor, q: torch.Tensor, windows, alpha: float, k: float = 0.0) -> torch.Tensor:
    """``k + alpha * sum_{window} p * q`` with zeros outside the tensor, in a new tensor.

    ``windows`` holds ``(dim, before, after)``: along ``dim``, index ``i`` sums ``i - before .. i + after``.
    A box is separable, so it is summed one dim at a time. Each tap is one ``addcmul_`` of two shifted slices:
    no squared temporary, no padded copy, and a direct sum, which stays accurate in float32 where a running
    (cumulative) sum would cancel.
    """
    for i, (d, before, after) in enumerate(windows):
        c, k_i = (alpha, k) if i == len(windows) - 1 else (1.0, 0.0)
        out = torch.addcmul(p.new_full((), k_i), p, q, value=c)  # the centre tap, with k
        n = p.shape[d]
        for j in range(1, min(before, n - 1) + 1):  # out[i] += c * p[i - j] * q[i - j]
            out.narrow(d, j, n - j).addcmul_(p.narrow(d, 0, n - j), q.narrow(d, 0, n - j), value=c)
        for j in range(1, min(after, n - 1) + 1):  # out[i] += c * p[i + j] * q[i + j]
            out.narrow(d, 0, n - j).addcmul_(p.narrow(d, j, n - j), q.narrow(d, j, n - j), value=c)
        p, q = out, out.new_ones(()).expand_as(out)  # the next dim sums these partial sums
    return out


def _pow_neg(s: torch.Tensor, beta: float) -> torch.Tensor:
    """``s^-beta`` in a new tensor. On CPU, ``pow`` with a fractional exponent costs as much as eight plain
    passes over the tensor, so the usual exponents take roots and the others ``exp(-beta * log s)``."""
    if s.device.type != "cpu" or float(beta).is_integer():
        return s.pow(-beta)  # integer powers of a negative s (k < 0) stay real, as in torch
    if beta == 0.75:
        return s.sqrt().rsqrt_().pow_(3)  # (s^-1/4)^3, where s * sqrt(s) would overflow first
    if beta == 0.5:
        return s.rsqrt()
    return s.log().mul_(-beta).exp_()
