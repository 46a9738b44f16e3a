"""The grader's own checks (autograder/trusted.py) without a sandbox: the kernel's half runs here, in a
plain namespace, so these tests are fast; the catalogue (test_grading.py) runs them in the sandbox.

What must hold: the reference passes every check of every module that has checks, on fresh inputs;
wrong answers, delegation to the reference and unreadable or hostile answer files fail, never crash."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import nbformat
import numpy as np
import pytest

from autograder.base import COURSE, SOLUTIONS, assignments
from autograder.cells import grade_id, is_setup
from autograder.trusted import CHECKS_FILE, MAX_OUTPUT_BYTES, Session, load_checks

WITH_CHECKS = [a for a in assignments() if (SOLUTIONS / a / CHECKS_FILE).is_file()]


def solution_sources(assignment: str) -> tuple[str, list[str]]:
    """The setup cells' code and the reference's exercise cells."""
    notebook = nbformat.read(SOLUTIONS / assignment / f"{assignment}.ipynb", as_version=4)
    setup = "\n".join(c.source for c in notebook.cells if is_setup(c))
    exercises = [c.source for c in notebook.cells
                 if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")]
    return setup, exercises


def kernel_half(session: Session, namespace: dict, passed: list[str]) -> None:
    """What the grader asks the sandboxed kernel to do, done in ``namespace``."""
    for gid in passed:
        exec(session.remember_code(gid), namespace)
    exec(session.call_code(passed), namespace)


def session_for(assignment: str, tmp_path: Path, seed: int = 0) -> Session:
    (tmp_path / "home").mkdir(exist_ok=True)
    return Session(load_checks(SOLUTIONS, assignment), tmp_path, seed=seed)


_setups: dict[str, dict] = {}


def reference_namespace(assignment: str, extra: str = "") -> tuple[dict, list[str]]:
    """A namespace with the setup cells and the reference's exercises run (then ``extra``)."""
    setup, exercises = solution_sources(assignment)
    if assignment not in _setups:
        _setups[assignment] = {}
        exec("import matplotlib\nmatplotlib.use('Agg')\n" + setup.replace("setup_notebook(", "dict("),
             _setups[assignment])
    namespace = dict(_setups[assignment])
    for source in exercises + ([extra] if extra else []):
        exec(source, namespace)
    return namespace, exercises + ([extra] if extra else [])


@pytest.mark.parametrize("assignment", WITH_CHECKS)
def test_every_check_names_a_test_cell_and_an_exercise(assignment: str) -> None:
    notebook = nbformat.read(SOLUTIONS / assignment / f"{assignment}.ipynb", as_version=4)
    ids = {grade_id(c) for c in notebook.cells}
    _, exercises = solution_sources(assignment)
    for check in load_checks(SOLUTIONS, assignment):
        assert check.grade_id in ids, f"{check.grade_id} is not a cell of {assignment}"
        assert any(f"def {check.function}(" in s or f"class {check.function}(" in s for s in exercises), \
            f"{check.function} is not defined by an exercise cell of {assignment}"


@pytest.mark.parametrize("assignment", WITH_CHECKS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_reference_passes_every_check_on_fresh_inputs(assignment: str, seed: int, tmp_path: Path) -> None:
    session = session_for(assignment, tmp_path, seed)
    namespace, sources = reference_namespace(assignment)
    kernel_half(session, namespace, list(session.checks))
    verdicts = session.judge(sources)
    assert set(verdicts) == set(session.checks)
    failed = {gid: v.detail for gid, v in verdicts.items() if not v.passed or v.flags}
    assert not failed, f"the reference of {assignment} fails its own checks: {failed}"


def test_the_checks_never_reach_the_learners() -> None:
    for assignment in WITH_CHECKS:
        assert not (COURSE / assignment / CHECKS_FILE).exists(), f"course/{assignment} holds the grader's checks"


WRONG = {
    "softmax": ("def softmax(x, dim=-1):\n    e = x.exp()\n    return e / e.sum(-1, keepdim=True)\n",
                "matches a known mistake: normalised over the last axis whatever dim says."),
    "additive_scores": ("def additive_scores(queries, keys, W_q, W_k, w_v):\n"
                        "    return (queries @ W_q.T)[:, :, None, :1].sum(-1) + 0 * keys[:, None, :, 0]\n",
                        "differs from the reference"),
    "valid_lens_to_mask": ("def valid_lens_to_mask(valid_lens, n_queries, n_keys):\n"
                           "    return torch.ones(len(valid_lens), n_queries, n_keys)\n", "expected bool"),
    "attention_memory_bytes": ("def attention_memory_bytes(n_tokens, layers, heads, bytes_per_element=4):\n"
                               "    return n_tokens * layers * heads * bytes_per_element\n",
                               "matches a known mistake: the matrix is n x n"),
    "scaled_dot_product_attention": ("def scaled_dot_product_attention(queries, keys, values, mask=None):\n"
                                     "    raise ValueError('not today')\n", "raised ValueError: not today"),
}


@pytest.mark.parametrize("function", list(WRONG))
def test_a_wrong_answer_fails_its_check_with_a_reason(function: str, tmp_path: Path) -> None:
    code, reason = WRONG[function]
    session = session_for("01_attention", tmp_path)
    namespace, sources = reference_namespace("01_attention", code)
    gid = f"test_{function}"
    kernel_half(session, namespace, [gid])
    verdict = session.judge(sources)[gid]
    assert not verdict.passed and reason in verdict.detail, verdict


def test_calling_the_reference_fails_and_computed_names_are_flagged(tmp_path: Path) -> None:
    session = session_for("01_attention", tmp_path)
    code = ("def softmax(x, dim=-1):\n    return torch.softmax(x, dim)\n"
            "def tiled_attention(q, k, v, block_size, causal=False):\n"
            "    return getattr(F, 'scaled_dot_product_' + 'attention')(q, k, v, is_causal=causal)\n")
    namespace, sources = reference_namespace("01_attention", code)
    kernel_half(session, namespace, ["test_softmax", "test_tiled_attention"])
    verdicts = session.judge(sources)
    assert not verdicts["test_softmax"].passed and "calls `torch.softmax`" in verdicts["test_softmax"].detail
    assert verdicts["test_tiled_attention"].passed, "right values by a computed name: passes, but is flagged"
    assert any("computed names" in f for f in verdicts["test_tiled_attention"].flags)


def _answers(session: Session, passed: list[str]) -> None:
    """Write the inputs as the grader does (the kernel's half is then replaced by the test)."""
    session.call_code(passed)


@pytest.mark.parametrize("hostile", ["missing", "symlink", "fifo", "pickle", "bomb", "garbage", "extra_output"])
def test_hostile_answer_files_fail_the_check_and_never_crash(hostile: str, tmp_path: Path) -> None:
    session = session_for("01_attention", tmp_path)
    _answers(session, ["test_softmax"])
    out = session.output
    if hostile == "symlink":
        target = tmp_path / "elsewhere.npz"
        np.savez(target, **{"test_softmax/0/0": np.zeros(3)})
        os.symlink(target, out)
    elif hostile == "fifo":
        os.mkfifo(out)
    elif hostile == "pickle":
        np.save(io.BytesIO(), np.array([object()]), allow_pickle=True)
        with zipfile.ZipFile(out, "w") as archive:
            buffer = io.BytesIO()
            np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
            archive.writestr("test_softmax/0/0.npy", buffer.getvalue())
    elif hostile == "bomb":
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("test_softmax/0/0.npy", b"\0" * (MAX_OUTPUT_BYTES + 1))
    elif hostile == "garbage":
        out.write_bytes(b"not a zip file")
    elif hostile == "extra_output":
        case_count = len(session.cases["test_softmax"])
        np.savez(out, **{f"test_softmax/{i}/{j}": np.zeros(2) for i in range(case_count) for j in range(2)})
    verdict = session.judge([])["test_softmax"]
    assert not verdict.passed and verdict.detail, f"{hostile}: {verdict}"


def test_inputs_are_never_written_through_a_link(tmp_path: Path) -> None:
    session = session_for("01_attention", tmp_path)
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    os.symlink(victim, session.inputs)
    with pytest.raises(FileExistsError):
        session.call_code(["test_softmax"])
    assert victim.read_text() == "keep me"


def test_a_dict_answer_is_read_by_its_keys(tmp_path: Path) -> None:
    from autograder.trusted import Case, Check

    (tmp_path / "home").mkdir()
    check = Check("test_sizes", "sizes", lambda rng: [Case((3,))],
                  lambda case: [np.array(4 * case.args[0]), np.array(8 * case.args[0])], keys=("weights", "adam"))
    verdicts = {}
    for name, code in (("right", "def sizes(n):\n    return {'adam': 8 * n, 'weights': 4 * n}\n"),
                       ("swapped", "def sizes(n):\n    return {'adam': 4 * n, 'weights': 8 * n}\n"),
                       ("other keys", "def sizes(n):\n    return {'weights': 4 * n}\n")):
        session = Session([check], tmp_path / name, seed=0)
        (tmp_path / name / "home").mkdir(parents=True)
        namespace: dict = {}
        exec(code, namespace)
        kernel_half(session, namespace, ["test_sizes"])
        verdicts[name] = session.judge([code])["test_sizes"]
    assert verdicts["right"].passed, verdicts["right"]
    assert not verdicts["swapped"].passed and "output 0 differs" in verdicts["swapped"].detail
    assert not verdicts["other keys"].passed and "returned a dict with the keys ['weights']" in \
        verdicts["other keys"].detail, verdicts["other keys"]


def test_a_python_float_answer_keeps_its_precision(tmp_path: Path) -> None:
    from autograder.trusted import Case, Check

    check = Check("test_third", "third", lambda rng: [Case((1.0,))], lambda case: [np.array(case.args[0] / 3)],
                  atol=0, rtol=1e-12)
    session = Session([check], tmp_path, seed=0)
    (tmp_path / "home").mkdir()
    namespace: dict = {}
    exec("def third(x):\n    return x / 3\n", namespace)
    kernel_half(session, namespace, ["test_third"])
    verdict = session.judge([])["test_third"]
    assert verdict.passed, f"a float64 answer was rounded on its way back: {verdict}"
