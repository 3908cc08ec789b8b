"""Off-limits calls, refused where the student's code runs, whichever path reaches them.

Each assignment asks the student to write something torch already has; calling torch's version (or
``tricksref``, the course's reference) would make the exercise pointless. ``grader.policy`` refuses the
obvious names in the source before it runs; this module is the second layer, in the process that runs it:

- torch's own dispatch sees every call: a ``TorchFunctionMode`` refuses the assignment's off-limits functions
  by name however they are reached (``F.dropout``, ``torch.dropout``, ``torch._VF.dropout``,
  ``torch.ops.aten.dropout``, an alias bound before the guard went in), and a ``TorchDispatchMode`` refuses
  the ATen kernels behind them (``aten.native_batch_norm``, ``aten.native_dropout``, ...), which is all an
  off-limits call can end in. The modes live in torch's C++ state: student code cannot pop them without
  private attributes, which ``grader.policy`` refuses;
- ``no_autograd(name)`` around an explicit backward (``batchnorm_backward``, ``dropout_backward``): the
  autograd engine refuses to run, whether reached by ``torch.autograd.grad``, ``Tensor.backward``,
  ``torch.func`` or a reference captured before;
- in the sandbox, ``install(assignment)`` puts both in for the child's whole life; the self-check and the
  nbgrader bridge use ``installed(assignment, namespace)`` around each probe, which also swaps the names of
  the student's namespace bound to the reference (``tricksref``) for the time of the call, and refuse the
  functions ``grader.policy`` refuses (``GuardedSubmission``), as grading does.

Some off-limits calls leave no trace at the dispatcher: torch's optimizers (stagewise) update parameters
with the same tensor operations a hand-written loop uses. Those are refused by ``grader.policy`` alone, on the
source, and by the sandbox's import hook; the dispatch guard adds the optimizers' multi-tensor kernels.

``FORBIDDEN`` lists the public off-limits callables (the book's exercises chapter prints it).
"""

from __future__ import annotations

import contextlib
import threading
import types
from collections.abc import Iterator

from .submission import InProcessSubmission, StudentError

__all__ = ["FORBIDDEN", "BACKWARD_FUNCTIONS", "install", "uninstall", "seal", "installed", "no_autograd",
           "forbidden_message", "GuardedSubmission", "refused_call"]

#: assignment -> the public off-limits callables as "module:attribute" (``torch:optim``: the whole module)
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "lrn": (
        "torch.nn.functional:local_response_norm",
    ),
    "batchnorm": (
        "torch.nn.functional:batch_norm", "torch.nn.functional:instance_norm",
        "torch.nn.functional:layer_norm", "torch.nn.functional:group_norm",
        "torch:batch_norm", "torch:native_batch_norm", "torch:instance_norm", "torch:layer_norm",
        "torch:group_norm",
    ),
    "dropout": (
        "torch.nn.functional:dropout", "torch.nn.functional:dropout1d", "torch.nn.functional:dropout2d",
        "torch.nn.functional:dropout3d", "torch.nn.functional:alpha_dropout",
        "torch.nn.functional:feature_alpha_dropout", "torch:dropout", "torch:alpha_dropout",
        "torch:feature_dropout", "torch:feature_alpha_dropout", "torch:native_dropout",
    ),
    "stagewise": (
        "torch:optim",
    ),
}

#: the explicit backward functions, in which autograd is off-limits
BACKWARD_FUNCTIONS: dict[str, tuple[str, ...]] = {
    "batchnorm": ("batchnorm_backward",),
    "dropout": ("dropout_backward",),
}

# the names (functions, methods, ATen operators without their overload) refused at torch's dispatch
_OPS: dict[str, frozenset[str]] = {
    "lrn": frozenset({"local_response_norm"}),
    "batchnorm": frozenset({
        "batch_norm", "native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training",
        "_native_batch_norm_legit_functional", "native_batch_norm_backward", "_batch_norm_impl_index",
        "_batch_norm_impl_index_backward", "_batch_norm_with_update", "_batch_norm_with_update_functional",
        "_batch_norm_no_update", "batch_norm_backward", "cudnn_batch_norm", "miopen_batch_norm",
        "batch_norm_stats", "batch_norm_elemt", "batch_norm_gather_stats", "batch_norm_backward_reduce",
        "instance_norm", "layer_norm", "native_layer_norm", "native_layer_norm_backward", "group_norm",
        "native_group_norm", "native_group_norm_backward", "rms_norm", "_fused_rms_norm"}),
    "dropout": frozenset({
        "dropout", "dropout_", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "alpha_dropout_",
        "feature_dropout", "feature_dropout_", "feature_alpha_dropout", "feature_alpha_dropout_",
        "native_dropout", "native_dropout_backward", "_fused_dropout", "_masked_scale"}),
    "stagewise": frozenset({"_fused_sgd", "_fused_sgd_", "_fused_adam", "_fused_adam_", "_fused_adamw",
                            "_fused_adamw_"}),
}
# ATen operator prefixes refused at dispatch (the optimizers' multi-tensor kernels)
_OP_PREFIXES: dict[str, tuple[str, ...]] = {"stagewise": ("_foreach_",)}

_lock = threading.RLock()
_depth: dict[str, int] = {}            # assignment -> nesting depth of install()
_active: dict[str, tuple] = {}         # assignment -> its mode objects while installed
_sealed = False                        # set in the sandbox: what is installed stays for the process's life


def forbidden_message(what: str, assignment: str) -> str:
    return (f"{what} is not allowed in this assignment ({assignment}): write it yourself with basic "
            f"tensor operations")


def _op_name(func) -> str:
    """``F.dropout`` -> ``dropout``; ``aten.native_dropout.default`` -> ``native_dropout``."""
    name = getattr(func, "__name__", "") or ""
    if type(func).__name__ in ("OpOverload", "OpOverloadPacket"):
        name = name.split(".")[0]
    return name


def refused_call(assignment: str, func) -> bool:
    """Whether calling ``func`` (a torch function, method or ATen operator) is off limits here."""
    name = _op_name(func)
    return name in _OPS.get(assignment, ()) or name.startswith(_OP_PREFIXES.get(assignment, ()))


def _modes(assignment: str):
    from torch.overrides import TorchFunctionMode
    from torch.utils._python_dispatch import TorchDispatchMode

    class FunctionGuard(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if refused_call(assignment, func):
                raise StudentError("forbidden", f"torch.{_op_name(func)}")
            return func(*args, **(kwargs or {}))

    class DispatchGuard(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if refused_call(assignment, func):
                raise StudentError("forbidden", f"aten.{_op_name(func)}")
            return func(*args, **(kwargs or {}))

    return FunctionGuard(), DispatchGuard()


def install(assignment: str) -> None:
    """Put ``assignment``'s guards in for this process (nestable; undone by ``uninstall``)."""
    if assignment not in FORBIDDEN:
        raise ValueError(f"assignment: expected one of {', '.join(FORBIDDEN)}, got {assignment!r}")
    with _lock:
        _depth[assignment] = _depth.get(assignment, 0) + 1
        if _depth[assignment] == 1:
            modes = _modes(assignment)
            for m in modes:
                m.__enter__()
            _active[assignment] = modes


def seal() -> None:
    """From now on ``uninstall`` does nothing: the sandbox's guards stay in for the child's whole life, even
    if graded code reaches this module (``grader.policy`` keeps it from reaching it in the first place)."""
    global _sealed
    _sealed = True


def uninstall(assignment: str) -> None:
    """Undo one ``install(assignment)``; the originals come back when the last one is undone."""
    with _lock:
        if _sealed or _depth.get(assignment, 0) == 0:
            return
        _depth[assignment] -= 1
        if _depth[assignment] == 0:
            for m in reversed(_active.pop(assignment)):
                m.__exit__(None, None, None)


class _ForbiddenModule(types.ModuleType):
    """Stands in for ``tricksref`` (or one of its modules) in a student's namespace while a probe runs."""

    def __init__(self, name: str):
        super().__init__(name)
        self.__dict__["_name"] = name

    def __getattr__(self, attr):
        raise StudentError("forbidden", f"{self.__dict__['_name']}.{attr}")


def _is_reference(value) -> str | None:
    """The dotted name if ``value`` is tricksref, one of its modules, or an object defined there."""
    if isinstance(value, types.ModuleType):
        name = getattr(value, "__name__", "")
        return name if name == "tricksref" or name.startswith("tricksref.") else None
    module = (getattr(value, "__module__", None) if isinstance(value, (types.FunctionType, type))
              else getattr(type(value), "__module__", None)) or ""
    if module == "tricksref" or module.startswith("tricksref."):
        return f"{module}.{getattr(value, '__qualname__', type(value).__name__)}"
    return None


@contextlib.contextmanager
def installed(assignment: str, namespace: dict | None = None) -> Iterator[None]:
    """Guards in for the time of a block; also swaps the names of ``namespace`` bound to the reference
    (restored after). For code that already ran before the guard went in (the student's kernel)."""
    install(assignment)
    swapped = []
    try:
        if namespace is not None:
            for key, value in list(namespace.items()):
                if key.startswith("__"):
                    continue
                dotted = _is_reference(value)
                if dotted is not None:
                    stand_in = _ForbiddenModule(dotted) if isinstance(value, types.ModuleType) else \
                        _refuser(dotted)
                    namespace[key] = stand_in
                    swapped.append((key, value, stand_in))
        yield
    finally:
        for key, value, stand_in in reversed(swapped):
            if namespace.get(key) is stand_in:  # the student's code may have rebound it meanwhile
                namespace[key] = value
        uninstall(assignment)


def _refuser(dotted: str):
    def refused(*args, **kwargs):
        raise StudentError("forbidden", dotted)
    return refused


class _Engine:
    """Stands in for torch's autograd engine inside an explicit backward: running it is refused."""

    def __init__(self, function: str, engine):
        self.function, self.engine = function, engine

    def run_backward(self, *args, **kwargs):
        raise StudentError("forbidden", "torch.autograd")

    def __getattr__(self, attr):  # the engine's other methods (queue_callback, ...) still work
        return getattr(self.engine, attr)


@contextlib.contextmanager
def no_autograd(function: str) -> Iterator[None]:
    """Autograd off limits inside the block (the student's explicit backward ``function``): the engine
    refuses to run, however it is reached, and so do ``torch.autograd.grad``, ``Tensor.backward`` and
    ``torch.func``'s transforms at torch's dispatch."""
    from torch.autograd import variable
    from torch.overrides import TorchFunctionMode

    refused = {"grad", "backward", "vjp", "jvp", "jacrev", "jacfwd", "hessian", "vmap", "grad_and_value",
               "linearize", "jacobian", "hvp", "vhp"}

    class NoAutograd(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            module = getattr(func, "__module__", "") or ""
            if getattr(func, "__name__", "") in refused and module.startswith("torch"):
                raise StudentError("forbidden", f"torch.autograd.{func.__name__}")
            return func(*args, **(kwargs or {}))

    with _lock:
        engine = variable.Variable._execution_engine
        variable.Variable._execution_engine = _Engine(function, engine)
    try:
        with NoAutograd():
            yield
    finally:
        with _lock:
            variable.Variable._execution_engine = engine


# ------------------------------------------------------------------------------------ in-process submission

def _refusals(assignment: str, namespace: dict) -> list[tuple[str, str]]:
    """The assignment's functions in ``namespace`` that ``grader.policy`` refuses, read from their source
    (the self-check and the nbgrader bridge refuse them as grading does)."""
    import inspect
    import textwrap

    from .policy import for_assignment
    from .suite import FUNCTIONS

    found = []
    for name in FUNCTIONS.get(assignment, ()):
        fn = namespace.get(name)
        if not isinstance(fn, types.FunctionType):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(fn))
        except (OSError, TypeError):
            continue
        for refused, why in for_assignment(assignment).check([(1, source)]).refusals:
            if refused == name:
                found.append((name, "in " + why.split(", ", 1)[-1]))
    return found


class GuardedSubmission(InProcessSubmission):
    """An ``InProcessSubmission`` whose every run has ``assignment``'s guards in (self-check, nbgrader).

    ``namespace`` is where the probes find the student's functions; ``globals_dicts`` are the dicts those
    functions really read their globals from (a kernel's user namespace; by default ``namespace`` itself), in
    which the names bound to the reference are swapped for the time of each run.
    """

    def __init__(self, assignment: str, namespace: dict, globals_dicts: list[dict] | None = None):
        super().__init__(namespace)
        self.assignment = assignment
        dicts = globals_dicts if globals_dicts is not None else [namespace]
        self.globals_dicts = list({id(d): d for d in dicts}.values())
        self.refusals = _refusals(assignment, namespace)

    def run(self, probe: str, /, **inputs):
        with contextlib.ExitStack() as stack:
            for d in self.globals_dicts:
                stack.enter_context(installed(self.assignment, d))
            if not self.globals_dicts:
                stack.enter_context(installed(self.assignment))
            return super().run(probe, **inputs)
