"""The exchange as the course uses it: collected submissions become the grader's own files.

nbgrader's submit makes each submission folder in ``inbound/`` mode 0777 (so that the grader can
remove it later), and ``nbgrader collect`` copies it with its modes: every collected
``submitted/<student>/<assignment>/`` would be world-writable, and any student who can reach the
course directory could change or delete another's work before grading. :class:`PrivateCollect`
(configured in ``nbgrader_config.py`` through ``ExchangeFactory.collect``, so the formgrader's
Collect button uses it too) gives the copy to the collecting account: folders 0700, files 0600.
"""

from __future__ import annotations

import os
from pathlib import Path

from nbgrader.exchange.default.collect import ExchangeCollect

FOLDER_MODE = 0o700
FILE_MODE = 0o600


def make_private(folder: Path) -> None:
    """Give ``folder`` and everything under it to its owner alone (no group, no others)."""
    for dirpath, _, filenames in os.walk(folder):
        os.chmod(dirpath, FOLDER_MODE)
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, FILE_MODE)


class PrivateCollect(ExchangeCollect):
    """nbgrader's collect, then the collected copy made private to the grader (see the module docstring)."""

    def do_copy(self, src: str, dest: str, log=None) -> None:
        super().do_copy(src, dest, log)
        make_private(Path(dest))
        # The student's folder above it is created by collect with the grader's umask: close it too.
        os.chmod(os.path.dirname(dest), FOLDER_MODE)
