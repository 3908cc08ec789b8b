"""tricksref.augment colour ops and ColorJitter.

Oracles: the formulas evaluated in float64 (image by image), Python's colorsys for the hue (pixel by pixel)
and for what saturation keeps, Pillow's ImageEnhance.Brightness on uint8, and, for ColorJitter, the
functional ops applied image by image in each image's order.

Every test runs twice, on the CPU's fused C kernel and on the torch ops (the ``color_path`` fixture sets
``TRICKSREF_NATIVE``); tests/test_augment_native.py checks the two against each other and the build.
"""

from __future__ import annotations

import colorsys
import itertools
import math

import numpy as np
import pytest
import torch
from helpers import random_images as _images
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageEnhance

from tricksref import augment as A
from tricksref.augment import _native

SETTINGS = settings(max_examples=20, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
W = (0.2989, 0.587, 0.114)
OPS = (A.adjust_brightness, A.adjust_contrast, A.adjust_saturation, A.adjust_hue)


@pytest.fixture(autouse=True, params=["native", "torch"])
def color_path(request, monkeypatch):
    """Run each test on both implementations of the colour ops (CUDA always takes the torch path)."""
    monkeypatch.setenv(_native.ENV_SWITCH, "1" if request.param == "native" else "0")
    if request.param == "native" and _native.library() is None:
        pytest.skip(f"the native colour kernel did not build here: {_native._state['error']}")
    return request.param


def _factors(batch, low, high, seed=1):
    g = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(batch, generator=g, dtype=torch.float64)


# ---------------------------------------------------------------------------------------------------------
# the formulas, image by image in float64


def _gray64(img):  # (C, H, W) float64 -> (H, W)
    return img[0] if img.shape[0] == 1 else W[0] * img[0] + W[1] * img[1] + W[2] * img[2]


def _blend_ref(x, f, partner):
    """clamp(f x + (1 - f) g) per image, g = partner(image); x float64 in [0, 1]."""
    out = torch.empty_like(x, dtype=torch.float64)
    for i in range(x.shape[0]):
        img = x[i].double()
        out[i] = (f[i] * img + (1 - f[i]) * partner(img)).clamp(0, 1)
    return out


REFS = {
    "brightness": lambda x, f: _blend_ref(x, f, lambda img: torch.zeros(())),
    "contrast": lambda x, f: _blend_ref(x, f, lambda img: _gray64(img).mean()),
    "saturation": lambda x, f: _blend_ref(x, f, _gray64),
}
FUNCS = {"brightness": A.adjust_brightness, "contrast": A.adjust_contrast, "saturation": A.adjust_saturation}


@SETTINGS
@given(op=st.sampled_from(sorted(REFS)), b=st.integers(1, 4), h=st.integers(1, 7), w=st.integers(1, 7),
       high=st.floats(0.0, 3.0), dtype=st.sampled_from([torch.float32, torch.float64]),
       per_image=st.booleans())
def test_blend_ops_match_formula(device, op, b, h, w, high, dtype, per_image):
    channels = (1, 3) if op != "saturation" else (3,)
    for c in channels:
        x = _images(b, c, h, w, dtype, seed=b + 7 * h + 49 * w, device=device)
        f = _factors(b, 0.0, high) if per_image else torch.full((b,), high, dtype=torch.float64)
        out = FUNCS[op](x, f.to(device) if per_image else high)
        assert out.dtype == dtype and out.shape == x.shape and out.device == x.device
        tol = 1e-6 if dtype == torch.float32 else 1e-12
        torch.testing.assert_close(out.cpu().double(), REFS[op](x.cpu(), f), rtol=tol, atol=tol)


def _uint8_blend_ref(x, f, op):
    """torchvision's uint8 rule: gray floored, blend in float, clamp, truncate."""
    out = torch.empty_like(x)
    for i in range(x.shape[0]):
        img = x[i].double()
        if op == "brightness":
            g = torch.zeros(())
        else:
            gray = _gray64(img).floor() if img.shape[0] == 3 else _gray64(img)
            g = gray.mean() if op == "contrast" else gray
        out[i] = (f[i] * img + (1 - f[i]) * g).clamp(0, 255).floor().to(torch.uint8)
    return out


@pytest.mark.parametrize("op", sorted(REFS))
def test_blend_ops_uint8_truncate_like_torchvision(device, op):
    x = _images(16, 3, 9, 8, torch.uint8, device=device)
    f = _factors(16, 0.0, 2.5).float()  # float32 factors: the float64 oracle sees the same values
    out = FUNCS[op](x, f.to(device))
    ref = _uint8_blend_ref(x.cpu(), f.double(), op)
    assert out.dtype == torch.uint8
    diff = (out.cpu().int() - ref.int()).abs()
    # float32 against float64 rounding may move a value that lands on an integer by one level
    assert diff.max() <= 1 and (diff == 0).float().mean() > 0.99


@SETTINGS
@given(f=st.floats(0.0, 3.0), seed=st.integers(0, 1000))
def test_brightness_uint8_equals_pil(f, seed):
    x = _images(3, 3, 6, 5, torch.uint8, seed=seed)
    out = A.adjust_brightness(x, f)
    for i in range(3):
        pil = ImageEnhance.Brightness(Image.fromarray(x[i].permute(1, 2, 0).numpy())).enhance(f)
        assert torch.equal(out[i], torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1))


def test_saturation_keeps_hue_and_scales_chroma():
    # colorsys as the independent check: blending with gray keeps each pixel's HSV hue and multiplies
    # max - min by f (while nothing clips); f = 0 leaves no colour at all
    x = 0.25 + 0.5 * _images(2, 3, 4, 4, torch.float64)
    for f in (0.0, 0.3, 1.2):
        out = A.adjust_saturation(x, f)
        for b, i, j in itertools.product(range(2), range(4), range(4)):
            rgb, new = x[b, :, i, j].tolist(), out[b, :, i, j].tolist()
            assert max(new) - min(new) == pytest.approx(f * (max(rgb) - min(rgb)), abs=1e-12)
            h_new, s_new, _ = colorsys.rgb_to_hsv(*new)
            if f == 0.0:
                assert s_new == pytest.approx(0.0, abs=1e-12)
            else:
                assert h_new == pytest.approx(colorsys.rgb_to_hsv(*rgb)[0], abs=1e-9)


# ---------------------------------------------------------------------------------------------------------
# hue


def _hue_ref(x, f):
    """colorsys, pixel by pixel: H <- (H + f) mod 1. x float64 (B, 3, H, W) in [0, 1]."""
    out = torch.empty_like(x)
    for b, i, j in itertools.product(range(x.shape[0]), range(x.shape[2]), range(x.shape[3])):
        h, s, v = colorsys.rgb_to_hsv(*x[b, :, i, j].tolist())
        rgb = colorsys.hsv_to_rgb((h + float(f[b])) % 1.0, s, v)
        out[b, :, i, j] = torch.tensor(rgb, dtype=torch.float64)
    return out


@SETTINGS
@given(b=st.integers(1, 3), h=st.integers(1, 5), w=st.integers(1, 5), low=st.floats(-0.5, 0.5),
       dtype=st.sampled_from([torch.float32, torch.float64]), per_image=st.booleans())
def test_hue_matches_colorsys(device, b, h, w, low, dtype, per_image):
    x = _images(b, 3, h, w, dtype, seed=b + 5 * h + 25 * w, device=device)
    f = _factors(b, low, 0.5) if per_image else torch.full((b,), low, dtype=torch.float64)
    out = A.adjust_hue(x, f.to(device) if per_image else low)
    tol = 2e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(out.cpu().double(), _hue_ref(x.cpu().double(), f), rtol=tol, atol=tol)


def test_hue_handles_grey_and_primary_colours():
    # grey pixels (max = min) have no hue; pure and secondary colours sit on the sector borders
    colours = [(0.5, 0.5, 0.5), (0, 0, 0), (1, 1, 1), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (0, 1, 1),
               (1, 0, 1), (1, 0.5, 0.5), (0.2, 0.2, 0.9)]
    x = torch.tensor(colours, dtype=torch.float64).T.reshape(1, 3, 1, len(colours))
    for f in (-0.5, -1 / 3, -0.1, 0.0, 1 / 6, 0.25, 0.5):
        out = A.adjust_hue(x, f)
        assert not torch.isnan(out).any()
        torch.testing.assert_close(out, _hue_ref(x, [f]), rtol=0, atol=1e-12)


def test_hue_uint8_converts_like_torchvision():
    x = _images(4, 3, 6, 6, torch.uint8)
    f = _factors(4, -0.5, 0.5)
    out = A.adjust_hue(x, f.float())
    ref = (_hue_ref(x.double() / 255, f.float().double()) * 255.999).floor().to(torch.uint8)
    diff = (out.int() - ref.int()).abs()
    assert out.dtype == torch.uint8 and diff.max() <= 1 and (diff == 0).float().mean() > 0.98


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.uint8])
def test_hue_keeps_max_and_min_and_zero_shift_is_identity(dtype):
    x = _images(3, 3, 8, 8, dtype)
    out = A.adjust_hue(x, torch.tensor([0.3, -0.45, 0.5]))
    same = A.adjust_hue(x, 0.0)
    if dtype == torch.uint8:
        assert torch.equal(same, x)
    else:
        # float32 keeps ~1e-6: the hue is taken mod 6 on values up to 19
        tol = 2e-6 if dtype == torch.float32 else 1e-12
        torch.testing.assert_close(out.amax(1), x.amax(1), rtol=0, atol=tol)
        torch.testing.assert_close(out.amin(1), x.amin(1), rtol=0, atol=tol)
        torch.testing.assert_close(same, x, rtol=0, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hue_output_within_input_min_and_max(device, dtype):
    # the turn keeps V = max and V - c = min; the kernel clamps each channel to exactly these, so no rounding
    # error can leave [min, max] (or [0, 1])
    x = _images(6, 3, 9, 7, dtype, device=device)
    x[:2] = (x[:2] * 4).round() / 4  # greys, primaries and ties between the largest channels
    out = A.adjust_hue(x, torch.tensor([-0.5, -0.3, -0.1, 0.05, 0.25, 0.5], device=device))
    assert (out <= x.amax(1, keepdim=True)).all() and (out >= x.amin(1, keepdim=True)).all()
    assert out.min() >= 0 and out.max() <= 1


# ---------------------------------------------------------------------------------------------------------
# all ops: dtypes, per-image factors, devices


@pytest.mark.parametrize("op, f", [(A.adjust_brightness, 1.3), (A.adjust_contrast, 0.6),
                                   (A.adjust_saturation, 1.7), (A.adjust_hue, 0.2)])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_color_ops_half_precision(device, op, f, dtype):
    x = _images(2, 3, 6, 6, device=device).to(dtype)
    out = op(x, f)
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), op(x.float(), f), rtol=0, atol=1e-2)


@pytest.mark.parametrize("op, low, high", [(A.adjust_brightness, 0, 2), (A.adjust_contrast, 0, 2),
                                           (A.adjust_saturation, 0, 2), (A.adjust_hue, -0.5, 0.5)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_color_ops_per_image_factor_equals_one_call_per_image(device, op, low, high, dtype):
    x = _images(5, 3, 7, 6, dtype, device=device)
    f = _factors(5, low, high).float()
    out = op(x, f.to(device))
    for i in range(5):
        assert torch.equal(out[i:i + 1], op(x[i:i + 1], float(f[i])))


def test_color_ops_same_on_every_device(device):
    x = _images(4, 3, 8, 8)
    for op, f in zip(OPS, (1.4, 0.7, 1.6, -0.3), strict=True):
        torch.testing.assert_close(op(x.to(device), f).cpu(), op(x, f), rtol=1e-5, atol=1e-5)
    xu = _images(4, 3, 8, 8, torch.uint8)
    for op, f in zip(OPS, (1.4, 0.7, 1.6, -0.3), strict=True):
        assert (op(xu.to(device), f).cpu().int() - op(xu, f).int()).abs().max() <= 1


@pytest.mark.parametrize("op, f", [(A.adjust_brightness, 1.3), (A.adjust_contrast, 0.6),
                                   (A.adjust_saturation, 1.7), (A.adjust_hue, 0.2)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.uint8])
def test_color_ops_leave_the_input_alone(device, op, f, dtype):
    # the kernels work in place: on a copy, never in the caller's tensor (float32 works in its own dtype)
    x = _images(3, 3, 5, 4, dtype, device=device)
    before = x.clone()
    out = op(x, f)
    assert torch.equal(x, before) and out.data_ptr() != x.data_ptr()


def test_rgb_to_grayscale_weights():
    x = _images(2, 3, 4, 4, torch.float64)
    torch.testing.assert_close(A.rgb_to_grayscale(x)[:, 0], W[0] * x[:, 0] + W[1] * x[:, 1] + W[2] * x[:, 2])
    assert A.rgb_to_grayscale(_images(2, 3, 4, 4, torch.uint8)).dtype == torch.uint8


# ---------------------------------------------------------------------------------------------------------
# ColorJitter


def _sequential(x, params):
    """The functional ops, image by image, in each image's order: the definition color_jitter batches."""
    out = []
    for i in range(x.shape[0]):
        img = x[i:i + 1]
        for op in params.order[i].tolist():
            f = params[1 + op]
            if f is not None:
                img = OPS[op](img, f[i:i + 1].to(x.device))
        out.append(img)
    return torch.cat(out)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.uint8])
@pytest.mark.parametrize("kwargs", [dict(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1),
                                    dict(brightness=0.8, hue=0.5), dict(contrast=(0, 3), saturation=2.0),
                                    dict(hue=(-0.5, 0.5))])
def test_colorjitter_equals_ops_applied_image_by_image(device, dtype, kwargs):
    x = _images(24, 3, 9, 7, dtype, device=device)
    jitter = A.ColorJitter(**kwargs)
    params = jitter.get_params(24, torch.Generator().manual_seed(4))
    out = A.color_jitter(x, params.order, *params[1:])
    assert out.dtype == dtype and torch.equal(out, _sequential(x, params))
    # the module draws exactly these parameters from the same generator state
    assert torch.equal(jitter(x, generator=torch.Generator().manual_seed(4)), out)


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
@pytest.mark.parametrize("kwargs", [dict(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1),
                                    dict(saturation=1.0, hue=0.5), dict(brightness=0.8, contrast=0.5)])
def test_colorjitter_chunked_equals_whole_batch(device, dtype, kwargs, monkeypatch):
    # a batch cut into chunks (each with its own hue slots, and a last chunk that is not full) gives the
    # same bits as one pass, and as the functional ops applied image by image; chunks are the torch path's,
    # so the functional ops run there too
    from tricksref.augment import color

    monkeypatch.setenv(_native.ENV_SWITCH, "0")
    x = _images(23, 3, 6, 5, dtype, device=device)
    params = A.ColorJitter(**kwargs).get_params(23, torch.Generator().manual_seed(5), device)
    whole = color._jitter(x, params.order, *params[1:], chunk=23)
    for chunk in (1, 4, 22):
        assert torch.equal(color._jitter(x, params.order, *params[1:], chunk=chunk), whole)
    assert torch.equal(whole, _sequential(x, params))


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_color_ops_chunked_equal_whole_batch(device, dtype, monkeypatch):
    # on the CPU the functional ops run in chunks of _CHUNK_ELEMENTS (elsewhere on the whole batch)
    from tricksref.augment import color

    x = _images(11, 3, 6, 5, dtype, device=device)
    factors = [_factors(11, 0.0, 2.0).to(device), _factors(11, 0.0, 2.0, seed=2).to(device),
               _factors(11, 0.0, 2.0, seed=3).to(device), _factors(11, -0.5, 0.5, seed=4).to(device)]
    whole = [op(x, f) for op, f in zip(OPS, factors, strict=True)]
    monkeypatch.setattr(color, "_CHUNK_ELEMENTS", 4 * 3 * 6 * 5)  # 4 images per chunk
    for op, f, ref in zip(OPS, factors, whole, strict=True):
        assert torch.equal(op(x, f), ref)


def test_colorjitter_empty_batch_and_empty_images(device):
    jitter = A.ColorJitter(0.4, 0.4, 0.4, 0.1)
    for shape in [(0, 3, 4, 4), (2, 3, 0, 4)]:
        for dtype in (torch.float32, torch.uint8):
            x = torch.zeros(shape, dtype=dtype, device=device)
            for out in [jitter(x, generator=torch.Generator().manual_seed(0))] + [op(x, 0.3) for op in OPS]:
                assert out.shape == x.shape and out.dtype == dtype and out.device == x.device


def test_colorjitter_grayscale_images(device):
    x = _images(8, 1, 5, 5, device=device)
    jitter = A.ColorJitter(brightness=0.5, contrast=0.5)
    params = jitter.get_params(8, torch.Generator().manual_seed(0))
    assert torch.equal(jitter(x, generator=torch.Generator().manual_seed(0)), _sequential(x, params))
    with pytest.raises(ValueError, match=r"^x: expected 3 channels"):
        A.ColorJitter(saturation=0.5)(x)


def test_colorjitter_order_is_random_per_image_and_covers_all_orders():
    params = A.ColorJitter(0.4, 0.4, 0.4, 0.1).get_params(4800, torch.Generator().manual_seed(0))
    perms = [tuple(row) for row in params.order.tolist()]
    assert all(sorted(p) == [0, 1, 2, 3] for p in perms)
    counts = {p: perms.count(p) for p in itertools.permutations(range(4))}
    assert min(counts.values()) > 120 and max(counts.values()) < 280  # 24 orders, 200 expected each
    assert len(set(perms[:16])) > 8  # within one small batch, images get different orders


def test_colorjitter_order_changes_the_result_per_image():
    # brightness x2 then contrast 0 gives mean(gray(clamp(2x))); the other order gives clamp(2 mean(gray(x)))
    x = _images(1, 3, 6, 6).expand(64, 3, 6, 6).contiguous() * 0.8
    jitter = A.ColorJitter(brightness=(2.0, 2.0), contrast=(0.0, 0.0))
    out = jitter(x, generator=torch.Generator().manual_seed(1))
    gray = W[0] * x[0, 0] + W[1] * x[0, 1] + W[2] * x[0, 2]
    contrast_last = (W[0] * (2 * x[0, 0]).clamp(max=1) + W[1] * (2 * x[0, 1]).clamp(max=1)
                     + W[2] * (2 * x[0, 2]).clamp(max=1)).mean()
    brightness_last = (2 * gray.mean()).clamp(max=1)
    assert not math.isclose(contrast_last, brightness_last, abs_tol=1e-3)
    firsts = []
    for img in out:
        assert torch.allclose(img, img[0, 0, 0].expand_as(img), atol=1e-6)  # flat: contrast 0 ran
        v = float(img[0, 0, 0])
        assert math.isclose(v, contrast_last, abs_tol=1e-5) or math.isclose(v, brightness_last, abs_tol=1e-5)
        firsts.append(math.isclose(v, contrast_last, abs_tol=1e-5))
    assert 10 < sum(firsts) < 54  # each order about half the time, decided per image


@pytest.mark.parametrize("kwargs, ranges", [
    (dict(brightness=0.4, contrast=1.5, saturation=(0.2, 0.9), hue=0.1),
     [(0.6, 1.4), (0.0, 2.5), (0.2, 0.9), (-0.1, 0.1)]),
    (dict(hue=(-0.5, -0.2)), [None, None, None, (-0.5, -0.2)]),
])
def test_colorjitter_factor_ranges(kwargs, ranges):
    jitter = A.ColorJitter(**kwargs)
    params = jitter.get_params(5000, torch.Generator().manual_seed(2))
    for f, rng in zip(params[1:], ranges, strict=True):
        if rng is None:
            assert f is None
        else:
            assert f.min() >= rng[0] and f.max() <= rng[1]
            assert f.min() < rng[0] + 0.01 * (rng[1] - rng[0]) and f.max() > rng[1] - 0.01 * (rng[1] - rng[0])
            assert abs(f.mean().item() - sum(rng) / 2) < 0.02 * (rng[1] - rng[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_colorjitter_reproducible_with_a_generator(device, dtype):
    x = _images(16, 3, 8, 8, dtype, device=device)
    jitter = A.ColorJitter(0.4, 0.4, 0.4, 0.1)
    a = jitter(x, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, jitter(x, generator=torch.Generator().manual_seed(7)))
    assert not torch.equal(a, jitter(x, generator=torch.Generator().manual_seed(8)))
    seeded = A.ColorJitter(0.4, 0.4, 0.4, 0.1, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, seeded(x))
    assert torch.equal(x, _images(16, 3, 8, 8, dtype, device=device))  # the input is left alone


def test_colorjitter_off_is_identity(device):
    x = _images(4, 3, 5, 5, device=device)
    assert torch.equal(A.ColorJitter()(x), x)
    assert torch.equal(A.ColorJitter(brightness=(1, 1), hue=(0, 0))(x), x)


def test_colorjitter_same_on_every_device(device):
    x = _images(8, 3, 8, 8)
    jitter = A.ColorJitter(0.4, 0.4, 0.4, 0.1)
    cpu = jitter(x, generator=torch.Generator().manual_seed(3))
    dev = jitter(x.to(device), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(dev.cpu(), cpu, rtol=1e-5, atol=1e-5)


def test_colorjitter_repr():
    assert repr(A.ColorJitter(brightness=0.5)) == \
        "ColorJitter(brightness=(0.5, 1.5), contrast=None, saturation=None, hue=None)"


# ---------------------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("op, factor, exc", [
    (A.adjust_brightness, -0.1, ValueError), (A.adjust_contrast, -1.0, ValueError),
    (A.adjust_saturation, float("nan"), ValueError), (A.adjust_hue, 0.6, ValueError),
    (A.adjust_hue, -0.51, ValueError), (A.adjust_brightness, "1.2", TypeError),
    (A.adjust_brightness, torch.tensor([1.0, -0.5, 1.0]), ValueError),
    (A.adjust_hue, torch.tensor([0.1, 0.7, 0.0]), ValueError),
    (A.adjust_contrast, torch.tensor([1.0, 1.0]), ValueError),  # 2 factors for 3 images
    (A.adjust_contrast, torch.tensor([1.0, float("nan"), 1.0]), ValueError),
])
def test_color_ops_reject_bad_factors(op, factor, exc):
    with pytest.raises(exc, match=r"^factor:"):
        op(_images(3, 3, 4, 4), factor)


@pytest.mark.parametrize("op", OPS)
def test_color_ops_reject_bad_images(op):
    with pytest.raises(ValueError, match=r"^x: expected a 4D"):
        op(torch.rand(3, 4, 4), 0.1)
    with pytest.raises(TypeError, match=r"^x:"):
        op(torch.zeros(1, 3, 4, 4, dtype=torch.int16), 0.1)
    with pytest.raises(ValueError, match=r"^x: expected .*channels"):
        op(torch.rand(1, 4, 4, 4), 0.1)


@pytest.mark.parametrize("op", [A.adjust_saturation, A.adjust_hue])
def test_saturation_and_hue_need_rgb(op):
    with pytest.raises(ValueError, match=r"^x: expected 3 channels \(an RGB image"):
        op(torch.rand(2, 1, 4, 4), 0.1)


@pytest.mark.parametrize("kwargs, exc, name", [
    (dict(brightness=-0.1), ValueError, "brightness"), (dict(contrast=(1.5, 0.5)), ValueError, "contrast"),
    (dict(saturation=(-0.1, 1.0)), ValueError, "saturation"), (dict(hue=0.6), ValueError, "hue"),
    (dict(hue=(-0.6, 0.1)), ValueError, "hue"), (dict(hue=-0.1), ValueError, "hue"),
    (dict(brightness="0.4"), TypeError, "brightness"),
    (dict(contrast=(0.1, 0.2, 0.3)), TypeError, "contrast"),
    (dict(generator=1), TypeError, "generator"),
])
def test_colorjitter_rejects_bad_arguments(kwargs, exc, name):
    with pytest.raises(exc, match=rf"^{name}:"):
        A.ColorJitter(**kwargs)


@pytest.mark.parametrize("order, exc", [
    (torch.tensor([[0, 1, 2, 3], [0, 0, 2, 3]]), ValueError), (torch.tensor([[0, 1, 2, 3]]), ValueError),
    (torch.tensor([[0.0, 1, 2, 3], [3, 2, 1, 0]]), TypeError),
    (torch.tensor([[0, 1, 2, 4], [3, 2, 1, 0]]), ValueError),
])
def test_color_jitter_rejects_bad_orders(order, exc):
    with pytest.raises(exc, match=r"^order:"):
        A.color_jitter(_images(2, 3, 4, 4), order, brightness=1.1)
