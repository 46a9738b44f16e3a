"""Collect submissions into ``<workspace>/submitted/<student>/<assignment>/``.

- From a JupyterHub exchange: ``nbgrader collect ASSIGNMENT`` (the exchange is configured in
  ``nbgrader_config.py`` or the hub's global config, see docs/jupyterhub.md).
- From LMS downloads (Moodle, Canvas, Blackboard: one file or zip per student): put the files in a
  folder and run ``python -m autograder.cli collect ASSIGNMENT --zip FOLDER``. nbgrader's
  ``zip_collect`` extracts the zips and reads the student id (and the submission time, when present)
  from each file name with the pattern ``FILENAME_PATTERN`` below, e.g.

      anything_<student_id>_attempt_<YYYY-MM-DD-HH-MM-SS>_<notebook>.ipynb
      anything_<student_id>_<notebook>.ipynb

  Files whose name does not match are listed and skipped (nothing is guessed).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .base import WORKSPACE_VARIABLE, nbgrader, workspace

# student ids: letters, digits, dot, dash; the file id is the notebook name without .ipynb
FILENAME_PATTERN = (r".*?_(?P<student_id>[A-Za-z0-9.\-]+)(_attempt_(?P<timestamp>[0-9\-]+))?"
                    r"_(?P<file_id>[A-Za-z0-9_\-]+\.ipynb)$")


def collect(assignment: str, zip_folder: Path | None = None) -> None:
    root = workspace()
    env = {WORKSPACE_VARIABLE: str(root)}
    if zip_folder is None:
        print(nbgrader("collect", assignment, "--update", env=env).stderr[-2000:])
        return
    archive = root / "downloaded" / assignment / "archive"
    archive.mkdir(parents=True, exist_ok=True)
    for path in sorted(Path(zip_folder).iterdir()):
        if path.is_file():
            shutil.copy(path, archive / path.name)
    result = nbgrader("zip_collect", assignment, "--force", env=env)
    print(result.stderr[-3000:])
    os.makedirs(root / "submitted", exist_ok=True)
