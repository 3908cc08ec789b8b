"""Tests of tricksref.bag_of_tricks: the recipes toggle one trick each, the augmentation, the table's
structure, determinism (a run's result does not depend on the number of worker processes), the hashes that
say what a stored result depends on, and the book's stored table: made from the code here, and its rows
rerun to the same bits."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from tricksref.bag_of_tricks import (
    FULL,
    QUICK,
    RECIPES,
    Recipe,
    _augmenter,
    _source_sha256,
    _subset,
    ablation,
    format_table,
    main,
    provenance,
)

STORED = Path(__file__).resolve().parent.parent / "book" / "other_tricks_bag_of_tricks.json"
REFRESH = ("python -m tricksref.bag_of_tricks --reproducible --seeds 10 --json "
           "> book/other_tricks_bag_of_tricks.json")

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
    assert lines[-2].startswith("all tricks - baseline, paired by seed:")
    assert lines[-1].startswith("total wall time")
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


def test_bag_of_tricks_reproducible_runs_only_named_recipes():
    with pytest.raises(ValueError, match="recipes"):
        ablation({"shifts and mixing": Recipe(augment=True, mixup=0.5)}, seeds=(0,), budget=QUICK,
                 reproducible=True)


# ----------------------------------------------------------------------------------------------------
# what a stored result depends on

SOURCE = '''"""A module."""
import math

SCALE = 2.0


def used(x):
    """Doubles."""
    # a comment
    return SCALE * x


def unused(x):
    return math.sqrt(x)


class Box:
    """A box."""
    size: int = 3

    def area(self):
        return self.size ** 2
'''


@pytest.mark.parametrize("edit, same", [
    (lambda s: s.replace('"""Doubles."""', '"""Twice x."""'), True),           # a docstring
    (lambda s: s.replace("# a comment", "# another comment\n    # and more"), True),  # comments
    (lambda s: s.replace("math.sqrt(x)", "math.exp(x)"), True),                # a function not called
    (lambda s: s.replace("return SCALE * x", "return SCALE * x + 1"), False),  # the code that runs
    (lambda s: s.replace("SCALE = 2.0", "SCALE = 3.0"), False),                # a module constant
    (lambda s: s.replace("size: int = 3", "size: int = 4"), False),            # a class field
    (lambda s: s.replace("return self.size ** 2", "return self.size ** 3"), False),
])
def test_bag_of_tricks_source_hash_follows_the_code_that_runs(tmp_path, edit, same):
    path = tmp_path / "mod.py"
    path.write_text(SOURCE)
    before = _source_sha256(path, ["used", "Box.area"])
    path.write_text(edit(SOURCE))
    assert (_source_sha256(path, ["used", "Box.area"]) == before) is same


def test_bag_of_tricks_source_hash_of_a_missing_function_or_file_is_none(tmp_path):
    path = tmp_path / "mod.py"
    path.write_text(SOURCE)
    assert _source_sha256(path, ["used", "gone"]) is None
    assert _source_sha256(tmp_path / "nothing.py", ["used"]) is None


def test_bag_of_tricks_provenance_names_the_functions_the_runs_call():
    p = provenance()
    files = p["files"]
    assert "run_recipe" in files["tricksref/bag_of_tricks.py"]["functions"]
    assert "format_table" not in files["tricksref/bag_of_tricks.py"]["functions"]  # printing, not training
    assert "fit" in files["tricksref/train.py"]["functions"]
    assert all(v["sha256"] for v in files.values())
    assert provenance(files) == p  # hashing the stored list again gives the same
    assert p["environment"]["ATEN_CPU_CAPABILITY"] == "default" and p["environment"]["oneDNN"] == "off"


# ----------------------------------------------------------------------------------------------------
# the book's stored table

def test_bag_of_tricks_stored_table_is_made_from_the_code_here():
    """The chapter shows the stored table only while this holds, and reruns the ablation otherwise."""
    stored = json.loads(STORED.read_text())
    assert stored["budget"] == json.loads(json.dumps(dataclasses.asdict(FULL)))
    assert list(stored["summary"]) == list(RECIPES)
    assert stored["machine"]["cpu_capability"] == "DEFAULT" and stored["machine"]["mkldnn"] is False
    now = provenance()
    changed = sorted(f for f in set(now["files"]) | set(stored["provenance"]["files"])
                     if now["files"].get(f) != stored["provenance"]["files"].get(f))
    assert not changed, f"the code the ablation runs changed in {changed}: refresh the table with {REFRESH}"
    assert now == stored["provenance"], f"the data or versions changed: refresh the table with {REFRESH}"


@pytest.mark.slow
def test_bag_of_tricks_stored_rows_rerun_to_the_same_bits():
    """Bit for bit on any x86-64 CPU: the rows run in the reproducible child process, as the table was
    made there."""
    stored = json.loads(STORED.read_text())
    rows = {name: RECIPES[name] for name in ("baseline", "all tricks")}
    live = ablation(rows, seeds=stored["seeds"], budget=FULL, reproducible=True)
    for name in rows:
        for seed, then in stored["runs"][name].items():
            now = live["runs"][name][seed]
            assert {k: now[k] for k in ("test_acc", "test_loss", "train_loss")} == \
                {k: then[k] for k in ("test_acc", "test_loss", "train_loss")}, (name, seed)
