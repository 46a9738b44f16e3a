# Example /etc/jupyter/nbgrader_config.py (read by every user's server): the exchange on a shared
# filesystem. See docs/jupyterhub.md for the privacy settings.
c = get_config()  # noqa: F821

c.Exchange.root = "/shared/nbgrader/exchange"   # shared filesystem visible from login and compute nodes
c.Exchange.path_includes_course = True           # <root>/<course>/{outbound,inbound,feedback}
c.ExchangeSubmit.add_random_string = True        # submission folder names are unguessable
c.Exchange.timezone = "Europe/Paris"
# Students see assignments of the courses whose nbgrader-<course> group they belong to.
c.Authenticator.plugin_class = "nbgrader.auth.JupyterHubAuthPlugin"
