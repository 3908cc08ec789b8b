"""Grading a class: ``python -m grader grade`` against ``nbgrader autograde``, on the same notebooks.

What it measures, in one run on one machine: a scratch nbgrader course is made from the course's own
``solutions/`` (``nbgrader generate_assignment``), with ``--notebooks`` submissions (default 40, the four
assignments in turn; each is the released notebook with the solution cells filled in, as a student hands it
in). Then, interleaved round by round, it times

- ``python -m grader grade --json --jobs 1`` and ``--jobs 2`` on all the submitted notebooks (scores only:
  the fork server's start and every import included);
- ``python -m grader grade --course DIR --jobs 2`` (course mode: nbgrader's gradebook rows and the
  autograded notebooks, what ``nbgrader autograde`` writes: the like-for-like comparison), on a fresh copy of
  the course;
- ``nbgrader autograde <assignment>`` for each assignment (a kernel per notebook; its hidden test cells run
  the same suites through ``grader.nbgrader_bridge``), on another fresh copy;

and prints seconds per notebook for each (medians over the rounds), the ratios against nbgrader, and whether
every path gave every notebook the same score. ``--memory-check`` grades ``--copies`` notebooks (default 1000)
in one call and samples the resident memory of the grader's process and its fork server (psutil, every
0.1 s): the peak must stay under 2 GB. Timings on a shared machine are noisy: compare the ratios, measured in
the same run.

    python benchmarks/bench_grader.py                      # 40 notebooks, 1 round
    python benchmarks/bench_grader.py --rounds 3           # medians over 3 rounds of each
    python benchmarks/bench_grader.py --memory-check       # + 1000 notebooks in one call
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = ("lrn", "batchnorm", "dropout", "stagewise")
GRADE = [sys.executable, "-m", "grader", "grade", "--json", "--quiet"]


def run(cmd, cwd, **kw):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(map(str, cmd))}\n{proc.stderr[-4000:]}")
    return proc


def make_course(dest: Path, n: int) -> tuple[list[str], list[Path]]:
    """The scratch course and its ``n`` submitted notebooks."""
    assignments = [a for a in ASSIGNMENTS if (ROOT / "solutions" / a / f"{a}.ipynb").exists()]
    if not assignments:
        raise SystemExit("no solutions/<assignment>/<assignment>.ipynb to benchmark with")
    (dest / "nbgrader_config.py").write_text("c = get_config()\nc.CourseDirectory.course_id = 'bench'\n")
    for a in assignments:
        (dest / "source" / a).mkdir(parents=True)
        shutil.copy(ROOT / "solutions" / a / f"{a}.ipynb", dest / "source" / a / f"{a}.ipynb")
        run([sys.executable, "-m", "nbgrader", "generate_assignment", a, "--force"], dest)
    filled = {}
    for a in assignments:
        solution = json.loads((ROOT / "solutions" / a / f"{a}.ipynb").read_text())
        answers = {c["metadata"]["nbgrader"]["grade_id"]: c["source"] for c in solution["cells"]
                   if c.get("metadata", {}).get("nbgrader", {}).get("solution")}
        released = json.loads((dest / "release" / a / f"{a}.ipynb").read_text())
        for c in released["cells"]:
            gid = c.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            if gid in answers:
                c["source"] = answers[gid]
        filled[a] = json.dumps(released)
    paths = []
    for i in range(n):
        a = assignments[i % len(assignments)]
        folder = dest / "submitted" / f"student{i:04d}" / a
        folder.mkdir(parents=True)
        (folder / "timestamp.txt").write_text("2025-03-01 12:00:00.000000 UTC")
        (folder / f"{a}.ipynb").write_text(filled[a])
        paths.append(folder / f"{a}.ipynb")
    return assignments, paths


def time_grader(paths: list[Path], jobs: int) -> tuple[float, dict]:
    cmd = [*GRADE, "--jobs", str(jobs), *map(str, paths)]
    t = time.perf_counter()
    proc = run(cmd, ROOT)
    seconds = time.perf_counter() - t
    scores = {}
    for line in proc.stdout.splitlines():
        r = json.loads(line)
        scores[Path(r["notebook"]).parts[-3]] = (r["score"], r["max_score"])
    return seconds, scores


def _gradebook_scores(course: Path, assignments: list[str]) -> dict:
    from nbgrader.api import Gradebook

    scores = {}
    with Gradebook(f"sqlite:///{course}/gradebook.db", "bench") as gb:
        for a in assignments:
            for sub in gb.assignment_submissions(a):
                scores[sub.student.id] = (round(sub.notebooks[0].score, 3), sub.notebooks[0].max_score)
    return scores


def time_nbgrader(course: Path, assignments: list[str]) -> tuple[float, dict]:
    t = time.perf_counter()
    for a in assignments:
        run([sys.executable, "-m", "nbgrader", "autograde", a, "--force"], course)
    return time.perf_counter() - t, _gradebook_scores(course, assignments)


def time_course_mode(course: Path, assignments: list[str], jobs: int) -> tuple[float, dict]:
    t = time.perf_counter()
    run([*GRADE, "--course", str(course), "--jobs", str(jobs)], ROOT)
    return time.perf_counter() - t, _gradebook_scores(course, assignments)


def memory_check(paths: list[Path], copies: int, jobs: int, tmp: Path) -> None:
    import psutil

    many = []
    for i in range(copies):
        src = paths[i % len(paths)]
        dst = tmp / "many" / f"{i:05d}" / src.name  # the file name keeps the assignment's
        dst.parent.mkdir(parents=True)
        shutil.copy(src, dst)
        many.append(dst)
    cmd = [*GRADE, "--jobs", str(jobs), *map(str, many)]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    me = psutil.Process(proc.pid)
    peak = {"grader": 0, "fork server": 0, "both": 0}
    while proc.poll() is None:
        try:
            rss = me.memory_info().rss
            servers = [c for c in me.children() if "grader.sandbox.server" in " ".join(c.cmdline())]
            srv = sum(c.memory_info().rss for c in servers)
        except psutil.Error:
            break
        peak["grader"] = max(peak["grader"], rss)
        peak["fork server"] = max(peak["fork server"], srv)
        peak["both"] = max(peak["both"], rss + srv)
        time.sleep(0.1)
    proc.wait()
    reader.join()
    seconds = time.perf_counter() - t
    full = sum(1 for line in lines if (r := json.loads(line))["score"] == r["max_score"])
    print(f"\nmemory check: {copies} notebooks in one call, --jobs {jobs}: {seconds:.1f} s "
          f"({seconds / copies:.3f} s per notebook), {full}/{len(lines)} scored full marks, "
          f"exit {proc.returncode}")
    for k, v in peak.items():
        print(f"  peak resident memory, {k:11s}: {v / 2**20:7.1f} MiB")
    verdict = "under" if peak["both"] < 2 * 2**30 else "OVER"
    print(f"  -> {verdict} the 2 GB limit")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--notebooks", type=int, default=40)
    p.add_argument("--rounds", type=int, default=1, help="rounds of nbgrader (the grader runs one more)")
    p.add_argument("--jobs", type=int, default=2, help="jobs of the memory check (default 2)")
    p.add_argument("--memory-check", action="store_true")
    p.add_argument("--copies", type=int, default=1000)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-grader-") as tmp:
        tmp = Path(tmp)
        course = tmp / "course"
        course.mkdir()
        assignments, paths = make_course(course, args.notebooks)
        import torch

        print(f"bench_grader: {args.notebooks} notebooks ({', '.join(assignments)}), "
              f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
              f"torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}")
        times: dict[str, list[float]] = {}
        scores: dict[str, dict] = {}
        for r in range(args.rounds):
            for name, jobs in (("grader --jobs 1", 1), ("grader --jobs 2", 2)):
                s, scores[name] = time_grader(paths, jobs)
                times.setdefault(name, []).append(s)
                print(f"  round {r + 1}: python -m grader grade --json --jobs {jobs}: {s:7.1f} s",
                      flush=True)
            copy = tmp / f"course-mode-{r}"
            shutil.copytree(course, copy)
            s, scores["course mode"] = time_course_mode(copy, assignments, 2)
            times.setdefault("course mode", []).append(s)
            print(f"  round {r + 1}: python -m grader grade --course --jobs 2: {s:7.1f} s", flush=True)
            copy = tmp / f"nbgrader-{r}"
            shutil.copytree(course, copy)
            s, scores["nbgrader"] = time_nbgrader(copy, assignments)
            times.setdefault("nbgrader", []).append(s)
            print(f"  round {r + 1}: nbgrader autograde:                    {s:7.1f} s", flush=True)
        n = args.notebooks
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"\nseconds per notebook (median of {args.rounds} round(s), load average now "
              f"{os.getloadavg()[0]:.1f}):")
        for k in ("grader --jobs 1", "grader --jobs 2", "course mode", "nbgrader"):
            ratio = "" if k == "nbgrader" else \
                f"   nbgrader autograde / this: {med['nbgrader'] / med[k]:.1f}x"
            print(f"  {k:16s} {med[k] / n:.3f} s{ratio}")
        print("  (like for like: course mode writes what nbgrader autograde writes, the gradebook and the "
              "autograded notebooks)")
        full = all(sc == mx for sc, mx in scores["grader --jobs 2"].values())
        same = all(scores[k] == scores["nbgrader"] for k in scores)
        print(f"  every notebook full marks with the grader: {full}; the same scores on every path: {same}")
        if not same:
            for k in scores:
                diff = {x: (scores[k].get(x), scores["nbgrader"].get(x)) for x in scores["nbgrader"]
                        if scores[k].get(x) != scores["nbgrader"].get(x)}
                if diff:
                    print(f"  {k} vs nbgrader: {dict(list(diff.items())[:10])}")
        if args.memory_check:
            memory_check(paths, args.copies, args.jobs, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
