"""Small file utilities of the grader: atomic writes, content hashes, a lock file, and the one way
the grader reads a file a student controls (never through a link, never blocking, bounded)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp", encoding="utf-8") as handle:
        handle.write(text)
        temporary = handle.name
    os.replace(temporary, path)


class UnreadableFile(ValueError):
    """A student's file that the grader will not read: a link, not a regular file, or too large."""


def shown_name(path: Path) -> str:
    """``path``'s name as printable text (a name need not be UTF-8: odd bytes are shown escaped)."""
    return os.fsencode(path.name).decode("utf-8", "backslashreplace")


def read_regular_file(path: Path, limit: int) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes.

    Opened without following a final symbolic link and without blocking (a FIFO or a device is
    refused after ``fstat``, never read); raises ``UnreadableFile`` with the reason."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise UnreadableFile(f"{shown_name(path)} is a symbolic link, not a file") from None
        raise
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise UnreadableFile(f"{shown_name(path)} is not a regular file")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise UnreadableFile(f"{shown_name(path)} is larger than {limit / 2**20:.0f} MiB")
    return data


def tree_files(folder: Path) -> list[Path]:
    """Every entry below ``folder`` (files, links, FIFOs...), without entering linked folders or
    .ipynb_checkpoints."""
    found = []
    for top, folders, names in os.walk(folder):          # os.walk never follows a linked folder
        folders[:] = [f for f in folders if f != ".ipynb_checkpoints"]
        base = Path(top)
        found += [base / name for name in names]
        found += [base / f for f in folders if (base / f).is_symlink()]
    return found


def sha256_of(paths: list[Path], root: Path | None = None) -> str:
    """One hash of the names (relative to ``root``, else base names) and contents of ``paths``.

    Safe on whatever a student leaves: names are hashed as bytes (they need not be UTF-8), a link
    by its target's text (never followed), a FIFO or device by its kind only (never opened)."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(os.fsencode(path.relative_to(root) if root else path.name) + b"\0")
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            digest.update(b"link:" + os.fsencode(os.readlink(path)))
        elif stat.S_ISREG(info.st_mode):
            with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK), "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        else:
            digest.update(b"special:%o" % stat.S_IFMT(info.st_mode))
    return digest.hexdigest()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed) for the ``with`` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
