"""Standardization: the lecture's numpy snippet is the oracle, run literally; torch agrees with numpy."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

# from the submodule: `tricksref.standardize` is also the name of the module (see the report on __init__)
from tricksref.standardize import Standardizer, standardize

# The lecture's slide "Rescaling images", verbatim. It is executed as written, so a change of convention in
# tricksref (ddof, eps inside the sqrt, statistics from the test set) shows up as a mismatch here.
LECTURE_SNIPPET = """
# calculate mu and sig using the training set
d = x_train.shape[1]
mu = numpy.mean(x_train, axis=0).reshape(1, d)
sig = numpy.std(x_train, axis=0).reshape(1, d)

# transform the training features
x_train = (x_train - mu) / (sig + 1E-6)

# transform the test features
x_test = (x_test - mu) / (sig + 1E-6)
"""


def lecture(x_train: np.ndarray, x_test: np.ndarray):
    scope = {"numpy": np, "x_train": x_train, "x_test": x_test}
    exec(LECTURE_SNIPPET, scope)
    return scope["x_train"], scope["x_test"], scope["mu"], scope["sig"]


def _data(rng, n, d, dtype=np.float64, loc=0.0):
    # features on very different scales, which is what standardization is for
    scales = 10.0 ** rng.uniform(-3, 3, size=d)
    return (loc + rng.normal(size=(n, d)) * scales + rng.normal(size=d) * scales).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_standardize_matches_lecture_snippet(dtype):
    rng = np.random.default_rng(0)
    x_train, x_test = _data(rng, 200, 7, dtype), _data(rng, 50, 7, dtype)
    want_train, want_test, mu, sig = lecture(x_train.copy(), x_test.copy())

    got_train, got_test = standardize(x_train, x_test)
    assert got_train.dtype == want_train.dtype == dtype
    np.testing.assert_array_equal(got_train, want_train)  # bitwise: same numpy calls in the same order
    np.testing.assert_array_equal(got_test, want_test)

    s = Standardizer()
    np.testing.assert_array_equal(s.fit_transform(x_train), want_train)
    np.testing.assert_array_equal(s.transform(x_test), want_test)
    np.testing.assert_array_equal(s.mu, mu)
    np.testing.assert_array_equal(s.sig, sig)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 30), m=st.integers(1, 10), d=st.integers(1, 12), seed=st.integers(0, 2**31 - 1))
def test_standardize_matches_lecture_snippet_hypothesis(n, m, d, seed):
    rng = np.random.default_rng(seed)
    x_train, x_test = _data(rng, n, d), _data(rng, m, d)
    want_train, want_test, _, _ = lecture(x_train, x_test)
    got_train, got_test = standardize(x_train, x_test)
    np.testing.assert_array_equal(got_train, want_train)
    np.testing.assert_array_equal(got_test, want_test)


def test_standardize_matches_lecture_snippet_on_uint8_pixels():
    # raw images are uint8; numpy promotes to float64 and so do we
    rng = np.random.default_rng(1)
    x_train = rng.integers(0, 256, size=(64, 48), dtype=np.uint8)
    x_test = rng.integers(0, 256, size=(16, 48), dtype=np.uint8)
    want_train, want_test, _, _ = lecture(x_train, x_test)
    got_train, got_test = standardize(x_train, x_test)
    assert got_train.dtype == np.float64
    np.testing.assert_array_equal(got_train, want_train)
    np.testing.assert_array_equal(got_test, want_test)


def test_standardize_test_set_uses_training_statistics():
    # The test set comes from a shifted distribution. Standardized with the TRAINING statistics its mean stays
    # far from 0; the leakage mistake (fitting on the test set, or on train and test together) makes it ~0.
    rng = np.random.default_rng(2)
    x_train = rng.normal(0.0, 1.0, size=(500, 4))
    x_test = rng.normal(5.0, 2.0, size=(300, 4))
    _, want_test, mu, sig = lecture(x_train, x_test)
    for z_test in (standardize(x_train, x_test)[1], Standardizer().fit(x_train).transform(x_test)):
        np.testing.assert_array_equal(z_test, want_test)
        np.testing.assert_allclose(z_test.mean(axis=0), ((x_test.mean(axis=0) - mu) / (sig + 1e-6))[0])
        assert np.all(z_test.mean(axis=0) > 4.0)  # ~5 / 1; a leaky version gives ~0
        assert np.all(z_test.std(axis=0) > 1.5)  # ~2 / 1; a leaky version gives ~1
    # transforming the test set leaves the fitted statistics alone
    s = Standardizer().fit(x_train)
    mu0, sig0 = s.mu.copy(), s.sig.copy()
    s.transform(x_test)
    np.testing.assert_array_equal(s.mu, mu0)
    np.testing.assert_array_equal(s.sig, sig0)


@pytest.mark.parametrize("axis", [0, (0,), (0, 2, 3), (0, 1), None, -1, (1, -1)])
def test_standardize_numpy_and_torch_agree(axis, device):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(9, 3, 5, 4)) * rng.uniform(0.1, 10, size=(1, 3, 1, 1)) + 2.0
    y = rng.normal(size=(6, 3, 5, 4))
    if axis in ((0, 1), (1, -1), -1):
        y = rng.normal(size=(9, 3, 5, 4))  # axes other than 0 reduced: same shape elsewhere
    sn = Standardizer(axis=axis).fit(x)
    st_ = Standardizer(axis=axis).fit(torch.from_numpy(x).to(device))
    assert isinstance(st_.mu, torch.Tensor) and st_.mu.device.type == device.type
    np.testing.assert_allclose(st_.mu.cpu().numpy(), sn.mu, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(st_.sig.cpu().numpy(), sn.sig, rtol=1e-12, atol=1e-12)
    zt = st_.transform(torch.from_numpy(y).to(device))
    assert isinstance(zt, torch.Tensor) and zt.device.type == device.type and zt.dtype == torch.float64
    np.testing.assert_allclose(zt.cpu().numpy(), sn.transform(y), rtol=1e-10, atol=1e-10)


def test_standardize_statistics_cross_between_numpy_and_torch():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(20, 6)), rng.normal(size=(5, 6))
    s = Standardizer().fit(x)  # numpy statistics
    z = s.transform(torch.from_numpy(y))
    assert isinstance(z, torch.Tensor)
    np.testing.assert_array_equal(z.numpy(), s.transform(y))
    s = Standardizer().fit(torch.from_numpy(x))  # torch statistics, numpy input
    z = s.transform(y)
    assert isinstance(z, np.ndarray)
    np.testing.assert_allclose(z, lecture(x, y)[1], rtol=1e-12, atol=1e-12)


def test_standardize_per_channel_images(device):
    g = torch.Generator().manual_seed(5)
    # channels with their own offset and spread, as in RGB images
    spread = torch.tensor([1.0, 5.0, 50.0], dtype=torch.float64).view(1, 3, 1, 1)
    offset = torch.tensor([0.0, -3.0, 100.0], dtype=torch.float64).view(1, 3, 1, 1)
    x = (torch.rand(32, 3, 8, 8, generator=g, dtype=torch.float64) * spread + offset).to(device)
    s = Standardizer(axis=(0, 2, 3))
    z = s.fit_transform(x)
    assert s.mu.shape == s.sig.shape == (1, 3, 1, 1)
    for c in range(3):  # plain-loop oracle: each channel's pixels over all images
        pixels = x[:, c].cpu().numpy().ravel()
        assert s.mu[0, c, 0, 0].item() == pytest.approx(pixels.mean(), rel=1e-12)
        assert s.sig[0, c, 0, 0].item() == pytest.approx(pixels.std(), rel=1e-12)
    torch.testing.assert_close(z.mean(dim=(0, 2, 3)), torch.zeros(3, dtype=torch.float64, device=device),
                               atol=1e-12, rtol=0)
    torch.testing.assert_close(z.std(dim=(0, 2, 3), correction=0),
                               (s.sig / (s.sig + 1e-6)).view(3), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_standardize_round_trip(dtype, device):
    g = torch.Generator().manual_seed(6)
    x = (torch.randn(40, 3, 6, 6, generator=g) * 4 + 3).to(device, dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    s = Standardizer(axis=(0, 2, 3))
    z = s.fit_transform(x)
    assert z.dtype == dtype and z.device.type == device.type and z.shape == x.shape
    back = s.inverse_transform(z)
    assert back.dtype == dtype
    tol = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 5e-2, torch.float16: 1e-2}[dtype]
    torch.testing.assert_close(back.float(), x.float(), rtol=tol, atol=tol * 10)
    # statistics of low-precision data are computed in float32, then stored in the data's dtype
    want = Standardizer(axis=(0, 2, 3)).fit(x.double())
    torch.testing.assert_close(s.mu.double(), want.mu, rtol=tol, atol=tol)


def test_standardize_constant_feature_maps_to_zero():
    x = np.column_stack([np.full(10, 3.0), np.arange(10.0)])
    z = Standardizer().fit_transform(x)
    assert np.all(z[:, 0] == 0.0) and np.all(np.isfinite(z))


def test_standardize_torch_integer_input_uses_default_float_dtype():
    x = torch.randint(0, 256, (30, 3, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(7))
    s = Standardizer(axis=(0, 2, 3))
    z = s.fit_transform(x)
    assert z.dtype == torch.get_default_dtype()
    want = Standardizer(axis=(0, 2, 3)).fit_transform(x.to(torch.get_default_dtype()))
    torch.testing.assert_close(z, want, rtol=0, atol=0)


def test_standardize_gradient_flows_to_input_only():
    g = torch.Generator().manual_seed(8)
    x_train = torch.randn(20, 5, generator=g, dtype=torch.float64)
    s = Standardizer().fit(x_train.clone().requires_grad_())
    assert not s.mu.requires_grad and not s.sig.requires_grad
    x = torch.randn(4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(s.transform, (x,))
    s.transform(x).sum().backward()
    torch.testing.assert_close(x.grad, (1 / (s.sig + 1e-6)).expand(4, 5))


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4), data=st.data())
def test_standardize_hypothesis_shapes_and_axes(shape, data):
    ndim = len(shape)
    axes = data.draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True), label="axes")
    axis = tuple(axes) if len(axes) > 1 else axes[0]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1), label="seed"))
    x = rng.normal(size=shape) * 3 + 1
    test_shape = [rng.integers(1, 4) if a in axes else s for a, s in enumerate(shape)]
    y = rng.normal(size=test_shape)
    s = Standardizer(axis=axis).fit(x)
    red = tuple(sorted(axes))
    mu, sig = np.mean(x, axis=red, keepdims=True), np.std(x, axis=red, keepdims=True)
    np.testing.assert_array_equal(s.transform(y), (y - mu) / (sig + 1e-6))
    zt = Standardizer(axis=axis).fit(torch.from_numpy(x)).transform(torch.from_numpy(y))
    np.testing.assert_allclose(zt.numpy(), (y - mu) / (sig + 1e-6), rtol=1e-9, atol=1e-9)


def test_standardize_errors():
    x = np.zeros((4, 3))
    with pytest.raises(RuntimeError, match="not fitted"):
        Standardizer().transform(x)
    with pytest.raises(RuntimeError, match="not fitted"):
        Standardizer().inverse_transform(x)
    s = Standardizer().fit(np.random.default_rng(0).normal(size=(4, 3)))
    with pytest.raises(ValueError, match=r"x: expected shape \(\*, 3\)"):
        s.transform(np.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"x: expected shape"):
        s.transform(np.zeros((4, 3, 1)))
    with pytest.raises(ValueError, match=r"z: expected shape"):
        s.inverse_transform(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="axis"):
        Standardizer(axis=2).fit(x)
    with pytest.raises(ValueError, match="axis"):
        Standardizer(axis=(0, -2)).fit(x)
    with pytest.raises(TypeError, match="axis"):
        Standardizer(axis=1.5)
    with pytest.raises(TypeError, match="axis"):
        Standardizer(axis="0")
    with pytest.raises(ValueError, match="eps"):
        Standardizer(eps=-1e-6)
    with pytest.raises(TypeError, match="x_train: expected a numpy.ndarray or a torch.Tensor"):
        Standardizer().fit([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(TypeError, match="x_train"):
        Standardizer().fit(torch.zeros(3, 2, dtype=torch.complex64))
    with pytest.raises(TypeError, match="x"):
        s.transform(np.zeros((4, 3), dtype=bool))
    with pytest.raises(ValueError, match="x_train: expected at least one element"):
        Standardizer().fit(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="x_train"):
        Standardizer().fit(np.array(1.0))
    with pytest.raises(TypeError, match="x_test"):
        standardize(x, "not an array")


def test_standardize_public_name_callable_after_the_submodule_is_imported():
    # `from tricksref import Standardizer` imports the submodule, which binds tricksref.standardize to it
    code = ("import numpy as np\nfrom tricksref import Standardizer\nimport tricksref\n"
            "a, b = tricksref.standardize(np.array([[1.0], [3.0]]), np.array([[2.0]]))\n"
            "assert np.allclose(a.ravel(), [-1, 1]) and np.allclose(b.ravel(), [0])\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
