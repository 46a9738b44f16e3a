# Example JupyterHub (>= 4) configuration for the VLM course on an HPC cluster.
# See docs/jupyterhub.md. Adapt names, paths and partitions; nothing here is secret.
import batchspawner  # noqa: F401  (registers the spawner API handler)

c = get_config()  # noqa: F821

COURSE = "vlm-course"                  # the nbgrader course id = the name of the grader service
GRADER_USER = f"grader-{COURSE}"       # a Unix account that owns the course directory
INSTRUCTORS = ["instructor1", "ta1"]

# --- notebook servers on compute nodes (batchspawner) ---------------------------------------
c.JupyterHub.spawner_class = "batchspawner.SlurmSpawner"
c.JupyterHub.hub_ip = "0.0.0.0"        # compute nodes must reach the hub
c.Spawner.http_timeout = 300           # jobs wait in the queue
c.Spawner.start_timeout = 600
c.BatchSpawnerBase.req_partition = "interactive"
c.BatchSpawnerBase.req_runtime = "04:00:00"
c.BatchSpawnerBase.req_memory = "16G"
c.BatchSpawnerBase.req_nprocs = "4"
c.BatchSpawnerBase.req_prologue = "source /shared/vlm-course/.venv/bin/activate"
c.Spawner.default_url = "/lab"

# --- one grader service per course (JupyterHub 4+ roles) ------------------------------------
c.JupyterHub.load_groups = {
    f"formgrade-{COURSE}": INSTRUCTORS,   # may open the course's formgrader
    f"nbgrader-{COURSE}": [],            # students of the course (filled by your enrolment sync)
}
c.JupyterHub.load_roles = [
    {
        "name": f"formgrade-{COURSE}",
        "groups": [f"formgrade-{COURSE}"],
        "scopes": [
            f"access:services!service={COURSE}",
            "list:services",
            f"read:services!service={COURSE}",
        ],
    },
    {
        "name": f"nbgrader-{COURSE}",
        "groups": [f"nbgrader-{COURSE}"],
        "scopes": ["list:services", f"read:services!service={COURSE}"],
    },
    # the assignment-list / course-list extensions call the hub API with the server's token
    {"name": "server", "scopes": ["inherit"]},
]
c.JupyterHub.services = [
    {
        "name": COURSE,
        "url": "http://127.0.0.1:9999",
        "command": ["jupyterhub-singleuser", "--ServerApp.default_url=/formgrader"],
        "user": GRADER_USER,
        "cwd": f"/home/{GRADER_USER}/{COURSE}",
        "environment": {"JUPYTERHUB_DEFAULT_URL": "/formgrader"},
        "oauth_no_confirm": True,
    }
]
# The formgrader embeds pages in an iframe, which JupyterHub >= 4.1 forbids by default
# (Content-Security-Policy: frame-ancestors 'none'). Safe options, see docs/jupyterhub.md:
#   1. open the formgrader in its own browser tab (no configuration), or
#   2. give every user and service its own origin, then allow same-origin frames on the grader only:
# c.JupyterHub.enable_subdomains = True
# c.JupyterHub.subdomain_host = "https://hub.example.org"
