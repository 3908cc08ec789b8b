"""The visible grading suites, one module per assignment (shipped to students with the self-check).

See ``grader.suite`` for how a suite is written and run; the hidden tests are in ``grader.hidden``.
"""
