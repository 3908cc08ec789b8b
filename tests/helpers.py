"""Small helpers that several test files share (tests/ is on sys.path when pytest runs)."""

from __future__ import annotations

import os

import torch


def random_images(batch, channels, h, w, dtype=torch.float32, seed=0, device="cpu") -> torch.Tensor:
    """A seeded batch of images: uniform in [0, 1) for float dtypes, all 256 levels for uint8."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, channels, h, w, generator=g, dtype=torch.float64)
    if dtype == torch.uint8:
        return (x * 256).floor().clamp(max=255).to(torch.uint8).to(device)
    return x.to(dtype=dtype, device=device)


def processes_with(marker: str) -> list[int]:
    """The PIDs of the live processes whose command line contains ``marker``."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(int(name))
            except OSError:
                pass
    return found


def built_kernel(native):
    """The kernel of a tricksref native module (``tricksref.augment._native``, ``tricksref.scratch._native``)
    as this process builds it: skips the test only where no C compiler exists, fails it where one does."""
    import pytest

    if native.library() is None:
        error = native.KERNEL.state["error"] or ""
        if "no C compiler found" in error:
            pytest.skip(error)
        pytest.fail(f"a C compiler is here, yet the kernel did not build: {error}")
    return native.library()
