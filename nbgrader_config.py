"""nbgrader configuration for the course (https://nbgrader.readthedocs.io/en/stable/configuration/).

The instructor's notebooks live in solutions/<assignment>/, and `nbgrader generate_assignment <assignment>`
writes the student version to exercises/<assignment>/.
"""

import os

c = get_config()  # noqa: F821 (injected by traitlets when nbgrader loads this file)

c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.course_id = "cnn-tricks"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
