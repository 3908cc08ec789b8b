"""Hidden tests of the ``lrn`` assignment: random shapes and parameters, the borders, gradients, dtypes.

Cases come from hypothesis with ``derandomize=True`` (the same for every student); messages name the kind of
case that failed (even n, the borders) but never its values. Every case discriminates: a constant, zero, NaN
or identity output fails it, and the border cases have channels (or rows and columns) on both sides of the
window's clipped positions.
"""

from __future__ import annotations

import functools

import torch

from grader.reference.lrn import border_mask, reference, reference_grad, variant
from grader.suite import Partial, Score, cases, points, probe
from grader.suites.lrn import FORWARD, FUNCTIONS, GRAD, compare, output_problem

WINDOW = {"lrn_inter": "max(0, i - n/2) .. min(N - 1, i + n/2)",
          "lrn_intra": "max(0, x - n/2) .. min(W - 1, x + n/2) (and the same for y)"}


def _strategy(*, even_n: bool = False, intra: bool = False):
    from hypothesis import strategies as st

    n = st.sampled_from([2, 4, 6]) if even_n else st.integers(1, 7)
    # border cases: more channels (rows, columns) than the window, so the clipped positions differ from the
    # inner ones and a window of another width gives other values there
    size = (lambda m: st.integers(m + 1, m + 3)) if even_n else (lambda m: st.integers(1, 7))
    return n.flatmap(lambda nv: st.fixed_dictionaries({
        "B": st.integers(1, 2),
        "C": st.integers(1, 3) if intra else (size(nv) if even_n else st.integers(1, 9)),
        "H": size(nv) if intra else st.integers(1, 3),
        "W": size(nv) if intra else st.integers(1, 3),
        "n": st.just(nv),
        "k": st.sampled_from([0.5, 1.0, 2.0]),
        "alpha": st.sampled_from([0.01, 0.5, 1.0]),
        "beta": st.sampled_from([0.5, 0.75, 1.0]),
        "seed": st.integers(0, 2**31 - 1),
    }))


def _build(params: dict, dtype=torch.float64) -> dict:
    g = torch.Generator().manual_seed(params["seed"])
    a = torch.randn(params["B"], params["C"], params["H"], params["W"], generator=g, dtype=torch.float64)
    return {"a": a.to(dtype), "n": params["n"], "k": params["k"], "alpha": params["alpha"],
            "beta": params["beta"]}


@functools.cache
def _value_cases(fn: str) -> tuple[list, list]:
    built = [_build(p) for p in cases(_strategy(intra=fn == "lrn_intra"), 12)]
    return built, [reference(c, fn) for c in built]


@functools.cache
def _border_cases(fn: str) -> tuple[list, list]:
    built = [_build(p) for p in cases(_strategy(even_n=True, intra=fn == "lrn_intra"), 8)]
    return built, [reference(c, fn) for c in built]


@functools.cache
def _grad_cases(fn: str) -> tuple[list, list]:
    built = [_build(p) for p in cases(_strategy(intra=fn == "lrn_intra"), 6, salt=3)]
    g = torch.Generator().manual_seed(7)
    for c in built:
        c["g"] = torch.randn(c["a"].shape, generator=g, dtype=torch.float64)
        v = torch.randn(c["a"].shape, generator=g, dtype=torch.float64)
        c["a_plus"], c["a_minus"] = c["a"] + _H * v, c["a"] - _H * v
        c["v"] = v  # the grader's alone: the probe gets only the two moved inputs
    return built, [(reference(c, fn), reference_grad(c, fn)) for c in built]


_H = 1e-6  # central differences in float64: truncation ~h^2, rounding ~1e-16 / h relative


@functools.cache
def _dtype_cases() -> list:
    return [_build(p, torch.float32) for p in cases(_strategy(), 4, salt=4)]


def prepare() -> None:
    for fn in FUNCTIONS:
        _value_cases(fn)
        _border_cases(fn)
        _grad_cases(fn)
    _dtype_cases()


def _sent(built: list) -> list:
    """The cases as the probe receives them (without what only the grader may know)."""
    return [{k: v for k, v in c.items() if k != "v"} for c in built]


_DIAGNOSIS = {
    "alpha/n": "it looks like alpha is divided by n: in the lecture's formula alpha multiplies the sum "
               "itself",
    "alpha/n^2": "it looks like alpha is divided by the window size: in the lecture's formula alpha "
                 "multiplies the sum itself",
    "n taps": "it looks like your window has n taps (torch's convention); the lecture's runs from i - n/2 to "
              "i + n/2 with n/2 rounded down, i.e. 2*(n//2) + 1 taps",
}


def _diagnose(fn: str, failed: list[dict], outs: list) -> str:
    for kind in ("alpha/n", "alpha/n^2", "n taps"):
        if kind == "alpha/n^2" and fn == "lrn_inter":
            continue
        if all(o is not None and o.shape == c["a"].shape
               and torch.allclose(o, variant(c, fn, kind), rtol=1e-6, atol=1e-9)
               for c, o in zip(failed, outs, strict=True)):
            return _DIAGNOSIS[kind]
    return ""


def _values_test(sub, fn: str) -> None:
    built, expected = _value_cases(fn)
    results = probe(sub, FORWARD, built, key="hidden-values", fn=fn)
    failed, outs, wanted, problems = [], [], [], []
    for c, r, e in zip(built, results, expected, strict=True):
        problem = compare(sub, fn, r, e)
        if problem is not None:
            failed.append(c)
            outs.append(r["out"] if r.ok and isinstance(r["out"], torch.Tensor) else None)
            wanted.append(e)
            problems.append(problem)
    if not failed:
        return
    message = problems[0]
    if all(p == f"{fn} gives wrong values" for p in problems):
        kinds = {c["n"] % 2 for c in failed}
        which = " for even n" if kinds == {0} else " for odd n" if kinds == {1} else ""
        message = f"{fn} gives wrong values{which} on {len(failed)} of {len(built)} random inputs"
        hint = _diagnose(fn, failed, outs)
        if not hint:
            inner = [~border_mask(c, fn) for c in failed]
            inner_ok = all(o is not None and torch.allclose(o[m], e[m], rtol=1e-6, atol=1e-9)
                           for m, o, e in zip(inner, outs, wanted, strict=True))
            if inner_ok:
                hint = f"the values are right away from the borders: check the window bounds {WINDOW[fn]}"
        if hint:
            message += f": {hint}"
    else:
        message += f" ({len(failed)} of {len(built)} random inputs wrong)"
    raise Partial(1 - len(failed) / len(built), message)


def _borders_test(sub, fn: str) -> None:
    built, expected = _border_cases(fn)
    results = probe(sub, FORWARD, built, key="hidden-borders", fn=fn)
    score = Score()
    where = "channel borders" if fn == "lrn_inter" else "image borders"
    for c, r, e in zip(built, results, expected, strict=True):
        problem = compare(sub, fn, r, e)
        if problem == f"{fn} gives wrong values":
            m = border_mask(c, fn)
            if torch.allclose(r["out"][m], e[m], rtol=1e-6, atol=1e-9):
                problem = f"{fn} is right at the {where} but wrong away from them"
            else:
                problem = f"{fn} is wrong at the {where} for even n: check the window bounds {WINDOW[fn]}"
        score.check(problem is None, problem or "")
    score.done()


@points(3, functions=("lrn_inter",))
def test_lrn_inter_values(sub):
    _values_test(sub, "lrn_inter")


@points(2, functions=("lrn_inter",))
def test_lrn_inter_borders_even_n(sub):
    _borders_test(sub, "lrn_inter")


@points(3, functions=("lrn_intra",))
def test_lrn_intra_values(sub):
    _values_test(sub, "lrn_intra")


@points(2, functions=("lrn_intra",))
def test_lrn_intra_borders_even_n(sub):
    _borders_test(sub, "lrn_intra")


def _grads(sub, fn):
    built, expected = _grad_cases(fn)
    return built, expected, probe(sub, GRAD, _sent(built), key="grad", fn=fn)


@points(2, functions=FUNCTIONS)
def test_lrn_gradients(sub):
    """Autograd through the student's forward equals autograd through the reference (float64)."""
    score = Score()
    for fn in FUNCTIONS:
        built, expected, results = _grads(sub, fn)
        for r, (_, want) in zip(results, expected, strict=True):
            if not r.ok:
                score.fail(compare(sub, fn, r, want))
                continue
            got = r["grad"]
            if got is None:
                problem = (f"{fn}'s result is not connected to its input by autograd: avoid .detach(), "
                           f".numpy(), .item(), torch.no_grad() and tensors rebuilt from Python numbers")
                if not isinstance(r["out"], torch.Tensor):
                    problem = output_problem(fn, r["out"], want)
            elif not (isinstance(got, torch.Tensor) and got.shape == want.shape):
                problem = f"the gradient through {fn} does not have its input's shape"
            elif not torch.allclose(got.double(), want, rtol=1e-6, atol=1e-9):
                problem = (f"the gradient of {fn} (autograd through your forward) differs from the "
                           f"reference's: fix the forward values first")
            else:
                problem = None
            score.check(problem is None, problem or "")
    score.done()


@points(1, functions=FUNCTIONS)
def test_lrn_differentiable(sub):
    """Property: where the student's forward is right, autograd through it agrees with central differences
    of that same forward (computed here from its outputs at a +- h v)."""
    score = Score()
    for fn in FUNCTIONS:
        built, expected, results = _grads(sub, fn)
        for c, r, (want, _) in zip(built, results, expected, strict=True):
            problem = compare(sub, fn, r, want)
            if problem is None:
                plus, minus, grad = r["out_plus"], r["out_minus"], r["grad"]
                ok = False
                if all(isinstance(t, torch.Tensor) and t.shape == want.shape for t in (plus, minus, grad)):
                    numeric = float((c["g"] * (plus.double() - minus.double())).sum()) / (2 * _H)
                    analytic = float((grad.double() * c["v"]).sum())
                    scale = float((grad.double() * c["v"]).abs().sum()) + float((c["g"] * want).abs().sum())
                    ok = abs(numeric - analytic) <= 1e-6 * scale + 1e-9
                score.check(ok, f"autograd through {fn} disagrees with a numeric derivative of {fn} itself: "
                                f"avoid in-place updates of tensors autograd needs and non-differentiable "
                                f"steps")
            else:
                score.check_if(False, False, "", why_not=problem)
    score.done(nothing_counted="not checked: your forward gave wrong values on every input of this test")


@points(1, functions=FUNCTIONS)
def test_lrn_dtypes(sub):
    """Property: a float32 input gives a float32 result, as close to the reference as float32 allows (counted
    on the cases whose values are right)."""
    built = _dtype_cases()
    score = Score()
    for fn in FUNCTIONS:
        for c, r in zip(built, probe(sub, FORWARD, built, key="dtypes", fn=fn), strict=True):
            want = reference(dict(c, a=c["a"].double()), fn)
            out = r["out"] if r.ok else None
            right = (isinstance(out, torch.Tensor) and out.shape == want.shape
                     and bool(torch.isfinite(out).all())
                     and torch.allclose(out.double(), want, rtol=1e-4, atol=1e-5))
            why = None if right else (compare(sub, fn, r, want.float()) or f"{fn} is wrong in float32")
            score.check_if(right, right and out.dtype == torch.float32,
                           f"{fn} should return the input's dtype (float32 here, got "
                           f"{getattr(out, 'dtype', None)}): do not convert", why_not=why or "")
    score.done(nothing_counted="not checked: no float32 input gave right values")
