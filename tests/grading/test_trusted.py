"""The grader's own checks (autograder/trusted.py) without a sandbox: the kernel's half runs here, in a
plain namespace, so these tests are fast; the catalogue (test_grading.py) runs them in the sandbox.

What must hold: the reference passes every check of every module that has checks, on fresh inputs;
wrong answers, delegation to the reference and unreadable or hostile answer files fail, never crash."""

from __future__ import annotations

import base64
import functools
import io
import zipfile

import nbformat
import numpy as np
import pytest
from harness import load_mistakes

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


def kernel_half(session: Session, namespace: dict, passed: list[str]) -> str:
    """What the grader asks the sandboxed kernel to do, done in ``namespace``: the answer's text, as
    the kernel's reply carries it (the repr of the value of ``user_expressions``)."""
    for gid in passed:
        exec(session.remember_code(gid), namespace)
    code, expression = session.call_code(passed)
    exec(code, namespace)
    return repr(eval(expression, namespace))


@functools.cache
def checks_of(assignment: str) -> tuple:
    """The module's checks, loaded once per test process (collection and most tests ask for them)."""
    return tuple(load_checks(SOLUTIONS, assignment))


def session_for(assignment: str, seed: int = 0) -> Session:
    return Session(list(checks_of(assignment)), seed=seed)


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
    for check in checks_of(assignment):
        assert check.grade_id in ids, f"{check.grade_id} is not a cell of {assignment}"
        assert any(f"def {check.function}(" in s or f"class {check.function}(" in s for s in exercises), \
            f"{check.function} is not defined by an exercise cell of {assignment}"


@pytest.mark.parametrize("assignment", WITH_CHECKS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_reference_passes_every_check_on_fresh_inputs(assignment: str, seed: int) -> None:
    session = session_for(assignment, seed)
    namespace, sources = reference_namespace(assignment)
    verdicts = session.judge(kernel_half(session, namespace, list(session.checks)), sources)
    assert set(verdicts) == set(session.checks)
    failed = {gid: v.detail for gid, v in verdicts.items() if not v.passed or v.flags}
    assert not failed, f"the reference of {assignment} fails its own checks: {failed}"


def _covered_mistakes() -> list:
    """The mistakes of the mistakes files whose failing tests include one the grader checks itself."""
    return [m for a in WITH_CHECKS for m in load_mistakes(a)
            if any(check.grade_id in m.fails for check in checks_of(a))]


COVERED = _covered_mistakes()


@pytest.mark.parametrize("mistake", COVERED, ids=[m.test_id for m in COVERED])
def test_the_grader_catches_every_mistake_its_checks_cover(mistake) -> None:
    """A plausible wrong answer that the kernel's test catches must fail the grader's own check too:
    otherwise the verdict outside the kernel could not take those points away."""
    session = session_for(mistake.assignment)
    notebook = nbformat.read(SOLUTIONS / mistake.assignment / f"{mistake.assignment}.ipynb", as_version=4)
    wrong = next(c.source for c in notebook.cells if grade_id(c) == mistake.cell).replace(mistake.find, mistake.replace)
    namespace, sources = reference_namespace(mistake.assignment, wrong)
    checked = [gid for gid in mistake.fails if gid in session.checks]
    verdicts = session.judge(kernel_half(session, namespace, checked), sources)
    assert any(not verdicts[gid].passed for gid in checked), \
        f"the grader's checks {checked} pass the mistake '{mistake.name}': {[verdicts[g].detail for g in checked]}"


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
def test_a_wrong_answer_fails_its_check_with_a_reason(function: str) -> None:
    code, reason = WRONG[function]
    session = session_for("01_attention")
    namespace, sources = reference_namespace("01_attention", code)
    gid = f"test_{function}"
    verdict = session.judge(kernel_half(session, namespace, [gid]), sources)[gid]
    assert not verdict.passed and reason in verdict.detail, verdict


def test_calling_the_reference_fails_and_computed_names_are_flagged() -> None:
    session = session_for("01_attention")
    code = ("def softmax(x, dim=-1):\n    return torch.softmax(x, dim)\n"
            "def tiled_attention(q, k, v, block_size, causal=False):\n"
            "    return getattr(F, 'scaled_dot_product_' + 'attention')(q, k, v, is_causal=causal)\n")
    namespace, sources = reference_namespace("01_attention", code)
    verdicts = session.judge(kernel_half(session, namespace, ["test_softmax", "test_tiled_attention"]), sources)
    assert not verdicts["test_softmax"].passed and "calls `torch.softmax`" in verdicts["test_softmax"].detail
    assert verdicts["test_tiled_attention"].passed, "right values by a computed name: passes, but is flagged"
    assert any("computed names" in f for f in verdicts["test_tiled_attention"].flags)


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _zip(member: str, data: bytes, compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        archive.writestr(member, data)
    return buffer.getvalue()


def _pickled() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return _zip("test_softmax/0/0/0.npy", buffer.getvalue())


def _quoted(data: bytes) -> str:
    return repr(base64.b64encode(data).decode())


HOSTILE = {
    "no answer": lambda cases: "no answer (NameError: name '_grader_answer' is not defined)",
    "not a string": lambda cases: "12",
    "code, not data": lambda cases: "__import__('os').system('true')",
    "not base64": lambda cases: repr("@@@ not base64 @@@"),
    "not a zip": lambda cases: _quoted(b"not a zip file"),
    "pickled objects": lambda cases: _quoted(_pickled()),
    "decompression bomb": lambda cases: _quoted(_zip("test_softmax/0/0/0.npy", b"\0" * (MAX_OUTPUT_BYTES + 1),
                                                     zipfile.ZIP_DEFLATED)),
    "too long": lambda cases: "'" + "A" * (MAX_OUTPUT_BYTES * 2) + "'",
    "extra outputs": lambda cases: _quoted(_npz(**{f"test_softmax/0/{i}/{j}": np.zeros(2)
                                                  for i in range(cases) for j in range(2)})),
    "strings for numbers": lambda cases: _quoted(_npz(**{f"test_softmax/0/{i}/0": np.array(["1.0"])
                                                        for i in range(cases)})),
}


@pytest.mark.parametrize("hostile", list(HOSTILE))
def test_hostile_answers_fail_the_check_and_never_crash(hostile: str) -> None:
    session = session_for("01_attention")
    session.call_code(["test_softmax"])
    verdict = session.judge(HOSTILE[hostile](len(session.cases["test_softmax"][0])), [])["test_softmax"]
    assert not verdict.passed and verdict.detail, f"{hostile}: {verdict}"


def test_a_dict_answer_is_read_by_its_keys() -> None:
    from autograder.trusted import Case, Check

    check = Check("test_sizes", "sizes", lambda rng: [Case((3,))],
                  lambda case: [np.array(4 * case.args[0]), np.array(8 * case.args[0])], keys=("weights", "adam"))
    verdicts = {}
    for name, code in (("right", "def sizes(n):\n    return {'adam': 8 * n, 'weights': 4 * n}\n"),
                       ("swapped", "def sizes(n):\n    return {'adam': 4 * n, 'weights': 8 * n}\n"),
                       ("other keys", "def sizes(n):\n    return {'weights': 4 * n}\n")):
        session = Session([check], seed=0)
        namespace: dict = {}
        exec(code, namespace)
        verdicts[name] = session.judge(kernel_half(session, namespace, ["test_sizes"]), [code])["test_sizes"]
    assert verdicts["right"].passed, verdicts["right"]
    assert not verdicts["swapped"].passed and "output 0 differs" in verdicts["swapped"].detail
    assert not verdicts["other keys"].passed and "returned a dict with the keys ['weights']" in \
        verdicts["other keys"].detail, verdicts["other keys"]


def test_a_python_float_answer_keeps_its_precision() -> None:
    from autograder.trusted import Case, Check

    check = Check("test_third", "third", lambda rng: [Case((1.0,))], lambda case: [np.array(case.args[0] / 3)],
                  atol=0, rtol=1e-12)
    session = Session([check], seed=0)
    namespace: dict = {}
    exec("def third(x):\n    return x / 3\n", namespace)
    verdict = session.judge(kernel_half(session, namespace, ["test_third"]), [])["test_third"]
    assert verdict.passed, f"a float64 answer was rounded on its way back: {verdict}"


def test_a_test_cell_of_two_exercises_passes_only_if_both_checks_agree() -> None:
    from autograder.trusted import Case, Check

    checks = [Check("test_pair", "double", lambda rng: [Case((np.arange(3.0),))], lambda case: [2 * case.args[0]]),
              Check("test_pair", "halve", lambda rng: [Case((np.arange(3.0),))], lambda case: [case.args[0] / 2])]
    verdicts = {}
    for name, code in (("both right", "def double(x):\n    return 2 * x\ndef halve(x):\n    return x / 2\n"),
                       ("second wrong", "def double(x):\n    return 2 * x\ndef halve(x):\n    return x / 3\n"),
                       ("second missing", "def double(x):\n    return 2 * x\n")):
        session = Session(checks, seed=0)
        namespace: dict = {}
        exec(code, namespace)
        verdicts[name] = session.judge(kernel_half(session, namespace, ["test_pair"]), [code])["test_pair"]
    assert verdicts["both right"].passed, verdicts["both right"]
    assert not verdicts["second wrong"].passed and "`halve`" in verdicts["second wrong"].detail
    assert not verdicts["second missing"].passed and "halve is not defined" in verdicts["second missing"].detail
