"""Every name a test reads from a learner's object is named where the learner can read it.

A hidden test that reads ``opt.optimizer`` or ``block.fc1`` grades a contract: a learner who calls the
attribute ``inner`` or ``linear1`` writes correct code and loses the points. So each attribute a test
cell reads (``x.name``) and each key it looks up (``x["name"]``) must appear, as a word, somewhere in
the student's notebook (its text, the exercise's docstring, a visible test). Names that belong to
the libraries the tests use (torch, numpy, Python's own types) are not contracts and are skipped.
"""

from __future__ import annotations

import ast
import builtins
import math
import re
import types
import warnings

import nbformat
import numpy
import pytest
import torch
import torch.distributed
import torch.nn.functional

from autograder import cells
from autograder.base import COURSE, SOLUTIONS, assignments

LIBRARIES = (torch, torch.Tensor, torch.nn, torch.nn.Module, torch.nn.functional, torch.distributed, torch.optim,
             torch.optim.Optimizer, numpy, numpy.ndarray, dict, list, str, tuple, set, float, int)


def library_names() -> set[str]:
    """Attribute names that torch, numpy, math and Python's types already have (their submodules'
    names excepted: ``torch.optim.optimizer`` is a module, ``opt.optimizer`` a contract)."""
    names = set(dir(builtins)) | set(dir(math))
    with warnings.catch_warnings():          # getattr of a deprecated alias warns
        warnings.simplefilter("ignore")
        return names | {name for owner in LIBRARIES for name in dir(owner)
                        if not isinstance(getattr(owner, name, None), types.ModuleType)}


LIBRARY = library_names()
CODE_IN_TEXT = re.compile(r"```.*?```|`[^`]+`", re.S)


def names_read(source: str) -> set[str]:
    """Attributes loaded (``x.name``) and identifier-like string keys looked up (``x["name"]``)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            found.add(node.attr)
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) \
                and isinstance(node.slice.value, str) and node.slice.value.isidentifier():
            found.add(node.slice.value)
    return found


def unnamed_contracts(source: nbformat.NotebookNode, student: nbformat.NotebookNode) -> dict[str, set[str]]:
    """{test id: names its cell reads that the student's notebook never mentions}."""
    # Code the learner sees (exercise stubs with their docstrings, visible tests, given cells) and the
    # code in the text (`...` spans, fenced blocks): a prose word such as "optimizer" names no attribute.
    visible = "\n".join(cell.source if cell.cell_type == "code" else "\n".join(CODE_IN_TEXT.findall(cell.source))
                        for cell in student.cells)
    missing = {}
    for cell in source.cells:
        if cells.is_test(cell):
            unnamed = {name for name in names_read(cell.source) - LIBRARY
                       if not re.search(rf"\b{re.escape(name)}\b", visible)}
            if unnamed:
                missing[cells.grade_id(cell)] = unnamed
    return missing


@pytest.mark.parametrize("assignment", assignments())
def test_every_name_a_test_reads_is_named_for_the_learner(assignment: str) -> None:
    source = nbformat.read(SOLUTIONS / assignment / f"{assignment}.ipynb", as_version=4)
    student = nbformat.read(COURSE / assignment / f"{assignment}.ipynb", as_version=4)
    missing = unnamed_contracts(source, student)
    assert not missing, (f"tests read names the learner is never told (name them in the exercise's text or "
                         f"docstring): {missing}")


def test_the_check_finds_a_name_only_a_hidden_test_reads() -> None:
    test = nbformat.v4.new_code_cell(
        "out = build(3)\nassert out.shape == (3,), 'shape'\n### BEGIN HIDDEN TESTS\n"
        "assert out.head_bias is not None and out.cache['kv'] is not None, 'x'\n### END HIDDEN TESTS",
        metadata={"nbgrader": {"grade": True, "grade_id": "test_build", "points": 1, "solution": False,
                               "locked": True, "schema_version": 3, "task": False}})
    source = nbformat.v4.new_notebook(cells=[test])
    student = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("`build(n)` returns a tensor with a "
                                                                            "`cache` dict.")])
    assert unnamed_contracts(source, student) == {"test_build": {"head_bias", "kv"}}
