"""Grade every submission of every assignment: parallel, sandboxed, resumable, idempotent.

Two phases per submission:

1. *execute* (parallel, one worker thread per core, each driving its own sandboxed kernel): read
   the submission, rebuild it on the trusted template (:mod:`autograder.submission`), run it
   (:mod:`autograder.executor`), write the executed notebook and ``result.json``;
2. *record* (serial, in this process, through nbgrader's own converters): ``Autograde`` with
   execution switched off saves the grades of the executed notebook in the gradebook and writes
   ``autograded/``; ``GenerateFeedback`` writes the feedback HTML (hidden tests redacted).

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
import csv
import fcntl
import hashlib
import json
import logging
import os
import queue
import shutil
import socket
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from .guard import static_flags
from .sandbox import Limits, Sandbox, choose_mode
from .submission import Ungradable, canonicalize, find_notebook, read_notebook

GRADER_VERSION = "1"
REPO = Path(__file__).resolve().parents[1]
AUTOGRADER = REPO / "autograder"
SOLUTIONS = REPO / "solutions"
COURSE_ID = "vlm-course"   # = c.CourseDirectory.course_id in nbgrader_config.py
CSV_FIELDS = ["assignment", "student_id", "status", "score", "max_score", "reason", "flags", "notes",
              "timestamp", "graded_at", "seconds"]


# ------------------------------------------------------------------------------------------ helpers
def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp", encoding="utf-8") as handle:
        handle.write(text)
        temporary = handle.name
    os.replace(temporary, path)


def sha256_of(paths: list[Path], root: Path | None = None) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(str(path.relative_to(root) if root else path.name).encode())
        digest.update(path.read_bytes() if path.is_file() else b"")
    return digest.hexdigest()


def claim_uid_block(blocks: int = 16):
    """A block of 64 sandbox uids of our own on this machine (several graders may run at once):
    held through an flock for the life of the process."""
    for block in range(blocks):
        handle = open(Path(tempfile.gettempdir()) / f"vlm-course-grader-uids-{block}.lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return block, handle
        except OSError:
            handle.close()
    raise RuntimeError("too many graders running on this machine")


def normalize_db_url(url: str | None) -> str | None:
    """``postgresql://`` means the pinned driver, psycopg2 (SQLAlchemy 2.1 would pick psycopg 3)."""
    if url and url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


@contextlib.contextmanager
def file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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


@dataclass
class Result:
    assignment: str
    student: str
    key: str
    status: str                   # graded | partially graded | ungradable
    reason: str = ""
    tests: dict = field(default_factory=dict)   # grade_id -> {outcome, detail, points}
    flags: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    seconds: float = 0.0
    attempts: int = 0
    graded_at: str = ""
    recorded: str = ""            # key that was recorded in the gradebook


SCRATCH_PATH_LIMIT = 70  # + "/slotNN/kernel/socket-N" stays within the 107 bytes of a Unix socket path


class Grader:
    def __init__(self, options: Options):
        self.options = options
        self.root = options.workspace.resolve()
        self.source = Path(options.source_dir).resolve()
        self.mode = choose_mode(options.sandbox)
        self.log = logging.getLogger("autograder")
        os.environ["VLM_COURSE_WORKSPACE"] = str(self.root)
        # nbgrader calls alembic by name when it creates a gradebook
        bin_dir = str(Path(os.sys.executable).parent)
        if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
        self.scratch = self.root / "scratch" / f"{socket.gethostname()}-{os.getpid()}"
        if len(str(self.scratch)) > SCRATCH_PATH_LIMIT:
            # A kernel's ZeroMQ ipc sockets live in its scratch folder and a socket path must fit in
            # 107 bytes (sockaddr_un): a deeply nested workspace gets a short scratch folder in /tmp
            # (traversable by the sandboxed uids, not listable).
            self.scratch = Path(tempfile.mkdtemp(prefix="vlm-grade-", dir="/tmp" if os.path.isdir("/tmp") else None))
            os.chmod(self.scratch, 0o711)
        self.uid_block, self._uid_lock = claim_uid_block()
        self.db_url = normalize_db_url(options.db_url) or "sqlite:///" + str(self.root / "gradebook.db")

    # ------------------------------------------------------------------------------- discovery
    def assignments(self) -> list[str]:
        available = sorted(p.name for p in self.source.iterdir() if (p / f"{p.name}.ipynb").is_file())
        return [a for a in available if not self.options.assignments or a in self.options.assignments]

    def submissions(self, assignment: str) -> list[tuple[str, Path]]:
        found = []
        for folder in sorted((self.root / "submitted").glob(f"*/{assignment}")):
            student = folder.parent.name
            if self.options.students and student not in self.options.students:
                continue
            if self.options.shard:
                index, count = self.options.shard
                if int(hashlib.sha1(student.encode()).hexdigest(), 16) % count != index:
                    continue
            if folder.is_dir():
                found.append((student, folder))
        return found

    def result_path(self, assignment: str, student: str) -> Path:
        return self.root / "grading" / assignment / student / "result.json"

    def key(self, assignment: str, folder: Path) -> str:
        files = [p for p in folder.rglob("*") if p.is_file() and ".ipynb_checkpoints" not in p.parts]
        source = self.source / assignment / f"{assignment}.ipynb"
        parts = [sha256_of(files, folder), sha256_of([source]), self.options.limits.to_json(),
                 GRADER_VERSION, self.mode]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()

    def load_result(self, assignment: str, student: str) -> Result | None:
        path = self.result_path(assignment, student)
        if not path.exists():
            return None
        try:
            return Result(**json.loads(path.read_text()))
        except (ValueError, TypeError):
            return None

    # --------------------------------------------------------------------------------- release
    def nbgrader_config(self, **overrides):
        from traitlets.config import Config
        from traitlets.config.loader import PyFileConfigLoader

        config = PyFileConfigLoader("nbgrader_config.py", path=str(AUTOGRADER)).load_config()
        config.CourseDirectory.root = str(self.root)
        config.CourseDirectory.db_url = self.db_url
        config.CourseDirectory.source_directory = str(self.source)
        extra = Config()
        for dotted, value in overrides.items():
            section, name = dotted.split(".")
            extra[section][name] = value
        config.merge(extra)
        return config

    def ensure_release(self, assignment: str) -> None:
        """Release the assignment into the gradebook once per source version (locked, atomic)."""
        from .cli import nbgrader

        source = self.source / assignment / f"{assignment}.ipynb"
        marker = self.root / "grading" / assignment / "release.json"
        wanted = {"source": sha256_of([source]), "db": hashlib.sha256(self.db_url.encode()).hexdigest()}
        with file_lock(self.root / "grading" / assignment / ".release.lock"):
            if marker.exists() and json.loads(marker.read_text()) == wanted and \
                    (self.root / "release" / assignment).is_dir():
                return
            with tempfile.TemporaryDirectory(dir=self.root) as tmp:
                nbgrader("generate_assignment", assignment, "--force",
                         f"--CourseDirectory.release_directory={tmp}", f"--CourseDirectory.db_url={self.db_url}",
                         f"--CourseDirectory.source_directory={self.source}",
                         env={"VLM_COURSE_WORKSPACE": str(self.root)})
                target = self.root / "release" / assignment
                target.parent.mkdir(parents=True, exist_ok=True)
                old = target.with_name(f".{assignment}.old")
                if target.exists():
                    os.replace(target, old)      # the old release survives until the new one is in place
                shutil.move(str(Path(tmp) / assignment), target)
                shutil.rmtree(old, ignore_errors=True)
            atomic_write(marker, json.dumps(wanted))

    # --------------------------------------------------------------------------------- execute
    def execute(self, task: Task, slot: int) -> Result:
        from .executor import execute_notebook

        result = Result(task.assignment, task.student, task.key, status="graded",
                        graded_at=time.strftime("%Y-%m-%dT%H:%M:%S"))
        source = read_notebook(self.source / task.assignment / f"{task.assignment}.ipynb")
        release = read_notebook(self.root / "release" / task.assignment / f"{task.assignment}.ipynb")
        points = {c.metadata.nbgrader["grade_id"]: c.metadata.nbgrader.get("points", 0) for c in source.cells
                  if c.get("metadata", {}).get("nbgrader", {}).get("grade")}
        try:
            path, notes = find_notebook(task.folder, task.assignment)
            canonical = canonicalize(read_notebook(path), source, release)
        except Ungradable as error:
            result.status, result.reason = "ungradable", str(error)
            return result
        result.notes = notes + canonical.notes
        scratch = self.scratch / f"slot{slot}"
        sandbox = Sandbox(mode=self.mode, limits=self.options.limits, slot=self.uid_block * 64 + slot)
        execution = execute_notebook(canonical, sandbox, scratch)
        result.seconds, result.attempts = round(execution.seconds, 2), execution.attempts
        result.flags = execution.flags + [f"review: code {f}" for f in static_flags(canonical.student_sources)]
        result.tests = {gid: {"outcome": o.outcome, "detail": o.detail, "points": points.get(gid, 0)}
                        for gid, o in execution.tests.items()}
        if not execution.kernel_started:
            result.status = "ungradable"
            result.reason = "; ".join(execution.incidents) or "the kernel could not start"
            return result
        incomplete = [g for g, o in execution.tests.items() if o.outcome in ("timeout", "died", "flood", "not run")]
        if execution.incidents or incomplete:
            result.status = "partially graded"
            reasons = list(execution.incidents)
            if incomplete:
                reasons.append("0 points for tests that could not run: " + ", ".join(incomplete))
            result.reason = "; ".join(reasons)
        executed = self.root / "executed" / task.student / task.assignment
        if executed.exists():
            shutil.rmtree(executed)
        executed.mkdir(parents=True)
        nbformat.write(execution.notebook, executed / f"{task.assignment}.ipynb")
        if (task.folder / "timestamp.txt").exists():
            shutil.copy(task.folder / "timestamp.txt", executed / "timestamp.txt")
        return result

    # ---------------------------------------------------------------------------------- record
    def record(self, result: Result) -> None:
        """Write one executed submission into the gradebook and its feedback (serially)."""
        from nbgrader.api import Gradebook, MissingEntry
        from nbgrader.converters import Autograde, GenerateFeedback
        from nbgrader.coursedir import CourseDirectory
        from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, GetGrades, LimitOutput,
                                            SaveAutoGrades)
        from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor

        from .feedback import RedactHiddenTests

        assignment, student = result.assignment, result.student
        if result.status == "ungradable":
            with Gradebook(self.db_url, COURSE_ID) as gradebook:
                with contextlib.suppress(MissingEntry):
                    gradebook.remove_submission(assignment, student)
            for folder in ("autograded", "feedback", "executed"):
                shutil.rmtree(self.root / folder / student / assignment, ignore_errors=True)
            return
        config = self.nbgrader_config(**{
            "CourseDirectory.submitted_directory": "executed",
            "Autograde.sanitize_preprocessors": [CheckCellMetadata],
            "Autograde.autograde_preprocessors": [LimitOutput, SaveAutoGrades, AssignLatePenalties, CheckCellMetadata],
            "GenerateFeedback.preprocessors": [GetGrades, RedactHiddenTests, CSSHTMLHeaderPreprocessor],
        })
        coursedir = CourseDirectory(config=config)
        coursedir.assignment_id, coursedir.student_id = assignment, student
        app = Autograde(coursedir=coursedir, config=config)
        app.force, app.create_student = True, True
        app.log.setLevel(logging.ERROR)
        app.start()
        if self.options.feedback:
            feedback = GenerateFeedback(coursedir=coursedir, config=config)
            feedback.force = True
            feedback.log.setLevel(logging.ERROR)
            feedback.start()

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

    def run(self, progress=print) -> list[Result]:
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
                return self.execute(task, slot)
            except Exception as error:  # noqa: BLE001 - one submission never stops the grader
                self.log.exception("grading %s/%s failed", task.student, task.assignment)
                # key "" : a grader error is never cached, the next run grades this submission again
                return Result(task.assignment, task.student, "", status="ungradable",
                              reason=f"grader error: {type(error).__name__}: {error}; rerun to retry")
            finally:
                slots.put(slot)

        with futures.ThreadPoolExecutor(max_workers=self.options.jobs) as pool:
            for future in futures.as_completed([pool.submit(work, t) for t in todo]):
                result = future.result()
                atomic_write(self.result_path(result.assignment, result.student), json.dumps(asdict(result), indent=1))
                if self.options.record:
                    self._record_and_save(result, progress)
                results.append(result)
                progress(f"{result.assignment} {result.student}: {result.status}"
                         + (f" ({result.reason})" if result.reason else ""))
        shutil.rmtree(self.scratch, ignore_errors=True)
        return results

    def _record_and_save(self, result: Result, progress) -> None:
        try:
            self.record(result)
            result.recorded = result.key
        except Exception as error:  # noqa: BLE001
            self.log.exception("recording %s/%s failed", result.student, result.assignment)
            progress(f"{result.assignment} {result.student}: recording failed ({error}); rerun to retry")
        atomic_write(self.result_path(result.assignment, result.student), json.dumps(asdict(result), indent=1))

    # ------------------------------------------------------------------------------ export
    def export_csv(self, path: Path | None = None) -> Path:
        """``grades.csv``: one row per submission, its status and why (never a silent 0)."""
        from nbgrader.api import Gradebook, MissingEntry

        path = path or self.root / "grades.csv"
        rows = []
        with Gradebook(self.db_url, COURSE_ID) as gradebook:
            for result_file in sorted((self.root / "grading").glob("*/*/result.json")):
                result = Result(**json.loads(result_file.read_text()))
                score = max_score = timestamp = ""
                if result.status != "ungradable":
                    try:
                        submission = gradebook.find_submission(result.assignment, result.student)
                        score, max_score = submission.score, submission.max_score
                        timestamp = submission.timestamp or ""
                    except MissingEntry:
                        result.reason = (result.reason + "; " if result.reason else "") + "not recorded yet: rerun"
                rows.append({"assignment": result.assignment, "student_id": result.student, "status": result.status,
                             "score": score, "max_score": max_score, "reason": result.reason,
                             "flags": " | ".join(result.flags), "notes": " | ".join(result.notes),
                             "timestamp": timestamp, "graded_at": result.graded_at, "seconds": result.seconds})
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, newline="", suffix=".tmp") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(handle.name, path)
        return path

