"""Hidden tests of the ``batchnorm`` assignment: random (N, D) and (N, C, H, W) inputs, momentum and eps,
near-constant channels, the explicit backward against the reference and a numeric derivative, dtypes.

Every case discriminates: eps takes values (0.1, 1e-3) at which ``std + eps`` and ``sqrt(var + eps)`` differ
far beyond the tolerance, and the backward's cases have at least 4 values per channel (with 2, each
normalized value is about +-1 whatever x is, so dx is about 0 and a wrong backward would pass).
"""

from __future__ import annotations

import functools

import torch

from grader.reference.batchnorm import (
    evaluation_on_batch,
    mistakes,
    reference,
    reference_grads,
    running_mistakes,
)
from grader.suite import Partial, Score, cases, explain, points, probe, tensor_problem
from grader.suites.batchnorm import (
    BACKWARD,
    BACKWARD_PROBE,
    FORWARD,
    FORWARD_PROBE,
    GRADS,
    make_case,
    out_problem,
    readable,
    running_problem,
)

_H = 1e-6


def _strategy(*, backward: bool = False):
    from hypothesis import strategies as st

    n_min = 4 if backward else 2
    flat = st.fixed_dictionaries({"shape": st.tuples(st.integers(n_min, 9), st.integers(1, 5))})
    image = st.fixed_dictionaries({"shape": st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(2, 3),
                                                      st.integers(2, 3))})
    common = st.fixed_dictionaries({
        "momentum": st.sampled_from([0.1, 0.01, 0.3, 1.0]),
        "eps": st.sampled_from([1e-5, 1e-3, 0.1]),
        "scale": st.sampled_from([1.0, 3.0, 0.2]),
        "seed": st.integers(0, 2**31 - 1),
    })
    return st.tuples(st.one_of(flat, image), common).map(lambda t: {**t[0], **t[1]})


def _build(p: dict, *, training: bool, dtype=torch.float64) -> dict:
    g = torch.Generator().manual_seed(p["seed"])
    x = (torch.randn(p["shape"], generator=g, dtype=torch.float64) * p["scale"] + p["scale"]).to(dtype)
    c = make_case(x, training=training, momentum=p["momentum"], eps=p["eps"], seed=p["seed"] + 1)
    return {k: (v.to(dtype) if isinstance(v, torch.Tensor) else v) for k, v in c.items()}


@functools.cache
def _train_cases():
    built = [_build(p, training=True) for p in cases(_strategy(), 12)]
    return built, [reference(c) for c in built], [mistakes(c) for c in built], \
        [running_mistakes(c) for c in built]


@functools.cache
def _eval_cases():
    built = [_build(p, training=False) for p in cases(_strategy(), 6, salt=2)]
    return built, [reference(c) for c in built], [mistakes(c) for c in built], \
        [evaluation_on_batch(c) for c in built]


@functools.cache
def _constant_cases():
    """Channels that are constant or nearly so (variance far below eps), beside an ordinary one."""
    g = torch.Generator().manual_seed(3)
    built = []
    for shape, eps in (((8, 3), 1e-5), ((4, 3, 2, 2), 1e-3), ((16, 3), 1e-3)):
        x = torch.randn(shape, generator=g, dtype=torch.float64)
        x[:, 0] = 2.5                                                # exactly constant
        x[:, 1] = -1.0 + 1e-4 * torch.randn(x[:, 1].shape, generator=g, dtype=torch.float64)
        built.append(make_case(x, training=True, eps=eps, seed=len(built)))
    return built, [reference(c) for c in built], [mistakes(c) for c in built]


@functools.cache
def _backward_cases():
    g = torch.Generator().manual_seed(17)
    built, directions = [], []
    for p in cases(_strategy(backward=True), 6, salt=3):
        c = _build(p, training=True)
        c["dout"] = torch.randn(c["x"].shape, generator=g, dtype=torch.float64)
        d = {}
        for name in ("x", "gamma", "beta"):
            d[name] = torch.randn(c[name].shape, generator=g, dtype=torch.float64)
            c[f"{name}_plus"], c[f"{name}_minus"] = c[name] + _H * d[name], c[name] - _H * d[name]
        built.append(c)
        directions.append(d)  # the grader's alone: the probe gets the moved inputs only
    return built, directions, [reference_grads(c) for c in built], [reference(c)["out"] for c in built]


@functools.cache
def _dtype_cases():
    built = [_build(p, training=True, dtype=torch.float32) for p in cases(_strategy(), 4, salt=4)]
    return built, [reference({k: (v.double() if isinstance(v, torch.Tensor) else v) for k, v in c.items()})
                   for c in built]


def prepare() -> None:
    _train_cases(), _eval_cases(), _constant_cases(), _backward_cases(), _dtype_cases()


def _kind(c) -> str:
    return "(N, D)" if c["x"].dim() == 2 else "(N, C, H, W)"


@points(3, functions=(FORWARD,))
def test_bn_forward_train_values(sub):
    built, expected, wrong, _ = _train_cases()
    failed = []
    for c, r, e, w in zip(built, probe(sub, FORWARD_PROBE, built, key="train"), expected, wrong, strict=True):
        problem = out_problem(sub, r, e["out"], w)
        if problem is not None:
            failed.append(problem.replace("wrong", f"training-mode out is wrong for {_kind(c)} inputs", 1)
                          if problem.startswith("wrong") else problem)
    if failed:
        raise Partial(1 - len(failed) / len(built),
                      f"{failed[0]} ({len(failed)} of {len(built)} random inputs wrong)")


@points(2, functions=(FORWARD,))
def test_bn_forward_eval_values(sub):
    """Evaluation-mode out (a value test); the running statistics left alone (counted where out is right)."""
    built, expected, wrong, on_batch = _eval_cases()
    score = Score()
    results = probe(sub, FORWARD_PROBE, built, key="eval")
    for c, r, e, w, b in zip(built, results, expected, wrong, on_batch, strict=True):
        problem = out_problem(sub, r, e["out"], w)
        if problem is not None and problem.startswith("wrong"):
            problem = ("evaluation-mode out must use the running statistics, not the batch's"
                       if torch.allclose(r["out"], b, rtol=1e-6, atol=1e-8)
                       else f"evaluation-mode out is wrong for {_kind(c)} inputs: "
                            + (problem[len("wrong: "):] or
                               "gamma * (x - running_mean) / sqrt(running_var + eps) + beta"))
        score.check(problem is None, problem or "", weight=2)
        if problem is None:
            stats = running_problem(sub, r, c, e, None)
            score.check(stats is None, stats or "")
    score.done()


@points(2, functions=(FORWARD,))
def test_bn_running_stats(sub):
    built, expected, _, running = _train_cases()
    score = Score()
    results = probe(sub, FORWARD_PROBE, built, key="train")
    for c, r, e, m in zip(built, results, expected, running, strict=True):
        problem = running_problem(sub, r, c, e, m)
        score.check(problem is None, f"{problem} ({_kind(c)} inputs)" if problem else "")
    score.done()


@points(2, functions=(FORWARD,))
def test_bn_near_constant_channels(sub):
    built, expected, wrong = _constant_cases()
    score = Score()
    for r, e, w in zip(probe(sub, FORWARD_PROBE, built, key="constant"), expected, wrong, strict=True):
        problem = out_problem(sub, r, e["out"], w)
        if problem is not None and r.ok and isinstance(r["out"], torch.Tensor) and \
                r["out"].shape == e["out"].shape and not torch.isfinite(r["out"]).all():
            problem = ("NaN or inf on a constant channel (variance 0): add eps to the variance inside the "
                       "square root")
        elif problem is not None and problem.startswith("wrong"):
            problem = ("wrong on a (nearly) constant channel, where eps matters: "
                       + (problem[len("wrong: "):] or "normalize with (x - mean) / sqrt(var + eps)"))
        score.check(problem is None, problem or "")
    score.done()


def _backward(sub):
    built, directions, grads, outs = _backward_cases()
    return built, directions, grads, outs, probe(sub, BACKWARD_PROBE, built, key="hidden")


@points(3, functions=(FORWARD, BACKWARD))
def test_bn_backward_values(sub):
    """dx (2 points of 4), dgamma and dbeta (1 each), each graded on its own."""
    built, _, grads, _, results = _backward(sub)
    score = Score()
    for c, r, want in zip(built, results, grads, strict=True):
        if not r.ok:
            score.fail(explain(sub, r.error), weight=4)
            continue
        for name, of, weight in GRADS:
            problem = tensor_problem(name, r[name], want[name], of)
            if problem is None and not torch.allclose(r[name], want[name], rtol=1e-6, atol=1e-8):
                problem = f"{name} is wrong for {_kind(c)} inputs" + (
                    ": dx has three terms, since the mean and the variance depend on every x_i"
                    if name == "dx" else "")
            score.check(problem is None, problem or "", weight)
    score.done()


@points(1, functions=(FORWARD, BACKWARD))
def test_bn_backward_numeric(sub):
    """Property: where the student's forward is right, their backward is its derivative (central differences
    of their own forward, computed here from its outputs at the moved inputs)."""
    built, directions, _, outs, results = _backward(sub)
    score = Score()
    for c, d, out, r in zip(built, directions, outs, results, strict=True):
        problem = (explain(sub, r.error) if not r.ok
                   else tensor_problem(f"{FORWARD}'s out", r["out"], out, "x"))
        if problem is None and not torch.allclose(r["out"], out, rtol=1e-6, atol=1e-8):
            problem = f"{FORWARD}'s out is wrong"
        if problem is not None:
            score.check_if(False, False, "", why_not=readable(problem))
            continue
        shapes = [tensor_problem(name, r[name], c[of], of) for name, of, _ in GRADS] + \
            [tensor_problem(f"{FORWARD}'s out", r[k], out, "x") for k in ("out_plus", "out_minus")]
        shapes = [p for p in shapes if p is not None and "NaN" not in p]
        if shapes:
            score.fail(f"{shapes[0]}, so your backward cannot be checked against your forward")
            continue
        numeric = float((c["dout"] * (r["out_plus"].double() - r["out_minus"].double())).sum()) / (2 * _H)
        terms = [(r[name].double() * d[of]) for name, of, _ in GRADS]
        analytic = float(sum(t.sum() for t in terms))
        scale = float(sum(t.abs().sum() for t in terms)) + float((c["dout"] * out).abs().sum())
        score.check(abs(numeric - analytic) <= 1e-6 * scale + 1e-9,
                    f"your backward disagrees with a numeric derivative of your own forward "
                    f"({_kind(c)} inputs)")
    score.done(nothing_counted="not checked: on no input of this test did your forward give right values "
                               "and your backward run")


@points(1, functions=(FORWARD,))
def test_bn_dtypes(sub):
    """Property: float32 inputs give float32 outputs and running statistics, as close to the reference as
    float32 allows (counted on the cases whose values are right)."""
    built, expected = _dtype_cases()
    score = Score()
    for r, e in zip(probe(sub, FORWARD_PROBE, built, key="dtypes"), expected, strict=True):
        out = r["out"] if r.ok else None
        right = isinstance(out, torch.Tensor) and out.shape == e["out"].shape and \
            bool(torch.isfinite(out).all()) and torch.allclose(out.double(), e["out"], rtol=1e-4, atol=1e-4)
        why = explain(sub, r.error) if not r.ok else "out in float32 is wrong"
        score.check_if(right, right and out.dtype == torch.float32
                       and r["running_var"].dtype == torch.float32,
                       f"out should have x's dtype (float32 here, got {getattr(out, 'dtype', None)})",
                       why_not=why)
    score.done(nothing_counted="not checked: no float32 input gave right values")
