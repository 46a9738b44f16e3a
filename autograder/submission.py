"""Read a submission and rebuild it on the trusted template before anything runs.

nbgrader trusts the structure of the submitted notebook: a deleted test cell is silently not graded,
a duplicated one aborts with a misleading message, flipped metadata changes what is graded. Here the
graded structure always comes from the source notebook (``solutions/``); from the student we take
only their code: the solution cells (matched by ``grade_id``) and the cells they added.

Rules (each one leaves a note in the grades CSV):

- the notebook is found by name, else the only ``.ipynb`` of the submission is used (renamed);
- unreadable JSON or a file that is not a notebook: ungradable;
- every test cell and locked cell is replaced by the source version (hidden tests included),
  metadata included; an edited test cell is restored; a duplicated one is kept once; a deleted one
  is re-inserted after the cell that precedes it in the source; a test cell whose metadata was
  removed is recognised by its text;
- every setup cell (tag ``setup``) is replaced by the source version, in place when the student
  kept the same number of setup cells, else re-inserted at its source position;
- a solution cell keeps the student's code under the source metadata; a missing one is replaced
  by the release stub (its tests then fail), a duplicate loses its grading metadata;
- cells with unknown grading metadata become ordinary cells; outputs are cleared.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .base import KERNEL, KERNEL_DISPLAY_NAME
from .cells import GRADING_KEYS, is_locked, is_setup, is_solution
from .cells import nbgrader_meta as meta
from .files import UnreadableFile, read_regular_file, shown_name


class Ungradable(Exception):
    """The submission cannot be graded at all (the message says why)."""


@dataclass
class Canonical:
    notebook: nbformat.NotebookNode
    notes: list[str] = field(default_factory=list)
    setup: set[int] = field(default_factory=set)        # indices of trusted setup cells
    tests: dict[int, str] = field(default_factory=dict)  # index of each test cell -> grade_id
    student_sources: list[str] = field(default_factory=list)


def _norm(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


# A notebook of this course is well under a megabyte without outputs; anything far larger is not one.
MAX_NOTEBOOK_BYTES = 64 * 2**20


def find_notebook(folder: Path, assignment: str) -> tuple[Path, list[str]]:
    """The notebook to grade in a submission folder, and notes about how it was found.

    Looks at names only (``lexists``): whether the entry is a file the grader may read is
    ``read_notebook``'s decision, so a link or a FIFO named like the notebook is refused, not skipped."""
    expected = folder / f"{assignment}.ipynb"
    if os.path.lexists(expected):
        return expected, []
    candidates = sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith("."))
    if len(candidates) == 1:
        return candidates[0], [f"notebook submitted as {shown_name(candidates[0])}, graded as {expected.name}"]
    if not candidates:
        raise Ungradable(f"no notebook in the submission (expected {expected.name})")
    raise Ungradable(f"no {expected.name} and several other notebooks: "
                     + ", ".join(shown_name(p) for p in candidates))


def read_notebook(path: Path) -> nbformat.NotebookNode:
    try:
        text = read_regular_file(path, MAX_NOTEBOOK_BYTES).decode("utf-8")
    except UnreadableFile as error:
        raise Ungradable(f"{error}: submit the notebook itself") from None
    except UnicodeDecodeError as error:
        raise Ungradable(f"{shown_name(path)} is not UTF-8 text ({error.reason})") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise Ungradable(f"malformed notebook JSON in {shown_name(path)}: {error.msg} at line {error.lineno}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("cells"), list):
        raise Ungradable(f"{shown_name(path)} is JSON but not a notebook (no list of cells)")
    try:
        notebook = nbformat.reads(text, as_version=4)
    except Exception as error:  # noqa: BLE001 - any reader failure makes it ungradable
        raise Ungradable(f"{shown_name(path)} is not a readable notebook: {error}") from None
    for cell in notebook.cells:
        if not isinstance(cell.get("source", ""), str) or cell.get("cell_type") not in ("code", "markdown", "raw"):
            raise Ungradable(f"{shown_name(path)} has a malformed cell")
    return notebook


def _fresh(cell) -> nbformat.NotebookNode:
    """A copy of a source cell, without outputs."""
    copy = nbformat.from_dict(json.loads(json.dumps(cell)))
    if copy.cell_type == "code":
        copy.outputs, copy.execution_count = [], None
    copy.pop("id", None)
    return copy


def canonicalize(student: nbformat.NotebookNode, source: nbformat.NotebookNode,
                 release: nbformat.NotebookNode) -> Canonical:
    """Rebuild ``student`` on the structure of ``source`` (see the module docstring)."""
    notes: list[str] = []
    source_by_id = {meta(c)["grade_id"]: c for c in source.cells if meta(c).get("grade_id")}
    release_by_id = {meta(c)["grade_id"]: c for c in release.cells if meta(c).get("grade_id")}
    locked_ids = [gid for gid, c in source_by_id.items() if is_locked(c)]
    release_text = {_norm(release_by_id[g].source): g for g in locked_ids if g in release_by_id}
    source_setup = [c for c in source.cells if is_setup(c)]
    student_setup = [i for i, c in enumerate(student.cells) if is_setup(c)]
    in_place_setup = len(student_setup) == len(source_setup)

    cells: list[nbformat.NotebookNode] = []
    seen: set[str] = set()
    setup_seen = 0
    student_sources: list[str] = []
    for cell in student.cells:
        gid = meta(cell).get("grade_id")
        if cell.get("cell_type") == "code" and not gid and _norm(cell.source) in release_text:
            gid = release_text[_norm(cell.source)]          # a test cell whose metadata was stripped
            if gid not in seen:
                notes.append(f"grading metadata of {gid} was removed; restored")
        if is_setup(cell) and not (gid and gid in source_by_id):
            if in_place_setup:
                cells.append(_fresh(source_setup[setup_seen]))
                if _norm(cell.source) != _norm(source_setup[setup_seen].source):
                    notes.append(f"setup cell {setup_seen + 1} was edited; original restored")
                setup_seen += 1
                continue
            cell = _fresh(cell)
            cell.metadata["tags"] = [t for t in cell.metadata.get("tags", []) if t != "setup"]
        if gid and gid in source_by_id:
            original = source_by_id[gid]
            if gid in seen:
                notes.append(f"duplicate of {gid} ignored")
                if is_solution(original):          # keep the student's code, not its grading role
                    extra = _fresh(cell)
                    extra.metadata.pop("nbgrader", None)
                    cells.append(extra)
                    student_sources.append(cell.source)
                continue
            seen.add(gid)
            if is_locked(original):
                if gid in release_by_id and meta(cell).get("grade_id") and \
                        _norm(cell.source) not in (_norm(release_by_id[gid].source), _norm(original.source)):
                    notes.append(f"test cell {gid} was edited; original restored")
                if meta(cell) and any(meta(cell).get(k) != meta(original).get(k) for k in GRADING_KEYS):
                    notes.append(f"grading metadata of {gid} was changed; restored")
                cells.append(_fresh(original))
            else:
                fixed = _fresh(original) if original.cell_type == cell.get("cell_type") else _fresh(original)
                fixed.source = cell.source
                if any(meta(cell).get(k) != meta(original).get(k) for k in GRADING_KEYS):
                    notes.append(f"grading metadata of {gid} was changed; restored")
                cells.append(fixed)
                student_sources.append(cell.source)
            continue
        cell = _fresh(cell)
        if meta(cell):
            notes.append(f"unknown grading metadata ({meta(cell).get('grade_id') or 'no id'}) removed")
            cell.metadata.pop("nbgrader", None)
        if cell.cell_type == "code":
            student_sources.append(cell.source)
        cells.append(cell)

    # Re-insert what is missing, after the closest preceding source cell that is present.
    def anchor_index(source_index: int) -> int:
        for previous in range(source_index - 1, -1, -1):
            gid = meta(source.cells[previous]).get("grade_id")
            for i, c in enumerate(cells):
                if gid and meta(c).get("grade_id") == gid:
                    return i + 1
        return 0

    for source_index, original in enumerate(source.cells):
        gid = meta(original).get("grade_id")
        if gid and gid not in seen:
            if is_locked(original):
                notes.append(f"test cell {gid} was deleted; restored")
                cells.insert(anchor_index(source_index), _fresh(original))
            elif is_solution(original):
                notes.append(f"solution cell {gid} is missing; graded as unanswered")
                cells.insert(anchor_index(source_index), _fresh(release_by_id.get(gid, original)))
            seen.add(gid)
        elif is_setup(original) and not in_place_setup:
            position = 0
            for later in source.cells[source_index + 1:]:
                later_id = meta(later).get("grade_id")
                matches = [i for i, c in enumerate(cells) if later_id and meta(c).get("grade_id") == later_id]
                if matches:
                    position = matches[0]
                    break
            else:
                position = len(cells)
            cells.insert(position, _fresh(original))
    if not in_place_setup:
        notes.append(f"{len(student_setup)} setup cells found, {len(source_setup)} expected; originals re-inserted")

    notebook = nbformat.v4.new_notebook()
    notebook.metadata = {"kernelspec": source.metadata.get("kernelspec", {"name": KERNEL, "language": "python",
                                                                          "display_name": KERNEL_DISPLAY_NAME}),
                         "language_info": {"name": "python"}}
    for number, cell in enumerate(cells):
        cell["id"] = f"cell-{number}"
    notebook.cells = cells
    canonical = Canonical(notebook=notebook, notes=notes, student_sources=student_sources)
    source_setup_texts = [_norm(c.source) for c in source_setup]
    for index, cell in enumerate(cells):
        if is_setup(cell) and _norm(cell.source) in source_setup_texts:
            canonical.setup.add(index)
        gid = meta(cell).get("grade_id")
        if gid and meta(cell).get("grade") and not meta(cell).get("solution"):
            canonical.tests[index] = gid
    return canonical
