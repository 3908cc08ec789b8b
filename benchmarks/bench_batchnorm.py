"""Time tricksref.batch_norm against PyTorch's fused native kernel: training-mode forward plus backward.

What it measures: on CPU, a (64, 96, 27, 27) float32 input (AlexNet's second block) with gamma and beta,
``y = batch_norm(x, running_mean, running_var, weight, bias, training=True); y.backward(g)``, for
``tricksref.batch_norm`` (the closed-form backward in a torch.autograd.Function) and
``torch.nn.functional.batch_norm`` (ATen's fused kernel and its native backward). The two run interleaved in
one process, alternating which goes first, so that load from other processes hits both alike; the script
prints the median time of each and the median of the per-round ratios ours / torch (< 1 means ours is faster).
The target of issue 2 is a ratio of at most 2.

Run: ``python benchmarks/bench_batchnorm.py [--reps 50] [--threads N] [--shape 64 96 27 27]
[--channels-last]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from tricksref.batchnorm import batch_norm


def _step(fn, x, g, w, b, rm, rv) -> float:
    x = x.detach().requires_grad_()
    w = w.detach().requires_grad_()
    b = b.detach().requires_grad_()
    t0 = time.perf_counter()
    y = fn(x, rm, rv, w, b, training=True, momentum=0.1, eps=1e-5)
    y.backward(g)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=50, help="timed rounds (each runs both ops once)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed rounds first")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--shape", type=int, nargs="+", default=[64, 96, 27, 27], help="input shape (N, C, ...)")
    ap.add_argument("--channels-last", action="store_true", help="a channels_last input (4D only)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    gen = torch.Generator().manual_seed(args.seed)
    shape = tuple(args.shape)
    C = shape[1]
    x = torch.randn(shape, generator=gen)
    g = torch.randn(shape, generator=gen)
    if args.channels_last:
        x, g = x.to(memory_format=torch.channels_last), g.to(memory_format=torch.channels_last)
    w, b = torch.rand(C, generator=gen) + 0.5, torch.randn(C, generator=gen)
    stats = {name: (torch.zeros(C), torch.ones(C)) for name in ("ours", "torch")}
    ops = {"ours": batch_norm, "torch": F.batch_norm}

    times: dict[str, list[float]] = {"ours": [], "torch": []}
    for r in range(args.warmup + args.reps):
        order = ("ours", "torch") if r % 2 == 0 else ("torch", "ours")
        for name in order:
            t = _step(ops[name], x, g, w, b, *stats[name])
            if r >= args.warmup:
                times[name].append(t)

    ratios = [o / t for o, t in zip(times["ours"], times["torch"], strict=True)]
    layout = " channels_last" if args.channels_last else ""
    print(f"batch_norm, training forward + backward, CPU, {torch.get_num_threads()} threads, "
          f"shape {shape} float32{layout}, {args.reps} interleaved rounds")
    for name in ("torch", "ours"):
        print(f"  {name:6s} median {statistics.median(times[name]) * 1e3:8.2f} ms")
    q = statistics.quantiles(ratios, n=4)
    print(f"  ratio ours/torch: median {statistics.median(ratios):.3f} (quartiles {q[0]:.3f} .. {q[2]:.3f}); "
          f"target <= 2")


if __name__ == "__main__":
    main()
