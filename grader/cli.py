"""``python -m grader``: grade notebooks in the sandbox, alone or a whole nbgrader course.

::

    python -m grader grade NOTEBOOK... [--json] [--jobs N] [--csv FILE]
    python -m grader grade --course DIR [--assignment NAME] [--student ID] [--force] [--csv FILE]
    python -m grader bundle ...          (the student bundle, see grader.bundle)

``grade --json`` prints one JSON object per notebook, in the order given, with exactly the keys of DESIGN.md:
``{"notebook", "assignment", "score", "max_score", "tests": [{"name", "points", "max_points", "passed",
"message"}], "error"}``. It exits 0 whenever it could grade, whatever the students scored (a notebook that is
not JSON, has no cells or does not compile is graded: 0 points and a message); 1 when the grader itself
failed on some notebook; 2 on a usage error.

The student's code never runs in this process: each notebook's graded cells run in a sandbox forked from one
fork server per call (see ``grader.sandbox``), and this process compares what comes back with the reference.
The student's stdout and stderr are captured there and never printed here (``--with-output`` adds them, cut
and escaped, as an extra ``"output"`` key).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["main", "NotebookResult", "Grader"]


@dataclasses.dataclass
class NotebookResult:
    """One graded notebook. ``to_json()`` gives exactly DESIGN.md's keys (plus ``output`` when asked)."""

    notebook: str
    assignment: str | None
    score: float
    max_score: float
    tests: list[dict]
    error: str | None
    output: str = ""               #: the student's captured stdout+stderr (cut, escaped)
    seconds: float = 0.0
    internal_error: bool = False   #: the grader itself failed (not the student's fault)

    def to_json(self, with_output: bool = False) -> dict[str, Any]:
        d = {"notebook": self.notebook, "assignment": self.assignment, "score": self.score,
             "max_score": self.max_score, "tests": self.tests, "error": self.error}
        if with_output:
            d["output"] = self.output
        return d


class _Unreadable:
    """A submission whose every probe fails with the same message (unreadable notebook, no graded cells)."""

    def __init__(self, kind: str, message: str):
        self.kind, self.message = kind, message

    def run(self, probe: str, /, **inputs):
        from .submission import StudentError
        raise StudentError(self.kind, self.message)

    def close(self):
        pass


def _join(parts: Iterable[str | None]) -> str | None:
    parts = [p for p in parts if p]
    return "; ".join(parts) if parts else None


class Grader:
    """Grades notebooks with one fork server; thread-safe (``--jobs`` threads share it).

    Args:
        suites: the suite runner, ``grader.suite`` by default (tests pass a module-like object with
            ``ASSIGNMENTS``, ``max_score(a)``, ``run_suite(a, sub)`` and optionally ``prepare(a)``).
        limits: ``grader.sandbox.Limits`` for every submission.
        server: a started ``ForkServer`` (default: one is started now, and closed by ``close``).
        keep_output: keep each student's captured output in the result (waits for the sandbox to end).
    """

    def __init__(self, *, suites=None, limits=None, server=None, isolation: str = "auto",
                 extra_probes: dict[str, str] | None = None, keep_output: bool = False):
        from .sandbox import ForkServer, Limits
        # the fork server first: it imports torch in its own process while this one imports the suites
        self._own_server = server is None
        self.server = server or ForkServer(isolation=isolation, extra_probes=extra_probes)
        if suites is None:
            from . import suite as suites
        self.suites = suites
        self.limits = limits or Limits()
        self.keep_output = keep_output
        self._prepared: set[str] = set()

    def prepare(self, assignments: Iterable[str]) -> None:
        """Draw each suite's cases and references once, before the worker threads start."""
        for a in assignments:
            if a in self.suites.ASSIGNMENTS and a not in self._prepared:
                if callable(getattr(self.suites, "prepare", None)):
                    self.suites.prepare(a)
                self._prepared.add(a)
        self.server.ready()

    def assignment_for(self, path: str, hint: str | None = None) -> str | None:
        from .notebook import NotebookError, assignment_of, read
        if hint:
            return hint
        try:
            nb = read(path)
        except NotebookError:
            nb = None
        return assignment_of(nb, path, self.suites.ASSIGNMENTS)

    def grade(self, path: str, assignment: str | None = None, *, label: str | None = None) -> NotebookResult:
        """Grade one notebook; never raises (a grader failure is reported in the result)."""
        t0 = time.monotonic()
        label = label if label is not None else str(path)
        try:
            result = self._grade(path, assignment, label)
        except Exception as exc:  # noqa: BLE001 - our bug: report it, keep grading the class
            result = NotebookResult(label, assignment, 0.0, 0.0, [], f"internal grader error (not the "
                                    f"student's fault): {type(exc).__name__}: {exc}", internal_error=True)
        result.seconds = time.monotonic() - t0
        return result

    def _grade(self, path: str, assignment: str | None, label: str) -> NotebookResult:
        from .notebook import NotebookError, assignment_of, graded_cells, read
        from .sandbox import escape_output
        problem = None
        nb = None
        try:
            nb = read(path)
        except NotebookError as exc:
            problem = str(exc)
        known = self.suites.ASSIGNMENTS
        if assignment is None:
            assignment = assignment_of(nb, path, known)
        if assignment not in known:
            named = assignment_of(nb, path)
            return NotebookResult(label, named, 0.0, 0.0, [], _join([problem, (
                f"cannot tell which assignment this notebook is: name it after one of "
                f"{', '.join(known)} (e.g. {known[0]}.ipynb), or pass --assignment")]))
        self.prepare([assignment])
        max_score = float(self.suites.max_score(assignment))
        cells = graded_cells(nb) if nb is not None else []
        if problem is None and not cells:
            problem = ("the notebook has no graded cells (no nbgrader solution cells): submit the "
                       "assignment's notebook with its cell metadata intact")
        notes: list[str | None] = []
        output = ""
        if problem is not None:
            sub = _Unreadable("syntax", problem)
            results = self.suites.run_suite(assignment, sub)
            notes.append(problem)
        else:
            sub = self.server.open(assignment, cells, self.limits)
            try:
                results = self.suites.run_suite(assignment, sub)
            finally:
                sub.close()
            if sub.load_errors:
                notes.append("; ".join(escape_output(e) for e in sub.load_errors))
            if sub.fatal is not None:
                notes.append(escape_output(sub.fatal.message))
            notes.extend(self._scan(assignment, cells))
            if self.keep_output:
                output = sub.output
        tests = [r.to_json() for r in results]
        score = round(sum(float(t["points"]) for t in tests), 3)
        return NotebookResult(label, assignment, score, max_score, tests, _join(notes), output=output)

    @staticmethod
    def _scan(assignment: str, cells) -> list[str]:
        try:
            from .guards import scan
        except ImportError:
            return []
        source = "\n".join(src for _, src in cells)
        try:
            found = scan(assignment, source)
        except Exception:  # noqa: BLE001 - the static scan is advice, never a reason to fail grading
            return []
        return [f"off-limits: {f}" for f in found[:5]]

    def close(self) -> None:
        if self._own_server:
            self.server.close()


def grade_in_order(items: list, work: Callable[[Any], NotebookResult], jobs: int) -> Iterator[NotebookResult]:
    """Run ``work`` on ``items`` with ``jobs`` threads; yield the results in the items' order."""
    if jobs <= 1:
        for it in items:
            yield work(it)
        return
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="grader") as pool:
        pending: deque = deque()
        it = iter(items)
        for x in it:  # a small window: memory stays flat over a class of thousands
            pending.append(pool.submit(work, x))
            if len(pending) >= 2 * jobs:
                break
        while pending:
            yield pending.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(work, nxt))


def _human(r: NotebookResult, with_output: bool) -> str:
    from .sandbox import escape_output
    lines = [f"{r.notebook}: {r.assignment or '?'} {r.score:g}/{r.max_score:g}"]
    for t in r.tests:
        if not t["passed"]:
            msg = escape_output(str(t["message"])).replace("\n", "\n      ")
            lines.append(f"  {float(t['points']):g}/{float(t['max_points']):g} {t['name']}: {msg}")
    if r.error:
        lines.append("  error: " + escape_output(r.error).replace("\n", "\n      "))
    if with_output and r.output:
        lines.append("  student output:\n    | " + r.output.replace("\n", "\n    | "))
    return "\n".join(lines)


_CSV_FIELDS = ["notebook", "assignment", "score", "max_score", "error"]


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    import shutil
    # a terminal may report 0 columns and rows (a pty that nobody sized: script, some CI runners); tqdm's own
    # probe then gives -1 rows and draws nothing, so the size comes from shutil, which falls back to 100x24
    cols, rows = shutil.get_terminal_size((100, 24))
    return tqdm(total=total, file=sys.stderr, unit="nb", ncols=min(max(cols, 40), 120), nrows=max(rows, 2),
                desc="grading")


def emit(out, line: str, bar=None) -> None:
    """Write one result line to ``out``; with a progress bar on the terminal, clear the bar first and draw it
    again below the line, so that lines and bar never run into each other."""
    if bar is None:
        out.write(line + "\n")
        out.flush()
        return
    with bar.external_write_mode(file=out):
        out.write(line + "\n")
        out.flush()


def _limits_from(args):
    from .sandbox import Limits
    kw = {"run_timeout": args.timeout, "load_timeout": args.load_timeout,
          "notebook_timeout": args.notebook_timeout}
    if args.memory:
        kw["memory_bytes"] = int(args.memory) << 20
    return Limits(**kw)


def _cmd_grade(args, *, suites=None, extra_probes=None, out=None, server=None) -> int:
    out = out or sys.stdout
    if bool(args.notebooks) == bool(args.course):
        print("grade: give notebooks, or --course DIR (not both)", file=sys.stderr)
        return 2
    if args.jobs < 1:
        print("grade: --jobs must be at least 1", file=sys.stderr)
        return 2
    show_bar = not args.quiet and sys.stderr.isatty() and not (args.json and not out.isatty())
    try:
        limits = _limits_from(args)
    except ValueError as exc:
        print(f"grade: {exc}", file=sys.stderr)
        return 2
    if args.course:
        from .gradebook import grade_course
        return grade_course(args, limits=limits, suites=suites, extra_probes=extra_probes, out=out,
                            show_bar=show_bar, server=server)
    grader = Grader(suites=suites, limits=limits, isolation=args.isolation, extra_probes=extra_probes,
                    server=server, keep_output=args.with_output)
    failed = False
    csv_file = writer = None
    try:
        paths = [str(p) for p in args.notebooks]
        grader.prepare({a for p in paths if (a := grader.assignment_for(p, args.assignment))})
        if args.csv:
            csv_file = open(args.csv, "w", newline="")
            writer = csv.DictWriter(csv_file, fieldnames=_CSV_FIELDS)
            writer.writeheader()
        bar = _progress(len(paths), show_bar)
        for r in grade_in_order(paths, lambda p: grader.grade(p, args.assignment), args.jobs):
            failed |= r.internal_error
            line = json.dumps(r.to_json(args.with_output)) if args.json else _human(r, args.with_output)
            emit(out, line, bar)
            if writer:
                writer.writerow({k: r.to_json()[k] for k in _CSV_FIELDS})
                csv_file.flush()
            if bar:
                bar.update(1)
        if bar:
            bar.close()
    finally:
        if csv_file:
            csv_file.close()
        grader.close()
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m grader", description="Grade the course's assignments.")
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("grade", help="grade notebooks (or an nbgrader course) in the sandbox",
                       description="Grade notebooks in a sandbox; scores come only from the grader's suites.")
    g.add_argument("notebooks", nargs="*", help="notebook files to grade")
    g.add_argument("--json", action="store_true", help="one JSON object per notebook (DESIGN.md's keys)")
    g.add_argument("--jobs", type=int, default=2, help="notebooks graded at a time (default 2)")
    g.add_argument("--csv", metavar="FILE", help="also write the scores to this CSV file")
    g.add_argument("--assignment", help="the assignment (default: from each notebook); with --course: "
                                        "grade only this assignment")
    g.add_argument("--course", metavar="DIR", help="an nbgrader course folder (with nbgrader_config.py): "
                                                   "grade submitted/<student>/<assignment>/*.ipynb into its "
                                                   "gradebook")
    g.add_argument("--student", help="with --course: only this student")
    g.add_argument("--force", action="store_true", help="with --course: regrade what is already graded")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument("--with-output", action="store_true",
                   help="add the student's captured stdout/stderr (cut, escaped) to each result")
    g.add_argument("--timeout", type=float, default=10.0, help="seconds per call into the student's code "
                                                               "(default 10)")
    g.add_argument("--load-timeout", type=float, default=30.0,
                   help="seconds to run a notebook's graded cells (default 30)")
    g.add_argument("--notebook-timeout", type=float, default=120.0,
                   help="seconds for everything of one notebook (default 120)")
    g.add_argument("--memory", type=int, metavar="MB", help="memory for the student's code, in MiB "
                                                             "(default 1024)")
    g.add_argument("--isolation", choices=("auto", "namespaces", "userns", "none"), default="auto",
                   help="sandbox isolation (default: the strongest the machine allows)")
    b = sub.add_parser("bundle", help="build the student bundle (see grader.bundle)", add_help=False)
    b.add_argument("rest", nargs=argparse.REMAINDER)
    return p


def main(argv: list[str] | None = None, *, suites=None, extra_probes: dict[str, str] | None = None,
         out=None, server=None) -> int:
    """Entry point. ``suites`` and ``extra_probes`` let tests grade a tiny assignment of their own, ``server``
    share one started ``ForkServer`` across calls (it is then not closed)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bundle"]:
        from . import bundle
        return int(bundle.main(argv[1:]) or 0)
    args = build_parser().parse_args(argv)
    try:
        return _cmd_grade(args, suites=suites, extra_probes=extra_probes, out=out, server=server)
    except KeyboardInterrupt:
        print("grade: interrupted (every notebook reported above is saved)", file=sys.stderr)
        return 130
