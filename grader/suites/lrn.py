"""Visible tests of the ``lrn`` assignment: the lecture's worked examples and small inputs.

The student writes ``lrn_inter(a, n, k, alpha, beta)`` and ``lrn_intra(a, n, k, alpha, beta)`` with the
lecture's (AlexNet) convention; the reference is ``tricksref.local_response_norm(..., convention="alexnet")``.
These tests and their cases ship with the exercises (``from grader import check``); the random cases, the
borders, the gradients and the dtypes are in the hidden part.
"""

from __future__ import annotations

import torch

from grader.suite import Score, memo, points

FUNCTIONS = ("lrn_inter", "lrn_intra")
RTOL, ATOL = 1e-6, 1e-9  # float64 cases: only the order of operations may differ


def reference(a, n, k, alpha, beta, mode):
    import tricksref

    return tricksref.local_response_norm(a, n, alpha=alpha, beta=beta, k=k, mode=mode, convention="alexnet")


def case(a, n, k, alpha, beta) -> dict:
    return {"a": a, "n": n, "k": k, "alpha": alpha, "beta": beta}


def run_forward(sub, fn: str, key: str, cases: list) -> list:
    """The student's outputs on ``cases`` (one round trip per submission, shared by the tests)."""
    return memo(sub, ("lrn.forward", fn, key), lambda: sub.run("lrn.forward", fn=fn, cases=cases)["results"])


def compare(fn: str, result: dict, expected: torch.Tensor, *, rtol=RTOL, atol=ATOL) -> str | None:
    """None if the student's output matches ``expected``, else what is wrong (without printing the case)."""
    if result["error"] is not None:
        return result["error"]
    out = result["value"]["out"]
    if out.shape != expected.shape:
        return f"{fn} returned a tensor whose shape differs from its input's: keep the shape (B, C, H, W)"
    if out.dtype != expected.dtype:
        return f"{fn} returned dtype {out.dtype} for a {expected.dtype} input: keep the input's dtype"
    if not torch.isfinite(out).all():
        return f"{fn} returned NaN or inf where the result is finite"
    if not torch.allclose(out, expected, rtol=rtol, atol=atol):
        return f"{fn} gives wrong values"
    return None


# ------------------------------------------------------------------------------------------- visible cases

# The lecture's worked example: neighbours (2, 1, 2), n = 2, k = 0, alpha = beta = 1 -> 1 / (0 + 4 + 1 + 4).
WORKED_INTER = case(torch.tensor([2.0, 1.0, 2.0], dtype=torch.float64).view(1, 3, 1, 1), 2, 0.0, 1.0, 1.0)
# Intra-channel on a 3x3 image of ones, n = 2 (a 3x3 window clipped at the borders), k = alpha = beta = 1:
# a corner sees 4 ones -> 1/5, an edge 6 -> 1/7, the centre 9 -> 1/10.
WORKED_INTRA = case(torch.ones(1, 1, 3, 3, dtype=torch.float64), 2, 1.0, 1.0, 1.0)
WORKED_INTRA_EXPECTED = torch.tensor([[1 / 5, 1 / 7, 1 / 5], [1 / 7, 1 / 10, 1 / 7], [1 / 5, 1 / 7, 1 / 5]],
                                     dtype=torch.float64).view(1, 1, 3, 3)

_g = torch.Generator().manual_seed(5)
SMALL = [case(torch.randn(2, 5, 3, 4, generator=_g, dtype=torch.float64), 3, 2.0, 0.5, 0.75),
         case(torch.randn(1, 4, 5, 5, generator=_g, dtype=torch.float64), 4, 1.0, 0.1, 0.5)]


def _small_test(sub, fn: str, mode: str) -> None:
    results = run_forward(sub, fn, "small", SMALL)
    score = Score()
    for c, r in zip(SMALL, results, strict=False):
        problem = compare(fn, r, reference(c["a"], c["n"], c["k"], c["alpha"], c["beta"], mode))
        score.check(problem is None, f"{problem} on the visible input of shape {tuple(c['a'].shape)} with "
                                     f"n={c['n']}, k={c['k']}, alpha={c['alpha']}, beta={c['beta']}")
    score.done()


@points(1, functions=("lrn_inter",))
def test_lrn_inter_worked_example(sub):
    results = run_forward(sub, "lrn_inter", "worked", [WORKED_INTER])
    r = results[0]
    if r["error"] is not None:
        raise AssertionError(r["error"])
    out = r["value"]["out"]
    if out.shape != (1, 3, 1, 1):
        raise AssertionError(f"lrn_inter returned shape {tuple(out.shape)} for the lecture's example of "
                             f"shape (1, 3, 1, 1): keep the input's shape")
    got = float(out[0, 1, 0, 0])
    assert abs(got - 1 / 9) < 1e-9, (
        f"the lecture's example (neighbours 2, 1, 2 with n=2, k=0, alpha=1, beta=1) gives 1/9 = 0.1111 for "
        f"the middle channel, your lrn_inter gives {got:.4f}"
        + (": alpha must not be divided by n" if abs(got - 1 / 4.5) < 1e-9 else "")
        + (": the window must run from i - n/2 to i + n/2 (3 channels for n = 2)"
           if abs(got - 1 / 5) < 1e-9 else ""))


@points(1, functions=("lrn_inter",))
def test_lrn_inter_small_input(sub):
    _small_test(sub, "lrn_inter", "inter")


@points(1, functions=("lrn_intra",))
def test_lrn_intra_worked_example(sub):
    r = run_forward(sub, "lrn_intra", "worked", [WORKED_INTRA])[0]
    problem = compare("lrn_intra", r, WORKED_INTRA_EXPECTED)
    if problem == "lrn_intra gives wrong values":
        got = r["value"]["out"][0, 0]
        want = WORKED_INTRA_EXPECTED[0, 0]
        where = []
        if abs(float(got[1, 1] - want[1, 1])) > 1e-9:
            where.append("the centre")
        if not torch.allclose(got[[0, 0, 2, 2], [0, 2, 0, 2]], want[[0, 0, 2, 2], [0, 2, 0, 2]]):
            where.append("the corners")
        if not torch.allclose(got[[0, 1, 1, 2], [1, 0, 2, 1]], want[[0, 1, 1, 2], [1, 0, 2, 1]]):
            where.append("the edges")
        problem = (f"on a 3x3 image of ones with n=2, k=alpha=beta=1 the result is 1/5 at the corners, 1/7 "
                   f"on the edges and 1/10 at the centre; yours is wrong at {' and '.join(where)} "
                   f"(got {[[round(float(v), 4) for v in row] for row in got]})")
    assert problem is None, problem


@points(1, functions=("lrn_intra",))
def test_lrn_intra_small_input(sub):
    _small_test(sub, "lrn_intra", "intra")


@points(1, functions=FUNCTIONS)
def test_lrn_inputs_unmodified(sub):
    score = Score()
    for fn in FUNCTIONS:
        for r in run_forward(sub, fn, "small", SMALL):
            if r["error"] is None:
                score.check(not r["value"]["modified"],
                            f"{fn} modified its input a in place: compute the result in a new tensor")
            else:
                score.fail(r["error"])
    score.done()
