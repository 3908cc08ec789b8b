"""``python -m grader grade``: the JSON contract, broken notebooks, the CSV, and the nbgrader course mode.

The tiny ``toy`` assignment of ``tests/hostile/`` (``scale(x, c) = x * c``, 3 points) keeps these tests
independent of the course's assignments; the course mode runs on a real nbgrader course made here
(``nbgrader generate_assignment``, its gradebook, ``nbgrader generate_feedback``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest

from grader.cli import main
from grader.sandbox import ForkServer

HERE = Path(__file__).parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE / "hostile"))
import toy_suite  # noqa: E402

TOY = {"toy": str(HERE / "hostile" / "toy_probe.py")}
KEYS = {"notebook", "assignment", "score", "max_score", "tests", "error"}
CORRECT = "def scale(x, c):\n    return x * c\n"
FAST = ["--timeout", "3", "--load-timeout", "5", "--notebook-timeout", "20"]


def toy_notebook(path: Path, solution: str | None = CORRECT, *, extra_cells=(), source_version=False) -> Path:
    """A ``toy`` notebook as nbgrader makes them: a locked imports cell, the solution cell, graded cells."""
    def md(**kw):
        return {"nbgrader": {"schema_version": 3, "task": False, **kw}}

    cells = [nbformat.v4.new_markdown_cell("# Toy assignment\nWrite `scale(x, c)`."),
             nbformat.v4.new_code_cell("import torch", metadata=md(grade=False, grade_id="imports",
                                                                   locked=True, solution=False)),
             nbformat.v4.new_code_cell(
                 ("def scale(x, c):\n    ### BEGIN SOLUTION\n    return x * c\n    ### END SOLUTION\n"
                  if source_version else solution),
                 metadata=md(grade=False, grade_id="scale", locked=False, solution=True)),
             nbformat.v4.new_code_cell("print(scale(torch.ones(2), 3.0))  # scratch: not graded"),
             *extra_cells,
             nbformat.v4.new_code_cell("from grader.nbgrader_bridge import grade\n"
                                       "grade('toy', 'test_toy_values')",
                                       metadata=md(grade=True, grade_id="values", locked=True, points=2,
                                                   solution=False)),
             nbformat.v4.new_code_cell(
                 "from grader.nbgrader_bridge import grade\n### BEGIN HIDDEN TESTS\n"
                 "grade('toy', ['test_toy_unmodified'])\n### END HIDDEN TESTS",
                 metadata=md(grade=True, grade_id="unmodified", locked=True, points=1, solution=False))]
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3",
                                                                         "display_name": "Python 3",
                                                                         "language": "python"}})
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


@pytest.fixture(scope="module", autouse=True)
def shared_server():
    """One fork server for the module's in-process runs (a ``grade`` call starts its own otherwise)."""
    global SERVER
    SERVER = ForkServer(extra_probes=TOY)
    yield SERVER
    SERVER.close()
    SERVER = None


SERVER = None


def run_cli(args, **kw) -> tuple[int, str]:
    out = io.StringIO()
    server = None if "--isolation" in args else SERVER
    rc = main(["grade", *args], suites=toy_suite, extra_probes=TOY, out=out, server=server, **kw)
    return rc, out.getvalue()


# ---------------------------------------------------------------------------------------------------------
# the JSON contract


def test_cli_json_contract_and_order(tmp_path):
    good = toy_notebook(tmp_path / "a" / "toy.ipynb")
    wrong = toy_notebook(tmp_path / "b" / "toy.ipynb", "def scale(x, c):\n    return x + c\n")
    mutating = toy_notebook(tmp_path / "c" / "toy.ipynb", "def scale(x, c):\n    x.mul_(c)\n    return x\n")
    rc, out = run_cli(["--json", "--jobs", "2", *FAST, str(good), str(wrong), str(mutating)])
    assert rc == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["notebook"] for r in rows] == [str(good), str(wrong), str(mutating)]
    for r in rows:
        assert set(r) == KEYS and r["assignment"] == "toy" and r["max_score"] == 3.0
        assert [t["name"] for t in r["tests"]] == ["test_toy_values", "test_toy_unmodified"]
        assert all(set(t) == {"name", "points", "max_points", "passed", "message"} for t in r["tests"])
        assert r["score"] == sum(t["points"] for t in r["tests"])
    assert rows[0]["score"] == 3.0 and rows[0]["error"] is None
    assert rows[1]["score"] == 0.0 and "x * c" in rows[1]["tests"][0]["message"]
    assert rows[2]["score"] == 2.0 and "in place" in rows[2]["tests"][1]["message"]


@pytest.mark.parametrize("kind", ["not_json", "no_cells", "syntax", "no_graded_cells", "missing_file",
                                  "raises_at_import"])
def test_cli_broken_notebook_is_graded_zero_with_a_message(tmp_path, kind):
    path = tmp_path / "toy.ipynb"
    expect = {"not_json": "not valid JSON", "no_cells": "no cells", "syntax": "does not compile",
              "no_graded_cells": "no graded cells", "missing_file": "could not be read",
              "raises_at_import": "ZeroDivisionError"}[kind]
    if kind == "not_json":
        path.write_text('{"cells": [')
    elif kind == "no_cells":
        path.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    elif kind == "syntax":
        toy_notebook(path, "def scale(x, c)\n    return x * c\n")
    elif kind == "no_graded_cells":
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CORRECT)]), str(path))
    elif kind == "raises_at_import":
        toy_notebook(path, "1 / 0\n" + CORRECT)
    rc, out = run_cli(["--json", *FAST, str(path)])
    assert rc == 0
    (r,) = [json.loads(line) for line in out.splitlines()]
    assert r["score"] == 0.0 and r["max_score"] == 3.0 and r["assignment"] == "toy"
    assert expect in r["error"], r["error"]
    assert len(r["tests"]) == 2 and not any(t["passed"] for t in r["tests"])


def test_cli_unknown_assignment_is_reported_not_crashed(tmp_path):
    path = toy_notebook(tmp_path / "homework7.ipynb")
    rc, out = run_cli(["--json", str(path)])
    (r,) = [json.loads(line) for line in out.splitlines()]
    assert rc == 0 and r["score"] == 0.0 and "which assignment" in r["error"]
    assert "--assignment" in r["error"]
    rc, out = run_cli(["--json", *FAST, "--assignment", "toy", str(path)])
    assert json.loads(out)["score"] == 3.0


def test_cli_solution_cell_ids_find_the_assignment(tmp_path):
    # a notebook renamed beyond recognition still carries nbgrader's cell ids (lrn_inter for lrn)
    path = toy_notebook(tmp_path / "homework7.ipynb")
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("solution"):
            cell["metadata"]["nbgrader"]["grade_id"] = "toy_scale"
    path.write_text(json.dumps(nb))
    rc, out = run_cli(["--json", *FAST, str(path)])
    r = json.loads(out)
    assert rc == 0 and r["assignment"] == "toy" and r["score"] == 3.0, r


def test_cli_renamed_copy_and_metadata_find_the_assignment(tmp_path):
    renamed = toy_notebook(tmp_path / "toy-Copy1.ipynb")
    tagged = toy_notebook(tmp_path / "whatever.ipynb")
    nb = json.loads(tagged.read_text())
    nb["metadata"]["nbgrader"] = {"assignment": "toy"}
    tagged.write_text(json.dumps(nb))
    rc, out = run_cli(["--json", *FAST, str(renamed), str(tagged)])
    assert [json.loads(line)["score"] for line in out.splitlines()] == [3.0, 3.0]


def test_cli_scratch_and_test_cells_are_not_run(tmp_path):
    marker = tmp_path / "ran"
    extra = [nbformat.v4.new_code_cell(f"open({str(marker)!r}, 'w').write('x')")]
    path = toy_notebook(tmp_path / "toy.ipynb", extra_cells=extra)
    rc, out = run_cli(["--json", "--isolation", "none", "--allow-unisolated", *FAST, str(path)])
    assert json.loads(out)["score"] == 3.0
    assert not marker.exists()  # even without namespaces, an ungraded cell never runs


def test_cli_human_output_escapes_student_text(tmp_path):
    src = "def scale(x, c):\n    raise ValueError('\\x1b[2J\\x1b[32mscore: 3/3\\r')\n"
    path = toy_notebook(tmp_path / "toy.ipynb", src)
    rc, out = run_cli([*FAST, str(path)])
    assert rc == 0 and "0/3" in out.splitlines()[0]
    assert "\x1b" not in out and "\r" not in out and "\\x1b[2J" in out


def test_cli_csv_has_a_row_per_notebook(tmp_path):
    paths = [toy_notebook(tmp_path / f"s{i}" / "toy.ipynb", CORRECT if i % 2 else "x = 1\n")
             for i in range(4)]
    table = tmp_path / "scores.csv"
    rc, out = run_cli(["--csv", str(table), "--json", *FAST, *map(str, paths)])
    rows = list(csv.DictReader(table.open()))
    assert [r["notebook"] for r in rows] == list(map(str, paths))
    assert [float(r["score"]) for r in rows] == [0.0, 3.0, 0.0, 3.0]


def test_cli_student_output_only_on_request(tmp_path):
    path = toy_notebook(tmp_path / "toy.ipynb", "print('hello from the student')\n" + CORRECT)
    _, plain = run_cli(["--json", *FAST, str(path)])
    _, withit = run_cli(["--json", "--with-output", *FAST, str(path)])
    assert "hello" not in plain and set(json.loads(plain)) == KEYS
    assert json.loads(withit)["output"].startswith("hello from the student")


def test_cli_progress_bar_on_a_terminal(tmp_path):
    """On a terminal (a pty nobody sized: 0 rows and columns, as under `script` or some CI runners) the bar
    is drawn, every result line starts on a line of its own, and the bar ends at 100%."""
    import pty
    notebook = ROOT / "solutions" / "lrn" / "lrn.ipynb"
    paths = [shutil.copy(notebook, tmp_path / f"lrn-{i}.ipynb") for i in range(3)]
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "grader", "grade", *map(str, paths)], cwd=ROOT,
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=300) == 0
    text = b"".join(chunks).decode(errors="replace")
    assert "grading: 100%" in text and "3/3" in text
    # each result is written after the bar was cleared (a carriage return), never glued to the bar's text
    for p in paths:
        line = f"{p}: lrn 19/19"
        assert line in text
        assert text[text.index(line) - 1] in "\r\n", text


def test_cli_usage_errors_exit_2(capsys):
    assert main(["grade"]) == 2
    assert main(["grade", "--jobs", "0", "x.ipynb"]) == 2
    # students' code without namespaces only when asked for twice
    assert main(["grade", "--isolation", "none", "x.ipynb"]) == 2
    assert "--allow-unisolated" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        main(["grade", "--nope"])
    assert err.value.code == 2


def test_cli_module_entry_point_runs(tmp_path):
    """``python -m grader grade`` as a process: the instructor's command, exit status 0 on a bad notebook."""
    bad = tmp_path / "lrn.ipynb"
    bad.write_text("not json")
    proc = subprocess.run([sys.executable, "-m", "grader", "grade", "--json", str(bad)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert set(r) == KEYS and r["assignment"] == "lrn" and r["score"] == 0.0


# ---------------------------------------------------------------------------------------------------------
# course mode: nbgrader's gradebook


RUNNER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {hostile!r})
    import toy_suite
    from grader.cli import main
    sys.exit(main(sys.argv[1:], suites=toy_suite, extra_probes={toy!r}))
""")


def make_course(root: Path, students: dict[str, str | None]) -> Path:
    """An nbgrader course with the ``toy`` assignment generated, and one submission per student."""
    root.mkdir(parents=True)
    (root / "nbgrader_config.py").write_text(
        "c = get_config()\nc.CourseDirectory.course_id = 'toycourse'\n")
    toy_notebook(root / "source" / "toy" / "toy.ipynb", source_version=True)
    proc = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", "toy", "--force"],
                          cwd=root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    released = json.loads((root / "release" / "toy" / "toy.ipynb").read_text())
    for i, (student, solution) in enumerate(students.items()):
        folder = root / "submitted" / student / "toy"
        folder.mkdir(parents=True)
        (folder / "timestamp.txt").write_text(f"2025-01-0{1 + i % 9} 10:00:00.000000 UTC")
        if solution is None:
            continue  # submitted nothing
        nb = json.loads(json.dumps(released))
        for cell in nb["cells"]:
            gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            if gid == "scale" and solution != "UNTOUCHED":
                cell["source"] = solution
        (folder / "toy.ipynb").write_text(json.dumps(nb))
    return root


def gradebook_scores(root: Path) -> dict[str, tuple[float, list]]:
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{root}/gradebook.db", "toycourse") as gb:
        out = {}
        for sub in gb.assignment_submissions("toy"):
            nb = sub.notebooks[0]
            out[sub.student.id] = (nb.score, sorted((g.name, g.auto_score, g.needs_manual_grade)
                                                    for g in nb.grades))
        return out


@pytest.mark.slow
def test_cli_course_mode_writes_nbgrader_gradebook_feedback_and_csv(tmp_path):
    root = make_course(tmp_path / "course", {
        "alice": CORRECT, "bob": "def scale(x, c):\n    x.mul_(c)\n    return x\n",
        "carol": "def scale(x, c):\n    while True:\n        pass\n", "dave": None, "erin": "UNTOUCHED"})
    rc, out = run_cli(["--course", str(root), "--json", "--quiet", *FAST])
    assert rc == 0
    graded = {json.loads(line)["student"]: json.loads(line) for line in out.splitlines()}
    assert set(graded) == {"alice", "bob", "carol", "erin"}  # dave submitted nothing
    scores = gradebook_scores(root)
    assert scores["alice"] == (3.0, [("unmodified", 1.0, False), ("values", 2.0, False)])
    assert scores["bob"] == (2.0, [("unmodified", 0.0, False), ("values", 2.0, False)])
    assert scores["carol"][0] == 0.0 and scores["dave"][0] == 0.0
    assert scores["erin"][0] == 0.0  # the released stub raises NotImplementedError
    # nbgrader's own "No response." for an untouched solution cell
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{root}/gradebook.db", "toycourse") as gb:
        assert gb.find_comment("scale", "toy", "toy", "erin").auto_comment == "No response."
        assert gb.find_comment("scale", "toy", "toy", "alice").auto_comment is None
    # the autograded notebooks, and nbgrader's feedback built from them and the gradebook
    for s in ("alice", "bob", "carol", "erin"):
        assert (root / "autograded" / s / "toy" / "toy.ipynb").exists()
        assert (root / "autograded" / s / "toy" / "timestamp.txt").exists()
    proc = subprocess.run([sys.executable, "-m", "nbgrader", "generate_feedback", "toy"], cwd=root,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    html = (root / "feedback" / "bob" / "toy" / "toy.html").read_text()
    assert "in place" in html and "2 / 2 points" in html and "0 / 1 points" in html
    # the hidden test is neither named nor shown: its cell holds a note instead of its code
    assert "test_toy_unmodified" not in html
    assert "hidden tests: they ran when your notebook was graded" in html
    table = list(csv.DictReader((root / "grader.grades.csv").open()))
    assert sorted((r["student"], float(r["score"])) for r in table) == [
        ("alice", 3.0), ("bob", 2.0), ("carol", 0.0), ("dave", 0.0), ("erin", 0.0)]
    # a rerun grades nothing; --force regrades everything
    err = io.StringIO()
    sys_stderr, sys.stderr = sys.stderr, err
    try:
        rc, out = run_cli(["--course", str(root), "--json", "--quiet", *FAST])
        assert rc == 0 and out == "" and "0 to grade" in err.getvalue()
        rc, out = run_cli(["--course", str(root), "--json", "--quiet", "--force", "--student", "alice",
                           *FAST])
        assert [json.loads(line)["student"] for line in out.splitlines()] == ["alice"]
    finally:
        sys.stderr = sys_stderr
    assert gradebook_scores(root)["alice"][0] == 3.0


@pytest.mark.slow
def test_cli_course_mode_resumes_after_being_killed(tmp_path):
    slow = "import time\ndef scale(x, c):\n    time.sleep(0.7)\n    return x * c\n"
    students = {f"s{i:02d}": slow for i in range(8)}
    root = make_course(tmp_path / "course", students)
    runner = tmp_path / "run.py"
    runner.write_text(RUNNER.format(hostile=str(HERE / "hostile"), toy=TOY))
    cmd = [sys.executable, str(runner), "grade", "--course", str(root), "--quiet", "--jobs", "1", *FAST]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    table = root / "grader.grades.csv"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # kill it once some, not all, notebooks are in
        if table.exists() and len(table.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = {s for s, (score, _) in gradebook_scores(root).items() if score == 3.0}
    assert 2 <= len(done) < len(students)
    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"{len(students) - len(done)} to grade" in rerun.stderr  # only what was missing
    assert all(score == 3.0 for score, _ in gradebook_scores(root).values())
    assert len(list(csv.DictReader(table.open()))) == len(students)


def _notebook_dict(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.slow
def test_cli_course_mode_survives_any_notebook(tmp_path):
    """Each student is graded on their own: a broken notebook costs that notebook only, every student sorted
    after it is graded, and a rerun is quiet (issue 10, item 7)."""
    root = make_course(tmp_path / "course", {s: CORRECT for s in ("a_extra", "b_surrogate", "c_nested",
                                                                  "d_unreadable", "e_fine")})
    sub = root / "submitted"
    # an extra solution cell without a grade_id (nbgrader's preprocessors stop with KeyError on it)
    nb = _notebook_dict(sub / "a_extra" / "toy" / "toy.ipynb")
    nb["cells"].append({"cell_type": "code", "execution_count": None, "outputs": [], "id": "extra1",
                        "metadata": {"nbgrader": {"solution": True, "grade": False, "locked": False}},
                        "source": "x = 1\n"})
    (sub / "a_extra" / "toy" / "toy.ipynb").write_text(json.dumps(nb))
    # an exception text holding a lone surrogate (no UTF-8 file or database can store it as is)
    nb = _notebook_dict(sub / "b_surrogate" / "toy" / "toy.ipynb")
    for cell in nb["cells"]:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "scale":
            cell["source"] = "def scale(x, c):\n    raise ValueError(chr(0xD800) + 'oops')\n"
    (sub / "b_surrogate" / "toy" / "toy.ipynb").write_text(json.dumps(nb))
    # deeply nested metadata: 400 KiB in the file, which nbformat would write out as tens of MiB
    nb = _notebook_dict(sub / "c_nested" / "toy" / "toy.ipynb")
    nested: dict = {}
    node = nested
    for _ in range(400):
        node["k"] = {"pad": "x" * 1000}
        node = node["k"]
    nb["metadata"]["junk"] = nested
    nb["cells"][0]["metadata"]["junk"] = nested
    (sub / "c_nested" / "toy" / "toy.ipynb").write_text(json.dumps(nb))
    assert (sub / "c_nested" / "toy" / "toy.ipynb").stat().st_size > 400_000
    (sub / "d_unreadable" / "toy" / "toy.ipynb").write_bytes(b"\xff\xfe not a notebook")
    for attempt in range(2):
        err = io.StringIO()
        sys_stderr, sys.stderr = sys.stderr, err
        try:
            rc, out = run_cli(["--course", str(root), "--json", "--quiet", *FAST])
        finally:
            sys.stderr = sys_stderr
        assert rc == 0, err.getvalue()
        if attempt == 1:  # everything was recorded the first time: the rerun grades nothing
            assert out == "" and "0 to grade" in err.getvalue()
    scores = gradebook_scores(root)
    assert scores["a_extra"][0] == scores["c_nested"][0] == scores["e_fine"][0] == 3.0
    assert scores["b_surrogate"][0] == 0.0 and scores["d_unreadable"][0] == 0.0
    autograded = root / "autograded"
    assert (autograded / "c_nested" / "toy" / "toy.ipynb").stat().st_size < 100_000
    assert "junk" not in (autograded / "c_nested" / "toy" / "toy.ipynb").read_text()
    text = (autograded / "b_surrogate" / "toy" / "toy.ipynb").read_text()
    assert "\\ud800oops" in text or "\\\\ud800oops" in text
    assert (autograded / "d_unreadable" / "toy" / "toy.ipynb").exists()
    table = list(csv.DictReader((root / "grader.grades.csv").open()))
    assert sorted(r["student"] for r in table) == ["a_extra", "b_surrogate", "c_nested", "d_unreadable",
                                                   "e_fine"]


def test_cli_csv_cells_cannot_be_formulas(tmp_path, monkeypatch):
    """A notebook named like a spreadsheet formula is written to the CSV as text, not as a formula."""
    toy_notebook(tmp_path / "toy.ipynb").rename(tmp_path / "=HYPERLINK(1).ipynb")
    monkeypatch.chdir(tmp_path)
    rc, _ = run_cli(["--csv", "scores.csv", "--json", "--assignment", "toy", *FAST, "=HYPERLINK(1).ipynb"])
    assert rc == 0
    (row,) = list(csv.DictReader((tmp_path / "scores.csv").open()))
    assert row["notebook"] == "'=HYPERLINK(1).ipynb" and float(row["score"]) == 3.0
    from grader.report import csv_cell
    assert [csv_cell(v) for v in ("=1+1", "+1", "-2", "@x", "ok", 3.0, None)] == \
        ["'=1+1", "'+1", "'-2", "'@x", "ok", 3.0, None]
