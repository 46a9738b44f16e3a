"""Feedback that never shows hidden tests (used by ``nbgrader generate_feedback`` through the config).

nbgrader's feedback is the autograded notebook rendered as HTML: the hidden tests are in it, and the
traceback of a failing hidden assert prints the failing line. :class:`RedactHiddenTests` removes,
before rendering:

- the ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS`` region of every test cell;
- every traceback of a test cell (kept: the error's name and message, e.g. the assert's message);
- any line of hidden-test code that appears anywhere in any output (student code can print the
  source of the calling test with ``inspect``; it is cut out too);
- every output from the first hidden test on, except each test cell's verdict (the error's name and
  its message, bounded): from then on the kernel has run hidden tests, and whatever it prints can
  carry them in a form no line match finds (``base64`` of ``In``, an image of the text).
"""

from __future__ import annotations

import re

from nbconvert.preprocessors import Preprocessor
from nbformat import NotebookNode
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


AFTER_HIDDEN = "(output not shown in feedback: this cell ran after a hidden test)\n"
MAX_VERDICT = 500        # characters of a hidden test's error message shown


def verdict_only(outputs: list, secrets: list[str]) -> list:
    """A test cell's outputs reduced to its verdict: each error's name and bounded, redacted message."""
    verdicts = []
    for output in outputs:
        if output.get("output_type") == "error":
            message = redact(str(output.get("evalue", "")), secrets)[:MAX_VERDICT]
            verdicts.append(NotebookNode({**output, "evalue": message,
                                          "traceback": [f"{output.get('ename')}: {message}"]}))
    return verdicts


def redact_notebook(nb):
    secrets = [line for cell in nb.cells if is_test(cell) for line in hidden_lines(cell.source)]
    after_hidden = False
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        test = is_test(cell)
        after_hidden = after_hidden or (test and BEGIN in cell.source)
        if test:
            cell.source = strip_hidden(cell.source)
        if after_hidden:
            outputs = cell.get("outputs", [])
            note = [NotebookNode(output_type="stream", name="stdout", text=AFTER_HIDDEN)] if outputs else []
            cell["outputs"] = verdict_only(outputs, secrets) if test else note
            continue
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
