"""The learner-facing commands: self-check of a notebook, and the JupyterLab set-up of `make start`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from harness import student_path

from autograder.selfcheck import check_notebook


def test_self_check_lists_each_test_with_reason_and_points(capsys: pytest.CaptureFixture[str]) -> None:
    status = check_notebook(student_path("01_attention"))
    out = capsys.readouterr().out
    assert status == 1, "an untouched notebook must not pass its self-check"
    assert "FAIL  test_softmax" in out and "0/2" in out
    assert "NotImplementedError" in out, "the reason for each failure is printed"
    assert "Score on the visible tests: 0/" in out
    assert "BEGIN HIDDEN" not in out


def jupyter(*args: str) -> str:
    jupyter_bin = Path(sys.executable).parent / "jupyter"
    result = subprocess.run([str(jupyter_bin), *args], capture_output=True, text=True, check=True)
    return result.stdout + result.stderr


def test_jupyterlab_has_widgets_and_the_student_side_of_nbgrader() -> None:
    labextensions = jupyter("labextension", "list")
    assert "@jupyter-widgets/jupyterlab-manager" in labextensions
    assert "@jupyter/nbgrader" in labextensions
    # The plugin ids that nbgrader's lab extension really registers (read from its bundle), not
    # names that look right: a wrong id disables nothing and learners get the instructor tools.
    bundle = Path(sys.prefix) / "share/jupyter/labextensions/@jupyter/nbgrader/static"
    registered = {m for f in bundle.glob("*.js") for m in re.findall(r'"(@jupyter/nbgrader:[a-z-]+)"', f.read_text())}
    instructor = {"@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment"}
    assert instructor <= registered, f"nbgrader's plugins are {sorted(registered)}"
    page_config = json.loads((Path(sys.prefix) / "etc/jupyter/labconfig/page_config.json").read_text())
    disabled = {k for k, v in page_config.get("disabledExtensions", {}).items() if v}
    locked = {k for k, v in page_config.get("lockedExtensions", {}).items() if v}
    assert instructor <= disabled, f"learners must not get the instructor plugins; disabled: {sorted(disabled)}"
    assert instructor <= locked, "a disabled but unlocked plugin can be re-enabled from JupyterLab's settings"
    listing = labextensions.split("Disabled extensions:")[-1] if "Disabled extensions:" in labextensions else ""
    assert all(plugin in listing for plugin in instructor), "jupyter labextension list shows them disabled"
    server = jupyter("server", "extension", "list")
    assert "nbgrader.server_extensions.validate_assignment" in server
    assert "vlm-course" in jupyter("kernelspec", "list")
