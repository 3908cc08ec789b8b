"""Probes: the small functions that call a student's code in the student's process (see grader.submission).

One module per assignment, named like the assignment. Probes import nothing of ``tricksref`` and hold no
expected answers: they run where the student's code runs.
"""
