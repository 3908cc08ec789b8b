"""Course mode on PostgreSQL: nbgrader's gradebook on a real server, several graders (``--shard K/N``).

Each test marked ``postgres`` grades a real nbgrader course (``tests/test_cli.py``'s ``make_course`` with the
``toy`` assignment of ``tests/hostile/``) into a database of a throwaway cluster that the module starts
(``tests/pg_cluster.py``: Debian's ``initdb``/``pg_ctl``, a Unix socket, password authentication) and stops.
The gradebook's URL is nbgrader's own setting, ``c.CourseDirectory.db_url`` in the course's
``nbgrader_config.py``, and the assignment is put into that gradebook by ``nbgrader generate_assignment``
itself. What the tests read back they read through nbgrader's own API and, for rows and duplicates, with plain
SQL through the driver; never through the code under test.
"""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from unittest import mock

import pytest
from pg_cluster import cluster
from test_cli import CORRECT, FAST, RUNNER, TOY, make_course

from grader.cli import main
from grader.gradebook import Course, Item, parse_shard, shard_of
from grader.grading import NotebookResult
from grader.sandbox import ForkServer

HERE = Path(__file__).parent
ROOT = HERE.parent
import toy_suite  # noqa: E402 (tests/hostile is on sys.path once test_cli is imported)

MUTATES = "def scale(x, c):\n    x.mul_(c)\n    return x\n"     # 2 of 3 points: values right, input changed
WRONG = "def scale(x, c):\n    return x + c\n"                   # 0 points
SLOW = "import time\ndef scale(x, c):\n    time.sleep(0.7)\n    return x * c\n"
CLASS = {"alice": CORRECT, "bob": MUTATES, "carol": WRONG, "dave": None, "erin": "UNTOUCHED"}
EXPECTED = {"alice": 3.0, "bob": 2.0, "carol": 0.0, "dave": 0.0, "erin": 0.0}

postgres = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg():
    with cluster() as c:
        yield c


@pytest.fixture(scope="module")
def server():
    """One fork server for the module's in-process runs (a run starts its own otherwise)."""
    s = ForkServer(extra_probes=TOY)
    yield s
    s.close()


@pytest.fixture(autouse=True)
def venv_on_path(monkeypatch):
    # nbgrader runs `alembic` by name when it creates a gradebook (generate_assignment does, in make_course);
    # `make test` has the venv on PATH, a bare `.venv/bin/python -m pytest` may not
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))


def pg_course(pg, root: Path, students: dict, database: str) -> tuple[Path, str]:
    """``make_course`` with its gradebook on a new database of ``pg``; returns the course and the URL.

    The URL is nbgrader's own setting in the course's ``nbgrader_config.py``. While ``make_course`` runs
    ``nbgrader generate_assignment`` (which writes its own config file, without a db_url), the same setting
    comes from a Jupyter config folder, so nbgrader itself puts the assignment into that database."""
    url = pg.create_database(database)
    setting = f"c = get_config()\nc.CourseDirectory.db_url = {url!r}\n"
    with tempfile.TemporaryDirectory(prefix="nbgrader-config-") as folder:
        Path(folder, "nbgrader_config.py").write_text(setting)
        with mock.patch.dict(os.environ, {"JUPYTER_CONFIG_PATH": folder}):
            make_course(root, students)
    with open(root / "nbgrader_config.py", "a") as f:
        f.write(setting.split("\n", 1)[1])
    assert not (root / "gradebook.db").exists()  # nbgrader wrote to PostgreSQL, not to a SQLite file
    return root, url


def run(args, server, **kw) -> tuple[int, str, str]:
    """``python -m grader grade ARGS`` in this process (the toy suite, the module's fork server)."""
    out, err = io.StringIO(), io.StringIO()
    saved, sys.stderr = sys.stderr, err
    try:
        rc = main(["grade", *args], suites=toy_suite, extra_probes=TOY, out=out, server=server, **kw)
    finally:
        sys.stderr = saved
    return rc, out.getvalue(), err.getvalue()


def runner(tmp_path: Path) -> Path:
    """A script that runs ``python -m grader`` with the toy suite, as its own process."""
    path = tmp_path / "run_grader.py"
    path.write_text(RUNNER.format(hostile=str(HERE / "hostile"), toy=TOY))
    return path


def scores(url: str, course_id: str = "toycourse") -> dict:
    """Everything course mode writes, read with nbgrader's API: per student, the notebook's score, each grade
    cell's (auto score, needs manual grade), each solution cell's comment, the submission's timestamp."""
    from nbgrader.api import Gradebook

    with Gradebook(url, course_id) as gb:
        out = {}
        for sub in gb.assignment_submissions("toy"):
            nb = sub.notebooks[0]
            out[sub.student.id] = (round(float(nb.score), 3),
                                   sorted((g.name, g.auto_score, g.needs_manual_grade) for g in nb.grades),
                                   sorted((c.name, c.auto_comment) for c in nb.comments),
                                   sub.timestamp.isoformat() if sub.timestamp else None)
        return out


def row_counts(pg, database: str) -> dict:
    """Rows and distinct keys of nbgrader's tables, by SQL: a duplicate would show as rows > keys."""
    sql = {"student": "SELECT count(*), count(DISTINCT id) FROM student",
           "submission": "SELECT count(*), count(DISTINCT (assignment_id, student_id)) "
                         "FROM submitted_assignment",
           "grade": "SELECT count(*), count(DISTINCT (cell_id, notebook_id)) FROM grade",
           "comment": "SELECT count(*), count(DISTINCT (cell_id, notebook_id)) FROM comment"}
    return {name: tuple(pg.query(database, q)[0]) for name, q in sql.items()}


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------------------------------------------------
# --shard: the split itself (no database needed)


def test_shard_split_is_a_partition_and_stable():
    keys = [(f"student{i:04d}", a) for i in range(2000) for a in ("lrn", "dropout")]
    for n in (1, 3, 8):
        owners = [shard_of(s, a, n) for s, a in keys]
        assert all(0 <= k < n for k in owners)  # each submission in exactly one shard
        sizes = Counter(owners)
        assert sorted(sizes) == list(range(n))
        assert max(sizes.values()) < 1.25 * len(keys) / n  # and the shards are about even
    # fixed values (sha256 of student and assignment): graders of one course on machines with other Pythons,
    # or after an upgrade of this code, must agree on the split; a changed hash must be a deliberate change
    assert [shard_of("alice", "lrn", 4), shard_of("bob", "lrn", 4), shard_of("alice", "dropout", 4),
            shard_of("s0001", "batchnorm", 7)] == [1, 0, 0, 5]
    # and not Python's own str hash, which is salted per process
    code = "from grader.gradebook import shard_of; print(shard_of('alice', 'lrn', 1000003))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PYTHONHASHSEED": "123"})
    assert other.stdout.strip() == str(shard_of("alice", "lrn", 1000003))


@pytest.mark.parametrize("text", ["4/4", "-1/4", "1/0", "1", "a/b", "1/4/2", "", " 5 / 3 "])
def test_shard_flag_rejects_bad_values(tmp_path, text):
    with pytest.raises(ValueError, match=r"--shard: expected K/N"):
        parse_shard(text)
    (tmp_path / "course").mkdir()
    rc, out, err = run(["--course", str(tmp_path / "course"), f"--shard={text}"], None)
    assert rc == 2 and out == ""
    assert err.startswith("grade: --shard: expected K/N") and "Traceback" not in err
    if text == "4/4":
        assert "counts from 0" in err


def test_shard_flag_needs_a_course(tmp_path):
    rc, _, err = run(["--shard", "0/2", str(tmp_path / "toy.ipynb")], None)
    assert rc == 2 and "--shard works with --course only" in err


def test_shard_flag_accepts_good_values():
    assert parse_shard("0/1") == (0, 1) and parse_shard(" 3 / 4 ") == (3, 4)
    assert parse_shard("9/10") == (9, 10)


# ---------------------------------------------------------------------------------------------------------
# one grader


@postgres
@pytest.mark.slow
def test_postgres_course_gives_the_same_gradebook_as_sqlite(tmp_path, pg, server):
    lite = make_course(tmp_path / "lite", CLASS)
    root, url = pg_course(pg, tmp_path / "pg", CLASS, "same_as_sqlite")
    rc, out, err = run(["--course", str(root), "--json", "--quiet", *FAST], server)
    assert rc == 0, err
    assert "gradebook postgresql://grader:***@/same_as_sqlite" in err and pg.password not in err
    rc_lite, _, err_lite = run(["--course", str(lite), "--json", "--quiet", *FAST], server)
    assert rc_lite == 0, err_lite

    on_pg, on_lite = scores(url), scores(f"sqlite:///{lite}/gradebook.db")
    assert {s: v[0] for s, v in on_pg.items()} == EXPECTED
    assert on_pg == on_lite  # scores, each cell's grade, comments ("No response." for erin), timestamps
    assert row_counts(pg, "same_as_sqlite") == {"student": (5, 5), "submission": (5, 5), "grade": (10, 10),
                                                "comment": (5, 5)}
    assert not (root / "gradebook.db").exists()  # nothing went to a SQLite file beside the course
    for s in ("alice", "bob", "carol", "erin"):
        assert (root / "autograded" / s / "toy" / "toy.ipynb").exists()
    table = read_csv(root / "grader.grades.csv")
    assert table == read_csv(lite / "grader.grades.csv") and len(table) == 5

    # a rerun finds everything graded, and nbgrader's own feedback reads the PostgreSQL gradebook
    rc, out, err = run(["--course", str(root), "--json", "--quiet", *FAST], server)
    assert rc == 0 and out == "" and "0 to grade" in err
    proc = subprocess.run([sys.executable, "-m", "nbgrader", "generate_feedback", "toy"], cwd=root,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 / 2 points" in (root / "feedback" / "bob" / "toy" / "toy.html").read_text()


@postgres
@pytest.mark.slow
def test_postgres_grader_killed_mid_run_grades_only_what_is_missing(tmp_path, pg):
    students = {f"s{i:02d}": SLOW for i in range(6)}
    root, url = pg_course(pg, tmp_path / "course", students, "killed")
    cmd = [sys.executable, str(runner(tmp_path)), "grade", "--course", str(root), "--quiet", "--jobs", "1",
           *FAST]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    table = root / "grader.grades.csv"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:  # kill it once some, not all, are in
        if table.exists() and len(table.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the grader finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()

    graded = sorted(p.parts[-3] for p in (root / "autograded").glob("*/toy/toy.ipynb"))
    assert 2 <= len(graded) < len(students)
    assert all(scores(url)[s][0] == 3.0 for s in graded)  # what counts as graded is in the gradebook
    # the server rolled back whatever the killed process had open: no session of it is left in a transaction
    assert pg.query("killed", "SELECT count(*) FROM pg_stat_activity WHERE datname = 'killed' AND state "
                              "LIKE 'idle in transaction%'")[0][0] == 0

    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"{len(graded)} already graded, {len(students) - len(graded)} to grade" in rerun.stderr
    final = scores(url)
    assert sorted(final) == sorted(students) and all(v[0] == 3.0 for v in final.values())
    assert row_counts(pg, "killed") == {"student": (6, 6), "submission": (6, 6), "grade": (12, 12),
                                        "comment": (6, 6)}
    assert sorted(r["student"] for r in read_csv(table)) == sorted(students)


@postgres
@pytest.mark.parametrize("problem", ["wrong password", "server down", "no such driver"])
def test_postgres_unusable_gradebook_is_one_clear_error_and_writes_nothing(tmp_path, pg, problem):
    database = "unusable_" + problem.split()[0]
    root, url = pg_course(pg, tmp_path / "course", {"alice": CORRECT, "bob": WRONG, "dave": None}, database)
    bad = {"wrong password": pg.url(database, password="not-the-password"),
           "server down": pg.url(database, socket_dir=tmp_path),  # a folder where no server listens
           "no such driver": url.replace("postgresql://", "postgresql+nosuchdriver://")}[problem]
    config = root / "nbgrader_config.py"
    config.write_text(config.read_text().replace(repr(url), repr(bad)))
    before = sorted(str(p.relative_to(root)) for p in root.rglob("*"))

    proc = subprocess.run([sys.executable, str(runner(tmp_path)), "grade", "--course", str(root), "--quiet",
                           *FAST], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("grade: cannot open the gradebook postgresql"), proc.stderr
    assert "Traceback" not in proc.stderr and "not-the-password" not in proc.stderr
    assert pg.password not in proc.stderr
    expect = {"wrong password": 'password authentication failed for user "grader"',
              "server down": "No such file or directory",
              "no such driver": "Can't load plugin"}[problem]
    assert expect in lines[0] and lines[0].endswith("nothing was graded or written")
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == before  # no CSV, no autograded/
    assert row_counts(pg, database)["submission"] == (0, 0)


# ---------------------------------------------------------------------------------------------------------
# several graders


@postgres
@pytest.mark.slow
def test_postgres_shards_grade_each_submission_once_with_one_process_totals(tmp_path, pg, server):
    kinds = [CORRECT, MUTATES, WRONG, "UNTOUCHED", None]
    students = {f"st{i:02d}": kinds[i % len(kinds)] for i in range(9)}
    n = 3
    root, url = pg_course(pg, tmp_path / "sharded", students, "sharded")
    one, one_url = pg_course(pg, tmp_path / "single", students, "single")
    script = runner(tmp_path)
    procs = [subprocess.Popen([sys.executable, str(script), "grade", "--course", str(root), "--quiet",
                               "--jobs", "1", "--shard", f"{k}/{n}", *FAST], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for k in range(n)]
    done = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0] * n, [err[-2000:] for _, err in done]

    # each shard graded its own share, and the shares cover the class once
    share = {k: sorted(s for s in students if shard_of(s, "toy", n) == k) for k in range(n)}
    assert all(share.values()), share  # with these names every shard has work: the test runs N at once
    for k, (_, err) in enumerate(done):
        assert f"shard {k}/{n}: {len(share[k])} submitted notebooks" in err
        rows = read_csv(root / f"grader.grades.shard-{k}-of-{n}.csv")
        assert sorted(r["student"] for r in rows) == share[k]  # a shard's CSV is its own, not clobbered
    assert not (root / "grader.grades.csv").exists()

    rc, _, err = run(["--course", str(one), "--quiet", *FAST], server)  # the same class, one process
    assert rc == 0, err
    assert scores(url) == scores(one_url)
    assert row_counts(pg, "sharded") == row_counts(pg, "single") == {
        "student": (9, 9), "submission": (9, 9), "grade": (18, 18), "comment": (9, 9)}
    # after the shards, one plain run grades nothing and writes the whole class's CSV
    rc, _, err = run(["--course", str(root), "--quiet", *FAST], server)
    assert rc == 0 and "0 to grade" in err
    whole = read_csv(root / "grader.grades.csv")
    assert whole == read_csv(one / "grader.grades.csv")
    assert sorted(r["student"] for r in whole) == sorted(students)
    assert {r["student"]: float(r["score"]) for r in whole} == {
        s: {CORRECT: 3.0, MUTATES: 2.0}.get(v, 0.0) for s, v in students.items()}


@postgres
def test_postgres_write_that_loses_a_race_is_retried(tmp_path, pg, caplog):
    """Two graders create the same student at once: the one whose insert loses rolls back and writes again.

    The race is made to happen, not hoped for: this grader's look-up of the student runs just before another
    connection inserts the same student (the database, not the test, raises the unique-key error)."""
    from nbgrader.api import Gradebook, MissingEntry

    root, url = pg_course(pg, tmp_path / "course", {"zed": CORRECT}, "raced")
    course = Course(str(root))
    path = str(root / "submitted" / "zed" / "toy" / "toy.ipynb")
    item = Item("zed", "toy", "toy", path, course.coursedir.get_existing_timestamp(os.path.dirname(path)))
    result = NotebookResult(path, "toy", 3.0, 3.0, [
        {"name": "test_toy_values", "points": 2.0, "max_points": 2.0, "passed": True, "message": ""},
        {"name": "test_toy_unmodified", "points": 1.0, "max_points": 1.0, "passed": True, "message": ""}],
        None)
    raced = []
    with course.gradebook() as gb, Gradebook(url, "toycourse") as other:
        real_find = gb.find_student

        def find_then_lose(student_id):
            if not raced:  # the other grader inserts between this look-up and this grader's insert
                raced.append(student_id)
                other.add_student(student_id)
                raise MissingEntry(student_id)
            return real_find(student_id)

        gb.find_student = find_then_lose
        cells = course.record(gb, item, result, ["test_toy_values", "test_toy_unmodified"])
    assert raced == ["zed"]
    # nbgrader logged its rollback with a traceback; course mode keeps that out of the instructor's terminal
    assert not [r for r in caplog.records if "Rolling back session" in r.getMessage()]
    assert cells["values"][0] == 2.0 and cells["unmodified"][0] == 1.0
    assert scores(url)["zed"][0] == 3.0
    assert row_counts(pg, "raced")["student"] == (1, 1)
    assert (root / "autograded" / "zed" / "toy" / "toy.ipynb").exists()


@postgres
@pytest.mark.slow
def test_postgres_overlapping_graders_leave_one_consistent_gradebook(tmp_path, pg):
    """Two unsharded graders started at once on the same course (a requeued job beside the old one): both
    create the same students and submissions at about the same moments; both finish, nothing is doubled."""
    students = {f"o{i:02d}": (CORRECT if i % 2 else MUTATES) for i in range(4)}
    root, url = pg_course(pg, tmp_path / "course", students, "overlap")
    script = runner(tmp_path)
    start = threading.Barrier(2)
    results = {}

    def grade(k):
        start.wait()
        results[k] = subprocess.run([sys.executable, str(script), "grade", "--course", str(root), "--quiet",
                                     "--jobs", "1", "--csv", str(tmp_path / f"g{k}.csv"), *FAST], cwd=ROOT,
                                    capture_output=True, text=True, timeout=900)

    threads = [threading.Thread(target=grade, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[k].returncode for k in range(2)] == [0, 0], [results[k].stderr[-2000:] for k in range(2)]
    for k in range(2):
        assert "Traceback" not in results[k].stderr and "Rolling back" not in results[k].stderr
        assert "not recorded" not in results[k].stderr
    assert {s: v[0] for s, v in scores(url).items()} == {s: 3.0 if v == CORRECT else 2.0
                                                         for s, v in students.items()}
    assert row_counts(pg, "overlap") == {"student": (4, 4), "submission": (4, 4), "grade": (8, 8),
                                         "comment": (4, 4)}


@postgres
@pytest.mark.slow
def test_postgres_server_lost_mid_run_stops_with_one_error_and_keeps_what_was_recorded(tmp_path, pg):
    students = {f"l{i:02d}": SLOW for i in range(5)}
    root, url = pg_course(pg, tmp_path / "course", students, "lost")
    cmd = [sys.executable, str(runner(tmp_path)), "grade", "--course", str(root), "--quiet", "--jobs", "1",
           *FAST]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    table = root / "grader.grades.csv"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if table.exists() and len(table.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the grader finished before the server could be stopped"
    pg.stop()
    try:
        out, err = proc.communicate(timeout=600)
    finally:
        pg.start()
    assert proc.returncode == 1 and "Traceback" not in err, err[-3000:]
    lost = [line for line in err.splitlines() if "lost the gradebook" in line]
    assert len(lost) == 1 and "stopped after recording" in lost[0] and pg.password not in err, err
    graded = sorted(p.parts[-3] for p in (root / "autograded").glob("*/toy/toy.ipynb"))
    assert 1 <= len(graded) < len(students)
    assert all(scores(url)[s][0] == 3.0 for s in graded)  # what was recorded stays recorded
    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"{len(students) - len(graded)} to grade" in rerun.stderr
    assert {s: v[0] for s, v in scores(url).items()} == {s: 3.0 for s in students}
