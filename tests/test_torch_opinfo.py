"""PyTorch's own test definitions, as they ship in the wheel, run against tricksref (issue 14).

``torch.testing._internal.common_methods_invocations.op_db`` gives the samples of
``nn.functional.batch_norm``, ``nn.functional.local_response_norm`` and ``nn.functional.dropout``;
``common_modules.module_db`` those of ``nn.BatchNorm1d/2d/3d`` and ``nn.LocalResponseNorm``. Every sample is
run through torch and through tricksref
(the edition in use, the solutions one in the repository) and compared: values, first derivatives, second
derivatives (gradgradcheck, float64), forward-mode derivatives (torch.func.jvp against torch's), the running
statistics updated in place, and for the modules the state_dict both ways.

Deliberate differences are listed in DIFFERENCES and each is asserted as a difference (tricksref raises or
torch raises, with the message), never skipped: a sample that stops differing fails its test.
"""

from __future__ import annotations

import pytest
import torch
from torch.testing._internal.common_methods_invocations import op_db
from torch.testing._internal.common_modules import module_db

import tricksref

DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]
OPS = {"nn.functional.batch_norm": tricksref.batch_norm,
       "nn.functional.local_response_norm": tricksref.local_response_norm,
       "nn.functional.dropout": tricksref.dropout}
MODULES = {torch.nn.BatchNorm1d: tricksref.BatchNorm1d, torch.nn.BatchNorm2d: tricksref.BatchNorm2d,
           torch.nn.BatchNorm3d: tricksref.BatchNorm3d,
           torch.nn.LocalResponseNorm: tricksref.LocalResponseNorm}

#: the deliberate differences: (what, how to recognise the sample, who raises, the message)
DIFFERENCES = [
    ("batch_norm: momentum outside [0, 1] is an error in tricksref (a weight of the new batch)",
     lambda name, s: name.endswith("batch_norm") and not 0 <= s.kwargs.get("momentum", 0.1) <= 1,
     "tricksref", "momentum: expected a value in"),
    ("batch_norm: a 1-D input has no channel axis; tricksref asks for (N, C) or (N, C, *)",
     lambda name, s: name.endswith("batch_norm") and s.input.dim() < 2,
     "tricksref", "input: expected a tensor with at least 2 dimensions"),
]


def _difference(name, sample):
    return next((d for d in DIFFERENCES if d[1](name, sample)), None)


def _tol(dtype):
    return {torch.float64: dict(rtol=1e-10, atol=1e-10), torch.float32: dict(rtol=2e-5, atol=2e-5),
            torch.bfloat16: dict(rtol=2e-2, atol=2e-2), torch.float16: dict(rtol=2e-3, atol=2e-3)}[dtype]


def _samples(name, dtype):
    op = next(o for o in op_db if o.name == name and o.variant_test_name == "")
    return list(op.sample_inputs("cpu", dtype, requires_grad=True))


def _clone_args(args):
    """Fresh copies, so that in-place running statistics start alike on both sides."""
    return [a.detach().clone().requires_grad_(a.requires_grad) if isinstance(a, torch.Tensor) else a
            for a in args]


def _call(fn, sample, inputs=None):
    x, *args = inputs if inputs is not None else _clone_args([sample.input, *sample.args])
    return fn(x, *args, **sample.kwargs), [x, *args]


CASES = [pytest.param(name, dtype, i, id=f"{name.rsplit('.', 1)[1]}-{str(dtype)[6:]}-{i}")
         for name in OPS for dtype in DTYPES for i in range(len(_samples(name, dtype)))]


@pytest.mark.parametrize("name, dtype, index", CASES)
def test_opinfo_sample(name, dtype, index):
    sample = _samples(name, dtype)[index]
    ours_fn, torch_fn = OPS[name], next(o for o in op_db if o.name == name).op
    diff = _difference(name, sample)
    if diff is not None:  # asserted as the listed difference, not skipped
        what, _, raiser, message = diff
        failing, working = (ours_fn, torch_fn) if raiser == "tricksref" else (torch_fn, ours_fn)
        with pytest.raises((ValueError, TypeError, RuntimeError, NotImplementedError), match=message):
            _call(failing, sample)
        _call(working, sample)  # the other side runs
        return
    if name.endswith("dropout"):
        _check_dropout(sample)
        return
    y, inputs = _call(ours_fn, sample)
    y_ref, inputs_ref = _call(torch_fn, sample)
    tol = _tol(dtype)
    assert y.shape == y_ref.shape and y.dtype == y_ref.dtype
    torch.testing.assert_close(y, y_ref, **tol)
    for a, b in zip(inputs[1:], inputs_ref[1:], strict=True):  # running statistics, updated in place
        if isinstance(a, torch.Tensor) and not a.requires_grad:
            torch.testing.assert_close(a, b, **tol)
    diff_inputs = [i for i, t in enumerate(inputs) if isinstance(t, torch.Tensor) and t.requires_grad]
    if not diff_inputs or y.numel() == 0:
        return
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(index), dtype=torch.float64).to(dtype)
    grads = torch.autograd.grad(y, [inputs[i] for i in diff_inputs], g, allow_unused=True)
    grads_ref = torch.autograd.grad(y_ref, [inputs_ref[i] for i in diff_inputs], g, allow_unused=True)
    for a, b in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(a, b, **tol)
    if dtype == torch.float64:
        _check_higher_order(ours_fn, torch_fn, sample, diff_inputs, index)


def _functional(fn, sample, diff_inputs):
    """fn as a function of the differentiable inputs only, with fresh running statistics per call."""
    base = [sample.input, *sample.args]

    def f(*diff):
        args = [a.detach().clone() if isinstance(a, torch.Tensor) else a for a in base]
        for i, t in zip(diff_inputs, diff, strict=True):
            args[i] = t
        return fn(*args, **sample.kwargs)
    return f


def _check_higher_order(ours_fn, torch_fn, sample, diff_inputs, seed):
    leaves = [[sample.input, *sample.args][i].detach().clone().requires_grad_() for i in diff_inputs]
    f, f_ref = _functional(ours_fn, sample, diff_inputs), _functional(torch_fn, sample, diff_inputs)
    assert torch.autograd.gradgradcheck(f, leaves)
    gen = torch.Generator().manual_seed(seed)
    tangents = [torch.randn(t.shape, generator=gen, dtype=t.dtype) for t in leaves]
    primals = [t.detach() for t in leaves]
    _, jvp = torch.func.jvp(f, tuple(primals), tuple(tangents))
    _, jvp_ref = torch.func.jvp(f_ref, tuple(primals), tuple(tangents))
    torch.testing.assert_close(jvp, jvp_ref, rtol=1e-10, atol=1e-10)


def _check_dropout(sample):
    """A random mask cannot equal torch's: dropout's defining properties instead, on the sample itself."""
    x, p, training = sample.input, sample.kwargs.get("p", 0.5), sample.kwargs.get("training", True)
    y = tricksref.dropout(x, p, training, generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == x.dtype
    if not training or p == 0:
        assert y is x  # as torch: the input itself
        return
    if p == 1:
        assert torch.equal(y, torch.zeros_like(x))
    else:
        kept = y != 0
        torch.testing.assert_close(y[kept], x[kept] / (1 - p), **_tol(x.dtype))
    if x.dtype == torch.float64:
        fn = lambda t: tricksref.dropout(t, p, generator=torch.Generator().manual_seed(0))  # noqa: E731
        leaf = x.detach().clone().requires_grad_()
        assert torch.autograd.gradcheck(fn, (leaf,)) and torch.autograd.gradgradcheck(fn, (leaf,))
        y, tangent = torch.func.jvp(fn, (x.detach(),), (torch.ones_like(x),))
        kept = y != 0  # the tangent goes through the primal's own mask (x is never 0 in these samples)
        assert torch.equal(tangent, kept.to(x.dtype) / (1 - p)) if p < 1 else torch.equal(tangent, 0 * x)


def test_opinfo_differences_are_each_met():
    """Every listed difference matches at least one sample, so none of them is stale."""
    met = {d[0] for name in OPS for dtype in DTYPES for s in _samples(name, dtype)
           if (d := _difference(name, s)) is not None}
    assert met == {d[0] for d in DIFFERENCES}


# ----------------------------------------------------------------------------------------------------------
# module_db


def _module_cases():
    cases = []
    for info in module_db:
        if info.module_cls in MODULES:
            for dtype in (torch.float64, torch.float32):
                for training in (True, False):
                    inputs = info.module_inputs_func(info, device="cpu", dtype=dtype, requires_grad=True,
                                                     training=training)
                    for i, mi in enumerate(inputs):
                        cases.append(pytest.param(info.module_cls, dtype, training, i,
                                                  id=f"{info.module_cls.__name__}-{str(dtype)[6:]}-"
                                                     f"{'train' if training else 'eval'}-{mi.desc or i}"))
    return cases


@pytest.mark.parametrize("cls, dtype, training, index", _module_cases())
def test_moduleinfo_sample(cls, dtype, training, index):
    info = next(i for i in module_db if i.module_cls is cls)
    mi = info.module_inputs_func(info, device="cpu", dtype=dtype, requires_grad=True,
                                 training=training)[index]
    args, kwargs = mi.constructor_input.args, mi.constructor_input.kwargs
    torch.manual_seed(0)
    ref = cls(*args, **kwargs).to(dtype)
    ours = MODULES[cls](*args, **kwargs).to(dtype)
    ours.load_state_dict(ref.state_dict(), strict=True)  # torch -> ours
    ref.train(training), ours.train(training)
    tol = _tol(dtype)
    for step in range(2):  # two steps: the running statistics (and momentum=None's counter) move
        x = mi.forward_input.args[0].detach().clone() + step
        xo, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
        yo, yr = ours(xo), ref(xr)
        torch.testing.assert_close(yo, yr, **tol)
        g = torch.randn(yr.shape, generator=torch.Generator().manual_seed(step), dtype=dtype)
        yo.backward(g), yr.backward(g)
        torch.testing.assert_close(xo.grad, xr.grad, **tol)
        for (n, po), pr in zip(ours.named_parameters(), ref.parameters(), strict=True):
            torch.testing.assert_close(po.grad, pr.grad, **tol, msg=n)
        for key, want in ref.state_dict().items():
            torch.testing.assert_close(ours.state_dict()[key], want, **tol, msg=key)
    back = cls(*args, **kwargs).to(dtype)
    back.load_state_dict(ours.state_dict(), strict=True)  # ours -> torch
    if dtype == torch.float64:
        x = mi.forward_input.args[0].detach().clone().requires_grad_()
        fresh = MODULES[cls](*args, **kwargs).to(dtype).train(training)

        def f(t):  # running statistics restored after each call: gradgradcheck evaluates f many times
            buffers = [(b, b.clone()) for b in fresh.buffers()]
            out = fresh(t)
            with torch.no_grad():
                for b, saved in buffers:
                    b.copy_(saved)
            return out

        assert torch.autograd.gradgradcheck(f, (x,))
