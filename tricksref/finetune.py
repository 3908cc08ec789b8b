"""Pre-training and fine-tuning: reuse a trained network for a new task with few examples.

The lecture's step: "suppose we have a learned model: its weight parameters are determined and fixed";
AlexNet, trained on ImageNet's 1000 classes, is reused for a task with two classes. The features that the
convolutions learned on the large source task (edges, strokes, their combinations) serve the new task too;
only the last layer, whose outputs are the source task's classes, must be replaced and trained.

At CPU scale: the shipped checkpoint ``"alexnet_digits0to7"`` is an ``AlexNetSmall`` trained by
``python -m tricksref.pretrained.make_checkpoint`` on the digits 0 to 7 (the source task, about 1080 images);
the target task is the two digits it never saw, 8 versus 9, with a handful of training images each.
``python -m tricksref.finetune`` compares, over several seeds, training from scratch with reusing the
checkpoint (head only, or everything with discriminative learning rates). Measured (5 seeds, test accuracy
on every 8 and 9 not trained on): with 2 images per class, fine-tuning every layer of the checkpoint beats
training from scratch by 13 points (90.7 +- 3.8% against 77.8 +- 16.3%) with a quarter of the spread; with
5 images per class the gain (94.8 +- 2.9% against 92.8 +- 3.9%) is within the spread, and the literal
"fixed weights, new head" (84.8 +- 1.8%) is the weakest of the three: the features of the layers next to
the head are the most specific to the source task.

The helpers:

- :func:`load_pretrained` builds the model and loads the checkpoint (``torch.load(weights_only=True)``).
- :func:`replace_head` swaps the last linear layer for a new one with ``num_classes`` outputs.
- :func:`freeze` / :func:`unfreeze` fix parameters (``requires_grad=False``) and run the frozen parts in
  inference mode: BN keeps its running statistics, dropout stops dropping (see the note in :func:`freeze`).
- :func:`discriminative_lr_groups` gives earlier layers smaller learning rates (Howard and Ruder, 2018,
  "Universal Language Model Fine-tuning for Text Classification", arXiv:1801.06146): the first layers hold
  the most general features and need the least change.
- :func:`trainable_parameters` lists what an optimizer should update.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Iterable
from importlib import resources

import torch
from torch import nn

from ._checks import check_choice, check_number

__all__ = ["load_pretrained", "pretrained_info", "PRETRAINED", "freeze", "unfreeze", "is_frozen",
           "trainable_parameters", "replace_head", "layer_groups", "discriminative_lr_groups",
           "transfer_experiment", "main"]

#: names of the checkpoints shipped in ``tricksref/pretrained/``
PRETRAINED = ("alexnet_digits0to7",)

_NORM_TYPES = (nn.modules.batchnorm._BatchNorm,)


def _norm_types() -> tuple[type, ...]:
    from .batchnorm import _BatchNorm

    return (*_NORM_TYPES, _BatchNorm)


# ----------------------------------------------------------------------------------------------------
# the shipped checkpoint

def pretrained_info(name: str = "alexnet_digits0to7") -> dict:
    """The JSON record of how a shipped checkpoint was made (script, seed, epochs, accuracy, versions)."""
    check_choice(name, PRETRAINED, "name")
    path = resources.files("tricksref.pretrained").joinpath(f"{name}.json")
    return json.loads(path.read_text())


def load_pretrained(name: str = "alexnet_digits0to7", *, device=None) -> nn.Module:
    """Build the network a shipped checkpoint was trained as and load its weights; returned in eval mode.

    The checkpoint is a ``state_dict`` saved with ``torch.save`` and read with ``weights_only=True`` (tensors
    only, no pickled code); the architecture comes from the JSON record beside it (:func:`pretrained_info`).

    Args:
        name: one of :data:`PRETRAINED`. Default: ``"alexnet_digits0to7"``, an ``AlexNetSmall`` with batch
            normalization trained on the digits 0-7 at 32x32 (8 outputs: digit d is class d).
        device: where to put the model. Default: CPU.

    Examples::

        >>> model = load_pretrained()
        >>> model.head
        Linear(in_features=64, out_features=8, bias=True)
    """
    from . import models

    info = pretrained_info(name)
    arch = info["architecture"]
    cls = {"AlexNetSmall": models.AlexNetSmall, "ResNetSmall": models.ResNetSmall}[arch["class"]]
    model = cls(**arch["kwargs"])
    path = resources.files("tricksref.pretrained").joinpath(f"{name}.pt")
    with resources.as_file(path) as p:
        state = torch.load(p, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.to(device or "cpu").eval()


# ----------------------------------------------------------------------------------------------------
# freezing

def _eval_hook(module: nn.Module, args) -> None:
    module.training = False  # a frozen part runs in inference mode, whatever model.train() said


def _dropout_types() -> tuple[type, ...]:
    from .dropout import Dropout

    return (nn.modules.dropout._DropoutNd, Dropout)


def _frozen_stateful(model: nn.Module, keep: set[int]) -> list[nn.Module]:
    """BN modules whose parameters are all frozen, and dropout layers whose next layer is frozen."""
    out = []
    mods = list(model.modules())
    for i, m in enumerate(mods):
        if isinstance(m, _norm_types()):
            if all(id(p) not in keep for p in m.parameters(recurse=False)):
                out.append(m)
        elif isinstance(m, _dropout_types()):
            nxt = next((n for n in mods[i + 1:] if any(True for _ in n.parameters(recurse=False))), None)
            if nxt is not None and all(id(p) not in keep for p in nxt.parameters(recurse=False)):
                out.append(m)
    return out


def _select(model: nn.Module, names, what: str) -> set[int]:
    """ids of the parameters in ``names``: modules of ``model``, parameter names or module-name prefixes."""
    if names is None:
        return set()
    if isinstance(names, (str, nn.Module, nn.Parameter)):
        names = [names]
    elif not isinstance(names, Iterable):
        raise TypeError(f"{what}: expected a module, a parameter, a name or a list of these, got "
                        f"{type(names).__name__}")
    modules = dict(model.named_modules())
    params = dict(model.named_parameters())
    chosen: set[int] = set()
    for item in names:
        if isinstance(item, nn.Parameter):
            chosen.add(id(item))
        elif isinstance(item, nn.Module):
            if not any(item is m for m in modules.values()):
                raise ValueError(f"{what}: the module {type(item).__name__} is not part of the model")
            chosen |= {id(p) for p in item.parameters()}
        elif isinstance(item, str):
            hits = {id(p) for n, p in params.items() if n == item or n.startswith(item + ".")}
            if item in modules:
                hits |= {id(p) for p in modules[item].parameters()}
            if not hits and item not in modules:
                raise ValueError(f"{what}: no module or parameter named {item!r} in the model "
                                 f"(names as in model.named_parameters())")
            chosen |= hits
        else:
            raise TypeError(f"{what}: expected modules, parameters or names, got {type(item).__name__}")
    return chosen


def freeze(model: nn.Module, except_=None, *, eval_frozen: bool = True) -> nn.Module:
    """Fix the parameters of ``model`` (``requires_grad=False``), all but those in ``except_``.

    Notes:
        - **Frozen parts run in inference mode** (``eval_frozen=True``, the default), as Keras runs a frozen
          base with ``training=False``. Every batch-normalization module whose parameters are all frozen
          normalizes with the running mean and variance of the source task and leaves them unchanged, and
          every dropout layer whose next layer is frozen stops dropping, even after ``model.train()`` (a
          forward pre-hook sets their ``training`` flag to False). The features under the new head are then
          the features the model computes at test time. Otherwise a frozen BN would re-estimate its
          statistics from a few target images at every batch, and a frozen dropout would feed the head
          noisy features it never sees at test time. ``eval_frozen=False`` leaves both to
          ``model.train()``/``eval()``.
        - Freezing is what an optimizer sees only if it is built from :func:`trainable_parameters` (or the
          frozen parameters get no gradient, which torch's optimizers skip).

    Args:
        model: the network, changed in place.
        except_: what stays trainable: a module of the model (``model.head``), a parameter, a name as in
            ``model.named_parameters()`` or a module name (``"classifier"``), or a list of these.
            Default: None (freeze everything).
        eval_frozen: run the frozen BN and dropout layers in inference mode. Default: True.

    Returns:
        ``model``, for chaining.

    Examples::

        >>> model = replace_head(load_pretrained(), 2)
        >>> model = freeze(model, except_=model.head)    # returns the model, for chaining
        >>> [n for n, p in model.named_parameters() if p.requires_grad]
        ['classifier.7.weight', 'classifier.7.bias']
        >>> is_frozen(model.features[1])                 # its BN normalizes with the stored statistics
        True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    keep = _select(model, except_, "except_")
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
    if eval_frozen:
        for m in _frozen_stateful(model, keep):
            if not hasattr(m, "_tricksref_freeze_hook"):
                m._tricksref_freeze_hook = m.register_forward_pre_hook(_eval_hook)
            m.training = False
    return model


def unfreeze(model: nn.Module, only=None) -> nn.Module:
    """Make parameters trainable again (all, or those in ``only``); BN and dropout layers that are no longer
    in a frozen part follow ``model.train()``/``eval()`` again (they take the model's mode now)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    chosen = None if only is None else _select(model, only, "only")
    for p in model.parameters():
        if chosen is None or id(p) in chosen:
            p.requires_grad_(True)
    still = {id(m) for m in _frozen_stateful(model, {id(p) for p in trainable_parameters(model)})}
    for m in model.modules():
        hook = getattr(m, "_tricksref_freeze_hook", None)
        if hook is not None and id(m) not in still:
            hook.remove()
            del m._tricksref_freeze_hook
            m.training = model.training
    return model


def is_frozen(module: nn.Module) -> bool:
    """True when no parameter of ``module`` is trainable; for BN and dropout, when freeze put it in
    inference mode."""
    if isinstance(module, (*_norm_types(), *_dropout_types())):
        return (not any(p.requires_grad for p in module.parameters())
                and hasattr(module, "_tricksref_freeze_hook"))
    return not any(p.requires_grad for p in module.parameters())


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters with ``requires_grad``, each once, in the order of ``model.parameters()``."""
    return [p for p in model.parameters() if p.requires_grad]


# ----------------------------------------------------------------------------------------------------
# the new head

def _head_path(model: nn.Module) -> str:
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Linear):
        raise TypeError(f"model: expected a model whose `head` attribute is its last nn.Linear "
                        f"(AlexNetSmall, ResNetSmall), got {type(model).__name__} with head "
                        f"{type(head).__name__}")
    for name, m in model.named_modules():
        if m is head:
            return name
    raise ValueError("model: its head is not one of its modules")


def replace_head(model: nn.Module, num_classes: int, *,
                 generator: torch.Generator | None = None) -> nn.Module:
    """Swap the model's last layer (``model.head``) for a new ``nn.Linear`` with ``num_classes`` outputs.

    The lecture's "1000 classes -> two classes": everything before the head, and so every feature the model
    computes, is kept; the new head gets PyTorch's default initialization for a linear layer (weights and
    bias uniform in +-1/sqrt(fan_in)), drawn from ``generator``, on the old head's device and dtype, and is
    trainable whatever was frozen before.

    Args:
        model: ``AlexNetSmall``, ``ResNetSmall`` or any model with a ``head`` property naming its last linear
            layer; changed in place.
        num_classes: outputs of the new head (>= 1).
        generator: a ``torch.Generator`` for a reproducible head. Default: torch's global RNG.

    Returns:
        ``model``.
    """
    check_number(num_classes, "num_classes", low=1, integer=True)
    path = _head_path(model)
    old = model.get_submodule(path)
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None, device=old.weight.device,
                    dtype=old.weight.dtype)
    bound = 1.0 / math.sqrt(old.in_features)
    with torch.no_grad():
        for t in new.parameters():
            u = torch.rand(t.shape, generator=generator, dtype=torch.float64)
            t.copy_(((2 * u - 1) * bound).to(t.dtype))
    parent_name, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new)
    return model


# ----------------------------------------------------------------------------------------------------
# discriminative learning rates

def layer_groups(model: nn.Module) -> list[list[nn.Parameter]]:
    """The model's parameters split into layers, from the input to the output.

    A layer starts at every convolution or linear layer and takes the parameters that follow it until the
    next one (its BN's gamma and beta), in the order of ``model.parameters()``. Every parameter is in exactly
    one group, trainable or not.
    """
    groups: list[list[nn.Parameter]] = []
    seen: set[int] = set()
    for m in model.modules():
        own = [p for p in m.parameters(recurse=False) if id(p) not in seen]
        if not own:
            continue
        seen |= {id(p) for p in own}
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)) or not groups:
            groups.append(own)
        else:
            groups[-1].extend(own)
    return groups


def discriminative_lr_groups(model: nn.Module, base_lr: float, decay: float = 0.5, *, groups=None,
                             weight_decay: float | None = None) -> list[dict]:
    """Optimizer parameter groups whose learning rate shrinks layer by layer towards the input.

    The last layer group (the head) gets ``base_lr``; the one before it ``base_lr * decay``, and layer group
    l, counted back from the head, ``base_lr * decay ** l``:

        eta_l = eta * decay^(L - 1 - l),  l = 0..L-1 from the input.

    Only trainable parameters are included (freeze first, then build the groups); a layer with none is
    skipped, and the decay counts layers that have trainable parameters, so the first trainable layer below
    the head gets ``base_lr * decay``.

    Args:
        model: the network.
        base_lr: eta, the head's learning rate (> 0).
        decay: the factor per layer, in (0, 1]; 1 gives every layer ``base_lr``. Default: 0.5.
        groups: the layers, from the input to the output: a list whose items are modules or lists of
            parameters. Default: :func:`layer_groups` (a convolution or linear layer with its BN).
        weight_decay: if given, set as every group's ``weight_decay``.

    Returns:
        A list of ``{"params": [...], "lr": eta_l}`` dicts (input first) for ``torch.optim``.

    Examples::

        >>> model = freeze(replace_head(load_pretrained(), 2), except_="classifier")
        >>> opt = torch.optim.SGD(discriminative_lr_groups(model, 0.01), lr=0.01, momentum=0.9)
        >>> [g["lr"] for g in opt.param_groups]
        [0.0025, 0.005, 0.01]
    """
    check_number(base_lr, "base_lr", low=0.0, low_open=True)
    check_number(decay, "decay", low=0.0, high=1.0, low_open=True)
    if groups is None:
        layers = layer_groups(model)
    else:
        layers = []
        for i, g in enumerate(groups):
            if isinstance(g, nn.Module):
                layers.append(list(g.parameters()))
            elif isinstance(g, Iterable) and not isinstance(g, (str, torch.Tensor)):
                layers.append(list(g))
            else:
                raise TypeError(f"groups[{i}]: expected a module or a list of parameters, got "
                                f"{type(g).__name__}")
    trainable = {id(p) for p in trainable_parameters(model)}
    seen: set[int] = set()
    kept = []
    for layer in layers:
        params = []
        for p in layer:
            if id(p) in trainable and id(p) not in seen:
                params.append(p)
                seen.add(id(p))
        if params:
            kept.append(params)
    missing = trainable - seen
    if missing:
        raise ValueError(f"groups: {len(missing)} trainable parameter(s) of the model are in no group")
    out = []
    for i, params in enumerate(kept):
        group = {"params": params, "lr": base_lr * decay ** (len(kept) - 1 - i)}
        if weight_decay is not None:
            group["weight_decay"] = weight_decay
        out.append(group)
    return out


# ----------------------------------------------------------------------------------------------------
# the experiment: does pre-training help on a small target task?

def _target_task(per_class: int, seed: int):
    """``per_class`` random training images of each of the digits 8 (class 0) and 9 (class 1); every other 8
    and 9 (about 350 images) is the test set. The source model saw neither digit."""
    from .data import load_digits

    data = load_digits(size=32, classes=[8, 9])
    x = torch.cat([data.x_train, data.x_test])
    y = torch.cat([data.y_train, data.y_test])
    g = torch.Generator().manual_seed(seed)
    train = torch.zeros(len(y), dtype=torch.bool)
    for c in (0, 1):
        idx = (y == c).nonzero().squeeze(1)
        train[idx[torch.randperm(len(idx), generator=g)[:per_class]]] = True
    return x[train], y[train], x[~train], y[~train]


def _run(method: str, seed: int, per_class: int, epochs: int, lr: float) -> dict:
    from .models import AlexNetSmall
    from .train import evaluate, fit

    x, y, x_test, y_test = _target_task(per_class, seed)
    g = torch.Generator().manual_seed(seed)
    if method == "scratch":
        info = pretrained_info()
        torch.manual_seed(seed)
        model = AlexNetSmall(**{**info["architecture"]["kwargs"], "num_classes": 2})
        groups = model.parameters()
    else:
        model = replace_head(load_pretrained(), 2, generator=g)
        if method == "head only":
            freeze(model, except_=model.head)
            groups = trainable_parameters(model)
        else:  # "all, discriminative"
            groups = discriminative_lr_groups(model, lr, decay=0.5)
    t0 = time.perf_counter()
    fit(model, (x, y), epochs=epochs, batch_size=len(x), seed=seed, progress=False,
        optimizer=torch.optim.Adam(groups, lr=lr))
    return {"test_acc": evaluate(model, (x_test, y_test)).accuracy, "time": time.perf_counter() - t0}


def transfer_experiment(per_class: int = 2, seeds=range(5), epochs: int = 40, lr: float = 1e-2,
                        methods=("scratch", "head only", "all, discriminative")) -> dict:
    """Digits 8 vs 9 from ``per_class`` training images each: from scratch versus from the checkpoint.

    For a given seed every method trains on the same images (drawn per seed) and is scored on every other 8
    and 9 (about 350 images; the checkpoint never saw either digit). All use Adam with learning rate ``lr``
    on full batches for ``epochs`` epochs, seeded.

    - ``"scratch"``: a new ``AlexNetSmall`` of the checkpoint's architecture with two outputs.
    - ``"head only"``: the lecture's step taken literally: the checkpoint with a new two-class head, every
      other weight fixed (:func:`freeze`, frozen parts in inference mode).
    - ``"all, discriminative"``: the checkpoint with a new head, every layer trained, the learning rate
      halved per layer towards the input (:func:`discriminative_lr_groups`, the head at ``lr``).

    Returns:
        ``{"per_class", "epochs", "lr", "seeds", "runs": {method: [test accuracy per seed]}, "summary":
        {method: {"mean", "std", "min", "max", "time"}}}`` (std: sample standard deviation over seeds).
    """
    check_number(per_class, "per_class", low=1, integer=True)
    check_number(epochs, "epochs", low=1, integer=True)
    check_number(lr, "lr", low=0.0, low_open=True)
    seeds = [check_number(s, "seeds", low=0, integer=True) for s in seeds]
    if not seeds:
        raise ValueError("seeds: expected at least one seed")
    for m in methods:
        check_choice(m, ("scratch", "head only", "all, discriminative"), "methods")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches: one thread is fastest, and results do not depend on cores
    try:
        runs = {m: [_run(m, s, per_class, epochs, lr) for s in seeds] for m in methods}
    finally:
        torch.set_num_threads(threads)
    summary = {}
    for m, rs in runs.items():
        accs = [r["test_acc"] for r in rs]
        summary[m] = {"mean": statistics.fmean(accs), "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                      "min": min(accs), "max": max(accs), "time": statistics.fmean(r["time"] for r in rs)}
    return {"per_class": per_class, "epochs": epochs, "lr": lr, "seeds": seeds,
            "runs": {m: [r["test_acc"] for r in rs] for m, rs in runs.items()}, "summary": summary}


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(prog="python -m tricksref.finetune",
                                description="Digits 8 vs 9 from a few images: from scratch versus "
                                            "reusing the pre-trained checkpoint (digits 0-7).")
    p.add_argument("--per-class", type=int, nargs="+", default=[2, 5], help="training images per class")
    p.add_argument("--seeds", type=int, default=5, help="number of seeds, 0..SEEDS-1")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    results = [transfer_experiment(k, range(args.seeds), args.epochs, args.lr) for k in args.per_class]
    wall = time.perf_counter() - t0
    if args.json:
        print(json.dumps({"results": results, "wall_time": wall}, indent=1))
        return results
    print(f"Digits 8 vs 9 after pre-training on 0-7: test accuracy on every 8 and 9 not trained on; Adam "
          f"lr {args.lr}, {args.epochs} full-batch epochs, {args.seeds} seeds (mean +- sample std)")
    print(f"{'images/class':>12} {'method':<21} {'test acc %':>14} {'min':>6} {'max':>6} {'time/run s':>11}")
    for res in results:
        for m, s in res["summary"].items():
            acc = f"{100 * s['mean']:.1f} +- {100 * s['std']:.1f}"
            print(f"{res['per_class']:>12} {m:<21} {acc:>14} {100 * s['min']:>6.1f} {100 * s['max']:>6.1f} "
                  f"{s['time']:>11.1f}")
    print(f"total wall time {wall:.0f} s")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
