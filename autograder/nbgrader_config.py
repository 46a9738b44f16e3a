"""nbgrader configuration of the course.

Run nbgrader from this folder (``cd autograder && nbgrader ...``) or through ``python -m autograder.cli``.
The reference notebooks in ``solutions/`` are the nbgrader *source*. Everything grading produces
(the release used for grading, submissions, autograded copies, feedback, the gradebook) lives in a
workspace outside version control: ``autograder/workspace`` unless ``VLM_COURSE_WORKSPACE`` names
another folder (an instructor's course directory, or a test's temporary folder).
"""

import os

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
WORKSPACE = os.path.abspath(os.environ.get("VLM_COURSE_WORKSPACE", os.path.join(HERE, "workspace")))

c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)

c.CourseDirectory.course_id = "vlm-course"
c.CourseDirectory.root = WORKSPACE
c.CourseDirectory.source_directory = os.path.join(REPO, "solutions")
c.CourseDirectory.release_directory = "release"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(WORKSPACE, "gradebook.db")
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", ".*"]

c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Notebooks train small models: allow long cells, but never hang forever.
c.Execute.timeout = 600
c.Execute.interrupt_on_timeout = True
c.Execute.kernel_name = "vlm-course"
