"""Regularization by weight decay: the lecture's penalty J~ = J + alpha * Omega, and its decoupled variant.

The lecture (after Goodfellow et al., 2016, chapter 7) adds a parameter norm penalty to the objective,

    J~(theta; X, y) = J(theta; X, y) + alpha * Omega(theta),     Omega(theta) = 1/2 ||w||_2^2,

whose gradient alpha * w shrinks the weights at every step: "weight decay". Three ways to get it:

- ``l2_penalty``: add ``alpha * Omega`` to the loss by hand, exactly the lecture's J~.
- ``torch.optim.SGD(..., weight_decay=alpha)``: adds ``alpha * w`` to the gradient; the same iterates as
  the explicit penalty under SGD (with or without momentum), and under Adam, whose ``weight_decay`` is this
  L2 term.
- decoupled weight decay (Loshchilov and Hutter, 2019): shrink the weights directly,
  ``w <- (1 - eta lambda) w``, outside the gradient. Under plain SGD it is the same thing again (with
  lambda = alpha); under Adam it is not, because Adam divides the gradient, penalty included, by sqrt(v):
  a weight whose loss gradient varies a lot (large v) is then barely decayed, one with small gradients is
  decayed hard. Decoupling gives every weight the same relative decay per step. ``torch.optim.AdamW`` is
  Adam with decoupled decay; ``decoupled_weight_decay_`` gives it to any optimizer (SGDW with momentum, for
  instance).

``weight_decay_groups`` builds the optimizer parameter groups that exempt biases and normalization parameters
from decay, the "no bias decay" of He et al. (2019).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

import torch
from torch import nn

from ._checks import check_number

__all__ = ["l2_penalty", "weight_decay_groups", "decoupled_weight_decay_", "NORM_TYPES"]

#: normalization layers whose parameters are never decayed (see ``weight_decay_groups``); ``_NormBase`` covers
#: BatchNorm1d/2d/3d, SyncBatchNorm, the lazy variants and InstanceNorm1d/2d/3d
NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm,
) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())


def _tensors(params, name: str = "params") -> list[torch.Tensor]:
    """A module's parameters, a single tensor, or an iterable of tensors, as a list."""
    if isinstance(params, nn.Module):
        tensors = list(params.parameters())
    elif isinstance(params, torch.Tensor):
        tensors = [params]
    elif isinstance(params, Iterable) and not isinstance(params, (str, bytes, dict)):
        tensors = list(params)
    else:
        raise TypeError(f"{name}: expected an nn.Module, a tensor or an iterable of tensors, got "
                        f"{type(params).__name__}")
    for i, p in enumerate(tensors):
        if not isinstance(p, torch.Tensor) or not p.is_floating_point():
            kind = getattr(p, "dtype", type(p).__name__)
            raise TypeError(f"{name}[{i}]: expected a floating-point tensor, got {kind}")
    return tensors


def l2_penalty(params: nn.Module | torch.Tensor | Iterable[torch.Tensor], alpha: float) -> torch.Tensor:
    """The lecture's weight-decay term alpha * Omega(theta), to add to the loss.

    Goodfellow et al. (2016), section 7.1.1:

        alpha * Omega(theta) = alpha * 1/2 * sum_w ||w||_2^2,     grad = alpha * w,

    summed over the tensors given. Adding it to the loss J gives J~ = J + alpha * Omega, and one SGD step on
    J~ is ``w <- w - eta (grad J + alpha w) = (1 - eta alpha) w - eta grad J``: the same as
    ``torch.optim.SGD(weight_decay=alpha)``.

    Notes:
        - An ``nn.Module`` contributes all its parameters, the set that
          ``SGD(model.parameters(), weight_decay=...)`` decays. To exempt biases and normalization
          parameters, pass ``weight_decay_groups(model, 1.0)[0]["params"]``.
        - The 1/2 is part of Omega, so that the gradient is alpha * w with no factor 2, as torch's
          ``weight_decay`` is.

    Args:
        params: the weights w: an ``nn.Module`` (all its parameters), one tensor, or an iterable of tensors.
        alpha: the penalty strength alpha >= 0.

    Returns:
        A 0-dimensional tensor on the parameters' device, differentiable with respect to them.

    Examples::

        >>> l2_penalty(torch.tensor([3.0, 4.0]), alpha=0.1)            # 0.1 * 1/2 * (9 + 16)
        tensor(1.2500)
        >>> model = torch.nn.Linear(3, 2)
        >>> x, y = torch.randn(4, 3), torch.tensor([0, 1, 1, 0])
        >>> loss = torch.nn.functional.cross_entropy(model(x), y) + l2_penalty(model, alpha=5e-4)
        >>> loss.backward()
    """
    ws = _tensors(params)
    alpha = check_number(alpha, "alpha", low=0.0)
    if not ws:
        raise ValueError("params: expected at least one tensor to penalize, got none")
    squared_norm = sum((w * w).sum() for w in ws)  # sum_w ||w||_2^2
    return alpha * 0.5 * squared_norm


def _exempt(module: nn.Module, name: str, param: torch.Tensor, norm_types: tuple[type, ...]) -> bool:
    """The rule of ``weight_decay_groups``: is this parameter kept out of weight decay?"""
    return param.ndim <= 1 or name == "bias" or isinstance(module, norm_types)


def _tricksref_norm_types() -> tuple[type, ...]:
    # tricksref's own BatchNorm modules, if they are in use; a model that holds one has imported the module,
    # so we look in sys.modules and never import it ourselves
    bn = sys.modules.get(f"{__package__}.batchnorm")
    return tuple(t for t in (getattr(bn, n, None) for n in ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d"))
                 if isinstance(t, type))


def weight_decay_groups(model: nn.Module, weight_decay: float, *,
                        norm_types: Iterable[type[nn.Module]] = (),
                        no_decay: Iterable[str] = ()) -> list[dict]:
    """Optimizer parameter groups that decay the weights and exempt biases and normalization parameters.

    The penalty is meant for the weights that multiply the inputs, the many parameters that can overfit.
    Biases and the gamma and beta of normalization layers are few, shift and scale whole channels, and pulling
    them towards 0 fights the normalization rather than limiting the model, so the recipes of large-batch and
    bag-of-tricks training decay only the weights of convolutions and linear layers (He et al., 2019,
    "no bias decay").

    The rule: a parameter is exempt from decay when

    1. its ``ndim`` is 0 or 1 (every bias, and the gamma and beta of BatchNorm, GroupNorm, LayerNorm over one
       dimension, and of ``tricksref``'s BatchNorm modules), or
    2. its attribute name in its module is ``bias``, or
    3. its module is a normalization layer: an instance of ``NORM_TYPES`` (torch's BatchNorm, SyncBatchNorm,
       InstanceNorm, LayerNorm, GroupNorm, RMSNorm), of ``tricksref.BatchNorm1d``/``BatchNorm2d``, or of one
       of ``norm_types`` (e.g. LayerNorm over (C, H, W), whose gamma has ndim 3), or
    4. its full name (as in ``model.named_parameters()``) is listed in ``no_decay``.

    Every parameter of the model appears exactly once, in the order of ``model.parameters()`` (a shared
    parameter once, exempt if any of its owners makes it so). Frozen parameters are included: the optimizer
    skips them while they have no gradient.

    Args:
        model: the network.
        weight_decay: the decay of the first group, >= 0 (the lecture's alpha for ``SGD``, lambda for
            ``AdamW``).
        norm_types: further module types whose parameters are exempt. Default: none.
        no_decay: further full parameter names to exempt. Default: none.

    Returns:
        ``[{"params": decayed, "weight_decay": weight_decay}, {"params": exempt, "weight_decay": 0.0}]``,
        ready for any ``torch.optim`` optimizer (either list may be empty).

    Examples::

        >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
        >>> groups = weight_decay_groups(model, 5e-4)
        >>> [(len(g["params"]), g["weight_decay"]) for g in groups]   # the conv's weight; bias, gamma, beta
        [(1, 0.0005), (3, 0.0)]
        >>> opt = torch.optim.SGD(groups, lr=0.1, momentum=0.9)
        >>> opt = torch.optim.AdamW(weight_decay_groups(model, 0.05), lr=1e-3)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    weight_decay = float(check_number(weight_decay, "weight_decay", low=0.0))
    extra = tuple(norm_types)
    for t in extra:
        if not isinstance(t, type):
            raise TypeError(f"norm_types: expected module classes, got {t!r}")
    types = NORM_TYPES + _tricksref_norm_types() + extra
    if isinstance(no_decay, str):
        raise TypeError("no_decay: expected an iterable of parameter names, got a single string")
    named = dict(model.named_parameters())
    unknown = sorted(set(no_decay) - set(named))
    if unknown:
        raise ValueError(f"no_decay: expected names from model.named_parameters(), got unknown {unknown}")
    skip = {id(named[n]) for n in no_decay}

    exempt_ids: set[int] = set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if _exempt(module, name, p, types):
                exempt_ids.add(id(p))
    exempt_ids |= skip

    decay, exempt = [], []
    for p in model.parameters():  # deduplicated, in registration order
        (exempt if id(p) in exempt_ids else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": exempt, "weight_decay": 0.0}]


@torch.no_grad()
def decoupled_weight_decay_(params: nn.Module | torch.Tensor | Iterable[torch.Tensor], lr: float,
                            weight_decay: float) -> None:
    """Decoupled weight decay (Loshchilov and Hutter, 2019): shrink the weights in place, not by gradient.

        w <- (1 - eta * lambda) * w

    Call it just before ``optimizer.step()`` (with the optimizer's own ``weight_decay=0``): the step then
    applies the optimizer's update to the shrunk weights, which is ``torch.optim.AdamW`` when the optimizer is
    ``Adam``, and SGDW when it is ``SGD`` with momentum. The shrinkage does not go through the optimizer's
    moment estimates, so under Adam it is not divided by sqrt(v): every weight loses the same fraction
    eta * lambda per step, whatever the size and noise of its gradient.

    Notes:
        - lambda is multiplied by the learning rate eta, as in torch's ``AdamW`` (and the paper's
          eta_t * lambda with its schedule multiplier); pass the current, scheduled learning rate as ``lr``.
        - For real training use ``torch.optim.AdamW(weight_decay_groups(model, lambda), lr=eta)``: the same
          update, fused into the optimizer. This function spells the rule out and gives it to other
          optimizers.

    Args:
        params: the weights to decay: an ``nn.Module``, a tensor, or an iterable of tensors (e.g.
            ``weight_decay_groups(model, 0)[0]["params"]``). Modified in place.
        lr: the learning rate eta (>= 0).
        weight_decay: lambda (>= 0).

    Examples::

        >>> model = torch.nn.Linear(3, 2)
        >>> opt = torch.optim.Adam(model.parameters(), lr=1e-3)       # no weight_decay here
        >>> model(torch.randn(4, 3)).pow(2).mean().backward()
        >>> decoupled_weight_decay_(model, lr=1e-3, weight_decay=0.01)
        >>> opt.step()                                                 # = AdamW(lr=1e-3, weight_decay=0.01)
    """
    ws = _tensors(params)
    lr = check_number(lr, "lr", low=0.0)
    weight_decay = check_number(weight_decay, "weight_decay", low=0.0)
    factor = 1.0 - lr * weight_decay  # computed once in Python, as torch's AdamW does, so the results agree
    for w in ws:
        w.mul_(factor)
