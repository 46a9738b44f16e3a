"""Bad submissions, each a small edit of module 01's notebooks, with the outcome the grader must give.

To keep the catalogue fast, it grades a *mini* assignment cut from module 01: its setup cell and five
exercises with their test cells (softmax 2, masked_softmax 3, scaled_dot_product_attention 4,
valid_lens_to_mask 2, attention_memory_bytes 2 points: 13 in all); no plots, no training.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from autograder.cells import grade_id, is_setup

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "solutions" / "01_attention" / "01_attention.ipynb"
ASSIGNMENT = "mini"
EXERCISES = ["softmax", "masked_softmax", "scaled_dot_product_attention", "valid_lens_to_mask",
             "attention_memory_bytes"]
POINTS = {"test_softmax": 2, "test_masked_softmax": 3, "test_scaled_dot_product_attention": 4,
          "test_valid_lens_to_mask": 2, "test_attention_memory_bytes": 2}
FULL = sum(POINTS.values())


def build_source(folder: Path) -> Path:
    """Write the mini assignment's source notebook (solutions + hidden tests) under ``folder``."""
    module = nbformat.read(MODULE, as_version=4)
    keep = set(EXERCISES) | {f"test_{e}" for e in EXERCISES}
    cells = [c for c in module.cells if is_setup(c) or grade_id(c) in keep]
    notebook = nbformat.v4.new_notebook(cells=cells, metadata=module.metadata)
    path = folder / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    shutil.copy(MODULE.with_name("trusted_checks.py"), path.parent)   # the grader's own checks of 01
    return path


# ------------------------------------------------------------------------------- notebook edits
def cell_of(notebook, gid: str):
    return next(c for c in notebook.cells if grade_id(c) == gid)


def replace_body(notebook, gid: str, body: str, keep_def: bool = True):
    """Replace the solution region of exercise ``gid`` (reference notebook) by ``body``."""
    cell = cell_of(notebook, gid)
    cell.source = re.sub(r"### BEGIN SOLUTION\n.*?### END SOLUTION", "### BEGIN SOLUTION\n" + body
                         + "\n    ### END SOLUTION", cell.source, flags=re.S)
    return notebook


def prepend(notebook, gid: str, code: str):
    cell = cell_of(notebook, gid)
    cell.source = code + "\n" + cell.source
    return notebook


WRONG_SOFTMAX = "    return x.exp() / x.exp().sum()   # wrong: sums over all axes"
WRONG_MEMORY = "    return n_tokens * layers * heads * bytes_per_element   # wrong: not squared"

PROBES = r'''
import os as _os
def _probe(label, action):
    try:
        action()
        print("LEAKED", label)
    except Exception as error:
        print("BLOCKED", label, type(error).__name__)
'''


@dataclass
class Case:
    name: str
    what: str
    make: Callable[[nbformat.NotebookNode, nbformat.NotebookNode, Path], None]  # (reference, blank, folder)
    status: str | tuple[str, ...]
    score: float | None                     # None: no score (ungradable)
    reason: str = ""                        # must occur in reason
    flags: str = ""                         # must occur in flags
    notes: str = ""                         # must occur in notes
    outputs_must: list[str] = field(default_factory=list)     # substrings of the executed notebook's outputs
    outputs_must_not: list[str] = field(default_factory=list)


def write(notebook, folder: Path, name: str = f"{ASSIGNMENT}.ipynb") -> None:
    nbformat.write(notebook, folder / name)


def honest(reference, blank, folder):
    write(reference, folder)


def untouched(reference, blank, folder):
    write(blank, folder)


def one_mistake(reference, blank, folder):
    write(replace_body(reference, "attention_memory_bytes", WRONG_MEMORY), folder)


def wrong_axis(reference, blank, folder):
    # a classic mistake the softmax test knows by name (report/mistakes.csv counts it)
    body = "    exp = (x - x.amax(dim=1, keepdim=True)).exp()\n    return exp / exp.sum(dim=1, keepdim=True)"
    write(replace_body(reference, "softmax", body), folder)


def malformed_json(reference, blank, folder):
    (folder / f"{ASSIGNMENT}.ipynb").write_text(json.dumps(reference)[:-40], encoding="utf-8")


def wrong_file_name(reference, blank, folder):
    write(reference, folder, "Mini (1) - copy.ipynb")


def deleted_test(reference, blank, folder):
    reference.cells = [c for c in reference.cells if grade_id(c) != "test_softmax"]
    write(reference, folder)


def duplicated_test(reference, blank, folder):
    index = next(i for i, c in enumerate(reference.cells) if grade_id(c) == "test_softmax")
    reference.cells.insert(index + 1, nbformat.from_dict(json.loads(json.dumps(reference.cells[index]))))
    for cell in reference.cells:
        cell.pop("id", None)
    write(reference, folder)


def edited_test(reference, blank, folder):
    replace_body(reference, "softmax", WRONG_SOFTMAX)
    cell_of(reference, "test_softmax").source = "pass  # tests? what tests?"
    write(reference, folder)


def flipped_metadata(reference, blank, folder):
    replace_body(reference, "softmax", WRONG_SOFTMAX)
    meta = cell_of(reference, "test_softmax").metadata.nbgrader
    meta.update(grade=False, solution=True, locked=False)          # the test becomes a "solution" cell
    cell_of(reference, "test_softmax").source = "pass"
    cell_of(reference, "softmax").metadata.nbgrader.update(grade=True, points=100)
    write(reference, folder)


def stripped_metadata(reference, blank, folder):
    replace_body(reference, "softmax", WRONG_SOFTMAX)
    cell = cell_of(blank, "test_softmax")        # the release text of the test, metadata removed
    target = cell_of(reference, "test_softmax")
    target.source = cell.source
    target.metadata.pop("nbgrader")
    write(reference, folder)


def infinite_loop(reference, blank, folder):
    write(replace_body(reference, "attention_memory_bytes", "    while True:\n        pass"), folder)


def ignores_sigint(reference, blank, folder):
    write(replace_body(reference, "attention_memory_bytes", "    import signal, time\n"
                       "    signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                       "    while True:\n        time.sleep(0.01)"), folder)


def exits(reference, blank, folder):
    write(replace_body(reference, "valid_lens_to_mask", "    import os\n    os._exit(3)"), folder)


def memory_bomb(reference, blank, folder):
    write(replace_body(reference, "attention_memory_bytes", "    hog = []\n    while True:\n"
                       "        hog.append(bytearray(2 ** 27))   # 128 MiB at a time, touched\n"
                       "        hog[-1][::4096] = b'x' * len(hog[-1][::4096])"), folder)


def fork_bomb(reference, blank, folder):
    write(replace_body(reference, "attention_memory_bytes", "    import os\n    while True:\n        os.fork()"),
          folder)


def output_flood(reference, blank, folder):
    write(replace_body(reference, "attention_memory_bytes", "    while True:\n        print('spam ' * 20000)"),
          folder)


def monkeypatched_checks(reference, blank, folder):
    replace_body(reference, "softmax", WRONG_SOFTMAX)
    prepend(reference, "softmax", "import numpy as np\n"
            "torch.allclose = lambda *a, **k: True\nnp.allclose = lambda *a, **k: True\n"
            "torch.equal = lambda *a, **k: True\nassert_close = lambda *a, **k: None\n"
            "import vlmcourse.checks as _c\n_c.assert_close = lambda *a, **k: None\n"
            "torch.softmax = lambda x, dim=-1, **k: x.exp() / x.exp().sum()")
    write(reference, folder)


def patch_at_call_time(reference, blank, folder):
    # the patch happens inside the student's function, i.e. during the test cell
    write(replace_body(reference, "softmax", "    import torch as _t\n"
                       "    _t.softmax = lambda x, dim=-1, **k: x.exp() / x.exp().sum()\n" + WRONG_SOFTMAX), folder)


def strips_asserts(reference, blank, folder):
    replace_body(reference, "attention_memory_bytes", WRONG_MEMORY)
    prepend(reference, "softmax", "import ast\n"
            "class _Strip(ast.NodeTransformer):\n"
            "    def visit_Assert(self, node):\n        return ast.Pass()\n"
            "    def visit_Expr(self, node):\n"
            "        if isinstance(node.value, ast.Call) and getattr(node.value.func, 'id', '').startswith('assert'):\n"
            "            return ast.Pass()\n        return node\n"
            "get_ipython().ast_transformers.append(_Strip())\n"
            "get_ipython().set_custom_exc((AssertionError,), lambda *a, **k: None)")
    write(reference, folder)


def always_equal(reference, blank, folder):
    write(replace_body(reference, "attention_memory_bytes",
                       "    class Anything(int):\n"
                       "        def __eq__(self, other): return True\n"
                       "        def __ne__(self, other): return False\n"
                       "        def __truediv__(self, other): return 768.0\n"
                       "        __hash__ = int.__hash__\n"
                       "    return Anything(1)"), folder)


CORRECT_SOFTMAX = ("    shifted = x - x.amax(dim=dim, keepdim=True)\n    exp = shifted.exp()\n"
                   "    return exp / exp.sum(dim=dim, keepdim=True)")


def warns_but_correct(reference, blank, folder):
    # right answers whose code emits a warning: nbgrader alone gives 0 to any test cell with stderr
    write(replace_body(reference, "softmax", "    import warnings\n"
                       "    warnings.warn('softmax: a harmless note', UserWarning)\n" + CORRECT_SOFTMAX), folder)


def displayhook_then_fail(reference, blank, folder):
    # shows a number as the test cell's result (nbgrader alone reads it as partial credit), then is wrong
    write(replace_body(reference, "attention_memory_bytes", "    import sys\n    sys.displayhook(2.0)\n"
                       + WRONG_MEMORY), folder)


def fools_the_checks(reference, blank, folder):
    # Patches a data constant of vlmcourse.checks while the test runs and undoes it itself: the next
    # assert_close after each call of softmax passes, and the guard finds nothing changed after the test.
    replace_body(reference, "softmax", "    _c._tensor_sub = _fooled\n" + WRONG_SOFTMAX)
    prepend(reference, "softmax", "import vlmcourse.checks as _c\n_real_sub = _c._tensor_sub\n"
            "def _fooled(a, b):\n    _c._tensor_sub = _real_sub\n    return a * 0\n")
    write(reference, folder)


def calls_the_reference(reference, blank, folder):
    write(replace_body(reference, "softmax", "    return torch.softmax(x, dim)"), folder)


def reference_by_computed_name(reference, blank, folder):
    write(replace_body(reference, "softmax", '    return getattr(torch, "soft" + "max")(x, dim)'), folder)


def fills_its_disk(reference, blank, folder):
    # writes until each writable place is full: its own bounded filesystems fill, nobody else's disk
    prepend(reference, "softmax", "import os\n"
            "for _label, _where in (('home', os.environ['HOME']), ('TMPDIR', os.environ['TMPDIR']),\n"
            "                       ('shm', '/dev/shm'), ('/tmp', '/tmp')):\n"
            "    _written = 0\n"
            "    try:\n"
            "        for _i in range(40):\n"
            "            with open(f'{_where}/fill{_i}', 'wb') as _f:\n"
            "                _f.write(b'x' * 2**25)\n"
            "            _written += 32\n"
            "    except OSError as _error:\n"
            "        print('FULL', _label, _written, 'MiB, errno', _error.errno)\n"
            "    if _label != 'home':\n"
            "        for _name in os.listdir(_where):\n"
            "            if _name.startswith('fill'):\n"
            "                os.remove(os.path.join(_where, _name))\n")
    write(reference, folder)


def bad_timestamp(reference, blank, folder):
    write(reference, folder)
    (folder / "timestamp.txt").write_text("yesterday evening, I think", encoding="utf-8")


def links_the_source(reference, blank, folder):
    # the notebook is a symbolic link to the reference solutions (on the grader's own disk)
    (folder / f"{ASSIGNMENT}.ipynb").symlink_to(MODULE)


def fifo_notebook(reference, blank, folder):
    # a named pipe where the notebook should be: reading it would wait for a writer forever
    os.mkfifo(folder / f"{ASSIGNMENT}.ipynb")


def odd_file_names(reference, blank, folder):
    # the right notebook, next to a file whose name is not UTF-8, a FIFO and a link to /etc
    write(reference, folder)
    (folder / os.fsdecode(b"notes-\xff\xfe.txt")).write_text("latin-1 name", encoding="utf-8")
    os.mkfifo(folder / "pipe")
    (folder / "etc").symlink_to("/etc")


def links_another_student(reference, blank, folder):
    # the whole submission folder is a link to another student's (the honest case, made first)
    folder.rmdir()
    folder.symlink_to(folder.parent.parent / "honest" / ASSIGNMENT)


def prints_tests_encoded(reference, blank, folder):
    # a last cell prints every cell the kernel ran, hidden tests included, base64-encoded
    reference.cells.append(nbformat.v4.new_code_cell(
        'import base64\nprint("LE" + "AK:" + base64.b64encode("\\n".join(In).encode()).decode())'))
    write(reference, folder)


def breaks_setup(reference, blank, folder):
    # a cell of the student's before the trusted setup cell makes its imports fail
    cell = nbformat.v4.new_code_cell('import sys\nsys.modules["matplotlib.pyplot"] = None')
    reference.cells.insert(0, cell)
    write(reference, folder)


def escapes_sandbox(reference, blank, folder):
    """Reads solutions/, the source, another student, the repository, /etc/shadow; writes the
    gradebook and grades.csv; connects to a server on the grader's loopback."""
    workspace = folder.parents[2]
    port = int((workspace / "port").read_text())
    prepend(reference, "softmax", PROBES + (
        "_probe('solutions', lambda: open({sol!r}).read())\n"
        "_probe('source-dir', lambda: _os.listdir({src!r}))\n"
        "_probe('other-student', lambda: open({other!r}).read())\n"
        "_probe('repository', lambda: open({readme!r}).read())\n"
        "_probe('shadow', lambda: open('/etc/shadow').read())\n"
        "_probe('gradebook-write', lambda: open({db!r}, 'w').write('x'))\n"
        "_probe('gradebook-read', lambda: open({db!r}, 'rb').read(16))\n"
        "_probe('workspace-write', lambda: open({csv!r}, 'w').write('x'))\n"
        "import socket\n_probe('network', lambda: socket.create_connection(('127.0.0.1', {port}), timeout=3))\n"
    ).format(sol=str(MODULE), src=str(folder.parents[3] / "source"), readme=str(REPO / "README.md"),
             other=str(workspace / "submitted" / "honest" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"),
             db=str(workspace / "gradebook.db"), csv=str(workspace / "grades.csv"), port=port))
    write(reference, folder)


CASES = [
    Case("honest", "the reference solution", honest, "graded", FULL),
    Case("blank", "the untouched release", untouched, "graded", 0),
    Case("one_mistake", "an honest mistake", one_mistake, "graded", FULL - 2),
    # the exercises built on the learner's softmax (masked softmax, attention, the mask's test) fail with it
    Case("wrong_axis", "softmax normalised over axis 1 whatever dim says", wrong_axis, "graded", FULL - 2 - 3 - 4 - 2),
    Case("malformed_json", "truncated notebook JSON", malformed_json, "ungradable", None,
         reason="malformed notebook JSON"),
    Case("wrong_file_name", "notebook saved under another name", wrong_file_name, "graded", FULL,
         notes="submitted as"),
    Case("deleted_test", "a test cell deleted", deleted_test, "graded", FULL, notes="test_softmax was deleted"),
    Case("duplicated_test", "a test cell duplicated", duplicated_test, "graded", FULL,
         notes="duplicate of test_softmax"),
    Case("edited_test", "wrong code, its test cell emptied", edited_test, "graded", FULL - 2 - 3 - 4,
         notes="test_softmax was edited"),
    Case("flipped_metadata", "test cell flipped to a solution cell, exercise to 100 points", flipped_metadata,
         "graded", FULL - 2 - 3 - 4, notes="metadata of test_softmax was changed"),
    Case("stripped_metadata", "nbgrader metadata removed from a test cell", stripped_metadata, "graded",
         FULL - 2 - 3 - 4, notes="metadata of test_softmax was removed"),
    Case("infinite_loop", "an infinite loop", infinite_loop, "partially graded", FULL - 2,
         reason="exceeded its time limit"),
    Case("ignores_sigint", "a loop that ignores SIGINT", ignores_sigint, "partially graded", FULL - 2,
         reason="exceeded its time limit"),
    Case("os_exit", "os._exit in valid_lens_to_mask", exits, "partially graded", FULL - 2, reason="kernel died"),
    Case("memory_bomb", "allocates until the limit", memory_bomb, ("graded", "partially graded"), FULL - 2),
    Case("fork_bomb", "forks until the limit", fork_bomb, ("graded", "partially graded"), FULL - 2),
    Case("output_flood", "prints forever", output_flood, "partially graded", FULL - 2, reason="flooded"),
    Case("monkeypatched_checks", "replaces torch.allclose, np.allclose, torch.equal, assert_close, torch.softmax",
         monkeypatched_checks, "graded", FULL - 2 - 3 - 4, flags="tampering undone"),
    Case("patch_at_call_time", "patches torch.softmax while the test runs", patch_at_call_time, "graded",
         FULL - 2 - 3 - 4 - 2, flags="changed during the test"),
    Case("strips_asserts", "AST transformer stripping asserts + swallowing AssertionError", strips_asserts,
         "graded", FULL - 2, flags="IPython AST transformers"),
    Case("always_equal", "returns an int whose __eq__ is always True", always_equal, "graded", FULL - 2,
         flags="Anything"),
    Case("warns_but_correct", "correct code that emits a UserWarning in every test that calls it",
         warns_but_correct, "graded", FULL),
    Case("displayhook_then_fail", "sys.displayhook(2.0), then a wrong answer", displayhook_then_fail, "graded",
         FULL - 2),
    # the trusted checks (autograder/trusted.py) judge outside the kernel: a fooled kernel gains nothing
    Case("fools_the_checks", "wrong softmax; replaces a data constant of vlmcourse.checks so that every in-kernel "
         "assert_close passes", fools_the_checks, "graded", FULL - 2 - 3 - 4,
         flags="passed in the kernel but not the grader's own check"),
    Case("calls_the_reference", "softmax is one call of torch.softmax, the reference", calls_the_reference,
         "graded", FULL - 2, outputs_must=["calls `torch.softmax`"]),
    Case("reference_by_computed_name", "softmax calls getattr(torch, 'soft' + 'max'): right values, hidden call",
         reference_by_computed_name, "graded", FULL, flags="computed names"),
    Case("fills_its_disk", "writes until its home, TMPDIR, /dev/shm and /tmp are full", fills_its_disk, "graded",
         FULL, outputs_must=["FULL home", "FULL TMPDIR", "FULL shm", "FULL /tmp", "errno 28"]),
    Case("bad_timestamp", "a timestamp.txt that is not a date", bad_timestamp, "graded", FULL,
         notes="timestamp.txt is not a date"),
    Case("glob[1]", "a student id with glob characters", honest, "ungradable", None, reason="glob characters"),
    Case("breaks_setup", "the trusted setup cell cannot import (as in a broken environment)", breaks_setup,
         "ungradable", None, reason="setup cell"),
    Case("links_the_source", "the notebook is a symbolic link to the reference solutions", links_the_source,
         "ungradable", None, reason="symbolic link"),
    Case("fifo_notebook", "a FIFO named like the notebook", fifo_notebook, "ungradable", None,
         reason="not a regular file"),
    Case("odd_file_names", "the notebook next to a non-UTF-8 file name, a FIFO and a link to /etc", odd_file_names,
         "graded", FULL),
    Case("links_another_student", "the submission folder is a link to another student's", links_another_student,
         "ungradable", None, reason="symbolic link"),
    Case("prints_tests_encoded", "a last cell prints base64 of In (the hidden tests the kernel ran)",
         prints_tests_encoded, "graded", FULL, outputs_must=["LEAK:"]),
    Case("escapes_sandbox", "reads solutions/, hidden tests, another student, /etc/shadow; writes the gradebook; "
         "opens a network connection", escapes_sandbox, "graded", FULL,
         outputs_must=[f"BLOCKED {p}" for p in ("solutions", "source-dir", "other-student", "repository", "shadow",
                                                 "gradebook-write", "gradebook-read", "workspace-write", "network")],
         outputs_must_not=["LEAKED"]),
]
