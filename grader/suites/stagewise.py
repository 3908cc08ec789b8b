"""Visible tests of the ``stagewise`` assignment: ``stagewise_sgd(w0, grad_fn, stage_lrs, iters_per_stage)``.

For each stage s, T updates ``w <- w - stage_lrs[s] * grad_fn(w, step)``, ``step`` counting from 0 over all
stages; the result is the list of the S*T iterates after each update, ``w0`` untouched. ``grad_fn`` is built
from data on both sides (``grader.probes.stagewise.make_grad_fn``); where its offsets depend on the step, the
iterates themselves show which steps the student passed. The expected iterates travel as data.
"""

from __future__ import annotations

import torch

from grader.expected import load
from grader.replies import ECHO, OUTS, Spec
from grader.suite import Probe, Score, explain, points, probe

NAME = "stagewise_sgd"
RTOL, ATOL = 1e-9, 1e-11

RUN = Probe("stagewise.run", Spec({"iterates": OUTS, "w0": ECHO("w0")}), (NAME,))


def quadratic(d: int, seed: int, *, offsets: int = 1, noise: float = 0.0, dtype=torch.float64) -> dict:
    """A well-conditioned quadratic's gradient spec in d dimensions (eigenvalues in [0.5, 1.5]); with
    ``noise``, ``offsets`` random offsets, one per step modulo their number."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    A = q @ torch.diag(torch.rand(d, generator=g, dtype=torch.float64) + 0.5) @ q.T
    c = torch.randn(d, generator=g, dtype=torch.float64)
    off = noise * torch.randn(offsets, d, generator=g, dtype=torch.float64)
    return {"A": A.to(dtype), "c": c.to(dtype), "offsets": off.to(dtype)}


def make_case(w0, spec, stage_lrs, T) -> dict:
    return {"w0": w0, "spec": spec, "stage_lrs": list(stage_lrs), "T": T}


def same(got: list, want: list, *, rtol=RTOL, atol=ATOL) -> bool:
    return len(got) == len(want) and all(
        isinstance(w, torch.Tensor) and w.shape == e.shape and w.dtype == e.dtype
        and torch.allclose(w, e, rtol=rtol, atol=atol) for w, e in zip(got, want, strict=True))


def iterates_problem(sub, r, c: dict, expected: list, variants: dict | None = None) -> str | None:
    """None if the iterates match ``expected``, else what is wrong (never the values of a hidden case);
    ``variants``: the iterates of known mistakes (``grader.reference.stagewise.variant``) to recognise."""
    if not r.ok:
        return explain(sub, r.error)
    got = r["iterates"]
    if not isinstance(got, list):
        what = "None" if got is None else "a tensor" if isinstance(got, torch.Tensor) else f"a {got['type']}"
        return f"{NAME} returned {what}: return the list of the S*T iterates"
    T = c["T"]
    if len(got) != len(expected):
        extra = (": return the iterate after each update, without w0" if len(got) == len(expected) + 1
                 else "")
        return f"{NAME} returned a number of iterates other than S*T (one per update){extra}"
    if not all(isinstance(w, torch.Tensor) for w in got):
        return f"{NAME} returned a list holding something other than tensors"
    if any(w.shape != e.shape for w, e in zip(got, expected, strict=True)):
        return f"{NAME} returned iterates whose shape differs from w0's"
    if any(w.dtype != e.dtype for w, e in zip(got, expected, strict=True)):
        return f"{NAME} returned iterates of dtype {got[0].dtype}, expected w0's dtype {expected[0].dtype}"
    if same(got, expected):
        return None
    if len(got) > 1 and all(torch.equal(w, got[-1]) for w in got) and \
            not all(torch.equal(e, expected[-1]) for e in expected):
        return (f"{NAME} returned the same tensor several times (updated in place after appending it): "
                f"append a new tensor at each step (w = w - eta * g, or w.clone())")
    hints = {"restart": "the step counter restarts at each stage: step must count from 0 over all stages "
                        "(0 .. S*T - 1)",
             "from1": "the step counter starts at 1: it must count from 0 (0 .. S*T - 1)",
             "first_lr": "every stage uses the first step size: stage s uses stage_lrs[s]"}
    for kind, text in hints.items():
        if variants and kind in variants and same(got, variants[kind]):
            return text
    first = next(k for k, (w, e) in enumerate(zip(got, expected, strict=True))
                 if not torch.allclose(w, e, rtol=RTOL, atol=ATOL))
    t = first % T
    where = ("the first step" if first == 0 else "the first step of a stage after the first" if t == 0
             else "the last step of a stage" if t == T - 1 else "a step inside a stage")
    return (f"the iterates go wrong from {where}: w_(t+1) = w_t - eta_s * grad_fn(w_t, step) with eta_s of "
            f"stage s and step counting the updates from 0")


# -------------------------------------------------------------------------------------------- visible cases

_g = torch.Generator().manual_seed(4)
SMALL = make_case(torch.randn(3, generator=_g, dtype=torch.float64), quadratic(3, 1), [0.5, 0.1], 3)
ONE_STAGE = make_case(torch.randn(2, 2, generator=_g, dtype=torch.float64), quadratic(4, 2), [0.3], 4)
# offsets that change with the step: the iterates show which steps grad_fn was given
STEPS = make_case(torch.zeros(2, dtype=torch.float64), quadratic(2, 3, offsets=8, noise=1.0),
                  [0.2, 0.1, 0.05], 2)
VISIBLE = [SMALL, ONE_STAGE, STEPS]


def visible_results(sub) -> tuple[list, list[str | None]]:
    results = probe(sub, RUN, VISIBLE, key="visible")
    data = load("stagewise")
    problems = [iterates_problem(sub, r, c, e, data["variants"] if c is STEPS else None)
                for c, r, e in zip(VISIBLE, results, data["iterates"], strict=True)]
    return results, problems


@points(1, functions=(NAME,))
def test_stagewise_returns_all_iterates(sub):
    """S*T iterates of w0's shape, the first one w0 - eta_1 * grad_fn(w0, 0)."""
    results, _ = visible_results(sub)
    r = results[0]
    if not r.ok:
        raise AssertionError(explain(sub, r.error))
    got, S, T = r["iterates"], len(SMALL["stage_lrs"]), SMALL["T"]
    assert isinstance(got, list) and len(got) == S * T, (
        f"with S={S} stages of T={T} steps {NAME} should return a list of S*T={S * T} iterates (the iterate "
        f"after each update, without w0)")
    assert all(isinstance(w, torch.Tensor) and w.shape == SMALL["w0"].shape for w in got), \
        f"every iterate should be a tensor of w0's shape {tuple(SMALL['w0'].shape)}"
    first = load("stagewise")["iterates"][0][0]
    assert torch.allclose(got[0].double(), first, rtol=RTOL, atol=ATOL), \
        "the first iterate should be w0 - stage_lrs[0] * grad_fn(w0, 0)"


@points(1, functions=(NAME,))
def test_stagewise_single_stage_is_sgd(sub):
    problem = visible_results(sub)[1][1]
    assert problem is None, f"one stage is plain SGD, w_(t+1) = w_t - eta * G_t: {problem} (visible case)"


@points(1, functions=(NAME,))
def test_stagewise_small(sub):
    problem = visible_results(sub)[1][0]
    assert problem is None, f"{problem} (visible case: 2 stages of 3 steps, step sizes 0.5 then 0.1)"


@points(1, functions=(NAME,))
def test_stagewise_step_counter_small(sub):
    """Offsets that change with the step: only the right steps 0 .. S*T - 1 give the right iterates."""
    problem = visible_results(sub)[1][2]
    assert problem is None, f"{problem} (visible case: 3 stages of 2 steps, a gradient that depends on step)"


@points(1, functions=(NAME,))
def test_stagewise_w0_unmodified(sub):
    """Property: on the visible cases whose iterates are right, w0 is left as it was."""
    results, problems = visible_results(sub)
    score = Score()
    for c, r, problem in zip(VISIBLE, results, problems, strict=True):
        score.check_if(problem is None, problem is None and torch.equal(r["w0"], c["w0"]),
                       f"{NAME} modified w0 in place: start from a copy (w = w0.clone()) or use w = w - ...",
                       why_not=problem or "")
    score.done(nothing_counted="not checked: no visible case gives right iterates yet")
