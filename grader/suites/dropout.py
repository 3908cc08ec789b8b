"""Visible tests of the ``dropout`` assignment: one small seeded input, evaluation mode, p = 0, the backward.

The student writes ``dropout_forward(x, p, training, generator=None) -> (out, mask)`` (inverted dropout:
kept units scaled by 1/(1 - p); ``mask`` the boolean keep-mask, None in evaluation mode) and
``dropout_backward(dout, mask, p) -> dx``. A random mask cannot be compared with a reference's, so the tests
check what defines dropout for the student's own mask: the kept units are x / (1 - p), the others 0, and
the mask keeps some units and drops others. Evaluation mode and p = 0, where returning x is right, count only
for a forward that also drops units correctly (an identity function earns nothing).
"""

from __future__ import annotations

import torch

from grader.expected import load
from grader.replies import ECHO, OUT, Spec
from grader.suite import Probe, Score, explain, points, probe, tensor_problem

FORWARD, BACKWARD = "dropout_forward", "dropout_backward"

FORWARD_PROBE = Probe("dropout.forward", Spec({"out": OUT, "mask": OUT, "x": ECHO("x")}), (FORWARD,))
BACKWARD_PROBE = Probe("dropout.backward", Spec({"dx": OUT, "dout": ECHO("dout")}), (BACKWARD,))


def mask_problem(sub, r, x: torch.Tensor) -> str | None:
    """None if a training result has an out of x's shape and dtype and a boolean keep-mask of x's shape."""
    if not r.ok:
        return explain(sub, r.error)
    problem = tensor_problem(f"{FORWARD}'s out", r["out"], x, "x")
    if problem is not None:
        return problem
    mask = r["mask"]
    if mask is None:
        return f"{FORWARD} returned mask None in training mode: return the boolean keep-mask"
    if not isinstance(mask, torch.Tensor):
        return f"{FORWARD} returned a mask that is a {mask['type']}, not a boolean torch.Tensor"
    if mask.dtype != torch.bool:
        return f"{FORWARD} returned a mask of dtype {mask.dtype}: make it boolean (e.g. rand(...) >= p)"
    if mask.shape != x.shape:
        return f"{FORWARD} returned a mask whose shape differs from x's: one entry per unit of x"
    return None


def scaling_problem(sub, r, x: torch.Tensor, p: float) -> str | None:
    """None if, for the student's own mask, the kept units are x / (1 - p) and the dropped ones 0, and the
    mask keeps some units and drops others (for the cases here, whose masks would otherwise have a chance
    below 1e-15); else a diagnosis."""
    problem = mask_problem(sub, r, x)
    if problem is not None:
        return problem
    out, mask = r["out"], r["mask"]
    if bool(mask.all()) or not bool(mask.any()):
        return (f"your mask {'keeps' if mask.all() else 'drops'} every unit at p = {p}: draw one random "
                f"number per unit and keep the unit with probability 1 - p")
    dropped_zero = bool((out[~mask] == 0).all())
    kept = out[mask]
    if dropped_zero and torch.allclose(kept * (1 - p), x[mask], rtol=1e-6, atol=1e-7):
        return None
    if dropped_zero and torch.allclose(kept, x[mask], rtol=1e-6, atol=1e-7):
        return ("the kept units are not rescaled: inverted dropout multiplies them by 1 / (1 - p) in "
                "training, so that nothing changes at test time")
    if bool((out[mask] == 0).all()) and torch.allclose(out[~mask] * (1 - p), x[~mask], rtol=1e-6, atol=1e-7):
        return "your mask is True where a unit is DROPPED: return the keep-mask (True where a unit is kept)"
    return "out is not x * mask / (1 - p) for the mask you return"


def uses_mask(sub, r, x: torch.Tensor) -> str | None:
    """None if out is the input on the kept units times one positive factor and 0 on the dropped ones, for a
    mask that keeps some units and drops others: the output does depend on the input and the mask (an output
    that ignores them, zeros or the input itself, does not), whether or not the factor is 1 / (1 - p). The
    tests of the mask's statistics and of the modes where x itself is right count only such outputs."""
    problem = mask_problem(sub, r, x)
    if problem is not None:
        return problem
    out, mask = r["out"], r["mask"]
    if bool(mask.all()) or not bool(mask.any()):
        return "your mask keeps every unit or drops every unit"
    if not bool((out[~mask] == 0).all()):
        return "out is not 0 on the units your mask drops"
    kept, xs = out[mask].double(), x[mask].double()
    usable = xs.abs() > 1e-3
    if not bool(usable.any()):
        return "out is not x on the kept units times one factor"
    factor = float((kept[usable] / xs[usable]).median())
    if not (factor > 0 and torch.allclose(kept, xs * factor, rtol=1e-6, atol=1e-7)):
        return "out is not x on the kept units times one factor"
    return None


# -------------------------------------------------------------------------------------------- visible cases

_g = torch.Generator().manual_seed(2)
X_SMALL = torch.randn(8, 16, generator=_g, dtype=torch.float64)
EVAL_CASES = [{"x": X_SMALL, "p": p, "training": False, "seed": 0} for p in (0.5, 0.9)]
P0_CASE = {"x": X_SMALL, "p": 0.0, "training": True, "seed": 1}
SMALL_CASES = [{"x": X_SMALL, "p": 0.5, "training": True, "seed": 3},
               {"x": X_SMALL, "p": 0.25, "training": True, "seed": 4}]
ALL_VISIBLE = EVAL_CASES + [P0_CASE] + SMALL_CASES
MASK_SMALL = torch.rand(8, 16, generator=_g) >= 0.5
DOUT_SMALL = torch.randn(8, 16, generator=_g, dtype=torch.float64)
BACKWARD_SMALL = [{"dout": DOUT_SMALL, "mask": MASK_SMALL, "p": 0.5},
                  {"dout": DOUT_SMALL, "mask": None, "p": 0.5}]
NOTE = "(visible (8, 16) input, p={p})"


def _visible(sub):
    return probe(sub, FORWARD_PROBE, ALL_VISIBLE, key="visible")


def forward_drops(sub) -> str | None:
    """None if the forward drops units of its input by its mask on the small visible training cases (its
    scaling may be wrong), else why not: the gate of the tests where returning x is right."""
    for c, r in zip(SMALL_CASES, _visible(sub)[3:], strict=True):
        problem = uses_mask(sub, r, c["x"])
        if problem is not None:
            return scaling_problem(sub, r, c["x"], c["p"]) or problem
    return None


def _gate(sub, what: str) -> None:
    problem = forward_drops(sub)
    if problem is not None:
        raise AssertionError(f"{what} counts only once training mode drops units of x by its mask (an "
                             f"identity function would pass it): see test_dropout_small ({problem})")


@points(1, functions=(FORWARD,))
def test_dropout_small(sub):
    score = Score()
    for c, r in zip(SMALL_CASES, _visible(sub)[3:], strict=True):
        problem = scaling_problem(sub, r, c["x"], c["p"])
        score.check(problem is None, f"{problem} {NOTE.format(p=c['p'])}")
    score.done()


@points(1, functions=(FORWARD,))
def test_dropout_eval_is_identity(sub):
    _gate(sub, "evaluation mode")
    score = Score()
    for r, want in zip(_visible(sub)[:2], load("dropout")["eval"], strict=True):
        if not r.ok:
            score.fail(explain(sub, r.error))
            continue
        out = r["out"]
        score.check(isinstance(out, torch.Tensor) and out.shape == want.shape and torch.equal(out, want),
                    "in evaluation mode (training=False) out must be x itself: nothing is dropped or "
                    "rescaled")
        score.check(r["mask"] is None, "in evaluation mode mask must be None")
    score.done()


@points(1, functions=(FORWARD,))
def test_dropout_p0_keeps_everything(sub):
    _gate(sub, "p = 0")
    r = _visible(sub)[2]
    if not r.ok:
        raise AssertionError(explain(sub, r.error))
    out, mask, want = r["out"], r["mask"], load("dropout")["p0"]
    assert isinstance(out, torch.Tensor) and out.shape == want.shape and \
        torch.allclose(out, want, rtol=1e-12, atol=0), \
        "with p = 0 nothing is dropped and 1 / (1 - p) = 1: out must equal x"
    assert isinstance(mask, torch.Tensor) and mask.dtype == torch.bool and mask.shape == want.shape \
        and bool(mask.all()), "with p = 0 every unit is kept: the keep-mask must be all True (not None)"


def backward_problem(sub, r, c: dict, want: torch.Tensor) -> str | None:
    if not r.ok:
        return explain(sub, r.error)
    dx = r["dx"]
    problem = tensor_problem(f"{BACKWARD}'s dx", dx, c["dout"], "dout")
    if problem is not None:
        return problem
    if c["mask"] is None:
        return None if torch.equal(dx, c["dout"]) else \
            "with mask None (evaluation mode) dropout_backward must return dout unchanged"
    if torch.allclose(dx, want, rtol=1e-6, atol=1e-7):
        return None
    if c["p"] > 0 and torch.allclose(dx[c["mask"]], c["dout"][c["mask"]]):
        return "dx is not rescaled: dx = dout * mask / (1 - p), as in the forward"
    return ("dx must be dout * mask / (1 - p): the gradient flows through the kept units, scaled as in the "
            "forward")


@points(1, functions=(BACKWARD,))
def test_dropout_backward_small(sub):
    """dx for a given mask (a value test); with mask None, dx = dout counts only once the masked case is
    right (an identity function would pass it)."""
    results = probe(sub, BACKWARD_PROBE, BACKWARD_SMALL, key="visible")
    wants = load("dropout")["backward"]
    masked = backward_problem(sub, results[0], BACKWARD_SMALL[0], wants[0])
    score = Score()
    score.check(masked is None, f"{masked} {NOTE.format(p=0.5)}")
    if masked is None:
        problem = backward_problem(sub, results[1], BACKWARD_SMALL[1], wants[1])
        score.check(problem is None, problem or "")
    score.done()


@points(1, functions=(FORWARD, BACKWARD))
def test_dropout_inputs_unmodified(sub):
    """Property: on the cases whose results are right, x and dout are left as they were."""
    score = Score()
    for c, r in zip(SMALL_CASES, _visible(sub)[3:], strict=True):
        problem = scaling_problem(sub, r, c["x"], c["p"])
        score.check_if(problem is None, problem is None and torch.equal(r["x"], c["x"]),
                       f"{FORWARD} modified x in place: return a new tensor", why_not=problem or "")
    results = probe(sub, BACKWARD_PROBE, BACKWARD_SMALL, key="visible")
    c, r = BACKWARD_SMALL[0], results[0]
    problem = backward_problem(sub, r, c, load("dropout")["backward"][0])
    score.check_if(problem is None, problem is None and torch.equal(r["dout"], c["dout"]),
                   f"{BACKWARD} modified dout in place: return a new tensor", why_not=problem or "")
    score.done(nothing_counted="not checked: neither function gives right results on the visible input yet")
