"""Tests of tricksref.finetune and the shipped checkpoint: loading, freezing, the head swap, discriminative
learning rates, the script's determinism, the target task's splits, the learning-rate search on validation
images, and the lecture's claim that reusing a learned model helps."""

from __future__ import annotations

import hashlib
import json
from importlib import resources

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tricksref import BatchNorm2d
from tricksref.data import load_digits
from tricksref.finetune import (
    TRANSFER_METHODS,
    discriminative_lr_groups,
    freeze,
    is_frozen,
    layer_groups,
    load_pretrained,
    main,
    pretrained_info,
    replace_head,
    target_task,
    trainable_parameters,
    transfer_run,
    transfer_search,
    unfreeze,
)
from tricksref.models import AlexNetSmall, ResNetSmall
from tricksref.train import evaluate

pytestmark = pytest.mark.usefixtures("one_thread")  # small models: see conftest.py


def checkpoint_file():
    return resources.files("tricksref.pretrained").joinpath("alexnet_digits0to7.pt")


def names(params, model):
    ids = {id(p) for p in params}
    return [n for n, p in model.named_parameters() if id(p) in ids]


def bn_modules(model):
    return [m for m in model.modules() if isinstance(m, (BatchNorm2d, nn.BatchNorm2d))]


# ----------------------------------------------------------------------------------------------------
# the checkpoint

def test_pretrained_checkpoint_reaches_its_recorded_source_accuracy():
    info = pretrained_info()
    model = load_pretrained()
    assert not model.training and model.head.out_features == 8
    data = load_digits(size=32, classes=range(8), seed=0)
    acc = evaluate(model, data).accuracy
    assert len(data.y_test) == info["num_test"]
    assert abs(acc - info["source_test_acc"]) <= 1 / info["num_test"] + 1e-12  # one image: float rounding
    assert acc > 0.95  # a model worth reusing


def test_pretrained_checkpoint_is_small_tensors_only_and_recorded():
    info = pretrained_info()
    raw = checkpoint_file().read_bytes()
    assert len(raw) < 400 * 1024
    assert hashlib.sha256(raw).hexdigest() == info["sha256"]
    with resources.as_file(checkpoint_file()) as p:
        state = torch.load(p, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    for key in ("script", "seed", "epochs", "source_test_acc", "torch", "architecture"):
        assert key in info, key
    assert info["script"] == "python -m tricksref.pretrained.make_checkpoint"


def test_pretrained_rejects_unknown_names():
    with pytest.raises(ValueError, match="name"):
        load_pretrained("imagenet")


def test_pretrained_script_is_deterministic(tmp_path):
    from tricksref.pretrained.make_checkpoint import main

    records = [main(["--quick", "--out", str(tmp_path / d)]) for d in ("a", "b")]
    assert records[0]["sha256"] == records[1]["sha256"]
    a = torch.load(tmp_path / "a" / "alexnet_digits0to7.pt", weights_only=True)
    assert set(a) == set(load_pretrained().state_dict())  # the shipped layout


@pytest.mark.slow
def test_pretrained_script_reproduces_the_shipped_checkpoint(tmp_path):
    """Bit for bit on any CPU of this kind: the script trains in a child process with ATen's portable kernels,
    MKL's CPU-independent mode and oneDNN off (REPRODUCIBLE_ENV), as it did when the shipped file was made."""
    from tricksref.pretrained.make_checkpoint import REPRODUCIBLE_ENV, main

    info = pretrained_info()
    assert info["environment"] == REPRODUCIBLE_ENV and info["cpu_capability"] == "DEFAULT"
    assert info["reproducible_on"].startswith("any x86-64 CPU")
    record = main(["--out", str(tmp_path), "--epochs", str(info["epochs"]), "--seed", str(info["seed"])])
    assert record["cpu_capability"] == "DEFAULT"  # the child really ran on the portable kernels
    ours = torch.load(tmp_path / "alexnet_digits0to7.pt", weights_only=True)
    shipped = load_pretrained().state_dict()
    assert set(ours) == set(shipped)
    differ = [k for k, v in shipped.items() if not torch.equal(ours[k], v)]
    assert not differ, f"retrained tensors differ from the shipped ones: {differ}"
    assert record["sha256"] == info["sha256"]
    assert record["train_loss_per_epoch"] == info["train_loss_per_epoch"]


# ----------------------------------------------------------------------------------------------------
# freeze / unfreeze

def test_freeze_leaves_exactly_the_exception_trainable():
    model = replace_head(load_pretrained(), 2)
    freeze(model, except_=model.head)
    assert names(trainable_parameters(model), model) == ["classifier.7.weight", "classifier.7.bias"]
    model.train()
    x = torch.rand(6, 1, 32, 32)
    F.cross_entropy(model(x), torch.tensor([0, 1, 0, 1, 0, 1])).backward()
    for n, p in model.named_parameters():
        assert (p.grad is not None) == n.startswith("classifier.7."), n


def test_freeze_fixes_bn_statistics_in_frozen_parts():
    model = replace_head(load_pretrained(), 2)
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    eval_out = model.eval()(torch.rand(8, 1, 32, 32, generator=torch.Generator().manual_seed(0)))
    freeze(model, except_="classifier")
    model.train()
    model.classifier.eval()  # dropout off, to compare the features
    x = torch.rand(8, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    out = model(x)
    after = {k: v for k, v in model.state_dict().items() if "running" in k}
    assert all(torch.equal(before[k], after[k]) for k in before)  # no statistic moved
    torch.testing.assert_close(out, eval_out)  # frozen BN normalizes with the stored statistics
    assert all(is_frozen(m) for m in bn_modules(model))


def test_freeze_runs_a_frozen_body_in_inference_mode():
    """Head only: every BN and dropout of the body is fixed, so train mode computes what eval mode does."""
    model = replace_head(load_pretrained(), 2, generator=torch.Generator().manual_seed(0))
    x = torch.rand(8, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    expected = model.eval()(x)
    freeze(model, except_=model.head).train()
    torch.testing.assert_close(model(x), expected, rtol=0, atol=0)
    dropouts = [m for m in model.modules() if type(m).__name__ == "Dropout"]
    assert len(dropouts) == 2 and all(is_frozen(m) for m in dropouts)
    unfreeze(model)
    assert not torch.equal(model(x), expected)  # dropout and batch statistics are back


def test_freeze_eval_frozen_false_lets_bn_track():
    model = load_pretrained()
    freeze(model, eval_frozen=False)
    model.train()
    before = bn_modules(model)[0].running_mean.clone()
    model(torch.rand(8, 1, 32, 32))
    assert not torch.equal(bn_modules(model)[0].running_mean, before)
    assert not trainable_parameters(model)


def test_unfreeze_restores_training_and_bn_tracking():
    model = load_pretrained()
    freeze(model)
    unfreeze(model)
    assert len(trainable_parameters(model)) == len(list(model.parameters()))
    model.train()
    bn = bn_modules(model)[0]
    before = bn.running_mean.clone()
    model(torch.rand(8, 1, 32, 32))
    assert bn.training and not torch.equal(bn.running_mean, before)


def test_unfreeze_only_a_part():
    model = load_pretrained()
    freeze(model)
    unfreeze(model, only="features.0")
    assert names(trainable_parameters(model), model) == ["features.0.weight"]


@pytest.mark.parametrize("bad, err", [("nope", ValueError), (3, TypeError), (nn.Linear(2, 2), ValueError)])
def test_freeze_rejects_what_is_not_in_the_model(bad, err):
    with pytest.raises(err, match="except_"):
        freeze(load_pretrained(), except_=bad)


# ----------------------------------------------------------------------------------------------------
# the head

@pytest.mark.parametrize("make", [load_pretrained, lambda: ResNetSmall(num_classes=8).eval()])
def test_replace_head_keeps_the_features(make):
    model = make()
    x = torch.rand(4, 1, 32, 32)
    body = dict(model.named_modules())
    head_name = next(n for n, m in body.items() if m is model.head)
    feats = {}
    hook = model.head.register_forward_hook(lambda m, i, o: feats.setdefault("before", i[0].clone()))
    model(x)
    hook.remove()
    old = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith(head_name + ".")}
    replace_head(model, 2, generator=torch.Generator().manual_seed(0))
    assert model.head.out_features == 2 and model(x).shape == (4, 2)
    model.head.register_forward_hook(lambda m, i, o: feats.setdefault("after", i[0].clone()))
    model(x)
    torch.testing.assert_close(feats["after"], feats["before"], rtol=0, atol=0)
    new = model.state_dict()
    assert all(torch.equal(new[k], v) for k, v in old.items())


def test_replace_head_is_reproducible_trainable_and_typed():
    a = replace_head(freeze(load_pretrained()), 2, generator=torch.Generator().manual_seed(1))
    b = replace_head(load_pretrained().double(), 2, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a.head.weight.double(), b.head.weight, rtol=0, atol=1e-7)
    assert b.head.weight.dtype == torch.float64
    assert all(p.requires_grad for p in a.head.parameters())
    assert names(trainable_parameters(a), a) == ["classifier.7.weight", "classifier.7.bias"]
    bound = 1 / 64 ** 0.5
    assert float(a.head.weight.detach().abs().max()) <= bound


def test_replace_head_rejects_models_without_a_linear_head():
    with pytest.raises(TypeError, match="head"):
        replace_head(nn.Sequential(nn.Linear(3, 3)), 2)
    with pytest.raises(ValueError, match="num_classes"):
        replace_head(load_pretrained(), 0)


# ----------------------------------------------------------------------------------------------------
# discriminative learning rates

@pytest.mark.parametrize("make", [lambda: AlexNetSmall(batchnorm=True), lambda: ResNetSmall(resnet_d=True)])
def test_layer_groups_cover_every_parameter_once(make):
    model = make()
    groups = layer_groups(model)
    flat = [id(p) for g in groups for p in g]
    assert sorted(flat) == sorted(id(p) for p in model.parameters()) and len(flat) == len(set(flat))


@pytest.mark.parametrize("frozen", [None, "features.0", "features"])
def test_discriminative_groups_cover_every_trainable_parameter_once(frozen):
    model = replace_head(load_pretrained(), 2)
    if frozen:
        freeze(model, except_=[n for n, _ in model.named_children() if n != frozen] if frozen == "features"
               else [n for n, _ in model.named_parameters() if not n.startswith(frozen + ".")])
    groups = discriminative_lr_groups(model, 0.01, decay=0.5)
    flat = [id(p) for g in groups for p in g["params"]]
    assert sorted(flat) == sorted(id(p) for p in trainable_parameters(model)) and len(flat) == len(set(flat))
    lrs = [g["lr"] for g in groups]
    assert lrs[-1] == 0.01
    assert lrs == pytest.approx([0.01 * 0.5 ** (len(lrs) - 1 - i) for i in range(len(lrs))])
    assert names(groups[-1]["params"], model) == ["classifier.7.weight", "classifier.7.bias"]
    torch.optim.SGD(groups, lr=0.01)  # a valid optimizer spec


def test_discriminative_groups_follow_the_layers():
    model = AlexNetSmall(batchnorm=True)
    groups = discriminative_lr_groups(model, 1.0, decay=0.5, weight_decay=1e-4)
    assert len(groups) == 8  # 5 convolutions (each with its BN) + 3 linear layers
    assert names(groups[0]["params"], model) == ["features.0.weight", "features.1.weight", "features.1.bias"]
    assert groups[0]["lr"] == 0.5 ** 7 and all(g["weight_decay"] == 1e-4 for g in groups)


def test_discriminative_groups_explicit_and_errors():
    model = ResNetSmall()
    groups = discriminative_lr_groups(model, 0.1, decay=0.1, groups=[[*model.stem.parameters(),
                                                                      *model.layers.parameters()], model.fc])
    assert [g["lr"] for g in groups] == pytest.approx([0.01, 0.1])
    with pytest.raises(ValueError, match="groups"):
        discriminative_lr_groups(model, 0.1, groups=[model.fc])
    with pytest.raises(ValueError, match="decay"):
        discriminative_lr_groups(model, 0.1, decay=0.0)
    with pytest.raises(ValueError, match="base_lr"):
        discriminative_lr_groups(model, -1.0)


# ----------------------------------------------------------------------------------------------------
# the target task and the learning-rate search

def test_finetune_target_task_keeps_train_validation_and_test_apart():
    x, y, xv, yv, xt, yt = target_task(3, seed=0, val_per_class=5)
    assert y.tolist().count(0) == 3 and y.tolist().count(1) == 3
    assert yv.tolist().count(0) == 5 and yv.tolist().count(1) == 5
    rows = [{tuple(r.flatten().tolist()) for r in part} for part in (x, xv, xt)]
    assert len(rows[0]) + len(rows[1]) + len(rows[2]) == len(x) + len(xv) + len(xt) == 354
    assert not (rows[0] & rows[1] or rows[0] & rows[2] or rows[1] & rows[2])
    again = target_task(3, seed=0, val_per_class=5)
    assert all(torch.equal(a, b) for a, b in zip(again, (x, y, xv, yv, xt, yt), strict=True))
    other = target_task(3, seed=1, val_per_class=5)
    assert not torch.equal(other[0], x)  # the seed draws other images
    assert len(target_task(2, seed=0)[3]) == 0  # no validation asked, none given


@pytest.mark.parametrize("method", ["head only", "frozen convolutions", "first two blocks frozen"])
def test_finetune_frozen_part_computed_once_equals_training_the_whole_model(method):
    """transfer_run trains only the part after the frozen layers, on their outputs computed once: the same
    arithmetic as training the whole model with freeze(), so the same losses bit for bit."""
    from tricksref.finetune import _target_model
    from tricksref.train import fit

    run = transfer_run(method, 3e-3, 2, seed=1, epochs=5, val_per_class=5)
    x, y, xv, yv, xt, yt = target_task(2, seed=1, val_per_class=5)
    model, groups = _target_model(method, 3e-3, seed=1)
    fit(model, (x, y), epochs=5, batch_size=len(y), seed=1, progress=False,
        optimizer=torch.optim.Adam(groups, lr=3e-3))
    whole = evaluate(model, (xv, yv))
    assert (run["val_loss"], run["val_acc"]) == (whole.loss, whole.accuracy)
    assert run["test_acc"] == evaluate(model, (xt, yt)).accuracy


def test_finetune_search_chooses_each_rate_on_validation_whatever_the_workers():
    methods, lrs = ("head only", "first two blocks frozen"), (1e-3, 1e-2)
    one, two = (transfer_search(methods, lrs, per_class=2, seeds=(0, 1), epochs=5, val_per_class=5,
                                workers=w) for w in (1, 2))
    def scores(res):
        return {m: {lr: [{k: v for k, v in r.items() if k != "time"} for r in rs] for lr, rs in by.items()}
                for m, by in res["runs"].items()}

    assert scores(one) == scores(two) and one["chosen"] == two["chosen"]
    for m in methods:
        runs = one["runs"][m]

        def score(lr, runs=runs):
            rs = runs[repr(lr)]
            return (sum(r["val_acc"] for r in rs), -sum(r["val_loss"] for r in rs))

        assert one["chosen"][m] == max(lrs, key=score)
        assert one["test"][m] == [r["test_acc"] for r in runs[repr(one["chosen"][m])]]
    assert json.loads(json.dumps(one)) == one  # plain data, ready for the chapter


def test_finetune_search_rejects_bad_arguments():
    with pytest.raises(ValueError, match="methods"):
        transfer_search(["imagenet"], (1e-3,), val_per_class=0)
    with pytest.raises(ValueError, match="val_per_class"):
        transfer_search(["head only"], (1e-3, 1e-2), val_per_class=0)
    with pytest.raises(ValueError, match="lrs"):
        transfer_search(["head only"], (0.0,), val_per_class=0)
    with pytest.raises(ValueError, match="seeds"):
        transfer_search(["head only"], (1e-3,), seeds=(), val_per_class=0)
    with pytest.raises(ValueError, match="per_class"):
        transfer_search(["head only"], (1e-3,), per_class=170, val_per_class=10)
    with pytest.raises(ValueError, match="method"):
        transfer_run("nope", 1e-3, 2, seed=0)
    assert set(TRANSFER_METHODS) >= {"scratch", "head only", "full fine-tuning"}


def test_finetune_command_line_prints_json(capsys):
    main(["--per-class", "1", "--val-per-class", "2", "--seeds", "1", "--epochs", "2", "--lrs", "0.01",
          "--methods", "head only", "--workers", "1", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["chosen"] == {"head only": 0.01} and len(out["test"]["head only"]) == 1
    with pytest.raises(SystemExit):
        main(["--methods", "imagenet"])


# ----------------------------------------------------------------------------------------------------
# the lecture's claim

def test_finetune_pretrained_beats_scratch_on_a_small_target_task():
    """Digits 8 vs 9 from 2 images each, 5 seeds, each method at the rate the book's search picks: fine-tuning
    the checkpoint is ahead on average and scatters less over the seeds than training from scratch (the book
    measures 93.1 +- 2.5% against 83.2 +- 12.9%)."""
    import statistics

    res = transfer_search(("scratch", "full fine-tuning"), {"scratch": (3e-3,), "full fine-tuning": (3e-3,)},
                          per_class=2, seeds=range(5), val_per_class=0)
    scratch, tuned = res["test"]["scratch"], res["test"]["full fine-tuning"]
    assert statistics.fmean(tuned) > statistics.fmean(scratch) + 0.03, res["test"]
    assert statistics.stdev(tuned) < statistics.stdev(scratch), res["test"]
