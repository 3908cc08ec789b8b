"""The batchnorm grading suite graded: the reference scores full marks, each known mistake loses exactly the
tests it should, with a message that says what is wrong, and a broken submission never stops the others."""

from __future__ import annotations

import pytest
from test_exercises_notebooks import assert_mistake_caught, bug_scores

from grader.submission import InProcessSubmission
from grader.suite import tests as suite_tests

A = "batchnorm"
FORWARD_TESTS = {t.name for t in suite_tests(A) if t.functions == ("batchnorm_forward",)}
BACKWARD_TESTS = {"test_bn_backward_small", "test_bn_backward_values", "test_bn_backward_numeric"}
TRAIN_OUT = {"test_bn_forward_train_small", "test_bn_forward_train_values", "test_bn_near_constant_channels"}
RUNNING = {"test_bn_running_stats_small", "test_bn_running_stats"}


def forward_with(*, var="((x - mu.view(shape)) ** 2).mean(dims)", update_var="var * m / (m - 1)",
                 new_weight="momentum", old_weight="1 - momentum", dims="[0] + list(range(2, x.dim()))",
                 normalize="(x - mu.view(shape)) * rstd.view(shape)", rstd="1.0 / torch.sqrt(var + eps)",
                 in_place=True, eval_stats="running_mean, running_var") -> str:
    """The solution's forward with one piece changed (a known mistake)."""
    update = (f"""        with torch.no_grad():
            running_mean.mul_({old_weight}).add_({new_weight} * mu)
            running_var.mul_({old_weight}).add_({new_weight} * {update_var})""" if in_place else f"""
        running_mean = {old_weight} * running_mean + {new_weight} * mu
        running_var = {old_weight} * running_var + {new_weight} * {update_var}""")
    return f'''
def batchnorm_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    dims = {dims}
    shape = [1, x.shape[1]] + [1] * (x.dim() - 2)
    if training:
        m = x.numel() // x.shape[1]
        mu = x.mean(dims)
        var = {var}
{update}
    else:
        mu, var = {eval_stats}
    rstd = {rstd}
    xhat = {normalize}
    out = gamma.view(shape) * xhat + beta.view(shape)
    return out, (xhat, gamma, rstd, dims, shape)
'''


BUGS = {
    "unbiased_variance_to_normalize": (
        forward_with(var="x.var(dims, unbiased=True)", update_var="var"),
        # the backward's formula does not fit a forward with another variance; float32 inputs are wrong too
        TRAIN_OUT | BACKWARD_TESTS | {"test_bn_dtypes"},
        {"test_bn_forward_train_small": "normalize with the biased variance",
         "test_bn_forward_train_values": "normalize with the biased variance"}),
    "running_var_updated_with_biased_variance": (
        forward_with(update_var="var"), RUNNING,
        {"test_bn_running_stats": "running_var is updated with the biased variance"}),
    "momentum_as_keras": (
        forward_with(new_weight="(1 - momentum)", old_weight="momentum"), RUNNING,
        {"test_bn_running_stats_small": "the momentum is the weight of the NEW batch"}),
    "running_stats_rebound_not_updated": (
        forward_with(in_place=False), RUNNING,
        {"test_bn_running_stats": "update running_mean and running_var in place"}),
    "eval_uses_batch_statistics": (
        forward_with(eval_stats="x.mean(dims), ((x - x.mean(dims).view(shape)) ** 2).mean(dims)"),
        {"test_bn_forward_eval_small", "test_bn_forward_eval_values"},
        {"test_bn_forward_eval_values": "must use the running statistics"}),
    "eps_outside_the_square_root": (
        forward_with(rstd="1.0 / (torch.sqrt(var) + eps)"),
        TRAIN_OUT | {"test_bn_forward_eval_small", "test_bn_forward_eval_values", "test_bn_backward_small",
                     "test_bn_backward_values", "test_bn_backward_numeric",
                     "test_bn_inputs_unmodified"},  # no visible case is right, so none is counted
        {"test_bn_near_constant_channels": "eps goes inside the square root",
         "test_bn_forward_eval_small": "eps goes inside the square root"}),
    "statistics_per_element_for_images": (
        forward_with(dims="[0]", var="((x - mu) ** 2).mean(dims)", normalize="(x - mu) * rstd"),
        # the running statistics get the wrong shape: this forward crashes on (N, C, H, W) inputs; the
        # property tests count the (N, D) cases, where it is right
        {"test_bn_forward_train_values", "test_bn_forward_eval_values", "test_bn_running_stats",
         "test_bn_near_constant_channels", "test_bn_backward_values"},
        {"test_bn_forward_train_values": "raised RuntimeError on a hidden input"}),
    "input_modified_in_place": ('''
_forward = batchnorm_forward
def batchnorm_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    out, cache = _forward(x, gamma, beta, running_mean, running_var, training, momentum, eps)
    x.copy_(out)
    return x, cache
''', {"test_bn_inputs_unmodified"}, {"test_bn_inputs_unmodified": "modified x in place"}),
    "backward_forgets_the_statistics_terms": ('''
def batchnorm_backward(dout, cache):
    xhat, gamma, rstd, dims, shape = cache
    return dout * (gamma * rstd).view(shape), (dout * xhat).sum(dims), dout.sum(dims)
''', BACKWARD_TESTS, {"test_bn_backward_values": "dx has three terms"}),
    "backward_with_autograd": ('''
def batchnorm_backward(dout, cache):
    x, gamma, beta, rm, rv = cache
    x, gamma, beta = (t.detach().requires_grad_(True) for t in (x, gamma, beta))
    with torch.enable_grad():
        out, _ = _forward(x, gamma, beta, rm.clone(), rv.clone(), True)
        return torch.autograd.grad(out, (x, gamma, beta), dout)
_forward = batchnorm_forward
def batchnorm_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    out, _ = _forward(x, gamma, beta, running_mean, running_var, training, momentum, eps)
    return out, (x, gamma, beta, running_mean.clone(), running_var.clone())
''', BACKWARD_TESTS,
        {"test_bn_backward_values": "calls torch.autograd.grad, which is off limits"}),
    "returns_out_without_cache": ('''
_forward = batchnorm_forward
def batchnorm_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    return _forward(x, gamma, beta, running_mean, running_var, training, momentum, eps)[0]
''', FORWARD_TESTS | BACKWARD_TESTS, {"test_bn_forward_train_values": "returned a Tensor, not the tuple"}),
    # from real student submissions (issue 10): each one passed some test it should not have
    "cache_unpacked_in_the_wrong_order": ('''
def batchnorm_backward(dout, cache):
    gamma, xhat, rstd, dims, shape = cache
    m = dout.numel() // dout.shape[1]
    dxhat = dout * gamma.view(shape) if gamma.dim() == 1 else dout * gamma
    dx = rstd.view(shape) / m * (m * dxhat - dxhat.sum(dims, keepdim=True)
                                 - xhat * (dxhat * xhat).sum(dims, keepdim=True))
    return dx, (dout * xhat).sum(dims), dout.sum(dims)
''', BACKWARD_TESTS, {"test_bn_backward_values": "dx is wrong"}),
    "dx_missing": ('''
_backward = batchnorm_backward
def batchnorm_backward(dout, cache):
    dx, dgamma, dbeta = _backward(dout, cache)
    return None, dgamma, dbeta
''', BACKWARD_TESTS, {"test_bn_backward_small": "dx is None, not a torch.Tensor"}),
    "dgamma_keeps_the_reduced_dims": ('''
_backward = batchnorm_backward
def batchnorm_backward(dout, cache):
    dx, dgamma, dbeta = _backward(dout, cache)
    return dx, dgamma.view(1, -1), dbeta
''', BACKWARD_TESTS,
        {"test_bn_backward_small": "dgamma has the right values but the wrong shape",
         "test_bn_backward_numeric": "dgamma does not have gamma's shape"}),
    "missing_backward": ("del batchnorm_backward\n", BACKWARD_TESTS,
                         {"test_bn_backward_small": "batchnorm_backward() is not defined"}),
    "guarded_uses_torch_batch_norm": ('''
def batchnorm_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    out = torch.nn.functional.batch_norm(x, running_mean, running_var, gamma, beta, training, momentum, eps)
    return out, None
''', FORWARD_TESTS | BACKWARD_TESTS, {"test_bn_forward_train_values": "off limits in this assignment"}),
}


def _scores(bug: str) -> dict:
    return bug_scores(A, bug, BUGS[bug][0])


@pytest.mark.parametrize("bug", list(BUGS))
def test_bn_suite_catches_known_mistakes(bug):
    _, expected, messages = BUGS[bug]
    scores = _scores(bug)
    assert_mistake_caught(scores, expected, messages)


def test_bn_suite_gives_partial_credit():
    scores = _scores("statistics_per_element_for_images")  # only the (N, C, H, W) cases go wrong
    points, max_points, _ = scores["test_bn_forward_train_values"]
    assert 0 < points < max_points
    scores = _scores("backward_forgets_the_statistics_terms")  # dgamma and dbeta are right
    points, max_points, _ = scores["test_bn_backward_values"]
    assert points == pytest.approx(max_points / 2)
    # no dx at all: dgamma and dbeta still earn their share, as they do beside a wrong dx
    points, max_points, _ = _scores("dx_missing")["test_bn_backward_values"]
    assert points == pytest.approx(max_points / 2)


def _tricksref_namespace() -> dict:
    import tricksref

    def batchnorm_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
        out = tricksref.batch_norm(x, running_mean, running_var, gamma, beta, training, momentum, eps)
        return out, None

    return {"batchnorm_forward": batchnorm_forward}


@pytest.mark.parametrize("test", [t for t in suite_tests(A) if t.name in FORWARD_TESTS], ids=lambda t: t.name)
def test_bn_suite_passes_the_reference(test):
    """Each forward test, run as a plain pytest function on tricksref.batch_norm itself, passes (the backward
    tests need a cache the reference does not return: the solution notebook covers them)."""
    test.fn(InProcessSubmission(_tricksref_namespace()))
