"""The grader's verdict on one submission (``grading/<assignment>/<student>/result.json``)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .files import atomic_write
from .outcomes import Status


@dataclass
class Result:
    assignment: str
    student: str
    key: str                      # what was graded (see Grader.key); "" = never reuse this result
    status: Status
    reason: str = ""
    tests: dict = field(default_factory=dict)   # grade_id -> {outcome, detail, points}
    flags: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    seconds: float = 0.0
    attempts: int = 0
    graded_at: str = ""
    recorded: str = ""            # key that was recorded in the gradebook

    def __post_init__(self) -> None:
        self.status = Status(self.status)


def now() -> str:
    """This instant, ISO 8601 in UTC with its offset (``graded_at``): a reader in any zone knows the instant."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def with_zone(value, naive: timezone | None = timezone.utc) -> str:
    """``value`` (a datetime or ISO string) as ISO 8601 with an explicit offset, in UTC; a naive value
    is taken to be in ``naive`` (None: this machine's local time). "" stays "" and unparsable text
    is kept as it is (never lose what was stored)."""
    if value in ("", None):
        return ""
    if not isinstance(value, datetime):
        try:
            value = datetime.fromisoformat(str(value))
        except ValueError:
            return str(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=naive) if naive else value.astimezone()
    return value.astimezone(timezone.utc).isoformat(timespec="seconds")


def result_path(root: Path, assignment: str, student: str) -> Path:
    return root / "grading" / assignment / student / "result.json"


def load_result(path: Path) -> Result | None:
    """The result stored at ``path``; None if there is none or it cannot be read."""
    if not path.exists():
        return None
    try:
        return Result(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        return None


def save_result(root: Path, result: Result) -> None:
    atomic_write(result_path(root, result.assignment, result.student), json.dumps(asdict(result), indent=1))


def stored_results(root: Path) -> list[Result]:
    """Every result of the workspace ``root``, by assignment then student."""
    return [Result(**json.loads(p.read_text())) for p in sorted((root / "grading").glob("*/*/result.json"))]
