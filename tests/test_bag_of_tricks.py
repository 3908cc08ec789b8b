"""Tests of tricksref.bag_of_tricks: the recipes toggle one trick each, the augmentation, the table's
structure, and determinism (a run's result does not depend on the number of worker processes)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from tricksref.bag_of_tricks import (
    FULL,
    QUICK,
    RECIPES,
    Recipe,
    _augmenter,
    _subset,
    ablation,
    format_table,
    main,
)

SOME = {k: RECIPES[k] for k in ("baseline", "+ augmentation", "+ mixup", "all tricks")}


def test_bag_of_tricks_each_row_toggles_one_trick():
    base = RECIPES["baseline"]
    assert base == Recipe() and base.tricks() == []
    singles = {name: r for name, r in RECIPES.items() if name.startswith("+ ")}
    for name, r in singles.items():
        assert len(r.tricks()) == 1, name
    all_tricks = RECIPES["all tricks"]
    # "all tricks" combines every single trick except zero-init residual, which is shown separately
    expected = {f.name: getattr(r, f.name) for r in singles.values() for f in dataclasses.fields(r)
                if getattr(r, f.name) != getattr(base, f.name) and f.name != "zero_init_residual"}
    assert {k: getattr(all_tricks, k) for k in all_tricks.tricks()} == expected
    assert RECIPES["all + zero-init"] == dataclasses.replace(all_tricks, zero_init_residual=True)


def test_bag_of_tricks_augment_shifts_by_whole_pixels_and_mixes():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (16,), generator=g)
    shift = _augmenter(FULL, Recipe(augment=True), 10)
    xs, ys = shift(x, y, torch.Generator().manual_seed(1))
    assert torch.equal(ys, y)
    padded = torch.nn.functional.pad(x, (FULL.pad,) * 4)
    for i in range(16):  # every output is the padded image cropped at some whole-pixel offset
        offsets = range(2 * FULL.pad + 1)
        crops = [padded[i, :, t:t + 8, u:u + 8] for t in offsets for u in offsets]
        assert any(torch.allclose(xs[i], c, atol=1e-6) for c in crops), i
    mixed = _augmenter(FULL, Recipe(mixup=0.2), 10)
    xm, ym = mixed(x, y, torch.Generator().manual_seed(1))
    assert ym.shape == (16, 10) and torch.allclose(ym.sum(1), torch.ones(16))
    assert _augmenter(FULL, Recipe(label_smoothing=0.1), 10) is None


def test_bag_of_tricks_subset_takes_per_class_examples():
    y = torch.arange(10).repeat(7)
    idx = _subset(y, 3, torch.Generator().manual_seed(0))
    assert torch.bincount(y[idx]).tolist() == [3] * 10
    assert len(set(idx.tolist())) == 30


@pytest.fixture(scope="module")
def quick_runs():
    return [ablation(SOME, seeds=(0, 1), budget=QUICK, workers=w) for w in (1, 2)]


def test_bag_of_tricks_quick_run_is_deterministic_whatever_the_workers(quick_runs):
    one, two = quick_runs
    for name in SOME:
        for seed in ("0", "1"):
            a, b = one["runs"][name][seed], two["runs"][name][seed]
            assert (a["test_acc"], a["train_loss"]) == (b["test_acc"], b["train_loss"]), (name, seed)


def test_bag_of_tricks_table_structure(quick_runs):
    result = quick_runs[1]
    assert list(result["summary"]) == list(SOME)
    for name, s in result["summary"].items():
        accs = [r["test_acc"] for r in result["runs"][name].values()]
        assert s["mean"] == pytest.approx(sum(accs) / 2) and s["min"] == min(accs) and s["max"] == max(accs)
        assert s["std"] == pytest.approx(abs(accs[0] - accs[1]) / 2 ** 0.5)
    assert result["summary"]["baseline"]["delta"] == 0.0
    lines = format_table(result).splitlines()
    assert lines[1].split()[:3] == ["recipe", "test", "acc"]
    assert [ln.split("  ")[0].strip() for ln in lines[2:2 + len(SOME)]] == list(SOME)
    assert lines[-2].startswith("all tricks - baseline:") and lines[-1].startswith("total wall time")
    assert json.loads(json.dumps(result)) == result


def test_bag_of_tricks_command_line_prints_json(capsys):
    main(["--quick", "--seeds", "2", "--json", "--workers", "1", "--only", "baseline", "+ mixup",
          "--epochs", "1"])
    out = json.loads(capsys.readouterr().out)
    assert list(out["summary"]) == ["baseline", "+ mixup"] and out["budget"]["epochs"] == 1
    assert out["seeds"] == [0, 1]


def test_bag_of_tricks_rejects_bad_arguments():
    with pytest.raises(ValueError, match="seeds"):
        ablation(SOME, seeds=(), budget=QUICK)
    with pytest.raises(ValueError, match="workers"):
        ablation(SOME, seeds=(0,), budget=QUICK, workers=0)
    with pytest.raises(SystemExit):
        main(["--quick", "--only", "no such trick"])
