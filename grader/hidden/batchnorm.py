"""Hidden tests of the ``batchnorm`` assignment: random (N, D) and (N, C, H, W) inputs, momentum and eps,
near-constant channels, the explicit backward against the reference and a numeric derivative, dtypes."""

from __future__ import annotations

import functools

import torch

from grader.suite import Partial, Score, cases, points
from grader.suites.batchnorm import (
    BACKWARD,
    FORWARD,
    check_out,
    diagnose_out,
    make_case,
    reference,
    reference_grads,
    run_backward,
    run_forward,
    running_problem,
)


def _strategy():
    from hypothesis import strategies as st

    flat = st.fixed_dictionaries({"shape": st.tuples(st.integers(2, 9), st.integers(1, 5))})
    image = st.fixed_dictionaries({"shape": st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3),
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
    return built, [reference(c) for c in built]


@functools.cache
def _eval_cases():
    built = [_build(p, training=False) for p in cases(_strategy(), 6, salt=2)]
    return built, [reference(c) for c in built]


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
    return built, [reference(c) for c in built]


@functools.cache
def _backward_cases():
    g = torch.Generator().manual_seed(17)
    built = []
    for p in cases(_strategy(), 6, salt=3):
        c = _build(p, training=True)
        c["dout"] = torch.randn(c["x"].shape, generator=g, dtype=torch.float64)
        c["vx"] = torch.randn(c["x"].shape, generator=g, dtype=torch.float64)
        c["vgamma"] = torch.randn(c["gamma"].shape, generator=g, dtype=torch.float64)
        c["vbeta"] = torch.randn(c["beta"].shape, generator=g, dtype=torch.float64)
        c["h"] = 1e-6
        built.append(c)
    return built, [reference_grads(c) for c in built]


@functools.cache
def _dtype_cases():
    out = []
    for p in cases(_strategy(), 2, salt=4):
        out += [_build(p, training=True, dtype=torch.float32), _build(p, training=True)]
    return out


def prepare() -> None:
    _train_cases(), _eval_cases(), _constant_cases(), _backward_cases(), _dtype_cases()


def _kind(c) -> str:
    return "(N, D)" if c["x"].dim() == 2 else "(N, C, H, W)"


@points(3, functions=(FORWARD,))
def test_bn_forward_train_values(sub):
    built, expected = _train_cases()
    failed, messages = [], []
    for c, r, e in zip(built, run_forward(sub, "train", built), expected, strict=False):
        problem = check_out(r, e["out"])
        if problem is None:
            continue
        failed.append(c)
        if problem == "wrong":
            hint = diagnose_out(c, r["value"]["out"])
            problem = f"training-mode out is wrong for {_kind(c)} inputs" + (f": {hint}" if hint else "")
        messages.append(problem)
    if failed:
        raise Partial(1 - len(failed) / len(built),
                      f"{messages[0]} ({len(failed)} of {len(built)} random inputs wrong)")


@points(2, functions=(FORWARD,))
def test_bn_forward_eval_values(sub):
    built, expected = _eval_cases()
    score = Score()
    for c, r, e in zip(built, run_forward(sub, "eval", built), expected, strict=False):
        problem = check_out(r, e["out"])
        if problem == "wrong":
            batch = reference(dict(c, training=True))["out"]
            hint = diagnose_out(c, r["value"]["out"]) or \
                "gamma * (x - running_mean) / sqrt(running_var + eps) + beta"
            problem = ("evaluation-mode out must use the running statistics, not the batch's"
                       if torch.allclose(r["value"]["out"], batch, rtol=1e-6, atol=1e-8)
                       else f"evaluation-mode out is wrong for {_kind(c)} inputs: {hint}")
        if problem is None:
            problem = running_problem(r, c, e)
        score.check(problem is None, problem or "")
    score.done()


@points(2, functions=(FORWARD,))
def test_bn_running_stats(sub):
    built, expected = _train_cases()
    score = Score()
    for c, r, e in zip(built, run_forward(sub, "train", built), expected, strict=False):
        problem = running_problem(r, c, e)
        score.check(problem is None, f"{problem} ({_kind(c)} inputs)" if problem else "")
    score.done()


@points(2, functions=(FORWARD,))
def test_bn_near_constant_channels(sub):
    built, expected = _constant_cases()
    score = Score()
    for c, r, e in zip(built, run_forward(sub, "constant", built), expected, strict=False):
        problem = check_out(r, e["out"])
        if r["error"] is None and problem is not None and problem != "wrong":
            if not torch.isfinite(r["value"]["out"]).all():
                problem = ("NaN or inf on a constant channel (variance 0): add eps to the variance "
                           "inside the square root")
        elif problem == "wrong":
            hint = diagnose_out(c, r["value"]["out"])
            problem = ("wrong on a (nearly) constant channel, where eps matters"
                       + (f": {hint}" if hint else ": normalize with (x - mean) / sqrt(var + eps)"))
        score.check(problem is None, problem or "")
    score.done()


@points(3, functions=(FORWARD, BACKWARD))
def test_bn_backward_values(sub):
    built, expected = _backward_cases()
    score = Score()
    for c, r, e in zip(built, run_backward(sub, "hidden", built), expected, strict=False):
        if r["error"] is not None:
            score.fail(r["error"], weight=4)
            continue
        for name, want, weight in zip(("dx", "dgamma", "dbeta"), e, (2, 1, 1), strict=False):
            got = r["value"][name]
            if got.shape != want.shape:
                of = {"dx": "x", "dgamma": "gamma", "dbeta": "beta"}[name]
                score.fail(f"{BACKWARD} returned a {name} whose shape differs from {of}'s", weight)
            else:
                score.check(torch.allclose(got, want, rtol=1e-6, atol=1e-8),
                            f"{name} is wrong for {_kind(c)} inputs"
                            + (": dx has three terms, since the mean and the variance depend on every x_i"
                               if name == "dx" else ""), weight)
    score.done()


@points(1, functions=(FORWARD, BACKWARD))
def test_bn_backward_numeric(sub):
    """The student's backward is the derivative of the student's forward (central differences)."""
    built, _ = _backward_cases()
    score = Score()
    for c, r in zip(built, run_backward(sub, "hidden", built), strict=False):
        if r["error"] is not None:
            score.fail(r["error"])
            continue
        v = r["value"]
        if v["dx"].shape != c["x"].shape or v["dgamma"].shape != c["gamma"].shape or \
                v["dbeta"].shape != c["beta"].shape:
            score.fail(f"{BACKWARD} returned gradients of the wrong shapes")
            continue
        numeric = (v["plus"] - v["minus"]) / (2 * c["h"])
        analytic = float((v["dx"].double() * c["vx"]).sum() + (v["dgamma"].double() * c["vgamma"]).sum()
                         + (v["dbeta"].double() * c["vbeta"]).sum())
        score.check(abs(numeric - analytic) <= 1e-5 * max(1.0, abs(numeric)),
                    f"your backward disagrees with a numeric derivative of your own forward "
                    f"({_kind(c)} inputs)")
    score.done()


@points(1, functions=(FORWARD,))
def test_bn_dtypes_and_device(sub):
    built = _dtype_cases()
    results = run_forward(sub, "dtypes", built)
    score = Score()
    for i in range(0, len(built), 2):
        r32, r64 = results[i], results[i + 1]
        if r32["error"] or r64["error"]:
            score.fail(r32["error"] or r64["error"])
            continue
        o32, o64 = r32["value"]["out"], r64["value"]["out"]
        score.check(o32.dtype == torch.float32 and o64.dtype == torch.float64,
                    f"out should have x's dtype (got {o32.dtype} for float32 and {o64.dtype} for float64)")
        score.check(o32.shape == o64.shape and torch.allclose(o32.double(), o64, rtol=1e-4, atol=1e-4),
                    "out in float32 is far from out in float64 on the same input")
        score.check(r32["value"]["running_var"].dtype == torch.float32,
                    "the running statistics should keep their dtype (float32 here)")
    cuda = sub.run("batchnorm.forward", cases=built[:2], device="cuda")
    if cuda["cuda"]:
        for r, cpu in zip(cuda["results"], results[:2], strict=False):
            if r["error"] is not None:
                score.fail(f"on CUDA: {r['error']}")
                continue
            score.check(r["value"]["device"] == "cuda",
                        "out is on the CPU for a CUDA input: create new tensors on x.device")
            if cpu["error"] is None:
                same = torch.allclose(r["value"]["out"].double(), cpu["value"]["out"].double(), rtol=1e-4,
                                      atol=1e-4)
                score.check(same, "different results on CUDA and on the CPU")
    score.done()
