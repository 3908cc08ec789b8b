"""nbgrader configuration for the course (https://nbgrader.readthedocs.io/en/stable/configuration/).

The instructor's notebooks live in solutions/<assignment>/, and `nbgrader generate_assignment <assignment>`
writes the student version to exercises/<assignment>/. Submissions go to submitted/<student>/<assignment>/,
`nbgrader autograde <assignment>` writes autograded/ and the gradebook (gradebook.db, never committed: it
stores the hidden tests), `nbgrader generate_feedback <assignment>` writes feedback/.

The graded cells call grader.nbgrader_bridge, which scores each cell with the same suite test that
`python -m grader grade` runs, and prints the points as the cell's value (nbgrader's partial credit).
"""

import os

from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import ClearHiddenTests, GetGrades

c = get_config()  # noqa: F821 (injected by traitlets when nbgrader loads this file)

c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.course_id = "cnn-tricks"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"

# The feedback students receive leaves out the hidden parts of the graded cells (which test runs there);
# the points and the grader's messages, which never print a hidden case, stay.
c.GenerateFeedback.preprocessors = [GetGrades, ClearHiddenTests, CSSHTMLHeaderPreprocessor]
