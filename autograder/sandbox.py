"""A sandbox for one submission's Jupyter kernel.

The grader (nbgrader's role) stays outside; only the *kernel*, which runs the student's code, is
confined. The kernel talks to the grader over Unix-domain sockets (ZeroMQ ``ipc`` transport) in the
submission's scratch folder, so it needs no network at all.

Two mechanisms, chosen by :func:`choose_mode`:

``bwrap`` (bubblewrap, the default where it works: Debian package ``bubblewrap``)
    A new mount, PID, network, IPC and UTS namespace. The kernel sees a read-only root made of
    ``/usr``, ``/etc``, the Python installation, the course environment and ``src/`` (the helper
    package) and nothing else of the host: no ``solutions/``, no gradebook, no other submission,
    no home directory. Its only writable folder is its scratch folder. No network interface but
    loopback. When the grader runs as root, the kernel also drops to an unprivileged user id of its
    own (one per parallel slot) with no capabilities and ``no_new_privs``, so that the process limit
    applies to it. The sandbox dies with the grader (``--die-with-parent``), and killing it kills
    every process the student started (the PID namespace goes away).

``rlimits`` (fallback, e.g. a cluster without user namespaces)
    Only resource limits (and, as root, the unprivileged slot user). No file or network isolation:
    make course files unreadable to that user yourself. Prefer Apptainer on such clusters
    (docs/grading.md).

Both modes set resource limits: CPU seconds, address space (memory), processes, file size, open
files, no core dumps. Wall time and output size are enforced by the executor.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .base import REPO

SLOT_UID_BASE = 61000   # unprivileged uids used for kernels when the grader runs as root (61000-62023)


@dataclass
class Limits:
    """Resource limits of one kernel (the whole notebook run)."""

    cell_timeout: float = 120.0          # wall seconds per cell
    setup_timeout: float = 120.0         # wall seconds per trusted setup cell (imports)
    total_timeout: float = 900.0         # wall seconds for the whole notebook
    cpu_seconds: int = 1800              # CPU seconds (all threads) per process
    memory_bytes: int = 4 * 2 ** 30      # data (heap + private writable mappings) per process
    processes: int = 256                 # processes + threads of the slot user
    file_bytes: int = 64 * 2 ** 20       # largest file the kernel may write
    open_files: int = 512
    output_bytes: int = 2 * 2 ** 20      # outputs kept per cell; beyond: truncated
    total_output_bytes: int = 8 * 2 ** 20  # outputs per notebook; beyond: the kernel is stopped
    # bwrap (>= 0.7): the kernel's home, its TMPDIR and /tmp are memory-backed filesystems of this size
    # each, apart from the workspace's disk, and /dev/shm is bounded too (memory the data limit misses)
    disk_bytes: int = 512 * 2 ** 20
    shm_bytes: int = 256 * 2 ** 20

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def bwrap_works() -> bool:
    """True if bubblewrap is installed and can create the namespaces we need here."""
    if shutil.which("bwrap") is None:
        return False
    probe = ["bwrap", "--ro-bind", "/", "/", "--unshare-net", "--unshare-pid", "--die-with-parent",
             "--proc", "/proc", "--dev", "/dev", "true"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@functools.lru_cache(maxsize=1)
def bwrap_sizes_filesystems() -> bool:
    """True if this bubblewrap can give a tmpfs a size (``--size``, bubblewrap >= 0.7)."""
    try:
        help_text = subprocess.run(["bwrap", "--help"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "--size" in help_text


def choose_mode(requested: str = "auto") -> str:
    """``bwrap`` if requested or available, else ``rlimits``; ``none`` only when asked for."""
    if requested == "auto":
        return "bwrap" if bwrap_works() else "rlimits"
    if requested == "bwrap" and not bwrap_works():
        raise RuntimeError("bubblewrap is not usable here (install the `bubblewrap` package, "
                           "or pass --sandbox rlimits)")
    if requested == "rlimits" and os.geteuid() == 0:
        hidden = unreadable_by_others(_python_roots())
        if hidden:
            raise RuntimeError(
                "--sandbox rlimits runs each kernel as an unprivileged user (uids "
                f"{SLOT_UID_BASE}+), which cannot reach the course's Python: {', '.join(map(str, hidden))} "
                "is not readable and searchable by other users. Install the environment in a shared, "
                "world-readable place (e.g. a conda environment under /opt), grade as a normal user, "
                "or use the bubblewrap sandbox.")
    return requested


def unreadable_by_others(roots: list[Path]) -> list[Path]:
    """The folders among ``roots`` and their parents that other users cannot enter (no o+x)."""
    blocked = set()
    for root in roots:
        for folder in [root, *root.parents]:
            try:
                if not folder.stat().st_mode & 0o001:
                    blocked.add(folder)
            except OSError:
                blocked.add(folder)
    return sorted(blocked)


def _python_roots() -> list[Path]:
    """Folders the kernel's Python needs: the environment, its base installation, src/."""
    roots = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), (REPO / "src").resolve()}
    for entry in os.environ.get("VLM_COURSE_SANDBOX_RO", "").split(os.pathsep):
        if entry:
            roots.add(Path(entry).resolve())
    return sorted(roots)


def _python_links() -> list[tuple[Path, Path]]:
    """(path, real path) of the environment folders reached through a symbolic link (a ``.venv`` that
    links to a shared environment): the kernel is started by the linked path, so the sandbox needs
    the link too, not only the real folder it binds."""
    linked = [Path(sys.prefix), Path(sys.base_prefix)]
    linked += [Path(e) for e in os.environ.get("VLM_COURSE_SANDBOX_RO", "").split(os.pathsep) if e]
    return sorted({(p.absolute(), p.resolve()) for p in linked if p.absolute() != p.resolve()})


def _limits_preexec(limits: Limits):
    import resource

    def apply() -> None:
        os.setsid()
        # RLIMIT_DATA, not RLIMIT_AS: CUDA builds of torch reserve tens of GiB of address space.
        for name, value in (("RLIMIT_CPU", limits.cpu_seconds), ("RLIMIT_DATA", limits.memory_bytes),
                            ("RLIMIT_FSIZE", limits.file_bytes), ("RLIMIT_NOFILE", limits.open_files),
                            ("RLIMIT_CORE", 0)):
            resource.setrlimit(getattr(resource, name), (value, value))
        if os.geteuid() != 0:   # as root the limit is set after dropping to the slot user (setpriv)
            resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
    return apply


SANDBOX_HOSTNAME = "sandbox"
SANDBOX_HOSTS = f"127.0.0.1\tlocalhost {SANDBOX_HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n"


def hosts_file(scratch: Path) -> Path:
    """The ``/etc/hosts`` a sandboxed kernel sees: beside its scratch folder, not inside it."""
    return scratch.with_name(scratch.name + ".hosts")


@dataclass
class Sandbox:
    """How to launch a kernel for one submission."""

    mode: str = "bwrap"
    limits: Limits = field(default_factory=Limits)
    slot: int = 0

    @property
    def uid(self) -> int | None:
        return SLOT_UID_BASE + self.slot if os.geteuid() == 0 else None

    def prepare(self, scratch: Path) -> None:
        """Create the scratch folder (home, tmp, and kernel for the sockets) and the hosts file of
        the sandbox (beside it, the grader's: the kernel cannot change it). With a slot user, the
        scratch folder itself stays the grader's: the kernel can write only into its own folders."""
        for sub in ("home", "tmp", "kernel"):
            (scratch / sub).mkdir(parents=True, exist_ok=True)
        hosts_file(scratch).write_text(SANDBOX_HOSTS, encoding="utf-8")
        if self.uid is not None and self.mode != "none":
            for path in (scratch / "home", scratch / "tmp", scratch / "kernel"):
                os.chown(path, self.uid, self.uid)
            os.chmod(scratch, 0o711)

    def seal(self, scratch: Path) -> None:
        """Once the kernel has made its sockets: its socket folder becomes the grader's, so nothing
        more can be stored there (with a slot user; its home and tmp are bounded filesystems)."""
        if self.uid is not None and self.mode != "none":
            os.chown(scratch / "kernel", os.geteuid(), os.getegid())
            os.chmod(scratch / "kernel", 0o711)

    def bounded_filesystems(self) -> bool:
        """True when the kernel's home, tmp, /tmp and /dev/shm are size-limited filesystems of its own."""
        return self.mode == "bwrap" and bwrap_sizes_filesystems()

    def environment(self, scratch: Path) -> dict[str, str]:
        env = {
            "PATH": f"{Path(sys.prefix) / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(scratch / "home"), "TMPDIR": str(scratch / "tmp"),
            "MPLBACKEND": "Agg", "MPLCONFIGDIR": str(scratch / "home"), "PYTHONDONTWRITEBYTECODE": "1",
            "LANG": "C.UTF-8",
            # the helper package of this checkout, the one the sandbox mounts (an editable install of
            # another checkout would point the kernel at files it cannot see)
            "PYTHONPATH": str(REPO / "src"),
            "OMP_NUM_THREADS": os.environ.get("VLM_COURSE_KERNEL_THREADS", "1"),
            "MKL_NUM_THREADS": os.environ.get("VLM_COURSE_KERNEL_THREADS", "1"),
            "VLM_COURSE_DEVICE": "cpu", "NBGRADER_EXECUTION": "autograde", "JPY_SESSION_NAME": "submission",
        }
        return env

    def command(self, kernel_argv: list[str], scratch: Path) -> list[str]:
        """The full command line: sandbox wrapper + privilege drop + the kernel's argv."""
        argv = list(kernel_argv)
        if self.uid is not None and self.mode != "none":
            argv = ["setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups",
                    "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs",
                    "prlimit", f"--nproc={self.limits.processes}", "--"] + argv
        if self.mode != "bwrap":
            return argv
        wrapper = ["bwrap", "--die-with-parent", "--new-session", "--unshare-net", "--unshare-pid",
                   "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--hostname", SANDBOX_HOSTNAME,
                   "--proc", "/proc", "--dev", "/dev", *self._tmpfs("/tmp", 64 * 2 ** 20),
                   "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc",
                   # torchrun and gloo resolve the host name: it must name the sandbox's own loopback
                   "--ro-bind", str(hosts_file(scratch)), "/etc/hosts"]
        for link in ("bin", "lib", "lib64", "sbin"):
            target = Path("/") / link
            if target.is_symlink():
                wrapper += ["--symlink", os.readlink(target), str(target)]
            elif target.is_dir():
                wrapper += ["--ro-bind", str(target), str(target)]
        roots, links = _python_roots(), _python_links()
        parents = sorted({str(a) for r in roots + [scratch] + [link for link, _ in links] for a in r.parents
                          if str(a) not in ("/", "/usr", "/tmp")}, key=lambda a: a.count("/"))
        for parent in parents:   # bwrap would create missing parents with mode 0700
            wrapper += ["--perms", "0755", "--dir", parent]
        for root in roots:
            wrapper += ["--ro-bind", str(root), str(root)]
        for link, target in links:
            wrapper += ["--symlink", str(target), str(link)]
        wrapper += ["--bind", str(scratch), str(scratch)]
        if self.bounded_filesystems():   # the kernel's writable folders: not the workspace's disk
            for folder in ("home", "tmp"):
                wrapper += self._tmpfs(str(scratch / folder), self.limits.disk_bytes)
            wrapper += self._tmpfs("/dev/shm", self.limits.shm_bytes)
        wrapper += ["--chdir", str(scratch / "home")]
        if self.uid is None:   # unprivileged grader: bwrap itself maps us into a user namespace
            wrapper += ["--unshare-user", "--cap-drop", "ALL"]
        return wrapper + ["--"] + argv

    def _tmpfs(self, destination: str, size: int) -> list[str]:
        """bwrap arguments for a tmpfs at ``destination``, of ``size`` bytes where bwrap can say so."""
        sized = ["--size", str(size), "--perms", "1777"] if bwrap_sizes_filesystems() else []
        return sized + ["--tmpfs", destination]

    def popen(self, kernel_argv: list[str], scratch: Path, **kwargs) -> subprocess.Popen:
        return subprocess.Popen(self.command(kernel_argv, scratch), env=self.environment(scratch),
                                cwd=str(scratch / "home") if self.mode != "bwrap" else "/",
                                preexec_fn=_limits_preexec(self.limits), **kwargs)


def kill_tree(process: subprocess.Popen) -> None:
    """Kill the sandbox and every process in its session (fork bombs included)."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
