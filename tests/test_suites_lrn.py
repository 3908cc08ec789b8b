"""The lrn grading suite graded: the reference scores full marks, each known mistake loses exactly the tests
it should, with a message that says what is wrong, and a broken submission never stops the other tests."""

from __future__ import annotations

import pytest
import torch
from test_exercises_notebooks import assert_mistake_caught, bug_scores, score_of, solution_namespace

from grader.submission import InProcessSubmission
from grader.suite import tests as suite_tests

A = "lrn"
INTER = {"test_lrn_inter_worked_example", "test_lrn_inter_small_input", "test_lrn_inter_values",
         "test_lrn_inter_borders_even_n"}
INTRA = {"test_lrn_intra_worked_example", "test_lrn_intra_small_input", "test_lrn_intra_values",
         "test_lrn_intra_borders_even_n"}
BOTH = {"test_lrn_inputs_unmodified", "test_lrn_gradients", "test_lrn_differentiable", "test_lrn_dtypes"}
# a mistake costs the value tests it shows in; the property tests (inputs, differentiable, dtypes) count only
# the cases whose values are right, so a wrong value is never charged twice
GRADS = {"test_lrn_gradients"}

# each known mistake: the code that replaces the solution's function, the tests it must lose, and what the
# message of some of them must say
BUGS = {
    "alpha_divided_by_n": ('''
def lrn_inter(a, n, k, alpha, beta):
    half, C = n // 2, a.shape[1]
    padded = torch.nn.functional.pad(a * a, (0, 0, 0, 0, half, half))
    return a / (k + alpha / n * sum(padded[:, d:d + C] for d in range(2 * half + 1))) ** beta
''', INTER | {"test_lrn_gradients"},
        {"test_lrn_inter_worked_example": "alpha must not be divided by n",
         "test_lrn_inter_values": "alpha is divided by n"}),
    "window_wraps_around_at_borders": ('''
def lrn_inter(a, n, k, alpha, beta):
    half = n // 2
    sq = a * a
    return a / (k + alpha * sum(torch.roll(sq, d, dims=1) for d in range(-half, half + 1))) ** beta
''', INTER | GRADS,
        {"test_lrn_inter_borders_even_n": "wrong at the channel borders for even n: check the window bounds",
         "test_lrn_inter_values": "right away from the borders"}),
    "torch_window_for_even_n": ('''
def lrn_inter(a, n, k, alpha, beta):
    C = a.shape[1]
    padded = torch.nn.functional.pad(a * a, (0, 0, 0, 0, n // 2, (n - 1) // 2))
    return a / (k + alpha * sum(padded[:, d:d + C] for d in range(n))) ** beta
''', INTER | {"test_lrn_gradients"},
        {"test_lrn_inter_values": "for even n", "test_lrn_inter_worked_example": "3 channels for n = 2"}),
    "intra_window_replicates_the_border": ('''
def lrn_intra(a, n, k, alpha, beta):
    half = n // 2
    H, W = a.shape[2], a.shape[3]
    padded = torch.nn.functional.pad(a * a, (half, half, half, half), mode="replicate")
    rows = sum(padded[:, :, d:d + H, :] for d in range(2 * half + 1))
    return a / (k + alpha * sum(rows[:, :, :, d:d + W] for d in range(2 * half + 1))) ** beta
''', INTRA | {"test_lrn_gradients"},
        {"test_lrn_intra_worked_example": "wrong at the corners and the edges",
         "test_lrn_intra_borders_even_n": "wrong at the image borders"}),
    "intra_alpha_divided_by_window": ('''
def lrn_intra(a, n, k, alpha, beta):
    half = n // 2
    H, W = a.shape[2], a.shape[3]
    padded = torch.nn.functional.pad(a * a, (half, half, half, half))
    rows = sum(padded[:, :, d:d + H, :] for d in range(2 * half + 1))
    s = sum(rows[:, :, :, d:d + W] for d in range(2 * half + 1))
    return a / (k + alpha / (n * n) * s) ** beta
''', INTRA | {"test_lrn_gradients"}, {"test_lrn_intra_values": "divided by the window size"}),
    "input_modified_in_place": ('''
_lrn_inter = lrn_inter
def lrn_inter(a, n, k, alpha, beta):
    b = _lrn_inter(a, n, k, alpha, beta)
    a.copy_(b)          # "saves memory"
    return a
''', {"test_lrn_inputs_unmodified", "test_lrn_gradients"},
        {"test_lrn_inputs_unmodified": "modified its input a in place"}),
    "not_differentiable": ('''
_lrn_intra = lrn_intra
def lrn_intra(a, n, k, alpha, beta):
    return torch.tensor(_lrn_intra(a, n, k, alpha, beta).tolist(), dtype=a.dtype)
''', {"test_lrn_gradients", "test_lrn_differentiable"},
        {"test_lrn_gradients": "not connected to its input by autograd"}),
    "returns_nan": ('''
_lrn_inter = lrn_inter
def lrn_inter(a, n, k, alpha, beta):
    return _lrn_inter(a, n, k, alpha, beta) * float("nan")
''', INTER | GRADS, {"test_lrn_inter_values": "NaN"}),
    "wrong_shape": ('''
_lrn_intra = lrn_intra
def lrn_intra(a, n, k, alpha, beta):
    return _lrn_intra(a, n, k, alpha, beta)[:, :, :, :-1]
''', INTRA | GRADS,
        {"test_lrn_intra_values": "does not have its input's shape"}),
    "crashes_for_even_n": ('''
_lrn_inter = lrn_inter
def lrn_inter(a, n, k, alpha, beta):
    if n % 2 == 0:
        raise ValueError("n must be odd")
    return _lrn_inter(a, n, k, alpha, beta)
''', INTER | GRADS,
        {"test_lrn_inter_worked_example": "ValueError: n must be odd",
         "test_lrn_inter_values": "raised ValueError on a hidden input"}),
    "missing_function": ('''
del lrn_intra
''', INTRA | GRADS, {"test_lrn_intra_values": "lrn_intra() is not defined"}),
    "returns_a_list": ('''
_lrn_inter = lrn_inter
def lrn_inter(a, n, k, alpha, beta):
    return _lrn_inter(a, n, k, alpha, beta).tolist()
''', INTER | GRADS, {"test_lrn_inter_values": "result is a list, not a torch.Tensor"}),
    "guarded_uses_torch_lrn": ('''
def lrn_inter(a, n, k, alpha, beta):
    return torch.nn.functional.local_response_norm(a, 2 * (n // 2) + 1, alpha * (2 * (n // 2) + 1), beta, k)
''', INTER | GRADS, {"test_lrn_inter_values": "off limits in this assignment"}),
}


def _scores(bug: str) -> dict:
    return bug_scores(A, bug, BUGS[bug][0])


@pytest.mark.parametrize("bug", list(BUGS))
def test_lrn_suite_catches_known_mistakes(bug):
    _, expected, messages = BUGS[bug]
    scores = _scores(bug)
    assert_mistake_caught(scores, expected, messages)
    # partial credit where a mistake spoils only some cases
    if bug in ("window_wraps_around_at_borders", "torch_window_for_even_n", "crashes_for_even_n"):
        points, max_points, _ = scores["test_lrn_inter_values"]
        assert 0 < points < max_points


def _tricksref_namespace() -> dict:
    import tricksref

    def lrn_inter(a, n, k, alpha, beta):
        return tricksref.local_response_norm(a, n, alpha, beta, k, mode="inter", convention="alexnet")

    def lrn_intra(a, n, k, alpha, beta):
        return tricksref.local_response_norm(a, n, alpha, beta, k, mode="intra", convention="alexnet")

    return {"lrn_inter": lrn_inter, "lrn_intra": lrn_intra}


@pytest.mark.parametrize("test", suite_tests(A), ids=lambda t: t.name)
def test_lrn_suite_passes_the_reference(test):
    """Each suite test, run as a plain pytest function on tricksref itself, passes."""
    test.fn(InProcessSubmission(_tricksref_namespace()))


def test_lrn_suite_is_deterministic():
    """The hidden cases are drawn again identically (hypothesis with derandomize=True), so are the scores."""
    from grader.hidden import lrn as hidden

    ns = solution_namespace(A, BUGS["torch_window_for_even_n"][0])
    first_cases, first_scores = hidden._value_cases("lrn_inter")[0], score_of(A, ns)
    hidden._value_cases.cache_clear()
    again = hidden._value_cases("lrn_inter")[0]
    assert again is not first_cases
    assert [(c["n"], c["k"], c["alpha"], c["beta"]) for c in again] == \
        [(c["n"], c["k"], c["alpha"], c["beta"]) for c in first_cases]
    assert all(torch.equal(a["a"], b["a"]) for a, b in zip(again, first_cases, strict=True))
    assert score_of(A, ns) == first_scores
