"""Every assignment, end to end: the reference notebook runs and scores full marks through the
instructors' grading path (the Grader in its sandbox), the untouched student notebook scores zero, course/ is generated from
solutions/, notebooks are stored clean, and every graded assert explains itself.

The expensive part (executing each reference notebook once, graded as ``make grade`` does) runs once per
assignment and is shared by the tests of that assignment (they run in one xdist group).
"""

from __future__ import annotations

import atexit
import csv
import filecmp
import shutil
import tempfile
from pathlib import Path

import pytest

from autograder.base import assignments
from autograder.grading import Grader, Options
from autograder.release import generate_release
from autograder.sandbox import Limits, bwrap_works
from harness import (asserts_without_message, exercise_ids, kind, load_mistakes, read, reference_path,
                     student_path, graded_cells)

ASSIGNMENTS = assignments()
_autograded: dict[str, dict] = {}


def per_assignment(heavy: bool = False):
    """Parametrize over assignments; heavy tests of one assignment share one xdist worker."""
    params = [pytest.param(a, marks=[pytest.mark.xdist_group(a)] if heavy else [], id=a) for a in ASSIGNMENTS]
    return pytest.mark.parametrize("assignment", params)


def autograde(assignment: str) -> dict:
    """Grade the reference and the blank student notebook once, the way instructors do (``make grade``:
    the Grader, the bubblewrap sandbox, the guard, the limits); cache scores and notebooks."""
    if assignment in _autograded:
        return _autograded[assignment]
    if not bwrap_works():
        pytest.fail("bubblewrap is not usable here: the grading path cannot be tested (apt-get install bubblewrap)")
    root = Path(tempfile.mkdtemp(prefix=f"grade-{assignment}-"))
    atexit.register(shutil.rmtree, root, True)
    for student, source in (("reference", reference_path(assignment)), ("blank", student_path(assignment))):
        target = root / "submitted" / student / assignment
        target.mkdir(parents=True)
        shutil.copy(source, target / source.name)
    # The instructors' defaults, but a longer cell limit: two test workers share this machine's cores.
    grader = Grader(Options(workspace=root, assignments=[assignment], jobs=1, sandbox="bwrap",
                            limits=Limits(cell_timeout=300)))
    results = {r.student: r for r in grader.run(progress=lambda message: None)}
    with open(grader.export_csv(), newline="") as handle:
        rows = {row["student_id"]: row for row in csv.DictReader(handle)}
    autograded = {s: root / "autograded" / s / assignment / f"{assignment}.ipynb" for s in ("reference", "blank")}
    _autograded[assignment] = {"rows": rows, "notebooks": autograded, "results": results}
    return _autograded[assignment]


@pytest.mark.notebook
@per_assignment(heavy=True)
def test_reference_runs_cleanly_and_scores_full_marks(assignment: str) -> None:
    result = autograde(assignment)
    notebook = read(result["notebooks"]["reference"])
    errors = [f"cell {i}: {o.ename}: {o.evalue}" for i, c in enumerate(notebook.cells) if c.cell_type == "code"
              for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, "the reference notebook raised errors:\n" + "\n".join(errors)
    row = result["rows"]["reference"]
    assert row["status"] == "graded" and not row["flags"], f"reference: {row}"
    assert float(row["score"]) == float(row["max_score"]) > 0, \
        f"reference scored {row['score']}/{row['max_score']}: {result['results']['reference'].tests}"


@pytest.mark.notebook
@per_assignment(heavy=True)
def test_blank_student_notebook_scores_zero(assignment: str) -> None:
    result = autograde(assignment)
    assert result["notebooks"]["blank"].exists(), "the grader dropped the blank submission"
    row = result["rows"]["blank"]
    assert row["status"] == "graded", f"the blank notebook was not graded: {row}"
    assert float(row["max_score"]) > 0 and float(row["score"]) == 0.0, \
        f"the untouched student notebook scored {row['score']}/{row['max_score']}: some test passes without code"


@per_assignment()
def test_course_is_generated_from_solutions(assignment: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate_release(assignment, Path(tmp))
        comparison = filecmp.dircmp(fresh, student_path(assignment).parent)
        stale = comparison.diff_files + comparison.left_only + comparison.right_only
        assert not stale, f"course/{assignment} is out of date ({stale}): run `make course`"
        for name in comparison.same_files:   # dircmp compares shallowly: compare bytes too
            assert filecmp.cmp(fresh / name, student_path(assignment).parent / name, shallow=False), \
                f"course/{assignment}/{name} differs from a fresh generation: run `make course`"


@per_assignment()
def test_student_notebook_hides_solutions_and_hidden_tests(assignment: str) -> None:
    text = student_path(assignment).read_text(encoding="utf-8")
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in text, f"course/{assignment} contains '{marker}'"


@per_assignment()
def test_notebooks_are_stored_without_outputs(assignment: str) -> None:
    for path in (reference_path(assignment), student_path(assignment)):
        notebook = read(path)
        dirty = [i for i, c in enumerate(notebook.cells)
                 if c.cell_type == "code" and (c.outputs or c.execution_count is not None)]
        assert not dirty, f"{path.name}: cells {dirty} hold outputs; run `python tools/notebooks.py clean`"
        assert notebook.metadata.get("kernelspec", {}).get("name") == "vlm-course", \
            f"{path.name}: kernelspec should be vlm-course"


@per_assignment()
def test_every_graded_assert_has_a_message(assignment: str) -> None:
    notebook = read(reference_path(assignment))
    assert graded_cells(notebook), "an assignment needs graded test cells"
    for cell in graded_cells(notebook):
        lines = asserts_without_message(cell.source)
        assert not lines, f"test cell {cell.metadata.nbgrader['grade_id']}: asserts on lines {lines} have no message"
        assert "BEGIN HIDDEN TESTS" in cell.source, \
            f"test cell {cell.metadata.nbgrader['grade_id']} has no hidden tests"


@per_assignment()
def test_every_exercise_has_mistakes_that_tests_catch(assignment: str) -> None:
    notebook = read(reference_path(assignment))
    covered = {m.cell for m in load_mistakes(assignment)}
    uncovered = [e for e in exercise_ids(notebook) if e not in covered]
    assert not uncovered, f"exercises without a mistake in tests/mistakes/{assignment}.yaml: {uncovered}"


@per_assignment()
def test_cells_follow_the_authoring_rules(assignment: str) -> None:
    notebook = read(reference_path(assignment))
    for index, cell in enumerate(notebook.cells):
        if kind(cell) in ("setup", "exercise", "test"):
            assert not any(line.lstrip().startswith(("%", "!")) for line in cell.source.splitlines()), \
                f"cell {index}: setup, exercise and test cells must not use IPython magics"
        if kind(cell) == "exercise":
            assert "### BEGIN SOLUTION" in cell.source, f"exercise cell {index} has no solution region"
