"""The shared build machinery of tricksref's C kernels (tricksref/_native_build.py) and the from-scratch batch
norm and dropout kernel (tricksref/scratch/_kernels.c) against the plain formulas beside it.

The cache: folders are created 0700; a folder or a cached library owned by someone else, writable by others
or a symbolic link is refused (never loaded, never written into), with one warning, and the torch path runs.
The kernel: batch norm against the torch path of scratch/batchnorm.py (itself checked against
torch.nn.functional.batch_norm in test_batchnorm.py), dropout's mask bit for bit against keep_mask, the same
formula written with torch's integer operations, inter-channel LRN (values, first and second derivatives,
tangents) against the torch path of scratch/lrn.py (itself checked against
torch.nn.functional.local_response_norm in test_lrn.py and test_torch_opinfo.py). The kernels share
torch's OpenMP threads (tricksref/_parallel.h): the library loads torch's own libgomp.
"""

from __future__ import annotations

import os
import stat

import pytest
import torch
import torch.nn.functional as F
from helpers import built_kernel

from tricksref import _native_build
from tricksref.scratch import _native
from tricksref.scratch import batchnorm as sbn
from tricksref.scratch import dropout as sdrop
from tricksref.scratch import lrn as slrn

POSIX = hasattr(os, "getuid")


@pytest.fixture
def kernel():
    """The scratch kernel as this process builds it; skipped only where no C compiler exists."""
    return built_kernel(_native)


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """The kernel not tried yet in this process, the home cache and the fallback in tmp_path."""
    monkeypatch.setattr(_native.KERNEL, "state", {"lib": None, "tried": False, "error": None, "path": None,
                                                  "refused": []})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home"))
    fallback = tmp_path / "tmp" / "tricksref-me" / "native"
    monkeypatch.setattr(_native_build, "fallback_cache_dir", lambda: fallback)
    monkeypatch.setenv(_native.ENV_SWITCH, "1")
    return tmp_path


# ----------------------------------------------------------------------------------------------------------
# the cache: private folders, refused when not


@pytest.mark.skipif(not POSIX, reason="POSIX owners and modes")
def test_cache_folders_are_created_private(kernel, fresh):
    assert _native.library() is not None
    path = _native.KERNEL.state["path"]
    assert path.parent == fresh / "home" / "tricksref" / "native"
    for folder in (path.parent, path.parent.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    assert path.stat().st_uid == os.getuid() and not path.stat().st_mode & 0o022


@pytest.mark.skipif(not POSIX, reason="POSIX owners and modes")
def test_cache_refuses_a_folder_writable_by_others_and_uses_the_next(kernel, fresh):
    shared = fresh / "home" / "tricksref" / "native"
    shared.mkdir(parents=True)
    os.chmod(shared, 0o777)  # what another user could have prepared (or a careless umask)
    with pytest.warns(RuntimeWarning, match="refused an unsafe cache.*writable by its group or others"):
        assert _native.library() is not None
    assert _native.KERNEL.state["path"].parent == fresh / "tmp" / "tricksref-me" / "native"
    assert list(shared.iterdir()) == []  # nothing written into the refused folder


@pytest.mark.skipif(not POSIX, reason="POSIX owners and modes")
def test_cache_refuses_everything_unsafe_with_one_warning_and_falls_back(fresh, monkeypatch, recwarn):
    for folder in (fresh / "home" / "tricksref", fresh / "tmp" / "tricksref-me"):
        folder.mkdir(parents=True)
        os.chmod(folder, 0o775)  # group-writable
    x = torch.randn(4, 3, 8, 8)
    rm, rv = torch.zeros(3), torch.ones(3)
    y = sbn.batch_norm(x, rm.clone(), rv.clone(), None, None, True, 0.1, 1e-5)
    warnings = [w for w in recwarn if w.category is RuntimeWarning]
    assert len(warnings) == 1 and "refused" in str(warnings[0].message)
    assert "batch norm, dropout and LRN use their torch paths" in str(warnings[0].message)
    assert _native.library() is None  # no second warning, and the torch path ran:
    torch.testing.assert_close(y, F.batch_norm(x, rm, rv, training=True))


@pytest.mark.skipif(not POSIX or os.getuid() != 0, reason="chown to another user needs root")
def test_cache_refuses_a_folder_and_a_library_of_another_owner(kernel, fresh):
    folder = fresh / "built"
    _, path = _native.build(folder)
    os.chown(path, 12345, -1)  # a library someone else put there
    with pytest.raises(RuntimeError, match="owned by uid 12345"):
        _native.build(folder)
    os.chown(path, 0, -1)
    os.chown(folder, 12345, -1)  # a folder someone else made
    with pytest.raises(RuntimeError, match="owned by uid 12345"):
        _native.build(folder)


@pytest.mark.skipif(not POSIX, reason="POSIX owners and modes")
def test_cache_refuses_a_library_writable_by_others_and_a_symlink(kernel, fresh):
    folder = fresh / "built"
    _, path = _native.build(folder)
    os.chmod(path, 0o766)
    with pytest.raises(RuntimeError, match="writable by its group or others"):
        _native.build(folder)
    os.chmod(path, 0o700)
    link = fresh / "linked"
    link.symlink_to(folder)
    with pytest.raises(RuntimeError, match="a symbolic link"):
        _native.build(link)


def test_the_switch_sends_everything_to_the_torch_path(fresh, monkeypatch, recwarn):
    monkeypatch.setenv(_native.ENV_SWITCH, "0")
    monkeypatch.setattr(_native_build, "compilers", lambda: [["no-such-compiler-for-tricksref"]])
    x = torch.randn(4, 3, 8, 8)
    sbn.batch_norm(x, None, None, None, None, True, 0.1, 1e-5)
    sdrop.dropout(x, 0.5, None, False)
    assert not _native.KERNEL.state["tried"] and not [w for w in recwarn if w.category is RuntimeWarning]


# ----------------------------------------------------------------------------------------------------------
# batch norm: the kernel against the torch path


def _bn_both(monkeypatch, x, w, b, rm, rv, training, g):
    out = {}
    for switch in ("1", "0"):
        monkeypatch.setenv(_native.ENV_SWITCH, switch)
        xl = x.clone().requires_grad_()
        wl = None if w is None else w.clone().requires_grad_()
        bl = None if b is None else b.clone().requires_grad_()
        stats = (rm.clone(), rv.clone())
        y = sbn.batch_norm(xl, *stats, wl, bl, training, 0.1, 1e-5)
        y.backward(g)
        out[switch] = [y.detach(), xl.grad, *stats] + ([wl.grad, bl.grad] if w is not None else [])
    return out["1"], out["0"]


@pytest.mark.parametrize("shape", [(64, 6, 27, 27), (5, 3, 17), (3, 4, 2, 5, 6), (2, 70, 4, 4)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_bn_kernel_matches_the_torch_path(kernel, monkeypatch, shape, training, affine):
    gen = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(shape, generator=gen) * 3 + 20  # |mu| >> sigma: the centring must keep the digits
    g = torch.randn(shape, generator=gen)
    C = shape[1]
    w, b = (torch.rand(C, generator=gen) + 0.5, torch.randn(C, generator=gen)) if affine else (None, None)
    rm, rv = torch.randn(C, generator=gen) + 20, torch.rand(C, generator=gen) + 5
    assert sbn._kernel_ok(x, w, b)
    fast, plain = _bn_both(monkeypatch, x, w, b, rm, rv, training, g)
    for a, ref in zip(fast, plain, strict=True):
        torch.testing.assert_close(a, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())


def test_bn_kernel_is_used_and_left_where_it_cannot_run(kernel, monkeypatch):
    calls = []
    real = sbn._forward_kernel
    monkeypatch.setattr(sbn, "_forward_kernel", lambda *a: calls.append(a[0].shape) or real(*a))
    monkeypatch.setenv(_native.ENV_SWITCH, "1")
    for x in (torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8).double(),
              torch.randn(4, 3, 8, 8).to(memory_format=torch.channels_last), torch.randn(8, 3)):
        sbn.batch_norm(x, None, None, None, None, True, 0.1, 1e-5)
    assert calls == [torch.Size([4, 3, 8, 8])]  # float32 contiguous with rows of 16+ values only


# ----------------------------------------------------------------------------------------------------------
# dropout: the kernel's mask is keep_mask's, bit for bit


@pytest.mark.parametrize("p", [0.5, 0.25, 0.1, 1 / 3, 0.999])
@pytest.mark.parametrize("n", [1, 7, 8, 9, 1000, 1 << 17])
def test_dropout_kernel_mask_is_the_reference_formula(kernel, monkeypatch, p, n):
    seed = -1234567890123456789  # a negative int64: the kernel reads the same 64 bits unsigned
    x = torch.randn(n, generator=torch.Generator().manual_seed(n))
    monkeypatch.setenv(_native.ENV_SWITCH, "1")
    y, keep = sdrop._forward_plain(x, p, seed, False)
    want = sdrop.keep_mask(seed, n, p, "cpu")
    assert torch.equal(keep, want)
    assert torch.equal(y, x * want.float() * (1.0 / (1.0 - p)))  # the same single rounding as the formula
    monkeypatch.setenv(_native.ENV_SWITCH, "0")
    y0, keep0 = sdrop._forward_plain(x, p, seed, False)
    assert torch.equal(keep0, want) and torch.equal(y0, y)  # the torch path: the same bits


def test_dropout_keep_mask_is_splitmix64():
    # word 0 of SplitMix64 from state 0 is 0xe220a8397b1dcdaf (its reference sequence), i.e. seed 0 word 0
    z = sdrop._words(0, 1, "cpu")
    assert int(z) % 2**64 == 0xE220A8397B1DCDAF
    bits = sdrop.keep_mask(0, 8, 0.5, "cpu")  # p = 1/2: drop iff the byte is < 128, bytes low first
    want = [((0xE220A8397B1DCDAF >> (8 * j)) & 0xFF) >= 128 for j in range(8)]
    assert bits.tolist() == want


def test_dropout_kernel_threads_give_the_same_mask(kernel, monkeypatch):
    x = torch.randn(1 << 18)
    monkeypatch.setattr(_native, "threads_for", lambda n: 1)
    one = sdrop._forward_plain(x, 0.3, 42, False)
    monkeypatch.setattr(_native, "threads_for", lambda n: 3)
    assert all(torch.equal(a, b) for a, b in zip(one, sdrop._forward_plain(x, 0.3, 42, False), strict=True))


# ----------------------------------------------------------------------------------------------------------
# LRN: the kernel against the torch path


def _lrn_both(monkeypatch, x, g, size, beta, convention):
    """(b, da, b under no_grad) with the kernel and with the torch path."""
    out = {}
    for switch in ("1", "0"):
        monkeypatch.setenv(_native.ENV_SWITCH, switch)
        xl = x.clone().requires_grad_()
        b = slrn.local_response_norm(xl, size, 0.3, beta, 1.5, "inter", convention)
        b.backward(g)
        with torch.no_grad():
            b_plain = slrn.local_response_norm(x, size, 0.3, beta, 1.5, "inter", convention)
        out[switch] = (b.detach(), xl.grad, b_plain)
    return out["1"], out["0"]


@pytest.mark.parametrize("shape", [(8, 96, 27, 27), (3, 7, 5), (2, 5, 3, 4, 5), (2, 3, 300)])
@pytest.mark.parametrize("size", [1, 2, 5, 6, 11])
@pytest.mark.parametrize("convention", ["torch", "alexnet"])
@pytest.mark.parametrize("beta", [0.75, 0.5, 0.6])
def test_lrn_kernel_matches_the_torch_path(kernel, monkeypatch, shape, size, convention, beta):
    gen = torch.Generator().manual_seed(sum(shape) + size)
    x = torch.randn(shape, generator=gen) * 2  # alpha 0.3: s far from k, every tap matters
    g = torch.randn(shape, generator=gen)
    windows = ((1, size // 2, (size - 1) // 2 if convention == "torch" else size // 2),)
    assert slrn._kernel_ok(x, windows, beta)
    fast, plain = _lrn_both(monkeypatch, x, g, size, beta, convention)
    for a, ref in zip(fast, plain, strict=True):
        torch.testing.assert_close(a, ref, rtol=2e-6, atol=2e-6 * ref.abs().max().item())
    torch.testing.assert_close(fast[0], fast[2], rtol=0, atol=0)  # with and without a graph: one kernel


def test_lrn_kernel_is_used_and_left_where_it_cannot_run(kernel, monkeypatch):
    calls = []
    real = slrn._forward_kernel
    monkeypatch.setattr(slrn, "_forward_kernel", lambda a, *rest: calls.append(a.shape) or real(a, *rest))
    monkeypatch.setenv(_native.ENV_SWITCH, "1")
    x = torch.randn(4, 6, 8, 8)
    slrn.local_response_norm(x, 5, 1e-2, 0.75, 1.0, "inter", "torch")
    slrn.local_response_norm(x.requires_grad_(), 5, 1e-2, 0.75, 1.0, "inter", "torch")
    assert calls == [x.shape] * 2
    for args in ((x.double(), 0.75, "inter"), (x.to(memory_format=torch.channels_last), 0.75, "inter"),
                 (x, 1.0, "inter"), (x, 0.75, "intra")):  # float64, not contiguous, integer beta, intra
        slrn.local_response_norm(args[0], 5, 1e-2, args[1], 1.0, args[2], "torch")
    assert calls == [x.shape] * 2


def test_lrn_kernel_threads_give_the_same_values(kernel, monkeypatch):
    x = torch.randn(16, 40, 9, 11)
    g = torch.randn_like(x)
    windows = ((1, 2, 2),)
    monkeypatch.setattr(_native, "threads_for", lambda n: 1)
    one = slrn._forward_kernel(x, windows, 1e-2, 0.75, 1.0), slrn._backward_kernel(x, g, windows, 1e-2, 0.75,
                                                                                     1.0)
    monkeypatch.setattr(_native, "threads_for", lambda n: 3)
    three = slrn._forward_kernel(x, windows, 1e-2, 0.75, 1.0), slrn._backward_kernel(x, g, windows, 1e-2,
                                                                                       0.75, 1.0)
    assert all(torch.equal(a, b) for a, b in zip(one, three, strict=True))


def test_lrn_kernel_forward_keeps_second_derivatives_and_tangents(kernel, monkeypatch):
    # the kernel's forward keeps no s: a gradient penalty and a jvp recompute it, and agree with the torch
    # path
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 6, 4, 4, generator=gen)
    t = torch.randn(2, 6, 4, 4, generator=gen)
    res = {}
    for switch in ("1", "0"):
        monkeypatch.setenv(_native.ENV_SWITCH, switch)
        xl = x.clone().requires_grad_()
        b = slrn.local_response_norm(xl, 3, 0.5, 0.75, 1.0, "inter", "torch")
        (gx,) = torch.autograd.grad(b.tanh().sum(), xl, create_graph=True)
        (ggx,) = torch.autograd.grad(gx.pow(2).sum(), xl)
        with torch.autograd.forward_ad.dual_level():
            dual = torch.autograd.forward_ad.make_dual(x, t)
            tangent = torch.autograd.forward_ad.unpack_dual(
                slrn.local_response_norm(dual, 3, 0.5, 0.75, 1.0, "inter", "torch")).tangent
        res[switch] = (gx.detach(), ggx, tangent)
    for a, ref in zip(res["1"], res["0"], strict=True):
        torch.testing.assert_close(a, ref, rtol=1e-5, atol=1e-6)


def test_kernels_share_torchs_openmp_runtime(kernel):
    # built with OpenMP (gcc has it), and its libgomp.so.1 is torch's copy, already loaded under that soname:
    # the kernels run on torch's worker threads, not beside them. (Other wheels bring OpenMP runtimes of
    # their own under other names, e.g. scikit-learn's libgomp-<hash>.so: those are not ours to judge.)
    assert kernel.tr_openmp() == 1
    with open("/proc/self/maps") as fh:
        mapped = {line.split()[-1] for line in fh}
    gomp = {path for path in mapped if os.path.basename(path).startswith("libgomp.so")}
    assert len(gomp) == 1 and "torch" in next(iter(gomp)), f"runtimes loaded as libgomp.so: {sorted(gomp)}"
