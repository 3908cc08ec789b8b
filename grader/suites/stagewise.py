"""Visible tests of the ``stagewise`` assignment: ``stagewise_sgd(w0, grad_fn, stage_lrs, iters_per_stage)``.

The reference is ``tricksref.schedules.stagewise_sgd``: for each stage s, T updates
``w <- w - stage_lrs[s] * grad_fn(w, step)``, ``step`` counting from 0 over all stages; the result is the list
of the S*T iterates after each update, ``w0`` untouched. ``grad_fn`` is built from data on both sides
(``grader.probes.stagewise.make_grad_fn``).
"""

from __future__ import annotations

import torch

from grader.probes.stagewise import make_grad_fn
from grader.suite import Score, memo, points

NAME = "stagewise_sgd"
RTOL, ATOL = 1e-9, 1e-11


def quadratic(d: int, seed: int, *, offsets: int = 1, noise: float = 0.0, dtype=torch.float64) -> dict:
    """A well-conditioned quadratic's gradient spec in d dimensions (eigenvalues in [0.5, 1.5])."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    A = q @ torch.diag(torch.rand(d, generator=g, dtype=torch.float64) + 0.5) @ q.T
    c = torch.randn(d, generator=g, dtype=torch.float64)
    off = noise * torch.randn(offsets, d, generator=g, dtype=torch.float64)
    return {"A": A.to(dtype), "c": c.to(dtype), "offsets": off.to(dtype)}


def make_case(w0, spec, stage_lrs, T) -> dict:
    return {"w0": w0, "spec": spec, "stage_lrs": list(stage_lrs), "T": T}


def reference(c: dict) -> list:
    from tricksref.schedules import stagewise_sgd

    return stagewise_sgd(c["w0"].clone(), make_grad_fn(c["spec"]), c["stage_lrs"], c["T"])


def run(sub, key, cases):
    return memo(sub, ("stagewise.run", key), lambda: sub.run("stagewise.run", cases=cases)["results"])


def iterates_problem(r: dict, c: dict, expected: list) -> str | None:
    """None if the iterates match the reference, else what is wrong (never the values of a hidden case)."""
    if r["error"] is not None:
        return r["error"]
    got = r["value"]["iterates"]
    T = c["T"]
    if len(got) != len(expected):
        extra = (": return the iterate after each update, without w0" if len(got) == len(expected) + 1
                 else "")
        return f"{NAME} returned a number of iterates other than S*T (one per update){extra}"
    for w, e in zip(got, expected, strict=False):
        if w.shape != e.shape:
            return f"{NAME} returned iterates whose shape differs from w0's"
    if r["value"]["aliased"] and len(got) > 1:
        return (f"{NAME} returned the same tensor several times (updated in place): append a new tensor at "
                f"each step (w = w - eta * g, or w.clone())")
    wrong = [k for k, (w, e) in enumerate(zip(got, expected, strict=False))
             if not (w.dtype == e.dtype and torch.allclose(w, e, rtol=RTOL, atol=ATOL))]
    if not wrong:
        return None
    if any(w.dtype != e.dtype for w, e in zip(got, expected, strict=False)):
        return f"{NAME} returned iterates of dtype {got[0].dtype}, expected w0's dtype {expected[0].dtype}"
    first = wrong[0]
    t = first % T
    where = ("the first step" if first == 0 else "the first step of a stage after the first" if t == 0
             else "the last step of a stage" if t == T - 1 else "a step inside a stage")
    return (f"the iterates go wrong from {where}: w_(t+1) = w_t - eta_s * grad_fn(w_t, step) with eta_s of "
            f"stage s")


# -------------------------------------------------------------------------------------------- visible cases

_g = torch.Generator().manual_seed(4)
SMALL = make_case(torch.randn(3, generator=_g, dtype=torch.float64), quadratic(3, 1), [0.5, 0.1], 3)
ONE_STAGE = make_case(torch.randn(2, 2, generator=_g, dtype=torch.float64), quadratic(4, 2), [0.3], 4)
STEPS = make_case(torch.zeros(2, dtype=torch.float64), quadratic(2, 3), [0.2, 0.1, 0.05], 2)
VISIBLE = [SMALL, ONE_STAGE, STEPS]


def _visible(sub):
    return run(sub, "visible", VISIBLE)


@points(1, functions=(NAME,))
def test_stagewise_returns_all_iterates(sub):
    r = _visible(sub)[0]
    if r["error"] is not None:
        raise AssertionError(r["error"])
    got = r["value"]["iterates"]
    S, T = len(SMALL["stage_lrs"]), SMALL["T"]
    assert len(got) == S * T, (f"with S={S} stages of T={T} steps {NAME} should return S*T={S * T} iterates "
                               f"(the iterate after each update, without w0), got {len(got)}")
    assert all(w.shape == SMALL["w0"].shape for w in got), \
        f"every iterate should have w0's shape {tuple(SMALL['w0'].shape)}"


@points(1, functions=(NAME,))
def test_stagewise_single_stage_is_sgd(sub):
    r = _visible(sub)[1]
    problem = iterates_problem(r, ONE_STAGE, reference(ONE_STAGE))
    assert problem is None, f"one stage is plain SGD, w_(t+1) = w_t - eta * G_t: {problem} (visible case)"


@points(1, functions=(NAME,))
def test_stagewise_small(sub):
    r = _visible(sub)[0]
    problem = iterates_problem(r, SMALL, reference(SMALL))
    assert problem is None, f"{problem} (visible case: 2 stages of 3 steps, step sizes 0.5 then 0.1)"


def steps_problem(r: dict, c: dict) -> str | None:
    if r["error"] is not None:
        return r["error"]
    steps = r["value"]["steps"]
    S, T = len(c["stage_lrs"]), c["T"]
    want = list(range(S * T))
    if steps == want:
        return None
    if len(steps) != S * T:
        return "grad_fn was not called exactly once per update (S*T times in all)"
    if steps == [t for _ in range(S) for t in range(T)]:
        return ("the step counter restarts at each stage: step must count from 0 over all stages "
                "(0 .. S*T - 1)")
    if steps == [k + 1 for k in want]:
        return "the step counter starts at 1: it must count from 0 (0 .. S*T - 1)"
    return "grad_fn must be called with step = 0, 1, ..., S*T - 1, in order, counting over all stages"


@points(1, functions=(NAME,))
def test_stagewise_step_counter_small(sub):
    problem = steps_problem(_visible(sub)[2], STEPS)
    assert problem is None, f"{problem} (visible case: 3 stages of 2 steps)"


@points(1, functions=(NAME,))
def test_stagewise_w0_unmodified(sub):
    score = Score()
    for r in _visible(sub):
        if r["error"] is not None:
            score.fail(r["error"])
        else:
            score.check(not r["value"]["w0_modified"],
                        f"{NAME} modified w0 in place: start from a copy (w = w0.clone()) or use w = w - ...")
    score.done()
