"""Time the course book's build: a cold build that executes every chapter, and rebuilds through the cache.

Targets (issues 4 and 12), on the project's 2-core machine: a cold build under 10 minutes, a rebuild with
nothing changed under 30 seconds.

The repository (less .git, .venv, _build and caches) is copied to a temporary folder, so the working tree's
_build and execution cache are left alone, and `make site`'s command runs there, with the copy first on
PYTHONPATH, so that the chapters' kernels import the copy's tricksref and grader (the ones the execution
cache's key hashes), not the editable install's:

1. cold: no _build at all, so every chapter is executed (the baseline);
2. the solutions edition (`make site-solutions`) right after it: every chapter from the cache the student
   build filled, rendered again into _build/solutions/html, nothing executed;
3. warm, nothing changed: Sphinx finds nothing outdated; the issue's "cached rebuild";
4. warm, every page re-read (`--all`): each chapter is parsed and rendered again and its outputs come from
   _build/.jupyter_cache, nothing is executed; what a change to _config.yml or a template costs.

Each warm kind runs --repeats times; the script prints every time, the medians, their ratio to the cold
build of the same run, the execution time of each chapter (from the cold build's log), and the machine's
load average, since the machine is shared and absolute times are noisy.

    python benchmarks/bench_book.py [--repeats 3] [--keep]

Measured (commit 532a554, the 2-core AMD EPYC machine, shared: load average 6.4 at the start, 4.1 at the
end; 3 repeats): cold 243.8 s with the 11 chapters executed; the solutions edition right after it 7.9 s
(0.032 of cold, nothing executed); nothing changed, median 5.4 s (0.022); every page re-read, median 9.0 s
(0.037). An earlier run (commit f0f1ec5, load 3.1 to 5.3): 240.2 s, 6.5 s, 5.4 s, 12.8 s.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from site_helpers import BUILD_ARGS, build_book, build_edition, log_tail  # noqa: E402 (tests/ is not a package)

COLD_TARGET_S = 600.0
WARM_TARGET_S = 30.0
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", "_build", "__pycache__", ".pytest_cache", ".hypothesis",
                                     ".ruff_cache", "*.egg-info", ".ipynb_checkpoints")
EXECUTED = re.compile(r"(\S+\.(?:md|ipynb)): Executed notebook in ([\d.]+) seconds")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_build(root: Path, log: Path, *extra: str, edition: str = "student") -> tuple[float, float]:
    """(wall seconds, CPU seconds of the build and the kernels it waited for)."""
    paths = [str(root), os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p))
    cpu0, t0 = _children_cpu(), time.perf_counter()
    if edition == "student":
        proc = build_book(root, log, *extra, env=env)
    else:
        proc = build_edition(root, log, edition, env=env)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if proc.returncode != 0:
        sys.exit(f"the build failed (exit {proc.returncode}); the end of {log}:\n{log_tail(log)}")
    return wall, cpu


def verdict(seconds: float, target: float) -> str:
    return f"{'within' if seconds < target else 'OVER'} the {target:.0f} s target"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each warm rebuild (default 3)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy and its logs")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-book-"))
    repo = tmp / "repo"
    shutil.copytree(ROOT, repo, ignore=COPY_IGNORE, symlinks=True)
    print(f"book build benchmark: `jupyter-book {' '.join(BUILD_ARGS)}` in a copy at {repo}")
    print(f"machine: {os.cpu_count()} logical CPUs, load average {os.getloadavg()[0]:.2f} at the start")

    cold = timed_build(repo, tmp / "cold.log")
    chapters = EXECUTED.findall((tmp / "cold.log").read_text(errors="replace"))
    solutions = timed_build(repo, tmp / "solutions.log", edition="solutions")
    noop, full = [], []
    for i in range(args.repeats):  # interleaved, so drifting load hits both kinds alike
        noop.append(timed_build(repo, tmp / f"noop-{i}.log"))
        full.append(timed_build(repo, tmp / f"all-{i}.log", "--all"))
    reexecuted = [m for log in ["solutions.log"] + [f"{kind}-{i}.log" for i in range(args.repeats)
                                                     for kind in ("noop", "all")]
                  for m in EXECUTED.findall((tmp / log).read_text(errors="replace"))]

    print(f"\nchapters executed by the cold build: {len(chapters)}")
    for path, seconds in sorted(chapters, key=lambda c: -float(c[1])):
        print(f"  {float(seconds):8.1f} s  {Path(path).relative_to(repo) if path.startswith('/') else path}")
    print(f"\n{'build':<34}{'wall s':>8}{'wall runs s':>22}{'ratio to cold':>15}{'CPU s':>8}")
    print(f"{'cold (every chapter executed)':<34}{cold[0]:>8.1f}{'':>22}{1.0:>15.3f}{cold[1]:>8.1f}")
    print(f"{'solutions edition, after it':<34}{solutions[0]:>8.1f}{'':>22}{solutions[0] / cold[0]:>15.3f}"
          f"{solutions[1]:>8.1f}")
    medians = {}
    for name, runs in (("warm, nothing changed", noop), ("warm, every page re-read (--all)", full)):
        wall, cpu = (statistics.median(r[k] for r in runs) for k in (0, 1))
        medians[name] = wall
        print(f"{name:<34}{wall:>8.1f}{', '.join(f'{r[0]:.1f}' for r in runs):>22}{wall / cold[0]:>15.3f}"
              f"{cpu:>8.1f}")
    print("(wall: medians over the runs; CPU: user + system seconds of the build and its kernels, which the "
          "load of a shared machine inflates less)")
    print(f"\ncold build: {cold[0]:.1f} s, {verdict(cold[0], COLD_TARGET_S)}")
    print(f"solutions edition from the warm cache: {solutions[0]:.1f} s (one run)")
    for name, wall in medians.items():
        print(f"cached rebuild, {name[6:]}: median {wall:.1f} s, {verdict(wall, WARM_TARGET_S)}")
    if reexecuted:
        print(f"WARNING: warm rebuilds executed {len(reexecuted)} notebooks again: the cache missed "
              f"({', '.join(sorted({p for p, _ in reexecuted}))})")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")

    if args.keep:
        print(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
