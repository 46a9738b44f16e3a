"""The grader's own verdict on an exercise, decided outside the learner's kernel.

A test cell runs in the learner's kernel, so the learner's code can, in principle, make it say
"passed" (see :mod:`autograder.guard` for what the in-kernel guard stops and what it cannot).
A *trusted check* does not believe the kernel. After the notebook has run:

1. the grader draws fresh inputs from a seed the kernel never sees and sends them in the code it
   asks the kernel to run, as plain arrays (``.npz``, no pickle);
2. the kernel calls the learner's function (the one that was defined when its test passed) on them
   and answers with what it returned, again as plain arrays, through the kernel's own reply
   (``user_expressions``): no file is shared, so the kernel's files can live on a filesystem of its
   own (see :mod:`autograder.sandbox`);
3. this process, which runs no learner code, computes the references with its own PyTorch,
   compares, and reads the learner's source for calls of the reference itself
   (:func:`vlmcourse.sources.forbidden_calls`).

A test keeps its points only if the kernel's test cell passed *and* the trusted check agrees, so
anything the kernel says can only lower its score. The checks of an assignment live next to its
source notebook, in ``solutions/<assignment>/trusted_checks.py`` (never released to learners): a list
``CHECKS`` of :class:`Check`.
"""

from __future__ import annotations

import ast
import base64
import binascii
import importlib.util
import io
import json
import secrets
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CHECKS_FILE = "trusted_checks.py"
MAX_OUTPUT_BYTES = 64 * 2**20        # what the kernel may hand back, all checks together


@dataclass
class Case:
    """One call of the learner's code on inputs the grader chose.

    ``args``/``kwargs`` hold numpy arrays (given to the learner's code as tensors) or plain JSON
    values. For a class (``Check.module``): ``init`` are its constructor's arguments, ``state`` the
    ``state_dict`` the grader loads into it (strictly: the parameter names are the exercise's contract;
    none: the module is judged as its constructor initialised it),
    ``double`` converts it to float64 first. ``grad``: positions of float array arguments whose
    gradients the kernel also returns (of the sum of the first output), after the outputs: a wrong or
    missing gradient (a detached output answers zeros) fails like a wrong value. ``numpy``: the
    arguments arrive as numpy arrays, not tensors (for exercises on numpy data, 04's fits).
    """

    args: Sequence[Any] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    init: Sequence[Any] = ()
    state: dict[str, np.ndarray] = field(default_factory=dict)
    double: bool = False
    grad: tuple[int, ...] = ()
    numpy: bool = False

    def describe(self) -> str:
        """The inputs as a learner can read them: shapes of arrays, values of the rest."""
        def one(value: Any) -> str:
            return f"shape {tuple(value.shape)}" if isinstance(value, np.ndarray) else repr(value)
        parts = [one(a) for a in self.args] + [f"{k}={one(v)}" for k, v in self.kwargs.items()]
        return ", ".join(parts)


@dataclass
class Check:
    """The grader's own check of one graded test cell.

    Args:
        grade_id: the test cell whose points this check backs.
        function: the learner's function (or class, with ``module=True``) by name.
        cases: draws the cases from the grader's random generator.
        reference: the expected outputs of a case, as a list of arrays in the order the learner's
            code returns them (a tuple is flattened), then the ``attributes``.
        attributes: attributes of the learner's module read after the call (``attention_weights``).
        keys: for an exercise that returns a dict, its keys, in the order of the reference's outputs
            (a dict with other keys fails; without ``keys`` a dict is not an answer).
        forbidden: last components of the references the exercise must not call (``"softmax"``).
        mistakes: classic wrong answers by name, each computing a case's outputs the wrong way: a
            failing answer that matches one is told so ("matches a known mistake: ...").
        atol, rtol: the tolerance (outputs are compared in float64).
    """

    grade_id: str
    function: str
    cases: Callable[[np.random.Generator], list[Case]]
    reference: Callable[[Case], list[np.ndarray]]
    module: bool = False
    attributes: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    forbidden: tuple[str, ...] = ()
    mistakes: dict[str, Callable[[Case], list[np.ndarray]]] = field(default_factory=dict)
    atol: float = 1e-6
    rtol: float = 1e-5


@dataclass
class Verdict:
    passed: bool
    detail: str = ""
    flags: list[str] = field(default_factory=list)


def tensor(array: np.ndarray):
    """A case's array as the torch tensor a reference computes with (shares its memory)."""
    # imported here, not with the module: the executor imports this module and needs no torch itself
    import torch

    return torch.from_numpy(np.asarray(array))


def normal(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    """Standard normal inputs of ``shape``, times ``scale``, from the grader's generator."""
    return rng.standard_normal(shape) * scale


def layer_norm_state(rng: np.random.Generator, d: int, name: str) -> dict[str, np.ndarray]:
    """Weights for a LayerNorm ``name`` that is not the identity (weights around 1, biases around 0)."""
    return {f"{name}.weight": 1.0 + normal(rng, d, scale=0.3), f"{name}.bias": normal(rng, d, scale=0.3)}


def attention_state(rng: np.random.Generator, d: int, prefix: str) -> dict[str, np.ndarray]:
    """Weights for an ``nn.MultiheadAttention`` of width ``d`` at ``prefix`` (packed q, k, v projections)."""
    return {f"{prefix}.in_proj_weight": normal(rng, 3 * d, d, scale=0.4),
            f"{prefix}.in_proj_bias": normal(rng, 3 * d, scale=0.2),
            f"{prefix}.out_proj.weight": normal(rng, d, d, scale=0.4),
            f"{prefix}.out_proj.bias": normal(rng, d, scale=0.2)}


def random_state(rng: np.random.Generator, module, scale: float = 0.3) -> dict[str, np.ndarray]:
    """Fresh weights for every entry of ``module``'s state dict (norm weights around 1, the rest around 0)."""
    state = {}
    for key, value in module.state_dict().items():
        is_norm_weight = "norm" in key and key.endswith("weight")
        state[key] = (1.0 + normal(rng, *value.shape, scale=0.2)) if is_norm_weight else \
            normal(rng, *value.shape, scale=scale)
    return state


def load_checks(source: Path, assignment: str) -> list[Check]:
    """The trusted checks of ``assignment`` (an empty list when it has none)."""
    path = source / assignment / CHECKS_FILE
    if not path.is_file():
        return []
    spec = importlib.util.spec_from_file_location(f"trusted_checks_{assignment}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    checks = list(module.CHECKS)
    assert all(isinstance(c, Check) for c in checks), f"{path}: CHECKS must hold Check objects"
    return checks


class Session:
    """One submission's trusted checks: the code the kernel runs, and the verdicts on its answer."""

    def __init__(self, checks: list[Check], seed: int | None = None):
        self.checks: dict[str, list[Check]] = {}     # test cell -> its checks (several when it tests several exercises)
        for check in checks:
            self.checks.setdefault(check.grade_id, []).append(check)
        self.token = secrets.token_hex(8)
        self.rng = np.random.default_rng(secrets.randbits(64) if seed is None else seed)
        self.cases: dict[str, list[list[Case]]] = {}   # test cell -> the cases of each of its checks
        self.targets = f"_grader_targets_{self.token}"

    # ------------------------------------------------------------------ kernel side (code as text)
    def remember_code(self, grade_id: str) -> str:
        """Code that keeps the learner's functions as they were when their test passed."""
        return "\n".join(f"globals().setdefault({self.targets!r}, {{}})[{_label(grade_id, n)!r}] = "
                         f"globals().get({check.function!r})" for n, check in enumerate(self.checks[grade_id]))

    def call_code(self, passed: list[str]) -> tuple[str, str]:
        """The code that defines the kernel's answer to the checks of the ``passed`` tests (their
        inputs inside it), and the expression that computes the answer (a base64 ``.npz`` string)."""
        arrays: dict[str, np.ndarray] = {}

        def encode(value: Any) -> dict:
            if isinstance(value, np.ndarray):
                key = f"a{len(arrays)}"
                arrays[key] = value
                return {"array": key}
            return {"value": value}

        spec = []
        for gid in passed:
            self.cases[gid] = [check.cases(self.rng) for check in self.checks[gid]]
            for n, (check, cases) in enumerate(zip(self.checks[gid], self.cases[gid])):
                spec.append({"label": _label(gid, n), "function": check.function, "module": check.module,
                             "attributes": list(check.attributes), "keys": list(check.keys),
                             "cases": [{"args": [encode(a) for a in c.args],
                                        "kwargs": {k: encode(v) for k, v in c.kwargs.items()},
                                        "init": [encode(a) for a in c.init],
                                        "state": {k: encode(v) for k, v in c.state.items()},
                                        "double": c.double, "grad": list(c.grad),
                                        "numpy": c.numpy} for c in cases]})
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        code = KERNEL_ANSWER.replace("TOKEN", self.token).format(
            spec=json.dumps(spec), inputs=base64.b64encode(buffer.getvalue()).decode(), targets=self.targets)
        return code, f"_grader_answer_{self.token}()"

    # ------------------------------------------------------------------------- trusted side
    def judge(self, answer: str, sources: list[str]) -> dict[str, Verdict]:
        """Compare the kernel's answer (the text of its ``user_expressions`` value) with the references,
        and read the sources for delegation."""
        try:
            answers = _decode_answer(answer)
        except (ValueError, SyntaxError, binascii.Error, zipfile.BadZipFile) as error:
            reason = answer if answer.startswith("no answer") else error
            return {gid: Verdict(False, f"the grader's own check got no readable answer from the kernel ({reason})")
                    for gid in self.cases}
        return {gid: _all_of([self._judge_one(check, _label(gid, n), cases, answers, sources)
                              for n, (check, cases) in enumerate(zip(self.checks[gid], per_check))])
                for gid, per_check in self.cases.items()}

    def _judge_one(self, check: Check, label: str, cases: list[Case], answers: dict[str, np.ndarray],
                   sources: list[str]) -> Verdict:
        from vlmcourse.sources import dynamic_access, forbidden_calls

        flags = [f"review: {check.function} reaches code by computed names ({', '.join(found)})"
                 for found in [dynamic_access(sources, check.function)] if found]
        uses = forbidden_calls(sources, check.function, check.forbidden) if check.forbidden else []
        if uses:
            return Verdict(False, f"`{check.function}` calls {', '.join(f'`{u}`' for u in uses)}, the reference it "
                                  "is compared with: the exercise asks you to write it yourself", flags)
        for index, case in enumerate(cases):
            key = f"{label}/{index}"
            where = f"on the grader's own inputs ({case.describe()})"
            if f"{key}/error" in answers:
                return Verdict(False, f"`{check.function}` raised {answers[f'{key}/error']} {where}", flags)
            expected = [np.asarray(e) for e in check.reference(case)]
            got = [answers.get(f"{key}/{j}") for j in range(len(expected))]
            if f"{key}/{len(expected)}" in answers or any(g is None for g in got):
                count = sum(1 for k in answers if k.startswith(f"{key}/"))
                return Verdict(False, f"`{check.function}` returned {count} values {where}; "
                                      f"expected {len(expected)}", flags)
            for j, (g, e) in enumerate(zip(got, expected)):
                problem = _difference(g, e, check.atol, check.rtol)
                if problem:
                    what = f"output {j}" if len(expected) > 1 else "the output"
                    return Verdict(False, f"`{check.function}` {where}: {what} {problem}."
                                          + _known_mistake(check, case, got), flags)
        return Verdict(True, "", flags)


def _label(grade_id: str, n: int) -> str:
    """The name of the ``n``-th check of a test cell in the kernel's answer."""
    return f"{grade_id}/{n}"


def _all_of(verdicts: list[Verdict]) -> Verdict:
    """A test cell's verdict from its checks': passed only if all passed; the first failure's reason."""
    flags = list(dict.fromkeys(flag for v in verdicts for flag in v.flags))
    failed = next((v for v in verdicts if not v.passed), None)
    return Verdict(False, failed.detail, flags) if failed else Verdict(True, "", flags)


def _known_mistake(check: Check, case: Case, got: list[np.ndarray]) -> str:
    """" Your result matches a known mistake: <name>." when a named wrong answer gives ``got``."""
    for name, wrong in check.mistakes.items():
        outputs = [np.asarray(w) for w in wrong(case)]
        same = len(outputs) == len(got) and \
            not any(_difference(g, w, check.atol, check.rtol) for g, w in zip(got, outputs))
        if same:
            return f" Your result matches a known mistake: {name}."
    return ""


def _difference(got: np.ndarray, expected: np.ndarray, atol: float, rtol: float) -> str:
    """Why ``got`` is not ``expected`` (empty when it is)."""
    if got.shape != expected.shape:
        return f"has shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
    if expected.dtype == bool:
        if got.dtype != bool:
            return f"has dtype {got.dtype}, expected bool"
        wrong = int((got != expected).sum())
        return f"differs from the reference in {wrong} entries" if wrong else ""
    if got.dtype.kind not in "biuf":
        return f"has dtype {got.dtype}, expected numbers"
    got, expected = got.astype(np.float64), expected.astype(np.float64)
    if not np.isfinite(got).all() and not np.array_equal(np.isfinite(got), np.isfinite(expected)):
        return "has NaN or inf where the reference is finite"
    if np.allclose(got, expected, atol=atol, rtol=rtol, equal_nan=True):
        return ""
    return f"differs from the reference by up to {float(np.nanmax(np.abs(got - expected))):.3g}"


def _decode_answer(text: str) -> dict[str, np.ndarray]:
    """The arrays of the kernel's answer: a quoted base64 string, bounded before and after
    decompression, loaded without pickle."""
    if len(text) > MAX_OUTPUT_BYTES * 4 // 3 + 16:
        raise ValueError("the answer is larger than the grader accepts")
    encoded = ast.literal_eval(text)
    if not isinstance(encoded, str):
        raise ValueError(f"the answer is a {type(encoded).__name__}, not the grader's encoding")
    data = base64.b64decode(encoded, validate=True)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        if sum(info.file_size for info in archive.infolist()) > MAX_OUTPUT_BYTES:
            raise ValueError("the answer is larger than the grader accepts")
    with np.load(io.BytesIO(data), allow_pickle=False) as loaded:
        return {key: loaded[key] for key in loaded.files}


# Runs in the learner's kernel: whatever it does there can only change what it answers.
KERNEL_ANSWER = '''
def _grader_answer_TOKEN():
    import base64, io, json, numpy, torch
    spec = json.loads({spec!r})
    arrays = numpy.load(io.BytesIO(base64.b64decode({inputs!r})), allow_pickle=False)
    targets = globals().get({targets!r}, {{}})
    answers = {{}}

    def value(encoded, as_numpy=False):
        if "array" not in encoded:
            return encoded["value"]
        array = arrays[encoded["array"]].copy()
        return array if as_numpy else torch.from_numpy(array)

    def flat(result, keys=()):
        if isinstance(result, dict):
            if sorted(map(str, result)) != sorted(keys):
                raise TypeError("returned a dict with the keys " + str(sorted(map(str, result)))
                                + ", expected " + (str(sorted(keys)) if keys else "no dict"))
            return [item for k in keys for item in flat(result[k])]
        if isinstance(result, (tuple, list)):
            return [item for part in result for item in flat(part)]
        return [result]

    def plain(result):
        if isinstance(result, float):            # torch.as_tensor would round it to float32
            return numpy.array(result, dtype=numpy.float64)
        tensor = result if isinstance(result, torch.Tensor) else torch.as_tensor(result)
        tensor = tensor.detach().cpu()
        return (tensor.to(torch.float64) if tensor.is_floating_point() else tensor).numpy()

    for check in spec:
        for index, case in enumerate(check["cases"]):
            key = check["label"] + "/" + str(index)
            try:
                target = targets.get(check["label"])
                if target is None:
                    raise NameError(check["function"] + " is not defined")
                call = target
                if check["module"]:
                    call = target(*[value(a) for a in case["init"]])
                    if case["double"]:
                        call = call.double()
                    if case["state"]:          # no state: the module as its constructor made it
                        call.load_state_dict({{k: value(v) for k, v in case["state"].items()}}, strict=True)
                    call.eval()
                args = [value(a, case["numpy"]) for a in case["args"]]
                kwargs = {{k: value(v, case["numpy"]) for k, v in case["kwargs"].items()}}
                wanted = [args[i].requires_grad_(True) for i in case["grad"]]
                with torch.set_grad_enabled(bool(wanted)):
                    result = call(*args, **kwargs)
                outputs = flat(result, check["keys"]) + [getattr(call, name) for name in check["attributes"]]
                if wanted:
                    first = outputs[0]
                    linked = isinstance(first, torch.Tensor) and first.requires_grad
                    grads = (torch.autograd.grad(first.sum(), wanted, allow_unused=True) if linked
                             else [None] * len(wanted))
                    outputs += [torch.zeros_like(w) if g is None else g for w, g in zip(wanted, grads)]
                for position, output in enumerate(outputs):
                    answers[key + "/" + str(position)] = plain(output)
            except Exception as error:
                answers[key + "/error"] = numpy.array((type(error).__name__ + ": " + str(error))[:300])
    buffer = io.BytesIO()
    numpy.savez(buffer, **answers)
    return base64.b64encode(buffer.getvalue()).decode()
'''
