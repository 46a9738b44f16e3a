"""Authoring tools for course notebooks.

    python tools/notebooks.py clean NB.ipynb [...]   strip outputs, normalise metadata (in place)
    python tools/notebooks.py to-py NB.ipynb          write NB.py (jupytext percent format, metadata kept)
    python tools/notebooks.py from-py NB.py           write NB.ipynb from NB.py, cleaned
    python tools/notebooks.py new NN_name             scaffold a module: its reference notebook, a stub
                                                      mistakes file and a README row (docs/authoring.md)

Only the cleaned ``.ipynb`` files are committed; the ``.py`` form is a convenience for editing.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from any folder: the course's packages must import
from autograder.base import KERNELSPEC  # noqa: E402  (one definition of the course kernel)

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


# ------------------------------------------------------------------------------------ new module
MODULE_NAME = re.compile(r"(?P<number>[0-9]{2})_(?P<topic>[a-z][a-z0-9]*(?:_[a-z0-9]+)*)")
README_ROW = re.compile(r"\| (?P<number>[0-9]{2}) \| `[0-9]{2}_")

# The skeleton's one exercise is complete but for its solution: its test already checks it against a
# trusted reference, so a solution and one mistake are all the harness still asks for, while the
# skeleton as written fails it (the reference raises, the mistakes file is empty).
EXERCISE_ID = "l2_normalize"

MOTIVATION = """\
**Where we are going.** TODO: two or three sentences: what the learner builds, why it matters, and
where the course uses it later.

You will write, in order:

1. TODO: one line per exercise.

Each exercise is a small function whose docstring states inputs, outputs and shapes. Replace
`raise NotImplementedError()` with your code, then run the test cell below it. The tests tell you
what looks wrong; your instructor's grader also runs hidden tests with other shapes.

*Expected time: TODO minutes. Runs on a laptop CPU in under TODO minutes.*"""

SETUP = """\
import torch
import torch.nn.functional as F

from vlmcourse import setup_notebook
from vlmcourse.checks import assert_close, assert_shape

clock = setup_notebook(seed=0)"""

MATH = r"""## 1. TODO: the idea

TODO: the math (LaTeX), then a small example. The placeholder exercise below, to be replaced by this
module's own, scales vectors to unit length, as CLIP does with its embeddings:

$$\hat{\mathbf{x}} = \frac{\mathbf{x}}{\lVert \mathbf{x} \rVert_2},
  \qquad \lVert \mathbf{x} \rVert_2 = \sqrt{\textstyle\sum_i x_i^2}.$$

**Exercise 1.** Implement `l2_normalize(x, dim)` without calling `F.normalize`."""

EXERCISE = r'''def l2_normalize(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Scale ``x`` so that every slice along ``dim`` has Euclidean length 1.

    Args:
        x: tensor of any shape, e.g. embeddings of shape (batch, d); no slice is all zeros.
        dim: the axis whose slices are normalised.
    Returns:
        A tensor of the same shape as ``x``: ``x`` divided by its L2 norm along ``dim``.
    """
    ### BEGIN SOLUTION
    # TODO: the reference solution; nbgrader replaces this region for learners.
    raise NotImplementedError("the reference solution of l2_normalize is not written yet")
    ### END SOLUTION'''

TEST = """\
x = torch.randn(3, 5)
got = l2_normalize(x)
assert isinstance(got, torch.Tensor), f"l2_normalize should return a tensor, got {type(got).__name__}"
assert_shape(got, (3, 5), "l2_normalize(x)")
assert_close(got, F.normalize(x, dim=-1), "l2_normalize(x)",
             known_mistakes={"divided by the norm of the whole tensor": x / x.norm(),
                             "normalised along the wrong axis": F.normalize(x, dim=0)})
### BEGIN HIDDEN TESTS
x = torch.randn(4, 6, 2, dtype=torch.float64) * 100
assert_close(l2_normalize(x, dim=1), F.normalize(x, dim=1), "l2_normalize(x, dim=1)", atol=1e-9,
             hint="normalise along the `dim` argument, not always the last axis.")
### END HIDDEN TESTS"""

DEMO_INTRO = "A small demo: three embeddings, normalised, and the cosine similarities they give."

DEMO = r"""embeddings = torch.tensor([[3.0, 4.0], [1.0, 1.0], [-2.0, 0.0]])
unit = l2_normalize(embeddings)
print("unit vectors:\n", unit)
print("lengths:", unit.norm(dim=-1))
print("cosine similarities:\n", unit @ unit.T)"""

WHAT_YOU_SEE = """\
**What you should see.** The unit vectors (0.6, 0.8), (0.7071, 0.7071) and (-1, 0), each of length 1,
and cosine similarities of 1 on the diagonal. TODO: after every demo and every figure, a few
sentences on what the learner should notice.

## Summary

- TODO: three to five lines, the ideas to keep."""

# The semicolon keeps Jupyter from echoing the line that report() has just printed.
CLOSING = "clock.report();"

MISTAKES_STUB = """\
# Plausible wrong answers for {name}: each must make a graded test fail with a message naming it.
# At least one per exercise (docs/authoring.md, "The mistakes file"). For example:
#
# - name: divided by the norm of the whole tensor
#   cell: l2_normalize
#   find: "x.norm(dim=dim, keepdim=True)"
#   replace: "x.norm()"
#   message: "whole tensor"
[]
"""


def _nbgrader(grade_id: str, *, solution: bool, points: int | None = None) -> dict:
    meta = {"grade": not solution, "grade_id": grade_id, "locked": not solution, "schema_version": 3,
            "solution": solution, "task": False}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def skeleton(name: str) -> nbformat.NotebookNode:
    """The reference notebook of a new module ``name`` (``NN_topic``), cleaned."""
    number, topic = MODULE_NAME.fullmatch(name).group("number", "topic")
    title = topic.replace("_", " ").capitalize()
    markdown, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    cells = [
        markdown(f"# {number} · {title}\n\n{MOTIVATION}"),
        code(SETUP, metadata={"tags": ["setup"]}),
        markdown(MATH),
        code(EXERCISE, metadata=_nbgrader(EXERCISE_ID, solution=True)),
        code(TEST, metadata=_nbgrader(f"test_{EXERCISE_ID}", solution=False, points=2)),
        markdown(DEMO_INTRO),
        code(DEMO),
        markdown(WHAT_YOU_SEE),
        code(CLOSING),
    ]
    return clean(nbformat.v4.new_notebook(cells=cells))


def readme_with_row(readme: str, name: str) -> str:
    """``readme`` with a placeholder row for module ``name`` in its modules table, in module order."""
    lines = readme.split("\n")
    rows = [i for i, line in enumerate(lines) if README_ROW.match(line)]
    if not rows:
        raise ValueError("README.md has no modules table (rows like '| 01 | `01_attention` | ...')")
    earlier = [i for i in rows if README_ROW.match(lines[i]).group("number") < name[:2]]
    at = earlier[-1] + 1 if earlier else rows[0]
    row = f"| {name[:2]} | `{name}` | TODO: what you build | TODO min | TODO |"
    return "\n".join(lines[:at] + [row] + lines[at:])


def new_module(name: str, repo: Path = REPO) -> list[Path]:
    """Write the skeleton of module ``name`` into ``repo`` and return the paths written.

    Refuses (ValueError, nothing written) a malformed name, an existing module, and a number that
    another module has: assignments are ordered by name, so the number is the module's place.
    """
    if not MODULE_NAME.fullmatch(name):
        raise ValueError(f"'{name}' is not a module name: two digits, an underscore, then lowercase "
                         "words joined by underscores (e.g. 17_vision_adapters)")
    notebook = repo / "solutions" / name / f"{name}.ipynb"
    mistakes = repo / "tests" / "mistakes" / f"{name}.yaml"
    existing = [p for p in (notebook.parent, repo / "course" / name, mistakes) if p.exists()]
    if existing:
        raise ValueError(f"module {name} exists already: "
                         + ", ".join(str(p.relative_to(repo)) for p in existing))
    taken = sorted(p.name for p in (repo / "solutions").glob(f"{name[:2]}_*"))
    if taken:
        raise ValueError(f"module number {name[:2]} is taken by {', '.join(taken)}")
    readme = repo / "README.md"
    text = readme_with_row(readme.read_text(encoding="utf-8"), name)
    notebook.parent.mkdir(parents=True)
    write(skeleton(name), notebook)
    mistakes.write_text(MISTAKES_STUB.format(name=name), encoding="utf-8")
    readme.write_text(text, encoding="utf-8")
    return [notebook, mistakes, readme]


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "new":
        try:
            written = new_module(argv[1])
        except ValueError as error:
            print(f"new: {error}", file=sys.stderr)
            return 1
        for path in written:
            print(f"new: wrote {path.relative_to(REPO)}")
        print("new: next, write the exercise's solution and a mistake (docs/authoring.md, steps 2-4)")
        return 0
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
