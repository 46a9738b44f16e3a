# The grader service's server (passed with --config by jupyterhub_config.py): the formgrader is on
# here, and only here. The course environment disables it for learners (`make env`).
import os

c = get_config()  # noqa: F821

c.ServerApp.jpserver_extensions = {"nbgrader.server_extensions.formgrader": True}
c.ServerApp.default_url = "/formgrader"
# With subdomains (JupyterHub.subdomain_host) the service has an origin of its own, so letting it
# frame itself exposes nobody else: the formgrader's JupyterLab tab then works. Without subdomains,
# never: open the formgrader in its own browser tab instead.
if os.environ.get("VLM_HUB_SUBDOMAINS") == "1":   # set by jupyterhub_config.py with subdomain_host
    c.ServerApp.tornado_settings = {"headers": {"Content-Security-Policy": "frame-ancestors 'self'"}}
