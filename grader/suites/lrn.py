"""Visible tests of the ``lrn`` assignment: the lecture's worked examples and small inputs.

The student writes ``lrn_inter(a, n, k, alpha, beta)`` and ``lrn_intra(a, n, k, alpha, beta)`` with the
lecture's (AlexNet) convention. These tests and their cases ship with the exercises (``from grader import
check``), their expected values as data (``grader.expected``); the random cases, the borders, the gradients
and the dtypes are in the hidden part.
"""

from __future__ import annotations

import torch

from grader.expected import load
from grader.replies import ECHO, OUT, Spec
from grader.suite import Probe, Score, explain, points, probe, tensor_problem

FUNCTIONS = ("lrn_inter", "lrn_intra")
RTOL, ATOL = 1e-6, 1e-9  # float64 cases: only the order of operations may differ

FORWARD = Probe("lrn.forward", Spec({"out": OUT, "a": ECHO("a")}), FUNCTIONS)
GRAD = Probe("lrn.grad", Spec({"out": OUT, "grad": OUT, "out_plus": OUT, "out_minus": OUT}), FUNCTIONS)


def case(a, n, k, alpha, beta) -> dict:
    return {"a": a, "n": n, "k": k, "alpha": alpha, "beta": beta}


def output_problem(fn: str, out, like: torch.Tensor) -> str | None:
    """None if ``out`` is a finite tensor of ``like``'s shape and dtype, else what is wrong with it."""
    return tensor_problem(f"{fn}'s result", out, like, "its input")


def compare(sub, fn: str, r, expected: torch.Tensor, *, rtol=RTOL, atol=ATOL) -> str | None:
    """None if the case's output matches ``expected``, else what is wrong (never the case's values)."""
    if not r.ok:
        return explain(sub, r.error)
    problem = output_problem(fn, r["out"], expected)
    if problem is None and not torch.allclose(r["out"], expected, rtol=rtol, atol=atol):
        problem = f"{fn} gives wrong values"
    return problem


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


def _note(c) -> str:
    return (f"(visible input of shape {tuple(c['a'].shape)}, n={c['n']}, k={c['k']}, alpha={c['alpha']}, "
            f"beta={c['beta']})")


def small_results(sub, fn: str) -> tuple[list, list[str | None]]:
    """The student's results on the small visible cases, and each one's problem (None: right)."""
    results = probe(sub, FORWARD, SMALL, key="small", fn=fn)
    expected = load("lrn")[f"small/{fn}"]
    return results, [compare(sub, fn, r, e) for r, e in zip(results, expected, strict=True)]


def _small_test(sub, fn: str) -> None:
    _, problems = small_results(sub, fn)
    score = Score()
    for c, problem in zip(SMALL, problems, strict=True):
        score.check(problem is None, f"{problem} {_note(c)}")
    score.done()


@points(1, functions=("lrn_inter",))
def test_lrn_inter_worked_example(sub):
    (r,) = probe(sub, FORWARD, [WORKED_INTER], key="worked", fn="lrn_inter")
    if not r.ok:
        raise AssertionError(explain(sub, r.error))
    problem = output_problem("lrn_inter", r["out"], WORKED_INTER["a"])
    assert problem is None, f"{problem} (the lecture's example, shape (1, 3, 1, 1))"
    got = float(r["out"][0, 1, 0, 0])
    assert abs(got - 1 / 9) < 1e-9, (
        f"the lecture's example (neighbours 2, 1, 2 with n=2, k=0, alpha=1, beta=1) gives 1/9 = 0.1111 for "
        f"the middle channel, your lrn_inter gives {got:.4f}"
        + (": alpha must not be divided by n" if abs(got - 1 / 4.5) < 1e-9 else "")
        + (": the window must run from i - n/2 to i + n/2 (3 channels for n = 2)"
           if abs(got - 1 / 5) < 1e-9 else ""))
    # the edge channels (2 / (4 + 1)) as well: a constant output could not get the middle one by chance
    assert torch.allclose(r["out"].flatten(), torch.tensor([0.4, 1 / 9, 0.4], dtype=torch.float64)), (
        "the lecture's example: the middle channel is right, the first and last are not (2 / (4 + 1) = 0.4, "
        "the window clipped at the borders)")


@points(1, functions=("lrn_inter",))
def test_lrn_inter_small_input(sub):
    _small_test(sub, "lrn_inter")


@points(1, functions=("lrn_intra",))
def test_lrn_intra_worked_example(sub):
    (r,) = probe(sub, FORWARD, [WORKED_INTRA], key="worked", fn="lrn_intra")
    problem = compare(sub, "lrn_intra", r, WORKED_INTRA_EXPECTED)
    if problem == "lrn_intra gives wrong values":
        got, want = r["out"][0, 0], WORKED_INTRA_EXPECTED[0, 0]
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
    _small_test(sub, "lrn_intra")


@points(1, functions=FUNCTIONS)
def test_lrn_inputs_unmodified(sub):
    """Property: on the small cases whose values are right, the input ``a`` is left as it was."""
    score = Score()
    for fn in FUNCTIONS:
        results, problems = small_results(sub, fn)
        for c, r, problem in zip(SMALL, results, problems, strict=True):
            score.check_if(problem is None, problem is None and torch.equal(r["a"], c["a"]),
                           f"{fn} modified its input a in place: compute the result in a new tensor",
                           why_not=problem or "")
    score.done(nothing_counted="not checked: no small input gave right values yet (see the small-input "
                               "tests)")
