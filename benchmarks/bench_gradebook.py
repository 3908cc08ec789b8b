"""Course mode's gradebook: SQLite against PostgreSQL, and one grader against two shards of one gradebook.

What it measures, in one run on one machine: the scratch course of ``bench_grader.py`` (``--notebooks``
submissions of the course's own assignments, solutions filled in), graded by ``python -m grader grade
--course`` into

- nbgrader's default SQLite gradebook, one process, ``--jobs 2`` (the baseline);
- a PostgreSQL gradebook (a throwaway cluster of ``tests/pg_cluster.py``: Debian's server, a Unix socket),
  one process, ``--jobs 2``: what the server costs against a local file;
- the same PostgreSQL gradebook split between two graders at once (``--shard 0/2`` and ``--shard 1/2``, each
  ``--jobs 1``): what N machines do, here squeezed onto this machine's cores.

Each round grades a fresh copy of the course into a fresh database (``CREATE DATABASE ... TEMPLATE``), the
three in turn; it prints seconds per notebook (medians over the rounds, each process's start and imports
included), the ratios against the baseline, and whether every path gave every student the same score (their
CSVs). On one machine two shards are slower than one grader with ``--jobs 2``: each grader pays its own start
(fork server, imports, the suites' reference cases) on the same cores. ``--shard`` is for more machines, each
with its own cores, which one machine cannot show; what this shows is that the split loses and doubles no row.

A run on the project's 2-core machine (24 notebooks, 2 rounds, medians, shared with other work): SQLite 0.509
s/notebook, PostgreSQL 0.619 (1.22x), two PostgreSQL shards 1.003 (1.97x); the same scores on every path.

    python benchmarks/bench_gradebook.py                   # 24 notebooks, 1 round
    python benchmarks/bench_gradebook.py --rounds 3        # medians over 3 rounds
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT / "tests")]
from bench_grader import make_course  # noqa: E402 (the same scratch course as the grader's benchmark)
from pg_cluster import cluster  # noqa: E402

GRADE = [sys.executable, "-m", "grader", "grade", "--quiet", "--course"]


def _run(cmd) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait(procs) -> None:
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"failed ({p.returncode}): {' '.join(p.args)}\n{err[-4000:]}")


def timed(*commands) -> float:
    """Wall seconds for ``commands`` run at once (all of them must succeed)."""
    t = time.perf_counter()
    _wait([_run(c) for c in commands])
    return time.perf_counter() - t


def scores(course: Path) -> dict[str, float]:
    """Each student's score, from the course's CSV files (one, or one per shard)."""
    out = {}
    for table in sorted(course.glob("grader.grades*.csv")):
        with open(table, newline="") as f:
            for row in csv.DictReader(f):
                if row["student"] in out:
                    raise SystemExit(f"{row['student']} is in two CSV files of {course}")
                out[row["student"]] = float(row["score"])
    return out


def copy_course(base: Path, dest: Path, db_url: str | None) -> Path:
    shutil.copytree(base, dest)
    if db_url:
        with open(dest / "nbgrader_config.py", "a") as f:
            f.write(f"c.CourseDirectory.db_url = {db_url!r}\n")
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--notebooks", type=int, default=24, help="submitted notebooks (default 24)")
    ap.add_argument("--rounds", type=int, default=1, help="rounds of the three (default 1)")
    args = ap.parse_args()
    if args.notebooks < 2 or args.rounds < 1:
        raise SystemExit("--notebooks must be at least 2 and --rounds at least 1")
    # nbgrader runs `alembic` by name when it creates a gradebook
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    with tempfile.TemporaryDirectory(prefix="bench-gradebook-") as tmp, cluster() as pg:
        tmp = Path(tmp)
        t = time.perf_counter()
        lite_base = tmp / "lite"
        lite_base.mkdir()
        make_course(lite_base, args.notebooks)
        # the same course with nbgrader's own gradebook on PostgreSQL: generate_assignment writes into the
        # template database, which every round copies
        template = pg.create_database("template_course")
        setting = tmp / "pg-config"
        setting.mkdir()
        (setting / "nbgrader_config.py").write_text(f"c = get_config()\nc.CourseDirectory.db_url = "
                                                    f"{template!r}\n")
        pg_base = tmp / "pg"
        pg_base.mkdir()
        with mock.patch.dict(os.environ, {"JUPYTER_CONFIG_PATH": str(setting)}):
            make_course(pg_base, args.notebooks)
        print(f"# setup: {args.notebooks} notebooks, {time.perf_counter() - t:.0f} s", flush=True)

        seconds = {"sqlite, 1 grader --jobs 2": [], "postgresql, 1 grader --jobs 2": [],
                   "postgresql, 2 shards --jobs 1 each": []}
        results = {}
        for r in range(args.rounds):
            lite = copy_course(lite_base, tmp / f"lite{r}", None)
            seconds["sqlite, 1 grader --jobs 2"].append(timed([*GRADE, str(lite), "--jobs", "2"]))
            results[f"sqlite {r}"] = scores(lite)

            for name, shards in (("postgresql, 1 grader --jobs 2", 0),
                                 ("postgresql, 2 shards --jobs 1 each", 2)):
                database = f"r{r}_{shards}"
                course = copy_course(pg_base, tmp / database,
                                     pg.create_database(database, template="template_course"))
                if shards:
                    cmds = [[*GRADE, str(course), "--jobs", "1", "--shard", f"{k}/{shards}"]
                            for k in range(shards)]
                else:
                    cmds = [[*GRADE, str(course), "--jobs", "2"]]
                seconds[name].append(timed(*cmds))
                results[f"{name} {r}"] = scores(course)
            print(f"# round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in seconds.items()),
                  flush=True)

    reference = results["sqlite 0"]
    same = all(s == reference for s in results.values()) and len(reference) == args.notebooks
    base = statistics.median(seconds["sqlite, 1 grader --jobs 2"])
    machine = platform.processor() or platform.machine()
    print(f"\n{args.notebooks} notebooks, {args.rounds} round(s), {machine}, {os.cpu_count()} CPUs; medians; "
          f"ratio = time / SQLite's")
    print(f"{'':38s} {'s/notebook':>10s} {'ratio':>6s}")
    for name, values in seconds.items():
        m = statistics.median(values)
        print(f"{name:38s} {m / args.notebooks:10.3f} {m / base:6.2f}")
    print(f"same score for every student on every path: {'yes' if same else 'NO'} "
          f"({sum(reference.values()):g} points over {len(reference)} notebooks)")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
