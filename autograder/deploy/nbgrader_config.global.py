# The global nbgrader configuration every server reads (/etc/jupyter/nbgrader_config.py on a
# cluster; its folder is JUPYTER_CONFIG_PATH): the exchange on a shared filesystem.
import os

c = get_config()  # noqa: F821

c.Exchange.root = os.environ.get("VLM_HUB_EXCHANGE", "/shared/nbgrader/exchange")  # mode 1777
c.Exchange.path_includes_course = True           # <root>/<course>/{outbound,inbound,feedback}
c.ExchangeSubmit.add_random_string = True        # submission folder names are unguessable
c.Exchange.timezone = "UTC"
# Students see the assignments of the courses whose nbgrader-<course> hub group they belong to.
c.Authenticator.plugin_class = "nbgrader.auth.JupyterHubAuthPlugin"
