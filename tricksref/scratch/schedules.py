"""Two-loop (stagewise) SGD from scratch: the lecture's two loops, written out on a tensor (the algorithm
and its conventions are in :mod:`tricksref.schedules`)."""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["stagewise_sgd"]


def stagewise_sgd(w0: torch.Tensor, grad_fn: Callable[[torch.Tensor, int], torch.Tensor], etas: list[float],
                  Ts: list[int], check_grad: Callable) -> list[torch.Tensor]:
    """The S*T iterates for the checked arguments; ``check_grad(G, w, step)`` validates each gradient."""
    w = w0.detach().clone()  # so that neither we nor grad_fn can touch w0
    iterates = []
    step = 0
    for eta_s, T in zip(etas, Ts, strict=True):  # for s = 1..S
        for _ in range(T):          # for t = 1..T
            G_t = check_grad(grad_fn(w, step), w, step).detach()
            w = w - eta_s * G_t
            iterates.append(w)
            step += 1
    return iterates
