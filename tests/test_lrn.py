"""tricksref.lrn: torch is the oracle for inter/torch, plain loops over the formulas for the other three."""

from __future__ import annotations

import itertools
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from tricksref.lrn import LocalResponseNorm, local_response_norm

MODES = ("inter", "intra")
CONVENTIONS = ("torch", "alexnet")
TOL64 = dict(rtol=1e-10, atol=1e-10)


def _randn(shape, seed=0, dtype=torch.float64, device="cpu"):
    # drawn in float64 on the CPU, so every dtype and device sees the same numbers
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)


# ---- plain-loop oracles, written from the formulas, not from the implementation ---------------------------

def inter_alexnet_loop(a, n, alpha, beta, k):
    """The lecture: b^i = a^i / (k + alpha * sum_{j=max(0, i-n/2)}^{min(N-1, i+n/2)} (a^j)^2)^beta."""
    N = a.shape[1]
    b = torch.empty_like(a)
    for i in range(N):
        total = torch.zeros_like(a[:, i])
        for j in range(max(0, i - n // 2), min(N - 1, i + n // 2) + 1):
            total += a[:, j] ** 2
        b[:, i] = a[:, i] / (k + alpha * total) ** beta
    return b


def intra_alexnet_loop(a, n, alpha, beta, k):
    """The lecture's intra-channel formula, clipped at the borders (its min(W, .) is the last index W - 1)."""
    spatial = a.shape[2:]
    b = torch.empty_like(a)
    for pos in itertools.product(*map(range, spatial)):
        ranges = [range(max(0, p - n // 2), min(L - 1, p + n // 2) + 1)
                  for p, L in zip(pos, spatial, strict=True)]
        total = torch.zeros_like(a[(..., *pos)])
        for q in itertools.product(*ranges):
            total += a[(..., *q)] ** 2
        b[(..., *pos)] = a[(..., *pos)] / (k + alpha * total) ** beta
    return b


def intra_torch_loop(a, n, alpha, beta, k):
    """DESIGN.md: x * (k + alpha * mean_window(x^2))^-beta, window h - n//2 .. h + (n-1)//2, zero padded."""
    spatial = a.shape[2:]
    pad = []
    for _ in spatial:  # F.pad lists the last dim first; every dim gets the same (before, after)
        pad += [n // 2, (n - 1) // 2]
    sq = F.pad(a**2, pad)
    b = torch.empty_like(a)
    for pos in itertools.product(*map(range, spatial)):
        block = sq[(..., *(slice(p, p + n) for p in pos))]  # the n^d window in padded coordinates
        mean = block.sum(dim=tuple(range(2, a.dim()))) / n ** len(spatial)
        b[(..., *pos)] = a[(..., *pos)] * (k + alpha * mean) ** -beta
    return b


def oracle(a, n, alpha, beta, k, mode, convention):
    if mode == "inter":
        if convention == "torch":
            return F.local_response_norm(a, n, alpha, beta, k)
        return inter_alexnet_loop(a, n, alpha, beta, k)
    return (intra_torch_loop if convention == "torch" else intra_alexnet_loop)(a, n, alpha, beta, k)


def value_and_grad(fn, x, g):
    x = x.detach().clone().requires_grad_()
    y = fn(x)
    (dx,) = torch.autograd.grad(y, x, g)
    return y.detach(), dx


# ---- the torch convention is torch's operator -------------------------------------------------------------

@pytest.mark.parametrize("shape", [(3, 11, 6), (2, 11, 5, 4), (2, 11, 3, 4, 2)], ids=["3d", "4d", "5d"])
@pytest.mark.parametrize("size", range(1, 10))
def test_lrn_matches_torch_every_size(size, shape):
    x, g = _randn(shape, 1), _randn(shape, 2)
    args = (size, 0.3, 0.75, 1.5)  # a large alpha so the window matters at this scale
    y, dx = value_and_grad(lambda t: local_response_norm(t, *args), x, g)
    y_ref, dx_ref = value_and_grad(lambda t: F.local_response_norm(t, *args), x, g)
    torch.testing.assert_close(y, y_ref, **TOL64)
    torch.testing.assert_close(dx, dx_ref, **TOL64)


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(1, 7), min_size=3, max_size=5), size=st.integers(1, 12),
       alpha=st.floats(1e-4, 3.0), beta=st.sampled_from([0.75, 0.5, 1.0, 2.0]) | st.floats(0.05, 2.0),
       k=st.floats(0.5, 3.0), seed=st.integers(0, 2**16))
def test_lrn_matches_torch_random_shapes(shape, size, alpha, beta, k, seed):
    x, g = _randn(shape, seed), _randn(shape, seed + 1)
    y, dx = value_and_grad(lambda t: local_response_norm(t, size, alpha, beta, k), x, g)
    y_ref, dx_ref = value_and_grad(lambda t: F.local_response_norm(t, size, alpha, beta, k), x, g)
    torch.testing.assert_close(y, y_ref, **TOL64)
    torch.testing.assert_close(dx, dx_ref, **TOL64)


@pytest.mark.parametrize("beta", [0.75, 0.5, 1.0, 2.0, 0.3])
def test_lrn_matches_torch_float32(beta):
    # every exponent path of s^-beta, in AlexNet's layer shape
    x = _randn((4, 96, 13, 13), 3, torch.float32) * 10
    y = local_response_norm(x, 5, 1e-2, beta, 2.0)
    torch.testing.assert_close(y, F.local_response_norm(x, 5, 1e-2, beta, 2.0), rtol=2e-6, atol=1e-6)


def test_lrn_negative_base_integer_beta_matches_torch():
    # k < 0 makes s negative; an integer beta still has a real power, as in torch
    x = _randn((2, 6, 3, 3), 4, torch.float32)
    for beta in (1.0, 2.0):
        torch.testing.assert_close(local_response_norm(x, 3, 1e-3, beta, -1.0),
                                   F.local_response_norm(x, 3, 1e-3, beta, -1.0))


# ---- the alexnet convention and intra mode against loops ---------------------------------------------------

def test_lrn_lecture_example_is_one_ninth():
    # n = 2, k = 0, alpha = beta = 1; channel values 2, 1, 2: the centre gives 1 / (0 + 4 + 1 + 4)
    for dtype in (torch.float32, torch.float64):
        a = torch.tensor([2.0, 1.0, 2.0], dtype=dtype).view(1, 3, 1, 1)
        b = local_response_norm(a, 2, alpha=1.0, beta=1.0, k=0.0, convention="alexnet")
        assert b[0, 1, 0, 0].item() == pytest.approx(1 / 9, rel=1e-7, abs=0)
        assert b[0, 0, 0, 0].item() == pytest.approx(2 / 5, rel=1e-7, abs=0)  # clipped: channels 0 and 1 only
    # torch's convention with the same arguments is a different number: window {i-1, i}, alpha / 2
    a = torch.tensor([2.0, 1.0, 2.0], dtype=torch.float64).view(1, 3, 1, 1)
    assert local_response_norm(a, 2, 1.0, 1.0, 0.0)[0, 1, 0, 0].item() == pytest.approx(1 / 2.5)


@settings(max_examples=40, deadline=None)
@given(mode=st.sampled_from(MODES), convention=st.sampled_from(CONVENTIONS),
       shape=st.lists(st.integers(1, 5), min_size=3, max_size=5), size=st.integers(1, 7),
       alpha=st.floats(1e-3, 2.0), beta=st.floats(0.1, 1.5), k=st.floats(0.5, 2.0),
       seed=st.integers(0, 2**16))
def test_lrn_matches_loop_oracle(mode, convention, shape, size, alpha, beta, k, seed):
    x = _randn(shape, seed)
    y = local_response_norm(x, size, alpha, beta, k, mode=mode, convention=convention)
    torch.testing.assert_close(y, oracle(x, size, alpha, beta, k, mode, convention), **TOL64)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 6])
def test_lrn_matches_loop_oracle_4d(mode, convention, size):
    x = _randn((2, 7, 6, 5), size)
    y = local_response_norm(x, size, 0.5, 0.75, 1.0, mode=mode, convention=convention)
    torch.testing.assert_close(y, oracle(x, size, 0.5, 0.75, 1.0, mode, convention), **TOL64)


@pytest.mark.parametrize("n", range(1, 9))
def test_lrn_alexnet_is_torch_with_odd_size_and_alpha_times_size(n):
    # the documented conversion: paper (n, alpha) == torch (size = 2*floor(n/2) + 1, alpha * size)
    x = _randn((2, 9, 4, 4), n)
    size = 2 * (n // 2) + 1
    torch.testing.assert_close(local_response_norm(x, n, 1e-2, 0.75, 2.0, convention="alexnet"),
                               F.local_response_norm(x, size, 1e-2 * size, 0.75, 2.0), **TOL64)


def test_lrn_intra_torch_divides_alpha_by_window_area():
    # a lone spike at the centre of a 5x5 map, n = 3: every 3x3 window that holds it sums a^2 = 4
    a = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    a[0, 0, 2, 2] = 2.0
    b = local_response_norm(a, 3, alpha=9.0, beta=1.0, k=1.0, mode="intra")
    assert b[0, 0, 2, 2].item() == pytest.approx(2.0 / (1 + 9.0 / 9 * 4))
    b = local_response_norm(a, 3, alpha=9.0, beta=1.0, k=1.0, mode="intra", convention="alexnet")
    assert b[0, 0, 2, 2].item() == pytest.approx(2.0 / (1 + 9.0 * 4))


# ---- gradients: the closed-form backward ------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("beta", [0.75, 0.3, 2.0])
def test_lrn_gradcheck(mode, convention, size, beta):
    x = _randn((2, 6, 4, 3), size).requires_grad_()
    fn = partial(local_response_norm, size=size, alpha=0.7, beta=beta, k=1.5, mode=mode,
                 convention=convention)
    assert torch.autograd.gradcheck(fn, (x,))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(2, 5, 7), (1, 4, 3, 2, 3)], ids=["3d", "5d"])
def test_lrn_gradcheck_other_ranks(mode, shape):
    x = _randn(shape, 5).requires_grad_()
    for convention, size in [("torch", 4), ("alexnet", 3)]:
        fn = partial(local_response_norm, size=size, alpha=0.7, mode=mode, convention=convention)
        assert torch.autograd.gradcheck(fn, (x,))


def test_lrn_uses_the_closed_form_backward():
    # gradcheck above checks our Function's backward only if autograd does not trace through the forward
    y = local_response_norm(_randn((1, 3, 2, 2)).requires_grad_(), 3)
    assert type(y.grad_fn).__name__ == "_LRNBackward"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("size", [2, 3])
def test_lrn_gradgradcheck(mode, convention, size):
    # second derivatives (a gradient penalty): the backward's graph is built from a when create_graph=True
    x = _randn((2, 4, 3, 3), size).requires_grad_()
    fn = partial(local_response_norm, size=size, alpha=0.7, beta=0.75, k=1.5, mode=mode,
                 convention=convention)
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_lrn_gradient_penalty_matches_torch():
    x = _randn((2, 6, 3, 3), 3).requires_grad_()
    penalties = []
    for fn in (local_response_norm, F.local_response_norm):
        (dx,) = torch.autograd.grad(fn(x, 3, 0.5, 0.75, 1.0).tanh().sum(), x, create_graph=True)
        penalties.append(torch.autograd.grad(dx.pow(2).sum(), x)[0])
    torch.testing.assert_close(penalties[0], penalties[1], **TOL64)


def test_lrn_inference_path_equals_training_path():
    x = _randn((2, 8, 5, 5), 6, torch.float32)
    with torch.no_grad():
        y_eval = local_response_norm(x, 5)
    y_train = local_response_norm(x.clone().requires_grad_(), 5)
    assert torch.equal(y_eval, y_train.detach())


# ---- dtypes, layouts, devices ------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype, rtol", [(torch.float16, 1e-3), (torch.bfloat16, 8e-3)])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("convention", CONVENTIONS)
def test_lrn_half_precision(device, dtype, rtol, mode, convention):
    # computed in float32 and rounded once: within half an ulp (plus a little) of the float64 value of the
    # same (already rounded) input. torch's own LRN raises here on the CPU (no half avg_pool3d).
    x = (_randn((2, 12, 5, 5), 7) * 4).to(dtype)
    g = _randn((2, 12, 5, 5), 8).to(dtype)
    fn = partial(local_response_norm, size=4, alpha=0.1, mode=mode, convention=convention)
    y, dx = value_and_grad(lambda t: fn(t.to(device)), x, g.to(device))
    y_ref, dx_ref = value_and_grad(partial(oracle, n=4, alpha=0.1, beta=0.75, k=1.0, mode=mode,
                                           convention=convention), x.double(), g.double())
    assert y.dtype == dx.dtype == dtype and y.device.type == device.type
    torch.testing.assert_close(y.double().cpu(), y_ref, rtol=rtol, atol=1e-3)
    torch.testing.assert_close(dx.double().cpu(), dx_ref, rtol=rtol, atol=3 * rtol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lrn_matches_torch_on_device(device, dtype):
    x, g = _randn((4, 16, 7, 7), 9, dtype, device), _randn((4, 16, 7, 7), 10, dtype, device)
    tol = TOL64 if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
    for size in (2, 5):
        y, dx = value_and_grad(partial(local_response_norm, size=size, alpha=0.1), x, g)
        y_ref, dx_ref = value_and_grad(partial(F.local_response_norm, size=size, alpha=0.1), x, g)
        assert y.device == x.device and y.dtype == dtype
        torch.testing.assert_close(y, y_ref, **tol)
        torch.testing.assert_close(dx, dx_ref, **tol)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("convention", CONVENTIONS)
def test_lrn_gradcheck_on_device(device, mode, convention):
    x = _randn((2, 5, 3, 4), 11, device=device).requires_grad_()
    fn = partial(local_response_norm, size=4, alpha=0.7, mode=mode, convention=convention)
    assert torch.autograd.gradcheck(fn, (x,))
    y = fn(x.detach())
    y_ref = oracle(x.detach().cpu(), 4, 0.7, 0.75, 1.0, mode, convention)
    torch.testing.assert_close(y.cpu(), y_ref, **TOL64)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape, fmt", [((2, 8, 5, 6), torch.channels_last),
                                        ((2, 8, 3, 5, 4), torch.channels_last_3d)], ids=["4d", "5d"])
def test_lrn_channels_last(device, mode, shape, fmt):
    x, g = _randn(shape, 12, device=device), _randn(shape, 13, device=device)
    fn = partial(local_response_norm, size=4, alpha=0.3, mode=mode)
    y_ref, dx_ref = value_and_grad(fn, x, g)
    y, dx = value_and_grad(fn, x.to(memory_format=fmt), g.to(memory_format=fmt))
    assert y.is_contiguous(memory_format=fmt) and dx.is_contiguous(memory_format=fmt)
    torch.testing.assert_close(y, y_ref, **TOL64)
    torch.testing.assert_close(dx, dx_ref, **TOL64)


def test_lrn_non_contiguous_input():
    base = _randn((6, 2, 5, 7), 14)
    x = base.transpose(0, 1)[..., ::2]  # (2, 6, 5, 4), neither contiguous nor channels_last
    for mode in MODES:
        torch.testing.assert_close(local_response_norm(x, 3, 0.3, mode=mode),
                                   local_response_norm(x.contiguous(), 3, 0.3, mode=mode), **TOL64)


def test_lrn_empty_batch():
    x = torch.zeros(0, 4, 3, 3)
    assert local_response_norm(x, 3).shape == x.shape
    assert local_response_norm(x, 3, mode="intra").shape == x.shape


# ---- the module ------------------------------------------------------------------------------------------

def test_lrn_module_state_and_repr():
    m = LocalResponseNorm(5, alpha=2e-4, beta=0.5, k=2.0, mode="intra", convention="alexnet")
    assert (m.size, m.alpha, m.beta, m.k, m.mode, m.convention) == (5, 2e-4, 0.5, 2.0, "intra", "alexnet")
    assert repr(m) == ("LocalResponseNorm(5, alpha=0.0002, beta=0.5, k=2.0, mode='intra', "
                       "convention='alexnet')")
    assert list(m.parameters()) == [] and m.state_dict() == {}
    x = _randn((2, 6, 4, 4), 15)
    torch.testing.assert_close(m(x), local_response_norm(x, 5, 2e-4, 0.5, 2.0, mode="intra",
                                                         convention="alexnet"), rtol=0, atol=0)


def test_lrn_module_defaults_behave_as_torch_module():
    m, ref = LocalResponseNorm(3), torch.nn.LocalResponseNorm(3)
    assert repr(m) == "LocalResponseNorm(3, alpha=0.0001, beta=0.75, k=1.0, mode='inter', convention='torch')"
    x = _randn((2, 6, 4, 4), 16) * 30
    torch.testing.assert_close(m(x), ref(x), **TOL64)
    m.load_state_dict(ref.state_dict())  # both stateless: a torch checkpoint entry loads


# ---- bad input -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size, exc", [(0, ValueError), (-2, ValueError), (2.5, TypeError), (True, TypeError),
                                       ("3", TypeError), (None, TypeError)])
def test_lrn_rejects_bad_size(size, exc):
    with pytest.raises(exc, match="size"):
        local_response_norm(torch.zeros(1, 3, 2, 2), size)
    with pytest.raises(exc, match="size"):
        LocalResponseNorm(size)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(), (4,), (2, 4)])
def test_lrn_rejects_low_rank_input(mode, shape):
    with pytest.raises(ValueError, match=r"x: expected a tensor with at least 3 dimensions.*\(N, C, \*\)"):
        local_response_norm(torch.zeros(shape), 3, mode=mode)


@pytest.mark.parametrize("x", [torch.zeros(1, 3, 2, 2, dtype=torch.int64),
                               torch.zeros(1, 3, 2, dtype=torch.bool),
                               torch.zeros(1, 3, 2, dtype=torch.complex64), [[[1.0]]]],
                         ids=["int64", "bool", "complex64", "list"])
def test_lrn_rejects_non_float_input(x):
    with pytest.raises(TypeError, match="x: expected a"):
        local_response_norm(x, 3)


@pytest.mark.parametrize("kwargs, name", [(dict(mode="cross"), "mode"), (dict(mode=None), "mode"),
                                          (dict(convention="caffe"), "convention"),
                                          (dict(alpha="big"), "alpha"), (dict(beta=None), "beta"),
                                          (dict(k=[1.0]), "k")])
def test_lrn_rejects_bad_options(kwargs, name):
    with pytest.raises((ValueError, TypeError), match=f"^{name}: expected"):
        local_response_norm(torch.zeros(1, 3, 2, 2), 3, **kwargs)
    with pytest.raises((ValueError, TypeError), match=f"^{name}: expected"):
        LocalResponseNorm(3, **kwargs)
