"""References of the ``lrn`` suites: tricksref's LRN in the lecture's (alexnet) convention, its gradient, and
the known mistakes the messages recognise."""

from __future__ import annotations

import torch

MODE = {"lrn_inter": "inter", "lrn_intra": "intra"}


def reference(c: dict, fn: str) -> torch.Tensor:
    """``fn`` on case ``c`` (``a, n, k, alpha, beta``), computed by tricksref in float64, in ``a``'s dtype."""
    import tricksref

    out = tricksref.local_response_norm(c["a"].double(), c["n"], alpha=c["alpha"], beta=c["beta"], k=c["k"],
                                        mode=MODE[fn], convention="alexnet")
    return out.to(c["a"].dtype)


def reference_grad(c: dict, fn: str) -> torch.Tensor:
    """The gradient of ``sum(g * fn(a))`` with respect to ``a`` (float64)."""
    import tricksref

    a = c["a"].double().clone().requires_grad_(True)
    out = tricksref.local_response_norm(a, c["n"], alpha=c["alpha"], beta=c["beta"], k=c["k"], mode=MODE[fn],
                                        convention="alexnet")
    (grad,) = torch.autograd.grad(out, a, c["g"].double())
    return grad


def variant(c: dict, fn: str, kind: str) -> torch.Tensor:
    """A known mistake on case ``c``, to recognise it in a student's output."""
    import tricksref

    n, mode = c["n"], MODE[fn]
    taps = n if mode == "inter" else n * n
    if kind == "alpha/n":
        return reference(dict(c, alpha=c["alpha"] / n), fn)
    if kind == "alpha/n^2":
        return reference(dict(c, alpha=c["alpha"] / taps), fn)
    if kind == "n taps":  # torch's window (n taps, one more before than after), alpha not divided
        return tricksref.local_response_norm(c["a"], n, alpha=c["alpha"] * taps, beta=c["beta"], k=c["k"],
                                             mode=mode, convention="torch")
    raise ValueError(f"kind: expected 'alpha/n', 'alpha/n^2' or 'n taps', got {kind!r}")


def border_mask(c: dict, fn: str) -> torch.Tensor:
    """True at the positions whose window is clipped by a border (channels, or rows and columns)."""
    a, half = c["a"], c["n"] // 2
    mask = torch.zeros_like(a, dtype=torch.bool)
    for d in ((1,) if fn == "lrn_inter" else (2, 3)):
        size = a.shape[d]
        idx = torch.arange(size)
        shape = [1] * a.dim()
        shape[d] = size
        mask |= ((idx < half) | (idx > size - 1 - half)).view(shape)
    return mask


def visible_expected() -> dict:
    """The expected outputs of the visible tests' cases (``grader.expected`` ships them as data)."""
    from grader.suites import lrn as visible

    return {f"small/{fn}": [reference(c, fn) for c in visible.SMALL] for fn in visible.FUNCTIONS}
