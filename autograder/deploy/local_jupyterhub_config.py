# The local hub of autograder/hub.py (admins trying the course, and the end-to-end test): the
# cluster's configuration unchanged but for what a single machine needs. Everything on 127.0.0.1;
# learners' servers are local processes standing in for SLURM jobs.
import os

c = get_config()  # noqa: F821
load_subconfig(os.path.join(os.path.dirname(os.path.abspath(__file__)), "jupyterhub_config.py"))  # noqa: F821

c.JupyterHub.spawner_class = "localprocess"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(os.environ["VLM_HUB_HUB_PORT"])
c.ConfigurableHTTPProxy.command = [os.environ["VLM_HUB_PROXY"]]
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{os.environ['VLM_HUB_PROXY_API_PORT']}"
c.Spawner.http_timeout = 60
c.Spawner.start_timeout = 90
c.JupyterHub.db_url = "sqlite:///" + os.path.join(os.environ["VLM_HUB_STATE"], "jupyterhub.sqlite")
c.JupyterHub.cookie_secret_file = os.path.join(os.environ["VLM_HUB_STATE"], "cookie_secret")
c.JupyterHub.pid_file = os.path.join(os.environ["VLM_HUB_STATE"], "jupyterhub.pid")
# The local hub's own admin token (the tool starts servers and hands out users' tokens with it).
c.JupyterHub.services.append({"name": "localhub-admin", "api_token": os.environ["VLM_HUB_ADMIN_TOKEN"]})
c.JupyterHub.load_roles.append({"name": "localhub-admin", "services": ["localhub-admin"],
                                "scopes": ["admin:users", "admin:servers", "tokens", "list:services",
                                           "read:services"]})
