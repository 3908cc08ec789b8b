r"""Batch normalization from scratch: the batch statistics, the normalization, the running statistics, and
the closed-form backward of the BN paper as an ``autograd.Function`` (the formulas are in
:mod:`tricksref.batchnorm`).

Per channel, over the m values that share it, with g = dL/dy and rstd = 1 / sqrt(sigma^2 + epsilon)::

    mu_B = mean(x),  sigma_B^2 = mean((x - mu_B)^2),  x-hat = (x - mu) rstd,  y = gamma x-hat + beta
    dL/dbeta = sum g,   dL/dgamma = sum g x-hat
    dL/dx = (gamma rstd / m) (m g - sum g - x-hat sum(g x-hat))    (training)
    dL/dx = gamma rstd g                                           (evaluation)

Three ways to the same numbers: the C kernel (``_kernels.c``, float32 contiguous CPU tensors: one channel at
a time, so that only its first pass reads memory), the torch path below (every other dtype, layout and
device), and, where a graph of the backward itself is wanted (``create_graph=True``, torch.func), the same
closed form written with ordinary tensor operations from x, so that autograd differentiates it a second time.
The tangent (forward-mode AD) is the closed form of the forward's differential::

    dy = gamma rstd (dx_c - x-hat mean(x-hat dx_c)) + dgamma x-hat + dbeta,   dx_c = dx - mean(dx)

in training (in evaluation, mu and rstd are constants: dy = gamma rstd dx + dgamma x-hat + dbeta).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from . import _native

__all__ = ["batch_norm"]

_REDUCED_PRECISION = (torch.float16, torch.bfloat16)
#: the kernel's rows are x[n, c, :]; shorter ones (an (N, C) input) are left to the torch path
_MIN_ROW = 16


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the statistics are accumulated in: float32 for half and bfloat16, else the input's."""
    return torch.float32 if dtype in _REDUCED_PRECISION else dtype


def _channel_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum an (N, C, *) tensor over every axis but C, in one pass and almost as accurately as a float64 sum.

    Each sample's spatial sum is short and accumulated in t's dtype; the N partial sums, an (N, C) tensor,
    are added in float64. A float32 sum straight over (N, *) drifts by several ulps once the total is large,
    and these sums feed mu_B and sum(g x-hat), where a drift of the mean is amplified by |mu| / sigma.
    """
    if t.dim() == 2:
        return t.sum(0)
    return t.sum(tuple(range(2, t.dim()))).sum(0, dtype=torch.float64).to(t.dtype)  # (N, C) -> (C,)


def _bshape(x: torch.Tensor) -> tuple[int, ...]:
    return (1, x.shape[1]) + (1,) * (x.dim() - 2)  # per-channel vectors broadcast as (1, C, 1, ...)


def _kernel_ok(x: torch.Tensor, *others: torch.Tensor | None) -> bool:
    return (x.dim() >= 3 and x.numel() > 0 and x.numel() // (x.shape[0] * x.shape[1]) >= _MIN_ROW
            and _native.usable(x, *others))


def _forward_kernel(x, weight, bias, training, running_mean, running_var, eps):
    """y, mean, var, rstd with the C kernel (float32, contiguous); var is None in evaluation."""
    N, C = x.shape[:2]
    L = x.numel() // (N * C)
    y = torch.empty_like(x)
    w = None if weight is None else weight.contiguous()
    b = None if bias is None else bias.contiguous()
    if training:
        mean, var, rstd = (torch.empty(C, dtype=torch.float32) for _ in range(3))
        mean_in = rstd_in = None
    else:
        mean = running_mean.to(torch.float32, copy=True)  # a new tensor: outputs must not be inputs
        rstd = (running_var.to(torch.float32) + eps).rsqrt_()
        var = None
        mean_in, rstd_in = mean, rstd
    _native.library().tr_bn_forward(
        x.data_ptr(), y.data_ptr(), N, C, L, _native.ptr(w), _native.ptr(b), int(training),
        _native.ptr(mean_in), _native.ptr(rstd_in), float(eps), _native.ptr(mean if training else None),
        _native.ptr(var), _native.ptr(rstd if training else None), _native.threads_for(x.numel()))
    return y, mean, var, rstd


def _forward_torch(x, weight, bias, training, running_mean, running_var, eps):
    """y, mean, var, rstd with torch operations; var is None in evaluation. Under a torch.func transform
    every operation is out of place; otherwise one full-size buffer is reused, for (x - mu)^2 and then y."""
    acc = _acc_dtype(x.dtype)
    xa = x if x.dtype == acc else x.to(acc)
    bshape = _bshape(x)
    m = x.numel() // x.shape[1]
    plain = _native._plain(x)
    buf = var = None
    if training:
        mean = _channel_sum(xa) / m  # mu_B
        # (x - mu_B)^2 in one fused pass; summing the centred squares keeps sigma_B^2 accurate where
        # E[x^2] - mu^2 would cancel (|mu| >> sigma)
        sq = F.mse_loss(xa, mean.view(bshape).expand_as(xa), reduction="none")
        var = _channel_sum(sq) / m  # sigma_B^2, biased
        buf = sq if plain else None
    else:
        mean = running_mean.to(acc, copy=True)  # a new tensor: outputs must not be inputs
        var_run = running_var.to(acc)
        rstd = (var_run + eps).rsqrt()
    if training:
        rstd = (var + eps).rsqrt()
    scale = rstd if weight is None else weight.to(acc) * rstd  # gamma * rstd
    shift = -mean * scale if bias is None else bias.to(acc) - mean * scale  # beta - mu * gamma * rstd
    # y = gamma * (x - mu) * rstd + beta as one multiply-add per element
    if buf is not None:
        y = torch.addcmul(shift.view(bshape), xa, scale.view(bshape), out=buf)
    else:
        y = torch.addcmul(shift.view(bshape), xa, scale.view(bshape))
    return y.to(x.dtype), mean, var, rstd


def _backward_kernel(x, g, weight, mean, rstd, training, need_dx):
    N, C = x.shape[:2]
    L = x.numel() // (N * C)
    g = g.contiguous()
    dx = torch.empty_like(x) if need_dx else None
    sum_g, sum_gxhat = torch.empty(C, dtype=torch.float32), torch.empty(C, dtype=torch.float32)
    w = None if weight is None else weight.contiguous()
    _native.library().tr_bn_backward(
        x.data_ptr(), g.data_ptr(), _native.ptr(dx), N, C, L, _native.ptr(w), mean.data_ptr(),
        rstd.data_ptr(), int(training), sum_g.data_ptr(), sum_gxhat.data_ptr(),
        _native.threads_for(x.numel()))
    return dx, sum_g, sum_gxhat


def _backward_torch(x, g, weight, mean, rstd, training, need_dx, need_sums):
    """dx, sum g, sum g x-hat with torch operations, computed from the saved x, mu and rstd (no graph)."""
    acc = mean.dtype
    bshape = _bshape(x)
    m = x.numel() // x.shape[1]
    xa = x if x.dtype == acc else x.to(acc)
    ga = g if g.dtype == acc else g.to(acc)
    sum_g = _channel_sum(ga) if (need_sums or (need_dx and training)) else None  # dL/dbeta
    sum_gxhat = buf = None
    if need_sums or (need_dx and training):
        # sum(g * x-hat) = rstd * sum(g * (x - mu)); centring before the product, not after
        # (sum(g x) - mu sum(g)), keeps it accurate when |mu| >> sigma
        buf = (xa - mean.view(bshape)).mul_(ga)
        sum_gxhat = _channel_sum(buf).mul_(rstd)  # dL/dgamma
    dx = None
    if need_dx:
        k1 = rstd if weight is None else weight.to(acc) * rstd  # gamma * rstd
        if training:
            # (gamma rstd / m) (m g - sum g - x-hat sum(g x-hat)) with x-hat = (x - mu) rstd, regrouped
            # per channel as k1 g + k2 x + k3: two fused passes, written into the scratch buffer
            k2 = -k1 * rstd * sum_gxhat / m
            k3 = -k1 * sum_g / m - k2 * mean
            dx = torch.addcmul(k3.view(bshape), xa, k2.view(bshape), out=buf)
            dx.addcmul_(ga, k1.view(bshape))
        else:  # mu and sigma^2 are the running statistics, constants: dx = gamma * rstd * g
            dx = ga * k1.view(bshape)
        dx = dx.to(x.dtype)
    return dx, sum_g, sum_gxhat


def _backward_graph(x, g, weight, mean, rstd, training, eps):
    """dx, sum g, sum g x-hat with tracked operations: in training mu and rstd are recomputed from x, so
    that a second derivative sees how they depend on it (the saved ones are constants to autograd)."""
    acc = mean.dtype
    bshape = _bshape(x)
    dims = [0, *range(2, x.dim())]
    m = x.numel() // x.shape[1]
    xa, ga = x.to(acc), g.to(acc)
    if training:
        mu = xa.mean(dims, keepdim=True)
        r = ((xa - mu).square().mean(dims, keepdim=True) + eps).rsqrt()
    else:
        mu, r = mean.view(bshape), rstd.view(bshape)
    xhat = (xa - mu) * r
    sum_g, sum_gxhat = ga.sum(dims), (ga * xhat).sum(dims)
    k1 = r if weight is None else weight.to(acc).view(bshape) * r
    if training:
        dx = k1 / m * (m * ga - sum_g.view(bshape) - xhat * sum_gxhat.view(bshape))
    else:
        dx = k1 * ga
    return dx.to(x.dtype), sum_g, sum_gxhat


class _BatchNormFunction(torch.autograd.Function):
    """(y, mu, rstd), y = gamma x-hat + beta, with the closed-form backward and tangent of the module
    docstring. Saves the input x and the per-channel mu and rstd, not x-hat: saving x allocates nothing,
    while x-hat would be a new full-size tensor kept alive until the backward."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, weight, bias, running_mean, running_var, training, momentum, eps):
        C = x.shape[1]
        m = x.numel() // C if C else 0
        acc = _acc_dtype(x.dtype)
        if training and m == 0:  # an empty batch: torch returns an empty output, running stats untouched
            return (torch.empty_like(x), torch.zeros(C, dtype=acc, device=x.device),
                    torch.ones(C, dtype=acc, device=x.device))
        if _kernel_ok(x, weight, bias):
            y, mean, var, rstd = _forward_kernel(x, weight, bias, training, running_mean, running_var, eps)
        else:
            y, mean, var, rstd = _forward_torch(x, weight, bias, training, running_mean, running_var, eps)
        if training and running_mean is not None:
            unbiased = var * (m / (m - 1))  # running_var tracks the unbiased estimate
            running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype), alpha=momentum)
            running_var.mul_(1 - momentum).add_(unbiased.to(running_var.dtype), alpha=momentum)
        return y, mean, rstd

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, bias, _, _, training, _, eps = inputs
        _, mean, rstd = output
        ctx.mark_non_differentiable(mean, rstd)
        ctx.set_materialize_grads(False)  # no zero grads made for mean and rstd
        ctx.training, ctx.eps = training, eps
        ctx.dtypes = (None if weight is None else weight.dtype, None if bias is None else bias.dtype)
        ctx.save_for_backward(x, weight, mean, rstd)
        ctx.save_for_forward(x, weight, mean, rstd)

    @staticmethod
    def backward(ctx, g, _mean, _rstd):
        if g is None:
            return None, None, None, None, None, None, None, None
        x, weight, mean, rstd = ctx.saved_tensors
        need_dx, need_dw, need_db = ctx.needs_input_grad[:3]
        w_dtype, b_dtype = ctx.dtypes
        C = x.shape[1]
        if x.numel() == 0:
            zeros = torch.zeros(C, dtype=mean.dtype, device=x.device)
            return (torch.empty_like(x) if need_dx else None, zeros.to(w_dtype) if need_dw else None,
                    zeros.to(b_dtype) if need_db else None, None, None, None, None, None)
        if torch.is_grad_enabled():  # create_graph=True or torch.func: build the backward as a graph
            dx, sum_g, sum_gxhat = _backward_graph(x, g, weight, mean, rstd, ctx.training, ctx.eps)
        elif _kernel_ok(x, g, weight):
            dx, sum_g, sum_gxhat = _backward_kernel(x, g, weight, mean, rstd, ctx.training, need_dx)
        else:
            dx, sum_g, sum_gxhat = _backward_torch(x, g, weight, mean, rstd, ctx.training, need_dx,
                                                   need_dw or need_db)
        return (dx if need_dx else None, sum_gxhat.to(w_dtype) if need_dw else None,
                sum_g.to(b_dtype) if need_db else None, None, None, None, None, None)

    @staticmethod
    def jvp(ctx, dx, dw, db, *_):
        x, weight, mean, rstd = ctx.saved_tensors
        acc = mean.dtype
        bshape = _bshape(x)
        dims = [0, *range(2, x.dim())]
        xhat = (x.to(acc) - mean.view(bshape)) * rstd.view(bshape)
        dy = torch.zeros_like(xhat)
        if dx is not None:
            k1 = rstd if weight is None else weight.to(acc) * rstd
            d = dx.to(acc)
            if ctx.training:  # mu and rstd move with x
                d = d - d.mean(dims, keepdim=True)
                d = d - xhat * (xhat * d).mean(dims, keepdim=True)
            dy = dy + k1.view(bshape) * d
        if dw is not None:
            dy = dy + dw.to(acc).view(bshape) * xhat
        if db is not None:
            dy = dy + db.to(acc).view(bshape)
        return dy.to(x.dtype), None, None


def batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps) -> torch.Tensor:
    """y for the checked arguments of :func:`tricksref.batch_norm` (running statistics updated in place)."""
    return _BatchNormFunction.apply(x, weight, bias, running_mean, running_var, training, momentum, eps)[0]
