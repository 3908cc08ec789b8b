"""References of the ``batchnorm`` suites: tricksref's batch norm (torch's semantics), its gradients by
autograd, and the known mistakes the messages recognise (computed here, never in what students receive)."""

from __future__ import annotations

import torch

MISTAKES = ("unbiased", "std+eps", "per-element")


def reference(c: dict) -> dict:
    """The reference's ``out`` and running statistics after the call, on copies of case ``c``."""
    import tricksref

    rm, rv = c["running_mean"].clone(), c["running_var"].clone()
    kwargs = {k: c[k] for k in ("momentum", "eps") if c.get(k) is not None}
    out = tricksref.batch_norm(c["x"], rm, rv, weight=c["gamma"], bias=c["beta"], training=c["training"],
                               **kwargs)
    return {"out": out, "running_mean": rm, "running_var": rv}


def reference_grads(c: dict) -> dict:
    """dx, dgamma, dbeta of ``sum(dout * out)`` in training, by autograd through the reference."""
    import tricksref

    x, gamma, beta = (c[k].clone().requires_grad_(True) for k in ("x", "gamma", "beta"))
    out = tricksref.batch_norm(x, c["running_mean"].clone(), c["running_var"].clone(), weight=gamma,
                               bias=beta, training=True, momentum=c["momentum"], eps=c["eps"])
    dx, dgamma, dbeta = torch.autograd.grad(out, (x, gamma, beta), c["dout"])
    return {"dx": dx, "dgamma": dgamma, "dbeta": dbeta}


def _stats(x):
    dims = (0, *range(2, x.dim()))  # every axis but the channels
    shape = (1, -1) + (1,) * (x.dim() - 2)  # a (C,) vector broadcast over x
    return dims, shape


def mistakes(c: dict) -> dict:
    """The ``out`` of each known mistake that applies to case ``c``: name -> tensor."""
    x, eps = c["x"], c["eps"]
    dims, shape = _stats(x)
    gamma, beta = c["gamma"].view(shape), c["beta"].view(shape)
    if not c["training"]:
        xhat = (x - c["running_mean"].view(shape)) / (c["running_var"].view(shape).sqrt() + eps)
        return {"std+eps": gamma * xhat + beta}
    mu = x.mean(dims, keepdim=True)
    found = {
        "unbiased": (x - mu) / torch.sqrt(x.var(dims, unbiased=True, keepdim=True) + eps),
        "std+eps": (x - mu) / (x.var(dims, unbiased=False, keepdim=True).sqrt() + eps),
    }
    if x.dim() > 2:  # statistics over the batch axis only
        var0 = x.var(0, unbiased=False, keepdim=True)
        found["per-element"] = (x - x.mean(0, keepdim=True)) / torch.sqrt(var0 + eps)
    return {k: gamma * v + beta for k, v in found.items()}


def running_mistakes(c: dict) -> dict:
    """The running statistics of the known mistakes of a training forward: name -> (mean, var)."""
    x, m = c["x"], c["momentum"]
    dims, _ = _stats(x)
    n = x.numel() // x.shape[1]
    mean, biased = x.mean(dims), x.var(dims, unbiased=False)
    rm, rv = c["running_mean"], c["running_var"]
    return {"flipped": (m * rm + (1 - m) * mean, m * rv + (1 - m) * biased * n / (n - 1)),
            "biased": ((1 - m) * rm + m * mean, (1 - m) * rv + m * biased),
            "batch_only": (mean, biased * n / (n - 1))}


def evaluation_on_batch(c: dict) -> torch.Tensor:
    """The out of an evaluation-mode call that used the batch's statistics instead of the running ones."""
    return reference(dict(c, training=True))["out"]


def visible_expected() -> dict:
    """Everything the visible tests compare with, for their cases (``grader.expected`` ships it as data)."""
    from grader.suites import batchnorm as visible

    train, evaluation = visible.TRAIN_SMALL, visible.EVAL_SMALL
    return {"train": reference(train), "eval": reference(evaluation),
            "train_mistakes": mistakes(train), "eval_mistakes": mistakes(evaluation),
            "eval_on_batch": evaluation_on_batch(evaluation),
            "running_mistakes": running_mistakes(train),
            "grads": reference_grads(visible.BACKWARD_SMALL)}
