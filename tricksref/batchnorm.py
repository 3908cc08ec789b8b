r"""Batch normalization (Ioffe and Szegedy, 2015) with the paper's closed-form backward written out.

Ioffe, S. and Szegedy, C. "Batch Normalization: Accelerating Deep Network Training by Reducing Internal
Covariate Shift." ICML 2015, arXiv:1502.03167.

Algorithm 1 of the paper (the lecture's slide), per channel, over a mini-batch B = {x_1, ..., x_m}:

.. math::

    \mu_B      &\leftarrow \frac{1}{m} \sum_{i=1}^{m} x_i                  && \text{mini-batch mean} \\
    \sigma_B^2 &\leftarrow \frac{1}{m} \sum_{i=1}^{m} (x_i - \mu_B)^2       && \text{mini-batch variance} \\
    \hat{x}_i  &\leftarrow \frac{x_i - \mu_B}{\sqrt{\sigma_B^2 + \epsilon}} && \text{normalize} \\
    y_i        &\leftarrow \gamma \hat{x}_i + \beta
                \equiv \mathrm{BN}_{\gamma,\beta}(x_i)                      && \text{scale and shift}

For an input of shape (N, C, *) the statistics of channel c run over the m = N * prod(*) values that share c.

The backward pass is the chain rule of section 3 of the paper, summed into a closed form. With
g = dL/dy and rstd = 1 / sqrt(sigma_B^2 + epsilon):

.. math::

    \frac{\partial L}{\partial \beta}  = \sum_i g_i, \qquad
    \frac{\partial L}{\partial \gamma} = \sum_i g_i \hat{x}_i, \qquad
    \frac{\partial L}{\partial x_i}    = \frac{\gamma \cdot rstd}{m}
        \Big(m g_i - \sum_j g_j - \hat{x}_i \sum_j g_j \hat{x}_j\Big)

in training, and dL/dx_i = gamma * rstd * g_i in evaluation, where mu and sigma^2 are the running statistics,
constants with respect to x. In the solutions edition (:mod:`tricksref._edition`) this closed form is the
backward, written out in :mod:`tricksref.scratch.batchnorm` with a fused C kernel on the CPU; in the student
edition the gradient is autograd through ``torch.nn.functional.batch_norm``. Either way second derivatives,
forward-mode AD and the torch.func transforms give torch's values.

Conventions that sources disagree on, settled here as PyTorch settles them:

- **Biased variance to normalize, unbiased to track.** x-hat uses sigma_B^2 with 1/m (Algorithm 1); the
  running variance is updated with the unbiased m/(m-1) * sigma_B^2, the estimate of the population variance
  that Algorithm 2 of the paper uses at inference.
- **Momentum.** ``running = (1 - momentum) * running + momentum * batch`` (PyTorch; the default 0.1 gives the
  new batch a weight of 0.1). Keras/TensorFlow's ``momentum`` is the weight of the *old* value
  (``running = momentum * running + (1 - momentum) * batch``, default 0.99): TF's 0.99 is PyTorch's 0.01.
  ``momentum=None`` in the modules means the cumulative average over all batches seen,
  1 / num_batches_tracked.
- **Reduced precision.** float16 and bfloat16 inputs are normalized with statistics accumulated in float32;
  the output has the input's dtype and each running statistic keeps its own dtype (float32 or the input's),
  as in PyTorch's mixed-precision CPU kernel.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from . import _edition
from ._checks import check_choice, check_float_tensor, check_min_dim, check_number

__all__ = ["batch_norm", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d"]

_REDUCED_PRECISION = (torch.float16, torch.bfloat16)
_impl = _edition.implementation("batchnorm")


def _check_channel_vector(t, name: str, x: torch.Tensor, *, allow_grad: bool) -> None:
    """Check a per-channel parameter or statistic: a float tensor of shape (C,) on x's device, of x's dtype
    (or float32 for a half/bfloat16 x, the mixed-precision layout torch accepts)."""
    check_float_tensor(t, name)
    C = x.shape[1]
    if t.shape != (C,):
        raise ValueError(f"{name}: expected shape ({C},), one value per channel of input with shape "
                         f"{tuple(x.shape)}, got shape {tuple(t.shape)}")
    if t.device != x.device:
        raise ValueError(f"{name}: expected a tensor on the input's device {x.device}, got {t.device}")
    allowed = (x.dtype, torch.float32) if x.dtype in _REDUCED_PRECISION else (x.dtype,)
    if t.dtype not in allowed:
        raise TypeError(f"{name}: expected dtype {' or '.join(map(str, allowed))} for an input of dtype "
                        f"{x.dtype}, got {t.dtype}")
    if not allow_grad and t.requires_grad:
        raise ValueError(f"{name}: running statistics are not differentiable; expected requires_grad=False "
                         f"(pass a buffer or call .detach())")


def batch_norm(x: torch.Tensor, running_mean: torch.Tensor | None, running_var: torch.Tensor | None,
               weight: torch.Tensor | None = None, bias: torch.Tensor | None = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> torch.Tensor:
    r"""Batch-normalize each channel of ``x``: ``y = gamma * (x - mu) / sqrt(sigma^2 + epsilon) + beta``.

    Ioffe and Szegedy, "Batch Normalization", ICML 2015 (arXiv:1502.03167), Algorithm 1: in training
    mu = mu_B and sigma^2 = sigma_B^2 are the mini-batch mean and biased variance of each channel, and the
    running statistics are updated in place; in evaluation mu and sigma^2 are ``running_mean`` and
    ``running_var``. Same signature and results as :func:`torch.nn.functional.batch_norm`; in the solutions
    edition the gradient is the paper's closed form (see :mod:`tricksref.batchnorm`), not autograd through
    the forward.

    .. math::

        \hat{x} = \frac{x - \mu_B}{\sqrt{\sigma_B^2 + \epsilon}}, \qquad y = \gamma \hat{x} + \beta

    Notes:
        - Normalization uses the biased sigma_B^2 (divide by m); ``running_var`` tracks the unbiased one
          (divide by m - 1).
        - ``running = (1 - momentum) * running + momentum * batch``: PyTorch's convention, the opposite of
          Keras/TensorFlow's, whose momentum 0.99 is this momentum 0.01.
        - float16/bfloat16 inputs are computed in float32; ``weight``, ``bias`` and the running statistics may
          then be float32 or the input's dtype, and each keeps its own.
        - Errors are ValueError/TypeError naming the argument, also where torch raises RuntimeError (the
          running statistics missing in evaluation, a wrong length). Unlike torch, ``momentum`` outside [0, 1]
          is rejected.

    Args:
        x: input of shape (N, C) or (N, C, *), floating point.
        running_mean: per-channel running mean mu, shape (C,), updated in place in training; or None
            (then training must be True and no statistics are tracked).
        running_var: per-channel running (unbiased) variance, shape (C,), updated in place in training; None
            exactly when ``running_mean`` is None.
        weight: gamma, shape (C,); None means gamma = 1. Default: None.
        bias: beta, shape (C,); None means beta = 0. Default: None.
        training: use the batch statistics (and update the running ones) if True, the running statistics if
            False. Default: False.
        momentum: the weight of the new batch in the running averages, in [0, 1]. Default: 0.1.
        eps: epsilon added to the variance, > 0 in training and >= 0 in evaluation. Default: 1e-5.

    Returns:
        y, with the shape, dtype and memory format (e.g. channels_last) of ``x``.

    Shape:
        - x: (N, C) or (N, C, *); in training N * prod(*) must exceed 1.
        - running_mean, running_var, weight, bias: (C,).
        - Output: same as x.

    Examples::

        >>> x = torch.randn(8, 3, 5, 5)
        >>> mu, var = torch.zeros(3), torch.ones(3)
        >>> y = batch_norm(x, mu, var, training=True)          # updates mu and var in place
        >>> y.mean((0, 2, 3)).abs().max() < 1e-6
        tensor(True)
        >>> y_eval = batch_norm(x, mu, var, training=False)    # normalizes with the running statistics
    """
    check_float_tensor(x, "input")
    check_min_dim(x, 2, "input", "(N, C) or (N, C, *)")
    if not isinstance(training, bool):
        raise TypeError(f"training: expected a bool, got {type(training).__name__} {training!r}")
    check_number(momentum, "momentum", low=0.0, high=1.0)
    if training:
        check_number(eps, "eps", low=0.0, low_open=True)
    else:
        check_number(eps, "eps", low=0.0)
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean, running_var: expected both None or both tensors, got "
                         f"running_mean={'None' if running_mean is None else 'a tensor'} and "
                         f"running_var={'None' if running_var is None else 'a tensor'}")
    if running_mean is None and not training:
        raise ValueError("running_mean, running_var: expected tensors in evaluation mode (training=False), "
                         "which normalizes with them; got None (pass training=True to use batch statistics)")
    for t, name, grad_ok in ((running_mean, "running_mean", False), (running_var, "running_var", False),
                             (weight, "weight", True), (bias, "bias", True)):
        if t is not None:
            _check_channel_vector(t, name, x, allow_grad=grad_ok)
    if training:
        if x.shape[0] * math.prod(x.shape[2:]) == 1:
            raise ValueError(f"input: Expected more than 1 value per channel when training, got input size "
                             f"{x.shape}")
    return _impl.batch_norm(x, running_mean, running_var, weight, bias, training, float(momentum), float(eps))


class _BatchNorm(nn.Module):
    """Shared bookkeeping of :class:`BatchNorm1d`, :class:`BatchNorm2d` and :class:`BatchNorm3d`.

    Holds gamma (``weight``) and beta (``bias``) as parameters and the running statistics as buffers under
    PyTorch's state_dict keys (``weight``, ``bias``, ``running_mean``, ``running_var``,
    ``num_batches_tracked``), so checkpoints move between these modules and ``torch.nn.BatchNorm*d`` in both
    directions; the subclasses differ only in the input ranks they accept. The math is :func:`batch_norm`.
    """

    _version = 2  # torch's: version 2 added num_batches_tracked; older checkpoints load with it set to 0
    _ranks: tuple[int, ...] = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, device=None, dtype=None, *,
                 bias: bool = True) -> None:
        super().__init__()
        check_number(num_features, "num_features", low=1, integer=True)
        check_number(eps, "eps", low=0.0, low_open=True)
        if momentum is not None:
            check_number(momentum, "momentum", low=0.0, high=1.0)
        for flag, name in ((affine, "affine"), (track_running_stats, "track_running_stats"), (bias, "bias")):
            check_choice(flag, (True, False), name)
        if dtype is not None and not dtype.is_floating_point:
            raise TypeError(f"dtype: expected a floating-point dtype, got {dtype}")
        factory = {"device": device, "dtype": dtype}
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        self.weight = nn.Parameter(torch.empty(num_features, **factory)) if affine else None
        self.bias = nn.Parameter(torch.empty(num_features, **factory)) if affine and bias else None
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **factory))
            self.register_buffer("running_var", torch.ones(num_features, **factory))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, no batches tracked."""
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        """Reset the running statistics and set gamma = 1, beta = 0."""
        self.reset_running_stats()
        with torch.no_grad():
            if self.weight is not None:
                self.weight.fill_(1)
            if self.bias is not None:
                self.bias.zero_()

    def _check_input_dim(self, x: torch.Tensor) -> None:
        check_float_tensor(x, "input")
        if x.dim() not in self._ranks:
            ranks = " or ".join(f"{r}D" for r in self._ranks)
            raise ValueError(f"expected {ranks} input (got {x.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average over every batch so far
                factor = 1.0 / float(self.num_batches_tracked)
        # batch statistics in training, and in eval when there are no running statistics to use
        use_batch_stats = self.training or self.running_mean is None
        # running statistics are passed only when they are updated (training) or used (eval)
        track = not self.training or self.track_running_stats
        return batch_norm(x, self.running_mean if track else None, self.running_var if track else None,
                          self.weight, self.bias, use_batch_stats, factor, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}")

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        version = local_metadata.get("version", None)
        key = prefix + "num_batches_tracked"
        if (version is None or version < 2) and self.track_running_stats and key not in state_dict:
            state_dict[key] = torch.tensor(0, dtype=torch.long)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)


_MODULE_ARGS = """Args:
        num_features: C, the number of channels.
        eps: epsilon added to the variance, > 0. Default: 1e-5.
        momentum: the weight of the new batch in the running averages,
            ``running = (1 - momentum) * running + momentum * batch`` (PyTorch's convention, not Keras's), or
            None for the cumulative average, momentum = 1 / num_batches_tracked. Default: 0.1.
        affine: learn gamma (``weight``, initialized to 1) and beta (``bias``, initialized to 0).
            Default: True.
        track_running_stats: keep the running mean and unbiased variance and normalize with them in eval mode;
            if False, batch statistics are used in training and in eval alike. Default: True.
        device: where the parameters and buffers are created. Default: None (torch's default device).
        dtype: the dtype of the parameters and running statistics. Default: None (torch's default dtype).
        bias: keyword only; learn beta when ``affine``. Default: True."""

_MODULE_SUMMARY = """Ioffe and Szegedy 2015, Algorithm 1, per channel:
    ``y = gamma * (x - mu_B) / sqrt(sigma_B^2 + epsilon) + beta`` with the biased batch variance in training,
    which also updates the running mean and the unbiased running variance; in eval mode mu and sigma^2 are the
    running statistics. The gradient is the paper's closed form (solutions edition); see :func:`batch_norm`
    and :mod:`tricksref.batchnorm` for it and for the conventions."""


def _shared_doc(cls):
    """Fill the paragraphs every BatchNorm*d shares into its docstring (written once, not pasted thrice)."""
    if cls.__doc__:  # None under python -OO
        cls.__doc__ = cls.__doc__.replace("{summary}", _MODULE_SUMMARY).replace("{args}", _MODULE_ARGS)
    return cls


@_shared_doc
class BatchNorm1d(_BatchNorm):
    """Batch normalization of a 2D (N, C) or 3D (N, C, L) input, over the batch (and L).

    {summary}

    {args}

    Shape:
        - Input: (N, C) or (N, C, L).
        - Output: same as the input.

    Examples::

        >>> bn = BatchNorm1d(100)
        >>> y = bn(torch.randn(20, 100))
        >>> bn
        BatchNorm1d(100, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)
    """

    _ranks = (2, 3)


@_shared_doc
class BatchNorm2d(_BatchNorm):
    """Batch normalization of a 4D (N, C, H, W) input, over the batch and the image plane.

    {summary}

    {args}

    Shape:
        - Input: (N, C, H, W), contiguous or channels_last.
        - Output: same as the input, in the input's memory format.

    Examples::

        >>> bn = BatchNorm2d(16, momentum=None)  # cumulative average of the batch statistics
        >>> y = bn(torch.randn(8, 16, 32, 32))
        >>> bn.load_state_dict(torch.nn.BatchNorm2d(16).state_dict())  # torch's checkpoints load as they are
        <All keys matched successfully>
    """

    _ranks = (4,)


@_shared_doc
class BatchNorm3d(_BatchNorm):
    """Batch normalization of a 5D (N, C, D, H, W) input, over the batch and the volume.

    {summary}

    {args}

    Shape:
        - Input: (N, C, D, H, W), contiguous or channels_last_3d.
        - Output: same as the input.

    Examples::

        >>> bn = BatchNorm3d(4).eval()  # eval mode: normalize with the running statistics
        >>> y = bn(torch.randn(2, 4, 3, 8, 8))
    """

    _ranks = (5,)
