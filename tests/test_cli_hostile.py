"""The hostile corpus, graded twice: no hack pays, nothing stalls or leaks.

``tests/hostile/corpus.py`` holds the cases (notebooks of the four assignments whose solution cells attack
the grader or its scoring). One ``python -m grader grade --json`` run, as an instructor grades, takes all of
them, their honest twins and correct notebooks mixed in; the test checks every score against its twin's, that
the correct notebooks scored full marks whatever ran beside them, that the run's own output is exactly one
JSON line per notebook, and that nothing the students started, wrote or sent survived the run. A second run
grades the cases with the sandbox alone (the source check off): its containment and the grader's validation
of every reply hold even for code the rules would have refused.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from helpers import processes_with

HERE = Path(__file__).parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE / "hostile"))
import corpus  # noqa: E402

KEYS = {"notebook", "assignment", "score", "max_score", "tests", "error"}
TEST_KEYS = {"name", "points", "max_points", "passed", "message"}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not corpus.TEMPLATE.exists(), reason="solutions/lrn/lrn.ipynb is not there yet"),
]


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    marker = f"{5000 + uuid.uuid4().int % 4000}.{uuid.uuid4().int % 10**5}"
    built = corpus.build(tmp / "corpus", port=listener.getsockname()[1], marker=marker)
    # correct notebooks of every assignment at the start, the middle and the end of the batch
    correct = []
    for i, (a, template) in enumerate(list(corpus.TEMPLATES.items()) + [("lrn", corpus.TEMPLATE)] * 2):
        p = tmp / f"correct_{i}" / f"{a}.ipynb"
        p.parent.mkdir()
        shutil.copy(template, p)
        correct.append(p)
    paths = correct[:4]
    for i, (path, c) in enumerate(built):
        paths.append(path)
        if "twin" in c:
            paths.append(c["twin"])
        if i == len(built) // 2:
            paths.append(correct[4])
    paths.append(correct[5])
    limits = corpus.LIMITS
    cmd = [sys.executable, "-m", "grader", "grade", "--json", "--jobs", "2",
           "--timeout", str(limits["run_timeout"]), "--load-timeout", str(limits["load_timeout"]),
           "--notebook-timeout", str(limits["notebook_timeout"])] + [str(p) for p in paths]
    t = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    seconds = time.monotonic() - t
    raw = corpus.grade_all(built, check_source=False)
    try:
        conn, _ = listener.accept()
        conn.close()
        connected = True
    except (TimeoutError, OSError):
        connected = False
    listener.close()
    yield {"proc": proc, "paths": paths, "built": built, "correct": correct, "marker": marker,
           "connected": connected, "seconds": seconds, "raw": raw}


def _results(graded) -> dict[str, dict]:
    lines = graded["proc"].stdout.splitlines()
    return {r["notebook"]: r for r in map(json.loads, lines)}


def _case(graded, name):
    return next((p, c) for p, c in graded["built"] if c["name"] == name)


def _show(r: dict) -> tuple:
    return (r["score"], r["error"], [(t["name"], t["points"], t["message"][:120]) for t in r["tests"]])


def test_cli_hostile_run_completes_with_one_json_line_per_notebook(graded):
    proc = graded["proc"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == len(graded["paths"])
    for line, path in zip(lines, graded["paths"], strict=True):
        r = json.loads(line)                 # every line is ours: no student print got in
        assert set(r) == KEYS
        assert r["notebook"] == str(path)    # in the order given
        assert all(set(t) == TEST_KEYS for t in r["tests"])
    everything = proc.stdout + proc.stderr
    assert "ALL TESTS PASSED" not in everything and "score: 100" not in everything


@pytest.mark.parametrize("name", [c["name"] for c in corpus.CASES] + list(corpus.BROKEN))
def test_cli_hostile_case_gains_nothing(graded, name):
    results = _results(graded)
    path, c = _case(graded, name)
    r = results[str(path)]
    twin = results.get(str(c.get("twin")))
    assert corpus.check(c, r, twin), (c["expect"], _show(r), twin and _show(twin))


@pytest.mark.parametrize("name", [c["name"] for c in corpus.CASES if c["raw"] is not None])
def test_cli_hostile_case_gains_nothing_from_the_sandbox_alone(graded, name):
    path, c = _case(graded, name)
    r = graded["raw"][str(path)]
    twin = graded["raw"].get(str(c.get("twin")))
    assert corpus.check(c, r, twin, raw=True), (c["raw"], _show(r), twin and _show(twin))


@pytest.mark.parametrize("name", [c["name"] for c in corpus.CASES if c.get("twin_full")])
def test_cli_hostile_honest_neighbour_keeps_its_marks(graded, name):
    """The honest twin, graded at the same time (two jobs), scores full marks both ways."""
    path, c = _case(graded, name)
    for results in (_results(graded), graded["raw"]):
        twin = results[str(c["twin"])]
        assert twin["score"] == twin["max_score"], _show(twin)


def test_cli_hostile_hidden_messages_repeat_no_student_text(graded):
    """Whatever the student's exceptions say (here: their hidden input), hidden tests' messages do not."""
    for results in (_results(graded), graded["raw"]):
        path, _ = _case(graded, "leak_hidden_inputs")
        r = results[str(path)]
        assert not corpus.leaks(r), [t["message"] for t in r["tests"]]
        visible = [t for t in r["tests"] if t["name"] not in corpus._hidden_names()]
        assert any(corpus._FLOAT.search(t["message"]) for t in visible)  # the visible ones may show it


def test_cli_hostile_correct_notebooks_unharmed(graded):
    results = _results(graded)
    for p in graded["correct"]:
        r = results[str(p)]
        assert r["score"] == r["max_score"] > 0 and r["error"] is None, r


def test_cli_hostile_nothing_survives(graded):
    deadline = time.monotonic() + 3
    while processes_with(graded["marker"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_with(graded["marker"]) == []
    for _, c in graded["built"]:
        for w in c.get("writes", []):
            assert not os.path.exists(w), f"{c['name']} wrote {w}"
    assert not graded["connected"], "a student's code reached a socket on the grader's machine"
