"""Tests of tricksref.train: fit against a plain gradient-descent loop, determinism, schedules, soft labels,
augmentation, evaluation, errors; and that both models learn digits."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tricksref.augment import mixup
from tricksref.data import DataSplit, load_digits
from tricksref.label_smoothing import LabelSmoothingCrossEntropy
from tricksref.models import AlexNetSmall, ResNetSmall
from tricksref.schedules import CosineLR, StagewiseLR
from tricksref.train import EvalResult, History, evaluate, fit

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")  # small models: see conftest.py


def toy(n=40, classes=3, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 4, 4, generator=g, dtype=dtype)
    y = torch.randint(0, classes, (n,), generator=g)
    return x, y


def small_cnn(classes=3, dtype=torch.float32, seed=0, p=0.2):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Dropout(p), nn.Flatten(),
                         nn.Linear(64, classes)).to(dtype)


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------------------------------
# the loop itself

def test_fit_full_batch_equals_plain_gradient_descent():
    """batch_size = N: every step is w <- w - eta * grad of the mean loss, whatever the permutation."""
    x, y = toy(dtype=F64)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    ref = [p.detach().clone().requires_grad_(True) for p in model.parameters()]
    eta, epochs = 0.3, 5
    fit(model, (x, y), epochs=epochs, batch_size=len(x), progress=False,
        optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=eta))
    for _ in range(epochs):  # the lecture's one-loop SGD, written out
        w1, b1, w2, b2 = ref
        loss = F.cross_entropy(torch.tanh(x.flatten(1) @ w1.T + b1) @ w2.T + b2, y)
        grads = torch.autograd.grad(loss, ref)
        ref = [(w - eta * g).detach().requires_grad_(True) for w, g in zip(ref, grads, strict=True)]
    for p, r in zip(model.parameters(), ref, strict=True):
        torch.testing.assert_close(p.detach(), r.detach(), rtol=0, atol=1e-12)


def test_fit_minibatches_visit_every_example_once_per_epoch():
    x, y = toy(n=23)
    seen = []

    def spy(xb, yb, g):
        seen.append(xb[:, 0, 0, 0].clone())
        return xb, yb

    fit(small_cnn(), (x, y), epochs=2, batch_size=5, augment=spy, progress=False)
    assert [len(s) for s in seen] == [5, 5, 5, 5, 3] * 2
    for epoch in (seen[:5], seen[5:]):
        assert sorted(torch.cat(epoch).tolist()) == sorted(x[:, 0, 0, 0].tolist())
    assert not torch.equal(torch.cat(seen[:5]), torch.cat(seen[5:]))  # reshuffled each epoch


def test_fit_drop_last_skips_the_short_batch():
    x, y = toy(n=23)
    sizes = []
    fit(small_cnn(), (x, y), epochs=1, batch_size=5, drop_last=True, progress=False,
        augment=lambda xb, yb, g: (sizes.append(len(xb)), (xb, yb))[1])
    assert sizes == [5, 5, 5, 5]


def test_fit_is_deterministic_given_seed():
    x, y = toy()
    runs = []
    for seed in (7, 7, 8):
        model = small_cnn()  # the same initial weights every time; dropout draws from fit's seeded RNG
        hist = fit(model, (x, y), epochs=3, batch_size=8, seed=seed, progress=False,
                   augment=lambda xb, yb, g: (xb + 0.1 * torch.randn(xb.shape, generator=g), yb))
        runs.append((weights(model), hist.train_loss))
    (w1, l1), (w2, l2), (w3, l3) = runs
    assert all(torch.equal(w1[k], w2[k]) for k in w1) and l1 == l2
    assert not all(torch.equal(w1[k], w3[k]) for k in w1)


def test_fit_leaves_the_global_rng_as_it_was():
    x, y = toy()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fit(small_cnn(seed=5), (x, y), epochs=1, batch_size=8, progress=False)
    torch.manual_seed(123)  # small_cnn reseeds: compare the state fit leaves against a fresh one
    model = small_cnn(seed=5)
    torch.manual_seed(123)
    fit(model, (x, y), epochs=1, batch_size=8, progress=False)
    torch.testing.assert_close(torch.rand(3), expected, rtol=0, atol=0)


def test_fit_grad_clip_bounds_each_step():
    """Plain SGD, clipped to c: a full-batch step is eta * c long (the gradient is much bigger than c)."""
    x, y = toy(dtype=F64)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).double()
    with torch.no_grad():
        model[1].weight.mul_(50)  # a large initial gradient
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    fit(model, (x, y), epochs=1, batch_size=len(x), grad_clip=0.01, progress=False,
        optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=2.0))
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    # torch's clip_grad_norm_ scales by c / (norm + 1e-6): the step is eta * c to about 1e-6 relative
    assert (after - before).norm().item() == pytest.approx(2.0 * 0.01, rel=1e-5)


@pytest.mark.parametrize("interval", ["iteration", "epoch"])
def test_fit_scheduler_steps_per_iteration_or_per_epoch(interval):
    x, y = toy(n=40)
    seen = {}

    def make(opt, num_steps):
        seen["num_steps"] = num_steps
        return CosineLR(opt, T_max=num_steps)

    hist = fit(small_cnn(), (x, y), epochs=4, batch_size=10, scheduler=make, scheduler_interval=interval,
               optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1), progress=False)
    steps_per_epoch = 4
    T = 4 * steps_per_epoch if interval == "iteration" else 4
    assert seen["num_steps"] == T
    t_at_epoch_start = [e * (steps_per_epoch if interval == "iteration" else 1) for e in range(4)]
    assert hist.lr == pytest.approx([0.05 * (1 + math.cos(math.pi * t / T)) for t in t_at_epoch_start])


def test_fit_accepts_a_scheduler_instance_on_its_optimizer():
    x, y = toy()
    model = small_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = StagewiseLR(opt, milestones=[1], gamma=0.5)
    hist = fit(model, (x, y), epochs=3, batch_size=len(x), optimizer=opt, scheduler=sched, progress=False)
    assert hist.lr == [1.0, 0.5, 0.5]
    other = torch.optim.SGD(small_cnn().parameters(), lr=1.0)
    with pytest.raises(ValueError, match="scheduler"):
        fit(model, (x, y), epochs=1, optimizer=opt, scheduler=StagewiseLR(other, [1]), progress=False)


def test_fit_soft_labels_from_mixup_with_label_smoothing():
    x, y = toy(n=32)
    x = x.sigmoid()  # images in [0, 1] for the augmentation ops
    hist = fit(small_cnn(), (x, y), epochs=2, batch_size=8, loss_fn=LabelSmoothingCrossEntropy(0.1),
               augment=lambda xb, yb, g: mixup(xb, yb, 3, alpha=0.4, generator=g), eval_data=(x, y),
               progress=False)
    assert all(math.isfinite(v) for v in hist.train_loss + hist.eval_loss)
    assert all(0.0 <= a <= 1.0 for a in hist.train_acc)
    # soft labels given directly, as data
    soft = F.one_hot(y, 3).double() * 0.8 + 0.2 / 3
    hist = fit(small_cnn(), (x, soft.float()), epochs=1, batch_size=8, eval_data=(x, soft.float()),
               progress=False)
    assert len(hist) == 1


def test_fit_history_records_every_epoch():
    x, y = toy()
    hist = fit(small_cnn(), (x, y), epochs=3, batch_size=8, eval_data=(x[:10], y[:10]), progress=False)
    d = hist.to_dict()
    assert list(d) == ["epoch", "train_loss", "train_acc", "eval_loss", "eval_acc", "lr", "time"]
    assert d["epoch"] == [1, 2, 3] and all(len(v) == 3 for v in d.values())
    assert all(t > 0 for t in d["time"])
    assert hist.final == hist.rows()[-1] and hist.final["epoch"] == 3
    lines = hist.table().splitlines()
    assert len(lines) == 4 and lines[0].split()[0] == "epoch"
    no_eval = fit(small_cnn(), (x, y), epochs=1, batch_size=8, progress=False)
    assert no_eval.eval_loss == [None] and no_eval.eval_acc == [None] and "-" in no_eval.table()
    with pytest.raises(ValueError, match="no epoch"):
        _ = History().final


def test_fit_progress_bar_writes_to_stderr(capsys):
    x, y = toy()
    fit(small_cnn(), (x, y), epochs=2, batch_size=8, progress=True)
    assert "fit" in capsys.readouterr().err


def test_fit_runs_on_device(device):
    x, y = toy()
    model = small_cnn()
    hist = fit(model, (x, y), epochs=1, batch_size=8, device=device, eval_data=(x, y), progress=False)
    assert next(model.parameters()).device.type == device.type
    assert math.isfinite(hist.train_loss[0])


# ----------------------------------------------------------------------------------------------------
# evaluate

def test_evaluate_matches_a_direct_computation_and_restores_the_mode():
    x, y = toy(n=37)
    model = small_cnn().train()
    res = evaluate(model, (x, y), batch_size=10)
    assert isinstance(res, EvalResult) and model.training
    model.eval()
    with torch.no_grad():
        logits = model(x)
    assert res.loss == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert res.accuracy == pytest.approx((logits.argmax(1) == y).float().mean().item())


def test_evaluate_uses_the_test_half_of_a_datasplit():
    x, y = toy(n=30)
    split = DataSplit(x[:20], y[:20], x[20:], y[20:])
    model = small_cnn()
    assert evaluate(model, split) == evaluate(model, (x[20:], y[20:]))


# ----------------------------------------------------------------------------------------------------
# errors

@pytest.mark.parametrize("kwargs, name", [
    (dict(epochs=0), "epochs"), (dict(batch_size=0), "batch_size"), (dict(seed=-1), "seed"),
    (dict(scheduler_interval="step"), "scheduler_interval"), (dict(grad_clip=0.0), "grad_clip"),
    (dict(optimizer="sgd"), "optimizer"), (dict(scheduler=3), "scheduler"), (dict(augment=1), "augment"),
    (dict(loss_fn="ce"), "loss_fn"), (dict(eval_data=[1, 2]), "eval_data"),
    (dict(optimizer=lambda m: None), "optimizer"),
])
def test_fit_rejects_bad_arguments(kwargs, name):
    x, y = toy()
    kwargs = {"epochs": 1, **kwargs}
    with pytest.raises((ValueError, TypeError), match=name):
        fit(small_cnn(), (x, y), progress=False, **kwargs)


@pytest.mark.parametrize("train", [
    "digits", (torch.zeros(4, 1, 4, 4), torch.zeros(5, dtype=torch.long)),
    (torch.zeros(4, 1, 4, 4, dtype=torch.long), torch.zeros(4, dtype=torch.long)),
    (torch.zeros(4, 1, 4, 4), torch.zeros(4, 2, 2)),
    (torch.zeros(4, 1, 4, 4), torch.zeros(4, dtype=torch.bool)),
])
def test_fit_rejects_bad_data(train):
    with pytest.raises((ValueError, TypeError), match="train"):
        fit(small_cnn(), train, epochs=1, progress=False)


def test_fit_rejects_a_non_module():
    with pytest.raises(TypeError, match="model"):
        fit(lambda x: x, toy(), epochs=1, progress=False)


# ----------------------------------------------------------------------------------------------------
# the models learn digits (the Models bullet of issue 3)

def test_fit_resnet_learns_digits_in_a_few_epochs():
    data = load_digits(size=8)
    torch.manual_seed(0)
    model = ResNetSmall(widths=(8, 16, 32), norm_layer=nn.BatchNorm2d)
    hist = fit(model, data, epochs=6, batch_size=64, eval_data=data, progress=False,
               scheduler=lambda opt, n: CosineLR(opt, T_max=n))
    assert hist.eval_acc[-1] > 0.95, hist.table()


@pytest.mark.slow
def test_fit_alexnet_learns_digits_in_a_few_epochs():
    data = load_digits(size=32)
    torch.manual_seed(0)
    model = AlexNetSmall(batchnorm=True)
    hist = fit(model, data, epochs=6, batch_size=64, eval_data=data, progress=False,
               optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=1e-3))
    assert hist.eval_acc[-1] > 0.9, hist.table()
