"""tricksref.augment mixup and CutMix: soft labels, mixing weights, boxes, the Beta sampler.

Oracles: scipy.stats.beta for the sampler (Kolmogorov-Smirnov), the papers' formulas read back from the
outputs (with distinct labels, each soft label names its partner and its weight), a plain transcription of
the CutMix paper's box code, and tricksref.label_smoothing.smooth_one_hot for the composition.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import random_images as _images
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import special, stats

from tricksref import augment as A
from tricksref.augment.mix import _cutmix_boxes, _log_gamma, _sample_beta
from tricksref.label_smoothing import smooth_one_hot

SETTINGS = settings(max_examples=20, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
MIXES = [A.mixup, A.cutmix]


def _partners(y_soft):
    """With labels y = arange(B) and K = B: image i's weight on itself and its partner index."""
    batch = y_soft.shape[0]
    own = y_soft.diagonal()
    other = y_soft.clone()
    other.fill_diagonal_(-1)
    index = other.argmax(dim=1)
    # an image paired with itself keeps weight 1 on its own label
    index = torch.where(own > 1 - 1e-12, torch.arange(batch, device=y_soft.device), index)
    return own, index


# ---------------------------------------------------------------------------------------------------------
# Beta(alpha, alpha) from a generator


@pytest.mark.parametrize("a, b", [(0.2, 0.2), (1.0, 1.0), (0.5, 0.5), (2.0, 2.0), (2.0, 5.0), (30.0, 30.0)])
def test_beta_sampler_matches_scipy(a, b):
    x = _sample_beta(a, b, 20000, torch.Generator().manual_seed(0)).numpy()
    assert ((x >= 0) & (x <= 1)).all()
    assert stats.kstest(x, stats.beta(a, b).cdf).pvalue > 1e-3
    assert abs(x.mean() - a / (a + b)) < 0.01


@pytest.mark.parametrize("a", [0.05, 0.01])
def test_beta_sampler_small_alpha_in_logit_space(a):
    # for small alpha many draws lie within 1e-16 of 1, where float64 rounds them to 1.0; the logit
    # log G1 - log G2, which the sampler forms before its sigmoid, keeps them apart
    g = torch.Generator().manual_seed(0)
    t = (_log_gamma(a, 20000, g) - _log_gamma(a, 20000, g)).numpy()

    def cdf(t):  # P(logit <= t) = I_sigmoid(t)(a, a), by symmetry on the upper side
        t = np.asarray(t)
        low = special.betainc(a, a, special.expit(np.minimum(t, 0)))
        high = 1 - special.betainc(a, a, special.expit(-np.maximum(t, 0)))
        return np.where(t < 0, low, high)

    assert stats.kstest(t, cdf).pvalue > 1e-3


def test_beta_sampler_reproducible_and_tiny_alpha_safe():
    a = _sample_beta(0.2, 0.2, 100, torch.Generator().manual_seed(1))
    assert torch.equal(a, _sample_beta(0.2, 0.2, 100, torch.Generator().manual_seed(1)))
    tiny = _sample_beta(1e-3, 1e-3, 1000, torch.Generator().manual_seed(2))
    assert not torch.isnan(tiny).any()
    assert ((tiny < 1e-6) | (tiny > 1 - 1e-6)).float().mean() > 0.9  # alpha -> 0: lambda at 0 or 1


# ---------------------------------------------------------------------------------------------------------
# mixup


@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mixup_images_and_labels_use_the_same_weights(device, per_image, dtype):
    batch = 12
    x = _images(batch, 3, 5, 4, dtype, device=device)
    y = torch.arange(batch, device=device)
    xm, ym = A.mixup(x, y, batch, alpha=1.0, generator=torch.Generator().manual_seed(3), per_image=per_image)
    assert xm.dtype == dtype and ym.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    torch.testing.assert_close(ym.sum(1), torch.ones(batch, dtype=ym.dtype, device=device))
    lam, index = _partners(ym.double())
    assert sorted(index.tolist()) == list(range(batch))  # the partners form a permutation
    lam_x = lam.to(dtype).view(-1, 1, 1, 1)
    torch.testing.assert_close(xm, lam_x * x + (1 - lam_x) * x[index], rtol=1e-5, atol=1e-5)
    movers = index != torch.arange(batch, device=device)
    assert movers.any()
    if per_image:
        assert lam[movers].unique().numel() == int(movers.sum())  # one lambda per image
    else:
        torch.testing.assert_close(lam[movers], lam[movers][:1].expand(int(movers.sum())))  # one per batch


@SETTINGS
@given(eps=st.floats(0.0, 1.0), k=st.integers(2, 10), seed=st.integers(0, 10**6))
def test_mixup_composes_with_label_smoothing(eps, k, seed):
    x = _images(8, 3, 4, 4)
    y = torch.randint(0, k, (8,), generator=torch.Generator().manual_seed(seed))
    _, plain = A.mixup(x, y, k, generator=torch.Generator().manual_seed(seed))
    _, smooth = A.mixup(x, y, k, label_smoothing=eps, generator=torch.Generator().manual_seed(seed))
    # smoothing the mixed labels = mixing the smoothed labels: q = (1 - eps) y~ + eps / K
    torch.testing.assert_close(smooth, (1 - eps) * plain + eps / k, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(smooth.sum(1), torch.ones(8))
    assert (smooth >= eps / k - 1e-6).all()


def test_mixup_of_soft_labels_and_of_their_one_hot_agree():
    y = torch.tensor([0, 3, 1, 2, 3, 0])
    x = _images(6, 3, 4, 4)
    a = A.mixup(x, y, 4, label_smoothing=0.1, generator=torch.Generator().manual_seed(0))
    b = A.mixup(x, smooth_one_hot(y, 4), 4, label_smoothing=0.1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a[0], b[0]) and torch.allclose(a[1], b[1])


def test_mixup_uint8_rounds_the_blend():
    x = _images(10, 3, 6, 6, torch.uint8)
    y = torch.arange(10)
    xm, ym = A.mixup(x, y, 10, alpha=1.0, generator=torch.Generator().manual_seed(4))
    lam, index = _partners(ym.double())
    lam_x = lam.float().view(-1, 1, 1, 1)
    ref = (lam_x * x.float() + (1 - lam_x) * x[index].float()).round()
    assert xm.dtype == torch.uint8 and (xm.float() - ref).abs().max() <= 1


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_mixup_half_precision(dtype):
    x = _images(4, 3, 4, 4).to(dtype)
    xm, ym = A.mixup(x, torch.arange(4), 4, generator=torch.Generator().manual_seed(0))
    assert xm.dtype == dtype and ym.dtype == torch.float32


# ---------------------------------------------------------------------------------------------------------
# CutMix


def _paper_box(lam, u_row, u_col, h, w):
    """The CutMix paper's rand_bbox: centre uniform over the pixels, cut sides W sqrt(1 - lam), clipped."""
    cut_rat = math.sqrt(1.0 - lam)
    cut_w, cut_h = int(w * cut_rat), int(h * cut_rat)
    cx, cy = int(u_col * w), int(u_row * h)  # np.random.randint(W)
    x1, x2 = np.clip(cx - cut_w // 2, 0, w), np.clip(cx + cut_w // 2, 0, w)
    y1, y2 = np.clip(cy - cut_h // 2, 0, h), np.clip(cy + cut_h // 2, 0, h)
    return int(y1), int(y2), int(x1), int(x2)


@SETTINGS
@given(h=st.integers(1, 40), w=st.integers(1, 40), seed=st.integers(0, 10**6))
def test_cutmix_boxes_follow_the_paper(h, w, seed):
    g = torch.Generator().manual_seed(seed)
    lam = torch.rand(32, generator=g, dtype=torch.float64)
    u = torch.rand(32, 2, generator=g, dtype=torch.float64)
    (y1, y2, x1, x2), kept = _cutmix_boxes(lam, u[:, 0], u[:, 1], h, w)
    for i in range(32):
        box = _paper_box(float(lam[i]), float(u[i, 0]), float(u[i, 1]), h, w)
        assert (int(y1[i]), int(y2[i]), int(x1[i]), int(x2[i])) == box
        assert float(kept[i]) == pytest.approx(1 - (box[1] - box[0]) * (box[3] - box[2]) / (h * w))


@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_cutmix_pastes_one_box_and_weighs_labels_by_area(device, per_image, dtype):
    batch, h, w = 16, 12, 10
    # image i is filled with the value i + 1, so every pixel tells which image it came from
    x = (torch.arange(batch, device=device) + 1).view(-1, 1, 1, 1).expand(batch, 3, h, w).to(dtype)
    y = torch.arange(batch, device=device)
    xm, ym = A.cutmix(x, y, batch, generator=torch.Generator().manual_seed(5), per_image=per_image)
    assert xm.dtype == dtype and torch.allclose(ym.sum(1), torch.ones(batch, device=device))
    lam, index = _partners(ym.double())
    boxes = []
    for i in range(batch):
        src = xm[i, 0].long() - 1  # (h, w): source image of each pixel
        assert ((src == i) | (src == index[i])).all()
        pasted = (src != i) if index[i] != i else torch.zeros_like(src, dtype=torch.bool)
        # the label weight is the share of pixels the image keeps
        if index[i] != i:
            assert float(lam[i]) == pytest.approx(1 - pasted.double().mean().item(), abs=1e-6)
        rows, cols = pasted.any(1).nonzero().flatten(), pasted.any(0).nonzero().flatten()
        if pasted.any():  # the pasted pixels form one full rectangle
            assert pasted[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
            boxes.append((int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())))
    assert len(boxes) > 0
    if not per_image:
        assert len(set(boxes)) == 1  # one box for the whole batch, as in the paper
    else:
        assert len(set(boxes)) > 1


def test_cutmix_composes_with_label_smoothing():
    x, y = _images(8, 3, 8, 8), torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    xa, plain = A.cutmix(x, y, 5, generator=torch.Generator().manual_seed(9))
    xb, smooth = A.cutmix(x, y, 5, label_smoothing=0.2, generator=torch.Generator().manual_seed(9))
    assert torch.equal(xa, xb)
    torch.testing.assert_close(smooth, 0.8 * plain + 0.2 / 5)


@pytest.mark.parametrize("mix", MIXES)
def test_mix_reproducible_and_same_on_every_device(device, mix):
    x, y = _images(8, 3, 6, 6), torch.randint(0, 5, (8,), generator=torch.Generator().manual_seed(0))
    a = mix(x, y, 5, generator=torch.Generator().manual_seed(1))
    b = mix(x.to(device), y.to(device), 5, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(b[0].cpu(), a[0])
    torch.testing.assert_close(b[1].cpu(), a[1])
    c = mix(x, y, 5, generator=torch.Generator().manual_seed(2))
    assert not torch.equal(a[0], c[0])


# ---------------------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("mix", MIXES)
@pytest.mark.parametrize("kwargs, exc, name", [
    (dict(y=torch.arange(5)), ValueError, "y"),  # 5 labels for 4 images
    (dict(y=torch.zeros(4, 3)), ValueError, "y"),  # soft labels with 3 classes, num_classes=10
    (dict(y=torch.zeros(4, 1, dtype=torch.long)), ValueError, "y"),
    (dict(y=torch.tensor([0, 1, 2, 10])), ValueError, "y"),  # a label out of range
    (dict(y=[0, 1, 2, 3]), TypeError, "y"),
    (dict(alpha=0.0), ValueError, "alpha"), (dict(alpha=-1.0), ValueError, "alpha"),
    (dict(alpha=float("inf")), ValueError, "alpha"),
    (dict(label_smoothing=1.5), ValueError, "label_smoothing"),
    (dict(num_classes=0), ValueError, "num_classes"), (dict(num_classes=2.5), TypeError, "num_classes"),
    (dict(generator="seed"), TypeError, "generator"),
    (dict(x=torch.rand(4, 8, 8)), ValueError, "x"), (dict(x=torch.rand(4, 3, 8, 0)), ValueError, "x"),
    (dict(x=torch.zeros(4, 3, 8, 8, dtype=torch.int64)), TypeError, "x"),
])
def test_mix_rejects_bad_input(mix, kwargs, exc, name):
    args = dict(x=_images(4, 3, 8, 8), y=torch.tensor([0, 1, 2, 3]), num_classes=10) | kwargs
    with pytest.raises(exc, match=rf"^{name}:"):
        mix(**args)
