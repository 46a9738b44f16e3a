"""The ground floor of the grading tools: where the course lives, its kernel, nbgrader's runner and
configuration. Every other module of ``autograder`` may import this one; it imports none of them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
AUTOGRADER = REPO / "autograder"
SOLUTIONS = REPO / "solutions"        # the nbgrader source: reference notebooks with hidden tests
COURSE = REPO / "course"              # the release learners get, generated from SOLUTIONS
KERNEL = "vlm-course"                 # the Jupyter kernel of the course environment
KERNEL_DISPLAY_NAME = "Python (VLM course)"
KERNELSPEC = {"name": KERNEL, "display_name": KERNEL_DISPLAY_NAME, "language": "python"}
COURSE_ID = "vlm-course"              # = c.CourseDirectory.course_id in nbgrader_config.py
WORKSPACE_VARIABLE = "VLM_COURSE_WORKSPACE"

# The grader uses the helper package of this checkout, as its sandboxed kernels do (sandbox.py sets
# their PYTHONPATH): an environment whose editable install points at another checkout must not give
# the grader's own checks (trusted.py) a different vlmcourse from the one the kernels run.
if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))


def assignments(source: Path = SOLUTIONS) -> list[str]:
    """Assignment ids (folders of ``source`` holding a notebook of the same name), in order."""
    return sorted(p.name for p in source.iterdir() if (p / f"{p.name}.ipynb").is_file())


def workspace() -> Path:
    """The nbgrader course directory: ``$VLM_COURSE_WORKSPACE``, else ``autograder/workspace``."""
    return Path(os.environ.get(WORKSPACE_VARIABLE, AUTOGRADER / "workspace")).resolve()


def tool_path(path: str | None = None) -> str:
    """``PATH`` with this environment's scripts first: nbgrader calls its tools (alembic) by name."""
    path = os.environ.get("PATH", "") if path is None else path
    bin_dir = str(Path(sys.executable).parent)
    return path if bin_dir in path.split(os.pathsep) else bin_dir + os.pathsep + path


def nbgrader(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run an nbgrader command with the course's configuration; raise with its log if it fails."""
    env = {**os.environ, **(env or {})}
    env["PATH"] = tool_path(env.get("PATH", ""))
    Path(env.get(WORKSPACE_VARIABLE, AUTOGRADER / "workspace")).mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "nbgrader", *args]
    result = subprocess.run(command, cwd=AUTOGRADER, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def nbgrader_config(root: Path, db_url: str, source: Path, **overrides):
    """The course's ``nbgrader_config.py`` for the course directory ``root``, with dotted overrides
    (``{"Autograde.sanitize_preprocessors": [...]}``)."""
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(AUTOGRADER)).load_config()
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.db_url = db_url
    config.CourseDirectory.source_directory = str(source)
    extra = Config()
    for dotted, value in overrides.items():
        section, name = dotted.split(".")
        extra[section][name] = value
    config.merge(extra)
    return config
