"""The student bundle (``python -m grader bundle OUT``) and the built site hold no solution and no hidden
test, and the bundle's self-check works on its own, without the instructor's repository."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from test_exercises_notebooks import ROOT, solution_cells

from grader import bundle
from grader.suite import ASSIGNMENTS, max_score
from grader.suite import tests as suite_tests

SITE = ROOT / "_build" / "html"
TEXT = {".py", ".ipynb", ".html", ".js", ".txt", ".md", ".json", ".toml", ".css", ".svg", ""}


def _findings(folder: Path, *, skip_solution_lines_in: tuple[str, ...] = ()) -> list[str]:
    """Solution code, nbgrader markers and hidden test names in ``folder`` (independent of bundle.leaks)."""
    lines = bundle.solution_lines()
    names = bundle.hidden_test_names()
    assert len(lines) > 20 and len(names) > 20, "the search needs something to look for"
    hidden = re.compile(r"\b(" + "|".join(sorted(names)) + r")\b")
    found = []
    for path in folder.rglob("*"):
        if not path.is_file() or path.suffix not in TEXT:
            continue
        text = path.read_text(errors="ignore")
        rel = path.relative_to(folder).as_posix()
        if "BEGIN SOLUTION" in text or "BEGIN HIDDEN TESTS" in text:
            found.append(f"{rel}: nbgrader marker")
        if m := hidden.search(text):
            found.append(f"{rel}: hidden test {m.group(1)}")
        if not rel.startswith(skip_solution_lines_in):
            found += [f"{rel}: solution line {line!r}" for line in lines if line in text]
    return found


@pytest.fixture(scope="module")
def student_bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "student"
    bundle.build(out)
    return out


def test_exercises_bundle_holds_what_students_get(student_bundle):
    for a in ASSIGNMENTS:
        assert (student_bundle / "exercises" / a / f"{a}.ipynb").is_file()
        assert (student_bundle / "grader" / "suites" / f"{a}.py").is_file()
        assert (student_bundle / "grader" / "probes" / f"{a}.py").is_file()
    for name in ("check.py", "suite.py", "guards.py", "nbgrader_bridge.py", "submission.py", "transport.py"):
        assert (student_bundle / "grader" / name).is_file()
    assert (student_bundle / "tricksref" / "__init__.py").is_file()
    assert (student_bundle / "site" / "index.html").is_file() == (SITE / "index.html").is_file()
    for never in ("solutions", "grader/hidden", "grader/sandbox", "grader/cli.py", "grader/bundle.py",
                  "gradebook.db"):
        assert not (student_bundle / never).exists(), never
    assert not list(student_bundle.rglob("gradebook.db*")) and not list(student_bundle.rglob("__pycache__"))


def test_exercises_bundle_has_no_solution_and_no_hidden_case(student_bundle):
    # tricksref is the reference students get anyway: it may compute a line the way a solution does
    assert _findings(student_bundle, skip_solution_lines_in=("tricksref/",)) == []
    assert bundle.leaks(student_bundle) == []


def test_exercises_built_site_has_no_solution_and_no_hidden_case():
    if not (SITE / "index.html").is_file():
        pytest.skip("the site is not built (make site)")
    assert _findings(SITE) == []


def test_exercises_bundle_refuses_to_leak(tmp_path):
    """A solution that slipped into exercises/ stops the bundle, which is then removed."""
    fake = tmp_path / "repo"
    for part in ("exercises", "tricksref", "solutions", "grader"):
        shutil.copytree(ROOT / part, fake / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "requirements.txt", fake)
    leaked = fake / "exercises" / "lrn" / "lrn.ipynb"
    nb = json.loads(leaked.read_text())
    nb["cells"].append({"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                        "source": solution_cells("lrn")["lrn_inter"]})
    leaked.write_text(json.dumps(nb))
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="exercises/lrn/lrn.ipynb: contains solution code"):
        bundle.build(out, root=fake)
    assert not out.exists()
    with pytest.raises(ValueError, match="outside the sources"):
        bundle.build(fake / "exercises" / "x", root=fake)


def test_exercises_bundle_command(tmp_path):
    out = tmp_path / "b"
    run = subprocess.run([sys.executable, "-m", "grader", "bundle", str(out), "--no-site"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert (out / "exercises").is_dir() and not (out / "site").exists()
    again = subprocess.run([sys.executable, "-m", "grader", "bundle", str(out)], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 2 and "exists" in again.stderr


_STANDALONE = r"""
import io, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]     # the bundle, then the packages (no .pth: no editable install)
import grader, tricksref, torch
assert grader.__file__.startswith(sys.argv[1]) and tricksref.__file__.startswith(sys.argv[1])
from grader.suite import hidden_available, max_score
print("hidden", hidden_available())
print("max", max_score("lrn"))
ns = {}
exec(sys.stdin.read(), ns)
from grader import check
buf = io.StringIO()
check(ns["lrn_inter"], ns["lrn_intra"], file=buf)
print(buf.getvalue())
from grader.nbgrader_bridge import grade
print("visible", grade("lrn", "test_lrn_inter_worked_example", ns))
print("hidden test", grade("lrn", "test_lrn_inter_" + "values", ns))
"""


def test_exercises_bundle_self_check_runs_on_its_own(student_bundle):
    """In a Python that sees only the bundle (not this repository), the self-check and the visible graded
    cells work, and the hidden tests are simply not there."""
    code = "import torch\n" + solution_cells("lrn")["lrn_inter"] + "\n" + solution_cells("lrn")["lrn_intra"]
    purelib = sysconfig.get_paths()["purelib"]
    run = subprocess.run([sys.executable, "-S", "-c", _STANDALONE, str(student_bundle), purelib], input=code,
                         capture_output=True, text=True, timeout=600, cwd=student_bundle / "exercises")
    assert run.returncode == 0, run.stderr[-3000:]
    visible = sum(t.max_points for t in suite_tests("lrn", visible_only=True))
    assert "hidden False" in run.stdout and f"max {visible}" in run.stdout
    assert visible < max_score("lrn")
    assert f"Total: {visible:g} / {visible:g} points" in run.stdout
    assert "visible 1.0" in run.stdout and "hidden test 0.0" in run.stdout
    assert "hidden tests are not installed here" in run.stdout
