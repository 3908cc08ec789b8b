"""Visible tests of the ``batchnorm`` assignment, on one small input everybody can see.

The student writes ``batchnorm_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1,
eps=1e-5) -> (out, cache)`` and ``batchnorm_backward(dout, cache) -> (dx, dgamma, dbeta)``, with torch's
semantics (biased variance to normalize, unbiased to update the running variance, ``running = (1 - momentum)
* running + momentum * batch``). The expected values travel as data (``grader.expected``): nothing here
computes batch norm.
"""

from __future__ import annotations

import torch

from grader.expected import load
from grader.replies import ECHO, OUT, Spec
from grader.suite import Probe, Score, explain, points, probe, tensor_problem

FORWARD, BACKWARD = "batchnorm_forward", "batchnorm_backward"
RTOL, ATOL = 1e-6, 1e-8

FORWARD_PROBE = Probe("batchnorm.forward", Spec({
    "out": OUT, "x": ECHO("x"), "gamma": ECHO("gamma"), "beta": ECHO("beta"),
    "running_mean": ECHO("running_mean"), "running_var": ECHO("running_var")}), (FORWARD,))
BACKWARD_PROBE = Probe("batchnorm.backward", Spec({
    "out": OUT, "dx": OUT, "dgamma": OUT, "dbeta": OUT, "out_plus": OUT, "out_minus": OUT}),
    (FORWARD, BACKWARD))
GRADS = (("dx", "x", 2), ("dgamma", "gamma", 1), ("dbeta", "beta", 1))  # name, of, weight


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


def out_problem(sub, r, expected: torch.Tensor, mistakes: dict) -> str | None:
    """None if the forward's ``out`` matches ``expected``, else what is wrong (never the case's values)."""
    if not r.ok:
        return explain(sub, r.error)
    problem = tensor_problem(f"{FORWARD}'s out", r["out"], expected, "x")
    if problem is None and not torch.allclose(r["out"], expected, rtol=RTOL, atol=ATOL):
        problem = "wrong"
        for kind, variant in mistakes.items():
            if torch.allclose(r["out"], variant, rtol=1e-6, atol=1e-8):
                problem = f"wrong: {HINTS[kind]}"
                break
    return problem


def readable(problem: str | None) -> str:
    """``out_problem``'s text as a sentence ("wrong: hint" -> "the forward's out is wrong: hint")."""
    if problem is None:
        return ""
    return f"the forward's out is {problem}" if problem.startswith("wrong") else problem


HINTS = {
    "unbiased": "normalize with the biased variance (divide by m, not m - 1); the unbiased one is only for "
                "the running variance",
    "std+eps": "eps goes inside the square root: (x - mean) / sqrt(var + eps)",
    "per-element": "for an (N, C, H, W) input the statistics are per channel, over N, H and W together",
}


def running_problem(sub, r, c: dict, expected: dict, mistakes: dict | None) -> str | None:
    """None if the running statistics after a forward are right, else a diagnosis (``mistakes``: the
    running statistics of the known mistakes of a training forward)."""
    if not r.ok:
        return explain(sub, r.error)
    rm, rv = r["running_mean"], r["running_var"]
    if torch.allclose(rm, expected["running_mean"], rtol=RTOL, atol=ATOL) and \
            torch.allclose(rv, expected["running_var"], rtol=RTOL, atol=ATOL):
        return None
    if not c["training"]:
        return "the running statistics changed in evaluation mode: only a training forward updates them"
    if torch.equal(rm, c["running_mean"]) and torch.equal(rv, c["running_var"]):
        return ("the running statistics did not change after a training forward: update running_mean and "
                "running_var in place (e.g. running_mean.mul_(1 - momentum).add_(momentum * mean))")
    diagnoses = {
        "flipped": "the momentum is the weight of the NEW batch (torch's convention): running = "
                   "(1 - momentum) * running + momentum * batch",
        "batch_only": "the running statistics were replaced by the batch's: blend them, running = "
                      "(1 - momentum) * running + momentum * batch",
        "biased": "running_var is updated with the biased variance: torch updates it with the unbiased one, "
                  "m / (m - 1) times the biased variance (m values per channel)",
    }
    for kind, text in diagnoses.items():
        mean, var = mistakes[kind]
        if torch.allclose(rm, mean, rtol=RTOL, atol=ATOL) and torch.allclose(rv, var, rtol=RTOL, atol=ATOL):
            return text
    if not torch.allclose(rm, expected["running_mean"], rtol=RTOL, atol=ATOL):
        return ("running_mean is updated wrongly: running_mean = (1 - momentum) * running_mean + "
                "momentum * mean")
    return ("running_var is updated wrongly: running_var = (1 - momentum) * running_var + "
            "momentum * unbiased var")


def unmodified(r, c: dict) -> list[str]:
    """The names of x, gamma, beta that the forward modified."""
    return [k for k in ("x", "gamma", "beta") if not torch.equal(r[k], c[k])]


# ------------------------------------------------------------------------------------------ the visible case

_g = torch.Generator().manual_seed(11)
X_SMALL = torch.randn(6, 3, generator=_g, dtype=torch.float64) * 2.0 + 1.0
TRAIN_SMALL = make_case(X_SMALL, training=True, seed=1)
EVAL_SMALL = make_case(X_SMALL, training=False, seed=1)
BACKWARD_SMALL = dict(TRAIN_SMALL, dout=torch.randn(6, 3, generator=_g, dtype=torch.float64))
_H = 1e-6
_v = torch.Generator().manual_seed(12)
for _name in ("x", "gamma", "beta"):
    _dir = torch.randn(BACKWARD_SMALL[_name].shape, generator=_v, dtype=torch.float64)
    BACKWARD_SMALL[f"{_name}_plus"] = BACKWARD_SMALL[_name] + _H * _dir
    BACKWARD_SMALL[f"{_name}_minus"] = BACKWARD_SMALL[_name] - _H * _dir


def _fmt(t: torch.Tensor) -> str:
    return "[" + ", ".join(f"{float(v):.7g}" for v in t.flatten()[:6]) + "]"


def _small(sub):
    return probe(sub, FORWARD_PROBE, [TRAIN_SMALL, EVAL_SMALL], key="small")


@points(1, functions=(FORWARD,))
def test_bn_forward_train_small(sub):
    data = load("batchnorm")
    r = _small(sub)[0]
    expected = data["train"]["out"]
    problem = out_problem(sub, r, expected, data["train_mistakes"])
    if problem is not None and problem.startswith("wrong"):
        problem = (f"training-mode out is wrong on the visible (6, 3) input: expected the first row "
                   f"{_fmt(expected[0])}, got {_fmt(r['out'][0])}" + problem[len("wrong"):])
    assert problem is None, problem


@points(1, functions=(FORWARD,))
def test_bn_forward_eval_small(sub):
    data = load("batchnorm")
    r = _small(sub)[1]
    expected = data["eval"]["out"]
    problem = out_problem(sub, r, expected, data["eval_mistakes"])
    if problem is not None and problem.startswith("wrong"):
        if torch.allclose(r["out"], data["eval_on_batch"], rtol=1e-6, atol=1e-8):
            problem = "evaluation-mode out must use the running statistics, not the batch's"
        else:
            problem = (f"evaluation-mode out is wrong on the visible (6, 3) input: expected the first row "
                       f"{_fmt(expected[0])}, got {_fmt(r['out'][0])}" + problem[len("wrong"):])
    assert problem is None, problem


@points(1, functions=(FORWARD,))
def test_bn_running_stats_small(sub):
    """The running statistics after a training forward (a value test), and after an evaluation forward
    (counted only when that forward's out is right: an output that ignores its input earns nothing)."""
    data = load("batchnorm")
    train, evaluation = _small(sub)
    score = Score()
    problem = running_problem(sub, train, TRAIN_SMALL, data["train"], data["running_mistakes"])
    score.check(problem is None, f"{problem} (visible (6, 3) input, training=True)")
    right = out_problem(sub, evaluation, data["eval"]["out"], data["eval_mistakes"]) is None
    if right:
        problem = running_problem(sub, evaluation, EVAL_SMALL, data["eval"], None)
        score.check(problem is None, f"{problem} (visible (6, 3) input, training=False)")
    score.done()


@points(1, functions=(FORWARD, BACKWARD))
def test_bn_backward_small(sub):
    (r,) = probe(sub, BACKWARD_PROBE, [BACKWARD_SMALL], key="small")
    if not r.ok:
        raise AssertionError(explain(sub, r.error))
    expected = load("batchnorm")["grads"]
    score = Score()
    for name, of, weight in GRADS:
        got, want = r[name], expected[name]
        problem = tensor_problem(name, got, want, of)
        if problem is None and not torch.allclose(got, want, rtol=1e-6, atol=1e-8):
            problem = (f"{name} is wrong on the visible (6, 3) input: expected {_fmt(want)}, got {_fmt(got)}"
                       + (": dx has three terms, since the mean and the variance depend on every x_i"
                          if name == "dx" else ""))
        score.check(problem is None, problem or "", weight)
    score.done()


@points(1, functions=(FORWARD,))
def test_bn_inputs_unmodified(sub):
    """Property: a forward whose out is right leaves x, gamma and beta as they were."""
    data = load("batchnorm")
    score = Score()
    for r, c, key in zip(_small(sub), (TRAIN_SMALL, EVAL_SMALL), ("train", "eval"), strict=True):
        problem = out_problem(sub, r, data[key]["out"], data[f"{key}_mistakes"])
        touched = unmodified(r, c) if r.ok else []
        score.check_if(problem is None, not touched,
                       f"{FORWARD} modified {', '.join(touched)} in place: only the running statistics may "
                       f"change", why_not=readable(problem))
    score.done(nothing_counted="not checked: the forward's out is not right on the visible input yet")
