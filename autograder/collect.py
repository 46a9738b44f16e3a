"""Collect submissions into ``<workspace>/submitted/<student>/<assignment>/``.

- From a JupyterHub exchange: ``nbgrader collect ASSIGNMENT`` (the exchange is configured in
  ``nbgrader_config.py`` or the hub's global config, see docs/jupyterhub.md).
- From LMS downloads (Moodle, Canvas, Blackboard: one file or archive per student, or one archive
  for the class): put the files in a folder and run
  ``python -m autograder.cli collect ASSIGNMENT --zip FOLDER``. The student id (and the submission
  time, when present) comes from each notebook's file name, with the pattern ``FILENAME_PATTERN``:

      anything_<student_id>_attempt_<YYYY-MM-DD-HH-MM-SS>_<notebook>.ipynb
      anything_<student_id>_<notebook>.ipynb

  Loose notebooks and the notebooks inside ``.zip``, ``.tar``, ``.tar.gz``/``.tgz`` and ``.gz`` files
  are read. Every file and every archive is handled on its own: one that cannot be read (corrupt,
  a link, a member whose path climbs out with ``..``, too large), or a name that does not match, is
  reported with its reason and skipped; nothing is guessed and nobody else's collection stops. Of
  several files of one student and notebook, the latest attempt is kept. Nothing is extracted to
  disk before it is checked, and each student's folder is replaced whole, so a run after a bad file
  was removed starts from the downloads alone.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath

from .base import COURSE, WORKSPACE_VARIABLE, nbgrader, workspace
from .files import UnreadableFile, read_regular_file
from .submission import MAX_NOTEBOOK_BYTES

# student ids: letters, digits, dot, dash, starting with a letter or digit (never "." or "..");
# the file id is the notebook name (collect: one of the assignment's notebooks, so that a name
# like x_.._01_attention.ipynb cannot be read as student "01" and notebook "attention.ipynb")
STUDENT_ID = r"(?P<student_id>[A-Za-z0-9][A-Za-z0-9.\-]*)(_attempt_(?P<timestamp>[0-9\-]+))?"
FILENAME_PATTERN = rf".*?_{STUDENT_ID}_(?P<file_id>[A-Za-z0-9_\-]+\.ipynb)$"
MAX_ARCHIVE_BYTES = 2 * 2**30          # what one download may unpack to, all its notebooks together
MAX_MEMBERS = 10_000


@dataclass
class Found:
    """One notebook of one student, read from the downloads."""
    student: str
    notebook: str
    data: bytes
    attempt: datetime | None
    origin: str


@dataclass
class Collection:
    expected: list[str]                                  # the assignment's notebook names
    notebooks: dict[tuple[str, str], Found] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)    # "<file>: <reason>", one per bad file

    def add(self, name: str, data: bytes, origin: str) -> None:
        notebook = "|".join(re.escape(n) for n in self.expected) or r"[A-Za-z0-9_\-]+\.ipynb"
        match = re.fullmatch(rf".*?_{STUDENT_ID}_(?P<file_id>{notebook})", name)
        if not match:
            self.problems.append(f"{origin}: the name does not match <anything>_<student id>_"
                                 f"{'|'.join(self.expected) or '<notebook>.ipynb'}; skipped")
            return
        attempt = None
        if match["timestamp"]:
            try:
                attempt = datetime.strptime(match["timestamp"], "%Y-%m-%d-%H-%M-%S")
            except ValueError:
                self.problems.append(f"{origin}: the attempt time {match['timestamp']} is not a date; "
                                     "collected without a submission time")
        found = Found(match["student_id"], match["file_id"], data, attempt, origin)
        key = (found.student, found.notebook)
        kept = self.notebooks.get(key)
        if kept is None or _later(found, kept):
            if kept is not None:
                self.problems.append(f"{kept.origin}: an older attempt of {found.student}'s {found.notebook}; "
                                     f"{found.origin} is kept")
            self.notebooks[key] = found
        else:
            self.problems.append(f"{origin}: an older attempt of {found.student}'s {found.notebook}; "
                                 f"{kept.origin} is kept")


def _later(new: Found, old: Found) -> bool:
    if new.attempt is None or old.attempt is None:
        return old.attempt is None        # a timed attempt wins over an untimed one; two untimed: the last read
    return new.attempt >= old.attempt


def shown(name: str) -> str:
    """A file name as printable text, whatever bytes it holds."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _safe_member(name: str) -> str | None:
    """The notebook file name of an archive member, or None when its path is absolute or climbs out."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or not path.name:
        return None
    return path.name


def _read_zip(data: bytes, origin: str, collection: Collection) -> None:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = archive.infolist()
        if len(members) > MAX_MEMBERS or sum(m.file_size for m in members) > MAX_ARCHIVE_BYTES:
            raise UnreadableFile("it would unpack to more than the grader accepts")
        for member in members:
            if member.is_dir():
                continue
            where = f"{origin}: {shown(member.filename)}"
            name = _safe_member(member.filename)
            is_link = (member.external_attr >> 16) & 0o170000 == 0o120000
            if name is None or is_link:
                collection.problems.append(f"{where}: {'a link' if is_link else 'a path outside the archive'}; skipped")
            elif name.endswith(".ipynb"):
                if member.file_size > MAX_NOTEBOOK_BYTES:
                    collection.problems.append(f"{where}: larger than {MAX_NOTEBOOK_BYTES // 2**20} MiB; skipped")
                    continue
                try:
                    collection.add(name, archive.read(member), where)
                except (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError) as error:
                    collection.problems.append(f"{where}: cannot be read ({error}); skipped")


def _read_tar(data: bytes, origin: str, collection: Collection) -> None:
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        total = 0
        for count, member in enumerate(archive):
            if count >= MAX_MEMBERS:
                raise UnreadableFile("it holds more files than the grader accepts")
            where = f"{origin}: {shown(member.name)}"
            name = _safe_member(member.name)
            if name is None or not member.isfile():
                if not member.isdir():
                    collection.problems.append(f"{where}: not a file inside the archive; skipped")
                continue
            if not name.endswith(".ipynb"):
                continue
            total += member.size
            if member.size > MAX_NOTEBOOK_BYTES or total > MAX_ARCHIVE_BYTES:
                collection.problems.append(f"{where}: larger than the grader accepts; skipped")
                continue
            collection.add(name, archive.extractfile(member).read(), where)


def _read_gzip(data: bytes, name: str, origin: str, collection: Collection) -> None:
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
        inner = stream.read(MAX_NOTEBOOK_BYTES + 1)
    if len(inner) > MAX_NOTEBOOK_BYTES:
        raise UnreadableFile(f"it unpacks to more than {MAX_NOTEBOOK_BYTES // 2**20} MiB")
    collection.add(name[: -len(".gz")], inner, origin)


def read_downloads(folder: Path, expected: list[str]) -> Collection:
    """Every notebook named ``<anything>_<student id>_<one of expected>`` in the LMS downloads in
    ``folder``, each file and archive read on its own."""
    collection = Collection(expected)
    for path in sorted(Path(folder).iterdir(), key=lambda p: os.fsencode(p.name)):
        origin = shown(path.name)
        try:
            if path.is_dir() and not path.is_symlink():
                collection.problems.append(f"{origin}: a folder; skipped (put its files in the downloads folder)")
                continue
            lower = path.name.lower()
            if not lower.endswith((".ipynb", ".zip", ".tar", ".tgz", ".gz")):
                collection.problems.append(f"{origin}: neither a notebook nor an archive; skipped")
                continue
            data = read_regular_file(path, MAX_ARCHIVE_BYTES if not lower.endswith(".ipynb") else MAX_NOTEBOOK_BYTES)
            if lower.endswith(".zip"):
                _read_zip(data, origin, collection)
            elif lower.endswith((".tar", ".tgz", ".tar.gz")):
                _read_tar(data, origin, collection)
            elif lower.endswith(".gz"):
                _read_gzip(data, path.name, origin, collection)
            else:
                collection.add(path.name, data, origin)
        except (UnreadableFile, OSError, EOFError, zipfile.BadZipFile, tarfile.TarError, zlib.error,
                gzip.BadGzipFile, ValueError) as error:
            collection.problems.append(f"{origin}: cannot be read ({error}); skipped")
    return collection


def write_submissions(collection: Collection, submitted: Path, assignment: str) -> list[str]:
    """Replace each collected student's ``submitted/<student>/<assignment>/`` whole; returns the students."""
    by_student: dict[str, list[Found]] = {}
    for found in collection.notebooks.values():
        by_student.setdefault(found.student, []).append(found)
    submitted.mkdir(parents=True, exist_ok=True)
    for student, notebooks in sorted(by_student.items()):
        target = submitted / student / assignment
        assert target.resolve().parent.parent == submitted.resolve(), f"{student!r} would leave submitted/"
        target.parent.mkdir(exist_ok=True)
        fresh = Path(tempfile.mkdtemp(prefix=f".{assignment}-", dir=target.parent))
        for found in notebooks:
            (fresh / found.notebook).write_bytes(found.data)
        times = [f.attempt for f in notebooks if f.attempt is not None]
        if times:
            (fresh / "timestamp.txt").write_text(max(times).isoformat(" "))
        if target.exists():
            shutil.rmtree(target)
        os.replace(fresh, target)
    return sorted(by_student)


def collect(assignment: str, zip_folder: Path | None = None) -> list[str]:
    """Collect ``assignment``; returns the problems found (empty from the exchange)."""
    root = workspace()
    if zip_folder is None:
        print(nbgrader("collect", assignment, "--update", env={WORKSPACE_VARIABLE: str(root)}).stderr[-2000:])
        return []
    collection = read_downloads(zip_folder, sorted(p.name for p in (COURSE / assignment).glob("*.ipynb")))
    students = write_submissions(collection, root / "submitted", assignment)
    print(f"collected {len(collection.notebooks)} notebooks of {len(students)} students into submitted/")
    for problem in collection.problems:
        print(f"  {problem}")
    return collection.problems
