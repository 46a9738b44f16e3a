"""The project's setup: one dependency list, the two README commands, CI calling the test command."""

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
