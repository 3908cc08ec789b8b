"""The dropout grading suite graded: the reference scores full marks, each known mistake loses exactly the
tests it should, with a message that says what is wrong, and a broken submission never stops the others."""

from __future__ import annotations

import pytest
import torch
from test_exercises_notebooks import assert_mistake_caught, bug_scores, lost, score_of, solution_namespace

from grader.submission import InProcessSubmission
from grader.suite import tests as suite_tests

A = "dropout"
FORWARD_TESTS = {t.name for t in suite_tests(A) if t.functions == ("dropout_forward",)}
BACKWARD_TESTS = {"test_dropout_backward_small", "test_dropout_backward_values"}


def forward_with(*, keep="torch.rand(x.shape, generator=generator, device=x.device) >= p",
                 out="x * mask / (1 - p)", p1=True, eval_identity=True, prelude="") -> str:
    """The solution's forward with one piece changed (a known mistake)."""
    return f'''
def dropout_forward(x, p, training, generator=None):
{prelude}    if not training{"" if eval_identity else " and False"}:
        return x, None
    if p >= 1 and {p1}:
        return torch.zeros_like(x), torch.zeros(x.shape, dtype=torch.bool, device=x.device)
    mask = {keep}
    return {out}, mask
'''


def backward_with(expression: str) -> str:
    return f'''
def dropout_backward(dout, mask, p):
    if mask is None:
        return dout
    if p >= 1:
        return torch.zeros_like(dout)
    return {expression}
'''


BUGS = {
    "not_inverted": (
        forward_with(out="x * mask") + backward_with("dout * mask"),
        # no visible result is right (the forward's scaling, the backward's): nothing to check x and dout on
        {"test_dropout_small", "test_dropout_inverted_scaling", "test_dropout_dtypes",
         "test_dropout_inputs_unmodified"} | BACKWARD_TESTS,
        {"test_dropout_inverted_scaling": "the kept units are not rescaled",
         "test_dropout_backward_values": "dx is not rescaled"}),
    "mask_of_dropped_units": (
        forward_with(keep="torch.rand(x.shape, generator=generator, device=x.device) < p", p1=False,
                     out="x * ~mask / (1 - p)") + backward_with("dout * ~mask / (1 - p)"),
        # out does not follow the mask it returns: its statistics and the gated modes count nothing
        FORWARD_TESTS | BACKWARD_TESTS
        | {"test_dropout_p1_drops_everything", "test_dropout_inputs_unmodified"},
        {"test_dropout_small": "True where a unit is DROPPED",
         "test_dropout_keep_rate": "out is not 0 on the units your mask drops"}),
    "p_used_as_keep_probability": (
        forward_with(keep="torch.rand(x.shape, generator=generator, device=x.device) < p", p1=False),
        {"test_dropout_p0_keeps_everything", "test_dropout_keep_rate", "test_dropout_p1_drops_everything"},
        {"test_dropout_keep_rate": "p is the probability to DROP a unit"}),
    "nan_for_p_equal_1": (
        forward_with(p1=False) + backward_with("dout * mask / (1 - p) if p < 1 else dout * mask / 0.0"),
        {"test_dropout_p1_drops_everything"}, {"test_dropout_p1_drops_everything": "NaN"}),
    "ignores_the_generator": (
        forward_with(keep="torch.rand(x.shape, device=x.device) >= p"), {"test_dropout_uses_generator"},
        {"test_dropout_uses_generator": "draw the random numbers from the generator you are given"}),
    "reseeds_inside": (
        forward_with(prelude="    torch.manual_seed(0)\n", keep="torch.rand(x.shape, device=x.device) >= p"),
        {"test_dropout_uses_generator"}, {"test_dropout_uses_generator": "do not reseed"}),
    "one_mask_for_the_whole_batch": (
        forward_with(keep="(torch.rand((1,) + x.shape[1:], generator=generator) >= p).expand(x.shape)"),
        {"test_dropout_independent_units"},
        {"test_dropout_independent_units": "repeats the same pattern across rows or columns"}),
    "drops_in_evaluation_mode": (
        forward_with(eval_identity=False), {"test_dropout_eval_is_identity"},
        {"test_dropout_eval_is_identity": "in evaluation mode (training=False) out must be x itself"}),
    "float_mask": (
        forward_with(keep="(torch.rand(x.shape, generator=generator) >= p).to(x.dtype)"),
        FORWARD_TESTS | {"test_dropout_p1_drops_everything"},  # no boolean mask: the modes are gated
        {"test_dropout_keep_rate": "make it boolean"}),
    "p0_returns_mask_none": (  # the exercise asks for an all-True mask at p = 0 (issue 10)
        forward_with(prelude="    if training and p == 0:\n        return x.clone(), None\n"),
        {"test_dropout_p0_keeps_everything"}, {"test_dropout_p0_keeps_everything": "all True (not None)"}),
    "input_modified_in_place": (
        forward_with(out="x.mul_(mask).div_(1 - p)"), {"test_dropout_inputs_unmodified"},
        {"test_dropout_inputs_unmodified": "modified x in place"}),
    "backward_with_autograd": ('''
def dropout_backward(dout, mask, p):
    if mask is None:
        return dout
    x = torch.ones_like(dout, requires_grad=True)
    with torch.enable_grad():
        out = x * mask / (1 - p) if p < 1 else x * 0
        out.backward(dout)
    return x.grad
''', BACKWARD_TESTS | {"test_dropout_p1_drops_everything"},
        {"test_dropout_backward_values": "calls torch.autograd.backward, which is off limits"}),
    "missing_backward": ("del dropout_backward\n",
                         BACKWARD_TESTS | {"test_dropout_p1_drops_everything"},
                         {"test_dropout_backward_small": "dropout_backward() is not defined"}),
    "guarded_uses_torch_dropout": ('''
def dropout_forward(x, p, training, generator=None):
    out = torch.nn.functional.dropout(x, p, training)
    return out, out != 0 if training else None
''', FORWARD_TESTS | {"test_dropout_p1_drops_everything"},
        {"test_dropout_keep_rate": "calls torch.dropout, which is off limits in this assignment"}),
}


def _scores(bug: str) -> dict:
    return bug_scores(A, bug, BUGS[bug][0])


@pytest.mark.parametrize("bug", list(BUGS))
def test_dropout_suite_catches_known_mistakes(bug):
    _, expected, messages = BUGS[bug]
    scores = _scores(bug)
    assert_mistake_caught(scores, expected, messages)


def test_dropout_suite_statistics_accept_other_correct_samplers():
    """A correct dropout that draws its mask another way (bernoulli, not rand) passes the statistical tests:
    they test the distribution, not torch.rand's stream."""
    ns = solution_namespace(A, forward_with(
        keep="torch.bernoulli(torch.full(x.shape, 1 - p, device=x.device), generator=generator).bool()"))
    assert not lost(score_of(A, ns))


def _tricksref_namespace() -> dict:
    """tricksref.dropout behind the exercise's signature (the keep-mask is where the output is not 0: the
    suite's inputs are standard normal, never exactly 0)."""
    import tricksref

    def dropout_forward(x, p, training, generator=None):
        out = tricksref.dropout(x, p, training, generator=generator)
        return out, (out != 0) if training else None

    def dropout_backward(dout, mask, p):
        if mask is None:
            return dout
        return torch.zeros_like(dout) if p >= 1 else dout * mask / (1 - p)

    return {"dropout_forward": dropout_forward, "dropout_backward": dropout_backward}


@pytest.mark.parametrize("test", suite_tests(A), ids=lambda t: t.name)
def test_dropout_suite_passes_the_reference(test):
    """Each suite test, run as a plain pytest function on tricksref.dropout itself, passes."""
    test.fn(InProcessSubmission(_tricksref_namespace()))
