"""Pre-training and fine-tuning: reuse a trained network for a new task with few examples.

The lecture's step: "suppose we have a learned model: its weight parameters are determined and fixed";
AlexNet, trained on ImageNet's 1000 classes, is reused for a task with two classes. The features that the
convolutions learned on the large source task (edges, strokes, their combinations) serve the new task too;
only the last layer, whose outputs are the source task's classes, must be replaced and trained.

At CPU scale: the shipped checkpoint ``"alexnet_digits0to7"`` is an ``AlexNetSmall`` trained by
``python -m tricksref.pretrained.make_checkpoint`` on the digits 0 to 7 (the source task, about 1080 images);
the target task is the two digits it never saw, 8 versus 9, with a handful of training images each.
``python -m tricksref.finetune`` compares six ways of training it (from scratch; the checkpoint with a new
head and nothing else trained, with its convolutions frozen, with its first two blocks frozen, fully
fine-tuned, fine-tuned with discriminative rates), each at the learning rate that does best on validation
images (:func:`transfer_search`). Measured (``--per-class 2``: two training and 20 validation images per
digit, 310 test images; 5 seeds; test accuracy in %, mean ± sample standard deviation)::

    scratch                  83.2 ± 12.9     first two blocks frozen   93.0 ± 3.3
    head only                86.2 ± 5.2      full fine-tuning          93.1 ± 2.5
    frozen convolutions      86.6 ± 3.1      discriminative            92.1 ± 3.0

The last layers are specific to the source task (the head alone, or everything after frozen convolutions,
loses about 7 points to full fine-tuning in every seed); the first two blocks can stay frozen at no
measurable cost; fine-tuning is ahead of training from scratch by 9.9 points on average (in 4 of 5 seeds)
but, above all, far less dependent on which images were drawn.

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
           "TRANSFER_METHODS", "target_task", "transfer_run", "transfer_search", "main"]

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

#: the ways of training the target task that :func:`transfer_search` compares, from nothing reused to
#: everything reused and trained
TRANSFER_METHODS = ("scratch", "head only", "frozen convolutions", "first two blocks frozen",
                    "full fine-tuning", "discriminative")

_TARGET_DIGITS = (8, 9)
_TARGET_CACHE: dict = {}  # forked workers inherit the parent's copy


def target_task(per_class: int, seed: int, *, val_per_class: int = 0) -> tuple[torch.Tensor, ...]:
    """Digits 8 (class 0) versus 9 (class 1), the checkpoint's unseen digits, split anew for every seed.

    All 354 images of the two digits at 32x32 (``load_digits(size=32, classes=[8, 9])``, both halves) are
    the pool. Seed ``s`` draws ``per_class`` training and ``val_per_class`` validation images of each digit;
    every other image is the test set, so the three never share an image.

    Returns:
        ``(x_train, y_train, x_val, y_val, x_test, y_test)``; the validation pair is empty (0 images) when
        ``val_per_class`` is 0.
    """
    from .data import load_digits

    check_number(per_class, "per_class", low=1, integer=True)
    check_number(val_per_class, "val_per_class", low=0, integer=True)
    check_number(seed, "seed", low=0, integer=True)
    if "pool" not in _TARGET_CACHE:  # upsampling the digits takes longer than a run: once per process
        data = load_digits(size=32, classes=list(_TARGET_DIGITS))
        _TARGET_CACHE["pool"] = (torch.cat([data.x_train, data.x_test]),   # (354, 1, 32, 32)
                                 torch.cat([data.y_train, data.y_test]))
    x, y = _TARGET_CACHE["pool"]
    g = torch.Generator().manual_seed(seed)
    part = torch.zeros(len(y), dtype=torch.long)  # 0 test, 1 train, 2 validation
    for c in (0, 1):
        idx = (y == c).nonzero().squeeze(1)
        if per_class + val_per_class >= len(idx):
            raise ValueError(f"per_class, val_per_class: expected fewer than {len(idx)} images of a digit in "
                             f"all, got {per_class} + {val_per_class}")
        idx = idx[torch.randperm(len(idx), generator=g)]
        part[idx[:per_class]] = 1
        part[idx[per_class:per_class + val_per_class]] = 2
    return x[part == 1], y[part == 1], x[part == 2], y[part == 2], x[part == 0], y[part == 0]


#: how many of the checkpoint's modules, in the order ``[*features, *classifier]``, each method keeps frozen
_FROZEN_MODULES = {"head only": 28, "frozen convolutions": 21, "first two blocks frozen": 10}


def _target_model(method: str, lr: float, seed: int):
    """The network (fresh or the checkpoint with a new head) and its optimizer's parameter groups."""
    from .models import AlexNetSmall

    if method == "scratch":
        torch.manual_seed(seed)
        model = AlexNetSmall(**{**pretrained_info()["architecture"]["kwargs"], "num_classes": 2})
        return model, list(model.parameters())
    model = replace_head(load_pretrained(), 2, generator=torch.Generator().manual_seed(seed))
    if method in _FROZEN_MODULES:  # "head only" is the lecture's "determined and fixed"
        frozen = nn.Sequential(*model.features, *model.classifier)[:_FROZEN_MODULES[method]]
        freeze(model, except_=[p for p in model.parameters() if all(p is not q for q in frozen.parameters())])
    if method == "discriminative":
        return model, discriminative_lr_groups(model, lr, decay=0.5)
    return model, trainable_parameters(model)


def _transfer_runs(method: str, lrs, per_class: int, seed: int, epochs: int,
                   val_per_class: int) -> list[dict]:
    """:func:`transfer_run` for each rate in ``lrs``, sharing the frozen part's work between them.

    A frozen part computes a fixed function of the image (its BN and dropout run in inference mode), so its
    outputs are computed once, for every image, and only the trainable rest sees the training steps: the
    same arithmetic as training the whole model with the part frozen, at a fraction of the cost.
    """
    from .train import evaluate, fit

    x, y, x_val, y_val, x_test, y_test = target_task(per_class, seed, val_per_class=val_per_class)
    out = []
    for lr in lrs:
        model, groups = _target_model(method, lr, seed)
        xs = (x, x_val, x_test)
        if method in _FROZEN_MODULES:
            layers = nn.Sequential(*model.features, *model.classifier)
            n = _FROZEN_MODULES[method]
            if not out:  # the frozen part is the same checkpoint for every rate
                with torch.no_grad():
                    cached = tuple(layers[:n].eval()(t) for t in xs)
            xs, model = cached, layers[n:]
        t0 = time.perf_counter()
        fit(model, (xs[0], y), epochs=epochs, batch_size=len(y), seed=seed, progress=False,
            optimizer=torch.optim.Adam(groups, lr=lr))
        seconds = time.perf_counter() - t0
        val = evaluate(model, (xs[1], y_val)) if len(y_val) else None
        out.append({"val_acc": val.accuracy if val else None, "val_loss": val.loss if val else None,
                    "test_acc": evaluate(model, (xs[2], y_test)).accuracy, "time": seconds})
    return out


def transfer_run(method: str, lr: float, per_class: int, seed: int, *, epochs: int = 30,
                 val_per_class: int = 0) -> dict:
    """Train the target task (:func:`target_task`) one way, with Adam on full batches; score it.

    Methods (:data:`TRANSFER_METHODS`), from nothing reused to everything reused and trained:

    - ``"scratch"``: a new ``AlexNetSmall`` of the checkpoint's shape with two outputs;
    - ``"head only"``: the checkpoint with a new head, every other layer frozen (:func:`freeze`);
    - ``"frozen convolutions"``: the fully connected layers train, the five convolution blocks are frozen;
    - ``"first two blocks frozen"``: conv, BN, ReLU, LRN and pooling of the first two blocks frozen;
    - ``"full fine-tuning"``: every layer trains at ``lr``;
    - ``"discriminative"``: every layer trains, ``lr`` for the head, halved per layer towards the input.

    Seed ``s`` fixes the images, the initial weights (or the new head), dropout and the batch order.

    Returns:
        ``{"val_acc", "val_loss", "test_acc", "time"}``: accuracy and cross-entropy on the validation images
        (None without them), accuracy on the test images, wall seconds of the training.
    """
    check_choice(method, TRANSFER_METHODS, "method")
    check_number(lr, "lr", low=0.0, low_open=True)
    check_number(epochs, "epochs", low=1, integer=True)
    return _transfer_runs(method, [lr], per_class, seed, epochs, val_per_class)[0]


def _transfer_task(args):
    return _transfer_runs(*args)


def _one_thread() -> None:
    torch.set_num_threads(1)  # one core per run: its result does not depend on the number of workers


def transfer_search(methods=TRANSFER_METHODS, lrs=(1e-3, 3e-3, 1e-2), per_class: int = 5, seeds=range(5),
                    *, epochs: int = 30, val_per_class: int = 20, workers: int | None = None) -> dict:
    """Every method with every learning rate and seed; each method's rate chosen on the validation images.

    The choice: the rate with the best mean validation accuracy over the seeds (ties: the lower mean
    validation loss). The test images play no part in it; the test accuracy reported for a method is that of
    its chosen rate, seed by seed. With one rate per method (``lrs`` a dict of 1-tuples, ``val_per_class=0``)
    this is a plain comparison at fixed rates.

    Args:
        methods: names from :data:`TRANSFER_METHODS`.
        lrs: the candidate rates (> 0), the same for every method, or a dict method -> rates.
        per_class: training images of each digit.
        seeds: the seeds (>= 1); seed s gives every method the same images.
        epochs: full-batch Adam steps. Default: 30.
        val_per_class: validation images of each digit (0: no validation, only allowed with one rate per
            method). Default: 20.
        workers: processes of one thread each (fork); 1 runs here. Default: min(2, CPUs).

    Returns:
        ``{"per_class", "epochs", "val_per_class", "seeds", "lrs": {method: [rates]},
        "runs": {method: {repr(lr): [run per seed]}}, "chosen": {method: lr},
        "test": {method: [test accuracy per seed at the chosen rate]}, "wall_time"}``; a run is the dict of
        :func:`transfer_run`.
    """
    import multiprocessing
    import os

    methods = [check_choice(m, TRANSFER_METHODS, "methods") for m in methods]
    if not methods:
        raise ValueError("methods: expected at least one method")
    grid = {m: list(lrs[m] if isinstance(lrs, dict) else lrs) for m in methods}
    for m, rates in grid.items():
        if not rates:
            raise ValueError(f"lrs: expected at least one rate for {m!r}")
        for r in rates:
            check_number(r, "lrs", low=0.0, low_open=True)
        if len(rates) > 1 and val_per_class == 0:
            raise ValueError(f"val_per_class: choosing among {len(rates)} rates for {m!r} needs validation "
                             f"images, got val_per_class=0")
    seeds = [check_number(s, "seeds", low=0, integer=True) for s in seeds]
    if not seeds:
        raise ValueError("seeds: expected at least one seed")
    workers = min(2, os.cpu_count() or 1) if workers is None else check_number(workers, "workers", low=1,
                                                                                integer=True)
    tasks = [(m, grid[m], per_class, s, epochs, val_per_class) for m in methods for s in seeds]
    target_task(per_class, seeds[0], val_per_class=val_per_class)  # bad sizes fail here, not in a worker
    t0 = time.perf_counter()
    if workers == 1 or len(tasks) == 1:
        threads = torch.get_num_threads()
        _one_thread()
        try:
            results = [_transfer_task(t) for t in tasks]
        finally:
            torch.set_num_threads(threads)
    else:
        # a first training step here, before the fork, pays torch's one-off set-up once, not per worker
        _transfer_runs("full fine-tuning", [1e-3], 1, 0, 1, 0)
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(min(workers, len(tasks)), initializer=_one_thread) as pool:
            results = pool.map(_transfer_task, tasks, chunksize=1)
    wall = time.perf_counter() - t0
    runs: dict[str, dict[str, list[dict]]] = {m: {repr(r): [] for r in grid[m]} for m in methods}
    for (m, rates, *_), res in zip(tasks, results, strict=True):  # tasks run seed by seed
        for r, one in zip(rates, res, strict=True):
            runs[m][repr(r)].append(one)
    chosen, test = {}, {}
    for m in methods:
        def score(r, m=m):
            rs = runs[m][repr(r)]
            if rs[0]["val_acc"] is None:
                return (0.0, 0.0)
            return (statistics.fmean(x["val_acc"] for x in rs), -statistics.fmean(x["val_loss"] for x in rs))
        chosen[m] = max(grid[m], key=score)  # max keeps the first of equals: the order of lrs breaks ties
        test[m] = [x["test_acc"] for x in runs[m][repr(chosen[m])]]
    return {"per_class": per_class, "epochs": epochs, "val_per_class": val_per_class, "seeds": seeds,
            "lrs": grid, "runs": runs, "chosen": chosen, "test": test, "wall_time": wall}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m tricksref.finetune",
                                description="Digits 8 vs 9 from a few images: from scratch versus reusing "
                                            "the pre-trained checkpoint (digits 0-7), each method at the "
                                            "learning rate that does best on validation images.")
    p.add_argument("--per-class", type=int, default=5, help="training images per digit (default: 5)")
    p.add_argument("--val-per-class", type=int, default=20, help="validation images per digit (default: 20)")
    p.add_argument("--seeds", type=int, default=5, help="number of seeds, 0..SEEDS-1 (default: 5)")
    p.add_argument("--epochs", type=int, default=30, help="full-batch Adam steps (default: 30)")
    p.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2], help="candidate rates")
    p.add_argument("--methods", nargs="+", default=list(TRANSFER_METHODS), metavar="METHOD",
                   help=f"from {list(TRANSFER_METHODS)}")
    p.add_argument("--workers", type=int, default=None, help="parallel processes (default: min(2, CPUs))")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = p.parse_args(argv)
    unknown = [m for m in args.methods if m not in TRANSFER_METHODS]
    if unknown:
        p.error(f"--methods: unknown method(s) {unknown}; expected names from {list(TRANSFER_METHODS)}")
    res = transfer_search(args.methods, args.lrs, args.per_class, range(args.seeds), epochs=args.epochs,
                          val_per_class=args.val_per_class, workers=args.workers)
    if args.json:
        print(json.dumps(res, indent=1))
        return res
    n = len(res["seeds"])
    print(f"Digits 8 vs 9 after pre-training on 0-7: {args.per_class} training and {args.val_per_class} "
          f"validation images per digit, every other 8 and 9 a test image; Adam, {args.epochs} full-batch "
          f"steps, {n} seeds. Validation accuracy per rate (mean over seeds); the rate it picks; test "
          f"accuracy at that rate, mean +- sample sd and per seed.")
    rates = sorted({r for rs in res["lrs"].values() for r in rs})
    print(f"{'method':<24}" + "".join(f"{'val @ ' + format(r, 'g'):>12}" for r in rates)
          + f"{'picked':>8} {'test %':>13}  per seed")
    for m in res["lrs"]:
        cells = ""
        for r in rates:
            rs = res["runs"][m].get(repr(r))
            v = None if rs is None or rs[0]["val_acc"] is None else statistics.fmean(x["val_acc"] for x in rs)
            cells += f"{'' if v is None else format(100 * v, '.1f'):>12}"
        t = [100 * a for a in res["test"][m]]
        sd = statistics.stdev(t) if n > 1 else 0.0
        print(f"{m:<24}{cells}{res['chosen'][m]:>8g} {statistics.fmean(t):>6.1f} +- {sd:<4.1f}  "
              + " ".join(f"{a:.1f}" for a in t))
    print(f"total wall time {res['wall_time']:.0f} s")
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
