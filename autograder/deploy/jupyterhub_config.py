# JupyterHub configuration of the VLM course on an HPC cluster: one course, one hub.
# See docs/jupyterhub.md. The site-specific values come from the VLM_HUB_* variables below, with a
# cluster's defaults; the local hub of the tests (autograder/hub.py) sets them and changes only the
# spawner (autograder/deploy/local_jupyterhub_config.py). Nothing here is secret.
import grp
import os

c = get_config()  # noqa: F821

COURSE = "vlm-course"                        # nbgrader course id = name of the grader service
GRADER = f"grader-{COURSE}"                  # Unix account owning the course directory
INSTRUCTORS = f"formgrade-{COURSE}"          # Unix group and hub group: may open the formgrader
STUDENTS = f"nbgrader-{COURSE}"              # Unix group and hub group: learners of the course
ENV = os.environ.get("VLM_HUB_ENV", "/shared/vlm-course/.venv")        # the course environment
COURSE_DIR = os.environ.get("VLM_HUB_COURSE_DIR", f"/home/{GRADER}/{COURSE}")
JUPYTER_CONFIG = os.environ.get("VLM_HUB_JUPYTER_CONFIG", "/etc/jupyter")  # holds the global nbgrader_config.py
EXCHANGE = os.environ.get("VLM_HUB_EXCHANGE", "/shared/nbgrader/exchange")  # read by nbgrader_config.global.py
SERVICE_PORT = int(os.environ.get("VLM_HUB_SERVICE_PORT", "9999"))
DEPLOY = os.path.dirname(os.path.abspath(__file__))
# Servers and the grader service find the course's tools (nbgrader's alembic, jupyter) first, never the hub's.
PATH = f"{ENV}/bin:/usr/local/bin:/usr/bin:/bin"


def members(group: str) -> list[str]:
    try:
        return list(grp.getgrnam(group).gr_mem)
    except KeyError:
        return []


# --- who may log in: PAM, allowed by Unix group (JupyterHub >= 5 lets nobody in without a list) ---
c.JupyterHub.authenticator_class = "pam"
c.PAMAuthenticator.allowed_groups = {INSTRUCTORS, STUDENTS}
# The grader account is a hub user of the instructors' group: the formgrader asks the hub for the
# courses of the service's user (a 404 otherwise, and a 500 page).
c.JupyterHub.load_groups = {INSTRUCTORS: {"users": sorted({GRADER, *members(INSTRUCTORS)})},
                            STUDENTS: {"users": members(STUDENTS)}}

# --- learners' servers: started from the course environment, by absolute path ----------------
c.JupyterHub.hub_ip = os.environ.get("VLM_HUB_HUB_IP", "0.0.0.0")   # compute nodes must reach the hub
c.JupyterHub.ip = os.environ.get("VLM_HUB_IP", "")
c.JupyterHub.port = int(os.environ.get("VLM_HUB_PORT", "8000"))
c.Spawner.cmd = [f"{ENV}/bin/jupyterhub-singleuser"]
c.Spawner.default_url = "/lab"
c.Spawner.environment = {"PATH": PATH, "JUPYTER_CONFIG_PATH": JUPYTER_CONFIG, "VLM_HUB_EXCHANGE": EXCHANGE}
c.Spawner.http_timeout = 300                 # a SLURM job may wait in the queue
c.Spawner.start_timeout = 600
c.JupyterHub.spawner_class = "batchspawner.SlurmSpawner"
c.BatchSpawnerBase.batchspawner_singleuser_cmd = f"{ENV}/bin/batchspawner-singleuser"
c.BatchSpawnerBase.req_partition = "interactive"
c.BatchSpawnerBase.req_runtime = "04:00:00"
c.BatchSpawnerBase.req_memory = "16G"
c.BatchSpawnerBase.req_nprocs = "4"
c.BatchSpawnerBase.req_prologue = f"export PATH={PATH} JUPYTER_CONFIG_PATH={JUPYTER_CONFIG} VLM_HUB_EXCHANGE={EXCHANGE}"

# --- the grader service: the formgrader, as the grader account, in the course directory -------
c.JupyterHub.services = [{
    "name": COURSE,
    "url": f"http://127.0.0.1:{SERVICE_PORT}",
    "command": [f"{ENV}/bin/jupyterhub-singleuser", f"--config={DEPLOY}/grader_jupyter_server_config.py"],
    "user": GRADER,
    "cwd": COURSE_DIR,
    "environment": {"PATH": PATH, "JUPYTER_CONFIG_PATH": JUPYTER_CONFIG, "VLM_HUB_EXCHANGE": EXCHANGE,
                    "VLM_COURSE_WORKSPACE": COURSE_DIR,
                    "JUPYTERHUB_DEFAULT_URL": "/formgrader"},
    "oauth_no_confirm": True,
    # the hub stops if the formgrader is not up in time: importing JupyterLab and nbgrader from a
    # shared filesystem, or on a busy node, takes longer than the default 30 s
    "timeout": 180,
}]
c.JupyterHub.load_roles = [
    {"name": INSTRUCTORS, "groups": [INSTRUCTORS],
     "scopes": [f"access:services!service={COURSE}", "list:services", f"read:services!service={COURSE}"]},
    {"name": STUDENTS, "groups": [STUDENTS],
     "scopes": ["list:services", f"read:services!service={COURSE}"]},
    # The service's own token: nbgrader's JupyterHubAuthPlugin reads users and their groups and adds
    # students to the course's group (without these scopes the formgrader answers 403/500).
    {"name": f"{COURSE}-service", "services": [COURSE],
     "scopes": ["list:users", "read:users", "read:users:groups", "list:groups", "read:groups",
                f"groups!group={STUDENTS}"]},
    # Each server's token may read its owner's groups: the assignment list shows the user's courses.
    {"name": "server", "scopes": ["inherit"]},
]

# --- the formgrader iframe (JupyterHub >= 4.1 forbids framing): either open it in its own tab at
# /services/vlm-course/formgrader (nothing to configure), or give every user and service an origin
# of its own (wildcard DNS and certificate for *.hub.example.org: JupyterHub >= 5 names them
# <user>.hub.example.org and vlm-course--service.hub.example.org);
# grader_jupyter_server_config.py then lets the formgrader frame itself.
if os.environ.get("VLM_HUB_SUBDOMAIN_HOST"):
    c.JupyterHub.subdomain_host = os.environ["VLM_HUB_SUBDOMAIN_HOST"]   # e.g. https://hub.example.org
    c.JupyterHub.services[0]["environment"]["VLM_HUB_SUBDOMAINS"] = "1"
