"""What the chapters share: the machine they ran on, runs over seeds in parallel, a small CNN, the spread.

Chapters import it as ``import chapter_tools as ct`` (Jupyter Book executes each chapter in ``book/``).
One convention for every number a chapter reports over seeds: the mean and the *sample* standard deviation
(``ddof=1``), written ``mean ± sd``, with the seeds' own values beside it where there are few of them.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

__all__ = ["cpu_model", "machine", "run_parallel", "small_cnn", "ChapterClock", "mean_sd", "fmt_mean_sd",
           "paired_differences"]


def cpu_model() -> str:
    """The CPU's name, from /proc/cpuinfo where there is one."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """The CPU's name and how many cores it has, for a chapter's evidence line."""
    return (f"{cpu_model()}, {os.cpu_count()} logical cores, {torch.get_num_threads()} torch thread(s) per "
            f"process")


def run_parallel(fn: Callable, tasks: Sequence, workers: int | None = None) -> list:
    """``fn(task)`` for each task, in forked processes (one per core, at most 2); results in the tasks' order.

    Tiny models train faster as two single-threaded processes than as one process with two threads.
    """
    workers = workers or min(2, os.cpu_count() or 1)
    if workers == 1 or len(tasks) <= 1:
        return [fn(t) for t in tasks]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        return pool.map(fn, tasks, chunksize=1)


def small_cnn(seed: int, num_classes: int = 10) -> nn.Sequential:
    """Two conv blocks and two linear layers for 16x16 one-channel digits (``load_digits(size=16)``),
    initialised from ``seed``."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),     # (N, 8, 8, 8)
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),    # (N, 16, 4, 4)
        nn.Flatten(), nn.Linear(16 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, num_classes))


class ChapterClock:
    """Wall and CPU time since the chapter started, for its closing evidence line."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def report(self) -> str:
        wall, cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
        return f"this chapter ran in {wall:.1f} s wall, {cpu:.1f} s CPU (this process), on {machine()}"


def mean_sd(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1; 0.0 for a single value)."""
    v = [float(x) for x in values]
    if not v:
        raise ValueError("values: expected at least one number, got none")
    return statistics.fmean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)


def fmt_mean_sd(values: Iterable[float], digits: int = 1, scale: float = 1.0) -> str:
    """``"91.1 ± 1.7"``: the mean and sample standard deviation of ``values * scale``."""
    m, s = mean_sd(float(x) * scale for x in values)
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def paired_differences(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """``a[i] - b[i]`` for runs paired by seed (the same data, initialisation and order in both)."""
    if len(a) != len(b):
        raise ValueError(f"a, b: expected runs paired by seed (the same length), got {len(a)} and {len(b)}")
    return [float(x) - float(y) for x, y in zip(a, b, strict=True)]


def glue(name: str, value, display: bool = False) -> None:
    """Store ``value`` for the page's ``{glue:text}`name``` roles: what ``myst_nb.glue`` writes.

    The same output as ``myst_nb.glue(name, value, display)``, without importing ``myst_nb``: its import
    pulls in nbformat and jsonschema, about a second of every chapter's execution. NumPy and 0-d torch
    scalars are stored as Python numbers, so that a format spec (``name:.1f``) applies to them
    (``np.float64(0.5)``, their text form, is not a number to the role). ``tests/test_chapter_glue.py``
    checks that the two functions write the same output.
    """
    from IPython.core.formatters import format_display_data
    from IPython.display import display as ipy_display

    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        value = value.item()
    bundle, metadata = format_display_data(value)
    prefix = "" if display else "application/papermill.record/"
    metadata["scrapbook"] = {"name": name, "mime_prefix": prefix}
    ipy_display({prefix + k: v for k, v in bundle.items()}, raw=True, metadata=metadata)


def paired_interval(a: Sequence[float], b: Sequence[float],
                    level: float = 0.95) -> tuple[float, float, float]:
    """The mean of the paired differences ``a[i] - b[i]`` and its two-sided Student-t interval at ``level``.

    ``(mean, low, high)`` with ``mean -+ t_{(1+level)/2, n-1} * sd / sqrt(n)``, sd the sample standard
    deviation (ddof = 1) of the n differences: an interval that excludes 0 is what a chapter may call a
    difference "beyond the noise" of its seeds.
    """
    if not 0 < level < 1:
        raise ValueError(f"level: expected a value in (0, 1), got {level!r}")
    d = paired_differences(a, b)
    if len(d) < 2:
        raise ValueError(f"a, b: expected at least two paired runs for an interval, got {len(d)}")
    from scipy.special import stdtrit  # the t quantile; scipy.stats would cost a second to import

    m, s = mean_sd(d)
    half = float(stdtrit(len(d) - 1, (1 + level) / 2)) * s / len(d) ** 0.5
    return m, m - half, m + half


def fmt_seeds(values: Iterable[float], digits: int = 1, scale: float = 1.0, sign: bool = False) -> str:
    """``"+0.7, -1.3, +1.1"``: each seed's value times ``scale``, for the text beside a mean ± sd.

    ``sign=True`` writes the sign of every value, as paired differences read best.
    """
    spec = f"{'+' if sign else ''}.{digits}f"
    return ", ".join(f"{float(v) * scale:{spec}}" for v in values)
