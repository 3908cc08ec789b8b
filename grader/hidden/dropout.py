"""Hidden tests of the ``dropout`` assignment: inverted scaling on random inputs, p = 1, the statistics of the
mask (keep rate, independence), the generator, the backward, dtypes.

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

The real mistakes (the drop-mask returned instead of the keep-mask, p used as the keep probability, one mask
shared by all rows) move these statistics by tens to hundreds of standard deviations.
"""

from __future__ import annotations

import functools
import math

import torch

from grader.suite import Partial, Score, cases, points
from grader.suites.dropout import (
    BACKWARD,
    FORWARD,
    expected_from_mask,
    mask_problem,
    reference_deterministic,
    run_backward,
    run_forward,
    scaling_problem,
)

Z_MAX = 5.5  # two-sided normal tail 3.8e-8 per check


def _strategy():
    from hypothesis import strategies as st

    return st.fixed_dictionaries({
        "shape": st.one_of(
            st.tuples(st.integers(1, 8), st.integers(1, 16)),
            st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 5), st.integers(1, 5))),
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
    built.append({"dout": _x((4, 3), 11, torch.float32), "mask": torch.rand(4, 3) >= 0.5, "p": 0.5})
    built.append({"dout": _x((2, 3, 2, 2), 12), "mask": None, "p": 0.3})
    built.append({"dout": _x((3, 4), 13), "mask": torch.zeros(3, 4, dtype=torch.bool), "p": 1.0})
    return built


@functools.cache
def _dtype_cases():
    out = []
    for dtype in (torch.float32, torch.float64):
        out.append({"x": _x((5, 7), 21, dtype), "p": 0.4, "training": True, "seed": 22})
    return out


def prepare() -> None:
    _scaling_cases(), _stat_cases(), _generator_cases(), _p1_cases(), _backward_cases(), _dtype_cases()


@points(2, functions=(FORWARD,))
def test_dropout_inverted_scaling(sub):
    built = _scaling_cases()
    results = run_forward(sub, "scaling", built)
    problems = [scaling_problem(r, c["x"], c["p"]) for c, r in zip(built, results, strict=True)]
    bad = [p for p in problems if p is not None]
    if bad:
        raise Partial(1 - len(bad) / len(built), f"{bad[0]} ({len(bad)} of {len(built)} random inputs wrong)")


def _z_keep(mask: torch.Tensor, p: float) -> float:
    m = mask.numel()
    kept = int(mask.sum())
    return (kept - m * (1 - p)) / math.sqrt(m * p * (1 - p))


@points(2, functions=(FORWARD,))
def test_dropout_keep_rate(sub):
    """About a fraction 1 - p of the units is kept (a z-test per p; false-failure rate below 1.2e-7)."""
    built = _stat_cases()
    score = Score()
    for c, r in zip(built, run_forward(sub, "stats", built), strict=False):
        problem = mask_problem(r, c["x"])
        if problem is None:
            z = _z_keep(r["value"]["mask"], c["p"])
            if abs(z) > Z_MAX:
                share = float(r["value"]["mask"].double().mean())
                if abs(share - c["p"]) < 0.05:
                    problem = (f"with p = {c['p']} your mask keeps about a fraction p of the units: p is the "
                               f"probability to DROP a unit, and mask is True where a unit is KEPT")
                else:
                    problem = (f"with p = {c['p']} your mask keeps a fraction {share:.2f} of the units, "
                               f"expected about 1 - p = {1 - c['p']:.2f}")
        score.check(problem is None, problem or "")
    score.done()


@points(1, functions=(FORWARD,))
def test_dropout_independent_units(sub):
    """Every unit is dropped independently: no row or column pattern, no correlation between neighbours."""
    built = _stat_cases()
    score = Score()
    for c, r in zip(built, run_forward(sub, "stats", built), strict=False):
        problem = mask_problem(r, c["x"])
        if problem is None:
            mask = r["value"]["mask"]
            rows_equal = bool((mask[1:] == mask[:-1]).all(1).any())
            cols_equal = bool((mask[:, 1:] == mask[:, :-1]).all(0).any())
            flat = mask.flatten().double()
            a, b = flat[:-1] - flat[:-1].mean(), flat[1:] - flat[1:].mean()
            denom = float(a.norm() * b.norm())
            corr = float((a * b).sum()) / denom if denom > 0 else 1.0
            if rows_equal or cols_equal:
                problem = ("your mask repeats the same pattern across rows or columns: draw one independent "
                           "random number per unit, with the full shape of x")
            elif abs(corr) * math.sqrt(flat.numel() - 1) > Z_MAX:
                problem = "neighbouring units of your mask are correlated: draw each unit independently"
        score.check(problem is None, problem or "")
    score.done()


@points(1, functions=(FORWARD,))
def test_dropout_uses_generator(sub):
    """The same seeded generator gives the same mask, another seed another mask; None works too."""
    built = _generator_cases()
    results = run_forward(sub, "generator", built)
    problems = [mask_problem(r, c["x"]) for c, r in zip(built, results, strict=False)]
    bad = [p for p in problems if p is not None]
    if bad:
        raise AssertionError(bad[0])
    m7a, m7b, m8 = (r["value"]["mask"] for r in results[:3])
    assert torch.equal(m7a, m7b), ("two calls with generators seeded alike gave different masks: draw the "
                                   "random numbers from the generator you are given (generator=generator)")
    assert not torch.equal(m7a, m8), ("generators with different seeds gave the same mask: draw the random "
                                      "numbers from the generator you are given, and do not reseed")


@points(1, functions=(FORWARD, BACKWARD))
def test_dropout_p1_drops_everything(sub):
    built = _p1_cases()
    score = Score()
    for c, r in zip(built, run_forward(sub, "p1", built), strict=False):
        problem = mask_problem(r, c["x"])
        if problem is None:
            out, mask = r["value"]["out"], r["value"]["mask"]
            if not torch.isfinite(out).all():
                problem = ("with p = 1 out has NaN or inf: 1 / (1 - p) is infinite, so handle p = 1 apart "
                           "(every unit is dropped, out is all zeros)")
            elif not torch.equal(out, reference_deterministic(c["x"], 1.0, True)):
                problem = "with p = 1 every unit is dropped: out must be all zeros"
            elif bool(mask.any()):
                problem = "with p = 1 every unit is dropped: the keep-mask must be all False"
        score.check(problem is None, problem or "")
    last = _backward_cases()[-1:]
    r = run_backward(sub, "hidden", _backward_cases())[-1]
    if r["error"] is not None:
        score.fail(r["error"])
    else:
        dx = r["value"]["dx"]
        score.check(dx.shape == last[0]["dout"].shape and torch.isfinite(dx).all() and not bool(dx.any()),
                    "with p = 1 dropout_backward must return zeros (no NaN from 1 / (1 - p))")
    score.done()


@points(2, functions=(BACKWARD,))
def test_dropout_backward_values(sub):
    built = _backward_cases()[:-1]  # p = 1 is its own test
    score = Score()
    for c, r in zip(built, run_backward(sub, "hidden", _backward_cases()), strict=False):
        if r["error"] is not None:
            score.fail(r["error"])
            continue
        dx = r["value"]["dx"]
        if c["mask"] is None:
            score.check(dx.shape == c["dout"].shape and torch.equal(dx, c["dout"]),
                        "with mask None dropout_backward must return dout unchanged")
            continue
        want = expected_from_mask(c["dout"], c["mask"], c["p"])
        if dx.shape != want.shape or dx.dtype != want.dtype:
            score.fail("dx should have dout's shape and dtype")
        elif c["p"] > 0 and torch.allclose(dx, expected_from_mask(c["dout"], c["mask"], 0.0)):
            score.fail("dx is not rescaled: dx = dout * mask / (1 - p), as in the forward")
        else:
            score.check(torch.allclose(dx, want, rtol=1e-6, atol=1e-7), "dx must be dout * mask / (1 - p)")
    score.done()


@points(1, functions=(FORWARD,))
def test_dropout_dtypes_and_device(sub):
    built = _dtype_cases()
    score = Score()
    for c, r in zip(built, run_forward(sub, "dtypes", built), strict=False):
        problem = scaling_problem(r, c["x"], c["p"])
        score.check(problem is None, f"{problem} ({c['x'].dtype} input)")
    cuda = sub.run("dropout.forward", cases=built, device="cuda")
    if cuda["cuda"]:
        for c, r in zip(built, cuda["results"], strict=False):
            problem = scaling_problem(r, c["x"], c["p"])
            if problem is None and r["value"]["device"] != "cuda":
                problem = "out is on the CPU for a CUDA input: create the mask on x.device"
            score.check(problem is None, f"on CUDA: {problem}")
    score.done()
