"""What kind of cell is this: the one place that reads nbgrader's cell metadata and the course's
markers. The grader, the feedback, the submission rebuilder, the tests and the bad-submission
catalogue all ask here (like nbgrader's own ``utils.py``).

Kinds (docs/authoring.md):

- ``setup``: a code cell tagged ``setup``; trusted (restored from the source before grading);
- ``exercise``: an nbgrader solution cell (``### BEGIN SOLUTION`` ... ``### END SOLUTION``);
- ``test``: an nbgrader graded test cell (autograder tests), visible asserts then
  ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS``;
- ``other``: everything else (teaching text, demos, plots).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

SETUP_TAG = "setup"
BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
GRADING_KEYS = ("grade", "solution", "points", "locked")   # metadata that decides what is graded

Kind = Literal["setup", "exercise", "test", "other"]


def nbgrader_meta(cell: Mapping) -> dict:
    """The cell's nbgrader metadata (empty when it has none)."""
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def grade_id(cell: Mapping) -> str | None:
    return nbgrader_meta(cell).get("grade_id")


def is_code(cell: Mapping) -> bool:
    return cell.get("cell_type") == "code"


def is_setup(cell: Mapping) -> bool:
    return is_code(cell) and SETUP_TAG in cell.get("metadata", {}).get("tags", [])


def is_solution(cell: Mapping) -> bool:
    """An nbgrader solution cell (code or markdown)."""
    return bool(nbgrader_meta(cell).get("solution"))


def is_test(cell: Mapping) -> bool:
    """A graded test cell: graded code that is not a solution."""
    meta = nbgrader_meta(cell)
    return is_code(cell) and bool(meta.get("grade")) and not meta.get("solution")


def is_locked(cell: Mapping) -> bool:
    """Cells whose content the source dictates: tests and read-only cells (not solution cells)."""
    meta = nbgrader_meta(cell)
    return bool(meta.get("grade_id")) and not meta.get("solution") and bool(meta.get("grade") or meta.get("locked"))


def points(cell: Mapping) -> float:
    return nbgrader_meta(cell).get("points", 0)


def kind(cell: Mapping) -> Kind:
    """``setup``, ``exercise``, ``test`` or ``other`` (see the module docstring)."""
    if not is_code(cell):
        return "other"
    if is_solution(cell):
        return "exercise"
    if nbgrader_meta(cell).get("grade"):
        return "test"
    if is_setup(cell):
        return "setup"
    return "other"


def points_by_test(notebook: Mapping) -> dict[str, float]:
    """``{grade_id: points}`` of every graded cell of a notebook, in order."""
    return {grade_id(c): points(c) for c in notebook["cells"] if nbgrader_meta(c).get("grade")}


def hidden_lines(source: str, min_length: int = 6) -> list[str]:
    """The stripped lines of a test cell's hidden region (short lines are too common to redact)."""
    lines, inside = [], False
    for line in source.splitlines():
        if BEGIN_HIDDEN in line:
            inside = True
        elif END_HIDDEN in line:
            inside = False
        elif inside and len(line.strip()) >= min_length:
            lines.append(line.strip())
    return lines
