"""The rules graded code must follow, checked on its source (an AST allow-list) before it ever runs.

The grader reads a notebook's graded cells, and this module decides, statement by statement, what may run:

- imports only from the assignment's modules (``torch``, ``math``, ``numpy`` and a few pure helpers such as
  ``typing``), never a private module (``torch._C``) and never ``grader`` (except ``from grader import
  check``, which does nothing while grading) or ``tricksref``;
- no underscore or dunder attribute (``x.__class__``, ``torch._VF``), no dunder name (``__builtins__``), no
  frame or code object (``gen.gi_frame``, ``f.f_globals``), no dynamic access or code (``getattr``,
  ``setattr``, ``eval``, ``exec``, ``compile``, ``__import__``, ``globals``, ``open``, ...), no ``match``
  (its class patterns read attributes by name), no ``async``;
- no part of torch or numpy that loads code or data behind the grader's back or reaches its internals
  (``torch.ops``, ``torch.library``, ``torch.overrides``, ``torch.utils``, ``torch.jit``, ``torch.compile``,
  ``torch.load``, ``numpy.ctypeslib``, ``numpy.load``, ...);
- none of the assignment's off-limits calls by name (``F.dropout`` in ``dropout``); in ``batchnorm`` and
  ``dropout``, no autograd anywhere (the backward must come from the formulas, and autograd captured at the
  top of a cell would otherwise reach the backward).

A function whose body breaks a rule is *refused*: the sandbox receives, on its first line, a stub that raises,
and every test that calls it scores 0 with the line and the rule; the student's other functions are graded as
usual. A top-level statement that breaks a rule is not run (its lines become blank) and the notebook's report
says so. Line numbers are kept, so errors in the code that does run point at the student's own lines.

The rules are checked again where the code runs (``grader.guards``: torch's dispatcher refuses the off-limits
operations whichever path reaches them, the builtins and imports are restricted), so neither layer has to be
perfect alone.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterable, Sequence

__all__ = ["Policy", "Checked", "for_assignment", "POLICIES", "REFUSED_STUB"]

#: importable everywhere (pure, no I/O, no way to code or to the interpreter's internals)
BASE_MODULES = frozenset({"torch", "math", "numpy", "typing", "__future__", "itertools", "functools"})

#: builtins that reach objects by name, run code, or touch the world outside the function
DENIED_NAMES = frozenset({
    "eval", "exec", "compile", "__import__", "getattr", "setattr", "delattr", "hasattr", "globals", "locals",
    "vars", "dir", "open", "input", "breakpoint", "exit", "quit", "help", "memoryview", "__builtins__",
})
#: the only dunder names code may read
ALLOWED_DUNDER_NAMES = frozenset({"__name__"})

#: attributes that hand out frames, code objects or the interpreter's innards
FRAME_ATTRIBUTES = frozenset({
    "gi_frame", "gi_code", "gi_yieldfrom", "gi_running", "cr_frame", "cr_code", "cr_await", "ag_frame",
    "ag_code", "f_globals", "f_locals", "f_back", "f_builtins", "f_code", "f_trace", "f_lasti", "tb_frame",
    "tb_next", "co_code", "co_consts", "co_names", "func_globals", "func_code",
})

#: parts of torch and numpy no assignment needs, which load code or data or reach the grader's machinery
SYSTEM_ATTRIBUTES = frozenset({
    # torch
    "ops", "library", "overrides", "utils", "jit", "compile", "compiler", "fx", "export", "hub",
    "multiprocessing", "distributed", "backends", "testing", "package", "profiler", "load", "classes",
    "serialization", "onnx", "ao", "quantization", "monitor",
    # numpy
    "ctypeslib", "ctypes", "lib", "f2py", "distutils", "loads", "fromfile", "memmap",
})

#: autograd, for the assignments whose backward is written by hand
AUTOGRAD_ATTRIBUTES = frozenset({
    "autograd", "func", "backward", "grad", "enable_grad", "set_grad_enabled", "inference_mode", "vjp", "jvp",
    "jacrev", "jacfwd", "hessian", "jacobian", "vhp", "hvp", "linearize",
})

_BN_NAMES = frozenset({
    "batch_norm", "native_batch_norm", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LazyBatchNorm1d",
    "LazyBatchNorm2d", "LazyBatchNorm3d", "SyncBatchNorm", "instance_norm", "InstanceNorm1d",
    "InstanceNorm2d", "InstanceNorm3d", "layer_norm", "native_layer_norm", "LayerNorm", "group_norm",
    "native_group_norm", "GroupNorm", "rms_norm", "RMSNorm", "cudnn_batch_norm", "miopen_batch_norm",
    "normalization",
})
_DROPOUT_NAMES = frozenset({
    "dropout", "dropout_", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "alpha_dropout_",
    "feature_dropout", "feature_dropout_", "feature_alpha_dropout", "feature_alpha_dropout_",
    "native_dropout", "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout",
})

#: the stub a refused function becomes in the sandbox (``{name}``, ``{index}``: its place in ``refused``)
REFUSED_STUB = "def {name}(*args, **kwargs): raise __grader_refused__({index})"


@dataclasses.dataclass(frozen=True)
class Policy:
    """What one assignment's graded code may do (see the module's doc).

    Args:
        assignment: the assignment's name.
        modules: the top-level modules it may import.
        off_limits: attribute and imported names that are the assignment's off-limits calls, with the reason
            shown to the student.
        backward_functions: functions written by hand as the derivative of another (autograd off limits
            in the whole source when there are any).
    """

    assignment: str
    modules: frozenset[str] = BASE_MODULES
    off_limits: tuple[tuple[frozenset[str], str], ...] = ()
    backward_functions: frozenset[str] = frozenset()

    def denied_attribute(self, name: str) -> str | None:
        """The rule that refuses attribute (or imported) ``name``, or None."""
        if name.startswith("_"):
            return f"private and dunder attributes ({name}) are not allowed in graded code"
        if name in FRAME_ATTRIBUTES:
            return f"{name} reaches the interpreter's frames and code objects, which graded code may not use"
        for names, reason in self.off_limits:
            if name in names:
                return reason.format(name=name)
        if self.backward_functions and name in AUTOGRAD_ATTRIBUTES:
            return (f"{name}: autograd is not allowed in this assignment ({self.assignment}): compute the "
                    f"gradients of {', '.join(sorted(self.backward_functions))} with the formulas you "
                    f"derived")
        if name in SYSTEM_ATTRIBUTES:
            return f"{name} is not allowed in graded code (this assignment needs only tensor operations)"
        return None

    def check(self, cells: Sequence[tuple[int, str]]) -> Checked:
        """Check the graded cells (``[(cell number, source), ...]``) and return what may run."""
        checked = Checked([], [], [])
        for index, source in cells:
            checked.cells.append((index, self._check_cell(index, source, checked)))
        return checked

    def _check_cell(self, index: int, source: str, checked: Checked) -> str:
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            return source  # it cannot run either: the sandbox reports the syntax error
        lines = source.split("\n")
        for node in tree.body:
            problems = _Visitor(self).visit_all(node)
            if not problems:
                continue
            line, rule = problems[0]
            where = f"cell {index}, line {line}: {rule}"
            first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", ())])
            last = node.end_lineno or node.lineno
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                stub = REFUSED_STUB.format(name=node.name, index=len(checked.refusals))
                checked.refusals.append((node.name, where))
                lines[first - 1:last] = [stub] + [""] * (last - first)
            else:
                checked.notes.append(f"not run: {where}")
                lines[first - 1:last] = [""] * (last - first + 1)
        return "\n".join(lines)


@dataclasses.dataclass
class Checked:
    """The graded cells as they may run, the refused functions, and the skipped statements."""

    cells: list[tuple[int, str]]
    refusals: list[tuple[str, str]]  #: (function or class name, "cell N, line L: rule"), stub i is item i
    notes: list[str]                 #: one line per top-level statement that was not run

    @property
    def refused(self) -> dict[str, str]:
        """Function name -> why it was refused (a name defined twice: its last definition)."""
        return dict(self.refusals)


class _Visitor(ast.NodeVisitor):
    """Collects ``(line, rule)`` for every node of a statement that breaks the policy."""

    def __init__(self, policy: Policy):
        self.policy = policy
        self.problems: list[tuple[int, str]] = []

    def visit_all(self, node: ast.AST) -> list[tuple[int, str]]:
        self.visit(node)
        return sorted(set(self.problems))

    def refuse(self, node: ast.AST, rule: str) -> None:
        self.problems.append((getattr(node, "lineno", 0), rule))

    # ---- names and attributes

    def visit_Name(self, node: ast.Name) -> None:
        name = node.id
        if name in DENIED_NAMES:
            self.refuse(node, f"{name}() is not allowed in graded code (it reaches objects by name or runs "
                              f"code); write the computation out")
        elif name.startswith("__") and name.endswith("__") and name not in ALLOWED_DUNDER_NAMES:
            self.refuse(node, f"the dunder name {name} is not allowed in graded code")
        elif name == "tricksref":
            self.refuse(node, "tricksref (the course's reference) is not allowed in graded code")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        rule = self.policy.denied_attribute(node.attr)
        if rule:
            self.refuse(node, rule)
        self.generic_visit(node)

    # ---- imports

    def _module(self, node: ast.AST, module: str) -> bool:
        """Check an imported module's path; True if it is refused."""
        parts = module.split(".")
        if parts[0] in ("tricksref",):
            self.refuse(node, "importing tricksref (the course's reference) is not allowed: write it "
                              "yourself")
            return True
        if parts[0] not in self.policy.modules:
            allowed = ", ".join(sorted(m for m in self.policy.modules if m != "__future__"))
            self.refuse(node, f"importing {module} is not allowed in graded code (allowed: {allowed})")
            return True
        for part in parts[1:]:
            rule = self.policy.denied_attribute(part)
            if rule:
                self.refuse(node, f"importing {module}: {rule}")
                return True
        return False

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name.split(".")[0] == "grader":
                self.refuse(node, "importing the grader is not allowed in graded code")
            else:
                self._module(node, alias.name)
            if alias.asname and alias.asname.startswith("__"):
                self.refuse(node, f"the dunder name {alias.asname} is not allowed in graded code")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level:
            self.refuse(node, "relative imports are not allowed in graded code")
            return
        if module == "grader" and [a.name for a in node.names] == ["check"] and not node.names[0].asname:
            return  # the self-check's import: grading provides a `check` that does nothing
        if module.split(".")[0] == "grader":
            self.refuse(node, "importing the grader is not allowed in graded code")
            return
        if self._module(node, module):
            return
        for alias in node.names:
            if alias.name == "*":
                self.refuse(node, f"`from {module} import *` is not allowed in graded code: import names")
                continue
            rule = None if module == "__future__" else self.policy.denied_attribute(alias.name)
            if rule:
                self.refuse(node, rule)
            if alias.asname and alias.asname.startswith("__"):
                self.refuse(node, f"the dunder name {alias.asname} is not allowed in graded code")

    # ---- definitions and statements

    def _definition(self, node, name: str) -> None:
        if name.startswith("__") and name.endswith("__"):
            self.refuse(node, f"defining the dunder {name} is not allowed in graded code")

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._definition(node, node.name)
        for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs, node.args.vararg,
                  node.args.kwarg):
            if a is not None:
                self._definition(a, a.arg)
        self.generic_visit(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._definition(node, node.name)
        self.generic_visit(node)

    def visit(self, node: ast.AST) -> None:
        what = _NOT_ALLOWED.get(type(node))
        if what:
            self.refuse(node, f"{what} is not allowed in graded code")
        else:
            super().visit(node)


#: statements graded code may not contain at all (match's class patterns read attributes by name)
_NOT_ALLOWED = {ast.AsyncFunctionDef: "async def", ast.Await: "await", ast.AsyncFor: "async for",
                ast.AsyncWith: "async with", ast.Match: "match"}


def _named(names: Iterable[str], assignment: str) -> tuple[frozenset[str], str]:
    return frozenset(names), ("{name} is off limits in this assignment (" + assignment + "): write it "
                              "yourself with basic tensor operations")


POLICIES: dict[str, Policy] = {
    "lrn": Policy("lrn", off_limits=(_named({"local_response_norm", "LocalResponseNorm"}, "lrn"),)),
    "batchnorm": Policy("batchnorm", off_limits=(_named(_BN_NAMES, "batchnorm"),),
                        backward_functions=frozenset({"batchnorm_backward"})),
    "dropout": Policy("dropout", off_limits=(_named(_DROPOUT_NAMES, "dropout"),),
                      backward_functions=frozenset({"dropout_backward"})),
    "stagewise": Policy("stagewise", off_limits=(
        (frozenset({"optim", "lr_scheduler"}),
         "{name}: torch's optimizers and learning-rate schedulers are off limits in this assignment "
         "(stagewise): the update is one line, write it yourself"),)),
}


def for_assignment(assignment: str) -> Policy:
    """The policy of one of the course's assignments (an unknown name gets the base rules only)."""
    return POLICIES.get(assignment) or Policy(assignment)
