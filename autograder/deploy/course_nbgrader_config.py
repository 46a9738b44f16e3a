# nbgrader_config.py of the course directory (the grader's workspace): the project's own
# configuration, then this folder as the course root. Loading the project's file is what keeps the
# hidden tests out of feedback, also when the formgrader's "Generate Feedback" makes it.
# autograder/hub.py writes this file with REPO set to the checkout; on a cluster set it by hand.
import os

c = get_config()  # noqa: F821

REPO = "/shared/vlm-course"
HERE = os.path.dirname(os.path.abspath(__file__))
load_subconfig(os.path.join(REPO, "autograder", "nbgrader_config.py"))  # noqa: F821
c.CourseDirectory.root = HERE
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(HERE, "gradebook.db")
