"""Grade one notebook: read it, check its code against the assignment's rules, run it in a sandbox, score it.

The pipeline, in the grader's process, for each notebook:

1. ``grader.notebook`` reads the file as JSON (nothing executed) and picks the graded cells;
2. ``grader.policy`` checks their source (an AST allow-list): a function that breaks a rule never reaches the
   sandbox, only a stub that names the line and the rule, so a refusal costs exactly the functions it touches;
3. ``grader.sandbox`` runs the checked cells in a locked-down child process;
4. the suite (``grader.suite`` by default) calls the student's functions there through probes and scores the
   raw outputs against references computed here.

A failure of the grader itself (the sandbox could not be set up, a suite bug) is an *internal error*: the
result says so, carries no score the course mode would store, and the command exits 1.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .report import safe_text

__all__ = ["NotebookResult", "Grader", "grade_in_order", "MAX_TEXT"]

#: the longest message or error kept in a result (it ends up in JSON, a gradebook, a feedback page)
MAX_TEXT = 2000


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
    internal_error: bool = False   #: the grader itself failed (not the student's fault): never stored

    def __post_init__(self):
        # every text may hold what the student's process wrote: make it printable and storable once, here
        self.error = None if self.error is None else safe_text(self.error, MAX_TEXT)
        self.output = safe_text(self.output)
        for t in self.tests:
            t["message"] = safe_text(t.get("message", ""), MAX_TEXT)

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
            ``ASSIGNMENTS``, ``max_score(a)``, ``run_suite(a, sub)``, optionally ``prepare(a)`` and
            ``policy(a)``, the assignment's ``grader.policy.Policy``).
        limits: ``grader.sandbox.Limits`` for every submission.
        server: a started ``ForkServer`` (default: one is started now, and closed by ``close``).
        isolation: the sandbox's isolation, see ``grader.sandbox.ForkServer``.
        keep_output: keep each student's captured output in the result (waits for the sandbox to end).
        check_source: check the graded code against the assignment's policy before it runs (default True;
            the project's tests of the sandbox's own containment turn it off).
    """

    def __init__(self, *, suites=None, limits=None, server=None, isolation: str = "auto",
                 extra_probes: dict[str, str] | None = None, keep_output: bool = False,
                 check_source: bool = True):
        from .sandbox import ForkServer, Limits
        # the fork server first: it imports torch in its own process while this one imports the suites
        self._own_server = server is None
        self.server = server or ForkServer(isolation=isolation, extra_probes=extra_probes)
        if suites is None:
            from . import suite as suites
        self.suites = suites
        self.limits = limits or Limits()
        self.keep_output = keep_output
        self.check_source = check_source
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
        from .submission import GraderError
        t0 = time.monotonic()
        label = label if label is not None else str(path)
        try:
            result = self._grade(path, assignment, label)
        except Exception as exc:  # noqa: BLE001 - our bug or our sandbox: report it, keep grading the class
            kind = "" if isinstance(exc, GraderError) else f"{type(exc).__name__}: "
            result = NotebookResult(label, assignment, 0.0, 0.0, [], f"internal grader error (not the "
                                    f"student's fault): {kind}{exc}", internal_error=True)
        result.seconds = time.monotonic() - t0
        return result

    def _policy(self, assignment: str):
        if not self.check_source:
            return None
        get = getattr(self.suites, "policy", None)
        if callable(get):
            return get(assignment)
        from .policy import for_assignment
        return for_assignment(assignment)

    def _grade(self, path: str, assignment: str | None, label: str) -> NotebookResult:
        from .notebook import NotebookError, assignment_of, graded_cells, read
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
            policy = self._policy(assignment)
            checked = policy.check(cells) if policy is not None else None
            if checked is not None:
                notes.extend(checked.notes)
            sub = self.server.open(assignment, checked.cells if checked else cells, self.limits,
                                   refusals=checked.refusals if checked else (),
                                   modules=policy.modules if policy is not None else None)
            try:
                results = self.suites.run_suite(assignment, sub)
            finally:
                sub.close()
            if sub.internal is not None:  # the sandbox failed, not the student: nothing here is a score
                raise sub.internal
            if sub.load_errors:
                notes.append("; ".join(sub.load_errors))
            if sub.fatal is not None:
                notes.append(sub.fatal.message)
            if self.keep_output:
                output = sub.output
        if any(getattr(r, "internal", False) for r in results):
            bad = [r.name for r in results if getattr(r, "internal", False)]
            from .submission import GraderError
            raise GraderError(f"the suite could not score {', '.join(bad)}: "
                              + "; ".join(r.message for r in results if getattr(r, "internal", False)))
        tests = [r.to_json() for r in results]
        score = round(sum(float(t["points"]) for t in tests), 3)
        return NotebookResult(label, assignment, score, max_score, tests, _join(notes), output=output)

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
