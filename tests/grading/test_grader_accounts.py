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


def test_collect_from_the_exchange_leaves_submissions_private_to_the_grader(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A real exchange round trip on one account: release, submit (nbgrader makes the inbound copy
    # 0777), collect with the course's configuration; the collected folder must be the grader's alone.
    import stat
    import subprocess
    import sys

    from autograder.base import COURSE_ID, WORKSPACE_VARIABLE, assignments, nbgrader

    assignment = assignments()[0]
    exchange, workspace, home = tmp_path / "exchange", tmp_path / "ws", tmp_path / "home"
    home.mkdir()
    (home / "nbgrader_config.py").write_text(f"c = get_config()\nc.Exchange.root = {str(exchange)!r}\n"
                                             f"c.CourseDirectory.course_id = {COURSE_ID!r}\n")
    env = {WORKSPACE_VARIABLE: str(workspace), "NBGRADER_CONFIG_DIRS": str(home), "JUPYTER_CONFIG_DIR": str(home)}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    nbgrader("generate_assignment", assignment, "--force", "--CourseDirectory.release_directory=release",
             f"--Exchange.root={exchange}")
    nbgrader("release_assignment", assignment, "--force", f"--Exchange.root={exchange}")
    student = tmp_path / "student"
    student.mkdir()
    run = dict(cwd=student, capture_output=True, text=True, check=True,
               env={**os.environ, "HOME": str(home), "NBGRADER_CONFIG_DIRS": str(home)})
    nb = [sys.executable, "-m", "nbgrader"]
    subprocess.run(nb + ["fetch_assignment", assignment, f"--course={COURSE_ID}", f"--Exchange.root={exchange}"], **run)
    subprocess.run(nb + ["submit", assignment, f"--course={COURSE_ID}", f"--Exchange.root={exchange}"], **run)
    nbgrader("collect", assignment, "--update", f"--Exchange.root={exchange}")
    collected = next((workspace / "submitted").glob(f"*/{assignment}"))
    for path in [collected.parent, collected, *collected.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert not mode & 0o077, f"{path.relative_to(workspace)} is mode {oct(mode)}: others may read or change it"
