"""Two-loop (stagewise) SGD through ``torch.optim.SGD`` driven by :class:`tricksref.schedules.StagewiseLR`."""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["stagewise_sgd"]


def stagewise_sgd(w0: torch.Tensor, grad_fn: Callable[[torch.Tensor, int], torch.Tensor], etas: list[float],
                  Ts: list[int], check_grad: Callable) -> list[torch.Tensor]:
    """The S*T iterates for the checked arguments; ``check_grad(G, w, step)`` validates each gradient."""
    from ..schedules import StagewiseLR  # the public module imports this one

    w = w0.detach().clone()
    opt = torch.optim.SGD([w], lr=etas[0])
    sched = StagewiseLR(opt, stage_lrs=etas, iters_per_stage=Ts)
    iterates = []
    for step in range(sum(Ts)):
        G = check_grad(grad_fn(w, step), w, step).detach()
        dtype = torch.result_type(w, G)
        if dtype != w.dtype:  # w - eta G follows torch's type promotion: so does the iterate
            w = w.detach().to(dtype)
            opt.param_groups[0]["params"][0] = w  # plain SGD keeps no state per parameter to carry over
        w.grad = G.to(dtype).clone()  # a copy: G may be w itself, which the step changes
        opt.step()
        sched.step()
        iterates.append(w.detach().clone())
    return iterates
