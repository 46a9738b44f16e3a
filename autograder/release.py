"""Releases: the student notebooks of ``course/`` and the grading release of a workspace, both
generated from the source notebooks by ``nbgrader generate_assignment``."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from .base import COURSE, WORKSPACE_VARIABLE, assignments, nbgrader
from .files import atomic_write, file_lock, sha256_of


def generate_release(assignment: str, destination: Path) -> Path:
    """Generate the student version of ``assignment`` into ``destination/assignment`` (no gradebook)."""
    nbgrader("generate_assignment", assignment, "--no-db", "--force",
             f"--CourseDirectory.release_directory={destination}")
    return destination / assignment


def generate_course(selected: list[str] | None = None) -> None:
    """Regenerate ``course/<assignment>`` for each assignment; the old copy survives a failure."""
    for assignment in selected or assignments():
        with tempfile.TemporaryDirectory() as tmp:
            fresh = generate_release(assignment, Path(tmp))
            target = COURSE / assignment
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(fresh, target)
        print(f"generated course/{assignment}")


def ensure_release(root: Path, source: Path, db_url: str, assignment: str) -> None:
    """Release ``assignment`` into the gradebook of workspace ``root`` once per source version
    (locked against other graders, atomic: the old release survives until the new one is in place)."""
    notebook = source / assignment / f"{assignment}.ipynb"
    marker = root / "grading" / assignment / "release.json"
    wanted = {"source": sha256_of([notebook]), "db": hashlib.sha256(db_url.encode()).hexdigest()}
    with file_lock(root / "grading" / assignment / ".release.lock"):
        if marker.exists() and json.loads(marker.read_text()) == wanted and (root / "release" / assignment).is_dir():
            return
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            nbgrader("generate_assignment", assignment, "--force",
                     f"--CourseDirectory.release_directory={tmp}", f"--CourseDirectory.db_url={db_url}",
                     f"--CourseDirectory.source_directory={source}",
                     env={WORKSPACE_VARIABLE: str(root)})
            target = root / "release" / assignment
            target.parent.mkdir(parents=True, exist_ok=True)
            old = target.with_name(f".{assignment}.old")
            if target.exists():
                os.replace(target, old)
            shutil.move(str(Path(tmp) / assignment), target)
            shutil.rmtree(old, ignore_errors=True)
        atomic_write(marker, json.dumps(wanted))
