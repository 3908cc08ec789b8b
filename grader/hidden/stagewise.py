"""Hidden tests of the ``stagewise`` assignment: random dimensions, stages and step sizes; the step counter;
the first and last step of every stage; iterates that are copies; dtypes."""

from __future__ import annotations

import functools

import torch

from grader.suite import Partial, Score, cases, points
from grader.suites.stagewise import (
    NAME,
    iterates_problem,
    make_case,
    quadratic,
    reference,
    run,
    steps_problem,
)


def _strategy():
    from hypothesis import strategies as st

    return st.fixed_dictionaries({
        "shape": st.sampled_from([(1,), (3,), (2, 2), (5,)]),
        "lrs": st.lists(st.sampled_from([1.0, 0.5, 0.3, 0.1, 0.03, 0.01]), min_size=1, max_size=4),
        "T": st.integers(1, 5),
        "seed": st.integers(0, 2**31 - 1),
    })


def _build(p: dict, *, noise: float = 0.0, dtype=torch.float64) -> dict:
    g = torch.Generator().manual_seed(p["seed"])
    w0 = torch.randn(p["shape"], generator=g, dtype=torch.float64).to(dtype)
    d = w0.numel()
    spec = quadratic(d, p["seed"] + 1, offsets=7, noise=noise, dtype=dtype)
    return make_case(w0, spec, p["lrs"], p["T"])


@functools.cache
def _iterate_cases():
    built = [_build(p) for p in cases(_strategy(), 10)]
    return built, [reference(c) for c in built]


@functools.cache
def _step_cases():
    return [_build(p, noise=1.0) for p in cases(_strategy(), 5, salt=6)]


@functools.cache
def _boundary_cases():
    """A constant gradient (A = 0, offsets = 1): each update moves w by exactly -eta_s, so each step shows
    which step size it used."""
    built = []
    for lrs, T in (([0.5, 0.1, 0.02], 3), ([1.0, 0.25], 1), ([0.3, 0.2, 0.1, 0.05], 2)):
        spec = {"A": torch.zeros(2, 2, dtype=torch.float64), "c": torch.zeros(2, dtype=torch.float64),
                "offsets": torch.ones(1, 2, dtype=torch.float64)}
        built.append(make_case(torch.zeros(2, dtype=torch.float64), spec, lrs, T))
    return built


@functools.cache
def _dtype_cases():
    out = []
    for p in cases(_strategy(), 2, salt=7):
        out += [_build(p, dtype=torch.float32), _build(p)]
    return out


def prepare() -> None:
    _iterate_cases(), _step_cases(), _boundary_cases(), _dtype_cases()


@points(3, functions=(NAME,))
def test_stagewise_iterates(sub):
    built, expected = _iterate_cases()
    bad = [p for c, r, e in zip(built, run(sub, "iterates", built), expected, strict=False)
           if (p := iterates_problem(r, c, e)) is not None]
    if bad:
        raise Partial(1 - len(bad) / len(built), f"{bad[0]} ({len(bad)} of {len(built)} random cases wrong)")


@points(1, functions=(NAME,))
def test_stagewise_step_counter(sub):
    built = _step_cases()
    score = Score()
    for c, r in zip(built, run(sub, "steps", built), strict=False):
        problem = steps_problem(r, c)
        score.check(problem is None, problem or "")
    score.done()


@points(2, functions=(NAME,))
def test_stagewise_stage_boundaries(sub):
    """The first and the last step of every stage use that stage's step size."""
    built = _boundary_cases()
    score = Score()
    for c, r in zip(built, run(sub, "boundaries", built), strict=False):
        if r["error"] is not None:
            score.fail(r["error"])
            continue
        got = r["value"]["iterates"]
        S, T = len(c["stage_lrs"]), c["T"]
        if len(got) != S * T or r["value"]["aliased"]:
            score.fail(iterates_problem(r, c, reference(c)) or "wrong iterates")
            continue
        prev = c["w0"]
        for k, w in enumerate(got):
            s, t = divmod(k, T)
            used = float((prev - w).mean())  # the gradient is all ones: w moved by -eta
            prev = w
            if t not in (0, T - 1):
                continue
            which = "first" if t == 0 else "last"
            score.check(abs(used - c["stage_lrs"][s]) <= 1e-12,
                        f"the {which} step of stage {s + 1} used the wrong step size: stage s runs its T "
                        f"steps with stage_lrs[s]")
    score.done()


@points(1, functions=(NAME,))
def test_stagewise_iterates_are_copies(sub):
    """Each iterate is its own tensor: updating w in place after appending it changes the list."""
    built, _ = _iterate_cases()
    score = Score()
    for _c, r in zip(built, run(sub, "iterates", built), strict=False):
        if r["error"] is not None:
            score.fail(r["error"])
        else:
            score.check(not r["value"]["aliased"],
                        f"{NAME} returned the same tensor several times (updated in place after appending "
                        f"it): append a new tensor at each step")
    score.done()


@points(1, functions=(NAME,))
def test_stagewise_dtypes_and_device(sub):
    built = _dtype_cases()
    results = run(sub, "dtypes", built)
    score = Score()
    for i in range(0, len(built), 2):
        r32, r64 = results[i], results[i + 1]
        if r32["error"] or r64["error"]:
            score.fail(r32["error"] or r64["error"])
            continue
        its32, its64 = r32["value"]["iterates"], r64["value"]["iterates"]
        score.check(bool(its32) and all(w.dtype == torch.float32 for w in its32)
                    and all(w.dtype == torch.float64 for w in its64),
                    "the iterates should keep w0's dtype (float32 for a float32 w0, float64 for float64)")
        score.check(len(its32) == len(its64) and all(
            a.shape == b.shape and torch.allclose(a.double(), b, rtol=1e-4, atol=1e-5)
            for a, b in zip(its32, its64, strict=False)),
            "the iterates for a float32 w0 are far from those for the same float64 w0")
    cuda = sub.run("stagewise.run", cases=built[:1], device="cuda")
    if cuda["cuda"]:
        r = cuda["results"][0]
        if r["error"] is not None:
            score.fail(f"on CUDA: {r['error']}")
        else:
            score.check(r["value"]["device"] == "cuda", "the iterates left the GPU: keep them on w0's device")
    score.done()
