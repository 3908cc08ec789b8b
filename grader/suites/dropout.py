"""Visible tests of the ``dropout`` assignment: evaluation mode, p = 0, one small seeded input, the backward.

The student writes ``dropout_forward(x, p, training, generator=None) -> (out, mask)`` (inverted dropout:
kept units scaled by 1/(1 - p); ``mask`` the boolean keep-mask, None in evaluation mode) and
``dropout_backward(dout, mask, p) -> dx``. A random mask cannot be compared with the reference's, so the
tests check what defines dropout: ``out == x * mask / (1 - p)`` for the student's own mask, the keep rate
and the independence of the mask (hidden, statistical), and ``tricksref.dropout`` where it is deterministic
(evaluation mode, p = 0, p = 1).
"""

from __future__ import annotations

import torch

from grader.suite import Score, memo, points

FORWARD, BACKWARD = "dropout_forward", "dropout_backward"


def reference_deterministic(x, p, training):
    """``tricksref.dropout`` where it has no randomness: evaluation mode, p = 0, p = 1."""
    import tricksref

    return tricksref.dropout(x, p=p, training=training)


def expected_from_mask(x: torch.Tensor, mask: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted dropout given the keep-mask: kept units times 1/(1 - p), the others 0 (DESIGN.md)."""
    if p >= 1:
        return torch.zeros_like(x)
    return torch.where(mask, x / (1 - p), torch.zeros_like(x))


def run_forward(sub, key, cases):
    return memo(sub, ("dropout.forward", key), lambda: sub.run("dropout.forward", cases=cases)["results"])


def run_backward(sub, key, cases):
    return memo(sub, ("dropout.backward", key), lambda: sub.run("dropout.backward", cases=cases)["results"])


def mask_problem(r: dict, x: torch.Tensor) -> str | None:
    """None if a training-mode result has a boolean keep-mask of x's shape and an out of x's shape/dtype."""
    if r["error"] is not None:
        return r["error"]
    out, mask = r["value"]["out"], r["value"]["mask"]
    if out.shape != x.shape:
        return f"{FORWARD} returned an out whose shape differs from x's"
    if out.dtype != x.dtype:
        return f"{FORWARD} returned out of dtype {out.dtype} for a {x.dtype} input: keep x's dtype"
    if mask is None:
        return f"{FORWARD} returned mask None in training mode: return the boolean keep-mask"
    if mask.dtype != torch.bool:
        return f"{FORWARD} returned a mask of dtype {mask.dtype}: make it boolean (e.g. rand(...) >= p)"
    if mask.shape != x.shape:
        return f"{FORWARD} returned a mask whose shape differs from x's: one entry per unit of x"
    return None


def scaling_problem(r: dict, x: torch.Tensor, p: float) -> str | None:
    """None if ``out == x * mask / (1 - p)`` for the student's mask, else a diagnosis."""
    problem = mask_problem(r, x)
    if problem is not None:
        return problem
    out, mask = r["value"]["out"], r["value"]["mask"]
    if not torch.isfinite(out).all():
        return f"{FORWARD} returned NaN or inf"
    if torch.allclose(out, expected_from_mask(x, mask, p), rtol=1e-6, atol=1e-7):
        return None
    if torch.allclose(out, torch.where(mask, x, torch.zeros_like(x)), rtol=1e-6, atol=1e-7):
        return ("the kept units are not rescaled: inverted dropout multiplies them by 1 / (1 - p) in "
                "training, so that nothing changes at test time")
    if torch.allclose(out, expected_from_mask(x, ~mask, p), rtol=1e-6, atol=1e-7):
        return "your mask is True where a unit is DROPPED: return the keep-mask (True where a unit is kept)"
    return "out is not x * mask / (1 - p) for the mask you return"


# -------------------------------------------------------------------------------------------- visible cases

_g = torch.Generator().manual_seed(2)
X_SMALL = torch.randn(4, 8, generator=_g, dtype=torch.float64)
EVAL_CASES = [{"x": X_SMALL, "p": p, "training": False, "seed": 0} for p in (0.5, 0.9)]
P0_CASE = {"x": X_SMALL, "p": 0.0, "training": True, "seed": 1}
SMALL_CASES = [{"x": X_SMALL, "p": 0.5, "training": True, "seed": 3},
               {"x": X_SMALL, "p": 0.25, "training": True, "seed": 4}]
ALL_VISIBLE = EVAL_CASES + [P0_CASE] + SMALL_CASES
MASK_SMALL = torch.rand(4, 8, generator=_g) >= 0.5
DOUT_SMALL = torch.randn(4, 8, generator=_g, dtype=torch.float64)
BACKWARD_SMALL = [{"dout": DOUT_SMALL, "mask": MASK_SMALL, "p": 0.5},
                  {"dout": DOUT_SMALL, "mask": None, "p": 0.5}]


def _visible(sub):
    return run_forward(sub, "visible", ALL_VISIBLE)


@points(1, functions=(FORWARD,))
def test_dropout_eval_is_identity(sub):
    score = Score()
    for c, r in zip(EVAL_CASES, _visible(sub)[:2], strict=False):
        if r["error"] is not None:
            score.fail(r["error"])
            continue
        out, mask = r["value"]["out"], r["value"]["mask"]
        want = reference_deterministic(c["x"], c["p"], False)
        score.check(out.shape == want.shape and torch.equal(out, want),
                    "in evaluation mode (training=False) out must be x itself: nothing is dropped or "
                    "rescaled")
        score.check(mask is None, "in evaluation mode mask must be None")
    score.done()


@points(1, functions=(FORWARD,))
def test_dropout_p0_keeps_everything(sub):
    r = _visible(sub)[2]
    if r["error"] is not None:
        raise AssertionError(r["error"])
    out, mask = r["value"]["out"], r["value"]["mask"]
    want = reference_deterministic(X_SMALL, 0.0, True)
    assert out.shape == want.shape and torch.allclose(out, want, rtol=1e-12, atol=0), \
        "with p = 0 nothing is dropped and 1 / (1 - p) = 1: out must equal x"
    all_kept = isinstance(mask, torch.Tensor) and mask.dtype == torch.bool and bool(mask.all())
    assert mask is None or all_kept, "with p = 0 every unit is kept: the keep-mask must be all True"


@points(1, functions=(FORWARD,))
def test_dropout_small(sub):
    score = Score()
    for c, r in zip(SMALL_CASES, _visible(sub)[3:], strict=False):
        problem = scaling_problem(r, c["x"], c["p"])
        score.check(problem is None, f"{problem} (visible (4, 8) input, p={c['p']})")
    score.done()


@points(1, functions=(BACKWARD,))
def test_dropout_backward_small(sub):
    score = Score()
    for c, r in zip(BACKWARD_SMALL, run_backward(sub, "visible", BACKWARD_SMALL), strict=False):
        if r["error"] is not None:
            score.fail(r["error"])
            continue
        dx = r["value"]["dx"]
        if c["mask"] is None:
            score.check(dx.shape == c["dout"].shape and torch.equal(dx, c["dout"]),
                        "with mask None (evaluation mode) dropout_backward must return dout unchanged")
        else:
            want = expected_from_mask(c["dout"], c["mask"], c["p"])
            score.check(dx.shape == want.shape and torch.allclose(dx, want, rtol=1e-6, atol=1e-7),
                        "dx must be dout * mask / (1 - p): the gradient flows through the kept units, scaled "
                        "as in the forward")
    score.done()


@points(1, functions=(FORWARD, BACKWARD))
def test_dropout_inputs_unmodified(sub):
    score = Score()
    for r in _visible(sub):
        if r["error"] is not None:
            score.fail(r["error"])
        else:
            score.check(not r["value"]["modified"], f"{FORWARD} modified x in place: return a new tensor")
    for r in run_backward(sub, "visible", BACKWARD_SMALL):
        if r["error"] is not None:
            score.fail(r["error"])
        else:
            score.check(not r["value"]["modified"], f"{BACKWARD} modified dout in place: return a new tensor")
    score.done()
