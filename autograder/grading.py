"""Grade every submission of every assignment: parallel, sandboxed, resumable, idempotent.

Two phases per submission:

1. *execute* (parallel, one worker thread per core, each driving its own sandboxed kernel): read
   the submission, rebuild it on the trusted template (:mod:`autograder.submission`), run it
   (:mod:`autograder.executor`), write the executed notebook and ``result.json``
   (:mod:`autograder.results`);
2. *record* (serial, in this process, :mod:`autograder.gradebook`): nbgrader's converters save the
   grades of the executed notebook in the gradebook, write ``autograded/`` and the feedback HTML
   (hidden tests redacted).

Idempotency: ``result.json`` holds a key (hash of the submission's files, the source notebook, the
limits and this grader's version); a submission whose key is unchanged and recorded is skipped; one
that was executed but not recorded (the grader was stopped) is only recorded; a changed submission
is executed again and its grades *replaced* (nbgrader updates rows, it never adds a second
submission). Every file is written atomically, so stopping the grader at any moment loses at most
the submissions in flight.
"""

from __future__ import annotations

import concurrent.futures as futures
import contextlib
import fcntl
import hashlib
import logging
import os
import queue
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import nbformat

from . import cells
from .base import SOLUTIONS, assignments, tool_path
from .executor import execute_notebook
from .files import UnreadableFile, read_regular_file, sha256_of, shown_name, tree_files
from .gradebook import Recorder, default_db_url, normalize_db_url
from .guard import static_flags
from .outcomes import Status
from .release import ensure_release
from .results import Result, load_result, now, result_path, save_result
from .sandbox import Limits, Sandbox, bwrap_sizes_filesystems, choose_mode
from .submission import Ungradable, canonicalize, find_notebook, read_notebook
from .trusted import CHECKS_FILE, load_checks

GRADER_VERSION = "3"   # 2: trusted checks; 3: module checks of the initial parameters
GLOB_CHARACTERS = set("*?[]")   # nbgrader finds a student's files with glob patterns built from the id
SCRATCH_PATH_LIMIT = 70  # + "/slotNN/kernel/socket-N" stays within the 107 bytes of a Unix socket path
Progress = Callable[[str], None]


def claim_uid_block(blocks: int = 16) -> tuple[int, IO]:
    """A block of 64 sandbox uids of our own on this machine (several graders may run at once):
    held through an flock for as long as the returned handle stays open.

    The lock files are per account: in a shared sticky /tmp another account's file cannot be opened
    for writing, and only graders of one account (root: the one that hands out slot uids) compete
    for the same uids."""
    for block in range(blocks):
        handle = open(Path(tempfile.gettempdir()) / f"vlm-course-grader-{os.geteuid()}-uids-{block}.lock", "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return block, handle
        except OSError:
            handle.close()
    raise RuntimeError("too many graders running on this machine")


# What nbgrader keeps next to a submitted notebook and needs later: the submission time (late
# penalties, grades.csv) and the secret that `nbgrader release_feedback` files the feedback under.
CARRIED_FILES = ("timestamp.txt", "submission_secret.txt")


def carry_submission_files(submitted: Path, executed: Path) -> list[str]:
    """Copy nbgrader's bookkeeping files of a submission into its executed copy (which autograding
    reads); return notes on what could not be carried."""
    notes = []
    for name in CARRIED_FILES:
        if not os.path.lexists(submitted / name):
            continue
        try:
            data = read_regular_file(submitted / name, limit=4096)
        except (UnreadableFile, OSError) as error:
            notes.append(f"{name} not carried ({error})")
            continue
        if name == "timestamp.txt" and not is_timestamp(data):
            # nbgrader would fail to record the submission, on every run
            notes.append("timestamp.txt is not a date: graded without a submission time")
            continue
        (executed / name).write_bytes(data)
    return notes


def is_timestamp(data: bytes) -> bool:
    """Whether ``data`` (a timestamp.txt's bytes) is a submission time that nbgrader can read."""
    from nbgrader.utils import parse_utc

    try:
        parse_utc(data.decode("utf-8").strip()[:100])
        return True
    except (UnicodeDecodeError, ValueError, OverflowError):
        return False


@contextlib.contextmanager
def course_tools_on_path() -> Iterator[None]:
    """nbgrader's in-process gradebook calls ``alembic`` by name: this environment's, for the block."""
    before = os.environ.get("PATH")
    os.environ["PATH"] = tool_path()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PATH", None)
        else:
            os.environ["PATH"] = before


@dataclass
class Options:
    workspace: Path
    assignments: list[str] | None = None
    students: list[str] | None = None
    jobs: int = max(1, os.cpu_count() or 1)
    sandbox: str = "auto"
    limits: Limits = field(default_factory=Limits)
    db_url: str | None = None
    force: bool = False
    shard: tuple[int, int] | None = None     # (index, count): grade only this shard of the students
    record: bool = True
    feedback: bool = True
    source_dir: Path = SOLUTIONS              # nbgrader source: the reference notebooks


@dataclass
class Task:
    assignment: str
    student: str
    folder: Path
    key: str


class Grader:
    """Plans and runs a grading pass over a workspace (see the module docstring).

    Constructing one changes nothing: the sandbox uid block, the scratch folder and the
    environment of nbgrader's tools are taken when :meth:`run` needs them."""

    def __init__(self, options: Options):
        self.options = options
        self.root = options.workspace.resolve()
        self.source = Path(options.source_dir).resolve()
        self.mode = choose_mode(options.sandbox)
        if self.mode == "bwrap" and not bwrap_sizes_filesystems():
            logging.getLogger("autograder").warning(
                "this bubblewrap has no --size (it is older than 0.7): the kernels' home and tmp folders are "
                "on the workspace's disk, unbounded (docs/grading.md, 'Disk and shared memory')")
        self.log = logging.getLogger("autograder")
        self.db_url = normalize_db_url(options.db_url) or default_db_url(self.root)
        self.recorder = Recorder(self.root, self.source, self.db_url, feedback=options.feedback)
        self._checks: dict[str, list] = {}
        self.scratch = self.root / "scratch" / f"{socket.gethostname()}-{os.getpid()}"
        if len(str(self.scratch)) > SCRATCH_PATH_LIMIT:
            # A kernel's ZeroMQ ipc sockets live in its scratch folder and a socket path must fit in
            # 107 bytes (sockaddr_un): a deeply nested workspace gets a short scratch folder in /tmp
            # (made by run(): traversable by the sandboxed uids, not listable).
            tag = hashlib.sha256(str(self.root).encode()).hexdigest()[:8]
            # The account is in the name: two graders on one node never meet in /tmp.
            self.scratch = Path("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()) / \
                f"vlm-grade-{tag}-u{os.geteuid()}-{os.getpid()}"

    # ------------------------------------------------------------------------------- discovery
    def assignments(self) -> list[str]:
        return [a for a in assignments(self.source) if not self.options.assignments or a in self.options.assignments]

    def submissions(self, assignment: str) -> list[tuple[str, Path]]:
        found = []
        for folder in sorted((self.root / "submitted").glob(f"*/{assignment}")):
            student = folder.parent.name
            if self.options.students and student not in self.options.students:
                continue
            if self.options.shard:
                index, count = self.options.shard
                if int(hashlib.sha1(os.fsencode(student)).hexdigest(), 16) % count != index:
                    continue
            if folder.is_dir():
                found.append((student, folder))
        return found

    def result_path(self, assignment: str, student: str) -> Path:
        return result_path(self.root, assignment, student)

    def key(self, assignment: str, folder: Path) -> str:
        files = tree_files(folder)
        sources = [self.source / assignment / name for name in (f"{assignment}.ipynb", CHECKS_FILE)]
        parts = [sha256_of(files, folder), sha256_of([s for s in sources if s.exists()]), self.options.limits.to_json(),
                 GRADER_VERSION, self.mode]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()

    def checks(self, assignment: str) -> list:
        """The assignment's trusted checks (:mod:`autograder.trusted`), loaded once per run."""
        if assignment not in self._checks:
            self._checks[assignment] = load_checks(self.source, assignment)
        return self._checks[assignment]

    def load_result(self, assignment: str, student: str) -> Result | None:
        return load_result(self.result_path(assignment, student))

    # ------------------------------------------------------------------------- release, record
    def ensure_release(self, assignment: str) -> None:
        ensure_release(self.root, self.source, self.db_url, assignment)

    def record(self, result: Result) -> None:
        with course_tools_on_path():
            self.recorder.record(result)

    def export_csv(self, path: Path | None = None) -> Path:
        with course_tools_on_path():
            return self.recorder.export_csv(path)

    # ---------------------------------------------------------------------------- grade one
    def grade_submission(self, task: Task, slot: int, uid_block: int) -> Result:
        """Rebuild, execute and judge one submission in sandbox slot ``slot`` (no recording)."""
        result = Result(task.assignment, task.student, task.key, status=Status.GRADED,
                        graded_at=now())
        source = read_notebook(self.source / task.assignment / f"{task.assignment}.ipynb")
        release = read_notebook(self.root / "release" / task.assignment / f"{task.assignment}.ipynb")
        points = cells.points_by_test(source)
        if GLOB_CHARACTERS & set(task.student):
            result.status = Status.UNGRADABLE
            result.reason = (f"the student id {task.student!r} contains glob characters (* ? [ ]), which nbgrader "
                             "cannot grade: rename the submission's folder")
            return result
        linked = [f for f in (task.folder, task.folder.parent) if f.is_symlink()]
        if linked:
            result.status = Status.UNGRADABLE
            result.reason = (f"the submission folder {shown_name(linked[0])} is a symbolic link: "
                             "submit the files themselves")
            return result
        try:
            path, notes = find_notebook(task.folder, task.assignment)
            canonical = canonicalize(read_notebook(path), source, release)
        except Ungradable as error:
            result.status, result.reason = Status.UNGRADABLE, str(error)
            return result
        result.notes = notes + canonical.notes
        sandbox = Sandbox(mode=self.mode, limits=self.options.limits, slot=uid_block * 64 + slot)
        execution = execute_notebook(canonical, sandbox, self.scratch / f"slot{slot}",
                                     checks=self.checks(task.assignment))
        result.seconds, result.attempts = round(execution.seconds, 2), execution.attempts
        result.flags = execution.flags + [f"review: code {f}" for f in static_flags(canonical.student_sources)]
        result.tests = {gid: {"outcome": o.outcome, "detail": o.detail, "points": points.get(gid, 0)}
                        for gid, o in execution.tests.items()}
        if not execution.kernel_started:
            result.status = Status.UNGRADABLE
            result.reason = "; ".join(execution.incidents) or "the kernel could not start"
            return result
        if execution.setup_error:
            # Never a silent 0 for everyone: say what failed, and that it may not be the student's doing.
            result.status = Status.UNGRADABLE
            result.reason = (f"{execution.setup_error}: nothing was graded. If every submission shows this, "
                             "the grading environment is broken: fix it and regrade with --force")
            return result
        incomplete = [g for g, o in execution.tests.items() if o.outcome.incomplete]
        if execution.incidents or incomplete:
            result.status = Status.PARTIALLY_GRADED
            reasons = list(execution.incidents)
            if incomplete:
                reasons.append("0 points for tests that could not run: " + ", ".join(incomplete))
            result.reason = "; ".join(reasons)
        executed = self.root / "executed" / task.student / task.assignment
        if executed.exists():
            shutil.rmtree(executed)
        executed.mkdir(parents=True)
        nbformat.write(execution.notebook, executed / f"{task.assignment}.ipynb")
        result.notes += carry_submission_files(task.folder, executed)
        return result

    # ------------------------------------------------------------------------------------- run
    def plan(self) -> tuple[list[Task], list[Result]]:
        todo, done = [], []
        for assignment in self.assignments():
            submissions = self.submissions(assignment)
            if not submissions:
                continue
            self.ensure_release(assignment)
            for student, folder in submissions:
                key = self.key(assignment, folder)
                previous = self.load_result(assignment, student)
                if previous and previous.key == key and not self.options.force:
                    done.append(previous)
                else:
                    todo.append(Task(assignment, student, folder, key))
        return todo, done

    def run(self, progress: Progress = print) -> list[Result]:
        with course_tools_on_path(), self._scratch_folder():
            block, lock = claim_uid_block()
            try:
                return self._run(progress, block)
            finally:
                lock.close()

    @contextlib.contextmanager
    def _scratch_folder(self) -> Iterator[None]:
        if not self.scratch.is_relative_to(self.root):
            os.mkdir(self.scratch, 0o700)       # fails if someone else made it first
            os.chmod(self.scratch, 0o711)
        try:
            yield
        finally:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def _run(self, progress: Progress, uid_block: int) -> list[Result]:
        todo, done = self.plan()
        pending_record = [r for r in done if r.recorded != r.key]
        progress(f"{len(todo)} submission(s) to grade, {len(done) - len(pending_record)} unchanged, "
                 f"{len(pending_record)} to record; {self.options.jobs} parallel kernel(s), sandbox: {self.mode}")
        results = [r for r in done if r.recorded == r.key or not self.options.record]
        for result in pending_record if self.options.record else []:
            self._record_and_save(result, progress)
            results.append(result)
        slots: queue.Queue[int] = queue.Queue()
        for slot in range(self.options.jobs):
            slots.put(slot)

        def work(task: Task) -> Result:
            slot = slots.get()
            try:
                return self.grade_submission(task, slot, uid_block)
            except Exception as error:  # noqa: BLE001 - one submission never stops the grader
                self.log.exception("grading %s/%s failed", task.student, task.assignment)
                # key "" : a grader error is never cached, the next run grades this submission again
                return Result(task.assignment, task.student, "", status=Status.UNGRADABLE,
                              reason=f"grader error: {type(error).__name__}: {error}; rerun to retry")
            finally:
                slots.put(slot)

        with futures.ThreadPoolExecutor(max_workers=self.options.jobs) as pool:
            for future in futures.as_completed([pool.submit(work, t) for t in todo]):
                result = future.result()
                save_result(self.root, result)
                if self.options.record:
                    self._record_and_save(result, progress)
                results.append(result)
                progress(f"{result.assignment} {result.student}: {result.status}"
                         + (f" ({result.reason})" if result.reason else ""))
        return results

    def _record_and_save(self, result: Result, progress: Progress) -> None:
        try:
            self.recorder.record(result)
            result.recorded = result.key
        except Exception as error:  # noqa: BLE001
            self.log.exception("recording %s/%s failed", result.student, result.assignment)
            progress(f"{result.assignment} {result.student}: recording failed ({error}); rerun to retry")
        save_result(self.root, result)
