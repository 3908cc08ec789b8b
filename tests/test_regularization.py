"""Weight decay: the explicit penalty against torch's weight_decay, L2 vs decoupled decay under Adam, and the
parameter groups that exempt biases and normalization parameters."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tricksref.regularization import decoupled_weight_decay_, l2_penalty, weight_decay_groups

F64 = torch.float64


def make_mlp(device, seed=0):
    torch.manual_seed(seed)  # nn.Linear draws its init from the global generator
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).to(device=device, dtype=F64)


def batches(device, n, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 5, generator=g, dtype=F64).to(device),
             torch.randn(8, 3, generator=g, dtype=F64).to(device)) for _ in range(n)]


def train(model, opt, data, alpha_in_loss=0.0):
    """Plain training loop; ``alpha_in_loss`` > 0 adds the lecture's alpha * Omega to the loss."""
    iterates = []
    for x, y in data:
        loss = ((model(x) - y) ** 2).mean()
        if alpha_in_loss:
            loss = loss + l2_penalty(model, alpha_in_loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        iterates.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    return iterates


# ----------------------------------------------------------------------------------------------------
# the explicit penalty

@settings(max_examples=30, deadline=None)
@given(shapes=st.lists(st.lists(st.integers(1, 4), min_size=0, max_size=3), min_size=1, max_size=4),
       alpha=st.one_of(st.just(0.0), st.floats(1e-6, 10.0)), seed=st.integers(0, 2**16))
def test_l2_penalty_value_and_gradient(shapes, alpha, seed):
    g = torch.Generator().manual_seed(seed)
    ws = [torch.randn(s, generator=g, dtype=F64, requires_grad=True) for s in shapes]
    penalty = l2_penalty(ws, alpha)
    expected = 0.0
    for w in ws:  # plain loop: alpha * 1/2 * sum of squares
        for v in w.detach().flatten().tolist():
            expected += 0.5 * alpha * v * v
    assert penalty.dim() == 0
    assert penalty.item() == pytest.approx(expected, rel=1e-12, abs=1e-300)
    penalty.backward()
    for w in ws:  # grad Omega = w, so grad of alpha * Omega = alpha * w
        torch.testing.assert_close(w.grad, alpha * w.detach(), rtol=1e-15, atol=0)


def test_l2_penalty_accepts_module_tensor_and_iterable(device):
    model = make_mlp(device)
    by_module = l2_penalty(model, 0.5)
    by_list = l2_penalty(list(model.parameters()), 0.5)
    by_generator = l2_penalty(model.parameters(), 0.5)
    one = l2_penalty(model[0].weight, 0.5)
    assert by_module.device == model[0].weight.device
    assert torch.equal(by_module, by_list) and torch.equal(by_module, by_generator)
    torch.testing.assert_close(one, 0.25 * (model[0].weight ** 2).sum())
    assert l2_penalty(model, 0.0).item() == 0.0


@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_l2_penalty_same_iterates_as_sgd_weight_decay(device, momentum, nesterov):
    # alpha a power of two: alpha * w is then exact, so grad J + alpha * w is rounded once in both ways and
    # the iterates must agree bit for bit
    alpha, data = 2.0**-5, batches(device, 12)
    explicit_model, torch_model = make_mlp(device), make_mlp(device)
    explicit = train(explicit_model, torch.optim.SGD(explicit_model.parameters(), lr=0.1, momentum=momentum,
                                                     nesterov=nesterov), data, alpha_in_loss=alpha)
    builtin = train(torch_model, torch.optim.SGD(torch_model.parameters(), lr=0.1, momentum=momentum,
                                                 nesterov=nesterov, weight_decay=alpha), data)
    for k, (a, b) in enumerate(zip(explicit, builtin, strict=True)):
        assert torch.equal(a, b), f"step {k}: max difference {(a - b).abs().max().item()}"
    plain_model = make_mlp(device)
    plain = train(plain_model, torch.optim.SGD(plain_model.parameters(), lr=0.1, momentum=momentum,
                                               nesterov=nesterov), data)
    assert (plain[-1] - builtin[-1]).abs().max() > 1e-3  # the decay did something


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_l2_penalty_matches_sgd_weight_decay_any_alpha(device, momentum):
    # for a general alpha torch computes grad + alpha * w with one rounding (add(w, alpha=...) is a fused
    # multiply-add on CPU) and autograd with two, so the iterates agree to the last bits, not bit for bit
    alpha, data = 0.037, batches(device, 12)
    m1, m2 = make_mlp(device), make_mlp(device)
    explicit = train(m1, torch.optim.SGD(m1.parameters(), lr=0.1, momentum=momentum), data,
                     alpha_in_loss=alpha)
    builtin = train(m2, torch.optim.SGD(m2.parameters(), lr=0.1, momentum=momentum, weight_decay=alpha), data)
    for a, b in zip(explicit, builtin, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-14)


def test_l2_penalty_is_adams_weight_decay(device):
    # Adam's weight_decay adds alpha * w to the gradient: it is L2 in the loss, not decoupled decay
    alpha, data = 2.0**-4, batches(device, 12)
    m1, m2 = make_mlp(device), make_mlp(device)
    explicit = train(m1, torch.optim.Adam(m1.parameters(), lr=1e-2), data, alpha_in_loss=alpha)
    builtin = train(m2, torch.optim.Adam(m2.parameters(), lr=1e-2, weight_decay=alpha), data)
    for a, b in zip(explicit, builtin, strict=True):
        assert torch.equal(a, b)


# ----------------------------------------------------------------------------------------------------
# decoupled weight decay

def noisy_linear_run(optimizer_cls, weight_decay, steps=200, lr=1e-2, seed=0):
    """Two weights under a linear loss with random-sign gradients: weight 0 has gradient +-10 (large variance
    v), weight 1 has gradient +-0.01. Returns the final weights and Adam's second-moment estimate v."""
    w = nn.Parameter(torch.ones(2, dtype=F64))
    opt = optimizer_cls([w], lr=lr, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(seed)
    scale = torch.tensor([10.0, 0.01], dtype=F64)
    for _ in range(steps):
        w.grad = scale * (torch.randint(0, 2, (2,), generator=g).to(F64) * 2 - 1)
        opt.step()
    return w.detach().clone(), opt.state[w]["exp_avg_sq"].clone()


def test_decoupled_decay_differs_from_l2_under_adam():
    lr, lam, steps = 1e-2, 0.1, 200
    w_plain, v = noisy_linear_run(torch.optim.Adam, 0.0)
    w_l2, _ = noisy_linear_run(torch.optim.Adam, lam)
    w_adamw, _ = noisy_linear_run(torch.optim.AdamW, lam)
    assert v[0] > 1e4 * v[1]  # weight 0's gradient varies far more

    # L2 under Adam: the penalty gradient lam * w is divided by sqrt(v) like the rest of the gradient.
    # Weight 0 (sqrt(v) ~ 10) loses about eta * lam * w / 10 per step; weight 1, whose small v is the
    # penalty's own, loses about eta per step and ends near 0.
    decay_l2 = w_plain - w_l2
    predicted_0 = steps * lr * lam * w_plain[0] / 10.0
    assert 0.5 < decay_l2[0] / predicted_0 < 2.0
    assert w_l2[1].abs() < 0.05 and decay_l2[0] < 0.05 * decay_l2[1]

    # decoupled: both weights shrink by the same factor (1 - eta lam) per step, whatever their gradients
    decay_w = w_plain - w_adamw
    shrink = 1 - (1 - lr * lam) ** steps
    for i in range(2):
        assert decay_w[i] / w_plain[i] == pytest.approx(shrink, rel=0.15)
    assert not torch.allclose(w_l2, w_adamw, rtol=0.05)


def test_decoupled_decay_shrinks_by_exactly_one_minus_eta_lambda(device):
    # a weight with zero loss gradient: Adam's step is 0 / (0 + eps) = 0, so AdamW multiplies it by exactly
    # (1 - eta lambda) each step, while Adam's L2 moves it by about eta each step (the normalized penalty)
    eta, lam = 1e-2, 0.5
    w = nn.Parameter(torch.tensor([3.0, -2.0, 0.5], dtype=F64, device=device))
    w_l2 = nn.Parameter(w.detach().clone())
    adamw = torch.optim.AdamW([w], lr=eta, weight_decay=lam)
    adam_l2 = torch.optim.Adam([w_l2], lr=eta, weight_decay=lam)
    expected = w.detach().clone()
    for _ in range(20):
        w.grad, w_l2.grad = torch.zeros_like(w), torch.zeros_like(w_l2)
        adamw.step()
        adam_l2.step()
        expected = expected * (1 - eta * lam)
        assert torch.equal(w.detach(), expected)
    # L2 under Adam: m / sqrt(v) of a slowly changing penalty gradient is about its sign, so every weight
    # moves about eta per step whatever its size (3, 2 or 0.5), instead of in proportion to it
    moved = (torch.tensor([3.0, -2.0, 0.5], dtype=F64, device=device) - w_l2.detach()).abs()
    torch.testing.assert_close(moved, torch.full_like(moved, 20 * eta), rtol=0.05, atol=0)


@pytest.mark.parametrize("lr", [1e-2, 3e-3])
def test_decoupled_weight_decay_helper_with_adam_is_adamw(device, lr):
    lam, data = 0.05, batches(device, 10)
    m1, m2 = make_mlp(device), make_mlp(device)
    adamw = train(m1, torch.optim.AdamW(m1.parameters(), lr=lr, weight_decay=lam), data)

    adam = torch.optim.Adam(m2.parameters(), lr=lr)
    ours = []
    for x, y in data:
        adam.zero_grad()
        ((m2(x) - y) ** 2).mean().backward()
        decoupled_weight_decay_(m2, lr=lr, weight_decay=lam)  # w <- (1 - eta lambda) w, then the Adam step
        adam.step()
        ours.append(torch.cat([p.detach().flatten() for p in m2.parameters()]))
    for a, b in zip(adamw, ours, strict=True):
        assert torch.equal(a, b)


def test_decoupled_weight_decay_helper_gives_sgdw(device):
    # SGD with momentum and decoupled decay (plain loop): w <- (1 - eta lambda) w - eta buf, buf <- mu buf + G
    eta, lam, mu = 0.1, 0.2, 0.9
    grads = torch.randn(6, 4, generator=torch.Generator().manual_seed(0), dtype=F64).to(device)
    w = nn.Parameter(torch.ones(4, dtype=F64, device=device))
    opt = torch.optim.SGD([w], lr=eta, momentum=mu)
    w_ref, buf = torch.ones(4, dtype=F64, device=device), None
    for G in grads:
        w.grad = G.clone()
        decoupled_weight_decay_([w], lr=eta, weight_decay=lam)
        opt.step()
        buf = G.clone() if buf is None else mu * buf + G
        w_ref = (1 - eta * lam) * w_ref - eta * buf
        torch.testing.assert_close(w.detach(), w_ref, rtol=1e-14, atol=1e-15)


# ----------------------------------------------------------------------------------------------------
# parameter groups

class SpatialNet(nn.Module):
    def __init__(self, extra_norm: type[nn.Module] | None = None):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.ln = nn.LayerNorm([4, 6, 6])      # gamma of ndim 3: exempt by type, not by ndim
        self.gn = nn.GroupNorm(2, 4)
        self.conv2 = nn.Conv2d(4, 4, 1, bias=False)
        self.fc = nn.Linear(4 * 36, 5)
        self.head = nn.Linear(5, 5)
        self.scale = nn.Parameter(torch.ones(()))  # a learnable 0-d scalar: exempt by ndim
        self.extra = extra_norm() if extra_norm is not None else None


class MatrixNorm(nn.Module):
    """A made-up normalization layer with a 2-D gain, exempt only when passed in ``norm_types``."""

    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(2, 2))


def names_of(model, params):
    ids = {id(p): n for n, p in model.named_parameters()}
    return [ids[id(p)] for p in params]


def test_weight_decay_groups_exempt_bias_and_norm_params():
    model = SpatialNet()
    decay, exempt = weight_decay_groups(model, 5e-4)
    assert decay["weight_decay"] == 5e-4 and exempt["weight_decay"] == 0.0
    assert names_of(model, decay["params"]) == ["conv.weight", "conv2.weight", "fc.weight", "head.weight"]
    assert sorted(names_of(model, exempt["params"])) == sorted(
        ["conv.bias", "bn.weight", "bn.bias", "ln.weight", "ln.bias", "gn.weight", "gn.bias", "fc.bias",
         "head.bias", "scale"])


def test_weight_decay_groups_keep_every_parameter_once():
    model = SpatialNet(extra_norm=MatrixNorm)
    model.head.weight = nn.Parameter(torch.randn(5, 5))
    model.tied = nn.Linear(5, 5)
    model.tied.weight = model.head.weight  # one tensor, two owners
    model.conv2.weight.requires_grad_(False)  # frozen: still listed once
    groups = weight_decay_groups(model, 0.1)
    listed = [p for g in groups for p in g["params"]]
    assert len(listed) == len({id(p) for p in listed}) == len(list(model.parameters()))
    assert {id(p) for p in listed} == {id(p) for p in model.parameters()}
    order = {id(p): i for i, p in enumerate(model.parameters())}
    for g in groups:
        assert [order[id(p)] for p in g["params"]] == sorted(order[id(p)] for p in g["params"])
    assert "extra.gain" in names_of(model, groups[0]["params"])  # a 2-D gain of an unknown type is decayed
    groups = weight_decay_groups(model, 0.1, norm_types=[MatrixNorm], no_decay=["fc.weight"])
    assert {"extra.gain", "fc.weight"} <= set(names_of(model, groups[1]["params"]))
    assert names_of(model, groups[0]["params"]) == ["conv.weight", "conv2.weight", "head.weight"]


def test_weight_decay_groups_exempt_tricksref_batchnorm():
    bn_module = pytest.importorskip("tricksref.batchnorm")
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), bn_module.BatchNorm2d(4), nn.Flatten(),
                          nn.Linear(4, 2, bias=False), bn_module.BatchNorm1d(2))
    decay, exempt = weight_decay_groups(model, 0.1)
    assert names_of(model, decay["params"]) == ["0.weight", "3.weight"]
    assert sorted(names_of(model, exempt["params"])) == ["1.bias", "1.weight", "4.bias", "4.weight"]


def test_weight_decay_groups_drive_the_optimizer(device):
    model = SpatialNet().to(device=device, dtype=F64)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    lr, wd = 0.5, 0.1
    opt = torch.optim.SGD(weight_decay_groups(model, wd), lr=lr)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()  # zero loss gradient: only the decay moves anything
    decayed = set(names_of(model, opt.param_groups[0]["params"]))
    for n, p in model.named_parameters():
        if n in decayed:
            torch.testing.assert_close(p.detach(), before[n] * (1 - lr * wd), rtol=1e-15, atol=0)
        else:
            assert torch.equal(p.detach(), before[n]), n


# ----------------------------------------------------------------------------------------------------
# bad input

@pytest.mark.parametrize("call, exc, name", [
    (lambda: l2_penalty("weights", 0.1), TypeError, "params"),
    (lambda: l2_penalty([torch.ones(2), torch.ones(2, dtype=torch.long)], 0.1), TypeError, "params[1]"),
    (lambda: l2_penalty([], 0.1), ValueError, "params"),
    (lambda: l2_penalty(torch.ones(2), -0.1), ValueError, "alpha"),
    (lambda: l2_penalty(torch.ones(2), "0.1"), TypeError, "alpha"),
    (lambda: weight_decay_groups([torch.ones(2)], 0.1), TypeError, "model"),
    (lambda: weight_decay_groups(nn.Linear(2, 2), -1.0), ValueError, "weight_decay"),
    (lambda: weight_decay_groups(nn.Linear(2, 2), 0.1, no_decay=["weight", "nope"]), ValueError, "no_decay"),
    (lambda: weight_decay_groups(nn.Linear(2, 2), 0.1, no_decay="weight"), TypeError, "no_decay"),
    (lambda: weight_decay_groups(nn.Linear(2, 2), 0.1, norm_types=["LayerNorm"]), TypeError, "norm_types"),
    (lambda: decoupled_weight_decay_(nn.Linear(2, 2), lr=-1e-3, weight_decay=0.1), ValueError, "lr"),
    (lambda: decoupled_weight_decay_(nn.Linear(2, 2), lr=1e-3, weight_decay=-0.1), ValueError,
     "weight_decay"),
    (lambda: decoupled_weight_decay_(42, lr=1e-3, weight_decay=0.1), TypeError, "params"),
])
def test_regularization_bad_input_names_parameter(call, exc, name):
    with pytest.raises(exc) as info:
        call()
    assert str(info.value).startswith(name), str(info.value)
