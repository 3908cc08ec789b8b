"""grader: scores students' functions against tricksref, running untrusted code in a sandbox.

Instructors: ``python -m grader grade NOTEBOOK... --json``. Students: ``from grader import check``.
"""
