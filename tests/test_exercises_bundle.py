"""The bundles (``python -m grader bundle OUT --edition student|solutions``): what students receive holds no
answer, and the student bundle's self-check works on its own.

Answers don't travel: the student bundle's library is pasted into each exercise, behind a three-line adapter,
and graded by the real grader: it earns no more than the released notebook plus what an identity function
earns (and at most a quarter of the points). The same bundle's ``check()``, in a Python that sees only the
bundle, gives a correct solution full visible marks.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from test_exercises_notebooks import ROOT, solution_cells, student_notebook

from grader import bundle
from grader.suite import ASSIGNMENTS, FUNCTIONS, max_score
from grader.suite import tests as suite_tests

sys.path.insert(0, str(Path(__file__).parent / "hostile"))
import corpus  # noqa: E402

SITE = ROOT / "_build" / "html"
TEXT = {".py", ".ipynb", ".html", ".js", ".txt", ".md", ".json", ".toml", ".css", ".svg", ""}


def _site_edition(path: Path) -> str | None:
    return (path / "EDITION").read_text().strip() if (path / "EDITION").is_file() else None


def _findings(folder: Path) -> list[str]:
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
        found += [f"{rel}: solution line {line!r}" for line in lines if line in text]
    return found


@pytest.fixture(scope="module")
def student_bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "student"
    bundle.build(out, edition="student", site=_site_edition(SITE) == "student")
    return out


def test_exercises_bundle_holds_what_students_get(student_bundle):
    for a in ASSIGNMENTS:
        assert (student_bundle / "exercises" / a / f"{a}.ipynb").is_file()
        assert (student_bundle / "grader" / "suites" / f"{a}.py").is_file()
        assert (student_bundle / "grader" / "suites" / "expected" / f"{a}.grt").is_file()
        assert (student_bundle / "grader" / "probes" / f"{a}.py").is_file()
    for name in ("check.py", "suite.py", "guards.py", "policy.py", "nbgrader_bridge.py", "submission.py",
                 "transport.py", "replies.py", "expected.py"):
        assert (student_bundle / "grader" / name).is_file()
    assert (student_bundle / "tricksref" / "__init__.py").is_file()
    assert (student_bundle / "tricksref" / "student" / "lrn.py").is_file()
    assert (student_bundle / "EDITION").read_text() == "student\n"
    for never in ("solutions", "grader/hidden", "grader/reference", "grader/sandbox", "grader/cli.py",
                  "grader/bundle.py", "grader/grading.py", "tricksref/scratch", "gradebook.db"):
        assert not (student_bundle / never).exists(), never
    assert not list(student_bundle.rglob("gradebook.db*")) and not list(student_bundle.rglob("__pycache__"))


def test_exercises_bundle_has_no_solution_and_no_hidden_case(student_bundle):
    # every file, the library and the site's sources included
    assert _findings(student_bundle) == []
    assert bundle.leaks(student_bundle) == []


def test_exercises_built_student_site_has_no_solution_and_no_hidden_case():
    if _site_edition(SITE) != "student":
        pytest.skip("the student edition of the site is not built (make site)")
    assert _findings(SITE) == []


def test_exercises_bundle_refuses_to_leak(tmp_path):
    """A solution that slipped into exercises/ or the library stops the bundle, which is then removed."""
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
        bundle.build(out, root=fake, site=False)
    assert not out.exists()
    shutil.copy2(ROOT / "exercises" / "lrn" / "lrn.ipynb", leaked)
    (fake / "tricksref" / "helpers.py").write_text(solution_cells("dropout")["dropout_forward"])
    with pytest.raises(RuntimeError, match="tricksref/helpers.py: contains solution code"):
        bundle.build(out, root=fake, site=False)
    with pytest.raises(ValueError, match="outside the sources"):
        bundle.build(fake / "exercises" / "x", root=fake)


def test_exercises_bundle_refuses_a_site_of_the_other_edition(tmp_path):
    fake = tmp_path / "repo"
    for part in ("exercises", "tricksref", "solutions", "grader"):
        shutil.copytree(ROOT / part, fake / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "requirements.txt", fake)
    html = fake / "_build" / "html"
    html.mkdir(parents=True)
    (html / "index.html").write_text("<html></html>")
    (html / "EDITION").write_text("solutions\n")
    with pytest.raises(ValueError, match="the solutions edition, not the student one"):
        bundle.build(tmp_path / "out", root=fake)


def test_exercises_bundle_command(tmp_path):
    out = tmp_path / "b"
    run = subprocess.run([sys.executable, "-m", "grader", "bundle", str(out), "--no-site"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert (out / "exercises").is_dir() and not (out / "site").exists()
    assert not (out / "tricksref" / "scratch").exists()
    again = subprocess.run([sys.executable, "-m", "grader", "bundle", str(out)], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 2 and "exists" in again.stderr
    solutions = subprocess.run([sys.executable, "-m", "grader", "bundle", str(tmp_path / "s"), "--no-site",
                                "--edition", "solutions"], cwd=ROOT, capture_output=True, text=True,
                               timeout=600)
    assert solutions.returncode == 0, solutions.stderr
    assert (tmp_path / "s" / "tricksref" / "scratch").is_dir()
    assert (tmp_path / "s" / "EDITION").read_text() == "solutions\n"
    assert not (tmp_path / "s" / "grader" / "hidden").exists()


# --------------------------------------------------------------------------------- the bundle on its own

_STANDALONE = r"""
import io, json, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]     # the bundle, then the packages (no .pth: no editable install)
import grader, tricksref, torch
assert grader.__file__.startswith(sys.argv[1]) and tricksref.__file__.startswith(sys.argv[1])
try:
    import tricksref.scratch
    scratch = True
except ImportError:
    scratch = False
from grader.suite import hidden_available, max_score
from grader import check
out = {"edition": tricksref.EDITION, "scratch": scratch, "hidden": hidden_available(), "reports": {}}
for assignment, code in json.loads(sys.stdin.read()).items():
    ns = {}
    exec(code, ns)
    buf = io.StringIO()
    functions = [ns[name] for name in ns["FUNCTIONS"]]
    check(*functions, file=buf)
    out["reports"][assignment] = buf.getvalue()
from grader.nbgrader_bridge import grade
ns = {}
exec(json.loads(sys.argv[3]), ns)
out["visible"] = grade("lrn", "test_lrn_inter_worked_example", ns)
out["hidden_test"] = grade("lrn", "test_lrn_inter_" + "values", ns)
print(json.dumps(out))
"""


def test_exercises_bundle_self_check_runs_on_its_own(student_bundle):
    """In a Python that sees only the bundle (not this repository, so no from-scratch library), the student
    edition's self-check gives each assignment's solution full visible marks, from the shipped expected
    values, and the hidden tests are simply not there."""
    codes = {}
    for a in ASSIGNMENTS:
        cells = solution_cells(a)
        codes[a] = "import math\nimport torch\n" + "\n".join(cells[f] for f in FUNCTIONS[a]) + \
            f"\nFUNCTIONS = {list(FUNCTIONS[a])!r}\n"
    purelib = sysconfig.get_paths()["purelib"]
    run = subprocess.run([sys.executable, "-S", "-c", _STANDALONE, str(student_bundle), purelib,
                          json.dumps(codes["lrn"])], input=json.dumps(codes), capture_output=True, text=True,
                         timeout=900, cwd=student_bundle / "exercises")
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.splitlines()[-1])
    assert out["edition"] == "student" and not out["scratch"] and not out["hidden"]
    for a in ASSIGNMENTS:
        visible = sum(t.max_points for t in suite_tests(a, visible_only=True))
        assert visible < max_score(a)
        assert f"Total: {visible:g} / {visible:g} points" in out["reports"][a], out["reports"][a]
    assert out["visible"] == 1.0 and out["hidden_test"] == 0.0


# ------------------------------------------------------------------------------- answers don't travel

#: for each exercise: the bundled module to paste (student edition), the edits that make it a notebook cell
#: (a relative import has no package to go to), and the adapter to the exercise's signature
PASTE = {
    "lrn": ("tricksref/student/lrn.py", {}, """
def lrn_inter(a, n, k, alpha, beta):
    return local_response_norm(a, n, alpha, beta, k, "inter", "alexnet")
def lrn_intra(a, n, k, alpha, beta):
    return local_response_norm(a, n, alpha, beta, k, "intra", "alexnet")
"""),
    "batchnorm": ("tricksref/student/batchnorm.py", {}, """
def batchnorm_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    out = batch_norm(x, running_mean, running_var, gamma, beta, training, momentum, eps)
    return out, (x, gamma, beta, running_mean, running_var, eps)
def batchnorm_backward(dout, cache):
    x, gamma, beta, rm, rv, eps = cache
    x, gamma, beta = (t.detach().requires_grad_(True) for t in (x, gamma, beta))
    with torch.enable_grad():
        out = batch_norm(x, rm.clone(), rv.clone(), gamma, beta, True, 0.1, eps)
        return torch.autograd.grad(out, (x, gamma, beta), dout)
"""),
    "dropout": ("tricksref/student/dropout.py", {}, """
def dropout_forward(x, p, training, generator=None):
    if not training:
        return x, None
    out = dropout(x, p, generator, False)
    return out, out != 0
def dropout_backward(dout, mask, p):
    raise NotImplementedError()  # the library has no backward to paste: autograd is its backward
"""),
    "stagewise": ("tricksref/student/schedules.py", {
        "from ..schedules import StagewiseLR": "from torch.optim.lr_scheduler import LambdaLR",
        "sched = StagewiseLR(opt, stage_lrs=etas, iters_per_stage=Ts)":
            "sched = LambdaLR(opt, lambda s: etas[min(s // Ts[0], len(etas) - 1)] / etas[0])",
        "def stagewise_sgd(": "def stagewise_sgd_impl("}, """
def stagewise_sgd(w0, grad_fn, stage_lrs, iters_per_stage):
    return stagewise_sgd_impl(w0, grad_fn, stage_lrs, [iters_per_stage] * len(stage_lrs), lambda g, w, s: g)
"""),
}


def pasted_code(bundle_dir: Path, assignment: str) -> str:
    """The bundled module behind ``assignment``, made a notebook cell, and the adapter."""
    module, edits, adapter = PASTE[assignment]
    code = (bundle_dir / module).read_text().replace("from __future__ import annotations\n", "")
    for old, new in edits.items():
        assert old in code, (module, old)
        code = code.replace(old, new)
    return code + "\n" + adapter


def _pasted_notebook(bundle_dir: Path, assignment: str, tmp: Path) -> Path:
    import nbformat

    first, *rest = FUNCTIONS[assignment]
    nb = student_notebook(assignment, {first: pasted_code(bundle_dir, assignment),
                                       **{f: f"# {f}: see above" for f in rest}})
    path = tmp / assignment / f"{assignment}.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(nb, str(path))
    return path


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_exercises_bundle_paste_works_where_nothing_refuses_it(student_bundle, assignment):
    """The pasted library is a real answer when nothing checks the rules (run here, in-process): only the
    grader's rules make it worth nothing in the next test."""
    from grader.submission import InProcessSubmission
    from grader.suite import run_suite

    ns: dict = {}
    exec(compile("import math\nimport torch\n" + pasted_code(student_bundle, assignment), "<cell 1>", "exec"),
         ns)
    # the backward functions: the library's is autograd, which the probe itself refuses there
    provided = set(FUNCTIONS[assignment]) - {"dropout_backward", "batchnorm_backward"}
    names = [t.name for t in suite_tests(assignment, visible_only=True) if set(t.functions) <= provided]
    results = run_suite(assignment, InProcessSubmission(ns), visible_only=True, only=names)
    assert names and all(r.passed for r in results), [(r.name, r.message) for r in results if not r.passed]


def _identity_notebook(assignment: str, tmp: Path) -> Path:
    """The released notebook with functions that return their input (the corpus's identity garbage)."""
    import nbformat

    nb = student_notebook(assignment, corpus._garbage(assignment, "identity"))
    path = tmp / "identity" / assignment / f"{assignment}.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(nb, str(path))
    return path


@pytest.mark.slow
def test_exercises_bundle_library_pasted_into_the_exercises_earns_nothing(student_bundle, tmp_path):
    """The student edition's library, pasted into each exercise with an adapter, graded as an instructor
    grades: no more than the released notebook plus an identity function, and at most a quarter."""
    pasted = {a: _pasted_notebook(student_bundle, a, tmp_path / "pasted") for a in ASSIGNMENTS}
    released = {a: ROOT / "exercises" / a / f"{a}.ipynb" for a in ASSIGNMENTS}
    identity = {a: _identity_notebook(a, tmp_path) for a in ASSIGNMENTS}
    paths = [*pasted.values(), *released.values(), *identity.values()]
    run = subprocess.run([sys.executable, "-m", "grader", "grade", "--json", *map(str, paths)], cwd=ROOT,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    scores = {r["notebook"]: r for r in map(json.loads, run.stdout.splitlines())}
    for a in ASSIGNMENTS:
        got = scores[str(pasted[a])]
        baseline = scores[str(released[a])]["score"] + scores[str(identity[a])]["score"]
        assert got["score"] <= baseline, (a, got["score"], baseline, got["error"])
        assert got["score"] <= max_score(a) / 4, (a, got["score"])
        print(f"{a}: pasted {got['score']:g}/{got['max_score']:g}, released + identity {baseline:g}")
