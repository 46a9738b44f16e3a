"""Recording: the grader's results go into nbgrader's gradebook, ``autograded/``, the feedback
HTML and ``grades.csv``. Nothing here executes learner code; it runs in the grader's process,
serially, through nbgrader's own converters (``Autograde`` with execution switched off,
``GenerateFeedback`` with hidden tests redacted).
"""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import shutil
import tempfile
from pathlib import Path

from nbgrader.preprocessors import SaveAutoGrades
from traitlets import Dict

from .base import COURSE_ID, nbgrader_config
from .outcomes import Outcome, Status
from .results import Result, stored_results, with_zone

CSV_FIELDS = ["assignment", "student_id", "status", "score", "max_score", "reason", "flags", "notes",
              "timestamp", "graded_at", "seconds"]


def normalize_db_url(url: str | None) -> str | None:
    """``postgresql://`` means the pinned driver, psycopg2 (SQLAlchemy 2.1 would pick psycopg 3)."""
    if url and url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def default_db_url(root: Path) -> str:
    return "sqlite:///" + str(root / "gradebook.db")


def awarded_points(result: Result) -> dict[str, float]:
    """The grader's verdict per test: its points if it passed under the grader's eyes, else 0."""
    return {gid: float(test["points"]) if test["outcome"] == Outcome.PASSED else 0.0
            for gid, test in result.tests.items()}


class RecordError(RuntimeError):
    """The gradebook does not say what the grader decided (nothing is exported as if it did)."""


class SaveGraderVerdicts(SaveAutoGrades):
    """nbgrader's ``SaveAutoGrades`` with one change: a test cell's score is the grader's verdict.

    nbgrader scores a test cell from its outputs (0 for any stderr, a number shown by the cell as
    partial credit), which a learner's code controls: a correct function that emits a warning would
    lose its points, and one that calls ``sys.displayhook(1.0)`` before failing would gain some.
    Here outputs never decide."""

    verdicts = Dict(help="grade_id -> points awarded by the grader").tag(config=True)

    def _add_score(self, cell, resources) -> None:
        gid = cell.metadata["nbgrader"]["grade_id"]
        if gid not in self.verdicts:
            super()._add_score(cell, resources)
            return
        grade = self.gradebook.find_grade(gid, self.notebook_id, self.assignment_id, self.student_id)
        grade.auto_score = self.verdicts[gid]
        grade.needs_manual_grade = grade.manual_score is not None
        self.gradebook.db.commit()


class Recorder:
    """Writes results of the workspace ``root`` into its gradebook (``db_url``) and files."""

    def __init__(self, root: Path, source: Path, db_url: str, feedback: bool = True) -> None:
        self.root, self.source, self.db_url, self.feedback = root, source, db_url, feedback

    def record(self, result: Result) -> None:
        """Write one executed submission into the gradebook and its feedback."""
        from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
        from nbgrader.api import Gradebook, MissingEntry
        from nbgrader.converters import Autograde, GenerateFeedback
        from nbgrader.coursedir import CourseDirectory
        from nbgrader.preprocessors import AssignLatePenalties, CheckCellMetadata, GetGrades, LimitOutput

        from .feedback import RedactHiddenTests

        assignment, student = result.assignment, result.student
        if result.status == Status.UNGRADABLE:
            with Gradebook(self.db_url, COURSE_ID) as gradebook:
                with contextlib.suppress(MissingEntry):
                    gradebook.remove_submission(assignment, student)
            for folder in ("autograded", "feedback", "executed"):
                shutil.rmtree(self.root / folder / student / assignment, ignore_errors=True)
            return
        config = nbgrader_config(self.root, self.db_url, self.source, **{
            "CourseDirectory.submitted_directory": "executed",
            "Autograde.sanitize_preprocessors": [CheckCellMetadata],
            "Autograde.autograde_preprocessors": [LimitOutput, SaveGraderVerdicts, AssignLatePenalties,
                                                  CheckCellMetadata],
            "SaveGraderVerdicts.verdicts": awarded_points(result),
            "GenerateFeedback.preprocessors": [GetGrades, RedactHiddenTests, CSSHTMLHeaderPreprocessor],
        })
        coursedir = CourseDirectory(config=config)
        coursedir.assignment_id, coursedir.student_id = assignment, student
        app = Autograde(coursedir=coursedir, config=config)
        app.force, app.create_student = True, True
        app.log.setLevel(logging.ERROR)
        app.start()
        self.check_recorded(result)
        if self.feedback:
            feedback = GenerateFeedback(coursedir=coursedir, config=config)
            feedback.force = True
            feedback.log.setLevel(logging.ERROR)
            feedback.start()

    def check_recorded(self, result: Result) -> None:
        """Raise unless the gradebook holds exactly the grader's points for every test of ``result``."""
        from nbgrader.api import Gradebook

        wanted = awarded_points(result)
        with Gradebook(self.db_url, COURSE_ID) as gradebook:
            submission = gradebook.find_submission(result.assignment, result.student)
            recorded = {grade.name: grade.auto_score for notebook in submission.notebooks for grade in notebook.grades
                        if grade.name in wanted}
        wrong = {gid: (recorded.get(gid), points) for gid, points in wanted.items() if recorded.get(gid) != points}
        if wrong:
            raise RecordError(f"the gradebook disagrees with the grader for {result.student}/{result.assignment}: "
                              + ", ".join(f"{g}: {r} recorded, {p} awarded" for g, (r, p) in wrong.items()))

    def export_csv(self, path: Path | None = None) -> Path:
        """``grades.csv``: one row per submission, its status and why (never a silent 0)."""
        from nbgrader.api import Gradebook, MissingEntry

        path = path or self.root / "grades.csv"
        rows = []
        with Gradebook(self.db_url, COURSE_ID) as gradebook:
            for result in stored_results(self.root):
                score = max_score = timestamp = ""
                if result.status != Status.UNGRADABLE:
                    try:
                        submission = gradebook.find_submission(result.assignment, result.student)
                        score, max_score = submission.score, submission.max_score
                        # nbgrader keeps submission times as naive UTC datetimes.
                        timestamp = with_zone(submission.timestamp)
                    except MissingEntry:
                        result.reason = (result.reason + "; " if result.reason else "") + "not recorded yet: rerun"
                rows.append({"assignment": result.assignment, "student_id": result.student, "status": result.status,
                             "score": score, "max_score": max_score, "reason": result.reason,
                             "flags": " | ".join(result.flags), "notes": " | ".join(result.notes),
                             "timestamp": timestamp,
                             # Results graded before times carried a zone hold the grader's local time.
                             "graded_at": with_zone(result.graded_at, naive=None), "seconds": result.seconds})
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, newline="", suffix=".tmp") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(handle.name, path)
        return path
