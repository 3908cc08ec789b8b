"""Stagewise and restart training: the lecture's one-loop and two-loop SGD, and learning-rate schedulers.

The lecture contrasts one-loop SGD, one step size for all T steps,

    for t = 1..T:  w_{t+1} = w_t - eta G_t,

with two-loop (stagewise) SGD, a step size eta_s for each stage s = 1..S of T steps,

    for s = 1..S:  for t = 1..T:  w_{t+1} = w_t - eta_s G_t,

where G_t is a stochastic gradient at w_t. ``sgd`` and ``stagewise_sgd`` are those two algorithms on a tensor,
computed by the edition's code (:mod:`tricksref._edition`): the two loops written out in the solutions
edition, ``torch.optim.SGD`` driven by ``StagewiseLR`` in the student one (the same iterates up to float
rounding). The schedulers below drive a ``torch.optim`` optimizer instead; each is a subclass of
``torch.optim.lr_scheduler.LRScheduler`` with a closed form for the learning rate at step t, so stepping it,
jumping to a step, and ``state_dict``/``load_state_dict`` all agree:

- ``StagewiseLR``: the two-loop schedule (per-stage step sizes eta_s), or step decay at milestones.
- ``LinearWarmupLR``: linear warmup (Goyal et al., 2017), optionally followed by any scheduler of this module.
- ``CosineLR``: cosine annealing (Loshchilov and Hutter, 2017, one period).
- ``SGDR``: cosine annealing with warm restarts (Loshchilov and Hutter, 2017).
- ``scaled_lr``: the linear scaling rule for large mini-batches (Goyal et al., 2017).

Convention for every scheduler: call ``scheduler.step()`` once after each ``optimizer.step()``; ``t`` below is
``scheduler.last_epoch``, the number of updates made so far, so update number t (counting from 0) uses the
learning rate the formula gives at t. "Epoch" in torch's attribute names means whatever one call of ``step()``
stands for here: one iteration in the lecture's algorithms.
"""

from __future__ import annotations

import math
import numbers
from bisect import bisect_right
from collections.abc import Callable, Sequence

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from . import _edition
from ._checks import check_float_tensor, check_number

__all__ = [
    "sgd", "stagewise_sgd", "StagewiseLR", "LinearWarmupLR", "CosineLR", "SGDR", "scaled_lr",
]

_impl = _edition.implementation("schedules")


# ----------------------------------------------------------------------------------------------------
# validation helpers

def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected a positive integer, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def _positive_lr(value, name: str) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_complex():
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a positive finite real number, got "
                        f"{type(value).__name__} {value!r}")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}: expected a positive finite real number, got {value!r}")
    return value


def _stage_lrs(stage_lrs, name: str = "stage_lrs") -> list[float]:
    expected = "a non-empty sequence of learning rates (one eta_s per stage)"
    iterable = hasattr(stage_lrs, "__iter__") and hasattr(stage_lrs, "__len__")
    if isinstance(stage_lrs, (str, bytes, dict)) or not iterable or getattr(stage_lrs, "ndim", 1) != 1:
        raise TypeError(f"{name}: expected {expected}, got {type(stage_lrs).__name__} {stage_lrs!r}")
    lrs = list(stage_lrs)
    if not lrs:
        raise ValueError(f"{name}: expected {expected}, got an empty {type(stage_lrs).__name__}")
    return [_positive_lr(v, f"{name}[{s}]") for s, v in enumerate(lrs)]


def _iters_per_stage(iters_per_stage, num_stages: int) -> list[int]:
    """One T_s per stage: an int is repeated S times, a sequence must have S entries."""
    if isinstance(iters_per_stage, numbers.Integral):  # bool included: rejected by _positive_int
        return [_positive_int(iters_per_stage, "iters_per_stage")] * num_stages
    if isinstance(iters_per_stage, (str, bytes)) or not hasattr(iters_per_stage, "__iter__"):
        raise TypeError(f"iters_per_stage: expected a positive integer T or a sequence of {num_stages} "
                        f"positive integers, got {type(iters_per_stage).__name__} {iters_per_stage!r}")
    ts = list(iters_per_stage)
    if len(ts) != num_stages:
        raise ValueError(f"iters_per_stage: expected one T_s per stage, {num_stages} in all "
                         f"(len(stage_lrs)), got {len(ts)}")
    return [_positive_int(t, f"iters_per_stage[{s}]") for s, t in enumerate(ts)]


def _check_grad(g, w: torch.Tensor, step: int) -> torch.Tensor:
    if not isinstance(g, torch.Tensor):
        raise TypeError(f"grad_fn: expected it to return a torch.Tensor G_t, got {type(g).__name__} "
                        f"at step {step}")
    if g.shape != w.shape:
        raise ValueError(f"grad_fn: expected G_t of the same shape as w, {tuple(w.shape)}, "
                         f"got {tuple(g.shape)} at step {step}")
    if g.device != w.device:
        raise ValueError(f"grad_fn: expected G_t on w's device {w.device}, got {g.device} at step {step}")
    return g


def _check_sgd_inputs(w0, grad_fn) -> None:
    check_float_tensor(w0, "w0")
    if not callable(grad_fn):
        raise TypeError(f"grad_fn: expected a callable grad_fn(w, step) -> G_t, got {type(grad_fn).__name__}")


# ----------------------------------------------------------------------------------------------------
# the lecture's algorithms, written out

def sgd(w0: torch.Tensor, grad_fn: Callable[[torch.Tensor, int], torch.Tensor], lr: float,
        iters: int) -> list[torch.Tensor]:
    """One-loop SGD: the same step size eta for every step.

    The lecture's one-loop algorithm::

        for t = 1..T:
            compute a stochastic gradient G_t at w_t
            w_{t+1} = w_t - eta G_t

    It is ``stagewise_sgd`` with a single stage, written out on its own for contrast.

    Args:
        w0: the starting point w_1, a floating-point tensor of any shape, on any device. Not modified.
        grad_fn: ``grad_fn(w, step) -> G_t``, a tensor of ``w``'s shape and device; ``step`` counts the
            updates from 0. It receives the current iterate and must not modify it in place.
        lr: eta > 0.
        iters: T >= 1, the number of updates.

    Returns:
        The list of the T iterates w_2, ..., w_{T+1}, each the tensor after one update.

    Examples::

        >>> w0 = torch.tensor([1.0])
        >>> [w.item() for w in sgd(w0, lambda w, t: w, lr=0.5, iters=3)]   # f(w) = w^2 / 2
        [0.5, 0.25, 0.125]
    """
    _check_sgd_inputs(w0, grad_fn)
    eta = _positive_lr(lr, "lr")
    T = _positive_int(iters, "iters")
    return _impl.stagewise_sgd(w0, grad_fn, [eta], [T], _check_grad)  # one stage


def stagewise_sgd(w0: torch.Tensor, grad_fn: Callable[[torch.Tensor, int], torch.Tensor],
                  stage_lrs: Sequence[float], iters_per_stage: int | Sequence[int]) -> list[torch.Tensor]:
    """Two-loop (stagewise) SGD: step size eta_s for stage s = 1..S, T steps in each stage.

    The lecture's two-loop algorithm::

        for s = 1..S:
            for t = 1..T:
                compute a stochastic gradient G_t at w_t
                w_{t+1} = w_t - eta_s G_t

    Each stage restarts the inner loop, not the iterate: stage s starts from where stage s - 1 ended. With
    decreasing eta_1 > eta_2 > ... this is the step decay that trained AlexNet and ResNet ("divide the
    learning rate by 10 when the error plateaus"); the step counter passed to ``grad_fn`` runs over all
    stages, so a stochastic ``grad_fn`` can draw its mini-batch from it.

    Notes:
        - ``step`` counts updates from 0 over all stages: stage s (from 0) covers steps
          ``sum(T_0..T_{s-1}) .. sum(T_0..T_s) - 1``.
        - The update is ``w - eta_s * G_t`` with G_t exactly what ``grad_fn`` returns (detached: the iterates
          carry no autograd history). The result's dtype follows torch's type promotion of ``w`` and ``G_t``.
        - ``iters_per_stage`` may also be a list of per-stage lengths T_s (one per entry of ``stage_lrs``).

    Args:
        w0: the starting point, a floating-point tensor of any shape, on any device. Not modified.
        grad_fn: ``grad_fn(w, step) -> G_t``, a tensor of ``w``'s shape and device. It receives the current
            iterate (never ``w0`` itself) and must not modify it in place.
        stage_lrs: the step sizes eta_1, ..., eta_S: a non-empty sequence of positive finite numbers.
        iters_per_stage: T >= 1, the number of updates in every stage, or a sequence of S such numbers.

    Returns:
        The list of the S*T iterates, the tensor after each update, in order (``sum(T_s)`` with per-stage
        lengths). The last one is the result of the algorithm.

    Examples::

        >>> w0 = torch.tensor([4.0, -2.0])
        >>> grad = lambda w, step: 2 * (w - torch.tensor([1.0, 1.0]))   # f(w) = ||w - (1, 1)||^2
        >>> ws = stagewise_sgd(w0, grad, stage_lrs=[0.25, 0.125], iters_per_stage=[1, 2])
        >>> [w.tolist() for w in ws]   # w - (1, 1) halves in stage 1, then shrinks by 3/4 per step
        [[2.5, -0.5], [2.125, -0.125], [1.84375, 0.15625]]
    """
    _check_sgd_inputs(w0, grad_fn)
    etas = _stage_lrs(stage_lrs)
    Ts = _iters_per_stage(iters_per_stage, len(etas))
    return _impl.stagewise_sgd(w0, grad_fn, etas, Ts, _check_grad)


# ----------------------------------------------------------------------------------------------------
# schedulers

class _ClosedFormLR(LRScheduler):
    """Base of this module's schedulers: the learning rate of a group is ``_lr_at(base_lr, t)``.

    A closed form rather than torch's chained updates (``lr <- lr * factor``) makes resuming, jumping to a
    step, and composing one schedule after a warmup exact. The price: a change made to ``group["lr"]`` by hand
    is overwritten at the next step.
    """

    #: number of steps after which the schedule has run its course (None: it goes on forever)
    horizon: int | None = None

    def _lr_at(self, base_lr, t: int):
        raise NotImplementedError

    def get_lr(self):
        """Learning rates for step ``self.last_epoch``, one per parameter group, from the closed form."""
        return [self._lr_at(base_lr, self.last_epoch) for base_lr in self.base_lrs]

    def _get_closed_form_lr(self):
        return self.get_lr()

    def lr_at(self, t: int) -> list:
        """The learning rates this schedule gives at step ``t`` (one per group), without stepping."""
        t = check_number(t, "t", low=0, integer=True)
        return [self._lr_at(base_lr, t) for base_lr in self.base_lrs]


def _check_optimizer(optimizer) -> None:
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer: expected a torch.optim.Optimizer, got {type(optimizer).__name__}")


class StagewiseLR(_ClosedFormLR):
    """Stagewise (step) decay: a constant learning rate per stage, as in the lecture's two-loop SGD.

    Two ways to give the stages:

    - ``stage_lrs=[eta_1, ..., eta_S]`` and ``iters_per_stage=T`` (or ``[T_1, ..., T_S]``): the lecture's
      algorithm. At step t in stage s the learning rate of every parameter group is eta_s; after the last
      stage it stays at eta_S. With ``torch.optim.SGD`` (no momentum, no weight decay) this reproduces
      ``stagewise_sgd`` step for step.
    - ``milestones=[m_1, m_2, ...]`` and ``gamma``: step decay relative to each group's initial learning rate,
      ``lr_t = base_lr * gamma ** (number of milestones <= t)``, the schedule of ``torch.optim.lr_scheduler.
      MultiStepLR`` (e.g. ResNet's "divide by 10 at 30, 60, 80 epochs"). Use this form for parameter groups
      with different learning rates.

    Args:
        optimizer: the wrapped optimizer.
        milestones: strictly increasing positive step indices at which the rate is multiplied by ``gamma``.
        gamma: the decay factor per milestone (> 0). Default: 0.1.
        stage_lrs: eta_1, ..., eta_S, positive finite numbers (keyword only; excludes ``milestones``).
        iters_per_stage: T, or one T_s per stage (keyword only; required with ``stage_lrs``).
        last_epoch: torch's resume argument; -1 starts a new schedule. Default: -1.

    Examples::

        >>> opt = torch.optim.SGD(torch.nn.Linear(3, 2).parameters(), lr=0.1)
        >>> sched = StagewiseLR(opt, stage_lrs=[0.1, 0.01, 0.001], iters_per_stage=2)
        >>> lrs = []
        >>> for step in range(6):
        ...     lrs.append(sched.get_last_lr()[0])   # the rate of this step's update
        ...     opt.step()                           # (after loss.backward() in real training)
        ...     sched.step()
        >>> lrs
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    """

    def __init__(self, optimizer: Optimizer, milestones: Sequence[int] | None = None, gamma: float = 0.1, *,
                 stage_lrs: Sequence[float] | None = None, iters_per_stage: int | Sequence[int] | None = None,
                 last_epoch: int = -1) -> None:
        _check_optimizer(optimizer)
        if (milestones is None) == (stage_lrs is None):
            raise ValueError("milestones, stage_lrs: expected exactly one of them (milestones with gamma for "
                             "step decay, or stage_lrs with iters_per_stage for the two-loop schedule)")
        if stage_lrs is not None:
            if iters_per_stage is None:
                raise ValueError("iters_per_stage: expected T (or one T_s per stage) together with stage_lrs")
            self.stage_lrs = _stage_lrs(stage_lrs)
            self.iters_per_stage = _iters_per_stage(iters_per_stage, len(self.stage_lrs))
            # step index at which each stage after the first begins
            self.milestones = [sum(self.iters_per_stage[:s]) for s in range(1, len(self.stage_lrs))]
            self.gamma = None
            self.horizon = sum(self.iters_per_stage)
        else:
            if iters_per_stage is not None:
                raise ValueError("iters_per_stage: only used with stage_lrs; milestones already say where "
                                 "stages end")
            if isinstance(milestones, (str, bytes)) or not hasattr(milestones, "__iter__"):
                raise TypeError(f"milestones: expected a sequence of step indices, got "
                                f"{type(milestones).__name__}")
            ms = [_positive_int(m, f"milestones[{i}]") for i, m in enumerate(milestones)]
            if not ms:
                raise ValueError("milestones: expected at least one step index, got an empty sequence")
            if any(b <= a for a, b in zip(ms, ms[1:], strict=False)):
                raise ValueError(f"milestones: expected strictly increasing step indices, got {ms}")
            self.milestones = ms
            self.gamma = _positive_lr(gamma, "gamma")
            self.stage_lrs = None
            self.iters_per_stage = None
        super().__init__(optimizer, last_epoch)

    def stage(self, t: int) -> int:
        """The stage (from 0) that step t belongs to; steps past the last stage belong to the last one."""
        return bisect_right(self.milestones, t)

    def _lr_at(self, base_lr, t):
        s = self.stage(t)
        if self.stage_lrs is not None:
            return self.stage_lrs[s]       # eta_s, the lecture's per-stage step size
        return base_lr * self.gamma ** s


class LinearWarmupLR(_ClosedFormLR):
    """Linear learning-rate warmup (Goyal et al., 2017), then a constant rate or another schedule.

    For the first W = ``warmup_steps`` updates the rate grows linearly from ``start_factor * eta`` to eta,

        lr_t = eta * (start_factor + (1 - start_factor) * t / W),   t = 0..W-1,

    and from step W on it is the schedule ``after`` (or eta when ``after`` is None). Here eta, the target of
    the ramp, is the rate ``after`` has where the warmup hands over to it, so the schedule is continuous;
    without ``after`` it is each group's initial learning rate. Goyal et al. warm up over the first 5 epochs,
    from eta / k to eta = k * 0.1 for a mini-batch k times 256 (see ``scaled_lr``), because the large rate
    is unstable while the network changes fast at the start.

    Notes:
        - ``shift=True`` (default) starts ``after`` at its own step 0 when the warmup ends, as torch's
          ``SequentialLR`` does: warmup then cosine over ``T_max`` steps takes W + T_max steps.
          ``shift=False`` keeps one clock for both, as Goyal et al. count epochs (decay at epoch 30 counts the
          5 warmup epochs): the warmup replaces the first W steps of ``after``, and W must then be shorter
          than ``after``'s schedule (a ValueError otherwise).
        - ``after`` must be one of this module's schedulers, built on the same optimizer; only its formula is
          used: step this scheduler, not ``after``. ``state_dict`` includes ``after``'s.
        - Without ``after`` this is ``torch.optim.lr_scheduler.LinearLR(start_factor, 1.0, total_iters=W)``.

    Args:
        optimizer: the wrapped optimizer.
        warmup_steps: W >= 1, the number of warmup updates.
        start_factor: the rate of the first update as a fraction of eta, in [0, 1]. Default: 0.1.
        after: the schedule that follows the warmup, or None for a constant rate. Default: None.
        shift: whether ``after`` starts from its step 0 when the warmup ends. Default: True.
        total_steps: the length of training, if known, so that a warmup at least as long is an error.
        last_epoch: torch's resume argument; -1 starts a new schedule. Default: -1.

    Examples::

        >>> opt = torch.optim.SGD(torch.nn.Linear(3, 2).parameters(), lr=scaled_lr(0.1, 8192))   # 3.2
        >>> sched = LinearWarmupLR(opt, warmup_steps=500, after=CosineLR(opt, T_max=9500))
        >>> lrs = []
        >>> for step in range(10_000):
        ...     lrs.append(sched.get_last_lr()[0])
        ...     opt.step()
        ...     sched.step()
        >>> [round(lrs[t], 4) for t in (0, 250, 500, 5250, 9999)]   # 0.1 eta, up to eta, then the cosine
        [0.32, 1.76, 3.2, 1.6, 0.0]
    """

    def __init__(self, optimizer: Optimizer, warmup_steps: int, start_factor: float = 0.1, *,
                 after: _ClosedFormLR | None = None, shift: bool = True, total_steps: int | None = None,
                 last_epoch: int = -1) -> None:
        _check_optimizer(optimizer)
        self.warmup_steps = _positive_int(warmup_steps, "warmup_steps")
        self.start_factor = float(check_number(start_factor, "start_factor", low=0.0, high=1.0))
        if not isinstance(shift, bool):
            raise TypeError(f"shift: expected a bool, got {type(shift).__name__}")
        self.shift = shift
        if after is not None:
            if not isinstance(after, _ClosedFormLR):
                raise TypeError(f"after: expected one of tricksref.schedules' schedulers (StagewiseLR, "
                                f"CosineLR, SGDR, LinearWarmupLR), got {type(after).__name__}; for "
                                f"torch's own schedulers use torch.optim.lr_scheduler.SequentialLR")
            if after.optimizer is not optimizer:
                raise ValueError("after: expected a scheduler built on the same optimizer as the warmup")
            if not shift and after.horizon is not None and self.warmup_steps >= after.horizon:
                raise ValueError(f"warmup_steps: expected fewer steps than the schedule after it "
                                 f"({after.horizon}) when shift=False, got {self.warmup_steps}; the warmup "
                                 f"would hide all of it")
        self.after = after
        if total_steps is not None:
            total = _positive_int(total_steps, "total_steps")
            if self.warmup_steps >= total:
                raise ValueError(f"warmup_steps: expected fewer steps than total_steps={total}, got "
                                 f"{self.warmup_steps}; training would end before the warmup does")
        self.total_steps = total_steps
        self.horizon = None
        if after is not None and after.horizon is not None:
            self.horizon = after.horizon + (self.warmup_steps if shift else 0)
        super().__init__(optimizer, last_epoch)

    def _after_lr(self, base_lr, t):
        if self.after is None:
            return base_lr
        return self.after._lr_at(base_lr, t - self.warmup_steps if self.shift else t)

    def _lr_at(self, base_lr, t):
        W = self.warmup_steps
        if t >= W:
            return self._after_lr(base_lr, t)
        eta = self._after_lr(base_lr, W)  # the rate the ramp must reach when it hands over
        return eta * (self.start_factor + (1.0 - self.start_factor) * t / W)

    def state_dict(self) -> dict:
        """The scheduler's state, with ``after``'s state nested (never the optimizer)."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "after")}
        state["after"] = None if self.after is None else self.after.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a state from ``state_dict()``; ``after`` must be of the same kind as when it was saved."""
        state = dict(state_dict)
        after_state = state.pop("after", None)
        if (after_state is None) != (self.after is None):
            saved = "without" if after_state is None else "with"
            raise ValueError(f"state_dict: saved {saved} an `after` schedule, but this scheduler has "
                             f"{'one' if self.after is not None else 'none'}")
        self.__dict__.update(state)
        if self.after is not None:
            self.after.load_state_dict(after_state)


class CosineLR(_ClosedFormLR):
    """Cosine annealing from each group's initial rate down to ``eta_min`` over ``T_max`` steps.

    SGDR's schedule (Loshchilov and Hutter, 2017) without restarts, the one most "bag of tricks" recipes use
    (He et al., 2019):

        lr_t = eta_min + (eta - eta_min) * (1 + cos(pi * t / T_max)) / 2,   t = 0..T_max,

    with eta a group's initial learning rate; after ``T_max`` the rate stays at ``eta_min``.

    Notes:
        For t <= T_max this is ``torch.optim.lr_scheduler.CosineAnnealingLR``, which computes it recursively
        and, past T_max, climbs back up the cosine instead of staying at eta_min.

    Args:
        optimizer: the wrapped optimizer.
        T_max: the number of steps to anneal over (>= 1).
        eta_min: the final learning rate (>= 0). Default: 0.
        last_epoch: torch's resume argument; -1 starts a new schedule. Default: -1.

    Examples::

        >>> opt = torch.optim.SGD(torch.nn.Linear(3, 2).parameters(), lr=0.1)
        >>> sched = CosineLR(opt, T_max=1000)
        >>> [round(sched._lr_at(0.1, t), 4) for t in (0, 500, 1000, 2000)]   # after T_max: eta_min
        [0.1, 0.05, 0.0, 0.0]
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        _check_optimizer(optimizer)
        self.T_max = _positive_int(T_max, "T_max")
        self.eta_min = float(check_number(eta_min, "eta_min", low=0.0))
        self.horizon = self.T_max
        super().__init__(optimizer, last_epoch)

    def _lr_at(self, base_lr, t):
        t = min(t, self.T_max)
        return self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * t / self.T_max)) / 2


class SGDR(_ClosedFormLR):
    """Cosine annealing with warm restarts (SGDR; Loshchilov and Hutter, 2017).

    Run i (from 0) lasts T_i = T_0 * T_mult^i steps; within it, after T_cur steps,

        lr_t = eta_min + (eta - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2,

    with eta a group's initial learning rate. At the end of a run the rate jumps back to eta: a restart. The
    restarts happen at steps T_0, T_0 + T_0 T_mult, T_0 + T_0 T_mult + T_0 T_mult^2, ...; it is the lecture's
    stagewise training with a cosine inside each stage and the iterate kept across the restart.

    Notes:
        The same rates as ``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts`` stepped once per update,
        here from the closed form of (i, T_cur) at step t.

    Args:
        optimizer: the wrapped optimizer.
        T_0: the length of the first run (>= 1).
        T_mult: the factor by which each run is longer than the one before, an integer >= 1. Default: 1.
        eta_min: the lowest learning rate (>= 0). Default: 0.
        last_epoch: torch's resume argument; -1 starts a new schedule. Default: -1.

    Examples::

        >>> sched = SGDR(torch.optim.SGD(torch.nn.Linear(3, 2).parameters(), lr=0.1), T_0=10, T_mult=2)
        >>> sched.restarts(4)
        [10, 30, 70, 150]
    """

    def __init__(self, optimizer: Optimizer, T_0: int, T_mult: int = 1, eta_min: float = 0.0,
                 last_epoch: int = -1) -> None:
        _check_optimizer(optimizer)
        self.T_0 = _positive_int(T_0, "T_0")
        self.T_mult = _positive_int(T_mult, "T_mult")
        self.eta_min = float(check_number(eta_min, "eta_min", low=0.0))
        super().__init__(optimizer, last_epoch)

    def run_and_offset(self, t: int) -> tuple[int, int, int]:
        """``(i, T_cur, T_i)`` at step t: the run index, the steps since its restart, and its length."""
        if self.T_mult == 1:
            return t // self.T_0, t % self.T_0, self.T_0
        # integer walk instead of a logarithm: exact at the restarts, and only O(log t) runs
        i, T_i = 0, self.T_0
        while t >= T_i:
            t -= T_i
            i, T_i = i + 1, T_i * self.T_mult
        return i, t, T_i

    def restarts(self, n: int) -> list[int]:
        """The steps at which the first ``n`` restarts happen."""
        n = check_number(n, "n", low=0, integer=True)
        steps, at, T_i = [], 0, self.T_0
        for _ in range(n):
            at += T_i
            steps.append(at)
            T_i *= self.T_mult
        return steps

    def _lr_at(self, base_lr, t):
        _, T_cur, T_i = self.run_and_offset(t)
        return self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * T_cur / T_i)) / 2


def scaled_lr(base_lr: float, batch_size: int, base_batch_size: int = 256) -> float:
    """The linear scaling rule (Goyal et al., 2017): k times the mini-batch, k times the learning rate.

        eta = base_lr * batch_size / base_batch_size

    Goyal et al. train ResNet-50 with eta = 0.1 * kn / 256 for a mini-batch of kn images, up to 8192 images
    (eta = 3.2), which needs the warmup of ``LinearWarmupLR`` at the start. The rule rests on k small steps
    being close to one step k times larger while the gradient changes slowly, which is why it fails early in
    training and for very large batches.

    Args:
        base_lr: the learning rate tuned for ``base_batch_size`` (> 0).
        batch_size: the mini-batch size used now (>= 1).
        base_batch_size: the mini-batch size ``base_lr`` was tuned for (>= 1). Default: 256.

    Examples::

        >>> scaled_lr(0.1, 1024)
        0.4
    """
    eta = _positive_lr(base_lr, "base_lr")
    b = _positive_int(batch_size, "batch_size")
    b0 = _positive_int(base_batch_size, "base_batch_size")
    return eta * b / b0
