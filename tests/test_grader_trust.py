"""What the grader believes, and what it lets run: the transport's limits, the validation of every probe
reply, the suite runner's rules, and the source policy's refusals.

The hostile corpus (``tests/test_cli_hostile.py``) attacks the whole grader; these tests pin each mechanism
down on its own, so that a regression names the piece that broke.
"""

from __future__ import annotations

import json
import struct

import pytest
import torch

from grader import transport
from grader.policy import BASE_MODULES, Policy, for_assignment
from grader.replies import ECHO, OUT, OUTS, Spec, validate
from grader.submission import GraderError, InProcessSubmission, ProbeInterference
from grader.suite import Score, Test, run_test

# ---------------------------------------------------------------------------------------------- transport


def test_transport_round_trip_keeps_values_and_dtypes():
    tree = {"a": torch.arange(6, dtype=torch.float64).view(2, 3), "b": [torch.ones(2, dtype=torch.bfloat16),
            None, True, 3, 2.5, "x"], "c": (torch.zeros(0, 4), torch.tensor(7, dtype=torch.int64))}
    back = transport.decode(transport.encode(tree))
    assert torch.equal(back["a"], tree["a"]) and back["a"].dtype == torch.float64
    assert back["b"][0].dtype == torch.bfloat16 and back["b"][1:] == [None, True, 3, 2.5, "x"]
    assert back["c"][0].shape == (0, 4) and int(back["c"][1]) == 7 and isinstance(back["c"], tuple)


def test_transport_refuses_a_huge_manifest_before_parsing_it():
    manifest = json.dumps({"tree": {"l": [{"v": None}] * 200_000}, "arrays": []}).encode()
    assert len(manifest) > transport.MAX_MANIFEST_BYTES
    data = b"GRT1" + struct.pack("<I", len(manifest)) + manifest
    with pytest.raises(transport.TransportError, match="manifest of .* bytes, more than"):
        transport.decode(data)


@pytest.mark.parametrize("data, match", [
    (b"PK\x03\x04 an npz archive", "no GRT1 header"),
    (b"GRT1" + struct.pack("<I", 999) + b"{}", "truncated manifest"),
    (b"GRT1" + struct.pack("<I", 47) + b'{"tree": {"t": "a0", "dtype": "float32"}, "arrays": []}'[:47],
     "malformed"),
])
def test_transport_refuses_malformed_messages(data, match):
    with pytest.raises(transport.TransportError, match=match):
        transport.decode(data)


def test_transport_refuses_arrays_out_of_bounds_and_objects():
    manifest = json.dumps({"tree": {"t": "a0", "dtype": "float32"}, "arrays": [["<f4", [1000], 0, 4000]]})
    data = b"GRT1" + struct.pack("<I", len(manifest)) + manifest.encode() + b"\0" * 16
    with pytest.raises(transport.TransportError, match="out of bounds"):
        transport.decode(data)
    manifest = json.dumps({"tree": {"n": "a0"}, "arrays": [["|O", [1], 0, 8]]})
    data = b"GRT1" + struct.pack("<I", len(manifest)) + manifest.encode() + b"\0" * 8
    with pytest.raises(transport.TransportError, match="not allowed"):
        transport.decode(data)


# -------------------------------------------------------------------------------------- reply validation

CASES = [{"a": torch.zeros(2, 3)}, {"a": torch.ones(4)}]
SPEC = Spec({"out": OUT, "a": ECHO("a")})


def _ok(case):
    return {"value": {"out": case["a"] * 2, "a": case["a"]}}


def test_validate_accepts_one_result_per_case_and_errors_of_known_kinds():
    reply = {"results": [_ok(CASES[0]), {"error": {"kind": "raised", "function": "f", "type": "ValueError",
                                                   "message": "no", "where": [["<cell 3>", 2]]}}]}
    got = validate(reply, CASES, SPEC, ["f"])
    assert got[0].ok and torch.equal(got[0]["out"], CASES[0]["a"] * 2)
    assert not got[1].ok and got[1].error["where"] == [("<cell 3>", 2)]


@pytest.mark.parametrize("reply, match", [
    ({"results": []}, "0 results for the 2 cases"),
    ({"results": [_ok(CASES[0])]}, "1 results for the 2 cases"),
    ({"results": [_ok(c) for c in CASES] + [_ok(CASES[0])]}, "3 results for the 2 cases"),
    ({"results": "all good"}, "no results for the 2 cases"),
    ({"results": [_ok(c) for c in CASES], "extra": 1}, "not {'results'"),
    ({"results": [{"value": {"out": CASES[0]["a"]}}, _ok(CASES[1])]}, "expected the keys"),
    ({"results": [{"value": {"out": 1.0, "a": CASES[0]["a"]}}, _ok(CASES[1])]}, "not a tensor, None"),
    ({"results": [{"value": {"out": None, "a": torch.zeros(3)}}, _ok(CASES[1])]}, "not the input the grader"),
    ({"results": [{"value": {"out": None, "a": CASES[0]["a"].double()}}, _ok(CASES[1])]},
     "not the input"),
    ({"results": [{"error": {"kind": "passed", "function": "f"}}, _ok(CASES[1])]}, "malformed error"),
    ({"results": [{"error": {"kind": "raised", "function": "g", "type": "E", "message": "", "where": []}},
                  _ok(CASES[1])]}, "malformed error"),
    ({"results": [{"error": {"kind": "refused", "function": "f", "index": 3}}, _ok(CASES[1])]},
     "a refusal the grader did not make"),
    ({"results": [{"value": _ok(CASES[0])["value"], "error": None}, _ok(CASES[1])]}, "neither a value"),
])
def test_validate_refuses_what_the_grader_did_not_ask_for(reply, match):
    with pytest.raises(ProbeInterference, match=match):
        validate(reply, CASES, SPEC, ["f"], refusals=1)


def test_validate_bounds_lists_of_outputs():
    spec = Spec({"iterates": OUTS})
    with pytest.raises(ProbeInterference, match="more than 1000 items"):
        validate({"results": [{"value": {"iterates": [None] * 1001}}]}, [{}], spec, ["f"])


# ------------------------------------------------------------------------------------------- suite runner


def _test(fn, visible=True):
    return Test("test_x", fn, 2.0, ("f",), visible)


def test_a_test_that_made_no_check_is_the_graders_error_not_a_pass():
    result = run_test(_test(lambda sub: Score().done()), InProcessSubmission({}))
    assert result.internal and result.points == 0 and not result.passed


def test_a_property_test_with_no_right_case_scores_zero_and_says_why():
    def fn(sub):
        score = Score()
        score.check_if(False, True, "never shown", why_not="the values are wrong")
        score.done(nothing_counted="not checked")
    result = run_test(_test(fn), InProcessSubmission({}))
    assert not result.internal and result.points == 0
    assert result.message == "not checked: the values are wrong"


def test_probe_interference_scores_the_test_zero_with_a_message():
    def fn(sub):
        raise ProbeInterference("3 results for the 2 cases")
    result = run_test(_test(fn), InProcessSubmission({}))
    assert not result.internal and result.points == 0 and "interfered" in result.message


def test_a_grader_error_inside_a_test_is_internal():
    def fn(sub):
        raise GraderError("boom")
    assert run_test(_test(fn), InProcessSubmission({})).internal


# ------------------------------------------------------------------------------------------------ policy

REFUSED = [
    ("lrn", "def f(a):\n    return a.__class__\n", "dunder attributes"),
    ("lrn", "def f(a):\n    return a._version\n", "private and dunder attributes"),
    ("lrn", "def f(a):\n    return getattr(a, 'shape')\n", "getattr() is not allowed"),
    ("lrn", "def f(a):\n    return eval('a')\n", "eval() is not allowed"),
    ("lrn", "def f(a):\n    return open('/etc/passwd').read()\n", "open() is not allowed"),
    ("lrn", "def f(a):\n    return __builtins__\n", "__builtins__"),
    ("lrn", "def f(a):\n    import os\n    return a\n", "importing os is not allowed"),
    ("lrn", "def f(a):\n    import torch._C\n    return a\n", "private and dunder attributes (_C)"),
    ("lrn", "def f(a):\n    from torch import _VF\n    return a\n", "private and dunder attributes (_VF)"),
    ("lrn", "def f(a):\n    from . import x\n    return a\n", "relative imports"),
    ("lrn", "def f(a):\n    import grader.probes\n    return a\n", "importing the grader"),
    ("lrn", "def f(a):\n    import tricksref\n    return a\n", "tricksref"),
    ("lrn", "def f(g):\n    return g.gi_frame.f_globals\n", "frames and code objects"),
    ("lrn", "def f(a):\n    match a:\n        case _:\n            return a\n", "match is not allowed"),
    ("lrn", "async def f(a):\n    return a\n", "async def is not allowed"),
    ("lrn", "def f(a):\n    return torch.ops.aten.add(a, a)\n", "ops is not allowed"),
    ("lrn", "def f(a):\n    return torch.load('x')\n", "load is not allowed"),
    ("lrn", "def f(a):\n    return numpy.ctypeslib.as_array(a)\n", "ctypeslib is not allowed"),
    ("lrn", "def f(a):\n    return torch.nn.functional.local_response_norm(a, 2)\n", "off limits"),
    ("lrn", "class T(torch.Tensor):\n    def __torch_function__(cls):\n        pass\n",
     "dunder __torch_function__"),
    ("batchnorm", "def f(x):\n    return torch.ops.aten.native_batch_norm\n", "off limits"),
    ("batchnorm", "def f(x, g):\n    return torch.autograd.grad(x, g)\n", "autograd is not allowed"),
    ("batchnorm", "def f(x):\n    x.backward()\n", "backward: autograd is not allowed"),
    ("dropout", "def f(x):\n    return torch.nn.Dropout(0.5)(x)\n", "Dropout is off limits"),
    ("dropout", "def f(x):\n    from torch.nn.functional import dropout\n    return dropout(x)\n",
     "off limits"),
    ("stagewise", "def f(w):\n    return torch.optim.SGD([w], lr=0.1)\n", "torch's optimizers"),
    ("stagewise", "def f(w):\n    from torch.optim import SGD\n    return SGD\n", "torch's optimizers"),
]


@pytest.mark.parametrize("assignment, source, rule", REFUSED,
                         ids=[f"{a}-{i}" for i, (a, _, _) in enumerate(REFUSED)])
def test_policy_refuses(assignment, source, rule):
    checked = for_assignment(assignment).check([(7, source)])
    why = checked.refusals[0][1] if checked.refusals else " ".join(checked.notes)
    assert rule in why, why
    assert "cell 7, line" in why


ALLOWED = [
    "from __future__ import annotations\nimport math\nimport torch\nimport torch.nn.functional as F\n"
    "from torch import nn\nimport numpy as np\nfrom typing import Optional\nimport itertools\n",
    "from grader import check\ncheck(lambda: None)\n",
    "def f(a, n):\n    half = n // 2\n    _tmp = [x for x in range(half)]\n"
    "    return a.new_zeros(a.shape) + len(_tmp)\n",
    "class Helper:\n    def run(self, x):\n        return x.sum(dim=0, keepdim=True).cpu().clone()\n",
    "def f(x):\n    if torch.cuda.is_available():\n        x = x.cuda()\n"
    "    return torch.where(x > 0, x, 0.0)\n",
]


@pytest.mark.parametrize("source", ALLOWED)
def test_policy_allows_ordinary_code(source):
    checked = for_assignment("lrn").check([(1, source)])
    assert checked.refusals == [] and checked.notes == [] and checked.cells == [(1, source)]


def test_policy_refusal_costs_only_the_functions_it_touches_and_keeps_line_numbers():
    source = ("import torch\n\ndef helper(a):\n    return a.__dict__\n\n"
              "def lrn_inter(a, n, k, alpha, beta):\n    return helper(a)\n\n"
              "def lrn_intra(a, n, k, alpha, beta):\n    return a * 2\n")
    checked = for_assignment("lrn").check([(4, source)])
    assert [name for name, _ in checked.refusals] == ["helper"]
    lines = checked.cells[0][1].split("\n")
    assert len(lines) == len(source.split("\n"))
    assert lines[2] == "def helper(*args, **kwargs): raise __grader_refused__(0)" and lines[3] == ""
    assert lines[5:] == source.split("\n")[5:]  # the other functions, untouched, on their own lines
    # run as the sandbox runs it: the function that calls the refused one fails when it calls it
    from grader.sandbox.child import restricted_builtins
    from grader.submission import Refused

    ns = {"__builtins__": restricted_builtins(sorted(BASE_MODULES))}
    exec(compile(checked.cells[0][1], "<cell 4>", "exec"), ns)
    assert torch.equal(ns["lrn_intra"](torch.ones(2), 3, 1.0, 1.0, 1.0), torch.full((2,), 2.0))
    with pytest.raises(Refused):
        ns["lrn_inter"](torch.ones(2), 3, 1.0, 1.0, 1.0)


def test_policy_top_level_statement_is_not_run_and_said_so():
    checked = for_assignment("batchnorm").check([(2, "import torch\n_g = torch.autograd.grad\nx = 1\n")])
    assert checked.cells[0][1].split("\n") == ["import torch", "", "x = 1", ""]
    assert checked.notes == ["not run: cell 2, line 2: autograd: autograd is not allowed in this assignment "
                             "(batchnorm): compute the gradients of batchnorm_backward with the formulas you "
                             "derived"]


def test_policy_modules_are_per_assignment():
    toy = Policy("toy", modules=BASE_MODULES | {"time"})
    assert toy.check([(1, "import time\n")]).notes == []
    assert for_assignment("lrn").check([(1, "import time\n")]).notes


def test_restricted_builtins_refuse_imports_and_dynamic_access_at_run_time():
    from grader.sandbox.child import restricted_builtins

    ns = {"__builtins__": restricted_builtins(["torch", "math"])}
    exec("import math\nimport torch.nn.functional as F\nfrom grader import check\nok = check(1)\n", ns)
    assert ns["ok"] is None
    for code in ("import os", "import torch._C", "from grader import suite", "getattr(1, 'real')",
                 "eval('1')", "open('/etc/passwd')"):
        with pytest.raises((ImportError, NameError)):
            exec(code, {"__builtins__": restricted_builtins(["torch", "math"])})


# --------------------------------------------------------------------------------- discriminating cases


def test_every_hidden_value_case_tells_garbage_from_the_reference():
    """No hidden value case can be passed by an output that ignores its input (zeros, the input itself, a
    constant): every one of them discriminates."""
    from grader.hidden import batchnorm as hb
    from grader.hidden import lrn as hl
    from grader.hidden import stagewise as hs

    def garbage(like, inp):
        return {"zeros": torch.zeros_like(like), "identity": inp, "constant": torch.full_like(like, 0.25)}

    passed = []
    for fn in ("lrn_inter", "lrn_intra"):
        for getter in (hl._value_cases, hl._border_cases):
            for i, (c, e) in enumerate(zip(*getter(fn), strict=True)):
                passed += [(fn, i, k) for k, o in garbage(e, c["a"]).items()
                           if torch.allclose(o, e, rtol=1e-6, atol=1e-9)]
    for getter in (hb._train_cases, hb._eval_cases, hb._constant_cases):
        built, expected = getter()[:2]
        for i, (c, e) in enumerate(zip(built, expected, strict=True)):
            passed += [("bn", i, k) for k, o in garbage(e["out"], c["x"]).items()
                       if torch.allclose(o, e["out"], rtol=1e-6, atol=1e-8)]
    built, expected, _ = hs._iterate_cases()
    for i, (c, e) in enumerate(zip(built, expected, strict=True)):
        for k in ("zeros", "identity", "constant"):
            if all(torch.allclose(garbage(w, c["w0"])[k], w, rtol=1e-9, atol=1e-11) for w in e):
                passed.append(("stagewise", i, k))
    assert passed == []


def test_hidden_border_cases_have_room_around_the_window():
    """Even-n border cases have more channels (rows, columns) than the window: positions on both sides of
    the clipped ones (a case with one channel, or a window covering every channel, tells no window from
    another)."""
    from grader.hidden import lrn as hl

    for fn, dims in (("lrn_inter", (1,)), ("lrn_intra", (2, 3))):
        for c in hl._border_cases(fn)[0]:
            assert c["n"] % 2 == 0
            assert all(c["a"].shape[d] > c["n"] for d in dims), (fn, c["n"], c["a"].shape)  # window: n + 1
