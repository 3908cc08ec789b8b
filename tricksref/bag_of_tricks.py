"""Bag of tricks at CPU scale: an ablation of training tricks on digits, one trick at a time and all together.

He et al., 2019, "Bag of Tricks for Image Classification with Convolutional Neural Networks" (CVPR),
arXiv:1812.01187, measure on ImageNet what each small change to a standard training recipe adds. This module
repeats that experiment in minutes on a laptop CPU: ``ResNetSmall`` on scikit-learn's digits, a baseline
recipe, the baseline plus each trick alone, and all tricks together, each over several seeds::

    python -m tricksref.bag_of_tricks                 # the full ablation: a table of test accuracy
    python -m tricksref.bag_of_tricks --seeds 5 --json
    python -m tricksref.bag_of_tricks --reproducible --seeds 10 --json   # the book's stored table

The regime. Digits is easy: with all 1347 training images and enough epochs every recipe reaches about 99%
and no trick can be told from the noise of 450 test images. The tricks of the paper are regularizers and
optimization aids, so the ablation puts the network where they matter: few images (``per_class`` training
images per class, drawn per seed) and a short budget of epochs. The baseline is the "standard" recipe of the
paper scaled down: SGD with momentum 0.9, weight decay on every parameter, the lecture's stagewise schedule
(the rate divided by 10 at half and at three quarters of training), plain cross-entropy, no augmentation.

The tricks (each one switch of :class:`Recipe`):

- ``augment``: random shifts by whole pixels (pad with background, crop the image's size at a random
  offset). No flips: a flipped digit is another glyph or none.
- ``label_smoothing``: cross-entropy against (1 - eps) one-hot + eps / K, eps = 0.1 (Szegedy et al., 2016).
- ``mixup``: train on convex mixtures of image pairs and their labels, lambda ~ Beta(alpha, alpha)
  (Zhang et al., 2018).
- ``cosine_warmup``: linear warmup over the first epochs (Goyal et al., 2017), then cosine decay to 0, in
  place of the stagewise schedule.
- ``no_bias_decay``: weight decay only on convolution and linear weights, not on biases and BN's gamma, beta.
- ``resnet_d``: average-pool the downsampling shortcuts before their 1x1 convolution (ResNet-D, same
  paper), so that they see every pixel instead of one in four.
- ``zero_init_residual``: gamma = 0 in the last BN of every residual block, so each block starts as the
  identity. Shown apart, after "all tricks", and left out of it *after* it was seen to hurt at this scale:
  "all tricks" is thereby chosen on the test images it is scored on, and "all + zero-init" is the row that
  takes every trick. With the residual branches switched off, the network starts as a stem and two strided
  1x1 convolutions, and with shifted inputs it barely trains in 120 steps (measured: the training loss stays
  near ln 10 with ``augment`` and ``zero_init_residual`` together); He et al.'s gain is for 50 layers and
  120 epochs.

Every run is seeded: seed s fixes the training subset, the initial weights, the batch order, the
augmentation and the mixing. Rows share their seeds, so the difference of two rows is paired. Runs go to
``workers`` processes, each with one thread, so a run's result does not depend on how many workers there
are. It does depend on the CPU: torch picks its kernels by the CPU's vector extensions (AVX-512, AVX2), and
training amplifies their different roundings. ``reproducible=True`` (``--reproducible``) runs the ablation
in a child process with the environment of :mod:`tricksref.pretrained.make_checkpoint` (ATen's portable
kernels, MKL's CPU-independent mode, one thread) and oneDNN off, where the results are the same bits on any
x86-64 CPU, and records :func:`provenance`: the hashes of the code the runs call and of the data.

Measured (``python -m tricksref.bag_of_tricks --reproducible --seeds 10``, 2-core x86-64 VM, torch 2.13
CPU; test accuracy in % on the 450 test images, mean ± sample standard deviation over 10 seeds; about
4 minutes wall for the whole command on the machine with a load average of 4 from other jobs)::

    baseline                 88.76 ± 1.06     + no bias decay          88.31 ± 1.35
    + augmentation           89.71 ± 2.42     + ResNet-D               89.56 ± 2.37
    + label smoothing        87.84 ± 1.82     all tricks               92.11 ± 1.84
    + mixup                  90.02 ± 0.99     + zero-init residual     85.29 ± 2.24
    + cosine & warmup        88.40 ± 1.20     all + zero-init          85.07 ± 4.77

Paired by seed, all tricks beat the baseline by 3.36 points (95% t-interval [1.42, 5.29], ahead in 9 of 10
seeds); of the single tricks only mixup gains beyond the noise (+1.27, [0.34, 2.19]); zero-init residual
loses 3.47 ([-5.50, -1.43]).

Notes:
    ``channels_last`` made a training step of this model about 20% faster on this CPU, but with torch 2.13
    a process that alternates ``torch.set_num_threads`` between channels_last training runs corrupts its
    heap ("corrupted double-linked list"), so the ablation keeps the default memory format.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_number

__all__ = ["Recipe", "Budget", "RECIPES", "QUICK", "FULL", "run_recipe", "ablation", "provenance",
           "format_table", "main"]


@dataclass(frozen=True)
class Recipe:
    """One training recipe: the baseline with some tricks switched on."""

    augment: bool = False             # random shifts
    label_smoothing: float = 0.0      # eps; 0 is plain cross-entropy
    mixup: float = 0.0                # Beta(alpha, alpha) parameter; 0 is off
    cosine_warmup: bool = False       # warmup + cosine instead of the stagewise (step) schedule
    no_bias_decay: bool = False       # weight decay on conv/linear weights only
    zero_init_residual: bool = False  # gamma = 0 in each block's last BN
    resnet_d: bool = False            # average-pool the downsampling shortcuts before their 1x1 convolution

    def tricks(self) -> list[str]:
        """Names of the switches that differ from the baseline."""
        base = Recipe()
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) != getattr(base, f.name)]


@dataclass(frozen=True)
class Budget:
    """The data, model and training budget shared by every recipe. Units in the comments."""

    size: int = 8                     # pixels: digits at their native 8x8 (the cheapest that learns)
    per_class: int = 10               # training images per class, drawn per seed (the data-poor regime)
    epochs: int = 60                  # passes over the training subset: 120 SGD steps at 100 images
    batch_size: int = 50              # images per SGD step
    lr: float = 0.1                   # peak learning rate of SGD with momentum 0.9
    weight_decay: float = 5e-4        # lambda of the L2 penalty (torch's SGD weight_decay)
    widths: tuple[int, ...] = (8, 16, 32)  # channels of ResNetSmall's three stages (one block each)
    warmup_epochs: int = 6            # length of the linear warmup of ``cosine_warmup`` (10% of training)
    pad: int = 1                      # pixels: ``augment`` shifts each image by up to this much each way


_TRICKS = dict(augment=True, label_smoothing=0.1, mixup=0.2, cosine_warmup=True, no_bias_decay=True,
               resnet_d=True)

#: the ablation's rows, in print order: the baseline, each trick alone, the tricks together; then zero-init
#: residual, alone and added to the others (it fails at this scale: see the module docstring)
RECIPES: dict[str, Recipe] = {
    "baseline": Recipe(),
    "+ augmentation": Recipe(augment=True),
    "+ label smoothing": Recipe(label_smoothing=0.1),
    "+ mixup": Recipe(mixup=0.2),
    "+ cosine & warmup": Recipe(cosine_warmup=True),
    "+ no bias decay": Recipe(no_bias_decay=True),
    "+ ResNet-D": Recipe(resnet_d=True),
    "all tricks": Recipe(**_TRICKS),
    "+ zero-init residual": Recipe(zero_init_residual=True),
    "all + zero-init": Recipe(**_TRICKS, zero_init_residual=True),
}

FULL = Budget()
#: a budget for tests and smoke runs: seconds, not minutes (its accuracies mean nothing)
QUICK = Budget(size=8, per_class=4, epochs=2, batch_size=16, widths=(4, 8, 8), warmup_epochs=1)


# ----------------------------------------------------------------------------------------------------
# one run

_DATA: dict = {}


def _digits(size: int):
    """Digits at ``size`` (cached per process: forked workers inherit the parent's copy)."""
    if size not in _DATA:
        from .data import load_digits

        _DATA[size] = load_digits(size=size)
    return _DATA[size]


def _subset(y: torch.Tensor, per_class: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of ``per_class`` random examples of every class (all of a class that has fewer)."""
    picks = []
    for c in y.unique():
        idx = (y == c).nonzero().squeeze(1)
        picks.append(idx[torch.randperm(len(idx), generator=generator)[:per_class]])
    return torch.cat(picks).sort().values


def _augmenter(budget: Budget, recipe: Recipe, num_classes: int):
    """The ``augment(x, y, generator)`` callable of ``fit`` for a recipe, or None."""
    if not recipe.augment and not recipe.mixup:
        return None
    from .augment import mixup, resized_crop

    def augment(x, y, g):
        if recipe.augment:
            n, _, h, w = x.shape
            padded = F.pad(x, (budget.pad,) * 4)  # digits are white on black: pad with background
            # a crop of the image's own size at a random offset: a whole-pixel shift, no resampling blur
            top, left = torch.randint(0, 2 * budget.pad + 1, (2, n), generator=g).to(x.device)
            x = resized_crop(padded, top, left, h, w, (h, w))
        if recipe.mixup:
            x, y = mixup(x, y, num_classes, alpha=recipe.mixup, generator=g)
        return x, y

    return augment


def run_recipe(recipe: Recipe, seed: int, budget: Budget = FULL, *, device="cpu") -> dict:
    """Train one ``ResNetSmall`` with ``recipe`` and return its test accuracy and wall time.

    Returns:
        ``{"test_acc", "test_loss", "train_loss", "time"}``: accuracy in [0, 1] and cross-entropy on the
        digits test split, the last epoch's training loss, and wall seconds of the training.
    """
    from .label_smoothing import LabelSmoothingCrossEntropy
    from .models import ResNetSmall
    from .regularization import weight_decay_groups
    from .schedules import CosineLR, LinearWarmupLR, StagewiseLR
    from .train import evaluate, fit

    check_number(seed, "seed", low=0, integer=True)
    data = _digits(budget.size)
    g = torch.Generator().manual_seed(seed)
    idx = _subset(data.y_train, budget.per_class, g)
    x, y = data.x_train[idx], data.y_train[idx]
    num_classes = data.num_classes

    torch.manual_seed(seed)
    # torch's BatchNorm2d: the same math as tricksref's (tests/test_batchnorm.py), 1.4x faster steps here
    model = ResNetSmall(num_classes=num_classes, widths=budget.widths, norm_layer=nn.BatchNorm2d,
                        zero_init_residual=recipe.zero_init_residual, resnet_d=recipe.resnet_d)

    def optimizer(m):
        params = (weight_decay_groups(m, budget.weight_decay) if recipe.no_bias_decay
                  else [{"params": list(m.parameters()), "weight_decay": budget.weight_decay}])
        return torch.optim.SGD(params, lr=budget.lr, momentum=0.9)

    steps_per_epoch = math.ceil(len(y) / budget.batch_size)

    def scheduler(opt, num_steps):
        if recipe.cosine_warmup:
            warm = max(1, min(budget.warmup_epochs * steps_per_epoch, num_steps - 1))
            return LinearWarmupLR(opt, warm, start_factor=0.1, after=CosineLR(opt, T_max=num_steps - warm))
        # the lecture's stages: eta, eta / 10 from half-way, eta / 100 for the last quarter
        return StagewiseLR(opt, milestones=sorted({max(1, num_steps // 2), max(2, (3 * num_steps) // 4)}),
                           gamma=0.1)

    loss_fn = (LabelSmoothingCrossEntropy(recipe.label_smoothing) if recipe.label_smoothing
               else F.cross_entropy)
    t0 = time.perf_counter()
    hist = fit(model, (x, y), epochs=budget.epochs, batch_size=budget.batch_size, optimizer=optimizer,
               scheduler=scheduler, loss_fn=loss_fn, augment=_augmenter(budget, recipe, num_classes),
               device=device, seed=seed, progress=False)
    seconds = time.perf_counter() - t0
    ev = evaluate(model, (data.x_test, data.y_test))
    return {"test_acc": ev.accuracy, "test_loss": ev.loss, "train_loss": hist.train_loss[-1], "time": seconds}


# ----------------------------------------------------------------------------------------------------
# the ablation

def _task(args):
    name, recipe, seed, budget = args
    return name, seed, run_recipe(recipe, seed, budget)


def _one_thread() -> None:
    torch.set_num_threads(1)  # one core per run: a run's result does not depend on the number of workers


def _pool(workers: int):
    methods = multiprocessing.get_all_start_methods()
    # fork: the workers inherit torch, the data and torch.optim's lazy imports instead of loading them again
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    return ctx.Pool(workers, initializer=_one_thread)


def ablation(recipes: dict[str, Recipe] | None = None, seeds=(0, 1, 2), budget: Budget = FULL, *,
             workers: int | None = None, progress: bool = False, reproducible: bool = False) -> dict:
    """Run every recipe with every seed; return the per-run results and the per-recipe summary.

    Args:
        recipes: name -> Recipe, in print order; the names must be those of :data:`RECIPES` when
            ``reproducible``. Default: :data:`RECIPES`.
        seeds: the seeds every recipe is run with (>= 1 of them).
        budget: the shared data, model and training budget. Default: :data:`FULL`.
        workers: processes that run in parallel, one thread each; 1 runs in this process. Default: the
            number of CPU cores, at most 2 (the course's laptop).
        progress: print a line per finished run to stderr.
        reproducible: run in a child process with :data:`REPRODUCIBLE_ENV` and oneDNN off, whose results
            are the same bits on any x86-64 CPU (see :func:`provenance`); slower (about 2 s a run here,
            against 0.7 s), and the result gains a ``"provenance"``. Default: False (this process's kernels,
            which depend on the CPU's vector extensions).

    Returns:
        ``{"budget", "seeds", "runs": {name: {seed: result}}, "summary": {name: {...}}, "wall_time",
        "workers", "machine"}``; a summary holds ``mean``, ``std`` (sample standard deviation over seeds),
        ``min``, ``max`` of the test accuracy, ``delta`` (mean paired difference to the first recipe) and
        ``time`` (mean wall seconds of a run).
    """
    recipes = dict(RECIPES if recipes is None else recipes)
    seeds = [check_number(s, "seeds", low=0, integer=True) for s in seeds]
    if not seeds or not recipes:
        raise ValueError("seeds, recipes: expected at least one of each")
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    check_number(workers, "workers", low=1, integer=True)
    if reproducible and not _reproducible_here():
        return _ablation_in_child(recipes, seeds, budget, workers, progress)
    _digits(budget.size)  # load once before forking
    # torch.optim imports its compiler machinery on the first optimizer built: pay that once, here, rather
    # than once in every forked worker
    torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    tasks = [(name, r, s, budget) for s in seeds for name, r in recipes.items()]
    runs: dict[str, dict[int, dict]] = {name: {} for name in recipes}
    t0 = time.perf_counter()

    def record(item):
        name, seed, result = item
        runs[name][seed] = result
        if progress:
            print(f"  {name:<22} seed {seed}: test acc {result['test_acc']:.4f} ({result['time']:.1f} s)",
                  file=sys.stderr, flush=True)

    if workers == 1:
        threads = torch.get_num_threads()
        _one_thread()
        try:
            for task in tasks:
                record(_task(task))
        finally:
            torch.set_num_threads(threads)
    else:
        with _pool(min(workers, len(tasks))) as pool:
            for item in pool.imap_unordered(_task, tasks):
                record(item)
    wall = time.perf_counter() - t0
    base = next(iter(recipes))
    summary = {}
    for name in recipes:
        accs = [runs[name][s]["test_acc"] for s in seeds]
        deltas = [runs[name][s]["test_acc"] - runs[base][s]["test_acc"] for s in seeds]
        summary[name] = {
            "tricks": recipes[name].tricks(),
            "mean": statistics.fmean(accs),
            "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "min": min(accs), "max": max(accs),
            "delta": statistics.fmean(deltas),
            "time": statistics.fmean(runs[name][s]["time"] for s in seeds),
        }
    result = {"budget": _budget_dict(budget), "seeds": seeds,
              "runs": {n: {str(s): r for s, r in sorted(v.items())} for n, v in runs.items()},
              "summary": summary, "wall_time": wall, "workers": workers,
              "machine": {"cpus": os.cpu_count(), "torch": torch.__version__,
                          "python": platform.python_version(), "processor": platform.machine(),
                          "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                          "mkldnn": torch.backends.mkldnn.enabled}}
    if reproducible:  # here only in the child, which has the environment
        result["provenance"] = provenance()
    return result


def _budget_dict(budget: Budget) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(budget).items()}


# ----------------------------------------------------------------------------------------------------
# reproducible runs and what a stored result depends on

def _reproducible_env() -> dict[str, str]:
    # one definition for the course: the checkpoint's script trains in the same environment
    from .pretrained.make_checkpoint import REPRODUCIBLE_ENV

    return REPRODUCIBLE_ENV


def _reproducible_here() -> bool:
    """Whether this process has the reproducible environment (torch reads it when it starts)."""
    return all(os.environ.get(k) == v for k, v in _reproducible_env().items())


def _ablation_in_child(recipes, seeds, budget, workers, progress) -> dict:
    unknown = [n for n, r in recipes.items() if RECIPES.get(n) != r]
    if unknown:
        raise ValueError(f"recipes: a reproducible ablation runs named rows of RECIPES only, got {unknown}")
    cmd = [sys.executable, "-m", "tricksref.bag_of_tricks", "--json", "--reproducible", "--workers",
           str(workers), "--budget", json.dumps(_budget_dict(budget)), "--seed-list", *map(str, seeds),
           "--only", *recipes]
    if progress:
        cmd.append("--progress")
    out = subprocess.run(cmd, env={**os.environ, **_reproducible_env()}, stdout=subprocess.PIPE, check=True,
                         text=True)
    return json.loads(out.stdout)


def _strip_docstring(node) -> None:
    body = getattr(node, "body", None)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        node.body = body[1:] or [ast.Pass()]


def _defs(tree: ast.Module):
    """(qualified name, node) of the module's functions and of its classes' methods."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    yield f"{node.name}.{item.name}", item


def _source_sha256(path: Path, functions) -> str | None:
    """sha256 of what a Python file contributes to a run: its module-level statements (imports, constants),
    its classes' bodies without their methods, and the named functions and methods, as syntax trees without
    docstrings. Comments, docstrings, layout and the functions a run does not call can change without
    making a stored result stale. None when the file or one of the functions is gone."""
    if not path.is_file():
        return None
    tree = ast.parse(path.read_text())
    wanted = set(functions)
    found = {name for name, _ in _defs(tree)} & wanted
    if found != wanted:
        return None
    _strip_docstring(tree)
    kept = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if node.name not in wanted:
                continue
        elif isinstance(node, ast.ClassDef):
            node.body = [b for b in node.body if not isinstance(b, (ast.FunctionDef, ast.AsyncFunctionDef))
                         or f"{node.name}.{b.name}" in wanted]
            _strip_docstring(node)
        kept.append(node)
    for _, node in _defs(tree):
        _strip_docstring(node)
    tree.body = kept
    return hashlib.sha256(ast.dump(tree, include_attributes=False).encode()).hexdigest()


def _executed_functions() -> dict[str, list[str]]:
    """The tricksref functions and methods a run of every recipe calls (on :data:`QUICK`: the same code
    paths), by source file relative to the folder that holds ``tricksref``. A nested function counts as
    its enclosing one."""
    package = Path(__file__).resolve().parent
    seen: set[tuple[str, int]] = set()

    def profile(frame, event, arg):
        if event == "call":
            seen.add((frame.f_code.co_filename, frame.f_code.co_firstlineno))

    threads = torch.get_num_threads()
    run_recipe(RECIPES["all tricks"], 0, QUICK)  # imports first: what runs at import time is not counted
    cached = dict(_DATA)
    _DATA.clear()  # loading the data is part of what a run executes
    sys.setprofile(profile)
    try:
        for recipe in RECIPES.values():
            run_recipe(recipe, 0, QUICK)
    finally:
        sys.setprofile(None)
        torch.set_num_threads(threads)
        _DATA.update(cached)
    lines: dict[Path, set[int]] = {}
    for f, line in seen:
        path = Path(f).resolve()
        if path.suffix == ".py" and path.is_relative_to(package):
            lines.setdefault(path, set()).add(line)
    out = {}
    for path, firsts in sorted(lines.items()):
        names = []
        for name, node in _defs(ast.parse(path.read_text())):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            if any(start <= n <= node.end_lineno for n in firsts):
                names.append(name)
        if names:
            out[path.relative_to(package.parent).as_posix()] = names
    return out


def provenance(files=None, budget: Budget = FULL) -> dict:
    """What a reproducible ablation's numbers depend on, as hashes, to store beside them and compare later.

    - ``files``: for every tricksref source file whose functions the runs call (found by profiling a run
      of every recipe on :data:`QUICK`), those functions and the sha256 of the file's module-level code and
      of those functions, without docstrings and comments (see ``_source_sha256``);
    - ``data``: the sha256 of the digits at ``budget.size`` (images and labels), which come from
      scikit-learn's copy;
    - ``versions``: torch, numpy, scikit-learn, Python;
    - ``environment``: :data:`REPRODUCIBLE_ENV` with oneDNN off, in which torch gives the same bits on any
      x86-64 CPU (ATen's portable kernels, MKL's CPU-independent mode, one thread).

    Args:
        files: a stored provenance's ``files``, to hash the same functions of the same files again (a file
            or function that is gone hashes as None). Default: those the runs call now.
        budget: the budget whose data is hashed. Default: :data:`FULL`.
    """
    import numpy
    import sklearn

    root = Path(__file__).resolve().parent.parent
    functions = _executed_functions() if files is None else {f: v["functions"] for f, v in files.items()}
    data = _digits(budget.size)
    digest = hashlib.sha256()
    for t in (data.x_train, data.y_train, data.x_test, data.y_test):
        digest.update(t.contiguous().numpy().tobytes())
    return {"files": {f: {"functions": names, "sha256": _source_sha256(root / f, names)}
                      for f, names in sorted(functions.items())},
            "data": digest.hexdigest(),
            "versions": {"torch": torch.__version__, "numpy": numpy.__version__,
                         "scikit-learn": sklearn.__version__, "python": platform.python_version()},
            "environment": {**_reproducible_env(), "oneDNN": "off"}}


def format_table(result: dict) -> str:
    """The ablation as a text table: test accuracy in %, mean ± sample standard deviation over seeds."""
    b = result["budget"]
    n = len(result["seeds"])
    lines = [
        f"Bag of tricks on digits: ResNetSmall{tuple(b['widths'])}, {b['per_class']} training images per "
        f"class at {b['size']}x{b['size']}, {b['epochs']} epochs, batch {b['batch_size']}, lr {b['lr']}, "
        f"{n} seeds",
        f"{'recipe':<22} {'test acc %':>15} {'min':>6} {'max':>6} {'vs base':>8} {'time/run s':>11}",
    ]
    for name, s in result["summary"].items():
        acc = f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f}"
        lines.append(f"{name:<22} {acc:>15} {100 * s['min']:>6.2f} {100 * s['max']:>6.2f} "
                     f"{100 * s['delta']:>+8.2f} {s['time']:>11.1f}")
    summ = result["summary"]
    if "baseline" in summ and "all tricks" in summ:
        per_seed = [result["runs"]["all tricks"][k]["test_acc"] - result["runs"]["baseline"][k]["test_acc"]
                    for k in result["runs"]["baseline"]]
        sd = statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0
        # the paired differences' own spread: what decides whether the gain is beyond the seeds' noise
        lines.append(f"all tricks - baseline, paired by seed: {100 * summ['all tricks']['delta']:+.2f} ± "
                     f"{100 * sd:.2f} points (per seed {' '.join(f'{100 * d:+.2f}' for d in per_seed)})")
    m = result["machine"]
    lines.append(f"total wall time {result['wall_time']:.0f} s with {result['workers']} worker(s) of one "
                 f"thread; {m['cpus']} CPUs, torch {m['torch']}")
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m tricksref.bag_of_tricks",
                                description="Ablation of training tricks on digits (He et al., 2019, at "
                                            "CPU scale).")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds, 0..SEEDS-1 (default: 3)")
    p.add_argument("--epochs", type=int, default=None, help="override the budget's epochs")
    p.add_argument("--per-class", type=int, default=None, help="override the training images per class")
    p.add_argument("--quick", action="store_true", help="a tiny budget for tests (accuracies mean nothing)")
    p.add_argument("--only", nargs="+", default=None, metavar="RECIPE", help="run these rows only")
    p.add_argument("--workers", type=int, default=None, help="parallel processes (default: min(2, CPUs))")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of the table")
    p.add_argument("--progress", action="store_true", help="a line per finished run on stderr")
    p.add_argument("--reproducible", action="store_true",
                   help="run in a child process whose results are the same bits on any x86-64 CPU, and "
                        "record the hashes of the code and data (how the book's stored table is made)")
    p.add_argument("--seed-list", type=int, nargs="+", default=None, metavar="SEED",
                   help="these seeds instead of 0..SEEDS-1")
    p.add_argument("--budget", default=None, metavar="JSON",
                   help="the whole budget, as JSON (Budget's fields)")
    args = p.parse_args(argv)
    budget = QUICK if args.quick else FULL
    if args.budget is not None:
        try:
            fields = json.loads(args.budget)
            budget = Budget(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
        except (ValueError, TypeError) as err:
            p.error(f"--budget: expected a JSON object of Budget's fields, got {args.budget!r} ({err})")
    if args.epochs is not None:
        epochs = check_number(args.epochs, "--epochs", low=1, integer=True)
        budget = dataclasses.replace(budget, epochs=epochs)
    if args.per_class is not None:
        budget = dataclasses.replace(budget, per_class=check_number(args.per_class, "--per-class", low=1,
                                                                    integer=True))
    check_number(args.seeds, "--seeds", low=1, integer=True)
    recipes = RECIPES
    if args.only:
        unknown = [r for r in args.only if r not in RECIPES]
        if unknown:
            p.error(f"--only: unknown recipe(s) {unknown}; expected names from {list(RECIPES)}")
        recipes = {r: RECIPES[r] for r in args.only}
    seeds = range(args.seeds) if args.seed_list is None else args.seed_list
    if args.reproducible and _reproducible_here():
        torch.backends.mkldnn.enabled = False  # oneDNN picks its kernels by CPU; the forked workers inherit
    result = ablation(recipes, seeds, budget, workers=args.workers, progress=args.progress,
                      reproducible=args.reproducible)
    print(json.dumps(result, indent=1) if args.json else format_table(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
