"""grader: scores students' functions against tricksref, running untrusted code in a sandbox.

Instructors: ``python -m grader grade NOTEBOOK... --json``. Students: ``from grader import check``.
"""


def check(*functions, **options):
    """Self-check: run the visible tests on your functions and print a report, e.g. ``check(lrn_inter)``.

    See ``grader.check.check`` for the options. Imports torch and the suites only when called.
    """
    from .check import check as _check

    # importing the submodule grader.check rebinds this package's attribute ``check`` to the module;
    # put the function back (the module is callable too, in case someone imported it first)
    globals()["check"] = check
    return _check(*functions, **options)
