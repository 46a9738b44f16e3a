"""Fast unit tests of the grading pieces that need no kernel: rebuilding a submission on the trusted
template, feedback redaction, the guard's answer authentication, static flags, the sandbox command."""

from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path

import nbformat
import pytest
from bad_submissions.catalogue import build_source, cell_of, grade_id

from autograder.feedback import PLACEHOLDER, REDACTED, redact_notebook
from autograder.guard import GuardClient, GuardError, static_flags
from autograder.sandbox import Limits, Sandbox, bwrap_sizes_filesystems
from autograder.submission import Ungradable, canonicalize, find_notebook, read_notebook

_cache: dict = {}


def notebooks():
    if not _cache:
        source = read_notebook(build_source(Path(tempfile.mkdtemp())))
        release = nbformat.from_dict(json.loads(json.dumps(source)))
        for cell in release.cells:      # a stand-in for the release: hidden tests and solutions removed
            if "### BEGIN HIDDEN TESTS" in cell.source:
                cell.source = cell.source.split("### BEGIN HIDDEN TESTS")[0].rstrip()
        _cache.update(source=source, release=release)
    return (nbformat.from_dict(json.loads(json.dumps(_cache[k]))) for k in ("source", "release"))


def test_honest_notebook_is_unchanged_and_test_cells_are_found() -> None:
    source, release = notebooks()
    canonical = canonicalize(source, source, release)
    assert canonical.notes == []
    test_ids = [g for g in map(grade_id, source.cells) if g and g.startswith("test_")]
    assert sorted(canonical.tests.values()) == sorted(test_ids)
    assert len(canonical.setup) == 1


def test_deleted_duplicated_and_edited_tests_are_repaired_with_notes() -> None:
    source, release = notebooks()
    student, _ = notebooks()
    student.cells = [c for c in student.cells if grade_id(c) != "test_softmax"]
    index = next(i for i, c in enumerate(student.cells) if grade_id(c) == "test_masked_softmax")
    student.cells.insert(index, nbformat.from_dict(json.loads(json.dumps(student.cells[index]))))
    cell_of(student, "test_valid_lens_to_mask").source = "pass"
    canonical = canonicalize(student, source, release)
    text = " | ".join(canonical.notes)
    assert "test_softmax was deleted" in text and "duplicate of test_masked_softmax" in text
    assert "test_valid_lens_to_mask was edited" in text
    ids = [grade_id(c) for c in canonical.notebook.cells if grade_id(c)]
    assert ids == [grade_id(c) for c in source.cells if grade_id(c)], "same graded structure as the source"
    restored = cell_of(canonical.notebook, "test_valid_lens_to_mask")
    assert restored.source == cell_of(source, "test_valid_lens_to_mask").source


def test_edited_setup_cell_is_restored() -> None:
    source, release = notebooks()
    student, _ = notebooks()
    setup = next(c for c in student.cells if "setup" in c.metadata.get("tags", []))
    setup.source += "\nassert_close = lambda *a, **k: None"
    canonical = canonicalize(student, source, release)
    assert "setup cell 1 was edited" in " ".join(canonical.notes)
    restored = canonical.notebook.cells[min(canonical.setup)]
    assert "assert_close = lambda" not in restored.source


def test_unreadable_submissions_are_ungradable_with_a_reason(tmp_path: Path) -> None:
    (tmp_path / "mini.ipynb").write_text('{"cells": [', encoding="utf-8")
    with pytest.raises(Ungradable, match="malformed notebook JSON"):
        read_notebook(tmp_path / "mini.ipynb")
    (tmp_path / "mini.ipynb").write_text('{"a": 1}', encoding="utf-8")
    with pytest.raises(Ungradable, match="not a notebook"):
        read_notebook(tmp_path / "mini.ipynb")
    (tmp_path / "mini.ipynb").unlink()
    with pytest.raises(Ungradable, match="no notebook"):
        find_notebook(tmp_path, "mini")
    (tmp_path / "Copy of mini.ipynb").write_text("{}", encoding="utf-8")
    path, notes = find_notebook(tmp_path, "mini")
    assert path.name == "Copy of mini.ipynb" and "submitted as" in notes[0]


def test_student_files_are_read_without_links_blocking_or_limit(tmp_path: Path) -> None:
    import os
    import threading

    from autograder import grading
    from autograder.files import UnreadableFile, read_regular_file, sha256_of, tree_files

    secret = tmp_path / "secret.ipynb"
    secret.write_text("{}", encoding="utf-8")
    folder = tmp_path / "submission"
    folder.mkdir()
    (folder / "mini.ipynb").symlink_to(secret)
    path, _ = find_notebook(folder, "mini")                  # found by name, refused when read
    with pytest.raises(Ungradable, match="symbolic link"):
        read_notebook(path)
    (folder / "mini.ipynb").unlink()
    os.mkfifo(folder / "mini.ipynb")
    refused: list = []
    reader = threading.Thread(target=lambda: refused.append(pytest.raises(Ungradable, read_notebook, path)))
    reader.start()
    reader.join(10)
    assert not reader.is_alive() and refused, "reading a FIFO must fail at once, not wait for a writer"
    assert "not a regular file" in str(refused[0].value)
    (folder / "big").write_bytes(b"x" * 2048)
    with pytest.raises(UnreadableFile, match="larger"):
        read_regular_file(folder / "big", limit=1024)
    assert read_regular_file(folder / "big", limit=4096) == b"x" * 2048
    # The submission's key hashes every entry: odd names, FIFOs and links, none followed or opened.
    (folder / os.fsdecode(b"\xff\xfe.txt")).write_bytes(b"1")
    (folder / "etc").symlink_to("/etc")
    files = tree_files(folder)
    assert {f.name for f in files} >= {"mini.ipynb", "big", "etc", os.fsdecode(b"\xff\xfe.txt")}
    assert not any(f.is_relative_to(folder / "etc") and f != folder / "etc" for f in files)
    before = sha256_of(files, folder)
    (folder / "etc").unlink()
    (folder / "etc").symlink_to("/usr")
    assert sha256_of(tree_files(folder), folder) != before, "a changed link target changes the key"
    # nbgrader's bookkeeping files are carried only when they are regular files.
    (folder / "timestamp.txt").symlink_to(secret)
    executed = tmp_path / "executed"
    executed.mkdir()
    notes = grading.carry_submission_files(folder, executed)
    assert not (executed / "timestamp.txt").exists() and "symbolic link" in notes[0], notes


def test_feedback_redaction_removes_hidden_code_and_tracebacks() -> None:
    source, _ = notebooks()
    test = cell_of(source, "test_softmax")
    hidden_line = "very_negative = torch.tensor([[-1000.0, -1001.0, -1002.0]])"
    assert hidden_line in test.source
    test.outputs = [nbformat.v4.new_output("error", ename="AssertionError", evalue="wrong",
                                           traceback=["Traceback", f"----> 12 {hidden_line}", "AssertionError: wrong"])]
    exercise = cell_of(source, "softmax")
    exercise.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"spy: {hidden_line}\n")]
    redact_notebook(source)
    assert "BEGIN HIDDEN TESTS" not in test.source and PLACEHOLDER in test.source
    assert test.outputs[0].traceback == ["AssertionError: wrong"]
    assert hidden_line not in exercise.outputs[0].text and REDACTED in exercise.outputs[0].text


def test_feedback_shows_no_kernel_output_from_the_first_hidden_test_on(tmp_path: Path) -> None:
    import base64

    source = read_notebook(build_source(tmp_path))             # its own copy: redaction edits in place
    test = cell_of(source, "test_softmax")                      # the first test with hidden tests
    encoded = base64.b64encode(test.source.encode()).decode()
    test.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"from the learner's function: {encoded}"),
                    nbformat.v4.new_output("error", ename="AssertionError", evalue="softmax rows must sum to 1",
                                           traceback=["..."])]
    later = cell_of(source, "masked_softmax")
    later.outputs = [nbformat.v4.new_output("stream", name="stdout", text=encoded),
                     nbformat.v4.new_output("display_data", data={"image/png": encoded})]
    redact_notebook(source)
    shown = json.dumps([c.get("outputs", []) for c in source.cells])
    assert encoded not in shown, "an output after a hidden test reached the feedback"
    assert [o.output_type for o in test.outputs] == ["error"] and test.outputs[0].evalue == "softmax rows must sum to 1"
    assert len(later.outputs) == 1 and "after a hidden test" in later.outputs[0].text


def test_guard_answers_are_authenticated_and_sequenced() -> None:
    import hashlib
    import hmac

    guard = GuardClient()

    def answer(n: int, action: str, key: bytes = guard.key) -> str:
        text = json.dumps({"n": n, "action": action, "problems": []}, sort_keys=True)
        return repr(text + "|" + hmac.new(key, text.encode(), hashlib.sha256).hexdigest())

    assert guard.verify(answer(1, "install"), "install")["n"] == 1
    with pytest.raises(GuardError, match="forged"):
        guard.verify(answer(2, "before", key=b"guessed"), "before")
    with pytest.raises(GuardError, match="sequence"):
        guard.verify(answer(1, "before"), "before")          # a replayed answer


def test_static_flags_name_suspicious_code() -> None:
    flags = static_flags(["torch.allclose = lambda *a: True", "get_ipython().ast_transformers.append(x)",
                          "import socket"])
    assert {"assigns to a torch/numpy check", "touches IPython transformers", "opens network connections"} <= set(flags)
    assert static_flags(["def softmax(x):\n    return x.exp() / x.exp().sum(-1, keepdim=True)"]) == []


def test_sandbox_command_isolates_network_pids_and_files(tmp_path: Path) -> None:
    command = Sandbox(mode="bwrap", limits=Limits(), slot=3).command(["python", "-V"], tmp_path)
    assert command[0] == "bwrap" and "--unshare-net" in command and "--unshare-pid" in command
    assert "--die-with-parent" in command
    binds = [command[i + 1] for i, word in enumerate(command) if word in ("--bind", "--ro-bind")]
    assert str(tmp_path) in binds and not any(b.endswith("solutions") for b in binds)
    writable = [command[i + 1] for i, word in enumerate(command) if word == "--bind"]
    assert writable == [str(tmp_path)], "the scratch folder is the only writable bind"
    if bwrap_sizes_filesystems():   # the kernel's own folders are bounded filesystems, not the workspace's disk
        sized = {command[i + 5]: int(command[i + 1]) for i, word in enumerate(command) if word == "--size"}
        limits = Limits()
        assert sized[str(tmp_path / "home")] == sized[str(tmp_path / "tmp")] == limits.disk_bytes
        assert sized["/dev/shm"] == limits.shm_bytes and "/tmp" in sized


def test_an_environment_reached_through_a_link_runs_in_the_sandbox(tmp_path) -> None:
    """A course environment used through a symbolic link (``.venv`` -> a shared environment): the
    kernel is started by the linked path, which must exist inside the sandbox too."""
    import subprocess
    import sys
    import textwrap

    from autograder.base import REPO
    from autograder.sandbox import bwrap_works

    if not bwrap_works():
        pytest.skip("bubblewrap is not usable here")
    link = tmp_path / "linked-env"
    link.symlink_to(Path(sys.prefix).resolve())
    script = textwrap.dedent(f"""
        import subprocess, sys
        from pathlib import Path
        from autograder.sandbox import Limits, Sandbox
        assert sys.prefix == {str(link)!r}, sys.prefix
        box, scratch = Sandbox(mode="bwrap", limits=Limits()), Path({str(tmp_path / "scratch")!r})
        box.prepare(scratch)
        kernel = box.popen([sys.executable, "-c", "import torch, vlmcourse; print('started')"], scratch,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        print(kernel.communicate(timeout=120)[0].decode())
    """)
    run = subprocess.run([str(link / "bin" / Path(sys.executable).name), "-c", script], capture_output=True,
                         text=True, timeout=180, cwd=REPO, env={**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'src'}"})
    assert run.returncode == 0 and "started" in run.stdout, run.stdout[-2000:] + run.stderr[-2000:]


def one_cell_notebook(source: str) -> str:
    return nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)]))


def lms_downloads(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    """The workspace that collection writes to, and an empty folder of LMS downloads."""
    workspace, downloads = tmp_path / "ws", tmp_path / "downloads"
    downloads.mkdir()
    monkeypatch.setenv("VLM_COURSE_WORKSPACE", str(workspace))
    return workspace, downloads


def test_collect_from_lms_zip_downloads(tmp_path, monkeypatch) -> None:
    """`cli collect A --zip FOLDER`: zips and loose files named by the documented pattern land in
    submitted/<student>/<assignment>/ (with the submission time); a name that does not match is skipped."""
    import zipfile

    from autograder.collect import collect

    workspace, downloads = lms_downloads(tmp_path, monkeypatch)
    notebook = one_cell_notebook("x = 1")
    with zipfile.ZipFile(downloads / "moodle_export.zip", "w") as archive:
        archive.writestr("Unit 1_alice.smith_attempt_2026-11-20-09-30-00_01_attention.ipynb", notebook)
    (downloads / "Unit 1_bob_01_attention.ipynb").write_text(notebook)
    (downloads / "notes-from-carol.ipynb").write_text(notebook)
    collect("01_attention", zip_folder=downloads)
    submitted = workspace / "submitted"
    assert sorted(p.name for p in submitted.iterdir()) == ["alice.smith", "bob"]
    alice = submitted / "alice.smith" / "01_attention"
    assert nbformat.read(alice / "01_attention.ipynb", as_version=4).cells[0].source == "x = 1"
    assert (alice / "timestamp.txt").read_text().startswith("2026-11-20")
    assert (submitted / "bob" / "01_attention" / "01_attention.ipynb").exists()


def test_collect_handles_each_download_on_its_own(tmp_path, monkeypatch) -> None:
    """One hostile or broken download never stops the class's collection, never writes outside
    submitted/, and is reported with its reason; a rerun after it was removed starts afresh."""
    import gzip
    import io
    import tarfile
    import zipfile

    from autograder.collect import collect

    workspace, downloads = lms_downloads(tmp_path, monkeypatch)
    notebook = one_cell_notebook("x = 1")
    with zipfile.ZipFile(downloads / "climbs.zip", "w") as archive:
        archive.writestr("../../x_mallory_01_attention.ipynb", notebook)
        archive.writestr("ok/x_erin_01_attention.ipynb", notebook)
    (downloads / "corrupt.zip").write_bytes(b"PK\x03\x04 not really")
    (downloads / "x_frank_01_attention.ipynb.gz").write_bytes(b"\x1f\x8b broken gzip")
    (downloads / "x_grace_01_attention.ipynb.gz").write_bytes(gzip.compress(notebook.encode()))
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w:gz") as archive:
        data = notebook.encode()
        member = tarfile.TarInfo("x_heidi_attempt_2026-11-21-10-00-00_01_attention.ipynb")
        member.size = len(data)
        archive.addfile(member, io.BytesIO(data))
        link = tarfile.TarInfo("x_ivan_01_attention.ipynb")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    (downloads / "class.tar.gz").write_bytes(packed.getvalue())
    (downloads / "x_.._01_attention.ipynb").write_text(notebook)                # a student id of ".."
    (downloads / os.fsdecode(b"x_judy\xff_01_attention.ipynb")).write_text(notebook)  # not UTF-8
    (downloads / "x_ken_01_attention.ipynb").symlink_to(downloads / "x_grace_01_attention.ipynb.gz")
    os.mkfifo(downloads / "x_lee_01_attention.ipynb")                          # reading it would hang
    for attempt, source in (("2026-11-20-09-00-00", "old"), ("2026-11-20-10-00-00", "new")):
        (downloads / f"x_olga_attempt_{attempt}_01_attention.ipynb").write_text(one_cell_notebook(source))

    problems = collect("01_attention", zip_folder=downloads)
    submitted = workspace / "submitted"
    assert sorted(p.name for p in submitted.iterdir()) == ["erin", "grace", "heidi", "olga"]
    assert not (tmp_path / "x_mallory_01_attention.ipynb").exists() and not list(tmp_path.rglob("*mallory*"))
    olga = submitted / "olga" / "01_attention"
    assert nbformat.read(olga / "01_attention.ipynb", as_version=4).cells[0].source == "new", "the latest attempt"
    assert (olga / "timestamp.txt").read_text() == "2026-11-20 10:00:00"
    said = "\n".join(problems)
    for reason in ("climbs.zip: ../../x_mallory_01_attention.ipynb: a path outside the archive",
                   "corrupt.zip: cannot be read", "x_frank_01_attention.ipynb.gz: cannot be read",
                   "class.tar.gz: x_ivan_01_attention.ipynb: not a file", "x_.._01_attention.ipynb: the name does not",
                   "x_judy\\xff_01_attention.ipynb: the name does not", "x_ken_01_attention.ipynb: cannot be read",
                   "x_lee_01_attention.ipynb: cannot be read", "an older attempt of olga's 01_attention.ipynb"):
        assert reason in said, f"not reported: {reason!r} in {problems}"

    (downloads / "x_grace_01_attention.ipynb.gz").unlink()
    (downloads / "x_erin_01_attention.ipynb").write_text(one_cell_notebook("y = 2"))
    collect("01_attention", zip_folder=downloads)                               # runs again, same folder
    erin = sorted(p.name for p in (submitted / "erin" / "01_attention").iterdir())
    assert erin == ["01_attention.ipynb"], f"erin's folder is replaced whole: {erin}"


def test_grades_csv_times_carry_a_time_zone(tmp_path: Path) -> None:
    """nbgrader stores submission times as naive UTC and results written before this fix carry the
    grader's naive local time: grades.csv must say which instant it means (ISO 8601 with an offset),
    since learners saw their local time and instructors may sit in another zone."""
    from datetime import datetime, timezone

    from nbgrader.api import Gradebook

    from autograder.base import COURSE_ID
    from autograder.gradebook import Recorder, default_db_url
    from autograder.outcomes import Status
    from autograder.results import Result, now, save_result

    db_url = default_db_url(tmp_path)
    submitted = datetime(2026, 11, 20, 9, 30, 0)                     # naive, as nbgrader stores it (UTC)
    with Gradebook(db_url, COURSE_ID) as gradebook:
        gradebook.add_assignment("a1")
        for student in ("alice", "bob"):
            gradebook.add_student(student)
            gradebook.add_submission("a1", student, timestamp=submitted)
    save_result(tmp_path, Result("a1", "alice", "k", Status.GRADED, graded_at=now()))
    save_result(tmp_path, Result("a1", "bob", "k", Status.GRADED, graded_at="2026-11-20T10:00:00"))  # old, local
    path = Recorder(tmp_path, tmp_path, db_url, feedback=False).export_csv()
    rows = {row["student_id"]: row for row in csv.DictReader(path.open(newline=""))}
    for row in rows.values():
        for column in ("timestamp", "graded_at"):
            value = datetime.fromisoformat(row[column])
            assert value.tzinfo is not None, f"{column} {row[column]!r} has no time zone"
    assert datetime.fromisoformat(rows["alice"]["timestamp"]) == submitted.replace(tzinfo=timezone.utc)
    assert rows["alice"]["timestamp"].endswith("+00:00")
    assert datetime.fromisoformat(rows["bob"]["graded_at"]) == datetime(2026, 11, 20, 10, 0, 0).astimezone()
    assert abs(datetime.fromisoformat(rows["alice"]["graded_at"]) - datetime.now(timezone.utc)).total_seconds() < 60
