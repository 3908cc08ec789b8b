"""Hidden tests of the ``stagewise`` assignment: random dimensions, stages and step sizes; the step counter;
the first and last step of every stage; iterates that are copies; dtypes."""

from __future__ import annotations

import functools

import torch

from grader.reference.stagewise import reference, variants
from grader.suite import Partial, Score, cases, explain, points, probe
from grader.suites.stagewise import NAME, RUN, iterates_problem, make_case, quadratic


def _strategy(*, steps: bool = False):
    from hypothesis import strategies as st

    return st.fixed_dictionaries({
        "shape": st.sampled_from([(1,), (3,), (2, 2), (5,)]),
        # several stages and steps where the step counter is tested: one stage of one step shows nothing
        "lrs": st.lists(st.sampled_from([1.0, 0.5, 0.3, 0.1, 0.03, 0.01]), min_size=2 if steps else 1,
                        max_size=4),
        "T": st.integers(2, 5) if steps else st.integers(1, 5),
        "seed": st.integers(0, 2**31 - 1),
    })


def _build(p: dict, *, noise: float = 0.0, dtype=torch.float64) -> dict:
    g = torch.Generator().manual_seed(p["seed"])
    w0 = torch.randn(p["shape"], generator=g, dtype=torch.float64).to(dtype)
    spec = quadratic(w0.numel(), p["seed"] + 1, offsets=23, noise=noise, dtype=dtype)
    return make_case(w0, spec, p["lrs"], p["T"])


@functools.cache
def _iterate_cases():
    built = [_build(p, noise=0.1) for p in cases(_strategy(), 10)]
    return built, [reference(c) for c in built], [variants(c) for c in built]


@functools.cache
def _step_cases():
    built = [_build(p, noise=1.0) for p in cases(_strategy(steps=True), 5, salt=6)]
    return built, [reference(c) for c in built], [variants(c) for c in built]


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
    built = [_build(p, dtype=torch.float32) for p in cases(_strategy(), 3, salt=7)]
    as64 = [dict(c, w0=c["w0"].double(), spec={k: v.double() for k, v in c["spec"].items()}) for c in built]
    return built, [reference(c) for c in as64]


def prepare() -> None:
    _iterate_cases(), _step_cases(), _boundary_cases(), _dtype_cases()


def _problems(sub, key, built, expected, wrong) -> list[str | None]:
    results = probe(sub, RUN, built, key=key)
    return [iterates_problem(sub, r, c, e, v) for c, r, e, v in zip(built, results, expected, wrong,
                                                                     strict=True)]


@points(3, functions=(NAME,))
def test_stagewise_iterates(sub):
    built, expected, wrong = _iterate_cases()
    bad = [p for p in _problems(sub, "iterates", built, expected, wrong) if p is not None]
    if bad:
        raise Partial(1 - len(bad) / len(built), f"{bad[0]} ({len(bad)} of {len(built)} random cases wrong)")


@points(1, functions=(NAME,))
def test_stagewise_step_counter(sub):
    """Gradients whose offsets change with the step: the iterates are right only for steps 0 .. S*T - 1."""
    built, expected, wrong = _step_cases()
    score = Score()
    for problem in _problems(sub, "steps", built, expected, wrong):
        score.check(problem is None, problem or "")
    score.done()


@points(2, functions=(NAME,))
def test_stagewise_stage_boundaries(sub):
    """The first and the last step of every stage use that stage's step size (read off the iterates: with a
    gradient of ones, each update moves w by -eta)."""
    built = _boundary_cases()
    score = Score()
    for c, r in zip(built, probe(sub, RUN, built, key="boundaries"), strict=True):
        problem = iterates_problem(sub, r, c, reference(c))
        got = r["iterates"] if r.ok else None
        S, T = len(c["stage_lrs"]), c["T"]
        if not (isinstance(got, list) and len(got) == S * T
                and all(isinstance(w, torch.Tensor) and w.shape == c["w0"].shape for w in got)):
            score.fail(problem or "wrong iterates", weight=2 * S)
            continue
        prev = c["w0"]
        for k, w in enumerate(got):
            s, t = divmod(k, T)
            used = float((prev.double() - w.double()).mean())
            prev = w
            for which in (("first",) if t == 0 else ()) + (("last",) if t == T - 1 else ()):
                score.check(abs(used - c["stage_lrs"][s]) <= 1e-12,
                            f"the {which} step of stage {s + 1} used the wrong step size: stage s runs its T "
                            f"steps with stage_lrs[s]")
    score.done()


@points(1, functions=(NAME,))
def test_stagewise_iterates_are_copies(sub):
    """Each iterate is its own tensor: appending w and then updating it in place makes every entry the last
    iterate (read off the values: entries that are all equal where the right ones differ)."""
    built, expected, wrong = _iterate_cases()
    score = Score()
    for c, r, e in zip(built, probe(sub, RUN, built, key="iterates"), expected, strict=True):
        problem = iterates_problem(sub, r, c, e)
        score.check(problem is None, problem or "")
    score.done()


@points(1, functions=(NAME,))
def test_stagewise_dtypes(sub):
    """Property: a float32 w0 gives float32 iterates, as close to the float64 reference as float32 allows
    (counted on the cases whose iterates are right)."""
    built, expected = _dtype_cases()
    score = Score()
    for r, e in zip(probe(sub, RUN, built, key="dtypes"), expected, strict=True):
        got = r["iterates"] if r.ok else None
        right = isinstance(got, list) and len(got) == len(e) and all(
            isinstance(w, torch.Tensor) and w.shape == x.shape and torch.allclose(w.double(), x, rtol=1e-4,
                                                                                  atol=1e-5)
            for w, x in zip(got, e, strict=True))
        why = explain(sub, r.error) if not r.ok else "the iterates for a float32 w0 are wrong"
        score.check_if(right, right and all(w.dtype == torch.float32 for w in got),
                       "the iterates should keep w0's dtype (float32 for a float32 w0)", why_not=why)
    score.done(nothing_counted="not checked: no float32 case gives right iterates")
