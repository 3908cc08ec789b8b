"""Local response normalization from scratch: the window sums, the division, and the closed-form backward
(the formulas and conventions are in :mod:`tricksref.lrn`).

All four variants are one computation, ``b = a * s^-beta`` with ``s = k + alpha' * window_sum(a^2)`` over a
zero-padded box window, done with shifted slices. For an n-tap inter window and beta = 0.75 that is n + 4
elementwise passes forward and n + 3 backward. On the CPU, an inter-channel LRN of a contiguous float32
tensor with a non-integer beta goes to the C kernel (``_kernels.c``) instead: the same sums in the same
order over blocks of 128 positions that stay in the caches, one pass over memory forward (a in, b out) and one
backward (a and g in, da out; s is recomputed there rather than kept). ``benchmarks/bench_core_ops.py``
times both against ``torch.nn.functional.local_response_norm``.

With ``W(i)`` the window of ``i`` and ``g = dL/db``::

    dL/da_m = g_m s_m^-beta - 2 alpha' beta a_m sum_{i: m in W(i)} g_i a_i s_i^(-beta-1)
    db_m    = da_m s_m^-beta - beta a_m s_m^(-beta-1) ds_m,    ds_m = 2 alpha' sum_{j in W(m)} a_j da_j

(the backward and the tangent). The ``i`` whose window holds ``m`` form the mirrored window, which matters
for an even n in the torch convention.
"""

from __future__ import annotations

import torch
from torch.autograd import forward_ad

from . import _native
from ._native import _plain

__all__ = ["local_response_norm"]


def local_response_norm(x: torch.Tensor, size: int, alpha: float, beta: float, k: float, mode: str,
                        convention: str) -> torch.Tensor:
    """b for the checked arguments of :func:`tricksref.local_response_norm` (float32 or float64 x)."""
    before, after = (size // 2, (size - 1) // 2) if convention == "torch" else (size // 2, size // 2)
    dims = (1,) if mode == "inter" else tuple(range(2, x.dim()))
    if convention == "torch":
        alpha = alpha / size ** len(dims)
    windows = tuple((d, before, after) for d in dims)
    if (not (x.requires_grad and torch.is_grad_enabled()) and _plain(x)
            and forward_ad.unpack_dual(x).tangent is None):  # no derivative to come
        if _kernel_ok(x, windows, beta):
            return _forward_kernel(x, windows, alpha, beta, k)
        return _pow_neg(_window_sum(x, x, windows, alpha, k), beta).mul_(x)  # b takes s's buffer
    return _LRN.apply(x, windows, float(alpha), float(beta), float(k))[0]


def _beta_kind(beta: float) -> int:
    """How the kernel raises s to -beta: 1 for 0.75, 2 for 0.5, 0 for exp(-beta log s)."""
    return {0.75: 1, 0.5: 2}.get(beta, 0)


def _kernel_ok(x: torch.Tensor, windows, beta: float) -> bool:
    """The C kernel takes inter-channel windows of float32 contiguous CPU tensors with a non-integer beta
    (an integer power of a negative s stays real only on the torch path)."""
    return (len(windows) == 1 and windows[0][0] == 1 and not float(beta).is_integer() and x.numel() > 0
            and _native.usable(x))


def _kernel_call(fn, a: torch.Tensor, g: torch.Tensor | None, windows, alpha, beta, k) -> torch.Tensor:
    (_, before, after), = windows
    N, C = a.shape[:2]
    out = torch.empty_like(a)
    status = fn(a.data_ptr(), *([] if g is None else [g.data_ptr()]), out.data_ptr(), N, C,
                a.numel() // (N * C), before, after, alpha, beta, k, _beta_kind(beta),
                _native.threads_for(a.numel()))
    if status:
        raise MemoryError("tricksref: the LRN kernel could not allocate its scratch buffers")
    return out


def _forward_kernel(a, windows, alpha, beta, k) -> torch.Tensor:
    """b with the C kernel."""
    return _kernel_call(_native.library().tr_lrn_forward, a, None, windows, alpha, beta, k)


def _backward_kernel(a, g, windows, alpha, beta, k) -> torch.Tensor:
    """dL/da with the C kernel, from a and g = dL/db (s recomputed inside)."""
    return _kernel_call(_native.library().tr_lrn_backward, a, g.contiguous(), windows, alpha, beta, k)


class _LRN(torch.autograd.Function):
    """(b, s, s^-beta) with ``b = a * s^-beta``, ``s = k + alpha * window_sum(a^2)``, and the closed-form
    backward and tangent. On the torch path the forward allocates three full-size tensors (torch's seven)
    and keeps two for the backward, ``s`` and ``s^-beta``, beside the input itself; where the C kernel runs
    it allocates b alone and returns None for s and s^-beta, which the backward recomputes."""

    generate_vmap_rule = True

    @staticmethod
    def forward(a, windows, alpha, beta, k):
        if _kernel_ok(a, windows, beta):
            return _forward_kernel(a, windows, alpha, beta, k), None, None
        s = _window_sum(a, a, windows, alpha, k)
        scale = _pow_neg(s, beta)
        return a * scale, s, scale

    @staticmethod
    def setup_context(ctx, inputs, output):
        a, windows, alpha, beta, k = inputs
        _, s, scale = output
        if s is not None:
            ctx.mark_non_differentiable(s, scale)
        ctx.set_materialize_grads(False)  # else autograd fills full-size zero grads for s and scale
        ctx.windows, ctx.alpha, ctx.beta, ctx.k = windows, alpha, beta, k
        ctx.save_for_backward(a, s, scale)
        ctx.save_for_forward(a, s, scale)

    @staticmethod
    def backward(ctx, g, _s, _scale):
        if g is None:
            return None, None, None, None, None
        a, s, scale = ctx.saved_tensors
        if torch.is_grad_enabled():
            # create_graph=True or torch.func: s from a with tracked operations, so that a second
            # derivative sees how it depends on a (the saved s is a constant to autograd)
            s = _window_sum(a, a, ctx.windows, ctx.alpha, ctx.k)
            scale = s.pow(-ctx.beta)
        elif s is None:  # the kernel's forward: its backward too
            return _backward_kernel(a, g, ctx.windows, ctx.alpha, ctx.beta, ctx.k), None, None, None, None
        t = g * scale  # g_m s_m^-beta
        mirrored = tuple((d, after, before) for d, before, after in ctx.windows)  # the i with m in W(i)
        v = _window_sum(t, a / s, mirrored, -2.0 * ctx.alpha * ctx.beta)  # sum g_i a_i s_i^(-beta-1), scaled
        return t + a * v if torch.is_grad_enabled() else t.addcmul_(a, v), None, None, None, None

    @staticmethod
    def jvp(ctx, da, *_):
        if da is None:
            return None, None, None
        a, s, scale = ctx.saved_tensors
        if s is None:  # the kernel's forward kept neither
            s = _window_sum(a, a, ctx.windows, ctx.alpha, ctx.k)
            scale = _pow_neg(s, ctx.beta)
        ds = _window_sum(a, da, ctx.windows, 2.0 * ctx.alpha)  # 2 alpha' sum_{window} a da
        return da * scale - ctx.beta * a * scale / s * ds, None, None


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
