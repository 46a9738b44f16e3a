"""Instructor grading at scale: the bad-submission catalogue graded in one parallel, sandboxed run.

All cases (tests/bad_submissions/catalogue.py) are graded together, two kernels at a time, with short
limits; then each case is checked against its expected status, score, reason, flags and notes, and
the run as a whole against: the grader finished, the gradebook is consistent, a second run changes
nothing, feedback shows no hidden test, the report exists.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import sqlite3
import tempfile
import threading
from pathlib import Path

import nbformat
import pytest
from bad_submissions.catalogue import ASSIGNMENT, CASES, build_source, grade_id

from autograder.grading import Grader, Options
from autograder.report import write_report
from autograder.sandbox import Limits, bwrap_works

pytestmark = [pytest.mark.xdist_group("grading"), pytest.mark.notebook]
LIMITS = Limits(cell_timeout=10, setup_timeout=120, total_timeout=300, memory_bytes=3 * 2 ** 30, processes=96,
                output_bytes=100_000, total_output_bytes=1_000_000)
_state: dict = {}


def submit(grader: Grader, source_dir: Path, workspace: Path, cases) -> None:
    """Release the mini assignment and write each case's submission into ``workspace/submitted``."""
    grader.ensure_release(ASSIGNMENT)
    reference = source_dir / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    blank = workspace / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    for case in cases:
        folder = workspace / "submitted" / case.name / ASSIGNMENT
        folder.mkdir(parents=True)
        case.make(nbformat.read(reference, as_version=4), nbformat.read(blank, as_version=4), folder)


def grade_catalogue() -> dict:
    if _state:
        return _state
    if not bwrap_works():
        pytest.skip("bubblewrap is not installed or cannot create namespaces here (apt-get install bubblewrap)")
    tmp = Path(tempfile.mkdtemp(prefix="grading-catalogue-"))
    source_dir, workspace = tmp / "source", tmp / "ws"
    build_source(source_dir)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    workspace.mkdir()
    (workspace / "port").write_text(str(listener.getsockname()[1]))
    accepted: list = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()

    options = Options(workspace=workspace, jobs=2, sandbox="bwrap", limits=LIMITS, source_dir=source_dir)
    grader = Grader(options)
    submit(grader, source_dir, workspace, CASES)
    messages: list[str] = []
    results = {r.student: r for r in grader.run(progress=messages.append)}
    csv_path = grader.export_csv()
    with open(csv_path, newline="") as handle:
        rows = {row["student_id"]: row for row in csv.DictReader(handle)}
    _state.update(tmp=tmp, workspace=workspace, grader=grader, results=results, rows=rows, messages=messages,
                  accepted=accepted)
    listener.close()
    return _state


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_submission_gets_its_expected_outcome(case) -> None:
    state = grade_catalogue()
    row = state["rows"].get(case.name)
    assert row is not None, f"{case.name}: no row in grades.csv; grader log: {state['messages']}"
    statuses = case.status if isinstance(case.status, tuple) else (case.status,)
    description = f"{case.name} ({case.what}): {row}"
    assert row["status"] in statuses, description
    if case.score is None:
        assert row["score"] == "", description
    else:
        assert row["score"] != "" and float(row["score"]) == case.score, description
    for column, wanted in (("reason", case.reason), ("flags", case.flags), ("notes", case.notes)):
        assert wanted.lower() in row[column].lower(), f"{column} should mention '{wanted}': {description}"
    if case.outputs_must or case.outputs_must_not:
        executed = state["workspace"] / "executed" / case.name / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        text = json.dumps([o for c in nbformat.read(executed, as_version=4).cells for o in c.get("outputs", [])])
        for wanted in case.outputs_must:
            assert wanted in text, f"{case.name}: '{wanted}' not in the outputs"
        for unwanted in case.outputs_must_not:
            assert unwanted not in text, f"{case.name}: '{unwanted}' in the outputs: the sandbox leaked"


def test_every_submission_was_graded_and_the_grader_kept_running() -> None:
    state = grade_catalogue()
    assert set(state["rows"]) == {c.name for c in CASES}
    assert not state["accepted"], "a sandboxed kernel reached the grader's loopback network"


def test_gradebook_is_consistent() -> None:
    state = grade_catalogue()
    database = state["workspace"] / "gradebook.db"
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        submitted = [r[0] for r in connection.execute(
            "SELECT student.id FROM submitted_assignment JOIN student ON student.id = student_id")]
    gradable = {name for name, row in state["rows"].items() if row["status"] != "ungradable"}
    assert sorted(submitted) == sorted(gradable), "exactly one gradebook submission per gradable student"


def test_second_run_is_idempotent_and_regrades_only_changed_submissions() -> None:
    state = grade_catalogue()
    workspace, grader = state["workspace"], state["grader"]
    before = dict(state["rows"])
    messages: list[str] = []
    grader.run(progress=messages.append)
    assert messages[0].startswith("0 submission(s) to grade"), messages
    # one student resubmits a corrected notebook: only that one is executed again
    honest = workspace / "submitted" / "honest" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    target = workspace / "submitted" / "one_mistake" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    target.write_bytes(honest.read_bytes())
    messages.clear()
    grader.run(progress=messages.append)
    assert messages[0].startswith("1 submission(s) to grade"), messages
    with open(grader.export_csv(), newline="") as handle:
        after = {row["student_id"]: row for row in csv.DictReader(handle)}
    assert float(after["one_mistake"]["score"]) == float(before["honest"]["score"])
    for name, row in before.items():
        if name != "one_mistake":
            assert (after[name]["score"], after[name]["status"]) == (row["score"], row["status"]), name
    with sqlite3.connect(workspace / "gradebook.db") as connection:
        count = connection.execute("SELECT COUNT(*) FROM submitted_assignment JOIN student "
                                   "ON student.id = student_id WHERE student.id = 'one_mistake'").fetchone()[0]
    assert count == 1


def test_feedback_never_shows_hidden_tests() -> None:
    state = grade_catalogue()
    source = nbformat.read(state["grader"].source / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    hidden, visible = [], set()
    for cell in source.cells:
        if grade_id(cell) and "BEGIN HIDDEN TESTS" in cell.source:
            before, rest = cell.source.split("### BEGIN HIDDEN TESTS")
            region, after = rest.split("### END HIDDEN TESTS")
            visible |= {line.strip() for line in (before + after).splitlines()}
            hidden += [line.strip() for line in region.splitlines() if len(line.strip()) > 20]
    hidden = [line for line in hidden if line not in visible]     # lines only the hidden part has
    assert hidden
    pages = list((state["workspace"] / "feedback").glob(f"*/{ASSIGNMENT}/*.html"))
    assert len(pages) >= len([r for r in state["rows"].values() if r["status"] != "ungradable"])
    import html as html_module
    import re
    for page in pages:
        text = html_module.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))
        assert "BEGIN HIDDEN TESTS" not in text, page
        leaked = [line for line in hidden if line in text]
        assert not leaked, f"{page}: hidden test lines in the feedback: {leaked[:2]}"
        # an encoded copy too (prints_tests_encoded: the executed notebook has it, the feedback must not)
        assert "LEAK:" not in text, f"{page}: kernel output after a hidden test in the feedback"


def test_feedback_loads_mathjax_from_the_server_that_shows_it() -> None:
    """Offline math: the only script a feedback page loads by address is the course's loader, which
    asks the Jupyter server serving the page for its MathJax (jupyter-server-mathjax)."""
    import re
    import urllib.parse

    state = grade_catalogue()
    for page in (state["workspace"] / "feedback").glob(f"*/{ASSIGNMENT}/*.html"):
        sources = re.findall(r'<script[^>]*\ssrc="([^"]+)"', page.read_text(encoding="utf-8"))
        assert sources and all(src.startswith("data:text/javascript,") for src in sources), (page, sources)
        loader = urllib.parse.unquote(sources[0])
        assert "static/jupyter_server_mathjax/MathJax.js" in loader and "/files/" in loader, loader


def test_report_has_plots_and_failure_rates() -> None:
    state = grade_catalogue()
    index = write_report(state["workspace"])
    report = index.parent
    assert (report / f"{ASSIGNMENT}_scores.png").stat().st_size > 0
    assert (report / f"{ASSIGNMENT}_tests.png").stat().st_size > 0
    with open(report / "test_failures.csv", newline="") as handle:
        rates = {row["test"]: row for row in csv.DictReader(handle)}
    assert "test_attention_memory_bytes" in rates and int(rates["test_attention_memory_bytes"]["failed"]) > 0
    # the wrong_axis case made a mistake the softmax test names: the report counts it
    with open(report / "mistakes.csv", newline="") as handle:
        made = {(row["test"], row["mistake"]): int(row["submissions"]) for row in csv.DictReader(handle)}
    assert made.get(("test_softmax", "normalised over the wrong axis"), 0) >= 1, made
    assert "Known mistakes made" in index.read_text(encoding="utf-8")


RLIMIT_CASES = ("honest", "blank", "infinite_loop", "os_exit", "monkeypatched_checks")


def test_rlimits_fallback_grades_like_the_bubblewrap_sandbox(tmp_path, monkeypatch) -> None:
    """Where user namespaces are unavailable (some clusters) an instructor's grader falls back to resource
    limits without a filesystem sandbox: scores, timeouts, crashes and tampering must come out the same.

    Graded as a normal (non-root) user would: as root, the rlimits mode would run kernels as spare uids,
    which need the Python installation to be world-readable (checked, with a clear error, below)."""
    import autograder.sandbox as sandbox

    if os.geteuid() == 0 and sandbox.unreadable_by_others(sandbox._python_roots()):
        with pytest.raises(RuntimeError, match="cannot reach the course's Python"):
            sandbox.choose_mode("rlimits")
    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 1000)
    source_dir, workspace = tmp_path / "source", tmp_path / "ws"
    build_source(source_dir)
    grader = Grader(Options(workspace=workspace, jobs=2, sandbox="rlimits", limits=LIMITS, source_dir=source_dir))
    assert grader.mode == "rlimits"
    cases = [c for c in CASES if c.name in RLIMIT_CASES]
    submit(grader, source_dir, workspace, cases)
    grader.run(progress=lambda message: None)
    with open(grader.export_csv(), newline="") as handle:
        rows = {row["student_id"]: row for row in csv.DictReader(handle)}
    assert set(rows) == set(RLIMIT_CASES)
    for case in cases:
        row = rows[case.name]
        assert row["status"] == case.status and float(row["score"]) == case.score, f"{case.name} (rlimits): {row}"
        assert case.reason.lower() in row["reason"].lower(), f"{case.name} (rlimits): {row}"
        assert case.flags.lower() in row["flags"].lower(), f"{case.name} (rlimits): {row}"


def test_a_deeply_nested_workspace_still_grades(tmp_path) -> None:
    """Kernel sockets must fit in 107 bytes: a long workspace path moves the scratch folder to /tmp."""
    if not bwrap_works():
        pytest.skip("bubblewrap is not usable here")
    source_dir, workspace = tmp_path / "source", tmp_path / ("course-workspace-" * 6) / "ws"
    build_source(source_dir)
    grader = Grader(Options(workspace=workspace, jobs=1, sandbox="bwrap", limits=LIMITS, source_dir=source_dir))
    assert len(str(workspace)) > 107 and len(str(grader.scratch)) < 80
    honest = next(c for c in CASES if c.name == "honest")
    submit(grader, source_dir, workspace, [honest])
    (result,) = grader.run(progress=lambda message: None)
    assert result.status == "graded", result
    assert sum(t["points"] for t in result.tests.values() if t["outcome"] == "passed") == honest.score, result
    assert not grader.scratch.exists(), "the scratch folder is removed after grading"
