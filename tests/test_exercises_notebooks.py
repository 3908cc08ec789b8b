"""The assignments' notebooks: solutions/ against the suites, exercises/ against solutions/, the self-check,
the guards and the nbgrader bridge.

Also home of the helpers the other exercise tests import (``graded_source``, ``namespace_of``,
``student_notebook``): they exec trusted code (our own solutions, our own known bugs) in this process.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import warnings
from pathlib import Path

import nbformat
import pytest
import torch

from grader import guards
from grader.guards import GuardedSubmission
from grader.submission import InProcessSubmission, StudentError
from grader.suite import ASSIGNMENTS, FUNCTIONS, max_score, run_suite
from grader.suite import tests as suite_tests

ROOT = Path(__file__).resolve().parent.parent
_GRADE_CALL = re.compile(r"""grade\(\s*['"](\w+)['"]\s*,\s*['"](test_\w+)['"]""")


# ------------------------------------------------------------------------------------------------- helpers

def solution_path(assignment: str) -> Path:
    return ROOT / "solutions" / assignment / f"{assignment}.ipynb"


def exercise_path(assignment: str) -> Path:
    return ROOT / "exercises" / assignment / f"{assignment}.ipynb"


def nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def graded_source(path: Path) -> list[str]:
    """The graded cells' sources, as the grader extracts them (solution cells and locked read-only cells)."""
    from grader.notebook import extract_cells

    _, cells = extract_cells(str(path))
    return [src for _, src in cells]


def namespace_of(sources: list[str]) -> dict:
    """Exec each cell in one namespace, as a kernel would: a cell that fails does not stop the next."""
    ns: dict = {"__name__": "__student__"}
    for i, src in enumerate(sources):
        try:
            exec(compile(src, f"<cell {i}>", "exec"), ns)
        except Exception:  # noqa: BLE001 - a broken cell of a test submission, like in a kernel
            pass
    return ns


def solution_namespace(assignment: str, *overrides: str) -> dict:
    """The solution notebook's graded code, then ``overrides`` (function definitions that replace some)."""
    return namespace_of(graded_source(solution_path(assignment)) + list(overrides))


def score_of(assignment: str, ns: dict) -> dict[str, tuple[float, float, str]]:
    """name -> (points, max_points, message) of the full suite on ``ns``."""
    return {r.name: (r.points, r.max_points, r.message)
            for r in run_suite(assignment, InProcessSubmission(ns))}


def lost(scores: dict) -> set[str]:
    return {name for name, (pts, mx, _) in scores.items() if pts < mx}


def bug_scores(assignment: str, bug: str, source: str) -> dict[str, tuple[float, float, str]]:
    """The full suite's scores for the solution with ``source`` (a mistake) in place; a bug whose name starts
    with ``guarded_`` runs with the assignment's off-limits calls guarded, as in the sandbox."""
    ns = solution_namespace(assignment, source)
    if bug.startswith("guarded_"):
        return {r.name: (r.points, r.max_points, r.message)
                for r in run_suite(assignment, GuardedSubmission(assignment, ns))}
    return score_of(assignment, ns)


def assert_mistake_caught(scores: dict, expected: set[str], messages: dict[str, str]) -> None:
    """Exactly the ``expected`` tests lose points, each with a message fit for a student (no traceback, no
    tensor dump), and the message of each test in ``messages`` contains the given words."""
    assert lost(scores) == expected, f"lost {sorted(lost(scores))}"
    for name in expected:
        message = scores[name][2]
        assert message and "Traceback" not in message and "tensor(" not in message, (name, message)
    for name, part in messages.items():
        assert part in scores[name][2], (name, scores[name][2])


def student_notebook(assignment: str, replace: dict[str, str]) -> nbformat.NotebookNode:
    """The released notebook with the solution cells whose grade_id is in ``replace`` rewritten."""
    nb = nbformat.read(exercise_path(assignment), as_version=4)
    for cell in nb.cells:
        gid = nbgrader_meta(cell).get("grade_id")
        if nbgrader_meta(cell).get("solution") and gid in replace:
            cell.source = replace[gid]
    return nb


def solution_cells(assignment: str) -> dict[str, str]:
    """grade_id -> source of the solution notebook's solution cells (markers removed)."""
    nb = nbformat.read(solution_path(assignment), as_version=4)
    out = {}
    for cell in nb.cells:
        if nbgrader_meta(cell).get("solution"):
            out[nbgrader_meta(cell)["grade_id"]] = "\n".join(
                line for line in cell.source.splitlines() if "### BEGIN SOLUTION" not in line
                and "### END SOLUTION" not in line)
    return out


def grade_cells(nb) -> list[tuple[str, float, str, str, bool]]:
    """(grade_id, points, assignment, test name, hidden) for each graded test cell."""
    out = []
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        if meta.get("grade") and not meta.get("solution"):
            m = _GRADE_CALL.search(cell.source)
            assert m, f"graded cell {meta['grade_id']} does not call grader.nbgrader_bridge.grade"
            hidden = "### BEGIN HIDDEN TESTS" in cell.source.split(m.group(0))[0]
            out.append((meta["grade_id"], float(meta["points"]), m.group(1), m.group(2), hidden))
    return out


# ---------------------------------------------------------------------------------- notebooks and suites

@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_exercises_graded_cells_match_the_suite(assignment):
    """One graded cell per suite test, with the test's points, hidden exactly when the test is hidden."""
    nb = nbformat.read(solution_path(assignment), as_version=4)
    cells = grade_cells(nb)
    suite = {t.name: t for t in suite_tests(assignment)}
    assert sorted(c[3] for c in cells) == sorted(suite), "every suite test needs exactly one graded cell"
    for gid, pts, a, name, hidden in cells:
        assert a == assignment
        assert pts == suite[name].max_points, f"{gid}: {pts} points, the test has {suite[name].max_points}"
        assert hidden == (not suite[name].visible), f"{gid}: a hidden test must be called in a hidden region"
        assert name not in gid, f"{gid}: a grade id must not name the test (it is in the students' notebook)"
    assert sum(c[1] for c in cells) == max_score(assignment)
    ids = [nbgrader_meta(c).get("grade_id") for c in nb.cells if nbgrader_meta(c)]
    assert len(ids) == len(set(ids)), "nbgrader grade ids must be unique"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_exercises_solution_cells_define_the_functions(assignment):
    nb = nbformat.read(solution_path(assignment), as_version=4)
    ns = solution_namespace(assignment)
    for name in FUNCTIONS[assignment]:
        assert callable(ns.get(name)), f"solutions/{assignment} does not define {name}"
    for cell in nb.cells:
        if nbgrader_meta(cell).get("solution"):
            assert "### BEGIN SOLUTION" in cell.source and "### END SOLUTION" in cell.source
    # the self-check cells are ordinary cells (the grader and nbgrader's checksums leave them alone)
    checks = [c for c in nb.cells
              if c.cell_type == "code" and "check(" in c.source and "grade(" not in c.source]
    assert checks and all(not nbgrader_meta(c) for c in checks)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_exercises_solution_scores_full_marks(assignment):
    scores = score_of(assignment, solution_namespace(assignment))
    assert not lost(scores), {n: s for n, s in scores.items() if s[0] < s[1]}
    assert sum(s[0] for s in scores.values()) == max_score(assignment)


# ----------------------------------------------------------------------------------- exercises/ in sync

def _regenerate(tmp_path: Path) -> Path:
    """``nbgrader generate_assignment`` (nbgrader's own code, in this process) on a copy of the course."""
    from nbgrader.apps import NbGraderAPI
    from traitlets.config.loader import PyFileConfigLoader

    course = tmp_path / "course"
    course.mkdir()
    shutil.copy2(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    shutil.copytree(ROOT / "solutions", course / "solutions")
    config = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
    assert Path(config.CourseDirectory.root) == course  # the config points at its own folder
    config.CourseDirectory.db_url = f"sqlite:///{course / 'gradebook.db'}"
    api = NbGraderAPI(config=config)
    for assignment in ASSIGNMENTS:
        result = api.generate_assignment(assignment)
        assert result["success"], result.get("error") or result.get("log")
    return course / "exercises"


def _cells(path: Path) -> list[tuple]:
    nb = nbformat.read(path, as_version=4)
    return [(c.cell_type, c.source, json.dumps(nbgrader_meta(c), sort_keys=True)) for c in nb.cells]


@pytest.mark.slow
def test_exercises_in_sync_with_solutions(tmp_path):
    """exercises/ is exactly what nbgrader generates from solutions/ (regenerate it if this fails)."""
    fresh = _regenerate(tmp_path)
    for assignment in ASSIGNMENTS:
        committed = exercise_path(assignment)
        assert committed.is_file(), f"exercises/{assignment} is missing: run nbgrader generate_assignment"
        assert _cells(fresh / assignment / f"{assignment}.ipynb") == _cells(committed), (
            f"exercises/{assignment} is out of date: run `nbgrader generate_assignment {assignment} --force "
            f"--db=sqlite:////tmp/gradebook.db` at the repository root")
        extra = {p.name for p in (ROOT / "exercises" / assignment).iterdir()} - {f"{assignment}.ipynb"}
        assert not extra, f"exercises/{assignment} holds files nbgrader did not release: {extra}"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_exercises_hold_no_solution_and_no_hidden_test(assignment):
    from grader.bundle import hidden_test_names, solution_lines

    text = exercise_path(assignment).read_text()
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in text
    for line in solution_lines():
        assert line not in text, f"solution code in exercises/{assignment}: {line!r}"
    for name in hidden_test_names():
        assert not re.search(rf"\b{name}\b", text), f"exercises/{assignment} names the hidden test {name}"
    nb = nbformat.read(exercise_path(assignment), as_version=4)
    stubs = [c for c in nb.cells if nbgrader_meta(c).get("solution")]
    assert stubs and all("raise NotImplementedError()" in c.source for c in stubs)
    # what a student starts from scores nothing, and no test crashes on it
    ns = namespace_of(graded_source(exercise_path(assignment)))
    scores = score_of(assignment, ns)
    assert all(pts == 0 for pts, _, _ in scores.values()), scores
    assert all("NotImplementedError" in msg for _, _, msg in scores.values()), scores


# --------------------------------------------------------------------------------- the same hidden cases

_DRAW_ALL = """
import hashlib, sys
import grader.suite as S
drawn = []
original = S.cases
def recording(strategy, n, **kw):
    out = original(strategy, n, **kw)
    drawn.append(repr(out))
    return out
S.cases = recording  # before the hidden modules bind the name
for name in sys.argv[1:]:
    __import__(name)
S.prepare()
print(len(drawn), hashlib.sha256("\\n".join(drawn).encode()).hexdigest())
"""


@pytest.mark.slow
def test_exercises_hidden_cases_are_the_same_everywhere(tmp_path):
    """Every process draws the same hidden cases, whatever modules it has loaded and wherever it runs: the
    grader's command line and a student's kernel (the nbgrader path) must score the very same cases."""
    import subprocess
    import sys

    runs = []
    other_modules = ["tricksref.batchnorm", "tricksref.schedules", "grader.bundle", "tricksref.dropout",
                     "tricksref.lrn"]
    for cwd, imports in ((ROOT, []), (tmp_path, other_modules)):
        out = subprocess.run([sys.executable, "-c", _DRAW_ALL, *imports], cwd=cwd, capture_output=True,
                             text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]
        runs.append(out.stdout.split())
    assert int(runs[0][0]) >= 10, "prepare() should draw every hidden case set"
    assert runs[0] == runs[1]


# ------------------------------------------------------------------------------------------ self-check

def _check_output(*fns, **kw) -> str:
    from grader import check

    buf = io.StringIO()
    check(*fns, file=buf, **kw)
    return buf.getvalue()


def test_exercises_self_check_reports_visible_tests():
    ns = solution_namespace("lrn")
    text = _check_output(ns["lrn_inter"], ns["lrn_intra"])
    visible = [t for t in suite_tests("lrn", visible_only=True)]
    assert f"Total: {sum(t.max_points for t in visible):g} / {sum(t.max_points for t in visible):g}" in text
    assert all(t.name in text for t in visible)
    hidden = [t.name for t in suite_tests("lrn") if not t.visible]
    assert not any(name in text for name in hidden), "the self-check ran a hidden test"


def test_exercises_self_check_explains_a_mistake():
    ns = solution_namespace("lrn", BUGGY_LRN_INTER)
    text = _check_output(ns["lrn_inter"])
    assert "[FAIL] test_lrn_inter_worked_example" in text and "alpha must not be divided by n" in text
    assert "test_lrn_intra" not in text, "check(lrn_inter) runs the tests of lrn_inter"


def test_exercises_self_check_skips_tests_of_functions_not_written():
    ns: dict = {}
    exec("import torch\n" + solution_cells("lrn")["lrn_inter"], ns)  # lrn_intra not written yet
    text = _check_output(ns["lrn_inter"])
    assert "skipped 1 test(s) that also need lrn_intra" in text and "[FAIL]" not in text
    assert "Total: 2 / 2 points" in text


def test_exercises_self_check_enforces_off_limits_calls():
    ns: dict = {}
    exec("import torch\nimport torch.nn.functional as F\n"
         "from torch.nn.functional import local_response_norm as lrn_t\n"
         "def lrn_inter(a, n, k, alpha, beta):\n    return lrn_t(a, n, alpha, beta, k)\n", ns)
    text = _check_output(ns["lrn_inter"])
    # an alias bound before the guard: torch's dispatch still sees the call
    assert "calls torch.local_response_norm, which is off limits in this assignment" in text
    assert "Total: 0 /" in text
    assert ns["lrn_t"] is torch.nn.functional.local_response_norm, "the guard must restore the namespace"
    import tricksref
    exec("import tricksref\ndef stagewise_sgd(w0, grad_fn, stage_lrs, T):\n"
         "    return tricksref.schedules.stagewise_sgd(w0, grad_fn, stage_lrs, T)\n", ns)
    text = _check_output(ns["stagewise_sgd"])
    # refused on its source, as grading would: "stagewise_sgd was not run: ... tricksref ..."
    assert "stagewise_sgd" in text and "tricksref" in text and "Total: 0 /" in text
    assert ns["tricksref"] is tricksref


def test_exercises_check_is_callable_after_importing_the_module():
    import grader.check  # noqa: F401 - binds the package attribute to the module
    from grader import check

    assert callable(check)
    ns = solution_namespace("stagewise")
    buf = io.StringIO()
    check(ns["stagewise_sgd"], file=buf)
    assert "Total: 5 / 5" in buf.getvalue()


# ----------------------------------------------------------------------------------------------- guards

def test_exercises_guards_install_and_restore():
    import torch.nn.functional as F

    original = F.dropout
    guards.install("dropout")
    try:
        with pytest.raises(StudentError, match="dropout"):
            F.dropout(torch.ones(3))
        with pytest.raises(StudentError, match="native_dropout"):  # torch's kernel, however reached
            torch.ops.aten.native_dropout.default(torch.ones(3), 0.5, True)
        with pytest.raises(StudentError):
            torch.nn.Dropout()(torch.ones(3))
        guards.install("dropout")  # nested
        guards.uninstall("dropout")
        with pytest.raises(StudentError):
            torch.dropout(torch.ones(3), 0.5, True)
    finally:
        guards.uninstall("dropout")
    assert F.dropout is original
    assert torch.nn.functional.local_response_norm(torch.ones(1, 3, 2, 2), 2).shape == (1, 3, 2, 2)


def test_exercises_guards_no_autograd_in_explicit_backward():
    x = torch.ones(3, requires_grad=True)
    with guards.no_autograd("batchnorm_backward"):
        with pytest.raises(StudentError, match="torch.autograd"):
            (x * 2).sum().backward()
        grad = torch.autograd.grad  # a reference captured before
        with pytest.raises(StudentError):
            grad((x * 2).sum(), x)
        with pytest.raises(StudentError):
            torch.autograd.grad((x * 2).sum(), x)
        with pytest.raises(StudentError):
            torch.autograd.functional.vjp(lambda t: t * 2, x, torch.ones(3))
        _, vjp_fn = torch.func.vjp(lambda t: t * 2, x)  # the transform is set up: the gradient is refused
        with pytest.raises(StudentError):
            vjp_fn(torch.ones(3))
    (x * 2).sum().backward()  # restored
    assert torch.equal(x.grad, torch.full((3,), 2.0))


def test_exercises_policy_refuses_off_limits_source():
    from grader.policy import for_assignment

    src = ("import torch\nimport torch.nn.functional as F\nfrom tricksref import dropout\n"
           "def dropout_forward(x, p, training, generator=None):\n    return F.dropout(x, p), None\n"
           "def dropout_backward(dout, mask, p):\n    dout.backward()\n"
           "    return torch.autograd.grad(1, 2)\n")
    checked = for_assignment("dropout").check([(4, src)])
    refused = checked.refused
    assert "line 5" in refused["dropout_forward"] and "dropout is off limits" in refused["dropout_forward"]
    assert "line 7" in refused["dropout_backward"] and "autograd" in refused["dropout_backward"]
    assert any("cell 4, line 3" in n and "tricksref" in n for n in checked.notes)
    # line numbers are kept: the stub sits on the function's first line, the rest is blank
    lines = checked.cells[0][1].split("\n")
    assert lines[3].startswith("def dropout_forward(*args, **kwargs): raise") and lines[4] == ""
    solution = solution_cells("dropout")
    assert for_assignment("dropout").check([(1, solution["dropout_forward"]),
                                            (2, solution["dropout_backward"])]).refusals == []
    assert for_assignment("lrn").check([(1, "def lrn_inter(:")]).cells == [(1, "def lrn_inter(:")]
    assert for_assignment("lrn").check([(1, "from torch.nn.functional import local_response_norm")]).notes


# --------------------------------------------------------------------------------------- nbgrader bridge

def test_exercises_bridge_scores_one_test_quietly():
    from grader.nbgrader_bridge import grade

    ns = solution_namespace("lrn", BUGGY_LRN_INTER + "\nimport sys, warnings\n"
                            "_old = lrn_inter\n"
                            "def lrn_inter(*a):\n    print('noise', file=sys.stderr)\n"
                            "    warnings.warn('careful')\n    return _old(*a)\n")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning must not escape as an exception either
        assert grade("lrn", "test_lrn_inter_worked_example", ns) == 0.0
        full = grade("lrn", "test_lrn_intra_values", ns)
        bad = grade("lrn", "test_no_such_test", ns)
    assert full == 3.0 and bad == 0.0
    assert err.getvalue() == "", "nbgrader gives 0 to a graded cell that writes to stderr"
    assert "0 / 1 points" in out.getvalue() and "alpha must not be divided by n" in out.getvalue()
    assert "test_lrn_intra_values" not in out.getvalue(), "the bridge must not print a hidden test's name"
    assert "could not run this test" in out.getvalue()


def test_exercises_bridge_default_namespace_is_the_callers():
    from grader.nbgrader_bridge import grade

    g = solution_namespace("stagewise")
    g["grade"] = grade
    with contextlib.redirect_stdout(io.StringIO()):
        exec("points = grade('stagewise', 'test_stagewise_small')", g)
    assert g["points"] == 1.0


# a known bug shared by the tests here and test_suites_lrn: alpha divided by n
BUGGY_LRN_INTER = '''
def lrn_inter(a, n, k, alpha, beta):
    half = n // 2
    C = a.shape[1]
    padded = torch.nn.functional.pad(a * a, (0, 0, 0, 0, half, half))
    window = sum(padded[:, d:d + C] for d in range(2 * half + 1))
    return a / (k + alpha / n * window) ** beta
'''


def test_exercises_student_notebook_helper_rewrites_only_solution_cells():
    nb = student_notebook("lrn", {"lrn_inter": "def lrn_inter(*a):\n    return 1"})
    rewritten = [c for c in nb.cells if nbgrader_meta(c).get("grade_id") == "lrn_inter"]
    assert rewritten[0].source.startswith("def lrn_inter(*a)")
    kept = [c for c in nb.cells if nbgrader_meta(c).get("grade_id") == "lrn_intra"]
    assert "raise NotImplementedError()" in kept[0].source


def test_score_partial_credit_and_one_message_per_mistake():
    from grader.suite import Partial, Score
    s = Score()
    s.check(True, "unused", weight=2)
    s.check(False, "dropout_forward is not written yet (visible (4, 8) input, p=0.5)")
    s.check(False, "dropout_forward is not written yet (visible (4, 8) input, p=0.25)")  # the same mistake
    s.check(False, "the mask is not scaled")
    with pytest.raises(Partial) as info:
        s.done()
    assert info.value.fraction == pytest.approx(2 / 5)
    assert info.value.message == ("dropout_forward is not written yet (visible (4, 8) input, p=0.5); "
                                  "the mask is not scaled")
