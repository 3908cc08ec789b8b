"""The self-check: ``from grader import check; check(lrn_inter)`` in the student's notebook.

It runs the *visible* tests of the assignment (``grader/suites/<assignment>.py``) on the functions given, in
the student's own kernel, with the assignment's off-limits calls guarded, and prints a readable report:
points per test, what went wrong, the visible total. The hidden tests run only when the notebook is graded.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import sys
import textwrap
import types
import warnings

__all__ = ["check", "format_report"]


def format_report(assignment: str, results, *, findings=(), visible_only: bool = True) -> str:
    """The self-check's text: one line per test, its message indented below, then the total."""
    width = max([len(r.name) for r in results] + [30])
    part = "visible tests" if visible_only else "all tests"
    lines = [f"Self-check of '{assignment}' ({part})"]
    for r in results:
        mark = "PASS" if r.passed else ("PART" if r.points > 0 else "FAIL")
        lines.append(f"  [{mark}] {r.name:<{width}} {r.points:g} / {r.max_points:g}")
        for text in r.message.splitlines() if r.message else ():
            lines.append(f"         {text}")
    for text in findings:
        lines.append(f"  [NOTE] {text}")
    got = sum(r.points for r in results)
    total = sum(r.max_points for r in results)
    lines.append(f"Total: {got:g} / {total:g} points")
    if visible_only:
        lines.append("(The graded score also counts hidden tests, with other inputs; they run when your "
                     "notebook is graded.)")
    return "\n".join(lines)


def _function_source(fn) -> str:
    try:
        return textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        return ""


def check(*functions, assignment: str | None = None, visible_only: bool = True, file=None, **named):
    """Run the visible tests of the assignment on ``functions`` and print a report.

    Args:
        *functions: the functions to check, e.g. ``check(lrn_inter, lrn_intra)``; each is found by its name,
            and the tests also see the other functions defined next to it (their globals).
        assignment: the assignment's name; by default the one whose functions these are.
        visible_only: the visible tests only (always, for students: the hidden ones are not installed).
        file: where to print (default: ``sys.stdout``).
        **named: functions under the name the assignment asks for, e.g. ``check(lrn_inter=my_version)``.

    Returns:
        None (the report is printed). ``grader.suite.run_suite`` gives the results as data.
    """
    from . import guards
    from .policy import for_assignment
    from .suite import FUNCTIONS, assignment_of, run_suite, tests

    given = {}
    for fn in functions:
        if not callable(fn) or not hasattr(fn, "__name__"):
            raise TypeError(f"check: expected your functions, e.g. check(lrn_inter), got {type(fn).__name__}")
        given[fn.__name__] = fn
    for name, fn in named.items():
        if not callable(fn):
            raise TypeError(f"check: {name} must be a function, got {type(fn).__name__}")
        given[name] = fn
    if not given:
        raise TypeError("check: pass the functions to check, e.g. check(lrn_inter)")
    assignment = assignment or assignment_of(given)

    # the namespace the probes look in: the functions' globals (so helpers and the other functions are
    # there) with the functions given on top; guards swap off-limits names in the dicts they really read
    globals_dicts = [fn.__globals__ for fn in given.values() if isinstance(fn, types.FunctionType)]
    namespace: dict = {}
    for g in globals_dicts:
        namespace.update(g)
    namespace.update(given)
    findings = []
    rules = for_assignment(assignment)
    for name, fn in given.items():
        checked = rules.check([(1, _function_source(fn))])
        for _, why in checked.refusals:
            findings.append(f"when graded, {name} would not run: {why.split(': ', 1)[1]}")
    # the tests of the functions given, except those that also need a function not written yet (not
    # defined, or still the stub that raises NotImplementedError)
    suite = {t.name: t for t in tests(assignment, visible_only=visible_only)}
    defined = {name for name in FUNCTIONS[assignment] if callable(namespace.get(name))}
    sub = guards.GuardedSubmission(assignment, namespace, globals_dicts)
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        ran = [r for r in run_suite(assignment, sub, visible_only=visible_only, functions=list(given))
               if set(suite[r.name].functions) <= defined]
    results, skipped, missing = [], [], set(FUNCTIONS[assignment]) - defined
    for r in ran:
        stubs = {f for f in suite[r.name].functions
                 if f not in given and f"{f} is not written yet" in r.message}
        if stubs:
            skipped.append(r.name)
            missing |= stubs
        else:
            results.append(r)
    skipped += [t.name for t in suite.values()
                if set(t.functions) & set(given) and not set(t.functions) <= defined]
    if skipped:
        needed = sorted(missing & {f for name in skipped for f in suite[name].functions})
        findings.append(f"skipped {len(skipped)} test(s) that also need {', '.join(needed)} (not written "
                        f"yet): {', '.join(skipped)}")
    print(format_report(assignment, results, findings=list(dict.fromkeys(findings)),
                        visible_only=visible_only), file=file or sys.stdout)


class _CallableModule(types.ModuleType):
    """``import grader.check`` binds the package attribute ``check`` to this module; keep it callable."""

    def __call__(self, *functions, **kwargs):
        return check(*functions, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
