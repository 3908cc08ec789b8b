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

Several graders, one gradebook: ``--shard K/N`` (K counts from 0) grades only the submissions whose stable
hash of (student, assignment) is K modulo N, so N processes or machines that share the course folder and a
PostgreSQL gradebook grade the class between them, each submission exactly once, whatever order they start in
and whatever they find already graded. A shard's CSV is its own (``grader.grades.shard-K-of-N.csv``, or
``--csv FILE`` with the same suffix), so no shard overwrites another's; a run without ``--shard`` after them
grades what is left (nothing, when every shard finished) and writes the whole class's CSV. Writes from several
processes may race on nbgrader's unique rows (the same student created by two graders at once): the loser's
notebook transaction is rolled back and written again. A gradebook that cannot be opened (server down, wrong
password, bad URL, missing driver) is one clear error before anything is graded or written; one lost during
the run stops it, and what was recorded stays recorded.
"""

from __future__ import annotations

import ast
import contextlib
import csv
import dataclasses
import glob
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterable, Iterator

from .report import csv_cell, safe_text

__all__ = ["Course", "Item", "GradebookUnavailable", "cell_tests", "grade_course", "clean_submission",
           "parse_shard", "shard_of"]

# the hidden tests of a graded cell, as nbgrader's source notebook holds them (OverwriteCells puts them back)
_HIDDEN = re.compile(r"^[ \t]*#+[ \t]*BEGIN HIDDEN TESTS.*?^[ \t]*#+[ \t]*END HIDDEN TESTS[^\n]*$",
                     re.M | re.S)
_HIDDEN_NOTE = "# hidden tests: they ran when your notebook was graded (their results are shown below)"

#: the nbgrader cell metadata a submission may carry into the gradebook and the autograded notebook
_NBGRADER_KEYS = {"schema_version", "grade", "solution", "locked", "task", "grade_id", "points", "checksum",
                  "cell_type"}
_MAX_META_TEXT = 200
_CELL_ID = re.compile(r"[a-zA-Z0-9-_]{1,64}")  # nbformat 4.5's pattern for a cell id


def clean_submission(nb: dict, known_ids: Iterable[str] = ()) -> dict:
    """A submitted notebook (as ``grader.notebook.read`` returns it) reduced to what nbgrader needs.

    Students' notebooks carry arbitrary metadata: deeply nested dicts (a 400 KiB file that nbformat writes out
    as tens of MiB), solution cells that lost their ``grade_id`` or carry an id the assignment does not have
    (nbgrader's preprocessors stop with a KeyError on them). Kept: each cell's type, source and nbgrader
    metadata (known keys with plain values, and only when its grade_id is one of ``known_ids``, the
    assignment's cells), the notebook's kernelspec and language. Outputs and attachments are dropped (the
    grader writes its own outputs).
    """
    known = set(known_ids)
    cells = []
    for c in nb.get("cells", []):
        kind = c.get("cell_type") if c.get("cell_type") in ("code", "markdown", "raw") else "raw"
        src = c.get("source", "")
        src = "".join(x for x in src if isinstance(x, str)) if isinstance(src, list) else src
        cell_id = c.get("id")
        if not (isinstance(cell_id, str) and _CELL_ID.fullmatch(cell_id)):
            cell_id = uuid.uuid4().hex[:8]
        cell = {"id": cell_id, "cell_type": kind, "metadata": {},
                "source": src if isinstance(src, str) else ""}
        if kind == "code":
            cell.update(outputs=[], execution_count=None)
        meta = c.get("metadata")
        ng = meta.get("nbgrader") if isinstance(meta, dict) else None
        if isinstance(ng, dict) and isinstance(ng.get("grade_id"), str) and ng["grade_id"] in known:
            cell["metadata"]["nbgrader"] = {
                k: v for k, v in ng.items() if k in _NBGRADER_KEYS and (
                    isinstance(v, (bool, int, float)) or isinstance(v, str) and len(v) <= _MAX_META_TEXT)}
        cells.append(cell)
    meta = nb.get("metadata") if isinstance(nb.get("metadata"), dict) else {}
    keep = {}
    for key in ("kernelspec", "language_info"):
        value = meta.get(key)
        if isinstance(value, dict):
            keep[key] = {k: v for k, v in value.items()
                         if isinstance(k, str) and isinstance(v, str) and len(v) <= _MAX_META_TEXT}
    return {"cells": cells, "metadata": keep, "nbformat": 4, "nbformat_minor": 5}


@dataclasses.dataclass
class Item:
    """One notebook of one student's submission (``path`` None: the student did not submit it)."""

    student: str
    assignment: str
    notebook: str
    path: str | None
    timestamp: object = None


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` as ``(K, N)``, with 0 <= K < N (K counts from 0, as Kubernetes' completion index does)."""
    m = re.fullmatch(r"\s*(\d{1,9})\s*/\s*(\d{1,9})\s*", str(text))
    k, n = (int(m.group(1)), int(m.group(2))) if m else (None, None)
    if m is None or n < 1 or k >= n:
        hint = " (K counts from 0: the last of N shards is N-1/N)" if m and 1 <= n == k else ""
        raise ValueError(f"--shard: expected K/N with N >= 1 and 0 <= K < N, e.g. 0/4, 1/4, 2/4, 3/4; "
                         f"got {str(text)!r}{hint}")
    return k, n


def shard_of(student: str, assignment: str, n: int) -> int:
    """The shard (0 .. n-1) of one submission: a hash of its student and assignment, the same on every machine
    and in every run (Python's ``hash`` of a str changes between processes)."""
    digest = hashlib.sha256(f"{student}\0{assignment}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % n


class GradebookUnavailable(RuntimeError):
    """The gradebook cannot be opened or was lost (server down, wrong password, bad URL, missing driver)."""


def _connection_error(exc: BaseException) -> bool:
    """An error of the database's connection or state (server gone, connection dropped, a lock or deadlock),
    as opposed to one of this notebook's rows."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    for e in _causes(exc):
        if isinstance(e, (OperationalError, InterfaceError)) or (
                isinstance(e, DBAPIError) and e.connection_invalidated):
            return True
    return False


def _raced(exc: BaseException) -> bool:
    """An insert that lost to another grader's (a unique row, e.g. the same student, created meanwhile)."""
    from sqlalchemy.exc import IntegrityError

    return any(isinstance(e, IntegrityError) for e in _causes(exc))


def _causes(exc: BaseException) -> Iterator[BaseException]:
    # nbgrader re-raises the driver's error as its own InvalidEntry inside the except block: the original is
    # the context
    seen = 0
    while exc is not None and seen < 5:
        yield exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1


def _reason(exc: BaseException) -> str:
    """The driver's own words, on one line, without SQLAlchemy's background link or the statement."""
    text = str(getattr(exc, "orig", None) or exc)
    text = text.split("(Background on this error", 1)[0]
    return safe_text(" ".join(text.split()), 400)


class _QuietRollbacks(logging.Filter):
    """nbgrader logs a traceback for each rolled-back insert; a lost race is retried and a real failure is
    reported by the course mode itself, once, so those log records only add noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Rolling back session due to database error")


@contextlib.contextmanager
def _quiet_rollbacks() -> Iterator[None]:
    log = logging.getLogger("tornado.application")  # nbgrader.api's app_log
    f = _QuietRollbacks()
    log.addFilter(f)
    try:
        yield
    finally:
        log.removeFilter(f)


#: how many times one notebook's rows are written when another grader's inserts keep winning the race
_WRITE_ATTEMPTS = 4


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
        """nbgrader's ``Gradebook`` on the course's ``db_url``; ``GradebookUnavailable`` with the driver's
        reason (never the password) when it cannot be opened."""
        import time

        from nbgrader.api import Gradebook
        from sqlalchemy.exc import IntegrityError, ProgrammingError, SQLAlchemyError

        if shutil.which("alembic") is None:
            # nbgrader runs `alembic` by name to stamp a new gradebook: the one installed beside this Python
            # (a virtual environment's bin/, not on PATH when its python is called by its full path)
            os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
        where = f"the gradebook {safe_url(self.db_url)} (CourseDirectory.db_url)"
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                with _quiet_rollbacks():
                    return Gradebook(self.db_url, self.course_id)
            except SQLAlchemyError as exc:
                # N graders opening a new gradebook at once race to create its tables ("already exists") and
                # its course row (a unique key)
                if isinstance(exc, (IntegrityError, ProgrammingError)) and attempt < _WRITE_ATTEMPTS - 1:
                    time.sleep(0.2 * (attempt + 1))
                    continue
                raise GradebookUnavailable(f"cannot open {where}: {_reason(exc)}") from None
            except ImportError as exc:  # postgresql+psycopg2:// and the like, without that driver
                raise GradebookUnavailable(f"cannot open {where}: its database driver is not installed "
                                           f"({safe_text(exc, 200)})") from None
            except OSError as exc:  # a new gradebook, and no `alembic` command to stamp it
                raise GradebookUnavailable(f"cannot create {where}: nbgrader's `alembic` command failed "
                                           f"({safe_text(exc, 200)})") from None
        raise AssertionError("unreachable")

    # ---- what is there

    def find(self, gb, assignment: str | None = None, student: str | None = None,
             shard: tuple[int, int] | None = None) -> list[Item]:
        """Every notebook of every submission (and the notebooks a submission lacks), in a stable order;
        with ``shard`` (K, N), those of the submissions of shard K only (``shard_of``)."""
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
            if shard is not None and shard_of(sid, aid, shard[1]) != shard[0]:
                continue
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

    def record(self, gb, item: Item, result, suite_tests: Iterable[str], hidden: Iterable[str] = ()) -> dict:
        """Write one notebook's result into the gradebook, then its autograded notebook.

        ``result`` None: the student submitted nothing (zero, as nbgrader gives). A result that is an internal
        error of the grader is never recorded (the caller skips it), so a rerun grades it again. ``hidden``:
        the names of the hidden tests, which the autograded notebook (and so nbgrader's feedback) never shows.

        nbgrader's own calls commit the student and the submission's empty rows first (as ``nbgrader
        autograde`` does); the scores and comments follow in one commit, and on any failure that transaction
        is rolled back. The autograded notebook, written last, is what marks the notebook as graded, so a run
        stopped anywhere before it grades the notebook again. An insert that lost a race with another grader
        (the same student created by two shards at once) is rolled back and the whole write done again.
        """
        if result is not None and result.internal_error:
            raise ValueError("result: an internal error of the grader is never recorded")
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                with _quiet_rollbacks():
                    cells, submitted = self._write_rows(gb, item, result, suite_tests)
                break
            except BaseException as exc:
                with contextlib.suppress(Exception):  # on a dead connection: the original error tells more
                    gb.db.rollback()
                if not (isinstance(exc, Exception) and _raced(exc)) or attempt == _WRITE_ATTEMPTS - 1:
                    raise
        if item.path is not None and result is not None:
            self._write_autograded(gb, item, submitted, cells, result, set(hidden))
        return cells

    def _write_rows(self, gb, item: Item, result, suite_tests: Iterable[str]):
        import warnings

        from sqlalchemy.exc import SAWarning

        gb.update_or_create_student(item.student)
        with warnings.catch_warnings():  # nbgrader's add_submission warns about its own autoflush
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
            if result is None:
                score = 0.0
            elif names is None:
                score = None  # a cell the suites do not score (a written answer): left to the instructor
            else:
                score = min(float(cell.max_score), round(sum(float(by_name[n]["points"]) for n in names
                                                             if n in by_name), 3))
            grade.auto_score = score
            grade.needs_manual_grade = grade.manual_score is not None or score is None
            shown = [by_name[n] for n in (names or []) if n in by_name]
            cells[cell.name] = (score, float(cell.max_score), shown)
        submitted = self._read(item.path, {c.name for c in notebook.source_cells})
        for cell in notebook.solution_cells:
            comment = gb.find_comment(cell.name, item.notebook, item.assignment, item.student)
            comment.auto_comment = "No response." if self._unchanged(submitted, cell.name) else None
        gb.db.commit()
        return cells, submitted

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
    def _read(path: str | None, known_ids: set[str] = frozenset()):
        """The submitted notebook as nbformat's node, cleaned (``clean_submission``); None if unreadable."""
        if path is None:
            return None
        try:
            import nbformat

            from .notebook import read
            return nbformat.from_dict(clean_submission(read(path), known_ids))
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

    def _write_autograded(self, gb, item: Item, submitted, cells: dict, result, hidden: set[str]) -> None:
        """nbgrader's sanitized copy of the submission, each graded cell showing the grader's result.

        Hidden tests stay hidden in it (and so in ``nbgrader generate_feedback``): their code, which
        nbgrader's OverwriteCells puts back from the gradebook, is replaced by a note, and their results are
        shown without their names. A submission that cannot be read gets a one-cell notebook saying so.
        """
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
            nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
                "The submitted notebook could not be read, so it was graded 0: "
                + (result.error or "unreadable file"))])
        else:
            nb = nbformat.from_dict(json.loads(json.dumps(submitted)))  # a copy
            resources = ResourcesDict()
            resources["nbgrader"] = {"notebook": item.notebook, "assignment": item.assignment,
                                     "student": item.student, "db_url": self.db_url}
            for pp in (ClearOutput, DeduplicateIds, OverwriteKernelspec, OverwriteCells, CheckCellMetadata):
                nb, resources = pp(config=self.config).preprocess(nb, resources)
        for cell in nb.cells:
            ng = cell.metadata.get("nbgrader", {})
            if cell.cell_type == "code" and _HIDDEN.search(cell.source):
                cell.source = _HIDDEN.sub(_HIDDEN_NOTE, cell.source)
            if cell.cell_type == "code" and ng.get("grade_id") in cells:
                score, max_score, tests = cells[ng["grade_id"]]
                text = ("not scored by the grader (manual grading)\n" if score is None
                        else f"{score:g} / {max_score:g} points\n")
                text += "".join(f"{'hidden test' if t['name'] in hidden else t['name']}: {t['message']}\n"
                                for t in tests if t["message"])
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

    def export_csv(self, gb, path: str, assignments: Iterable[str] | None = None,
                   shard: tuple[int, int] | None = None) -> int:
        """The gradebook's notebooks as a CSV (all, or those of ``assignments``, or of ``shard``'s share)."""
        rows = []
        for a in gb.assignments:
            if assignments is not None and a.name not in assignments:
                continue
            for sub in gb.assignment_submissions(a.name):
                if shard is not None and shard_of(sub.student.id, a.name, shard[1]) != shard[0]:
                    continue
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
            w.writerows({k: csv_cell(v) for k, v in row.items()} for row in rows)
        os.replace(tmp, path)
        return len(rows)


COURSE_CSV_FIELDS = ["student", "assignment", "notebook", "score", "max_score", "needs_manual_grade",
                     "timestamp"]


def shard_csv_path(path: str, shard: tuple[int, int]) -> str:
    """``grades.csv`` as shard K of N writes it, ``grades.shard-K-of-N.csv``: each shard its own file."""
    stem, ext = os.path.splitext(path)
    return f"{stem}.shard-{shard[0]}-of-{shard[1]}{ext or '.csv'}"


def grade_course(args, *, limits, suites=None, extra_probes=None, out=None, show_bar: bool = False,
                 server=None) -> int:
    """The ``--course`` mode of ``python -m grader grade`` (see the module's doc).

    Each student is graded on their own: whatever one notebook does (or fails to be) costs that notebook
    only. A result the grader could not produce (an internal error) and a result that could not be written
    are reported on stderr and not stored, so the next run grades them again; the exit status is then 1.
    A gradebook that cannot be opened is one message and exit status 1, before anything is graded or
    written; one lost during the run (after one retry on a new connection) stops the run the same way.
    """
    shard = getattr(args, "shard", None)
    try:
        if isinstance(shard, str):
            shard = parse_shard(shard)
        course = Course(args.course)
    except ValueError as exc:
        print(f"grade: {exc}", file=sys.stderr)
        return 2
    csv_path = args.csv or os.path.join(course.root, "grader.grades.csv")
    if shard is not None:
        csv_path = shard_csv_path(csv_path, shard)
    try:
        gb = course.gradebook()
    except GradebookUnavailable as exc:
        print(f"grade: {exc}; nothing was graded or written", file=sys.stderr)
        return 1
    run = _CourseRun(course, gb, args, shard, csv_path, out or sys.stdout)
    try:
        with gb:
            return run.grade(limits=limits, suites=suites, extra_probes=extra_probes, show_bar=show_bar,
                             server=server)
    except GradebookUnavailable as exc:
        print(f"grade: {exc}; stopped after recording {run.recorded} notebook(s) in this run, the next run "
              f"grades the rest", file=sys.stderr)
        return 1


class _CourseRun:
    """One run of the course mode on an open gradebook (``grade_course``)."""

    def __init__(self, course: Course, gb, args, shard, csv_path: str, out):
        self.course, self.gb, self.args, self.shard, self.csv_path, self.out = (
            course, gb, args, shard, csv_path, out)
        self.recorded = 0

    def _lost(self, exc: BaseException) -> GradebookUnavailable:
        return GradebookUnavailable(f"lost the gradebook {safe_url(self.course.db_url)}: {_reason(exc)}")

    def _reachable(self) -> bool:
        """Whether the gradebook still answers (on a new connection if the old one was dropped)."""
        from sqlalchemy import text
        from sqlalchemy.exc import SQLAlchemyError

        try:
            self.gb.db.rollback()
            self.gb.db.execute(text("SELECT 1"))
            self.gb.db.rollback()
            return True
        except SQLAlchemyError:
            return False

    def record(self, it: Item, result, names=(), hidden=()) -> bool:
        """Write one notebook; False (and a message) if it could not be, so the next run grades it again.

        A connection error is tried once more (the pool replaces a dropped connection; a lock or deadlock may
        have passed); if it persists and the gradebook no longer answers at all, the run stops
        (``GradebookUnavailable``) rather than grade a class whose scores it cannot store."""
        for attempt in range(2):
            try:
                self.course.record(self.gb, it, result, names, hidden)
                self.recorded += 1
                return True
            except Exception as exc:  # noqa: BLE001 - one notebook must never stop the class
                if _connection_error(exc):
                    if attempt == 0:
                        continue
                    if not self._reachable():
                        raise self._lost(exc) from None
                why = f"{type(exc).__name__}: {safe_text(exc, 300)}"
                print(f"grade: {it.path or it.student}: not recorded ({why}); the next run grades it again",
                      file=sys.stderr)
                return False
        return False

    def grade(self, *, limits, suites, extra_probes, show_bar, server) -> int:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return self._grade(limits=limits, suites=suites, extra_probes=extra_probes, show_bar=show_bar,
                               server=server)
        except SQLAlchemyError as exc:
            if _connection_error(exc) and not self._reachable():
                raise self._lost(exc) from None
            raise

    def _grade(self, *, limits, suites, extra_probes, show_bar, server) -> int:
        from .grading import Grader, grade_in_order
        from .report import emit, progress

        course, gb, args, out = self.course, self.gb, self.args, self.out
        grader = None
        failed = False
        items = course.find(gb, args.assignment, args.student, self.shard)
        todo = [it for it in items if args.force or not course.is_graded(gb, it)]
        part = f"shard {self.shard[0]}/{self.shard[1]}: " if self.shard else ""
        print(f"grade: {part}{len(items)} submitted notebooks in {course.root}, {len(items) - len(todo)} "
              f"already graded, {len(todo)} to grade (gradebook {safe_url(course.db_url)})", file=sys.stderr)
        missing = [it for it in todo if it.path is None]
        todo = [it for it in todo if it.path is not None]
        for it in missing:  # nothing submitted: zero, as nbgrader does
            failed |= not self.record(it, None)
        increment = open(self.csv_path, "a", newline="") if todo else None
        try:
            if todo:
                grader = Grader(suites=suites, limits=limits, isolation=args.isolation,
                                extra_probes=extra_probes, server=server, keep_output=args.with_output)

                def which(it: Item) -> str | None:
                    return it.assignment if it.assignment in grader.suites.ASSIGNMENTS else None

                grader.prepare({a for it in todo if (a := which(it))})
                names = {a: _test_names(grader.suites, a) for a in grader.suites.ASSIGNMENTS}
                bar = progress(len(todo), show_bar)
                writer = csv.DictWriter(increment, fieldnames=COURSE_CSV_FIELDS)
                if increment.tell() == 0:
                    writer.writeheader()
                results = grade_in_order(todo, lambda it: grader.grade(
                    it.path, which(it), label=it.path), args.jobs)
                for it, r in zip(todo, results, strict=True):
                    a = r.assignment or it.assignment
                    if r.internal_error:
                        failed = True
                        print(f"grade: {it.path}: {r.error}; not recorded, the next run grades it again",
                              file=sys.stderr)
                    elif self.record(it, r, *names.get(a, ((), ()))):
                        writer.writerow({k: csv_cell(v) for k, v in {
                            "student": it.student, "assignment": it.assignment, "notebook": it.notebook,
                            "score": r.score, "max_score": r.max_score, "needs_manual_grade": False,
                            "timestamp": str(it.timestamp or "")}.items()})
                        increment.flush()
                    else:
                        failed = True
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
        n = course.export_csv(gb, self.csv_path, None if not args.assignment else [args.assignment],
                              shard=self.shard)
        print(f"grade: gradebook updated; {n} notebooks in {self.csv_path}", file=sys.stderr)
        return 1 if failed else 0


def _test_names(suites, assignment: str) -> tuple[list[str], list[str]]:
    """The suite's test names, and those of them that are hidden."""
    if callable(getattr(suites, "tests", None)):
        found = suites.tests(assignment)
        return [t.name for t in found], [t.name for t in found if not getattr(t, "visible", True)]
    names = getattr(suites, "TESTS", None)
    return ([t[0] for t in names] if names else []), []


def safe_url(url: str) -> str:
    """The gradebook's URL as it may be printed: a password, in the user part or the query, hidden."""
    url = re.sub(r"//([^:/@?#]+):[^@]*@", r"//\1:***@", url)
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", url, flags=re.I)
