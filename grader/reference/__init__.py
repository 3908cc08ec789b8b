"""The instructor's references for the grading suites: expected values and known mistakes, computed with
``tricksref``. Never shipped to students (the visible tests' values travel as data: ``grader.expected``)."""
