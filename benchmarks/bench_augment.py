"""Batched augmentation vs. Pillow image by image: ColorJitter on a (256, 3, 32, 32) batch.

The baseline is what a per-image dataset transform does: for each image, draw four factors and a random
order, then apply Pillow's ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color and a hue
shift through Pillow's HSV conversion (torchvision's PIL kernel for adjust_hue), one image at a time.
Ours is tricksref.augment.ColorJitter(0.4, 0.4, 0.4, 0.1) called once on the whole batch (float32 in
[0, 1], and uint8), per-image factors and orders included. The contenders are timed interleaved, in one
process, and the medians and their ratio are printed; then each functional op once, for reference.

    python benchmarks/bench_augment.py [--reps 21] [--batch 256] [--size 32] [--threads N] [--device cpu]

Speed is reported, never asserted (the issue's target: ColorJitter at least 20x faster than Pillow).

Measured on the project's 2-core machine while shared with about eight busy processes (load average 9),
31 rounds: with one torch thread (``--threads 1``) the float32 batch took 64 ms against Pillow's 246 ms
(3.8x; CPU time 23 ms against 86 ms, also 3.8x), the uint8 batch 2.6x. With torch's default two threads
on that oversubscribed machine every op waits at its OpenMP barrier for a descheduled thread, and the
batch took 2.5 s (0.1x): there, use one thread. Not yet measured on a GPU.
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

JITTER = dict(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)


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


def interleaved_medians(contenders: dict, reps: int) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds per call; every round runs each contender once, in a rotating order.

    The CPU time (this process, all its threads) is reported beside the wall time because on a shared
    machine the wall time also counts the waits for a core that other processes hold.
    """
    names = list(contenders)
    for name in names:  # warm-up: allocator, lazy imports, CUDA context
        contenders[name][0]()
        contenders[name][0]()
    times = {name: ([], []) for name in names}
    for rep in range(reps):
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            fn, sync = contenders[name]
            sync()
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            sync()
            times[name][0].append(time.perf_counter() - wall)
            times[name][1].append(time.process_time() - cpu)
    return {name: (statistics.median(w), statistics.median(c)) for name, (w, c) in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=21)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", action="append", default=None,
                        help="cpu, cuda (repeatable; default: cpu, and cuda when there is one)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])

    print(f"# bench_augment: torch {torch.__version__}, Pillow {Image.__version__}, Python "
          f"{platform.python_version()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
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

    contenders = {"Pillow, image by image (uint8)": (lambda: pil_color_jitter(images, rng), no_sync)}
    for d in devices:
        dev = torch.device(d)
        sync = (lambda dev=dev: torch.cuda.synchronize(dev)) if dev.type == "cuda" else no_sync
        for name, x in (("float32", (x_u8.float() / 255).to(dev)), ("uint8", x_u8.to(dev))):
            gen = torch.Generator().manual_seed(1)
            contenders[f"ColorJitter, batched, {d} {name}"] = (
                lambda x=x, gen=gen: jitter(x, generator=gen), sync)
    medians = interleaved_medians(contenders, args.reps)

    base_wall, base_cpu = medians["Pillow, image by image (uint8)"]
    print(f"{'contender':<36} {'wall ms':>9} {'us/image':>9} {'Pillow/this':>12}   {'CPU ms':>9} "
          f"{'Pillow/this':>12}")
    for name, (wall, cpu) in medians.items():
        print(f"{name:<36} {wall * 1e3:>9.3f} {wall / batch * 1e6:>9.2f} {base_wall / wall:>11.1f}x   "
              f"{cpu * 1e3:>9.3f} {base_cpu / cpu:>11.1f}x")
    print("(wall: median wall-clock time; CPU: median CPU time of this process, all threads; on CUDA the "
          "CPU time is the host's share only)")

    for d in devices:
        dev = torch.device(d)
        sync = (lambda dev=dev: torch.cuda.synchronize(dev)) if dev.type == "cuda" else no_sync
        ops = functional_ops((x_u8.float() / 255).to(dev), g)
        op_medians = interleaved_medians({k: (fn, sync) for k, fn in ops.items()}, max(5, args.reps // 2))
        print(f"\nfunctional ops on {d}, float32 batch ({batch}, 3, {size}, {size}), medians, for reference:")
        for name, (wall, cpu) in op_medians.items():
            print(f"  {name:<42} {wall * 1e3:>9.3f} ms wall {cpu * 1e3:>9.3f} ms CPU")


if __name__ == "__main__":
    main()
