"""A learner's view of a notebook: run it with the course kernel and say, test by test, what passed.

Unlike grading (:mod:`autograder.grading`) this runs in the learner's own environment, with plain
nbclient and no sandbox: it answers "did my code pass the visible tests?", not "what is my grade?".
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

from . import cells
from .base import KERNEL

CELL_TIMEOUT = 600


@dataclass
class VisibleTestResult:
    grade_id: str
    points: float
    max_points: float
    error: str | None


def execute_with_nbclient(path: Path, timeout: int = CELL_TIMEOUT) -> tuple[nbformat.NotebookNode, float]:
    """Execute a copy of the notebook at ``path`` in its own folder; errors are kept, not raised.
    Returns the executed notebook and the wall seconds it took."""
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=timeout, kernel_name=KERNEL, allow_errors=True,
                            resources={"metadata": {"path": str(path.parent.resolve())}})
    start = time.perf_counter()
    client.execute()
    return notebook, time.perf_counter() - start


def error_of(cell: nbformat.NotebookNode) -> str | None:
    """The error a cell raised, as ``Name: message``, or the stderr it printed; None if clean."""
    for output in cell.get("outputs", []):
        if output.output_type == "error":
            return f"{output.ename}: {output.evalue}"
    for output in cell.get("outputs", []):
        if output.output_type == "stream" and output.name == "stderr":
            return "the cell wrote to stderr (graded cells must not): " + output.text.strip()[:300]
    return None


def graded_results(notebook: nbformat.NotebookNode) -> list[VisibleTestResult]:
    """Points of each graded test cell of an executed notebook, the way nbgrader counts them."""
    from nbgrader.utils import determine_grade

    results = []
    for cell in notebook.cells:
        if cells.is_test(cell):
            points, max_points = determine_grade(cell)
            results.append(VisibleTestResult(cells.grade_id(cell), float(points or 0), max_points, error_of(cell)))
    return results


def run_notebook(path: Path) -> int:
    """``cli run``: execute, list the cells that raised, print the time; 1 if any cell raised."""
    notebook, seconds = execute_with_nbclient(path)
    failures = [(i, error_of(c)) for i, c in enumerate(notebook.cells) if c.cell_type == "code" and
                any(o.output_type == "error" for o in c.get("outputs", []))]
    for index, error in failures:
        print(f"cell {index}: {error}")
    print(f"{path.name}: executed in {seconds:.1f} s, {len(failures)} cell(s) with errors")
    return 1 if failures else 0


def check_notebook(path: Path) -> int:
    """``cli check``: execute the learner's notebook and print, test by test, what passed and why not."""
    print(f"Running {path.name} (this executes the whole notebook) ...", flush=True)
    notebook, seconds = execute_with_nbclient(path)
    results = graded_results(notebook)
    if not results:
        print("No graded tests found: is this a course notebook?")
        return 2
    width = max(len(r.grade_id) for r in results)
    for result in results:
        mark = "PASS" if result.error is None else "FAIL"
        print(f"  {mark}  {result.grade_id:<{width}}  {result.points:g}/{result.max_points:g}")
        if result.error:
            print(f"        {result.error}")
    score = sum(r.points for r in results)
    total = sum(r.max_points for r in results)
    print(f"Score on the visible tests: {score:g}/{total:g} (executed in {seconds:.0f} s). "
          "Hidden tests may check more when your instructor grades.")
    return 0 if score == total else 1
