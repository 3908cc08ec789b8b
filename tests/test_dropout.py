"""Dropout: PyTorch's semantics (inverted scaling, eval identity, p = 0 and 1), the statistics of the mask,
reproducibility with a generator, and the custom backward (grad * m / (1 - p), gradcheck)."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# from the submodule: the package attribute `tricksref.dropout` may be the module or the function
from tricksref.dropout import Dropout, dropout

# Every statistical assertion below holds with probability at least 1 - DELTA for a correct implementation
# (Hoeffding's inequality, exact for bounded i.i.d. variables, no normal approximation): a false failure is
# expected once in 10^9 runs per assertion. The seeds are fixed, so a given build passes or fails every time.
DELTA = 1e-9
LOW_PRECISION = (torch.bfloat16, torch.float16)
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]


def hoeffding(n: int, width: float = 1.0, delta: float = DELTA) -> float:
    """t with P(|mean of n i.i.d. variables in an interval of this width - expectation| >= t) <= delta."""
    return width * math.sqrt(math.log(2.0 / delta) / (2.0 * n))


def gen(device, seed=0) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def nonzero_input(shape, device, dtype=torch.float32, seed=0):
    """Values in [0.5, 1.5) with random sign: never 0, so a 0 in the output means 'dropped'."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=torch.float64) + 0.5
    sign = torch.randint(0, 2, shape, generator=g) * 2 - 1
    return (x * sign).to(device, dtype)


@pytest.mark.parametrize("p", [0.5, 0.1, 0.25, 1 / 3, 0.9])
@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_kept_units_are_scaled_like_torch(p, dtype, device):
    x = nonzero_input((16, 8, 5, 7), device, dtype)
    scale = 1.0 / (1.0 - p)
    torch.manual_seed(0)
    for y in (dropout(x, p, generator=gen(device)), F.dropout(x, p)):  # ours and torch's: same semantics
        assert y.shape == x.shape and y.dtype == dtype and y.device == x.device
        kept = y != 0
        assert 0 < kept.sum() < x.numel()
        if dtype in LOW_PRECISION:  # torch rounds 1/(1-p) to the dtype first, we do not: 1 ulp apart
            torch.testing.assert_close(y[kept], x[kept] * scale)
        else:
            assert torch.equal(y[kept], x[kept] * scale)


@pytest.mark.parametrize("p", [0.5, 0.1, 0.25, 0.3, 1 / 3, 0.75, 0.9, 0.99])
def test_dropout_zero_fraction_close_to_p(p, device):
    # p * 256 integer (0.5, 0.25, 0.75) takes the 8-bit path, the others the 32-bit one
    n = 1 << 21
    x = torch.ones(n, device=device)
    torch.manual_seed(1)
    for name, y in (("ours", dropout(x, p, generator=gen(device, 1))), ("torch", F.dropout(x, p))):
        frac = (y == 0).double().mean().item()
        assert abs(frac - p) < hoeffding(n), f"{name}: zero fraction {frac} for p={p}, n={n}"


@pytest.mark.parametrize("p", [0.5, 0.3])
def test_dropout_mask_uniform_over_memory_positions(p, device):
    # Each unit's bits come from a byte (8-bit path) or 4 bytes (32-bit path) of an int64 word; a bias in one
    # byte position (e.g. random_() giving 63 bits, with the top bit always 0) shows up as one position
    # modulo 8 whose zero fraction is off. Bonferroni over the 8 positions keeps the total at DELTA.
    n = 1 << 21
    y = dropout(torch.ones(n, device=device), p, generator=gen(device, 2))
    dropped = (y == 0).double().view(-1, 8)
    for position in range(8):
        frac = dropped[:, position].mean().item()
        assert abs(frac - p) < hoeffding(n // 8, delta=DELTA / 8), f"position {position}: {frac} vs p={p}"
    # and the two halves of the tensor (a short or reused random buffer would repeat or leave zeros)
    halves = dropped.view(2, -1).mean(dim=1)
    assert (halves - p).abs().max().item() < hoeffding(n // 2, delta=DELTA / 2)


@pytest.mark.parametrize("p", [0.5, 0.2])
def test_dropout_expected_value_is_input(p, device):
    # E[y] = x per unit: average 8192 independent draws of the same 64 units
    draws = 8192
    x = nonzero_input((64,), device, torch.float64, seed=3)
    y = dropout(x.expand(draws, 64).contiguous(), p, generator=gen(device, 3))
    width = abs(x) / (1 - p)  # each draw of unit i lies in [0, x_i / (1-p)] (or the mirror for x_i < 0)
    bound = width * hoeffding(draws, delta=DELTA / 64)
    assert ((y.mean(dim=0) - x).abs() < bound).all()


def test_dropout_eval_is_identity(device):
    x = torch.randn(4, 3, 5, device=device)
    # torch returns the input tensor itself (not a copy) in evaluation and for p = 0; so do we
    assert F.dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0, training=True) is x
    assert dropout(x, 0.0, training=True) is x
    assert dropout(x, 1.0, training=False) is x
    layer = Dropout(0.5).eval()
    assert layer(x) is x


def test_dropout_p_one_gives_zeros_and_zero_gradients(device):
    x = torch.tensor([1.0, -2.0, float("inf"), float("nan")], device=device, requires_grad=True)
    y = dropout(x, 1.0)
    assert torch.equal(y, torch.zeros_like(y))  # exact zeros, also for inf and NaN inputs
    y.backward(torch.tensor([1.0, float("inf"), 3.0, 4.0], device=device))
    assert torch.equal(x.grad, torch.zeros_like(x))  # zero gradients, not grad * 0 * inf = NaN
    z = torch.randn(5, device=device)
    assert dropout(z, 1.0, inplace=True) is z and torch.equal(z, torch.zeros(5, device=device))


def test_dropout_same_generator_seed_same_mask(device):
    x = torch.randn(32, 16, 9, device=device)
    for p in (0.5, 0.3):
        a = dropout(x, p, generator=gen(device, 7))
        b = dropout(x, p, generator=gen(device, 7))
        assert torch.equal(a, b)
        assert not torch.equal(a, dropout(x, p, generator=gen(device, 8)))
        g = gen(device, 7)
        first, second = dropout(x, p, generator=g), dropout(x, p, generator=g)
        assert torch.equal(first, a) and not torch.equal(first, second)  # the generator advances
    # without a generator: the global RNG, reproducible with torch.manual_seed
    torch.manual_seed(11)
    a = dropout(x, 0.5)
    torch.manual_seed(11)
    assert torch.equal(a, dropout(x, 0.5))


@pytest.mark.parametrize("p", [0.5, 0.3])
def test_dropout_gradient_is_mask_times_scale(p, device):
    x = nonzero_input((8, 4, 6, 6), device, torch.float64, seed=4).requires_grad_()
    y = dropout(x, p, generator=gen(device, 5))
    # the backward keeps a compact boolean mask, not a float copy of the input
    saved = y.grad_fn.saved_tensors
    assert len(saved) == 1 and saved[0].dtype == torch.bool and saved[0].shape == x.shape
    g = torch.Generator().manual_seed(6)
    upstream = torch.randn(y.shape, generator=g, dtype=torch.float64).to(device)
    y.backward(upstream)
    mask = (y != 0).to(torch.float64)
    assert torch.equal(x.grad, upstream * mask * (1.0 / (1.0 - p)))


@pytest.mark.parametrize("p", [0.5, 0.3, 1.0])
def test_dropout_gradcheck(p, device):
    x = torch.randn(3, 4, 5, dtype=torch.float64, device=device, requires_grad=True)

    def fn(t):  # a fresh generator per call: the same mask at every evaluation gradcheck makes
        return dropout(t, p, generator=gen(device, 9))

    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_keeps_dtype_and_channels_last(dtype, device):
    # no exact zeros in x (randn can round to 0 in half precision), so y == 0 exactly where dropped
    x = nonzero_input((8, 6, 5, 5), device, dtype).to(memory_format=torch.channels_last).requires_grad_()
    y = dropout(x, 0.4, generator=gen(device))
    assert y.dtype == dtype and y.is_contiguous(memory_format=torch.channels_last)
    y.backward(torch.ones_like(y))
    assert x.grad.dtype == dtype and x.grad.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(x.grad != 0, y != 0)


def test_dropout_inplace_matches_out_of_place(device):
    x = torch.randn(6, 7, 8, device=device)
    want = dropout(x, 0.3, generator=gen(device, 12))
    x2 = x.clone()
    assert dropout(x2, 0.3, generator=gen(device, 12), inplace=True) is x2
    assert torch.equal(x2, want)
    # autograd through the in-place version on a non-leaf
    leaf = nonzero_input((6, 7, 8), device, seed=14).requires_grad_()
    h = leaf * 2
    out = dropout(h, 0.3, generator=gen(device, 12), inplace=True)
    out.sum().backward()
    torch.testing.assert_close(leaf.grad, 2 * (out != 0) / 0.7, rtol=1e-6, atol=0)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=st.lists(st.integers(0, 9), min_size=0, max_size=4),
       p=st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.6, 0.9, 1.0]),
       dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**31 - 1))
def test_dropout_hypothesis_shapes(shape, p, dtype, seed, device):
    x = nonzero_input(tuple(shape), device, dtype, seed=seed % 1000).requires_grad_()
    y = dropout(x, p, generator=gen(device, seed))
    assert y.shape == x.shape and y.dtype == dtype
    kept = y != 0
    if p < 1.0:
        torch.testing.assert_close(y[kept], x[kept] * (1.0 / (1.0 - p)))
    else:
        assert not kept.any()
    if x.numel() and p > 0:
        y.backward(torch.ones_like(y))
        torch.testing.assert_close(x.grad, kept.to(dtype) * (0.0 if p == 1 else 1.0 / (1.0 - p)))


def test_dropout_module_train_eval_and_repr(device):
    layer = Dropout(0.3, generator=gen(device, 13))
    assert repr(layer) == repr(torch.nn.Dropout(0.3)) == "Dropout(p=0.3, inplace=False)"
    assert layer.extra_repr() == torch.nn.Dropout(0.3).extra_repr()
    assert Dropout(0.5, inplace=True).extra_repr() == torch.nn.Dropout(0.5, inplace=True).extra_repr()
    assert dict(layer.state_dict()) == dict(torch.nn.Dropout(0.3).state_dict()) == {}
    x = torch.randn(10, 20, device=device)
    y = layer(x)  # modules start in training mode
    assert layer.training and (y == 0).any()
    assert torch.equal(y, dropout(x, 0.3, generator=gen(device, 13)))
    layer.eval()
    assert layer(x) is x
    layer.train()
    assert not torch.equal(layer(x), x)
    z = x.clone()
    assert Dropout(0.5, inplace=True)(z) is z and (z == 0).any()


def test_dropout_errors(device):
    x = torch.randn(3, 4, device=device)
    for bad in (-0.1, 1.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"p: expected a value in \[0.0, 1.0\]"):
            dropout(x, bad)
        with pytest.raises(ValueError, match="p: expected"):
            Dropout(bad)
    with pytest.raises(TypeError, match="p: expected a real number"):
        dropout(x, "0.5")
    with pytest.raises(TypeError, match="x: expected a floating-point tensor"):
        dropout(torch.ones(3, dtype=torch.int64, device=device))
    with pytest.raises(TypeError, match="x: expected a torch.Tensor"):
        dropout([1.0, 2.0])
    with pytest.raises(TypeError, match="generator: expected a torch.Generator"):
        dropout(x, 0.5, generator=123)
    if device.type == "cuda":
        with pytest.raises(ValueError, match="generator: expected a generator on x's device"):
            dropout(x, 0.5, generator=torch.Generator())


def test_dropout_public_name_callable_in_any_import_order():
    # Importing the submodule binds tricksref.dropout to the module; the contract's call must work anyway.
    # Fresh interpreters (run side by side: each pays for importing torch) for the two orders.
    code = ("{first}\nimport torch, tricksref\n"
            "y = tricksref.dropout(torch.ones(64), 0.5, generator=torch.Generator().manual_seed(0))\n"
            "assert set(y.unique().tolist()) == {{0.0, 2.0}}\n"
            "from tricksref import dropout\nassert dropout(torch.ones(3), training=False).sum() == 3\n")
    firsts = ["from tricksref.dropout import Dropout", "from tricksref import Dropout"]
    procs = [subprocess.Popen([sys.executable, "-c", code.format(first=f)], stderr=subprocess.PIPE, text=True)
             for f in firsts]
    for first, proc in zip(firsts, procs, strict=True):
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"after {first!r}:\n{err}"
