"""Batch normalization: torch.nn.functional.batch_norm and torch.nn.BatchNorm*d are the oracle.

In float64 everything must agree to 1e-10: the output, dx, dgamma, dbeta and the running statistics updated in
place. The backward must be the closed form in ``_BatchNormFunction``, which the graph and saved-tensor tests
check directly; torch.autograd.gradcheck checks that closed form against finite differences.
"""

from __future__ import annotations

import doctest
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tricksref
import tricksref.batchnorm
from tricksref.batchnorm import BatchNorm1d, BatchNorm2d, BatchNorm3d, batch_norm
from tricksref.scratch.batchnorm import _BatchNormFunction

TOL = 1e-10
RANKS = {BatchNorm1d: (2, 3), BatchNorm2d: (4,), BatchNorm3d: (5,)}
TORCH_MODULES = {BatchNorm1d: torch.nn.BatchNorm1d, BatchNorm2d: torch.nn.BatchNorm2d,
                 BatchNorm3d: torch.nn.BatchNorm3d}


def _data(shape, seed, dtype=torch.float64, device="cpu", offset=0.0):
    """x with its own mean and scale per channel, gamma, beta, running stats and an upstream gradient g."""
    gen = torch.Generator().manual_seed(seed)
    C = shape[1]
    cshape = (1, C) + (1,) * (len(shape) - 2)
    scale = torch.rand(cshape, generator=gen, dtype=torch.float64) * 3 + 0.1
    loc = torch.randn(cshape, generator=gen, dtype=torch.float64) * 2 + offset
    x = torch.randn(shape, generator=gen, dtype=torch.float64) * scale + loc
    g = torch.randn(shape, generator=gen, dtype=torch.float64)
    w = torch.rand(C, generator=gen, dtype=torch.float64) + 0.5
    b = torch.randn(C, generator=gen, dtype=torch.float64)
    rm = torch.randn(C, generator=gen, dtype=torch.float64)
    rv = torch.rand(C, generator=gen, dtype=torch.float64) + 0.5
    return [t.to(device=device, dtype=dtype) for t in (x, g, w, b, rm, rv)]


def _run(fn, x, g, w, b, rm, rv, **kw):
    """One forward and backward of ``fn``; returns y, dx, dw, db and the running stats after the update."""
    x = x.detach().clone().requires_grad_()
    w = None if w is None else w.detach().clone().requires_grad_()
    b = None if b is None else b.detach().clone().requires_grad_()
    rm = None if rm is None else rm.clone()
    rv = None if rv is None else rv.clone()
    y = fn(x, rm, rv, w, b, **kw)
    y.backward(g)
    return {"y": y.detach(), "dx": x.grad, "dw": None if w is None else w.grad,
            "db": None if b is None else b.grad, "running_mean": rm, "running_var": rv}


def _assert_same(got: dict, want: dict, atol=TOL, rtol=0.0):
    for key, w in want.items():
        g = got[key]
        if w is None:
            assert g is None, key
            continue
        assert g.dtype == w.dtype and g.shape == w.shape, (key, g.dtype, w.dtype, g.shape, w.shape)
        torch.testing.assert_close(g, w, atol=atol, rtol=rtol, msg=lambda m, key=key: f"{key}: {m}")


# ----------------------------------------------------------------------------------------------------------
# the functional against torch.nn.functional.batch_norm


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rank=st.integers(2, 5), n=st.integers(1, 5), c=st.integers(1, 5), spatial=st.integers(1, 5),
       training=st.booleans(), affine=st.sampled_from(["both", "weight", "bias", "none"]),
       stats=st.booleans(), momentum=st.sampled_from([0.0, 0.1, 0.5, 1.0]) | st.floats(0, 1),
       eps=st.sampled_from([1e-5, 1e-3, 0.5]), seed=st.integers(0, 2**31 - 1))
def test_bn_matches_torch(device, rank, n, c, spatial, training, affine, stats, momentum, eps, seed):
    shape = (n, c) + (spatial,) * (rank - 2)
    if training and n * spatial ** (rank - 2) == 1:
        n, shape = 2, (2,) + shape[1:]  # one value per channel is an error in training (tested below)
    x, g, w, b, rm, rv = _data(shape, seed, device=device)
    w = w if affine in ("both", "weight") else None
    b = b if affine in ("both", "bias") else None
    if not stats and not training:
        stats = True  # eval needs the running statistics (tested below)
    rm, rv = (rm, rv) if stats else (None, None)
    kw = dict(training=training, momentum=momentum, eps=eps)
    _assert_same(_run(batch_norm, x, g, w, b, rm, rv, **kw), _run(F.batch_norm, x, g, w, b, rm, rv, **kw))


@pytest.mark.parametrize("shape", [(64, 3), (4, 3, 50), (8, 5, 7, 9), (2, 3, 4, 5, 6)])
@pytest.mark.parametrize("training", [True, False])
def test_bn_matches_torch_larger(device, shape, training):
    x, g, w, b, rm, rv = _data(shape, seed=1, device=device, offset=5.0)
    kw = dict(training=training, momentum=0.3, eps=1e-5)
    _assert_same(_run(batch_norm, x, g, w, b, rm, rv, **kw), _run(F.batch_norm, x, g, w, b, rm, rv, **kw))


def test_bn_running_var_is_unbiased_and_momentum_is_torchs():
    x = torch.tensor([[1.0], [2.0], [4.0], [9.0]], dtype=torch.float64)  # m = 4, one channel
    rm, rv = torch.full((1,), 10.0, dtype=torch.float64), torch.full((1,), 3.0, dtype=torch.float64)
    y = batch_norm(x, rm, rv, training=True, momentum=0.25, eps=1e-12)
    mean, biased = 4.0, ((1 - 4) ** 2 + (2 - 4) ** 2 + 0 + (9 - 4) ** 2) / 4  # 9.5
    unbiased = biased * 4 / 3
    assert rm.item() == pytest.approx(0.75 * 10.0 + 0.25 * mean)  # running = (1 - m) running + m batch
    assert rv.item() == pytest.approx(0.75 * 3.0 + 0.25 * unbiased)
    torch.testing.assert_close(y, (x - mean) / math.sqrt(biased + 1e-12))  # normalized with the biased one


@pytest.mark.parametrize("training", [True, False])
def test_bn_channels_last(device, training):
    x, g, w, b, rm, rv = _data((4, 6, 5, 7), seed=2, device=device)
    xl, gl = x.to(memory_format=torch.channels_last), g.to(memory_format=torch.channels_last)
    kw = dict(training=training, momentum=0.1, eps=1e-5)
    got = _run(batch_norm, xl, gl, w, b, rm, rv, **kw)
    assert got["y"].is_contiguous(memory_format=torch.channels_last)
    assert got["dx"].is_contiguous(memory_format=torch.channels_last)
    _assert_same(got, _run(F.batch_norm, x, g, w, b, rm, rv, **kw))

    x3, g3 = x.unsqueeze(2).expand(4, 6, 3, 5, 7), g.unsqueeze(2).expand(4, 6, 3, 5, 7)
    x3 = x3.contiguous(memory_format=torch.channels_last_3d)
    g3 = g3.contiguous(memory_format=torch.channels_last_3d)
    got = _run(batch_norm, x3, g3, w, b, rm, rv, **kw)
    assert got["y"].is_contiguous(memory_format=torch.channels_last_3d)
    _assert_same(got, _run(F.batch_norm, x3.contiguous(), g3.contiguous(), w, b, rm, rv, **kw))


def test_bn_non_contiguous_input():
    x, g, w, b, rm, rv = _data((5, 7, 4, 6), seed=3)
    xt, gt = x.transpose(2, 3).contiguous().transpose(2, 3), g.transpose(0, 3).contiguous().transpose(0, 3)
    kw = dict(training=True, momentum=0.1, eps=1e-5)
    _assert_same(_run(batch_norm, xt, gt, w, b, rm, rv, **kw), _run(F.batch_norm, x, g, w, b, rm, rv, **kw))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bn_float_dtypes_on_device(device, dtype):
    x, g, w, b, rm, rv = _data((8, 4, 6, 6), seed=4, device=device, dtype=dtype)
    tol = dict(atol=TOL, rtol=0) if dtype == torch.float64 else dict(atol=2e-5, rtol=2e-5)
    for training in (True, False):
        kw = dict(training=training, momentum=0.1, eps=1e-5)
        _assert_same(_run(batch_norm, x, g, w, b, rm, rv, **kw), _run(F.batch_norm, x, g, w, b, rm, rv, **kw),
                     **tol)


@pytest.mark.parametrize("seed", range(4))
def test_bn_float32_as_accurate_as_torch_when_mean_dominates(seed):
    # |mu| = 100 sigma. sigma^2 as E[x^2] - mu^2, or sum(g x-hat) as rstd (sum(g x) - mu sum(g)), or a mean
    # that drifts by a few ulps: each costs digits in float32. Ours stays as near float64 as torch's kernel
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(64, 4, 16, 16, generator=gen, dtype=torch.float64) + 100.0).float().double()
    g = torch.randn(64, 4, 16, 16, generator=gen, dtype=torch.float64).float().double()
    w, b = torch.ones(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    rm, rv = torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    kw = dict(training=True, momentum=0.1, eps=1e-5)
    exact = _run(F.batch_norm, x, g, w, b, rm, rv, **kw)  # float64 on the float32 values

    def errors(fn):
        got = _run(fn, *(t.float() for t in (x, g, w, b, rm, rv)), **kw)
        err = {k: ((got[k].double() - v).abs().max() / v.abs().max()).item() for k, v in exact.items()}
        err["dw"] = ((got["dw"].double() - exact["dw"]).abs() / exact["dw"].abs()).max().item()  # per channel
        return err

    ours, ref = errors(batch_norm), errors(F.batch_norm)
    for key in exact:
        assert ours[key] <= 2.5 * ref[key] + 1e-6, (key, ours[key], ref[key])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("stats_dtype", ["same", "float32"])
def test_bn_half_precision_cpu(dtype, stats_dtype):
    x64, g64, w64, b64, rm64, rv64 = _data((8, 4, 5, 5), seed=6)
    x, g = x64.to(dtype), g64.to(dtype)  # the rounded input is the input; float64 on it is the truth
    pdtype = dtype if stats_dtype == "same" else torch.float32
    w, b, rm, rv = (t.to(pdtype) for t in (w64, b64, rm64, rv64))
    unit = torch.finfo(dtype).eps
    for training in (True, False):
        kw = dict(training=training, momentum=0.1, eps=1e-5)
        got = _run(batch_norm, x, g, w, b, rm, rv, **kw)
        ref = _run(F.batch_norm, x, g, w, b, rm, rv, **kw)
        exact = _run(F.batch_norm, *(t.double() for t in (x, g, w, b, rm, rv)), **kw)
        for key in got:
            assert got[key].dtype == ref[key].dtype, key  # output and grads in the input's/parameter's dtype
            err = (got[key].double() - exact[key]).abs().max().item()
            err_torch = (ref[key].double() - exact[key]).abs().max().item()
            scale = exact[key].abs().max().item()
            # statistics in float32: at most a few roundings to the storage dtype, like torch's own kernel
            assert err <= 4 * unit * scale + err_torch, (key, training, err, err_torch, scale)


def test_bn_empty_batch_matches_torch():
    x, g, w, b, rm, rv = _data((3, 4, 2), seed=7)
    empty_x, empty_g = x[:0], g[:0]
    kw = dict(training=True, momentum=0.1, eps=1e-5)
    got = _run(batch_norm, empty_x, empty_g, w, b, rm, rv, **kw)
    _assert_same(got, _run(F.batch_norm, empty_x, empty_g, w, b, rm, rv, **kw))
    torch.testing.assert_close(got["running_mean"], rm)  # untouched
    assert torch.equal(got["dw"], torch.zeros_like(w))


# ----------------------------------------------------------------------------------------------------------
# the backward is ours: the closed form, checked numerically and structurally


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_bn_gradcheck(device, training, affine):
    x, _, w, b, rm, rv = _data((3, 4, 5), seed=8, device=device)
    inputs = [x.requires_grad_()] + ([w.requires_grad_(), b.requires_grad_()] if affine else [])

    def f(x, w=None, b=None):
        # fresh running stats each call: gradcheck evaluates f many times and training updates them in place
        return batch_norm(x, rm.clone(), rv.clone(), w, b, training=training, momentum=0.1, eps=1e-3)

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-8, rtol=1e-6)


def test_bn_gradcheck_without_running_stats_2d():
    x, _, w, b, _, _ = _data((6, 3), seed=9)
    inputs = (x.requires_grad_(), w.requires_grad_(), b.requires_grad_())
    assert torch.autograd.gradcheck(lambda x, w, b: batch_norm(x, None, None, w, b, training=True), inputs)


@pytest.mark.parametrize("training", [True, False])
def test_bn_backward_is_ours(training):
    x, g, w, b, rm, rv = _data((4, 3, 5), seed=10)
    x.requires_grad_(), w.requires_grad_(), b.requires_grad_()
    y = batch_norm(x, rm, rv, w, b, training=training)
    node = y.grad_fn
    assert type(node).__name__ == "_BatchNormFunctionBackward"
    # no graph of the forward was recorded: the node's inputs are the leaves themselves
    leaves = [nf[0].variable if nf[0] is not None else None for nf in node.next_functions[:3]]
    assert leaves[0] is x and leaves[1] is w and leaves[2] is b
    assert all(nf[0] is None for nf in node.next_functions[3:])  # running stats, flags: not differentiable

    ran = []
    node.register_hook(lambda grad_inputs, grad_outputs: ran.append(grad_inputs))
    y.backward(g)
    assert len(ran) == 1  # our backward ran, once
    dx, dw, db, drm, drv = ran[0]  # one slot per tensor argument
    assert dx is not None and torch.equal(dx, x.grad) and torch.equal(dw, w.grad) and torch.equal(db, b.grad)
    assert drm is None and drv is None


def test_bn_saves_only_x_and_per_channel_vectors():
    x, g, w, b, rm, rv = _data((6, 5, 7, 7), seed=11)
    x.requires_grad_(), w.requires_grad_(), b.requires_grad_()
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = batch_norm(x, rm, rv, w, b, training=True)
    full = [t for t in saved if t.numel() == x.numel()]
    assert len(full) == 1 and full[0].data_ptr() == x.data_ptr()  # x itself: no x-hat copy kept alive
    assert all(t.numel() == x.shape[1] for t in saved if t.numel() != x.numel())
    y.backward(g)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(4, 3), (3, 2, 5)])
def test_bn_gradgradcheck(training, shape):
    # second derivatives through the closed-form backward (its graph is built from x when create_graph=True)
    x, _, w, b, rm, rv = _data(shape, seed=12)
    inputs = (x.requires_grad_(), w.requires_grad_(), b.requires_grad_())

    def f(x, w, b):
        return batch_norm(x, rm.clone(), rv.clone(), w, b, training=training, momentum=0.1, eps=1e-3)

    assert torch.autograd.gradgradcheck(f, inputs)


def test_bn_gradient_penalty_matches_torch():
    # issue 14's reproduction: a gradient penalty through BN used to give a wrong value without an error
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    lin = torch.nn.Linear(3, 3).double()
    grads = []
    for bn in (BatchNorm1d(3, dtype=torch.float64), torch.nn.BatchNorm1d(3, dtype=torch.float64)):
        (gx,) = torch.autograd.grad(bn(lin(x)).tanh().sum(), x, create_graph=True)
        grads.append(torch.autograd.grad(gx.pow(2).sum(), lin.weight)[0])
    torch.testing.assert_close(grads[0], grads[1], atol=TOL, rtol=0)
    assert grads[0].abs().max() > 1e-3  # a penalty that depends on the weights at all


def test_bn_only_parameter_gradients():
    # x without requires_grad: dgamma and dbeta still match, and no dx is computed
    x, g, w, b, rm, rv = _data((5, 4, 3), seed=13)
    ours_w, ours_b = w.clone().requires_grad_(), b.clone().requires_grad_()
    ref_w, ref_b = w.clone().requires_grad_(), b.clone().requires_grad_()
    batch_norm(x, rm.clone(), rv.clone(), ours_w, ours_b, training=True).backward(g)
    F.batch_norm(x, rm.clone(), rv.clone(), ref_w, ref_b, training=True).backward(g)
    torch.testing.assert_close(ours_w.grad, ref_w.grad, atol=TOL, rtol=0)
    torch.testing.assert_close(ours_b.grad, ref_b.grad, atol=TOL, rtol=0)


# ----------------------------------------------------------------------------------------------------------
# the modules against torch.nn.BatchNorm*d


def _module_input(cls, rank, seed, batch=6, C=4, device="cpu"):
    shape = (batch, C) + (5,) * (rank - 2)
    return _data(shape, seed, device=device)[:2]


@pytest.mark.parametrize("cls,rank", [(BatchNorm1d, 2), (BatchNorm1d, 3), (BatchNorm2d, 4), (BatchNorm3d, 5)])
@pytest.mark.parametrize("momentum", [0.1, 0.7, None])
@pytest.mark.parametrize("affine,track", [(True, True), (False, True), (True, False)])
def test_bn_module_matches_torch_over_steps(device, cls, rank, momentum, affine, track):
    kw = dict(momentum=momentum, affine=affine, track_running_stats=track, device=device, dtype=torch.float64)
    ours, ref = cls(4, **kw), TORCH_MODULES[cls](4, **kw)
    with torch.no_grad():  # non-trivial gamma and beta, the same in both
        for m in (ours, ref):
            if affine:
                m.weight.copy_(torch.linspace(0.5, 2.0, 4))
                m.bias.copy_(torch.linspace(-1.0, 1.0, 4))
    opt_o = torch.optim.SGD(ours.parameters(), lr=0.1) if affine else None
    opt_r = torch.optim.SGD(ref.parameters(), lr=0.1) if affine else None
    for step in range(4):
        x, g = _module_input(cls, rank, seed=100 + step, device=device)
        xo, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
        yo, yr = ours(xo), ref(xr)
        yo.backward(g), yr.backward(g)
        torch.testing.assert_close(yo, yr, atol=TOL, rtol=0)
        torch.testing.assert_close(xo.grad, xr.grad, atol=TOL, rtol=0)
        if affine:
            torch.testing.assert_close(ours.weight.grad, ref.weight.grad, atol=TOL, rtol=0)
            torch.testing.assert_close(ours.bias.grad, ref.bias.grad, atol=TOL, rtol=0)
            opt_o.step(), opt_r.step(), opt_o.zero_grad(), opt_r.zero_grad()
        for key, want in ref.state_dict().items():
            torch.testing.assert_close(ours.state_dict()[key], want, atol=TOL, rtol=0, msg=key)
    ours.eval(), ref.eval()
    for step in range(2):
        x, g = _module_input(cls, rank, seed=200 + step, device=device)
        xo, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
        yo, yr = ours(xo), ref(xr)
        yo.backward(g), yr.backward(g)
        torch.testing.assert_close(yo, yr, atol=TOL, rtol=0)
        torch.testing.assert_close(xo.grad, xr.grad, atol=TOL, rtol=0)
    for key, want in ref.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[key], want, atol=TOL, rtol=0, msg=key)


def test_bn_module_momentum_none_is_cumulative_average():
    bn = BatchNorm1d(3, momentum=None, dtype=torch.float64)
    batches = [_data((10, 3), seed=300 + i)[0] for i in range(5)]
    for x in batches:
        bn(x)
    assert bn.num_batches_tracked.item() == 5
    # the plain average of the batch means and of the unbiased batch variances
    means, variances = torch.stack([x.mean(0) for x in batches]), torch.stack([x.var(0) for x in batches])
    torch.testing.assert_close(bn.running_mean, means.mean(0), atol=TOL, rtol=0)
    torch.testing.assert_close(bn.running_var, variances.mean(0), atol=TOL, rtol=0)


def test_bn_module_without_running_stats_uses_batch_stats_in_eval():
    bn = BatchNorm2d(3, track_running_stats=False, dtype=torch.float64).eval()
    x = _data((4, 3, 5, 5), seed=14)[0]
    assert bn.running_mean is None and bn.num_batches_tracked is None
    torch.testing.assert_close(bn(x), F.batch_norm(x, None, None, bn.weight, bn.bias, training=True),
                               atol=TOL, rtol=0)


@pytest.mark.parametrize("cls", [BatchNorm1d, BatchNorm2d, BatchNorm3d])
def test_bn_state_dict_round_trips_with_torch(cls):
    rank = RANKS[cls][-1]
    ref = TORCH_MODULES[cls](4, dtype=torch.float64)
    for step in range(3):  # give torch's module non-default statistics and counter
        ref(_module_input(cls, rank, seed=400 + step)[0])
    with torch.no_grad():
        ref.weight.mul_(1.5), ref.bias.add_(0.25)
    ours = cls(4, dtype=torch.float64)
    assert set(ours.state_dict()) == set(ref.state_dict()) == {
        "weight", "bias", "running_mean", "running_var", "num_batches_tracked"}
    ours.load_state_dict(ref.state_dict(), strict=True)  # torch -> ours
    x = _module_input(cls, rank, seed=450)[0]
    ours.eval(), ref.eval()
    torch.testing.assert_close(ours(x), ref(x), atol=TOL, rtol=0)

    ours.train()
    for step in range(2):  # now ours moves on
        ours(_module_input(cls, rank, seed=500 + step)[0])
    back = TORCH_MODULES[cls](4, dtype=torch.float64)
    back.load_state_dict(ours.state_dict(), strict=True)  # ours -> torch
    assert back.num_batches_tracked.item() == 5
    ours.eval(), back.eval()
    torch.testing.assert_close(back(x), ours(x), atol=TOL, rtol=0)


def test_bn_state_dict_loads_inside_a_model_and_old_checkpoints():
    ref = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    ref(torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(0)))
    ours = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), BatchNorm2d(4))
    ours.load_state_dict(ref.state_dict(), strict=True)
    assert ours[1].num_batches_tracked.item() == 1

    old = ref.state_dict()  # a checkpoint from before num_batches_tracked existed (module version 1)
    del old["1.num_batches_tracked"]
    old._metadata["1"]["version"] = 1
    fresh = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), BatchNorm2d(4))
    fresh.load_state_dict(old, strict=True)
    assert fresh[1].num_batches_tracked.item() == 0
    torch.testing.assert_close(fresh[1].running_mean, ref[1].running_mean)


@pytest.mark.parametrize("kw", [{}, dict(eps=1e-3, momentum=None), dict(affine=False),
                                dict(track_running_stats=False), dict(bias=False)])
def test_bn_module_repr_and_buffers_like_torch(kw):
    ours, ref = BatchNorm2d(7, **kw), torch.nn.BatchNorm2d(7, **kw)
    assert repr(ours) == repr(ref)
    assert ours.extra_repr() == ref.extra_repr()
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in ref.named_buffers()]
    assert set(ours.state_dict()) == set(ref.state_dict())


def test_bn_module_reset_and_dtype_device():
    bn = BatchNorm2d(3, dtype=torch.float64)
    assert bn.weight.dtype == bn.running_var.dtype == torch.float64
    assert bn.num_batches_tracked.dtype == torch.long
    bn(_data((4, 3, 2, 2), seed=15)[0])
    with torch.no_grad():
        bn.weight.fill_(3.0)
    bn.reset_running_stats()
    assert torch.equal(bn.running_mean, torch.zeros(3, dtype=torch.float64))
    assert torch.equal(bn.running_var, torch.ones(3, dtype=torch.float64))
    assert bn.num_batches_tracked.item() == 0
    assert torch.equal(bn.weight, torch.full((3,), 3.0, dtype=torch.float64))  # parameters kept
    bn.reset_parameters()
    assert torch.equal(bn.weight, torch.ones(3, dtype=torch.float64))
    assert torch.equal(bn.bias, torch.zeros(3, dtype=torch.float64))


def test_bn_module_half_on_cpu_like_torch():
    x = _data((8, 4, 5, 5), seed=16)[0]
    for dtype in (torch.float16, torch.bfloat16):
        ours, ref = BatchNorm2d(4).to(dtype), torch.nn.BatchNorm2d(4).to(dtype)
        yo, yr = ours(x.to(dtype)), ref(x.to(dtype))
        assert yo.dtype == dtype and ours.running_var.dtype == ref.running_var.dtype == dtype
        unit = torch.finfo(dtype).eps
        torch.testing.assert_close(yo.float(), yr.float(), atol=8 * unit * yr.abs().max().item(), rtol=0)
        torch.testing.assert_close(ours.running_var.float(), ref.running_var.float(), atol=4 * unit, rtol=0)


def test_bn_module_channels_last_on_device(device):
    x, g = _module_input(BatchNorm2d, 4, seed=17, device=device)
    ours = BatchNorm2d(4, device=device, dtype=torch.float64).to(memory_format=torch.channels_last)
    ref = torch.nn.BatchNorm2d(4, device=device, dtype=torch.float64)
    xl = x.to(memory_format=torch.channels_last).requires_grad_()
    y = ours(xl)
    y.backward(g)
    assert y.is_contiguous(memory_format=torch.channels_last)
    xr = x.clone().requires_grad_()
    ref(xr).backward(g)
    torch.testing.assert_close(xl.grad, xr.grad, atol=TOL, rtol=0)
    torch.testing.assert_close(ours.running_var, ref.running_var, atol=TOL, rtol=0)


@settings(max_examples=25, deadline=None)
@given(cls_rank=st.sampled_from([(BatchNorm1d, 2), (BatchNorm1d, 3), (BatchNorm2d, 4), (BatchNorm3d, 5)]),
       batch=st.integers(2, 5), C=st.integers(1, 4), momentum=st.none() | st.floats(0, 1),
       affine=st.booleans(), track=st.booleans(), steps=st.integers(1, 3), seed=st.integers(0, 2**31 - 1))
def test_bn_module_matches_torch_random(cls_rank, batch, C, momentum, affine, track, steps, seed):
    cls, rank = cls_rank
    kw = dict(momentum=momentum, affine=affine, track_running_stats=track, dtype=torch.float64)
    ours, ref = cls(C, **kw), TORCH_MODULES[cls](C, **kw)
    for mode, n in (("train", steps), ("eval", 1)):
        ours.train(mode == "train"), ref.train(mode == "train")
        for step in range(n):
            x, g = _module_input(cls, rank, seed=seed + step, batch=batch, C=C)
            xo, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
            yo, yr = ours(xo), ref(xr)
            yo.backward(g), yr.backward(g)
            torch.testing.assert_close(yo, yr, atol=TOL, rtol=0)
            torch.testing.assert_close(xo.grad, xr.grad, atol=TOL, rtol=0)
        for (name, got), want in zip(ours.state_dict().items(), ref.state_dict().values(), strict=True):
            torch.testing.assert_close(got, want, atol=TOL, rtol=0, msg=name)
        if affine:
            torch.testing.assert_close(ours.weight.grad, ref.weight.grad, atol=TOL, rtol=0)
            torch.testing.assert_close(ours.bias.grad, ref.bias.grad, atol=TOL, rtol=0)


def test_bn_docstring_examples_run():
    result = doctest.testmod(tricksref.batchnorm, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 10 and result.failed == 0


def test_bn_exported_from_tricksref():
    assert tricksref.batch_norm is batch_norm
    assert tricksref.BatchNorm1d is BatchNorm1d and tricksref.BatchNorm2d is BatchNorm2d
    assert tricksref.BatchNorm3d is BatchNorm3d
    assert _BatchNormFunction.apply is not None


# ----------------------------------------------------------------------------------------------------------
# bad input: a ValueError/TypeError that names the parameter


def _ok_args(C=3):
    return dict(running_mean=torch.zeros(C), running_var=torch.ones(C), weight=torch.ones(C),
                bias=torch.zeros(C))


@pytest.mark.parametrize("name", ["running_mean", "running_var", "weight", "bias"])
def test_bn_rejects_wrong_length(name):
    args = _ok_args()
    args[name] = torch.ones(4)
    with pytest.raises(ValueError, match=rf"{name}: expected shape \(3,\)"):
        batch_norm(torch.randn(5, 3, 2), training=True, **args)


def test_bn_rejects_one_value_per_channel_in_training():
    for shape in [(1, 3), (1, 3, 1), (1, 3, 1, 1)]:
        with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
            batch_norm(torch.randn(shape), **_ok_args(), training=True)
        batch_norm(torch.randn(shape), **_ok_args(), training=False)  # fine with running statistics
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        BatchNorm1d(3)(torch.randn(1, 3))


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool])
def test_bn_rejects_integer_tensors(dtype):
    with pytest.raises(TypeError, match="input: expected a floating-point tensor"):
        batch_norm(torch.ones(4, 3, dtype=dtype), **_ok_args(), training=True)
    with pytest.raises(TypeError, match="input: expected a floating-point tensor"):
        BatchNorm1d(3)(torch.ones(4, 3, dtype=dtype))
    args = _ok_args()
    args["running_var"] = torch.ones(3, dtype=dtype)
    with pytest.raises(TypeError, match="running_var: expected a floating-point tensor"):
        batch_norm(torch.randn(4, 3), **args)
    with pytest.raises(TypeError, match="input: expected a torch.Tensor"):
        batch_norm([[1.0, 2.0]], None, None, training=True)


def test_bn_rejects_rank_below_two():
    with pytest.raises(ValueError, match="input: expected a tensor with at least 2 dimensions"):
        batch_norm(torch.randn(5), torch.zeros(5), torch.ones(5))
    with pytest.raises(ValueError, match="input: expected a tensor with at least 2 dimensions"):
        batch_norm(torch.tensor(1.0), None, None, training=True)


@pytest.mark.parametrize("cls,got", [(BatchNorm1d, 4), (BatchNorm1d, 1), (BatchNorm2d, 2), (BatchNorm2d, 3),
                                     (BatchNorm2d, 5), (BatchNorm3d, 4)])
def test_bn_module_rejects_wrong_rank_like_torch(cls, got):
    x = torch.randn((2, 3, 4, 4, 4, 4)[:got])
    with pytest.raises(ValueError) as ours:
        cls(3)(x)
    with pytest.raises(ValueError) as ref:
        TORCH_MODULES[cls](3)(x)
    assert str(ours.value) == str(ref.value)  # e.g. "expected 4D input (got 2D input)"
    assert f"(got {got}D input)" in str(ours.value)


@pytest.mark.parametrize("momentum,exc", [(1.5, ValueError), (-0.1, ValueError), (None, TypeError),
                                          ("0.1", TypeError), (float("nan"), ValueError)])
def test_bn_rejects_bad_momentum(momentum, exc):
    with pytest.raises(exc, match="momentum"):
        batch_norm(torch.randn(4, 3), **_ok_args(), training=True, momentum=momentum)


@pytest.mark.parametrize("kw,exc,name", [(dict(num_features=0), ValueError, "num_features"),
                                         (dict(num_features=2.5), TypeError, "num_features"),
                                         (dict(momentum=1.5), ValueError, "momentum"),
                                         (dict(momentum=-1.0), ValueError, "momentum"),
                                         (dict(eps=0.0), ValueError, "eps"),
                                         (dict(affine="yes"), ValueError, "affine"),
                                         (dict(dtype=torch.int64), TypeError, "dtype")])
def test_bn_module_rejects_bad_arguments(kw, exc, name):
    kw = {"num_features": 3, **kw}
    with pytest.raises(exc, match=name):
        BatchNorm2d(**kw)


def test_bn_rejects_bad_running_stats():
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="running_mean, running_var: expected tensors in evaluation mode"):
        batch_norm(x, None, None, training=False)
    with pytest.raises(ValueError, match="running_mean, running_var: expected both None or both tensors"):
        batch_norm(x, torch.zeros(3), None, training=True)
    with pytest.raises(ValueError, match="running_mean: running statistics are not differentiable"):
        batch_norm(x, torch.zeros(3, requires_grad=True), torch.ones(3), training=True)
    with pytest.raises(TypeError, match="running_var: expected dtype torch.float32"):
        batch_norm(x, torch.zeros(3), torch.ones(3, dtype=torch.float64), training=True)
    with pytest.raises(TypeError, match="weight: expected dtype torch.float64"):
        batch_norm(x.double(), torch.zeros(3).double(), torch.ones(3).double(), torch.ones(3), training=True)
    with pytest.raises(ValueError, match="eps: expected a value in"):
        batch_norm(x, None, None, training=True, eps=0.0)
    with pytest.raises(TypeError, match="training: expected a bool"):
        batch_norm(x, None, None, training=1)
    with pytest.raises(ValueError, match="running_mean: expected shape"):
        batch_norm(x, torch.zeros(3, 1), torch.ones(3), training=True)
