"""What the graded test cells of the nbgrader notebooks call: one suite test, scored in the student's kernel.

A graded cell of ``solutions/<assignment>/<assignment>.ipynb`` (nbgrader ``grade: true``, ``points`` equal
to the test's ``max_points``) ends with::

    from grader.nbgrader_bridge import grade
    grade("lrn", "test_lrn_inter_small_input", globals())

``grade`` runs that test of ``grader.suite`` on the notebook's functions (an in-process submission with the
assignment's guards in), prints the points and the message, and returns the points as the cell's value.
nbgrader 0.9 reads a number output by a graded cell as its partial credit (``nbgrader.utils.determine_grade``)
and gives zero to a cell that raises or writes to stderr, so ``grade`` never raises and keeps stderr quiet:
``nbgrader autograde`` then gives each cell exactly the points ``python -m grader grade`` gives the test.
"""

from __future__ import annotations

import contextlib
import io
import sys
import warnings

__all__ = ["grade"]


def grade(assignment: str, test, namespace: dict | None = None) -> float:
    """Score ``test`` (a name, or a list of names) of ``assignment`` on ``namespace``; return the points.

    ``namespace`` defaults to the caller's globals (the notebook's). Prints ``points / max`` and the message
    (never a hidden case, nor a hidden test's name). Any failure, the grader's own included, scores zero
    with a message instead of raising.
    """
    if namespace is None:
        namespace = sys._getframe(1).f_globals
    names = [test] if isinstance(test, str) else list(test)
    sink = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            from .guards import GuardedSubmission
            from .suite import run_suite

            results = run_suite(assignment, GuardedSubmission(assignment, namespace), only=names)
    except Exception as exc:  # the grader could not run: tell, score zero, never raise into nbgrader
        print(f"0 points: the grader could not run this test ({type(exc).__name__}: {exc}); "
              f"please tell your instructor")
        return 0.0
    got = round(sum(r.points for r in results), 3)
    total = sum(r.max_points for r in results)
    print(f"{got:g} / {total:g} points")
    for r in results:
        if r.message:
            print(r.message)
    return float(got)
