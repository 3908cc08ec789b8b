"""Hidden tests of the ``lrn`` assignment: random shapes and parameters, the borders, gradients, dtypes.

Cases come from hypothesis with ``derandomize=True`` (the same for every student); messages name the kind of
case that failed (even n, the borders) but never its values.
"""

from __future__ import annotations

import functools

import torch

from grader.suite import Partial, Score, cases, memo, points
from grader.suites.lrn import FUNCTIONS, compare, reference, run_forward

MODE = {"lrn_inter": "inter", "lrn_intra": "intra"}
WINDOW = {"lrn_inter": "max(0, i - n/2) .. min(N - 1, i + n/2)",
          "lrn_intra": "max(0, x - n/2) .. min(W - 1, x + n/2) (and the same for y)"}


def _strategy(*, even_n: bool = False, intra: bool = False):
    from hypothesis import strategies as st

    return st.fixed_dictionaries({
        "B": st.integers(1, 2),
        "C": st.integers(1, 3) if intra else st.integers(1, 9),
        "H": st.integers(1, 7) if intra else st.integers(1, 3),
        "W": st.integers(1, 7) if intra else st.integers(1, 3),
        "n": st.sampled_from([2, 4, 6]) if even_n else st.integers(1, 7),
        "k": st.sampled_from([0.0, 1.0, 2.0]),
        "alpha": st.sampled_from([1e-4, 0.01, 0.5, 1.0]),
        "beta": st.sampled_from([0.5, 0.75, 1.0]),
        "seed": st.integers(0, 2**31 - 1),
    })


def _build(params: dict, dtype=torch.float64) -> dict:
    g = torch.Generator().manual_seed(params["seed"])
    a = torch.randn(params["B"], params["C"], params["H"], params["W"], generator=g, dtype=torch.float64)
    return {"a": a.to(dtype), "n": params["n"], "k": params["k"], "alpha": params["alpha"],
            "beta": params["beta"]}


@functools.cache
def _value_cases(fn: str) -> tuple[list, list]:
    drawn = cases(_strategy(intra=fn == "lrn_intra"), 12)
    built = [_build(p) for p in drawn]
    return built, [reference(c["a"], c["n"], c["k"], c["alpha"], c["beta"], MODE[fn]) for c in built]


@functools.cache
def _border_cases(fn: str) -> tuple[list, list]:
    drawn = cases(_strategy(even_n=True, intra=fn == "lrn_intra"), 8)
    built = [_build(p) for p in drawn]
    return built, [reference(c["a"], c["n"], c["k"], c["alpha"], c["beta"], MODE[fn]) for c in built]


@functools.cache
def _grad_cases(fn: str) -> tuple[list, list]:
    built = [_build(p) for p in cases(_strategy(intra=fn == "lrn_intra"), 6, salt=3)]
    expected = []
    g = torch.Generator().manual_seed(7)
    for c in built:
        c["g"] = torch.randn(c["a"].shape, generator=g, dtype=torch.float64)
        c["v"] = torch.randn(c["a"].shape, generator=g, dtype=torch.float64)
        c["h"] = 1e-6
        a = c["a"].clone().requires_grad_(True)
        out = reference(a, c["n"], c["k"], c["alpha"], c["beta"], MODE[fn])
        (grad,) = torch.autograd.grad(out, a, c["g"])
        expected.append(grad)
    return built, expected


def prepare() -> None:
    for fn in FUNCTIONS:
        _value_cases(fn)
        _border_cases(fn)
        _grad_cases(fn)
    _dtype_cases()


def _variant(fn: str, c: dict, kind: str) -> torch.Tensor:
    """A known mistake, computed with the reference, to recognise it in a student's output."""
    import tricksref

    n, mode = c["n"], MODE[fn]
    taps = n if mode == "inter" else n * n
    if kind == "alpha/n":
        return reference(c["a"], n, c["k"], c["alpha"] / n, c["beta"], mode)
    if kind == "alpha/n^2":
        return reference(c["a"], n, c["k"], c["alpha"] / taps, c["beta"], mode)
    if kind == "n taps":  # torch's window (n taps, one more before than after), alpha not divided
        return tricksref.local_response_norm(c["a"], n, alpha=c["alpha"] * taps, beta=c["beta"], k=c["k"],
                                             mode=mode, convention="torch")
    raise ValueError(kind)


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
               and torch.allclose(o, _variant(fn, c, kind), rtol=1e-6, atol=1e-9)
               for c, o in zip(failed, outs, strict=False)):
            return _DIAGNOSIS[kind]
    return ""


def _border_mask(fn: str, c: dict) -> torch.Tensor:
    """True at the positions whose window is clipped by a border (channels, or rows and columns)."""
    a, half = c["a"], c["n"] // 2
    mask = torch.zeros_like(a, dtype=torch.bool)
    dims = (1,) if fn == "lrn_inter" else (2, 3)
    for d in dims:
        size = a.shape[d]
        idx = torch.arange(size)
        edge = (idx < half) | (idx > size - 1 - half)
        shape = [1] * a.dim()
        shape[d] = size
        mask |= edge.view(shape)
    return mask


def _values_test(sub, fn: str) -> None:
    built, expected = _value_cases(fn)
    results = run_forward(sub, fn, "hidden-values", built)
    failed, outs, wanted, problems = [], [], [], []
    for c, r, e in zip(built, results, expected, strict=False):
        problem = compare(fn, r, e)
        if problem is not None:
            failed.append(c)
            outs.append(r["value"]["out"] if r["error"] is None else None)
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
        if not hint and all(o is not None for o in outs):
            inner_ok = all(torch.allclose(o[~_border_mask(fn, c)], e[~_border_mask(fn, c)], rtol=1e-6,
                                          atol=1e-9)
                           for c, o, e in zip(failed, outs, wanted, strict=False))
            if inner_ok:
                hint = f"the values are right away from the borders: check the window bounds {WINDOW[fn]}"
        if hint:
            message += f": {hint}"
    raise Partial(1 - len(failed) / len(built), message)


def _borders_test(sub, fn: str) -> None:
    built, expected = _border_cases(fn)
    results = run_forward(sub, fn, "hidden-borders", built)
    score = Score()
    where = "channel borders" if fn == "lrn_inter" else "image borders"
    for c, r, e in zip(built, results, expected, strict=False):
        problem = compare(fn, r, e)
        if problem == f"{fn} gives wrong values":
            m = _border_mask(fn, c)
            if torch.allclose(r["value"]["out"][m], e[m], rtol=1e-6, atol=1e-9):
                continue  # wrong only away from the borders: the values test says so
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


def _run_grad(sub, fn):
    built, _ = _grad_cases(fn)
    return memo(sub, ("lrn.grad", fn), lambda: sub.run("lrn.grad", fn=fn, cases=built)["results"])


@points(2, functions=FUNCTIONS)
def test_lrn_gradients(sub):
    """Autograd through the student's forward equals autograd through the reference (float64)."""
    score = Score()
    for fn in FUNCTIONS:
        built, expected = _grad_cases(fn)
        for r, e in zip(_run_grad(sub, fn), expected, strict=False):
            if r["error"] is not None:
                score.fail(r["error"])
                continue
            got = r["value"]["grad"]
            score.check(got.shape == e.shape and torch.allclose(got, e, rtol=1e-6, atol=1e-9),
                        f"the gradient of {fn} (autograd through your forward) differs from the reference's: "
                        f"fix the forward values first")
    score.done()


@points(1, functions=FUNCTIONS)
def test_lrn_differentiable(sub):
    """Autograd through the student's forward agrees with central differences of that same forward."""
    score = Score()
    for fn in FUNCTIONS:
        built, _ = _grad_cases(fn)
        for c, r in zip(built, _run_grad(sub, fn), strict=False):
            if r["error"] is not None:
                score.fail(r["error"])
                continue
            v = r["value"]
            numeric = (v["plus"] - v["minus"]) / (2 * c["h"])
            analytic = float((v["grad"].double() * c["v"]).sum())
            ok = abs(numeric - analytic) <= 1e-5 * max(1.0, abs(numeric))
            score.check(ok, f"autograd through {fn} disagrees with a numeric derivative of {fn} itself: "
                            f"avoid in-place updates of tensors autograd needs and non-differentiable steps")
    score.done()


@functools.cache
def _dtype_cases() -> list:
    drawn = cases(_strategy(), 2, salt=4)
    return [_build(p, dtype) for p in drawn for dtype in (torch.float32, torch.float64)]


@points(1, functions=FUNCTIONS)
def test_lrn_dtypes_and_device(sub):
    """float32 in, float32 out (close to the student's own float64 result); CUDA where the grader has it."""
    built = _dtype_cases()
    score = Score()
    for fn in FUNCTIONS:
        results = run_forward(sub, fn, "dtypes", built)
        for i in range(0, len(built), 2):
            r32, r64 = results[i], results[i + 1]
            if r32["error"] or r64["error"]:
                score.fail(r32["error"] or r64["error"])
                continue
            o32, o64 = r32["value"]["out"], r64["value"]["out"]
            score.check(o32.dtype == torch.float32 and o64.dtype == torch.float64,
                        f"{fn} should return the input's dtype (got {o32.dtype} for float32 and {o64.dtype} "
                        f"for float64): do not convert")
            score.check(o32.shape == o64.shape and torch.allclose(o32.double(), o64, rtol=1e-4, atol=1e-5),
                        f"{fn} in float32 is far from {fn} in float64 on the same input: avoid precision "
                        f"loss (e.g. a conversion to half precision)")
        cuda = sub.run("lrn.forward", fn=fn, cases=built[:2], device="cuda")
        if cuda["cuda"]:
            for r, cpu in zip(cuda["results"], results[:2], strict=False):
                if r["error"] is not None:
                    score.fail(f"on CUDA: {r['error']}")
                    continue
                score.check(r["value"]["device"] == "cuda",
                            f"{fn} returned a tensor on the CPU for a CUDA input: create new tensors on "
                            f"a.device")
                if cpu["error"] is None:
                    score.check(torch.allclose(r["value"]["out"].double(), cpu["value"]["out"].double(),
                                               rtol=1e-4, atol=1e-5),
                                f"{fn} gives different results on CUDA and on the CPU")
    score.done()
