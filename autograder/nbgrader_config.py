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

import sys  # noqa: E402

if REPO not in sys.path:
    sys.path.insert(0, REPO)
from autograder.base import COURSE_ID, KERNEL  # noqa: E402

c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)

c.CourseDirectory.course_id = COURSE_ID
c.CourseDirectory.root = WORKSPACE
c.CourseDirectory.source_directory = os.path.join(REPO, "solutions")
c.CourseDirectory.release_directory = "release"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(WORKSPACE, "gradebook.db")
# trusted_checks.py: the grader's own checks (autograder/trusted.py), never released to learners.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", ".*", "trusted_checks.py"]

c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Notebooks train small models: allow long cells, but never hang forever.
c.Execute.timeout = 600
c.Execute.interrupt_on_timeout = True
c.Execute.kernel_name = KERNEL

# ---------------------------------------------------------------------------------------- grading
# (autograder/grading.py drives nbgrader's converters itself; these settings make nbgrader's own
# commands, e.g. `nbgrader generate_feedback`, behave the same way.)
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor  # noqa: E402
from nbgrader.preprocessors import GetGrades  # noqa: E402

from autograder.collect import FILENAME_PATTERN  # noqa: E402
from autograder.feedback import RedactHiddenTests  # noqa: E402

# Feedback never shows hidden tests, nor the failing line of a hidden assert.
c.GenerateFeedback.preprocessors = [GetGrades, RedactHiddenTests, CSSHTMLHeaderPreprocessor]
# ... and renders its math offline: nbgrader's feedback template with the MathJax of the Jupyter server
# that shows the page (autograder/templates/feedback_offline/). Setting the base folders replaces
# nbgrader's default, so its own template folder is named here too.
import nbgrader  # noqa: E402

c.HTMLExporter.template_name = "feedback_offline"
c.HTMLExporter.extra_template_basedirs = [
    os.path.join(HERE, "templates"),
    os.path.join(os.path.dirname(nbgrader.__file__), "server_extensions", "formgrader", "templates")]
# LMS downloads (`python -m autograder.cli collect ASSIGNMENT --zip FOLDER`): see autograder/collect.py.
c.ZipCollectApp.collector_plugin = "nbgrader.plugins.zipcollect.FileNameCollectorPlugin"
c.FileNameCollectorPlugin.named_regexp = FILENAME_PATTERN
c.FileNameCollectorPlugin.valid_ext = [".ipynb"]
# Collected submissions belong to the grader alone (nbgrader's copy would keep the exchange's 0777).
c.ExchangeFactory.collect = "autograder.exchange.PrivateCollect"
