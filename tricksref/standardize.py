"""Rescaling: centre and standardize the inputs with statistics of the training set only.

The lecture's recipe, for features x of shape (N, d):

    mu  = mean(x_train, axis=0)        sig = std(x_train, axis=0)        (population std, ddof 0)
    x   = (x - mu) / (sig + 1e-6)      for the training set AND, with the same mu and sig, the test set.

Computing mu and sig on the test set (or on train and test together) leaks information about the test data
into the model; the test set is transformed with the training statistics, unchanged.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch

from ._checks import check_number

__all__ = ["Standardizer", "standardize"]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _check_array(x, name: str):
    """numpy array or torch tensor of real numbers; returns True for torch."""
    if isinstance(x, torch.Tensor):
        if x.is_complex() or x.dtype == torch.bool:
            raise TypeError(f"{name}: expected a real (floating-point or integer) tensor, "
                            f"got dtype {x.dtype}")
        return True
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "fiu":
            raise TypeError(f"{name}: expected a real (floating-point or integer) array, got dtype {x.dtype}")
        return False
    raise TypeError(f"{name}: expected a numpy.ndarray or a torch.Tensor, got {type(x).__name__}")


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach().cpu()
    return (t.float() if t.dtype == torch.bfloat16 else t).numpy()  # numpy has no bfloat16


def _normalize_axis(axis, ndim: int | None) -> tuple[int, ...]:
    """Axis as a sorted tuple of non-negative ints; None means every axis. ``ndim=None``: check types only."""
    if axis is None:
        return tuple(range(ndim or 0))
    axes = (axis,) if isinstance(axis, numbers.Integral) and not isinstance(axis, bool) else axis
    if not isinstance(axes, (tuple, list)) or not all(
            isinstance(a, numbers.Integral) and not isinstance(a, bool) for a in axes):
        raise TypeError(f"axis: expected an int, a tuple of ints or None, got {axis!r}")
    if ndim is None:
        return tuple(axes)
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"axis: expected values in [{-ndim}, {ndim - 1}] for an input with {ndim} "
                             f"dimensions, got {axis!r}")
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"axis: expected distinct axes, got {axis!r}")
    return tuple(sorted(out))


class Standardizer:
    r"""Centre and scale data with the mean and standard deviation of the training set.

    The lecture's "rescaling images" step: fit on the training set only, then transform the training and the
    test set with the same statistics.

    .. math::
        \mu = \frac{1}{N}\sum_i x_i, \qquad
        \mathit{sig} = \sqrt{\frac{1}{N}\sum_i (x_i - \mu)^2}, \qquad
        \hat x = \frac{x - \mu}{\mathit{sig} + \epsilon}

    where the sums run over ``axis`` (the samples, and for images also the pixels).

    Notes:
        - ``sig`` is the population standard deviation (ddof 0), as ``numpy.std`` computes it, not the
          unbiased one that ``torch.std`` gives by default.
        - ``eps`` is added to ``sig``, not to the variance: a constant feature maps to 0, not to NaN.
        - ``mu`` and ``sig`` keep the reduced axes with size 1, so they broadcast against inputs with any
          number of samples. On numpy input they are computed with ``numpy.mean`` / ``numpy.std`` and the
          transform is bitwise the lecture's snippet; on torch input with ``torch.var_mean`` (float32
          statistics for float16/bfloat16 input, stored in the input's dtype).
        - ``fit`` treats the data as constants (torch statistics are detached): gradients flow through
          ``transform`` to its input only.
        - ``transform`` returns the type it is given (numpy array or torch tensor, on the input's device) in
          the input's floating dtype; integer input (e.g. uint8 images) gives the dtype of the statistics
          (float64 for numpy, as numpy promotes; torch's default float dtype for tensors).

    Args:
        axis: the axis or axes to reduce over: 0 gives one mu and sig per feature (the lecture),
            ``(0, 2, 3)`` one per channel of (N, C, H, W) images, None a single scalar pair. Default: 0.
        eps: added to sig before dividing, >= 0. Default: 1e-6.

    Attributes:
        mu: the mean, with the reduced axes kept as size 1 (None before ``fit``).
        sig: the population standard deviation, same shape as mu (None before ``fit``).

    Shape:
        - fit input: (N, *), any number of dimensions > every axis.
        - transform input: the same number of dimensions, equal to the fitted shape on every axis that is not
          reduced; any size along the reduced axes.
        - Output: the same shape as the input.

    Examples::

        >>> s = Standardizer(axis=(0, 2, 3))              # per-channel statistics of images
        >>> x_train, x_test = torch.rand(100, 3, 8, 8), torch.rand(20, 3, 8, 8)
        >>> z_train = s.fit_transform(x_train)
        >>> z_test = s.transform(x_test)                  # training statistics, not the test set's
        >>> s.mu.shape
        torch.Size([1, 3, 1, 1])
    """

    def __init__(self, axis=0, eps: float = 1e-6):
        _normalize_axis(axis, None)  # types now; the range is checked against the data in fit
        self.axis = axis
        self.eps = float(check_number(eps, "eps", low=0.0))
        self.mu = None
        self.sig = None
        self._shape: tuple[int, ...] | None = None
        self._axes: tuple[int, ...] | None = None

    def __repr__(self) -> str:
        fitted = "" if self.mu is None else f", fitted on shape {self._shape}"
        return f"Standardizer(axis={self.axis!r}, eps={self.eps!r}{fitted})"

    def fit(self, x_train) -> Standardizer:
        """Compute and store mu and sig of ``x_train`` over ``axis``; returns self."""
        is_torch = _check_array(x_train, "x_train")
        if x_train.ndim == 0:
            raise ValueError("x_train: expected an array with at least 1 dimension, got a 0-d array")
        axes = _normalize_axis(self.axis, x_train.ndim)
        if any(x_train.shape[a] == 0 for a in axes):
            raise ValueError(f"x_train: expected at least one element along axis {self.axis!r}, "
                             f"got shape {tuple(x_train.shape)}")
        if is_torch:
            x = x_train.detach()
            if not x.is_floating_point():
                x = x.to(torch.get_default_dtype())
            work = x.float() if x.dtype in _LOW_PRECISION else x
            var, mu = torch.var_mean(work, dim=axes, correction=0, keepdim=True)
            self.mu, self.sig = mu.to(x.dtype), var.sqrt().to(x.dtype)
        else:
            self.mu = np.mean(x_train, axis=axes, keepdims=True)
            self.sig = np.std(x_train, axis=axes, keepdims=True)
        self._shape, self._axes = tuple(x_train.shape), axes
        return self

    def _stats_for(self, x, name: str):
        """mu and sig as the same kind of array as x (type, device, float dtype), after checking x's shape."""
        if self.mu is None:
            raise RuntimeError("Standardizer is not fitted yet: call fit(x_train) before transform")
        is_torch = _check_array(x, name)
        expected = tuple("*" if a in self._axes else s for a, s in enumerate(self._shape))
        if x.ndim != len(self._shape) or any(
                e != "*" and e != s for e, s in zip(expected, x.shape, strict=False)):
            shown = "(" + ", ".join(map(str, expected)) + ")"
            raise ValueError(f"{name}: expected shape {shown} to match the statistics fitted on shape "
                             f"{self._shape} (* = any size along a reduced axis), got {tuple(x.shape)}")
        mu, sig = self.mu, self.sig
        if is_torch:
            if not isinstance(mu, torch.Tensor):
                mu, sig = torch.from_numpy(mu), torch.from_numpy(sig)
            dtype = x.dtype if x.is_floating_point() else mu.dtype
            mu, sig = mu.to(x.device, dtype), sig.to(x.device, dtype)
        else:
            if isinstance(mu, torch.Tensor):
                mu, sig = _to_numpy(mu), _to_numpy(sig)
            if x.dtype.kind == "f" and mu.dtype != x.dtype:
                mu, sig = mu.astype(x.dtype), sig.astype(x.dtype)
        return mu, sig

    def transform(self, x):
        """``(x - mu) / (sig + eps)`` with the fitted statistics; same type, device and float dtype as x."""
        return self._transform(x, "x")

    def _transform(self, x, name: str):
        mu, sig = self._stats_for(x, name)
        return (x - mu) / (sig + self.eps)

    def fit_transform(self, x_train):
        """``fit(x_train)`` then ``transform(x_train)``."""
        return self.fit(x_train).transform(x_train)

    def inverse_transform(self, z):
        """Undo ``transform``: ``z * (sig + eps) + mu`` (up to rounding)."""
        mu, sig = self._stats_for(z, "z")
        return z * (sig + self.eps) + mu


def standardize(x_train, x_test, eps: float = 1e-6, *, axis=0):
    r"""The lecture's snippet in one call: standardize both sets with the TRAINING set's mu and sig.

    .. math::
        \hat x_{\text{train}} = \frac{x_{\text{train}} - \mu}{\mathit{sig} + \epsilon}, \qquad
        \hat x_{\text{test}} = \frac{x_{\text{test}} - \mu}{\mathit{sig} + \epsilon}, \qquad
        (\mu, \mathit{sig}) \text{ from } x_{\text{train}} \text{ only}.

    See :class:`Standardizer` for the conventions (population std, eps added to sig).

    Args:
        x_train: the training data, (N, d) in the lecture, any (N, *) array or tensor.
        x_test: the test data, same shape as x_train except along ``axis``.
        eps: added to sig, >= 0. Default: 1e-6.
        axis: the axes mu and sig are computed over (keyword only). Default: 0, the samples.

    Returns:
        ``(x_train_hat, x_test_hat)``, each of the type it was given.

    Examples::

        >>> x_train, x_test = np.random.rand(100, 5), np.random.rand(10, 5)
        >>> z_train, z_test = standardize(x_train, x_test)
    """
    _check_array(x_test, "x_test")  # before fitting: a bad x_test fails fast, under its own name
    s = Standardizer(axis=axis, eps=eps).fit(x_train)
    return s._transform(x_train, "x_train"), s._transform(x_test, "x_test")
