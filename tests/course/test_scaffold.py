"""`tools/notebooks.py new` gives a newcomer a module that the project's tests reject until its one
exercise is written, and accept as soon as it is: in a copy of the repository, scaffold a module, run
the module tests (they must fail), write the solution and a mistake, regenerate course/, run them again
(they must pass, the reference scoring full marks and the blank student notebook zero)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import nbformat
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
NAME = "99_scaffold_check"
SOLUTION = "    return x / x.norm(dim=dim, keepdim=True)"
MISTAKE = {"name": "divided by the norm of the whole tensor", "cell": "l2_normalize",
           "find": "x.norm(dim=dim, keepdim=True)", "replace": "x.norm()", "message": "whole tensor"}


def notebooks_tool():
    spec = importlib.util.spec_from_file_location("notebooks_tool", REPO / "tools" / "notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def copy_of_the_repository(destination: Path) -> Path:
    """The tracked files as they are in the working tree (uncommitted edits included)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("needs a git checkout to know which files are the project's")
    for name in filter(None, listed.stdout.split("\0")):
        source = REPO / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


def run_in(copy: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("VLM_COURSE_WORKSPACE", "PYTEST_ADDOPTS")}
    env.update(PYTHONPATH=os.pathsep.join(str(p) for p in (copy / "src", copy, copy / "tests")),
               MPLBACKEND="Agg")
    return subprocess.run([sys.executable, *args], cwd=copy, env=env, capture_output=True, text=True)


def module_tests(copy: Path, report: Path) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    """Run the module's tests in ``copy``; return the run and {test name: passed/failed/skipped}."""
    run = run_in(copy, "-m", "pytest", "-p", "no:cacheprovider", "-q", f"--junitxml={report}",
                 "tests/course/test_notebooks.py", "tests/course/test_mistakes.py", "-k", NAME)
    outcomes = {}
    for case in ElementTree.parse(report).iter("testcase"):
        failed = case.find("failure") is not None or case.find("error") is not None
        outcomes[case.get("name")] = "failed" if failed else "skipped" if case.find("skipped") is not None else "passed"
    return run, outcomes


def fill_in_the_exercise(copy: Path) -> None:
    path = copy / "solutions" / NAME / f"{NAME}.ipynb"
    notebook = nbformat.read(path, as_version=4)
    exercise = next(c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("solution"))
    exercise.source, count = re.subn(r"(### BEGIN SOLUTION\n).*?\n(\s*### END SOLUTION)",
                                     lambda m: m.group(1) + SOLUTION + "\n" + m.group(2), exercise.source, flags=re.S)
    assert count == 1, "the skeleton's exercise should have one solution region"
    nbformat.write(notebook, path)
    assert run_in(copy, "tools/notebooks.py", "clean", str(path)).returncode == 0
    (copy / "tests" / "mistakes" / f"{NAME}.yaml").write_text(yaml.safe_dump([MISTAKE], sort_keys=False))


@pytest.mark.notebook
def test_a_scaffolded_module_passes_once_its_exercise_is_written(tmp_path: Path) -> None:
    copy = copy_of_the_repository(tmp_path / "repo")
    new = run_in(copy, "tools/notebooks.py", "new", NAME)
    assert new.returncode == 0, f"tools/notebooks.py new failed:\n{new.stdout}\n{new.stderr}"
    assert f"| 99 | `{NAME}` |" in (copy / "README.md").read_text(encoding="utf-8"), "no README row"

    generate = run_in(copy, "-m", "autograder.cli", "generate", NAME)
    assert generate.returncode == 0, f"generating course/{NAME} failed:\n{generate.stderr[-3000:]}"
    run, outcomes = module_tests(copy, tmp_path / "unfilled.xml")
    assert run.returncode != 0, "the skeleton passes the module tests before its exercise is written"
    assert outcomes[f"test_reference_runs_cleanly_and_scores_full_marks[{NAME}]"] == "failed", \
        "the skeleton's unwritten reference solution was not caught"
    assert outcomes[f"test_every_exercise_has_mistakes_that_tests_catch[{NAME}]"] == "failed", \
        "the skeleton's empty mistakes file was not caught"
    assert outcomes[f"test_blank_student_notebook_scores_zero[{NAME}]"] == "passed", run.stdout[-3000:]

    fill_in_the_exercise(copy)
    generate = run_in(copy, "-m", "autograder.cli", "generate", NAME)
    assert generate.returncode == 0, f"generating course/{NAME} failed:\n{generate.stderr[-3000:]}"
    run, outcomes = module_tests(copy, tmp_path / "filled.xml")
    assert run.returncode == 0 and "failed" not in outcomes.values(), \
        f"the module fails its tests once its exercise is written:\n{run.stdout[-6000:]}"
    for test in ("test_reference_runs_cleanly_and_scores_full_marks", "test_blank_student_notebook_scores_zero",
                 "test_every_exercise_has_mistakes_that_tests_catch", "test_course_is_generated_from_solutions"):
        assert outcomes.get(f"{test}[{NAME}]") == "passed", f"{test} did not pass: {outcomes}"
    assert outcomes.get(f"test_mistake_is_caught_with_a_helpful_message[{NAME}: {MISTAKE['name']}]") == "passed", \
        f"the mistake was not caught: {outcomes}"


@pytest.fixture
def small_repo(tmp_path: Path) -> Path:
    for name in ("01_first", "03_third"):
        (tmp_path / "solutions" / name).mkdir(parents=True)
    (tmp_path / "tests" / "mistakes").mkdir(parents=True)
    (tmp_path / "README.md").write_text("| # | notebook |\n|---|---|\n| 01 | `01_first` | a |\n"
                                        "| 03 | `03_third` | c |\n\nafter\n", encoding="utf-8")
    return tmp_path


def test_new_writes_the_skeleton_and_a_readme_row_in_module_order(small_repo: Path) -> None:
    tool = notebooks_tool()
    written = tool.new_module("02_second_one", small_repo)
    assert [p.relative_to(small_repo).as_posix() for p in written] == [
        "solutions/02_second_one/02_second_one.ipynb", "tests/mistakes/02_second_one.yaml", "README.md"]
    rows = [line[:6] for line in (small_repo / "README.md").read_text().splitlines() if line.startswith("| 0")]
    assert rows == ["| 01 |", "| 02 |", "| 03 |"]
    assert yaml.safe_load((small_repo / "tests" / "mistakes" / "02_second_one.yaml").read_text()) == []
    notebook = nbformat.read(written[0], as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code[0].metadata == {"tags": ["setup"]} and "clock = setup_notebook(seed=0)" in code[0].source
    assert code[-1].source.startswith("clock.report()")
    assert notebook.cells[0].source.startswith("# 02 · Second one")
    assert tool.clean(nbformat.read(written[0], as_version=4)) == notebook, "the skeleton is stored clean"


@pytest.mark.parametrize("name, error", [
    ("7_short", "not a module name"), ("04_Upper", "not a module name"), ("04_trailing_", "not a module name"),
    ("04-dash", "not a module name"), ("04_", "not a module name"),
    ("01_first", "exists already"), ("03_other", "number 03 is taken by 03_third"),
])
def test_new_refuses_malformed_and_existing_names(small_repo: Path, name: str, error: str) -> None:
    before = sorted(p.relative_to(small_repo) for p in small_repo.rglob("*"))
    with pytest.raises(ValueError, match=error):
        notebooks_tool().new_module(name, small_repo)
    assert sorted(p.relative_to(small_repo) for p in small_repo.rglob("*")) == before, "a refusal writes nothing"
