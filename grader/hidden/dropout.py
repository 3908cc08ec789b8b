"""Hidden tests of the ``dropout`` assignment: inverted scaling on random inputs, p = 1, the statistics of the
mask (keep rate, independence), the generator, the backward, dtypes.

Every scaling case has at least 128 units, so a correct mask keeps some and drops some (the chance it does
not is below 2e-6 at p = 0.9), and a case shows the scaling. The mask's statistics are properties: they count
only on the cases whose out is right for that mask (a mask drawn well beside an output that ignores it earns
nothing).

False failures. The statistical tests use fixed seeds, so an implementation passes or fails them the same way
every time; over the draw of the mask, a correct implementation fails them with probability below 1e-6:

- keep rate (``test_dropout_keep_rate``): for p in (0.2, 0.5, 0.8), the number of kept units of a (64, 256)
  mask is Binomial(M, 1 - p), M = 16384; the test rejects when |z| > 5.5 (two-sided normal tail 3.8e-8), so
  about 1.1e-7 for the three;
- independence (``test_dropout_independent_units``): two adjacent rows of the mask are equal with probability
  at most 0.68^256 < 1e-42 and two adjacent columns at most 0.68^64 < 2e-11 (255 pairs: 5e-9), and the lag-1
  correlation r of the flattened mask is rejected when |r| sqrt(M - 1) > 5.5 (3.8e-8): about 1.3e-7 for the
  three masks;
- generator (``test_dropout_uses_generator``): two different seeds give the same mask with probability
  2^-16384.
"""

from __future__ import annotations

import functools
import math

import torch

from grader.reference.dropout import backward as reference_backward
from grader.reference.dropout import deterministic
from grader.suite import Partial, Score, cases, points, probe
from grader.suites.dropout import (
    BACKWARD,
    BACKWARD_PROBE,
    FORWARD,
    FORWARD_PROBE,
    backward_problem,
    forward_drops,
    mask_problem,
    scaling_problem,
    uses_mask,
)

Z_MAX = 5.5  # two-sided normal tail 3.8e-8 per check


def _strategy():
    from hypothesis import strategies as st

    return st.fixed_dictionaries({
        "shape": st.one_of(
            st.tuples(st.integers(8, 16), st.integers(16, 32)),
            st.tuples(st.integers(2, 3), st.integers(4, 6), st.integers(4, 5), st.integers(4, 5))),
        "p": st.sampled_from([0.1, 0.25, 0.5, 0.75, 0.9]),
        "seed": st.integers(0, 2**31 - 1),
    })


def _x(shape, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)


@functools.cache
def _scaling_cases():
    return [{"x": _x(p["shape"], p["seed"]), "p": p["p"], "training": True, "seed": p["seed"] + 1}
            for p in cases(_strategy(), 10)]


# the statistical cases: a big enough mask that the keep rate is measured to about 1%
_BIG = (64, 256)
_STAT_PS = (0.2, 0.5, 0.8)


@functools.cache
def _stat_cases():
    x = _x(_BIG, 99, torch.float32)
    return [{"x": x, "p": p, "training": True, "seed": 1000 + i} for i, p in enumerate(_STAT_PS)]


@functools.cache
def _generator_cases():
    x = _x(_BIG, 98, torch.float32)
    return [{"x": x, "p": 0.5, "training": True, "seed": 7},
            {"x": x, "p": 0.5, "training": True, "seed": 7},
            {"x": x, "p": 0.5, "training": True, "seed": 8},
            {"x": x, "p": 0.5, "training": True, "seed": None}]


@functools.cache
def _p1_cases():
    return [{"x": _x((3, 5), 5), "p": 1.0, "training": True, "seed": 5},
            {"x": _x((2, 2, 3, 3), 6), "p": 1.0, "training": True, "seed": 6}]


@functools.cache
def _backward_cases():
    built = []
    for p in cases(_strategy(), 6, salt=5):
        g = torch.Generator().manual_seed(p["seed"])
        mask = torch.rand(p["shape"], generator=g) >= p["p"]
        built.append({"dout": _x(p["shape"], p["seed"] + 2), "mask": mask, "p": p["p"]})
    built.append({"dout": _x((8, 16), 11, torch.float32), "mask": torch.rand(8, 16) >= 0.5, "p": 0.5})
    built.append({"dout": _x((2, 3, 4, 4), 12), "mask": None, "p": 0.3})
    built.append({"dout": _x((3, 4), 13), "mask": torch.zeros(3, 4, dtype=torch.bool), "p": 1.0})
    return built, [reference_backward(c["dout"], c["mask"], c["p"]) for c in built]


@functools.cache
def _dtype_cases():
    return [{"x": _x((8, 24), 21, torch.float32), "p": 0.4, "training": True, "seed": 22},
            {"x": _x((8, 24), 23, torch.float32), "p": 0.6, "training": True, "seed": 24}]


def prepare() -> None:
    _scaling_cases(), _stat_cases(), _generator_cases(), _p1_cases(), _backward_cases(), _dtype_cases()


@points(2, functions=(FORWARD,))
def test_dropout_inverted_scaling(sub):
    built = _scaling_cases()
    results = probe(sub, FORWARD_PROBE, built, key="scaling")
    bad = [p for c, r in zip(built, results, strict=True)
           if (p := scaling_problem(sub, r, c["x"], c["p"])) is not None]
    if bad:
        raise Partial(1 - len(bad) / len(built), f"{bad[0]} ({len(bad)} of {len(built)} random inputs wrong)")


def _z_keep(mask: torch.Tensor, p: float) -> float:
    m = mask.numel()
    kept = int(mask.sum())
    return (kept - m * (1 - p)) / math.sqrt(m * p * (1 - p))


def _stats(sub):
    built = _stat_cases()
    results = probe(sub, FORWARD_PROBE, built, key="stats")
    return [(c, r, uses_mask(sub, r, c["x"])) for c, r in zip(built, results, strict=True)]


@points(2, functions=(FORWARD,))
def test_dropout_keep_rate(sub):
    """Property: about a fraction 1 - p of the units is kept (a z-test per p; false-failure rate below
    1.2e-7), counted on the masks that out follows (``uses_mask``)."""
    score = Score()
    for c, r, problem in _stats(sub):
        ok, message = False, ""
        if problem is None:
            z = _z_keep(r["mask"], c["p"])
            ok = abs(z) <= Z_MAX
            share = float(r["mask"].double().mean())
            if abs(share - c["p"]) < 0.05:
                message = (f"with p = {c['p']} your mask keeps about a fraction p of the units: p is the "
                           f"probability to DROP a unit, and mask is True where a unit is KEPT")
            else:
                message = (f"with p = {c['p']} your mask keeps a fraction {share:.2f} of the units, expected "
                           f"about 1 - p = {1 - c['p']:.2f}")
        score.check_if(problem is None, ok, message, why_not=problem or "")
    score.done(nothing_counted="not checked: out does not follow your mask on these inputs")


@points(1, functions=(FORWARD,))
def test_dropout_independent_units(sub):
    """Property: every unit is dropped independently: no row or column pattern, no correlation between
    neighbours (counted on the masks whose out is right)."""
    score = Score()
    for _c, r, problem in _stats(sub):
        message = ""
        if problem is None:
            mask = r["mask"]
            rows_equal = bool((mask[1:] == mask[:-1]).all(1).any())
            cols_equal = bool((mask[:, 1:] == mask[:, :-1]).all(0).any())
            flat = mask.flatten().double()
            a, b = flat[:-1] - flat[:-1].mean(), flat[1:] - flat[1:].mean()
            denom = float(a.norm() * b.norm())
            corr = float((a * b).sum()) / denom if denom > 0 else 1.0
            if rows_equal or cols_equal:
                message = ("your mask repeats the same pattern across rows or columns: draw one independent "
                           "random number per unit, with the full shape of x")
            elif abs(corr) * math.sqrt(flat.numel() - 1) > Z_MAX:
                message = "neighbouring units of your mask are correlated: draw each unit independently"
        score.check_if(problem is None, not message, message, why_not=problem or "")
    score.done(nothing_counted="not checked: out does not follow your mask on these inputs")


@points(1, functions=(FORWARD,))
def test_dropout_uses_generator(sub):
    """Property: the same seeded generator gives the same mask, another seed another mask; None works too
    (counted when every one of these calls gives a right out for its mask)."""
    built = _generator_cases()
    results = probe(sub, FORWARD_PROBE, built, key="generator")
    problems = [uses_mask(sub, r, c["x"]) for c, r in zip(built, results, strict=True)]
    bad = [p for p in problems if p is not None]
    if bad:
        raise AssertionError(f"not checked: {bad[0]}")
    m7a, m7b, m8 = (r["mask"] for r in results[:3])
    assert torch.equal(m7a, m7b), ("two calls with generators seeded alike gave different masks: draw the "
                                   "random numbers from the generator you are given (generator=generator)")
    assert not torch.equal(m7a, m8), ("generators with different seeds gave the same mask: draw the random "
                                      "numbers from the generator you are given, and do not reseed")


@points(1, functions=(FORWARD, BACKWARD))
def test_dropout_p1_drops_everything(sub):
    """p = 1: everything dropped, forward and backward, without NaN (counted once training mode drops units
    right at other p: an output of zeros would pass it)."""
    gate = forward_drops(sub)
    if gate is not None:
        raise AssertionError(f"p = 1 counts only once training mode drops units of x by its mask at other p "
                             f"(an all-zero output would pass it): {gate}")
    built = _p1_cases()
    score = Score()
    for c, r in zip(built, probe(sub, FORWARD_PROBE, built, key="p1"), strict=True):
        problem = mask_problem(sub, r, c["x"])
        if problem is None:
            out, mask = r["out"], r["mask"]
            if not torch.equal(out, deterministic(c["x"], 1.0, True)):
                problem = "with p = 1 every unit is dropped: out must be all zeros"
            elif bool(mask.any()):
                problem = "with p = 1 every unit is dropped: the keep-mask must be all False"
        elif "NaN" in problem:
            problem = ("with p = 1 out has NaN or inf: 1 / (1 - p) is infinite, so handle p = 1 apart (every "
                       "unit is dropped, out is all zeros)")
        score.check(problem is None, problem or "")
    built, wants = _backward_cases()
    r = probe(sub, BACKWARD_PROBE, built, key="hidden")[-1]
    problem = backward_problem(sub, r, built[-1], wants[-1])
    score.check(problem is None, "with p = 1 dropout_backward must return zeros (no NaN from 1 / (1 - p))"
                if problem and "NaN" in problem else problem or "")
    score.done()


@points(2, functions=(BACKWARD,))
def test_dropout_backward_values(sub):
    """dx for given masks (a value test); the mask None case counts only once a masked case is right."""
    built, wants = _backward_cases()
    results = probe(sub, BACKWARD_PROBE, built, key="hidden")
    score = Score()
    problems = [backward_problem(sub, r, c, w) for c, r, w in zip(built, results, wants, strict=True)]
    any_masked_right = any(p is None for c, p in zip(built, problems, strict=True)
                           if c["mask"] is not None and c["p"] < 1)
    for c, problem in zip(built[:-1], problems[:-1], strict=True):  # p = 1 is its own test
        if c["mask"] is None and not any_masked_right:
            continue
        score.check(problem is None, problem or "")
    score.done()


@points(1, functions=(FORWARD,))
def test_dropout_dtypes(sub):
    """float32 inputs: a float32 out, x / (1 - p) on the kept units of the mask, 0 elsewhere."""
    built = _dtype_cases()
    score = Score()
    for c, r in zip(built, probe(sub, FORWARD_PROBE, built, key="dtypes"), strict=True):
        problem = scaling_problem(sub, r, c["x"], c["p"])
        score.check(problem is None, f"{problem} (float32 input)" if problem else "")
    score.done()
