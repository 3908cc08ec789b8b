"""Visible tests of the ``batchnorm`` assignment, on one small input everybody can see.

The student writes ``batchnorm_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1,
eps=1e-5) -> (out, cache)`` and ``batchnorm_backward(dout, cache) -> (dx, dgamma, dbeta)``; the reference
is ``tricksref.batch_norm`` (torch's semantics: biased variance to normalize, unbiased to update the running
variance, ``running = (1 - momentum) * running + momentum * batch``), its gradients by autograd through it.
"""

from __future__ import annotations

import torch

from grader.suite import Score, memo, points

FORWARD, BACKWARD = "batchnorm_forward", "batchnorm_backward"
RTOL, ATOL = 1e-6, 1e-8


def make_case(x, *, training, momentum=0.1, eps=1e-5, seed=0, running=None) -> dict:
    """A forward case: x, and gamma, beta, running statistics drawn from ``seed`` for x's channels."""
    g = torch.Generator().manual_seed(seed)
    C = x.shape[1]
    gamma = torch.randn(C, generator=g, dtype=x.dtype) * 0.5 + 1.0
    beta = torch.randn(C, generator=g, dtype=x.dtype) * 0.5
    if running is None:
        running = (torch.randn(C, generator=g, dtype=x.dtype) * 0.3,
                   torch.rand(C, generator=g, dtype=x.dtype) + 0.5)
    return {"x": x, "gamma": gamma, "beta": beta, "running_mean": running[0].clone(),
            "running_var": running[1].clone(), "training": training, "momentum": momentum, "eps": eps}


def reference(c: dict) -> dict:
    """The reference's out and running statistics after the call (on copies)."""
    import tricksref

    rm, rv = c["running_mean"].clone(), c["running_var"].clone()
    kwargs = {k: c[k] for k in ("momentum", "eps") if c.get(k) is not None}
    out = tricksref.batch_norm(c["x"], rm, rv, weight=c["gamma"], bias=c["beta"], training=c["training"],
                               **kwargs)
    return {"out": out, "running_mean": rm, "running_var": rv}


def reference_grads(c: dict) -> tuple:
    """(dx, dgamma, dbeta) of sum(dout * out) in training, by autograd through the reference."""
    import tricksref

    x, gamma, beta = (c[k].clone().requires_grad_(True) for k in ("x", "gamma", "beta"))
    out = tricksref.batch_norm(x, c["running_mean"].clone(), c["running_var"].clone(), weight=gamma,
                               bias=beta, training=True, momentum=c["momentum"], eps=c["eps"])
    return torch.autograd.grad(out, (x, gamma, beta), c["dout"])


def run_forward(sub, key, cases):
    return memo(sub, ("batchnorm.forward", key), lambda: sub.run("batchnorm.forward", cases=cases)["results"])


def run_backward(sub, key, cases):
    return memo(sub, ("batchnorm.backward", key),
                lambda: sub.run("batchnorm.backward", cases=cases)["results"])


def check_out(r: dict, expected: torch.Tensor, *, rtol=RTOL, atol=ATOL) -> str | None:
    """None if the forward's ``out`` matches, else what is wrong (never the case's values)."""
    if r["error"] is not None:
        return r["error"]
    out = r["value"]["out"]
    if out.shape != expected.shape:
        return f"{FORWARD} returned an out whose shape differs from x's: out must have x's shape"
    if out.dtype != expected.dtype:
        return f"{FORWARD} returned out of dtype {out.dtype} for a {expected.dtype} input: keep x's dtype"
    if not torch.isfinite(out).all():
        return f"{FORWARD} returned NaN or inf"
    if not torch.allclose(out, expected, rtol=rtol, atol=atol):
        return "wrong"
    return None


def running_problem(r: dict, c: dict, expected: dict) -> str | None:
    """None if the running statistics after a forward are right, else a diagnosis."""
    if r["error"] is not None:
        return r["error"]
    v = r["value"]
    rm, rv = v["running_mean"], v["running_var"]
    if torch.allclose(rm, expected["running_mean"], rtol=RTOL, atol=ATOL) and \
            torch.allclose(rv, expected["running_var"], rtol=RTOL, atol=ATOL):
        return None
    if not c["training"]:
        return "the running statistics changed in evaluation mode: only a training forward updates them"
    if torch.equal(rm, c["running_mean"]) and torch.equal(rv, c["running_var"]):
        return ("the running statistics did not change after a training forward: update running_mean and "
                "running_var in place (e.g. running_mean.mul_(1 - momentum).add_(momentum * mean))")
    x, m = c["x"], c["momentum"]
    dims = (0, *range(2, x.dim()))  # every axis but the channels
    n = x.numel() // x.shape[1]
    mean, biased = x.mean(dims), x.var(dims, unbiased=False)
    flipped = (m * c["running_mean"] + (1 - m) * mean, m * c["running_var"] + (1 - m) * biased * n / (n - 1))
    if torch.allclose(rm, flipped[0], rtol=RTOL, atol=ATOL) and m != 0.5:
        return ("the momentum is the weight of the NEW batch (torch's convention): running = "
                "(1 - momentum) * running + momentum * batch")
    if not torch.allclose(rm, expected["running_mean"], rtol=RTOL, atol=ATOL):
        return ("running_mean is updated wrongly: running_mean = (1 - momentum) * running_mean + "
                "momentum * mean")
    if torch.allclose(rv, (1 - m) * c["running_var"] + m * biased, rtol=RTOL, atol=ATOL):
        return ("running_var is updated with the biased variance: torch updates it with the unbiased one, "
                "m / (m - 1) times the biased variance (m values per channel)")
    return ("running_var is updated wrongly: running_var = (1 - momentum) * running_var + "
            "momentum * unbiased var")


def _stats_shape(x):
    dims = (0, *range(2, x.dim()))  # every axis but the channels
    shape = (1, -1) + (1,) * (x.dim() - 2)  # a (C,) vector broadcast over x
    return dims, shape


def mistake(c: dict, kind: str) -> torch.Tensor:
    """The out of a known mistake, to recognise it in a student's output."""
    x, eps = c["x"], c["eps"]
    dims, shape = _stats_shape(x)
    gamma, beta = c["gamma"].view(shape), c["beta"].view(shape)
    if not c["training"]:
        if kind != "std+eps":
            raise ValueError(kind)
        xhat = (x - c["running_mean"].view(shape)) / (c["running_var"].view(shape).sqrt() + eps)
        return gamma * xhat + beta
    mu = x.mean(dims, keepdim=True)
    if kind == "unbiased":
        xhat = (x - mu) / torch.sqrt(x.var(dims, unbiased=True, keepdim=True) + eps)
    elif kind == "std+eps":
        xhat = (x - mu) / (x.var(dims, unbiased=False, keepdim=True).sqrt() + eps)
    elif kind == "per-element":  # statistics over the batch axis only, for (N, C, H, W)
        xhat = (x - x.mean(0, keepdim=True)) / torch.sqrt(x.var(0, unbiased=False, keepdim=True) + eps)
    else:
        raise ValueError(kind)
    return gamma * xhat + beta


_HINTS = {
    "unbiased": "normalize with the biased variance (divide by m, not m - 1); the unbiased one is only for "
                "the running variance",
    "std+eps": "eps goes inside the square root: (x - mean) / sqrt(var + eps)",
    "per-element": "for an (N, C, H, W) input the statistics are per channel, over N, H and W together",
}


def diagnose_out(c: dict, out: torch.Tensor) -> str:
    for kind in ("unbiased", "std+eps", "per-element"):
        if kind == "per-element" and c["x"].dim() == 2 or kind != "std+eps" and not c["training"]:
            continue
        variant = mistake(c, kind)
        if out.shape == variant.shape and torch.allclose(out, variant, rtol=1e-6, atol=1e-8):
            return _HINTS[kind]
    return ""


# ------------------------------------------------------------------------------------------ the visible case

_g = torch.Generator().manual_seed(11)
X_SMALL = torch.randn(6, 3, generator=_g, dtype=torch.float64) * 2.0 + 1.0
TRAIN_SMALL = make_case(X_SMALL, training=True, seed=1)
EVAL_SMALL = make_case(X_SMALL, training=False, seed=1)
BACKWARD_SMALL = dict(TRAIN_SMALL, dout=torch.randn(6, 3, generator=_g, dtype=torch.float64))


def _fmt(t: torch.Tensor) -> str:
    return "[" + ", ".join(f"{float(v):.7g}" for v in t.flatten()[:6]) + "]"


@points(1, functions=(FORWARD,))
def test_bn_forward_train_small(sub):
    r = run_forward(sub, "small", [TRAIN_SMALL, EVAL_SMALL])[0]
    expected = reference(TRAIN_SMALL)["out"]
    problem = check_out(r, expected)
    if problem == "wrong":
        out = r["value"]["out"]
        problem = (f"training-mode out is wrong on the visible (6, 3) input: expected the first row "
                   f"{_fmt(expected[0])}, got {_fmt(out[0])}")
        hint = diagnose_out(TRAIN_SMALL, out)
        if hint:
            problem += f": {hint}"
    assert problem is None, problem


@points(1, functions=(FORWARD,))
def test_bn_forward_eval_small(sub):
    r = run_forward(sub, "small", [TRAIN_SMALL, EVAL_SMALL])[1]
    expected = reference(EVAL_SMALL)["out"]
    problem = check_out(r, expected)
    if problem == "wrong":
        batch = reference(dict(EVAL_SMALL, training=True))["out"]
        problem = ("evaluation-mode out must use the running statistics, not the batch's"
                   if torch.allclose(r["value"]["out"], batch, rtol=1e-6, atol=1e-8)
                   else f"evaluation-mode out is wrong on the visible (6, 3) input: expected the first row "
                        f"{_fmt(expected[0])}, got {_fmt(r['value']['out'][0])}")
        hint = diagnose_out(EVAL_SMALL, r["value"]["out"])
        if hint:
            problem += f": {hint}"
    assert problem is None, problem


@points(1, functions=(FORWARD,))
def test_bn_running_stats_small(sub):
    score = Score()
    small = [TRAIN_SMALL, EVAL_SMALL]
    for r, c in zip(run_forward(sub, "small", small), small, strict=True):
        problem = running_problem(r, c, reference(c))
        score.check(problem is None, f"{problem} (visible (6, 3) input, training={c['training']})")
    score.done()


@points(1, functions=(FORWARD, BACKWARD))
def test_bn_backward_small(sub):
    r = run_backward(sub, "small", [BACKWARD_SMALL])[0]
    if r["error"] is not None:
        raise AssertionError(r["error"])
    expected = dict(zip(("dx", "dgamma", "dbeta"), reference_grads(BACKWARD_SMALL), strict=False))
    score = Score()
    for name, weight in (("dx", 2), ("dgamma", 1), ("dbeta", 1)):
        got = r["value"][name]
        ok = got.shape == expected[name].shape and torch.allclose(got, expected[name], rtol=1e-6, atol=1e-8)
        shapes = ("" if got.shape == expected[name].shape else
                  f" (shape {tuple(got.shape)}, expected {tuple(expected[name].shape)})")
        score.check(ok, f"{name} is wrong on the visible (6, 3) input: expected {_fmt(expected[name])}, got "
                        f"{_fmt(got)}{shapes}", weight)
    score.done()


@points(1, functions=(FORWARD,))
def test_bn_inputs_unmodified(sub):
    score = Score()
    for r in run_forward(sub, "small", [TRAIN_SMALL, EVAL_SMALL]):
        if r["error"] is not None:
            score.fail(r["error"])
        else:
            touched = r["value"]["modified"]
            score.check(not touched, f"{FORWARD} modified {', '.join(touched)} in place: only the running "
                                     f"statistics may change")
    score.done()
