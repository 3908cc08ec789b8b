"""``python -m grader``: grade notebooks in the sandbox, alone or a whole nbgrader course.

::

    python -m grader grade NOTEBOOK... [--json] [--jobs N] [--csv FILE]
    python -m grader grade --course DIR [--assignment NAME] [--student ID] [--force] [--csv FILE]
                           [--shard K/N]
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
import json
import sys

from .grading import Grader, grade_in_order
from .report import csv_cell, emit, human, progress

__all__ = ["main", "build_parser"]


def _limits_from(args):
    from .sandbox import Limits
    kw = {"run_timeout": args.timeout, "load_timeout": args.load_timeout,
          "notebook_timeout": args.notebook_timeout}
    if args.memory:
        kw["memory_bytes"] = int(args.memory) << 20
    return Limits(**kw)


_CSV_FIELDS = ["notebook", "assignment", "score", "max_score", "error"]


def _cmd_grade(args, *, suites=None, extra_probes=None, out=None, server=None) -> int:
    out = out or sys.stdout
    if bool(args.notebooks) == bool(args.course):
        print("grade: give notebooks, or --course DIR (not both)", file=sys.stderr)
        return 2
    if args.shard is not None and not args.course:
        print("grade: --shard works with --course only (it splits a course's submissions between graders)",
              file=sys.stderr)
        return 2
    if args.jobs < 1:
        print("grade: --jobs must be at least 1", file=sys.stderr)
        return 2
    show_bar = not args.quiet and sys.stderr.isatty() and not (args.json and not out.isatty())
    if args.isolation == "none" and not args.allow_unisolated:
        print("grade: --isolation none runs students' code with your rights (it can read your files and the "
              "hidden tests, and use the network); add --allow-unisolated if you really mean it",
              file=sys.stderr)
        return 2
    try:
        limits = _limits_from(args)
    except ValueError as exc:
        print(f"grade: {exc}", file=sys.stderr)
        return 2
    if args.course:
        from .gradebook import grade_course
        return grade_course(args, limits=limits, suites=suites, extra_probes=extra_probes, out=out,
                            show_bar=show_bar, server=server)
    paths = [str(p) for p in args.notebooks]
    try:
        grader = Grader(suites=suites, limits=limits, isolation=args.isolation, extra_probes=extra_probes,
                        server=server, keep_output=args.with_output)
        grader.prepare({a for p in paths if (a := grader.assignment_for(p, args.assignment))})
    except RuntimeError as exc:  # the sandbox cannot start here: nothing was graded
        print(f"grade: {exc}", file=sys.stderr)
        return 1
    failed = False
    csv_file = writer = None
    try:
        if grader.server.mode == "none":
            print("grade: WARNING: students' code runs without namespace isolation (--isolation none)",
                  file=sys.stderr)
        if args.csv:
            csv_file = open(args.csv, "w", newline="")
            writer = csv.DictWriter(csv_file, fieldnames=_CSV_FIELDS)
            writer.writeheader()
        bar = progress(len(paths), show_bar)
        for r in grade_in_order(paths, lambda p: grader.grade(p, args.assignment), args.jobs):
            if r.internal_error:
                failed = True
                print(f"grade: {r.notebook}: {r.error} (not scored; grade it again)", file=sys.stderr)
            line = json.dumps(r.to_json(args.with_output)) if args.json else human(r, args.with_output)
            emit(out, line, bar)
            if writer:
                writer.writerow({k: csv_cell(r.to_json()[k]) for k in _CSV_FIELDS})
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
    g.add_argument("--shard", metavar="K/N",
                   help="with --course: grade only shard K of N (K = 0 .. N-1; a stable hash of student and "
                        "assignment), so N graders share one (PostgreSQL) gradebook; the CSV gets the suffix "
                        ".shard-K-of-N")
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
                   help="sandbox isolation (default auto: namespaces as root, else a user namespace; the "
                        "grader refuses to run when neither is possible)")
    g.add_argument("--allow-unisolated", action="store_true",
                   help="with --isolation none: run students' code without namespaces (only resource limits "
                        "and timeouts apply; the code can read your files and use the network)")
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
