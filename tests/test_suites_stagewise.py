"""The stagewise grading suite graded: the reference scores full marks, each known mistake loses exactly the
tests it should, with a message that says what is wrong, and a broken submission never stops the others."""

from __future__ import annotations

import pytest
from test_exercises_notebooks import assert_mistake_caught, bug_scores

from grader.submission import InProcessSubmission
from grader.suite import tests as suite_tests

A = "stagewise"
ALL = {t.name for t in suite_tests(A)}
VALUES = {"test_stagewise_single_stage_is_sgd", "test_stagewise_small", "test_stagewise_iterates",
          "test_stagewise_stage_boundaries"}
# the gradients of the iterate cases depend on the step, so wrong steps are wrong iterates there too; the
# copies test reads aliasing off the values of those cases
STEPS = {"test_stagewise_step_counter_small", "test_stagewise_step_counter", "test_stagewise_iterates",
         "test_stagewise_iterates_are_copies"}
# a mistake in every iterate: no visible case is right, so w0 is not checked, and float32 is wrong too
EVERY_ITERATE = {"test_stagewise_w0_unmodified", "test_stagewise_dtypes"}


def sgd_with(*, start="w = w0.clone()", update="w = w - eta_s * grad_fn(w, step)",
             append="iterates.append(w)", step0="0", lr="eta_s", reset_step="", result="iterates") -> str:
    """The solution with one piece changed (a known mistake)."""
    return f'''
def stagewise_sgd(w0, grad_fn, stage_lrs, iters_per_stage):
    {start}
    iterates = []
    step = {step0}
    for s, eta_s in enumerate(stage_lrs):
        {reset_step}
        for t in range(iters_per_stage):
            eta_s = {lr}
            {update}
            {append}
            step += 1
    return {result}
'''


BUGS = {
    "step_counter_restarts_each_stage": (
        sgd_with(reset_step="step = 0"), STEPS,
        {"test_stagewise_step_counter": "restarts at each stage"}),
    "step_counter_starts_at_1": (
        sgd_with(step0="1"), STEPS,
        {"test_stagewise_step_counter_small": "starts at 1"}),
    "w0_updated_in_place": (
        sgd_with(start="w = w0", update="w -= eta_s * grad_fn(w, step)", append="iterates.append(w.clone())"),
        {"test_stagewise_w0_unmodified"}, {"test_stagewise_w0_unmodified": "modified w0 in place"}),
    "same_tensor_appended_every_step": (
        sgd_with(update="w -= eta_s * grad_fn(w, step)"),
        VALUES | STEPS | {"test_stagewise_returns_all_iterates", "test_stagewise_w0_unmodified"},
        {"test_stagewise_iterates_are_copies": "returned the same tensor several times",
         "test_stagewise_small": "returned the same tensor several times"}),
    "w0_included_in_the_result": (
        sgd_with(result="[w0.clone()] + iterates"),
        VALUES | STEPS | EVERY_ITERATE | {"test_stagewise_returns_all_iterates"},
        {"test_stagewise_iterates": "without w0", "test_stagewise_returns_all_iterates": "without w0"}),
    "next_stage_step_size_one_step_early": (
        sgd_with(lr="stage_lrs[min(s + 1, len(stage_lrs) - 1)] if t == iters_per_stage - 1 "
                    "else stage_lrs[s]"),
        (VALUES | STEPS) - {"test_stagewise_single_stage_is_sgd"},
        {"test_stagewise_stage_boundaries": "the last step of stage 1 used the wrong step size",
         "test_stagewise_small": "go wrong from the last step of a stage"}),
    "first_stage_skipped": (
        sgd_with(lr="stage_lrs[min(s + 1, len(stage_lrs) - 1)]"),
        (VALUES | STEPS | {"test_stagewise_returns_all_iterates"}) - {"test_stagewise_single_stage_is_sgd"},
        {"test_stagewise_stage_boundaries": "the first step of stage 1 used the wrong step size"}),
    "returns_a_stacked_tensor": (
        sgd_with(result="torch.stack(iterates)"), ALL,
        {"test_stagewise_iterates": "returned a tensor: return the list of the S*T iterates"}),
    "grad_fn_called_without_step": (
        sgd_with(update="w = w - eta_s * grad_fn(w)"), ALL,
        {"test_stagewise_small": "call grad_fn(w, step) with the iterate"}),
    "missing_function": ("del stagewise_sgd\n", ALL, {"test_stagewise_small": "is not defined"}),
    "guarded_calls_tricksref": ('''
import tricksref.schedules
def stagewise_sgd(w0, grad_fn, stage_lrs, iters_per_stage):
    return tricksref.schedules.stagewise_sgd(w0, grad_fn, stage_lrs, iters_per_stage)
''', ALL, {"test_stagewise_iterates": "calls tricksref.schedules, which is off limits"}),
}


def _scores(bug: str) -> dict:
    return bug_scores(A, bug, BUGS[bug][0])


@pytest.mark.parametrize("bug", list(BUGS))
def test_stagewise_suite_catches_known_mistakes(bug):
    _, expected, messages = BUGS[bug]
    scores = _scores(bug)
    assert_mistake_caught(scores, expected, messages)


def test_stagewise_suite_gives_partial_credit():
    scores = _scores("first_stage_skipped")  # right where there is one stage only
    points, max_points, _ = scores["test_stagewise_iterates"]
    assert 0 < points < max_points


def _tricksref_namespace() -> dict:
    from tricksref.schedules import stagewise_sgd

    return {"stagewise_sgd": stagewise_sgd}


@pytest.mark.parametrize("test", suite_tests(A), ids=lambda t: t.name)
def test_stagewise_suite_passes_the_reference(test):
    """Each suite test, run as a plain pytest function on tricksref.schedules.stagewise_sgd, passes."""
    test.fn(InProcessSubmission(_tricksref_namespace()))
