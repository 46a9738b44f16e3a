"""The words a grading run writes: a submission's status and each test's outcome.

They are ``str`` enums, so ``result.json``, ``grades.csv`` and the report keep the plain words
(``"graded"``, ``"passed"``) while the code cannot misspell them.
"""

from __future__ import annotations

from enum import Enum


class _Word(str, Enum):
    """An enum whose members are their own text, in JSON, CSV and f-strings alike."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    __hash__ = str.__hash__     # equal to its text, so it finds the same dict keys


class Status(_Word):
    """What happened to a submission as a whole (a column of grades.csv)."""

    GRADED = "graded"
    PARTIALLY_GRADED = "partially graded"   # some tests could not run (timeout, crash, flood)
    UNGRADABLE = "ungradable"               # nothing could be graded; the reason says why


class Outcome(_Word):
    """What happened to one graded test cell."""

    PASSED = "passed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    DIED = "died"
    FLOOD = "flood"
    VOID = "void"           # the verdict cannot be trusted (tampering during the test)
    NOT_RUN = "not run"

    @property
    def incomplete(self) -> bool:
        """The test could not run to a verdict: the submission is only partially graded."""
        return self in (Outcome.TIMEOUT, Outcome.DIED, Outcome.FLOOD, Outcome.NOT_RUN)


class CellStatus(_Word):
    """How one cell's execution in the sandboxed kernel ended."""

    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"
    DIED = "died"
    FLOOD = "flood"
