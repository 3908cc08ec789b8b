"""Probes of the ``lrn`` assignment: ``lrn_inter(a, n, k, alpha, beta)`` and ``lrn_intra`` (same args)."""

from __future__ import annotations

import torch

from ._common import attempt, raw, student

FUNCTIONS = ("lrn_inter", "lrn_intra")


def _check_fn(fn: str) -> str:
    if fn not in FUNCTIONS:
        raise ValueError(f"fn: expected one of {FUNCTIONS}, got {fn!r}")
    return fn


def forward(ns, *, fn: str, cases: list) -> dict:
    """``fn`` on each case ``{a, n, k, alpha, beta}``: ``{"out": what it returned, "a": a after the call}``.
    """
    _check_fn(fn)

    def one(c):
        a = c["a"]
        out = student(ns, fn, a, c["n"], c["k"], c["alpha"], c["beta"])
        return {"out": raw(out), "a": a}

    return {"results": [attempt(fn, lambda c=c: one(c)) for c in cases]}


def grad(ns, *, fn: str, cases: list) -> dict:
    """Autograd through ``fn`` on each case ``{a, n, k, alpha, beta, g, a_plus, a_minus}``.

    ``{"out": fn(a), "grad": d sum(g * fn(a)) / da or None (not connected by autograd), "out_plus":
    fn(a_plus), "out_minus": fn(a_minus)}``: the grader compares the gradient with the reference's and with
    central differences of the student's own forward, which it computes from the two outputs.
    """
    _check_fn(fn)

    def one(c):
        a = c["a"].clone().requires_grad_(True)
        out = student(ns, fn, a, c["n"], c["k"], c["alpha"], c["beta"])
        g = None
        if isinstance(out, torch.Tensor) and out.requires_grad and out.shape == c["g"].shape:
            (g,) = torch.autograd.grad(out, a, grad_outputs=c["g"].to(out.dtype), allow_unused=True)
        with torch.no_grad():
            plus = student(ns, fn, c["a_plus"], c["n"], c["k"], c["alpha"], c["beta"])
            minus = student(ns, fn, c["a_minus"], c["n"], c["k"], c["alpha"], c["beta"])
        return {"out": raw(out), "grad": raw(g), "out_plus": raw(plus), "out_minus": raw(minus)}

    return {"results": [attempt(fn, lambda c=c: one(c)) for c in cases]}
