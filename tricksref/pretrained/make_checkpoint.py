"""Train the shipped checkpoint ``alexnet_digits0to7``: the source task of the pre-training chapter.

    python -m tricksref.pretrained.make_checkpoint            # writes alexnet_digits0to7.pt and .json here
    python -m tricksref.pretrained.make_checkpoint --quick --out /tmp/ckpt   # a seconds-long version

The source task: scikit-learn's digits 0 to 7 (digit d is class d), upsampled to 32x32, the stratified
train/test split of ``tricksref.data.load_digits`` with seed 0. The model: ``AlexNetSmall`` with 8 outputs,
batch normalization, LRN and dropout 0.5. Training: Adam (lr 1e-3, cosine decay per iteration to 0),
mini-batches of 64, no augmentation (``--shift 2`` adds random shifts: measured, they did not change
how well the features transfer to 8 vs 9 beyond the noise of 5 seeds, and cost 1.7 points of source
accuracy in 12 epochs), seeded. The recorded accuracy is measured on the model as
:func:`tricksref.finetune.load_pretrained` builds it, with tricksref's layers. The state_dict is stored in
float32 with ``torch.save``; the JSON beside it records how it was made.

Reproducible bit for bit on any x86-64 CPU, whatever its vector extensions (same torch version):

- Training runs on torch's own layers, ``torch.nn.BatchNorm2d``, ``torch.nn.LocalResponseNorm`` (AlexNet's
  n = 5 written in torch's arguments, alpha times 5) and ``torch.nn.Dropout``: the same math and state_dict
  keys as tricksref's, whose rounding and random stream depend on the edition of tricksref installed.
- Training amplifies rounding differences, and torch picks its kernels by CPU: ATen by its capability
  (AVX512 / AVX2 / default), oneDNN and MKL by theirs. The script therefore trains in a child process with
  :data:`REPRODUCIBLE_ENV` (ATen's portable kernels, MKL's CPU-independent mode, one thread) and oneDNN
  switched off (its convolutions choose their blocking by CPU); measured here, a CPU with AVX-512 and the
  same one restricted to AVX2 then give the same bits, and the ceilings alone did not. ``--here`` trains
  in the calling process as it is (fast, not portable).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

NAME = "alexnet_digits0to7"
SOURCE_CLASSES = tuple(range(8))
ARCH = {"num_classes": 8, "in_channels": 1, "lrn": True, "batchnorm": True, "dropout": 0.5, "width": 16}
#: the environment a reproducible run trains in (read when torch starts: hence a child process)
REPRODUCIBLE_ENV = {
    "ATEN_CPU_CAPABILITY": "default",  # ATen's portable kernels, not the AVX2/AVX-512 ones
    "MKL_CBWR": "COMPATIBLE",  # MKL's conditional numerical reproducibility: the same code path on any CPU
    "ONEDNN_MAX_CPU_ISA": "SSE41",  # unused (oneDNN is switched off below); pinned should a path reach it
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


def random_shift(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by up to ``pad`` whole pixels each way (zero padding, a crop at a random offset)."""
    from tricksref.augment import resized_crop

    n, _, h, w = x.shape
    top, left = torch.randint(0, 2 * pad + 1, (2, n), generator=generator).to(x.device)
    return resized_crop(torch.nn.functional.pad(x, (pad,) * 4), top, left, h, w, (h, w))


def torch_layers(model: nn.Module) -> nn.Module:
    """Swap tricksref's LRN and dropout for torch's equivalents (in place): same math, and the same bits
    whichever edition of tricksref is installed. AlexNet's n = 5 is torch's size 5 with alpha times 5."""
    from tricksref.dropout import Dropout
    from tricksref.lrn import LocalResponseNorm

    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, LocalResponseNorm):
                if child.mode != "inter" or child.convention != "alexnet" or child.size % 2 == 0:
                    raise ValueError(f"{name}: expected AlexNet's inter-channel LRN with an odd size")
                setattr(parent, name, nn.LocalResponseNorm(child.size, alpha=child.alpha * child.size,
                                                           beta=child.beta, k=child.k))
            elif isinstance(child, Dropout):
                setattr(parent, name, nn.Dropout(child.p))
    return model


def reproducible() -> bool:
    """Whether this process runs with :data:`REPRODUCIBLE_ENV` (as the child process does)."""
    return all(os.environ.get(k) == v for k, v in REPRODUCIBLE_ENV.items())


def train_checkpoint(*, epochs: int = 12, seed: int = 0, batch_size: int = 64, lr: float = 1e-3,
                     shift: int = 0, limit: int | None = None) -> tuple[dict, dict]:
    """Train the source model; return ``(state_dict, record)``. ``limit`` keeps the first training images."""
    from tricksref.data import load_digits
    from tricksref.models import AlexNetSmall
    from tricksref.schedules import CosineLR
    from tricksref.train import evaluate, fit

    data = load_digits(size=32, classes=SOURCE_CLASSES, seed=0)
    x, y = data.x_train, data.y_train
    if limit is not None:
        x, y = x[:limit], y[:limit]
    torch.manual_seed(seed)
    model = torch_layers(AlexNetSmall(**ARCH, norm_layer=nn.BatchNorm2d))
    t0 = time.perf_counter()
    mkldnn = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False  # oneDNN's convolutions round differently per CPU
    try:
        hist = fit(model, (x, y), epochs=epochs, batch_size=batch_size, seed=seed, progress=False,
                   optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=lr),
                   scheduler=lambda opt, n: CosineLR(opt, T_max=n),
                   augment=(lambda xb, yb, g: (random_shift(xb, shift, g), yb)) if shift else None)
    finally:
        torch.backends.mkldnn.enabled = mkldnn
    wall = time.perf_counter() - t0
    state = {k: v.detach().to(torch.float32 if v.is_floating_point() else v.dtype).clone()
             for k, v in model.state_dict().items()}
    reloaded = AlexNetSmall(**ARCH)  # tricksref's BN, as load_pretrained builds it
    reloaded.load_state_dict(state)
    test = evaluate(reloaded, (data.x_test, data.y_test))
    train = evaluate(reloaded, (x, y))
    record = {
        "name": NAME,
        "script": "python -m tricksref.pretrained.make_checkpoint",
        "source_task": f"scikit-learn digits {SOURCE_CLASSES[0]}-{SOURCE_CLASSES[-1]} (digit d is class d), "
                       f"32x32, load_digits(size=32, classes=range(8), seed=0)",
        "architecture": {"class": "AlexNetSmall", "kwargs": ARCH},
        "seed": seed, "epochs": epochs, "batch_size": batch_size,
        "optimizer": f"Adam(lr={lr}), CosineLR per iteration to 0",
        "augmentation": f"random shifts of up to {shift} pixels" if shift else "none",
        "num_train": len(y), "num_test": len(data.y_test),
        "source_train_acc": train.accuracy, "source_test_acc": test.accuracy, "source_test_loss": test.loss,
        "train_loss_per_epoch": hist.train_loss,
        "training_layers": "torch.nn.BatchNorm2d, torch.nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, "
                           "k=2.0), torch.nn.Dropout(0.5); oneDNN off",
        "threads": torch.get_num_threads(), "wall_time_s": round(wall, 1),
        "torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "environment": {k: os.environ.get(k) for k in REPRODUCIBLE_ENV},
        "reproducible_on": (f"any x86-64 CPU whatever its vector extensions (AVX2, AVX-512 or neither), bit "
                            f"for bit, with torch {torch.__version__} and this script's environment "
                            f"(python -m tricksref.pretrained.make_checkpoint sets it)" if reproducible()
                            else "only this machine and torch version (--here: the CPU's own kernels)"),
    }
    return state, record


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m tricksref.pretrained.make_checkpoint", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(Path(__file__).parent), help="folder for NAME.pt and NAME.json")
    p.add_argument("--quick", action="store_true", help="1 epoch on 128 images (a determinism check)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: reproducible)")
    p.add_argument("--here", action="store_true",
                   help="train in this process as it is, not in a child with REPRODUCIBLE_ENV (not portable)")
    p.add_argument("--shift", type=int, default=0,
                   help="augmentation: random shifts of up to SHIFT pixels (default 0: none)")
    args = p.parse_args(argv)
    if not args.here and not reproducible():
        # torch reads these when it starts: train in a child that has them, and return its record
        argv = list(sys.argv[1:] if argv is None else argv)
        subprocess.run([sys.executable, "-m", "tricksref.pretrained.make_checkpoint", *argv],
                       env={**os.environ, **REPRODUCIBLE_ENV}, check=True)
        return json.loads((Path(args.out) / f"{NAME}.json").read_text())
    if args.threads != 1 and not args.here:
        p.error("--threads: a reproducible run trains on 1 thread; add --here for more")
    torch.set_num_threads(args.threads)
    epochs, limit = (1, 128) if args.quick else (args.epochs, None)
    state, record = train_checkpoint(epochs=epochs, seed=args.seed, shift=args.shift, limit=limit)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pt = out / f"{NAME}.pt"
    torch.save(state, pt)
    record["sha256"] = hashlib.sha256(pt.read_bytes()).hexdigest()
    record["size_bytes"] = pt.stat().st_size
    (out / f"{NAME}.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {pt} ({record['size_bytes'] / 1024:.0f} KiB): source test accuracy "
          f"{record['source_test_acc']:.4f} on {record['num_test']} images, {record['wall_time_s']} s")
    return record


if __name__ == "__main__":
    main(sys.argv[1:])
