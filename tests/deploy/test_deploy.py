"""The deployment of autograder/deploy/ read as configuration (fast; the real hub is tests/deploy/test_hub.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from traitlets.config.loader import PyFileConfigLoader

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "autograder" / "deploy"


def hub_config(**env: str):
    import os

    saved = dict(os.environ)
    os.environ.update({"VLM_HUB_ENV": "/opt/course-env", **env})
    try:
        return PyFileConfigLoader("jupyterhub_config.py", path=str(DEPLOY)).load_config()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_every_option_of_the_hub_config_exists() -> None:
    # A misspelt or invented option (JupyterHub.enable_subdomains) is silently ignored by JupyterHub.
    from batchspawner import SlurmSpawner
    from jupyterhub.app import JupyterHub
    from jupyterhub.auth import PAMAuthenticator

    config = hub_config(VLM_HUB_SUBDOMAIN_HOST="https://hub.example.org")
    classes = {"JupyterHub": JupyterHub, "Spawner": SlurmSpawner, "BatchSpawnerBase": SlurmSpawner,
               "PAMAuthenticator": PAMAuthenticator}
    unknown = [f"{section}.{name}" for section, values in config.items() for name in values
               if not classes[section].class_traits().get(name)]
    assert not unknown, f"not options of JupyterHub: {unknown}"
    assert config.JupyterHub.subdomain_host == "https://hub.example.org"


def test_the_grader_service_runs_from_the_course_environment_with_scopes() -> None:
    config = hub_config()
    (service,) = config.JupyterHub.services
    assert service["command"][0] == "/opt/course-env/bin/jupyterhub-singleuser", "never the hub's PATH"
    assert service["environment"]["PATH"].startswith("/opt/course-env/bin:"), "nbgrader runs alembic by name"
    roles = {r["name"]: r for r in config.JupyterHub.load_roles}
    service_roles = [r for r in roles.values() if service["name"] in r.get("services", [])]
    assert service_roles and "read:users:groups" in service_roles[0]["scopes"]
    assert config.Spawner.cmd == ["/opt/course-env/bin/jupyterhub-singleuser"]


def test_an_allow_list_by_group() -> None:
    config = hub_config()
    assert config.PAMAuthenticator.allowed_groups == {"formgrade-vlm-course", "nbgrader-vlm-course"}
    assert "grader-vlm-course" in config.JupyterHub.load_groups["formgrade-vlm-course"]["users"]


def test_the_course_environment_has_the_single_user_server() -> None:
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "jupyterhub-singleuser").exists() and (bin_dir / "batchspawner-singleuser").exists()


def test_course_directory_config_loads_the_projects_redaction(tmp_path: Path) -> None:
    from autograder.feedback import RedactHiddenTests

    text = (DEPLOY / "course_nbgrader_config.py").read_text().replace('"/shared/vlm-course"', repr(str(REPO)))
    (tmp_path / "nbgrader_config.py").write_text(text)
    config = PyFileConfigLoader("nbgrader_config.py", path=str(tmp_path)).load_config()
    assert RedactHiddenTests in config.GenerateFeedback.preprocessors, "Generate Feedback would show hidden tests"
    assert config.CourseDirectory.root == str(tmp_path)



def test_docs_describe_what_exists() -> None:
    text = (REPO / "docs" / "jupyterhub.md").read_text()
    assert "enable_subdomains" not in text and "middle" not in text.lower()
    assert "/services/vlm-course/formgrader" in text and "make hub" in text
