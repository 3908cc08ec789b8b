"""tricksref.augment geometry: flips, resized crops and torchvision's RandomResizedCrop sampling.

Oracles: Pillow's Image.transpose for flips, PyTorch's own F.interpolate (bilinear, with and without
antialias) on each image's crop, a plain-loop bilinear interpolation, and a plain-loop transcription of
torchvision's RandomResizedCrop.get_params fed the same uniform numbers.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import random_images as _images
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from tricksref import augment as A
from tricksref.augment.geometry import _sample_boxes

SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
FLOATS = [torch.float32, torch.float64]


# ---------------------------------------------------------------------------------------------------------
# flips


@pytest.mark.parametrize("op, pil_op", [(A.hflip, Image.Transpose.FLIP_LEFT_RIGHT),
                                        (A.vflip, Image.Transpose.FLIP_TOP_BOTTOM)])
def test_flip_matches_pil(op, pil_op):
    x = _images(4, 3, 7, 9, torch.uint8)
    out = op(x)
    for i in range(x.shape[0]):
        pil = Image.fromarray(x[i].permute(1, 2, 0).numpy()).transpose(pil_op)
        assert torch.equal(out[i], torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1))


@SETTINGS
@given(b=st.integers(1, 3), c=st.sampled_from([1, 3]), h=st.integers(1, 6), w=st.integers(1, 6),
       dtype=st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.uint8]))
def test_flip_matches_index_formula(device, b, c, h, w, dtype):
    x = _images(b, c, h, w, dtype, device=device)
    hf, vf = A.hflip(x), A.vflip(x)
    assert hf.dtype == vf.dtype == dtype and hf.device == x.device
    for i in range(h):
        for j in range(w):
            assert torch.equal(hf[:, :, i, j], x[:, :, i, w - 1 - j])
            assert torch.equal(vf[:, :, i, j], x[:, :, h - 1 - i, j])
    assert torch.equal(A.hflip(hf), x) and torch.equal(A.vflip(vf), x)


def test_random_flip_decides_per_image(device):
    x = _images(64, 3, 5, 6, device=device)
    for op, flip in ((A.random_hflip, A.hflip), (A.random_vflip, A.vflip)):
        out = op(x, generator=torch.Generator().manual_seed(3))
        flipped = torch.tensor([torch.equal(out[i], flip(x)[i]) for i in range(64)])
        kept = torch.tensor([torch.equal(out[i], x[i]) for i in range(64)])
        assert (flipped | kept).all()  # every image is either flipped or untouched
        assert 10 < int(flipped.sum()) < 54  # p = 0.5, decided image by image
        assert torch.equal(out, op(x, generator=torch.Generator().manual_seed(3)))
        assert torch.equal(op(x, p=0.0), x) and torch.equal(op(x, p=1.0), flip(x))


# ---------------------------------------------------------------------------------------------------------
# resized crop


def _bilinear_loop(img: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """Plain-loop bilinear resize with half-pixel centres and edge clamping (align_corners=False)."""
    c, h, w = img.shape
    out = torch.empty(c, out_h, out_w, dtype=torch.float64)
    for i in range(out_h):
        sy = max((i + 0.5) * h / out_h - 0.5, 0.0)
        y0 = min(int(math.floor(sy)), h - 1)
        y1, ly = min(y0 + 1, h - 1), sy - y0
        for j in range(out_w):
            sx = max((j + 0.5) * w / out_w - 0.5, 0.0)
            x0 = min(int(math.floor(sx)), w - 1)
            x1, lx = min(x0 + 1, w - 1), sx - x0
            out[:, i, j] = ((1 - ly) * ((1 - lx) * img[:, y0, x0] + lx * img[:, y0, x1])
                            + ly * ((1 - lx) * img[:, y1, x0] + lx * img[:, y1, x1]))
    return out


@pytest.mark.parametrize("size", [(5, 7), (11, 4), (6, 6)])
def test_resized_crop_matches_bilinear_loop(size):
    x = _images(2, 3, 9, 10, torch.float64)
    top, left, height, width = 1, 2, 6, 7
    out = A.resized_crop(x, top, left, height, width, size, antialias=False)
    for i in range(2):
        ref = _bilinear_loop(x[i, :, top:top + height, left:left + width], *size)
        torch.testing.assert_close(out[i], ref, rtol=0, atol=1e-12)


@SETTINGS
@given(data=st.data(), h=st.integers(1, 12), w=st.integers(1, 12), out_h=st.integers(1, 15),
       out_w=st.integers(1, 15), antialias=st.booleans(), dtype=st.sampled_from(FLOATS))
def test_resized_crop_per_image_boxes_match_interpolate(device, data, h, w, out_h, out_w, antialias, dtype):
    # PyTorch's antialiased interpolate is wrong for an output width of 1 (see the Pillow test below)
    assume(not (antialias and out_w == 1))
    batch = 3
    x = _images(batch, 3, h, w, dtype, seed=h * 13 + w, device=device)
    boxes = []
    for _ in range(batch):
        top = data.draw(st.integers(0, h - 1))
        left = data.draw(st.integers(0, w - 1))
        boxes.append((top, left, data.draw(st.integers(1, h - top)), data.draw(st.integers(1, w - left))))
    top, left, height, width = (torch.tensor(v) for v in zip(*boxes, strict=True))
    out = A.resized_crop(x, top, left, height, width, (out_h, out_w), antialias=antialias)
    assert out.shape == (batch, 3, out_h, out_w) and out.dtype == dtype
    for i, (t, l, hh, ww) in enumerate(boxes):
        ref = F.interpolate(x[i:i + 1, :, t:t + hh, l:l + ww], size=(out_h, out_w), mode="bilinear",
                            align_corners=False, antialias=antialias)[0]
        tol = 1e-5 if dtype == torch.float32 else 1e-10
        torch.testing.assert_close(out[i], ref, rtol=tol, atol=tol)


def _pil_resize(plane: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """Pillow's bilinear resize of a float plane (mode "F"): antialiased, support widening when shrinking."""
    img = Image.fromarray(plane.to(torch.float32).numpy(), mode="F")
    return torch.from_numpy(np.asarray(img.resize((out_w, out_h), Image.Resampling.BILINEAR)).copy())


@SETTINGS
@given(data=st.data(), h=st.integers(1, 12), w=st.integers(1, 12), out_h=st.integers(1, 15),
       out_w=st.integers(1, 15), per_image=st.booleans())
def test_resized_crop_antialias_matches_pil(data, h, w, out_h, out_w, per_image):
    x = _images(2, 2, h, w, seed=h * 17 + w)
    top, left = data.draw(st.integers(0, h - 1)), data.draw(st.integers(0, w - 1))
    height, width = data.draw(st.integers(1, h - top)), data.draw(st.integers(1, w - left))
    box = [torch.full((2,), v) if per_image else v for v in (top, left, height, width)]
    out = A.resized_crop(x, *box, (out_h, out_w), antialias=True)
    for i in range(2):
        for c in range(2):
            ref = _pil_resize(x[i, c, top:top + height, left:left + width], out_h, out_w)
            torch.testing.assert_close(out[i, c], ref, rtol=0, atol=2e-6)


@pytest.mark.parametrize("antialias", [True, False])
def test_resized_crop_same_box_as_int_or_tensor(device, antialias):
    x = _images(4, 3, 16, 12, device=device)
    as_ints = A.resized_crop(x, 2, 3, 10, 7, (5, 9), antialias=antialias)
    as_tensors = A.resized_crop(x, torch.full((4,), 2), torch.full((4,), 3), torch.full((4,), 10),
                                torch.full((4,), 7), (5, 9), antialias=antialias)
    torch.testing.assert_close(as_ints, as_tensors, rtol=1e-5, atol=1e-6)


def test_resized_crop_without_resizing_is_the_slice(device):
    x = _images(2, 3, 8, 8, device=device)
    assert torch.equal(A.resized_crop(x, 1, 2, 5, 4, (5, 4)), x[:, :, 1:6, 2:6])
    t = torch.tensor([0, 3])
    expected = torch.stack([x[0, :, :5, :5], x[1, :, 3:, 3:]])
    torch.testing.assert_close(A.resized_crop(x, t, t, 5, 5, 5), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("box", ["int", "tensor"])
def test_resized_crop_uint8_rounds_the_float_result(box):
    x = _images(3, 3, 13, 11, torch.uint8)
    args = (1, 2, 9, 8) if box == "int" else tuple(torch.full((3,), v) for v in (1, 2, 9, 8))
    out = A.resized_crop(x, *args, (7, 5))
    ref = A.resized_crop(x.float(), *args, (7, 5)).round().clamp(0, 255).to(torch.uint8)
    assert out.dtype == torch.uint8 and torch.equal(out, ref)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_resized_crop_half_precision(dtype):
    x = _images(2, 3, 12, 12)
    out = A.resized_crop(x.to(dtype), 1, 1, 10, 9, 6)
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), A.resized_crop(x.to(dtype).float(), 1, 1, 10, 9, 6),
                               rtol=0, atol=1e-2)


def test_resized_crop_int_size_is_square():
    x = _images(1, 1, 10, 10)
    assert A.resized_crop(x, 0, 0, 10, 5, 4).shape == (1, 1, 4, 4)


@pytest.mark.parametrize("kwargs, name", [
    (dict(top=-1, left=0, height=4, width=4), "top"),
    (dict(top=0, left=-2, height=4, width=4), "left"),
    (dict(top=5, left=0, height=4, width=4), "top"),  # rows 5..8 of an 8-row image
    (dict(top=0, left=3, height=4, width=8), "left"),  # columns 3..10 of a 10-column image
    (dict(top=0, left=0, height=0, width=4), "height"),
    (dict(top=0, left=0, height=4, width=0), "width"),
    (dict(top=torch.tensor([0, 5]), left=0, height=4, width=4), "top"),
])
def test_resized_crop_rejects_boxes_outside_the_image(kwargs, name):
    x = _images(2, 3, 8, 10)
    with pytest.raises(ValueError, match=rf"^{name}:"):
        A.resized_crop(x, size=4, **kwargs)


@pytest.mark.parametrize("args, exc, name", [
    ((1.5, 0, 4, 4, 4), TypeError, "top"),
    ((0, 0, 4, 4, 0), ValueError, "size"),
    ((0, 0, 4, 4, (3, 4, 5)), ValueError, "size"),
    ((0, 0, torch.tensor([4.0, 4.0]), 4, 4), TypeError, "height"),
    ((0, 0, torch.tensor([4, 4, 4]), 4, 4), ValueError, "height"),
])
def test_resized_crop_rejects_bad_arguments(args, exc, name):
    with pytest.raises(exc, match=rf"^{name}:"):
        A.resized_crop(_images(2, 3, 8, 8), *args)


@pytest.mark.parametrize("x, exc", [(torch.rand(3, 8, 8), ValueError),
                                    (torch.rand(1, 1, 3, 8, 8), ValueError),
                                    (torch.zeros(1, 3, 8, 8, dtype=torch.int32), TypeError),
                                    (np.zeros((1, 3, 8, 8)), TypeError)])
def test_geometry_rejects_bad_images(x, exc):
    for call in (lambda: A.hflip(x), lambda: A.vflip(x), lambda: A.resized_crop(x, 0, 0, 2, 2, 2),
                 lambda: A.random_resized_crop(x, 4), lambda: A.random_hflip(x)):
        with pytest.raises(exc, match=r"^x:"):
            call()


# ---------------------------------------------------------------------------------------------------------
# random resized crop


def _torchvision_params_loop(u_area, u_logr, u_top, u_left, height, width, scale, ratio):
    """torchvision's RandomResizedCrop.get_params, transcribed as a loop, reading the given uniforms."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for t in range(len(u_area)):
        target_area = area * (scale[0] + (scale[1] - scale[0]) * u_area[t])
        aspect_ratio = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * u_logr[t])
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < w <= width and 0 < h <= height:
            i = int(u_top * (height - h + 1))  # randint(0, height - h + 1)
            j = int(u_left * (width - w + 1))
            return i, j, h, w
    in_ratio = float(width) / float(height)
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


@SETTINGS
@given(h=st.integers(1, 64), w=st.integers(1, 64), lo=st.floats(0.01, 1.0), span=st.floats(0.0, 1.5),
       rlo=st.floats(0.2, 2.0), rspan=st.floats(1.0, 4.0), seed=st.integers(0, 2**31))
def test_random_resized_crop_params_follow_torchvision(h, w, lo, span, rlo, rspan, seed):
    scale, ratio = (lo, lo + span), (rlo, rlo * rspan)
    g = torch.Generator().manual_seed(seed)
    batch = 16
    u = torch.rand(batch, 22, generator=g, dtype=torch.float64)
    top, left, height, width = _sample_boxes(u[:, :10], u[:, 10:20], u[:, 20], u[:, 21], h, w, scale, ratio)
    for i in range(batch):
        ref = _torchvision_params_loop(u[i, :10].tolist(), u[i, 10:20].tolist(), u[i, 20].item(),
                                       u[i, 21].item(), h, w, scale, ratio)
        assert (int(top[i]), int(left[i]), int(height[i]), int(width[i])) == ref


@pytest.mark.parametrize("shape, ratio, expected_hw", [
    ((10, 40), (3 / 4, 4 / 3), (10, 13)),  # too wide: full height, width round(10 * 4/3)
    ((40, 10), (3 / 4, 4 / 3), (13, 10)),  # too tall: full width, height round(10 / (3/4))
    ((20, 20), (3 / 4, 4 / 3), (20, 20)),  # ratio allowed: the whole image
])
def test_random_resized_crop_falls_back_to_the_central_crop(shape, ratio, expected_hw):
    h, w = shape
    x = torch.zeros(5, 1, h, w)
    # an area 2 to 3 times the image never fits: every image takes the fallback
    top, left, height, width = A.random_resized_crop_params(x, scale=(2.0, 3.0), ratio=ratio,
                                                            generator=torch.Generator().manual_seed(0))
    assert (height == expected_hw[0]).all() and (width == expected_hw[1]).all()
    assert (top == (h - expected_hw[0]) // 2).all() and (left == (w - expected_hw[1]) // 2).all()


def test_random_resized_crop_boxes_vary_per_image_and_fit(device):
    x = _images(256, 3, 32, 32, device=device)
    top, left, height, width = A.random_resized_crop_params(x, generator=torch.Generator().manual_seed(1))
    assert top.device == x.device and top.dtype == torch.int64
    assert ((top >= 0) & (left >= 0) & (top + height <= 32) & (left + width <= 32) & (height >= 1)).all()
    assert len(set(zip(top.tolist(), left.tolist(), height.tolist(), width.tolist(), strict=True))) > 200
    frac = (height * width).double() / (32 * 32)
    assert frac.min() >= 0.05 and frac.max() <= 1.0
    aspect = width.double() / height
    assert aspect.min() >= 0.5 and aspect.max() <= 2.0  # 3/4 .. 4/3 up to rounding to whole pixels


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_random_resized_crop_reproducible_and_equal_to_its_parts(device, dtype):
    x = _images(8, 3, 20, 24, dtype, device=device)
    out = A.random_resized_crop(x, (12, 10), generator=torch.Generator().manual_seed(5))
    again = A.random_resized_crop(x, (12, 10), generator=torch.Generator().manual_seed(5))
    assert out.shape == (8, 3, 12, 10) and out.dtype == dtype and torch.equal(out, again)
    box = A.random_resized_crop_params(x, generator=torch.Generator().manual_seed(5))
    assert torch.equal(out, A.resized_crop(x, *box, (12, 10)))
    other = A.random_resized_crop(x, (12, 10), generator=torch.Generator().manual_seed(6))
    assert not torch.equal(out, other)


def test_random_resized_crop_same_on_every_device(device):
    x = _images(6, 3, 16, 16)
    cpu = A.random_resized_crop(x, 8, generator=torch.Generator().manual_seed(2))
    dev = A.random_resized_crop(x.to(device), 8, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(dev.cpu(), cpu, rtol=1e-5, atol=1e-6)


def test_random_resized_crop_rejects_empty_images():
    with pytest.raises(ValueError, match=r"^x: expected images of at least 1 x 1"):
        A.random_resized_crop(torch.rand(2, 3, 0, 8), 4)


@pytest.mark.parametrize("kwargs, exc, name", [
    (dict(scale=(0.5, 0.1)), ValueError, "scale"),
    (dict(scale=(0.0, 0.0)), ValueError, "scale"),
    (dict(scale=0.5), TypeError, "scale"),
    (dict(ratio=(0.0, 1.0)), ValueError, "ratio"),
    (dict(ratio=(2.0, 1.0)), ValueError, "ratio"),
    (dict(generator=0), TypeError, "generator"),
    (dict(antialias="yes"), TypeError, "antialias"),
])
def test_random_resized_crop_rejects_bad_arguments(kwargs, exc, name):
    with pytest.raises(exc, match=rf"^{name}:"):
        A.random_resized_crop(_images(2, 3, 8, 8), 4, **kwargs)
