"""Forward-mode AD, torch.func (jvp, vmap, grad, a Hessian by jacfwd(jacrev)) and torch.compile on tricksref's
BN, LRN and dropout, against torch's own operators (issue 14, item 2). Float64, tolerances 1e-10.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import grad, jacfwd, jacrev, jvp, vmap

import tricksref

TOL = dict(rtol=1e-10, atol=1e-10)


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


STATS = (_randn(3, seed=5), _randn(3, seed=6).abs() + 0.5)  # running statistics, read in evaluation


PAIRS = {
    "lrn-torch": (lambda t: tricksref.local_response_norm(t, 3, 0.5, 0.75, 1.5),
                  lambda t: F.local_response_norm(t, 3, 0.5, 0.75, 1.5)),
    "lrn-alexnet": (lambda t: tricksref.local_response_norm(t, 2, 0.5, 0.75, 1.5, convention="alexnet"),
                    lambda t: F.local_response_norm(t, 3, 1.5, 0.75, 1.5)),
    "bn-train": (lambda t: tricksref.batch_norm(t, None, None, training=True),
                 lambda t: F.batch_norm(t, None, None, training=True)),
    "bn-eval": (lambda t: tricksref.batch_norm(t, *STATS), lambda t: F.batch_norm(t, *STATS)),
}


@pytest.mark.parametrize("name", list(PAIRS))
def test_func_jvp_vmap_grad_hessian_match_torch(name):
    ours, ref = PAIRS[name]
    x, v = _randn(4, 3, 5, 5, seed=1), _randn(4, 3, 5, 5, seed=2)
    for a, b in zip(jvp(ours, (x,), (v,)), jvp(ref, (x,), (v,)), strict=True):
        torch.testing.assert_close(a, b, **TOL)
    with torch.autograd.forward_ad.dual_level():  # the same through the forward_ad API
        out = torch.autograd.forward_ad.unpack_dual(ours(torch.autograd.forward_ad.make_dual(x, v))).tangent
    torch.testing.assert_close(out, jvp(ref, (x,), (v,))[1], **TOL)
    xs = _randn(6, 4, 3, 5, 5, seed=3)  # vmap over a leading axis: six independent calls
    torch.testing.assert_close(vmap(ours)(xs), vmap(ref)(xs), **TOL)
    torch.testing.assert_close(grad(lambda t: ours(t).tanh().sum())(x),
                               grad(lambda t: ref(t).tanh().sum())(x), **TOL)
    small = x[:2, :, :2, :2].contiguous()
    h = jacfwd(jacrev(lambda t: ours(t).tanh().sum()))(small)
    torch.testing.assert_close(h, jacfwd(jacrev(lambda t: ref(t).tanh().sum()))(small), **TOL)


def test_func_intra_lrn_against_the_student_edition():
    # torch has no intra-channel operator: the student edition's composition of torch ops is the oracle
    from tricksref.student.lrn import local_response_norm as student

    x, v = _randn(2, 3, 5, 4, seed=4), _randn(2, 3, 5, 4, seed=5)
    for conv in ("torch", "alexnet"):
        ours = lambda t, c=conv: tricksref.local_response_norm(t, 3, 0.5, mode="intra", convention=c)  # noqa: E731
        ref = lambda t, c=conv: student(t, 3, 0.5, 0.75, 1.0, "intra", c)  # noqa: E731
        torch.testing.assert_close(jvp(ours, (x,), (v,))[1], jvp(ref, (x,), (v,))[1], **TOL)
        torch.testing.assert_close(vmap(ours)(x), vmap(ref)(x), **TOL)


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_func_dropout(p):
    x = _randn(16, 8, seed=6) + 10.0  # never 0
    y, t = jvp(lambda z: tricksref.dropout(z, p), (x,), (torch.ones_like(x),))
    kept = y != 0
    torch.testing.assert_close(t, kept.double() / (1 - p) if p < 1 else torch.zeros_like(x), rtol=0, atol=0)
    same = vmap(lambda z: tricksref.dropout(z, p), randomness="same")(x.expand(4, 16, 8))
    assert all(torch.equal(r != 0, same[0] != 0) for r in same)  # one mask for every row
    different = vmap(lambda z: tricksref.dropout(z, p), randomness="different")(x.expand(4, 16, 8))
    if 0 < p < 1:
        assert not torch.equal(different[0] != 0, different[1] != 0)
    g = grad(lambda z: tricksref.dropout(z, p, generator=torch.Generator().manual_seed(0)).sum())(x)
    assert set(g.unique().tolist()) <= {0.0, 1.0 / (1 - p)} if p < 1 else torch.equal(g, torch.zeros_like(x))


@pytest.mark.slow
def test_compile_matches_eager(one_thread):
    """torch.compile (inductor, CPU) of a model of tricksref layers: the outputs and gradients of eager."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), tricksref.BatchNorm2d(8),
        tricksref.LocalResponseNorm(3, convention="alexnet"), torch.nn.ReLU(), torch.nn.Flatten(),
        tricksref.Dropout(0.0), torch.nn.Linear(8 * 3 * 3, 2))
    x = torch.randn(4, 3, 5, 5)
    eager = model(x)
    eager.square().sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    stats = model[1].running_mean.clone()
    model.zero_grad()
    model[1].reset_running_stats()
    compiled = torch.compile(model)
    out = compiled(x)
    out.square().sum().backward()
    torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-6)
    for g, p in zip(grads, model.parameters(), strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(model[1].running_mean, stats)  # the in-place update happened once
    model.eval()
    torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-6)
