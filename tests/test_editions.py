"""The two editions of tricksref's four exercise ops agree, the student one goes through the off-limits calls,
and a copy of tricksref without tricksref/scratch (the student bundle) imports and works.

Oracle: the from-scratch implementations (tested against torch and loops in test_lrn.py, test_batchnorm.py,
test_dropout.py, test_schedules.py) and the student ones, which are torch's own operators, checked against
each other in float64 to 1e-10, values and gradients.
"""

from __future__ import annotations

import ast
import inspect
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import tricksref
from tricksref.scratch import batchnorm as scratch_bn
from tricksref.scratch import dropout as scratch_dropout
from tricksref.scratch import lrn as scratch_lrn
from tricksref.scratch import schedules as scratch_schedules
from tricksref.student import batchnorm as student_bn
from tricksref.student import dropout as student_dropout
from tricksref.student import lrn as student_lrn
from tricksref.student import schedules as student_schedules

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tricksref"
TOL = dict(rtol=1e-10, atol=1e-10)
EDITIONS = {"scratch": (scratch_lrn, scratch_bn, scratch_dropout, scratch_schedules),
            "student": (student_lrn, student_bn, student_dropout, student_schedules)}


def _randn(shape, seed, dtype=torch.float64):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


def _value_and_grads(fn, tensors, g):
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    y = fn(*leaves)
    return (y.detach(), *torch.autograd.grad(y, leaves, g))


def test_edition_is_solutions_in_the_repository():
    assert tricksref.EDITION == "solutions"
    assert tricksref.lrn._impl is scratch_lrn and tricksref.batchnorm._impl is scratch_bn
    assert tricksref.dropout.__module__ == "tricksref.dropout"  # the function, bound by the package


# ----------------------------------------------------------------------------------------------------------
# the two implementations agree


@pytest.mark.parametrize("mode", ["inter", "intra"])
@pytest.mark.parametrize("convention", ["torch", "alexnet"])
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("shape", [(2, 7, 5, 4), (2, 5, 6), (1, 3, 3, 4, 2)], ids=["4d", "3d", "5d"])
def test_editions_lrn_agree(mode, convention, size, shape):
    x, g = _randn(shape, size), _randn(shape, size + 100)
    args = (size, 0.6, 0.75, 1.5, mode, convention)
    got = _value_and_grads(lambda t: scratch_lrn.local_response_norm(t, *args), [x], g)
    want = _value_and_grads(lambda t: student_lrn.local_response_norm(t, *args), [x], g)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("mode", ["inter", "intra"])
def test_editions_lrn_lecture_example(mode):
    # 1/9 in both editions: the lecture's n = 2 window sums three values (inter: channels, intra: positions)
    a = torch.tensor([2.0, 1.0, 2.0], dtype=torch.float64)
    a = a.view(1, 3, 1, 1) if mode == "inter" else a.view(1, 1, 1, 3)
    for impl in (scratch_lrn, student_lrn):
        b = impl.local_response_norm(a, 2, 1.0, 1.0, 0.0, mode, "alexnet")
        assert b.flatten()[1].item() == pytest.approx(1 / 9, rel=1e-12)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (3, 2, 4, 5), (2, 2, 3, 2, 3)])
@pytest.mark.parametrize("affine", [True, False])
def test_editions_batchnorm_agree(training, shape, affine):
    C = shape[1]
    x, g = _randn(shape, 1) * 3 + 2, _randn(shape, 2)
    w, b = _randn(C, 3) + 1.5, _randn(C, 4)
    stats = {name: (_randn(C, 5), _randn(C, 6).abs() + 0.5) for name in EDITIONS}
    results = {}
    for name, (_, bn, _, _) in EDITIONS.items():
        rm, rv = stats[name]
        if affine:
            results[name] = _value_and_grads(
                lambda t, w_, b_, bn=bn, rm=rm, rv=rv: bn.batch_norm(t, rm, rv, w_, b_, training, 0.3, 1e-5),
                [x, w, b], g)
        else:
            results[name] = _value_and_grads(
                lambda t, bn=bn, rm=rm, rv=rv: bn.batch_norm(t, rm, rv, None, None, training, 0.3, 1e-5),
                [x], g)
    for a, b in zip(results["scratch"], results["student"], strict=True):
        torch.testing.assert_close(a, b, **TOL)
    for a, b in zip(stats["scratch"], stats["student"], strict=True):  # the running statistics, in place
        torch.testing.assert_close(a, b, **TOL)
    if training:
        assert not torch.equal(stats["scratch"][0], _randn(C, 5))  # they did move


@pytest.mark.parametrize("name", list(EDITIONS))
def test_editions_dropout_semantics(name):
    drop = EDITIONS[name][2].dropout
    x = _randn((64, 33), 7) + 5.0  # never 0: a 0 in the output means dropped
    for p in (0.5, 0.1, 0.3):
        gen = torch.Generator().manual_seed(3)
        y = drop(x, p, gen, False)
        kept = y != 0
        torch.testing.assert_close(y[kept], x[kept] / (1 - p), rtol=1e-15, atol=0)  # inverted scaling
        n = x.numel()
        rate = kept.double().mean().item()
        assert abs(rate - (1 - p)) < 6 * (p * (1 - p) / n) ** 0.5, (p, rate)  # keep rate, 6 sigma
        assert torch.equal(drop(x, p, torch.Generator().manual_seed(3), False), y)  # same seed, same mask
        assert not torch.equal(drop(x, p, gen, False), y)  # the generator advanced
        xg = x.clone().requires_grad_()
        drop(xg, p, torch.Generator().manual_seed(3), False).backward(torch.ones_like(x))
        torch.testing.assert_close(xg.grad, kept.double() / (1 - p), rtol=1e-15, atol=0)
    ones = torch.tensor([1.0, float("inf"), float("nan")], requires_grad=True)
    y = drop(ones, 1.0, None, False)
    y.backward(torch.tensor([1.0, float("inf"), 2.0]))
    assert torch.equal(y, torch.zeros(3)) and torch.equal(ones.grad, torch.zeros(3))  # p = 1


def test_editions_dropout_public_edges():
    # eval and p = 0 never reach an edition: the input itself comes back
    x = _randn((5, 4), 8)
    assert tricksref.dropout(x, 0.5, False) is x and tricksref.dropout(x, 0.0) is x


@pytest.mark.parametrize("Ts", [[2, 3], [1, 1, 4]])
def test_editions_stagewise_agree(Ts):
    etas = [0.3, 0.1, 0.02][: len(Ts)]
    target = _randn(4, 9)

    def grad_fn(w, step):
        return 2 * (w - target) + 0.1 * step  # a gradient that depends on the step counter

    def check(G, w, step):
        return G

    w0 = _randn(4, 10)
    a = scratch_schedules.stagewise_sgd(w0, grad_fn, etas, Ts, check)
    b = student_schedules.stagewise_sgd(w0, grad_fn, etas, Ts, check)
    assert len(a) == len(b) == sum(Ts)
    for u, v in zip(a, b, strict=True):
        torch.testing.assert_close(u, v, **TOL)
    assert torch.equal(w0, _randn(4, 10))  # w0 untouched by either


def test_editions_stagewise_type_promotion_agrees():
    w0 = torch.tensor([1.0, 2.0])  # float32, with a float64 gradient: w - eta G is float64 from then on
    grad = lambda w, step: torch.ones(2, dtype=torch.float64) * w.double()  # noqa: E731
    a = scratch_schedules.stagewise_sgd(w0, grad, [0.5], [2], lambda G, w, s: G)
    b = student_schedules.stagewise_sgd(w0, grad, [0.5], [2], lambda G, w, s: G)
    assert [t.dtype for t in a] == [t.dtype for t in b] == [torch.float64] * 2
    for u, v in zip(a, b, strict=True):
        torch.testing.assert_close(u, v)


# ----------------------------------------------------------------------------------------------------------
# the student edition goes through the calls the exercises put off limits


def _count_calls(monkeypatch, owner, attr):
    calls = []
    original = getattr(owner, attr)

    def counted(*args, **kwargs):
        calls.append(attr)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, attr, counted)
    return calls


@pytest.mark.parametrize("mode", ["inter", "intra"])
@pytest.mark.parametrize("convention", ["torch", "alexnet"])
def test_student_lrn_calls_torchs_operator(monkeypatch, mode, convention):
    calls = _count_calls(monkeypatch, F, "local_response_norm")
    student_lrn.local_response_norm(_randn((1, 3, 4, 4), 0), 3, 1e-2, 0.75, 1.0, mode, convention)
    assert calls == ["local_response_norm"]


def test_student_ops_call_torchs_operators(monkeypatch):
    bn_calls = _count_calls(monkeypatch, F, "batch_norm")
    drop_calls = _count_calls(monkeypatch, F, "dropout")
    step_calls = _count_calls(monkeypatch, torch.optim.SGD, "step")
    x = _randn((4, 3, 2), 0)
    student_bn.batch_norm(x, None, None, None, None, True, 0.1, 1e-5)
    student_dropout.dropout(x, 0.5, None, False)
    student_dropout.dropout(x, 0.5, torch.Generator().manual_seed(0), False)
    student_schedules.stagewise_sgd(x, lambda w, s: w, [0.1, 0.01], [2, 3], lambda G, w, s: G)
    assert len(bn_calls) == 1 and len(drop_calls) == 2 and len(step_calls) == 5


def _called_names(tree: ast.AST) -> set[str]:
    """Dotted names of every call in the tree (``F.local_response_norm``, ``torch.optim.SGD``, ...)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            names.add(ast.unparse(node.func))
    return names


@pytest.mark.parametrize("module, function, required", [
    ("lrn", "local_response_norm", "F.local_response_norm"),
    ("batchnorm", "batch_norm", "F.batch_norm"),
    ("dropout", "dropout", "F.dropout"),
    ("schedules", "stagewise_sgd", "torch.optim.SGD"),
])
def test_student_source_goes_through_the_off_limits_call(module, function, required):
    tree = ast.parse((PACKAGE / "student" / f"{module}.py").read_text())
    imports = {ast.unparse(n) for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))}
    assert "from torch.nn import functional as F" in imports or required.startswith("torch.")
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function)
    assert required in _called_names(fn)
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]  # no autograd.Function of its own


# the math a from-scratch computation of the four ops is made of; the public modules must call none of it
_SCRATCH_MATH = {"addcmul", "addcmul_", "rsqrt", "rsqrt_", "sqrt", "pow", "pow_", "random_", "bernoulli",
                 "bernoulli_", "narrow", "mse_loss", "var", "mean", "sum", "mul_", "unfold", "where"}


@pytest.mark.parametrize("module", ["lrn", "batchnorm", "dropout", "schedules"])
def test_public_modules_hold_no_computation_of_their_own(module):
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            bases = {ast.unparse(b) for b in node.bases}
            assert not bases & {"torch.autograd.Function", "Function"}, f"{module}.py: {node.name}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            assert node.func.attr not in _SCRATCH_MATH, f"{module}.py line {node.lineno}: {ast.unparse(node)}"
    if module == "schedules":  # the two loops live in scratch/schedules.py only
        loops = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in ("sgd", "stagewise_sgd")
                 ]
        assert len(loops) == 2
        for fn in loops:
            assert not [n for n in ast.walk(fn) if isinstance(n, (ast.For, ast.While))], fn.name


def test_scratch_holds_only_the_four_ops():
    files = sorted(p.name for p in (PACKAGE / "scratch").iterdir() if p.suffix in (".py", ".c"))
    assert files == ["__init__.py", "_kernels.c", "_native.py", "batchnorm.py", "dropout.py", "lrn.py",
                     "schedules.py"]


# ----------------------------------------------------------------------------------------------------------
# the student bundle: tricksref without tricksref/scratch, in a fresh interpreter


_STRIPPED_SCRIPT = textwrap.dedent('''
    import sys, torch
    import torch.nn.functional as F
    import tricksref as tr
    assert tr.__file__.startswith(sys.argv[1]), tr.__file__   # the copy, not the repository
    assert tr.EDITION == "student", tr.EDITION
    import importlib.machinery
    assert importlib.machinery.PathFinder.find_spec("tricksref.scratch", tr.__path__) is None
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 5, 5, dtype=torch.float64, generator=g, requires_grad=True)
    for mode in ("inter", "intra"):
        for conv in ("torch", "alexnet"):
            y = tr.local_response_norm(x, 3, 0.1, 0.75, 2.0, mode=mode, convention=conv)
            y.sum().backward()
            m = tr.LocalResponseNorm(3, 0.1, 0.75, 2.0, mode=mode, convention=conv)
            assert torch.equal(m(x), y)
    torch.testing.assert_close(tr.local_response_norm(x, 5), F.local_response_norm(x, 5))
    a = torch.tensor([2.0, 1.0, 2.0]).view(1, 3, 1, 1)
    b = tr.local_response_norm(a, 2, 1.0, 1.0, 0.0, convention="alexnet")
    assert abs(b[0, 1, 0, 0].item() - 1 / 9) < 1e-7
    rm, rv = torch.zeros(6, dtype=torch.float64), torch.ones(6, dtype=torch.float64)
    y = tr.batch_norm(x, rm, rv, training=True)
    y.sum().backward()
    assert rm.abs().sum() > 0
    for cls, shape in ((tr.BatchNorm1d, (4, 3)), (tr.BatchNorm2d, (4, 3, 2, 2)),
                       (tr.BatchNorm3d, (2, 3, 2, 2, 2))):
        bn = cls(3)
        bn(torch.randn(shape)).sum().backward()
        bn.eval()(torch.randn(shape))
        assert bn.num_batches_tracked.item() == 1
    y = tr.dropout(torch.ones(1000), 0.5, generator=torch.Generator().manual_seed(1))
    assert set(y.unique().tolist()) == {0.0, 2.0}
    assert torch.equal(y, tr.dropout(torch.ones(1000), 0.5, generator=torch.Generator().manual_seed(1)))
    assert tr.Dropout(0.3).eval()(x) is x
    ws = tr.stagewise_sgd(torch.tensor([4.0, -2.0]), lambda w, s: 2 * (w - 1), [0.25, 0.125], [1, 2])
    assert [w.tolist() for w in ws] == [[2.5, -0.5], [2.125, -0.125], [1.84375, 0.15625]], ws
    ws = tr.sgd(torch.tensor([1.0]), lambda w, t: w, lr=0.5, iters=3)
    assert [w.item() for w in ws] == [0.5, 0.25, 0.125]
    model = tr.AlexNetSmall(num_classes=3, in_channels=1, lrn=True, batchnorm=True, dropout=0.5, width=8)
    model(torch.rand(4, 1, 32, 32)).sum().backward()
    print("ok")
''')


def _run(args, env_extra=None, cwd=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=300)


def test_stripped_copy_imports_and_works(tmp_path):
    shutil.copytree(PACKAGE, tmp_path / "tricksref", ignore=shutil.ignore_patterns("scratch", "__pycache__"))
    assert not (tmp_path / "tricksref" / "scratch").exists()
    script = tmp_path / "check.py"
    script.write_text(_STRIPPED_SCRIPT)
    env = {"PYTHONPATH": str(tmp_path), "TRICKSREF_EDITION": ""}
    proc = _run([str(script), str(tmp_path)], env, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]
    # asking the stripped copy for the solutions edition is an error that says why
    proc = _run(["-c", "import tricksref"], {**env, "TRICKSREF_EDITION": "solutions"}, cwd=tmp_path)
    assert proc.returncode != 0 and "tricksref/scratch" in proc.stderr


def test_edition_variable_is_checked():
    proc = _run(["-c", "import tricksref"], {"TRICKSREF_EDITION": "students"})
    assert proc.returncode != 0
    assert "TRICKSREF_EDITION: expected 'solutions', 'student' or unset" in proc.stderr
    proc = _run(["-c", "import tricksref; print(tricksref.EDITION, tricksref.lrn._impl.__name__)"],
                {"TRICKSREF_EDITION": "student"})
    assert proc.stdout.split() == ["student", "tricksref.student.lrn"], proc.stderr


@pytest.mark.slow
def test_public_api_tests_pass_in_the_student_edition():
    """The public-API tests that are about values (not about how the solutions edition computes them) pass
    with TRICKSREF_EDITION=student too."""
    selection = [
        "tests/test_lrn.py::test_lrn_matches_loop_oracle_4d",
        "tests/test_lrn.py::test_lrn_matches_torch_every_size",
        "tests/test_lrn.py::test_lrn_lecture_example_is_one_ninth",
        "tests/test_lrn.py::test_lrn_half_precision",
        "tests/test_lrn.py::test_lrn_gradgradcheck", "tests/test_batchnorm.py::test_bn_matches_torch_larger",
        "tests/test_batchnorm.py::test_bn_gradgradcheck",
        "tests/test_batchnorm.py::test_bn_module_matches_torch_over_steps",
        "tests/test_batchnorm.py::test_bn_gradient_penalty_matches_torch",
        "tests/test_dropout.py::test_dropout_eval_is_identity",
        "tests/test_dropout.py::test_dropout_p_one_gives_zeros_and_zero_gradients",
        "tests/test_dropout.py::test_dropout_same_generator_seed_same_mask",
        "tests/test_dropout.py::test_dropout_zero_fraction_close_to_p",
        "tests/test_schedules.py", "tests/test_editions.py::test_editions_dropout_public_edges",
    ]
    proc = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *selection],
                {"TRICKSREF_EDITION": "student"}, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert " passed" in proc.stdout.splitlines()[-1]


def test_public_signatures_match_torch():
    """Positional parameters and defaults as torch's, for every drop-in (names may differ: x for input)."""
    pairs = [(tricksref.dropout, F.dropout), (tricksref.batch_norm, F.batch_norm),
             (tricksref.local_response_norm, F.local_response_norm)]
    for ours, theirs in pairs:
        po = [p for p in inspect.signature(ours).parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
        pt = [p for p in inspect.signature(theirs).parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
        assert [p.default for p in po] == [p.default for p in pt], ours.__name__
        assert [p.name for p in po][1:] == [p.name for p in pt][1:], ours.__name__
    for ours, theirs in [(tricksref.Dropout, torch.nn.Dropout), (tricksref.LocalResponseNorm,
                                                                  torch.nn.LocalResponseNorm),
                         (tricksref.BatchNorm2d, torch.nn.BatchNorm2d)]:
        po = [p for p in inspect.signature(ours).parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
        pt = [p for p in inspect.signature(theirs).parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
        ours_params, torch_params = [(p.name, p.default) for p in po], [(p.name, p.default) for p in pt]
        assert ours_params[: len(pt)] == torch_params, ours.__name__
    x = torch.ones(10, 10)
    assert tricksref.dropout(x, 0.5, True, True) is x  # torch's fourth positional argument is inplace
    assert "generator" in inspect.signature(tricksref.dropout).parameters
    assert inspect.signature(tricksref.dropout).parameters["generator"].kind is inspect.Parameter.KEYWORD_ONLY
