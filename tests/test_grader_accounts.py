"""Graders of several accounts on one machine (a shared login node), and what grading carries along
for nbgrader's feedback release."""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

import pytest

from autograder import grading


def test_a_second_account_can_grade_while_another_holds_the_lock_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Another account's grader made (and holds) every lock file of the old shared names; they are not
    # writable for us. Our grader must still get a uid block of its own instead of failing.
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    held = []
    for block in range(16):
        path = tmp_path / f"vlm-course-grader-uids-{block}.lock"
        path.write_text("")
        path.chmod(0o444)
        handle = open(path)
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.append(handle)
    try:
        block, lock = grading.claim_uid_block()
        lock.close()
    finally:
        for handle in held:
            handle.close()
    assert block == 0
    assert str(os.geteuid()) in Path(lock.name).name, "the lock file names the account that holds it"


def test_scratch_folder_outside_the_workspace_names_the_account(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / "workspace"
    grader = grading.Grader(grading.Options(workspace=deep, sandbox="none"))
    assert f"-u{os.geteuid()}-" in grader.scratch.name


def test_grading_carries_the_submission_secret_into_the_executed_copy(tmp_path: Path) -> None:
    # nbgrader's release_feedback looks for submission_secret.txt next to the autograded notebook;
    # autograding reads the executed copy, so the secret must travel with it.
    submitted = tmp_path / "submitted" / "alice" / "a1"
    submitted.mkdir(parents=True)
    (submitted / "timestamp.txt").write_text("2026-01-01 10:00:00.000000 UTC")
    (submitted / "submission_secret.txt").write_text("s3cret")
    executed = tmp_path / "executed" / "alice" / "a1"
    executed.mkdir(parents=True)
    grading.carry_submission_files(submitted, executed)
    assert (executed / "submission_secret.txt").read_text() == "s3cret"
    assert (executed / "timestamp.txt").exists()
