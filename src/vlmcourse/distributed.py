"""Run a function on several processes with the real ``torchrun``, from a notebook or a test.

``launch(fn, nproc=2, **kwargs)`` ships ``fn`` (and every function or class of the notebook that it
uses) by value to a fresh temporary folder, writes the entry module that ``torchrun`` runs there, and
starts ``python -m torch.distributed.run --standalone --nproc-per-node=N`` (that is ``torchrun``).
Every rank calls ``init_process_group`` (gloo on the CPU, NCCL when there is a GPU per rank), runs
``fn(**kwargs)`` and saves what it returns; ``launch`` returns the list of per-rank results, moved
to the CPU, so a graded test cell can compare them with a single-process reference.

Robust on shared machines:

* ``--standalone`` binds the rendezvous to port 0, so the operating system picks a free port for
  every launch (never a fixed port that two notebooks could fight over);
* the whole launch has a time limit, and, once every rank has joined the process group, the work
  has its own (short) limit: a send/recv deadlock ends in :class:`LaunchTimeout` naming where each
  rank was waiting (Python stacks dumped by ``faulthandler``), never in a hang;
* a rank that raises ends the launch with :class:`LaunchError` showing that rank's error first and
  every rank's output;
* torchrun runs in its own session and every worker records its pid: nothing is left running, even
  when the caller is interrupted.

The functions are shipped with ``cloudpickle`` rather than as source text, so the same call works in a
Jupyter kernel, under nbgrader autograde and in a plain ``exec`` of the notebook's cells.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

try:  # a dependency of joblib (scikit-learn); joblib also vendored it in older releases
    import cloudpickle
except ImportError:  # pragma: no cover
    from joblib.externals import cloudpickle  # type: ignore[no-redef]

__all__ = [
    "LaunchError",
    "LaunchTimeout",
    "launch",
    "default_backend",
]

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])
_STARTUP_LIMIT_S = 240.0


class LaunchError(AssertionError):
    """A distributed launch failed: a rank raised, crashed or the launch could not start.

    It derives from ``AssertionError`` so that a graded test cell that launches a learner's code
    reports it like any other failed check, with the rank's message.
    """


class LaunchTimeout(LaunchError):
    """The ranks did not finish in time (a deadlock, or a collective called on only some ranks)."""


# --------------------------------------------------------------------------------------------------
# Rank side
# --------------------------------------------------------------------------------------------------

def default_backend(nproc: int | None = None) -> str:
    """``"nccl"`` when CUDA has at least ``nproc`` GPUs (one per rank), else ``"gloo"``.

    ``$VLM_COURSE_DIST_BACKEND`` overrides the choice.
    """
    chosen = os.environ.get("VLM_COURSE_DIST_BACKEND")
    if chosen:
        return chosen
    if torch.cuda.is_available() and torch.cuda.device_count() >= (nproc or 1):
        return "nccl"
    return "gloo"


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {key: _to_cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        converted = [_to_cpu(item) for item in value]
        return type(value)(converted) if isinstance(value, list) else tuple(converted)
    return value


def _save(folder: Path, rank: int, value: Any) -> None:
    target = folder / f"rank{rank}.pt"
    torch.save(_to_cpu(value), str(target) + ".tmp")
    os.replace(str(target) + ".tmp", target)


def _init_process_group(backend: str, timeout_s: float) -> None:
    import torch.distributed as dist

    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))


def _exit_when_orphaned(launcher_pid: int) -> None:
    """Daemon thread of every rank: leave at once if the caller (kernel, test) has died."""
    import threading

    def watch() -> None:
        while True:
            try:
                os.kill(launcher_pid, 0)
            except ProcessLookupError:
                os._exit(3)
            except PermissionError:
                pass
            time.sleep(1.0)

    threading.Thread(target=watch, daemon=True).start()


def _worker_main(folder_name: str) -> None:
    """Entry of every rank (called by the module that torchrun runs)."""
    import traceback

    import torch.distributed as dist

    if os.environ.get("VLM_COURSE_LAUNCHER_PID"):
        _exit_when_orphaned(int(os.environ["VLM_COURSE_LAUNCHER_PID"]))
    folder = Path(folder_name)
    rank = int(os.environ["RANK"])
    torch.set_num_threads(1)
    try:
        with open(folder / "payload.pkl", "rb") as handle:
            options = cloudpickle.load(handle)
        _init_process_group(options["backend"], options["op_timeout"])
        (folder / f"rank{rank}.ready").touch()
        _save(folder, rank, options["fn"](**options["kwargs"]))
    except BaseException as error:  # noqa: BLE001 (reported to the caller, then the rank exits)
        text = traceback.format_exc()
        sys.stderr.write(text)
        sys.stderr.flush()
        (folder / f"rank{rank}.err").write_text(f"{type(error).__name__}: {error}\n---\n{text}")
        os._exit(1)
    # Leave without the interpreter's normal shutdown. Once every rank has saved its result and
    # passed this barrier (so no peer still waits on a message from us), tearing down gloo/DDP
    # objects can only go wrong: a C++ thread still joinable at exit aborts the rank
    # ("terminate called without an active exception") although its work was done.
    if dist.is_initialized():
        try:
            dist.barrier()
        except BaseException as error:  # noqa: BLE001 (a peer died after finishing its work)
            sys.stderr.write(f"rank {rank}: final barrier failed: {error}\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


_ENTRY = '''\
# Written by vlmcourse.distributed: the module that torchrun starts on every rank.
import os, sys
_folder = os.path.dirname(os.path.abspath(__file__))
_rank = os.environ["RANK"]
with open(os.path.join(_folder, "rank%s.pid" % _rank), "w") as _f:
    _f.write(str(os.getpid()))
_log = os.open(os.path.join(_folder, "rank%s.log" % _rank), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
os.dup2(_log, 1)
os.dup2(_log, 2)
sys.stdout.reconfigure(line_buffering=True)
sys.stderr.reconfigure(line_buffering=True)
import faulthandler, signal
faulthandler.register(signal.SIGUSR1, all_threads=False)
from vlmcourse.distributed import _worker_main
_worker_main(_folder)
'''


# --------------------------------------------------------------------------------------------------
# Caller side
# --------------------------------------------------------------------------------------------------

@dataclass
class _Run:
    folder: Path
    nproc: int

    def pids(self) -> list[int]:
        found = []
        for rank in range(self.nproc):
            path = self.folder / f"rank{rank}.pid"
            try:
                found.append(int(path.read_text()))
            except (OSError, ValueError):
                pass
        return found

    def all_ready(self) -> bool:
        return all((self.folder / f"rank{rank}.ready").exists() for rank in range(self.nproc))

    def log(self, rank: int) -> str:
        try:
            return (self.folder / f"rank{rank}.log").read_text(errors="replace")
        except OSError:
            return ""

    def error(self, rank: int) -> str | None:
        path = self.folder / f"rank{rank}.err"
        return path.read_text(errors="replace") if path.exists() else None

    def error_time(self, rank: int) -> int:
        return (self.folder / f"rank{rank}.err").stat().st_mtime_ns


def _is_our_worker(pid: int, folder: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return str(folder) in cmdline


def _signal_workers(run: _Run, sig: int) -> None:
    for pid in run.pids():
        if _is_our_worker(pid, run.folder):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass


def _stop(proc: subprocess.Popen, run: _Run) -> None:
    """Kill torchrun (its whole process group) and every worker (each has its own session)."""
    _signal_workers(run, signal.SIGKILL)
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=5)
    _signal_workers(run, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while any(_is_our_worker(pid, run.folder) for pid in run.pids()) and time.monotonic() < deadline:
        time.sleep(0.05)


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")  # torchrun would set it (with a warning) for nproc > 1
    env["PYTHONUNBUFFERED"] = "1"
    env["VLM_COURSE_LAUNCHER_PID"] = str(os.getpid())
    # The ranks import what the caller can import (functions of importable modules travel by name).
    paths = [_PACKAGE_ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    paths += [p for p in sys.path if p and os.path.isdir(p)]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


_STACK_LINE = re.compile(r'^\s*File "([^"]*)", line (\d+) in (\S+)')


def _where_stuck(log: str) -> str:
    """The innermost frames of the stack that faulthandler wrote, outside torch itself."""
    frames = [m.groups() for m in map(_STACK_LINE.match, log.splitlines()) if m]
    useful = [f"{name} (line {line})" for path, line, name in frames
              if "/torch/" not in path and "vlmcourse/distributed" not in path and name != "<module>"]
    inner = [f"{name}" for path, line, name in frames if "/torch/distributed/" in path][:1]
    where = " <- ".join(useful[:3]) or "unknown place"
    return where + (f", inside torch.distributed.{inner[0]}" if inner else "")


def _tail(text: str, lines: int = 25) -> str:
    kept = [line for line in text.rstrip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def _rank_outputs(run: _Run, *, skip_stacks: bool = False) -> str:
    parts = []
    for rank in range(run.nproc):
        log = run.log(rank)
        if skip_stacks:
            log = re.split(r"^(?:Stack|Current thread|Thread 0x)", log, flags=re.M)[0]
        if log.strip():
            parts.append(textwrap.indent(_tail(log), f"[rank {rank}] "))
    return "\n".join(parts)


def _failure(run: _Run, returncode: int, agent_output: str) -> LaunchError:
    errors = {rank: run.error(rank) for rank in range(run.nproc)}
    raised = {rank: text for rank, text in errors.items() if text}
    if raised:
        # The rank that raised first is the cause; the others usually lost their peer afterwards.
        first = min(raised, key=run.error_time)
        headline = raised[first].split("\n---\n")[0].strip()
        others = sorted(set(raised) - {first})
        message = (f"rank {first} raised {headline}\n"
                   + (f"(ranks {others} failed after it, having lost their peer)\n" if others else "")
                   + f"--- output of every rank ---\n{_rank_outputs(run)}")
    else:
        message = (f"torchrun exited with code {returncode} and no rank reported a Python error "
                   f"(a crash, or the launch could not start).\n--- output of every rank ---\n"
                   f"{_rank_outputs(run)}\n--- torchrun ---\n{_tail(agent_output, 15)}")
    return LaunchError(message)


def _timeout_error(run: _Run, limit: float, started: bool, agent_output: str) -> LaunchTimeout:
    if not started:
        return LaunchTimeout(
            f"the {run.nproc} ranks did not all start within {limit:.0f} s (machine overloaded?).\n"
            f"--- output of every rank ---\n{_rank_outputs(run)}\n--- torchrun ---\n"
            f"{_tail(agent_output, 15)}")
    where = "\n".join(f"  rank {rank}: waiting in {_where_stuck(run.log(rank))}"
                      for rank in range(run.nproc) if not (run.folder / f"rank{rank}.pt").exists())
    return LaunchTimeout(
        f"timed out: the ranks did not finish within {limit:.0f} s after they all started, and were "
        "stopped. This is usually a deadlock: every rank waits in recv() for a message that no rank "
        "sends (all ranks call recv before send), or a collective is called on only some ranks.\n"
        f"Where the unfinished ranks were:\n{where}\n--- output of every rank ---\n"
        f"{_rank_outputs(run, skip_stacks=True)}")


def _run(run: _Run, options: dict[str, Any], *, timeout: float, echo: bool) -> list[Any]:
    folder = run.folder
    with open(folder / "payload.pkl", "wb") as handle:
        cloudpickle.dump(options, handle)
    entry = folder / "torchrun_entry.py"
    entry.write_text(_ENTRY)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={run.nproc}", "--max-restarts=0", str(entry)]
    agent_log = folder / "torchrun.log"
    with open(agent_log, "w") as agent_out:
        proc = subprocess.Popen(command, cwd=folder, env=_environment(),
                                stdin=subprocess.DEVNULL, stdout=agent_out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            start, ready_at = time.monotonic(), None
            while proc.poll() is None:
                now = time.monotonic()
                if ready_at is None and run.all_ready():
                    ready_at = now
                late = (ready_at is not None and now - ready_at > timeout) or (
                    ready_at is None and now - start > _STARTUP_LIMIT_S)
                if late:
                    _signal_workers(run, signal.SIGUSR1)  # each rank writes its Python stack
                    time.sleep(0.5)
                    _stop(proc, run)
                    raise _timeout_error(run, timeout if ready_at else _STARTUP_LIMIT_S,
                                         ready_at is not None, agent_log.read_text(errors="replace"))
                time.sleep(0.05)
        finally:
            _stop(proc, run)
    if proc.returncode != 0:
        raise _failure(run, proc.returncode, agent_log.read_text(errors="replace"))
    if echo:
        output = _rank_outputs(run)
        if output:
            print(output)
    results = []
    for rank in range(run.nproc):
        path = folder / f"rank{rank}.pt"
        results.append(torch.load(path, weights_only=False) if path.exists() else None)
    return results


def launch(fn: Callable[..., Any], nproc: int = 2, *, timeout: float = 60.0,
           backend: str | None = None, echo: bool = True, **kwargs: Any) -> list[Any]:
    """Run ``fn(**kwargs)`` on ``nproc`` ranks under ``torchrun``; return the per-rank results.

    Inside ``fn`` the default process group is initialised: use ``dist.get_rank()`` and
    ``dist.get_world_size()``; under NCCL each rank's current CUDA device is ``cuda:LOCAL_RANK``.
    Whatever ``fn`` returns (tensors, dicts, lists, numbers) comes back, on the CPU, as
    ``results[rank]``.

    ``timeout`` limits the work once every rank has joined the process group (start-up has its own
    generous limit); past it the ranks are stopped and :class:`LaunchTimeout` says where each one
    was waiting. A rank that raises ends the launch with :class:`LaunchError`. With ``echo`` the
    ranks' printed output is shown, each line prefixed by ``[rank r]``.
    """
    if nproc < 1:
        raise ValueError("nproc must be at least 1")
    backend = backend or default_backend(nproc)
    options = {"fn": fn, "kwargs": kwargs, "backend": backend,
               "op_timeout": max(timeout, 1.0) + 30.0}
    with tempfile.TemporaryDirectory(prefix="vlm-torchrun-") as folder:
        return _run(_Run(Path(folder), nproc), options, timeout=timeout, echo=echo)

