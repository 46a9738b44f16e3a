"""The code the course gives learners (cells that are neither exercise nor test) runs without a
warning: a red ``UserWarning`` box in a provided cell reads as "you broke something" to a learner.

Executing a whole module costs too much for this check, so only the cells a warning-prone given cell
needs run: the setup cell, the reference solutions (definitions only), and the given cells that
train a tensor with ``requires_grad=True`` (``float()`` of such a tensor warns; ``.item()`` does not).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import nbformat

from autograder import cells
from autograder.base import SOLUTIONS

MODULE = "01_attention"

RUNNER = r"""
import json, sys, warnings
ns = {"__name__": "__main__"}
found = []
for name, source, watched in json.load(sys.stdin):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(compile(source, name, "exec"), ns)
    if watched:
        found += [f"{name}: {w.category.__name__}: {w.message}" for w in caught]
print(json.dumps(found))
"""


def test_given_training_cells_of_module_01_emit_no_warning() -> None:
    notebook = nbformat.read(SOLUTIONS / MODULE / f"{MODULE}.ipynb", as_version=4)
    code = [(i, c) for i, c in enumerate(notebook.cells) if c.cell_type == "code"]
    setup = code[0][0]
    watched = [i for i, c in code if i != setup and not cells.is_solution(c) and not cells.is_test(c)
               and "requires_grad=True" in c.source]
    assert watched, f"{MODULE} has no given cell that trains a parameter: update this test"
    plan = [(f"cell {i}", c.source, i in watched) for i, c in code
            if i == setup or cells.is_solution(c) or i in watched]
    done = subprocess.run([sys.executable, "-c", RUNNER], input=json.dumps(plan), capture_output=True, text=True,
                          cwd=SOLUTIONS / MODULE, env={**os.environ, "MPLBACKEND": "Agg"}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    warned = json.loads(done.stdout.strip().splitlines()[-1])
    assert not warned, f"given cells of {MODULE} warn: {warned}"
