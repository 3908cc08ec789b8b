"""Tests of tricksref.data: the packaged and generated data sets."""

import pytest
import torch

from tricksref import data


def test_data_digits_split_is_stratified_and_disjoint():
    s = data.load_digits(size=32, test_fraction=0.25, seed=0)
    assert s.x_train.shape[1:] == (1, 32, 32) and s.x_train.dtype == torch.float32
    assert len(s.x_train) + len(s.x_test) == 1797
    assert 0.0 <= float(s.x_train.min()) and float(s.x_train.max()) <= 1.0
    for c in range(10):  # every class is held out in the same proportion (up to rounding)
        n_test, n_all = int((s.y_test == c).sum()), int((s.y_train == c).sum() + (s.y_test == c).sum())
        assert abs(n_test - 0.25 * n_all) <= 0.5
    # no image is in both halves
    train = {tuple(x.flatten().tolist()) for x in data.load_digits(size=8).x_train}
    assert not any(tuple(x.flatten().tolist()) in train for x in data.load_digits(size=8).x_test)


def test_data_digits_classes_are_relabelled_in_order():
    s = data.load_digits(size=8, classes=[8, 9])
    assert set(s.y_train.tolist()) == {0, 1} and s.num_classes == 2
    full = data.load_digits(size=8)
    nines = torch.cat([full.x_train[full.y_train == 9], full.x_test[full.y_test == 9]])
    ours = torch.cat([s.x_train[s.y_train == 1], s.x_test[s.y_test == 1]])
    key = lambda t: sorted(tuple(r.flatten().tolist()) for r in t)  # noqa: E731
    assert key(ours) == key(nines)


@pytest.mark.parametrize("bad", [dict(size=4), dict(test_fraction=1.0), dict(classes=[1, 1]),
                                 dict(classes=[10])])
def test_data_digits_rejects_bad_arguments(bad):
    with pytest.raises((ValueError, TypeError), match=next(iter(bad))):
        data.load_digits(**bad)


def test_data_cars_are_reproducible_and_in_range():
    a = data.make_cars(20, generator=torch.Generator().manual_seed(3))
    b = data.make_cars(20, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    x, brand, facing = a
    assert x.shape == (20, 3, 32, 32) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0


@pytest.mark.parametrize("facing, rule", [("tied", lambda b: b), ("opposite", lambda b: 1 - b),
                                          ("left", lambda b: 0 * b), ("right", lambda b: 0 * b + 1)])
def test_data_cars_facing_follows_the_rule(facing, rule):
    _, brand, right = data.make_cars(64, facing=facing, generator=torch.Generator().manual_seed(0))
    assert torch.equal(right, rule(brand))
    assert 0 < int(brand.sum()) < 64  # both brands appear


def test_data_cars_random_facing_is_independent_of_brand():
    _, brand, right = data.make_cars(4000, facing="random", generator=torch.Generator().manual_seed(1))
    for b in (0, 1):  # each brand faces right about half the time (binomial sd ~0.011; 6 sd margin)
        assert abs(float(right[brand == b].float().mean()) - 0.5) < 0.07


def test_data_cars_headlight_is_at_the_front():
    x, _, right = data.make_cars(200, facing="random", generator=torch.Generator().manual_seed(2))
    yellow = (x[:, 0] > 0.85) & (x[:, 1] > 0.75) & (x[:, 2] < 0.35)  # (N, H, W)
    cols = torch.arange(32.0).view(1, 1, 32)
    car = (x.std(1) > 0.2)  # coloured pixels, roughly the car
    for i in range(200):
        if yellow[i].any():
            head_x = float((yellow[i] * cols[0]).sum() / yellow[i].sum())
            car_x = float((car[i] * cols[0]).sum() / car[i].sum().clamp(min=1))
            assert (head_x > car_x) == bool(right[i]), i


def test_data_cars_rejects_bad_arguments():
    with pytest.raises(ValueError, match="facing"):
        data.make_cars(4, facing="up")
    with pytest.raises(ValueError, match="size"):
        data.make_cars(4, size=8)


def test_data_sample_photos_are_real_images():
    p = data.sample_photos(("astronaut", "chelsea"), size=64)
    assert p.shape == (2, 3, 64, 64)
    assert float(p.std()) > 0.1  # a photograph, not a constant
    with pytest.raises(ValueError, match="names"):
        data.sample_photos(["lena"])
