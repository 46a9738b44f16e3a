"""Plausible wrong answers must lose points, with a message that names what looks wrong.

Each mistake in tests/mistakes/<assignment>.yaml is substituted into the reference solution; the
graded tests that follow it are run (setup + exercise + test cells, outside a kernel) and at least
one of its `fails` tests (by default the exercise's own test, see harness.own_test) must fail with a
message containing the expected words. The rules of the file itself: tests/course/test_mistakes_rules.py.
"""

from __future__ import annotations

import pytest

from autograder.base import assignments
from harness import all_mistakes, exercise_ids, load_mistakes, read, reference_path, run_graded_tests

MISTAKES = all_mistakes()


@pytest.mark.parametrize("assignment", [a for a in assignments() if load_mistakes(a)])
def test_reference_passes_the_tests_the_mistakes_use(assignment: str) -> None:
    notebook = read(reference_path(assignment))
    wanted = {test for m in load_mistakes(assignment) for test in m.fails}
    failures = {k: v for k, v in run_graded_tests(notebook, wanted).items() if v is not None}
    assert not failures, f"the reference solution fails its own tests outside a kernel: {failures}"


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m.test_id for m in MISTAKES])
def test_mistake_is_caught_with_a_helpful_message(mistake) -> None:
    notebook = read(reference_path(mistake.assignment))
    assert mistake.cell in exercise_ids(notebook), f"no exercise cell '{mistake.cell}'"
    source = next(c.source for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade_id") == mistake.cell)
    assert source.count(mistake.find) == 1, \
        f"'{mistake.find}' must occur exactly once in {mistake.cell} (found {source.count(mistake.find)})"
    wrong = source.replace(mistake.find, mistake.replace)
    results = run_graded_tests(notebook, set(mistake.fails), {mistake.cell: wrong})
    failed = {test: error for test, error in results.items() if error is not None}
    assert failed, f"no test in {list(mistake.fails)} fails for the mistake '{mistake.name}'"
    assert any(mistake.message.lower() in error.lower() for error in failed.values()), \
        f"the failure message does not mention '{mistake.message}': {failed}"
