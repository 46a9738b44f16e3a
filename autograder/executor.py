"""Execute one canonical notebook in a sandboxed kernel, with the integrity guard, and survive it.

The executor (this process) stays outside the sandbox and talks to the kernel over Unix sockets. It
enforces what a kernel cannot be trusted to enforce itself:

- a wall-clock limit per cell and per notebook: the sandbox is killed (an interrupt is not enough
  for a loop that ignores SIGINT);
- a kernel that dies (``os._exit``, a signal, the CPU or memory limit) is noticed at once;
- outputs are capped per cell (truncated) and per notebook (the kernel is stopped: output flood);
- the verdict of a test cell needs the execute reply *and* the outputs *and* two authenticated
  guard answers to agree that it passed.

When a cell times out, kills its kernel or floods, the cell is recorded, replaced by a no-op, and
the notebook is re-run from the start in a fresh sandbox (at most ``MAX_ATTEMPTS`` runs), so the
other tests are still graded: the result says which cells were skipped and why.
"""

from __future__ import annotations

import os
import queue
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from jupyter_client import BlockingKernelClient
from jupyter_client.connect import write_connection_file

from . import cells
from .guard import GuardClient, GuardError
from .outcomes import CellStatus, Outcome
from .sandbox import Limits, Sandbox, kill_tree
from .submission import Canonical
from .trusted import Check, Session

MAX_ATTEMPTS = 3


@dataclass
class CellRun:
    status: CellStatus
    outputs: list = field(default_factory=list)
    reply: dict | None = None
    execution_count: int | None = None
    truncated: bool = False


class KernelFailure(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class SandboxedKernel:
    """One kernel process in a sandbox, driven over ZeroMQ ipc sockets."""

    def __init__(self, sandbox: Sandbox, scratch: Path):
        self.sandbox, self.scratch = sandbox, scratch
        self.process = None
        self.client: BlockingKernelClient | None = None
        self.output_total = 0

    def start(self, timeout: float = 120.0) -> None:
        if self.scratch.exists():
            shutil.rmtree(self.scratch, ignore_errors=True)
        self.scratch.mkdir(parents=True)
        self.sandbox.prepare(self.scratch)
        sockets = self.scratch / "kernel"       # made by prepare(), the kernel's until it is up
        connection, _ = write_connection_file(str(sockets / "connection.json"), transport="ipc",
                                              ip=str(sockets / "socket"))
        os.chmod(connection, 0o644)
        argv = [sys.executable, "-Xfrozen_modules=off", "-m", "ipykernel_launcher", "-f", connection]
        log = open(self.scratch / "kernel.log", "wb")
        self.process = self.sandbox.popen(argv, self.scratch, stdout=log, stderr=log, stdin=open(os.devnull))
        deadline = time.monotonic() + timeout
        while not all(Path(f"{sockets / 'socket'}-{i}").exists() for i in range(1, 6)):
            if self.process.poll() is not None:
                raise KernelFailure("died", f"the kernel did not start (exit code {self.process.returncode}): "
                                    + self.log_tail())
            if time.monotonic() > deadline:
                raise KernelFailure("timeout", "the kernel did not start in time")
            time.sleep(0.05)
        self.sandbox.seal(self.scratch)
        self.client = BlockingKernelClient(connection_file=connection)
        self.client.load_connection_file()
        self.client.start_channels()
        self.client.kernel_info()
        while True:
            try:
                reply = self.client.get_shell_msg(timeout=1)
                if reply["msg_type"] == "kernel_info_reply":
                    break
            except queue.Empty:
                if self.process.poll() is not None:
                    raise KernelFailure("died", "the kernel died while starting: " + self.log_tail()) from None
                if time.monotonic() > deadline:
                    raise KernelFailure("timeout", "the kernel did not answer in time") from None
        while True:   # drain the start-up status messages
            try:
                self.client.get_iopub_msg(timeout=0.2)
            except queue.Empty:
                break

    def log_tail(self) -> str:
        try:
            return (self.scratch / "kernel.log").read_text(errors="replace")[-500:]
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def run_code(self, code: str, limits: Limits, timeout: float, silent: bool = False,
                 user_expressions: dict | None = None) -> CellRun:
        """Run ``code`` in the kernel; collect its outputs within the limits, never hang."""
        assert self.client is not None
        msg_id = self.client.execute(code, silent=silent, store_history=not silent,
                                     user_expressions=user_expressions or {}, allow_stdin=False)
        deadline = time.monotonic() + timeout
        run = CellRun(status=CellStatus.OK)
        cell_bytes, idle, reply = 0, False, None
        idle_since = None
        while True:
            if time.monotonic() > deadline:
                run.status = CellStatus.TIMEOUT
                return run
            if not self.alive():
                run.status = CellStatus.DIED
                return run
            try:
                message = self.client.get_iopub_msg(timeout=0.1)
            except queue.Empty:
                message = None
            if message is not None and message.get("parent_header", {}).get("msg_id") == msg_id:
                kind = message["msg_type"]
                if kind == "status" and message["content"].get("execution_state") == "idle":
                    idle = True
                elif kind == "execute_input":
                    run.execution_count = message["content"].get("execution_count")
                elif kind == "clear_output":
                    run.outputs = []
                elif kind in ("stream", "display_data", "execute_result", "error", "update_display_data"):
                    size = len(str(message["content"]))
                    cell_bytes += size
                    self.output_total += size
                    if self.output_total > limits.total_output_bytes:
                        run.status = CellStatus.FLOOD
                        return run
                    if cell_bytes <= limits.output_bytes and kind != "update_display_data":
                        try:
                            run.outputs.append(nbformat.v4.output_from_msg(message))
                        except ValueError:
                            pass
                    elif not run.truncated:
                        run.truncated = True
                        run.outputs.append(nbformat.v4.new_output(
                            "stream", name="stdout",
                            text=f"\n[output truncated by the grader after {limits.output_bytes} bytes]\n"))
            if reply is None:
                try:
                    candidate = self.client.get_shell_msg(timeout=0 if message is not None else 0.01)
                    if candidate.get("parent_header", {}).get("msg_id") == msg_id:
                        reply = candidate["content"]
                except queue.Empty:
                    pass
            if reply is not None and (idle or (idle_since and time.monotonic() - idle_since > 2.0)):
                break
            if reply is not None and idle_since is None:
                idle_since = time.monotonic()
        run.reply = reply
        run.execution_count = reply.get("execution_count", run.execution_count)
        has_error = any(o.get("output_type") == "error" for o in run.outputs)
        if reply.get("status") != "ok" or has_error:
            run.status = CellStatus.ERROR
        return run

    def stop(self) -> None:
        if self.client is not None:
            try:
                self.client.stop_channels()
            except Exception:  # noqa: BLE001
                pass
        if self.process is not None:
            kill_tree(self.process)
            if self.sandbox.uid is not None and self.sandbox.mode != "none":
                kill_uid(self.sandbox.uid)    # the slot's uid is ours alone: wait until nothing is left
        shutil.rmtree(self.scratch, ignore_errors=True)


def kill_uid(uid: int, wait: float = 15.0) -> None:
    """Kill every process of ``uid`` and wait until they are gone (a fork bomb's children would
    otherwise still count against the next kernel's process limit)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        found = False
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if entry.stat().st_uid == uid:
                    os.kill(int(entry.name), 9)
                    found = True
            except (OSError, ProcessLookupError):
                continue
        if not found:
            return
        time.sleep(0.1)


def error_output(name: str, message: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_output("error", ename=name, evalue=message, traceback=[f"{name}: {message}"])


@dataclass
class TestOutcome:
    grade_id: str
    outcome: Outcome
    detail: str = ""


@dataclass
class Execution:
    notebook: nbformat.NotebookNode
    tests: dict[str, TestOutcome]
    incidents: list[str] = field(default_factory=list)   # grader-side: timeouts, deaths, floods
    flags: list[str] = field(default_factory=list)       # tampering and review flags
    attempts: int = 0
    seconds: float = 0.0
    kernel_started: bool = False
    setup_error: str = ""     # a trusted setup cell raised: nothing after it can be graded


def _guard_call(kernel: SandboxedKernel, guard: GuardClient, action: str, cell: str | None,
                limits: Limits) -> dict:
    run = kernel.run_code("", limits, timeout=60, silent=True,
                         user_expressions={"g": guard.expression(action, cell)})
    if run.status in (CellStatus.TIMEOUT, CellStatus.DIED, CellStatus.FLOOD) or run.reply is None:
        raise KernelFailure(run.status, f"guard call {action} failed ({run.status})")
    value = run.reply.get("user_expressions", {}).get("g", {})
    if value.get("status") != "ok":
        raise GuardError(f"guard unreachable ({value.get('ename', 'no answer')})")
    return guard.verify(value.get("data", {}).get("text/plain", ""), action)


def execute_notebook(canonical: Canonical, sandbox: Sandbox, scratch: Path,
                     checks: list[Check] | None = None) -> Execution:
    """Run the canonical notebook; see the module docstring for the rules. A test with a trusted
    check (:mod:`autograder.trusted`) passes only if that check, run after the last cell, agrees."""
    limits = sandbox.limits
    start = time.monotonic()
    skipped: dict[int, str] = {}
    result = Execution(notebook=canonical.notebook, tests={})
    for attempt in range(1, MAX_ATTEMPTS + 1):
        result.attempts = attempt
        notebook = nbformat.from_dict(canonical.notebook)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        tests: dict[str, TestOutcome] = {gid: TestOutcome(gid, Outcome.NOT_RUN) for gid in canonical.tests.values()}
        flags: list[str] = []
        kernel = SandboxedKernel(sandbox, scratch)
        session = Session(checks) if checks else None
        failed_at = None
        try:
            kernel.start()
            result.kernel_started = True
            guard = GuardClient()
            install = kernel.run_code(guard.install_code(), limits, timeout=60, silent=True)
            try:
                if install.status != CellStatus.OK:
                    raise KernelFailure("died", "the grader's guard could not be installed")
                _guard_call_install(kernel, guard, limits)
            except (KernelFailure, GuardError) as error:   # before any student code: the grader's fault
                if attempt == 1:
                    result.kernel_started = False
                raise KernelFailure("died", f"kernel set-up failed: {error}") from None
            notebook_deadline = start + limits.total_timeout
            for index, cell in enumerate(notebook.cells):
                if cell.cell_type != "code":
                    continue
                gid = canonical.tests.get(index)
                if index in skipped:
                    cell.outputs = [error_output("GraderSkipped", skipped[index])]
                    if gid:
                        tests[gid] = TestOutcome(gid, Outcome(skipped[index].split(":")[0]), skipped[index])
                    continue
                if index in canonical.setup:
                    _guard_call(kernel, guard, "mark", None, limits)
                elif gid:
                    before = _guard_call(kernel, guard, "before", gid, limits)
                    flags += [f"tampering undone before {gid}: {p}" for p in before["problems"]]
                per_cell = limits.setup_timeout if index in canonical.setup else limits.cell_timeout
                timeout = min(per_cell, max(1.0, notebook_deadline - time.monotonic()))
                run = kernel.run_code(cell.source, limits, timeout=timeout)
                cell.outputs, cell.execution_count = run.outputs, run.execution_count
                if run.status in (CellStatus.TIMEOUT, CellStatus.DIED, CellStatus.FLOOD):
                    failed_at = (index, run.status)
                    break
                if index in canonical.setup:
                    if run.status == CellStatus.ERROR:
                        error = next((o for o in cell.outputs if o.get("output_type") == "error"), {})
                        result.setup_error = (f"the course's setup cell {index} failed "
                                              f"({error.get('ename', 'error')}: {error.get('evalue', '')})")[:300]
                        break
                    _guard_call(kernel, guard, "protect", None, limits)
                    continue
                if not gid:
                    continue
                after = _guard_call(kernel, guard, "after", gid, limits)
                void = [f"{p} changed during the test" for p in after["problems"]] + after["suspicious"]
                if void:
                    flags += [f"{gid} void: {v}" for v in void]
                    cell.outputs.append(error_output(
                        "GraderIntegrityError", "this test's verdict cannot be trusted: " + "; ".join(void)))
                    tests[gid] = TestOutcome(gid, Outcome.VOID, "; ".join(void))
                elif run.status == CellStatus.ERROR:
                    if not any(o.get("output_type") == "error" for o in cell.outputs):
                        cell.outputs.append(error_output("GraderError", "the test failed but its error was hidden"))
                    error = next(o for o in cell.outputs if o.get("output_type") == "error")
                    message = f"{error.get('ename')}: {error.get('evalue', '')}"[:300]
                    tests[gid] = TestOutcome(gid, Outcome.FAILED, message)
                else:
                    tests[gid] = TestOutcome(gid, Outcome.PASSED)
                    if session and gid in session.checks:
                        kernel.run_code(session.remember_code(gid), limits, timeout=30, silent=True)
            if session and failed_at is None and not result.setup_error:
                flags += _run_trusted_checks(kernel, session, tests, canonical.student_sources, limits, result)
        except GuardError as error:
            flags.append(f"grader guard failed: {error}")
            failed_at = failed_at or ("guard", str(error))
        except KernelFailure as error:
            if not result.kernel_started:
                result.incidents.append(str(error))
                result.seconds = time.monotonic() - start
                kernel.stop()
                return result
            failed_at = failed_at or ("kernel", f"{error.kind}: {error}")
        finally:
            kernel.stop()
        result.notebook, result.tests = notebook, tests
        result.flags = sorted(set(result.flags) | set(flags))
        if failed_at is None:
            break
        index, status = failed_at
        if not isinstance(index, int):          # guard failure: tests from here on are void
            for gid, outcome in tests.items():
                if outcome.outcome == Outcome.NOT_RUN:
                    tests[gid] = TestOutcome(gid, Outcome.VOID, f"grader guard failed: {status}")
            result.incidents.append(f"grader guard failed ({status}); remaining tests void")
            break
        reason = {"timeout": f"timeout: cell {index} exceeded its time limit",
                  "died": f"died: the kernel died in cell {index} (exit, signal, CPU or memory limit)",
                  "flood": f"flood: cell {index} flooded the output"}[status]
        label = canonical.tests.get(index) or _cell_label(notebook.cells[index], index)
        result.incidents.append(reason.replace(f"cell {index}", f"cell {index} ({label})"))
        skipped[index] = reason
        if time.monotonic() - start > limits.total_timeout:
            result.incidents.append("the notebook's total time limit was reached")
            break
    result.seconds = time.monotonic() - start
    # Fail closed: a test that did not pass under the grader's eyes carries an error, so nbgrader
    # gives it 0 whatever its outputs say.
    for index, gid in canonical.tests.items():
        outcome = result.tests.get(gid, TestOutcome(gid, Outcome.NOT_RUN))
        cell = result.notebook.cells[index]
        has_error = any(o.get("output_type") == "error" for o in cell.get("outputs", []))
        if outcome.outcome == Outcome.FAILED and not has_error:     # the trusted check disagreed
            cell.outputs = list(cell.get("outputs", [])) + [error_output("GraderCheckFailed", outcome.detail)]
        elif outcome.outcome != Outcome.PASSED and not has_error:
            note = f"this test was not graded: {outcome.outcome} {outcome.detail}".strip()
            cell.outputs = list(cell.get("outputs", [])) + [error_output("GraderNotGraded", note)]
    return result


def _run_trusted_checks(kernel: SandboxedKernel, session: Session, tests: dict[str, TestOutcome],
                        sources: list[str], limits: Limits, result: Execution) -> list[str]:
    """Ask the kernel for the learner's answers on fresh inputs and judge them here; a passed test
    whose check disagrees fails. Returns review flags."""
    passed = [gid for gid in session.checks if tests.get(gid) and tests[gid].outcome == Outcome.PASSED]
    if not passed:
        return []
    code, expression = session.call_code(passed)
    run = kernel.run_code(code, limits, timeout=limits.cell_timeout, silent=True,
                          user_expressions={"answer": expression})
    if run.status in (CellStatus.TIMEOUT, CellStatus.DIED, CellStatus.FLOOD):
        for gid in passed:
            tests[gid] = TestOutcome(gid, Outcome.NOT_RUN, f"the grader's own check did not finish ({run.status})")
        result.incidents.append(f"the grader's own checks did not finish ({run.status})")
        return []
    value = (run.reply or {}).get("user_expressions", {}).get("answer", {})
    if value.get("status") == "ok":
        answer = value.get("data", {}).get("text/plain", "")
    else:
        answer = f"no answer ({value.get('ename', run.status)}: {str(value.get('evalue', ''))[:200]})"
    flags = []
    for gid, verdict in session.judge(answer, sources).items():
        flags += verdict.flags
        if not verdict.passed:
            tests[gid] = TestOutcome(gid, Outcome.FAILED, verdict.detail[:300])
            flags.append(f"review: {gid} passed in the kernel but not the grader's own check: {verdict.detail[:200]}")
    return flags


def _guard_call_install(kernel: SandboxedKernel, guard: GuardClient, limits: Limits) -> None:
    run = kernel.run_code("", limits, timeout=120, silent=True, user_expressions={"g": guard.install_expression()})
    value = (run.reply or {}).get("user_expressions", {}).get("g", {})
    if value.get("status") != "ok":
        raise KernelFailure("died", f"the grader's guard could not be installed: {value.get('evalue', run.status)}")
    guard.verify(value["data"]["text/plain"], "install")


def _cell_label(cell, index: int) -> str:
    if cells.grade_id(cell):
        return cells.grade_id(cell)
    first = next((line for line in cell.source.splitlines() if line.strip()), "")
    return f"code: {first[:40]}"

