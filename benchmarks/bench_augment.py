"""Batched ColorJitter against Pillow image by image, on a (256, 3, 32, 32) batch.

The baseline is what a per-image dataset transform does: for each image, draw four factors and a random
order, then apply Pillow's ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color and a hue
shift through Pillow's 8-bit HSV conversion (torchvision's PIL kernel for adjust_hue), one image at a time,
on PIL images prepared beforehand (no tensor conversion is charged to either side). Ours is
tricksref.augment.ColorJitter(0.4, 0.4, 0.4, 0.1) called once on the whole batch, per-image factors and
orders included, on a float32 batch in [0, 1] and on a uint8 batch, with torch's default number of threads
and with one thread. All contenders run interleaved in the same rounds (in a rotating order) in one process;
the medians of wall and CPU time and the ratios Pillow / ours are printed; on the CPU both of ours, the
fused C kernel (the default) and the torch-ops fallback (TRICKSREF_NATIVE=0). Then, for reference, the
images per chunk of the batched pass (``--chunks``) and each functional op once; ``--profile`` prints where
the time of one ColorJitter call goes, by stage and by torch op (torch.profiler), one thread.

    python benchmarks/bench_augment.py [--reps 31] [--batch 256] [--size 32] [--chunks 32,64,128,256]
                                       [--profile] [--device cpu]

Speed is reported, never asserted (the issue's target: ColorJitter at least 20x faster than Pillow).

Measured on the project's 2-core machine (AMD EPYC, load average ~1), 21 rounds, medians, Pillow / ours:
one thread, the fused C kernel 28.0x on float32 and 37.8x on uint8 (2.1 ms and 1.6 ms a batch against
Pillow's 59 ms); the torch-ops path, in the same rounds, 7.5x and 7.3x. With torch's default two threads
(wall time) 31.4x and 38.2x, the torch path 8.9x and 8.4x. The torch path is what runs on CUDA, on float64
and where no C compiler is found: ~300 torch calls and ~28 passes over the batch per call, each pass at
the memory bandwidth the machine leaves it; the kernel instead takes each image through all its ops while
it sits in the L1 cache, one load and one store per image. Chunks of 64 or 128 images were the fastest for
the torch path (``--chunks``). Not measured on a GPU.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time

import numpy as np
import torch
from PIL import Image, ImageEnhance

from tricksref import augment as A
from tricksref.augment import _native, color


def torch_path(fn):
    """Run fn with the fused kernel switched off (TRICKSREF_NATIVE=0 is read at every call)."""
    os.environ[_native.ENV_SWITCH] = "0"
    try:
        return fn()
    finally:
        del os.environ[_native.ENV_SWITCH]


JITTER = dict(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
PILLOW = "Pillow, image by image (uint8)"


def pil_hue(img: Image.Image, factor: float) -> Image.Image:
    """Turn the hue in Pillow's 8-bit HSV, as torchvision's PIL adjust_hue does."""
    h, s, v = img.convert("HSV").split()
    h_np = np.array(h, dtype=np.uint8)
    h_np += np.uint8(int(factor * 255) % 256)  # wraps around: hue is an angle
    return Image.merge("HSV", (Image.fromarray(h_np, "L"), s, v)).convert("RGB")


PIL_OPS = (
    lambda img, f: ImageEnhance.Brightness(img).enhance(f),
    lambda img, f: ImageEnhance.Contrast(img).enhance(f),
    lambda img, f: ImageEnhance.Color(img).enhance(f),
    pil_hue,
)


def pil_color_jitter(images: list[Image.Image], rng: random.Random) -> list[Image.Image]:
    """The per-image dataset transform: its own factors and order for every image."""
    b, c, s, h = JITTER["brightness"], JITTER["contrast"], JITTER["saturation"], JITTER["hue"]
    out = []
    for img in images:
        factors = (rng.uniform(1 - b, 1 + b), rng.uniform(1 - c, 1 + c), rng.uniform(1 - s, 1 + s),
                   rng.uniform(-h, h))
        order = [0, 1, 2, 3]
        rng.shuffle(order)
        for op in order:
            img = PIL_OPS[op](img, factors[op])
        out.append(img)
    return out


def functional_ops(x: torch.Tensor, g: torch.Generator) -> dict:
    """Each functional op once on the batch x, with per-image factors where an op takes them."""
    batch, size = x.shape[0], x.shape[-1]
    y = torch.randint(0, 10, (batch,), generator=g).to(x.device)
    f = (0.6 + 0.8 * torch.rand(batch, generator=g)).to(x.device)
    fh = (0.2 * torch.rand(batch, generator=g) - 0.1).to(x.device)
    gen = torch.Generator().manual_seed(2)
    crop = max(1, size * 3 // 4)
    return {
        "hflip": lambda: A.hflip(x),
        "vflip": lambda: A.vflip(x),
        "random_hflip": lambda: A.random_hflip(x, generator=gen),
        f"resized_crop (one box, {crop} -> {size})": lambda: A.resized_crop(x, 2, 2, crop, crop, size),
        "random_resized_crop (a box per image)": lambda: A.random_resized_crop(x, size, generator=gen),
        "adjust_brightness (per-image factors)": lambda: A.adjust_brightness(x, f),
        "adjust_contrast (per-image factors)": lambda: A.adjust_contrast(x, f),
        "adjust_saturation (per-image factors)": lambda: A.adjust_saturation(x, f),
        "adjust_hue (per-image factors)": lambda: A.adjust_hue(x, fh),
        "mixup": lambda: A.mixup(x, y, 10, generator=gen),
        "cutmix": lambda: A.cutmix(x, y, 10, generator=gen),
    }


def interleaved_medians(contenders: dict, reps: int, threads: int | None = None) -> dict[str, tuple]:
    """Median (wall, CPU) seconds per call; every round runs each contender ``(fn, sync)`` once, in a
    rotating order, with torch's intra-op thread count set to ``threads`` (None: leave it).

    The CPU time (this process, all its threads) is reported beside the wall time because on a shared
    machine the wall time also counts the waits for a core that other processes hold. Thread counts are
    not mixed within one set of rounds: OpenMP workers spin for a while after a parallel op, and that
    spinning would be charged to the one-thread call that follows.
    """
    names = list(contenders)
    default_threads = torch.get_num_threads()
    torch.set_num_threads(threads or default_threads)

    def call(name):
        fn, sync = contenders[name]
        sync()
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        sync()
        return time.perf_counter() - wall, time.process_time() - cpu

    for name in names:  # warm-up: allocator, lazy imports, CUDA context
        call(name)
        call(name)
    times = {name: ([], []) for name in names}
    for rep in range(reps):
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            wall, cpu = call(name)
            times[name][0].append(wall)
            times[name][1].append(cpu)
    torch.set_num_threads(default_threads)
    return {name: (statistics.median(w), statistics.median(c)) for name, (w, c) in times.items()}


def print_table(medians: dict, batch: int) -> None:
    base_wall, base_cpu = medians[PILLOW]
    print(f"{'contender':<52} {'wall ms':>9} {'Pillow/this':>12}   {'CPU ms':>9} {'Pillow/this':>12}")
    for name, (wall, cpu) in medians.items():
        print(f"{name:<52} {wall * 1e3:>9.2f} {base_wall / wall:>11.1f}x   {cpu * 1e3:>9.2f} "
              f"{base_cpu / cpu:>11.1f}x")


def profile(x: torch.Tensor, jitter: A.ColorJitter, calls: int = 20, rows: int = 15) -> None:
    """Where one ColorJitter call spends its CPU time, one thread: by stage (the blend rounds, the hue
    slots, the rest: drawing, sorting, loading and storing), then by torch op (torch.profiler).

    The profiler's own bookkeeping inflates the first touch of fresh memory (the output), so its table
    over-weights the index_select that stores the result; the stage times are taken without it.
    """
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(3)
    spent = {"blend rounds": 0.0, "hue slots": 0.0}
    kernels = {"blend rounds": color._blend, "hue slots": color._hue}

    def timed(stage):
        def run(*args):
            start = time.process_time()
            kernels[stage](*args)
            spent[stage] += time.process_time() - start
        return run

    for _ in range(3):
        jitter(x, generator=gen)
    color._blend, color._hue = timed("blend rounds"), timed("hue slots")
    try:
        start = time.process_time()
        for _ in range(calls):
            jitter(x, generator=gen)
        total = time.process_time() - start
    finally:
        color._blend, color._hue = kernels["blend rounds"], kernels["hue slots"]
    print(f"\nColorJitter on a {x.dtype} batch {tuple(x.shape)}, one thread, CPU time per call "
          f"({calls} calls):")
    for stage, seconds in (*spent.items(), ("rest", total - sum(spent.values())), ("total", total)):
        print(f"  {stage:<14} {seconds / calls * 1e3:>7.2f} ms")
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(10):
            jitter(x, generator=gen)
    torch.set_num_threads(threads)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=31)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--chunks", default="32,64,128,256",
                        help="images per chunk of the batched pass to compare (comma-separated; '' for none)")
    parser.add_argument("--profile", action="store_true", help="print a torch.profiler table of ColorJitter")
    parser.add_argument("--device", action="append", default=None,
                        help="cpu, cuda (repeatable; default: cpu, and cuda when there is one)")
    args = parser.parse_args()
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    for d in devices:
        if torch.device(d).type == "cuda" and not torch.cuda.is_available():
            parser.error(f"--device {d}: no CUDA device is available to this torch ({torch.__version__}, "
                         f"built with CUDA {torch.version.cuda})")
    default_threads = torch.get_num_threads()

    print(f"# bench_augment: torch {torch.__version__}, Pillow {Image.__version__}, Python "
          f"{platform.python_version()}, {os.cpu_count()} CPUs, torch threads {default_threads} by default, "
          f"load average {os.getloadavg()[0]:.1f}")
    for d in devices:
        if d.startswith("cuda"):
            print(f"# {d}: {torch.cuda.get_device_name(torch.device(d))}")
    batch, size = args.batch, args.size
    print(f"# batch ({batch}, 3, {size}, {size}), ColorJitter{tuple(JITTER.values())}, "
          f"{args.reps} interleaved rounds, medians\n")

    g = torch.Generator().manual_seed(0)
    x_u8 = torch.randint(0, 256, (batch, 3, size, size), generator=g, dtype=torch.uint8)
    images = [Image.fromarray(x_u8[i].permute(1, 2, 0).numpy()) for i in range(batch)]
    rng = random.Random(0)
    jitter = A.ColorJitter(**JITTER)
    no_sync = lambda: None  # noqa: E731
    batches = {}

    for d in devices:
        for name in ("float32", "uint8"):
            batches[(d, name)] = (x_u8.float() / 255 if name == "float32" else x_u8).to(d)
    settings = [("1 thread", 1)]
    if default_threads > 1:
        settings.append((f"torch's default, {default_threads}", None))
    for label, threads in settings:
        contenders = {PILLOW: (lambda: pil_color_jitter(images, rng), no_sync)}
        for (d, name), x in batches.items():
            sync = (lambda d=d: torch.cuda.synchronize(d)) if d.startswith("cuda") else no_sync
            gen = torch.Generator().manual_seed(1)
            path = "fused C kernel" if d == "cpu" and _native.available(x) else "torch ops"
            contenders[f"ColorJitter, {d} {name}, {path}"] = (
                lambda x=x, gen=gen: jitter(x, generator=gen), sync)
            if path != "torch ops":  # the fallback, in the same rounds
                gen = torch.Generator().manual_seed(1)
                contenders[f"ColorJitter, {d} {name}, torch ops"] = (
                    lambda x=x, gen=gen: torch_path(lambda: jitter(x, generator=gen)), sync)
        print(f"torch intra-op threads: {label}")
        print_table(interleaved_medians(contenders, args.reps, threads), batch)
        print()
    print("(wall: median wall-clock time; CPU: median CPU time of this process, all threads; on CUDA the "
          "CPU time is the host's share only)")

    chunks = [int(c) for c in args.chunks.split(",") if c]
    if chunks:
        # the same draws for every chunk size: the pass itself, color_jitter's core, on fixed parameters
        params = jitter.get_params(batch, torch.Generator().manual_seed(1))
        contenders = {PILLOW: (lambda: pil_color_jitter(images, rng), no_sync)}
        for (d, name), x in batches.items():
            if d != "cpu":
                continue
            for n in chunks:
                contenders[f"batched pass, {name}, chunks of {n} images"] = (
                    lambda x=x, n=n: color._jitter(x, params.order, *params[1:], chunk=n), no_sync)
        print(f"\nimages per chunk of the batched pass (default: {color._CHUNK_ELEMENTS} elements, "
              f"{min(batch, color._CHUNK_ELEMENTS // (3 * size * size))} images here), "
              f"1 thread, {args.reps} interleaved rounds:")
        print_table(interleaved_medians(contenders, args.reps, 1), batch)

    for d in devices:
        dev = torch.device(d)
        sync = (lambda dev=dev: torch.cuda.synchronize(dev)) if dev.type == "cuda" else no_sync
        ops = functional_ops((x_u8.float() / 255).to(dev), g)
        op_medians = interleaved_medians({k: (fn, sync) for k, fn in ops.items()}, max(5, args.reps // 2), 1)
        print(f"\nfunctional ops on {d}, float32 batch ({batch}, 3, {size}, {size}), 1 thread, medians, "
              f"for reference:")
        for name, (wall, cpu) in op_medians.items():
            print(f"  {name:<42} {wall * 1e3:>9.3f} ms wall {cpu * 1e3:>9.3f} ms CPU")

    if args.profile:
        for name in ("float32", "uint8"):
            profile(batches[("cpu", name)], jitter)


if __name__ == "__main__":
    main()
