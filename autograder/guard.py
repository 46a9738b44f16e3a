"""Integrity guard: what student code can redefine does not decide grades.

nbgrader runs hidden tests in the student's own kernel, so student code can redefine what the tests
rely on: ``torch.allclose``, ``numpy.allclose``, ``torch.equal``, the notebook's ``assert_close``,
IPython's AST transformers (which can strip every ``assert``), the exception display, trace hooks,
or hand the tests objects whose ``__eq__`` always says True.

The grader installs this guard in the kernel *before any student code runs* and calls it around
every trusted setup cell and every graded test cell, through ``user_expressions`` of an empty,
silent execute request (evaluated with plain ``eval``: no IPython transformer touches it).

- ``mark``/``protect`` around a trusted setup cell record the names that cell defines
  (``torch``, ``F``, ``assert_close`` ...): they are protected from then on.
- ``before`` a test cell restores every snapshot taken at install time (functions and classes of
  torch, numpy, math, builtins, vlmcourse, IPython, ipykernel; the shell's AST and input
  transformers, event callbacks and custom exception handlers; trace and profile hooks) and the
  protected names, and reports what it had to restore (a review flag: the test then runs on a
  clean environment, so wrong code still fails).
- ``after`` a test cell reports what changed *during* the test (patching done when the student's
  function is called) and any class defined by the notebook that subclasses a tensor, array or
  built-in value type, or overrides comparisons, truth or the torch/numpy dispatch protocols: such
  a test's verdict is void (0 points) and the submission is flagged.

Every answer is authenticated with an HMAC whose key lives only in the guard's closure, with a
sequence number: a guard that was replaced, removed or silenced makes the call fail, and the
grader treats a missing or forged answer as a failed test (fail closed).

Limits (documented in docs/grading.md): code that digs the key out of the interpreter's memory, or
that patches C-level state the snapshots do not cover, can still defeat an in-process guard. The
review flags and the static scan (:func:`static_flags`) exist so that such a submission is looked
at by a person.
"""

from __future__ import annotations

import ast
import hashlib
import hmac
import json
import re
import secrets
from pathlib import Path

PREFIXES = ("torch", "numpy", "vlmcourse", "IPython", "ipykernel", "math", "builtins", "operator",
            "functools", "einops", "scipy", "hmac", "json")

# The kernel side lives in a file of its own (see it for what it does); it runs as text, never imported.
GUARD_SOURCE = (Path(__file__).with_name("kernel_guard.py")).read_text(encoding="utf-8")


class GuardError(Exception):
    """The guard's answer is missing, forged or out of sequence."""


class GuardClient:
    """Grader side of the guard: builds the install code and call expressions, checks answers."""

    def __init__(self) -> None:
        self.key = secrets.token_bytes(32)
        self.name = "_" + secrets.token_hex(12)
        self.sequence = 0

    def install_code(self) -> str:
        """Defines the installer (run as a silent cell, before any student code)."""
        return GUARD_SOURCE

    def install_expression(self) -> str:
        return f"_vlm_install_guard({self.key!r}, {self.name!r}, {PREFIXES!r})"

    def expression(self, action: str, cell: str | None = None) -> str:
        return f"{self.name}({action!r}, {cell!r})"

    def verify(self, text: str, action: str) -> dict:
        """Parse and authenticate one answer (a printed line or a user_expressions repr)."""
        text = text.strip()
        if text.startswith(("'", '"')):
            try:
                text = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                raise GuardError("unreadable answer") from None
        payload, _, mac = text.rpartition("|")
        expected = hmac.new(self.key, payload.encode(), hashlib.sha256).hexdigest()
        if not payload or not hmac.compare_digest(mac, expected):
            raise GuardError("forged or garbled answer")
        data = json.loads(payload)
        self.sequence += 1
        if data.get("n") != self.sequence or data.get("action") != action:
            raise GuardError("answer out of sequence (replayed)")
        return data


# Static review flags: patterns in the student's own cells that an honest solution has no reason to
# contain. They never change a score; they tell the instructor which notebooks to look at.
STATIC_PATTERNS = {
    r"\b(torch|np|numpy)\s*\.\s*(allclose|equal|isclose|testing)\s*=": "assigns to a torch/numpy check",
    r"\bassert_(close|shape|scalar_close)\s*=": "redefines a course check",
    r"ast_transformers|input_transformers|input_transformer_manager": "touches IPython transformers",
    r"set_custom_exc|showtraceback|sys\.excepthook": "touches exception display",
    r"settrace|setprofile|sys\.monitoring": "installs trace hooks",
    r"def\s+__eq__|__torch_function__|__array_ufunc__": "defines comparison/dispatch overrides",
    r"\bos\._exit|\bos\.kill|\bsignal\.signal": "kills or signals processes",
    r"\bos\.fork|\bmultiprocessing|\bsubprocess": "starts processes",
    r"\bsocket\b|urllib|requests\.|http\.client": "opens network connections",
    r"gradebook|solutions/|\.\./|/etc/|nbgrader": "reads or writes grader files",
    r"\bgc\.get_objects|\bbuiltins\b|__builtins__|sys\.modules\s*\[": "reaches into interpreter internals",
}


def static_flags(sources: list[str]) -> list[str]:
    """Review flags for the student's cells (exercise and own cells)."""
    text = "\n".join(sources)
    return sorted({label for pattern, label in STATIC_PATTERNS.items() if re.search(pattern, text)})
