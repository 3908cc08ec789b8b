"""Time tricksref.local_response_norm against torch.nn.functional.local_response_norm on the CPU.

AlexNet's first LRN layer by default: a (64, 96, 27, 27) float32 batch, size 5, torch's default alpha,
beta and k. Both ops run interleaved in one process (the order alternating from one repetition to the next),
so a busy machine slows both alike. Prints the median time of each and the ratio torch / tricksref (above 1:
ours is faster), for forward plus backward and for the forward alone (under no_grad).

    python benchmarks/bench_lrn.py [--reps 40] [--threads N] [--shape 64 96 27 27] [--size 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from tricksref.lrn import local_response_norm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=40, help="timed repetitions of each case (default 40)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--shape", type=int, nargs="+", default=[64, 96, 27, 27], help="(N, C, *)")
    ap.add_argument("--size", type=int, default=5, help="the LRN window n")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    gen = torch.Generator().manual_seed(0)
    dtype = getattr(torch, args.dtype)
    x = torch.randn(*args.shape, generator=gen, dtype=dtype).requires_grad_()
    g = torch.randn(*args.shape, generator=gen, dtype=dtype)
    ops = {"torch": lambda t: F.local_response_norm(t, args.size),
           "tricksref": lambda t: local_response_norm(t, args.size)}

    def fwd_bwd(fn):
        x.grad = None
        fn(x).backward(g)

    def fwd(fn):
        with torch.no_grad():
            fn(x)

    cases = {"fwd+bwd": fwd_bwd, "fwd": fwd}
    times = {(c, o): [] for c in cases for o in ops}
    for rep in range(-3, args.reps):  # three untimed rounds first: the allocator's first big blocks fault in
        for c, run in cases.items():
            for o in sorted(ops, reverse=rep % 2 == 1):
                t0 = time.perf_counter()
                run(ops[o])
                if rep >= 0:
                    times[(c, o)].append(time.perf_counter() - t0)

    print(f"LRN on {tuple(args.shape)} {args.dtype}, size {args.size}: {args.reps} interleaved repetitions, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    for c in cases:
        ms = {o: statistics.median(times[(c, o)]) * 1e3 for o in ops}
        print(f"  {c:8s} median torch {ms['torch']:8.2f} ms   tricksref {ms['tricksref']:8.2f} ms   "
              f"ratio {ms['torch'] / ms['tricksref']:5.2f}x")


if __name__ == "__main__":
    main()
