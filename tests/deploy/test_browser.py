"""The course in a real browser, as a learner sees it: Debian's Chromium driven by Selenium through
its packaged chromedriver (nothing downloads a browser or a driver) against a plain ``jupyter lab``
of the course environment on 127.0.0.1, in a temporary workspace holding module 01.

Screenshots of each step stay in the test's temporary folder (``screens/``), for a person to look at
when a step fails. Skips with the reason where Chromium, its driver or Selenium is missing.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import browser
import nbformat
import pytest

from autograder import cells
from autograder.base import REPO, SOLUTIONS

MODULE = "01_attention"
KERNEL = "vlm-course"


def notebooks(folder: Path) -> None:
    """solved.ipynb: the release with every exercise answered; wrong.ipynb: one answer broken."""
    release = nbformat.read(REPO / "course" / MODULE / f"{MODULE}.ipynb", as_version=4)
    source = nbformat.read(SOLUTIONS / MODULE / f"{MODULE}.ipynb", as_version=4)
    answers = {cells.grade_id(c): c.source for c in source.cells if cells.is_solution(c)}
    for cell in release.cells:
        if cells.is_solution(cell):
            cell.source = answers[cells.grade_id(cell)]
    nbformat.write(release, folder / "solved.ipynb")
    for cell in release.cells:
        if cells.grade_id(cell) == "softmax":          # a classic slip: normalised over the whole tensor
            cell.source = "def softmax(x, dim=-1):\n    return x.exp() / x.exp().sum()\n"
    nbformat.write(release, folder / "wrong.ipynb")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    reason = browser.missing()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("browser")
    folder = work / MODULE
    folder.mkdir()
    notebooks(folder)
    for extra in (REPO / "course" / MODULE).iterdir():       # data files the module reads, if any
        if extra.suffix != ".ipynb":
            (shutil.copytree if extra.is_dir() else shutil.copy)(extra, folder / extra.name)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token = secrets.token_hex(16)
    # Not the tests' MPLBACKEND=Agg: the kernel must draw inline figures as a learner's does.
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env = {**env, "HOME": str(work), "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
           "PATH": f"{Path(sys.prefix) / 'bin'}:{os.environ.get('PATH', '')}"}
    log = open(work / "lab.log", "wb")
    # expose_app_in_browser: the test runs Lab commands (Run All) the way the menu does, by name.
    server = subprocess.Popen(
        [str(Path(sys.prefix) / "bin" / "jupyter"), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}", "--LabApp.expose_app_in_browser=True",
         "--ServerApp.open_browser=False", *(["--allow-root"] if os.geteuid() == 0 else [])],
        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((work / "lab.log").read_text()[-3000:]) from None
                time.sleep(0.5)
        with browser.chromium(work) as driver:
            yield {"driver": driver, "url": url, "token": token, "work": work, "screens": work / "screens"}
    finally:
        # SIGTERM: the server shuts its kernels down first; then anything left of its session goes.
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(server.pid, sig)
            except ProcessLookupError:
                break
            try:
                server.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        log.close()


def shot(lab: dict, name: str) -> None:
    browser.shot(lab["driver"], lab["screens"], name)


def wait_for(lab: dict, script: str, what: str, timeout: float = 120.0):
    return browser.wait_for(lab["driver"], lab["screens"], script, what, timeout)


def open_notebook(lab: dict, name: str) -> None:
    lab["driver"].get(f"{lab['url']}/lab/tree/{MODULE}/{name}?token={lab['token']}")
    # Lab restores the notebooks of the last visit too: wait until the one asked for is in front.
    wait_for(lab, "const w = window.jupyterapp && jupyterapp.shell.currentWidget;"
                  f"return !!(w && w.context && w.context.path === '{MODULE}/{name}' && w.sessionContext"
                  " && w.sessionContext.session && w.sessionContext.session.kernel"
                  " && w.sessionContext.session.kernel.connectionStatus === 'connected')", f"{name} with a kernel")


CURRENT = "const w = jupyterapp.shell.currentWidget;"


def test_learner_runs_the_notebook_and_sees_no_instructor_tools(lab) -> None:
    open_notebook(lab, "solved.ipynb")
    kernel = lab["driver"].execute_script(CURRENT + "return w.sessionContext.session.kernel.name")
    shot(lab, "1-opened")
    assert kernel == KERNEL
    # Run All, as the Run menu does; wait until every code cell has run and a figure is drawn.
    lab["driver"].execute_script("jupyterapp.commands.execute('notebook:run-all-cells')")
    wait_for(lab, CURRENT + "const c = w.content.widgets.filter(x => x.model.type === 'code');"
                  "return c.every(x => x.model.executionCount !== null) && !w.sessionContext.session.kernel"
                  ".status.startsWith('busy') && w.sessionContext.session.kernel.status === 'idle'",
             "Run All", timeout=240)
    shot(lab, "2-run-all")
    # Lab draws only the cells in view, so the outputs are read from the notebook's model.
    outputs = lab["driver"].execute_script(
        CURRENT + "return w.content.widgets.filter(x => x.model.type === 'code')"
                  ".map(x => x.model.outputs.toJSON())")
    errors = [o for cell in outputs for o in cell
              if o["output_type"] == "error" or (o["output_type"] == "stream" and o["name"] == "stderr")]
    assert not errors, f"Run All printed errors or warnings: {errors[:3]}"
    drawn = [i for i, cell in enumerate(outputs) if any("image/png" in o.get("data", {}) for o in cell)]
    assert drawn, "Run All drew no figure"
    # ... and the browser shows the first one as an image.
    lab["driver"].execute_script(CURRENT + "const c = w.content.widgets.filter(x => x.model.type === 'code')"
                                 f"[{drawn[0]}]; w.content.scrollToCell(c)")
    wait_for(lab, "return [...document.querySelectorAll('.jp-RenderedImage img')].some(i => i.naturalWidth > 100)",
             "a figure on screen")
    shot(lab, "2b-figure")
    moving_a_slider_redraws_the_explorer(lab, outputs)

    # Instructor tools: nbgrader's formgrader and create-assignment plugins are not loaded for learners,
    # and no menu or sidebar of Lab names them.
    plugins = lab["driver"].execute_script(
        "return ['@jupyter/nbgrader:formgrader', '@jupyter/nbgrader:create-assignment']"
        ".filter(p => jupyterapp.hasPlugin(p))")
    assert plugins == [], f"instructor plugins loaded for a learner: {plugins}"
    texts = []
    for index in range(lab["driver"].execute_script("return document.querySelectorAll('.lm-MenuBar-item').length")):
        lab["driver"].execute_script(f"document.querySelectorAll('.lm-MenuBar-item')[{index}]"
                                     ".dispatchEvent(new MouseEvent('mousedown', {bubbles: true, button: 0}))")
        time.sleep(0.3)
        texts.append(lab["driver"].execute_script(
            "return [...document.querySelectorAll('.lm-Menu')].map(m => m.innerText).join('\\n')"))
        lab["driver"].execute_script("document.dispatchEvent(new KeyboardEvent('keydown', {key: 'Escape', keyCode: 27,"
                                     " bubbles: true}))")
    texts.append(lab["driver"].execute_script(
        "return [...document.querySelectorAll('.lm-TabBar-tab')].map(t => t.title + ' ' + t.innerText).join('\\n')"))
    shown = "\n".join(texts)
    assert "Assignments" in shown or "Validate" in shown or "Kernel" in shown, "the menus were not read"
    for tool in ("Formgrader", "Create Assignment"):
        assert tool.lower() not in shown.lower(), f"a learner sees {tool}"
    shot(lab, "3-menus")


WIDGET = "application/vnd.jupyter.widget-view+json"


def moving_a_slider_redraws_the_explorer(lab: dict, outputs: list) -> None:
    """Module 01's attention explorer: a slider moved with the keyboard redraws the learner's weights."""
    from selenium.webdriver.common.keys import Keys

    cell = next((i for i, c in enumerate(outputs) if any(WIDGET in o.get("data", {}) for o in c)), None)
    assert cell is not None, "Run All displayed no widget (module 01's attention explorer)"
    node = CURRENT + f"const n = w.content.widgets.filter(x => x.model.type === 'code')[{cell}].node;"
    lab["driver"].execute_script(CURRENT + f"w.content.scrollToCell(w.content.widgets.filter(x => x.model.type"
                                 f" === 'code')[{cell}])")
    # The widget manager renders the sliders and the Output widget draws its first figure.
    wait_for(lab, node + "return n.querySelector('.widget-slider .noUi-handle') && n.querySelector('.widget-output"
                         " img') && n.querySelector('.widget-output img').naturalWidth > 100", "the explorer drawn")
    picture = node + "return n.querySelector('.widget-output img').src"
    before = lab["driver"].execute_script(picture)
    shot(lab, "2c-widget-before")
    handle = lab["driver"].execute_script(node + "return n.querySelector('.widget-slider .noUi-handle')")
    handle.click()
    for _ in range(10):                                   # query x: 0.5 -> 1.5, in steps of 0.1
        handle.send_keys(Keys.ARROW_RIGHT)
    wait_for(lab, picture.replace("return ", "return n.querySelector('.widget-output img') && ") +
             f" !== {before!r}", "the explorer redrawn after the slider moved")
    shot(lab, "2d-widget-after")
    readout = lab["driver"].execute_script(node + "return n.querySelector('.widget-readout').innerText")
    assert readout.strip() == "1.50", f"query x reads {readout!r} after ten steps right from 0.50"


def validate(lab: dict, name: str) -> str:
    open_notebook(lab, name)
    # A dialog closes asynchronously: the previous notebook's result must be gone before this one is read.
    wait_for(lab, "return !document.querySelector('.jp-Dialog')", "no dialog open")
    # The toolbar of the notebook in front (other open notebooks keep theirs, hidden).
    wait_for(lab, CURRENT + "const b = [...w.toolbar.node.querySelectorAll('button, jp-button')]"
                  ".find(b => /validate/i.test(b.innerText + b.title) && b.offsetWidth > 0);"
                  "if (b) { b.click(); return true; } return false", "the Validate button")
    text = wait_for(lab, "const d = document.querySelector('.jp-Dialog'); return d && !/validating/i.test(d.innerText)"
                         " && d.innerText", f"Validate on {name}", timeout=240)
    shot(lab, f"4-validate-{name.split('.')[0]}")
    lab["driver"].execute_script("document.querySelectorAll('.jp-Dialog button').forEach(b => b.click())")
    return text


def test_validate_passes_a_solved_notebook_and_names_the_failing_cell(lab) -> None:
    solved = validate(lab, "solved.ipynb")
    assert "passes all the tests" in solved and "fail" not in solved.lower(), solved[:500]
    wrong = validate(lab, "wrong.ipynb")
    # nbgrader's dialog names the failing cell by showing its code and traceback: the softmax test.
    assert "passes all the tests" not in wrong and "cell failed" in wrong, wrong[:800]
    assert "assert_close(softmax(x, dim=-1)" in wrong and "AssertionError" in wrong, wrong[:800]
