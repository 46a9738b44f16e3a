"""Test tooling for course notebooks: cell kinds, running graded tests outside a kernel, mistakes."""

from __future__ import annotations

import ast
import copy
import functools
import hashlib
import io
import linecache
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path

import nbformat
import yaml

from autograder.base import COURSE, REPO, SOLUTIONS, assignments
from autograder.cells import grade_id, kind

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


def compile_cell(source: str, name: str):
    """Compile a cell and keep its source where ``inspect.getsource`` finds it, as IPython does."""
    linecache.cache[name] = (len(source), None, source.splitlines(keepends=True), name)
    return compile(source, name, "exec")


_launched: dict[str, list] = {}
_CLASS_TRACKER_ID = re.compile(rb"\x8c [0-9a-f]{32}")


def remembered_launch(launch):
    """``launch`` that starts each distinct job once per test process. A job is what the ranks receive
    (the function pickled by value, with the exercise code it calls, and its arguments), so a mistake
    that changes what runs on the ranks starts its own ranks; the measurements that the learner's code
    never touches (19's memory and timing runs) are made once instead of once per mistake."""
    import cloudpickle

    @functools.wraps(launch)
    def run_once(fn, nproc: int = 2, **options):
        job = cloudpickle.dumps((fn, nproc, sorted(options.items())))
        # cloudpickle names each class defined in a notebook by a fresh uuid4: the same class, executed
        # again, must give the same job.
        key = hashlib.sha256(_CLASS_TRACKER_ID.sub(b"\x8c " + b"0" * 32, job)).hexdigest()
        if key not in _launched:
            _launched[key] = launch(fn, nproc, **options)
        return copy.deepcopy(_launched[key])
    return run_once


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
            exec(compile_cell(replacements.get(cell_id, cell.source), name), namespace)
            if cell_kind == "setup" and "launch" in namespace and not hasattr(namespace["launch"], "__wrapped__"):
                namespace["launch"] = remembered_launch(namespace["launch"])
        elif cell_kind == "test" and cell_id in wanted:
            try:
                exec(compile_cell(cell.source, name), namespace)
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


REQUIRED_KEYS = ("name", "cell", "find", "message")
OPTIONAL_KEYS = ("replace", "fails")


class MistakesFileError(ValueError):
    """A mistakes file that breaks the rules of docs/authoring.md ("The mistakes file")."""


def own_test(notebook: nbformat.NotebookNode, exercise: str) -> str:
    """The grade id of the exercise's own test: the first graded test cell after the exercise cell
    ``exercise``, in notebook order (other exercise cells may sit in between)."""
    cells = notebook.cells
    index = next((i for i, c in enumerate(cells) if kind(c) == "exercise" and grade_id(c) == exercise), None)
    if index is None:
        raise LookupError(f"no exercise cell '{exercise}'")
    test = next((grade_id(c) for c in cells[index + 1:] if kind(c) == "test"), None)
    if test is None:
        raise LookupError(f"no graded test cell after the exercise cell '{exercise}'")
    return test


def comment_spans(source: str) -> list[tuple[int, int]]:
    """Character ranges [start, end) of the ``#`` comments of the Python ``source``."""
    line_starts = [0]
    for line in io.StringIO(source).readlines():   # the lines tokenize counts rows by
        line_starts.append(line_starts[-1] + len(line))

    def offset(row: int, column: int) -> int:
        return line_starts[row - 1] + column

    return [(offset(*token.start), offset(*token.end))
            for token in tokenize.generate_tokens(io.StringIO(source).readline)
            if token.type == tokenize.COMMENT]


def find_touches_a_comment(source: str, find: str) -> str | None:
    """The first comment that an occurrence of ``find`` in ``source`` overlaps, or None."""
    spans = comment_spans(source)
    start = source.find(find)
    while find and start != -1:
        end = start + len(find)
        for comment_start, comment_end in spans:
            if comment_start < end and start < comment_end:
                return source[comment_start:comment_end]
        start = source.find(find, start + 1)
    return None


def parse_mistakes(path: Path, notebook: nbformat.NotebookNode, assignment: str) -> list[Mistake]:
    """The mistakes of the file ``path`` for the reference ``notebook``; MistakesFileError names the file
    and the entry that breaks a rule: a missing or unknown key, a wrong type, an unknown exercise cell,
    a ``find`` that overlaps a comment (rewording a comment must never break a test)."""
    shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    entries = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    if not isinstance(entries, list):
        raise MistakesFileError(f"{shown}: expected a list of mistakes, got {type(entries).__name__}")
    exercises = {grade_id(c): c.source for c in notebook.cells if kind(c) == "exercise"}
    mistakes = []
    for number, entry in enumerate(entries, start=1):
        label = f"{shown}, entry {number}"
        if not isinstance(entry, dict):
            raise MistakesFileError(f"{label}: expected a mapping of {', '.join(REQUIRED_KEYS + OPTIONAL_KEYS)}")
        if isinstance(entry.get("name"), str):
            label += f" ('{entry['name']}')"
        unknown = sorted(set(entry) - set(REQUIRED_KEYS + OPTIONAL_KEYS), key=str)
        if unknown:
            raise MistakesFileError(f"{label}: unknown key(s) {unknown}; allowed: "
                                    f"{', '.join(REQUIRED_KEYS + OPTIONAL_KEYS)}")
        missing = [key for key in REQUIRED_KEYS if key not in entry]
        if missing:
            raise MistakesFileError(f"{label}: missing key(s) {missing}")
        for key in REQUIRED_KEYS + ("replace",):
            if key in entry and not isinstance(entry[key], str):
                raise MistakesFileError(f"{label}: '{key}' must be a string, got {type(entry[key]).__name__}")
        if not entry["find"]:
            raise MistakesFileError(f"{label}: 'find' is empty")
        if entry["cell"] not in exercises:
            raise MistakesFileError(f"{label}: no exercise cell '{entry['cell']}' in the reference notebook "
                                    f"(exercises: {', '.join(exercises)})")
        comment = find_touches_a_comment(exercises[entry["cell"]], entry["find"])
        if comment is not None:
            raise MistakesFileError(f"{label}: 'find' overlaps the comment {comment!r} of cell "
                                    f"'{entry['cell']}'; match code only")
        if "fails" in entry:
            fails = entry["fails"]
            if not (isinstance(fails, list) and fails and all(isinstance(f, str) for f in fails)):
                raise MistakesFileError(f"{label}: 'fails' must be a non-empty list of test grade ids")
        else:
            try:
                fails = [own_test(notebook, entry["cell"])]
            except LookupError as error:
                raise MistakesFileError(f"{label}: 'fails' omitted and {error}") from None
        mistakes.append(Mistake(assignment=assignment, name=entry["name"], cell=entry["cell"],
                                find=entry["find"], replace=entry.get("replace", ""), fails=tuple(fails),
                                message=entry["message"]))
    return mistakes


@functools.cache
def load_mistakes(assignment: str) -> tuple[Mistake, ...]:
    """The mistakes of ``assignment``, parsed once per test process (collection asks for them often)."""
    path = MISTAKES / f"{assignment}.yaml"
    if not path.exists():
        return ()
    return tuple(parse_mistakes(path, read(reference_path(assignment)), assignment))


def all_mistakes() -> list[Mistake]:
    return [m for a in assignments() for m in load_mistakes(a)]
