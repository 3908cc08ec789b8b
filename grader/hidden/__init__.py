"""The hidden grading tests, one module per assignment: the instructor's, never in a student bundle.

They complete ``grader.suites.<assignment>`` (``grader.suite.run_suite`` runs both). Their cases are drawn
with hypothesis (``grader.suite.cases``) and must never be printed in a message.
"""
