"""Feedback that never shows hidden tests (used by ``nbgrader generate_feedback`` through the config).

nbgrader's feedback is the autograded notebook rendered as HTML: the hidden tests are in it, and the
traceback of a failing hidden assert prints the failing line. :class:`RedactHiddenTests` removes,
before rendering:

- the ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS`` region of every test cell;
- every traceback of a test cell (kept: the error's name and message, e.g. the assert's message);
- any line of hidden-test code that appears anywhere in any output (student code can print the
  source of the calling test with ``inspect``; it is cut out too).
"""

from __future__ import annotations

import re

from nbconvert.preprocessors import Preprocessor
from traitlets import Bool

from .cells import BEGIN_HIDDEN as BEGIN
from .cells import END_HIDDEN as END
from .cells import hidden_lines, is_test

PLACEHOLDER = "# (hidden tests: run by the grader, not shown)"
REDACTED = "[hidden test line]"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_hidden(source: str) -> str:
    out, inside = [], False
    for line in source.splitlines():
        if BEGIN in line:
            inside = True
            out.append(line[: line.index(BEGIN)] + PLACEHOLDER)
        elif END in line:
            inside = False
        elif not inside:
            out.append(line)
    return "\n".join(out)


def redact(text: str, secrets: list[str]) -> str:
    text = ANSI.sub("", text)
    for secret in sorted(secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact_notebook(nb):
    secrets = [line for cell in nb.cells if is_test(cell) for line in hidden_lines(cell.source)]
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        test = is_test(cell)
        if test:
            cell.source = strip_hidden(cell.source)
        for output in cell.get("outputs", []):
            kind = output.get("output_type")
            if kind == "error":
                output["evalue"] = redact(str(output.get("evalue", "")), secrets)
                output["traceback"] = ([f"{output.get('ename')}: {output['evalue']}"] if test else
                                       [redact(line, secrets) for line in output.get("traceback", [])])
            elif kind == "stream":
                output["text"] = redact(output.get("text", ""), secrets)
            elif kind in ("execute_result", "display_data"):
                data = output.get("data", {})
                for mime in ("text/plain", "text/html", "text/markdown", "text/latex"):
                    if mime in data:
                        value = data[mime]
                        data[mime] = redact("".join(value) if isinstance(value, list) else value, secrets)
    return nb


class RedactHiddenTests(Preprocessor):
    """nbconvert preprocessor for ``GenerateFeedback``: see the module docstring."""

    enabled = Bool(True).tag(config=True)   # nbconvert preprocessors are off unless enabled

    def preprocess(self, nb, resources):
        return redact_notebook(nb), resources
