"""Course mode: grade an nbgrader course's ``submitted/`` tree into nbgrader's own gradebook.

``python -m grader grade --course DIR [--assignment NAME] [--student ID] [--force]`` does what
``nbgrader autograde`` does, with the sandbox instead of a kernel running the student's code:

- it reads the course's nbgrader configuration the way nbgrader does (the Jupyter config folders, then
  ``DIR/nbgrader_config.py``), so the gradebook is nbgrader's own setting (``CourseDirectory.db_url``: SQLite
  by default, PostgreSQL for a shared course) and the folders are nbgrader's (``submitted``, ``autograded``,
  ``directory_structure``);
- for each ``submitted/<student>/<assignment>/<notebook>.ipynb`` whose notebook the gradebook knows (made
  by ``nbgrader generate_assignment``), it writes the rows autograde writes, through nbgrader's API: the
  student, the submission with its timestamp (which creates the submitted notebook, one ``Grade`` per grade
  cell and one ``Comment`` per solution cell), each grade cell's ``auto_score`` and ``needs_manual_grade``,
  and the solution cells' "No response." comments; then the autograded notebook (nbgrader's sanitizing
  preprocessors, each graded cell's output replaced by the grader's result) in ``autograded/``, where
  formgrader and ``nbgrader generate_feedback`` read it. A notebook missing from a submission scores zero,
  as in nbgrader;
- each graded cell of the course's notebooks calls ``grade("<assignment>", "<test>" or [tests])`` (see
  ``grader.nbgrader_bridge``): that call, read from the gradebook's copy of the cell, says which tests of the
  suite make up the cell's score;
- it commits after every notebook, so killing it loses no finished score; a rerun grades only what is
  missing (no autograded notebook yet, or a newer submission), ``--force`` regrades everything;
- it writes a CSV (``--csv``, default ``DIR/grader.grades.csv``): one row per graded notebook as it goes, and
  at the end the whole class from the gradebook.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import glob
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable

__all__ = ["Course", "Item", "cell_tests", "grade_course"]


@dataclasses.dataclass
class Item:
    """One notebook of one student's submission (``path`` None: the student did not submit it)."""

    student: str
    assignment: str
    notebook: str
    path: str | None
    timestamp: object = None


def cell_tests(source: str) -> list[str] | None:
    """The suite tests a graded cell runs: the names in its ``grade(assignment, test_or_tests, ...)`` call."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or len(node.args) < 2:
            continue
        fn = node.func
        name = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else None
        if name != "grade":
            continue
        arg = node.args[1]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return [arg.value]
        if isinstance(arg, (ast.List, ast.Tuple)) and all(
                isinstance(e, ast.Constant) and isinstance(e.value, str) for e in arg.elts):
            return [e.value for e in arg.elts]
    return None


def _load_config(course_dir: str):
    """nbgrader's configuration for the course: Jupyter's config folders, then the course's own file."""
    from jupyter_core.paths import jupyter_config_path
    from traitlets.config.loader import Config, ConfigFileNotFound, PyFileConfigLoader

    cfg = Config()
    for folder in reversed(jupyter_config_path()):  # lowest priority first
        for name in ("nbgrader_config.py",):
            if os.path.exists(os.path.join(folder, name)):
                try:
                    cfg.merge(PyFileConfigLoader(name, path=folder).load_config())
                except ConfigFileNotFound:
                    pass
    local = os.path.join(course_dir, "nbgrader_config.py")
    if os.path.exists(local):
        cfg.merge(PyFileConfigLoader("nbgrader_config.py", path=course_dir).load_config())
    return cfg


class Course:
    """An nbgrader course folder, seen through nbgrader's own ``CourseDirectory``."""

    def __init__(self, course_dir: str):
        from nbgrader.coursedir import CourseDirectory

        course_dir = os.path.abspath(course_dir)
        if not os.path.isdir(course_dir):
            raise ValueError(f"--course: {course_dir} is not a folder")
        cfg = _load_config(course_dir)
        if "root" not in cfg.get("CourseDirectory", {}):
            cfg.CourseDirectory.root = course_dir
        self.config = cfg
        self.coursedir = CourseDirectory(config=cfg)
        self.root = self.coursedir.root
        self.db_url = self.coursedir.db_url
        self.course_id = self.coursedir.course_id or "default_course"

    def gradebook(self):
        from nbgrader.api import Gradebook

        return Gradebook(self.db_url, self.course_id)

    # ---- what is there

    def find(self, gb, assignment: str | None = None, student: str | None = None) -> list[Item]:
        """Every notebook of every submission (and the notebooks a submission lacks), in a stable order."""
        from nbgrader.api import MissingEntry

        cd = self.coursedir
        pattern = cd.format_path(cd.submitted_directory, student or "*", assignment or "*")
        regexp = cd.format_path(cd.submitted_directory, "(?P<student_id>[^/]+)", "(?P<assignment_id>[^/]+)",
                                escape=True)
        items: list[Item] = []
        for folder in sorted(glob.glob(pattern)):
            m = re.fullmatch(regexp, folder)
            if not m or not os.path.isdir(folder):
                continue
            sid, aid = m.group("student_id"), m.group("assignment_id")
            try:
                known = [nb.name for nb in gb.find_assignment(aid).notebooks]
            except MissingEntry:
                print(f"grade: skipping {folder}: the gradebook has no assignment {aid!r} (run "
                      f"`nbgrader generate_assignment {aid}` first)", file=sys.stderr)
                continue
            timestamp = cd.get_existing_timestamp(folder)
            present = {os.path.splitext(os.path.basename(p))[0]: p
                       for p in sorted(glob.glob(os.path.join(folder, "*.ipynb")))}
            for name in present:
                if name not in known:
                    print(f"grade: skipping {present[name]}: not a notebook of {aid!r}", file=sys.stderr)
            for name in known:
                items.append(Item(sid, aid, name, present.get(name), timestamp))
        return items

    def autograded_path(self, item: Item) -> str:
        cd = self.coursedir
        return os.path.join(cd.format_path(cd.autograded_directory, item.student, item.assignment),
                            item.notebook + ".ipynb")

    def is_graded(self, gb, item: Item) -> bool:
        """Already graded, as nbgrader's autograde decides it: the gradebook has the submitted notebook and
        the autograded notebook exists, no older than the submission."""
        from nbgrader.api import MissingEntry

        try:
            sub = gb.find_submission_notebook(item.notebook, item.assignment, item.student)
        except MissingEntry:
            return False
        if item.path is None:
            return all(g.auto_score is not None for g in sub.grades)
        out = self.autograded_path(item)
        if not os.path.exists(out):
            return False
        done = self.coursedir.get_existing_timestamp(os.path.dirname(out))
        return item.timestamp is None or (done is not None and done >= item.timestamp)

    # ---- writing

    def record(self, gb, item: Item, result, suite_tests: Iterable[str]) -> dict:
        """Write one notebook's result into the gradebook (one commit), then its autograded notebook."""
        import warnings

        from sqlalchemy.exc import SAWarning

        gb.update_or_create_student(item.student)
        with warnings.catch_warnings():  # nbgrader's add_submission warns about its own autoflush, harmlessly
            warnings.simplefilter("ignore", SAWarning)
            if item.timestamp is not None:
                gb.update_or_create_submission(item.assignment, item.student, timestamp=item.timestamp)
            else:
                gb.update_or_create_submission(item.assignment, item.student)
        notebook = gb.find_notebook(item.notebook, item.assignment)
        by_name = {t["name"]: t for t in (result.tests if result is not None else [])}
        known = set(suite_tests)
        cells = {}
        for cell in notebook.grade_cells:
            grade = gb.find_grade(cell.name, item.notebook, item.assignment, item.student)
            names = self._tests_of(gb, cell, item, known)
            if result is None or result.internal_error:
                score = 0.0 if result is None else None
            elif names is None:
                score = None  # a cell the suites do not score (a written answer): left to the instructor
            else:
                score = min(float(cell.max_score), round(sum(float(by_name[n]["points"]) for n in names
                                                             if n in by_name), 3))
            grade.auto_score = score
            grade.needs_manual_grade = grade.manual_score is not None or score is None
            shown = [by_name[n] for n in (names or []) if n in by_name]
            cells[cell.name] = (score, float(cell.max_score), shown)
        submitted = self._read(item.path)
        for cell in notebook.solution_cells:
            comment = gb.find_comment(cell.name, item.notebook, item.assignment, item.student)
            comment.auto_comment = "No response." if self._unchanged(submitted, cell.name) else None
        gb.db.commit()
        if item.path is not None and result is not None and not result.internal_error:
            self._write_autograded(item, submitted, cells, result)
        return cells

    def _tests_of(self, gb, cell, item: Item, known: set[str]) -> list[str] | None:
        from nbgrader.api import MissingEntry

        try:
            source = gb.find_source_cell(cell.name, item.notebook, item.assignment).source
        except MissingEntry:
            source = ""
        names = cell_tests(source)
        if names:
            return [n for n in names if n in known] or None
        guess = "test_" + re.sub(r"\W", "_", cell.name)
        if cell.name in known:
            return [cell.name]
        return [guess] if guess in known else None

    @staticmethod
    def _read(path: str | None):
        """The submitted notebook as nbformat's node (sources joined), or None when it cannot be read."""
        if path is None:
            return None
        try:
            import nbformat

            from .notebook import read
            return nbformat.reads(json.dumps(read(path)), as_version=4)
        except Exception:  # noqa: BLE001 - an unreadable notebook has no cells to compare
            return None

    @staticmethod
    def _unchanged(nb, grade_id: str) -> bool:
        from nbgrader.utils import compute_checksum

        if nb is None:
            return True
        for cell in nb.cells:
            ng = cell.metadata.get("nbgrader") or {}
            if ng.get("grade_id") == grade_id:
                try:
                    return ng.get("checksum") == compute_checksum(cell)
                except Exception:  # noqa: BLE001
                    return False
        return True

    def _write_autograded(self, item: Item, submitted, cells: dict, result) -> None:
        """nbgrader's sanitized copy of the submission, each graded cell showing the grader's result."""
        import nbformat
        from nbconvert.exporters.exporter import ResourcesDict
        from nbgrader.preprocessors import (
            CheckCellMetadata,
            ClearOutput,
            DeduplicateIds,
            OverwriteCells,
            OverwriteKernelspec,
        )

        if submitted is None:
            return
        nb = nbformat.reads(nbformat.writes(submitted), as_version=4)  # a copy
        resources = ResourcesDict()
        resources["nbgrader"] = {"notebook": item.notebook, "assignment": item.assignment,
                                 "student": item.student, "db_url": self.db_url}
        for pp in (ClearOutput, DeduplicateIds, OverwriteKernelspec, OverwriteCells, CheckCellMetadata):
            nb, resources = pp(config=self.config).preprocess(nb, resources)
        for cell in nb.cells:
            ng = cell.metadata.get("nbgrader", {})
            if cell.cell_type == "code" and ng.get("grade_id") in cells:
                score, max_score, tests = cells[ng["grade_id"]]
                text = ("not scored by the grader (manual grading)\n" if score is None
                        else f"{score:g} / {max_score:g} points\n")
                text += "".join(f"{t['name']}: {t['message']}\n" for t in tests if t["message"])
                cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
        if result.error:
            nb.metadata["grader"] = {"error": result.error}
        dest = self.autograded_path(item)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        src_dir = os.path.dirname(item.path)
        for name in sorted(os.listdir(src_dir)):  # the submission's other files, as autograde copies them
            p = os.path.join(src_dir, name)
            if (not name.endswith(".ipynb") and os.path.isfile(p) and not os.path.islink(p)
                    and os.path.getsize(p) < self.coursedir.max_file_size * 1000):
                shutil.copy2(p, os.path.join(os.path.dirname(dest), name))
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest), suffix=".ipynb.tmp")
        with os.fdopen(fd, "w") as f:
            nbformat.write(nb, f)
        os.replace(tmp, dest)  # last: its presence marks the notebook as graded

    # ---- the class as a CSV

    def export_csv(self, gb, path: str, assignments: Iterable[str] | None = None) -> int:
        rows = []
        for a in gb.assignments:
            if assignments is not None and a.name not in assignments:
                continue
            for sub in gb.assignment_submissions(a.name):
                for nb in sub.notebooks:
                    rows.append({"student": sub.student.id, "assignment": a.name, "notebook": nb.name,
                                 "score": round(float(nb.score), 3), "max_score": float(nb.max_score),
                                 "needs_manual_grade": bool(nb.needs_manual_grade),
                                 "timestamp": sub.timestamp.isoformat() if sub.timestamp else ""})
        rows.sort(key=lambda r: (r["assignment"], r["student"], r["notebook"]))
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".csv.tmp")
        with os.fdopen(fd, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COURSE_CSV_FIELDS)
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, path)
        return len(rows)


COURSE_CSV_FIELDS = ["student", "assignment", "notebook", "score", "max_score", "needs_manual_grade",
                     "timestamp"]


def grade_course(args, *, limits, suites=None, extra_probes=None, out=None, show_bar: bool = False,
                 server=None) -> int:
    """The ``--course`` mode of ``python -m grader grade`` (see the module's doc)."""
    from .cli import Grader, _progress, emit, grade_in_order

    out = out or sys.stdout
    try:
        course = Course(args.course)
    except ValueError as exc:
        print(f"grade: {exc}", file=sys.stderr)
        return 2
    csv_path = args.csv or os.path.join(course.root, "grader.grades.csv")
    grader = None
    failed = False
    with course.gradebook() as gb:
        items = course.find(gb, args.assignment, args.student)
        todo = [it for it in items if args.force or not course.is_graded(gb, it)]
        print(f"grade: {len(items)} submitted notebooks in {course.root}, {len(items) - len(todo)} already "
              f"graded, {len(todo)} to grade (gradebook {_safe_url(course.db_url)})", file=sys.stderr)
        missing = [it for it in todo if it.path is None]
        todo = [it for it in todo if it.path is not None]
        for it in missing:  # nothing submitted: zero, as nbgrader does
            course.record(gb, it, None, ())
        increment = open(csv_path, "a", newline="") if todo else None
        try:
            if todo:
                grader = Grader(suites=suites, limits=limits, isolation=args.isolation,
                                extra_probes=extra_probes, server=server, keep_output=args.with_output)
                suite_names = {}

                def which(it: Item) -> str | None:
                    return it.assignment if it.assignment in grader.suites.ASSIGNMENTS else None

                grader.prepare({a for it in todo if (a := which(it))})
                bar = _progress(len(todo), show_bar)
                writer = csv.DictWriter(increment, fieldnames=COURSE_CSV_FIELDS)
                if increment.tell() == 0:
                    writer.writeheader()
                results = grade_in_order(todo, lambda it: grader.grade(
                    it.path, which(it), label=it.path), args.jobs)
                for it, r in zip(todo, results, strict=True):
                    a = r.assignment or it.assignment
                    if a not in suite_names and a in grader.suites.ASSIGNMENTS:
                        suite_names[a] = _test_names(grader.suites, a)
                    course.record(gb, it, r, suite_names.get(a, ()))
                    failed |= r.internal_error
                    writer.writerow({"student": it.student, "assignment": it.assignment,
                                     "notebook": it.notebook, "score": r.score, "max_score": r.max_score,
                                     "needs_manual_grade": False, "timestamp": str(it.timestamp or "")})
                    increment.flush()
                    if args.json:
                        d = r.to_json(args.with_output)
                        d["student"] = it.student
                        emit(out, json.dumps(d), bar)
                    if bar:
                        bar.update(1)
                if bar:
                    bar.close()
        finally:
            if increment:
                increment.close()
            if grader:
                grader.close()
        n = course.export_csv(gb, csv_path, None if not args.assignment else [args.assignment])
        print(f"grade: gradebook updated; {n} notebooks in {csv_path}", file=sys.stderr)
    return 1 if failed else 0


def _test_names(suites, assignment: str) -> list[str]:
    if callable(getattr(suites, "tests", None)):
        return [t.name for t in suites.tests(assignment)]
    names = getattr(suites, "TESTS", None)
    return [t[0] for t in names] if names else []


def _safe_url(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)
