"""Authoring tools for course notebooks.

    python tools/notebooks.py clean NB.ipynb [...]   strip outputs, normalise metadata (in place)
    python tools/notebooks.py to-py NB.ipynb          write NB.py (jupytext percent format, metadata kept)
    python tools/notebooks.py from-py NB.py           write NB.ipynb from NB.py, cleaned

Only the cleaned ``.ipynb`` files are committed; the ``.py`` form is a convenience for editing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

KERNELSPEC = {"name": "vlm-course", "display_name": "Python (VLM course)", "language": "python"}
LANGUAGE_INFO = {"name": "python"}
# Cell metadata keys worth keeping; editors add others (collapsed, scrolled, execution, ...).
KEPT_CELL_KEYS = ("nbgrader", "tags", "deletable", "editable")


def clean(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Return ``notebook`` without outputs, execution counts, ids churn or editor metadata."""
    notebook.metadata = nbformat.from_dict({"kernelspec": KERNELSPEC, "language_info": LANGUAGE_INFO})
    for index, cell in enumerate(notebook.cells):
        cell.metadata = nbformat.from_dict({k: cell.metadata[k] for k in KEPT_CELL_KEYS if k in cell.metadata})
        cell.id = f"cell-{index:03d}"
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.pop("attachments", None) if cell.cell_type != "markdown" else None
        cell.source = cell.source.rstrip("\n")
    notebook.nbformat, notebook.nbformat_minor = 4, 5
    return notebook


def write(notebook: nbformat.NotebookNode, path: Path) -> None:
    nbformat.validate(notebook)
    path.write_text(nbformat.writes(notebook, version=4) + "\n", encoding="utf-8")


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in {"clean", "to-py", "from-py"}:
        print(__doc__)
        return 2
    command, paths = argv[0], [Path(p) for p in argv[1:]]
    import jupytext

    for path in paths:
        if command == "clean":
            write(clean(nbformat.read(path, as_version=4)), path)
        elif command == "to-py":
            jupytext.write(nbformat.read(path, as_version=4), path.with_suffix(".py"), fmt="py:percent")
        else:
            notebook = jupytext.read(path, fmt="py:percent")
            write(clean(nbformat.from_dict(notebook)), path.with_suffix(".ipynb"))
        print(f"{command}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
