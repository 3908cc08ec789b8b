"""Label smoothing: tricksref's loss against torch's cross_entropy(label_smoothing=...) and the formula."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from tricksref.label_smoothing import (
    LabelSmoothingCrossEntropy,
    label_smoothing_cross_entropy,
    smooth_one_hot,
)

F64 = torch.float64
REDUCTIONS = ["mean", "sum", "none"]


def logits_and_labels(B, K, seed, device="cpu", scale=3.0):
    g = torch.Generator().manual_seed(seed)
    z = (scale * torch.randn(B, K, generator=g, dtype=F64)).to(device)
    y = torch.randint(0, K, (B,), generator=g).to(device)
    soft = torch.softmax(2 * torch.randn(B, K, generator=g, dtype=F64), dim=1).to(device)
    return z, y, soft


@settings(max_examples=60, deadline=None)
@given(B=st.integers(1, 12), K=st.integers(1, 9), eps=st.floats(0.0, 1.0),
       reduction=st.sampled_from(REDUCTIONS), seed=st.integers(0, 2**16))
def test_label_smoothing_matches_torch_hard_labels(B, K, eps, reduction, seed):
    z, y, _ = logits_and_labels(B, K, seed)
    ours = label_smoothing_cross_entropy(z, y, eps, reduction)
    theirs = F.cross_entropy(z, y, label_smoothing=eps, reduction=reduction)
    assert ours.shape == theirs.shape and ours.dtype == F64
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-10)


@settings(max_examples=60, deadline=None)
@given(B=st.integers(1, 12), K=st.integers(1, 9), eps=st.floats(0.0, 1.0),
       reduction=st.sampled_from(REDUCTIONS), seed=st.integers(0, 2**16))
def test_label_smoothing_matches_torch_soft_targets(B, K, eps, reduction, seed):
    z, _, soft = logits_and_labels(B, K, seed)
    ours = label_smoothing_cross_entropy(z, soft, eps, reduction)
    theirs = F.cross_entropy(z, soft, label_smoothing=eps, reduction=reduction)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-10)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.5, 1.0])
def test_label_smoothing_matches_torch_on_device(device, eps):
    z, y, soft = logits_and_labels(16, 10, seed=3, device=device)
    for target in (y, soft):
        for reduction in REDUCTIONS:
            ours = label_smoothing_cross_entropy(z, target, eps, reduction)
            assert ours.device == z.device
            theirs = F.cross_entropy(z, target, label_smoothing=eps, reduction=reduction)
            torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-10)


def test_label_smoothing_soft_target_formula():
    # plain loop: loss_i = -sum_k ((1 - eps) q_ik + eps / K) log softmax(z_i)_k
    z, _, soft = logits_and_labels(5, 4, seed=7)
    eps, K = 0.2, 4
    ours = label_smoothing_cross_entropy(z, soft, eps, reduction="none")
    for i in range(5):
        row = z[i].tolist()
        log_norm = math.log(sum(math.exp(v) for v in row))
        expected = -sum(((1 - eps) * soft[i, k].item() + eps / K) * (row[k] - log_norm) for k in range(K))
        assert ours[i].item() == pytest.approx(expected, rel=1e-12)


def test_label_smoothing_hard_label_formula():
    # (1 - eps) * (-log p_y) + eps * mean_k(-log p_k): the true class gets 1 - eps + eps / K in all
    z, y, _ = logits_and_labels(6, 5, seed=11)
    eps = 0.3
    ours = label_smoothing_cross_entropy(z, y, eps, reduction="none")
    log_p = torch.log_softmax(z, dim=1)
    for i in range(6):
        expected = -(1 - eps + eps / 5) * log_p[i, y[i]].item() - sum(
            eps / 5 * log_p[i, k].item() for k in range(5) if k != y[i])
        assert ours[i].item() == pytest.approx(expected, rel=1e-12)
    # eps = 1: the labels no longer matter
    uniform = label_smoothing_cross_entropy(z, y, 1.0, reduction="none")
    torch.testing.assert_close(uniform, label_smoothing_cross_entropy(z, (y + 1) % 5, 1.0, reduction="none"))


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.9])
def test_label_smoothing_gradient_matches_torch(device, eps):
    z, y, soft = logits_and_labels(8, 6, seed=5, device=device)
    for target in (y, soft):
        z1, z2 = z.clone().requires_grad_(), z.clone().requires_grad_()
        label_smoothing_cross_entropy(z1, target, eps).backward()
        F.cross_entropy(z2, target, label_smoothing=eps).backward()
        torch.testing.assert_close(z1.grad, z2.grad, rtol=0, atol=1e-12)


def test_label_smoothing_composes_with_smooth_one_hot():
    # smoothing in the loss equals smoothing the one-hot targets first (eps / K exact in float32 here)
    z, y, _ = logits_and_labels(10, 8, seed=2)
    eps = 0.25
    in_loss = label_smoothing_cross_entropy(z, y, eps)
    in_target = label_smoothing_cross_entropy(z, smooth_one_hot(y, 8, eps).to(F64), 0.0)
    torch.testing.assert_close(in_loss, in_target, rtol=0, atol=1e-12)
    onehot = label_smoothing_cross_entropy(z, smooth_one_hot(y, 8).to(F64), eps)
    torch.testing.assert_close(onehot, in_loss, rtol=0, atol=1e-12)
    # a mixup target: lam * onehot(y) + (1 - lam) * onehot(y'), smoothed in the loss, as torch does
    mixed = 0.7 * smooth_one_hot(y, 8).to(F64) + 0.3 * smooth_one_hot(y.flip(0), 8).to(F64)
    torch.testing.assert_close(label_smoothing_cross_entropy(z, mixed, eps),
                               F.cross_entropy(z, mixed, label_smoothing=eps), rtol=0, atol=1e-10)


def test_label_smoothing_module(device):
    z, y, soft = logits_and_labels(8, 5, seed=9, device=device)
    criterion = LabelSmoothingCrossEntropy()
    assert criterion.smoothing == 0.1 and "smoothing=0.1" in repr(criterion)
    torch.testing.assert_close(criterion(z, y), F.cross_entropy(z, y, label_smoothing=0.1), rtol=0,
                               atol=1e-10)
    torch.testing.assert_close(criterion(z, soft), F.cross_entropy(z, soft, label_smoothing=0.1), rtol=0,
                               atol=1e-10)
    per_example = LabelSmoothingCrossEntropy(0.2, reduction="none")(z, y)
    assert per_example.shape == (8,)


def test_label_smoothing_keeps_float32():
    z, y, _ = logits_and_labels(4, 3, seed=1)
    out = label_smoothing_cross_entropy(z.float(), y, 0.1)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, F.cross_entropy(z.float(), y, label_smoothing=0.1))


Z = torch.zeros(4, 3)
Y = torch.tensor([0, 1, 2, 0])


@pytest.mark.parametrize("call, exc, name", [
    (lambda: label_smoothing_cross_entropy(Z, Y, smoothing=-0.1), ValueError, "smoothing"),
    (lambda: label_smoothing_cross_entropy(Z, Y, smoothing=1.5), ValueError, "smoothing"),
    (lambda: label_smoothing_cross_entropy(Z, Y, smoothing="0.1"), TypeError, "smoothing"),
    (lambda: label_smoothing_cross_entropy(Z, Y, reduction="avg"), ValueError, "reduction"),
    (lambda: label_smoothing_cross_entropy(Z.long(), Y), TypeError, "logits"),
    (lambda: label_smoothing_cross_entropy(Z[0], Y), ValueError, "logits"),
    (lambda: label_smoothing_cross_entropy(Z[None], Y), ValueError, "logits"),
    (lambda: label_smoothing_cross_entropy(Z, Y[:3]), ValueError, "target"),
    (lambda: label_smoothing_cross_entropy(Z, Y[:, None]), ValueError, "target"),
    (lambda: label_smoothing_cross_entropy(Z, Y.float()), ValueError, "target"),
    (lambda: label_smoothing_cross_entropy(Z, torch.zeros(4, 4)), ValueError, "target"),
    (lambda: label_smoothing_cross_entropy(Z, torch.tensor([0, 1, 3, 0])), ValueError, "target"),
    (lambda: label_smoothing_cross_entropy(Z, torch.tensor([0, -1, 2, 0])), ValueError, "target"),
    (lambda: label_smoothing_cross_entropy(Z, Y.bool()), TypeError, "target"),
    (lambda: label_smoothing_cross_entropy(Z, [0, 1, 2, 0]), TypeError, "target"),
    (lambda: LabelSmoothingCrossEntropy(smoothing=2.0), ValueError, "smoothing"),
    (lambda: LabelSmoothingCrossEntropy(reduction="batchmean"), ValueError, "reduction"),
])
def test_label_smoothing_bad_input_names_parameter(call, exc, name):
    with pytest.raises(exc) as info:
        call()
    assert str(info.value).startswith(name), str(info.value)
