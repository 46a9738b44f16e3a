"""The project's setup: one dependency list, the two README commands, CI calling the test command."""

import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def requirements() -> list[str]:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_every_requirement_is_pinned():
    unpinned = [r for r in requirements() if "==" not in r]
    assert not unpinned, f"pin these in requirements.txt: {unpinned}"


def test_environment_yml_installs_requirements_txt():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert pip_sections and "-r requirements.txt" in pip_sections[0], "environment.yml must install requirements.txt"
    pythons = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python")]
    assert pythons == ["python=3.11"], "environment.yml pins the Python the course is tested with"


def test_pyproject_reads_requirements_txt():
    text = (REPO / "pyproject.toml").read_text()
    assert 'dependencies = { file = ["requirements.txt"] }' in text


def test_nbformat_imports_without_the_slow_iri_grammar():
    """Every grading step is an nbgrader process that imports nbformat, hence jsonschema's format
    checkers: with rfc3987-syntax among them each process spends about 3 s building a grammar."""
    probe = "import sys, nbformat, jsonschema; print('rfc3987_syntax' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "False", "nbformat's import pulled in rfc3987_syntax: keep jsonschema pinned below 4.25"


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    assert "make test" in readme and "make start" in readme
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_no_machine_specific_paths_in_the_course():
    offenders = []
    for path in list((REPO / "course").rglob("*.ipynb")) + list((REPO / "solutions").rglob("*.ipynb")):
        text = path.read_text(encoding="utf-8")
        if "/work/" in text or "/tmp/" in text or "/root/" in text:
            offenders.append(str(path.relative_to(REPO)))
    assert not offenders, f"notebooks mention paths of a particular machine: {offenders}"
