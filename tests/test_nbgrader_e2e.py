"""The instructor's whole workflow, end to end, with the real commands, on a scratch copy of the course.

``nbgrader generate_assignment``, a handful of submissions (correct, a common mistake, left empty, a syntax
error), ``nbgrader autograde``, the gradebook's scores (nbgrader's Gradebook API), ``nbgrader
generate_feedback``, and the grader's own scores for the same notebooks (``python -m grader grade --json``):
the expected scores, cell by cell equal between the two paths. nbgrader costs a few seconds per notebook, so
this runs six notebooks, not dozens.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from test_exercises_notebooks import (
    BUGGY_LRN_INTER,
    ROOT,
    grade_cells,
    score_of,
    solution_cells,
    solution_namespace,
    solution_path,
)
from test_suites_stagewise import BUGS as STAGEWISE_BUGS

from grader.bundle import hidden_test_names
from grader.suite import max_score
from grader.suite import tests as suite_tests

pytestmark = pytest.mark.slow

NBGRADER = [str(Path(sys.executable).with_name("nbgrader"))]
# a loaded machine can take long to start a kernel and import torch; the defaults are 30 s per cell
SLOW_MACHINE = ["--Execute.timeout=600", "--Execute.startup_timeout=600"]
SYNTAX_ERROR = "def lrn_inter(a, n, k, alpha, beta):\n    return a / (k + alpha *\n"


def _run(cmd: list[str], cwd: Path, timeout: int = 900) -> str:
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout + out.stderr


def _submit(course: Path, student: str, assignment: str, sources: dict[str, str]) -> Path:
    """The released notebook with the solution cells whose grade_id is in ``sources`` filled in."""
    nb = nbformat.read(course / "exercises" / assignment / f"{assignment}.ipynb", as_version=4)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and meta.get("grade_id") in sources:
            cell.source = sources[meta["grade_id"]]
    path = course / "submitted" / student / assignment / f"{assignment}.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(nb, path)
    return path


def _expected(assignment: str, *overrides: str) -> float:
    scores = score_of(assignment, solution_namespace(assignment, *overrides))
    return round(sum(p for p, _, _ in scores.values()), 3)


def test_nbgrader_e2e_autograde_and_the_grader_agree(tmp_path):
    course = tmp_path / "course"
    course.mkdir()
    shutil.copy2(ROOT / "nbgrader_config.py", course)
    shutil.copytree(ROOT / "solutions", course / "solutions")

    # 1. release
    for assignment in ("lrn", "stagewise"):
        _run(NBGRADER + ["generate_assignment", assignment], course)
        assert (course / "exercises" / assignment / f"{assignment}.ipynb").is_file()

    # 2. a handful of submissions, with the scores they must get
    lrn, stagewise = solution_cells("lrn"), solution_cells("stagewise")
    # lrn_inter does not compile: the tests of lrn_intra alone, and the cases of lrn_intra in the others
    intra_only = _expected("lrn", "del lrn_inter\n")
    assert sum(t.max_points for t in suite_tests("lrn") if t.functions == ("lrn_intra",)) < intra_only
    step_bug = STAGEWISE_BUGS["step_counter_restarts_each_stage"][0]
    cases = {
        ("alice", "lrn"): (lrn, max_score("lrn")),                                   # correct
        ("bob", "lrn"): (dict(lrn, lrn_inter=BUGGY_LRN_INTER), _expected("lrn", BUGGY_LRN_INTER)),
        ("carol", "lrn"): ({}, 0.0),                                                 # left empty
        ("dave", "lrn"): (dict(lrn, lrn_inter=SYNTAX_ERROR), intra_only),           # a syntax error
        ("alice", "stagewise"): (stagewise, max_score("stagewise")),
        ("bob", "stagewise"): ({"stagewise_sgd": step_bug}, _expected("stagewise", step_bug)),
    }
    assert 0 < cases["bob", "lrn"][1] < max_score("lrn") and 0 < intra_only < max_score("lrn")
    assert 0 < cases["bob", "stagewise"][1] < max_score("stagewise")
    paths = {key: _submit(course, *key, sources) for key, (sources, _) in cases.items()}

    # 3. nbgrader autograde and the gradebook
    for assignment in ("lrn", "stagewise"):
        _run(NBGRADER + ["autograde", assignment] + SLOW_MACHINE, course)
    from nbgrader.api import Gradebook

    test_of = {}  # assignment -> grade_id -> suite test
    for a in ("lrn", "stagewise"):
        cells = grade_cells(nbformat.read(solution_path(a), as_version=4))
        test_of[a] = {gid: name for gid, _, _, name, _ in cells}
    nbgrader_scores: dict = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for (student, assignment), (_, expected) in cases.items():
            nb = gb.find_submission_notebook(assignment, assignment, student)
            assert nb.max_score == max_score(assignment)
            cells = test_of[assignment]
            per_test = {cells[g.name]: g.score for g in nb.grades if g.name in cells}
            assert len(per_test) == len(suite_tests(assignment))
            nbgrader_scores[student, assignment] = per_test
            assert nb.score == pytest.approx(expected, abs=1e-9), (student, assignment, per_test)

    # 4. feedback: generated, with the points and the messages, without the hidden tests
    for assignment in ("lrn", "stagewise"):
        _run(NBGRADER + ["generate_feedback", assignment], course)
    hidden = re.compile(r"\b(" + "|".join(sorted(hidden_test_names())) + r")\b")
    for (student, assignment), (_, expected) in cases.items():
        html = (course / "feedback" / student / assignment / f"{assignment}.html").read_text()
        assert f"Score: {round(expected, 2)} / {round(max_score(assignment), 2)}" in html  # the template's
        assert "BEGIN HIDDEN TESTS" not in html and not hidden.search(html), "feedback shows the hidden tests"
    bob = (course / "feedback" / "bob" / "lrn" / "lrn.html").read_text()
    assert "alpha must not be divided by n" in bob

    # 5. the grader's own scores for the same notebooks: the same, test by test
    out = _run([sys.executable, "-m", "grader", "grade", *map(str, paths.values()), "--json"], ROOT)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(lines) == len(cases)
    for (key, (_, expected)), result in zip(cases.items(), lines, strict=True):
        assert result["assignment"] == key[1] and result["max_score"] == max_score(key[1])
        assert result["score"] == pytest.approx(expected, abs=1e-9), (key, result)
        grader_scores = {t["name"]: t["points"] for t in result["tests"]}
        assert grader_scores == pytest.approx(nbgrader_scores[key], abs=1e-9), key
