"""Time tricksref's core ops against PyTorch's native ones, on the CPU or a CUDA device, in one process,
interleaved.

What it measures: a (64, 96, 27, 27) float32 batch (the input of AlexNet's second block), forward plus
backward and forward alone (under no_grad), for

- LRN: ``tricksref.local_response_norm(x, 5)`` (convention "torch") vs
  ``torch.nn.functional.local_response_norm``;
- dropout: ``tricksref.dropout(x, 0.5)`` vs ``torch.nn.functional.dropout`` (and p = 0.1, which takes the
  32-bit mask path);
- batch norm, training mode with gamma and beta: ``tricksref.batch_norm`` vs
  ``torch.nn.functional.batch_norm``;
- standardization with per-channel statistics: ``Standardizer(axis=(0, 2, 3)).fit_transform(x)`` vs the
  plain expression ``(x - mu) / (sig + 1e-6)`` with mu and sig from ``x.mean`` / ``x.std(correction=0)``.

How: every round runs each (case, op) pair back to back, alternating which of the two goes first, so that
load from other processes hits both alike. The table gives the median time of each over the rounds and the
median of the per-round ratios torch / ours (above 1: ours is faster), beside the targets of issue 14 on
the CPU: LRN >= 5x, dropout >= 2.5x (p = 0.5 and 0.1), batch norm >= 1x (no slower than torch's fused
kernel). On CUDA (``--device cuda``, issue 15) the same table is printed without targets; CUDA work is
timed with ``torch.cuda.synchronize()`` around each step. tricksref's edition (``tricksref.EDITION``) and
whether its C kernels run are printed in the header.

Run: ``python benchmarks/bench_core_ops.py [--reps 21] [--threads N] [--device cpu|cuda] [--only lrn ...]``;
or
``from benchmarks.bench_core_ops import main; rows = main(["--reps", "5"])``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

SHAPE = (64, 96, 27, 27)  # (N, C, H, W): AlexNet's 27x27 feature maps with 96 channels, batch 64
LRN_SIZE = 5  # AlexNet's n
EPS = 1e-6  # the lecture's standardization epsilon


@dataclass
class Case:
    """One op: a torch baseline and ours, each a closure that runs one forward (+ backward) step."""

    name: str
    torch_step: Callable[[bool], None]  # argument: with backward
    ours_step: Callable[[bool], None]
    target: float | None  # required ratio torch / ours, None for none
    note: str = ""


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _step(fn, inputs, grad_out, backward: bool) -> None:
    """One forward, and with ``backward`` one backward from ``grad_out``; grads reset first."""
    if backward:
        for t in inputs:
            t.grad = None
        fn().backward(grad_out)
    else:
        with torch.no_grad():
            fn()


def build_cases(only=None, device="cpu") -> tuple[list[Case], list[str]]:
    """The cases to time, and a line for every op that could not be loaded (e.g. a module not written yet)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(SHAPE, generator=gen).to(device).requires_grad_()
    g = torch.randn(SHAPE, generator=gen).to(device)
    cpu = device == "cpu"
    cases, missing = [], []

    def want(name):
        return only is None or name in only

    if want("lrn"):
        try:
            from tricksref.lrn import local_response_norm
        except (ImportError, AttributeError) as e:
            missing.append(f"lrn: tricksref.local_response_norm not available ({e})")
        else:
            cases.append(Case(
                f"LRN size {LRN_SIZE}",
                lambda b: _step(lambda: F.local_response_norm(x, LRN_SIZE), [x], g, b),
                lambda b: _step(lambda: local_response_norm(x, LRN_SIZE, convention="torch"), [x], g, b),
                5.0 if cpu else None))

    if want("dropout"):
        from tricksref.dropout import dropout

        def dropout_case(p, target):
            return Case(f"dropout p={p}",
                        lambda b: _step(lambda: F.dropout(x, p), [x], g, b),
                        lambda b: _step(lambda: dropout(x, p), [x], g, b),
                        target, "8-bit mask" if (p * 256).is_integer() else "32-bit mask")

        cases += [dropout_case(0.5, 2.5 if cpu else None), dropout_case(0.1, 2.5 if cpu else None)]

    if want("batchnorm"):
        try:
            from tricksref.batchnorm import batch_norm
        except (ImportError, AttributeError) as e:
            missing.append(f"batchnorm: tricksref.batch_norm not available ({e})")
        else:
            c = SHAPE[1]
            w = torch.rand(c, generator=gen).add_(0.5).to(device).requires_grad_()
            bias = torch.randn(c, generator=gen).to(device).requires_grad_()
            # each implementation updates its own running statistics in place
            stats = {k: (torch.zeros(c, device=device), torch.ones(c, device=device))
                     for k in ("torch", "ours")}
            cases.append(Case(
                "batch norm (train)",
                lambda b: _step(lambda: F.batch_norm(x, *stats["torch"], w, bias, training=True),
                                [x, w, bias], g, b),
                lambda b: _step(lambda: batch_norm(x, *stats["ours"], w, bias, training=True),
                                [x, w, bias], g, b),
                1.0 if cpu else None, "fused native kernel"))

    if want("standardize"):
        from tricksref.standardize import Standardizer

        dims = (0, 2, 3)

        def plain():
            xd = x.detach()  # statistics are data, as in Standardizer.fit
            mu = xd.mean(dim=dims, keepdim=True)
            sig = xd.std(dim=dims, correction=0, keepdim=True)
            return (x - mu) / (sig + EPS)

        cases.append(Case(
            "standardize (0,2,3)",
            lambda b: _step(plain, [x], g, b),
            lambda b: _step(lambda: Standardizer(axis=dims, eps=EPS).fit_transform(x), [x], g, b),
            None, "fit + transform"))
    return cases, missing


def time_cases(cases: list[Case], reps: int, warmup: int = 2, device: str = "cpu") -> dict:
    """{(case name, mode): (torch seconds list, ours seconds list)}, interleaved, alternating the order."""
    modes = (("fwd+bwd", True), ("fwd", False))
    times = {(c.name, m): ([], []) for c in cases for m, _ in modes}
    for r in range(warmup + reps):
        for c in cases:
            for m, backward in modes:
                pair = [(0, c.torch_step), (1, c.ours_step)]
                if r % 2:
                    pair.reverse()
                for slot, step in pair:
                    if device == "cuda":
                        torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    step(backward)
                    if device == "cuda":  # CUDA work is asynchronous: wait for it before reading the clock
                        torch.cuda.synchronize()
                    dt = time.perf_counter() - t0
                    if r >= warmup:  # the first rounds pay for page faults and lazy initialisation
                        times[(c.name, m)][slot].append(dt)
    return times


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=21, help="timed rounds per op and mode (default 21)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--only", nargs="+", choices=["lrn", "dropout", "batchnorm", "standardize"],
                    help="time only these ops")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where to time (default cpu)")
    args = ap.parse_args(argv)
    if args.reps < 1:
        ap.error("--reps: expected at least 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is available to this torch "
                 f"({torch.__version__}, built with CUDA {torch.version.cuda})")
    if args.threads:
        torch.set_num_threads(args.threads)

    cases, missing = build_cases(args.only, args.device)
    times = time_cases(cases, args.reps, device=args.device)

    import tricksref
    from tricksref._native_build import enabled

    where = (f"CPU, {torch.get_num_threads()} threads, {_cpu_name()}" if args.device == "cpu"
             else f"CUDA, {torch.cuda.get_device_name()}")
    native = "on" if enabled() and args.device == "cpu" else "off"
    print(f"tricksref core ops vs PyTorch, {where}: input {SHAPE} float32; {args.reps} interleaved rounds "
          f"(+2 warm-up); torch {torch.__version__}; tricksref edition {tricksref.EDITION}, "
          f"C kernels {native}")
    print("ratio = median over rounds of (torch time / our time), each round's pair run back to back; "
          "> 1 means ours is faster")
    header = f"{'op':22s} {'mode':8s} {'torch ms':>9s} {'ours ms':>9s} {'ratio':>7s}  {'target':>8s}  note"
    print(header)
    print("-" * len(header))
    rows = []
    for c in cases:
        for mode in ("fwd+bwd", "fwd"):
            t_torch, t_ours = times[(c.name, mode)]
            ratio = statistics.median(a / b for a, b in zip(t_torch, t_ours, strict=True))
            # the targets are stated for forward plus backward
            target = c.target if mode == "fwd+bwd" else None
            verdict = "" if target is None else ("met" if ratio >= target else "MISSED")
            row = {"op": c.name, "mode": mode, "torch_ms": statistics.median(t_torch) * 1e3,
                   "ours_ms": statistics.median(t_ours) * 1e3, "ratio": ratio, "target": target,
                   "met": None if target is None else ratio >= target, "reps": args.reps}
            rows.append(row)
            shown = f">= {target:g}x" if target is not None else ""
            print(f"{c.name:22s} {mode:8s} {row['torch_ms']:9.2f} {row['ours_ms']:9.2f} {ratio:6.2f}x  "
                  f"{shown:>8s}  {' '.join(filter(None, [verdict, c.note if mode == 'fwd+bwd' else '']))}")
    for line in missing:
        print(f"not timed: {line}")
    return rows


if __name__ == "__main__":
    main()
