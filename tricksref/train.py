"""Training loop: fit a classifier on tensors, in one process or data-parallel over torch.distributed.

``fit`` is the one loop the book and the ablations train with: mini-batch SGD (the lecture's
``w_{t+1} = w_t - eta G_t``) over a shuffled tensor data set, with the tricks plugged in from outside as
arguments: an optimizer (weight decay, parameter groups), a learning-rate schedule (warmup, cosine, stages),
a loss (label smoothing, soft targets), an ``augment`` callable (flips, crops, colour jitter, mixup, cutmix),
and gradient clipping. It returns a :class:`History` of per-epoch loss, accuracy, learning rate and wall time.

Data-parallel training (Goyal et al., 2017, "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour",
arXiv:1706.02677) runs the same ``fit`` in W processes launched by ``torchrun``::

    torchrun --standalone --nproc_per_node=2 -m tricksref.train --epochs 3 --batch-size 128

Every process draws the same permutation of the data, so the k-th global mini-batch B_k of ``batch_size``
examples is the same everywhere; process r takes its shard B_k^r of it, and DistributedDataParallel averages
the W gradients. With shards of equal size that average *is* the gradient of the mean loss over B_k,

    G = (1/|B|) sum_{i in B} grad l_i = (1/W) sum_r (1/|B^r|) sum_{i in B^r} grad l_i,

so W processes take the same steps as one process on the whole global batch. When |B| is not a multiple of
W the shards differ by one example and each process scales its loss by W |B^r| / |B|, which keeps the
equality. Two things break it, on purpose or by nature: batch normalization (each process normalizes with the
statistics of its own shard, as Goyal et al. do with 32 images per worker) and random augmentation (each
process draws from its own stream). ``tests/test_distributed.py`` checks the equality to 1e-6 on a model
without BN.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from ._checks import check_choice, check_number
from .data import DataSplit

__all__ = ["fit", "evaluate", "History", "EvalResult", "init_distributed", "main"]

#: ``augment(x, y, generator) -> (x, y)``: a batch in, an augmented batch out (y may become soft labels)
Augment = Callable[[torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]

_COLUMNS = ("epoch", "train_loss", "train_acc", "eval_loss", "eval_acc", "lr", "time")


# ----------------------------------------------------------------------------------------------------
# results

@dataclass
class History:
    """Per-epoch record of a training run; one entry per epoch in every list.

    Attributes:
        epoch: 1, 2, ..., epochs.
        train_loss: mean loss over the epoch's training examples, as trained on (augmented, in train mode).
        train_acc: share of those examples whose argmax logit is the label (for soft labels, the label's
            argmax: mixup's dominant class).
        eval_loss, eval_acc: the same on ``eval_data`` after the epoch, in eval mode; None without eval data.
        lr: the first parameter group's learning rate at the start of the epoch.
        time: wall seconds of the epoch, training and evaluation together.
    """

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    eval_loss: list[float | None] = field(default_factory=list)
    eval_acc: list[float | None] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    time: list[float] = field(default_factory=list)

    def append(self, **row) -> None:
        if set(row) != set(_COLUMNS):
            raise ValueError(f"row: expected the keys {_COLUMNS}, got {tuple(row)}")
        for key in _COLUMNS:
            getattr(self, key).append(row[key])

    def __len__(self) -> int:
        return len(self.epoch)

    def to_dict(self) -> dict[str, list]:
        """Columns as plain lists (``pandas.DataFrame(history.to_dict())`` gives the tidy table)."""
        return {key: list(getattr(self, key)) for key in _COLUMNS}

    def rows(self) -> list[dict]:
        """One dict per epoch (the records of the tidy table)."""
        return [dict(zip(_COLUMNS, values, strict=True))
                for values in zip(*(getattr(self, k) for k in _COLUMNS), strict=True)]

    @property
    def final(self) -> dict:
        """The last epoch's row."""
        if not self.epoch:
            raise ValueError("history: no epoch recorded yet")
        return self.rows()[-1]

    def table(self) -> str:
        """A fixed-width text table, one line per epoch."""
        head = f"{'epoch':>5} {'train_loss':>10} {'train_acc':>9} {'eval_loss':>9} {'eval_acc':>8} " \
               f"{'lr':>9} {'time_s':>7}"

        def num(v, width, fmt):
            return f"{'-':>{width}}" if v is None else f"{v:>{width}{fmt}}"

        lines = [head]
        for r in self.rows():
            lines.append(f"{r['epoch']:>5} {num(r['train_loss'], 10, '.4f')} {num(r['train_acc'], 9, '.4f')} "
                         f"{num(r['eval_loss'], 9, '.4f')} {num(r['eval_acc'], 8, '.4f')} "
                         f"{r['lr']:>9.3g} {r['time']:>7.2f}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


class EvalResult(NamedTuple):
    """Mean loss and accuracy of a model on a data set."""

    loss: float
    accuracy: float


# ----------------------------------------------------------------------------------------------------
# inputs

def _as_xy(data, name: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) from a tuple of tensors or a DataSplit (its train or test half)."""
    if isinstance(data, DataSplit):
        return (data.x_train, data.y_train) if split == "train" else (data.x_test, data.y_test)
    if not (isinstance(data, (tuple, list)) and len(data) == 2
            and all(isinstance(t, torch.Tensor) for t in data)):
        raise TypeError(f"{name}: expected a DataSplit or a pair of tensors (x, y), got "
                        f"{type(data).__name__}")
    x, y = data
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected floating-point inputs x, got dtype {x.dtype}")
    if x.dim() < 2 or len(x) == 0:
        raise ValueError(f"{name}: expected x of shape (N, ...) with N >= 1, got {tuple(x.shape)}")
    if y.is_floating_point():
        if y.dim() != 2 or len(y) != len(x):
            raise ValueError(f"{name}: expected soft labels y of shape (N, K) = ({len(x)}, K), got "
                             f"{tuple(y.shape)}")
    elif y.dtype in (torch.bool,) or y.is_complex():
        raise TypeError(f"{name}: expected integer labels or floating-point soft labels, got dtype {y.dtype}")
    elif y.shape != (len(x),):
        raise ValueError(f"{name}: expected labels y of shape (N,) = ({len(x)},), got {tuple(y.shape)}")
    return x, y


def _model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    return torch.device("cpu")


def _model_dtype(model: nn.Module) -> torch.dtype:
    for t in model.parameters():
        if t.is_floating_point():
            return t.dtype
    return torch.get_default_dtype()


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _shard(n: int, rank: int, world: int) -> tuple[int, int]:
    """[start, stop) of process ``rank``'s share of n examples: sizes differ by at most one."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def _hard_labels(y: torch.Tensor) -> torch.Tensor:
    return y.argmax(1) if y.is_floating_point() else y


# ----------------------------------------------------------------------------------------------------
# evaluation

@torch.no_grad()
def evaluate(model: nn.Module, data, batch_size: int = 512, *, loss_fn=None, device=None) -> EvalResult:
    """Mean loss and accuracy of ``model`` on ``data`` in eval mode (the model's mode is restored after).

    Under an initialized torch.distributed process group each process evaluates its shard and the sums are
    all-reduced, so every process returns the result on the whole data set.

    Args:
        model: a classifier returning logits (N, K).
        data: a pair of tensors (x, y) (y integer labels (N,) or soft labels (N, K)), or a ``DataSplit``,
            whose test half is used.
        batch_size: examples per forward pass (memory, not the result). Default: 512.
        loss_fn: ``loss_fn(logits, y)`` averaging over the batch. Default: ``F.cross_entropy``.
        device: where to run; None uses the model's device.

    Returns:
        ``EvalResult(loss, accuracy)``, plain floats.
    """
    x, y = _as_xy(data, "data", "test")
    check_number(batch_size, "batch_size", low=1, integer=True)
    loss_fn = F.cross_entropy if loss_fn is None else loss_fn
    device = _model_device(model) if device is None else torch.device(device)
    rank, world = _world()
    start, stop = _shard(len(x), rank, world)
    dtype = _model_dtype(model)
    was_training = model.training
    model.eval()
    try:
        sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss * n, correct, n
        for i in range(start, stop, batch_size):
            xb = x[i:min(i + batch_size, stop)].to(device, dtype, non_blocking=True)
            yb = y[i:min(i + batch_size, stop)].to(device, non_blocking=True)
            logits = model(xb)
            n = len(xb)
            sums[0] += loss_fn(logits, yb).double() * n
            sums[1] += (logits.argmax(1) == _hard_labels(yb)).sum()
            sums[2] += n
        if world > 1:
            dist.all_reduce(sums)
    finally:
        model.train(was_training)
    loss, correct, n = sums.tolist()
    return EvalResult(loss / n, correct / n)


# ----------------------------------------------------------------------------------------------------
# training

def _make_optimizer(optimizer, model: nn.Module) -> Optimizer:
    if optimizer is None:
        return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    if isinstance(optimizer, Optimizer):
        return optimizer
    if callable(optimizer):
        opt = optimizer(model)
        if not isinstance(opt, Optimizer):
            raise TypeError(f"optimizer: the factory returned {type(opt).__name__}, expected a "
                            f"torch.optim.Optimizer")
        return opt
    raise TypeError(f"optimizer: expected a torch.optim.Optimizer, a callable model -> Optimizer, or None, "
                    f"got {type(optimizer).__name__}")


def _make_scheduler(scheduler, optimizer: Optimizer, num_steps: int):
    if scheduler is None:
        return None
    if isinstance(scheduler, LRScheduler):
        if scheduler.optimizer is not optimizer:
            raise ValueError("scheduler: expected a scheduler built on the optimizer that fit uses")
        return scheduler
    if callable(scheduler):
        sched = scheduler(optimizer, num_steps)
        if not isinstance(sched, LRScheduler):
            raise TypeError(f"scheduler: the factory returned {type(sched).__name__}, expected a "
                            f"torch.optim.lr_scheduler.LRScheduler")
        return sched
    raise TypeError(f"scheduler: expected an LRScheduler, a callable (optimizer, num_steps) -> LRScheduler, "
                    f"or None, got {type(scheduler).__name__}")


def fit(model: nn.Module, train, *, epochs: int, batch_size: int = 64, optimizer=None, scheduler=None,
        scheduler_interval: str = "iteration", loss_fn=None, augment: Augment | None = None,
        eval_data=None, eval_batch_size: int = 512, device=None, seed: int = 0, progress: bool = True,
        grad_clip: float | None = None, drop_last: bool = False,
        distributed: bool | None = None) -> History:
    """Train ``model`` with mini-batch SGD (or any optimizer) for ``epochs`` passes over ``train``.

    Each iteration takes the next ``batch_size`` examples of a fresh random permutation, applies
    ``augment``, computes ``loss_fn(model(x), y)``, backpropagates, optionally clips the gradient norm, takes
    an optimizer step and, with ``scheduler_interval="iteration"``, a scheduler step: the lecture's
    ``w_{t+1} = w_t - eta_t G_t`` with eta_t from the schedule.

    Notes:
        - **Determinism.** ``seed`` fixes everything ``fit`` draws: the permutations (a ``torch.Generator``),
          the augmentation (a second generator, handed to ``augment``), and the global RNG that modules such
          as Dropout draw from, which ``fit`` seeds inside ``torch.random.fork_rng`` so that the caller's
          global RNG state is left as it was. The model's initial weights are the caller's: seed before
          building it. Two calls with the same model state and seed give the same weights, bit for bit, on the
          same machine and thread count.
        - **The schedule** is stepped after every optimizer step (``scheduler_interval="iteration"``, what
          warmup and cosine schedules in Goyal et al. and He et al. assume) or after every epoch
          (``"epoch"``). A factory ``scheduler(optimizer, num_steps)`` is told how many steps it will get:
          ``epochs * iterations_per_epoch`` or ``epochs``.
        - **Soft labels** (mixup, cutmix) work when ``loss_fn`` takes them; the default ``F.cross_entropy``
          does. Accuracy compares with the soft label's argmax.
        - **Data-parallel.** Under an initialized ``torch.distributed`` process group with more than one
          process (``distributed=None`` detects it), the model is wrapped in ``DistributedDataParallel``,
          ``batch_size`` is the *global* mini-batch, and process r trains on its shard of every global batch
          (see the module docstring for why the steps equal one process's). A last batch with fewer examples
          than processes is skipped. Metrics are all-reduced, so every process returns the same History.
          Start the processes with ``torchrun`` and call :func:`init_distributed` first.

    Args:
        model: the network; it is moved to ``device`` in place.
        train: a pair of tensors (x, y) or a ``DataSplit`` (its train half). y: integer labels (N,) or soft
            labels (N, K). x is cast to the model's floating dtype batch by batch.
        epochs: passes over the data (>= 1).
        batch_size: examples per optimizer step (the global batch when distributed). Default: 64.
        optimizer: a ``torch.optim.Optimizer`` over the model's parameters, or a factory
            ``model -> Optimizer`` (e.g. ``lambda m: SGD(weight_decay_groups(m, 5e-4), lr=0.1,
            momentum=0.9)``). Default: SGD with lr 0.05 and momentum 0.9.
        scheduler: None, an ``LRScheduler`` on that optimizer, or a factory ``(optimizer, num_steps) ->
            LRScheduler``. Default: None (constant rate).
        scheduler_interval: ``"iteration"`` or ``"epoch"``: when the scheduler steps.
            Default: ``"iteration"``.
        loss_fn: ``loss_fn(logits, y) -> scalar`` that averages over the batch, e.g.
            ``LabelSmoothingCrossEntropy(0.1)``. Default: ``F.cross_entropy``.
        augment: ``augment(x, y, generator) -> (x, y)`` applied to every training batch on the device, e.g.
            ``lambda x, y, g: mixup(x, y, 10, generator=g)``. Default: None.
        eval_data: evaluated after every epoch: (x, y) or a ``DataSplit`` (its test half). Default: None.
        eval_batch_size: examples per forward pass in evaluation. Default: 512.
        device: where to train; None keeps the model's device (under torchrun with CUDA, each process's
            ``cuda:LOCAL_RANK``). Default: None.
        seed: the seed of the permutations, the augmentation and the global RNG. Default: 0.
        progress: show a tqdm progress bar (on process 0 only). Default: True.
        grad_clip: clip the global gradient norm to this value; None does not clip. Default: None.
        drop_last: skip the last, smaller batch of every epoch. Default: False.
        distributed: True requires an initialized process group; False trains in this process only, even
            inside one; None decides by whether a group with more than one process is initialized.

    Returns:
        The :class:`History` of the run.

    Examples::

        >>> from tricksref.data import load_digits
        >>> from tricksref.models import ResNetSmall
        >>> data = load_digits(size=8)          # the digits at their own 8x8
        >>> _ = torch.manual_seed(0)
        >>> model = ResNetSmall(num_classes=10)
        >>> hist = fit(model, data, epochs=5, eval_data=data, seed=0, progress=False)
        >>> hist.eval_acc[-1] > 0.9
        True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    x, y = _as_xy(train, "train", "train")
    check_number(epochs, "epochs", low=1, integer=True)
    check_number(batch_size, "batch_size", low=1, integer=True)
    check_number(eval_batch_size, "eval_batch_size", low=1, integer=True)
    check_number(seed, "seed", low=0, integer=True)
    check_choice(scheduler_interval, ("iteration", "epoch"), "scheduler_interval")
    if grad_clip is not None:
        check_number(grad_clip, "grad_clip", low=0.0, low_open=True)
    if augment is not None and not callable(augment):
        raise TypeError(f"augment: expected a callable (x, y, generator) -> (x, y), got "
                        f"{type(augment).__name__}")
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"loss_fn: expected a callable (logits, target) -> loss, got "
                        f"{type(loss_fn).__name__}")
    if eval_data is not None:
        _as_xy(eval_data, "eval_data", "test")
    rank, world = _world()
    if distributed is None:
        distributed = world > 1
    elif distributed and not (dist.is_available() and dist.is_initialized()):
        raise ValueError("distributed: True needs an initialized torch.distributed process group "
                         "(launch with torchrun and call tricksref.train.init_distributed())")
    if not distributed:
        rank, world = 0, 1
    if device is None:
        device = _model_device(model)
        if distributed and dist.get_backend() == "nccl":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    device = torch.device(device)
    loss_fn = F.cross_entropy if loss_fn is None else loss_fn

    model.to(device)
    dtype = _model_dtype(model)
    optimizer = _make_optimizer(optimizer, model)
    n = len(x)
    steps_per_epoch = n // batch_size if drop_last else math.ceil(n / batch_size)
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size: drop_last=True with batch_size={batch_size} > {n} examples leaves no "
                         f"batch to train on")
    sched = _make_scheduler(scheduler, optimizer,
                            epochs * steps_per_epoch if scheduler_interval == "iteration" else epochs)
    net = model
    if distributed:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    # every process draws the same permutations; augmentation and the global RNG get a stream per process
    seeds = torch.randint(2**62, (2,), generator=torch.Generator().manual_seed(seed)).tolist()
    shuffle_gen = torch.Generator().manual_seed(seeds[0])
    aug_gen = torch.Generator().manual_seed(seeds[1] + rank)
    history = History()

    from tqdm.auto import tqdm

    bar = tqdm(total=epochs * steps_per_epoch, desc="fit", unit="batch", disable=not progress or rank != 0,
               dynamic_ncols=True)
    fork_devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(seed + rank)
            for epoch in range(1, epochs + 1):
                t0 = time.perf_counter()
                lr0 = optimizer.param_groups[0]["lr"]
                model.train()
                sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss * n, correct, n
                perm = torch.randperm(n, generator=shuffle_gen)
                for step in range(steps_per_epoch):
                    idx = perm[step * batch_size:(step + 1) * batch_size]
                    m = len(idx)
                    if m < world:
                        bar.update(1)
                        continue
                    lo, hi = _shard(m, rank, world)
                    idx = idx[lo:hi].to(x.device)
                    xb = x[idx].to(device, dtype, non_blocking=True)
                    yb = y[idx].to(device, non_blocking=True)
                    if augment is not None:
                        xb, yb = augment(xb, yb, aug_gen)
                    logits = net(xb)
                    loss = loss_fn(logits, yb)
                    # DDP averages the W gradients; weighting by the shard size makes that the global mean
                    scaled = loss * (len(xb) * world / m) if world > 1 else loss
                    optimizer.zero_grad(set_to_none=True)
                    scaled.backward()
                    if grad_clip is not None:
                        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                    optimizer.step()
                    if sched is not None and scheduler_interval == "iteration":
                        sched.step()
                    with torch.no_grad():
                        sums[0] += loss.detach().double() * len(xb)
                        sums[1] += (logits.argmax(1) == _hard_labels(yb)).sum()
                        sums[2] += len(xb)
                    bar.update(1)
                if sched is not None and scheduler_interval == "epoch":
                    sched.step()
                if world > 1:
                    dist.all_reduce(sums)
                loss_sum, correct, count = sums.tolist()
                ev = (evaluate(model, eval_data, eval_batch_size, loss_fn=loss_fn, device=device)
                      if eval_data is not None else None)
                history.append(epoch=epoch, train_loss=loss_sum / max(count, 1),
                               train_acc=correct / max(count, 1),
                               eval_loss=None if ev is None else ev.loss,
                               eval_acc=None if ev is None else ev.accuracy,
                               lr=float(lr0), time=time.perf_counter() - t0)
                post = {"loss": f"{history.train_loss[-1]:.3f}", "acc": f"{history.train_acc[-1]:.3f}"}
                if ev is not None:
                    post["eval_acc"] = f"{ev.accuracy:.3f}"
                bar.set_postfix(post, refresh=False)
    finally:
        bar.close()
    return history


# ----------------------------------------------------------------------------------------------------
# torchrun entry point

def init_distributed(backend: str | None = None) -> tuple[int, int]:
    """Join the process group that ``torchrun`` describes in the environment; return (rank, world_size).

    The backend defaults to ``nccl`` when CUDA is available and ``gloo`` otherwise; with nccl each process
    uses ``cuda:LOCAL_RANK``. Outside torchrun (no ``RANK``/``WORLD_SIZE`` variables) it does nothing and
    returns (0, 1). Calling it again returns the existing group's rank and size.
    """
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    check_choice(backend, ("gloo", "nccl"), "backend")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tricksref.train",
        description="Train AlexNetSmall or ResNetSmall on scikit-learn's digits; under torchrun, "
                    "data-parallel (e.g. torchrun --standalone --nproc_per_node=2 -m tricksref.train).")
    p.add_argument("--model", choices=("resnet", "alexnet"), default="resnet")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64, help="the global mini-batch")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--size", type=int, default=16, help="image side the 8x8 digits are upsampled to")
    p.add_argument("--limit", type=int, default=None, help="train on the first LIMIT training images only")
    p.add_argument("--no-batchnorm", action="store_true", help="build the model without BN")
    p.add_argument("--dropout", type=float, default=None, help="the model's dropout (default: its own)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda:LOCAL_RANK or cpu)")
    p.add_argument("--backend", choices=("gloo", "nccl"), default=None,
                   help="under torchrun: the process group's backend (default: nccl with CUDA, else gloo); "
                        "gloo lets several processes share one GPU, which nccl refuses")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads per process")
    p.add_argument("--seed", type=int, default=0, help="seeds the model's initial weights and fit")
    p.add_argument("--save", default=None, help="write the trained state_dict here (process 0)")
    p.add_argument("--json", default=None, help="write the history as JSON here (process 0)")
    p.add_argument("--no-progress", action="store_true")
    return p


def build_model(name: str, *, num_classes: int = 10, seed: int = 0, batchnorm: bool = True,
                dropout: float | None = None, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The command line's model: ``torch.manual_seed(seed)``, then AlexNetSmall or ResNetSmall, in dtype."""
    from .models import AlexNetSmall, ResNetSmall

    check_choice(name, ("resnet", "alexnet"), "name")
    torch.manual_seed(seed)
    kwargs = {} if dropout is None else {"dropout": dropout}
    if name == "resnet":
        model = ResNetSmall(num_classes=num_classes, batchnorm=batchnorm, **kwargs)
    else:
        model = AlexNetSmall(num_classes=num_classes, batchnorm=batchnorm, **kwargs)
    return model.to(dtype)


def main(argv=None) -> History:
    """The command line: train on digits, print the history on process 0."""
    args = _parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rank, world = init_distributed(args.backend)
    from .data import load_digits

    data = load_digits(size=args.size)
    x, y = data.x_train, data.y_train
    if args.limit is not None:
        x, y = x[:args.limit], y[:args.limit]
    dtype = getattr(torch, args.dtype)
    model = build_model(args.model, seed=args.seed, batchnorm=not args.no_batchnorm, dropout=args.dropout,
                        dtype=dtype)
    device = args.device
    if device is None:
        device = (f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    hist = fit(model, (x, y), epochs=args.epochs, batch_size=args.batch_size,
               optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=args.lr, momentum=args.momentum,
                                                   weight_decay=args.weight_decay),
               eval_data=(data.x_test, data.y_test), device=device, seed=args.seed,
               progress=not args.no_progress)
    if rank == 0:
        print(f"# {args.model} on digits {args.size}x{args.size}, {len(x)} training images, {world} process"
              f"{'es' if world > 1 else ''}, global batch {args.batch_size}")
        print(hist.table())
        if args.save:
            torch.save(model.state_dict(), args.save)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"world_size": world, "args": vars(args), "history": hist.to_dict()}, f, indent=1)
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return hist


if __name__ == "__main__":
    main(sys.argv[1:])
