"""Test tooling for course notebooks: cell kinds, running graded tests outside a kernel, mistakes."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import nbformat
import yaml

from autograder.base import COURSE, REPO, SOLUTIONS, assignments
from autograder.cells import grade_id, kind, nbgrader_meta

MISTAKES = REPO / "tests" / "mistakes"


def reference_path(assignment: str) -> Path:
    return SOLUTIONS / assignment / f"{assignment}.ipynb"


def student_path(assignment: str) -> Path:
    return COURSE / assignment / f"{assignment}.ipynb"


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def graded_cells(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in notebook.cells if kind(c) == "test"]


def exercise_ids(notebook: nbformat.NotebookNode) -> list[str]:
    return [grade_id(c) for c in notebook.cells if kind(c) == "exercise"]


def asserts_without_message(source: str) -> list[int]:
    """Line numbers of ``assert`` statements that have no message."""
    tree = ast.parse(source)
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Assert) and node.msg is None]


def run_graded_tests(notebook: nbformat.NotebookNode, wanted: set[str],
                     replacements: dict[str, str] | None = None) -> dict[str, str | None]:
    """Run setup and exercise cells (with ``replacements`` of exercise sources), then the test cells
    in ``wanted``, in notebook order, in one fresh namespace. Returns {test id: error or None}."""
    replacements = replacements or {}
    namespace: dict[str, object] = {"__name__": "__main__"}
    results: dict[str, str | None] = {}
    for index, cell in enumerate(notebook.cells):
        if len(results) == len(wanted):
            break
        cell_kind, cell_id = kind(cell), grade_id(cell)
        name = f"<cell {index}: {cell_id or cell_kind}>"
        if cell_kind in ("setup", "exercise"):
            exec(compile(replacements.get(cell_id, cell.source), name, "exec"), namespace)
        elif cell_kind == "test" and cell_id in wanted:
            try:
                exec(compile(cell.source, name, "exec"), namespace)
                results[cell_id] = None
            except Exception as error:  # noqa: BLE001 - a failing test is a result here
                results[cell_id] = f"{type(error).__name__}: {error}"
    missing = wanted - set(results)
    if missing:
        raise LookupError(f"test cells not found: {sorted(missing)}")
    return results


@dataclass(frozen=True)
class Mistake:
    assignment: str
    name: str
    cell: str
    find: str
    replace: str
    fails: tuple[str, ...]
    message: str

    @property
    def test_id(self) -> str:
        return f"{self.assignment}: {self.name}"


def load_mistakes(assignment: str) -> list[Mistake]:
    path = MISTAKES / f"{assignment}.yaml"
    if not path.exists():
        return []
    entries = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    return [Mistake(assignment=assignment, name=e["name"], cell=e["cell"], find=e["find"],
                    replace=e.get("replace", ""), fails=tuple(e["fails"]), message=e["message"])
            for e in entries]


def all_mistakes() -> list[Mistake]:
    return [m for a in assignments() for m in load_mistakes(a)]
