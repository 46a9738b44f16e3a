# Example ~grader-vlm-course/.jupyter/jupyter_server_config.py: the grader service's own server.
# Only with JupyterHub.enable_subdomains = True (each user/service on its own origin) is it safe to
# let the formgrader frame itself; without subdomains, open the formgrader in its own tab instead.
c = get_config()  # noqa: F821
c.ServerApp.tornado_settings = {"headers": {"Content-Security-Policy": "frame-ancestors 'self'"}}
