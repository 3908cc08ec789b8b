"""Off-limits calls: what each assignment's functions may not use, enforced while the student's code runs.

Each assignment asks the student to write something torch already has; calling torch's version (or
``tricksref``, the course's reference) would make the exercise pointless. Three layers:

- ``install(assignment)`` replaces the assignment's off-limits torch callables with ones that raise
  ``StudentError("forbidden", ...)``. The sandbox calls it in the child before the student's code runs (so
  even ``from torch.nn.functional import dropout`` gets the guarded name); the self-check and the nbgrader
  bridge use ``installed(assignment, namespace)`` around each probe, which also swaps, for the time of the
  call, the names of the student's namespace that are bound to an off-limits object (an alias imported
  before the guard, ``tricksref`` or anything from it).
- ``no_autograd(name)``: a context manager the probes wrap around an explicit backward
  (``batchnorm_backward``, ``dropout_backward``): the gradients must come from the formulas, not autograd.
- ``scan(assignment, source)``: a static look at the extracted code for the obvious off-limits names, so that
  the report can say so even when a test never reached the call.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import threading
import types
from collections.abc import Iterator

from .submission import InProcessSubmission, StudentError

__all__ = ["FORBIDDEN", "BACKWARD_FUNCTIONS", "install", "uninstall", "installed", "no_autograd", "scan",
           "forbidden_message", "GuardedSubmission"]

# assignment -> off-limits callables as "module:attribute" (the module is imported when the guard goes in)
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "lrn": (
        "torch.nn.functional:local_response_norm",
    ),
    "batchnorm": (
        "torch.nn.functional:batch_norm", "torch.nn.functional:instance_norm",
        "torch.nn.functional:layer_norm", "torch.nn.functional:group_norm",
        "torch:batch_norm", "torch:native_batch_norm", "torch:_native_batch_norm_legit",
        "torch:_native_batch_norm_legit_no_training", "torch:_batch_norm_impl_index",
        "torch:cudnn_batch_norm", "torch:miopen_batch_norm", "torch:instance_norm", "torch:layer_norm",
        "torch:native_layer_norm", "torch:group_norm", "torch:native_group_norm",
    ),
    "dropout": (
        "torch.nn.functional:dropout", "torch.nn.functional:dropout1d", "torch.nn.functional:dropout2d",
        "torch.nn.functional:dropout3d", "torch.nn.functional:alpha_dropout",
        "torch.nn.functional:feature_alpha_dropout",
        "torch:dropout", "torch:dropout_", "torch:feature_dropout", "torch:feature_dropout_",
        "torch:alpha_dropout", "torch:alpha_dropout_", "torch:feature_alpha_dropout",
        "torch:feature_alpha_dropout_", "torch:native_dropout",
    ),
    "stagewise": (),
}

#: the explicit backward functions, in which autograd is off-limits
BACKWARD_FUNCTIONS: dict[str, tuple[str, ...]] = {
    "batchnorm": ("batchnorm_backward",),
    "dropout": ("dropout_backward",),
}

# the ways to get gradients from autograd; ``torch.autograd.functional`` goes through ``torch.autograd.grad``
_AUTOGRAD = (
    "torch.autograd:grad", "torch.autograd:backward", "torch:Tensor.backward",
    "torch.func:grad", "torch.func:grad_and_value", "torch.func:vjp", "torch.func:jvp", "torch.func:jacrev",
    "torch.func:jacfwd", "torch.func:hessian", "torch.func:linearize",
)

# what the static scan looks for: attribute names reached from torch (``F.dropout``, ``torch.ops.aten.x``)
_SCAN_NAMES: dict[str, frozenset[str]] = {
    "lrn": frozenset({"local_response_norm", "LocalResponseNorm"}),
    "batchnorm": frozenset({"batch_norm", "native_batch_norm", "_native_batch_norm_legit",
                            "_native_batch_norm_legit_no_training", "_batch_norm_impl_index",
                            "cudnn_batch_norm", "miopen_batch_norm", "BatchNorm1d", "BatchNorm2d",
                            "BatchNorm3d", "LazyBatchNorm1d", "LazyBatchNorm2d", "instance_norm",
                            "layer_norm", "native_layer_norm", "group_norm", "InstanceNorm1d",
                            "InstanceNorm2d", "LayerNorm", "GroupNorm"}),
    "dropout": frozenset({"dropout", "dropout_", "dropout1d", "dropout2d", "dropout3d", "Dropout",
                          "Dropout1d", "Dropout2d", "Dropout3d", "native_dropout", "feature_dropout",
                          "alpha_dropout", "feature_alpha_dropout", "AlphaDropout", "FeatureAlphaDropout"}),
    "stagewise": frozenset(),
}
_SCAN_AUTOGRAD = frozenset({"backward", "grad", "grad_and_value", "vjp", "jvp", "jacrev", "jacfwd",
                            "jacobian", "hessian", "vhp", "hvp", "linearize"})

_lock = threading.RLock()
_depth: dict[str, int] = {}                     # assignment -> nesting depth of install()
_installed: dict[str, list] = {}                # assignment -> [(owner, attribute, original)] while in


def forbidden_message(what: str, assignment: str) -> str:
    return (f"{what} is not allowed in this assignment ({assignment}): write it yourself with basic "
            f"tensor operations")


def _resolve(spec: str):
    """``"torch:Tensor.backward"`` -> (owner object, attribute name, dotted name) or None if absent."""
    module_name, _, path = spec.partition(":")
    try:
        owner = importlib.import_module(module_name)
    except ImportError:
        return None
    *parents, attr = path.split(".")
    for p in parents:
        owner = getattr(owner, p, None)
        if owner is None:
            return None
    if not hasattr(owner, attr):
        return None
    return owner, attr, f"{module_name}.{path}"


def _raiser(dotted: str, message: str):
    def forbidden(*args, **kwargs):
        raise StudentError("forbidden", message)

    forbidden.__name__ = dotted.rpartition(".")[2]
    forbidden.__qualname__ = dotted
    forbidden.__grader_forbidden__ = True
    return forbidden


def _swap_in(specs, message_for) -> list[tuple[object, str, object]]:
    done = []
    for spec in specs:
        found = _resolve(spec)
        if found is None:
            continue
        owner, attr, dotted = found
        original = getattr(owner, attr)
        setattr(owner, attr, _raiser(dotted, message_for(dotted)))
        done.append((owner, attr, original))
    return done


def _swap_out(done) -> None:
    for owner, attr, original in reversed(done):
        setattr(owner, attr, original)


def install(assignment: str) -> None:
    """Replace ``assignment``'s off-limits torch callables with guards (nestable; undo with ``uninstall``)."""
    if assignment not in FORBIDDEN:
        raise ValueError(f"assignment: expected one of {', '.join(FORBIDDEN)}, got {assignment!r}")
    with _lock:
        _depth[assignment] = _depth.get(assignment, 0) + 1
        if _depth[assignment] == 1:
            _installed[assignment] = _swap_in(FORBIDDEN[assignment],
                                              lambda d: forbidden_message(d, assignment))


def uninstall(assignment: str) -> None:
    """Undo one ``install(assignment)``; the originals come back when the last one is undone."""
    with _lock:
        if _depth.get(assignment, 0) == 0:
            return
        _depth[assignment] -= 1
        if _depth[assignment] == 0:
            _swap_out(_installed.pop(assignment, []))


def _originals(assignment: str) -> dict[int, str]:
    """id -> dotted name of the real off-limits objects (whether or not a guard is in right now)."""
    out = {}
    for spec in FORBIDDEN.get(assignment, ()):
        found = _resolve(spec)
        if found is None:
            continue
        owner, attr, dotted = found
        current = getattr(owner, attr)
        if not getattr(current, "__grader_forbidden__", False):
            out[id(current)] = dotted
        else:  # the guard is in: the original is the one it saved
            for g_owner, g_attr, original in _installed.get(assignment, ()):
                if g_owner is owner and g_attr == attr:
                    out[id(original)] = dotted
    return out


class _ForbiddenModule(types.ModuleType):
    """Stands in for ``tricksref`` (or one of its modules) in a student's namespace while a probe runs."""

    def __init__(self, name: str, assignment: str):
        super().__init__(name)
        self.__dict__["_message"] = forbidden_message(f"{name} (the course's reference)", assignment)

    def __getattr__(self, attr):
        raise StudentError("forbidden", self.__dict__["_message"])


def _is_reference(value) -> str | None:
    """The dotted name if ``value`` is tricksref, one of its modules, or an object defined there."""
    if isinstance(value, types.ModuleType):
        name = getattr(value, "__name__", "")
        return name if name == "tricksref" or name.startswith("tricksref.") else None
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, type, types.MethodType)):
        module = getattr(value, "__module__", None) or ""
    else:
        module = getattr(type(value), "__module__", None) or ""
    if module == "tricksref" or module.startswith("tricksref."):
        return f"{module}.{getattr(value, '__qualname__', type(value).__name__)}"
    return None


@contextlib.contextmanager
def installed(assignment: str, namespace: dict | None = None) -> Iterator[None]:
    """Guards in for the time of a block; also swaps off-limits names bound in ``namespace`` (restored after).

    For code that already ran before the guard went in (the student's kernel: self-check, nbgrader).
    """
    install(assignment)
    swapped: list[tuple[str, object, object]] = []
    try:
        if namespace is not None:
            originals = _originals(assignment)
            for key, value in list(namespace.items()):
                if key.startswith("__"):
                    continue
                ref = _is_reference(value)
                if ref is not None:
                    stand_in = (_ForbiddenModule(ref, assignment) if isinstance(value, types.ModuleType)
                                else _raiser(ref, forbidden_message(f"{ref} (the course's reference)",
                                                                    assignment)))
                elif id(value) in originals:
                    stand_in = _raiser(originals[id(value)],
                                       forbidden_message(originals[id(value)], assignment))
                else:
                    continue
                namespace[key] = stand_in
                swapped.append((key, value, stand_in))
        yield
    finally:
        for key, value, stand_in in reversed(swapped):
            if namespace.get(key) is stand_in:  # the student's code may have rebound it meanwhile
                namespace[key] = value
        uninstall(assignment)


@contextlib.contextmanager
def no_autograd(function: str) -> Iterator[None]:
    """Autograd off-limits inside the block (the student's explicit backward ``function``)."""
    message = (f"{{}} is not allowed inside {function}: compute the gradients with the formulas you "
               f"derived, not with autograd")
    with _lock:
        done = _swap_in(_AUTOGRAD, lambda d: message.format(d))
    try:
        yield
    finally:
        with _lock:
            _swap_out(done)


# --------------------------------------------------------------------------------------------- static scan

_TORCH_ROOTS = ("torch",)


def scan(assignment: str, source: str) -> list[str]:
    """Obvious off-limits names in ``source`` (the extracted graded code), one readable line each.

    Looks for ``tricksref`` imports, the assignment's off-limits torch names reached from torch
    (``F.dropout``, ``torch.nn.functional.local_response_norm``, ``from torch.nn.functional import
    batch_norm``), and
    autograd inside the explicit backward functions. A file that does not parse gives no finding here (the
    grader reports the syntax error itself).
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    names = _SCAN_NAMES.get(assignment, frozenset())
    backward = set(BACKWARD_FUNCTIONS.get(assignment, ()))
    found: list[str] = []
    torch_aliases: set[str] = set()  # local names bound to torch or one of its modules

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                root = alias.name.split(".")[0]
                if root == "tricksref":
                    found.append(f"line {node.lineno}: importing tricksref (the course's reference) is "
                                 f"not allowed in this assignment: write it yourself")
                if root in _TORCH_ROOTS:
                    torch_aliases.add(alias.asname or root)
        elif isinstance(node, ast.ImportFrom) and node.module:
            root = node.module.split(".")[0]
            if root == "tricksref":
                found.append(f"line {node.lineno}: importing from tricksref (the course's reference) is "
                             f"not allowed in this assignment: write it yourself")
            elif root in _TORCH_ROOTS:
                for alias in node.names:
                    if alias.name in names:
                        found.append(f"line {node.lineno}: " + forbidden_message(
                            f"{node.module}.{alias.name}", assignment))
                    else:
                        torch_aliases.add(alias.asname or alias.name)

    def root_of(expr) -> str | None:
        while isinstance(expr, ast.Attribute):
            expr = expr.value
        return expr.id if isinstance(expr, ast.Name) else None

    def dotted(expr) -> str:
        parts = []
        while isinstance(expr, ast.Attribute):
            parts.append(expr.attr)
            expr = expr.value
        if isinstance(expr, ast.Name):
            parts.append(expr.id)
        return ".".join(reversed(parts))

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in names and root_of(node) in torch_aliases:
            found.append(f"line {node.lineno}: " + forbidden_message(dotted(node), assignment))

    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and fn.name in backward:
            for node in ast.walk(fn):
                hit = None
                if isinstance(node, ast.Attribute) and node.attr in _SCAN_AUTOGRAD:
                    if node.attr == "backward" or root_of(node) in torch_aliases:
                        hit = dotted(node)
                if hit:
                    found.append(f"line {node.lineno}: {hit} is not allowed inside {fn.name}: compute the "
                                 f"gradients with the formulas you derived, not with autograd")
    return list(dict.fromkeys(found))


# ------------------------------------------------------------------------------------ in-process submission

class GuardedSubmission(InProcessSubmission):
    """An ``InProcessSubmission`` whose every run has ``assignment``'s guards in (self-check, nbgrader).

    ``namespace`` is where the probes find the student's functions; ``globals_dicts`` are the dicts those
    functions really read their globals from (a kernel's user namespace; by default ``namespace`` itself), in
    which off-limits names are swapped for the time of each run.
    """

    def __init__(self, assignment: str, namespace: dict, globals_dicts: list[dict] | None = None):
        super().__init__(namespace)
        self.assignment = assignment
        dicts = globals_dicts if globals_dicts is not None else [namespace]
        self.globals_dicts = list({id(d): d for d in dicts}.values())

    def run(self, probe: str, /, **inputs):
        with contextlib.ExitStack() as stack:
            for d in self.globals_dicts:
                stack.enter_context(installed(self.assignment, d))
            if not self.globals_dicts:
                stack.enter_context(installed(self.assignment))
            return super().run(probe, **inputs)
