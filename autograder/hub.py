"""A real JupyterHub on 127.0.0.1 for one course, in one command (admins trying the course, and the
end-to-end test): ``python -m autograder.hub start|stop [--root DIR] [--students N]`` or ``make hub``.

It lays out what docs/jupyterhub.md describes for a cluster, on this machine, as root:

- Unix groups ``formgrade-vlm-course`` (instructors), ``nbgrader-vlm-course`` (students) and
  ``grader-vlm-course`` (the grader account's own group, which alone may read the checkout's
  ``solutions/`` and ``tests/``); local PAM users: the grader account, one instructor, N students,
  with random passwords (kept in ``<root>/state/users.json``, mode 0600);
- the course directory in the grader's home (mode 0700) with the course-directory
  ``nbgrader_config.py`` that loads the project's configuration;
- the exchange (mode 1777) and the global ``nbgrader_config.py`` every server reads;
- JupyterHub from the course environment with ``autograder/deploy/local_jupyterhub_config.py`` (the
  cluster's configuration but for the spawner), configurable-http-proxy from npm (installed into
  ``.hub/`` of the checkout on first use), the grader service;
- the assignments released through the exchange by the grader account.

With ``--domain hub.test`` the hub runs with subdomains (``JupyterHub.subdomain_host``): every user
and the grader service get an origin of their own, ``<user>.hub.test`` and
``vlm-course--service.hub.test``, all on this machine's loopback. Nothing resolves those names by
itself: a browser needs ``--host-resolver-rules="MAP *.hub.test 127.0.0.1, MAP hub.test 127.0.0.1"``
(Chromium) or lines in ``/etc/hosts``; this tool talks to them on 127.0.0.1 with the right ``Host``.

``stop`` stops the hub (its servers and the service with it), ends any process left to the users it
created, removes the users, groups and the folder, and gives the checkout its modes back.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .base import COURSE_ID, REPO

DEPLOY = REPO / "autograder" / "deploy"
PROXY_VERSION = "5.3.0"                      # configurable-http-proxy from npm, pinned
PROXY_DIR = REPO / ".hub"                    # gitignored
GRADER = f"grader-{COURSE_ID}"
INSTRUCTORS, STUDENTS = f"formgrade-{COURSE_ID}", f"nbgrader-{COURSE_ID}"
INSTRUCTOR = "vlm-instructor"
STUDENT = "vlm-student{}"
# Folders of the checkout only the grader's group may enter: the reference notebooks (solutions and
# hidden tests), the tests (they build graded submissions) and the default grading workspace.
PRIVATE = ("solutions", "tests", "autograder/workspace")
START_TIMEOUT = 120.0


class HubError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(*command: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        raise HubError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def proxy_command() -> Path:
    """configurable-http-proxy, installed from npm into the checkout's .hub/ when missing."""
    binary = PROXY_DIR / "node_modules" / ".bin" / "configurable-http-proxy"
    if not binary.exists():
        if shutil.which("npm") is None:
            raise HubError("npm is needed to install configurable-http-proxy (apt-get install npm)")
        PROXY_DIR.mkdir(exist_ok=True)
        run("npm", "install", "--no-audit", "--no-fund", "--prefix", str(PROXY_DIR),
            f"configurable-http-proxy@{PROXY_VERSION}", timeout=300)
    return binary


def unavailable() -> str | None:
    """Why a local hub cannot run here, or None."""
    if os.geteuid() != 0:
        return "the local hub creates Unix users and runs PAM: it needs root"
    for tool in ("useradd", "userdel", "groupadd", "chpasswd", "runuser"):
        if shutil.which(tool) is None:
            return f"{tool} is missing"
    if shutil.which("node") is None or (shutil.which("npm") is None and not (PROXY_DIR / "node_modules").exists()):
        return "node and npm are needed for configurable-http-proxy (apt-get install nodejs npm)"
    # Learners' servers and the grader run the course environment's Python: its base installation
    # too (a pyenv Python under /root is out of their reach).
    roots = (Path(sys.prefix), Path(sys.base_prefix), Path(os.path.realpath(sys.executable)).parent, REPO / "src")
    blocked = [q for p in roots for q in [p, *p.parents] if not q.stat().st_mode & 0o001]
    if blocked:
        return (f"other users cannot enter {blocked[0]}: learners and the grader must reach the course "
                "environment and its Python (build it from a system Python: make env PYTHON=/usr/bin/python3)")
    return None


@dataclass
class LocalHub:
    root: Path
    students: int = 2
    assignments: list[str] = field(default_factory=lambda: ["01_attention"])
    port: int = 0
    domain: str = ""              # e.g. "hub.test": subdomains (JupyterHub.subdomain_host) on 127.0.0.1
    users: dict[str, str] = field(default_factory=dict)      # name -> password
    admin_token: str = ""
    process: subprocess.Popen | None = None

    # ------------------------------------------------------------------------------- layout
    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def course_dir(self) -> Path:
        return self.root / "home" / GRADER / COURSE_ID

    @property
    def exchange(self) -> Path:
        return self.root / "exchange"

    @property
    def url(self) -> str:
        """The hub's address as a browser uses it."""
        return f"http://{self.domain or '127.0.0.1'}:{self.port}"

    @property
    def service_url(self) -> str:
        """The grader service's origin: the hub's, or its own subdomain (JupyterHub's default naming)."""
        return f"http://{COURSE_ID}--service.{self.domain}:{self.port}" if self.domain else self.url

    def open(self, url: str, **request) -> urllib.request.Request:
        """A request for ``url`` sent to the proxy on 127.0.0.1, with the ``Host`` the name says
        (so the subdomains need no DNS); ``request``: urllib.request.Request's other arguments."""
        parsed = urllib.parse.urlsplit(url)
        local = parsed._replace(netloc=f"127.0.0.1:{self.port}").geturl()
        headers = {**request.pop("headers", {}), "Host": parsed.netloc}
        return urllib.request.Request(local, headers=headers, **request)

    @property
    def student_names(self) -> list[str]:
        return [STUDENT.format(i + 1) for i in range(self.students)]

    def env(self) -> dict[str, str]:
        """The hub's environment: the VLM_HUB_* values of the configuration, and a PATH *without* the
        course environment (the hub must start every course tool by absolute path)."""
        return {"PATH": f"{proxy_command().parent}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
                "VLM_HUB_ENV": sys.prefix, "VLM_HUB_COURSE_DIR": str(self.course_dir),
                "VLM_HUB_JUPYTER_CONFIG": str(self.root / "etc" / "jupyter"), "VLM_HUB_EXCHANGE": str(self.exchange),
                "VLM_HUB_IP": "127.0.0.1", "VLM_HUB_PORT": str(self.port), "VLM_HUB_HUB_IP": "127.0.0.1",
                "VLM_HUB_HUB_PORT": str(free_port()), "VLM_HUB_PROXY_API_PORT": str(free_port()),
                "VLM_HUB_SERVICE_PORT": str(free_port()), "VLM_HUB_PROXY": str(proxy_command()),
                "VLM_HUB_STATE": str(self.state), "VLM_HUB_ADMIN_TOKEN": self.admin_token,
                "CONFIGPROXY_AUTH_TOKEN": secrets.token_hex(16),
                **({"VLM_HUB_SUBDOMAIN_HOST": self.url} if self.domain else {})}

    # -------------------------------------------------------------------------------- start
    def start(self) -> LocalHub:
        reason = unavailable()
        if reason:
            raise HubError(reason)
        self.root = self.root.resolve()
        self.port = self.port or free_port()
        self.admin_token = secrets.token_hex(24)
        blocked = [p for p in self.root.parents if not p.stat().st_mode & 0o001]
        if blocked:
            raise HubError(f"other users cannot enter {blocked[0]}: choose a root they can reach")
        self.state.mkdir(parents=True, mode=0o700)
        (self.root / "home").mkdir()
        for folder in (self.root, self.root / "home"):
            os.chmod(folder, 0o755)
        self._save()                         # stop() works from here on, whatever fails next
        self._users()
        self._checkout_modes()
        self._course_dir()
        env = self.env()
        log = open(self.state / "jupyterhub.log", "wb")
        self.process = subprocess.Popen(
            [str(Path(sys.prefix) / "bin" / "jupyterhub"), "-f", str(DEPLOY / "local_jupyterhub_config.py")],
            cwd=self.state, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._save()
        self._wait_for_hub()
        for name in self.assignments:
            self.as_grader("nbgrader", "generate_assignment", name, "--force")
            self.as_grader("nbgrader", "release_assignment", name, "--force")
        return self

    def _users(self) -> None:
        for group in (GRADER, INSTRUCTORS, STUDENTS):
            run("groupadd", group)
            self._remember("groups", group)
        accounts = [(GRADER, [GRADER]), (INSTRUCTOR, [INSTRUCTORS])] + [(s, [STUDENTS]) for s in self.student_names]
        for name, groups in accounts:
            home = self.root / "home" / name
            run("useradd", "--create-home", "--home-dir", str(home), "--shell", "/bin/bash",
                "--gid", GRADER if name == GRADER else "users", "--groups", ",".join(groups), name)
            self._remember("accounts", name)
            os.chmod(home, 0o700)
            password = secrets.token_urlsafe(12)
            run("chpasswd", input=f"{name}:{password}\n")
            self.users[name] = password
        self._save()

    def _checkout_modes(self) -> None:
        """Only the grader's group may enter the checkout's private folders (saved modes come back at stop)."""
        saved = {}
        gid = pwd.getpwnam(GRADER).pw_gid
        for relative in PRIVATE:
            path = REPO / relative
            if path.is_dir():
                info = path.stat()
                saved[relative] = [stat.S_IMODE(info.st_mode), info.st_gid]
                os.chown(path, -1, gid)
                os.chmod(path, 0o750)
        self._write("checkout-modes.json", saved)

    def _course_dir(self) -> None:
        grader = pwd.getpwnam(GRADER)
        self.course_dir.mkdir(mode=0o700)
        config = (DEPLOY / "course_nbgrader_config.py").read_text()
        config = config.replace('REPO = "/shared/vlm-course"', f"REPO = {str(REPO)!r}")
        (self.course_dir / "nbgrader_config.py").write_text(config)
        for path in (self.course_dir, self.course_dir / "nbgrader_config.py"):
            os.chown(path, grader.pw_uid, grader.pw_gid)
        etc = self.root / "etc" / "jupyter"
        etc.mkdir(parents=True)
        shutil.copy(DEPLOY / "nbgrader_config.global.py", etc / "nbgrader_config.py")
        for folder in (self.root / "etc", etc):
            os.chmod(folder, 0o755)
        os.chmod(etc / "nbgrader_config.py", 0o644)
        self.exchange.mkdir()
        os.chmod(self.exchange, 0o1777)

    def _wait_for_hub(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise HubError(f"JupyterHub exited ({self.process.returncode}):\n{self.log_tail()}")
            try:
                # jupyter_server's /api answers without a login: the grader service is up behind the proxy.
                with urllib.request.urlopen(self.open(f"{self.service_url}/services/{COURSE_ID}/api"),
                                            timeout=5) as answer:
                    if answer.status == 200 and "version" in json.loads(answer.read()):
                        return
            except (urllib.error.URLError, ConnectionError, OSError, ValueError):
                pass
            time.sleep(0.5)
        raise HubError(f"JupyterHub did not answer within {START_TIMEOUT:.0f} s:\n{self.log_tail()}")

    # ---------------------------------------------------------------------------- use it
    def api(self, method: str, path: str, body: dict | None = None, token: str | None = None):
        """Call the hub's REST API through the proxy (as the local admin service unless ``token``)."""
        request = self.open(f"{self.url}/hub/api{path}", method=method,
                            data=json.dumps(body).encode() if body is not None else None,
                            headers={"Authorization": f"token {token or self.admin_token}",
                                     "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read().decode()
        return json.loads(text) if text else None

    def token(self, user: str) -> str:
        return self.api("POST", f"/users/{user}/tokens", {"note": "local hub", "expires_in": 3600})["token"]

    def start_server(self, user: str, timeout: float = 120.0) -> None:
        try:
            self.api("POST", f"/users/{user}/server")
        except urllib.error.HTTPError as error:
            if error.code != 400:            # 400: already running
                raise
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.api("GET", f"/users/{user}")
            server = model.get("servers", {}).get("", {})
            if server.get("ready"):
                return
            if not model.get("pending") and not server:
                raise HubError(f"the server of {user} did not start:\n{self.log_tail()}")
            time.sleep(0.5)
        raise HubError(f"the server of {user} was not ready within {timeout:.0f} s:\n{self.log_tail()}")

    def as_user(self, user: str, *command: str, cwd: Path | None = None, check: bool = True,
                env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
        """Run a course tool as ``user`` (a login shell's environment, the course environment first)."""
        home = pwd.getpwnam(user).pw_dir
        tool = command[0] if command[0].startswith("/") else str(Path(sys.prefix) / "bin" / command[0])
        values = {"HOME": home, "USER": user, "LANG": "C.UTF-8",
                  "PATH": f"{sys.prefix}/bin:/usr/local/bin:/usr/bin:/bin",
                  "JUPYTER_CONFIG_PATH": str(self.root / "etc" / "jupyter"), "VLM_HUB_EXCHANGE": str(self.exchange),
                  **(env or {})}
        argv = ["runuser", "-u", user, "--", "env", "-i", *[f"{k}={v}" for k, v in values.items()], tool, *command[1:]]
        return run(*argv, cwd=cwd or home, check=check, timeout=timeout)

    def as_grader(self, *command: str, **kwargs) -> subprocess.CompletedProcess:
        env = {"VLM_COURSE_WORKSPACE": str(self.course_dir), **kwargs.pop("env", {})}
        return self.as_user(GRADER, *command, cwd=kwargs.pop("cwd", self.course_dir), env=env, **kwargs)

    def log_tail(self, size: int = 4000) -> str:
        log = self.state / "jupyterhub.log"
        return log.read_text(errors="replace")[-size:] if log.exists() else ""

    # ---------------------------------------------------------------------------------- stop
    def stop(self) -> None:
        """Stop everything start() made, in reverse; safe to call twice and after a failed start."""
        saved = self._read("hub.json") or {}
        pid = self.process.pid if self.process else saved.get("pid")
        if pid:
            with _suppress():
                os.killpg(pid, signal.SIGTERM)   # the hub stops its servers and the service first
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.2)
            with _suppress():
                os.killpg(pid, signal.SIGKILL)
            if self.process:
                self.process.wait(timeout=10)
        # The hub starts configurable-http-proxy in a session of its own: a hub that died on its own
        # leaves it running, so end it by the pid file the hub wrote.
        proxy_pid = self.state / "jupyterhub-proxy.pid"
        if proxy_pid.exists():
            with _suppress():
                os.kill(int(proxy_pid.read_text().strip()), signal.SIGTERM)
        created = self._read("created.json") or {}
        for name in created.get("accounts", []):
            _kill_processes_of(name)
            run("userdel", name, check=False)
        for group in reversed(created.get("groups", [])):
            run("groupdel", group, check=False)
        for relative, (mode, gid) in (self._read("checkout-modes.json") or {}).items():
            with _suppress():
                os.chown(REPO / relative, -1, gid)
                os.chmod(REPO / relative, mode)
        shutil.rmtree(self.root, ignore_errors=True)
        self.process = None

    def __enter__(self) -> LocalHub:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    # -------------------------------------------------------------------------------- state
    def _write(self, name: str, value) -> None:
        path = self.state / name
        path.write_text(json.dumps(value))
        os.chmod(path, 0o600)

    def _read(self, name: str):
        path = self.state / name
        return json.loads(path.read_text()) if path.exists() else None

    def _remember(self, kind: str, name: str) -> None:
        created = self._read("created.json") or {"accounts": [], "groups": []}
        created[kind].append(name)
        self._write("created.json", created)

    def _save(self) -> None:
        self._write("hub.json", {"pid": self.process.pid if self.process else None, "url": self.url,
                                 "admin_token": self.admin_token, "students": self.students})
        self._write("users.json", self.users)


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        gone = (ProcessLookupError, PermissionError, FileNotFoundError, ValueError)
        return kind is not None and issubclass(kind, gone)


def _alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
        return True
    except ProcessLookupError:
        return False


def _kill_processes_of(user: str) -> None:
    """End, by process id, whatever still runs as ``user`` (an account this tool created)."""
    try:
        uid = pwd.getpwnam(user).pw_uid
    except KeyError:
        return
    for _ in range(50):                       # bounded: processes may fork while we look
        pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _owner(p) == uid]
        if not pids:
            return
        for pid in pids:
            with _suppress():
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def _owner(proc: Path) -> int | None:
    try:
        return proc.stat().st_uid
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.hub", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["start", "stop"])
    parser.add_argument("--root", type=Path, default=Path("/tmp/vlm-course-hub"),
                        help="folder of the hub's homes, exchange and state (default: %(default)s)")
    parser.add_argument("--students", type=int, default=2)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--domain", default="", help="run with subdomains of this name, e.g. hub.test")
    args = parser.parse_args(argv)
    hub = LocalHub(args.root, students=args.students, port=args.port, domain=args.domain)
    if args.command == "stop":
        hub.stop()
        print("stopped; users, groups and", args.root, "removed")
        return 0
    if args.root.exists():
        print(f"{args.root} exists: a hub may be running (python -m autograder.hub stop)", file=sys.stderr)
        return 1
    try:
        hub.start()
    except BaseException:
        hub.stop()
        raise
    # The hub runs on in the background; `stop` ends it (and everything else) from its state folder.
    print(f"JupyterHub at {hub.url} (formgrader: {hub.service_url}/services/{COURSE_ID}/formgrader)")
    print(f"accounts and passwords: {hub.state / 'users.json'}; "
          f"stop with: python -m autograder.hub stop --root {args.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
